"""The compiled trees reproduce the sklearn pipeline's calibrated probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sproxxo.features import FEATURE_NAMES, build_features
from sproxxo.ml.bundle import ModelBundle
from sproxxo.ml.compiled_trees import CompiledModel, compile_model
from sproxxo.ml.training import add_history, fit_pipeline, time_split
from sproxxo.sources.synthetic import generate

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    """A small pipeline fitted on synthetic data, its compiled model and held-out features."""
    train, validation, test = time_split(add_history(generate(30_000, seed=5)))
    pipeline = fit_pipeline(train, validation, params={"max_iter": 60}, seed=0)
    matrix = build_features(test)
    return {"pipeline": pipeline, "compiled": compile_model(pipeline[-1]), "matrix": matrix}


def _sklearn(fitted: dict[str, Any], matrix: np.ndarray) -> np.ndarray:
    return fitted["pipeline"][-1].predict_proba(matrix)[:, 1]


def test_compile_model_batch_matches_sklearn(fitted: dict[str, Any]) -> None:
    """On >= 2000 held-out rows the batch path agrees with sklearn within 1e-6."""
    matrix = fitted["matrix"]
    assert matrix.shape[0] >= 2000
    compiled: CompiledModel = fitted["compiled"]
    diff = np.abs(compiled.predict(matrix) - _sklearn(fitted, matrix))
    assert diff.max() <= TOLERANCE


def test_compile_model_raw_scores_equal_sklearn_bit_for_bit(fitted: dict[str, Any]) -> None:
    """The kernel's raw scores are sklearn's exactly: same comparisons, same summation order."""
    hgb = fitted["pipeline"][-1].calibrated_classifiers_[0].estimator.estimator
    matrix = fitted["matrix"]
    expected = hgb._raw_predict(matrix).ravel()
    compiled: CompiledModel = fitted["compiled"]
    assert np.array_equal(compiled.raw(matrix), expected)
    assert np.array_equal(compiled.raw(np.asfortranarray(matrix[::2])), expected[::2])


@pytest.mark.parametrize("rows", [1, 2, 700])
def test_numpy_twin_equals_the_kernel_bit_for_bit(
    fitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """While numba loads (`sproxxo.jit`), the numpy walk gives the kernel's raw scores
    exactly, NaN features included."""
    from sproxxo import jit

    matrix = fitted["matrix"][:rows].copy()
    matrix[::2, FEATURE_NAMES.index("distance_km")] = np.nan
    matrix[1::3, FEATURE_NAMES.index("hour")] = np.nan
    compiled: CompiledModel = fitted["compiled"]
    kernel = compiled.raw(matrix)
    monkeypatch.setattr(jit, "pending", lambda name: name == "trees")
    assert np.array_equal(compiled.raw(matrix), kernel)
    assert np.array_equal(compiled.predict(matrix), np.asarray(1.0 / (1.0 + np.exp(
        compiled.calibrators[0][0] * kernel + compiled.calibrators[0][1]))))  # fmt: skip


def test_compile_model_single_row_matches_sklearn(fitted: dict[str, Any]) -> None:
    """The one-row path agrees with sklearn within 1e-6 for every row tried."""
    matrix = fitted["matrix"][:300]
    compiled: CompiledModel = fitted["compiled"]
    single = np.array([compiled.predict(matrix[i : i + 1])[0] for i in range(len(matrix))])
    np.testing.assert_allclose(single, _sklearn(fitted, matrix), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("column", ["log_amount", "hour", "distance_km", "risk_score"])
def test_compile_model_nan_rows_match_sklearn(fitted: dict[str, Any], column: str) -> None:
    """Rows with a NaN feature follow sklearn's missing-value direction, batch and single-row."""
    matrix = fitted["matrix"][:400].copy()
    matrix[::3, FEATURE_NAMES.index(column)] = np.nan
    compiled: CompiledModel = fitted["compiled"]
    expected = _sklearn(fitted, matrix)
    np.testing.assert_allclose(compiled.predict(matrix), expected, rtol=0, atol=TOLERANCE)
    for i in (0, 3, 6):
        row = matrix[i : i + 1]
        assert np.isnan(row).any()
        assert abs(compiled.predict(row)[0] - expected[i]) <= TOLERANCE


