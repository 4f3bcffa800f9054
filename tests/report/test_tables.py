"""Intervals against scipy, the job's tables (console, summary.md, tabulate's markdown) and the bound claims.

The intervals are scipy's (``ttest_1samp`` / ``ttest_rel`` confidence intervals and p-values) with
two rules of ours on top, checked here: NaN members are left out slice by slice, and zero spread
gives a degenerate interval with p = 1 at 0. Synthetic summaries are member dicts shaped like
``summary.json``'s.
"""

import math
import re

import numpy as np
import pytest
from scipy import stats as st

from ib_jax.report import bound_claims as BC
from ib_jax.report import stats as S
from ib_jax.report import summary as SU
from ib_jax.report import verdicts as V

LAYERS = ["h1", "h2", "h3", "h4", "output"]
SEP = re.compile(r"^:?-+:?$")


def cells(line: str) -> list[str]:
    """Cells of a markdown row; an escaped ``\\|`` stays inside its cell."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(text: str) -> list[list[str]]:
    """The markdown tables of a document: runs of lines starting with ``|``."""
    out, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out


def assert_markdown_table(lines: list[str]):
    """GitHub's rule: a header row, a delimiter row with as many cells, rows with as many cells."""
    assert len(lines) >= 2
    head, sep = cells(lines[0]), cells(lines[1])
    assert len(head) == len(sep) and all(SEP.match(c) for c in sep), lines[:2]
    assert all(len(cells(r)) == len(head) for r in lines[2:]), lines


def job_members(levels=(math.inf, 10.0, 1.0, 0.1), seeds=4, rng=0, layers=LAYERS, diverged=(), bounds=False):
    """One job's summaries: H(X|T) per layer rises with noise, the gap falls; ``diverged``: member ids."""
    r = np.random.default_rng(rng)
    out = []
    for k, lv in enumerate(levels):
        for s in range(seeds):
            i = len(out)
            m = {"member": i, "seed": s, "snr": lv, "diverged": i in diverged, "diverged_step": 50 if i in diverged else None}
            m["matched/train_loss_level"], m["matched/step"] = 0.1, 100 + 10 * k
            m["final/gap_loss"] = 0.05 - 0.01 * k + 0.002 * s + 0.001 * r.standard_normal()
            m["matched/gap_loss"] = m["final/gap_loss"]
            m["final/gap_accuracy"] = 0.5 * m["final/gap_loss"]
            m["final/test_accuracy"] = 0.95 + 0.001 * r.standard_normal()
            for j, layer in enumerate(layers):
                h = 0.5 * j + 0.3 * k + 0.05 * r.standard_normal()
                m[f"final/binning/h_x_given_t/{layer}"] = m[f"matched/binning/h_x_given_t/{layer}"] = h
                m[f"final/binning/i_xt/{layer}"] = 12.0 - h
            if bounds and not math.isinf(lv):
                m["final/bound/noisy_iterative_gap"] = 0.5 / math.sqrt(1.0 / lv) + 0.01 * s
                m["final/bound/dp_epsilon"] = 4000.0 * lv
            out.append(m)
    return out


# ------------------------------------------------------------------ intervals equal scipy's


def test_t_interval_is_scipys_and_the_closed_form():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(7, 30))
    mean, lo, hi = S.t_interval(x, axis=0, conf=0.9)
    ref = st.ttest_1samp(x, 0.0, axis=0).confidence_interval(0.9)
    np.testing.assert_allclose(lo, ref.low, rtol=1e-12)
    np.testing.assert_allclose(hi, ref.high, rtol=1e-12)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(lo, st.t.interval(0.9, 6, loc=x.mean(0), scale=st.sem(x, axis=0))[0], rtol=1e-12)
    # [1, 2, 3]: mean 2, s = 1; for 2 degrees of freedom t_p = (2p - 1) / sqrt(2 p (1 - p)) exactly
    t975 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    iv = S.t_interval([1.0, 2.0, 3.0])
    assert float(iv.mean) == 2.0
    assert float(iv.lo) == pytest.approx(2 - t975 / math.sqrt(3), rel=1e-12)
    assert float(iv.hi) == pytest.approx(2 + t975 / math.sqrt(3), rel=1e-12)


