"""The compiled, packed card history (`sproxxo.history_packed`) equals the reference
(`sproxxo.history.observe`, event by event) to the bit: features and states, on random
batches with retries, ties in time, out-of-order events and folding past the retention."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sproxxo.history import DAY_MS, HISTORY_FEATURES, HOUR_MS, CardState, Event, key_rank, observe
from sproxxo.history_packed import (
    EMPTY_AGGREGATES,
    EVENT,
    events_of,
    observe_batch,
    pack,
    unpack,
)
from sproxxo.schemas import CATEGORIES

T0 = 1_750_000_000_000
STEPS = (0, 0, 1, 1_000, 60_000, HOUR_MS, DAY_MS, 8 * DAY_MS, -3 * DAY_MS, -9 * DAY_MS)


def same_state(packed: tuple[bytes, bytes], state: CardState) -> bool:
    """Equal as states: the same events (in any stored order) and the same aggregates."""
    got, want = unpack(*packed), unpack(*pack(state))
    return sorted(got.pop("events")) == sorted(want.pop("events")) and got == want


def random_batches(seed: int) -> list[list[tuple[str, Event]]]:
    rng = random.Random(seed)
    cards = [f"c{i}" for i in range(rng.randrange(1, 6))]
    newest = dict.fromkeys(cards, T0)
    keys: dict[str, list[str]] = {c: [] for c in cards}
    batches = []
    for _ in range(rng.randrange(1, 8)):
        batch = []
        for _ in range(rng.randrange(1, 40)):
            card = rng.choice(cards)
            retry = keys[card] and rng.random() < 0.15
            key = rng.choice(keys[card]) if retry else f"k{rng.randrange(10**9)}"
            keys[card].append(key)
            t = newest[card] + rng.choice(STEPS) * rng.choice((1, 1, 2))
            if rng.random() < 0.8:
                newest[card] = max(newest[card], t)
            event = Event(
                t,
                rng.randrange(1, 100_000),
                rng.randrange(14),
                rng.uniform(-80, 80),
                rng.uniform(-170, 170),
                key,
            )
            batch.append((card, event))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(60))
def test_packed_batches_equal_the_reference_to_the_bit(seed: int) -> None:
    """Every event's features and every card's state after each batch, exactly."""
    reference: dict[str, CardState] = {}
    packed: dict[str, tuple[bytes, bytes]] = {}
    for batch in random_batches(seed):
        want = []
        for card, event in batch:
            found, reference[card] = observe(reference.get(card, CardState()), event)
            want.append(found)
        distinct = list(dict.fromkeys(card for card, _ in batch))
        before = [packed.get(card, (b"", EMPTY_AGGREGATES)) for card in distinct]
        index = [distinct.index(card) for card, _ in batch]
        got, after = observe_batch(before, index, events_of([e for _, e in batch]))
        packed.update(zip(distinct, after, strict=True))
        np.testing.assert_array_equal(got, np.array(want))  # NaN where NaN
        assert all(same_state(packed[card], reference[card]) for card in distinct)


@pytest.mark.parametrize("seed", range(0, 60, 4))
def test_interpreted_transition_equals_the_reference_to_the_bit(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While numba loads (`sproxxo.jit`), the transition runs as plain Python: the same."""
    from sproxxo import jit

    monkeypatch.setattr(jit, "pending", lambda name: name == "history")
    test_packed_batches_equal_the_reference_to_the_bit(seed)


def test_packed_retry_in_one_batch_sees_what_the_first_saw() -> None:
    """A retry inside the same batch gets the first attempt's features, is not recorded."""
    a = Event(T0, 1_000, 1, 40.0, -74.0, "a")
    b = Event(T0 + 60_000, 2_500, 1, 40.5, -74.0, "b")
    got, after = observe_batch([(b"", EMPTY_AGGREGATES)], [0, 0, 0], events_of([a, b, b]))
    np.testing.assert_array_equal(got[1], got[2])
    assert got[1][HISTORY_FEATURES.index("card_tx_1h")] == 1.0
    assert len(after[0][0]) == 2 * EVENT.itemsize


