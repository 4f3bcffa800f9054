"""Exact information quantities of quantized layers, in bits.

Lorenzen, Igel & Nielsen, "Information Bottleneck: Exact Analysis of
(Quantized) Neural Networks", ICLR 2022. When every unit of a layer takes at
most 2^bits values (:mod:`ib_jax.models.quantize`), T is a discrete function of X and,
with X uniform over the n inputs (rows)::

    I(X;T) = H(T) = -sum_t p(t) log2 p(t)     p from exact counts of equal rows
    H(X|T) = log2 n - H(T)
    I(T;Y) = H(T) + H(Y) - H(T,Y)

No binning or estimation error: the quantized values are mapped one-to-one to
integer codes and the patterns counted by the exact counting path of the
binning estimator (:func:`ib_jax.estimators.counting.information_from_codes`).

Two ways to name the codes:

* ``lo, hi`` given: the quantizer's own grid (the range and ``zero_exact``
  passed to :func:`ib_jax.models.quantize.quantize`): code = level index. Values
  that are not on that grid (off by more than ``grid_tol`` of a step, or
  outside [lo, hi]) make the result NaN: the layer was not quantized with
  this grid, and an "exact" count of it would not be exact.
* ``lo = hi = None``: the reference code's rule (``IB/util/binning.py``,
  ``quantized``): with m, M the min and max over the layer's real units,
  code = floor((t - m) / (M - m) * 2^bits + 1/2) in [0, 2^bits]. One-to-one
  whenever the layer's values lie on any uniform grid of at most 2^bits
  levels (spacing >= (M - m) / (2^bits - 1) maps to > 1 code apart), e.g. a
  quantizer with a batch or moving-average range; not checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ib_jax.estimators._common import check_rank, nan_unless_finite, pad_layers
from ib_jax.estimators.base import EvalContext, register_estimator
from ib_jax.estimators.counting import information_from_codes
from ib_jax.models import quantize as Q

__all__ = ["exact_information", "quantized_codes"]


def quantized_codes(t_quantized, *, bits, lo=None, hi=None, zero_exact=False, unit_mask=None, grid_tol=1e-3):
    """Integer codes of a quantized layer and whether they are exact.

    Returns:
      ``(codes, n_codes, on_grid)``: int32 ``(n, d)`` codes in ``[1, n_codes]``
      (0 for masked units), the static number of codes, and a traced bool
      (always True when ``lo = hi = None``). See the module docstring.
    """
    check_rank(t_quantized, 2, "t_quantized")
    Q.check_bits(bits)
    if (lo is None) != (hi is None):
        raise ValueError("lo and hi must both be given (the quantizer's grid) or both be None (the layer's range)")
    t = t_quantized.astype(jnp.float32)
    valid = jnp.ones(t.shape[-1], bool) if unit_mask is None else jnp.asarray(unit_mask).astype(bool)
    if lo is None:
        m = jnp.min(jnp.where(valid, t, jnp.inf))
        big = jnp.max(jnp.where(valid, t, -jnp.inf))
        span = jnp.where(big > m, big - m, 1.0)
        k = jnp.floor((t - m) / span * 2**bits + 0.5).astype(jnp.int32)
        n_codes, on_grid = 2**bits + 1, jnp.bool_(True)
    else:
        k = Q.quantize_codes(t, bits, lo, hi, zero_exact=zero_exact)
        lo_, hi_ = Q.nudged_range(lo, hi, bits) if zero_exact else (jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32))
        step = (hi_ - lo_) / (2**bits - 1)
        off = jnp.abs(lo_ + step * k - t) > grid_tol * jnp.abs(step)
        on_grid = ~jnp.any(off & valid)
        n_codes = 2**bits
    codes = jnp.where(valid, k + 1, 0)
    return codes, n_codes, on_grid


def exact_information(
    t_quantized, y=None, *, n_classes=None, bits, lo=None, hi=None, zero_exact=False, unit_mask=None, miller_madow=False, grid_tol=1e-3
):
    """Exact H(T) = I(X;T), H(X|T) and I(T;Y) in bits of a quantized layer.

    Args:
      t_quantized: ``(n, d)`` quantized activations of n distinct inputs (X uniform over rows).
      y: optional ``(n,)`` integer labels; ``n_classes`` static (inferred when y is concrete).
      bits: static int, the quantizer's bit width.
      lo, hi: the quantizer's range (scalars or per-unit ``(d,)``, may be
        traced) and ``zero_exact`` its nudge; or None for the layer's own range.
      unit_mask: optional ``(d,)`` bool of real units (padded layers).
      miller_madow: add the Miller-Madow correction (population estimate, see
        :func:`ib_jax.estimators.binning.binned_information`).
      grid_tol: tolerance, in quantization steps, of the on-grid check.

    Returns:
      dict ``h_t``, ``i_xt``, ``h_x_given_t`` (and with y ``h_y``, ``h_ty``,
      ``i_ty``). NaN if an entry is non-finite, off the grid, or a label is
      out of range.
    """
    codes, n_codes, on_grid = quantized_codes(
        t_quantized, bits=bits, lo=lo, hi=hi, zero_exact=zero_exact, unit_mask=unit_mask, grid_tol=grid_tol
    )
    out = information_from_codes(codes, y, n_codes=n_codes, n_classes=n_classes, miller_madow=miller_madow)
    return {k: jnp.where(on_grid, nan_unless_finite(v, t_quantized), jnp.nan) for k, v in out.items()}


# ----------------------------------------------------------------------------- the estimator


def _exact(ctx: EvalContext, cfg):
    """Exact I(X;T) = H(T), I(T;Y), H(X|T) of a quantized network (Lorenzen et al. 2022) by
    exact pattern counting of the layers' own k-bit values; the softmax output is quantized to
    the same bits over its range at measurement."""
    bits = int(cfg.model.quantize_bits)
    layers = list(ctx.layers)
    if cfg.estimator.include_output:
        lo, hi = Q.batch_range(layers[-1])
        layers[-1] = Q.quantize(layers[-1], bits, lo, hi)
    stacked, mask = pad_layers(layers)
    r = jax.vmap(
        lambda t, m: exact_information(
            t, ctx.y, n_classes=ctx.n_classes, bits=bits, unit_mask=m, miller_madow=cfg.estimator.exact.miller_madow
        )
    )(stacked, mask)
    return {q: r[q] for q in ("i_xt", "i_ty", "h_x_given_t")}


def _check(cfg, n_info: int) -> None:
    if cfg.model.quantize_bits <= 0:
        raise ValueError(
            "estimator.names: exact counts a quantized network's own values; set model.quantize_bits "
            f"(e.g. 4 or 8), got model.quantize_bits={cfg.model.quantize_bits}"
        )


register_estimator("exact", _exact, _check, reads=("exact",))
