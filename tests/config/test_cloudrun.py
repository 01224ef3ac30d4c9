"""Cloud Run service spec and deploy script: structure, and agreement with service.py."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOUDRUN_DIR = REPO_ROOT / "deploy" / "cloudrun"
SERVICE_YAML = CLOUDRUN_DIR / "service.yaml"
DEPLOY_SH = CLOUDRUN_DIR / "deploy.sh"
ENV_PREFIX = "SPROXXO_"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """deploy/cloudrun/service.yaml, parsed."""
    return yaml.safe_load(SERVICE_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def template(spec: dict[str, Any]) -> dict[str, Any]:
    """The revision template of the service."""
    return spec["spec"]["template"]


@pytest.fixture(scope="module")
def container(template: dict[str, Any]) -> dict[str, Any]:
    """The one serving container."""
    containers = template["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's environment, by variable name."""
    return {item["name"]: item for item in container["env"]}


def import_from_repo(name: str) -> Any:
    """Import a module of this repository whether or not its root is on sys.path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO_ROOT))
        return importlib.import_module(name)


@pytest.fixture(scope="module")
def service_config() -> dict[str, Any]:
    """SERVICE_CONFIG from the repository's service.py."""
    return import_from_repo("service").SERVICE_CONFIG


def run_deploy_sh(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run deploy.sh offline (commands that need no gcloud) and capture its output."""
    clean = {k: v for k, v in os.environ.items() if k not in {"PROJECT", "REGION", "IMAGE"}}
    return subprocess.run(
        ["bash", str(DEPLOY_SH), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**clean, **(env or {})},
    )


def test_service_yaml_is_a_knative_service(spec: dict[str, Any]) -> None:
    """The spec is a serving.knative.dev/v1 Service named sproxxo-fraud."""
    assert spec["apiVersion"] == "serving.knative.dev/v1"
    assert spec["kind"] == "Service"
    assert spec["metadata"]["name"] == "sproxxo-fraud"


def test_service_yaml_keeps_warm_instances(template: dict[str, Any]) -> None:
    """At least one instance is always up, and the ceiling is above the floor."""
    annotations = template["metadata"]["annotations"]
    min_scale = int(annotations["autoscaling.knative.dev/minScale"])
    max_scale = int(annotations["autoscaling.knative.dev/maxScale"])
    assert min_scale >= 1
    assert max_scale >= min_scale


def test_service_yaml_allocates_cpu_always(template: dict[str, Any]) -> None:
    """CPU is not throttled between requests and is boosted at start-up."""
    annotations = template["metadata"]["annotations"]
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"
    assert annotations["run.googleapis.com/startup-cpu-boost"] == "true"


def test_service_yaml_serves_on_port_3000(container: dict[str, Any]) -> None:
    """The container port is BentoML's 3000."""
    assert [p["containerPort"] for p in container["ports"]] == [3000]


@pytest.mark.parametrize(
    ("probe", "path"), [("startupProbe", "/readyz"), ("livenessProbe", "/livez")]
)
def test_service_yaml_probes_hit_health_routes(
    container: dict[str, Any], probe: str, path: str
) -> None:
    """Start-up waits on readiness (model loaded); liveness only asks if the process is up."""
    http_get = container[probe]["httpGet"]
    assert http_get["path"] == path
    assert http_get.get("port", 3000) == 3000


def test_service_yaml_startup_probe_fits_cloud_run_limit(container: dict[str, Any]) -> None:
    """The start-up probe's total budget stays within Cloud Run's 240 s maximum."""
    probe = container["startupProbe"]
    budget = (
        probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]
    )
    assert budget <= 240
    assert probe.get("timeoutSeconds", 1) <= probe["periodSeconds"]


def test_service_yaml_limits_resources(container: dict[str, Any]) -> None:
    """The container gets 2 vCPU and 2 GiB."""
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}


def test_service_yaml_runs_one_worker_per_vcpu_within_memory(
    container: dict[str, Any], env: dict[str, dict[str, Any]]
) -> None:
    """Two workers, one per vCPU; the memory limit covers each at its 500 MB ceiling plus
    the `bentoml serve` parent (measured ~175 MB, README performance section)."""
    workers = int(env["SPROXXO_WORKERS"]["value"])
    limits = container["resources"]["limits"]
    assert workers == int(limits["cpu"]) == 2
    assert limits["memory"].endswith("Gi")
    assert workers * 500 + 256 <= int(limits["memory"].removesuffix("Gi")) * 1024


def test_service_yaml_admin_token_comes_from_secret_manager(env: dict[str, dict[str, Any]]) -> None:
    """The admin token is a Secret Manager reference, never a literal value."""
    token = env["SPROXXO_ADMIN_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {"name": "sproxxo-admin-token", "key": "latest"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SPROXXO_ENV", "production"),
        ("SPROXXO_PREDLOG_SINK", "bigquery"),
        ("OMP_NUM_THREADS", "1"),
    ],
)
def test_service_yaml_sets_production_env(
    env: dict[str, dict[str, Any]], name: str, value: str
) -> None:
    """Production mode, the BigQuery prediction log and one OpenMP thread per worker."""
    assert env[name]["value"] == value


