"""Explanations of decisions: which features moved the model's score, and the reason codes
they give.

The trees' raw score (log-odds, before calibration) splits exactly into a base value (the
score expected over the training data) and one contribution per feature, computed over the
compiled trees by path-dependent TreeSHAP (`sproxxo.ml.explain`):

    raw_score = base_value + sum over every feature of its contribution

A positive contribution pushed the transaction towards fraud, a negative one away from it.
An answer's `explanation` lists the `TOP_CONTRIBUTIONS` largest in magnitude with the
feature's value, and the sum of the others, so that the block adds up on its own.

Model reason codes: every feature belongs to one code (`MODEL_REASON_CODES`). A code weighs
the sum of its features' contributions (Shapley values add up over a group of features),
and the codes of largest positive weight, at most `MODEL_CODES_PER_DECISION`, name what
drove the score; they take the place of the generic MODEL_SCORE_* code
(`sproxxo.policy.with_model_codes`). A code with a weight of zero or less never appears.

Who gets one: every review and decline, and any transaction whose request asked for it
(`?explain=true`). Approves carry none unless asked, which keeps the cost (about half a
millisecond for 200 trees of 31 leaves, load/explain_bench.py) off most of the traffic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sproxxo.features import FEATURE_NAMES
from sproxxo.schemas import ExplainQuery

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: Contributions an answer lists (the rest are summed in `other_contributions`).
TOP_CONTRIBUTIONS: Final = 5
#: Model-driven reason codes a decision names at most (within MAX_REASON_CODES).
MODEL_CODES_PER_DECISION: Final = 2

#: The reason code of each model feature: the pattern a reviewer should look at when the
#: feature pushed the score up. Documented in docs/architecture.md (request path, Decision).
MODEL_REASON_CODES: Final[Mapping[str, str]] = {
    # how much, against the merchant category and against the card's own habits
    "log_amount": "MODEL_AMOUNT_HIGH",
    "amount_to_typical": "MODEL_AMOUNT_UNUSUAL_FOR_CATEGORY",
    "amount_to_card_mean": "MODEL_AMOUNT_UNUSUAL_FOR_CARD",
    "amount_to_card_24h_mean": "MODEL_AMOUNT_UNUSUAL_FOR_CARD",
    "card_mean_amount": "MODEL_AMOUNT_UNUSUAL_FOR_CARD",
    # when and how: local time of day and week, card-not-present merchants
    "hour": "MODEL_NIGHT_ONLINE",
    "weekday": "MODEL_NIGHT_ONLINE",
    "is_night": "MODEL_NIGHT_ONLINE",
    "is_online": "MODEL_NIGHT_ONLINE",
    "category_code": "MODEL_MERCHANT_CATEGORY",
    # where: from home, abroad, from the card's last merchant (and how fast to get there)
    "distance_km": "MODEL_FAR_FROM_HOME",
    "is_foreign": "MODEL_FOREIGN",
    "card_km_from_last": "MODEL_LOCATION_JUMP",
    "card_kmh_from_last": "MODEL_LOCATION_JUMP",
    # who: the card's age and the cardholder's profile
    "card_age_days": "MODEL_NEW_CARD",
    "is_new_card": "MODEL_NEW_CARD",
    "customer_age": "MODEL_CARDHOLDER_PROFILE",
    "log_city_pop": "MODEL_CARDHOLDER_PROFILE",
    # the card's recent use: bursts of transactions or of spending
    "card_tx_1h": "MODEL_CARD_VELOCITY",
    "card_tx_24h": "MODEL_CARD_VELOCITY",
    "card_tx_7d": "MODEL_CARD_VELOCITY",
    "card_amount_1h": "MODEL_CARD_VELOCITY",
    "card_amount_24h": "MODEL_CARD_VELOCITY",
    "card_amount_7d": "MODEL_CARD_VELOCITY",
    "card_seconds_since_last": "MODEL_CARD_VELOCITY",
    "card_category_count": "MODEL_CATEGORY_NEW_FOR_CARD",
    # the rule indicators' noisy-OR score, as the model weighed it
    "risk_score": "MODEL_RISK_INDICATORS",
}
#: Each code once, in table order; `_MEMBERS[j, c]` is 1 when feature j has code c.
MODEL_CODES: Final = tuple(dict.fromkeys(MODEL_REASON_CODES.values()))
_MEMBERS: Final = np.array(
    [
        [float(MODEL_REASON_CODES.get(name) == code) for code in MODEL_CODES]
        for name in FEATURE_NAMES
    ]
)


@dataclass(frozen=True)
class Contributions:
    """Feature contributions for rows of a feature matrix: raw_scores[i] = base_value +
    by_feature[i].sum() (up to rounding); columns are `FEATURE_NAMES`, units log-odds."""

    base_value: float
    raw_scores: FloatArray
    by_feature: FloatArray


@dataclass(frozen=True)
class Explained:
    """The explained rows of a scored batch (indices, ascending) and their contributions."""

    rows: IntArray
    contributions: Contributions


def explain_requested(query: Mapping[str, str]) -> bool:
    """Whether a request's query string asks for every answer's explanation
    (`?explain=true`; pydantic's booleans). Raises pydantic's ValidationError (a 400) for a
    value that is not a boolean."""
    if "explain" not in query:
        return False
    return ExplainQuery.model_validate({"explain": query["explain"]}).explain


def rows_to_explain(decisions: Sequence[str], requested: Sequence[bool] | bool) -> IntArray:
    """Indices of the rows that carry an explanation: reviews, declines, and the rows whose
    request asked for one."""
    if requested is True:
        return np.arange(len(decisions), dtype=np.intp)
    asked = [False] * len(decisions) if requested is False else requested
    rows = [i for i, (d, a) in enumerate(zip(decisions, asked, strict=True)) if a or d != "approve"]
    return np.array(rows, dtype=np.intp)


def model_reason_codes(by_feature: FloatArray) -> list[list[str]]:
    """For each row of contributions, its model-driven codes: the codes whose features'
    contributions sum highest, positive sums only, at most MODEL_CODES_PER_DECISION."""
    weights = by_feature @ _MEMBERS
    order = np.argsort(-weights, axis=1, kind="stable")[:, :MODEL_CODES_PER_DECISION]
    top = np.take_along_axis(weights, order, axis=1)
    return [
        [MODEL_CODES[c] for c, w in zip(codes, ws, strict=True) if w > 0.0]
        for codes, ws in zip(order.tolist(), top.tolist(), strict=True)
    ]


def explanation_blocks(
    explained: Explained | None, matrix: FloatArray
) -> dict[int, dict[str, Any]]:
    """The `explanation` of each explained answer by row (JSON-ready, `schemas.Explanation`'s
    fields); `matrix` holds the batch's feature rows."""
    if explained is None or not len(explained.rows):
        return {}
    found = explained.contributions
    phi = found.by_feature
    order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :TOP_CONTRIBUTIONS]
    top = np.take_along_axis(phi, order, axis=1)
    values = np.take_along_axis(matrix[explained.rows], order, axis=1)
    others = phi.sum(axis=1) - top.sum(axis=1)
    return {
        row: {
            "base_value": found.base_value,
            "raw_score": raw,
            "contributions": [
                {"feature": FEATURE_NAMES[j], "value": None if v != v else v, "contribution": c}
                for j, v, c in zip(features, row_values, row_top, strict=True)
            ],
            "other_contributions": rest,
        }
        for row, raw, features, row_values, row_top, rest in zip(
            explained.rows.tolist(),
            found.raw_scores.tolist(),
            order.tolist(),
            values.tolist(),
            top.tolist(),
            others.tolist(),
            strict=True,
        )
    }
