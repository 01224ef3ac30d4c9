"""Tiered start of the numba kernels: a worker answers before numba is loaded.

Loading numba and the first kernel from its on-disk cache costs a fresh process ~0.8 s
(importing numba ~0.3 s, initialising its LLVM code generator ~0.45 s), and compiling
without the cache several seconds. A serving worker need not wait for it:
`compile_in_background` loads the kernels in a daemon thread after the model is verified,
and until a kernel is ready its callers run its interpreted twin, which computes the same
floats in the same order (tests compare them bit for bit):

* the tree walk: a numpy walk over every row and tree at once (`compiled_trees`);
* the card-history transition: the very Python function numba compiles (`history_packed`);
* explanations: none; a review or decline waits for the kernel (`wait`), and as scoring
  runs on the event loop, the requests in flight wait with it (~0.7 s measured, README).

A worker calls `defer` before it loads its model (so the model's parity check runs the
twin) and `compile_in_background` once it is ready to serve. Elsewhere (training, bulk
re-scoring, benchmarks) nothing is deferred: every kernel compiles or loads on first use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

_ready: set[str] = set()
_lock = threading.Lock()
_done: dict[str, threading.Event] = {}  # each step's, set once it has run
_worker: threading.Thread | None = None
_deferred = False
#: Longest a caller without a twin waits for the background load (~1 s from numba's cache,
#: several seconds without it) before compiling the kernel itself.
WAIT_SECONDS = 60.0


def defer() -> None:
    """From now on the kernels load in the background: until `compile_in_background` has
    made one ready, its callers run its interpreted twin."""
    global _deferred
    _deferred = True


def pending(name: str) -> bool:
    """True while kernel `name` is deferred and not ready yet: run its interpreted twin.
    False in the loading thread itself, and where nothing was deferred."""
    if not _deferred or name in _ready:
        return False
    worker = _worker
    if worker is None or worker.ident is None:  # not started yet
        return True
    return worker.is_alive() and threading.current_thread() is not worker


def wait(name: str, *, timeout: float = WAIT_SECONDS) -> None:
    """Block until kernel `name` is ready, the background load has ended, or `timeout`
    has passed (the caller then compiles it itself)."""
    event = _done.get(name)
    if event is not None and pending(name):
        event.wait(timeout)


def compile_in_background(steps: Mapping[str, Callable[[], object]]) -> threading.Thread:
    """Run each step (compile or load a kernel, then call it once) in a daemon thread,
    in order; each kernel is ready for the other threads once its step has run. A step
    that fails is logged: its kernel then compiles on first use, as without this."""
    global _worker
    with _lock:
        if _worker is not None and _worker.is_alive():
            return _worker

        events = {name: threading.Event() for name in steps}  # this load's own

        def run() -> None:
            for name, step in steps.items():
                try:
                    step()
                except Exception:  # the first caller compiles it instead
                    logger.exception("loading numba kernel %s failed", name)
                _ready.add(name)
                events[name].set()

        _done.update(events)
        _worker = threading.Thread(target=run, name="numba-kernels", daemon=True)
        _worker.start()
        return _worker
