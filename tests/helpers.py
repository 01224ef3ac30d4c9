"""Test helpers without side effects (safe to import from any test module)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from sproxxo.history import DAY_MS, HOUR_MS, Event, offline_features

ADMIN_TOKEN = "test-admin-token-0123456789"


def make_transaction(**overrides: Any) -> dict[str, Any]:
    """A valid transaction body (timestamp = one hour ago) with overrides."""
    when = datetime.now(UTC).astimezone(UTC) - timedelta(hours=1)
    body: dict[str, Any] = {
        "transaction_id": "tx-test-000001",
        "card_id": "card_ab12cd34ef",
        "amount": "42.50",
        "currency": "USD",
        "timestamp": when.isoformat(),
        "merchant_id": "m-000123",
        "merchant_category": "grocery_pos",
        "lat": 19.43,
        "long": -99.13,
        "merch_lat": 19.44,
        "merch_long": -99.14,
        "card_age_days": 420,
        "is_foreign": False,
        "customer_age": 34,
        "city_pop": 9_209_944,
    }
    body.update(overrides)
    return body


HISTORY_T0 = 1_750_000_000_000  # an event time in ms (nothing depends on today's date)


def history_stream(
    seed: int, *, cards: int = 40, n: int = 3000, retries: float = 0.05
) -> list[tuple[str, Event]]:
    """(card, event) pairs in event-time order with bursts (events 0-1000 ms apart), ties
    in time, gaps longer than the 7-day retention and gateway retries (the same event
    again), spread over `cards` cards."""
    rng = random.Random(seed)
    t = HISTORY_T0
    out: list[tuple[str, Event]] = []
    while len(out) < n:
        card = f"card_{rng.randrange(cards)}"
        t += rng.choice([0, 1, 1_000, 60_000, HOUR_MS, DAY_MS, 9 * DAY_MS])
        event = Event(
            t,
            rng.randrange(1, 500_000),
            rng.randrange(14),
            rng.uniform(25, 48),
            rng.uniform(-124, -67),
            f"t{len(out)}",
        )
        out.append((card, event))
        if rng.random() < retries:
            out.append((card, event))
    return out


def offline_of(stream: list[tuple[str, Event]]) -> npt.NDArray[np.float64]:
    """The offline (training) history features of a stream's distinct transactions."""
    rows = list({e.key: (card, e) for card, e in stream}.values())
    return offline_features(
        [card for card, _ in rows],
        [e.key for _, e in rows],
        [e.t_ms / 1000 for _, e in rows],
        [e.cents / 100 for _, e in rows],
        [e.category for _, e in rows],
        [e.lat for _, e in rows],
        [e.lon for _, e in rows],
    )
