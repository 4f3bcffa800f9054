"""The "Beyond Normal" ground-truth tasks (ib_jax.estimators.ground_truth) and the script's suite.

Every check compares a task's closed-form I(X;Y) with something computed independently of it:
a sample statistic of the task's own sampler (the Gaussian MI of the sample covariance, of normal
scores of the ranks), a numerical integral or a Monte Carlo mean of log-densities from scipy, or
an inverse transform that must give back the base task's sample. Tolerances are stated where used.
"""

import importlib.util
import math
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from ib_jax import estimators as E
from ib_jax.estimators import ground_truth as GT

ROOT = Path(__file__).resolve().parents[2]
LN2 = math.log(2.0)
COORDINATEWISE = {"half_cube", "asinh", "normal_cdf", "wiggly", "bimodal"}  # strictly increasing per coordinate


def _rng(name, s=0):
    return np.random.default_rng([99, zlib.crc32(name.encode()), s])


def gaussian_mi_of_sample(x, y):
    """1/2 log2(det S_xx det S_yy / det S) of the sample covariance (float64)."""
    c = np.cov(np.c_[x, y], rowvar=False)
    dx = x.shape[1]
    return 0.5 * (np.linalg.slogdet(c[:dx, :dx])[1] + np.linalg.slogdet(c[dx:, dx:])[1] - np.linalg.slogdet(c)[1]) / LN2


def base_of(task):
    return GT.get_task(task.base) if task.base else None


def gaussian_root(task):
    """The multinormal task a chain of transforms starts from (None if it does not)."""
    while task.base:
        task = base_of(task)
    return task if task.family == "multinormal" else None


# ----------------------------------------------------------------------------- the registry


def test_registry_covers_the_benchmark():
    names = list(GT.TASKS)
    bench = GT.tasks(benchmark_only=True)
    assert len(names) >= 30 and len(bench) == 40  # the benchmark's BENCHMARK_TASKS_LIST has 40 tasks
    families = {t.family for t in GT.TASKS.values()}
    assert {"multinormal", "student", "additive_uniform", "half_cube", "asinh", "spiral", "wiggly", "normal_cdf"} <= families
    for prefix, dims in [("multinormal-dense", {2, 3, 5, 25, 50}), ("multinormal-sparse", {2, 3, 5, 25})]:
        assert {t.dim_x for t in GT.tasks(prefix)} == dims
    assert {(t.dim_x, t.params["dof"]) for t in GT.tasks("student-")} == {(1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3)}
    assert {t.params["epsilon"] for t in GT.tasks("1v1-additive")} == {0.1, 0.3, 0.75, 2.0}
    assert [t.name for t in GT.tasks(["1v1-normal", "student-identity-1"])] == ["1v1-normal-0.75", "student-identity-1-1-1"]
    with pytest.raises(KeyError, match="no ground-truth task"):
        GT.get_task("nope")


@pytest.mark.parametrize("name", list(GT.TASKS))
def test_every_sampler_shapes_seeds_and_transform_truth(name):
    t = GT.get_task(name)
    x, y = t.sample(3, 50)
    assert x.shape == (50, t.dim_x) and y.shape == (50, t.dim_y) and x.dtype == np.float64
    assert np.isfinite(x).all() and np.isfinite(y).all()
    x2, y2 = t.sample(np.random.default_rng(3), 50)  # an int seed is default_rng(seed)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, t.sample(4, 50)[0])
    np.testing.assert_array_equal(t.sample(jax.random.key(5), 10)[0], t.sample(jax.random.PRNGKey(5), 10)[0])
    assert t.mi_bits > 0 and t.dims == f"{t.dim_x}x{t.dim_y}"
    if t.base:  # a transform keeps its base's I(X;Y)
        assert t.mi_bits == base_of(t).mi_bits


# ----------------------------------------------------------------------------- closed forms


