"""Feature engineering shared by training and serving: one function, one set of columns.

Input is columnar (a pandas DataFrame or a mapping of equal-length arrays) in the canonical
layout `CANONICAL_COLUMNS`; `columns_from_transactions` turns validated `Transaction`s into
that layout, and every data source produces it. Output is a float64 matrix whose columns
are `FEATURE_NAMES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from sproxxo.errors import FeatureSchemaMismatch
from sproxxo.history import HISTORY_FEATURES, EventColumns, Profile, event_time_ms
from sproxxo.risk import (
    CATEGORY_TYPICAL_AMOUNT_USD,
    INDICATORS,
    NEW_CARD_DAYS,
    BoolArray,
    FloatArray,
    IndicatorFlags,
    IndicatorInputs,
    indicator_flags,
    noisy_or,
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

#: What the transaction itself says (profile fields may be missing: NaN).
BASE_FEATURES: Final = (
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
#: The model's inputs: the transaction's features, then the card's history
#: (`sproxxo.history`; NaN when unknown).
FEATURE_NAMES: Final = (*BASE_FEATURES, *HISTORY_FEATURES)

RISK_SCORE_COLUMN: Final = FEATURE_NAMES.index("risk_score")
_LOOKUP_MAX: Final = 4096  # up to here a dict lookup beats pandas.Categorical
_CATEGORY_CODE: Final = {name: float(i) for i, name in enumerate(CATEGORIES)}
_TYPICAL: Final = np.array([CATEGORY_TYPICAL_AMOUNT_USD[c] for c in CATEGORIES])
_ONLINE: Final = np.array([float(c in ONLINE_CATEGORIES) for c in CATEGORIES])
_EARTH_RADIUS_KM: Final = 6371.0088
_IDENTIFIERS: Final = frozenset({"transaction_id", "card_id", "currency", "merchant_id"})
_NEEDED: Final = tuple(c for c in CANONICAL_COLUMNS if c not in _IDENTIFIERS)
_NUMERIC: Final = tuple(c for c in _NEEDED if c != "merchant_category")
#: Canonical columns a transaction may leave out (the card's profile: filled from the store,
#: else NaN).
PROFILE_COLUMNS: Final = ("lat", "long", "card_age_days", "customer_age", "city_pop")

if TYPE_CHECKING:
    import pandas as pd

#: Canonical columns: a DataFrame, or a mapping of equal-length sequences.
Columns: TypeAlias = "Mapping[str, Any] | pd.DataFrame"


@dataclass(frozen=True)
class Derived:
    """Features plus the indicators (verdicts and measured values) and the risk score."""

    matrix: FloatArray
    fired: BoolArray
    values: FloatArray
    risk_score: FloatArray


class _Vector:
    """`known` for arrays (numpy is used directly for the rest)."""

    @staticmethod
    def known(x: Any, value: Any) -> Any:
        """`value` where `x` is known, NaN where it is missing."""
        return np.where(np.isnan(x), np.nan, value)


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any, *, xp: Any = np) -> Any:
    """Great-circle distance in km between coordinates in degrees (arrays, or floats with
    `xp=_SCALAR`)."""
    p1, p2 = xp.radians(lat1), xp.radians(lat2)
    dp, dl = p2 - p1, xp.radians(lon2 - lon1)
    a = xp.sin(dp / 2) ** 2 + xp.cos(p1) * xp.cos(p2) * xp.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * xp.arcsin(xp.sqrt(xp.minimum(a, 1.0)))


class _Scalar:
    """The numpy functions `_formulas` uses, for one transaction as Python floats: the same
    formulas then run without numpy's per-call overhead (~1 us a call on one element)."""

    radians = staticmethod(math.radians)
    sin = staticmethod(math.sin)
    cos = staticmethod(math.cos)
    arcsin = staticmethod(math.asin)
    sqrt = staticmethod(math.sqrt)
    minimum = staticmethod(min)
    floor = staticmethod(math.floor)
    log1p = staticmethod(math.log1p)

    @staticmethod
    def known(x: float, value: Any) -> float:
        """`value` where `x` is known, NaN where it is missing."""
        return float(value) if x == x else math.nan


_SCALAR: Final = _Scalar()
_VECTOR: Final = _Vector()


