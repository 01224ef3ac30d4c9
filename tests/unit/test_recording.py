"""A request's prediction-log rows are queued once, with the status the client got."""

from __future__ import annotations

import threading
from typing import Any

from sproxxo.serving.recording import Recording

Chunk = dict[str, Any]


def _rows(*ids: str) -> Chunk:
    return {"transaction_id": list(ids), "decision": ["approve"] * len(ids)}


def test_rows_attached_before_the_answer_are_queued_when_it_leaves() -> None:
    """Scoring attaches, the answer's start queues them stamped with its status."""
    queued: list[Chunk] = []
    rec = Recording(queued.append)
    rec.attach(_rows("tx-1", "tx-2"))
    assert queued == []
    rec.answered(200)
    assert queued == [{**_rows("tx-1", "tx-2"), "http_status": [200, 200]}]


def test_rows_attached_after_a_timeout_are_queued_as_504() -> None:
    """The budget cancelled the request before its (threaded) scoring finished: the rows
    arrive later and are queued at once, marked 504."""
    queued: list[Chunk] = []
    rec = Recording(queued.append)
    rec.answered(504)
    assert queued == []
    rec.attach(_rows("tx-9"))
    assert queued == [{**_rows("tx-9"), "http_status": [504]}]


def test_a_request_is_answered_once() -> None:
    """The first status wins; rows are never queued twice."""
    queued: list[Chunk] = []
    rec = Recording(queued.append)
    rec.attach(_rows("tx-1"))
    rec.answered(200)
    rec.answered(504)
    assert [c["http_status"] for c in queued] == [[200]]
    assert rec.status == 200


def test_concurrent_attach_and_answer_queue_each_row_exactly_once() -> None:
    """Races between the scoring thread and the answer never lose or duplicate rows."""
    for _ in range(200):
        queued: list[Chunk] = []
        rec = Recording(queued.append)
        start = threading.Barrier(2)

        def score(rec: Recording = rec, start: threading.Barrier = start) -> None:
            start.wait()
            rec.attach(_rows("tx-a"))

        worker = threading.Thread(target=score)
        worker.start()
        start.wait()
        rec.answered(504)
        worker.join()
        assert [c["transaction_id"] for c in queued] == [["tx-a"]]
        assert queued[0]["http_status"] == [504]
