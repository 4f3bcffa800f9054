"""Pairwise-distance (kernel) bounds for a representation plus Gaussian noise, in bits.

Kolchinsky & Tracey (2017), as used by Saxe et al. (2018). The representation
is T_noisy = T + Z, Z ~ N(0, noise_var I_d), with T uniform over the n rows
t_i: a mixture of n Gaussians of equal covariance. With pairwise distances
D(p_i || p_j) between components, mixture entropy is bracketed by::

    H(T_noisy) <= d/2 log(2 pi e noise_var) - (1/n) sum_i log (1/n) sum_j exp(-KL_ij)
    H(T_noisy) >= d/2 log(2 pi e noise_var) - (1/n) sum_i log (1/n) sum_j exp(-BD_ij)

KL_ij = ||t_i - t_j||^2 / (2 noise_var) (upper), Bhattacharyya
BD_ij = ||t_i - t_j||^2 / (8 noise_var) (lower). Since H(T_noisy | X) =
d/2 log(2 pi e noise_var) exactly, I(X;T_noisy) = H - H(T|X) gets true bounds:
0 <= lower <= I(X;T) <= upper <= log n.

For I(T;Y) = H(T) - sum_y p(y) H(T|Y=y) each term is estimated with the same
distance; the difference of two bounds is not itself a bound, so
:func:`kde_mutual_information_y` returns the two pairwise estimates
(Bhattacharyya-based, KL-based), as Kolchinsky & Tracey report them.

Pairwise work is done in row blocks: memory O(block * n).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ib_jax.estimators._common import (
    blocked_rows,
    centered,
    check_rank,
    check_same_length,
    default_block,
    nan_unless_finite,
    sq_distances,
    to_bits,
)
from ib_jax.estimators.base import EvalContext, register_estimator

__all__ = ["kde_entropy_bounds", "kde_mutual_information_x_bounds", "kde_mutual_information_y"]


def _check_var(noise_var):
    if isinstance(noise_var, (int, float)) and not noise_var > 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")


def _mean_neg_log_mean_kernel(t, scale, y=None, block=None):
    """For each scale c: (1/n) sum_i -log((1/m_i) sum_{j in S_i} exp(-||t_i - t_j||^2 / c)), nats.

    S_i is every row, or the rows with label y_i (m_i their number).
    ``scale`` is a tuple of denominators c, computed from one distance tile.
    """
    n, d = t.shape
    t = centered(t)
    t_sq = jnp.sum(t * t, axis=-1)
    block = block or default_block(n, d)

    def fn(rows):
        d2 = sq_distances(t[rows], t, t_sq)
        if y is None:
            mask, m = None, jnp.float32(n)
        else:
            mask = y[rows][:, None] == y[None, :]
            m = jnp.sum(mask, axis=1).astype(jnp.float32)
        out = []
        for c in scale:
            lse = logsumexp(-d2 / c, axis=1, b=None if mask is None else mask.astype(jnp.float32))
            out.append(jnp.log(m) - lse)
        return jnp.stack(out, axis=-1)

    vals = blocked_rows(fn, n, block)()
    return jnp.mean(vals, axis=0)


def _gauss_entropy(dim, noise_var):
    return 0.5 * dim * jnp.log(2 * jnp.pi * jnp.e * noise_var)


def kde_mutual_information_x_bounds(t, noise_var, *, block=None):
    """(lower, upper) bounds on I(X; T + Z) in bits, Z ~ N(0, noise_var I); ``t`` ``(n, d)``."""
    check_rank(t, 2, "t")
    _check_var(noise_var)
    lo, hi = _mean_neg_log_mean_kernel(t, (8.0 * noise_var, 2.0 * noise_var), block=block)
    return nan_unless_finite(to_bits(lo), t), nan_unless_finite(to_bits(hi), t)


def kde_entropy_bounds(t, noise_var, *, dim=None, block=None):
    """(lower, upper) bounds on the differential entropy H(T + Z) in bits.

    ``dim``: the true width when ``t`` is zero-padded (may be traced).
    """
    lo, hi = kde_mutual_information_x_bounds(t, noise_var, block=block)
    h_cond = to_bits(_gauss_entropy(t.shape[1] if dim is None else dim, noise_var))
    return lo + h_cond, hi + h_cond


def kde_mutual_information_y(t, y, noise_var, *, block=None):
    """Pairwise-distance estimates (BD-based, KL-based) of I(Y; T + Z) in bits.

    I = H(T+Z) - H(T+Z | Y), both terms with the same distance; the
    Gaussian-entropy terms cancel. ``y`` ``(n,)`` integer labels.
    """
    check_rank(t, 2, "t")
    check_rank(y, 1, "y")
    check_same_length(t, y, "t", "y")
    _check_var(noise_var)
    scales = (8.0 * noise_var, 2.0 * noise_var)
    h = _mean_neg_log_mean_kernel(t, scales, block=block)
    h_y = _mean_neg_log_mean_kernel(t, scales, y=y, block=block)
    bd, kl = to_bits(h - h_y)
    return nan_unless_finite(bd, t), nan_unless_finite(kl, t)


# ----------------------------------------------------------------------------- the estimator


def _kde(ctx: EvalContext, cfg):
    v = cfg.estimator.kde.noise_var
    lo, hi = jax.vmap(lambda t: kde_mutual_information_x_bounds(t, v))(ctx.stacked)
    _, i_ty = jax.vmap(lambda t: kde_mutual_information_y(t, ctx.y, v))(ctx.stacked)
    return {"i_xt_lower": lo, "i_xt": hi, "h_x_given_t": jnp.log2(jnp.float32(ctx.n)) - hi, "i_ty": i_ty}


def _check(cfg, n_info: int) -> None:
    if not cfg.estimator.kde.noise_var > 0:
        raise ValueError(f"estimator.kde.noise_var must be > 0, got {cfg.estimator.kde.noise_var}")


register_estimator("kde", _kde, _check, reads=("kde",))
