"""Every metric referenced by alerts and dashboards exists; the config files parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monitoring import metrics_catalog
from monitoring.metrics_catalog import known_metrics, promql_metric_names, referenced_metrics

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def test_referenced_metrics_are_all_known() -> None:
    """Alerts, Grafana and GCP reference only service, BentoML or drift-job metrics."""
    assert referenced_metrics() - known_metrics() == set()


def test_referenced_metrics_cover_the_key_signals() -> None:
    """The alert and dashboard set watches latency, decisions, the log, drift and the model."""
    assert {
        "bentoml_service_request_duration_seconds_bucket",
        "sproxxo_predictions_total",
        "sproxxo_predlog_dropped_total",
        "sproxxo_drift_detected",
        "sproxxo_model_loaded",
        "sproxxo_batch_size_sum",
    } <= referenced_metrics()


def test_service_metrics_read_from_sproxxo_metrics() -> None:
    """Service names come from the collectors, with their sample suffixes."""
    names = metrics_catalog.service_metrics()
    assert {
        "sproxxo_predictions_total",
        "sproxxo_fraud_probability_bucket",
        "sproxxo_model_loaded",
    } <= names
    assert "sproxxo_predictions" not in names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (le) (rate(a_bucket{x="y"}[5m]))', {"a_bucket"}),
        ("time() - max(b) > 2 * 86400", {"b"}),
        ('absent(c{job="fraud-api"}) or up == 0', {"c", "up"}),
        ("x / scalar(sum(y)) > 1e3 + 0.01", {"x", "y"}),
        ("max(custom_googleapis_com:sproxxo_drift_share)", {"sproxxo_drift_share"}),
        ("rate(logging_googleapis_com:user_foo[5m])", {"foo"}),
        ("sum without (instance) (d) unless on (job) e", {"d", "e"}),
    ],
)
def test_promql_metric_names_extracts_selectors(expr: str, expected: set[str]) -> None:
    """Functions, labels, durations, numbers and keywords are not metric names."""
    assert promql_metric_names(expr) == expected


def test_grafana_dashboard_targets_the_provisioned_datasource() -> None:
    """Every panel uses the datasource uid that provisioning defines."""
    datasources = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources}
    dashboard = json.loads((MONITORING / "grafana/dashboards/sproxxo.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    assert {p["datasource"]["uid"] for p in panels} <= uids
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.parametrize(
    "path", sorted((MONITORING / "gcp" / "policies").glob("*.yaml")), ids=lambda p: p.stem
)
def test_gcp_policy_has_a_promql_condition(path: Path) -> None:
    """Each Cloud Monitoring policy has a name, documentation and a PromQL condition."""
    policy = yaml.safe_load(path.read_text())
    assert policy["displayName"]
    assert policy["documentation"]["content"]
    (condition,) = policy["conditions"]
    assert condition["conditionPrometheusQueryLanguage"]["query"]
    assert condition["conditionPrometheusQueryLanguage"]["duration"].endswith("s")


def test_gcp_drift_job_runs_the_drift_module_with_report_only() -> None:
    """The Cloud Run job calls monitoring.drift, publishes metrics and does not fail on drift."""
    job = yaml.safe_load((MONITORING / "gcp" / "drift-job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "monitoring.drift"]
    assert {"--report-only", "--source=bigquery"} <= set(container["args"])
    assert any(a.startswith("--gcp-project=") for a in container["args"])
