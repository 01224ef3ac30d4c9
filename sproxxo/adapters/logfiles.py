"""Where prediction-log chunks are written and read back: local files, BigQuery, nowhere.

The local sink writes one JSON line per chunk (`{"n": rows, "columns": {...}}`), partitioned
by hour (`<dir>/date=YYYY-MM-DD/hour=HH/part-<pid>.jsonl`); a write that fails half-way is
truncated back, and `read_log` skips (and counts) a line that is still torn, so one bad line
never hides an hour. The same layout holds the dead letter (records a sink refused), which
`replay_dead_letter` moves into the configured sink.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import orjson

from sproxxo.features import FEATURE_NAMES
from sproxxo.records import Chunk, Record, Sink, chunk_size
from sproxxo.settings import Settings

if TYPE_CHECKING:  # pandas is imported by the readers only, not on the service's start-up
    import pandas as pd

logger = logging.getLogger(__name__)


class NullSink:
    """Discards records (prediction log disabled)."""

    def write(self, chunks: list[Chunk]) -> None:
        """Do nothing."""


class FileSink:
    """JSON lines under an hourly partitioned folder, one file per process and hour."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._folder: Path | None = None  # the partition folder last made (one per hour)

    def path_for(self, when: datetime) -> Path:
        """The file a chunk logged at `when` goes to."""
        return (
            self.directory
            / f"date={when:%Y-%m-%d}"
            / f"hour={when:%H}"
            / f"part-{os.getpid()}.jsonl"
        )

    def write(self, chunks: list[Chunk]) -> None:
        """Append one line per chunk, grouped by hour partition (of each chunk's first
        `logged_at`), and fsync; a failed append is truncated back (no torn line)."""
        by_hour: dict[str, list[bytes]] = {}
        for chunk in chunks:
            line = orjson.dumps(
                {"n": chunk_size(chunk), "columns": chunk}, option=orjson.OPT_SERIALIZE_NUMPY
            )
            # logged_at is ISO UTC: its first 13 characters name the hour partition.
            by_hour.setdefault(chunk["logged_at"][0][:13], []).append(line + b"\n")
        for hour, lines in by_hour.items():
            path = self.path_for(datetime.fromisoformat(hour + ":00:00+00:00"))
            with self._open(path) as handle:
                start = handle.tell()
                try:
                    handle.write(b"".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        handle.truncate(start)
                    raise

    def _open(self, path: Path) -> BinaryIO:
        """`path` opened to append, its folder made once per partition (a `mkdir` per write
        was ~1% of a served batch's CPU) and again if it was removed since."""
        if path.parent != self._folder:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folder = path.parent
        try:
            return path.open("ab")
        except FileNotFoundError:  # the folder was removed (a clean-up) after it was made
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("ab")


@dataclass(frozen=True)
class Replayed:
    """What a dead-letter replay moved into the sink."""

    files: int
    records: int
    torn_lines: int


def replay_dead_letter(directory: Path, sink: Sink) -> Replayed:
    """Write every dead-letter file into `sink`, deleting each one once written. A file
    whose write fails stays (the error propagates) for the next replay."""
    files = records = 0
    torn = [0]
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        chunks = [entry["columns"] for entry in _entries(path, torn=torn) if "columns" in entry]
        if chunks:
            sink.write(chunks)
        path.unlink()
        files += 1
        records += sum(chunk_size(c) for c in chunks)
    return Replayed(files=files, records=records, torn_lines=torn[0])


def sink_for(settings: Settings) -> Sink:
    """The prediction-log sink the settings name (`SPROXXO_PREDLOG_SINK`)."""
    return make_sink(
        settings.predlog_sink,
        directory=settings.predictions_dir,
        table=settings.bigquery_predictions_table,
        project=settings.bigquery_project or None,
    )


def make_sink(kind: str, *, directory: Path, table: str = "", project: str | None = None) -> Sink:
    """The sink a deployment names: `file` (hourly JSON lines under `directory`),
    `bigquery` (streaming inserts into `table`) or `none`."""
    if kind == "bigquery":
        from sproxxo.adapters.bigquery import BigQueryPredictionSink

        return BigQueryPredictionSink(table, project=project)
    if kind == "none":
        return NullSink()
    return FileSink(directory)


def _entries(path: Path, *, torn: list[int]) -> Iterator[dict[str, Any]]:
    """The JSON lines of one log file; a torn line (a crash or a full disk mid-write) is
    skipped and counted in `torn[0]`."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn[0] += 1
                continue
            if isinstance(entry, dict):
                yield entry
            else:
                torn[0] += 1


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunks as one frame. A feature column is float64 in every chunk (null -> NaN: a
    chunk of cards without history holds only nulls there), and other all-null columns of
    a chunk are left to the concatenation to fill, so no chunk's nulls decide a dtype."""
    import pandas as pd

    if not parts:
        return pd.DataFrame()
    columns = list(dict.fromkeys(c for part in parts for c in part.columns))
    cleaned = []
    for part in parts:
        present = [name for name in FEATURE_NAMES if name in part.columns]
        part = part.astype(dict.fromkeys(present, np.float64))
        empty = [c for c in part.columns if c not in present and part[c].isna().all()]
        cleaned.append(part.drop(columns=empty))
    return pd.concat(cleaned, ignore_index=True).reindex(columns=columns)


def read_log(
    directory: Path, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """All records of a local prediction log (optionally within [since, until)).

    Torn lines are skipped; their number is in `frame.attrs["torn_lines"]`."""
    import pandas as pd

    parts: list[pd.DataFrame] = []
    rows: list[Record] = []
    torn = [0]
    for path in sorted(directory.glob("date=*/hour=*/*.jsonl")):
        for entry in _entries(path, torn=torn):
            if "columns" in entry:
                parts.append(pd.DataFrame(entry["columns"]))
            else:  # one record per line (logs written before chunks)
                rows.append(entry)
    if torn[0]:
        logger.warning("prediction log %s: skipped %d torn lines", directory, torn[0])
    if rows:
        parts.append(pd.DataFrame(rows))
    frame = _concat(parts)
    if not frame.empty:
        logged = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
        keep = pd.Series(True, index=frame.index)
        if since is not None:
            keep &= logged >= pd.Timestamp(since)
        if until is not None:
            keep &= logged < pd.Timestamp(until)
        frame = frame[keep].reset_index(drop=True)
        present = [name for name in FEATURE_NAMES if name in frame.columns]
        frame[present] = frame[present].astype(np.float64)  # a missing feature (null) is NaN
    frame.attrs["torn_lines"] = torn[0]
    return frame
