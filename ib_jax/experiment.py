"""One hydra job: a population trained over the noise grid x seeds, with everything written down.

What a job writes in its output directory (the contract scripts rely on):

* ``.hydra/`` (hydra's own: config, overrides);
* ``metrics.jsonl``: one JSON object per evaluation step per member (step,
  member, seed, the noise level and kind, train/test loss and accuracy, the
  gaps, per layer and estimator ``{estimator}/{quantity}/{layer}``, realized
  noise SNR and angle, SGD's own SNR and noise scale, diverged). Non-finite
  values are written as ``NaN`` / ``Infinity`` (Python's json reads them);
* ``summary.json``: per member its settings, final values, diverged or not;
* PNG plots: the information plane per noise level, H(X|T) against step by
  level, the gap against the level;
* ``checkpoints/`` (orbax) and ``wandb/`` (offline runs, one per member).

Resuming: relaunching the same command (same output directory) restores the
last checkpoint, drops metrics rows written after it, and continues. Training
depends only on the state and the step number (batches and dropout keys are
folded from the step), so the resumed job ends with the same metrics as an
uninterrupted one, and logs into the same wandb runs (deterministic ids).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ib_jax import plots, tracking
from ib_jax import train as T
from ib_jax.config import Config, to_dict, validate

__all__ = ["run", "read_metrics", "summarize", "setup_compilation_cache"]


def _is_layer_key(key: str, layer_names) -> bool:
    """``{estimator}/{quantity}/{layer}``: a per-layer column of metrics.jsonl."""
    return key.count("/") >= 2 and key.rsplit("/", 1)[-1] in layer_names


# ----------------------------------------------------------------- metrics rows


def _rows(chunk: dict, eval_offset: int, steps: np.ndarray, members: Sequence[dict], layer_names, noise_kind: str, level_name: str, diverged) -> list[dict]:
    """Chunk metrics ``(k, P, ...)`` -> one row per evaluation per member."""
    arrays = {k: np.asarray(v) for k, v in chunk.items()}
    k = next(iter(arrays.values())).shape[0]
    rows = []
    for e in range(k):
        for m in members:
            i = m["member"]
            row = {"step": int(steps[eval_offset + e]), "eval": eval_offset + e, "member": i, "seed": m["seed"],
                   level_name: m["level"], "noise_kind": noise_kind}
            if "learning_rate" in m:
                row["learning_rate"] = m["learning_rate"]
            for name, arr in arrays.items():
                if name == "step":
                    continue
                v = arr[e, i]
                if v.ndim == 0:
                    row[name] = float(v)
                else:
                    for layer, x in zip(layer_names, v):
                        row[f"{name}/{layer}"] = float(x)
            row["diverged"] = bool(diverged[i]) and math.isnan(row.get("train_loss", math.nan))  # masked from that step
            rows.append(row)
    return rows


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_rows(path: str, rows: Sequence[dict]) -> None:
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_rows(path: str, n_evals_kept: int) -> None:
    """Keep only rows of evaluations before ``n_evals_kept`` (written before the last checkpoint)."""
    if not os.path.exists(path):
        return
    rows = [r for r in read_metrics(path) if r["eval"] < n_evals_kept]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def rows_to_arrays(rows: Sequence[dict], n_members: int, layer_names) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """metrics.jsonl rows -> (steps (E,), {name: (P, E) or (P, E, L)})."""
    evals = sorted({r["eval"] for r in rows})
    steps = np.zeros(len(evals), np.int64)
    scalar_names, layer_groups = set(), set()
    for r in rows[: n_members]:
        for k, v in r.items():
            if not isinstance(v, float):
                continue
            if _is_layer_key(k, layer_names):
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


# ------------------------------------------------------------------ checkpoints


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(states):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, states)


def _restore_like(saved, like):
    return jax.tree.map(lambda s, ref: jax.random.wrap_key_data(s) if _is_key(ref) else s, saved, like)


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

    def close(self) -> None:
        self.mngr.close()


# ------------------------------------------------------------------------ run


def _hydra_output_dir() -> tuple[str | None, str | None, str]:
    """(job output dir, group name, job name) from hydra, when running under it."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # noqa: BLE001 - not under hydra
        return None, None, "job"
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    group_dir = hc.sweep.dir if multirun else hc.run.dir
    job = f"{hc.job.name}-{hc.job.num}" if multirun else hc.job.name
    return hc.runtime.output_dir, os.path.basename(os.path.normpath(group_dir)), job


