"""The ``ib-jax`` command as a pip user runs it, and what a launch records.

* a non-editable install (a wheel installed into a fresh directory) runs ``ib-jax`` from outside
  the checkout, with the configs shipped in the package;
* the library imports and its noise transforms run with only the core dependencies;
* hydra's optuna sweeper searches a key and the level through the float the task returns;
* every job writes ``job.log``, ``launches.jsonl``, its versions in ``job_config.json`` /
  ``summary.json`` and the wandb config (read back from the offline run); ``quiet=true`` prints
  one line; a relaunch under other library versions is refused, changing no file; ``fresh=true``
  moves the directory aside.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the smallest job that runs every part of a launch
TINY = ["steps=6", "n_evals=2", "seeds=1", "estimator.n_info=256", "probe_size=0", "bounds.names=[]", "logger.progress=false"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ib_cache")
    e = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "WANDB_", "PYTHONPATH"))}
    e.update(JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    e["IB_TEST_CACHE"] = str(cache)
    return e


def _cache(env) -> list[str]:
    return [f"paths.cache_dir={env['IB_TEST_CACHE']}"]


def _ib_jax(args, env, cwd, exe=None, timeout=400):
    cmd = [exe] if exe else [sys.executable, "-m", "ib_jax.cli"]
    return subprocess.run([*cmd, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _tree(path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------ packaging


def test_the_package_list_covers_every_sub_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ib_jax").rglob("__init__.py")}
    assert found | {"ib_jax.conf"} == listed


@pytest.mark.slow
def test_a_non_editable_install_runs_the_command_from_any_directory(tmp_path, env):
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("ib_jax-*.whl")
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], capture_output=True, text=True
    )
    assert inst.returncode == 0, inst.stderr[-2000:]
    e = {**env, "PYTHONPATH": str(target)}  # the installed copy, ahead of the checkout's editable one
    exe = str(target / "bin" / "ib-jax")
    where = _ib_jax([], e, work, exe=exe)
    assert where.returncode == 0 and "train" in where.stdout and "aggregate" in where.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import ib_jax, ib_jax.job.compose as c; print(ib_jax.__file__); print(c.CONF_DIR)"],
        env=e,
        cwd=work,
        capture_output=True,
        text=True,
    )
    lib, conf = probe.stdout.split()
    assert lib.startswith(str(target)) and conf == str(target / "ib_jax" / "conf")
    assert (target / "ib_jax" / "conf" / "noise" / "cone.yaml").is_file()
    r = _ib_jax(["train", *TINY, *_cache(env), "logger=none", "noise=cone", "noise.snr=1"], e, work, exe=exe)
    assert r.returncode == 0, r.stderr[-3000:]
    (summary,) = glob.glob(str(work / "outputs" / "default" / "*" / "summary.json"))
    assert json.loads(Path(summary).read_text())["level_name"] == "snr"


_CORE_ONLY = r"""
import importlib.abc, sys
OPTIONAL = {"hydra", "omegaconf", "wandb", "matplotlib", "sklearn", "mnist1d", "tqdm", "submitit", "dp_accounting", "PIL", "tabulate", "optuna"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in OPTIONAL:
            raise ImportError(f"{name} is not a core dependency")
sys.meta_path.insert(0, Block())
import jax, jax.numpy as jnp, optax
import ib_jax
from ib_jax.noise import isotropic
from ib_jax.registry import ESTIMATORS
assert "binning" in ESTIMATORS
params = {"w": jnp.ones(3)}
tx = optax.chain(isotropic(1.0, jax.random.key(0)), optax.sgd(0.1))
state = tx.init(params)
updates, state = jax.jit(tx.update)({"w": jnp.array([1.0, 2.0, 3.0])}, state, params)
assert updates["w"].shape == (3,) and bool(jnp.all(jnp.isfinite(updates["w"])))
print("core ok", sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL))
"""


def test_the_library_needs_only_its_core_dependencies(env):
    r = subprocess.run(
        [sys.executable, "-c", _CORE_ONLY], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "core ok []" in r.stdout
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(re.split(r"[<>=\[]", d)[0] for d in core) == ["flax", "jax", "numpy", "optax", "scipy"]


# ------------------------------------------------------------------------ sweepers


def test_a_two_trial_optuna_sweep_searches_the_level_and_a_key(tmp_path, env):
    args = [
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.sampler.seed=0",
        "optimizer.learning_rate=interval(1e-3,1e-2)",
        "noise.snr=choice(1,10)",  # a scalar level: a one-value grid
        *TINY,
        *_cache(env),
        "logger=none",
        "quiet=true",
    ]
    r = _ib_jax(args, env, tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (results,) = glob.glob(str(tmp_path / "multirun" / "sweep-*" / "optimization_results.yaml"))
    import yaml

    best = yaml.safe_load(Path(results).read_text())
    jobs = sorted(glob.glob(str(Path(results).parent / "*" / "summary.json")))
    assert len(jobs) == 2
    losses = []
    for j in jobs:
        s = json.loads(Path(j).read_text())
        assert len(s["members"]) == 1 and s["members"][0]["snr"] in (1.0, 10.0)
        losses.append(s["members"][0]["final/test_loss"])
    assert best["best_value"] == pytest.approx(min(losses))  # the task returned the objective the sweeper minimized
    assert set(best["best_params"]) == {"optimizer.learning_rate", "noise.snr"}
    # quiet: one result line per trial on stdout
    done = [line for line in r.stdout.splitlines() if line.startswith("[ib-jax] done:")]
    assert len(done) == 2 and not [line for line in r.stdout.splitlines() if line.startswith("|")]


# ------------------------------------------------------------------------ what a launch records


@pytest.fixture(scope="module")
def job(tmp_path_factory, env):
    work = tmp_path_factory.mktemp("job")
    r = _ib_jax(["train", *TINY, *_cache(env), "noise=fixed", "noise.snr=[0,0.5]", "quiet=true"], env, work)
    assert r.returncode == 0, r.stderr[-3000:]
    (d,) = glob.glob(str(work / "outputs" / "default" / "*"))
    return Path(d), r, work


def test_quiet_prints_one_line_and_job_log_keeps_everything(job):
    d, r, _ = job
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("[ib-jax] done:") and "objective test_loss" in lines[0]
    log = (d / "job.log").read_text()
    assert "=== launch" in log and "[ib-jax] wrote" in log and re.search(r"^sigma\s+members", log, re.M) and lines[0] in log
    assert (d / "summary.md").is_file() and "sigma" in (d / "summary.md").read_text()


def test_versions_and_device_are_recorded(job):
    d, _, _ = job
    import jax

    rec = json.loads((d / "job_config.json").read_text())["provenance"]
    assert rec["versions"]["jax"] == jax.__version__ and rec["device"]["platform"] == "cpu" and rec["python"] == sys.version.split()[0]
    assert json.loads((d / "summary.json").read_text())["provenance"]["versions"] == rec["versions"]
    (launch,) = [json.loads(line) for line in (d / "launches.jsonl").read_text().splitlines()]
    assert launch["evaluations_done"] == 0 and launch["provenance"]["code"] == rec["code"]


def test_wandb_config_holds_each_members_own_level_and_only_the_parts_in_use(job):
    from ib_jax.job.tracking import read_offline_run

    d, _, _ = job
    runs = sorted(glob.glob(str(d / "wandb" / "offline-run-*")))
    assert len(runs) == 2
    seen = []
    for rd in runs:
        run = read_offline_run(rd)
        cfg = run["config"]
        assert "snr" not in cfg and "snr" not in cfg["noise"]  # fixed noise: the level is a sigma
        assert cfg["sigma"] == cfg["noise"]["sigma"] and cfg["noise"]["grid"] == [0, 0.5]
        assert (cfg["noise_kind"], cfg["model"], cfg["dataset"]) == ("fixed", "tishby_tanh", "tishby12")
        assert run["name"] == f"tishby12/tishby_tanh/fixed sigma={cfg['sigma']:g}/s0"
        assert run["job_type"] == d.name and run["group"] == "default"
        # options of parts not in use are absent: no resnet / conv groups, no knn / sp options, no cone mode
        assert set(cfg["model_config"]) >= {"widths"} and "resnet" not in cfg["model_config"] and "conv" not in cfg["model_config"]
        assert "knn" not in cfg["estimator"] and "sp" not in cfg["estimator"] and "binning" in cfg["estimator"]
        assert "mode" not in cfg["noise"] and "alpha" not in cfg["noise"]
        assert cfg["versions"]["jax"]
        seen.append(cfg["sigma"])
        media = glob.glob(os.path.join(rd, "files", "media", "images", "*"))
        assert bool(media) == (cfg["member"] == 0)  # the job's plots once per job, in the first member's run
    assert sorted(seen) == [0.0, 0.5]


def test_a_relaunch_of_a_complete_job_says_so(job, env):
    d, _, work = job
    r = _ib_jax(["train", *TINY, *_cache(env), "noise=fixed", "noise.snr=[0,0.5]", "logger=none"], env, work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "is complete" in r.stdout and "fresh=true" in r.stdout
    assert len((d / "launches.jsonl").read_text().splitlines()) == 2


def test_training_left_under_other_library_versions_is_refused_changing_no_file(tmp_path, job, env):
    from ib_jax.config import Config
    from ib_jax.job import run as RUN

    d, _, _ = job
    copy = tmp_path / "job"
    subprocess.run(["cp", "-a", str(d), str(copy)], check=True)
    rec = json.loads((copy / "job_config.json").read_text())
    rec["provenance"]["versions"]["jax"] = "0.0.1"
    (copy / "job_config.json").write_text(json.dumps(rec))
    metrics = (copy / "metrics.jsonl").read_text().splitlines()
    (copy / "metrics.jsonl").write_text("\n".join(m for m in metrics if json.loads(m)["eval"] == 0) + "\n")
    before = _tree(copy)
    args = ["train", *TINY, *_cache(env), "noise=fixed", "noise.snr=[0,0.5]", "logger=none", f"hydra.run.dir={copy}"]
    r = _ib_jax(args, env, tmp_path)
    assert r.returncode == 2 and "jax 0.0.1 -> " in r.stderr and "on_version_change=resume" in r.stderr
    assert _tree(copy) == before
    # on_version_change=resume: said and recorded (the function the launch calls)
    prov = json.loads((d / "job_config.json").read_text())["provenance"]
    c = Config(steps=6, n_evals=2, on_version_change="resume")
    note, changes = RUN._check_versions(str(copy), c, prov, recorded_evals=1)
    assert changes == [("jax", "0.0.1", prov["versions"]["jax"])] and "resuming under other library versions" in note


def test_fresh_moves_the_job_aside_and_starts_again(tmp_path, env):
    args = ["train", *TINY, *_cache(env), "noise.snr=1", "logger=none", "quiet=true"]
    assert _ib_jax(args, env, tmp_path).returncode == 0
    (d,) = glob.glob(str(tmp_path / "outputs" / "default" / "*"))
    first = (Path(d) / "metrics.jsonl").read_bytes()
    r = _ib_jax([*args, "fresh=true"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    dirs = sorted(glob.glob(str(tmp_path / "outputs" / "default" / "*")))
    assert len(dirs) == 2 and dirs[0] == d and re.search(r"~prev-\d{8}T\d{6}Z$", dirs[1])  # fresh=true does not rename the job
    assert (Path(dirs[1]) / "metrics.jsonl").read_bytes() == first  # the earlier results are kept, unchanged
    assert (Path(d) / "metrics.jsonl").read_bytes() == first  # and the same command computes the same again
    assert len((Path(d) / "launches.jsonl").read_text().splitlines()) == 1


def test_unnamed_sweeps_over_different_keys_never_share_a_directory():
    from ib_jax.job.dirnames import sweep_dir_name

    a = sweep_dir_name("default", ["noise=isotropic,cone", "model=tishby_tanh,tishby_relu"])
    per_job = sweep_dir_name("default", ["noise=cone", "model=tishby_relu"])  # hydra resolves it per job too
    assert a == per_job == "sweep-model,noise"
    assert sweep_dir_name("default", ["optimizer.batch_size=64,512"]) != a
    assert sweep_dir_name("default", ["noise=cone", "logger=none", "fresh=true"]) == "sweep-noise"  # result-neutral keys left out
    assert sweep_dir_name("noise_families", ["noise=cone"]) == "noise_families"
