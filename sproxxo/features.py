"""Feature engineering shared by training and serving: one function, one set of columns.

Input is columnar (a pandas DataFrame or a mapping of equal-length arrays) in the canonical
layout `CANONICAL_COLUMNS`; `columns_from_transactions` turns validated `Transaction`s into
that layout, and every data source produces it. Output is a float64 matrix whose columns
are `FEATURE_NAMES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from sproxxo.errors import FeatureSchemaMismatch
from sproxxo.risk import (
    CATEGORY_TYPICAL_AMOUNT_USD,
    NEW_CARD_DAYS,
    BoolArray,
    FloatArray,
    IndicatorInputs,
    fire_indicators,
    risk_scores,
)
from sproxxo.schemas import CATEGORIES, ONLINE_CATEGORIES, Transaction

#: Columns every data source produces (labels travel separately as `is_fraud`).
CANONICAL_COLUMNS: Final = (
    "transaction_id",
    "card_id",
    "amount",
    "currency",
    "epoch_seconds",
    "utc_offset_minutes",
    "merchant_id",
    "merchant_category",
    "lat",
    "long",
    "merch_lat",
    "merch_long",
    "card_age_days",
    "is_foreign",
    "customer_age",
    "city_pop",
)
LABEL_COLUMN: Final = "is_fraud"

FEATURE_NAMES: Final = (
    "log_amount",
    "amount_to_typical",
    "hour",
    "weekday",
    "is_night",
    "distance_km",
    "customer_age",
    "card_age_days",
    "is_new_card",
    "is_foreign",
    "category_code",
    "is_online",
    "log_city_pop",
    "risk_score",
)

_CATEGORY_CODE: Final = {name: float(i) for i, name in enumerate(CATEGORIES)}
_TYPICAL: Final = np.array([CATEGORY_TYPICAL_AMOUNT_USD[c] for c in CATEGORIES])
_ONLINE: Final = np.array([float(c in ONLINE_CATEGORIES) for c in CATEGORIES])
_EARTH_RADIUS_KM: Final = 6371.0088
_IDENTIFIERS: Final = frozenset({"transaction_id", "card_id", "currency", "merchant_id"})
_NEEDED: Final = tuple(c for c in CANONICAL_COLUMNS if c not in _IDENTIFIERS)

if TYPE_CHECKING:
    import pandas as pd

#: Canonical columns: a DataFrame, or a mapping of equal-length sequences.
Columns: TypeAlias = "Mapping[str, Any] | pd.DataFrame"


@dataclass(frozen=True)
class Derived:
    """Features plus the indicator matrix and risk score computed on the way."""

    matrix: FloatArray
    fired: BoolArray
    inputs: IndicatorInputs
    risk_score: FloatArray


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> FloatArray:
    """Great-circle distance in km between two arrays of coordinates in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0))))


def category_codes(values: Any) -> npt.NDArray[np.intp]:
    """Index of each category in `CATEGORIES`; raises on an unknown category."""
    try:
        if len(values) <= 64:
            return np.array([_CATEGORY_CODE[v] for v in values], dtype=np.intp)
    except KeyError as exc:
        raise FeatureSchemaMismatch(f"merchant_category {exc.args[0]!r} is unknown") from exc
    import pandas as pd

    codes = pd.Categorical(np.asarray(values, dtype=object), categories=CATEGORIES).codes
    if (codes < 0).any():
        bad = np.asarray(values, dtype=object)[codes < 0][0]
        raise FeatureSchemaMismatch(f"merchant_category {bad!r} is unknown")
    return codes.astype(np.intp)


def _column(columns: Columns, name: str) -> FloatArray:
    return np.asarray(columns[name], dtype=np.float64)


