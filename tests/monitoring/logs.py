"""Log-like frames for monitoring tests: synthetic transactions, real features, fake scores.

No trained model is needed: `fraud_probability` is a fixed logistic function of the rule
risk score, and decisions use fixed thresholds, so shifted inputs move the scores too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from sproxxo.adapters.logfiles import FileSink
from sproxxo.features import FEATURE_NAMES, derive
from sproxxo.records import chunk_of
from sproxxo.sources.synthetic import generate

POPULATION_ROWS = 40_000
POPULATION_SEED = 7
WINDOW_START = datetime(2026, 3, 1, tzinfo=UTC)
MODEL_TAG = "sproxxo-fraud:testref"


@cache
def population() -> pd.DataFrame:
    """One synthetic card population; reference and current windows are drawn from it.

    The generator draws a few hundred cards per seed, so two seeds are two customer bases
    (different ages, cities, card ages): "same distribution" means same population here.
    """
    return generate(POPULATION_ROWS, seed=POPULATION_SEED)


def draw(rows: int, *, seed: int, half: int) -> pd.DataFrame:
    """`rows` raw transactions from one half of the population (0 = reference, 1 = current)."""
    order = np.random.default_rng(0).permutation(POPULATION_ROWS)
    pool = population().iloc[order[half::2]]
    return pool.sample(rows, random_state=seed).reset_index(drop=True)


def plant_shift(raw: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Double the share of late-night (00-05 local) transactions and triple every amount."""
    shifted = raw.copy()
    rng = np.random.default_rng(seed)
    local = shifted["epoch_seconds"] + 60 * shifted["utc_offset_minutes"]
    hour = ((local // 3600) % 24).to_numpy()
    night = int((hour < 5).sum())
    moved = rng.choice(np.flatnonzero(hour >= 5), night, replace=False)
    new_hour = rng.integers(0, 5, night)
    # Same local day, so weekday and card age do not move.
    shifted.loc[moved, "epoch_seconds"] += (new_hour - hour[moved]) * 3600
    shifted["amount"] = (shifted["amount"] * 3).round(2)
    return shifted


def log_frame(
    raw: pd.DataFrame, *, start: datetime = WINDOW_START, hours: float = 24.0, tag: str = MODEL_TAG
) -> pd.DataFrame:
    """Prediction-log records (the columns `log_chunk` writes) for raw transactions."""
    derived = derive(raw)
    frame = pd.DataFrame(derived.matrix, columns=list(FEATURE_NAMES))
    probability = 1.0 / (1.0 + np.exp(-(8.0 * derived.risk_score - 5.0)))
    offsets = np.linspace(0.0, hours * 3600.0, len(raw), endpoint=False)
    frame.insert(0, "transaction_id", raw["transaction_id"].to_numpy())
    frame.insert(
        1,
        "logged_at",
        [(start + timedelta(seconds=float(s))).isoformat(timespec="microseconds") for s in offsets],
    )
    frame.insert(2, "event_time", frame["logged_at"])
    frame.insert(3, "model_tag", tag)
    frame.insert(4, "amount", raw["amount"].to_numpy())
    frame.insert(5, "merchant_category", raw["merchant_category"].to_numpy())
    frame["valid"] = True
    frame["violations"] = [[] for _ in range(len(frame))]
    frame["fraud_probability"] = probability
    frame["decision"] = np.where(
        probability >= 0.7, "decline", np.where(probability >= 0.3, "review", "approve")
    )
    frame["reason_codes"] = [[] for _ in range(len(frame))]
    return frame


def reference_frame(rows: int = 10_000) -> pd.DataFrame:
    """A bundle-like reference sample: features, scores, decision and label."""
    raw = draw(rows, seed=1, half=0)
    frame = log_frame(raw)
    columns = [*FEATURE_NAMES, "fraud_probability", "decision"]
    return frame[columns].assign(is_fraud=raw["is_fraud"].to_numpy())


def current_frame(rows: int = 5_000, *, seed: int = 2, shifted: bool = False) -> pd.DataFrame:
    """A day of logged predictions, optionally with the planted shift."""
    raw = draw(rows, seed=seed, half=1)
    return log_frame(plant_shift(raw, seed=seed) if shifted else raw)


def write_log(frame: pd.DataFrame, directory: Path) -> None:
    """Write records the way the service's file sink does (chunks of up to 1,000)."""
    records = frame.to_dict("records")
    chunks = [chunk_of(records[i : i + 1000]) for i in range(0, len(records), 1000)]
    FileSink(directory).write(chunks)


def write_model_dir(directory: Path, reference: pd.DataFrame | None) -> Path:
    """A fake bundle folder: just the reference sample (or nothing)."""
    directory.mkdir(parents=True, exist_ok=True)
    if reference is not None:
        reference.to_parquet(directory / "reference.parquet", index=False)
    return directory


# Calibration (tests/monitoring/test_drift_calibration.py): windows shaped like real traffic.
# `generate` spreads n/60 cards over its days, so `generate(2_000)` is 50 cards seen 40 times
# each over half a year; a real day has many cards seen a few times. A window here is one
# day (the middle one) of a population generated with about `rows` transactions a day.
CALIBRATION_DAYS = 20
CALIBRATION_REFERENCE_ROWS = 200_000


def day_window(rows: int, *, seed: int) -> pd.DataFrame:
    """Raw transactions of one day of a population with about `rows` transactions a day."""
    raw = generate(rows * CALIBRATION_DAYS, seed=seed, days=CALIBRATION_DAYS)
    day = (raw["epoch_seconds"] - raw["epoch_seconds"].min()) // 86_400
    return raw[day == CALIBRATION_DAYS // 2].reset_index(drop=True)


def calibration_reference(*, seed: int, rows: int = 5_000) -> pd.DataFrame:
    """A bundle-like reference of another card population: `rows` random transactions of
    200,000 (about 3,300 cards, like a default training run's validation window)."""
    raw = generate(CALIBRATION_REFERENCE_ROWS, seed=seed, days=CALIBRATION_DAYS)
    picked = raw.sample(rows, random_state=0).reset_index(drop=True)
    return log_frame(picked)[[*FEATURE_NAMES, "fraud_probability", "decision"]]


def scale_amounts(raw: pd.DataFrame, rng: np.random.Generator, factor: float = 1.5) -> pd.DataFrame:
    """Every amount times `factor`."""
    return raw.assign(amount=(raw["amount"] * factor).round(2))


def more_night(raw: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Twice the share of late-night (00-05 local) transactions, same local day."""
    shifted = raw.copy()
    local = shifted["epoch_seconds"] + 60 * shifted["utc_offset_minutes"]
    hour = ((local // 3600) % 24).to_numpy()
    night = int((hour < 5).sum())
    moved = rng.choice(np.flatnonzero(hour >= 5), night, replace=False)
    shifted.loc[moved, "epoch_seconds"] += (rng.integers(0, 5, night) - hour[moved]) * 3600
    return shifted


def more_online(raw: pd.DataFrame, rng: np.random.Generator, share: float = 0.15) -> pd.DataFrame:
    """`share` of all transactions moved from in-person to online categories."""
    online = {"grocery_pos": "grocery_net", "misc_pos": "misc_net", "shopping_pos": "shopping_net"}
    category = raw["merchant_category"].to_numpy(dtype=object).copy()
    in_person = np.flatnonzero(~np.isin(category, ["grocery_net", "misc_net", "shopping_net"]))
    moved = rng.choice(in_person, int(share * len(raw)), replace=False)
    category[moved] = [online.get(c, "shopping_net") for c in category[moved]]
    return raw.assign(merchant_category=category)


def travel_season(raw: pd.DataFrame, rng: np.random.Generator, share: float = 0.2) -> pd.DataFrame:
    """`share` of all transactions moved to travel and gas (a shifted category mix)."""
    category = raw["merchant_category"].to_numpy(dtype=object).copy()
    moved = rng.choice(len(raw), int(share * len(raw)), replace=False)
    category[moved] = rng.choice(["travel", "gas_transport"], len(moved))
    return raw.assign(merchant_category=category)


def new_card_wave(raw: pd.DataFrame, rng: np.random.Generator, share: float = 0.25) -> pd.DataFrame:
    """`share` of the window's cards issued in the last 30 days (one age per card)."""
    cards = raw["card_id"].unique()
    chosen = rng.choice(cards, int(share * len(cards)), replace=False)
    age = pd.Series(rng.integers(0, 30, len(chosen)), index=chosen)
    hit = raw["card_id"].isin(chosen).to_numpy()
    shifted = raw.copy()
    shifted.loc[hit, "card_age_days"] = raw.loc[hit, "card_id"].map(age).to_numpy()
    return shifted
