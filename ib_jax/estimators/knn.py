"""k-nearest-neighbour estimators (adaptive binning), in bits.

All pairwise work is done in row blocks (``lax.map``), so memory is
O(block * n), never O(n^2). The k-th neighbour is found by k rounds of a
masked minimum (with multiplicity: duplicates count as distinct neighbours at
distance 0).

* Kozachenko-Leonenko entropy (Euclidean balls)::

      H(T) = psi(n) - psi(k) + log V_d + (d / n) sum_i log eps_i      [nats]

  eps_i the distance from t_i to its k-th neighbour, V_d = pi^{d/2} /
  Gamma(d/2 + 1) the volume of the unit d-ball. Duplicate rows give eps_i = 0;
  the distance is floored at ``min_dist`` so the result stays finite (and
  very negative: a point mass has differential entropy -inf).

* Kraskov-Stoegbauer-Grassberger estimator 1 (max-norm)::

      I(A;B) = psi(k) + psi(n) - < psi(n_a + 1) + psi(n_b + 1) >          [nats]

  eps_i = max-norm distance to the k-th neighbour in the joint space, n_a the
  number of j != i with ||a_j - a_i||_inf < eps_i (strict), likewise n_b.
  Ties give eps_i = 0 and n_a = 0: finite.

* Ross (2014), continuous T and discrete labels Y::

      I(T;Y) = psi(n) + <psi(k)> - <psi(n_y)> - <psi(m_i)>                [nats]

  r_i = Euclidean distance to the k-th neighbour among the n_y points of the
  same label, m_i = #{j : ||t_j - t_i|| < r_i} counting i itself (all points
  at distance 0 when r_i = 0), as in scikit-learn's ``mutual_info_classif``.
  Labels with fewer than 2 points are left out, as there.

Results are converted to bits. Like the references, KSG and Ross are not
clipped at 0: a negative value is the estimator's bias, reported as is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from ib_jax.estimators._common import (
    blocked_rows,
    check_k,
    check_rank,
    check_same_length,
    default_block,
    kth_smallest,
    nan_unless_finite,
    centered,
    sq_distances,
    to_bits,
)

__all__ = ["knn_entropy", "ksg_mutual_information", "knn_mutual_information_discrete", "knn_distances"]


def knn_distances(t, *, k=3, block=None):
    """Euclidean distance from each row of ``t`` ``(n, d)`` to its k-th nearest other row ``(n,)``."""
    check_rank(t, 2, "t")
    n, d = t.shape
    check_k(k, n)
    t = centered(t)
    t_sq = jnp.sum(t * t, axis=-1)
    block = block or default_block(n, d)

    def fn(rows):
        d2 = sq_distances(t[rows], t, t_sq)
        d2 = jnp.where(jnp.arange(n)[None, :] == rows[:, None], jnp.inf, d2)  # not its own neighbour
        return kth_smallest(d2, k)

    return jnp.sqrt(blocked_rows(fn, n, block)())


def knn_entropy(t, *, k=3, dim=None, min_dist=1e-10, block=None):
    """Kozachenko-Leonenko differential entropy of ``t`` ``(n, d)``, in bits.

    Args:
      t: samples, one per row.
      k: neighbour order, ``1 <= k < n``.
      dim: the true dimension when ``t`` is zero-padded (may be traced, so a
        vmapped call can cover layers of different widths); default ``d``.
      min_dist: floor on the k-th neighbour distance (duplicate rows).
      block: rows per block of pairwise work (default: ~16M floats a tile).
    """
    n, d = t.shape
    eps = jnp.maximum(knn_distances(t, k=k, block=block), min_dist)
    dim = d if dim is None else dim
    dim = jnp.asarray(dim, jnp.float32)
    log_vd = 0.5 * dim * jnp.log(jnp.pi) - gammaln(0.5 * dim + 1.0)
    h = digamma(jnp.float32(n)) - digamma(jnp.float32(k)) + log_vd + dim * jnp.mean(jnp.log(eps))
    return nan_unless_finite(to_bits(h), t)


def _chebyshev(a_rows, a):
    """Max-norm distances ``(len(a_rows), len(a))``, accumulated over columns (memory O(b n))."""

    def body(j, acc):
        return jnp.maximum(acc, jnp.abs(a_rows[:, j][:, None] - a[:, j][None, :]))

    return jax.lax.fori_loop(0, a.shape[1], body, jnp.zeros((a_rows.shape[0], a.shape[0]), a.dtype))


def ksg_mutual_information(a, b, *, k=3, block=None):
    """KSG estimator 1 of I(A;B) in bits; ``a`` ``(n, da)``, ``b`` ``(n, db)`` (1-D allowed)."""
    a = a[:, None] if jnp.ndim(a) == 1 else a
    b = b[:, None] if jnp.ndim(b) == 1 else b
    check_rank(a, 2, "a")
    check_rank(b, 2, "b")
    check_same_length(a, b, "a", "b")
    n = a.shape[0]
    check_k(k, n)
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    block = block or default_block(n, a.shape[1] + b.shape[1], budget_floats=1 << 22)

    def fn(rows):
        da = _chebyshev(a[rows], a)
        db = _chebyshev(b[rows], b)
        self_ = jnp.arange(n)[None, :] == rows[:, None]
        joint = jnp.where(self_, jnp.inf, jnp.maximum(da, db))
        eps = kth_smallest(joint, k)[:, None]
        n_a = jnp.sum((da < eps) & ~self_, axis=1)
        n_b = jnp.sum((db < eps) & ~self_, axis=1)
        return digamma(n_a + 1.0) + digamma(n_b + 1.0)

    psi_sum = blocked_rows(fn, n, block)()
    mi = digamma(jnp.float32(k)) + digamma(jnp.float32(n)) - jnp.mean(psi_sum)
    return nan_unless_finite(to_bits(mi), a, b)


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
