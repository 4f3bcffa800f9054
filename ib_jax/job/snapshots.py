"""Snapshots: every member's parameters at every evaluation (``snapshots=true``), for re-estimation.

``<job>/snapshots/eval_{e:05d}.npz`` holds, per evaluation e, every leaf of
``{"params", "batch_stats"}`` stacked on the member axis and named by its pytree path
(``jax.tree_util.keystr``). Written atomically (a temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np

from ib_jax.job.records import naming

__all__ = ["snapshot_path", "save_snapshots", "load_snapshot", "snapshot_evals"]

_SNAP = re.compile(r"^eval_(\d{5,})\.npz$")


def snapshot_path(out: str, eval_index: int) -> str:
    return os.path.join(out, "snapshots", f"eval_{eval_index:05d}.npz")


def save_snapshots(out: str, start: int, valid: int, snap) -> None:
    """One ``.npz`` per evaluation: every member's parameters (and batch-norm statistics), leaves
    stacked on the member axis, named by their pytree path. Written atomically; a resumed job
    rewrites the same bytes (training is deterministic in the step)."""
    os.makedirs(os.path.join(out, "snapshots"), exist_ok=True)
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(snap))[0]
    for e in range(valid):
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf[e]) for path, leaf in leaves}
        path = snapshot_path(out, start + e)
        tmp = path + ".tmp.npz"
        with naming(path):
            np.savez(tmp, **arrays)
            os.replace(tmp, path)


def load_snapshot(out: str, eval_index: int, like):
    """The snapshot of one evaluation as a pytree shaped like ``like`` ({"params", "batch_stats"},
    member axis first)."""
    with np.load(snapshot_path(out, eval_index)) as f:
        paths = jax.tree_util.tree_flatten_with_path(like)[0]
        leaves = [f[jax.tree_util.keystr(p)] for p, _ in paths]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


def snapshot_evals(job_dir: str) -> list[int]:
    """Evaluation indices that have a snapshot file in ``<job_dir>/snapshots`` (sorted)."""
    d = os.path.join(job_dir, "snapshots")
    if not os.path.isdir(d):
        return []
    return sorted(int(m.group(1)) for m in map(_SNAP.match, os.listdir(d)) if m)
