"""The decision policy: approve / review / decline from the fraud probability and the rules.

Thresholds are chosen at training time by expected cost and travel with the model:

* a missed fraud (approved) costs its amount;
* a reviewed transaction costs `review_cost` (analyst time and customer friction) and the
  fraud, if any, is stopped;
* a declined legitimate transaction costs `false_decline_cost` (lost interchange and a
  customer who may leave); a declined fraud costs nothing.

Rule violations move the decision: a `decline`-severity violation declines, a
`review`-severity one raises an approve to review. Reason codes name the top factors: the
rules broken, the model's score band, then the fired indicators; where the decision is
explained, the features that drove the model's score name the model's part instead
(`with_model_codes`, `sproxxo.explanations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sproxxo.risk import INDICATORS
from sproxxo.schemas import Decision, RuleViolation

MAX_REASON_CODES: Final = 3


class CostModel(BaseModel):
    """Business costs (USD) used to choose thresholds."""

    model_config = ConfigDict(frozen=True)

    review_cost: float = Field(default=3.0, ge=0)
    false_decline_cost: float = Field(default=25.0, ge=0)


class Policy(BaseModel):
    """Probability thresholds: review at `review_at`, decline at `decline_at` (inclusive)."""

    model_config = ConfigDict(frozen=True)

    review_at: float = Field(ge=0, le=1)
    decline_at: float = Field(ge=0, le=1)
    costs: CostModel = CostModel()

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        if self.review_at > self.decline_at:
            raise ValueError("review_at must not exceed decline_at")
        return self


_BY_BAND: Final = (Decision.APPROVE, Decision.REVIEW, Decision.DECLINE)
_SEVERITY_BAND: Final = {"review": 1, "decline": 2}
_MODEL_CODES: Final = ((), ("MODEL_SCORE_HIGH",), ("MODEL_SCORE_VERY_HIGH",))
_INDICATOR_BITS: Final = 1 << np.arange(len(INDICATORS))


def probability_band(probability: Any, policy: Policy) -> Any:
    """0 (approve), 1 (review) or 2 (decline) for a probability or an array of them."""
    return (probability >= policy.review_at) * 1 + (probability >= policy.decline_at)


def decide_by_probability(probability: float, policy: Policy) -> Decision:
    """Map a fraud probability to an action; a threshold value triggers its action."""
    return _BY_BAND[probability_band(probability, policy)]


def _rule_band(violations: list[RuleViolation]) -> int:
    return max((_SEVERITY_BAND[v.severity] for v in violations), default=0)


def decide(
    probability: float,
    violations: list[RuleViolation],
    policy: Policy,
) -> Decision:
    """The final decision: the stricter of the model's and the rules' verdicts (a
    `decline` rule declines, a `review` rule turns an approve into a review)."""
    return _BY_BAND[max(probability_band(probability, policy), _rule_band(violations))]


def _indicator_codes(mask: int) -> tuple[str, ...]:
    # Fired indicators by decreasing weight; ties keep `INDICATORS` order (stable sort).
    fired = [i for i in range(len(INDICATORS)) if mask >> i & 1]
    ranked = sorted(fired, key=lambda i: -INDICATORS[i].weight)
    return tuple(INDICATORS[i].reason_code for i in ranked)


#: The codes after the rules' for every (probability band, fired-indicator bitmask).
_TAILS: Final = tuple(
    tuple(
        (model + _indicator_codes(mask))[:MAX_REASON_CODES] for mask in range(1 << len(INDICATORS))
    )
    for model in _MODEL_CODES
)


def _codes(band: int, mask: int, violations: list[RuleViolation]) -> list[str]:
    if not violations:
        return list(_TAILS[band][mask])
    rules = [f"RULE_{v.rule.upper()}" for v in violations]
    return (rules + list(_TAILS[band][mask]))[:MAX_REASON_CODES]


def reason_codes(
    probability: float,
    fired: npt.NDArray[np.bool_],
    violations: list[RuleViolation],
    policy: Policy,
) -> list[str]:
    """Top factors behind a decision: rule violations, the model score, then indicators."""
    mask = sum(1 << i for i, hit in enumerate(fired.tolist()) if hit)
    return _codes(probability_band(probability, policy), mask, violations)


#: The generic codes of the model's score band; model-driven codes take their place.
MODEL_SCORE_CODES: Final = frozenset(code for codes in _MODEL_CODES for code in codes)


def with_model_codes(codes: list[str], model_codes: Sequence[str]) -> list[str]:
    """Reason codes with the generic model-score code (listed when the model's score reached
    a threshold) replaced by the model-driven codes of the features that pushed the score
    up (`sproxxo.explanations`), still at most MAX_REASON_CODES; unchanged without either."""
    for i, code in enumerate(codes):
        if code in MODEL_SCORE_CODES and model_codes:
            return [*codes[:i], *model_codes, *codes[i + 1 :]][:MAX_REASON_CODES]
    return codes


def decide_all(
    probabilities: npt.NDArray[np.float64],
    fired: npt.NDArray[np.bool_],
    violations: list[list[RuleViolation]],
    policy: Policy,
) -> tuple[list[Decision], list[list[str]]]:
    """`decide` and `reason_codes` for a batch (rows of `fired`), in a few array steps."""
    bands = probability_band(probabilities, policy).tolist()
    masks = (fired @ _INDICATOR_BITS).tolist()
    decisions = [
        _BY_BAND[max(band, _rule_band(v))] if v else _BY_BAND[band]
        for band, v in zip(bands, violations, strict=True)
    ]
    codes = [_codes(b, m, v) for b, m, v in zip(bands, masks, violations, strict=True)]
    return decisions, codes


def decision_names(
    probabilities: npt.NDArray[np.float64], violations: list[list[RuleViolation]], policy: Policy
) -> list[str]:
    """The decisions of `decide_all` alone, as their names (a shadow model's decisions on
    the champion's transactions: same rules, the shadow's probabilities and thresholds)."""
    bands = probability_band(probabilities, policy).tolist()
    return [
        _BY_BAND[max(band, _rule_band(v))].value if v else _BY_BAND[band].value
        for band, v in zip(bands, violations, strict=True)
    ]


#: `_TAILS` joined with "|", as one object array indexed by band * 2**k + mask.
_JOINED: Final = np.array(["|".join(codes) for tails in _TAILS for codes in tails], dtype=object)
_DECISION_NAMES: Final = np.array([str(d) for d in _BY_BAND], dtype=object)


def decide_without_rules(
    probabilities: npt.NDArray[np.float64], fired: npt.NDArray[np.bool_], policy: Policy
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """`decide_all` for transactions that break no business rule, as arrays: the decision
    names and the reason codes joined with "|" (table lookups, no Python loop: bulk
    re-scoring's path; a test proves it equal to `decide_all`)."""
    bands = np.asarray(probability_band(probabilities, policy), dtype=np.intp)
    masks = (fired @ _INDICATOR_BITS).astype(np.intp)
    return _DECISION_NAMES[bands], _JOINED[bands * (1 << len(INDICATORS)) + masks]


def expected_cost(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int_],
    amounts: npt.NDArray[np.float64],
    policy: Policy,
) -> float:
    """Total expected cost (USD) of applying `policy` to labelled transactions."""
    fraud = labels.astype(bool)
    decline = probabilities >= policy.decline_at
    review = (probabilities >= policy.review_at) & ~decline
    approve = ~(decline | review)
    missed = float(amounts[approve & fraud].sum())
    reviewed = float(review.sum()) * policy.costs.review_cost
    false_declines = float((decline & ~fraud).sum()) * policy.costs.false_decline_cost
    return missed + reviewed + false_declines


