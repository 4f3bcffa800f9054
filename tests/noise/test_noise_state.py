"""The re-key protocol: a new stateful noise kind needs no edit to the population code.

``diagnostics``, ``reseed``, ``population_init`` and ``check_independent_keys`` find noise states by
the protocol (``key``, ``realized_snr``, ``angle``, ``rekey``), never by a list of known classes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ib_jax import noise


class DriftState(NamedTuple):
    """A user's stateful noise: a per-member drift vector drawn from the key, redrawn on re-key."""

    key: jax.Array
    realized_snr: jax.Array
    angle: jax.Array
    drift: Any

    def rekey(self, key):
        return self._replace(key=key, drift=jax.random.normal(key, self.drift.shape))


def drift_noise(key) -> optax.GradientTransformation:
    def init(params):
        return DriftState(key, jnp.asarray(jnp.inf), jnp.zeros([]), jax.random.normal(key, (3,)))

    def update(g, state, params=None):
        return jax.tree.map(lambda x: x + state.drift.sum(), g), state._replace(realized_snr=jnp.asarray(2.0))

    return optax.GradientTransformation(init, update)


def test_a_user_state_is_found_and_rekeyed_per_member():
    tx = optax.chain(drift_noise(jax.random.key(0)), optax.sgd(0.1), noise.isotropic(1.0, 0))
    params = {"w": jnp.zeros((4, 3))}  # 4 members
    state = noise.population_init(tx, params, jax.random.split(jax.random.key(1), 4))
    noise.check_independent_keys(state)  # both noise states: members differ
    drift = np.asarray(state[0].drift)
    assert drift.shape == (4, 3) and len(np.unique(drift.round(6), axis=0)) == 4  # redrawn per member by rekey
    with pytest.raises(ValueError, match="share a PRNG key"):
        noise.check_independent_keys(jax.vmap(tx.init)(params))  # without re-keying: one key copied
    _, s1 = jax.vmap(tx.update)(params, state, params)
    assert [float(d.realized_snr[0]) for d in noise.diagnostics(s1)] == [2.0, float(noise.diagnostics(s1)[1].realized_snr[0])]
    assert len(noise.diagnostics(s1)) == 2


def test_a_tuple_that_is_not_a_noise_state_is_left_alone():
    class Other(NamedTuple):
        key: jax.Array
        count: jax.Array

    s = (Other(jax.random.key(0), jnp.zeros([])), noise.isotropic(1.0, 0).init({"w": jnp.zeros(2)}))
    out = noise.reseed(s, 5)
    assert jnp.array_equal(jax.random.key_data(out[0].key), jax.random.key_data(s[0].key))
    assert not jnp.array_equal(jax.random.key_data(out[1].key), jax.random.key_data(s[1].key))
