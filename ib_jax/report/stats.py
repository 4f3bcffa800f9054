"""Intervals over seeds: Student-t, percentile bootstrap, paired differences (numpy, host side),
and the markdown cells and tables that report them.

A claim about runs ("more noise, higher H(X|T)") is a claim about the mean over
seeds; these helpers put a confidence interval on it. NaN entries (a diverged
member, a missing layer) are left out of their slice, and every function
reports how many values it used.

* :func:`t_interval`: mean +- t_{1-a/2, n-1} s / sqrt(n), s the sample
  standard deviation (ddof=1), a = 1 - conf: ``scipy.stats.ttest_1samp(...).confidence_interval``.
  Exact coverage for normal data; by the central limit theorem approximately right otherwise.
* :func:`bootstrap_interval`: percentile bootstrap (Efron 1979) of a
  statistic: resample the n values with replacement ``n_boot`` times, take
  the a/2 and 1 - a/2 quantiles of the resampled statistic. No normality
  assumption, but it undercovers for small n (about 1-2 points below nominal
  at n = 30 for a normal mean; worse below n = 10).
* :func:`paired_difference`: for matched seeds (same seed, two settings),
  the t-interval of the per-seed differences a_i - b_i and the two-sided
  p-value of "mean difference = 0": ``scipy.stats.ttest_rel``. Pairing removes the
  seed-to-seed variance the two settings share.

Two rules are ours, not scipy's, and are applied explicitly: fewer than 2 values give a NaN
interval (and p-value) but still a mean (the one value); values that are all equal (zero
spread, e.g. H(X|T) = 0 of a layer that keeps its whole input) give the degenerate interval
[mean, mean] and p = 1 if the mean is 0, else 0 (scipy's t statistic is 0/0 there, its p NaN).

:func:`markdown_table` renders every report table (``tabulate``, GitHub format).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats as _st

__all__ = [
    "finite_or_none",
    "Interval",
    "PairedDifference",
    "t_interval",
    "bootstrap_interval",
    "paired_difference",
    "trajectory_flags",
    "interval_cell",
    "paired_cell",
    "bound_cell",
    "pm_cell",
    "markdown_table",
]


class Interval(NamedTuple):
    """Point estimate and confidence interval (unpacks as ``mean, lo, hi``)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class PairedDifference(NamedTuple):
    """Mean of a - b over matched pairs, its confidence interval, pair count and paired-t p-value."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray
    p_value: np.ndarray


def _check_conf(conf):
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be in (0, 1), got {conf}")


def _by_pattern(arrays, axis, test, n_out):
    """``test(*values)`` on the slices along ``axis`` with >= 2 finite entries, grouped by NaN pattern.

    ``arrays`` have one shape; a slice's entry counts when it is non-NaN in every array (a pair).
    Slices sharing a pattern go to scipy as one ``(m, k)`` block without NaNs: scipy's own
    ``nan_policy="omit"`` loops over slices in Python (1.3 s for the 7,000 of a (seeds, evals,
    layers) band), this keeps it vectorized. ``test`` returns ``n_out`` arrays of shape ``(k,)``.
    Returns ``(outputs of the lead shape, NaN where < 2 values; n; moved arrays (n, K))``.
    """
    moved = [np.moveaxis(np.asarray(a, np.float64), axis, 0) for a in arrays]
    lead = moved[0].shape[1:]
    flat = [m.reshape(m.shape[0], math.prod(lead)) for m in moved]  # explicit: no seeds left (all diverged) is (0, K)
    ok = np.logical_and.reduce([~np.isnan(f) for f in flat])
    n = ok.sum(axis=0)
    outs = [np.full(ok.shape[1], np.nan) for _ in range(n_out)]
    if ok.shape[1]:
        patterns, inverse = np.unique(ok.T, axis=0, return_inverse=True)
        for p, pattern in enumerate(patterns):
            cols = np.asarray(inverse).ravel() == p
            if pattern.sum() < 2:
                continue
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)  # "precision loss": nearly equal values
                res = test(*(f[pattern][:, cols] for f in flat))
            for o, r in zip(outs, res):
                o[cols] = r
    return [o.reshape(lead) for o in outs], n.reshape(lead), flat, ok


def _spread_zero(values, ok, lead):
    """Slices whose >= 2 finite values are all equal."""
    hi = np.where(ok, values, -np.inf).max(axis=0, initial=-np.inf)  # initial: no rows at all is fine
    lo = np.where(ok, values, np.inf).min(axis=0, initial=np.inf)
    return ((ok.sum(axis=0) > 1) & (hi == lo)).reshape(lead)


def _nanmean(values, ok, lead):
    with np.errstate(invalid="ignore", divide="ignore"):
        n = ok.sum(axis=0)
        return np.where(n > 0, np.where(ok, values, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan).reshape(lead)


def t_interval(x, axis=0, conf=0.95) -> Interval:
    """Student-t confidence interval of the mean along ``axis``, ignoring NaNs.

    Args:
      x: array of values (e.g. ``(seeds, ...)``).
      axis: the axis of independent replicates.
      conf: confidence level.

    Returns:
      :class:`Interval` ``(mean, lo, hi)`` with ``axis`` reduced; lo = hi =
      NaN where fewer than 2 values are finite (mean NaN where none).
    """
    _check_conf(conf)

    def test(v):
        ci = _st.ttest_1samp(v, 0.0, axis=0).confidence_interval(conf)
        return ci.low, ci.high

    (lo, hi), _, (flat,), ok = _by_pattern([x], axis, test, 2)
    lead = lo.shape
    mean = _nanmean(flat, ok, lead)
    flat_ = _spread_zero(flat, ok, lead)
    return Interval(mean, np.where(flat_, mean, lo), np.where(flat_, mean, hi))


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)):
        return np.random.default_rng(int(seed))
    try:  # a jax PRNG key: draw the numpy seed from it
        return np.random.default_rng(int(jax.random.randint(seed, (), 0, np.iinfo(np.int32).max)))
    except Exception as e:  # noqa: BLE001 - anything else is a bad argument
        raise ValueError(f"seed must be an int, a numpy Generator or a jax PRNG key, got {type(seed).__name__}") from e


def bootstrap_interval(x, seed=0, n_boot=10000, conf=0.95, *, axis=0, statistic=np.mean) -> Interval:
    """Percentile-bootstrap confidence interval of ``statistic`` over ``axis``, ignoring NaNs.

    Hand-written rather than ``scipy.stats.bootstrap``: that one resamples a NaN-free sample
    only (one call per slice) and draws from its own generator, where this takes a jax key too.

    Args:
      x: array of values; ``axis`` indexes the independent replicates (seeds).
      seed: int, numpy Generator, or jax PRNG key (the resampling randomness).
      n_boot: bootstrap resamples.
      conf: confidence level.
      statistic: ``f(values, axis) -> reduced``, vectorised (np.mean, np.median, ...).

    Returns:
      :class:`Interval` ``(statistic of x, lo, hi)``; NaN where fewer than 2
      finite values. Slices with different NaN patterns are resampled separately.
    """
    _check_conf(conf)
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    rng = _rng(seed)
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    est, lo, hi = (np.full(flat.shape[0], np.nan) for _ in range(3))
    a = (1.0 - conf) / 2.0
    for r, row in enumerate(flat):
        v = row[~np.isnan(row)]
        if len(v) == 0:
            continue
        est[r] = statistic(v, axis=0)
        if len(v) < 2:
            continue
        boot = statistic(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
        lo[r], hi[r] = np.quantile(boot, [a, 1.0 - a])
    return Interval(est.reshape(lead), lo.reshape(lead), hi.reshape(lead))


def paired_difference(a, b, conf=0.95, *, axis=0) -> PairedDifference:
    """Mean of ``a - b`` over matched seeds with its t-interval and paired-t p-value (``scipy.stats.ttest_rel``).

    Args:
      a, b: arrays of the same shape; entries at the same index along ``axis``
        are the same seed under two settings. A pair with a NaN on either
        side is left out.
      conf: confidence level.

    Returns:
      :class:`PairedDifference` ``(mean, lo, hi, n, p_value)``.
    """
    _check_conf(conf)
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (matched seeds), got {a.shape} and {b.shape}")

    def test(x, y):
        r = _st.ttest_rel(x, y, axis=0)
        ci = r.confidence_interval(conf)
        return ci.low, ci.high, r.pvalue

    (lo, hi, p), n, (fa, fb), ok = _by_pattern([a, b], axis, test, 3)
    lead = lo.shape
    diff = np.where(ok, fa - fb, 0.0)
    mean = _nanmean(diff, ok, lead)
    zero = _spread_zero(diff, ok, lead)  # an exact difference: p = 0 unless it is exactly 0
    p = np.where(zero, np.where(mean == 0, 1.0, 0.0), p)
    return PairedDifference(mean, np.where(zero, mean, lo), np.where(zero, mean, hi), n, p)


def finite_or_none(v):
    """A float, or None for NaN/inf (a JSON null in summaries and wandb)."""
    v = float(v)
    return v if np.isfinite(v) else None


def trajectory_flags(start, peak, end, start_ty=None, end_ty=None, conf: float = 0.95) -> dict:
    """Whether a layer compresses and fits, from per-member values (NaN: missing).

    * compresses: the paired 95% t-interval of ``end - peak`` lies below 0, i.e. the mean end
      is below the mean at the peak evaluation by more than the interval's half-width;
    * fits: the paired 95% t-interval of ``end_ty - start_ty`` lies above 0 (I(T;Y) rises).

    Returns ``{"compresses": "yes"|"no"|"n=1"|"n/a", "fits": ..., "drop": PairedDifference,
    "rise": PairedDifference or None}``. With one member no interval exists: ``n=1``.
    """
    drop = paired_difference(np.asarray(end, float), np.asarray(peak, float), conf=conf)

    def flag(d, direction):
        n = int(d.n)
        if n == 0:
            return "n/a"
        if n == 1:
            return "n=1"
        return "yes" if (float(d.hi) < 0 if direction < 0 else float(d.lo) > 0) else "no"

    rise = None
    if start_ty is not None and end_ty is not None:
        rise = paired_difference(np.asarray(end_ty, float), np.asarray(start_ty, float), conf=conf)
    return {"compresses": flag(drop, -1), "fits": flag(rise, +1) if rise is not None else "n/a", "drop": drop, "rise": rise}


# ------------------------------------------------------------------ table cells


def _finite_interval(values, conf):
    """The finite values and, for two or more, their (mean, lo, hi) t-interval."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return v, (tuple(float(x) for x in t_interval(v, conf=conf)) if len(v) > 1 else None)


