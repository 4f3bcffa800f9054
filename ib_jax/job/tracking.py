"""wandb logging of a population, replayed from the local records: one run per member, every evaluation once.

``metrics.jsonl`` is the record; wandb is a view of it. Every member gets its
own wandb run (``reinit="create_new"``, so the runs of one job, and of several
jobs in one multirun process, never share a run), grouped by sweep, with the
member's seed and noise level in its config so wandb's grouping and
parallel-coordinates views work by config. Run ids are deterministic in the
job's output directory and member index.

**Relaunches (preemption, crash).** wandb cannot resume an offline run: each
launch writes a new ``wandb/offline-run-<time>-<id>`` directory, and ``wandb
sync`` of a later one with the same id replaces the earlier one on the server
(wandb issues #3841, #5865). An earlier launch's offline run also holds rows
logged after its last checkpoint, which the relaunch computes again. So, on
every launch, :class:`WandbPopulation`

* in ``offline`` mode: deletes the member's earlier ``offline-run-*-<id>``
  directories (derived data: everything in them is in ``metrics.jsonl``),
  starts a fresh run with the same id, and replays the ``history`` rows (the
  metrics rows kept up to the restored checkpoint) before logging live rows;
  the member's one offline run then holds every evaluation exactly once;
* in ``online`` mode: resumes the server run (``resume="allow"``); the server
  already holds steps ``< run.starting_step``, so history and live rows below
  that step are not sent again (they are recomputed identically from the
  checkpoint: training is a function of state and step); the rest is replayed.

Within a launch a row whose step is below the next step its member's run
accepts is skipped, so calling :meth:`WandbPopulation.log_rows` twice with the
same rows logs them once.

Any wandb error (disk full, bad key, service down in online mode) is turned
into one warning; logging is then switched off for the job and training goes
on with the local files intact.

:func:`read_offline_history` reads an offline run's history back from its
``.wandb`` transaction log (no network, no login), for checks and tests.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import struct
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["WandbPopulation", "run_ids", "offline_run_dirs", "read_offline_history"]


def run_ids(output_dir: str, n_members: int) -> list[str]:
    """Deterministic wandb run ids for a job directory (stable across relaunches)."""
    tag = hashlib.sha1(os.path.abspath(output_dir).encode()).hexdigest()[:10]
    return [f"{tag}-m{i:03d}" for i in range(n_members)]


def offline_run_dirs(output_dir: str, run_id: str) -> list[str]:
    """The ``<output_dir>/wandb/offline-run-<time>-<run_id>`` directories, oldest first."""
    pattern = os.path.join(glob.escape(os.path.abspath(output_dir)), "wandb", "offline-run-*")
    return sorted(d for d in glob.glob(pattern) if os.path.basename(d).endswith("-" + run_id) and os.path.isdir(d))


def _payload(row: dict) -> dict:
    """A metrics row -> wandb values: numbers and flags; null (a NaN written as strict JSON) -> NaN."""
    out = {}
    for k, v in row.items():
        if k in ("member", "step"):
            continue
        if v is None:
            out[k] = math.nan
        elif isinstance(v, (bool, int, float, np.number, np.bool_)):
            out[k] = v
    return out


def member_config(job_config: dict, member: dict, level_name: str, labels: dict) -> tuple[dict, str]:
    """(wandb run config, run name) of one member.

    The config is the job's (the options of the parts in use, :func:`ib_jax.job.options.used_options`)
    with ``noise.snr`` (the whole grid) replaced by the member's own level under its kind's name
    (``noise.sigma`` for fixed noise, ``noise.p`` for label noise...) and the grid kept as
    ``noise.grid``; top-level keys name what a wandb table groups by: the member's level under its
    kind's name, ``seed``, ``member``, ``noise_kind``, ``model``, ``dataset``, ``setting`` (the job's
    overrides), plus the job's ``versions``. The name reads
    ``<dataset>/<model>/<kind> <level_name>=<level>/s<seed>``.
    """
    cfg = json.loads(json.dumps(job_config, default=str))  # a deep, plain copy
    noise = dict(cfg.get("noise", {}))
    grid = noise.pop("snr", None)
    level = member["level"]
    noise[level_name] = level
    if grid is not None:
        noise["grid"] = grid
    cfg["noise"] = noise
    kind = labels.get("noise_kind", noise.get("kind", "noise"))
    model = labels.get("model", cfg.get("model", {}).get("kind", "model"))
    dataset = labels.get("dataset", cfg.get("dataset", {}).get("name", "data"))
    cfg.update(
        {
            level_name: level,
            "seed": member["seed"],
            "member": member["member"],
            "noise_kind": kind,
            "model": model,
            "dataset": dataset,
            "setting": labels.get("setting"),
            **{f"member/{k}": v for k, v in member.items() if k not in ("member", "seed", "level")},
            **({"versions": labels["versions"]} if "versions" in labels else {}),
        }
    )
    # the schema's model group stays under model_config (the top-level "model" is the preset's name)
    cfg["model_config"] = job_config.get("model")
    cfg["dataset_config"] = job_config.get("dataset")
    name = f"{dataset}/{model}/{kind} {level_name}={level:g}/s{member['seed']}"
    return cfg, name


class WandbPopulation:
    """wandb runs for the members of one job, replayed from ``history`` then fed live rows.

    ``history``: the metrics rows already in ``metrics.jsonl`` that this launch
    keeps (after truncation to the restored checkpoint), each with ``member``
    and ``step``; ``[]`` for a first launch. ``None`` (a caller that does not
    replay) keeps earlier offline runs and replays nothing: a relaunch then
    writes a second offline run per member holding only the new rows.
    ``wandb_module``: the module to use (tests inject a fake).
    Attributes: ``ids`` (run ids), ``logged[i]`` (rows logged to member ``i``'s
    run by this launch, replayed or live), ``replayed[i]``, ``skipped[i]`` (rows
    not sent because the run already holds their step), ``next_step[i]``.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        mode: str,
        project: str,
        entity: str | None,
        group: str,
        job_name: str,
        output_dir: str,
        members: Sequence[dict],
        job_config: dict,
        history: Sequence[dict] | None = None,
        wandb_module: Any = None,
        level_name: str = "snr",
        labels: dict | None = None,
    ):
        self.enabled = bool(enabled) and mode != "disabled"
        self.mode = mode
        self.output_dir = output_dir
        self.runs: list[Any] = []
        self.ids = run_ids(output_dir, len(members))
        n = len(members)
        self.next_step = [0] * n
        self.logged = [0] * n
        self.replayed = [0] * n
        self.skipped = [0] * n
        if not self.enabled:
            return
        try:
            if wandb_module is None:
                import wandb as wandb_module
            self._wandb = wandb_module
            for m, run_id in zip(members, self.ids):
                if history is not None:
                    for d in offline_run_dirs(output_dir, run_id):
                        shutil.rmtree(d)  # replaced by a fresh run holding the whole history (see module docstring)
                cfg, name = member_config(job_config, m, level_name, labels or {})
                run = wandb_module.init(
                    project=project,
                    entity=entity,
                    group=group,
                    job_type=(labels or {}).get("setting", job_name),
                    name=name,
                    id=run_id,
                    resume="allow" if mode == "online" else None,
                    dir=output_dir,
                    config=cfg,
                    mode=mode,
                    reinit="create_new",
                    settings=wandb_module.Settings(silent=True, console="off"),
                )
                self.runs.append(run)
                if mode == "online":
                    self.next_step[len(self.runs) - 1] = int(getattr(run, "starting_step", 0) or 0)
            history = history or ()
            self._log(sorted(history, key=lambda r: (int(r["step"]), int(r["member"]))), replay=True)
            if any(self.skipped):
                warnings.warn(
                    f"wandb: the resumed server runs already held {sum(self.skipped)} of the "
                    f"{len(history)} recorded rows (steps below {self.next_step}); those were not sent "
                    "again",
                    stacklevel=2,
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

    def _log(self, rows: Sequence[dict], replay: bool = False) -> None:
        for row in rows:
            i, step = int(row["member"]), int(row["step"])
            if step < self.next_step[i]:
                self.skipped[i] += 1  # this run already holds that step: exactly once
                continue
            self.runs[i].log(_payload(row), step=step)
            self.next_step[i] = step + 1
            self.logged[i] += 1
            self.replayed[i] += replay

    def log_rows(self, rows: Sequence[dict]) -> None:
        """Log metrics.jsonl rows (each has ``member`` and ``step``) to their members' runs, each step once."""
        if not self.enabled:
            return
        try:
            self._log(rows)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _teardown(self) -> None:
        # finish() can return before wandb's service has written the last run's transaction log;
        # teardown waits for it, so the offline files are complete when the job's files are
        teardown = getattr(self._wandb, "teardown", None)
        if teardown is not None:
            teardown()

    def close(self, *, preempted: bool = False) -> None:
        """Finish the runs without final summaries (a job stopping early); ``preempted`` marks them so online."""
        if not self.enabled:
            return
        try:
            for run in self.runs:
                if preempted and hasattr(run, "mark_preempting"):
                    run.mark_preempting()
                run.finish(exit_code=0 if not preempted else 1)
            self.runs = []
            self._teardown()
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def finish(self, summaries: Sequence[dict], images: Sequence[str], planes: Sequence[list[dict]]) -> None:
        """Final values in each run's summary, the information plane as a table and scatter plot, the PNGs."""
        if not self.enabled:
            return
        try:
            wandb = self._wandb
            for i, (run, summary, plane) in enumerate(zip(self.runs, summaries, planes)):
                # the job's figures show every member: logged once, to the first member's run (wandb's
                # media belong to one run; 64 copies of each PNG would outweigh the metrics)
                imgs = {f"job/{os.path.splitext(os.path.basename(p))[0]}": wandb.Image(p) for p in images} if i == 0 else {}
                for k, v in summary.items():
                    if isinstance(v, (int, float, bool, str)) or v is None:
                        run.summary[k] = v
                if plane:
                    cols = list(plane[0])
                    table = wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in plane])
                    run.log(
                        {
                            "information_plane": table,
                            "information_plane_scatter": wandb.plot.scatter(table, "i_xt", "i_ty", title="information plane"),
                        }
                    )
                if imgs:
                    run.log(imgs)
                run.finish()
            self.runs = []
            self._teardown()
        except Exception as e:  # noqa: BLE001
            self._fail(e)


