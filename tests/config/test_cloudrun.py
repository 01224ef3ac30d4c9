"""Cloud Run service spec and deploy script: structure, and agreement with service.py."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from sproxxo.serving.guard import SYNTHETIC_HEADER
from tests.config.http_recorder import Recorder

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOUDRUN_DIR = REPO_ROOT / "deploy" / "cloudrun"
SERVICE_YAML = CLOUDRUN_DIR / "service.yaml"
DEPLOY_SH = CLOUDRUN_DIR / "deploy.sh"
ENV_PREFIX = "SPROXXO_"
IMAGE = "europe-west1-docker.pkg.dev/acme-fraud/sproxxo/sproxxo-fraud@sha256:" + "a" * 64
OFFLINE = {"PROJECT": "acme-fraud", "REGION": "europe-west1", "IMAGE": IMAGE}
#: Variable names that say they hold a credential or a key: never a literal in service.yaml.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD")


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
    """The configuration the repository's service.py gives BentoML."""
    return dict(import_from_repo("service").FraudScorer.config)


def run_deploy_sh(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run deploy.sh offline (commands that need no gcloud) and capture its output."""
    ours = {"PROJECT", "REGION", "IMAGE", "ENVIRONMENT", "SERVICE", "SMOKE_ID_TOKEN"}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
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
    """Every SPROXXO_* variable is a Settings field, and the values pass its (production)
    validation, with each Secret Manager reference standing for a long secret."""
    fields = {
        name.removeprefix(ENV_PREFIX).lower(): item.get("value", "from-secret-manager-" * 3)
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
    assert not re.search(r"\b(PROJECT|REGION|ENVIRONMENT|TAG)\b", result.stdout)


def render(*args: str) -> dict[str, Any]:
    """service.yaml as `deploy.sh [args] render` fills it in, parsed."""
    result = run_deploy_sh(*args, "render", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def audiences(rendered: dict[str, Any]) -> list[str]:
    """The custom audiences of a rendered service."""
    audience: list[str] = json.loads(
        rendered["metadata"]["annotations"]["run.googleapis.com/custom-audiences"]
    )
    return audience


def test_service_yaml_ingress_is_internal_and_load_balancer(spec: dict[str, Any]) -> None:
    """Only the VPC and the external Application Load Balancer reach the service; its
    run.app URLs refuse the internet."""
    ingress = spec["metadata"]["annotations"]["run.googleapis.com/ingress"]
    assert ingress == "internal-and-cloud-load-balancing"


def test_service_yaml_audience_is_per_environment(spec: dict[str, Any]) -> None:
    """The one custom audience is the ENVIRONMENT placeholder, filled in by deploy.sh."""
    assert audiences(spec) == ["sproxxo-fraud-ENVIRONMENT"]


@pytest.mark.parametrize(
    ("args", "service", "audience"),
    [
        ((), "sproxxo-fraud", "sproxxo-fraud-production"),
        (("-e", "staging"), "sproxxo-fraud-staging", "sproxxo-fraud-staging"),
        (("-e", "canary"), "sproxxo-fraud-canary", "sproxxo-fraud-canary"),
        (("-e", "canary", "-s", "fraud-canary-2"), "fraud-canary-2", "sproxxo-fraud-canary"),
    ],
    ids=["production-default", "staging", "canary", "canary-named"],
)
def test_deploy_sh_render_names_service_account_and_audience_per_environment(
    args: tuple[str, ...], service: str, audience: str
) -> None:
    """Each environment gets its own service, runtime account and token audience, so a
    token or an account of one environment is no use in another."""
    rendered = render(*args)
    assert rendered["metadata"]["name"] == service
    account = rendered["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == f"{service}@acme-fraud.iam.gserviceaccount.com"
    assert audiences(rendered) == [audience]


def test_deploy_sh_render_canary_flavour() -> None:
    """The canary is reachable from CI runners (IAM only) and idles at zero instances;
    production and every other environment keep the internal ingress and warm instances."""
    for args, ingress, min_scale in [
        (("-e", "canary"), "all", "0"),
        ((), "internal-and-cloud-load-balancing", "2"),
        (("-e", "staging"), "internal-and-cloud-load-balancing", "2"),
    ]:
        rendered = render(*args)
        assert rendered["metadata"]["annotations"]["run.googleapis.com/ingress"] == ingress
        annotations = rendered["spec"]["template"]["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/minScale"] == min_scale


def test_deploy_sh_refuses_a_malformed_environment() -> None:
    """ENVIRONMENT goes into names and a sed script: anything but a short slug is refused."""
    result = run_deploy_sh("-e", "prod#uction", "render", env=OFFLINE)
    assert result.returncode == 2
    assert "ENVIRONMENT" in result.stderr


def test_service_yaml_secrets_come_from_secret_manager(env: dict[str, dict[str, Any]]) -> None:
    """Every credential setting (a SecretStr field of Settings) is set from a Secret Manager
    reference, and no variable named like a token, key or secret has a literal value."""
    fields = import_from_repo("sproxxo.settings").Settings.model_fields
    secret_fields = {
        f"{ENV_PREFIX}{name.upper()}"
        for name, info in fields.items()
        if info.annotation is SecretStr
    }
    assert {"SPROXXO_ADMIN_TOKEN", "SPROXXO_CARD_TOKEN_KEY"} <= secret_fields
    for name in sorted(secret_fields):
        assert name in env, f"{name} is not set: Settings would fall back to a dev default"
        assert "value" not in env[name], f"{name} is a literal"
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == "latest", name
    literal = [name for name, item in env.items() if SECRET_NAME.search(name) and "value" in item]
    assert not literal, f"literal values for secret-looking variables: {literal}"


def test_service_yaml_card_token_key_comes_from_its_secret(
    env: dict[str, dict[str, Any]],
) -> None:
    """The card-token HMAC key is the Secret Manager secret sproxxo-card-token-key."""
    ref = env["SPROXXO_CARD_TOKEN_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "sproxxo-card-token-key", "key": "latest"}


def fake_gcloud(tmp_path: Path, token: str) -> Path:
    """A `gcloud` that records its arguments and prints `token` (or nothing for `logging`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> "{tmp_path}/gcloud.args"\n'
        f'[[ "$1" == auth ]] && printf "%s\\n" "{token}"\n'
        "exit 0\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return bin_dir


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
)
@pytest.mark.parametrize(
    ("environment", "audience"),
    [("canary", "sproxxo-fraud-canary"), ("production", "sproxxo-fraud-production")],
)
def test_deploy_sh_smoke_is_synthetic_stamped_and_uses_the_environment_audience(
    recording_server: Recorder, tmp_path: Path, environment: str, audience: str
) -> None:
    """`smoke` mints its ID token for the environment's audience, sends it on both calls,
    marks /predict synthetic and stamps the sample with the current time."""
    bin_dir = fake_gcloud(tmp_path, token="minted-id-token")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    before = datetime.now(UTC).replace(microsecond=0)
    result = run_deploy_sh(
        "-e", environment, "smoke", recording_server.url, env={**OFFLINE, "PATH": path}
    )
    assert result.returncode == 0, result.stderr
    minted = (tmp_path / "gcloud.args").read_text(encoding="utf-8")
    assert f"auth print-identity-token --audiences={audience}" in minted
    calls = {seen.path: seen for seen in recording_server.seen}
    assert set(calls) == {"/readyz", "/predict"}
    for seen in calls.values():
        assert seen.headers["authorization"] == "Bearer minted-id-token"
    predict = calls["/predict"]
    assert predict.headers[SYNTHETIC_HEADER.decode()] == "1"
    stamped = datetime.fromisoformat(json.loads(predict.body)["timestamp"])
    assert before <= stamped <= datetime.now(UTC) + timedelta(seconds=1)


def test_deploy_sh_check_without_url_judges_by_logs_only(
    recording_server: Recorder, tmp_path: Path
) -> None:
    """`check REVISION` (production: the runners cannot reach the service) reads the
    revision's 5xx count from the logs and sends no request."""
    bin_dir = fake_gcloud(tmp_path, token="unused")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = run_deploy_sh(
        "check", "sproxxo-fraud-00042-abc", env={**OFFLINE, "PATH": path, "SOAK_SECONDS": "0"}
    )
    assert result.returncode == 0, result.stderr
    assert "logged 0 5xx" in result.stderr
    calls = (tmp_path / "gcloud.args").read_text(encoding="utf-8")
    assert 'resource.labels.revision_name="sproxxo-fraud-00042-abc"' in calls
    assert 'resource.labels.service_name="sproxxo-fraud"' in calls
    assert not recording_server.seen


def test_service_yaml_shares_one_card_history_store(
    template: dict[str, Any], container: dict[str, Any], env: dict[str, dict[str, Any]]
) -> None:
    """Every instance must see the same card: the history store is Memorystore (from its
    secret: the URL carries the AUTH string), reached over Direct VPC egress, with its
    server CA mounted, and a store budget the Settings accept. Never the per-instance
    SQLite default, which Cloud Run would silently give each instance."""
    assert env["SPROXXO_HISTORY_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "sproxxo-history-url",
        "key": "latest",
    }
    annotations = template["metadata"]["annotations"]
    assert annotations["run.googleapis.com/vpc-access-egress"] == "private-ranges-only"
    assert "network-interfaces" in " ".join(annotations)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"]["secretName"] for v in template["spec"]["volumes"]}
    assert volumes["memorystore-ca"] == "sproxxo-memorystore-ca"
    assert mounts["memorystore-ca"] == "/secrets/memorystore"
    settings = import_from_repo("sproxxo.settings").Settings
    budget = float(env["SPROXXO_HISTORY_TIMEOUT_SECONDS"]["value"])
    assert settings(history_timeout_seconds=budget).history_timeout_seconds == budget
