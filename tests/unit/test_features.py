"""`build_features`: one feature function for training and serving, with known values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sproxxo.errors import FeatureSchemaMismatch
from sproxxo.features import (
    CANONICAL_COLUMNS,
    FEATURE_NAMES,
    build_features,
    category_codes,
    columns_from_transactions,
    derive,
    haversine_km,
)
from sproxxo.risk import INDICATOR_NAMES
from sproxxo.schemas import CATEGORIES, EXAMPLE_TRANSACTION, Transaction

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
MONDAY_NOON_UTC = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # 2026-01-05 is a Monday


def _row(**overrides: Any) -> dict[str, list[Any]]:
    """One canonical row (daytime grocery purchase near home) as a mapping of 1-element lists."""
    row: dict[str, Any] = {
        "transaction_id": "tx-1",
        "card_id": "card_abcdef12",
        "amount": 42.5,
        "currency": "USD",
        "epoch_seconds": MONDAY_NOON_UTC.timestamp(),
        "utc_offset_minutes": 0,
        "merchant_id": "m-1",
        "merchant_category": "grocery_pos",
        "lat": 19.4326,
        "long": -99.1332,
        "merch_lat": 19.44,
        "merch_long": -99.14,
        "card_age_days": 420,
        "is_foreign": False,
        "customer_age": 34,
        "city_pop": 9_209_944,
    }
    row.update(overrides)
    return {k: [v] for k, v in row.items()}


def _feature(name: str, **overrides: Any) -> float:
    return float(build_features(_row(**overrides))[0, COL[name]])


def test_build_features_columns_match_feature_names() -> None:
    """The matrix has one float64 column per FEATURE_NAMES entry, one row per input row."""
    matrix = build_features(_row())
    assert matrix.shape == (1, len(FEATURE_NAMES))
    assert matrix.dtype == np.float64
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_build_features_known_values_in_feature_order() -> None:
    """Each column holds the documented transform of the canonical row."""
    features = dict(zip(FEATURE_NAMES, build_features(_row())[0], strict=True))
    assert features["log_amount"] == pytest.approx(np.log1p(42.5))
    assert features["amount_to_typical"] == pytest.approx(42.5 / 100.0)  # grocery_pos median
    assert features["hour"] == 12
    assert features["weekday"] == 0
    assert features["is_night"] == 0
    assert features["distance_km"] == pytest.approx(1.07, abs=0.05)
    assert features["customer_age"] == 34
    assert features["card_age_days"] == 420
    assert features["is_new_card"] == 0
    assert features["is_foreign"] == 0
    assert features["category_code"] == CATEGORIES.index("grocery_pos")
    assert features["is_online"] == 0
    assert features["log_city_pop"] == pytest.approx(np.log1p(9_209_944))
    assert features["risk_score"] == 0


@pytest.mark.parametrize(
    ("when", "offset_minutes", "hour", "weekday"),
    [
        (datetime(2026, 1, 5, 12, 0, tzinfo=UTC), 0, 12, 0),  # Monday noon UTC
        (datetime(2026, 1, 5, 3, 0, tzinfo=UTC), -360, 21, 6),  # Sunday 21:00 in Mexico City
        (datetime(2026, 1, 4, 23, 30, tzinfo=UTC), 60, 0, 0),  # Monday 00:30 in Paris
        (datetime(2026, 1, 10, 23, 59, tzinfo=UTC), 0, 23, 5),  # Saturday
        (datetime(2026, 1, 11, 0, 0, tzinfo=UTC), 0, 0, 6),  # Sunday midnight
        (datetime(1970, 1, 1, 0, 0, tzinfo=UTC), 0, 0, 3),  # the epoch was a Thursday
        (datetime(2026, 1, 5, 0, 0, tzinfo=UTC), 330, 5, 0),  # India, half-hour offset
    ],
)
def test_build_features_local_hour_and_weekday(
    when: datetime, offset_minutes: int, hour: int, weekday: int
) -> None:
    """hour and weekday (Monday = 0) come from epoch seconds plus the UTC offset."""
    overrides = {"epoch_seconds": when.timestamp(), "utc_offset_minutes": offset_minutes}
    assert _feature("hour", **overrides) == hour
    assert _feature("weekday", **overrides) == weekday
    local = when + timedelta(minutes=offset_minutes)
    assert (local.hour, local.weekday()) == (hour, weekday)


@pytest.mark.parametrize(("hour", "night"), [(23, 0), (0, 1), (4, 1), (5, 0)])
def test_build_features_is_night_matches_late_night_indicator(hour: int, night: int) -> None:
    """is_night is 1 for local hours 0-4 and equals the late_night indicator."""
    epoch = datetime(2026, 1, 5, hour, 15, tzinfo=UTC).timestamp()
    derived = derive(_row(epoch_seconds=epoch))
    assert derived.matrix[0, COL["is_night"]] == night
    assert derived.fired[0, INDICATOR_NAMES.index("late_night")] == bool(night)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ((19.4326, -99.1332), (20.6597, -103.3496), 461.0),  # Mexico City - Guadalajara
        ((40.7128, -74.0060), (51.5074, -0.1278), 5570.0),  # New York - London
        ((0.0, 0.0), (0.0, 180.0), np.pi * 6371.0088),  # half the equator
    ],
)
def test_haversine_km_known_distances(
    a: tuple[float, float], b: tuple[float, float], km: float
) -> None:
    """Great-circle distances match known values within 1%."""
    assert float(haversine_km(a[0], a[1], b[0], b[1])) == pytest.approx(km, rel=0.01)


def test_haversine_km_zero_and_symmetric() -> None:
    """The distance from a point to itself is 0 and the distance is symmetric."""
    lat1, lon1 = np.array([19.43, -33.9]), np.array([-99.13, 151.2])
    lat2, lon2 = np.array([25.69, 35.7]), np.array([-100.32, 139.7])
    np.testing.assert_allclose(haversine_km(lat1, lon1, lat1, lon1), 0.0, atol=1e-9)
    np.testing.assert_allclose(
        haversine_km(lat1, lon1, lat2, lon2), haversine_km(lat2, lon2, lat1, lon1)
    )


def test_build_features_distance_column_is_haversine() -> None:
    """distance_km is the customer-to-merchant haversine distance."""
    km = _feature("distance_km", merch_lat=20.6597, merch_long=-103.3496)
    assert km == pytest.approx(461.0, rel=0.01)


def test_category_codes_follow_categories_order() -> None:
    """Each category's code is its index in CATEGORIES, for short and long inputs alike."""
    assert category_codes(list(CATEGORIES)).tolist() == list(range(len(CATEGORIES)))
    many = list(CATEGORIES) * 10  # > 64 values: the vectorised path
    assert category_codes(many).tolist() == list(range(len(CATEGORIES))) * 10


