"""The information bound of noisy iterative training (``bounds.names=[noisy_iterative]``).

Pensia, Jog & Loh (2018), Theorem 1 / Corollary 1: for updates

    W_{s+1} = W_s - eta_s F(W_s, Z_s) + xi_s,   ||eta_s F|| <= eta_s L,   xi_s ~ N(0, sigma_s^2 I_d)

with the noise independent of the data and the mini-batch indices independent of W, the
information the weights hold about the training set obeys (nats)::

    I(S; W_t) <= sum_{s < t} (d / 2) ln(1 + eta_s^2 L^2 / (d sigma_s^2))

and, the 0-1 loss being 1/2-sub-Gaussian, Xu & Raginsky (2017) turn it into a bound on the
expected generalization gap of W_t over m training examples::

    |E[test error - train error]| <= sqrt(I(S; W_t) / (2 m))

Recorded: ``bound/noisy_iterative_info`` (nats) and ``bound/noisy_iterative_gap`` (0-1 error),
per member; the gap bound is about the *expectation* over the training randomness, so it is
compared with the mean of ``gap_accuracy`` over seeds, not with one seed's gap.

Where the assumptions hold, and so where it is computed:

* the noise kind adds data-independent isotropic Gaussian noise (``NoiseKind.gaussian_std``:
  ``fixed``, with per-coordinate std sigma on the gradient; ``dp_sgd``, z C / B); SNR-scaled
  kinds (isotropic, cone...), SGD-shaped, heavy-tailed and label noise depend on the data or are
  not Gaussian: no number is written;
* the update is plain SGD (``optimizer=sgd``): momentum and Adam make the step depend on past
  gradients and rescale it per coordinate, so ||eta F|| <= eta L no longer bounds it;
* the gradient norm is bounded: by the kind (``dp_sgd``'s clipping, L = C) or by
  ``optimizer.clip_norm`` (L);
* no batch norm (running statistics carry information about S past the noise).

With gradient-position noise the weight-space noise is eta sigma_g, so the ratio in the log is
L^2 / (d sigma_g^2); with update-position noise it is eta^2 L^2 / (d sigma^2). A member at level 0
(no noise) has an infinite bound, recorded as inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.bounds.base import HostContext, register_bound
from ib_jax.noise import schedules as S
from ib_jax.registry import NOISE

__all__ = ["information_bound", "noisy_iterative", "norm_bound"]


def information_bound(step_norm, noise_std, d: int) -> np.ndarray:
    """Per-step terms (d/2) ln(1 + step_norm^2 / (d noise_std^2)) in nats (float64; inf where the
    noise std is 0); ``step_norm`` eta_s L and ``noise_std`` sigma_s broadcast together."""
    step_norm = np.asarray(step_norm, np.float64)
    noise_std = np.asarray(noise_std, np.float64)
    with np.errstate(divide="ignore"):
        ratio = np.where(noise_std > 0, np.square(step_norm) / (d * np.square(np.where(noise_std > 0, noise_std, 1.0))), np.inf)
    return 0.5 * d * np.log1p(ratio)


def norm_bound(cfg) -> float | None:
    """L: the noise kind's own bound on the gradient norm, else ``optimizer.clip_norm``, else None."""
    kind = NOISE.get(cfg.noise.kind)
    if kind.norm_bound is not None:
        return float(kind.norm_bound(cfg.noise))
    return None if cfg.optimizer.clip_norm is None else float(cfg.optimizer.clip_norm)


def _shape(cfg, upto: int) -> np.ndarray:
    """The schedule's multiplier at steps 0 .. upto - 1 (ones for a constant level)."""
    kind = NOISE.get(cfg.noise.kind)
    shape = S.build(cfg.schedule, steps=cfg.steps, level_name=kind.level_name)
    if shape is None:
        return np.ones(upto)
    return np.asarray(jax.vmap(shape)(jnp.arange(upto, dtype=jnp.int32)), np.float64)


def noisy_iterative(ctx: HostContext, cfg) -> dict:
    """The ``noisy_iterative`` entry: ``{noisy_iterative_info, noisy_iterative_gap}`` each ``(E, P)``."""
    kind = NOISE.get(cfg.noise.kind)
    L = norm_bound(cfg)
    upto = int(np.max(ctx.steps)) if len(ctx.steps) else 0
    shape = _shape(cfg, upto)
    E, P = len(ctx.steps), len(ctx.level)
    info = np.zeros((E, P))
    for p in range(P):
        lr = float(ctx.learning_rate[p])
        std = kind.gaussian_std(float(ctx.level[p]), cfg.noise, ctx.batch_size) * shape
        if cfg.noise.position == "gradient":  # noise on the gradient reaches the weights scaled by eta
            terms = information_bound(L, std, ctx.n_params)  # eta L / (eta sigma)
        else:
            terms = information_bound(lr * L, std, ctx.n_params)
        cum = np.concatenate([[0.0], np.cumsum(terms)])
        info[:, p] = cum[np.asarray(ctx.steps, np.int64)]
    bad = np.isnan(np.asarray(ctx.metrics["train_loss"], np.float64))  # a diverged member's values are masked
    info = np.where(bad, np.nan, info)
    return {"noisy_iterative_info": info, "noisy_iterative_gap": np.sqrt(info / (2.0 * ctx.n_train))}


def _applies(cfg) -> str | None:
    kind = NOISE.get(cfg.noise.kind)
    if kind.transform is None and kind.batch is None:
        return f"noise.kind={cfg.noise.kind}: no injected noise, so no information bound from it"
    if kind.gaussian_std is None:
        return (
            f"noise.kind={cfg.noise.kind}: its noise is not data-independent isotropic Gaussian noise "
            "(it scales with the gradient, follows SGD's covariance, is heavy-tailed or acts on the labels)"
        )
    if cfg.optimizer.name != "sgd":
        return f"optimizer={cfg.optimizer.name}: the bound needs plain SGD (momentum and Adam make the step depend on past gradients)"
    if cfg.model.batch_norm:
        return "model.batch_norm: running statistics carry information about the training set past the noise"
    if norm_bound(cfg) is None:
        return f"noise.kind={cfg.noise.kind} does not bound the gradient norm: set optimizer.clip_norm (L)"
    return None


register_bound("noisy_iterative", host=noisy_iterative, applies=_applies)
