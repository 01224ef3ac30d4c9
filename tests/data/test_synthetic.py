"""The training-data contract of the synthetic source."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sproxxo.features import (
    BASE_FEATURES,
    CANONICAL_COLUMNS,
    LABEL_COLUMN,
    build_features,
    transaction_body,
)
from sproxxo.jobs.data import DataSpec, load
from sproxxo.schemas import CATEGORIES, Transaction
from sproxxo.sources.files import check_frame
from sproxxo.sources.synthetic import DEFAULT_START, generate

EXPECTED_DTYPES = {
    "transaction_id": "object",
    "card_id": "object",
    "amount": "float64",
    "currency": "object",
    "epoch_seconds": "int64",
    "utc_offset_minutes": "int64",
    "merchant_id": "object",
    "merchant_category": "object",
    "lat": "float64",
    "long": "float64",
    "merch_lat": "float64",
    "merch_long": "float64",
    "card_age_days": "int64",
    "is_foreign": "bool",
    "customer_age": "int64",
    "city_pop": "int64",
    LABEL_COLUMN: "int64",
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A mid-sized synthetic sample."""
    return generate(60_000, seed=7)


def test_generate_columns_are_canonical_plus_label(frame: pd.DataFrame) -> None:
    """Columns are exactly CANONICAL_COLUMNS followed by is_fraud."""
    assert tuple(frame.columns) == (*CANONICAL_COLUMNS, LABEL_COLUMN)
    assert len(frame) == 60_000


def test_generate_dtypes(frame: pd.DataFrame) -> None:
    """Every column has its contracted dtype."""
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES


def test_generate_fraud_rate_in_range(frame: pd.DataFrame) -> None:
    """Labels are 0/1 with a fraud rate between 0.5% and 1.2%."""
    assert set(frame[LABEL_COLUMN].unique()) == {0, 1}
    assert 0.005 <= frame[LABEL_COLUMN].mean() <= 0.012


@pytest.mark.parametrize("seed", [1, 123])
def test_generate_deterministic_for_seed(seed: int) -> None:
    """The same seed gives the same frame; another seed gives another frame."""
    a, b = generate(5_000, seed=seed), generate(5_000, seed=seed)
    pd.testing.assert_frame_equal(a, b)
    assert not generate(5_000, seed=seed + 1)[["amount", "card_id"]].equals(
        a[["amount", "card_id"]]
    )


def test_generate_sorted_by_time_with_unique_ids(frame: pd.DataFrame) -> None:
    """Rows are in time order, ids are unique, and the window starts at DEFAULT_START."""
    assert frame["epoch_seconds"].is_monotonic_increasing
    assert frame["transaction_id"].is_unique
    first = datetime.fromtimestamp(int(frame["epoch_seconds"].min()), tz=DEFAULT_START.tzinfo)
    assert DEFAULT_START - timedelta(days=1) <= first < DEFAULT_START + timedelta(days=1)


def test_generate_values_within_schema_bounds(frame: pd.DataFrame) -> None:
    """Every row satisfies the file-source range rules and the known categories."""
    check_frame(frame, origin="synthetic")
    assert set(frame["merchant_category"]) <= set(CATEGORIES)
    assert (frame["currency"] == "USD").all()
    assert (frame["amount"] == frame["amount"].round(2)).all()
    assert frame["card_id"].str.fullmatch(r"card_[0-9a-f]{12}").all()
    assert not frame[list(CANONICAL_COLUMNS)].isna().any().any()


def test_generate_fraud_differs_from_legit(frame: pd.DataFrame) -> None:
    """Planted patterns are present: fraud is larger and more often at night than legit traffic."""
    features = pd.DataFrame(build_features(frame)[:, [0, 4]], columns=["log_amount", "is_night"])
    by_label = features.groupby(frame[LABEL_COLUMN].to_numpy()).mean()
    assert by_label.loc[1, "log_amount"] > by_label.loc[0, "log_amount"] + 1
    assert by_label.loc[1, "is_night"] > 3 * by_label.loc[0, "is_night"]


def _as_transaction_json(row: pd.Series) -> str:
    return json.dumps(transaction_body(row))


def test_generate_rows_validate_as_transactions(frame: pd.DataFrame) -> None:
    """A sample of rows (frauds included) validates through the serving schema, same local time."""
    sample = pd.concat(
        [frame.sample(400, random_state=0), frame[frame[LABEL_COLUMN] == 1].head(100)]
    )
    failures = []
    for _, row in sample.iterrows():
        try:
            tx = Transaction.model_validate_json(_as_transaction_json(row))
        except ValidationError as exc:
            failures.append((row["transaction_id"], exc.errors()))
            continue
        assert tx.timestamp.timestamp() == row["epoch_seconds"]
    assert failures == []


def test_load_synthetic_matches_generate() -> None:
    """load(DataSpec('synthetic')) is generate() with the given rows and seed."""
    pd.testing.assert_frame_equal(
        load(DataSpec("synthetic", rows=2_000, seed=3), token_key=b"k"), generate(2_000, seed=3)
    )


@pytest.mark.parametrize("rows", [0, -5])
def test_generate_refuses_non_positive_rows(rows: int) -> None:
    """Asking for no rows is an error."""
    with pytest.raises(ValueError, match="n_rows"):
        generate(rows)


def test_generate_tiny_frame_keeps_contract() -> None:
    """Even a tiny frame keeps the columns and dtypes."""
    tiny = generate(10, seed=1)
    assert len(tiny) == 10
    assert {c: str(t) for c, t in tiny.dtypes.items()} == EXPECTED_DTYPES
    matrix = build_features(tiny)
    assert np.isfinite(matrix[:, : len(BASE_FEATURES)]).all()
    assert np.isnan(matrix[:, len(BASE_FEATURES) :]).all()  # no history asked for
