"""The weight-noise channel: I(X;T') and H(X|T') under noisy weights, in bits.

The essay's argument (``docs/science.md``): a noisy update
t' = (w + zeta) x raises H(X|T'). This module measures it directly. Given a
model ``apply_fn(params, x) -> sequence of layers (n, d_l)``, its parameters
and n inputs (X uniform over them, H(X) = log2 n), we draw K weight
perturbations at a power SNR (``||w||^2 / E||zeta||^2``, exactly as
``ib_jax.noise.isotropic`` draws gradient noise, globally or per layer) and
propagate the inputs: samples t_ik, i <= n, k <= K, of p(t'|x_i).

Estimator (Monte Carlo mixture entropy, in the spirit of Goldfeld et al.
2019's sample propagation). Each conditional is smoothed by a Gaussian kernel
of variance ``kernel_var`` (the analogue of Goldfeld's added noise beta^2, so
the quantity is finite for a deterministic network too):
p_i(s) = (1/K) sum_k N(s; t_ik, h^2 I) and p(s) = (1/n) sum_i p_i(s). With
evaluation points s_ik = t_ik + h z_ik (one per sample),

    I(X;T')  = H(T') - H(T'|X) ~= log n + (1/(nK)) sum_ik [ log sum_l e_{ik,il} - log sum_{j,l} e_{ik,jl} ]
    H(X|T')  = log n - I(X;T') ~= (1/(nK)) sum_ik [ log sum_{j,l} e_{ik,jl} - log sum_l e_{ik,il} ]

with e_{ik,jl} = exp(-||s_ik - t_jl||^2 / (2 h^2)) (normalising constants
cancel). Each bracket is <= 0, so 0 <= I <= log n always.

Bias: the kernel densities are built from the same K samples they are
evaluated near. With few samples (K small against the spread of t'|x) or
h much smaller than that spread, each p_i is over-concentrated on its own
samples and I(X;T') is over-estimated (H(X|T') under-estimated); the bias
falls as K grows and vanishes for h much larger than the sample spread (where
the estimate tends to the kernel-bound estimate of the noiseless layer). At
snr = inf all K samples coincide and the result equals the noise-free
smoothed channel. Compare runs at equal K and kernel_var.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ib_jax.estimators._common import blocked_rows, centered, check_k, default_block, nan_unless_finite, sq_distances, to_bits
from ib_jax.estimators.base import EvalContext, register_estimator, subset
from ib_jax.noise.isotropic import isotropic

__all__ = ["perturbed_layers", "noise_channel_information", "channel_information_from_samples"]


def perturbed_layers(apply_fn: Callable, params, x, *, snr, key, n_samples: int = 8, scope: str = "per_leaf"):
    """Layers under K weight perturbations: a list of ``(K, n, d_l)`` arrays.

    zeta ~ N(0, sigma^2 I) with sigma^2 = ||w||^2 / (D snr) (global or per
    leaf), drawn by :func:`ib_jax.noise.isotropic` applied to the weights.
    """
    check_k(1, n_samples + 1, "n_samples")
    keys = jax.random.split(key, n_samples)

    def one(k):
        tx = isotropic(snr, k, scope=scope)
        noisy, _ = tx.update(params, tx.init(params))
        return tuple(apply_fn(noisy, x))

    return list(jax.vmap(one)(keys))


def channel_information_from_samples(samples, *, kernel_var=0.01, key=None, block=None):
    """I(X;T') and H(X|T') in bits from samples ``(K, n, d)`` of T' for n inputs.

    Returns ``{"i_xt": ..., "h_x_given_t": ...}``; see the module docstring.
    """
    if samples.ndim != 3:
        raise ValueError(f"samples must have shape (K, n, d), got {samples.shape}")
    if isinstance(kernel_var, (int, float)) and not kernel_var > 0:
        raise ValueError(f"kernel_var must be > 0, got {kernel_var}")
    n_k, n, d = samples.shape
    pts = centered(jnp.swapaxes(samples, 0, 1).reshape(n * n_k, d))  # row i*K + k
    key = jax.random.key(0) if key is None else key
    evals = pts + jnp.sqrt(kernel_var) * jax.random.normal(key, pts.shape)
    pts_sq = jnp.sum(pts * pts, axis=-1)
    m = n * n_k
    block = block or default_block(m, d)

    def fn(rows):
        e = -sq_distances(evals[rows], pts, pts_sq) / (2.0 * kernel_var)
        own = (jnp.arange(m)[None, :] // n_k) == (rows[:, None] // n_k)
        return logsumexp(e, axis=1, b=own.astype(jnp.float32)) - logsumexp(e, axis=1)

    diff = blocked_rows(fn, m, block)()
    i_xt = jnp.log(jnp.float32(n)) + jnp.mean(diff)
    out = {"i_xt": to_bits(i_xt), "h_x_given_t": to_bits(-jnp.mean(diff))}
    return {k: nan_unless_finite(v, samples) for k, v in out.items()}


def noise_channel_information(
    apply_fn: Callable,
    params,
    x,
    *,
    snr,
    key,
    n_samples: int = 8,
    kernel_var: float = 0.01,
    scope: str = "per_leaf",
    block=None,
) -> Sequence[dict]:
    """Per layer, I(X;T') and H(X|T') in bits under weight noise at power SNR ``snr``.

    Args:
      apply_fn: ``apply_fn(params, x)`` returning a sequence of ``(n, d_l)`` layers.
      params: the model's parameters (a pytree).
      x: the n inputs (any shape ``apply_fn`` takes).
      snr: weight SNR ``||w||^2 / E||zeta||^2`` (inf: no weight noise).
      key: PRNG key (perturbations and evaluation points).
      n_samples: K weight draws.
      kernel_var: smoothing kernel variance h^2 (in activation units squared).
      scope: ``'per_leaf'`` (every layer its own SNR) or ``'global'``.

    Returns:
      a list, one dict ``{"i_xt", "h_x_given_t"}`` per layer.
    """
    k_w, k_e = jax.random.split(key)
    layers = perturbed_layers(apply_fn, params, x, snr=snr, key=k_w, n_samples=n_samples, scope=scope)
    eval_keys = jax.random.split(k_e, len(layers))
    return [channel_information_from_samples(s, kernel_var=kernel_var, key=kk, block=block) for s, kk in zip(layers, eval_keys)]


# ----------------------------------------------------------------------------- the estimator


def _channel(ctx: EvalContext, cfg):
    c = cfg.estimator.channel
    ch = noise_channel_information(
        lambda p, x: ctx.apply(p, x),
        ctx.params,
        subset(ctx, c.n, cfg.estimator.subset_seed),
        snr=c.snr,
        key=ctx.key,
        n_samples=c.samples,
        kernel_var=c.kernel_var,
    )
    return {"i_xt": jnp.stack([r["i_xt"] for r in ch]), "h_x_given_t": jnp.stack([r["h_x_given_t"] for r in ch])}


def _check(cfg, n_info: int) -> None:
    c = cfg.estimator.channel
    if not c.snr > 0 or c.samples < 2 or not c.kernel_var > 0 or c.n < 2:
        raise ValueError(
            "estimator.channel.snr and estimator.channel.kernel_var must be > 0, estimator.channel.samples >= 2, "
            f"estimator.channel.n >= 2; got {c.snr}, {c.kernel_var}, {c.samples}, {c.n}"
        )


register_estimator("channel", _channel, _check, reads=("channel",), rows=lambda cfg, n_info: min(cfg.estimator.channel.n, n_info))
