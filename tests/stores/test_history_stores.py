"""Both card-history backends for real: SQLite on a temp file and a `redis-server` on a
loopback port. Online features equal the offline (training) ones, a batch is one round
trip, retries are not counted twice, concurrent writers lose no update, state is bounded
and profiles come back with the features."""

from __future__ import annotations

import gc
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from sproxxo.adapters import history as history_adapter
from sproxxo.adapters.history import Reopening, history_for
from sproxxo.adapters.history_redis import EVENTS_TTL_SECONDS, RedisHistory
from sproxxo.adapters.history_sqlite import SqliteHistory
from sproxxo.history import (
    BULK_EVENTS,
    DAY_MS,
    HISTORY_FEATURES,
    CardState,
    CardViews,
    Event,
    HistoryStore,
    Profile,
    call_budget,
    observe,
    state_to_parts,
    view_columns,
)
from sproxxo.history_packed import unpack
from sproxxo.settings import Settings
from tests.helpers import HISTORY_T0, history_stream, offline_of

IDX = {name: i for i, name in enumerate(HISTORY_FEATURES)}


def open_store(kind: str, where: Path | str) -> HistoryStore:
    if kind == "sqlite":
        return SqliteHistory(Path(where), timeout_seconds=5.0)
    return RedisHistory(str(where), timeout_seconds=5.0, prefix=f"t{uuid.uuid4().hex[:8]}:")


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path | str]:
    """Which backend, and where it lives (a fresh SQLite file, or the session's Redis)."""
    if request.param == "sqlite":
        return "sqlite", tmp_path / "history.sqlite"
    return "redis", request.getfixturevalue("redis_url")


@pytest.fixture
def store(backend: tuple[str, Path | str]) -> Iterator[HistoryStore]:
    s = open_store(*backend)
    yield s
    s.close()


def ev(t_ms: int, key: str, cents: int = 1_000) -> Event:
    return Event(t_ms, cents, 2, 40.0, -74.0, key)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_store_features_equal_the_offline_features(store: HistoryStore, batch: int) -> None:
    """A stream with bursts, ties, retries and month-long gaps, fed in batches: the store's
    features equal the training path's to 1e-9 (NaN where NaN)."""
    stream = history_stream(batch, n=2500)
    online: dict[str, tuple[float, ...]] = {}
    for start in range(0, len(stream), batch):
        part = stream[start : start + batch]
        views = store.observe([c for c, _ in part], [e for _, e in part])
        for (_, e), view in zip(part, views, strict=True):
            online.setdefault(e.key, view.features)
            np.testing.assert_array_equal(view.features, online[e.key])  # retry: as first
    np.testing.assert_allclose(
        np.array(list(online.values())), offline_of(stream), rtol=1e-9, atol=1e-9
    )


def test_retry_is_not_counted_twice(store: HistoryStore) -> None:
    """The same transaction id again: same features, and the card's count unchanged."""
    first = store.observe(["c"], [ev(HISTORY_T0, "a")])[0]
    again = store.observe(["c"], [ev(HISTORY_T0, "a")])[0]
    np.testing.assert_array_equal(again.features, first.features)  # NaN where NaN
    assert again.profile == first.profile
    later = store.observe(["c"], [ev(HISTORY_T0 + 1_000, "b")])[0].features
    assert later[IDX["card_tx_1h"]] == 1.0


def test_within_a_batch_later_events_see_earlier_ones(store: HistoryStore) -> None:
    """A batch with three events of one card, in order: counts 0, 1, 2."""
    views = store.observe(["c"] * 3, [ev(HISTORY_T0 + i, f"k{i}") for i in range(3)])
    assert [v.features[IDX["card_tx_1h"]] for v in views] == [0.0, 1.0, 2.0]


def test_profiles_come_back_with_the_features(store: HistoryStore) -> None:
    """A loaded profile is returned for its card; a card without one gets None."""
    profile = Profile(40.1, -74.2, 12_345, 37, HISTORY_T0, HISTORY_T0 - 90 * DAY_MS)
    store.put_profiles({"known": profile})
    views = store.observe(["known", "stranger"], [ev(HISTORY_T0, "p1"), ev(HISTORY_T0, "p2")])
    assert views[0].profile == profile
    assert views[1].profile is None


