"""The estimators' fast paths against plain numpy brute force.

Every fast path must give the answer of the obvious O(n^2) computation:
* the cells search (d <= 3) equals the dense search and a numpy k-th neighbour,
  also where most rows need the dense fallback, and under vmap;
* the dense search's grouped k-th selection equals a sort, with ties;
* KSG (max-norm and per-marginal Euclidean) equals a numpy transcription of
  Kraskov et al. (2004) eq. 8 / the "Beyond Normal" benchmark's KSG;
* binned counting through the host sort, the two-word exact path and the
  hashed path (under forced collisions) equals np.unique row counting.
Tolerances are float32 rounding: distances agree to ~1e-6 relative; a KSG
count can flip where a marginal distance ties eps to rounding, which moves the
estimate by ~1/(n n_a) nats, far below the 1e-3 bits allowed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy.spatial.distance import cdist

from ib_jax import estimators as E
from ib_jax.estimators import binning, counting, knn, knn_search

LOG2E = 1 / np.log(2)


def np_kth(x, k):
    """k-th nearest other row, Euclidean, by full sort (float64)."""
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def coord_atol(x):
    """Coordinates are rounded to float32 (and shifted differently by each path): a
    difference is good to a few ulp of the largest coordinate."""
    return 4 * np.finfo(np.float32).eps * max(1.0, float(np.abs(np.asarray(x)).max()))


def sample(kind, n, d, rng):
    if kind == "gauss":
        return rng.normal(size=(n, d))
    if kind == "corr":  # a thin curve: many rows need the fallback
        return np.tanh(2 * rng.normal(size=(n, 1)) + 0.3 * rng.normal(size=(n, d)))
    if kind == "clust":
        c = rng.normal(size=(6, d)) * 5
        return c[rng.integers(0, 6, n)] + 0.05 * rng.normal(size=(n, d))
    if kind == "dup":  # half the rows one point, the rest on a small grid: exact ties
        return np.sign(rng.normal(size=(n, d))) * (rng.random((n, 1)) < 0.5)
    raise ValueError(kind)


_dense = jax.jit(lambda x: knn.knn_distances(x, k=3, search="dense"))
_cells = jax.jit(lambda x: knn.knn_distances(x, k=3, search="cells"))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_cells_search_equals_dense_and_numpy(d):
    rng = np.random.default_rng(d)
    for kind in ("gauss", "corr", "clust", "dup"):
        x = sample(kind, 1500, d, rng).astype(np.float32)
        cells = np.asarray(_cells(jnp.asarray(x)))
        atol = coord_atol(x)
        np.testing.assert_allclose(cells, np.asarray(_dense(jnp.asarray(x))), rtol=1e-5, atol=atol, err_msg=kind)
        np.testing.assert_allclose(cells, np_kth(x.astype(np.float64), 3), rtol=1e-5, atol=atol, err_msg=kind)


def test_cells_fallback_carries_unresolved_rows():
    # a window of one block and no neighbouring slabs resolves few rows: the dense
    # fallback must then produce everything, and the resolved rows must be right too
    rng = np.random.default_rng(11)
    x = jnp.asarray(sample("clust", 1000, 2, rng), jnp.float32)
    tight = ((10,), 104, 8, 0, 0)
    out, exact = jax.jit(
        lambda x: knn_search._cells_kth(x, 4, knn_search._sq_euclid, lambda r: _fallback_sq(x, r, 4), tight, with_exact=True)
    )(x)
    frac = float(jnp.mean(exact))
    assert 0.005 < frac < 0.95, frac  # both paths exercised
    np.testing.assert_allclose(np.sqrt(np.asarray(out)), np_kth(np.asarray(x, np.float64), 4), rtol=1e-5, atol=coord_atol(x))


def _fallback_sq(x, rows, k):
    n = x.shape[0]
    g, n_groups = knn_search._group_shape(n, k)
    xc = x - jnp.min(x, axis=0)  # the frame _cells_kth works in
    cols = knn_search._pad_to(xc, g * n_groups)
    return knn_search._select_kth(knn_search._direct_sq(xc[rows], cols), rows, n, k, g, n_groups)


def test_cells_search_vmaps():
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(3, 1100, 2)), jnp.float32)
    batched = jax.jit(jax.vmap(lambda t: knn.knn_distances(t, k=2, search="cells")))(x)
    for i in range(3):
        np.testing.assert_allclose(batched[i], np_kth(np.asarray(x[i], np.float64), 2), rtol=1e-5, atol=1e-6)


def test_auto_search_entropy_matches_ckdtree_formula():
    x = np.random.default_rng(13).normal(size=(1100, 2)).astype(np.float32)
    eps = np_kth(x.astype(np.float64), 3)
    ref = (special.digamma(1100) - special.digamma(3) + np.log(np.pi) + 2 * np.mean(np.log(eps))) * LOG2E
    assert knn_search._use_cells("auto", 1100, 2)
    assert float(jax.jit(E.knn_entropy)(jnp.asarray(x))) == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("n,d,k", [(300, 6, 1), (300, 6, 4), (257, 2, 10), (12, 3, 11)])
def test_dense_grouped_selection_equals_sort(n, d, k):
    rng = np.random.default_rng(n + k)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[: n // 5] = x[0]  # a block of duplicates: zero distances with multiplicity
    ours = np.asarray(jax.jit(lambda x: knn.knn_distances(x, k=k, search="dense"))(jnp.asarray(x)))
    np.testing.assert_allclose(ours, np_kth(x.astype(np.float64), k), rtol=2e-4, atol=2e-4)


def np_ksg(a, b, k, metric):
    """Kraskov et al. eq. 8 with the joint distance max(d_A, d_B), in bits (float64)."""
    m = "chebyshev" if metric == "max" else "euclidean"
    da, db = cdist(a, a, m), cdist(b, b, m)
    np.fill_diagonal(da, np.inf)
    np.fill_diagonal(db, np.inf)
    eps = np.sort(np.maximum(da, db), axis=1)[:, k - 1][:, None]
    n_a, n_b = (da < eps).sum(1), (db < eps).sum(1)
    n = len(a)
    return (special.digamma(k) + special.digamma(n) - np.mean(special.digamma(n_a + 1) + special.digamma(n_b + 1))) * LOG2E


@pytest.mark.parametrize("metric", ["max", "euclidean"])
def test_ksg_equals_numpy_reference(metric):
    rng = np.random.default_rng(14)
    a = rng.normal(size=(400, 3))  # 3 columns: exact column sums
    b = np.c_[a @ rng.normal(size=(3, 6)) * 0.5 + rng.normal(size=(400, 6)), rng.normal(size=(400, 1))]  # 7: matmul form
    a[:20] = a[0]  # ties in A
    a, b = a.astype(np.float32), b.astype(np.float32)
    ours = float(jax.jit(lambda a, b: E.ksg_mutual_information(a, b, k=5, metric=metric))(a, b))
    assert ours == pytest.approx(np_ksg(a.astype(np.float64), b.astype(np.float64), 5, metric), abs=1e-3)


def test_ksg_euclidean_correlated_gaussians_closed_form():
    # one correlated pair (rho = 0.8) among 2 + 2 dims: I = -log2(1 - rho^2) / 2 = 0.737 bits.
    # KSG (k = 10, n = 1000) underestimates it by 0.067 bits here (measured over 48 data
    # sets, std of the mean 0.006; max-norm: 0.074): the mean of 6 data sets must lie
    # within 4 of its standard errors + 0.03 of that.
    rng = np.random.default_rng(15)
    rho = np.array([0.8, 0.0])
    a = rng.normal(size=(6, 1000, 2))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(6, 1000, 2))
    est = np.asarray(
        jax.jit(jax.vmap(lambda a, b: E.ksg_mutual_information(a, b, k=10, metric="euclidean")))(
            jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
        )
    )
    err = est.mean() + 0.5 * np.sum(np.log2(1 - rho**2))
    assert abs(err + 0.067) < 4 * est.std(ddof=1) / np.sqrt(6) + 0.03


def test_bad_search_and_metric_raise():
    with pytest.raises(ValueError, match="search must be one of"):
        E.knn_distances(jnp.zeros((10, 2)), search="kdtree")
    with pytest.raises(ValueError, match="search='cells' covers d <= 3"):
        E.knn_distances(jnp.zeros((10, 5)), search="cells")
    with pytest.raises(ValueError, match="metric must be one of"):
        E.ksg_mutual_information(jnp.zeros(10), jnp.zeros(10), metric="manhattan")


# ------------------------------------------------------------------ binning


def np_binned(codes, y):
    """H(T) and I(T;Y) in bits by np.unique row counting."""
    n = len(codes)

    def h(a):
        _, c = np.unique(a, axis=0, return_counts=True)
        p = c / n
        return -np.sum(p * np.log2(p))

    return h(codes), h(codes) + h(y[:, None]) - h(np.c_[codes, y])


@pytest.mark.parametrize("host", [False, True], ids=["xla-sort", "host-sort"])
@pytest.mark.parametrize(
    "d,n_bins,n_classes",
    [(7, 30, 3), (6, 30, 5)],
    ids=["two-word", "label-as-second-word"],  # one word and hashed: tests/test_estimators.py, below
)
def test_binned_counting_paths_equal_np_unique(d, n_bins, n_classes, host):
    # with XLA's sort these take the hashed path, inside host_sort() the exact pair sort
    rng = np.random.default_rng(d * n_classes)
    t = np.tanh(rng.normal(size=(800, d)) * 0.7).astype(np.float32)
    t[:100] = t[0]  # one large pattern
    y = rng.integers(0, n_classes, 800)
    with binning.host_sort(host):
        ours = jax.jit(lambda t, y: E.binned_information(t, y, n_classes=n_classes, n_bins=n_bins))(jnp.asarray(t), jnp.asarray(y))
    codes = np.asarray(E.bin_codes(jnp.asarray(t), n_bins=n_bins))
    h_t, i_ty = np_binned(codes, y)
    assert float(ours["h_t"]) == pytest.approx(h_t, abs=1e-4)
    assert float(ours["i_ty"]) == pytest.approx(i_ty, abs=1e-4)


def test_hashed_path_exact_under_forced_collisions(monkeypatch):
    real = counting._hash_words
    monkeypatch.setattr(counting, "_hash_words", lambda w, r: real(w, r) & jnp.uint32(0xC0000000))  # 2-bit hash
    rng = np.random.default_rng(16)
    t = rng.choice([-0.9, 0.0, 0.9], size=(700, 20)).astype(np.float32)  # 20 units x 5 bits: 4 words, hashed
    t[:200] = t[0]
    y = rng.integers(0, 2, 700)
    ours = jax.jit(lambda t, y: E.binned_information(t, y, n_classes=2))(jnp.asarray(t), jnp.asarray(y))
    h_t, i_ty = np_binned(np.asarray(E.bin_codes(jnp.asarray(t))), y)
    assert float(ours["h_t"]) == pytest.approx(h_t, abs=1e-4)
    assert float(ours["i_ty"]) == pytest.approx(i_ty, abs=1e-4)


def test_host_and_xla_sorts_agree():
    # the CPU (host) branch and the other platforms' (XLA) branch of the sort primitives
    rng = np.random.default_rng(17)
    hi = rng.integers(0, 4, (3, 500), dtype=np.uint32)  # many equal hi: lo decides
    lo = rng.integers(0, 2**32, (3, 500), dtype=np.uint32)
    xla = [np.asarray(v) for v in jax.jit(counting._xla_sort_pairs)(hi, lo)]
    host = counting._host_sort_pairs(hi, lo)
    np.testing.assert_array_equal(xla[0], host[0])
    np.testing.assert_array_equal(xla[1], host[1])
    order = np.lexsort((lo, hi), axis=-1)
    np.testing.assert_array_equal(host[1], np.take_along_axis(lo, order, -1))
    np.testing.assert_array_equal(np.asarray(jax.jit(counting._xla_sort)(lo)), counting._host_sort(lo))
    with binning.host_sort():
        batched = jax.jit(jax.vmap(counting._sort_u32))(lo)  # the callback under vmap
    np.testing.assert_array_equal(np.asarray(batched), np.sort(lo, axis=-1))


def test_host_sort_context_gives_the_same_estimates():
    # binning (two-word path) and the cells search, traced inside and outside host_sort()
    rng = np.random.default_rng(18)
    t = jnp.asarray(np.tanh(rng.normal(size=(3, 600, 8))), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, 600))
    x = jnp.asarray(rng.normal(size=(1100, 2)), jnp.float32)

    def both():
        info = jax.jit(jax.vmap(lambda t: E.binned_information(t, y, n_classes=2)))(t)
        return info["h_t"], info["i_ty"], jax.jit(lambda x: knn.knn_distances(x, search="cells"))(x)

    plain = both()
    with binning.host_sort():
        host = both()
    assert not counting._HOST_SORT[0]  # restored on exit
    for a, b in zip(plain, host):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
