"""Prediction-log maintenance.

    python -m monitoring.predlog replay [--dead-letter DIR]
    python -m monitoring.predlog ensure-table

`ensure-table` creates the BigQuery predictions table (`SPROXXO_BIGQUERY_PREDICTIONS_TABLE`)
with the prediction log's schema (`sproxxo.serving.predlog.PREDICTION_LOG_SCHEMA`) if it is absent.

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

from sproxxo.errors import EXIT_OK
from sproxxo.jobs.cli import configure_logging, run
from sproxxo.jobs.predlog import ensure_table, replay
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Replay the dead letter into the configured sink, or create the BigQuery table."""
    p = argparse.ArgumentParser(prog="python -m monitoring.predlog", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    command = sub.add_parser("replay", help="move dead-letter records into the sink")
    command.add_argument("--dead-letter", type=Path, help="default: <state>/predlog-dead-letter")
    sub.add_parser("ensure-table", help="create the BigQuery predictions table if absent")
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "ensure-table":
        print(f"{ensure_table(settings)} has the prediction log's schema")
        return EXIT_OK
    done = replay(settings, args.dead_letter)
    print(f"replayed {done.files} files, {done.records} records ({done.torn_lines} torn lines)")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
