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

`shap_values` computes every phi_j without enumerating subsets. For one leaf l with value
v_l, reached by the path P_l (each feature on it once, a feature met again merged: its
cover fractions multiplied, and "x goes this way" required at every split on it), let z_k
be feature k's cover fraction along P_l and o_k 1 when x follows the path at every split on
k, else 0. The Shapley weights |S|! (d - |S| - 1)! / d! are Beta integrals, so the leaf's
share of phi_j is (Yu et al., "Linear TreeShap", NeurIPS 2022)

    v_l (o_j - z_j) * integral over [0, 1] of  prod over k in P_l, k != j of
                                                (z_k + (o_k - z_k) y) dy,

a polynomial of degree < depth, integrated exactly by Gauss-Legendre with 4 points for
trees up to 8 deep (`MAX_DEPTH`; a deeper model serves without explanations).
Every leaf below an edge on feature j shares that edge's (z_j, o_j) unless j is split on
again lower down, so phi_j needs, per edge, the sum over its leaves of v_l times their
path products, less the part below a deeper edge on j: one pass down each tree (the path
products at every node) and one pass up (the sums), O(nodes * points) per tree, with no
division per row: every factor and its inverse depends only on the model and on o in
{0, 1}, so `Tables` holds them. A missing value (NaN) goes the way the model sends it
(`nan_right`), as `CompiledModel.raw` does. (Lundberg, Erion and Lee 2018's Algorithm 2,
used before, costs O(leaves * depth^2) per tree: 2.4-3x slower here, same values to 5e-14.)

Several rows are explained `BLOCK` at a time (`_shap_blocks`): each node's tables are read
once for the block instead of once per row, 0.65-0.72x the row kernel's time a row in calls
of 16 to 64 rows (a batch's reviews and declines, the micro-batcher's calls), 0.95x at 4;
one to three rows take the row kernel (`_shap`), as the block kernel's loops make a single
row 1.8x slower. Both run the same operations in the same order for a row: the same floats,
bit for bit (tests). Each kernel has its own background-load step (`sproxxo.kernels`): a
one-row review waits for the row kernel only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from sproxxo import jit
from sproxxo.ml.compiled_trees import BoolArray, CompiledModel, FloatArray, IntArray

#: Gauss-Legendre points: exact for path polynomials of degree < 2 * _POINTS, so for trees
#: up to `MAX_DEPTH` deep (the training recipe's `max_depth` is 8). A constant, so the
#: compiled loops over the points are unrolled.
_POINTS = 4
MAX_DEPTH = 2 * _POINTS
#: Rows the block kernel explains together (its scratch for trees of 31 leaves: 3 arrays of
#: 61 nodes x BLOCK rows x 4 points, ~94 KiB at 16), and the fewest rows a call sends it.
#: Paired with the row kernel on the default model (200 trees), time a row: one row 1.8x,
#: 4 rows 0.95x, 16 to 64 rows 0.65-0.72x (`load/explain_bench.py`, README).
BLOCK = 16
FEWEST_BLOCKED = 4


