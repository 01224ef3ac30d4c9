"""Bundle files: round trip, and refusal (before unpickling) of anything corrupt or incompatible."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sproxxo.errors import ModelUnavailable
from sproxxo.features import FEATURE_NAMES, build_features
from sproxxo.ml import bundle as bundle_module
from sproxxo.ml.bundle import (
    COMPILED_FILE,
    MANIFEST_FILE,
    PIPELINE_FILE,
    REFERENCE_FILE,
    BundleMetadata,
    DataFingerprint,
    load_bundle,
    read_metadata,
    read_reference,
    sha256_file,
    verify_bundle,
    write_bundle,
)
from sproxxo.ml.training import fit_pipeline, fraud_probability, time_split
from sproxxo.ml.versions import runtime_versions
from sproxxo.policy import Policy
from sproxxo.sources.synthetic import generate


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    """A tiny fitted pipeline, held-out rows, and metadata/reference to bundle it with."""
    train, validation, test = time_split(generate(12_000, seed=3))
    pipeline = fit_pipeline(train, validation, params={"max_iter": 8})
    metadata = BundleMetadata(
        policy=Policy(review_at=0.2, decline_at=0.8),
        metrics={"roc_auc": 0.97},
        data=DataFingerprint(
            source="synthetic",
            sha256="0" * 64,
            rows=12_000,
            fraud_rate=0.008,
            start="2026-01-01T00:00:00+00:00",
            end="2026-06-30T00:00:00+00:00",
        ),
        trained_at="2026-07-01T00:00:00+00:00",
    )
    reference = pd.DataFrame(build_features(test.head(50)), columns=list(FEATURE_NAMES))
    return {"pipeline": pipeline, "metadata": metadata, "reference": reference, "test": test}


@pytest.fixture
def written(tmp_path: Path, tiny: dict[str, Any]) -> tuple[Path, BundleMetadata]:
    """A bundle written to a fresh folder, with its checksummed metadata."""
    directory = tmp_path / "bundle"
    done = write_bundle(directory, tiny["pipeline"], tiny["metadata"], tiny["reference"])
    return directory, done


def test_write_bundle_records_checksums(written: tuple[Path, BundleMetadata]) -> None:
    """write_bundle writes the four files and records the sha256 of the data files."""
    directory, done = written
    names = {PIPELINE_FILE, MANIFEST_FILE, REFERENCE_FILE, COMPILED_FILE}
    assert {p.name for p in directory.iterdir()} == names
    assert done.checksums == {
        name: sha256_file(directory / name)
        for name in (PIPELINE_FILE, REFERENCE_FILE, COMPILED_FILE)
    }
    assert read_metadata(directory) == done


def test_load_bundle_round_trip_scores_like_pipeline(
    written: tuple[Path, BundleMetadata], tiny: dict[str, Any]
) -> None:
    """A loaded bundle carries the tag and scores exactly like the pipeline it was written from."""
    directory, done = written
    loaded = load_bundle(directory, done, tag="sproxxo-fraud:abc123")
    assert loaded.tag == "sproxxo-fraud:abc123"
    assert loaded.version == "abc123"
    assert loaded.metadata == done
    assert loaded.compiled is not None
    test = tiny["test"]
    expected = fraud_probability(tiny["pipeline"], test)
    np.testing.assert_allclose(loaded.predict_matrix(build_features(test)), expected, atol=1e-9)
    pd.testing.assert_frame_equal(read_reference(directory), tiny["reference"])


def test_load_bundle_serves_through_sklearn_when_compiled_trees_disagree(
    written: tuple[Path, BundleMetadata],
    tiny: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A compiled model that disagrees with sklearn on the reference sample is not used:
    the bundle scores through sklearn, and the load says why."""
    real = bundle_module.compile_model

    def skewed(calibrated: Any) -> Any:
        compiled = real(calibrated)
        return dataclasses.replace(compiled, baseline=compiled.baseline + 0.01)

    monkeypatch.setattr(bundle_module, "compile_model", skewed)
    directory, done = written
    with caplog.at_level("WARNING", logger="sproxxo.ml.bundle"):
        loaded = load_bundle(directory, done, tag="sproxxo-fraud:skewed")
    assert loaded.compiled is None
    assert "serving through sklearn" in caplog.text
    test = tiny["test"]
    expected = fraud_probability(tiny["pipeline"], test)
    np.testing.assert_array_equal(loaded.predict_matrix(build_features(test)), expected)


