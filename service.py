"""Sproxxo fraud scoring service: the HTTP shell over `sproxxo` (BentoML 1.4 class API).

Routes: POST /predict (one transaction), POST /predict/batch and /predict_batch (up to
1,000, validated per item), POST /score (adaptive batching); /models[/{version}[/activate]]
(model management, admin token to change); /health, /livez, /readyz, /metrics, /docs.json.

Everything that is not HTTP wiring lives in `sproxxo.serving` (runtime, guard, events,
prediction log) and `sproxxo.adapters` (model store, metrics, sinks).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
import time
from typing import Any

import bentoml
import orjson
from pydantic import BaseModel, TypeAdapter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sproxxo.adapters import bentoml_store as store
from sproxxo.adapters import prometheus
from sproxxo.adapters.history import history_for
from sproxxo.adapters.logfiles import FileSink, sink_for
from sproxxo.errors import SproxxoError
from sproxxo.explanations import explain_requested
from sproxxo.ml.bundle import MODEL_NAME
from sproxxo.schemas import Assessment, BatchRequest, BatchResponse, Prediction, Transaction
from sproxxo.serving import events, openapi, recording
from sproxxo.serving.activation import ActivationResult
from sproxxo.serving.asgi import ConnectionRecycler, LazyApp
from sproxxo.serving.guard import JSON_ROUTES, CheckedBatchRequest, RequestGuard
from sproxxo.serving.logfilter import ClientErrorLogFilter
from sproxxo.serving.runtime import Runtime, service_config, start_runtime
from sproxxo.serving.shadow import ShadowResult, ShadowSlot
from sproxxo.settings import get_settings

SETTINGS = get_settings()

_ASSESSMENTS = TypeAdapter(list[Assessment])


# --------------------------------------------------------------------------- admin app
_runtime: Runtime | None = None


def _rt() -> Runtime:
    if _runtime is None:
        raise HTTPException(status_code=503, detail="service is starting")
    return _runtime


def _require_admin(request: Request) -> None:
    token = request.headers.get("x-admin-token")
    if not token:
        raise HTTPException(status_code=401, detail="admin token required (X-Admin-Token)")
    if not hmac.compare_digest(token.encode(), SETTINGS.admin_token.get_secret_value().encode()):
        raise HTTPException(status_code=403, detail="admin token is not valid")


async def _call(fn: Any, *args: Any) -> Any:
    """Run a store call off the loop; a project error becomes its own HTTP status."""
    try:
        return await asyncio.to_thread(fn, *args)
    except SproxxoError as exc:
        raise HTTPException(status_code=exc.http_status, detail=str(exc)) from exc


def _shadow_slot() -> ShadowSlot:
    shadow = _rt().shadow
    if shadow is None:
        raise HTTPException(status_code=503, detail="shadow scoring is not running")
    return shadow.slot


async def get_shadow() -> ShadowResult:
    """The model scoring the same traffic as the champion off the request path, if any."""
    return ShadowResult(shadow=_shadow_slot().tag, previous=None)


async def clear_shadow(request: Request) -> ShadowResult:
    """Stop shadow scoring in every worker (admin token); persisted like the active model."""
    _require_admin(request)
    previous = await _call(_shadow_slot().clear)
    events.emit("shadow_cleared", previous=previous)
    return ShadowResult(shadow=None, previous=previous)


async def set_shadow(version: str, request: Request) -> ShadowResult:
    """Score the same traffic with a version besides the champion, never changing an
    answer (admin token): 404 absent, 409 the active model or a failed verification, 503
    not persisted; every worker follows."""
    _require_admin(request)
    tag = await _call(store.full_tag, version)
    slot = _shadow_slot()
    bundle, previous = await _call(functools.partial(slot.set, champion=_rt().active.tag), tag)
    events.emit("shadow_set", model=bundle.tag, previous=previous)
    return ShadowResult(shadow=bundle.tag, previous=previous)


async def list_models() -> list[store.ModelSummary]:
    """All model versions with stage, metrics and creation time (newest first)."""
    active = _rt().active.tag
    return [r.summary(active) for r in await _call(store.list_models)]


async def get_model(version: str) -> store.ModelSummary:
    """One model version with stage, metrics and creation time."""
    record: store.ModelRecord = await _call(store.get_record, version)
    return record.summary(_rt().active.tag)


async def delete_model(version: str, request: Request) -> store.ModelSummary:
    """Remove a version (admin token), never the active one of any worker (409)."""
    _require_admin(request)
    record: store.ModelRecord = await _call(store.get_record, version)
    active = _rt().active
    if active.serves_anywhere(record.tag):
        raise HTTPException(status_code=409, detail=f"{record.tag} is the active model")
    shadow = _rt().shadow
    if shadow is not None and shadow.slot.shadows_anywhere(record.tag):
        raise HTTPException(status_code=409, detail=f"{record.tag} is the shadow model")
    await _call(store.delete_model, record.tag)
    return record.summary(active.tag)


async def activate_model(version: str, request: Request) -> ActivationResult:
    """Hot-swap to a version after verifying it (404 absent, 409 refused, 503 not
    persisted); every worker follows."""
    _require_admin(request)
    tag = await _call(store.full_tag, version)
    bundle, previous = await _call(_rt().active.activate, tag)
    previous_tag = previous.tag if previous else None
    events.emit("model_activated", model=bundle.tag, previous=previous_tag)
    return ActivationResult(active=bundle.tag, previous=previous_tag)


async def openapi_document() -> JSONResponse:
    """The service's OpenAPI document (BentoML's, corrected: sproxxo.serving.openapi), with
    the admin app's routes (which BentoML documents only for a FastAPI app it was given)."""
    requests: dict[str, type[BaseModel]] = {"/predict": Transaction}
    requests |= {"/predict_batch": BatchRequest, "/predict/batch": BatchRequest}
    spec = openapi.with_routes(SERVICE.openapi_spec.asdict(), ADMIN.build().openapi())
    return JSONResponse(openapi.documented_spec(spec, requests=requests, json_routes=JSON_ROUTES))


