"""Score a data source with a stored model and print its metrics as JSON.

python -m training.evaluate --model sproxxo-fraud:latest --source synthetic --seed 7
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from sproxxo.jobs.cli import add_source_args, configure_logging, data_spec, run
from sproxxo.jobs.evaluate import evaluate
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and the data, print metrics JSON."""
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="model tag, version or 'latest'")
    add_source_args(p, rows=50_000, seed=2024)
    args = p.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    print(json.dumps(evaluate(args.model, data_spec(args), settings), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
