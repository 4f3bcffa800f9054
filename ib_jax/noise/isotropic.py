"""Isotropic Gaussian gradient noise at a power SNR (``noise=isotropic``)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from ib_jax.noise._core import (
    SCOPES,
    _check_choice,
    _check_level,
    _make_transform,
    _normal_like,
    _size,
    _sqnorm,
)
from ib_jax.noise.kinds import check_scope, register_noise

__all__ = ["isotropic"]


def isotropic(snr: optax.ScalarOrSchedule, key: Any, *, scope: str = "global") -> optax.GradientTransformation:
    """Isotropic Gaussian noise at a given power SNR.

    xi ~ N(0, sigma^2 I_D) with sigma^2 = ||g||^2 / (D * snr), so that
    E||xi||^2 = ||g||^2 / snr. ``scope='global'`` uses one norm and one D over
    the whole pytree; ``scope='per_leaf'`` gives every leaf (layer) its own
    norm, D and hence its own SNR.

    Args:
      snr: power SNR > 0 (float, array, or schedule ``count -> snr``); inf = off.
      key: int seed or PRNG key.
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        d = _size(g)
        sigma = jnp.sqrt(_sqnorm(g) / (d * value))
        return [sigma * z for z in _normal_like(key, g)]

    return _make_transform(draw, snr, key, scope)


register_noise("isotropic", lambda level, key, cfg: isotropic(level, key, scope=cfg.scope), check=check_scope, reads=("position", "scope"))
