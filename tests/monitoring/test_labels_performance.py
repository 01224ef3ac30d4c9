"""Delayed labels: ingest, join to the log, and the performance report."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from monitoring import labels, performance
from sproxxo.errors import EXIT_DATA, EXIT_EMPTY, EXIT_OK
from sproxxo.jobs import labels as labels_job
from sproxxo.jobs import performance as performance_job
from sproxxo.jobs.cli import run as run_cli
from tests.monitoring.logs import draw, log_frame, write_log

ROWS = 2_000


@pytest.fixture
def labelled_log(tmp_path: Path) -> tuple[Path, Path]:
    """Two days of logged predictions and a CSV labelling 1,500 of them (+10 unknown ids)."""
    raw = draw(ROWS, seed=5, half=1)
    log = log_frame(raw, hours=48)
    log_dir = tmp_path / "predictions"
    write_log(log, log_dir)
    logged = pd.to_datetime(log["logged_at"], utc=True)
    file = pd.DataFrame(
        {
            "transaction_id": log["transaction_id"],
            "label": raw["is_fraud"].map({0: "false", 1: "true"}),
            "reported_at": (
                logged + pd.to_timedelta(range(ROWS), unit="min") + timedelta(days=1)
            ).map(lambda t: t.isoformat()),
        }
    ).iloc[:1_500]
    unknown = pd.DataFrame(
        {
            "transaction_id": [f"ghost-{i}" for i in range(10)],
            "label": "false",
            "reported_at": "2026-03-05T00:00:00+00:00",
        }
    )
    path = tmp_path / "labels.csv"
    pd.concat([file, unknown]).to_csv(path, index=False)
    return log_dir, path


def ingest(log_dir: Path, path: Path, labels_dir: Path) -> int:
    """Run `labels ingest` in-process."""
    return run_cli(
        labels.main,
        ["ingest", str(path), "--log-dir", str(log_dir), "--labels-dir", str(labels_dir)],
    )


def test_labels_ingest_stores_joined_parquet(
    labelled_log: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ingest joins each label to its prediction and counts the unmatched ones."""
    log_dir, path = labelled_log
    assert ingest(log_dir, path, tmp_path / "labels") == EXIT_OK
    stored = labels_job.read_labels(tmp_path / "labels")
    assert len(stored) == 1_500
    assert {"logged_at", "fraud_probability", "decision", "is_fraud"} <= set(stored.columns)
    assert "10 without a logged prediction" in capsys.readouterr().out


def test_labels_ingest_exits_data_on_missing_columns(
    labelled_log: tuple[Path, Path], tmp_path: Path
) -> None:
    """A label file without reported_at exits EXIT_DATA."""
    log_dir, path = labelled_log
    bad = tmp_path / "bad.csv"
    pd.read_csv(path).drop(columns=["reported_at"]).to_csv(bad, index=False)
    assert ingest(log_dir, bad, tmp_path / "labels") == EXIT_DATA


def test_labels_ingest_exits_empty_when_nothing_matches(
    labelled_log: tuple[Path, Path], tmp_path: Path
) -> None:
    """Labels for transactions absent from the log exit EXIT_EMPTY."""
    log_dir, _ = labelled_log
    ghost = tmp_path / "ghost.csv"
    pd.DataFrame(
        {"transaction_id": ["x"], "is_fraud": [1], "reported_at": ["2026-03-05T00:00:00Z"]}
    ).to_csv(ghost, index=False)
    assert ingest(log_dir, ghost, tmp_path / "labels") == EXIT_EMPTY


def test_performance_reports_by_day_with_label_delay(
    labelled_log: tuple[Path, Path], tmp_path: Path
) -> None:
    """The report has both days, precision/recall/AP and a delay of about a day."""
    log_dir, path = labelled_log
    assert ingest(log_dir, path, tmp_path / "labels") == EXIT_OK
    out = tmp_path / "perf"
    code = run_cli(
        performance.main,
        [
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-04",
            "--labels-dir",
            str(tmp_path / "labels"),
            "--out",
            str(out),
        ],
    )
    assert code == EXIT_OK
    report = json.loads((out / performance_job.JSON_FILE).read_text())
    assert sorted(report["by_day"]) == ["2026-03-01", "2026-03-02"]
    assert report["overall"]["rows"] == 1_500
    assert report["overall"]["frauds"] > 0
    assert report["overall"]["average_precision"] is not None
    assert 24.0 < report["label_delay_hours"]["median"] < 24.0 + 1_500 / 60
    assert (out / performance_job.HTML_FILE).stat().st_size > 10_000


def test_performance_exits_empty_without_labels(tmp_path: Path) -> None:
    """No stored labels exit EXIT_EMPTY."""
    code = run_cli(
        performance.main, ["--labels-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    )
    assert code == EXIT_EMPTY


def test_performance_leaves_precision_empty_without_flags() -> None:
    """A slice with no flagged transaction has no precision (not zero)."""
    frame = pd.DataFrame(
        {"is_fraud": [0, 1], "decision": ["approve", "approve"], "fraud_probability": [0.1, 0.2]}
    )
    result = performance_job.performance(frame)
    assert result.precision is None
    assert result.recall == 0.0
    assert result.average_precision == pytest.approx(1.0)
