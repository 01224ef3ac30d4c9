"""`LazyApp` builds its app once, on the first request or `build`, and names the built
app's paths as its routes (what BentoML's passive mount matches on)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Match, Route
from starlette.testclient import TestClient

from sproxxo.serving.asgi import LazyApp


def test_lazy_app_builds_once_on_first_request_and_forwards() -> None:
    built: list[int] = []

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['name']}")

    def factory() -> Starlette:
        built.append(1)
        return Starlette(routes=[Route("/hello/{name}", hello)])

    lazy = LazyApp(factory, paths=["/hello/{name}", "/hello/{name}"])
    assert built == []
    with TestClient(lazy) as client:
        assert client.get("/hello/ana").text == "hello ana"
        assert client.get("/hello/bo").text == "hello bo"
    assert lazy.build() is lazy.build()
    assert built == [1]


def test_lazy_app_routes_match_only_the_named_paths() -> None:
    lazy = LazyApp(Starlette, paths=["/models", "/models/{version}"])
    scope = {"type": "http", "method": "DELETE", "path_params": {}}

    def matches(path: str) -> bool:
        return any(r.matches({**scope, "path": path})[0] == Match.FULL for r in lazy.routes)

    assert matches("/models")
    assert matches("/models/v1")
    assert not matches("/")
    assert not matches("/predict")


def test_lazy_app_built_beside_start_up_logs_a_failure_and_the_first_request_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The start-up thread's build fails: nothing is raised in that thread, a warning is
    logged, and the first request builds the app again and is answered."""
    attempts: list[int] = []

    def factory() -> Starlette:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("schema race")
        return Starlette(routes=[Route("/ping", lambda _: PlainTextResponse("pong"))])

    lazy = LazyApp(factory, paths=["/ping"])
    with caplog.at_level("WARNING", logger="sproxxo.serving.asgi"):
        lazy.build_beside()
    assert "first request retries" in caplog.text
    with TestClient(lazy) as client:
        assert client.get("/ping").text == "pong"
    assert len(attempts) == 2
