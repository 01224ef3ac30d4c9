"""Where a /predict request's CPU goes: py-spy on a saturated worker, samples by layer.

    uv run python -m load.profile_predict [--store BENTOML_HOME] [--seconds 20] [--batch]

Starts the service as deployed (one worker pinned to core 0, access log off, SQLite card
history on), saturates it with wrk from core 1 (64 connections; with `--batch`,
/predict_batch with `load/bench.py`'s 1,000-transaction bodies at 2), and samples the worker
with `py-spy record --format raw` (py-spy is not a dependency: `pip install py-spy` into
any environment and put it on PATH, or pass --py-spy). Every sample is charged to the
first frame from the leaf upwards that belongs to a layer below (numpy, numba and the
standard library are charged to whoever called them), and the table says how much of
the worker's CPU each layer took, with the CPU per request measured over the same run.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load import bench, procs  # noqa: E402 - after the path, when run as a file

#: (layer, pattern on a frame's file path), first match wins; order matters.
LAYERS: Final = (
    ("sproxxo: card history (SQLite store)", r"sproxxo/(history|adapters/history\w*)\.py"),
    ("sproxxo: prediction log + recording", r"sproxxo/(serving/(predlog|recording)|records)\.py"),
    ("sproxxo: request guard (JSON limits)", r"sproxxo/serving/guard\.py"),
    (
        "sproxxo: metrics (prometheus_client)",
        r"(sproxxo/adapters/prometheus\.py|prometheus_client/)",
    ),
    (
        "sproxxo: explanations (TreeSHAP, reviews/declines)",
        r"sproxxo/(explanations|ml/explain)\.py",
    ),
    ("sproxxo: shadow scoring (its thread)", r"sproxxo/serving/shadow\.py"),
    ("sproxxo: scoring (features, rules, model, policy, answer)", r"sproxxo/"),
    ("service.py (routes)", r"/service\.py$"),
    ("pydantic validation / serialisation", r"pydantic"),
    ("JSON (orjson, json)", r"(orjson|/json/)"),
    ("OpenTelemetry tracing", r"opentelemetry"),
    ("BentoML (service wrapper, middlewares, IO)", r"(_bentoml_impl|_bentoml_sdk|bentoml/)"),
    ("Starlette / FastAPI", r"(starlette|fastapi)/"),
    ("uvicorn + HTTP parsing (httptools/h11)", r"(uvicorn|httptools|h11)/"),
    ("asyncio event loop", r"asyncio/"),
    ("logging", r"/logging/"),
)
#: Frames charged to their caller: numeric kernels and plumbing that serve every layer.
PASS_THROUGH: Final = re.compile(
    r"(numpy/|numba/|/(threading|typing|enum|abc|copy|functools|contextlib|contextvars|"
    r"weakref|selectors|socket|ssl)\.py|<frozen|\(<string>)"
)
FRAME: Final = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(:\d+)?\)$")


def layer_of(stack: list[str]) -> str:
    """The layer a sample is charged to (`stack` from root to leaf)."""
    for frame in reversed(stack):
        match = FRAME.match(frame.strip())
        path = match.group("file") if match else frame
        if PASS_THROUGH.search(path):
            continue
        for name, pattern in LAYERS:
            if re.search(pattern, path):
                return name
        return "other (standard library, native)"
    return "other (standard library, native)"


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) stacks: `frame;frame;... count` per line."""
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            samples.append((frames, int(count)))
    return samples


def breakdown(samples: list[tuple[list[str], int]]) -> list[tuple[str, int]]:
    """Samples per layer, largest first."""
    totals: collections.Counter[str] = collections.Counter()
    for stack, count in samples:
        totals[layer_of(stack)] += count
    return totals.most_common()


def worker_pid(root: int) -> int:
    """The BentoML worker process under the server's root process."""
    for pid in procs.process_tree(root):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"_bentoml_impl.worker" in cmdline:
            return pid
    raise RuntimeError("no BentoML worker process found")


def profile(
    store: Path, tag: str, work: Path, *, seconds: float, py_spy: str, batch: bool = False
) -> str:
    """Saturate one worker, sample it, return the markdown table."""
    singles, batches = bench.write_bodies(work)
    route, bodies, connections = (
        ("/predict_batch", batches, 2) if batch else ("/predict", singles, 64)
    )
    env = {
        "BENTOML_HOME": str(store),
        "SPROXXO_STATE_DIR": str(work / "state"),
        "SPROXXO_MODEL_TAG": tag,
        "SPROXXO_ACCESS_LOG": "false",
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
    }
    srv = procs.Server.bentoml(env=env, log_path=work / "server.log", cpus="0").start()
    raw = work / "profile.txt"
    try:
        worker = worker_pid(srv.process.pid)  # type: ignore[union-attr]
        bench.wrk(srv.url, route, bodies, connections=min(connections, 16), seconds=3)
        result: dict[str, dict[str, float]] = {}
        load = threading.Thread(
            target=lambda: result.update(
                run=bench.wrk(srv.url, route, bodies, connections=connections, seconds=seconds + 4)
            )
        )
        cpu0 = procs.cpu_seconds(worker)
        load.start()
        record = [py_spy, "record", "--pid", str(worker), "--rate", "250"]
        record += ["--duration", f"{seconds:.0f}", "--format", "raw", "--output", str(raw)]
        subprocess.run([*record, "--nonblocking"], check=True, capture_output=True)  # noqa: S603
        load.join()
        cpu = procs.cpu_seconds(worker) - cpu0
    finally:
        srv.stop()
    run = result["run"]
    rows = breakdown(read_raw(raw))
    total = sum(n for _, n in rows)
    cpu_ms = 1000 * cpu / max(run["requests"], 1)
    lines = [
        f"{route}: {run['rps']:,.0f} req/s at {connections} connections, worker CPU "
        f"{cpu_ms:.3f} ms per request "
        f"({total:,} samples at 250 Hz over {seconds:.0f} s)",
        "",
        "| layer | share of worker CPU | ≈ µs per request |",
        "|---|---:|---:|",
    ]
    for name, n in rows:
        lines.append(f"| {name} | {n / total:.1%} | {1000 * cpu_ms * n / total:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train (or use --store), profile, print the table."""
    parser = argparse.ArgumentParser(prog="python -m load.profile_predict", description=__doc__)
    parser.add_argument("--store", type=Path, help="BENTOML_HOME with a trained model")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the folder (profile.txt)")
    parser.add_argument("--batch", action="store_true", help="/predict_batch, 1,000 per request")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sproxxo-profile-"))
    try:
        store = args.store.resolve() if args.store else bench.train_model(work, rows=50_000)[0]
        os.environ["BENTOML_HOME"] = str(store)
        tag = bench.resolve_tag("")
        print(profile(store, tag, work, seconds=args.seconds, py_spy=args.py_spy, batch=args.batch))
    finally:
        if args.keep:
            print(f"kept {work} (py-spy's raw stacks: profile.txt)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
