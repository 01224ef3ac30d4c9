"""Publish a drift summary as Cloud Monitoring custom metrics (not covered by tests).

Names mirror monitoring/exported_metrics.txt: `sproxxo_drift_share` becomes
`custom.googleapis.com/sproxxo/drift_share`, which Managed Service for Prometheus exposes to
PromQL as `custom_googleapis_com:sproxxo_drift_share`. Uses google-auth (already a dependency
of google-cloud-bigquery) and the REST API, so no extra package is needed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from sproxxo.adapters.evidently import DriftSummary
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
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/monitoring.write"]
    )
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    body = {"timeSeries": time_series(summary, model_version=model_version)}
    response = session.post(API.format(project=project), json=body, timeout=30)
    if response.status_code >= 300:
        raise DataSourceError(
            f"cloud monitoring refused the drift metrics: {response.status_code} "
            f"{response.text[:300]}"
        )
    logger.info("published %d drift metrics to project %s", len(body["timeSeries"]), project)