def interval_cell(values, digits: int = 3, conf: float = 0.95) -> str:
    """``mean [lo, hi]`` (95% t-interval over the finite values), ``mean (n=1)``, or ``n/a``."""
    v, ci = _finite_interval(values, conf)
    if ci is None:
        return f"{v[0]:.{digits}f} (n=1)" if len(v) else "n/a"
    m, lo, hi = ci
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def pm_cell(values, digits: int = 3, conf: float = 0.95, sign: bool = False) -> str:
    """The compact form of :func:`interval_cell`: ``mean ± half-width`` (a t-interval is symmetric)."""
    v, ci = _finite_interval(values, conf)
    f = f"{'+' if sign else ''}.{digits}f"
    if ci is None:
        return f"{v[0]:{f}} (n=1)" if len(v) else "n/a"
    m, lo, hi = ci
    return f"{m:{f}} ± {(hi - lo) / 2:.{digits}f}"


def paired_cell(a, b, digits: int = 3, conf: float = 0.95) -> str:
    """Paired difference a - b: ``mean [lo, hi] p=...`` (95% paired-t), ``mean (n=1)``, or ``n/a``."""
    d = paired_difference(np.asarray(a, float), np.asarray(b, float), conf=conf)
    n = int(d.n)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{float(d.mean):+.{digits}f} (n=1)"
    return f"{float(d.mean):+.{digits}f} [{float(d.lo):+.{digits}f}, {float(d.hi):+.{digits}f}] p={float(d.p_value):.2g}"


def bound_cell(values, conf: float = 0.95) -> str:
    """:func:`interval_cell`, in 3 significant digits for values beyond 1000 (epsilons, vacuous bounds)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0 or np.max(np.abs(v)) < 1e3:
        return interval_cell(v, conf=conf)
    if len(v) == 1:
        return f"{v[0]:.3g} (n=1)"
    m, lo, hi = (float(x) for x in t_interval(v, conf=conf))
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def markdown_table(headers, rows, tablefmt: str = "github") -> list[str]:
    """Lines of a table rendered by ``tabulate`` (GitHub-flavoured markdown by default).

    Cells are strings kept as they are (``disable_numparse``: "1.000" stays "1.000"); in a
    markdown format a ``|`` inside a cell (``H(X|T)``) is escaped as ``\\|``, without which the
    row would split into more cells than the header has and GitHub would not draw the table.
    """
    from tabulate import tabulate  # lazy: the one place tables are drawn

    def cell(c):
        s = "" if c is None else str(c)
        return s.replace("|", "\\|") if tablefmt in ("github", "pipe") else s

    text = tabulate([[cell(c) for c in r] for r in rows], headers=[cell(h) for h in headers], tablefmt=tablefmt, disable_numparse=True)
    return text.splitlines()
