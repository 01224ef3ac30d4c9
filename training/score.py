"""Re-score transactions in bulk with a stored model, with the service's own answers.

    python -m training.score --model sproxxo-fraud:latest --source file --path day.parquet \\
        --history week-before.parquet --out .sproxxo/rescored/day.parquet
    python -m training.score --model TAG --source bigquery --table p.d.tx \\
        --since 2026-01-01 --until 2026-04-01 --history-days 7 --out bq://p.d.rescored_q1

Prints progress on stderr and a JSON summary (decision mix, score quantiles, rows/s).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sproxxo.jobs.cli import add_source_args, configure_logging, data_spec, run
from sproxxo.jobs.rescore import rescore
from sproxxo.settings import get_settings


def _progress(done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds else 0.0
    print(f"\rscored {done:,}/{total:,} rows ({rate:,.0f} rows/s)", end="", file=sys.stderr)
    if done == total:
        print(file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Score the data, write the answers, print the summary JSON."""
    p = argparse.ArgumentParser(prog="python -m training.score", description=__doc__)
    p.add_argument("--model", required=True, help="model tag, version or 'latest'")
    p.add_argument(
        "--out", required=True, help="answers: .parquet or .csv, or bq://project.dataset.table"
    )
    p.add_argument(
        "--replace", action="store_true", help="overwrite a BigQuery table that holds rows"
    )
    p.add_argument(
        "--no-explain", action="store_true", help="generic model reason codes (4x faster)"
    )
    add_source_args(p, rows=50_000, seed=2024)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    spec, explain = data_spec(args), not args.no_explain
    summary = rescore(
        args.model,
        spec,
        args.out,
        settings,
        progress=_progress,
        explain=explain,
        replace=args.replace,
    )
    print(json.dumps({"model": args.model, "out": str(args.out), **summary.as_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
