"""Card-history store figures on this machine: what a store call adds to a transaction,
and what a card costs in memory.

    python -m load.history_bench [--cards 1000000] [--events-per-card 3] [--calls 5000]

* latency: `observe` of one transaction (what /predict adds: read the card, compute the
  features, record the event, commit) on a store already holding `--warm-cards` cards,
  p50/p95/p99 over `--calls` calls on random cards; and a 1,000-transaction batch (one
  round trip) per transaction. The events go in as the service passes them (`EventColumns`,
  made before the call; until 2026-12-04 a list of `Event`s, packed inside the timed call).
  SQLite on a temp file (WAL, as the service opens it) and a real `redis-server` on
  loopback (Debian's package), started and stopped here;
* stalls: SQLite alone, 15,000 one-card calls at 1,000 a second, with SQLite's own WAL
  checkpoint (in the committing call), with the store's checkpoint thread (the default),
  and with `synchronous=off`: the tail a checkpoint's fsyncs put on a scoring call;
* memory: `--cards` cards with `--events-per-card` events each inside the 7-day window,
  written in batches of 1,000: Redis `used_memory` and the SQLite file size (after a
  checkpoint), divided by the number of cards.

`make bench` runs the latency part beside the stateless figures (`history_rows`).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from load import procs
from sproxxo.adapters.history_redis import RedisHistory
from sproxxo.adapters.history_sqlite import SqliteHistory
from sproxxo.history import HOUR_MS, Event, EventColumns, HistoryStore
from sproxxo.settings import SqliteSynchronous

T0 = 1_750_000_000_000
TARGET_P50_US = {"SQLite": 100.0, "Redis": 300.0}


def _event(rng: random.Random, t_ms: int, key: str) -> Event:
    return Event(t_ms, rng.randrange(100, 50_000), rng.randrange(14), 40.0, -74.0, key)


def as_columns(events: list[Event]) -> EventColumns:
    """Events as the service hands them to a store: columns, made before the call
    (`sproxxo.features.history_events`), so a timed call is what /predict's store call is."""
    return EventColumns(
        np.array([e.t_ms for e in events], dtype=np.int64),
        np.array([e.cents for e in events], dtype=np.int64),
        np.array([e.category for e in events], dtype=np.int64),
        np.array([e.lat for e in events], dtype=np.float64),
        np.array([e.lon for e in events], dtype=np.float64),
        [e.key for e in events],
    )


