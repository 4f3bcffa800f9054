"""Binning estimators (Shwartz-Ziv & Tishby 2017), exact pattern counting, in bits.

Every unit of a representation ``t`` of shape ``(n, d)`` is quantized with the
same bin edges; the d bin indices of a row form one discrete symbol. With X
uniform over the n rows (n distinct inputs) and T a deterministic function of
X::

    H(T)   = -sum_t p(t) log2 p(t)          (p from exact pattern counts)
    I(X;T) = H(T)                           (deterministic T)
    H(X|T) = H(X) - H(T) = log2 n - H(T)
    I(T;Y) = H(T) + H(Y) - H(T,Y)

Binned entropy = differential entropy + a term in the bin width: compare runs
only at equal binning. Values outside ``[lo, hi]`` fall in the edge bins.

Patterns are counted exactly by :mod:`ib_jax.estimators.counting`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.estimators._common import check_rank, nan_unless_finite
from ib_jax.estimators.base import EvalContext, register_estimator
from ib_jax.estimators.counting import (
    host_sort,
    information_from_codes,
    miller_madow_correction,
)

__all__ = [
    "bin_codes",
    "binned_entropy",
    "binned_mutual_information",
    "binned_conditional_entropy_x",
    "binned_information",
    "information_from_codes",
    "whole_run_range",
    "n_bins_for_width",
    "miller_madow_correction",
    "host_sort",
    "METHODS",
    "DATA_RANGES",
]

METHODS = ("uniform", "quantile")
DATA_RANGES = ("layer", "unit")  # lo=hi=None: one min/max per layer snapshot, or one per unit


def _is_scalar(v):
    return isinstance(v, (int, float, np.integer, np.floating))


def _concrete(v):
    """float64 numpy copy of ``v``, or None when ``v`` is traced (checked by the caller's contract)."""
    try:
        return np.asarray(v, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def n_bins_for_width(lo, hi, bin_width) -> int:
    """Number of bins of width ``bin_width`` that cover ``[lo, hi]``: ceil((hi - lo) / bin_width).

    Host-side (concrete values; ``lo``/``hi`` may be per-unit arrays: the widest unit counts).
    Use it to choose the static ``n_bins`` that goes with ``bin_width``.
    """
    span = float(np.max(np.asarray(hi, np.float64) - np.asarray(lo, np.float64)))
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    return max(1, int(np.ceil(span / bin_width - 1e-9)))


def _check_binning(n_bins, lo, hi, method, bin_width=None, data_range="layer"):
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    if method not in METHODS:
        raise ValueError(f"unknown binning method {method!r}; expected one of {METHODS}")
    if data_range not in DATA_RANGES:
        raise ValueError(f"data_range must be one of {DATA_RANGES}, got {data_range!r}")
    if (lo is None) != (hi is None):
        raise ValueError("lo and hi must both be given or both be None (range from the data)")
    if lo is not None:
        if jnp.ndim(lo) > 1 or jnp.ndim(hi) > 1:
            raise ValueError(f"lo and hi must be scalars or per-unit arrays (d,), got shapes {jnp.shape(lo)}, {jnp.shape(hi)}")
        lo_c, hi_c = _concrete(lo), _concrete(hi)
        if lo_c is not None and hi_c is not None and not np.all(lo_c < hi_c):
            raise ValueError(f"lo must be < hi, got lo={lo}, hi={hi}")
    if method == "quantile" and lo is not None:
        raise ValueError("method='quantile' takes its edges from the data: leave lo=hi=None")
    if bin_width is not None:
        if method != "uniform":
            raise ValueError("bin_width applies to method='uniform' only")
        if _is_scalar(bin_width) and not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        lo_c = None if lo is None else _concrete(lo)
        hi_c = None if hi is None else _concrete(hi)
        if lo_c is not None and hi_c is not None and _is_scalar(bin_width):
            need = n_bins_for_width(lo_c, hi_c, bin_width)
            if n_bins < need:
                raise ValueError(
                    f"n_bins={n_bins} bins of width {bin_width} do not cover hi - lo = {float(np.max(hi_c - lo_c)):g}: "
                    f"pass n_bins >= {need} (n_bins_for_width(lo, hi, bin_width))"
                )


def bin_codes(t, *, n_bins=30, lo=-1.0, hi=1.0, method="uniform", unit_mask=None, bin_width=None, data_range="layer"):
    """Bin index of every unit, in ``[1, n_bins]``; 0 for masked (padding) units.

    Range conventions (``method='uniform'``; see docs/estimators.md, "Binning conventions"):

    * ``lo, hi`` floats: one fixed range for every unit (tanh: [-1, 1]).
    * ``lo, hi`` arrays ``(d,)``: a fixed range per unit (e.g. the whole-run
      per-unit range from :func:`whole_run_range`); may be traced.
    * ``lo = hi = None``: the range of this snapshot's data, one min/max over
      all real units (``data_range='layer'``, as Saxe et al. for ReLU) or one
      per unit (``data_range='unit'``).

    Args:
      t: ``(n, d)`` float activations.
      n_bins: number of bins per unit (static). With ``bin_width`` it is the
        number of bins of that width counted from ``lo``; values beyond
        ``lo + n_bins * bin_width`` fall in the last bin (with a fixed range
        ``n_bins`` must cover it: :func:`n_bins_for_width`).
      lo, hi: range (above); values outside it fall in the edge bins.
      method: ``'uniform'`` (equal width) or ``'quantile'`` (equal mass: the
        edges are quantiles of all real activations pooled, shared by units).
      unit_mask: optional ``(d,)`` bool, true for real units (see ``pad_layers``).
      bin_width: optional fixed bin width instead of ``(hi - lo) / n_bins``
        (Shwartz-Ziv & Tishby's convention for unbounded activations).
      data_range: ``'layer'`` or ``'unit'``, used when ``lo = hi = None``.

    Returns:
      int32 ``(n, d)``.
    """
    _check_binning(n_bins, lo, hi, method, bin_width, data_range)
    check_rank(t, 2, "t")
    t = t.astype(jnp.float32)
    valid = jnp.ones(t.shape[-1], bool) if unit_mask is None else unit_mask.astype(bool)
    if method == "uniform":
        if lo is None and data_range == "layer":
            lo_ = jnp.min(jnp.where(valid, t, jnp.inf))
            hi_ = jnp.max(jnp.where(valid, t, -jnp.inf))
            width = jnp.where(hi_ > lo_, hi_ - lo_, 1.0)
        elif lo is None:  # one range per unit; padded units get a dummy range (their code is 0)
            lo_ = jnp.where(valid, jnp.min(t, axis=0), 0.0)
            hi_ = jnp.where(valid, jnp.max(t, axis=0), 1.0)
            width = jnp.where(hi_ > lo_, hi_ - lo_, 1.0)
        elif _is_scalar(lo) and _is_scalar(hi):
            lo_, width = jnp.float32(lo), jnp.float32(hi - lo)
        else:  # per-unit fixed ranges (d,); a degenerate unit range bins everything in its first bin
            lo_ = jnp.asarray(lo, jnp.float32)
            width = jnp.asarray(hi, jnp.float32) - lo_
            width = jnp.where(width > 0, width, 1.0)
        scale = n_bins / width if bin_width is None else 1.0 / jnp.asarray(bin_width, jnp.float32)
        # clip before the cast (no int overflow far out of range); in range truncation is floor
        idx = jnp.clip((t - lo_) * scale, 0.0, n_bins - 1).astype(jnp.int32)
    else:
        pooled = jnp.where(valid, t, jnp.nan).ravel()
        inner = jnp.nanquantile(pooled, jnp.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        idx = jnp.searchsorted(inner, t, side="right").astype(jnp.int32)
    return idx + 1 if unit_mask is None else jnp.where(valid, idx + 1, 0)


def binned_information(
    t,
    y=None,
    *,
    n_classes=None,
    n_bins=30,
    lo=-1.0,
    hi=1.0,
    method="uniform",
    unit_mask=None,
    bin_width=None,
    data_range="layer",
    miller_madow=False,
):
    """All binned quantities of one layer from one sort, in bits.

    Args:
      t: ``(n, d)`` activations of n distinct inputs (X uniform over rows).
      y: optional ``(n,)`` integer labels in ``[0, n_classes)``.
      n_classes: static number of classes (inferred when y is concrete).
      n_bins, lo, hi, method, unit_mask, bin_width, data_range: see :func:`bin_codes`.
      miller_madow: add the Miller-Madow correction (m - 1) / (2 n ln 2) to
        H(T), H(T,Y) and H(Y) (m = occupied patterns; :func:`miller_madow_correction`):
        estimates of the population's binned entropies from n iid rows rather
        than the exact entropies of the empirical distribution (which can then
        exceed log2 n). Costs one extra lexicographic sort.

    Returns:
      dict with ``h_t`` = H(T), ``i_xt`` = I(X;T) = H(T), ``h_x_given_t`` =
      H(X|T) = log2 n - H(T), and with y also ``h_y``, ``h_ty`` = H(T,Y),
      ``i_ty`` = I(T;Y); with ``miller_madow`` also ``n_patterns_t`` (and
      ``n_patterns_ty``). Every value is NaN if t has a non-finite entry or a
      label is out of range.
    """
    check_rank(t, 2, "t")
    codes = bin_codes(t, n_bins=n_bins, lo=lo, hi=hi, method=method, unit_mask=unit_mask, bin_width=bin_width, data_range=data_range)
    # one counting path for binned and quantized (exact) layers; NaN for a non-finite t
    out = information_from_codes(codes, y, n_codes=n_bins, n_classes=n_classes, miller_madow=miller_madow)
    return {k: nan_unless_finite(v, t) for k, v in out.items()}


def binned_entropy(
    t, *, n_bins=30, lo=-1.0, hi=1.0, method="uniform", unit_mask=None, bin_width=None, data_range="layer", miller_madow=False
):
    """H(T) in bits of the binned rows of ``t`` ``(n, d)`` (= I(X;T) for deterministic T)."""
    return binned_information(
        t,
        n_bins=n_bins,
        lo=lo,
        hi=hi,
        method=method,
        unit_mask=unit_mask,
        bin_width=bin_width,
        data_range=data_range,
        miller_madow=miller_madow,
    )["h_t"]


def binned_conditional_entropy_x(
    t, *, n_bins=30, lo=-1.0, hi=1.0, method="uniform", unit_mask=None, bin_width=None, data_range="layer", miller_madow=False
):
    """H(X|T) = log2 n - H(T) in bits: what the binned layer forgets of its input."""
    return binned_information(
        t,
        n_bins=n_bins,
        lo=lo,
        hi=hi,
        method=method,
        unit_mask=unit_mask,
        bin_width=bin_width,
        data_range=data_range,
        miller_madow=miller_madow,
    )["h_x_given_t"]


def binned_mutual_information(
    t,
    y,
    *,
    n_classes=None,
    n_bins=30,
    lo=-1.0,
    hi=1.0,
    method="uniform",
    unit_mask=None,
    bin_width=None,
    data_range="layer",
    miller_madow=False,
):
    """I(T;Y) = H(T) + H(Y) - H(T,Y) in bits, from exact binned pattern counts."""
    return binned_information(
        t,
        y,
        n_classes=n_classes,
        n_bins=n_bins,
        lo=lo,
        hi=hi,
        method=method,
        unit_mask=unit_mask,
        bin_width=bin_width,
        data_range=data_range,
        miller_madow=miller_madow,
    )["i_ty"]


def whole_run_range(layer_activations_over_time, *, per_unit=False, unit_mask=None):
    """The range (lo, hi) of one layer over a whole run: min and max over every snapshot and row.

    Pass the result as ``lo, hi`` to the binning functions to bin every
    snapshot of the run with the same edges (Lorenzen et al. 2022's "global"
    bounds restricted to one layer; take the min/max over layers for one range
    for the whole network).

    Args:
      layer_activations_over_time: ``(..., n, d)`` (e.g. ``(snapshots, n, d)``).
      per_unit: False: scalars (one range for the layer); True: ``(d,)``
        arrays (one range per unit).
      unit_mask: optional ``(d,)`` bool of real units: padded units are left
        out of the scalar range and get ``(0, 1)`` per unit.

    Returns:
      ``(lo, hi)`` float32 jax arrays. A constant layer (lo == hi) is widened
      to ``(lo, lo + 1)`` so the range is valid for binning.
    """
    a = jnp.asarray(layer_activations_over_time, jnp.float32)
    if a.ndim < 2:
        raise ValueError(f"layer_activations_over_time must have shape (..., n, d), got {a.shape}")
    d = a.shape[-1]
    valid = jnp.ones(d, bool) if unit_mask is None else jnp.asarray(unit_mask).astype(bool)
    flat = a.reshape(-1, d)
    if per_unit:
        lo = jnp.where(valid, jnp.min(flat, axis=0), 0.0)
        hi = jnp.where(valid, jnp.max(flat, axis=0), 1.0)
    else:
        lo = jnp.min(jnp.where(valid, flat, jnp.inf))
        hi = jnp.max(jnp.where(valid, flat, -jnp.inf))
    return lo, jnp.where(hi > lo, hi, lo + 1.0)


# ----------------------------------------------------------------------------- the estimator


def _binning(method: str, fixed_range: bool):
    def compute(ctx: EvalContext, cfg):
        b = cfg.estimator.binning
        lo, hi = (b.lo, b.hi) if fixed_range else (None, None)
        width = b.bin_width if method == "uniform" else None
        r = jax.vmap(
            lambda t, m: binned_information(
                t,
                ctx.y,
                n_classes=ctx.n_classes,
                n_bins=b.n_bins,
                lo=lo,
                hi=hi,
                method=method,
                unit_mask=m,
                bin_width=width,
                data_range=b.data_range,
                miller_madow=b.miller_madow,
            )
        )(ctx.stacked, ctx.mask)
        return {q: r[q] for q in ("i_xt", "i_ty", "h_x_given_t")}

    return compute


def check_config(cfg, n_info: int) -> None:
    """``estimator.binning.*``: a bin count or width, a valid range and convention."""
    b = cfg.estimator.binning
    if b.n_bins < 1:
        raise ValueError(f"estimator.binning.n_bins must be >= 1, got {b.n_bins}")
    if (b.lo is None) != (b.hi is None) or (b.lo is not None and not b.lo < b.hi):
        raise ValueError(f"estimator.binning.lo/hi must both be null or lo < hi, got {b.lo}, {b.hi}")
    if b.bin_width is not None and not b.bin_width > 0:
        raise ValueError(f"estimator.binning.bin_width must be > 0 (or null: n_bins), got {b.bin_width}")
    if b.data_range not in DATA_RANGES:
        raise ValueError(f"estimator.binning.data_range must be one of {DATA_RANGES}, got {b.data_range!r}")


register_estimator("binning", _binning("uniform", True), check_config, reads=("binning",))
register_estimator("binning_quantile", _binning("quantile", False), check_config, reads=("binning",))