@pytest.mark.parametrize("n", [1, 65, 500])
def test_category_codes_unknown_category_raises(n: int) -> None:
    """An unknown merchant category raises FeatureSchemaMismatch naming the value."""
    values = ["grocery_pos"] * (n - 1) + ["crypto"]
    with pytest.raises(FeatureSchemaMismatch, match="crypto"):
        category_codes(values)


def test_build_features_unknown_category_raises() -> None:
    """build_features refuses a row with an unknown category."""
    with pytest.raises(FeatureSchemaMismatch, match="merchant_category"):
        build_features(_row(merchant_category="casino"))


@pytest.mark.parametrize("column", ["amount", "epoch_seconds", "utc_offset_minutes", "city_pop"])
def test_build_features_missing_column_raises(column: str) -> None:
    """A missing input column raises FeatureSchemaMismatch naming it."""
    row = _row()
    del row[column]
    with pytest.raises(FeatureSchemaMismatch, match=column):
        build_features(row)


@pytest.mark.parametrize(
    ("category", "online"),
    [("shopping_net", 1), ("misc_net", 1), ("grocery_net", 1), ("shopping_pos", 0), ("travel", 0)],
)
def test_build_features_is_online_for_net_categories(category: str, online: int) -> None:
    """is_online is 1 exactly for the card-not-present categories."""
    assert _feature("is_online", merchant_category=category) == online


def test_build_features_dict_row_equals_dataframe_row() -> None:
    """A 1-row mapping (serving) and the same row in a DataFrame (training) give equal features."""
    rows = [
        _row(),
        _row(
            amount=1999.0,
            merchant_category="shopping_net",
            card_age_days=1,
            is_foreign=True,
            epoch_seconds=datetime(2026, 1, 7, 9, tzinfo=UTC).timestamp(),
            utc_offset_minutes=-360,
        ),
    ]
    frame = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True)
    batch = build_features(frame)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(build_features(row)[0], batch[i])
        np.testing.assert_array_equal(build_features(frame.iloc[[i]])[0], batch[i])


def test_build_features_risky_row_has_positive_risk_score() -> None:
    """A night-time online purchase on a new card far away gets a positive risk score."""
    night = datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp()  # 03:00 in Mexico City
    score = _feature(
        "risk_score",
        amount=1500.0,
        merchant_category="shopping_net",
        card_age_days=1,
        epoch_seconds=night,
        utc_offset_minutes=-360,
        merch_lat=25.0,
        merch_long=-80.0,
        is_foreign=True,
    )
    assert 0.8 < score <= 1.0


