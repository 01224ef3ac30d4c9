"""Loading the card store the service reads: card profiles, and recent history.

* `profiles`: one `sproxxo.history.Profile` per card from a data source's rows (the latest
  row of each card: home, city population, the holder's age and the card's issue date as
  of that row), written to the store the settings name;
* `forget`: delete the cards idle for a number of days from a SQLite store;
* `warm`: replay recent transactions into the store (event-time order, in batches), so a
  new deployment starts with the cards' last 7 days instead of an empty history.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sproxxo.adapters.history import open_store
from sproxxo.errors import DataSourceError
from sproxxo.features import history_events
from sproxxo.history import DAY_MS, HistoryStore, Profile, event_time_ms
from sproxxo.jobs.data import DataSpec, load_with_history
from sproxxo.settings import Settings

BATCH = 1_000


@dataclass(frozen=True)
class Loaded:
    """What a load wrote."""

    cards: int
    rows: int


def profiles_of(frame: pd.DataFrame) -> dict[str, Profile]:
    """Each card's profile from its latest row."""
    latest = frame.sort_values("epoch_seconds", kind="stable").groupby("card_id").tail(1)
    columns = ("card_id", "epoch_seconds", "lat", "long", "city_pop", "customer_age")
    out = {}
    for card, seconds, lat, long, pop, age, card_age in zip(
        *(latest[c].tolist() for c in (*columns, "card_age_days")), strict=True
    ):
        t = event_time_ms(float(seconds))
        out[str(card)] = Profile(
            lat=float(lat),
            long=float(long),
            city_pop=int(pop),
            age=int(age),
            age_at_ms=t,
            issued_ms=t - int(card_age) * DAY_MS,
        )
    return out


def load_profiles(spec: DataSpec, settings: Settings) -> Loaded:
    """Write every card's profile found in the data into the store."""
    frame, _ = load_with_history(
        spec, token_key=settings.card_token_key.get_secret_value().encode()
    )
    profiles = profiles_of(frame)
    store = _store(settings)
    try:
        store.put_profiles(profiles)
    finally:
        store.close()
    return Loaded(cards=len(profiles), rows=len(frame))


def warm(spec: DataSpec, settings: Settings, *, days: float = 7.0) -> Loaded:
    """Replay the last `days` of the data (event-time order) into the store's history."""
    frame, _ = load_with_history(
        spec, token_key=settings.card_token_key.get_secret_value().encode()
    )
    ordered = frame.sort_values("epoch_seconds", kind="stable")
    since = ordered["epoch_seconds"].max() - days * 86_400
    recent = ordered[ordered["epoch_seconds"] >= since].reset_index(drop=True)
    store = _store(settings)
    try:
        for start in range(0, len(recent), BATCH):
            part = recent.iloc[start : start + BATCH]
            columns = {c: part[c].tolist() for c in part.columns}
            store.observe(columns["card_id"], history_events(columns))
    finally:
        store.close()
    return Loaded(cards=int(recent["card_id"].nunique()), rows=len(recent))


def forget_idle(settings: Settings, *, idle_days: float) -> int:
    """Delete the cards idle for `idle_days` from a SQLite store (Redis expires them by
    itself); how many were deleted."""
    from sproxxo.adapters.history_sqlite import SqliteHistory

    store = _store(settings)
    try:
        if not isinstance(store, SqliteHistory):
            raise DataSourceError("forget: only the SQLite store needs it (Redis keys expire)")
        return store.forget_idle(idle_days=idle_days)
    finally:
        store.close()


def _store(settings: Settings) -> HistoryStore:
    store = open_store(settings)
    if store is None:
        raise DataSourceError("SPROXXO_HISTORY_URL=none: there is no card store to load")
    return store
