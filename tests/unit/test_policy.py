"""The decision policy: inclusive thresholds, rule overrides, reason codes, optimal thresholds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from sproxxo.policy import (
    MAX_REASON_CODES,
    CostModel,
    Policy,
    _threshold_grid,
    choose_policy,
    decide,
    decide_all,
    decide_by_probability,
    expected_cost,
    reason_codes,
)
from sproxxo.risk import INDICATOR_NAMES
from sproxxo.schemas import Decision, RuleViolation

POLICY = Policy(review_at=0.30, decline_at=0.80)


def _violation(rule: str, severity: str) -> RuleViolation:
    return RuleViolation(rule=rule, field="amount", message=f"{rule} broken", severity=severity)


def _fired(*names: str) -> np.ndarray:
    return np.array([name in names for name in INDICATOR_NAMES])


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, Decision.APPROVE),
        (0.2999, Decision.APPROVE),
        (0.30, Decision.REVIEW),
        (0.7999, Decision.REVIEW),
        (0.80, Decision.DECLINE),
        (1.0, Decision.DECLINE),
    ],
)
def test_decide_by_probability_thresholds_are_inclusive(p: float, expected: Decision) -> None:
    """A probability equal to a threshold triggers that threshold's action."""
    assert decide_by_probability(p, POLICY) is expected


def test_decide_by_probability_equal_thresholds_skip_review() -> None:
    """With review_at == decline_at there is no review band."""
    policy = Policy(review_at=0.5, decline_at=0.5)
    assert [decide_by_probability(p, policy) for p in (0.49, 0.5)] == [
        Decision.APPROVE,
        Decision.DECLINE,
    ]


@pytest.mark.parametrize(
    ("p", "severities", "expected"),
    [
        (0.1, [], Decision.APPROVE),
        (0.1, ["review"], Decision.REVIEW),
        (0.5, ["review"], Decision.REVIEW),
        (0.9, ["review"], Decision.DECLINE),
        (0.1, ["decline"], Decision.DECLINE),
        (0.5, ["decline"], Decision.DECLINE),
        (0.1, ["review", "decline"], Decision.DECLINE),
        (0.9, [], Decision.DECLINE),
    ],
)
def test_decide_takes_stricter_of_model_and_rules(
    p: float, severities: list[str], expected: Decision
) -> None:
    """A decline violation declines; a review violation lifts approve to review only."""
    violations = [_violation(f"rule_{i}", s) for i, s in enumerate(severities)]
    assert decide(p, violations, POLICY) is expected


def test_reason_codes_rules_then_model_then_indicators() -> None:
    """Rule violations come first, then the model score band, then indicators by weight."""
    codes = reason_codes(
        0.85, _fired("online_category"), [_violation("null_island", "review")], POLICY
    )
    assert codes == ["RULE_NULL_ISLAND", "MODEL_SCORE_VERY_HIGH", "RISK_ONLINE_CATEGORY"]


@pytest.mark.parametrize(
    ("p", "model_code"),
    [
        (0.29, None),
        (0.30, "MODEL_SCORE_HIGH"),
        (0.79, "MODEL_SCORE_HIGH"),
        (0.80, "MODEL_SCORE_VERY_HIGH"),
    ],
)
def test_reason_codes_model_band(p: float, model_code: str | None) -> None:
    """The model code names the threshold band the probability falls in."""
    codes = reason_codes(p, _fired(), [], POLICY)
    assert codes == ([model_code] if model_code else [])


def test_reason_codes_indicators_sorted_by_weight() -> None:
    """Fired indicators are listed heaviest first; equal weights keep indicator order."""
    fired = _fired("online_category", "foreign", "high_amount")
    assert reason_codes(0.0, fired, [], POLICY) == [
        "RISK_HIGH_AMOUNT",
        "RISK_FOREIGN",
        "RISK_ONLINE_CATEGORY",
    ]
    ties = _fired("far_from_home", "late_night")
    assert reason_codes(0.0, ties, [], POLICY) == ["RISK_LATE_NIGHT", "RISK_FAR_FROM_HOME"]


def test_decide_all_equals_decide_and_reason_codes_row_by_row() -> None:
    """The batch policy gives each row exactly what decide and reason_codes give it alone."""
    rng = np.random.default_rng(3)
    p = np.concatenate([[0.0, 0.2999, 0.30, 0.7999, 0.80, 1.0], rng.random(200)])
    fired = rng.random((len(p), len(INDICATOR_NAMES))) < 0.3
    choices = [[], [], [_violation("null_island", "review")], [_violation("a", "decline")]]
    violations = [choices[i] for i in rng.integers(0, len(choices), len(p))]
    decisions, codes = decide_all(p, fired, violations, POLICY)
    assert decisions == [decide(float(x), v, POLICY) for x, v in zip(p, violations, strict=True)]
    assert codes == [
        reason_codes(float(x), f, v, POLICY) for x, f, v in zip(p, fired, violations, strict=True)
    ]
    assert {d.value for d in decisions} == {"approve", "review", "decline"}


def test_reason_codes_capped() -> None:
    """At most MAX_REASON_CODES codes are returned, keeping the highest-priority ones."""
    violations = [_violation("amount_over_limit", "decline"), _violation("null_island", "review")]
    codes = reason_codes(0.9, _fired(*INDICATOR_NAMES), violations, POLICY)
    assert MAX_REASON_CODES == 3
    assert codes == ["RULE_AMOUNT_OVER_LIMIT", "RULE_NULL_ISLAND", "MODEL_SCORE_VERY_HIGH"]
    only_indicators = reason_codes(0.0, _fired(*INDICATOR_NAMES), [], POLICY)
    assert only_indicators == [
        "RISK_HIGH_AMOUNT",
        "RISK_UNUSUAL_AMOUNT_FOR_CATEGORY",
        "CARD_VELOCITY_HIGH",  # ties in weight keep INDICATORS order
    ]


