"""Figures: the aggregate's level axis and panels, a job's figures in every format, titles that
name what differs, the tables' interval as bands, and no global matplotlib state changed.

Synthetic metrics shaped like ``ib_jax.job.rows.rows_to_arrays``'s (``(P, E)`` and ``(P, E, L)``);
no training."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from PIL import Image

from ib_jax import config as C
from ib_jax.cli import aggregate as A
from ib_jax.report import figures as F
from ib_jax.report import plots as P
from ib_jax.report.stats import t_interval

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVELS = [math.inf, 10.0, 1.0, 0.1]
LAYERS = ["h1", "h2", "out"]
SEEDS = 3
STEPS = np.array([0, 10, 30, 100, 300, 1000])


def _job(levels=LEVELS, seeds=SEEDS, n_layers=3, estimators=("binning",), seed=0):
    rng = np.random.default_rng(seed)
    members = [{"member": i, "seed": i % seeds, "level": float(levels[i // seeds])} for i in range(len(levels) * seeds)]
    p, e, L = len(members), len(STEPS), n_layers
    t = np.linspace(0.0, 1.0, e)[None, :, None]
    metrics = {
        "gap_loss": rng.normal(0.1, 0.02, (p, e)),
        "gap_accuracy": rng.normal(0.05, 0.01, (p, e)),
        "test_accuracy": rng.uniform(0.8, 0.9, (p, e)),
    }
    for est in estimators:
        metrics[f"{est}/h_x_given_t"] = 3 * t + np.arange(L) + rng.normal(0, 0.3, (p, e, L))
        if est != "knn":
            metrics[f"{est}/i_xt"] = 12 - 3 * t - 2 * np.arange(L) + rng.normal(0, 0.1, (p, e, L))
            metrics[f"{est}/i_ty"] = 0.2 + 0.7 * t + rng.normal(0, 0.02, (p, e, L))
    return metrics, members


def _cfg(**plots):
    return C.Config(plots=C.PlotsConf(**plots))


def _text(path) -> str:
    """The visible text of an SVG (its text is kept as text), whitespace collapsed."""
    with open(path, encoding="utf-8") as f:
        return " ".join(re.sub(r"<[^>]+>", " ", f.read()).split())


def _rows(specs):
    """Aggregate rows: ``specs`` = [(job_dir, setting, level_name, levels)]."""
    rng = np.random.default_rng(1)
    rows = []
    for job, setting, name, levels in specs:
        for lv in levels:
            r = {"setting": setting, "job_dir": job, "level_name": name, "level": float(lv), "seeds": 3}
            for k in ("gap_loss", "gap_accuracy", "h_x_given_t_h1"):
                m = float(rng.uniform(0, 1))
                r[f"{k}_mean"], r[f"{k}_lo"], r[f"{k}_hi"] = m, m - 0.1, m + 0.1
            rows.append(r)
    return rows


def _drawn(fig):
    """Render (as saving does), so tick labels and legend positions are final."""
    fig.savefig(io.BytesIO(), format="png", dpi=60)
    return fig


def _axes(fig):
    """Every visible axes of a figure, its subfigures' included."""
    out = list(fig.axes)
    for sub in getattr(fig, "subfigs", []):
        out += _axes(sub)
    return [ax for ax in dict.fromkeys(out) if ax.axison]


def _ticks(ax):
    return [t.get_text() for t in ax.get_xticklabels()], list(ax.get_xticks())


# ------------------------------------------------------------------ aggregate


def test_aggregate_level_axis_labels_inf_at_its_own_tick():
    rows = _rows([("/j/a", "noise=cone", "snr", [math.inf, 10, 1, 0.1]), ("/j/b", "noise=isotropic", "snr", [math.inf, 10])])
    fig = _drawn(F.draw_settings(rows, ["h1"]))
    axes = _axes(fig)
    assert len(axes) == 3  # gap loss, gap accuracy, H(X|T) h1
    for ax in axes:
        labels, xs = _ticks(ax)
        assert labels == ["0.1", "1", "10", "inf"]  # the labels survive the log scale
        assert xs[labels.index("inf")] == pytest.approx(100.0)  # one decade beyond 10, labelled inf (not 10^2)
        assert len(ax.xaxis.get_minorticklocs()) == 0
        assert ax.get_xlabel() == "snr"
    # both settings share inf's position: the second (only inf and 10) is drawn at the same x
    xs_b = [line.get_xdata() for line in axes[0].get_lines() if len(line.get_xdata()) == 2]
    assert xs_b and sorted(xs_b[0]) == pytest.approx([10.0, 100.0])


