"""The drift job: logged predictions of a window against the model's reference sample.

Writes `drift_report.html` (Evidently, self-contained), `drift_summary.json` and `drift.prom`
(Prometheus textfile with the sproxxo_drift_* metrics named in
monitoring/exported_metrics.txt) to the output folder, and optionally publishes the metrics
to Cloud Monitoring. The statistics and thresholds are in `sproxxo.adapters.evidently`
(`DRIFT_CRITERIA`); the window's span tells it which columns the window can speak for (a
day of traffic holds one or two weekdays: `weekday` needs a week).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from sproxxo.adapters.evidently import DriftSummary, DriftThresholds, drift_report
from sproxxo.errors import InsufficientData, ModelUnavailable
from sproxxo.jobs.predictions import read_predictions
from sproxxo.ml.bundle import read_reference
from sproxxo.settings import Settings

logger = logging.getLogger(__name__)

HTML_FILE: Final = "drift_report.html"
SUMMARY_FILE: Final = "drift_summary.json"
TEXTFILE: Final = "drift.prom"


@dataclass(frozen=True)
class DriftRequest:
    """Which model, which window, where the predictions are and where reports go."""

    since: datetime
    until: datetime
    model: str = ""
    model_dir: Path | None = None
    log_dir: Path | None = None
    source: str = "file"
    all_models: bool = False
    out: Path | None = None
    textfile: Path | None = None
    gcp_project: str = ""
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def window_hours(self) -> float:
        """The span of the window in hours."""
        return (self.until - self.since).total_seconds() / 3600.0


def drift(request: DriftRequest, settings: Settings) -> tuple[DriftSummary, Path]:
    """Run the drift report of the window; returns the summary and the report folder."""
    tag, reference = load_reference(request.model, request.model_dir, settings.bentoml_home)
    current = read_predictions(
        source=request.source,
        log_dir=request.log_dir or settings.predictions_dir,
        since=request.since,
        until=request.until,
        table=settings.bigquery_predictions_table,
    )
    if tag and not request.all_models:
        current = only_model(current, tag)
    report = drift_report(
        reference, current, thresholds=request.thresholds, window_hours=request.window_hours
    )
    out = request.out or settings.reports_dir / "drift" / f"{request.until:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    report.save_html(out / HTML_FILE)
    write_summary(
        out / SUMMARY_FILE, report.summary, model=tag, since=request.since, until=request.until
    )
    version = tag.rpartition(":")[2] if tag else "unknown"
    for path in (out / TEXTFILE, request.textfile):
        if path is not None:
            write_textfile(path, report.summary, model_version=version)
    if request.gcp_project:
        from sproxxo.adapters.gcp_monitoring import publish

        publish(report.summary, project=request.gcp_project, model_version=version)
    return report.summary, out


def load_reference(
    tag: str, model_dir: Path | None, bentoml_home: Path
) -> tuple[str, pd.DataFrame]:
    """(full tag or "", reference sample) of a bundle folder, a store tag or the champion."""
    if model_dir is not None:
        if not model_dir.is_dir():
            raise ModelUnavailable(f"--model-dir {model_dir} is not a folder")
        return "", read_reference(model_dir)
    os.environ.setdefault("BENTOML_HOME", str(bentoml_home.resolve()))
    from sproxxo.adapters import bentoml_store as store

    chosen = tag or store.champion_tag()
    if not chosen:
        raise ModelUnavailable("no --model given and the store has no champion")
    full = store.full_tag(chosen)
    return full, read_reference(store.model_path(full))


def only_model(current: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Rows scored by `tag`; an empty window names the versions that were seen."""
    if current.empty or "model_tag" not in current.columns:
        return current
    kept = current[current["model_tag"] == tag].reset_index(drop=True)
    if kept.empty:
        seen = ", ".join(sorted(map(str, current["model_tag"].unique()))[:5])
        raise InsufficientData(
            f"no rows scored by {tag} in the window (seen: {seen}); "
            "pass --all-models to compare them anyway"
        )
    return kept


def write_summary(
    path: Path, summary: DriftSummary, *, model: str, since: object, until: object
) -> None:
    """The JSON summary, with the window and model it describes."""
    payload = {
        "model": model,
        "since": str(since),
        "until": str(until),
        **summary.model_dump(mode="json"),
    }
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def write_textfile(path: Path, summary: DriftSummary, *, model_version: str) -> None:
    """Prometheus textfile with the names listed in monitoring/exported_metrics.txt."""
    registry = CollectorRegistry()
    labels = ["model_version"]

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, labels, registry=registry).labels(model_version).set(value)

    gauge("sproxxo_drift_share", "Share of monitored features drifted", summary.drift_share)
    gauge(
        "sproxxo_drift_detected",
        "1 when the last drift run crossed a threshold",
        float(summary.drift_detected),
    )
    gauge(
        "sproxxo_drift_prediction_detected",
        "1 when the score or decision mix drifted",
        float(summary.prediction_drift),
    )
    gauge("sproxxo_drift_current_rows", "Rows in the window", summary.current_rows)
    gauge("sproxxo_drift_last_run_timestamp_seconds", "End of the last drift run", time.time())
    per_feature = Gauge(
        "sproxxo_drift_feature_detected",
        "1 when the feature drifted",
        [*labels, "feature"],
        registry=registry,
    )
    for column in summary.columns:
        if column.role == "feature":
            per_feature.labels(model_version, column.column).set(float(column.drifted))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def verdict(summary: DriftSummary, out: Path) -> str:
    """One line for humans and logs."""
    state = "DRIFT" if summary.drift_detected else "no drift"
    drifted = ", ".join(summary.drifted_features) or "none"
    tested = len(summary.tested_features)
    return (
        f"{state}: share={summary.drift_share:.2f} of {tested} tested features "
        f"(alert at {summary.thresholds.drift_share:g}) features=[{drifted}] "
        f"prediction_drift={summary.prediction_drift} rows={summary.current_rows} -> {out}"
    )