def _transaction(timestamp: str, **overrides: Any) -> Transaction:
    body = {**EXAMPLE_TRANSACTION, "timestamp": timestamp, **overrides}
    return Transaction.model_validate_json(json.dumps(body))


def test_columns_from_transactions_canonical_layout() -> None:
    """columns_from_transactions returns every canonical column with one entry per transaction."""
    txs = [_transaction("2026-01-05T10:00:00-06:00"), _transaction("2026-01-05T10:00:00Z")]
    cols = columns_from_transactions(txs)
    assert tuple(cols) == CANONICAL_COLUMNS
    assert all(len(v) == 2 for v in cols.values())
    assert cols["amount"] == [42.5, 42.5]
    assert isinstance(cols["amount"][0], float)
    assert cols["merchant_category"] == ["grocery_pos", "grocery_pos"]


@pytest.mark.parametrize(
    ("timestamp", "offset_minutes", "hour", "weekday"),
    [
        ("2026-01-05T02:30:00-06:00", -360, 2, 0),
        ("2026-01-05T02:30:00Z", 0, 2, 0),
        ("2026-01-04T23:10:00+05:30", 330, 23, 6),
        ("2026-01-05T00:05:00+14:00", 840, 0, 0),
    ],
)
def test_columns_from_transactions_local_time_from_offset(
    timestamp: str, offset_minutes: int, hour: int, weekday: int
) -> None:
    """The offset in the timestamp becomes utc_offset_minutes and features use local time."""
    tx = _transaction(timestamp)
    cols = columns_from_transactions([tx])
    assert cols["utc_offset_minutes"] == [offset_minutes]
    assert cols["epoch_seconds"] == [tx.timestamp.timestamp()]
    matrix = build_features(cols)
    assert (matrix[0, COL["hour"]], matrix[0, COL["weekday"]]) == (hour, weekday)


def test_columns_from_transactions_same_instant_different_zone() -> None:
    """The same instant in two zones has equal epoch seconds but different local hours."""
    utc = _transaction("2026-01-05T08:00:00Z")
    mexico = _transaction(
        datetime(2026, 1, 5, 8, tzinfo=UTC).astimezone(timezone(timedelta(hours=-6))).isoformat()
    )
    cols = columns_from_transactions([utc, mexico])
    assert cols["epoch_seconds"][0] == cols["epoch_seconds"][1]
    assert build_features(cols)[:, COL["hour"]].tolist() == [8.0, 2.0]


def test_derive_single_row_path_matches_batch_path() -> None:
    """One transaction (float formulas) gives the batch path's features and indicators."""
    from sproxxo.features import derive
    from sproxxo.sources.synthetic import generate

    frame = generate(3000, seed=21)
    batch = derive(frame)
    for i in range(0, 3000, 7):
        one = derive(frame.iloc[i : i + 1])
        np.testing.assert_allclose(one.matrix[0], batch.matrix[i], rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(one.fired[0], batch.fired[i])
        np.testing.assert_allclose(one.values[0], batch.values[i], rtol=1e-12, atol=1e-9)


def test_fill_profiles_fills_the_gaps_in_the_columns_and_in_each_transaction() -> None:
    """A missing profile field takes the card's stored value at the transaction's time, in
    the columns and in the transaction read back; given fields and unknown cards stay."""
    from sproxxo.features import PROFILE_COLUMNS, fill_profiles
    from sproxxo.history import DAY_MS, YEAR_MS, Profile, event_time_ms

    base = Transaction.model_validate_json(json.dumps(EXAMPLE_TRANSACTION))
    bare = base.model_copy(update=dict.fromkeys(PROFILE_COLUMNS))
    transactions = [bare, base, bare.model_copy(update={"lat": 1.0}), bare]
    t_ms = event_time_ms(base.timestamp.timestamp())
    profile = Profile(25.5, -100.25, 1_000, 40, t_ms - 2 * YEAR_MS, t_ms - 3 * DAY_MS)
    columns = columns_from_transactions(transactions)
    given = {name: list(column) for name, column in columns.items()}
    filled = fill_profiles(transactions, columns, [profile, profile, profile, None])
    at = {"lat": 25.5, "long": -100.25, "city_pop": 1_000, "customer_age": 42}
    at["card_age_days"] = 3
    expected = [
        bare.model_copy(update=at),
        base,
        bare.model_copy(update=at | {"lat": 1.0}),
        bare,
    ]
    assert [filled[i] for i in range(4)] == expected
    assert columns == columns_from_transactions(expected)
    assert given == columns_from_transactions(transactions)  # the lists were not changed
    assert fill_profiles(transactions, columns, [None] * 4) is transactions
