"""SGD's own gradient noise, from per-example gradients.

With per-example gradients g_i on a probe set of m examples, treated as the
data distribution: G = mean_i g_i, Sigma = (1/m) sum_i (g_i - G)(g_i - G)^T.
A mini-batch of B examples drawn i.i.d. from it has E[g_B] = G and
E||g_B - G||^2 = tr(Sigma) / B, so its power signal-to-noise ratio is::

    SNR_B = ||G||^2 / E||g_B - G||^2 = B ||G||^2 / tr(Sigma)

(linear in B: the brief's claim 3), and McCandlish et al.'s (2018) simple
gradient noise scale is B_simple = tr(Sigma) / ||G||^2 (the batch size at
which SNR_B = 1). Plug-in estimates on a probe of m examples: ||G||^2 of the
probe mean overestimates the population's by about tr(Sigma)/m, so use
m >> B_simple.

Also here: the tail index of gradient noise (:func:`tail_index`, Simsekli et al.
2019), the curvature-weighted noise Tr(H Sigma) (:func:`trace_h_sigma`, Zhu et
al. 2019) and McCandlish et al.'s B_noise (:func:`b_noise`), and per-layer
gradient mean / std / SNR (:func:`layer_gradient_stats`, as in Shwartz-Ziv &
Tishby 2017 and Saxe et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "per_example_grads",
    "gradient_noise_stats",
    "tail_index",
    "trace_h_sigma",
    "curvature_noise_stats",
    "b_noise",
    "layer_gradient_stats",
]


def per_example_grads(loss_fn: Callable, params, x, y):
    """``vmap(grad)``: a pytree like ``params`` with a leading axis of len(x).

    ``loss_fn(params, x_i, y_i)`` takes one example (no batch axis).
    """
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(params, x, y)


def gradient_noise_stats(per_ex, batch_size) -> dict[str, jax.Array]:
    """``{"grad_norm2", "trace_sigma", "snr_b", "b_simple"}`` from per-example gradients.

    ``batch_size`` may be traced (a vmapped grid of batch sizes).
    """
    leaves = [p.reshape(p.shape[0], -1).astype(jnp.float32) for p in jax.tree.leaves(per_ex)]
    flat = jnp.concatenate(leaves, axis=1)
    mean = jnp.mean(flat, axis=0)
    g2 = jnp.sum(mean**2)
    trace = jnp.mean(jnp.sum((flat - mean) ** 2, axis=1))
    safe_trace = jnp.where(trace > 0, trace, 1.0)
    safe_g2 = jnp.where(g2 > 0, g2, 1.0)
    return {
        "grad_norm2": g2,
        "trace_sigma": trace,
        "snr_b": jnp.where(trace > 0, batch_size * g2 / safe_trace, jnp.inf),
        "b_simple": jnp.where(g2 > 0, trace / safe_g2, jnp.inf),
    }


# ---------------------------------------------------------------------------
# tail index (Simsekli et al. 2019)
# ---------------------------------------------------------------------------


def tail_index(x, *, k1: int | None = None, vectors: bool = False) -> jax.Array:
    """Tail index alpha_hat in (0, 2] of samples from a symmetric alpha-stable law.

    The estimator Simsekli, Sagun & Gurbuzbalaban (2019) use, from Mohammadi,
    Mohammadpour & Ogata (2015, Corollary 2.4). With K samples X_1..X_K split
    into K2 blocks of K1 (K1 K2 = K) and Y_i = sum_{j=1}^{K1} X_{(i-1) K1 + j}::

        1 / alpha_hat = (1 / log K1) [ (1/K2) sum_i log|Y_i| - (1/K) sum_k log|X_k| ]

    since a sum of K1 iid SalphaS variables is K1^(1/alpha) times one of them
    (in law). The result is clipped to (0, 2]: 1/alpha_hat is floored at 1/2
    (finite samples of light-tailed noise scatter around 2, and any value
    <= 1/2 means "no heavier than Gaussian"). Pass centred samples (e.g. the
    per-example gradients minus their mean, as Simsekli et al. do).

    Args:
      x: samples. ``vectors=False``: flattened to K scalars (Simsekli et al.'s
        use, every coordinate of every noise vector a sample). ``vectors=True``:
        ``x`` is (K, ...) and each row is one multivariate sample; |.| is then
        the Euclidean norm of a row (their multivariate form).
      k1: block length K1 >= 2; default floor(sqrt(K)) (the reference code takes
        the largest divisor of K below sqrt(K), which degenerates to 1 for a
        prime K). The first K1 * floor(K / K1) samples are used.
      vectors: see ``x``.

    Static shapes, so jit-able (``k1`` and ``vectors`` static).
    """
    x = jnp.asarray(x, jnp.float32)
    if vectors:
        if x.ndim < 1:
            raise ValueError("x must have a leading sample axis when vectors=True")
        x = x.reshape(x.shape[0], -1)
    else:
        x = x.reshape(-1, 1)
    k = x.shape[0]
    if k1 is None:
        k1 = math.isqrt(k)
    if not isinstance(k1, (int, np.integer)) or k1 < 2 or k1 > k:
        raise ValueError(f"k1 must be an int in [2, K={k}], got {k1!r} (need K >= 4 samples)")
    k2 = k // k1
    x = x[: k1 * k2]
    y = jnp.sum(x.reshape(k2, k1, -1), axis=1)
    tiny = np.finfo(np.float32).tiny  # log 0 guard: an exact zero counts as the smallest normal

    def mean_log_norm(a):
        return jnp.mean(jnp.log(jnp.maximum(jnp.linalg.norm(a, axis=1), tiny)))

    inv_alpha = (mean_log_norm(y) - mean_log_norm(x)) / math.log(k1)
    return 1.0 / jnp.maximum(inv_alpha, 0.5)


# ---------------------------------------------------------------------------
# curvature-weighted gradient noise: Tr(H Sigma), B_noise
# ---------------------------------------------------------------------------


# the statistics' own contractions at full float32 on every backend (a GPU's default TF32 rounds
# products at ~1e-3 relative, visible in Tr(H Sigma) and g'Hg); the user's loss keeps its own precision
_HI = jax.lax.Precision.HIGHEST


def _tree_vdot(a, b) -> jax.Array:
    return sum(
        (jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32), precision=_HI) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))),
        jnp.zeros([], jnp.float32),
    )


def _hvp_fn(example_loss: Callable, params, x, y) -> Callable:
    """v -> H v, H the Hessian of the mean loss over (x, y) at params (forward over reverse)."""

    def mean_loss(p):
        return jnp.mean(jax.vmap(example_loss, in_axes=(None, 0, 0))(p, x, y))

    grad = jax.grad(mean_loss)
    return lambda v: jax.jvp(grad, (params,), (v,))[1]


def curvature_noise_stats(
    example_loss: Callable,
    params,
    x,
    y,
    key: jax.Array | None = None,
    n_probes: int | None = None,
    *,
    chunk_size: int = 16,
) -> dict[str, jax.Array]:
    """``{"trace_h_sigma", "g_h_g", "b_noise"}`` on a probe set (x, y) of m examples.

    As in :func:`gradient_noise_stats` the probe set is the data distribution:
    G = mean_i g_i, Sigma = (1/m) sum_i (g_i - G)(g_i - G)^T (per-example
    gradients g_i of ``example_loss(params, x_i, y_i)``), H the Hessian of the
    mean probe loss. Then

    * ``trace_h_sigma`` = Tr(H Sigma) (Zhu, Wu, Yu, Wu & Ma 2019: how well the
      noise covariance aligns with the curvature; per-step loss increase of
      mini-batch noise is (eta^2 / 2B) Tr(H Sigma)).
      Exact (``n_probes=None``): (1/m) sum_i c_i^T H c_i over the m centred
      gradients c_i, m Hessian-vector products. Hutchinson (``n_probes=k``):
      (1/k) sum_j (H v_j)^T (Sigma v_j) with Rademacher v_j (E v v^T = I, so
      unbiased), k Hessian-vector products; Sigma v = (1/m) C^T (C v) from the
      per-example gradients.
    * ``g_h_g`` = G^T H G, the curvature along the gradient.
    * ``b_noise`` = Tr(H Sigma) / (G^T H G): McCandlish, Kaplan, Amodei et al.
      (2018)'s critical-batch-size scale B_noise (the batch at which the
      optimal step's loss improvement is half its noiseless value); inf when
      G^T H G <= 0 (no positive curvature along G, the quadratic model has no
      optimal step). Plug-in: the probe mean G carries noise of power
      tr(Sigma)/m, which inflates G^T H G by about Tr(H Sigma)/m; use m >> B_noise.

    Hessian-vector products are forward-over-reverse and run ``chunk_size`` at
    a time (``lax.map``) to bound memory. jit-able with ``n_probes`` and
    ``chunk_size`` static.
    """
    per_ex = per_example_grads(example_loss, params, x, y)
    m = jax.tree.leaves(per_ex)[0].shape[0]
    mean = jax.tree.map(lambda p: jnp.mean(p.astype(jnp.float32), axis=0), per_ex)
    centred = jax.tree.map(lambda p, g: p.astype(jnp.float32) - g, per_ex, mean)
    hvp = _hvp_fn(example_loss, params, x, y)
    chunk = max(1, min(chunk_size, m))
    if n_probes is None:
        quad = jax.lax.map(lambda c: _tree_vdot(c, hvp(c)), centred, batch_size=chunk)
        trace = jnp.mean(quad)
    else:
        if not isinstance(n_probes, (int, np.integer)) or n_probes < 1:
            raise ValueError(f"n_probes must be a positive int or None (exact), got {n_probes!r}")
        if key is None:
            raise ValueError("key is needed for Hutchinson probes (n_probes is not None)")
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        probes = jax.tree.unflatten(
            treedef,
            [jax.random.rademacher(k, (n_probes,) + p.shape, jnp.float32) for k, p in zip(keys, leaves)],
        )

        def one(v):
            cv = sum(
                jnp.tensordot(c, vv, axes=vv.ndim, precision=_HI) for c, vv in zip(jax.tree.leaves(centred), jax.tree.leaves(v))
            )  # (m,) = C v
            sigma_v = jax.tree.map(lambda c: jnp.tensordot(cv, c, axes=1, precision=_HI) / m, centred)
            return _tree_vdot(hvp(v), sigma_v)

        trace = jnp.mean(jax.lax.map(one, probes, batch_size=max(1, min(chunk_size, n_probes))))
    ghg = _tree_vdot(mean, hvp(mean))
    return {
        "trace_h_sigma": trace,
        "g_h_g": ghg,
        "b_noise": jnp.where(ghg > 0, trace / jnp.where(ghg > 0, ghg, 1.0), jnp.inf),
    }


def trace_h_sigma(
    example_loss: Callable, params, x, y, key: jax.Array | None = None, n_probes: int | None = None, *, chunk_size: int = 16
) -> jax.Array:
    """Tr(H Sigma) on the probe set (x, y); see :func:`curvature_noise_stats`."""
    return curvature_noise_stats(example_loss, params, x, y, key, n_probes, chunk_size=chunk_size)["trace_h_sigma"]


def b_noise(
    example_loss: Callable, params, x, y, key: jax.Array | None = None, n_probes: int | None = None, *, chunk_size: int = 16
) -> jax.Array:
    """McCandlish et al.'s B_noise = Tr(H Sigma) / (G^T H G); see :func:`curvature_noise_stats`."""
    return curvature_noise_stats(example_loss, params, x, y, key, n_probes, chunk_size=chunk_size)["b_noise"]


