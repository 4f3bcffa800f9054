"""PNG plots of a population run (matplotlib, Agg backend: no display needed).

Inputs are the arrays of :class:`ib_jax.train.PopulationResult`: metrics of
shape ``(P, n_evals)`` or ``(P, n_evals, L)``, the member list and steps.
Members sharing a noise level are averaged over seeds (spread shown).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ib_jax.report.stats import t_interval  # noqa: E402

__all__ = [
    "information_planes",
    "conditional_entropy_vs_step",
    "gap_vs_level",
    "bounds_vs_level",
    "level_label",
    "level_positions",
    "describe",
]

MARKERS = "os^vD<>phX*"


def describe(cfg, estimator: str | None) -> str:
    """Plot subtitle: data set, model and activation, estimator and its bin range."""
    m = cfg.model
    arch = "-".join(str(w) for w in m.widths) if m.kind == "mlp" else m.kind
    parts = [f"{cfg.dataset.name}", f"{m.kind} {arch} {m.activation}", f"noise={cfg.noise.kind}"]
    if m.layer_noise > 0:
        parts.append(f"layer noise {m.layer_noise:g}")
    if m.quantize_bits:
        parts.append(f"{m.quantize_bits}-bit")
    if estimator:
        e = cfg.estimator.binning
        if estimator == "binning":
            rng = f"[{e.lo:g}, {e.hi:g}]" if e.lo is not None else "per-evaluation min-max range"
            parts.append(f"binning {e.n_bins} bins {rng}")
        elif estimator == "binning_quantile":
            parts.append(f"quantile binning {e.n_bins} bins")
        else:
            parts.append(estimator)
    return ", ".join(parts)


def _steps_axis(ax):
    """Steps on a log-like axis that keeps step 0 at 0 (symlog, linear below 1)."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)


def level_label(v: float) -> str:
    return "inf" if np.isinf(v) else f"{v:g}"


def level_positions(levels: Sequence[float]) -> np.ndarray:
    """x positions for a log axis, with inf drawn one decade beyond the largest finite level."""
    finite = [v for v in levels if np.isfinite(v) and v > 0]
    top = max(finite) * 10 if finite else 1.0
    return np.array([top if np.isinf(v) else max(v, 1e-12) for v in levels])


def _by_level(members):
    groups: dict[float, list[int]] = {}
    for m in members:
        groups.setdefault(m["level"], []).append(m["member"])
    return dict(sorted(groups.items(), key=lambda kv: (np.isinf(kv[0]), kv[0])))


def information_planes(
    metrics, steps, members, layer_names, out_dir, estimator="binning", level_name="snr", title="", frontier=None
) -> list[str]:
    """One PNG per noise level: I(X;T) vs I(T;Y) of every layer, coloured by step (mean over seeds).

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
    for level, idx in _by_level(members).items():
        x = np.nanmean(ix[idx], axis=0)  # (E, L)
        y = np.nanmean(iy[idx], axis=0)
        if not (np.isfinite(x).any() and np.isfinite(y).any()):
            continue  # every member of this level diverged: nothing to draw
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        if frontier is not None:
            fx, fy = (np.asarray(a, float) for a in frontier)
            ax.plot(fx, fy, color="k", ls="--", lw=1.0, zorder=0, label="IB bound")
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
            if not isinstance(h, matplotlib.lines.Line2D):  # layer markers in grey; the IB bound keeps its dashed black
                h.set_color("0.3")
        ax.set_xlabel("I(X;T) [bits]")
        ax.set_ylabel("I(T;Y) [bits]")
        ax.set_title(f"information plane, {level_name}={level_label(level)}, {len(idx)} seeds\n{title}", fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"infoplane_{level_name}_{level_label(level)}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def conditional_entropy_vs_step(
    metrics, steps, members, layer_names, out_dir, estimator="binning", level_name="snr", title=""
) -> list[str]:
    """H(X|T) against step, one panel per layer, one line per noise level (band: std over seeds)."""
    h = metrics.get(f"{estimator}/h_x_given_t")
    if h is None or not np.isfinite(h).any():
        return []
    n_layers = h.shape[-1]
    cols = min(n_layers, 3)
    rows = -(-n_layers // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    x = np.asarray(steps)
    groups = _by_level(members)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(groups), 1)))
    band_alpha = 0.2 if len(groups) <= 3 else 0.08  # many levels: faint bands, the means stay readable
    for layer in range(n_layers):
        ax = axes[layer // cols][layer % cols]
        for color, (level, idx) in zip(colors, groups.items()):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(h[idx, :, layer], axis=0)
                std = np.nanstd(h[idx, :, layer], axis=0)
            ax.plot(x, mean, color=color, lw=1.4, label=f"{level_name}={level_label(level)}")
            if len(idx) > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=band_alpha, lw=0)
        _steps_axis(ax)
        ax.set_title(f"{layer_names[layer]}")
        ax.set_xlabel("step")
        ax.set_ylabel("H(X|T) [bits]")
    for k in range(n_layers, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"H(X|T) per layer (band: ±1 std over seeds)\n{title}", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out_dir, "h_x_given_t_vs_step.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def gap_vs_level(metrics, members, out_dir, level_name="snr", title="") -> list[str]:
    """Final generalization gap (loss and accuracy) against the noise level, mean +- std over seeds."""
    groups = _by_level(members)
    levels = list(groups)
    xs = level_positions(levels)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, name, label in [(axes[0], "gap_loss", "test - train loss"), (axes[1], "gap_accuracy", "train - test accuracy")]:
        if name not in metrics or not np.isfinite(metrics[name][:, -1]).any():
            ax.text(0.5, 0.5, "no finite values (diverged)", ha="center", va="center", transform=ax.transAxes)
            continue
        final = metrics[name][:, -1]
        means = [np.nanmean(final[idx]) for idx in groups.values()]
        stds = [np.nanstd(final[idx]) for idx in groups.values()]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
        for i in groups.values():
            ax.scatter(np.full(len(i), xs[list(groups.values()).index(i)]), final[i], color="0.5", s=8, zorder=0)
        ax.set_xscale("log")
        ax.set_xticks(xs, [level_label(v) for v in levels])
        ax.set_xlabel(level_name)
        ax.set_ylabel(label)
    fig.suptitle(f"generalization gap at the end of training\n{title}", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out_dir, f"gap_vs_{level_name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


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


def bounds_vs_level(metrics, members, out_dir, level_name="snr", title="", conf: float = 0.95) -> list[str]:
    """Measured test error and gap against the noise level beside every recorded bound: mean and
    Student-t ``conf`` interval over seeds (the tables' interval), one position per level (a level
    of 0 or inf has its own tick). Infinite bounds are left out and named in the legend. Returns
    ``[]`` when the job recorded no bound."""
    if not any(k.startswith("bound/") for k in metrics):
        return []
    groups = _by_level(members)
    levels = list(groups)
    xs = np.arange(len(levels), dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
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
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(
        f"measured gap and generalization bounds at the end of training (bands: {conf:.0%} t-interval over seeds)\n{title}", fontsize=9
    )
    fig.tight_layout()
    path = os.path.join(out_dir, f"bounds_vs_{level_name}.png")
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return [path]
