"""Claims 1-5 of BRIEF.md: run (or read) the sweeps, measure every claim by every route, write one report.

Usage:
  python scripts/claims.py --quick                      # minutes on 2 CPU cores: tiny sizes, every step exercised
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
import dataclasses
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONF = os.path.join(ROOT, "conf")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything a mode sets (the report prints it)."""

    seeds: int
    steps: int
    n_evals: int
    levels: tuple[float, ...]
    n_info: int
    estimators: tuple[str, ...]  # on the tanh / ReLU networks
    arms: dict  # network variant -> noise arms run for it
    channel_n: int
    channel_samples: int
    quantize_bits: int
    layer_noise: float
    sp_n: int
    sp_replicas: int
    batch_sizes: tuple[int, ...]
    batch_steps: int
    batch_seeds: int
    probe_size: int
    n_batches: int  # sampled mini-batches per batch size (claim 3, direct route)
    margin_bits: float = 0.1  # claims 4, 5: equivalence margin for the layer-mean I(X;T)
    margin_gap: float = 0.01  # claims 4, 5: equivalence margin for the gap (nats)
    band: tuple[float, float] = (0.8, 1.2)  # claim 3: log-log slope band counted as "about linear"


MODES = {
    "quick": Sizes(
        seeds=2,
        steps=60,
        n_evals=3,
        levels=(math.inf, 0.1),
        n_info=256,
        estimators=("binning", "binning_quantile", "knn", "kde"),
        arms={"tanh": ("isotropic", "cone", "warmup", "fixed"), "quantized": ("isotropic",)},
        channel_n=64,
        channel_samples=4,
        quantize_bits=4,
        layer_noise=0.05,
        sp_n=64,
        sp_replicas=4,
        batch_sizes=(16, 256),
        batch_steps=60,
        batch_seeds=2,
        probe_size=256,
        n_batches=32,
    ),
    "full": Sizes(
        seeds=4,
        steps=1500,
        n_evals=12,
        levels=(math.inf, 1.0, 0.1),
        n_info=512,
        estimators=("binning", "binning_quantile", "knn", "kde", "channel"),
        arms={
            "tanh": ("isotropic", "cone", "warmup", "anneal", "fixed", "dp_sgd"),
            "relu": ("isotropic",),
            "quantized": ("isotropic", "cone", "warmup", "anneal"),
            "noisy": ("isotropic", "cone"),
        },
        channel_n=128,
        channel_samples=8,
        quantize_bits=4,
        layer_noise=0.05,
        sp_n=128,
        sp_replicas=8,
        batch_sizes=(16, 64, 256, 1024),
        batch_steps=1500,
        batch_seeds=4,
        probe_size=1024,
        n_batches=256,
    ),
}

ARMS = {
    "isotropic": "isotropic noise, constant SNR",
    "cone": "cone (perpendicular) noise, constant SNR",
    "warmup": "isotropic noise warm-up: SNR x100 -> x1 over the first quarter (geometric), equal total noise",
    "anneal": "isotropic noise annealing: SNR x1 -> x100 over the run (geometric), equal total noise",
    "fixed": "fixed Gaussian noise sigma in {0, 1, 3}, plain SGD with the gradient clipped to norm 1 (the bound routes of claim 2)",
    "dp_sgd": "DP-SGD, noise multiplier in {0.5, 1, 4}, clip 1, plain SGD (the bound routes of claim 2)",
}
# the arms whose noise is not an SNR: their own level grid, replacing the SNR grid of the others
ARM_LEVELS = {"fixed": "[0,1,3]", "dp_sgd": "[0.5,1,4]"}


@dataclasses.dataclass(frozen=True)
class JobSpec:
    key: str
    network: str  # tanh | relu | quantized | noisy | sgd
    arm: str
    overrides: tuple[str, ...]


def _levels(levels) -> str:
    return "[" + ",".join("inf" if math.isinf(v) else f"{v:g}" for v in levels) + "]"


