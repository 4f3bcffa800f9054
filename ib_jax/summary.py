"""Per-member summaries and the job's markdown table (final values, matched-loss values).

Every mean over seeds is reported with its 95% confidence interval (Student t over seeds,
:func:`ib_jax.stats.t_interval` when available) so two noise levels are not compared by
overlapping means alone.
"""

from __future__ import annotations

import math

import numpy as np

from ib_jax import plots, tracking

__all__ = ["matched_loss_index", "summarize", "summary_table"]


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


def summarize(steps, metrics, members, layer_names, diverged, diverged_step, level_name) -> list[dict]:
    matched_loss, matched = matched_loss_index(metrics, diverged)
    out = []
    for m in members:
        i = m["member"]
        s = {**m, level_name: m["level"], "diverged": bool(diverged[i]), "diverged_step": int(diverged_step[i]) if diverged[i] else None,
             "final_step": int(steps[-1])}
        for name, arr in metrics.items():
            if arr.ndim == 2:
                s[f"final/{name}"] = tracking.finite_or_none(arr[i, -1]) if name != "step" else None
            else:
                for layer, v in zip(layer_names, arr[i, -1]):
                    s[f"final/{name}/{layer}"] = tracking.finite_or_none(v)
        j = matched[i]
        if j >= 0:
            s["matched/train_loss_level"] = matched_loss
            s["matched/step"] = int(steps[j])
            for name, arr in metrics.items():
                if name == "step":
                    continue
                if arr.ndim == 2:
                    s[f"matched/{name}"] = tracking.finite_or_none(arr[i, j])
                else:
                    for layer, v in zip(layer_names, arr[i, j]):
                        s[f"matched/{name}/{layer}"] = tracking.finite_or_none(v)
        s.pop("level")
        out.append({k: v for k, v in s.items() if v is not None or k in ("diverged_step",)})
    return out


def summary_table(summaries, layer_names, level_name, estimator="binning") -> str:
    """Markdown: per noise level, mean +- std over seeds of the final gaps and H(X|T) per layer,
    then H(X|T) per layer at matched training loss (claim 1 of the brief)."""
    levels = sorted({s[level_name] for s in summaries}, key=lambda v: (not math.isinf(v), -v))  # members' own float32 levels

    def ms(ss, key):
        v = np.array([s.get(key, np.nan) for s in ss], float)
        return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if len(v) and np.isfinite(v).any() else "n/a"

    head = f"| {level_name} | seeds | gap loss | gap acc | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |"
    lines = ["final values", "", head, "|" + " --- |" * (4 + len(layer_names))]
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        n_div = sum(1 for s in summaries if s[level_name] == lv and s["diverged"])
        cells = [plots.level_label(lv), f"{len(ss)}" + (f" ({n_div} diverged)" if n_div else ""), ms(ss, "final/gap_loss"), ms(ss, "final/gap_accuracy")]
        cells += [ms(ss, f"final/{estimator}/h_x_given_t/{l}") for l in layer_names]
        lines.append("| " + " | ".join(cells) + " |")
    level = next((s["matched/train_loss_level"] for s in summaries if "matched/train_loss_level" in s), None)
    if level is not None:
        lines += ["", f"at matched training loss (first evaluation with train loss <= {level:.4f}, reached by every member)", "",
                  f"| {level_name} | step | gap loss | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |",
                  "|" + " --- |" * (3 + len(layer_names))]
        for lv in levels:
            ss = [s for s in summaries if s[level_name] == lv and "matched/step" in s]
            cells = [plots.level_label(lv), ms(ss, "matched/step"), ms(ss, "matched/gap_loss")]
            cells += [ms(ss, f"matched/{estimator}/h_x_given_t/{l}") for l in layer_names]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


