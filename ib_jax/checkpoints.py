"""Orbax checkpoints of a population's state: step = evaluations done; keeps the newest two.

Typed PRNG keys are stored as their raw key data and re-wrapped on restore. A corrupted
newest checkpoint falls back to the previous one (:meth:`Checkpoints.restore_latest`,
via :func:`ib_jax.records.restore_latest_intact`).
"""

from __future__ import annotations

import os

import jax

from ib_jax.records import restore_latest_intact

__all__ = ["Checkpoints"]


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(states):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, states)


def _placed_like(x, ref):
    """``x`` uncommitted when ``ref`` is: jit keys its programs, and the persistent compilation
    cache its entries, on whether an argument is committed to a device. orbax returns committed
    arrays while a freshly initialized state on one device is uncommitted, so without this a
    resumed job would compile its training program a second time instead of reusing the cache."""
    if getattr(ref, "committed", True):
        return x
    return jax.numpy.asarray(jax.device_get(x))


def _restore_like(saved, like):
    return jax.tree.map(lambda s, ref: (jax.random.wrap_key_data(_placed_like(s, ref)) if _is_key(ref) else _placed_like(s, ref)),
                        saved, like)


class Checkpoints:
    """orbax CheckpointManager over the population state; step = evaluations done."""

    def __init__(self, directory: str):
        import logging

        import orbax.checkpoint as ocp

        logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's per-save OCDBT notices

        self._ocp = ocp
        self.mngr = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False),
        )

    def latest(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, evals_done: int, states) -> None:
        self.mngr.save(evals_done, args=self._ocp.args.StandardSave(_saveable(states)))
        self.mngr.wait_until_finished()  # durable before the next metrics rows are written

    def restore(self, evals_done: int, like):
        target = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, _saveable(like))
        saved = self.mngr.restore(evals_done, args=self._ocp.args.StandardRestore(target))
        return _restore_like(saved, like)

    def restore_latest(self, like):
        """``(evals_done, states)`` of the newest intact checkpoint (older one if the newest is
        corrupted, with a warning), or ``(0, None)`` without any."""
        step, states = restore_latest_intact(self.mngr, like, self.restore)
        return (0, None) if step is None else (int(step), states)

    def close(self) -> None:
        self.mngr.close()


