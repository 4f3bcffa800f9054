"""Noise with the covariance of mini-batch gradient noise, rescaled (``noise=sgd_shaped``; Zhu et al. 2019)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ib_jax.noise._core import (
    NoiseState,
    _canonicalize_key,
    _check_level,
    _initial_state,
    _realized,
    _resolve,
    _safe,
    _sqnorm,
)
from ib_jax.noise.kinds import register_noise

__all__ = ["sgd_shaped"]


def sgd_shaped(snr: optax.ScalarOrSchedule, key: Any) -> optax.GradientTransformationExtraArgs:
    """Noise with the covariance of mini-batch gradient noise, at a given power SNR.

    Zhu et al. (2019), "anisotropic noise". Needs the per-example gradients
    g_i (i <= m) of the batch, passed as an extra argument::

        updates, state = tx.update(grads, state, params, per_example_grads=per_ex)

    (``optax.chain`` forwards it). With g_bar their mean and z ~ N(0, I_m)::

        xi = c * (1 / sqrt(m - 1)) * sum_i z_i (g_i - g_bar)

    has covariance c^2 Sigma_hat (Sigma_hat the sample covariance of the per-
    example gradients) and c^2 = ||g||^2 / (snr tr Sigma_hat) sets
    E||xi||^2 = ||g||^2 / snr, the same power ratio as :func:`isotropic` and
    :func:`cone`, so the three shapes compare at equal SNR. If tr Sigma_hat = 0
    (all examples agree, or m = 1) no noise is added.
    """
    _check_level(snr, "snr", allow_zero=False)
    key = _canonicalize_key(key)

    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None, *, per_example_grads=None, **extra):
        del params, extra
        if per_example_grads is None:
            raise ValueError("sgd_shaped noise needs per_example_grads=... in update (a pytree with a leading example axis)")
        value = _resolve(snr, state.count)
        leaves, treedef = jax.tree.flatten(updates)
        per_ex = jax.tree.leaves(per_example_grads)
        m = per_ex[0].shape[0]
        next_key, sample_key = jax.random.split(state.key)
        z = jax.random.normal(sample_key, (m,), jnp.float32)
        centred = [p.astype(jnp.float32) - jnp.mean(p.astype(jnp.float32), axis=0, keepdims=True) for p in per_ex]
        trace = sum(jnp.sum(jnp.square(c)) for c in centred) / max(m - 1, 1)
        scale = jnp.sqrt(_sqnorm(leaves) / (value * _safe(trace))) / jnp.sqrt(max(m - 1, 1))
        scale = jnp.where(trace > 0, scale, 0.0)
        xi = [scale * jnp.tensordot(z, c, axes=1) for c in centred]
        out = [(g.astype(jnp.float32) + n).astype(g.dtype) for g, n in zip(leaves, xi)]
        no_noise = jnp.isinf(value) & (value > 0)
        out = [jnp.where(no_noise, g, o) for g, o in zip(leaves, out)]
        realized, angle = _realized(leaves, out)
        new_state = NoiseState(optax.safe_increment(state.count), next_key, realized, angle)
        return jax.tree.unflatten(treedef, out), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


register_noise("sgd_shaped", lambda level, key, cfg: sgd_shaped(level, key), per_example_grads=True, reads=("position",))
