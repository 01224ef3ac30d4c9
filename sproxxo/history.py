"""Card history: what the card did before this transaction, computed the same way offline
(training, evaluation) and online (the service, from a shared store).

"Before" means the card's transactions with an *event time* strictly earlier than this one's
(the authorisation's timestamp in whole milliseconds, never the arrival time): two
transactions of one card stamped the same millisecond do not see each other, and a gateway
retry (same `transaction_id`) sees exactly what the first attempt saw. With windows W of
1 h, 24 h and 7 d and the earlier transactions E = {e : t_e < t}:

    card_tx_W               = |{e in E : t - W <= t_e}|
    card_amount_W           = sum of their amounts (USD)
    card_seconds_since_last = t - max(t_e)                         NaN if E is empty
    card_mean_amount        = mean amount over all of E            NaN if E is empty
    amount_to_card_mean     = amount / card_mean_amount            NaN if E is empty
    amount_to_card_24h_mean = amount / (card_amount_24h / card_tx_24h)   NaN if none in 24 h
    card_category_count     = |{e in E : category_e = category}|
    card_km_from_last       = great-circle km between the merchants of the last e and this
    card_kmh_from_last      = card_km_from_last / max(hours since the last e, 1 minute)

A card with no history gets counts and sums of 0 and NaN for the rest (the trees route NaN
on their own). When the store cannot answer, every history feature is NaN.

Online the state of a card (`CardState`) keeps the events of the last 7 days individually
(the windows need them) and folds older ones into aggregates (count, amount, per-category
counts, the latest one's time and place), so it stays bounded; amounts are integer cents, so
every backend and the offline path add up to exactly the same sums. `observe` is the one
state transition: features from the state as it was, then the event appended (unless its
transaction id is already there) and the window pruned relative to the newest event.
Online equals offline when a card's events arrive in event-time order, or out of order by
less than the 7-day retention. Two earlier events stamped the same millisecond are ordered
by their transaction id's rank (`key_rank`, 64 bits of its SHA-1), which a packed state
keeps instead of the id.

This module is the reference, event by event in Python (the Redis store computes with it);
`sproxxo.history_packed` runs the same transition compiled over a whole batch of packed
states (the SQLite store), tested equal to it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol, overload

import numpy as np
import numpy.typing as npt
import orjson

from sproxxo.schemas import CATEGORIES

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
YEAR_MS: Final = 31_557_600_000  # 365.25 days
WINDOWS_MS: Final = {"1h": HOUR_MS, "24h": 24 * HOUR_MS, "7d": 7 * 24 * HOUR_MS}
RETENTION_MS: Final = max(WINDOWS_MS.values())
MIN_GAP_HOURS: Final = 1.0 / 60.0
HISTORY_FEATURES: Final = (
    "card_tx_1h",
    "card_tx_24h",
    "card_tx_7d",
    "card_amount_1h",
    "card_amount_24h",
    "card_amount_7d",
    "card_seconds_since_last",
    "card_mean_amount",
    "amount_to_card_mean",
    "amount_to_card_24h_mean",
    "card_category_count",
    "card_km_from_last",
    "card_kmh_from_last",
)
UNAVAILABLE: Final = (math.nan,) * len(HISTORY_FEATURES)
_EARTH_RADIUS_KM: Final = 6371.0088
_N_CATEGORIES: Final = len(CATEGORIES)


class Event(NamedTuple):
    """One transaction as the history keeps it."""

    t_ms: int
    cents: int
    category: int
    lat: float  # the merchant's
    lon: float
    key: str  # transaction id: a retry is not counted twice

    def encode(self) -> str:
        """The canonical text form every backend stores (floats by repr: exact)."""
        return f"{self.t_ms}|{self.cents}|{self.category}|{self.lat!r}|{self.lon!r}|{self.key}"

    @classmethod
    def decode(cls, text: str) -> Event:
        """Inverse of `encode`."""
        t_ms, cents, category, lat, lon, key = text.split("|", 5)
        return cls(int(t_ms), int(cents), int(category), float(lat), float(lon), key)


@dataclass
class CardState:
    """A card's history: recent events one by one, older ones as aggregates."""

    events: list[Event] = field(default_factory=list)
    count: int = 0  # events folded into the aggregates (older than the retention)
    cents: int = 0
    categories: list[int] = field(default_factory=lambda: [0] * _N_CATEGORIES)
    last: Event | None = None  # the newest folded event (ties: the greatest key rank)

    @property
    def newest_ms(self) -> int | None:
        """Event time of the newest event seen (individually kept or folded)."""
        times = [e.t_ms for e in self.events]
        if self.last is not None:
            times.append(self.last.t_ms)
        return max(times) if times else None


