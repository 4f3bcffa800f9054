"""Statistical and algebraic properties of the noise transforms.

Tolerances are derived from the sample size: with N independent draws, a mean
of a quantity with standard deviation s is off by more than 5 s / sqrt(N) with
probability < 1e-6 (keys are fixed, so the tests are deterministic anyway).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

from ib_jax import noise
from ib_jax.noise import schedules

G = {"w": jnp.linspace(-1.0, 2.0, 24).reshape(4, 6), "b": jnp.array([0.5, -3.0, 0.25])}
D = 27
N_DRAWS = 2000


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _angle64(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ah, bh = a / np.linalg.norm(a, axis=-1, keepdims=True), b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 2 * np.arctan2(np.linalg.norm(ah - bh, axis=-1), np.linalg.norm(ah + bh, axis=-1))


@functools.cache
def _sampler(kind, **kw):
    """jit(vmap over keys) of one update on G: returns (noisy flat, realized snr, angle)."""

    def one(key, snr):
        tx = getattr(noise, kind)(snr, key, **kw)
        out, state = tx.update(G, tx.init(G))
        flat = jnp.concatenate([x.ravel() for x in jax.tree.leaves(out)])
        return flat, state.realized_snr, state.angle

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _draws(kind, snr, n=N_DRAWS, seed=0, **kw):
    keys = jax.random.split(jax.random.key(seed), n)
    out, rs, ang = _sampler(kind, **kw)(keys, jnp.float32(snr))
    return np.asarray(out, np.float64), np.asarray(rs), np.asarray(ang)


# ----------------------------------------------------------------- isotropic


@pytest.mark.parametrize("snr", [0.1, 1.0, 10.0])
def test_isotropic_power_snr(snr):
    out, _, _ = _draws("isotropic", snr)
    g = _flat(G)
    xi2 = np.sum((out - g) ** 2, axis=1)
    # ||xi||^2 / sigma^2 ~ chi2_D: relative std of the mean is sqrt(2 / (D N))
    rel_tol = 5 * np.sqrt(2.0 / (D * N_DRAWS))
    ratio = np.sum(g**2) / xi2.mean()
    assert abs(ratio / snr - 1) < rel_tol


def test_isotropic_is_gaussian_and_isotropic():
    out, _, _ = _draws("isotropic", 1.0)
    g = _flat(G)
    sigma = np.sqrt(np.sum(g**2) / D)
    z = (out - g) / sigma  # should be N(0, I_D)
    # mean 0 per coordinate: std of a mean of N unit normals is 1/sqrt(N)
    assert np.abs(z.mean(0)).max() < 5 / np.sqrt(N_DRAWS)
    # per-coordinate variance 1: std of a sample variance is sqrt(2/N)
    assert np.abs(z.var(0) - 1).max() < 5 * np.sqrt(2.0 / N_DRAWS)
    # no preferred direction: off-diagonal covariances ~ N(0, 1/N)
    cov = np.cov(z.T)
    off = cov[~np.eye(D, dtype=bool)]
    assert np.abs(off).max() < 5.5 / np.sqrt(N_DRAWS)
    # Gaussian marginal (pooled coordinates)
    assert stats.kstest(z[:, :8].ravel(), "norm").pvalue > 1e-3
    # the component along g is not special: its variance is 1 too
    along = z @ (g / np.linalg.norm(g))
    assert abs(along.var() - 1) < 5 * np.sqrt(2.0 / N_DRAWS)


def test_isotropic_per_leaf_snr_holds_per_leaf():
    snr = 2.0
    out, _, _ = _draws("isotropic", snr, scope="per_leaf")
    g = _flat(G)
    sizes = [x.size for x in jax.tree.leaves(G)]
    start = 0
    for size in sizes:
        sl = slice(start, start + size)
        start += size
        ratio = np.sum(g[sl] ** 2) / np.sum((out[:, sl] - g[sl]) ** 2, axis=1).mean()
        assert abs(ratio / snr - 1) < 5 * np.sqrt(2.0 / (size * N_DRAWS))


# ----------------------------------------------------------------------- cone


@pytest.mark.parametrize("snr", [0.05, 1.0, 25.0])
def test_cone_surface_angle_and_orthogonality(snr):
    out, rs, ang = _draws("cone", snr, n=256, mode="surface")
    g = _flat(G)
    theta = np.arctan(1 / np.sqrt(snr))
    measured = _angle64(np.broadcast_to(g, out.shape), out)
    assert np.abs(measured - theta).max() < 1e-5
    assert np.abs(ang - theta).max() < 1e-5
    xi = out - g
    cos = xi @ g / (np.linalg.norm(xi, axis=1) * np.linalg.norm(g))
    assert np.abs(cos).max() < 1e-5
    np.testing.assert_allclose(rs, snr, rtol=1e-4)


def _cap_cdf(phi, theta, dim):
    a = (dim - 1) / 2
    return special.betainc(a, 0.5, np.sin(phi) ** 2) / special.betainc(a, 0.5, np.sin(theta) ** 2)


@pytest.mark.parametrize("dim,snr", [(3, 0.5), (5, 0.2)])
def test_cone_cap_follows_solid_angle_law(dim, snr):
    g = jnp.arange(1.0, dim + 1.0)
    theta = np.arctan(1 / np.sqrt(snr))

    @jax.jit
    @jax.vmap
    def one(key):
        tx = noise.cone(snr, key, mode="cap")
        return tx.update(g, tx.init(g))[0]

    out = np.asarray(one(jax.random.split(jax.random.key(1), 4000)), np.float64)
    phi = _angle64(np.broadcast_to(np.asarray(g), out.shape), out)
    assert phi.max() <= theta + 1e-5
    result = stats.kstest(phi, lambda p: _cap_cdf(np.minimum(p, theta), theta, dim))
    assert result.pvalue > 1e-3, result
    # and it is *not* the surface law (all mass at theta) nor uniform in angle
    assert stats.kstest(phi, stats.uniform(0, theta).cdf).pvalue < 1e-3


def test_cone_cap_high_dimension_concentrates_near_rim():
    # in D = 2000 the cap's mass sits within O(1/D) of the rim
    dim, snr = 2000, 1.0
    g = jnp.ones(dim)
    theta = np.arctan(1.0)
    tx = noise.cone(snr, 0, mode="cap")
    out = np.asarray(tx.update(g, tx.init(g))[0], np.float64)
    phi = _angle64(np.asarray(g), out)
    assert theta - 0.01 < phi <= theta + 1e-5


def test_cone_gaussian_power_and_orthogonality():
    snr = 3.0
    out, _, _ = _draws("cone", snr, mode="gaussian")
    g = _flat(G)
    xi = out - g
    assert np.abs(xi @ g).max() / np.linalg.norm(g) < 1e-4
    # ||xi||^2 ~ scaled chi2_{D-1}
    ratio = np.sum(g**2) / np.sum(xi**2, axis=1).mean()
    assert abs(ratio / snr - 1) < 5 * np.sqrt(2.0 / ((D - 1) * N_DRAWS))


@pytest.mark.parametrize("mode", noise.CONE_MODES)
def test_cone_preserve_norm(mode):
    out, _, _ = _draws("cone", 0.5, n=64, mode=mode, preserve_norm=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(_flat(G)), rtol=1e-5)


def test_cone_per_leaf_angle_per_leaf():
    snr = 0.3
    out, _, _ = _draws("cone", snr, n=32, scope="per_leaf")
    g = _flat(G)
    theta = np.arctan(1 / np.sqrt(snr))
    start = 0
    for leaf in jax.tree.leaves(G):
        sl = slice(start, start + leaf.size)
        start += leaf.size
        ang = _angle64(np.broadcast_to(g[sl], out[:, sl].shape), out[:, sl])
        assert np.abs(ang - theta).max() < 1e-5


def test_cone_one_dimensional_adds_nothing():
    g = jnp.array([2.0])
    tx = noise.cone(0.1, 0)
    out, st = tx.update(g, tx.init(g))
    assert float(out[0]) == 2.0 and float(st.realized_snr) == np.inf


# ------------------------------------------------------------ shared behaviour

ALL = [
    ("isotropic", {}),
    ("isotropic", {"scope": "per_leaf"}),
    ("cone", {"mode": "surface"}),
    ("cone", {"mode": "cap"}),
    ("cone", {"mode": "gaussian", "scope": "per_leaf"}),
]


@pytest.mark.parametrize("kind,kw", ALL)
def test_inf_snr_is_bit_identity(kind, kw):
    g = {"a": jnp.array([-0.0, 1.5, -2.0, 1e-30]), "b": jnp.array([[3.0, -0.0]])}
    tx = getattr(noise, kind)(float("inf"), 0, **kw)
    out, st = jax.jit(tx.update)(g, tx.init(g))
    for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(out)):
        assert np.array_equal(np.asarray(x).view(np.uint32), np.asarray(y).view(np.uint32))
    assert float(st.realized_snr) == np.inf and float(st.angle) == 0.0


@pytest.mark.parametrize("kind,kw", ALL + [("fixed", {})])
def test_zero_gradient_no_nan_no_noise(kind, kw):
    z = jax.tree.map(jnp.zeros_like, G)
    level = 0.0 if kind == "fixed" else 0.5
    tx = getattr(noise, kind)(level, 0, **kw)
    out, st = jax.jit(tx.update)(z, tx.init(z))
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(out))
    assert float(st.realized_snr) == np.inf and float(st.angle) == 0.0


def test_fixed_noise_on_zero_gradient_is_absolute():
    z = jnp.zeros(10_000)
    tx = noise.fixed(0.3, 0)
    out, st = tx.update(z, tx.init(z))
    assert abs(float(jnp.std(out)) / 0.3 - 1) < 5 / np.sqrt(2 * 10_000)
    assert float(st.realized_snr) == 0.0


@pytest.mark.parametrize("kind,kw", ALL)
def test_determinism_and_key_dependence(kind, kw):
    a, _, _ = _draws(kind, 1.0, n=4, seed=7, **kw)
    b, _, _ = _draws(kind, 1.0, n=4, seed=7, **kw)
    c, _, _ = _draws(kind, 1.0, n=4, seed=8, **kw)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert len({tuple(r) for r in a}) == 4  # different keys -> different draws


def test_vmap_over_snr_grid():
    snrs = jnp.array([0.1, 1.0, 10.0, jnp.inf])

    @jax.jit
    @jax.vmap
    def one(snr):
        tx = noise.cone(snr, 0)
        _, st = tx.update(G, tx.init(G))
        return st.realized_snr, st.angle

    rs, ang = one(snrs)
    np.testing.assert_allclose(rs, snrs, rtol=1e-4)
    np.testing.assert_allclose(ang, np.arctan(1 / np.sqrt(np.asarray(snrs))), atol=1e-5)


def test_schedule_drives_snr():
    sched = schedules.linear(100.0, 1.0, transition_steps=4)
    tx = noise.cone(sched, 0)
    state = tx.init(G)
    seen = []
    update = jax.jit(tx.update)
    for _ in range(6):
        _, state = update(G, state)
        seen.append(float(state.realized_snr))
    np.testing.assert_allclose(seen, [100.0, 75.25, 50.5, 25.75, 1.0, 1.0], rtol=1e-4)


def _loss(p):
    return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(p["b"] ** 2)


@pytest.mark.parametrize("position", ["gradient", "update"])
@pytest.mark.parametrize("opt", [optax.sgd(0.1), optax.adam(0.1)])
def test_chains_before_and_after_optimizers(position, opt):
    params = jax.tree.map(jnp.zeros_like, G)
    nz = noise.cone(4.0, 0)
    tx = optax.chain(nz, opt) if position == "gradient" else optax.chain(opt, nz)
    clean = optax.chain(noise.cone(jnp.inf, 0), opt) if position == "gradient" else optax.chain(opt, noise.cone(jnp.inf, 0))

    @jax.jit
    def run(params, tx_state, clean_state):
        grads = jax.grad(_loss)(params)
        u, tx_state = tx.update(grads, tx_state, params)
        c, clean_state = clean.update(grads, clean_state, params)
        plain, _ = opt.update(grads, opt.init(params), params)
        return u, c, plain, tx_state

    u, c, plain_u, st = run(params, tx.init(params), clean.init(params))
    (diag,) = noise.diagnostics(st)
    assert abs(float(diag.realized_snr) - 4.0) < 1e-3
    assert abs(float(diag.angle) - np.arctan(0.5)) < 1e-5
    if position == "update":  # update noise: the step itself lies on the cone around the clean step
        assert abs(_angle64(_flat(c), _flat(u)) - np.arctan(0.5)) < 1e-5
    # snr=inf chain equals the optimizer alone, bit for bit
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(plain_u)))


def test_sgd_chain_rotates_gradient_by_theta():
    params = jax.tree.map(jnp.zeros_like, G)
    tx = optax.chain(noise.cone(1.0, 0), optax.sgd(0.1))
    grads = jax.grad(_loss)(params)
    u, _ = tx.update(grads, tx.init(params), params)
    assert abs(_angle64(-_flat(grads), _flat(u)) - np.pi / 4) < 1e-5


def test_diagnostics_finds_several_in_order():
    tx = optax.chain(noise.isotropic(jnp.inf, 0), optax.sgd(0.1), noise.cone(9.0, 1))
    state = tx.init(G)
    _, state = tx.update(G, state, G)
    d = noise.diagnostics(state)
    assert len(d) == 2
    assert float(d[0].realized_snr) == np.inf
    assert abs(float(d[1].realized_snr) - 9.0) < 1e-3
    assert noise.diagnostics(optax.sgd(0.1).init(G)) == ()


def test_fixed_reproduces_optax_add_noise():
    key = jax.random.key(3)
    ref = optax.add_noise(0.01, 0.55, key)
    ours = noise.fixed(schedules.anneal(0.01, 0.55), key)
    sr, so = ref.init(G), ours.init(G)
    for _ in range(5):
        ur, sr = ref.update(G, sr)
        uo, so = ours.update(G, so)
        for a, b in zip(jax.tree.leaves(ur), jax.tree.leaves(uo)):
            assert np.array_equal(a, b)


# ------------------------------------------------------------- populations


def test_population_init_gives_independent_noise():
    p = 4
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (p,) + x.shape), G)
    tx = optax.chain(noise.isotropic(1.0, 0), optax.sgd(0.1))
    naive = jax.vmap(tx.init)(params)
    with pytest.raises(ValueError, match="share a PRNG key"):
        noise.check_independent_keys(naive)
    state = noise.population_init(tx, params, jax.random.split(jax.random.key(0), p))
    noise.check_independent_keys(state)
    u, _ = jax.vmap(tx.update)(params, state, params)
    flat = np.asarray(u["w"]).reshape(p, -1)
    assert len({tuple(r) for r in flat}) == p


def test_reseed_keeps_two_transforms_independent():
    tx = optax.chain(noise.isotropic(1.0, 0), noise.isotropic(1.0, 0))
    state = noise.reseed(tx.init(G), 5)
    k0, k1 = (s.key for s in noise.state._noise_states(state))
    assert not np.array_equal(jax.random.key_data(k0), jax.random.key_data(k1))


# ------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: noise.isotropic(0.0, 0), "snr"),
        (lambda: noise.isotropic(-1.0, 0), "snr"),
        (lambda: noise.cone(float("nan"), 0), "snr"),
        (lambda: noise.cone(jnp.array([1.0, -2.0]), 0), "snr"),
        (lambda: noise.cone(1.0, 0, mode="disk"), "mode"),
        (lambda: noise.cone(1.0, 0, scope="layer"), "scope"),
        (lambda: noise.isotropic(1.0, 0, scope="nope"), "scope"),
        (lambda: noise.fixed(-0.1, 0), "sigma"),
        (lambda: noise.cone(lambda t: -1.0, 0), r"snr\(0\)"),
        (lambda: noise.isotropic(1.0, "seed"), "key"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------- sgd-shaped


def test_sgd_shaped_has_minibatch_covariance_at_target_snr():
    rng = np.random.default_rng(0)
    per_ex = jnp.asarray(rng.normal(size=(6, 3)) * np.array([3.0, 1.0, 0.2]) + np.array([1.0, -1.0, 0.5]), jnp.float32)
    g = per_ex.mean(0)
    snr = 2.0

    @jax.jit
    @jax.vmap
    def draw(key):
        tx = noise.sgd_shaped(snr, key)
        out, st = tx.update(g, tx.init(g), per_example_grads=per_ex)
        return out - g

    xi = np.asarray(draw(jax.random.split(jax.random.key(0), 20000)), np.float64)
    centred = np.asarray(per_ex, np.float64) - np.asarray(g, np.float64)
    sigma_hat = centred.T @ centred / 5
    c2 = float(np.sum(np.asarray(g, np.float64) ** 2)) / (snr * np.trace(sigma_hat))
    second = xi.T @ xi / len(xi)
    target = c2 * sigma_hat
    se = np.sqrt((np.outer(np.diag(target), np.diag(target)) + target**2) / len(xi))
    assert (np.abs(second - target) < 5 * se).all()
    power = np.sum(xi**2, axis=1)
    assert abs(np.sum(np.asarray(g) ** 2) / power.mean() / snr - 1) < 5 * power.std() / power.mean() / np.sqrt(len(xi))


def test_sgd_shaped_needs_per_example_grads_and_chains():
    tx = optax.chain(noise.sgd_shaped(1.0, 0), optax.sgd(0.1))
    state = tx.init(G)
    with pytest.raises(ValueError, match="per_example_grads"):
        tx.update(G, state, G)
    per_ex = jax.tree.map(lambda x: jnp.stack([x, -x, 2 * x]), G)
    _, state = tx.update(G, state, G, per_example_grads=per_ex)
    assert abs(float(noise.diagnostics(state)[0].realized_snr)) > 0
