"""Data sources: each returns a pandas DataFrame in the canonical layout plus `is_fraud`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

SourceName = Literal["synthetic", "file", "bigquery"]
SOURCES: tuple[SourceName, ...] = ("synthetic", "file", "bigquery")


def load_source(
    name: SourceName,
    *,
    path: str | None = None,
    rows: int = 200_000,
    seed: int = 42,
    since: str | None = None,
    until: str | None = None,
    table: str | None = None,
    project: str | None = None,
    token_key: bytes | None = None,
) -> pd.DataFrame:
    """Load canonical columns plus `is_fraud` from the named source."""
    from pathlib import Path

    from sproxxo.errors import DataSourceError

    if name == "synthetic":
        from sproxxo.sources.synthetic import generate

        return generate(rows, seed=seed)
    if name == "file":
        from sproxxo.sources.files import load_file

        if not path:
            raise DataSourceError("--path is required for the file source")
        return load_file(Path(path), **({"token_key": token_key} if token_key else {}))
    if name == "bigquery":
        from sproxxo.sources.bigquery import load_bigquery

        if not (table and since and until):
            raise DataSourceError("the bigquery source needs --table, --since and --until")
        return load_bigquery(table=table, since=since, until=until, project=project)
    raise DataSourceError(f"unknown source {name!r}; choose one of {SOURCES}")
