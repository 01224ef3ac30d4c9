"""A real `bentoml serve` per module, on a loopback port, with its own state folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server


@pytest.fixture(scope="module")
def server_state(tmp_path_factory: pytest.TempPathFactory, session_state: Path) -> Path:
    """A state folder of this module's own (prediction log, active model)."""
    return tmp_path_factory.mktemp("server-state")


@pytest.fixture(scope="module")
def server(model_tags: list[str], server_state: Path) -> Iterator[Server]:
    """A running service over the session's trained models."""
    srv = Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(server_state),
            "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.2",
            "SPROXXO_TRACE_REQUESTS": "false",  # the default, whatever a developer's .env says
        },
        log_path=server_state / "server.log",
    )
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(server_state / "predictions", ignore_errors=True)
