"""Figures of a population run, drawn on :class:`matplotlib.figure.Figure` objects.

Nothing here touches matplotlib's global state: no backend switch, no pyplot (a notebook that
imports this module keeps its backend). Every figure is saved in each of the requested formats
(``plots.formats``: png, pdf, svg) at ``plots.dpi``; SVG keeps its text as text.

Inputs are the arrays of :class:`ib_jax.train.PopulationResult` (as read back by
``ib_jax.job.rows.rows_to_arrays``): metrics of shape ``(P, n_evals)`` or ``(P, n_evals, L)``, the
member list (dicts with ``member``, ``level``, ``seed``) and the steps. Members sharing a noise
level are averaged over seeds; bands and error bars are the tables' interval, the 95% Student-t
interval of the mean over seeds (:func:`ib_jax.report.stats.t_interval`), and say so in the figure.

The level-comparison figure and the one entry point of a job, :func:`ib_jax.report.figures.job_figures`,
are in :mod:`ib_jax.report.figures`.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from ib_jax import registry as R
from ib_jax.report.stats import t_interval

__all__ = [
    "FORMATS",
    "CONF",
    "check_plots",
    "plot_formats",
    "save_figure",
    "select_estimator",
    "describe",
    "level_label",
    "level_positions",
    "set_level_axis",
    "band_label",
    "seed_interval",
    "wrap_title",
    "by_level",
    "seeds_text",
    "steps_axis",
    "information_planes",
    "conditional_entropy_vs_step",
    "draw_conditional_entropy_vs_step",
    "gap_vs_level",
    "draw_gap_vs_level",
    "bounds_vs_level",
]

MARKERS = "os^vD<>phX*"
FORMATS = ("png", "pdf", "svg")  # what plots.formats may name
CONF = 0.95  # the tables' interval: 95% Student-t over seeds
# kind-specific options of the built-in noise kinds (NoiseConf fields), named in titles
KIND_OPTIONS = {
    "isotropic": ("scope",),
    "anticorrelated": ("scope",),
    "cone": ("mode", "scope", "preserve_norm"),
    "heavy_tailed": ("alpha", "scope"),
    "multiplicative": ("variant",),
    "dp_sgd": ("clip",),
}
# options named only when they differ from their default (the default is said by omission)
QUIET_DEFAULTS = {"scope": "global", "preserve_norm": False}


# ------------------------------------------------------------------ formats, saving, estimator


def plot_formats(formats) -> tuple[str, ...]:
    """``plots.formats`` normalized (lower case, each once, in order); ValueError naming the key
    for an empty list or a format outside :data:`FORMATS`."""
    if isinstance(formats, str):
        formats = (formats,)
    out = []
    for f in formats or ():
        name = str(f).lower().lstrip(".")
        if name not in FORMATS:
            raise ValueError(f"plots.formats: unknown format {f!r}; choose among {list(FORMATS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"plots.formats must name at least one format among {list(FORMATS)}, got {list(formats or ())}")
    return tuple(out)


def check_plots(cfg) -> None:
    """Validation of ``plots.*`` (before any compute): known formats, a positive dpi, and an
    estimator the job computes. Raises ValueError naming the key."""
    p = cfg.plots
    plot_formats(p.formats)
    if not isinstance(p.dpi, int) or isinstance(p.dpi, bool) or p.dpi <= 0:
        raise ValueError(f"plots.dpi must be a positive integer, got {p.dpi!r}")
    names = tuple(cfg.estimator.names)
    if p.estimator is not None and p.estimator not in names:
        raise ValueError(
            f"plots.estimator={p.estimator!r} is not among estimator.names {list(names)}; list it there or leave plots.estimator null"
        )


def save_figure(fig: Figure, out_dir: str, stem: str, formats=("png",), dpi: int = 150) -> list[str]:
    """``fig`` as ``out_dir/stem.<format>`` for each format (PNG at ``dpi``); the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    # local rc: SVG text stays searchable text, PDF embeds TrueType; restored on exit
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        for fmt in plot_formats(formats):
            path = os.path.join(out_dir, f"{stem}.{fmt}")
            fig.savefig(path, format=fmt, dpi=dpi)
            paths.append(path)
    return paths


