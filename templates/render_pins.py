"""Pins for a data-science project, generated from sproxxo's `uv.lock` (never typed by hand).

The serving runtime refuses a model whose python/scikit-learn/numpy/scipy major.minor
differ from its own (`sproxxo/ml/versions.py`). A DS project therefore gets:

* `requires-python`: the serving image's Python (`docker.python_version` in bentofile.yaml);
* `dependencies`: the libraries the contract tracks plus what the sproxxo core imports,
  at exactly the versions uv.lock resolved for that Python;
* `constraint-dependencies`: every other locked package at its locked version, so whatever
  the DS project shares with the runtime (joblib, threadpoolctl, ...) matches it too.

Used by the cookiecutter template (`ds-project/local_extensions.py`) at render time, and as
a CLI to check an existing DS project after uv.lock moves:

    uv run python templates/render_pins.py --check path/to/ds-project
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT: Final = Path(__file__).resolve().parents[1]
#: What the sproxxo core imports beyond the contract's libraries: pydantic-settings
#: (settings), orjson (validation, predlog, activation), prometheus-client (metrics),
#: cryptography (model signatures, checked when a model is loaded or promoted).
CORE_IMPORTS: Final = ("pydantic-settings", "orjson", "prometheus-client", "cryptography")
TEST_TOOLS: Final = ("pytest",)


def tracked_libraries(root: Path = ROOT) -> tuple[str, ...]:
    """The libraries of sproxxo's dependency contract (`PREDICTIVE + INFORMATIVE` in
    `sproxxo/ml/versions.py`), read without importing sproxxo."""
    tree = ast.parse((root / "sproxxo/ml/versions.py").read_text(encoding="utf-8"))
    groups = {
        node.target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id in {"PREDICTIVE", "INFORMATIVE"}
        and node.value is not None
    }
    return tuple(n for n in (*groups["PREDICTIVE"], *groups["INFORMATIVE"]) if n != "python")


def runtime_python(root: Path = ROOT) -> str:
    """major.minor of the serving image's Python (bentofile.yaml `docker.python_version`)."""
    bentofile = yaml.safe_load((root / "bentofile.yaml").read_text(encoding="utf-8"))
    return str(bentofile["docker"]["python_version"])


def _applies(package: dict[str, object], python: str) -> bool:
    markers = package.get("resolution-markers")
    if not markers:
        return True
    # Other marker variables (platform, implementation) default to this interpreter's.
    env = {"python_version": python, "python_full_version": f"{python}.0"}
    return any(Marker(str(m)).evaluate(env) for m in markers)  # type: ignore[attr-defined]


def locked_versions(root: Path = ROOT, *, python: str | None = None) -> dict[str, str]:
    """name -> version of every registry package uv.lock resolved for `python`."""
    python = python or runtime_python(root)
    lock = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))
    versions: dict[str, str] = {}
    for package in lock["package"]:
        if "registry" not in package.get("source", {}) or not _applies(package, python):
            continue
        name = package["name"]
        if versions.setdefault(name, package["version"]) != package["version"]:
            raise ValueError(f"uv.lock has two versions of {name} for Python {python}")
    return versions


def pins(names: Sequence[str], locked: dict[str, str]) -> list[str]:
    """`name==version` for each name, in order; a name absent from the lock is an error."""
    missing = [name for name in names if name not in locked]
    if missing:
        raise KeyError(f"not in uv.lock: {', '.join(missing)}")
    return [f"{name}=={locked[name]}" for name in names]


def project_pins(root: Path = ROOT) -> dict[str, object]:
    """Everything the template writes into a DS project's pyproject.toml."""
    python = runtime_python(root)
    locked = locked_versions(root, python=python)
    direct = (*tracked_libraries(root), *CORE_IMPORTS)
    shared = sorted(set(locked) - set(direct) - set(TEST_TOOLS))
    return {
        "python": python,
        "dependencies": pins(direct, locked),
        "test": pins(TEST_TOOLS, locked),
        "constraints": pins(shared, locked),
    }


def drift(project: Path, root: Path = ROOT) -> list[str]:
    """Requirements of a DS project's pyproject.toml that no longer equal uv.lock."""
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [
        *data["project"]["dependencies"],
        *data.get("dependency-groups", {}).get("test", []),
        *data.get("tool", {}).get("uv", {}).get("constraint-dependencies", []),
    ]
    locked = locked_versions(root)
    problems = []
    for line in declared:
        req = Requirement(line)
        have = locked.get(req.name)
        if str(req.specifier) != f"=={have}":
            problems.append(f"{req.name}: project {req.specifier or 'unpinned'} vs uv.lock {have}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Print the pins (TOML fragments), or check a DS project against uv.lock."""
    parser = argparse.ArgumentParser(prog="render_pins", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="sproxxo checkout with uv.lock")
    parser.add_argument("--check", type=Path, help="DS project folder to compare with uv.lock")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.check, args.root)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    found = project_pins(args.root)
    print(f'requires-python = "=={found["python"]}.*"')
    for key in ("dependencies", "test", "constraints"):
        print(f"{key} = {found[key]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