def test_views_as_columns_equal_the_views_one_by_one(store: HistoryStore) -> None:
    """`view_columns` of a batch's views (the SQLite store's `CardViews` taken as they are,
    Redis's list stacked) equals reading each `CardView`: features NaN where NaN, profiles
    in event order."""
    profile = Profile(40.1, -74.2, 12_345, 37, HISTORY_T0, HISTORY_T0 - 90 * DAY_MS)
    store.put_profiles({"known": profile})
    cards = ["known", "stranger", "known", "other", "stranger"]
    views = store.observe(cards, [ev(HISTORY_T0 + 60_000 * i, f"v{i}") for i in range(5)])
    matrix, profiles = view_columns(views)
    assert matrix.shape == (5, len(HISTORY_FEATURES))
    np.testing.assert_array_equal(matrix, np.array([view.features for view in views]))
    assert list(profiles) == [view.profile for view in views]
    assert list(profiles) == [profile, None, profile, None, None]
    assert matrix[2, IDX["card_tx_1h"]] == 1.0  # the second "known" saw the first
    np.testing.assert_array_equal(
        [v.features for v in views[1:3]], [v.features for v in list(views)[1:3]]
    )


def test_card_views_refuse_a_matrix_of_the_wrong_shape() -> None:
    """A store's matrix must hold one row of every history feature per profile."""
    with pytest.raises(ValueError, match="history matrix"):
        CardViews(np.zeros((2, len(HISTORY_FEATURES))), [None])
    with pytest.raises(ValueError, match="history matrix"):
        CardViews(np.zeros((1, 3)), [None])


def _hammer(kind: str, where: str, worker: int, n: int) -> None:
    s = open_store(kind, where)
    if isinstance(s, RedisHistory):
        s.prefix = "shared:"
    for i in range(n):
        s.observe(["hot"], [ev(HISTORY_T0 + i, f"w{worker}-{i}", cents=100)])
    s.close()


def test_two_processes_on_one_card_lose_no_update(backend: tuple[str, Path | str]) -> None:
    """Two processes record 300 transactions each on the same card at the same time: the
    card then has all 600 (count and exact sum)."""
    kind, where = backend
    if kind == "redis":
        redis.Redis.from_url(str(where)).delete(*[f"shared:{{hot}}:{s}" for s in "eap"])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(kind, str(where), w, 300)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = open_store(kind, where)
    if isinstance(s, RedisHistory):
        s.prefix = "shared:"
    f = s.observe(["hot"], [ev(HISTORY_T0 + 10_000, "last")])[0].features
    s.close()
    assert f[IDX["card_tx_1h"]] == 600.0
    assert f[IDX["card_amount_1h"]] == 600.0


def test_sqlite_batch_is_one_transaction(tmp_path: Path) -> None:
    """A batch of 200 cards runs the statements a batch of one does, in one transaction:
    BEGIN IMMEDIATE, one read of the cards' states and profiles, the writes, COMMIT (before
    it, once, the lock wait of two budgets)."""
    s = SqliteHistory(tmp_path / "h.sqlite")
    statements: list[str] = []
    s._conn.set_trace_callback(statements.append)

    def reads_and_brackets(cards: int, tag: str) -> list[str]:
        statements.clear()
        s.observe(
            [f"{tag}{i}" for i in range(cards)], [ev(HISTORY_T0, f"{tag}{i}") for i in range(cards)]
        )
        return [st.split()[0] for st in statements if not st.startswith(("INSERT", "PRAGMA"))]

    single, batch = reads_and_brackets(1, "a"), reads_and_brackets(200, "b")
    assert statements[0] == "PRAGMA busy_timeout = 100"
    assert reads_and_brackets(200, "c") == batch
    assert not any(st.startswith("PRAGMA") for st in statements)
    s.close()
    assert single == batch
    assert batch[0] == "BEGIN"
    assert batch[-1] == "COMMIT"
    assert batch == ["BEGIN", "WITH", "COMMIT"]  # states and profiles: one query


