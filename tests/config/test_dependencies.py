"""Dependency groups: the serving image installs the serving set only, all from uv.lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SERVING = ("mlflow", "evidently", "matplotlib", "db-dtypes", "pytest", "locust")


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_training_and_monitoring_have_their_own_groups() -> None:
    """mlflow/matplotlib live in `training`, evidently in `monitoring`; dev includes both."""
    project = _pyproject()
    runtime = " ".join(project["project"]["dependencies"])  # type: ignore[index]
    groups = project["dependency-groups"]  # type: ignore[index]
    for name in ("mlflow", "evidently", "matplotlib"):
        assert name not in runtime
    assert any(str(d).startswith("mlflow") for d in groups["training"])  # type: ignore[index]
    assert any(str(d).startswith("evidently") for d in groups["monitoring"])  # type: ignore[index]
    included = {d["include-group"] for d in groups["dev"] if isinstance(d, dict)}  # type: ignore[index]
    assert {"training", "monitoring", "test"} <= included


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not installed")
def test_bento_requirements_export_only_the_serving_set() -> None:
    """deploy/build_bento.py's export (no default groups) holds none of the training,
    monitoring or test packages, and every pin is the locked version."""
    out = subprocess.run(
        ["uv", "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    names = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", out, re.MULTILINE)}
    assert {"bentoml", "scikit-learn", "numba", "cryptography"} <= names
    assert not names & set(NOT_SERVING), names & set(NOT_SERVING)
    assert "--no-default-groups" in (ROOT / "deploy" / "build_bento.py").read_text()
