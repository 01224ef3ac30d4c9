"""The image's numba cache (`deploy/numba_cache.sh`, the bentofile's docker setup script):
run as `bentoml containerize` runs it, it leaves a cache from which a later process with
the image's environment loads every kernel the service runs, compiling none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from sproxxo.kernels import compile_all
print(json.dumps({name: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
                  for name, k in compile_all().items()}))
"""


def _image_env(tmp_path: Path) -> dict[str, str]:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["docker"]["setup_script"] == "deploy/numba_cache.sh"
    image = {e["name"]: e["value"] for e in bentofile["envs"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    cache = tmp_path / Path(image["NUMBA_CACHE_DIR"]).name
    return env | {**image, "NUMBA_CACHE_DIR": str(cache)}


def test_setup_script_leaves_every_kernel_compiled_for_the_service(tmp_path: Path) -> None:
    """The script, in a Bento-like layout (BENTO_PATH/src = the sources), fills the cache;
    a second process with the same environment hits it for every kernel, misses none."""
    bento = tmp_path / "bento"
    bento.mkdir()
    (bento / "src").symlink_to(ROOT)
    env = _image_env(tmp_path) | {"BENTO_PATH": str(bento)}
    done = subprocess.run(
        ["bash", str(ROOT / "deploy/numba_cache.sh")],
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(Path(env["NUMBA_CACHE_DIR"]).rglob("*.nbc"))
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=bento / "src",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert set(found) == {"trees", "explanations", "explanation blocks", "history"}
    assert all(hits >= 1 and misses == 0 for hits, misses in found.values()), found
