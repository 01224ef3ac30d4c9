"""Service events: one JSON object per line, at the configured level, rate-limited."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from sproxxo.serving import events


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The events logger writing into a buffer instead of stdout."""
    buffer = io.StringIO()
    logger = logging.getLogger(events.LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    monkeypatch.setattr(events.sys, "stdout", buffer)
    events.configure("INFO")
    yield buffer
    logger.handlers[:], logger.level, logger.propagate = saved


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_emit_writes_one_json_object_per_line(captured: io.StringIO) -> None:
    """Each event is a JSON line with ts, level, event and its fields."""
    events.emit("model_activated", model="sproxxo-fraud:b", previous="sproxxo-fraud:a")
    events.emit("draining", seconds=1.0)
    first, second = _lines(captured)
    assert first["event"] == "model_activated"
    assert first["level"] == "INFO"
    assert first["previous"] == "sproxxo-fraud:a"
    assert second == {**second, "event": "draining", "seconds": 1.0}


def test_configure_honours_the_level_and_is_idempotent(captured: io.StringIO) -> None:
    """At WARNING, INFO events are not written; configuring twice adds no second handler."""
    events.configure("WARNING")
    events.configure("WARNING")
    events.emit("high_risk", transaction_id="tx-1")
    events.emit("model_refused", level=logging.ERROR, model="m", reason="sha256")
    assert [line["event"] for line in _lines(captured)] == ["model_refused"]


def test_rate_limiter_suppresses_a_flood_and_reports_the_count(captured: io.StringIO) -> None:
    """1,000 events in one instant: the burst passes, the rest are counted and reported once
    tokens come back."""
    clock = [0.0]
    suppressed: list[tuple[str, int]] = []
    limiter = events.RateLimiter(
        rate_per_second=10,
        burst=20,
        clock=lambda: clock[0],
        on_suppressed=lambda e, n: suppressed.append((e, n)),
    )
    allowed = sum(limiter.allow("invalid_transaction") for _ in range(1000))
    assert allowed == 20
    assert sum(n for _, n in suppressed) == 980
    clock[0] += 1.0
    assert limiter.allow("invalid_transaction")
    (report,) = _lines(captured)
    assert report["event"] == "events_suppressed"
    assert report["counts"] == {"invalid_transaction": 980}


def test_rate_limiter_flush_reports_what_is_left(captured: io.StringIO) -> None:
    """At shutdown the remaining suppressed count is reported."""
    limiter = events.RateLimiter(rate_per_second=0.001, burst=1, clock=lambda: 0.0)
    assert limiter.allow("high_risk")
    assert not limiter.allow("high_risk")
    limiter.flush()
    assert _lines(captured)[-1]["counts"] == {"high_risk": 1}
