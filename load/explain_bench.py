"""What an explanation costs on this machine (not a test: it prints figures).

    python -m load.explain_bench [--rows 100000] [--explain 3000] [--seconds 2]

Trains the project's model with its own recipe (`train_candidate`, default parameters: 200
trees of at most 31 leaves) on `--rows` synthetic transactions, then, pinned to core 0:

* per transaction: `ModelBundle.explain_matrix` of one feature row (TreeSHAP over the
  compiled trees plus the raw score), p50/p95/p99 over `--explain` held-out rows of the
  generator with their card history (NaN where unknown), against the 1 ms p50 target; the
  same over the rows the model reviews or declines; the kernel alone; one-row
  `predict_matrix` for scale; and the cost per row of one call over 64 rows (the
  micro-batcher's largest batch);
* calls of several rows (a batch's reviews and declines): per row, the row kernel against
  the block kernel `shap_values` uses from `FEWEST_BLOCKED` rows on, on the same calls in
  alternation;
* exactness: the largest |base value + sum of contributions - raw score| over those rows;
* the service path: `score(...).records()` of one transaction without and with its
  explanation (`valid_bodies` payloads), and the decision mix of those payloads at the
  model's policy: reviews and declines are explained anyway, so explanations add
  mix x (explained - plain) per transaction on average. The /predict throughput over HTTP
  is measured by `load/bench.py`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/sklearn load OpenMP

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

TARGET_P50_US = 1000.0
MICRO_BATCH = 64


def _percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(samples)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def per_row_us(fn: Callable[[Any], Any], rows: Sequence[Any]) -> list[float]:
    """Microseconds of `fn(row)` for each row (after a warm-up call)."""
    fn(rows[0])
    out = []
    for row in rows:
        t0 = time.perf_counter_ns()
        fn(row)
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def repeat_us(fn: Callable[[], Any], *, seconds: float) -> list[float]:
    """Microseconds of `fn()` called for about `seconds` (at least 30 calls)."""
    fn()
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < 30:
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e3)
    return out


def train(rows: int, seed: int) -> Any:
    """The project's model at default parameters, as an in-memory bundle."""
    from sproxxo.ml.bundle import ModelBundle
    from sproxxo.ml.compiled_trees import compile_model
    from sproxxo.ml.training import train_candidate
    from sproxxo.sources.synthetic import generate

    candidate = train_candidate(generate(rows, seed=seed), source="synthetic", seed=seed)
    compiled = compile_model(candidate.pipeline[-1])
    return ModelBundle(candidate.pipeline, candidate.metadata, "bench:explain", compiled)


def held_out(n: int, seed: int) -> np.ndarray:
    """`n` feature rows of another generator sample, with their card history."""
    from sproxxo.features import build_features
    from sproxxo.ml.training import add_history
    from sproxxo.sources.synthetic import generate

    return build_features(add_history(generate(max(n, 60), seed=seed)))[:n]


def describe(bundle: Any) -> str:
    """Trees, leaves and depth of the compiled model."""
    m = bundle.compiled
    leaf = m.left == np.arange(len(m.left))
    tree = np.repeat(np.arange(len(m.roots)), np.diff(np.append(m.roots, len(m.left))))
    leaves = np.bincount(tree[leaf], minlength=len(m.roots))
    return (
        f"{len(m.roots)} trees, {int(leaf.sum())} leaves (max {int(leaves.max())} per tree), "
        f"depth <= {int(m.depths.max())} (mean max {float(m.depths.mean()):.1f})"
    )


def kernel_rows(bundle: Any, matrix: np.ndarray) -> list[tuple[str, list[float]]]:
    """Per-row timings of the explanation paths over `matrix`'s rows."""
    from sproxxo.ml import explain
    from sproxxo.policy import probability_band

    singles = [matrix[i : i + 1] for i in range(len(matrix))]
    flagged = probability_band(bundle.predict_matrix(matrix), bundle.policy) > 0
    reviewed = [s for s, hit in zip(singles, flagged.tolist(), strict=True) if hit]
    explain_one: Callable[[Any], Any] = bundle.explain_matrix
    out = [
        ("explain_matrix, 1 row (all rows)", per_row_us(explain_one, singles)),
        ("explain_matrix, 1 row (kernel only)", per_row_us(_kernel_of(bundle, explain), singles)),
        ("predict_matrix, 1 row (for scale)", per_row_us(bundle.predict_matrix, singles)),
    ]
    if reviewed:
        out.insert(
            1,
            (
                f"explain_matrix, 1 row ({len(reviewed)} review/decline rows)",
                per_row_us(explain_one, reviewed),
            ),
        )
    blocks = [
        matrix[i : i + MICRO_BATCH] for i in range(0, len(matrix) - MICRO_BATCH + 1, MICRO_BATCH)
    ]
    batch = [t / MICRO_BATCH for t in per_row_us(explain_one, blocks)]
    out.append((f"explain_matrix, per row of {MICRO_BATCH}", batch))
    return out


