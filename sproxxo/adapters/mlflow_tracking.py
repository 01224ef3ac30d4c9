"""Adapter over MLflow: runs, plots, registry versions and aliases (imported lazily)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sproxxo.errors import TrackingError
from sproxxo.ml.bundle import MODEL_NAME

logger = logging.getLogger(__name__)

REGISTERED_NAME: Final = MODEL_NAME
EXPERIMENT: Final = MODEL_NAME
#: Types MLflow's skops serialisation must be told to trust: ours and sklearn internals.
SKOPS_TRUSTED: Final = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sproxxo.ml.training.FeatureBuilder",
]


def _mlflow() -> Any:
    import mlflow

    return mlflow


def start_run(tracking_uri: str, *, run_name: str, artifact_root: Path | None = None) -> Any:
    """Open an MLflow run (or raise `TrackingError` if the tracker is unreachable).

    With a local tracking store, artifacts go to `artifact_root` instead of `./mlruns`.
    """
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            location = artifact_root.resolve().as_uri() if artifact_root else None
            mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        mlflow.set_experiment(EXPERIMENT)
        return mlflow.start_run(run_name=run_name)
    except Exception as exc:  # mlflow raises MlflowException, requests and sqlalchemy errors
        raise TrackingError(f"MLflow at {tracking_uri} is unusable: {exc}") from exc


def log_training(
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    curves: tuple[npt.NDArray[np.int_], npt.NDArray[np.float64]],
) -> None:
    """Log params, metrics and PR/ROC curve plots to the active run."""
    mlflow = _mlflow()
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for path in _plot_curves(*curves, Path(tmp)):
            mlflow.log_artifact(str(path), artifact_path="plots")


def log_and_register(pipeline: Any, *, requirements: list[str], alias: str) -> str:
    """Log the pipeline as an MLflow model, register a version and set an alias on it."""
    mlflow = _mlflow()
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        registered_model_name=REGISTERED_NAME,
        pip_requirements=requirements,
        skops_trusted_types=SKOPS_TRUSTED,
    )
    version = str(info.registered_model_version)
    set_alias(alias, version)
    return version


def set_alias(alias: str, version: str, tracking_uri: str | None = None) -> None:
    """Point a registry alias (`champion`, `challenger`) at a model version."""
    mlflow = _mlflow()
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        mlflow.MlflowClient().set_registered_model_alias(REGISTERED_NAME, alias, version)
    except Exception as exc:
        raise TrackingError(f"cannot set MLflow alias {alias}={version}: {exc}") from exc


def _plot_curves(
    labels: npt.NDArray[np.int_], probabilities: npt.NDArray[np.float64], folder: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    paths = []
    for name, display in (("pr_curve", PrecisionRecallDisplay), ("roc_curve", RocCurveDisplay)):
        fig, ax = plt.subplots(figsize=(5, 4))
        display.from_predictions(labels, probabilities, ax=ax, name=MODEL_NAME)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