def _shap(
    x: FloatArray,
    starts: IntArray,
    parent: IntArray,
    children: IntArray,
    value: FloatArray,
    edge_feature: IntArray,
    threshold: FloatArray,
    nan_right: BoolArray,
    is_right: BoolArray,
    prev: IntArray,
    zero: FloatArray,
    factor: FloatArray,
    inverse: FloatArray,
    weighted: FloatArray,
    out: FloatArray,
) -> None:  # pragma: no cover - runs compiled by numba (see `_kernel`)
    """out[i, j] += phi_j of row i. Every array is in preorder position (`Tables`), so both
    passes read memory in sequence.

    Down (preorder): each node's o (x follows its edge, and every edge above on the same
    feature) and its path product at every quadrature point, from its parent's (a feature
    met again: its earlier factor divided out by its stored inverse). Up (reverse
    preorder, so children come before parents): each node's leaf sum S, and the edge's
    share (o - z) * sum_q w_q (S - X) / factor to phi of the edge's feature, where X is
    what deeper edges on the same feature took; then S joins the upper edge's X.

    Positions and o are unsigned: numba checks every signed index for a negative value
    (Python's wrap-around), which cost a quarter of the kernel; -1 marks stay signed.
    """
    m = _POINTS  # a constant: numba unrolls the point loops (1.5x)
    size = 1
    for t in range(starts.shape[0] - 1):
        size = max(size, starts[t + 1] - starts[t])
    g = np.empty((size, m))  # per tree, by position in it: stays in L1 cache
    sums = np.empty((size, m))
    taken = np.zeros((size, m))
    hot = np.empty(size, dtype=np.uint64)
    one, nil = np.uint64(1), np.uint64(0)
    for r in range(x.shape[0]):
        row, phi = x[r], out[r]
        for t in range(starts.shape[0] - 1):
            s0, s1 = np.uint64(starts[t]), np.uint64(starts[t + 1])
            for q in range(m):
                g[0, q] = 1.0
            c = s0 + one
            while c < s1:
                lc, lp = c - s0, np.uint64(parent[c]) - s0
                v = row[np.uint64(edge_feature[c])]
                if v != v and not nan_right[c]:
                    v = -np.inf  # NaN goes left: compared as `CompiledModel.raw` does
                right = not v <= threshold[c]
                o = one if right == is_right[c] else nil
                e = prev[c]
                if e >= 0:
                    above = hot[np.uint64(e) - s0]
                    o &= above
                    for q in range(m):
                        g[lc, q] = g[lp, q] * inverse[above, np.uint64(e), q] * factor[o, c, q]
                else:
                    for q in range(m):
                        g[lc, q] = g[lp, q] * factor[o, c, q]
                hot[lc] = o
                c += one
            c = s1
            while c > s0:
                c -= one
                lc, k = c - s0, children[c]
                if k < 0:
                    for q in range(m):
                        sums[lc, q] = value[c] * g[lc, q]
                else:
                    right_child = np.uint64(k) - s0
                    for q in range(m):
                        sums[lc, q] = sums[lc + one, q] + sums[right_child, q]
                if c == s0:
                    continue
                o = hot[lc]
                acc = 0.0
                for q in range(m):
                    acc += (sums[lc, q] - taken[lc, q]) * weighted[o, c, q]
                    taken[lc, q] = 0.0  # ready for the next tree
                phi[np.uint64(edge_feature[c])] += (float(o) - zero[c]) * acc
                e = prev[c]
                if e >= 0:
                    for q in range(m):
                        taken[np.uint64(e) - s0, q] += sums[lc, q]


