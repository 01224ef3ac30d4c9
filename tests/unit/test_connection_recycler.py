"""`ConnectionRecycler` closes a keep-alive connection once it is older than its age, so
that the connections re-spread over workers sharing one listening socket."""

from __future__ import annotations

import asyncio
from typing import Any

from sproxxo.serving.asgi import ConnectionRecycler
from sproxxo.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(app: ConnectionRecycler, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _http(port: int = 5000) -> dict[str, Any]:
    return {"type": "http", "client": ("127.0.0.1", port), "path": "/predict"}


def _closes(sent: list[dict[str, Any]]) -> bool:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return (b"connection", b"close") in start["headers"]


def test_a_connection_is_closed_once_past_its_age_and_counted_anew_after() -> None:
    """At its age a connection's answer gains `Connection: close`; the peer then starts anew."""
    clock = Clock()
    app = ConnectionRecycler(_ok, max_age_seconds=5.0, clock=clock, spread=lambda: 1.0)
    assert not _closes(_call(app, _http()))
    clock.now += 4.9
    sent = _call(app, _http())
    assert not _closes(sent)
    clock.now += 0.1
    sent = _call(app, _http())
    assert _closes(sent)
    assert (b"x", b"1") in sent[0]["headers"]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}
    assert app.deadlines == {}
    clock.now += 1.0
    assert not _closes(_call(app, _http()))
    assert app.deadlines == {("127.0.0.1", 5000): clock.now + 5.0}


def test_each_peer_has_its_own_age() -> None:
    """Two connections first seen 3 s apart are closed 3 s apart."""
    clock = Clock()
    app = ConnectionRecycler(_ok, max_age_seconds=5.0, clock=clock, spread=lambda: 1.0)
    _call(app, _http(1))
    clock.now += 3.0
    _call(app, _http(2))
    clock.now += 2.0
    assert _closes(_call(app, _http(1)))
    assert not _closes(_call(app, _http(2)))
    clock.now += 3.0
    assert _closes(_call(app, _http(2)))


def test_an_entry_due_over_an_age_ago_is_a_new_connection() -> None:
    """A peer's address and port reused long after its connection went: counted anew."""
    clock = Clock()
    app = ConnectionRecycler(_ok, max_age_seconds=5.0, clock=clock, spread=lambda: 1.0)
    _call(app, _http())
    clock.now += 10.5  # due at 105, over an age ago at 110.5
    assert not _closes(_call(app, _http()))
    assert app.deadlines == {("127.0.0.1", 5000): clock.now + 5.0}


def test_ages_are_drawn_per_connection_so_that_connections_opened_together_close_apart() -> None:
    """Each connection's age is its own draw times the maximum, drawn at its first request."""
    clock = Clock()
    draws = iter([0.5, 1.0])
    app = ConnectionRecycler(_ok, max_age_seconds=4.0, clock=clock, spread=lambda: next(draws))
    _call(app, _http(1))
    _call(app, _http(2))
    clock.now += 2.0
    assert _closes(_call(app, _http(1)))
    assert not _closes(_call(app, _http(2)))
    clock.now += 2.0
    assert _closes(_call(app, _http(2)))


def test_default_ages_fall_between_half_and_all_of_the_maximum() -> None:
    """Without a `spread`, the drawn ages lie in [max / 2, max]."""
    app = ConnectionRecycler(_ok, max_age_seconds=8.0, clock=Clock())
    for port in range(1, 201):
        _call(app, _http(port))
    ages = [deadline - 100.0 for deadline in app.deadlines.values()]
    assert len(ages) == 200
    assert 4.0 <= min(ages) < max(ages) <= 8.0


def test_off_without_an_age_a_peer_or_http() -> None:
    """Age 0, no peer (unix socket), a proxy's rewritten peer and non-HTTP scopes pass."""
    clock = Clock()
    off = ConnectionRecycler(_ok, max_age_seconds=0.0, clock=clock)
    _call(off, _http())
    clock.now += 1e6
    assert not _closes(_call(off, _http()))
    assert off.deadlines == {}
    on = ConnectionRecycler(_ok, max_age_seconds=5.0, clock=clock, spread=lambda: 1.0)
    assert not _closes(_call(on, {**_http(), "client": None}))
    assert not _closes(_call(on, {**_http(), "client": ("203.0.113.7", 0)}))  # X-Forwarded-For
    assert on.deadlines == {}
    seen: list[str] = []

    async def lifespan(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(ConnectionRecycler(lifespan, max_age_seconds=5.0)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_tracked_connections_stay_bounded() -> None:
    """At `max_tracked` the entries due over an age ago go first, else the earlier half."""
    clock = Clock()
    app = ConnectionRecycler(
        _ok, max_age_seconds=5.0, max_tracked=4, clock=clock, spread=lambda: 1.0
    )
    for port in (1, 2):  # due at 105
        _call(app, _http(port))
    clock.now += 11.0
    for port in (3, 4):  # due at 116
        _call(app, _http(port))
    _call(app, _http(5))  # full: 1 and 2 were due before 111, dropped
    assert set(app.deadlines) == {("127.0.0.1", p) for p in (3, 4, 5)}
    clock.now += 1.0
    _call(app, _http(6))
    _call(app, _http(7))  # full, none due: the earlier half (3, 4) goes
    assert set(app.deadlines) == {("127.0.0.1", p) for p in (5, 6, 7)}


def test_recycling_is_on_only_with_several_workers() -> None:
    """One worker has nothing to spread: the effective age is 0."""
    assert Settings(workers=1).connection_recycle_seconds == 0.0
    assert Settings(workers=2).connection_recycle_seconds == 5.0
    assert Settings(workers=2, connection_max_age_seconds=0).connection_recycle_seconds == 0.0
