"""A job's figures from one call (:func:`job_figures`), the level-comparison figure, and the
cross-job figure of ``ib-jax aggregate`` (:func:`settings_figures`).

Object-oriented matplotlib only (:class:`matplotlib.figure.Figure`), like :mod:`ib_jax.report.plots`:
no backend switch, no pyplot.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ib_jax.data.information import info_suffixes
from ib_jax.report import plots as P

__all__ = [
    "job_figures",
    "draw_level_comparison",
    "level_comparison",
    "split_setting",
    "setting_labels",
    "draw_settings",
    "settings_figures",
]


# ------------------------------------------------------------------ level comparison


def _panel_grid(fig: Figure, n: int, max_cols: int = 4):
    cols = min(max(n, 1), max_cols)
    rows = -(-max(n, 1) // cols)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    flat = [axes[k // cols][k % cols] for k in range(rows * cols)]
    for ax in flat[n:]:
        ax.axis("off")
    return flat[:n], rows, cols


def _limits(*arrays, pad: float = 0.05):
    vals = np.concatenate([np.asarray(a, float).ravel() for a in arrays if a is not None])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def draw_level_comparison(
    metrics, steps, members, layer_names, estimator, level_name="snr", title="", frontier=None, ceiling=None
) -> Figure | None:
    """Small multiples, one panel per noise level, the same axes limits in every panel: the
    information plane of every layer (mean over seeds; open marker: first evaluation, filled: last)
    when ``estimator`` has I(X;T) and I(T;Y), else H(X|T) of every layer against step (band: the
    95% t-interval over seeds). ``ceiling``: the estimator's I(X;T) ceiling log2 n (bits), a dotted
    vertical line on the planes (values on it keep every input apart: no evidence of compression).
    None when the estimator recorded neither."""
    ix, iy = metrics.get(f"{estimator}/i_xt"), metrics.get(f"{estimator}/i_ty")
    h = metrics.get(f"{estimator}/h_x_given_t")
    plane = ix is not None and iy is not None
    if not plane and h is None:
        return None
    groups = P.by_level(members)
    n_layers = (ix if plane else h).shape[-1]
    colors = matplotlib.colormaps["tab10"](np.arange(n_layers) % 10)
    n = len(groups)
    cols = min(max(n, 1), 4)
    fig = Figure(figsize=(3.4 * cols + 1.6, 3.0 * -(-max(n, 1) // cols) + 1.2), layout="constrained")
    axes, _, _ = _panel_grid(fig, n)
    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for level, idx in groups.items():
            means[level] = (np.nanmean(ix[idx], axis=0), np.nanmean(iy[idx], axis=0)) if plane else P.seed_interval(h[idx])
    fx = fy = None
    if plane and frontier is not None:
        fx, fy = (np.asarray(a, float) for a in frontier)
    x_all = [m[0] for m in means.values()] if plane else [np.asarray(steps, float)]
    y_all = [m[1] for m in means.values()] if plane else [a for m in means.values() for a in m]
    xlim, ylim = _limits(*x_all, fx), _limits(*y_all, fy)
    for ax, (level, idx) in zip(axes, groups.items()):
        ax.set_title(f"{level_name}={P.level_label(level)} (n={len(idx)})", fontsize=8)
        if plane:
            x, y = means[level]
            if fx is not None:
                ax.plot(fx, fy, color="k", ls="--", lw=1.0, zorder=0)
            if ceiling is not None:
                ax.axvline(ceiling, color="0.5", ls=":", lw=1.0, zorder=0)
            for layer in range(n_layers):
                ok = np.isfinite(x[:, layer]) & np.isfinite(y[:, layer])
                if not ok.any():
                    continue
                xs, ys = x[ok, layer], y[ok, layer]
                ax.plot(xs, ys, color=colors[layer], lw=1.0, marker=".", ms=3)
                ax.plot(xs[:1], ys[:1], ls="none", marker="o", mfc="none", mec=colors[layer], ms=6)
                ax.plot(xs[-1:], ys[-1:], ls="none", marker="o", color=colors[layer], ms=6)
            ax.set_xlabel("I(X;T) [bits]")
            ax.set_ylabel("I(T;Y) [bits]")
        else:
            mean, lo, hi = means[level]
            for layer in range(n_layers):
                ax.plot(steps, mean[:, layer], color=colors[layer], lw=1.2)
                if len(idx) > 1:
                    ax.fill_between(steps, lo[:, layer], hi[:, layer], color=colors[layer], alpha=0.15, lw=0)
            P.steps_axis(ax)
            ax.set_xlabel("step")
            ax.set_ylabel("H(X|T) [bits]")
        if plane and not np.isfinite(means[level][0]).any():
            ax.text(0.5, 0.5, "diverged: nothing to draw", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        if xlim is not None and plane:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.label_outer()
    handles = [Line2D([], [], color=colors[k], lw=1.5) for k in range(n_layers)]
    labels = list(layer_names[:n_layers])
    if plane:
        handles += [
            Line2D([], [], ls="none", marker="o", mfc="none", mec="0.3"),
            Line2D([], [], ls="none", marker="o", color="0.3"),
        ]
        labels += ["first evaluation", "last evaluation"]
        if fx is not None:
            handles.append(Line2D([], [], color="k", ls="--"))
            labels.append("IB bound")
        if ceiling is not None:
            handles.append(Line2D([], [], color="0.5", ls=":"))
            labels.append(f"ceiling log2 n = {ceiling:.3g}")
        what = f"information plane per noise level ({estimator}; mean over {P.seeds_text(groups)} seeds; same axes in every panel)"
    else:
        handles.append(Patch(color="0.5", alpha=0.3, lw=0))
        labels.append(P.band_label(P.seeds_text(groups)))
        what = f"H(X|T) per noise level ({estimator}; {P.band_label(P.seeds_text(groups))}; same axes in every panel)"
    fig.legend(handles, labels, loc="outside right center", fontsize=7, title="layer", title_fontsize=7)
    fig.suptitle(P.wrap_title(f"{what}\n{title}", 36 * cols + 20), fontsize=9)
    return fig


def level_comparison(
    metrics,
    steps,
    members,
    layer_names,
    out_dir,
    estimator,
    level_name="snr",
    title="",
    frontier=None,
    *,
    ceiling=None,
    formats=("png",),
    dpi=150,
) -> list[str]:
    """:func:`draw_level_comparison` saved as ``level_comparison.<format>``."""
    fig = draw_level_comparison(metrics, steps, members, layer_names, estimator, level_name, title, frontier, ceiling)
    return [] if fig is None else P.save_figure(fig, out_dir, "level_comparison", formats, dpi)


# ------------------------------------------------------------------ a job's figures


def job_figures(cfg, metrics, steps, members, layer_names, out_dir, level_name, frontier=None, ceilings=None, frontiers=None) -> list[str]:
    """Every figure of a finished job, in each of ``cfg.plots.formats`` (PNG at ``cfg.plots.dpi``),
    written to ``out_dir``; returns all paths written.

    The estimator is ``cfg.plots.estimator``, else :func:`ib_jax.report.plots.select_estimator`'s
    rule. Drawn: per level, the information plane (``infoplane_<level_name>_<level>``) when the
    estimator has I(X;T) and I(T;Y), with ``frontier`` (the data set's IB bound) dashed; H(X|T)
    against step (``h_x_given_t_vs_step``) when it has H(X|T); the level comparison
    (``level_comparison``); the gap against the level (``gap_vs_<level_name>``); the bounds against
    the level (``bounds_vs_<level_name>``) when bounds were recorded. Titles name the job's
    settings (:func:`ib_jax.report.plots.describe`); ``ceilings``
    (:func:`ib_jax.estimators.ceilings.ceilings`) draws the estimator's I(X;T) ceiling log2 n as a
    dotted vertical line on the planes. With ``estimator.info_split=both`` the estimator's figures
    are drawn for each information set, in ``out_dir/info_train`` and ``out_dir/info_test``
    (``frontiers``: the frontier of each set's rows by suffix, ``@train`` / ``@test``, over
    ``frontier``). Invalid ``plots.*`` raise ValueError
    (:func:`ib_jax.report.plots.check_plots`) before anything is drawn; a figure that fails is
    warned about and the others are still drawn.
    """
    P.check_plots(cfg)
    kw = {"formats": P.plot_formats(cfg.plots.formats), "dpi": int(cfg.plots.dpi)}
    draws = []
    # one set of estimator figures per information set: with estimator.info_split=both those of the
    # train set in out_dir/info_train and of the test set in out_dir/info_test
    base = P.select_estimator(cfg.estimator.names, {k.replace("@train/", "/"): v for k, v in metrics.items()}, cfg.plots.estimator)
    for suffix in info_suffixes(cfg) if base else ():
        where = os.path.join(out_dir, "info_" + suffix[1:]) if suffix else out_dir
        curve = (frontiers or {}).get(suffix, frontier)
        draws += _estimator_draws(cfg, metrics, steps, members, layer_names, where, base + suffix, level_name, curve, ceilings, kw)
    title = P.describe(cfg, base)
    draws += [
        ("gap against level", lambda: P.gap_vs_level(metrics, members, out_dir, level_name, title=title, **kw)),
        ("bounds against level", lambda: P.bounds_vs_level(metrics, members, out_dir, level_name, title=title, **kw)),
    ]
    paths = []
    for name, draw in draws:
        try:
            paths += draw()
        except Exception as e:  # noqa: BLE001 - one broken figure never costs the others
            warnings.warn(f"plots: {name}: {type(e).__name__}: {e}; the other figures are drawn", stacklevel=2)
    return paths


def _estimator_draws(cfg, metrics, steps, members, layer_names, out_dir, estimator, level_name, frontier, ceilings, kw) -> list:
    """(name, draw) of the figures of one estimator on one information set."""
    title = P.describe(cfg, estimator)
    ceiling = (ceilings or {}).get(estimator, {}).get("i_xt")
    return [
        (
            "information planes",
            lambda: P.information_planes(
                metrics,
                steps,
                members,
                layer_names,
                out_dir,
                estimator,
                level_name,
                title=title,
                frontier=frontier,
                ceiling=ceiling,
                **kw,
            ),
        ),
        (
            "H(X|T) against step",
            lambda: P.conditional_entropy_vs_step(metrics, steps, members, layer_names, out_dir, estimator, level_name, title=title, **kw),
        ),
        (
            "level comparison",
            lambda: level_comparison(
                metrics, steps, members, layer_names, out_dir, estimator, level_name, title, frontier, ceiling=ceiling, **kw
            ),
        ),
    ]


# ------------------------------------------------------------------ across jobs (ib-jax aggregate)


def split_setting(setting: str) -> list[str]:
    """A setting string (overrides joined by commas) back into its overrides: commas inside
    brackets or braces (``noise.snr=[inf,10]``) do not split."""
    out, depth, cur = [], 0, ""
    for ch in setting:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [o.strip() for o in out if o.strip() and o.strip() != "defaults"]


def _as_dict(setting: str) -> dict[str, str]:
    d = {}
    for o in split_setting(setting):
        key, _, value = o.partition("=")
        d[key.lstrip("+~")] = value if _ else "(deleted)" if key.startswith("~") else ""
    return d


def setting_labels(settings: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(common, labels)``: the overrides every setting shares, and for each setting a short
    label made of only the keys that differ between the settings (``noise=cone``); a key a
    setting leaves at its default reads ``key=(default)``. One setting: its label is "mean"."""
    settings = list(dict.fromkeys(settings))
    ds = {s: _as_dict(s) for s in settings}
    keys = list(dict.fromkeys(k for d in ds.values() for k in d))
    differ = [k for k in keys if len({ds[s].get(k) for s in settings}) > 1]
    common = [f"{k}={ds[settings[0]][k]}" for k in keys if k not in differ and settings]
    if len(settings) <= 1:
        return common, {s: "mean" for s in settings}
    labels = {s: ", ".join(f"{k}={ds[s].get(k, '(default)')}" for k in differ) for s in settings}
    return common, labels


QUANTITIES = (("gap_loss", "test - train loss"), ("gap_accuracy", "train - test accuracy"))


def _finite(r, key) -> bool:
    v = r.get(f"{key}_mean", np.nan)
    return isinstance(v, (int, float)) and np.isfinite(v)


def draw_settings(rows: Sequence[Mapping], layers: Sequence[str], title: str = "final values across jobs") -> Figure:
    """The cross-job figure: one block of panels per level name (snr, sigma, p: settings of
    different noise kinds never share an x axis), in each block one panel per quantity (final gap
    of loss and accuracy, H(X|T) per layer) with one curve per setting: mean and 95% t-interval
    over seeds against the level on a log axis ("inf" and "0" have their own labelled ticks).
    The figure's title names the overrides common to all settings, a block's title those common
    to its settings, the legend (below each block, off the data) only the keys that differ."""
    names = list(dict.fromkeys(r["level_name"] for r in rows))
    panels = list(QUANTITIES) + [(f"h_x_given_t_{l}", f"H(X|T) {l} [bits]") for l in layers]
    blocks = []
    for name in names:
        rs = [r for r in rows if r["level_name"] == name]
        keys = [(k, lab) for k, lab in panels if any(_finite(r, k) for r in rs)] or panels[:1]
        blocks.append((name, rs, keys))
    cols = min(3, max(len(k) for _, _, k in blocks))
    heights = [-(-len(k) // cols) * 3.0 + 1.3 for _, _, k in blocks]
    fig = Figure(figsize=(4.4 * cols, sum(heights) + 0.9), layout="constrained")
    subs = fig.subfigures(len(blocks), 1, squeeze=False, height_ratios=heights)[:, 0]
    all_common, _ = setting_labels([r["setting"] for r in rows])
    ests = sorted({r["estimator"] for r in rows if r.get("estimator")})
    for sub, (name, rs, keys) in zip(subs, blocks):
        jobs = list(dict.fromkeys(r["job_dir"] for r in rs))
        setting = {j: next(r["setting"] for r in rs if r["job_dir"] == j) for j in jobs}
        common, labels = setting_labels(list(setting.values()))
        label = {j: labels[setting[j]] for j in jobs}
        for j in jobs:  # two jobs with the same overrides (different configs): told apart by directory
            if list(label.values()).count(label[j]) > 1:
                label[j] = f"{label[j]} ({os.path.basename(os.path.normpath(j))})"
        nrows = -(-len(keys) // cols)
        axes = sub.subplots(nrows, cols, squeeze=False)
        flat = [axes[k // cols][k % cols] for k in range(nrows * cols)]
        levels = sorted({float(r["level"]) for r in rs}, key=lambda v: (np.isinf(v), v))
        for ax, (key, ylabel) in zip(flat, keys):
            pos = dict(zip(levels, P.set_level_axis(ax, levels, name)))
            ax.set_ylabel(ylabel, fontsize=8)
            for k, j in enumerate(jobs):
                pts = sorted((r for r in rs if r["job_dir"] == j and _finite(r, key)), key=lambda r: (np.isinf(r["level"]), r["level"]))
                if not pts:
                    continue
                xs = np.array([pos[float(r["level"])] for r in pts])
                mean = np.array([r[f"{key}_mean"] for r in pts], float)
                lo, hi = (np.array([r.get(f"{key}_{e}", np.nan) for r in pts], float) for e in ("lo", "hi"))
                yerr = np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0)  # one seed: no bar
                ax.errorbar(xs, mean, yerr=yerr, marker=P.MARKERS[k % len(P.MARKERS)], capsize=2, color=f"C{k % 10}", label=label[j])
        for ax in flat[len(keys) :]:
            ax.axis("off")
        handles, texts = [], []
        for ax in flat:
            for h, t in zip(*ax.get_legend_handles_labels()):
                if t not in texts:
                    handles.append(h), texts.append(t)
        if handles:
            sub.legend(handles, texts, loc="outside lower center", ncols=min(len(texts), 3), fontsize=7)
        own = [c for c in common if c not in all_common]
        sub.suptitle(P.wrap_title(f"noise level: {name}" + (f"; {', '.join(own)}" if own else ""), 45 * cols), fontsize=9)
    fig.suptitle(
        P.wrap_title(
            f"{title} (mean, error bars: {P.CONF:.0%} t-interval over seeds)\n"
            + (f"common to all settings: {', '.join(all_common)}" if all_common else "no override common to all settings")
            + (f"; H(X|T) by {', '.join(ests)}" if ests else ""),
            45 * cols,
        ),
        fontsize=10,
    )
    return fig


def settings_figures(rows, layers, out_dir, stem="aggregate", *, formats=("png",), dpi=150) -> list[str]:
    """:func:`draw_settings` saved as ``<stem>.<format>``; ``[]`` without rows."""
    if not rows:
        return []
    return P.save_figure(draw_settings(rows, layers), out_dir, stem, formats, dpi)
