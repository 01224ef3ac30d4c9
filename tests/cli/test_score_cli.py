"""`python -m training.score`: bulk re-scoring as a subprocess over the session's models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from sproxxo.errors import EXIT_DATA

ROOT = Path(__file__).resolve().parents[2]


def score(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.score", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_score_writes_answers_and_prints_a_summary(model_tags: list[str], tmp_path: Path) -> None:
    out = tmp_path / "rescored" / "day.parquet"
    done = score("--model", model_tags[0], "--source", "synthetic", "--rows", "5000",
                 "--seed", "3", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    answers = pd.read_parquet(out)
    assert summary["rows"] == len(answers) == 5_000
    assert summary["decisions"] == answers["decision"].value_counts().to_dict()
    assert summary["rows_per_second"] > 0
    assert set(answers["model_tag"]) == {model_tags[0]}
    assert answers["transaction_id"].is_unique
    assert "scored 5,000/5,000 rows" in done.stderr


def test_score_refuses_an_unknown_output_format(model_tags: list[str], tmp_path: Path) -> None:
    done = score("--model", model_tags[0], "--source", "synthetic", "--rows", "200",
                 "--out", str(tmp_path / "day.xlsx"))  # fmt: skip
    assert done.returncode == EXIT_DATA
    assert "write .parquet or .csv" in done.stderr
    assert "Traceback" not in done.stderr
