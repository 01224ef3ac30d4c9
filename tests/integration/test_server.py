"""The service as the gateway sees it: a real `bentoml serve` over HTTP."""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from sproxxo.adapters.logfiles import read_log
from tests.helpers import ADMIN_TOKEN, make_transaction
from tests.integration.server import Server

pytestmark = pytest.mark.integration


def _metric(text: str, name: str) -> float:
    """Sum of every sample of a metric in a /metrics page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            rest = line[len(name) :]
            if rest[:1] in {" ", "{"}:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_server_predicts_and_batches(server: Server) -> None:
    """/predict and /predict_batch answer over HTTP with the active model's tag."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        one = http.post("/predict", json=make_transaction())
        assert one.status_code == 200, one.text
        batch = http.post(
            "/predict_batch",
            json={
                "transactions": [make_transaction(transaction_id=f"tx-i-{i}") for i in range(20)]
            },
        )
        assert batch.status_code == 200
        assert batch.json()["scored"] == 20
        assert {r["model_tag"] for r in batch.json()["results"]} == {one.json()["model_tag"]}


def test_server_concurrent_requests_are_micro_batched(server: Server) -> None:
    """Concurrent single requests are scored together: batches < requests (metric)."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        before = http.get("/metrics").text
        b_count, b_sum = (
            _metric(before, "sproxxo_batch_size_count"),
            _metric(before, "sproxxo_batch_size_sum"),
        )

        def call(i: int) -> int:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                return c.post(
                    "/predict", json=make_transaction(transaction_id=f"tx-c-{i}")
                ).status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            codes = list(pool.map(call, range(400)))
        assert codes == [200] * 400
        after = http.get("/metrics").text
        calls = _metric(after, "sproxxo_batch_size_count") - b_count
        rows = _metric(after, "sproxxo_batch_size_sum") - b_sum
    assert rows == 400
    assert calls < rows, f"{calls} model calls for {rows} requests: nothing was batched"


@pytest.mark.parametrize(
    ("raw", "ctype", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"amount": 1}', "text/plain", 415),
        (b"x" * 2_000_000, "application/json", 413),
        (b'{"lat": NaN}', "application/json", 400),
        ('{"transaction_id": "é\\u0000<script>"}'.encode(), "application/json", 400),
        (b'{"transaction_id": "1; DROP TABLE tx"}', "application/json", 400),
        (b"--b\r\nContent-Disposition: form-data\r\n", "multipart/form-data", 415),
    ],
)
def test_server_bad_input_is_4xx_and_service_keeps_serving(
    server: Server, raw: bytes, ctype: str, status: int
) -> None:
    """Bad bodies get a 4xx naming the field/rule; the next request still succeeds."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.post("/predict", content=raw, headers={"content-type": ctype})
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert detail
        assert all(("loc" in d) or ("field" in d) for d in detail)
        assert http.post("/predict", json=make_transaction()).status_code == 200


def test_server_admin_token_and_delete_rules(server: Server, model_tags: list[str]) -> None:
    """Activate/delete need the token; the active model cannot be deleted."""
    version = model_tags[0].split(":")[1]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post(f"/models/{version}/activate").status_code == 401
        bad = {"X-Admin-Token": "wrong"}
        assert http.post(f"/models/{version}/activate", headers=bad).status_code == 403
        good = {"X-Admin-Token": ADMIN_TOKEN}
        assert http.post(f"/models/{version}/activate", headers=good).status_code == 200
        assert http.delete(f"/models/{version}", headers=good).status_code == 409


def test_server_hot_swap_under_load_has_no_failures(server: Server, model_tags: list[str]) -> None:
    """Swapping models while requests fly: zero failures, each answer names one version."""
    auth = {"X-Admin-Token": ADMIN_TOKEN}
    stop = threading.Event()
    seen: Counter[str] = Counter()
    failures: list[str] = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/predict", json=make_transaction())
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    seen[r.json()["model_tag"]] += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for tag in (model_tags[1], model_tags[0], model_tags[1]):
            r = http.post(f"/models/{tag.split(':')[1]}/activate", headers=auth)
            assert r.status_code == 200, r.text
            while seen[tag] < 20 and not failures:
                threading.Event().wait(0.05)
        metrics = http.get("/metrics").text
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert set(seen) == set(model_tags)
    assert _metric(metrics, 'sproxxo_model_events_total{event="swap"}') >= 3


