"""Drift of logged predictions against a model's reference sample, as one typed summary.

A column drifts when its difference from the reference is both *significant* and *material*
(docs/monitoring.md, "Drift"); `DRIFT_CRITERIA` holds each column's unit, effect size and
threshold:

    drifted = p-value < column_p_value   and   effect size >= the column's threshold

* Effect size: Evidently's Wasserstein distance normed by the reference's standard deviation
  (numerical columns) or its PSI (categorical). The thresholds were calibrated on clean
  windows of 500-20,000 transactions from other card populations, and checked to still
  catch planted shifts (tests/monitoring/test_drift_calibration.py).
* Test: two-sample Kolmogorov-Smirnov (numerical) or a two-sample chi-square on the
  contingency table (categorical; Evidently's own `chisquare` is a goodness-of-fit test that
  takes the reference as exact and over-flags). It keeps small windows, whose effect sizes
  are noisy, from flagging; the threshold keeps large ones from flagging differences nobody
  acts on, and absorbs what the test cannot see (transactions of one card are not
  independent draws).
* Unit: card-level attributes (`customer_age`, `card_age_days`, `log_city_pop`,
  `is_new_card`) repeat on every transaction of a card, so they are compared once per card:
  rows de-duplicated on `CARD_KEY`, the tuple of the card's own values. The log holds no card
  identifier; within a day the tuple identifies a card, across days a card counts once per
  day it was seen (its age changes). Counted per transaction, 50 busy cards look like 2,000
  independent draws and any new mix of cards "drifts" (issue 15: p = 1e-37 to 1e-143).
* Coverage: `weekday` needs a window of a week and `hour`/`is_night` one of a day; a shorter
  window (`window_hours`) reports them untested instead of flagging its own span.
* Monitored features are `FEATURE_NAMES` minus `risk_score` (a function of the others:
  reported, never counted twice) and the card-history features (all missing when a model is
  trained without history).
* Both samples are capped (seeded) so the tests' power does not grow with traffic.

Evidently (0.7) provides the effect sizes and renders the HTML report with the same rule
(`_register_verdicts`); its result format has changed between releases, so it is read in
exactly one place (`_value_drift_scores`), and a report whose numbers differ from the
summary's is refused (`_check_agreement`).
"""

from __future__ import annotations

import logging
import math
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

ColumnRole = Literal["feature", "prediction", "derived"]
ColumnKind = Literal["numerical", "categorical"]
#: What one tested value stands for: a transaction, or a card (de-duplicated on CARD_KEY).
ColumnUnit = Literal["transaction", "card"]

WASSERSTEIN: Final = "wasserstein"
PSI: Final = "psi"
KS: Final = "ks"
TWO_SAMPLE_CHI2: Final = "chi2_two_sample"
DAY_HOURS: Final = 24.0
WEEK_HOURS: Final = 7 * DAY_HOURS
#: The card-level values that, together, stand for a card (no card id is logged).
CARD_KEY: Final = ("customer_age", "log_city_pop", "card_age_days")
QUANTILES: Final = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Criterion:
    """How one column is compared: its role, unit, effect-size threshold and window."""

    role: ColumnRole
    kind: ColumnKind
    threshold: float
    unit: ColumnUnit = "transaction"
    min_window_hours: float = 0.0

    @property
    def method(self) -> str:
        """Evidently's name of the effect size."""
        return WASSERSTEIN if self.kind == "numerical" else PSI

    @property
    def test(self) -> str:
        """The two-sample test whose p-value keeps small samples from flagging."""
        return KS if self.kind == "numerical" else TWO_SAMPLE_CHI2


