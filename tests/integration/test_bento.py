"""The Bento as it ships: built into the session store, inspected, then served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import make_transaction
from tests.integration.server import ROOT, Server

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "deploy"))
import build_bento  # noqa: E402


@pytest.fixture(scope="module")
def bento_tag(model_tags: list[str]) -> str:
    """`make bento`'s script, pinned to the session champion."""
    out = subprocess.run(
        [sys.executable, "deploy/build_bento.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SPROXXO_MODEL_TAG": model_tags[0]},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def _bento_dir(tag: str) -> Path:
    name, version = tag.split(":")
    return Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version


def test_bento_version_names_model_and_commit(bento_tag: str, model_tags: list[str]) -> None:
    """The Bento version is <model version>-<git sha> and its labels say so."""
    model_version = model_tags[0].split(":")[1]
    assert bento_tag.split(":")[1].startswith(f"{model_version}-")
    info = yaml.safe_load((_bento_dir(bento_tag) / "bento.yaml").read_text())
    assert info["labels"]["model_version"] == model_version
    assert info["labels"]["schema_version"] == "1"
    assert info["labels"]["git_sha"] in bento_tag


def test_bento_contains_exactly_the_shipped_model(bento_tag: str, model_tags: list[str]) -> None:
    """The pinned model (and only it) is the one the Bento's service declares."""
    info = yaml.safe_load((_bento_dir(bento_tag) / "bento.yaml").read_text())
    declared = [m["tag"] for svc in info["services"] for m in svc["models"]]
    assert declared == [model_tags[0]]


def test_bento_requirements_match_the_lock(bento_tag: str) -> None:
    """Every pinned requirement inside the Bento equals the uv.lock version."""
    req = next(_bento_dir(bento_tag).rglob("requirements.txt")).read_text()
    pins = build_bento.exported_pins(req)
    assert {"bentoml", "scikit-learn", "numpy", "pandas", "pydantic"} <= set(pins)
    assert build_bento.disagreements(pins, build_bento.locked_versions(ROOT / "uv.lock")) == []


def test_requirements_check_catches_drift() -> None:
    """A requirement that differs from the lock is reported."""
    locked = build_bento.locked_versions(ROOT / "uv.lock")
    assert build_bento.disagreements({"numpy": "0.0.1"}, locked) == [
        f"numpy: requirements 0.0.1 vs uv.lock {locked['numpy']}"
    ]


def test_built_bento_serves_a_prediction(bento_tag: str, tmp_path: Path) -> None:
    """`bentoml serve <bento tag>` answers /predict with the shipped model."""
    srv = Server.bentoml(
        bento_tag, env={"SPROXXO_STATE_DIR": str(tmp_path)}, log_path=tmp_path / "server.log"
    )
    srv.start()
    try:
        r = httpx.post(f"{srv.url}/predict", json=make_transaction(), timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["model_tag"] == f"sproxxo-fraud:{bento_tag.split(':')[1].split('-')[0]}"
    finally:
        srv.stop()


def test_bento_image_compiles_the_numba_kernels_at_build(bento_tag: str) -> None:
    """The image's Dockerfile copies the sources in, then runs the setup script that fills
    the numba cache, before the rest of the Bento; the environment the service loads the
    cache with (and runs in production with) is the image's."""
    bento = _bento_dir(bento_tag)
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text().splitlines()
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    (script,) = list((bento / "env" / "docker").glob("script__*"))
    assert script.read_text() == (ROOT / "deploy" / "numba_cache.sh").read_text()
    sources = dockerfile.index("COPY --chown=bentoml:bentoml ./src/sproxxo ./src/sproxxo")
    (runs,) = [i for i, line in enumerate(dockerfile) if script.name in line]
    rest = dockerfile.index("COPY --chown=bentoml:bentoml . ./")
    assert sources < runs < rest
    env = {e["name"]: e["value"] for e in info["envs"]}
    assert env["NUMBA_CPU_NAME"] == "generic"
    assert env["SPROXXO_ENV"] == "production"
    for name in ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME", "SPROXXO_ENV"):
        assert any(line.startswith(f"ENV {name}=") for line in dockerfile[:runs]), name
