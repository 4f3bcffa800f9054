"""Noise kinds selectable as ``noise=<kind>``: the ``NOISE`` registry and its built-ins.

A kind is a :class:`NoiseKind`: how a member's level (one value of the ``noise.snr`` grid,
times the schedule) becomes

* an optax transform placed in the optimizer chain (``transform``: gradient noise before
  the optimizer, update noise after it, ``noise.position``), and/or
* a perturbation of each mini-batch (``batch``: label noise, random per-example loss
  weights), which acts before the gradient exists.

Register your own with :func:`register_noise` (see the README's plug-in example)::

    register_noise("signflip", lambda level, key, cfg: my_transform(level, key))

``level`` is always a schedule ``count -> level`` (a jax scalar function); ``key`` is the
member's own noise key: keep it in your transform's state (the population gives every
member a different one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import optax

from ib_jax import noise as N
from ib_jax.registry import NOISE

__all__ = ["NoiseKind", "register_noise", "get"]


def _positive(v: float) -> bool:
    return v > 0


class NoiseKind(NamedTuple):
    """One registered noise kind.

    Attributes:
      transform: ``(level: count -> level, key, cfg: NoiseConf) -> optax.GradientTransformation``
        or None (no transform).
      batch: ``(key, y, level, n_classes, cfg) -> (y', weights (B,))`` applied to each
        mini-batch before the loss, or None. The loss is ``mean_i weights_i * l(x_i, y'_i)``.
      level_name: what ``noise.snr`` holds for this kind (``snr``, ``sigma``, ``p``): it names
        the level column in records and plots.
      level_doc: the valid range, for messages.
      valid_level: ``float -> bool``.
      per_example_grads: the transform's ``update`` needs ``per_example_grads=`` (SGD-shaped).
      check: ``NoiseConf -> None``, raising ``ValueError`` naming the key, or None.
      total_noise: ``"snr"`` or ``"sigma"``: how the summed injected noise power of a schedule
        is counted (``schedule.normalize=total_noise``): sum 1/snr_t or sum sigma_t^2.
    """

    transform: Callable[..., optax.GradientTransformation] | None = None
    batch: Callable[..., Any] | None = None
    level_name: str = "snr"
    level_doc: str = "must be > 0 (inf = no noise)"
    valid_level: Callable[[float], bool] = _positive
    per_example_grads: bool = False
    check: Callable[[Any], None] | None = None
    total_noise: str = "snr"


def register_noise(name: str, transform=None, **kwargs) -> NoiseKind:
    """Register a noise kind under ``name`` (keyword arguments: the fields of :class:`NoiseKind`)."""
    kind = NoiseKind(transform=transform, **kwargs)
    NOISE.register(name, kind)
    return kind


def get(name: str) -> NoiseKind:
    return NOISE.get(name)


def _check_scope(cfg) -> None:
    if cfg.scope not in N.SCOPES:
        raise ValueError(f"noise.scope must be one of {N.SCOPES}, got {cfg.scope!r}")


def _check_cone(cfg) -> None:
    _check_scope(cfg)
    if cfg.mode not in N.CONE_MODES:
        raise ValueError(f"noise.mode must be one of {N.CONE_MODES}, got {cfg.mode!r}")


register_noise("none", None, level_doc="is ignored (no noise)", valid_level=lambda v: True)
register_noise("isotropic", lambda level, key, cfg: N.isotropic(level, key, scope=cfg.scope), check=_check_scope)
register_noise(
    "cone",
    lambda level, key, cfg: N.cone(level, key, mode=cfg.mode, scope=cfg.scope, preserve_norm=cfg.preserve_norm),
    check=_check_cone,
)
register_noise(
    "fixed",
    lambda level, key, cfg: N.fixed(level, key),
    level_name="sigma",
    level_doc="must be a sigma >= 0 (0 = no noise)",
    valid_level=lambda v: v >= 0 and math.isfinite(v),
    total_noise="sigma",
)
register_noise("sgd_shaped", lambda level, key, cfg: N.sgd_shaped(level, key), per_example_grads=True)


def _check_alpha(cfg) -> None:
    _check_scope(cfg)
    if not (isinstance(cfg.alpha, (int, float)) and 0.0 < cfg.alpha <= 2.0):
        raise ValueError(f"noise.alpha must be in (0, 2] (2 = Gaussian), got {cfg.alpha}")


def _check_variant(cfg) -> None:
    from ib_jax.batch_noise import WEIGHT_VARIANTS

    if cfg.variant not in WEIGHT_VARIANTS:
        raise ValueError(f"noise.variant must be one of {WEIGHT_VARIANTS}, got {cfg.variant!r}")


def _multiplicative(key, y, level, n_classes, cfg):
    from ib_jax.batch_noise import multiplicative_weights

    return y, multiplicative_weights(key, y.shape[0], level, variant=cfg.variant)


def _label(key, y, p, n_classes, cfg):
    from ib_jax.batch_noise import label_noise

    return label_noise(key, y, p, n_classes), None


# Simsekli et al. 2019: symmetric alpha-stable, c = ||g|| / sqrt(2 D snr); for alpha < 2 snr is a scale ratio
register_noise("heavy_tailed", lambda level, key, cfg: N.heavy_tailed(level, key, alpha=cfg.alpha, scope=cfg.scope), check=_check_alpha)
# Orvieto et al. 2022 (Anti-PGD): n_t = s_t (z_t - z_{t-1}), E||n_t||^2 = ||g||^2 / snr
register_noise("anticorrelated", lambda level, key, cfg: N.anticorrelated(level, key, scope=cfg.scope), check=_check_scope)
# Wu et al. 2020: loss mean_i w_i l_i, E w = 1, Var w = 1/snr (the weights' power SNR)
register_noise("multiplicative", None, batch=_multiplicative, check=_check_variant)
# Blanc et al. 2020 / Damian et al. 2021: each label replaced with probability p by another class
register_noise(
    "label", None, batch=_label, level_name="p",
    level_doc="must be a replacement probability p in [0, 1] (0 = clean labels)",
    valid_level=lambda v: 0.0 <= v <= 1.0,
)
