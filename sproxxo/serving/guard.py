"""The JSON guard: what a request body must be before anything parses it for real.

Refuses, with the field and the rule named: bodies that are not JSON (`json_invalid`),
objects with a repeated key (`duplicate_key`), nesting deeper than `max_depth`
(`json_too_deep`), objects with more than `max_keys` members (`too_many_keys`), and bodies
with more values than any legitimate request holds (`too_many_values`).

Cost is bounded for every body up to the size limit, so no body can stall the event loop:

1. Two C-speed byte counts bound the work before any object is built: more `{`/`[`
   than `max_containers` or more `,` than `max_values` is refused outright (brackets and
   commas inside strings count too; no field of the contract may hold them in bulk), as
   `json_too_deep` when the brackets nest deeper than `max_depth`.
2. orjson parses the body (bounded by step 1) and one iterative walk over the containers
   checks depth and keys per object, stopping at the first problem.
3. Duplicate keys: orjson keeps the last of repeated keys, and serialising its result again
   keeps every ':' that was a key separator or inside a string, unless a duplicate was
   dropped. Counting the body's ':' plus its `\\u003a` escapes (an over-count when the
   text is an escaped backslash followed by "u003a") gives at least the parsed count, with
   equality only when nothing was dropped; anything else takes the exact check.
4. The exact check is the standard library's parser with a set-based (linear) hook; it
   also gives the position of invalid JSON and refuses NaN/Infinity, which orjson does too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sproxxo.columnar import check_batch
from sproxxo.schemas import BatchRequest
from sproxxo.serving.recording import CURRENT, TIMED_OUT, Recording
from sproxxo.validation import MAX_ERRORS

logger = logging.getLogger(__name__)
_ESCAPED_COLON: Final = re.compile(rb"\\u003[aA]")
_CONTAINERS: Final = (dict, list)
_OPENERS: Final = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS: Final = np.frombuffer(b"]}", dtype=np.uint8)


@dataclass(frozen=True)
class JsonLimits:
    """Shape limits of an accepted body."""

    max_depth: int = 16
    max_keys: int = 64
    max_containers: int = 4_096
    max_values: int = 65_536


@dataclass(frozen=True)
class Problem:
    """Why a body is refused: the field (or `body`), the rule and a message naming both."""

    field: str
    rule: str
    message: str


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen = dict(pairs)  # built in C; only an object with a repeated key is scanned
    if len(seen) != len(pairs):
        keys: set[str] = set()
        for key, _ in pairs:
            if key in keys:
                raise _DuplicateKey(key)
            keys.add(key)
    return seen


def json_problem(body: bytes, limits: JsonLimits = JsonLimits()) -> Problem | None:
    """The first reason to refuse `body`, or None when it is acceptable JSON."""
    return checked_json(body, limits)[0]


def checked_json(body: bytes, limits: JsonLimits = JsonLimits()) -> tuple[Problem | None, Any]:
    """`json_problem`'s verdict and, when orjson's parse settled it, that parse (else None):
    the batch route validates it instead of parsing the body again."""
    containers = body.count(b"{") + body.count(b"[")
    if containers > limits.max_containers or body.count(b",") >= limits.max_values:
        if _bracket_depth(body) > limits.max_depth:
            return _too_deep(limits), None
        return Problem(
            "body",
            "too_many_values",
            f"body: more than {limits.max_containers} objects/arrays or {limits.max_values} values",
        ), None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:  # invalid, or valid only to the standard library
        return _exact_problem(body, limits), None
    shape = _shape_problem(parsed, limits, containers)
    if shape is not None:
        return shape, None
    if _colons(body) != orjson.dumps(parsed).count(b":"):
        return _exact_problem(body, limits), None
    return None, parsed


def _bracket_depth(body: bytes) -> int:
    """Deepest bracket nesting, strings not excluded (an over-estimate only when brackets
    sit inside strings): names the rule of a body refused for its size in containers."""
    raw = np.frombuffer(body, dtype=np.uint8)
    steps = np.isin(raw, _OPENERS).astype(np.int32) - np.isin(raw, _CLOSERS)
    return int(np.cumsum(steps).max(initial=0))


def _colons(body: bytes) -> int:
    count = body.count(b":")
    if b"\\u" in body:
        count += len(_ESCAPED_COLON.findall(body))
    return count


def _shape_problem(parsed: Any, limits: JsonLimits, brackets: int) -> Problem | None:
    """Depth and members per object, walking containers only (bounded by step 1).

    `brackets` counts the body's `{` and `[` (strings included): once that many containers
    were found, no value left to visit can be one, so values are no longer scanned."""
    stack: list[tuple[Any, int]] = [(parsed, 1)]
    found = 1
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            if len(node) > limits.max_keys:
                return Problem(
                    "body",
                    "too_many_keys",
                    f"body: an object has {len(node)} members (at most {limits.max_keys})",
                )
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if depth > limits.max_depth:
            return _too_deep(limits)
        if found < brackets:
            nested = [(child, depth + 1) for child in children if type(child) in _CONTAINERS]
            found += len(nested)
            stack.extend(nested)
    return None


def _too_deep(limits: JsonLimits) -> Problem:
    return Problem("body", "json_too_deep", f"body: JSON nesting deeper than {limits.max_depth}")


def _exact_problem(body: bytes, limits: JsonLimits) -> Problem | None:
    """The standard library's verdict: position of invalid JSON, the repeated key, depth."""
    try:
        parsed = json.loads(body, object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)
    except RecursionError:
        return _too_deep(limits)
    except UnicodeDecodeError:
        return Problem("body", "json_invalid", "body: not UTF-8")
    except json.JSONDecodeError as exc:
        return Problem(
            "body", "json_invalid", f"body: invalid JSON at position {exc.pos}: {exc.msg}"
        )
    except _DuplicateKey as exc:
        return Problem(exc.key, "duplicate_key", f"{exc.key}: duplicate key {exc.key!r}")
    except ValueError as exc:  # NaN/Infinity, or an integer beyond int_max_str_digits
        return Problem("body", "json_invalid", f"body: {exc}")
    return _shape_problem(parsed, limits, body.count(b"{") + body.count(b"["))


