"""What every command-line shell shares: logging set-up and the exit code of an error.

A shell's `main` parses its arguments and calls one job; `run` turns the project's errors
into a one-line message and the exit code their type carries (`sproxxo.errors`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sproxxo.errors import SproxxoError
from sproxxo.jobs.data import SOURCES, DataSpec
from sproxxo.policy import CostModel
from sproxxo.settings import Settings

if TYPE_CHECKING:
    from sproxxo.jobs.quality import LogSource

Main = Callable[[Sequence[str] | None], int]


def configure_logging(level: str = "INFO") -> None:
    """Plain progress logs on stderr for CLIs (services configure their own)."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run(main: Main, argv: Sequence[str] | None = None) -> int:
    """Run a CLI main; an expected failure prints one line and exits with its type's code."""
    try:
        return main(argv)
    except SproxxoError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return exc.exit_code


def add_source_args(p: argparse.ArgumentParser, *, rows: int = 200_000, seed: int = 42) -> None:
    """Options shared by every command that reads a data source."""
    p.add_argument("--source", choices=SOURCES, default="synthetic")
    p.add_argument("--path", help="CSV/Parquet file for --source file")
    p.add_argument("--rows", type=int, default=rows, help="synthetic rows")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--table", help="BigQuery table project.dataset.table")
    p.add_argument("--project", help="BigQuery billing project")
    p.add_argument("--since", help="start (inclusive), ISO date, BigQuery only")
    p.add_argument("--until", help="end (exclusive), ISO date, BigQuery only")
    p.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="PATH",
        help="older file(s), same formats as --path: they only warm the cards' history "
        "(neither fitted nor scored); repeatable",
    )
    p.add_argument(
        "--history-days",
        type=float,
        default=0.0,
        help="BigQuery: days before --since that only warm the cards' history",
    )


def data_spec(args: argparse.Namespace) -> DataSpec:
    """The data a parsed command line points at."""
    return DataSpec(
        source=args.source,
        path=args.path,
        rows=args.rows,
        seed=args.seed,
        table=args.table,
        project=args.project,
        since=args.since,
        until=args.until,
        history=tuple(args.history),
        history_days=args.history_days,
    )


def add_window_sources(p: argparse.ArgumentParser, *, default_days: int) -> None:
    """The options of the jobs that read a window of the prediction log with its labels
    (`monitoring.compare`, `monitoring.quality`): --since/--until, a file or BigQuery log,
    a label folder or BigQuery labels table, and the costs that price the decisions."""
    p.add_argument(
        "--since", help=f"ISO start of logged_at, inclusive (default: {default_days} days)"
    )
    p.add_argument("--until", help="ISO end, exclusive (default: now)")
    log = p.add_mutually_exclusive_group()
    log.add_argument("--log-dir", type=Path, help="local prediction log (default: settings)")
    log.add_argument("--bigquery-table", default="", help="BigQuery prediction log P.D.T")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--labels-dir", type=Path, help="stored labels (default: settings)")
    labels.add_argument(
        "--labels-table", default="", help="BigQuery labels table (default: settings)"
    )
    p.add_argument("--review-cost", type=float, default=CostModel().review_cost)
    p.add_argument("--false-decline-cost", type=float, default=CostModel().false_decline_cost)


def window_sources(args: argparse.Namespace, settings: Settings) -> tuple[LogSource, CostModel]:
    """Where `add_window_sources`' options point: the log and labels to read, the costs.
    A BigQuery log takes its labels from BigQuery too, unless --labels-dir says otherwise."""
    from sproxxo.jobs.quality import LogSource  # pandas: only the jobs that read the log

    from_bigquery = args.bigquery_table and not args.labels_dir
    source = LogSource(
        log_dir=args.log_dir or settings.predictions_dir,
        labels_dir=args.labels_dir or settings.labels_dir,
        table=args.bigquery_table,
        labels_table=args.labels_table or (settings.bigquery_labels_table if from_bigquery else ""),
    )
    costs = CostModel(review_cost=args.review_cost, false_decline_cost=args.false_decline_cost)
    return source, costs
