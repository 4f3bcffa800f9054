"""Re-estimation's files: rows in the job's record schema, tables, plots, and :func:`run`.

:func:`run` re-estimates a job into ``<job>/reestimate/<tag>/`` with
:func:`ib_jax.job.reestimate.compute` (see there for what is computed and written); the job's
own records are only read.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ib_jax.config import Config, to_dict
from ib_jax.data.information import estimator_labels
from ib_jax.job import records as R
from ib_jax.job.build import validate
from ib_jax.job.lock import JobLock
from ib_jax.job.reestimate import STATUS_FILE, Job, Options, Result, compute, load_job, resolve_config, split_overrides, tag_for
from ib_jax.job.rows import metric_rows, rows_to_arrays
from ib_jax.report import plots
from ib_jax.report.summary import summarize, summary_table

__all__ = ["run"]

COPIED = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "gap_loss", "gap_accuracy")


def _rows(result: Result, job: Job, noise_kind: str) -> list[dict]:
    """The job's own losses and gaps (copied) and the re-estimated values, in the job's row schema."""
    by_key = {(int(r["eval"]), int(r["member"])): r for r in job.rows}
    copied = {
        k: np.array([[by_key[(ev, m["member"])].get(k, math.nan) for m in result.members] for ev in result.evals], np.float64)
        for k in COPIED
        if k in job.rows[0]
    }
    values = {**copied, **{k: np.moveaxis(v, 0, 1) for k, v in result.metrics.items()}}  # (E, P[, L])
    return metric_rows(
        values,
        evals=result.evals,
        steps=result.steps,
        members=result.members,
        layer_names=result.layer_names,
        level_name=result.level_name,
        noise_kind=noise_kind,
        diverged=np.asarray(result.diverged).T,
    )


def _final_tables(metrics, members, layer_names, level_name) -> str:
    """Markdown: per estimator quantity, the final value per layer, mean ± std over seeds per level."""
    groups: dict[float, list[int]] = {}
    for m in members:
        groups.setdefault(m["level"], []).append(m["member"])
    lines = []
    for key in sorted(k for k, a in metrics.items() if a.ndim == 3 and not k.startswith(("train_", "test_", "gap_"))):
        lines += [f"final {key} [bits]", "", f"| {level_name} | " + " | ".join(layer_names) + " |", "|" + " --- |" * (1 + len(layer_names))]
        for lv in sorted(groups, key=lambda v: (not math.isinf(v), -v)):
            vals = metrics[key][groups[lv], -1]  # (seeds, L)
            cells = []
            for li in range(len(layer_names)):
                v = vals[:, li][np.isfinite(vals[:, li])]
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "n/a")
            lines.append(f"| {plots.level_label(lv)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _title(cfg: Config, name: str, options: Options) -> str:
    base, _, split = name.partition("@")
    if base == "binning" and options.range == "whole_run":
        b = cfg.estimator.binning
        bins = f"width {b.bin_width:g}" if b.bin_width else f"{b.n_bins} bins"
        return (
            f"{plots.describe(cfg, None)}\nbinning {bins}, range fixed over the run "
            f"(per {'unit' if options.per_unit else 'layer'}, per {options.range_over})"
            + (f" on the {split} information set" if split else "")
            + "; re-estimated from snapshots"
        )
    return f"{plots.describe(cfg, name)}\nre-estimated from snapshots"


def _write_files(out: str, result: Result, job: Job, cfg: Config, options: Options) -> dict:
    """metrics.jsonl (atomic replace), ranges, summary, plots; returns the summary dict."""
    rows = _rows(result, job, cfg.noise.kind)
    tmp = os.path.join(out, ".metrics.jsonl.tmp")
    if os.path.exists(tmp):
        os.unlink(tmp)
    R.append_jsonl(tmp, rows)
    os.replace(tmp, os.path.join(out, "metrics.jsonl"))
    if result.ranges is not None:
        tmp_npz = os.path.join(out, ".whole_run_range.tmp.npz")
        np.savez(
            tmp_npz, lo=result.ranges[0], hi=result.ranges[1], evals=np.asarray(result.evals), layer_names=np.asarray(result.layer_names)
        )
        os.replace(tmp_npz, os.path.join(out, "whole_run_range.npz"))

    P = len(result.members)
    steps, metrics = rows_to_arrays(R.read_jsonl(os.path.join(out, "metrics.jsonl"), repair=False, null=math.nan), P, result.layer_names)
    div_member = result.diverged.any(axis=1)
    div_step = np.array([int(result.steps[np.argmax(d)]) if d.any() else -1 for d in result.diverged])
    images, tables = [], []
    names = estimator_labels(cfg)  # e, or e@train and e@test (estimator.info_split=both)
    summaries = (
        summarize(steps, metrics, result.members, result.layer_names, div_member, div_step, result.level_name)
        if "train_loss" in metrics
        else []
    )
    for name in names:
        if summaries and f"{name}/h_x_given_t" in metrics:
            tables.append(f"## {name}\n\n" + summary_table(summaries, result.layer_names, result.level_name, name, trajectories=[name]))
        d = os.path.join(out, "plots", name)
        os.makedirs(d, exist_ok=True)
        title = _title(cfg, name, options)
        try:
            images += plots.information_planes(metrics, steps, result.members, result.layer_names, d, name, result.level_name, title=title)
            images += plots.conditional_entropy_vs_step(
                metrics, steps, result.members, result.layer_names, d, name, result.level_name, title=title
            )
        except Exception as err:  # noqa: BLE001 - a plot never costs the records
            warnings.warn(f"plots ({name}): {type(err).__name__}: {err}; the records are complete without them", stacklevel=2)
        if not os.listdir(d):
            os.rmdir(d)  # an estimator without I(X;T), I(T;Y) or H(X|T) (knn) has nothing to draw
    # per-quantity tables, less the H(X|T) already in a summary table
    est_metrics = {k: v for k, v in metrics.items() if k.split("/", 1)[0] in names and not (summaries and k.endswith("/h_x_given_t"))}
    table = "\n\n".join(tables + [_final_tables(est_metrics, result.members, result.layer_names, result.level_name)])
    summary = {"members": summaries, "table": table, "plots": [os.path.abspath(p) for p in images], "timing_s": result.timing}
    R.atomic_write_json(os.path.join(out, "summary.json"), summary)
    R.atomic_write_text(os.path.join(out, "summary.md"), table + "\n")
    return summary


def _status(out: str) -> dict | None:
    path = os.path.join(out, STATUS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return R.loads_strict(f.read())
    except (OSError, ValueError):
        return {"status": "unreadable"}


def run(job_dir: str, overrides: Sequence[str] = (), *, options: Options | None = None, force: bool = False, log=print) -> dict:
    """Re-estimate a job from its snapshots into ``<job_dir>/reestimate/<tag>/``.

    Args:
      job_dir: a job directory written with ``snapshots=true``.
      overrides: ``estimator.*`` (and ``paths.*``, ``plugins``) overrides, hydra style
        (``estimator.names=[knn,kde]``); ``estimator.range=whole_run`` is the same as
        ``options=Options(range="whole_run")``.
      options: range options (:class:`Options`).
      force: recompute a directory that already holds a complete re-estimation.
      log: progress messages (``print``; ``None`` for silence).

    Returns:
      ``{"status": "computed" | "exists", "dir", "tag", "reestimate": <reestimate.json>, "summary"}``
      (``summary`` only when computed). Only ``<job_dir>/reestimate/<tag>/`` is written.
    """
    log = log or (lambda msg: None)
    job = load_job(job_dir)
    config_overrides, rng = split_overrides(overrides)
    options = options or Options()
    if rng is not None:
        if options.range != "config" and options.range != rng:
            raise ValueError(f"estimator.range={rng} conflicts with --range {options.range}")
        options = dataclasses.replace(options, range=rng)
    if options.range == "whole_run" and any(
        o.split("=", 1)[0] in ("estimator.binning.lo", "estimator.binning.hi") for o in config_overrides
    ):
        raise ValueError("estimator.binning.lo/hi and estimator.range=whole_run both set the binning range: give one")
    cfg = resolve_config(job.config_dict, config_overrides)
    tag = tag_for(job.config, cfg, options)
    out = os.path.join(job.dir, "reestimate", tag)
    built = validate(cfg)  # every value checked before a file is written
    if options.range == "whole_run" and "binning" not in cfg.estimator.names:
        raise ValueError(
            f"estimator.range=whole_run sets the range of the binning estimator; estimator.names={list(cfg.estimator.names)} has no binning"
        )
    status = _status(out)
    if status is not None and status.get("status") == "complete" and not force:
        log(
            f"[reestimate] {out} already holds this re-estimation (finished {status.get('finished_at', '?')}); "
            "pass --force to compute it again"
        )
        return {"status": "exists", "dir": out, "tag": tag, "reestimate": status}
    with JobLock(out):
        result = compute(job, cfg, options, built=built, log=log)
        record = {
            "status": "writing",
            "tag": tag,
            "source_job": os.path.abspath(job.dir),
            "source_fingerprint": job.fingerprint,
            "overrides": list(overrides),
            "options": dataclasses.asdict(options),
            "estimator": to_dict(cfg.estimator),
            "plugins": list(cfg.plugins),
            "evals": [int(x) for x in result.evals],
            "steps": [int(x) for x in result.steps],
            "members": len(result.members),
            "layer_names": result.layer_names,
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        # a crash while the files are replaced leaves status "writing": the next run recomputes
        R.atomic_write_json(os.path.join(out, STATUS_FILE), record)
        summary = _write_files(out, result, job, cfg, options)
        record.update(
            status="complete", timing_s=result.timing, finished_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        )
        R.atomic_write_json(os.path.join(out, STATUS_FILE), record)
    log(f"\n{summary['table']}")
    log(
        f"[reestimate] wrote {out} ({len(result.evals)} evaluations x {len(result.members)} members; compile "
        f"{result.timing.get('compile_s', 0) + result.timing.get('compile_range_pass_s', 0):.1f} s, "
        f"{result.timing['per_snapshot_s'] * 1e3:.1f} ms per snapshot)"
    )
    return {"status": "computed", "dir": out, "tag": tag, "reestimate": record, "summary": summary}
