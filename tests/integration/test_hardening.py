"""Holes found by trying the running service as an attacker would, each closed and proven
through a real `bentoml serve` (issue: hardening)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sproxxo.adapters.logfiles import read_log
from tests.helpers import ADMIN_TOKEN, make_transaction
from tests.integration.server import Server, events_in

pytestmark = pytest.mark.integration
MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loud(model_tags: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server logging at INFO, with its own state and log file."""
    state = tmp_path_factory.mktemp("loud")
    srv = Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(state),
            "SPROXXO_LOG_LEVEL": "INFO",
            "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.2",
        },
        log_path=state / "server.log",
    ).start()
    yield srv
    srv.stop()


def _fill(prefix: bytes, unit: bytes, suffix: bytes, size: int = MIB) -> bytes:
    count = (size - len(prefix) - len(suffix)) // len(unit)
    return prefix + unit * count + suffix


def _worst_bodies() -> dict[str, tuple[bytes, str]]:
    keys = b",".join(b'"k%06d":1' % i for i in range((MIB - 32) // 12))
    return {
        # the quadratic duplicate scan's worst case: a huge object with its duplicate last
        "1 MiB of keys, duplicate last": (b"{" + keys + b',"k000000":2}', "json"),
        "1 MiB of small objects with duplicates": (
            _fill(b"[", b'{"a":1,"b":2,"c":3,"a":4},', b'{"z":0}]'),
            "json",
        ),
        "1 MiB of empty objects": (_fill(b"[", b"{},", b"{}]"), "json"),
        "1 MiB nesting": (_fill(b"", b"[", b""), "json"),
        "1 MiB of escaped strings": (
            _fill(b'{"a":"', b"\\u0041", b'","a":1}'),
            "json",
        ),
        "1 MiB invalid at the end": (
            orjson.dumps({"transactions": [make_transaction() for _ in range(3200)]})[: MIB - 1]
            + b"?",
            "json",
        ),
    }


@pytest.mark.parametrize("name", list(_worst_bodies()))
def test_worst_case_bodies_are_refused_within_the_request_budget(loud: Server, name: str) -> None:
    """Up to the 1 MiB limit, no body stalls a worker: each worst case gets its 400 (not the
    504 a slow guard would earn within the 2 s budget), and the server keeps answering."""
    body, _ = _worst_bodies()[name]
    assert len(body) <= MIB
    with httpx.Client(base_url=loud.url, timeout=30) as http:
        r = http.post("/predict_batch", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (name, r.status_code, r.text[:300])
        assert r.json()["detail"][0]["rule"] in {
            "duplicate_key",
            "too_many_keys",
            "too_many_values",
            "json_too_deep",
            "json_invalid",
        }
        assert http.get("/livez").status_code == 200
        assert http.post("/predict", json=make_transaction()).status_code == 200


@pytest.mark.parametrize("depth", [20, 254, 255, 300, 1000, 1023, 1024, 1100, 5000])
@pytest.mark.parametrize("shape", ["list", "object"])
def test_every_nesting_depth_answers_400_json_too_deep(
    loud: Server, depth: int, shape: str
) -> None:
    """`[` x N or `{"a":` x N: 400 json_too_deep at every depth, never a 500."""
    body = (
        b"[" * depth + b"]" * depth if shape == "list" else b'{"a":' * depth + b"1" + b"}" * depth
    )
    r = httpx.post(
        f"{loud.url}/predict", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text[:300]
    assert r.json()["detail"][0]["rule"] == "json_too_deep"


def test_error_answers_are_capped_per_transaction(loud: Server) -> None:
    """Unknown keys by the thousand never amplify into megabytes of errors: /predict lists
    at most 5 errors plus a count; each batch item too."""
    wide = {**make_transaction(), **{f"x{i}": 1 for i in range(40)}}  # 55 of 64 keys
    with httpx.Client(base_url=loud.url, timeout=30) as http:
        one = http.post("/predict", json=wide)
        batch = http.post("/predict_batch", json={"transactions": [wide] * 1000})
        huge = http.post("/predict", json={f"x{i}": 1 for i in range(60_000)})
    assert one.status_code == 400
    assert len(one.json()["detail"]) == 5
    assert one.json()["more_errors"] == 35
    assert len(one.content) < 4096
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert all(len(item["errors"]) == 5 and item["more_errors"] == 35 for item in results)
    assert len(batch.content) < 1000 * 2048
    assert huge.status_code == 400
    assert huge.json()["detail"][0]["rule"] == "too_many_keys"
    assert len(huge.content) < 1024


def test_served_process_logs_its_events_as_json_lines(loud: Server) -> None:
    """The README's kind of call with a stale timestamp logs `invalid_transaction`; loading
    and activating models log `model_loaded`/`model_activated` (INFO, JSON, stdout)."""
    stale = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    with httpx.Client(base_url=loud.url, timeout=30) as http:
        r = http.post("/predict", json=make_transaction(transaction_id="tx-stale", timestamp=stale))
        assert r.json()["valid"] is False
        version = http.get("/health").json()["model"].split(":")[1]
        auth = {"X-Admin-Token": ADMIN_TOKEN}
        assert http.post(f"/models/{version}/activate", headers=auth).status_code == 200
    lines = _wait_for_events(loud, {"invalid_transaction", "model_activated"})
    invalid = next(e for e in lines if e["event"] == "invalid_transaction")
    assert invalid["transaction_id"] == "tx-stale"
    assert invalid["rules"] == ["timestamp_stale"]
    assert invalid["level"] == "INFO"
    assert "card_id" not in invalid
    assert {e["event"] for e in lines} >= {"model_loaded", "model_activated"}


def test_a_flood_of_invalid_transactions_is_rate_limited_and_counted(loud: Server) -> None:
    """1,000 rule-breaking items in one batch log a bounded number of events; the rest are
    counted in sproxxo_log_events_suppressed_total and reported once."""
    stale = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    batch = [make_transaction(transaction_id=f"tx-flood-{i}", timestamp=stale) for i in range(1000)]
    with httpx.Client(base_url=loud.url, timeout=30) as http:
        assert http.post("/predict_batch", json={"transactions": batch}).status_code == 200
        metrics = http.get("/metrics").text
        # one more notable transaction, a second later by the bucket's refill: the report
        http.post("/predict", json=make_transaction(transaction_id="tx-after", timestamp=stale))
    flood = [e for e in events_in(loud.tail(10_000_000)) if "tx-flood" in str(e)]
    assert 0 < len(flood) <= 100
    suppressed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('sproxxo_log_events_suppressed_total{event="invalid_transaction"}')
    )
    assert suppressed == 1000 - len(flood)


def test_gateway_route_predict_slash_batch(loud: Server) -> None:
    """POST /predict/batch (the gateway contract) answers like /predict_batch."""
    body = {"transactions": [make_transaction(transaction_id=f"tx-gw-{i}") for i in range(3)]}
    with httpx.Client(base_url=loud.url, timeout=30) as http:
        gateway = http.post("/predict/batch", json=body)
        bento = http.post("/predict_batch", json=body)
    assert gateway.status_code == bento.status_code == 200
    assert gateway.json()["scored"] == 3
    strip = ("latency_ms",)
    assert {k: v for k, v in gateway.json().items() if k not in strip} == {
        k: v for k, v in bento.json().items() if k not in strip
    }


@pytest.mark.parametrize(
    "card_id", ["card_4111-1111-1111-1111", "card_4111_1111_1111_1111", "4111111111111111"]
)
def test_card_numbers_with_separators_are_refused(loud: Server, card_id: str) -> None:
    """A card_id holding a card number, with or without separators, is a 400 (no_pan)."""
    r = httpx.post(f"{loud.url}/predict", json=make_transaction(card_id=card_id), timeout=10)
    assert r.status_code == 400
    assert "no_pan" in r.text
    assert card_id not in r.text  # the refused value is never echoed


def _wait_for_events(srv: Server, wanted: set[str]) -> list[dict[str, Any]]:
    """The server's events once every wanted one was written (its stdout is a file the
    worker flushes per line; bounded wait, no fixed sleep)."""
    for _ in range(100):
        lines = events_in(srv.tail(10_000_000))
        if wanted <= {e["event"] for e in lines}:
            return lines
        httpx.get(f"{srv.url}/livez", timeout=5)  # a round trip, not a sleep
    return events_in(srv.tail(10_000_000))


def test_startup_never_falls_back_to_an_unapproved_model(
    model_tags: list[str], tmp_path: Path, session_state: Path
) -> None:
    """With the champion damaged, start-up does not serve the other (verified, never
    promoted) model of the store: not ready (503) and the reasons are in /health."""
    home = tmp_path / "bentoml"
    shutil.copytree(session_state / "bentoml" / "models", home / "models")
    champion = model_tags[0]
    pkl = home / "models" / "sproxxo-fraud" / champion.split(":")[1] / "pipeline.pkl"
    pkl.write_bytes(pkl.read_bytes()[:1000])
    srv = Server.bentoml(
        env={"BENTOML_HOME": str(home), "SPROXXO_STATE_DIR": str(tmp_path / "state")},
        log_path=tmp_path / "server.log",
    ).start(probe="/livez")
    try:
        ready = httpx.get(f"{srv.url}/readyz", timeout=5).status_code
        health = httpx.get(f"{srv.url}/health", timeout=5).json()
        predict = httpx.post(f"{srv.url}/predict", json=make_transaction(), timeout=5)
    finally:
        srv.stop()
    assert ready == 503
    assert health["model"] is None
    assert health["status"] == "not_ready"
    assert [r["tag"] for r in health["refusals"]] == [champion]
    assert "sha256" in health["refusals"][0]["reason"]
    assert predict.status_code == 503


def test_answer_over_budget_is_recorded_as_504(model_tags: list[str], tmp_path: Path) -> None:
    """A request scored but answered 504 (the budget ran out before the answer) leaves its
    records, marked http_status 504; answered ones are marked 200."""
    srv = Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(tmp_path),
            "SPROXXO_REQUEST_TIMEOUT_SECONDS": "0.5",
            "SPROXXO_FAULT_ANSWER_DELAY_SECONDS": "1.0",
            "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.1",
        },
        log_path=tmp_path / "server.log",
    ).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            single = http.post("/predict", json=make_transaction(transaction_id="tx-late-1"))
            body = {
                "transactions": [make_transaction(transaction_id=f"tx-late-b{i}") for i in range(3)]
            }
            batch = http.post("/predict_batch", json=body)
    finally:
        code = srv.terminate()
    assert (single.status_code, batch.status_code, code) == (504, 504, 0)
    log = read_log(tmp_path / "predictions")
    marked = dict(zip(log["transaction_id"], log["http_status"], strict=True))
    assert marked == {"tx-late-1": 504, "tx-late-b0": 504, "tx-late-b1": 504, "tx-late-b2": 504}


def test_failing_sink_records_reach_the_dead_letter_and_replay(
    model_tags: list[str], tmp_path: Path
) -> None:
    """An unwritable prediction-log folder: every answered request's record lands in the
    dead letter (counted), and the replay command moves them into the log once it works."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log folder should be")
    state = tmp_path / "state"
    srv = Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(state),
            "SPROXXO_PREDLOG_DIR": str(blocker / "predictions"),
            "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.1",
            "SPROXXO_PREDLOG_RETRY_SECONDS": "[0.05]",
        },
        log_path=tmp_path / "server.log",
    ).start()
    ids = [f"tx-dead-{i}" for i in range(30)]
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            codes = [
                http.post("/predict", json=make_transaction(transaction_id=i)).status_code
                for i in ids
            ]
    finally:
        assert srv.terminate() == 0
    assert codes == [200] * 30
    dead = read_log(state / "predlog-dead-letter")
    assert sorted(dead["transaction_id"]) == sorted(ids)
    target = tmp_path / "predictions"
    out = subprocess.run(
        [sys.executable, "-m", "monitoring.predlog", "replay"],
        cwd=ROOT,
        env={
            **os.environ,
            "SPROXXO_STATE_DIR": str(state),
            "SPROXXO_PREDLOG_DIR": str(target),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "30 records" in out.stdout
    assert sorted(read_log(target)["transaction_id"]) == sorted(ids)
    assert list((state / "predlog-dead-letter").rglob("*.jsonl")) == []
