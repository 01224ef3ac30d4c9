"""`python -m load.run` as the release canary runs it: every request is marked synthetic and
carries the ID token named by --id-token-env. Locust runs in its own process (it
monkey-patches with gevent) against a local server that records what it receives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from load.run import parse_args
from sproxxo.serving.guard import SYNTHETIC_HEADER
from tests.config.http_recorder import Recorder

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "header.payload.signature-of-a-test-id-token"


def run_load(
    host: str, out: Path, *extra: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A short headless `python -m load.run` against `host`, tokens only from `env`."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"LOAD_ID_TOKEN", "SPROXXO_LOAD_BEARER_TOKEN", "CANARY_ID_TOKEN"}
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "load.run",
            "--host",
            host,
            "--users",
            "2",
            "--spawn-rate",
            "2",
            "--run-time",
            "2s",
            "--slo-p99-ms",
            "5000",
            "--max-failure-rate",
            "1",
            "--out",
            str(out),
            *extra,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, **env},
    )


def test_load_run_marks_requests_synthetic_and_sends_the_id_token(
    recording_server: Recorder, tmp_path: Path
) -> None:
    """Every request of a load run carries `X-Sproxxo-Synthetic: 1` and the bearer token
    read from the variable --id-token-env names; the token shows in no output."""
    done = run_load(
        recording_server.url,
        tmp_path,
        "--id-token-env",
        "CANARY_ID_TOKEN",
        env={"CANARY_ID_TOKEN": TOKEN},
    )
    log = (tmp_path / "locust.log").read_text(errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr + log[-3000:]
    seen = recording_server.seen
    assert len(seen) >= 5, log[-3000:]
    assert {s.path for s in seen} <= {"/predict", "/predict_batch", "/models"}
    assert {s.headers.get(SYNTHETIC_HEADER.decode()) for s in seen} == {"1"}
    assert {s.headers.get("authorization") for s in seen} == {f"Bearer {TOKEN}"}
    assert TOKEN not in done.stdout + done.stderr + log


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ((), {"LOAD_ID_TOKEN": TOKEN}, TOKEN),
        ((), {"SPROXXO_LOAD_BEARER_TOKEN": TOKEN}, TOKEN),
        (("--id-token-env", "CANARY_ID_TOKEN"), {"CANARY_ID_TOKEN": TOKEN}, TOKEN),
        (("--bearer-token", "by-hand"), {"LOAD_ID_TOKEN": TOKEN}, "by-hand"),
        ((), {}, ""),
    ],
    ids=["load-id-token", "legacy-variable", "named-variable", "option", "none"],
)
def test_load_run_resolves_the_bearer_token(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    """An explicit --bearer-token wins, then the variable --id-token-env names, then
    LOAD_ID_TOKEN or SPROXXO_LOAD_BEARER_TOKEN; without any, no token is sent."""
    for name in ("LOAD_ID_TOKEN", "SPROXXO_LOAD_BEARER_TOKEN", "CANARY_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert parse_args(list(argv)).bearer_token == expected


def test_load_run_refuses_a_named_token_variable_that_is_unset(tmp_path: Path) -> None:
    """--id-token-env naming an unset variable stops before any traffic (exit 2): a check
    without its token would only measure 401s."""
    done = run_load("http://127.0.0.1:9", tmp_path, "--id-token-env", "CANARY_ID_TOKEN", env={})
    assert done.returncode == 2
    assert "CANARY_ID_TOKEN" in done.stderr
    assert not (tmp_path / "locust.log").exists()
