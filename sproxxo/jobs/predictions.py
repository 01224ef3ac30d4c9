"""The prediction log as monitoring reads it: a time window, the local log or BigQuery,
real traffic only (records of load tests and canaries are `synthetic` and skipped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from sproxxo.adapters.logfiles import read_log
from sproxxo.errors import DataSourceError


def parse_time(value: str | None, *, name: str, default: datetime) -> datetime:
    """An ISO date/datetime as aware UTC (naive = UTC); `default` when not given."""
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DataSourceError(f"--{name}={value!r} is not an ISO date or datetime") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def window(
    since: str | None, until: str | None, *, default_days: float = 1.0
) -> tuple[datetime, datetime]:
    """[since, until): defaults to the `default_days` before now."""
    end = parse_time(until, name="until", default=datetime.now(UTC))
    start = parse_time(since, name="since", default=end - timedelta(days=default_days))
    if start >= end:
        raise DataSourceError(
            f"--since {start.isoformat()} is not before --until {end.isoformat()}"
        )
    return start, end


def read_predictions(
    *, source: str, log_dir: Path, since: datetime, until: datetime, table: str = ""
) -> pd.DataFrame:
    """Logged predictions in [since, until) from the local log or BigQuery, without the
    synthetic traffic of load tests and canaries."""
    if source == "bigquery":
        from sproxxo.adapters.bigquery import read_predictions

        return read_predictions(table, since=since, until=until)
    if not log_dir.is_dir():
        raise DataSourceError(f"prediction log folder {log_dir} does not exist")
    try:
        return without_synthetic(read_log(log_dir, since=since, until=until))
    except (OSError, ValueError, KeyError) as exc:
        raise DataSourceError(f"prediction log {log_dir} is unreadable: {exc}") from exc


def without_synthetic(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of real traffic (records marked `synthetic` come from load tests)."""
    if frame.empty or "synthetic" not in frame.columns:
        return frame
    real = frame["synthetic"].fillna(False).astype(bool)
    return frame[~real].reset_index(drop=True)
