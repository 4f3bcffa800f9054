"""Effects with intervals and the verdict rules of the claims report (one stated rule each).

The claims themselves, as table rows, are :mod:`ib_jax.report.claims`.

Pure host-side functions (numpy, scipy) over what jobs write: the per-member dicts of
``summary.json`` (``final/...``, ``matched/...``, the seed, the noise level under its
``level_name``). ``scripts/claims.py`` runs the sweeps and renders the report with them.

Every effect is a mean with a confidence interval over independent replicates (seeds), and
every verdict follows one stated rule (the constants ``RULE_*``):

* a **directional** claim (1, 2) is *supported* when the 95% interval of the effect excludes 0
  on the claimed side, *contradicted* when it excludes 0 on the other side, *inconclusive*
  otherwise (it includes 0, or fewer than 2 replicates left an interval);
* a **difference** question (4: does the noise shape matter? 5: does the schedule matter?) is
  *supported* ("it matters") when the interval excludes 0, *contradicted* ("no difference
  larger than the margin") when the whole interval lies inside [-margin, margin] (an
  equivalence test at the same level), *inconclusive* otherwise;
* a **band** claim (3: SNR_B grows about linearly in B, i.e. the log-log slope is about 1) is
  *supported* when the whole interval lies inside the band [lo, hi], *contradicted* when it
  lies entirely outside, *inconclusive* when it straddles an edge;
* across routes (estimators, network variants), following the brief's caveat that a claim
  counts only when it holds across estimators (:func:`combine`): *supported* only when every
  route with a verdict is supported, *contradicted* only when every one is contradicted,
  otherwise *inconclusive* (with the counts).

Effects (``Effect``): for claim 1 the paired difference (same seed) of I(X;T) at matched
training loss between the strongest noise level and the reference (noiseless) level, averaged
over the layers every member measured (:func:`layer_mean`); for claim 2 the within-seed
regression slope of the final generalization gap on the final I(X;T) (:func:`within_seed_slope`);
for claim 3 the per-seed log-log slope of the gradient SNR against batch size
(:func:`group_slopes`), with a t-interval over seeds; for claims 4 and 5 paired differences
between jobs at the same level and seed (:func:`cross_job_pairs`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as _st

from ib_jax.report.stats import paired_difference, t_interval
from ib_jax.report.summary import reference_level

__all__ = [
    "SUPPORTED",
    "CONTRADICTED",
    "INCONCLUSIVE",
    "RULE_DIRECTIONAL",
    "RULE_DIFFERENCE",
    "RULE_BAND",
    "RULE_COMBINE",
    "Effect",
    "directional_verdict",
    "difference_verdict",
    "band_verdict",
    "combine",
    "paired_effect",
    "mean_effect",
    "within_seed_slope",
    "group_slopes",
    "empirical_batch_snr",
    "strongest_level",
    "common_layers",
    "layer_mean",
    "paired_levels",
    "cross_job_pairs",
    "format_effect",
]

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"

RULE_DIRECTIONAL = (
    "supported if the 95% interval of the effect excludes 0 on the claimed side; contradicted if it excludes 0 "
    "on the other side; inconclusive if it contains 0 or has fewer than 2 replicates"
)
RULE_DIFFERENCE = (
    "supported (the choice matters) if the interval excludes 0; contradicted (no difference beyond the margin) if "
    "the whole interval lies inside [-margin, +margin]; inconclusive otherwise"
)
RULE_BAND = (
    "supported if the whole 95% interval of the slope lies inside the band; contradicted if it lies entirely outside; "
    "inconclusive if it straddles an edge"
)
RULE_COMBINE = (
    "across routes: supported only if every route with a verdict is supported, contradicted only if every one is "
    "contradicted, else inconclusive (a claim counts only when it holds across estimators, docs/science.md caveats)"
)


class Effect(NamedTuple):
    """A measured effect: ``mean`` with its ``conf`` interval [lo, hi] from ``n`` replicates, and the
    two-sided p-value of the null hypothesis ``effect == null`` (NaN where undefined)."""

    mean: float
    lo: float
    hi: float
    n: int
    p_value: float
    conf: float = 0.95
    null: float = 0.0

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo) and math.isfinite(self.hi)


def _nan_effect(n=0, conf=0.95, null=0.0, mean=math.nan) -> Effect:
    return Effect(float(mean), math.nan, math.nan, int(n), math.nan, conf, null)


# ----------------------------------------------------------------------- verdicts


def directional_verdict(effect: Effect, direction: int) -> str:
    """``direction`` -1: the claim says the effect is negative; +1: positive. Rule: ``RULE_DIRECTIONAL``."""
    if direction not in (-1, 1):
        raise ValueError(f"direction must be -1 or +1, got {direction!r}")
    if not effect.has_interval:
        return INCONCLUSIVE
    if (effect.hi < 0) if direction < 0 else (effect.lo > 0):
        return SUPPORTED
    if (effect.lo > 0) if direction < 0 else (effect.hi < 0):
        return CONTRADICTED
    return INCONCLUSIVE


def difference_verdict(effect: Effect, margin: float) -> str:
    """ "The two settings differ". Rule: ``RULE_DIFFERENCE`` with the equivalence ``margin`` (> 0)."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    if not effect.has_interval:
        return INCONCLUSIVE
    if effect.lo > 0 or effect.hi < 0:
        return SUPPORTED
    if -margin <= effect.lo and effect.hi <= margin:
        return CONTRADICTED
    return INCONCLUSIVE