async def health() -> dict[str, Any]:
    """Active model, uptime, the prediction log's state and refused models."""
    return _rt().health()


_READ, _WRITE = openapi.MODEL_ROUTE, openapi.ADMIN_ROUTE  # the docs; _WRITE: token needed
_SHADOW: Any = {"response_model": ShadowResult}
_SUMMARY: Any = {"response_model": store.ModelSummary}
_LIST: Any = {"response_model": list[store.ModelSummary]}
_SWAP: Any = {"response_model": ActivationResult}
_HEALTH: Any = {"tags": ["Infrastructure"], "responses": {503: openapi.MODEL_ANSWERS[503]}}
#: The model-management routes: (path, method, endpoint, FastAPI route options).
_ADMIN_ROUTES: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("/models/shadow", "GET", get_shadow, _SHADOW | _READ),
    ("/models/shadow", "DELETE", clear_shadow, _SHADOW | _WRITE),
    ("/models/{version}/shadow", "POST", set_shadow, _SHADOW | _WRITE),
    ("/models", "GET", list_models, _LIST | _READ),
    ("/models/{version}", "GET", get_model, _SUMMARY | _READ),
    ("/models/{version}", "DELETE", delete_model, _SUMMARY | _WRITE),
    ("/models/{version}/activate", "POST", activate_model, _SWAP | _WRITE),
    ("/docs.json", "GET", openapi_document, {"include_in_schema": False}),
    ("/health", "GET", health, _HEALTH),
]


def _admin_app() -> Any:
    """The model-management app. FastAPI is imported here, on the first request or beside
    start-up (`ADMIN`): ~0.3 s that neither the CLI nor a worker waits for before ready."""
    from fastapi import FastAPI

    handlers: Any = {405: openapi.method_not_allowed}
    app = FastAPI(title="sproxxo model management", docs_url=None, redoc_url=None,
                  openapi_url=None, exception_handlers=handlers)  # fmt: skip
    for path, method, endpoint, options in _ADMIN_ROUTES:
        app.add_api_route(path, endpoint, methods=[method], **options)
    return app


ADMIN = LazyApp(_admin_app, paths=[path for path, *_ in _ADMIN_ROUTES])


# --------------------------------------------------------------------------- service
def _shipped_model() -> str:
    """The model a built Bento ships (its `model_version` label); empty outside a Bento."""
    version = SERVICE.bento.info.labels.get("model_version") if SERVICE.bento else None
    return f"{MODEL_NAME}:{version}" if version else ""


def _explain_asked() -> bool:
    """`?explain=true` (400 if not a boolean), from the request context: with a `ctx` parameter
    BentoML 1.4.40 gives every Response ctx.response's status (200: `_unavailable` too)."""
    return explain_requested(SERVICE.context.request.query_params)


#: The sources reach the image before the bentofile's setup script runs (BentoML 1.4.40
#: copies the rest after it), so deploy/numba_cache.sh can compile the kernels into it.
IMAGE = bentoml.images.Image(python_version="3.11", distro="debian").build_include("sproxxo")


