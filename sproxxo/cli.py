"""Shared exit codes and error handling for the command-line shells."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Final

from sproxxo.errors import DataSourceError, FeatureSchemaMismatch, ModelUnavailable

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2  # argparse's own
EXIT_DATA: Final = 3
EXIT_MODEL: Final = 4
EXIT_TRACKING: Final = 5
EXIT_GATE: Final = 6
EXIT_DRIFT: Final = 7
EXIT_EMPTY: Final = 8
EXIT_QUALITY: Final = 9


class TrackingError(Exception):
    """The experiment tracker (MLflow) is unreachable or refused a call."""


class GateRefused(Exception):
    """A promotion gate refused the candidate."""


def configure_logging(level: str = "INFO") -> None:
    """Plain progress logs on stderr for CLIs (services configure their own)."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI main, turning expected failures into a message and a distinct exit code."""
    table: list[tuple[type[BaseException], int]] = [
        (DataSourceError, EXIT_DATA),
        (FeatureSchemaMismatch, EXIT_DATA),
        (ModelUnavailable, EXIT_MODEL),
        (TrackingError, EXIT_TRACKING),
        (GateRefused, EXIT_GATE),
        (ValueError, EXIT_QUALITY),
    ]
    try:
        return main(argv)
    except tuple(exc for exc, _ in table) as exc:
        code = next(code for kind, code in table if isinstance(exc, kind))
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return code
