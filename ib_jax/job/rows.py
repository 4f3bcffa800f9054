"""The one record schema of ``metrics.jsonl``: rows from arrays, arrays from rows.

One row per evaluation per member::

    {"step", "eval", "member", "seed", <level name>: level as given, "noise_kind", ["learning_rate"],
     <scalar metric>: float, ..., "<estimator>/<quantity>/<layer>": float, ..., "diverged": bool}

NaN is written as ``null`` and +-inf as ``"inf"``/``"-inf"`` (:mod:`ib_jax.job.records`); a
member is ``diverged`` from the evaluation its values were masked at. Jobs
(:mod:`ib_jax.job.run`) and re-estimation (:mod:`ib_jax.job.reestimate_run`) both write rows with
:func:`metric_rows`, and every reader turns them back into arrays with :func:`rows_to_arrays`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ib_jax.job import records as R

__all__ = ["metric_rows", "read_metrics", "rows_to_arrays", "is_layer_key"]


def is_layer_key(key: str, layer_names) -> bool:
    """``{estimator}/{quantity}/{layer}``: a per-layer column of metrics.jsonl."""
    return key.count("/") >= 2 and key.rsplit("/", 1)[-1] in layer_names


def metric_rows(
    values: Mapping[str, np.ndarray],
    *,
    evals: Sequence[int],
    steps: Sequence[int],
    members: Sequence[dict],
    layer_names: Sequence[str],
    level_name: str,
    noise_kind: str,
    diverged: np.ndarray | None = None,
) -> list[dict]:
    """Rows for evaluations ``evals`` (at ``steps``) of every member.

    Args:
      values: ``{name: (E, P)}`` scalars or ``(E, P, L)`` per-layer values (recorded as
        ``{name}/{layer}``); a ``step`` entry is ignored (``steps`` gives it).
      members: ``{"member", "seed", "level"[, "learning_rate"]}`` per member (``Population.members()``).
      diverged: ``(E, P)`` bool, or None: a member counts as diverged where its ``train_loss`` is
        NaN (the evaluation masks a diverged member's values).
    """
    arrays = {k: np.asarray(v) for k, v in values.items() if k != "step"}
    rows = []
    for e, (ev, st) in enumerate(zip(evals, steps)):
        for m in members:
            i = m["member"]
            row = {
                "step": int(st),
                "eval": int(ev),
                "member": i,
                "seed": m["seed"],
                level_name: R.exact_float(m["level"]),
                "noise_kind": noise_kind,
            }
            if "learning_rate" in m:
                row["learning_rate"] = R.exact_float(m["learning_rate"])
            for name, arr in arrays.items():
                v = arr[e, i]
                if v.ndim == 0:
                    row[name] = float(v)
                else:
                    for layer, x in zip(layer_names, v):
                        row[f"{name}/{layer}"] = float(x)
            if diverged is None:
                row["diverged"] = math.isnan(row.get("train_loss", math.nan))
            else:
                row["diverged"] = bool(diverged[e, i])
            rows.append(row)
    return rows


def read_metrics(path: str) -> list[dict]:
    """metrics.jsonl rows (NaN for missing values); a torn last line is cut off with a warning."""
    return R.read_jsonl(path, null=math.nan)


def rows_to_arrays(rows: Sequence[dict], n_members: int, layer_names) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """metrics.jsonl rows -> (steps (E,), {name: (P, E) or (P, E, L)})."""
    evals = sorted({r["eval"] for r in rows})
    steps = np.zeros(len(evals), np.int64)
    scalar_names, layer_groups = set(), set()
    for r in rows[:n_members]:
        for k, v in r.items():
            if not isinstance(v, float):
                continue
            if is_layer_key(k, layer_names):
                layer_groups.add(k.rsplit("/", 1)[0])
            else:
                scalar_names.add(k)
    out = {k: np.full((n_members, len(evals)), np.nan) for k in scalar_names}
    out.update({k: np.full((n_members, len(evals), len(layer_names)), np.nan) for k in layer_groups})
    pos = {e: j for j, e in enumerate(evals)}
    for r in rows:
        j, i = pos[r["eval"]], r["member"]
        steps[j] = r["step"]
        for k in scalar_names:
            out[k][i, j] = r.get(k, np.nan)
        for g in layer_groups:
            out[g][i, j] = [r.get(f"{g}/{layer}", np.nan) for layer in layer_names]
    return steps, out


# ------------------------------------------------------------------------ run
