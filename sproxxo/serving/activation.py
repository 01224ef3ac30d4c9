"""Which model version serves: start-up choice, hot swap and the persisted active version.

The active version is persisted in `<state>/active-model.json` so it survives a restart and
so every worker process of a service converges on it: a worker that activates a version
writes the file; the others notice its change (`refresh`, at most once per second) and
swap too. A swap loads and verifies the new bundle first, persists the choice, then
replaces one reference: requests that already hold the old bundle finish on it, and none
fails. A follower installs what it loaded only if the file still names it, so a slow load
that started before a newer activation can never put a worker back on the older model.

Only four versions may ever serve, in this order: the one pinned by settings, the persisted
active one (an operator's activation survives restarts), the one a built Bento ships, and
the champion. If none of them verifies, the service is not ready (the reasons are in
/health): it never falls back to whatever else the store holds (an unevaluated candidate,
a retired model).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydantic import BaseModel

from sproxxo.errors import ModelUnavailable, StateNotPersisted
from sproxxo.ml.bundle import ModelBundle

logger = logging.getLogger(__name__)

ACTIVE_FILE = "active-model.json"


class ActivationResult(BaseModel):
    """Outcome of a hot swap: the version serving now and the one it replaced."""

    active: str
    previous: str | None


@dataclass(frozen=True)
class Refusal:
    """A model version that could not be served, and why."""

    tag: str
    reason: str


def startup_candidates(
    pinned: str, active_file: Path, *, shipped: str = "", champion: str | None = None
) -> list[str]:
    """Versions allowed to serve at start-up, in order: pinned by settings, persisted active,
    the model the Bento ships, champion. Nothing else in the store may serve."""
    candidates = [pinned] if pinned else []
    persisted = read_active(active_file)
    if persisted:
        candidates.append(persisted)
    if shipped:
        candidates.append(shipped)
    if champion:
        candidates.append(champion)
    return list(dict.fromkeys(candidates))


def read_active(active_file: Path) -> str | None:
    """The persisted active tag, if the file exists and is readable."""
    try:
        return str(orjson.loads(active_file.read_bytes())["tag"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_active(active_file: Path, tag: str) -> None:
    """Persist the active tag atomically (write, fsync, rename)."""
    active_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = active_file.with_suffix(f".{os.getpid()}.tmp")
    payload = {"tag": tag, "activated_at": datetime.now(UTC).isoformat()}
    with tmp.open("wb") as handle:
        handle.write(orjson.dumps(payload))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(active_file)


class WatchedChoice:
    """A model choice persisted for every worker (`write_active`'s file), and whether
    another worker changed it: its inode and mtime, looked at no more than once per
    `interval` seconds."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path = path
        self._interval = interval
        self._seen_mtime = self._mtime()
        self._next_check = 0.0

    def write(self, tag: str) -> None:
        """Persist `tag` (this worker's own change: not reported back by `changed`).
        Raises `StateNotPersisted`."""
        try:
            write_active(self.path, tag)
        except OSError as exc:
            raise StateNotPersisted(f"{self.path}: {exc}") from exc
        self._seen_mtime = self._mtime()

    def read(self) -> str | None:
        """The persisted tag (None: no readable file)."""
        return read_active(self.path)

    def changed(self) -> str | None:
        """The persisted tag ("" when the file went or cannot be read) if the file changed
        since the last look; None when it did not, or when it is too soon to look."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self._interval
        mtime = self._mtime()
        if mtime == self._seen_mtime:
            return None
        self._seen_mtime = mtime
        return self.read() or ""

    def _mtime(self) -> tuple[int, int]:
        # with the inode: every write renames a new file in, and two writes within one
        # timestamp tick (a few ms) share an mtime
        try:
            found = self.path.stat()
        except OSError:
            return (0, 0)
        return (found.st_ino, found.st_mtime_ns)


class ActiveModel:
    """The serving slot: one verified bundle at a time, swappable without downtime."""

    def __init__(
        self,
        active_file: Path,
        *,
        loader: Callable[[str], ModelBundle],
        champion: Callable[[], str | None] = lambda: None,
        on_event: Callable[[str], None] | None = None,
        on_swap: Callable[[ModelBundle, ModelBundle | None], None] | None = None,
    ) -> None:
        self.active_file = active_file
        self.bundle: ModelBundle | None = None
        self.refusals: list[Refusal] = []
        self._loader = loader
        self._champion = champion
        self._on_event = on_event or (lambda event: None)
        self._on_swap = on_swap or (lambda new, old: None)
        self._lock = threading.Lock()
        self._choice = WatchedChoice(active_file)

    @property
    def tag(self) -> str | None:
        """Tag of the model serving now."""
        return self.bundle.tag if self.bundle else None

    @property
    def version(self) -> str | None:
        """Store version of the model serving now."""
        return self.bundle.version if self.bundle else None

    def serves_anywhere(self, tag: str) -> bool:
        """Whether `tag` serves here or is the one persisted for every worker."""
        return tag in {self.tag, self._choice.read()}

    def start(self, pinned: str, *, shipped: str = "") -> ModelBundle | None:
        """Load the first allowed start-up candidate that passes verification."""
        candidates = startup_candidates(
            pinned, self.active_file, shipped=shipped, champion=self._champion()
        )
        for tag in candidates:
            try:
                self._install(self._loader(tag))
            except ModelUnavailable as exc:
                self._refuse(tag, str(exc))
                continue
            return self.bundle
        if not candidates:
            self._refuse("", "no pinned, persisted, shipped or champion model exists")
        logger.error("no servable model: %s", [r.reason for r in self.refusals])
        return None

    def activate(self, tag: str) -> tuple[ModelBundle, ModelBundle | None]:
        """Load and verify `tag`, persist it for every worker, then switch to it.

        Raises `ModelUnavailable` (absent or refused) or `StateNotPersisted` (the choice
        could not be written: nothing switched).
        """
        with self._lock:
            try:
                bundle = self._loader(tag)
            except ModelUnavailable as exc:
                self._refuse(tag, str(exc))
                raise
            self._choice.write(bundle.tag)
            previous = self.bundle
            self._install(bundle)
            self._on_event("swap")
        self._on_swap(bundle, previous)
        return bundle, previous

    def refresh(self) -> threading.Thread | None:
        """Follow an activation made by another worker (cheap; checks once per second).

        Returns the thread that loads the other worker's model, if one was started."""
        tag = self._choice.changed()
        if not tag or (self.bundle is not None and tag == self.bundle.tag):
            return None
        follower = threading.Thread(target=self._follow, args=(tag,), daemon=True)
        follower.start()
        return follower

    def _follow(self, tag: str) -> None:
        try:
            bundle = self._loader(tag)  # outside the lock: a slow load blocks no activation
        except ModelUnavailable as exc:
            self._refuse(tag, str(exc))
            return
        with self._lock:
            if self._choice.read() != tag:
                logger.info("model %s superseded while loading: not installed", tag)
                return
            previous = self.bundle
            self._install(bundle)
            self._on_event("swap")
        self._on_swap(bundle, previous)

    def _install(self, bundle: ModelBundle) -> None:
        self.bundle = bundle  # one reference assignment: in-flight requests keep theirs
        self._on_event("load")
        logger.info("serving model %s", bundle.tag)

    def _refuse(self, tag: str, reason: str) -> None:
        self.refusals = [*self.refusals[-9:], Refusal(tag, reason)]
        self._on_event("refused")
        logger.error("model %s refused: %s", tag, reason)
