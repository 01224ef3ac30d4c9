"""pre-commit hooks and tox envs: the names CI relies on, pinned and in step with uv.lock."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE_TAG = re.compile(r"^v?\d+\.\d+\.\d+$")
TOX_ENVS = ("lint", "typing", "unit", "integration", "coverage")


@pytest.fixture(scope="module")
def repos() -> dict[str, dict[str, Any]]:
    """.pre-commit-config.yaml's repos, by URL ('local' for local hooks)."""
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    return {repo["repo"]: repo for repo in config["repos"]}


@pytest.fixture(scope="module")
def tox() -> configparser.ConfigParser:
    """tox.ini, parsed without interpolation ({posargs} and friends stay literal)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO_ROOT / "tox.ini", encoding="utf-8")
    return parser


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def locked_versions() -> dict[str, str]:
    """Package versions pinned in uv.lock."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {
        package["name"]: package["version"] for package in lock["package"] if "version" in package
    }


def hook_ids(repo: dict[str, Any]) -> set[str]:
    """The ids of a pre-commit repo's hooks."""
    return {hook["id"] for hook in repo["hooks"]}


def lines(value: str) -> list[str]:
    """A multi-line ini value as its non-empty lines."""
    return [line.strip() for line in value.splitlines() if line.strip()]


def test_precommit_runs_hygiene_hooks(repos: dict[str, dict[str, Any]]) -> None:
    """The standard pre-commit-hooks guard whitespace, YAML, TOML, big files and keys."""
    hooks = hook_ids(repos["https://github.com/pre-commit/pre-commit-hooks"])
    assert hooks >= {
        "end-of-file-fixer",
        "trailing-whitespace",
        "check-yaml",
        "check-toml",
        "check-added-large-files",
        "detect-private-key",
    }


def test_precommit_runs_ruff_lint_and_format(repos: dict[str, dict[str, Any]]) -> None:
    """ruff lints with --fix and formats."""
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    hooks = {hook["id"]: hook for hook in ruff["hooks"]}
    lint = hooks.get("ruff-check") or hooks.get("ruff")  # `ruff` is the legacy id
    assert lint is not None, "no ruff lint hook"
    assert "--fix" in lint.get("args", [])
    assert "ruff-format" in hooks


def test_precommit_checks_the_lockfile(repos: dict[str, dict[str, Any]]) -> None:
    """uv-pre-commit's uv-lock hook checks uv.lock and never rewrites it."""
    uv = repos["https://github.com/astral-sh/uv-pre-commit"]
    hooks = {hook["id"]: hook for hook in uv["hooks"]}
    assert "--check" in hooks["uv-lock"].get("args", [])


def test_precommit_runs_actionlint_locally(repos: dict[str, dict[str, Any]]) -> None:
    """A local hook runs the locked actionlint on workflow files."""
    hooks = {hook["id"]: hook for hook in repos["local"]["hooks"]}
    actionlint = hooks["actionlint"]
    assert actionlint["entry"] == "uv run actionlint"
    assert actionlint["language"] == "system"
    assert re.search(actionlint["files"], ".github/workflows/ci.yml")


def test_precommit_revs_are_release_tags(repos: dict[str, dict[str, Any]]) -> None:
    """Every remote hook repo is pinned to a release tag, never a branch."""
    for url, repo in repos.items():
        if url != "local":
            assert RELEASE_TAG.match(repo["rev"]), f"{url} rev {repo['rev']!r}"


@pytest.mark.parametrize(
    ("url", "package"),
    [
        ("https://github.com/astral-sh/ruff-pre-commit", "ruff"),
        ("https://github.com/astral-sh/uv-pre-commit", "uv"),
    ],
)
def test_precommit_revs_match_uv_lock(
    repos: dict[str, dict[str, Any]], locked_versions: dict[str, str], url: str, package: str
) -> None:
    """The ruff and uv hooks run the versions uv.lock pins for `uv run`."""
    if package not in locked_versions:
        pytest.skip(f"{package} is not in uv.lock")
    assert repos[url]["rev"].removeprefix("v") == locked_versions[package]


def test_tox_requires_the_uv_plugin(tox: configparser.ConfigParser) -> None:
    """tox provisions itself with tox-uv."""
    requires = lines(tox["tox"]["requires"])
    assert "tox>=4.23" in requires
    assert "tox-uv>=1.16" in requires


def test_tox_lists_the_ci_envs(tox: configparser.ConfigParser) -> None:
    """The five envs CI calls exist and are the default list."""
    env_list = [env.strip() for env in tox["tox"]["env_list"].split(",")]
    assert env_list == list(TOX_ENVS)
    for env in TOX_ENVS:
        assert tox.has_section(f"testenv:{env}"), env


def test_tox_uses_the_lock_runner(tox: configparser.ConfigParser) -> None:
    """Every env installs from uv.lock through tox-uv's lock runner."""
    assert tox["testenv"]["runner"] == "uv-venv-lock-runner"
    for env in TOX_ENVS:
        assert tox[f"testenv:{env}"].get("runner", "uv-venv-lock-runner") == "uv-venv-lock-runner"


def test_tox_dependency_groups_exist(
    tox: configparser.ConfigParser, pyproject: dict[str, Any]
) -> None:
    """Each group a tox env installs is a dependency group of pyproject.toml."""
    declared = set(pyproject["dependency-groups"])
    for section in ["testenv", *(f"testenv:{env}" for env in TOX_ENVS)]:
        for key in ("dependency_groups", "only_groups"):
            groups = set(lines(tox[section].get(key, "")))
            assert groups <= declared, f"[{section}] {key}: {sorted(groups - declared)}"


def test_tox_passes_deployment_env(tox: configparser.ConfigParser) -> None:
    """Sproxxo settings, the BentoML home and the MLflow URI reach the tests."""
    passenv = lines(tox["testenv"]["passenv"])
    assert {"SPROXXO_*", "BENTOML_HOME", "MLFLOW_TRACKING_URI"} <= set(passenv)


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ("lint", ["pre-commit run --all-files"]),
        ("typing", ["mypy", "lint-imports"]),
        ("unit", ["pytest", '-m "not integration and not slow"']),
        ("integration", ["pytest", "-m integration"]),
        (
            "coverage",
            ["pytest", "--cov", "--cov-report=term", "--cov-fail-under=80", '-m "not slow"'],
        ),
    ],
)
def test_tox_env_runs_its_command(
    tox: configparser.ConfigParser, env: str, fragments: list[str]
) -> None:
    """Each env runs the tool CI expects of it."""
    commands = tox[f"testenv:{env}"]["commands"]
    for fragment in fragments:
        assert fragment in commands, f"[testenv:{env}] lacks {fragment!r}"


def test_tox_coverage_floor_matches_pyproject(
    tox: configparser.ConfigParser, pyproject: dict[str, Any]
) -> None:
    """The coverage env enforces the same floor as [tool.coverage.report] fail_under."""
    match = re.search(r"--cov-fail-under=(\d+)", tox["testenv:coverage"]["commands"])
    assert match
    assert int(match[1]) == pyproject["tool"]["coverage"]["report"]["fail_under"]


def test_make_targets_call_the_tox_envs() -> None:
    """Test runs are defined once: the Makefile's targets call tox envs, never pytest."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for target, env in (
        ("test", "coverage"),
        ("test-unit", "unit"),
        ("test-integration", "integration"),
        ("lint", "lint"),
        ("typing", "typing"),
    ):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert f"tox -e {env}" in recipe, target
    assert "pytest" not in makefile