def test_expected_cost_hand_computed() -> None:
    """Missed fraud costs its amount, a review 3, a false decline 25, a declined fraud nothing."""
    probabilities = np.array([0.10, 0.50, 0.90, 0.95, 0.20, 0.60])
    labels = np.array([1, 0, 1, 0, 0, 1])
    amounts = np.array([100.0, 10.0, 200.0, 50.0, 30.0, 400.0])
    policy = Policy(
        review_at=0.5, decline_at=0.9, costs=CostModel(review_cost=3, false_decline_cost=25)
    )
    # approve fraud 100 + review legit 3 + decline fraud 0 + decline legit 25
    # + approve legit 0 + review fraud 3
    assert expected_cost(probabilities, labels, amounts, policy) == pytest.approx(131.0)


def test_expected_cost_extremes() -> None:
    """Approving everything costs all fraud amounts; declining everything costs the legit count."""
    probabilities = np.array([0.2, 0.4, 0.6])
    labels = np.array([1, 0, 0])
    amounts = np.array([70.0, 5.0, 5.0])
    approve_all = Policy(review_at=1.0, decline_at=1.0)
    decline_all = Policy(review_at=0.0, decline_at=0.0)
    assert expected_cost(probabilities, labels, amounts, approve_all) == pytest.approx(70.0)
    assert expected_cost(probabilities, labels, amounts, decline_all) == pytest.approx(50.0)


def _brute_force(
    probabilities: np.ndarray,
    labels: np.ndarray,
    amounts: np.ndarray,
    costs: CostModel,
    grid_size: int,
) -> float:
    grid = _threshold_grid(probabilities, grid_size)
    return min(
        expected_cost(
            probabilities, labels, amounts, Policy(review_at=r, decline_at=d, costs=costs)
        )
        for r, d in itertools.combinations_with_replacement(grid.tolist(), 2)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_policy_matches_brute_force(seed: int) -> None:
    """choose_policy finds a pair whose cost equals the brute-force minimum over the same grid."""
    rng = np.random.default_rng(seed)
    n = 300
    labels = (rng.random(n) < 0.1).astype(int)
    probabilities = np.clip(rng.beta(1, 6, n) + 0.5 * labels * rng.random(n), 0, 1)
    amounts = np.round(rng.lognormal(4, 1, n), 2)
    costs = CostModel(review_cost=3.0, false_decline_cost=25.0)
    policy = choose_policy(probabilities, labels, amounts, costs, grid_size=40)
    assert policy.review_at <= policy.decline_at
    assert policy.costs == costs
    best = _brute_force(probabilities, labels, amounts, costs, 40)
    assert expected_cost(probabilities, labels, amounts, policy) == pytest.approx(best)


def test_choose_policy_small_constructed_example() -> None:
    """Cheap reviews of a mid band and declines of a sure-fraud band are chosen when optimal."""
    probabilities = np.array([0.05, 0.05, 0.05, 0.05, 0.45, 0.45, 0.45, 0.97, 0.97])
    labels = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1])
    amounts = np.array([20.0, 20.0, 20.0, 20.0, 500.0, 20.0, 20.0, 900.0, 900.0])
    costs = CostModel(review_cost=3.0, false_decline_cost=25.0)
    policy = choose_policy(probabilities, labels, amounts, costs, grid_size=10)
    # Optimum: approve the 0.05 rows, review the 0.45 band (3 x 3), decline the 0.97 rows.
    assert expected_cost(probabilities, labels, amounts, policy) == pytest.approx(9.0)
    assert 0.05 < policy.review_at <= 0.45
    assert 0.45 < policy.decline_at <= 0.97


def test_policy_rejects_review_above_decline() -> None:
    """A policy whose review threshold exceeds its decline threshold is refused."""
    with pytest.raises(ValidationError, match="review_at must not exceed decline_at"):
        Policy(review_at=0.9, decline_at=0.5)


@pytest.mark.parametrize(("review_at", "decline_at"), [(-0.1, 0.5), (0.1, 1.1)])
def test_policy_rejects_thresholds_outside_unit_interval(
    review_at: float, decline_at: float
) -> None:
    """Thresholds outside [0, 1] are refused."""
    with pytest.raises(ValidationError):
        Policy(review_at=review_at, decline_at=decline_at)


def test_decide_without_rules_equals_decide_all() -> None:
    """The table-lookup path of bulk re-scoring gives decide_all's decisions and reasons
    for every band and every combination of fired indicators."""
    from sproxxo.policy import decide_all, decide_without_rules

    k = len(INDICATOR_NAMES)
    fired = np.array(list(itertools.product([False, True], repeat=k)) * 3, dtype=np.bool_)
    probabilities = np.repeat([0.05, 0.30, 0.95], 1 << k)
    decisions, reasons = decide_all(probabilities, fired, [[] for _ in fired], POLICY)
    names, joined = decide_without_rules(probabilities, fired, POLICY)
    assert names.tolist() == [str(d) for d in decisions]
    assert joined.tolist() == ["|".join(codes) for codes in reasons]
    assert set(names.tolist()) == {"approve", "review", "decline"}
