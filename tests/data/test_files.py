"""The file source: Sparkov CSVs lose their PII, canonical files round-trip, bad files fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sproxxo.errors import DataSourceError
from sproxxo.features import CANONICAL_COLUMNS, FEATURE_NAMES, LABEL_COLUMN, build_features
from sproxxo.jobs.data import DataSpec, load
from sproxxo.schemas import EXAMPLE_TRANSACTION, Transaction
from sproxxo.sources.files import DEFAULT_TOKEN_KEY, load_file, tokenize
from sproxxo.sources.synthetic import generate

CARD_A, CARD_B = 4613314721966_123, 2703186189652095
PII_STRINGS = (
    "Jennifer",
    "Banks",
    "561 Perry Cove",
    "Stephanie",
    "Gill",
    "43039 Riley Greens",
    "Psychologist, counselling",
    "Moravian Falls",
    "28654",
    "Rippin, Kub and Mann",
    "Heller, Gutmann and Zieme",
)


def _sparkov_rows() -> list[dict[str, Any]]:
    """Three transactions on card A, one on card B, in the public Sparkov layout."""
    base_a = {
        "cc_num": CARD_A,
        "first": "Jennifer",
        "last": "Banks",
        "gender": "F",
        "street": "561 Perry Cove",
        "city": "Moravian Falls",
        "state": "NC",
        "zip": 28654,
        "lat": 36.0788,
        "long": -81.1781,
        "city_pop": 3495,
        "job": "Psychologist, counselling",
        "dob": "1988-03-09",
    }
    base_b = {
        "cc_num": CARD_B,
        "first": "Stephanie",
        "last": "Gill",
        "gender": "F",
        "street": "43039 Riley Greens",
        "city": "Orient",
        "state": "WA",
        "zip": 99160,
        "lat": 48.8878,
        "long": -118.2105,
        "city_pop": 149,
        "job": "Special educational needs teacher",
        "dob": "1978-06-21",
    }
    rows = [
        (base_a, "2019-01-03 12:00:18", "fraud_Rippin, Kub and Mann", "misc_net", 4.97, 0),
        (base_a, "2019-01-01 00:00:18", "fraud_Rippin, Kub and Mann", "misc_net", 107.23, 0),
        (
            base_b,
            "2019-01-02 08:30:00",
            "fraud_Heller, Gutmann and Zieme",
            "grocery_pos",
            220.11,
            0,
        ),
        (
            base_a,
            "2019-01-11 01:00:00",
            "fraud_Heller, Gutmann and Zieme",
            "shopping_net",
            981.5,
            1,
        ),
    ]
    out = []
    for i, (base, when, merchant, category, amt, label) in enumerate(rows):
        out.append(
            {
                "trans_date_trans_time": when,
                "merchant": merchant,
                "category": category,
                "amt": amt,
                **base,
                "trans_num": f"0b242abb623afc578575680df30655b{i}",
                "unix_time": 1325376018 + i,
                "merch_lat": base["lat"] + 0.1,
                "merch_long": base["long"] - 0.1,
                "is_fraud": label,
            }
        )
    order = [
        "trans_date_trans_time",
        "cc_num",
        "merchant",
        "category",
        "amt",
        "first",
        "last",
        "gender",
        "street",
        "city",
        "state",
        "zip",
        "lat",
        "long",
        "city_pop",
        "job",
        "dob",
        "trans_num",
        "unix_time",
        "merch_lat",
        "merch_long",
        "is_fraud",
    ]
    return [{k: row[k] for k in order} for row in out]


@pytest.fixture(params=[False, True], ids=["no-index", "kaggle-index"])
def sparkov_csv(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A Sparkov CSV, with or without Kaggle's leading unnamed index column."""
    path = tmp_path / "fraudTrain.csv"
    pd.DataFrame(_sparkov_rows()).to_csv(path, index=request.param)
    if request.param:
        assert path.read_text().startswith(",trans_date_trans_time")
    return path


def test_load_file_sparkov_canonical_layout(sparkov_csv: Path) -> None:
    """A Sparkov CSV becomes canonical columns plus is_fraud, sorted by time."""
    frame = load_file(sparkov_csv)
    assert tuple(frame.columns) == (*CANONICAL_COLUMNS, LABEL_COLUMN)
    assert frame["epoch_seconds"].is_monotonic_increasing
    assert frame["amount"].tolist() == [107.23, 220.11, 4.97, 981.5]
    assert frame["merchant_category"].tolist() == [
        "misc_net",
        "grocery_pos",
        "misc_net",
        "shopping_net",
    ]
    assert frame[LABEL_COLUMN].tolist() == [0, 0, 0, 1]
    assert (frame["utc_offset_minutes"] == 0).all()
    assert (frame["currency"] == "USD").all()
    assert build_features(frame).shape == (4, len(FEATURE_NAMES))