def band_verdict(effect: Effect, lo: float, hi: float) -> str:
    """ "The effect lies in [lo, hi]". Rule: ``RULE_BAND``."""
    if not lo < hi:
        raise ValueError(f"band must have lo < hi, got [{lo}, {hi}]")
    if not effect.has_interval:
        return INCONCLUSIVE
    if lo <= effect.lo and effect.hi <= hi:
        return SUPPORTED
    if effect.hi < lo or effect.lo > hi:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> tuple[str, str]:
    """One verdict across routes (``RULE_COMBINE``) and its counts, e.g. ``("inconclusive", "2 supported, 1 contradicted, 0 inconclusive")``."""
    vs = list(verdicts)
    for v in vs:
        if v not in (SUPPORTED, CONTRADICTED, INCONCLUSIVE):
            raise ValueError(f"verdicts: unknown verdict {v!r}")
    counts = {k: vs.count(k) for k in (SUPPORTED, CONTRADICTED, INCONCLUSIVE)}
    text = ", ".join(f"{counts[k]} {k}" for k in (SUPPORTED, CONTRADICTED, INCONCLUSIVE))
    if vs and counts[SUPPORTED] == len(vs):
        return SUPPORTED, text
    if vs and counts[CONTRADICTED] == len(vs):
        return CONTRADICTED, text
    return INCONCLUSIVE, text


# ----------------------------------------------------------------------- effects


def paired_effect(a, b, conf: float = 0.95) -> Effect:
    """Mean of a_i - b_i over matched replicates (NaN pairs dropped), paired-t interval and p-value."""
    d = paired_difference(np.asarray(a, float), np.asarray(b, float), conf=conf)
    return Effect(float(d.mean), float(d.lo), float(d.hi), int(d.n), float(d.p_value), conf, 0.0)