#: Every tested column and its criterion. Each threshold is the larger of a floor
#: (Wasserstein 0.1, a tenth of the reference's standard deviation; PSI 0.01, 0.005 for the
#: yes/no indicators, whose shares are small) and 1.5 times the largest effect size of the
#: clean calibration windows whose test alone would have fired (p < 0.001), rounded up:
#: 1,080 one-day windows of 460-20,300 transactions from other card populations, against
#: six references (docs/monitoring.md, "Drift", has the figures). The card-level thresholds are
#: high because each synthetic population is only ~3,300 cards; a model trained on a larger
#: card base deserves a re-calibration and lower ones.
DRIFT_CRITERIA: Final[dict[str, Criterion]] = {
    "log_amount": Criterion("feature", "numerical", 0.1),
    "amount_to_typical": Criterion("feature", "numerical", 0.1),
    "distance_km": Criterion("feature", "numerical", 0.1),
    "customer_age": Criterion("feature", "numerical", 0.3, unit="card"),
    "card_age_days": Criterion("feature", "numerical", 0.4, unit="card"),
    "log_city_pop": Criterion("feature", "numerical", 0.4, unit="card"),
    "hour": Criterion("feature", "categorical", 0.01, min_window_hours=DAY_HOURS),
    # Not calibrated (the calibration windows are days): the floor.
    "weekday": Criterion("feature", "categorical", 0.01, min_window_hours=WEEK_HOURS),
    "is_night": Criterion("feature", "categorical", 0.005, min_window_hours=DAY_HOURS),
    "is_new_card": Criterion("feature", "categorical", 0.15, unit="card"),
    "is_foreign": Criterion("feature", "categorical", 0.02),
    "category_code": Criterion("feature", "categorical", 0.15),
    "is_online": Criterion("feature", "categorical", 0.01),
    "risk_score": Criterion("derived", "numerical", 1.0),
    "fraud_probability": Criterion("prediction", "numerical", 0.5),
    "decision": Criterion("prediction", "categorical", 0.04),
}
REQUIRED_COLUMNS: Final = tuple(DRIFT_CRITERIA)
MONITORED_FEATURES: Final = tuple(c for c, k in DRIFT_CRITERIA.items() if k.role == "feature")
PREDICTION_COLUMNS: Final = tuple(c for c, k in DRIFT_CRITERIA.items() if k.role == "prediction")
CARD_LEVEL: Final = tuple(c for c, k in DRIFT_CRITERIA.items() if k.unit == "card")


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
    """The comparison of one column: effect size and p-value against their thresholds."""

    model_config = ConfigDict(frozen=True)

    column: str
    role: ColumnRole
    kind: ColumnKind
    unit: ColumnUnit
    method: str
    statistic: float | None
    threshold: float
    test: str
    p_value: float | None
    p_value_threshold: float
    reference_rows: int
    current_rows: int
    tested: bool
    drifted: bool
    note: str = ""


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
    window_hours: float | None
    columns: list[ColumnDrift]
    tested_features: list[str]
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


@dataclass(frozen=True)
class _Sample:
    """A capped, typed sample and which of its rows is the first of its card."""

    frame: pd.DataFrame
    first_of_card: pd.Series

    def values(self, column: str) -> pd.Series:
        """The column's tested values: known ones, once per card for card-level columns."""
        values = self.frame[column]
        if DRIFT_CRITERIA[column].unit == "card":
            values = values[self.first_of_card]
        if DRIFT_CRITERIA[column].kind == "numerical":
            values = values.replace([np.inf, -np.inf], np.nan)
        return values.dropna()


def check_columns(frame: pd.DataFrame, *, name: str, min_rows: int) -> None:
    """Raise `InsufficientData` or `FeatureSchemaMismatch` when `frame` cannot be tested."""
    if frame.empty:
        raise InsufficientData(f"{name}: no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FeatureSchemaMismatch(f"{name}: missing columns: {', '.join(missing)}")
    if len(frame) < min_rows:
        raise InsufficientData(f"{name}: {len(frame)} rows, fewer than the {min_rows} needed")


def drift_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
    window_hours: float | None = None,
) -> DriftSummary:
    """Compare `current` with `reference` column by column (no HTML; fast).

    Args:
        window_hours: the span of the window, when known: columns that need a longer one
            (`Criterion.min_window_hours`) are reported untested.

    Raises:
        InsufficientData: either frame is empty or smaller than `thresholds.min_rows`.
        FeatureSchemaMismatch: a monitored column is missing.
    """
    limits = thresholds or DriftThresholds()
    ref, cur = _samples(reference, current, limits)
    return _summary(reference, current, ref, cur, limits, window_hours)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
    window_hours: float | None = None,
) -> DriftReport:
    """`drift_summary` plus Evidently's report of the same comparison (for the HTML).

    Raises:
        InsufficientData, FeatureSchemaMismatch: as `drift_summary`.
        RuntimeError: Evidently's numbers differ from the summary's (its format changed?).
    """
    limits = thresholds or DriftThresholds()
    ref, cur = _samples(reference, current, limits)
    summary = _summary(reference, current, ref, cur, limits, window_hours)
    snapshot = _run_evidently(ref, cur, summary.columns, limits)
    _check_agreement(summary.columns, _value_drift_scores(snapshot))
    return DriftReport(summary=summary, snapshot=snapshot)


def column_verdict(
    kind: ColumnKind,
    reference: pd.Series,
    current: pd.Series,
    *,
    threshold: float,
    p_value_threshold: float,
) -> tuple[float, float, bool]:
    """(effect size, p-value, drifted) of one column's tested values (see the module doc)."""
    effect = _effect_size(kind, reference, current)
    if kind == "numerical":
        p_value = two_sample_ks(reference, current)
    else:
        p_value = two_sample_chi2(reference, current, None, p_value_threshold)[0]
    return effect, p_value, bool(p_value < p_value_threshold and effect >= threshold)


