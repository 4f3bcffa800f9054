"""Orbax checkpoints of a population's state: step = evaluations done; keeps the newest two.

Typed PRNG keys are stored as their raw key data and re-wrapped on restore. A corrupted
newest checkpoint falls back to the previous one (:meth:`Checkpoints.restore_latest`,
via :func:`restore_latest_intact`, which moves the unreadable ones aside).
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

from ib_jax.job.records import _fsync_dir

__all__ = ["Checkpoints", "NoIntactCheckpoint", "restore_latest_intact"]


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
    return jax.tree.map(
        lambda s, ref: jax.random.wrap_key_data(_placed_like(s, ref)) if _is_key(ref) else _placed_like(s, ref), saved, like
    )


def _write_error(e: BaseException, path: str) -> OSError:
    """The OS error behind a failed checkpoint write (``os_error_code`` in tensorstore's message), naming ``path``."""
    if isinstance(e, OSError) and e.errno is not None:
        code = e.errno
    else:
        m = re.search(r"os_error_code='?(\d+)", str(e))
        code = int(m.group(1)) if m else errno.EIO
    err = OSError(code, f"{os.strerror(code)} (writing a checkpoint: {type(e).__name__}: {str(e).splitlines()[0][:300]})", path)
    return err


class Checkpoints:
    """orbax CheckpointManager over the population state; step = evaluations done."""

    def __init__(self, directory: str):
        logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's per-save OCDBT notices

        self._ocp = ocp
        self.mngr = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False),
        )

    def latest(self) -> int | None:
        return self.mngr.latest_step()

    def save(self, evals_done: int, states) -> None:
        """Save and wait (durable before the next metrics rows are written). A failed write raises
        an ``OSError`` naming the checkpoint (orbax reports a full disk as a ``ValueError``)."""
        try:
            self.mngr.save(evals_done, args=self._ocp.args.StandardSave(_saveable(states)))
            self.mngr.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - tensorstore/orbax wrap the OS error in their own types
            raise _write_error(e, os.path.join(str(self.mngr.directory), str(evals_done))) from e

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


# --------------------------------------------------------------- checkpoints


class NoIntactCheckpoint(RuntimeError):
    """Checkpoints exist but none of them restores; ``errors``: ``{step: exception}``."""

    def __init__(self, message: str, errors: dict[int, BaseException]):
        super().__init__(message)
        self.errors = errors


def _step_path(manager, step: int):
    try:
        return ocp.step.find_step_path(manager.directory, manager._step_name_format, step=step)
    except Exception:  # noqa: BLE001 - private attribute or layout of another orbax version
        return manager.directory / str(step)


def restore_latest_intact(
    manager, like: Any, restore_fn: Callable[[int, Any], Any] | None = None, *, quarantine: bool = True
) -> tuple[int | None, Any]:
    """Restore the newest checkpoint that reads back; ``(step, restored)`` or ``(None, None)`` without any.

    ``manager``: an ``orbax.checkpoint.CheckpointManager``. ``restore_fn(step, like)``
    restores one step (e.g. :meth:`Checkpoints.restore`);
    by default ``manager.restore(step, args=StandardRestore(like's shapes/dtypes))``.

    Steps are tried newest first. A step whose restore raises (orbax/tensorstore
    raise on truncated or garbled files: OCDBT data carries checksums, the JSON
    metadata must parse) is skipped with a warning. When an older step restores,
    the failed newer steps are renamed to ``<step>.corrupt-<UTC time>`` in the
    checkpoint directory (orbax ignores such names; nothing is deleted) so the
    job can save those step numbers again, and the manager is reloaded. When
    every step fails, raises :class:`NoIntactCheckpoint` with each step's error
    and renames nothing: failing everywhere points to a mismatch between ``like``
    and the checkpoints (a changed model, say), not to corruption.
    """
    if restore_fn is None:
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)

        def restore_fn(step, _like):
            return manager.restore(step, args=ocp.args.StandardRestore(target))

    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None, None
    errors: dict[int, BaseException] = {}
    for step in steps:
        try:
            restored = restore_fn(step, like)
        except Exception as e:  # noqa: BLE001 - any failure to read a step means: try the older one
            errors[step] = e
            warnings.warn(
                f"checkpoint {step} in {manager.directory} does not restore ({type(e).__name__}: "
                f"{str(e)[:300]}); falling back to an older checkpoint",
                stacklevel=2,
            )
            continue
        if errors and quarantine:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
            for bad in errors:
                src = _step_path(manager, bad)
                dst = src.parent / f"{src.name}.corrupt-{stamp}"
                os.rename(os.fspath(src), os.fspath(dst))
                warnings.warn(f"moved the unreadable checkpoint {src} to {dst}", stacklevel=2)
            _fsync_dir(os.fspath(manager.directory))
            manager.reload()
        return step, restored
    raise NoIntactCheckpoint(
        f"no checkpoint in {manager.directory} restores (steps {steps}): "
        + "; ".join(f"{s}: {type(e).__name__}: {str(e)[:200]}" for s, e in errors.items())
        + ". If the model or state layout changed, start a fresh job in a new directory.",
        errors,
    )
