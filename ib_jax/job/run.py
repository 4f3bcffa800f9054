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
* PNG plots; ``checkpoints/`` (orbax, newest two); ``wandb/`` (offline runs, one per member);
  ``job.lock`` (who runs the job now).

Guarantees (each tested by injecting the fault in a subprocess, tests/test_faults.py):

* one job per directory: an OS lock; a second launch exits at once naming the holder;
* the config is fixed at the first launch: a relaunch with other values refuses before
  any compute, names the differing keys, and changes no file;
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
import time
import warnings

import jax
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ib_jax import bounds as B
from ib_jax.config import RESULT_NEUTRAL_KEYS, Config, ConfigError, migrate, to_dict
from ib_jax.job import records as R
from ib_jax.job import tracking
from ib_jax.job.build import validate
from ib_jax.job.checkpoints import Checkpoints
from ib_jax.job.lock import JobLock
from ib_jax.job.preemption import PreemptionGuard
from ib_jax.job.rows import metric_rows, read_metrics, rows_to_arrays
from ib_jax.job.snapshots import save_snapshots
from ib_jax.report import plots
from ib_jax.report.summary import ib_frontier_for, level_statistics, summarize, summary_table
from ib_jax.train import Trainer, eval_steps

__all__ = ["run", "setup_compilation_cache"]


def _hydra_output_dir() -> tuple[str | None, str | None, str]:
    """(job output dir, group name, job name) from hydra, when running under it."""
    try:
        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not under hydra
        return None, None, "job"
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    group_dir = hc.sweep.dir if multirun else hc.run.dir
    job = f"{hc.job.name}-{hc.job.num}" if multirun else hc.job.name
    return hc.runtime.output_dir, os.path.basename(os.path.normpath(group_dir)), job


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


def run(cfg: DictConfig | Config, output_dir: str | None = None) -> dict:
    """Run one job; return its summary (and write the files listed in the module docstring).

    Order of operations (each a guarantee of the module docstring): validate every value ->
    lock the directory -> check the config against the first launch's -> repair a torn
    metrics line -> restore the newest intact checkpoint -> cut metrics back to it -> rebuild
    wandb from metrics -> compile -> train chunk by chunk (append rows, log, checkpoint;
    stop at a chunk boundary on SIGTERM/SIGUSR1/SIGUSR2) -> summary, table, plots.
    """
    try:
        built = validate(cfg)  # every check before any compute (and before any file is touched)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    c = built.config
    hydra_dir, hydra_group, job_name = _hydra_output_dir()
    out = output_dir or c.paths.output_dir or hydra_dir or os.path.join("outputs", c.name)
    with R.naming(out):
        os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK):  # a read-only mount or no permission: say so before the lock file fails
        raise PermissionError(errno.EACCES, "the output directory is not writable (a read-only file system or no write permission)", out)
    metrics_path = os.path.join(out, "metrics.jsonl")
    job_cfg = to_dict(c)
    with JobLock(out) as lock:
        try:
            if not c.resume and _has_results(out, metrics_path):
                raise ValueError(
                    f"resume=false but {out} already holds results; choose another hydra.run.dir (results are never overwritten)"
                )
            problem = _unresumable(out, metrics_path, c) if c.resume else None
            if problem:
                raise ValueError(problem)
            fingerprint = R.record_or_check_config(
                out, job_cfg, ignore_keys=RESULT_NEUTRAL_KEYS, defaults=to_dict(Config()), migrate=migrate
            )
        except ValueError as e:
            lock.release(restore=True)  # a refused launch leaves every file as it was, job.lock included
            raise ConfigError(str(e)) from e
        _write_hydra_record(out, job_cfg)
        ckpt = Checkpoints(os.path.join(out, "checkpoints")) if c.checkpoint else None
        try:
            return _run_locked(c, built, out, metrics_path, ckpt, job_cfg, fingerprint, hydra_group, job_name)
        finally:
            if ckpt is not None:
                ckpt.close()