def plan(sz: Sizes) -> list[JobSpec]:
    """Every job of a mode: information jobs (network x arm), then claim 3's batch-size jobs."""
    common = [
        "experiment=cone_vs_isotropic",
        "name=claims",
        "logger=none",
        "logger.progress=false",
        f"seeds={sz.seeds}",
        f"steps={sz.steps}",
        f"n_evals={sz.n_evals}",
        "probe_size=0",
        "diagnostics=[]",
        f"estimator.n_info={sz.n_info}",
    ]
    est = "[" + ",".join(sz.estimators) + "]"
    channel = (
        [f"estimator.channel.n={sz.channel_n}", f"estimator.channel.samples={sz.channel_samples}"] if "channel" in sz.estimators else []
    )
    networks = {
        "tanh": ["model=tishby_tanh", f"estimator.names={est}", *channel],
        "relu": ["model=tishby_relu", f"estimator.names={est}", "estimator.binning.lo=null", "estimator.binning.hi=null", *channel],
        "quantized": ["model=tishby_tanh", f"model.quantize_bits={sz.quantize_bits}", "estimator.names=[exact,binning]"],
        "noisy": [
            "model=tishby_tanh",
            f"model.layer_noise={sz.layer_noise:g}",
            "estimator.names=[sp,binning]",
            f"estimator.sp.n={sz.sp_n}",
            f"estimator.sp.replicas={sz.sp_replicas}",
        ],
    }
    arms = {
        "isotropic": ["noise=isotropic"],
        "cone": ["noise=cone"],
        "warmup": [
            "noise=isotropic",
            "schedule=warmup",
            "schedule.params.init_value=100",
            "schedule.params.target=1",
            f"schedule.params.warmup_steps={max(1, sz.steps // 4)}",
            "schedule.normalize=total_noise",
        ],
        "anneal": [
            "noise=isotropic",
            "schedule=warmup",
            "schedule.params.init_value=1",
            "schedule.params.target=100",
            f"schedule.params.warmup_steps={sz.steps}",
            "schedule.normalize=total_noise",
        ],
        "fixed": ["noise=fixed", "optimizer=sgd", "optimizer.learning_rate=0.3", "optimizer.clip_norm=1.0", "optimizer.batch_size=256"],
        "dp_sgd": ["noise=dp_sgd", "optimizer=sgd", "optimizer.learning_rate=0.3", "optimizer.batch_size=256"],
    }
    jobs = []
    for network, network_arms in sz.arms.items():
        for arm in network_arms:
            levels = [f"noise.snr={ARM_LEVELS.get(arm, _levels(sz.levels))}"]
            jobs.append(JobSpec(f"{network}_{arm}", network, arm, tuple(common + levels + networks[network] + arms[arm])))
    for b in sz.batch_sizes:
        jobs.append(
            JobSpec(
                f"sgd_b{b}",
                "sgd",
                f"B={b}",
                (
                    "experiment=batch_size_snr",
                    "name=claims",
                    "logger=none",
                    "logger.progress=false",
                    f"seeds={sz.batch_seeds}",
                    f"steps={sz.batch_steps}",
                    f"n_evals={max(2, sz.n_evals // 2)}",
                    f"optimizer.batch_size={b}",
                    f"probe_size={sz.probe_size}",
                    "diagnostics=[]",
                    "estimator.names=[]",
                ),
            )
        )
    return jobs


# ------------------------------------------------------------------------- jobs


def compose(overrides):
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return _compose(config_name="config", overrides=list(overrides))


def fingerprint(cfg) -> str:
    from ib_jax.config import RESULT_NEUTRAL_KEYS as IGNORED_KEYS
    from ib_jax.config import from_hydra, to_dict
    from ib_jax.job.records import config_fingerprint, drop_keys

    return config_fingerprint(drop_keys(to_dict(from_hydra(cfg)), IGNORED_KEYS))


