"""Where a 1,000-transaction /predict_batch request spends its CPU, in process (not a test:
it prints figures).

    python -m load.batch_profile [--rows 50000] [--reps 8] [--bad 0.01]

Trains the project's model with its own recipe (`train_candidate`, default parameters) on
`--rows` synthetic transactions and opens a SQLite card-history store in a temporary
folder (the service's default store). The bodies are `load/bench.py`'s: six batches of
1,000 from one generator sample, replayed round-robin (the store is warmed with one pass,
as the served store is after the bench's warm-up; a replay is a retry for the store, so its
state keeps its size). Pinned to core 0, each step of each request is timed in CPU
(thread time) and wall microseconds; the table shows per-step means over every request:

* guard: `sproxxo.serving.guard.checked_json` (the ASGI guard's check of the body, whose
  parse the validation reuses);
* validation: BentoML's parse of the route's input (`IODescriptor.from_input` of the route
  signature, `model_validate_json` of the body, as `JSONSerde.deserialize_model` does);
* scoring, split as `Runtime.score` runs it: canonical columns, history store (+ profiles),
  features (`derive`), model (`predict_matrix`), rules, policy, explanations, records
  (`Scored.records()`), bookkeeping (observer, notable events, prediction-log rows);
* answer: the rest of `Runtime.answer_batch` (results in input order, refusals);
* serialisation: `orjson.dumps` of the answer;
* garbage collection inside those steps (`gc.callbacks`; the service's GC tuning);
* `= whole request`: the same request through the service's own functions, as a check
  that the steps add up.

Then the validation alternatives the batch design considered, timed on the same body.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/sklearn load OpenMP

import argparse
import functools
import gc
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sproxxo.history import HISTORY_FEATURES, view_columns
from sproxxo.schemas import BatchRequest, BatchResponse
from sproxxo.serving.guard import CheckedBatchRequest

BATCHES = 6
BATCH_SIZE = 1000


@dataclass
class Clock:
    """CPU (thread time) and wall microseconds per named step, and garbage-collection
    time, over requests."""

    cpu: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)
    gc_us: float = 0.0
    requests: int = 0
    _gc_start: int = 0

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the body of the `with` block as step `name`."""
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        yield
        self.cpu.setdefault(name, []).append((time.thread_time_ns() - c0) / 1e3)
        self.wall.setdefault(name, []).append((time.perf_counter_ns() - w0) / 1e3)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """`gc.callbacks` hook: add each collection's duration."""
        if phase == "start":
            self._gc_start = time.perf_counter_ns()
        else:
            self.gc_us += (time.perf_counter_ns() - self._gc_start) / 1e3

    def means(self) -> list[tuple[str, float, float]]:
        """(step, mean CPU µs, mean wall µs) per request, in first-seen order."""
        return [
            (name, sum(cpu) / len(cpu), sum(self.wall[name]) / len(cpu))
            for name, cpu in self.cpu.items()
        ]


class _Discard:
    """A prediction-log sink that keeps nothing."""

    def write(self, chunks: list[dict[str, Any]]) -> None:
        """Drop the chunks."""


def train(rows: int, seed: int) -> Any:
    """The project's model at default parameters, as an in-memory bundle."""
    from sproxxo.ml.bundle import ModelBundle
    from sproxxo.ml.compiled_trees import compile_model
    from sproxxo.ml.training import train_candidate
    from sproxxo.sources.synthetic import generate

    candidate = train_candidate(generate(rows, seed=seed), source="synthetic", seed=seed)
    compiled = compile_model(candidate.pipeline[-1])
    return ModelBundle(candidate.pipeline, candidate.metadata, "bench:batch", compiled)


