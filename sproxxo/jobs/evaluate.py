"""Scoring a labelled data set with a stored model, under the model's own policy."""

from __future__ import annotations

import pandas as pd

from sproxxo.adapters import bentoml_store as store
from sproxxo.features import LABEL_COLUMN, build_features
from sproxxo.jobs.data import DataSpec
from sproxxo.jobs.train import load_frame, use_store
from sproxxo.ml.bundle import ModelBundle
from sproxxo.ml.training import evaluate as metrics_of
from sproxxo.settings import Settings


def score(bundle: ModelBundle, frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of a bundle on labelled canonical data, under the bundle's own policy."""
    probabilities = bundle.predict_matrix(build_features(frame))
    return metrics_of(
        probabilities, frame[LABEL_COLUMN].to_numpy(), frame["amount"].to_numpy(), bundle.policy
    )


def evaluate(tag: str, data: DataSpec, settings: Settings) -> dict[str, object]:
    """`{"model": full tag, "metrics": {...}}` of a stored model on the data."""
    use_store(settings)
    bundle = store.load_model(tag)
    return {"model": bundle.tag, "metrics": score(bundle, load_frame(data, settings))}