def choose_policy(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int_],
    amounts: npt.NDArray[np.float64],
    costs: CostModel,
    *,
    grid_size: int = 200,
) -> Policy:
    """The (review_at, decline_at) pair on a quantile grid that minimises expected cost."""
    grid = _threshold_grid(probabilities, grid_size)
    order = np.argsort(probabilities)
    p, y, amt = probabilities[order], labels[order].astype(bool), amounts[order]
    # Prefix sums let every (review, decline) pair be costed in O(1).
    missed = np.concatenate([[0.0], np.cumsum(np.where(y, amt, 0.0))])
    legit = np.concatenate([[0.0], np.cumsum(~y)])
    idx = np.searchsorted(p, grid, side="left")  # rows below each threshold
    n = len(p)
    best: tuple[float, float, float] | None = None
    for i, r_idx in enumerate(idx):
        d_idx = idx[i:]
        cost = (
            missed[r_idx]
            + (d_idx - r_idx) * costs.review_cost
            + (legit[n] - legit[d_idx]) * costs.false_decline_cost
        )
        j = int(np.argmin(cost))
        if best is None or cost[j] < best[0]:
            best = (float(cost[j]), float(grid[i]), float(grid[i + j]))
    assert best is not None  # noqa: S101 - the grid is never empty
    return Policy(review_at=best[1], decline_at=best[2], costs=costs)


def _threshold_grid(probabilities: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    quantiles = np.quantile(probabilities, np.linspace(0.5, 1.0, size))
    fine = np.linspace(0.01, 0.99, 99)
    return np.unique(np.concatenate([quantiles, fine, [1.0]]))
