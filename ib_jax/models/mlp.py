"""The fully connected network (``model.kind=mlp``): widths of the hidden layers, then a linear read-out.

The only model with ``model.layer_noise`` (Goldfeld et al. 2019's noisy network) and
``model.quantize_bits`` (Lorenzen et al. 2022's k-bit activations). Returns ``(logits, hidden)``
as every model of :mod:`ib_jax.models` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from ib_jax.models.layers import (
    ACTIVATIONS,
    ModelEntry,
    common_kwargs,
    inits,
    layer_noise,
    norm_act,
    quantize_hidden,
)
from ib_jax.registry import MODELS

__all__ = ["MLP", "build_mlp"]


class MLP(nn.Module):
    """Fully connected network: widths of the hidden layers, then a linear read-out.

    Attributes:
      widths: hidden layer widths, e.g. (10, 7, 5, 4, 3) for the 12-10-7-5-4-3-2 net.
      n_classes: outputs (logits).
      activation: one of ``ACTIVATIONS``.
      weight_init: weights and biases at init (``model.init``), a key of :data:`ib_jax.models.layers.INITS` (``lecun``, ``torch``).
      init_scale: multiplies the init spread 1/sqrt(fan_in).
      dropout: drop rate after each hidden layer (0 = none).
      batch_norm: batch normalization before each nonlinearity.
    """

    widths: Sequence[int]
    n_classes: int
    activation: str = "tanh"
    weight_init: str = "lecun"
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
            h = norm_act(nn.Dense(w, **inits(self.weight_init, self.init_scale, h.shape[-1]))(h), act, self.batch_norm, train)
            h = quantize_hidden(h, self.quantize_bits, self.activation)
            s = h
            h = layer_noise(self, h, self.layer_noise)
            hidden.append(s if centers else h)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.n_classes, **inits(self.weight_init, self.init_scale, h.shape[-1]))(h)
        return logits, tuple(hidden)


def build_mlp(cfg, n_classes: int) -> nn.Module:
    if not cfg.widths or any(int(w) < 1 for w in cfg.widths):
        raise ValueError(f"model.widths must be positive ints, got {list(cfg.widths)}")
    return MLP(
        widths=tuple(int(w) for w in cfg.widths),
        layer_noise=float(cfg.layer_noise),
        quantize_bits=int(cfg.quantize_bits),
        **common_kwargs(cfg, n_classes),
    )


MODELS.register("mlp", ModelEntry(build_mlp, noisy=True, quantized=True))
