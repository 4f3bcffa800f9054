"""Noise of an absolute standard deviation sigma, Langevin-style (``noise=fixed``; Neelakantan et al. 2015)."""

from __future__ import annotations

import math
from typing import Any

import jax
import optax

from ib_jax.noise._core import (
    NoiseState,
    _canonicalize_key,
    _check_level,
    _initial_state,
    _ravel,
    _realized,
    _resolve,
)
from ib_jax.noise.kinds import register_noise

__all__ = ["fixed"]


def fixed(sigma: optax.ScalarOrSchedule, key: Any) -> optax.GradientTransformation:
    """Noise of absolute standard deviation sigma: xi ~ N(0, sigma^2 I).

    The Langevin / ``optax.add_noise`` family: the noise does not scale with g.
    With ``sigma = ib_jax.noise.schedules.anneal(eta, gamma)`` it reproduces
    ``optax.add_noise(eta, gamma, key)`` exactly (same key use, same draws).
    ``sigma = 0`` adds nothing.
    """
    _check_level(sigma, "sigma", allow_zero=True)
    key = _canonicalize_key(key)

    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None):
        del params
        sigma_t = _resolve(sigma, state.count)
        next_key, sample_key = jax.random.split(state.key)
        # same tree-wide key split and sampler as optax.add_noise
        noise = optax.tree.random_like(sample_key, target_tree=updates, sampler=jax.random.normal)
        out = optax.tree.add_scale(updates, sigma_t, noise)
        snr, angle = _realized([_ravel(jax.tree.leaves(updates))], [_ravel(jax.tree.leaves(out))])
        return out, NoiseState(optax.safe_increment(state.count), next_key, snr, angle)

    return optax.GradientTransformation(init_fn, update_fn)


register_noise(
    "fixed",
    lambda level, key, cfg: fixed(level, key),
    level_name="sigma",
    level_doc="must be a sigma >= 0 (0 = no noise)",
    valid_level=lambda v: v >= 0 and math.isfinite(v),
    total_noise="sigma",
    gaussian_std=lambda level, cfg, batch_size: level,  # data-independent N(0, sigma^2 I)
    reads=("position",),
)
