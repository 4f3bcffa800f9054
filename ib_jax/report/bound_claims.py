"""Claim 2 by the bound routes: does each generalization bound fall with more noise, does the
measured gap track it, and does the measured value stay below it?

Three rows per bound a job recorded (:mod:`ib_jax.bounds`, summary keys ``final/bound/...``):

* **falls with noise**: the paired (by seed) difference of the final bound between the noisiest
  and the quietest level at which it is finite; claimed negative (``RULE_DIRECTIONAL``);
* **gap tracks it**: the within-seed slope of the measured value on the bound over every member
  with a finite bound; claimed positive;
* **measured stays below it**: at each level the paired difference measured - bound; the row
  shows the level where it is largest. Claimed negative; a difference whose whole interval lies
  above 0 is a *violated bound* and is reported as a defect (of the bound's assumptions or of the
  code), never as a finding.

Measured values: for the noisy-iterative and DP bounds the 0-1 gap of W_t (they bound its
expectation over seeds, so the comparison is of means); for PAC-Bayes the test error of the
stochastic network Q the bound is about (``bound/pac_bayes_test_error``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ib_jax.report.claims import Row
from ib_jax.report.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    RULE_DIRECTIONAL,
    _get,
    _nan_effect,
    directional_verdict,
    paired_effect,
    paired_levels,
    within_seed_slope,
)

__all__ = ["BOUND_ROUTES", "VIOLATED", "bound_rows"]

VIOLATED = "VIOLATED (defect: the measured value exceeds the bound beyond its interval)"

# (bound key, the measured key it bounds, name)
BOUND_ROUTES = (
    ("final/bound/noisy_iterative_gap", "final/gap_accuracy", "noisy-iterative bound on E[0-1 gap] (Pensia et al.; Xu & Raginsky)"),
    ("final/bound/dp_gap", "final/gap_accuracy", "DP bound on E[0-1 gap] (DP-SGD, RDP accountant)"),
    ("final/bound/pac_bayes", "final/bound/pac_bayes_test_error", "PAC-Bayes bound on the test error of Q (Dziugaite & Roy recipe)"),
)


def _strength(level: float, level_name: str) -> float:
    """Larger = more noise (an SNR's inverse, a sigma, p or noise multiplier as is)."""
    if level_name == "snr":
        return math.inf if level == 0 else 1.0 / level
    return level


def _finite_levels(members, level_name, key) -> list[float]:
    levels = sorted({float(m[level_name]) for m in members})
    out = []
    for lv in levels:
        vals = [_get(m, key) for m in members if float(m[level_name]) == lv and not m.get("diverged")]
        if vals and all(math.isfinite(v) for v in vals):
            out.append(lv)
    return sorted(out, key=lambda v: _strength(v, level_name))


def bound_rows(members: Sequence[dict], level_name: str, network: str, *, conf: float = 0.95) -> list:
    """The claim-2 rows of every bound recorded in ``members`` (one job's summary members)."""
    rows = []
    ok = [m for m in members if not m.get("diverged")]
    for bound, measured, name in BOUND_ROUTES:
        if not any(bound in m for m in ok):
            continue
        route = f"{name} ({network})"
        levels = _finite_levels(ok, level_name, bound)
        # 1. falls with more noise
        measure = f"Δ final {bound.split('/', 1)[1]}, noisiest - quietest {level_name} with a finite bound"
        if len(levels) < 2:
            rows.append(
                Row(
                    2,
                    route,
                    measure,
                    _nan_effect(conf=conf),
                    INCONCLUSIVE,
                    RULE_DIRECTIONAL,
                    ("fewer than two levels with a finite bound",),
                )
            )
        else:
            a, b, _ = paired_levels(ok, level_name, levels[-1], levels[0], bound)
            eff = paired_effect(a, b, conf)
            measure = f"{measure} ({levels[-1]:g} - {levels[0]:g})"
            rows.append(Row(2, route, measure, eff, directional_verdict(eff, -1), RULE_DIRECTIONAL + "; claimed side: < 0"))
        # 2. the measured value tracks the bound
        sel = [m for m in ok if math.isfinite(_get(m, bound))]
        x = np.array([_get(m, bound) for m in sel], float)
        y = np.array([_get(m, measured) for m in sel], float)
        eff = within_seed_slope(x, y, np.array([m["seed"] for m in sel]), conf) if len(sel) > 2 else _nan_effect(conf=conf)
        rows.append(
            Row(
                2,
                route,
                f"slope of final {measured.split('/', 1)[1]} on the bound within seeds",
                eff,
                directional_verdict(eff, +1),
                RULE_DIRECTIONAL + "; claimed side: > 0",
            )
        )
        # 3. the measured value stays below the bound, at every level (the tightest level shown)
        worst, detail = None, []
        for lv in levels:
            sub = [m for m in ok if float(m[level_name]) == lv]
            e = paired_effect([_get(m, measured) for m in sub], [_get(m, bound) for m in sub], conf)
            detail.append(f"{level_name}={lv:g}: measured - bound {e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}] (n={e.n})")
            if worst is None or e.mean > worst.mean:
                worst = e
        if worst is None:
            rows.append(Row(2, route, "measured - bound (no finite bound)", _nan_effect(conf=conf), INCONCLUSIVE, RULE_DIRECTIONAL))
            continue
        verdict = directional_verdict(worst, -1)
        rows.append(
            Row(
                2,
                route,
                f"final {measured.split('/', 1)[1]} - bound, at the level where it is largest",
                worst,
                VIOLATED if verdict == CONTRADICTED else verdict,
                RULE_DIRECTIONAL + "; claimed side: < 0; above 0 beyond the interval = a violated bound (a defect)",
                tuple(detail),
            )
        )
    return rows
