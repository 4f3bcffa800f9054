"""CIFAR ResNet-20 (``model.kind=resnet20``; options ``model.resnet.*``), He et al. 2016.

Returns ``(logits, hidden)`` with the conventions of :mod:`ib_jax.models.cnn2d` (hidden maps
flattened channel-last, ``hidden_channels()`` for per-channel pooling, dropout from the ``dropout``
rng): the stem, every block's output (or every stage's, ``record=stages``), and the pooled vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

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

__all__ = ["ResNet20", "build_resnet20"]


class ResNet20(nn.Module):
    """CIFAR ResNet of He et al. (2016, "Deep residual learning", sec. 4.2): depth 6n+2, ResNet-20 at n=3.

    Stem: 3x3 conv to ``16 * width`` channels, (batch norm,) act. Then three stages of
    ``blocks_per_stage`` basic blocks with ``16, 32, 64`` (times ``width``) channels; the first
    block of stages 2 and 3 has stride 2. A basic block is
    ``act(x_short + BN(conv3x3(act(BN(conv3x3(x))))))``; where the shape changes the shortcut is
    option A of the paper (take every second pixel and zero-pad the new channels: no parameters,
    as in the original 0.27M-parameter ResNet-20) or option B (1x1 strided conv + BN), chosen by
    ``shortcut``. Then global average pooling and a linear read-out.

    ``hidden`` (``record="blocks"``): the stem output, every block's output (after the residual
    sum and the activation), and the globally pooled vector ``(n, 64 * width)``:
    ``1 + 3 * blocks_per_stage + 1`` entries. With ``record="stages"``: each stage's last block
    and the pooled vector (4 entries). Conv outputs are flattened channel-last; on 32x32 inputs
    stage 1 entries are ``(n, 32 * 32 * 16 * width)``, so wide-layer estimators need a reduction
    (:mod:`ib_jax.estimators.layer_features`).

    Dropout (rate ``dropout``) is applied to each block's output before the next block, and to
    the pooled vector before the read-out; batch norm uses batch statistics when ``train`` and
    running averages (momentum 0.9) otherwise.

    Attributes:
      n_classes: outputs (logits).
      width: channel multiplier (1 = 16/32/64 channels); small values for tests.
      blocks_per_stage: basic blocks per stage (3 for ResNet-20, 5 for ResNet-32...).
      activation: a key of :data:`ib_jax.models.ACTIVATIONS`.
      batch_norm: use batch norm (convs then have no bias).
      dropout: drop rate (0 = none).
      shortcut: ``"A"`` (zero-pad identity) or ``"B"`` (projection).
      weight_init: weights and biases at init (``model.init``), a key of :data:`ib_jax.models.layers.INITS`.
      init_scale: multiplies the init spread 1/sqrt(fan_in) (sqrt(2) = He init).
      record: ``"blocks"`` or ``"stages"``: which tensors ``hidden`` holds.
      input_shape: ``(H, W, C)`` to reshape flat inputs.
      layer_noise: beta of the noisy network (Goldfeld et al. 2019): every recorded tensor
        (``record``) becomes T = S + N(0, beta^2 I), in training and evaluation, and the rest of the
        network sees T; ``centers=True`` records the clean S.
    """

    n_classes: int = 10
    width: float = 1.0
    blocks_per_stage: int = 3
    activation: str = "relu"
    batch_norm: bool = True
    dropout: float = 0.0
    shortcut: str = "A"
    weight_init: str = "lecun"
    init_scale: float = 1.0
    record: str = "blocks"
    input_shape: Sequence[int] | None = None
    layer_noise: float = 0.0

    def stage_channels(self) -> tuple[int, int, int]:
        """Channels of the three stages: ``round(16 * width)``, ``round(32 * width)``, ``round(64 * width)`` (at least 1)."""
        return tuple(max(1, int(round(c * self.width))) for c in (16, 32, 64))

    def hidden_channels(self) -> tuple[int | None, ...]:
        """Channel count of each ``hidden`` entry; the pooled vector counts as ``None`` (already one unit per channel)."""
        c1, c2, c3 = self.stage_channels()
        if self.record == "stages":
            return (c1, c2, c3, None)
        return (c1,) + tuple(c for c in (c1, c2, c3) for _ in range(self.blocks_per_stage)) + (None,)

    def _norm(self, h, train):
        return nn.BatchNorm(use_running_average=not train, momentum=0.9)(h) if self.batch_norm else h

    def _conv(self, c, k, x, stride=1):
        kw = inits(self.weight_init, self.init_scale, k * k * x.shape[-1])
        return nn.Conv(c, (k, k), strides=(stride, stride), padding="SAME", use_bias=not self.batch_norm, **kw)(x)

    @nn.compact
    def __call__(self, x, *, train: bool = False, centers: bool = False):
        check_activation(self.activation)
        if self.shortcut not in ("A", "B"):
            raise ValueError(f"model.resnet.shortcut must be 'A' or 'B', got {self.shortcut!r}")
        if self.record not in ("blocks", "stages"):
            raise ValueError(f"model.resnet.record must be 'blocks' or 'stages', got {self.record!r}")
        if self.blocks_per_stage < 1:
            raise ValueError(f"model.resnet.blocks_per_stage must be >= 1, got {self.blocks_per_stage}")
        act = ACTIVATIONS[self.activation]
        drop = (lambda h: nn.Dropout(self.dropout, deterministic=not train)(h)) if self.dropout > 0 else (lambda h: h)
        hidden = []

        def record(s):  # T = S + noise: what the estimators see and the rest of the network uses
            t = layer_noise(self, s, self.layer_noise)
            hidden.append((s if centers else t).reshape(t.shape[0], -1))
            return t

        h = act(self._norm(self._conv(self.stage_channels()[0], 3, as_images(x, self.input_shape)), train))
        if self.record == "blocks":
            h = record(h)
        inp = drop(h)  # what the next block sees; ``h`` itself (undropped) is what is recorded and pooled
        for s, c in enumerate(self.stage_channels()):
            for b in range(self.blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                y = act(self._norm(self._conv(c, 3, inp, stride), train))
                y = self._norm(self._conv(c, 3, y), train)
                if stride != 1 or inp.shape[-1] != c:
                    if self.shortcut == "A":
                        short = inp[:, ::stride, ::stride, :]
                        short = jnp.pad(short, ((0, 0), (0, 0), (0, 0), (0, c - short.shape[-1])))
                    else:
                        short = self._norm(self._conv(c, 1, inp, stride), train)
                else:
                    short = inp
                h = act(y + short)
                if self.record == "blocks" or b == self.blocks_per_stage - 1:
                    h = record(h)
                inp = drop(h)
        pooled = record(h.mean(axis=(1, 2)))
        logits = nn.Dense(self.n_classes, **inits(self.weight_init, self.init_scale, pooled.shape[-1]))(drop(pooled))
        return logits, tuple(hidden)


def build_resnet20(cfg, n_classes: int) -> nn.Module:
    """CIFAR ResNet-20 style network (:class:`ResNet20`)."""
    r = cfg.resnet
    if r.shortcut not in ("A", "B") or r.record not in ("blocks", "stages") or r.blocks_per_stage < 1 or not r.width > 0:
        raise ValueError(
            "model.resnet.shortcut must be A|B, model.resnet.record blocks|stages, model.resnet.blocks_per_stage >= 1, "
            f"model.resnet.width > 0; got {r.shortcut!r}, {r.record!r}, {r.blocks_per_stage}, {r.width}"
        )
    return ResNet20(
        width=float(r.width),
        blocks_per_stage=int(r.blocks_per_stage),
        shortcut=r.shortcut,
        record=r.record,
        layer_noise=float(cfg.layer_noise),
        input_shape=image_shape(cfg),
        **common_kwargs(cfg, n_classes),
    )


MODELS.register("resnet20", ModelEntry(build_resnet20, reads=("resnet",), noisy=True))
