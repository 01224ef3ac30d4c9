"""The estimator: a scikit-learn Pipeline over `build_features`, fitted and evaluated here.

Training and serving share this module; the fitted pipeline is the source of truth and
`sproxxo.forest` compiles its trees for the fast serving path.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline

from sproxxo.features import FEATURE_NAMES, LABEL_COLUMN, build_features
from sproxxo.policy import Policy, expected_cost

DEFAULT_PARAMS: Final[dict[str, Any]] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "max_depth": 8,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


class FeatureBuilder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """sklearn adapter over `build_features` so the pipeline carries the transform."""

    def fit(self, X: Any, y: Any = None) -> FeatureBuilder:
        """Stateless: nothing to learn."""
        return self

    def transform(self, X: Any) -> npt.NDArray[np.float64]:
        """Canonical columns -> feature matrix."""
        return build_features(X)

    def get_feature_names_out(self, input_features: Any = None) -> npt.NDArray[np.str_]:
        """The names of `build_features`' columns."""
        return np.array(FEATURE_NAMES)


def fit_pipeline(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> Pipeline:
    """Fit boosted trees on `train` (class-balanced), then Platt-calibrate on `validation`."""
    hgb = HistGradientBoostingClassifier(
        **{**DEFAULT_PARAMS, **(params or {})}, class_weight="balanced", random_state=seed
    )
    hgb.fit(build_features(train), train[LABEL_COLUMN].to_numpy())
    calibrated = CalibratedClassifierCV(FrozenEstimator(hgb), method="sigmoid")
    calibrated.fit(build_features(validation), validation[LABEL_COLUMN].to_numpy())
    return Pipeline([("features", FeatureBuilder()), ("model", calibrated)])


def fraud_probability(pipeline: Pipeline, frame: Any) -> npt.NDArray[np.float64]:
    """Calibrated P(fraud) for each row of canonical columns, via sklearn."""
    return np.asarray(pipeline.predict_proba(frame)[:, 1], dtype=np.float64)


def evaluate(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int_],
    amounts: npt.NDArray[np.float64],
    policy: Policy,
) -> dict[str, float]:
    """Ranking, calibration and business metrics of scored, labelled transactions."""
    y = labels.astype(int)
    metrics: dict[str, float] = {"rows": float(len(y)), "fraud_rate": float(y.mean())}
    if y.min() == y.max():
        raise ValueError("evaluation data needs both fraud and legitimate transactions")
    fpr, tpr, _ = roc_curve(y, probabilities)
    metrics |= {
        "roc_auc": float(roc_auc_score(y, probabilities)),
        "average_precision": float(average_precision_score(y, probabilities)),
        "recall_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "brier": float(brier_score_loss(y, probabilities)),
    }
    for name, threshold in (("review", policy.review_at), ("decline", policy.decline_at)):
        flagged = probabilities >= threshold
        tp = float((flagged & (y == 1)).sum())
        metrics[f"precision_at_{name}"] = tp / float(flagged.sum()) if flagged.any() else 0.0
        metrics[f"recall_at_{name}"] = tp / float(y.sum())
        metrics[f"{name}_rate"] = float(flagged.mean())
    cost = expected_cost(probabilities, y, amounts, policy)
    metrics["expected_cost"] = cost
    metrics["expected_cost_per_1k"] = 1000.0 * cost / len(y)
    metrics["fraud_amount_per_1k"] = 1000.0 * float(amounts[y == 1].sum()) / len(y)
    return metrics


def time_split(
    frame: pd.DataFrame, *, validation: float = 0.15, test: float = 0.15
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Chronological train / validation / test split (no future leaks into training)."""
    ordered = frame.sort_values("epoch_seconds", kind="stable").reset_index(drop=True)
    n = len(ordered)
    a, b = int(n * (1 - validation - test)), int(n * (1 - test))
    parts = ordered.iloc[:a], ordered.iloc[a:b], ordered.iloc[b:]
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        labels = part[LABEL_COLUMN]
        if len(part) == 0 or labels.min() == labels.max():
            raise ValueError(
                f"the {name} split has {len(part)} rows and {int(labels.sum())} frauds: "
                "it needs both classes (use more rows)"
            )
    return parts


#: Floors every champion must clear, and how much worse than the incumbent is tolerated.
GATE_FLOORS: Final[dict[str, float]] = {"roc_auc": 0.95, "average_precision": 0.70}
GATE_TOLERANCE: Final[dict[str, float]] = {"roc_auc": 0.002, "average_precision": 0.01}
GATE_COST_TOLERANCE: Final = 0.02  # relative


def gate(candidate: dict[str, float], champion: dict[str, float] | None) -> dict[str, list[str]]:
    """Promotion verdict: the failures (empty = promote) and the checks that passed."""
    failures: list[str] = []
    passed: list[str] = []
    for metric, floor in GATE_FLOORS.items():
        (passed if candidate[metric] >= floor else failures).append(
            f"{metric} {candidate[metric]:.4f} vs floor {floor}"
        )
    if champion is not None:
        for metric, tol in GATE_TOLERANCE.items():
            ok = candidate[metric] >= champion[metric] - tol
            (passed if ok else failures).append(
                f"{metric} {candidate[metric]:.4f} vs champion {champion[metric]:.4f} (-{tol})"
            )
        limit = champion["expected_cost"] * (1 + GATE_COST_TOLERANCE)
        (passed if candidate["expected_cost"] <= limit else failures).append(
            f"expected_cost {candidate['expected_cost']:.0f} vs champion "
            f"{champion['expected_cost']:.0f} (+{GATE_COST_TOLERANCE:.0%})"
        )
    return {"failures": failures, "passed": passed}
