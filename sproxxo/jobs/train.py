"""The training job: data in, a registered candidate out (and, on request, the first
champion of an empty local store).

    load -> train_candidate (sproxxo.ml.training) -> MLflow run (params, metrics, plots, the
    pipeline, alias `challenger`) -> BentoML store (labels, metadata) -> optional bootstrap

Training never promotes on its own: `bootstrap` promotes only when the store has no champion
and the gate's floors pass, and it is refused on CI runners (`sproxxo.ml.promotion`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field

import pandas as pd

from sproxxo.adapters import bentoml_store as store
from sproxxo.adapters import mlflow_tracking as tracking
from sproxxo.adapters.bentoml_store import Stage
from sproxxo.errors import GateRefused
from sproxxo.jobs.data import DataSpec, load_with_history
from sproxxo.jobs.promote import promote_to_champion
from sproxxo.ml.promotion import bootstrap_problem, gate
from sproxxo.ml.signing import signer_for
from sproxxo.ml.training import DEFAULT_PARAMS, Candidate, add_history, train_candidate
from sproxxo.ml.versions import runtime_versions
from sproxxo.policy import CostModel
from sproxxo.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """What to train on and how."""

    data: DataSpec = field(default_factory=DataSpec)
    costs: CostModel = field(default_factory=CostModel)
    max_iter: int = int(DEFAULT_PARAMS["max_iter"])
    stage: Stage = "challenger"
    bootstrap: bool = False
    card_history: bool = True  # False: the history features stay unknown (comparisons)


def train(request: TrainRequest, settings: Settings) -> str:
    """Train, track, register (and bootstrap if asked); returns the new model's tag."""
    if request.bootstrap and (problem := bootstrap_problem(os.environ)):
        raise GateRefused(problem)
    use_store(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frame = load_frame(request.data, settings, card_history=request.card_history)
    logger.info("loaded %d rows from %s", len(frame), request.data.source)
    with tracking.start_run(
        settings.tracking_uri,
        run_name=f"train-{request.data.source}",
        artifact_root=settings.mlflow_artifacts_dir,
    ) as run:
        candidate = train_candidate(
            frame,
            source=request.data.source,
            costs=request.costs,
            params={"max_iter": request.max_iter},
            seed=request.data.seed,
        )
        logger.info("test metrics: %s", {k: round(v, 4) for k, v in candidate.metrics.items()})
        tag, mlflow_version = _register(candidate, run.info.run_id, request, rows=len(frame))
    if request.bootstrap and store.champion_tag() is None:
        _bootstrap(tag, candidate.metrics, mlflow_version, settings)
    logger.info("done in %.1fs", time.perf_counter() - t0)
    return tag


def _register(
    candidate: Candidate, run_id: str, request: TrainRequest, *, rows: int
) -> tuple[str, str]:
    """Log the run to MLflow, save the bundle into the store; returns (tag, MLflow version)."""
    params = {**candidate.metadata.params, "source": request.data.source, "rows": rows}
    tracking.log_training(
        params=params,
        metrics=candidate.metrics,
        curves=(candidate.test_labels, candidate.test_probabilities),
    )
    requirements = [f"{k}=={v}" for k, v in runtime_versions().items() if k != "python"]
    version = tracking.log_and_register(
        candidate.pipeline, requirements=requirements, alias=request.stage
    )
    metadata = candidate.metadata.model_copy(
        update={"mlflow_run_id": run_id, "mlflow_version": version}
    )
    labels = {"source": request.data.source, "git_sha": git_sha(), "mlflow_version": version}
    tag, _ = store.save_model(candidate.pipeline, metadata, candidate.reference, labels=labels)
    store.set_stage(tag, request.stage)
    return tag, version


def _bootstrap(
    tag: str, metrics: dict[str, float], mlflow_version: str, settings: Settings
) -> None:
    """The first champion of an empty store, through the gate's floors."""
    verdict = gate(metrics, None)
    if verdict["failures"]:
        raise GateRefused(f"{tag} not bootstrapped: " + "; ".join(verdict["failures"]))
    promote_to_champion(
        tag,
        mlflow_version=mlflow_version,
        tracking_uri=settings.tracking_uri,
        signer=signer_for(settings.model_signing_key, dev_folder=settings.keys_dir),
        promoted_by="bootstrap",
    )


def load_frame(spec: DataSpec, settings: Settings, *, card_history: bool = True) -> pd.DataFrame:
    """The data of a command with each row's card-history features, computed point in time
    over the history rows (which are not part of the result) and the data."""
    frame, warm = load_with_history(
        spec, token_key=settings.card_token_key.get_secret_value().encode()
    )
    return add_history(frame, warm) if card_history else frame


def use_store(settings: Settings) -> None:
    """Point BentoML (which reads BENTOML_HOME) at the settings' model store."""
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))


def git_sha() -> str:
    """Short git sha of the working tree, or `unknown` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
