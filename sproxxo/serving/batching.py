"""Natural micro-batching for single-item requests (pure asyncio, no transport).

Items that arrive while a batch is being scored wait and form the next batch, up to
`max_batch_size`. At low load every item is scored alone with no added wait; under load
the batch grows by itself. Scoring runs in the event loop: it is short (tens to hundreds of
microseconds) and a thread hop would cost more than it saves on two cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collect concurrent `submit` calls into calls of `fn` on lists."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fn = fn
        self._max = max_batch_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result (exceptions propagate to every caller)."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        assert self._wakeup is not None  # noqa: S101 - set with the worker above
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None  # noqa: S101 - set before the task starts
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0)  # let handlers that are already runnable enqueue
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                self._dispatch(batch)
                await asyncio.sleep(0)

    def _dispatch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = self._fn([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"batch function returned {len(results)} results for {len(batch)} items"
                )
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller may have been cancelled (timeout)
                future.set_result(result)