# ----------------------------------------------------- reading offline runs back

# wandb's transaction log (``run-<id>.wandb``) uses the LevelDB log format
# (github.com/google/leveldb/blob/main/doc/log_format.md) after a 7-byte header
# (b":W&B", uint16 magic, uint8 version): 32 KiB blocks of chunks, each
# ``crc32 (4) | length (2, little-endian) | type (1) | data``; type FULL=1 holds a
# whole record, FIRST=2 / MIDDLE=3 / LAST=4 a record split across blocks; a block
# tail shorter than a chunk header is zero padding. Each record is a protobuf
# ``wandb.proto.wandb_internal_pb2.Record``.
_HEADER = 7
_BLOCK = 32768


def _records(data: bytes):
    if data[:4] != b":W&B":
        raise ValueError("not a wandb transaction log (no :W&B header)")
    pos, parts = _HEADER, []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left  # block trailer
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left  # zero padding to the end of the block
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        if len(chunk) < length:
            break  # a torn last record (the writer was killed): stop at the last complete one
        pos += _HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            parts = [chunk]
        elif kind == 3:
            parts.append(chunk)
        elif kind == 4:
            yield b"".join([*parts, chunk])
            parts = []


def read_offline_history(run_dir: str) -> list[dict]:
    """The history rows of an offline wandb run directory, in logged order (``_step`` included).

    Values are decoded from wandb's JSON (``NaN``/``Infinity`` included). Call it
    after the run has finished and wandb has been torn down (the service writes
    the log asynchronously).
    """
    from wandb.proto import wandb_internal_pb2

    files = glob.glob(os.path.join(glob.escape(run_dir), "run-*.wandb"))
    if len(files) != 1:
        raise ValueError(f"{run_dir}: expected one run-*.wandb file, found {len(files)}")
    with open(files[0], "rb") as f:
        data = f.read()
    rows = []
    for raw in _records(data):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            rows.append({(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in rec.history.item})
    return rows


def read_offline_run(run_dir: str) -> dict:
    """The run record of an offline wandb run directory: ``{"name", "group", "job_type", "config"}``
    (config values decoded from wandb's JSON; ``config`` merges the run record's and later config
    updates). For checks and tests, like :func:`read_offline_history`."""
    from wandb.proto import wandb_internal_pb2

    files = glob.glob(os.path.join(glob.escape(run_dir), "run-*.wandb"))
    if len(files) != 1:
        raise ValueError(f"{run_dir}: expected one run-*.wandb file, found {len(files)}")
    with open(files[0], "rb") as f:
        data = f.read()
    out: dict = {"config": {}}

    def _config(items) -> None:
        for it in items:
            key = it.key or "/".join(it.nested_key)
            value = json.loads(it.value_json)
            out["config"][key] = value.get("value", value) if isinstance(value, dict) and set(value) <= {"value", "desc"} else value

    for raw in _records(data):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(name=rec.run.display_name, group=rec.run.run_group, job_type=rec.run.job_type)
            _config(rec.run.config.update)
        elif kind == "config":
            _config(rec.config.update)
    return out
