"""Estimators against cases with a known answer: a markdown table of bias and spread.

Usage: python scripts/validate_estimators.py [--seeds 5] [--ns 500 2000]

For every estimator x case x n it draws ``seeds`` independent data sets (one
vmapped call), and prints: true value, mean estimate, bias, std over seeds
(all in bits). The table in docs/estimators.md was produced by this script.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from ib_jax import estimators as E


def gauss_cov(d, spread, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) * spread + np.eye(d)
    return a @ a.T


def gauss_entropy_bits(cov):
    d = cov.shape[0]
    return 0.5 * np.log2((2 * np.pi * np.e) ** d * np.linalg.det(cov))


def ross_truth(sigma):
    """I(T;Y) for Y ~ Bernoulli(1/2), T = Y + sigma Z, by quadrature (bits)."""

    def mix(t):
        return 0.5 * stats.norm.pdf(t, 0, sigma) + 0.5 * stats.norm.pdf(t, 1, sigma)

    h_t = integrate.quad(lambda t: -mix(t) * np.log2(mix(t) + 1e-300), -10, 11, limit=200)[0]
    return h_t - 0.5 * np.log2(2 * np.pi * np.e * sigma**2)


def cases(n, seeds, rng):
    """(estimator, case, true, samples -> (seeds,) estimates)."""
    out = []
    for d, spread, label in [(1, 0.1, "gaussian d=1"), (2, 0.1, "gaussian d=2"), (10, 0.1, "gaussian d=10"), (10, 0.3, "anisotropic gaussian d=10")]:
        cov = gauss_cov(d, spread, 10 + d)
        x = rng.multivariate_normal(np.zeros(d), cov, size=(seeds, n)).astype(np.float32)
        out.append(("knn_entropy (KL, k=3)", label, gauss_entropy_bits(cov), jax.vmap(E.knn_entropy), (x,)))
    x = rng.uniform(0, 2, size=(seeds, n, 3)).astype(np.float32)
    out.append(("knn_entropy (KL, k=3)", "uniform cube [0,2]^3", 3.0, jax.vmap(E.knn_entropy), (x,)))
    for rho in (0.6, 0.9):
        a = rng.normal(size=(seeds, n))
        b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(seeds, n))
        out.append(("ksg_mutual_information (k=3)", f"gaussians rho={rho}", -0.5 * np.log2(1 - rho**2),
                    jax.vmap(E.ksg_mutual_information), (a.astype(np.float32), b.astype(np.float32))))
    for sigma in (0.3, 1.0):
        y = rng.integers(0, 2, size=(seeds, n))
        t = (y + sigma * rng.normal(size=(seeds, n))).astype(np.float32)
        out.append(("knn_mutual_information_discrete (Ross, k=3)", f"T=Y+{sigma}Z, Y~Bern(1/2)", ross_truth(sigma),
                    jax.vmap(E.knn_mutual_information_discrete), (t, y)))
    patterns = np.array([[-0.9, -0.9], [-0.9, 0.9], [0.9, -0.9], [0.9, 0.9]], np.float32)
    t = patterns[rng.integers(0, 4, size=(seeds, n))]
    four = jax.vmap(lambda t: E.binned_entropy(t, n_bins=2))
    out.append(("binned_entropy (2 bins)", "4 patterns, multinomial draw", 2.0, four, (t,)))
    t = np.tanh(rng.normal(size=(seeds, n, 2)) * 3).astype(np.float32)
    lo = jax.vmap(lambda t: E.kde_mutual_information_x_bounds(jnp.concatenate([t * 0, t * 0 + 100.0]), 0.1)[0])
    out.append(("kde_mutual_information_x_bounds lower", "two clusters 100 apart", 1.0, lo, (t,)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--ns", type=int, nargs="+", default=[500, 2000])
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| estimator | case | n | true (bits) | mean estimate | bias | std over seeds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.ns:
        for name, case, true, fn, data in cases(n, args.seeds, rng):
            est = np.asarray(jax.jit(fn)(*[jnp.asarray(a) for a in data]), np.float64)
            print(f"| {name} | {case} | {n} | {true:.4f} | {est.mean():.4f} | {est.mean() - true:+.4f} | {est.std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
