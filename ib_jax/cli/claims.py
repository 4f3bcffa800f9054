"""Claims 1-5 of docs/science.md: run (or read) the sweeps, measure every claim by every route, write one report.

Usage:
  python scripts/claims.py --quick                      # minutes on 2 CPU cores: tiny sizes, every step exercised
  python scripts/claims.py --data digits                # real 8x8 images (bundled): a CNN and a noisy CNN
  python scripts/claims.py --data mnist --data-dir DIR  # MNIST from its standard files in DIR
  python scripts/claims.py --data npz --data-path F.npz # images of an .npz (MNIST's test set: scripts/mnist_t10k_npz.py)
  python scripts/claims.py                              # full sizes (about 17 minutes of jobs on 2 busy CPU cores)
  python scripts/claims.py --out outputs/claims_full --report docs/claims.md

Jobs run in this process (``ib_jax.job.run.run``) with configs composed by hydra's compose API
from the presets in ``conf/experiment`` (``cone_vs_isotropic`` for claims 1, 2, 4, 5 and
``batch_size_snr`` for claim 3) plus the overrides listed in the report. Each job has its own
directory under ``--out/jobs``: a job whose ``summary.json`` and config fingerprint match is
read, not rerun; a killed job resumes from its checkpoint when the script is run again.

Routes (ways of measuring I(X;T)), per the brief's caveat that a claim counts only when it holds
across estimators: binning (fixed range [-1, 1], 30 bins; ReLU: per-evaluation range), quantile
binning, kNN (h(T)), the kernel (KDE) upper bound, the weight-noise channel on the tanh (and
ReLU) network; exact counting on a 4-bit quantized network; sample propagation on a noisy
network. The verdict rules are in ``ib_jax/report/claims.py``; the report states them.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax import train as T
from ib_jax.cli.claims_plan import REAL_DATA, ROUTES, JobSpec, Sizes, _network_label, plan, sizes
from ib_jax.cli.claims_report import render
from ib_jax.config import RESULT_NEUTRAL_KEYS as IGNORED_KEYS
from ib_jax.config import from_hydra, to_dict
from ib_jax.job import run as experiment
from ib_jax.job.build import validate
from ib_jax.job.checkpoints import Checkpoints
from ib_jax.job.compose import compose, register
from ib_jax.job.records import atomic_write_text, config_fingerprint, drop_keys, loads_strict
from ib_jax.report import bound_claims as BC
from ib_jax.report import claims as K
from ib_jax.report import verdicts as V
from ib_jax.report.claims import Route, verdict_table
from ib_jax.report.summary import reference_level
from ib_jax.train import gradient_stats as G

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, when run from one


def fingerprint(cfg) -> str:

    return config_fingerprint(drop_keys(to_dict(from_hydra(cfg)), IGNORED_KEYS))


def _finished(job_dir: str, fp: str) -> dict | None:
    """The job's summary when it finished with this very config, else None."""

    try:
        with open(os.path.join(job_dir, "job_config.json"), encoding="utf-8") as f:
            if loads_strict(f.read())["fingerprint"] != fp:
                return None
        with open(os.path.join(job_dir, "summary.json"), encoding="utf-8") as f:
            return loads_strict(f.read())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def command(spec: JobSpec, job_dir: str) -> str:
    return "python experiments/train.py " + " ".join(shlex.quote(o) for o in spec.overrides) + f" hydra.run.dir={shlex.quote(job_dir)}"


def run_jobs(specs, out: str, log=print, extra: Sequence[str] = ()) -> dict:
    """Run (or read) every job; returns ``{key: {"spec", "dir", "summary", "wall_s", "reused", "command"}}``.
    ``extra``: overrides that do not change results (``paths.cache_dir=...``), appended to each job's."""

    results = {}
    for spec in specs:
        job_dir = os.path.join(out, "jobs", spec.key)
        cfg = compose(list(spec.overrides) + list(extra))
        fp = fingerprint(cfg)
        t0 = time.time()
        summary = _finished(job_dir, fp)
        reused = summary is not None
        if summary is None:
            log(f"[claims] running {spec.key} ...")
            summary = experiment.run(cfg, output_dir=job_dir)
        wall = time.time() - t0
        log(f"[claims] {spec.key}: {'read' if reused else 'ran'} in {wall:.1f} s")
        results[spec.key] = {
            "spec": spec,
            "dir": job_dir,
            "summary": summary,
            "wall_s": wall,
            "reused": reused,
            "command": command(spec, job_dir),
        }
    return results


