"""The optimizers of ``optimizer=<name>``: the ``OPTIMIZERS`` registry's built-ins, each with its check.

An entry is an :class:`OptimizerEntry`: ``build(learning_rate, cfg: OptimizerConf) ->
optax.GradientTransformation`` (the learning rate may be a traced per-member scalar) and a
``check(cfg: OptimizerConf)`` run by validation before any compute. A plug-in may register a
plain function ``(learning_rate, cfg) -> transformation`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import optax

from ib_jax.registry import NOISE, OPTIMIZERS

__all__ = ["OptimizerEntry", "check"]


class OptimizerEntry(NamedTuple):
    build: Callable[[Any, Any], optax.GradientTransformation]
    check: Callable[[Any], None] | None = None

    def __call__(self, learning_rate, cfg) -> optax.GradientTransformation:
        return self.build(learning_rate, cfg)


def _no_momentum(cfg) -> None:
    if cfg.momentum is not None:
        raise ValueError(
            f"optimizer.momentum is used by optimizer=momentum only; optimizer={cfg.name} would ignore it (got {cfg.momentum})"
        )
    if cfg.name != "adamw" and cfg.weight_decay is not None:
        raise ValueError(
            f"optimizer.weight_decay is used by optimizer=adamw only; optimizer={cfg.name} would ignore it (got {cfg.weight_decay})"
        )


def _adamw(cfg) -> None:
    _no_momentum(cfg)
    wd = cfg.weight_decay
    if wd is None or not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
        raise ValueError(f"optimizer.weight_decay must be a finite number >= 0 for optimizer=adamw, got {wd}")


def _momentum(cfg) -> None:
    if cfg.weight_decay is not None:
        raise ValueError(
            f"optimizer.weight_decay is used by optimizer=adamw only; optimizer=momentum would ignore it (got {cfg.weight_decay})"
        )
    if cfg.momentum is None or not 0.0 <= cfg.momentum < 1.0:
        raise ValueError(f"optimizer.momentum must be in [0, 1) for optimizer=momentum, got {cfg.momentum}")


def check(cfg) -> None:
    """The optimizer part of validation (``optimizer.*``): the entry's own check, learning rate and batch size."""
    o = cfg.optimizer
    entry = OPTIMIZERS.get(o.name)
    lr = o.learning_rate
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"optimizer.learning_rate must be a finite number > 0, got {lr}")
    if o.batch_size < 0:
        raise ValueError(f"optimizer.batch_size must be >= 0 (0 = full batch), got {o.batch_size}")
    if o.clip_norm is not None:
        if not (isinstance(o.clip_norm, (int, float)) and math.isfinite(o.clip_norm) and o.clip_norm > 0):
            raise ValueError(f"optimizer.clip_norm must be a finite number > 0 or null (no clipping), got {o.clip_norm}")
        if getattr(NOISE.get(cfg.noise.kind), "norm_bound", None) is not None:
            raise ValueError(
                f"optimizer.clip_norm has no effect with noise={cfg.noise.kind}, which bounds the gradient itself "
                "(dp_sgd: noise.clip clips each example); leave it null"
            )
    entry_check = getattr(entry, "check", None)
    if entry_check is not None:
        entry_check(o)


OPTIMIZERS.register("sgd", OptimizerEntry(lambda lr, cfg: optax.sgd(lr), _no_momentum))
OPTIMIZERS.register("momentum", OptimizerEntry(lambda lr, cfg: optax.sgd(lr, momentum=cfg.momentum), _momentum))
OPTIMIZERS.register("adam", OptimizerEntry(lambda lr, cfg: optax.adam(lr), _no_momentum))
# AdamW (Loshchilov & Hutter 2019): decoupled weight decay, lr * weight_decay * w subtracted each step
OPTIMIZERS.register("adamw", OptimizerEntry(lambda lr, cfg: optax.adamw(lr, weight_decay=cfg.weight_decay), _adamw))
