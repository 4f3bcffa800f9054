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

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ib_jax.models.quantize import quantize_activation

__all__ = [
    "ACTIVATIONS",
    "ModelEntry",
    "INITS",
    "kernel_init",
    "conv_kernel_init",
    "inits",
    "check_init",
    "layer_noise",
    "quantize_hidden",
    "norm_act",
    "as_images",
    "image_shape",
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


def _lecun(scale: float, fan_in: int) -> dict:
    """flax's default: kernel truncated normal, std ``scale / sqrt(fan_in)``; zero biases."""
    return {"kernel_init": kernel_init(scale), "bias_init": nn.initializers.zeros_init()}


def _torch(scale: float, fan_in: int) -> dict:
    """PyTorch's default for ``nn.Linear`` / ``nn.Conv*`` (``kaiming_uniform_(a=sqrt(5))`` and its bias
    rule): kernel and bias uniform on ``[-b, b]``, ``b = scale / sqrt(fan_in)``. The kernel's std is
    ``b / sqrt(3)``: 1/sqrt(3) of the LeCun spread, and the biases are not zero. The code of
    Goldfeld et al. (kgreenewald/smoothMI, PyTorch) trains from this init."""
    b = scale / math.sqrt(fan_in)
    return {"kernel_init": nn.initializers.variance_scaling(scale**2 / 3.0, "fan_in", "uniform"), "bias_init": _uniform(b)}


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# ``model.init``: name -> (init_scale, fan_in) -> the kernel_init / bias_init of one flax Dense or Conv.
# Plain functions: register another by adding an entry.
INITS: dict[str, Callable[[float, int], dict]] = {"lecun": _lecun, "torch": _torch}


def check_init(name: str) -> None:
    if name not in INITS:
        raise ValueError(f"model.init must be one of {sorted(INITS)}, got {name!r}")


def inits(name: str, scale: float, fan_in: int) -> dict:
    """``kernel_init`` and ``bias_init`` keywords for a Dense / Conv with ``fan_in`` inputs per output
    (kernel area x input channels for a convolution), by ``model.init`` (:data:`INITS`)."""
    check_init(name)
    return INITS[name](scale, int(fan_in))


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
    raise ValueError(
        f"model input must be (n, H, W, C), (n, H, W), or (n, H*W*C) with model.input_shape=[H, W, C] set; got shape {x.shape}"
    )


def image_shape(cfg) -> tuple[int, int, int] | None:
    """``model.input_shape`` checked: ``(H, W, C)`` positive, or None (``()``: the data's own shape)."""
    shape = tuple(int(v) for v in cfg.input_shape)
    if not shape:
        return None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"model.input_shape must be [H, W, C] (positive) or [] (the data's own shape), got {list(cfg.input_shape)}")
    return shape


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")


def common_kwargs(cfg, n_classes: int) -> dict:
    """The module arguments every model takes, checked (``model.activation``, ``init``, ``init_scale``, ``dropout``)."""
    check_activation(cfg.activation)
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.init_scale > 0:
        raise ValueError(f"model.init_scale must be > 0, got {cfg.init_scale}")
    check_init(cfg.init)
    return dict(
        n_classes=n_classes,
        activation=cfg.activation,
        weight_init=cfg.init,
        init_scale=cfg.init_scale,
        dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
    )


class ModelEntry(NamedTuple):
    """A ``MODELS`` registry entry: ``build(cfg: ModelConf, n_classes) -> flax module``, plus what it reads.

    Attributes:
      build: the builder; raises ``ValueError`` naming a bad ``model.*`` key.
      reads: the option groups of ``model`` it reads (``conv``, ``resnet``); a group changed from its
        defaults for a model that does not read it is refused (it would be silently ignored).
      noisy: implements ``model.layer_noise`` (noise after every recorded layer, ``centers=True``
        returns the clean outputs S_l: what sample propagation needs).
      quantized: implements ``model.quantize_bits``.

    Called like its builder, so a plug-in may also register a plain function.
    """

    build: Callable[[Any, int], nn.Module]
    reads: tuple[str, ...] = ()
    noisy: bool = False
    quantized: bool = False

    def __call__(self, cfg, n_classes: int) -> nn.Module:
        return self.build(cfg, n_classes)
