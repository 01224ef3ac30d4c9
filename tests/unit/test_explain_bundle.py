"""Covers travel in the bundle, old bundles still load (and explain, recompiled from the
verified pickle), and scoring explains reviews, declines and requested rows only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from sproxxo.features import FEATURE_NAMES, build_features
from sproxxo.ml import bundle as bundle_module
from sproxxo.ml.bundle import (
    COMPILED_FILE,
    BundleMetadata,
    DataFingerprint,
    ModelBundle,
    load_bundle,
    sha256_file,
    write_bundle,
)
from sproxxo.ml.training import fit_pipeline, time_split
from sproxxo.policy import MODEL_SCORE_CODES, Policy
from sproxxo.schemas import Assessment, Transaction
from sproxxo.scoring import score
from sproxxo.sources.synthetic import generate
from tests.helpers import make_transaction


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    """A small fitted pipeline, its metadata, a scored reference sample and held-out rows."""
    train, validation, test = time_split(generate(12_000, seed=3))
    pipeline = fit_pipeline(train, validation, params={"max_iter": 20})
    reference = pd.DataFrame(build_features(test.head(50)), columns=list(FEATURE_NAMES))
    reference["fraud_probability"] = pipeline[-1].predict_proba(reference.to_numpy())[:, 1]
    metadata = BundleMetadata(
        policy=Policy(review_at=0.2, decline_at=0.8),
        metrics={},
        data=DataFingerprint(
            source="synthetic", sha256="0" * 64, rows=12_000, fraud_rate=0.008, start="", end=""
        ),
        trained_at="2026-07-01T00:00:00+00:00",
    )
    return {"pipeline": pipeline, "metadata": metadata, "reference": reference, "test": test}


@pytest.fixture
def written(tmp_path: Path, tiny: dict[str, Any]) -> tuple[Path, BundleMetadata]:
    """A bundle written as training writes it."""
    directory = tmp_path / "bundle"
    meta = write_bundle(directory, tiny["pipeline"], tiny["metadata"], tiny["reference"])
    return directory, meta


def _adds_up(bundle: ModelBundle, matrix: np.ndarray) -> None:
    found = bundle.explain_matrix(matrix)
    assert found is not None
    total = found.base_value + found.by_feature.sum(axis=1)
    np.testing.assert_allclose(total, found.raw_scores, rtol=0, atol=1e-6)


def test_bundle_stores_covers_and_explains_without_unpickling(
    written: tuple[Path, BundleMetadata], tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """compiled.npz carries the node covers: a loaded bundle explains from the stored
    arrays alone, nothing unpickled."""
    directory, meta = written
    with np.load(directory / COMPILED_FILE) as arrays:
        assert arrays["cover"].dtype == np.float64
        assert arrays["cover"].shape == arrays["left"].shape
    monkeypatch.setattr(bundle_module.LazyPipeline, "load", _no_unpickling)
    loaded = load_bundle(directory, meta, tag="sproxxo-fraud:covers")
    assert loaded.compiled is not None
    assert loaded.compiled.cover is not None
    _adds_up(loaded, build_features(tiny["test"].head(300)))


def _no_unpickling(pipeline: Any) -> Any:
    raise AssertionError("the pipeline was unpickled")


def test_bundle_without_covers_loads_and_explains_recompiled(
    written: tuple[Path, BundleMetadata], tiny: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A bundle written before the covers (same checksummed files, no `cover` array) still
    loads, recompiled from its verified pickle, scores the same and explains."""
    directory, meta = written
    with np.load(directory / COMPILED_FILE) as arrays:
        old = {k: arrays[k] for k in arrays.files if k != "cover"}
    with (directory / COMPILED_FILE).open("wb") as handle:
        np.savez(handle, **old)  # type: ignore[arg-type]
    meta = meta.model_copy(
        update={
            "checksums": {**meta.checksums, COMPILED_FILE: sha256_file(directory / COMPILED_FILE)}
        }
    )
    with caplog.at_level("WARNING", logger="sproxxo.ml.bundle"):
        loaded = load_bundle(directory, meta, tag="sproxxo-fraud:old")
    assert "no node covers" in caplog.text
    assert loaded.compiled is not None
    assert loaded.compiled.cover is not None
    matrix = build_features(tiny["test"].head(300))
    expected = tiny["pipeline"][-1].predict_proba(matrix)[:, 1]
    np.testing.assert_allclose(loaded.predict_matrix(matrix), expected, atol=1e-9)
    _adds_up(loaded, matrix)


