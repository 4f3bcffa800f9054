"""Per-member summaries and the job's markdown tables, every mean over seeds with its interval.

What a job reports (:func:`summary_table`), each number a mean over seeds with its 95%
Student-t interval over seeds (:func:`ib_jax.report.stats.t_interval`: mean +- t_{0.975, n-1}
s / sqrt(n), s the sample standard deviation; with one seed no interval exists and the cell
says ``n=1``):

* final values per noise level (generalization gaps, H(X|T) per layer);
* the same at matched training loss (claim 1 of the brief compares layers there);
* the **paired difference** of each level against the reference level
  (:func:`reference_level`: the noiseless level ``inf`` for SNR kinds, ``0`` for sigma / p
  kinds, else the first level): members with the same seed are paired, and the mean of
  their differences gets a paired-t interval and p-value (:func:`ib_jax.report.stats.paired_difference`).
  Two levels are compared this way, not by two overlapping intervals of their means: pairing
  removes the seed-to-seed variance the levels share (same initialization, same data order);
* per information estimator with an I(X;T): the trajectory of I(X;T) per layer (start, peak,
  end) with a *compresses* and a *fits* flag (see :func:`summary_table` for the exact rule).

:func:`level_statistics` gives the same numbers as plain data for ``summary.json``;
:func:`ib_frontier_for` the exact information-bottleneck bound of a data set with few
discrete inputs, drawn on the information planes (``plots.information_planes(frontier=)``).
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections.abc import Sequence

import numpy as np

from ib_jax.estimators.ceilings import flag_keys
from ib_jax.report import plots
from ib_jax.report.frontier import frontier_applies, ib_frontier_for  # re-exported: the job summary draws it
from ib_jax.report.stats import (
    bound_cell,
    finite_or_none,
    interval_cell,
    markdown_table,
    paired_cell,
    paired_difference,
    pm_cell,
    t_interval,
    trajectory_flags,
)

__all__ = [
    "matched_loss_index",
    "summarize",
    "summary_table",
    "console_table",
    "markdown_report",
    "bounds_table",
    "reference_level",
    "interval_cell",
    "paired_cell",
    "level_statistics",
    "paired_by_seed",
    "trajectory_flags",
    "ib_frontier_for",
    "frontier_applies",
]

CONF = 0.95
# summary keys of the I(X;T) / I(T;Y) trajectories (per estimator and layer): the first evaluation,
# and the evaluation where the level's mean over members is highest
START, PEAK, PEAK_STEP = "start", "peak", "peak_step"


def matched_loss_index(metrics, diverged) -> tuple[float, np.ndarray]:
    """The train loss every non-diverged member reached, and for each member the first evaluation reaching it.

    Claim 1 of the brief compares layers *at matched training loss*: noisier members train
    more slowly, so final values mix the effect of noise with that of less training.
    Returns ``(loss_level, index (P,))``; index -1 for diverged members.
    """
    loss = np.asarray(metrics["train_loss"], float)
    ok = ~np.asarray(diverged, bool) & np.isfinite(loss).any(axis=1)
    if not ok.any():
        return math.nan, np.full(len(loss), -1)
    level = float(np.max(np.nanmin(np.where(np.isfinite(loss), loss, np.inf)[ok], axis=1)))
    idx = np.array([int(np.argmax(row <= level + 1e-12)) if o else -1 for row, o in zip(np.nan_to_num(loss, nan=np.inf), ok)])
    return level, idx


def _trajectory_keys(steps, metrics, members, layer_names, diverged) -> dict[int, dict]:
    """Per member: I(X;T) and I(T;Y) of every estimator at the first evaluation and at its level's peak.

    For each noise level and each ``{estimator}/i_xt`` (and ``i_ty``) the *peak* evaluation
    j* is where the mean over the level's non-diverged members is highest (per layer); every
    member then records its own value at j*, so "end vs peak" is a paired comparison of
    the same members at two evaluations (:func:`trajectory_flags`).
    """
    out: dict[int, dict] = {m["member"]: {} for m in members}
    groups: dict[float, list[int]] = {}
    for m in members:
        if not diverged[m["member"]]:
            groups.setdefault(m["level"], []).append(m["member"])
    names = sorted(k for k in metrics if k.rsplit("/", 1)[-1] in ("i_xt", "i_ty") and np.ndim(metrics[k]) == 3)
    for name in names:
        arr = np.asarray(metrics[name], float)  # (P, E, L)
        for idx in groups.values():
            vals = np.where(np.isfinite(arr[idx]), arr[idx], np.nan)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an evaluation where every member is NaN
                mean = np.nan_to_num(np.nanmean(vals, axis=0), nan=-np.inf)  # (E, L)
            for li, layer in enumerate(layer_names):
                if not np.isfinite(mean[:, li]).any():  # no finite value (e.g. sp's output layer)
                    continue
                j = int(np.argmax(mean[:, li]))
                for i in idx:
                    rec = out[i]
                    for key, v in ((f"{START}/{name}/{layer}", arr[i, 0, li]), (f"{PEAK}/{name}/{layer}", arr[i, j, li])):
                        v = finite_or_none(v)
                        if v is not None:
                            rec[key] = v
                    rec[f"{PEAK_STEP}/{name}/{layer}"] = int(steps[j])
    return out


def summarize(steps, metrics, members, layer_names, diverged, diverged_step, level_name, ceilings=None, margin: float = 0.05) -> list[dict]:
    """Per member: settings, ``final/...`` and ``matched/...`` values, and the trajectory keys
    ``start/{est}/{i_xt|i_ty}/{layer}``, ``peak/...`` and ``peak_step/...`` (see
    :func:`_trajectory_keys`). Values that are not finite are left out.

    ``ceilings`` (:func:`ib_jax.estimators.ceilings.ceilings`): adds the flags
    ``{final|matched}/{est}/{i_xt|i_ty}_at_ceiling/{layer}``, true where the value is within
    ``margin`` bits of its ceiling (:func:`ib_jax.estimators.ceilings.flag_keys`)."""
    matched_loss, matched = matched_loss_index(metrics, diverged)
    traj = _trajectory_keys(steps, metrics, members, layer_names, np.asarray(diverged, bool))
    out = []
    for m in members:
        i = m["member"]
        s = {
            **m,
            level_name: m["level"],
            "diverged": bool(diverged[i]),
            "diverged_step": int(diverged_step[i]) if diverged[i] else None,
            "final_step": int(steps[-1]),
        }
        for name, arr in metrics.items():
            if arr.ndim == 2:
                s[f"final/{name}"] = finite_or_none(arr[i, -1]) if name != "step" else None
            else:
                for layer, v in zip(layer_names, arr[i, -1]):
                    s[f"final/{name}/{layer}"] = finite_or_none(v)
        j = matched[i]
        if j >= 0:
            s["matched/train_loss_level"] = matched_loss
            s["matched/step"] = int(steps[j])
            for name, arr in metrics.items():
                if name == "step":
                    continue
                if arr.ndim == 2:
                    s[f"matched/{name}"] = finite_or_none(arr[i, j])
                else:
                    for layer, v in zip(layer_names, arr[i, j]):
                        s[f"matched/{name}/{layer}"] = finite_or_none(v)
        s.update(traj.get(i, {}))
        if ceilings:
            for stage in ("final", "matched"):
                s.update(flag_keys(s, ceilings, margin, stage))
        s.pop("level")
        out.append({k: v for k, v in s.items() if v is not None or k in ("diverged_step",)})
    return out


# ------------------------------------------------------------------- intervals


def reference_level(levels: Sequence[float], level_name: str) -> float:
    """The level every other level is compared with: ``inf`` (no noise) for SNR kinds when in the
    grid, ``0`` (no noise) for sigma / p kinds when in the grid, else the first level given."""
    levels = [float(v) for v in levels]
    if not levels:
        raise ValueError("levels must not be empty")
    if level_name == "snr" and any(math.isinf(v) and v > 0 for v in levels):
        return math.inf
    if level_name in ("sigma", "p") and 0.0 in levels:
        return 0.0
    return levels[0]


def _values(ss, key) -> np.ndarray:
    return np.array([np.nan if s.get(key) is None else float(s[key]) for s in ss], float)


def _n_finite(v) -> int:
    return int(np.isfinite(v).sum())


def paired_by_seed(
    summaries, level_name: str, level: float, ref: float, key: str, key_ref: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``key`` at ``level`` and of ``key_ref`` (default ``key``) at ``ref`` for the seeds
    present (not diverged) at both, aligned by seed: ``(a, b)``, NaN where a member lacks the value."""
    key_ref = key_ref or key
    at = {s["seed"]: s for s in summaries if s[level_name] == level and not s["diverged"]}
    rf = {s["seed"]: s for s in summaries if s[level_name] == ref and not s["diverged"]}
    seeds = sorted(set(at) & set(rf))
    return _values([at[k] for k in seeds], key), _values([rf[k] for k in seeds], key_ref)


