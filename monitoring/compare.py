"""Champion and challenger on the same traffic, from the shadow scores in the prediction log.

    python -m monitoring.compare --since 2026-03-01 --until 2026-03-08 \
        [--log-dir DIR | --bigquery-table P.D.T] [--labels-dir DIR | --labels-table P.D.T] \
        [--challenger TAG] [--out DIR]

Keeps the real transactions of the window that carry a shadow score (one champion /
challenger pair: --challenger, else the latest shadow), joins the delayed labels where they
exist, and writes `compare.json` (agreement matrix, decision mixes, precision, recall and
expected cost of each model on the labelled part) and `compare.html` to --out. The JSON is
the promotion gate's evidence (`python -m training.promote TAG --shadow-report PATH`).
Exit codes: 0 report written, 8 no shadow score in the window, 3 unreadable log, labels or
window (monitoring/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sproxxo.errors import EXIT_OK
from sproxxo.jobs.cli import add_window_sources, configure_logging, run, window_sources
from sproxxo.jobs.compare import CompareRequest, compare, summary_line
from sproxxo.jobs.predictions import window
from sproxxo.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_window_sources(p, default_days=7)
    p.add_argument("--challenger", default="", help="shadow model tag (default: the latest)")
    p.add_argument("--out", type=Path, help="report folder (default: <reports>/compare/<until>)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Compare champion and challenger on the window's shadowed transactions."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    since, until = window(args.since, args.until, default_days=7)
    out = args.out or settings.reports_dir / "compare" / f"{until:%Y%m%dT%H%M%SZ}"
    source, costs = window_sources(args, settings)
    report = compare(CompareRequest(source, since, until, out, args.challenger, costs))
    print(f"{summary_line(report)} -> {out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
