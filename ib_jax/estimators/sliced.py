"""Sliced mutual information, in bits.

Goldfeld & Greenewald, "Sliced mutual information: a scalable measure of statistical
dependence", NeurIPS 2021. With theta, phi uniform on the unit spheres of X's and T's spaces::

    SI(X;T) = E_{theta, phi} [ I(theta'X ; phi'T) ]        SI(T;Y) = E_phi [ I(phi'T ; Y) ]

Each one-dimensional MI is estimated from the n rows: (continuous, continuous) by KSG estimator 1
(:func:`ib_jax.estimators.knn.ksg_mutual_information`, max-norm, k neighbours), (continuous,
discrete labels) by Ross's estimator (:func:`ib_jax.estimators.knn.knn_mutual_information_discrete`).
The expectation is a Monte Carlo average over m = ``estimator.sliced.projections`` direction
pairs; ``i_xt_se``, ``i_ty_se`` are the standard errors std / sqrt(m) over the m projections (they
cover the direction sampling and the per-projection estimation noise, not the kNN estimators' bias).

Directions: entry u of direction p is ``normal(fold_in(fold_in(key, p), u))``, zeroed on padded
units, then the vector is normalised: uniform on the sphere of the real units, and independent of
how far a layer is zero-padded. In a job the key is fixed, ``PRNGKey(estimator.sliced.seed)``
(inputs' directions from one half, layers' from the other), not the evaluation key: every member
and every evaluation projects on the same directions, so differences between members and steps
are not direction noise (common random numbers). Rows are a seeded random subset
(``estimator.sliced.n``, ``estimator.subset_seed``), the same for inputs, layers and labels.

Properties (Goldfeld & Greenewald): SI(X;T) = 0 iff X and T are independent; SI <= I(X;T) by the
data-processing inequality on each projection; SI is invariant to a common rotation or scaling
(not to general invertible maps, unlike I). What it is not: sliced MI is not I(X;T); for a
deterministic network I(X;T) is infinite or log2 n, while SI stays finite and is estimated at
the one-dimensional rate, whatever the width.

Cost: O(m n^2) for the projections' KSG and Ross searches per layer (row-blocked, memory
O(block x n) per projection under the vmap), O(m n d) for the projections themselves.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ib_jax.estimators._common import centered, check_k, check_rank, check_same_length
from ib_jax.estimators.base import EvalContext, register_estimator, subset, subset_rows
from ib_jax.estimators.knn import knn_mutual_information_discrete, ksg_mutual_information

__all__ = ["random_directions", "sliced_mutual_information", "sliced_mutual_information_discrete"]


def random_directions(key, m: int, d: int, mask=None) -> jax.Array:
    """``(m, d)`` unit vectors uniform on the sphere of the units where ``mask`` ``(d,)`` is true
    (all by default), zero elsewhere. Entry (p, u) comes from ``fold_in(fold_in(key, p), u)``:
    the directions of a layer do not depend on its zero-padding."""
    units = jnp.arange(d)

    def one(p):
        kp = jax.random.fold_in(key, p)
        return jax.vmap(lambda u: jax.random.normal(jax.random.fold_in(kp, u), (), jnp.float32))(units)

    z = jax.vmap(one)(jnp.arange(m))
    if mask is not None:
        z = jnp.where(jnp.asarray(mask, bool)[None, :], z, 0.0)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True)


def _project(a, directions):
    return jnp.matmul(centered(a), directions.T, precision=jax.lax.Precision.HIGHEST)  # (n, m)


def _summary(values):
    m = values.shape[0]
    se = jnp.std(values, ddof=1) / math.sqrt(m) if m > 1 else jnp.float32(jnp.nan)
    return {"mi": jnp.mean(values), "se": se, "values": values}


def _check_m(projections):
    if not isinstance(projections, int) or projections < 1:
        raise ValueError(f"projections must be an int >= 1, got {projections!r}")


def sliced_mutual_information(a, b, key, *, projections: int = 64, k: int = 3, a_mask=None, b_mask=None):
    """Sliced MI SI(A;B) of paired rows ``a`` ``(n, da)``, ``b`` ``(n, db)``, in bits.

    Args:
      a, b: samples, one per row (zero-padded units are ignored where ``a_mask``/``b_mask`` say so).
      key: PRNG key of the directions: ``split(key)`` gives A's and B's halves
        (:func:`random_directions`).
      projections: m, the direction pairs averaged.
      k: neighbour order of the one-dimensional KSG estimates, ``1 <= k < n``.
      a_mask, b_mask: optional ``(da,)``, ``(db,)`` bool, true for real units.

    Returns:
      dict: ``mi`` the Monte Carlo mean, ``se`` its standard error (NaN for m = 1), ``values``
      the ``(m,)`` per-projection KSG estimates. NaN for non-finite inputs.
    """
    check_rank(a, 2, "a")
    check_rank(b, 2, "b")
    check_same_length(a, b, "a", "b")
    check_k(k, a.shape[0])
    _check_m(projections)
    ka, kb = jax.random.split(key)
    pa = _project(a, random_directions(ka, projections, a.shape[1], a_mask))
    pb = _project(b, random_directions(kb, projections, b.shape[1], b_mask))
    return _summary(jax.vmap(lambda u, v: ksg_mutual_information(u, v, k=k), in_axes=(1, 1))(pa, pb))


def sliced_mutual_information_discrete(t, y, key, *, projections: int = 64, k: int = 3, t_mask=None):
    """Sliced MI SI(T;Y) = E_phi I(phi'T; Y) of rows ``t`` ``(n, d)`` and int labels ``y`` ``(n,)``, bits.

    ``key`` draws the directions as B's half of :func:`sliced_mutual_information` does (the same
    key gives T the same directions in both). Returns ``mi``, ``se``, ``values`` likewise, the
    one-dimensional estimates by Ross's estimator.
    """
    check_rank(t, 2, "t")
    check_rank(y, 1, "y")
    check_same_length(t, y, "t", "y")
    check_k(k, t.shape[0])
    _check_m(projections)
    _, kt = jax.random.split(key)
    pt = _project(t, random_directions(kt, projections, t.shape[1], t_mask))
    return _summary(jax.vmap(lambda u: knn_mutual_information_discrete(u, y, k=k), in_axes=1)(pt))


# ----------------------------------------------------------------------------- the estimator


def _sliced(ctx: EvalContext, cfg):
    o = cfg.estimator.sliced
    rows = subset_rows(ctx.n, o.n, cfg.estimator.subset_seed)
    n = len(rows)
    x = subset(ctx, o.n, cfg.estimator.subset_seed).reshape(n, -1).astype(jnp.float32)
    stacked, y = (ctx.stacked, ctx.y) if n == ctx.n else (ctx.stacked[:, rows], ctx.y[rows])
    key = jax.random.PRNGKey(o.seed)  # fixed: the same directions for every member and evaluation

    def layer(t, mask):
        xt = sliced_mutual_information(x, t, key, projections=o.projections, k=o.k, b_mask=mask)
        ty = sliced_mutual_information_discrete(t, y, key, projections=o.projections, k=o.k, t_mask=mask)
        return {"i_xt": xt["mi"], "i_xt_se": xt["se"], "i_ty": ty["mi"], "i_ty_se": ty["se"]}

    return jax.vmap(layer)(stacked, ctx.mask)


def _check(cfg, n_info: int) -> None:
    o = cfg.estimator.sliced
    if o.projections < 2:
        raise ValueError(f"estimator.sliced.projections must be >= 2 (its standard error needs two), got {o.projections}")
    if o.n < 2:
        raise ValueError(f"estimator.sliced.n must be >= 2, got {o.n}")
    rows = min(o.n, n_info)
    if not 1 <= o.k < rows:
        raise ValueError(f"estimator.sliced.k={o.k} must be in [1, n) (the {rows} rows used: min(estimator.sliced.n, n_info))")


register_estimator("sliced", _sliced, _check, reads=("sliced",), rows=lambda cfg, n_info: min(cfg.estimator.sliced.n, n_info))
