"""Model performance on the labelled part of the log, by day, with label delay.

    python -m monitoring.performance [--since ISO] [--until ISO] [--out DIR]

Writes `performance.json` (overall and per-day precision, recall, average precision and
decision mix; label delay median and p90) and `classification_report.html` (Evidently) to
--out. "Flagged" means review or decline: both stop the fraud. Exit codes: 0 ok, 8 no
labels in the window, 3 unreadable labels (monitoring/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sproxxo.errors import EXIT_OK
from sproxxo.jobs.cli import configure_logging, run
from sproxxo.jobs.performance import report_window
from sproxxo.jobs.predictions import window
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Report performance of the labelled predictions in the window."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.performance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", help="ISO start of logged_at, inclusive (default: 30 days)")
    p.add_argument("--until", help="ISO end, exclusive (default: now)")
    p.add_argument("--out", type=Path)
    p.add_argument("--labels-dir", type=Path)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    since, until = window(args.since, args.until, default_days=30)
    out = args.out or settings.reports_dir / "performance" / f"{until:%Y%m%dT%H%M%SZ}"
    labels_dir = args.labels_dir or settings.labels_dir
    report = report_window(labels_dir, out, since=since, until=until)
    print(f"{report.overall.model_dump()} label_delay_hours={report.label_delay_hours} -> {out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
