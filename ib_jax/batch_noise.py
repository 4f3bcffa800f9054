"""Per-batch perturbations: noise that acts on the mini-batch before the gradient exists.

Pure functions of an explicit PRNG key, jit- and vmap-able, with the noise level
a (possibly traced) scalar. They plug into a loss as::

    w = multiplicative_weights(key, n, snr)             # (n,), E w_i = 1
    loss = jnp.mean(w * per_example_losses)             # unbiased: E grad = clean grad

    y_noisy = label_noise(key, y, p, n_classes)         # fresh labels every call

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

``level = inf`` returns exactly ones (no noise).

Label noise (Blanc, Gupta, Valiant & Valiant 2020; Damian, Ma & Lee 2021)
----------------------------------------------------------------------------
Each label is, independently with probability p, replaced by a class drawn
uniformly from the n_classes - 1 *other* classes (never the true one). At
p = (K-1)/K the noisy label is independent of the true one; p = 0 returns
``y`` unchanged. The draw is fresh every call (every step), the regime in which
label-noise SGD's implicit regulariser acts.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["multiplicative_weights", "label_noise", "WEIGHT_VARIANTS"]

WEIGHT_VARIANTS = ("gaussian", "bernoulli")


def _concrete(value: Any, name: str) -> np.ndarray | None:
    """``value`` as float64 numpy if known now; None when traced (cannot be checked)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, got {value!r}") from e


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


def label_noise(key: jax.Array, y: jax.Array, p: Any, n_classes: int) -> jax.Array:
    """Replace each integer label, with probability p, by a uniformly drawn other class.

    y'_i = y_i with probability 1 - p, else (y_i + 1 + r_i) mod K with
    r_i ~ U{0, ..., K-2}: uniform over the K - 1 classes != y_i. ``y`` keeps its
    shape and dtype; ``p = 0`` returns it unchanged (bit for bit).

    Args:
      key: PRNG key (use a fresh one every step).
      y: integer labels in [0, n_classes), any shape.
      p: replacement probability in [0, 1] (Python float or traced scalar).
      n_classes: K >= 2 (static).
    """
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    arr = _concrete(p, "p")
    if arr is not None and (np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any()):
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    k_flip, k_class = jax.random.split(key)
    flip = jax.random.uniform(k_flip, y.shape, jnp.float32) < jnp.asarray(p, jnp.float32)
    shift = jax.random.randint(k_class, y.shape, 1, n_classes, dtype=y.dtype)  # 1..K-1
    other = (y + shift) % n_classes
    return jnp.where(flip, other, y)
