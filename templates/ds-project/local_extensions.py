"""Jinja globals for the ds-project template: pins generated from sproxxo's uv.lock.

Cookiecutter imports this module from the template folder (`_extensions` in
cookiecutter.json); the pin logic itself lives in `templates/render_pins.py`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

RENDER_PINS = Path(__file__).resolve().parents[1] / "render_pins.py"


def _render_pins() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sproxxo_render_pins", RENDER_PINS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(RENDER_PINS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sproxxo_root() -> str:
    """The sproxxo checkout this template belongs to (default for `sproxxo_path`)."""
    return str(RENDER_PINS.parents[1])


def sproxxo_pins(path: str) -> dict[str, Any]:
    """Python, dependency, test and constraint pins from `<path>/uv.lock`, plus `root`
    (the checkout's absolute path, written where the project must find sproxxo)."""
    root = Path(path).expanduser().resolve()
    pins: dict[str, Any] = _render_pins().project_pins(root)
    return {**pins, "root": str(root)}


class SproxxoPins(Extension):
    """Adds `sproxxo_root()` and `sproxxo_pins(path)` to the template's globals."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals.update(sproxxo_root=sproxxo_root, sproxxo_pins=sproxxo_pins)
