"""`python -m monitoring.drift`: outputs, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitoring import drift
from sproxxo.adapters.evidently import DRIFT_CRITERIA
from sproxxo.errors import EXIT_DATA, EXIT_DRIFT, EXIT_EMPTY, EXIT_MODEL, EXIT_OK
from sproxxo.jobs import drift as drift_job
from sproxxo.jobs.cli import run as run_cli
from tests.monitoring.logs import current_frame, write_log, write_model_dir

ROOT = Path(__file__).resolve().parents[2]
DAY = ["--since", "2026-03-01", "--until", "2026-03-02"]
EXPORTED = ROOT / "monitoring" / "exported_metrics.txt"


def cli(*args: str | Path) -> int:
    """Run the drift CLI in-process the way `python -m` does."""
    return run_cli(drift.main, [str(a) for a in args])


def test_drift_cli_writes_html_json_and_textfile(
    steady_log: Path, model_dir: Path, tmp_path: Path
) -> None:
    """A steady day exits 0 and writes the three outputs as a real subprocess."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring.drift",
            "--model-dir",
            str(model_dir),
            "--log-dir",
            str(steady_log),
            *DAY,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    summary = json.loads((out / drift_job.SUMMARY_FILE).read_text())
    assert summary["drifted_features"] == []
    assert summary["current_rows"] == 5_000
    assert (out / drift_job.HTML_FILE).stat().st_size > 100_000
    assert "Traceback" not in result.stderr


def test_drift_cli_textfile_holds_exactly_the_exported_names(
    steady_log: Path, model_dir: Path, tmp_path: Path
) -> None:
    """drift.prom defines the metric names listed in exported_metrics.txt, no others."""
    out = tmp_path / "out"
    assert cli("--model-dir", model_dir, "--log-dir", steady_log, *DAY, "--out", out) == 0
    text = (out / drift_job.TEXTFILE).read_text()
    written = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    listed = {
        line.strip()
        for line in EXPORTED.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert written == listed


def test_drift_cli_summary_lists_each_columns_criterion(
    steady_log: Path, model_dir: Path, tmp_path: Path
) -> None:
    """drift_summary.json gives each column's unit, effect size and threshold, test and
    p-value; on a one-day window weekday is untested and 12 features count."""
    out = tmp_path / "out"
    assert cli("--model-dir", model_dir, "--log-dir", steady_log, *DAY, "--out", out) == EXIT_OK
    summary = json.loads((out / drift_job.SUMMARY_FILE).read_text())
    columns = {c["column"]: c for c in summary["columns"]}
    assert set(columns) == set(DRIFT_CRITERIA)
    age = columns["customer_age"]
    assert (age["unit"], age["method"], age["test"]) == ("card", "wasserstein", "ks")
    assert age["threshold"] == DRIFT_CRITERIA["customer_age"].threshold
    assert age["p_value_threshold"] == 0.001
    assert age["current_rows"] < summary["current_rows"]
    assert columns["weekday"]["tested"] is False
    assert summary["window_hours"] == 24.0
    assert len(summary["tested_features"]) == 12


def test_drift_cli_exits_7_on_a_shifted_window(
    log_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """The planted shift exits EXIT_DRIFT and lists the drifted features."""
    write_log(current_frame(seed=4, shifted=True), log_dir)
    out = tmp_path / "out"
    assert cli("--model-dir", model_dir, "--log-dir", log_dir, *DAY, "--out", out) == EXIT_DRIFT
    summary = json.loads((out / drift_job.SUMMARY_FILE).read_text())
    assert summary["drift_detected"] is True
    assert 'sproxxo_drift_detected{model_version="unknown"} 1.0' in (
        (out / drift_job.TEXTFILE).read_text()
    )


def test_drift_cli_exits_empty_on_a_log_without_rows(
    log_dir: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty log exits EXIT_EMPTY with a one-line message."""
    code = cli("--model-dir", model_dir, "--log-dir", log_dir, *DAY, "--out", tmp_path)
    assert code == EXIT_EMPTY
    assert "no rows" in capsys.readouterr().err


def test_drift_cli_exits_empty_on_a_window_outside_the_log(
    steady_log: Path, model_dir: Path, tmp_path: Path
) -> None:
    """A window with no logged rows exits EXIT_EMPTY."""
    code = cli(
        "--model-dir",
        model_dir,
        "--log-dir",
        steady_log,
        "--since",
        "2026-04-01",
        "--until",
        "2026-04-02",
        "--out",
        tmp_path,
    )
    assert code == EXIT_EMPTY


def test_drift_cli_exits_empty_on_a_tiny_window(
    log_dir: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fewer than 200 rows exits EXIT_EMPTY and says how many there were."""
    write_log(current_frame(120), log_dir)
    code = cli("--model-dir", model_dir, "--log-dir", log_dir, *DAY, "--out", tmp_path)
    assert code == EXIT_EMPTY
    assert "120 rows" in capsys.readouterr().err


def test_drift_cli_exits_data_on_missing_columns(
    log_dir: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log without feature columns exits EXIT_DATA naming them."""
    write_log(current_frame(300).drop(columns=["hour", "distance_km"]), log_dir)
    code = cli("--model-dir", model_dir, "--log-dir", log_dir, *DAY, "--out", tmp_path)
    assert code == EXIT_DATA
    assert "distance_km" in capsys.readouterr().err


def test_drift_cli_exits_data_on_a_missing_log_folder(model_dir: Path, tmp_path: Path) -> None:
    """A log folder that does not exist exits EXIT_DATA."""
    code = cli("--model-dir", model_dir, "--log-dir", tmp_path / "nope", *DAY, "--out", tmp_path)
    assert code == EXIT_DATA


def test_drift_cli_exits_model_without_reference(
    steady_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model folder without reference.parquet exits EXIT_MODEL."""
    bare = write_model_dir(tmp_path / "bare", None)
    code = cli("--model-dir", bare, "--log-dir", steady_log, *DAY, "--out", tmp_path)
    assert code == EXIT_MODEL
    assert "reference" in capsys.readouterr().err


def test_drift_cli_exits_model_for_an_unknown_tag(steady_log: Path, tmp_path: Path) -> None:
    """A tag that is not in the store exits EXIT_MODEL."""
    code = cli(
        "--model", "sproxxo-fraud:doesnotexist", "--log-dir", steady_log, *DAY, "--out", tmp_path
    )
    assert code == EXIT_MODEL


def test_drift_cli_exits_data_on_a_bad_time(model_dir: Path, steady_log: Path) -> None:
    """An unparsable --since exits EXIT_DATA."""
    assert cli("--model-dir", model_dir, "--log-dir", steady_log, "--since", "yesterday") == (
        EXIT_DATA
    )
