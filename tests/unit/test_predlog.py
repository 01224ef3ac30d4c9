"""The prediction log: hourly files, full flush on close, counted drops, no card data."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from sproxxo.adapters.logfiles import FileSink, read_log, replay_dead_letter
from sproxxo.features import FEATURE_NAMES, columns_from_transactions, derive
from sproxxo.records import Chunk, Record, chunk_of, local_isoformat, log_chunk, records_of
from sproxxo.schemas import EXAMPLE_TRANSACTION, Decision, RuleViolation, Transaction
from sproxxo.scoring import Scored
from sproxxo.serving.predlog import MAX_BATCH, PredictionLog

T0 = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)


def _record(i: int, when: datetime = T0) -> Record:
    return {"transaction_id": f"tx-{i}", "logged_at": when.isoformat(), "decision": "approve"}


def _chunk(*records: Record) -> Chunk:
    return chunk_of(list(records))


class SlowSink:
    """A sink that blocks inside write until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.records: list[Record] = []

    def write(self, chunks: list[Chunk]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self.records.extend(r for chunk in chunks for r in records_of(chunk))


class FullDiskSink:
    """A sink whose every write fails like a full disk."""

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, chunks: list[Chunk]) -> None:
        self.attempts += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def test_file_sink_partitions_by_hour(tmp_path: Path) -> None:
    """Records go to date=YYYY-MM-DD/hour=HH folders by their logged_at time."""
    sink = FileSink(tmp_path)
    later = T0 + timedelta(hours=1)
    next_day = T0 + timedelta(days=1)
    sink.write([_chunk(_record(1)), _chunk(_record(2, later)), _chunk(_record(3))])
    sink.write([_chunk(_record(4, next_day))])
    files = sorted(p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert files == [
        "date=2026-03-01/hour=10",
        "date=2026-03-01/hour=11",
        "date=2026-03-02/hour=10",
    ]
    lines = sink.path_for(T0).read_bytes().splitlines()
    ids = [tid for line in lines for tid in orjson.loads(line)["columns"]["transaction_id"]]
    assert ids == ["tx-1", "tx-3"]


def test_file_sink_appends(tmp_path: Path) -> None:
    """A second write to the same hour appends to the same file."""
    sink = FileSink(tmp_path)
    sink.write([_chunk(_record(1))])
    sink.write([_chunk(_record(2))])
    assert len(sink.path_for(T0).read_bytes().splitlines()) == 2


def test_file_sink_remakes_a_removed_partition(tmp_path: Path) -> None:
    """The sink makes a partition's folder once, and again when it was removed since (a
    clean-up of old hours), without losing the record."""
    sink = FileSink(tmp_path / "log")
    sink.write([_chunk(_record(1))])
    shutil.rmtree(tmp_path / "log")
    sink.write([_chunk(_record(2))])
    lines = sink.path_for(T0).read_bytes().splitlines()
    assert [orjson.loads(line)["columns"]["transaction_id"] for line in lines] == [["tx-2"]]


def test_prediction_log_close_flushes_all_accepted(tmp_path: Path) -> None:
    """close() writes every accepted record before returning."""
    written: list[int] = []
    log = PredictionLog(FileSink(tmp_path), flush_seconds=5.0, on_write=written.append)
    n = 4500  # more than one writer batch
    accepted = sum(log.submit(_chunk(_record(i))) for i in range(n))
    assert accepted == n
    assert log.close(timeout=30)
    assert log.stats.accepted == log.stats.written == n
    assert sum(written) == n
    assert log.stats.dropped == {}
    frame = read_log(tmp_path)
    assert sorted(frame["transaction_id"]) == sorted(f"tx-{i}" for i in range(n))


def test_prediction_log_submit_after_close_drops(tmp_path: Path) -> None:
    """Records submitted after close are dropped and counted as closed."""
    drops: list[tuple[str, int]] = []
    log = PredictionLog(FileSink(tmp_path), on_drop=lambda r, n: drops.append((r, n)))
    assert log.close()
    assert log.submit(_chunk(_record(1), _record(2))) == 0
    assert log.stats.dropped == {"closed": 2}
    assert drops == [("closed", 2)]


def test_prediction_log_full_queue_drops_and_counts() -> None:
    """With the writer stuck, records beyond the queue size are dropped, counted and reported."""
    sink = SlowSink()
    drops: list[tuple[str, int]] = []
    log = PredictionLog(
        sink, queue_size=5, flush_seconds=0.01, on_drop=lambda r, n: drops.append((r, n))
    )
    try:
        assert log.submit(_chunk(_record(0))) == 1
        assert sink.entered.wait(5)  # the writer now holds record 0 inside write()
        started = time.perf_counter()
        accepted = log.submit(chunk_of([_record(i) for i in range(1, 21)]))
        assert time.perf_counter() - started < 0.5  # never blocks
        assert accepted == 5
        assert log.stats.dropped == {"queue_full": 15}
        assert drops == [("queue_full", 15)]
        assert log.depth == 5
    finally:
        sink.release.set()
        assert log.close(timeout=10)
    assert [r["transaction_id"] for r in sink.records] == [f"tx-{i}" for i in range(6)]
    assert log.stats.written == 6


def test_prediction_log_sink_error_without_dead_letter_drops_without_raising() -> None:
    """A failing sink (full disk) with no dead letter: retried, then dropped and counted as
    sink_error; submit never raises or blocks."""
    sink = FullDiskSink()
    drops: list[tuple[str, int]] = []
    log = PredictionLog(
        sink,
        flush_seconds=0.01,
        retry_seconds=(0.0, 0.0),
        on_drop=lambda r, n: drops.append((r, n)),
    )
    started = time.perf_counter()
    for i in range(10):
        assert log.submit(_chunk(_record(i))) == 1
    assert time.perf_counter() - started < 0.5
    assert log.close(timeout=10)
    assert sink.attempts >= 3  # the first batch: one try and two retries
    assert log.stats.written == 0
    assert log.stats.dropped == {"sink_error": 10}
    assert sum(n for reason, n in drops if reason == "sink_error") == 10
    assert "OSError" in log.stats.last_error
    assert "No space left on device" in log.stats.last_error


def test_prediction_log_retries_a_flaky_sink_and_loses_nothing() -> None:
    """A sink that fails once is retried with backoff: every record is written."""

    class FlakySink:
        def __init__(self) -> None:
            self.calls = 0
            self.records: list[Record] = []

        def write(self, chunks: list[Chunk]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.EIO, "I/O error")
            self.records.extend(r for chunk in chunks for r in records_of(chunk))

    sink = FlakySink()
    log = PredictionLog(sink, flush_seconds=0.01, retry_seconds=(0.0,))
    log.submit(_chunk(_record(1)))
    log.submit(_chunk(_record(2)))
    assert log.close(timeout=10)
    assert sorted(r["transaction_id"] for r in sink.records) == ["tx-1", "tx-2"]
    assert log.stats.dropped == {}
    assert sink.calls >= 2


def test_prediction_log_failing_sink_goes_to_dead_letter_then_replays(tmp_path: Path) -> None:
    """What the sink still refuses after its retries is written to the dead letter (nothing
    dropped); a replay moves it into the sink and empties the dead letter."""
    dead = tmp_path / "dead-letter"
    dead_lettered: list[int] = []
    log = PredictionLog(
        FullDiskSink(),
        dead_letter=FileSink(dead),
        flush_seconds=0.01,
        retry_seconds=(0.0,),
        on_dead_letter=dead_lettered.append,
    )
    for i in range(25):
        log.submit(_chunk(_record(i)))
    assert log.close(timeout=10)
    assert log.stats.dropped == {}
    assert log.stats.dead_lettered == sum(dead_lettered) == 25
    assert sorted(read_log(dead)["transaction_id"]) == sorted(f"tx-{i}" for i in range(25))
    target = tmp_path / "sink"
    replayed = replay_dead_letter(dead, FileSink(target))
    assert (replayed.records, replayed.torn_lines) == (25, 0)
    assert sorted(read_log(target)["transaction_id"]) == sorted(f"tx-{i}" for i in range(25))
    assert list(dead.rglob("*.jsonl")) == []


def test_prediction_log_close_deadline_spills_a_hung_sink_to_dead_letter(tmp_path: Path) -> None:
    """A sink that hangs past the close deadline cannot stall shutdown: close returns at the
    deadline and what is still queued is in the dead letter."""
    sink = SlowSink()
    log = PredictionLog(sink, dead_letter=FileSink(tmp_path), flush_seconds=0.01)
    try:
        log.submit(_chunk(_record(0)))
        assert sink.entered.wait(5)  # the writer holds record 0 inside a hung write()
        for i in range(1, 11):
            log.submit(_chunk(_record(i)))
        assert log.close(timeout=0.2) is False
        assert sorted(read_log(tmp_path)["transaction_id"]) == sorted(
            f"tx-{i}" for i in range(1, 11)
        )
        assert log.stats.dead_lettered == 10
    finally:
        sink.release.set()


def test_file_sink_failed_append_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that fails half-way (full disk) is truncated back: the next one reads."""
    sink = FileSink(tmp_path)
    sink.write([_chunk(_record(1))])
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        sink.write([_chunk(_record(2))])
    monkeypatch.setattr(os, "fsync", real_fsync)
    sink.write([_chunk(_record(3))])
    frame = read_log(tmp_path)
    assert list(frame["transaction_id"]) == ["tx-1", "tx-3"]
    assert frame.attrs["torn_lines"] == 0
    assert calls["n"] == 1


def test_read_log_skips_and_counts_torn_lines(tmp_path: Path) -> None:
    """A torn line (a crash mid-write) is skipped and counted; the rest of the hour reads."""
    sink = FileSink(tmp_path)
    sink.write([_chunk(_record(1))])
    path = sink.path_for(T0)
    with path.open("ab") as handle:
        handle.write(b'{"n": 1, "columns": {"transaction_id": ["tx-to')  # torn, no newline
        handle.write(b"\n[1, 2]\n")  # and a line that is JSON but not a record
    sink.write([_chunk(_record(2))])
    frame = read_log(tmp_path)
    assert list(frame["transaction_id"]) == ["tx-1", "tx-2"]
    assert frame.attrs["torn_lines"] == 2


def _scored(tx: Transaction) -> Scored:
    columns = columns_from_transactions([tx])
    return Scored(
        transactions=[tx],
        columns=columns,
        derived=derive(columns),
        probabilities=np.array([0.42]),
        violations=[
            [RuleViolation(rule="null_island", field="lat", message="m", severity="review")]
        ],
        decisions=[Decision.REVIEW],
        reasons=[["RULE_NULL_ISLAND", "MODEL_SCORE_HIGH"]],
        model_tag="sproxxo-fraud:v1",
    )


def test_log_chunk_has_no_card_token(tmp_path: Path) -> None:
    """A logged record carries the decision and features but no card token anywhere."""
    tx = Transaction.model_validate_json(json.dumps(EXAMPLE_TRANSACTION))
    scored = _scored(tx)
    FileSink(tmp_path).write([log_chunk(scored)])
    text = "".join(p.read_text() for p in tmp_path.rglob("*.jsonl"))
    assert "card_id" not in text
    assert tx.card_id not in text
    (record,) = read_log(tmp_path).to_dict("records")
    assert record["transaction_id"] == tx.transaction_id
    assert record["decision"] == "review"
    assert record["valid"] is False
    assert list(record["violations"]) == ["null_island"]
    assert list(record["reason_codes"]) == ["RULE_NULL_ISLAND", "MODEL_SCORE_HIGH"]
    assert record["event_time"] == tx.timestamp.isoformat()
    assert record["amount"] == float(tx.amount)
    assert record["fraud_probability"] == 0.42
    assert record["risk_score"] == scored.derived.risk_score[0]
    np.testing.assert_array_equal(  # NaN (no card history here) reads back as NaN
        [record[name] for name in FEATURE_NAMES], scored.derived.matrix[0]
    )
    assert datetime.fromisoformat(record["logged_at"]).tzinfo is not None


@pytest.mark.parametrize("offset", [-720, -360, -90, 0, 330, 345, 840])
def test_local_isoformat_equals_datetime_isoformat(offset: int) -> None:
    """The array formatting of event times gives exactly `datetime.isoformat()`."""
    rng = np.random.default_rng(offset + 1000)
    zone = timezone(timedelta(minutes=offset))
    stamps = [
        datetime(2026, 1, 1, tzinfo=zone)
        + timedelta(seconds=int(s), microseconds=int(us) if i % 2 else 0)
        for i, (s, us) in enumerate(
            zip(rng.integers(0, 3 * 365 * 86400, 200), rng.integers(1, 10**6, 200), strict=True)
        )
    ]
    columns = columns_from_transactions([_tx_at(stamp.isoformat()) for stamp in stamps])
    epochs, offsets = columns["epoch_seconds"], columns["utc_offset_minutes"]
    expected = [stamp.isoformat() for stamp in stamps]
    assert local_isoformat(epochs, offsets) == expected
    one_by_one = [local_isoformat(epochs[i : i + 1], offsets[i : i + 1])[0] for i in range(200)]
    assert one_by_one == expected  # the few-rows path
    threes = [
        stamp
        for i in range(0, 198, 3)
        for stamp in local_isoformat(epochs[i : i + 3], offsets[i : i + 3])
    ]
    assert threes == expected[:198]


def _tx_at(timestamp: str) -> Transaction:
    return Transaction.model_validate_json(
        json.dumps({**EXAMPLE_TRANSACTION, "timestamp": timestamp})
    )


def test_read_log_reads_chunk_lines_and_record_lines(tmp_path: Path) -> None:
    """Chunk lines and one-record-per-line files (older logs) read back as one frame."""
    FileSink(tmp_path).write([_chunk(_record(1), _record(2))])
    legacy = tmp_path / "date=2026-03-01" / "hour=10" / "part-legacy.jsonl"
    legacy.write_bytes(orjson.dumps(_record(3)) + b"\n")
    frame = read_log(tmp_path)
    assert sorted(frame["transaction_id"]) == ["tx-1", "tx-2", "tx-3"]
    assert set(frame["decision"]) == {"approve"}


def test_chunk_of_and_records_of_round_trip() -> None:
    """Records turned into a chunk and back are equal; numpy columns become Python values."""
    records = [_record(i) for i in range(3)]
    assert records_of(chunk_of(records)) == records
    rows = records_of({"transaction_id": ["a", "b"], "p": np.array([0.5, 0.25])})
    assert rows == [{"transaction_id": "a", "p": 0.5}, {"transaction_id": "b", "p": 0.25}]
    assert type(rows[0]["p"]) is float


def test_prediction_log_splits_big_chunks_into_batches(tmp_path: Path) -> None:
    """One 4,500-record chunk reaches the sink in batches of at most MAX_BATCH, in order."""
    written: list[int] = []
    log = PredictionLog(FileSink(tmp_path), flush_seconds=5.0, on_write=written.append)
    assert log.submit(chunk_of([_record(i) for i in range(4500)])) == 4500
    assert log.close(timeout=30)
    assert written == [MAX_BATCH, MAX_BATCH, 4500 - 2 * MAX_BATCH]
    assert list(read_log(tmp_path)["transaction_id"]) == [f"tx-{i}" for i in range(4500)]


def test_read_log_filters_since_until(tmp_path: Path) -> None:
    """read_log keeps records with since <= logged_at < until, across partitions."""
    sink = FileSink(tmp_path)
    sink.write([_chunk(_record(h, T0 + timedelta(hours=h))) for h in range(5)])
    everything = read_log(tmp_path)
    assert len(everything) == 5
    window = read_log(tmp_path, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert list(window["transaction_id"]) == ["tx-1", "tx-2"]
    assert list(read_log(tmp_path, since=T0 + timedelta(hours=4))["transaction_id"]) == ["tx-4"]
    assert list(read_log(tmp_path, until=T0)["transaction_id"]) == []


def test_read_log_empty_directory(tmp_path: Path) -> None:
    """An empty log folder reads as an empty frame."""
    assert read_log(tmp_path).empty


@pytest.mark.parametrize("queue_size", [1, 3])
def test_prediction_log_submit_batch_partially_accepted(queue_size: int) -> None:
    """A batch larger than the free queue space is accepted up to the space left."""
    sink = SlowSink()
    log = PredictionLog(sink, queue_size=queue_size, flush_seconds=0.01)
    try:
        log.submit(_chunk(_record(0)))
        assert sink.entered.wait(5)
        records: list[dict[str, Any]] = [_record(i) for i in range(1, 10)]
        assert log.submit(chunk_of(records)) == queue_size
        assert log.stats.dropped["queue_full"] == 9 - queue_size
    finally:
        sink.release.set()
        log.close(timeout=10)


def test_prediction_log_close_honours_timeout_with_stuck_sink() -> None:
    """close(timeout) returns (False) within about `timeout` even if the sink never finishes."""
    sink = SlowSink()
    log = PredictionLog(sink, queue_size=2, flush_seconds=0.01)
    log.submit(_chunk(_record(0)))
    assert sink.entered.wait(5)
    assert log.submit(_chunk(_record(1), _record(2))) == 2  # the queue is now full
    outcome: list[bool] = []
    closer = threading.Thread(target=lambda: outcome.append(log.close(timeout=0.5)), daemon=True)
    closer.start()
    closer.join(3.0)
    returned = not closer.is_alive()
    sink.release.set()  # unblock the writer so nothing leaks past the test
    closer.join(5.0)
    assert returned
    assert outcome == [False]


def test_read_log_chunks_with_and_without_history_share_float_columns(tmp_path: Path) -> None:
    """One chunk of cards without history (its history features all null, its profile
    fields absent) and one with: read back as float64 columns with NaN, no pandas warning
    about concatenating all-null columns (warnings are errors here)."""
    with_history = {**_record(1), "card_tx_1h": 2.0, "city_pop": 1000, "lat": 19.4}
    without = {**_record(2), "card_tx_1h": None, "city_pop": None, "lat": None}
    FileSink(tmp_path).write([_chunk(without), _chunk(with_history)])
    frame = read_log(tmp_path).sort_values("transaction_id").reset_index(drop=True)
    assert frame["card_tx_1h"].dtype == np.float64
    assert frame["card_tx_1h"].tolist()[0] == 2.0
    assert np.isnan(frame["card_tx_1h"][1])
    assert frame["city_pop"].tolist()[0] == 1000
    assert frame["city_pop"].isna()[1]
    assert list(frame.columns)[:3] == ["transaction_id", "logged_at", "decision"]
