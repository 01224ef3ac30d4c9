"""The training entry point registers models the serving runtime accepts."""

from __future__ import annotations

import platform
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from sproxxo.adapters import bentoml_store as store
from sproxxo.ml.bundle import BundleMetadata, verify_bundle
from sproxxo.ml.versions import runtime_versions

from {{ cookiecutter.package_name }} import train

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
ROWS, MAX_ITER = 20_000, 30


@pytest.fixture(scope="module")
def tag() -> str:
    """One small model trained into the test store."""
    return train.train_and_register(rows=ROWS, seed=7, max_iter=MAX_ITER)


def test_environment_matches_pins() -> None:
    """The installed stack and Python are exactly what pyproject.toml pins."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for line in project["dependencies"]:
        name, _, version = line.partition("==")
        assert metadata.version(name) == version, name
    python = project["requires-python"].removeprefix("==").removesuffix(".*")
    assert platform.python_version().startswith(f"{python}.")


def test_train_records_runtime_libraries(tag: str) -> None:
    """The stored metadata records exactly this environment's library versions."""
    record = store.get_record(tag)
    assert record.metadata["libraries"] == runtime_versions()
    assert record.labels["team"] == train.TEAM
    assert record.stage == "candidate"


def test_train_bundle_passes_serving_checks(tag: str) -> None:
    """Checksums, schema and dependency contract pass, and the bundle loads for serving."""
    record = store.get_record(tag)
    problems = verify_bundle(store.model_path(tag), BundleMetadata.model_validate(record.metadata))
    assert problems == []
    bundle = store.load_model(tag)
    assert bundle.compiled is not None
    assert bundle.metadata.metrics["roc_auc"] > 0.5


def test_main_prints_tag(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints the new model's tag on its last line."""
    assert train.main(["--rows", str(ROWS), "--max-iter", "5"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert store.get_record(printed).labels["project"] == train.PROJECT