def category_codes(values: Any) -> npt.NDArray[np.intp]:
    """Index of each category in `CATEGORIES`; raises on an unknown category."""
    try:
        if len(values) <= _LOOKUP_MAX:
            return np.array([_CATEGORY_CODE[v] for v in values], dtype=np.intp)
    except KeyError as exc:
        raise FeatureSchemaMismatch(f"merchant_category {exc.args[0]!r} is unknown") from exc
    import pandas as pd

    codes = pd.Categorical(np.asarray(values, dtype=object), categories=CATEGORIES).codes
    if (codes < 0).any():
        bad = np.asarray(values, dtype=object)[codes < 0][0]
        raise FeatureSchemaMismatch(f"merchant_category {bad!r} is unknown")
    return codes.astype(np.intp)


def _formulas(
    xp: Any, raw: Mapping[str, Any], code: Any, typical: Any, online: Any
) -> tuple[IndicatorInputs, list[Any], IndicatorFlags]:
    """Every feature formula, written once for arrays (xp=np) and floats (xp=_SCALAR).

    Returns the indicator inputs, the feature values in `FEATURE_NAMES` order and the
    indicator flags.
    """
    known = (_SCALAR if xp is _SCALAR else _VECTOR).known
    amount = raw["amount"]
    local = raw["epoch_seconds"] + 60.0 * raw["utc_offset_minutes"]
    inputs = IndicatorInputs(
        amount=amount,
        amount_to_typical=amount / typical,
        local_hour=xp.floor(local / 3600.0) % 24,
        distance_km=haversine_km(
            raw["lat"], raw["long"], raw["merch_lat"], raw["merch_long"], xp=xp
        ),
        card_age_days=raw["card_age_days"],
        is_foreign=raw["is_foreign"],
        is_online=online,
        card_tx_1h=raw["card_tx_1h"],
        amount_to_card_mean=raw["amount_to_card_mean"],
    )
    flags = indicator_flags(inputs)
    features = [
        xp.log1p(amount),
        inputs.amount_to_typical,
        inputs.local_hour,
        (xp.floor(local / 86400.0) + 3) % 7,  # 1970-01-01 was a Thursday; Monday = 0
        flags.late_night,
        inputs.distance_km,
        raw["customer_age"],
        inputs.card_age_days,
        known(inputs.card_age_days, inputs.card_age_days < NEW_CARD_DAYS),
        inputs.is_foreign,
        code,
        inputs.is_online,
        xp.log1p(raw["city_pop"]),
        noisy_or(flags),
        *(raw[name] for name in HISTORY_FEATURES),
    ]
    return inputs, features, flags


def numeric_columns(columns: Columns) -> dict[str, Any]:
    """The numeric canonical columns and the history features: Python floats for one
    transaction, else float64 arrays (the formulas here and the business rules accept both).
    A missing profile value (None) is NaN; absent history columns are NaN (unknown)."""
    missing = [c for c in _NEEDED if c not in columns]
    if missing:
        raise FeatureSchemaMismatch(f"missing columns: {', '.join(missing)}")
    n = len(columns["amount"])
    history = {h: columns[h] if h in columns else [math.nan] * n for h in HISTORY_FEATURES}
    if n == 1:
        one = {name: _float(_first(columns[name])) for name in _NUMERIC}
        return one | {name: _float(_first(values)) for name, values in history.items()}
    many = {name: np.asarray(columns[name], dtype=np.float64) for name in _NUMERIC}
    return many | {name: np.asarray(values, dtype=np.float64) for name, values in history.items()}


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def derive(columns: Columns, *, numeric: Mapping[str, Any] | None = None) -> Derived:
    """Compute the feature matrix, the indicators and the risk score in one pass.

    One transaction runs the formulas on Python floats; more run them on numpy arrays
    filled into a preallocated matrix. Both paths share `_formulas`. `numeric`: the
    columns' `numeric_columns` when the caller made them already (the rules read them too).
    """
    raw = numeric if numeric is not None else numeric_columns(columns)
    codes = category_codes(columns["merchant_category"])
    if len(codes) == 1:
        return _derive_one(raw, codes[0])
    inputs, features, flags = _formulas(np, raw, codes, _TYPICAL[codes], _ONLINE[codes])
    out = np.empty((len(codes), len(FEATURE_NAMES)), dtype=np.float64)
    for k, column in enumerate(features):
        out[:, k] = column
    fired = np.empty((len(codes), len(INDICATORS)), dtype=np.bool_)
    for k, flag in enumerate(flags):
        fired[:, k] = flag
    values = np.empty((len(codes), len(INDICATORS)), dtype=np.float64)
    for k, quantity in enumerate(inputs.as_tuple()):
        values[:, k] = quantity
    return Derived(
        matrix=out, fired=fired, values=values, risk_score=out[:, RISK_SCORE_COLUMN].copy()
    )


