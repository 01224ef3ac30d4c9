"""What training hands to the store besides the pipeline: data fingerprint, reference
sample for drift, and the compiled-path parity check. Shared by `training.train` and the
data-science project template, so every model lands in the same format."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from sproxxo.bundle import DataFingerprint
from sproxxo.features import FEATURE_NAMES, LABEL_COLUMN, build_features, derive
from sproxxo.forest import PARITY_TOLERANCE, compile_model, parity_gap
from sproxxo.policy import Policy, decide_by_probability

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
        raise ValueError(f"compiled trees disagree with sklearn by {diff:.2e} > {PARITY_TOLERANCE}")
    return diff
