"""The explanation block and the model-driven reason codes (sproxxo.explanations,
sproxxo.policy.with_model_codes): pure functions over given contributions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydantic import ValidationError

from sproxxo.explanations import (
    MODEL_CODES_PER_DECISION,
    MODEL_REASON_CODES,
    TOP_CONTRIBUTIONS,
    Contributions,
    Explained,
    explain_requested,
    explanation_blocks,
    model_reason_codes,
    rows_to_explain,
)
from sproxxo.features import FEATURE_NAMES
from sproxxo.policy import MAX_REASON_CODES, MODEL_SCORE_CODES, with_model_codes
from sproxxo.schemas import Explanation

F = len(FEATURE_NAMES)


def _phi(**by_name: float) -> np.ndarray:
    row = np.zeros(F)
    for name, value in by_name.items():
        row[FEATURE_NAMES.index(name)] = value
    return row


def test_model_reason_codes_table_maps_every_feature() -> None:
    """Every model feature has exactly one code, and every code is a MODEL_ name that is not
    a generic score-band code."""
    assert set(MODEL_REASON_CODES) == set(FEATURE_NAMES)
    for code in MODEL_REASON_CODES.values():
        assert re.fullmatch(r"MODEL_[A-Z_]+", code)
        assert code not in MODEL_SCORE_CODES
    assert MODEL_REASON_CODES["amount_to_card_mean"] == "MODEL_AMOUNT_UNUSUAL_FOR_CARD"
    assert MODEL_REASON_CODES["is_night"] == "MODEL_NIGHT_ONLINE"
    assert MODEL_REASON_CODES["is_online"] == "MODEL_NIGHT_ONLINE"


def test_model_reason_codes_rank_codes_by_summed_contributions() -> None:
    """A code weighs the sum of its features: three velocity features of 0.3 (0.9) outrank
    one amount feature of 0.8; the next code is the second, and negatives never count."""
    phi = _phi(
        card_tx_1h=0.3,
        card_tx_24h=0.3,
        card_amount_1h=0.3,
        log_amount=0.8,
        is_night=0.1,
        distance_km=-2.0,
    )
    assert MODEL_CODES_PER_DECISION == 2
    assert model_reason_codes(phi[None, :]) == [["MODEL_CARD_VELOCITY", "MODEL_AMOUNT_HIGH"]]


@pytest.mark.parametrize(
    ("phi", "expected"),
    [
        (_phi(hour=0.4), ["MODEL_NIGHT_ONLINE"]),
        (_phi(hour=0.4, is_online=-0.5), []),  # the group sums to less than zero
        (_phi(distance_km=-1.0), []),
        (np.zeros(F), []),
    ],
)
def test_model_reason_codes_only_positive_codes(phi: np.ndarray, expected: list[str]) -> None:
    """Only codes whose features pushed the score up in sum are named."""
    assert model_reason_codes(phi[None, :]) == [expected]


@pytest.mark.parametrize(
    ("codes", "model", "expected"),
    [
        (["MODEL_SCORE_VERY_HIGH"], ["MODEL_A", "MODEL_B"], ["MODEL_A", "MODEL_B"]),
        (
            ["MODEL_SCORE_HIGH", "RISK_HIGH_AMOUNT", "RISK_FOREIGN"],
            ["MODEL_A", "MODEL_B"],
            ["MODEL_A", "MODEL_B", "RISK_HIGH_AMOUNT"],
        ),
        (
            ["RULE_NULL_ISLAND", "MODEL_SCORE_HIGH", "RISK_FOREIGN"],
            ["MODEL_A", "MODEL_B"],
            ["RULE_NULL_ISLAND", "MODEL_A", "MODEL_B"],
        ),
        (
            ["RULE_A", "RULE_B", "MODEL_SCORE_VERY_HIGH"],
            ["MODEL_A", "MODEL_B"],
            ["RULE_A", "RULE_B", "MODEL_A"],
        ),
        (["RULE_A", "RISK_FOREIGN"], ["MODEL_A"], ["RULE_A", "RISK_FOREIGN"]),  # rules drove
        (["MODEL_SCORE_HIGH", "RISK_FOREIGN"], [], ["MODEL_SCORE_HIGH", "RISK_FOREIGN"]),
    ],
)
def test_with_model_codes_replaces_the_score_band_code(
    codes: list[str], model: list[str], expected: list[str]
) -> None:
    """Model-driven codes take the generic code's place, rules stay first, at most
    MAX_REASON_CODES; without a band code or model codes nothing changes."""
    got = with_model_codes(codes, model)
    assert got == expected
    assert len(got) <= MAX_REASON_CODES


@pytest.mark.parametrize(
    ("decisions", "requested", "expected"),
    [
        (["approve", "review", "decline", "approve"], False, [1, 2]),
        (["approve", "review", "approve"], [True, False, False], [0, 1]),
        (["approve", "approve"], True, [0, 1]),
        (["approve"], False, []),
    ],
)
def test_rows_to_explain_reviews_declines_and_requests(
    decisions: list[str], requested: list[bool] | bool, expected: list[int]
) -> None:
    """Reviews and declines are always explained, approves only when asked."""
    assert rows_to_explain(decisions, requested).tolist() == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, False),
        ({"explain": "true"}, True),
        ({"explain": "1"}, True),
        ({"explain": "false"}, False),
    ],
)
def test_explain_requested_reads_a_boolean(query: dict[str, str], expected: bool) -> None:
    """`?explain=` takes pydantic's booleans; no parameter means no."""
    assert explain_requested(query) is expected


