"""The ds-project cookiecutter template: pins from uv.lock, and its own tests pass.

Rendered once per module into a temporary folder. The rendered project's tests run twice:
in its own `uv sync`-ed virtualenv (the data scientist's real workflow; uv installs from
its cache, asking PyPI only for index metadata) and with this interpreter, whose
environment is uv.lock itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "ds-project"
CONTEXT = {"project_name": "Chargeback Lab", "team": "risk-ds"}
CONTRACT = ("scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "pydantic", "bentoml", "numba")
PIN_CHECK = ROOT / "templates" / "render_pins.py"


def lock_versions(python: str) -> dict[str, set[str]]:
    """name -> versions of the registry packages uv.lock resolved for `python`.

    Re-read here rather than through render_pins, so the test checks the generator.
    """
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    major_minor = tuple(int(p) for p in python.split("."))
    found: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "registry" not in package["source"]:
            continue
        markers = " ".join(package.get("resolution-markers", []))
        # This lock only forks on python_full_version around 3.12.
        if ("< '3.12'" in markers and major_minor >= (3, 12)) or (
            ">= '3.12'" in markers and major_minor < (3, 12)
        ):
            continue
        found.setdefault(package["name"], set()).add(package["version"])
    return found


def serving_python() -> str:
    """The serving image's Python major.minor."""
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    return str(bentofile["docker"]["python_version"])


def subprocess_env(tmp: Path) -> dict[str, str]:
    """This environment minus the outer virtualenv, with a throw-away store."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env |= {"BENTOML_HOME": str(tmp / "bentoml"), "SPROXXO_STATE_DIR": str(tmp / "state")}
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template rendered with cookiecutter's API and no prompts."""
    out = tmp_path_factory.mktemp("rendered")
    return Path(
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out), extra_context=CONTEXT)
    )


@pytest.fixture(scope="module")
def pyproject(project: Path) -> dict[str, Any]:
    """The rendered pyproject.toml."""
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def test_ds_template_renders_the_package(project: Path) -> None:
    """The slug, package and team come from the context; no Jinja is left behind."""
    assert project.name == "chargeback-lab"
    train = project / "src" / "chargeback_lab" / "train.py"
    assert 'TEAM: Final = "risk-ds"' in train.read_text(encoding="utf-8")
    assert f"PYTHONPATH=src:{ROOT}\n" in (project / ".env").read_text(encoding="utf-8")
    assert ".env" in (project / ".gitignore").read_text(encoding="utf-8").splitlines()
    for path in project.rglob("*"):
        parts = path.relative_to(project).parts
        if path.is_file() and not {".venv", ".pytest_cache", "__pycache__"} & set(parts):
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text, path
            assert "{%" not in text, path


def test_ds_template_pins_equal_uv_lock(pyproject: dict[str, Any]) -> None:
    """Every pinned version, direct or constraint, is the one uv.lock resolved."""
    locked = lock_versions(serving_python())
    uv = pyproject["tool"]["uv"]
    lines = [
        *pyproject["project"]["dependencies"],
        *pyproject["dependency-groups"]["test"],
        *uv["constraint-dependencies"],
    ]
    pins = dict(line.split("==") for line in lines)
    assert {name: {version} for name, version in pins.items()} == {
        name: locked[name] for name in pins
    }
    direct = {line.split("==")[0] for line in pyproject["project"]["dependencies"]}
    assert set(CONTRACT) <= direct
    assert set(pins) == set(locked)


def test_ds_template_python_is_the_serving_python(project: Path, pyproject: dict[str, Any]) -> None:
    """requires-python and .python-version name the serving image's Python."""
    python = serving_python()
    assert pyproject["project"]["requires-python"] == f"=={python}.*"
    assert (project / ".python-version").read_text(encoding="utf-8").strip() == python


def test_ds_template_pin_check_passes(project: Path) -> None:
    """render_pins.py --check finds no drift in a freshly rendered project."""
    out = subprocess.run(
        [sys.executable, str(PIN_CHECK), "--check", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_ds_template_passes_ruff(project: Path) -> None:
    """The rendered code is lint- and format-clean under its own ruff config."""
    for args in (["check"], ["format", "--check"]):
        out = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "."],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_ds_template_tests_pass_in_own_venv(project: Path, tmp_path: Path) -> None:
    """`uv sync` builds the project's env from its pins, and its tests pass there."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    env = subprocess_env(tmp_path)
    sync = subprocess.run(
        [uv, "sync"], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert sync.returncode == 0, sync.stderr[-3000:]
    out = subprocess.run(
        [uv, "run", "--frozen", "pytest", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "4 passed" in out.stdout


def test_ds_template_tests_pass_with_runtime_interpreter(project: Path, tmp_path: Path) -> None:
    """The rendered tests pass under this interpreter, i.e. the serving lock itself."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:bqemulator",
            "-p",
            "no:locust",
        ],
        cwd=project,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "4 passed" in out.stdout
