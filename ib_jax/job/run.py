"""One job: a population trained over the noise grid x seeds, with durable, honest records.

What a job writes in its output directory (the contract scripts rely on):

* ``job_config.json``: the resolved config that determines results and its SHA-256
  fingerprint, fixed at the first launch; ``.hydra/`` (config and overrides, first launch);
* ``metrics.jsonl``: one JSON object per evaluation step per member (step, eval, member,
  seed, the noise level under its kind's name (snr / sigma / p) exactly as given, train/test
  loss and accuracy, the gaps, ``{estimator}/{quantity}/{layer}``, noise and gradient
  diagnostics, diverged). Strict JSON: NaN (missing) is ``null``, +-inf the strings
  ``"inf"`` / ``"-inf"`` (:mod:`ib_jax.job.records`);
* ``summary.json``: per member its settings, final and matched-loss values, diverged or not;
  the markdown table (means with 95% intervals over seeds);
* ``summary.md``: every table of the job (the terminal gets the compact one);
* ``job.log``: everything the job printed, launch after launch (:mod:`ib_jax.job.console`);
* ``launches.jsonl``: one row per accepted launch: when, the evaluations already done, the library
  versions, code version and device it ran under (:mod:`ib_jax.job.provenance`; the first
  launch's are also in ``job_config.json``);
* plots (``plots.formats``); ``checkpoints/`` (orbax, newest two); ``wandb/`` (offline runs, one per
  member); ``job.lock`` (who runs the job now).

Guarantees (each tested by injecting the fault in a subprocess, tests/test_faults.py):

* one job per directory: an OS lock; a second launch exits at once naming the holder;
* the config is fixed at the first launch: a relaunch with other values refuses before
  any compute, names the differing keys, and changes no file; so does a relaunch with training
  left under other versions of jax, jaxlib, flax, optax, numpy or Python (unless
  ``on_version_change=resume``, which the launch row records); ``fresh=true`` moves the directory
  aside (``<dir>~prev-<UTC time>``, nothing deleted) and starts afresh;
* a killed or failed write never leaves a job that cannot resume: rows are appended in one
  write and rolled back on failure, a torn last line is cut on relaunch, and metrics rows
  are cut back to the newest intact checkpoint (a corrupted newest checkpoint falls back to
  the previous one); the resumed job ends with exactly the metrics of an uninterrupted one;
* wandb runs are rebuilt from metrics.jsonl on every launch: each evaluation exactly once;
* SIGTERM / SIGUSR1 / SIGUSR2: checkpoint at the next chunk boundary, exit 143 (or hand
  over to submitit's requeue handler).
"""

from __future__ import annotations

import errno
import math
import os
import shlex
import sys
import time
import warnings

import jax
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ib_jax import bounds as B
from ib_jax.config import RESULT_NEUTRAL_KEYS, Config, ConfigError, migrate, to_dict
from ib_jax.data.information import estimator_labels, info_suffixes, information_sets
from ib_jax.estimators.ceilings import ceilings
from ib_jax.job import records as R
from ib_jax.job import tracking
from ib_jax.job.build import validate
from ib_jax.job.checkpoints import Checkpoints
from ib_jax.job.console import job_console, result_line
from ib_jax.job.lock import JobLock
from ib_jax.job.options import used_options
from ib_jax.job.preemption import PreemptionGuard
from ib_jax.job.provenance import library_changes, provenance
from ib_jax.job.rows import metric_rows, read_metrics, rows_to_arrays
from ib_jax.job.snapshots import save_snapshots
from ib_jax.report import figures, plots
from ib_jax.report.summary import console_table, ib_frontier_for, level_statistics, markdown_report, summarize, summary_table
from ib_jax.train import Trainer, eval_steps

__all__ = ["run", "setup_compilation_cache", "objective", "move_aside"]


def _hydra_output_dir() -> tuple[str | None, str | None, str]:
    """(job output dir, group name, job name) from hydra, when running under it."""
    try:
        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not under hydra
        return None, None, "job"
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    # the group is the sweep: multirun/<sweep>/<setting>, or outputs/<name>/<setting> for one job
    group_dir = hc.sweep.dir if multirun else os.path.dirname(os.path.normpath(hc.run.dir))
    job = f"{hc.job.name}-{hc.job.num}" if multirun else hc.job.name
    return hc.runtime.output_dir, os.path.basename(os.path.normpath(group_dir)), job


