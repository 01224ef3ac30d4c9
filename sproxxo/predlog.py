"""The prediction log: every scored transaction, appended off the request path.

`PredictionLog.submit` never blocks and never raises: records go into a bounded queue and a
background thread writes them to a sink in small batches. A full queue or a failing sink
(unwritable folder, full disk, BigQuery error) drops records, counts them and calls the
`on_drop` hook; `close()` flushes everything accepted before returning.

The local sink writes JSON lines partitioned by hour
(`<dir>/date=YYYY-MM-DD/hour=HH/part-<pid>.jsonl`); the BigQuery sink streams rows.
At most `flush_seconds` of accepted records (bounded by the queue size) are lost on a hard
kill; a clean shutdown loses none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
import pandas as pd

from sproxxo.features import FEATURE_NAMES
from sproxxo.schemas import Transaction

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 2000
_NOTHING: Final = object()  # "no record this time" (None means "closed")
Record = dict[str, Any]


class Sink(Protocol):
    """Where batches of records end up."""

    def write(self, records: list[Record]) -> None:
        """Persist a batch or raise."""


class NullSink:
    """Discards records (prediction log disabled)."""

    def write(self, records: list[Record]) -> None:
        """Do nothing."""


class FileSink:
    """JSON lines under an hourly partitioned folder, one file per process and hour."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, when: datetime) -> Path:
        """The file a record logged at `when` goes to."""
        return (
            self.directory
            / f"date={when:%Y-%m-%d}"
            / f"hour={when:%H}"
            / f"part-{os.getpid()}.jsonl"
        )

    def write(self, records: list[Record]) -> None:
        """Append records, grouped by their hour partition, and fsync."""
        by_hour: dict[str, list[bytes]] = {}
        for rec in records:
            # logged_at is ISO UTC: its first 13 characters name the hour partition.
            by_hour.setdefault(rec["logged_at"][:13], []).append(orjson.dumps(rec) + b"\n")
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
    """Bounded, non-blocking, batched writer in a daemon thread."""

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
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=queue_size)
        self._flush_seconds = flush_seconds
        self._on_drop = on_drop or (lambda reason, n: None)
        self._on_write = on_write or (lambda n: None)
        self._thread = threading.Thread(target=self._run, name="predlog", daemon=True)
        self._closed = threading.Event()
        self._thread.start()

    @property
    def depth(self) -> int:
        """Records accepted but not yet written."""
        return self._queue.qsize()

    def submit(self, records: list[Record]) -> int:
        """Queue records without blocking; returns how many were accepted."""
        if self._closed.is_set():
            self._drop("closed", len(records))
            return 0
        accepted = 0
        for rec in records:
            try:
                self._queue.put_nowait(rec)
            except queue.Full:
                self._drop("queue_full", len(records) - accepted)
                break
            accepted += 1
        self.stats.accepted += accepted
        return accepted

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, flush what was accepted; True when everything was written."""
        if not self._closed.is_set():
            self._closed.set()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)  # wakes the writer; it also polls `_closed`
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + n
        self._on_drop(reason, n)

    def _batches(self) -> Iterator[list[Record]]:
        batch: list[Record] = []
        deadline = time.monotonic() + self._flush_seconds
        while True:
            item: Record | object | None
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                item = None if self._closed.is_set() else _NOTHING
            if item is None:
                if batch:
                    yield batch
                return
            if isinstance(item, dict):
                batch.append(item)
            if batch and (len(batch) >= MAX_BATCH or time.monotonic() >= deadline):
                yield batch
                batch = []
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self._flush_seconds

    def _run(self) -> None:
        for batch in self._batches():
            try:
                self.sink.write(batch)
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
                logger.error(
                    "prediction log sink failed, %d records dropped: %s",
                    len(batch),
                    self.stats.last_error,
                )
                self._drop("sink_error", len(batch))
                continue
            self.stats.written += len(batch)
            self._on_write(len(batch))


def now_iso() -> str:
    """UTC timestamp used as `logged_at`."""
    return datetime.now(UTC).isoformat()


def read_log(
    directory: Path, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """All records of a local prediction log (optionally within [since, until))."""
    rows: list[Record] = []
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        with path.open("rb") as handle:
            rows.extend(orjson.loads(line) for line in handle if line.strip())
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    logged = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= logged >= pd.Timestamp(since)
    if until is not None:
        keep &= logged < pd.Timestamp(until)
    return frame[keep].reset_index(drop=True)


def build_record(tx: Transaction, result: Mapping[str, Any], features: Sequence[float]) -> Record:
    """One prediction-log record from an assessment (as `Scored.records()` gives it): no
    card token, name or address; the model's features for drift monitoring."""
    record: Record = {
        "transaction_id": tx.transaction_id,
        "logged_at": now_iso(),
        "event_time": tx.timestamp.isoformat(),
        "model_tag": result["model_tag"],
        "amount": float(tx.amount),
        "merchant_category": tx.merchant_category.value,
        "valid": result["valid"],
        "violations": [v["rule"] for v in result["violations"]],
        "risk_score": result["risk"]["score"],
        "fraud_probability": result["fraud_probability"],
        "decision": result["decision"],
        "reason_codes": result["reason_codes"],
    }
    record.update(zip(FEATURE_NAMES, features, strict=True))
    return record
