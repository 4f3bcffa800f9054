"""Matrix-based Renyi entropy and sliced mutual information: exact cases, closed forms, registration.

Tolerances. Renyi quantities are deterministic functions of a Gram matrix's float32 spectrum:
the identities below hold exactly in real arithmetic, and eigvalsh's rounding leaves eigenvalues
within ~1e-6 of their value (measured: 2.7e-7 for n = 256), and at alpha = 1.01 the factor
1 / (1 - alpha) = -100 multiplies the float32 rounding of log sum lambda^alpha (~1e-7): errors of
~1e-5 bits (measured 3.4e-5 between a compiled vmap and an eager call), so 1e-4 bits. Sliced MI is checked against the Gaussian closed form; its
errors are the KSG estimator's finite-n bias (+0.02 to +0.025 bits at n = 2,000, k = 3:
docs/estimators.md table), its per-projection noise (std ~0.03 bits at n = 2,000, correlated
across projections since they share the samples) and the Monte Carlo error over directions
(the estimator's own standard error ``se``).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from ib_jax import config as C
from ib_jax import estimators as E
from ib_jax.job.build import validate
from ib_jax.registry import ESTIMATORS

ALPHAS = (0.5, 1.01, 2.0)
ROUND = 1e-4  # bits: float32 spectrum rounding, see the module docstring


def np_renyi(t, sigma, alpha):
    """Independent float64 reference: Gram matrix, normalisation and spectrum in numpy."""
    t = np.asarray(t, np.float64)
    d2 = np.sum((t[:, None, :] - t[None, :, :]) ** 2, axis=-1)
    a = np.exp(-d2 / (2 * sigma**2)) / len(t)
    lam = np.clip(np.linalg.eigvalsh(a), 0, None)
    lam = lam[lam > 1e-12] / lam.sum()
    return np.log2(np.sum(lam**alpha)) / (1 - alpha)


# ------------------------------------------------------------------ Renyi: exact cases


@pytest.mark.parametrize("alpha", ALPHAS)
def test_renyi_identical_rows_zero_orthogonal_rows_log_n(alpha):
    same = jnp.full((64, 5), 0.3)
    assert float(E.renyi_entropy(E.gaussian_gram(same, 1.0), alpha)) == pytest.approx(0.0, abs=ROUND)
    # 64 one-hot rows at sigma = 0.1: K_ij = exp(-2 / 0.02) = 0 in float32, A = I / 64
    ortho = jnp.eye(64)
    assert float(E.renyi_entropy(E.gaussian_gram(ortho, 0.1), alpha)) == pytest.approx(6.0, abs=ROUND)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_renyi_matches_a_float64_numpy_reference(alpha):
    t = np.random.default_rng(0).normal(size=(48, 3))
    got = float(E.renyi_entropy(E.gaussian_gram(jnp.asarray(t, jnp.float32), 0.9), alpha))
    # 1e-3: float32 input and exponentials (relative 1e-7) through an eigenproblem of n = 48
    assert got == pytest.approx(np_renyi(t, 0.9, alpha), abs=1e-3)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_renyi_joint_entropy_is_additive_on_a_product_set(alpha):
    """Rows (a_i, b_j) for all pairs: the Gram of each coordinate block is a Kronecker factor
    (K_a (x) 1 and 1 (x) K_b), their Hadamard product K_a (x) K_b, whose spectrum is the products
    of the two spectra: S(A, B) = S(A) + S(B) and I(A; B) = 0 exactly."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 2)), rng.normal(size=(6, 3))
    first, second = jnp.asarray(np.repeat(a, 6, axis=0), jnp.float32), jnp.asarray(np.tile(b, (8, 1)), jnp.float32)
    s = 0.8
    h_a = float(E.renyi_entropy(E.gaussian_gram(jnp.asarray(a, jnp.float32), s), alpha))
    h_b = float(E.renyi_entropy(E.gaussian_gram(jnp.asarray(b, jnp.float32), s), alpha))
    g1, g2 = E.gaussian_gram(first, s), E.gaussian_gram(second, s)
    assert float(E.renyi_entropy(g1, alpha)) == pytest.approx(h_a, abs=ROUND)  # repeated rows: same entropy
    assert float(E.renyi_joint_entropy(g1, g2, alpha)) == pytest.approx(h_a + h_b, abs=ROUND)
    assert float(E.renyi_mutual_information(g1, g2, alpha)) == pytest.approx(0.0, abs=ROUND)
    # the Gaussian kernel of the concatenated rows is the same product
    both = E.gaussian_gram(jnp.concatenate([first, second], axis=1), s)
    assert float(E.renyi_entropy(both, alpha)) == pytest.approx(h_a + h_b, abs=ROUND)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_renyi_mutual_information_identities(alpha):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(40, 4)), jnp.float32)
    t = jnp.tanh(x @ jnp.asarray(rng.normal(size=(4, 3)), jnp.float32))
    ax, at = E.gaussian_gram(x, 1.0), E.gaussian_gram(t, 0.5)
    i_xt, i_tx = float(E.renyi_mutual_information(ax, at, alpha)), float(E.renyi_mutual_information(at, ax, alpha))
    assert i_xt == pytest.approx(i_tx, abs=1e-6)  # A o B = B o A elementwise
    h_x, h_t = float(E.renyi_entropy(ax, alpha)), float(E.renyi_entropy(at, alpha))
    assert -ROUND <= i_xt <= min(h_x, h_t) + ROUND  # S(A, B) >= max(S(A), S(B)) (Giraldo et al.)
    # T = X: I(X;X) = 2 S(A) - S(A o A). A o A is the Gram at width sigma / sqrt 2, so in general
    # I(X;X) < S(A); equality where A o A is proportional to A: a 0/1 kernel (labels) or sigma -> 0
    assert float(E.renyi_mutual_information(ax, ax, alpha)) <= h_x + ROUND
    y = jnp.asarray(rng.integers(0, 3, 40))
    p = np.bincount(np.asarray(y)) / 40
    h_y = np.log2(np.sum(p**alpha)) / (1 - alpha)  # the labels' Renyi entropy, in closed form
    ay = E.label_gram(y)
    assert float(E.renyi_entropy(ay, alpha)) == pytest.approx(h_y, abs=ROUND)
    assert float(E.renyi_mutual_information(ay, ay, alpha)) == pytest.approx(h_y, abs=ROUND)
    narrow = E.gaussian_gram(x, 1e-2)  # distinct rows >= 0.1 apart: A = I / n
    assert float(E.renyi_mutual_information(narrow, narrow, alpha)) == pytest.approx(np.log2(40), abs=ROUND)
    # T = one-hot(Y) at a narrow width: its Gram is the label Gram, I(T;Y) = H_alpha(Y)
    onehot = E.gaussian_gram(jax.nn.one_hot(y, 3), 0.1)
    assert float(E.renyi_mutual_information(onehot, ay, alpha)) == pytest.approx(h_y, abs=ROUND)


