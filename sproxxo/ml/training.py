"""Training a candidate: the estimator, its policy, its metrics and what travels with it.

The estimator is a scikit-learn Pipeline over `build_features` (one feature function for
training and serving); the fitted pipeline is the source of truth and
`sproxxo.ml.compiled_trees` compiles its trees for the serving path. `train_candidate` is
the whole recipe: time split, fit, cost-based policy on the validation window, metrics on
the test window, compiled-path parity, reference sample and data fingerprint. The platform's
training job and the data-science template both call it, so every model is made the same
way and lands in the same bundle format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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

from sproxxo.errors import EvaluationImpossible
from sproxxo.features import FEATURE_NAMES, LABEL_COLUMN, build_features, category_codes, derive
from sproxxo.history import HISTORY_FEATURES, offline_features
from sproxxo.ml.bundle import BundleMetadata, DataFingerprint
from sproxxo.ml.compiled_trees import PARITY_TOLERANCE, compile_model, parity_gap
from sproxxo.policy import CostModel, Policy, choose_policy, decide_by_probability, expected_cost

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


def add_history(frame: pd.DataFrame, warmup: pd.DataFrame | None = None) -> pd.DataFrame:
    """`frame` with each row's card-history features (`sproxxo.history`), from the earlier
    rows of its card in `warmup` and `frame`: point in time, as the service computes them.
    `warmup` rows (an older file, a window before the data) only warm the state."""
    both = frame if warmup is None else pd.concat([warmup, frame], ignore_index=True)
    matrix = offline_features(
        both["card_id"].to_numpy(),
        both["transaction_id"].to_numpy(),
        both["epoch_seconds"].to_numpy(dtype=np.float64),
        both["amount"].to_numpy(dtype=np.float64),
        category_codes(both["merchant_category"].to_numpy()),
        both["merch_lat"].to_numpy(dtype=np.float64),
        both["merch_long"].to_numpy(dtype=np.float64),
    )
    own = matrix[len(both) - len(frame) :]
    return frame.assign(**{name: own[:, k] for k, name in enumerate(HISTORY_FEATURES)})


def fit_pipeline(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> Pipeline:
    """Fit boosted trees on `train` (class-balanced), then Platt-calibrate on `validation`.

    A feature that is never known in the training data (e.g. the card history, trained
    without it) is fitted as a constant: it carries nothing, and scikit-learn cannot bin
    a column that is all NaN."""
    hgb = HistGradientBoostingClassifier(
        **{**DEFAULT_PARAMS, **(params or {})}, class_weight="balanced", random_state=seed
    )
    matrix = build_features(train)
    matrix[:, np.isnan(matrix).all(axis=0)] = 0.0
    hgb.fit(matrix, train[LABEL_COLUMN].to_numpy())
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
        raise EvaluationImpossible("evaluation data needs both fraud and legitimate transactions")
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
            raise EvaluationImpossible(
                f"the {name} split has {len(part)} rows and {int(labels.sum())} frauds: "
                "it needs both classes (use more rows)"
            )
    return parts


REFERENCE_ROWS: Final = 5000


def fingerprint(frame: pd.DataFrame, source: str) -> DataFingerprint:
    """Hash, size, fraud rate and time range of the training data."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    epochs = frame["epoch_seconds"]
    return DataFingerprint(
        source=source,
        sha256=digest.hexdigest(),
        rows=len(frame),
        fraud_rate=float(frame[LABEL_COLUMN].mean()),
        start=datetime.fromtimestamp(int(epochs.min()), UTC).isoformat(),
        end=datetime.fromtimestamp(int(epochs.max()), UTC).isoformat(),
    )


def reference_sample(
    frame: pd.DataFrame, probabilities: npt.NDArray[np.float64], policy: Policy
) -> pd.DataFrame:
    """Features, scores and decisions of a fixed sample, kept with the model for drift."""
    n = min(REFERENCE_ROWS, len(frame))
    idx = np.random.default_rng(0).choice(len(frame), size=n, replace=False)
    idx.sort()
    sample = frame.iloc[idx]
    derived = derive(sample)
    ref = pd.DataFrame(derived.matrix, columns=list(FEATURE_NAMES))
    ref["fraud_probability"] = probabilities[idx]
    ref["decision"] = [decide_by_probability(float(p), policy).value for p in probabilities[idx]]
    ref[LABEL_COLUMN] = sample[LABEL_COLUMN].to_numpy()
    return ref


def compiled_parity(pipeline: Any, frame: pd.DataFrame) -> float:
    """Largest |p_sklearn - p_compiled| on `frame`; the compiled path must match sklearn."""
    calibrated = pipeline[-1]
    diff = parity_gap(calibrated, compile_model(calibrated), build_features(frame))
    if diff > PARITY_TOLERANCE:
        raise EvaluationImpossible(
            f"compiled trees disagree with sklearn by {diff:.2e} > {PARITY_TOLERANCE}"
        )
    return diff


Fit = Callable[..., Pipeline]


@dataclass(frozen=True)
class Candidate:
    """A trained model and everything that is registered with it."""

    pipeline: Pipeline
    metadata: BundleMetadata
    reference: pd.DataFrame
    test_labels: npt.NDArray[np.int_]
    test_probabilities: npt.NDArray[np.float64]

    @property
    def metrics(self) -> dict[str, float]:
        """The test-window metrics (with thresholds and the compiled-path parity)."""
        return self.metadata.metrics


def train_candidate(
    frame: pd.DataFrame,
    *,
    source: str,
    costs: CostModel | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    fit: Fit = fit_pipeline,
) -> Candidate:
    """Time split, fit, choose the policy on the validation window, evaluate on the test
    window, check the compiled path, sample the reference and fingerprint the data.

    `fit(train, validation, params=..., seed=...)` may be replaced (the data-science template
    tunes its own), within what serving can load: `FeatureBuilder` first, a sigmoid
    `CalibratedClassifierCV` over one frozen HistGradientBoosting model last.

    Raises:
        EvaluationImpossible: a split lacks a class, or the compiled trees disagree.
    """
    train, validation, test = time_split(frame)
    full_params = {**DEFAULT_PARAMS, **(params or {})}
    pipeline = fit(train, validation, params=full_params, seed=seed)
    p_val = fraud_probability(pipeline, validation)
    policy = choose_policy(
        p_val,
        validation[LABEL_COLUMN].to_numpy(),
        validation["amount"].to_numpy(),
        costs or CostModel(),
    )
    labels = test[LABEL_COLUMN].to_numpy()
    p_test = fraud_probability(pipeline, test)
    metrics = evaluate(p_test, labels, test["amount"].to_numpy(), policy)
    metrics |= {
        "review_at": policy.review_at,
        "decline_at": policy.decline_at,
        "compiled_parity_max_abs_diff": compiled_parity(pipeline, test),
    }
    metadata = BundleMetadata(
        policy=policy,
        metrics=metrics,
        params={**full_params, "seed": seed},
        data=fingerprint(frame, source),
        trained_at=datetime.now(UTC).isoformat(),
    )
    return Candidate(
        pipeline, metadata, reference_sample(validation, p_val, policy), labels, p_test
    )
