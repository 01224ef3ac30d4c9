"""Train a fraud model and register it in the BentoML store as the platform does.

    uv run --env-file .env python -m {{ cookiecutter.package_name }}.train --rows 200000

The model is made by the platform's own recipe (`sproxxo.ml.training.train_candidate`:
split, fit, policy, metrics, parity check, reference sample, fingerprint) with this
project's `fit`, and lands as `sproxxo-fraud` through `sproxxo.adapters.bentoml_store`, in
the platform's bundle format, labelled `stage=candidate` and `team={{ cookiecutter.team }}`.
Promotion stays the platform's gate (`training/promote.py`). Prints the new tag last.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any, Final

import pandas as pd
from sklearn.pipeline import Pipeline

from sproxxo.adapters import bentoml_store as store
from sproxxo.jobs.cli import configure_logging, run
from sproxxo.ml.training import DEFAULT_PARAMS, fit_pipeline, train_candidate
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


def fit(
    train: pd.DataFrame, validation: pd.DataFrame, *, params: dict[str, Any], seed: int
) -> Pipeline:
    """The estimator: tune or replace it, within what serving can load.

    The first step must stay sproxxo's `FeatureBuilder` (serving's feature code), and the
    last a sigmoid `CalibratedClassifierCV` over one frozen `HistGradientBoostingClassifier`:
    serving compiles exactly that (`sproxxo.ml.compiled_trees`) and refuses anything else.
    """
    return fit_pipeline(train, validation, params=params, seed=seed)


def train_and_register(*, rows: int, seed: int, max_iter: int) -> str:
    """Load, train with the platform's recipe and this project's `fit`, register; returns
    the new tag."""
    frame = load_data(rows, seed=seed)
    candidate = train_candidate(
        frame, source="synthetic", params={"max_iter": max_iter}, seed=seed, fit=fit
    )
    labels = {"source": "synthetic", "team": TEAM, "project": PROJECT}
    tag, _ = store.save_model(
        candidate.pipeline, candidate.metadata, candidate.reference, labels=labels
    )
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