def test_renyi_layer_quantities_padding_and_vmap():
    rng = np.random.default_rng(3)
    n, members = 32, 3
    x = jnp.asarray(rng.normal(size=(n, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, n))
    ax, ay = E.gaussian_gram(x, 1.0), E.label_gram(y)
    ts = jnp.tanh(jnp.asarray(rng.normal(size=(members, n, 6)), jnp.float32))
    sigma = E.renyi_width(n, 6, 1.0)
    one = E.renyi_information(ts[0], ax, ay, 1.01, sigma)
    assert float(one["h_x_given_t"]) == pytest.approx(float(E.renyi_entropy(ax, 1.01) - one["i_xt"]), abs=ROUND)
    # zero-padded units: distances unchanged (the width rule takes the real width, passed here)
    padded = E.renyi_information(jnp.pad(ts[0], ((0, 0), (0, 4))), ax, ay, 1.01, sigma)
    for q in one:
        assert float(padded[q]) == pytest.approx(float(one[q]), abs=ROUND), q
    vm = jax.jit(jax.vmap(lambda t: E.renyi_information(t, ax, ay, 1.01, sigma)))(ts)
    for m in range(members):
        ref = E.renyi_information(ts[m], ax, ay, 1.01, sigma)
        for q in ref:
            assert float(vm[q][m]) == pytest.approx(float(ref[q]), abs=ROUND), q  # compiled vs eager rounding
    assert float(E.renyi_width(256, 12, 2.0)) == pytest.approx(2.0 * 256 ** (-1 / 16))
    assert np.isnan(float(E.renyi_entropy(ax.at[0, 0].set(jnp.nan), 1.01)))


# ------------------------------------------------------------------ sliced MI


def _gaussian_si(th, ph, sxx, sxt, stt):
    """-1/2 log2(1 - rho^2) of each projected pair (theta'X, phi'T) of jointly Gaussian X, T."""
    rho = np.einsum("pi,ij,pj->p", th, sxt, ph) / np.sqrt(np.einsum("pi,ij,pj->p", th, sxx, th) * np.einsum("pi,ij,pj->p", ph, stt, ph))
    return -0.5 * np.log2(1 - rho**2)


def test_sliced_mi_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(4)
    n, d, m = 2000, 2, 128
    x = rng.normal(size=(n, d))
    t = x + 0.5 * rng.normal(size=(n, d))  # Sigma_x = I, Sigma_xt = I, Sigma_t = 1.25 I
    sxx, sxt, stt = np.eye(d), np.eye(d), 1.25 * np.eye(d)
    key = jax.random.PRNGKey(0)
    r = jax.jit(lambda a, b: E.sliced_mutual_information(a, b, key, projections=m, k=3))(
        jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)
    )
    est, se = float(r["mi"]), float(r["se"])
    # the population value: a numpy Monte Carlo average over 2e5 direction pairs (its own se ~1e-3)
    big = 200_000
    th, ph = rng.normal(size=(big, d)), rng.normal(size=(big, d))
    th, ph = th / np.linalg.norm(th, axis=1, keepdims=True), ph / np.linalg.norm(ph, axis=1, keepdims=True)
    ref = float(np.mean(_gaussian_si(th, ph, sxx, sxt, stt)))
    assert abs(est - ref) < 4 * se + 0.03, (est, se, ref)  # 4 se of the direction average + KSG bias
    # at the estimator's own directions the direction noise is gone: only the KSG error is left,
    # bias <= 0.025 plus the per-projection noise (std 0.03, fully correlated at worst): 0.025 + 2.5 x 0.03
    ka, kb = jax.random.split(key)
    own = _gaussian_si(np.asarray(E.random_directions(ka, m, d)), np.asarray(E.random_directions(kb, m, d)), sxx, sxt, stt)
    assert abs(est - own.mean()) < 0.1, (est, own.mean())
    assert np.corrcoef(np.asarray(r["values"]), own)[0, 1] > 0.95  # projection by projection, the estimates follow rho


