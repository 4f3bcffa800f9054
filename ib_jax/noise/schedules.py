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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ib_jax.registry import SCHEDULES

__all__ = [
    "constant",
    "linear",
    "cosine",
    "exponential",
    "piecewise",
    "warmup",
    "anneal",
    "from_config",
    "build",
    "normalize_total_noise",
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
    return optax.exponential_decay(init_value, transition_steps, decay_rate, staircase=staircase, end_value=end_value)


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


for _name, _fn in {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
    "piecewise": piecewise,
    "warmup": warmup,
    "anneal": anneal,
}.items():
    SCHEDULES.register(_name, _fn)
KINDS = SCHEDULES  # the registry (name -> builder); kept under its 0.1 name


def from_config(cfg: Mapping[str, Any] | float | int) -> optax.Schedule:
    """Build a schedule from ``{"kind": name, **kwargs}`` (or a bare number).

    Raises ``ValueError`` naming the key for an unknown kind or bad arguments.
    """
    if isinstance(cfg, (int, float)):
        return constant(float(cfg))
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    builder = SCHEDULES.get(kind)
    try:
        return builder(**cfg)
    except TypeError as e:
        raise ValueError(f"schedule.params: bad arguments {sorted(cfg)} for schedule.kind={kind!r}: {e}") from e


def build(conf, *, steps: int, level_name: str = "snr") -> optax.Schedule | None:
    """The level multiplier ``count -> m_t`` of a job's ``schedule`` group (None: constant 1).

    With ``conf.normalize == "total_noise"`` the shape is rescaled so that the summed noise
    power over ``steps`` equals the constant schedule's at the same level
    (:func:`normalize_total_noise`; counted as sum 1/snr_t, or sum sigma_t^2 for sigma kinds).
    """
    params = dict(conf.params)
    if conf.kind == "constant" and not params:
        if not conf.normalize or conf.normalize == "none":
            return None
        params = {"value": 1.0}  # the multiplier 1: normalizing it changes nothing
    try:
        shape = from_config({"kind": conf.kind, **params})
    except ValueError as e:
        if str(e).startswith("schedule."):
            raise
        raise ValueError(f"schedule.params: {e}") from e
    if conf.normalize in (None, "", "none"):
        return shape
    if conf.normalize != "total_noise":
        raise ValueError(f"schedule.normalize must be null or 'total_noise', got {conf.normalize!r}")
    if level_name not in ("snr", "sigma"):
        raise ValueError(f"schedule.normalize=total_noise is defined for SNR and sigma levels, not {level_name!r}")
    return normalize_total_noise(shape, steps, kind=level_name)


def normalize_total_noise(schedule, steps: int, *, kind: str = "snr") -> optax.Schedule:
    """Rescale a level schedule so that the run injects the constant schedule's total noise.

    ``schedule`` is a multiplier ``count -> s_t`` (or a number) on a level: the
    per-step level is ``level * s_t``. The returned schedule is ``t -> m s_t``
    with the constant ``m`` chosen so that, for any level, the summed noise power
    over ``t = 0 .. steps - 1`` equals that of the constant schedule ``s_t = 1``:

    * ``kind='snr'`` (power SNR levels; noise power ~ 1/snr):
      sum_t 1 / (level m s_t) = steps / level  =>  m = mean_t(1 / s_t).
      Steps with s_t = inf add no noise and count 0.
    * ``kind='sigma'`` (absolute sigma levels; noise power ~ sigma^2):
      sum_t (level m s_t)^2 = steps level^2  =>  m = 1 / sqrt(mean_t s_t^2).

    So a warm-up, cosine or annealed schedule can be compared with constant
    noise at equal total injected noise. ``s_t`` is evaluated (under
    ``jax.vmap``) at ``count = 0 .. steps - 1``; it may return jax arrays, and
    ``m`` is a float32 jax scalar. Values known at construction are checked:
    an SNR multiplier must be > 0 (inf allowed) and not all inf; a sigma
    multiplier >= 0, finite and not all 0.
    """
    if kind not in ("snr", "sigma"):
        raise ValueError(f"kind must be 'snr' or 'sigma', got {kind!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    shape = schedule if callable(schedule) else optax.constant_schedule(schedule)
    values = jnp.asarray(jax.vmap(shape)(jnp.arange(steps, dtype=jnp.int32)), jnp.float32)
    values = jnp.broadcast_to(values, (steps,))
    if kind == "snr":
        m = jnp.mean(1.0 / values)
    else:
        m = 1.0 / jnp.sqrt(jnp.mean(jnp.square(values)))
    try:
        v = np.asarray(values, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        v = None  # built inside a trace: cannot be checked here
    if v is not None:
        if np.isnan(v).any():
            raise ValueError(f"schedule gives NaN within the first steps={steps} counts")
        if kind == "snr" and ((v <= 0).any() or np.isinf(v).all()):
            raise ValueError("schedule: an SNR multiplier must be > 0 (inf = no noise) and not inf at every step")
        if kind == "sigma" and ((v < 0).any() or np.isinf(v).any() or (v == 0).all()):
            raise ValueError("schedule: a sigma multiplier must be finite, >= 0 and not 0 at every step")

    def normalized(count):
        return m * shape(count)

    return normalized
