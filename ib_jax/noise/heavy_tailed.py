"""Symmetric alpha-stable gradient noise (``noise=heavy_tailed``; Simsekli et al. 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ib_jax.noise._core import (
    SCOPES,
    _check_choice,
    _check_level,
    _make_transform,
    _safe,
    _sqnorm,
)
from ib_jax.noise.kinds import check_scope, register_noise

__all__ = ["heavy_tailed", "symmetric_stable"]

# float32(pi/2) rounds *above* pi/2 (cos of it is negative); the largest float32 below pi/2
_HALF_PI_BELOW = float(np.nextafter(np.float32(np.pi / 2), np.float32(0)))
_EULER = 0.5772156649015329  # Euler-Mascheroni constant


def _check_alpha(alpha: Any) -> None:
    """0 < alpha <= 2 for values known at construction; traced (vmapped) alphas pass."""
    try:
        arr = np.asarray(alpha, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    except (TypeError, ValueError) as e:
        raise ValueError(f"alpha must be a number in (0, 2], got {alpha!r}") from e
    if np.isnan(arr).any() or (arr <= 0).any() or (arr > 2).any():
        raise ValueError(f"alpha must be in (0, 2] (the stable tail index), got {alpha!r}")


def symmetric_stable(key: jax.Array, alpha: Any, shape: tuple[int, ...]) -> jax.Array:
    """IID standard symmetric alpha-stable float32 draws, E exp(iuS) = exp(-|u|^alpha).

    Chambers, Mallows & Stuck (1976), skewness 0: with V ~ U(-pi/2, pi/2) and
    W ~ Exp(1) independent::

        S = sin(alpha V) / cos(V)^(1/alpha) * (cos((1 - alpha) V) / W)^((1 - alpha) / alpha)

    exact for every alpha in (0, 2]: alpha = 1 gives tan V (standard Cauchy),
    alpha = 2 gives 2 sin(V) sqrt(W) ~ N(0, 2). Evaluated as sign(V) exp(log|S|)
    so that no factor overflows on its own (for small alpha, cos(V)^(1/alpha)
    underflows long before S does); only draws whose true value exceeds the
    float32 range (possible for alpha below ~0.3) come out as +-inf.
    ``alpha`` (in (0, 2]) may be a traced scalar.
    """
    _check_alpha(alpha)
    alpha = jnp.asarray(alpha, jnp.float32)
    k_v, k_w = jax.random.split(key)
    v = (jax.random.uniform(k_v, shape, jnp.float32) - 0.5) * jnp.float32(np.pi)
    v = jnp.clip(v, -_HALF_PI_BELOW, _HALF_PI_BELOW)
    # u in [tiny, 1): W = -log u > 0, so log W is finite (alpha = 1 multiplies it by 0)
    w = -jnp.log(jax.random.uniform(k_w, shape, jnp.float32, minval=np.finfo(np.float32).tiny))
    inv = 1.0 / alpha
    log_abs = (
        jnp.log(jnp.abs(jnp.sin(alpha * v)))
        - inv * jnp.log(jnp.cos(v))
        + (1.0 - alpha) * inv * (jnp.log(jnp.cos((1.0 - alpha) * v)) - jnp.log(w))
    )
    return jnp.sign(v) * jnp.exp(log_abs)


def _stable_log_snr(alpha: Any) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """``(g, xi, snr) -> (log snr_hat, D_nonzero)``: the scale-convention SNR of one group.

    For xi_i = c S_i with S_i standard symmetric alpha-stable,
    E log|S| = C_e (1/alpha - 1) (C_e Euler's constant; Zolotarev 1986, Kuruoglu
    2001) and Var log|S| = (pi^2 / 12)(2 / alpha^2 + 1), so
    log c_hat = mean_i log|xi_i| - C_e (1/alpha - 1) estimates log c without bias
    and log snr_hat = log(||g||^2 / (2 D c_hat^2)) estimates log snr without
    bias, standard error 2 sqrt(Var log|S| / D). Exact zeros (c = 0: nothing
    added) are left out; the weight is the number of entries used.
    """

    def log_snr(g, xi, value):
        del value
        a = jnp.abs(xi.astype(jnp.float32))
        nz = a > 0
        k = jnp.sum(nz).astype(jnp.float32)
        mean_log = jnp.sum(jnp.where(nz, jnp.log(jnp.where(nz, a, 1.0)), 0.0)) / jnp.maximum(k, 1.0)
        log_c = mean_log - _EULER * (1.0 / jnp.asarray(alpha, jnp.float32) - 1.0)
        g2 = _sqnorm([g])
        out = jnp.log(_safe(g2)) - jnp.log(2.0 * xi.size) - 2.0 * log_c
        return jnp.where(k > 0, out, 0.0), k

    return log_snr


def heavy_tailed(
    snr: optax.ScalarOrSchedule,
    key: Any,
    *,
    alpha: Any = 1.5,
    scope: str = "global",
) -> optax.GradientTransformation:
    """Symmetric alpha-stable noise: the heavy-tailed gradient-noise model.

    Simsekli, Sagun & Gurbuzbalaban (2019), "A tail-index analysis of stochastic
    gradient noise in deep neural networks". Every coordinate gets::

        xi_i = c S_i,   S_i iid standard symmetric alpha-stable,
        E exp(i u S) = exp(-|u|^alpha),   c = ||g|| / sqrt(2 D snr)

    drawn exactly (:func:`symmetric_stable`, Chambers-Mallows-Stuck). ``D`` and
    ``||g||`` are over the whole pytree (``scope='global'``) or per leaf
    (``scope='per_leaf'``, one c per leaf).

    **What snr means.** At alpha = 2, S ~ N(0, 2), so xi ~ N(0, ||g||^2/(D snr) I):
    the transform *is* :func:`isotropic` in distribution and snr is the power
    ratio ||g||^2 / E||xi||^2. For alpha < 2, E S^2 = inf: the noise has no
    power, and snr is a **scale** ratio, snr = ||g||^2 / (2 D c^2), the power SNR
    that Gaussian noise of the same scale c would have. Lower alpha = heavier
    tails at the same scale (alpha = 1: Cauchy).

    **Realized SNR** (:func:`diagnostics`) is on the same scale convention, for
    every alpha: ||g||^2 / (2 D c_hat^2), with c_hat the log-moment estimate
    of the scale of the noise drawn, log c_hat = mean_i log|xi_i| - C_e (1/alpha - 1)
    (C_e Euler's constant; E log|S| = C_e (1/alpha - 1)); with
    ``scope='per_leaf'`` the per-leaf values are averaged in log, weighted by
    leaf size. Its log is unbiased for log snr with standard error
    2 sqrt((pi^2/12)(2/alpha^2 + 1) / D). (The power ratio
    ||g||^2/||xi||^2 would be meaningless for alpha < 2: it falls like
    D^(1 - 2/alpha) as the model grows.) The recorded angle is the actual angle
    between g and g + xi.

    ``alpha`` may be a jax array, e.g. traced under ``vmap`` over a grid of
    tail indices; only values known at construction are checked. For alpha
    below ~0.3 single draws can exceed the float32 range (see
    :func:`symmetric_stable`). Zero gradient and snr = inf add nothing.

    Args:
      snr: scale SNR > 0 (power SNR at alpha = 2): float, array or schedule; inf = off.
      key: int seed or PRNG key.
      alpha: tail index in (0, 2].
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_alpha(alpha)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        sizes = [math.prod(x.shape) for x in g]
        d = sum(sizes)
        c = jnp.sqrt(_sqnorm(g) / (2.0 * d * value))
        s = symmetric_stable(key, alpha, (d,))
        # c = 0 (zero gradient, snr = inf) must give exact zeros even where S is +-inf
        flat = jnp.where(c > 0, c * s, 0.0)
        out, start = [], 0
        for x, size in zip(g, sizes):
            out.append(flat[start : start + size].reshape(x.shape))
            start += size
        return out

    return _make_transform(draw, snr, key, scope, group_log_snr=_stable_log_snr(alpha))


def _check_alpha_conf(cfg) -> None:
    check_scope(cfg)
    if not (isinstance(cfg.alpha, (int, float)) and 0.0 < cfg.alpha <= 2.0):
        raise ValueError(f"noise.alpha must be in (0, 2] (2 = Gaussian), got {cfg.alpha}")


# Simsekli et al. 2019: symmetric alpha-stable, c = ||g|| / sqrt(2 D snr); for alpha < 2 snr is a scale ratio
register_noise(
    "heavy_tailed",
    lambda level, key, cfg: heavy_tailed(level, key, alpha=cfg.alpha, scope=cfg.scope),
    check=_check_alpha_conf,
    reads=("position", "alpha", "scope"),
)