# ------------------------------------------------------- claim 3, the direct route


def sampled_batch_snr(spec: JobSpec, job_dir: str, sz: Sizes, extra: Sequence[str] = ()) -> dict:
    """Empirical mini-batch SNR at fixed parameters (each seed's initialization, and the job's trained
    parameters from its newest checkpoint): per-example gradients on the probe set, then
    ``n_batches`` sampled batches per B (:func:`ib_jax.report.claims.empirical_batch_snr`)."""

    built = validate(compose(list(spec.overrides) + list(extra)))
    trainer = T.Trainer(built.config, built.dataset)
    states = trainer.init(built.population)
    x = jnp.asarray(built.dataset.x_train[: sz.probe_size])
    y = jnp.asarray(built.dataset.y_train[: sz.probe_size])

    @jax.jit
    def flat_grads(params):
        g = G.per_example_grads(trainer.step.example_loss, params, x, y)
        return jnp.concatenate([a.reshape(a.shape[0], -1) for a in jax.tree.leaves(g)], axis=1)

    out = {}
    stages = [("initialization", states)]
    ck = os.path.join(job_dir, "checkpoints")
    if os.path.isdir(ck):
        c = Checkpoints(ck)
        try:
            done, restored = c.restore_latest(states)
        finally:
            c.close()
        if restored is not None:
            stages.append((f"after {built.config.steps} SGD steps at B={built.config.optimizer.batch_size}", restored))
    members = built.population.members()
    for name, st in stages:
        bs, snrs, seeds = [], [], []
        for m in members:
            params = jax.tree.map(lambda a, i=m["member"]: a[i], st.params)
            g = np.asarray(flat_grads(params))
            s = V.empirical_batch_snr(g, sz.batch_sizes, sz.n_batches, seed=int(m["seed"]))
            bs += list(sz.batch_sizes)
            snrs += s.tolist()
            seeds += [m["seed"]] * len(sz.batch_sizes)
        out[name] = (bs, snrs, seeds)
    return out


# ------------------------------------------------------------------------ report


def routes_for(network: str, members, sz: Sizes):
    """The routes of a network whose estimator the job recorded."""

    keys = {k.split("/")[1] for m in members for k in m if k.startswith("final/") and k.count("/") >= 3}
    return [Route(f"{name} ({_network_label(network, sz)})", est, q, network) for name, est, q in ROUTES[network] if est in keys]


