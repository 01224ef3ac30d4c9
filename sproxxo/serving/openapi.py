"""The service's OpenAPI document: BentoML's generated one, corrected.

BentoML documents the scoring routes loosely (a generic wrapper schema, only its own 200,
400, 404 and 500, status keys as integers). The corrected document gives each JSON route
its strict request schema, documents every error answer of the guard and the platform
(400, 413, 415, 429, 503, 504) with one body schema, and keys each status once, as a string
(two keys `"400"` and `400` broke Swagger UI).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from sproxxo.validation import MAX_ERRORS

ERROR_RESPONSES: Final[dict[str, str]] = {
    "400": "Malformed body: `detail` names each field and rule (pydantic error type, "
    "json_invalid, duplicate_key, json_too_deep, too_many_keys, too_many_values); at most "
    f"{MAX_ERRORS} errors are listed, `more_errors` counts the rest",
    "413": "Body larger than SPROXXO_MAX_BODY_BYTES (rule max_body_bytes)",
    "415": "Content type is not application/json (rule unsupported_media_type)",
    "429": "More than max_concurrency requests in flight: shed, retry later",
    "503": "No verified model is loaded",
    "504": "Not answered within the request budget",
}
_REF: Final = "#/components/schemas/{model}"
MODEL_ANSWERS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "no admin token"},
    403: {"description": "wrong admin token"},
    404: {"description": "no such version"},
    409: {"description": "refused: the active model, or a failed verification"},
    503: {"description": "starting, or the activation could not be persisted"},
}
#: The documentation of every model-management route, and of those that need the token.
MODEL_ROUTE: Final[dict[str, Any]] = {"tags": ["Models"], "responses": MODEL_ANSWERS}
_TOKEN: Final = {"name": "X-Admin-Token", "in": "header", "schema": {"type": "string"}}
ADMIN_ROUTE: Final[dict[str, Any]] = MODEL_ROUTE | {"openapi_extra": {"parameters": [_TOKEN]}}


class ErrorBody(BaseModel):
    """Every 4xx/5xx body of the scoring routes."""

    error: str
    detail: list[dict[str, Any]] = Field(default_factory=list)
    more_errors: int = Field(default=0, ge=0, description="errors beyond those listed")


def documented_spec(
    spec: dict[str, Any],
    *,
    requests: Mapping[str, type[BaseModel]],
    json_routes: Iterable[str],
) -> dict[str, Any]:
    """Correct BentoML's spec in place: `requests` maps a route to its body model; every
    route of `json_routes` gets the documented error answers."""
    spec["openapi"] = "3.1.0"  # the pydantic schemas below are JSON Schema 2020-12
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*dict.fromkeys(requests.values()), ErrorBody]
    for model in models:
        body = model.model_json_schema(ref_template=_REF)
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    routes = set(json_routes)
    for path, item in spec["paths"].items():
        post = item.get("post")
        if path not in routes or post is None:
            continue
        post["requestBody"]["required"] = True
        if path in requests:
            post["requestBody"]["content"]["application/json"]["schema"] = {
                "$ref": _REF.format(model=requests[path].__name__)
            }
        post["responses"] = {**_by_str(post["responses"]), **_error_answers()}
    return spec


def with_routes(spec: dict[str, Any], mounted: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` with the paths and component schemas of a mounted app's document added."""
    spec.setdefault("paths", {}).update(mounted.get("paths", {}))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(mounted.get("components", {}).get("schemas", {}))
    return spec


def _by_str(responses: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(code): answer for code, answer in responses.items()}


def _error_answers() -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    return {code: {"description": text, "content": body} for code, text in ERROR_RESPONSES.items()}


async def method_not_allowed(request: Request, exc: HTTPException) -> Response:
    """A 405 whose `Allow` names every method of the path (Starlette names only the first
    route's)."""
    allowed = ", ".join(allowed_methods(request.app.routes, request.scope))
    return JSONResponse({"detail": exc.detail}, 405, headers={"Allow": allowed})


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every HTTP method some route serves at the request's path (for a 405's `Allow`)."""
    return sorted(
        {
            method
            for route in routes
            if isinstance(route, Route) and route.matches(scope)[0] != Match.NONE
            for method in route.methods or ()
        }
    )
