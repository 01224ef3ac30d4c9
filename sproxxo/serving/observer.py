"""What the scoring runtime reports as it works, for whoever counts (Prometheus in the
service: `sproxxo.adapters.prometheus.PrometheusObserver`). The runtime only calls these
methods; it never imports a metrics library."""

from __future__ import annotations

from typing import Protocol

from sproxxo.scoring import Scored


class Observer(Protocol):
    """Hooks of the scoring runtime (all must be cheap and must not raise)."""

    def scored(self, scored: Scored, *, version: str, seconds: float) -> None:
        """One model call over `scored`, which took `seconds`."""

    def model_event(self, event: str) -> None:
        """`load`, `swap` or `refused`."""

    def model_serving(self, version: str | None, previous: str | None) -> None:
        """The version serving now (None: no model), and the one it replaced."""

    def refused(self, rule: str) -> None:
        """A request (or a batch item: `batch_item`) refused with a 4xx."""

    def predlog(
        self, *, written: int = 0, dead_lettered: int = 0, depth: int | None = None
    ) -> None:
        """Prediction-log progress: records written or dead-lettered, queue depth."""

    def predlog_dropped(self, reason: str, n: int) -> None:
        """Prediction-log records dropped, and why."""

    def events_suppressed(self, event: str, n: int) -> None:
        """Per-transaction log events the rate limit suppressed."""

    def history(self, *, seconds: float, ok: bool, n: int) -> None:
        """One call to the card-history store for `n` transactions; `ok` False: it failed
        (or timed out) and they were scored without history."""

    def shadow_scored(self, champion: list[str], shadow: list[str], version: str) -> None:
        """The shadow model (store `version`) decided `shadow` where the champion decided
        `champion` (one entry per transaction)."""

    def shadow_dropped(self, n: int) -> None:
        """`n` transactions logged without a shadow score (the shadow queue was full)."""


class NullObserver:
    """Counts nothing (tests, tools)."""

    def scored(self, scored: Scored, *, version: str, seconds: float) -> None:
        """Ignore."""

    def model_event(self, event: str) -> None:
        """Ignore."""

    def model_serving(self, version: str | None, previous: str | None) -> None:
        """Ignore."""

    def refused(self, rule: str) -> None:
        """Ignore."""

    def predlog(
        self, *, written: int = 0, dead_lettered: int = 0, depth: int | None = None
    ) -> None:
        """Ignore."""

    def predlog_dropped(self, reason: str, n: int) -> None:
        """Ignore."""

    def events_suppressed(self, event: str, n: int) -> None:
        """Ignore."""

    def history(self, *, seconds: float, ok: bool, n: int) -> None:
        """Ignore."""

    def shadow_scored(self, champion: list[str], shadow: list[str], version: str) -> None:
        """Ignore."""

    def shadow_dropped(self, n: int) -> None:
        """Ignore."""
