"""Train a fraud model, track it in MLflow and register it in the BentoML store.

    python -m training.train --source synthetic --rows 200000 --seed 42 [--bootstrap]

Prints the new model's tag on the last line of stdout (sproxxo/jobs/train.py does the work).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sproxxo.jobs.cli import add_source_args, configure_logging, data_spec, run
from sproxxo.jobs.train import TrainRequest, train
from sproxxo.ml.training import DEFAULT_PARAMS
from sproxxo.policy import CostModel
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate, track and register; print the tag last."""
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    add_source_args(p)
    p.add_argument("--review-cost", type=float, default=CostModel().review_cost)
    p.add_argument("--false-decline-cost", type=float, default=CostModel().false_decline_cost)
    p.add_argument("--max-iter", type=int, default=DEFAULT_PARAMS["max_iter"])
    p.add_argument("--stage", choices=["candidate", "challenger"], default="challenger")
    p.add_argument("--bootstrap", action="store_true", help="promote if the store has no champion")
    p.add_argument("--no-card-history", action="store_true", help="train without history features")
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    costs = CostModel(review_cost=args.review_cost, false_decline_cost=args.false_decline_cost)
    request = TrainRequest(
        data_spec(args), costs, args.max_iter, args.stage, args.bootstrap, not args.no_card_history
    )
    print(train(request, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
