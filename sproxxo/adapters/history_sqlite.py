"""Card history in SQLite: the default store, one file shared by every worker of a host.

One row per card: its state packed (`sproxxo.history_packed`: its recent events as
fixed-width binary records, its aggregates as one more), in WAL mode so readers never block
the writer (`synchronous`: what a commit waits for, see `SYNCHRONOUS`). `observe` runs one
`BEGIN IMMEDIATE` transaction per batch: it takes the write lock, reads every card of the
batch, runs the whole batch through the compiled state transition, writes the cards back and
commits, so two workers scoring the same card serialise and lose no update. A call waits
for its worker's other call, then for the write lock, each at most
`sproxxo.history.call_budget` (`timeout_seconds` per 100 events), then raises
`sqlite3.OperationalError` (the caller scores without history): a single request keeps a
short budget, and a 1,000-transaction batch may wait for another worker's batch, whose
transaction the scheduler and the other thread's hold on the GIL can stretch past a single
budget (two workers under 1,000-transaction batches lost the history of 1.8% of their
transactions with one budget for every call, none with this; README).

WAL checkpoints (copying the log back into the file: with `synchronous=normal` the one step
that fsyncs) run on a background thread every `checkpoint_seconds`: by default SQLite runs
one in the commit that takes the log past 1,000 pages, and that scoring call waits for the
copy and its fsyncs (12-30 ms on this VM's disk). The thread repeats passive checkpoints
(they wait for no reader or writer) until the log stops growing, so that the next commit
restarts the log from its start and it stays small. SQLite's own checkpoint stays on as a
fallback: a writer that outpaces the thread (batches back to back) meets it at 1,000 pages,
as without the thread (skipped while the thread is copying: the log then grows until a
commit lands between two of the thread's runs). Each worker runs its own thread; one that
finds another checkpointing stops its rounds. `checkpoint_seconds=0`: no thread.

Rows written before the packed format (events as text lines, aggregates as JSON) are read
through `sproxxo.history.state_from_parts` and written back packed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import orjson

from sproxxo.history import CardViews, Event, Profile, call_budget, state_from_parts
from sproxxo.history_packed import (
    EMPTY_AGGREGATES,
    events_of,
    observe_batch,
    pack,
)
from sproxxo.settings import SqliteSynchronous

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS cards (
    card_id TEXT PRIMARY KEY,
    events BLOB NOT NULL,
    aggregates BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    card_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL
) WITHOUT ROWID;
"""


log = logging.getLogger(__name__)

INIT_SECONDS: Final = 10.0
#: Passive checkpoints in one go at most: each copies what the scoring calls wrote during
#: the previous one; at 200 one-card calls a second it takes 3-4 to find nothing new.
CHECKPOINT_ROUNDS: Final = 20
#: close() waits this long for the thread (it stops between two rounds).
CLOSE_SECONDS: Final = 2.0
Packed = tuple[bytes, bytes]
#: `normal`: WAL checkpoints fsync (consistent after a power cut, the last commits lost):
#: 12-30 ms on this VM's disk, on the checkpoint thread (in the commit that takes the log
#: past 1,000 pages with `checkpoint_seconds=0`). `off`: no fsync (a process crash loses
#: nothing; an OS crash or power cut can corrupt the file: delete it, then
#: `python -m training.history` profiles and warm).
SYNCHRONOUS: Final[dict[SqliteSynchronous, str]] = {"normal": "NORMAL", "off": "OFF"}