def test_sliced_mi_of_independent_data_is_near_zero_and_ignores_padding():
    rng = np.random.default_rng(5)
    n, m = 1000, 32
    x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    key = jax.random.PRNGKey(7)
    si = jax.jit(lambda a, b, mask: E.sliced_mutual_information(a, b, key, projections=m, k=3, b_mask=mask))
    r = si(x, t, jnp.ones(4, bool))
    # KSG of independent 1-d samples: unbiased to ~0.005 bits at n = 1,000 (Kraskov et al. 2004)
    assert abs(float(r["mi"])) < 4 * float(r["se"]) + 0.01, (float(r["mi"]), float(r["se"]))
    mask = jnp.arange(7) < 4
    padded = si(x, jnp.pad(t, ((0, 0), (0, 3))), mask)
    assert float(padded["mi"]) == pytest.approx(float(r["mi"]), abs=1e-5)  # the same directions, padded units unused
    dirs = E.random_directions(key, m, 7, mask)
    assert np.allclose(np.linalg.norm(np.asarray(dirs), axis=1), 1.0, atol=1e-6) and not np.any(np.asarray(dirs)[:, 4:])


def _mixture_mi_1d(means, p):
    """I(phi'T; Y) in bits for phi'T | Y=y ~ N(means[y], 1): h(mixture) - h(N(0, 1)), by quadrature."""
    pdf = lambda s: float(np.sum(p * stats.norm.pdf(s, means, 1.0)))
    h = integrate.quad(lambda s: -pdf(s) * np.log2(max(pdf(s), 1e-300)), means.min() - 12, means.max() + 12, limit=200)[0]
    return h - 0.5 * np.log2(2 * np.pi * np.e)


def test_sliced_mi_with_labels_matches_quadrature_and_is_below_h_y():
    rng = np.random.default_rng(6)
    n, m = 2000, 32
    mu = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = rng.integers(0, 3, n)
    t = mu[y] + rng.normal(size=(n, 3))
    key = jax.random.PRNGKey(3)
    r = jax.jit(lambda a, b: E.sliced_mutual_information_discrete(a, b, key, projections=m, k=3))(
        jnp.asarray(t, jnp.float32), jnp.asarray(y)
    )
    est, se = float(r["mi"]), float(r["se"])
    p = np.bincount(y) / n
    assert 0 < est < -np.sum(p * np.log2(p))
    _, kt = jax.random.split(key)
    phi = np.asarray(E.random_directions(kt, m, 3))
    ref = np.mean([_mixture_mi_1d(mu @ f, p) for f in phi])  # at the estimator's directions (unit phi: unit noise)
    # Ross at n = 2,000: bias <= +0.016, std 0.013-0.016 per projection (docs/estimators.md): 0.016 + 2.5 x 0.016
    assert abs(est - ref) < 0.06, (est, ref, se)