def _shap_blocks(
    x: FloatArray,
    starts: IntArray,
    parent: IntArray,
    children: IntArray,
    value: FloatArray,
    edge_feature: IntArray,
    threshold: FloatArray,
    nan_right: BoolArray,
    is_right: BoolArray,
    prev: IntArray,
    zero: FloatArray,
    factor: FloatArray,
    inverse: FloatArray,
    weighted: FloatArray,
    out: FloatArray,
) -> None:  # pragma: no cover - runs compiled by numba (see `_block_kernel`)
    """`_shap` over `BLOCK` rows at a time: each node's tables are read once per block,
    and every row of the block then takes exactly `_shap`'s steps (same operations, same
    order, so the same floats). The block's feature values are copied by column first, so
    each node reads its feature's values in sequence."""
    m, width = _POINTS, BLOCK
    size = 1
    for t in range(starts.shape[0] - 1):
        size = max(size, starts[t + 1] - starts[t])
    g = np.empty((size, width, m))  # [position in the tree, row of the block, point]
    sums = np.empty((size, width, m))
    taken = np.zeros((size, width, m))
    hot = np.empty((size, width), dtype=np.uint64)
    block = np.empty((x.shape[1], width))  # [feature, row of the block]
    one, nil = np.uint64(1), np.uint64(0)
    for r0 in range(0, x.shape[0], width):
        rows = np.uint64(min(width, x.shape[0] - r0))
        for b in range(rows):
            for j in range(x.shape[1]):
                block[j, b] = x[np.uint64(r0) + b, j]
        for t in range(starts.shape[0] - 1):
            s0, s1 = np.uint64(starts[t]), np.uint64(starts[t + 1])
            for b in range(rows):
                for q in range(m):
                    g[0, b, q] = 1.0
            c = s0 + one
            while c < s1:
                lc, lp = c - s0, np.uint64(parent[c]) - s0
                f, split, nan_goes_right, right_edge = (
                    np.uint64(edge_feature[c]), threshold[c], nan_right[c], is_right[c]
                )  # fmt: skip
                e = prev[c]
                if e >= 0:
                    ue = np.uint64(e)
                    le = ue - s0
                    for b in range(rows):
                        v = block[f, b]
                        if v != v and not nan_goes_right:
                            v = -np.inf
                        right = not v <= split
                        o = one if right == right_edge else nil
                        above = hot[le, b]
                        o &= above
                        for q in range(m):
                            g[lc, b, q] = g[lp, b, q] * inverse[above, ue, q] * factor[o, c, q]
                        hot[lc, b] = o
                else:
                    for b in range(rows):
                        v = block[f, b]
                        if v != v and not nan_goes_right:
                            v = -np.inf
                        right = not v <= split
                        o = one if right == right_edge else nil
                        for q in range(m):
                            g[lc, b, q] = g[lp, b, q] * factor[o, c, q]
                        hot[lc, b] = o
                c += one
            c = s1
            while c > s0:
                c -= one
                lc, k = c - s0, children[c]
                if k < 0:
                    leaf = value[c]
                    for b in range(rows):
                        for q in range(m):
                            sums[lc, b, q] = leaf * g[lc, b, q]
                else:
                    la, lr = lc + one, np.uint64(k) - s0
                    for b in range(rows):
                        for q in range(m):
                            sums[lc, b, q] = sums[la, b, q] + sums[lr, b, q]
                if c == s0:
                    continue
                f, z = np.uint64(edge_feature[c]), zero[c]
                for b in range(rows):
                    o = hot[lc, b]
                    acc = 0.0
                    for q in range(m):
                        acc += (sums[lc, b, q] - taken[lc, b, q]) * weighted[o, c, q]
                        taken[lc, b, q] = 0.0  # ready for the next tree
                    out[np.uint64(r0) + b, f] += (float(o) - z) * acc
                e = prev[c]
                if e >= 0:
                    le = np.uint64(e) - s0
                    for b in range(rows):
                        for q in range(m):
                            taken[le, b, q] += sums[lc, b, q]


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


@cache
def _block_kernel() -> Callable[..., None]:
    """`_shap_blocks` compiled once per process and cached on disk, as `_kernel`."""
    import numba

    try:
        kernel: Callable[..., None] = numba.njit(nogil=True, cache=True)(_shap_blocks)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        kernel = numba.njit(nogil=True)(_shap_blocks)
    return kernel


def can_explain(model: CompiledModel) -> bool:
    """Whether the model carries its node covers (bundles written before them do not) and
    its trees are no deeper than `MAX_DEPTH` (the training recipe's `max_depth`)."""
    return model.cover is not None and int(model.depths.max(initial=0)) <= MAX_DEPTH


def base_value(model: CompiledModel) -> float:
    """The expected raw score under the covers: the baseline plus every leaf's value times
    the share of its tree's training samples that reached it. Raises ValueError without
    covers."""
    cover = _covers(model)
    sizes = np.diff(np.append(model.roots, len(model.left)))
    root_cover = np.repeat(cover[model.roots], sizes)
    leaf = model.left == np.arange(len(model.left))
    return model.baseline + float(np.sum(model.value[leaf] * cover[leaf] / root_cover[leaf]))


@dataclass(frozen=True)
class Tables:
    """What `_shap` needs of a model, computed once per model (`tables`), every array
    indexed by preorder position (trees one after the other): a node's left child is the
    next position. A node's edge is its parent's split (roots have none)."""

    starts: IntArray  # each tree's first position, then the total
    parent: IntArray  # the parent's position, -1 for a root
    children: IntArray  # the right child's position, -1 for a leaf
    value: FloatArray  # the leaf value
    edge_feature: IntArray  # the feature the parent splits on
    threshold: FloatArray  # the parent's threshold
    nan_right: BoolArray  # the parent sends NaN right
    is_right: BoolArray  # the node is its parent's right child
    prev: IntArray  # the nearest edge above on the same feature (-1: none)
    zero: FloatArray  # z: the product of cover[child] / cover[parent] over those edges
    factor: FloatArray  # [o, c, q]: z + (o - z) * y_q
    inverse: FloatArray  # 1 / factor
    weighted: FloatArray  # w_q / factor