def matched_loss_index(metrics, diverged) -> tuple[float, np.ndarray]:
    """The train loss every non-diverged member reached, and for each member the first evaluation reaching it.

    Claim 1 of the brief compares layers *at matched training loss*: noisier members train
    more slowly, so final values mix the effect of noise with that of less training.
    Returns ``(loss_level, index (P,))``; index -1 for diverged members.
    """
    loss = np.asarray(metrics["train_loss"], float)
    ok = ~np.asarray(diverged, bool) & np.isfinite(loss).any(axis=1)
    if not ok.any():
        return math.nan, np.full(len(loss), -1)
    level = float(np.max(np.nanmin(np.where(np.isfinite(loss), loss, np.inf)[ok], axis=1)))
    idx = np.array([int(np.argmax(row <= level + 1e-12)) if o else -1 for row, o in zip(np.nan_to_num(loss, nan=np.inf), ok)])
    return level, idx


def summarize(steps, metrics, members, layer_names, diverged, diverged_step, level_name) -> list[dict]:
    matched_loss, matched = matched_loss_index(metrics, diverged)
    out = []
    for m in members:
        i = m["member"]
        s = {**m, level_name: m["level"], "diverged": bool(diverged[i]), "diverged_step": int(diverged_step[i]) if diverged[i] else None,
             "final_step": int(steps[-1])}
        for name, arr in metrics.items():
            if arr.ndim == 2:
                s[f"final/{name}"] = tracking.finite_or_none(arr[i, -1]) if name != "step" else None
            else:
                for layer, v in zip(layer_names, arr[i, -1]):
                    s[f"final/{name}/{layer}"] = tracking.finite_or_none(v)
        j = matched[i]
        if j >= 0:
            s["matched/train_loss_level"] = matched_loss
            s["matched/step"] = int(steps[j])
            for name, arr in metrics.items():
                if name == "step":
                    continue
                if arr.ndim == 2:
                    s[f"matched/{name}"] = tracking.finite_or_none(arr[i, j])
                else:
                    for layer, v in zip(layer_names, arr[i, j]):
                        s[f"matched/{name}/{layer}"] = tracking.finite_or_none(v)
        s.pop("level")
        out.append({k: v for k, v in s.items() if v is not None or k in ("diverged_step",)})
    return out