def _model_label(c: Config) -> str:
    """The model's preset name (``tishby_tanh``: hydra's choice of the ``model`` group), else its kind."""
    try:
        choice = HydraConfig.get().runtime.choices.get("model")
    except Exception:  # noqa: BLE001 - not under hydra
        choice = None
    return str(choice) if choice else f"{c.model.kind}-{c.model.activation}"


def setup_compilation_cache(c: Config) -> str | None:
    """Turn on JAX's persistent compilation cache (``compile_cache``; ``paths.compile_cache_dir``,
    default ``<paths.cache_dir>/jax_compile``): a second launch of the same shapes skips XLA
    compilation. Returns the directory, or None when off."""
    if not c.compile_cache:
        return None
    path = os.path.expanduser(c.paths.compile_cache_dir or os.path.join(c.paths.cache_dir, "jax_compile"))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _write_hydra_record(out: str, job_cfg: dict) -> None:
    """Hydra's own record of the launch (``.hydra/config.yaml``, ``overrides.yaml``), written by us
    after the config check (``hydra.output_subdir: null``), on the first launch only."""
    try:
        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not under hydra
        return
    d = os.path.join(out, ".hydra")
    if os.path.exists(os.path.join(d, "config.yaml")):
        return
    os.makedirs(d, exist_ok=True)
    overrides = list(hc.overrides.task)
    R.atomic_write_text(os.path.join(d, "overrides.yaml"), OmegaConf.to_yaml(OmegaConf.create(overrides)))
    R.atomic_write_text(os.path.join(d, "config.yaml"), OmegaConf.to_yaml(OmegaConf.create(job_cfg)))


def _has_results(out: str, metrics_path: str) -> bool:
    ck = os.path.join(out, "checkpoints")
    has_ckpt = os.path.isdir(ck) and any(n.isdigit() for n in os.listdir(ck))
    return os.path.exists(metrics_path) or os.path.exists(os.path.join(out, "summary.json")) or has_ckpt


def _unresumable(out: str, metrics_path: str, c: Config) -> str | None:
    """Why the job's records cannot be resumed, or None.

    Resuming cuts ``metrics.jsonl`` back to the newest checkpoint, so rows without a checkpoint to
    resume them would be dropped and retrained. That is right for the one chunk a kill can leave
    between its rows and its checkpoint, and silent loss otherwise: when the checkpoints are gone
    (deleted by a cleanup, a quota purge) or were never written (``checkpoint=false``), the launch
    is refused, naming what is missing and how to start afresh. Rows missing while checkpoints
    exist are refused too.
    """
    ck = os.path.join(out, "checkpoints")
    has_ckpt = os.path.isdir(ck) and any(n.isdigit() for n in os.listdir(ck))
    rows = R.read_jsonl(metrics_path, repair=False, null=math.nan) if os.path.exists(metrics_path) else []
    fresh = f"To run the job again from scratch, move {out} aside or launch with hydra.run.dir=<new dir>."
    if has_ckpt and not rows:
        return (
            f"{out}: checkpoints/ holds a checkpoint but metrics.jsonl is missing or empty: the record is incomplete, so "
            f"nothing was started or changed. Restore {metrics_path}, or start afresh. {fresh}"
        )
    if not rows or (c.checkpoint and has_ckpt):
        return None
    recorded = len({r.get("eval") for r in rows})
    chunk = min(c.evals_per_chunk, len(eval_steps(c.steps, c.n_evals, c.eval_schedule)))
    if c.checkpoint and os.path.isdir(ck) and recorded <= chunk:
        return None  # killed between the first chunk's rows and its checkpoint: cut back and retrained
    why = "the job runs with checkpoint=false" if not c.checkpoint else f"{ck} is missing or holds no checkpoint"
    return (
        f"{out}: metrics.jsonl records {recorded} evaluations but there is no checkpoint to resume them from ({why}); "
        f"relaunching would retrain from step 0 and replace the recorded rows, so nothing was started or changed. "
        f"To keep the records, restore {ck}. {fresh}"
    )


OBJECTIVE_REDUCTIONS = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max}


