"""The served contract: /docs.json is valid OpenAPI with one key per object member, and the
Swagger UI at / renders it (headless Chromium), as a client generator or a human sees it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.integration.server import Server

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    counts = Counter(key for key, _ in pairs)
    repeated = sorted(key for key, n in counts.items() if n > 1)
    if repeated:
        raise ValueError(f"duplicate keys {repeated} in object with keys {[k for k, _ in pairs]}")
    return dict(pairs)


def test_docs_json_has_unique_keys_and_is_valid_openapi(server: Server) -> None:
    """/docs.json parses with no repeated key and passes the OpenAPI 3.1 validator."""
    text = httpx.get(f"{server.url}/docs.json", timeout=10).text
    spec = json.loads(text, object_pairs_hook=_strict_pairs)
    validate(spec)
    for path in ("/predict", "/predict_batch"):
        codes = list(spec["paths"][path]["post"]["responses"])
        assert codes == sorted(set(codes), key=codes.index)
        assert {"200", "400", "413", "415", "429", "503", "504"} <= set(codes), (path, codes)


def test_docs_json_operation_ids_are_unique(server: Server) -> None:
    """Every operation has its own operationId (client generators key methods on it)."""
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    ids = [
        op["operationId"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    methods = spec["paths"]["/models/{version}"]
    assert methods["get"]["operationId"] != methods["delete"]["operationId"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_swagger_ui_renders_the_operations(server: Server, tmp_path: Path) -> None:
    """Headless Chromium loads / and Swagger UI shows the operations, not a parser error."""
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{server.url}/",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "Unable to render this definition" not in dom
    assert "Parser error" not in dom
    assert dom.count('class="opblock ') >= 5, dom[-3000:]
    for path in ("/predict", "/predict_batch", "/models/{version}"):
        assert f'data-path="{path}"' in dom, path


def test_docs_json_documents_the_admin_token_where_it_is_needed(server: Server) -> None:
    """The model-management routes (a FastAPI app built beside start-up) are documented,
    and exactly the changing ones take the X-Admin-Token header."""
    paths = httpx.get(f"{server.url}/docs.json", timeout=10).json()["paths"]

    def header(path: str, method: str) -> list[str]:
        found = paths[path][method].get("parameters", [])
        return [p["name"] for p in found if p["in"] == "header"]

    assert header("/models/{version}/activate", "post") == ["X-Admin-Token"]
    assert header("/models/{version}", "delete") == ["X-Admin-Token"]
    assert header("/models/shadow", "delete") == ["X-Admin-Token"]
    assert header("/models/{version}", "get") == []
    assert header("/models", "get") == []
    assert "/health" in paths
