"""Which units of a very wide layer the information estimators see.

A ResNet-20 stage-1 block on CIFAR-10 has 32 * 32 * 16 = 16,384 units; binning every unit makes
almost every input its own pattern (H(T) = log2 n for any weights), and kNN/KDE in 16k dimensions
with a few thousand samples are dominated by their bias. Estimators therefore see a reduced view
``r(T)`` of such layers. ``r`` is a fixed deterministic function, so by the data-processing
inequality ``I(X; r(T)) <= I(X; T)`` and ``I(r(T); Y) <= I(T; Y)``: reduced numbers are lower bounds
on the layer's own, comparable across training steps and runs only under the same policy,
``max_units`` and seed (report them with the numbers).

Policies (:func:`reduce_features`):

* ``"all"``: every unit, ``t`` flattened to ``(n, D)``.
* ``"random_units"``: ``max_units`` units drawn uniformly without replacement from the D by a
  fixed key (sorted), the **same units at every evaluation** because the key is a pure function
  of the seed (and of the layer index in :func:`reduce_hidden`); all D units when D <= max_units.
* ``"channel_mean"``: mean over the spatial positions of each channel of a conv feature map,
  ``r(T)_c = (1 / S) sum_s T_{s, c}``, giving ``(n, C)``; a flat ``(n, S * C)`` row must be
  channel-last (channel index fastest, as :mod:`ib_jax.models.cnn2d` flattens) and ``channels=C`` is
  given. If ``C > max_units`` a fixed random subset of ``max_units`` channels follows. A layer
  without channels (``channels=None``, a dense layer) falls back to ``"random_units"``.

Everything is ``jax.numpy`` with static shapes: ``jax.jit`` with ``policy``, ``max_units`` and
``channels`` static (and the key traced or not) and ``jax.vmap`` over leading population axes work.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["POLICIES", "reduce_features", "reduce_hidden", "unit_subset"]

POLICIES = ("all", "random_units", "channel_mean")


def _key(key_or_seed) -> jax.Array:
    if isinstance(key_or_seed, int):
        return jax.random.key(key_or_seed)
    return key_or_seed


def unit_subset(key_or_seed, n_units: int, max_units: int) -> jax.Array:
    """Sorted int32 indices of ``min(max_units, n_units)`` distinct units out of ``n_units``, fixed by the key.

    Uniform without replacement (``jax.random.choice(..., replace=False)``); ``arange(n_units)``
    when ``n_units <= max_units``.
    """
    if max_units < 1:
        raise ValueError(f"estimator.max_units must be >= 1, got {max_units}")
    if n_units <= max_units:
        return jnp.arange(n_units, dtype=jnp.int32)
    idx = jax.random.choice(_key(key_or_seed), n_units, (max_units,), replace=False)
    return jnp.sort(idx).astype(jnp.int32)


def reduce_features(t: jax.Array, policy: str, max_units: int, key_or_seed=0, *, channels: int | None = None) -> jax.Array:
    """The estimators' view of one layer: ``(n, ...)`` activations -> ``(n, d)`` features.

    Args:
      t: activations of one layer for n inputs, ``(n, D)`` (flat, channel-last for conv maps) or
        ``(n, H, W, C)``.
      policy: ``"all"``, ``"random_units"`` or ``"channel_mean"`` (see the module docstring).
      max_units: the largest d kept by ``random_units`` (and by ``channel_mean`` over channels);
        ignored by ``all``.
      key_or_seed: an int seed or a jax key fixing the random subset; keep it fixed across
        evaluations so the same units are measured at every step.
      channels: number of channels C of a flat conv map (needed by ``channel_mean`` for a 2-D
        ``t``); ``None`` for dense layers.

    Returns:
      ``(n, D)`` for ``all``; ``(n, min(D, max_units))`` for ``random_units``;
      ``(n, min(C, max_units))`` for ``channel_mean`` (or the ``random_units`` result when the
      layer has no channels).
    """
    if policy not in POLICIES:
        raise ValueError(f"estimator.wide_policy must be one of {POLICIES}, got {policy!r}")
    n = t.shape[0]
    if policy == "channel_mean":
        if t.ndim > 2:
            c = t.shape[-1]
            if channels is not None and channels != c:
                raise ValueError(f"reduce_features: channels={channels} but the feature map has {c} channels (shape {t.shape})")
            pooled = t.reshape(n, -1, c).mean(axis=1)
        elif channels is None:
            return reduce_features(t, "random_units", max_units, key_or_seed)
        else:
            if t.shape[1] % channels:
                raise ValueError(f"reduce_features: {t.shape[1]} units are not a multiple of channels={channels}")
            pooled = t.reshape(n, -1, channels).mean(axis=1)
        idx = unit_subset(key_or_seed, pooled.shape[1], max_units)
        return pooled if idx.shape[0] == pooled.shape[1] else pooled[:, idx]
    flat = t.reshape(n, -1)
    if policy == "all":
        return flat
    idx = unit_subset(key_or_seed, flat.shape[1], max_units)
    return flat if idx.shape[0] == flat.shape[1] else flat[:, idx]


def reduce_hidden(
    hidden: Sequence[jax.Array],
    policy: str,
    max_units: int,
    seed: int = 0,
    *,
    channels: Sequence[int | None] | None = None,
) -> tuple[jax.Array, ...]:
    """:func:`reduce_features` on every layer, layer ``l`` with key ``fold_in(key(seed), l)``.

    Distinct layers get independent unit subsets; the same ``(seed, l)`` always gives the same
    subset. ``channels``: per-layer channel counts (e.g. ``model.hidden_channels()``), or
    ``None`` when no layer is a conv map.
    """
    chans = (None,) * len(hidden) if channels is None else tuple(channels)
    if len(chans) != len(hidden):
        raise ValueError(f"reduce_hidden: {len(chans)} channel counts for {len(hidden)} layers")
    base = jax.random.key(seed)
    return tuple(
        reduce_features(t, policy, max_units, jax.random.fold_in(base, l), channels=c) for l, (t, c) in enumerate(zip(hidden, chans))
    )
