"""DP-SGD's gradient: per-example clipping and Gaussian noise (``noise=dp_sgd``; Abadi et al. 2016).

The step of a batch of B examples with per-example gradients g_i, clipping norm C and noise
multiplier z (the member's level)::

    g~ = (1/B) [ sum_i g_i min(1, C / ||g_i||) + N(0, z^2 C^2 I) ]

``optax.contrib.differentially_private_aggregate`` does the clipping and the noise; this module
gives it a schedule-able multiplier, this package's state (count, key, diagnostics) and the
re-key protocol, so a population's members draw independent noise. Mini-batches of a
``dp_sgd`` job are drawn *without replacement* within a step (``NoiseKind.sampling``), the
scheme the privacy accountant of :mod:`ib_jax.bounds.dp` assumes.

The noise is data-independent and Gaussian with per-coordinate std z C / B on the gradient, and
the clipped mean has norm <= C: the two facts the noisy-iterative bound
(:mod:`ib_jax.bounds.noisy_iterative`) needs, so it applies to ``dp_sgd`` with plain SGD.
The recorded realized SNR compares the *unclipped* mean gradient with the output (clipping's
bias counts as part of the perturbation).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import optax
from optax.contrib import DifferentiallyPrivateAggregateState, differentially_private_aggregate

from ib_jax.noise._core import NoiseState, _canonicalize_key, _check_level, _initial_state, _realized, _resolve
from ib_jax.noise.kinds import register_noise

__all__ = ["dp_sgd"]


def dp_sgd(noise_multiplier: optax.ScalarOrSchedule, l2_norm_clip: float, key: Any) -> optax.GradientTransformationExtraArgs:
    """DP-SGD's aggregation of per-example gradients (pass ``per_example_grads=`` to ``update``).

    Args:
      noise_multiplier: z >= 0, the noise std in units of the clipping norm (0 = clipping only).
      l2_norm_clip: C > 0, the bound on each example's gradient norm.
      key: the noise key (kept in the state; :func:`ib_jax.noise.reseed` replaces it).
    """
    _check_level(noise_multiplier, "noise_multiplier", allow_zero=True)
    if not (l2_norm_clip > 0 and math.isfinite(l2_norm_clip)):
        raise ValueError(f"l2_norm_clip must be a finite number > 0, got {l2_norm_clip}")
    key = _canonicalize_key(key)
    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None, *, per_example_grads=None, **extra):
        del params, extra
        if per_example_grads is None:
            raise ValueError("dp_sgd needs per_example_grads=... in update (a pytree with a leading example axis)")
        z = _resolve(noise_multiplier, state.count)
        next_key, sample_key = jax.random.split(state.key)
        agg = differentially_private_aggregate(l2_norm_clip, z, key=sample_key)
        out, _ = agg.update(per_example_grads, DifferentiallyPrivateAggregateState(rng_key=sample_key))
        out = jax.tree.map(lambda o, g: o.astype(g.dtype), out, updates)
        realized, angle = _realized(jax.tree.leaves(updates), jax.tree.leaves(out))
        return out, NoiseState(optax.safe_increment(state.count), next_key, realized, angle)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check(cfg) -> None:
    if not (isinstance(cfg.clip, (int, float)) and cfg.clip > 0 and math.isfinite(cfg.clip)):
        raise ValueError(f"noise.clip (dp_sgd's per-example clipping norm C) must be a finite number > 0, got {cfg.clip}")
    if cfg.position != "gradient":
        raise ValueError("noise.position must be 'gradient' for noise=dp_sgd (it aggregates per-example gradients, first in the chain)")


register_noise(
    "dp_sgd",
    lambda level, key, cfg: dp_sgd(level, cfg.clip, key),
    level_name="noise_multiplier",
    level_doc="must be a noise multiplier z >= 0 (0 = clipping only, no privacy)",
    valid_level=lambda v: v >= 0 and math.isfinite(v),
    per_example_grads=True,
    check=_check,
    total_noise="sigma",
    sampling="without_replacement",
    gaussian_std=lambda level, cfg, batch_size: level * cfg.clip / batch_size,
    norm_bound=lambda cfg: cfg.clip,
    reads=("position", "clip"),
)
