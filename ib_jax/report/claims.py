"""Claims 1-5 of the science brief measured from job summaries, one table row each.

Pure host-side functions (numpy, scipy) over what jobs write: the per-member dicts of
``summary.json`` (``final/...``, ``matched/...``, the seed, the noise level under its
``level_name``). ``scripts/claims.py`` runs the sweeps and renders the report with them. The
effects and the verdict rules (``RULE_DIRECTIONAL`` and the others) are
:mod:`ib_jax.report.verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ib_jax.estimators.ceilings import layers_at_ceiling
from ib_jax.report.stats import interval_cell, markdown_table, paired_cell, trajectory_flags
from ib_jax.report.summary import reference_level
from ib_jax.report.verdicts import (
    INCONCLUSIVE,
    RULE_BAND,
    RULE_DIFFERENCE,
    RULE_DIRECTIONAL,
    Effect,
    _get,
    _nan_effect,
    band_verdict,
    common_layers,
    cross_job_pairs,
    difference_verdict,
    directional_verdict,
    format_effect,
    group_slopes,
    layer_mean,
    mean_effect,
    paired_effect,
    paired_levels,
    strongest_level,
    within_seed_slope,
)

__all__ = [
    "Route",
    "Row",
    "layers_of",
    "claim1",
    "claim2",
    "gap_difference",
    "compare_jobs",
    "batch_snr_slope",
    "fits_and_compresses",
    "verdict_table",
]


# ------------------------------------------------------------------- claims as rows


class Route(NamedTuple):
    """One way of measuring I(X;T): an estimator's summary key, its quantity and a description.

    ``quantity`` is ``i_xt`` (bits), or ``h_t`` for kNN (Kozachenko-Leonenko differential
    entropy of T in bits: for a deterministic network I(X;T) = H(T) is infinite in the continuum,
    and h(T) is the estimator's proxy for it; lower h(T) = more compressed).
    """

    name: str
    estimator: str
    quantity: str = "i_xt"
    network: str = "tanh"


class Row(NamedTuple):
    """One measured effect of one claim by one route, with its verdict and the rule that gave it."""

    claim: int
    route: str
    measure: str
    effect: Effect
    verdict: str
    rule: str
    detail: tuple = ()
    jobs: tuple = ()


def layers_of(members: Sequence[dict], prefix: str) -> list[str]:
    """Layer names of ``{prefix}/{layer}`` keys, in the order the members record them."""
    seen: dict[str, None] = {}
    for m in members:
        for k in m:
            if k.startswith(prefix + "/") and "/" not in k[len(prefix) + 1 :]:
                seen.setdefault(k[len(prefix) + 1 :], None)
    return list(seen)


def evidence_layers(members: Sequence[dict], prefix: str) -> tuple[list[str], list[str]]:
    """``(layers, left_out)``: the layers every non-diverged member of ``members`` records finitely
    under ``prefix`` (:func:`common_layers`), less those where some member's estimate is at its
    ceiling (:func:`ib_jax.estimators.ceilings.layers_at_ceiling`: I(X;T) ~ log2 n, every input
    told apart): an estimate at its ceiling, like an undefined one, is never counted as evidence."""
    layers = common_layers([members], prefix, layers_of(members, prefix))
    capped = layers_at_ceiling([m for m in members if not m.get("diverged")], prefix, layers)
    return [l for l in layers if l not in capped], capped


def _layers_text(layers, capped) -> str:
    text = f"layers averaged: {', '.join(layers) or 'none'}"
    if capped:
        text += f"; left out at the estimator's ceiling (I(X;T) within estimator.ceiling_margin of log2 n): {', '.join(capped)}"
    return text


def _cell(e: Effect, digits: int = 3) -> str:
    """A difference: signed mean, interval, n and p-value."""
    mean, iv = format_effect(e, digits)
    p = f", p={e.p_value:.2g}" if math.isfinite(e.p_value) else ""
    return f"{mean} {iv} (n={e.n}{p})"


def _mean_cell(values, digits: int = 3) -> str:
    """A level's values: mean [95% t-interval] (n)."""
    v = np.asarray(values, float)
    return f"{interval_cell(v, digits)} (n={int(np.isfinite(v).sum())})"


def _conf(conf: float) -> str:
    return f"{conf * 100:g}%"


def _lv(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:g}"


def claim1(members: Sequence[dict], level_name: str, route: Route, *, conf: float = 0.95, stage: str = "matched") -> Row:
    """Claim 1: lower gradient SNR ends with lower I(X;T) (higher H(X|T)) per layer, at matched training loss.

    Effect: paired difference (same seed) of the layer mean of I(X;T) (``route.quantity``) at
    ``stage`` between the strongest noise level and the reference level; claimed negative.
    The per-layer paired differences and verdicts go in the row's detail.
    """
    levels = list(dict.fromkeys(float(m[level_name]) for m in members))
    ref, lv = reference_level(levels, level_name), strongest_level(levels, level_name)
    measure = f"Δ {route.quantity} ({stage}), {level_name}={_lv(lv) if lv is not None else '?'} - {_lv(ref)}, layer mean [bits]"
    if lv is None:
        return Row(
            1, route.name, measure, _nan_effect(conf=conf), INCONCLUSIVE, RULE_DIRECTIONAL, ("a single noise level: nothing to compare",)
        )
    prefix = f"{stage}/{route.estimator}/{route.quantity}"
    sel = [m for m in members if float(m[level_name]) in (lv, ref)]
    layers, capped = evidence_layers(sel, prefix)
    a, b, seeds = paired_levels(members, level_name, lv, ref, layer_mean(prefix, layers))
    eff = paired_effect(a, b, conf)
    detail = [f"{_layers_text(layers, capped)}; seeds paired: {seeds}"]
    loss = {m.get("matched/train_loss_level") for m in sel} - {None}
    if stage == "matched" and loss:
        steps = {v: sorted({m.get("matched/step") for m in sel if float(m[level_name]) == v} - {None}) for v in (ref, lv)}
        detail.append(
            f"matched training loss {min(loss):.4f}; evaluation steps used: {level_name}={_lv(ref)}: {steps[ref]}, "
            f"{level_name}={_lv(lv)}: {steps[lv]}"
        )
        final = max((m.get("final_step") or 0) for m in sel)
        if final and steps[ref] and float(np.median(steps[ref])) < 0.05 * final:
            # some member never got far below its initial loss, so "matched" means early in training
            detail.append(
                f"note: the reference members reach the matched loss within the first 5% of the {final} steps: "
                "some member's loss stayed high, and this comparison is one of early training, not of trained networks"
            )
    table = []
    for layer in layers_of(sel, prefix):
        la, lb, _ = paired_levels(members, level_name, lv, ref, f"{prefix}/{layer}")
        e = paired_effect(la, lb, conf)
        table.append(
            [layer, _mean_cell(lb), _mean_cell(la), _cell(e), "at ceiling: not evidence" if layer in capped else directional_verdict(e, -1)]
        )
    headers = ["layer", f"{level_name}={_lv(ref)}", f"{level_name}={_lv(lv)}", f"paired Δ [{_conf(conf)}]", "verdict"]
    detail += [""] + markdown_table(headers, table)
    return Row(1, route.name, measure, eff, directional_verdict(eff, -1), RULE_DIRECTIONAL + "; claimed side: < 0", tuple(detail))


def claim2(members: Sequence[dict], level_name: str, route: Route, *, conf: float = 0.95, gap: str = "gap_loss") -> Row:
    """Claim 2: higher H(X|T) goes with a smaller generalization gap.

    Effect: the within-seed least-squares slope (:func:`within_seed_slope`) of the final ``gap``
    on the final layer-mean I(X;T) over every non-diverged member of the job (all levels);
    claimed positive (less information about X, i.e. higher H(X|T), with a smaller gap).
    """
    prefix = f"final/{route.estimator}/{route.quantity}"
    ok = [m for m in members if not m.get("diverged")]
    layers, capped = evidence_layers(ok, prefix)
    f = layer_mean(prefix, layers)
    x = np.array([f(m) for m in ok], float)
    y = np.array([_get(m, f"final/{gap}") for m in ok], float)
    eff = within_seed_slope(x, y, np.array([m["seed"] for m in ok]), conf)
    detail = (f"{_layers_text(layers, capped)}; {len(ok)} members, {len({m['seed'] for m in ok})} seeds as fixed effects",)
    measure = f"slope of final {gap} on final {route.quantity} (layer mean) within seeds [nats/bit]"
    return Row(2, route.name, measure, eff, directional_verdict(eff, +1), RULE_DIRECTIONAL + "; claimed side: > 0", detail)


def gap_difference(members: Sequence[dict], level_name: str, network: str, *, conf: float = 0.95, gap: str = "gap_loss") -> Row:
    """Claim 2, the gap alone: paired difference of the final ``gap`` between the strongest noise
    level and the reference (claimed negative: noise, which raises H(X|T), lowers the gap)."""
    levels = list(dict.fromkeys(float(m[level_name]) for m in members))
    ref, lv = reference_level(levels, level_name), strongest_level(levels, level_name)
    measure = (
        f"Δ final {gap}, {level_name}={_lv(lv) if lv is not None else '?'} - {_lv(ref)} [nats]"
        if gap == "gap_loss"
        else f"Δ final {gap}, {level_name}={_lv(lv) if lv is not None else '?'} - {_lv(ref)}"
    )
    if lv is None:
        return Row(2, f"gap ({network} network)", measure, _nan_effect(conf=conf), INCONCLUSIVE, RULE_DIRECTIONAL)
    a, b, _ = paired_levels(members, level_name, lv, ref, f"final/{gap}")
    eff = paired_effect(a, b, conf)
    return Row(2, f"gap ({network} network)", measure, eff, directional_verdict(eff, -1), RULE_DIRECTIONAL + "; claimed side: < 0")


def compare_jobs(
    claim: int,
    members_a: Sequence[dict],
    members_b: Sequence[dict],
    level_name: str,
    route: Route | None,
    label: str,
    *,
    margin: float,
    conf: float = 0.95,
    stage: str = "final",
    level: float | None = None,
    network: str = "tanh",
) -> Row:
    """Claims 4 and 5: does job a's setting differ from job b's (noise shape, schedule)?

    Pairs members with the same seed at the same noise ``level`` (default: the strongest level
    both jobs ran) and measures a - b of the layer-mean I(X;T) of ``route`` at ``stage`` (or,
    ``route=None``, of the final gap_loss). Verdict: :func:`difference_verdict` with ``margin``
    (bits for information, nats for the gap).
    """
    levels_a = {float(m[level_name]) for m in members_a}
    levels_b = {float(m[level_name]) for m in members_b}
    common = sorted(levels_a & levels_b, key=lambda v: (not math.isinf(v), -v))
    if level is None:
        level = strongest_level(common, level_name) if len(common) > 1 else (common[0] if common else None)
    rule = RULE_DIFFERENCE + f"; margin ±{margin:g}, {_conf(conf)} interval"
    if route is None:
        name, value, measure = f"gap ({network} network)", "final/gap_loss", f"Δ final gap_loss, {label} [nats]"
        detail = ()
    else:
        prefix = f"{stage}/{route.estimator}/{route.quantity}"
        sel = [m for m in list(members_a) + list(members_b) if float(m[level_name]) == level]
        layers, capped = evidence_layers(sel, prefix)
        name, value, measure = route.name, layer_mean(prefix, layers), f"Δ {route.quantity} ({stage}), {label}, layer mean [bits]"
        detail = (_layers_text(layers, capped),)
    if level is None:
        return Row(claim, name, measure, _nan_effect(conf=conf), INCONCLUSIVE, rule, ("no common noise level",))
    a, b, seeds = cross_job_pairs(members_a, members_b, level_name, level, value)
    eff = paired_effect(a, b, conf)
    measure = measure.replace("[", f"at {level_name}={_lv(level)} [", 1)
    return Row(claim, name, measure, eff, difference_verdict(eff, margin), rule, detail + (f"seeds paired: {seeds}",))


def batch_snr_slope(batch_sizes, snrs, seeds, route: str, *, band=(0.8, 1.2), conf: float = 0.95) -> Row:
    """Claim 3: SNR_B grows about linearly with B. Effect: the mean over seeds of each seed's
    least-squares slope of log SNR on log B (:func:`group_slopes`), t-interval over seeds,
    p-value against slope 1; verdict :func:`band_verdict` with ``band``."""
    b = np.asarray(batch_sizes, float)
    s = np.asarray(snrs, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where((s > 0) & np.isfinite(s), np.log(s), np.nan)
    slopes = group_slopes(np.log(b), y, np.asarray(seeds))
    eff = mean_effect(slopes, conf, null=1.0)
    table = [[f"{v:g}", _mean_cell(s[b == v], 4)] for v in sorted(set(b.tolist()))]
    detail = markdown_table(["B", "SNR_B mean [95% t-interval over seeds]"], table)
    detail += ["", f"per-seed slopes: {[round(float(v), 3) for v in slopes]}"]
    return Row(
        3,
        route,
        "slope of log SNR_B on log B (1 = linear)",
        eff,
        band_verdict(eff, *band),
        RULE_BAND + f"; band [{band[0]:g}, {band[1]:g}]; p: H0 slope = 1",
        tuple(detail),
    )


def fits_and_compresses(
    members: Sequence[dict], level_name: str, level: float, estimator: str, ty_estimator: str | None = None
) -> list[str]:
    """Markdown lines: per layer, whether I(X;T) of ``estimator`` compresses and I(T;Y) fits at
    ``level`` (:func:`ib_jax.report.summary.trajectory_flags`), from the summaries' trajectory keys."""
    ss = [m for m in members if float(m[level_name]) == level and not m.get("diverged")]
    ty = ty_estimator or estimator
    out = []
    for layer in layers_of(ss, f"peak/{estimator}/i_xt"):
        col = {k: np.array([_get(m, f"{k}/{estimator}/i_xt/{layer}") for m in ss]) for k in ("start", "peak", "final")}
        sty = np.array([_get(m, f"start/{ty}/i_ty/{layer}") for m in ss])
        ety = np.array([_get(m, f"final/{ty}/i_ty/{layer}") for m in ss])
        f = trajectory_flags(col["start"], col["peak"], col["final"], sty, ety)
        cells = [interval_cell(col[k]) for k in ("start", "peak", "final")]
        out.append([layer, *cells, paired_cell(col["final"], col["peak"]), f["compresses"], f["fits"]])
    headers = ["layer", "start", "peak", "end", "end - peak", "compresses", f"fits (I(T;Y) from {ty})"]
    return markdown_table(headers, out) if out else []


def verdict_table(rows: Sequence[Row]) -> list[str]:
    """The report's main table: one line per (claim, route, measure), in claim order."""
    rows = sorted(rows, key=lambda r: r.claim)  # stable: routes keep their order within a claim
    out = []
    for r in rows:
        mean, iv = format_effect(r.effect)
        p = f"{r.effect.p_value:.2g}" if math.isfinite(r.effect.p_value) else "n/a"
        out.append([str(r.claim), r.route, r.measure, mean, f"{iv} ({_conf(r.effect.conf)})", str(r.effect.n), p, f"**{r.verdict}**"])
    return markdown_table(["claim", "route", "effect", "mean", "interval", "n", "p", "verdict"], out)
