"""Ground-truth mutual-information tasks of the "Beyond Normal" benchmark, in bits.

Czyz, Grabowski, Vogt, Beerenwinkel & Marx, "Beyond Normal: On the Evaluation of Mutual
Information Estimators", NeurIPS 2023 (code: github.com/cbg-ethz/bmi, ``src/bmi/benchmark``). Each
task is a joint distribution of (X, Y) with a known I(X;Y); this module re-implements the
benchmark's samplers and closed forms from their published definitions (numpy/scipy, float64; bmi
is not a dependency). Names are the benchmark's task ids (``bmi.benchmark.Task.id``), labels its
task names. ``TASKS`` maps name -> :class:`Task`; ``task.sample(rng, n)`` returns ``x`` ``(n, dim_x)``
and ``y`` ``(n, dim_y)`` float64 arrays, ``task.mi_bits`` the true I(X;Y) in **bits** (the paper
reports nats: divide by ln 2).

Families (the benchmark's 40 tasks, ``in_benchmark=True``, plus a few extras):

* **multinormal** (X, Y) ~ N(0, Sigma), Sigma = [[S_xx, S_xy], [S_yx, S_yy]]::

      I(X;Y) = 1/2 log2( det S_xx det S_yy / det Sigma )

  *bivariate* 1 x 1, correlation rho = 0.75: I = -1/2 log2(1 - rho^2) = 0.5963 bits.
  *dense* d x d: Sigma = (1 - c) I + c 11^T, c = 0.5 (every pair of coordinates correlated);
  det of an m x m such block is (1 - c)^(m - 1) (1 + (m - 1) c).
  *sparse* ("2-pair") d x d: the benchmark's Gaussian latent-variable model with 2 interacting
  pairs (alpha = beta = 0, lambda = eta = 2, epsilon = 1), normalised to a correlation matrix:
  identity except Corr(X_i, Y_i) = lambda^2 / (lambda^2 + epsilon^2) = 0.8 for i = 1, 2, so
  I = -2 * 1/2 log2(1 - 0.64) = 1.4740 bits at every d.
* **student** multivariate Student-t with nu degrees of freedom, location 0, dispersion Omega
  (identity here): (X, Y) = Z / sqrt(W / nu), Z ~ N(0, Omega), W ~ chi^2_nu. Arellano-Valle,
  Contreras-Reyes & Genton (Scand. J. Stat. 40, 2013), as computed by the benchmark::

      I(X;Y) = I_Gauss(Omega) + h_nu(d_x) + h_nu(d_y) - h_nu(d_x + d_y)
      h_nu(k) = log G(nu/2) - log G((nu + k)/2) + k/2 log(nu pi) + (nu + k)/2 [psi((nu + k)/2) - psi(nu/2)]

  (nats; h_nu(k) the entropy of the standard k-variate t). With Omega = I the Gaussian part is 0
  and all the dependence is the shared scale W: X and Y are uncorrelated yet dependent.
* **additive_uniform** X ~ U(0, 1), N ~ U(-eps, eps), Y = X + N::

      I(X;Y) = eps - ln(2 eps)     (eps <= 1/2)        I(X;Y) = 1 / (4 eps)     (eps > 1/2)     [nats]

  (h(Y) - h(N), Y's density a trapezoid).
* **Transforms** of a base task by a diffeomorphism f x g of each variable, I(f(X); g(Y)) =
  I(X;Y) (the point of these tasks: the estimate should not move)::

      half_cube   x -> x |x|^(1/2)              (coordinate-wise)
      asinh       x -> asinh(x)                 (coordinate-wise; tames Student-t tails)
      normal_cdf  x -> Phi(x)                   (coordinate-wise; Gaussian -> uniform marginals)
      wiggly      x -> x + 0.4 sin x + 0.2 sin(1.7x + 1) + 0.03 sin(3.3x - 2.5)            (X)
                  y -> y - 0.4 sin 0.4y + 0.17 sin(1.3y + 3.5) + 0.02 sin(4.3y - 2.5)      (Y)
      spiral      v -> R(s ||v||^2) v, R(theta) the rotation by theta in the plane of coordinates
                  (0, 1) of X and (1, 2) of Y (the benchmark's so(n) generators), s = 1 / dim
      bimodal     u -> F^-1(u) of the uniform 1 x 1 task, F_X = 0.3 Phi(x) + 0.7 Phi(x - 5),
                  F_Y = 0.5 Phi(y + 1) + 0.5 Phi(y - 3) (bisection on [-10, 10])
      swissroll   u -> (t cos t, t sin t) / 21, t = 1.5 pi (1 + 2u), X of the uniform 1 x 1 task:
                  a 2 x 1 embedding, injective and smooth, so I is unchanged

The spiral keeps ||v|| (a rotation), so its inverse is v -> R(-s ||v||^2) v. The wiggly maps'
derivatives are at least 0.16 and 0.53: strictly increasing. The benchmark standardises every
task's samples before estimating (``scale_tasks``): MI is invariant to that, and
``scripts/validate_estimators.py --suite beyond_normal`` does the same.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np
from scipy import special

__all__ = [
    "Task",
    "TASKS",
    "tasks",
    "get_task",
    "as_rng",
    "seed_for",
    "gaussian_mi_bits",
    "student_t_mi_bits",
    "student_t_correction_bits",
    "additive_uniform_mi_bits",
    "dense_covariance",
    "sparse_correlation",
    "half_cube",
    "normal_cdf",
    "wiggly_x",
    "wiggly_y",
    "spiral",
    "swissroll",
]

LN2 = math.log(2.0)
Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Task:
    """One ground-truth task: its sampler, its true I(X;Y) in bits, its dimensions.

    ``sampler(rng, n)`` draws n iid pairs from a numpy ``Generator``; use :meth:`sample`, which also
    accepts an int seed or a JAX key. ``base`` names the task a transform was applied to.
    """

    name: str
    label: str
    family: str
    dim_x: int
    dim_y: int
    mi_bits: float
    sampler: Sampler = field(repr=False)
    in_benchmark: bool = True
    base: str | None = None
    params: dict = field(default_factory=dict, compare=False)

    @property
    def dims(self) -> str:
        return f"{self.dim_x}x{self.dim_y}"

    def sample(self, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``x`` ``(n, dim_x)``, ``y`` ``(n, dim_y)`` float64 from ``rng`` (Generator, int seed or JAX key)."""
        x, y = self.sampler(as_rng(rng), int(n))
        return np.asarray(x, np.float64).reshape(n, self.dim_x), np.asarray(y, np.float64).reshape(n, self.dim_y)


