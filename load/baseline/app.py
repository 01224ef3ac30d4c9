"""The seed-style yardstick: FastAPI + uvicorn, one sklearn `predict_proba` per request.

What a typical first version of the service would be, kept only to measure the product
against (not shipped, not part of the Bento). Same model, same features:

    python -m load.baseline.app --port 3200 --workers 1 --mode async   # or --mode sync

`--mode async` serves with `async def` (predict in the event loop), `--mode sync` with a
plain `def` (predict on Starlette's thread pool). With `--workers N`, N processes each bind
the port with SO_REUSEPORT, so the baseline is not hurt by uvicorn's `--workers` Nagle
problem (SERVING-NOTES); its best configuration is what the service must beat.
Environment: BENTOML_HOME (the store), SPROXXO_BASELINE_MODEL (tag, default `latest`),
SPROXXO_BASELINE_MODE (async|sync).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from sproxxo.features import columns_from_transactions
from sproxxo.ml.bundle import ModelBundle
from sproxxo.schemas import Transaction

MODE = os.environ.get("SPROXXO_BASELINE_MODE", "async")
_state: dict[str, ModelBundle] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Load the model once per worker, at start-up (never at import)."""
    from sproxxo.adapters.bentoml_store import load_model

    _state["bundle"] = load_model(os.environ.get("SPROXXO_BASELINE_MODEL", "latest"))
    yield
    _state.clear()


app = FastAPI(title="sproxxo baseline", lifespan=lifespan)


def _predict(body: bytes) -> dict[str, Any]:
    # The strict schema only validates in JSON mode, so parse the raw body (as BentoML does).
    try:
        transaction = Transaction.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(status_code=400, detail=exc.errors(include_url=False)) from exc
    bundle = _state["bundle"]
    frame = pd.DataFrame(columns_from_transactions([transaction]))
    probability = float(bundle.pipeline.predict_proba(frame)[0, 1])
    return {
        "transaction_id": transaction.transaction_id,
        "fraud_probability": probability,
        "model_tag": bundle.tag,
    }


@app.post("/predict")
async def predict(request: Request) -> dict[str, Any]:
    """Score one transaction: in the event loop (async) or on the thread pool (sync)."""
    body = await request.body()
    if MODE == "sync":  # what a plain `def` endpoint does: one thread-pool hop per call
        return await run_in_threadpool(_predict, body)
    return _predict(body)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    """Ready once the model is loaded."""
    return {"status": "ready" if "bundle" in _state else "starting"}


def _serve(host: str, port: int, mode: str) -> None:
    import uvicorn

    os.environ["SPROXXO_BASELINE_MODE"] = mode
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config("load.baseline.app:app", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    """Start `--workers` uvicorn processes sharing the port."""
    parser = argparse.ArgumentParser(prog="python -m load.baseline.app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mode", choices=("async", "sync"), default=MODE)
    args = parser.parse_args()
    if args.workers == 1:
        _serve(args.host, args.port, args.mode)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_serve, args=(args.host, args.port, args.mode))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()


if __name__ == "__main__":
    main()
