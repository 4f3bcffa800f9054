"""Shared model parts: activations, initialisers, layer noise, quantization hooks, builder checks.

Every model of :mod:`ib_jax.models` is a Flax module whose forward pass returns the logits **and every hidden representation**.

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
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ib_jax.models.quantize import quantize_activation

__all__ = [
    "ACTIVATIONS",
    "ModelEntry",
    "kernel_init",
    "conv_kernel_init",
    "layer_noise",
    "quantize_hidden",
    "norm_act",
    "as_images",
    "check_activation",
    "common_kwargs",
]
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda x: x,
    "gelu": jax.nn.gelu,
}


def kernel_init(scale: float):
    """Truncated normal with std ``scale / sqrt(fan_in)`` (LeCun's init at scale 1, Shwartz-Ziv & Tishby's;
    fan_in = kernel area x input channels for a convolution; ``scale = sqrt(2)`` is He et al.'s 2015 init
    for ReLU nets)."""
    return nn.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


conv_kernel_init = kernel_init  # the same rule for dense and convolution kernels


def layer_noise(module: nn.Module, h, beta: float):
    """T = S + Z, Z ~ N(0, beta^2 I) (Goldfeld et al. 2019's noisy network), drawn from the
    ``layer_noise`` rng stream; without that stream (or beta = 0) the layer is deterministic."""
    if beta <= 0 or not module.has_rng("layer_noise"):
        return h
    return h + beta * jax.random.normal(module.make_rng("layer_noise"), h.shape, h.dtype)


def quantize_hidden(h, bits: int, activation: str):
    """k-bit activations with a straight-through gradient (Lorenzen et al. 2022); 0 bits: unchanged."""
    if bits <= 0:
        return h
    return quantize_activation(h, bits, activation)


def norm_act(h, act, batch_norm: bool, train: bool):
    """(batch norm, when asked,) then the nonlinearity; called inside a compact ``__call__``."""
    if batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return act(h)


def as_images(x: jax.Array, input_shape: Sequence[int] | None) -> jax.Array:
    """``(n, H, W, C)`` images from images, single-channel images, or flat rows with ``input_shape``."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 2 and input_shape is not None:
        return x.reshape((x.shape[0], *input_shape))
    raise ValueError(f"model input must be (n, H, W, C), (n, H, W), or (n, H*W*C) with model.input_shape set; got shape {x.shape}")


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")


def common_kwargs(cfg, n_classes: int) -> dict:
    """The module arguments every model takes, checked (``model.activation``, ``dropout``, ``init_scale``)."""
    check_activation(cfg.activation)
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.init_scale > 0:
        raise ValueError(f"model.init_scale must be > 0, got {cfg.init_scale}")
    return dict(n_classes=n_classes, activation=cfg.activation, init_scale=cfg.init_scale, dropout=cfg.dropout, batch_norm=cfg.batch_norm)


class ModelEntry(NamedTuple):
    """A ``MODELS`` registry entry: ``build(cfg: ModelConf, n_classes) -> flax module``, plus what it reads.

    Attributes:
      build: the builder; raises ``ValueError`` naming a bad ``model.*`` key.
      reads: the option groups of ``model`` it reads (``conv``, ``resnet``); a group changed from its
        defaults for a model that does not read it is refused (it would be silently ignored).
      noisy: implements ``model.layer_noise`` and ``model.quantize_bits``.

    Called like its builder, so a plug-in may also register a plain function.
    """

    build: Callable[[Any, int], nn.Module]
    reads: tuple[str, ...] = ()
    noisy: bool = False

    def __call__(self, cfg, n_classes: int) -> nn.Module:
        return self.build(cfg, n_classes)