def as_rng(rng) -> np.random.Generator:
    """A numpy ``Generator`` from a Generator, an int seed (or seed sequence) or a JAX PRNG key."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer, tuple, list)):
        return np.random.default_rng(rng)
    if isinstance(rng, jax.Array) and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)  # a typed key: its raw uint32 words
    data = np.asarray(rng)
    return np.random.default_rng([int(v) for v in data.ravel()])


# ----------------------------------------------------------------------------- closed forms


def _logdet(m) -> float:
    sign, val = np.linalg.slogdet(np.asarray(m, np.float64))
    if sign <= 0:
        raise ValueError("covariance is not positive definite")
    return float(val)


def gaussian_mi_bits(cov, dim_x: int) -> float:
    """1/2 log2(det S_xx det S_yy / det S) for a joint Gaussian with covariance ``cov`` (X first)."""
    cov = np.asarray(cov, np.float64)
    nats = 0.5 * (_logdet(cov[:dim_x, :dim_x]) + _logdet(cov[dim_x:, dim_x:]) - _logdet(cov))
    return max(0.0, nats) / LN2


def _t_entropy_nats(k: int, nu: float) -> float:
    """Differential entropy of the standard k-variate Student-t (identity dispersion), nats."""
    h = 0.5 * (nu + k)
    return float(
        special.gammaln(0.5 * nu)
        - special.gammaln(h)
        + 0.5 * k * math.log(nu * math.pi)
        + h * (special.digamma(h) - special.digamma(0.5 * nu))
    )


def student_t_correction_bits(nu: float, dim_x: int, dim_y: int) -> float:
    """h_nu(d_x) + h_nu(d_y) - h_nu(d_x + d_y) in bits: the Student-t MI beyond its Gaussian part."""
    return (_t_entropy_nats(dim_x, nu) + _t_entropy_nats(dim_y, nu) - _t_entropy_nats(dim_x + dim_y, nu)) / LN2


def student_t_mi_bits(dispersion, dim_x: int, nu: float) -> float:
    """I(X;Y) in bits of a multivariate Student-t (``nu`` dof, ``dispersion``, X its first ``dim_x`` coordinates)."""
    dispersion = np.asarray(dispersion, np.float64)
    return gaussian_mi_bits(dispersion, dim_x) + student_t_correction_bits(nu, dim_x, dispersion.shape[0] - dim_x)


def additive_uniform_mi_bits(eps: float) -> float:
    """I(X; X + N) in bits, X ~ U(0, 1), N ~ U(-eps, eps): eps - ln(2 eps) (eps <= 1/2), 1 / (4 eps) otherwise."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    nats = 0.25 / eps if eps > 0.5 else eps - math.log(2 * eps)
    return nats / LN2