def test_load_file_sparkov_keeps_local_wall_clock(sparkov_csv: Path) -> None:
    """Sparkov's naive local time becomes epoch seconds with offset 0 (same wall-clock hour)."""
    frame = load_file(sparkov_csv)
    hours = build_features(frame)[:, 2].tolist()
    assert hours == [0.0, 8.0, 12.0, 1.0]


def test_load_file_sparkov_drops_pii(sparkov_csv: Path) -> None:
    """No PII column survives; no name, street, job, city, zip or card number appears anywhere."""
    frame = load_file(sparkov_csv)
    assert not {
        "cc_num",
        "first",
        "last",
        "street",
        "gender",
        "job",
        "zip",
        "city",
        "dob",
        "merchant",
        "state",
    } & set(frame.columns)
    cells = " | ".join(frame.astype(str).to_numpy().ravel())
    for text in (*PII_STRINGS, str(CARD_A), str(CARD_B), str(CARD_A)[-8:]):
        assert text not in cells


def test_load_file_sparkov_card_tokens(sparkov_csv: Path) -> None:
    """The card becomes a stable keyed token per card; different keys give different tokens."""
    frame = load_file(sparkov_csv)
    tokens = frame["card_id"]
    assert tokens.str.fullmatch(r"card_[a-p]{20}").all()
    assert tokens.nunique() == 2
    assert tokens[0] == tokens[2] == tokens[3] != tokens[1]
    other = load_file(sparkov_csv, token_key=b"another-key")
    assert set(other["card_id"]).isdisjoint(set(tokens))
    assert frame["merchant_id"].str.fullmatch(r"m-[a-p]{20}").all()


def test_load_file_sparkov_ages(sparkov_csv: Path) -> None:
    """customer_age comes from dob at transaction time; card_age_days counts from first sighting."""
    frame = load_file(sparkov_csv)
    assert frame["customer_age"].tolist() == [30, 40, 30, 30]
    # card A first seen 2019-01-01 00:00:18: 2.5 days later -> 2, ten days later -> 10.
    assert frame["card_age_days"].tolist() == [0, 0, 2, 10]


def test_load_file_sparkov_without_optional_pii_columns(tmp_path: Path) -> None:
    """A Sparkov file already stripped of names and addresses still loads."""
    raw = pd.DataFrame(_sparkov_rows()).drop(columns=["first", "last", "street", "job", "gender"])
    path = tmp_path / "stripped.csv"
    raw.to_csv(path, index=False)
    assert len(load_file(path)) == 4


def test_load_file_canonical_parquet_round_trip(tmp_path: Path) -> None:
    """A canonical Parquet file loads back unchanged (extra columns are ignored)."""
    frame = generate(500, seed=4)
    path = tmp_path / "canonical.parquet"
    frame.assign(extra_column=1).to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_file(path), frame)
    assert len(load(DataSpec("file", path=str(path)), token_key=DEFAULT_TOKEN_KEY)) == 500


def test_load_file_canonical_csv(tmp_path: Path) -> None:
    """A canonical CSV loads with the same values."""
    frame = generate(200, seed=4)
    path = tmp_path / "canonical.csv"
    frame.to_csv(path, index=False)
    loaded = load_file(path)
    np.testing.assert_allclose(build_features(loaded), build_features(frame))


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("absent.csv", None, "no such file"),
        ("empty.csv", lambda p: _write(p, b""), "cannot be read"),
        ("header.csv", lambda p: _write(p, b"transaction_id,amount\n"), "no rows"),
        ("wrong.csv", lambda p: _write(p, b"a,b\n1,2\n"), "missing columns"),
        ("corrupt.parquet", lambda p: _write(p, b"PAR1 this is not parquet"), "cannot be read"),
        ("data.txt", lambda p: _write(p, b"x"), "unsupported file type"),
    ],
)
def test_load_file_bad_file_raises_clear_error(
    tmp_path: Path, name: str, make: Any, message: str
) -> None:
    """Unreadable, empty or mis-shaped files raise DataSourceError naming file and problem."""
    path = tmp_path / name
    if make:
        make(path)
    with pytest.raises(DataSourceError, match=message) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_load_file_wrong_columns_lists_missing(tmp_path: Path) -> None:
    """A canonical file missing columns names each missing column."""
    path = tmp_path / "partial.parquet"
    generate(50).drop(columns=["amount", "city_pop"]).to_parquet(path)
    with pytest.raises(DataSourceError, match="amount") as info:
        load_file(path)
    assert "city_pop" in str(info.value)