def fill(store: HistoryStore, *, cards: int, per_card: int, seed: int = 0) -> float:
    """Write `per_card` events (an hour apart) for each of `cards` cards; seconds taken."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for k in range(per_card):
        for start in range(0, cards, 1_000):
            ids = [f"card_{i:08d}" for i in range(start, min(start + 1_000, cards))]
            store.observe(ids, [_event(rng, T0 + k * HOUR_MS, f"f{k}-{c}") for c in ids])
    return time.perf_counter() - t0


def call_latency(store: HistoryStore, *, cards: int, calls: int, rate: float = 0) -> list[float]:
    """Microseconds of `observe` for one transaction on a random known card; back to back,
    or started `rate` a second."""
    rng = random.Random(1)
    out = []
    start = time.perf_counter()
    for i in range(calls):
        if rate and (wait := start + i / rate - time.perf_counter()) > 0:
            time.sleep(wait)
        card = f"card_{rng.randrange(cards):08d}"
        event = as_columns([_event(rng, T0 + 24 * HOUR_MS + i, f"l{i}")])
        t0 = time.perf_counter_ns()
        store.observe([card], event)
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def batch_latency(store: HistoryStore, *, cards: int, batches: int = 20) -> float:
    """Microseconds per transaction of a 1,000-transaction `observe`."""
    rng = random.Random(2)
    total = 0.0
    for b in range(batches):
        ids = [f"card_{rng.randrange(cards):08d}" for _ in range(1_000)]
        events = as_columns([_event(rng, T0 + 48 * HOUR_MS + b, f"b{b}-{i}") for i in range(1_000)])
        t0 = time.perf_counter()
        store.observe(ids, events)
        total += time.perf_counter() - t0
    return total / (batches * 1_000) * 1e6


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def with_stores(work: Path, run: Callable[[str, HistoryStore, Any], None]) -> None:
    """Call `run(name, store, redis_client_or_sqlite_path)` for SQLite then Redis."""
    import redis

    sqlite_path = work / "history.sqlite"
    store: HistoryStore = SqliteHistory(sqlite_path, timeout_seconds=1.0)
    try:
        run("SQLite", store, sqlite_path)
    finally:
        store.close()
    server = procs.redis_server(work).start(timeout=30, ready=procs.redis_answers)
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        store = RedisHistory(url, timeout_seconds=1.0)
        try:
            run("Redis", store, redis.Redis.from_url(url))
        finally:
            store.close()
    finally:
        server.stop()


def latency_table(
    work: Path, *, warm_cards: int = 20_000, per_card: int = 10, calls: int = 5_000
) -> list[dict[str, Any]]:
    """One row per backend: per-call p50/p95/p99 (µs) and per-transaction batch cost, on
    cards with `per_card` recent events each."""
    rows: list[dict[str, Any]] = []

    def run(name: str, store: HistoryStore, _: Any) -> None:
        fill(store, cards=warm_cards, per_card=per_card)
        call_latency(store, cards=warm_cards, calls=200)  # warm caches and the script
        samples = call_latency(store, cards=warm_cards, calls=calls)
        rows.append(
            {
                "store": name,
                "p50_us": statistics.median(samples),
                "p95_us": _pct(samples, 95),
                "p99_us": _pct(samples, 99),
                "batch_us_per_tx": batch_latency(store, cards=warm_cards),
                "target_p50_us": TARGET_P50_US[name],
            }
        )

    with_stores(work, run)
    return rows


STALL_MODES: tuple[tuple[str, SqliteSynchronous, float], ...] = (
    ("normal, SQLite's checkpoint", "normal", 0.0),
    ("normal, checkpoint thread (default)", "normal", 0.2),
    ("off, checkpoint thread", "off", 0.2),
)


def stall_table(
    work: Path, *, warm_cards: int = 50_000, calls: int = 15_000, rate: float = 1_000.0
) -> list[dict[str, Any]]:
    """SQLite only, once per `STALL_MODES` entry, each on a new file: `calls` one-card
    `observe` calls `rate` a second on `warm_cards` cards, their p50/p99/p99.9/max (µs) and
    how many took over 5 ms. Each commit writes a page or two to the WAL; without the
    thread, every ~1,000 pages the committing call checkpoints (with `normal` it waits for
    the fsyncs)."""
    rows: list[dict[str, Any]] = []
    for label, mode, every in STALL_MODES:
        store = SqliteHistory(
            work / f"stall-{mode}-{every}.sqlite",
            timeout_seconds=1.0,
            synchronous=mode,
            checkpoint_seconds=every,
        )
        try:
            fill(store, cards=warm_cards, per_card=1)
            call_latency(store, cards=warm_cards, calls=200)  # warm caches and the script
            samples = sorted(call_latency(store, cards=warm_cards, calls=calls, rate=rate))
        finally:
            store.close()
        rows.append(
            {
                "mode": label,
                "p50_us": statistics.median(samples),
                "p99_us": samples[int(0.99 * len(samples))],
                "p999_us": samples[int(0.999 * len(samples))],
                "max_us": samples[-1],
                "over_5ms": sum(v > 5_000 for v in samples),
                "calls": calls,
            }
        )
    return rows


def memory_table(work: Path, *, cards: int, per_card: int) -> list[dict[str, Any]]:
    """Bytes per card with `per_card` recent events, for `cards` cards."""
    rows: list[dict[str, Any]] = []

    def run(name: str, store: HistoryStore, probe: Any) -> None:
        before = probe.info("memory")["used_memory"] if name == "Redis" else 0
        seconds = fill(store, cards=cards, per_card=per_card)
        if name == "Redis":
            used = probe.info("memory")["used_memory"] - before
        else:
            store.close()
            with sqlite3.connect(probe) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            used = Path(probe).stat().st_size
        rows.append(
            {
                "store": name,
                "cards": cards,
                "events_per_card": per_card,
                "bytes": used,
                "bytes_per_card": used / cards,
                "fill_seconds": seconds,
            }
        )

    with_stores(work, run)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print both tables."""
    p = argparse.ArgumentParser(prog="python -m load.history_bench", description=__doc__)
    p.add_argument("--cards", type=int, default=1_000_000, help="memory: cards to write")
    p.add_argument("--events-per-card", type=int, default=10, help="recent events per card")
    p.add_argument("--warm-cards", type=int, default=20_000, help="latency: cards in the store")
    p.add_argument("--calls", type=int, default=5_000)
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sproxxo-history-bench-") as tmp:
        work = Path(tmp)
        print("| store | p50 µs | p95 µs | p99 µs | batch µs/tx | target p50 |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in latency_table(
            work / "latency",
            warm_cards=args.warm_cards,
            per_card=args.events_per_card,
            calls=args.calls,
        ):
            ok = "ok" if r["p50_us"] <= r["target_p50_us"] else "MISSED"
            print(
                f"| {r['store']} | {r['p50_us']:.0f} | {r['p95_us']:.0f} | {r['p99_us']:.0f} "
                f"| {r['batch_us_per_tx']:.1f} | ≤ {r['target_p50_us']:.0f} {ok} |"
            )
        print("\n| SQLite, 1,000 calls/s | p50 µs | p99 µs | p99.9 µs | max µs | calls over 5 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in stall_table(work / "stall"):
            print(
                f"| {r['mode']} | {r['p50_us']:.0f} | {r['p99_us']:.0f} "
                f"| {r['p999_us']:.0f} | {r['max_us']:.0f} | {r['over_5ms']} of {r['calls']:,} |"
            )
        if not args.skip_memory:
            print("\n| store | cards | events/card | MB | bytes/card | fill s |")
            print("|---|---:|---:|---:|---:|---:|")
            for r in memory_table(work / "memory", cards=args.cards, per_card=args.events_per_card):
                print(
                    f"| {r['store']} | {r['cards']:,} | {r['events_per_card']} "
                    f"| {r['bytes'] / 1e6:,.0f} | {r['bytes_per_card']:.0f} "
                    f"| {r['fill_seconds']:.0f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
