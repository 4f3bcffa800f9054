"""Multiplicative noise: random per-example loss weights (``noise=multiplicative``).

The loss becomes::

    w = multiplicative_weights(key, n, snr)             # (n,), E w_i = 1
    loss = jnp.mean(w * per_example_losses)             # unbiased: E grad = clean grad


Multiplicative weights (Wu, Hu, Xiong, Huan, Braverman & Zhu 2020, "On the
noisy gradient descent that generalizes as SGD")
---------------------------------------------------------------------------
Weighting the n per-example gradients g_i by w_i with E w_i = 1, Var w_i = v
(iid, independent of the data) gives the gradient g_w = (1/n) sum_i w_i g_i
= g_bar + xi with xi = (1/n) sum_i (w_i - 1) g_i, so E g_w = g_bar (unbiased)
and the noise covariance is (v / n^2) sum_i g_i g_i^T: shaped by the data, like
SGD's. The ``level`` is the **power SNR of each weight**::

    snr = (E w)^2 / Var w = 1 / v

(the ``noise.isotropic`` power convention applied to the scalar weights). The
resulting gradient noise has E||xi||^2 = (v/n) mean_i ||g_i||^2
= (||g_bar||^2 + tr Sigma) / (n snr) with Sigma the (1/n) covariance of the
g_i, i.e. a gradient power SNR of n snr ||g_bar||^2 / (||g_bar||^2 + tr Sigma).

* ``variant='gaussian'``: w = 1 + eps / sqrt(snr), eps ~ N(0, 1). Weights can be
  negative when snr < ~10 (Wu et al.'s Gaussian multiplicative noise).
* ``variant='bernoulli'``: w = b / p, b ~ Bernoulli(p), Var w = (1 - p)/p = 1/snr,
  so p = snr / (1 + snr). This is Poisson sub-sampling: keeping each example
  with probability p = B/n (expected batch B out of n) is snr = B / (n - B),
  the weights of SGD without replacement.

"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.noise._core import concrete as _concrete
from ib_jax.noise.kinds import register_noise

__all__ = ["multiplicative_weights", "WEIGHT_VARIANTS"]

WEIGHT_VARIANTS = ("gaussian", "bernoulli")


def multiplicative_weights(key: jax.Array, n: int, level: Any, *, variant: str = "gaussian") -> jax.Array:
    """(n,) float32 random per-example loss weights with mean 1 and variance 1/level.

    See the module docstring for the derivation: ``level`` is the power SNR of
    each weight, (E w)^2 / Var w; the weighted mean loss mean_i(w_i l_i) has an
    unbiased gradient whose noise covariance is (1/(level n^2)) sum_i g_i g_i^T.

    Args:
      key: PRNG key.
      n: number of examples (static).
      level: weight SNR > 0 (Python float or traced scalar); inf gives exact ones.
      variant: ``'gaussian'`` (w = 1 + eps/sqrt(level)) or ``'bernoulli'``
        (w = b/p, b ~ Bernoulli(p), p = level/(1 + level)).
    """
    if variant not in WEIGHT_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {WEIGHT_VARIANTS}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    arr = _concrete(level, "level")
    if arr is not None and (np.isnan(arr).any() or (arr <= 0).any()):
        raise ValueError(f"level must be a weight SNR > 0 (inf = no noise), got {level!r}")
    level = jnp.asarray(level, jnp.float32)
    inv = 1.0 / level  # the weight variance; 0 at level = inf
    if variant == "gaussian":
        # 1 + 0 * eps is exactly 1 (eps is always finite)
        return 1.0 + jnp.sqrt(inv) * jax.random.normal(key, (n,), jnp.float32)
    p = 1.0 / (1.0 + inv)  # = level / (1 + level), and exactly 1 at level = inf
    # uniform in [0, 1) < 1 always: p = 1 keeps everything, w = 1 / 1 = 1 exactly
    keep = jax.random.uniform(key, (n,), jnp.float32) < p
    return jnp.where(keep, 1.0 / p, 0.0)


def _check_variant(cfg) -> None:
    if cfg.variant not in WEIGHT_VARIANTS:
        raise ValueError(f"noise.variant must be one of {WEIGHT_VARIANTS}, got {cfg.variant!r}")


def _multiplicative(key, y, level, n_classes, cfg):
    return y, multiplicative_weights(key, y.shape[0], level, variant=cfg.variant)


# Wu et al. 2020: loss mean_i w_i l_i, E w = 1, Var w = 1/snr (the weights' power SNR)
register_noise("multiplicative", None, batch=_multiplicative, check=_check_variant, reads=("variant",))
