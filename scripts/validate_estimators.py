"""Estimators against cases with a known answer: a markdown table of bias and spread.

Usage: python scripts/validate_estimators.py [--seeds 5] [--ns 500 2000] [--only sp]

For every estimator x case x n it draws ``seeds`` independent data sets (one
vmapped call), and prints: true value, mean estimate, bias, std over seeds
(all in bits). The table in docs/estimators.md was produced by this script.
``--only PREFIX`` keeps the rows whose estimator name starts with PREFIX.

Sample propagation (``sp``) rows: n inputs evenly spaced on [-1, 1] (d = 1)
or fixed uniform draws from [-1, 1]^2 (d = 2), X uniform over them, and the
true I(X;T) from a dense-grid integral of the Gaussian mixture; n is the
number of inputs. The two-layer rows propagate T1 = X + beta Z1 through
S2 = 2 T1 with R replicas of Z1 (T2 = S2 + beta Z2, so p(t2|x) =
N(2x, 5 beta^2) exactly); R = 1 ignores the first layer's noise.
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


def cases(n, seeds, rng, sp_reps=(1, 4, 16)):
    """(estimator, case, true, samples -> (seeds,) estimates)."""
    out = []
    for d, spread, label in [
        (1, 0.1, "gaussian d=1"),
        (2, 0.1, "gaussian d=2"),
        (10, 0.1, "gaussian d=10"),
        (10, 0.3, "anisotropic gaussian d=10"),
    ]:
        cov = gauss_cov(d, spread, 10 + d)
        x = rng.multivariate_normal(np.zeros(d), cov, size=(seeds, n)).astype(np.float32)
        out.append(("knn_entropy (KL, k=3)", label, gauss_entropy_bits(cov), jax.vmap(E.knn_entropy), (x,)))
    x = rng.uniform(0, 2, size=(seeds, n, 3)).astype(np.float32)
    out.append(("knn_entropy (KL, k=3)", "uniform cube [0,2]^3", 3.0, jax.vmap(E.knn_entropy), (x,)))
    for rho in (0.6, 0.9):
        a = rng.normal(size=(seeds, n))
        b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(seeds, n))
        out.append(
            (
                "ksg_mutual_information (k=3)",
                f"gaussians rho={rho}",
                -0.5 * np.log2(1 - rho**2),
                jax.vmap(E.ksg_mutual_information),
                (a.astype(np.float32), b.astype(np.float32)),
            )
        )
    for sigma in (0.3, 1.0):
        y = rng.integers(0, 2, size=(seeds, n))
        t = (y + sigma * rng.normal(size=(seeds, n))).astype(np.float32)
        out.append(
            (
                "knn_mutual_information_discrete (Ross, k=3)",
                f"T=Y+{sigma}Z, Y~Bern(1/2)",
                ross_truth(sigma),
                jax.vmap(E.knn_mutual_information_discrete),
                (t, y),
            )
        )
    patterns = np.array([[-0.9, -0.9], [-0.9, 0.9], [0.9, -0.9], [0.9, 0.9]], np.float32)
    t = patterns[rng.integers(0, 4, size=(seeds, n))]
    four = jax.vmap(lambda t: E.binned_entropy(t, n_bins=2))
    out.append(("binned_entropy (2 bins)", "4 patterns, multinomial draw", 2.0, four, (t,)))
    t = np.tanh(rng.normal(size=(seeds, n, 2)) * 3).astype(np.float32)
    lo = jax.vmap(lambda t: E.kde_mutual_information_x_bounds(jnp.concatenate([t * 0, t * 0 + 100.0]), 0.1)[0])
    out.append(("kde_mutual_information_x_bounds lower", "two clusters 100 apart", 1.0, lo, (t,)))
    return out + sp_cases(n, seeds, rng, sp_reps)


def mixture_mi_bits(points, var_t, var_cond):
    """I(X;T) in bits for X uniform on ``points`` (m, d), d <= 2, T | x ~ N(x, var_t I): h(mixture) - h(N(0, var_cond I)).

    h(mixture) by a dense-grid Riemann sum (spacing sd / 20, +-10 sd margins), in row chunks.
    """
    points = np.asarray(points, np.float64)
    m, d = points.shape
    sd = np.sqrt(var_t)
    axes = [np.arange(points[:, j].min() - 10 * sd, points[:, j].max() + 10 * sd, sd / (20 if d == 1 else 8)) for j in range(d)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    cell = np.prod([a[1] - a[0] for a in axes])
    h = 0.0
    for chunk in np.array_split(grid, max(1, len(grid) * m // 20_000_000)):
        d2 = ((chunk[:, None, :] - points[None, :, :]) ** 2).sum(-1)
        pdf = np.exp(-d2 / (2 * var_t)).mean(1) / (2 * np.pi * var_t) ** (d / 2)
        h -= np.sum(pdf * np.log2(np.maximum(pdf, 1e-300))) * cell
    return h - 0.5 * d * np.log2(2 * np.pi * np.e * var_cond)


def sp_cases(n, seeds, rng, sp_reps=(1, 4, 16)):
    """Sample propagation against dense-grid integrals (module docstring)."""
    out = []
    keys = jax.random.split(jax.random.key(n), seeds)
    line = np.linspace(-1, 1, n)[:, None]
    square = np.random.default_rng(7).uniform(-1, 1, size=(n, 2))
    for pts, beta, n_mc, label in [(line, 0.1, 4, "d=1, beta=0.1"), (line, 0.02, 4, "d=1, beta=0.02"), (square, 0.2, 4, "d=2, beta=0.2")]:
        c = np.broadcast_to(pts.astype(np.float32), (seeds, 1) + pts.shape)
        fn = jax.vmap(lambda c, k, beta=beta, n_mc=n_mc: E.sp_mutual_information(c, beta, k, n_mc=n_mc)["i_xt"])
        out.append(
            (f"sp_mutual_information (R=1, n_mc={n_mc})", f"X + beta Z, {label}", mixture_mi_bits(pts, beta**2, beta**2), fn, (c, keys))
        )
    beta, a = 0.1, 2.0
    true2 = mixture_mi_bits(a * line, (a**2 + 1) * beta**2, (a**2 + 1) * beta**2)
    for reps in sp_reps:
        z1 = rng.normal(size=(seeds, reps, n, 1)) * beta if reps > 1 else np.zeros((seeds, 1, n, 1))
        c = (a * (line[None, None] + z1)).astype(np.float32)
        fn = jax.vmap(lambda c, k: E.sp_mutual_information(c, 0.1, k)["i_xt"])
        out.append((f"sp_mutual_information (R={reps}, n_mc=1)", "2-layer linear, beta=0.1, d=1", true2, fn, (c, keys)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--ns", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--only", default="", help="keep rows whose estimator name starts with this prefix")
    p.add_argument("--sp-reps", type=int, nargs="+", default=[1, 4, 16], help="replica counts R of the 2-layer sp rows")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| estimator | case | n | true (bits) | mean estimate | bias | std over seeds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.ns:
        for name, case, true, fn, data in cases(n, args.seeds, rng, args.sp_reps):
            if not name.startswith(args.only):
                continue
            est = np.asarray(jax.jit(fn)(*[jnp.asarray(a) for a in data]), np.float64)
            print(f"| {name} | {case} | {n} | {true:.4f} | {est.mean():.4f} | {est.mean() - true:+.4f} | {est.std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
