"""`python -m monitoring.compare`: champion vs challenger on a constructed shadow log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from monitoring import compare
from sproxxo.errors import EXIT_DATA, EXIT_EMPTY, EXIT_OK, DataSourceError
from sproxxo.jobs import compare as compare_job
from sproxxo.jobs.cli import run as run_cli
from sproxxo.policy import CostModel
from tests.monitoring.shadow_log import (
    CHALLENGER,
    CHAMPION,
    DAY,
    OLD_SHADOW,
    WINDOW,
    build,
    record,
    write_files,
)

ROOT = Path(__file__).resolve().parents[2]
#: SHADOWED's 30 rows (24 labelled, 8 frauds): champion decision -> challenger decision.
MATRIX = {
    "approve": {"approve": 16, "review": 2, "decline": 1},
    "review": {"approve": 3, "review": 2, "decline": 0},
    "decline": {"approve": 1, "review": 2, "decline": 3},
}


@pytest.fixture
def shadow_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The constructed day written as a file log and a label store."""
    log_dir, labels_dir = tmp_path / "predictions", tmp_path / "labels"
    write_files(log_dir, labels_dir)
    return log_dir, labels_dir


def cli(log_dir: Path, labels_dir: Path, out: Path, *extra: str) -> int:
    """Run the compare CLI in-process the way `python -m` does."""
    args = [*WINDOW, "--log-dir", str(log_dir), "--labels-dir", str(labels_dir)]
    return run_cli(compare.main, [*args, "--out", str(out), *extra])


def report_of(out: Path) -> dict[str, Any]:
    """compare.json as a dict."""
    return dict(json.loads((out / compare_job.JSON_FILE).read_text()))


