"""Side-by-side benchmark on this machine: in-process paths, the FastAPI baseline, the service.

    python -m load.bench [--quick] [--store BENTOML_HOME] [--model TAG] [--server-cpus 0,1]

(`make bench`). One run prints ONE table, with the targets next to the figures, and also
writes it to `<state>/reports/bench.md` (default `.sproxxo/reports/bench.md`).

How it measures:
* in process: features + model, `sproxxo.scoring.score(...).records()` (the service
  path), `bundle.predict_matrix` (the compiled trees: a numba kernel over flat arrays) and
  sklearn `predict_proba` on the same feature matrix, at 1, 8, 32, 128 and 1024 rows,
  pinned to core 0; plus the parity max |Δp| compiled vs. sklearn on a held-out generator
  sample;
* over HTTP: servers are started and stopped here (`bentoml serve`, and the seed-style
  FastAPI app of `load/baseline/app.py`), on the cores of `--server-cpus` (default both).
  Load generators run in their own process pinned to core 1 (`taskset -c 1`): Debian's
  `wrk` with `load/wrk/post_bodies.lua` for closed-loop runs (max throughput at 64
  connections, latency at 4 connections, /predict_batch with 1000 transactions), and
  `load/fixed_rate.py` (open loop, wrk2-style, latency from the scheduled instant) for
  the fixed 200 req/s run, because Debian has no wrk2;
* the service runs once per `--workers` count (default 1 and 2), each its own server;
* errors = socket errors + non-2xx answers over every run against a server;
* server CPU per request = user + system CPU of the server's process tree during a run,
  divided by the requests it answered (steadier than req/s on a shared VM);
* RSS = VmRSS (and VmHWM, the peak) of each process of the server's process tree.
* card history: what a store call adds to a transaction, SQLite on a temp file and a real
  `redis-server` on loopback (`load/history_bench.py`, which also measures memory per card);
* bulk re-scoring (`training.score`'s path) in rows/s on one core;
* cold start: `bentoml serve` to /readyz 200 for a trivial Bento and for this service,
  alternated, after a warm-up start of each.

Without `--store` a model is trained first into a temporary store (~20-40 s).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/sklearn load OpenMP

import argparse
import gc
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from load import procs
from sproxxo.ml.compiled_trees import PARITY_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "load" / "wrk" / "post_bodies.lua"
LOADGEN_CPU = "1"
BATCH_SIZES = (1, 8, 32, 128, 1024)
FIXED_RATE = 200.0

TARGET_RATIO = 2.0
TARGET_P99_MS = 10.0
TARGET_SHADOW_P99_RATIO = 1.10
TARGET_BATCH_TPS = 50_000.0
#: Batch connections per worker: enough for every worker to have work if the connections
#: spread (whether they do is the kernel's and the accept loop's choice; rows say).
BATCH_CONNECTIONS_PER_WORKER = 2
TARGET_SINGLE_P50_US = 50.0
TARGET_RSS_MB = 500.0
TARGET_RESCORE_RPS = 200_000.0


@dataclass
class Row:
    """One line of the result table."""

    section: str
    what: str
    throughput: str = ""
    p50: str = ""
    p95: str = ""
    p99: str = ""
    note: str = ""
    target: str = ""
    ok: bool | None = None


@dataclass
class Durations:
    """How long each HTTP run lasts (seconds)."""

    warm: float = 3.0
    max: float = 20.0
    fixed: float = 20.0
    low: float = 10.0
    batch: float = 10.0
    inproc: float = 1.0
    baseline_max: float = 20.0

    @classmethod
    def quick(cls) -> Durations:
        """Short runs for a smoke check of the bench itself."""
        return cls(warm=2, max=8, fixed=8, low=5, batch=5, inproc=0.3, baseline_max=8)


@dataclass
class Report:
    """Rows plus what the header must say."""

    rows: list[Row] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    errors: int = 0

    def add(self, *rows: Row) -> None:
        """Append rows."""
        self.rows.extend(rows)


# --------------------------------------------------------------------------- formatting
def _us(value: float) -> str:
    return f"{value:,.0f} µs" if value < 10_000 else f"{value / 1000:,.1f} ms"


def _ms(value_us: float) -> str:
    return f"{value_us / 1000:,.2f} ms"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def render(report: Report) -> str:
    """The markdown table with its header lines."""
    lines = [*report.header, ""]
    lines.append(
        "| section | measurement | throughput | p50 | p95 | p99 | notes / ratio | target | ok |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---|---|---|")
    for r in report.rows:
        cells = (
            r.section,
            r.what,
            r.throughput,
            r.p50,
            r.p95,
            r.p99,
            r.note,
            r.target,
            _verdict(r.ok),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- model
def train_model(work: Path, *, rows: int) -> tuple[Path, str]:
    """Train a model into a fresh store under `work`; returns (BENTOML_HOME, tag)."""
    home = work / "bentoml"
    print(f"training a model on {rows} synthetic rows into {home} ...", flush=True)
    tag = procs.train_model(
        {
            "BENTOML_HOME": str(home),
            "SPROXXO_STATE_DIR": str(work / "train"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_ENABLE_TELEMETRY": "false",
        },
        rows=rows,
        bootstrap="",
    )
    return home, tag


def resolve_tag(model: str) -> str:
    """The full tag to benchmark: the given one, else the champion, else the newest."""
    from sproxxo.adapters import bentoml_store as store

    if model:
        return store.full_tag(model)
    return store.champion_tag() or store.full_tag("latest")


# --------------------------------------------------------------------------- in process
def time_calls(fn: Callable[[], Any], *, seconds: float) -> tuple[int, list[float]]:
    """Call `fn` repeatedly for about `seconds`; returns (calls, per-call µs)."""
    for _ in range(10):
        fn()
    gc.collect()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 30:
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return len(samples), samples


def _stats(rows: int, samples: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(samples)
    return (
        rows * len(arr) / (arr.sum() / 1e6),
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
    )


def in_process(tag: str, *, seconds: float) -> list[Row]:
    """features+model / service scoring / predict_matrix / sklearn per batch size, parity."""
    from load.payloads import valid_bodies
    from sproxxo.adapters.bentoml_store import load_model
    from sproxxo.features import build_features, columns_from_transactions
    from sproxxo.schemas import Transaction
    from sproxxo.scoring import score

    bundle = load_model(tag)
    now = datetime.now(UTC)
    txs = [Transaction.model_validate_json(json.dumps(b)) for b in valid_bodies(1024, seed=99)]
    matrix = build_features(columns_from_transactions(txs))
    estimator = bundle.pipeline[-1]
    rows: list[Row] = []
    for n in BATCH_SIZES:
        batch, x = txs[:n], matrix[:n]
        paths = {
            "features + model": lambda b=batch: bundle.predict_matrix(
                build_features(columns_from_transactions(b))
            ),
            "score + records (service path)": lambda b=batch: score(b, bundle, now=now).records(),
            "predict_matrix": lambda x=x: bundle.predict_matrix(x),
            "sklearn predict_proba": lambda x=x: estimator.predict_proba(x),
        }
        measured = {k: _stats(n, time_calls(f, seconds=seconds)[1]) for k, f in paths.items()}
        for name, (rps, p50, p99) in measured.items():
            rows.append(_in_process_row(n, name, rps, p50, p99, measured))
    rows.append(_baseline_path_row(bundle, txs[0], seconds=seconds))
    rows.append(parity_row(bundle))
    rows.extend(rescore_rows(bundle, rows=100_000 if seconds < 1 else 300_000))
    return rows


def _in_process_row(
    n: int,
    name: str,
    rps: float,
    p50: float,
    p99: float,
    measured: dict[str, tuple[float, float, float]],
) -> Row:
    note, target, ok = "", "", None
    if name == "score + records (service path)":
        note = "rules, features, model, decision, reason codes, JSON-ready answer"
    elif name == "features + model":
        note = f"{p50 / measured['predict_matrix'][1]:.1f}x predict_matrix p50"
        if n == 1:
            target, ok = f"p50 ≤ {TARGET_SINGLE_P50_US:.0f} µs", p50 <= TARGET_SINGLE_P50_US
    elif name == "predict_matrix":
        note = f"compiled; {measured['sklearn predict_proba'][1] / p50:.1f}x faster than sklearn"
    return Row(
        "in-process",
        f"{name}, {n} row{'s' * (n > 1)}",
        f"{rps:,.0f} rows/s",
        _us(p50),
        "",
        _us(p99),
        note,
        target,
        ok,
    )


def _baseline_path_row(bundle: Any, tx: Any, *, seconds: float) -> Row:
    import pandas as pd

    from sproxxo.features import columns_from_transactions

    def call() -> Any:
        return bundle.pipeline.predict_proba(pd.DataFrame(columns_from_transactions([tx])))

    rps, p50, p99 = _stats(1, time_calls(call, seconds=seconds)[1])
    return Row(
        "in-process",
        "pipeline.predict_proba(DataFrame), 1 row (baseline's path)",
        f"{rps:,.0f} rows/s",
        _us(p50),
        "",
        _us(p99),
    )


def rescore_rows(bundle: Any, *, rows: int = 300_000) -> list[Row]:
    """Bulk re-scoring (`training.score`) in process on one core: the card-history
    features over the rows (offline, vectorised), then the model path (features, rules,
    model, policy, reason codes) in chunks of 100,000."""
    from sproxxo.jobs.rescore import rescore_frame
    from sproxxo.ml.training import add_history
    from sproxxo.sources.synthetic import generate

    frame = generate(rows, seed=99)
    t0 = time.perf_counter()
    frame = add_history(frame)
    history_s = time.perf_counter() - t0
    rescore_frame(frame.iloc[:1_000], bundle)  # warm
    t0 = time.perf_counter()
    rescore_frame(frame, bundle, explain=False)
    model_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rescore_frame(frame, bundle)
    explained_s = time.perf_counter() - t0
    return [
        Row(
            "bulk re-scoring",
            f"model path, {rows:,} rows (features, rules, model, policy, generic reasons; "
            "--no-explain)",
            f"{rows / model_s:,.0f} rows/s",
            target="≥ 200,000 rows/s",
            ok=rows / model_s >= TARGET_RESCORE_RPS,
        ),
        Row(
            "bulk re-scoring",
            "same with the service's model-driven reason codes (TreeSHAP on reviews/declines)",
            f"{rows / explained_s:,.0f} rows/s",
        ),
        Row(
            "bulk re-scoring",
            f"card-history features, {rows:,} rows (offline, vectorised)",
            f"{rows / history_s:,.0f} rows/s",
        ),
    ]


def parity_row(bundle: Any, *, rows: int = 20_000) -> Row:
    """max |Δp| between the compiled path and sklearn on a held-out generator sample."""
    from sproxxo.features import build_features
    from sproxxo.sources.synthetic import generate

    if bundle.compiled is None:
        return Row("in-process", "parity compiled vs sklearn", note="no compiled model")
    x = build_features(generate(rows, seed=2718))
    sk = bundle.pipeline[-1].predict_proba(x)[:, 1]
    compiled = bundle.compiled.predict(x)
    delta = float(np.max(np.abs(compiled - sk)))
    return Row(
        "in-process",
        f"parity compiled vs sklearn ({rows:,} held-out rows)",
        note=f"max abs Δp = {delta:.2e}",
        target=f"≤ {PARITY_TOLERANCE:g}",
        ok=delta <= PARITY_TOLERANCE,
    )


# --------------------------------------------------------------------------- load generators
def history_rows(work: Path, *, quick: bool) -> list[Row]:
    """What a card-history store call adds to a transaction (`load.history_bench`)."""
    from load.history_bench import latency_table, stall_table

    cards, calls = (5_000, 1_000) if quick else (20_000, 5_000)
    rows = []
    for r in latency_table(work / "history", warm_cards=cards, per_card=10, calls=calls):
        rows.append(
            Row(
                "card history",
                f"{r['store']} observe, 1 tx ({cards:,} cards x 10 recent events)",
                p50=_us(r["p50_us"]),
                p95=_us(r["p95_us"]),
                p99=_us(r["p99_us"]),
                note=f"batch of 1,000: {r['batch_us_per_tx']:.0f} µs/tx, one round trip",
                target=f"p50 ≤ {r['target_p50_us']:.0f} µs",
                ok=r["p50_us"] <= r["target_p50_us"],
            )
        )
    for r in stall_table(work / "stall", warm_cards=cards, calls=calls * 3):
        rows.append(
            Row(
                "card history",
                f"SQLite observe 1,000 calls/s, {r['mode']} ({r['calls']:,} calls)",
                p50=_us(r["p50_us"]),
                p99=_us(r["p99_us"]),
                note=f"p99.9 {_us(r['p999_us'])}, max {_us(r['max_us'])}, "
                f"{r['over_5ms']} calls over 5 ms (WAL checkpoints)",
            )
        )
    return rows


def middleware_rows(*, quick: bool) -> list[Row]:
    """What BentoML's OpenTelemetry middleware adds to a request (`load.middleware_bench`)."""
    from load.middleware_bench import table

    return [
        Row("in-process", f"ASGI: {name}", note=f"{us:.1f} µs per request")
        for name, us in table(5_000 if quick else 20_000).items()
    ]