def _levels(summaries, level_name) -> list[float]:
    return sorted({s[level_name] for s in summaries}, key=lambda v: (not math.isinf(v), -v))  # members' own float32 levels


def level_statistics(summaries, layer_names, level_name: str, keys: Sequence[str] | None = None) -> dict:
    """Plain data for ``summary.json``: per level the mean, 95% t-interval and n of every numeric
    ``final/`` and ``matched/`` key, and the paired difference against the reference level.

    Returns ``{"conf": 0.95, "interval": ..., "reference": ref, "levels": [{level_name: lv,
    "n": seeds, "values": {key: {"mean", "lo", "hi", "n"}}, "paired_vs_reference": {key:
    {"mean", "lo", "hi", "n", "p_value"}}}]}``; lo/hi None where n < 2.
    """
    levels = _levels(summaries, level_name)
    if not levels:
        return {"conf": CONF, "reference": None, "levels": []}
    order = [s[level_name] for s in summaries]
    ref = reference_level(list(dict.fromkeys(order)), level_name)
    if keys is None:
        keys = sorted(
            {
                k
                for s in summaries
                for k, v in s.items()
                if k.startswith(("final/", "matched/")) and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
    rows = []
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        vals, paired = {}, {}
        for k in keys:
            v = _values(ss, k)
            n = _n_finite(v)
            if n == 0:
                continue
            m, lo, hi = (float(x) for x in t_interval(v[np.isfinite(v)], conf=CONF))
            vals[k] = {"mean": m, "lo": lo if n > 1 else None, "hi": hi if n > 1 else None, "n": n}
            if lv != ref:
                a, b = paired_by_seed(summaries, level_name, lv, ref, k)
                d = paired_difference(a, b, conf=CONF)
                if int(d.n) > 0:
                    paired[k] = {
                        "mean": float(d.mean),
                        "lo": finite_or_none(d.lo),
                        "hi": finite_or_none(d.hi),
                        "n": int(d.n),
                        "p_value": finite_or_none(d.p_value),
                    }
        rows.append({level_name: lv, "n": len(ss), "values": vals, "paired_vs_reference": paired})
    return {"conf": CONF, "interval": "Student t over seeds (paired t for differences)", "reference": ref, "levels": rows}


def _trajectory_estimators(summaries) -> list[str]:
    return sorted({k.split("/")[1] for s in summaries for k in s if k.startswith(f"{PEAK}/") and k.split("/")[2] == "i_xt"})


def _trajectory_table(summaries, layer_names, level_name, est: str) -> list[str]:
    has_ty = any(f"{START}/{est}/i_ty/{layer}" in s for s in summaries for layer in layer_names)
    ty_est = (
        est
        if has_ty
        else next(
            (e for e in sorted({k.split("/")[1] for s in summaries for k in s if k.startswith(f"{START}/") and k.split("/")[2] == "i_ty"})),
            None,
        )
    )
    ty_note = "" if ty_est in (est, None) else f" (I(T;Y) from {ty_est})"
    caption = (
        f"I(X;T) trajectory per layer, {est}{ty_note}: mean [95% t-interval over members] at the first evaluation, at the peak "
        "(the evaluation where the level's mean is highest) and at the end. compresses = yes when the paired 95% t-interval "
        "of end - peak lies below 0 (the end is below the peak by more than its half-width); fits = yes when the paired 95% "
        "t-interval of I(T;Y) end - start lies above 0; n=1: one member, no interval"
    )
    rows = []
    for lv in _levels(summaries, level_name):
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        for layer in layer_names:
            start = _values(ss, f"{START}/{est}/i_xt/{layer}")
            peak = _values(ss, f"{PEAK}/{est}/i_xt/{layer}")
            end = _values(ss, f"final/{est}/i_xt/{layer}")
            if not np.isfinite(peak).any():
                continue
            steps = {s.get(f"{PEAK_STEP}/{est}/i_xt/{layer}") for s in ss} - {None}
            f = trajectory_flags(
                start,
                peak,
                end,
                _values(ss, f"{START}/{ty_est}/i_ty/{layer}") if ty_est else None,
                _values(ss, f"final/{ty_est}/i_ty/{layer}") if ty_est else None,
            )
            peak_cell = f"{interval_cell(peak)} ({','.join(str(x) for x in sorted(steps))})"
            rows.append([plots.level_label(lv), layer, interval_cell(start), peak_cell, interval_cell(end), paired_cell(end, peak)])
            rows[-1] += [f["compresses"], f["fits"]]
    headers = [level_name, "layer", "start", "peak (step)", "end", "end - peak", "compresses", "fits"]
    return [caption, ""] + markdown_table(headers, rows)


_CI = "mean [95% t-interval over seeds: mean ± t(0.975, n-1) s/√n]; n=1: one seed, no interval"


def _h(estimator, stage, layer) -> str:
    return f"{stage}/{estimator}/h_x_given_t/{layer}"


CEILING_MARK = "*"
CEILING_NOTE = (
    f"{CEILING_MARK}: at the estimator's ceiling for some member (I(X;T) within estimator.ceiling_margin bits of log2 n, "
    "H(X|T) ~ 0: every input told apart), no evidence about compression"
)


def _at_ceiling(ss, stage, estimator, layer) -> bool:
    return any(s.get(f"{stage}/{estimator}/i_xt_at_ceiling/{layer}") for s in ss)


def _mark(cell: str, ss, stage, estimator, layer) -> str:
    """``cell`` with :data:`CEILING_MARK` when some member of ``ss`` is at its ceiling there."""
    return cell + CEILING_MARK if _at_ceiling(ss, stage, estimator, layer) else cell


def _caption(text: str, rows) -> str:
    """``text``, plus :data:`CEILING_NOTE` when a cell of ``rows`` carries the mark."""
    return f"{text}; {CEILING_NOTE}" if any(str(c).endswith(CEILING_MARK) for r in rows for c in r) else text


def _sections(summaries, layer_names, level_name, estimator, trajectories) -> list[tuple[str, list[str]]]:
    """``[(heading, [caption, "", table lines...]), ...]``: the sections of :func:`summary_table`."""
    levels = _levels(summaries, level_name)
    hx = [f"H(X|T) {l}" for l in layer_names]
    rows = []
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        n_div = sum(1 for s in summaries if s[level_name] == lv and s["diverged"])
        cells = [plots.level_label(lv), f"{len(ss)}" + (f" ({n_div} diverged)" if n_div else "")]
        cells += [interval_cell(_values(ss, k)) for k in ["final/gap_loss", "final/gap_accuracy"]]
        cells += [_mark(interval_cell(_values(ss, _h(estimator, "final", l))), ss, "final", estimator, l) for l in layer_names]
        rows.append(cells)
    table = markdown_table([level_name, "seeds", "gap loss", "gap acc"] + hx, rows)
    out = [("Final values", [_caption(f"final values, {_CI}", rows), ""] + table)]
    level = next((s["matched/train_loss_level"] for s in summaries if "matched/train_loss_level" in s), None)
    if level is not None:
        rows = []
        for lv in levels:
            ss = [s for s in summaries if s[level_name] == lv and "matched/step" in s]
            cells = [plots.level_label(lv), interval_cell(_values(ss, "matched/step"), 0), interval_cell(_values(ss, "matched/gap_loss"))]
            rows.append(
                cells + [_mark(interval_cell(_values(ss, _h(estimator, "matched", l))), ss, "matched", estimator, l) for l in layer_names]
            )
        caption = _caption(
            f"at matched training loss (first evaluation with train loss <= {level:.4f}, reached by every member), {_CI}", rows
        )
        out.append(("At matched training loss", [caption, ""] + markdown_table([level_name, "step", "gap loss"] + hx, rows)))
    if len(levels) > 1:
        ref = reference_level(list(dict.fromkeys(s[level_name] for s in summaries)), level_name)
        keys = ["final/gap_loss", "final/gap_accuracy"] + [_h(estimator, "final", l) for l in layer_names]
        rows = []
        for lv in (v for v in levels if v != ref):
            pairs = [paired_by_seed(summaries, level_name, lv, ref, k) for k in keys]
            ss = [s for s in summaries if s[level_name] in (lv, ref) and not s["diverged"]]
            cells = [paired_cell(a, b) for a, b in pairs]
            cells = cells[:2] + [_mark(c, ss, "final", estimator, l) for c, l in zip(cells[2:], layer_names)]
            rows.append([plots.level_label(lv), str(len(pairs[0][0]))] + cells)
        caption = _caption(
            f"paired difference vs reference {level_name}={plots.level_label(ref)} at the end of training: members with the "
            "same seed paired, level minus reference, mean [95% paired t-interval] and the paired t-test's two-sided p-value",
            rows,
        )
        headers = [level_name, "pairs", "Δ gap loss", "Δ gap acc"] + [f"Δ {h}" for h in hx]
        out.append((f"Paired differences vs {level_name}={plots.level_label(ref)}", [caption, ""] + markdown_table(headers, rows)))
    bounds = bounds_table(summaries, level_name)
    if bounds:
        out.append(("Generalization bounds", bounds[1:]))
    for est in _trajectory_estimators(summaries) if trajectories is None else trajectories:
        out.append((f"I(X;T) trajectory, {est}", _trajectory_table(summaries, layer_names, level_name, est)))
    return out


def summary_table(summaries, layer_names, level_name, estimator="binning", trajectories: Sequence[str] | None = None) -> str:
    """Markdown: per noise level, mean [95% t-interval over seeds] of the final gaps and H(X|T)
    per layer; the same at matched training loss (claim 1 of the brief); the paired difference
    of each level vs the reference level (:func:`reference_level`); the bounds (:func:`bounds_table`);
    and, for each estimator in ``trajectories`` (default: every one with a recorded I(X;T)
    trajectory), the per-layer trajectory table with its compresses / fits flags (:func:`trajectory_flags`).
    Each table a caption, a blank line and the table (``tabulate``, GitHub format)."""
    return "\n\n".join("\n".join(lines) for _, lines in _sections(summaries, layer_names, level_name, estimator, trajectories))


# ------------------------------------------------------------------ what a job prints and writes


def _console_layers(summaries, layer_names, estimator, n: int) -> tuple[str, list[str], int]:
    """The quantity shown (H(X|T), else I(X;T)) and up to ``n`` of its layers with a value: the first
    hidden, the last hidden and the output layer (2: the last two; 1: the last hidden)."""
    for q, label in (("h_x_given_t", "H(X|T)"), ("i_xt", "I(X;T)")):
        have = [l for l in layer_names if any(s.get(f"final/{estimator}/{q}/{l}") is not None for s in summaries)]
        if have:
            pick = have if len(have) <= n else {3: [have[0], have[-2], have[-1]], 2: have[-2:], 1: have[-2:-1], 0: []}[n]
            return label, pick, len(have)
    return "H(X|T)", [], 0


def _paired_pm(a, b) -> str:
    d = paired_difference(a, b)
    n = int(d.n)
    if n < 2:
        return "n/a" if n == 0 else f"{float(d.mean):+.3f} (n=1)"
    return f"{float(d.mean):+.3f} ± {(float(d.hi) - float(d.lo)) / 2:.3f}"


def _compact(summaries, layer_names, level_name, estimator, n_layers, report_path) -> tuple[list, list, list[str]]:
    """``(headers as (top, bottom) pairs, rows, footer lines)`` of :func:`console_table`."""
    levels = _levels(summaries, level_name)
    ref = reference_level(list(dict.fromkeys(s[level_name] for s in summaries)), level_name) if levels else None
    label, shown, n_have = _console_layers(summaries, layer_names, estimator, n_layers)
    headers = [("", level_name), ("", "members"), ("gap", "loss"), ("test", "acc")]
    headers += ([("Δ gap", f"vs {plots.level_label(ref)}")] if len(levels) > 1 else []) + [(label, l) for l in shown]
    key = "h_x_given_t" if label == "H(X|T)" else "i_xt"
    rows = []
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        n_div = sum(1 for s in summaries if s[level_name] == lv and s["diverged"])
        acc = _values(ss, "final/test_accuracy")
        acc = acc[np.isfinite(acc)]
        cells = [plots.level_label(lv), f"{len(ss)}" + (f" ({n_div} div.)" if n_div else "")]
        cells += [pm_cell(_values(ss, "final/gap_loss")), f"{acc.mean():.3f}" if len(acc) else "n/a"]
        if len(levels) > 1:
            cells.append("reference" if lv == ref else _paired_pm(*paired_by_seed(summaries, level_name, lv, ref, "final/gap_loss")))
        rows.append(cells + [_mark(pm_cell(_values(ss, f"final/{estimator}/{key}/{l}"), 2), ss, "final", estimator, l) for l in shown])
    marked = any(str(c).endswith(CEILING_MARK) for r in rows for c in r)
    footer = [
        "±: half-width of the 95% t-interval over seeds (n=1: one seed, no interval); div.: diverged members, left out"
        + (f"; Δ gap: paired with the {level_name}={plots.level_label(ref)} member of the same seed" if len(levels) > 1 else ""),
        (f"{label} [bits, {estimator}] of {len(shown)} of {n_have} layers ({', '.join(shown)}); " if shown else "")
        + f"all layers, matched loss, p-values, bounds, trajectories: {report_path}",
    ] + ([CEILING_NOTE] if marked else [])
    return headers, rows, footer


def console_table(summaries, layer_names, level_name, estimator="binning", *, report_path="summary.md", width: int = 100) -> str:
    """What a job prints: one compact table, one row per noise level, at most ``width`` characters wide.

    Columns: the level; members (seeds that trained, and how many diverged); the final gap (test
    minus train loss) as mean ± the half-width of its 95% t-interval over seeds; the mean final
    test accuracy; the paired difference of the gap against the reference level
    (:func:`reference_level`) ± its 95% paired-t half-width; H(X|T) (else I(X;T)) of ``estimator``
    for three layers (first hidden, last hidden, output), fewer when the table would be wider than
    ``width``. Two footer lines (wrapped to ``width``) name the layers and ``report_path``, where
    :func:`markdown_report` puts every table."""
    for n in (3, 2, 1, 0):
        headers, rows, footer = _compact(summaries, layer_names, level_name, estimator, n, report_path)
        table = markdown_table([f"{a}\n{b}" for a, b in headers], rows, tablefmt="simple")  # two-line headers
        if max(map(len, table)) <= width:
            break
    return "\n".join(table + [""] + [w for line in footer for w in textwrap.wrap(line, width)])


def markdown_report(
    summaries,
    layer_names,
    level_name,
    estimator="binning",
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
    images: Sequence[str] = (),
    trajectories: Sequence[str] | None = None,
    also: Sequence[str] = (),
) -> str:
    """The job's ``summary.md``: every table of :func:`summary_table` under its own heading, after
    the compact table the job printed (:func:`console_table`, here with every layer), then the
    same tables for each estimator of ``also`` (e.g. ``binning@test`` beside ``binning@train``
    with ``estimator.info_split=both``), the diverged members and the plots.

    Args:
      title: the document's title (e.g. :func:`ib_jax.report.plots.describe` of the job).
      notes: lines listed under the title (output directory, wall and compile time, wandb runs...).
      images: plot paths, linked as images (give them relative to the document's folder).
      trajectories: as in :func:`summary_table`.
    """
    lines = [f"# {title or 'ib-jax job summary'}", ""]
    if notes:
        lines += [f"* {n}" for n in notes] + [""]
    headers, rows, footer = _compact(summaries, layer_names, level_name, estimator, len(layer_names), "")
    lines += ["## Overview", "", *markdown_table([f"{a} {b}".strip() for a, b in headers], rows), "", footer[0], *footer[2:], ""]
    for heading, body in _sections(summaries, layer_names, level_name, estimator, trajectories):
        lines += [f"## {heading}", "", *body, ""]
    for other in also:
        lines += [f"## {other}", ""]
        for heading, body in _sections(summaries, layer_names, level_name, other, trajectories):
            lines += [f"### {heading}", "", *body, ""]
    div = [s for s in summaries if s["diverged"]]
    if div:
        rows = [[str(s["member"]), str(s.get("seed")), plots.level_label(s[level_name]), str(s.get("diverged_step"))] for s in div]
        lines += ["## Diverged members", "", "masked from their divergence step, left out of every mean above", ""]
        lines += markdown_table(["member", "seed", level_name, "diverged at step"], rows) + [""]
    if images:
        lines += ["## Plots", ""] + [f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in images] + [""]
    return "\n".join(lines)


# the bound columns of the summary table, in order: (final/ key, header); shown when recorded
BOUND_COLUMNS = (
    ("final/gap_accuracy", "gap (0-1)"),
    ("final/bound/noisy_iterative_gap", "noisy-iter. gap bound"),
    ("final/bound/noisy_iterative_info", "I(S;W) bound [nats]"),
    ("final/bound/dp_epsilon", "DP ε"),
    ("final/bound/dp_gap", "DP gap bound"),
    ("final/bound/pac_bayes_test_error", "Q test error"),
    ("final/bound/pac_bayes", "PAC-Bayes test-error bound"),
    ("final/bound/pac_bayes_gap", "PAC-Bayes gap bound"),
)


def bounds_table(summaries, level_name) -> list[str]:
    """Markdown lines: per level, the measured final 0-1 gap beside every recorded bound (mean
    [95% t-interval over seeds]); ``[]`` when the job recorded none, else a blank line, a caption,
    a blank line and the table. The noisy-iterative and DP bounds bound the *expected* gap (compare
    with the gap's mean); PAC-Bayes bounds the test error of the stochastic network Q (compare with
    "Q test error")."""
    cols = [(k, h) for k, h in BOUND_COLUMNS if k == "final/gap_accuracy" or any(k in s for s in summaries)]
    if len(cols) < 2:
        return []
    rows = []
    for lv in _levels(summaries, level_name):
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        rows.append([plots.level_label(lv)] + [bound_cell(_values(ss, k)) for k, _ in cols])
    caption = (
        "generalization bounds at the end of training (ib_jax.bounds), mean [95% t-interval over seeds]; "
        "the noisy-iterative and DP bounds hold for the expected gap, PAC-Bayes for the stochastic network Q's test error; "
        "an infinite bound (no noise) has no finite value to show"
    )
    return ["", caption, ""] + markdown_table([level_name] + [h for _, h in cols], rows)
