"""The BigQuery source and prediction sink against a real BigQuery REST emulator on loopback.

The emulator (bqemulator, DuckDB-backed) runs as a subprocess started by
`tests/data/bq_emulator.py`; clients reach it with an explicit `api_endpoint` and
anonymous credentials, so nothing here touches Google Cloud or the network.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from sproxxo.adapters.bigquery import (
    SOURCE_COLUMNS,
    BigQueryPredictionSink,
    load_bigquery,
    make_client,
    to_json_value,
)
from sproxxo.errors import DataSourceError
from sproxxo.features import CANONICAL_COLUMNS, LABEL_COLUMN
from sproxxo.records import chunk_of
from sproxxo.sources.synthetic import generate

PROJECT = "sproxxo-test"
DATASET = f"{PROJECT}.fraud"
TRANSACTIONS = f"{DATASET}.transactions"
LAUNCHER = Path(__file__).with_name("bq_emulator.py")
STARTUP_TIMEOUT_SECONDS = 60.0
TRANSACTIONS_SCHEMA = (
    ("transaction_id", "STRING"), ("card_id", "STRING"), ("amount", "FLOAT64"),
    ("currency", "STRING"), ("event_time", "TIMESTAMP"), ("utc_offset_minutes", "INT64"),
    ("merchant_id", "STRING"), ("merchant_category", "STRING"), ("lat", "FLOAT64"),
    ("long", "FLOAT64"), ("merch_lat", "FLOAT64"), ("merch_long", "FLOAT64"),
    ("card_age_days", "INT64"), ("is_foreign", "BOOL"), ("customer_age", "INT64"),
    ("city_pop", "INT64"), ("is_fraud", "INT64"),
)  # fmt: skip
PREDICTIONS_SCHEMA = (
    ("transaction_id", "STRING"),
    ("probability", "FLOAT64"),
    ("decision", "STRING"),
    ("amount", "NUMERIC"),
    ("scored_at", "TIMESTAMP"),
)


def _is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until_ready(process: subprocess.Popen[bytes], port_file: Path, log: Path) -> str:
    """Poll the launcher's port file, then `/readyz`; fail early if the process dies."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bq emulator exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text()}"
            if _is_ready(url):
                return url
        with contextlib.suppress(subprocess.TimeoutExpired):  # poll interval, ends on exit
            process.wait(timeout=0.05)
    pytest.fail(f"bq emulator not ready in {STARTUP_TIMEOUT_SECONDS}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a bqemulator subprocess on a free loopback port, stopped at teardown."""
    pytest.importorskip("bqemulator")
    workdir = tmp_path_factory.mktemp("bqemu")
    port_file, log = workdir / "port", workdir / "emulator.log"
    command = [sys.executable, str(LAUNCHER), "--port-file", str(port_file), "--project", PROJECT]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield _wait_until_ready(process, port_file, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def bq_client(emulator_url: str) -> Any:
    """A real `bigquery.Client` pointed at the emulator with anonymous credentials."""
    client = make_client(PROJECT, api_endpoint=emulator_url, anonymous=True)
    client.create_dataset(DATASET, exists_ok=True)
    return client


def _create_table(client: Any, table: str, schema: tuple[tuple[str, str], ...]) -> None:
    from google.cloud import bigquery

    fields = [bigquery.SchemaField(name, field_type) for name, field_type in schema]
    client.create_table(bigquery.Table(table, schema=fields))


def _as_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Canonical frame -> JSON rows of the transactions table (`event_time` as ISO text)."""
    times = pd.to_datetime(frame["epoch_seconds"], unit="s", utc=True)
    stored = frame.assign(event_time=times.map(pd.Timestamp.isoformat))[list(SOURCE_COLUMNS)]
    return [
        {str(key): to_json_value(value) for key, value in row.items()}
        for row in stored.to_dict(orient="records")
    ]


@pytest.fixture(scope="session")
def transactions(bq_client: Any) -> pd.DataFrame:
    """500 synthetic transactions, streamed into the emulator's transactions table."""
    frame = generate(500, seed=3)
    _create_table(bq_client, TRANSACTIONS, TRANSACTIONS_SCHEMA)
    assert bq_client.insert_rows_json(TRANSACTIONS, _as_rows(frame)) == []
    return frame


def _expected(frame: pd.DataFrame, since: datetime, until: datetime) -> pd.DataFrame:
    in_range = frame["epoch_seconds"].between(since.timestamp(), until.timestamp(), "left")
    ordered = frame[in_range].sort_values(["epoch_seconds", "transaction_id"], kind="stable")
    return ordered.reset_index(drop=True)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_back(client: Any, table: str) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM `{table}` ORDER BY transaction_id"  # noqa: S608 - test-owned table id
    return [dict(row.items()) for row in client.query(sql).result()]


class _NoNetworkClient:
    """A client stand-in that fails the test if anything is called on it."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"client.{name} was used although the table id is invalid")


def test_load_bigquery_returns_canonical_rows_in_range(
    transactions: pd.DataFrame, bq_client: Any
) -> None:
    """Rows with since <= event_time < until come back in canonical columns and dtypes."""
    since, until = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    loaded = load_bigquery(
        table=TRANSACTIONS, since="2026-02-01", until="2026-03-01", client=bq_client
    )
    expected = _expected(transactions, since, until)
    assert 0 < len(loaded) < len(transactions)
    assert list(loaded.columns) == [*CANONICAL_COLUMNS, LABEL_COLUMN]
    assert loaded.dtypes.to_dict() == transactions.dtypes.to_dict()
    pd.testing.assert_frame_equal(loaded, expected, check_exact=True)


def test_load_bigquery_range_is_half_open(transactions: pd.DataFrame, bq_client: Any) -> None:
    """An event exactly at `since` is included; one exactly at `until` is excluded."""
    first, last = (
        int(transactions["epoch_seconds"].iloc[100]),
        int(transactions["epoch_seconds"].iloc[140]),
    )
    since, until = datetime.fromtimestamp(first, tz=UTC), datetime.fromtimestamp(last, tz=UTC)
    loaded = load_bigquery(
        table=TRANSACTIONS, since=since.isoformat(), until=until.isoformat(), client=bq_client
    )
    assert loaded["epoch_seconds"].min() == first
    assert loaded["epoch_seconds"].max() < last
    pd.testing.assert_frame_equal(loaded, _expected(transactions, since, until))


def test_load_bigquery_reads_offset_bounds_as_instants(
    transactions: pd.DataFrame, bq_client: Any
) -> None:
    """Bounds with a UTC offset select the same instants as their UTC equivalents."""
    local = load_bigquery(
        table=TRANSACTIONS,
        since="2026-01-31T18:00:00-06:00",
        until="2026-02-28T18:00:00-06:00",
        client=bq_client,
    )
    utc = load_bigquery(
        table=TRANSACTIONS, since="2026-02-01", until="2026-03-01", client=bq_client
    )
    pd.testing.assert_frame_equal(local, utc)


def test_load_bigquery_empty_range_raises(transactions: pd.DataFrame, bq_client: Any) -> None:
    """A range without rows is an error naming the table, not an empty frame."""
    with pytest.raises(DataSourceError, match=rf"{TRANSACTIONS}: no rows"):
        load_bigquery(table=TRANSACTIONS, since="2030-01-01", until="2030-02-01", client=bq_client)


def test_load_bigquery_missing_table_names_table(bq_client: Any) -> None:
    """A table that does not exist gives a DataSourceError naming it."""
    missing = f"{DATASET}.no_such_table"
    with pytest.raises(DataSourceError, match=rf"{missing}: not found"):
        load_bigquery(table=missing, since="2026-01-01", until="2026-02-01", client=bq_client)


def test_load_bigquery_missing_columns_names_them(bq_client: Any) -> None:
    """A table without some canonical columns is refused, listing the missing ones."""
    table = f"{DATASET}.transactions_without_label"
    _create_table(bq_client, table, TRANSACTIONS_SCHEMA[:-1])
    with pytest.raises(DataSourceError, match=r"missing columns \['is_fraud'\]"):
        load_bigquery(table=table, since="2026-01-01", until="2026-02-01", client=bq_client)


def test_load_bigquery_unreachable_endpoint_fails_fast() -> None:
    """A closed port gives a DataSourceError within the retry deadline, not a hang."""
    client = make_client(PROJECT, api_endpoint=f"http://127.0.0.1:{_closed_port()}", anonymous=True)
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=rf"{TRANSACTIONS}: request failed"):
        load_bigquery(
            table=TRANSACTIONS,
            since="2026-01-01",
            until="2026-02-01",
            client=client,
            timeout_seconds=2,
        )
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "table",
    [
        "fraud.transactions",
        "sproxxo-test.fraud.transactions`; DROP TABLE x; --",
        "Sproxxo-Test.fraud.transactions",
        "sproxxo-test.fraud.trans actions",
        "p.d.t",
    ],
)
def test_load_bigquery_invalid_table_id_is_refused_offline(table: str) -> None:
    """A malformed table id is rejected before any call reaches the client."""
    with pytest.raises(DataSourceError, match=r"not of the form project\.dataset\.table"):
        load_bigquery(
            table=table, since="2026-01-01", until="2026-02-01", client=_NoNetworkClient()
        )


def test_load_bigquery_without_credentials_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Application Default Credentials gives a DataSourceError that says so."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/sproxxo-adc.json")
    with pytest.raises(DataSourceError, match="no Google credentials"):
        load_bigquery(table=TRANSACTIONS, since="2026-01-01", until="2026-02-01")


def test_prediction_sink_writes_rows_that_read_back(bq_client: Any) -> None:
    """Streamed prediction records (datetime, Decimal, numpy values) can be queried back."""
    table = f"{DATASET}.predictions"
    sink = BigQueryPredictionSink(table, client=bq_client)
    sink.ensure_table(PREDICTIONS_SCHEMA)
    scored_at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    records = [
        {
            "transaction_id": f"tx-{i}",
            "probability": np.float64(i / 10),
            "decision": "approve",
            "amount": Decimal("12.34"),
            "scored_at": scored_at,
        }
        for i in range(3)
    ]
    sink.write([chunk_of(records[:1]), chunk_of(records[1:])])
    got = _read_back(bq_client, table)
    assert [r["transaction_id"] for r in got] == ["tx-0", "tx-1", "tx-2"]
    assert [r["probability"] for r in got] == [0.0, 0.1, 0.2]
    assert {r["amount"] for r in got} == {Decimal("12.34")}
    assert {r["scored_at"] for r in got} == {scored_at}


def test_prediction_sink_reports_rejected_rows(bq_client: Any) -> None:
    """Rows BigQuery rejects surface as a DataSourceError counting them, naming the table."""
    table = f"{DATASET}.predictions_partial"
    sink = BigQueryPredictionSink(table, client=bq_client, skip_invalid_rows=True)
    sink.ensure_table(PREDICTIONS_SCHEMA)
    good = {"transaction_id": "tx-ok", "probability": 0.5, "decision": "review"}
    bad = {"transaction_id": "tx-bad", "probability": "not-a-number", "decision": "review"}
    with pytest.raises(DataSourceError, match=rf"{table}: 1 of 2 rows rejected \(row 1"):
        sink.write([chunk_of([good, bad])])
    assert [row["transaction_id"] for row in _read_back(bq_client, table)] == ["tx-ok"]


def test_prediction_sink_empty_batch_makes_no_call() -> None:
    """Writing no records is a no-op that never touches the client."""
    BigQueryPredictionSink(TRANSACTIONS, client=_NoNetworkClient()).write([])
    BigQueryPredictionSink(TRANSACTIONS, client=_NoNetworkClient()).write([{"transaction_id": []}])


def test_prediction_log_schema_takes_real_chunks_and_reads_back_without_synthetic(
    bq_client: Any,
) -> None:
    """The service's own chunks (features, reason codes, http_status, synthetic) stream into
    a table made from PREDICTION_LOG_SCHEMA; monitoring's read skips synthetic rows."""
    from sproxxo.adapters.bigquery import read_predictions
    from sproxxo.features import columns_from_transactions, derive
    from sproxxo.records import PREDICTION_LOG_SCHEMA, log_chunk
    from sproxxo.schemas import Decision, Transaction
    from sproxxo.scoring import Scored
    from sproxxo.serving.recording import stamped
    from tests.helpers import make_transaction

    table = f"{DATASET}.prediction_log"
    sink = BigQueryPredictionSink(table, client=bq_client)
    sink.ensure_table(PREDICTION_LOG_SCHEMA)
    txs = [
        Transaction.model_validate(
            {**make_transaction(transaction_id=f"tx-log-{i}"), "timestamp": "2026-03-01T10:00:00Z"},
            strict=False,
        )
        for i in range(3)
    ]
    columns = columns_from_transactions(txs)
    scored = Scored(
        transactions=txs,
        columns=columns,
        derived=derive(columns),
        probabilities=np.array([0.1, 0.5, 0.9]),
        violations=[[], [], []],
        decisions=[Decision.APPROVE, Decision.REVIEW, Decision.DECLINE],
        reasons=[[], ["MODEL_SCORE_HIGH"], ["MODEL_SCORE_VERY_HIGH"]],
        model_tag="sproxxo-fraud:v1",
    )
    chunk = stamped(log_chunk(scored), 200)
    load_test = {**stamped(log_chunk(scored), 200), "synthetic": [True] * 3}
    load_test["transaction_id"] = [f"tx-load-{i}" for i in range(3)]
    sink.write([chunk, load_test])
    now = datetime.now(UTC)
    got = read_predictions(
        table,
        since=now.replace(year=now.year - 1),
        until=now.replace(year=now.year + 1),
        client=bq_client,
    )
    assert sorted(got["transaction_id"]) == ["tx-log-0", "tx-log-1", "tx-log-2"]
    assert sorted(got["http_status"].tolist()) == [200, 200, 200]
    assert list(got.sort_values("transaction_id")["reason_codes"].map(list)) == [
        [],
        ["MODEL_SCORE_HIGH"],
        ["MODEL_SCORE_VERY_HIGH"],
    ]


def test_rescored_answers_load_into_a_table_once_unless_replaced(
    bq_client: Any, model_tags: list[str]
) -> None:
    """`training.score --out bq://...`: the answers of a re-scoring arrive in BigQuery by one
    load job and read back equal; a second run into the same table is refused (a window
    must not be doubled) unless it replaces the table."""
    from sproxxo.adapters import bentoml_store as store
    from sproxxo.jobs.rescore import rescore_frame, write_answers
    from sproxxo.ml.training import add_history

    answers = rescore_frame(add_history(generate(2_000, seed=5)), store.load_model(model_tags[0]))
    table = f"{DATASET}.rescored"
    write_answers(answers, f"bq://{table}", client=bq_client)
    back = pd.DataFrame(_read_back(bq_client, table)).sort_values("transaction_id")
    want = answers.sort_values("transaction_id")
    assert len(back) == len(want) == 2_000
    for column in ("transaction_id", "decision", "reason_codes", "rules", "model_tag"):
        assert back[column].tolist() == want[column].tolist()
    np.testing.assert_array_equal(back["fraud_probability"], want["fraud_probability"])
    with pytest.raises(DataSourceError, match=rf"{table}: already holds rows; pass --replace"):
        write_answers(answers, f"bq://{table}", client=bq_client)
    write_answers(answers.head(10), f"bq://{table}", client=bq_client, replace=True)
    assert len(_read_back(bq_client, table)) == 10


@pytest.mark.parametrize("out", ["bq://not a table", "bq://p.d", "answers.xlsx"])
def test_rescore_output_is_checked_before_any_work(out: str) -> None:
    """A malformed table id or file type is refused at once, naming it."""
    from sproxxo.jobs.rescore import check_output

    with pytest.raises(DataSourceError, match=r"table id|parquet or \.csv"):
        check_output(out)
