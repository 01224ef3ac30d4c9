"""Which metric names exist, and which ones alerts and dashboards reference.

Known names come from five places: alerts.yml's recording rules, the service's collectors
(`sproxxo.adapters.prometheus`, read from the prometheus_client objects, with the sample
suffixes each type exposes), BentoML's own request metrics, the batch jobs' exported names
(`exported_metrics.txt`: drift and live quality) and the GCP log-based metrics defined
under `gcp/log_metrics/`. `referenced_metrics()` parses every
PromQL expression in alerts.yml, the Grafana dashboard and the GCP policies/dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

HERE: Final = Path(__file__).resolve().parent
ALERTS: Final = HERE / "prometheus" / "alerts.yml"
GRAFANA_DASHBOARDS: Final = HERE / "grafana" / "dashboards"
GCP: Final = HERE / "gcp"
EXPORTED: Final = HERE / "exported_metrics.txt"

BENTOML_METRICS: Final = frozenset(
    {
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
        "bentoml_service_request_duration_seconds_sum",
        "bentoml_service_request_duration_seconds_count",
        "bentoml_service_request_in_progress",
        "bentoml_service_adaptive_batch_size_bucket",
        "bentoml_service_adaptive_batch_size_sum",
        "bentoml_service_adaptive_batch_size_count",
    }
)
PROMETHEUS_BUILTINS: Final = frozenset({"up"})
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}
_KEYWORDS: Final = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_GCP_PREFIXES: Final = (
    ("custom_googleapis_com:sproxxo_", "sproxxo_"),
    ("logging_googleapis_com:user_", ""),
)


def service_metrics() -> set[str]:
    """Sample names of every collector defined in `sproxxo.adapters.prometheus`."""
    from prometheus_client.metrics import MetricWrapperBase

    from sproxxo.adapters import prometheus as metrics

    names: set[str] = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


def drift_metrics() -> set[str]:
    """Names the scheduled jobs write, not the service: the drift job's
    (monitoring/exported_metrics.txt) and the live-quality job's
    (`sproxxo.jobs.quality.LIVE_METRIC_NAMES`)."""
    from sproxxo.jobs.quality import LIVE_METRIC_NAMES

    lines = EXPORTED.read_text(encoding="utf-8").splitlines()
    drift = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    return drift | set(LIVE_METRIC_NAMES)


def log_based_metrics() -> set[str]:
    """Names of the GCP log-based metrics defined under gcp/log_metrics/."""
    files = sorted((GCP / "log_metrics").glob("*.yaml"))
    return {str(yaml.safe_load(f.read_text(encoding="utf-8"))["name"]) for f in files}


def recorded_metrics() -> set[str]:
    """Names that alerts.yml's recording rules make (e.g. sproxxo_shadow_agreement_ratio)."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return {str(rule["record"]) for group in groups for rule in group["rules"] if "record" in rule}


def known_metrics() -> set[str]:
    """Every metric name an expression may use."""
    return (
        service_metrics()
        | recorded_metrics()
        | drift_metrics()
        | log_based_metrics()
        | set(BENTOML_METRICS)
        | set(PROMETHEUS_BUILTINS)
    )


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (selectors, not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(normalise(name))
    return names


def normalise(name: str) -> str:
    """GCP's names for custom and log-based metrics back to the exported ones."""
    for prefix, replacement in _GCP_PREFIXES:
        if name.startswith(prefix):
            return replacement + name.removeprefix(prefix)
    return name


def alert_expressions() -> Iterator[str]:
    """`expr` of every Prometheus alerting or recording rule."""
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield str(rule["expr"])


def grafana_expressions() -> Iterator[str]:
    """`expr` of every Grafana panel target (rows included)."""
    for path in sorted(GRAFANA_DASHBOARDS.glob("*.json")):
        yield from _values(json.loads(path.read_text(encoding="utf-8")), "expr")


def gcp_expressions() -> Iterator[str]:
    """PromQL of every GCP alert policy and dashboard tile."""
    for path in sorted((GCP / "policies").glob("*.yaml")):
        yield from _values(yaml.safe_load(path.read_text(encoding="utf-8")), "query")
    for path in sorted(GCP.glob("dashboard*.json")):
        yield from _values(json.loads(path.read_text(encoding="utf-8")), "prometheusQuery")


def _values(node: Any, key: str) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _values(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)


def referenced_metrics() -> set[str]:
    """Every metric name used by alerts.yml, the Grafana dashboards and the GCP config."""
    names: set[str] = set()
    for expr in (*alert_expressions(), *grafana_expressions(), *gcp_expressions()):
        names |= promql_metric_names(expr)
    return names
