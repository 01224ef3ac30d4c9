"""MicroBatcher: concurrent submits are scored together, in order, errors reach every caller."""

from __future__ import annotations

import asyncio

import pytest

from sproxxo.serving.batching import MicroBatcher


class Recorder:
    """A batch function that records the batches it receives."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        if self.fail:
            raise RuntimeError(f"model down for {len(items)} items")
        return [item * 10 for item in items]


async def _gather(batcher: MicroBatcher[int, int], n: int) -> list[int]:
    return await asyncio.gather(*(batcher.submit(i) for i in range(n)))


def test_micro_batcher_groups_concurrent_submits() -> None:
    """50 concurrent submits reach the function in fewer, larger calls; results keep order."""
    fn = Recorder()
    results = asyncio.run(_gather(MicroBatcher(fn, max_batch_size=100), 50))
    assert results == [i * 10 for i in range(50)]
    assert len(fn.calls) < 50
    assert max(len(c) for c in fn.calls) > 1
    assert [i for call in fn.calls for i in call] == list(range(50))


@pytest.mark.parametrize(("max_batch_size", "n"), [(1, 10), (7, 50), (16, 50), (50, 50)])
def test_micro_batcher_respects_max_batch_size(max_batch_size: int, n: int) -> None:
    """No call to the function receives more than max_batch_size items; none is lost."""
    fn = Recorder()
    results = asyncio.run(_gather(MicroBatcher(fn, max_batch_size=max_batch_size), n))
    assert results == [i * 10 for i in range(n)]
    assert all(1 <= len(c) <= max_batch_size for c in fn.calls)
    assert sorted(i for call in fn.calls for i in call) == list(range(n))
    assert len(fn.calls) >= -(-n // max_batch_size)


def test_micro_batcher_single_submit_is_scored_alone() -> None:
    """At low load an item is scored on its own, without waiting for company."""
    fn = Recorder()

    async def sequential() -> list[int]:
        batcher = MicroBatcher(fn, max_batch_size=64)
        return [await batcher.submit(i) for i in range(3)]

    assert asyncio.run(sequential()) == [0, 10, 20]
    assert fn.calls == [[0], [1], [2]]


def test_micro_batcher_exception_reaches_every_caller() -> None:
    """When the batch function raises, every waiting caller gets the exception."""
    fn = Recorder(fail=True)

    async def run() -> list[BaseException | int]:
        batcher = MicroBatcher(fn, max_batch_size=8)
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)), return_exceptions=True)

    outcomes = asyncio.run(run())
    assert len(outcomes) == 20
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert all(len(c) <= 8 for c in fn.calls)


def test_micro_batcher_recovers_after_failure() -> None:
    """A failed batch does not break the batcher: later submits are scored."""
    fn = Recorder(fail=True)

    async def run() -> int:
        batcher = MicroBatcher(fn, max_batch_size=4)
        with pytest.raises(RuntimeError):
            await batcher.submit(1)
        fn.fail = False
        return await batcher.submit(2)

    assert asyncio.run(run()) == 20


def test_micro_batcher_cancelled_caller_does_not_block_others() -> None:
    """A caller cancelled while queued (e.g. a timeout) is skipped; the others get results."""
    fn = Recorder()

    async def run() -> tuple[bool, list[int]]:
        batcher = MicroBatcher(fn, max_batch_size=10)
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)  # every task has queued its item; the worker has not run yet
        tasks[0].cancel()
        rest = await asyncio.wait_for(asyncio.gather(*tasks[1:]), timeout=2.0)
        return tasks[0].cancelled(), rest

    cancelled, rest = asyncio.run(run())
    assert cancelled
    assert rest == [10, 20]


@pytest.mark.parametrize("size", [0, -1])
def test_micro_batcher_rejects_non_positive_batch_size(size: int) -> None:
    """max_batch_size below 1 is refused."""
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Recorder(), max_batch_size=size)


def test_micro_batcher_wrong_result_count_fails_callers() -> None:
    """A batch function returning the wrong number of results fails every caller, none hangs."""

    def short(items: list[int]) -> list[int]:
        return [0] * (len(items) - 1)

    async def run() -> list[BaseException | int]:
        batcher = MicroBatcher(short, max_batch_size=10)
        calls = asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        return await asyncio.wait_for(calls, timeout=2.0)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, Exception) for o in outcomes)
