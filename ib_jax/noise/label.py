"""Label noise: fresh random label replacements every step (``noise=label``).

    y_noisy = label_noise(key, y, p, n_classes)         # fresh labels every call


Label noise (Blanc, Gupta, Valiant & Valiant 2020; Damian, Ma & Lee 2021)
----------------------------------------------------------------------------
Each label is, independently with probability p, replaced by a class drawn
uniformly from the n_classes - 1 *other* classes (never the true one). At
p = (K-1)/K the noisy label is independent of the true one; p = 0 returns
``y`` unchanged. The draw is fresh every call (every step), the regime in which
label-noise SGD's implicit regulariser acts.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.noise._core import concrete as _concrete
from ib_jax.noise.kinds import register_noise

__all__ = ["label_noise"]


def label_noise(key: jax.Array, y: jax.Array, p: Any, n_classes: int) -> jax.Array:
    """Replace each integer label, with probability p, by a uniformly drawn other class.

    y'_i = y_i with probability 1 - p, else (y_i + 1 + r_i) mod K with
    r_i ~ U{0, ..., K-2}: uniform over the K - 1 classes != y_i. ``y`` keeps its
    shape and dtype; ``p = 0`` returns it unchanged (bit for bit).

    Args:
      key: PRNG key (use a fresh one every step).
      y: integer labels in [0, n_classes), any shape.
      p: replacement probability in [0, 1] (Python float or traced scalar).
      n_classes: K >= 2 (static).
    """
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    arr = _concrete(p, "p")
    if arr is not None and (np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any()):
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    k_flip, k_class = jax.random.split(key)
    flip = jax.random.uniform(k_flip, y.shape, jnp.float32) < jnp.asarray(p, jnp.float32)
    shift = jax.random.randint(k_class, y.shape, 1, n_classes, dtype=y.dtype)  # 1..K-1
    other = (y + shift) % n_classes
    return jnp.where(flip, other, y)


def _label(key, y, p, n_classes, cfg):
    return label_noise(key, y, p, n_classes), None


# Blanc et al. 2020 / Damian et al. 2021: each label replaced with probability p by another class
register_noise(
    "label",
    None,
    batch=_label,
    level_name="p",
    level_doc="must be a replacement probability p in [0, 1] (0 = clean labels)",
    valid_level=lambda v: 0.0 <= v <= 1.0,
    reads=(),
)
