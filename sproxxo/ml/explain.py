"""Exact feature contributions of the compiled trees: path-dependent TreeSHAP.

The model's raw score (log-odds, before calibration) is f(x) = baseline + sum over trees of
the leaf x reaches. For a set S of features, v(S) is f's expectation when the features of S
keep x's values and the others are unknown: at a split on a feature of S the walk follows
x; at any other split it takes both children, weighted by the share of the node's training
samples each received (the covers: cover[child] / cover[node]). Feature j's contribution is
its Shapley value in that game,

    phi_j = sum over S in F minus {j} of |S|! (|F| - |S| - 1)! / |F|! * (v(S + {j}) - v(S)),

and the contributions add up exactly: v({}) + sum_j phi_j = v(F) = f(x). v({}) is the base
value: the baseline plus each tree's leaf values weighted by the share of the training
samples that reached them.

`shap_values` computes every phi_j without enumerating subsets: Lundberg, Erion and Lee
(2018), "Consistent individualized feature attribution for tree ensembles", Algorithm 2, in
O(leaves * depth^2) per tree. One walk per tree carries the path's unique features, each
with the fraction of zero (cover-weighted) and one (x's way) paths through it and the
weights of every subset size; a feature met again lower on the path is merged with its
first occurrence (unwound, then extended with the product of both fractions). A missing
value (NaN) goes the way the model sends it (`nan_right`), as `CompiledModel.raw` does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from sproxxo.ml.compiled_trees import BoolArray, CompiledModel, FloatArray, IntArray


def _shap(
    x: FloatArray,
    feature: IntArray,
    threshold: FloatArray,
    nan_right: BoolArray,
    left: IntArray,
    value: FloatArray,
    cover: FloatArray,
    roots: IntArray,
    max_depth: int,
    out: FloatArray,
) -> None:  # pragma: no cover - runs compiled by numba (see `_kernel`)
    """out[i, j] += phi_j of row i, tree by tree (Algorithm 2 as an explicit stack).

    One function, because numba compiles it lazily (the module does not import numba) and
    a compiled function calls only compiled functions. The path of the node at tree depth
    `lv` lives in row `lv` of the path arrays (unique feature, zero fraction, one fraction,
    subset weight); `ud[lv]` is its last index. A child copies its parent's row, so the
    cold child, visited after the hot child's whole subtree, finds that row intact. Every
    one fraction is 0 or 1 (x's way or not), which gives the leaf step its shortcut: all
    the elements x does not reach share one contribution, -(d + 1) * sum_k w_k / (d - k).
    """
    size = max_depth + 2
    pf = np.empty((size, size), dtype=np.intp)
    pz = np.empty((size, size), dtype=np.float64)
    po = np.empty((size, size), dtype=np.float64)
    pw = np.empty((size, size), dtype=np.float64)
    ud = np.empty(size, dtype=np.intp)
    inv = 1.0 / np.arange(1, size + 2, dtype=np.float64)  # inv[k] = 1 / (k + 1)
    s_node = np.empty(2 * size, dtype=np.intp)
    s_lv = np.empty(2 * size, dtype=np.intp)
    s_z = np.empty(2 * size, dtype=np.float64)
    s_o = np.empty(2 * size, dtype=np.float64)
    s_f = np.empty(2 * size, dtype=np.intp)
    for r in range(x.shape[0]):
        for t in range(roots.shape[0]):
            s_node[0], s_lv[0], s_z[0], s_o[0], s_f[0] = roots[t], 0, 1.0, 1.0, -1
            top = 1
            while top > 0:
                top -= 1
                nd, lv, z, o = s_node[top], s_lv[top], s_z[top], s_o[top]
                # the parent's path, extended with the split that led here
                d = 0 if lv == 0 else ud[lv - 1] + 1
                for i in range(d):
                    pf[lv, i] = pf[lv - 1, i]
                    pz[lv, i] = pz[lv - 1, i]
                    po[lv, i] = po[lv - 1, i]
                    pw[lv, i] = pw[lv - 1, i]
                pf[lv, d], pz[lv, d], po[lv, d] = s_f[top], z, o
                pw[lv, d] = 1.0 if d == 0 else 0.0
                scale = inv[d]
                for i in range(d - 1, -1, -1):
                    pw[lv, i + 1] += o * pw[lv, i] * (i + 1) * scale
                    pw[lv, i] = z * pw[lv, i] * (d - i) * scale
                if left[nd] == nd:  # a leaf: every path element gets its share
                    v = value[nd]
                    cold = 0.0
                    has_cold = False
                    for i in range(1, d + 1):
                        if po[lv, i] == 0.0:
                            has_cold = True
                            continue
                        zi = pz[lv, i]
                        nxt = pw[lv, d]
                        total = 0.0
                        for k in range(d - 1, -1, -1):
                            step = nxt * inv[k]
                            total += step
                            nxt = pw[lv, k] - step * zi * (d - k)
                        out[r, pf[lv, i]] += total * (d + 1) * (1.0 - zi) * v
                    if has_cold:
                        for k in range(d):
                            cold += pw[lv, k] * inv[d - k - 1]
                        cold *= -(d + 1) * v
                        for i in range(1, d + 1):
                            if po[lv, i] == 0.0:
                                out[r, pf[lv, i]] += cold
                    continue
                split = feature[nd]
                xv = x[r, split]
                hot = left[nd] + ((xv > threshold[nd]) | ((xv != xv) & nan_right[nd]))
                other = 2 * left[nd] + 1 - hot
                iz, io = 1.0, 1.0
                k = 1
                while k <= d and pf[lv, k] != split:
                    k += 1
                if k <= d:  # met before on this path: undo it, the children redo it merged
                    iz, io = pz[lv, k], po[lv, k]
                    nxt = pw[lv, d]
                    for i in range(d - 1, -1, -1):
                        if io != 0.0:
                            held = pw[lv, i]
                            pw[lv, i] = nxt * (d + 1) / ((i + 1) * io)
                            nxt = held - pw[lv, i] * iz * (d - i) / (d + 1)
                        else:
                            pw[lv, i] = pw[lv, i] * (d + 1) / (iz * (d - i))
                    for i in range(k, d):
                        pf[lv, i] = pf[lv, i + 1]
                        pz[lv, i] = pz[lv, i + 1]
                        po[lv, i] = po[lv, i + 1]
                    d -= 1
                ud[lv] = d
                s_node[top], s_lv[top], s_f[top] = other, lv + 1, split
                s_z[top], s_o[top] = cover[other] / cover[nd] * iz, 0.0
                s_node[top + 1], s_lv[top + 1], s_f[top + 1] = hot, lv + 1, split
                s_z[top + 1], s_o[top + 1] = cover[hot] / cover[nd] * iz, io
                top += 2


@cache
def _kernel() -> Callable[..., None]:
    """`_shap` compiled once per process and cached on disk, like `compiled_trees._kernel`
    (without a writable cache it compiles at every start instead)."""
    import numba  # imported here: only scoring needs it, and compiled_trees already did

    try:
        kernel: Callable[..., None] = numba.njit(nogil=True, cache=True)(_shap)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        kernel = numba.njit(nogil=True)(_shap)
    return kernel


def can_explain(model: CompiledModel) -> bool:
    """Whether the model carries its node covers (bundles written before them do not)."""
    return model.cover is not None


def base_value(model: CompiledModel) -> float:
    """The expected raw score under the covers: the baseline plus every leaf's value times
    the share of its tree's training samples that reached it. Raises ValueError without
    covers."""
    cover = _covers(model)
    sizes = np.diff(np.append(model.roots, len(model.left)))
    root_cover = np.repeat(cover[model.roots], sizes)
    leaf = model.left == np.arange(len(model.left))
    return model.baseline + float(np.sum(model.value[leaf] * cover[leaf] / root_cover[leaf]))


def shap_values(model: CompiledModel, x: FloatArray) -> FloatArray:
    """Each row's contribution of every feature (columns of `x`) to its raw score, in
    log-odds: `base_value(model) + shap_values(model, x).sum(axis=1)` is `model.raw(x)`
    (up to rounding). Raises ValueError without covers."""
    cover = _covers(model)
    rows = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(rows.shape, dtype=np.float64)
    _kernel()(
        rows,
        model.feature,
        model.threshold,
        model.nan_right,
        model.left,
        model.value,
        cover,
        model.roots,
        int(model.depths.max(initial=0)),
        out,
    )
    return out


def _covers(model: CompiledModel) -> FloatArray:
    if model.cover is None:
        raise ValueError("the compiled model has no node covers (written before they were)")
    return model.cover
