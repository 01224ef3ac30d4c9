"""The live-quality SQL and the BigQuery route of compare, against the BigQuery emulator.

The emulator is the one tests/data/test_bigquery.py starts (bqemulator on loopback, anonymous
credentials); the same constructed shadow log goes into a prediction-log table and the file
log, and both routes must give the same numbers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sproxxo.adapters.bigquery import (
    LABELS_TABLE_SCHEMA,
    TALLY_COLUMNS,
    BigQueryPredictionSink,
    quality_sql,
    quality_tallies,
    read_label_table,
    read_predictions,
)
from sproxxo.errors import DataSourceError
from sproxxo.jobs import compare as compare_job
from sproxxo.jobs import quality as quality_job
from sproxxo.jobs.labels import read_labels
from sproxxo.policy import CostModel
from sproxxo.records import PREDICTION_LOG_SCHEMA
from tests.data.test_bigquery import DATASET, bq_client, emulator_url  # noqa: F401 - fixtures
from tests.monitoring.shadow_log import DAY, build, write_files

LOG_TABLE = f"{DATASET}.shadow_prediction_log"
LABELS_TABLE = f"{DATASET}.shadow_labels"
UNTIL = DAY + timedelta(days=1)


@pytest.fixture(scope="module")
def bq_tables(bq_client: Any) -> Any:  # noqa: F811 - the imported fixture
    """The constructed day streamed into a prediction-log table and a labels table."""
    chunks, labels = build()
    log = BigQueryPredictionSink(LOG_TABLE, client=bq_client)
    log.ensure_table(PREDICTION_LOG_SCHEMA)
    log.write(chunks)
    BigQueryPredictionSink(LABELS_TABLE, client=bq_client).ensure_table(LABELS_TABLE_SCHEMA)
    rows = labels.assign(reported_at=labels["reported_at"].map(lambda t: t.isoformat()))
    assert bq_client.insert_rows_json(LABELS_TABLE, rows.to_dict("records")) == []
    return bq_client


@pytest.fixture
def file_dirs(tmp_path: Path) -> quality_job.LogSource:
    """The same day as a file log and a label store."""
    source = quality_job.LogSource(log_dir=tmp_path / "log", labels_dir=tmp_path / "labels")
    write_files(source.log_dir, source.labels_dir)
    return source


def test_quality_sql_tallies_equal_the_file_join(
    bq_tables: Any, file_dirs: quality_job.LogSource
) -> None:
    """The SQL's counts per (model tag, role) are the pandas join's, row for row."""
    frame = quality_tallies(LOG_TABLE, LABELS_TABLE, since=DAY, until=UNTIL, client=bq_tables)
    assert list(frame.columns) == list(TALLY_COLUMNS)
    from_sql = quality_job.tallies_from_rows(frame)
    from_files = quality_job.window_tallies(file_dirs, since=DAY, until=UNTIL)
    assert from_sql == from_files
    assert [(t.role, t.labelled, t.frauds) for t in from_sql] == [
        ("champion", 29, 9),
        ("shadow", 24, 8),
        ("shadow", 1, 0),
    ]


def test_quality_sql_window_is_half_open(bq_tables: Any) -> None:
    """A window that ends before the day's records holds no tally at all."""
    frame = quality_tallies(
        LOG_TABLE, LABELS_TABLE, since=DAY - timedelta(days=1), until=DAY, client=bq_tables
    )
    assert frame.empty


def test_quality_sql_refuses_a_bad_table_id_offline() -> None:
    """A malformed table id is refused before any SQL is built."""
    with pytest.raises(DataSourceError, match=r"not of the form project\.dataset\.table"):
        quality_sql(LOG_TABLE, "labels`; DROP TABLE x; --")


def test_compare_from_bigquery_equals_compare_from_files(
    bq_tables: Any, file_dirs: quality_job.LogSource
) -> None:
    """compare.json built from the BigQuery log and labels table equals the file route's."""
    costs = CostModel()
    from_bq = compare_job.build_report(
        read_predictions(LOG_TABLE, since=DAY, until=UNTIL, client=bq_tables),
        read_label_table(LABELS_TABLE, client=bq_tables),
        since=DAY,
        until=UNTIL,
        costs=costs,
    )
    from_files = compare_job.build_report(
        quality_job.read_window(file_dirs, since=DAY, until=UNTIL),
        read_labels(file_dirs.labels_dir),
        since=DAY,
        until=UNTIL,
        costs=costs,
    )
    assert from_bq == from_files
    assert from_bq.agreement.agreement_rate == pytest.approx(0.7)