def _samples(
    reference: pd.DataFrame, current: pd.DataFrame, limits: DriftThresholds
) -> tuple[_Sample, _Sample]:
    check_columns(reference, name="reference", min_rows=limits.min_rows)
    check_columns(current, name="current window", min_rows=limits.min_rows)
    return (
        _prepare(reference, limits.max_reference_rows, limits.sample_seed),
        _prepare(current, limits.max_current_rows, limits.sample_seed),
    )


def _prepare(frame: pd.DataFrame, max_rows: int, seed: int) -> _Sample:
    picked = frame.sample(max_rows, random_state=seed) if len(frame) > max_rows else frame
    out = picked[list(REQUIRED_COLUMNS)].reset_index(drop=True).copy()
    for column, criterion in DRIFT_CRITERIA.items():
        if criterion.kind == "numerical":
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
        elif column != "decision":
            # Integer-valued floats as category labels: "3", not "3.0".
            out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
            out[column] = out[column].astype("string")
    out["decision"] = out["decision"].astype("string")
    return _Sample(out, first_of_card(out))


def first_of_card(frame: pd.DataFrame) -> pd.Series:
    """True on the first row of each card (`CARD_KEY`); rows with an unknown key value
    cannot be matched to a card and stay."""
    key = frame[list(CARD_KEY)]
    return ~key.duplicated() | key.isna().any(axis=1)


def _summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    ref: _Sample,
    cur: _Sample,
    limits: DriftThresholds,
    window_hours: float | None,
) -> DriftSummary:
    columns = [_compare(column, ref, cur, limits, window_hours) for column in REQUIRED_COLUMNS]
    features = [c for c in columns if c.role == "feature" and c.tested]
    drifted = [c.column for c in features if c.drifted]
    share = len(drifted) / len(features) if features else 0.0
    prediction = any(c.drifted for c in columns if c.role == "prediction")
    return DriftSummary(
        reference_rows=len(reference),
        current_rows=len(current),
        tested_reference_rows=len(ref.frame),
        tested_current_rows=len(cur.frame),
        window_hours=window_hours,
        columns=columns,
        tested_features=[c.column for c in features],
        drifted_features=drifted,
        drift_share=share,
        prediction_drift=prediction,
        drift_detected=share >= limits.drift_share or prediction,
        reference_scores=score_distribution(reference),
        current_scores=score_distribution(current),
        quality=data_quality(current),
        thresholds=limits,
    )


def _compare(
    column: str, ref: _Sample, cur: _Sample, limits: DriftThresholds, window_hours: float | None
) -> ColumnDrift:
    criterion = DRIFT_CRITERIA[column]
    reference, current = ref.values(column), cur.values(column)
    note = _untested_reason(criterion, window_hours, reference, current)
    statistic = p_value = None
    drifted = False
    if not note:
        statistic, p_value, drifted = column_verdict(
            criterion.kind,
            reference,
            current,
            threshold=criterion.threshold,
            p_value_threshold=limits.column_p_value,
        )
    return ColumnDrift(
        column=column,
        role=criterion.role,
        kind=criterion.kind,
        unit=criterion.unit,
        method=criterion.method,
        statistic=statistic,
        threshold=criterion.threshold,
        test=criterion.test,
        p_value=p_value,
        p_value_threshold=limits.column_p_value,
        reference_rows=len(reference),
        current_rows=len(current),
        tested=not note,
        drifted=drifted,
        note=note,
    )


def _untested_reason(
    criterion: Criterion, window_hours: float | None, reference: pd.Series, current: pd.Series
) -> str:
    if window_hours is not None and window_hours < criterion.min_window_hours:
        return (
            f"not tested: the window ({window_hours:g} h) is shorter than the "
            f"{criterion.min_window_hours:g} h this column needs"
        )
    if reference.empty or current.empty:
        return "not tested: no known values in the " + (
            "reference" if reference.empty else "window"
        )
    return ""


def _column_type(kind: ColumnKind) -> Any:
    from evidently.legacy.core import ColumnType

    return ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical


def _effect_size(kind: ColumnKind, reference: pd.Series, current: pd.Series) -> float:
    """Evidently's normed Wasserstein distance (numerical) or PSI (categorical)."""
    import evidently.legacy.calculations.stattests  # noqa: F401  registers the stattests
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest

    column_type = _column_type(kind)
    stattest = get_registered_stattest(WASSERSTEIN if kind == "numerical" else PSI, column_type)
    return float(stattest(reference, current, column_type, None).drift_score)


