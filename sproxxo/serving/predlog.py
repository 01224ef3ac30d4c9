"""The prediction log's writer: every scored transaction, appended off the request path.

`PredictionLog.submit` never blocks and never raises: chunks (`sproxxo.records`) go into a
queue bounded in records and a background thread hands them to a sink.

What happens when things fail:

* a failing sink (unwritable folder, full disk, BigQuery error) is retried with backoff
  (`retry_seconds`); what still fails goes to the *dead letter* (a local sink in the file
  layout, replayed by `python -m monitoring.predlog replay`). While the sink keeps failing,
  later batches try it once and go to the dead letter, so the queue keeps moving. Only when
  the dead letter fails too are records dropped (counted);
* a full queue drops the records that do not fit (counted, `on_drop`);
* `close(timeout)` flushes what was accepted; at the deadline whatever is still queued is
  written to the dead letter, so a slow sink cannot make shutdown overrun the platform's
  grace period. At most one batch that a hung sink is still holding can be lost then.

At most `flush_seconds` of accepted records (bounded by the queue size) are lost on a hard
kill.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from sproxxo.records import Chunk, Sink, chunk_size, head, tail

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 2000


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
                    self._chunks.append(chunk if accepted == size else head(chunk, accepted))
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
                self._chunks.appendleft(tail(chunk, room))
                chunk, size = head(chunk, room), room
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
