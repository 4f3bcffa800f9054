"""A small 1-D CNN for MNIST-1D (``model.kind=cnn1d``; options ``model.conv.channels``, ``model.conv.kernel_size``)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from ib_jax.models.layers import (
    ACTIVATIONS,
    ModelEntry,
    common_kwargs,
    inits,
    norm_act,
)
from ib_jax.registry import MODELS

__all__ = ["CNN1D", "build_cnn1d"]


class CNN1D(nn.Module):
    """A small 1-D CNN for MNIST-1D: strided convolutions, then a linear read-out.

    Each conv layer's output, flattened to ``(n, length * channels)``, is a
    hidden representation.
    """

    channels: Sequence[int] = (16, 16, 16)
    kernel_size: int = 5
    n_classes: int = 10
    activation: str = "relu"
    weight_init: str = "lecun"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1, 1) if x.ndim == 2 else x
        hidden = []
        for c in self.channels:
            fan_in = self.kernel_size * h.shape[-1]
            h = nn.Conv(c, (self.kernel_size,), strides=(2,), padding="SAME", **inits(self.weight_init, self.init_scale, fan_in))(h)
            h = norm_act(h, act, self.batch_norm, train)
            hidden.append(h.reshape(h.shape[0], -1))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = h.reshape(h.shape[0], -1)
        logits = nn.Dense(self.n_classes, **inits(self.weight_init, self.init_scale, h.shape[-1]))(h)
        return logits, tuple(hidden)


def build_cnn1d(cfg, n_classes: int) -> nn.Module:
    c = cfg.conv
    if not c.channels or any(int(ch) < 1 for ch in c.channels) or c.kernel_size < 1:
        raise ValueError(
            f"model.conv.channels must be positive ints and model.conv.kernel_size >= 1, got {list(c.channels)}, {c.kernel_size}"
        )
    return CNN1D(channels=tuple(int(ch) for ch in c.channels), kernel_size=c.kernel_size, **common_kwargs(cfg, n_classes))


MODELS.register("cnn1d", ModelEntry(build_cnn1d, reads=("conv",)))
