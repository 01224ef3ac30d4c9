"""An ASGI app built on first use: the service mounts its model-management app through it,
so the web framework that app needs is imported neither by `bentoml serve`'s own process
nor before a worker is ready."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app if self._app is not None else await asyncio.to_thread(self.build)
        await app(scope, receive, send)
