"""The k-th nearest neighbour of every row: the search under the kNN estimators (:mod:`knn`).


How the k-th neighbour is found (the algorithm is chosen by shape)
-------------------------------------------------------------------
*Dense* (any width): pairwise distances in row blocks (``lax.map``), so
memory is O(block * n), never O(n^2). Within a block the n columns of a row
are split into G groups of g contiguous columns; one fused pass takes each
group's minimum, the k groups with the smallest minima are kept (k rounds
over G ~ sqrt(n k) values) and the k-th smallest is taken among their k g
entries. Exact: the k smallest entries of a row lie in the k groups with the
smallest minima or, where one does not, those k groups already hold k
entries no larger than it (each group minimum is one). One pass over the
row instead of the k of a plain k-round selection. Wide data uses one matmul
per block (see ``_SqEuclid``); d <= 4 exact column sums.

*Cells* (d <= 3, n >= ``CELLS_MIN_N[d]``; a trees-like search for low
dimensions, where O(n^2) work loses to kd-trees): points are put in a
kd-like order by single-key sorts (sort by coordinate 0, cut into slabs of
equal count, sort each slab by coordinate 1, at d = 3 cut again and sort by
coordinate 2); runs of B points are blocks with exact bounding boxes. The B
points of a block take as candidates the blocks near its position in the
neighbouring leaf lists (one dense tile per block), and their k-th candidate
distance r. A box left out is at least its box-to-box (or, near the window,
point-to-box) distance away; where r is no larger than the smallest such
distance, r is exact. The rest (typically < 3% of the rows; all of them in
the worst case) is recomputed by the dense search in a ``lax.while_loop``.
Results equal the dense search up to float rounding (tested on Gaussian,
uniform, correlated, clustered and duplicated data).

"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.estimators._common import (
    DIRECT_MAX_DIM,
    blocked_rows,
    centered,
    check_k,
    check_rank,
    default_block,
    kth_smallest,
)
from ib_jax.estimators.counting import sort_u32 as _sort_u32

__all__ = ["knn_distances", "SEARCHES", "CELLS_MAX_DIM", "CELLS_MIN_N"]

SEARCHES = ("auto", "dense", "cells")

CELLS_MAX_DIM = 3  # the cells search covers 1 <= d <= 3
CELLS_MIN_N = {1: 512, 2: 1024, 3: 3072}  # below these n the dense search is as fast (measured)
_FALLBACK_ROWS = 64  # unresolved rows recomputed densely per while_loop iteration


# --------------------------------------------------------------- dense search


def _group_shape(n: int, k: int) -> tuple[int, int]:
    """(g, G): G groups of g columns, g * G >= n. g ~ sqrt(n / k) balances the k selection
    rounds over G group minima against the k * g entries searched after them."""
    g = 1
    while g < 64 and g * g * k <= n:
        g *= 2
    return g, -(-n // g)


def _select_kth(tile: jax.Array, rows: jax.Array, n: int, k: int, g: int, n_groups: int) -> jax.Array:
    """k-th smallest entry of each row of ``tile`` ``(b, G * g)`` over columns j < n, j != rows.

    Group q holds the contiguous columns [q g, (q + 1) g); columns >= n are padding.
    The masks fuse into the group-minimum pass.
    """
    b = tile.shape[0]
    col = jnp.arange(n_groups)[:, None] * g + jnp.arange(g)[None, :]
    invalid = (col[None] == rows[:, None, None]) | (col[None] >= n)
    return _kth_grouped(jnp.where(invalid, jnp.inf, tile.reshape(b, n_groups, g)), k)


_FAR = 1e30  # coordinate of padding columns: never within any finite radius


def _pad_to(x: jax.Array, n_pad: int, value: float = 0.0) -> jax.Array:
    return jnp.pad(x, ((0, n_pad - x.shape[0]), (0, 0)), constant_values=value)


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
        # padding columns lie _FAR away (their squared distance overflows to inf, never NaN)
        if self.direct:
            self.cols = _pad_to(self.t, n_pad, _FAR)
        else:
            aug = jnp.concatenate([-2.0 * self.t, self.sq[:, None]], axis=1)
            self.cols = jnp.concatenate(
                [aug, jnp.tile(jnp.asarray([[0.0] * self.t.shape[1] + [_FAR]], jnp.float32), (n_pad - aug.shape[0], 1))], axis=0
            )

    def tile(self, rows: jax.Array) -> jax.Array:
        if self.direct:
            return _direct_sq(self.t[rows], self.cols)
        aug = jnp.concatenate([self.t[rows], jnp.ones((rows.shape[0], 1), jnp.float32)], axis=1)
        # full float32 products: GPUs would otherwise use TF32 (10-bit mantissa) for f32 dots
        return jnp.matmul(aug, self.cols.T, precision=jax.lax.Precision.HIGHEST)

    def _floor(self, d2: jax.Array, sq_rows: jax.Array) -> jax.Array:
        """Below the matmul form's float32 resolution (|t_i|^2 + |t_j|^2 - 2 t_i.t_j cancels to
        ~eps (|t_i|^2 + |t_j|^2), and |t_j| ~ |t_i| for a near neighbour) a squared distance is
        unresolved: read it as 0, so duplicate rows are at distance 0 whatever the backend's
        summation order (a GPU's differs from the norms' and left ~1e-3 for duplicates)."""
        tol = 8.0 * np.finfo(np.float32).eps * sq_rows
        return jnp.where(d2 <= tol, 0.0, d2)

    def finish(self, rows: jax.Array, v: jax.Array) -> jax.Array:
        """Selected tile values ``(b,)`` -> squared distances."""
        return v if self.direct else self._floor(jnp.maximum(v + self.sq[rows], 0.0), self.sq[rows])

    def full(self, rows: jax.Array) -> jax.Array:
        """Squared distances ``(b, n_pad)`` (the row constant added back)."""
        v = self.tile(rows)
        return v if self.direct else self._floor(jnp.maximum(v + self.sq[rows][:, None], 0.0), self.sq[rows][:, None])


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


def _cells_layout(n: int, dim: int, k: int) -> tuple[tuple[int, ...], int, int, int, int]:
    """(cells per level, leaf size, block size B, cell reach, block reach) of the cells search.

    Blocks of B ~ 4k points (8k in 3-D) are about as long as wide (a kd-tree
    leaf): slabs and cells are cut so. Candidates: blocks within ``block reach`` of the query
    block's position in each leaf list within ``cell reach`` of its own
    (1-D: 5 blocks; 2-D: 3 slabs x 5; 3-D: 3 x 3 cells x 3). Measured on
    Gaussian, uniform, correlated, clustered and heavy-tailed data.
    """
    block = max(8, (4 if dim < 3 else 8) * k)
    n_blocks = max(1, -(-n // block))
    if dim == 1:
        return (), n_blocks * block, block, 0, 2
    if dim == 2:
        c0 = max(1, int(round(math.sqrt(n_blocks))))
        per = -(-n_blocks // c0)
        return (c0,), per * block, block, 1, 2
    c = max(1, int(round(n_blocks ** (1 / 3))))
    per = -(-n_blocks // (c * c))
    return (c, c), per * block, block, 1, 1


def _kth_grouped(vals: jax.Array, k: int) -> jax.Array:
    """k-th smallest of each row of ``vals`` ``(r, G, g)`` (all G*g entries), G small.

    The k groups with the smallest minima hold the k-th smallest (see the module
    docstring); only they are searched entry by entry.
    """
    r, n_groups, g = vals.shape
    if n_groups <= k:
        return kth_smallest(vals.reshape(r, n_groups * g), k)
    gmin = jnp.min(vals, axis=-1)
    gi = jnp.arange(n_groups)
    picks, live = [], []
    for _ in range(k):
        m = jnp.min(gmin, axis=1, keepdims=True)
        q = jnp.minimum(jnp.min(jnp.where(gmin == m, gi[None], n_groups), axis=1), n_groups - 1)
        picks.append(q)
        live.append(m[:, 0] < jnp.inf)  # an all-inf pick may repeat a group: drop it
        gmin = jnp.where(gi[None] == q[:, None], jnp.inf, gmin)
    picked = jnp.take_along_axis(vals, jnp.stack(picks, axis=1)[:, :, None], axis=1)
    picked = jnp.where(jnp.stack(live, axis=1)[:, :, None], picked, jnp.inf)
    return kth_smallest(picked.reshape(r, k * g), k)


def _cells_kth(x: jax.Array, k: int, dist_fn, fallback_fn, layout, with_exact: bool = False):
    """k-th neighbour distance of every row of ``x`` ``(n, D)``, D <= 3, by the cells search.

    ``dist_fn(diffs) -> (...)`` maps the D per-coordinate differences to a
    distance (or a monotone function of one, e.g. the squared Euclidean); it
    must be non-decreasing in each |diff| (Euclidean, max-norm, a max of
    per-block Euclidean norms), so ``dist_fn`` of the per-coordinate gaps
    between two boxes lower-bounds the distance between any of their points. ``fallback_fn(rows) -> (b,)`` gives the exact
    answer for original rows ``rows`` (dense search), used where the
    candidates cannot be proven complete. ``with_exact`` also returns which
    rows the candidates resolved ``(n,)`` (for tests and tuning).

    Steps: (1) kd-like order by single-key sorts: sort by coordinate 0, cut into
    slabs of equal count, sort each by coordinate 1 (at D = 3 cut again and sort
    by coordinate 2); (2) consecutive runs of B points are blocks with exact
    bounding boxes; (3) each block takes as the candidates of its B points the
    blocks near its position in the neighbouring leaf lists (one dense tile);
    (4) a point's k-th candidate distance r is exact if no box left out is
    closer to its block's box than r.
    """
    n, dim = x.shape
    cells, leaf, bsize, cell_reach, block_reach = layout
    n_pad = math.prod(cells) * leaf
    nb = n_pad // bsize
    x = x - jnp.min(x, axis=0)  # >= 0: fixed-point codes below
    span = jnp.max(x, axis=0)
    xp = jnp.concatenate([x, jnp.zeros((n_pad - n, dim), x.dtype)], axis=0)
    pad = jnp.arange(n_pad) >= n
    order = jnp.arange(n_pad)

    # level l sorts within rows of `size` points by coordinate l. The key packs a
    # fixed-point code of the coordinate above the point's position in the row, so one
    # single-key uint32 sort gives the permutation (a key-value sort is ~5x slower on
    # XLA CPU; inside binning.host_sort() it runs on the host on CPU). Padding points
    # sort last. Ties within one code keep position order: the boxes below are exact
    # whatever the order, so exactness does not depend on it, only the blocks' tightness.
    for level in range(dim):
        rows = math.prod(cells[:level])
        size = n_pad // rows
        pos_bits = _bits(size)
        q_bits = min(24, 32 - pos_bits) - 1  # top code reserved for padding
        scale = (2.0**q_bits - 1.0) / jnp.where(span[level] > 0, span[level], 1.0)
        q = jnp.clip(jnp.floor(xp[:, level] * scale), 0, 2**q_bits - 1).astype(jnp.uint32)
        q = jnp.where(pad[order], jnp.uint32(2**q_bits), q)
        key = (q.reshape(rows, size) << jnp.uint32(pos_bits)) | jnp.arange(size, dtype=jnp.uint32)
        perm = (_sort_u32(key) & jnp.uint32((1 << pos_bits) - 1)).astype(jnp.int32)
        xp = jnp.take_along_axis(xp.reshape(rows, size, dim), perm[..., None], axis=1).reshape(n_pad, dim)
        order = jnp.take_along_axis(order.reshape(rows, size), perm, axis=1).reshape(n_pad)

    real = (order < n).reshape(nb, bsize)
    pts = [xp[:, c].reshape(nb, bsize) for c in range(dim)]  # one array per coordinate: the
    # minor axis then runs over points, which vectorizes (a minor axis of size D does not)
    lo = [jnp.min(jnp.where(real, p, jnp.inf), axis=1) for p in pts]  # (nb,) each; empty: +inf
    hi = [jnp.max(jnp.where(real, p, -jnp.inf), axis=1) for p in pts]
    ids = jnp.where(real, order.reshape(nb, bsize), -1)
    per_leaf = leaf // bsize
    n_leaves = nb // per_leaf
    leaf_lo = lo[dim - 1].reshape(n_leaves, per_leaf)  # blocks of a leaf list, in order
    cell_lo = jnp.min(lo[1].reshape(cells[0], cells[1], per_leaf), axis=-1) if dim == 3 else None

    def query(qb):
        """For query blocks ``qb`` (c,): k-th candidate distance (c, B) and exactness (c, B)."""
        c = qb.shape[0]
        centre = [jnp.where(lo[i][qb] <= hi[i][qb], 0.5 * (lo[i][qb] + hi[i][qb]), 0.0) for i in range(dim)]
        own_leaf, own_pos = qb // per_leaf, qb % per_leaf
        # the ring: blocks near the query block's position in the leaf lists near its own
        # (cell_reach + 1 lists and block_reach + 2 blocks each side); its inner part
        # (cell_reach, block_reach) gives the candidates
        c_steps = np.arange(-cell_reach - 1, cell_reach + 2)  # static: numpy
        c_inner = np.abs(c_steps) <= cell_reach
        if dim == 1:
            leaves = own_leaf[:, None]
            valid = jnp.ones((c, 1), bool)
            inner = np.ones((1, 1), bool)
        elif dim == 2:
            leaves = own_leaf[:, None] + c_steps
            valid = (leaves >= 0) & (leaves < cells[0])
            inner = c_inner[None]
        else:
            slabs = own_leaf[:, None] // cells[1] + c_steps  # (c, S)
            ok = (slabs >= 0) & (slabs < cells[0])
            lows = cell_lo[jnp.clip(slabs, 0, cells[0] - 1)]  # (c, S, C1)
            mid = jnp.clip(jnp.sum(lows <= centre[1][:, None, None], axis=-1) - 1, 0, cells[1] - 1)
            mid = jnp.where(slabs == own_leaf[:, None] // cells[1], own_leaf[:, None] % cells[1], mid)
            sub = mid[..., None] + c_steps  # (c, S, S)
            valid = (ok[..., None] & (sub >= 0) & (sub < cells[1])).reshape(c, -1)
            leaves = (slabs[..., None] * cells[1] + sub).reshape(c, -1)
            inner = (c_inner[:, None] & c_inner[None, :]).reshape(1, -1)
        leaves = jnp.clip(leaves, 0, n_leaves - 1)
        found = jnp.sum(leaf_lo[leaves] <= centre[dim - 1][:, None, None], axis=-1) - 1
        mid = jnp.where(leaves == own_leaf[:, None], own_pos[:, None], jnp.clip(found, 0, per_leaf - 1))
        b_steps = np.arange(-block_reach - 2, block_reach + 3)
        pos = mid[..., None] + b_steps
        valid = (valid[..., None] & (pos >= 0) & (pos < per_leaf)).reshape(c, -1)
        inner = (inner[..., None] & (np.abs(b_steps) <= block_reach)).reshape(-1)
        ring = (leaves[..., None] * per_leaf + jnp.clip(pos, 0, per_leaf - 1)).reshape(c, -1)
        win = ring[:, inner]  # static selection: (c, Wn)
        win_ok = valid[:, inner]
        n_win = win.shape[1]
        rest, rest_ok = ring[:, ~inner], valid[:, ~inner]

        # bound, outside the ring: every point of a box is at least the box-to-box distance away
        gaps = [jnp.maximum(jnp.maximum(lo[i][None, :] - hi[i][qb][:, None], lo[i][qb][:, None] - hi[i][None, :]), 0.0) for i in range(dim)]
        box_d = dist_fn(gaps).at[jnp.arange(c)[:, None], jnp.where(valid, ring, nb)].set(jnp.inf, mode="drop")
        bound = jnp.min(box_d, axis=1)[:, None]
        # in the ring but not a candidate: the tighter point-to-box distance
        q_pts = [p[qb] for p in pts]  # (c, B) each
        pgaps = [
            jnp.maximum(jnp.maximum(lo[i][rest][:, None, :] - q_pts[i][:, :, None], q_pts[i][:, :, None] - hi[i][rest][:, None, :]), 0.0)
            for i in range(dim)
        ]
        pb = jnp.where(rest_ok[:, None, :], dist_fn(pgaps), jnp.inf)  # (c, B, ring - Wn)
        bound = jnp.minimum(bound, jnp.min(pb, axis=-1))

        q_ids = ids[qb]  # (c, B)
        cand_ids = jnp.where(win_ok[..., None], ids[win], -1).reshape(c, 1, n_win * bsize)
        dd = dist_fn([q[:, :, None] - p[win].reshape(c, 1, n_win * bsize) for q, p in zip(q_pts, pts)])
        bad = (cand_ids < 0) | (cand_ids == q_ids[:, :, None])
        r = _kth_grouped(jnp.where(bad, jnp.inf, dd).reshape(c * bsize, n_win, bsize), k).reshape(c, bsize)
        return r, (r <= bound) | (r == 0.0)  # 0 is the smallest distance there is

    n_win = (2 * block_reach + 1) * (2 * cell_reach + 1) ** (dim - 1)
    chunk = max(1, min(nb, (1 << 19) // (n_win * bsize * bsize + nb)))  # ~2 MiB of tiles a step
    r, exact = blocked_rows(query, nb, chunk)()
    r, exact = r.reshape(n_pad), exact.reshape(n_pad) | (order >= n)  # padding rows need nothing

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


def _sq_euclid(diffs: list[jax.Array]) -> jax.Array:
    """Squared Euclidean norm of per-coordinate differences (order = Euclidean order)."""
    out = jnp.square(diffs[0])
    for v in diffs[1:]:
        out = out + jnp.square(v)
    return out


def _use_cells(search: str, n: int, d: int) -> bool:
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if search == "cells" and d > CELLS_MAX_DIM:
        raise ValueError(f"search='cells' covers d <= {CELLS_MAX_DIM}, got d={d}")
    return search == "cells" or (search == "auto" and d <= CELLS_MAX_DIM and n >= CELLS_MIN_N[d])


def knn_distances(t, *, k=3, block=None, search="auto"):
    """Euclidean distance from each row of ``t`` ``(n, d)`` to its k-th nearest other row ``(n,)``.

    Args:
      t: samples, one per row.
      k: neighbour order, ``1 <= k < n``; duplicates count as distinct neighbours.
      block: rows per block of dense pairwise work (default: ~2 MiB tiles).
      search: ``'auto'`` (cells for d <= 3 and n >= CELLS_MIN_N[d], else dense),
        ``'dense'`` or ``'cells'`` (see the module docstring).
    """
    check_rank(t, 2, "t")
    n, d = t.shape
    check_k(k, n)
    if not _use_cells(search, n, d):
        return jnp.sqrt(_dense_kth_sq(t, k, block))
    tc = centered(t)
    g, n_groups = _group_shape(n, k)
    cols = _pad_to(tc, g * n_groups)

    def fallback(rows):
        return _select_kth(_direct_sq(tc[rows], cols), rows, n, k, g, n_groups)

    return jnp.sqrt(_cells_kth(tc, k, _sq_euclid, fallback, _cells_layout(n, d, k)))
