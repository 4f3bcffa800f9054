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
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["per_example_grads", "gradient_noise_stats"]


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
