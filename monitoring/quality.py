"""Live model quality per model tag and role (champion, shadow), from the delayed labels.

    python -m monitoring.quality [--since ISO] [--until ISO] \
        [--log-dir DIR | --bigquery-table P.D.T] [--labels-dir DIR | --labels-table P.D.T] \
        [--out DIR] [--textfile PATH] [--gcp-project P]

Joins the labels to the predictions logged in the window (default: the last 30 days; in
BigQuery as one SQL query when log and labels are both tables) and computes precision,
recall and expected cost of each model tag, as champion (`model_tag`) and as shadow
(`shadow_model_tag`). Writes `quality.json` and `quality.prom` (sproxxo_live_* gauges) to
--out, also to --textfile (node_exporter), pushes them to SPROXXO_PUSHGATEWAY_URL when set
and to Cloud Monitoring with --gcp-project. Exit codes: 0 ok, 8 no labelled prediction in
the window, 3 unreadable log or labels, or a refused push (monitoring/README.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sproxxo.errors import EXIT_OK
from sproxxo.jobs.cli import add_window_sources, configure_logging, run, window_sources
from sproxxo.jobs.predictions import window
from sproxxo.jobs.quality import QualityRequest, live_quality, summary_lines
from sproxxo.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_window_sources(p, default_days=30)
    p.add_argument("--out", type=Path, help="result folder (default: <reports>/quality/<until>)")
    p.add_argument("--textfile", type=Path, help="also write the metrics here (node_exporter)")
    p.add_argument("--gcp-project", default="", help="publish the metrics to Cloud Monitoring")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Compute live quality of the window and export it as metrics."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    since, until = window(args.since, args.until, default_days=30)
    source, costs = window_sources(args, settings)
    request = QualityRequest(
        source=source,
        since=since,
        until=until,
        out=args.out or settings.reports_dir / "quality" / f"{until:%Y%m%dT%H%M%SZ}",
        costs=costs,
        textfile=args.textfile,
        pushgateway_url=settings.pushgateway_url,
        gcp_project=args.gcp_project,
    )
    print(summary_lines(live_quality(request)))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
