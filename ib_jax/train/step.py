"""One member's training step, pure: ``train_step(state, batch, key) -> (state, metrics)``.

The optimizer comes from the ``OPTIMIZERS`` registry and the noise from the ``NOISE``
registry (:mod:`ib_jax.noise`): a kind contributes an optax transform placed before
the optimizer (gradient noise) or after it (update noise), and/or a perturbation of the
mini-batch (label noise, per-example loss weights). Nothing here knows the kinds by name.

A member's state (:class:`TrainState`) holds its own keys, level (SNR or sigma) and learning
rate, so a population is just a stacked state under ``vmap``. A non-finite loss or
parameter — or a finite loss above ``diverge_factor`` x the member's first loss — marks the
member diverged at that step and freezes its state from then on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ib_jax import models as M
from ib_jax import noise as N
from ib_jax.noise import schedules as S
from ib_jax.registry import NOISE, OPTIMIZERS
from ib_jax.train.gradient_stats import per_example_grads

__all__ = ["TrainState", "Step", "make_tx", "xent"]


class TrainState(NamedTuple):
    """One member's state (a population stacks a leading axis on every leaf)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    data_key: jax.Array
    dropout_key: jax.Array
    level: jax.Array
    learning_rate: jax.Array
    diverged: jax.Array
    diverged_step: jax.Array
    first_loss: jax.Array  # the first training loss (the reference for "absurdly large")


def xent(logits, y, weights=None):
    """Mean softmax cross-entropy (nats); ``weights`` (n,) gives mean_i w_i l_i."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return losses.mean() if weights is None else (weights * losses).mean()


def make_tx(cfg, level, learning_rate, key=None) -> optax.GradientTransformation:
    """The member's optimizer chain with its noise transform in place.

    ``level`` (a scalar, traced under vmap) times the schedule's multiplier is the transform's
    level at each count; ``key`` seeds the transform's state (reseeded per member at init).
    Order: ``optimizer.clip_norm``'s global-norm clip (if set), then the noise and the optimizer
    in ``noise.position``'s order.
    """
    opt = OPTIMIZERS.get(cfg.optimizer.name)(learning_rate, cfg.optimizer)
    kind = NOISE.get(cfg.noise.kind)
    # optimizer.clip_norm: ||g|| <= L before anything else sees the gradient (the noisy-iterative bound's L)
    clip = () if cfg.optimizer.clip_norm is None else (optax.clip_by_global_norm(cfg.optimizer.clip_norm),)
    if kind.transform is None:
        return optax.chain(*clip, opt) if clip else opt
    shape = S.build(cfg.schedule, steps=cfg.steps, level_name=kind.level_name)
    lvl = (lambda t: level) if shape is None else (lambda t: level * shape(t))
    nz = kind.transform(lvl, jax.random.key(0) if key is None else key, cfg.noise)
    return optax.chain(*clip, nz, opt) if cfg.noise.position == "gradient" else optax.chain(*clip, opt, nz)


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def select(pred, a, b):
    """Tree-wise ``where(pred, a, b)`` that also handles typed PRNG keys."""

    def sel(x, y):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.where(pred, jax.random.key_data(x), jax.random.key_data(y)))
        return jnp.where(pred, x, y)

    return jax.tree.map(sel, a, b)


class Step:
    """The pure per-member functions of one (config, model, number of classes).

    Args:
      cfg: the job's :class:`ib_jax.config.Config`.
      n_classes: labels of the data set.
    A finite loss above ``cfg.diverge_factor`` x the member's first loss counts as diverged
    (``inf`` disables the check).
    """

    def __init__(self, cfg, n_classes: int):
        self.cfg = cfg
        self.n_classes = n_classes
        self.kind = NOISE.get(cfg.noise.kind)
        self.model = M.build(cfg.model, n_classes)
        self.has_bn = cfg.model.batch_norm
        self.diverge_factor = float(cfg.diverge_factor)

    def apply(self, params, batch_stats, x, *, train: bool, key=None, centers: bool = False):
        """``(logits, hidden, batch_stats)``; ``key`` drives dropout and layer noise."""
        variables = {"params": params}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
        rngs = None
        if key is not None:
            k_drop, k_noise = jax.random.split(key)
            rngs = {"layer_noise": k_noise}
            if train:
                rngs["dropout"] = k_drop
        kw = {"centers": True} if centers else {}
        if self.has_bn and train:
            (logits, hidden), upd = self.model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"], **kw)
            return logits, hidden, upd["batch_stats"]
        logits, hidden = self.model.apply(variables, x, train=train, rngs=rngs, **kw)
        return logits, hidden, batch_stats

    def init(self, seed, level, learning_rate, x_example) -> TrainState:
        """A member's initial state from its seed (init, data, noise and dropout keys)."""
        k_init, k_data, k_noise, k_drop = jax.random.split(jax.random.key(seed), 4)
        variables = self.model.init(k_init, x_example, train=False)
        params = variables["params"]
        tx = make_tx(self.cfg, level, learning_rate, k_noise)
        opt_state = N.reseed(tx.init(params), k_noise)  # every member its own noise key
        return TrainState(
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=opt_state,
            step=jnp.zeros([], jnp.int32),
            data_key=k_data,
            dropout_key=k_drop,
            level=jnp.asarray(level, jnp.float32),
            learning_rate=jnp.asarray(learning_rate, jnp.float32),
            diverged=jnp.array(False),
            diverged_step=jnp.array(-1, jnp.int32),
            first_loss=jnp.array(jnp.nan, jnp.float32),
        )

    def example_loss(self, params, x, y):
        """Loss of one example (no batch axis): what per-example gradients differentiate."""
        logits, _, _ = self.apply(params, None, x[None], train=False)
        return xent(logits, y[None])

    def train_step(self, state: TrainState, batch, key) -> tuple[TrainState, dict]:
        """One pure step of one member: ``(state, (x, y), key) -> (state, metrics)``."""
        x, y = batch
        k_model, k_batch = jax.random.split(key)
        weights = None
        if self.kind.batch is not None:
            level_t = state.level
            shape = S.build(self.cfg.schedule, steps=self.cfg.steps, level_name=self.kind.level_name)
            if shape is not None:
                level_t = state.level * shape(state.step)
            y, weights = self.kind.batch(k_batch, y, level_t, self.n_classes, self.cfg.noise)

        def loss_fn(params):
            logits, _, bs = self.apply(params, state.batch_stats, x, train=True, key=k_model)
            return xent(logits, y, weights), (bs, jnp.mean(jnp.argmax(logits, -1) == y))

        (loss, (batch_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        extra = {}
        if self.kind.per_example_grads:
            extra["per_example_grads"] = per_example_grads(self.example_loss, state.params, x, y)
        tx = make_tx(self.cfg, state.level, state.learning_rate)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        first = jnp.where(jnp.isnan(state.first_loss), loss, state.first_loss)
        absurd = jnp.isfinite(first) & (loss > self.diverge_factor * jnp.maximum(first, 1e-12))
        ok = jnp.isfinite(loss) & _tree_all_finite(params) & ~absurd
        newly = ~ok & ~state.diverged
        diverged = state.diverged | ~ok
        new = state._replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
        kept = select(diverged, state, new)
        kept = kept._replace(
            step=state.step + 1,
            diverged=diverged,
            diverged_step=jnp.where(newly, state.step, state.diverged_step),
            first_loss=first,
        )
        metrics = {"loss": loss, "accuracy": acc}
        diags = N.diagnostics(opt_state)
        if diags:
            metrics["noise_realized_snr"] = diags[0].realized_snr
            metrics["noise_angle"] = diags[0].angle
        return kept, metrics
