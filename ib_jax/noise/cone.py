"""Noise perpendicular to the gradient, inside a cone of half-angle arctan(1/sqrt(snr)) (``noise=cone``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ib_jax.noise._core import (
    CONE_MODES,
    SCOPES,
    _check_choice,
    _check_level,
    _make_transform,
    _normal_like,
    _perpendicular,
    _safe,
    _size,
    _sqnorm,
)
from ib_jax.noise.kinds import check_scope, register_noise

__all__ = ["cone"]


def _cap_angle(key: jax.Array, theta: jax.Array, dim: int) -> jax.Array:
    """Polar angle of a direction uniform over a spherical cap of half-angle theta.

    On S^{D-1} the polar angle phi of a uniform point has density
    proportional to sin^{D-2}(phi). With w = sin^2(phi) this is a Beta((D-1)/2,
    1/2) density truncated to w <= s = sin^2(theta); writing w = s r, r in [0,1]
    has density proportional to r^{a-1} (1 - s r)^{-1/2}, a = (D-1)/2. We propose
    r ~ Beta(a, 1) (r = U^{1/a}) and accept with sqrt((1-s)/(1-s r)) <= 1: exact
    in any dimension, acceptance >= cos(theta), near 1 when D is large.
    """
    a = (dim - 1) / 2.0
    s = jnp.square(jnp.sin(theta))

    def cond(carry):
        return ~carry[2]

    def body(carry):
        k, _, _ = carry
        k, k1, k2 = jax.random.split(k, 3)
        r = jnp.exp(jnp.log(jax.random.uniform(k1, minval=1e-38)) / a)
        accept = jax.random.uniform(k2) < jnp.sqrt((1.0 - s) / (1.0 - s * r))
        return k, r, accept

    _, r, _ = jax.lax.while_loop(cond, body, (key, jnp.zeros([], jnp.float32), jnp.array(False)))
    return jnp.arcsin(jnp.sqrt(jnp.clip(s * r, 0.0, 1.0)))


def cone(
    snr: optax.ScalarOrSchedule,
    key: Any,
    *,
    mode: str = "surface",
    scope: str = "global",
    preserve_norm: bool = False,
) -> optax.GradientTransformation:
    """Noise perpendicular to the update: each step is a draw from a cone around g.

    The cone's half-angle is theta = arctan(1/sqrt(snr)). With u a unit vector
    uniform among directions perpendicular to g:

    * ``mode='surface'``: xi = ||g|| tan(theta) u. Every draw makes exactly the
      angle theta with g and ||xi||^2 = ||g||^2 / snr (realized SNR = snr).
    * ``mode='cap'``: xi = ||g|| tan(phi) u with phi drawn so that the direction
      of g + xi is uniform over the solid angle of the cone (density of phi
      proportional to sin^{D-2} phi on [0, theta]). Since phi <= theta, the
      noise power is at most ||g||^2 / snr (realized SNR >= snr); ``snr`` sets
      the cone's aperture.
    * ``mode='gaussian'``: an isotropic Gaussian projected onto the orthogonal
      complement of g, scaled so E||xi||^2 = ||g||^2 / snr (angle varies).

    ``preserve_norm=True`` rescales g + xi to ||g|| (a pure rotation; the
    realized SNR then counts the radial change too). With D = 1 there is no
    perpendicular direction and no noise is added.

    Args:
      snr: power SNR > 0 (float, array, or schedule); inf = off.
      key: int seed or PRNG key.
      mode: ``'surface'``, ``'cap'`` or ``'gaussian'``.
      scope: ``'global'`` (one cone for the whole pytree) or ``'per_leaf'``.
      preserve_norm: rescale the noisy update to the norm of g.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(mode, "mode", CONE_MODES)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        d = _size(g)
        if d < 2:
            return [jnp.zeros(x.shape, jnp.float32) for x in g]
        gnorm = jnp.sqrt(_sqnorm(g))
        k_dir, k_angle = jax.random.split(key)
        z = _perpendicular(_normal_like(k_dir, g), g)
        if mode == "gaussian":
            scale = gnorm / jnp.sqrt(value * (d - 1))
            return [scale * x for x in z]
        u_scale = 1.0 / _safe(jnp.sqrt(_sqnorm(z)))
        theta = jnp.arctan(1.0 / jnp.sqrt(value))
        phi = theta if mode == "surface" else _cap_angle(k_angle, theta, d)
        scale = gnorm * jnp.tan(phi) * u_scale
        return [scale * x for x in z]

    def finalize(g, out):
        if not preserve_norm:
            return out
        ratio = jnp.sqrt(_sqnorm(g)) / _safe(jnp.sqrt(_sqnorm(out)))
        return [(o.astype(jnp.float32) * ratio).astype(o.dtype) for o in out]

    return _make_transform(draw, snr, key, scope, finalize=finalize)


def _check_cone(cfg) -> None:
    check_scope(cfg)
    if cfg.mode not in CONE_MODES:
        raise ValueError(f"noise.mode must be one of {CONE_MODES}, got {cfg.mode!r}")


register_noise(
    "cone",
    lambda level, key, cfg: cone(level, key, mode=cfg.mode, scope=cfg.scope, preserve_norm=cfg.preserve_norm),
    check=_check_cone,
    reads=("position", "mode", "scope", "preserve_norm"),
)
