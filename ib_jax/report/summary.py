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

import hashlib
import math
import warnings
from collections.abc import Sequence

import numpy as np

from ib_jax import registry as R
from ib_jax.data.dataset import information_subset
from ib_jax.estimators.ib_bound import ib_frontier
from ib_jax.report import plots
from ib_jax.report.stats import finite_or_none, paired_difference, t_interval

__all__ = [
    "matched_loss_index",
    "summarize",
    "summary_table",
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


def summarize(steps, metrics, members, layer_names, diverged, diverged_step, level_name) -> list[dict]:
    """Per member: settings, ``final/...`` and ``matched/...`` values, and the trajectory keys
    ``start/{est}/{i_xt|i_ty}/{layer}``, ``peak/...`` and ``peak_step/...`` (see
    :func:`_trajectory_keys`). Values that are not finite are left out."""
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


def interval_cell(values, digits: int = 3) -> str:
    """``mean [lo, hi]`` (95% t-interval over the finite values), ``mean (n=1)``, or ``n/a``."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.{digits}f} (n=1)"
    m, lo, hi = (float(x) for x in t_interval(v, conf=CONF))
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def paired_cell(a, b, digits: int = 3) -> str:
    """Paired difference a - b: ``mean [lo, hi] p=...`` (95% paired-t), ``mean (n=1)``, or ``n/a``."""
    d = paired_difference(np.asarray(a, float), np.asarray(b, float), conf=CONF)
    n = int(d.n)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{float(d.mean):+.{digits}f} (n=1)"
    return f"{float(d.mean):+.{digits}f} [{float(d.lo):+.{digits}f}, {float(d.hi):+.{digits}f}] p={float(d.p_value):.2g}"


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


def trajectory_flags(start, peak, end, start_ty=None, end_ty=None) -> dict:
    """Whether a layer compresses and fits, from per-member values (NaN: missing).

    * compresses: the paired 95% t-interval of ``end - peak`` lies below 0, i.e. the mean end
      is below the mean at the peak evaluation by more than the interval's half-width;
    * fits: the paired 95% t-interval of ``end_ty - start_ty`` lies above 0 (I(T;Y) rises).

    Returns ``{"compresses": "yes"|"no"|"n=1"|"n/a", "fits": ..., "drop": PairedDifference,
    "rise": PairedDifference or None}``. With one member no interval exists: ``n=1``.
    """
    drop = paired_difference(np.asarray(end, float), np.asarray(peak, float), conf=CONF)

    def flag(d, direction):
        n = int(d.n)
        if n == 0:
            return "n/a"
        if n == 1:
            return "n=1"
        return "yes" if (float(d.hi) < 0 if direction < 0 else float(d.lo) > 0) else "no"

    rise = None
    if start_ty is not None and end_ty is not None:
        rise = paired_difference(np.asarray(end_ty, float), np.asarray(start_ty, float), conf=CONF)
    return {"compresses": flag(drop, -1), "fits": flag(rise, +1) if rise is not None else "n/a", "drop": drop, "rise": rise}


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
    lines = [
        f"I(X;T) trajectory per layer, {est}{ty_note}: mean [95% t-interval over members] at the first evaluation, at the peak "
        "(the evaluation where the level's mean is highest) and at the end. compresses = yes when the paired 95% t-interval "
        "of end - peak lies below 0 (the end is below the peak by more than its half-width); fits = yes when the paired 95% "
        "t-interval of I(T;Y) end - start lies above 0; n=1: one member, no interval",
        "",
        f"| {level_name} | layer | start | peak (step) | end | end - peak | compresses | fits |",
        "|" + " --- |" * 8,
    ]
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
            lines.append(
                f"| {plots.level_label(lv)} | {layer} | {interval_cell(start)} | {interval_cell(peak)} ({','.join(str(x) for x in sorted(steps))}) "
                f"| {interval_cell(end)} | {paired_cell(end, peak)} | {f['compresses']} | {f['fits']} |"
            )
    return lines


def summary_table(summaries, layer_names, level_name, estimator="binning", trajectories: Sequence[str] | None = None) -> str:
    """Markdown: per noise level, mean [95% t-interval over seeds] of the final gaps and H(X|T)
    per layer; the same at matched training loss (claim 1 of the brief); the paired difference
    of each level vs the reference level (:func:`reference_level`); and, for each estimator in
    ``trajectories`` (default: every one with a recorded I(X;T) trajectory), the per-layer
    trajectory table with its compresses / fits flags (:func:`trajectory_flags`)."""
    levels = _levels(summaries, level_name)
    ci = "mean [95% t-interval over seeds: mean ± t(0.975, n-1) s/√n]; n=1: one seed, no interval"

    head = f"| {level_name} | seeds | gap loss | gap acc | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |"
    lines = [f"final values, {ci}", "", head, "|" + " --- |" * (4 + len(layer_names))]
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        n_div = sum(1 for s in summaries if s[level_name] == lv and s["diverged"])
        cells = [
            plots.level_label(lv),
            f"{len(ss)}" + (f" ({n_div} diverged)" if n_div else ""),
            interval_cell(_values(ss, "final/gap_loss")),
            interval_cell(_values(ss, "final/gap_accuracy")),
        ]
        cells += [interval_cell(_values(ss, f"final/{estimator}/h_x_given_t/{l}")) for l in layer_names]
        lines.append("| " + " | ".join(cells) + " |")
    level = next((s["matched/train_loss_level"] for s in summaries if "matched/train_loss_level" in s), None)
    if level is not None:
        lines += [
            "",
            f"at matched training loss (first evaluation with train loss <= {level:.4f}, reached by every member), {ci}",
            "",
            f"| {level_name} | step | gap loss | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |",
            "|" + " --- |" * (3 + len(layer_names)),
        ]
        for lv in levels:
            ss = [s for s in summaries if s[level_name] == lv and "matched/step" in s]
            cells = [plots.level_label(lv), interval_cell(_values(ss, "matched/step"), 0), interval_cell(_values(ss, "matched/gap_loss"))]
            cells += [interval_cell(_values(ss, f"matched/{estimator}/h_x_given_t/{l}")) for l in layer_names]
            lines.append("| " + " | ".join(cells) + " |")
    if len(levels) > 1:
        ref = reference_level(list(dict.fromkeys(s[level_name] for s in summaries)), level_name)
        lines += [
            "",
            f"paired difference vs reference {level_name}={plots.level_label(ref)} at the end of training: members with the "
            "same seed paired, level minus reference, mean [95% paired t-interval] and the paired t-test's two-sided p-value",
            "",
            f"| {level_name} | pairs | Δ gap loss | Δ gap acc | " + " | ".join(f"Δ H(X|T) {l}" for l in layer_names) + " |",
            "|" + " --- |" * (4 + len(layer_names)),
        ]
        for lv in levels:
            if lv == ref:
                continue
            keys = ["final/gap_loss", "final/gap_accuracy"] + [f"final/{estimator}/h_x_given_t/{l}" for l in layer_names]
            pairs = [paired_by_seed(summaries, level_name, lv, ref, k) for k in keys]
            lines.append("| " + " | ".join([plots.level_label(lv), str(len(pairs[0][0]))] + [paired_cell(a, b) for a, b in pairs]) + " |")
    lines += bounds_table(summaries, level_name)
    for est in _trajectory_estimators(summaries) if trajectories is None else trajectories:
        lines += [""] + _trajectory_table(summaries, layer_names, level_name, est)
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
    [95% t-interval over seeds]); ``[]`` when the job recorded none. The noisy-iterative and DP
    bounds bound the *expected* gap (compare with the gap's mean); PAC-Bayes bounds the test error
    of the stochastic network Q (compare with "Q test error")."""
    cols = [(k, h) for k, h in BOUND_COLUMNS if k == "final/gap_accuracy" or any(k in s for s in summaries)]
    if len(cols) < 2:
        return []
    levels = _levels(summaries, level_name)
    lines = [
        "",
        "generalization bounds at the end of training (ib_jax.bounds), mean [95% t-interval over seeds]; "
        "the noisy-iterative and DP bounds hold for the expected gap, PAC-Bayes for the stochastic network Q's test error; "
        "an infinite bound (no noise) has no finite value to show",
        "",
        f"| {level_name} | " + " | ".join(h for _, h in cols) + " |",
        "|" + " --- |" * (1 + len(cols)),
    ]
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        lines.append("| " + " | ".join([plots.level_label(lv)] + [_bound_cell(_values(ss, k)) for k, _ in cols]) + " |")
    return lines


def _bound_cell(v) -> str:
    """:func:`interval_cell`, in 3 significant digits for values beyond 1000 (epsilons, vacuous bounds)."""
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if len(v) == 0 or np.max(np.abs(v)) < 1e3:
        return interval_cell(v)
    if len(v) == 1:
        return f"{v[0]:.3g} (n=1)"
    m, lo, hi = (float(x) for x in t_interval(v, conf=CONF))
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


# --------------------------------------------------------------- the IB bound


def frontier_applies(kind: str | None) -> bool:
    """The data set's registry entry says its inputs are discrete and few (``DatasetEntry.discrete``),
    X uniform over the rows: the exact frontier applies."""
    return kind is not None and kind in R.DATASETS and bool(getattr(R.DATASETS.get(kind), "discrete", False))


_FRONTIERS: dict[str, tuple[int, tuple[np.ndarray, np.ndarray]]] = {}  # content hash -> (distinct rows, curve)


def ib_frontier_for(
    dataset, *, kind: str | None = None, max_distinct: int = 4096, rows=None, n_info: int | None = None, info_seed: int = 0
):
    """The exact information-bottleneck frontier of a data set with few discrete inputs, or None.

    p(x, y): X uniform over the data set's rows (``dataset.x_all``, or ``x_all[rows]`` for an
    information subset), Y its label; duplicate rows are merged into one input x with p(x)
    proportional to its count (and p(y|x) the label frequencies among its copies). The frontier
    F(r) = max {I(T;Y) : I(X;T) <= r} (Tishby, Pereira & Bialek 1999) is traced by
    :func:`ib_jax.estimators.ib_bound.ib_frontier`, in bits, and extended flat from its last
    vertex to r = H(X) (F is nondecreasing and reaches I(X;Y)), so it spans the I(X;T) axis.
    No representation T of X can lie above it: drawn on the information plane it bounds every
    layer (estimates above it are estimator bias, e.g. binning on a subset).

    Args:
      dataset: a :class:`ib_jax.data.Dataset`.
      kind: the ``dataset.name`` the job used (npz sets are named after their file); default
        ``dataset.name``. Only data sets registered as discrete qualify (``tishby12``, ``idnns``, ``npz``).
      max_distinct: the most distinct input rows for which it is computed.
      rows: optional indices into ``x_all`` (the information set).
      n_info, info_seed: or the information set of a job (``estimator.n_info``, ``estimator.info_seed``):
        the same rows the estimators see (all rows when ``n_info`` >= their number), so the
        bound's H(X) = log2 n matches the estimates' axis.

    Returns:
      ``(i_xt, i_ty)`` float64 arrays (the curve's vertices, increasing I(X;T)), or None when the
      data set does not qualify. Cached in-process by the content of (x, y): for tishby12 it
      costs about 0.4 s once (4096 inputs merge into 2 groups of equal p(y|x)).
    """
    kind = kind or getattr(dataset, "name", None)
    if not frontier_applies(kind):
        return None
    x = np.asarray(dataset.x_all)
    y = np.asarray(dataset.y_all)
    if rows is None and n_info is not None and n_info < len(y):
        rows = information_subset(len(y), int(n_info), int(info_seed))
    if rows is not None:
        x, y = x[np.asarray(rows)], y[np.asarray(rows)]
    x = x.reshape(len(x), -1)
    h = hashlib.sha256()
    for a in (x, y):
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()
    if key in _FRONTIERS:
        n_distinct, curve = _FRONTIERS[key]
        return curve if n_distinct <= max_distinct else None
    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    if len(distinct) > max_distinct:
        return None
    n_classes = int(max(getattr(dataset, "n_classes", 0), int(y.max()) + 1))
    p = np.zeros((len(distinct), n_classes))
    np.add.at(p, (np.asarray(inverse).ravel(), y.astype(np.int64)), 1.0)
    f = ib_frontier(p)
    fx, fy = np.asarray(f["frontier_i_xt"], float), np.asarray(f["frontier_i_ty"], float)
    if f["h_x"] > fx[-1]:
        fx, fy = np.append(fx, f["h_x"]), np.append(fy, fy[-1])
    _FRONTIERS[key] = (len(distinct), (fx, fy))
    return fx, fy