def select_estimator(names: Sequence[str], available, requested: str | None = None) -> str | None:
    """The estimator a job's figures show: ``requested`` (``plots.estimator``) when given, else the
    first binning estimator listed, else the first with I(X;T) and I(T;Y) in ``available`` (a
    mapping or set of ``"<estimator>/<quantity>"`` keys), else the first listed (which may still
    have H(X|T)); None without estimators."""
    names = list(names)
    if requested is not None:
        return requested
    return (
        next((e for e in names if e.startswith("binning")), None)
        or next((e for e in names if f"{e}/i_xt" in available and f"{e}/i_ty" in available), None)
        or (names[0] if names else None)
    )


# ------------------------------------------------------------------ titles


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _noise_text(n) -> list[str]:
    kind = n.kind
    if kind == "none":
        return ["no noise"]
    parts = [f"noise={kind}"]
    for opt in KIND_OPTIONS.get(kind, ()):
        v = getattr(n, opt, None)
        if v is None or QUIET_DEFAULTS.get(opt, object()) == v:
            continue
        parts.append("preserve norm" if opt == "preserve_norm" else f"{opt}={_g(v)}")
    # kinds that perturb the mini-batch (label, multiplicative) have no place in the optimizer chain
    entry = R.NOISE.get(kind) if kind in R.NOISE else None
    if entry is None or getattr(entry, "transform", None) is not None:
        parts.append(f"at the {getattr(n, 'position', 'gradient')}")
    return [" ".join(parts)]


def _schedule_text(s) -> str:
    params = getattr(s, "params", None) or {}
    text = f"schedule {s.kind}" + (f"({', '.join(f'{k}={_g(v)}' for k, v in sorted(params.items()))})" if params else "")
    if getattr(s, "normalize", None):
        text += f", normalize={s.normalize}"
    return text


def _estimator_text(cfg, estimator: str) -> str:
    """The estimator and its settings, and which information set when it is not train + test pooled."""
    base, _, split = estimator.partition("@")
    split = split or (cfg.estimator.info_split if cfg.estimator.info_split in ("train", "test") else "")
    return _estimator_settings(cfg, base) + (f" on the {split} information set" if split else "")


def _estimator_settings(cfg, estimator: str) -> str:
    e = cfg.estimator
    b = e.binning
    bins = f"width {b.bin_width:g}" if b.bin_width else f"{b.n_bins} bins"
    if estimator == "binning":
        rng = f"[{b.lo:g}, {b.hi:g}]" if b.lo is not None and b.hi is not None else f"per-evaluation min-max range per {b.data_range}"
        return f"binning {bins} {rng}" + (" Miller-Madow" if b.miller_madow else "")
    if estimator == "binning_quantile":
        return f"quantile binning {bins}"
    extra = {
        "knn": lambda: f"k={e.knn.k}",
        "kde": lambda: f"noise var {e.kde.noise_var:g}",
        "channel": lambda: f"weight snr {e.channel.snr:g}, {e.channel.samples} samples",
        "sp": lambda: f"{e.sp.replicas} replicas",
    }.get(estimator)
    return f"{estimator} {extra()}" if extra else estimator