def test_explain_requested_refuses_a_non_boolean() -> None:
    """A value that is not a boolean is a validation error (BentoML answers 400)."""
    with pytest.raises(ValidationError, match="explain"):
        explain_requested({"explain": "maybe"})


def _explained() -> tuple[Explained, np.ndarray]:
    rng = np.random.default_rng(4)
    phi = rng.normal(0, 0.5, (2, F))
    phi[0, 3] = -9.0  # the largest in magnitude, negative
    phi[1, 3] = 5.0  # the largest, and its value is missing
    matrix = rng.normal(size=(3, F))
    matrix[2, 3] = np.nan
    raw = -3.0 + phi.sum(axis=1)
    found = Contributions(base_value=-3.0, raw_scores=raw, by_feature=phi)
    return Explained(np.array([0, 2]), found), matrix


def test_explanation_blocks_top_contributions_add_up() -> None:
    """Explained rows list TOP_CONTRIBUTIONS by magnitude with the feature's value (null
    when missing); base + listed + others = raw score; other rows get none."""
    explained, matrix = _explained()
    blocks = explanation_blocks(explained, matrix)
    assert sorted(blocks) == [0, 2]
    for block, row, k in ((blocks[0], 0, 0), (blocks[2], 2, 1)):
        assert block is not None
        parsed = Explanation.model_validate(block)
        assert len(parsed.contributions) == TOP_CONTRIBUTIONS
        sizes = [abs(c.contribution) for c in parsed.contributions]
        assert sizes == sorted(sizes, reverse=True)
        assert (
            sizes[-1] >= np.sort(np.abs(explained.contributions.by_feature[k]))[-TOP_CONTRIBUTIONS]
        )
        listed = sum(c.contribution for c in parsed.contributions)
        total = parsed.base_value + listed + parsed.other_contributions
        assert total == pytest.approx(parsed.raw_score, abs=1e-12)
        for c in parsed.contributions:
            value = matrix[row, FEATURE_NAMES.index(c.feature)]
            assert c.value == (None if np.isnan(value) else value)
    first = blocks[0]
    assert first is not None
    assert first["contributions"][0] == {
        "feature": FEATURE_NAMES[3],
        "value": matrix[0, 3],
        "contribution": -9.0,
    }
    third = blocks[2]
    assert third is not None
    assert third["contributions"][0] == {
        "feature": FEATURE_NAMES[3],
        "value": None,
        "contribution": 5.0,
    }


def test_explanation_blocks_none_without_explanations() -> None:
    """Nothing explained: no answer gets an explanation."""
    assert explanation_blocks(None, np.zeros((2, F))) == {}
