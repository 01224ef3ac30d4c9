"""The process helper the benchmark and the suite share (`load/procs.py`)."""

from __future__ import annotations

import socket
from pathlib import Path

from load.procs import (
    busiest_share,
    cpu_by_process,
    cpu_ticks,
    redis_answers,
    redis_server,
    steal_percent,
)


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


SUPERVISOR = """
import signal, subprocess, sys, time
from pathlib import Path
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
Path(sys.argv[1]).write_text(str(worker.pid))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leaves its worker behind
time.sleep(120)
"""


def test_stop_leaves_no_worker_of_a_supervisor_that_exits_first(tmp_path: Path) -> None:
    """A supervisor that exits on SIGTERM without its worker (as uvicorn --workers did in
    the bench): stop() still ends the worker, reparented or not."""
    import os
    import sys
    import time

    from load.procs import Server

    script, pid_file = tmp_path / "supervisor.py", tmp_path / "worker.pid"
    script.write_text(SUPERVISOR)
    server = Server([sys.executable, str(script), str(pid_file)], {}, tmp_path / "s.log")
    server.start(timeout=30, ready=lambda s: pid_file.exists() and pid_file.read_text() != "")
    worker = int(pid_file.read_text())
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.05)
    assert not _alive(worker)
    assert os.getpid() != worker


def _alive(pid: int) -> bool:
    """Running (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_steal_is_read_from_the_cpu_line_and_shared_over_all_ticks() -> None:
    """The eighth value of /proc/stat's `cpu` line is steal; guest time (already inside
    user) is not counted twice; per-CPU lines are ignored."""
    before = "cpu  100 0 50 800 10 0 0 40 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    after = "cpu  150 0 60 860 10 0 0 60 9 0\ncpu0 9 9 9 9 9 9 9 9 9 9\n"
    assert cpu_ticks(before) == (40, 1000)
    assert cpu_ticks(after) == (60, 1140)
    assert steal_percent(cpu_ticks(before), cpu_ticks(after)) == 100.0 * 20 / 140
    assert steal_percent((5, 10), (5, 10)) == 0.0


def test_busiest_share_is_the_top_process_share_of_the_cpu_used_between_readings() -> None:
    """CPU used between two readings, per process: the busiest one's share; a worker that
    did nothing leaves the other at 100%; one process, or no CPU used, gives None."""
    assert busiest_share({1: 1.0, 2: 1.0}, {1: 3.0, 2: 1.5}) == 80.0
    assert busiest_share({1: 1.0, 2: 4.0}, {1: 2.0, 2: 4.0}) == 100.0
    assert busiest_share({}, {1: 0.5, 2: 1.5, 3: 2.0}) == 50.0
    assert busiest_share({1: 1.0}, {1: 2.0}) is None
    assert busiest_share({1: 1.0, 2: 1.0}, {1: 1.0, 2: 1.0}) is None


def test_cpu_by_process_reads_the_tree_of_a_real_process() -> None:
    """A child that burns CPU shows under its parent with CPU used; the parent too."""
    import os
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nx = sum(range(3_000_000))\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        used: dict[int, float] = {}
        deadline = time.monotonic() + 60  # the child's ~3M additions take well under that
        while used.get(child.pid, 0.0) == 0.0 and time.monotonic() < deadline:
            used = cpu_by_process(os.getpid())
            time.sleep(0.01)
        assert used[os.getpid()] > 0
        assert used[child.pid] > 0
    finally:
        child.communicate(b"")