def test_packed_ties_in_time_take_the_greater_key_rank() -> None:
    """Two earlier events of one millisecond: the previous is the one of greater rank."""
    x, y = (Event(T0, 1_000, 0, lat, -74.0, key) for lat, key in ((10.0, "x"), (20.0, "y")))
    winner = x if key_rank("x") > key_rank("y") else y
    now = Event(T0 + HOUR_MS, 1_000, 0, winner.lat, -74.0, "now")
    for order in ([x, y], [y, x]):
        got, _ = observe_batch([(b"", EMPTY_AGGREGATES)], [0, 0, 0], events_of([*order, now]))
        assert got[2][HISTORY_FEATURES.index("card_km_from_last")] == 0.0


def test_packed_state_round_trips_a_reference_state() -> None:
    """`pack` then `unpack` keeps every event, the aggregates and the folded event."""
    state = CardState()
    for i in range(12):
        _, state = observe(
            state, Event(T0 + i * DAY_MS, 1_234 + i, i % 4, 40.1 + i, -73.9, f"e{i}")
        )
    plain = unpack(*pack(state))
    assert [e[0] for e in plain["events"]] == [e.t_ms for e in state.events]
    assert (plain["count"], plain["cents"]) == (state.count, state.cents)
    assert plain["categories"] == state.categories
    assert state.last is not None
    assert plain["last"][0] == state.last.t_ms
    assert plain["last"][4] == key_rank(state.last.key)


def test_event_columns_read_and_pack_as_the_events_they_hold() -> None:
    """`history_events`' columns (times and cents rounded in numpy, halves included) are
    the `Event`s made one by one, and `events_of` packs them identically."""
    from sproxxo.features import category_codes, history_events
    from sproxxo.history import EventColumns, event_time_ms, to_cents
    from sproxxo.history_packed import events_of

    rng = np.random.default_rng(5)
    n = 500
    epochs = [*np.round(rng.uniform(1.7e9, 1.8e9, n), 4).tolist(), 1.0005, 2.0015, 1e9 + 5e-4]
    amounts = [*np.round(rng.uniform(0.01, 9_999, n), 2).tolist(), 0.125, 0.135, 10.005]
    columns = {
        "epoch_seconds": epochs,
        "amount": amounts,
        "merchant_category": [CATEGORIES[i % len(CATEGORIES)] for i in range(n + 3)],
        "merch_lat": rng.uniform(-90, 90, n + 3).tolist(),
        "merch_long": [int(v) for v in rng.integers(-180, 180, n + 3)],
        "transaction_id": [f"tx-{i}" for i in range(n + 3)],
    }
    made = [
        Event(event_time_ms(t), to_cents(a), int(code), float(la), float(lo), key)
        for t, a, code, la, lo, key in zip(
            epochs,
            amounts,
            category_codes(columns["merchant_category"]),
            columns["merch_lat"],
            columns["merch_long"],
            columns["transaction_id"],
            strict=True,
        )
    ]
    events = history_events(columns)
    assert isinstance(events, EventColumns)
    assert list(events) == made
    assert [events[i] for i in (0, -1)] == [made[0], made[-1]]
    assert events[1:3] == made[1:3]
    packed, expected = events_of(events), events_of(made)
    for name in ("t", "cents", "cat", "lat", "lon", "h"):
        assert np.array_equal(getattr(packed, name), getattr(expected, name)), name


def test_events_of_packs_the_event_record_layout() -> None:
    """`events_of` packs events with `struct` (no numpy parsing of tuples): the bytes are
    `EVENT` records as numpy lays them out, negative and extreme values included, and the
    columns are writable (the kernel's signature takes the batch so)."""
    events = [
        Event(T0, 12_345, 3, 40.7, -74.0, "a"),
        Event(-1, -99, 0, -90.0, 180.0, "b"),
        Event(2**62, 2**40, len(CATEGORIES) - 1, 1e-300, -0.0, "ć"),
    ]
    expected = np.array(
        [(e.t_ms, e.cents, e.lat, e.lon, key_rank(e.key), e.category) for e in events],
        dtype=EVENT,
    )
    batch = events_of(events)
    for name in ("t", "cents", "lat", "lon", "h", "cat"):
        column = getattr(batch, name)
        assert column.tobytes() == expected[name].tobytes(), name
        assert column.flags.writeable, name
    assert len(events_of([]).t) == 0
