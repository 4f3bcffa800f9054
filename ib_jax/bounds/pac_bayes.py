"""The PAC-Bayes bound of every member at every evaluation (``bounds.names=[pac_bayes]``).

The recipe of Dziugaite & Roy (2017) without their optimisation of the posterior, in the
"PAC-Bayesian sigma" form of Jiang et al. (2020):

* posterior Q_s = N(W_t, s^2 I) around the member's current parameters, prior
  P_s = N(W_0, s^2 I) around its initialisation (data-independent: it is fixed by the seed before
  any example is seen), so KL(Q_s || P_s) = ||W_t - W_0||^2 / (2 s^2) nats (:func:`gaussian_kl`);
* s from the fixed grid ``bounds.pac_bayes.sigmas`` (G values); choosing it after seeing the data
  is paid for by a union bound over the grid;
* the stochastic classifier's training 0-1 error e^_S(Q_s) by Monte Carlo: N =
  ``bounds.pac_bayes.mc_draws`` draws of W ~ Q_s, each scored on the whole training set S (m
  rows); by Chernoff's bound for the mean of N i.i.d. [0, 1] variables (Langford & Caruana 2001)
  e^_S(Q_s) <= kl^{-1}(e^_MC, ln(2G / delta) / N) with probability >= 1 - delta / (2G);
* the Maurer (2004) / Langford-Seeger bound: with probability >= 1 - delta / (2G) over S,
  kl(e^_S(Q_s) || e(Q_s)) <= (KL(Q_s || P_s) + ln(4 G sqrt(m) / delta)) / m.

Together, with probability >= 1 - delta (``bounds.delta``) over S and the draws, for the s that
minimises it::

    e(Q_s) <= kl^{-1}( kl^{-1}(e^_MC, ln(2G/delta)/N), (KL + ln(4 G sqrt(m)/delta)) / m )

Recorded (``bound/...``, 0-1 error rates): ``pac_bayes`` the bound on the stochastic classifier's
test error, ``pac_bayes_train_error`` its MC training error, ``pac_bayes_test_error`` the same
draws scored on the test split (the measured value the bound must stay above),
``pac_bayes_gap`` the bound minus the MC training error (the implied bound on the stochastic
classifier's gap), ``pac_bayes_sigma`` the chosen s and ``pac_bayes_kl`` its KL (nats).

The bound is about the stochastic network Q, not the deterministic W_t whose gap
``gap_accuracy`` measures; a small s makes the two close, at the price of a large KL. Not applied
with ``model.batch_norm``: the running statistics are computed from S, so the hypothesis itself
would depend on the data outside Q.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.bounds.base import BoundContext, register_bound
from ib_jax.bounds.kl import kl_inverse_upper

__all__ = ["pac_bayes_bound", "pac_bayes"]


def pac_bayes_bound(train_error_mc, kl, *, m: int, n_draws: int, grid: int, delta: float) -> jax.Array:
    """The bound above for one s: ``train_error_mc`` the MC mean over ``n_draws`` draws, ``kl`` in
    nats, ``m`` training rows, ``grid`` the size of the union bound, ``delta`` the total confidence."""
    train_up = kl_inverse_upper(train_error_mc, math.log(2 * grid / delta) / n_draws)
    return kl_inverse_upper(train_up, (kl + math.log(4 * grid * math.sqrt(m) / delta)) / m)


def pac_bayes(ctx: BoundContext, cfg) -> dict:
    """The ``pac_bayes`` entry: jit + vmap over members (draws and grid run under ``lax.map``, one
    forward pass of the training set in memory at a time)."""
    pb = cfg.bounds.pac_bayes
    sigmas = jnp.asarray(pb.sigmas, jnp.float32)
    n, g = pb.mc_draws, len(pb.sigmas)
    m = ctx.y_train.shape[0]
    leaves, treedef = jax.tree.flatten(ctx.params)
    ref = jax.tree.leaves(ctx.reference)
    dist2 = sum(jnp.sum(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32))) for a, b in zip(leaves, ref))
    kl = dist2 / (2.0 * jnp.square(sigmas))  # = gaussian_kl(W_t, s, W_0, s): the d-terms cancel

    def errors(params, key):
        def err(x, y):
            return jnp.mean(jnp.argmax(ctx.predict(params, x, key), -1) != y)

        return err(ctx.x_train, ctx.y_train), err(ctx.x_test, ctx.y_test)

    sizes = [a.size for a in leaves]
    offsets = np.cumsum([0, *sizes])

    def draw(key):
        k_dir, k_net = jax.random.split(key)
        # one draw for the whole network (one random-bits kernel to compile, not one per leaf)
        flat = jax.random.normal(k_dir, (int(offsets[-1]),), jnp.float32)
        xi = [flat[o : o + n].reshape(a.shape) for o, n, a in zip(offsets[:-1], sizes, leaves)]

        def at(s):  # the same direction at every s (common random numbers): each s's mean stays unbiased
            w = jax.tree.unflatten(treedef, [(a.astype(jnp.float32) + s * z).astype(a.dtype) for a, z in zip(leaves, xi)])
            return errors(w, k_net)

        return jax.lax.map(at, sigmas)

    e_train, e_test = jax.lax.map(draw, jax.random.split(ctx.key, n))  # (N, G) each
    e_train, e_test = e_train.mean(0), e_test.mean(0)
    bounds = pac_bayes_bound(e_train, kl, m=m, n_draws=n, grid=g, delta=cfg.bounds.delta)
    j = jnp.argmin(bounds)
    return {
        "pac_bayes": bounds[j],
        "pac_bayes_gap": bounds[j] - e_train[j],
        "pac_bayes_train_error": e_train[j],
        "pac_bayes_test_error": e_test[j],
        "pac_bayes_sigma": sigmas[j],
        "pac_bayes_kl": kl[j],
    }


def _exact_sigma(ctx, cfg) -> dict:
    """Host step: the chosen s recorded as the grid value as given (0.1, not float32's 0.10000000149...)."""
    grid = np.asarray(cfg.bounds.pac_bayes.sigmas, np.float64)
    got = np.asarray(ctx.metrics["bound/pac_bayes_sigma"], np.float64)
    idx = np.argmin(np.abs(np.nan_to_num(got, nan=np.inf)[..., None] - grid), axis=-1)
    return {"pac_bayes_sigma": np.where(np.isnan(got), np.nan, grid[idx])}


def _applies(cfg) -> str | None:
    if cfg.model.batch_norm:
        return "model.batch_norm: the running statistics are computed from the training set, outside the posterior"
    return None


def _check(cfg, n_train: int) -> None:
    del n_train
    pb = cfg.bounds.pac_bayes
    if not pb.sigmas or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in pb.sigmas):
        raise ValueError(f"bounds.pac_bayes.sigmas must list finite values > 0, got {list(pb.sigmas)}")
    if len(set(pb.sigmas)) != len(pb.sigmas):
        raise ValueError(f"bounds.pac_bayes.sigmas lists a value twice (each costs the union bound): {list(pb.sigmas)}")


register_bound(
    "pac_bayes", compute=pac_bayes, host=_exact_sigma, applies=_applies, check=_check, reads=("pac_bayes",), needs_reference=True
)
