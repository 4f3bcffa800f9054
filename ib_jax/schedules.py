"""Schedules for the noise level (an SNR or an absolute sigma), as optax schedules.

A schedule is a pure function ``count -> value`` (``count`` the int step of the
noise transform), so it can be passed wherever ``ib_jax.noise`` takes an
``optax.ScalarOrSchedule``. Each is also buildable from a plain dict (what a
hydra config holds) with :func:`from_config`::

    from_config({"kind": "cosine", "init_value": 100.0, "decay_steps": 1000, "alpha": 0.01})

Where optax already has the schedule it is used as is; the extra ones here are
``anneal`` (Neelakantan et al. 2015) and ``warmup`` (hold-then-ramp towards a
target). A value of ``inf`` is allowed for SNR schedules (no noise) wherever
the arithmetic keeps it meaningful (constant, piecewise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

__all__ = [
    "constant",
    "linear",
    "cosine",
    "exponential",
    "piecewise",
    "warmup",
    "anneal",
    "from_config",
    "KINDS",
]


def constant(value: float) -> optax.Schedule:
    """value(t) = value."""
    return optax.constant_schedule(value)


def linear(init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0) -> optax.Schedule:
    """Linear from init_value to end_value over transition_steps, then held."""
    return optax.linear_schedule(init_value, end_value, transition_steps, transition_begin)


def cosine(init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0) -> optax.Schedule:
    """init * ((1 - alpha) * (0.5 (1 + cos(pi t / T)))^exponent + alpha), T = decay_steps."""
    return optax.cosine_decay_schedule(init_value, decay_steps, alpha, exponent)


def exponential(
    init_value: float,
    decay_rate: float,
    transition_steps: int,
    end_value: float | None = None,
    staircase: bool = False,
) -> optax.Schedule:
    """init * decay_rate^(t / transition_steps), clipped at end_value."""
    return optax.exponential_decay(
        init_value, transition_steps, decay_rate, staircase=staircase, end_value=end_value
    )


def piecewise(init_value: float, boundaries_and_scales: Mapping[int, float]) -> optax.Schedule:
    """Step schedule: multiplied by scales[b] once t >= b (optax semantics)."""
    return optax.piecewise_constant_schedule(init_value, {int(k): float(v) for k, v in boundaries_and_scales.items()})


def warmup(target: float, warmup_steps: int, init_value: float, geometric: bool = True) -> optax.Schedule:
    """Ramp from init_value to target over warmup_steps, then hold target.

    For an SNR the natural ramp is geometric (linear in log SNR): a noise
    warm-up from little noise (large init SNR) to the target SNR.
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
    if not geometric:
        return optax.linear_schedule(init_value, target, warmup_steps)
    if init_value <= 0 or target <= 0:
        raise ValueError("geometric warmup needs init_value > 0 and target > 0")
    log_sched = optax.linear_schedule(jnp.log(init_value), jnp.log(target), warmup_steps)
    return lambda t: jnp.exp(log_sched(t))


def anneal(eta: float, gamma: float = 0.55) -> optax.Schedule:
    """sigma(t) = sqrt(eta / (1 + t)^gamma)  (Neelakantan et al. 2015).

    A *sigma* schedule: with ``ib_jax.noise.fixed`` it is ``optax.add_noise``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")

    def schedule(count):
        count_inc = optax.safe_increment(jnp.asarray(count, jnp.int32))
        return jnp.sqrt(eta / count_inc**gamma)

    return schedule


KINDS = {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
    "piecewise": piecewise,
    "warmup": warmup,
    "anneal": anneal,
}


def from_config(cfg: Mapping[str, Any] | float | int) -> optax.Schedule:
    """Build a schedule from ``{"kind": name, **kwargs}`` (or a bare number).

    Raises ``ValueError`` naming the key for an unknown kind or bad arguments.
    """
    if isinstance(cfg, (int, float)):
        return constant(float(cfg))
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"schedule.kind must be one of {sorted(KINDS)}, got {kind!r}")
    try:
        return KINDS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"schedule.kind={kind!r}: bad arguments {sorted(cfg)}: {e}") from e
