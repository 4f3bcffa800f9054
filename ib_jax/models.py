"""Flax models whose forward pass returns the logits **and every hidden representation**.

``model.apply(variables, x, train=...)`` returns ``(logits, hidden)`` with
``hidden`` a tuple of ``(n, d_l)`` arrays, one per hidden layer, taken after
the nonlinearity (and after batch norm, before dropout): the T's the
estimators measure. Returning them explicitly keeps the jitted core
functional (no ``sow``/mutable collections except batch-norm statistics).

We use Flax Linen: ``init``/``apply`` are pure functions of parameter pytrees,
which is what a vmapped population over seeds needs (``jax.vmap(model.init)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "CNN1D", "ModelConfig", "build", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda x: x,
    "gelu": jax.nn.gelu,
}


def _kernel_init(scale: float):
    # LeCun-style truncated normal, std = scale / sqrt(fan_in) (Shwartz-Ziv & Tishby's init at scale 1)
    return nn.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


def _norm_act(h, act, batch_norm: bool, train: bool):
    """(batch norm, when asked,) then the nonlinearity; called inside a compact ``__call__``."""
    if batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return act(h)


class MLP(nn.Module):
    """Fully connected network: widths of the hidden layers, then a linear read-out.

    Attributes:
      widths: hidden layer widths, e.g. (10, 7, 5, 4, 3) for the 12-10-7-5-4-3-2 net.
      n_classes: outputs (logits).
      activation: one of ``ACTIVATIONS``.
      init_scale: multiplies the init std 1/sqrt(fan_in).
      dropout: drop rate after each hidden layer (0 = none).
      batch_norm: batch normalization before each nonlinearity.
    """

    widths: Sequence[int]
    n_classes: int
    activation: str = "tanh"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        hidden = []
        for w in self.widths:
            h = _norm_act(nn.Dense(w, kernel_init=_kernel_init(self.init_scale))(h), act, self.batch_norm, train)
            hidden.append(h)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.n_classes, kernel_init=_kernel_init(self.init_scale))(h)
        return logits, tuple(hidden)


class CNN1D(nn.Module):
    """A small 1-D CNN for MNIST-1D: strided convolutions, then a linear read-out.

    Each conv layer's output, flattened to ``(n, length * channels)``, is a
    hidden representation.
    """

    channels: Sequence[int] = (16, 16, 16)
    kernel_size: int = 5
    n_classes: int = 10
    activation: str = "relu"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1, 1) if x.ndim == 2 else x
        hidden = []
        for c in self.channels:
            h = nn.Conv(c, (self.kernel_size,), strides=(2,), padding="SAME", kernel_init=_kernel_init(self.init_scale))(h)
            h = _norm_act(h, act, self.batch_norm, train)
            hidden.append(h.reshape(h.shape[0], -1))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.n_classes, kernel_init=_kernel_init(self.init_scale))(h.reshape(h.shape[0], -1))
        return logits, tuple(hidden)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What hydra's ``model`` group holds. ``kind``: ``mlp`` or ``cnn1d``."""

    kind: str = "mlp"
    widths: tuple[int, ...] = (10, 7, 5, 4, 3)
    activation: str = "tanh"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False
    channels: tuple[int, ...] = (16, 16, 16)
    kernel_size: int = 5


def build(cfg: ModelConfig, n_classes: int) -> nn.Module:
    """A model from its config; raises ``ValueError`` naming a bad field."""
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {cfg.activation!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.init_scale > 0:
        raise ValueError(f"model.init_scale must be > 0, got {cfg.init_scale}")
    common = dict(n_classes=n_classes, activation=cfg.activation, init_scale=cfg.init_scale, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    if cfg.kind == "mlp":
        if not cfg.widths or any(int(w) < 1 for w in cfg.widths):
            raise ValueError(f"model.widths must be positive ints, got {cfg.widths}")
        return MLP(widths=tuple(int(w) for w in cfg.widths), **common)
    if cfg.kind == "cnn1d":
        return CNN1D(channels=tuple(int(c) for c in cfg.channels), kernel_size=cfg.kernel_size, **common)
    raise ValueError(f"model.kind must be 'mlp' or 'cnn1d', got {cfg.kind!r}")
