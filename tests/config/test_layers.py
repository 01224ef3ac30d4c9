"""The layered layout is enforced: import-linter's contracts hold, and they can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_import_contracts_are_kept() -> None:
    """The layers (shells > jobs > serving | adapters > ml > domain) and the framework-free
    core contract both hold on the repository."""
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("sproxxo/features.py", "import sproxxo.adapters.bentoml_store", "Layers"),
        ("sproxxo/serving/guard.py", "import sproxxo.adapters.prometheus", "Layers"),
        ("sproxxo/ml/bundle.py", "import sproxxo.jobs.train", "Layers"),
        ("sproxxo/scoring.py", "import bentoml", "framework"),
    ],
)
def test_a_layer_violation_breaks_the_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """The check is not vacuous: one upward (or framework) import in a copy fails it."""
    for name in ("sproxxo", "training", "monitoring", "load"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert contract in result.stdout


def test_the_shells_stay_thin() -> None:
    """service.py is HTTP wiring (at most 320 lines: the scoring routes plus model
    management, activation and shadow); every training/monitoring `main` is argument
    parsing and one call into the core (at most 30 lines)."""
    import ast

    assert len((ROOT / "service.py").read_text().splitlines()) <= 320
    mains = {}
    for folder in ("training", "monitoring"):
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef) and node.name == "main":
                    assert node.end_lineno is not None
                    mains[f"{folder}/{path.name}"] = node.end_lineno - node.lineno + 1
    assert len(mains) >= 8
    assert {name: n for name, n in mains.items() if n > 30} == {}
