"""Processes the benchmark and the test suite start: servers on loopback ports, training runs,
and what /proc tells about them (process trees, memory, CPU time).

One helper for both (`load/bench.py`, `tests/`): a server starts in its own session, is ready
when its probe answers 200 (never a blind sleep), and is stopped with its whole process tree
(BentoML's workers are not in the server's process group and would outlive it, listening).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "service:FraudScorer"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_200(url: str, *, timeout: float = 1.0) -> bool:
    """Whether `url` answers 200 now (anything else, including a non-HTTP answer from
    whatever holds the port, is "not yet")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except (OSError, http.client.HTTPException):
        return False


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it."""


@dataclass
class Server:
    """A server process on a loopback port (`argv` gets `--port`), optionally pinned to
    `cpus` with taskset, its output in `log_path`."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    cpus: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def bentoml(
        cls,
        target: str = SERVICE,
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cpus: str = "",
    ) -> Server:
        """`bentoml serve TARGET` with its own BENTOML_HOME next to its log (linking the
        shared models and bentos): BentoML keeps its Prometheus multiprocess files there
        and wipes them at start-up, so two servers on one home clobber each other."""
        argv = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1"]
        env = dict(env or {})
        if "BENTOML_HOME" not in env and log_path is not None and "BENTOML_HOME" in os.environ:
            env["BENTOML_HOME"] = str(_private_home(Path(os.environ["BENTOML_HOME"]), log_path))
        return cls(argv, env, log_path, cpus)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(
        self,
        timeout: float = 120.0,
        *,
        probe: str = "/readyz",
        ready: Callable[[Server], bool] | None = None,
    ) -> Server:
        """Launch and wait until `probe` answers 200 (`/livez` for a server expected to come
        up not ready), or until `ready(self)` is true for a server that is not HTTP.

        A free port is only free when it was looked up: if another process took it first
        (BentoML's own process manager opens ZeroMQ sockets on random ports), the server
        exits with "address already in use" and is started again on a new port, twice at
        most. Whatever goes wrong, no process is left running."""
        for attempt in range(3):
            try:
                return self._start_once(timeout, probe=probe, ready=ready)
            except PortTaken:
                self.stop()
                if attempt == 2:
                    raise
                self.port = free_port()
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_once(
        self, timeout: float, *, probe: str, ready: Callable[[Server], bool] | None
    ) -> Server:
        argv = [*(["taskset", "-c", self.cpus] if self.cpus else []), *self.argv]
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
        with (self.log_path or Path(os.devnull)).open("ab") as log:  # the child keeps its own
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv
                [*argv, "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.tail()
                if "address already in use" in self._log_since(start).lower():
                    raise PortTaken(tail)
                raise RuntimeError(f"server exited with {self.process.returncode}: {tail}")
            if ready(self) if ready else answers_200(f"{self.url}{probe}"):
                return self
            with contextlib.suppress(subprocess.TimeoutExpired):  # a poll interval
                self.process.wait(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s: {self.tail()}")

    def _log_since(self, offset: int) -> str:
        if self.log_path and self.log_path.exists():
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        return ""

    def tail(self, n: int = 3000) -> str:
        """End of the server log."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the server (the session leader, not a wrapper) and wait; its exit code."""
        assert self.process is not None  # noqa: S101 - started before
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        """SIGKILL the server and every process under it, and whatever is left of its
        session: a supervisor that exits on SIGTERM before its workers (uvicorn's
        `--workers 2` in the FastAPI baseline) leaves them running, reparented to init,
        burning CPU under the next measurement."""
        if self.process is None:
            return
        if self.process.poll() is None:
            for pid in process_tree(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the session's group, leader gone or not
        if self.process.poll() is None:
            self.process.wait(10)

    def stop(self) -> None:
        """Terminate if still running, then make sure nothing of it is left."""
        if self.process and self.process.poll() is None:
            self.terminate()
        self.kill()


def redis_server(workdir: Path, *, maxmemory: str = "") -> Server:
    """A real `redis-server` (Debian's package) for a free loopback port, no persistence:
    `.start(ready=redis_answers)`, then `redis://127.0.0.1:<port>/0`."""
    argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir)]
    if maxmemory:
        argv += ["--maxmemory", maxmemory]
    return Server(argv, log_path=workdir / "redis.log")


def redis_answers(server: Server) -> bool:
    """Whether the Redis server answers PING now."""
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _private_home(shared: Path, log_path: Path) -> Path:
    home = log_path.parent / f"bentoml-home-{log_path.stem}-{os.getpid()}-{time.monotonic_ns()}"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("models", "bentos"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(shared / name, target_is_directory=True)
    return home


def train_model(env: dict[str, str], *, rows: int, seed: int = 42, **options: str) -> str:
    """Run `python -m training.train` in a subprocess with `env` added; returns the tag it
    printed. `options` become flags (`max_iter="60"` -> `--max-iter 60`; `"bootstrap": ""`
    -> `--bootstrap`)."""
    flags = []
    for name, value in options.items():
        flags.append(f"--{name.replace('_', '-')}")
        if value != "":
            flags.append(value)
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "training.train", "--rows", str(rows), "--seed", str(seed), *flags],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_mb(root: int) -> list[tuple[int, str, float, float]]:
    """(pid, short command, VmRSS MB, VmHWM MB) for each process of the tree."""
    out = []
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = {
            k: v.split()[0]
            for k, _, v in (line.partition(":") for line in status.splitlines())
            if v.strip()
        }
        if "VmRSS" in fields:
            rss = int(fields["VmRSS"]) / 1024
            out.append((pid, _short(cmd), rss, int(fields.get("VmHWM", fields["VmRSS"])) / 1024))
    return out


def _short(cmd: str) -> str:
    for marker in (
        "_bentoml_impl.worker.service",
        "bentoml serve",
        "load.baseline.app",
        "multiprocessing.spawn",
        "taskset",
    ):
        if marker in cmd:
            return marker.rpartition(".")[2] if "." in marker else marker
    return cmd[:40]


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by `root` and its descendants."""
    return sum(cpu_by_process(root).values())


def cpu_by_process(root: int) -> dict[int, float]:
    """User + system CPU seconds used so far by `root` and by each of its descendants."""
    used = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def worker_pids(root: int) -> list[int]:
    """The BentoML worker processes under `root` (`bentoml serve`)."""
    out = []
    for pid in process_tree(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_bentoml_impl.worker.service" in cmd:
            out.append(pid)
    return out


def busiest_share(before: dict[int, float], after: dict[int, float]) -> float | None:
    """Of the CPU the processes in `after` used since `before` (two `cpu_by_process`
    readings), the busiest one's share in percent; None with fewer than two processes or
    no CPU used. Workers that share one listening socket can all take their connections
    from one worker's accept loop (a client with a few keep-alive connections then loads
    one worker only): this says when it happened."""
    used = [after[pid] - before.get(pid, 0.0) for pid in after]
    busy = [u for u in used if u > 0]
    if len(used) < 2 or not busy:
        return None
    return 100.0 * max(busy) / sum(busy)


def cpu_ticks(stat: str | None = None) -> tuple[int, int]:
    """(steal, all) ticks of the machine's CPUs so far, from /proc/stat's `cpu` line (or
    `stat`, its text). Steal is time the hypervisor gave this VM's vCPUs to someone else:
    a latency run during which it is high measured the neighbours, not the server. All
    vCPUs together: the server's and the load generator's."""
    text = stat if stat is not None else Path("/proc/stat").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("cpu "))
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    fields = [int(v) for v in line.split()[1:9]]
    return fields[7], sum(fields)


def steal_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen between two `cpu_ticks` readings, in percent."""
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total > 0 else 0.0