# --------------------------------------------------------------------------- ASGI
# The middleware below is the service's first reader of every scoring request (BentoML's
# timeout and concurrency limits wrap it): it refuses what must never be parsed, keeps error
# answers small, and stamps each request's prediction-log rows with the status it got.

JSON_ROUTES: Final = frozenset({"/predict", "/predict_batch", "/predict/batch", "/score"})
BATCH_ROUTES: Final = frozenset({"/predict_batch", "/predict/batch"})
SYNTHETIC_HEADER: Final = b"x-sproxxo-synthetic"
#: The guard's parse of the batch request being served: (its body, orjson's result).
PARSED: ContextVar[tuple[bytes, Any] | None] = ContextVar("sproxxo_parsed_body", default=None)


def parsed_body(data: str | bytes | bytearray) -> Any:
    """`data` as JSON values: the guard's parse when `data` is the body it checked, else
    orjson's (None when orjson refuses it)."""
    stash = PARSED.get()
    if stash is not None and stash[0] == data:
        return stash[1]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class CheckedBatchRequest(BatchRequest):
    """`BatchRequest` as BentoML reads it: validated column-wise (`sproxxo.columnar`) from
    the guard's parse, by the schema itself when the body is not a batch at all."""

    @classmethod
    def model_validate_json(  # type: ignore[override]
        cls, json_data: str | bytes | bytearray, **options: Any
    ) -> BatchRequest:
        """The request, the checked batch as its `transactions`; pydantic's own
        validation when `options` are given or `check_batch` declines the body."""
        try:
            checked = None if options else check_batch(parsed_body(json_data))
        except Exception as exc:  # a defect of the fast path: the schema still answers
            logger.error("batch check failed (%s): validated item by item", type(exc).__name__)
            checked = None
        if checked is None:
            return super().model_validate_json(json_data, **options)
        return cls.model_construct(transactions=cast(list[Any], checked))


