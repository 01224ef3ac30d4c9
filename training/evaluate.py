"""Score a data source with a stored model and print its metrics as JSON.

python -m training.evaluate --model sproxxo-fraud:latest --source synthetic --seed 7
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence

import pandas as pd

from sproxxo import store
from sproxxo.bundle import ModelBundle
from sproxxo.cli import configure_logging, run
from sproxxo.features import LABEL_COLUMN, build_features
from sproxxo.model import evaluate
from sproxxo.settings import get_settings
from training.train import add_source_args, load_data

logger = logging.getLogger("training.evaluate")


def score(bundle: ModelBundle, frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of a bundle on labelled canonical data, under the bundle's own policy."""
    probabilities = bundle.predict_matrix(build_features(frame))
    return evaluate(
        probabilities,
        frame[LABEL_COLUMN].to_numpy(),
        frame["amount"].to_numpy(),
        bundle.metadata.policy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and the data, print metrics JSON."""
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="model tag, version or 'latest'")
    add_source_args(p)
    p.set_defaults(rows=50_000, seed=2024)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))
    bundle = store.load_model(args.model)
    metrics = score(bundle, load_data(args))
    print(json.dumps({"model": bundle.tag, "metrics": metrics}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