def _refusal(directory: Path, metadata: BundleMetadata) -> str:
    with pytest.raises(ModelUnavailable) as info:
        load_bundle(directory, metadata, tag="sproxxo-fraud:bad")
    return str(info.value)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any unpickling in the bundle module fail loudly."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle.load called on an unverified bundle")

    monkeypatch.setattr(bundle_module.pickle, "load", forbidden)
    monkeypatch.setattr(bundle_module.pickle, "loads", forbidden)


def test_load_bundle_truncated_pickle_refused(
    written: tuple[Path, BundleMetadata], no_unpickling: None
) -> None:
    """A truncated pipeline.pkl is refused with a sha256 mismatch and never unpickled."""
    directory, done = written
    path = directory / PIPELINE_FILE
    path.write_bytes(path.read_bytes()[:100])
    message = _refusal(directory, done)
    assert "sproxxo-fraud:bad" in message
    assert f"{PIPELINE_FILE} does not match its recorded sha256" in message


def test_load_bundle_wrong_recorded_checksum_refused(
    written: tuple[Path, BundleMetadata], no_unpickling: None
) -> None:
    """A recorded checksum that does not match the file refuses the bundle."""
    directory, done = written
    wrong = done.model_copy(update={"checksums": {**done.checksums, PIPELINE_FILE: "f" * 64}})
    assert "sha256" in _refusal(directory, wrong)


def test_load_bundle_tampered_pickle_not_unpickled(
    written: tuple[Path, BundleMetadata], no_unpickling: None
) -> None:
    """A different but valid pickle in place of the original is refused, not executed."""
    directory, done = written
    (directory / PIPELINE_FILE).write_bytes(pickle.dumps({"evil": True}))
    assert "corrupt or tampered" in _refusal(directory, done)


@pytest.mark.parametrize("checksums", [{}, {REFERENCE_FILE: "x"}, {PIPELINE_FILE: ""}])
def test_load_bundle_missing_checksum_refused(
    written: tuple[Path, BundleMetadata], no_unpickling: None, checksums: dict[str, str]
) -> None:
    """A bundle without a recorded pipeline checksum is refused."""
    directory, done = written
    message = _refusal(directory, done.model_copy(update={"checksums": checksums}))
    assert f"no checksum recorded for {PIPELINE_FILE}" in message


def test_load_bundle_missing_file_refused(
    written: tuple[Path, BundleMetadata], no_unpickling: None
) -> None:
    """A checksummed file that is missing refuses the bundle."""
    directory, done = written
    (directory / REFERENCE_FILE).unlink()
    assert f"{REFERENCE_FILE} is missing" in _refusal(directory, done)


def test_load_bundle_incompatible_libraries_refused(
    written: tuple[Path, BundleMetadata], no_unpickling: None
) -> None:
    """A model trained with another scikit-learn minor is refused, listing the mismatch."""
    directory, done = written
    runtime = runtime_versions()
    major, minor, *_ = runtime["scikit-learn"].split(".")
    other = f"{major}.{int(minor) + 1}.0"
    libraries = {**done.libraries, "scikit-learn": other, "numpy": "1.0.0"}
    message = _refusal(directory, done.model_copy(update={"libraries": libraries}))
    assert "dependency contract" in message
    assert f"scikit-learn: trained with {other}, runtime has {runtime['scikit-learn']}" in message
    assert f"numpy: trained with 1.0.0, runtime has {runtime['numpy']}" in message


def test_load_bundle_tolerates_informative_library_difference(
    written: tuple[Path, BundleMetadata], caplog: pytest.LogCaptureFixture
) -> None:
    """A different pandas version is logged but the bundle loads."""
    directory, done = written
    libraries = {**done.libraries, "pandas": "1.0.0"}
    with caplog.at_level("WARNING", logger="sproxxo.ml.bundle"):
        loaded = load_bundle(directory, done.model_copy(update={"libraries": libraries}))
    assert loaded.compiled is not None
    assert "pandas: trained with 1.0.0" in caplog.text


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"schema_version": "0"}, "schema_version 0"),
        ({"feature_names": ["log_amount"]}, "feature_names differ"),
    ],
)
def test_verify_bundle_schema_and_feature_mismatch(
    written: tuple[Path, BundleMetadata], update: dict[str, Any], expected: str
) -> None:
    """A bundle for another schema or feature list is reported by verify_bundle."""
    directory, done = written
    problems = verify_bundle(directory, done.model_copy(update=update))
    assert any(expected in p for p in problems)


