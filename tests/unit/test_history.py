"""Card-history features (`sproxxo.history`): the formulas on hand-built events, the one
state transition (`observe`), and online == offline on streams with bursts, ties, retries
and gaps longer than the retention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sproxxo.history import (
    DAY_MS,
    HISTORY_FEATURES,
    HOUR_MS,
    RETENTION_MS,
    UNAVAILABLE,
    YEAR_MS,
    CardState,
    Event,
    Profile,
    features,
    key_rank,
    observe,
    state_from_parts,
    state_to_parts,
)
from tests.helpers import history_stream, offline_of

T0 = 1_750_000_000_000  # an event time in ms; nothing depends on today's date
IDX = {name: i for i, name in enumerate(HISTORY_FEATURES)}


def ev(
    t_ms: int,
    cents: int = 1000,
    category: int = 0,
    key: str = "",
    *,
    lat: float = 40.0,
    lon: float = -74.0,
) -> Event:
    return Event(t_ms, cents, category, lat, lon, key or f"tx{t_ms}-{cents}-{category}")


def play(events: list[Event]) -> tuple[list[tuple[float, ...]], CardState]:
    state = CardState()
    found = []
    for event in events:
        f, state = observe(state, event)
        found.append(f)
    return found, state


def named(values: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(HISTORY_FEATURES, values, strict=True))


def test_first_transaction_counts_zero_ratios_nan() -> None:
    """No history: counts and sums 0, everything relative to an earlier event NaN."""
    f = named(features(CardState(), ev(T0)))
    for w in ("1h", "24h", "7d"):
        assert f[f"card_tx_{w}"] == 0.0
        assert f[f"card_amount_{w}"] == 0.0
    assert f["card_category_count"] == 0.0
    for name in (
        "card_seconds_since_last",
        "card_mean_amount",
        "amount_to_card_mean",
        "amount_to_card_24h_mean",
        "card_km_from_last",
        "card_kmh_from_last",
    ):
        assert math.isnan(f[name]), name


def test_hand_built_history_gives_each_formula() -> None:
    """Three earlier events (8 d, 2 h and 30 min before): each feature by hand."""
    t = T0 + 10 * DAY_MS
    earlier = [
        ev(t - 8 * DAY_MS, 10_000, 3),  # outside 7 d: only in the mean and category
        ev(t - 2 * HOUR_MS, 2_000, 3),  # in 24 h and 7 d
        ev(t - 30 * 60_000, 4_000, 1, lat=41.0, lon=-74.0),  # in all windows; the previous
    ]
    _, state = play(earlier)
    f = named(features(state, ev(t, 9_000, 3, lat=40.0, lon=-74.0)))
    assert (f["card_tx_1h"], f["card_tx_24h"], f["card_tx_7d"]) == (1.0, 2.0, 2.0)
    assert (f["card_amount_1h"], f["card_amount_24h"], f["card_amount_7d"]) == (40.0, 60.0, 60.0)
    assert f["card_seconds_since_last"] == 1800.0
    assert f["card_mean_amount"] == pytest.approx(160.0 / 3)
    assert f["amount_to_card_mean"] == pytest.approx(90.0 / (160.0 / 3))
    assert f["amount_to_card_24h_mean"] == pytest.approx(90.0 / 30.0)
    assert f["card_category_count"] == 2.0  # categories 3, 3 (folded and kept); not 1
    # one degree of latitude is ~111.2 km; 30 minutes -> ~222 km/h
    assert f["card_km_from_last"] == pytest.approx(111.19, abs=0.05)
    assert f["card_kmh_from_last"] == pytest.approx(2 * f["card_km_from_last"])


def test_window_edges_are_inclusive_at_w_and_strict_at_zero() -> None:
    """An event exactly W before counts in window W; one at the same millisecond does not."""
    t = T0 + DAY_MS
    _, state = play([ev(t - HOUR_MS, 100), ev(t - HOUR_MS - 1, 200), ev(t, 400, key="same-ms")])
    f = named(features(state, ev(t, 800, key="now")))
    assert f["card_tx_1h"] == 1.0  # t - 1h in, t - 1h - 1ms out, t itself out
    assert f["card_amount_1h"] == 1.0
    assert f["card_tx_24h"] == 2.0


def test_speed_uses_a_one_minute_floor() -> None:
    """Two merchants 111 km apart one second apart: speed over one minute, not one second."""
    _, state = play([ev(T0, lat=41.0)])
    f = named(features(state, ev(T0 + 1000, lat=40.0)))
    assert f["card_kmh_from_last"] == pytest.approx(f["card_km_from_last"] * 60)


def test_ties_in_time_previous_is_the_greatest_key_rank_whatever_the_order() -> None:
    """Two earlier events at one millisecond: the previous one is chosen by key rank, so
    the distance does not depend on which was stored first."""
    a, b = ev(T0, key="a", lat=10.0), ev(T0, key="b", lat=20.0)
    winner = a if key_rank("a") > key_rank("b") else b
    now = ev(T0 + HOUR_MS, key="c", lat=winner.lat)
    for order in ([a, b], [b, a]):
        _, state = play(order)
        assert named(features(state, now))["card_km_from_last"] == 0.0


def test_retry_is_not_counted_twice_and_sees_what_the_first_saw() -> None:
    """A gateway retry (same transaction id) changes nothing and gets the same features."""
    first = ev(T0 + HOUR_MS, 5_000, key="tx-1")
    found, state = play([ev(T0, 1_000, key="tx-0"), first])
    again, after = observe(state, first)
    assert again == found[1]
    assert after == state
    assert named(features(after, ev(T0 + 2 * HOUR_MS, key="tx-2")))["card_tx_24h"] == 2.0


def test_old_events_fold_into_aggregates_and_state_stays_bounded() -> None:
    """Past the retention events leave the list but stay in the mean and category counts."""
    stream = [ev(T0 + i * DAY_MS, 1_000 * (i + 1), i % 3) for i in range(30)]
    _, state = play(stream)
    assert len(state.events) == 8  # days 22..29 are within 7 d of day 29
    assert state.count == 22
    assert state.cents == sum(1_000 * (i + 1) for i in range(22))
    f = named(features(state, ev(T0 + 30 * DAY_MS, 1_000, 0)))
    assert f["card_mean_amount"] == pytest.approx(sum(range(1, 31)) * 10 / 30)
    assert f["card_category_count"] == 10.0
    assert f["card_tx_7d"] == 7.0


def test_previous_can_be_a_folded_event() -> None:
    """After a quiet month, the previous transaction is the folded one."""
    _, state = play([ev(T0, lat=41.0), ev(T0 + 10 * DAY_MS, key="later", lat=42.0)])
    assert state.last is not None
    assert state.last.t_ms == T0
    f = named(features(state, ev(T0 + 30 * DAY_MS, lat=42.0)))
    assert f["card_seconds_since_last"] == 20 * DAY_MS / 1000
    assert f["card_km_from_last"] == 0.0


def test_parts_round_trip_exactly() -> None:
    """The stores' text form loses nothing (floats by repr, integer cents)."""
    _, state = play(
        [
            ev(T0 + i * DAY_MS, 1_234 + i, i % 4, lat=40.123456789 + i, lon=-73.98765432)
            for i in range(12)
        ]
    )
    events, aggregates = state_to_parts(state)
    assert state_from_parts(events, aggregates) == state
    assert Event.decode(state.events[0].encode()) == state.events[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_online_equals_offline_on_a_history_stream(seed: int) -> None:
    """`observe` event by event gives the offline matrix, to 1e-9, NaN where NaN."""
    stream = history_stream(seed)
    states: dict[str, CardState] = {}
    online = []
    seen: set[str] = set()
    for card, e in stream:
        f, states[card] = observe(states.get(card, CardState()), e)
        if e.key not in seen:
            seen.add(e.key)
            online.append(f)
    np.testing.assert_allclose(np.array(online), offline_of(stream), rtol=1e-9, atol=1e-9)
    assert max(len(s.events) for s in states.values()) < len(stream) / 10  # pruned


def test_offline_is_independent_of_row_order() -> None:
    """Shuffled input rows give the same features, row by row."""
    stream = history_stream(7, n=800)
    base = offline_of(stream)
    perm = np.random.default_rng(0).permutation(len(base))
    unique = list({e.key: (c, e) for c, e in stream}.values())
    shuffled = offline_of([unique[i] for i in perm])
    np.testing.assert_array_equal(shuffled, base[perm])


def test_unavailable_is_all_nan() -> None:
    assert len(UNAVAILABLE) == len(HISTORY_FEATURES)
    assert all(math.isnan(v) for v in UNAVAILABLE)


def test_profile_fields_age_with_event_time() -> None:
    """The holder turns a year older a year later; card age counts whole days."""
    p = Profile(
        lat=40.0, long=-74.0, city_pop=1000, age=30, age_at_ms=T0, issued_ms=T0 - 10 * DAY_MS
    )
    assert p.fields_at(T0) == {
        "lat": 40.0,
        "long": -74.0,
        "city_pop": 1000,
        "customer_age": 30,
        "card_age_days": 10,
    }
    later = p.fields_at(T0 + YEAR_MS + DAY_MS)
    assert (later["customer_age"], later["card_age_days"]) == (31, 10 + 366)
    assert p.fields_at(T0 - 100 * DAY_MS)["card_age_days"] == 0  # never negative
    assert Profile.decode(p.encode()) == p


def test_retention_is_the_longest_window() -> None:
    assert RETENTION_MS == 7 * DAY_MS
