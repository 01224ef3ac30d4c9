"""Shared fixtures. The whole test session runs against throw-away state.

The environment is pointed at a temporary folder *before* any test module imports
bentoml or the service, so no test touches the developer's `.sproxxo/` state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ADMIN_TOKEN, make_transaction

ROOT = Path(__file__).resolve().parents[1]
# setdefault: a second import of this module (e.g. as `tests.conftest`) reuses the folder.
SESSION_STATE = Path(
    os.environ.setdefault("SPROXXO_TEST_STATE", tempfile.mkdtemp(prefix="sproxxo-tests-"))
)

TEST_ENV = {
    "BENTOML_HOME": str(SESSION_STATE / "bentoml"),
    "SPROXXO_STATE_DIR": str(SESSION_STATE / "state"),
    "MLFLOW_TRACKING_URI": f"sqlite:///{SESSION_STATE / 'mlflow.db'}",
    "SPROXXO_ENV": "dev",
    "SPROXXO_ADMIN_TOKEN": ADMIN_TOKEN,
    "SPROXXO_LOG_LEVEL": "WARNING",
    "OMP_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "true",
}
os.environ.update(TEST_ENV)


def train_model(
    env: dict[str, str],
    *,
    seed: int,
    rows: int = 30_000,
    max_iter: int = 60,
    bootstrap: bool = False,
) -> str:
    """Run the training CLI in a subprocess; returns the printed tag."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--rows",
            str(rows),
            "--seed",
            str(seed),
            "--max-iter",
            str(max_iter),
            *(["--bootstrap"] if bootstrap else []),
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def model_tags() -> list[str]:
    """Two small models trained into the session store; the first is the (signed) champion.

    Every server started afterwards verifies model signatures with the session's key."""
    tags = [train_model(TEST_ENV, seed=11, bootstrap=True), train_model(TEST_ENV, seed=12)]
    public = SESSION_STATE / "state" / "keys" / "model-signing.pub"
    os.environ["SPROXXO_MODEL_VERIFY_KEY"] = public.read_text()
    return tags


@pytest.fixture
def transaction() -> dict[str, Any]:
    """A fresh valid transaction body."""
    return make_transaction()


@pytest.fixture(scope="session")
def session_state() -> Iterator[Path]:
    """The session's temporary state folder."""
    return SESSION_STATE