class SqliteHistory:
    """`sproxxo.history.HistoryStore` over one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_seconds: float = 0.05,
        synchronous: SqliteSynchronous = "normal",
        checkpoint_seconds: float = 0.2,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.synchronous = synchronous
        self.timeout_seconds = timeout_seconds
        self._conn = sqlite3.connect(
            path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._wait_ms = round(timeout_seconds * 1000)  # the connection's busy timeout
        self._lock = threading.Lock()  # one connection, used from the loop and from threads
        self._initialise()
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoints = 0  # checkpoints that ran (tests, operators)
        self.checkpoint_failures = 0  # the thread's checkpoints that raised
        self._checkpoint_conn: sqlite3.Connection | None = None  # the thread's, kept open
        self._checkpoint_lock = threading.Lock()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_seconds > 0:
            self._checkpointer = threading.Thread(
                target=_checkpoint_every,
                args=(weakref.ref(self), self._stop, checkpoint_seconds),
                name="sproxxo-history-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()
            weakref.finalize(self, self._stop.set)  # a store dropped without close()
            _CHECKPOINTING.add(self)

    def _initialise(self, *, deadline_seconds: float = INIT_SECONDS) -> None:
        """WAL mode and the tables. Several workers open a new file at the same moment, and
        switching it to WAL or creating its tables can find it locked without SQLite's busy
        handler being called: retried until the deadline (start-up, never a request)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[self.synchronous]}")
                self._conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def observe(self, cards: Sequence[str], events: Sequence[Event]) -> CardViews:
        """History features and profile of each event's card (in order), recording the
        events."""
        distinct = list(dict.fromkeys(cards))
        index = {card: i for i, card in enumerate(distinct)}
        batch = events_of(events)
        budget = call_budget(self.timeout_seconds, len(events))
        # This worker's other call first (a batch may hold the connection for its own,
        # longer wait), then the file's write lock: each at most the call's budget.
        if not self._lock.acquire(timeout=budget):
            raise sqlite3.OperationalError("database is locked (by this worker's other call)")
        try:
            wait_ms = round(1000 * budget)
            if wait_ms != self._wait_ms:
                self._conn.execute(f"PRAGMA busy_timeout = {wait_ms:d}")
                self._wait_ms = wait_ms
            self._conn.execute("BEGIN IMMEDIATE")  # waits at most wait_ms
            try:
                stored, profiles = self._read(distinct)
                before = [stored.get(card, (b"", EMPTY_AGGREGATES)) for card in distinct]
                found, after = observe_batch(before, [index[card] for card in cards], batch)
                self._write(distinct, after)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        finally:
            self._lock.release()
        return CardViews(found, [profiles.get(card) for card in cards])

    def put_profiles(self, profiles: Mapping[str, Profile]) -> None:
        """Load or replace card profiles."""
        rows = [(card, profile.encode()) for card, profile in profiles.items()]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO profiles VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")

    def _read(self, cards: list[str]) -> tuple[dict[str, Packed], dict[str, Profile]]:
        """The stored state and the profile of each card that has one: one query."""
        keys = ",".join(["(?)"] * len(cards))
        rows = self._conn.execute(
            f"WITH k(card_id) AS (VALUES {keys}) "  # noqa: S608 - placeholders only
            "SELECT k.card_id, c.events, c.aggregates, p.profile FROM k "
            "LEFT JOIN cards c ON c.card_id = k.card_id "
            "LEFT JOIN profiles p ON p.card_id = k.card_id",
            cards,
        ).fetchall()
        states = {card: _packed(ev, ag) for card, ev, ag, _ in rows if ev is not None}
        profiles = {card: Profile.decode(text) for card, *_, text in rows if text is not None}
        return states, profiles

    def _write(self, cards: list[str], states: list[Packed]) -> None:
        now = int(time.time() * 1000)
        self._conn.executemany(
            "INSERT OR REPLACE INTO cards (card_id, events, aggregates, updated_ms) "
            "VALUES (?, ?, ?, ?)",
            [(card, events, aggs, now) for card, (events, aggs) in zip(cards, states, strict=True)],
        )

    def forget_idle(self, *, idle_days: float) -> int:
        """Delete the cards not seen for `idle_days` (their history has expired); returns
        how many."""
        horizon = int((time.time() - idle_days * 86400) * 1000)
        with self._lock:
            done = self._conn.execute("DELETE FROM cards WHERE updated_ms < ?", (horizon,))
        return int(done.rowcount)

    def checkpoint(self) -> tuple[int, int]:
        """Passive WAL checkpoints on their own connection until the log stops growing or
        restarts (at most `CHECKPOINT_ROUNDS`; at once if another connection, such as
        another worker's thread, is checkpointing, or the store is closing): the last
        round's (pages in the log, pages copied into the file), -1 each if it found
        another checkpoint running."""
        with self._checkpoint_lock:
            conn = self._checkpoint_conn
            if conn is None:
                conn = sqlite3.connect(
                    self.path, timeout=0, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[self.synchronous]}")
                self._checkpoint_conn = conn
            previous, ran = -1, False
            try:
                for _ in range(CHECKPOINT_ROUNDS):
                    # fetchall: the statement finishes, so this connection keeps no read
                    # lock (which would stop the next commit from restarting the log)
                    busy, logged, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchall()[0]
                    if busy:
                        break
                    ran = True
                    if logged < previous or copied == logged == previous or self._stop.is_set():
                        break
                    previous = logged
            except BaseException:
                conn.close()
                self._checkpoint_conn = None
                raise
            if ran:
                self.checkpoints += 1
        return int(logged), int(copied)

    def close(self) -> None:
        """Stop the checkpoint thread and close the connection."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=CLOSE_SECONDS)
        with self._checkpoint_lock:
            if self._checkpoint_conn is not None:
                self._checkpoint_conn.close()
                self._checkpoint_conn = None
        with self._lock:
            self._conn.close()


#: Stores whose thread checkpoints. A process that forks (a test's workers, a server's
#: pre-fork) waits for their checkpoints to finish, so that no thread of it is inside
#: SQLite, holding one of its process-wide mutexes, when the child is made.
_CHECKPOINTING: weakref.WeakSet[SqliteHistory] = weakref.WeakSet()


_HELD: list[threading.Lock] = []  # the locks _before_fork took, for _after_fork


def _before_fork() -> None:
    for store in list(_CHECKPOINTING):
        store._checkpoint_lock.acquire()
        _HELD.append(store._checkpoint_lock)


def _after_fork() -> None:
    while _HELD:
        _HELD.pop().release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


def _checkpoint_every(
    store: weakref.ref[SqliteHistory], stop: threading.Event, seconds: float
) -> None:
    """The checkpoint thread: holds the store only while it checkpoints, so a store
    dropped without `close()` stops it too. A failure is logged once until it changes or
    a checkpoint succeeds (SQLite's own checkpoint still runs in the scoring calls)."""
    reported = ""
    while not stop.wait(seconds):
        current = store()
        if current is None:
            return
        try:
            current.checkpoint()
            reported = ""
        except Exception as exc:  # a full disk, a deleted folder: the thread goes on
            current.checkpoint_failures += 1
            error = f"{type(exc).__name__}: {exc}"
            if error != reported:
                log.warning("card-history checkpoint failed: %s", error, exc_info=True)
                reported = error
        del current


def _packed(events: bytes | str, aggregates: bytes | str) -> Packed:
    """A row's state packed; a row of the text format (written before) converted."""
    if isinstance(events, bytes) and isinstance(aggregates, bytes):
        return events, aggregates
    lines = str(events).split("\n") if events else []
    return pack(state_from_parts(lines, orjson.loads(aggregates)))