def test_redis_batch_is_one_round_trip(redis_url: str) -> None:
    """A batch of 200 cards is one command from the client (the script); everything else
    the server runs for it comes from inside the script (MONITOR shows who sent what)."""
    s = RedisHistory(redis_url, prefix="rt:")
    raw, marker = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    marker.ping()  # connected before the watch starts
    warm = [f"w{i}" for i in range(200)]  # the script loaded, the batch's client connected
    s.observe(warm, [ev(HISTORY_T0, key) for key in warm])
    from_clients = []
    with raw.monitor() as monitor:
        s.observe([f"c{i}" for i in range(200)], [ev(HISTORY_T0, f"z{i}") for i in range(200)])
        marker.set("rt:marker", "1")
        for seen in monitor.listen():
            if seen["command"].startswith("SET rt:marker"):
                break
            if seen["client_type"] != "lua":
                from_clients.append(seen["command"].split()[0])
    s.close()
    assert from_clients == ["EVALSHA"]


def test_redis_state_is_bounded_and_expires(redis_url: str) -> None:
    """Thirty days of daily use keep at most 8 events per card, and both keys expire."""
    s = RedisHistory(redis_url, prefix="b:")
    for day in range(30):
        s.observe(["card"], [ev(HISTORY_T0 + day * DAY_MS, f"d{day}")])
    s.close()
    raw = redis.Redis.from_url(redis_url)
    assert raw.zcard("b:{card}:e") == 8
    assert raw.hget("b:{card}:a", "n") == b"22"
    assert 0 < raw.ttl("b:{card}:e") <= EVENTS_TTL_SECONDS
    assert raw.ttl("b:{card}:a") > EVENTS_TTL_SECONDS


def test_sqlite_state_is_bounded(tmp_path: Path) -> None:
    """Thirty days of daily use keep 8 events in the card's row, the rest folded."""
    s = SqliteHistory(tmp_path / "h.sqlite")
    for day in range(30):
        s.observe(["card"], [ev(HISTORY_T0 + day * DAY_MS, f"d{day}")])
    s.close()
    with sqlite3.connect(tmp_path / "h.sqlite") as conn:
        row = conn.execute("SELECT events, aggregates FROM cards WHERE card_id='card'").fetchone()
    state = unpack(*row)
    assert len(state["events"]) == 8
    assert state["count"] == 22


def test_sqlite_two_stores_alternating_see_every_event(tmp_path: Path) -> None:
    """Two stores on one file (two workers) alternate on one card: each sees every event
    the other wrote, as a single store would."""
    a = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    b = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    seen = []
    for i in range(12):
        (view,) = (a if i % 3 else b).observe(["card"], [ev(HISTORY_T0 + i * 60_000, f"k{i}")])
        seen.append(view.features[IDX["card_tx_24h"]])
    a.close()
    b.close()
    assert seen == [float(i) for i in range(12)]


def test_sqlite_rows_of_the_text_format_are_read_and_written_back_packed(tmp_path: Path) -> None:
    """A file written before the packed format (events as text lines, aggregates as JSON)
    gives the features the reference gives, and its row is packed afterwards."""
    events = [ev(HISTORY_T0 + day * DAY_MS, f"d{day}", cents=1_000 + day) for day in range(12)]
    state = CardState()
    for event in events:
        _, state = observe(state, event)
    lines, aggregates = state_to_parts(state)
    path = tmp_path / "h.sqlite"
    SqliteHistory(path).close()  # the schema
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO cards VALUES ('card', ?, ?, 0)",
            ("\n".join(lines), orjson.dumps(aggregates).decode()),
        )
    now = ev(HISTORY_T0 + 12 * DAY_MS, "now")
    s = SqliteHistory(path)
    (view,) = s.observe(["card"], [now])
    s.close()
    np.testing.assert_array_equal(view.features, observe(state, now)[0])
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT events, aggregates FROM cards").fetchone()
    assert all(isinstance(part, bytes) for part in row)
    assert unpack(*row)["count"] == observe(state, now)[1].count


