"""Prediction-log maintenance.

    python -m monitoring.predlog replay [--dead-letter DIR]
    python -m monitoring.predlog ensure-table

`ensure-table` creates the BigQuery predictions table (`SPROXXO_BIGQUERY_PREDICTIONS_TABLE`)
with the prediction log's schema (`sproxxo.predlog.PREDICTION_LOG_SCHEMA`) if it is absent.

`replay` writes every record the service's sink refused (the dead-letter folder, default
`<state>/predlog-dead-letter`) into the configured sink (`SPROXXO_PREDLOG_SINK`: the local
log folder or BigQuery) and deletes each dead-letter file once written. A file that still
fails stays for the next run. Exit codes: 0 done (also when there was nothing), 3 the sink
refused a file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from monitoring.common import run_cli
from sproxxo.cli import EXIT_OK, configure_logging
from sproxxo.errors import DataSourceError
from sproxxo.predlog import PREDICTION_LOG_SCHEMA, make_sink, replay_dead_letter
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Replay the dead letter into the configured sink."""
    p = argparse.ArgumentParser(prog="python -m monitoring.predlog", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="move dead-letter records into the sink")
    replay.add_argument("--dead-letter", type=Path, help="default: <state>/predlog-dead-letter")
    sub.add_parser("ensure-table", help="create the BigQuery predictions table if absent")
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "ensure-table":
        from sproxxo.sources.bigquery import BigQueryPredictionSink

        table = settings.bigquery_predictions_table
        BigQueryPredictionSink(table, project=settings.bigquery_project or None).ensure_table(
            PREDICTION_LOG_SCHEMA
        )
        print(f"{table} has the prediction log's schema")
        return EXIT_OK
    sink = make_sink(
        settings.predlog_sink,
        directory=settings.predictions_dir,
        table=settings.bigquery_predictions_table,
        project=settings.bigquery_project or None,
    )
    try:
        done = replay_dead_letter(args.dead_letter or settings.dead_letter_dir, sink)
    except Exception as exc:  # the sink's own error types vary (OSError, google.api_core)
        raise DataSourceError(f"replay stopped, the sink refused a file: {exc}") from exc
    print(f"replayed {done.files} files, {done.records} records ({done.torn_lines} torn lines)")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run_cli(main, None))