def _run_locked(c, built, out, metrics_path, ckpt, job_cfg, fingerprint, hydra_group, job_name) -> dict:
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
        job_config={**job_cfg, "noise_kind": c.noise.kind, "config_fingerprint": fingerprint},
        history=read_metrics(metrics_path) if os.path.exists(metrics_path) else [],
    )
    compile_s = trainer.compile(states, k) if done < len(gaps) else 0.0
    bar = None
    if c.logger.progress:
        from tqdm.auto import tqdm  # optional at import time: only a job with a progress bar needs it

        bar = tqdm(
            total=int(steps[-1]),
            initial=int(steps[done - 1]) if done else 0,
            desc=f"{job_name} ({len(members)} members)",
            unit="step",
            dynamic_ncols=True,
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
        summary = _finish(c, built, out, metrics_path, members, layer_names, states, wb, level_name, t0, compile_s, cache_dir)
        if guard.requested:
            print(f"[ib-jax] signal {guard.signal.name} received after training finished; the job is complete")
        return summary


def _finish(c, built, out, metrics_path, members, layer_names, states, wb, level_name, t0, compile_s, cache_dir) -> dict:
    """Everything here is derived from metrics.jsonl: the single record, also across resumes."""
    all_steps, metrics = rows_to_arrays(read_metrics(metrics_path), len(members), layer_names)
    diverged = np.asarray(states.diverged)
    summaries = summarize(all_steps, metrics, members, layer_names, diverged, np.asarray(states.diverged_step), level_name)
    names = c.estimator.names
    estimator = (
        next((e for e in names if e.startswith("binning")), None)
        or next((e for e in names if f"{e}/i_xt" in metrics and f"{e}/i_ty" in metrics), None)
        or (names[0] if names else None)
    )
    title = plots.describe(c, estimator)
    images = []
    try:
        if estimator:
            frontier = ib_frontier_for(built.dataset, kind=c.dataset.name, n_info=c.estimator.n_info, info_seed=c.estimator.info_seed)
            images += plots.information_planes(
                metrics, all_steps, members, layer_names, out, estimator, level_name, title=title, frontier=frontier
            )
            images += plots.conditional_entropy_vs_step(metrics, all_steps, members, layer_names, out, estimator, level_name, title=title)
        images += plots.gap_vs_level(metrics, members, out, level_name, title=title)
        images += plots.bounds_vs_level(metrics, members, out, level_name, title=title)
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
        "plots": [os.path.abspath(p) for p in images],
        "bounds_skipped": B.applicable(c)[1],  # the listed bounds whose assumptions this job does not meet, with why
        "wandb_run_ids": wb.ids if c.logger.wandb else [],
        "wandb_dir": os.path.abspath(os.path.join(out, "wandb")) if c.logger.wandb else None,
    }
    R.atomic_write_json(os.path.join(out, "summary.json"), summary)
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
    wb.finish(summaries, images if c.logger.log_images else [], planes)
    print(f"\n{table}\n")
    if summary["diverged_members"]:
        print(f"[ib-jax] diverged members: {summary['diverged_members']} (masked from their divergence step)")
    print(f"[ib-jax] wrote {metrics_path} and summary.json in {summary['output_dir']}")
    for p in summary["plots"]:
        print(f"[ib-jax] plot: {p}")
    if summary["wandb_dir"]:
        print(
            f"[ib-jax] wandb runs ({c.logger.mode}): {summary['wandb_dir']}  (upload: wandb sync {shlex.quote(summary['wandb_dir'])}/offline-run-*)"
        )
    print(
        f"[ib-jax] wall time {summary['wall_time_s']:.1f} s: compile {compile_s:.1f} s"
        f" ({'persistent cache ' + cache_dir if cache_dir else 'no persistent cache'}), the rest data, training, evaluation and records"
    )
    return summary