@dataclass(frozen=True)
class EventColumns(Sequence[Event]):
    """Events as columns (one array per field, the keys as a list): what a scored batch
    records, made without an `Event` per row; reads as those events. The compiled store
    (`history_packed.events_of`) takes the arrays as they are."""

    t_ms: npt.NDArray[np.int64]
    cents: npt.NDArray[np.int64]
    category: npt.NDArray[np.int64]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    keys: list[str]

    @classmethod
    def of(
        cls,
        epoch_seconds: Sequence[float],
        amounts: Sequence[float],
        categories: npt.NDArray[np.integer[Any]],
        lat: Sequence[float],
        lon: Sequence[float],
        keys: Sequence[Any],
    ) -> EventColumns:
        """The events of canonical values: times in whole ms and amounts in cents, each
        rounded half to even as `event_time_ms` and `to_cents` round one value."""
        return cls(
            np.rint(np.asarray(epoch_seconds, dtype=np.float64) * 1000.0).astype(np.int64),
            np.rint(np.asarray(amounts, dtype=np.float64) * 100.0).astype(np.int64),
            np.asarray(categories, dtype=np.int64),
            np.asarray(lat, dtype=np.float64),
            np.asarray(lon, dtype=np.float64),
            [str(key) for key in keys],
        )

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        i = range(len(self))[index]
        return Event(
            int(self.t_ms[i]), int(self.cents[i]), int(self.category[i]),
            float(self.lat[i]), float(self.lon[i]), self.keys[i],
        )  # fmt: skip

    def __iter__(self) -> Iterator[Event]:
        columns = (self.t_ms, self.cents, self.category, self.lat, self.lon)
        return map(Event._make, zip(*(c.tolist() for c in columns), self.keys, strict=True))


def event_time_ms(epoch_seconds: float) -> int:
    """Event time in whole milliseconds (half to even, like numpy's `round`)."""
    return round(epoch_seconds * 1000.0)


def to_cents(amount: float) -> int:
    """An amount in USD (2 decimals) as integer cents."""
    return round(amount * 100.0)


def features(state: CardState, event: Event) -> tuple[float, ...]:
    """The history features of `event` from the card's state before it (module doc).

    One pass over the card's recent events (a busy card keeps hundreds): the windows are
    nested (1 h in 24 h in 7 d), amounts are integer cents, so the sums are exact."""
    t, key, category = event.t_ms, event.key, event.category
    since_1h, since_24h, since_7d = t - HOUR_MS, t - DAY_MS, t - RETENTION_MS
    n = [0, 0, 0]  # 1 h, 24 h, 7 d
    cents = [0, 0, 0]
    count, total, same = state.count, state.cents, state.categories[category]
    previous = state.last if state.last is not None and state.last.t_ms < t else None
    for e in state.events:
        e_t = e.t_ms
        if e_t >= t or e.key == key:
            continue
        count += 1
        total += e.cents
        same += e.category == category
        # the latest earlier one; at equal times the greatest key rank (storage order never
        # matters)
        if (
            previous is None
            or e_t > previous.t_ms
            or (e_t == previous.t_ms and _later_key(e, previous))
        ):
            previous = e
        if e_t >= since_7d:
            n[2] += 1
            cents[2] += e.cents
            if e_t >= since_24h:
                n[1] += 1
                cents[1] += e.cents
                if e_t >= since_1h:
                    n[0] += 1
                    cents[0] += e.cents
    return _values(event, n, cents, count, total, same, previous)


