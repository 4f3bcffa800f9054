"""Matrix-based Renyi alpha-order entropy and mutual information, in bits.

Giraldo, Rao & Principe, "Measures of entropy from data using infinitely divisible kernels"
(IEEE Trans. Inf. Theory 61(1), 2015; arXiv 2012); used on the layers of CNNs by Yu, Wickstrom,
Jenssen & Principe, "Understanding convolutional neural networks with information theory: an
initial exploration" (IEEE TNNLS 32(1), 2021; arXiv 2018), and on joint entropies of several
variables by Yu, Giraldo, Jenssen & Principe (TPAMI 2019).

For n rows t_i, the Gaussian Gram matrix and its normalisation (trace 1)::

    K_ij = exp(-||t_i - t_j||^2 / (2 sigma^2)),      A_ij = K_ij / (n sqrt(K_ii K_jj))

and, with lambda_i(A) its eigenvalues (``jnp.linalg.eigvalsh`` in float32, whose zero eigenvalues
come out as rounding noise of either sign, ~1e-7 to 1e-6 for n = 64..1024: eigenvalues at most
n eps lambda_max count as 0, numpy's ``matrix_rank`` convention, and the rest are renormalised to
sum 1; without this an alpha < 1 adds the noise's lambda^alpha, 0.015 bits for n = 64 identical
rows at alpha = 0.5)::

    S_alpha(A)      = 1 / (1 - alpha) log2 sum_i lambda_i(A)^alpha
    S_alpha(A, B)   = S_alpha(A o B / tr(A o B))                       (Hadamard product o)
    I_alpha(A; B)   = S_alpha(A) + S_alpha(B) - S_alpha(A, B)

I_alpha(X;T) uses A_x (the inputs, flattened) and A_t (the layer); I_alpha(T;Y) the label Gram
matrix K_y = 1[y_i == y_j] (a linear kernel on one-hot labels: S_alpha(A_y) is exactly the Renyi
entropy of the labels' empirical distribution). ``h_x_given_t`` = S(A_x) - I_alpha(X;T)
= S(A_x, A_t) - S(A_t). Bounds: 0 <= S_alpha(A) <= log2 n, and S_alpha(A, B) >= max(S(A), S(B))
(Giraldo et al.), so 0 <= I_alpha(A;B) <= min(S(A), S(B)).

Kernel width: the rule of thumb of Yu et al. (2021; Scott/Silverman form)::

    sigma = gamma * n^(-1 / (4 + d))

with n the rows used, d the real width of the representation (``ctx.dims``: padded units
are not counted) and gamma = ``estimator.renyi.width_scale`` (the papers choose gamma by hand,
with the data's average marginal variance in mind). The rule is not scale
invariant: gamma is in the units of t. For a wide layer n^(-1/(4+d)) -> 1, while
||t_i - t_j||^2 grows with d, so A -> I / n and every entropy saturates at log2 n unless gamma
grows like sqrt(d x the units' variance).

What it is not: S_alpha is a functional of the Gram matrix's spectrum (an RKHS quantity with the
axioms of Renyi's entropy), not a plug-in of Shannon's differential or discrete entropy, and
I_alpha is not Shannon's I(X;T); its values depend on sigma and alpha. alpha -> 1 is the von
Neumann entropy of A; alpha = 1.01 approximates it (the papers' choice).

Cost: O(n^2 d) for the distances, O(n^3) per eigendecomposition (2 per layer, plus 2 shared);
memory O(L n^2) under the vmap over layers. Rows are a seeded random subset
(``estimator.renyi.n``, ``estimator.subset_seed``), the same for layers, inputs and labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ib_jax.estimators._common import centered, check_rank, check_same_length, nan_unless_finite, sq_distances, to_bits
from ib_jax.estimators.base import EvalContext, register_estimator, subset, subset_rows

__all__ = [
    "renyi_width",
    "normalized_gram",
    "gaussian_gram",
    "label_gram",
    "joint_gram",
    "renyi_entropy",
    "renyi_entropies",
    "renyi_joint_entropy",
    "renyi_mutual_information",
    "renyi_information",
]


def renyi_width(n, d, scale=1.0):
    """The kernel width of Yu et al. (2021): ``scale * n ** (-1 / (4 + d))`` (``d`` may be traced)."""
    return scale * jnp.power(jnp.float32(n), -1.0 / (4.0 + jnp.asarray(d, jnp.float32)))


def normalized_gram(sq_dist, sigma):
    """A = K / (n sqrt(K_ii K_jj)), K = exp(-sq_dist / (2 sigma^2)); ``sq_dist`` ``(n, n)``. Trace 1."""
    check_rank(sq_dist, 2, "sq_dist")
    k = jnp.exp(-sq_dist / (2.0 * jnp.square(jnp.asarray(sigma, jnp.float32))))
    diag = jnp.sqrt(jnp.diagonal(k))
    return k / (k.shape[0] * diag[:, None] * diag[None, :])


def gaussian_gram(t, sigma):
    """:func:`normalized_gram` of the rows of ``t`` ``(n, d)`` (shared distance function, centred rows)."""
    check_rank(t, 2, "t")
    t = centered(t)
    return normalized_gram(sq_distances(t, t), sigma)


def label_gram(y):
    """Normalised Gram matrix of integer labels ``(n,)``: 1[y_i == y_j] / n."""
    check_rank(y, 1, "y")
    return (y[:, None] == y[None, :]).astype(jnp.float32) / y.shape[0]


def joint_gram(a, b):
    """A o B / tr(A o B): the Gram matrix of the pair (Hadamard product, trace 1)."""
    ab = a * b
    return ab / jnp.trace(ab)


def renyi_entropies(grams, alpha):
    """:func:`renyi_entropy` of a stack ``(B, n, n)`` of Gram matrices, ``(B,)`` bits, with ONE eigenvalue call.

    Why one call: jaxlib's batched LAPACK kernels (``eigvalsh`` on CPU) split their batch over
    XLA's intra-op thread pool and block the calling worker until it is done; two such kernels
    running at once on a small pool (2 cores) each hold a worker and wait for the other's tasks,
    and the program hangs (measured: a digits CNN job with three eigenvalue calls per layer wedged
    with every thread idle). One call per estimate leaves no second kernel to wait on.
    """
    check_rank(grams, 3, "grams")
    g = grams.astype(jnp.float32)
    lam = jnp.linalg.eigvalsh(g / jnp.trace(g, axis1=-2, axis2=-1)[:, None, None])
    tol = g.shape[-1] * float(np.finfo(np.float32).eps) * jnp.max(lam, axis=-1, keepdims=True)
    lam = jnp.where(lam > tol, lam, 0.0)
    lam = lam / jnp.sum(lam, axis=-1, keepdims=True)
    alpha = jnp.asarray(alpha, jnp.float32)
    log_sum = logsumexp(jnp.where(lam > 0, alpha * jnp.log(jnp.where(lam > 0, lam, 1.0)), -jnp.inf), axis=-1)
    return jax.vmap(nan_unless_finite)(to_bits(log_sum / (1.0 - alpha)), g)


def renyi_entropy(gram, alpha):
    """S_alpha(A) = 1 / (1 - alpha) log2 sum_i lambda_i^alpha in bits; ``gram`` ``(n, n)`` symmetric PSD.

    ``gram`` is divided by its trace (a no-op for :func:`normalized_gram`); eigenvalues at most
    n eps lambda_max (float32 rounding) count as 0 and the rest are renormalised, so
    0 <= S <= log2 n. ``alpha`` > 0, != 1 (may be traced). NaN for a non-finite ``gram``.
    Several entropies at once: :func:`renyi_entropies` (one eigenvalue call).
    """
    check_rank(gram, 2, "gram")
    return renyi_entropies(gram[None], alpha)[0]


def renyi_joint_entropy(a, b, alpha):
    """S_alpha(A, B) = S_alpha(A o B / tr(A o B)) in bits."""
    return renyi_entropy(joint_gram(a, b), alpha)


def renyi_mutual_information(a, b, alpha, *, h_a=None, h_b=None):
    """I_alpha(A; B) = S(A) + S(B) - S(A, B) in bits, from two normalised Gram matrices ``(n, n)``.

    ``h_a``, ``h_b``: S(A), S(B) when already computed (saves their eigendecompositions).
    """
    grams = [joint_gram(a, b)] + [g for g, h in ((a, h_a), (b, h_b)) if h is None]
    h = renyi_entropies(jnp.stack(grams), alpha)  # one eigenvalue call (renyi_entropies: why)
    rest = iter(h[1:])
    h_a = next(rest) if h_a is None else h_a
    h_b = next(rest) if h_b is None else h_b
    return h_a + h_b - h[0]


def renyi_information(t, a_x, a_y, alpha, sigma, *, h_x=None, h_y=None):
    """One layer's matrix-based quantities in bits: ``i_xt``, ``i_ty``, ``h_t``, ``h_x_given_t``.

    Args:
      t: the layer ``(n, d)`` (zero-padded units leave every distance unchanged).
      a_x, a_y: the normalised Gram matrices of the inputs and the labels, ``(n, n)``, same rows.
      alpha: the order (> 0, != 1).
      sigma: the layer's kernel width (:func:`renyi_width`); may be traced.
      h_x, h_y: S(A_x), S(A_y) when already computed (they are shared by every layer).
    """
    check_rank(t, 2, "t")
    check_same_length(t, a_x, "t", "a_x")
    check_same_length(t, a_y, "t", "a_y")
    a_t = gaussian_gram(t, sigma)
    grams = [a_t, joint_gram(a_x, a_t), joint_gram(a_t, a_y)] + [a for a, h in ((a_x, h_x), (a_y, h_y)) if h is None]
    h = renyi_entropies(jnp.stack(grams), alpha)  # one eigenvalue call (renyi_entropies: why)
    h_t, h_xt, h_ty = h[0], h[1], h[2]
    rest = iter(h[3:])
    h_x = next(rest) if h_x is None else h_x
    h_y = next(rest) if h_y is None else h_y
    out = {"i_xt": h_x + h_t - h_xt, "i_ty": h_t + h_y - h_ty, "h_t": h_t, "h_x_given_t": h_xt - h_t}
    return {q: nan_unless_finite(v, t) for q, v in out.items()}


# ----------------------------------------------------------------------------- the estimator


def _renyi(ctx: EvalContext, cfg):
    o = cfg.estimator.renyi
    rows = subset_rows(ctx.n, o.n, cfg.estimator.subset_seed)
    n = len(rows)
    x = subset(ctx, o.n, cfg.estimator.subset_seed).reshape(n, -1)
    stacked, y = (ctx.stacked, ctx.y) if n == ctx.n else (ctx.stacked[:, rows], ctx.y[rows])
    a_x = gaussian_gram(x, renyi_width(n, x.shape[1], o.width_scale))
    a_y = label_gram(y)
    a_t = jax.vmap(lambda t, d: gaussian_gram(t, renyi_width(n, d, o.width_scale)))(stacked, ctx.dims)  # (L, n, n)
    L = a_t.shape[0]
    # every entropy of the estimate from one eigenvalue call (renyi_entropies: why)
    grams = jnp.concatenate(
        [a_x[None], a_y[None], a_t, jax.vmap(joint_gram, (None, 0))(a_x, a_t), jax.vmap(joint_gram, (0, None))(a_t, a_y)]
    )
    h = renyi_entropies(grams, o.alpha)
    h_x, h_y, h_t, h_xt, h_ty = h[0], h[1], h[2 : 2 + L], h[2 + L : 2 + 2 * L], h[2 + 2 * L :]
    out = {"i_xt": h_x + h_t - h_xt, "i_ty": h_t + h_y - h_ty, "h_t": h_t, "h_x_given_t": h_xt - h_t}
    finite = jax.vmap(lambda t: jnp.all(jnp.isfinite(t)))(stacked)  # a layer with a non-finite value: NaN (renyi_information)
    return {q: jnp.where(finite, v, jnp.nan) for q, v in out.items()}


def _check(cfg, n_info: int) -> None:
    o = cfg.estimator.renyi
    if not (o.alpha > 0 and o.alpha != 1):
        raise ValueError(f"estimator.renyi.alpha must be > 0 and != 1 (1.01 approximates the von Neumann limit), got {o.alpha}")
    if o.n < 2:
        raise ValueError(f"estimator.renyi.n must be >= 2, got {o.n}")
    if not o.width_scale > 0:
        raise ValueError(f"estimator.renyi.width_scale must be > 0, got {o.width_scale}")


register_estimator("renyi", _renyi, _check, reads=("renyi",), rows=lambda cfg, n_info: min(cfg.estimator.renyi.n, n_info))
