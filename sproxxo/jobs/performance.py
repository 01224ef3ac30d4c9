"""Model performance on the labelled part of the log, by day, with label delay.

"Flagged" means review or decline: both stop the fraud. Writes `performance.json` (overall
and per-day precision, recall, average precision and decision mix; label delay median and
p90) and Evidently's `classification_report.html`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from sproxxo.errors import InsufficientData
from sproxxo.jobs.labels import read_labels
from sproxxo.schemas import Decision

logger = logging.getLogger(__name__)

JSON_FILE: Final = "performance.json"
HTML_FILE: Final = "classification_report.html"
FLAGGED: Final = (Decision.REVIEW.value, Decision.DECLINE.value)


class Performance(BaseModel):
    """Classification quality of one slice of labelled predictions."""

    model_config = ConfigDict(frozen=True)

    rows: int
    frauds: int
    precision: float | None
    recall: float | None
    decline_precision: float | None
    decline_recall: float | None
    average_precision: float | None
    decision_share: dict[str, float]


class PerformanceReport(BaseModel):
    """The JSON the CLI writes."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    overall: Performance
    by_day: dict[str, Performance]
    label_delay_hours: dict[str, float]


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def performance(frame: pd.DataFrame) -> Performance:
    """Precision/recall of flagged and declined, AP of the probability, decision mix."""
    from sklearn.metrics import average_precision_score

    fraud = frame["is_fraud"].to_numpy() == 1
    flagged = frame["decision"].isin(FLAGGED).to_numpy()
    declined = (frame["decision"] == Decision.DECLINE.value).to_numpy()
    both_classes = 0 < fraud.sum() < len(fraud)
    mix = frame["decision"].value_counts(normalize=True)
    return Performance(
        rows=len(frame),
        frauds=int(fraud.sum()),
        precision=_ratio((flagged & fraud).sum(), flagged.sum()),
        recall=_ratio((flagged & fraud).sum(), fraud.sum()),
        decline_precision=_ratio((declined & fraud).sum(), declined.sum()),
        decline_recall=_ratio((declined & fraud).sum(), fraud.sum()),
        average_precision=(
            float(average_precision_score(fraud, frame["fraud_probability"]))
            if both_classes
            else None
        ),
        decision_share={d.value: float(mix.get(d.value, 0.0)) for d in Decision},
    )


def label_delay_hours(frame: pd.DataFrame) -> dict[str, float]:
    """Median and p90 of reported_at - logged_at, in hours."""
    hours = (frame["reported_at"] - frame["logged_at"]).dt.total_seconds() / 3600.0
    return {"median": float(np.median(hours)), "p90": float(np.quantile(hours, 0.9))}


def build_report(labelled: pd.DataFrame, since: datetime, until: datetime) -> PerformanceReport:
    """Overall and per-day performance of labelled predictions logged in [since, until)."""
    logged = pd.to_datetime(labelled["logged_at"], utc=True)
    frame = labelled[(logged >= since) & (logged < until)].assign(
        logged_at=logged, reported_at=pd.to_datetime(labelled["reported_at"], utc=True)
    )
    if frame.empty:
        raise InsufficientData(f"no labelled predictions logged in [{since}, {until})")
    days = frame["logged_at"].dt.strftime("%Y-%m-%d")
    return PerformanceReport(
        since=since,
        until=until,
        overall=performance(frame),
        by_day={day: performance(part) for day, part in frame.groupby(days)},
        label_delay_hours=label_delay_hours(frame),
    )


def report_window(
    labels_dir: Path, out: Path, *, since: datetime, until: datetime
) -> PerformanceReport:
    """Build the report of [since, until) and write its JSON and HTML into `out`."""
    from sproxxo.adapters.evidently import save_classification_html

    labelled = read_labels(labels_dir)
    report = build_report(labelled, since, until)
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_FILE).write_text(report.model_dump_json(indent=2), encoding="utf-8")
    logged = pd.to_datetime(labelled["logged_at"], utc=True)
    save_classification_html(labelled[(logged >= since) & (logged < until)], out / HTML_FILE)
    return report