def test_verify_bundle_lists_every_problem(written: tuple[Path, BundleMetadata]) -> None:
    """All problems are reported together, not just the first one."""
    directory, done = written
    (directory / PIPELINE_FILE).write_bytes(b"junk")
    bad = done.model_copy(update={"schema_version": "0", "libraries": {}})
    problems = verify_bundle(directory, bad)
    assert len(problems) >= 3
    assert verify_bundle(directory.parent, done) != []


def test_read_metadata_without_manifest_refused(tmp_path: Path) -> None:
    """A folder without bundle.json is not a bundle."""
    with pytest.raises(ModelUnavailable, match=MANIFEST_FILE):
        read_metadata(tmp_path)
    with pytest.raises(ModelUnavailable, match=REFERENCE_FILE):
        read_reference(tmp_path)


@pytest.fixture
def scored_reference(tmp_path: Path, tiny: dict[str, Any]) -> tuple[Path, BundleMetadata]:
    """A bundle whose reference sample carries the probabilities sklearn gave it (as
    training writes it)."""
    reference = tiny["reference"].assign(
        fraud_probability=tiny["pipeline"][-1].predict_proba(tiny["reference"].to_numpy())[:, 1]
    )
    directory = tmp_path / "scored"
    return directory, write_bundle(directory, tiny["pipeline"], tiny["metadata"], reference)


def test_load_bundle_serves_from_stored_trees_without_unpickling(
    scored_reference: tuple[Path, BundleMetadata],
    tiny: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored compiled trees that reproduce the reference probabilities serve the model:
    nothing is unpickled at load (no scikit-learn import on a cold start), and the
    pipeline is unpickled on first use, once."""
    directory, done = scored_reference
    calls: list[int] = []
    real = pickle.loads
    monkeypatch.setattr(bundle_module.pickle, "loads", lambda raw: calls.append(1) or real(raw))
    loaded = load_bundle(directory, done, tag="sproxxo-fraud:stored")
    assert calls == []
    assert loaded.compiled is not None
    test = tiny["test"]
    expected = fraud_probability(tiny["pipeline"], test)
    np.testing.assert_allclose(loaded.predict_matrix(build_features(test)), expected, atol=1e-9)
    assert calls == []
    assert loaded.pipeline[-1].predict_proba(build_features(test)).shape == (len(test), 2)
    assert loaded.pipeline.predict_proba(test).shape == (len(test), 2)
    assert calls == [1]


def test_load_bundle_recompiles_when_stored_trees_disagree(
    scored_reference: tuple[Path, BundleMetadata],
    tiny: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stored arrays that no longer give the reference probabilities (same checksum: a
    bug in the runtime's kernel, say) are not served: the pipeline is unpickled and
    compiled again, and checked against sklearn."""
    directory, done = scored_reference
    with np.load(directory / COMPILED_FILE) as arrays:
        skewed = {k: arrays[k] for k in arrays.files}
    skewed["baseline"] = skewed["baseline"] + 0.5
    with (directory / COMPILED_FILE).open("wb") as handle:
        np.savez(handle, **skewed)  # type: ignore[arg-type]
    checksums = {**done.checksums, COMPILED_FILE: sha256_file(directory / COMPILED_FILE)}
    done = done.model_copy(update={"checksums": checksums})
    with caplog.at_level("WARNING", logger="sproxxo.ml.bundle"):
        loaded = load_bundle(directory, done, tag="sproxxo-fraud:skewed-store")
    assert "recompiling" in caplog.text
    assert loaded.compiled is not None
    expected = fraud_probability(tiny["pipeline"], tiny["test"])
    got = loaded.predict_matrix(build_features(tiny["test"]))
    np.testing.assert_allclose(got, expected, atol=1e-9)