def test_nan_members_are_left_out_slice_by_slice():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40, 3))
    x[rng.random(x.shape) < 0.25] = np.nan  # many NaN patterns
    x[:5, 0, 0] = np.nan  # one finite value: a mean, no interval
    x[:, 1, 0] = np.nan  # none
    mean, lo, hi = S.t_interval(x, axis=0)
    for j in range(40):
        for k in range(3):
            v = x[:, j, k][np.isfinite(x[:, j, k])]
            if len(v) == 0:
                assert np.isnan(mean[j, k]) and np.isnan(lo[j, k])
            elif len(v) == 1:
                assert mean[j, k] == v[0] and np.isnan(lo[j, k]) and np.isnan(hi[j, k])
            else:
                ref = st.ttest_1samp(v, 0.0).confidence_interval()
                assert (lo[j, k], hi[j, k]) == pytest.approx((ref.low, ref.high), rel=1e-10)
                assert mean[j, k] == pytest.approx(v.mean(), rel=1e-12)
    # along another axis, same numbers
    np.testing.assert_allclose(S.t_interval(np.moveaxis(x, 0, 2), axis=2).lo, lo, rtol=1e-12, equal_nan=True)


def test_paired_difference_is_ttest_rel():
    rng = np.random.default_rng(2)
    seed = rng.normal(0, 3.0, size=(8, 25))
    a, b = seed + rng.normal(0.3, 1.0, size=seed.shape), seed + rng.normal(0, 1.0, size=seed.shape)
    a[rng.random(a.shape) < 0.15] = np.nan
    b[rng.random(b.shape) < 0.15] = np.nan
    d = S.paired_difference(a, b, conf=0.95)
    for j in range(25):
        ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])  # a pair with a NaN on either side is left out
        r = st.ttest_rel(a[ok, j], b[ok, j])
        ci = r.confidence_interval(0.95)
        assert d.n[j] == ok.sum()
        assert (d.lo[j], d.hi[j], d.p_value[j]) == pytest.approx((ci.low, ci.high, r.pvalue), rel=1e-10)
        assert d.mean[j] == pytest.approx(np.mean(a[ok, j] - b[ok, j]), rel=1e-12)
        r2 = st.ttest_rel(a[:, j], b[:, j], nan_policy="omit")  # scipy's own NaN handling agrees
        assert d.p_value[j] == pytest.approx(r2.pvalue, rel=1e-10)


