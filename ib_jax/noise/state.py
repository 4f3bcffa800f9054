"""Finding and re-keying the noise states inside any optimizer state (chains, wrappers, populations).

Every noise transform's state follows :class:`ib_jax.noise._core.RekeyableNoiseState`; the
functions here only use that protocol, so they need no list of the known state classes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

from ib_jax.noise._core import NoiseDiagnostics, NoiseState, _canonicalize_key, is_noise_state

__all__ = ["diagnostics", "reseed", "population_init", "check_independent_keys"]


def _noise_states(opt_state: Any) -> list[NoiseState]:
    return [s for s in jax.tree.leaves(opt_state, is_leaf=is_noise_state) if is_noise_state(s)]


def diagnostics(opt_state: Any) -> tuple[NoiseDiagnostics, ...]:
    """Realized SNR and angle of every noise transform inside ``opt_state``.

    Works on any chain / wrapper state (the search walks the pytree), in the
    order the transforms appear. An empty tuple means no noise transform.
    Under a population (vmapped state) each field carries the member axis.
    """
    return tuple(NoiseDiagnostics(s.realized_snr, s.angle) for s in _noise_states(opt_state))


def reseed(opt_state: Any, key: Any) -> Any:
    """Replace the key of every noise transform in ``opt_state``.

    The i-th noise state found gets ``fold_in(key, i)``, so two noise transforms
    in one chain stay independent (each state's ``rekey`` redraws whatever depends on
    the key, e.g. an anti-correlated state's z_{-1}). Use it per member, under ``vmap``::

        states = jax.vmap(reseed)(jax.vmap(tx.init)(params), member_keys)
    """
    key = _canonicalize_key(key)
    counter = iter(range(1 << 30))

    def swap(x):
        # each state re-keys itself (RekeyableNoiseState.rekey): a stateful kind redraws what it must
        return x.rekey(jax.random.fold_in(key, next(counter))) if is_noise_state(x) else x

    return jax.tree.map(swap, opt_state, is_leaf=is_noise_state)


def population_init(tx: optax.GradientTransformation, params: Any, keys: jax.Array) -> Any:
    """``vmap(tx.init)`` over a population, each member with its own noise key.

    Args:
      tx: any transformation (chain) that may contain noise transforms.
      params: pytree with a leading population axis of size P.
      keys: P PRNG keys (typed ``(P,)`` or raw ``(P, 2)``), one per member.
    """
    keys = _canonicalize_key(keys, "keys")
    return jax.vmap(reseed)(jax.vmap(tx.init)(params), keys)


def check_independent_keys(opt_state: Any) -> None:
    """Raise ``ValueError`` if population members share a noise key.

    ``opt_state`` is a population state (leading member axis). A host-side
    check, for use right after initialisation.
    """
    for i, s in enumerate(_noise_states(opt_state)):
        data = np.asarray(jax.random.key_data(s.key))
        if data.ndim < 2:
            continue  # a single model, nothing to compare
        flat = data.reshape(data.shape[0], -1)
        if len(np.unique(flat, axis=0)) < flat.shape[0]:
            raise ValueError(
                f"noise transform #{i}: population members share a PRNG key "
                "(vmap(tx.init) copies the constructor key); use "
                "ib_jax.noise.population_init or reseed"
            )
