"""A local HTTP server that records what deploy scripts and load runs send it (tests only;
the `recording_server` fixture in conftest.py starts one)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """The server's URL, the requests it saw, and the JSON it answers to every request."""

    url: str
    answer: dict[str, Any]
    seen: list[Seen] = field(default_factory=list)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as locust's FastHttpUser expects

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            recorder.seen.append(Seen(self.command, self.path, headers, body))
            payload = json.dumps(recorder.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


def start(answer: dict[str, Any]) -> tuple[Recorder, ThreadingHTTPServer, threading.Thread]:
    """Serve on a free local port, answering 200 with `answer` to every request."""
    recorder = Recorder(url="", answer=answer)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return recorder, server, thread