def dense_covariance(dim: int, off_diag: float = 0.5) -> np.ndarray:
    """The benchmark's dense covariance: (1 - c) I + c 11^T of size ``dim``."""
    return np.eye(dim) * (1 - off_diag) + off_diag


def sparse_correlation(dim_x: int, dim_y: int, n_interacting: int = 2, strength: float = 2.0, epsilon: float = 1.0) -> np.ndarray:
    """The benchmark's sparse latent-variable correlation (alpha = beta = 0, lambda = eta = ``strength``).

    X_i = lambda Z_i + epsilon E_i (i < K), X_i = eta V_i + epsilon E_i (i >= K), Y likewise with the
    same Z_i: every variance is lambda^2 + epsilon^2 and Corr(X_i, Y_i) = lambda^2 / (lambda^2 + epsilon^2)
    for the K interacting pairs, 0 elsewhere.
    """
    if not 0 <= n_interacting <= min(dim_x, dim_y):
        raise ValueError(f"n_interacting={n_interacting} must be in [0, min(dim_x, dim_y)]")
    rho = strength**2 / (strength**2 + epsilon**2)
    corr = np.eye(dim_x + dim_y)
    for i in range(n_interacting):
        corr[i, dim_x + i] = corr[dim_x + i, i] = rho
    return corr


# ----------------------------------------------------------------------------- transforms


def half_cube(x):
    """x |x|^(1/2), coordinate-wise (signed x^(3/2))."""
    return x * np.sqrt(np.abs(x))


def normal_cdf(x):
    """Phi(x), coordinate-wise."""
    return special.ndtr(x)


def wiggly_x(x):
    return x + 0.4 * np.sin(1.0 * x) + 0.2 * np.sin(1.7 * x + 1) + 0.03 * np.sin(3.3 * x - 2.5)


def wiggly_y(x):
    return x - 0.4 * np.sin(0.4 * x) + 0.17 * np.sin(1.3 * x + 3.5) + 0.02 * np.sin(4.3 * x - 2.5)


def spiral(v, i: int, j: int, speed: float, inverse: bool = False):
    """Rows of ``v`` ``(n, d)`` rotated by theta = speed ||v||^2 in the plane of coordinates (i, j).

    exp(theta A) for the so(d) generator A[i, j] = -1, A[j, i] = 1: new_i = cos x_i - sin x_j,
    new_j = sin x_i + cos x_j. ``inverse`` rotates by -theta (||v|| is kept, so this inverts it).
    """
    v = np.array(v, np.float64, copy=True)
    theta = speed * np.sum(v * v, axis=1) * (-1.0 if inverse else 1.0)
    c, s = np.cos(theta), np.sin(theta)
    vi, vj = v[:, i].copy(), v[:, j].copy()
    v[:, i] = c * vi - s * vj
    v[:, j] = s * vi + c * vj
    return v


def swissroll(u):
    """u in [0, 1] ``(n, 1)`` -> ``(n, 2)``: (t cos t, t sin t) / 21, t = 1.5 pi (1 + 2u)."""
    t = 1.5 * np.pi * (1 + 2 * np.asarray(u)[:, 0])
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 21.0


def _invert_cdf(cdf, u, lo=-10.0, hi=10.0, iters=64):
    """Vectorised bisection for cdf(x) = u on [lo, hi] (the benchmark's ``invert_cdf``)."""
    a = np.full_like(u, lo, dtype=np.float64)
    b = np.full_like(u, hi, dtype=np.float64)
    for _ in range(iters):
        m = 0.5 * (a + b)
        below = cdf(m) < u
        a = np.where(below, m, a)
        b = np.where(below, b, m)
    return 0.5 * (a + b)