def two_sample_ks(reference: pd.Series, current: pd.Series) -> float:
    """p-value of the two-sample Kolmogorov-Smirnov test (Evidently's `ks`, but asymptotic:
    the exact method fails on large samples with ties, with only a RuntimeWarning)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, current, method="asymp").pvalue)


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


@dataclass(frozen=True)
class _EvidentlyVerdict:
    """`column_verdict` in the shape of an Evidently stattest, so the HTML decides alike."""

    kind: ColumnKind
    p_value_threshold: float

    def __call__(
        self, reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        effect, _, drifted = column_verdict(
            self.kind,
            reference,
            current,
            threshold=threshold,
            p_value_threshold=self.p_value_threshold,
        )
        return effect, drifted


@cache
def _register_verdicts(p_value_threshold: float) -> dict[ColumnKind, str]:
    """Evidently stattests deciding like the summary, one per kind: kind -> name."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest

    names: dict[ColumnKind, str] = {}
    kinds: tuple[ColumnKind, ...] = ("numerical", "categorical")
    for kind in kinds:
        effect, test = (
            ("Wasserstein distance (normed)", "Kolmogorov-Smirnov")
            if kind == "numerical"
            else ("PSI", "two-sample chi-square")
        )
        names[kind] = f"sproxxo_{kind}_p{p_value_threshold:g}"
        register_stattest(
            StatTest(
                name=names[kind],
                display_name=f"{effect}; drift also needs {test} p < {p_value_threshold:g}",
                allowed_feature_types=[_column_type(kind)],
                default_threshold=0.1,
            ),
            default_impl=_EvidentlyVerdict(kind, p_value_threshold),
        )
    return names


def _html_name(column: str) -> str:
    """The column's name in the HTML: card-level columns are tested on per-card copies."""
    return f"{column} (per card)" if DRIFT_CRITERIA[column].unit == "card" else column


def _html_frame(sample: _Sample) -> pd.DataFrame:
    """The sample plus, for each card-level column, a copy that is empty but once per card
    (Evidently drops empty values: it then tests what the summary tested)."""
    frame = sample.frame.copy()
    for column in CARD_LEVEL:
        frame[_html_name(column)] = frame[column].where(sample.first_of_card)
    return frame


def _run_evidently(
    ref: _Sample, cur: _Sample, columns: list[ColumnDrift], limits: DriftThresholds
) -> Any:
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    methods = _register_verdicts(limits.column_p_value)
    tested = {_html_name(c.column): c for c in columns if c.tested}
    report = Report(
        [
            DataDriftPreset(
                columns=list(tested),
                per_column_method={name: methods[c.kind] for name, c in tested.items()},
                per_column_threshold={name: c.threshold for name, c in tested.items()},
                drift_share=limits.drift_share,
            ),
            DataSummaryPreset(columns=list(REQUIRED_COLUMNS)),
        ]
    )
    definition = _definition()
    return report.run(
        Dataset.from_pandas(_html_frame(cur), data_definition=definition),
        Dataset.from_pandas(_html_frame(ref), data_definition=definition),
    )


def _definition() -> Any:
    """Evidently's types of the HTML frame's columns, per-card copies included."""
    from evidently import DataDefinition

    by_kind: dict[ColumnKind, list[str]] = {"numerical": [], "categorical": []}
    for column, criterion in DRIFT_CRITERIA.items():
        by_kind[criterion.kind].append(column)
        if criterion.unit == "card":
            by_kind[criterion.kind].append(_html_name(column))
    return DataDefinition(
        numerical_columns=by_kind["numerical"], categorical_columns=by_kind["categorical"]
    )


def _value_drift_scores(snapshot: Any) -> dict[str, float]:
    """HTML column name -> score of every ValueDrift metric: the only Evidently parsing."""
    scores: dict[str, float] = {}
    for item in snapshot.dict().get("metrics", []):
        config = item.get("config", {})
        if str(config.get("type", "")).rsplit(":", 1)[-1].endswith("ValueDrift"):
            scores[str(config["column"])] = float(item["value"])
    return scores


def _check_agreement(columns: list[ColumnDrift], scores: dict[str, float]) -> None:
    """Raise RuntimeError when the HTML would show other numbers than the summary."""
    for column in columns:
        if not column.tested or column.statistic is None:
            continue
        shown = scores.get(_html_name(column.column))
        if shown is None or not math.isclose(shown, column.statistic, rel_tol=1e-9, abs_tol=1e-12):
            raise RuntimeError(
                f"evidently reports {shown} for {column.column}, the summary "
                f"{column.statistic}: format changed?"
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
