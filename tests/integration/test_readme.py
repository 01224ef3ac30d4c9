"""The README's examples, run as a reader would copy them, against a real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import Server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _readme_curl() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(curl .*?)```", text, flags=re.DOTALL)
    assert blocks, "the README has no curl example"
    return str(blocks[0])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_readme_curl_example_is_valid_today(server: Server) -> None:
    """The quick-start curl answers 200 with `valid: true` on the day it is run (its
    timestamp is computed by the shell, not written in the README)."""
    command = _readme_curl().replace("http://127.0.0.1:3000", server.url)
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True
    )
    answer = json.loads(out.stdout)
    assert answer["valid"] is True, answer["violations"]
    assert answer["decision"] in {"approve", "review", "decline"}
