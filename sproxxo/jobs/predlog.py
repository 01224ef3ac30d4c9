"""Prediction-log maintenance: replay the dead letter, create the BigQuery table."""

from __future__ import annotations

from pathlib import Path

from sproxxo.adapters.logfiles import Replayed, replay_dead_letter, sink_for
from sproxxo.errors import DataSourceError
from sproxxo.records import PREDICTION_LOG_SCHEMA
from sproxxo.settings import Settings


def replay(settings: Settings, dead_letter: Path | None = None) -> Replayed:
    """Write every dead-letter record into the configured sink (`SPROXXO_PREDLOG_SINK`)."""
    sink = sink_for(settings)
    try:
        return replay_dead_letter(dead_letter or settings.dead_letter_dir, sink)
    except Exception as exc:  # the sink's own error types vary (OSError, google.api_core)
        raise DataSourceError(f"replay stopped, the sink refused a file: {exc}") from exc


def ensure_table(settings: Settings) -> str:
    """Create the BigQuery predictions table with the log's schema if absent; its id."""
    from sproxxo.adapters.bigquery import BigQueryPredictionSink

    table = settings.bigquery_predictions_table
    sink = BigQueryPredictionSink(table, project=settings.bigquery_project or None)
    sink.ensure_table(PREDICTION_LOG_SCHEMA)
    return table
