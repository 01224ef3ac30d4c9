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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

HIGH_AMOUNT_USD: Final = 500.0
LATE_NIGHT_HOURS: Final = (0, 5)  # [start, end) in local time
NEW_CARD_DAYS: Final = 30
FAR_FROM_HOME_KM: Final = 100.0
UNUSUAL_AMOUNT_RATIO: Final = 4.0
HIGH_RISK_SCORE: Final = 0.7
#: Behavioural indicators (the card's own history, sproxxo.history): a burst of use, and an
#: amount far above what the card usually spends.
VELOCITY_TX_1H: Final = 3
UNUSUAL_FOR_CARD_RATIO: Final = 5.0

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
    """Name, weight and reason code of one indicator."""

    name: str
    weight: float
    code: str = ""

    @property
    def reason_code(self) -> str:
        """The code a decision lists when this indicator fired."""
        return self.code or f"RISK_{self.name.upper()}"


INDICATORS: Final[tuple[IndicatorSpec, ...]] = (
    IndicatorSpec("high_amount", 0.35),
    IndicatorSpec("unusual_amount_for_category", 0.30),
    IndicatorSpec("late_night", 0.25),
    IndicatorSpec("far_from_home", 0.25),
    IndicatorSpec("new_card", 0.20),
    IndicatorSpec("foreign", 0.20),
    IndicatorSpec("online_category", 0.10),
    IndicatorSpec("card_velocity_high", 0.30, "CARD_VELOCITY_HIGH"),
    IndicatorSpec("amount_unusual_for_card", 0.30, "AMOUNT_UNUSUAL_FOR_CARD"),
)
INDICATOR_NAMES: Final = tuple(spec.name for spec in INDICATORS)
_WEIGHTS: Final = np.array([spec.weight for spec in INDICATORS])

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class IndicatorInputs:
    """The measured quantities the indicators look at: arrays (one entry per transaction)
    or, on the single-transaction path, plain floats."""

    amount: Any
    amount_to_typical: Any
    local_hour: Any
    distance_km: Any
    card_age_days: Any
    is_foreign: Any
    is_online: Any
    card_tx_1h: Any
    amount_to_card_mean: Any

    def as_tuple(self) -> tuple[Any, ...]:
        """The quantities in `INDICATORS` order."""
        return (
            self.amount,
            self.amount_to_typical,
            self.local_hour,
            self.distance_km,
            self.card_age_days,
            self.is_foreign,
            self.is_online,
            self.card_tx_1h,
            self.amount_to_card_mean,
        )


class IndicatorFlags(NamedTuple):
    """Each indicator's verdict (bools, or boolean arrays), in `INDICATORS` order."""

    high_amount: Any
    unusual_amount_for_category: Any
    late_night: Any
    far_from_home: Any
    new_card: Any
    foreign: Any
    online_category: Any
    card_velocity_high: Any
    amount_unusual_for_card: Any


def indicator_flags(inputs: IndicatorInputs) -> IndicatorFlags:
    """Each indicator's verdict. Plain comparisons only, so the same code serves numpy
    arrays (a batch) and Python floats (one transaction); a missing (NaN) quantity never
    fires its indicator."""
    start, end = LATE_NIGHT_HOURS
    return IndicatorFlags(
        high_amount=inputs.amount > HIGH_AMOUNT_USD,
        unusual_amount_for_category=inputs.amount_to_typical > UNUSUAL_AMOUNT_RATIO,
        late_night=(inputs.local_hour >= start) & (inputs.local_hour < end),
        far_from_home=inputs.distance_km > FAR_FROM_HOME_KM,
        new_card=inputs.card_age_days < NEW_CARD_DAYS,
        foreign=inputs.is_foreign > 0,
        online_category=inputs.is_online > 0,
        card_velocity_high=inputs.card_tx_1h >= VELOCITY_TX_1H,
        amount_unusual_for_card=inputs.amount_to_card_mean > UNUSUAL_FOR_CARD_RATIO,
    )


def noisy_or(flags: Sequence[Any]) -> Any:
    """The risk score of a tuple of flags (arrays or bools): 1 - prod(1 - w_i * s_i)."""
    keep = 1.0
    for weight, flag in zip(_WEIGHTS.tolist(), flags, strict=True):
        keep = keep * (1.0 - weight * flag)
    return 1.0 - keep