def test_compile_model_all_nan_row_matches_sklearn(fitted: dict[str, Any]) -> None:
    """A row of all NaN features scores like sklearn on both paths."""
    row = np.full((1, len(FEATURE_NAMES)), np.nan)
    compiled: CompiledModel = fitted["compiled"]
    expected = _sklearn(fitted, row)[0]
    assert abs(compiled.predict(row)[0] - expected) <= TOLERANCE
    both = np.vstack([row, fitted["matrix"][:1]])
    np.testing.assert_allclose(compiled.predict(both), _sklearn(fitted, both), atol=TOLERANCE)


def test_compile_model_probabilities_are_valid(fitted: dict[str, Any]) -> None:
    """Compiled probabilities lie in [0, 1] and are not constant."""
    p = fitted["compiled"].predict(fitted["matrix"])
    assert ((p >= 0) & (p <= 1)).all()
    assert p.std() > 0


def test_compile_model_records_every_calibrator(fitted: dict[str, Any]) -> None:
    """One (a, b) pair is kept per calibrated classifier of the CalibratedClassifierCV."""
    calibrated = fitted["pipeline"][-1]
    assert len(fitted["compiled"].calibrators) == len(calibrated.calibrated_classifiers_)


@pytest.mark.parametrize("rows", [1, 2, 129, 2000])
def test_model_bundle_predict_matrix_same_on_both_paths(fitted: dict[str, Any], rows: int) -> None:
    """ModelBundle.predict_matrix gives sklearn's values for one row and for many."""
    bundle = ModelBundle(pipeline=fitted["pipeline"], metadata=None, compiled=fitted["compiled"])  # type: ignore[arg-type]
    matrix = fitted["matrix"][:rows]
    np.testing.assert_allclose(
        bundle.predict_matrix(matrix), _sklearn(fitted, matrix), rtol=0, atol=TOLERANCE
    )


