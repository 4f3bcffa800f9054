"""PNG plots of a population run (matplotlib, Agg backend: no display needed).

Inputs are the arrays of :class:`ib_jax.train.PopulationResult`: metrics of
shape ``(P, n_evals)`` or ``(P, n_evals, L)``, the member list and steps.
Members sharing a noise level are averaged over seeds (spread shown).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["information_planes", "conditional_entropy_vs_step", "gap_vs_level", "level_label", "level_positions"]


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


def information_planes(metrics, steps, members, layer_names, out_dir, estimator="binning", level_name="snr") -> list[str]:
    """One PNG per noise level: I(X;T) vs I(T;Y) of every layer, coloured by step (mean over seeds)."""
    ix, iy = metrics.get(f"{estimator}/i_xt"), metrics.get(f"{estimator}/i_ty")
    if ix is None or iy is None:
        return []
    paths = []
    norm = matplotlib.colors.LogNorm(vmin=max(1, steps[1] if len(steps) > 1 else 1), vmax=max(steps[-1], 2))
    for level, idx in _by_level(members).items():
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        x = np.nanmean(ix[idx], axis=0)  # (E, L)
        y = np.nanmean(iy[idx], axis=0)
        for layer in range(x.shape[1]):
            ax.plot(x[:, layer], y[:, layer], color="0.8", lw=0.8, zorder=1)
            sc = ax.scatter(x[:, layer], y[:, layer], c=np.maximum(steps, 1), cmap="viridis", norm=norm, s=14, zorder=2)
            ax.annotate(layer_names[layer], (x[-1, layer], y[-1, layer]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fig.colorbar(sc, ax=ax, label="step")
        ax.set_xlabel("I(X;T) [bits]")
        ax.set_ylabel("I(T;Y) [bits]")
        ax.set_title(f"information plane ({estimator}), {level_name}={level_label(level)}, {len(idx)} seeds")
        fig.tight_layout()
        path = os.path.join(out_dir, f"infoplane_{level_name}_{level_label(level)}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def conditional_entropy_vs_step(metrics, steps, members, layer_names, out_dir, estimator="binning", level_name="snr") -> list[str]:
    """H(X|T) against step, one panel per layer, one line per noise level (band: std over seeds)."""
    h = metrics.get(f"{estimator}/h_x_given_t")
    if h is None:
        return []
    n_layers = h.shape[-1]
    cols = min(n_layers, 3)
    rows = -(-n_layers // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    x = np.maximum(steps, 1)
    for layer in range(n_layers):
        ax = axes[layer // cols][layer % cols]
        for level, idx in _by_level(members).items():
            mean = np.nanmean(h[idx, :, layer], axis=0)
            std = np.nanstd(h[idx, :, layer], axis=0)
            (line,) = ax.plot(x, mean, label=f"{level_name}={level_label(level)}")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.set_title(f"{layer_names[layer]}")
        ax.set_xlabel("step")
        ax.set_ylabel("H(X|T) [bits]")
    for k in range(n_layers, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"H(X|T) per layer ({estimator})")
    fig.tight_layout()
    path = os.path.join(out_dir, "h_x_given_t_vs_step.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def gap_vs_level(metrics, members, out_dir, level_name="snr") -> list[str]:
    """Final generalization gap (loss and accuracy) against the noise level, mean +- std over seeds."""
    groups = _by_level(members)
    levels = list(groups)
    xs = level_positions(levels)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, name, label in [(axes[0], "gap_loss", "test - train loss"), (axes[1], "gap_accuracy", "train - test accuracy")]:
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
    fig.suptitle("generalization gap at the end of training")
    fig.tight_layout()
    path = os.path.join(out_dir, f"gap_vs_{level_name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
