"""Realistic card-authorisation traffic for the fraud service (run it with `python -m load.run`).

Run locust as its own process only: `import locust` monkey-patches the interpreter with
gevent, so this module is never imported by pytest or the benchmark.

Traffic mix (task weights): single /predict 85, /predict_batch of 10-50 transactions 8,
invalid transactions 5 (the expected 4xx counts as a success), /models reader 2.

Every request carries `X-Sproxxo-Synthetic: 1`: the service marks its prediction-log rows
`synthetic` and monitoring leaves them out, so a load run against a deployed service (the
release canary) never passes for cardholder traffic.

Environment:
  SPROXXO_LOAD_SHAPE         steady (default) | spike | soak; all read --users,
                             --spawn-rate and --run-time (users = the peak)
  SPROXXO_LOAD_BEARER_TOKEN  sent as `Authorization: Bearer ...` (Cloud Run IAM); load.run
                             sets it from --bearer-token or the --id-token-env variable
  SPROXXO_LOAD_WAIT_MS       "min,max" think time per user in ms (default "50,250")
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, ClassVar

from locust import FastHttpUser, LoadTestShape, between, task

from load.payloads import PayloadPool
from sproxxo.serving.guard import SYNTHETIC_HEADER

SHAPE = os.environ.get("SPROXXO_LOAD_SHAPE", "steady").strip().lower()
_WAIT_MS = [float(v) for v in os.environ.get("SPROXXO_LOAD_WAIT_MS", "50,250").split(",")]
_TOKEN = os.environ.get("SPROXXO_LOAD_BEARER_TOKEN", "")
HEADERS = {"Content-Type": "application/json", SYNTHETIC_HEADER.decode(): "1"} | (
    {"Authorization": f"Bearer {_TOKEN}"} if _TOKEN else {}
)
POOL = PayloadPool(size=5000)


class CardholderTraffic(FastHttpUser):
    """A payment gateway's calls: mostly single authorisations, some batches."""

    wait_time = between(_WAIT_MS[0] / 1000, _WAIT_MS[-1] / 1000)

    def on_start(self) -> None:
        """One RNG per user so invalid picks do not contend."""
        self.rng = random.Random()

    def _post(self, path: str, body: Any, *, name: str, expected: int) -> None:
        with self.rest("POST", path, data=json.dumps(body), headers=HEADERS, name=name) as resp:
            _judge(resp, expected)

    @task(85)
    def predict(self) -> None:
        """One authorisation."""
        self._post("/predict", POOL.next_valid(), name="/predict", expected=200)

    @task(8)
    def predict_batch(self) -> None:
        """A settlement-style batch of 10-50 transactions."""
        body = {"transactions": POOL.batch(self.rng.randint(10, 50))}
        self._post("/predict_batch", body, name="/predict_batch", expected=200)

    @task(5)
    def predict_invalid(self) -> None:
        """A malformed transaction: the service must refuse it with the expected status."""
        case = POOL.next_invalid(self.rng)
        self._post("/predict", case.body, name="/predict [invalid]", expected=case.expected_status)

    @task(2)
    def read_models(self) -> None:
        """A dashboard listing the model versions."""
        with self.client.get(
            "/models", headers=HEADERS, name="/models", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"expected 200, got {resp.status_code}")


def _judge(resp: Any, expected: int) -> None:
    """Mark a response (locust's RestResponse, untyped) a success or a failure."""
    if resp.status_code != expected:
        resp.failure(f"expected {expected}, got {resp.status_code}: {(resp.text or '')[:200]}")
    elif resp.js is None:
        resp.failure(f"{resp.status_code} without a JSON body")
    else:
        resp.success()


class _CommonShape(LoadTestShape):
    """Shapes scaled by --users (peak), --spawn-rate and --run-time."""

    abstract = True
    use_common_options: ClassVar[bool] = True

    def _options(self) -> tuple[int, float, float]:
        assert self.runner is not None  # noqa: S101 - set by locust before tick()
        opts = self.runner.environment.parsed_options
        users = int(getattr(opts, "num_users", None) or 10)
        rate = float(getattr(opts, "spawn_rate", None) or users)
        run_time = float(getattr(opts, "run_time", None) or 60)
        return users, rate, run_time

    def _elapsed(self) -> float:
        """Seconds since the shape started (locust's own helper is untyped)."""
        return float(self.get_run_time())  # type: ignore[no-untyped-call]


class SteadyShape(_CommonShape):
    """Constant load: --users for --run-time."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        """Hold the peak until the run time is over."""
        users, rate, run_time = self._options()
        return (users, rate) if self._elapsed() < run_time else None


class SpikeShape(_CommonShape):
    """A quarter of the users, a spike to all of them in the middle fifth, then back."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        """Baseline, spike (spawned at 10x the rate), baseline."""
        users, rate, run_time = self._options()
        t = self._elapsed() / run_time
        if t >= 1:
            return None
        base = max(1, users // 4)
        return (users, rate * 10) if 0.4 <= t < 0.6 else (base, rate * 10)


class SoakShape(_CommonShape):
    """Ramp over the first tenth of the run, then hold: for long runs (memory, GC, logs)."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        """Slow ramp, then constant."""
        users, _, run_time = self._options()
        elapsed = self._elapsed()
        if elapsed >= run_time:
            return None
        ramp = max(run_time * 0.1, 1.0)
        return max(1, min(users, round(users * elapsed / ramp))), max(1.0, users / ramp)


SHAPES: dict[str, type[_CommonShape]] = {
    "steady": SteadyShape,
    "spike": SpikeShape,
    "soak": SoakShape,
}
if SHAPE not in SHAPES:
    raise SystemExit(f"SPROXXO_LOAD_SHAPE must be one of {sorted(SHAPES)}, got {SHAPE!r}")

# Locust takes the one non-abstract shape class it finds in this module.
SelectedShape = type("SelectedShape", (SHAPES[SHAPE],), {"abstract": False})
