"""Gauges of the scheduled jobs (not the service): a Prometheus textfile, a Pushgateway push.

A job hands over plain `GaugePoint`s; this module turns them into a private
`CollectorRegistry` (never the service's default one) and writes it as a textfile for
node_exporter's textfile collector, or PUTs it to a Pushgateway under the job's name, which
replaces every series the job pushed before (a model tag that left the window disappears).
`sproxxo.adapters.gcp_monitoring.publish_points` sends the same points to Cloud Monitoring.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from sproxxo.errors import DataSourceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GaugePoint:
    """One gauge sample: metric name, its help text, its labels and its value."""

    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def registry_of(points: Sequence[GaugePoint]) -> CollectorRegistry:
    """A fresh registry holding the points (one gauge per name; every point of a name must
    carry the same label names)."""
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for point in points:
        if point.name not in gauges:
            gauges[point.name] = Gauge(
                point.name, point.help, sorted(point.labels), registry=registry
            )
        gauge = gauges[point.name]
        (gauge.labels(**point.labels) if point.labels else gauge).set(point.value)
    return registry


def write_textfile(path: Path, points: Sequence[GaugePoint]) -> None:
    """Write the points atomically as a Prometheus text-format file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_of(points))


def push(
    url: str, points: Sequence[GaugePoint], *, job: str, timeout_seconds: float = 10.0
) -> None:
    """PUT the points to the Pushgateway at `url` as group `job`; raises DataSourceError."""
    try:
        push_to_gateway(url, job=job, registry=registry_of(points), timeout=timeout_seconds)
    except OSError as exc:  # urllib's URLError and HTTPError are OSErrors
        raise DataSourceError(f"pushgateway {url} refused the {job} metrics: {exc}") from exc
    logger.info("pushed %d gauges to %s (job %s)", len(points), url, job)
