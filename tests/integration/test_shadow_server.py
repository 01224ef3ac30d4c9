"""Shadow scoring through real `bentoml serve` processes: a challenger scores the same
traffic without changing an answer, both scores land in the prediction log side by side,
/metrics counts the decision pairs, and operators set and clear the shadow over HTTP."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from sproxxo.adapters import bentoml_store as store
from sproxxo.adapters.logfiles import read_log
from sproxxo.features import FEATURE_NAMES
from tests.helpers import ADMIN_TOKEN, make_transaction
from tests.integration.server import Server
from tests.integration.test_server import _metric

pytestmark = pytest.mark.integration

AUTH = {"X-Admin-Token": ADMIN_TOKEN}
REQUESTS = 1_000


def serve(state: Path, **env: str) -> Server:
    return Server.bentoml(
        env={"SPROXXO_STATE_DIR": str(state), "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.2", **env},
        log_path=state / "server.log",
    ).start()


def traffic() -> list[dict[str, Any]]:
    """1,000 transactions over 40 cards (so card history matters), amounts and hours
    spread so that the two models disagree on some."""
    rng = np.random.default_rng(7)
    return [
        make_transaction(
            transaction_id=f"tx-shadow-{i:04d}",
            card_id=f"card_shadow_{i % 40:02d}",
            amount=f"{float(rng.lognormal(4, 1.5)):.2f}",
        )
        for i in range(REQUESTS)
    ]


def answers(srv: Server, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        out = []
        for body in bodies:
            r = http.post("/predict", json=body)
            assert r.status_code == 200, r.text
            out.append({k: v for k, v in r.json().items() if k != "latency_ms"})
        return out


def decision_pairs(metrics: str, version: str) -> dict[tuple[str, str], int]:
    """{(champion, shadow): count} of the shadow version's non-zero pair counters."""
    found = {}
    for line in metrics.splitlines():
        if not line.startswith("sproxxo_shadow_decisions_total{"):
            continue
        labels, value = line[len("sproxxo_shadow_decisions_total{") :].rsplit("} ", 1)
        pairs = dict(part.split("=", 1) for part in labels.split(","))
        named = {k: v.strip('"') for k, v in pairs.items()}
        if named["model_version"] == version and float(value):
            found[named["champion"], named["shadow"]] = int(float(value))
    return found


def logged(state: Path, n: int) -> pd.DataFrame:
    """The prediction log once it holds `n` records (the writer flushes every 0.2 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = list((state / "predictions").rglob("*.jsonl"))
        if files:
            log = read_log(state / "predictions")
            if len(log) >= n:
                return log
        time.sleep(0.2)
    raise AssertionError(f"the prediction log did not reach {n} records")


def test_shadow_changes_no_answer_and_logs_both_scores(
    model_tags: list[str], tmp_path: Path
) -> None:
    """The same 1,000 requests to a service without and one with a configured shadow get
    identical answers; every record of the second carries the shadow's tag, probability
    (the shadow model's own on the logged features) and decision, and /metrics counts the
    decision pairs the log shows."""
    champion, challenger = model_tags
    bodies = traffic()
    plain = serve(tmp_path / "plain")
    try:
        expected = answers(plain, bodies)
    finally:
        plain.stop()
    shadowed = serve(tmp_path / "shadowed", SPROXXO_SHADOW_MODEL_TAG=challenger)
    try:
        assert httpx.get(f"{shadowed.url}/models/shadow").json()["shadow"] == challenger
        got = answers(shadowed, bodies)
        log = logged(tmp_path / "shadowed", REQUESTS)
        metrics = httpx.get(f"{shadowed.url}/metrics").text
    finally:
        shadowed.stop()
    assert got == expected
    assert {a["model_tag"] for a in got} == {champion}
    assert (log["shadow_model_tag"] == challenger).all()
    features = log[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    own = store.load_model(challenger).predict_matrix(features)
    assert np.allclose(log["shadow_fraud_probability"].to_numpy(), own, rtol=0, atol=1e-12)
    assert not np.allclose(log["shadow_fraud_probability"], log["fraud_probability"])
    pairs = collections.Counter(zip(log["decision"], log["shadow_decision"], strict=True))
    assert decision_pairs(metrics, challenger.split(":")[1]) == pairs
    assert _metric(metrics, "sproxxo_shadow_decisions_total") == REQUESTS
    assert _metric(metrics, "sproxxo_shadow_dropped_total") == 0


def test_operators_set_and_clear_the_shadow(model_tags: list[str], tmp_path: Path) -> None:
    """Admin token required; the champion and absent versions are refused; a set shadow
    shows in /health and the log, and is protected from deletion; cleared, records carry
    no shadow score; the choice survives a restart."""
    champion, challenger = (tag.split(":")[1] for tag in model_tags)
    state = tmp_path / "ops"
    srv = serve(state)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert http.post(f"/models/{challenger}/shadow").status_code == 401
            assert http.post(f"/models/{champion}/shadow", headers=AUTH).status_code == 409
            assert http.post("/models/nonexistent/shadow", headers=AUTH).status_code == 404
            r = http.post(f"/models/{challenger}/shadow", headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json() == {"shadow": model_tags[1], "previous": None}
            assert http.get("/health").json()["shadow"]["model"] == model_tags[1]
            assert http.delete(f"/models/{challenger}", headers=AUTH).status_code == 409
            assert http.post("/predict", json=make_transaction(transaction_id="s-on")).is_success
            assert http.delete("/models/shadow").status_code == 401
            cleared = http.delete("/models/shadow", headers=AUTH)
            assert cleared.json() == {"shadow": None, "previous": model_tags[1]}
            assert http.post("/predict", json=make_transaction(transaction_id="s-off")).is_success
        log = logged(state, 2).set_index("transaction_id")
    finally:
        srv.stop()
    assert log.loc["s-on", "shadow_model_tag"] == model_tags[1]
    assert log.loc["s-on", "shadow_decision"] in {"approve", "review", "decline"}
    assert pd.isna(log.loc["s-off"].get("shadow_model_tag"))
    again = serve(state, SPROXXO_SHADOW_MODEL_TAG=model_tags[1])
    try:
        assert httpx.get(f"{again.url}/models/shadow").json()["shadow"] is None
    finally:
        again.stop()


def test_a_configured_shadow_that_cannot_load_is_refused_not_fatal(
    model_tags: list[str], tmp_path: Path
) -> None:
    """A shadow tag missing from the store: the service starts, answers, says why."""
    srv = serve(tmp_path / "missing", SPROXXO_SHADOW_MODEL_TAG="sproxxo-fraud:nosuchversion")
    try:
        health = httpx.get(f"{srv.url}/health", timeout=10).json()
        answer = httpx.post(f"{srv.url}/predict", json=make_transaction(), timeout=10)
    finally:
        srv.stop()
    assert health["status"] == "ready"
    assert health["shadow"]["model"] is None
    assert "nosuchversion" in health["shadow"]["refusal"]
    assert answer.status_code == 200