def derive(columns: Columns) -> Derived:
    """Compute the feature matrix, the indicators and the risk score in one pass.

    Written for one row as much as for a million: columns are filled into a preallocated
    matrix (no stacking), so a single transaction costs a few dozen small numpy calls.
    """
    missing = [c for c in _NEEDED if c not in columns]
    if missing:
        raise FeatureSchemaMismatch(f"missing columns: {', '.join(missing)}")
    amount = _column(columns, "amount")
    local = _column(columns, "epoch_seconds") + 60.0 * _column(columns, "utc_offset_minutes")
    codes = category_codes(columns["merchant_category"])
    inputs = IndicatorInputs(
        amount=amount,
        amount_to_typical=amount / _TYPICAL[codes],
        local_hour=np.floor(local / 3600.0) % 24,
        distance_km=haversine_km(
            _column(columns, "lat"),
            _column(columns, "long"),
            _column(columns, "merch_lat"),
            _column(columns, "merch_long"),
        ),
        card_age_days=_column(columns, "card_age_days"),
        is_foreign=_column(columns, "is_foreign"),
        is_online=_ONLINE[codes],
    )
    fired = fire_indicators(inputs)
    score = risk_scores(fired)
    out = np.empty((len(amount), len(FEATURE_NAMES)), dtype=np.float64)
    out[:, 0] = np.log1p(amount)
    out[:, 1] = inputs.amount_to_typical
    out[:, 2] = inputs.local_hour
    out[:, 3] = (np.floor(local / 86400.0) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out[:, 4] = fired[:, 2]
    out[:, 5] = inputs.distance_km
    out[:, 6] = _column(columns, "customer_age")
    out[:, 7] = inputs.card_age_days
    out[:, 8] = inputs.card_age_days < NEW_CARD_DAYS
    out[:, 9] = inputs.is_foreign
    out[:, 10] = codes
    out[:, 11] = inputs.is_online
    out[:, 12] = np.log1p(_column(columns, "city_pop"))
    out[:, 13] = score
    return Derived(matrix=out, fired=fired, inputs=inputs, risk_score=score)


def build_features(columns: Columns) -> FloatArray:
    """The model's input matrix (columns = `FEATURE_NAMES`) for canonical columns."""
    return derive(columns).matrix


def columns_from_transactions(transactions: Sequence[Transaction]) -> dict[str, list[Any]]:
    """Canonical columns for validated transactions (amounts as float USD)."""
    cols: dict[str, list[Any]] = {name: [] for name in CANONICAL_COLUMNS}
    for tx in transactions:
        offset = tx.timestamp.utcoffset()
        cols["transaction_id"].append(tx.transaction_id)
        cols["card_id"].append(tx.card_id)
        cols["amount"].append(float(tx.amount))
        cols["currency"].append(tx.currency)
        cols["epoch_seconds"].append(tx.timestamp.timestamp())
        cols["utc_offset_minutes"].append(offset.total_seconds() / 60 if offset else 0.0)
        cols["merchant_id"].append(tx.merchant_id)
        cols["merchant_category"].append(tx.merchant_category.value)
        cols["lat"].append(tx.lat)
        cols["long"].append(tx.long)
        cols["merch_lat"].append(tx.merch_lat)
        cols["merch_long"].append(tx.merch_long)
        cols["card_age_days"].append(tx.card_age_days)
        cols["is_foreign"].append(tx.is_foreign)
        cols["customer_age"].append(tx.customer_age)
        cols["city_pop"].append(tx.city_pop)
    return cols


def transaction_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of the `Transaction` a canonical row describes (inverse of
    `columns_from_transactions`): local timestamp from epoch seconds and offset."""
    zone = timezone(timedelta(minutes=int(row["utc_offset_minutes"])))
    return {
        "transaction_id": str(row["transaction_id"]),
        "card_id": str(row["card_id"]),
        "amount": f"{float(row['amount']):.2f}",
        "currency": str(row["currency"]),
        "timestamp": datetime.fromtimestamp(int(row["epoch_seconds"]), tz=zone).isoformat(),
        "merchant_id": str(row["merchant_id"]),
        "merchant_category": str(row["merchant_category"]),
        "lat": float(row["lat"]),
        "long": float(row["long"]),
        "merch_lat": float(row["merch_lat"]),
        "merch_long": float(row["merch_long"]),
        "card_age_days": int(row["card_age_days"]),
        "is_foreign": bool(row["is_foreign"]),
        "customer_age": int(row["customer_age"]),
        "city_pop": int(row["city_pop"]),
    }