def test_sqlite_lock_held_past_the_budget_fails_the_call(tmp_path: Path) -> None:
    """Another writer holds the lock (and keeps it): the call fails within its budget
    instead of waiting, so the service can score without history."""
    path = tmp_path / "h.sqlite"
    s = SqliteHistory(path, timeout_seconds=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        s.observe(["c"], [ev(HISTORY_T0, "a")])
    holder.execute("ROLLBACK")
    assert s.observe(["c"], [ev(HISTORY_T0, "a")])[0].features[IDX["card_tx_1h"]] == 0.0
    s.close()


def test_sqlite_a_batch_waits_for_the_lock_one_budget_per_bulk_of_events(tmp_path: Path) -> None:
    """Another writer holds the lock: a single event gives up at its budget, while a
    batch of 1,000 waiting since before it (ten budgets) is still waiting and succeeds once
    the lock is released."""
    path = tmp_path / "h.sqlite"
    batch_store = SqliteHistory(path, timeout_seconds=0.2)
    single_store = SqliteHistory(path, timeout_seconds=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    n = 10 * BULK_EVENTS
    events = [ev(HISTORY_T0 + i * 1000, f"b{i}") for i in range(n)]
    waiting = threading.Event()  # SQLite traces a statement as it starts, before any wait
    batch_store._conn.set_trace_callback(lambda st: st == "BEGIN IMMEDIATE" and waiting.set())
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(batch_store.observe, [f"card{i % 50}" for i in range(n)], events)
        assert waiting.wait(60)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            single_store.observe(["c"], [ev(HISTORY_T0, "a")])
        holder.execute("ROLLBACK")
        views = batch.result()
    assert len(views) == n
    assert views[-1].features[IDX["card_tx_24h"]] == float(n // 50 - 1)
    single_store.close()
    batch_store.close()


def test_sqlite_a_call_waits_for_its_workers_other_call_at_most_its_budget(
    tmp_path: Path,
) -> None:
    """Another thread of the worker holds the store (as a batch waiting for the file's lock
    does): a single event's call gives up at its budget instead of queueing behind it."""
    s = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=0.05)
    s._lock.acquire()
    try:
        with pytest.raises(sqlite3.OperationalError, match="this worker's other call"):
            s.observe(["c"], [ev(HISTORY_T0, "a")])
    finally:
        s._lock.release()
    assert s.observe(["c"], [ev(HISTORY_T0, "a")])[0].features[IDX["card_tx_1h"]] == 0.0
    s.close()


def test_call_budget_is_one_timeout_per_started_bulk_of_events() -> None:
    """1 to 100 events: one budget; 101: two; 1,000: ten."""
    assert [call_budget(0.05, n) for n in (1, 100)] == [0.05, 0.05]
    assert call_budget(0.05, BULK_EVENTS + 1) == 0.1
    assert call_budget(0.05, 10 * BULK_EVENTS) == pytest.approx(0.5)


def test_redis_a_batch_waits_for_its_reply_one_budget_per_bulk_of_events(redis_url: str) -> None:
    """The server pauses every client for 0.3 s (CLIENT PAUSE, slow by construction): a
    single event's call gives up at its 0.15 s budget; a batch of 1,000 (ten budgets) gets
    its reply after the pause."""
    s = RedisHistory(redis_url, timeout_seconds=0.15, prefix=f"p{uuid.uuid4().hex[:8]}:")
    admin = redis.Redis.from_url(redis_url)
    n = 10 * BULK_EVENTS
    events = [ev(HISTORY_T0 + i * 1000, f"p{i}") for i in range(n)]
    try:
        admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
        with pytest.raises(redis.exceptions.TimeoutError):
            s.observe(["c"], [ev(HISTORY_T0, "single")])
        admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
        views = s.observe([f"card{i % 50}" for i in range(n)], events)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        s.close()
    assert len(views) == n
    assert views[-1].features[IDX["card_tx_24h"]] == float(n // 50 - 1)


def test_redis_unreachable_fails_the_call() -> None:
    """No server on the port: the call raises (the service then scores without history)."""
    from load.procs import free_port

    s = RedisHistory(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.05)
    with pytest.raises(redis.exceptions.ConnectionError):
        s.observe(["c"], [ev(HISTORY_T0, "a")])


@pytest.mark.parametrize(
    ("url", "kind"),
    [("", SqliteHistory), ("sqlite:///{tmp}/x.sqlite", SqliteHistory), ("none", type(None))],
)
def test_history_url_selects_the_backend(tmp_path: Path, url: str, kind: type) -> None:
    """Empty: SQLite under the state folder; sqlite:///: that file; none: no store."""
    store = history_adapter.open_store(
        Settings(state_dir=tmp_path, history_url=url.format(tmp=tmp_path))  # type: ignore[call-arg]
    )
    assert isinstance(store, kind)
    if isinstance(store, SqliteHistory):
        assert store.path.parent == tmp_path
        store.close()


@pytest.mark.parametrize(("setting", "pragma"), [(None, 1), ("normal", 1), ("off", 0)])
def test_sqlite_synchronous_setting_reaches_the_connection(
    tmp_path: Path, setting: str | None, pragma: int
) -> None:
    """SPROXXO_HISTORY_SQLITE_SYNCHRONOUS (default normal) is the connection's synchronous
    pragma (NORMAL = 1, OFF = 0), and the store still records and reads back."""
    extra = {} if setting is None else {"history_sqlite_synchronous": setting}
    store = history_adapter.open_store(Settings(state_dir=tmp_path, **extra))  # type: ignore[call-arg]
    assert isinstance(store, SqliteHistory)
    try:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
        store.observe(["c"], [ev(HISTORY_T0, "a")])
        assert store.observe(["c"], [ev(HISTORY_T0 + 1, "b")])[0].features[0] == 1
    finally:
        store.close()


def _log_pages(store: SqliteHistory) -> int:
    """Pages in the store's WAL now (a passive checkpoint reports it; copying them is
    harmless)."""
    conn = sqlite3.connect(store.path)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def test_sqlite_checkpoint_copies_the_log_and_the_next_commit_restarts_it(
    tmp_path: Path,
) -> None:
    """The thread's checkpoint (its period far off here) copies the whole log back, so the
    next scoring call writes from the log's start: the log holds that call's pages only,
    not the 200 calls before it."""
    s = SqliteHistory(tmp_path / "h.sqlite", checkpoint_seconds=3600)
    s._conn.execute("PRAGMA wal_autocheckpoint = 0")  # only this test's checkpoint copies
    try:
        for c in range(200):
            s.observe(
                [f"card-{c}-{i}" for i in range(5)],
                [ev(HISTORY_T0 + c, f"{c}-{i}") for i in range(5)],
            )
        logged, copied = s.checkpoint()
        assert logged > 200
        assert copied == logged
        assert s.checkpoints == 1
        (view,) = s.observe(["card-0-0"], [ev(HISTORY_T0 + 10**6, "again")])
        assert view.features[IDX["card_tx_24h"]] == 1
        assert 0 < _log_pages(s) < 10
    finally:
        s.close()


def test_sqlite_checkpoint_thread_runs_and_stops_with_the_store(tmp_path: Path) -> None:
    """The thread checkpoints every period; close() stops it, and so does dropping a
    store that was never closed."""
    s = SqliteHistory(tmp_path / "h.sqlite", checkpoint_seconds=0.01)
    s.observe(["c"], [ev(HISTORY_T0, "a")])
    _wait_for(lambda: s.checkpoints >= 2)
    thread = s._checkpointer
    assert thread is not None
    s.close()
    assert not thread.is_alive()
    dropped = SqliteHistory(tmp_path / "h.sqlite", checkpoint_seconds=0.01)
    thread = dropped._checkpointer
    assert thread is not None
    dropped._conn.close()
    del dropped
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_sqlite_checkpoint_failures_are_logged_once_until_it_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The thread's checkpoint cannot open the file (its folder is gone): one warning for
    many failures, the thread goes on, and checkpoints resume once the file opens."""
    s = SqliteHistory(tmp_path / "h.sqlite", checkpoint_seconds=0.01)
    path = s.path
    try:
        with caplog.at_level("WARNING", logger="sproxxo.adapters.history_sqlite"):
            with s._checkpoint_lock:  # between two runs: its next one opens a new connection
                if s._checkpoint_conn is not None:
                    s._checkpoint_conn.close()
                    s._checkpoint_conn = None
                s.path = tmp_path / "gone" / "h.sqlite"
            _wait_for(lambda: s.checkpoint_failures >= 3)
            done = s.checkpoints
            s.path = path
            _wait_for(lambda: s.checkpoints > done)
        warnings = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
        assert len(warnings) == 1
        assert "unable to open" in warnings[0].getMessage()
        assert s.observe(["c"], [ev(HISTORY_T0, "a")])[0].features[0] == 0
    finally:
        s.close()


def test_sqlite_a_fork_waits_for_the_checkpoints_and_releases_them(tmp_path: Path) -> None:
    """Before a fork every checkpointing store's lock is taken (no thread is inside SQLite
    when the child is made), after it released, in the parent and in the child."""
    from sproxxo.adapters import history_sqlite

    s = SqliteHistory(tmp_path / "h.sqlite", checkpoint_seconds=3600)
    try:
        history_sqlite._before_fork()
        assert not s._checkpoint_lock.acquire(timeout=0)  # a checkpoint cannot start
        history_sqlite._after_fork()
        assert s._checkpoint_lock.acquire(timeout=0)
        s._checkpoint_lock.release()
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=s.checkpoint)  # the child's lock is free too
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert s.checkpoint()[1] >= 0
    finally:
        s.close()


@pytest.mark.parametrize(("setting", "thread"), [(None, True), (0.5, True), (0.0, False)])
def test_sqlite_checkpoint_setting_reaches_the_store(
    tmp_path: Path, setting: float | None, thread: bool
) -> None:
    """SPROXXO_HISTORY_SQLITE_CHECKPOINT_SECONDS (default 0.2) starts the thread; 0 does
    not (SQLite's own checkpoint, in the committing call)."""
    extra = {} if setting is None else {"history_sqlite_checkpoint_seconds": setting}
    store = history_adapter.open_store(Settings(state_dir=tmp_path, **extra))  # type: ignore[call-arg]
    assert isinstance(store, SqliteHistory)
    try:
        assert (store._checkpointer is not None) is thread
        assert store.checkpoint_seconds == (0.2 if setting is None else setting)
        store.observe(["c"], [ev(HISTORY_T0, "a")])
    finally:
        store.close()


@pytest.mark.parametrize("seconds", [0.001, 0.049, -1, 61])
def test_sqlite_checkpoint_setting_refuses_a_busy_loop(seconds: float) -> None:
    """0 (no thread) or 0.05-60 s: a shorter period would be a busy loop."""
    with pytest.raises(ValueError, match="history_sqlite_checkpoint_seconds"):
        Settings(history_sqlite_checkpoint_seconds=seconds)  # type: ignore[call-arg]


def test_sqlite_synchronous_setting_refuses_other_values() -> None:
    """Only normal and off: FULL or EXTRA would add an fsync per commit on the event loop."""
    with pytest.raises(ValueError, match="history_sqlite_synchronous"):
        Settings(history_sqlite_synchronous="full")  # type: ignore[call-arg]


def test_history_url_redis_selects_redis(redis_url: str) -> None:
    s = history_adapter.open_store(Settings(history_url=redis_url))  # type: ignore[call-arg]
    assert isinstance(s, RedisHistory)
    s.close()


def test_a_store_that_cannot_open_fails_calls_not_the_service(tmp_path: Path) -> None:
    """The SQLite folder is a file: creating the store works (the service starts), each
    call raises HistoryUnavailable, and once the path is usable the store opens."""
    from sproxxo.errors import HistoryUnavailable

    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    store = history_for(Settings(state_dir=blocker, history_url=""))  # type: ignore[call-arg]
    assert isinstance(store, Reopening)
    store._retry_seconds = 0.0  # retry at once (the default waits REOPEN_SECONDS)
    with pytest.raises(HistoryUnavailable, match="cannot be opened"):
        store.observe(["c"], [ev(HISTORY_T0, "a")])
    blocker.unlink()
    assert store.observe(["c"], [ev(HISTORY_T0, "a")])[0].features[IDX["card_tx_1h"]] == 0.0
    store.close()


def test_reopening_waits_between_attempts() -> None:
    """While the store cannot open, calls fail at once without a new attempt until the
    retry interval passes (a dead store costs no connect timeout per request)."""
    from sproxxo.errors import HistoryUnavailable

    attempts = []

    def opener() -> HistoryStore:
        attempts.append(1)
        raise OSError("disk full")

    store = Reopening(opener, retry_seconds=3600)
    for _ in range(3):
        with pytest.raises(HistoryUnavailable, match="disk full"):
            store.observe(["c"], [ev(HISTORY_T0, "a")])
    assert len(attempts) == 1


def _open_and_close(path: str, barrier: Any) -> None:
    barrier.wait()  # all six at the same instant
    SqliteHistory(Path(path), timeout_seconds=0.05).close()


def test_workers_opening_a_new_sqlite_file_together_all_start(tmp_path: Path) -> None:
    """Six processes open the same new file at the same instant (workers starting on one
    host), ten times: each switches it to WAL and creates the tables or finds them done,
    none fails with "database is locked" (which SQLite answers at once, without its busy
    handler, to a connection changing the journal mode; 5 of 240 processes failed so
    before the retry)."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = tmp_path / f"fresh-{attempt}.sqlite"
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_and_close, args=(str(path), barrier)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6, attempt
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
