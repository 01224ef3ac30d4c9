"""Build a reproducible Bento: `make bento` (uv run python deploy/build_bento.py).

1. Export the runtime requirements from uv.lock and refuse to build if any exported pin
   differs from the lock (the image gets exactly the versions the tests ran with).
2. Pick the model: $SPROXXO_MODEL_TAG, else the champion in the store.
3. `bentoml build --version <model version>-<git sha>` with labels (git sha, model
   version, schema version); print the Bento tag on the last line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from any folder: import sproxxo from the repo
BUILD = ROOT / "build"
REQUIREMENTS = BUILD / "requirements.txt"


def locked_versions(lock_path: Path) -> dict[str, str]:
    """name -> version of every package in uv.lock (names normalised)."""
    data = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    return {_norm(p["name"]): p["version"] for p in data["package"] if "version" in p}


def exported_pins(text: str) -> dict[str, str]:
    """name -> version from a `uv export` requirements file (markers ignored)."""
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", line.strip())
        if match:
            pins[_norm(match.group(1).split("[")[0])] = match.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def disagreements(pins: dict[str, str], locked: dict[str, str]) -> list[str]:
    """Exported pins that are absent from, or differ from, the lock."""
    return [
        f"{name}: requirements {version} vs uv.lock {locked.get(name, 'absent')}"
        for name, version in sorted(pins.items())
        if locked.get(name) != version
    ]


def export_requirements() -> dict[str, str]:
    """Write the runtime requirements and check them against uv.lock."""
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-default-groups",  # the serving set only: no training/monitoring/dev groups
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "-o",
            str(REQUIREMENTS),
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    pins = exported_pins(REQUIREMENTS.read_text(encoding="utf-8"))
    problems = disagreements(pins, locked_versions(ROOT / "uv.lock"))
    if problems or not pins:
        sys.exit("requirements disagree with uv.lock:\n  " + "\n  ".join(problems or ["empty"]))
    return pins


def model_tag() -> str:
    """The model to ship: pinned by env, else the store's champion."""
    from sproxxo.adapters import bentoml_store as store

    tag = os.environ.get("SPROXXO_MODEL_TAG") or store.champion_tag()
    if not tag:
        sys.exit("no model to ship: train one (make train) or set SPROXXO_MODEL_TAG")
    return store.full_tag(tag)


def git_sha() -> str:
    """Short sha of HEAD (with -dirty when the tree has changes)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short=10", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return (sha or "nogit") + ("-dirty" if dirty else "")


def bentofile() -> Path:
    """bentofile.yaml, or a copy pinned to $BENTO_BASE_IMAGE (CI sets an image by digest)."""
    base = os.environ.get("BENTO_BASE_IMAGE", "")
    if not base:
        return ROOT / "bentofile.yaml"
    if "@sha256:" not in base:
        sys.exit(f"BENTO_BASE_IMAGE must be pinned by digest (name@sha256:...), got {base!r}")
    import yaml

    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    spec["docker"].pop("python_version", None)  # the base image decides the Python
    spec["docker"]["base_image"] = base
    pinned = BUILD / "bentofile.yaml"
    pinned.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return pinned


def shadow_label() -> list[str]:
    """`--label shadow_model_version=...` when SPROXXO_SHADOW_MODEL_TAG ships a challenger
    (service.py declares it, so the build packs it beside the champion)."""
    shadow = os.environ.get("SPROXXO_SHADOW_MODEL_TAG", "")
    return ["--label", f"shadow_model_version={shadow.split(':')[-1]}"] if shadow else []


def main() -> int:
    """Export, check, build; print the Bento tag last."""
    export_requirements()
    tag = model_tag()
    model_version = tag.split(":")[1]
    sha = git_sha()
    env = {**os.environ, "SPROXXO_MODEL_TAG": tag}
    out = subprocess.run(
        [
            sys.executable,  # the environment's bentoml, whether or not it is on PATH
            "-m",
            "bentoml",
            "build",
            "-f",
            str(bentofile()),
            "--version",
            f"{model_version}-{sha}",
            "-o",
            "tag",
            "--label",
            f"git_sha={sha}",
            "--label",
            f"model_version={model_version}",
            "--label",
            "schema_version=1",
            *shadow_label(),
            str(ROOT),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    bento = out.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    print(bento)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
