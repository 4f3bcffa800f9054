"""Estimator speed against plain references, measured side by side in one run.

Usage: python scripts/bench_estimators.py [--snapshots 300] [--ref-snapshots 20] [--memory]

1. Binned I(X;T) and I(T;Y) for the 6 hidden layers of the 12-10-7-5-4-3-2
   network x S snapshots x 4,096 rows: ib_jax (one jitted call per layer,
   vmapped over snapshots) against the IDNNs-style numpy reference (digitize,
   np.unique of rows for H(T), and per class for H(T|Y)). The reference is
   timed on ``ref_snapshots`` snapshots and scaled linearly (it is a Python
   loop over snapshots: linear by construction).
2. Kozachenko-Leonenko entropy at n = 4,096 for d in {2, 10, 100}: ib_jax
   against a scipy cKDTree implementation, with the bare blocked distance
   computation (distances + one row minimum) as the floor.
3. ``--memory``: peak resident memory of knn_entropy on n = 60,000 rows of
   width 1,000 (run in a subprocess), against the 14.4 GB an n x n float32
   distance matrix would take.
Compile time is excluded (one warm-up call); times are best of 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special
from scipy.spatial import cKDTree

from ib_jax import estimators as E
from ib_jax.estimators._common import blocked_rows, default_block, sq_distances

WIDTHS = (10, 7, 5, 4, 3, 2)
N = 4096


def best_of(fn, repeat=3):
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_binned(t, y, n_bins=30):
    """IDNNs-style: digitize every unit with shared edges, unique rows, per-class unique."""
    bins = np.linspace(-1, 1, n_bins + 1)
    digit = np.clip(np.digitize(t, bins) - 1, 0, n_bins - 1)
    rows = np.ascontiguousarray(digit).view(np.dtype((np.void, digit.dtype.itemsize * digit.shape[1])))
    _, counts = np.unique(rows, return_counts=True)
    p = counts / len(t)
    h_t = -np.sum(p * np.log2(p))
    h_t_given_y = 0.0
    for c in np.unique(y):
        sel = rows[y == c]
        _, cc = np.unique(sel, return_counts=True)
        pc = cc / len(sel)
        h_t_given_y += len(sel) / len(t) * -np.sum(pc * np.log2(pc))
    return h_t, h_t - h_t_given_y


def kl_ckdtree(x, k=3):
    n, d = x.shape
    eps = cKDTree(x).query(x, k=k + 1)[0][:, -1]
    log_vd = d / 2 * np.log(np.pi) - special.gammaln(d / 2 + 1)
    return special.digamma(n) - special.digamma(k) + log_vd + d * np.mean(np.log(eps))


def bench_binning(snapshots, ref_snapshots):
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.integers(0, 2, N))
    layers = [jnp.tanh(jax.random.normal(jax.random.key(w), (snapshots, N, w)) * 2) for w in WIDTHS]
    fns = [jax.jit(jax.vmap(lambda t: E.binned_information(t, y, n_classes=2))) for _ in WIDTHS]
    t_jax = best_of(lambda: [f(t) for f, t in zip(fns, layers)])
    y_np = np.asarray(y)
    ref_layers = [np.asarray(t[:ref_snapshots], np.float64) for t in layers]
    t0 = time.perf_counter()
    ref = [[numpy_binned(t[s], y_np) for s in range(ref_snapshots)] for t in ref_layers]
    t_ref = (time.perf_counter() - t0) * snapshots / ref_snapshots
    ours = [f(t) for f, t in zip(fns, layers)]
    err = max(abs(float(o["i_ty"][s]) - r[s][1]) + abs(float(o["i_xt"][s]) - r[s][0])
              for o, r in zip(ours, ref) for s in range(ref_snapshots))
    return t_jax, t_ref, err


def bench_knn(d):
    x = np.random.default_rng(d).normal(size=(N, d)).astype(np.float32)
    xj = jnp.asarray(x)
    ours = jax.jit(E.knn_entropy)
    t_ours = best_of(lambda: ours(xj))
    t_ref = best_of(lambda: kl_ckdtree(x.astype(np.float64)))
    block = default_block(N, d)

    @jax.jit
    def floor(x):
        return blocked_rows(lambda rows: jnp.min(sq_distances(x[rows], x), axis=1), N, block)()

    t_floor = best_of(lambda: floor(xj))
    err = abs(float(ours(xj)) - kl_ckdtree(x.astype(np.float64)) / np.log(2))
    return t_ours, t_ref, t_floor, err


MEMORY_CHILD = """
import resource, time, jax, jax.numpy as jnp
from ib_jax import estimators as E
x = jax.random.normal(jax.random.key(0), (60000, 1000))
t0 = time.perf_counter(); h = float(E.knn_entropy(x)); dt = time.perf_counter() - t0
print(h, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshots", type=int, default=300)
    p.add_argument("--ref-snapshots", type=int, default=20)
    p.add_argument("--memory", action="store_true")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}")
    t_jax, t_ref, err = bench_binning(args.snapshots, args.ref_snapshots)
    print(f"\n| binned I(X;T), I(T;Y): 6 layers x {args.snapshots} snapshots x {N} rows | seconds | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| numpy reference (digitize + np.unique) | {t_ref:.3f} | 1.0x |")
    print(f"| ib_jax binned_information | {t_jax:.3f} | {t_ref / t_jax:.1f}x |")
    print(f"(max |difference| vs reference over checked snapshots: {err:.2e} bits)")
    print(f"\n| KL entropy, n={N} | d | cKDTree (s) | ib_jax (s) | speed-up | distance floor (s) | max abs diff (bits) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in (2, 10, 100):
        t_ours, t_ref, t_floor, err = bench_knn(d)
        print(f"| | {d} | {t_ref:.4f} | {t_ours:.4f} | {t_ref / t_ours:.2f}x | {t_floor:.4f} | {err:.1e} |")
    if args.memory:
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, check=True)
        h, dt, rss = (float(v) for v in out.stdout.split())
        print(f"\nknn_entropy n=60000 x d=1000: {dt:.1f} s, peak RSS {rss:.2f} GiB (an n x n float32 matrix: 13.4 GiB)")


if __name__ == "__main__":
    main()