def _bimodal_x(u):
    return _invert_cdf(lambda x: 0.3 * special.ndtr(x) + 0.7 * special.ndtr(x - 5), u)


def _bimodal_y(u):
    return _invert_cdf(lambda x: 0.5 * special.ndtr(x + 1) + 0.5 * special.ndtr(x - 3), u)


# ----------------------------------------------------------------------------- task builders


def _gaussian_sampler(cov, dim_x: int) -> Sampler:
    chol = np.linalg.cholesky(np.asarray(cov, np.float64))

    def sample(rng, n):
        z = rng.standard_normal((n, chol.shape[0])) @ chol.T
        return z[:, :dim_x], z[:, dim_x:]

    return sample


def _student_sampler(dispersion, dim_x: int, nu: float) -> Sampler:
    gauss = _gaussian_sampler(dispersion, dim_x)

    def sample(rng, n):
        x, y = gauss(rng, n)
        scale = np.sqrt(nu / rng.chisquare(nu, size=(n, 1)))  # one W per row, shared by X and Y
        return x * scale, y * scale

    return sample


def _additive_sampler(eps: float) -> Sampler:
    def sample(rng, n):
        x = rng.uniform(0.0, 1.0, size=(n, 1))
        return x, x + rng.uniform(-eps, eps, size=(n, 1))

    return sample


def bivariate_normal(rho: float = 0.75) -> Task:
    cov = np.array([[1.0, rho], [rho, 1.0]])
    return Task(
        f"1v1-normal-{rho}",
        "Bivariate normal 1 × 1",
        "multinormal",
        1,
        1,
        gaussian_mi_bits(cov, 1),
        _gaussian_sampler(cov, 1),
        params={"rho": rho},
    )


def multinormal_dense(dim_x: int, dim_y: int, off_diag: float = 0.5) -> Task:
    cov = dense_covariance(dim_x + dim_y, off_diag)
    return Task(
        f"multinormal-dense-{dim_x}-{dim_y}-{off_diag}",
        f"Multinormal {dim_x} × {dim_y} (dense)",
        "multinormal",
        dim_x,
        dim_y,
        gaussian_mi_bits(cov, dim_x),
        _gaussian_sampler(cov, dim_x),
        params={"off_diag": off_diag},
    )


def multinormal_sparse(dim_x: int, dim_y: int, n_interacting: int = 2, strength: float = 2.0) -> Task:
    cov = sparse_correlation(dim_x, dim_y, n_interacting, strength)
    return Task(
        f"multinormal-sparse-{dim_x}-{dim_y}-{n_interacting}-{strength}",
        f"Multinormal {dim_x} × {dim_y} (2-pair)" if n_interacting == 2 else f"Multinormal {dim_x} × {dim_y} (sparse)",
        "multinormal",
        dim_x,
        dim_y,
        gaussian_mi_bits(cov, dim_x),
        _gaussian_sampler(cov, dim_x),
        params={"n_interacting": n_interacting, "strength": strength},
    )


def student_identity(dim_x: int, dim_y: int, nu: int) -> Task:
    disp = np.eye(dim_x + dim_y)
    return Task(
        f"student-identity-{dim_x}-{dim_y}-{nu}",
        f"Student-t {dim_x} × {dim_y} (dof={nu})",
        "student",
        dim_x,
        dim_y,
        student_t_mi_bits(disp, dim_x, nu),
        _student_sampler(disp, dim_x, nu),
        params={"dof": nu},
    )


def additive_uniform(eps: float, in_benchmark: bool = True) -> Task:
    return Task(
        f"1v1-additive-{eps}",
        f"Uniform 1 × 1 (additive noise={eps})",
        "additive_uniform",
        1,
        1,
        additive_uniform_mi_bits(eps),
        _additive_sampler(eps),
        in_benchmark=in_benchmark,
        params={"epsilon": eps},
    )


