"""Re-estimation from snapshots: any registered estimator, any settings, without retraining.

A job run with ``snapshots=true`` saves every member's parameters at every evaluation
(``<job>/snapshots/eval_{e:05d}.npz``, :func:`ib_jax.job.snapshots.save_snapshots`). This module
rebuilds each member's evaluation state from them and recomputes information estimates with
estimator settings of your choice (``estimator.*`` overrides merged into the job's recorded
config), for every member at every saved evaluation:

* the evaluation is the job's own (:func:`ib_jax.train.make_evaluate`, the same network,
  information set, keys and divergence masking), jitted and vmapped over members, compiled
  **once** and called once per snapshot (a Python loop over saved evaluations, never over
  training steps). Re-estimating with the job's own settings therefore reproduces its
  ``metrics.jsonl`` values (tested to 1e-5 bits);
* the job's records are only read: results go to ``<job>/reestimate/<tag>/``.

The whole-run binning range (``range="whole_run"``)
---------------------------------------------------
Binning with a range taken from each evaluation's own data (``estimator.binning.lo=hi=null``) rescales
the bins whenever the activations spread or grow (saturating tanh units, unbounded ReLU units):
with ``n_bins`` bins over a wider range every bin is coarser, fewer patterns are distinct and
H(T) falls, so the estimate *manufactures* compression that the representation does not have
(Saxe et al. 2018, ICLR; Lorenzen, Igel & Nielsen 2022, ICLR, "global" bounds). A range fixed
over the whole run does not. Two passes over the snapshots:

1. for member i and layer l, ``lo_{i,l} = min_{e, x, u} T_l^{(e)}(x)_u`` and
   ``hi_{i,l} = max_{e, x, u} T_l^{(e)}(x)_u`` over every saved evaluation e, every row x of the
   information set and every real unit u (``per_unit=True``: one (lo, hi) per unit u, min/max over
   e and x only; ``range_over="population"``: min/max over all members as well, so every member
   is binned with the same edges);
2. every snapshot is binned with those fixed edges:
   ``code = clip(floor((t - lo) n_bins / (hi - lo)), 0, n_bins - 1)`` (or bins of
   ``estimator.binning.bin_width`` counted from lo), and H(T), I(X;T) = H(T), H(X|T) = log2 n - H(T),
   I(T;Y) in bits come from exact pattern counts (:func:`ib_jax.estimators.binned_information`).

A constant layer or unit (lo = hi) gets (lo, lo + 1), padded units (0, 1) and a member that
diverged at every evaluation (0, 1) (its values are NaN anyway), as
:func:`ib_jax.estimators.whole_run_range` does. The ranges are saved in ``whole_run_range.npz``.

What a re-estimation writes (``<job>/reestimate/<tag>/``; ``tag``: the settings that differ from
the job's, readable, plus a hash of the full settings, :func:`tag_for`):

* ``metrics.jsonl``: one row per saved evaluation per member: step, eval, member, seed, the noise
  level, diverged, the job's losses, accuracies and gaps (copied), and
  ``{estimator}/{quantity}/{layer}`` re-estimated;
* ``summary.json`` (per member final and matched-loss values, the tables, timings), ``summary.md``;
* ``plots/<estimator>/``: information planes and H(X|T) against step;
* ``whole_run_range.npz`` (``range="whole_run"``): ``lo``, ``hi`` of shape ``(P, L)`` or ``(P, L, d)``;
* ``reestimate.json``, written last: overrides, options, the source job's fingerprint, the
  evaluations used, status ``complete``. A complete directory is never overwritten unless
  ``force=True``; an incomplete one (a crash) is recomputed.

This module computes (:func:`compute`); :mod:`ib_jax.job.reestimate_run` writes the files (:func:`run`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from ib_jax import estimators as E
from ib_jax.config import Config, from_hydra, migrate, refuse_renamed, to_dict
from ib_jax.data.information import info_suffixes
from ib_jax.estimators.base import Estimator
from ib_jax.job import records as R
from ib_jax.job.build import validate
from ib_jax.job.snapshots import load_snapshot, snapshot_evals
from ib_jax.train import Trainer, make_evaluate

__all__ = [
    "RANGES",
    "RANGE_OVER",
    "STATUS_FILE",
    "Options",
    "Job",
    "Result",
    "load_job",
    "snapshot_evals",
    "split_overrides",
    "resolve_config",
    "tag_for",
    "finalize_ranges",
    "compute",
]

RANGES = ("config", "whole_run")  # config: the estimator's own lo/hi convention; whole_run: fixed over the run
RANGE_OVER = ("member", "population")
STATUS_FILE = "reestimate.json"
ALLOWED_PREFIXES = ("estimator.", "paths.", "plugins")  # nothing that changes what was trained
_LAYERS = "_reestimate_layers"  # private estimator: hands the padded layers to the whole-run binning

# ------------------------------------------------------------------------ settings


@dataclasses.dataclass(frozen=True)
class Options:
    """Re-estimation options that are not config keys.

    Attributes:
      range: ``"config"`` (bins as ``estimator.lo/hi`` say: fixed, or each evaluation's min-max)
        or ``"whole_run"`` (the binning estimator's range fixed over the whole run, see module doc).
      per_unit: whole-run range per unit instead of per layer.
      range_over: ``"member"`` (each member's own run) or ``"population"`` (one range per layer
        for every member: the same edges across noise levels and seeds).
    """

    range: str = "config"
    per_unit: bool = False
    range_over: str = "member"

    def __post_init__(self):
        if self.range not in RANGES:
            raise ValueError(f"--range (estimator.range) must be one of {RANGES}, got {self.range!r}")
        if self.range_over not in RANGE_OVER:
            raise ValueError(f"--range-over must be one of {RANGE_OVER}, got {self.range_over!r}")
        if self.range != "whole_run" and (self.per_unit or self.range_over != "member"):
            raise ValueError("--per-unit and --range-over apply to --range whole_run only")


class Job(NamedTuple):
    """A finished (or running) job's records, read only.

    ``config``: the recorded :class:`Config` (ignored keys at their defaults); ``rows``:
    metrics.jsonl (NaN for null); ``evals``: evaluation indices with a snapshot.
    """

    dir: str
    config: Config
    config_dict: dict
    fingerprint: str
    rows: list
    evals: list


class Result(NamedTuple):
    """What :func:`compute` measured. ``metrics[key]``: ``(P, E, L)`` for
    ``{estimator}/{quantity}``; ``steps``/``evals``: ``(E,)``; ``ranges``: ``(lo, hi)`` of the
    whole-run range (``(P, L)`` or ``(P, L, d)``) or None; ``timing`` in seconds."""

    steps: np.ndarray
    evals: list
    metrics: dict
    members: list
    layer_names: list
    level_name: str
    diverged: np.ndarray  # (P, E): the member was masked (diverged) at that evaluation
    ranges: tuple | None
    timing: dict


def load_job(job_dir: str) -> Job:
    """Read a job's ``job_config.json``, ``metrics.jsonl`` and snapshot list without changing any file.

    (``metrics.jsonl`` is read with ``repair=False``: a torn last line of a running job is
    skipped, never cut.) Raises ``ValueError`` naming what is missing.
    """
    job_dir = os.fspath(job_dir)
    path = os.path.join(job_dir, "job_config.json")
    if not os.path.exists(path):
        raise ValueError(f"JOB_DIR: {job_dir} has no job_config.json (not a job directory)")
    with open(path, encoding="utf-8") as f:
        rec = R.loads_strict(f.read())
    try:
        cfg = from_hydra(migrate(rec["config"]))
    except Exception as e:  # noqa: BLE001 - a schema change since the job ran: say so
        raise ValueError(f"{path}: the recorded config does not fit the current schema ({type(e).__name__}: {e})") from None
    rows = R.read_jsonl(os.path.join(job_dir, "metrics.jsonl"), repair=False, null=math.nan)
    evals = snapshot_evals(job_dir)
    if not evals:
        raise ValueError(f"JOB_DIR: {job_dir} has no snapshots/eval_*.npz; run the job with snapshots=true to re-estimate later")
    if not rows:
        raise ValueError(f"JOB_DIR: {job_dir} has no metrics.jsonl rows")
    return Job(job_dir, cfg, migrate(rec["config"]), str(rec.get("fingerprint", "")), rows, evals)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], str | None]:
    """Separate the reestimate-only key ``estimator.range=...`` from the config overrides.

    Returns ``(config_overrides, range or None)``. A key outside ``estimator.*``, ``paths.*`` and
    ``plugins`` raises ``ValueError`` naming it: the model, data and training come from the job.
    """
    out, rng = [], None
    for o in overrides:
        key, sep, value = str(o).partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise ValueError(f"override {o!r} must be key=value (e.g. estimator.binning.n_bins=20)")
        if key == "estimator.range":
            rng = value.strip()
            continue
        if not (key.startswith(ALLOWED_PREFIXES[:2]) or key == "plugins"):
            raise ValueError(
                f"override {key}: re-estimation changes only estimator.* (and paths.*, plugins); "
                "the model, data and training are the job's (train a new job to change them)"
            )
        out.append(f"{key}={value}")
    refuse_renamed(out)
    return out, rng


def resolve_config(job_config: dict | Config, overrides: Sequence[str]) -> Config:
    """The job's recorded config with ``overrides`` (hydra-style ``key=value``) merged in.

    Parsed with ``OmegaConf.from_dotlist`` and merged by :func:`ib_jax.config.from_hydra`, so a
    typo or a wrong type is rejected; :func:`ib_jax.job.build.validate` then checks the values.
    """
    base = to_dict(job_config) if isinstance(job_config, Config) else job_config
    cfg = OmegaConf.create(base)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return from_hydra(cfg)
    except Exception as e:  # noqa: BLE001 - OmegaConf errors name the key; keep them ValueErrors
        if isinstance(e, ValueError):
            raise
        raise ValueError(f"overrides {list(overrides)}: {type(e).__name__}: {e}") from None


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(_short(x) for x in v)
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def tag_for(job_cfg: Config, cfg: Config, options: Options, max_len: int = 64) -> str:
    """Directory name of a re-estimation: the estimator settings that differ from the job's
    (``key=value``, sorted), the range options, ``~`` and 10 hex digits of the SHA-256 of the
    full settings (estimator group, plugins, options). The same settings always give the same
    tag, however the command spelled them; ``same~<hash>`` when nothing differs."""
    old, new = to_dict(job_cfg.estimator), to_dict(cfg.estimator)
    flat_old, flat_new = _flatten(old), _flatten(new)  # grouped options by their dotted key: binning.n_bins=20
    parts = [f"{k}={_short(v)}" for k, v in sorted(flat_new.items()) if R.canonical_json(v) != R.canonical_json(flat_old.get(k))]
    if options.range != "config":
        parts.append(f"range={options.range}")
        if options.per_unit:
            parts.append("per_unit")
        if options.range_over != "member":
            parts.append(f"over={options.range_over}")
    if tuple(cfg.plugins) != tuple(job_cfg.plugins):
        parts.append("plugins=" + _short(list(cfg.plugins)))
    readable = re.sub(r"[^A-Za-z0-9._=+,-]+", "_", ",".join(parts)).strip("._,") or "same"
    readable = readable[:max_len].rstrip("._,")
    full = {"estimator": new, "plugins": list(cfg.plugins), "options": dataclasses.asdict(options)}
    return f"{readable}~{hashlib.sha256(R.canonical_json(full).encode()).hexdigest()[:10]}"


# --------------------------------------------------------------------------- compute


def _layers_estimator(ctx, cfg):
    """The padded layers themselves (``(L, n, d)``) and their unit mask, for the whole-run binning."""
    return {"stacked": ctx.stacked, "mask": ctx.mask.astype(jnp.float32)}


def _make_evaluate(step, cfg: Config, batch_size: int, names: tuple[str, ...]):
    """The job's per-member evaluation with ``estimator.names = names`` (may include the private
    layers estimator, passed to the evaluation directly: it is never registered)."""
    # the bounds are the job's own records, not re-estimated: none in this evaluation
    c = dataclasses.replace(
        cfg, estimator=dataclasses.replace(cfg.estimator, names=names), bounds=dataclasses.replace(cfg.bounds, names=())
    )
    return make_evaluate(step, c, batch_size, extra={_LAYERS: Estimator(_layers_estimator)})


def finalize_ranges(lo: np.ndarray, hi: np.ndarray, *, range_over: str = "member") -> tuple[np.ndarray, np.ndarray]:
    """Whole-run (lo, hi) from the running min/max ``(P, L)`` or ``(P, L, d)`` (NaN: a member
    diverged at every evaluation; +-inf: a padded unit). ``range_over="population"``: min/max over
    members too. Non-finite entries get (0, 1); lo == hi gets (lo, lo + 1)
    (:func:`ib_jax.estimators.whole_run_range`'s conventions). float32."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if range_over == "population":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: handled below
            lo = np.broadcast_to(np.fmin.reduce(lo, axis=0, keepdims=True), lo.shape)
            hi = np.broadcast_to(np.fmax.reduce(hi, axis=0, keepdims=True), hi.shape)
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo = np.where(ok, lo, 0.0).astype(np.float32)
    hi = np.where(ok, hi, 1.0).astype(np.float32)
    return lo, np.where(hi > lo, hi, lo + np.float32(1.0)).astype(np.float32)


def compute(job: Job, cfg: Config, options: Options = Options(), *, built=None, log=None) -> Result:
    """Re-estimate ``cfg.estimator`` for every member at every evaluation with a snapshot and
    metrics rows (no files written).

    One jitted, member-vmapped evaluation is compiled once (twice for ``range="whole_run"``: the
    min/max pass and the binning pass) and called once per snapshot. Each member's state is its
    initial state (``Step.init``: the keys of training) with the snapshot's parameters, the
    evaluation's step, and the job's divergence flag at that evaluation (a diverged member's
    values are NaN, as in training). ``built``: ``validate(cfg)`` when the caller has it.
    """
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    built = built or validate(cfg)
    c = built.config
    e = c.estimator
    bc = e.binning
    whole = options.range == "whole_run"
    names = tuple(e.names)
    if whole and "binning" not in names:
        raise ValueError(f"estimator.range=whole_run sets the range of the binning estimator; estimator.names={list(names)} has no binning")
    # the evaluation as in training, less the probe-set diagnostics (unrelated to the estimators)
    c_eval = dataclasses.replace(c, probe_size=0, diagnostics=())
    trainer = Trainer(c_eval, built.dataset)
    members = built.population.members()
    P = len(members)
    layer_names = list(trainer.layer_names)
    base = trainer.init(built.population)
    data = trainer.data
    n_classes = trainer.step.n_classes

    # evaluations with both a snapshot and a complete set of metrics rows
    by_key = {(int(r["eval"]), int(r["member"])): r for r in job.rows}
    evals = [ev for ev in job.evals if all((ev, i) in by_key for i in range(P))]
    skipped = sorted(set(job.evals) - set(evals))
    if not evals:
        raise ValueError(f"{job.dir}: no evaluation has both a snapshot and metrics rows for all {P} members")
    steps = np.array([int(by_key[(ev, 0)]["step"]) for ev in evals], np.int64)
    diverged = np.array([[bool(by_key[(ev, i)].get("diverged", False)) for ev in evals] for i in range(P)])
    like = {"params": base.params, "batch_stats": base.batch_stats}

    def load(j):
        snap = load_snapshot(job.dir, evals[j], like)
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(snap)[0], jax.tree.leaves(like)):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(
                    f"snapshot eval {evals[j]}: leaf {jax.tree_util.keystr(path)} is {a.shape} {a.dtype}, the job's "
                    f"network needs {b.shape} {b.dtype} (the job's config changed since it ran?)"
                )
        return snap, jnp.full((P,), steps[j], jnp.int32), jnp.asarray(diverged[:, j])

    registered = tuple(n for n in names if not (whole and n == "binning"))
    ev_names = registered + ((_LAYERS,) if whole else ())
    evaluate = _make_evaluate(trainer.step, c_eval, trainer.batch_size, ev_names)
    suffixes = info_suffixes(c)  # one information set, or @train and @test (estimator.info_split=both)
    keep = tuple(f"{n}{s}/" for n in registered for s in suffixes)

    def at_snapshot(b, snap, step, div, d):
        """One member's evaluation outputs: its initial state carrying the snapshot's parameters."""
        return evaluate(b._replace(params=snap["params"], batch_stats=snap["batch_stats"], step=step, diverged=div), d)

    def pass_minmax(b, snap, step, div, d):
        def one(b, snap, step, div):
            out = at_snapshot(b, snap, step, div, d)
            axes = 1 if options.per_unit else (1, 2)
            lo = hi = None
            for s in suffixes:  # with two information sets, one range over both: the same bins for each
                t, m = out[f"{_LAYERS}{s}/stacked"], out[f"{_LAYERS}{s}/mask"] > 0.5  # (L, n, d), (L, d)
                a = jnp.min(jnp.where(m[:, None, :], t, jnp.inf), axis=axes)
                z = jnp.max(jnp.where(m[:, None, :], t, -jnp.inf), axis=axes)
                lo, hi = (a, z) if lo is None else (jnp.minimum(lo, a), jnp.maximum(hi, z))
            return lo, hi

        return jax.vmap(one)(b, snap, step, div)

    def pass_estimate(b, snap, step, div, d, lo, hi):
        def one(b, snap, step, div, lo, hi):
            out = at_snapshot(b, snap, step, div, d)
            res = {k: v for k, v in out.items() if k.startswith(keep)}
            for s in suffixes if whole else ():
                t, m, y_info = out[f"{_LAYERS}{s}/stacked"], out[f"{_LAYERS}{s}/mask"] > 0.5, d[f"y_info{s}"]
                bins = jax.vmap(
                    lambda t_l, m_l, lo_l, hi_l: E.binned_information(
                        t_l,
                        y_info,
                        n_classes=n_classes,
                        n_bins=bc.n_bins,
                        lo=lo_l,
                        hi=hi_l,
                        method="uniform",
                        unit_mask=m_l,
                        bin_width=bc.bin_width,
                        miller_madow=bc.miller_madow,
                    )
                )(t, m, lo, hi)
                for q in ("i_xt", "i_ty", "h_x_given_t"):
                    res[f"binning{s}/{q}"] = jnp.where(div, jnp.nan, bins[q].astype(jnp.float32))
            return res

        return jax.vmap(one)(b, snap, step, div, lo, hi)

    timing = {}
    ranges = None
    if whole:
        fn = jax.jit(pass_minmax)
        t0 = time.perf_counter()
        args0 = load(0)
        compiled = fn.lower(base, *args0, data).compile()
        timing["compile_range_pass_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lo = hi = None
        for j in range(len(evals)):
            a, b_ = (np.asarray(x, np.float64) for x in compiled(base, *(args0 if j == 0 else load(j)), data))
            lo = a if lo is None else np.fmin(lo, a)  # fmin/fmax: a diverged (NaN) evaluation is left out
            hi = b_ if hi is None else np.fmax(hi, b_)
        timing["range_pass_s"] = time.perf_counter() - t0
        lo, hi = finalize_ranges(lo, hi, range_over=options.range_over)
        if bc.bin_width is not None:
            need = E.n_bins_for_width(lo, hi, bc.bin_width)
            if bc.n_bins < need:
                raise ValueError(
                    f"estimator.binning.n_bins={bc.n_bins} bins of width estimator.binning.bin_width={bc.bin_width} do not "
                    f"cover the whole-run range (widest {float(np.max(hi - lo)):g}): set estimator.binning.n_bins >= {need}"
                )
        ranges = (lo, hi)
        log(
            f"[reestimate] whole-run range over {len(evals)} snapshots: per {'unit' if options.per_unit else 'layer'}, "
            f"per {options.range_over}"
        )
        rlo, rhi = jnp.asarray(lo), jnp.asarray(hi)
    else:
        # no range: zero-size placeholders keep one code path (vmapped, unused)
        rlo = rhi = jnp.zeros((P, 0), jnp.float32)

    fn = jax.jit(pass_estimate)
    t0 = time.perf_counter()
    args0 = load(0)
    compiled = fn.lower(base, *args0, data, rlo, rhi).compile()
    timing["compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out: dict[str, list] = {}
    for j in range(len(evals)):
        res = compiled(base, *(args0 if j == 0 else load(j)), data, rlo, rhi)
        for k, v in res.items():
            out.setdefault(k, []).append(np.asarray(v, np.float64))
    timing["estimate_s"] = time.perf_counter() - t0
    timing["per_snapshot_s"] = timing["estimate_s"] / len(evals)
    timing["total_s"] = time.perf_counter() - t_start
    metrics = {k: np.stack(v, axis=1) for k, v in out.items()}  # (P, E, L)
    if skipped:
        log(f"[reestimate] skipped evaluations {skipped}: snapshot without metrics rows (job still running or cut back)")
    return Result(
        steps,
        evals,
        metrics,
        members,
        layer_names,
        built.noise_kind.level_name,
        diverged,
        ranges,
        {k: round(v, 4) for k, v in timing.items()},
    )


# ----------------------------------------------------------------------------- files
