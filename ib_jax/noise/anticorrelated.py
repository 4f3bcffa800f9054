"""Anti-correlated perturbations, Anti-PGD (``noise=anticorrelated``; Orvieto et al. 2022)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ib_jax.noise._core import (
    SCOPES,
    _canonicalize_key,
    _check_choice,
    _check_level,
    _groups,
    _normal_like,
    _ravel,
    _realized,
    _resolve,
    _sqnorm,
)
from ib_jax.noise.kinds import check_scope, register_noise

__all__ = ["anticorrelated", "AnticorrelatedState"]


class AnticorrelatedState(NamedTuple):
    """State of :func:`anticorrelated`: :class:`NoiseState`'s fields plus z_{t-1}.

    Attributes:
      count, key, realized_snr, angle: as in :class:`NoiseState`.
      z_prev: float32 pytree shaped like the params, the previous standard
        normal draw z_{t-1} (z_{-1} drawn at ``init``).
    """

    count: jax.Array
    key: jax.Array
    realized_snr: jax.Array
    angle: jax.Array
    z_prev: Any

    def rekey(self, key: jax.Array) -> AnticorrelatedState:
        """A new key, and z_{-1} redrawn from it (so re-keyed members differ from the first step)."""
        k_state, z_prev = _fresh_anticorrelated(key, self.z_prev)
        return self._replace(key=k_state, z_prev=z_prev)


def _fresh_anticorrelated(key: jax.Array, like: Any) -> tuple[jax.Array, Any]:
    """(state key, z_{-1} ~ N(0, I) shaped like ``like``) from one key.

    Used by ``init`` and by :func:`reseed`, so a re-keyed population member gets
    its own z_{-1} too.
    """
    k_state, k_z = jax.random.split(key)
    leaves, treedef = jax.tree.flatten(like)
    z = _normal_like(k_z, leaves)
    return k_state, jax.tree.unflatten(treedef, z)


def anticorrelated(snr: optax.ScalarOrSchedule, key: Any, *, scope: str = "global") -> optax.GradientTransformation:
    """Anti-correlated perturbations (Anti-PGD) at a given power SNR.

    Orvieto, Kersting, Proske, Bach & Lucchi (2022), "Anticorrelated noise
    injection for improved generalization"::

        n_t = s_t (z_t - z_{t-1}),   z_t iid N(0, I_D),   s_t^2 = ||g_t||^2 / (2 D snr_t)

    so E||n_t||^2 = ||g_t||^2 / snr_t (the :func:`isotropic` power convention)
    and consecutive perturbations are anti-correlated: per coordinate
    corr(n_t, n_{t-1}) = -1/2 and corr(n_t, n_{t-k}) = 0 for k >= 2. With a
    constant s the sum telescopes, sum_{t<T} n_t = s (z_{T-1} - z_{-1}): the
    accumulated perturbation stays O(s sqrt(D)) instead of growing like a
    random walk's s sqrt(2 D T). When s_t varies (it follows ||g_t||) the sum
    is s_t-weighted and telescopes only approximately; the form keeps the
    per-step SNR exact, which is what the SNR grid compares. Orvieto et al.
    perturb the *iterate*; placed after the optimizer (update position) with
    SGD this is their Anti-PGD, placed first it perturbs the gradient.

    The state (:class:`AnticorrelatedState`) carries z_{t-1} (a float32 pytree
    like the params; z_{-1} is drawn at ``init``). ``scope='per_leaf'`` uses one
    s per leaf. Zero gradient and snr = inf add nothing (z still advances).
    :func:`diagnostics`, :func:`reseed` and :func:`population_init` know this
    state; reseeding redraws z_{-1} from the new key.

    Args:
      snr: power SNR > 0 (float, array, or schedule ``count -> snr``); inf = off.
      key: int seed or PRNG key.
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(scope, "scope", SCOPES)
    key = _canonicalize_key(key)

    def init_fn(params):
        k_state, z_prev = _fresh_anticorrelated(key, params)
        return AnticorrelatedState(
            count=jnp.zeros([], jnp.int32),
            key=k_state,
            realized_snr=jnp.asarray(jnp.inf, jnp.float32),
            angle=jnp.zeros([], jnp.float32),
            z_prev=z_prev,
        )

    def update_fn(updates, state, params=None):
        del params
        value = _resolve(snr, state.count)
        leaves, treedef = jax.tree.flatten(updates)
        z_leaves, z_treedef = jax.tree.flatten(state.z_prev)
        next_key, sample_key = jax.random.split(state.key)
        g_flat = _ravel(leaves)
        z_prev = _ravel(z_leaves)
        z_new = jax.random.normal(sample_key, g_flat.shape, jnp.float32)
        dz = z_new - z_prev
        sizes = [math.prod(x.shape) for x in leaves]
        offsets = np.cumsum([0] + sizes)
        parts = []
        for idx in _groups(len(leaves), scope):
            lo, hi = offsets[idx[0]], offsets[idx[-1] + 1]
            g = g_flat[lo:hi]
            s = jnp.sqrt(_sqnorm([g]) / (2.0 * (hi - lo) * value))
            parts.append(g + s * dz[lo:hi])
        o_flat = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        no_noise = jnp.isinf(value) & (value > 0)
        o_flat = jnp.where(no_noise, g_flat, o_flat)
        out = [jnp.where(no_noise, x, o_flat[offsets[i] : offsets[i + 1]].reshape(x.shape).astype(x.dtype)) for i, x in enumerate(leaves)]
        realized, angle = _realized([g_flat], [o_flat])
        z_out = [z_new[offsets[i] : offsets[i + 1]].reshape(z.shape) for i, z in enumerate(z_leaves)]
        new_state = AnticorrelatedState(
            count=optax.safe_increment(state.count),
            key=next_key,
            realized_snr=realized,
            angle=angle,
            z_prev=jax.tree.unflatten(z_treedef, z_out),
        )
        return jax.tree.unflatten(treedef, out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


# Orvieto et al. 2022 (Anti-PGD): n_t = s_t (z_t - z_{t-1}), E||n_t||^2 = ||g||^2 / snr
register_noise(
    "anticorrelated", lambda level, key, cfg: anticorrelated(level, key, scope=cfg.scope), check=check_scope, reads=("position", "scope")
)
