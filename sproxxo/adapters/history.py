"""The card-history store a deployment names (`SPROXXO_HISTORY_URL`).

* empty (the default): SQLite in `<state>/history.sqlite`, shared by every worker of a host;
* `sqlite:///path/to/file.sqlite`: SQLite elsewhere;
* `redis://host:port/db` (`rediss://` for TLS): Redis, shared by every instance (Memorystore
  on Cloud Run, deploy/cloudrun/);
* `none`: no history (the model scores with the history features unknown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sproxxo.errors import HistoryUnavailable
from sproxxo.history import CardView, Event, HistoryStore, Profile
from sproxxo.settings import Settings

REOPEN_SECONDS = 5.0
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def history_for(settings: Settings) -> HistoryStore | None:
    """The store the settings name, or None for `none`. It opens on first use, so a store
    that cannot be opened (a SQLite folder that is a file, a full disk) never stops the
    service from starting: every call then fails, and is retried (`Reopening`)."""
    if settings.history_url == "none":
        return None
    return Reopening(lambda: open_store(settings))


def open_store(settings: Settings) -> HistoryStore | None:
    """Open the store the settings name now (None for `none`)."""
    url = settings.history_url
    timeout = settings.history_timeout_seconds
    if url == "none":
        return None
    if url.startswith(REDIS_SCHEMES):
        from sproxxo.adapters.history_redis import RedisHistory

        return RedisHistory(url, timeout_seconds=timeout)
    from sproxxo.adapters.history_sqlite import SqliteHistory

    path = Path(url.removeprefix("sqlite:///")) if url else settings.state_dir / "history.sqlite"
    return SqliteHistory(
        path,
        timeout_seconds=timeout,
        synchronous=settings.history_sqlite_synchronous,
        checkpoint_seconds=settings.history_sqlite_checkpoint_seconds,
    )


class Reopening:
    """A `HistoryStore` opened on first use; while it cannot be opened every call raises
    `HistoryUnavailable` at once, and a new attempt is made every `retry_seconds`."""

    def __init__(
        self, opener: Callable[[], HistoryStore | None], *, retry_seconds: float = REOPEN_SECONDS
    ) -> None:
        self._opener = opener
        self._retry_seconds = retry_seconds
        self._store: HistoryStore | None = None
        self._next_attempt = 0.0
        self._error = ""
        self._lock = threading.Lock()

    def _get(self) -> HistoryStore:
        with self._lock:
            if self._store is not None:
                return self._store
            now = time.monotonic()
            if now < self._next_attempt:
                raise HistoryUnavailable(f"card-history store cannot be opened: {self._error}")
            try:
                store = self._opener()
            except Exception as exc:  # any reason the store cannot open
                self._error = f"{type(exc).__name__}: {exc}"
                self._next_attempt = now + self._retry_seconds
                raise HistoryUnavailable(f"card-history store cannot be opened: {exc}") from exc
            if store is None:
                raise HistoryUnavailable("SPROXXO_HISTORY_URL=none")
            self._store = store
            return store

    def observe(self, cards: Sequence[str], events: Sequence[Event]) -> Sequence[CardView]:
        """`HistoryStore.observe` on the opened store."""
        return self._get().observe(cards, events)

    def put_profiles(self, profiles: Mapping[str, Profile]) -> None:
        """`HistoryStore.put_profiles` on the opened store."""
        self._get().put_profiles(profiles)

    def close(self) -> None:
        """Close the store if it was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
