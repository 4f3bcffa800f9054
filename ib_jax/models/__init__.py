"""Flax models whose forward pass returns the logits **and every hidden representation**.

``model.apply(variables, x, train=...)`` returns ``(logits, hidden)`` with ``hidden`` a tuple of
``(n, d_l)`` arrays, one per hidden layer, taken after the nonlinearity (and after batch norm,
before dropout): the T's the estimators measure. One module per model, each registering itself in
``MODELS``: :mod:`mlp`, :mod:`cnn1d`, :mod:`cnn2d`, :mod:`resnet`; shared parts in :mod:`layers`,
k-bit activations in :mod:`quantize`. Importing this package registers every built-in model.
"""

from __future__ import annotations

import flax.linen as nn

from ib_jax.models import quantize
from ib_jax.models.cnn1d import CNN1D
from ib_jax.models.cnn2d import CNN2D
from ib_jax.models.layers import ACTIVATIONS, ModelEntry
from ib_jax.models.mlp import MLP
from ib_jax.models.resnet import ResNet20
from ib_jax.registry import MODELS, import_parts

__all__ = ["MLP", "CNN1D", "CNN2D", "ResNet20", "ModelEntry", "ACTIVATIONS", "build", "check", "quantize", "OPTION_GROUPS"]

OPTION_GROUPS = ("conv", "resnet")  # the option groups of ModelConf, each read by the models that name it


def build(cfg, n_classes: int) -> nn.Module:
    """A model from its config (:class:`ib_jax.config.ModelConf`) via the ``MODELS`` registry;
    raises ``ValueError`` naming a bad field."""
    return MODELS.get(cfg.kind)(cfg, n_classes)


def check(cfg) -> None:
    """The model part of validation: the entry's groups, noise and quantization support, then a trial build."""
    m = cfg.model
    entry = MODELS.get(m.kind)
    reads = getattr(entry, "reads", OPTION_GROUPS)  # a plain-function plug-in may read anything
    for group in OPTION_GROUPS:
        value = getattr(m, group)
        if group not in reads and value != type(value)():
            readers = sorted(n for n in MODELS if group in getattr(MODELS.get(n), "reads", ()))
            raise ValueError(f"model.{group}.* is read by model.kind in {readers} only; model.kind={m.kind!r} would ignore it")
    if m.layer_noise < 0 or m.layer_noise != m.layer_noise or m.layer_noise == float("inf"):
        raise ValueError(f"model.layer_noise must be a finite std >= 0, got {m.layer_noise}")
    if m.quantize_bits < 0 or m.quantize_bits > 16:
        raise ValueError(f"model.quantize_bits must be in [0, 16] (0 = full precision), got {m.quantize_bits}")
    for key, value, flag in (("layer_noise", m.layer_noise, "noisy"), ("quantize_bits", m.quantize_bits, "quantized")):
        if value > 0 and not getattr(entry, flag, True):
            kinds = sorted(n for n in MODELS if getattr(MODELS.get(n), flag, False))
            raise ValueError(f"model.{key} is implemented for model.kind in {kinds}, not {m.kind!r}")
    build(m, 2)


# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
