"""Every exception the project raises on purpose, in one hierarchy.

Each class carries what it means at the edges: the HTTP status the service answers with and
the exit code a command-line tool ends with. Shells translate by type (`exc.http_status`,
`exc.exit_code`), never by reading the message. Messages name the field and the value.

Exit codes of the command-line tools (monitoring/README.md lists them too):
0 ok, 2 usage (argparse), 3 data, 4 model, 5 tracking, 6 promotion gate refused, 7 drift
detected (a verdict, not an error), 8 not enough data, 9 evaluation impossible.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_DATA: Final = 3
EXIT_MODEL: Final = 4
EXIT_TRACKING: Final = 5
EXIT_GATE: Final = 6
EXIT_DRIFT: Final = 7
EXIT_EMPTY: Final = 8
EXIT_QUALITY: Final = 9


class SproxxoError(Exception):
    """Base of every error the project raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1


class InvalidTransaction(SproxxoError):
    """A transaction that cannot be scored at all."""

    http_status = 400
    exit_code = EXIT_DATA


class FeatureSchemaMismatch(SproxxoError):
    """Input columns or feature list do not match what the model was trained on."""

    http_status = 400
    exit_code = EXIT_DATA


class DataSourceError(SproxxoError):
    """A data source could not be read (missing file, wrong columns, unreachable service)."""

    http_status = 502
    exit_code = EXIT_DATA


class InsufficientData(SproxxoError):
    """A window holds no rows, or too few for a meaningful result."""

    http_status = 422
    exit_code = EXIT_EMPTY


class ModelUnavailable(SproxxoError):
    """No usable model: missing, corrupt, tampered or built for other library versions."""

    http_status = 503
    exit_code = EXIT_MODEL


class ModelNotFound(ModelUnavailable):
    """The store has no such model version."""

    http_status = 404


class ModelRefused(ModelUnavailable):
    """The version exists but fails verification (signature, checksums, contract)."""

    http_status = 409


class HistoryUnavailable(SproxxoError):
    """The card-history store cannot be opened or reached (the service scores without it;
    a loading command stops)."""

    http_status = 503
    exit_code = EXIT_DATA


class StateNotPersisted(SproxxoError):
    """A choice every worker must follow (the active model) could not be written down, so
    nothing was switched."""

    http_status = 503
    exit_code = EXIT_MODEL


class TrackingError(SproxxoError):
    """The experiment tracker (MLflow) is unreachable or refused a call."""

    exit_code = EXIT_TRACKING


class GateRefused(SproxxoError):
    """A promotion gate refused the candidate; `report` holds the verdict."""

    http_status = 409
    exit_code = EXIT_GATE

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class EvaluationImpossible(SproxxoError, ValueError):
    """Metrics cannot be computed (e.g. a split with a single class)."""

    http_status = 422
    exit_code = EXIT_QUALITY
