"""Local CSV / Parquet files, in the canonical layout or the public Kaggle/Sparkov layout.

The Sparkov importer keeps no name, street or card number: the card becomes a keyed hash
token, the merchant name a hash id, the date of birth an age at transaction time, and the
card age is counted from the first time the card appears in the file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from sproxxo.errors import DataSourceError
from sproxxo.features import CANONICAL_COLUMNS, LABEL_COLUMN
from sproxxo.schemas import CATEGORIES, MAX_AMOUNT
from sproxxo.settings import DEV_CARD_TOKEN_KEY

SPARKOV_COLUMNS: Final = (
    "trans_date_trans_time", "cc_num", "merchant", "category", "amt", "first", "last",
    "gender", "street", "city", "state", "zip", "lat", "long", "city_pop", "job", "dob",
    "trans_num", "unix_time", "merch_lat", "merch_long", "is_fraud",
)  # fmt: skip
PII_COLUMNS: Final = ("cc_num", "first", "last", "street", "gender", "job", "zip", "city", "dob")
DEFAULT_TOKEN_KEY: Final = DEV_CARD_TOKEN_KEY.encode()
PART_DATA: Final = "data"
PART_HISTORY: Final = "history"


#: Hex digits mapped to letters: a token never contains a digit run that looks like a PAN.
_LETTERS: Final = str.maketrans("0123456789", "ghijklmnop")


def tokenize(values: pd.Series, *, key: bytes, prefix: str) -> pd.Series:
    """Keyed (HMAC-SHA256) opaque tokens: stable per value, irreversible without the key."""
    uniques = values.astype(str).unique()
    tokens = {
        u: prefix + hmac.new(key, u.encode(), hashlib.sha256).hexdigest()[:20].translate(_LETTERS)
        for u in uniques
    }
    return values.astype(str).map(tokens)


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; raises `DataSourceError` with a clear reason."""
    if not path.is_file():
        raise DataSourceError(f"{path}: no such file")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in {".csv", ".gz"}:
            frame = pd.read_csv(path)
        else:
            raise DataSourceError(f"{path}: unsupported file type (use .csv or .parquet)")
    except DataSourceError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataSourceError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if frame.empty:
        raise DataSourceError(f"{path}: no rows")
    return frame


def load_file(path: Path, *, token_key: bytes = DEFAULT_TOKEN_KEY) -> pd.DataFrame:
    """A file in either supported layout, as canonical columns plus `is_fraud`."""
    frame, _ = load_files([path], token_key=token_key)
    return frame


def load_files(
    paths: Sequence[Path], *, history: Sequence[Path] = (), token_key: bytes = DEFAULT_TOKEN_KEY
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The data files and the history files (which only warm the cards' state), as
    canonical frames. In the Sparkov layout a card's age counts from the first time the
    card is seen in any of them, so a later test file does not restart every card as new."""
    raws = [_raw(p).assign(_part=PART_HISTORY) for p in history]
    raws += [_raw(p).assign(_part=PART_DATA) for p in paths]
    sparkov = {"trans_date_trans_time" in raw.columns for raw in raws}
    if len(sparkov) > 1:
        raise DataSourceError("the files mix the Sparkov and the canonical layout")
    raw = pd.concat(raws, ignore_index=True)
    origin = ", ".join(str(p) for p in (*history, *paths))
    if sparkov.pop():
        frame = from_sparkov(raw, token_key=token_key)
    else:
        missing = [c for c in (*CANONICAL_COLUMNS, LABEL_COLUMN) if c not in raw.columns]
        if missing:
            raise DataSourceError(f"{origin}: missing columns {missing} (canonical layout)")
        frame = raw[[*CANONICAL_COLUMNS, LABEL_COLUMN, "_part"]].copy()
    frame = check_frame(frame, origin=origin)
    data = frame[frame["_part"] == PART_DATA].drop(columns="_part").reset_index(drop=True)
    warm = frame[frame["_part"] == PART_HISTORY].drop(columns="_part").reset_index(drop=True)
    return data, (warm if history else None)


def _raw(path: Path) -> pd.DataFrame:
    raw = read_table(path)
    raw = raw.drop(columns=[c for c in raw.columns if str(c).startswith("Unnamed")])
    if "trans_date_trans_time" in raw.columns:
        missing = [c for c in SPARKOV_COLUMNS if c not in raw.columns and c not in PII_COLUMNS]
        missing += [c for c in ("cc_num", "dob") if c not in raw.columns]
        if missing:
            raise DataSourceError(f"{path}: Sparkov layout is missing columns: {missing}")
    return raw


def from_sparkov(raw: pd.DataFrame, *, token_key: bytes = DEFAULT_TOKEN_KEY) -> pd.DataFrame:
    """Map the Kaggle/Sparkov layout to canonical columns, dropping every PII column."""
    local = pd.to_datetime(raw["trans_date_trans_time"], errors="coerce")
    if local.isna().any():
        raise DataSourceError("trans_date_trans_time has unparseable values")
    # Sparkov times are local wall-clock without offset: keep them as local, offset 0.
    epoch = (local - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    dob = pd.to_datetime(raw["dob"], errors="coerce")
    age = ((local - dob).dt.days // 365.25).astype("Int64")
    cards = tokenize(raw["cc_num"], key=token_key, prefix="card_")
    first_seen = epoch.groupby(cards).transform("min")
    frame = pd.DataFrame(
        {
            "transaction_id": raw["trans_num"].astype(str),
            "card_id": cards,
            "amount": raw["amt"].astype(float),
            "currency": "USD",
            "epoch_seconds": epoch.astype(np.int64),
            "utc_offset_minutes": 0,
            "merchant_id": tokenize(raw["merchant"], key=token_key, prefix="m-"),
            "merchant_category": raw["category"].astype(str),
            "lat": raw["lat"].astype(float),
            "long": raw["long"].astype(float),
            "merch_lat": raw["merch_lat"].astype(float),
            "merch_long": raw["merch_long"].astype(float),
            "card_age_days": ((epoch - first_seen) // 86400).astype(np.int64),
            "is_foreign": False,
            "customer_age": age.fillna(-1).astype(np.int64),
            "city_pop": raw["city_pop"].astype(np.int64),
            LABEL_COLUMN: raw["is_fraud"].astype(np.int64),
        }
    )
    if "_part" in raw.columns:
        frame["_part"] = raw["_part"].to_numpy()
    return frame.sort_values("epoch_seconds", kind="stable").reset_index(drop=True)


def check_frame(frame: pd.DataFrame, *, origin: str) -> pd.DataFrame:
    """Enforce the schema's hard bounds column-wise; raises naming the column and rule."""
    checks = {
        "amount": (frame["amount"] > 0) & (frame["amount"] <= float(MAX_AMOUNT)),
        "merchant_category": frame["merchant_category"].isin(CATEGORIES),
        "lat": frame["lat"].between(-90, 90),
        "long": frame["long"].between(-180, 180),
        "merch_lat": frame["merch_lat"].between(-90, 90),
        "merch_long": frame["merch_long"].between(-180, 180),
        "card_age_days": frame["card_age_days"] >= 0,
        "customer_age": frame["customer_age"].between(0, 120),
        LABEL_COLUMN: frame[LABEL_COLUMN].isin([0, 1]),
    }
    for column, ok in checks.items():
        bad = int((~ok.fillna(False)).sum())
        if bad:
            example = frame.loc[~ok.fillna(False), column].iloc[0]
            raise DataSourceError(
                f"{origin}: {bad} rows break the range rule of {column} (e.g. {example!r})"
            )
    return frame