def test_aggregate_level_names_never_share_an_axis():
    rows = _rows(
        [
            ("/j/a", "noise=isotropic,optimizer.batch_size=64", "snr", [math.inf, 1]),
            ("/j/b", "noise=label,optimizer.batch_size=64", "p", [0.0, 0.1, 0.3]),
        ]
    )
    fig = _drawn(F.draw_settings(rows, ["h1"]))
    assert len(fig.subfigs) == 2  # one block per level name
    by_name = {}
    for ax in _axes(fig):
        by_name.setdefault(ax.get_xlabel(), []).append(ax)
    assert sorted(by_name) == ["p", "snr"] and len(by_name["p"]) == len(by_name["snr"]) == 3
    assert all(_ticks(ax)[0] == ["0", "0.1", "0.3"] for ax in by_name["p"])  # p = 0 has its own tick
    assert all(_ticks(ax)[0] == ["1", "inf"] for ax in by_name["snr"])
    for sub, name in zip(fig.subfigs, ("snr", "p")):
        assert all(ax.get_xlabel() == name for ax in _axes(sub))


def test_aggregate_legend_shows_only_what_differs_and_covers_no_data():
    rows = _rows(
        [
            ("/j/a", "noise=cone,optimizer.batch_size=64,noise.snr=[inf,10]", "snr", [math.inf, 10]),
            ("/j/b", "noise=isotropic,optimizer.batch_size=64,noise.snr=[inf,10]", "snr", [math.inf, 10]),
        ]
    )
    fig = _drawn(F.draw_settings(rows, ["h1"]))
    (sub,) = fig.subfigs
    (legend,) = sub.legends
    assert [t.get_text() for t in legend.get_texts()] == ["noise=cone", "noise=isotropic"]
    title = fig.get_suptitle().replace("\n", " ")
    assert "optimizer.batch_size=64" in title and "noise.snr=[inf,10]" in title and "95% t-interval" in title
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in _axes(fig))  # outside every axes


def test_setting_labels():
    assert F.split_setting("noise.snr=[inf,10],noise=cone") == ["noise.snr=[inf,10]", "noise=cone"]
    common, labels = F.setting_labels(["noise=cone,seeds_x=1", "defaults"])
    assert common == [] and labels == {"noise=cone,seeds_x=1": "noise=cone, seeds_x=1", "defaults": "noise=(default), seeds_x=(default)"}
    assert F.setting_labels(["a=1"]) == (["a=1"], {"a=1": "mean"})


def _fake_job(root, name, overrides, members):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / "summary.json").write_text(json.dumps({"members": members}))


