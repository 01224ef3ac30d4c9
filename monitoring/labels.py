"""Delayed fraud labels (chargebacks, analyst verdicts) joined to the predictions they judge.

    python -m monitoring.labels ingest labels.csv [--log-dir DIR] [--labels-dir DIR]

The file (CSV or Parquet) holds `transaction_id`, `is_fraud` (or `label`) and `reported_at`.
Each label is joined to its logged prediction and appended as one Parquet file under
`<state>/labels/`; labels for transactions not in the log are counted and skipped.
`read_labels` keeps the latest report of each transaction.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sproxxo.errors import EXIT_OK
from sproxxo.jobs.cli import configure_logging, run
from sproxxo.jobs.labels import ingest
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """`ingest FILE`: join labels to the log and store them."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.labels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    command = sub.add_parser("ingest", help="join a label file to the log and store it")
    command.add_argument("file", type=Path)
    command.add_argument("--log-dir", type=Path)
    command.add_argument("--labels-dir", type=Path)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    done = ingest(
        args.file,
        log_dir=args.log_dir or settings.predictions_dir,
        labels_dir=args.labels_dir or settings.labels_dir,
    )
    print(
        f"stored {done.stored} labels ({done.frauds} fraud), "
        f"{done.unmatched} without a logged prediction -> {done.path}"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run(main))
