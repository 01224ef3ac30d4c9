"""Rule-based risk indicators and the 0-1 risk score.

Each indicator i fires (s_i = 1) or not (s_i = 0) and carries a weight w_i in (0, 1).
The score is a noisy-OR of the fired indicators::

    risk_score = 1 - prod_i (1 - w_i * s_i)

so it is 0 when nothing fires, grows with every extra indicator, never exceeds 1, and one
indicator alone contributes exactly its weight. Weights are judgement calls from fraud
operations (how often the pattern alone is fraud), reviewed with the fraud team; the model
learns the real interactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

HIGH_AMOUNT_USD: Final = 500.0
LATE_NIGHT_HOURS: Final = (0, 5)  # [start, end) in local time
NEW_CARD_DAYS: Final = 30
FAR_FROM_HOME_KM: Final = 100.0
UNUSUAL_AMOUNT_RATIO: Final = 4.0
HIGH_RISK_SCORE: Final = 0.7

#: Typical (median) ticket per merchant category in USD, from the Sparkov data's shape.
CATEGORY_TYPICAL_AMOUNT_USD: Final[dict[str, float]] = {
    "entertainment": 50.0,
    "food_dining": 40.0,
    "gas_transport": 60.0,
    "grocery_net": 50.0,
    "grocery_pos": 100.0,
    "health_fitness": 45.0,
    "home": 50.0,
    "kids_pets": 45.0,
    "misc_net": 35.0,
    "misc_pos": 40.0,
    "personal_care": 30.0,
    "shopping_net": 55.0,
    "shopping_pos": 50.0,
    "travel": 110.0,
}


@dataclass(frozen=True)
class IndicatorSpec:
    """Name and weight of one indicator."""

    name: str
    weight: float


INDICATORS: Final[tuple[IndicatorSpec, ...]] = (
    IndicatorSpec("high_amount", 0.35),
    IndicatorSpec("unusual_amount_for_category", 0.30),
    IndicatorSpec("late_night", 0.25),
    IndicatorSpec("far_from_home", 0.25),
    IndicatorSpec("new_card", 0.20),
    IndicatorSpec("foreign", 0.20),
    IndicatorSpec("online_category", 0.10),
)
INDICATOR_NAMES: Final = tuple(spec.name for spec in INDICATORS)
_WEIGHTS: Final = np.array([spec.weight for spec in INDICATORS])

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class IndicatorInputs:
    """The measured quantities the indicators look at, one array entry per transaction."""

    amount: FloatArray
    amount_to_typical: FloatArray
    local_hour: FloatArray
    distance_km: FloatArray
    card_age_days: FloatArray
    is_foreign: FloatArray
    is_online: FloatArray


def fire_indicators(inputs: IndicatorInputs) -> BoolArray:
    """Evaluate every indicator; returns an (n, len(INDICATORS)) boolean matrix."""
    start, end = LATE_NIGHT_HOURS
    fired = np.empty((len(inputs.amount), len(INDICATORS)), dtype=np.bool_)
    fired[:, 0] = inputs.amount > HIGH_AMOUNT_USD
    fired[:, 1] = inputs.amount_to_typical > UNUSUAL_AMOUNT_RATIO
    fired[:, 2] = (inputs.local_hour >= start) & (inputs.local_hour < end)
    fired[:, 3] = inputs.distance_km > FAR_FROM_HOME_KM
    fired[:, 4] = inputs.card_age_days < NEW_CARD_DAYS
    fired[:, 5] = inputs.is_foreign > 0
    fired[:, 6] = inputs.is_online > 0
    return fired


def indicator_values(inputs: IndicatorInputs) -> FloatArray:
    """The measured value behind each indicator, same layout as `fire_indicators`."""
    return np.column_stack(
        [
            inputs.amount,
            inputs.amount_to_typical,
            inputs.local_hour,
            inputs.distance_km,
            inputs.card_age_days,
            inputs.is_foreign,
            inputs.is_online,
        ]
    ).astype(np.float64)


def risk_scores(fired: BoolArray) -> FloatArray:
    """Noisy-OR of the fired indicators' weights (see module docstring)."""
    return np.asarray(1.0 - np.prod(1.0 - _WEIGHTS * fired, axis=1), dtype=np.float64)
