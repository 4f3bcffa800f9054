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
  j != i with d_A(a_i, a_j) < eps_i (strict), likewise n_b. ``metric='euclidean'``
  (the default) takes Euclidean marginals, as the KSG of the "Beyond Normal"
  MI benchmark (Czyz et al. 2023, ``bmi.estimators.KSGEnsembleFirstEstimator``)
  does; ``metric='max'`` takes max-norm marginals (the paper's choice: the
  joint distance is the max-norm in the joint space). The two coincide for
  one-dimensional marginals. Euclidean is the default because it is at least
  as accurate on the Beyond Normal suite (``scripts/validate_estimators.py
  --suite beyond_normal``, docs/estimators.md): at n = 5,000, k = 3, mean
  absolute error 0.28 bits against 0.32 for max-norm over 42 tasks, smaller on
  29 of the 31 multi-dimensional ones (both underestimate there; the two
  exceptions, Student-t 5 x 5, by 0.02 bits). Ties give eps_i = 0 and
  n_a = 0: finite.

* Ross (2014), continuous T and discrete labels Y::

      I(T;Y) = psi(n) + <psi(k)> - <psi(n_y)> - <psi(m_i)>                [nats]

  r_i = Euclidean distance to the k-th neighbour among the n_y points of the
  same label, m_i = #{j : ||t_j - t_i|| < r_i} counting i itself (all points
  at distance 0 when r_i = 0), as in scikit-learn's ``mutual_info_classif``.
  Labels with fewer than 2 points are left out, as there.

Results are converted to bits. Like the references, KSG and Ross are not

The k-th neighbour search (dense or cells, chosen by shape) is :mod:`ib_jax.estimators.knn_search`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from ib_jax.estimators._common import (
    blocked_rows,
    centered,
    check_k,
    check_rank,
    check_same_length,
    default_block,
    nan_unless_finite,
    sq_distances,
    to_bits,
)
from ib_jax.estimators.base import EvalContext, register_estimator
from ib_jax.estimators.knn_search import (
    _FAR,
    CELLS_MAX_DIM,
    CELLS_MIN_N,
    SEARCHES,
    _chebyshev,
    _group_shape,
    _pad_to,
    _select_kth,
    _SqEuclid,
    knn_distances,
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

KSG_METRICS = ("max", "euclidean")


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
            self.cols = _pad_to(a, n_pad, _FAR)
        else:
            self.e = _SqEuclid(a, n_pad)

    def tile(self, rows):
        if self.metric == "max":
            return _chebyshev(self.a[rows], self.cols)
        # full squared distances: the joint max compares values across marginals
        return self.e.full(rows)


def ksg_mutual_information(a, b, *, k=3, metric="euclidean", block=None):
    """KSG estimator 1 of I(A;B) in bits; ``a`` ``(n, da)``, ``b`` ``(n, db)`` (1-D allowed).

    Args:
      a, b: paired samples, one per row.
      k: neighbour order in the joint space, ``1 <= k < n``.
      metric: ``'euclidean'`` (default: Euclidean marginals, as the "Beyond Normal"
        benchmark's KSG) or ``'max'`` (max-norm marginals, Kraskov et al.); the joint
        distance is the larger marginal distance in both, and both are the same
        estimator for one-dimensional marginals. Euclidean is the default as the
        more accurate on the Beyond Normal suite (module docstring).
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
    block = block or default_block(n_pad, a.shape[1] + b.shape[1])  # ~100 rows at n = 5,000 (measured best)

    def fn(rows):
        da, db = ma.tile(rows), mb.tile(rows)
        eps = _select_kth(jnp.maximum(da, db), rows, n, k, g, n_groups)[:, None]
        # count every column, then take the row itself out (padding columns are _FAR):
        # the same as masking j != i, without the mask in the n x n pass
        self_a = jnp.take_along_axis(da, rows[:, None], axis=1)
        self_b = jnp.take_along_axis(db, rows[:, None], axis=1)
        n_a = jnp.sum(da < eps, axis=1) - (self_a < eps)[:, 0]
        n_b = jnp.sum(db < eps, axis=1) - (self_b < eps)[:, 0]
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


# ----------------------------------------------------------------------------- the estimator


def _knn(ctx: EvalContext, cfg):
    k = cfg.estimator.knn.k
    return {
        "h_t": jax.vmap(lambda t, d: knn_entropy(t, k=k, dim=d))(ctx.stacked, ctx.dims),
        "i_ty": jax.vmap(lambda t: knn_mutual_information_discrete(t, ctx.y, k=k))(ctx.stacked),
    }


def _check(cfg, n_info: int) -> None:
    k = cfg.estimator.knn.k
    if not 1 <= k < n_info:
        raise ValueError(f"estimator.knn.k={k} must be in [1, n) (the {n_info} rows of the information set)")


register_estimator("knn", _knn, _check, reads=("knn",))
