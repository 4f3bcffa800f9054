"""Estimators that use fewer rows than the information set draw a seeded random subset, and SP's
distances keep full float32 precision with the backend's default matmul precision (no global
precision switch in this suite: what runs here is what a user's process runs)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from ib_jax import config as C
from ib_jax import data
from ib_jax.config import to_dict
from ib_jax.estimators import sp as SP
from ib_jax.estimators.base import EvalContext, subset, subset_rows


def test_subset_rows_are_seeded_uniform_and_sorted():
    a, b = subset_rows(4096, 512, 0), subset_rows(4096, 512, 0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 512 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, subset_rows(4096, 512, 1))  # the seed chooses the rows
    assert np.array_equal(subset_rows(100, 512, 0), np.arange(100))  # n >= rows: all of them
    # uniform: each row's inclusion frequency over many seeds is n/N (binomial tolerance, 5 sd)
    hits = np.zeros(200)
    for s in range(400):
        hits[subset_rows(200, 50, s)] += 1
    p = 50 / 200
    assert np.all(np.abs(hits / 400 - p) < 5 * math.sqrt(p * (1 - p) / 400))


def test_the_subset_is_representative_where_the_first_rows_are_not():
    ds = data.tishby12()
    x, y = np.asarray(ds.x_all), np.asarray(ds.y_all)  # the information set's rows, in data order
    n, N = 512, len(y)
    p = y.mean()
    # the sd of a subset mean drawn without replacement (hypergeometric)
    sd = math.sqrt(p * (1 - p) / n * (N - n) / (N - 1))
    rows = subset_rows(N, n, C.EstimatorConf().subset_seed)
    assert abs(y[rows].mean() - p) < 4 * sd, (y[rows].mean(), p)
    ctx = EvalContext([], None, None, None, jnp.asarray(x), jnp.asarray(y), N, 2, None, None, None)
    assert np.array_equal(np.asarray(subset(ctx, n, C.EstimatorConf().subset_seed)), x[rows])
    # what the estimators used before: the first rows of sorted data, far outside sampling error
    assert abs(y[:n].mean() - p) > 4 * sd
    assert to_dict(C.Config())["estimator"]["subset_seed"] == 0  # recorded with the job's config


def _sp_float64(centers, beta, key):
    """The SP estimate (R = 1, n_mc = 1) in float64 numpy on the same Monte-Carlo noise draws."""
    n, d = centers.shape[1:]
    comps = np.asarray(centers[0], np.float64)
    comps = (comps - comps.mean(0)) / beta
    z = np.stack(
        [
            np.asarray(
                jax.vmap(lambda u, e=e: jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, e), u), (), jnp.float32))(
                    jnp.arange(d)
                )
            )
            for e in range(n)
        ]
    ).astype(np.float64)
    s = comps + z
    d2 = ((s[:, None, :] - comps[None, :, :]) ** 2).sum(-1)
    diff = -0.5 * d2[np.arange(n), np.arange(n)] - logsumexp(-0.5 * d2, axis=1)
    return (math.log(n) + diff.mean()) / math.log(2)


@pytest.mark.parametrize("d", [8, 64])  # column sums, and the matmul form (d > DIRECT_MAX_DIM)
def test_sp_with_default_precision_equals_float64(d):
    # clusters at unit scale with members a few beta apart: distances at the beta scale against
    # activations of unit scale, the case TF32's 10-bit mantissa cannot resolve
    beta = 0.005
    rng = np.random.default_rng(0)
    n, k = 128, 8
    centres = rng.uniform(-1, 1, (k, d))
    pts = centres[np.arange(n) % k] + 4.0 * beta / math.sqrt(d) * rng.standard_normal((n, d))  # members ~6 beta apart
    centers = jnp.asarray(pts[None], jnp.float32)
    key = jax.random.key(3)
    out = jax.jit(lambda c: SP.sp_mutual_information(c, beta, key))(centers)  # the backend's default precision
    ref = _sp_float64(np.asarray(centers), beta, key)
    assert math.log2(k) < ref < math.log2(n) - 0.1  # a case between "clusters only" and "every input apart"
    se = float(out["i_xt_mc_se"])
    print(f"d={d}: float32 {float(out['i_xt']):.4f} bits, float64 {ref:.4f}, MC se {se:.4f}")
    assert abs(float(out["i_xt"]) - ref) < se, (float(out["i_xt"]), ref, se)
