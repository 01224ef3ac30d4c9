"""The prediction-log record of one request, queued before the answer leaves.

Scoring attaches the request's rows (a chunk) to its `Recording`; the request guard, which
sees the answer go out, stamps them with the HTTP status and queues them *before* it
forwards the first byte of the answer. A request that the time budget cancels is stamped
504: its rows are queued at the cancellation, or when scoring (still running in its
thread) attaches them later. Whichever of the two events comes second queues the rows, so
every answered request that was scored leaves exactly one record per transaction, with the
status the client saw.

The recording of the request in progress travels in a context variable: the handler and
the thread it scores in (`asyncio.to_thread` copies the context) find it there; the
micro-batcher, which scores other requests' items in its own task, carries each item's
recording with the item.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

TIMED_OUT: Final = 504
STATUS_COLUMN: Final = "http_status"

Chunk = dict[str, Any]


class Recording:
    """Rows of one request waiting for its answer's status (thread-safe)."""

    __slots__ = ("_chunks", "_lock", "_status", "_submit")

    def __init__(self, submit: Callable[[Chunk], object]) -> None:
        self._submit = submit
        self._chunks: list[Chunk] = []
        self._status: int | None = None
        self._lock = threading.Lock()

    @property
    def status(self) -> int | None:
        """The status the request was answered with, once known."""
        return self._status

    def attach(self, chunk: Chunk) -> None:
        """Add scored rows; queued at once if the answer's status is already known."""
        with self._lock:
            if self._status is None:
                self._chunks.append(chunk)
                return
            status = self._status
        self._submit(stamped(chunk, status))

    def answered(self, status: int) -> None:
        """The answer's status is known: queue every attached row with it (first call
        wins: a request is answered once)."""
        with self._lock:
            if self._status is not None:
                return
            self._status = status
            chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            self._submit(stamped(chunk, status))


def stamped(chunk: Chunk, status: int) -> Chunk:
    """The chunk with every row's answered HTTP status."""
    n = len(chunk["transaction_id"])
    return {**chunk, STATUS_COLUMN: [status] * n}


CURRENT: ContextVar[Recording | None] = ContextVar("sproxxo_recording", default=None)