@bentoml.asgi_app(ADMIN, path="/")
@bentoml.service(**service_config(SETTINGS), image=IMAGE)
class FraudScorer:
    """Validated, risk-scored, micro-batched fraud predictions."""

    # `make bento` (SPROXXO_MODEL_TAG set) pins this version into the Bento and its image; at
    # run time the model slot loads it by that tag (`_shipped_model`), verified like any other.
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag or f"{MODEL_NAME}:latest")
    # `make bento` with SPROXXO_SHADOW_MODEL_TAG set ships the challenger too; a tag the
    # store lacks is left to the shadow slot to refuse (BentoML would not serve at all).
    if SETTINGS.shadow_model_tag and store.exists(SETTINGS.shadow_model_tag):
        shadow_ref = bentoml.models.BentoModel(store.full_tag(SETTINGS.shadow_model_tag))

    def __init__(self) -> None:
        global _runtime
        self.runtime = _runtime = start_runtime(
            SETTINGS,
            loader=functools.partial(store.load_model, trust=store.trust(SETTINGS)),
            champion=store.champion_tag,
            shipped=_shipped_model(),
            sink=sink_for(SETTINGS),
            dead_letter=FileSink(SETTINGS.dead_letter_dir),
            observer=prometheus.PrometheusObserver(),
            history=history_for(SETTINGS),
        )
        prometheus.init_series(self.runtime.active.version)
        logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())

    def __is_ready__(self) -> bool:
        """BentoML's readiness probe (/readyz): a verified model, not draining."""
        return self.runtime.ready

    @bentoml.on_startup
    def install_drain(self) -> None:
        """SIGTERM: not ready first, serve `drain_seconds` more, then stop (runtime); the
        model-management app is built beside start-up, not in its first request."""
        self.runtime.drain_on_sigterm(SETTINGS.drain_seconds)
        threading.Thread(target=ADMIN.build_beside, name="admin-app", daemon=True).start()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Flush the prediction log within what is left of the platform's grace period."""
        self.runtime.close(timeout=SETTINGS.flush_seconds_at_shutdown)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(payload), status_code=status, media_type="application/json")

    def _unavailable(self) -> Response:
        return self._json({"error": "no verified model is loaded", "detail": []}, 503)

    @bentoml.api(route="/predict")
    async def predict(self, transaction: Transaction, /) -> Prediction:
        """Score one card authorisation (the body is the transaction itself)."""
        t0 = time.perf_counter()
        if self.runtime.model is None:
            return self._unavailable()  # type: ignore[return-value]
        owner = recording.CURRENT.get()
        record = await self.runtime.batcher.submit((transaction, owner, _explain_asked()))
        await self.runtime.injected_fault()
        record["latency_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return self._json(record)  # type: ignore[return-value]

    @bentoml.api(route="/predict/batch")
    async def predict_batch_gateway(self, request: CheckedBatchRequest, /) -> BatchResponse:
        """Score up to 1,000 transactions; bad items are refused one by one."""
        return await self._batch(request)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, request: CheckedBatchRequest, /) -> BatchResponse:
        """The gateway's /predict/batch under BentoML's method name (same handler)."""
        return await self._batch(request)

    async def _batch(self, request: CheckedBatchRequest) -> BatchResponse:
        t0 = time.perf_counter()
        if self.runtime.model is None:
            return self._unavailable()  # type: ignore[return-value]
        # Off the event loop: single requests keep flowing and the 504 budget can fire.
        answer = await asyncio.to_thread(
            self.runtime.answer_batch,
            request.transactions,
            recording.CURRENT.get(),
            explain=_explain_asked(),
        )
        await self.runtime.injected_fault()
        answer["latency_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return self._json(answer)  # type: ignore[return-value]

    @bentoml.api(route="/score", batchable=True, max_batch_size=256, max_latency_ms=100)
    def score(self, transactions: list[Transaction]) -> list[Assessment]:
        """BentoML adaptive batching: concurrent list requests merged into one model call."""
        if self.runtime.model is None:
            return self._unavailable()  # type: ignore[return-value]
        records = self.runtime.score(transactions, [(None, len(transactions))])
        return _ASSESSMENTS.validate_python(records)


#: The BentoML service the decorators made of the class (untyped: mypy sees the class).
SERVICE: Any = FraudScorer
SERVICE.add_asgi_middleware(
    RequestGuard,
    max_body_bytes=SETTINGS.max_body_bytes,
    on_refusal=lambda rule: prometheus.INVALID_REQUESTS.labels(rule).inc(),
    recorder=lambda synthetic: _runtime.new_recording(synthetic) if _runtime else None,
)
SERVICE.add_asgi_middleware(ConnectionRecycler, max_age_seconds=SETTINGS.connection_recycle_seconds)
