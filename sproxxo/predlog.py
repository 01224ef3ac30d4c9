"""The prediction log: every scored transaction, appended off the request path.

Records travel in *chunks*: one scored batch as columns (`log_chunk`), so a request pays a
few list and array references instead of one dict per transaction. `PredictionLog.submit`
never blocks and never raises: chunks go into a queue bounded in records and a background
thread hands them to a sink. A full queue or a failing sink (unwritable folder, full disk,
BigQuery error) drops records, counts them and calls the `on_drop` hook; `close()` flushes
everything accepted before returning.

The local sink writes one JSON line per chunk (`{"n": rows, "columns": {...}}`), partitioned
by hour (`<dir>/date=YYYY-MM-DD/hour=HH/part-<pid>.jsonl`); `read_log` reads those lines and
one-record-per-line logs alike. The BigQuery sink streams one row per record.
At most `flush_seconds` of accepted records (bounded by the queue size) are lost on a hard
kill; a clean shutdown loses none.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import orjson
import pandas as pd

from sproxxo.features import FEATURE_NAMES

if TYPE_CHECKING:
    from sproxxo.scoring import Scored

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 2000
Record = dict[str, Any]
#: Equal-length columns (lists or 1-d numpy arrays), one entry per record.
Chunk = dict[str, Any]


def chunk_size(chunk: Chunk) -> int:
    """Records in a chunk."""
    return len(chunk["transaction_id"])


def chunk_of(records: Sequence[Mapping[str, Any]]) -> Chunk:
    """The chunk holding `records` (all with the same keys)."""
    return {key: [r[key] for r in records] for key in records[0]} if records else {}


def records_of(chunk: Chunk) -> list[Record]:
    """One dict per record of a chunk, with plain Python values."""
    columns = {k: v.tolist() if hasattr(v, "tolist") else list(v) for k, v in chunk.items()}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _head(chunk: Chunk, n: int) -> Chunk:
    return {key: column[:n] for key, column in chunk.items()}


def _tail(chunk: Chunk, n: int) -> Chunk:
    return {key: column[n:] for key, column in chunk.items()}


class Sink(Protocol):
    """Where batches of chunks end up."""

    def write(self, chunks: list[Chunk]) -> None:
        """Persist the chunks or raise."""


class NullSink:
    """Discards records (prediction log disabled)."""

    def write(self, chunks: list[Chunk]) -> None:
        """Do nothing."""


class FileSink:
    """JSON lines under an hourly partitioned folder, one file per process and hour."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, when: datetime) -> Path:
        """The file a chunk logged at `when` goes to."""
        return (
            self.directory
            / f"date={when:%Y-%m-%d}"
            / f"hour={when:%H}"
            / f"part-{os.getpid()}.jsonl"
        )

    def write(self, chunks: list[Chunk]) -> None:
        """Append one line per chunk, grouped by hour partition (of each chunk's first
        `logged_at`), and fsync."""
        by_hour: dict[str, list[bytes]] = {}
        for chunk in chunks:
            line = orjson.dumps(
                {"n": chunk_size(chunk), "columns": chunk}, option=orjson.OPT_SERIALIZE_NUMPY
            )
            # logged_at is ISO UTC: its first 13 characters name the hour partition.
            by_hour.setdefault(chunk["logged_at"][0][:13], []).append(line + b"\n")
        for hour, lines in by_hour.items():
            path = self.path_for(datetime.fromisoformat(hour + ":00:00+00:00"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())


@dataclass
class LogStats:
    """Counters of what happened to submitted records."""

    accepted: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


class PredictionLog:
    """Bounded, non-blocking, batched writer in a daemon thread.

    Chunks travel whole (one lock round trip per scored batch); the bound, the batches
    handed to the sink and the counters all count records.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int = 50_000,
        flush_seconds: float = 1.0,
        on_drop: Callable[[str, int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.stats = LogStats()
        self._capacity = queue_size
        self._chunks: deque[Chunk] = deque()
        self._depth = 0
        self._closed = False
        self._ready = threading.Condition()
        self._flush_seconds = flush_seconds
        self._on_drop = on_drop or (lambda reason, n: None)
        self._on_write = on_write or (lambda n: None)
        self._thread = threading.Thread(target=self._run, name="predlog", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Records accepted but not yet taken by the writer."""
        return self._depth

    def submit(self, chunk: Chunk) -> int:
        """Queue a chunk without blocking; returns how many of its records were accepted."""
        size = chunk_size(chunk) if chunk else 0
        with self._ready:
            if self._closed:
                accepted, reason = 0, "closed"
            else:
                accepted, reason = min(size, max(self._capacity - self._depth, 0)), "queue_full"
                if accepted:
                    self._chunks.append(chunk if accepted == size else _head(chunk, accepted))
                    self._depth += accepted
                    if self._depth >= MAX_BATCH:
                        self._ready.notify()
        self._drop(reason, size - accepted)
        self.stats.accepted += accepted
        return accepted

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, flush what was accepted; True when everything was written."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n
        self._on_drop(reason, n)

    def _take(self) -> tuple[list[Chunk], int]:
        """Queued chunks holding up to MAX_BATCH records, oldest first (caller holds the
        lock); returns them and their record count."""
        batch: list[Chunk] = []
        taken = 0
        while self._chunks and taken < MAX_BATCH:
            chunk = self._chunks.popleft()
            room, size = MAX_BATCH - taken, chunk_size(chunk)
            if size > room:
                self._chunks.appendleft(_tail(chunk, room))
                chunk, size = _head(chunk, room), room
            batch.append(chunk)
            taken += size
        self._depth -= taken
        return batch, taken

    def _batches(self) -> Iterator[tuple[list[Chunk], int]]:
        """Batches of at most MAX_BATCH records, at least every `flush_seconds` while
        records wait; after close, the rest, then the end."""
        while True:
            deadline = time.monotonic() + self._flush_seconds
            with self._ready:
                while not self._closed and self._depth < MAX_BATCH:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                batch, size = self._take()
                finished = self._closed and not self._chunks
            if batch:
                yield batch, size
            if finished:
                return

    def _run(self) -> None:
        for batch, size in self._batches():
            try:
                self.sink.write(batch)
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                logger.error(
                    "prediction log sink failed, %d records dropped: %s",
                    size,
                    self.stats.last_error,
                )
                self._drop("sink_error", size)
                continue
            self.stats.written += size
            self._on_write(size)


def now_iso() -> str:
    """UTC timestamp used as `logged_at`."""
    return datetime.now(UTC).isoformat()


def read_log(
    directory: Path, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """All records of a local prediction log (optionally within [since, until))."""
    parts: list[pd.DataFrame] = []
    rows: list[Record] = []
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                entry = orjson.loads(line)
                if "columns" in entry:
                    parts.append(pd.DataFrame(entry["columns"]))
                else:  # one record per line (logs written before chunks)
                    rows.append(entry)
    if rows:
        parts.append(pd.DataFrame(rows))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty:
        return frame
    logged = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= logged >= pd.Timestamp(since)
    if until is not None:
        keep &= logged < pd.Timestamp(until)
    return frame[keep].reset_index(drop=True)


def local_isoformat(epoch_seconds: Sequence[float], offset_minutes: Sequence[float]) -> list[str]:
    """`datetime.isoformat()` of each local time, formatted in a few array operations:
    seconds, then microseconds only where there are some, then the UTC offset."""
    offsets = np.asarray(offset_minutes, dtype=np.float64)
    micros = np.round((np.asarray(epoch_seconds) + 60.0 * offsets) * 1e6).astype(np.int64)
    local = micros.astype("datetime64[us]")
    text = np.datetime_as_string(local, unit="s")
    fractional = micros % 1_000_000 != 0
    if fractional.any():
        text[fractional] = np.datetime_as_string(local[fractional], unit="us")
    zones = {m: _utc_offset(int(m)) for m in np.unique(offsets).tolist()}
    return [stamp + zones[m] for stamp, m in zip(text.tolist(), offsets.tolist(), strict=True)]


def _utc_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def log_chunk(scored: Scored) -> Chunk:
    """The prediction-log chunk of a scored batch, all stamped with one `logged_at`: no card
    token, name or address; the model's features for drift monitoring."""
    n = len(scored.transactions)
    chunk: Chunk = {
        "transaction_id": scored.columns["transaction_id"],
        "logged_at": [now_iso()] * n,
        "event_time": local_isoformat(
            scored.columns["epoch_seconds"], scored.columns["utc_offset_minutes"]
        ),
        "model_tag": [scored.model_tag] * n,
        "amount": scored.columns["amount"],
        "merchant_category": scored.columns["merchant_category"],
        "valid": [not broken for broken in scored.violations],
        "violations": [[v.rule for v in broken] for broken in scored.violations],
        "risk_score": scored.derived.risk_score,
        "fraud_probability": scored.probabilities,
        "decision": [d.value for d in scored.decisions],
        "reason_codes": scored.reasons,
    }
    chunk.update(zip(FEATURE_NAMES, scored.derived.matrix.T.copy(), strict=True))
    return chunk
