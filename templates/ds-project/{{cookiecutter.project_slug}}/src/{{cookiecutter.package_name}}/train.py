"""Train a fraud model and register it in the BentoML store as the platform does.

    uv run --env-file .env python -m {{ cookiecutter.package_name }}.train --rows 200000

The model lands as `sproxxo-fraud` through `sproxxo.store.save_model`, in the same bundle
format as the platform's `training/train.py` (pipeline, metadata with library versions,
reference sample), labelled `stage=candidate` and `team={{ cookiecutter.team }}`. Promotion
stays the platform's gate (`training/promote.py`). Prints the new tag on the last line.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import pandas as pd
from sklearn.pipeline import Pipeline

from sproxxo import store
from sproxxo.bundle import BundleMetadata
from sproxxo.cli import configure_logging, run
from sproxxo.features import LABEL_COLUMN
from sproxxo.model import DEFAULT_PARAMS, evaluate, fit_pipeline, fraud_probability, time_split
from sproxxo.policy import CostModel, choose_policy
from sproxxo.registration import compiled_parity, fingerprint, reference_sample
from sproxxo.settings import get_settings
from sproxxo.sources.synthetic import generate

logger = logging.getLogger(__name__)
TEAM: Final = "{{ cookiecutter.team }}"
PROJECT: Final = "{{ cookiecutter.project_slug }}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m {{ cookiecutter.package_name }}.train")
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-iter", type=int, default=DEFAULT_PARAMS["max_iter"])
    return p.parse_args(argv)


def load_data(rows: int, *, seed: int) -> pd.DataFrame:
    """Canonical columns plus `is_fraud`. Replace with your data; keep the columns."""
    return generate(rows, seed=seed)


def fit(train: pd.DataFrame, validation: pd.DataFrame, *, max_iter: int, seed: int) -> Pipeline:
    """The estimator: tune or replace it, within what serving can load.

    The first step must stay sproxxo's `FeatureBuilder` (serving's feature code), and the
    last a sigmoid `CalibratedClassifierCV` over one frozen `HistGradientBoostingClassifier`:
    serving compiles exactly that (`sproxxo.forest`) and refuses anything else.
    """
    params = {**DEFAULT_PARAMS, "max_iter": max_iter}
    return fit_pipeline(train, validation, params=params, seed=seed)


def register(
    frame: pd.DataFrame,
    pipeline: Pipeline,
    splits: tuple[pd.DataFrame, pd.DataFrame],
    *,
    source: str,
    params: dict[str, Any],
) -> str:
    """Choose the policy, evaluate, and save the bundle into the store; returns the tag."""
    validation, test = splits
    p_val = fraud_probability(pipeline, validation)
    policy = choose_policy(
        p_val, validation[LABEL_COLUMN].to_numpy(), validation["amount"].to_numpy(), CostModel()
    )
    p_test = fraud_probability(pipeline, test)
    metrics = evaluate(p_test, test[LABEL_COLUMN].to_numpy(), test["amount"].to_numpy(), policy)
    metrics |= {
        "review_at": policy.review_at,
        "decline_at": policy.decline_at,
        "compiled_parity_max_abs_diff": compiled_parity(pipeline, test),
    }
    metadata = BundleMetadata(
        policy=policy,
        metrics=metrics,
        params=params,
        data=fingerprint(frame, source),
        trained_at=datetime.now(UTC).isoformat(),
    )
    labels = {"source": source, "team": TEAM, "project": PROJECT}
    tag, _ = store.save_model(
        pipeline, metadata, reference_sample(validation, p_val, policy), labels=labels
    )
    return tag


def train_and_register(*, rows: int, seed: int, max_iter: int) -> str:
    """Load, split in time, fit and register; returns the new tag."""
    frame = load_data(rows, seed=seed)
    train, validation, test = time_split(frame)
    pipeline = fit(train, validation, max_iter=max_iter, seed=seed)
    params = {**DEFAULT_PARAMS, "max_iter": max_iter, "seed": seed}
    tag = register(frame, pipeline, (validation, test), source="synthetic", params=params)
    logger.info("registered %s (team=%s)", tag, TEAM)
    return tag


def main(argv: Sequence[str] | None = None) -> int:
    """Train and register; print the tag last."""
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))
    tag = train_and_register(rows=args.rows, seed=args.seed, max_iter=args.max_iter)
    print(tag)  # noqa: T201 - the tag is the CLI's output
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