def test_closed_forms_against_hand_values():
    # bivariate normal rho = 0.75: -1/2 log2(1 - rho^2); the 2-pair tasks: two pairs at rho = 0.8
    assert GT.get_task("1v1-normal-0.75").mi_bits == pytest.approx(-0.5 * math.log2(1 - 0.75**2), abs=1e-12)
    for d in (2, 3, 5, 25):
        assert GT.get_task(f"multinormal-sparse-{d}-{d}-2-2.0").mi_bits == pytest.approx(-math.log2(1 - 0.64), abs=1e-10)
    # dense: det of an m x m block (1 - c) I + c 11^T is (1 - c)^(m - 1) (1 + (m - 1) c)
    for d in (2, 3, 5, 25, 50):
        logdet = [(m - 1) * math.log(0.5) + math.log(1 + (m - 1) * 0.5) for m in (d, 2 * d)]
        assert GT.get_task(f"multinormal-dense-{d}-{d}-0.5").mi_bits == pytest.approx((logdet[0] - 0.5 * logdet[1]) / LN2, abs=1e-9)
    # bivariate Cauchy (Student-t, nu = 1, 1 x 1): h(X) = log 4 pi each, h(X, Y) = log 2 pi + 3
    assert GT.get_task("student-identity-1-1-1").mi_bits == pytest.approx((math.log(8 * math.pi) - 3) / LN2, abs=1e-10)
    # additive uniform, both branches, and continuity at eps = 1/2 (both give 1/2 nat)
    assert GT.additive_uniform_mi_bits(0.1) == pytest.approx((0.1 - math.log(0.2)) / LN2)
    assert GT.additive_uniform_mi_bits(2.0) == pytest.approx(1 / 8 / LN2)
    assert GT.additive_uniform_mi_bits(0.5) == pytest.approx(GT.additive_uniform_mi_bits(0.5 + 1e-12), abs=1e-9)
    with pytest.raises(ValueError):
        GT.additive_uniform_mi_bits(0.0)


def _student_mi_quadrature(nu):
    """I(X;Y) = 2 h(X) - h(X, Y) in bits for the bivariate t (identity dispersion), by 1-d quadrature:
    h(X) of the univariate t density (scipy's pdf), h(X, Y) of the radial density, area 2 pi r dr."""

    def log_joint(r):
        return special.gammaln((nu + 2) / 2) - special.gammaln(nu / 2) - math.log(nu * math.pi) - (nu + 2) / 2 * math.log1p(r * r / nu)

    h_x = integrate.quad(lambda x: -stats.t.pdf(x, nu) * stats.t.logpdf(x, nu), -np.inf, np.inf, limit=200)[0]
    h_xy = integrate.quad(lambda r: -math.exp(log_joint(r)) * log_joint(r) * 2 * math.pi * r, 0, np.inf, limit=200)[0]
    return (2 * h_x - h_xy) / LN2


@pytest.mark.parametrize("name", [t.name for t in GT.tasks("student-")])
def test_student_tasks_against_monte_carlo_log_densities(name):
    """E[log p(x, y) - log p(x) - log p(y)] over 100,000 draws of the task's sampler, densities from
    scipy (marginals of a t with identity dispersion are t's of the same nu): within 5 standard errors."""
    t = GT.get_task(name)
    nu = t.params["dof"]
    x, y = t.sample(_rng(name), 100_000)
    lr = stats.multivariate_t.logpdf(np.c_[x, y], shape=np.eye(t.dim_x + t.dim_y), df=nu)
    lr = lr - stats.multivariate_t.logpdf(x, shape=np.eye(t.dim_x), df=nu) - stats.multivariate_t.logpdf(y, shape=np.eye(t.dim_y), df=nu)
    mc, se = lr.mean() / LN2, lr.std() / LN2 / math.sqrt(len(lr))
    assert abs(mc - t.mi_bits) < 5 * se + 1e-3, (mc, se, t.mi_bits)


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.75, 2.0])
def test_additive_uniform_against_quadrature_and_sampler(eps):
    """h(Y) - h(N) with h(Y) integrated over Y's trapezoid density; the sampler's noise is U(-eps, eps)."""

    def p(y):
        return max(0.0, min(y + eps, 1.0) - max(y - eps, 0.0)) / (2 * eps)

    pts = sorted({-eps, eps, 1 - eps, 1 + eps})
    h_y = sum(integrate.quad(lambda v: -p(v) * math.log(p(v)) if p(v) > 0 else 0.0, lo, hi)[0] for lo, hi in zip(pts, pts[1:]))
    assert GT.additive_uniform_mi_bits(eps) == pytest.approx((h_y - math.log(2 * eps)) / LN2, abs=1e-8)
    x, y = GT.get_task(f"1v1-additive-{eps}").sample(_rng("add", int(eps * 10)), 20_000)
    noise = (y - x)[:, 0]
    assert 0 <= x.min() and x.max() <= 1 and -eps <= noise.min() and noise.max() <= eps
    assert np.var(noise) == pytest.approx(eps**2 / 3, rel=0.05)  # U(-eps, eps): var eps^2 / 3


