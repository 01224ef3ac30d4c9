"""Path-dependent TreeSHAP over the compiled trees is exact: it equals the Shapley values
of the cover-weighted game computed by brute force, and base + contributions = raw score."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from sproxxo.features import FEATURE_NAMES, build_features
from sproxxo.ml import explain
from sproxxo.ml.compiled_trees import CompiledModel, _flatten, compile_model
from sproxxo.ml.training import add_history, fit_pipeline, time_split
from sproxxo.sources.synthetic import generate


def _expectation(model: CompiledModel, x: np.ndarray, known: set[int]) -> float:
    """v(S): the raw score with the features of S known (x's way) and the others averaged
    over both children by cover, node by node (the game TreeSHAP solves)."""
    assert model.cover is not None
    cover = model.cover

    def node_value(nd: int) -> float:
        left = int(model.left[nd])
        if left == nd:
            return float(model.value[nd])
        j = int(model.feature[nd])
        if j in known:
            v = x[j]
            right = bool(v > model.threshold[nd]) or (bool(np.isnan(v)) and model.nan_right[nd])
            return node_value(left + int(right))
        both = cover[left] * node_value(left) + cover[left + 1] * node_value(left + 1)
        return float(both / cover[nd])

    return model.baseline + sum(node_value(int(root)) for root in model.roots)


def _brute_force(model: CompiledModel, x: np.ndarray) -> np.ndarray:
    """Shapley values by enumerating every subset of the other features."""
    n = len(x)
    phi = np.zeros(n)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                known = set(subset)
                gain = _expectation(model, x, known | {j}) - _expectation(model, x, known)
                phi[j] += weight * gain
    return phi


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    """A small HistGradientBoostingClassifier on 4 features with missing values (both NaN
    directions occur), compiled, with its training matrix."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 4))
    x[rng.random(x.shape) < 0.15] = np.nan
    filled = np.nan_to_num(x)
    y = (filled[:, 0] + filled[:, 1] * filled[:, 2] + np.isnan(x[:, 3]) > 0.4).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=12, max_leaf_nodes=10, random_state=0)
    hgb.fit(x, y)
    return {"hgb": hgb, "model": _flatten(hgb, ((1.0, 0.0),)), "x": x}