def objective(summary: dict, spec: str) -> float:
    """The float a sweeper minimizes or maximizes: ``<metric>[:<reduction>]`` over the members'
    final values (``final/<metric>`` of ``summary["members"]``), diverged members included as NaN-free
    only when finite. ``test_loss`` = the members' mean final test loss. NaN when no member has a finite
    value (optuna records a failed trial for NaN)."""
    metric, _, how = str(spec).partition(":")
    how = how or "mean"
    if how not in OBJECTIVE_REDUCTIONS:
        raise ValueError(f"objective: unknown reduction {how!r} in {spec!r}; expected one of {sorted(OBJECTIVE_REDUCTIONS)}")
    values = [m.get(f"final/{metric}") for m in summary.get("members", [])]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(OBJECTIVE_REDUCTIONS[how](finite)) if finite else math.nan


def move_aside(out: str) -> str | None:
    """``fresh=true``: rename a job directory holding anything to ``<out>~prev-<UTC time>`` (nothing is
    deleted), under its lock so a job running there is never moved; returns the new name or None."""
    if not os.path.isdir(out) or not os.listdir(out):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = f"{os.path.normpath(out)}~prev-{stamp}", 1
    while os.path.exists(dest):
        n += 1
        dest = f"{os.path.normpath(out)}~prev-{stamp}-{n}"
    with JobLock(out), R.naming(out):  # raises JobLocked naming the holder when the job is running
        os.rename(out, dest)
    return dest


def _recorded_evals(metrics_path: str) -> int:
    if not os.path.exists(metrics_path):
        return 0
    return len({r.get("eval") for r in R.read_jsonl(metrics_path, repair=False, null=math.nan)})


def _check_versions(out: str, c: Config, prov: dict, recorded_evals: int) -> tuple[str | None, list]:
    """(a note to print, the library changes) for a relaunch; raises ValueError for a refused one.

    Training left under other versions of the libraries that decide the numbers is refused unless
    ``on_version_change=resume``; a complete job is only re-summarized, so it is never refused.
    """
    if not recorded_evals:
        return None, []
    try:
        with open(os.path.join(out, R.CONFIG_FILE), encoding="utf-8") as f:
            recorded = R.loads_strict(f.read()).get("provenance")
    except (OSError, ValueError):
        recorded = None
    total = len(eval_steps(c.steps, c.n_evals, c.eval_schedule))
    changes = library_changes(recorded, prov)
    shown = ", ".join(f"{d} {a} -> {b}" for d, a, b in changes)
    if recorded_evals >= total:
        code = "" if not recorded or recorded.get("code") == prov["code"] else f", code {recorded.get('code')} -> {prov['code']}"
        return (
            f"[ib-jax] {out} is complete ({total} evaluations{'; recorded under ' + shown if shown else ''}{code}): "
            "nothing is retrained, the summary and plots are redrawn from its records; fresh=true runs it afresh",
            changes,
        )
    if changes and c.on_version_change != "resume":
        raise ValueError(
            f"{out}: the job has {total - recorded_evals} of {total} evaluations left and was started under other library "
            f"versions ({shown}; recorded in {R.CONFIG_FILE}). JAX's random streams and XLA's numerics change across "
            "versions, so the resumed job would not equal an uninterrupted one; nothing was started or changed. "
            "Relaunch with on_version_change=resume to resume anyway (launches.jsonl records it), with fresh=true to "
            "start afresh, or under the recorded versions."
        )
    if changes:
        return f"[ib-jax] resuming under other library versions ({shown}); launches.jsonl records it", changes
    if recorded and recorded.get("code") != prov["code"]:
        return f"[ib-jax] resuming under another code version: {recorded.get('code')} -> {prov['code']}", changes
    return None, changes


