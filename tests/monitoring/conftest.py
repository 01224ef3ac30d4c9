"""Fixtures for monitoring tests: reference and current windows, written logs, a fake model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sproxxo.adapters.evidently import DriftSummary, drift_summary
from tests.monitoring.logs import current_frame, reference_frame, write_log, write_model_dir


@pytest.fixture(scope="session")
def reference() -> pd.DataFrame:
    """The reference sample (10,000 rows)."""
    return reference_frame()


@pytest.fixture(scope="session")
def steady_summary(reference: pd.DataFrame) -> DriftSummary:
    """Summary of an unshifted day drawn from the same population."""
    return drift_summary(reference, current_frame(seed=2))


@pytest.fixture(scope="session")
def shifted_summary(reference: pd.DataFrame) -> DriftSummary:
    """Summary of a day with twice the night share and three times the amounts."""
    return drift_summary(reference, current_frame(seed=2, shifted=True))


@pytest.fixture
def model_dir(tmp_path: Path, reference: pd.DataFrame) -> Path:
    """A bundle-like folder holding only reference.parquet."""
    return write_model_dir(tmp_path / "model", reference)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """An empty prediction-log folder."""
    directory = tmp_path / "predictions"
    directory.mkdir()
    return directory


@pytest.fixture
def steady_log(log_dir: Path) -> Path:
    """A prediction log holding one unshifted day (2026-03-01)."""
    write_log(current_frame(seed=3), log_dir)
    return log_dir