def test_shap_values_equal_brute_force_shapley_values(small: dict[str, Any]) -> None:
    """On 30 rows (NaNs included) every contribution equals the enumerated Shapley value
    within 1e-9."""
    model: CompiledModel = small["model"]
    rows = small["x"][:30]
    assert np.isnan(rows).any()
    got = explain.shap_values(model, rows)  # the block kernel
    expected = np.array([_brute_force(model, row) for row in rows])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    alone = np.vstack([explain.shap_values(model, rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_allclose(alone, expected, rtol=0, atol=1e-9)  # the row kernel


def test_base_value_is_the_mean_raw_score_of_the_training_rows(small: dict[str, Any]) -> None:
    """With covers = training samples per node, the base value is the training rows' mean
    raw score, and the empty coalition's value."""
    model: CompiledModel = small["model"]
    base = explain.base_value(model)
    assert base == pytest.approx(float(model.raw(small["x"]).mean()), abs=1e-9)
    assert base == pytest.approx(_expectation(model, small["x"][0], set()), abs=1e-12)


def test_compiled_covers_are_sklearn_node_counts(small: dict[str, Any]) -> None:
    """Every node's cover is its training-sample count: a root holds all the rows and an
    internal node's cover is its children's sum."""
    model: CompiledModel = small["model"]
    assert model.cover is not None
    np.testing.assert_array_equal(model.cover[model.roots], len(small["x"]))
    internal = np.flatnonzero(model.left != np.arange(len(model.left)))
    children = model.cover[model.left[internal]] + model.cover[model.left[internal] + 1]
    np.testing.assert_array_equal(model.cover[internal], children)


@pytest.fixture(scope="module")
def fixture_model() -> dict[str, Any]:
    """The project's pipeline fitted on synthetic data (60 trees, 31 leaves), compiled, and
    held-out feature rows."""
    train, validation, test = time_split(add_history(generate(30_000, seed=5)))
    pipeline = fit_pipeline(train, validation, params={"max_iter": 60}, seed=0)
    return {"compiled": compile_model(pipeline[-1]), "matrix": build_features(test)}


def test_contributions_add_up_to_the_raw_score(fixture_model: dict[str, Any]) -> None:
    """On >= 2,000 held-out rows, a third of them with missing features, base value plus
    contributions is the compiled raw score within 1e-6."""
    model: CompiledModel = fixture_model["compiled"]
    matrix = fixture_model["matrix"].copy()
    assert len(matrix) >= 2000
    for k, name in enumerate(("log_amount", "distance_km", "customer_age", "card_tx_1h")):
        matrix[k::3, FEATURE_NAMES.index(name)] = np.nan
    phi = explain.shap_values(model, matrix)
    gap = np.abs(explain.base_value(model) + phi.sum(axis=1) - model.raw(matrix))
    assert gap.max() <= 1e-6
    assert (np.abs(phi) > 0).sum(axis=1).min() >= 1  # not vacuous: features contribute


_SMALL, _BLOCK = explain.FEWEST_BLOCKED, explain.BLOCK


@pytest.mark.parametrize(
    "size", [_SMALL - 1, _SMALL, _BLOCK - 1, _BLOCK, _BLOCK + 1, 2 * _BLOCK + 8]
)
def test_shap_values_of_a_row_do_not_depend_on_its_batch(
    fixture_model: dict[str, Any], size: int
) -> None:
    """A row explained alone (the row kernel) gets exactly the contributions it gets in a
    batch of any size: below `FEWEST_BLOCKED` rows the row kernel, from it on the block
    kernel, blocks full or not (missing values included)."""
    model: CompiledModel = fixture_model["compiled"]
    matrix = fixture_model["matrix"][:size].copy()
    matrix[::2, FEATURE_NAMES.index("card_tx_1h")] = np.nan
    matrix[1::3, FEATURE_NAMES.index("distance_km")] = np.nan
    batch = explain.shap_values(model, matrix)
    alone = np.vstack([explain.shap_values(model, matrix[i : i + 1]) for i in range(size)])
    assert (np.abs(alone) > 0).sum() >= size  # not vacuous
    np.testing.assert_array_equal(alone, batch)


def _tree(**arrays: Any) -> CompiledModel:
    """A hand-made one-tree model (nodes in the compiled layout)."""
    return CompiledModel(
        feature=np.array(arrays["feature"], dtype=np.intp),
        threshold=np.array(arrays["threshold"], dtype=np.float64),
        nan_right=np.array(arrays["nan_right"], dtype=np.bool_),
        left=np.array(arrays["left"], dtype=np.intp),
        value=np.array(arrays["value"], dtype=np.float64),
        roots=np.array([0], dtype=np.intp),
        depths=np.array([arrays["depth"]], dtype=np.intp),
        baseline=0.5,
        calibrators=((1.0, 0.0),),
        cover=np.array(arrays["cover"], dtype=np.float64),
    )


#: x0 <= 0 (NaN right) -> [x0 <= -1 -> leaves 1, 2] / [x1 <= 0 -> leaves 3, 4]: feature 0
#: twice on the left path.
REPEATED = _tree(
    feature=[0, 0, 1, 0, 0, 0, 0],
    threshold=[0.0, -1.0, 0.0, np.inf, np.inf, np.inf, np.inf],
    nan_right=[True, False, False, False, False, False, False],
    left=[1, 3, 5, 3, 4, 5, 6],
    value=[0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0],
    cover=[100, 60, 40, 20, 40, 10, 30],
    depth=2,
)


@pytest.mark.parametrize(
    "x",
    [[-2.0, 5.0], [-0.5, 5.0], [0.5, -1.0], [0.5, 1.0], [np.nan, 1.0], [np.nan, np.nan]],
)
def test_shap_values_merge_a_feature_repeated_on_a_path(x: list[float]) -> None:
    """A feature split on twice down one path (and NaN sent right) is attributed as one
    feature: the brute-force values, which add up to the raw score."""
    row = np.array([x])
    phi = explain.shap_values(REPEATED, row)[0]
    np.testing.assert_allclose(phi, _brute_force(REPEATED, row[0]), rtol=0, atol=1e-12)
    assert explain.base_value(REPEATED) + phi.sum() == pytest.approx(REPEATED.raw(row)[0])
    in_a_block = explain.shap_values(REPEATED, np.repeat(row, explain.FEWEST_BLOCKED, axis=0))
    np.testing.assert_array_equal(in_a_block, np.repeat(phi[None, :], explain.FEWEST_BLOCKED, 0))


def test_shap_values_hand_computed() -> None:
    """x = (-2, 5) reaches leaf 1 (raw 0.5 + 1) from the base value 0.5 + 0.2*1 + 0.4*2 +
    0.1*3 + 0.3*4 = 3.0. v({x1}) = 0.5 + 0.6*(100/60) + 0.4*4 = 3.1, so x1 gets
    ((3.1 - 3.0) + 0) / 2 = 0.05 and x0 the rest, -1.55."""
    phi = explain.shap_values(REPEATED, np.array([[-2.0, 5.0]]))[0]
    assert explain.base_value(REPEATED) == pytest.approx(3.0)
    np.testing.assert_allclose(phi, [-1.55, 0.05], atol=1e-12)


def test_shap_values_send_nan_the_models_missing_way() -> None:
    """A missing x0 goes right at the root (nan_right): v({x0}) = 0.5 + 3.75, raw 4.5, so
    x0 gets ((4.25 - 3.0) + (4.5 - 3.1)) / 2; sent left instead, it is explained as a
    value below -1 would be."""
    phi = explain.shap_values(REPEATED, np.array([[np.nan, 1.0]]))[0]
    np.testing.assert_allclose(phi, [1.325, 0.175], atol=1e-12)
    left = dataclasses.replace(REPEATED, nan_right=np.zeros_like(REPEATED.nan_right))
    phi_left = explain.shap_values(left, np.array([[np.nan, 1.0]]))[0]
    np.testing.assert_allclose(phi_left, [-1.55, 0.05], atol=1e-12)


@pytest.mark.parametrize("size", [1, _SMALL - 1, _SMALL, 2 * _BLOCK + 1])
def test_shap_values_take_the_block_kernel_from_fewest_blocked_rows_on(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Calls below `FEWEST_BLOCKED` rows run the row kernel, the others the block kernel
    (so the equality tests above compare the two kernels, not one with itself)."""
    ran: list[str] = []
    for name in ("_kernel", "_block_kernel"):
        real = getattr(explain, name)()
        monkeypatch.setattr(explain, name, lambda name=name, real=real: (ran.append(name), real)[1])
    explain.shap_values(REPEATED, np.zeros((size, 2)))
    assert ran == ["_block_kernel" if size >= _SMALL else "_kernel"]


def test_shap_values_refuse_a_model_without_covers() -> None:
    """A compiled model without covers (an old bundle's arrays) cannot be explained."""
    bare = dataclasses.replace(REPEATED, cover=None)
    assert not explain.can_explain(bare)
    with pytest.raises(ValueError, match="no node covers"):
        explain.shap_values(bare, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="no node covers"):
        explain.base_value(bare)


def test_explain_kernel_compiles_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where numba has nowhere to cache (read-only install), the kernel still compiles."""
    import numba

    real_njit = numba.njit

    def njit(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_shap': no locator available")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    explain._kernel.cache_clear()
    explain._block_kernel.cache_clear()
    try:
        for size in (1, explain.FEWEST_BLOCKED):  # the row kernel, the block kernel
            phi = explain.shap_values(REPEATED, np.tile([-2.0, 5.0], (size, 1)))
            np.testing.assert_allclose(phi, np.tile([-1.55, 0.05], (size, 1)), atol=1e-12)
    finally:
        explain._kernel.cache_clear()
        explain._block_kernel.cache_clear()


def _full_tree(depth: int, seed: int) -> CompiledModel:
    """A full tree of `depth` levels in the compiled layout (BFS: node i's children are
    2i + 1, 2i + 2), splitting on feature `level` at each level, with random thresholds,
    leaf values and covers that add up."""
    rng = np.random.default_rng(seed)
    inner, n = 2**depth - 1, 2 ** (depth + 1) - 1
    cover = np.zeros(n)
    cover[0] = 10_000.0
    for i in range(inner):
        share = rng.uniform(0.1, 0.9)
        cover[2 * i + 1], cover[2 * i + 2] = cover[i] * share, cover[i] * (1 - share)
    level = np.floor(np.log2(np.arange(n) + 1)).astype(int)
    return _tree(
        feature=np.where(np.arange(n) < inner, level, 0),
        threshold=np.where(np.arange(n) < inner, rng.normal(size=n), np.inf),
        nan_right=rng.random(n) < 0.5,
        left=np.where(np.arange(n) < inner, 2 * np.arange(n) + 1, np.arange(n)),
        value=np.where(np.arange(n) < inner, 0.0, rng.normal(size=n)),
        cover=cover,
        depth=depth,
    )


def test_shap_values_are_exact_at_the_deepest_explained_depth() -> None:
    """A path of MAX_DEPTH distinct features (the quadrature's degree bound): the
    brute-force Shapley values, NaN included."""
    model = _full_tree(explain.MAX_DEPTH, seed=3)
    rows = np.random.default_rng(4).normal(size=(3, explain.MAX_DEPTH))
    rows[1, ::3] = np.nan
    expected = np.array([_brute_force(model, row) for row in rows])
    for row, phi in zip(rows, expected, strict=True):
        row_phi = explain.shap_values(model, row[None, :])[0]
        np.testing.assert_allclose(row_phi, phi, rtol=0, atol=1e-9)
    blocked = explain.shap_values(model, np.tile(rows, (2, 1)))  # 6 rows: the block kernel
    np.testing.assert_allclose(blocked, np.tile(expected, (2, 1)), rtol=0, atol=1e-9)


def test_a_model_deeper_than_max_depth_does_not_explain_itself() -> None:
    """Past MAX_DEPTH the 4-point quadrature is not exact: no explanations, not wrong ones."""
    deep = _full_tree(explain.MAX_DEPTH + 1, seed=5)
    assert not explain.can_explain(deep)
    with pytest.raises(ValueError, match="depth"):
        explain.shap_values(deep, np.zeros((1, explain.MAX_DEPTH + 1)))