def _finished(job_dir: str, fp: str) -> dict | None:
    """The job's summary when it finished with this very config, else None."""
    from ib_jax.job.records import loads_strict

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
    from ib_jax.job import run as experiment

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
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ib_jax import train as T
    from ib_jax.job.build import validate
    from ib_jax.job.checkpoints import Checkpoints
    from ib_jax.report import verdicts as V
    from ib_jax.train import gradient_stats as G

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


ROUTES = {
    "tanh": [
        ("binning, 30 bins, range [-1, 1]", "binning", "i_xt"),
        ("quantile binning, 30 bins", "binning_quantile", "i_xt"),
        ("kNN h(T), k=3", "knn", "h_t"),
        ("KDE upper bound, noise var 0.1", "kde", "i_xt"),
        ("weight-noise channel, SNR 1", "channel", "i_xt"),
    ],
    "relu": [
        ("binning, 30 bins, per-evaluation range", "binning", "i_xt"),
        ("quantile binning, 30 bins", "binning_quantile", "i_xt"),
        ("kNN h(T), k=3", "knn", "h_t"),
        ("KDE upper bound, noise var 0.1", "kde", "i_xt"),
        ("weight-noise channel, SNR 1", "channel", "i_xt"),
    ],
    "quantized": [("exact counting", "exact", "i_xt")],
    "noisy": [("sample propagation", "sp", "i_xt")],
}
NETWORK_NAMES = {
    "tanh": "tanh 12-10-7-5-4-3-2",
    "relu": "ReLU 12-10-7-5-4-3-2",
    "quantized": "{bits}-bit quantized tanh",
    "noisy": "noisy tanh (beta={beta:g})",
}


def _network_label(network: str, sz: Sizes) -> str:
    return NETWORK_NAMES[network].format(bits=sz.quantize_bits, beta=sz.layer_noise)


def routes_for(network: str, members, sz: Sizes):
    """The routes of a network whose estimator the job recorded."""
    from ib_jax.report.claims import Route

    keys = {k.split("/")[1] for m in members for k in m if k.startswith("final/") and k.count("/") >= 3}
    return [Route(f"{name} ({_network_label(network, sz)})", est, q, network) for name, est, q in ROUTES[network] if est in keys]


def evaluate_claims(results: dict, sz: Sizes, direct: dict | None) -> tuple[list, dict, list[str]]:
    """All rows, per-claim detail sections, and the fits/compresses section."""
    from ib_jax.report import bound_claims as BC
    from ib_jax.report import claims as K
    from ib_jax.report.summary import reference_level

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


CLAIMS = {
    1: "At matched training loss, lower gradient SNR ends with higher H(X|T) (lower I(X;T)) per layer.",
    2: "Higher H(X|T) goes with a smaller generalization gap (test loss - train loss).",
    3: "Mini-batch SGD's own gradient SNR grows about linearly with batch size (SNR_B ~ B |G|^2 / tr(Sigma)).",
    4: "Cone (perpendicular) noise and isotropic noise at the same SNR: same or different effect? (tested: they differ)",
    5: "The schedule matters: constant vs annealed vs warm-up noise at equal total noise. (tested: a schedule differs from constant)",
}