def runtime_for(bundle: Any, work: Path) -> Any:
    """A worker's `Runtime` over `bundle`: SQLite history under `work`, a prediction log
    that discards, notable events formatted to /dev/null, no shadow, no metrics, and the
    worker's garbage-collection tuning."""
    from sproxxo.adapters.history_sqlite import SqliteHistory
    from sproxxo.serving import events
    from sproxxo.serving.activation import ActiveModel
    from sproxxo.serving.observer import NullObserver
    from sproxxo.serving.predlog import PredictionLog
    from sproxxo.serving.runtime import Runtime, tune_gc

    events.configure("INFO")
    for handler in logging.getLogger(events.LOGGER_NAME).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives with the process
    active = ActiveModel(work / "active.json", loader=lambda tag: bundle)
    active.bundle = bundle
    runtime = Runtime(
        active=active,
        predlog=PredictionLog(_Discard(), queue_size=10_000_000),
        observer=NullObserver(),
        notable=events.RateLimiter(),
        history=SqliteHistory(work / "history.sqlite", timeout_seconds=5.0),
    )
    tune_gc()  # as `start_runtime` does in each worker
    return runtime


def bodies(*, bad: float) -> tuple[list[bytes], list[bytes]]:
    """`load/bench.py`'s six batch bodies, and the same with about `bad` of the items
    broken (a boolean amount, a missing field, a card number as card_id, in turn)."""
    from load.payloads import valid_bodies

    pool = valid_bodies(BATCHES * BATCH_SIZE, seed=6)  # as load.bench.write_bodies
    batches = [pool[i : i + BATCH_SIZE] for i in range(0, len(pool), BATCH_SIZE)]
    breakers: list[Callable[[dict[str, Any]], object]] = [
        lambda item: item.update(amount=False),
        lambda item: item.pop("merchant_id"),
        lambda item: item.update(card_id="4111111111111111"),
    ]
    step = max(round(1 / bad), 1)
    mixed = []
    for items in batches:
        broken = [dict(item) for item in items]
        for k, i in enumerate(range(0, len(broken), step)):
            breakers[k % len(breakers)](broken[i])
        mixed.append(broken)
    return [orjson.dumps({"transactions": b}) for b in batches], [
        orjson.dumps({"transactions": b}) for b in mixed
    ]


def strict_parser() -> Callable[[bytes], Any]:
    """BentoML 1.4's parse of the batch body with the schema item by item (before the
    column-wise check)."""
    from _bentoml_sdk.io_models import IODescriptor

    def route(request: BatchRequest, /) -> BatchResponse:
        raise NotImplementedError

    parse: Callable[[bytes], Any] = IODescriptor.from_input(route).model_validate_json
    return parse


def bentoml_parser() -> Callable[[bytes], Any]:
    """What BentoML 1.4 runs to build the batch routes' argument from the body."""
    from _bentoml_sdk.io_models import IODescriptor

    def route(request: CheckedBatchRequest, /) -> BatchResponse:
        raise NotImplementedError

    parse: Callable[[bytes], Any] = IODescriptor.from_input(route).model_validate_json
    return parse


def score_steps(
    runtime: Any, items: Sequence[Any], owner: Any, clock: Clock
) -> list[dict[str, Any]]:
    """`Runtime.score` of a batch's valid items, step by step (the same calls in the same
    order), timed."""
    from sproxxo.columnar import CheckedBatch
    from sproxxo.features import columns_from_transactions, derive, fill_profiles, numeric_columns
    from sproxxo.policy import decide_all
    from sproxxo.rules import find_violations
    from sproxxo.schemas import Transaction
    from sproxxo.scoring import Scored, explain_decisions

    bundle = runtime.active.bundle
    with clock.step("score: columns"):
        if isinstance(items, CheckedBatch):
            transactions, columns = items.valid, dict(items.columns)
        else:
            transactions = [tx for tx in items if isinstance(tx, Transaction)]
            columns = columns_from_transactions(transactions)
    with clock.step("score: history store"):
        history, profiles = view_columns(runtime._history(columns))
        transactions = fill_profiles(transactions, columns, profiles)
        for k, name in enumerate(HISTORY_FEATURES):
            columns[name] = history[:, k].tolist()
    now = datetime.now(UTC)
    with clock.step("score: features"):
        numeric = numeric_columns(columns)
        derived = derive(columns, numeric=numeric)
    with clock.step("score: model"):
        probabilities = bundle.predict_matrix(derived.matrix)
    with clock.step("score: rules"):
        violations = find_violations(columns, transactions, now=now, numeric=numeric)
    with clock.step("score: policy"):
        decisions, reasons = decide_all(probabilities, derived.fired, violations, bundle.policy)
    with clock.step("score: explanations"):
        explained, reasons = explain_decisions(bundle, derived.matrix, decisions, reasons)
    scored = Scored(
        transactions, columns, derived, probabilities, violations, decisions, reasons,
        bundle.tag, explained,
    )  # fmt: skip
    with clock.step("answer: Scored.records()"):
        records = scored.records()
    with clock.step("score: bookkeeping"):
        runtime.observer.scored(scored, version=bundle.version, seconds=0.0)
        runtime._log_notable(scored, records)
        runtime._record(scored, [(owner, len(transactions))])
    return records