def test_server_prediction_log_complete_after_sigterm(
    model_tags: list[str], tmp_path: Path
) -> None:
    """Every accepted prediction is in the log after a clean stop (SIGTERM, exit 0)."""
    srv = Server.bentoml(env={"SPROXXO_STATE_DIR": str(tmp_path)}, log_path=tmp_path / "server.log")
    srv.start()
    ids = []
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for i in range(60):
                tx = make_transaction(transaction_id=f"tx-log-{i}")
                assert http.post("/predict", json=tx).status_code == 200
                ids.append(tx["transaction_id"])
            r = http.post(
                "/predict_batch",
                json={
                    "transactions": [
                        make_transaction(transaction_id=f"tx-logb-{i}") for i in range(40)
                    ]
                },
            )
            ids += [f"tx-logb-{i}" for i in range(40)]
            assert r.status_code == 200
    finally:
        code = srv.terminate()
    assert code == 0, srv.tail()
    log = read_log(tmp_path / "predictions")
    assert sorted(log["transaction_id"]) == sorted(ids)
    text = "\n".join(p.read_text() for p in (tmp_path / "predictions").rglob("*.jsonl"))
    assert "card_ab12cd34ef" not in text
    assert not re.search(r"(?<![\w.])\d{13,19}(?![\w.])", text)  # no PAN-like run


def test_server_exports_every_metric_alerts_and_dashboards_use(
    server: Server, model_tags: list[str]
) -> None:
    """Each metric referenced by alerts.yml, Grafana and GCP exists on the real /metrics."""
    from monitoring.metrics_catalog import (
        drift_metrics,
        log_based_metrics,
        recorded_metrics,
        referenced_metrics,
    )

    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/predict", json=make_transaction()).status_code == 200
        scored = http.post("/score", json={"transactions": [make_transaction()]})
        assert scored.status_code == 200
        text = http.get("/metrics").text
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    prometheus_own = {"up", "ALERTS", "ALERTS_FOR_STATE"}  # made by Prometheus, not scraped
    prometheus_own |= recorded_metrics()
    # Labelled by the shadow's version: exists once a shadow scores (test_shadow_server.py).
    shadow_only = {"sproxxo_shadow_decisions_total"}
    wanted = referenced_metrics() - drift_metrics() - log_based_metrics() - prometheus_own
    wanted -= shadow_only
    assert wanted, "no metric referenced at all?"
    missing = sorted(m for m in wanted if m not in exported)
    assert missing == [], f"referenced but not exported: {missing}"


def test_server_runs_the_tracing_middleware_only_when_asked(server: Server, tmp_path: Path) -> None:
    """BentoML's OpenTelemetry middleware names each request (X-BentoML-Request-ID, the
    span's id). By default every URL is excluded from it, so no span and no header;
    SPROXXO_TRACE_REQUESTS=true brings both back, with the same answer."""
    body = make_transaction(card_id="card_trace01ab", transaction_id="tx-trace-000001")
    untraced = httpx.post(f"{server.url}/predict", json=body, timeout=10)
    assert untraced.status_code == 200, untraced.text
    assert "x-bentoml-request-id" not in untraced.headers
    traced_server = Server.bentoml(
        env={"SPROXXO_STATE_DIR": str(tmp_path), "SPROXXO_TRACE_REQUESTS": "true"},
        log_path=tmp_path / "server.log",
    )
    traced_server.start()
    try:
        traced = httpx.post(f"{traced_server.url}/predict", json=body, timeout=10)
    finally:
        traced_server.stop()
    assert traced.status_code == 200, traced.text
    assert re.fullmatch(r"[0-9a-f]{16}", traced.headers["x-bentoml-request-id"])
    assert traced.json()["decision"] == untraced.json()["decision"]


def _answers_on_one_socket(port: int, body: bytes, *, requests: int) -> list[bytes]:
    """The head of each answer to `requests` POSTs /predict sent one after the other on
    one keep-alive socket; stops early when the server closes the socket."""
    heads = []
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pending = b""
        for _ in range(requests):
            sock.sendall(request)
            while b"\r\n\r\n" not in pending:
                chunk = sock.recv(65536)
                if not chunk:
                    return heads
                pending += chunk
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            while len(pending) < length:
                pending += sock.recv(65536)
            pending = pending[length:]
            heads.append(head.lower())
            if b"connection: close" in heads[-1]:
                assert sock.recv(1) == b""  # the server closed its end after the answer
                return heads
    return heads


def test_server_recycles_connections_past_their_age_only_with_several_workers(
    server: Server, tmp_path: Path
) -> None:
    """One worker keeps a keep-alive connection open; two workers whose connection age is
    a microsecond answer `Connection: close` and close the socket after the answer."""
    body = orjson.dumps(make_transaction(card_id="card_conn01ab", transaction_id="tx-conn-1"))
    kept = _answers_on_one_socket(server.port, body, requests=3)
    assert [h.split(b" ", 2)[1] for h in kept] == [b"200"] * 3
    assert not any(b"connection: close" in h for h in kept)
    two = Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(tmp_path),
            "SPROXXO_WORKERS": "2",
            "SPROXXO_CONNECTION_MAX_AGE_SECONDS": "0.000001",
        },
        log_path=tmp_path / "server.log",
    )
    two.start()
    try:
        closed = _answers_on_one_socket(two.port, body, requests=3)
    finally:
        two.stop()
    assert len(closed) == 1
    assert closed[0].startswith(b"http/1.1 200")
    assert b"connection: close" in closed[0]