def test_our_rules_where_scipy_has_none():
    # zero spread: a degenerate interval; p = 1 for an exact zero difference (scipy: 0/0, NaN), 0 otherwise
    d = S.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (float(d.mean), float(d.lo), float(d.hi), float(d.p_value)) == (0.0, 0.0, 0.0, 1.0)
    assert np.isnan(st.ttest_rel([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).pvalue)
    d = S.paired_difference([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert (float(d.lo), float(d.hi), float(d.p_value)) == (0.5, 0.5, 0.0)
    iv = S.t_interval([0.1, 0.1, 0.1])
    assert float(iv.lo) == float(iv.hi) == float(iv.mean)
    # one pair: the difference, no interval, no p
    d = S.paired_difference([2.0, np.nan], [1.0, 5.0])
    assert float(d.mean) == 1.0 and int(d.n) == 1 and np.isnan(d.lo) and np.isnan(d.p_value)
    # the effects of the claims report carry the same numbers
    v = np.random.default_rng(3).normal(1.2, 0.5, size=9)
    e = V.mean_effect(v, null=1.0)
    assert e.p_value == pytest.approx(st.ttest_1samp(v, 1.0).pvalue, rel=1e-12)
    assert (e.lo, e.hi) == pytest.approx(tuple(st.ttest_1samp(v, 1.0).confidence_interval()), rel=1e-12)
    assert V.mean_effect([2.0, 2.0, 2.0], null=2.0).p_value == 1.0


def test_within_seed_slope_is_ols_with_seed_intercepts():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(4), 5)
    x = rng.normal(size=20) + g
    y = 0.7 * x + 2.0 * g + rng.normal(0, 0.3, size=20)
    e = V.within_seed_slope(x, y, g)
    design = np.column_stack([x] + [(g == k).astype(float) for k in range(4)])
    coef, res, *_ = np.linalg.lstsq(design, y, rcond=None)
    df = 20 - 5
    se = math.sqrt(res[0] / df * np.linalg.inv(design.T @ design)[0, 0])
    assert e.mean == pytest.approx(coef[0], rel=1e-10)
    assert (e.lo, e.hi) == pytest.approx((coef[0] - st.t.ppf(0.975, df) * se, coef[0] + st.t.ppf(0.975, df) * se), rel=1e-9)
    assert e.p_value == pytest.approx(2 * st.t.sf(abs(coef[0] / se), df), rel=1e-9)


# ------------------------------------------------------------------ markdown tables


def test_markdown_table_keeps_cells_and_escapes_pipes():
    lines = S.markdown_table(["snr", "H(X|T) h1"], [["inf", "1.000"], ["0.1", "12.500 [1.000, 2.000]"]])
    assert_markdown_table(lines)
    assert cells(lines[0]) == ["snr", "H(X\\|T) h1"]  # escaped: GitHub would split the header otherwise
    assert cells(lines[2]) == ["inf", "1.000"] and cells(lines[3]) == ["0.1", "12.500 [1.000, 2.000]"]  # no number parsing
    plain = S.markdown_table(["snr", "H(X|T) h1"], [["inf", "1.000"]], tablefmt="simple")
    assert "H(X|T) h1" in plain[0] and "1.000" in plain[2]


def test_summary_table_content_and_markdown():
    ms = job_members(diverged={1})
    table = SU.summary_table(ms, LAYERS, "snr", "binning")
    for t in tables(table):
        assert_markdown_table(t)
    final = tables(table)[0]
    assert cells(final[0]) == ["snr", "seeds", "gap loss", "gap acc"] + [f"H(X\\|T) {l}" for l in LAYERS]
    inf = next(r for r in final[2:] if cells(r)[0] == "inf")
    assert cells(inf)[1] == "3 (1 diverged)"
    v = np.array([m["final/gap_loss"] for m in ms if m["snr"] == math.inf and not m["diverged"]])
    half = st.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3)
    assert cells(inf)[2] == f"{v.mean():.3f} [{v.mean() - half:.3f}, {v.mean() + half:.3f}]"
    assert "generalization bounds" not in table  # no bound recorded


def test_bounds_table_appears_with_bound_columns():
    ms = job_members(bounds=True)
    lines = SU.bounds_table(ms, "snr")
    assert lines[0] == "" and lines[1].startswith("generalization bounds")
    assert_markdown_table(lines[3:])
    assert cells(lines[3]) == ["snr", "gap (0-1)", "noisy-iter. gap bound", "DP ε"]  # only the recorded bounds, in order
    row = next(r for r in lines[5:] if cells(r)[0] == "1")
    assert cells(row)[3].startswith("4.00e+03 [") or cells(row)[3].startswith("4e+03 [")  # 3 significant digits beyond 1000
    assert next(r for r in lines[5:] if cells(r)[0] == "inf").count("n/a") == 2  # no finite bound without noise
    assert "generalization bounds" in SU.summary_table(ms, LAYERS, "snr")
    assert "## Generalization bounds" in SU.markdown_report(ms, LAYERS, "snr")
    assert SU.bounds_table(job_members(), "snr") == []


# ------------------------------------------------------------------ what a job prints and writes


@pytest.mark.parametrize(
    "layers,levels",
    [
        (LAYERS, (math.inf, 10.0, 1.0, 0.1)),
        ([f"encoder_block_{i}/dense" for i in range(8)], (math.inf, 1000.0, 0.001)),  # long names: fewer layers shown
        (["h1"], (math.inf,)),  # one level: no paired column
    ],
)
def test_console_table_is_narrow_with_one_row_per_level(layers, levels):
    ms = job_members(levels=levels, layers=layers, diverged={0})
    text = SU.console_table(ms, layers, "snr", "binning", report_path="out/summary.md")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    sep = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "} and line.strip())
    body = lines[sep + 1 : lines.index("")]
    assert [row.split()[0] for row in body] == [SU.plots.level_label(v) for v in levels]  # one row per level, in order
    assert "out/summary.md" in text and "1 div." in body[0]
    shown = [l for l in layers if l in lines[sep - 1]]
    assert 1 <= len(shown) <= 3 and f"of {len(shown)} of {len(layers)} layers" in text
    if len(levels) > 1:
        assert "reference" in body[0] and "Δ gap" in text


def test_console_table_numbers():
    ms = job_members(levels=(math.inf, 0.1), layers=LAYERS)
    lines = SU.console_table(ms, LAYERS, "snr").splitlines()
    head = lines[0] + lines[1]
    assert all(l in head for l in ("h1", "h4", "output")) and "h2" not in head  # first hidden, last hidden, output
    noisy = next(line for line in lines if line.startswith("0.1 "))
    v = [m["final/gap_loss"] for m in ms if m["snr"] == 0.1]
    iv = S.t_interval(v)
    assert f"{float(iv.mean):.3f} ± {(float(iv.hi) - float(iv.lo)) / 2:.3f}" in noisy
    d = S.paired_difference(v, [m["final/gap_loss"] for m in ms if m["snr"] == math.inf])
    assert f"{float(d.mean):+.3f} ± {(float(d.hi) - float(d.lo)) / 2:.3f}" in noisy
    # no H(X|T): I(X;T) instead
    for m in ms:
        for k in [k for k in m if "/h_x_given_t/" in k]:
            del m[k]
    assert "I(X;T)" in SU.console_table(ms, LAYERS, "snr")


def test_markdown_report_has_every_level_layer_and_table():
    ms = job_members(diverged={2}, bounds=True)
    for m in ms:  # an I(X;T) trajectory
        for layer in LAYERS:
            m[f"start/binning/i_xt/{layer}"] = m[f"final/binning/i_xt/{layer}"] - 1.0
            m[f"peak/binning/i_xt/{layer}"] = m[f"final/binning/i_xt/{layer}"] + 0.5
            m[f"peak_step/binning/i_xt/{layer}"] = 10
    doc = SU.markdown_report(ms, LAYERS, "snr", "binning", title="a job", notes=["wall time 3 s"], images=["gap_vs_snr.png"])
    assert doc.startswith("# a job\n") and "* wall time 3 s" in doc and "![gap_vs_snr](gap_vs_snr.png)" in doc
    for heading in ("Overview", "Final values", "At matched training loss", "Paired differences vs snr=inf", "Generalization bounds"):
        assert f"## {heading}\n" in doc
    assert "## I(X;T) trajectory, binning" in doc and "## Diverged members" in doc
    ts = tables(doc)
    for t in ts:
        assert_markdown_table(t)
    for level in ("inf", "10", "1", "0.1"):
        assert all(any(cells(r)[0] == level for r in t[2:]) for t in ts[:3])  # overview, final, matched
    for layer in LAYERS:
        assert f"H(X\\|T) {layer}" in ts[0][0] and any(cells(r)[1] == layer for r in ts[-2][2:])  # overview, trajectory
    doc_lines = set(doc.splitlines())
    assert all(line in doc_lines for line in SU.summary_table(ms, LAYERS, "snr", "binning").splitlines())  # all of it


# ------------------------------------------------------------------ bound claims


def bound_members(*, violate=False, seeds=6, rng=0):
    """A DP-like bound that falls with noise (snr 1 -> 0.1: sigma up), the 0-1 gap a fraction of it plus seed noise;
    ``violate``: at snr=1 the gap exceeds the bound by far. No finite bound at snr=inf (no noise)."""
    r = np.random.default_rng(rng)
    out = []
    for lv in (math.inf, 1.0, 0.3, 0.1):
        for s in range(seeds):
            m = {"member": len(out), "seed": s, "snr": lv, "diverged": False}
            if not math.isinf(lv):
                bound = 0.4 * math.sqrt(lv) + 0.02 * r.standard_normal()
                m["final/bound/dp_gap"] = bound
                gap = 0.3 * bound + 0.002 * s + 0.002 * r.standard_normal()
                m["final/gap_accuracy"] = bound + 0.2 if violate and lv == 1.0 else gap
            else:
                m["final/gap_accuracy"] = 0.15 + 0.002 * s
            out.append(m)
    return out


def test_bound_rows_fall_track_and_stay_below():
    rows = BC.bound_rows(bound_members(), "snr", "tanh")
    assert len(rows) == 3 and all(r.claim == 2 and r.route.startswith("DP bound") and "(tanh)" in r.route for r in rows)
    falls, tracks, below = rows
    assert "0.1 - 1" in falls.measure and falls.effect.mean < 0 and falls.verdict == V.SUPPORTED  # noisiest - quietest finite
    assert falls.effect.n == 6
    assert tracks.effect.mean == pytest.approx(0.3, abs=0.05) and tracks.verdict == V.SUPPORTED
    assert below.verdict == V.SUPPORTED and below.effect.hi < 0 and len(below.detail) == 3  # one line per finite level
    assert all(line.startswith("snr=") for line in below.detail)


def test_bound_rows_report_a_violated_bound_as_a_defect():
    below = BC.bound_rows(bound_members(violate=True), "snr", "tanh")[2]
    assert below.verdict == BC.VIOLATED and below.effect.lo > 0
    assert below.effect.mean == pytest.approx(0.2, abs=1e-9)  # the level where measured - bound is largest
    assert "snr=1: measured - bound +0.2000" in below.detail[0]


def test_bound_rows_without_enough_levels_or_bounds():
    assert BC.bound_rows(job_members(), "snr", "tanh") == []  # no bound recorded: no rows
    ms = [m for m in bound_members() if m["snr"] in (math.inf, 1.0)]  # one level with a finite bound
    falls, tracks, below = BC.bound_rows(ms, "snr", "tanh")
    assert falls.verdict == V.INCONCLUSIVE and "fewer than two levels" in falls.detail[0]
    assert below.verdict == V.SUPPORTED  # still checked at the one level
    ms = bound_members()
    for m in ms:
        m["diverged"] = m["snr"] == 0.1  # diverged members are left out: quietest finite 1, noisiest 0.3
    assert "0.3 - 1" in BC.bound_rows(ms, "snr", "tanh")[0].measure
