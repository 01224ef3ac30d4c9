"""ASGI pieces of the service's HTTP shell.

* `LazyApp`: an app built on first use: the service mounts its model-management app
  through it, so the web framework that app needs is imported neither by `bentoml serve`'s
  own process nor before a worker is ready.
* `ConnectionRecycler`: closes keep-alive connections past an age, so that they re-spread
  over the workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # the app answers 405


async def _unreached(_: Any) -> Response:  # pragma: no cover - `LazyApp` forwards instead
    return Response(status_code=500)


class LazyApp(Starlette):
    """The app `factory` returns, built once: by `build` (a thread beside start-up) or by
    the first request, which then waits for it off the event loop.

    It is a Starlette app whose routes name the built app's `paths` only for matching:
    BentoML mounts an app passively (a request reaches it only if one of its routes
    matches, else BentoML's own routes, such as its index page, answer), and it can tell
    the routes of Starlette apps alone."""

    def __init__(self, factory: Callable[[], Any], *, paths: Iterable[str]) -> None:
        super().__init__(
            routes=[Route(p, _unreached, methods=_METHODS) for p in dict.fromkeys(paths)]
        )
        self._factory = factory
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def build(self) -> Any:
        """The app, built now if it was not."""
        with self._lock:
            if self._app is None:
                self._app = self._factory()
            return self._app

    def build_beside(self) -> None:
        """`build` for a thread beside start-up: a failure is logged, not raised (the
        first request builds it again, and answers 500 if that fails too). Seen once in
        CI: pydantic's schema generation raced another thread's and warned."""
        try:
            self.build()
        except Exception:
            log.warning("admin app: built beside start-up failed; the first request retries",
                        exc_info=True)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app if self._app is not None else await asyncio.to_thread(self.build)
        await app(scope, receive, send)


_CLOSE = (b"connection", b"close")


def _half_to_one() -> float:
    return random.uniform(0.5, 1.0)  # noqa: S311 - spreads closes in time, no secret


class ConnectionRecycler:
    """Answers `Connection: close` on a keep-alive connection past its age, so that its
    client opens a new one. A connection's age is drawn between half and all of
    `max_age_seconds` when this worker sees its first request: a client's connections,
    opened together, then close apart and are not all reopened in one burst.

    BentoML's workers share one listening socket, and a worker's accept loop takes every
    connection pending when it wakes (BentoML issue #5426): a client that opens a few
    connections at once, as a gateway's pool or the bench's batch run does, can give
    them all to one worker while the other idles (measured: two workers, two connections,
    one worker took 100% of the CPU, README). A connection closed after its answer is
    reopened by the client and accepted by whichever worker is waiting, usually an idle
    one, so over a few ages the connections spread. 0 turns it off (one worker: nothing
    to spread). A connection is known by its peer's address and port (`scope["client"]`,
    set once per connection by uvicorn); an address rewritten from a trusted proxy's
    `X-Forwarded-For` has no port and names the caller, not the connection: such requests
    pass through. An entry whose deadline passed over an age ago (its connection gone, the
    address and port reused) counts as new; entries of connections gone are dropped once
    `max_tracked` is reached. A caller that pipelines requests (sends the next before the
    answer) can lose the ones after a `Connection: close` answer, as with any HTTP/1.1
    server that closes (RFC 9112, 9.3.2): the gateway must not pipeline."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_age_seconds: float,
        max_tracked: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[], float] = _half_to_one,
    ) -> None:
        self.app = app
        self.max_age = max_age_seconds
        self.max_tracked = max_tracked
        self.clock = clock
        self.spread = spread
        self.deadlines: dict[tuple[str, int], float] = {}  # peer -> when to close it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        peer = scope.get("client")
        if scope["type"] != "http" or self.max_age <= 0 or not peer or not peer[1]:
            await self.app(scope, receive, send)
            return
        key = (str(peer[0]), int(peer[1]))
        deadline, now = self.deadlines.get(key), self.clock()
        if deadline is None or now > deadline + self.max_age:
            if len(self.deadlines) >= self.max_tracked:
                self._forget_past(now - self.max_age)
            deadline = self.deadlines[key] = now + self.max_age * self.spread()

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.clock() >= deadline:
                self.deadlines.pop(key, None)
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)

    def _forget_past(self, horizon: float) -> None:
        """Drop the entries due before `horizon` (a live one is seen again as new and
        closed one age later than it would have been); if none is, the earlier half."""
        self.deadlines = {k: t for k, t in self.deadlines.items() if t >= horizon}
        if len(self.deadlines) >= self.max_tracked:
            late = sorted(self.deadlines.items(), key=lambda kv: kv[1])
            self.deadlines = dict(late[len(late) // 2 :])
