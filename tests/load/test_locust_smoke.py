"""Load scenario: payloads are valid/invalid as labelled, and a short headless locust run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from load.payloads import PayloadPool, invalid_cases, valid_bodies
from sproxxo.schemas import Transaction
from tests.integration.server import Server

ROOT = Path(__file__).resolve().parents[2]


def test_payloads_valid_bodies_validate() -> None:
    """Generator rows become bodies that the /predict schema accepts."""
    bodies = valid_bodies(300, seed=3)
    parsed = [Transaction.model_validate_json(json.dumps(b)) for b in bodies]
    assert len({t.card_id for t in parsed}) > 10
    assert all(str(t.amount) == b["amount"] for t, b in zip(parsed, bodies, strict=True))


def test_payloads_invalid_cases_are_refused() -> None:
    """Every invalid variant fails schema validation and expects a 4xx."""
    cases = invalid_cases(valid_bodies(1)[0])
    assert len(cases) >= 10
    for case in cases:
        assert 400 <= case.expected_status < 500
        with pytest.raises(ValidationError):
            Transaction.model_validate_json(json.dumps(case.body))


def test_payloads_pool_ids_are_unique() -> None:
    """The pool hands out unique transaction ids and batches of the asked size."""
    pool = PayloadPool(size=50)
    ids = [pool.next_valid()["transaction_id"] for _ in range(120)]
    assert len(set(ids)) == 120
    assert len(pool.batch(17)) == 17


def test_sample_transaction_is_a_valid_body() -> None:
    """load/sample_transaction.json (CI's release smoke) has the /predict shape."""
    text = (ROOT / "load" / "sample_transaction.json").read_text(encoding="utf-8")
    assert Transaction.model_validate_json(text).currency == "USD"


@pytest.fixture(scope="module")
def load_server(
    model_tags: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real service over the session's models, with its own state folder."""
    state = tmp_path_factory.mktemp("load-state")
    srv = Server.bentoml(env={"SPROXXO_STATE_DIR": str(state)}, log_path=state / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.integration
def test_locust_smoke_run_meets_slo(load_server: Server, tmp_path: Path) -> None:
    """A short headless run writes CSV/HTML, sends >100 requests, none fails unexpectedly."""
    out = tmp_path / "reports"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "load.run",
            "--host",
            load_server.url,
            "--users",
            "10",
            "--spawn-rate",
            "10",
            "--run-time",
            "8s",
            "--slo-p99-ms",
            "2000",
            "--max-failure-rate",
            "0",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    log = (out / "locust.log").read_text(errors="replace")[-3000:] if out.exists() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    assert (out / "locust_stats.csv").is_file()
    assert (out / "report.html").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] > 100
    assert summary["failures"] == 0
