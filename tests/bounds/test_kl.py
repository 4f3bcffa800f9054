"""The bounds' closed forms against independent computations (scipy)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special
from scipy import stats as st

from ib_jax.bounds import binary_kl, gaussian_kl, kl_inverse_upper, pac_bayes_bound


def test_gaussian_kl_matches_the_sum_of_one_dimensional_kls():
    rng = np.random.default_rng(0)
    mu_q = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}
    mu_p = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}
    sq, sp = 0.3, 0.7
    # 1-d KL(N(m1, s1^2) || N(m2, s2^2)) = ln(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2, summed over coordinates
    diffs = np.concatenate([(mu_q[k] - mu_p[k]).ravel() for k in ("a", "b")])
    expected = np.sum(np.log(sp / sq) + (sq**2 + diffs**2) / (2 * sp**2) - 0.5)
    assert float(gaussian_kl(mu_q, sq, mu_p, sp)) == pytest.approx(expected, rel=1e-5)


def test_gaussian_kl_by_monte_carlo():
    """E_q[log q - log p] by sampling, against the closed form (tolerance: 5 standard errors)."""
    rng = np.random.default_rng(1)
    d, sq, sp = 6, 0.5, 0.8
    mq, mp = rng.normal(size=d), rng.normal(size=d)
    x = mq + sq * rng.normal(size=(200_000, d))
    ratio = st.norm.logpdf(x, mq, sq).sum(1) - st.norm.logpdf(x, mp, sp).sum(1)
    se = ratio.std() / math.sqrt(len(ratio))
    assert abs(ratio.mean() - float(gaussian_kl(mq, sq, mp, sp))) < 5 * se


@pytest.mark.parametrize("q,p", [(0.1, 0.3), (0.0, 0.2), (0.5, 0.5), (0.9, 0.4), (1.0, 0.7)])
def test_binary_kl_matches_scipy(q, p):
    expected = special.rel_entr(q, p) + special.rel_entr(1 - q, 1 - p)
    assert float(binary_kl(q, p)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("q,c", [(0.0, 0.01), (0.05, 0.1), (0.3, 0.02), (0.5, 1.0), (0.2, 5.0)])
def test_kl_inverse_is_the_root_scipy_finds_and_never_below_it(q, c):
    def f(p):
        return special.rel_entr(q, p) + special.rel_entr(1 - q, 1 - p) - c

    top = 1 - 1e-12
    expected = top if f(top) <= 0 else optimize.brentq(f, max(q, 1e-12), top, xtol=1e-12)
    got = float(kl_inverse_upper(q, c))
    assert expected - 1e-9 <= got <= expected + 1e-5


def test_kl_inverse_edge_cases_and_vmap():
    # c = 0: the inverse is q itself; in float32 kl(q || q + e) ~ e^2 / (2 q (1 - q)) is lost below
    # ~1e-8, so the bisection stops a few 1e-4 above q (above: the bound stays a bound)
    assert 0.3 <= float(kl_inverse_upper(0.3, 0.0)) <= 0.3 + 2e-4
    assert float(kl_inverse_upper(0.3, jnp.inf)) == 1.0
    assert float(kl_inverse_upper(1.0, 0.5)) == 1.0
    qs = jnp.linspace(0.0, 0.9, 7)
    out = jax.jit(jax.vmap(kl_inverse_upper))(qs, jnp.full(7, 0.05))
    assert np.all(np.diff(np.asarray(out)) > 0) and np.all(np.asarray(out) >= np.asarray(qs))


def test_pac_bayes_bound_is_the_two_inversions_written_out():
    m, n, g, delta, e, kl = 3000, 16, 5, 0.05, 0.12, 40.0
    up = float(kl_inverse_upper(e, math.log(2 * g / delta) / n))
    expected = float(kl_inverse_upper(up, (kl + math.log(4 * g * math.sqrt(m) / delta)) / m))
    got = float(pac_bayes_bound(e, kl, m=m, n_draws=n, grid=g, delta=delta))
    assert got == pytest.approx(expected, abs=1e-6)
    # more KL, fewer draws, or a smaller delta never tighten it
    assert float(pac_bayes_bound(e, kl * 4, m=m, n_draws=n, grid=g, delta=delta)) > got
    assert float(pac_bayes_bound(e, kl, m=m, n_draws=2, grid=g, delta=delta)) > got
    assert float(pac_bayes_bound(e, kl, m=m, n_draws=n, grid=g, delta=1e-4)) > got
