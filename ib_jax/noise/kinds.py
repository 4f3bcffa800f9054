"""Noise kinds selectable as ``noise=<kind>``: what a ``NOISE`` registry entry is.

A kind is a :class:`NoiseKind`: how a member's level (one value of the ``noise.snr`` grid,
times the schedule) becomes

* an optax transform placed in the optimizer chain (``transform``: gradient noise before
  the optimizer, update noise after it, ``noise.position``), and/or
* a perturbation of each mini-batch (``batch``: label noise, random per-example loss
  weights), which acts before the gradient exists.

Each built-in kind registers itself at the bottom of its own module (``isotropic.py``, ``label.py``...).
Register your own with :func:`register_noise` (see the README's plug-in example)::

    register_noise("signflip", lambda level, key, cfg: my_transform(level, key))

``level`` is always a schedule ``count -> level`` (a jax scalar function); ``key`` is the
member's own noise key: keep it in your transform's state (the population gives every
member a different one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax

from ib_jax.noise._core import SCOPES
from ib_jax.registry import NOISE

__all__ = ["NoiseKind", "register_noise", "get", "check_scope"]


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
      check: ``NoiseConf -> None`` (run by validation before any compute), raising ``ValueError`` naming the key, or None.
      total_noise: ``"snr"`` or ``"sigma"``: how the summed injected noise power of a schedule
        is counted (``schedule.normalize=total_noise``): sum 1/snr_t or sum sigma_t^2.
      sampling: how a step's mini-batch is drawn: ``"iid"`` (B indices with replacement, the
        default) or ``"without_replacement"`` (B distinct rows: what DP accounting assumes).
      gaussian_std: ``(level, cfg, batch_size) -> std`` for kinds that add data-independent
        isotropic Gaussian noise to the gradient, the per-coordinate std; None for kinds whose
        noise depends on the data (SNR-scaled, SGD-shaped) or is not Gaussian. The
        noisy-iterative bound (:mod:`ib_jax.bounds.noisy_iterative`) needs it.
      norm_bound: ``cfg -> L``: a bound the kind itself puts on the noiseless gradient's norm
        (DP-SGD's clipping), or None (then ``optimizer.clip_norm`` must give one).
      reads: the ``noise.*`` options the kind reads besides ``kind`` and the level grid
        (``position``, ``scope``, ``alpha``...): records and wandb show only these; None (a plug-in
        that does not say) = all of them.
    """

    transform: Callable[..., optax.GradientTransformation] | None = None
    batch: Callable[..., Any] | None = None
    level_name: str = "snr"
    level_doc: str = "must be > 0 (inf = no noise)"
    valid_level: Callable[[float], bool] = _positive
    per_example_grads: bool = False
    check: Callable[[Any], None] | None = None
    total_noise: str = "snr"
    sampling: str = "iid"
    gaussian_std: Callable[[float, Any, int], float] | None = None
    norm_bound: Callable[[Any], float] | None = None
    reads: tuple[str, ...] | None = None


def register_noise(name: str, transform=None, **kwargs) -> NoiseKind:
    """Register a noise kind under ``name`` (keyword arguments: the fields of :class:`NoiseKind`)."""
    kind = NoiseKind(transform=transform, **kwargs)
    NOISE.register(name, kind)
    return kind


def get(name: str) -> NoiseKind:
    return NOISE.get(name)


def check_scope(cfg) -> None:
    """``noise.scope``: shared by the kinds whose norm can be global or per leaf."""
    if cfg.scope not in SCOPES:
        raise ValueError(f"noise.scope must be one of {SCOPES}, got {cfg.scope!r}")


register_noise("none", None, level_doc="is ignored (no noise)", valid_level=lambda v: True, reads=())
