"""A worker's start-up path imports no heavy library it does not need: the service module
and loading the champion (stored compiled trees, checked against the parity rows stored
with them) import neither scikit-learn (unpickled on first use only) nor pandas/pyarrow
(the prediction-log readers and training use them) nor MLflow, Evidently, matplotlib or
the Google Cloud clients, nor FastAPI (the model-management app is built beside start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "sklearn",
    "pandas",
    "pyarrow",
    "mlflow",
    "evidently",
    "matplotlib",
    "google.cloud.bigquery",
    "fastapi",
)
PROBE = """
import json, sys
import service
from sproxxo.adapters import bentoml_store as store
bundle = store.load_model(sys.argv[1], trust=store.trust(service.SETTINGS))
loaded = {name: name in sys.modules for name in sys.argv[2:]}
print(json.dumps({"compiled": bundle.compiled is not None, "loaded": loaded}))
"""


def _probe(script: str, *args: str) -> dict[str, Any]:
    """Run `script` in a fresh interpreter at the project's root; its last line, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_service_start_up_imports_no_heavy_library(model_tags: list[str]) -> None:
    """Importing the service and loading the champion imports none of HEAVY."""
    found = _probe(PROBE, model_tags[0], *HEAVY)
    assert found["compiled"] is True
    assert found["loaded"] == dict.fromkeys(HEAVY, False)


DEFERRED = """
import json, sys
import service
from sproxxo import jit, kernels
from sproxxo.adapters import bentoml_store as store
jit.defer()  # as start_runtime: numba loads once the worker is ready
bundle = store.load_model(sys.argv[1], trust=store.trust(service.SETTINGS))
import numpy as np
from sproxxo.features import FEATURE_NAMES
x = np.zeros((3, len(FEATURE_NAMES)))
before = {"numba": "numba" in sys.modules, "p": bundle.predict_matrix(x).tolist()}
kernels.load_in_background().join()
after = {"numba": "numba" in sys.modules, "p": bundle.predict_matrix(x).tolist()}
print(json.dumps({"before": before, "after": after}))
"""


def test_a_worker_is_ready_before_numba_loads(model_tags: list[str]) -> None:
    """The model is verified (its stored parity rows) and scores without numba; once the
    background load has run, the kernel gives the same probabilities."""
    found = _probe(DEFERRED, model_tags[0])
    assert found["before"]["numba"] is False
    assert found["after"]["numba"] is True
    assert found["before"]["p"] == found["after"]["p"]
