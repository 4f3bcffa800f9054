"""The noise families of the literature: heavy-tailed, anti-correlated, per-batch, and their statistics.

Tolerances follow from the sample size as in test_noise.py: a mean of N
independent draws of a quantity with standard deviation s is off by more than
5 s / sqrt(N) with probability < 1e-6 (keys are fixed, so the tests are
deterministic anyway). Where samples are correlated the variance inflation is
derived next to the test.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from scipy import stats

from ib_jax import noise
from ib_jax import noise as batch_noise
from ib_jax.noise import schedules
from ib_jax.train import gradient_stats

G = {"w": jnp.linspace(-1.0, 2.0, 24).reshape(4, 6), "b": jnp.array([0.5, -3.0, 0.25])}
D = 27
G_FLAT = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(G)])
G2 = float(np.sum(G_FLAT**2))
EULER = 0.5772156649015329


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def _var_log_stable(alpha):
    """Var log|S| of a standard symmetric alpha-stable S (Kuruoglu 2001)."""
    return np.pi**2 / 12 * (2 / alpha**2 + 1)


# ------------------------------------------------------------- heavy-tailed


@functools.cache
def _heavy_sampler(scope="global"):
    """jit(vmap over keys) of one heavy_tailed update on G; alpha and snr traced (one compile)."""

    def one(key, snr, alpha):
        tx = noise.heavy_tailed(snr, key, alpha=alpha, scope=scope)
        out, st = tx.update(G, tx.init(G))
        return _flat(out), st.realized_snr, st.angle

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def _heavy(alpha, snr=1.0, n=4000, seed=0, scope="global"):
    keys = jax.random.split(jax.random.key(seed), n)
    out, rs, ang = _heavy_sampler(scope)(keys, jnp.float32(snr), jnp.float32(alpha))
    return np.asarray(out, np.float64) - G_FLAT, np.asarray(rs, np.float64), np.asarray(ang)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0])
def test_heavy_tailed_characteristic_function(alpha):
    snr = 0.5
    xi, _, _ = _heavy(alpha, snr)
    c = np.sqrt(G2 / (2 * D * snr))
    s = (xi / c).ravel()  # N * D iid standard SalphaS draws (c depends on g only)
    assert np.isfinite(s).all()
    n = s.size
    for u in [0.25, 0.5, 1.0, 2.0, 4.0]:
        phi, phi2 = np.exp(-(u**alpha)), np.exp(-((2 * u) ** alpha))
        # Var cos(uS) = (1 + phi(2u))/2 - phi(u)^2 ; Var sin(uS) = (1 - phi(2u))/2
        sd_re = np.sqrt((1 + phi2) / 2 - phi**2)
        sd_im = np.sqrt((1 - phi2) / 2)
        assert abs(np.cos(u * s).mean() - phi) < 5 * sd_re / np.sqrt(n) + 1e-6, u
        assert abs(np.sin(u * s).mean()) < 5 * sd_im / np.sqrt(n) + 1e-6, u
    # location-free scale check: E log|S| = C_e (1/alpha - 1)
    assert abs(np.log(np.abs(s)).mean() - EULER * (1 / alpha - 1)) < 5 * np.sqrt(_var_log_stable(alpha) / n)


def test_heavy_tailed_alpha2_is_isotropic():
    snr = 2.0
    xi, _, _ = _heavy(2.0, snr)
    # power: ||xi||^2 / sigma^2 ~ chi2_D, relative sd of the mean sqrt(2 / (D N))
    ratio = G2 / np.sum(xi**2, axis=1).mean()
    assert abs(ratio / snr - 1) < 5 * np.sqrt(2.0 / (D * len(xi)))

    @jax.jit
    @jax.vmap
    def iso(key):
        tx = noise.isotropic(snr, key)
        return _flat(tx.update(G, tx.init(G))[0])

    xi_iso = np.asarray(iso(jax.random.split(jax.random.key(9), 4000)), np.float64) - G_FLAT
    assert stats.ks_2samp(xi[:, :6].ravel(), xi_iso[:, :6].ravel()).pvalue > 1e-3
    # and the sample is Gaussian with the isotropic sigma
    sigma = np.sqrt(G2 / (D * snr))
    assert stats.kstest(xi[:, :6].ravel() / sigma, "norm").pvalue > 1e-3


def test_heavy_tailed_heavier_tails_below_two():
    # at equal scale c, P(|S| > 10) is ~1e-12 for alpha = 2 but ~2 Gamma(a) sin(pi a/2)/pi 10^-a for a < 2
    xi, _, _ = _heavy(1.5, 1.0)
    s = (xi / np.sqrt(G2 / (2 * D))).ravel()
    p_tail = 2 * stats.levy_stable.sf(10.0, 1.5, 0.0)  # scipy's S1 parametrization, scale 1 = exp(-|u|^a)
    frac = np.mean(np.abs(s) > 10)
    assert abs(frac - p_tail) < 5 * np.sqrt(p_tail * (1 - p_tail) / s.size)
    assert p_tail > 1e-2


def test_heavy_tailed_realized_snr_scale_convention():
    snr, alpha = 3.0, 1.5
    _, rs, ang = _heavy(alpha, snr, seed=3)
    # log realized = log snr - 2 (mean_i log|S_i| - E log|S|): mean 0, sd 2 sqrt(V / D)
    lr = np.log(rs / snr)
    sd = 2 * np.sqrt(_var_log_stable(alpha) / D)
    assert abs(lr.mean()) < 5 * sd / np.sqrt(len(lr))
    # the sd itself: relative standard error of a sample sd is sqrt((kurtosis - 1) / (4 N))
    kurt = stats.kurtosis(lr, fisher=False)
    assert abs(lr.std() / sd - 1) < 5 * np.sqrt((kurt - 1) / (4 * len(lr)))
    assert np.all((ang > 0) & (ang < np.pi))


def test_heavy_tailed_per_leaf_scale():
    # alpha = 1: |S| is half-Cauchy with median 1 and density 1/pi at 1, so the
    # sample median of n draws has sd pi / (2 sqrt(n))
    xi, rs, _ = _heavy(1.0, 2.0, scope="per_leaf")
    start = 0
    for leaf in jax.tree.leaves(G):
        sl = slice(start, start + leaf.size)
        start += leaf.size
        c = np.sqrt(np.sum(G_FLAT[sl] ** 2) / (2 * leaf.size * 2.0))
        a = np.abs(xi[:, sl] / c).ravel()
        assert abs(np.median(a) - 1) < 5 * np.pi / (2 * np.sqrt(a.size))
    # whole-tree realized SNR: the leaf-size-weighted log average, still unbiased in log, sd 2 sqrt(V / D)
    assert abs(np.log(rs / 2.0).mean()) < 5 * 2 * np.sqrt(_var_log_stable(1.0) / D) / np.sqrt(len(rs))


def test_heavy_tailed_vmap_over_alpha_matches_constant_alpha():
    alphas = jnp.array([0.8, 1.0, 1.7, 2.0])

    def one(alpha):
        tx = noise.heavy_tailed(1.0, 5, alpha=alpha)
        return _flat(tx.update(G, tx.init(G))[0])

    batched = np.asarray(jax.jit(jax.vmap(one))(alphas))
    for i, a in [(1, 1.0), (2, 1.7)]:  # a Python-float alpha is a compile-time constant
        np.testing.assert_allclose(batched[i], np.asarray(jax.jit(functools.partial(one, a))()), rtol=2e-5, atol=1e-6)
    assert np.all(np.isfinite(batched)) and len({tuple(r) for r in batched}) == 4


@pytest.mark.parametrize("alpha", [0.0, -1.0, 2.5, float("nan"), jnp.array([1.0, 3.0])])
def test_heavy_tailed_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        noise.heavy_tailed(1.0, 0, alpha=alpha)


# ------------------------------------------------------------- shared contract

FAMILIES = [
    ("heavy_tailed", {"alpha": 1.3}),
    ("heavy_tailed", {"alpha": 0.7, "scope": "per_leaf"}),
    ("anticorrelated", {}),
    ("anticorrelated", {"scope": "per_leaf"}),
]


@pytest.mark.parametrize("kind,kw", FAMILIES)
def test_inf_snr_is_bit_identity(kind, kw):
    g = {"a": jnp.array([-0.0, 1.5, -2.0, 1e-30]), "b": jnp.array([[3.0, -0.0]])}
    tx = getattr(noise, kind)(float("inf"), 0, **kw)
    out, st = jax.jit(tx.update)(g, tx.init(g))
    for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(out)):
        assert np.array_equal(np.asarray(x).view(np.uint32), np.asarray(y).view(np.uint32))
    (d,) = noise.diagnostics(st)
    assert float(d.realized_snr) == np.inf and float(d.angle) == 0.0


@pytest.mark.parametrize("kind,kw", FAMILIES)
def test_zero_gradient_no_nan_no_noise(kind, kw):
    z = jax.tree.map(jnp.zeros_like, G)
    tx = getattr(noise, kind)(0.5, 0, **kw)
    out, st = jax.jit(tx.update)(z, tx.init(z))
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(out))
    (d,) = noise.diagnostics(st)
    assert float(d.realized_snr) == np.inf and float(d.angle) == 0.0


@pytest.mark.parametrize("kind,kw", FAMILIES)
def test_population_init_and_chains(kind, kw):
    p = 3
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (p,) + x.shape), G)
    tx = optax.chain(optax.sgd(0.1), getattr(noise, kind)(jnp.float32(2.0), 0, **kw))
    with pytest.raises(ValueError, match="share a PRNG key"):
        noise.check_independent_keys(jax.vmap(tx.init)(params))
    state = noise.population_init(tx, params, jax.random.split(jax.random.key(0), p))
    noise.check_independent_keys(state)
    if kind == "anticorrelated":  # reseeding also redraws z_{-1}
        z = np.asarray(noise.state._noise_states(state)[0].z_prev["w"]).reshape(p, -1)
        assert len({tuple(r) for r in z}) == p
    u, state = jax.jit(jax.vmap(tx.update))(params, state, params)
    flat = np.asarray(u["w"]).reshape(p, -1)
    assert len({tuple(r) for r in flat}) == p
    (d,) = noise.diagnostics(state)
    assert d.realized_snr.shape == (p,) and np.all(np.isfinite(np.asarray(d.realized_snr)))


@pytest.mark.parametrize("kind", ["heavy_tailed", "anticorrelated"])
def test_bad_level_and_scope(kind):
    with pytest.raises(ValueError, match="snr"):
        getattr(noise, kind)(0.0, 0)
    with pytest.raises(ValueError, match="scope"):
        getattr(noise, kind)(1.0, 0, scope="layer")


# ------------------------------------------------------------- anti-correlated

N_RUNS, T_STEPS = 200, 64


@functools.cache
def _walk(kind, scope="global"):
    """jit(vmap over keys) of T updates on the constant gradient G (lax.scan over steps).

    Returns the noise n_t = out_t - g (runs, T, D), z_{-1} and z_{T-1} flattened.
    """

    def run(key, snr):
        tx = getattr(noise, kind)(snr, key, **({"scope": scope} if kind == "anticorrelated" else {}))
        st0 = tx.init(G)

        def step(st, _):
            out, st = tx.update(G, st)
            return st, _flat(out) - _flat(G)

        st, ns = jax.lax.scan(step, st0, None, length=T_STEPS)
        z = (lambda s: _flat(s.z_prev)) if kind == "anticorrelated" else (lambda s: jnp.zeros(D))
        return ns, z(st0), z(st)

    return jax.jit(jax.vmap(run, in_axes=(0, None)))


def _walk_draws(kind, snr, scope="global", seed=0):
    keys = jax.random.split(jax.random.key(seed), N_RUNS)
    ns, z0, zt = _walk(kind, scope)(keys, jnp.float32(snr))
    return np.asarray(ns, np.float64), np.asarray(z0, np.float64), np.asarray(zt, np.float64)


def test_anticorrelated_power_ratio():
    snr = 2.0
    ns, _, _ = _walk_draws("anticorrelated", snr)
    power = np.sum(ns**2, axis=2)  # (runs, T), each 2 s^2 chi2_D
    # consecutive powers share z_t: corr(||n_t||^2, ||n_{t+1}||^2) = 1/4, which
    # inflates the variance of the mean by 1 + 2 * 1/4
    rel_sd = np.sqrt(2.0 / D * 1.5 / power.size)
    assert abs(G2 / power.mean() / snr - 1) < 5 * rel_sd


def test_anticorrelated_autocorrelation():
    ns, _, _ = _walk_draws("anticorrelated", 1.0, seed=1)
    n_pairs = ns.shape[0] * ns.shape[2] * (ns.shape[1] - 1)
    var = np.mean(ns**2)
    r1 = np.mean(ns[:, 1:] * ns[:, :-1]) / var
    r2 = np.mean(ns[:, 2:] * ns[:, :-2]) / var
    # Bartlett: for an MA(1) with rho_1 = -1/2, var(r1) = (1 - 3 rho^2 + 4 rho^4)/n = 0.5/n, var(r2) = (1 + 2 rho^2)/n
    assert abs(r1 + 0.5) < 5 * np.sqrt(0.5 / n_pairs)
    assert abs(r2) < 5 * np.sqrt(1.5 / n_pairs)


def test_anticorrelated_cumulative_sum_stays_bounded():
    snr = 1.0
    ns, z0, zt = _walk_draws("anticorrelated", snr, seed=2)
    total = ns.sum(axis=1)  # (runs, D)
    s = np.sqrt(G2 / (2 * D * snr))
    # constant gradient => the sum telescopes exactly to s (z_{T-1} - z_{-1})
    np.testing.assert_allclose(total, s * (zt - z0), atol=2e-4 * s * np.sqrt(T_STEPS))
    # E||sum||^2 = 2 s^2 D = ||g||^2 / snr whatever T (||.||^2 / (2 s^2) ~ chi2_D over runs)
    ratio = np.sum(total**2, axis=1).mean() / (G2 / snr)
    assert abs(ratio - 1) < 5 * np.sqrt(2.0 / (D * N_RUNS))
    # isotropic noise at the same SNR is a random walk: E||sum||^2 = T ||g||^2 / snr
    iso, _, _ = _walk_draws("isotropic", snr, seed=2)
    iso_ratio = np.sum(iso.sum(axis=1) ** 2, axis=1).mean() / (G2 / snr)
    assert abs(iso_ratio / T_STEPS - 1) < 5 * np.sqrt(2.0 / (D * N_RUNS))


def test_anticorrelated_per_leaf_power_and_schedule():
    snr = 0.5
    ns, _, _ = _walk_draws("anticorrelated", snr, scope="per_leaf", seed=4)
    start = 0
    for leaf in jax.tree.leaves(G):
        sl = slice(start, start + leaf.size)
        start += leaf.size
        ratio = np.sum(G_FLAT[sl] ** 2) / np.sum(ns[:, :, sl] ** 2, axis=2).mean()
        assert abs(ratio / snr - 1) < 5 * np.sqrt(2.0 / leaf.size * 1.5 / (N_RUNS * T_STEPS))
    # the SNR schedule is read at every count: off at step 0, on at step 1
    tx = noise.anticorrelated(lambda t: jnp.where(t == 0, jnp.inf, 4.0), 0)
    st = tx.init(G)
    out0, st = tx.update(G, st)
    out1, st = tx.update(G, st)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out0), jax.tree.leaves(G)))
    assert not np.allclose(_flat(out1), _flat(G))
    xi2 = float(jnp.sum((_flat(out1) - _flat(G)) ** 2))
    assert float(st.realized_snr) == pytest.approx(G2 / xi2, rel=1e-4)


# ------------------------------------------------------------- multiplicative weights


@functools.cache
def _weights(variant, n):
    return jax.jit(jax.vmap(lambda k, lv: batch_noise.multiplicative_weights(k, n, lv, variant=variant), in_axes=(0, None)))


@pytest.mark.parametrize("variant", batch_noise.WEIGHT_VARIANTS)
def test_multiplicative_weights_moments_and_unbiased_gradient(variant):
    level, n, n_draws = 2.0, 8, 20000
    v = 1 / level
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(n,)), jnp.float32)
    theta = jnp.array([0.3, -0.2, 0.5])
    per_ex = np.asarray(jax.vmap(jax.grad(lambda t, xi, yi: (xi @ t - yi) ** 2), in_axes=(None, 0, 0))(theta, x, y), np.float64)
    w = np.asarray(_weights(variant, n)(jax.random.split(jax.random.key(1), n_draws), jnp.float32(level)), np.float64)
    # weight moments: E w = 1, Var w = 1/level (sd of a sample variance ~ sqrt((m4 - v^2)/N))
    assert abs(w.mean() - 1) < 5 * np.sqrt(v / w.size)
    m4 = np.mean((w - 1) ** 4)
    assert abs(w.var() - v) < 5 * np.sqrt((m4 - v**2) / w.size)
    if variant == "bernoulli":
        p = level / (1 + level)
        assert abs(np.mean(w > 0) - p) < 5 * np.sqrt(p * (1 - p) / w.size)
    # grad of mean(w_i l_i) is (1/n) sum_i w_i g_i: its mean over draws is the clean gradient,
    # per-coordinate sd sqrt(v sum_i g_ij^2) / n
    gw = w @ per_ex / n  # (draws, 3)
    clean = per_ex.mean(0)
    sd = np.sqrt(v * np.sum(per_ex**2, axis=0)) / n
    assert np.all(np.abs(gw.mean(0) - clean) < 5 * sd / np.sqrt(n_draws))
    # documented power: E||xi||^2 = (v / n) mean_i ||g_i||^2
    xi2 = np.sum((gw - clean) ** 2, axis=1)
    target = v / n * np.mean(np.sum(per_ex**2, axis=1))
    assert abs(xi2.mean() / target - 1) < 5 * xi2.std() / xi2.mean() / np.sqrt(n_draws)


@pytest.mark.parametrize("variant", batch_noise.WEIGHT_VARIANTS)
def test_multiplicative_weights_inf_is_ones_and_vmaps_over_level(variant):
    levels = jnp.array([jnp.inf, 1.0, 10.0])
    w = jax.jit(jax.vmap(lambda lv: batch_noise.multiplicative_weights(jax.random.key(0), 16, lv, variant=variant)))(levels)
    assert np.array_equal(np.asarray(w[0]), np.ones(16, np.float32))
    assert not np.allclose(w[1], 1.0)
    eager = batch_noise.multiplicative_weights(jax.random.key(0), 16, float("inf"), variant=variant)
    assert np.array_equal(np.asarray(eager), np.ones(16, np.float32))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"level": 0.0}, "level"),
        ({"level": -1.0}, "level"),
        ({"level": float("nan")}, "level"),
        ({"level": 1.0, "variant": "uniform"}, "variant"),
        ({"level": 1.0, "n": 0}, "n"),
    ],
)
def test_multiplicative_weights_bad_arguments(kwargs, match):
    kwargs = {"n": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        batch_noise.multiplicative_weights(jax.random.key(0), **kwargs)


# ------------------------------------------------------------- label noise

_label = jax.jit(jax.vmap(lambda k, y, p: batch_noise.label_noise(k, y, p, 5), in_axes=(0, None, None)))


@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])
def test_label_noise_rate_and_uniform_other_class(p):
    k_classes = 5
    y = jnp.arange(200, dtype=jnp.int32) % k_classes
    yn = np.asarray(_label(jax.random.split(jax.random.key(2), 100), y, jnp.float32(p)))
    changed = yn != np.asarray(y)
    n = changed.size
    # every replacement is a different class, so "changed" is exactly "replaced"
    assert abs(changed.mean() - p) < 5 * np.sqrt(max(p * (1 - p), 1e-12) / n)
    if p == 1.0:
        assert changed.all()  # never the true class
    # the replacement is uniform over the K - 1 other classes
    shift = ((yn - np.asarray(y)) % k_classes)[changed]
    counts = np.bincount(shift, minlength=k_classes)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:]).pvalue > 1e-4
    assert yn.dtype == np.int32 and yn.min() >= 0 and yn.max() < k_classes


def test_label_noise_zero_and_fresh():
    y = jnp.arange(50, dtype=jnp.int32) % 3
    assert np.array_equal(np.asarray(batch_noise.label_noise(jax.random.key(0), y, 0.0, 3)), np.asarray(y))
    a = batch_noise.label_noise(jax.random.key(0), y, 0.5, 3)
    b = batch_noise.label_noise(jax.random.key(1), y, 0.5, 3)
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    for bad, match in [({"p": 1.5}, "p"), ({"p": -0.1}, "p"), ({"n_classes": 1}, "n_classes")]:
        kw = {"p": 0.1, "n_classes": 3, **bad}
        with pytest.raises(ValueError, match=match):
            batch_noise.label_noise(jax.random.key(0), y, **kw)


# ------------------------------------------------------------- tail index

_tail = jax.jit(gradient_stats.tail_index)


@pytest.mark.parametrize("alpha", [1.0, 1.5, 1.8])
def test_tail_index_recovers_alpha(alpha):
    k = 1 << 18
    x = noise.symmetric_stable(jax.random.key(int(alpha * 10)), alpha, (k,))
    est = float(_tail(x))
    # 1/alpha_hat = (mean_Y log|Y| - mean_X log|X|) / log K1, K1 = K2 = 512: its sd is at most
    # (sqrt(V/K2) + sqrt(V/K)) / log K1 with V = Var log|S|
    v = _var_log_stable(alpha)
    sd_inv = (np.sqrt(v / 512) + np.sqrt(v / k)) / np.log(512)
    assert abs(1 / est - 1 / alpha) < 5 * sd_inv
    # multivariate form: rows of iid SalphaS coordinates scale the same way
    est_vec = float(gradient_stats.tail_index(x.reshape(-1, 4), vectors=True))
    assert abs(1 / est_vec - 1 / alpha) < 5 * 2 * sd_inv  # K is 4x smaller: sd at most 2x


def test_tail_index_gaussian_is_two_and_bad_k1():
    x = jax.random.normal(jax.random.key(0), (1 << 16,))
    assert float(_tail(x)) > 1.9
    assert float(_tail(x)) <= 2.0
    with pytest.raises(ValueError, match="k1"):
        gradient_stats.tail_index(x, k1=1)


# ------------------------------------------------------------- Tr(H Sigma), B_noise


def _tiny_problem():
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)) * 0.7, jnp.float32), "b": jnp.asarray([0.1, -0.2], jnp.float32)}
    x = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, size=12), jnp.int32)

    def example_loss(p, xi, yi):
        logits = jnp.tanh(xi @ p["w"] + p["b"]) * 2.0
        return -jax.nn.log_softmax(logits)[yi]

    return example_loss, params, x, y


def _dense_curvature(example_loss, params, x, y):
    flat, unravel = ravel_pytree(params)

    def mean_loss(f):
        return jnp.mean(jax.vmap(example_loss, in_axes=(None, 0, 0))(unravel(f), x, y))

    per_example = jax.vmap(jax.grad(lambda f, xi, yi: example_loss(unravel(f), xi, yi)), in_axes=(None, 0, 0))
    h, per = jax.jit(lambda f: (jax.hessian(mean_loss)(f), per_example(f, x, y)))(flat)
    h, per = np.asarray(h, np.float64), np.asarray(per, np.float64)
    g = per.mean(0)
    sigma = (per - g).T @ (per - g) / len(per)
    return np.trace(h @ sigma), g @ h @ g


def test_trace_h_sigma_and_b_noise_match_dense():
    example_loss, params, x, y = _tiny_problem()
    tr, ghg = _dense_curvature(example_loss, params, x, y)
    assert ghg > 0 and tr > 0  # a problem where both are meaningful
    # full float32 matmuls: a GPU's default (TF32) would round at the 1e-4 level compared here
    with jax.default_matmul_precision("highest"):
        out = jax.jit(lambda p: gradient_stats.curvature_noise_stats(example_loss, p, x, y, chunk_size=5))(params)
    assert float(out["trace_h_sigma"]) == pytest.approx(tr, rel=1e-4)
    assert float(out["g_h_g"]) == pytest.approx(ghg, rel=1e-4)
    assert float(out["b_noise"]) == pytest.approx(tr / ghg, rel=2e-4)
    with jax.default_matmul_precision("highest"):
        assert float(gradient_stats.b_noise(example_loss, params, x, y)) == pytest.approx(tr / ghg, rel=2e-4)

    # Hutchinson with one Rademacher probe is unbiased: the mean of N estimates is within 5 sd/sqrt(N)
    @jax.jit
    @jax.vmap
    def hutch(key):
        return gradient_stats.trace_h_sigma(example_loss, params, x, y, key, 1)

    est = np.asarray(hutch(jax.random.split(jax.random.key(0), 4000)), np.float64)
    assert abs(est.mean() - tr) < 5 * est.std() / np.sqrt(len(est))
    assert est.std() > 0
    with pytest.raises(ValueError, match="key"):
        gradient_stats.trace_h_sigma(example_loss, params, x, y, None, 4)


# ------------------------------------------------------------- per-layer stats


def test_layer_gradient_stats_matches_saxe_formula():
    rng = np.random.default_rng(4)
    m = 7
    per_ex = {
        "params": {
            "Dense_0": {
                "kernel": jnp.asarray(rng.normal(size=(m, 3, 4)) + 0.5, jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(m, 4)), jnp.float32),
            },
            "Dense_1": {
                "kernel": jnp.asarray(rng.normal(size=(m, 4, 2)) * 0.1, jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(m, 2)), jnp.float32),
            },
        }
    }
    params = jax.tree.map(lambda a: a[0] * 3.0, per_ex)
    out = jax.jit(lambda g, p: gradient_stats.layer_gradient_stats(g, params=p, batch_size=4.0))(per_ex, params)
    assert list(out) == ["params/Dense_0", "params/Dense_1"]
    for name, layer in [("params/Dense_0", "Dense_0"), ("params/Dense_1", "Dense_1")]:
        leaves = per_ex["params"][layer]
        stacked = np.concatenate([np.asarray(leaves[k], np.float64).reshape(m, -1) for k in ("bias", "kernel")], axis=1)
        mean_norm = np.linalg.norm(stacked.mean(0))
        std = np.linalg.norm(stacked.std(0)) / 2.0  # batch_size 4
        w = np.sqrt(sum(np.sum(np.asarray(params["params"][layer][k], np.float64) ** 2) for k in ("bias", "kernel")))
        np.testing.assert_allclose(float(out[name]["mean_norm"]), mean_norm, rtol=1e-5)
        np.testing.assert_allclose(float(out[name]["std"]), std, rtol=1e-5)
        np.testing.assert_allclose(float(out[name]["snr"]), mean_norm / std, rtol=2e-5)
        np.testing.assert_allclose(float(out[name]["weight_norm"]), w, rtol=1e-5)
    kern = gradient_stats.layer_gradient_stats(per_ex, kernel_only=True)
    k0 = np.asarray(per_ex["params"]["Dense_0"]["kernel"], np.float64).reshape(m, -1)
    np.testing.assert_allclose(float(kern["params/Dense_0"]["std"]), np.linalg.norm(k0.std(0)), rtol=1e-5)
    same = gradient_stats.layer_gradient_stats({"w": jnp.ones((3, 2))})
    assert float(same["w"]["std"]) == 0.0 and float(same["w"]["snr"]) == np.inf


# ------------------------------------------------------------- total-noise normalisation


@pytest.mark.parametrize(
    "make,kind",
    [
        (lambda: schedules.warmup(1.0, 30, 100.0), "snr"),
        (lambda: schedules.cosine(1.0, 80, alpha=0.05), "snr"),
        (lambda: schedules.linear(10.0, 0.5, 50), "snr"),
        (lambda: schedules.anneal(0.01, 0.55), "sigma"),
        (lambda: schedules.cosine(2.0, 80, alpha=0.0), "sigma"),
    ],
)
def test_normalize_total_noise_equalizes_total_power(make, kind):
    steps, level = 100, 3.0
    shape = make()
    norm = schedules.normalize_total_noise(shape, steps, kind=kind)
    t = jnp.arange(steps, dtype=jnp.int32)
    vals, raw = (np.asarray(jax.jit(jax.vmap(f))(t), np.float64) for f in (norm, shape))
    pos = raw > 0  # a sigma schedule may reach 0
    np.testing.assert_allclose(vals[pos] / raw[pos], vals[0] / raw[0], rtol=1e-5)  # a constant rescaling
    assert np.all(vals[~pos] == 0)
    if kind == "snr":
        total = np.sum(1 / (level * vals))
        assert total == pytest.approx(steps / level, rel=1e-5)
    else:
        total = np.sum((level * vals) ** 2)
        assert total == pytest.approx(steps * level**2, rel=1e-5)
    assert not np.allclose(raw, raw[0])  # a real (non-constant) schedule


def test_normalize_total_noise_constant_jit_and_errors():
    one = schedules.normalize_total_noise(schedules.constant(7.0), 10)
    assert float(one(3)) == pytest.approx(1.0, rel=1e-6)
    assert float(schedules.normalize_total_noise(4.0, 10, kind="sigma")(0)) == pytest.approx(1.0, rel=1e-6)
    traced = jax.jit(lambda lv: schedules.normalize_total_noise(schedules.linear(lv, 1.0, 5), 10)(jnp.int32(0)))
    ref = schedules.normalize_total_noise(schedules.linear(4.0, 1.0, 5), 10)(0)
    assert float(traced(4.0)) == pytest.approx(float(ref), rel=1e-5)
    # an inf-SNR step adds no noise: it counts 0
    half = schedules.normalize_total_noise(lambda t: jnp.where(t < 5, jnp.inf, 1.0), 10)
    assert float(half(7)) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="kind"):
        schedules.normalize_total_noise(schedules.constant(1.0), 10, kind="power")
    with pytest.raises(ValueError, match="steps"):
        schedules.normalize_total_noise(schedules.constant(1.0), 0)
    with pytest.raises(ValueError, match="SNR multiplier"):
        schedules.normalize_total_noise(schedules.cosine(1.0, 5), 10)  # reaches snr 0
    with pytest.raises(ValueError, match="SNR multiplier"):
        schedules.normalize_total_noise(schedules.constant(float("inf")), 10)
