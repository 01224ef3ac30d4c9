"""What BentoML's OpenTelemetry middleware costs a request, in process (prints figures).

    python -m load.middleware_bench [--requests 20000]

BentoML 1.4 wraps every route in `opentelemetry.instrumentation.asgi.OpenTelemetryMiddleware`
whatever the sample rate. This drives a minimal ASGI app (one POST answered with `{}`)
directly, without sockets, three ways: bare, inside the middleware as BentoML configures it
with tracing unsampled (its default sample rate, 0), and inside it with every URL excluded
(the service's default, `SPROXXO_TRACE_REQUESTS=false`). Microseconds per request, best of
three runs, pinned to whatever core the caller chose.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]
SCOPE: Message = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/predict",
    "raw_path": b"/predict",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 3000),
}


async def _app(scope: Message, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def _send(message: Message) -> None:
    return None


def apps() -> dict[str, App]:
    """The three variants, the middleware built with BentoML's arguments."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.util.http import ExcludeList, parse_excluded_urls

    from sproxxo.serving.runtime import UNTRACED

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))

    def wrapped(excluded: ExcludeList) -> App:
        app: App = OpenTelemetryMiddleware(
            _app,
            excluded_urls=excluded,
            default_span_details=None,
            server_request_hook=lambda span, scope: None,
            client_request_hook=None,
            tracer_provider=provider,
        )
        return app

    return {
        "bare app": _app,
        "middleware, unsampled (BentoML's default)": wrapped(ExcludeList([])),
        "middleware, every URL excluded (the service's default)": wrapped(
            parse_excluded_urls(UNTRACED)
        ),
    }


def per_request_us(app: App, requests: int) -> float:
    """Best of three runs of `requests` calls, microseconds per call."""

    async def run() -> float:
        for _ in range(min(requests, 1_000)):  # warm
            await app(dict(SCOPE), _receive, _send)
        t0 = time.perf_counter()
        for _ in range(requests):
            await app(dict(SCOPE), _receive, _send)
        return (time.perf_counter() - t0) / requests * 1e6

    return min(asyncio.run(run()) for _ in range(3))


def table(requests: int = 20_000) -> dict[str, float]:
    """Microseconds per request of each variant."""
    return {name: per_request_us(app, requests) for name, app in apps().items()}


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    p = argparse.ArgumentParser(prog="python -m load.middleware_bench", description=__doc__)
    p.add_argument("--requests", type=int, default=20_000)
    args = p.parse_args(argv)
    print("| ASGI app | µs per request |")
    print("|---|---:|")
    for name, us in table(args.requests).items():
        print(f"| {name} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
