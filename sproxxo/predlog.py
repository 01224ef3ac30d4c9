"""The prediction log: every scored transaction, appended off the request path.

Records travel in *chunks*: one scored batch as columns (`log_chunk`), so a request pays a
few list and array references instead of one dict per transaction. `PredictionLog.submit`
never blocks and never raises: chunks go into a queue bounded in records and a background
thread hands them to a sink.

What happens when things fail:

* a failing sink (unwritable folder, full disk, BigQuery error) is retried with backoff
  (`retry_seconds`); what still fails goes to the *dead-letter* folder (local JSON lines in
  the file sink's layout, replayed into the sink by `python -m monitoring.predlog replay`).
  While the sink keeps failing, later batches try it once and go to the dead letter, so the
  queue keeps moving. Only when the dead letter fails too are records dropped (counted);
* a full queue drops the records that do not fit (counted, `on_drop`);
* `close(timeout)` flushes what was accepted; at the deadline whatever is still queued is
  written to the dead letter, so a slow sink cannot make shutdown overrun the platform's
  grace period. At most one batch that a hung sink is still holding can be lost then.

The local sink writes one JSON line per chunk (`{"n": rows, "columns": {...}}`), partitioned
by hour (`<dir>/date=YYYY-MM-DD/hour=HH/part-<pid>.jsonl`); a write that fails half-way is
truncated back, and `read_log` skips (and counts) a line that is still torn, so one bad
line never hides an hour. The BigQuery sink streams one row per record. At most
`flush_seconds` of accepted records (bounded by the queue size) are lost on a hard kill.
"""

from __future__ import annotations

import contextlib
import logging
import math
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

#: The prediction log's columns as a BigQuery table: (name, type, mode). One source for the
#: table (`python -m monitoring.predlog ensure-table`) and the tests against the emulator.
PREDICTION_LOG_SCHEMA: Final[tuple[tuple[str, str, str], ...]] = (
    ("transaction_id", "STRING", "REQUIRED"),
    ("logged_at", "TIMESTAMP", "REQUIRED"),
    ("event_time", "STRING", "NULLABLE"),  # the authorisation's local time with its offset
    ("model_tag", "STRING", "REQUIRED"),
    ("amount", "FLOAT64", "NULLABLE"),
    ("merchant_category", "STRING", "NULLABLE"),
    ("valid", "BOOL", "NULLABLE"),
    ("violations", "STRING", "REPEATED"),
    ("risk_score", "FLOAT64", "NULLABLE"),
    ("fraud_probability", "FLOAT64", "NULLABLE"),
    ("decision", "STRING", "NULLABLE"),
    ("reason_codes", "STRING", "REPEATED"),
    *((name, "FLOAT64", "NULLABLE") for name in FEATURE_NAMES if name != "risk_score"),
    ("http_status", "INT64", "NULLABLE"),  # what the caller got (504: answered too late)
    ("synthetic", "BOOL", "NULLABLE"),  # load tests and canaries: excluded by monitoring
)
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