def run(cfg: DictConfig | Config, output_dir: str | None = None) -> dict:
    """Run one job; return its summary (and write the files listed in the module docstring).

    Order of operations (each a guarantee of the module docstring): validate every value ->
    (``fresh``: move the directory aside) -> lock the directory -> check the config and versions
    against the first launch's -> record the launch -> repair a torn metrics line -> restore the
    newest intact checkpoint -> cut metrics back to it -> rebuild wandb from metrics -> compile ->
    train chunk by chunk (append rows, log, checkpoint; stop at a chunk boundary on
    SIGTERM/SIGUSR1/SIGUSR2) -> summary, tables, plots.
    """
    try:
        built = validate(cfg)  # every check before any compute (and before any file is touched)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    c = built.config
    hydra_dir, hydra_group, job_name = _hydra_output_dir()
    out = output_dir or c.paths.output_dir or hydra_dir or os.path.join("outputs", c.name)
    moved = move_aside(out) if c.fresh else None
    with R.naming(out):
        os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):  # a read-only mount or no permission: say so before the lock file fails
        raise PermissionError(errno.EACCES, "the output directory is not writable (a read-only file system or no write permission)", out)
    metrics_path = os.path.join(out, "metrics.jsonl")
    job_cfg = to_dict(c)
    prov = provenance()
    with JobLock(out) as lock:
        try:
            if not c.resume and _has_results(out, metrics_path):
                raise ValueError(
                    f"resume=false but {out} already holds results; choose another hydra.run.dir or relaunch with fresh=true "
                    "(which moves them aside; results are never overwritten)"
                )
            problem = _unresumable(out, metrics_path, c) if c.resume else None
            if problem:
                raise ValueError(problem)
            fingerprint = R.record_or_check_config(
                out,
                job_cfg,
                ignore_keys=RESULT_NEUTRAL_KEYS,
                defaults=to_dict(Config()),
                migrate=migrate,
                extra={"provenance": prov},
            )
            recorded = _recorded_evals(metrics_path)
            note, changes = _check_versions(out, c, prov, recorded)
        except ValueError as e:
            lock.release(restore=True)  # a refused launch leaves every file as it was, job.lock included
            raise ConfigError(str(e)) from e
        _write_hydra_record(out, job_cfg)
        launch = {
            "launched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "evaluations_done": recorded,
            "provenance": prov,
            "library_changes": [list(x) for x in changes],
            "on_version_change": c.on_version_change if changes else None,
            "fresh_moved_to": moved,
        }
        R.append_jsonl(os.path.join(out, "launches.jsonl"), [launch])
        with job_console(out, quiet=c.quiet, header=f"{job_name} in {os.path.abspath(out)} ({prov['code']})"):
            if moved:
                print(f"[ib-jax] fresh=true: the earlier contents of {out} were moved to {moved}")
            if note:
                print(note)
            ckpt = Checkpoints(os.path.join(out, "checkpoints")) if c.checkpoint else None
            try:
                summary = _run_locked(c, built, out, metrics_path, ckpt, job_cfg, fingerprint, hydra_group, job_name, prov)
            finally:
                if ckpt is not None:
                    ckpt.close()
            result_line(
                f"[ib-jax] done: {summary['output_dir']} ({len(summary['members'])} members, "
                f"objective {c.objective} = {objective(summary, c.objective):.6g}, {summary['wall_time_s']:.1f} s)"
            )
            return summary