def _values(
    event: Event,
    n: list[int],
    cents: list[int],
    count: int,
    total: int,
    same: int,
    previous: Event | None,
) -> tuple[float, ...]:
    amount = event.cents / 100.0
    mean = total / count / 100.0 if count else math.nan
    if previous is None:
        since_last = km = kmh = math.nan
    else:
        since_last = (event.t_ms - previous.t_ms) / 1000.0
        km = _haversine(previous.lat, previous.lon, event.lat, event.lon)
        kmh = km / max((event.t_ms - previous.t_ms) / HOUR_MS, MIN_GAP_HOURS)
    return (
        *(float(k) for k in n),
        *(c / 100.0 for c in cents),
        since_last,
        mean,
        amount / mean if count else math.nan,
        amount / (cents[1] / n[1] / 100.0) if n[1] else math.nan,
        float(same),
        km,
        kmh,
    )


def _order(event: Event) -> tuple[int, int]:
    return event.t_ms, key_rank(event.key)


def _later_key(e: Event, other: Event) -> bool:
    return key_rank(e.key) > key_rank(other.key)


def key_rank(key: str) -> int:
    """What orders two events of one card stamped the same millisecond, and recognises a
    retry in a packed state (`sproxxo.history_packed`): the first 8 bytes of the
    transaction id's SHA-1, big-endian (Redis's `redis.sha1hex` compares the same way)."""
    return int.from_bytes(hashlib.sha1(key.encode(), usedforsecurity=False).digest()[:8], "big")


def key_ranks(keys: Sequence[str]) -> npt.NDArray[np.uint64]:
    """`key_rank` of each key, as one array (the digests joined, read big-endian)."""
    digests = b"".join([hashlib.sha1(k.encode(), usedforsecurity=False).digest()[:8] for k in keys])
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    # squares as products: exact roundings, as numpy's and the compiled path's
    s_p, s_l = math.sin(dp / 2), math.sin(dl / 2)
    a = s_p * s_p + math.cos(p1) * math.cos(p2) * (s_l * s_l)
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


def observe(state: CardState, event: Event) -> tuple[tuple[float, ...], CardState]:
    """The one state transition: the event's features from the state before it, and the
    state after it (appended unless its key is already there, pruned to the retention)."""
    found = features(state, event)
    if any(e.key == event.key for e in state.events):
        return found, state
    appended = CardState(
        [*state.events, event], state.count, state.cents, list(state.categories), state.last
    )
    return found, prune(appended)


def prune(state: CardState) -> CardState:
    """Fold the events older than the retention (relative to the newest) into the
    aggregates."""
    newest = state.newest_ms
    if newest is None:
        return state
    horizon = newest - RETENTION_MS
    old = [e for e in state.events if e.t_ms < horizon]
    if not old:
        return state
    categories = list(state.categories)
    for e in old:
        categories[e.category] += 1
    last = max([*old, *([state.last] if state.last else [])], key=_order)
    return CardState(
        [e for e in state.events if e.t_ms >= horizon],
        state.count + len(old),
        state.cents + sum(e.cents for e in old),
        categories,
        last,
    )


def state_from_parts(events: Sequence[str], aggregates: Mapping[str, str]) -> CardState:
    """A card state from the form the stores keep it in: encoded events, and aggregates as
    strings (`n` count, `c` cents, `k<i>` per category, `l` the newest folded event)."""
    return CardState(
        events=[Event.decode(text) for text in events],
        count=int(aggregates.get("n", 0)),
        cents=int(aggregates.get("c", 0)),
        categories=[int(aggregates.get(f"k{i}", 0)) for i in range(_N_CATEGORIES)],
        last=Event.decode(aggregates["l"]) if aggregates.get("l") else None,
    )


def state_to_parts(state: CardState) -> tuple[list[str], dict[str, str]]:
    """Inverse of `state_from_parts`."""
    aggregates = {"n": str(state.count), "c": str(state.cents)}
    aggregates |= {f"k{i}": str(n) for i, n in enumerate(state.categories) if n}
    if state.last is not None:
        aggregates["l"] = state.last.encode()
    return [e.encode() for e in state.events], aggregates


