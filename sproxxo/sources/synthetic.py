"""A seeded generator of realistic card transactions with planted fraud patterns.

Legitimate traffic: cards with a home location, age and issue date shop mostly in daytime,
near home, with category-dependent lognormal tickets. Fraud comes as bursts on compromised
cards (several transactions within hours, often at night, online or travel, high amounts,
far away or abroad) and as misuse of freshly issued cards. Fully vectorised: 1M rows take
a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from sproxxo.features import CANONICAL_COLUMNS, LABEL_COLUMN
from sproxxo.schemas import CATEGORIES

DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)

_LEGIT_CATEGORY_P: Final = np.array(
    [0.07, 0.07, 0.10, 0.035, 0.095, 0.065, 0.095, 0.085, 0.05, 0.06, 0.07, 0.075, 0.09, 0.04]
)
_LEGIT_MEDIAN: Final = np.array(
    [50, 40, 60, 50, 100, 45, 50, 45, 35, 40, 30, 55, 50, 110], dtype=float
)
# Fraudsters favour card-not-present and easily resold goods.
_FRAUD_CATEGORY_P: Final = np.array(
    [0.02, 0.02, 0.06, 0.03, 0.17, 0.01, 0.02, 0.02, 0.14, 0.05, 0.02, 0.26, 0.12, 0.06]
)
_HOUR_LEGIT: Final = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.5,
        3,
        4.5,
        5,
        5.5,
        6,
        6.5,
        6,
        5.5,
        5.5,
        6,
        6.5,
        6.5,
        6,
        5,
        4,
        3,
        2,
    ],
    dtype=float,
)
_HOUR_FRAUD: Final = np.array(
    [7, 7, 7, 6.5, 5, 3, 1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 2, 3, 4.5, 6, 7],
    dtype=float,
)
# (lat, long, population, UTC offset hours) of home cities: US and Mexico.
_CITIES: Final = np.array(
    [
        (19.43, -99.13, 9_209_944, -6),
        (20.67, -103.35, 1_385_629, -6),
        (25.69, -100.32, 1_142_994, -6),
        (19.04, -98.20, 1_692_181, -6),
        (21.16, -86.85, 888_797, -5),
        (32.51, -117.04, 1_922_523, -8),
        (40.71, -74.01, 8_336_817, -5),
        (34.05, -118.24, 3_898_747, -8),
        (41.88, -87.63, 2_746_388, -6),
        (29.76, -95.37, 2_304_580, -6),
        (33.45, -112.07, 1_608_139, -7),
        (39.74, -104.99, 715_522, -7),
        (35.22, -101.83, 199_371, -6),
        (44.98, -93.27, 429_954, -6),
        (31.76, -106.49, 678_815, -7),
        (43.07, -89.40, 269_840, -6),
        (37.27, -79.94, 100_011, -5),
        (46.87, -96.79, 125_990, -6),
        (38.58, -92.17, 43_228, -6),
        (42.10, -75.91, 47_969, -5),
        (36.17, -115.14, 641_903, -8),
        (18.47, -69.90, 1_029_117, -4),
    ]
)


@dataclass(frozen=True)
class _Cards:
    token: npt.NDArray[np.str_]
    city: npt.NDArray[np.intp]
    lat: npt.NDArray[np.float64]
    long: npt.NDArray[np.float64]
    age: npt.NDArray[np.int64]
    issued: npt.NDArray[np.float64]  # epoch seconds


def generate(
    n_rows: int, *, seed: int = 42, start: datetime = DEFAULT_START, days: int = 180
) -> pd.DataFrame:
    """`n_rows` transactions (about 0.8% fraud) in canonical layout, sorted by time."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    rng = np.random.default_rng(seed)
    t0, span = start.timestamp(), days * 86400.0
    cards = _make_cards(rng, max(n_rows // 60, 50), t0, span)
    n_fraud = round(n_rows * 0.008)
    legit = _legit(rng, cards, n_rows - n_fraud, t0, span)
    fraud = _fraud(rng, cards, n_fraud, t0, span)
    frame = pd.concat([legit, fraud], ignore_index=True)
    frame = frame.sort_values("epoch_seconds", kind="stable").reset_index(drop=True)
    frame["transaction_id"] = [f"tx-{seed}-{i:09d}" for i in range(len(frame))]
    return frame[[*CANONICAL_COLUMNS, LABEL_COLUMN]]


def _make_cards(rng: np.random.Generator, n: int, t0: float, span: float) -> _Cards:
    city = rng.choice(len(_CITIES), size=n, p=_city_weights())
    # A tenth of the cards are issued during the window: those are the "new card" population.
    issued = np.where(
        rng.random(n) < 0.1,
        t0 + rng.random(n) * span,
        t0 - rng.gamma(2.0, 400.0, size=n) * 86400.0,
    )
    return _Cards(
        token=np.array([f"card_{h:012x}" for h in rng.integers(0, 2**48, size=n)]),
        city=city,
        lat=_CITIES[city, 0] + rng.normal(0, 0.2, n),
        long=_CITIES[city, 1] + rng.normal(0, 0.2, n),
        age=np.clip(rng.normal(45, 16, n), 16, 95).astype(np.int64),
        issued=issued,
    )


def _city_weights() -> npt.NDArray[np.float64]:
    w = np.sqrt(_CITIES[:, 2])
    return np.asarray(w / w.sum(), dtype=np.float64)


def _times(
    rng: np.random.Generator, n: int, day0: npt.NDArray[np.float64], hour_w: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Local wall-clock epoch seconds: day start + hour drawn from a daily profile."""
    hours = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    return np.asarray(day0 + hours * 3600.0 + rng.random(n) * 3600.0, dtype=np.float64)


def _legit(rng: np.random.Generator, cards: _Cards, n: int, t0: float, span: float) -> pd.DataFrame:
    # Zipf-like activity: some cards are used far more than others.
    activity = rng.pareto(1.5, len(cards.token)) + 1
    card = rng.choice(len(cards.token), size=n, p=activity / activity.sum())
    day0 = t0 + np.floor(rng.random(n) * span / 86400.0) * 86400.0
    local = _times(rng, n, day0, _HOUR_LEGIT)
    cat = rng.choice(len(CATEGORIES), size=n, p=_LEGIT_CATEGORY_P)
    amount = _LEGIT_MEDIAN[cat] * rng.lognormal(0.0, 0.75, n)
    big = rng.random(n) < 0.004  # furniture, flights: legitimate big tickets
    amount[big] *= rng.uniform(5, 20, big.sum())
    foreign = rng.random(n) < 0.02
    spread = np.where(foreign, 8.0, 0.25)
    return _assemble(rng, cards, card, local, cat, amount, spread, foreign, label=0)


def _fraud(rng: np.random.Generator, cards: _Cards, n: int, t0: float, span: float) -> pd.DataFrame:
    if n == 0:
        return _assemble(
            rng,
            cards,
            *(np.array([], dtype=t) for t in (int, float, int, float, float, bool)),
            label=1,
        )
    # Bursts of 2-9 transactions on compromised cards, or misuse of new cards.
    sizes = rng.integers(2, 10, size=max(n // 4, 1))
    burst = np.repeat(np.arange(len(sizes)), sizes)[:n]
    if len(burst) < n:
        burst = np.concatenate([burst, rng.integers(0, len(sizes), n - len(burst))])
    new_cards = np.flatnonzero(cards.issued > t0)
    pool = new_cards if len(new_cards) else np.arange(len(cards.token))
    victim = np.where(
        rng.random(len(sizes)) < 0.25,
        rng.choice(pool, len(sizes)),
        rng.integers(0, len(cards.token), len(sizes)),
    )
    card = victim[burst]
    start = np.maximum(t0 + rng.random(len(sizes)) * span, cards.issued[victim] + 86400.0)
    day0 = np.floor(np.minimum(start, t0 + span - 86400.0)[burst] / 86400.0) * 86400.0
    local = _times(rng, n, day0, _HOUR_FRAUD) + rng.integers(0, 2, n) * 86400.0
    cat = rng.choice(len(CATEGORIES), size=n, p=_FRAUD_CATEGORY_P)
    amount = np.where(
        rng.random(n) < 0.85,
        rng.lognormal(np.log(650), 0.6, n),
        _LEGIT_MEDIAN[cat] * rng.lognormal(0.3, 0.7, n),  # card testing: small tickets
    )
    foreign = rng.random(n) < 0.25
    spread = np.where(foreign, 10.0, 1.5)
    return _assemble(rng, cards, card, local, cat, amount, spread, foreign, label=1)


def _assemble(
    rng: np.random.Generator,
    cards: _Cards,
    card: npt.NDArray[np.int_],
    local: npt.NDArray[np.float64],
    cat: npt.NDArray[np.int_],
    amount: npt.NDArray[np.float64],
    spread: npt.NDArray[np.float64],
    foreign: npt.NDArray[np.bool_],
    *,
    label: int,
) -> pd.DataFrame:
    n = len(card)
    offset_min = (_CITIES[cards.city[card], 3] * 60).astype(np.int64)
    epoch = local - offset_min * 60.0
    card_age = np.floor(np.maximum(epoch - cards.issued[card], 0) / 86400.0).astype(np.int64)
    merch_lat = np.clip(cards.lat[card] + rng.normal(0, 1, n) * spread, -89.9, 89.9)
    merch_long = ((cards.long[card] + rng.normal(0, 1, n) * spread + 180) % 360) - 180
    return pd.DataFrame(
        {
            "transaction_id": np.array([""] * n, dtype=object),
            "card_id": cards.token[card].astype(object),
            "amount": np.round(np.clip(amount, 1.0, 25_000.0), 2),
            "currency": "USD",
            "epoch_seconds": np.floor(epoch).astype(np.int64),
            "utc_offset_minutes": offset_min,
            "merchant_id": np.array(
                [f"m-{c:02d}-{k:04d}" for c, k in zip(cat, rng.integers(0, 800, n), strict=True)],
                dtype=object,
            ),
            "merchant_category": np.array(CATEGORIES, dtype=object)[cat],
            "lat": np.round(cards.lat[card], 4),
            "long": np.round(cards.long[card], 4),
            "merch_lat": np.round(merch_lat, 4),
            "merch_long": np.round(merch_long, 4),
            "card_age_days": card_age,
            "is_foreign": foreign,
            "customer_age": cards.age[card],
            "city_pop": _CITIES[cards.city[card], 2].astype(np.int64),
            LABEL_COLUMN: np.full(n, label, dtype=np.int64),
        }
    )
