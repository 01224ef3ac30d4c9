"""Delayed fraud labels (chargebacks, analyst verdicts) joined to the predictions they judge.

A label file (CSV or Parquet) holds `transaction_id`, `is_fraud` (or `label`) and
`reported_at`. Each label is joined to its logged prediction and appended as one Parquet file
under `<state>/labels/`; labels for transactions not in the log are counted and skipped.
`read_labels` keeps the latest report of each transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pandas as pd

from sproxxo.adapters.logfiles import read_log
from sproxxo.errors import DataSourceError, FeatureSchemaMismatch, InsufficientData

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Ingested:
    """What one label file added."""

    stored: int
    frauds: int
    unmatched: int
    path: Path


def ingest(label_file: Path, *, log_dir: Path, labels_dir: Path) -> Ingested:
    """Join a label file to the prediction log and store the matched labels."""
    labels = read_label_file(label_file)
    if not log_dir.is_dir():
        raise DataSourceError(f"prediction log folder {log_dir} does not exist")
    joined = join_predictions(labels, read_log(log_dir))
    if joined.empty:
        raise InsufficientData(f"none of the {len(labels)} labels match a logged prediction")
    path = store_labels(joined, labels_dir)
    return Ingested(len(joined), int(joined["is_fraud"].sum()), len(labels) - len(joined), path)
