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

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ib_jax.registry import MODELS

__all__ = ["MLP", "CNN1D", "build", "ACTIVATIONS"]

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


def _layer_noise(module: nn.Module, h, beta: float):
    """T = S + Z, Z ~ N(0, beta^2 I) (Goldfeld et al. 2019's noisy network), drawn from the
    ``layer_noise`` rng stream; without that stream (or beta = 0) the layer is deterministic."""
    if beta <= 0 or not module.has_rng("layer_noise"):
        return h
    return h + beta * jax.random.normal(module.make_rng("layer_noise"), h.shape, h.dtype)


def _quantize(h, bits: int, activation: str):
    """k-bit activations with a straight-through gradient (Lorenzen et al. 2022); 0 bits: unchanged."""
    if bits <= 0:
        return h
    from ib_jax.quantize import quantize_activation

    return quantize_activation(h, bits, activation)


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
    layer_noise: float = 0.0
    quantize_bits: int = 0

    @nn.compact
    def __call__(self, x, *, train: bool = False, centers: bool = False):
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        hidden = []
        for w in self.widths:
            h = _norm_act(nn.Dense(w, kernel_init=_kernel_init(self.init_scale))(h), act, self.batch_norm, train)
            h = _quantize(h, self.quantize_bits, self.activation)
            s = h
            h = _layer_noise(self, h, self.layer_noise)
            hidden.append(s if centers else h)
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


def _common(cfg, n_classes: int) -> dict:
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {cfg.activation!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.init_scale > 0:
        raise ValueError(f"model.init_scale must be > 0, got {cfg.init_scale}")
    return dict(n_classes=n_classes, activation=cfg.activation, init_scale=cfg.init_scale, dropout=cfg.dropout, batch_norm=cfg.batch_norm)


def _no_extras(cfg, kind: str) -> None:
    if cfg.layer_noise > 0 or cfg.quantize_bits > 0:
        raise ValueError(f"model.layer_noise / model.quantize_bits are implemented for model.kind=mlp, not {kind!r}")


@MODELS.register("mlp")
def build_mlp(cfg, n_classes: int) -> nn.Module:
    if not cfg.widths or any(int(w) < 1 for w in cfg.widths):
        raise ValueError(f"model.widths must be positive ints, got {list(cfg.widths)}")
    return MLP(widths=tuple(int(w) for w in cfg.widths), layer_noise=float(cfg.layer_noise), quantize_bits=int(cfg.quantize_bits), **_common(cfg, n_classes))


@MODELS.register("cnn1d")
def build_cnn1d(cfg, n_classes: int) -> nn.Module:
    _no_extras(cfg, "cnn1d")
    if not cfg.channels or any(int(c) < 1 for c in cfg.channels) or cfg.kernel_size < 1:
        raise ValueError(f"model.channels must be positive ints and model.kernel_size >= 1, got {list(cfg.channels)}, {cfg.kernel_size}")
    return CNN1D(channels=tuple(int(c) for c in cfg.channels), kernel_size=cfg.kernel_size, **_common(cfg, n_classes))


def build(cfg, n_classes: int) -> nn.Module:
    """A model from its config (:class:`ib_jax.config.ModelConf`) via the ``MODELS`` registry;
    raises ``ValueError`` naming a bad field."""
    return MODELS.get(cfg.kind)(cfg, n_classes)


@MODELS.register("cnn2d")
def build_cnn2d(cfg, n_classes: int) -> nn.Module:
    """LeNet-style 2-D CNN (:class:`ib_jax.convnets.CNN2D`) for images ``(n, H, W, C)``."""
    from ib_jax.convnets import CNN2D

    _no_extras(cfg, "cnn2d")
    if cfg.pool not in ("max", "avg"):
        raise ValueError(f"model.pool must be 'max' or 'avg', got {cfg.pool!r}")
    return CNN2D(channels=tuple(int(c) for c in cfg.channels), dense=tuple(int(d) for d in cfg.dense), kernel_size=cfg.kernel_size,
                 pool=cfg.pool, **_common(cfg, n_classes))


@MODELS.register("resnet20")
def build_resnet20(cfg, n_classes: int) -> nn.Module:
    """CIFAR ResNet-20 style network (:class:`ib_jax.convnets.ResNet20`)."""
    from ib_jax.convnets import ResNet20

    _no_extras(cfg, "resnet20")
    if cfg.shortcut not in ("A", "B") or cfg.record not in ("blocks", "stages") or cfg.blocks_per_stage < 1 or not cfg.width > 0:
        raise ValueError("model.shortcut must be A|B, model.record blocks|stages, model.blocks_per_stage >= 1, model.width > 0; "
                         f"got {cfg.shortcut!r}, {cfg.record!r}, {cfg.blocks_per_stage}, {cfg.width}")
    return ResNet20(width=float(cfg.width), blocks_per_stage=int(cfg.blocks_per_stage), shortcut=cfg.shortcut, record=cfg.record,
                    **_common(cfg, n_classes))
