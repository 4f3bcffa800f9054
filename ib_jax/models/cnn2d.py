"""LeNet-style 2-D CNN for images (``model.kind=cnn2d``; options ``model.conv.*``).

Image models (Flax Linen) that return ``(logits, hidden)`` like :mod:`ib_jax.models.mlp`.

``model.apply(variables, x, train=...)`` returns the logits ``(n, n_classes)`` and ``hidden``, a
tuple of ``(n, d_l)`` arrays: each block's output after its nonlinearity (and after batch norm and
pooling where the block has them, before dropout), flattened channel-last, so a conv map
``(n, H, W, C)`` becomes ``(n, H * W * C)`` with the channel index fastest. ``hidden_channels()``
gives ``C`` per entry (``None`` for dense layers), which per-channel pooling of wide layers needs
(:func:`ib_jax.estimators.layer_features.reduce_features` with ``policy="channel_mean"``).

Inputs are ``(n, H, W, C)`` images; ``(n, H, W)`` gets a channel axis, and flat ``(n, H*W*C)`` rows
are reshaped with ``input_shape``.

The fully connected MNIST network of Shwartz-Ziv & Tishby (2017), 784-1024-20-20-20-10, is
:class:`ib_jax.models.mlp.MLP` with ``widths=(1024, 20, 20, 20)`` (it flattens images itself).

Randomness: parameters from the ``params`` key of ``init``; dropout draws from the ``dropout``
rng of ``apply`` (``rngs={"dropout": key}``), so a fixed key gives the same mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from ib_jax.models.layers import (
    ACTIVATIONS,
    ModelEntry,
    as_images,
    check_activation,
    common_kwargs,
    image_shape,
    inits,
    layer_noise,
)
from ib_jax.registry import MODELS

__all__ = ["CNN2D", "build_cnn2d"]


class CNN2D(nn.Module):
    """LeNet-style network (LeCun et al. 1998): [conv - act - pool] x len(channels), [dense - act] x len(dense), linear read-out.

    Each conv block is a ``kernel_size`` x ``kernel_size`` convolution (stride 1, SAME padding),
    batch norm when asked, the nonlinearity, then 2x2 pooling with stride 2 (``pool``: ``max`` or
    ``avg``). The defaults (32, 64 channels, 5x5, one dense layer of 512) are the classic
    TensorFlow MNIST CNN; ``channels=(6, 16), dense=(120, 84)`` is closer to LeNet-5.

    ``hidden``: one entry per conv block (its pooled output, ``(n, H/2^k * W/2^k * C_k)``) then one
    per dense layer ``(n, width)``.

    Attributes:
      channels: output channels of the conv blocks.
      dense: widths of the hidden dense layers.
      n_classes: outputs (logits).
      kernel_size: square conv kernel size.
      pool: ``"max"`` or ``"avg"``.
      activation: a key of :data:`ib_jax.models.ACTIVATIONS` (``relu``, ``tanh``...).
      weight_init: weights and biases at init (``model.init``), a key of :data:`ib_jax.models.layers.INITS`.
      init_scale: multiplies the init spread 1/sqrt(fan_in).
      dropout: drop rate after each hidden block (0 = none).
      batch_norm: batch normalization before each nonlinearity (running averages when not ``train``).
      input_shape: ``(H, W, C)`` to reshape flat ``(n, H*W*C)`` inputs; ``None`` for image inputs.
      layer_noise: beta of the noisy network (Goldfeld et al. 2019): every recorded block's output
        T_l = S_l + N(0, beta^2 I) (after pooling; the next block sees T_l), in training and
        evaluation; ``centers=True`` records the clean S_l.
    """

    channels: Sequence[int] = (32, 64)
    dense: Sequence[int] = (512,)
    n_classes: int = 10
    kernel_size: int = 5
    pool: str = "max"
    activation: str = "relu"
    weight_init: str = "lecun"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False
    input_shape: Sequence[int] | None = None
    layer_noise: float = 0.0

    def hidden_channels(self) -> tuple[int | None, ...]:
        """Channel count of each ``hidden`` entry (``None`` for the dense layers)."""
        return tuple(int(c) for c in self.channels) + (None,) * len(self.dense)

    @nn.compact
    def __call__(self, x, *, train: bool = False, centers: bool = False):
        check_activation(self.activation)
        if self.pool not in ("max", "avg"):
            raise ValueError(f"model.conv.pool must be 'max' or 'avg', got {self.pool!r}")
        act = ACTIVATIONS[self.activation]
        pool = nn.max_pool if self.pool == "max" else nn.avg_pool
        h = as_images(x, self.input_shape)
        hidden = []

        def record(s):  # T = S + noise; what the estimators see, and what the next block sees
            t = layer_noise(self, s, self.layer_noise)
            hidden.append((s if centers else t).reshape(t.shape[0], -1))
            return nn.Dropout(self.dropout, deterministic=not train)(t) if self.dropout > 0 else t

        k = (self.kernel_size, self.kernel_size)
        for c in self.channels:
            h = nn.Conv(
                c, k, padding="SAME", use_bias=not self.batch_norm, **inits(self.weight_init, self.init_scale, k[0] * k[1] * h.shape[-1])
            )(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
            h = record(pool(act(h), (2, 2), strides=(2, 2), padding="VALID"))
        h = h.reshape(h.shape[0], -1)
        for w in self.dense:
            h = nn.Dense(w, use_bias=not self.batch_norm, **inits(self.weight_init, self.init_scale, h.shape[-1]))(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
            h = record(act(h))
        logits = nn.Dense(self.n_classes, **inits(self.weight_init, self.init_scale, h.shape[-1]))(h)
        return logits, tuple(hidden)


def build_cnn2d(cfg, n_classes: int) -> nn.Module:
    """LeNet-style 2-D CNN (:class:`CNN2D`) for images ``(n, H, W, C)``."""
    c = cfg.conv
    if c.pool not in ("max", "avg"):
        raise ValueError(f"model.conv.pool must be 'max' or 'avg', got {c.pool!r}")
    return CNN2D(
        channels=tuple(int(ch) for ch in c.channels),
        dense=tuple(int(d) for d in c.dense),
        kernel_size=c.kernel_size,
        pool=c.pool,
        layer_noise=float(cfg.layer_noise),
        input_shape=image_shape(cfg),
        **common_kwargs(cfg, n_classes),
    )


MODELS.register("cnn2d", ModelEntry(build_cnn2d, reads=("conv",), noisy=True))
