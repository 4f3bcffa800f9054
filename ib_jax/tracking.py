"""wandb logging of a population: one run per member, failures never stop training.

Every member gets its own wandb run (``reinit="create_new"``, so the runs of
one job, and of several jobs in one multirun process, never share a run),
grouped by sweep, with the member's seed and noise level in its config so
wandb's grouping and parallel-coordinates views work by config. Run ids are
deterministic in the job's output directory and member index, so a resumed
job logs into the same runs.

Any wandb error (disk full, bad key, service down in online mode) is turned
into one warning; logging is then switched off for the job and training goes
on with the local files intact.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["WandbPopulation", "run_ids"]


def run_ids(output_dir: str, n_members: int) -> list[str]:
    """Deterministic wandb run ids for a job directory (stable across relaunches)."""
    tag = hashlib.sha1(os.path.abspath(output_dir).encode()).hexdigest()[:10]
    return [f"{tag}-m{i:03d}" for i in range(n_members)]


class WandbPopulation:
    """wandb runs for the members of one job."""

    def __init__(self, *, enabled: bool, mode: str, project: str, entity: str | None, group: str, job_name: str,
                 output_dir: str, members: Sequence[dict], job_config: dict):
        self.enabled = enabled
        self.runs = []
        self.ids = run_ids(output_dir, len(members))
        if not enabled:
            return
        try:
            import wandb

            self._wandb = wandb
            for m, run_id in zip(members, self.ids):
                cfg = {**job_config, **{f"member/{k}": v for k, v in m.items()}, "snr": m["level"], "seed": m["seed"]}
                self.runs.append(
                    wandb.init(
                        project=project,
                        entity=entity,
                        group=group,
                        job_type=job_name,
                        name=f"{job_name}-m{m['member']:03d}-snr{m['level']:g}-s{m['seed']}",
                        id=run_id,
                        resume="allow",
                        dir=output_dir,
                        config=cfg,
                        mode=mode,
                        reinit="create_new",
                        settings=wandb.Settings(silent=True, console="off"),
                    )
                )
        except Exception as e:  # noqa: BLE001 - any wandb failure must not stop training
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        warnings.warn(f"wandb failed ({type(e).__name__}: {e}); continuing without it, local files are intact", stacklevel=3)
        self.enabled = False
        for r in self.runs:
            try:
                r.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
        self.runs = []

    def log_rows(self, rows: Sequence[dict]) -> None:
        """Log metrics.jsonl rows (each has ``member`` and ``step``) to their members' runs."""
        if not self.enabled:
            return
        try:
            for row in rows:
                payload = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("member", "step")}
                self.runs[row["member"]].log(payload, step=int(row["step"]))
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def finish(self, summaries: Sequence[dict], images: Sequence[str], planes: Sequence[list[dict]]) -> None:
        """Final values in each run's summary, the information plane as a table and scatter plot, the PNGs."""
        if not self.enabled:
            return
        try:
            wandb = self._wandb
            for run, summary, plane in zip(self.runs, summaries, planes):
                imgs = {os.path.splitext(os.path.basename(p))[0]: wandb.Image(p) for p in images}  # media belong to one run
                for k, v in summary.items():
                    if isinstance(v, (int, float, bool, str)) or v is None:
                        run.summary[k] = v
                if plane:
                    cols = list(plane[0])
                    table = wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in plane])
                    run.log({"information_plane": table,
                             "information_plane_scatter": wandb.plot.scatter(table, "i_xt", "i_ty", title="information plane")})
                if imgs:
                    run.log(imgs)
                run.finish()
            self.runs = []
        except Exception as e:  # noqa: BLE001
            self._fail(e)


def finite_or_none(v):
    v = float(v)
    return v if np.isfinite(v) else None