def summary_table(summaries, layer_names, level_name, estimator="binning") -> str:
    """Markdown: per noise level, mean +- std over seeds of the final gaps and H(X|T) per layer,
    then H(X|T) per layer at matched training loss (claim 1 of the brief)."""
    levels = sorted({s[level_name] for s in summaries}, key=lambda v: (not math.isinf(v), -v))  # members' own float32 levels

    def ms(ss, key):
        v = np.array([s.get(key, np.nan) for s in ss], float)
        return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if len(v) and np.isfinite(v).any() else "n/a"

    head = f"| {level_name} | seeds | gap loss | gap acc | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |"
    lines = ["final values", "", head, "|" + " --- |" * (4 + len(layer_names))]
    for lv in levels:
        ss = [s for s in summaries if s[level_name] == lv and not s["diverged"]]
        n_div = sum(1 for s in summaries if s[level_name] == lv and s["diverged"])
        cells = [plots.level_label(lv), f"{len(ss)}" + (f" ({n_div} diverged)" if n_div else ""), ms(ss, "final/gap_loss"), ms(ss, "final/gap_accuracy")]
        cells += [ms(ss, f"final/{estimator}/h_x_given_t/{l}") for l in layer_names]
        lines.append("| " + " | ".join(cells) + " |")
    level = next((s["matched/train_loss_level"] for s in summaries if "matched/train_loss_level" in s), None)
    if level is not None:
        lines += ["", f"at matched training loss (first evaluation with train loss <= {level:.4f}, reached by every member)", "",
                  f"| {level_name} | step | gap loss | " + " | ".join(f"H(X|T) {l}" for l in layer_names) + " |",
                  "|" + " --- |" * (3 + len(layer_names))]
        for lv in levels:
            ss = [s for s in summaries if s[level_name] == lv and "matched/step" in s]
            cells = [plots.level_label(lv), ms(ss, "matched/step"), ms(ss, "matched/gap_loss")]
            cells += [ms(ss, f"matched/{estimator}/h_x_given_t/{l}") for l in layer_names]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def run(cfg: DictConfig | Config, output_dir: str | None = None) -> dict:
    """Run one job; return its summary (and write the files listed in the module docstring)."""
    built = validate(cfg)  # every check before any compute
    c = built.config
    hydra_dir, hydra_group, job_name = _hydra_output_dir()
    out = output_dir or c.paths.output_dir or hydra_dir or os.path.join("outputs", c.name)
    os.makedirs(out, exist_ok=True)
    level_name = built.noise_kind.level_name
    metrics_path = os.path.join(out, "metrics.jsonl")
    ckpt = Checkpoints(os.path.join(out, "checkpoints")) if c.checkpoint else None
    latest = ckpt.latest() if ckpt else None
    if not c.resume and (latest is not None or os.path.exists(metrics_path)):
        raise ValueError(f"resume=false but {out} already holds results; choose another hydra.run.dir (results are never overwritten)")
    if latest is None and os.path.exists(metrics_path):
        if c.resume and c.checkpoint:
            _truncate_rows(metrics_path, 0)  # rows without a checkpoint behind them cannot be continued
        else:
            raise ValueError(f"{out} holds metrics.jsonl but no checkpoint to resume from; choose another hydra.run.dir")

    t0 = time.time()
    cache_dir = setup_compilation_cache(c)
    trainer = T.Trainer(c, built.dataset)
    members = built.population.members()
    layer_names = trainer.layer_names
    steps = T.eval_steps(c.steps, c.n_evals, c.eval_schedule)
    gaps = np.diff(np.concatenate([[0], steps]))
    k = min(c.evals_per_chunk, len(gaps))
    states = trainer.init(built.population)
    done = 0
    if latest is not None:
        states = trainer.shard(ckpt.restore(latest, states))
        done = int(latest)
        _truncate_rows(metrics_path, done)
        print(f"[ib-jax] resuming {out} from checkpoint after {done}/{len(gaps)} evaluations (step {steps[done - 1] if done else 0})")

    compile_s = trainer.compile(states, k)
    job_cfg = to_dict(c)
    wb = tracking.WandbPopulation(
        enabled=c.logger.wandb, mode=c.logger.mode, project=c.logger.project, entity=c.logger.entity,
        group=c.logger.group or hydra_group or c.name, job_name=job_name, output_dir=out,
        members=members, job_config={**job_cfg, "noise_kind": c.noise.kind},
    )
    bar = None
    if c.logger.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(steps[-1]), initial=int(steps[done - 1]) if done else 0, desc=f"{job_name} ({len(members)} members)", unit="step", dynamic_ncols=True)
    for start in range(done, len(gaps), k):
        g = gaps[start : start + k]
        valid = len(g)
        g = np.concatenate([g, np.zeros(k - valid, np.int64)])  # one compiled shape for every chunk
        states, m = trainer.run(states, g)
        m = {name: np.asarray(v)[:valid] for name, v in m.items()}
        rows = _rows(m, start, steps, members, layer_names, c.noise.kind, level_name, np.asarray(states.diverged))
        _write_rows(metrics_path, rows)
        wb.log_rows(rows)
        if ckpt:
            ckpt.save(start + valid, states)
        if bar is not None:
            bar.update(int(steps[start + valid - 1]) - bar.n)
            bar.set_postfix(loss=f"{np.nanmean(m['train_loss'][-1]):.3f}", gap=f"{np.nanmean(m['gap_loss'][-1]):+.3f}")
    if bar is not None:
        bar.close()
    if ckpt:
        ckpt.close()

    # everything below is derived from metrics.jsonl: the single record, also across resumes
    all_steps, metrics = rows_to_arrays(read_metrics(metrics_path), len(members), layer_names)
    diverged = np.asarray(states.diverged)
    summaries = summarize(all_steps, metrics, members, layer_names, diverged, np.asarray(states.diverged_step), level_name)
    names = c.estimator.names
    estimator = next((e for e in names if e.startswith("binning")), None) or next(
        (e for e in names if f"{e}/i_xt" in metrics and f"{e}/i_ty" in metrics), None) or (names[0] if names else None)
    images = []
    title = plots.describe(c, estimator)
    if estimator:
        images += plots.information_planes(metrics, all_steps, members, layer_names, out, estimator, level_name, title=title)
        images += plots.conditional_entropy_vs_step(metrics, all_steps, members, layer_names, out, estimator, level_name, title=title)
    images += plots.gap_vs_level(metrics, members, out, level_name, title=title)
    table = summary_table(summaries, layer_names, level_name, estimator or "binning")
    summary = {
        "output_dir": os.path.abspath(out),
        "wall_time_s": round(time.time() - t0, 2),
        "compile_time_s": round(compile_s, 2),
        "compilation_cache": cache_dir,
        "steps": int(all_steps[-1]),
        "members": summaries,
        "diverged_members": [s["member"] for s in summaries if s["diverged"]],
        "table": table,
        "plots": [os.path.abspath(p) for p in images],
        "wandb_run_ids": wb.ids if c.logger.wandb else [],
        "wandb_dir": os.path.abspath(os.path.join(out, "wandb")) if c.logger.wandb else None,
    }
    with open(os.path.join(out, "summary.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))
    planes = []
    for s in summaries:
        i = s["member"]
        plane = []
        if estimator and f"{estimator}/i_xt" in metrics:
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
        print(f"[ib-jax] wandb runs ({c.logger.mode}): {summary['wandb_dir']}  (upload: wandb sync {summary['wandb_dir']}/offline-run-*)")
    print(f"[ib-jax] wall time {summary['wall_time_s']:.1f} s: compile {compile_s:.1f} s"
          f" ({'persistent cache ' + cache_dir if cache_dir else 'no persistent cache'}), the rest data, training, evaluation and records")
    return summary
