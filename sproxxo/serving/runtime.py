"""The scoring runtime of one worker: the serving model, the prediction log, the
micro-batcher, notable events; everything the service's routes call, without HTTP.

`score` is the one path every route takes: rules, features, one model call and the policy
(`sproxxo.scoring.score`), then the observer's counts, the notable events and the
prediction-log rows, attached to each request's `Recording` so that they are queued with
the status the caller got (`sproxxo.serving.recording`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

from pydantic import JsonValue

from sproxxo import jit, kernels
from sproxxo.columnar import CheckedBatch
from sproxxo.errors import ModelUnavailable
from sproxxo.features import columns_from_transactions, fill_profiles, history_events
from sproxxo.history import UNAVAILABLE, CardView, HistoryStore, view_columns
from sproxxo.ml.bundle import ModelBundle
from sproxxo.records import Sink, log_chunk, slice_chunk
from sproxxo.risk import HIGH_RISK_SCORE
from sproxxo.schemas import Transaction
from sproxxo.scoring import Scored, score
from sproxxo.serving import events
from sproxxo.serving.activation import ACTIVE_FILE, ActiveModel
from sproxxo.serving.batching import MicroBatcher
from sproxxo.serving.observer import Observer
from sproxxo.serving.predlog import PredictionLog
from sproxxo.serving.recording import Recording
from sproxxo.serving.shadow import SHADOW_FILE, ShadowJob, ShadowScorer, ShadowSlot
from sproxxo.settings import Settings
from sproxxo.validation import item_error

MICRO_BATCH_MAX: Final = 64
#: Whose rows a model call scores: a request's recording (None: log directly) and how many.
Owners = Sequence[tuple[Recording | None, int]]
#: A /predict request in the micro-batcher: its transaction, its recording and whether it
#: asked for the explanation (`?explain=true`; reviews and declines carry one anyway).
Item = tuple[Transaction, Recording | None, bool]
Record = dict[str, Any]


class Runtime:
    """One worker's scoring: model slot, log, batcher, events (no HTTP here)."""

    def __init__(
        self,
        *,
        active: ActiveModel,
        predlog: PredictionLog,
        observer: Observer,
        notable: events.RateLimiter,
        history: HistoryStore | None = None,
        shadow: ShadowScorer | None = None,
        fault_delay_seconds: float = 0.0,
    ) -> None:
        self.active = active
        self.shadow = shadow
        self.history = history
        self.predlog = predlog
        self.observer = observer
        self.notable = notable
        self.fault_delay_seconds = fault_delay_seconds
        self.started = time.monotonic()
        self.draining = False
        self.batcher: MicroBatcher[Item, Record] = MicroBatcher(
            self.score_items, max_batch_size=MICRO_BATCH_MAX
        )

    @property
    def ready(self) -> bool:
        """Ready only with a verified model loaded and while not draining."""
        return self.active.bundle is not None and not self.draining

    @property
    def model(self) -> ModelBundle | None:
        """The bundle serving now, after following another worker's activation."""
        self.active.refresh()
        return self.active.bundle

    def new_recording(self, synthetic: bool) -> Recording:
        """The prediction-log record of one request."""
        if synthetic:
            return Recording(lambda chunk: self.predlog.submit({**chunk, "synthetic": True}))
        return Recording(self.predlog.submit)

    def score(
        self,
        transactions: Sequence[Transaction],
        owners: Owners,
        *,
        explain: Sequence[bool] | bool = False,
        columns: dict[str, list[Any]] | None = None,
    ) -> list[Record]:
        """Score, count, log notable events and attach the prediction-log rows to their
        owners; returns one JSON-ready record per transaction, explained where `explain`
        asks (and for every review and decline). `columns`: their canonical columns when
        the caller has them (a checked batch), made from the transactions otherwise."""
        bundle = self.active.bundle
        if bundle is None:
            raise ModelUnavailable("no model loaded")
        t0 = time.perf_counter()
        columns = dict(columns) if columns is not None else columns_from_transactions(transactions)
        views = self._history(columns)
        history = None
        if views is not None:
            history, profiles = view_columns(views)
            transactions = fill_profiles(transactions, columns, profiles)
        now = datetime.now(UTC)
        scored = score(
            transactions, bundle, now=now, columns=columns, history=history, explain=explain
        )
        records = scored.records()
        self.observer.scored(scored, version=bundle.version, seconds=time.perf_counter() - t0)
        self._log_notable(scored, records)
        self._record(scored, owners)
        return records

    def shadow_health(self) -> dict[str, Any] | None:
        """The shadow's state for /health (None: shadow scoring is not wired)."""
        if self.shadow is None:
            return None
        slot = self.shadow.slot
        return {"model": slot.tag, "queue_depth": self.shadow.depth, "refusal": slot.refusal}

    def score_items(self, items: list[Item]) -> list[Record]:
        """The micro-batcher's call: single-transaction requests scored together."""
        return self.score(
            [tx for tx, _, _ in items],
            [(owner, 1) for _, owner, _ in items],
            explain=[asked for _, _, asked in items],
        )

    def answer_batch(
        self,
        items: Sequence[Transaction | JsonValue],
        owner: Recording | None,
        *,
        explain: bool = False,
    ) -> Record:
        """The answer to a batch request (`BatchResponse` but its latency): the valid items
        scored in one call (every one explained when `explain`), the others refused one by
        one with their capped field errors, results in input order (runs in a thread: off
        the event loop)."""
        bundle = self.active.bundle
        if bundle is None:
            raise ModelUnavailable("no model loaded")
        if isinstance(items, CheckedBatch):
            rows, valid, columns = items.rows, items.valid, items.columns
        else:
            rows = [i for i, tx in enumerate(items) if isinstance(tx, Transaction)]
            valid, columns = [cast(Transaction, items[i]) for i in rows], None
        owners = [(owner, len(rows))]
        scored = self.score(valid, owners, explain=explain, columns=columns) if rows else []
        results: list[Record] = scored
        if len(rows) < len(items):
            answers, valid_rows = iter(scored), set(rows)
            results = [
                next(answers) if index in valid_rows else self._refusal(index, items[index])
                for index in range(len(items))
            ]
        return {
            "model_tag": bundle.tag,
            "count": len(results),
            "scored": len(rows),
            "refused": len(results) - len(valid),
            "results": results,
        }

    def _refusal(self, index: int, item: Any) -> Record:
        """A refused batch item's answer (its capped field errors), counted."""
        self.observer.refused("batch_item")
        return item_error(index, item).model_dump()

    async def injected_fault(self) -> None:
        """dev only (Settings refuses it elsewhere): make a request slow by construction."""
        if self.fault_delay_seconds:
            await asyncio.sleep(self.fault_delay_seconds)

    def swapped(self, bundle: ModelBundle, previous: ModelBundle | None) -> None:
        """After a swap: report it, and let the previous model be collected (start-up
        froze every object, the first model included)."""
        self.observer.model_serving(bundle.version, previous.version if previous else None)
        gc.unfreeze()
        tune_gc()

    def health(self) -> dict[str, Any]:
        """What /health shows: state, model, uptime, prediction log, refusals."""
        log = self.predlog
        return {
            "status": "ready" if self.ready else "not_ready",
            "model": self.active.tag,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "predlog": {
                "sink": type(log.sink).__name__,
                "queue_depth": log.depth,
                "accepted": log.stats.accepted,
                "written": log.stats.written,
                "dead_lettered": log.stats.dead_lettered,
                "dropped": log.stats.dropped,
                "last_error": log.stats.last_error,
            },
            "refusals": [{"tag": r.tag, "reason": r.reason} for r in self.active.refusals],
            "shadow": self.shadow_health(),
        }

    def drain_on_sigterm(self, seconds: float) -> None:
        """On SIGTERM (Cloud Run's stop), report not-ready first, keep serving for
        `seconds`, then hand the signal to the server's own handler (uvicorn stops
        accepting and finishes in-flight requests). Call from the serving event loop."""
        loop = asyncio.get_running_loop()
        server_exit = signal.getsignal(signal.SIGTERM)
        if not callable(server_exit):
            return

        def on_term(signum: int, frame: Any) -> None:
            if not self.draining:
                self.draining = True
                events.emit("draining", seconds=seconds)
                loop.call_soon_threadsafe(loop.call_later, seconds, server_exit, signum, frame)

        signal.signal(signal.SIGTERM, on_term)

    def close(self, timeout: float) -> None:
        """Stop reporting ready, flush the prediction log within `timeout` seconds (the
        rest goes to the dead letter) and report the shutdown."""
        self.draining = True
        if self.shadow is not None:  # its batches reach the log before the log closes
            self.shadow.close(timeout=timeout / 2)
            timeout /= 2
        flushed = self.predlog.close(timeout=timeout)
        self.notable.flush()
        if self.history is not None:
            self.history.close()
        stats = self.predlog.stats
        events.emit(
            "shutdown",
            predlog_flushed=flushed,
            written=stats.written,
            dead_lettered=stats.dead_lettered,
            dropped=stats.dropped,
        )

    def _history(self, columns: dict[str, list[Any]]) -> Sequence[CardView] | None:
        """Each transaction's history features from the store, recording them; when the
        store fails or is slow past its budget: every history feature unknown (NaN), counted,
        and the answers say `history: unavailable`. Never fails the request."""
        if self.history is None:
            return None
        t0, n = time.perf_counter(), len(columns["card_id"])
        try:
            found = self.history.observe(columns["card_id"], history_events(columns))
        except Exception as exc:  # any store failure: score without history, never fail
            self.observer.history(seconds=time.perf_counter() - t0, ok=False, n=n)
            if self.notable.allow("history_unavailable"):
                events.emit("history_unavailable", level=logging.WARNING, error=type(exc).__name__)
            return [CardView(UNAVAILABLE)] * n
        self.observer.history(seconds=time.perf_counter() - t0, ok=True, n=len(found))
        return found

    def _record(self, scored: Scored, owners: Owners) -> None:
        """The batch's prediction-log rows to their owners: through the shadow when one
        takes the batch (it adds its columns, then delivers), at once otherwise."""
        chunk = log_chunk(scored)
        deliver = functools.partial(self._deliver, owners=owners)
        if self.shadow is not None:
            job = ShadowJob(scored.derived.matrix, scored.violations, chunk, deliver)
            if self.shadow.offer(job):
                return
        deliver(chunk)

    def _deliver(self, chunk: Record, *, owners: Owners) -> None:
        start = 0
        for owner, n in owners:
            part = chunk if len(owners) == 1 else slice_chunk(chunk, start, start + n)
            start += n
            if owner is None:  # /score: BentoML's batcher merges requests out of sight
                self.predlog.submit(part)
            else:
                owner.attach(part)
        self.observer.predlog(depth=self.predlog.depth)

    def _log_notable(self, scored: Scored, records: list[Record]) -> None:
        # Transaction id, rule names and scores only: never the card token, name or address.
        for rec, broken in zip(records, scored.violations, strict=True):
            high = rec["risk"]["score"] > HIGH_RISK_SCORE
            if not (broken or high):
                continue
            event = "high_risk" if high and not broken else "invalid_transaction"
            if self.notable.allow(event):
                events.emit(
                    event,
                    transaction_id=rec["transaction_id"],
                    rules=[v.rule for v in broken],
                    risk_score=round(rec["risk"]["score"], 4),
                    fraud_probability=round(rec["fraud_probability"], 6),
                    decision=rec["decision"],
                    model=rec["model_tag"],
                )