def request_steps(
    body: bytes, *, runtime: Any, parse: Callable[[bytes], Any], clock: Clock
) -> bytes:
    """One batch request as the service serves it now, step by step, timed."""
    from sproxxo.serving.guard import PARSED, checked_json
    from sproxxo.serving.recording import Recording

    with clock.step("guard: checked_json"):
        problem, parsed = checked_json(body)
    if problem is not None:
        raise SystemExit(f"the guard refused the body: {problem}")
    with clock.step("validate: BentoML parse"):
        token = PARSED.set((body, parsed))
        items = parse(body).transactions
        PARSED.reset(token)
    owner = Recording(lambda chunk: None)
    records = score_steps(runtime, items, owner, clock)
    with clock.step("answer: per-item loop"):
        answer = _answer(items, records, runtime.active.bundle.tag)
    with clock.step("serialise: orjson"):
        out = orjson.dumps(answer)
    owner.answered(200)
    return out


def _answer(items: Sequence[Any], records: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    """`Runtime.answer_batch`'s loop and answer around already scored records."""
    from sproxxo.columnar import CheckedBatch
    from sproxxo.schemas import Transaction
    from sproxxo.validation import item_error

    if isinstance(items, CheckedBatch):
        valid = set(items.rows)
    else:
        valid = {i for i, item in enumerate(items) if isinstance(item, Transaction)}
    scored = iter(records)
    results = [
        next(scored) if index in valid else item_error(index, items[index]).model_dump()
        for index in range(len(items))
    ]
    return {
        "model_tag": tag,
        "count": len(results),
        "scored": len(records),
        "refused": len(results) - len(records),
        "results": results,
        "latency_ms": 1.0,
    }


def whole_request(body: bytes, *, runtime: Any, parse: Callable[[bytes], Any]) -> bytes:
    """The same request through the service's own functions, untimed inside."""
    from sproxxo.serving.guard import PARSED, checked_json

    _, parsed = checked_json(body)
    token = PARSED.set((body, parsed))
    items = parse(body).transactions
    PARSED.reset(token)
    answer = runtime.answer_batch(items, None)
    answer["latency_ms"] = 1.0
    return orjson.dumps(answer)


def profile(batch_bodies: list[bytes], *, runtime: Any, reps: int) -> Clock:
    """Steps of `reps` round-robin passes over the bodies, plus the whole-request check."""
    parse = bentoml_parser()
    for body in batch_bodies:  # warm-up: the store holds every card, caches are hot
        request_steps(body, runtime=runtime, parse=parse, clock=Clock())
    clock = Clock()
    gc.callbacks.append(clock.on_gc)
    try:
        for _ in range(reps):
            for body in batch_bodies:
                request_steps(body, runtime=runtime, parse=parse, clock=clock)
                clock.requests += 1
    finally:
        gc.callbacks.remove(clock.on_gc)
    for _ in range(reps):
        for body in batch_bodies:
            with clock.step("= whole request (service functions)"):
                whole_request(body, runtime=runtime, parse=parse)
    return clock


def report(title: str, clock: Clock) -> None:
    """Print the breakdown table of one set of bodies."""
    rows = clock.means()
    total = sum(cpu for name, cpu, _ in rows if not name.startswith("="))
    print(f"\n{title}")
    print(f"{'step':<40} {'CPU µs':>9} {'share':>6} {'wall µs':>9} {'µs/tx':>7}")
    for name, cpu, wall in rows:
        share = "" if name.startswith("=") else f"{cpu / total:6.1%}"
        print(f"{name:<40} {cpu:>9,.0f} {share:>6} {wall:>9,.0f} {cpu / BATCH_SIZE:>7.2f}")
    print(f"{'sum of steps':<40} {total:>9,.0f} {'':>6} {'':>9} {total / BATCH_SIZE:>7.2f}")
    print(f"{'  of which garbage collection (wall)':<40} {clock.gc_us / clock.requests:>9,.0f}")
    print(f"in-process ceiling: {BATCH_SIZE * 1e6 / total:,.0f} tx/s on one core")


def _without_functions(schema: Any) -> Any:
    """A core schema with its Python (function-before/after) validators taken out."""
    if isinstance(schema, dict):
        if schema.get("type") in {"function-before", "function-after"}:
            return _without_functions(schema["schema"])
        return {key: _without_functions(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_without_functions(value) for value in schema]
    return schema


def validation_alternatives(body: bytes, *, reps: int) -> None:
    """Median CPU µs of the ways to turn one batch body into validated items."""
    from pydantic import TypeAdapter
    from pydantic_core import SchemaValidator, core_schema

    from sproxxo.columnar import check_batch
    from sproxxo.schemas import Transaction

    items = orjson.dumps(orjson.loads(body)["transactions"])
    model = Transaction.__pydantic_core_schema__
    core_only = SchemaValidator(core_schema.list_schema(_without_functions(model)))
    fields = _without_functions(model)["schema"]["fields"]
    typed = core_schema.typed_dict_schema(
        {name: core_schema.typed_dict_field(f["schema"]) for name, f in fields.items()},
        extra_behavior="forbid",
        strict=True,
    )
    paths: dict[str, Callable[[], Any]] = {
        "BentoML parse, checked column-wise (service)": functools.partial(bentoml_parser(), body),
        "  the same, from the guard's parse": functools.partial(check_batch, orjson.loads(body)),
        "BentoML parse of BatchRequest (per-item schema)": functools.partial(strict_parser(), body),
        "TypeAdapter(list[Transaction]), one call": functools.partial(
            TypeAdapter(list[Transaction]).validate_json, items
        ),
        "  same, Python validators taken out": functools.partial(core_only.validate_json, items),
        "  same, typed dicts (no model objects)": functools.partial(
            SchemaValidator(core_schema.list_schema(typed)).validate_json, items
        ),
        "list[dict[str, Any]] (pydantic-core JSON)": functools.partial(
            TypeAdapter(list[dict[str, Any]]).validate_json, items
        ),
        "orjson.loads": functools.partial(orjson.loads, items),
    }
    print(f"\nvalidation alternatives, one valid body of {BATCH_SIZE} (median of {reps}):")
    for name, fn in paths.items():
        samples = []
        for _ in range(reps):
            c0 = time.thread_time_ns()
            fn()
            samples.append((time.thread_time_ns() - c0) / 1e3)
        print(f"  {name:<44} {statistics.median(samples):>9,.0f} CPU µs")


def main() -> None:
    """Train, open the store, replay, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="training transactions")
    parser.add_argument("--reps", type=int, default=8, help="passes over the six bodies")
    parser.add_argument("--bad", type=float, default=0.01, help="broken share, mixed bodies")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"training on {args.rows:,} synthetic transactions (default parameters) ...", flush=True)
    bundle = train(args.rows, args.seed)
    valid, mixed = bodies(bad=args.bad)
    os.sched_setaffinity(0, {0})
    try:
        with tempfile.TemporaryDirectory(prefix="batch-profile-") as work:
            runtime = runtime_for(bundle, Path(work))
            for title, batch_bodies in (
                ("valid bodies", valid),
                (f"mixed bodies ({args.bad:.0%} of the items broken)", mixed),
            ):
                clock = profile(batch_bodies, runtime=runtime, reps=args.reps)
                size = sum(map(len, batch_bodies)) // len(batch_bodies)
                report(f"{title}: {BATCH_SIZE} transactions, ~{size:,} bytes each", clock)
            validation_alternatives(valid[0], reps=10 * args.reps)
            runtime.close(timeout=1.0)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


if __name__ == "__main__":
    main()