def slice_chunk(chunk: Chunk, start: int, stop: int) -> Chunk:
    """Records [start, stop) of a chunk."""
    return {key: column[start:stop] for key, column in chunk.items()}


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
        `logged_at`), and fsync; a failed append is truncated back (no torn line)."""
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
                start = handle.tell()
                try:
                    handle.write(b"".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        handle.truncate(start)
                    raise


@dataclass
class LogStats:
    """Counters of what happened to submitted records."""

    accepted: int = 0
    written: int = 0
    dead_lettered: int = 0
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
        dead_letter: Sink | None = None,
        queue_size: int = 50_000,
        flush_seconds: float = 1.0,
        retry_seconds: Sequence[float] = (0.1, 0.5, 2.0),
        on_drop: Callable[[str, int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        on_dead_letter: Callable[[int], None] | None = None,
    ) -> None:
        self.sink = sink
        self.dead_letter = dead_letter
        self.stats = LogStats()
        self._capacity = queue_size
        self._chunks: deque[Chunk] = deque()
        self._depth = 0
        self._closed = False
        self._deadline = math.inf
        self._sink_failing = False
        self._ready = threading.Condition()
        self._flush_seconds = flush_seconds
        self._retry_seconds = tuple(retry_seconds)
        self._on_drop = on_drop or (lambda reason, n: None)
        self._on_write = on_write or (lambda n: None)
        self._on_dead_letter = on_dead_letter or (lambda n: None)
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
        """Stop accepting and flush what was accepted within `timeout` seconds; what is
        still queued then goes to the dead letter. True when nothing was lost."""
        with self._ready:
            self._closed = True
            self._deadline = time.monotonic() + timeout
            self._ready.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._ready:  # the sink hangs: spill the queue, leave its batch to it
            batch, size = self._take(everything=True)
        if batch:
            self._fail(batch, size, "sink_timeout")
        return False

    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n
        self._on_drop(reason, n)

    def _take(self, *, everything: bool = False) -> tuple[list[Chunk], int]:
        """Queued chunks holding up to MAX_BATCH records (all of them if `everything`),
        oldest first (caller holds the lock); returns them and their record count."""
        batch: list[Chunk] = []
        taken = 0
        limit = self._depth if everything else MAX_BATCH
        while self._chunks and taken < limit:
            chunk = self._chunks.popleft()
            room, size = limit - taken, chunk_size(chunk)
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
            if self._write(batch):
                self.stats.written += size
                self._on_write(size)
            else:
                self._fail(batch, size, "sink_error")

    def _write(self, batch: list[Chunk]) -> bool:
        """Hand a batch to the sink, retrying with backoff while the sink is healthy and
        the close deadline allows; True when it was written."""
        delays = () if self._sink_failing else self._retry_seconds
        for delay in (*delays, None):
            try:
                self.sink.write(batch)
            except Exception as exc:  # any sink failure is handled here, never raised
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if delay is None or time.monotonic() + delay > self._deadline:
                    break
                time.sleep(delay)
                continue
            self._sink_failing = False
            return True
        self._sink_failing = True
        return False

    def _fail(self, batch: list[Chunk], size: int, reason: str) -> None:
        """A batch the sink did not take: into the dead letter, else dropped."""
        logger.error("prediction log sink failed for %d records: %s", size, self.stats.last_error)
        if self.dead_letter is not None:
            try:
                self.dead_letter.write(batch)
            except Exception as exc:  # the dead letter failing too: count and drop
                self.stats.last_error = f"dead letter: {type(exc).__name__}: {exc}"[:300]
            else:
                self.stats.dead_lettered += size
                self._on_dead_letter(size)
                return
        self._drop(reason, size)


@dataclass(frozen=True)
class Replayed:
    """What a dead-letter replay moved into the sink."""

    files: int
    records: int
    torn_lines: int


def replay_dead_letter(directory: Path, sink: Sink) -> Replayed:
    """Write every dead-letter file into `sink`, deleting each one once written. A file
    whose write fails stays (the error propagates) for the next replay."""
    files = records = 0
    torn = [0]
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        chunks = [entry["columns"] for entry in _entries(path, torn=torn) if "columns" in entry]
        if chunks:
            sink.write(chunks)
        path.unlink()
        files += 1
        records += sum(chunk_size(c) for c in chunks)
    return Replayed(files=files, records=records, torn_lines=torn[0])


def make_sink(kind: str, *, directory: Path, table: str = "", project: str | None = None) -> Sink:
    """The sink a deployment names: `file` (hourly JSON lines under `directory`),
    `bigquery` (streaming inserts into `table`) or `none`."""
    if kind == "bigquery":
        from sproxxo.sources.bigquery import BigQueryPredictionSink

        return BigQueryPredictionSink(table, project=project)
    if kind == "none":
        return NullSink()
    return FileSink(directory)


def now_iso() -> str:
    """UTC timestamp used as `logged_at`."""
    return datetime.now(UTC).isoformat()


def _entries(path: Path, *, torn: list[int]) -> Iterator[dict[str, Any]]:
    """The JSON lines of one log file; a torn line (a crash or a full disk mid-write) is
    skipped and counted in `torn[0]`."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn[0] += 1
                continue
            if isinstance(entry, dict):
                yield entry
            else:
                torn[0] += 1


def read_log(
    directory: Path, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """All records of a local prediction log (optionally within [since, until)).

    Torn lines are skipped; their number is in `frame.attrs["torn_lines"]`."""
    parts: list[pd.DataFrame] = []
    rows: list[Record] = []
    torn = [0]
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        for entry in _entries(path, torn=torn):
            if "columns" in entry:
                parts.append(pd.DataFrame(entry["columns"]))
            else:  # one record per line (logs written before chunks)
                rows.append(entry)
    if torn[0]:
        logger.warning("prediction log %s: skipped %d torn lines", directory, torn[0])
    if rows:
        parts.append(pd.DataFrame(rows))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not frame.empty:
        logged = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
        keep = pd.Series(True, index=frame.index)
        if since is not None:
            keep &= logged >= pd.Timestamp(since)
        if until is not None:
            keep &= logged < pd.Timestamp(until)
        frame = frame[keep].reset_index(drop=True)
    frame.attrs["torn_lines"] = torn[0]
    return frame


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
