"""Domain errors. Messages name the field and the value."""

from __future__ import annotations


class SproxxoError(Exception):
    """Base of every error the core raises on purpose."""


class InvalidTransaction(SproxxoError):
    """A transaction that cannot be scored at all."""


class FeatureSchemaMismatch(SproxxoError):
    """Input columns or feature list do not match what the model was trained on."""


class ModelUnavailable(SproxxoError):
    """No usable model: missing, corrupt, tampered or built for other library versions."""


class DataSourceError(SproxxoError):
    """A data source could not be read (missing file, wrong columns, unreachable service)."""
