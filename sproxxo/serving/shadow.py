"""Shadow scoring: a challenger scores the champion's traffic without touching an answer.

An operator marks one stored model as the shadow (or clears it); the choice is persisted in
`<state>/shadow-model.json` like the active model, so every worker follows it and a
restart keeps it. Settings name a shadow for deployments whose state folder does not
outlive the instance (Cloud Run); a persisted choice, including "none", takes precedence.

The shadow never runs on the request path. `Runtime.score` offers each scored batch (its
feature matrix, rule violations and prediction-log chunk) to a bounded queue and answers;
one thread scores the queued batches with the shadow, applies the shadow's own policy to
the same rule violations, writes `shadow_*` columns into the chunk and only then hands the
chunk to the prediction log. When the queue is full the batch goes to the log at once
without shadow columns (counted): under load the shadow is what gives way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from sproxxo.errors import ModelRefused, ModelUnavailable
from sproxxo.ml.bundle import ModelBundle
from sproxxo.policy import decision_names
from sproxxo.records import SHADOW_COLUMNS, Chunk
from sproxxo.schemas import RuleViolation
from sproxxo.serving.activation import WatchedChoice

logger = logging.getLogger(__name__)

SHADOW_FILE: Final = "shadow-model.json"
#: Persisted in the shadow file when an operator cleared the shadow.
CLEARED: Final = ""


class ShadowResult(BaseModel):
    """Outcome of setting or clearing the shadow: the shadow now and the one it replaced."""

    shadow: str | None
    previous: str | None


class ShadowSlot:
    """Which stored model shadows the champion in this worker (thread-safe)."""

    def __init__(
        self,
        state_file: Path,
        *,
        loader: Callable[[str], ModelBundle],
        check_seconds: float = 1.0,
    ) -> None:
        self.state_file = state_file
        self.bundle: ModelBundle | None = None
        self.refusal: str | None = None
        self._loader = loader
        self._lock = threading.Lock()
        self._choice = WatchedChoice(state_file, interval=check_seconds)

    @property
    def tag(self) -> str | None:
        """The shadow's tag, None when there is none."""
        bundle = self.bundle
        return bundle.tag if bundle else None

    def shadows_anywhere(self, tag: str) -> bool:
        """Whether `tag` shadows here or is the one persisted for every worker."""
        return tag in {self.tag, self._choice.read()}

    def start(self, configured: str) -> None:
        """The persisted choice (an operator's, even "none") or else the configured tag;
        a shadow that fails verification is refused (reported in /health), never fatal."""
        persisted = self._choice.read()
        tag = persisted if persisted is not None else configured
        if tag:
            self._load(tag)

    def set(self, tag: str, *, champion: str | None) -> tuple[ModelBundle, str | None]:
        """Load and verify `tag`, persist it for every worker and shadow with it.

        Raises `ModelUnavailable` (absent or refused), `ModelRefused` (it is the champion)
        or `StateNotPersisted` (the choice could not be written: nothing changed)."""
        if tag == champion:
            raise ModelRefused(f"{tag} is the active model: a shadow must be another model")
        with self._lock:
            bundle = self._loader(tag)
            previous = self.tag
            self._persist(bundle.tag)
            self.bundle, self.refusal = bundle, None
        logger.info("shadow model %s (was %s)", bundle.tag, previous)
        return bundle, previous

    def clear(self) -> str | None:
        """Stop shadowing in every worker; returns the tag that was the shadow."""
        with self._lock:
            previous = self.tag
            self._persist(CLEARED)
            self.bundle = None
        return previous

    def refresh(self) -> threading.Thread | None:
        """Follow another worker's choice (checks the file at most once per `check_seconds`);
        returns the thread that loads a newly chosen shadow, if one was started."""
        tag = self._choice.changed()
        if tag is None:
            return None
        if not tag:
            self.bundle = None
            return None
        if tag == self.tag:
            return None
        loader = threading.Thread(target=self._follow, args=(tag,), daemon=True)
        loader.start()
        return loader

    def _follow(self, tag: str) -> None:
        with self._lock:
            if self._choice.read() == tag:
                self._load(tag)

    def _load(self, tag: str) -> None:
        try:
            self.bundle, self.refusal = self._loader(tag), None
        except ModelUnavailable as exc:
            self.bundle, self.refusal = None, f"{tag}: {exc}"
            logger.error("shadow model %s refused: %s", tag, exc)

    def _persist(self, tag: str) -> None:
        self._choice.write(tag)


#: Hands a finished chunk to the prediction log (the runtime's delivery to its owners).
Deliver = Callable[[Chunk], None]
#: Counts what the shadow did: (champion decisions, shadow decisions, shadow version).
OnScored = Callable[[list[str], list[str], str], None]


@dataclass(frozen=True)
class ShadowJob:
    """One scored batch waiting for the shadow."""

    matrix: npt.NDArray[np.float64]
    violations: list[list[RuleViolation]]
    chunk: Chunk
    deliver: Deliver


class ShadowScorer:
    """The bounded queue and the thread that score batches with the shadow model."""

    def __init__(
        self,
        slot: ShadowSlot,
        *,
        queue_size: int,
        on_scored: OnScored,
        on_dropped: Callable[[int], None],
    ) -> None:
        self.slot = slot
        self._on_scored = on_scored
        self._on_dropped = on_dropped
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="sproxxo-shadow", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Batches waiting for the shadow."""
        return self._queue.qsize()

    def offer(self, job: ShadowJob) -> bool:
        """Queue a batch for the shadow; False (the caller logs it as it is) when no shadow
        is set, or when the queue is full (counted as dropped)."""
        self.slot.refresh()
        if self.slot.bundle is None:
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._on_dropped(len(job.violations))
            return False
        return True

    def close(self, timeout: float) -> None:
        """Score what is queued within `timeout` seconds; whatever is left goes to the log
        without shadow columns (nothing accepted is lost)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # a full queue: the thread is still busy
            self._queue.put(None, timeout=max(timeout, 0.01))
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.deliver(job.chunk)
        with contextlib.suppress(queue.Full):  # a thread still busy stops after its batch
            self._queue.put_nowait(None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._score(job)
            except Exception:  # the shadow must never lose the champion's log rows
                logger.exception("shadow scoring failed: batch logged without shadow")
            finally:
                job.deliver(job.chunk)

    def _score(self, job: ShadowJob) -> None:
        bundle = self.slot.bundle
        if bundle is None:
            return
        probabilities = bundle.predict_matrix(job.matrix)
        decisions = decision_names(probabilities, job.violations, bundle.policy)
        job.chunk.update(shadow_columns(bundle.tag, probabilities, decisions))
        self._on_scored(list(job.chunk["decision"]), decisions, bundle.version)


def shadow_columns(
    tag: str, probabilities: npt.NDArray[np.float64], decisions: list[str]
) -> dict[str, Any]:
    """The prediction-log columns a shadow fills for one batch."""
    values = ([tag] * len(decisions), probabilities, decisions)
    return dict(zip(SHADOW_COLUMNS, values, strict=True))