def test_compare_cli_writes_json_and_html_as_a_subprocess(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """`python -m monitoring.compare` exits 0 and writes both files naming the pair."""
    log_dir, labels_dir = shadow_dirs
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monitoring.compare", *WINDOW, "--out", str(out)]
    result = subprocess.run(
        [*command, "--log-dir", str(log_dir), "--labels-dir", str(labels_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert f"{CHAMPION} vs {CHALLENGER}: 30 transactions, agreement 70.0%" in result.stdout
    page = (out / compare_job.HTML_FILE).read_text()
    assert f"Champion {CHAMPION} vs challenger {CHALLENGER}" in page
    assert "<td>16 (53.3%)</td>" in page
    assert report_of(out)["rows"] == 30


def test_compare_agreement_matrix_counts_the_shared_rows(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The matrix counts the pair's 30 shadowed rows; others are counted and left out."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    report = report_of(tmp_path)
    assert report["agreement"]["counts"] == MATRIX
    assert report["agreement"]["rates"]["approve"]["approve"] == pytest.approx(16 / 30)
    assert report["agreement"]["agreement_rate"] == pytest.approx(21 / 30)
    assert (report["rows"], report["unshadowed_rows"], report["other_pair_rows"]) == (30, 4, 1)
    assert report["champion"]["model_tag"] == CHAMPION
    assert report["challenger"]["model_tag"] == CHALLENGER


def test_compare_decision_mix_of_each_model(shadow_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """Each model's decision counts and shares over the same 30 transactions."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    report = report_of(tmp_path)
    champion, challenger = report["champion"], report["challenger"]
    assert champion["decision_mix"]["counts"] == {"approve": 19, "review": 5, "decline": 6}
    assert challenger["decision_mix"]["counts"] == {"approve": 20, "review": 6, "decline": 4}
    assert challenger["decision_mix"]["shares"]["decline"] == pytest.approx(4 / 30)


def test_compare_labelled_precision_recall_and_cost_are_exact(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """On the 24 labelled rows (8 frauds, 100 USD each): precision, recall and expected cost
    (missed frauds' amounts + 3 USD a review + 25 USD a false decline) of both models."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    report = report_of(tmp_path)
    assert (report["labelled_rows"], report["labelled_frauds"]) == (24, 8)
    champion, challenger = report["champion"]["labelled"], report["challenger"]["labelled"]
    assert (champion["precision"], champion["recall"]) == (0.5, 0.625)
    assert (champion["decline_precision"], champion["decline_recall"]) == (0.6, 0.375)
    assert champion["expected_cost"] == 3 * 100 + 5 * 3 + 2 * 25
    assert (challenger["precision"], challenger["recall"]) == (0.7, 0.875)
    assert (challenger["decline_precision"], challenger["decline_recall"]) == (0.75, 0.375)
    assert challenger["expected_cost"] == 1 * 100 + 6 * 3 + 1 * 25
    assert challenger["expected_cost_per_row"] == pytest.approx(143 / 24)


def test_compare_costs_come_from_the_options(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """--review-cost and --false-decline-cost replace the CostModel defaults."""
    costs = ["--review-cost", "10", "--false-decline-cost", "0"]
    assert cli(*shadow_dirs, tmp_path, *costs) == EXIT_OK
    report = report_of(tmp_path)
    assert report["costs"] == {"review_cost": 10.0, "false_decline_cost": 0.0}
    assert report["challenger"]["labelled"]["expected_cost"] == 1 * 100 + 6 * 10


def test_compare_challenger_option_picks_another_pair(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """--challenger compares the older shadow's single row, the others left out."""
    assert cli(*shadow_dirs, tmp_path, "--challenger", OLD_SHADOW) == EXIT_OK
    report = report_of(tmp_path)
    assert report["challenger"]["model_tag"] == OLD_SHADOW
    assert (report["rows"], report["other_pair_rows"], report["labelled_rows"]) == (1, 30, 1)


def test_compare_without_labels_reports_no_labelled_part(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """No stored label yet: the agreement is reported, the labelled quality is null."""
    log_dir, _ = shadow_dirs
    assert cli(log_dir, tmp_path / "no-labels", tmp_path / "out") == EXIT_OK
    report = report_of(tmp_path / "out")
    assert report["labelled_rows"] == 0
    assert report["champion"]["labelled"] is None
    assert "No compared transaction has a label yet" in (
        (tmp_path / "out" / compare_job.HTML_FILE).read_text()
    )


def test_compare_exits_empty_without_shadow_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A window whose records carry no shadow score exits EXIT_EMPTY with one line."""
    from sproxxo.adapters.logfiles import FileSink
    from sproxxo.records import chunk_of

    FileSink(tmp_path / "log").write([chunk_of([record("tx-1", DAY, "approve")])])
    assert cli(tmp_path / "log", tmp_path / "labels", tmp_path / "out") == EXIT_EMPTY
    assert "no transaction in the window carries a shadow score" in capsys.readouterr().err


def test_compare_exits_empty_for_an_unknown_challenger(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A --challenger that scored nothing in the window exits EXIT_EMPTY."""
    assert cli(*shadow_dirs, tmp_path, "--challenger", "sproxxo-fraud:nope") == EXIT_EMPTY


def test_compare_refuses_an_unknown_decision(tmp_path: Path) -> None:
    """A shadow decision outside approve/review/decline exits EXIT_DATA."""
    from sproxxo.adapters.logfiles import FileSink

    chunks, _ = build()
    chunks[1]["shadow_decision"][0] = "block"
    FileSink(tmp_path / "log").write(chunks)
    assert cli(tmp_path / "log", tmp_path / "labels", tmp_path / "out") == EXIT_DATA


def test_compare_build_report_takes_the_latest_record_of_a_transaction() -> None:
    """A transaction logged twice (a retried request) counts once, with its latest decisions."""
    chunks, labels = build()
    frame = pd.concat([pd.DataFrame(c) for c in chunks[:2]], ignore_index=True)
    retried = frame[frame["transaction_id"] == "tx-s0-0"].assign(
        logged_at=(DAY.replace(hour=5)).isoformat(), shadow_decision="decline"
    )
    report = compare_job.build_report(
        pd.concat([frame, retried], ignore_index=True),
        labels,
        since=DAY,
        until=DAY.replace(day=2),
        costs=CostModel(),
    )
    assert report.rows == 30
    assert report.agreement.counts["approve"]["approve"] == 15
    assert report.agreement.counts["approve"]["decline"] == 2


def test_compare_load_report_refuses_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    """The gate's reader names the file when it is missing or not a compare.json."""
    with pytest.raises(DataSourceError, match="cannot be read"):
        compare_job.load_report(tmp_path / "absent.json")
    (tmp_path / "other.json").write_text(json.dumps({"rows": 3}))
    with pytest.raises(DataSourceError, match=r"is not a compare\.json"):
        compare_job.load_report(tmp_path / "other.json")
