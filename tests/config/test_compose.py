"""docker-compose.yml: pinned images, mounts that exist, distinct ports, wiring between services."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = REPO_ROOT / "monitoring" / "grafana" / "provisioning"
LOCAL_IMAGE_SERVICE = "fraud-api"
ENV_PREFIX = "SPROXXO_"


def load_yaml(path: Path) -> Any:
    """Parse one YAML file with the safe loader."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def image_tag(image: str) -> str:
    """The tag of an image reference ('' when it has none), ignoring a registry port."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.partition(":")[2]


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths a service bind-mounts (named volumes are left out)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source = volume["source"] if volume.get("type") == "bind" else ""
        else:
            source = volume.split(":", 1)[0]
        if source.startswith((".", "/", "~")):
            sources.append(source)
    return sources


def host_ports(service: dict[str, Any]) -> list[str]:
    """Host-side ports a service publishes."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(str(port["published"]))
        else:
            parts = str(port).split(":")
            ports.append(parts[-2] if len(parts) >= 2 else parts[0])
    return ports


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml."""
    return load_yaml(COMPOSE_FILE)["services"]


def test_compose_has_the_developer_stack(services: dict[str, dict[str, Any]]) -> None:
    """API, MLflow, Prometheus, Grafana and Jupyter are all defined."""
    assert set(services) == {"fraud-api", "mlflow", "prometheus", "grafana", "jupyter"}


def test_compose_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Every pulled image has an explicit tag other than latest."""
    for name, service in services.items():
        if name == LOCAL_IMAGE_SERVICE:
            continue
        tag = image_tag(service["image"])
        assert tag, f"{name}: image {service['image']} has no tag"
        assert tag != "latest", f"{name}: image {service['image']} is not pinned"


def test_compose_fraud_api_uses_the_local_build(services: dict[str, dict[str, Any]]) -> None:
    """The API runs the image `make containerize` builds and is never pulled."""
    api = services[LOCAL_IMAGE_SERVICE]
    assert api["image"] == "sproxxo-fraud:latest"
    assert api.get("pull_policy") == "never"
    assert "3000" in host_ports(api)


@pytest.mark.parametrize(
    "service_name", ["fraud-api", "mlflow", "prometheus", "grafana", "jupyter"]
)
def test_compose_bind_mounts_exist(services: dict[str, dict[str, Any]], service_name: str) -> None:
    """Every host path a service mounts exists in the repository."""
    for source in bind_sources(services[service_name]):
        assert (REPO_ROOT / source).resolve().exists(), f"{service_name}: missing {source}"


def test_compose_host_ports_are_distinct(services: dict[str, dict[str, Any]]) -> None:
    """No two services publish the same host port."""
    published = [port for service in services.values() for port in host_ports(service)]
    assert len(published) == len(set(published)), published


def test_compose_api_env_is_valid_settings(services: dict[str, dict[str, Any]]) -> None:
    """The API's SPROXXO_* variables are Settings fields and pass its validation."""
    environment = services[LOCAL_IMAGE_SERVICE]["environment"]
    fields = {
        name.removeprefix(ENV_PREFIX).lower(): str(value)
        for name, value in environment.items()
        if name.startswith(ENV_PREFIX)
    }
    fields["admin_token"] = "compose-test-token"  # the file interpolates it from the shell
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO_ROOT))
        settings_cls = importlib.import_module("sproxxo.settings").Settings
    unknown = set(fields) - set(settings_cls.model_fields)
    assert not unknown, f"not Settings fields: {sorted(unknown)}"
    try:
        settings_cls(_env_file=None, **fields)
    except ValidationError as exc:
        pytest.fail(f"compose environment fails Settings validation: {exc}")


def test_compose_mlflow_is_light(services: dict[str, dict[str, Any]]) -> None:
    """MLflow keeps its runs in sqlite on a volume and starts a single worker."""
    command = " ".join(services["mlflow"]["command"])
    assert "--workers=1" in command or "--workers 1" in command
    assert "sqlite:///" in command
    assert any(str(v).startswith("mlflow-data:") for v in services["mlflow"]["volumes"])


def test_compose_prometheus_mounts_config_and_rules(services: dict[str, dict[str, Any]]) -> None:
    """Prometheus loads the repository's scrape config and alert rules."""
    sources = bind_sources(services["prometheus"])
    assert "./monitoring/prometheus/prometheus.yml" in sources
    assert "./monitoring/prometheus/alerts.yml" in sources


def test_compose_grafana_is_provisioned(services: dict[str, dict[str, Any]]) -> None:
    """Grafana gets its data sources and dashboards from the repository."""
    sources = bind_sources(services["grafana"])
    assert "./monitoring/grafana/provisioning" in sources
    assert "./monitoring/grafana/dashboards" in sources


def test_prometheus_scrapes_fraud_api() -> None:
    """The scrape config collects fraud-api:3000/metrics."""
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = [
        job
        for job in config["scrape_configs"]
        if any("fraud-api:3000" in sc.get("targets", []) for sc in job.get("static_configs", []))
    ]
    assert jobs, "no scrape job targets fraud-api:3000"
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)


def test_prometheus_loads_the_alert_rules() -> None:
    """The mounted alerts.yml is listed as a rule file."""
    rule_files = load_yaml(PROMETHEUS_CONFIG).get("rule_files", [])
    assert any(Path(rule).name == "alerts.yml" for rule in rule_files)


def test_grafana_datasource_points_at_prometheus() -> None:
    """A provisioned Prometheus data source reaches the compose prometheus service."""
    datasources = [
        source
        for path in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.y*ml"))
        for source in load_yaml(path).get("datasources", [])
    ]
    assert any(
        s["type"] == "prometheus" and s["url"].rstrip("/") == "http://prometheus:9090"
        for s in datasources
    )


def test_grafana_dashboard_provider_reads_mounted_folder() -> None:
    """The dashboard provider loads JSON from where compose mounts monitoring/grafana/dashboards."""
    providers = [
        provider
        for path in sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
        for provider in load_yaml(path).get("providers", [])
    ]
    assert any(p["options"]["path"] == "/var/lib/grafana/dashboards" for p in providers)
