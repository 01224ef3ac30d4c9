"""Sproxxo fraud scoring service: the HTTP shell over `sproxxo` (BentoML 1.4 class API).

Routes
  POST /predict          one transaction -> assessment, decision, model tag, latency
  POST /predict_batch    up to `max_batch_items` transactions, validated per item
  POST /score            BentoML adaptive-batching endpoint (list in, list out)
  GET  /models, GET /models/{version}, POST /models/{version}/activate,
  DELETE /models/{version}     model management (activate/delete need the admin token)
  GET  /health           active model, uptime, prediction-log state
  /livez, /readyz, /metrics, /docs.json   BentoML's own
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import signal
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import bentoml
import orjson
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, JsonValue, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.routing import Match

from sproxxo import metrics, store
from sproxxo.activation import ACTIVE_FILE, ActiveModel, read_active
from sproxxo.batching import MicroBatcher
from sproxxo.bundle import ModelBundle
from sproxxo.errors import ModelUnavailable
from sproxxo.predlog import Chunk, FileSink, PredictionLog, log_chunk, make_sink, slice_chunk
from sproxxo.risk import HIGH_RISK_SCORE
from sproxxo.rules import RULE_NAMES
from sproxxo.schemas import (
    EXAMPLE_TRANSACTION,
    Assessment,
    BatchResponse,
    Decision,
    Prediction,
    Transaction,
)
from sproxxo.scoring import Scored, score
from sproxxo.serving import events, recording
from sproxxo.serving.guard import JSON_ROUTES, RequestGuard
from sproxxo.serving.recording import Recording
from sproxxo.settings import get_settings
from sproxxo.signing import dev_verify_key
from sproxxo.validation import MAX_ERRORS, item_error

logger = logging.getLogger("sproxxo.service")

SETTINGS = get_settings()

#: Sized for one 2-vCPU Cloud Run instance; deploy/cloudrun/service.yaml must agree.
SERVICE_CONFIG: dict[str, Any] = {
    "name": "sproxxo_fraud",
    "workers": SETTINGS.workers,
    "threads": 1,
    "traffic": {
        "timeout": SETTINGS.request_timeout_seconds,
        # BentoML gives each worker max_concurrency / workers. Workers share one listening
        # socket that does not balance connections (BentoML #5426), so one worker may hold
        # most of them: let every worker admit the whole instance budget; Cloud Run's
        # containerConcurrency (= SETTINGS.max_concurrency) caps the instance.
        "max_concurrency": SETTINGS.max_concurrency * SETTINGS.workers,
    },
    "envs": [{"name": "OMP_NUM_THREADS", "value": "1"}],
    "logging": {"access": {"enabled": SETTINGS.access_log}},
    "endpoints": {"livez": "/livez", "readyz": "/readyz"},
    "http": {"port": 3000},
}
MICRO_BATCH_MAX = 64


# --------------------------------------------------------------------------- admin app
admin = FastAPI(
    title="sproxxo model management",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
_instance: FraudScorer | None = None


@admin.exception_handler(405)
async def _method_not_allowed(request: Request, exc: HTTPException) -> Response:
    """405 with `Allow` listing every method served at the path: GET and DELETE of
    /models/{version} are two routes (two operations), and Starlette would name only the
    first route's methods."""
    allowed = sorted(
        method
        for route in request.app.routes
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods
    )
    return JSONResponse(
        {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


def _service() -> FraudScorer:
    if _instance is None:
        raise HTTPException(status_code=503, detail="service is starting")
    return _instance


def _require_admin(token: str | None) -> None:
    if not token:
        raise HTTPException(status_code=401, detail="admin token required (X-Admin-Token)")
    expected = SETTINGS.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(token.encode(), expected):
        raise HTTPException(status_code=403, detail="admin token is not valid")


class ModelSummary(BaseModel):
    """One model version as the management API shows it."""

    tag: str
    version: str
    stage: str
    active: bool
    created: datetime
    metrics: dict[str, float]
    labels: dict[str, str]


class ActivationResult(BaseModel):
    """Outcome of a hot swap."""

    active: str
    previous: str | None


def _summary(record: store.ModelRecord, active_tag: str | None) -> ModelSummary:
    return ModelSummary(
        tag=record.tag,
        version=record.version,
        stage=record.stage,
        active=record.tag == active_tag,
        created=record.created,
        metrics=record.metrics,
        labels=record.labels,
    )


@admin.get("/models", response_model=list[ModelSummary], tags=["Models"])
async def list_models() -> list[ModelSummary]:
    """All model versions with stage, metrics and creation time (newest first)."""
    active = _service().active_tag
    records = await asyncio.to_thread(store.list_models)
    return [_summary(r, active) for r in records]


async def _record_or_404(version: str) -> store.ModelRecord:
    try:
        return await asyncio.to_thread(store.get_record, version)
    except ModelUnavailable as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@admin.get(
    "/models/{version}",
    response_model=ModelSummary,
    tags=["Models"],
    responses={404: {"description": "no such version"}},
)
async def get_model(version: str) -> ModelSummary:
    """One model version with stage, metrics and creation time."""
    record = await _record_or_404(version)
    return _summary(record, _service().active_tag)


@admin.delete(
    "/models/{version}",
    response_model=ModelSummary,
    tags=["Models"],
    responses={
        401: {"description": "no token"},
        403: {"description": "bad token"},
        404: {"description": "no such version"},
        409: {"description": "the active model"},
    },
)
async def delete_model(
    version: str, x_admin_token: str | None = Header(default=None)
) -> ModelSummary:
    """Remove a version (admin token), never the active one."""
    _require_admin(x_admin_token)
    record = await _record_or_404(version)
    svc = _service()
    # This worker's model, or the one persisted for every worker (they follow it).
    if record.tag in {svc.active_tag, read_active(svc.active.active_file)}:
        raise HTTPException(status_code=409, detail=f"{record.tag} is the active model")
    await asyncio.to_thread(store.delete_model, record.tag)
    return _summary(record, svc.active_tag)


@admin.post(
    "/models/{version}/activate",
    response_model=ActivationResult,
    tags=["Models"],
    responses={
        401: {"description": "no token"},
        403: {"description": "bad token"},
        404: {"description": "no such version"},
        409: {"description": "refused: checksum/contract failure"},
    },
)
async def activate_model(
    version: str, x_admin_token: str | None = Header(default=None)
) -> ActivationResult:
    """Hot-swap to a version after verifying it (checksums, dependency contract)."""
    _require_admin(x_admin_token)
    svc = _service()
    try:
        tag = await asyncio.to_thread(store.full_tag, version)
        bundle, previous = await asyncio.to_thread(svc.active.activate, tag)
    except ModelUnavailable as exc:
        status = 404 if "not in the BentoML store" in str(exc) else 409
        raise HTTPException(status_code=status, detail=str(exc)) from exc
    except OSError as exc:  # not persisted: nothing was switched
        raise HTTPException(
            status_code=503, detail=f"activation not persisted, nothing switched: {exc}"
        ) from exc
    events.emit("model_activated", model=bundle.tag, previous=previous.tag if previous else None)
    return ActivationResult(active=bundle.tag, previous=previous.tag if previous else None)


ERROR_RESPONSES: dict[str, str] = {
    "400": "Malformed body: `detail` names each field and rule (pydantic error type, "
    "json_invalid, duplicate_key, json_too_deep, too_many_keys, too_many_values); at most "
    f"{MAX_ERRORS} errors are listed, `more_errors` counts the rest",
    "413": "Body larger than SPROXXO_MAX_BODY_BYTES (rule max_body_bytes)",
    "415": "Content type is not application/json (rule unsupported_media_type)",
    "429": "More than max_concurrency requests in flight: shed, retry later",
    "503": "No verified model is loaded",
    "504": "Not answered within the request budget",
}


class ErrorBody(BaseModel):
    """Every 4xx/5xx body of the scoring routes."""

    error: str
    detail: list[dict[str, Any]] = Field(default_factory=list)
    more_errors: int = Field(default=0, ge=0, description="errors beyond those listed")


def _documented_spec() -> dict[str, Any]:
    """BentoML's OpenAPI, corrected: strict request schemas and every error answer."""
    spec: dict[str, Any] = FraudScorer.openapi_spec.asdict()
    spec["openapi"] = "3.1.0"  # the pydantic schemas below are JSON Schema 2020-12
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    ref = "#/components/schemas/{model}"
    for model in (Transaction, BatchRequest, ErrorBody):
        body = model.model_json_schema(ref_template=ref)
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    requests = {
        "/predict": "Transaction",
        "/predict_batch": "BatchRequest",
        "/predict/batch": "BatchRequest",
    }
    for path, item in spec["paths"].items():
        post = item.get("post")
        if path not in JSON_ROUTES or post is None:
            continue
        post["requestBody"]["required"] = True
        if path in requests:
            post["requestBody"]["content"]["application/json"]["schema"] = {
                "$ref": ref.format(model=requests[path])
            }
        # BentoML keys its own answers by int, these by str: one key per status (as str).
        responses = {str(code): answer for code, answer in post["responses"].items()}
        responses.update(
            {
                code: {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": ref.format(model="ErrorBody")}}
                    },
                }
                for code, text in ERROR_RESPONSES.items()
            }
        )
        post["responses"] = responses
    return spec


@admin.get("/docs.json", include_in_schema=False)
async def openapi_document() -> JSONResponse:
    """The service's OpenAPI document (served instead of BentoML's generated one)."""
    return JSONResponse(_documented_spec())


class Health(BaseModel):
    """Liveness details for humans and dashboards."""

    status: str
    model: str | None
    uptime_seconds: float
    predlog: dict[str, Any]
    refusals: list[dict[str, str]]


@admin.get("/health", response_model=Health, tags=["Infrastructure"])
async def health() -> Health:
    """Active model, uptime and the prediction log's state."""
    svc = _service()
    log = svc.predlog
    return Health(
        status="ready" if svc.__is_ready__() else "not_ready",
        model=svc.active_tag,
        uptime_seconds=round(time.monotonic() - svc.started, 3),
        predlog={
            "sink": type(log.sink).__name__,
            "queue_depth": log.depth,
            "accepted": log.stats.accepted,
            "written": log.stats.written,
            "dead_lettered": log.stats.dead_lettered,
            "dropped": log.stats.dropped,
            "last_error": log.stats.last_error,
        },
        refusals=[{"tag": r.tag, "reason": r.reason} for r in svc.active.refusals],
    )


# --------------------------------------------------------------------------- service
def _shipped_model() -> str:
    """The model a built Bento ships (its `model_version` label); empty outside a Bento."""
    bento = FraudScorer.bento
    version = bento.info.labels.get("model_version") if bento is not None else None
    return f"{store.MODEL_NAME}:{version}" if version else ""


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs a traceback for every request that fails validation; pydantic's text
    echoes the input (card tokens included). Keep one line naming the fields, no values."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite validation-error records in place; let everything else through."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
            record.msg = "%s: rejected invalid request (fields: %s)"
            record.args = (record.args[0] if record.args else "?", ", ".join(fields[:10]))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _init_metric_series(version: str | None) -> None:
    """Create every labelled series at 0 so dashboards and alerts see them from the start."""
    for reason in ("queue_full", "sink_error", "sink_timeout", "closed"):
        metrics.PREDLOG_DROPPED.labels(reason)
    for event in ("high_risk", "invalid_transaction"):
        metrics.LOG_EVENTS_SUPPRESSED.labels(event)
    for rule in RULE_NAMES:
        metrics.RULE_VIOLATIONS.labels(rule)
    for event in ("load", "swap", "refused"):
        metrics.MODEL_EVENTS.labels(event)
    for reason in (
        "json_invalid",
        "duplicate_key",
        "json_too_deep",
        "too_many_keys",
        "too_many_values",
        "max_body_bytes",
        "unsupported_media_type",
        "batch_item",
    ):
        metrics.INVALID_REQUESTS.labels(reason)
    if version:
        for decision in Decision:
            metrics.PREDICTIONS.labels(decision.value, version)


async def _injected_fault() -> None:
    # dev only (Settings refuses it elsewhere): a request slow by construction.
    if SETTINGS.fault_answer_delay_seconds:
        await asyncio.sleep(SETTINGS.fault_answer_delay_seconds)


def _tune_gc() -> None:
    # BentoML workers hold ~300k objects; default thresholds trigger full collections that
    # stall requests for 100-200 ms (SERVING-NOTES). Freeze start-up objects and make
    # collections of young objects rarer; memory stays bounded (see README, performance).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


_ASSESSMENTS = TypeAdapter(list[Assessment])
BatchItem = Annotated[Transaction | JsonValue, Field(union_mode="left_to_right")]


class BatchRequest(BaseModel):
    """A batch of transactions; each item is validated on its own."""

    model_config = {"json_schema_extra": {"example": {"transactions": [EXAMPLE_TRANSACTION]}}}

    # Each item is a Transaction when it validates, else kept raw (left_to_right) so that it
    # is refused on its own: one bad item must not fail the batch.
    transactions: list[BatchItem] = Field(
        min_length=1,
        max_length=SETTINGS.max_batch_items,
        description=f"1 to {SETTINGS.max_batch_items} transactions (Transaction schema)",
    )


@bentoml.asgi_app(admin, path="/")
@bentoml.service(**SERVICE_CONFIG)
class FraudScorer:
    """Validated, risk-scored, micro-batched fraud predictions."""

    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag or f"{store.MODEL_NAME}:latest")

    def __init__(self) -> None:
        global _instance
        events.configure(SETTINGS.log_level)
        self.started = time.monotonic()
        self.draining = False
        self.notable = events.RateLimiter(
            on_suppressed=lambda event, n: metrics.LOG_EVENTS_SUPPRESSED.labels(event).inc(n)
        )
        trust = store.Trust(
            verify_key=SETTINGS.model_verify_key or dev_verify_key(SETTINGS.keys_dir),
            signed_only=SETTINGS.signed_models_only,
        )
        self.active = ActiveModel(
            SETTINGS.state_dir / ACTIVE_FILE,
            loader=functools.partial(store.load_model, trust=trust),
            on_event=lambda e: metrics.MODEL_EVENTS.labels(e).inc(),
            on_swap=self._swapped,
        )
        self.active.start(SETTINGS.model_tag, shipped=_shipped_model())
        self.publish_model_info(None)
        if self.active.bundle is not None:
            events.emit("model_loaded", model=self.active.bundle.tag)
        for refusal in self.active.refusals:
            events.emit(
                "model_refused", level=logging.ERROR, model=refusal.tag, reason=refusal.reason
            )
        _init_metric_series(self.active.bundle.version if self.active.bundle else None)
        self.predlog = PredictionLog(
            make_sink(
                SETTINGS.predlog_sink,
                directory=SETTINGS.predictions_dir,
                table=SETTINGS.bigquery_predictions_table,
                project=SETTINGS.bigquery_project or None,
            ),
            dead_letter=FileSink(SETTINGS.dead_letter_dir),
            queue_size=SETTINGS.predlog_queue_size,
            flush_seconds=SETTINGS.predlog_flush_seconds,
            retry_seconds=SETTINGS.predlog_retry_seconds,
            on_drop=lambda reason, n: metrics.PREDLOG_DROPPED.labels(reason).inc(n),
            on_write=self._on_log_write,
            on_dead_letter=metrics.PREDLOG_DEAD_LETTER.inc,
        )
        self.batcher = MicroBatcher(self._score_items, max_batch_size=MICRO_BATCH_MAX)
        _instance = self
        logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())
        _tune_gc()

    def new_recording(self, synthetic: bool) -> Recording:
        """The prediction-log record of one request (see sproxxo.serving.recording)."""
        if synthetic:
            return Recording(lambda chunk: self.predlog.submit({**chunk, "synthetic": True}))
        return Recording(self.predlog.submit)

    def _swapped(self, bundle: ModelBundle, previous: ModelBundle | None) -> None:
        self.publish_model_info(previous)
        # Start-up froze every object, the first model included: unfreeze so the previous
        # model can be collected, then freeze what serves now.
        gc.unfreeze()
        _tune_gc()

    def _on_log_write(self, n: int) -> None:
        metrics.PREDLOG_WRITTEN.inc(n)
        metrics.PREDLOG_DEPTH.set(self.predlog.depth)

    @property
    def active_tag(self) -> str | None:
        """Tag of the model serving now."""
        bundle = self.active.bundle
        return bundle.tag if bundle else None

    def publish_model_info(self, previous: Any) -> None:
        """Expose which version is active (and that a model is loaded) as gauges."""
        if previous is not None:
            metrics.MODEL_INFO.labels(previous.version).set(0)
        bundle = self.active.bundle
        metrics.MODEL_LOADED.set(1 if bundle else 0)
        if bundle:
            metrics.MODEL_INFO.labels(bundle.version).set(1)

    def __is_ready__(self) -> bool:
        """Ready only with a verified model loaded and while not draining."""
        return self.active.bundle is not None and not self.draining

    @bentoml.on_startup
    def install_drain(self) -> None:
        """On SIGTERM, report not-ready first, keep serving for `drain_seconds`, then let
        uvicorn stop accepting and finish in-flight requests (Cloud Run allows 10 s)."""
        loop = asyncio.get_running_loop()
        uvicorn_exit = signal.getsignal(signal.SIGTERM)
        if not callable(uvicorn_exit):
            return

        def on_term(signum: int, frame: Any) -> None:
            if self.draining:
                return
            self.draining = True
            events.emit("draining", seconds=SETTINGS.drain_seconds)
            loop.call_soon_threadsafe(
                loop.call_later, SETTINGS.drain_seconds, uvicorn_exit, signum, frame
            )

        signal.signal(signal.SIGTERM, on_term)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop reporting ready, then flush every accepted prediction-log record within the
        platform's grace period (the rest goes to the dead letter)."""
        self.draining = True
        flushed = self.predlog.close(timeout=SETTINGS.flush_seconds_at_shutdown)
        self.notable.flush()
        stats = self.predlog.stats
        events.emit(
            "shutdown",
            predlog_flushed=flushed,
            written=stats.written,
            dead_lettered=stats.dead_lettered,
            dropped=stats.dropped,
        )

    # ------------------------------------------------------------------ scoring
    def _score(
        self, transactions: list[Transaction], owners: Sequence[tuple[Recording | None, int]]
    ) -> list[dict[str, Any]]:
        """Score, count and record: `owners` names whose rows these are (a request's
        recording and its number of transactions, in order)."""
        bundle = self.active.bundle
        if bundle is None:
            raise ModelUnavailable("no model loaded")
        t0 = time.perf_counter()
        scored = score(transactions, bundle, now=datetime.now(UTC))
        records = scored.records()
        metrics.SCORE_SECONDS.observe(time.perf_counter() - t0)
        metrics.BATCH_SIZE.observe(len(transactions))
        self._observe(scored, records, bundle.version)
        self._record(log_chunk(scored), owners)
        return records

    def _score_items(self, items: list[tuple[Transaction, Recording | None]]) -> list[Any]:
        return self._score([tx for tx, _ in items], [(rec, 1) for _, rec in items])

    def _record(self, chunk: Chunk, owners: Sequence[tuple[Recording | None, int]]) -> None:
        start = 0
        for owner, n in owners:
            part = chunk if len(owners) == 1 else slice_chunk(chunk, start, start + n)
            start += n
            if owner is None:  # /score: BentoML's batcher merges requests out of sight
                self.predlog.submit(part)
            else:
                owner.attach(part)
        metrics.PREDLOG_DEPTH.set(self.predlog.depth)

    def _observe(self, scored: Scored, records: list[dict[str, Any]], version: str) -> None:
        metrics.observe_many(metrics.FRAUD_PROBABILITY, scored.probabilities.tolist())
        metrics.observe_many(metrics.RISK_SCORE, scored.derived.risk_score.tolist())
        for decision, n in Counter(scored.decisions).items():
            metrics.PREDICTIONS.labels(decision.value, version).inc(n)
        for rec, broken in zip(records, scored.violations, strict=True):
            for violation in broken:
                metrics.RULE_VIOLATIONS.labels(violation.rule).inc()
            if broken or rec["risk"]["score"] > HIGH_RISK_SCORE:
                self._log_notable(rec)

    def _log_notable(self, rec: dict[str, Any]) -> None:
        # Transaction id, rule names and scores only: never the card token, name or address.
        high = rec["risk"]["score"] > HIGH_RISK_SCORE
        if high:
            metrics.HIGH_RISK.inc()
        event = "high_risk" if high and rec["valid"] else "invalid_transaction"
        if self.notable.allow(event):
            events.emit(
                event,
                transaction_id=rec["transaction_id"],
                rules=[v["rule"] for v in rec["violations"]],
                risk_score=round(rec["risk"]["score"], 4),
                fraud_probability=round(rec["fraud_probability"], 6),
                decision=rec["decision"],
                model=rec["model_tag"],
            )

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(payload), status_code=status, media_type="application/json")

    def _unavailable(self) -> Response:
        return self._json({"error": "no verified model is loaded", "detail": []}, 503)

    @bentoml.api(route="/predict")
    async def predict(self, transaction: Transaction, /) -> Prediction:
        """Score one card authorisation (the body is the transaction itself)."""
        t0 = time.perf_counter()
        self.active.refresh()
        if self.active.bundle is None:
            return self._unavailable()  # type: ignore[return-value]
        record = await self.batcher.submit((transaction, recording.CURRENT.get()))
        await _injected_fault()
        record["latency_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return self._json(record)  # type: ignore[return-value]

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, request: BatchRequest, /) -> BatchResponse:
        """Score up to `max_batch_items` transactions; bad items are refused one by one."""
        return await self._predict_batch(request)

    @bentoml.api(route="/predict/batch")
    async def predict_batch_gateway(self, request: BatchRequest, /) -> BatchResponse:
        """The gateway's route for /predict_batch (same handler, same answer)."""
        return await self._predict_batch(request)

    async def _predict_batch(self, request: BatchRequest) -> BatchResponse:
        t0 = time.perf_counter()
        self.active.refresh()
        bundle = self.active.bundle
        if bundle is None:
            return self._unavailable()  # type: ignore[return-value]
        items = request.transactions
        valid = [tx for tx in items if isinstance(tx, Transaction)]
        owners = [(recording.CURRENT.get(), len(valid))]
        # Scored off the event loop: single-transaction requests keep flowing and the 504
        # budget can fire while a big batch runs.
        scored = iter(await asyncio.to_thread(self._score, valid, owners) if valid else [])
        await _injected_fault()
        results: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if isinstance(item, Transaction):
                results.append(next(scored))
                continue
            results.append(item_error(index, item).model_dump())
            metrics.INVALID_REQUESTS.labels("batch_item").inc()
        return self._json(
            {  # type: ignore[return-value]
                "model_tag": bundle.tag,
                "count": len(results),
                "scored": len(valid),
                "refused": len(results) - len(valid),
                "latency_ms": round((time.perf_counter() - t0) * 1e3, 3),
                "results": results,
            }
        )

    @bentoml.api(route="/score", batchable=True, max_batch_size=256, max_latency_ms=100)
    def score(self, transactions: list[Transaction]) -> list[Assessment]:
        """BentoML adaptive batching: concurrent list requests merged into one model call."""
        self.active.refresh()
        if self.active.bundle is None:
            return self._unavailable()  # type: ignore[return-value]
        records = self._score(transactions, [(None, len(transactions))])
        return _ASSESSMENTS.validate_python(records)


FraudScorer.add_asgi_middleware(
    RequestGuard,
    max_body_bytes=SETTINGS.max_body_bytes,
    on_refusal=lambda rule: metrics.INVALID_REQUESTS.labels(rule).inc(),
    recorder=lambda synthetic: _instance.new_recording(synthetic) if _instance else None,
)
