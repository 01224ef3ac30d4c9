"""Card states as fixed-width binary records, observed a whole batch at a time in one
compiled pass: what the SQLite store keeps and runs.

`sproxxo.history` defines the state transition (`observe`) and the features, event by
event in Python; this module does exactly the same arithmetic over arrays, so a busy card's
hundreds of events cost nanoseconds each instead of microseconds, and decoding a stored
state is `numpy.frombuffer` (no parsing). A state is two byte strings:

* its events, `EVENT` records (48 bytes each: event time, cents, merchant coordinates,
  the transaction id's rank, category);
* its aggregates, one `AGGREGATES` record (count, cents, per-category counts, the newest
  folded event).

The transaction id itself is not kept, only its rank (`sproxxo.history.key_rank`, 64 bits
of its SHA-1): a retry is recognised by an equal rank, and ties in event time are broken by
it, as everywhere else. Tests check this module against `sproxxo.history.observe` on
random streams (retries, ties, out-of-order events, folding).
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sproxxo import jit
from sproxxo.history import (
    _EARTH_RADIUS_KM,
    _N_CATEGORIES,
    DAY_MS,
    HISTORY_FEATURES,
    HOUR_MS,
    MIN_GAP_HOURS,
    RETENTION_MS,
    CardState,
    Event,
    EventColumns,
    key_rank,
    key_ranks,
)

_FIELDS: Final = ("t", "cents", "lat", "lon", "h", "cat")
EVENT: Final = np.dtype(list(zip(_FIELDS, ("<i8", "<i8", "<f8", "<f8", "<u8", "<i8"), strict=True)))
AGGREGATES: Final = np.dtype(
    [
        ("count", "<i8"),
        ("cents", "<i8"),
        ("has_last", "<i8"),
        ("last", EVENT),
        ("cats", "<i8", (_N_CATEGORIES,)),
    ]
)
EMPTY_AGGREGATES: Final = np.zeros(1, dtype=AGGREGATES).tobytes()
_WIDTH: Final = len(HISTORY_FEATURES)
#: One `EVENT` record as `struct` packs it (the same 48 bytes, little-endian, no padding):
#: a batch of events is packed without numpy parsing each tuple (~5 µs for one event).
_EVENT_STRUCT: Final = struct.Struct("<qqddQq")
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Batch:
    """A batch of events in arrival order, as columns (`events_of` builds one)."""

    t: npt.NDArray[np.int64]
    cents: npt.NDArray[np.int64]
    cat: npt.NDArray[np.int64]
    lat: Floats
    lon: Floats
    h: npt.NDArray[np.uint64]


def events_of(events: Sequence[Event]) -> Batch:
    """The columns of `events` (one pass over them; none for `EventColumns`)."""
    if isinstance(events, EventColumns):
        return Batch(
            t=events.t_ms, cents=events.cents, cat=events.category, lat=events.lat,
            lon=events.lon, h=key_ranks(events.keys),
        )  # fmt: skip
    pack_event = _EVENT_STRUCT.pack
    rows = np.frombuffer(
        bytearray().join(
            [pack_event(e.t_ms, e.cents, e.lat, e.lon, key_rank(e.key), e.category) for e in events]
        ),  # writable, as the kernel's signature takes the batch
        dtype=EVENT,
    )
    return Batch(
        t=rows["t"], cents=rows["cents"], cat=rows["cat"], lat=rows["lat"], lon=rows["lon"],
        h=rows["h"],
    )  # fmt: skip


def observe_batch(
    states: Sequence[tuple[bytes, bytes]], card_index: Sequence[int], batch: Batch
) -> tuple[Floats, list[tuple[bytes, bytes]]]:
    """Every event's history features (rows in arrival order) from its card's state as it
    was, each event then recorded (`sproxxo.history.observe`, in order), and every card's
    state after the batch.

    Args:
        states: the batch's distinct cards' packed states (events, aggregates).
        card_index: for each event, the index of its card in `states`.
        batch: the events.
    """
    m, n = len(states), len(card_index)
    old = np.frombuffer(b"".join(s[0] for s in states), dtype=EVENT)
    sizes = (len(s[0]) // EVENT.itemsize for s in states)
    old_offsets = np.fromiter(itertools.accumulate(sizes, initial=0), np.int64, m + 1)
    # the kernel folds into them: a writable buffer (a structured array's copy() costs
    # ~9 µs even for one record)
    aggs = np.frombuffer(bytearray(b"".join([s[1] for s in states])), dtype=AGGREGATES)
    new = np.empty(len(old) + n, dtype=EVENT)
    new_offsets = np.empty(m + 1, dtype=np.int64)  # the kernel's: room for old + batch
    out = np.empty((n, _WIDTH), dtype=np.float64)
    kept = np.empty(m, dtype=np.int64)
    last = aggs["last"]
    transition: Callable[..., None] = _observe if jit.pending("history") else _kernel()
    transition(
        *(old[f] for f in _FIELDS),
        old_offsets,
        aggs["count"],
        aggs["cents"],
        aggs["cats"],
        aggs["has_last"],
        *(last[f] for f in _FIELDS),
        np.asarray(card_index, dtype=np.int64),
        batch.t,
        batch.cents,
        batch.lat,
        batch.lon,
        batch.h,
        batch.cat,
        *(new[f] for f in _FIELDS),
        new_offsets,
        kept,
        out,
    )
    after = [
        (new[new_offsets[j] : new_offsets[j] + kept[j]].tobytes(), aggs[j : j + 1].tobytes())
        for j in range(m)
    ]
    return out, after


def pack(state: CardState) -> tuple[bytes, bytes]:
    """A reference `CardState` packed (for stores written before, and tests)."""
    events = np.array(
        [(e.t_ms, e.cents, e.lat, e.lon, key_rank(e.key), e.category) for e in state.events],
        dtype=EVENT,
    )
    aggs = np.zeros(1, dtype=AGGREGATES)
    aggs["count"], aggs["cents"], aggs["cats"] = state.count, state.cents, state.categories
    if state.last is not None:
        e = state.last
        aggs["has_last"] = 1
        aggs["last"] = (e.t_ms, e.cents, e.lat, e.lon, key_rank(e.key), e.category)
    return events.tobytes(), aggs.tobytes()


def unpack(events: bytes, aggregates: bytes) -> dict[str, Any]:
    """A packed state as plain values (tests and debugging): the events' tuples in stored
    order, count, cents, categories and the newest folded event (None: none)."""
    ev = np.frombuffer(events, dtype=EVENT)
    agg = np.frombuffer(aggregates, dtype=AGGREGATES)[0]
    return {
        "events": [tuple(row.tolist()) for row in ev],
        "count": int(agg["count"]),
        "cents": int(agg["cents"]),
        "categories": agg["cats"].tolist(),
        "last": tuple(agg["last"].tolist()) if agg["has_last"] else None,
    }


def warm() -> None:
    """Compile the kernel now (numba's cache makes this fast after the first process)."""
    batch = Batch(*(np.zeros(1, dtype=d) for d in ("i8", "i8", "i8", "f8", "f8", "u8")))
    observe_batch([(b"", EMPTY_AGGREGATES)], [0], batch)


def _observe(
    o_t: Any, o_c: Any, o_lat: Any, o_lon: Any, o_h: Any, o_cat: Any,
    o_off: Any,
    a_count: Any, a_cents: Any, a_cats: Any, a_has: Any,
    l_t: Any, l_c: Any, l_lat: Any, l_lon: Any, l_h: Any, l_cat: Any,
    cards: Any,
    b_t: Any, b_c: Any, b_lat: Any, b_lon: Any, b_h: Any, b_cat: Any,
    n_t: Any, n_c: Any, n_lat: Any, n_lon: Any, n_h: Any, n_cat: Any,
    n_off: Any, kept: Any, out: Any,
) -> None:  # pragma: no cover - runs compiled by numba (see `_kernel`)  # fmt: skip
    """Card by card: copy its events into its room in the output, then its batch events in
    arrival order: features (`sproxxo.history.features`), append unless known, fold what
    fell out of the retention (`sproxxo.history.prune`). The arithmetic and its order are
    the reference's, so the floats are the same to the bit. One long function, as
    `sproxxo.ml.explain._shap`: a compiled function calls only compiled ones, and this
    module compiles lazily (importing it does not import numba)."""
    m, n = o_off.shape[0] - 1, cards.shape[0]
    firsts = np.zeros(m + 1, dtype=np.int64)  # each card's events in arrival order: a
    for b in range(n):  # stable counting sort of the batch by card
        firsts[cards[b] + 1] += 1
    for j in range(m):
        firsts[j + 1] += firsts[j]
        n_off[j] = o_off[j] + firsts[j]
    n_off[m] = o_off[m] + firsts[m]
    order = np.empty(n, dtype=np.int64)
    filled = firsts[:m].copy()
    for b in range(n):
        order[filled[cards[b]]] = b
        filled[cards[b]] += 1
    for j in range(m):
        base = n_off[j]
        size = o_off[j + 1] - o_off[j]
        for i in range(size):
            s = o_off[j] + i
            n_t[base + i], n_c[base + i], n_h[base + i] = o_t[s], o_c[s], o_h[s]
            n_lat[base + i], n_lon[base + i], n_cat[base + i] = o_lat[s], o_lon[s], o_cat[s]
        for q in range(firsts[j], firsts[j + 1]):
            b = order[q]
            t, h, cat = b_t[b], b_h[b], b_cat[b]
            # features from the state as it is
            n1 = n24 = n7 = 0
            c1 = c24 = c7 = 0
            count, total, same = a_count[j], a_cents[j], a_cats[j, cat]
            p = -2  # the previous event: -1 the folded one, -2 none, else its index
            if a_has[j] and l_t[j] < t:
                p = -1
            p_t, p_h = l_t[j], l_h[j]
            known = False
            for i in range(size):
                e_t, e_h = n_t[base + i], n_h[base + i]
                if e_h == h:
                    known = True
                    continue
                if e_t >= t:
                    continue
                count += 1
                total += n_c[base + i]
                same += n_cat[base + i] == cat
                if p == -2 or e_t > p_t or (e_t == p_t and e_h > p_h):
                    p, p_t, p_h = i, e_t, e_h
                if e_t >= t - RETENTION_MS:
                    n7 += 1
                    c7 += n_c[base + i]
                    if e_t >= t - DAY_MS:
                        n24 += 1
                        c24 += n_c[base + i]
                        if e_t >= t - HOUR_MS:
                            n1 += 1
                            c1 += n_c[base + i]
            row = out[b]
            row[0], row[1], row[2] = float(n1), float(n24), float(n7)
            row[3], row[4], row[5] = c1 / 100.0, c24 / 100.0, c7 / 100.0
            amount = b_c[b] / 100.0
            mean = total / count / 100.0 if count else math.nan
            row[7] = mean
            row[8] = amount / mean if count else math.nan
            row[9] = amount / (c24 / n24 / 100.0) if n24 else math.nan
            row[10] = float(same)
            if p == -2:
                row[6] = row[11] = row[12] = math.nan
            else:
                if p == -1:
                    lat1, lon1 = l_lat[j], l_lon[j]
                else:
                    lat1, lon1 = n_lat[base + p], n_lon[base + p]
                row[6] = (t - p_t) / 1000.0
                p1, p2 = math.radians(lat1), math.radians(b_lat[b])
                dp, dl = p2 - p1, math.radians(b_lon[b] - lon1)
                s_p, s_l = math.sin(dp / 2), math.sin(dl / 2)
                a = s_p * s_p + math.cos(p1) * math.cos(p2) * (s_l * s_l)
                km = 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))
                row[11] = km
                row[12] = km / max((t - p_t) / HOUR_MS, MIN_GAP_HOURS)
            if known:
                continue
            # record it, then fold what the retention (from the newest) no longer holds
            n_t[base + size], n_c[base + size], n_h[base + size] = t, b_c[b], h
            n_lat[base + size], n_lon[base + size], n_cat[base + size] = b_lat[b], b_lon[b], cat
            size += 1
            newest = l_t[j] if a_has[j] else n_t[base]
            for i in range(size):
                newest = max(newest, n_t[base + i])
            horizon = newest - RETENTION_MS
            w = 0
            for i in range(size):
                e = base + i
                if n_t[e] >= horizon:
                    if w != i:
                        n_t[base + w], n_c[base + w], n_h[base + w] = n_t[e], n_c[e], n_h[e]
                        n_lat[base + w], n_lon[base + w], n_cat[base + w] = (
                            n_lat[e],
                            n_lon[e],
                            n_cat[e],
                        )
                    w += 1
                    continue
                a_count[j] += 1
                a_cents[j] += n_c[e]
                a_cats[j, n_cat[e]] += 1
                # the newest folded event; a tie (a retry seen again after its first folding)
                # goes to the event folded now, as `prune`'s max over [*old, last]
                if not a_has[j] or n_t[e] > l_t[j] or (n_t[e] == l_t[j] and n_h[e] >= l_h[j]):
                    a_has[j] = 1
                    l_t[j], l_c[j], l_h[j] = n_t[e], n_c[e], n_h[e]
                    l_lat[j], l_lon[j], l_cat[j] = n_lat[e], n_lon[e], n_cat[e]
            size = w
        kept[j] = size


@cache
def _kernel() -> Callable[..., None]:
    """`_observe` compiled once per process (numba's on-disk cache where it can write)."""
    import numba  # imported here: ~1 s, and only a store that runs it needs it
    from numba import types

    # One signature, every array of any layout (the stored events read-only): a field of a
    # packed record array is strided, but contiguous when it holds one element, and each
    # layout would compile anew (~3 s).
    i8, u8, f8 = (types.Array(t, 1, "A") for t in (types.int64, types.uint64, types.float64))
    event = (i8, i8, f8, f8, u8, i8)
    stored = tuple(types.Array(a.dtype, 1, "A", readonly=True) for a in event)  # frombuffer's
    signature = types.void(
        *stored, i8, i8, i8, types.Array(types.int64, 2, "A"), i8, *event, i8,
        i8, i8, f8, f8, u8, i8, *event, i8, i8, types.Array(types.float64, 2, "A"),
    )  # fmt: skip
    try:
        kernel: Callable[..., None] = numba.njit(signature, nogil=True, cache=True)(_observe)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        kernel = numba.njit(signature, nogil=True)(_observe)
    return kernel