def describe(cfg, estimator: str | None = None) -> str:
    """One line naming every setting of a job that a sweep may vary: data set, model (activation,
    dropout, batch norm, layer noise, quantization), optimizer (name, learning rate, batch size,
    momentum, clipping, steps), the noise kind with its position and kind-specific options, the
    schedule with its parameters, and the estimator. Figures wrap it (:func:`wrap_title`)."""
    m = cfg.model
    if m.kind == "mlp":
        arch = "mlp " + "-".join(str(w) for w in m.widths)
    elif m.kind.startswith("cnn"):
        arch = f"{m.kind} conv {'-'.join(str(c) for c in m.conv.channels)}"
    else:
        arch = m.kind
    model = [cfg.dataset.name, f"{arch} {m.activation}"]
    if m.dropout:
        model.append(f"dropout {m.dropout:g}")
    if m.batch_norm:
        model.append("batch norm")
    if m.layer_noise > 0:
        model.append(f"layer noise {m.layer_noise:g}")
    if m.quantize_bits:
        model.append(f"{m.quantize_bits}-bit")
    o = cfg.optimizer
    opt = [f"{o.name} lr {o.learning_rate:g}", "full batch" if o.batch_size == 0 else f"batch size {o.batch_size}"]
    if o.momentum is not None:
        opt.append(f"momentum {o.momentum:g}")
    if o.clip_norm is not None:
        opt.append(f"clip norm {o.clip_norm:g}")
    if getattr(cfg, "steps", None):
        opt.append(f"{cfg.steps} steps")
    groups = [model, opt, _noise_text(cfg.noise) + [_schedule_text(cfg.schedule)]]
    if estimator:
        groups.append([_estimator_text(cfg, estimator)])
    return "; ".join(", ".join(g) for g in groups)


def wrap_title(text: str, width: int = 110) -> str:
    """``text`` wrapped to ``width`` characters a line, its own line breaks kept."""
    return "\n".join(textwrap.fill(line, width) if line else "" for line in str(text).split("\n"))


# ------------------------------------------------------------------ levels and intervals


def level_label(v: float) -> str:
    return "inf" if np.isinf(v) else f"{v:g}"


def level_positions(levels: Sequence[float]) -> np.ndarray:
    """x positions on a log axis: inf one decade beyond the largest finite level, 0 one decade
    below the smallest positive one (each then has its own tick, see :func:`set_level_axis`)."""
    pos = [float(v) for v in levels if np.isfinite(v) and v > 0]
    top = max(pos) * 10 if pos else 10.0
    bottom = min(pos) / 10 if pos else 0.1
    return np.array([top if np.isinf(v) else (bottom if v <= 0 else float(v)) for v in levels], float)