def test_load_file_sparkov_missing_column(tmp_path: Path) -> None:
    """A Sparkov file without the amount or card number column is refused, naming it."""
    for column in ("amt", "cc_num", "dob"):
        path = tmp_path / f"no_{column}.csv"
        pd.DataFrame(_sparkov_rows()).drop(columns=[column]).to_csv(path, index=False)
        with pytest.raises(DataSourceError, match=f"Sparkov layout is missing columns.*{column}"):
            load_file(path)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount", 0.0),
        ("amount", -3.0),
        ("amount", 2_000_000.0),
        ("lat", 95.0),
        ("merchant_category", "casino"),
        ("customer_age", 130),
        ("card_age_days", -1),
        (LABEL_COLUMN, 2),
    ],
)
def test_load_file_out_of_range_value_raises(tmp_path: Path, column: str, value: Any) -> None:
    """A value outside the schema's hard bounds is refused, naming the column and a bad value."""
    frame = generate(50, seed=2)
    frame[column] = frame[column].astype(object)
    frame.loc[7, column] = value
    frame[column] = frame[column].infer_objects()
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataSourceError, match=f"1 rows break the range rule of {column}") as info:
        load_file(path)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")
def test_load_file_sparkov_bad_dob_refused(tmp_path: Path) -> None:
    """An unparseable date of birth yields an impossible age that the range rule refuses."""
    raw = pd.DataFrame(_sparkov_rows())
    raw.loc[0, "dob"] = "not a date"
    path = tmp_path / "bad_dob.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(DataSourceError, match="customer_age"):
        load_file(path)


def test_load_file_needs_path() -> None:
    """The file source without a path is a clear DataSourceError."""
    with pytest.raises(DataSourceError, match="--path"):
        load(DataSpec("file"), token_key=DEFAULT_TOKEN_KEY)


def test_tokenize_card_tokens_pass_no_pan_rule() -> None:
    """Every card token produced by the file importer is accepted as a Transaction card_id."""
    cards = pd.Series(np.random.default_rng(0).integers(4 * 10**15, 5 * 10**15, 2_000))
    tokens = tokenize(cards, key=DEFAULT_TOKEN_KEY, prefix="card_")
    refused = []
    for token in tokens.unique():
        body = {**EXAMPLE_TRANSACTION, "card_id": token}
        try:
            Transaction.model_validate_json(json.dumps(body))
        except ValidationError:
            refused.append(token)
    assert refused == []


def test_history_file_warms_card_age_and_history_but_is_not_data(tmp_path: Path) -> None:
    """`--history older.csv`: the older file's rows are not in the data, yet card A's age
    counts from its first row there, and its history features see those rows."""
    from sproxxo.ml.training import add_history
    from sproxxo.sources.files import load_files

    rows = _sparkov_rows()  # A Jan 3, A Jan 1, B Jan 2, A Jan 11
    older, newer = tmp_path / "older.csv", tmp_path / "newer.csv"
    pd.DataFrame(rows[:2]).to_csv(older, index=False)
    pd.DataFrame(rows[2:]).to_csv(newer, index=False)
    alone, none = load_files([newer])
    data, warm = load_files([newer], history=[older])
    assert none is None
    assert warm is not None
    assert len(data) == 2
    assert len(warm) == 2
    assert alone["card_age_days"].tolist() == [0, 0]  # every card new in a file alone
    assert data["card_age_days"].tolist() == [0, 10]  # A: from Jan 1 in the older file
    cold, warmed = add_history(alone), add_history(data, warm)
    assert np.isnan(cold["card_mean_amount"]).all()
    assert np.isnan(warmed["card_mean_amount"].iloc[0])  # B has no history anywhere
    assert warmed["card_mean_amount"].iloc[1] == pytest.approx((4.97 + 107.23) / 2)
    assert warmed["card_seconds_since_last"].iloc[1] == 7 * 86_400 + 12 * 3600 + 59 * 60 + 42
    assert warmed["card_tx_7d"].tolist() == [0.0, 0.0]  # Jan 3 is over 7 days before
