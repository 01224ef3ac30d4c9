"""The prediction-log record: what is kept of every decision, in the form it travels.

Records travel in *chunks*: one scored batch as equal-length columns (`log_chunk`), so a
request pays a few list and array references instead of one dict per transaction; sinks
write chunks (`Sink`). A record holds the transaction id, when it was logged and what
happened (model, rules, scores, decision, reason codes, the model's features, the HTTP
status the caller got, whether it was synthetic traffic), never a card token, a name or an
address. `PREDICTION_LOG_SCHEMA` is its table form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from sproxxo.features import FEATURE_NAMES

if TYPE_CHECKING:
    from sproxxo.scoring import Scored

#: The prediction log's columns as a BigQuery table: (name, type, mode). One source for the
#: table (`python -m monitoring.predlog ensure-table`) and the tests against the emulator.
PREDICTION_LOG_SCHEMA: Final[tuple[tuple[str, str, str], ...]] = (
    ("transaction_id", "STRING", "REQUIRED"),
    ("logged_at", "TIMESTAMP", "REQUIRED"),
    ("event_time", "STRING", "NULLABLE"),  # the authorisation's local time with its offset
    ("model_tag", "STRING", "REQUIRED"),
    ("amount", "FLOAT64", "NULLABLE"),
    ("merchant_category", "STRING", "NULLABLE"),
    ("valid", "BOOL", "NULLABLE"),
    ("violations", "STRING", "REPEATED"),
    ("risk_score", "FLOAT64", "NULLABLE"),
    ("fraud_probability", "FLOAT64", "NULLABLE"),
    ("decision", "STRING", "NULLABLE"),
    ("reason_codes", "STRING", "REPEATED"),
    *((name, "FLOAT64", "NULLABLE") for name in FEATURE_NAMES if name != "risk_score"),
    ("http_status", "INT64", "NULLABLE"),  # what the caller got (504: answered too late)
    ("synthetic", "BOOL", "NULLABLE"),  # load tests and canaries: excluded by monitoring
    # Champion/challenger: the shadow model's answer to the same transaction (absent or null
    # when no shadow is set, or when the shadow queue dropped the batch under load).
    ("shadow_model_tag", "STRING", "NULLABLE"),
    ("shadow_fraud_probability", "FLOAT64", "NULLABLE"),
    ("shadow_decision", "STRING", "NULLABLE"),
)
#: The prediction-log columns the shadow model fills (`SHADOW_COLUMNS[i]` of the schema).
SHADOW_COLUMNS: Final = ("shadow_model_tag", "shadow_fraud_probability", "shadow_decision")
Record = dict[str, Any]
#: Equal-length columns (lists or 1-d numpy arrays), one entry per record.
Chunk = dict[str, Any]


def chunk_size(chunk: Chunk) -> int:
    """Records in a chunk."""
    return len(chunk["transaction_id"])


def chunk_of(records: Sequence[Mapping[str, Any]]) -> Chunk:
    """The chunk holding `records` (all with the same keys)."""
    return {key: [r[key] for r in records] for key in records[0]} if records else {}


def records_of(chunk: Chunk) -> list[Record]:
    """One dict per record of a chunk, with plain Python values."""
    columns = {k: v.tolist() if hasattr(v, "tolist") else list(v) for k, v in chunk.items()}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def slice_chunk(chunk: Chunk, start: int, stop: int) -> Chunk:
    """Records [start, stop) of a chunk."""
    return {key: column[start:stop] for key, column in chunk.items()}


def head(chunk: Chunk, n: int) -> Chunk:
    return {key: column[:n] for key, column in chunk.items()}


def tail(chunk: Chunk, n: int) -> Chunk:
    return {key: column[n:] for key, column in chunk.items()}


class Sink(Protocol):
    """Where batches of chunks end up."""

    def write(self, chunks: list[Chunk]) -> None:
        """Persist the chunks or raise."""


def now_iso() -> str:
    """UTC timestamp used as `logged_at`."""
    return datetime.now(UTC).isoformat()


def local_isoformat(epoch_seconds: Sequence[float], offset_minutes: Sequence[float]) -> list[str]:
    """`datetime.isoformat()` of each local time, formatted in a few array operations:
    seconds, then microseconds only where there are some, then the UTC offset (a few rows:
    one `datetime` each, a tenth of the array path's cost for one row)."""
    if len(epoch_seconds) <= _SCALAR_ROWS:
        pairs = zip(epoch_seconds, offset_minutes, strict=True)
        return [_one_isoformat(float(e), float(m)) for e, m in pairs]
    offsets = np.asarray(offset_minutes, dtype=np.float64)
    micros = np.round((np.asarray(epoch_seconds) + 60.0 * offsets) * 1e6).astype(np.int64)
    local = micros.astype("datetime64[us]")
    text = np.datetime_as_string(local, unit="s")
    fractional = micros % 1_000_000 != 0
    if fractional.any():
        text[fractional] = np.datetime_as_string(local[fractional], unit="us")
    zones = {m: _utc_offset(int(m)) for m in np.unique(offsets).tolist()}
    return [stamp + zones[m] for stamp, m in zip(text.tolist(), offsets.tolist(), strict=True)]


_SCALAR_ROWS: Final = 4
_EPOCH: Final = datetime(1970, 1, 1)


def _one_isoformat(epoch_seconds: float, offset_minutes: float) -> str:
    """One row of `local_isoformat`: the same float sum, rounded the same way (half to
    even) to whole microseconds."""
    micros = round((epoch_seconds + 60.0 * offset_minutes) * 1e6)
    return (_EPOCH + timedelta(microseconds=micros)).isoformat() + _utc_offset(int(offset_minutes))


def _utc_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def log_chunk(scored: Scored) -> Chunk:
    """The prediction-log chunk of a scored batch, all stamped with one `logged_at`: no card
    token, name or address; the model's features for drift monitoring."""
    n = len(scored.transactions)
    chunk: Chunk = {
        "transaction_id": scored.columns["transaction_id"],
        "logged_at": [now_iso()] * n,
        "event_time": local_isoformat(
            scored.columns["epoch_seconds"], scored.columns["utc_offset_minutes"]
        ),
        "model_tag": [scored.model_tag] * n,
        "amount": scored.columns["amount"],
        "merchant_category": scored.columns["merchant_category"],
        "valid": [not broken for broken in scored.violations],
        "violations": [[v.rule for v in broken] for broken in scored.violations],
        "risk_score": scored.derived.risk_score,
        "fraud_probability": scored.probabilities,
        "decision": [d.value for d in scored.decisions],
        "reason_codes": scored.reasons,
    }
    chunk.update(zip(FEATURE_NAMES, scored.derived.matrix.T.copy(), strict=True))
    return chunk
