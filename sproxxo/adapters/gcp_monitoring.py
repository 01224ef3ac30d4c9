"""Publish the scheduled jobs' gauges as Cloud Monitoring custom metrics (the POST itself is
not covered by tests; the time series it sends are).

Names mirror the Prometheus ones (monitoring/exported_metrics.txt, `sproxxo.jobs.quality`):
`sproxxo_drift_share` becomes `custom.googleapis.com/sproxxo/drift_share`, which Managed
Service for Prometheus exposes to PromQL as `custom_googleapis_com:sproxxo_drift_share`.
Uses google-auth (already a dependency of google-cloud-bigquery) and the REST API, so no
extra package is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sproxxo.adapters.evidently import DriftSummary
from sproxxo.adapters.job_metrics import GaugePoint
from sproxxo.errors import DataSourceError

logger = logging.getLogger(__name__)

API: Final = "https://monitoring.googleapis.com/v3/projects/{project}/timeSeries"
PREFIX: Final = "custom.googleapis.com/sproxxo/"


def custom_metric_type(name: str) -> str:
    """`sproxxo_drift_share` -> `custom.googleapis.com/sproxxo/drift_share`."""
    return PREFIX + name.removeprefix("sproxxo_")


def time_series(summary: DriftSummary, *, model_version: str) -> list[dict[str, Any]]:
    """The gauge points of one drift run (Cloud Monitoring `TimeSeries` JSON)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    values = {
        "sproxxo_drift_share": summary.drift_share,
        "sproxxo_drift_detected": float(summary.drift_detected),
        "sproxxo_drift_prediction_detected": float(summary.prediction_drift),
        "sproxxo_drift_current_rows": float(summary.current_rows),
    }
    return [
        {
            "metric": {
                "type": custom_metric_type(name),
                "labels": {"model_version": model_version},
            },
            "resource": {"type": "global", "labels": {}},
            "metricKind": "GAUGE",
            "valueType": "DOUBLE",
            "points": [{"interval": {"endTime": now}, "value": {"doubleValue": value}}],
        }
        for name, value in values.items()
    ]


def publish(summary: DriftSummary, *, project: str, model_version: str) -> None:
    """POST the points with Application Default Credentials; raises DataSourceError."""
    _post(time_series(summary, model_version=model_version), project=project, what="drift")


def points_time_series(points: Sequence[GaugePoint]) -> list[dict[str, Any]]:
    """Gauge points of a scheduled job as Cloud Monitoring `TimeSeries` JSON (labels kept)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        {
            "metric": {"type": custom_metric_type(point.name), "labels": dict(point.labels)},
            "resource": {"type": "global", "labels": {}},
            "metricKind": "GAUGE",
            "valueType": "DOUBLE",
            "points": [{"interval": {"endTime": now}, "value": {"doubleValue": point.value}}],
        }
        for point in points
    ]


def publish_points(points: Sequence[GaugePoint], *, project: str, what: str) -> None:
    """POST a job's gauge points (`what` names the job in errors); raises DataSourceError."""
    _post(points_time_series(points), project=project, what=what)


def _post(series: list[dict[str, Any]], *, project: str, what: str) -> None:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/monitoring.write"]
    )
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    # Cloud Monitoring takes at most 200 time series per request.
    for start in range(0, len(series), 200):
        body = {"timeSeries": series[start : start + 200]}
        response = session.post(API.format(project=project), json=body, timeout=30)
        if response.status_code >= 300:
            raise DataSourceError(
                f"cloud monitoring refused the {what} metrics: {response.status_code} "
                f"{response.text[:300]}"
            )
    logger.info("published %d %s metrics to project %s", len(series), what, project)