def test_service_yaml_names_a_predictions_table(env: dict[str, dict[str, Any]]) -> None:
    """The BigQuery sink has a fully qualified table to write to."""
    assert env["SPROXXO_BIGQUERY_PREDICTIONS_TABLE"]["value"].count(".") == 2


def test_service_yaml_env_is_valid_settings(env: dict[str, dict[str, Any]]) -> None:
    """Every SPROXXO_* variable is a Settings field, and the values pass its validation."""
    fields = {
        name.removeprefix(ENV_PREFIX).lower(): item.get("value", "secret-from-secret-manager")
        for name, item in env.items()
        if name.startswith(ENV_PREFIX)
    }
    settings_cls = import_from_repo("sproxxo.settings").Settings
    unknown = set(fields) - set(settings_cls.model_fields)
    assert not unknown, f"not Settings fields: {sorted(unknown)}"
    try:
        settings_cls(_env_file=None, **fields)
    except ValidationError as exc:
        pytest.fail(f"service.yaml environment fails Settings validation: {exc}")


def test_service_yaml_runs_as_a_dedicated_service_account(template: dict[str, Any]) -> None:
    """Revisions run as their own service account, not the default compute one."""
    account = template["spec"]["serviceAccountName"]
    assert account.startswith("sproxxo-fraud@")
    assert "compute@developer" not in account


def test_service_yaml_image_is_the_artifact_registry_placeholder(container: dict[str, Any]) -> None:
    """The image is the Artifact Registry placeholder that deploy.sh fills in."""
    assert container["image"] == "REGION-docker.pkg.dev/PROJECT/sproxxo/sproxxo-fraud:TAG"


def test_service_yaml_concurrency_matches_service(
    template: dict[str, Any], service_config: dict[str, Any]
) -> None:
    """Cloud Run sends an instance as many requests as one BentoML worker admits, no more
    (the service sets max_concurrency = per-instance budget x workers; BentoML divides it)."""
    per_worker = service_config["traffic"]["max_concurrency"] // service_config["workers"]
    assert template["spec"]["containerConcurrency"] == per_worker


def test_service_yaml_timeout_covers_service_timeout(
    template: dict[str, Any], service_config: dict[str, Any]
) -> None:
    """Cloud Run does not cut a request off before the service's own timeout."""
    timeout = template["spec"]["timeoutSeconds"]
    assert isinstance(timeout, int)
    assert timeout >= service_config["traffic"]["timeout"]


def test_service_yaml_cpu_covers_service_workers(
    container: dict[str, Any], service_config: dict[str, Any]
) -> None:
    """Each BentoML worker gets at least one vCPU of the instance's limit."""
    workers = service_config["workers"]
    if isinstance(workers, int):
        assert workers <= int(container["resources"]["limits"]["cpu"])


def test_service_yaml_probes_and_port_match_service(
    container: dict[str, Any], service_config: dict[str, Any]
) -> None:
    """The probes and the port are the ones service.py configures, when it names them."""
    endpoints = service_config.get("endpoints", {})
    if "readyz" in endpoints:
        assert container["startupProbe"]["httpGet"]["path"] == endpoints["readyz"]
    if "livez" in endpoints:
        assert container["livenessProbe"]["httpGet"]["path"] == endpoints["livez"]
    port = service_config.get("http", {}).get("port", 3000)
    assert container["ports"][0]["containerPort"] == port


def test_deploy_sh_parses() -> None:
    """deploy.sh is valid bash."""
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_deploy_sh_is_strict_and_executable() -> None:
    """deploy.sh stops at the first error and can be run directly."""
    text = DEPLOY_SH.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(DEPLOY_SH, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_deploy_sh_passes_shellcheck() -> None:
    """shellcheck finds nothing in deploy.sh."""
    result = subprocess.run(
        ["shellcheck", str(DEPLOY_SH)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    "args",
    [(), ("current",), ("-p", "proj", "current"), ("-p", "proj", "-r", "europe-west1", "render")],
    ids=["no-command", "no-project", "no-region", "render-without-image"],
)
def test_deploy_sh_prints_usage_on_missing_args(args: tuple[str, ...]) -> None:
    """Without its required arguments deploy.sh prints usage and exits 2."""
    result = run_deploy_sh(*args)
    assert result.returncode == 2
    assert "Usage: deploy.sh" in result.stderr


def test_deploy_sh_render_fills_placeholders() -> None:
    """`render` puts the project, region and image into service.yaml."""
    image = "europe-west1-docker.pkg.dev/acme-fraud/sproxxo/sproxxo-fraud@sha256:" + "a" * 64
    result = run_deploy_sh(
        "render", env={"PROJECT": "acme-fraud", "REGION": "europe-west1", "IMAGE": image}
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    spec = rendered["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == image
    assert spec["serviceAccountName"] == "sproxxo-fraud@acme-fraud.iam.gserviceaccount.com"
    assert rendered["metadata"]["labels"]["cloud.googleapis.com/location"] == "europe-west1"
    assert not re.search(r"\b(PROJECT|REGION|TAG)\b", result.stdout)