def _run_locked(c, built, out, metrics_path, ckpt, job_cfg, fingerprint, hydra_group, job_name, prov) -> dict:
    level_name = built.noise_kind.level_name
    t0 = time.time()
    cache_dir = setup_compilation_cache(c)
    trainer = Trainer(c, built.dataset)
    members = built.population.members()
    layer_names = trainer.layer_names
    steps, gaps = trainer.schedule()
    k = trainer.chunk_size(c.evals_per_chunk)
    states = trainer.init(built.population)
    for name, why in trainer.bounds_skipped.items():
        print(f"[ib-jax] bound {name} not computed: {why}")

    # resume: a torn last metrics line is cut (read_jsonl repairs), then rows after the newest intact
    # checkpoint are dropped (they were written before a kill that came before the checkpoint)
    done = 0
    if os.path.exists(metrics_path):
        R.read_jsonl(metrics_path, null=math.nan)
    if ckpt is not None:
        done, restored = ckpt.restore_latest(states)
        if restored is not None:
            states = trainer.shard(restored)
    if os.path.exists(metrics_path):
        R.truncate_jsonl(metrics_path, lambda r: r["eval"] < done)
        kept = sorted({r["eval"] for r in read_metrics(metrics_path)})
        if kept != list(range(done)):
            raise RuntimeError(
                f"{metrics_path} holds evaluations {kept} but the checkpoint has {done}: the record is inconsistent; "
                "start a fresh job (another hydra.run.dir)"
            )
    elif done:
        raise RuntimeError(f"{out} has a checkpoint after {done} evaluations but no metrics.jsonl: start a fresh job")
    if done:
        print(f"[ib-jax] resuming {out} from checkpoint after {done}/{len(gaps)} evaluations (step {steps[done - 1]})")

    wb = tracking.WandbPopulation(
        enabled=c.logger.wandb,
        mode=c.logger.mode,
        project=c.logger.project,
        entity=c.logger.entity,
        group=c.logger.group or hydra_group or c.name,
        job_name=job_name,
        output_dir=out,
        members=members,
        job_config={**R.drop_keys(used_options(c), RESULT_NEUTRAL_KEYS), "config_fingerprint": fingerprint},
        history=read_metrics(metrics_path) if os.path.exists(metrics_path) else [],
        level_name=level_name,
        labels={
            "setting": os.path.basename(os.path.normpath(out)),
            "model": _model_label(c),
            "dataset": c.dataset.name,
            "noise_kind": c.noise.kind,
            "versions": {**prov["versions"], "python": prov["python"], "code": prov["code"], **prov["device"]},
        },
    )
    compile_s = trainer.compile(states, k) if done < len(gaps) else 0.0
    bar = None
    if c.logger.progress and not c.quiet:
        from tqdm.auto import tqdm  # optional at import time: only a job with a progress bar needs it

        bar = tqdm(
            total=int(steps[-1]),
            initial=int(steps[done - 1]) if done else 0,
            desc=f"{job_name} ({len(members)} members)",
            unit="step",
            dynamic_ncols=True,
            file=getattr(sys.stderr, "terminal", sys.stderr),  # the terminal, not job.log (a bar is redrawn in place)
        )
    with PreemptionGuard() as guard:
        chunks = trainer.chunks(states, start=done, evals_per_chunk=k)
        while not guard.requested:  # a signal stops training at the next chunk boundary
            chunk = next(chunks, None)
            if chunk is None:
                break
            states, m = chunk.states, chunk.metrics
            if chunk.snapshot is not None:
                save_snapshots(out, chunk.start, chunk.valid, chunk.snapshot)
            evals = range(chunk.start, chunk.start + chunk.valid)
            rows = metric_rows(
                m,
                evals=evals,
                steps=steps[chunk.start : chunk.start + chunk.valid],
                members=members,
                layer_names=layer_names,
                level_name=level_name,
                noise_kind=c.noise.kind,
            )
            R.append_jsonl(metrics_path, rows)  # rows first, then the checkpoint: resume cuts rows back to it
            wb.log_rows(rows)
            if ckpt:
                ckpt.save(chunk.start + chunk.valid, states)
            done = chunk.start + chunk.valid
            if bar is not None:
                bar.update(chunk.step - bar.n)
                with np.errstate(all="ignore"):
                    bar.set_postfix(loss=f"{np.nanmean(m['train_loss'][-1]):.3f}", gap=f"{np.nanmean(m['gap_loss'][-1]):+.3f}")
        if bar is not None:
            bar.close()
        if guard.requested and done < len(gaps):
            wb.close(preempted=True)
            guard.exit_for_requeue(
                f"[ib-jax] preempted (signal {guard.signal.name}): checkpoint saved after {done}/{len(gaps)} "
                f"evaluations in {out}; relaunch the same command to resume"
            )
        # training is complete: a signal now only waits for the summary (seconds) to be written
        summary = _finish(c, built, out, metrics_path, members, layer_names, states, wb, level_name, t0, compile_s, cache_dir, prov)
        if guard.requested:
            print(f"[ib-jax] signal {guard.signal.name} received after training finished; the job is complete")
        return summary


