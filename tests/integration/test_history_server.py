"""Card history through real `bentoml serve` processes: two instances sharing one Redis
see the same card, and a store that refuses or never answers never fails a request (the
answer says `history: "unavailable"`, the metric counts it, the log says so)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import make_transaction
from tests.integration.server import Server, events_in
from tests.integration.test_server import _metric

pytestmark = pytest.mark.integration


def tx(card_id: str, minutes_ago: float) -> dict[str, Any]:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return make_transaction(
        transaction_id=f"tx-{uuid.uuid4().hex[:16]}", card_id=card_id, timestamp=when.isoformat()
    )


def serve(state: Path, history_url: str, **env: str) -> Server:
    return Server.bentoml(
        env={
            "SPROXXO_STATE_DIR": str(state),
            "SPROXXO_HISTORY_URL": history_url,
            "SPROXXO_LOG_LEVEL": "INFO",
            **env,
        },
        log_path=state / "server.log",
    ).start()


def test_two_instances_share_one_card_history(
    model_tags: list[str], redis_url: str, tmp_path: Path
) -> None:
    """A card's transactions go to instance A then B (as Cloud Run's balancer may send
    them): B counts A's, and A counts B's."""
    a = serve(tmp_path / "a", redis_url)
    b = serve(tmp_path / "b", redis_url)
    card = f"card_{uuid.uuid4().hex[:12]}"
    try:
        with httpx.Client(timeout=10) as http:
            first = http.post(f"{a.url}/predict", json=tx(card, 30)).json()
            second = http.post(f"{b.url}/predict", json=tx(card, 20)).json()
            third = http.post(f"{a.url}/predict", json=tx(card, 10)).json()
    finally:
        a.stop()
        b.stop()
    assert first["history"]["tx_1h"] == 0
    assert second["history"]["tx_1h"] == 1
    assert second["history"]["seconds_since_last"] == pytest.approx(600, abs=1)
    assert third["history"]["tx_1h"] == 2


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung store)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("failure", ["refused", "hung"])
def test_store_failure_scores_without_history(
    model_tags: list[str], tmp_path: Path, failure: str, request: pytest.FixtureRequest
) -> None:
    """The store refuses the connection, or accepts it and never answers (slow by
    construction: the call can only end by its budget). Every answer is a 200 scored
    without history, marked `unavailable`; the metric counts each transaction; the log
    carries one `history_unavailable` event."""
    if failure == "refused":
        from load.procs import free_port

        url = f"redis://127.0.0.1:{free_port()}/0"
    else:
        url = f"redis://127.0.0.1:{request.getfixturevalue('silent_port')}/0"
    srv = serve(tmp_path, url, SPROXXO_HISTORY_TIMEOUT_SECONDS="0.2")
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            one = http.post("/predict", json=tx("card_unavailable_1", 5))
            batch = http.post(
                "/predict/batch", json={"transactions": [tx("card_unavailable_2", 5)] * 3}
            )
            metrics = http.get("/metrics").text
    finally:
        srv.stop()
    assert one.status_code == 200, one.text
    assert one.json()["history"] == "unavailable"
    assert batch.status_code == 200, batch.text
    assert [r["history"] for r in batch.json()["results"]] == ["unavailable"] * 3
    assert _metric(metrics, "sproxxo_history_unavailable_total") == 4
    logged = [e for e in events_in(srv.tail(200_000)) if e.get("event") == "history_unavailable"]
    assert logged
    assert logged[0]["error"] in {"ConnectionError", "TimeoutError"}