def block_rows(bundle: Any, matrix: np.ndarray) -> list[tuple[str, float, float]]:
    """Per row, the row kernel called directly against `shap_values` on the same calls of n
    rows, timed in alternation so both see the same machine: (call size, row kernel µs,
    `shap_values` µs), medians over the calls. `shap_values` runs the block kernel from
    FEWEST_BLOCKED rows on; below, both run the row kernel (`shap_values` adds its few µs
    of set-up), which measures the pairing's own bias. Each timed call follows an untimed
    one on the same rows (`per_row_us`'s warm-up)."""
    import dataclasses

    from sproxxo.ml import explain

    prepared = explain.tables(bundle.compiled)
    arrays = [getattr(prepared, f.name) for f in dataclasses.fields(prepared)]
    row_kernel = explain._kernel()

    def by_rows(rows: np.ndarray) -> None:
        row_kernel(np.ascontiguousarray(rows), *arrays, np.zeros(rows.shape))

    def by_blocks(rows: np.ndarray) -> None:
        explain.shap_values(bundle.compiled, rows, prepared=prepared)

    out = []
    for n in (2, 3, explain.FEWEST_BLOCKED, explain.BLOCK, 48, MICRO_BATCH):
        calls = [matrix[i : i + n] for i in range(0, len(matrix) - n + 1, n)][: max(20, 1500 // n)]
        before: list[float] = []
        after: list[float] = []
        for rows in calls:
            before += [t / n for t in per_row_us(by_rows, [rows])]
            after += [t / n for t in per_row_us(by_blocks, [rows])]
        out.append((f"{n} rows", statistics.median(before), statistics.median(after)))
    return out


def explain_rows_blocked() -> int:
    """The fewest rows `shap_values` sends to the block kernel."""
    from sproxxo.ml import explain

    return int(explain.FEWEST_BLOCKED)


def _kernel_of(bundle: Any, explain: Any) -> Callable[[Any], Any]:
    prepared = explain.tables(bundle.compiled)  # once per model, as the bundle keeps them
    return lambda row: explain.shap_values(bundle.compiled, row, prepared=prepared)


def exactness(bundle: Any, matrix: np.ndarray) -> float:
    """Largest |base + sum(contributions) - raw| over the rows."""
    found = bundle.explain_matrix(matrix)
    total = found.base_value + found.by_feature.sum(axis=1)
    return float(np.abs(total - found.raw_scores).max())


def service_path(
    bundle: Any, n: int, seconds: float
) -> tuple[list[tuple[str, list[float]]], dict[str, float]]:
    """`score(...).records()` of one transaction, plain and explained; the decision mix."""
    from load.payloads import valid_bodies
    from sproxxo.schemas import Transaction
    from sproxxo.scoring import score

    now = datetime.now(UTC)
    txs = [Transaction.model_validate_json(json.dumps(b)) for b in valid_bodies(n, seed=99)]
    decisions = [str(d) for d in score(txs, bundle, now=now).decisions]
    mix = {d: decisions.count(d) / len(decisions) for d in ("approve", "review", "decline")}
    approve = next(tx for tx, d in zip(txs, decisions, strict=True) if d == "approve")
    timings = [
        (
            "score + records, 1 approve",
            repeat_us(lambda: score([approve], bundle, now=now).records(), seconds=seconds),
        ),
        (
            "score + records, 1 approve, explained",
            repeat_us(
                lambda: score([approve], bundle, now=now, explain=True).records(), seconds=seconds
            ),
        ),
    ]
    return timings, mix


def main() -> None:
    """Train, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="training transactions")
    parser.add_argument("--explain", type=int, default=3_000, help="rows explained one by one")
    parser.add_argument("--seconds", type=float, default=2.0, help="per service-path timing")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"training on {args.rows:,} synthetic transactions (default parameters) ...", flush=True)
    bundle = train(args.rows, args.seed)
    print(f"model: {describe(bundle)}")
    matrix = held_out(args.explain, args.seed + 100)
    os.sched_setaffinity(0, {0})
    try:
        rows = kernel_rows(bundle, matrix)
        blocks = block_rows(bundle, matrix)
        service, mix = service_path(bundle, 2_000, args.seconds)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    print(f"\n{'path':<48} {'p50 us':>9} {'p95 us':>9} {'p99 us':>9}")
    for name, samples in rows + service:
        p50, p95, p99 = _percentiles(samples)
        print(f"{name:<48} {p50:>9.1f} {p95:>9.1f} {p99:>9.1f}")
    print(
        "\nseveral rows in one call, per row (median; the same calls in alternation;"
        f" shap_values takes the block kernel from {explain_rows_blocked()} rows on)"
    )
    print(f"{'call':<12} {'row kernel us':>14} {'shap_values us':>16} {'ratio':>7}")
    for name, before, after in blocks:
        print(f"{name:<12} {before:>14.1f} {after:>16.1f} {after / before:>7.2f}")
    p50 = _percentiles(rows[0][1])[0]
    verdict = "ok" if p50 <= TARGET_P50_US else "MISSED"
    print(f"\nexplanation p50 {p50:.1f} us, target <= {TARGET_P50_US:.0f} us: {verdict}")
    print(f"exactness: max |base + sum - raw| = {exactness(bundle, matrix):.2e} (test: 1e-6)")
    plain, explained = (_percentiles(s)[0] for _, s in service)
    share = mix["review"] + mix["decline"]
    print(
        "decision mix of the payloads: "
        + ", ".join(f"{d} {v:.2%}" for d, v in mix.items())
        + f"; explaining reviews and declines adds {share * (explained - plain):.1f} us per"
        f" transaction on average ({share * (explained - plain) / plain:.1%} of the"
        " in-process service path; the HTTP path costs more per request, load/bench.py)"
    )


if __name__ == "__main__":
    main()
