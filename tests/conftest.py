"""Shared fixtures. The whole test session runs against throw-away state.

The environment is pointed at a temporary folder *before* any test module imports
bentoml or the service, so no test touches the developer's `.sproxxo/` state.
"""

from __future__ import annotations

import os
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


def build_fixture_models(*, rows: int = 20_000, max_iter: int = 30) -> list[str]:
    """Two small models made in process by the platform's own recipe (`train_candidate`)
    and saved into the session's store, the first promoted (signed, champion) the way the
    bootstrap does. No MLflow run: the training CLIs are tested in tests/cli/."""
    from sproxxo.adapters import bentoml_store as store
    from sproxxo.jobs.promote import promote_to_champion
    from sproxxo.ml.signing import LocalKeySigner
    from sproxxo.ml.training import train_candidate
    from sproxxo.sources.synthetic import generate

    tags = []
    for seed in (11, 12):
        candidate = train_candidate(
            generate(rows, seed=seed), source="synthetic", params={"max_iter": max_iter}, seed=seed
        )
        tag, _ = store.save_model(
            candidate.pipeline,
            candidate.metadata,
            candidate.reference,
            labels={"source": "synthetic", "git_sha": "fixture"},
        )
        store.set_stage(tag, "challenger")
        tags.append(tag)
    promote_to_champion(
        tags[0],
        mlflow_version="",
        tracking_uri="",
        signer=LocalKeySigner(SESSION_STATE / "state" / "keys"),
        promoted_by="bootstrap",
    )
    return tags


@pytest.fixture(scope="session")
def model_tags() -> list[str]:
    """Two small models in the session store; the first is the (signed) champion.

    Every server started afterwards verifies model signatures with the session's key."""
    tags = build_fixture_models()
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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `redis-server` on a free loopback port for the session (`.ci/run` installs
    Debian's package); tests use their own key prefixes or databases."""
    from load.procs import redis_answers, redis_server

    server = redis_server(tmp_path_factory.mktemp("redis")).start(timeout=30, ready=redis_answers)
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()