# ------------------------------------------------------------------ registered, in a job


def test_both_are_registered_and_run_in_a_population():
    from ib_jax import data, train

    assert "renyi" in ESTIMATORS and "sliced" in ESTIMATORS
    cfg = C.Config(
        estimator=C.EstimatorConf(
            names=("renyi", "sliced"), n_info=256, renyi=C.RenyiConf(n=64), sliced=C.SlicedConf(n=128, projections=8)
        ),
        steps=20,
        n_evals=2,
        seeds=1,
        probe_size=0,
    )
    res = train.train_population(cfg, data.tishby12(), train.population_grid(seeds=[0], levels=[float("inf")]))
    for q in ("renyi/i_xt", "renyi/i_ty", "renyi/h_t", "renyi/h_x_given_t", "sliced/i_xt", "sliced/i_ty", "sliced/i_xt_se"):
        v = np.asarray(res.metrics[q])
        assert v.shape == (1, len(res.steps), 6) and np.all(np.isfinite(v)), q  # 6 layers: 5 hidden + softmax
    # the bounds of each: 0 <= I_alpha <= log2 n (64 rows), sliced I(T;Y) <= H(Y) <= 1 bit (2 labels)
    assert np.all(res.metrics["renyi/i_xt"] > -ROUND) and np.all(res.metrics["renyi/i_xt"] < 6 + ROUND)
    assert np.all(res.metrics["sliced/i_ty"] < 1.0)


def test_a_whole_evaluation_makes_one_eigenvalue_call_per_information_set():
    """jaxlib's batched CPU eigenvalue kernel blocks a pool worker until its batch is done; two at
    once wedge a 2-core pool (a digits CNN job hung with every thread idle). The evaluation of a
    population (members vmapped, every layer) must hold exactly one per information set, and the
    second set's must wait for the first's (estimator.info_split=both)."""
    from ib_jax import data, train

    ds = data.tishby12()
    for split, calls in (("all", 1), ("both", 2)):
        est = C.EstimatorConf(names=("renyi",), n_info=128, renyi=C.RenyiConf(n=32), info_split=split)
        cfg = C.Config(estimator=est, probe_size=0, bounds=C.BoundsConf(names=()))
        tr = train.Trainer(cfg, ds)
        st = tr.init(train.population_grid(seeds=[0, 1], levels=[float("inf")]))
        hlo = tr._evaluate.lower(st, tr.data, None).compile().as_text()  # after optimization: one line per kernel call
        entry = hlo[hlo.index("\nENTRY ") :]
        graph = {m[2]: set(re.findall(r"%([\w.-]+)", m[3])) for m in re.finditer(r"\n\s*(ROOT )?%([\w.-]+) = ([^\n]*)", entry)}
        eighs = [m[1] for m in re.finditer(r"%([\w.-]+) = [^\n]*custom_call_target=\"lapack_ssyevd", entry)]
        assert len(eighs) == calls, (split, eighs)
        if calls == 2:  # one kernel's input depends on the other's output: they never run at once

            def reaches(a, b):
                todo, seen = [a], {a}
                while todo:
                    for o in graph.get(todo.pop(), ()):
                        if o == b:
                            return True
                        if o not in seen:
                            seen.add(o)
                            todo.append(o)
                return False

            assert reaches(eighs[1], eighs[0]) or reaches(eighs[0], eighs[1])


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"renyi": {"alpha": 1.0}}, r"estimator\.renyi\.alpha"),
        ({"renyi": {"width_scale": 0.0}}, r"estimator\.renyi\.width_scale"),
        ({"renyi": {"n": 1}}, r"estimator\.renyi\.n must be an integer in \[2, 16384\]"),
        ({"sliced": {"n": 8, "k": 8}}, r"estimator\.sliced\.k=8 must be in \[1, n\)"),
        ({"sliced": {"projections": 1}}, r"estimator\.sliced\.projections must be an integer in \[2, "),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides, match):
    names = ["renyi"] if "renyi" in overrides else ["sliced"]
    with pytest.raises(ValueError, match=match):
        validate(C.from_hydra({"estimator": {"names": names, **overrides}}))
