"""Risk indicators fire at their documented thresholds; the score is their noisy-OR.

Tested through what `sproxxo.features.derive` calls: `indicator_flags` and `noisy_or`, on
arrays (a batch) and on floats (one transaction)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from sproxxo.risk import INDICATOR_NAMES, INDICATORS, IndicatorInputs, indicator_flags, noisy_or

NEUTRAL: dict[str, float] = {
    "amount": 50.0,
    "amount_to_typical": 1.0,
    "local_hour": 14.0,
    "distance_km": 5.0,
    "card_age_days": 400.0,
    "is_foreign": 0.0,
    "is_online": 0.0,
    "card_tx_1h": 0.0,
    "amount_to_card_mean": 1.0,
}
WEIGHT = {spec.name: spec.weight for spec in INDICATORS}


def _inputs(**overrides: float) -> IndicatorInputs:
    values = {**NEUTRAL, **overrides}
    return IndicatorInputs(**{k: np.array([v], dtype=np.float64) for k, v in values.items()})


def _fired(**overrides: float) -> set[str]:
    flags = indicator_flags(_inputs(**overrides))
    one = indicator_flags(IndicatorInputs(**{**NEUTRAL, **overrides}))  # the float path
    assert [bool(f[0]) for f in flags] == [bool(f) for f in one]
    return {name for name, on in zip(INDICATOR_NAMES, flags, strict=True) if on[0]}


def test_indicator_flags_neutral_transaction_fires_nothing() -> None:
    """A daytime, local, typical purchase on an old card fires no indicator."""
    assert _fired() == set()


@pytest.mark.parametrize(
    ("field", "value", "indicator", "fires"),
    [
        ("amount", 500.0, "high_amount", False),
        ("amount", 500.01, "high_amount", True),
        ("amount_to_typical", 4.0, "unusual_amount_for_category", False),
        ("amount_to_typical", 4.001, "unusual_amount_for_category", True),
        ("local_hour", 23.0, "late_night", False),
        ("local_hour", 0.0, "late_night", True),
        ("local_hour", 4.0, "late_night", True),
        ("local_hour", 5.0, "late_night", False),
        ("distance_km", 100.0, "far_from_home", False),
        ("distance_km", 100.001, "far_from_home", True),
        ("card_age_days", 29.0, "new_card", True),
        ("card_age_days", 30.0, "new_card", False),
        ("card_age_days", 0.0, "new_card", True),
        ("is_foreign", 1.0, "foreign", True),
        ("is_foreign", 0.0, "foreign", False),
        ("is_online", 1.0, "online_category", True),
        ("is_online", 0.0, "online_category", False),
        ("card_tx_1h", 2.0, "card_velocity_high", False),
        ("card_tx_1h", 3.0, "card_velocity_high", True),
        ("amount_to_card_mean", 5.0, "amount_unusual_for_card", False),
        ("amount_to_card_mean", 5.001, "amount_unusual_for_card", True),
    ],
)
def test_indicator_flags_threshold_boundary(
    field: str, value: float, indicator: str, fires: bool
) -> None:
    """Each indicator fires on its own, exactly on the documented side of its threshold."""
    assert _fired(**{field: value}) == ({indicator} if fires else set())


@pytest.mark.parametrize("field", list(NEUTRAL))
def test_a_missing_quantity_never_fires(field: str) -> None:
    """NaN (a card with no history, a store that did not answer) fires nothing."""
    assert _fired(**{field: float("nan")}) == set()


def test_indicator_flags_are_named_in_indicator_order() -> None:
    """The flags are a named tuple in `INDICATORS` order (no positional indices needed)."""
    flags = indicator_flags(_inputs(amount=700.0, local_hour=3.0))
    assert flags._fields == INDICATOR_NAMES
    assert bool(flags.high_amount[0])
    assert bool(flags.late_night[0])


def _row(*names: str) -> np.ndarray:
    return np.array([[name in names for name in INDICATOR_NAMES]])


def risk_scores(fired: np.ndarray) -> np.ndarray:
    """noisy_or over the columns of a fired-indicator matrix (one row per transaction)."""
    return np.asarray(noisy_or(tuple(fired[:, k] for k in range(fired.shape[1]))), dtype=float)


def test_noisy_or_zero_when_nothing_fires() -> None:
    """No fired indicator gives a risk score of exactly 0."""
    assert risk_scores(_row())[0] == 0.0


@pytest.mark.parametrize("name", INDICATOR_NAMES)
def test_noisy_or_single_indicator_equals_its_weight(name: str) -> None:
    """One indicator alone contributes exactly its weight."""
    assert risk_scores(_row(name))[0] == pytest.approx(WEIGHT[name], abs=1e-12)


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(INDICATOR_NAMES, 2)))
def test_noisy_or_two_indicators_combine_by_noisy_or(a: str, b: str) -> None:
    """Two indicators give 1 - (1 - w1)(1 - w2)."""
    expected = 1 - (1 - WEIGHT[a]) * (1 - WEIGHT[b])
    assert risk_scores(_row(a, b))[0] == pytest.approx(expected, abs=1e-12)


def test_noisy_or_all_fired_bounded_by_one() -> None:
    """Every indicator firing gives the full noisy-OR, which stays within [0, 1]."""
    score = risk_scores(_row(*INDICATOR_NAMES))[0]
    expected = 1 - np.prod([1 - spec.weight for spec in INDICATORS])
    assert score == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= score <= 1.0


def test_noisy_or_monotone_in_fired_indicators() -> None:
    """Adding a fired indicator never lowers the score, and always raises it."""
    combos = np.array(list(itertools.product([False, True], repeat=len(INDICATORS))))
    scores = risk_scores(combos)
    assert ((scores >= 0) & (scores <= 1)).all()
    lookup: dict[tuple[Any, ...], float] = {
        tuple(c): s for c, s in zip(combos.tolist(), scores, strict=True)
    }
    for combo, score in lookup.items():
        for i, on in enumerate(combo):
            if not on:
                more = (*combo[:i], True, *combo[i + 1 :])
                assert lookup[more] > score


def test_noisy_or_vectorised_rows_are_independent() -> None:
    """Each row of the indicator matrix is scored on its own."""
    fired = np.vstack([_row(), _row("foreign"), _row("high_amount", "late_night")])
    expected = [
        0.0,
        WEIGHT["foreign"],
        1 - (1 - WEIGHT["high_amount"]) * (1 - WEIGHT["late_night"]),
    ]
    np.testing.assert_allclose(risk_scores(fired), expected, atol=1e-12)


def test_indicator_weights_are_probabilities() -> None:
    """Every indicator weight lies strictly between 0 and 1, and names are unique."""
    assert all(0 < spec.weight < 1 for spec in INDICATORS)
    assert len(set(INDICATOR_NAMES)) == len(INDICATOR_NAMES)