def mean_effect(x, conf: float = 0.95, null: float = 0.0) -> Effect:
    """Mean of independent replicates ``x`` with its Student-t interval and the one-sample t-test's
    p-value against ``null``."""
    v = np.asarray(x, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return _nan_effect(len(v), conf, null, v[0] if len(v) else math.nan)
    m, lo, hi = (float(z) for z in t_interval(v, conf=conf))
    if np.all(v == v[0]):  # zero spread: scipy's t is 0/0 at the null (p NaN); ours: p = 1 there, else 0
        p = 1.0 if m == null else 0.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "precision loss": nearly equal values, still a valid p
            p = float(_st.ttest_1samp(v, null).pvalue)
    return Effect(m, lo, hi, len(v), p, conf, null)


def within_seed_slope(x, y, groups, conf: float = 0.95) -> Effect:
    """Least-squares slope of y on x with one intercept per group (seed fixed effects).

    Both x and y are centred within each group, then b = sum x~ y~ / sum x~^2; its standard
    error is s / sqrt(sum x~^2), s^2 = sum (y~ - b x~)^2 / (n - G - 1) with n points and G
    groups, and the interval is b +- t_{(1+conf)/2, n-G-1} se (exact under normal errors).
    Centring within seeds removes what a seed shares across noise levels (its initialization),
    so the slope measures how y moves with x when only the noise changes. The result's ``n``
    is the number of points used; with fewer than G + 2 points (no residual degree of
    freedom) or no spread in x there is no interval. Not ``scipy.stats.linregress`` on the centred
    values: it would count n - 2 degrees of freedom, where the G intercepts leave n - G - 1.
    """
    x, y, g = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    if not (x.shape == y.shape == g.shape) or x.ndim != 1:
        raise ValueError(f"x, y and groups must be 1-D of one length, got {x.shape}, {y.shape}, {g.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, g = x[ok], y[ok], g[ok]
    xs, ys = x.copy(), y.copy()
    for k in np.unique(g):
        m = g == k
        xs[m] -= x[m].mean()
        ys[m] -= y[m].mean()
    n, n_groups = len(x), len(np.unique(g))
    df = n - n_groups - 1
    sxx = float(np.sum(xs**2))
    if df < 1 or not sxx > 0:
        return _nan_effect(n, conf)
    b = float(np.sum(xs * ys) / sxx)
    s2 = float(np.sum((ys - b * xs) ** 2)) / df
    se = math.sqrt(s2 / sxx)
    if se == 0:  # an exact fit: scipy's t distribution takes no zero scale
        return Effect(b, b, b, n, 0.0 if b != 0 else 1.0, conf, 0.0)
    lo, hi = (float(v) for v in _st.t.interval(conf, df, loc=b, scale=se))
    p = float(2 * _st.t.sf(abs(b / se), df))
    return Effect(b, lo, hi, n, p, conf, 0.0)


def group_slopes(x, y, groups) -> np.ndarray:
    """Per group (seed), the least-squares slope of y on x; NaN for a group with < 2 distinct x."""
    x, y, g = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    out = []
    for k in np.unique(g):
        m = (g == k) & np.isfinite(x) & np.isfinite(y)
        if len(np.unique(x[m])) < 2:
            out.append(math.nan)
            continue
        out.append(float(np.polyfit(x[m], y[m], 1)[0]))
    return np.asarray(out, float)


def empirical_batch_snr(per_example, batch_sizes: Sequence[int], n_batches: int, seed: int = 0) -> np.ndarray:
    """Power SNR of sampled mini-batch gradients, measured directly: ``||G||^2 / mean_k ||g_B,k - G||^2``.

    ``per_example``: ``(m, D)`` per-example gradients at fixed parameters (the data
    distribution: G their mean). For each B, ``n_batches`` batches of B rows drawn i.i.d. with
    replacement (as the trainer draws them) give g_B,k; no formula is assumed, so comparing
    with ``B ||G||^2 / tr(Sigma)`` tests it (expected E||g_B - G||^2 = tr(Sigma)/B, Sigma the
    (1/m) covariance). Returns ``(len(batch_sizes),)``.
    """
    g = np.asarray(per_example, np.float64)
    if g.ndim != 2 or len(g) < 2:
        raise ValueError(f"per_example must be (m >= 2, D), got shape {g.shape}")
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    rng = np.random.default_rng(seed)
    mean = g.mean(axis=0)
    out = []
    for b in batch_sizes:
        if int(b) < 1:
            raise ValueError(f"batch_sizes must be >= 1, got {b}")
        idx = rng.integers(0, len(g), size=(n_batches, int(b)))
        chunk = max(1, (1 << 22) // (int(b) * g.shape[1]))  # batches per gather: memory O(4M floats), not O(K B D)
        sq = np.concatenate([np.sum((g[idx[k : k + chunk]].mean(axis=1) - mean) ** 2, axis=1) for k in range(0, n_batches, chunk)])
        out.append(float(mean @ mean) / float(np.mean(sq)))
    return np.asarray(out)


# ------------------------------------------------------------ values from summaries


def _level_key(member: dict, level_name: str) -> float:
    return float(member[level_name])


def strongest_level(levels: Sequence[float], level_name: str) -> float | None:
    """The noisiest level of a grid, other than the reference: the smallest SNR, or the largest sigma / p."""
    levels = [float(v) for v in levels]
    if not levels:
        return None
    ref = reference_level(levels, level_name)
    rest = [v for v in levels if v != ref]
    if not rest:
        return None
    return min(rest) if level_name == "snr" else max(rest)


def _get(member: dict, key: str) -> float:
    v = member.get(key)
    return math.nan if v is None else float(v)


def common_layers(member_lists: Sequence[Sequence[dict]], prefix: str, layers: Sequence[str]) -> list[str]:
    """The layers ``l`` for which every non-diverged member of every list has a finite ``{prefix}/{l}``."""
    out = []
    for layer in layers:
        vals = [_get(m, f"{prefix}/{layer}") for ms in member_lists for m in ms if not m.get("diverged")]
        if vals and all(math.isfinite(v) for v in vals):
            out.append(layer)
    return out


def layer_mean(prefix: str, layers: Sequence[str]) -> Callable[[dict], float]:
    """``member -> mean over layers of member[f"{prefix}/{layer}"]`` (NaN if one is missing)."""
    layers = list(layers)

    def f(member: dict) -> float:
        if not layers:
            return math.nan
        return float(np.mean([_get(member, f"{prefix}/{layer}") for layer in layers]))

    return f


def _value_fn(value) -> Callable[[dict], float]:
    return value if callable(value) else (lambda m: _get(m, value))


def paired_levels(members: Sequence[dict], level_name: str, level: float, ref: float, value) -> tuple[np.ndarray, np.ndarray, list]:
    """Values at ``level`` and at ``ref`` of one job's non-diverged members with the same seed:
    ``(a, b, seeds)``; ``value`` is a summary key or ``member -> float``."""
    f = _value_fn(value)
    at = {m["seed"]: m for m in members if _level_key(m, level_name) == level and not m.get("diverged")}
    rf = {m["seed"]: m for m in members if _level_key(m, level_name) == ref and not m.get("diverged")}
    seeds = sorted(set(at) & set(rf))
    return np.array([f(at[s]) for s in seeds], float), np.array([f(rf[s]) for s in seeds], float), seeds


def cross_job_pairs(
    members_a: Sequence[dict], members_b: Sequence[dict], level_name: str, level: float, value, value_b=None
) -> tuple[np.ndarray, np.ndarray, list]:
    """Values in job a and job b at the same ``level`` for the seeds both ran (not diverged):
    ``(a, b, seeds)``; ``value_b`` defaults to ``value``."""
    fa, fb = _value_fn(value), _value_fn(value if value_b is None else value_b)
    at = {m["seed"]: m for m in members_a if _level_key(m, level_name) == level and not m.get("diverged")}
    bt = {m["seed"]: m for m in members_b if _level_key(m, level_name) == level and not m.get("diverged")}
    seeds = sorted(set(at) & set(bt))
    return np.array([fa(at[s]) for s in seeds], float), np.array([fb(bt[s]) for s in seeds], float), seeds


def format_effect(e: Effect, digits: int = 3) -> tuple[str, str]:
    """(``mean``, ``[lo, hi]`` or ``n=1`` / ``n/a``) strings for a report table."""
    if not math.isfinite(e.mean):
        return "n/a", "n/a"
    mean = f"{e.mean:+.{digits}f}"
    if not e.has_interval:
        return mean, f"n={e.n}, no interval"
    return mean, f"[{e.lo:+.{digits}f}, {e.hi:+.{digits}f}]"
