"""k-nearest-neighbour estimators (adaptive binning), in bits.

* Kozachenko-Leonenko entropy (Euclidean balls)::

      H(T) = psi(n) - psi(k) + log V_d + (d / n) sum_i log eps_i      [nats]

  eps_i the distance from t_i to its k-th neighbour, V_d = pi^{d/2} /
  Gamma(d/2 + 1) the volume of the unit d-ball. Duplicate rows give eps_i = 0;
  the distance is floored at ``min_dist`` so the result stays finite (and
  very negative: a point mass has differential entropy -inf).

* Kraskov-Stoegbauer-Grassberger estimator 1 (Kraskov et al. 2004, eq. 8)::

      I(A;B) = psi(k) + psi(n) - < psi(n_a + 1) + psi(n_b + 1) >          [nats]

  eps_i = distance to the k-th neighbour in the joint space, where the joint
  distance is the larger of the two marginal distances, n_a the number of
  j != i with d_A(a_i, a_j) < eps_i (strict), likewise n_b. ``metric='max'``
  takes max-norm marginals (the paper's choice: the joint distance is the
  max-norm in the joint space); ``metric='euclidean'`` takes Euclidean
  marginals, as the KSG of the "Beyond Normal" MI benchmark (Czyz et al.
  2023, ``bmi.estimators.KSGEnsembleFirstEstimator``) does. Ties give
  eps_i = 0 and n_a = 0: finite.

* Ross (2014), continuous T and discrete labels Y::

      I(T;Y) = psi(n) + <psi(k)> - <psi(n_y)> - <psi(m_i)>                [nats]

  r_i = Euclidean distance to the k-th neighbour among the n_y points of the
  same label, m_i = #{j : ||t_j - t_i|| < r_i} counting i itself (all points
  at distance 0 when r_i = 0), as in scikit-learn's ``mutual_info_classif``.
  Labels with fewer than 2 points are left out, as there.

Results are converted to bits. Like the references, KSG and Ross are not
clipped at 0: a negative value is the estimator's bias, reported as is.

How the k-th neighbour is found (the algorithm is chosen by shape)
-------------------------------------------------------------------
*Dense* (any width): pairwise distances in row blocks (``lax.map``), so
memory is O(block * n), never O(n^2). Within a block the n columns are split
into G groups of g; one fused pass takes each group's minimum, the k groups
with the smallest minima are kept (k rounds over G << n values) and the k-th
smallest is taken among their k * g entries. Exact: the k smallest entries
of a row lie in the k groups with the smallest minima or, where they do not,
those k groups hold k entries no larger than the k-th smallest (each group
minimum is one). This replaces k full passes over the row (the previous
selection) with one.

*Cells* (d <= 3, n >= ``CELLS_MIN_N``): a static-shape kd-like structure
built with single-key sorts. Points are sorted by the first coordinate and
cut into slabs of equal count, each slab sorted by the second coordinate
(and, at d = 3, cut again into cells sorted by the third). Each point takes
as candidates a window of 2W points around its own position in the leaf
lists of the neighbouring slabs/cells (``reach`` on each side), and its
k-th candidate distance r_i. Every point outside the candidates lies beyond
one of the excluded slabs, cells or window ends, whose coordinate gap
lower-bounds its distance; if r_i <= the smallest such gap, r_i is exact.
The few rows where it is not are recomputed densely (``lax.while_loop`` over
chunks). Results equal the dense path up to float rounding (tested).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from ib_jax.estimators._common import (
    DIRECT_MAX_DIM,
    blocked_rows,
    centered,
    check_k,
    check_rank,
    check_same_length,
    default_block,
    kth_smallest,
    nan_unless_finite,
    sq_distances,
    to_bits,
)

__all__ = [
    "knn_entropy",
    "ksg_mutual_information",
    "knn_mutual_information_discrete",
    "knn_distances",
    "SEARCHES",
    "KSG_METRICS",
    "CELLS_MAX_DIM",
    "CELLS_MIN_N",
]

SEARCHES = ("auto", "dense", "cells")
KSG_METRICS = ("max", "euclidean")
CELLS_MAX_DIM = 3  # the cells search covers 1 <= d <= 3
CELLS_MIN_N = 1024  # below this the dense search is as fast (measured) and simpler
_FALLBACK_ROWS = 64  # unresolved rows recomputed densely per while_loop iteration
_BIG = 1e30  # coordinate of padding points: farther than any real point


# --------------------------------------------------------------- dense search


def _group_shape(n: int, k: int) -> tuple[int, int]:
    """(g, G): G groups of g columns, g * G >= n, G > k. g ~ sqrt(n / k) balances the
    k selection rounds over G group minima against the k * g gathered entries."""
    g = 1
    while g < 64 and 4 * g * g * k <= n:
        g *= 2
    return g, -(-n // g)


def _select_kth(tile: jax.Array, rows: jax.Array, n: int, k: int, g: int, n_groups: int) -> jax.Array:
    """k-th smallest entry of each row of ``tile`` ``(b, g * G)`` over valid columns j != rows.

    Column j sits at ``[j // G, j % G]`` of the ``(b, g, G)`` view, so a group
    (fixed j % G) is a strided set and its minimum is an elementwise min over
    g contiguous slabs (vectorizes). Columns >= n are padding.
    """
    b = tile.shape[0]
    t3 = tile.reshape(b, g, n_groups)
    col = jnp.arange(g)[:, None] * n_groups + jnp.arange(n_groups)[None, :]
    invalid = (col[None] == rows[:, None, None]) | (col[None] >= n)
    gmin = jnp.min(jnp.where(invalid, jnp.inf, t3), axis=1)
    gi = jnp.arange(n_groups)
    picks, live = [], []
    for _ in range(k):  # k distinct groups: min, first index of it, mask it
        m = jnp.min(gmin, axis=1, keepdims=True)
        q = jnp.min(jnp.where(gmin == m, gi[None], n_groups), axis=1)
        q = jnp.minimum(q, n_groups - 1)
        picks.append(q)
        live.append(m[:, 0] < jnp.inf)  # fewer than k non-empty groups: all of them are picked
        gmin = jnp.where(gi[None] == q[:, None], jnp.inf, gmin)
    q = jnp.stack(picks, axis=1)
    vals = jnp.take_along_axis(t3, q[:, None, :], axis=2)  # (b, g, k)
    cols = jnp.arange(g)[None, :, None] * n_groups + q[:, None, :]
    bad = (cols == rows[:, None, None]) | (cols >= n) | ~jnp.stack(live, axis=1)[:, None, :]
    return kth_smallest(jnp.where(bad, jnp.inf, vals).reshape(b, g * k), k)


def _pad_to(x: jax.Array, n_pad: int) -> jax.Array:
    return jnp.pad(x, ((0, n_pad - x.shape[0]), (0, 0)))


def _chebyshev(a_rows: jax.Array, a: jax.Array) -> jax.Array:
    """Max-norm distances ``(len(a_rows), len(a))``; columns in unrolled chunks of 16 (one
    fused pass per chunk instead of one per column)."""
    d = a.shape[1]
    acc = jnp.zeros((a_rows.shape[0], a.shape[0]), a.dtype)
    for c0 in range(0, d, 16):
        part = acc
        for c in range(c0, min(d, c0 + 16)):
            part = jnp.maximum(part, jnp.abs(a_rows[:, c][:, None] - a[:, c][None, :]))
        acc = part
    return acc


def _direct_sq(a_rows: jax.Array, a: jax.Array) -> jax.Array:
    """Exact squared Euclidean distances, summed column by column (narrow data)."""
    out = jnp.zeros((a_rows.shape[0], a.shape[0]), jnp.float32)
    for c in range(a.shape[1]):
        out = out + jnp.square(a_rows[:, c][:, None] - a[:, c][None, :])
    return out


class _SqEuclid:
    """Squared Euclidean distances of one data set, for the dense search.

    Narrow data (d <= DIRECT_MAX_DIM): exact column sums (float32 cancellation
    in the matmul form biases near neighbours, see ``sq_distances``). Wide
    data: one matmul of augmented rows, ``[t_i, 1] . [-2 t_j, |t_j|^2] =
    |t_i - t_j|^2 - |t_i|^2``; the row constant |t_i|^2 does not change the
    order within a row, so it is added after the selection.
    """

    def __init__(self, t: jax.Array, n_pad: int):
        self.t = centered(t)
        self.direct = t.shape[1] <= DIRECT_MAX_DIM
        self.sq = jnp.sum(self.t * self.t, axis=1)
        if self.direct:
            self.cols = _pad_to(self.t, n_pad)
        else:
            self.cols = _pad_to(jnp.concatenate([-2.0 * self.t, self.sq[:, None]], axis=1), n_pad)

    def tile(self, rows: jax.Array) -> jax.Array:
        if self.direct:
            return _direct_sq(self.t[rows], self.cols)
        aug = jnp.concatenate([self.t[rows], jnp.ones((rows.shape[0], 1), jnp.float32)], axis=1)
        return aug @ self.cols.T

    def finish(self, rows: jax.Array, v: jax.Array) -> jax.Array:
        """Selected tile values ``(b,)`` -> squared distances."""
        return v if self.direct else jnp.maximum(v + self.sq[rows], 0.0)

    def full(self, rows: jax.Array) -> jax.Array:
        """Squared distances ``(b, n_pad)`` (the row constant added back)."""
        v = self.tile(rows)
        return v if self.direct else jnp.maximum(v + self.sq[rows][:, None], 0.0)


def _dense_kth_sq(t: jax.Array, k: int, block: int | None) -> jax.Array:
    """Squared distance from each row to its k-th nearest other row, dense search ``(n,)``."""
    n, d = t.shape
    g, n_groups = _group_shape(n, k)
    dist = _SqEuclid(t, g * n_groups)
    block = block or default_block(g * n_groups, d)

    def fn(rows):
        return dist.finish(rows, _select_kth(dist.tile(rows), rows, n, k, g, n_groups))

    return blocked_rows(fn, n, block)()


# --------------------------------------------------------------- cells search


def _bits(m: int) -> int:
    """Bits to hold 0 .. m - 1 (at least 1)."""
    return max(1, (max(m, 2) - 1).bit_length())


def _cells_layout(n: int, dim: int, k: int) -> tuple[tuple[int, ...], int, int, int]:
    """(cells per level, leaf size P, half window W, reach) for the cells search.

    Tuned on Gaussian, uniform, correlated and clustered data (scripts/bench_estimators.py,
    tests/test_estimator_speedpaths.py): slabs of ~sqrt(n k) points leave few rows
    unresolved in 2-D; 3-D uses cells of ~(n k)^(1/3)-ish per side.
    """
    w = max(k + 1, 4) if dim == 1 else max(k + 3, 8)
    if dim == 1:
        return (), n, w, 0
    if dim == 2:
        target = max(2 * w, int(round(4 * math.sqrt(n * k))))
        c0 = max(1, int(round(n / target)))
        return (c0,), -(-n // c0), w, 2
    per = max(1, int(round((n / max(2 * w, 8 * k)) ** 0.5 / 2)))
    return (per, per), -(-n // (per * per)), w, 1


def _prefix_max(x: jax.Array) -> jax.Array:
    """Running max along the last axis (short axes: a masked max, no scan)."""
    c = x.shape[-1]
    tri = jnp.arange(c)[None, :] <= jnp.arange(c)[:, None]  # [out, in]: in <= out
    return jnp.max(jnp.where(tri, x[..., None, :], -jnp.inf), axis=-1)


def _suffix_min(x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    tri = jnp.arange(c)[None, :] >= jnp.arange(c)[:, None]
    return jnp.min(jnp.where(tri, x[..., None, :], jnp.inf), axis=-1)


def _take_clipped(x: jax.Array, idx: jax.Array, fill: float) -> jax.Array:
    """``x[..., idx]`` along the last axis with ``fill`` where idx is out of range."""
    c = x.shape[-1]
    ok = (idx >= 0) & (idx < c)
    v = jnp.take_along_axis(x, jnp.clip(idx, 0, c - 1), axis=-1)
    return jnp.where(ok, v, fill)


def _cells_kth(x: jax.Array, k: int, dist_fn, fallback_fn, layout, with_exact: bool = False):
    """k-th neighbour distance of every row of ``x`` ``(n, D)``, D <= 3, by the cells search.

    ``dist_fn(q (..., D), c (..., D)) -> (...)`` is the metric; every coordinate
    difference must lower-bound it (true for Euclidean, max-norm and a max of
    per-block Euclidean norms). ``fallback_fn(rows) -> (b,)`` gives the exact
    answer for original rows ``rows`` (dense search), used where the local
    candidates cannot be proven complete. ``with_exact`` also returns which
    rows the local candidates resolved ``(n,)`` (for tests and tuning).
    """
    n, dim = x.shape
    cells, leaf, w, reach = layout
    w = max(1, min(w, leaf // 2))
    n_cells = math.prod(cells)
    n_pad = n_cells * leaf
    x = x - jnp.min(x, axis=0)  # shifted to >= 0: codes and gap bounds in one frame
    span = jnp.max(x, axis=0)
    xp = jnp.concatenate([x, jnp.full((n_pad - n, dim), _BIG, jnp.float32)], axis=0)
    order = jnp.arange(n_pad)

    # level l sorts within rows of `size` points by coordinate l; each point's code is
    # a q-bit fixed-point coordinate, packed above its position so one single-key uint32
    # sort (XLA CPU's fast path) gives the permutation. Ties within one code are
    # broken by position: exact order is not needed, the bounds below are conservative.
    scales = []
    extents = []  # per cell level: (min, max) of that level's coordinate over each cell
    leaf_codes = None
    for level in range(dim):
        rows = math.prod(cells[:level])
        size = n_pad // rows
        pos_bits = _bits(size)
        q_bits = min(22, 32 - pos_bits)  # 22 bits: float32 holds the scaled value to < 1/4 code
        scale = (2.0**q_bits - 1.0) / jnp.where(span[level] > 0, span[level], 1.0)
        scales.append(scale)
        q = jnp.clip(jnp.floor(xp[:, level] * scale), 0, 2**q_bits - 1).astype(jnp.uint32)
        key = (q.reshape(rows, size) << jnp.uint32(pos_bits)) | jnp.arange(size, dtype=jnp.uint32)
        key = jnp.sort(key, axis=-1)
        perm = (key & jnp.uint32((1 << pos_bits) - 1)).astype(jnp.int32)
        xp = jnp.take_along_axis(xp.reshape(rows, size, dim), perm[..., None], axis=1).reshape(n_pad, dim)
        order = jnp.take_along_axis(order.reshape(rows, size), perm, axis=1).reshape(n_pad)
        if level < dim - 1:
            shape = cells[: level + 1] + (size // cells[level],)
            coord = xp[:, level].reshape(shape)
            extents.append((jnp.min(coord, axis=-1), jnp.max(coord, axis=-1)))
        else:
            leaf_codes = (key >> jnp.uint32(pos_bits)).reshape(n_cells, leaf)
    leaf_scale = scales[-1]
    flat_codes = leaf_codes.reshape(-1).astype(jnp.float32)  # < 2**22: exact in float32

    prefix_max = [_prefix_max(hi) for _, hi in extents]
    suffix_min = [_suffix_min(lo) for lo, _ in extents]
    offsets = jnp.arange(-reach, reach + 1)
    xq_all = xp

    def query(pos):
        """k-th candidate distance and its exactness bound for sorted positions ``pos`` (b,)."""
        b = pos.shape[0]
        xq = xq_all[pos]  # (b, D)
        gap = jnp.full((b,), jnp.inf)
        # paths: (b, P) tuples of cell indices per level so far, and validity
        path = jnp.zeros((b, 1), jnp.int32)  # flat index of the parent cell
        valid = jnp.ones((b, 1), bool)
        for level in range(dim - 1):
            c_l = cells[level]
            lo_l, hi_l = extents[level]
            lo_l = lo_l.reshape(-1, c_l)
            pm = prefix_max[level].reshape(-1, c_l)
            sm = suffix_min[level].reshape(-1, c_l)
            if level == 0:
                own = pos // (n_pad // c_l)  # the query's own slab
                centre = own[:, None]
            else:
                # the cell of the parent that contains the query's coordinate (by cell minima)
                mins = lo_l[path]  # (b, P, c_l)
                centre = jnp.clip(jnp.sum(mins <= xq[:, None, level : level + 1], axis=-1) - 1, 0, c_l - 1)
            v = xq[:, level][:, None]
            left = v - _take_clipped(pm[path], (centre - reach - 1)[..., None], -jnp.inf)[..., 0]
            right = _take_clipped(sm[path], (centre + reach + 1)[..., None], jnp.inf)[..., 0] - v
            gap = jnp.minimum(gap, jnp.min(jnp.where(valid, jnp.minimum(left, right), jnp.inf), axis=1))
            child = centre[..., None] + offsets  # (b, P, 2r+1)
            valid = (valid[..., None] & (child >= 0) & (child < c_l)).reshape(b, -1)
            path = (path[..., None] * c_l + jnp.clip(child, 0, c_l - 1)).reshape(b, -1)
        # leaf: branchless lower-bound search of the query's code in each leaf list
        code = jnp.floor(xq[:, dim - 1] * leaf_scale)[:, None]
        base = path * leaf
        p = jnp.zeros(path.shape, jnp.int32)
        step = 1 << (leaf.bit_length() - 1)
        while step:
            cand = p + step
            probe = flat_codes[base + jnp.clip(cand - 1, 0, leaf - 1)]
            p = jnp.where((cand <= leaf) & (probe < code), cand, p)
            step //= 2
        start = jnp.clip(p - w, 0, leaf - 2 * w)
        below = jnp.where(start > 0, flat_codes[base + jnp.maximum(start - 1, 0)], -jnp.inf)
        above = jnp.where(start + 2 * w < leaf, flat_codes[base + jnp.minimum(start + 2 * w, leaf - 1)], jnp.inf)
        v = xq[:, dim - 1][:, None]
        # code c holds coordinates in [(c - 1) / s, (c + 2) / s] (float32 rounding included)
        left = v - (below + 2.0) / leaf_scale
        right = (above - 1.0) / leaf_scale - v
        gap = jnp.minimum(gap, jnp.min(jnp.where(valid, jnp.minimum(left, right), jnp.inf), axis=1))
        cand_pos = (base + start)[..., None] + jnp.arange(2 * w)  # (b, P, 2W)
        cand_pos = cand_pos.reshape(b, -1)
        cand_x = xq_all[cand_pos]  # (b, P*2W, D)
        dd = dist_fn(xq[:, None, :], cand_x)
        cand_id = order[cand_pos]
        ok = jnp.repeat(valid, 2 * w, axis=1) & (cand_id != order[pos][:, None]) & (cand_id < n)
        r = kth_smallest(jnp.where(ok, dd, jnp.inf), k)
        return r, (r <= gap) | (r == 0.0)  # 0 is the smallest distance there is

    r, exact = blocked_rows(query, n_pad, max(64, min(n_pad, (1 << 17) // (w * (2 * reach + 1) ** (dim - 1)))))()
    exact = exact | (order >= n)  # padding rows need nothing

    # rows whose candidates are not provably complete: dense, _FALLBACK_ROWS at a time
    todo = jnp.nonzero(~exact, size=n_pad, fill_value=n_pad)[0]
    todo = jnp.concatenate([todo, jnp.full((_FALLBACK_ROWS,), n_pad, todo.dtype)])
    count = jnp.sum(~exact)

    def body(state):
        i, r = state
        sl = jax.lax.dynamic_slice(todo, (i * _FALLBACK_ROWS,), (_FALLBACK_ROWS,))
        rows = order[jnp.minimum(sl, n_pad - 1)]
        vals = fallback_fn(jnp.minimum(rows, n - 1))
        return i + 1, r.at[sl].set(vals, mode="drop")

    _, r = jax.lax.while_loop(lambda s: s[0] * _FALLBACK_ROWS < count, body, (jnp.int32(0), r))
    out = jnp.zeros(n, r.dtype).at[order].set(r, mode="drop")
    if with_exact:
        return out, jnp.zeros(n, bool).at[order].set(exact, mode="drop")
    return out


def _euclid(q: jax.Array, c: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(q - c), axis=-1))


def _use_cells(search: str, n: int, d: int) -> bool:
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if search == "cells" and d > CELLS_MAX_DIM:
        raise ValueError(f"search='cells' covers d <= {CELLS_MAX_DIM}, got d={d}")
    return search == "cells" or (search == "auto" and d <= CELLS_MAX_DIM and n >= CELLS_MIN_N)


def knn_distances(t, *, k=3, block=None, search="auto"):
    """Euclidean distance from each row of ``t`` ``(n, d)`` to its k-th nearest other row ``(n,)``.

    Args:
      t: samples, one per row.
      k: neighbour order, ``1 <= k < n``; duplicates count as distinct neighbours.
      block: rows per block of dense pairwise work (default: ~2 MiB tiles).
      search: ``'auto'`` (cells for d <= 3 and n >= CELLS_MIN_N, else dense),
        ``'dense'`` or ``'cells'`` (see the module docstring).
    """
    check_rank(t, 2, "t")
    n, d = t.shape
    check_k(k, n)
    if not _use_cells(search, n, d):
        return jnp.sqrt(_dense_kth_sq(t, k, block))
    tc = centered(t)
    layout = _cells_layout(n, d, k)
    g, n_groups = _group_shape(n, k)
    cols = _pad_to(tc, g * n_groups)

    def fallback(rows):
        return jnp.sqrt(_select_kth(_direct_sq(tc[rows], cols), rows, n, k, g, n_groups))

    return _cells_kth(tc, k, _euclid, fallback, layout)


def knn_entropy(t, *, k=3, dim=None, min_dist=1e-10, block=None, search="auto"):
    """Kozachenko-Leonenko differential entropy of ``t`` ``(n, d)``, in bits.

    Args:
      t: samples, one per row.
      k: neighbour order, ``1 <= k < n``.
      dim: the true dimension when ``t`` is zero-padded (may be traced, so a
        vmapped call can cover layers of different widths); default ``d``.
      min_dist: floor on the k-th neighbour distance (duplicate rows).
      block: rows per block of dense pairwise work (default: ~2 MiB tiles).
      search: neighbour search, see :func:`knn_distances`.
    """
    n, d = t.shape
    eps = jnp.maximum(knn_distances(t, k=k, block=block, search=search), min_dist)
    dim = d if dim is None else dim
    dim = jnp.asarray(dim, jnp.float32)
    log_vd = 0.5 * dim * jnp.log(jnp.pi) - gammaln(0.5 * dim + 1.0)
    h = digamma(jnp.float32(n)) - digamma(jnp.float32(k)) + log_vd + dim * jnp.mean(jnp.log(eps))
    return nan_unless_finite(to_bits(h), t)


# ----------------------------------------------------------------------- KSG


class _Marginal:
    """Distances within one marginal of KSG: max-norm, or squared Euclidean (same order)."""

    def __init__(self, a: jax.Array, metric: str, n_pad: int):
        self.metric = metric
        if metric == "max":
            self.a = a
            self.cols = _pad_to(a, n_pad)
        else:
            self.e = _SqEuclid(a, n_pad)

    def tile(self, rows):
        if self.metric == "max":
            return _chebyshev(self.a[rows], self.cols)
        # full squared distances: the joint max compares values across marginals
        return self.e.full(rows)


def ksg_mutual_information(a, b, *, k=3, metric="max", block=None):
    """KSG estimator 1 of I(A;B) in bits; ``a`` ``(n, da)``, ``b`` ``(n, db)`` (1-D allowed).

    Args:
      a, b: paired samples, one per row.
      k: neighbour order in the joint space, ``1 <= k < n``.
      metric: ``'max'`` (max-norm marginals, Kraskov et al.) or ``'euclidean'``
        (Euclidean marginals, as the "Beyond Normal" benchmark's KSG); the joint
        distance is the larger marginal distance in both.
      block: rows per block of pairwise work.
    """
    if metric not in KSG_METRICS:
        raise ValueError(f"metric must be one of {KSG_METRICS}, got {metric!r}")
    a = a[:, None] if jnp.ndim(a) == 1 else a
    b = b[:, None] if jnp.ndim(b) == 1 else b
    check_rank(a, 2, "a")
    check_rank(b, 2, "b")
    check_same_length(a, b, "a", "b")
    n = a.shape[0]
    check_k(k, n)
    a = centered(a)
    b = centered(b)
    g, n_groups = _group_shape(n, k)
    n_pad = g * n_groups
    ma, mb = _Marginal(a, metric, n_pad), _Marginal(b, metric, n_pad)
    block = block or default_block(n_pad, a.shape[1] + b.shape[1], budget_floats=1 << 18)

    def fn(rows):
        da, db = ma.tile(rows), mb.tile(rows)
        eps = _select_kth(jnp.maximum(da, db), rows, n, k, g, n_groups)[:, None]
        others = (jnp.arange(n_pad)[None, :] != rows[:, None]) & (jnp.arange(n_pad)[None, :] < n)
        n_a = jnp.sum((da < eps) & others, axis=1)
        n_b = jnp.sum((db < eps) & others, axis=1)
        return digamma(n_a + 1.0) + digamma(n_b + 1.0)

    psi_sum = blocked_rows(fn, n, block)()
    mi = digamma(jnp.float32(k)) + digamma(jnp.float32(n)) - jnp.mean(psi_sum)
    return nan_unless_finite(to_bits(mi), a, b)


# ----------------------------------------------------------------------- Ross


def knn_mutual_information_discrete(t, y, *, k=3, block=None):
    """Ross (2014) estimator of I(T;Y) in bits; ``t`` ``(n, d)`` continuous, ``y`` ``(n,)`` int labels.

    For a label with n_y points the neighbour order is min(k, n_y - 1) (as in
    scikit-learn); labels with a single point are excluded from the averages.
    """
    t = t[:, None] if jnp.ndim(t) == 1 else t
    check_rank(t, 2, "t")
    check_rank(y, 1, "y")
    check_same_length(t, y, "t", "y")
    n, d = t.shape
    check_k(k, n)
    t = centered(t)
    t_sq = jnp.sum(t * t, axis=-1)
    ys = jnp.sort(y)
    n_y_all = jnp.searchsorted(ys, y, side="right") - jnp.searchsorted(ys, y, side="left")
    counted = n_y_all > 1  # single-point labels are left out, as in scikit-learn
    block = block or default_block(n, d)

    def fn(rows):
        d2 = sq_distances(t[rows], t, t_sq)
        same_rows = y[rows][:, None] == y[None, :]
        n_y = n_y_all[rows]
        k_i = jnp.clip(n_y - 1, 1, k)
        others = jnp.where(same_rows & (jnp.arange(n)[None, :] != rows[:, None]), d2, jnp.inf)

        # the k_i-th smallest, k_i <= k varies per row: run k rounds, keep round k_i
        def body(r, carry):
            dd, kept = carry
            j = jnp.argmin(dd, axis=-1)
            m = jnp.take_along_axis(dd, j[:, None], axis=-1)[:, 0]
            kept = jnp.where(r + 1 == k_i, m, kept)
            return jnp.where(jnp.arange(n)[None, :] == j[:, None], jnp.inf, dd), kept

        _, r2 = jax.lax.fori_loop(0, k, body, (others, jnp.zeros(rows.shape[0], jnp.float32)))
        m_i = jnp.sum(((d2 < r2[:, None]) | (d2 <= 0.0)) & counted[None, :], axis=1)
        return n_y, k_i, m_i

    n_y, k_i, m_i = blocked_rows(fn, n, block)()
    keep = n_y > 1
    cnt = jnp.maximum(jnp.sum(keep), 1)

    def mean(x):
        return jnp.sum(jnp.where(keep, x, 0.0)) / cnt

    mi = (
        digamma(cnt.astype(jnp.float32))
        + mean(digamma(k_i.astype(jnp.float32)))
        - mean(digamma(n_y.astype(jnp.float32)))
        - mean(digamma(jnp.maximum(m_i, 1).astype(jnp.float32)))
    )
    return nan_unless_finite(to_bits(mi), t)
