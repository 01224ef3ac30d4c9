"""Delayed fraud labels (chargebacks, analyst verdicts) joined to the predictions they judge.

    python -m monitoring.labels ingest labels.csv [--log-dir DIR] [--labels-dir DIR]

The file (CSV or Parquet) holds `transaction_id`, `is_fraud` (or `label`) and `reported_at`.
Each label is joined to its logged prediction and appended as one Parquet file under
`<state>/labels/`; labels for transactions not in the log are counted and skipped.
`read_labels` keeps the latest report of each transaction.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pandas as pd

from monitoring.common import run_cli
from sproxxo.cli import EXIT_OK, configure_logging
from sproxxo.drift import InsufficientData
from sproxxo.errors import DataSourceError, FeatureSchemaMismatch
from sproxxo.predlog import read_log
from sproxxo.settings import get_settings

logger = logging.getLogger("monitoring.labels")

LABEL_COLUMNS: Final = ("transaction_id", "is_fraud", "reported_at")
PREDICTION_COLUMNS: Final = (
    "transaction_id",
    "logged_at",
    "model_tag",
    "fraud_probability",
    "decision",
)


def read_label_file(path: Path) -> pd.DataFrame:
    """Labels from CSV or Parquet, normalised to `LABEL_COLUMNS` (UTC `reported_at`)."""
    if not path.is_file():
        raise DataSourceError(f"label file {path} does not exist")
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"label file {path} is unreadable: {exc}") from exc
    if "is_fraud" not in raw.columns and "label" in raw.columns:
        raw = raw.rename(columns={"label": "is_fraud"})
    missing = [c for c in LABEL_COLUMNS if c not in raw.columns]
    if missing:
        raise FeatureSchemaMismatch(f"label file {path}: missing columns: {', '.join(missing)}")
    labels = raw[list(LABEL_COLUMNS)].copy()
    labels["transaction_id"] = labels["transaction_id"].astype(str)
    labels["is_fraud"] = _binary(labels["is_fraud"], path)
    try:
        labels["reported_at"] = pd.to_datetime(labels["reported_at"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise DataSourceError(f"label file {path}: reported_at is not ISO 8601: {exc}") from exc
    return labels


def _binary(values: pd.Series, path: Path) -> pd.Series:
    mapped = values.map(lambda v: {"true": 1, "false": 0, "1": 1, "0": 0}.get(str(v).lower()))
    if mapped.isna().any():
        bad = values[mapped.isna()].iloc[0]
        raise DataSourceError(f"label file {path}: is_fraud value {bad!r} is not 0/1/true/false")
    return mapped.astype("int64")


def join_predictions(labels: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Labels with their prediction's time, model, probability and decision."""
    if predictions.empty:
        raise InsufficientData("the prediction log holds no rows to join labels to")
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise FeatureSchemaMismatch(f"prediction log: missing columns: {', '.join(missing)}")
    preds = predictions[list(PREDICTION_COLUMNS)].drop_duplicates("transaction_id", keep="last")
    preds = preds.assign(
        transaction_id=preds["transaction_id"].astype(str),
        logged_at=pd.to_datetime(preds["logged_at"], utc=True, format="ISO8601"),
    )
    return labels.merge(preds, on="transaction_id", how="inner")


def store_labels(joined: pd.DataFrame, labels_dir: Path) -> Path:
    """Append a batch as one Parquet file; returns its path."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    path = labels_dir / f"labels-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
    joined.to_parquet(path, index=False)
    return path


def read_labels(labels_dir: Path) -> pd.DataFrame:
    """Every stored label, the latest report per transaction."""
    files = sorted(labels_dir.glob("labels-*.parquet")) if labels_dir.is_dir() else []
    if not files:
        raise InsufficientData(f"no labels stored under {labels_dir}: run `labels ingest` first")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = frame.sort_values("reported_at", kind="stable")
    return frame.drop_duplicates("transaction_id", keep="last").reset_index(drop=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`ingest FILE`: join labels to the log and store them."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.labels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="join a label file to the log and store it")
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--log-dir", type=Path)
    ingest.add_argument("--labels-dir", type=Path)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    labels = read_label_file(args.file)
    log_dir = args.log_dir or settings.predictions_dir
    if not log_dir.is_dir():
        raise DataSourceError(f"prediction log folder {log_dir} does not exist")
    joined = join_predictions(labels, read_log(log_dir))
    unmatched = len(labels) - len(joined)
    if joined.empty:
        raise InsufficientData(f"none of the {len(labels)} labels match a logged prediction")
    path = store_labels(joined, args.labels_dir or settings.state_dir / "labels")
    print(
        f"stored {len(joined)} labels ({int(joined['is_fraud'].sum())} fraud), "
        f"{unmatched} without a logged prediction -> {path}"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run_cli(main, None))
