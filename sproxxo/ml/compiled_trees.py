"""A compiled evaluation of the fitted boosted trees (the fast serving path).

scikit-learn stays the source of truth: `compile_model` reads the fitted
HistGradientBoosting trees and the Platt calibrators out of the pipeline into flat numpy
arrays, and `CompiledModel.predict` reproduces `predict_proba[:, 1]` without sklearn's
per-tree Python overhead. The walk over the arrays is a numba kernel: the same float64
comparisons and the same tree-by-tree sum as sklearn, so the raw scores are bit-identical
(a test checks it; training records the parity in the model's metadata). Leaves point at
themselves, so every row takes exactly its tree's depth in steps, without branches; rows
are the inner loop, so the CPU overlaps the walks of independent rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from sproxxo import jit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
WordArray = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]
_BLOCK = 128
_LANES = 32
#: A node word: left child << 16 | feature << 1 | NaN goes right (the low 16 bits: the slot
#: of the node's value in `_walk`'s doubled row).
_LEFT_SHIFT = 16
_FEATURE_SHIFT = 1
_FEATURE_MASK = 0x7FFF
_SLOT_MASK = 0xFFFF
#: Largest |p_sklearn - p_compiled| accepted, at training and again at every model load.
PARITY_TOLERANCE = 1e-6


def _walk(
    x: FloatArray,
    node_word: WordArray,
    threshold: FloatArray,
    value: FloatArray,
    roots: IntArray,
    depths: IntArray,
    baseline: float,
    out: FloatArray,
) -> None:  # pragma: no cover - runs compiled by numba (see `_kernel`)
    """out[i] = baseline + the leaf value of every tree, added in tree order (as sklearn).

    sklearn goes left when v <= threshold, or when v is NaN and missing values go left.
    Each row is first copied twice over, interleaved: value k at 2k with NaN as -inf, at
    2k + 1 as it is. A node's word holds its left child and 2 * feature + (NaN goes right),
    so the value it reads already sends a NaN its way and every step is one comparison,
    right when `not v <= threshold`: -inf goes left, NaN right even past an infinite
    threshold (sklearn's "missing or not" split). Both copies hold x's other values. (One
    case a comparison cannot say: a NaN threshold, which sklearn's binning makes from a
    feature infinite in over ~1/255 of the training rows, sends every value right and NaN
    its own way; here NaN goes right too. The parity check, at training and at every load,
    compares the two paths on held-out rows; `_walk_numpy` and TreeSHAP walk as this does.)
    The inner loop walks independent paths so the CPU overlaps their chains of loads: rows
    (in blocks that stay in L1 cache) for a batch, _LANES trees at a time for one row. Every
    index is unsigned: numba checks a signed index for a negative value (Python's
    wrap-around) at every load, which cost 40-55% of the walk. A block of one row (a batch
    of one, or a last block holding one row) takes the one-row loop: same sum, same order.
    """
    n, features = x.shape
    width = np.uint64(2 * features)
    block = min(n, _BLOCK)
    rows = np.empty(block * 2 * features, dtype=np.float64)
    node = np.empty(max(block, _LANES), dtype=np.uint64)
    left_shift, slot_mask = np.uint64(_LEFT_SHIFT), np.uint64(_SLOT_MASK)
    for start in range(0, n, _BLOCK):
        size = min(_BLOCK, n - start)
        for i in range(size):
            for k in range(features):
                v = x[start + i, k]
                rows[i * 2 * features + 2 * k] = -np.inf if v != v else v
                rows[i * 2 * features + 2 * k + 1] = v
        if size == 1:  # one row: _LANES trees side by side
            acc = baseline
            for first in range(0, roots.shape[0], _LANES):
                lanes = min(_LANES, roots.shape[0] - first)
                for j in range(lanes):
                    node[j] = np.uint64(roots[first + j])
                for _ in range(depths[first : first + lanes].max()):  # leaves point at themselves
                    for j in range(lanes):
                        nd = node[j]
                        w = node_word[nd]
                        v = rows[w & slot_mask]
                        node[j] = (w >> left_shift) + np.uint64(not v <= threshold[nd])
                for j in range(lanes):
                    acc += value[node[j]]
            out[start] = acc
            continue
        for i in range(size):
            out[start + i] = baseline
        for t in range(roots.shape[0]):
            root = np.uint64(roots[t])
            for i in range(size):
                node[i] = root
            for _ in range(depths[t]):
                base = np.uint64(0)
                for i in range(size):
                    nd = node[i]
                    w = node_word[nd]
                    v = rows[base + (w & slot_mask)]
                    node[i] = (w >> left_shift) + np.uint64(not v <= threshold[nd])
                    base += width
            for i in range(size):
                out[start + i] += value[node[i]]


def _walk_numpy(
    x: FloatArray,
    node_word: WordArray,
    threshold: FloatArray,
    value: FloatArray,
    roots: IntArray,
    depths: IntArray,
    baseline: float,
) -> FloatArray:
    """`_walk`'s interpreted twin (`sproxxo.jit`): every row down every tree at once, the
    same comparisons, and the leaf values added to the baseline in tree order (a cumulative
    sum is sequential), so the floats are the kernel's. ~0.1 ms for one row."""
    words = node_word.astype(np.int64)
    left = words >> _LEFT_SHIFT
    feature = (words >> _FEATURE_SHIFT) & _FEATURE_MASK
    nan_right = (words & 1).astype(bool)
    node = np.repeat(roots[np.newaxis, :], x.shape[0], axis=0)
    row = np.arange(x.shape[0])[:, np.newaxis]
    for _ in range(int(depths.max(initial=0))):  # leaves point at themselves
        v = x[row, feature[node]]
        v = np.where(np.isnan(v) & ~nan_right[node], -np.inf, v)  # the slot `_walk` reads
        node = left[node] + ~(v <= threshold[node])
    terms = np.concatenate([np.full((x.shape[0], 1), baseline), value[node]], axis=1)
    return np.asarray(np.cumsum(terms, axis=1)[:, -1], dtype=np.float64)


@cache
def _kernel() -> Callable[..., None]:
    """`_walk` compiled once per process. numba keeps the machine code in `__pycache__`
    (or NUMBA_CACHE_DIR) so later processes load it; without a writable place it compiles
    at every start instead (about a second)."""
    import numba  # imported here: ~1 s, and only the scoring path needs it

    try:
        kernel: Callable[..., None] = numba.njit(nogil=True, cache=True)(_walk)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        kernel = numba.njit(nogil=True)(_walk)
    return kernel


@dataclass(frozen=True)
class CompiledModel:
    """Flat arrays of every tree node plus the calibration maps."""

    feature: IntArray
    threshold: FloatArray
    nan_right: BoolArray
    left: IntArray  # right child = left + 1 after renumbering; a leaf's left is itself
    value: FloatArray
    roots: IntArray
    depths: IntArray
    baseline: float
    calibrators: tuple[tuple[float, float], ...]  # (a, b): p = 1 / (1 + exp(a * raw + b))
    #: Training samples that reached each node (sklearn's `count`): what explanations weigh
    #: the branches x does not take by (sproxxo.ml.explain). None in bundles written before.
    cover: FloatArray | None = None

    @cached_property
    def words(self) -> WordArray:
        """Each node's left child, feature and NaN side in one uint64 (what `_walk` reads).
        Raises ValueError for a model with more features than the word holds."""
        if self.feature.size and int(self.feature.max()) > _FEATURE_MASK:
            raise ValueError(f"more than {_FEATURE_MASK + 1} features")
        leaf = self.left == np.arange(len(self.left))  # reads its NaN as -inf: stays put
        words: WordArray = (
            (self.left.astype(np.uint64) << np.uint64(_LEFT_SHIFT))
            | (self.feature.astype(np.uint64) << np.uint64(_FEATURE_SHIFT))
            | (self.nan_right & ~leaf).astype(np.uint64)
        )
        return words

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Plain arrays (for `numpy.savez`, no pickle): the inverse of `from_arrays`."""
        covers = {} if self.cover is None else {"cover": self.cover}
        return covers | {
            "feature": self.feature,
            "threshold": self.threshold,
            "nan_right": self.nan_right,
            "left": self.left,
            "value": self.value,
            "roots": self.roots,
            "depths": self.depths,
            "baseline": np.array(self.baseline, dtype=np.float64),
            "calibrators": np.array(self.calibrators, dtype=np.float64).reshape(-1, 2),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> CompiledModel:
        """A compiled model from `to_arrays`' output, without scikit-learn."""
        return cls(
            feature=np.ascontiguousarray(arrays["feature"], dtype=np.intp),
            threshold=np.ascontiguousarray(arrays["threshold"], dtype=np.float64),
            nan_right=np.ascontiguousarray(arrays["nan_right"], dtype=np.bool_),
            left=np.ascontiguousarray(arrays["left"], dtype=np.intp),
            value=np.ascontiguousarray(arrays["value"], dtype=np.float64),
            roots=np.ascontiguousarray(arrays["roots"], dtype=np.intp),
            depths=np.ascontiguousarray(arrays["depths"], dtype=np.intp),
            baseline=float(arrays["baseline"]),
            calibrators=tuple((float(a), float(b)) for a, b in arrays["calibrators"]),
            cover=(
                np.ascontiguousarray(arrays["cover"], dtype=np.float64)
                if "cover" in arrays
                else None
            ),
        )

    def raw(self, x: FloatArray) -> FloatArray:
        """Sum of leaf values plus baseline for each row of `x` (n, features)."""
        rows = np.ascontiguousarray(x, dtype=np.float64)
        if jit.pending("trees"):
            return _walk_numpy(
                rows, self.words, self.threshold, self.value, self.roots, self.depths,
                self.baseline,
            )  # fmt: skip
        out = np.empty(rows.shape[0], dtype=np.float64)
        _kernel()(
            rows,
            self.words,
            self.threshold,
            self.value,
            self.roots,
            self.depths,
            self.baseline,
            out,
        )
        return out

    def predict(self, x: FloatArray) -> FloatArray:
        """Calibrated P(fraud), identical in value to the sklearn pipeline's."""
        raw = self.raw(x)
        if len(self.calibrators) == 1:
            a, b = self.calibrators[0]
            if raw.shape[0] == 1:  # scalar math: a third of numpy's cost on one element
                return np.array([_sigmoid_tail(a * float(raw[0]) + b)])
            return np.asarray(1.0 / (1.0 + np.exp(a * raw + b)), dtype=np.float64)
        probs = [1.0 / (1.0 + np.exp(a * raw + b)) for a, b in self.calibrators]
        return np.asarray(np.mean(probs, axis=0), dtype=np.float64)


def stump() -> CompiledModel:
    """One tree, one split, two leaves: the array types of the service's models (what a
    kernel is compiled for), to warm the kernels on."""
    return CompiledModel(
        feature=np.array([0, 0, 0], dtype=np.intp),
        threshold=np.array([0.0, np.inf, np.inf]),
        nan_right=np.array([True, False, False]),
        left=np.array([1, 1, 2], dtype=np.intp),
        value=np.array([0.0, -1.0, 1.0]),
        roots=np.array([0], dtype=np.intp),
        depths=np.array([1], dtype=np.intp),
        baseline=0.0,
        calibrators=((1.0, 0.0),),
        cover=np.array([2.0, 1.0, 1.0]),
    )


def _sigmoid_tail(z: float) -> float:
    """1 / (1 + e^z), 0.0 where e^z overflows (as numpy's inf gives)."""
    try:
        return 1.0 / (1.0 + math.exp(z))
    except OverflowError:
        return 0.0


def parity_gap(calibrated: Any, compiled: CompiledModel, matrix: FloatArray) -> float:
    """Largest |p_sklearn - p_compiled| over the rows of a feature matrix."""
    reference = calibrated.predict_proba(matrix)[:, 1]
    return float(np.abs(reference - compiled.predict(matrix)).max(initial=0.0))


def compile_model(calibrated: Any) -> CompiledModel:
    """Flatten a fitted `CalibratedClassifierCV` over a (frozen) HistGradientBoosting model."""
    calibrated_list = calibrated.calibrated_classifiers_
    hgb = _unwrap(calibrated_list[0].estimator)
    if any(_unwrap(c.estimator) is not hgb for c in calibrated_list):
        raise ValueError("calibrators must share one base estimator (use FrozenEstimator)")
    calibrators = tuple(
        (float(c.calibrators[0].a_), float(c.calibrators[0].b_)) for c in calibrated_list
    )
    model = _flatten(hgb, calibrators)
    model.predict(np.zeros((1, int(hgb.n_features_in_))))  # compile (or load) the kernel now
    return model


def _unwrap(estimator: Any) -> Any:
    return getattr(estimator, "estimator", estimator)


def _flatten(hgb: Any, calibrators: tuple[tuple[float, float], ...]) -> CompiledModel:
    features, thresholds, nan_right, lefts, values, covers = [], [], [], [], [], []
    roots, depths = [], []
    offset = 0
    for (predictor,) in hgb._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported by the compiled path")
        order, position = _renumber(nodes)
        leaf = nodes["is_leaf"][order].astype(bool)
        left = np.where(leaf, position[order], position[nodes["left"][order]])
        features.append(np.where(leaf, 0, nodes["feature_idx"][order]))
        thresholds.append(np.where(leaf, np.inf, nodes["num_threshold"][order]))
        nan_right.append(~np.where(leaf, True, nodes["missing_go_to_left"][order].astype(bool)))
        lefts.append(left + offset)
        values.append(np.where(leaf, nodes["value"][order], 0.0))
        covers.append(nodes["count"][order])
        roots.append(offset)
        depths.append(int(nodes["depth"].max()))
        offset += len(nodes)
    return CompiledModel(
        feature=np.concatenate(features).astype(np.intp),
        threshold=np.concatenate(thresholds).astype(np.float64),
        nan_right=np.concatenate(nan_right),
        left=np.concatenate(lefts).astype(np.intp),
        value=np.concatenate(values).astype(np.float64),
        roots=np.array(roots, dtype=np.intp),
        depths=np.array(depths, dtype=np.intp),
        baseline=float(np.ravel(hgb._baseline_prediction)[0]),
        calibrators=calibrators,
        cover=np.concatenate(covers).astype(np.float64),
    )


def _renumber(nodes: Any) -> tuple[IntArray, IntArray]:
    """Breadth-first order in which every right child directly follows its left sibling.

    Returns `order` (new index -> old index) and `position` (old index -> new index).
    """
    order = [0]
    for old in order:  # grows while iterating: a BFS
        if not nodes["is_leaf"][old]:
            order.extend((int(nodes["left"][old]), int(nodes["right"][old])))
    order_arr = np.array(order, dtype=np.intp)
    position = np.empty(len(nodes), dtype=np.intp)
    position[order_arr] = np.arange(len(order_arr))
    return order_arr, position
