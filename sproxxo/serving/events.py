"""Notable events of the running service, one JSON object per line on stdout.

BentoML configures the root logger (WARNING) before it imports the service, so events at
INFO through the usual logger tree never appear. The service therefore writes its events
through a logger of its own (`sproxxo.events`, not propagated) with a stdout handler at
`SPROXXO_LOG_LEVEL`: `high_risk`, `invalid_transaction`, `model_activated`, `model_loaded`,
`model_refused`, `draining`, `shutdown`, `events_suppressed`.

Per-transaction events are rate-limited per process (a token bucket: `rate_per_second`,
bursts up to `burst`), so a batch of 1,000 invalid items cannot flood the log; what is
suppressed is counted and reported by one `events_suppressed` line at most once a second
(and through `on_suppressed`, for a metric).

Fields are identifiers, rule names and scores only: never a card token, name or address.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

LOGGER_NAME: Final = "sproxxo.events"
_logger = logging.getLogger(LOGGER_NAME)


class JsonLineFormatter(logging.Formatter):
    """`{"ts", "level", "event", ...fields}` on one line; the event is the message."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object for one event record."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def configure(level: str) -> None:
    """Send events to stdout at `level` (idempotent: one handler per process)."""
    _logger.setLevel(level.upper())
    _logger.propagate = False
    if not any(getattr(h, "_sproxxo", False) for h in _logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonLineFormatter())
        handler._sproxxo = True  # type: ignore[attr-defined]
        _logger.addHandler(handler)


def emit(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields."""
    if _logger.isEnabledFor(level):
        _logger.log(level, event, extra={"fields": fields})


class RateLimiter:
    """Token bucket for per-transaction events, with a count of what it suppressed."""

    def __init__(
        self,
        *,
        rate_per_second: float = 20.0,
        burst: int = 50,
        clock: Callable[[], float] = time.monotonic,
        on_suppressed: Callable[[str, int], None] = lambda event, n: None,
    ) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed: Counter[str] = Counter()
        self._next_report = self._last
        self._on_suppressed = on_suppressed
        self._lock = threading.Lock()

    def allow(self, event: str) -> bool:
        """Whether one more `event` may be logged now (False counts it as suppressed)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            allowed = self._tokens >= 1.0
            if allowed:
                self._tokens -= 1.0
                report = self._due(now)
            else:
                self._suppressed[event] += 1
                report = None
        if report:
            emit("events_suppressed", level=logging.WARNING, counts=dict(report))
        if not allowed:
            self._on_suppressed(event, 1)
        return allowed

    def flush(self) -> None:
        """Report what is still counted as suppressed (at shutdown)."""
        with self._lock:
            report, self._suppressed = self._suppressed, Counter()
        if report:
            emit("events_suppressed", level=logging.WARNING, counts=dict(report))

    def _due(self, now: float) -> Counter[str] | None:
        if not self._suppressed or now < self._next_report:
            return None
        self._next_report = now + 1.0
        report, self._suppressed = self._suppressed, Counter()
        return report