def set_level_axis(ax, levels: Sequence[float], name: str) -> np.ndarray:
    """A log x axis with one labelled tick per level ("inf" at inf's position, "0" at 0's) and no
    minor ticks; the scale is set before the ticks (setting it after would drop the labels).
    Returns the positions (:func:`level_positions`)."""
    levels = sorted(set(float(v) for v in levels), key=lambda v: (np.isinf(v), v))
    xs = level_positions(levels)
    ax.set_xscale("log")
    if len(xs):
        ax.set_xticks(xs, [level_label(v) for v in levels])
        ax.set_xlim(xs.min() / 2, xs.max() * 2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(name)
    return xs


def band_label(n: int | str | None = None, conf: float = CONF, what: str = "band") -> str:
    """The legend text of an interval: ``band: 95% t-interval over 3 seeds``."""
    over = f"over {n} seeds" if n is not None else "over seeds"
    return f"{what}: {conf:.0%} t-interval {over}"


def seed_interval(x, axis: int = 0, conf: float = CONF):
    """``(mean, lo, hi)`` of ``x`` over ``axis`` (seeds): the t-interval, NaN bounds below two
    finite values; infinite values are left out like NaNs."""
    x = np.asarray(x, np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        iv = t_interval(x, axis=axis, conf=conf)
    return np.asarray(iv.mean), np.asarray(iv.lo), np.asarray(iv.hi)


def by_level(members) -> dict[float, list[int]]:
    """``{level: [member index, ...]}``, levels ascending with inf last (every figure's order)."""
    groups: dict[float, list[int]] = {}
    for m in members:
        groups.setdefault(m["level"], []).append(m["member"])
    return dict(sorted(groups.items(), key=lambda kv: (np.isinf(kv[0]), kv[0])))


def seeds_text(groups) -> str:
    """How many seeds per level: ``3``, or ``2-3`` when levels differ."""
    ns = sorted({len(i) for i in groups.values()})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def steps_axis(ax):
    """Steps on a log-like axis that keeps step 0 at 0 (symlog, linear below 1)."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)


# ------------------------------------------------------------------ per-level information planes


def information_planes(
    metrics,
    steps,
    members,
    layer_names,
    out_dir,
    estimator="binning",
    level_name="snr",
    title="",
    frontier=None,
    *,
    ceiling: float | None = None,
    formats=("png",),
    dpi: int = 150,
) -> list[str]:
    """One figure per noise level: I(X;T) vs I(T;Y) of every layer, coloured by step (mean over seeds).

    ``ceiling``: the estimator's I(X;T) ceiling log2 n in bits, drawn dotted (labelled): a layer
    on it keeps every input apart, whatever training did (no evidence of compression).

    ``frontier``: optional ``(i_xt, i_ty)`` arrays in bits, the exact information-bottleneck
    bound of the data set (:func:`ib_jax.report.summary.ib_frontier_for`), drawn as a dashed curve
    labelled "IB bound": no layer's true (I(X;T), I(T;Y)) lies above it.
    """
    ix, iy = metrics.get(f"{estimator}/i_xt"), metrics.get(f"{estimator}/i_ty")
    if ix is None or iy is None:
        return []
    paths = []
    # step 0 keeps its own colour: a symmetric-log norm is linear below step 1
    norm = matplotlib.colors.SymLogNorm(linthresh=1.0, vmin=0, vmax=max(int(steps[-1]), 1))
    for level, idx in by_level(members).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            x = np.nanmean(ix[idx], axis=0)  # (E, L)
            y = np.nanmean(iy[idx], axis=0)
        if not (np.isfinite(x).any() and np.isfinite(y).any()):
            continue  # every member of this level diverged: nothing to draw
        fig = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = fig.add_subplot()
        if frontier is not None:
            fx, fy = (np.asarray(a, float) for a in frontier)
            ax.plot(fx, fy, color="k", ls="--", lw=1.0, zorder=0, label="IB bound")
        if ceiling is not None:
            ax.axvline(ceiling, color="0.5", ls=":", lw=1.0, zorder=0, label=f"ceiling log2 n = {ceiling:.3g}")
        sc = None
        for layer in range(x.shape[1]):
            ax.plot(x[:, layer], y[:, layer], color="0.8", lw=0.8, zorder=1)
            # layers told apart by marker (legend), not by labels that overlap where layers meet
            sc = ax.scatter(
                x[:, layer],
                y[:, layer],
                c=steps,
                cmap="viridis",
                norm=norm,
                s=16,
                zorder=2,
                marker=MARKERS[layer % len(MARKERS)],
                edgecolors="none",
                label=layer_names[layer],
            )
        if sc is not None:
            fig.colorbar(sc, ax=ax, label="step")
        leg = ax.legend(fontsize=7, loc="lower right", title="layer", title_fontsize=7, markerscale=1.2)
        for h in leg.legend_handles:
            if not isinstance(h, Line2D):  # layer markers in grey; the IB bound keeps its dashed black
                h.set_array(None)  # else the step colormap overrides the grey
                h.set_color("0.3")
        ax.set_xlabel("I(X;T) [bits]")
        ax.set_ylabel("I(T;Y) [bits]")
        ax.set_title(
            wrap_title(f"information plane ({estimator}), {level_name}={level_label(level)}, mean over {len(idx)} seeds\n{title}", 90),
            fontsize=8,
        )
        paths += save_figure(fig, out_dir, f"infoplane_{level_name}_{level_label(level)}", formats, dpi)
    return paths


# ------------------------------------------------------------------ H(X|T) against step


def draw_conditional_entropy_vs_step(
    metrics, steps, members, layer_names, estimator="binning", level_name="snr", title=""
) -> Figure | None:
    """H(X|T) against step, one panel per layer, one line per noise level, band: the 95%
    t-interval over seeds; None without finite H(X|T)."""
    h = metrics.get(f"{estimator}/h_x_given_t")
    if h is None or not np.isfinite(h).any():
        return None
    n_layers = h.shape[-1]
    cols = min(n_layers, 3)
    rows = -(-n_layers // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows + 1.2), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    x = np.asarray(steps)
    groups = by_level(members)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(len(groups), 1)))
    band_alpha = 0.2 if len(groups) <= 3 else 0.08  # many levels: faint bands, the means stay readable
    for layer in range(n_layers):
        ax = axes[layer // cols][layer % cols]
        for color, (level, idx) in zip(colors, groups.items()):
            mean, lo, hi = seed_interval(h[idx, :, layer])
            ax.plot(x, mean, color=color, lw=1.4, label=f"{level_name}={level_label(level)} (n={len(idx)})")
            if len(idx) > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=band_alpha, lw=0)
        steps_axis(ax)
        ax.set_title(f"{layer_names[layer]}")
        ax.set_xlabel("step")
        ax.set_ylabel("H(X|T) [bits]")
    for k in range(n_layers, rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(Patch(color="0.5", alpha=0.3, lw=0))
    labels.append(band_label(seeds_text(groups)))
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=7)
    fig.suptitle(wrap_title(f"H(X|T) per layer ({estimator}; {band_label(seeds_text(groups))})\n{title}", 40 * cols), fontsize=9)
    return fig


def conditional_entropy_vs_step(
    metrics, steps, members, layer_names, out_dir, estimator="binning", level_name="snr", title="", *, formats=("png",), dpi: int = 150
) -> list[str]:
    """:func:`draw_conditional_entropy_vs_step` saved as ``h_x_given_t_vs_step.<format>``."""
    fig = draw_conditional_entropy_vs_step(metrics, steps, members, layer_names, estimator, level_name, title)
    return [] if fig is None else save_figure(fig, out_dir, "h_x_given_t_vs_step", formats, dpi)


# ------------------------------------------------------------------ gap against level


def draw_gap_vs_level(metrics, members, level_name="snr", title="") -> Figure:
    """Final generalization gap (loss and accuracy) against the noise level: mean and 95%
    t-interval over seeds (error bars), each seed a grey dot."""
    groups = by_level(members)
    levels = list(groups)
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, name, label in [(axes[0], "gap_loss", "test - train loss"), (axes[1], "gap_accuracy", "train - test accuracy")]:
        xs = set_level_axis(ax, levels, level_name)
        ax.set_ylabel(label)
        if name not in metrics or not np.isfinite(metrics[name][:, -1]).any():
            ax.text(0.5, 0.5, "no finite values (diverged)", ha="center", va="center", transform=ax.transAxes)
            continue
        final = np.asarray(metrics[name][:, -1], float)
        ivs = [seed_interval(final[idx]) for idx in groups.values()]
        mean = np.array([float(m) for m, _, _ in ivs])
        lo = np.array([float(lo) for _, lo, _ in ivs])
        hi = np.array([float(hi) for _, _, hi in ivs])
        yerr = np.nan_to_num(np.stack([mean - lo, hi - mean]), nan=0.0)  # one seed: no bar
        ax.errorbar(xs, mean, yerr=yerr, marker="o", capsize=3, label=f"mean, {band_label(seeds_text(groups), what='bars')}")
        for x, idx in zip(xs, groups.values()):
            ax.scatter(np.full(len(idx), x), final[idx], color="0.5", s=8, zorder=0, label="one seed" if x == xs[0] else None)
    handles, labels = axes[1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(wrap_title(f"generalization gap at the end of training\n{title}", 110), fontsize=9)
    return fig


def gap_vs_level(metrics, members, out_dir, level_name="snr", title="", *, formats=("png",), dpi: int = 150) -> list[str]:
    """:func:`draw_gap_vs_level` saved as ``gap_vs_<level_name>.<format>``."""
    return save_figure(draw_gap_vs_level(metrics, members, level_name, title), out_dir, f"gap_vs_{level_name}", formats, dpi)


# ------------------------------------------------------------------ bounds against level

# the bound columns drawn beside the measured values (recorded as bound/<quantity>, see ib_jax.bounds)
TEST_ERROR_CURVES = (
    ("test_error", "measured: test error of W_t"),
    ("bound/pac_bayes_test_error", "measured: test error of the PAC-Bayes posterior Q"),
    ("bound/pac_bayes", "bound: PAC-Bayes on Q's test error"),
)
GAP_CURVES = (
    ("gap_accuracy", "measured: gap of W_t (test - train error)"),
    ("bound/noisy_iterative_gap", "bound: noisy-iterative (Pensia et al.), on E[gap]"),
    ("bound/dp_gap", "bound: differential privacy, on E[gap]"),
    ("bound/pac_bayes_gap", "bound: PAC-Bayes minus Q's train error"),
)


def _final_by_level(metrics, groups, name):
    if name == "test_error":
        if "test_accuracy" not in metrics:
            return None
        final = 1.0 - metrics["test_accuracy"][:, -1]
    elif name in metrics:
        final = metrics[name][:, -1]
    else:
        return None
    return [np.asarray(final[idx], np.float64) for idx in groups.values()]


def bounds_vs_level(
    metrics, members, out_dir, level_name="snr", title="", conf: float = CONF, *, formats=("png",), dpi: int = 150
) -> list[str]:
    """Measured test error and gap against the noise level beside every recorded bound: mean and
    Student-t ``conf`` interval over seeds (the tables' interval), one position per level (a level
    of 0 or inf has its own tick). Infinite bounds are left out and named in the legend. Returns
    ``[]`` when the job recorded no bound."""
    if not any(k.startswith("bound/") for k in metrics):
        return []
    groups = by_level(members)
    levels = list(groups)
    xs = np.arange(len(levels), dtype=float)
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, curves, ylabel in ((axes[0], TEST_ERROR_CURVES, "0-1 error"), (axes[1], GAP_CURVES, "0-1 gap")):
        for j, (name, label) in enumerate(curves):
            vals = _final_by_level(metrics, groups, name)
            if vals is None:
                continue
            means, lo, hi, inf_at = [], [], [], []
            for lv, v in zip(levels, vals):
                if np.isinf(v).any():
                    inf_at.append(level_label(lv))
                    v = np.full_like(v, np.nan)
                if np.isfinite(v).sum() >= 2:
                    iv = t_interval(v[np.isfinite(v)], conf=conf)
                    means.append(float(iv.mean)), lo.append(float(iv.lo)), hi.append(float(iv.hi))
                else:
                    m = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
                    means.append(m), lo.append(m), hi.append(m)
            if not np.isfinite(means).any():
                continue
            means, lo, hi = np.array(means), np.array(lo), np.array(hi)
            suffix = f" (inf at {level_name}={', '.join(inf_at)})" if inf_at else ""
            style = "-" if label.startswith("measured") else "--"
            ax.plot(xs, means, style, marker=MARKERS[j % len(MARKERS)], label=label + suffix)
            ax.fill_between(xs, lo, hi, alpha=0.2)
        ax.set_xticks(xs, [level_label(v) for v in levels])
        ax.set_xlabel(level_name)
        ax.set_ylabel(ylabel)
        if ax is axes[1]:
            ax.set_yscale("symlog", linthresh=0.01)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(color="0.5", alpha=0.3, lw=0))
        labels.append(band_label(seeds_text(groups), conf))
        ax.legend(handles, labels, fontsize=6, loc="best")
    fig.suptitle(
        wrap_title(
            f"measured gap and generalization bounds at the end of training ({band_label(seeds_text(groups), conf, 'bands')})\n{title}", 120
        ),
        fontsize=9,
    )
    return save_figure(fig, out_dir, f"bounds_vs_{level_name}", formats, dpi)