def _first(values: Any) -> Any:
    return values.iloc[0] if hasattr(values, "iloc") else values[0]


def _derive_one(raw: Mapping[str, Any], code: Any) -> Derived:
    inputs, features, flags = _formulas(
        _SCALAR, raw, float(code), float(_TYPICAL[code]), float(_ONLINE[code])
    )
    matrix = np.array([features], dtype=np.float64)
    return Derived(
        matrix=matrix,
        fired=np.array([flags], dtype=np.bool_),
        values=np.array([inputs.as_tuple()], dtype=np.float64),
        risk_score=matrix[:, RISK_SCORE_COLUMN].copy(),
    )


def history_events(columns: Mapping[str, Sequence[Any]]) -> EventColumns:
    """The card-history events (`sproxxo.history`) of canonical columns."""
    return EventColumns.of(
        columns["epoch_seconds"],
        columns["amount"],
        category_codes(columns["merchant_category"]),
        columns["merch_lat"],
        columns["merch_long"],
        columns["transaction_id"],
    )


def fill_profiles(
    transactions: Sequence[Transaction],
    columns: dict[str, list[Any]],
    profiles: Sequence[Profile | None],
) -> Sequence[Transaction]:
    """Missing profile fields taken from the card's stored profile at each transaction's
    time: set in `columns` (a filled column is a new list) and in the transactions returned
    (each copied with its fields when first read; the same sequence when nothing was filled)."""
    missing = {name: [v is None for v in columns[name]] for name in PROFILE_COLUMNS}
    updates: dict[int, dict[str, Any]] = {}
    for i, profile in enumerate(profiles):
        if profile is None:  # most cards in a batch: nothing to fill from
            continue
        gaps = [name for name in PROFILE_COLUMNS if missing[name][i]]
        if gaps:
            values = profile.fields_at(event_time_ms(columns["epoch_seconds"][i]))
            updates[i] = {name: values[name] for name in gaps}
    if not updates:
        return transactions
    for name in PROFILE_COLUMNS:
        column = list(columns[name])
        for i, update in updates.items():
            column[i] = update.get(name, column[i])
        columns[name] = column
    return _Updated(transactions, updates)


@dataclass(frozen=True)
class _Updated(Sequence[Transaction]):
    """Transactions with fields updated, each copied when read (the rules read a few)."""

    base: Sequence[Transaction]
    updates: dict[int, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]
        update = self.updates.get(index)
        tx = self.base[index]
        return tx if update is None else tx.model_copy(update=update)


def build_features(columns: Columns) -> FloatArray:
    """The model's input matrix (columns = `FEATURE_NAMES`) for canonical columns."""
    return derive(columns).matrix


def columns_from_transactions(transactions: Sequence[Transaction]) -> dict[str, list[Any]]:
    """Canonical columns for validated transactions (amounts as float USD)."""
    stamps = [tx.timestamp for tx in transactions]
    offsets = [stamp.utcoffset() for stamp in stamps]
    return {
        "transaction_id": [tx.transaction_id for tx in transactions],
        "card_id": [tx.card_id for tx in transactions],
        "amount": [float(tx.amount) for tx in transactions],
        "currency": [tx.currency for tx in transactions],
        "epoch_seconds": [stamp.timestamp() for stamp in stamps],
        "utc_offset_minutes": [o.total_seconds() / 60 if o else 0.0 for o in offsets],
        "merchant_id": [tx.merchant_id for tx in transactions],
        "merchant_category": [tx.merchant_category.value for tx in transactions],
        "lat": [tx.lat for tx in transactions],
        "long": [tx.long for tx in transactions],
        "merch_lat": [tx.merch_lat for tx in transactions],
        "merch_long": [tx.merch_long for tx in transactions],
        "card_age_days": [tx.card_age_days for tx in transactions],
        "is_foreign": [tx.is_foreign for tx in transactions],
        "customer_age": [tx.customer_age for tx in transactions],
        "city_pop": [tx.city_pop for tx in transactions],
    }


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
        "lat": _optional(row["lat"], float),
        "long": _optional(row["long"], float),
        "merch_lat": float(row["merch_lat"]),
        "merch_long": float(row["merch_long"]),
        "card_age_days": _optional(row["card_age_days"], int),
        "is_foreign": bool(row["is_foreign"]),
        "customer_age": _optional(row["customer_age"], int),
        "city_pop": _optional(row["city_pop"], int),
    }


def _optional(value: Any, kind: Callable[[Any], Any]) -> Any:
    """A profile value, None when it is missing (None or NaN)."""
    return None if value is None or value != value else kind(value)
