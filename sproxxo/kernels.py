"""Compile every numba kernel the service runs, ahead of the first request.

Without numba's on-disk cache a fresh process compiles the tree walk (before readiness:
the parity check runs it), the explanation kernel and the card-history transition (both
beside start-up): several seconds of CPU on a fresh Cloud Run instance. The container image
runs `compile_all` once at build time (`deploy/numba_cache.sh`, BentoML's docker
`setup_script`) with `NUMBA_CACHE_DIR` inside the image and `NUMBA_CPU_NAME=generic`, so the
machine code suits any x86-64 host and every instance loads it instead of compiling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sproxxo import history_packed
from sproxxo.features import FEATURE_NAMES
from sproxxo.ml import compiled_trees, explain
from sproxxo.ml.compiled_trees import CompiledModel


def _stump() -> CompiledModel:
    """One tree, one split, two leaves: the types the service's models have."""
    return CompiledModel(
        feature=np.array([0, 0, 0], dtype=np.intp),
        threshold=np.array([0.0, np.inf, np.inf]),
        nan_right=np.array([True, False, False]),
        left=np.array([1, 1, 2], dtype=np.intp),
        value=np.array([0.0, -1.0, 1.0]),
        roots=np.array([0], dtype=np.intp),
        depths=np.array([1], dtype=np.intp),
        baseline=0.0,
        calibrators=((1.0, 0.0),),
        cover=np.array([2.0, 1.0, 1.0]),
    )


def compile_all() -> dict[str, Callable[..., None]]:
    """Run each kernel once on tiny inputs of the service's types (compiling it, or
    loading it from numba's cache); returns the kernels by name."""
    model = _stump()
    rows = np.zeros((2, len(FEATURE_NAMES)))
    model.raw(rows)
    explain.shap_values(model, rows[:1])
    history_packed.warm()
    return {
        "trees": compiled_trees._kernel(),
        "explanations": explain._kernel(),
        "history": history_packed._kernel(),
    }
