"""Start and stop a real `bentoml serve` on a loopback port (used by integration tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from load.bench import process_tree

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `bentoml serve` process and how to reach it."""

    target: str = "service:FraudScorer"
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _isolated_home(self) -> None:
        # BentoML keeps its Prometheus multiprocess files under BENTOML_HOME and wipes them
        # at start-up: two servers on one home clobber each other's metrics. Give each
        # server its own home that links to the shared models and bentos.
        if "BENTOML_HOME" in self.env or self.log_path is None:
            return
        shared = Path(os.environ["BENTOML_HOME"])
        home = self.log_path.parent / f"bentoml-home-{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        for name in ("models", "bentos"):
            (shared / name).mkdir(parents=True, exist_ok=True)
            if not (home / name).exists():
                (home / name).symlink_to(shared / name, target_is_directory=True)
        self.env = {**self.env, "BENTOML_HOME": str(home)}

    def start(self, timeout: float = 90.0, *, probe: str = "/readyz") -> Server:
        """Launch and wait until `probe` answers 200 (never a blind sleep); `/livez` for a
        server that is expected to come up not ready."""
        self._isolated_home()
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with (self.log_path or Path(os.devnull)).open("ab") as log:  # the child keeps its own
            self.process = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}{probe}", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s: {self.tail()}")

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                self.target,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, n: int = 3000) -> str:
        """End of the server log."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM the server process (group leader) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        """SIGKILL the server and every process under it: BentoML's workers do not sit in
        the server's process group and would outlive it, listening, as orphans."""
        if self.process and self.process.poll() is None:
            tree = process_tree(self.process.pid)
            os.killpg(self.process.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Terminate if still running."""
        if self.process and self.process.poll() is None:
            self.terminate()
        self.kill()


class HeldUpload:
    """A POST whose body is sent only in part and then held: the server cannot answer it
    from the body, so the request is slow by construction on any machine (until `close`)."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[: len(body) // 2])

    def status(self) -> int:
        """Block until the server answers (it can only be a refusal or a timeout)."""
        data = b""
        while b"\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed without an answer: {data!r}")
            data += chunk
        return int(data.split(b" ", 2)[1])

    def close(self) -> None:
        """Give up the request (the server sees a disconnect)."""
        self.sock.close()


def events_in(log: str) -> list[dict[str, Any]]:
    """The service's JSON event lines in a server's output."""
    found = []
    for line in log.splitlines():
        if line.startswith("{") and '"event"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found