@dataclass(frozen=True)
class Profile:
    """What the issuer knows of a card and its holder, kept beside its history: it fills
    the transaction fields a real authorisation does not carry."""

    lat: float
    long: float
    city_pop: int
    age: int  # the holder's age at `age_at_ms`
    age_at_ms: int
    issued_ms: int  # when the card was issued

    def fields_at(self, t_ms: int) -> dict[str, Any]:
        """The transaction's profile fields at event time `t_ms`."""
        return {
            "lat": self.lat,
            "long": self.long,
            "city_pop": self.city_pop,
            "customer_age": self.age + max(t_ms - self.age_at_ms, 0) // YEAR_MS,
            "card_age_days": max(t_ms - self.issued_ms, 0) // DAY_MS,
        }

    def encode(self) -> str:
        """The JSON the stores keep."""
        return orjson.dumps(self.__dict__).decode()

    @classmethod
    def decode(cls, text: str | bytes) -> Profile:
        """Inverse of `encode`."""
        return cls(**orjson.loads(text))


class CardView(NamedTuple):
    """What the store returns for one transaction: its history features and the card's
    profile (None: none was loaded). A named tuple: a batch builds a thousand."""

    features: tuple[float, ...]
    profile: Profile | None = None


class CardViews(Sequence[CardView]):
    """A batch's views as columns, as the packed store computes them: row i of `matrix` is
    event i's history features, `profiles[i]` its card's profile. Read as `CardView`s on
    demand; `view_columns` takes the columns as they are (a thousand views are not built
    to be taken apart again)."""

    __slots__ = ("matrix", "profiles")

    def __init__(self, matrix: npt.NDArray[np.float64], profiles: Sequence[Profile | None]):
        if matrix.shape != (len(profiles), len(HISTORY_FEATURES)):
            raise ValueError(f"history matrix {matrix.shape} for {len(profiles)} profiles")
        self.matrix = matrix
        self.profiles = profiles

    def __len__(self) -> int:
        return len(self.profiles)

    @overload
    def __getitem__(self, index: int) -> CardView: ...
    @overload
    def __getitem__(self, index: slice) -> CardViews: ...
    def __getitem__(self, index: int | slice) -> CardView | CardViews:
        if isinstance(index, slice):
            return CardViews(self.matrix[index], self.profiles[index])
        return CardView(tuple(self.matrix[index].tolist()), self.profiles[index])


def view_columns(
    views: Sequence[CardView],
) -> tuple[npt.NDArray[np.float64], Sequence[Profile | None]]:
    """The history features of `views` as an (n, len(HISTORY_FEATURES)) matrix, and their
    profiles."""
    if isinstance(views, CardViews):
        return views.matrix, views.profiles
    matrix = np.array([view.features for view in views], dtype=np.float64)
    return matrix.reshape(len(views), len(HISTORY_FEATURES)), [view.profile for view in views]


#: A store call's time budget counts per this many events (`call_budget`).
BULK_EVENTS: Final = 100


def call_budget(timeout_seconds: float, events: int) -> float:
    """How long a store call recording `events` events may wait: `timeout_seconds` for
    each started `BULK_EVENTS` of them. A single transaction keeps a short budget; a
    1,000-transaction batch gets ten, to wait for another worker's batch (SQLite's write
    lock) or for its own script to run (Redis: ~0.1 s for 1,000 events on this VM, which a
    single 50 ms budget failed every time)."""
    return timeout_seconds * max(1, math.ceil(events / BULK_EVENTS))


class HistoryStore(Protocol):
    """Where card states and profiles live (SQLite on one host, Redis across instances).

    `observe` is atomic per card: for each event in order, the features from the card's
    state before it, then the event recorded; a batch is one round trip, whose budget is
    `call_budget` of the store's timeout."""

    def observe(self, cards: Sequence[str], events: Sequence[Event]) -> Sequence[CardView]:
        """History features (and profile) of each event's card, recording the events."""

    def put_profiles(self, profiles: Mapping[str, Profile]) -> None:
        """Load or replace card profiles."""

    def close(self) -> None:
        """Release connections."""


