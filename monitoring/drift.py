"""Drift report: logged predictions of a time window against the model's reference sample.

    python -m monitoring.drift --model sproxxo-fraud:abc --since 2026-03-01 --until 2026-03-02 \
        --out reports/drift

Writes `drift_report.html` (Evidently, self-contained), `drift_summary.json` and `drift.prom`
(Prometheus textfile with the sproxxo_drift_* metrics) to --out. A column drifts when its
test is significant (--p-value) and its effect size reaches the column's calibrated threshold
(DRIFT_CRITERIA in sproxxo/adapters/evidently.py; card attributes once per card). Exit
codes: 0 no drift, 7 drift, 8 empty or too small window, 3 unreadable data or missing
columns, 4 no model or no reference sample (monitoring/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sproxxo.adapters.evidently import DriftThresholds
from sproxxo.errors import EXIT_DRIFT, EXIT_OK
from sproxxo.jobs.cli import configure_logging, run
from sproxxo.jobs.drift import DriftRequest, drift, verdict
from sproxxo.jobs.predictions import window
from sproxxo.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.drift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", default="", help="store tag (default: the champion)")
    model.add_argument("--model-dir", type=Path, help="a bundle folder instead of a store tag")
    p.add_argument("--since", help="ISO start, inclusive (default: --until minus 24h)")
    p.add_argument("--until", help="ISO end, exclusive (default: now)")
    p.add_argument("--out", type=Path, help="report folder (default: <reports>/drift/<until>)")
    p.add_argument("--log-dir", type=Path, help="local prediction log (default: settings)")
    p.add_argument("--source", choices=("file", "bigquery"), default="file")
    p.add_argument(
        "--all-models", action="store_true", help="keep rows scored by other model versions too"
    )
    p.add_argument("--textfile", type=Path, help="also write the metrics here (node_exporter)")
    p.add_argument("--gcp-project", default="", help="publish the metrics to Cloud Monitoring")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 on drift (scheduled jobs: the metrics carry the result)",
    )
    defaults = DriftThresholds()
    p.add_argument(
        "--p-value",
        type=float,
        default=defaults.column_p_value,
        help="significance a column's test needs (its effect size must also reach the "
        "column's threshold)",
    )
    p.add_argument(
        "--drift-share",
        type=float,
        default=defaults.drift_share,
        help="share of the tested features that must drift to flag the window",
    )
    p.add_argument("--min-rows", type=int, default=defaults.min_rows)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the window with the reference, write the reports, exit 7 on drift."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    since, until = window(args.since, args.until)
    thresholds = DriftThresholds(
        column_p_value=args.p_value, drift_share=args.drift_share, min_rows=args.min_rows
    )
    request = DriftRequest(
        since=since,
        until=until,
        model=args.model,
        model_dir=args.model_dir,
        log_dir=args.log_dir,
        source=args.source,
        all_models=args.all_models,
        out=args.out,
        textfile=args.textfile,
        gcp_project=args.gcp_project,
        thresholds=thresholds,
    )
    summary, out = drift(request, settings)
    print(verdict(summary, out))
    return EXIT_DRIFT if summary.drift_detected and not args.report_only else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