def test_aggregate_main_formats_dpi_and_estimator(tmp_path):
    for name, kind, vals in (("iso", "isotropic", (0.1, 0.2, 0.3)), ("cone", "cone", (0.4, 0.5, 0.7))):
        members = [
            {"member": i + 3 * j, "seed": i, "snr": lv, "diverged": False, "final/gap_loss": v + j, "final/knn/h_x_given_t/h1": v}
            for j, lv in enumerate(("inf", 1.0))  # strict JSON: the records write inf as "inf"
            for i, v in enumerate(vals)
        ]
        _fake_job(tmp_path / "sweep", name, [f"noise={kind}"], members)
    out = tmp_path / "out"
    assert A.main([str(tmp_path / "sweep"), "--out", str(out), "--formats", "png,svg", "--dpi", "160"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["aggregate.csv", "aggregate.md", "aggregate.png", "aggregate.svg"]
    assert Image.open(out / "aggregate.png").info["dpi"][0] == pytest.approx(160, abs=0.5)
    rows, layers = A.aggregate([str(tmp_path / "sweep")])  # no binning recorded: the rule falls back to knn
    assert layers == ["h1"] and {r["estimator"] for r in rows} == {"knn"}
    iso_inf = next(r for r in rows if r["setting"] == "noise=isotropic" and math.isinf(r["level"]))
    iv = t_interval(np.array([0.1, 0.2, 0.3]))
    assert (iso_inf["h_x_given_t_h1_lo"], iso_inf["h_x_given_t_h1_hi"]) == pytest.approx((float(iv.lo), float(iv.hi)))
    text = _text(out / "aggregate.svg")
    assert "noise=cone" in text and "noise=isotropic" in text
    with pytest.raises(SystemExit) as e:
        A.main([str(tmp_path / "sweep"), "--out", str(out), "--formats", "jpg"])
    assert e.value.code == 2


# ------------------------------------------------------------------ a job's figures


def test_job_figures_writes_every_format_at_the_dpi(tmp_path):
    metrics, members = _job()
    metrics["bound/pac_bayes"] = np.full_like(metrics["gap_loss"], 0.4)
    cfg = _cfg(formats=("png", "pdf", "svg"), dpi=200)
    paths = F.job_figures(
        cfg, metrics, STEPS, members, LAYERS, str(tmp_path), "snr", frontier=(np.array([0.0, 1, 12]), np.array([0.0, 1, 1]))
    )
    stems = {os.path.splitext(os.path.basename(p))[0] for p in paths}
    expected = {f"infoplane_snr_{P.level_label(v)}" for v in LEVELS} | {
        "h_x_given_t_vs_step",
        "level_comparison",
        "gap_vs_snr",
        "bounds_vs_snr",
    }
    assert stems == expected
    assert sorted(paths) == sorted(str(tmp_path / f"{s}.{f}") for s in expected for f in ("png", "pdf", "svg"))
    for p in paths:
        assert os.path.getsize(p) > 0
        if p.endswith(".png"):
            assert Image.open(p).info["dpi"][0] == pytest.approx(200, abs=0.5)
        elif p.endswith(".pdf"):
            assert open(p, "rb").read(5) == b"%PDF-"
    assert "band: 95% t-interval over 3 seeds" in _text(tmp_path / "h_x_given_t_vs_step.svg")
    assert "bars: 95% t-interval over 3 seeds" in _text(tmp_path / "gap_vs_snr.svg")
    assert "IB bound" in _text(tmp_path / "level_comparison.svg")


def test_job_figures_checks_plots_conf(tmp_path):
    metrics, members = _job()
    with pytest.raises(ValueError, match=r"plots\.formats.*'jpg'"):
        F.job_figures(_cfg(formats=("png", "jpg")), metrics, STEPS, members, LAYERS, str(tmp_path), "snr")
    with pytest.raises(ValueError, match=r"plots\.formats"):
        P.check_plots(_cfg(formats=()))
    with pytest.raises(ValueError, match=r"plots\.estimator='knn' is not among estimator\.names"):
        P.check_plots(_cfg(estimator="knn"))
    P.check_plots(_cfg(formats=("PNG", "svg")))
    assert not os.listdir(tmp_path)  # refused before drawing anything


def test_level_comparison_one_panel_per_level_same_limits():
    metrics, members = _job()
    fig = _drawn(F.draw_level_comparison(metrics, STEPS, members, LAYERS, "binning", "snr"))
    axes = _axes(fig)
    assert sorted(ax.get_title() for ax in axes) == sorted(f"snr={P.level_label(v)} (n=3)" for v in LEVELS)
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    # an estimator without I(X;T), I(T;Y): H(X|T) against step, still one panel per level
    metrics, members = _job(levels=[math.inf, 1.0], estimators=("knn",))
    fig = _drawn(F.draw_level_comparison(metrics, STEPS, members, LAYERS, "knn", "snr"))
    axes = _axes(fig)
    assert len(axes) == 2 and all(ax.get_ylabel() in ("H(X|T) [bits]", "") for ax in axes)
    assert len({ax.get_ylim() for ax in axes}) == 1
    assert F.draw_level_comparison({}, STEPS, members, LAYERS, "knn", "snr") is None


def test_plots_estimator_selects_what_is_drawn(tmp_path):
    metrics, members = _job(levels=[math.inf, 1.0], estimators=("binning", "knn"))
    cfg = dataclasses.replace(_cfg(formats=("svg",), estimator="knn"), estimator=C.EstimatorConf(names=("binning", "knn")))
    paths = F.job_figures(cfg, metrics, STEPS, members, LAYERS, str(tmp_path), "snr")
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["gap_vs_snr.svg", "h_x_given_t_vs_step.svg", "level_comparison.svg"]  # knn: no information plane
    assert "H(X|T) per layer (knn" in _text(tmp_path / "h_x_given_t_vs_step.svg")
    # the default rule: the first binning estimator, else the first with I(X;T) and I(T;Y), else the first
    assert P.select_estimator(("knn", "binning_quantile"), {}) == "binning_quantile"
    assert P.select_estimator(("knn", "kde"), {"kde/i_xt": 1, "kde/i_ty": 1}) == "kde"
    assert P.select_estimator(("knn",), {}) == "knn"
    assert P.select_estimator(("binning",), {}, "knn") == "knn"
    assert P.select_estimator((), {}) is None


def test_bands_are_the_tables_t_interval():
    metrics, members = _job(levels=[1.0])
    fig = P.draw_conditional_entropy_vs_step(metrics, STEPS, members, LAYERS, "binning", "snr")
    (legend,) = fig.legends
    assert "band: 95% t-interval over 3 seeds" in [t.get_text() for t in legend.get_texts()]
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    iv = t_interval(metrics["binning/h_x_given_t"][:, :, 0])
    assert band[:, 1].max() == pytest.approx(np.max(iv.hi)) and band[:, 1].min() == pytest.approx(np.min(iv.lo))
    std = metrics["binning/h_x_given_t"][:, :, 0].std(axis=0)
    assert band[:, 1].max() > np.max(iv.mean + std)  # wider than +-1 std (t = 4.3 at 2 dof, /sqrt 3)
    # the gap's error bars: the same interval
    fig = P.draw_gap_vs_level(metrics, members, "snr")
    final = metrics["gap_loss"][:, -1]
    iv = t_interval(final)
    bars = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    (seg,) = bars[0].get_segments()
    assert sorted(seg[:, 1]) == pytest.approx(sorted([float(iv.lo), float(iv.hi)]))


# ------------------------------------------------------------------ titles


def test_titles_name_every_setting_that_differs():
    base = C.Config(noise=C.NoiseConf(kind="isotropic"))
    schedules = [
        C.ScheduleConf(kind="constant"),
        C.ScheduleConf(kind="warmup", params={"warmup": 500}, normalize="total_noise"),
        C.ScheduleConf(kind="cosine", normalize="total_noise"),
    ]
    titles = [P.describe(dataclasses.replace(base, schedule=s), "binning") for s in schedules]
    assert len(set(titles)) == 3
    assert "schedule constant" in titles[0] and "schedule warmup(warmup=500), normalize=total_noise" in titles[1]
    opt = P.describe(dataclasses.replace(base, optimizer=C.OptimizerConf(name="sgd", learning_rate=0.05, batch_size=64)))
    assert "sgd lr 0.05" in opt and "batch size 64" in opt
    assert "full batch" in P.describe(dataclasses.replace(base, optimizer=C.OptimizerConf(batch_size=0)))
    ht = P.describe(dataclasses.replace(base, noise=C.NoiseConf(kind="heavy_tailed", alpha=1.2, position="update")))
    assert "noise=heavy_tailed alpha=1.2 at the update" in ht
    assert "mode=cap" in P.describe(dataclasses.replace(base, noise=C.NoiseConf(kind="cone", mode="cap")))
    assert "variant=bernoulli" in P.describe(dataclasses.replace(base, noise=C.NoiseConf(kind="multiplicative", variant="bernoulli")))
    label = P.describe(dataclasses.replace(base, noise=C.NoiseConf(kind="label")))
    assert "noise=label" in label and "at the gradient" not in label  # a mini-batch kind has no place in the chain
    assert "scope=per_leaf" in P.describe(dataclasses.replace(base, noise=C.NoiseConf(kind="isotropic", scope="per_leaf")))
    m = P.describe(dataclasses.replace(base, model=C.ModelConf(layer_noise=0.1, quantize_bits=4)))
    assert "layer noise 0.1" in m and "4-bit" in m


def test_job_figure_titles_carry_the_settings(tmp_path):
    metrics, members = _job(levels=[math.inf, 1.0])
    cfg = C.Config(
        noise=C.NoiseConf(kind="heavy_tailed", alpha=1.2),
        optimizer=C.OptimizerConf(name="sgd", learning_rate=0.05, batch_size=64),
        schedule=C.ScheduleConf(kind="warmup", params={"warmup": 500}),
        plots=C.PlotsConf(formats=("svg",)),
    )
    F.job_figures(cfg, metrics, STEPS, members, LAYERS, str(tmp_path), "snr")
    for name in ("gap_vs_snr.svg", "level_comparison.svg", "h_x_given_t_vs_step.svg", "infoplane_snr_inf.svg"):
        text = _text(tmp_path / name)
        for token in ("schedule warmup(warmup=500)", "sgd lr 0.05", "batch size 64", "alpha=1.2"):
            assert token in text, (name, token)


# ------------------------------------------------------------------ no global state


def test_importing_and_drawing_keeps_matplotlib_backend(tmp_path):
    code = (
        "import matplotlib, sys\n"
        "import numpy as np\n"
        "from ib_jax.report import figures, plots\n"
        "m = {'gap_loss': np.ones((2, 2)), 'gap_accuracy': np.ones((2, 2))}\n"
        "mem = [{'member': i, 'seed': i, 'level': float('inf')} for i in range(2)]\n"
        f"plots.gap_vs_level(m, mem, {str(tmp_path)!r}, formats=('png', 'svg', 'pdf'))\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = dict(os.environ, MPLBACKEND="svg", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["svg", "False"]
    assert (tmp_path / "gap_vs_snr.png").exists()
