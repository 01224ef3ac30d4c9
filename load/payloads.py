"""/predict bodies from the synthetic generator, plus invalid variants and their status.

Pure: no locust, no HTTP. The locustfile, the wrk scripts and the tests all draw their
traffic from here, so the load has the generator's realistic mix of cards, categories,
amounts and fraud patterns.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import pandas as pd

from sproxxo.features import transaction_body
from sproxxo.schemas import EXAMPLE_TRANSACTION
from sproxxo.sources.synthetic import generate

#: How far back the rewritten timestamps spread (the service wants < 24 h old).
RECENT_WINDOW: Final = timedelta(hours=6)
_FIELDS: Final = tuple(EXAMPLE_TRANSACTION)


def _local_time(epoch: float, offset_minutes: int, now: datetime, age: timedelta) -> str:
    """A recent instant at the row's local offset, keeping its local time of day."""
    tz = timezone(timedelta(minutes=offset_minutes))
    original = datetime.fromtimestamp(epoch, tz)
    recent = (now - age).astimezone(tz).replace(microsecond=0)
    # Keep the generator's local hour (night-time fraud stays at night) when possible.
    candidate = recent.replace(hour=original.hour, minute=original.minute, second=original.second)
    if candidate > recent:
        candidate -= timedelta(days=1)
    if now - candidate >= timedelta(hours=23):
        candidate = recent
    return candidate.replace(microsecond=0).isoformat()


def body_from_row(
    row: Mapping[Any, Any], *, index: int, now: datetime, age: timedelta
) -> dict[str, Any]:
    """One /predict body from a canonical generator row, timestamped `age` before `now`."""
    return {
        **transaction_body(row),
        "transaction_id": f"tx-load-{index:08d}",
        "timestamp": _local_time(
            float(row["epoch_seconds"]), int(row["utc_offset_minutes"]), now, age
        ),
    }


def valid_bodies(n: int, *, seed: int = 7, now: datetime | None = None) -> list[dict[str, Any]]:
    """`n` valid /predict bodies with recent timestamps (0 to `RECENT_WINDOW` old)."""
    now = now or datetime.now(UTC)
    frame: pd.DataFrame = generate(max(n, 60), seed=seed).head(n)
    rng = random.Random(seed)
    window = RECENT_WINDOW.total_seconds()
    return [
        body_from_row(row, index=i, now=now, age=timedelta(seconds=60 + rng.random() * window))
        for i, row in enumerate(frame.to_dict("records"))
    ]


@dataclass(frozen=True)
class InvalidCase:
    """A broken body, what was broken, and the status the service must answer."""

    name: str
    body: Any
    expected_status: int


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda body: {**body, field: value}


def _drop(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda body: {k: v for k, v in body.items() if k != field}


#: name -> how to break a valid body. Every one is a shape error: 400 from the schema.
_BREAKERS: Final[dict[str, Callable[[dict[str, Any]], Any]]] = {
    "amount_false": _set("amount", False),
    "amount_negative": _set("amount", "-5.00"),
    "amount_three_decimals": _set("amount", "12.345"),
    "unknown_category": _set("merchant_category", "casino"),
    "missing_card_id": _drop("card_id"),
    "missing_timestamp": _drop("timestamp"),
    "naive_timestamp": lambda b: {**b, "timestamp": b["timestamp"][:19]},
    "currency_eur": _set("currency", "EUR"),
    "pan_as_card_id": _set("card_id", "4111111111111111"),
    "lat_out_of_range": _set("lat", 123.0),
    "age_as_string": _set("customer_age", "34"),
    "extra_field": _set("cvv", "123"),
    "not_an_object": lambda b: [b],
}


def invalid_cases(base: dict[str, Any]) -> list[InvalidCase]:
    """Every invalid variant of a valid body, each expecting 400."""
    return [InvalidCase(name, breaker(base), 400) for name, breaker in _BREAKERS.items()]


class PayloadPool:
    """Round-robin over pre-built bodies; rebuilds timestamps when they grow stale."""

    def __init__(self, size: int = 2000, *, seed: int = 7, refresh: timedelta = timedelta(hours=6)):
        self._size, self._seed, self._refresh = size, seed, refresh
        self._serial = itertools.count()
        self._build()

    def _build(self) -> None:
        self.built_at = datetime.now(UTC)
        self.bodies = valid_bodies(self._size, seed=self._seed, now=self.built_at)
        self._cycle: Iterator[dict[str, Any]] = itertools.cycle(self.bodies)
        self.invalid = [c for b in self.bodies[:8] for c in invalid_cases(b)]

    def _fresh(self) -> None:
        if datetime.now(UTC) - self.built_at > self._refresh:
            self._build()

    def next_valid(self) -> dict[str, Any]:
        """The next valid body with a unique transaction id."""
        self._fresh()
        return {**next(self._cycle), "transaction_id": f"tx-load-{next(self._serial):010d}"}

    def batch(self, size: int) -> list[dict[str, Any]]:
        """`size` valid bodies for /predict_batch."""
        return [self.next_valid() for _ in range(size)]

    def next_invalid(self, rng: random.Random) -> InvalidCase:
        """A random invalid case."""
        self._fresh()
        return rng.choice(self.invalid)