@pytest.mark.parametrize("name", [t.name for t in GT.tasks() if t.family == "multinormal"])
def test_multinormal_sample_covariance_mi(name):
    """The Gaussian MI of the sample covariance of 20,000 draws is biased up by ~ d_x d_y / (2n) nats
    (the likelihood-ratio chi^2 mean); after removing that, within 0.03 bits (sd ~ 0.01 here)."""
    t = GT.get_task(name)
    n = 20_000
    x, y = t.sample(_rng(name), n)
    est = gaussian_mi_of_sample(x, y) - t.dim_x * t.dim_y / (2 * n) / LN2
    assert est == pytest.approx(t.mi_bits, abs=0.03)


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("name", [t.name for t in GT.tasks() if t.family in COORDINATEWISE])
def test_coordinatewise_transforms_keep_ranks_and_copula_mi(name):
    """Same seed: the transformed sample has the base sample's per-coordinate ranks (a strictly
    increasing map); over a Gaussian root, the Gaussian MI of the ranks' normal scores (invariant to
    such maps) matches the closed form within 0.04 bits at n = 20,000."""
    t = GT.get_task(name)
    n = 20_000
    x, y = t.sample(_rng(name), n)
    bx, by = base_of(t).sample(_rng(name), n)
    for u, v in ((x, bx), (y, by)):
        np.testing.assert_array_equal(np.argsort(u, axis=0, kind="stable"), np.argsort(v, axis=0, kind="stable"))
    if gaussian_root(t) is not None:
        scores = [special.ndtri(stats.rankdata(u, axis=0) / (n + 1)) for u in (x, y)]
        assert gaussian_mi_of_sample(*scores) == pytest.approx(t.mi_bits, abs=0.04)


def test_transforms_are_strictly_increasing():
    g = np.linspace(-12, 12, 200_001)
    for f in (GT.half_cube, np.arcsinh, GT.wiggly_x, GT.wiggly_y):
        assert np.all(np.diff(f(g)) > 0), f
    assert np.all(np.diff(GT.normal_cdf(g[np.abs(g) < 5])) > 0)  # further out float64 Phi steps are below its resolution
    # the wiggly maps' derivatives are bounded below by 1 - sum of the sine amplitudes x frequencies
    assert np.min(np.gradient(GT.wiggly_x(g), g)) > 1 - 0.4 - 0.34 - 0.099
    assert np.min(np.gradient(GT.wiggly_y(g), g)) > 1 - 0.16 - 0.221 - 0.086


@pytest.mark.parametrize("name", [t.name for t in GT.tasks("spiral-")])
def test_spiral_is_a_norm_keeping_rotation_inverted_exactly(name):
    t = GT.get_task(name)
    x, y = t.sample(_rng(name), 2000)
    bx, by = base_of(t).sample(_rng(name), 2000)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.linalg.norm(bx, axis=1), rtol=1e-12)
    np.testing.assert_allclose(GT.spiral(x, 0, 1, 1 / t.dim_x, inverse=True), bx, atol=1e-10)
    np.testing.assert_allclose(GT.spiral(y, 1, 2, 1 / t.dim_y, inverse=True), by, atol=1e-10)
    # only the rotation plane moves (X: coordinates 0, 1; Y: 1, 2), and it does move
    np.testing.assert_array_equal(x[:, 2:], bx[:, 2:])
    np.testing.assert_array_equal(np.delete(y, [1, 2], axis=1), np.delete(by, [1, 2], axis=1))
    assert np.abs(x[:, :2] - bx[:, :2]).max() > 0.1


def test_swissroll_embeds_the_uniform_task():
    t = GT.get_task("swissroll_x-normal_cdf-1v1-normal-0.75")
    x, y = t.sample(_rng("roll"), 1000)
    u, v = base_of(t).sample(_rng("roll"), 1000)
    tt = 21 * np.linalg.norm(x, axis=1)  # the spiral's parameter: ||(t cos t, t sin t)|| = t
    np.testing.assert_allclose((tt / (1.5 * np.pi) - 1) / 2, u[:, 0], atol=1e-12)
    np.testing.assert_array_equal(y, v)


# ----------------------------------------------------------------------------- KSG on tasks

KSG_TASKS = ["1v1-normal-0.75", "1v1-bimodal-0.75", "swissroll_x-normal_cdf-1v1-normal-0.75", "multinormal-dense-3-3-0.5"]