def tables(model: CompiledModel) -> Tables:
    """The model's `Tables`. Raises ValueError without covers or with an empty node."""
    cover = _covers(model)
    if np.any(cover <= 0):
        raise ValueError("explanations need every node's training-sample count above zero")
    if int(model.depths.max(initial=0)) > MAX_DEPTH:
        raise ValueError(f"explanations need trees of depth <= {MAX_DEPTH}")
    order, parent, prev = _preorder(model)
    position = np.empty(len(order), dtype=np.intp)
    position[order] = np.arange(len(order))
    internal = model.left[order] != order
    up = np.where(parent >= 0, order[np.maximum(parent, 0)], 0)  # the parent's node id
    ratio = np.where(parent >= 0, cover[order] / cover[up], 1.0)
    zero = ratio.copy()
    for c in range(len(order)):  # preorder: an edge's earlier edge on its feature is done first
        if prev[c] >= 0:
            zero[c] = ratio[c] * zero[prev[c]]
    points, weights = np.polynomial.legendre.leggauss(_POINTS)
    y, w = (points + 1.0) / 2.0, weights / 2.0
    factor = np.stack([zero[:, None] * (1.0 - y), zero[:, None] + (1.0 - zero[:, None]) * y])
    return Tables(
        starts=np.append(np.flatnonzero(parent < 0), len(order)).astype(np.intp),
        parent=parent,
        children=np.where(internal, position[np.where(internal, model.left[order] + 1, 0)], -1),
        value=model.value[order],
        edge_feature=np.where(parent >= 0, model.feature[up], 0).astype(np.intp),
        threshold=model.threshold[up],
        nan_right=model.nan_right[up],
        is_right=(parent >= 0) & (model.left[up] != order),
        prev=prev,
        zero=zero,
        factor=factor,
        inverse=1.0 / factor,
        weighted=w / factor,
    )


def _preorder(model: CompiledModel) -> tuple[IntArray, IntArray, IntArray]:
    """Every tree's nodes in preorder (left child first), and by position: the parent's
    position and the nearest edge above on the same feature (-1: none)."""
    order: list[int] = []
    parent: list[int] = []
    prev: list[int] = []
    for root in model.roots.tolist():
        stack: list[tuple[int, int, dict[int, int]]] = [(root, -1, {})]
        while stack:
            node, up, seen = stack.pop()
            here = len(order)
            order.append(node)
            parent.append(up)
            if up >= 0:
                feature = int(model.feature[order[up]])
                prev.append(seen.get(feature, -1))
                seen = {**seen, feature: here}
            else:
                prev.append(-1)
            left = int(model.left[node])
            if left != node:
                stack.extend(((left + 1, here, seen), (left, here, seen)))
    return (np.asarray(order, dtype=np.intp), np.asarray(parent, dtype=np.intp),
            np.asarray(prev, dtype=np.intp))  # fmt: skip


def shap_values(
    model: CompiledModel, x: FloatArray, *, prepared: Tables | None = None
) -> FloatArray:
    """Each row's contribution of every feature (columns of `x`) to its raw score, in
    log-odds: `base_value(model) + shap_values(model, x).sum(axis=1)` is `model.raw(x)`
    (up to rounding). `prepared`: the model's `tables`, when the caller keeps them. Raises
    ValueError without covers."""
    t = prepared if prepared is not None else tables(model)
    rows = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(rows.shape, dtype=np.float64)
    blocked = len(rows) >= FEWEST_BLOCKED
    # no interpreted twin: ~0.25 ms a row is the kernel's cost
    jit.wait("explanation blocks" if blocked else "explanations")
    kernel = _block_kernel() if blocked else _kernel()
    kernel(
        rows,
        t.starts,
        t.parent,
        t.children,
        t.value,
        t.edge_feature,
        t.threshold,
        t.nan_right,
        t.is_right,
        t.prev,
        t.zero,
        t.factor,
        t.inverse,
        t.weighted,
        out,
    )
    return out


def _covers(model: CompiledModel) -> FloatArray:
    if model.cover is None:
        raise ValueError("the compiled model has no node covers (written before they were)")
    return model.cover
