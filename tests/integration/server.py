"""Servers for the integration tests: `load.procs.Server` (the one process helper the
benchmark uses too), plus what only tests need: a request held half-sent, and the service's
JSON event lines read back from a server's output."""

from __future__ import annotations

import json
import socket
from typing import Any

from load.procs import ROOT, Server

__all__ = ["ROOT", "HeldUpload", "Server", "events_in"]


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