def test_ksg_euclidean_recovers_the_truth_on_easy_tasks():
    """KSG (Euclidean, k = 3), n = 2,000, 4 data sets per task: the mean within 0.1 bits of the truth.
    Measured over 16 data sets: biases -0.003, +0.002, +0.019, +0.002 bits, sd per data set
    0.038-0.046 (sd of a 4-mean ~0.02): 0.1 is ~4 sd plus the bias."""
    f = jax.jit(jax.vmap(lambda a, b: E.ksg_mutual_information(a, b)))
    for name in KSG_TASKS:
        t = GT.get_task(name)
        pairs = [t.sample(_rng(name, s), 2000) for s in range(4)]
        a = jnp.asarray(np.stack([(x - x.mean(0)) / x.std(0) for x, _ in pairs]), jnp.float32)
        b = jnp.asarray(np.stack([(y - y.mean(0)) / y.std(0) for _, y in pairs]), jnp.float32)
        est = np.asarray(f(a, b))
        assert abs(est.mean() - t.mi_bits) < 0.1, (name, est, t.mi_bits)


def test_ksg_default_metric_is_euclidean():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(300, 3)), jnp.float32)
    b = a + jnp.asarray(rng.normal(size=(300, 3)), jnp.float32)
    default = float(E.ksg_mutual_information(a, b))
    assert default == float(E.ksg_mutual_information(a, b, metric="euclidean"))
    assert default != float(E.ksg_mutual_information(a, b, metric="max"))


# ----------------------------------------------------------------------------- the script


def _script():
    spec = importlib.util.spec_from_file_location("validate_estimators", ROOT / "scripts" / "validate_estimators.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass resolves annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    return mod


def test_script_beyond_normal_suite_end_to_end(tmp_path, capsys):
    """2 tasks x 1 seed at n = 300, every estimator but the variational ones (their compilation alone
    takes ~15 s; their presence in the suite is checked below, their numbers by their own tests)."""
    script = _script()
    out = tmp_path / "bn.md"
    argv = ["--suite", "beyond_normal", "--n", "300", "--seeds", "1", "--tasks", "1v1-normal", "multinormal-dense-2-2"]
    argv += ["--only", "ksg", "sliced", "renyi", "--sliced-projections", "2", "--renyi-rows", "100", "--long", "--out", str(out)]
    argv += ["--resume", str(tmp_path / "r.jsonl")]
    results = script.main(argv)
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    # a rerun with --resume computes nothing and gives the same results
    again = script.main(argv)  # (repr: NaN entries compare unequal)
    assert repr(sorted(again.items())) == repr(sorted(results.items())) and "8 results read from" in capsys.readouterr().out
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 8
    names = ["ksg max", "ksg euclidean", "sliced (m=2)", "renyi (n=100)"]
    lines = text.splitlines()
    wide = next(line for line in lines if line.startswith("| task | dims |"))
    assert wide.startswith(
        "| task | dims | true MI (bits) | ksg max | ksg euclidean | sliced (m=2) [sliced MI] | renyi (n=100) [Renyi I_alpha] |"
    )
    rows = [line for line in lines if line.startswith(("| 1v1-normal-0.75 | 1x1 | 0.596 |", "| multinormal-dense-2-2-0.5 | 2x2 | 0.424 |"))]
    assert len(rows) == 2 and all(line.count("|") == wide.count("|") == 8 for line in rows)
    assert all(line.count("(n/a)") == 2 for line in rows)  # sliced and Renyi: another quantity
    assert (
        "| task | estimator | quantity | true MI (bits) | estimate ± std over seeds | abs error | seeds | seconds per data set |" in lines
    )
    assert sum("n/a (another quantity)" in line for line in lines) == 2 * 2 + 2  # long rows + summary rows
    summary = lines.index(next(line for line in lines if line.startswith("| estimator | quantity | mean abs error")))
    assert [line.split("|")[1].strip() for line in lines[summary + 2 : summary + 6]] == names
    # the numbers in the table are the results': the KSG error of the 1 x 1 task, recomputed
    r = results["1v1-normal-0.75", "ksg euclidean"]
    assert r["mae"] == pytest.approx(abs(r["mean"] - GT.get_task("1v1-normal-0.75").mi_bits))
    assert f"{r['mean']:.3f} ({r['mae']:.3f})" in rows[0]
    assert np.isnan(results["1v1-normal-0.75", "sliced (m=2)"]["mae"])
    # every I(A;B) estimator of the library is in the suite (InfoNCE / NWJ when their module imports)
    args = script.argparse.Namespace(only=[""], sliced_projections=16, renyi_rows=500)
    listed = [e.name for e in script.suite_estimators(args)]
    expected = ["ksg max", "ksg euclidean", "sliced (m=16)", "renyi (n=500)"]
    if importlib.util.find_spec("ib_jax.estimators.variational") is not None:
        expected[2:2] = ["infonce", "nwj"]
    assert listed == expected