def test_bundle_served_through_sklearn_has_no_explanations(tiny: dict[str, Any]) -> None:
    """Without compiled trees (sklearn fallback), or without covers, there is nothing to
    explain with: None."""
    bare = ModelBundle(pipeline=tiny["pipeline"], metadata=tiny["metadata"])
    assert bare.explain_matrix(np.zeros((1, len(FEATURE_NAMES)))) is None
    compiled = bundle_module.compile_model(tiny["pipeline"][-1])
    uncovered = ModelBundle(
        pipeline=tiny["pipeline"],
        metadata=tiny["metadata"],
        compiled=dataclasses.replace(compiled, cover=None),
    )
    assert uncovered.explain_matrix(np.zeros((1, len(FEATURE_NAMES)))) is None


def _bundle(tiny: dict[str, Any], policy: Policy, *, compiled: bool = True) -> ModelBundle:
    metadata = tiny["metadata"].model_copy(update={"policy": policy})
    trees = bundle_module.compile_model(tiny["pipeline"][-1]) if compiled else None
    return ModelBundle(pipeline=tiny["pipeline"], metadata=metadata, compiled=trees)


def _transactions(n: int) -> list[Transaction]:
    bodies = [
        make_transaction(transaction_id=f"tx-x-{i}", amount=f"{20 + 173 * i}.00") for i in range(n)
    ]
    return [Transaction.model_validate_json(orjson.dumps(b)) for b in bodies]


def test_score_explains_reviews_and_puts_model_codes_in_place(tiny: dict[str, Any]) -> None:
    """With every row in the review band, every answer is explained, adds up, validates,
    and names model-driven codes instead of the generic score code."""
    bundle = _bundle(tiny, Policy(review_at=0.0, decline_at=1.0))
    scored = score(_transactions(8), bundle, now=datetime.now(UTC))
    records = scored.records()
    assert {r["decision"] for r in records} == {"review"}
    for record in records:
        parsed = Assessment.model_validate_json(orjson.dumps(record))
        assert parsed.explanation is not None
        listed = sum(c.contribution for c in parsed.explanation.contributions)
        total = parsed.explanation.base_value + listed + parsed.explanation.other_contributions
        assert total == pytest.approx(parsed.explanation.raw_score, abs=1e-6)
        assert not MODEL_SCORE_CODES & set(parsed.reason_codes)
        assert parsed.reason_codes[0].startswith("MODEL_")


def test_score_explains_approves_only_when_asked(tiny: dict[str, Any]) -> None:
    """Approves carry no explanation (and the kernel is not called) unless their row asks."""
    bundle = _bundle(tiny, Policy(review_at=1.0, decline_at=1.0))
    txs = _transactions(3)
    plain = score(txs, bundle, now=datetime.now(UTC))
    assert plain.explained is None
    assert ["explanation" in r for r in plain.records()] == [False, False, False]
    asked = score(txs, bundle, now=datetime.now(UTC), explain=[False, True, False]).records()
    assert ["explanation" in r for r in asked] == [False, True, False]
    assert [r["reason_codes"] for r in asked] == [r["reason_codes"] for r in plain.records()]
    every = score(txs, bundle, now=datetime.now(UTC), explain=True).records()
    assert all("explanation" in r for r in every)


def test_score_without_explanations_keeps_generic_codes(tiny: dict[str, Any]) -> None:
    """A model that cannot explain (sklearn fallback) answers as before: no explanation,
    the score band's generic code."""
    bundle = _bundle(tiny, Policy(review_at=0.0, decline_at=1.0), compiled=False)
    records = score(_transactions(2), bundle, now=datetime.now(UTC)).records()
    assert ["explanation" in r for r in records] == [False, False]
    assert all(r["reason_codes"][0] == "MODEL_SCORE_HIGH" for r in records)
