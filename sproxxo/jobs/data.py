"""Loading training and evaluation data from the source a command names.

Every source returns the canonical columns plus `is_fraud` (`sproxxo.features`):
the synthetic generator, a local CSV/Parquet file (our layout or Kaggle/Sparkov's), or a
BigQuery table over a time window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import pandas as pd

from sproxxo.errors import DataSourceError

SourceName = Literal["synthetic", "file", "bigquery"]
SOURCES: Final[tuple[SourceName, ...]] = ("synthetic", "file", "bigquery")


@dataclass(frozen=True)
class DataSpec:
    """Which data a command reads."""

    source: SourceName = "synthetic"
    path: str | None = None
    rows: int = 200_000
    seed: int = 42
    table: str | None = None
    project: str | None = None
    since: str | None = None
    until: str | None = None
    history: tuple[str, ...] = ()  # files that only warm the cards' history
    history_days: float = 0.0  # BigQuery: a window before `since` that only warms it


def load(spec: DataSpec, *, token_key: bytes) -> pd.DataFrame:
    """Canonical columns plus `is_fraud` from the named source (`token_key` keys the card
    tokens of imported files)."""
    return load_with_history(spec, token_key=token_key)[0]


def load_with_history(
    spec: DataSpec, *, token_key: bytes
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The data and the rows that only warm its cards' history (None: none asked for)."""
    if spec.source == "synthetic":
        from sproxxo.sources.synthetic import generate

        return generate(spec.rows, seed=spec.seed), None
    if spec.source == "file":
        from sproxxo.sources.files import load_files

        if not spec.path:
            raise DataSourceError("--path is required for the file source")
        history = [Path(p) for p in spec.history]
        return load_files([Path(spec.path)], history=history, token_key=token_key)
    if spec.source == "bigquery":
        return _bigquery(spec)
    raise DataSourceError(f"unknown source {spec.source!r}; choose one of {SOURCES}")


def _bigquery(spec: DataSpec) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from sproxxo.adapters.bigquery import load_bigquery

    if not (spec.table and spec.since and spec.until):
        raise DataSourceError("the bigquery source needs --table, --since and --until")
    frame = load_bigquery(
        table=spec.table, since=spec.since, until=spec.until, project=spec.project
    )
    if not spec.history_days:
        return frame, None
    since = datetime.fromisoformat(spec.since)
    start = (since - timedelta(days=spec.history_days)).isoformat()
    warm = load_bigquery(table=spec.table, since=start, until=spec.since, project=spec.project)
    return frame, warm
