"""One distance function for every estimator: exact narrow sums, a full-precision matmul form, a clamp.

Sample propagation used its own copy that lost both the ``Precision.HIGHEST`` matmul (TF32 on recent
GPUs cannot resolve a noise of beta = 0.005 at unit scale) and the clamp at the form's resolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.estimators import _common, sp


def _exact(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def test_sp_uses_the_shared_distance_function_in_both_regimes():
    rng = np.random.default_rng(0)
    for d in (3, sp.DIRECT_MAX_DIM, sp.DIRECT_MAX_DIM + 8):
        a = jnp.asarray(rng.normal(size=(40, d)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(30, d)), jnp.float32)
        got = np.asarray(jax.jit(sp._sq_dist)(a, b, jnp.sum(b * b, -1)))
        want = np.asarray(jax.jit(lambda a, b: _common.sq_distances(a, b, direct_max_dim=sp.DIRECT_MAX_DIM))(a, b))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # the same function (fusion may reorder sums)
        np.testing.assert_allclose(got, _exact(a, b), rtol=2e-5, atol=2e-4 * d)


def test_duplicates_are_at_distance_zero_in_the_matmul_form():
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(16, 64)) * 10, jnp.float32)  # wide and large: the matmul form
    d2 = np.asarray(jax.jit(lambda x: sp._sq_dist(x, x, jnp.sum(x * x, -1)))(a))
    assert np.all(np.diag(d2) == 0.0) and np.all(d2 >= 0.0)
    off = d2[~np.eye(16, dtype=bool)]
    np.testing.assert_allclose(off, _exact(a, a)[~np.eye(16, dtype=bool)], rtol=1e-4)
