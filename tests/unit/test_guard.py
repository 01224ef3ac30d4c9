"""The JSON guard: every rule it enforces, the fast path's soundness, bounded cost."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from sproxxo.columnar import CheckedBatch
from sproxxo.serving import guard
from sproxxo.serving.guard import JsonLimits, json_problem
from tests.helpers import make_transaction


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b'{"a": "x:y", "b": {"c": 1}}', None),
        (b'{"t": "2026-01-01T00:00:00+01:00", "u": "\\u003a"}', None),
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', "duplicate_key"),
        (b'{"a": {"k": "v:w"}, "a": 1}', "duplicate_key"),
        (b'{"a": 1, "a": 2, "b": "\\u003a"}', "duplicate_key"),  # escape offsets a colon
        (b'{"a\\u003a": 1, "a:": 2}', "duplicate_key"),  # same key, spelled two ways
        (b'{"a": 1, "a": 2, "b": "\\\\u003a"}', "duplicate_key"),  # an escaped backslash
        (b'[{"x": 1}, {"x": 1, "y": 2, "x": 3}]', "duplicate_key"),
        (b'{"big": 123456789012345678901234567890}', None),
        (b'{"n": NaN}', "json_invalid"),
        (b'{"n": -Infinity}', "json_invalid"),
        (b'{"a": 1,}', "json_invalid"),
        (b"\xff", "json_invalid"),
        (b'{"n": ' + b"9" * 5000 + b"}", "json_invalid"),  # beyond int_max_str_digits
    ],
)
def test_json_problem_finds_what_the_exact_parse_finds(raw: bytes, rule: str | None) -> None:
    """The guard's fast path never hides a duplicate key or invalid JSON the exact stdlib
    parse would report, and accepts what it accepts."""
    problem = json_problem(raw)
    assert (problem.rule if problem else None) == rule


@pytest.mark.parametrize(
    "depth", [17, 100, 254, 255, 256, 300, 1000, 1023, 1024, 1025, 3000, 5000, 200_000]
)
@pytest.mark.parametrize(("opener", "closer"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_every_depth_past_the_limit_is_json_too_deep(
    depth: int, opener: bytes, closer: bytes
) -> None:
    """Nesting past max_depth is json_too_deep at any depth (orjson's own limits at 255 and
    1024 included), never an exception."""
    inner = b"1" if opener != b"[" else b""
    problem = json_problem(opener * depth + inner + closer * depth)
    assert problem is not None
    assert problem.rule == "json_too_deep"


def test_nesting_up_to_the_limit_passes() -> None:
    """Exactly max_depth levels are accepted."""
    assert json_problem(b"[" * 16 + b"]" * 16) is None


def test_object_with_too_many_keys_is_refused_without_listing_them() -> None:
    """An object with more members than max_keys is refused as a whole (too_many_keys)."""
    body = ("{" + ",".join(f'"k{i}": 1' for i in range(65)) + "}").encode()
    problem = json_problem(body)
    assert problem is not None
    assert problem.rule == "too_many_keys"
    assert json_problem(("{" + ",".join(f'"k{i}": 1' for i in range(64)) + "}").encode()) is None


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b",".join(b"{}" for _ in range(5000)) + b"]",
        b"[" + b",".join(b"1" for _ in range(70000)) + b"]",
    ],
)
def test_bodies_with_more_values_than_any_request_holds_are_refused(body: bytes) -> None:
    """More containers or values than the limits: too_many_values, before any parsing."""
    problem = json_problem(body)
    assert problem is not None
    assert problem.rule == "too_many_values"


def test_ordinary_batch_never_takes_the_exact_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated 1,000-transaction batch is settled by the fast path alone."""

    def exact(body: bytes, limits: JsonLimits) -> None:
        raise AssertionError("the exact parse ran")

    monkeypatch.setattr(guard, "_exact_problem", exact)
    body = orjson.dumps({"transactions": [make_transaction() for _ in range(1000)]})
    assert json_problem(body) is None


def test_limits_are_configurable() -> None:
    """The limits travel as a value: a stricter instance refuses what the default accepts."""
    body = b'{"a": {"b": {"c": 1}}}'
    assert json_problem(body) is None
    problem = json_problem(body, JsonLimits(max_depth=2))
    assert problem is not None
    assert problem.rule == "json_too_deep"


def test_checked_json_hands_over_the_parse_only_when_it_settled_the_body() -> None:
    """orjson's parse comes with a clean verdict; a refusal or the exact parse gives none."""
    body = orjson.dumps({"transactions": [make_transaction()]})
    assert guard.checked_json(body) == (None, orjson.loads(body))
    problem, parsed = guard.checked_json(b'{"a": 1, "a": 2}')
    assert problem is not None
    assert (problem.rule, parsed) == ("duplicate_key", None)
    assert guard.checked_json(b'{"lone": "\\ud800"}') == (None, None)  # the exact parse's


def test_batch_request_validates_the_guards_parse_of_the_same_body() -> None:
    """The batch route's model reads the guard's parse when it is of these bytes, else
    parses them itself; either way the transactions are the checked batch."""
    body = orjson.dumps({"transactions": [make_transaction(transaction_id="tx-body")]})
    stash = {"transactions": [make_transaction(transaction_id="tx-stash")]}
    token = guard.PARSED.set((body, stash))
    try:
        same = guard.CheckedBatchRequest.model_validate_json(body)
        other = guard.CheckedBatchRequest.model_validate_json(body.replace(b"body", b"else"))
    finally:
        guard.PARSED.reset(token)
    assert isinstance(same.transactions, CheckedBatch)
    assert same.transactions.columns["transaction_id"] == ["tx-stash"]
    assert isinstance(other.transactions, CheckedBatch)
    assert other.transactions.columns["transaction_id"] == ["tx-else"]


def test_batch_request_falls_back_to_the_schema_if_the_check_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A defect of the column-wise check costs speed, never the request: the schema's
    items, and one log line naming the exception's type only."""

    def broken(body: object) -> None:
        raise TypeError("4111111111111111")

    monkeypatch.setattr(guard, "check_batch", broken)
    body = orjson.dumps({"transactions": [make_transaction(), {"amount": 1}]})
    request = guard.CheckedBatchRequest.model_validate_json(body)
    assert not isinstance(request.transactions, CheckedBatch)
    assert [type(item).__name__ for item in request.transactions] == ["Transaction", "dict"]
    assert "TypeError" in caplog.text
    assert "4111" not in caplog.text


@pytest.mark.parametrize(
    ("body", "rule"),
    [(b'{"transactions": []}', "too_short"), (b'{"transactions": {}}', "list_type")],
)
def test_batch_request_leaves_a_body_that_is_no_batch_to_the_schema(body: bytes, rule: str) -> None:
    """A body the column-wise check declines gets the schema's own error."""
    with pytest.raises(ValidationError) as info:
        guard.CheckedBatchRequest.model_validate_json(body)
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("transactions",), rule)]


@pytest.mark.parametrize(("path", "handed"), [("/predict_batch", True), ("/predict", False)])
def test_guard_hands_its_parse_to_the_batch_routes_only(path: str, handed: bool) -> None:
    """Inside the app the batch routes see (body, parse); others nothing; after, nothing."""
    body = orjson.dumps({"transactions": [make_transaction()]})
    seen: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(guard.PARSED.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        return None

    scope = {"type": "http", "path": path, "headers": [(b"content-type", b"application/json")]}
    asyncio.run(guard.RequestGuard(app, max_body_bytes=10**6)(scope, receive, send))
    assert seen == [(body, orjson.loads(body)) if handed else None]
    assert guard.PARSED.get() is None
