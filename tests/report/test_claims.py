"""Claims report: verdict rules, effects from summaries, intervals in the job table, the IB bound,
and ``scripts/claims.py --quick`` end to end.

Synthetic summaries are member dicts shaped like ``summary.json``'s (seed, level, ``final/...``,
``matched/...``); their effects are built far from or exactly at the verdict boundaries, so each
expected verdict follows from the rule, not from luck (margins stated at each case).
"""

import importlib.util
import math
import os
import re
import sys

import numpy as np
import pytest
from scipy import stats as st

from ib_jax import data
from ib_jax.report import claims as K
from ib_jax.report import summary as S
from ib_jax.report import verdicts as V

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYERS = ["h1", "h2", "output"]


def _script():
    spec = importlib.util.spec_from_file_location("ib_claims_script", os.path.join(ROOT, "scripts", "claims.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve the script's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def members(
    effect_bits, *, seeds=8, levels=(math.inf, 0.1), spread=0.05, gap_per_bit=0.0, gap_noise=0.0, shift=0.0, rng=0, estimator="binning"
):
    """One job's member dicts: I(X;T) per layer = base(seed) + layer offset + effect (at the noisiest level)
    + N(0, spread^2); final gap = gap_per_bit * layer-mean I(X;T) + seed term + N(0, gap_noise^2)."""
    r = np.random.default_rng(rng)
    out = []
    for lv in levels:
        for s in range(seeds):
            base = 5.0 + 0.7 * s  # seeds differ a lot: only pairing removes it
            m = {"member": len(out), "seed": s, "snr": lv, "diverged": False, "matched/train_loss_level": 0.1, "matched/step": 100}
            vals = []
            for j, layer in enumerate(LAYERS):
                v = base + j + shift + (effect_bits if lv == min(levels) else 0.0) + spread * r.standard_normal()
                m[f"matched/{estimator}/i_xt/{layer}"] = v
                m[f"final/{estimator}/i_xt/{layer}"] = v
                m[f"final/{estimator}/h_x_given_t/{layer}"] = 12.0 - v
                vals.append(v)
            m["final/gap_loss"] = gap_per_bit * float(np.mean(vals)) + 0.01 * s + gap_noise * r.standard_normal()
            m["final/gap_accuracy"] = 0.5 * m["final/gap_loss"]
            out.append(m)
    return out


ROUTE = K.Route("binning", "binning", "i_xt")


def cells(line: str) -> list[str]:
    """The cells of a markdown table row (tabulate pads them; an escaped \\| stays inside its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def row_starting(lines, *first) -> str:
    """The first table row whose leading cells are ``first``."""
    return next(line for line in lines if line.startswith("|") and cells(line)[: len(first)] == list(first))


# ------------------------------------------------------------------- verdict rules


def E(mean, lo, hi, n=5):
    return V.Effect(mean, lo, hi, n, 0.01)


@pytest.mark.parametrize(
    "effect,direction,expected",
    [
        (E(-1.0, -1.5, -0.5), -1, V.SUPPORTED),
        (E(1.0, 0.5, 1.5), -1, V.CONTRADICTED),
        (E(-0.1, -0.5, 0.3), -1, V.INCONCLUSIVE),
        (E(1.0, 0.5, 1.5), +1, V.SUPPORTED),
        (E(-1.0, -1.5, -0.5), +1, V.CONTRADICTED),
        (V.Effect(-1.0, math.nan, math.nan, 1, math.nan), -1, V.INCONCLUSIVE),  # n=1: no interval, no verdict
    ],
)
def test_directional_rule(effect, direction, expected):
    assert V.directional_verdict(effect, direction) == expected


@pytest.mark.parametrize(
    "effect,expected",
    [
        (E(0.5, 0.2, 0.8), V.SUPPORTED),  # excludes 0: the choice matters
        (E(-0.5, -0.8, -0.2), V.SUPPORTED),
        (E(0.0, -0.05, 0.05), V.CONTRADICTED),  # inside +-0.1: no difference beyond the margin
        (E(0.0, -0.3, 0.3), V.INCONCLUSIVE),  # contains 0 but wider than the margin
    ],
)
def test_difference_rule(effect, expected):
    assert V.difference_verdict(effect, 0.1) == expected


@pytest.mark.parametrize(
    "effect,expected",
    [
        (E(1.0, 0.9, 1.1), V.SUPPORTED),
        (E(0.3, 0.2, 0.4), V.CONTRADICTED),
        (E(0.9, 0.6, 1.1), V.INCONCLUSIVE),
    ],
)
def test_band_rule(effect, expected):
    assert V.band_verdict(effect, 0.8, 1.2) == expected


def test_combination_across_routes_needs_agreement():
    assert V.combine([V.SUPPORTED] * 3)[0] == V.SUPPORTED
    assert V.combine([V.CONTRADICTED] * 2)[0] == V.CONTRADICTED
    v, counts = V.combine([V.SUPPORTED, V.SUPPORTED, V.INCONCLUSIVE])
    assert v == V.INCONCLUSIVE and counts == "2 supported, 0 contradicted, 1 inconclusive"
    assert V.combine([V.SUPPORTED, V.CONTRADICTED])[0] == V.INCONCLUSIVE
    assert V.combine([])[0] == V.INCONCLUSIVE
    with pytest.raises(ValueError, match="verdicts"):
        V.combine(["maybe"])
    with pytest.raises(ValueError, match="direction"):
        V.directional_verdict(E(0, -1, 1), 0)
    with pytest.raises(ValueError, match="margin"):
        V.difference_verdict(E(0, -1, 1), 0.0)


# ------------------------------------------------------ verdicts on synthetic summaries


@pytest.mark.parametrize("effect_bits,expected", [(-1.0, V.SUPPORTED), (1.0, V.CONTRADICTED), (0.0, V.INCONCLUSIVE)])
def test_claim1_verdict_from_summaries(effect_bits, expected):
    # spread 0.05 bits per layer, 8 seeds: the paired layer-mean difference has sd 0.05*sqrt(2/3) ~ 0.04, so the
    # 95% half-width is ~ 2.36 * 0.04 / sqrt(8) ~ 0.035 bits: an effect of +-1 bit is ~30 half-widths from 0,
    # and effect 0 with these fixed draws gives an interval around 0 (checked: it contains 0)
    ms = members(effect_bits)
    row = K.claim1(ms, "snr", ROUTE)
    assert row.verdict == expected
    assert row.effect.n == 8
    assert abs(row.effect.mean - effect_bits) < 0.05
    if expected == V.INCONCLUSIVE:
        assert row.effect.lo < 0 < row.effect.hi
    assert "snr=0.1 - inf" in row.measure
    assert any(line.startswith("|") and cells(line)[0] == "h1" for line in row.detail)  # per-layer detail


def test_paired_effect_is_the_paired_t_test():
    ms = members(-0.3, spread=0.4, rng=3)
    a, b, seeds = V.paired_levels(ms, "snr", 0.1, math.inf, "matched/binning/i_xt/h2")
    assert seeds == list(range(8))
    e = V.paired_effect(a, b)
    t = st.ttest_rel(a, b)
    assert e.p_value == pytest.approx(t.pvalue, rel=1e-9)
    d = a - b
    half = st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (e.lo, e.hi) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    # pairing matters: the seeds' spread (0.7 bits per seed) would swamp an unpaired comparison
    assert e.hi - e.lo < 0.5 * (np.ptp(a) + np.ptp(b)) / 2


def test_claim2_slope_verdicts():
    # gap = 0.05 * I(X;T) + seed term: the within-seed slope is 0.05 exactly up to the gap noise (sd 0.002)
    up = K.claim2(members(-1.0, gap_per_bit=0.05, gap_noise=0.002, levels=(math.inf, 1.0, 0.1)), "snr", ROUTE)
    assert up.verdict == V.SUPPORTED and up.effect.mean == pytest.approx(0.05, abs=0.005)
    down = K.claim2(members(-1.0, gap_per_bit=-0.05, gap_noise=0.002, levels=(math.inf, 1.0, 0.1)), "snr", ROUTE)
    assert down.verdict == V.CONTRADICTED
    flat = K.claim2(members(-1.0, gap_per_bit=0.0, gap_noise=0.01, levels=(math.inf, 1.0, 0.1)), "snr", ROUTE)
    assert flat.effect.lo < 0 < flat.effect.hi and flat.verdict == V.INCONCLUSIVE


def test_within_seed_slope_matches_least_squares_with_seed_intercepts():
    r = np.random.default_rng(7)
    g = np.repeat(np.arange(5), 4)
    x = r.normal(size=20)
    y = 1.5 * x + 3.0 * g + r.normal(scale=0.3, size=20)
    e = V.within_seed_slope(x, y, g)
    # the same model as one regression on x plus one dummy per seed
    X = np.column_stack([x] + [(g == k).astype(float) for k in range(5)])
    coef, res, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = 20 - 6
    se = np.sqrt(res[0] / df * np.linalg.inv(X.T @ X)[0, 0])
    q = st.t.ppf(0.975, df)
    assert e.mean == pytest.approx(coef[0], rel=1e-9)
    assert (e.lo, e.hi) == pytest.approx((coef[0] - q * se, coef[0] + q * se), rel=1e-9)
    assert not V.within_seed_slope(x[:6], y[:6], np.arange(6)).has_interval  # one point per seed: no residual df


@pytest.mark.parametrize("shift,expected", [(0.0, V.CONTRADICTED), (0.5, V.SUPPORTED)])
def test_compare_jobs_claims_4_and_5(shift, expected):
    # same seeds, b's I(X;T) = a's + shift (+ independent draws of sd 0.01): shift 0 lies inside the +-0.1 margin
    # (half-width ~ 2.36 * 0.01 * sqrt(2/3) / sqrt(8) ~ 0.007), shift 0.5 excludes 0
    a = members(-1.0, spread=0.01, rng=1)
    b = members(-1.0, spread=0.01, rng=2, shift=shift)
    row = K.compare_jobs(4, b, a, "snr", ROUTE, "cone - isotropic", margin=0.1)
    assert row.verdict == expected
    assert row.effect.mean == pytest.approx(shift, abs=0.02) and "snr=0.1" in row.measure
    gap = K.compare_jobs(4, b, a, "snr", None, "cone - isotropic", margin=10.0)
    assert gap.route.startswith("gap") and gap.effect.n == 8


def test_batch_snr_slope_and_sampled_batches():
    # exact linear SNR (slope 1 per seed) -> supported; SNR flat in B (slope 0) -> contradicted
    bs = [16, 64, 256] * 4
    seeds = np.repeat(np.arange(4), 3)
    lin = [b * (1 + 0.01 * s) for b, s in zip(bs, seeds)]
    exact = K.batch_snr_slope(bs, lin, seeds, "r")
    assert exact.effect.mean == pytest.approx(1.0) and exact.verdict == V.SUPPORTED  # every seed's slope is 1
    noisy_lin = [v * np.exp(0.02 * ((i * 7) % 5 - 2)) for i, v in enumerate(lin)]
    assert K.batch_snr_slope(bs, noisy_lin, seeds, "r").verdict == V.SUPPORTED
    flat = [1.0 * np.exp(0.02 * ((i * 3) % 5 - 2)) for i in range(len(bs))]
    assert K.batch_snr_slope(bs, flat, seeds, "r").verdict == V.CONTRADICTED


def test_zero_spread_effect_has_a_degenerate_interval():
    # every seed's slope is exactly 1: the interval is [1, 1], inside the band (so supported)
    e = V.mean_effect([1.0, 1.0, 1.0], null=1.0)
    assert (e.lo, e.hi, e.p_value) == (1.0, 1.0, 1.0)
    assert V.band_verdict(e, 0.8, 1.2) == V.SUPPORTED


def test_empirical_batch_snr_follows_the_formula():
    # rows of G + N(0, diag(1..5)): tr(Sigma) of the finite set, batches i.i.d. with replacement, so
    # E||g_B - G||^2 = tr(Sigma)/B exactly; the mean over K batches has relative sd sqrt(2/(D_eff K)) <= sqrt(2/4000)
    # (chi-square with >= 1 effective degree of freedom per batch): 5 sd ~ 11%
    r = np.random.default_rng(0)
    g = np.array([1.0, -2.0, 0.5, 0.0, 1.0]) + r.normal(size=(2000, 5)) * np.sqrt(np.arange(1, 6))
    mean = g.mean(0)
    tr = np.mean(np.sum((g - mean) ** 2, axis=1))
    bs = [4, 32, 256]
    emp = V.empirical_batch_snr(g, bs, 4000, seed=1)
    np.testing.assert_allclose(emp, np.array(bs) * (mean @ mean) / tr, rtol=0.11)
    with pytest.raises(ValueError, match="per_example"):
        V.empirical_batch_snr(g[0], bs, 10)


# ------------------------------------------------------------------ the job table


def test_table_reports_t_intervals_and_paired_differences():
    ms = members(-1.0, seeds=4, spread=0.2, rng=5)
    for m in ms:
        m["matched/gap_loss"] = m["final/gap_loss"]
    table = S.summary_table(ms, LAYERS, "snr", "binning")
    assert "95% t-interval over seeds" in table
    # the cell of H(X|T) h2 at snr=inf: mean [mean -+ t_{0.975,3} s/sqrt(4)]
    v = np.array([m["final/binning/h_x_given_t/h2"] for m in ms if m["snr"] == math.inf])
    half = st.t.ppf(0.975, 3) * v.std(ddof=1) / 2
    assert f"{v.mean():.3f} [{v.mean() - half:.3f}, {v.mean() + half:.3f}]" in table
    # the paired-difference section: level 0.1 vs reference inf, with its p-value
    section = table.split("paired difference vs reference snr=inf")[1]
    row = row_starting(section.splitlines(), "0.1")
    a, b, _ = V.paired_levels(ms, "snr", 0.1, math.inf, "final/binning/h_x_given_t/h2")
    d = V.paired_effect(a, b)
    assert f"{d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] p={d.p_value:.2g}" in row
    assert row.split("|")[2].strip() == "4"  # pairs
    # one seed: no interval, said so
    one = S.summary_table([m for m in ms if m["seed"] == 0], LAYERS, "snr", "binning")
    row = row_starting(one.splitlines(), "inf", "1")
    assert "(n=1)" in row and "[" not in row


def test_reference_level_rule():
    assert math.isinf(S.reference_level([10.0, math.inf, 1.0], "snr"))
    assert S.reference_level([0.1, 0.0, 0.3], "p") == 0.0
    assert S.reference_level([0.5, 0.0], "sigma") == 0.0
    assert S.reference_level([10.0, 1.0], "snr") == 10.0  # no noiseless level: the first
    assert V.strongest_level([math.inf, 10.0, 0.1], "snr") == 0.1
    assert V.strongest_level([0.0, 0.1, 0.3], "p") == 0.3


def test_level_statistics_for_summary_json():
    ms = members(-1.0, seeds=3, rng=2)
    ls = S.level_statistics(ms, LAYERS, "snr")
    assert math.isinf(ls["reference"]) and len(ls["levels"]) == 2
    noisy = next(r for r in ls["levels"] if r["snr"] == 0.1)
    v = noisy["values"]["final/binning/i_xt/h1"]
    assert v["n"] == 3 and v["lo"] < v["mean"] < v["hi"]
    p = noisy["paired_vs_reference"]["final/binning/i_xt/h1"]
    assert p["n"] == 3 and p["hi"] < 0  # -1 bit, spread 0.05


def test_trajectory_flags_and_table():
    peak = np.array([5.0, 5.2, 4.9, 5.1])
    f = S.trajectory_flags([3.0] * 4, peak, peak - [1.0, 1.1, 0.9, 1.05], [0.1] * 4, [0.8, 0.9, 0.85, 0.95])
    assert f["compresses"] == "yes" and f["fits"] == "yes"
    f = S.trajectory_flags([3.0] * 4, peak, peak + [0.0, 0.01, -0.01, 0.0], [0.5] * 4, [0.5, 0.4, 0.6, 0.5])
    assert f["compresses"] == "no" and f["fits"] == "no"
    assert S.trajectory_flags([3.0], [5.0], [4.0], [0.1], [0.9])["compresses"] == "n=1"
    # from a job's metrics: a layer whose I(X;T) rises then falls in every member compresses
    steps = np.array([0, 10, 100, 1000])
    curve = np.array([3.0, 6.0, 5.0, 4.0])
    ix = np.stack([curve + 0.01 * i for i in range(3)])[..., None]  # (P=3, E=4, L=1)
    iy = np.stack([np.linspace(0.1, 0.9, 4)] * 3)[..., None] + np.array([0.0, 0.01, 0.02])[:, None, None]
    metrics = {"train_loss": np.tile(np.array([1.0, 0.5, 0.2, 0.1]), (3, 1)), "binning/i_xt": ix, "binning/i_ty": iy}
    mem = [{"member": i, "seed": i, "level": math.inf} for i in range(3)]
    ss = S.summarize(steps, metrics, mem, ["h1"], np.zeros(3, bool), np.full(3, -1), "snr")
    assert ss[0]["peak_step/binning/i_xt/h1"] == 10 and ss[0]["peak/binning/i_xt/h1"] == 6.0
    table = S.summary_table(ss, ["h1"], "snr", "binning")
    row = row_starting(table.splitlines(), "inf", "h1")
    assert cells(row)[-2:] == ["yes", "yes"]


# --------------------------------------------------------------------- the IB bound


def test_frontier_for_tishby12_and_small_discrete_sets(tmp_path):
    ds = data.tishby12()
    fx, fy = S.ib_frontier_for(ds)
    h_y = -sum(p * np.log2(p) for p in np.bincount(ds.y_all) / len(ds.y_all))
    # deterministic labels: F(r) = min(r, H(Y)) (the frontier of Y = f(X)), from 0 to H(X) = 12 bits
    assert fx[0] == 0 and fx[-1] == pytest.approx(12.0) and fy[-1] == pytest.approx(h_y, abs=1e-6)
    assert np.all(fy <= np.minimum(fx, h_y) + 1e-9)
    assert S.ib_frontier_for(ds) is S.ib_frontier_for(ds)  # cached by content
    sub_x, sub_y = S.ib_frontier_for(ds, n_info=512)  # a job's information set: H(X) = log2 512
    assert sub_x[-1] == pytest.approx(9.0) and np.all(sub_y <= sub_x + 1e-9)
    # labels independent of a duplicated input (every row seen with label 0 and 1): I(X;Y) = 0, the bound is flat at 0
    x = np.repeat(np.eye(4, dtype=np.float32), 2, axis=0)
    flat = data.Dataset(x, np.tile([0, 1], 4).astype(np.int32), x[:2], np.array([0, 1], np.int32), 2, "mine")
    fx, fy = S.ib_frontier_for(flat, kind="npz")
    p_x = np.array([4, 2, 2, 2]) / 10  # the first row twice more in the test split
    assert np.max(fy) == pytest.approx(0.0, abs=1e-9) and fx[-1] == pytest.approx(-np.sum(p_x * np.log2(p_x)))
    assert S.ib_frontier_for(flat, kind="npz", max_distinct=3) is None
    assert S.ib_frontier_for(data.digits()) is None  # continuous-valued sets: no bound


def test_information_plane_draws_the_bound(tmp_path, monkeypatch):
    import matplotlib.axes

    from ib_jax.report import plots

    labels = []
    real = matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):
        labels.append(kw.get("label"))
        return real(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    steps = np.array([0, 10])
    metrics = {"binning/i_xt": np.ones((2, 2, 2)) * 3.0, "binning/i_ty": np.ones((2, 2, 2)) * 0.5}
    mem = [{"member": 0, "seed": 0, "level": math.inf}, {"member": 1, "seed": 1, "level": math.inf}]
    paths = plots.information_planes(
        metrics, steps, mem, ["h1", "h2"], str(tmp_path), frontier=(np.array([0.0, 1.0, 12.0]), np.array([0.0, 1.0, 1.0]))
    )
    assert len(paths) == 1 and os.path.exists(paths[0]) and labels.count("IB bound") == 1
    labels.clear()
    plots.information_planes(metrics, steps, mem, ["h1", "h2"], str(tmp_path))
    assert "IB bound" not in labels


# ------------------------------------------------------------------ end to end


def test_quick_mode_end_to_end(tmp_path):
    # about 1 minute on 2 CPU cores with a cold compilation cache (the brief: mark slow only beyond 3 minutes)
    claims = _script()
    report = tmp_path / "claims.md"
    assert claims.main(["--quick", "--out", str(tmp_path / "out"), "--report", str(report)]) == 0
    text = report.read_text()
    rows = [line for line in text.split("## Verdicts")[1].split("## Rules")[0].splitlines() if re.match(r"\| \d +\|", line)]
    assert {int(r.split("|")[1]) for r in rows} == {1, 2, 3, 4, 5}
    assert all(re.search(r"\*\*(supported|contradicted|inconclusive)\*\*", r) for r in rows)
    for c in range(1, 6):
        assert re.search(rf"\* claim {c}: \*\*(supported|contradicted|inconclusive)\*\*", text)
    assert "exact counting" in text and "kNN" in text and "python experiments/train.py experiment=cone_vs_isotropic" in text
    assert "Quick mode" in text
    # a second run reads every finished job instead of training again
    assert claims.main(["--quick", "--out", str(tmp_path / "out"), "--report", str(report)]) == 0
    assert "0 run," in report.read_text()


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_real_data_plan_validates_every_job(mode):
    """``--data digits``: every job (the CNN, the noisy CNN with sample propagation, claim 3's batch
    sizes) composes and passes validation (data, model, estimators, memory) before anything runs."""
    from ib_jax.cli.claims_plan import plan, sizes
    from ib_jax.job.build import validate
    from ib_jax.job.compose import compose, register

    register()
    sz = sizes(mode, "digits")
    specs = plan(sz)
    assert {s.network for s in specs} == {"cnn", "noisy_cnn", "sgd"}
    for spec in specs:
        built = validate(compose(list(spec.overrides)))
        c = built.config
        assert c.dataset.name == "digits" and c.model.kind == "cnn2d" and tuple(c.model.input_shape) == (8, 8, 1), spec.key
        if spec.network == "noisy_cnn":
            assert c.model.layer_noise > 0 and "sp" in c.estimator.names
        if spec.network == "sgd":  # claim 3: each job its own batch size, not the CNN jobs' full batch
            assert c.optimizer.batch_size == int(spec.arm.split("=")[1]) > 0, spec.key
    with pytest.raises(ValueError, match="--data must be"):
        sizes(mode, "imagenet")
