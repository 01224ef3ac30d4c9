"""Train a fraud model, track it in MLflow and register it in the BentoML store.

    python -m training.train --source synthetic --rows 200000 --seed 42

Prints the new model's tag on the last line of stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from sproxxo import store, tracking
from sproxxo.bundle import BundleMetadata
from sproxxo.cli import GateRefused, configure_logging, run
from sproxxo.features import LABEL_COLUMN
from sproxxo.model import (
    DEFAULT_PARAMS,
    evaluate,
    fit_pipeline,
    fraud_probability,
    gate,
    time_split,
)
from sproxxo.policy import CostModel, choose_policy
from sproxxo.promotion import promote_to_champion
from sproxxo.registration import compiled_parity, fingerprint, reference_sample
from sproxxo.settings import get_settings
from sproxxo.signing import signer_for
from sproxxo.sources import SOURCES, load_source
from sproxxo.versions import runtime_versions

logger = logging.getLogger("training.train")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    add_source_args(p)
    p.add_argument("--review-cost", type=float, default=CostModel().review_cost)
    p.add_argument("--false-decline-cost", type=float, default=CostModel().false_decline_cost)
    p.add_argument("--max-iter", type=int, default=DEFAULT_PARAMS["max_iter"])
    p.add_argument("--stage", choices=["candidate", "challenger"], default="challenger")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or local")
    p.add_argument(
        "--bootstrap",
        action="store_true",
        help="if the store has no champion, promote this model through the gate's floors "
        "(a first local model; refused on GitHub Actions, where the champion is imported)",
    )
    args = p.parse_args(argv)
    if args.bootstrap and os.environ.get("GITHUB_ACTIONS") == "true":
        p.error("--bootstrap is refused in CI: import the current champion before training")
    return args


def add_source_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every CLI that reads a data source."""
    p.add_argument("--source", choices=SOURCES, default="synthetic")
    p.add_argument("--path", help="CSV/Parquet file for --source file")
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--table", help="BigQuery table project.dataset.table")
    p.add_argument("--project", help="BigQuery billing project")
    p.add_argument("--since", help="start (inclusive), ISO date, BigQuery only")
    p.add_argument("--until", help="end (exclusive), ISO date, BigQuery only")


def load_data(args: argparse.Namespace) -> pd.DataFrame:
    """The frame a CLI's source options point at."""
    return load_source(
        args.source,
        path=args.path,
        rows=args.rows,
        seed=args.seed,
        since=args.since,
        until=args.until,
        table=args.table,
        project=args.project,
        token_key=get_settings().card_token_key.get_secret_value().encode(),
    )


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


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate, track and register; print the tag last."""
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_uri
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    frame = load_data(args)
    logger.info("loaded %d rows from %s (%.1fs)", len(frame), args.source, time.perf_counter() - t0)
    train, validation, test = time_split(frame)
    params = {**DEFAULT_PARAMS, "max_iter": args.max_iter}
    costs = CostModel(review_cost=args.review_cost, false_decline_cost=args.false_decline_cost)

    run_ctx = tracking.start_run(
        tracking_uri,
        run_name=f"train-{args.source}",
        artifact_root=settings.state_dir / "mlartifacts"
        if tracking_uri.startswith("sqlite")
        else None,
    )
    with run_ctx as mlflow_run:
        t1 = time.perf_counter()
        pipeline = fit_pipeline(train, validation, params=params, seed=args.seed)
        logger.info("fitted on %d rows (%.1fs)", len(train), time.perf_counter() - t1)
        p_val = fraud_probability(pipeline, validation)
        policy = choose_policy(
            p_val,
            validation[LABEL_COLUMN].to_numpy(),
            validation["amount"].to_numpy(),
            costs,
        )
        p_test = fraud_probability(pipeline, test)
        labels, amounts = test[LABEL_COLUMN].to_numpy(), test["amount"].to_numpy()
        metrics = evaluate(p_test, labels, amounts, policy)
        metrics |= {
            "review_at": policy.review_at,
            "decline_at": policy.decline_at,
            "compiled_parity_max_abs_diff": compiled_parity(pipeline, test),
        }
        logger.info("test metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
        tracking.log_training(
            params={**params, "source": args.source, "rows": len(frame), "seed": args.seed},
            metrics=metrics,
            curves=(labels, p_test),
        )
        requirements = [f"{k}=={v}" for k, v in runtime_versions().items() if k != "python"]
        mlflow_version = tracking.log_and_register(
            pipeline, requirements=requirements, alias=args.stage
        )
        metadata = BundleMetadata(
            policy=policy,
            metrics=metrics,
            params={**params, "seed": args.seed},
            data=fingerprint(frame, args.source),
            mlflow_run_id=mlflow_run.info.run_id,
            mlflow_version=mlflow_version,
            trained_at=datetime.now(UTC).isoformat(),
        )
        tag, _ = store.save_model(
            pipeline,
            metadata,
            reference_sample(validation, p_val, policy),
            labels={"source": args.source, "git_sha": git_sha(), "mlflow_version": mlflow_version},
        )
    store.set_stage(tag, args.stage)
    if args.bootstrap and store.champion_tag() is None:
        verdict = gate(metrics, None)
        if verdict["failures"]:
            raise GateRefused(f"{tag} not bootstrapped: " + "; ".join(verdict["failures"]))
        promote_to_champion(
            tag,
            mlflow_version=mlflow_version,
            tracking_uri=tracking_uri,
            signer=signer_for(settings.model_signing_key, dev_folder=settings.keys_dir),
            promoted_by="bootstrap",
        )
    logger.info("done in %.1fs", time.perf_counter() - t0)
    print(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