# ---------------------------------------------------------------------------
# per-layer gradient mean / std / SNR (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018)
# ---------------------------------------------------------------------------


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _layer_of(path) -> str:
    names = [_key_name(k) for k in path]
    return "/".join(names[:-1]) if len(names) > 1 else "/".join(names)


def layer_gradient_stats(
    per_example_grads,
    *,
    batch_size: Any = 1,
    params=None,
    kernel_only: bool = False,
) -> dict[str, dict[str, jax.Array]]:
    """Per-layer gradient mean norm, standard deviation and SNR.

    A *layer* is the parent node of a leaf in the pytree: in a Flax tree
    ``{"params": {"Dense_0": {"kernel", "bias"}}}`` the layer ``"params/Dense_0"``
    groups its kernel and bias; a leaf at the top level is its own layer. For the
    gradient samples g^(k) (k = 1..m, the leading axis: per-example gradients,
    or stacked mini-batch gradients) restricted to a layer and flattened::

        mean_norm = || (1/m) sum_k g^(k) ||
        std       = sqrt( tr Cov / batch_size ),  tr Cov = (1/m) sum_k ||g^(k) - mean||^2
        snr       = mean_norm / std                (inf when std = 0)

    With ``batch_size = 1`` this is Saxe et al.'s (2018, ``ibsgd``) computation
    ``norm(grads.mean(0))``, ``norm(grads.std(0))`` (numpy's std, 1/m) and their
    ratio, as plotted per layer by Shwartz-Ziv & Tishby (2017). Given per-example
    gradients, ``batch_size = B`` gives the std of a mini-batch mean of B iid
    examples, i.e. the SNR of SGD's gradient at batch B (``batch_size`` may be
    traced). ``snr`` is an **amplitude** ratio; the power SNR of
    :mod:`ib_jax.noise` is its square.

    Args:
      per_example_grads: pytree with a leading sample axis m.
      batch_size: divides the covariance trace (see above).
      params: optional pytree like one sample; adds ``weight_norm`` = ||W|| of
        the layer's (selected) leaves, the fourth curve of Saxe et al.'s plot.
      kernel_only: keep only leaves named ``kernel`` (Flax's Dense weight
        matrix, what Saxe et al. track), dropping biases.

    Returns:
      ``{layer: {"mean_norm", "std", "snr"[, "weight_norm"]}}``, float32 scalars,
      layers in pytree order.
    """
    paths = jax.tree_util.tree_flatten_with_path(per_example_grads)[0]
    w_leaves = jax.tree.leaves(params) if params is not None else [None] * len(paths)
    if len(w_leaves) != len(paths):
        raise ValueError("params must have the structure of one per-example gradient sample")
    groups: dict[str, list[tuple[jax.Array, Any]]] = {}
    for (path, leaf), w in zip(paths, w_leaves):
        if kernel_only and _key_name(path[-1]) != "kernel":
            continue
        groups.setdefault(_layer_of(path), []).append((leaf, w))
    if not groups:
        raise ValueError("no leaves selected (kernel_only=True but no leaf is named 'kernel')")
    out = {}
    for name, items in groups.items():
        flat = jnp.concatenate([g.reshape(g.shape[0], -1).astype(jnp.float32) for g, _ in items], axis=1)
        mean = jnp.mean(flat, axis=0)
        mean_norm = jnp.linalg.norm(mean)
        tr_cov = jnp.mean(jnp.sum(jnp.square(flat - mean), axis=1))
        std = jnp.sqrt(tr_cov / jnp.asarray(batch_size, jnp.float32))
        stats = {
            "mean_norm": mean_norm,
            "std": std,
            "snr": jnp.where(std > 0, mean_norm / jnp.where(std > 0, std, 1.0), jnp.inf),
        }
        if params is not None:
            stats["weight_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(w.astype(jnp.float32))) for _, w in items))
        out[name] = stats
    return out
