"""The experiment layer: hydra configs, a real multirun, kill-and-resume, aggregation, wandb.

Jobs run in subprocesses, as users run them. They share a persistent XLA
compilation cache (JAX_COMPILATION_CACHE_DIR), so later jobs of the same
shape skip most compile time.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ib_jax import config as C
from ib_jax.job import dirnames as DN
from ib_jax.job.build import validate
from ib_jax.job.records import loads_strict
from ib_jax.job.rows import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(ROOT, "conf")
PRESETS = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONF, "experiment", "*.yaml")))
TINY = ["debug=fast", "model.widths=[6,4]", "estimator.n_info=256", "probe_size=16"]

from ib_jax.job.compose import register

register()


def env(tmp_path):
    return dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        JAX_PLATFORMS="cpu",
        IB_JAX_CACHE=str(tmp_path / "cache"),
        JAX_COMPILATION_CACHE_DIR=os.path.join(ROOT, ".cache", "jax"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
    )


def launch(args, tmp_path, **kw):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        cwd=tmp_path,
        timeout=900,
        **kw,
    )


def composed(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# --------------------------------------------------------------- configs


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(preset, tmp_path, monkeypatch):
    assert {"batch_size_snr", "cone_vs_isotropic", "schedules", "snr_sweep", "tishby_infoplane"} <= set(PRESETS)
    monkeypatch.setenv("IB_JAX_CACHE", str(tmp_path))
    cfg = composed(f"experiment={preset}", "dataset.num_samples=300", "dataset.download=false")
    text = open(os.path.join(CONF, "experiment", f"{preset}.yaml")).read()
    assert "Claim" in text and "docs/science.md" in text  # each preset says which claim it tests
    # data sets generated or bundled locally are built too; image sets would need their files
    # (never downloaded in a test): every value but the data-dependent ones is still checked
    local = cfg.dataset.name in ("tishby12", "mnist1d", "digits")
    built = validate(cfg, load_data=local)
    assert len(built.levels) == len(cfg.noise.snr)
    if local:
        assert built.population.size == cfg.seeds * len(cfg.noise.snr)


def test_default_config_is_the_readme_study():
    cfg = composed()
    assert cfg.dataset.name == "tishby12" and cfg.noise.kind == "isotropic"
    assert list(cfg.model.widths) == [10, 7, 5, 4, 3] and cfg.model.activation == "tanh"
    assert cfg.logger.mode == os.environ.get("WANDB_MODE", "offline")


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["noise.snr=[-1.0]"], "noise.snr"),
        (["noise.snr=[nan]"], "noise.snr"),
        (["noise.kind=pink"], "noise.kind"),
        (["estimator.names=[knn]", "estimator.knn.k=100000"], r"estimator\.knn\.k"),
        (["optimizer.name=lbfgs"], "optimizer.name"),
        (["optimizer.batch_size=100000"], "optimizer.batch_size"),
        (["model.activation=swish"], "model.activation"),
        (["dataset.name=cifar"], "dataset.name"),
        (["schedule=warmup", "schedule.params.warmup_steps=0"], "warmup_steps"),
        (["estimator.binning.n_bins=0"], r"estimator\.binning\.n_bins"),
    ],
)
def test_bad_values_fail_naming_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        validate(composed(*overrides))


def test_typos_and_wrong_types_are_rejected():
    with pytest.raises(Exception, match="snrr"):
        composed("noise.snrr=[1.0]")
    with pytest.raises(Exception, match="steps"):
        composed("steps=many")


def test_every_estimator_group_validates():
    for group in ("binning", "binning_relu", "all"):
        built = validate(composed(f"estimator={group}"))
    assert set(built.config.estimator.names) == {"binning", "binning_quantile", "knn", "kde", "channel"}
    with pytest.raises(ValueError, match=r"estimator\.channel\.samples"):
        validate(composed("estimator=all", "estimator.channel.samples=1"))


def test_no_noise_collapses_the_level_grid():
    assert validate(composed("noise=none", "noise.snr=[inf,1.0]", "seeds=2")).population.size == 2


def test_inf_on_the_command_line():
    cfg = composed("noise.snr=[inf,10,1,0.1]", "seeds=8")
    assert validate(cfg).population.size == 32
    assert np.isinf(validate(cfg).levels[0])


def test_bad_override_fails_before_compute_in_the_entry_point(tmp_path):
    t0 = time.time()
    out = launch(["noise.snr=[0.0]", "logger.wandb=false"], tmp_path)
    assert out.returncode != 0
    assert "noise.snr" in out.stderr
    assert not glob.glob(str(tmp_path / "outputs" / "**" / "metrics.jsonl"), recursive=True)
    assert time.time() - t0 < 60  # no compile happened


# ---------------------------------------------------------- multirun, e2e


@pytest.fixture(scope="module")
def multirun(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multirun")
    sweep = tmp / "sweep"
    out = launch(["-m", *TINY, "logger.wandb=true", "logger.progress=true", "noise=isotropic,cone", f"hydra.sweep.dir={sweep}"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    return sweep, out


def test_multirun_writes_the_contract(multirun):
    sweep, out = multirun
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    kinds = []
    for job in jobs:
        assert (job / ".hydra" / "config.yaml").exists()
        rows = read_metrics(str(job / "metrics.jsonl"))  # strict JSON: inf stored as "inf", NaN as null
        summary = loads_strict(open(job / "summary.json").read())
        n_members = len(summary["members"])
        assert n_members == 2  # debug=fast: 1 seed x [inf, 1]
        evals = sorted({r["eval"] for r in rows})
        assert len(rows) == len(evals) * n_members
        row = rows[-1]
        for key in (
            "step",
            "member",
            "seed",
            "snr",
            "train_loss",
            "test_loss",
            "train_accuracy",
            "test_accuracy",
            "gap_loss",
            "gap_accuracy",
            "binning/i_xt/h1",
            "binning/i_ty/output",
            "binning/h_x_given_t/h2",
            "noise_realized_snr",
            "noise_angle",
            "sgd_snr",
            "diverged",
        ):
            assert key in row, key
        assert {m["snr"] for m in summary["members"]} == {float("inf"), 1.0}
        assert summary["members"][0]["final/train_loss"] > 0
        pngs = [p for p in os.listdir(job) if p.endswith(".png")]
        assert "gap_vs_snr.png" in pngs and "h_x_given_t_vs_step.png" in pngs and "infoplane_snr_inf.png" in pngs
        kinds.append(OmegaConf.load(job / ".hydra" / "config.yaml").noise.kind)
        # the job directory is the sanitized override string (no job-number prefix, no '['): the job's
        # overrides sorted as hydra's override_dirname sorts them, less the result-neutral keys
        # (C.RESULT_NEUTRAL_KEYS: the one list, also the one the config check ignores)
        task = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
        override_dirname = ",".join(sorted(o for o in task if not C.is_result_neutral(o.split("=", 1)[0])))
        assert any(C.is_result_neutral(o.split("=", 1)[0]) for o in task)  # the fixture's logger/paths overrides are left out
        assert job.name == DN.dir_name(override_dirname) and "[" not in job.name and len(job.name) <= DN.MAX_DIR_NAME
    assert sorted(kinds) == ["cone", "isotropic"]


def test_multirun_wandb_runs_are_separate(multirun):
    sweep, _ = multirun
    seen = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        runs = sorted(str(job / "wandb" / p) for p in os.listdir(job / "wandb") if p.startswith("offline-run-"))
        assert len(runs) == 2  # one per member
        kind = OmegaConf.load(job / ".hydra" / "config.yaml").noise.kind
        for r in runs:
            run_id = r.rsplit("-", 2)[-2] + "-" + r.rsplit("-", 1)[-1]
            assert run_id not in seen  # no job logged into another job's run
            seen[run_id] = kind
            cfg_file = os.path.join(r, "files", "config.yaml")
            if os.path.exists(cfg_file):  # written at finish in offline mode
                cfg = OmegaConf.load(cfg_file)
                assert cfg.noise_kind.value == kind
    assert len(seen) == 4


def test_aggregate_the_multirun(multirun, tmp_path):
    sweep, _ = multirun
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "aggregate.py"), str(sweep), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "aggregate.csv")))
    assert len(rows) == 4  # 2 settings x 2 levels
    assert {r["setting"].split(",")[-1] for r in rows} == {"noise=isotropic", "noise=cone"}
    assert all(r["h_x_given_t_h1_mean"] for r in rows)
    assert (tmp_path / "aggregate.md").exists() and (tmp_path / "aggregate.png").exists()
    assert "gap loss" in out.stdout


# ---------------------------------------------------------- kill and resume


def test_killed_job_resumes_to_the_uninterrupted_result(tmp_path):
    args = [*TINY, "steps=400", "n_evals=12", "evals_per_chunk=1", "logger.wandb=true", "logger.progress=false", "seeds=2"]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args, f"hydra.run.dir={killed_dir}"],
        env=env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    ckpt = killed_dir / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if len(done) >= 1 and max(int(p.name) for p in done) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "summary.json").exists()
    ids_before = sorted(os.path.basename(p).rsplit("-", 2)[-2:][1] for p in glob.glob(str(killed_dir / "wandb" / "offline-run-*")))
    resumed = launch([*args, f"hydra.run.dir={killed_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming" in resumed.stdout
    clean_dir = tmp_path / "clean"
    clean = launch([*args, f"hydra.run.dir={clean_dir}"], tmp_path)
    assert clean.returncode == 0, clean.stderr[-4000:]
    a = [json.loads(x) for x in open(killed_dir / "metrics.jsonl")]
    b = [json.loads(x) for x in open(clean_dir / "metrics.jsonl")]
    assert len(a) == len(b) == 12 * 4 or len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and np.isnan(va):
                assert np.isnan(vb), k
            else:
                assert va == vb, (k, va, vb)
    # the same wandb runs continued: ids are deterministic in the job directory
    summary = json.load(open(killed_dir / "summary.json"))
    assert set(ids_before) <= {i.split("-")[-1] for i in summary["wandb_run_ids"]}
    runs = glob.glob(str(killed_dir / "wandb" / "offline-run-*"))
    assert {os.path.basename(r).split("-", 3)[-1] for r in runs} == set(summary["wandb_run_ids"])


# ------------------------------------------------------- wandb failure, safety


def test_wandb_failure_warns_and_training_goes_on(tmp_path, monkeypatch):
    import wandb

    from ib_jax.job import run as experiment

    def broken(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(wandb, "init", broken)
    cfg = composed(*TINY, "logger.wandb=true", "logger.progress=false", f"paths.output_dir={tmp_path / 'job'}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = experiment.run(cfg)
    assert any("wandb failed" in str(w.message) for w in caught)
    assert (tmp_path / "job" / "metrics.jsonl").exists() and (tmp_path / "job" / "summary.json").exists()
    assert summary["members"][0]["final/test_accuracy"] > 0
    # results already written are never overwritten
    cfg2 = composed(*TINY, "logger.wandb=false", "resume=false", f"paths.output_dir={tmp_path / 'job'}")
    before = open(tmp_path / "job" / "metrics.jsonl").read()
    with pytest.raises(ValueError, match="already holds results"):
        experiment.run(cfg2)
    assert open(tmp_path / "job" / "metrics.jsonl").read() == before


def test_matched_loss_comparison_point():
    from ib_jax.report.summary import matched_loss_index

    loss = np.array([[1.0, 0.5, 0.2], [1.0, 0.8, 0.6], [1.0, np.nan, np.nan]])
    level, idx = matched_loss_index({"train_loss": loss}, diverged=[False, False, True])
    assert level == 0.6  # the loss every healthy member reached
    assert idx.tolist() == [1, 2, -1]  # first evaluation at or below it; diverged: none