def wrk(url: str, path: str, bodies: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    """Closed-loop wrk run pinned to the load-generator core; returns WRK_JSON + rps."""
    argv = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        path,
        str(bodies),
    ]
    done = subprocess.run(  # noqa: S603 - fixed argv
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def fixed_rate(url: str, bodies: Path, *, rate: float, seconds: float) -> dict[str, Any]:
    """Open-loop run at `rate` req/s by load/fixed_rate.py pinned to the load-generator core."""
    argv = [
        "taskset",
        "-c",
        LOADGEN_CPU,
        sys.executable,
        "-m",
        "load.fixed_rate",
        "--url",
        url,
        "--bodies",
        str(bodies),
        "--rate",
        str(rate),
        "--duration",
        str(seconds),
    ]
    ticks = procs.cpu_ticks()
    done = subprocess.run(  # noqa: S603 - fixed argv
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fixed_rate failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["errors"] = result["errors"] + result["non_2xx"]
    result["steal_pct"] = procs.steal_percent(ticks, procs.cpu_ticks())
    return result


def write_bodies(work: Path) -> tuple[Path, Path]:
    """JSON-lines files: 2000 single bodies and 6 bodies of 1000 transactions."""
    from load.payloads import valid_bodies

    single = valid_bodies(2000, seed=5)
    singles = work / "bodies.jsonl"
    singles.write_text("\n".join(json.dumps(b) for b in single) + "\n", encoding="utf-8")
    pool = valid_bodies(6000, seed=6)
    batches = work / "batches.jsonl"
    batches.write_text(
        "\n".join(json.dumps({"transactions": pool[i : i + 1000]}) for i in range(0, 6000, 1000))
        + "\n",
        encoding="utf-8",
    )
    return singles, batches


# --------------------------------------------------------------------------- HTTP sections
def bench_baseline(
    cfg: dict[str, Any], *, mode: str, workers: int, d: Durations, singles: Path
) -> tuple[Row, float]:
    """Max throughput of one baseline configuration at 64 connections."""
    srv = procs.Server(
        [sys.executable, "-m", "load.baseline.app", "--mode", mode, "--workers", str(workers)],
        {**cfg["env"], "SPROXXO_BASELINE_MODEL": cfg["tag"]},
        cfg["work"] / "baseline.log",
        cfg["cpus"],
    )
    srv.start()
    try:
        wrk(srv.url, "/predict", singles, connections=16, seconds=d.warm)
        res = wrk(srv.url, "/predict", singles, connections=64, seconds=d.baseline_max)
        rss = max((r[2] for r in procs.rss_mb(srv.process.pid)), default=0.0)  # type: ignore[union-attr]
    finally:
        srv.stop()
    row = Row(
        "FastAPI baseline",
        f"{'async def' if mode == 'async' else 'sync def'}, "
        f"{workers} worker{'s' * (workers > 1)}: max @64 conns",
        f"{res['rps']:,.0f} req/s",
        _ms(res["p50_us"]),
        _ms(res["p95_us"]),
        _ms(res["p99_us"]),
        f"errors {res['errors']}, max RSS/process {rss:,.0f} MB",
    )
    return row, float(res["rps"])


def _with_cpu(root: int, run: Callable[[], dict[str, Any]], requests_key: str) -> dict[str, Any]:
    """`run()`'s result plus the server's CPU milliseconds per request it served, and with
    several workers the busiest worker's share of the workers' CPU (`busiest_pct`)."""
    workers = procs.worker_pids(root)
    before = procs.cpu_by_process(root)
    result = run()
    after = procs.cpu_by_process(root)
    used = sum(after.values()) - sum(before.values())
    result["cpu_ms"] = 1000 * used / max(int(result[requests_key]), 1)
    result["busiest_pct"] = procs.busiest_share(
        {pid: before.get(pid, 0.0) for pid in workers},
        {pid: after[pid] for pid in workers if pid in after},
    )
    return result


def _spread(r: dict[str, Any]) -> str:
    """The note on how the workers shared the run's CPU (empty with one worker)."""
    share = r.get("busiest_pct")
    return "" if share is None else f", busiest worker {share:.0f}% of the workers' CPU"


def bench_service(
    cfg: dict[str, Any], d: Durations, bodies: tuple[Path, Path], report: Report, *, workers: int
) -> float:
    """The Bento service with `workers` workers: max, fixed rate, low concurrency, batch,
    errors, CPU per request, RSS."""
    srv = procs.Server.bentoml(
        env={**cfg["env"], "SPROXXO_MODEL_TAG": cfg["tag"], "SPROXXO_WORKERS": str(workers)},
        log_path=cfg["work"] / f"service-{workers}.log",
        cpus=cfg["cpus"],
    )
    srv.start()
    try:
        runs, rss_peak, rss_end = _service_runs(srv, d, *bodies, workers=workers)
    finally:
        srv.stop()
    report.errors += sum(int(r["errors"]) for r in runs.values())
    section = f"Bento service, {workers} worker{'s' * (workers > 1)}"
    report.add(*_service_rows(section, runs))
    report.add(*_rss_rows(section, rss_peak, rss_end))
    return float(runs["max"]["rps"])


TRIVIAL_SERVICE = """import bentoml


@bentoml.service
class Trivial:
    @bentoml.api
    def add(self, a: int, b: int) -> int:
        return a + b
"""


def cold_start_rows(cfg: dict[str, Any], *, rounds: int = 2) -> list[Row]:
    """Seconds from `bentoml serve` to a 200 on /readyz: a trivial Bento (one integer
    endpoint) and this service, one worker each, alternated A B A B after one warm-up
    start of each (which writes the bytecode caches a built image already has: this
    machine sets PYTHONDONTWRITEBYTECODE, unset for these servers)."""
    trivial_dir = cfg["work"] / "trivial"
    trivial_dir.mkdir(exist_ok=True)
    (trivial_dir / "trivial.py").write_text(TRIVIAL_SERVICE)
    env = {**cfg["env"], "SPROXXO_MODEL_TAG": cfg["tag"], "PYTHONDONTWRITEBYTECODE": ""}
    argv = [sys.executable, "-m", "bentoml", "serve", "trivial:Trivial"]
    servers: dict[str, Callable[[], procs.Server]] = {
        "trivial Bento": lambda: procs.Server(
            [*argv, "--working-dir", str(trivial_dir)],
            env=env,
            log_path=cfg["work"] / "trivial.log",
        ),
        "Bento service": lambda: procs.Server.bentoml(env=env, log_path=cfg["work"] / "cold.log"),
    }
    times: dict[str, list[float]] = {name: [] for name in servers}
    for attempt in range(rounds + 1):
        for name, make in servers.items():
            srv = make()
            t0 = time.monotonic()
            srv.start(timeout=180)
            if attempt:  # the first round warms the bytecode caches
                times[name].append(time.monotonic() - t0)
            srv.stop()
    trivial, ours = min(times["trivial Bento"]), min(times["Bento service"])
    return [
        Row(
            "cold start",
            "trivial Bento (one integer endpoint), serve -> /readyz 200",
            note=", ".join(f"{t:.2f} s" for t in times["trivial Bento"]),
        ),
        Row(
            "cold start",
            "Bento service (model verified, parity checked; numba kernels and admin app "
            "load beside, after), serve -> /readyz 200",
            note=", ".join(f"{t:.2f} s" for t in times["Bento service"]),
            target=f"≤ trivial + 1.5 s ({trivial + 1.5:.2f} s)",
            ok=ours <= trivial + 1.5,
        ),
    ]


#: The shadow section's order of fixed-rate slices: off/on pairs as A B B A, so that a drift
#: of the VM's speed over the section weighs on both modes alike.
SHADOW_SLICES = ("off", "on", "on", "off") * 2


def shadow_rows(cfg: dict[str, Any], d: Durations, singles: Path, report: Report) -> float:
    """Shadow scoring's cost on the request path: two one-worker servers up side by side,
    one without and one with a shadow model (a second model trained here), each on its own
    state folder and BentoML home. Fixed-rate slices of `d.fixed / 2` alternate between
    them in `SHADOW_SLICES` order (A B B A twice: the idle one waits while the other is
    measured), and each mode's p99 is the median of its slices' p99, so one stalled slice
    or the VM's drift over the section decides nothing alone (target: on within 10%).
    Then max throughput with the shadow on, and how many transactions its full queue let
    through unscored. Returns that max (req/s).

    The servers find the models through `os.environ["BENTOML_HOME"]` (set by `_run`):
    `cfg["env"]`'s is left out so that each gets a private home linking that store's
    models (BentoML wipes a home's Prometheus files at start-up)."""
    print("training a challenger for the shadow section ...", flush=True)
    shadow = procs.train_model(
        {**cfg["env"], "SPROXXO_STATE_DIR": str(cfg["work"] / "train-shadow")}, rows=50_000, seed=7
    )
    p99: dict[str, list[float]] = {"off": [], "on": []}
    steal: dict[str, list[float]] = {"off": [], "on": []}
    shared = {k: v for k, v in cfg["env"].items() if k != "BENTOML_HOME"}  # see above
    servers = {
        mode: procs.Server.bentoml(
            env={
                **shared,
                "SPROXXO_MODEL_TAG": cfg["tag"],
                "SPROXXO_STATE_DIR": str(cfg["work"] / f"shadow-{mode}"),
                **({"SPROXXO_SHADOW_MODEL_TAG": shadow} if mode == "on" else {}),
            },
            log_path=cfg["work"] / f"shadow-{mode}.log",
            cpus=cfg["cpus"],
        )
        for mode in ("off", "on")
    }
    try:
        for srv in servers.values():
            srv.start()
            wrk(srv.url, "/predict", singles, connections=16, seconds=d.warm)
        for mode in SHADOW_SLICES:
            url = f"{servers[mode].url}/predict"
            run = fixed_rate(url, singles, rate=FIXED_RATE, seconds=d.fixed / 2)
            p99[mode].append(run["p99_us"] / 1000)
            steal[mode].append(run["steal_pct"])
            report.errors += int(run["errors"])
        top = wrk(servers["on"].url, "/predict", singles, connections=64, seconds=d.max)
        top["dropped"] = _metric_total(servers["on"].url, "sproxxo_shadow_dropped_total")
        top["shadowed"] = _metric_total(servers["on"].url, "sproxxo_shadow_decisions_total")
        report.errors += int(top["errors"])
    finally:
        for srv in servers.values():
            srv.stop()
    off, on = statistics.median(p99["off"]), statistics.median(p99["on"])
    report.add(
        Row(
            "shadow scoring",
            f"/predict fixed {FIXED_RATE:.0f} req/s p99, shadow off (A) vs on (B), slices of "
            f"{d.fixed / 2:.0f} s {' '.join('A' if m == 'off' else 'B' for m in SHADOW_SLICES)}"
            ", both servers up, median per mode",
            note=f"off {', '.join(f'{v:.2f}' for v in p99['off'])} ms; "
            f"on {', '.join(f'{v:.2f}' for v in p99['on'])} ms; median on/off {on / off:.2f}; "
            f"VM steal off {', '.join(f'{v:.1f}' for v in steal['off'])}%, "
            f"on {', '.join(f'{v:.1f}' for v in steal['on'])}%",
            target=f"on ≤ off x {TARGET_SHADOW_P99_RATIO:.2f}",
            ok=on <= off * TARGET_SHADOW_P99_RATIO,
        ),
        Row(
            "shadow scoring",
            "/predict max @64 conns, shadow on",
            f"{top['rps']:,.0f} req/s",
            _ms(top["p50_us"]),
            _ms(top["p95_us"]),
            _ms(top["p99_us"]),
            f"errors {top['errors']}; shadow scored {top['shadowed']:,.0f}, skipped "
            f"{top['dropped']:,.0f} (queue full) since start",
        ),
    )
    return float(top["rps"])


def _metric_total(url: str, name: str) -> float:
    """Sum of a metric's samples on a service's /metrics page."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in {" ", "{"}
    )


def _service_runs(
    srv: procs.Server, d: Durations, singles: Path, batches: Path, *, workers: int
) -> tuple[dict[str, dict[str, Any]], list[Any], list[Any]]:
    root = srv.process.pid  # type: ignore[union-attr]
    batch_conns = BATCH_CONNECTIONS_PER_WORKER * workers
    wrk(srv.url, "/predict", singles, connections=16, seconds=d.warm)
    runs = {
        "max": _with_cpu(
            root,
            lambda: wrk(srv.url, "/predict", singles, connections=64, seconds=d.max),
            "requests",
        )
    }
    rss_peak = procs.rss_mb(root)
    runs["fixed"] = fixed_rate(f"{srv.url}/predict", singles, rate=FIXED_RATE, seconds=d.fixed)
    runs["low"] = wrk(srv.url, "/predict", singles, connections=4, seconds=d.low)
    runs["batch"] = _with_cpu(
        root,
        lambda: wrk(srv.url, "/predict_batch", batches, connections=batch_conns, seconds=d.batch),
        "requests",
    )
    runs["batch"]["connections"] = batch_conns
    return runs, rss_peak, procs.rss_mb(root)


def _service_rows(section: str, runs: dict[str, dict[str, Any]]) -> list[Row]:
    top, fixed, low, batch = runs["max"], runs["fixed"], runs["low"], runs["batch"]
    tps = batch["rps"] * 1000

    def latencies(r: dict[str, Any]) -> tuple[str, str, str]:
        return _ms(r["p50_us"]), _ms(r["p95_us"]), _ms(r["p99_us"])

    return [
        Row(
            section,
            "/predict max @64 conns",
            f"{top['rps']:,.0f} req/s",
            *latencies(top),
            f"errors {top['errors']}, server CPU {top['cpu_ms']:.2f} ms/request{_spread(top)}",
        ),
        Row(
            section,
            f"/predict fixed {FIXED_RATE:.0f} req/s (open loop)",
            f"{fixed['achieved_rps']:,.0f} req/s",
            *latencies(fixed),
            f"errors {fixed['errors']} (socket {fixed['errors'] - fixed['non_2xx']}, "
            f"statuses {fixed['statuses']}), {fixed['connections']} conns used, "
            f"VM steal {fixed['steal_pct']:.1f}% of CPU time during the run",
            f"p99 ≤ {TARGET_P99_MS:.0f} ms",
            fixed["p99_us"] / 1000 <= TARGET_P99_MS,
        ),
        Row(
            section,
            "/predict low concurrency @4 conns",
            f"{low['rps']:,.0f} req/s",
            *latencies(low),
            f"errors {low['errors']}",
        ),
        Row(
            section,
            f"/predict_batch, 1000 tx/request @{batch['connections']} conns",
            f"{tps:,.0f} tx/s",
            *latencies(batch),
            f"{batch['rps']:.1f} req/s, errors {batch['errors']}, "
            f"server CPU {batch['cpu_ms']:.1f} ms/request{_spread(batch)}",
            f"≥ {TARGET_BATCH_TPS:,.0f} tx/s",
            tps >= TARGET_BATCH_TPS,
        ),
    ]


def _rss_rows(
    section: str,
    peak: list[tuple[int, str, float, float]],
    end: list[tuple[int, str, float, float]],
) -> list[Row]:
    by_pid = {pid: (name, rss, hwm) for pid, name, rss, hwm in peak}
    rows = []
    for pid, name, rss, hwm in end:
        if name == "taskset":
            continue
        after_max = by_pid.get(pid, (name, 0.0, 0.0))[1]
        rows.append(
            Row(
                section,
                f"RSS pid {pid} ({name})",
                note=f"after max run {after_max:,.0f} MB, at end {rss:,.0f} MB, "
                f"peak (VmHWM) {hwm:,.0f} MB",
                target=f"≤ {TARGET_RSS_MB:.0f} MB",
                ok=hwm <= TARGET_RSS_MB,
            )
        )
    return rows


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m load.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short runs (~1/3 of the time)")
    parser.add_argument("--store", type=Path, help="BENTOML_HOME with a trained model")
    parser.add_argument("--model", default="", help="tag (default: champion, else newest)")
    parser.add_argument("--server-cpus", default="0,1", help="taskset list for the servers")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[1, 2],
        help="service worker counts to measure, one server each (default 1,2)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-shadow", action="store_true", help="no shadow-scoring section")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", type=Path, help="markdown output (default reports/bench.md)")
    return parser.parse_args(argv)


def _header(args: argparse.Namespace, tag: str, d: Durations) -> list[str]:
    import sklearn

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    servers = (
        "servers on both cores (unpinned), sharing core 1 with the load generator"
        if args.server_cpus.replace(" ", "") in {"0,1", "0-1"}
        else f"servers pinned to cores {args.server_cpus}"
    )
    return [
        f"# sproxxo bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (quick)' if args.quick else ''}",
        "",
        f"- machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"scikit-learn {sklearn.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}",
        f"- model: {tag}",
        "- in-process: single thread pinned to core 0",
        f"- cores: {servers}; load generators pinned to core {LOADGEN_CPU} (`taskset`)",
        f"- closed loop: wrk {_wrk_version()} + load/wrk/post_bodies.lua, 1 thread; "
        f"max = 64 conns for {d.max:.0f} s (baseline {d.baseline_max:.0f} s), low = 4 conns "
        f"for {d.low:.0f} s",
        "- service as deployed: access log off (Cloud Run logs requests), 1 thread per worker",
        f"- fixed rate: load/fixed_rate.py (Python asyncio, open loop, latency from the "
        f"scheduled send; no wrk2 in Debian) at {FIXED_RATE:.0f} req/s for {d.fixed:.0f} s",
    ]


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
    return (out.stdout + out.stderr).split()[1] if (out.stdout + out.stderr).split() else "?"


def main(argv: list[str] | None = None) -> int:
    """Run every section, print the table, write it to the reports folder."""
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get update && apt-get install -y wrk")
    d = Durations.quick() if args.quick else Durations()
    work = Path(tempfile.mkdtemp(prefix="sproxxo-bench-"))
    try:
        return _run(args, d, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, d: Durations, work: Path) -> int:
    if args.store:
        home = args.store.resolve()
    else:
        home, _ = train_model(work, rows=50_000 if args.quick else 200_000)
    os.environ["BENTOML_HOME"] = str(home)  # before anything imports bentoml
    tag = resolve_tag(args.model)
    report = Report(header=_header(args, tag, d))
    cfg = {
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "tag": tag,
        "work": work,
        "cpus": args.server_cpus,
        "env": {
            "BENTOML_HOME": str(home),
            "SPROXXO_STATE_DIR": str(work / "state"),
            "BENTOML_DO_NOT_TRACK": "true",
            "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
            "SPROXXO_ACCESS_LOG": "false",  # as on Cloud Run (deploy/cloudrun/service.yaml)
        },
    }
    print(f"in-process measurements on {tag} ...", flush=True)
    os.sched_setaffinity(0, {0})
    try:
        report.add(*in_process(tag, seconds=d.inproc))
        report.add(*middleware_rows(quick=args.quick))
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    print("card-history stores (SQLite file, loopback redis-server) ...", flush=True)
    report.add(*history_rows(work, quick=args.quick))
    singles, batches = write_bodies(work)
    best = 0.0
    if not args.skip_baseline:
        for mode, workers in (("async", 1), ("sync", 1), ("async", 2)):
            print(f"FastAPI baseline {mode} x{workers} ...", flush=True)
            row, rps = bench_baseline(cfg, mode=mode, workers=workers, d=d, singles=singles)
            report.add(row)
            best = max(best, rps)
    print("cold start: trivial Bento vs this service ...", flush=True)
    report.add(*cold_start_rows(cfg))
    top = 0.0
    for workers in args.workers:
        print(f"Bento service x{workers} ...", flush=True)
        rps = bench_service(cfg, d, (singles, batches), report, workers=workers)
        top = max(top, rps)
    if not args.skip_shadow:
        print("shadow scoring: off vs on ...", flush=True)
        shadow_top = shadow_rows(cfg, d, singles, report)
        report.add(*_shadow_summary(shadow_top, best))
    report.add(*_summary_rows(top, best, report.errors))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report.header.append(f"- load average (1/5/15 min) at start {cfg['load']}, at end {load}")
    text = render(report)
    print("\n" + text)
    from sproxxo.settings import get_settings

    out = args.out or get_settings().reports_dir / "bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"written to {out}")
    return 0 if all(r.ok is not False for r in report.rows) else 1


def _shadow_summary(top: float, best: float) -> list[Row]:
    if not best:
        return []
    return [
        Row(
            "targets",
            "service max with shadow on (1 worker) ÷ best FastAPI baseline max",
            f"{top:,.0f} vs {best:,.0f} req/s",
            note=f"{top / best:.2f}x",
            target=f"≥ {TARGET_RATIO}x",
            ok=top / best >= TARGET_RATIO,
        )
    ]


def _summary_rows(top: float, best: float, errors: int) -> list[Row]:
    rows = [
        Row(
            "targets",
            "Bento service errors (non-2xx + socket) over all runs",
            note=str(errors),
            target="0",
            ok=errors == 0,
        )
    ]
    if best:
        ratio = top / best
        rows.insert(
            0,
            Row(
                "targets",
                "best service max ÷ best FastAPI baseline max",
                f"{top:,.0f} vs {best:,.0f} req/s",
                note=f"{ratio:.2f}x",
                target=f"≥ {TARGET_RATIO}x",
                ok=ratio >= TARGET_RATIO,
            ),
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
