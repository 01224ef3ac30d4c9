"""Fixtures shared by the config tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.config.http_recorder import Recorder, start


@pytest.fixture
def recording_server() -> Iterator[Recorder]:
    """A server on a free local port that answers 200 with `recorder.answer` (a valid
    /predict answer unless a test changes it) and records every request."""
    recorder, server, thread = start({"valid": True, "decision": "approve"})
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