def evaluate_claims(results: dict, sz: Sizes, direct: dict | None) -> tuple[list, dict, list[str]]:
    """All rows, per-claim detail sections, and the fits/compresses section."""

    rows, sections = [], {c: [] for c in range(1, 6)}
    fits = []

    def members(key):
        return results[key]["summary"]["members"] if key in results else None

    def add(row, job_keys):
        rows.append(row._replace(jobs=tuple(job_keys)))
        sections[row.claim].append(row._replace(jobs=tuple(job_keys)))

    for network in sz.arms:
        iso = members(f"{network}_isotropic")
        if iso is None:
            continue
        level_name = results[f"{network}_isotropic"]["summary"].get("level_name", "snr")
        for route in routes_for(network, iso, sz):
            add(K.claim1(iso, level_name, route), [f"{network}_isotropic"])
        for route in routes_for(network, iso, sz):
            add(K.claim2(iso, level_name, route), [f"{network}_isotropic"])
        add(K.gap_difference(iso, level_name, _network_label(network, sz)), [f"{network}_isotropic"])
        # claim 2 by the bound routes: every job of this network that recorded a bound
        for arm in sz.arms[network]:
            job = f"{network}_{arm}"
            if job in results:
                arm_level = results[job]["summary"].get("level_name", "snr")
                for row in BC.bound_rows(members(job), arm_level, f"{_network_label(network, sz)}, {arm}"):
                    add(row, [job])
        ref = reference_level([float(m[level_name]) for m in iso], level_name)
        for route in routes_for(network, iso, sz):
            ty = (
                route.estimator
                if any(k.startswith(f"final/{route.estimator}/i_ty/") for k in iso[0])
                else ("binning" if any(k.startswith("final/binning/i_ty/") for k in iso[0]) else None)
            )
            lines = K.fits_and_compresses(iso, level_name, ref, route.estimator, ty) if route.quantity == "i_xt" else []
            if lines:
                fits += [
                    "",
                    f"**{route.name}**, {level_name}={'inf' if math.isinf(ref) else f'{ref:g}'} (no injected noise), "
                    f"{len([m for m in iso if float(m[level_name]) == ref and not m.get('diverged')])} members",
                    "",
                ] + lines
        cone = members(f"{network}_cone")
        if cone is not None:
            for route in [None] + routes_for(network, iso, sz):
                add(
                    K.compare_jobs(
                        4,
                        cone,
                        iso,
                        level_name,
                        route,
                        "cone - isotropic",
                        margin=sz.margin_gap if route is None else sz.margin_bits,
                        network=_network_label(network, sz),
                    ),
                    [f"{network}_cone", f"{network}_isotropic"],
                )
        schedule_arms = [a for a in ("warmup", "anneal") if members(f"{network}_{a}") is not None]
        conf5 = 1 - 0.05 / max(1, len(schedule_arms))  # Bonferroni over the schedule comparisons
        for arm in schedule_arms:
            other = members(f"{network}_{arm}")
            for route in [None] + routes_for(network, iso, sz):
                add(
                    K.compare_jobs(
                        5,
                        other,
                        iso,
                        level_name,
                        route,
                        f"{arm} - constant",
                        conf=conf5,
                        margin=sz.margin_gap if route is None else sz.margin_bits,
                        network=_network_label(network, sz),
                    ),
                    [f"{network}_{arm}", f"{network}_isotropic"],
                )

    sgd = [k for k in results if results[k]["spec"].network == "sgd"]
    if sgd:
        bs, snrs, seeds = [], [], []
        for k in sgd:
            b = int(results[k]["spec"].arm.split("=")[1])
            for m in results[k]["summary"]["members"]:
                if not m.get("diverged"):
                    bs.append(b)
                    snrs.append(m.get("final/sgd_snr", math.nan) if m.get("final/sgd_snr") is not None else math.nan)
                    seeds.append(m["seed"])
        add(
            K.batch_snr_slope(bs, snrs, seeds, "SGD's logged SNR_B = B ||G||^2 / tr(Sigma), end of training, one job per B", band=sz.band),
            sgd,
        )
    for stage, (bs, snrs, seeds) in (direct or {}).items():
        add(
            K.batch_snr_slope(bs, snrs, seeds, f"sampled mini-batches, ||G||^2 / mean ||g_B - G||^2, {stage}", band=sz.band),
            [sgd[-1]] if sgd else [],
        )
    return rows, sections, fits


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole pipeline (minutes on 2 cores)")
    p.add_argument("--out", default=None, help="job directories and the report (default outputs/claims_<mode>)")
    p.add_argument("--report", default=None, help="where to write the markdown report (default <out>/claims.md)")
    p.add_argument(
        "--cache-dir", default=None, help="paths.cache_dir of every job (JAX's compilation cache lives there); does not change results"
    )
    p.add_argument(
        "--data",
        default="tishby12",
        choices=("tishby12", *REAL_DATA),
        help="tishby12 (the 12-bit task: tanh, ReLU, quantized and noisy MLPs) or real images with a CNN and a noisy CNN: "
        "digits (bundled), mnist, fashion_mnist (standard files in --data-dir)",
    )
    p.add_argument("--data-dir", default=None, help="paths.data_dir of every job (where mnist / fashion_mnist files are)")
    p.add_argument("--data-path", default=None, help="the .npz of --data npz (images (n, H, W, C); scripts/mnist_t10k_npz.py)")
    args = p.parse_args(argv)
    extra = [f"paths.cache_dir={args.cache_dir}"] if args.cache_dir else []
    extra += [f"paths.data_dir={args.data_dir}"] if args.data_dir else []
    mode = "quick" if args.quick else "full"
    try:
        sz = sizes(mode, args.data, args.data_path)
    except ValueError as e:
        p.error(str(e))
    out = args.out or os.path.join("outputs", f"claims_{mode}" + ("" if args.data == "tishby12" else f"_{args.data}"))
    report = args.report or os.path.join(out, "claims.md")
    os.makedirs(out, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")

    register()
    t0 = time.time()
    specs = plan(sz)
    results = run_jobs(specs, out, extra=extra)
    sgd = [s for s in specs if s.network == "sgd"]
    direct = sampled_batch_snr(sgd[-1], results[sgd[-1].key]["dir"], sz, extra) if sgd else None
    rows, sections, fits = evaluate_claims(results, sz, direct)
    text = render(results, rows, sections, fits, sz, mode, argv, time.time() - t0)
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)

    atomic_write_text(report, text)

    print("\n".join(verdict_table(rows)))
    print(f"\n[claims] wrote {report} ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
