"""The typed drift summary, computed by the real Evidently on generated logs."""

from __future__ import annotations

import pandas as pd
import pytest

from sproxxo.adapters.evidently import (
    MONITORED_FEATURES,
    DriftSummary,
    InsufficientData,
    drift_summary,
    two_sample_chi2,
)
from sproxxo.errors import FeatureSchemaMismatch
from sproxxo.features import BASE_FEATURES
from sproxxo.history import HISTORY_FEATURES
from tests.monitoring.logs import current_frame

SHIFTED = {"log_amount", "amount_to_typical", "hour", "is_night"}


def test_monitored_features_cover_every_stateless_model_input_but_risk_score() -> None:
    """Monitored features are the transaction's own model inputs without the derived risk
    score; the card-history features are not drift-monitored yet (all missing when a model
    is trained without history, which Evidently's tests cannot take)."""
    assert set(MONITORED_FEATURES) == set(BASE_FEATURES) - {"risk_score"}
    assert not set(MONITORED_FEATURES) & set(HISTORY_FEATURES)


def test_drift_summary_flags_exactly_the_shifted_features(shifted_summary: DriftSummary) -> None:
    """Doubling the night share and tripling amounts flags hour, is_night and the amounts."""
    assert set(shifted_summary.drifted_features) == SHIFTED
    assert shifted_summary.drift_share == pytest.approx(4 / 13)
    assert shifted_summary.drift_detected


def test_drift_summary_flags_prediction_drift_on_shift(shifted_summary: DriftSummary) -> None:
    """The shift raises scores: prediction drift is flagged and the mean moves up."""
    assert shifted_summary.prediction_drift
    assert (
        shifted_summary.current_scores.fraud_probability_mean
        > 2 * shifted_summary.reference_scores.fraud_probability_mean
    )
    assert (
        shifted_summary.current_scores.decision_share["approve"]
        < (shifted_summary.reference_scores.decision_share["approve"])
    )


def test_drift_summary_flags_nothing_on_a_steady_window(steady_summary: DriftSummary) -> None:
    """A window from the same population flags no column and no drift."""
    assert [c.column for c in steady_summary.columns if c.drifted] == []
    assert steady_summary.drift_share == 0.0
    assert not steady_summary.drift_detected


def test_drift_summary_reports_method_and_p_value_per_column(
    steady_summary: DriftSummary,
) -> None:
    """Every monitored column carries its test name, p-value and threshold."""
    by_name = {c.column: c for c in steady_summary.columns}
    assert set(by_name) >= set(MONITORED_FEATURES) | {"fraud_probability", "decision"}
    assert by_name["log_amount"].method == "ks"
    assert by_name["hour"].method == "chi2_two_sample"
    assert all(0.0 <= c.p_value <= 1.0 for c in steady_summary.columns)


def test_drift_summary_caps_the_tested_sample(steady_summary: DriftSummary) -> None:
    """The reference is tested whole below the cap, the window likewise."""
    assert steady_summary.tested_reference_rows == steady_summary.reference_rows == 10_000
    assert steady_summary.tested_current_rows == 5_000


def test_drift_summary_refuses_a_tiny_window(reference: pd.DataFrame) -> None:
    """Fewer rows than min_rows raise InsufficientData naming the count."""
    with pytest.raises(InsufficientData, match="150 rows"):
        drift_summary(reference, current_frame(150))


def test_drift_summary_refuses_missing_columns(reference: pd.DataFrame) -> None:
    """A window without a monitored column raises FeatureSchemaMismatch naming it."""
    with pytest.raises(FeatureSchemaMismatch, match="is_night"):
        drift_summary(reference, current_frame(300).drop(columns=["is_night"]))


def test_two_sample_chi2_ignores_equal_proportions() -> None:
    """Identical category shares give p = 1 and no drift."""
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    p_value, drifted = two_sample_chi2(ref, ref.copy(), None, 0.001)
    assert p_value == pytest.approx(1.0)
    assert not drifted