# --------------------------------------------------------------------------- offline
def offline_features(
    card_ids: npt.ArrayLike,
    keys: npt.ArrayLike,
    epoch_seconds: npt.ArrayLike,
    amounts: npt.ArrayLike,
    category_codes: npt.ArrayLike,
    merch_lat: npt.ArrayLike,
    merch_lon: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """The history features of every row from the rows before it of the same card (all of
    them, whatever their order in the input), vectorised: an (n, len(HISTORY_FEATURES))
    matrix in the input's row order, equal to what `observe` computes online."""
    cards_in = np.asarray(card_ids, dtype=object)
    n = len(cards_in)
    out = np.full((n, len(HISTORY_FEATURES)), np.nan)
    if n == 0:
        return out
    t = np.round(np.asarray(epoch_seconds, dtype=np.float64) * 1000.0).astype(np.int64)
    cents = np.round(np.asarray(amounts, dtype=np.float64) * 100.0).astype(np.int64)
    cat = np.asarray(category_codes, dtype=np.int64)
    lat = np.asarray(merch_lat, dtype=np.float64)
    lon = np.asarray(merch_lon, dtype=np.float64)
    card = np.unique(cards_in, return_inverse=True)[1].astype(np.int64)
    order = np.lexsort((_tie_ranks(keys, card, t), t, card))  # ties in time: by key rank
    t_s, cents_s, cat_s, card_s = t[order], cents[order], cat[order], card[order]
    stride = int(t.max() - t.min()) + RETENTION_MS + 1
    key = card_s * stride + (t_s - t.min())
    strict = np.searchsorted(key, key, side="left")  # rows strictly before, same card
    start = np.searchsorted(key, card_s * stride, side="left")  # the card's first row
    csum = np.concatenate([[0], np.cumsum(cents_s)])
    cols = {}
    for w, width in WINDOWS_MS.items():
        left = np.searchsorted(key, key - width, side="left")
        cols[f"card_tx_{w}"] = (strict - left).astype(np.float64)
        cols[f"card_amount_{w}"] = (csum[strict] - csum[left]) / 100.0
    count = strict - start
    has = count > 0
    prev = np.where(has, strict - 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(has, (csum[strict] - csum[start]) / np.maximum(count, 1) / 100.0, np.nan)
        amount = cents_s / 100.0
        n24 = cols["card_tx_24h"]
        cents24 = csum[strict] - csum[np.searchsorted(key, key - WINDOWS_MS["24h"], side="left")]
        mean24 = np.where(n24 > 0, cents24 / np.maximum(n24, 1) / 100.0, np.nan)
        cols["card_seconds_since_last"] = np.where(has, (t_s - t_s[prev]) / 1000.0, np.nan)
        cols["card_mean_amount"] = mean
        cols["amount_to_card_mean"] = np.where(has, amount / mean, np.nan)
        cols["amount_to_card_24h_mean"] = np.where(n24 > 0, amount / mean24, np.nan)
        cols["card_category_count"] = _category_counts(card_s, cat_s, t_s)
        km = _haversine_np(lat[order][prev], lon[order][prev], lat[order], lon[order])
        hours = np.maximum((t_s - t_s[prev]) / HOUR_MS, MIN_GAP_HOURS)
        cols["card_km_from_last"] = np.where(has, km, np.nan)
        cols["card_kmh_from_last"] = np.where(has, km / hours, np.nan)
    sorted_out = np.column_stack([cols[name] for name in HISTORY_FEATURES])
    out[order] = sorted_out
    return out


def _tie_ranks(
    keys: npt.ArrayLike, card: npt.NDArray[np.int64], t: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """`key_rank` of the rows sharing their card and event time with another (0 elsewhere:
    only ties need it, and hashing every key of a large file costs a second per million)."""
    ranks = np.zeros(len(t), dtype=np.uint64)
    pairs = np.column_stack([card, t])
    _, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    tied = np.flatnonzero(counts[inverse.ravel()] > 1)
    names = np.asarray(keys, dtype=object)
    ranks[tied] = [key_rank(str(names[i])) for i in tied]
    return ranks


def _category_counts(
    card: npt.NDArray[np.int64], cat: npt.NDArray[np.int64], t: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Earlier rows (strictly) of the same card and category, for rows sorted by card, t."""
    order = np.lexsort((t, cat, card))
    stride = int(t.max() - t.min()) + 1
    key = (card[order] * _N_CATEGORIES + cat[order]) * stride + (t[order] - t.min())
    group = (card[order] * _N_CATEGORIES + cat[order]) * stride
    counts = np.searchsorted(key, key, side="left") - np.searchsorted(key, group, side="left")
    out = np.empty(len(card), dtype=np.float64)
    out[order] = counts
    return out


def _haversine_np(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