def tune_gc() -> None:
    """Freeze the objects alive now and make young collections rarer.

    BentoML workers hold ~300k objects; default thresholds trigger full collections that
    stall requests for 100-200 ms (SERVING-NOTES). Memory stays bounded (README,
    performance)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def start_runtime(
    settings: Settings,
    *,
    loader: Callable[[str], ModelBundle],
    champion: Callable[[], str | None],
    shipped: str,
    sink: Sink,
    dead_letter: Sink,
    observer: Observer,
    history: HistoryStore | None = None,
) -> Runtime:
    """A worker's runtime: events configured, the allowed model loaded (or the reasons it
    was not), the prediction log started, the GC tuned, the numba kernels loading beside
    (`sproxxo.jit`: until then their interpreted twins answer)."""
    events.configure(settings.log_level)
    jit.defer()  # numba loads once the worker is ready (the model's check runs the twin)
    swapped: list[Runtime] = []  # the runtime, once built, takes the swaps
    active = ActiveModel(
        settings.state_dir / ACTIVE_FILE,
        loader=loader,
        champion=champion,
        on_event=observer.model_event,
        on_swap=lambda new, old: swapped[0].swapped(new, old),
    )
    bundle = active.start(settings.model_tag, shipped=shipped)
    observer.model_serving(bundle.version if bundle else None, None)
    if bundle is not None:
        events.emit("model_loaded", model=bundle.tag)
    for refusal in active.refusals:
        events.emit("model_refused", level=logging.ERROR, model=refusal.tag, reason=refusal.reason)
    predlog = PredictionLog(
        sink,
        dead_letter=dead_letter,
        queue_size=settings.predlog_queue_size,
        flush_seconds=settings.predlog_flush_seconds,
        retry_seconds=settings.predlog_retry_seconds,
        on_drop=observer.predlog_dropped,
        on_write=lambda n: observer.predlog(written=n, depth=predlog.depth),
        on_dead_letter=lambda n: observer.predlog(dead_lettered=n),
    )
    runtime = Runtime(
        active=active,
        predlog=predlog,
        observer=observer,
        notable=events.RateLimiter(on_suppressed=observer.events_suppressed),
        history=history,
        shadow=start_shadow(settings, loader=loader, observer=observer),
        fault_delay_seconds=settings.fault_answer_delay_seconds,
    )
    swapped.append(runtime)
    tune_gc()
    kernels.load_in_background()
    return runtime


def start_shadow(
    settings: Settings, *, loader: Callable[[str], ModelBundle], observer: Observer
) -> ShadowScorer:
    """The shadow slot (persisted choice, else `settings.shadow_model_tag`) and its thread."""
    slot = ShadowSlot(settings.state_dir / SHADOW_FILE, loader=loader)
    slot.start(settings.shadow_model_tag)
    if slot.tag:
        events.emit("shadow_loaded", model=slot.tag)
    elif slot.refusal:
        events.emit("shadow_refused", level=logging.ERROR, reason=slot.refusal)
    return ShadowScorer(
        slot,
        queue_size=settings.shadow_queue_size,
        on_scored=observer.shadow_scored,
        on_dropped=observer.shadow_dropped,
    )


#: OpenTelemetry's excluded-URL patterns (regular expressions searched in the URL): all.
UNTRACED: Final = ".*"


def service_config(settings: Settings) -> dict[str, Any]:
    """The BentoML service configuration, sized for one 2-vCPU Cloud Run instance
    (deploy/cloudrun/service.yaml must agree; tests/config/test_cloudrun.py checks it)."""
    return {
        "name": "sproxxo_fraud",
        "workers": settings.workers,
        "threads": 1,
        "traffic": {
            "timeout": settings.request_timeout_seconds,
            # BentoML gives each worker max_concurrency / workers. Workers share one
            # listening socket that does not balance connections (BentoML #5426), so one
            # worker may hold most of them: every worker admits the whole instance budget;
            # Cloud Run's containerConcurrency (= settings.max_concurrency) caps the instance.
            "max_concurrency": settings.max_concurrency * settings.workers,
        },
        "envs": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "logging": {"access": {"enabled": settings.access_log}},
        "endpoints": {"livez": "/livez", "readyz": "/readyz"},
        "http": {"port": 3000},
        # BentoML installs its OpenTelemetry middleware whatever the sample rate: unsampled,
        # it cost 152-195 µs a request in process (spans, attributes, wrapped send and
        # receive; /predict max 1.5-2.1x without it on this VM). Without tracing every URL is
        # excluded (6-9 µs). A service's tracing block replaces BentoML's top-level one, so
        # an exporter goes under services.sproxxo_fraud.tracing (README, Performance).
        **({} if settings.trace_requests else {"tracing": {"excluded_urls": UNTRACED}}),
    }
