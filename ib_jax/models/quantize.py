"""Uniform k-bit quantization of activations with a straight-through gradient.

For quantized networks whose information quantities are exact (Lorenzen, Igel
& Nielsen, "Information Bottleneck: Exact Analysis of (Quantized) Neural
Networks", ICLR 2022; reference code github.com/StephanLorenzen/
ExactIBAnalysisInQNNs, which uses TensorFlow's quantization-aware training):
every layer's output takes at most 2^bits values per unit, so with X uniform
over n inputs I(X;T) = H(T) is an exact count of patterns
(:func:`ib_jax.estimators.exact.exact_information`).

The quantizer (TensorFlow's ``fake_quant_with_min_max_vars``, narrow_range off)::

    step = (hi - lo) / (2^bits - 1)
    q(x) = lo + step * floor((clip(x, lo, hi) - lo) / step + 1/2)     2^bits levels lo, ..., hi

Gradient (straight-through estimator, Bengio et al. 2013, as fake_quant):
dq/dx = 1 for lo <= x <= hi and 0 outside (the clip's gradient); the
rounding is treated as the identity.

Range rules in the reference code (``IB/util/quantization.py``):

* tanh layers: ``TanhQuantizer`` uses the min and max of the current batch's
  tanh outputs over the whole layer tensor (:func:`batch_range`), not a fixed
  [-1, 1]; their weights are not quantized. A fixed [-1, 1]
  (:data:`FIXED_RANGES`) is the data-independent alternative.
* ReLU (and the softmax output) layers: tfmot's ``MovingAverageQuantizer``:
  exponential moving average (decay 0.999) of the batch min and max, each
  first widened to include 0, starting from [-6, 6]
  (:func:`ema_range_init`, :func:`ema_range_update`); at evaluation the
  stored range is used. Their kernels are quantized per tensor to the same
  bits with the last-value min/max (:func:`batch_range` of the kernel).

TensorFlow also "nudges" [lo, hi] so that 0.0 is exactly a level
(``zero_exact=True`` here, :func:`nudged_range`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "quantize",
    "quantize_activation",
    "quantize_codes",
    "check_bits",
    "nudged_range",
    "batch_range",
    "ema_range_init",
    "ema_range_update",
    "FIXED_RANGES",
    "EMA_DECAY",
    "EMA_INIT",
]

FIXED_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "relu6": (0.0, 6.0), "hard_tanh": (-1.0, 1.0)}
"""Data-independent ranges of bounded activations."""
EMA_DECAY = 0.999  # tfmot MovingAverageQuantizer / quant_ops.MovingAvgQuantize default
EMA_INIT = (-6.0, 6.0)  # tfmot MovingAverageQuantizer's initial min/max variables


def check_bits(bits):
    """Raise ``ValueError`` unless ``bits`` is a static int in [1, 24]."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 24:
        raise ValueError(f"bits must be an int in [1, 24], got {bits!r}")


def nudged_range(lo, hi, bits):
    """TensorFlow's nudge: shift [lo, hi] (same width) so that 0.0 is exactly one of the 2^bits levels.

    zero_point = round(clip(-lo / step, 0, 2^bits - 1)); lo' = -zero_point * step;
    hi' = lo' + (2^bits - 1) * step, step = (hi - lo) / (2^bits - 1).
    """
    check_bits(bits)
    n_steps = 2**bits - 1
    lo = jnp.asarray(lo, jnp.float32)
    hi = jnp.asarray(hi, jnp.float32)
    step = (hi - lo) / n_steps
    zero_point = jnp.round(jnp.clip(-lo / step, 0.0, n_steps))
    lo_n = -zero_point * step
    return lo_n, lo_n + n_steps * step


def _levels(x, bits, lo, hi, zero_exact):
    check_bits(bits)
    if zero_exact:
        lo, hi = nudged_range(lo, hi, bits)
    lo = jnp.asarray(lo, jnp.float32)
    hi = jnp.asarray(hi, jnp.float32)
    step = (hi - lo) / (2**bits - 1)
    safe = jnp.where(step > 0, step, 1.0)  # a degenerate range maps everything to level 0
    xc = jnp.clip(x.astype(jnp.float32), lo, hi)
    # floor(v + 0.5): TensorFlow's rounding (half up), not numpy's half-to-even
    k = jnp.clip(jnp.floor((xc - lo) / safe + 0.5), 0, 2**bits - 1)
    return k, lo, step, xc


def quantize(x, bits, lo, hi, *, zero_exact=False):
    """``x`` rounded to the nearest of 2^bits uniform levels in [lo, hi], straight-through gradient.

    Args:
      x: any float array.
      bits: static int, 2^bits levels.
      lo, hi: range, scalars or arrays broadcasting against ``x`` (e.g. per
        unit ``(d,)``); may be traced (a batch or EMA range). Values outside
        are clipped to the end levels.
      zero_exact: nudge the range so 0.0 is a level (TensorFlow's fake_quant).

    Returns:
      float32 array of ``x``'s shape. Gradient: 1 where lo <= x <= hi, else 0.
    """
    k, lo_, step, xc = _levels(x, bits, lo, hi, zero_exact)
    q = lo_ + step * k
    # forward q, backward d(clip)/dx: 1 inside [lo, hi], 0 outside
    return xc + jax.lax.stop_gradient(q - xc)


def quantize_codes(x, bits, lo, hi, *, zero_exact=False):
    """The level index in ``[0, 2^bits - 1]`` (int32) that :func:`quantize` maps ``x`` to."""
    k, _, _, _ = _levels(x, bits, lo, hi, zero_exact)
    return k.astype(jnp.int32)


def batch_range(x, axis=None):
    """(min, max) of ``x`` over ``axis`` (None: the whole tensor, the reference code's tanh rule).

    No gradient flows into the range (the reference code's ``reduce_min``/
    ``reduce_max`` feed fake_quant, whose range gradients only reach values
    outside the range, and a batch range has none).
    """
    x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
    return jnp.min(x, axis=axis), jnp.max(x, axis=axis)


def ema_range_init():
    """Initial moving-average range, tfmot's ``(-6, 6)``: an ``(lo, hi)`` pytree of float32 scalars."""
    return jnp.float32(EMA_INIT[0]), jnp.float32(EMA_INIT[1])


def ema_range_update(state, x, decay=EMA_DECAY):
    """One training step of tfmot's moving-average range (``MovingAvgQuantize``).

    lo <- decay lo + (1 - decay) min(min(x), 0); hi <- decay hi + (1 - decay) max(max(x), 0)
    (the batch range is widened to include 0, as the reference). Pure: returns
    the new ``(lo, hi)``; quantize the batch with the updated range.
    """
    lo, hi = state
    b_lo, b_hi = batch_range(x)
    return (decay * lo + (1.0 - decay) * jnp.minimum(b_lo, 0.0), decay * hi + (1.0 - decay) * jnp.maximum(b_hi, 0.0))


def quantize_activation(h, bits: int, activation: str):
    """A quantized network's layer output: ``bits``-bit levels over the layer's own range.

    The range is the min and max of the current batch over the whole layer tensor (the
    reference code's tanh rule, :func:`batch_range`), for every activation: at evaluation the
    batch is the whole information set, so the levels are those the exact count sees. The
    reference quantizes ReLU layers over a moving-average range instead (decay 0.999 from
    [-6, 6], :func:`ema_range_update`), which needs a state carried through training; ib-jax
    uses the batch rule for ReLU too, a documented deviation. Straight-through gradient.
    """
    lo, hi = batch_range(h)
    return quantize(h, bits, lo, hi)
