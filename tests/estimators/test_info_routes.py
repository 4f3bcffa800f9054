"""Sample propagation, quantized exact counts, binning conventions, Miller-Madow, intervals, IB frontier.

Tolerances for Monte Carlo results are k standard errors of the mean over
independent seeds (k = 4: a false failure ~1 in 16,000 per check under
normality) plus, where stated, a measured finite-sample bias. Coverage checks
use the binomial standard deviation sqrt(c (1 - c) / trials).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from ib_jax.estimators import binning
from ib_jax.estimators.exact import exact_information
from ib_jax.estimators.ib_bound import discrete_mutual_information, frontier_i_ty_at, ib_frontier
from ib_jax.estimators.sp import gaussian_entropy_bits, sp_mutual_information
from ib_jax.models import quantize as Q
from ib_jax.report import stats as S

# ------------------------------------------------------------------ sample propagation


def mixture_entropy_1d(centers, beta):
    """Differential entropy (bits) of the equal-weight mixture of N(c, beta^2) in 1-D, by quadrature."""
    c = np.asarray(centers, np.float64).ravel()

    def pdf(t):
        return np.mean(stats.norm.pdf(t, c, beta))

    f = lambda t: -pdf(t) * np.log2(max(pdf(t), 1e-300))
    return integrate.quad(f, c.min() - 12 * beta, c.max() + 12 * beta, points=np.unique(c)[:50], limit=500)[0]


@jax.jit
def _sp_seeds(centers, beta, keys):
    return jax.vmap(lambda k: sp_mutual_information(centers, beta, k, n_mc=32))(keys)


SP_SEEDS = 8


@pytest.mark.parametrize("beta", [0.1, 0.3])
def test_sp_matches_quadrature_for_points_plus_noise(beta):
    # X uniform on 16 points of [-1, 1], T = x + N(0, beta^2): I = h(mixture) - h(N(0, beta^2))
    pts = np.linspace(-1, 1, 16)
    true = mixture_entropy_1d(pts, beta) - 0.5 * np.log2(2 * np.pi * np.e * beta**2)
    out = _sp_seeds(jnp.asarray(pts, jnp.float32)[None, :, None], jnp.float32(beta), jax.random.split(jax.random.key(1), SP_SEEDS))
    est = np.asarray(out["i_xt"])
    se = est.std(ddof=1) / np.sqrt(SP_SEEDS)
    assert abs(est.mean() - true) < 4 * se + 1e-3, (est.mean(), true, se)
    # the reported Monte Carlo standard error is the spread over seeds (ratio within chi^2 noise, 7 dof)
    assert 0.4 < np.mean(np.asarray(out["i_xt_mc_se"])) / est.std(ddof=1) < 2.5


def test_sp_with_replicas_matches_quadrature_of_the_mixtures():
    # R replicas: SP is unbiased for the entropies of the given mixtures; h(T) over all n R centres,
    # h(T|X) the mean over inputs of the R-component mixtures
    rng = np.random.default_rng(0)
    beta, R, n = 0.2, 4, 6
    centers = rng.normal(size=(R, n, 1)) * 0.3 + np.linspace(-1, 1, n)[None, :, None]
    h_t = mixture_entropy_1d(centers, beta)
    h_tx = np.mean([mixture_entropy_1d(centers[:, i], beta) for i in range(n)])
    out = _sp_seeds(jnp.asarray(centers, jnp.float32), jnp.float32(beta), jax.random.split(jax.random.key(2), SP_SEEDS))
    for key, true in (("h_t", h_t), ("h_t_given_x", h_tx), ("i_xt", h_t - h_tx)):
        est = np.asarray(out[key])
        assert abs(est.mean() - true) < 4 * est.std(ddof=1) / np.sqrt(SP_SEEDS) + 1e-3, (key, est.mean(), true)
    np.testing.assert_allclose(np.asarray(out["h_t"] - out["h_t_given_x"]), np.asarray(out["i_xt"]), atol=1e-4)


_sp = jax.jit(sp_mutual_information, static_argnames=("n_mc", "block"))


def test_sp_limits_and_identities():
    key = jax.random.key(3)
    same = _sp(jnp.zeros((1, 32, 3)), 0.1, key, n_mc=4)
    assert float(same["i_xt"]) == pytest.approx(0.0, abs=1e-5)
    assert float(same["h_x_given_t"]) == pytest.approx(5.0, abs=1e-5)
    assert float(same["h_t_given_x"]) == pytest.approx(float(gaussian_entropy_bits(3, 0.1)), abs=1e-5)  # R = 1: exact
    far = _sp(jnp.zeros((1, 32, 3)).at[0, :, 0].set(jnp.arange(32.0) * 100.0), 0.1, key, n_mc=4)
    assert float(far["i_xt"]) == pytest.approx(5.0, abs=1e-5)
    mid = _sp(jax.random.normal(jax.random.key(4), (1, 32, 3)), 0.5, key, n_mc=4)
    assert float(mid["i_xt"] + mid["h_x_given_t"]) == pytest.approx(5.0, abs=1e-5)
    assert 0.0 < float(mid["i_xt"]) < 5.0
    assert float(mid["h_t"] - mid["h_t_given_x"]) == pytest.approx(float(mid["i_xt"]), abs=1e-5)


def test_sp_blocks_padding_and_vmap_do_not_change_results():
    key = jax.random.key(5)
    c = jax.random.normal(jax.random.key(6), (2, 40, 3))
    a = _sp(c, 0.4, key, n_mc=2, block=7)
    b = _sp(c, 0.4, key, n_mc=2)  # one block of all 160 evaluation points
    for k in ("i_xt", "h_t", "h_t_given_x"):
        assert float(a[k]) == pytest.approx(float(b[k]), abs=1e-5)
    # a padded stack of layers (widths 1 and 3), vmapped over layers and over members' keys,
    # equals per-layer calls on the unpadded layers (the noise does not depend on the padding)
    from ib_jax.estimators import pad_layers

    stacked, mask = pad_layers([c[..., :1], c])  # (L, R, n, 3)
    keys = jax.random.split(key, 2)
    f = jax.jit(
        jax.vmap(jax.vmap(lambda t, k, m: sp_mutual_information(t, 0.4, k, n_mc=2, unit_mask=m)["i_xt"], (None, 0, None)), (0, None, 0))
    )
    got = f(stacked, keys, mask)
    for m_ in range(2):
        assert float(got[1, m_]) == pytest.approx(float(_sp(c, 0.4, keys[m_], n_mc=2)["i_xt"]), abs=1e-5)
        assert float(got[0, m_]) == pytest.approx(float(_sp(c[..., :1], 0.4, keys[m_], n_mc=2)["i_xt"]), abs=1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sp_mutual_information(jnp.zeros((4, 2)), 0.1, jax.random.key(0)), "rank 3"),
        (lambda: sp_mutual_information(jnp.zeros((1, 4, 2)), 0.0, jax.random.key(0)), "beta"),
        (lambda: sp_mutual_information(jnp.zeros((1, 4, 2)), 0.1, jax.random.key(0), n_mc=0), "n_mc"),
    ],
)
def test_sp_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sp_nan_in_nan_out():
    out = _sp(jnp.zeros((1, 32, 3)).at[0, 3, 1].set(jnp.nan), 0.1, jax.random.key(0), n_mc=4)
    assert all(np.isnan(float(v)) for v in out.values())


# ------------------------------------------------------------------ quantization


def test_quantize_levels_and_straight_through_gradient():
    x = jnp.linspace(-1.5, 1.5, 1001)
    for bits in (2, 4, 8):
        q = Q.quantize(x, bits, -1.0, 1.0)
        step = 2.0 / (2**bits - 1)
        levels = np.unique(np.asarray(q))
        assert len(levels) == 2**bits
        np.testing.assert_allclose(levels, -1.0 + step * np.arange(2**bits), atol=1e-6)
        assert np.max(np.abs(np.asarray(q) - np.clip(np.asarray(x), -1, 1))) <= step / 2 + 1e-6
        np.testing.assert_array_equal(np.asarray(Q.quantize_codes(x, bits, -1.0, 1.0)), np.round((np.asarray(q) + 1) / step))
    g = jax.grad(lambda v: jnp.sum(Q.quantize(v, 4, -1.0, 1.0)))(x)
    np.testing.assert_array_equal(np.asarray(g), (np.abs(np.asarray(x)) <= 1.0).astype(np.float32))
    # per-unit traced ranges broadcast over rows
    t = jax.random.uniform(jax.random.key(0), (500, 3), minval=-2, maxval=2)
    qt = jax.jit(lambda t, lo, hi: Q.quantize(t, 3, lo, hi))(t, jnp.array([-2.0, -1.0, 0.0]), jnp.array([2.0, 1.0, 2.0]))
    assert [len(np.unique(np.asarray(qt[:, u]))) for u in range(3)] == [8, 8, 8]


def test_nudged_range_puts_zero_on_the_grid_like_tensorflow():
    # TF Nudge: scale = (max - min) / 15; zero_point = round(-min / scale) = round(0.3 / (1.3 / 15)) = round(3.46) = 3
    lo, hi = Q.nudged_range(-0.3, 1.0, 4)
    scale = 1.3 / 15
    assert float(lo) == pytest.approx(-3 * scale, rel=1e-6) and float(hi) == pytest.approx(12 * scale, rel=1e-6)
    q = Q.quantize(jnp.linspace(-1, 2, 301), 4, -0.3, 1.0, zero_exact=True)
    assert np.min(np.abs(np.asarray(q))) == 0.0
    lo, hi = Q.nudged_range(0.5, 2.0, 8)  # range above 0: shifted to start at 0 (same width)
    assert float(lo) == 0.0 and float(hi) == pytest.approx(1.5, rel=1e-6)


def test_ema_range_converges_to_the_zero_widened_batch_range():
    state = Q.ema_range_init()
    x = jnp.array([[0.5, 2.0], [1.0, 3.0]])  # positive batch: lo tends to 0, hi to 3

    def body(s, _):
        return Q.ema_range_update(s, x), None

    (lo, hi), _ = jax.lax.scan(body, state, None, length=20000)
    # after k steps the distance to the target is 0.999^k of the initial one (0.999^20000 ~ 2e-9), but in
    # float32 the update stalls once 0.001 |3 - hi| is below ~1 ulp(3) = 2.4e-7 (|3 - hi| < 2.4e-4), and
    # float32(0.999) + float32(0.001) != 1 moves the fixed point by ~4e-5
    assert float(lo) == pytest.approx(0.0, abs=1e-6) and float(hi) == pytest.approx(3.0, abs=3e-4)
    lo1, _ = Q.ema_range_update(state, x)
    assert float(lo1) == pytest.approx(0.999 * -6.0, abs=1e-6)


# ------------------------------------------------------------------ exact counts of quantized layers


def np_exact(t, y):
    """Independent reference: np.unique on the float rows themselves."""
    t = np.asarray(t, np.float64)
    n = len(t)

    def h(a):
        _, c = np.unique(a, axis=0, return_counts=True)
        p = c / n
        return -np.sum(p * np.log2(p))

    return h(t), h(t) + h(np.asarray(y)[:, None]) - h(np.c_[t, y])


_exact = jax.jit(exact_information, static_argnames=("n_classes", "bits", "zero_exact", "miller_madow", "grid_tol"))


@pytest.mark.parametrize("bits,mode", [(4, "grid"), (8, "grid"), (4, "layer"), (8, "layer"), (3, "unit")])
def test_exact_information_matches_unique_rows(bits, mode):
    rng = np.random.default_rng(bits)
    t = np.tanh(rng.normal(size=(600, 5)) * 0.8).astype(np.float32)
    y = rng.integers(0, 3, 600)
    if mode == "unit":  # per-unit ranges
        lo, hi = jnp.asarray(t.min(0)), jnp.asarray(t.max(0))
    elif mode == "layer":  # the reference code's batch-range tanh quantizer
        lo, hi = Q.batch_range(t)
    else:
        lo, hi = -1.0, 1.0
    tq = Q.quantize(jnp.asarray(t), bits, lo, hi)
    kw = {} if mode == "layer" else {"lo": lo, "hi": hi}  # "layer": codes from the layer's own range
    ours = _exact(tq, jnp.asarray(y), n_classes=3, bits=bits, **kw)
    h_ref, i_ty_ref = np_exact(tq, y)
    assert float(ours["h_t"]) == pytest.approx(h_ref, abs=1e-4)
    assert float(ours["i_ty"]) == pytest.approx(i_ty_ref, abs=1e-4)
    assert float(ours["h_x_given_t"]) == pytest.approx(np.log2(600) - h_ref, abs=1e-4)


def test_exact_information_off_grid_is_nan_and_padding_is_ignored():
    t = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (100, 3)), jnp.float32)
    assert np.isnan(float(_exact(t, bits=4, lo=-1.0, hi=1.0)["h_t"]))  # not quantized
    tq = Q.quantize(t, 4, -1.0, 1.0)
    plain = _exact(tq, bits=4, lo=-1.0, hi=1.0)
    padded = _exact(jnp.pad(tq, ((0, 0), (0, 2))), bits=4, lo=-1.0, hi=1.0, unit_mask=jnp.arange(5) < 3)
    assert float(plain["h_t"]) == pytest.approx(float(padded["h_t"]), abs=1e-6)
    assert float(plain["h_t"]) == pytest.approx(np_exact(tq, np.zeros(100))[0], abs=1e-4)


# ------------------------------------------------------------------ binning conventions


def test_per_unit_ranges_unit_data_range_and_bin_width():
    rng = np.random.default_rng(1)
    t = (rng.normal(size=(400, 4)) * np.array([0.1, 1.0, 3.0, 10.0])).astype(np.float32)
    lo, hi = t.min(0), t.max(0)
    n_bins = 7
    ref = np.clip(np.floor((t - lo) / (hi - lo) * n_bins), 0, n_bins - 1).astype(int) + 1
    by_arrays = binning.bin_codes(jnp.asarray(t), n_bins=n_bins, lo=jnp.asarray(lo), hi=jnp.asarray(hi))
    by_unit = binning.bin_codes(jnp.asarray(t), n_bins=n_bins, lo=None, hi=None, data_range="unit")
    assert np.mean(np.asarray(by_arrays) == ref) > 0.999  # float32 vs float64 edges may differ at a boundary
    np.testing.assert_array_equal(np.asarray(by_arrays), np.asarray(by_unit))
    # width 0.125 from -1: identical to 16 bins over [-1, 1] (both scales are exactly 8 in float32)
    u = jnp.asarray(np.tanh(rng.normal(size=(300, 3))), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(binning.bin_codes(u, n_bins=16, lo=-1.0, hi=1.0, bin_width=0.125)), np.asarray(binning.bin_codes(u, n_bins=16))
    )
    assert binning.n_bins_for_width(-1.0, 1.0, 0.125) == 16
    with pytest.raises(ValueError, match="n_bins >= 16"):
        binning.bin_codes(u, n_bins=10, lo=-1.0, hi=1.0, bin_width=0.125)
    # data range + width (unbounded ReLU): bins counted from the layer minimum
    r = jnp.asarray(np.maximum(rng.normal(size=(200, 2)) * 3, 0), jnp.float32)
    codes = binning.bin_codes(r, n_bins=200, lo=None, hi=None, bin_width=0.1)
    np.testing.assert_array_equal(np.asarray(codes), np.minimum(np.floor(np.asarray(r) / np.float32(0.1)), 199) + 1)


def test_whole_run_range():
    snaps = jax.random.normal(jax.random.key(0), (5, 30, 4)) * jnp.array([1.0, 2.0, 3.0, 0.0])
    lo, hi = binning.whole_run_range(snaps)
    assert float(lo) == float(snaps.min()) and float(hi) == float(snaps.max())
    lo_u, hi_u = binning.whole_run_range(snaps, per_unit=True)
    np.testing.assert_array_equal(np.asarray(lo_u[:3]), np.asarray(snaps.min(axis=(0, 1))[:3]))
    assert float(hi_u[3]) == float(lo_u[3]) + 1.0  # a constant unit gets a valid range
    lo_m, hi_m = binning.whole_run_range(snaps + 50.0 * (jnp.arange(4) == 3), unit_mask=jnp.arange(4) < 3)
    assert float(hi_m) == float(hi)  # the masked unit (at 50) is left out
    # every snapshot binned with the whole-run edges, vmapped
    h = jax.jit(jax.vmap(lambda s, lo, hi: binning.binned_entropy(s, n_bins=10, lo=lo, hi=hi), (0, None, None)))(snaps, lo_u, hi_u)
    assert h.shape == (5,) and np.all(np.isfinite(np.asarray(h)))


# ------------------------------------------------------------------ Miller-Madow


MM_SETS, MM_N = 400, 60


@jax.jit
def _plugin_and_mm(t):
    plug = jax.vmap(lambda s: binning.binned_entropy(s, n_bins=4))(t)
    mm = jax.vmap(lambda s: binning.binned_information(s, n_bins=4, miller_madow=True))(t)
    return plug, mm["h_t"], mm["n_patterns_t"]


def test_miller_madow_reduces_the_plugin_bias():
    # 16 patterns (2 units x 4 bins) with geometric-ish probabilities; n = 60 draws per set
    rng = np.random.default_rng(2)
    p = 0.8 ** np.arange(16)
    p /= p.sum()
    true = -np.sum(p * np.log2(p))
    centres = np.array([[a, b] for a in (-0.75, -0.25, 0.25, 0.75) for b in (-0.75, -0.25, 0.25, 0.75)], np.float32)
    idx = rng.choice(16, p=p, size=(MM_SETS, MM_N))
    plug, mm, m = (np.asarray(v) for v in _plugin_and_mm(jnp.asarray(centres[idx])))
    np.testing.assert_array_equal(m, [len(np.unique(r)) for r in idx])
    np.testing.assert_allclose(mm - plug, (m - 1) / (2 * MM_N * np.log(2)), atol=1e-5)
    bias_plug, bias_mm = plug.mean() - true, mm.mean() - true
    se = mm.std(ddof=1) / np.sqrt(MM_SETS)
    assert bias_plug < -4 * plug.std(ddof=1) / np.sqrt(MM_SETS)  # the plug-in is biased low, detectably
    assert abs(bias_mm) < abs(bias_plug) / 2
    assert abs(bias_mm) < 4 * se + 0.02  # Miller-Madow's remaining O(1/n^2) bias is small here (measured ~0.01)


def test_miller_madow_with_labels_matches_numpy():
    rng = np.random.default_rng(3)
    t = rng.choice([-0.5, 0.5], size=(300, 3)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    both = jax.jit(
        lambda t, y: (
            binning.binned_information(t, y, n_classes=3, n_bins=2, miller_madow=True),
            binning.binned_information(t, y, n_classes=3, n_bins=2),
        )
    )
    out, plain = both(jnp.asarray(t), jnp.asarray(y))
    m_t = len(np.unique(t, axis=0))
    m_ty = len(np.unique(np.c_[t, y], axis=0))
    c = 1 / (2 * 300 * np.log(2))
    assert float(out["h_t"]) == pytest.approx(float(plain["h_t"]) + (m_t - 1) * c, abs=1e-5)
    assert float(out["h_ty"]) == pytest.approx(float(plain["h_ty"]) + (m_ty - 1) * c, abs=1e-5)
    assert float(out["h_y"]) == pytest.approx(float(plain["h_y"]) + 2 * c, abs=1e-5)
    assert float(out["n_patterns_ty"]) == m_ty


# ------------------------------------------------------------------ intervals


def test_t_interval_coverage_is_nominal():
    trials, n = 4000, 8
    x = np.random.default_rng(4).normal(1.5, 2.0, size=(trials, n))
    mean, lo, hi = S.t_interval(x, axis=1, conf=0.95)
    cover = np.mean((lo <= 1.5) & (1.5 <= hi))
    assert abs(cover - 0.95) < 4 * np.sqrt(0.95 * 0.05 / trials)  # binomial sd 0.0034
    np.testing.assert_allclose(mean, x.mean(1))


def test_t_interval_nan_robust():
    x = np.array([[1.0, 2.0, np.nan, 4.0], [np.nan] * 4, [3.0, np.nan, np.nan, np.nan]])
    mean, lo, hi = S.t_interval(x, axis=1)
    ref = stats.t.interval(0.95, 2, loc=np.mean([1, 2, 4]), scale=stats.sem([1, 2, 4]))
    assert mean[0] == pytest.approx(7 / 3) and lo[0] == pytest.approx(ref[0]) and hi[0] == pytest.approx(ref[1])
    assert np.isnan(mean[1]) and np.isnan(lo[1]) and mean[2] == 3.0 and np.isnan(hi[2])


def test_bootstrap_coverage_and_keys():
    trials, n = 300, 30
    x = np.random.default_rng(5).normal(0.0, 1.0, size=(trials, n))
    est, lo, hi = S.bootstrap_interval(x, seed=0, n_boot=1000, axis=1)
    cover = np.mean((lo <= 0.0) & (0.0 <= hi))
    # binomial sd 0.0126 at 300 trials; the percentile bootstrap undercovers ~1-2 points at n = 30
    assert 0.95 - 0.03 - 4 * 0.0126 < cover < 0.95 + 4 * 0.0126
    a = S.bootstrap_interval(x[0], seed=jax.random.key(1), n_boot=500)
    b = S.bootstrap_interval(x[0], seed=jax.random.key(1), n_boot=500)
    assert a == b and a.lo < a.mean < a.hi


def test_paired_difference_uses_the_pairing():
    rng = np.random.default_rng(6)
    trials, n = 2000, 10
    seed_effect = rng.normal(0, 5.0, size=(trials, n))  # shared by both settings of a seed
    a = seed_effect + rng.normal(0, 1.0, size=(trials, n))
    b = seed_effect + rng.normal(0, 1.0, size=(trials, n))  # same distribution: H0 true
    res = S.paired_difference(a, b, axis=1)
    reject = np.mean(res.p_value < 0.05)
    assert abs(reject - 0.05) < 4 * np.sqrt(0.05 * 0.95 / trials)  # a valid test: size 5%
    cover = np.mean((res.lo <= 0) & (0 <= res.hi))
    assert abs(cover - 0.95) < 4 * np.sqrt(0.95 * 0.05 / trials)
    unpaired = S.t_interval(a - b.mean(1, keepdims=True), axis=1)  # ignores the pairing
    assert np.median(res.hi - res.lo) < 0.5 * np.median(unpaired.hi - unpaired.lo)
    shifted = S.paired_difference(a[0] + 4.0, b[0])  # t ~ 4 / (sqrt(2) / sqrt(10)) ~ 9
    assert shifted.p_value < 1e-3 and shifted.n == n
    with pytest.raises(ValueError, match="same shape"):
        S.paired_difference(a[0], b[0, :5])


# ------------------------------------------------------------------ IB frontier


def _hb(p):
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def test_ib_frontier_doubly_symmetric_binary_source_closed_form():
    # X ~ Bern(1/2), Y = X xor Bern(0.1): F(r) = 1 - h(0.1 * (1 - d) + d * 0.9), h(d) = 1 - r (Mrs. Gerber's lemma)
    pc = 0.1
    f = ib_frontier(np.array([[0.5 * (1 - pc), 0.5 * pc], [0.5 * pc, 0.5 * (1 - pc)]]), np.geomspace(0.5, 100, 40))
    inner = (f["i_xt"] > 0.01) & (f["i_xt"] < 0.99)
    assert inner.sum() >= 5
    for r, i in zip(f["i_xt"][inner], f["i_ty"][inner]):
        lo_, hi_ = 0.0, 0.5
        for _ in range(60):  # d = h^{-1}(1 - r) by bisection
            d = (lo_ + hi_) / 2
            lo_, hi_ = (d, hi_) if _hb(d) < 1 - r else (lo_, d)
        assert i == pytest.approx(1 - _hb(pc * (1 - d) + d * (1 - pc)), abs=1e-6)


def test_ib_frontier_endpoints_monotone_and_bounds():
    p = np.random.default_rng(0).dirichlet(np.ones(24) * 0.5).reshape(8, 3)
    f = ib_frontier(p, np.geomspace(0.1, 1e4, 50), n_restarts=2)
    i_xy = discrete_mutual_information(p)
    assert f["i_xt"][0] == pytest.approx(0.0, abs=1e-6) and f["i_ty"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["i_ty"][-1] == pytest.approx(i_xy, abs=1e-4)
    assert np.all(np.diff(f["i_xt"]) >= -1e-7) and np.all(np.diff(f["i_ty"]) >= -1e-7)
    assert np.all(f["i_ty"] <= f["i_xt"] + 1e-9) and np.all(f["i_ty"] <= i_xy + 1e-9)
    assert np.all(f["i_xt"] <= f["h_x"] + 1e-9)
    slopes = np.diff(f["frontier_i_ty"]) / np.diff(f["frontier_i_xt"])
    assert np.all(np.diff(slopes) <= 1e-9) and np.all(slopes >= 0)  # concave, nondecreasing
    assert np.all(frontier_i_ty_at(f, f["i_xt"]) >= f["i_ty"] - 1e-9)


def test_ib_frontier_deterministic_labels_reach_h_y_on_the_diagonal():
    p = np.zeros((8, 2))
    p[np.arange(8), np.arange(8) % 2] = 1 / 8  # Y = X mod 2
    f = ib_frontier(p, np.geomspace(0.1, 100, 30))
    assert f["h_y"] == pytest.approx(1.0)
    assert f["i_ty"][-1] == pytest.approx(1.0, abs=1e-6) and f["i_xt"][-1] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(f["frontier_i_xt"], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(f["frontier_i_ty"], [0.0, 1.0], atol=1e-9)
    assert frontier_i_ty_at(f, 0.4) == pytest.approx(0.4) and frontier_i_ty_at(f, 3.0) == pytest.approx(1.0)