def render(results: dict, rows, sections, fits, sz: Sizes, mode: str, argv, total_s: float) -> str:
    from ib_jax.report import claims as K
    from ib_jax.report import verdicts as V

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    ran = sum(r["wall_s"] for r in results.values() if not r["reused"])
    recorded = sum(float(r["summary"].get("wall_time_s") or 0.0) for r in results.values())  # each job's own, when it ran
    out = [
        f"# Claims 1-5 of BRIEF.md, measured ({mode} mode)",
        "",
        f"Generated by `python scripts/claims.py {' '.join(shlex.quote(a) for a in argv)}`"
        + (f" at commit {commit}" if commit else "")
        + f" on {os.cpu_count()} CPU cores ({platform.machine()}); "
        f"{total_s / 60:.1f} min in all, {ran / 60:.1f} min of it running jobs ({sum(not r['reused'] for r in results.values())} run, "
        f"{sum(r['reused'] for r in results.values())} read from earlier runs); the jobs' own wall times (summary.json) add up "
        f"to {recorded / 60:.1f} min.",
        "",
    ]
    if mode == "quick":
        out += ["**Quick mode: sizes are tiny (a smoke test of the pipeline); the verdicts below are not evidence either way.**", ""]
    out += [
        "## Verdicts",
        "",
        "Each row: one claim measured by one route; effect = mean with its confidence interval over seeds (paired by seed "
        "wherever two settings are compared). Rules are stated under the table.",
        "",
    ]
    out += K.verdict_table(rows)
    out += ["", "Per claim, " + V.RULE_COMBINE + ":", ""]
    for c in range(1, 6):
        vs = [r.verdict for r in rows if r.claim == c]
        if vs:
            v, counts = V.combine(vs)
            out.append(f"* claim {c}: **{v}** ({counts}) - {CLAIMS[c]}")
    out += [
        "",
        "## Rules",
        "",
        f"* claims 1, 2 (directional): {V.RULE_DIRECTIONAL}.",
        f"* claims 4, 5 (does the choice matter?): {V.RULE_DIFFERENCE}; margins ±{sz.margin_bits:g} bits for the layer-mean "
        f"I(X;T), ±{sz.margin_gap:g} nats for the gap. Claim 5 makes one comparison per schedule, each at "
        "1 - 0.05/k confidence (Bonferroni over its k schedule comparisons).",
        f"* claim 3 (about linear): {V.RULE_BAND}; band [{sz.band[0]:g}, {sz.band[1]:g}] for the log-log slope.",
        "* Intervals: Student t over seeds (paired t for differences of members with the same seed: same initialization and "
        "data order); claim 2's slope: least squares with one intercept per seed, t with n - seeds - 1 degrees of freedom.",
        "* Layer mean: I(X;T) averaged over the layers every compared member measured (finite); per-layer values in the details.",
        "* The strongest noise level (smallest SNR) is compared with the reference level (no noise, SNR = inf).",
        "* Entropies are plug-in estimates; the Miller-Madow correction (estimator.binning.miller_madow=true) shifts each binned / exact "
        "entropy by (K - 1) / (2 n ln 2) bits with K occupied bins: with n = number of inputs and K close to n "
        "it is not negligible, but a paired difference between settings with similar K changes little.",
        "",
    ]
    for c in range(1, 6):
        rs = sections[c]
        if not rs:
            continue
        out += [f"## Claim {c}", "", CLAIMS[c], ""]
        for r in rs:
            mean, iv = V.format_effect(r.effect)
            out += [
                f"### {r.route}: {r.measure}",
                "",
                f"{mean} {iv}, n={r.effect.n}, p={r.effect.p_value:.2g}: **{r.verdict}**. Rule: {r.rule}.",
                "",
            ]
            out += list(r.detail) + [""] if r.detail else []
            out += [f"jobs: {', '.join(f'`{k}`' for k in r.jobs)}", ""]
        if c == 1 and fits:
            out += (
                [
                    "### Fitting and compression per layer, without injected noise",
                    "",
                    "From each job's I(X;T) trajectory (ib_jax.report.summary.trajectory_flags): compresses = the paired 95% t-interval "
                    "of I(X;T) at the end minus at the peak evaluation (where the mean over members is highest) lies below 0; "
                    "fits = the paired 95% t-interval of I(T;Y) at the end minus at the start lies above 0. The peak is chosen "
                    "on the same members, which favours finding compression.",
                ]
                + fits
                + [""]
            )
    out += [
        "## Caveats",
        "",
        "* Activation (Saxe et al. 2018): binning's compression depends on saturating units; the ReLU network is reported "
        "separately where it ran, with the bin range taken from the data at each evaluation.",
        "* Estimators (Goldfeld et al. 2019; Amjad & Geiger): for a deterministic network with continuous inputs I(X;T) is "
        "ill-posed; binning, kNN and the kernel bound give estimator-dependent proxies, which is why a claim counts only "
        "when every route agrees. Only the quantized network (exact counting) and the noisy network (sample "
        "propagation) have a finite, well-defined I(X;T).",
        "* Claim 1 is measured at matched training loss (the first evaluation at which each member reached the loss every "
        "member of its job reached); claims 2, 4 and 5 at the end of training (same number of steps). A noisier member "
        "may reach the matched loss late or only at the end: the detail of claim 1 lists the steps used.",
        "* Claim 3, first route: the logged SNR_B is B ||G||^2 / tr(Sigma) on a probe set, so across batch sizes its slope "
        "departs from 1 only through where training with each B went; the sampled route measures mini-batch gradients "
        "directly and so tests the formula itself.",
        "* The 12-bit data set is ib-jax's reconstruction of Shwartz-Ziv & Tishby's task, not the original labels "
        "(dataset=idnns reads the original file).",
        "* Intervals are over seeds only: estimator noise within a member (e.g. sample propagation's Monte Carlo, the "
        "channel's noise draws) is part of the seed-to-seed spread, not modelled separately.",
        "",
    ]
    absent = [f"{n} x {a}" for n in ROUTES for a in ARMS if n != "relu" and a not in sz.arms.get(n, ())]
    if absent:
        out += [
            "## Not run in this mode",
            "",
            "Network x arm combinations left out (their routes are missing from the claims they serve): "
            + ", ".join(absent)
            + ". A noisy-network job (sample propagation: long compile, pairwise work over sp_n x sp_replicas points) takes "
            "1.5-2 minutes on 2 CPU cores, so the full mode runs it for claims 1, 2 and 4 only, and the quick mode not at all. The ReLU network runs for "
            "claims 1 and 2 only (the brief's activation caveat).",
            "",
        ]
    out += [
        "## Sizes",
        "",
        f"mode `{mode}`: " + ", ".join(f"{f.name}={getattr(sz, f.name)!r}" for f in dataclasses.fields(sz)),
        "",
        "Networks: "
        + "; ".join(f"{n}: {_network_label(n, sz)}" for n in sz.arms)
        + ". Arms: "
        + "; ".join(f"{k}: {v}" for k, v in ARMS.items())
        + ".",
        "",
        "## Reproduce",
        "",
        f"Everything: `python scripts/claims.py {' '.join(shlex.quote(a) for a in argv)}` (reads finished jobs, resumes killed ones).",
        "One job (the same config; its directory name is free):",
        "",
        "| job | network | arm | wall s (when it ran) | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        s = r["spec"]
        out.append(f"| {key} | {s.network} | {s.arm} | {float(r['summary'].get('wall_time_s') or r['wall_s']):.0f} | `{r['command']}` |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole pipeline (minutes on 2 cores)")
    p.add_argument("--out", default=None, help="job directories and the report (default outputs/claims_<mode>)")
    p.add_argument("--report", default=None, help="where to write the markdown report (default <out>/claims.md)")
    p.add_argument(
        "--cache-dir", default=None, help="paths.cache_dir of every job (JAX's compilation cache lives there); does not change results"
    )
    args = p.parse_args(argv)
    extra = [f"paths.cache_dir={args.cache_dir}"] if args.cache_dir else []
    mode = "quick" if args.quick else "full"
    sz = MODES[mode]
    out = args.out or os.path.join("outputs", f"claims_{mode}")
    report = args.report or os.path.join(out, "claims.md")
    os.makedirs(out, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")

    from ib_jax.job.compose import register

    register()
    t0 = time.time()
    specs = plan(sz)
    results = run_jobs(specs, out, extra=extra)
    sgd = [s for s in specs if s.network == "sgd"]
    direct = sampled_batch_snr(sgd[-1], results[sgd[-1].key]["dir"], sz, extra) if sgd else None
    rows, sections, fits = evaluate_claims(results, sz, direct)
    text = render(results, rows, sections, fits, sz, mode, argv, time.time() - t0)
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    from ib_jax.job.records import atomic_write_text

    atomic_write_text(report, text)
    from ib_jax.report.claims import verdict_table

    print("\n".join(verdict_table(rows)))
    print(f"\n[claims] wrote {report} ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
