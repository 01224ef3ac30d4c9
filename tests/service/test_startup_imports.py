"""A worker's start-up path imports no heavy library it does not need: the service module
and loading the champion (stored compiled trees, checked against the parity rows stored
with them) import neither scikit-learn (unpickled on first use only) nor pandas/pyarrow
(the prediction-log readers and training use them) nor MLflow, Evidently, matplotlib or
the Google Cloud clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "sklearn",
    "pandas",
    "pyarrow",
    "mlflow",
    "evidently",
    "matplotlib",
    "google.cloud.bigquery",
)
PROBE = """
import json, sys
import service
from sproxxo.adapters import bentoml_store as store
bundle = store.load_model(sys.argv[1], trust=store.trust(service.SETTINGS))
loaded = {name: name in sys.modules for name in sys.argv[2:]}
print(json.dumps({"compiled": bundle.compiled is not None, "loaded": loaded}))
"""


def test_service_start_up_imports_no_heavy_library(model_tags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, model_tags[0], *HEAVY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["compiled"] is True
    assert found["loaded"] == dict.fromkeys(HEAVY, False)
