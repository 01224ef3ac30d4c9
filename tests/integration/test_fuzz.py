"""Fuzz the running service from its own OpenAPI document with schemathesis (all checks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, make_transaction
from tests.integration.server import Server

pytestmark = pytest.mark.integration


def test_schemathesis_all_checks_pass(
    model_tags: list[str], tmp_path: Path, session_state: Path
) -> None:
    """Zero 5xx, every response documented and schema-valid, valid data accepted."""
    home = tmp_path / "bentoml"  # the fuzzer may activate and delete models: use a copy
    shutil.copytree(session_state / "bentoml" / "models", home / "models")
    srv = Server.bentoml(
        env={"BENTOML_HOME": str(home), "SPROXXO_STATE_DIR": str(tmp_path / "state")},
        log_path=tmp_path / "server.log",
    ).start()
    try:
        out = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{srv.url}/docs.json",
                "--checks",
                "all",
                "--seed",
                "20261129",
                "--max-examples",
                "25",
                "--header",
                f"X-Admin-Token: {ADMIN_TOKEN}",
                "--no-color",
                # The timestamp's date-time format plus its 20xx pattern makes hypothesis
                # discard many drafts; that is generator efficiency, not an API defect.
                "--suppress-health-check",
                "filter_too_much",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,  # its example cache (.schemathesis/) stays out of the checkout
        )
        still_up = httpx.post(f"{srv.url}/predict", json=make_transaction(), timeout=5)
    finally:
        srv.stop()
    report = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "No issues found" in out.stdout, report
    assert still_up.status_code == 200
    assert "Traceback" not in srv.tail(200_000), srv.tail()
