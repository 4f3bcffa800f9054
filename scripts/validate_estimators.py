"""Estimators against cases with a known answer: a markdown table of bias and spread.

Usage: python scripts/validate_estimators.py [--seeds 5] [--ns 500 2000] [--only sp]
       python scripts/validate_estimators.py --suite beyond_normal [--n 5000] [--seeds 3]
              [--only ksg] [--tasks multinormal- student-] [--long] [--out FILE]

Suite ``closed_forms`` (the default): for every estimator x case x n it draws ``seeds``
independent data sets (one vmapped call), and prints: true value, mean estimate, bias, std over
seeds (all in bits). The first table in docs/estimators.md was produced by this script.
``--only PREFIX [PREFIX ...]`` keeps the rows whose estimator name starts with one of them.

Sample propagation (``sp``) rows: n inputs evenly spaced on [-1, 1] (d = 1)
or fixed uniform draws from [-1, 1]^2 (d = 2), X uniform over them, and the
true I(X;T) from a dense-grid integral of the Gaussian mixture; n is the
number of inputs. The two-layer rows propagate T1 = X + beta Z1 through
S2 = 2 T1 with R replicas of Z1 (T2 = S2 + beta Z2, so p(t2|x) =
N(2x, 5 beta^2) exactly); R = 1 ignores the first layer's noise.

Suite ``beyond_normal``: every I(A;B) estimator of the library for continuous A, B on the tasks of
the "Beyond Normal" benchmark (Czyz et al., NeurIPS 2023; :mod:`ib_jax.estimators.ground_truth`),
n rows x ``seeds`` data sets per task, each coordinate standardised per data set (as the benchmark
does; MI is invariant to it). Estimators: ``ksg_mutual_information`` with metric 'max' and
'euclidean' (k = 3), ``infonce_mutual_information`` and ``nwj_mutual_information`` (library
defaults; skipped with a line when :mod:`ib_jax.estimators.variational` does not import),
``sliced_mutual_information`` (``--sliced-projections`` pairs, k = 3) and the matrix Renyi
``renyi_mutual_information`` (alpha = 1.01, the kernel-width rule of thumb, on the first
``--renyi-rows`` rows: its eigendecompositions cost n^3). Sliced MI and I_alpha are other
quantities than I(A;B): their estimates are shown, their error columns are "n/a". Not run: the
kernel and binning modules, which have no estimator of I(A;B) for continuous A and B (their MI
functions need a noise variance and X uniform over the rows, or discrete labels). Every estimator
is one vmapped call over the seeds, compiled ahead (compile time excluded from the seconds, which
are per data set). ``--only`` keeps estimators by name prefix, ``--tasks`` tasks by name prefix.

A full run computes for ~13 min on 2 CPU cores. The run that made the docs' table stalled in 4 of
its 46 Renyi calls (every XLA worker idle): two of jaxlib's batched LAPACK eigenvalue kernels at
once wedge a 2-thread pool. ``renyi_mutual_information`` now makes one eigenvalue call
(:func:`ib_jax.estimators.renyi.renyi_entropies`), which removes the cause; ``--resume FILE``
(append each result to FILE, skip those already there) and ``--stall-timeout S`` (exit when one
call takes longer than S seconds) stay as a watchdog for long runs.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from ib_jax import estimators as E
from ib_jax.estimators import ground_truth as GT


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


# ----------------------------------------------------------------------------- Beyond Normal suite

MI = "I(A;B)"


@dataclass(frozen=True)
class MIEstimator:
    """One estimator of the suite: ``fn(a, b, key)`` -> scalar bits, vmapped over the seeds."""

    name: str
    fn: object
    quantity: str = MI  # what it estimates; errors against I(A;B) only for MI
    rows: int | None = None  # a prefix of the rows (the data sets are iid: a random subset)
    slow: bool = False  # uses --slow-seeds


def _renyi_mi(a, b):
    m = a.shape[0]
    ga = E.gaussian_gram(a, E.renyi_width(m, a.shape[1]))
    gb = E.gaussian_gram(b, E.renyi_width(m, b.shape[1]))
    return E.renyi_mutual_information(ga, gb, 1.01)


def suite_estimators(args) -> list[MIEstimator]:
    ests = [
        MIEstimator("ksg max", lambda a, b, key: E.ksg_mutual_information(a, b, metric="max")),
        MIEstimator("ksg euclidean", lambda a, b, key: E.ksg_mutual_information(a, b, metric="euclidean")),
    ]
    try:
        variational = importlib.import_module("ib_jax.estimators.variational")
    except ImportError as e:
        print(f"(InfoNCE / NWJ skipped: ib_jax.estimators.variational does not import: {e})")
    else:
        ests.append(MIEstimator("infonce", lambda a, b, key: variational.infonce_mutual_information(a, b, key)["mi"], slow=True))
        ests.append(MIEstimator("nwj", lambda a, b, key: variational.nwj_mutual_information(a, b, key)["mi"], slow=True))
    m = args.sliced_projections
    ests.append(MIEstimator(f"sliced (m={m})", lambda a, b, key: E.sliced_mutual_information(a, b, key, projections=m)["mi"], "sliced MI"))
    ests.append(MIEstimator(f"renyi (n={args.renyi_rows})", lambda a, b, key: _renyi_mi(a, b), "Renyi I_alpha", rows=args.renyi_rows))
    return [e for e in ests if e.name.startswith(tuple(args.only))]


def standardized(v):
    v = np.asarray(v, np.float64)
    return ((v - v.mean(0)) / np.maximum(v.std(0), 1e-300)).astype(np.float32)


def suite_data(task, n, seeds):
    """``seeds`` standardised data sets of ``task``: a ``(seeds, n, dim_x)``, b ``(seeds, n, dim_y)``, keys."""
    pairs = [task.sample(GT.seed_for(task.name, s), n) for s in range(seeds)]
    a = np.stack([standardized(x) for x, _ in pairs])
    b = np.stack([standardized(y) for _, y in pairs])
    keys = jax.random.split(jax.random.PRNGKey(zlib.crc32(task.name.encode()) % (2**31)), seeds)
    return a, b, keys


_COMPILED: dict = {}


def run_estimator(est: MIEstimator, a, b, keys):
    """(estimates ``(seeds,)`` in bits, seconds per data set): one vmapped call, compiled ahead (cached by shape)."""
    if est.rows is not None:
        a, b = a[:, : est.rows], b[:, : est.rows]
    args = (jnp.asarray(a), jnp.asarray(b), keys)
    sig = (est.name, args[0].shape, args[1].shape)
    if sig not in _COMPILED:
        _COMPILED[sig] = jax.jit(jax.vmap(est.fn)).lower(*args).compile()
    t0 = time.perf_counter()
    out = np.asarray(jax.block_until_ready(_COMPILED[sig](*args)), np.float64)
    return out, (time.perf_counter() - t0) / len(out)


def _fmt(v, nd=3):
    if not np.isfinite(v):
        return "nan"
    return f"{v:.2e}" if abs(v) >= 1e4 else f"{v:.{nd}f}"


def suite_tables(results, ests, tasks, args) -> str:
    """The markdown: settings, the wide table (estimate (|error|) per estimator), optionally the long one, the summary."""
    lines = [
        f"Beyond Normal suite: {len(tasks)} tasks, n = {args.n}, seeds = {args.seeds}"
        + (f" ({args.slow_seeds} for InfoNCE / NWJ)" if args.slow_seeds != args.seeds and any(e.slow for e in ests) else "")
        + "; all values in bits. Cells: mean estimate over seeds (mean |estimate - true| over seeds);"
        + " n/a: another quantity than I(A;B), no error against it. * marks the smallest error of the row.",
        "",
        "| task | dims | true MI (bits) | "
        + " | ".join(f"{e.name}" + ("" if e.quantity == MI else f" [{e.quantity}]") for e in ests)
        + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in ests) + " |",
    ]
    for t in tasks:
        errs = {e.name: results[t.name, e.name]["mae"] for e in ests if e.quantity == MI}
        best = min((v for v in errs.values() if np.isfinite(v)), default=np.nan)
        cells = []
        for e in ests:
            r = results[t.name, e.name]
            if e.quantity != MI:
                cells.append(f"{_fmt(r['mean'])} (n/a)")
            else:
                star = "*" if np.isfinite(best) and r["mae"] <= best + 1e-9 else ""
                cells.append(f"{_fmt(r['mean'])} ({_fmt(r['mae'])}){star}")
        lines.append(f"| {t.name} | {t.dims} | {t.mi_bits:.3f} | " + " | ".join(cells) + " |")
    if args.long:
        lines += [
            "",
            "| task | estimator | quantity | true MI (bits) | estimate ± std over seeds | abs error | seeds | seconds per data set |",
        ]
        lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for t in tasks:
            for e in ests:
                r = results[t.name, e.name]
                err = _fmt(r["mae"]) if e.quantity == MI else "n/a (another quantity)"
                lines.append(
                    f"| {t.name} | {e.name} | {e.quantity} | {t.mi_bits:.3f} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | {err} | {r['seeds']} | {r['seconds']:.3f} |"
                )
    multi = [t for t in tasks if t.dim_x + t.dim_y > 2]
    lines += [
        "",
        "| estimator | quantity | mean abs error over tasks (bits) | median | 1 x 1 tasks (mean) | multi-d tasks (mean) | best on (tasks) |"
        " seconds per data set (mean) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in ests:
        secs = np.mean([results[t.name, e.name]["seconds"] for t in tasks])
        if e.quantity != MI:
            lines.append(f"| {e.name} | {e.quantity} | n/a (another quantity) | n/a | n/a | n/a | n/a | {secs:.3f} |")
            continue
        err = {t.name: results[t.name, e.name]["mae"] for t in tasks}
        wins = 0
        for t in tasks:
            row = [results[t.name, o.name]["mae"] for o in ests if o.quantity == MI]
            wins += bool(np.isfinite(err[t.name]) and err[t.name] <= np.nanmin(row) + 1e-9)
        one = [err[t.name] for t in tasks if t not in multi]
        lines.append(
            f"| {e.name} | {e.quantity} | {_fmt(np.mean(list(err.values())))} | {_fmt(np.median(list(err.values())))}"
            f" | {_fmt(np.mean(one)) if one else '-'}"
            f" | {_fmt(np.mean([err[t.name] for t in multi])) if multi else '-'} | {wins} | {secs:.3f} |"
        )
    lines += ["", "Best on: ties (within 1e-9 bits, e.g. both KSG metrics on 1 x 1 tasks, where they coincide) count for each."]
    return "\n".join(lines)


def _load_resume(path, n) -> dict:
    """(task, estimator, seeds) -> result of earlier runs at this n, from ``--resume`` (JSON lines)."""
    out = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if r.pop("n") == n:
                    out[r.pop("task"), r.pop("estimator"), r["seeds"]] = r
    return out


def beyond_normal(args):
    args.seeds = args.seeds or 3
    args.slow_seeds = min(args.slow_seeds or args.seeds, args.seeds)
    tasks = GT.tasks(args.tasks)
    if not tasks:
        raise SystemExit(f"no task name starts with {args.tasks}; known: {', '.join(GT.TASKS)}")
    ests = suite_estimators(args)
    if not ests:
        raise SystemExit(f"no estimator name starts with {args.only!r}")
    print("(not run: kernel.py and binning.py have no I(A;B) estimator for continuous A, B)")
    results, saved, reused = {}, _load_resume(args.resume, args.n), 0
    t_start = time.perf_counter()
    for t in tasks:
        todo = [e for e in ests if (t.name, e.name, args.slow_seeds if e.slow else args.seeds) not in saved]
        for e in ests:
            if e not in todo:
                results[t.name, e.name] = saved[t.name, e.name, args.slow_seeds if e.slow else args.seeds]
                reused += 1
        if todo:
            a, b, keys = suite_data(t, args.n, args.seeds)
        for e in todo:
            s = args.slow_seeds if e.slow else args.seeds
            print(f"({t.name}: {e.name} ...)", file=sys.stderr, flush=True)
            if args.stall_timeout:  # a watchdog for an execution that never returns: exit, then --resume
                faulthandler.dump_traceback_later(args.stall_timeout, exit=True, file=sys.__stderr__)
            est, secs = run_estimator(e, a[:s], b[:s], keys[:s])
            faulthandler.cancel_dump_traceback_later()
            results[t.name, e.name] = r = {
                "mean": float(np.mean(est)),
                "std": float(np.std(est, ddof=1)) if s > 1 else float("nan"),
                "mae": float(np.mean(np.abs(est - t.mi_bits))) if e.quantity == MI else float("nan"),
                "seeds": s,
                "seconds": secs,
            }
            if args.resume:
                with open(args.resume, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"task": t.name, "estimator": e.name, "n": args.n, **r}) + "\n")
        print(f"({t.name}: done, {time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    text = suite_tables(results, ests, tasks, args)
    text += f"\n\nWall time of this run {time.perf_counter() - t_start:.0f} s (compilation included"
    text += f"; {reused} results read from {args.resume})." if reused else ")."
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("closed_forms", "beyond_normal"), default="closed_forms")
    p.add_argument("--seeds", type=int, default=None, help="data sets per case (default 5; beyond_normal: 3)")
    p.add_argument("--ns", type=int, nargs="+", default=[500, 2000], help="closed_forms: sample sizes")
    p.add_argument("--n", type=int, default=5000, help="beyond_normal: rows per data set")
    p.add_argument("--only", nargs="+", default=[""], help="keep rows whose estimator name starts with one of these prefixes")
    p.add_argument("--tasks", nargs="+", default=[], help="beyond_normal: keep tasks whose name starts with one of these")
    p.add_argument("--sliced-projections", type=int, default=16, help="beyond_normal: direction pairs of sliced MI")
    p.add_argument("--renyi-rows", type=int, default=500, help="beyond_normal: rows used by the Renyi estimator (n^3)")
    p.add_argument("--slow-seeds", type=int, default=None, help="beyond_normal: seeds for InfoNCE / NWJ (default: --seeds)")
    p.add_argument("--long", action="store_true", help="beyond_normal: also the long table (one row per task x estimator)")
    p.add_argument("--out", default=None, help="beyond_normal: also write the tables to this markdown file")
    p.add_argument("--resume", default=None, help="beyond_normal: JSON-lines file of results, read (skipping those done) and appended")
    p.add_argument("--stall-timeout", type=float, default=0, help="beyond_normal: exit (status 1) when one estimator call takes longer")
    p.add_argument("--sp-reps", type=int, nargs="+", default=[1, 4, 16], help="replica counts R of the 2-layer sp rows")
    args = p.parse_args(argv)
    if args.suite == "beyond_normal":
        return beyond_normal(args)
    seeds = args.seeds or 5
    rng = np.random.default_rng(0)
    print("| estimator | case | n | true (bits) | mean estimate | bias | std over seeds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.ns:
        for name, case, true, fn, data in cases(n, seeds, rng, args.sp_reps):
            if not name.startswith(tuple(args.only)):
                continue
            est = np.asarray(jax.jit(fn)(*[jnp.asarray(a) for a in data]), np.float64)
            print(f"| {name} | {case} | {n} | {true:.4f} | {est.mean():.4f} | {est.mean() - true:+.4f} | {est.std(ddof=1):.4f} |")


if __name__ == "__main__":
    main()
