"""Every numba kernel the service runs: compiled ahead of the first request, or loaded
beside a worker's start-up.

Without numba's on-disk cache a fresh process compiles the tree walk, the card-history
transition and the explanation kernels (one row, blocks of rows): several seconds of CPU on
a fresh Cloud Run instance.
The container image runs `compile_all` once at build time (`deploy/numba_cache.sh`,
BentoML's docker `setup_script`) with `NUMBA_CACHE_DIR` inside the image and
`NUMBA_CPU_NAME=generic`, so the machine code suits any x86-64 host and every instance loads
it instead of compiling. Even loaded, numba costs a worker ~0.8 s: `load_in_background`
takes it off the path to readiness (`sproxxo.jit`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from sproxxo import history_packed, jit
from sproxxo.features import FEATURE_NAMES
from sproxxo.ml import compiled_trees, explain


def _steps() -> dict[str, Callable[[], object]]:
    """Each kernel run once on tiny inputs of the service's types, in the order requests
    need them: the tree walk (every answer), the card history (every answer with a store),
    explanations of one row (a review or decline), then of several (a batch's)."""
    model = compiled_trees.stump()
    rows = np.zeros((2, len(FEATURE_NAMES)))
    return {
        "trees": lambda: model.raw(rows),
        "history": history_packed.warm,
        "explanations": lambda: explain.shap_values(model, rows[:1]),  # the row kernel
        "explanation blocks": lambda: explain.shap_values(
            model, np.zeros((explain.FEWEST_BLOCKED, rows.shape[1]))
        ),
    }


def compile_all() -> dict[str, Callable[..., None]]:
    """Compile (or load from numba's cache) and run every kernel now; returns the kernels
    by name."""
    for step in _steps().values():
        step()
    return {
        "trees": compiled_trees._kernel(),
        "explanations": explain._kernel(),
        "explanation blocks": explain._block_kernel(),
        "history": history_packed._kernel(),
    }


def load_in_background() -> threading.Thread:
    """`compile_all` in a daemon thread; meanwhile callers run the interpreted twins."""
    return jit.compile_in_background(_steps())
