"""Card history in SQLite: the default store, one file shared by every worker of a host.

One row per card (its recent events as encoded lines, its aggregates as JSON), in WAL mode
so readers never block the writer. `observe` runs one `BEGIN IMMEDIATE` transaction per
batch: it takes the write lock, reads every card of the batch, applies
`sproxxo.history.observe` event by event, writes the changed cards back and commits, so
two workers scoring the same card serialise and lose no update. A lock held longer than
`timeout_seconds` raises `sqlite3.OperationalError` (the caller scores without history).

Decoding a busy card's events is most of a call's cost, so each store keeps the decoded
state of the cards it wrote last (at most `DECODED_EVENTS` events, least recently used
out: ~40 MB) with the exact text it wrote: a read reuses the decoded state only when the
row holds that very text, so another worker's (or instance's) write, or a rolled-back one,
is always decoded afresh.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import orjson

from sproxxo.history import (
    CardState,
    CardView,
    Event,
    Profile,
    observe,
    state_from_parts,
    state_to_parts,
)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS cards (
    card_id TEXT PRIMARY KEY,
    events TEXT NOT NULL,
    aggregates TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    card_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL
) WITHOUT ROWID;
"""


INIT_SECONDS: Final = 10.0
#: Events (over all cards) whose decoded state a store keeps beside the text it wrote.
DECODED_EVENTS: Final = 100_000


class SqliteHistory:
    """`sproxxo.history.HistoryStore` over one SQLite file."""

    def __init__(self, path: Path, *, timeout_seconds: float = 0.05) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(
            path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()  # one connection, used from the loop and from threads
        self._decoded: OrderedDict[str, tuple[str, str, CardState]] = OrderedDict()
        self._decoded_events = 0
        self._initialise()

    def _initialise(self, *, deadline_seconds: float = INIT_SECONDS) -> None:
        """WAL mode and the tables. Several workers open a new file at the same moment, and
        switching it to WAL or creating its tables can find it locked without SQLite's busy
        handler being called: retried until the deadline (start-up, never a request)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def observe(self, cards: Sequence[str], events: Sequence[Event]) -> list[CardView]:
        """History features and profile of each event's card (in order), recording the
        events."""
        distinct = set(cards)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # waits at most timeout_seconds
            try:
                states = self._read(distinct)
                profiles = self._profiles(distinct)
                found = []
                for card, event in zip(cards, events, strict=True):
                    features, states[card] = observe(states.get(card, CardState()), event)
                    found.append(CardView(features, profiles.get(card)))
                self._write(states)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return found

    def put_profiles(self, profiles: Mapping[str, Profile]) -> None:
        """Load or replace card profiles."""
        rows = [(card, profile.encode()) for card, profile in profiles.items()]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO profiles VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")

    def _profiles(self, cards: set[str]) -> dict[str, Profile]:
        marks = ",".join("?" * len(cards))
        rows = self._conn.execute(
            f"SELECT card_id, profile FROM profiles WHERE card_id IN ({marks})",  # noqa: S608 - placeholders only
            tuple(cards),
        )
        return {card: Profile.decode(text) for card, text in rows}

    def _read(self, cards: set[str]) -> dict[str, CardState]:
        marks = ",".join("?" * len(cards))
        rows = self._conn.execute(
            f"SELECT card_id, events, aggregates FROM cards WHERE card_id IN ({marks})",  # noqa: S608 - placeholders only
            tuple(cards),
        )
        return {card: self._decode(card, events, aggs) for card, events, aggs in rows}

    def _decode(self, card: str, events: str, aggregates: str) -> CardState:
        known = self._decoded.get(card)
        if known is not None and known[0] == events and known[1] == aggregates:
            return known[2]  # the row holds exactly what this store wrote
        return state_from_parts(events.split("\n") if events else [], orjson.loads(aggregates))

    def _remember(self, card: str, events: str, aggregates: str, state: CardState) -> None:
        old = self._decoded.pop(card, None)
        if old is not None:
            self._decoded_events -= len(old[2].events)
        self._decoded[card] = (events, aggregates, state)
        self._decoded_events += len(state.events)
        while self._decoded_events > DECODED_EVENTS and self._decoded:
            _, _, dropped = self._decoded.popitem(last=False)[1]
            self._decoded_events -= len(dropped.events)

    def _write(self, states: dict[str, CardState]) -> None:
        now = int(time.time() * 1000)
        rows = []
        for card, state in states.items():
            events, aggregates = state_to_parts(state)
            text, aggs = "\n".join(events), orjson.dumps(aggregates).decode()
            rows.append((card, text, aggs, now))
            self._remember(card, text, aggs, state)
        self._conn.executemany(
            "INSERT OR REPLACE INTO cards (card_id, events, aggregates, updated_ms) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )

    def forget_idle(self, *, idle_days: float) -> int:
        """Delete the cards not seen for `idle_days` (their history has expired); returns
        how many."""
        horizon = int((time.time() - idle_days * 86400) * 1000)
        with self._lock:
            done = self._conn.execute("DELETE FROM cards WHERE updated_ms < ?", (horizon,))
        return int(done.rowcount)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
