"""The training CLIs as subprocesses: train, evaluate, promote, and their exit codes on bad input.

Everything runs against a throw-away BentoML store, MLflow sqlite database and state folder.
Independent commands run concurrently (one module-scoped fixture) to keep the module short.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from sproxxo.errors import EXIT_DATA, EXIT_GATE, EXIT_MODEL, EXIT_TRACKING, EXIT_USAGE
from sproxxo.features import FEATURE_NAMES
from sproxxo.ml.bundle import PIPELINE_FILE, sha256_file
from sproxxo.ml.compiled_trees import PARITY_TOLERANCE
from sproxxo.ml.signing import check_signature
from sproxxo.sources.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 240
TRAIN_ROWS = "20000"


@dataclass(frozen=True)
class Result:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENTOML_HOME=str(state / "bentoml"),
        MLFLOW_TRACKING_URI=f"sqlite:///{state / 'mlflow.db'}",
        SPROXXO_STATE_DIR=str(state),
        SPROXXO_LOG_LEVEL="WARNING",
        # Fail fast against the unreachable tracker instead of retrying with backoff.
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="5",
        BENTOML_DO_NOT_TRACK="true",
        MLFLOW_ENABLE_TELEMETRY="false",
    )
    return env


def _start(env: dict[str, str], module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return Result(proc.returncode, out, err)


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    wrong = folder / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    empty = folder / "empty.csv"
    empty.write_text(",".join(generate(5).columns) + "\n")
    corrupt = folder / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 definitely not a parquet file")
    return {"missing": folder / "absent.csv", "wrong": wrong, "empty": empty, "corrupt": corrupt}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every CLI run of this module: a good model, a worse one, evaluate, promote, failures."""
    state = tmp_path_factory.mktemp("cli-state")
    env = _env(state)
    files = _bad_inputs(state / "inputs")
    train = ("training.train", "--rows", TRAIN_ROWS)

    # Phase 1: the first model, and every failure that needs no model, concurrently.
    good = _start(env, *train, "--max-iter", "30", "--bootstrap")
    fresh = _env(state / "fresh")  # a store with no champion, trained without --bootstrap
    plain = _start(fresh, *train, "--max-iter", "5")
    in_ci = _start({**env, "GITHUB_ACTIONS": "true"}, *train, "--bootstrap")
    failing = {
        name: _start(env, *train, "--source", "file", "--path", str(path))
        for name, path in files.items()
    }
    failing["mlflow"] = _start(
        {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, *train, "--max-iter", "5"
    )
    failing["force"] = _start(env, "training.promote", "sproxxo-fraud:whatever", "--force")
    results: dict[str, Any] = {"good": _finish(good), "plain": _finish(plain)}
    results["in_ci"] = _finish(in_ci)
    results |= {name: _finish(proc) for name, proc in failing.items()}
    assert results["good"].returncode == 0, results["good"].stderr[-3000:]
    good_tag = results["good"].stdout.strip().splitlines()[-1]

    # Phase 2: a deliberately weak model, evaluation of the first, an unknown tag.
    worse = _start(env, *train, "--max-iter", "1", "--seed", "3", "--stage", "candidate")
    evaluate = _start(env, "training.evaluate", "--model", good_tag, "--rows", TRAIN_ROWS)
    unknown = _start(env, "training.evaluate", "--model", "sproxxo-fraud:nosuchversion00")
    results |= {"worse": _finish(worse), "evaluate": _finish(evaluate), "unknown": _finish(unknown)}
    assert results["worse"].returncode == 0, results["worse"].stderr[-3000:]
    worse_tag = results["worse"].stdout.strip().splitlines()[-1]

    # Phase 3: the gate must refuse the weak model.
    results["promote"] = _finish(_start(env, "training.promote", worse_tag, "--rows", TRAIN_ROWS))
    results |= {"state": state, "good_tag": good_tag, "worse_tag": worse_tag}
    return results


def _model_yaml(runs: dict[str, Any], tag: str) -> dict[str, Any]:
    name, version = tag.split(":")
    path = runs["state"] / "bentoml" / "models" / name / version / "model.yaml"
    return yaml.safe_load(path.read_text())


def test_train_prints_tag_last(runs: dict[str, Any]) -> None:
    """training.train exits 0 and prints the new model's tag as the last stdout line."""
    result = runs["good"]
    assert result.returncode == 0
    assert runs["good_tag"].startswith("sproxxo-fraud:")
    assert len(runs["good_tag"].split(":")[1]) >= 8
    assert "Traceback" not in result.stderr


def test_train_stores_model_with_labels(runs: dict[str, Any]) -> None:
    """The first model is in the store, labelled as the bootstrap champion from synthetic data."""
    info = _model_yaml(runs, runs["good_tag"])
    assert info["name"] == "sproxxo-fraud"
    labels = info["labels"]
    assert labels["stage"] == "champion"
    assert labels["promoted_by"] == "bootstrap"
    assert labels["source"] == "synthetic"
    assert labels["mlflow_version"] == "1"
    assert labels["git_sha"]


def test_train_without_bootstrap_never_makes_a_champion(runs: dict[str, Any]) -> None:
    """On an empty store, training alone registers a challenger: no champion label, no
    MLflow champion alias (only the gate, or an explicit --bootstrap, promotes)."""
    assert runs["plain"].returncode == 0, runs["plain"].stderr[-2000:]
    fresh = runs["state"] / "fresh"
    tag = runs["plain"].stdout.strip().splitlines()[-1]
    name, version = tag.split(":")
    info = yaml.safe_load(
        (fresh / "bentoml" / "models" / name / version / "model.yaml").read_text()
    )
    assert info["labels"]["stage"] == "challenger"
    assert "signature" not in info["metadata"]
    aliases = _mlflow_aliases(fresh / "mlflow.db")
    assert aliases == {"challenger": "1"}


def test_bootstrap_is_refused_on_github_actions(runs: dict[str, Any]) -> None:
    """--bootstrap in a GitHub Actions job is refused by the promotion rules (exit 6),
    before any data is read: CI imports the champion instead."""
    result = runs["in_ci"]
    assert result.returncode == EXIT_GATE
    assert "--bootstrap is refused in CI" in result.stderr


def test_bootstrap_champion_is_signed_and_aliased(runs: dict[str, Any]) -> None:
    """The bootstrapped champion carries a signature that verifies with the dev key pair,
    and MLflow's champion alias points at it."""
    meta = _model_yaml(runs, runs["good_tag"])["metadata"]
    public = (runs["state"] / "keys" / "model-signing.pub").read_text()
    assert check_signature(meta, public, required=True) is None
    assert _mlflow_aliases(runs["state"] / "mlflow.db")["champion"] == meta["mlflow_version"]


def _mlflow_aliases(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT alias, version FROM registered_model_aliases").fetchall()
    return {alias: str(version) for alias, version in rows}


def test_train_stores_auditable_metadata(runs: dict[str, Any]) -> None:
    """The store's metadata records features, data, params, policy, metrics, versions, checksums."""
    meta = _model_yaml(runs, runs["good_tag"])["metadata"]
    assert tuple(meta["feature_names"]) == FEATURE_NAMES
    assert meta["data"]["rows"] == int(TRAIN_ROWS)
    assert meta["data"]["source"] == "synthetic"
    assert len(meta["data"]["sha256"]) == 64
    assert meta["params"]["max_iter"] == 30
    assert meta["params"]["seed"] == 42
    assert 0 <= meta["policy"]["review_at"] <= meta["policy"]["decline_at"] <= 1
    assert meta["metrics"]["roc_auc"] > 0.9
    assert meta["metrics"]["compiled_parity_max_abs_diff"] <= PARITY_TOLERANCE
    assert {"python", "scikit-learn", "numpy"} <= set(meta["libraries"])
    assert meta["mlflow_run_id"]
    assert meta["mlflow_version"] == "1"
    name, version = runs["good_tag"].split(":")
    folder = runs["state"] / "bentoml" / "models" / name / version
    assert meta["checksums"][PIPELINE_FILE] == sha256_file(folder / PIPELINE_FILE)
    reference = pd.read_parquet(folder / "reference.parquet")
    assert set(FEATURE_NAMES) <= set(reference.columns)


def test_train_tracks_run_in_mlflow_sqlite(runs: dict[str, Any]) -> None:
    """The MLflow run went to the sqlite database given by MLFLOW_TRACKING_URI."""
    assert (runs["state"] / "mlflow.db").stat().st_size > 0
    assert any((runs["state"] / "mlartifacts").rglob("*.png"))


def test_train_second_model_is_not_champion(runs: dict[str, Any]) -> None:
    """A later model keeps its requested stage; the first stays champion."""
    assert _model_yaml(runs, runs["worse_tag"])["labels"]["stage"] == "candidate"
    assert _model_yaml(runs, runs["good_tag"])["labels"]["stage"] == "champion"


def test_evaluate_prints_metrics_json(runs: dict[str, Any]) -> None:
    """training.evaluate prints JSON naming the model with roc_auc among its metrics."""
    result = runs["evaluate"]
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["model"] == runs["good_tag"]
    assert report["metrics"]["rows"] == int(TRAIN_ROWS)
    assert 0.9 < report["metrics"]["roc_auc"] <= 1.0
    assert {"average_precision", "expected_cost", "recall_at_review"} <= set(report["metrics"])


def test_promote_refuses_worse_model(runs: dict[str, Any]) -> None:
    """The gate refuses a worse candidate: exit 6, the failures reported, champion unchanged."""
    result = runs["promote"]
    assert result.returncode == EXIT_GATE, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["candidate"] == runs["worse_tag"]
    assert report["champion"] == runs["good_tag"]
    assert any("vs champion" in failure for failure in report["gate"]["failures"])
    assert "not promoted" in result.stderr
    assert "Traceback" not in result.stderr
    assert _model_yaml(runs, runs["good_tag"])["labels"]["stage"] == "champion"
    assert _model_yaml(runs, runs["worse_tag"])["labels"]["stage"] == "candidate"


def test_promote_force_without_reason_is_usage_error(runs: dict[str, Any]) -> None:
    """--force without --reason is refused by argparse with exit code 2."""
    result = runs["force"]
    assert result.returncode == EXIT_USAGE
    assert "--force needs --reason" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", EXIT_DATA, "no such file"),
        ("wrong", EXIT_DATA, "missing columns"),
        ("empty", EXIT_DATA, "no rows"),
        ("corrupt", EXIT_DATA, "cannot be read"),
        ("unknown", EXIT_MODEL, "not in the BentoML store"),
        ("mlflow", EXIT_TRACKING, "MLflow at http://127.0.0.1:9 is unusable"),
    ],
)
def test_cli_bad_input_clear_error_and_exit_code(
    runs: dict[str, Any], case: str, code: int, message: str
) -> None:
    """Bad input gives a one-line 'error:' message, a distinct exit code and no traceback."""
    result = runs[case]
    assert result.returncode == code, result.stderr[-2000:]
    assert "error: " in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""


def test_cli_failed_training_stores_nothing(runs: dict[str, Any]) -> None:
    """Failed training runs leave only the two successful models in the store."""
    versions = runs["state"] / "bentoml" / "models" / "sproxxo-fraud"
    stored = {p.name for p in versions.iterdir() if (p / "model.yaml").is_file()}
    assert stored == {runs["good_tag"].split(":")[1], runs["worse_tag"].split(":")[1]}