#: BentoML names the route's input model after this (`BatchRequestIODescriptor`): its
#: validation errors and documented components read as they did before the subclass.
CheckedBatchRequest.__name__ = CheckedBatchRequest.__qualname__ = BatchRequest.__name__


class RequestGuard:
    """Refuse early what must never reach parsing: wrong media type, oversize or malformed
    bodies (see `json_problem`). Every refusal names the field and the rule."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        limits: JsonLimits = JsonLimits(),
        max_errors: int = MAX_ERRORS,
        on_refusal: Callable[[str], None] = lambda rule: None,
        recorder: Callable[[bool], Recording | None] = lambda synthetic: None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits = limits
        self.max_errors = max_errors
        self.on_refusal = on_refusal
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] not in JSON_ROUTES:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        problem, status, body, parsed = await self._check(headers, receive)
        if problem is not None:
            self.on_refusal(problem.rule)
            await send_error(send, status, problem)
            return
        recording = self.recorder(headers.get(SYNTHETIC_HEADER, b"") in {b"1", b"true"})
        token = CURRENT.set(recording)
        stash = (body, parsed) if parsed is not None and scope["path"] in BATCH_ROUTES else None
        parsed_token = PARSED.set(stash)
        try:
            await self.app(scope, _replay(body), self._answer(send, recording))
        except asyncio.CancelledError:  # BentoML's time budget: the client gets a 504
            if recording is not None:
                recording.answered(TIMED_OUT)
            raise
        finally:
            PARSED.reset(parsed_token)
            CURRENT.reset(token)

    async def _check(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[Problem | None, int, bytes, Any]:
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        if media.lower() != "application/json":
            message = f"content-type must be application/json, got {media or 'none'!r}"
            return Problem("content-type", "unsupported_media_type", message), 415, b"", None
        declared = headers.get(b"content-length", b"")
        too_big = Problem("body", "max_body_bytes", f"body exceeds {self.max_body_bytes} bytes")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return too_big, 413, b"", None
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            return too_big, 413, b"", None
        problem, parsed = checked_json(body, self.limits)
        return problem, 400, body, parsed

    def _answer(self, send: Send, recording: Recording | None) -> Send:
        """`send` that queues the request's log rows before the answer's first byte and
        shortens a 400's error list to `max_errors` entries plus a count."""
        held: list[Message] = []

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                if recording is not None:
                    recording.answered(int(message["status"]))
                if message["status"] == 400:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                for part in _capped_answer(held, self.max_errors):
                    await send(part)
                return
            await send(message)

        return answer


def _capped_answer(held: list[Message], max_errors: int) -> list[Message]:
    body = b"".join(m.get("body", b"") for m in held[1:])
    try:
        payload = orjson.loads(body)
        detail = payload["detail"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return [held[0], {"type": "http.response.body", "body": body}]
    if not isinstance(detail, list) or len(detail) <= max_errors:
        return [held[0], {"type": "http.response.body", "body": body}]
    payload["detail"] = detail[:max_errors]
    payload["more_errors"] = len(detail) - max_errors
    new_body = orjson.dumps(payload)
    headers = [(k, v) for k, v in held[0]["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(new_body)).encode()))
    return [{**held[0], "headers": headers}, {"type": "http.response.body", "body": new_body}]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # like a client that sent everything
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def send_error(send: Send, status: int, problem: Problem) -> None:
    """A JSON error answer naming the field and the rule."""
    body = orjson.dumps(
        {"error": problem.message, "detail": [{"field": problem.field, "rule": problem.rule}]}
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
