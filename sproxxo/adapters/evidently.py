"""Drift of logged predictions against a model's reference sample, as one typed summary.

Evidently (0.7) computes the statistics and renders the HTML report; its result format has
changed between releases, so it is read in exactly one place (`_value_drift_scores`) and
everything else works on `DriftSummary`.

Design choices (documented in monitoring/README.md):

* Monitored features are `FEATURE_NAMES` minus `risk_score`: the risk score is a function
  of the other features, so it is reported with the scores but never counted twice.
* Every column gets a two-sample test with a p-value: KS for continuous columns and a
  chi-square test on the contingency table for discrete ones (hour and weekday are treated
  as categories: they are cyclic). Evidently's own `chisquare` is a goodness-of-fit test
  that treats the reference as exact and over-flags, so a two-sample version is registered.
* Both samples are capped (seeded) so the power of the tests does not grow with traffic:
  at a million rows every p-value is ~0 for differences nobody cares about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from sproxxo.errors import FeatureSchemaMismatch, InsufficientData
from sproxxo.schemas import Decision

logger = logging.getLogger(__name__)

NUMERICAL_FEATURES: Final = (
    "log_amount",
    "amount_to_typical",
    "distance_km",
    "customer_age",
    "card_age_days",
    "log_city_pop",
)
CATEGORICAL_FEATURES: Final = (
    "hour",
    "weekday",
    "is_night",
    "is_new_card",
    "is_foreign",
    "category_code",
    "is_online",
)
MONITORED_FEATURES: Final = (*NUMERICAL_FEATURES, *CATEGORICAL_FEATURES)
#: Scores: `fraud_probability` and `decision` are the prediction; `risk_score` is derived.
NUMERICAL_SCORES: Final = ("risk_score", "fraud_probability")
CATEGORICAL_SCORES: Final = ("decision",)
PREDICTION_COLUMNS: Final = ("fraud_probability", "decision")
REQUIRED_COLUMNS: Final = (*MONITORED_FEATURES, *NUMERICAL_SCORES, *CATEGORICAL_SCORES)
TWO_SAMPLE_CHI2: Final = "chi2_two_sample"
KS: Final = "ks"
QUANTILES: Final = (0.5, 0.9, 0.99)

ColumnRole = Literal["feature", "prediction", "derived"]


class DriftThresholds(BaseModel):
    """When a column, and a window, count as drifted (see monitoring/README.md)."""

    model_config = ConfigDict(frozen=True)

    column_p_value: float = Field(default=0.001, gt=0, lt=1)
    drift_share: float = Field(default=0.3, gt=0, le=1)
    min_rows: int = Field(default=200, ge=1)
    max_current_rows: int = Field(default=5_000, ge=1)
    max_reference_rows: int = Field(default=20_000, ge=1)
    sample_seed: int = 0


class ColumnDrift(BaseModel):
    """The test result of one column."""

    model_config = ConfigDict(frozen=True)

    column: str
    role: ColumnRole
    kind: Literal["numerical", "categorical"]
    method: str
    p_value: float
    threshold: float
    drifted: bool


class ScoreDistribution(BaseModel):
    """Fraud-probability quantiles and decision mix of one sample."""

    model_config = ConfigDict(frozen=True)

    rows: int
    fraud_probability_mean: float
    fraud_probability_quantiles: dict[str, float]
    risk_score_mean: float
    decision_share: dict[str, float]


class DataQuality(BaseModel):
    """Cheap checks of the current window (Evidently's summary is in the HTML)."""

    model_config = ConfigDict(frozen=True)

    rows: int
    missing_share: dict[str, float]
    invalid_share: float | None = None
    probability_out_of_range: int


class DriftSummary(BaseModel):
    """Everything a caller needs from a drift run; the JSON the CLI writes."""

    model_config = ConfigDict(frozen=True)

    reference_rows: int
    current_rows: int
    tested_reference_rows: int
    tested_current_rows: int
    columns: list[ColumnDrift]
    drifted_features: list[str]
    drift_share: float
    prediction_drift: bool
    drift_detected: bool
    reference_scores: ScoreDistribution
    current_scores: ScoreDistribution
    quality: DataQuality
    thresholds: DriftThresholds


@dataclass(frozen=True)
class DriftReport:
    """A summary plus the Evidently snapshot it came from (for the HTML)."""

    summary: DriftSummary
    snapshot: Any

    def save_html(self, path: Path) -> None:
        """Write Evidently's self-contained HTML report."""
        self.snapshot.save_html(str(path))


def check_columns(frame: pd.DataFrame, *, name: str, min_rows: int) -> None:
    """Raise `InsufficientData` or `FeatureSchemaMismatch` when `frame` cannot be tested."""
    if frame.empty:
        raise InsufficientData(f"{name}: no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FeatureSchemaMismatch(f"{name}: missing columns: {', '.join(missing)}")
    if len(frame) < min_rows:
        raise InsufficientData(f"{name}: {len(frame)} rows, fewer than the {min_rows} needed")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Run Evidently on `current` vs `reference` and summarise it.

    Raises:
        InsufficientData: either frame is empty or smaller than `thresholds.min_rows`.
        FeatureSchemaMismatch: a monitored column is missing.
    """
    limits = thresholds or DriftThresholds()
    check_columns(reference, name="reference", min_rows=limits.min_rows)
    check_columns(current, name="current window", min_rows=limits.min_rows)
    ref = _prepare(reference, limits.max_reference_rows, limits.sample_seed)
    cur = _prepare(current, limits.max_current_rows, limits.sample_seed)
    snapshot = _run_evidently(ref, cur, limits)
    columns = _column_results(_value_drift_scores(snapshot), limits)
    return DriftReport(
        summary=_summarise(reference, current, columns, limits, tested=(len(ref), len(cur))),
        snapshot=snapshot,
    )


def drift_summary(
    reference: pd.DataFrame, current: pd.DataFrame, *, thresholds: DriftThresholds | None = None
) -> DriftSummary:
    """The typed summary of `drift_report` (no HTML)."""
    return drift_report(reference, current, thresholds=thresholds).summary


def _prepare(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    picked = frame.sample(max_rows, random_state=seed) if len(frame) > max_rows else frame
    out = picked[list(REQUIRED_COLUMNS)].reset_index(drop=True).copy()
    for column in (*NUMERICAL_FEATURES, *NUMERICAL_SCORES):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in CATEGORICAL_FEATURES:
        # Integer-valued floats as category labels: "3", not "3.0".
        out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
        out[column] = out[column].astype("string")
    out["decision"] = out["decision"].astype("string")
    return out


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, limits: DriftThresholds) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    _register_two_sample_chi2()
    definition = DataDefinition(
        numerical_columns=[*NUMERICAL_FEATURES, *NUMERICAL_SCORES],
        categorical_columns=[*CATEGORICAL_FEATURES, *CATEGORICAL_SCORES],
    )
    report = Report(
        [
            DataDriftPreset(
                columns=list(REQUIRED_COLUMNS),
                num_method=KS,
                cat_method=TWO_SAMPLE_CHI2,
                threshold=limits.column_p_value,
                drift_share=limits.drift_share,
            ),
            DataSummaryPreset(),
        ]
    )
    return report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )


def _value_drift_scores(snapshot: Any) -> dict[str, tuple[str, float]]:
    """Column -> (method, p-value) of every ValueDrift metric: the only Evidently parsing."""
    scores: dict[str, tuple[str, float]] = {}
    for item in snapshot.dict().get("metrics", []):
        config = item.get("config", {})
        if str(config.get("type", "")).rsplit(":", 1)[-1].endswith("ValueDrift"):
            scores[str(config["column"])] = (str(config.get("method")), float(item["value"]))
    missing = [c for c in REQUIRED_COLUMNS if c not in scores]
    if missing:
        raise RuntimeError(f"evidently returned no drift score for {missing}: format changed?")
    return scores


def _column_results(
    scores: dict[str, tuple[str, float]], limits: DriftThresholds
) -> list[ColumnDrift]:
    results: list[ColumnDrift] = []
    for column in REQUIRED_COLUMNS:
        method, p_value = scores[column]
        numerical = column in NUMERICAL_FEATURES or column in NUMERICAL_SCORES
        role: ColumnRole = (
            "feature"
            if column in MONITORED_FEATURES
            else ("prediction" if column in PREDICTION_COLUMNS else "derived")
        )
        results.append(
            ColumnDrift(
                column=column,
                role=role,
                kind="numerical" if numerical else "categorical",
                method=method,
                p_value=p_value,
                threshold=limits.column_p_value,
                drifted=bool(p_value < limits.column_p_value),
            )
        )
    return results


def _summarise(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[ColumnDrift],
    limits: DriftThresholds,
    *,
    tested: tuple[int, int],
) -> DriftSummary:
    drifted = [c.column for c in columns if c.role == "feature" and c.drifted]
    share = len(drifted) / len(MONITORED_FEATURES)
    prediction = any(c.drifted for c in columns if c.role == "prediction")
    return DriftSummary(
        reference_rows=len(reference),
        current_rows=len(current),
        tested_reference_rows=tested[0],
        tested_current_rows=tested[1],
        columns=columns,
        drifted_features=drifted,
        drift_share=share,
        prediction_drift=prediction,
        drift_detected=share >= limits.drift_share or prediction,
        reference_scores=score_distribution(reference),
        current_scores=score_distribution(current),
        quality=data_quality(current),
        thresholds=limits,
    )


def score_distribution(frame: pd.DataFrame) -> ScoreDistribution:
    """Mean and quantiles of `fraud_probability`, and the share of each decision."""
    probability = pd.to_numeric(frame["fraud_probability"], errors="coerce").dropna()
    mix = frame["decision"].astype("string").value_counts(normalize=True)
    return ScoreDistribution(
        rows=len(frame),
        fraud_probability_mean=float(probability.mean()),
        fraud_probability_quantiles={
            f"p{round(q * 100)}": float(probability.quantile(q)) for q in QUANTILES
        },
        risk_score_mean=float(pd.to_numeric(frame["risk_score"], errors="coerce").mean()),
        decision_share={d.value: float(mix.get(d.value, 0.0)) for d in Decision},
    )


def data_quality(frame: pd.DataFrame) -> DataQuality:
    """Missing values per monitored column, invalid share and out-of-range probabilities."""
    probability = pd.to_numeric(frame["fraud_probability"], errors="coerce")
    invalid = None
    if "valid" in frame.columns:
        invalid = float((~frame["valid"].astype("boolean").fillna(False)).mean())
    return DataQuality(
        rows=len(frame),
        missing_share={c: float(frame[c].isna().mean()) for c in REQUIRED_COLUMNS},
        invalid_share=invalid,
        probability_out_of_range=int(((probability < 0) | (probability > 1)).sum()),
    )


@cache
def _register_two_sample_chi2() -> None:
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name=TWO_SAMPLE_CHI2,
            display_name="two-sample chi-square p_value",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=0.001,
        ),
        default_impl=two_sample_chi2,
    )


def two_sample_chi2(
    reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    """Chi-square test of independence between sample membership and category."""
    from scipy.stats import chi2_contingency

    table = pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0)
    counts = table.to_numpy(dtype=np.float64)
    counts = counts[counts.sum(axis=1) > 0]
    if counts.shape[0] < 2:
        return 1.0, False
    p_value = float(chi2_contingency(counts, correction=False)[1])
    return p_value, p_value < threshold


def save_classification_html(frame: pd.DataFrame, path: Path) -> None:
    """Evidently's classification report of the labelled window."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    data = pd.DataFrame(
        {
            "is_fraud": frame["is_fraud"].astype(int),
            "fraud_probability": frame["fraud_probability"].astype(float),
        }
    )
    definition = DataDefinition(
        numerical_columns=["fraud_probability"],
        classification=[
            BinaryClassification(target="is_fraud", prediction_probas="fraud_probability")
        ],
    )
    report = Report([ClassificationPreset()])
    report.run(Dataset.from_pandas(data, data_definition=definition), None).save_html(str(path))