def transformed(base: Task, kind: str, fx, fy, *, name=None, label=None, dim_x=None) -> Task:
    """``base`` pushed through ``fx`` x ``fy`` (row arrays in, row arrays out): the same I(X;Y)."""

    def sample(rng, n):
        x, y = base.sampler(rng, n)
        return fx(x), fy(y)

    return Task(
        name or f"{kind}-{base.name}",
        label or f"{kind.replace('_', ' ').title()} @ {base.label}",
        kind,
        dim_x or base.dim_x,
        base.dim_y,
        base.mi_bits,
        sample,
        in_benchmark=base.in_benchmark,
        base=base.name,
        params=dict(base.params),
    )


def half_cube_task(base: Task) -> Task:
    return transformed(base, "half_cube", half_cube, half_cube, label=f"Half-cube @ {base.label}")


def asinh_task(base: Task) -> Task:
    return transformed(base, "asinh", np.arcsinh, np.arcsinh, label=f"Asinh @ {base.label}")


def normal_cdf_task(base: Task) -> Task:
    return transformed(base, "normal_cdf", normal_cdf, normal_cdf, label=f"Normal CDF @ {base.label}")


def wiggly_task(base: Task) -> Task:
    return transformed(base, "wiggly", wiggly_x, wiggly_y, label=f"Wiggly @ {base.label}")


def spiral_task(base: Task, speed: float = 1.0) -> Task:
    """The benchmark's spiral (normalised speed: s = speed / dim); needs dim_x >= 2, dim_y >= 3."""
    if base.dim_x < 2 or base.dim_y < 3:
        raise ValueError("spiral needs dim_x >= 2 and dim_y >= 3")
    sx, sy = speed / base.dim_x, speed / base.dim_y
    return transformed(base, "spiral", lambda v: spiral(v, 0, 1, sx), lambda v: spiral(v, 1, 2, sy), label=f"Spiral @ {base.label}")


def bimodal_task(rho: float = 0.75) -> Task:
    uniform = normal_cdf_task(bivariate_normal(rho))
    return transformed(uniform, "bimodal", _bimodal_x, _bimodal_y, name=f"1v1-bimodal-{rho}", label="Bimodal 1 × 1")


def swissroll_task(base: Task) -> Task:
    return transformed(base, "swissroll", swissroll, lambda y: y, name=f"swissroll_x-{base.name}", label="Swiss roll 2 × 1", dim_x=2)


def _build() -> dict[str, Task]:
    binormal = bivariate_normal(0.75)
    uniform = normal_cdf_task(binormal)
    bistudent = student_identity(1, 1, 1)
    out = [
        # one-dimensional
        binormal,
        uniform,
        additive_uniform(0.1),
        additive_uniform(0.75),
        bimodal_task(0.75),
        wiggly_task(binormal),
        half_cube_task(binormal),
        bistudent,
        asinh_task(bistudent),
        # embedding
        swissroll_task(uniform),
        # multinormal
        *[multinormal_dense(d, d) for d in (2, 3, 5, 25, 50)],
        *[multinormal_sparse(d, d) for d in (2, 3, 5, 25)],
        # Student-t
        *[student_identity(d, d, nu) for d, nu in ((2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3))],
    ]
    bases = [multinormal_sparse(d, d) for d in (3, 5, 25)]
    out += [normal_cdf_task(b) for b in bases]
    out += [half_cube_task(b) for b in bases]
    out += [spiral_task(b) for b in bases]
    out += [spiral_task(normal_cdf_task(b)) for b in bases]
    out += [asinh_task(student_identity(d, d, nu)) for d, nu in ((2, 1), (3, 2), (5, 2))]
    # extras, not in the benchmark's list: more noise levels of the additive task
    out += [additive_uniform(eps, in_benchmark=False) for eps in (0.3, 2.0)]
    reg = {t.name: t for t in out}
    assert len(reg) == len(out), "duplicate task names"
    return reg


TASKS: dict[str, Task] = _build()


def tasks(prefixes=(), *, benchmark_only: bool = False) -> list[Task]:
    """The registered tasks whose name starts with one of ``prefixes`` (all when empty), in registry order."""
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return [t for t in TASKS.values() if (not prefixes or t.name.startswith(tuple(prefixes))) and (t.in_benchmark or not benchmark_only)]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"no ground-truth task {name!r}; known: {', '.join(TASKS)}") from None


def seed_for(name: str, seed: int, base: int = 0) -> np.random.Generator:
    """A Generator for data set ``seed`` of task ``name``: independent across tasks, stable under filtering."""
    return np.random.default_rng([base, zlib.crc32(name.encode()), seed])
