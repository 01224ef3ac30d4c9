"""The process helper the benchmark and the suite share (`load/procs.py`)."""

from __future__ import annotations

import socket
from pathlib import Path

from load.procs import redis_answers, redis_server


def test_a_server_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    """The port looked up as free is taken by someone else before the server binds it:
    the server exits with "address already in use" and is started again elsewhere."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = int(taken.getsockname()[1])
        server = redis_server(tmp_path)
        server.port = busy
        try:
            server.start(timeout=30, ready=redis_answers)
            assert server.port != busy
            assert redis_answers(server)
            assert "already in use" in server.tail().lower()
        finally:
            server.stop()
    assert server.process is not None
    assert server.process.poll() is not None