def _finish(c, built, out, metrics_path, members, layer_names, states, wb, level_name, t0, compile_s, cache_dir, prov) -> dict:
    """Everything here is derived from metrics.jsonl: the single record, also across resumes."""
    all_steps, metrics = rows_to_arrays(read_metrics(metrics_path), len(members), layer_names)
    diverged = np.asarray(states.diverged)
    info_sets = information_sets(c, built.dataset)
    # every estimate's ceiling (bits), per estimator as the metrics name it (e, or e@train and e@test)
    ceils = {name + s.suffix: v for s in info_sets for name, v in ceilings(c, s.y).items()}
    summaries = summarize(
        all_steps, metrics, members, layer_names, diverged, np.asarray(states.diverged_step), level_name, ceils, c.estimator.ceiling_margin
    )
    labels, suffixes = estimator_labels(c), info_suffixes(c)
    requested = c.plots.estimator if c.plots.estimator is None or c.plots.estimator in labels else c.plots.estimator + suffixes[0]
    estimator = plots.select_estimator(labels, metrics, requested)  # with info_split=both, e@train (and e@test beside it)
    others = [estimator.replace(suffixes[0], s) for s in suffixes[1:]] if estimator else []
    images = []
    try:
        # the exact IB frontier of each information set's own rows (None unless the data are discrete)
        frontiers = {s.suffix: ib_frontier_for(built.dataset, kind=c.dataset.name, rows=s.rows) for s in info_sets}
        frontier = frontiers[info_sets[0].suffix]
        images = figures.job_figures(
            c, metrics, all_steps, members, layer_names, out, level_name, frontier=frontier, ceilings=ceils, frontiers=frontiers
        )
    except Exception as e:  # noqa: BLE001 - a plot never costs the records
        warnings.warn(f"plots: {type(e).__name__}: {e}; the records are complete without them", stacklevel=2)
    table = summary_table(summaries, layer_names, level_name, estimator or "binning")
    summary = {
        "output_dir": os.path.abspath(out),
        "wall_time_s": round(time.time() - t0, 2),
        "compile_time_s": round(compile_s, 2),
        "compilation_cache": cache_dir,
        "steps": int(all_steps[-1]) if len(all_steps) else 0,
        "level_name": level_name,
        "members": summaries,
        "diverged_members": [s["member"] for s in summaries if s["diverged"]],
        "table": table,
        "levels": level_statistics(summaries, layer_names, level_name),
        # per estimator: rows used, ceilings of I(X;T), H(T) (log2 rows) and I(T;Y) (H(Y)) in bits, and the margin
        "ceilings": {k: {**v, "margin": c.estimator.ceiling_margin} for k, v in ceils.items()},
        "plots": [os.path.abspath(p) for p in images],
        "bounds_skipped": B.applicable(c)[1],  # the listed bounds whose assumptions this job does not meet, with why
        "wandb_run_ids": wb.ids if c.logger.wandb else [],
        "wandb_dir": os.path.abspath(os.path.join(out, "wandb")) if c.logger.wandb else None,
        "provenance": prov,  # the versions and device of the launch that finished the job (launches.jsonl: every launch)
    }
    R.atomic_write_json(os.path.join(out, "summary.json"), summary)
    report = markdown_report(
        summaries,
        layer_names,
        level_name,
        estimator or "binning",
        title=plots.describe(c, estimator),
        notes=[
            f"job: `{os.path.abspath(out)}`",
            f"wall time {summary['wall_time_s']:.1f} s, compile {summary['compile_time_s']:.1f} s",
            f"code {prov['code']}, jax {prov['versions'].get('jax')}, device {prov['device']['device_kind']}",
        ],
        images=[os.path.relpath(p, out) for p in images if p.endswith(".png")],
        also=others,
    )
    R.atomic_write_text(os.path.join(out, "summary.md"), report + "\n")
    planes = []
    for s in summaries:
        i = s["member"]
        plane = []
        if estimator and f"{estimator}/i_xt" in metrics and f"{estimator}/i_ty" in metrics:
            for j, st in enumerate(all_steps):
                for li, layer in enumerate(layer_names):
                    x, y = metrics[f"{estimator}/i_xt"][i, j, li], metrics[f"{estimator}/i_ty"][i, j, li]
                    if math.isfinite(x) and math.isfinite(y):
                        plane.append({"step": int(st), "layer": layer, "i_xt": float(x), "i_ty": float(y)})
        planes.append(plane)
    pngs = [p for p in images if p.endswith(".png")]  # wandb shows raster images; the job's plots go to one run
    wb.finish(summaries, pngs if c.logger.log_images else [], planes)
    print(f"\n{console_table(summaries, layer_names, level_name, estimator or 'binning')}\n")
    if summary["diverged_members"]:
        print(f"[ib-jax] diverged members: {summary['diverged_members']} (masked from their divergence step)")
    print(f"[ib-jax] wrote {metrics_path} and summary.json in {summary['output_dir']}")
    if images:
        stems = sorted({os.path.splitext(os.path.basename(p))[0] for p in images})
        kinds = sorted({os.path.splitext(p)[1].lstrip(".") for p in images})
        print(f"[ib-jax] plots ({', '.join(kinds)}) in {summary['output_dir']}: {', '.join(stems)}")
    if summary["wandb_dir"]:
        print(
            f"[ib-jax] wandb runs ({c.logger.mode}): {summary['wandb_dir']}  (upload: wandb sync {shlex.quote(summary['wandb_dir'])}/offline-run-*)"
        )
    print(
        f"[ib-jax] wall time {summary['wall_time_s']:.1f} s: compile {compile_s:.1f} s"
        f" ({'persistent cache ' + cache_dir if cache_dir else 'no persistent cache'}), the rest data, training, evaluation and records"
    )
    return summary