def test_compile_model_refuses_separately_fitted_calibrators(fitted: dict[str, Any]) -> None:
    """Calibrators over different base estimators (no FrozenEstimator) are refused."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

    from sproxxo.sources.synthetic import generate as gen

    frame = add_history(gen(4000, seed=9))
    x, y = build_features(frame), frame["is_fraud"].to_numpy()
    calibrated = CalibratedClassifierCV(
        HistGradientBoostingClassifier(max_iter=3), method="sigmoid", cv=2
    ).fit(x, y)
    with pytest.raises(ValueError, match="share one base estimator"):
        compile_model(calibrated)


def test_kernel_compiles_without_a_writable_cache(
    fitted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where numba has nowhere to cache (read-only install), the kernel still compiles."""
    import numba

    from sproxxo.ml import compiled_trees as forest

    real_njit = numba.njit

    def njit(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_walk': no locator available")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    forest._kernel.cache_clear()
    try:
        matrix = fitted["matrix"][:50]
        expected = _sklearn(fitted, matrix)
        np.testing.assert_allclose(fitted["compiled"].predict(matrix), expected, atol=TOLERANCE)
    finally:
        forest._kernel.cache_clear()


@pytest.mark.parametrize("z", [-800.0, -30.0, 0.0, 2.5, 709.0, 710.0, 5000.0])
def test_one_row_sigmoid_equals_the_array_formula(z: float) -> None:
    """The scalar calibration of one row gives numpy's value, overflow included."""
    from sproxxo.ml.compiled_trees import _sigmoid_tail

    with np.errstate(over="ignore"):
        expected = float((1.0 / (1.0 + np.exp(np.array([z]))))[0])
    assert _sigmoid_tail(z) == pytest.approx(expected, rel=1e-15, abs=0.0)


def test_raw_scores_with_missing_values_equal_sklearn_bit_for_bit(fitted: dict[str, Any]) -> None:
    """NaN features, in the first row and only in the last of several row blocks, take
    sklearn's missing-value side: raw scores identical, batch and one row at a time."""
    hgb = fitted["pipeline"][-1].calibrated_classifiers_[0].estimator.estimator
    matrix = fitted["matrix"][:300].copy()
    matrix[0, :] = np.nan
    for k, name in enumerate(FEATURE_NAMES):
        matrix[260 + k % 40 :: 7, FEATURE_NAMES.index(name)] = np.nan
    expected = hgb._raw_predict(matrix).ravel()
    compiled: CompiledModel = fitted["compiled"]
    assert np.array_equal(compiled.raw(matrix), expected)
    assert np.array_equal(compiled.raw(matrix[:257]), expected[:257])  # a last block of one
    single = [compiled.raw(matrix[i : i + 1])[0] for i in (0, 1, 260, 261, 299)]
    assert single == expected[[0, 1, 260, 261, 299]].tolist()


def test_missing_or_not_splits_and_infinities_equal_sklearn_bit_for_bit() -> None:
    """sklearn splits a feature with missing values on "missing or not" (threshold +inf,
    NaN right) and sends +inf left of it: the kernel's raw scores are sklearn's exactly,
    batch and one row at a time, with NaN and both infinities in the rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from sproxxo.ml.compiled_trees import _flatten

    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 4))
    x[rng.random(x.shape) < 0.15] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.isnan(x[:, 3]) > 0.4).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=12, max_leaf_nodes=10, random_state=0)
    model = _flatten(hgb.fit(x, y), ((1.0, 0.0),))
    internal = model.left != np.arange(len(model.left))
    assert (internal & np.isposinf(model.threshold) & model.nan_right).any()
    x[:40, 3], x[40:80, 0], x[80:120, 3] = np.inf, -np.inf, -np.inf
    expected = hgb._raw_predict(x).ravel()
    assert np.array_equal(model.raw(x), expected)
    assert [model.raw(x[i : i + 1])[0] for i in range(0, 200, 9)] == expected[:200:9].tolist()


def test_no_rows_score_to_an_empty_array(fitted: dict[str, Any]) -> None:
    """A matrix of no rows gives no scores (not an error), on both paths."""
    compiled: CompiledModel = fitted["compiled"]
    empty = np.empty((0, len(FEATURE_NAMES)))
    assert compiled.raw(empty).shape == (0,)
    assert compiled.predict(empty).shape == (0,)


def test_nan_thresholds_walk_alike_in_the_kernel_its_twin_and_treeshap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sklearn makes NaN thresholds from a feature infinite in many training rows: the
    numpy twin gives the kernel's raw scores exactly there too, every value that is not
    NaN goes right as in sklearn, and the contributions still add up to the raw score."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from sproxxo import jit
    from sproxxo.ml import explain
    from sproxxo.ml.compiled_trees import _flatten

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[rng.random(x.shape) < 0.05] = np.inf
    x[rng.random(x.shape) < 0.05] = -np.inf
    y = (np.nan_to_num(x[:, 0], posinf=3, neginf=-3) - np.isinf(x[:, 2]) > 0.3).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=15, random_state=0)
    with np.errstate(invalid="ignore"):  # binning: percentiles between two infinities
        model = _flatten(hgb.fit(x, y), ((1.0, 0.0),))
    assert np.isnan(model.threshold).any()
    rows = x[:500]
    kernel = model.raw(rows)
    finite = ~np.isnan(rows).any(axis=1)  # no NaN reaches a NaN threshold: sklearn's answer
    assert np.array_equal(kernel[finite], hgb._raw_predict(rows[finite]).ravel())
    additivity = explain.base_value(model) + explain.shap_values(model, rows).sum(axis=1)
    np.testing.assert_allclose(additivity, kernel, rtol=0, atol=1e-9)
    monkeypatch.setattr(jit, "pending", lambda name: name == "trees")
    assert np.array_equal(model.raw(rows), kernel)
