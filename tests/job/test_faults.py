"""Fault injection on real jobs: the guarantees of ib_jax/job/run.py's docstring, one fault each.

Every scenario runs ``experiments/train.py`` in a subprocess, as a user or a scheduler would, and
injects one fault: a relaunch with a changed config, a second launch while the first runs, SIGKILL,
a torn metrics line, a full disk, a corrupted newest checkpoint, SIGTERM / SIGUSR1, a sweep
relaunched in another order, a duplicated job directory, diverging members, bad data. Kill points
are chosen by polling the job's files (evaluations in metrics.jsonl, checkpoint directories), never
by sleeping. A relaunched job must end with exactly the metrics of the uninterrupted reference job
(training is a function of state and step, so equality is exact, NaN written as null included).

All jobs share one module-scoped JAX compilation cache (``paths.compile_cache_dir``): only the
first launch of each program shape compiles. The checks that need no job (bad values, bad data,
the aggregate's duplicate detection) run in-process.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from ib_jax import config as C
from ib_jax.job import tracking
from ib_jax.job.build import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
AGGREGATE = os.path.join(ROOT, "scripts", "aggregate.py")

# 2 members (snr inf and 0.1, one seed), 9 evaluations at steps 0,1,2,3,5,8,14,24,40, one
# evaluation per chunk: 9 chunks, so a kill point polled from the files falls mid-run
BASE = ["debug=fast", "diagnostics=[]", "probe_size=0", "steps=40", "n_evals=8", "evals_per_chunk=1", "logger=none", "noise.snr=[inf,0.1]"]
N_EVALS = 9
slow = pytest.mark.slow  # a job in a subprocess: 5 to 60 s each on 2 cores (compile included)
N_MEMBERS = 2
WANDB = ["logger=wandb", "logger.wandb=true", "logger.mode=offline", "logger.progress=false", "logger.log_images=false"]


# ------------------------------------------------------------------ helpers


def _refuse_constant(name):
    raise AssertionError(f"non-standard JSON constant {name}")


def strict_loads(text):
    """The stdlib parser refusing NaN/Infinity literals: what any RFC 8259 parser accepts."""
    return json.loads(text, parse_constant=_refuse_constant)


def metrics_rows(job_dir) -> list[dict]:
    """Every line of metrics.jsonl, parsed strictly; the file must end with a complete line."""
    with open(os.path.join(job_dir, "metrics.jsonl"), encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n"), f"{job_dir}/metrics.jsonl ends with a torn line: {text[-80:]!r}"
    return [strict_loads(line) for line in text.splitlines()]


def evals_written(job_dir) -> int:
    """Distinct evaluations among the complete lines of metrics.jsonl (0 without the file)."""
    try:
        with open(os.path.join(job_dir, "metrics.jsonl"), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    evals = set()
    for line in data.split(b"\n")[:-1]:  # the piece after the last newline may be a half-written line
        with contextlib.suppress(ValueError):
            evals.add(json.loads(line)["eval"])
    return len(evals)


def checkpoint_steps(job_dir) -> list[int]:
    d = os.path.join(job_dir, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def by_eval_member(rows) -> dict:
    keys = [(r["eval"], r["member"]) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicated (eval, member) rows: {sorted(k for k in keys if keys.count(k) > 1)}"
    return dict(zip(keys, rows))


def assert_same_metrics(job_dir, reference_rows):
    """Every (eval, member) row of the job equals the reference's, key for key, value for value."""
    got, want = by_eval_member(metrics_rows(job_dir)), by_eval_member(reference_rows)
    assert sorted(got) == sorted(want), f"evaluations differ: {sorted(set(got) ^ set(want))}"
    for key, row in want.items():
        assert got[key].keys() == row.keys(), key
        diff = {k: (got[key][k], v) for k, v in row.items() if got[key][k] != v}
        assert not diff, f"(eval, member) {key}: {diff}"


def tree_digest(path) -> dict[str, str]:
    """relative path -> sha256 of every file (directories as 'dir'): a job directory's exact state."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), path) + "/"] = "dir"
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


_STARTED: list[subprocess.Popen] = []


class Job:
    """One ``experiments/train.py`` launch in a subprocess (its own session, output to files)."""

    def __init__(self, args, env, workdir, name):
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, TRAIN, *args], env=env, cwd=workdir, stdout=out, stderr=err, start_new_session=True
            )
        _STARTED.append(self.proc)
        self.pid = self.proc.pid

    @property
    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    @property
    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def wait(self, timeout=600):
        return self.proc.wait(timeout=timeout)

    def wait_until(self, cond, what, timeout=600):
        """Poll ``cond()`` every 10 ms; fail if the job exits first (the fault would come too late)."""
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc.poll() is not None:
                pytest.fail(f"the job exited (rc {self.proc.returncode}) before {what}:\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                self.killpg(signal.SIGKILL)
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.01)

    def killpg(self, sig):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)


def run_job(args, env, workdir, name, timeout=600):
    job = Job(args, env, workdir, name)
    job.wait(timeout)
    return job


def ok(job):
    assert job.proc.returncode == 0, f"rc {job.proc.returncode}\n{job.stderr[-4000:]}"
    return job


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def _reap():
    """A failed test must not leave a stopped or running job behind: kill what this module started."""
    yield
    for proc in _STARTED:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ib_cache")
    e = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "WANDB_"))}
    e.update(JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true", IB_JAX_CACHE=str(cache), PYTHONUNBUFFERED="1")
    return e


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """BASE plus one compilation cache shared by every launch of this module."""
    return [*BASE, f"paths.compile_cache_dir={tmp_path_factory.mktemp('jax_compile')}"]


@pytest.fixture(scope="module")
def reference(base, env, tmp_path_factory):
    """The uninterrupted job: every faulty job must end with exactly its metrics."""
    work = tmp_path_factory.mktemp("reference")
    job_dir = str(work / "job")
    ok(run_job([*base, f"hydra.run.dir={job_dir}"], env, work, "reference"))
    return {"dir": job_dir, "rows": metrics_rows(job_dir)}


@pytest.fixture(scope="module")
def killed(base, env, tmp_path_factory, reference):
    """A job SIGKILLed mid-run, after a second launch was refused while it held the lock.

    The first launch is stopped (SIGSTOP: a slow job) once it has two checkpoints and three
    evaluations; a second launch of the same command runs against it; then the first is
    SIGKILLed. ``pristine`` is a copy of the killed directory for the scenarios that each
    damage their own copy.
    """
    work = tmp_path_factory.mktemp("killed")
    job_dir = str(work / "job")
    args = [*base, f"hydra.run.dir={job_dir}"]
    first = Job(args, env, work, "first")
    first.wait_until(lambda: len(checkpoint_steps(job_dir)) >= 2 and evals_written(job_dir) >= 3, "two checkpoints and three evaluations")
    first.killpg(signal.SIGSTOP)
    before = tree_digest(job_dir)
    t0 = time.monotonic()
    second = run_job(args, env, work, "second", timeout=300)
    second_s = time.monotonic() - t0
    after = tree_digest(job_dir)
    still_running = first.proc.poll() is None
    first.killpg(signal.SIGKILL)
    first.wait()
    pristine = str(work / "pristine")
    shutil.copytree(job_dir, pristine, symlinks=True)
    return {
        "dir": job_dir,
        "pristine": pristine,
        "first": first,
        "second": second,
        "second_s": second_s,
        "before": before,
        "after": after,
        "first_was_running": still_running,
        "args": args,
    }


def copy_killed(killed, tmp_path) -> str:
    job_dir = str(tmp_path / "job")
    shutil.copytree(killed["pristine"], job_dir, symlinks=True)
    return job_dir


# ---------------------------------------------------- 1. config fixed at first launch


@slow
@pytest.mark.parametrize(
    "change, key, old, new",
    [
        ("optimizer.batch_size=256", "optimizer.batch_size", "512", "256"),
        ("noise.snr=[inf,1]", "noise.snr", '["inf", 0.1]', '["inf", 1.0]'),
    ],
)
def test_relaunch_with_changed_config_is_refused_and_changes_no_file(killed, base, env, tmp_path, change, key, old, new):
    job_dir = copy_killed(killed, tmp_path)
    with open(os.path.join(job_dir, "job.lock")) as f:
        assert f.read().strip(), "the killed job's lock file should still name its (dead) holder"
    before = tree_digest(job_dir)
    assert ".hydra/config.yaml" in before and ".hydra/overrides.yaml" in before and "job.lock" in before
    job = run_job([*base, f"hydra.run.dir={job_dir}", change], env, tmp_path, "changed")
    assert job.proc.returncode == 2, job.stderr[-3000:]
    err = job.stderr
    assert "[ib-jax] error:" in err and "fixed once it has started" in err
    line = next(ln for ln in err.splitlines() if ln.strip().startswith(key + ":"))
    assert line.strip() == f"{key}: {old} -> {new}", line
    # before any compute: no compile, no resume, no training output
    assert "resuming" not in job.stdout and "wall time" not in job.stdout
    assert tree_digest(job_dir) == before  # every file byte-identical, .hydra/ and job.lock included


# ---------------------------------------------------- 2. one job per directory


@slow
def test_second_launch_is_refused_while_the_first_runs_then_a_relaunch_finishes(killed, reference, base, env, tmp_path):
    assert killed["first_was_running"], "the first launch ended before the second one was tried"
    second = killed["second"]
    assert second.proc.returncode == 2, second.stderr[-3000:]
    assert f"pid {killed['first'].pid}" in second.stderr and "in use by another job" in second.stderr
    assert killed["second_s"] < 120  # at once: no compile, no data beyond the config check
    assert killed["after"] == killed["before"]  # the refused launch touched nothing
    assert killed["first"].proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed["dir"], "summary.json"))
    # the lock died with its holder: a relaunch in the same directory takes it and finishes
    job = ok(run_job(killed["args"], env, tmp_path, "relaunch"))
    assert "resuming" in job.stdout
    assert_same_metrics(killed["dir"], reference["rows"])  # also: no duplicated (eval, member) row
    with open(os.path.join(killed["dir"], "job.lock")) as f:
        assert f.read() == ""  # released


# ---------------------------------------------------- 3. torn writes


@slow
def test_torn_metrics_line_is_repaired_on_relaunch(killed, reference, base, env, tmp_path):
    job_dir = copy_killed(killed, tmp_path)
    # the state of a kill in the middle of the append that follows checkpoint n: rows 0..n-1
    # complete, then half a line (no row to drop, so only the repair can remove it)
    n = checkpoint_steps(job_dir)[-1]
    path = os.path.join(job_dir, "metrics.jsonl")
    with open(path, "rb") as f:
        lines = [ln for ln in f.read().split(b"\n")[:-1] if json.loads(ln)["eval"] < n]
    nxt = json.dumps(next(r for r in reference["rows"] if r["eval"] == n)).encode()
    with open(path, "wb") as f:
        f.write(b"".join(ln + b"\n" for ln in lines) + nxt[: len(nxt) // 2])
    job = ok(run_job([*base, f"hydra.run.dir={job_dir}"], env, tmp_path, "relaunch"))
    assert "torn last line" in job.stderr
    assert_same_metrics(job_dir, reference["rows"])


FAIL_APPEND = textwrap.dedent('''
    """Run experiments/train.py with the Nth append to metrics.jsonl failing like a full disk:
    the first write() stores half the bytes (a short write), the next raises ENOSPC."""
    import errno, os, runpy, sys
    N = int(os.environ["FAIL_METRICS_APPEND"])
    real_write = os.write
    state = {"calls": 0}

    def is_metrics(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith("/metrics.jsonl")
        except OSError:
            return False

    def write(fd, data):
        if is_metrics(fd):
            state["calls"] += 1
            if state["calls"] == N:
                return real_write(fd, bytes(data)[: max(1, len(data) // 2)])
            if state["calls"] > N:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    os.write = write
    sys.argv = [sys.argv[1], *sys.argv[2:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


@slow
def test_full_disk_during_a_metrics_append_leaves_no_torn_line(reference, base, env, tmp_path):
    wrapper = tmp_path / "fail_append.py"
    wrapper.write_text(FAIL_APPEND)
    job_dir = str(tmp_path / "job")
    args = [*base, f"hydra.run.dir={job_dir}"]
    with open(tmp_path / "full.out", "w") as out, open(tmp_path / "full.err", "w") as err:
        rc = subprocess.run(
            [sys.executable, str(wrapper), TRAIN, *args],
            env={**env, "FAIL_METRICS_APPEND": "4"},
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            timeout=600,
        ).returncode
    stderr = (tmp_path / "full.err").read_text()
    assert rc != 0, stderr[-3000:]
    # One line naming the file being written, not a traceback (issue 20, point 7).
    assert "No space left on device" in stderr and "metrics.jsonl" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    rows = metrics_rows(job_dir)  # complete lines only: the half-written append was cut back
    assert sorted({r["eval"] for r in rows}) == [0, 1, 2]
    assert checkpoint_steps(job_dir)[-1] == 3
    job = ok(run_job(args, env, tmp_path, "relaunch"))
    assert "resuming" in job.stdout and "torn" not in job.stderr
    assert_same_metrics(job_dir, reference["rows"])


@contextlib.contextmanager
def tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the injected-ENOSPC test covers the full disk")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory) -> str:
    """Fill the file system holding ``directory`` to the last byte; returns the filler's path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    return path


@slow
def test_real_full_disk_mid_run_then_relaunch_with_space(reference, base, env, tmp_path):
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        job_dir = os.path.join(mnt, "job")
        args = [*base, f"hydra.run.dir={job_dir}"]
        job = Job(args, env, tmp_path, "full")
        # stop it just after a checkpoint, so the next write to the full disk is its next metrics append
        job.wait_until(
            lambda: 3 <= evals_written(job_dir) < N_EVALS and checkpoint_steps(job_dir)[-1:] == [evals_written(job_dir)],
            "three evaluations, checkpointed",
        )
        job.killpg(signal.SIGSTOP)
        filler = fill(mnt)
        job.killpg(signal.SIGCONT)
        rc = job.wait(300)
        assert rc != 0, "the job finished on a full disk"
        assert "No space left on device" in job.stderr or "ENOSPC" in job.stderr, job.stderr[-3000:]
        metrics_rows(job_dir)  # no torn line, whichever write hit the full disk first
        os.unlink(filler)
        ok(run_job(args, env, tmp_path, "relaunch"))
        assert_same_metrics(job_dir, reference["rows"])


# ---------------------------------------------------- 4. corrupted newest checkpoint


@slow
def test_corrupted_newest_checkpoint_falls_back_to_the_previous_one(killed, reference, base, env, tmp_path):
    job_dir = copy_killed(killed, tmp_path)
    steps = checkpoint_steps(job_dir)
    assert len(steps) >= 2
    newest = os.path.join(job_dir, "checkpoints", str(steps[-1]))
    data = [os.path.join(dp, fn) for dp, _, fns in os.walk(newest) for fn in fns if os.path.basename(dp) == "d"]
    assert data, f"no data files under {newest}"
    for p in data:
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 2)
    job = ok(run_job([*base, f"hydra.run.dir={job_dir}"], env, tmp_path, "relaunch"))
    assert f"checkpoint {steps[-1]}" in job.stderr and "falling back to an older checkpoint" in job.stderr
    assert f"resuming {job_dir} from checkpoint after {steps[-2]}/" in job.stdout
    assert any(n.startswith(f"{steps[-1]}.corrupt-") for n in os.listdir(os.path.join(job_dir, "checkpoints")))
    assert_same_metrics(job_dir, reference["rows"])


def test_a_restored_state_reuses_the_compiled_program(tmp_path):
    """A resumed job must run the program a fresh launch compiled (and the persistent cache holds):
    jit keys programs on whether arguments are committed to a device, and orbax restores
    committed arrays while a fresh state on one device is uncommitted."""
    import jax
    import jax.numpy as jnp

    from ib_jax.job.checkpoints import Checkpoints

    fresh = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.split(jax.random.key(0), 2), "n": jnp.zeros(2, jnp.int32)}
    ck = Checkpoints(str(tmp_path / "checkpoints"))
    ck.save(1, fresh)
    done, restored = ck.restore_latest(fresh)
    ck.close()
    assert done == 1
    f = jax.jit(lambda t: (t["w"] * 2).sum() + jax.random.key_data(t["key"]).sum() + t["n"].sum())
    assert f(fresh) == f(restored)
    assert f._cache_size() == 1  # one compiled program for both


# ---------------------------------------------------- 5. wandb history survives preemption


def wandb_histories(job_dir) -> list[list[int]]:
    """Per member: the _step values of its one offline run, in logged order."""
    with open(os.path.join(job_dir, "summary.json")) as f:
        ids = strict_loads(f.read())["wandb_run_ids"]
    assert len(ids) == N_MEMBERS
    out = []
    for run_id in ids:
        dirs = tracking.offline_run_dirs(job_dir, run_id)
        assert len(dirs) == 1, f"member run {run_id}: {len(dirs)} offline runs"
        hist = [r for r in tracking.read_offline_history(dirs[0]) if "train_loss" in r]
        out.append(hist)
    return out


def assert_wandb_matches_metrics(job_dir, reference_rows):
    steps = sorted({r["step"] for r in reference_rows})
    for member, hist in enumerate(wandb_histories(job_dir)):
        assert [r["_step"] for r in hist] == steps, f"member {member}: logged steps {[r['_step'] for r in hist]}"
        want = {r["step"]: r["train_loss"] for r in reference_rows if r["member"] == member}
        assert {r["_step"]: r["train_loss"] for r in hist} == want


@slow
def test_wandb_history_survives_sigkill(reference, base, env, tmp_path):
    job_dir = str(tmp_path / "job")
    args = [*base, *WANDB, f"hydra.run.dir={job_dir}"]
    job = Job(args, env, tmp_path, "killed")
    job.wait_until(lambda: evals_written(job_dir) >= 4, "four evaluations")
    job.killpg(signal.SIGKILL)  # the job and its wandb service
    assert job.wait() == -signal.SIGKILL
    ok(run_job(args, env, tmp_path, "relaunch"))
    assert_same_metrics(job_dir, reference["rows"])
    assert_wandb_matches_metrics(job_dir, reference["rows"])


@slow
def test_wandb_history_survives_sigterm_after_the_last_checkpoint(reference, base, env, tmp_path):
    job_dir = str(tmp_path / "job")
    summary = os.path.join(job_dir, "summary.json")
    args = [*base, *WANDB, f"hydra.run.dir={job_dir}"]
    job = Job(args, env, tmp_path, "late")
    # the window: training is over, summary/plots/wandb are being finished
    job.wait_until(lambda: checkpoint_steps(job_dir)[-1:] == [N_EVALS] and not os.path.exists(summary), "the last checkpoint")
    os.kill(job.pid, signal.SIGTERM)
    rc = job.wait()
    # training is over, so the preemption guard is off: the default action ends the process at once
    # (-SIGTERM); 0 if the signal still reached the guard (it finishes: nothing left to checkpoint)
    assert rc in (0, -signal.SIGTERM), f"rc {rc}\n{job.stderr[-3000:]}"
    ok(run_job(args, env, tmp_path, "relaunch"))
    assert_same_metrics(job_dir, reference["rows"])
    assert_wandb_matches_metrics(job_dir, reference["rows"])


# ---------------------------------------------------- 6. preemption signals


@slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_preemption_signal_checkpoints_and_exits_143_then_resumes(reference, base, env, tmp_path, sig):
    job_dir = str(tmp_path / "job")
    args = [*base, f"hydra.run.dir={job_dir}"]
    job = Job(args, env, tmp_path, "preempted")
    job.wait_until(lambda: evals_written(job_dir) >= 3, "three evaluations")
    before = evals_written(job_dir)
    os.kill(job.pid, sig)
    assert job.wait() == 143, job.stderr[-3000:]
    assert f"preempted (signal {signal.Signals(sig).name})" in job.stderr
    written = evals_written(job_dir)
    assert checkpoint_steps(job_dir)[-1] == written >= before  # saved at the chunk boundary after the signal
    assert written < N_EVALS and not os.path.exists(os.path.join(job_dir, "summary.json"))
    if sig != signal.SIGTERM:
        return  # the resume after a stop is the same whichever signal asked for it (SIGTERM's case below)
    resumed = ok(run_job(args, env, tmp_path, "relaunch"))
    assert f"from checkpoint after {written}/{N_EVALS}" in resumed.stdout
    assert_same_metrics(job_dir, reference["rows"])


# ---------------------------------------------------- 7. sweeps resume by setting, aggregate dedup


def _load_aggregate():
    from ib_jax.cli import aggregate  # what scripts/aggregate.py and `ib-jax aggregate` run

    return aggregate


@slow
def test_sweep_relaunched_in_another_order_resumes_its_jobs(reference, base, env, tmp_path):
    sweep = tmp_path / "sweep"

    def multirun(order, name):
        return ok(run_job(["-m", f"noise={order}", *base, f"hydra.sweep.dir={sweep}"], env, tmp_path, name, timeout=900))

    def job_dirs():  # hydra's own multirun.yaml lies beside them
        return sorted(n for n in os.listdir(sweep) if (sweep / n).is_dir())

    multirun("isotropic,cone", "first")
    jobs = job_dirs()
    assert len(jobs) == 2
    records = {j: tree_digest(sweep / j) for j in jobs}
    second = multirun("cone,isotropic", "second")
    assert job_dirs() == jobs  # the same directories, none new
    assert second.stdout.count(f"from checkpoint after {N_EVALS}/{N_EVALS}") == 2  # each job resumed, finished
    for j in jobs:
        now = tree_digest(sweep / j)
        for f in ("metrics.jsonl", "job_config.json", ".hydra/config.yaml", ".hydra/overrides.yaml"):
            assert now[f] == records[j][f], (j, f)
    iso = next(j for j in jobs if "noise=isotropic" in (sweep / j / ".hydra" / "overrides.yaml").read_text())
    assert_same_metrics(str(sweep / iso), reference["rows"])  # same setting as the reference

    # a setting twice (a job directory copied under another name): warned about, counted once
    shutil.copytree(sweep / jobs[0], sweep / "copy_of_a_job", symlinks=True)
    out = tmp_path / "agg"
    r = subprocess.run(
        [sys.executable, AGGREGATE, str(sweep), "--out", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "appears twice" in r.stderr and "copy_of_a_job" in r.stderr, r.stderr[-3000:]
    with open(out / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * N_MEMBERS  # 2 settings x 2 levels, not 3 x 2
    assert all(r["seeds"] == "1" for r in rows)
    assert not any("copy_of_a_job" in r["job_dir"] for r in rows)


def _fake_job(root, name, *, fingerprint=None, overrides=("noise=cone",), level=1.0):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if fingerprint is not None:
        (d / "job_config.json").write_text(json.dumps({"fingerprint": fingerprint, "config": {}}))
    member = {"member": 0, "seed": 0, "snr": level, "diverged": False, "final/gap_loss": 0.5}
    (d / "summary.json").write_text(json.dumps({"members": [member]}))
    return d


def test_aggregate_counts_a_setting_once(tmp_path, capsys):
    agg = _load_aggregate()
    # same fingerprint under two names (and different overrides): one setting, warned
    _fake_job(tmp_path / "a", "job1", fingerprint="f" * 64)
    _fake_job(tmp_path / "a", "job1_copy", fingerprint="f" * 64, overrides=("noise=cone", "seed=0"))
    _fake_job(tmp_path / "a", "job2", fingerprint="e" * 64, overrides=("noise=isotropic",))
    rows, _ = agg.aggregate([str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert "appears twice" in err and "job1_copy" in err
    assert sorted(os.path.basename(r["job_dir"]) for r in rows) == ["job1", "job2"]
    # no job_config.json: the overrides identify the setting
    _fake_job(tmp_path / "b", "x", overrides=("noise=cone",))
    _fake_job(tmp_path / "b", "y", overrides=("noise=cone",))
    _fake_job(tmp_path / "b", "z", overrides=("noise=isotropic",))
    rows, _ = agg.aggregate([str(tmp_path / "b")])
    assert "appears twice" in capsys.readouterr().err
    assert sorted(os.path.basename(r["job_dir"]) for r in rows) == ["x", "z"]
    # the same directory reached from two roots is one job, not a duplicate setting
    rows, _ = agg.aggregate([str(tmp_path / "b"), str(tmp_path / "b" / "z")])
    assert len(rows) == 2


# ---------------------------------------------------- 8. exact, strict records


@slow
def test_records_are_strict_json_with_settings_exactly_as_given(reference):
    job_dir = reference["dir"]
    for name in ("metrics.jsonl", "summary.json", "job_config.json"):
        with open(os.path.join(job_dir, name), encoding="utf-8") as f:
            text = f.read()
        assert "NaN" not in text and "Infinity" not in text, name
        assert "0.10000000149011612" not in text, name  # a float32 level written as its double
        docs = [strict_loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else [strict_loads(text)]
        assert docs, name
    rows = metrics_rows(job_dir)
    assert sorted({json.dumps(r["snr"]) for r in rows}) == ['"inf"', "0.1"]
    with open(os.path.join(job_dir, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    assert all(('"snr": 0.1,' in ln) != ('"snr": "inf",' in ln) for ln in lines)
    with open(os.path.join(job_dir, "summary.json")) as f:
        summary = strict_loads(f.read())
    assert sorted(json.dumps(m["snr"]) for m in summary["members"]) == ['"inf"', "0.1"]
    with open(os.path.join(job_dir, "job_config.json")) as f:
        assert strict_loads(f.read())["config"]["noise"]["snr"] == ["inf", 0.1]


# ---------------------------------------------------- 9. degenerate runs


@slow
def test_every_member_diverged_still_writes_the_records(base, env, tmp_path):
    job_dir = str(tmp_path / "job")
    args = [*base, "optimizer.learning_rate=1e30", f"hydra.run.dir={job_dir}"]
    ok(run_job(args, env, tmp_path, "diverged"))
    with open(os.path.join(job_dir, "summary.json")) as f:
        summary = strict_loads(f.read())
    assert summary["diverged_members"] == list(range(N_MEMBERS))
    assert summary["table"].strip()
    rows = metrics_rows(job_dir)
    assert {r["member"] for r in rows if r["diverged"]} == set(range(N_MEMBERS))
    again = ok(run_job(args, env, tmp_path, "relaunch"))  # a finished, degenerate job relaunches cleanly
    assert "Traceback" not in again.stderr
    assert metrics_rows(job_dir) == rows


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_non_finite_learning_rate_is_rejected(value):
    cfg = C.from_hydra({"optimizer": {"learning_rate": float(value)}})
    with pytest.raises(ValueError, match=r"optimizer\.learning_rate"):
        validate(cfg, load_data=False)


def test_refused_values_fail_before_compute_on_the_command_line(base, env, tmp_path):
    job_dir = tmp_path / "job"
    job = run_job([*base, "optimizer.learning_rate=nan", f"hydra.run.dir={job_dir}"], env, tmp_path, "nan", timeout=300)
    assert job.proc.returncode == 2 and "optimizer.learning_rate" in job.stderr, job.stderr[-3000:]
    assert not job_dir.exists() or not os.listdir(job_dir)  # nothing written


# ---------------------------------------------------- 10. bad data refused before compute


def _npz_config(path, **dataset):
    return C.Config(dataset=C.DatasetConf(name="npz", path=str(path), **dataset), optimizer=C.OptimizerConf(batch_size=0), seeds=1)


def _xy(n=64, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)).astype(np.float32), np.arange(n) % classes


def _bad_files(tmp_path):
    x, y = _xy()
    files = {}
    files["object"] = tmp_path / "object.npz"
    np.savez(files["object"], x=np.array([[1.0], "a"], dtype=object), y=np.array([0, 1], dtype=object))
    files["npy"] = tmp_path / "npy.npz"
    with open(files["npy"], "wb") as f:
        np.save(f, x)
    files["text"] = tmp_path / "text.npz"
    files["text"].write_text("x,y\n1,2\n")
    files["zero_rows"] = tmp_path / "zero_rows.npz"
    np.savez(files["zero_rows"], x=np.zeros((0, 12), np.float32), y=np.zeros((0,), np.int64))
    files["missing"] = tmp_path / "missing.npz"
    return files


@pytest.mark.parametrize("kind", ["object", "npy", "text", "zero_rows", "missing"])
def test_bad_data_files_are_refused_naming_the_key(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(ValueError, match=r"dataset\.path") as e:
        validate(_npz_config(path))
    assert str(path) in str(e.value) or kind == "missing"


def test_empty_test_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"dataset\.train_fraction=1\.0 leaves an empty test split"):
        validate(C.Config(dataset=C.DatasetConf(train_fraction=1.0), seeds=1))
    x, y = _xy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(ValueError, match=r"dataset\.train_fraction"):
        validate(_npz_config(tmp_path / "d.npz", train_fraction=1.0))


@pytest.mark.parametrize(
    "labels, match",
    [
        (([0] * 48, [0] * 16), "a single class"),
        (([0, 2] * 24, [0, 2] * 8), r"labels \[1\] of 0\.\.2 never occur"),
        (([0, 1] * 24, [0, 1, 2, 2] * 4), r"test labels \[2\] never occur in the training split"),
    ],
)
def test_label_oddities_warn_but_run(tmp_path, labels, match):
    ytr, yte = (np.asarray(v) for v in labels)
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(len(ytr), 12)), y=ytr, x_test=rng.normal(size=(len(yte), 12)), y_test=yte)
    with pytest.warns(UserWarning, match=match):
        built = validate(_npz_config(path))
    assert len(built.dataset.y_train) == len(ytr)


def test_a_level_listed_twice_is_refused():
    with pytest.raises(ValueError, match=r"noise\.snr lists \[1\.0\] more than once"):
        validate(C.from_hydra({"noise": {"kind": "isotropic", "snr": [1, 1]}}), load_data=False)


def test_good_data_warns_about_nothing(tmp_path):
    """The control for the label warnings: two classes seen in both splits warn about nothing."""
    x, y = _xy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validate(_npz_config(tmp_path / "d.npz"))
    assert not [w for w in caught if "dataset" in str(w.message)]


# ------------------------------------------------------------------ second round (issue 20)


def _cli(args, env, workdir, timeout=300, **kw):
    return subprocess.run([sys.executable, TRAIN, *args], env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout, **kw)


def _copy_job(reference, tmp_path, name="job"):
    job_dir = str(tmp_path / name)
    shutil.copytree(reference["dir"], job_dir, symlinks=True)
    return job_dir


@pytest.mark.parametrize("damage", ["checkpoints deleted", "checkpoint=false"])
def test_records_without_checkpoints_are_refused_not_replaced(reference, base, env, tmp_path, damage):
    """1. A finished job whose checkpoints/ was deleted (or that ran without checkpoints), relaunched:
    refused with status 2 naming what is missing and how to start afresh; every file as it was."""
    job_dir = _copy_job(reference, tmp_path)
    args = [*base, f"hydra.run.dir={job_dir}"]
    if damage == "checkpoints deleted":
        shutil.rmtree(os.path.join(job_dir, "checkpoints"))
    else:
        args.append("checkpoint=false")  # result-neutral: the recorded config matches
        shutil.rmtree(os.path.join(job_dir, "checkpoints"))
    before = tree_digest(job_dir)
    out = _cli(args, env, tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    msg = out.stderr
    assert f"records {N_EVALS} evaluations but there is no checkpoint" in msg and "hydra.run.dir=<new dir>" in msg
    assert ("checkpoint=false" in msg) == (damage == "checkpoint=false")
    assert tree_digest(job_dir) == before  # rows kept, nothing retrained, no lock left behind
    assert_same_metrics(job_dir, reference["rows"])


def _npz(path, y):
    np.savez(path, x=np.random.default_rng(0).normal(size=(len(y), 3)), y=np.asarray(y))


@pytest.mark.parametrize("label", [2**32, 10**9, -1])
def test_out_of_range_labels_are_refused_before_any_cast(env, tmp_path, label):
    """2. Labels are class indices checked before the int32 cast (2**32 would wrap to 0) and before
    anything is sized by a label value (10**9 classes would allocate gigabytes)."""
    path = tmp_path / "d.npz"
    _npz(path, [0, 1] * 20 + [label])
    out = _cli(["dataset=npz", f"dataset.path={path}", "logger=none", f"hydra.run.dir={tmp_path / 'job'}"], env, tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "labels must be class indices in [0, 65535]" in out.stderr and str(path) in out.stderr
    assert not (tmp_path / "job" / "metrics.jsonl").exists()


def test_absurd_integers_are_refused_naming_the_key_and_limit(env, tmp_path):
    """3. Every integer key has a range, checked in validation: nothing reaches numpy or XLA."""
    for override, key in (
        (f"steps={2**63}", "steps"),
        (f"seeds={10**12}", "seeds"),
        (f"n_evals={10**12}", "n_evals"),
        (f"estimator.binning.n_bins={2**40}", "estimator.binning.n_bins"),
        (f"estimator.sp.replicas={10**9}", "estimator.sp.replicas"),
    ):
        t0 = time.monotonic()
        out = _cli([override, "logger=none", f"hydra.run.dir={tmp_path / key}"], env, tmp_path, timeout=120)
        assert out.returncode == 2, (override, out.stderr[-2000:])
        assert f"{key} must be an integer in [" in out.stderr, (override, out.stderr[-2000:])
        assert time.monotonic() - t0 < 60 and not (tmp_path / key / "job_config.json").exists()


def test_a_population_that_cannot_fit_is_refused_with_the_numbers(env, tmp_path):
    """4. seeds=100000 model=wide_mlp: refused before compiling, with the estimate, the memory there
    is and what to change (it used to compile, then wait at 0% CPU)."""
    t0 = time.monotonic()
    out = _cli(["seeds=100000", "model=wide_mlp", "logger=none", f"hydra.run.dir={tmp_path / 'job'}"], env, tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "the population cannot fit: 400000 members" in out.stderr and "GiB" in out.stderr and "fewer members" in out.stderr
    assert time.monotonic() - t0 < 90


def test_aggregate_skips_a_truncated_summary_naming_it(reference, env, tmp_path):
    """5. One truncated summary.json in a sweep: a warning naming the file, the others aggregated."""
    sweep = tmp_path / "sweep"
    good = _copy_job(reference, sweep, "good")
    bad = _copy_job(reference, sweep, "bad")
    os.remove(os.path.join(bad, "job_config.json"))  # another setting (identified by its overrides), so both are read
    summary = os.path.join(bad, "summary.json")
    with open(summary, "r+b") as f:
        f.truncate(os.path.getsize(summary) // 2)
    out = subprocess.run(
        [sys.executable, AGGREGATE, str(sweep), "--out", str(tmp_path / "agg")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"skipping {summary}: unreadable (JSONDecodeError" in out.stderr and "Traceback" not in out.stderr
    with open(tmp_path / "agg" / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and len({r["setting"] for r in rows}) == 1  # the good job's levels only
    assert os.path.exists(os.path.join(good, "summary.json"))


def test_the_wandb_sync_hint_works_pasted_for_a_path_with_spaces(base, env, tmp_path):
    """6. The printed ``wandb sync`` command, run by a shell, reaches every member's offline run."""
    job_dir = str(tmp_path / "a dir with spaces" / "job")
    job = ok(run_job([*base, *WANDB, "steps=3", "n_evals=2", f"hydra.run.dir='{job_dir}'"], env, tmp_path, "spaces"))
    hint = next(line for line in job.stdout.splitlines() if "(upload: wandb sync " in line)
    command = hint.split("(upload: ", 1)[1].rsplit(")", 1)[0]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "wandb").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (fake / "wandb").chmod(0o755)
    shell = subprocess.run(["bash", "-c", command], env={**env, "PATH": f"{fake}:{env.get('PATH', '')}"}, capture_output=True, text=True)
    args = shell.stdout.splitlines()
    runs = sorted(glob.glob(os.path.join(glob.escape(job_dir), "wandb", "offline-run-*")))
    assert args[0] == "sync" and sorted(args[1:]) == runs and len(runs) == N_MEMBERS, (command, shell.stdout, shell.stderr)


_LOG_RECORD = re.compile(r"^(CRITICAL|ERROR|WARNING|INFO|DEBUG):[\w.]+:|^\[ib-jax\] ")


def _uncaught_traceback(stderr: str) -> bool:
    """Whether ``stderr`` holds a traceback that is not part of a logged record.

    Orbax logs the failure of its own background write (with the traceback, through absl at ERROR
    level) before ib-jax turns the error into its one line; that logged record is orbax's report,
    not an exception escaping the program."""
    record_open = False
    for line in stderr.splitlines():
        if _LOG_RECORD.match(line):
            record_open = not line.startswith("[ib-jax]")
        elif line.startswith("Traceback") and not record_open:
            return True
    return False


def _fsize_limit(limit):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_file_size_limit_names_the_file_and_tears_nothing(reference, base, env, tmp_path):
    """7a. ``ulimit -f``-style limit (EFBIG, "File too large") mid-run: one line naming the file, no
    torn record, and a relaunch without the limit finishes with the uninterrupted run's metrics."""
    job_dir = str(tmp_path / "job")
    args = [*base, "compile_cache=false", f"hydra.run.dir={job_dir}"]
    # the job's own small files fit; metrics.jsonl outgrows the limit after a few evaluations
    out = _cli(args, env, tmp_path, preexec_fn=_fsize_limit(12_000))
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("[ib-jax] error: cannot write ") and "File too large" in last and job_dir in last, out.stderr[-3000:]
    assert not _uncaught_traceback(out.stderr), out.stderr[-3000:]
    rows = metrics_rows(job_dir)  # complete lines only
    assert 0 < len({r["eval"] for r in rows}) < N_EVALS
    ok(run_job(args, env, tmp_path, "unlimited"))
    assert_same_metrics(job_dir, reference["rows"])


def test_a_read_only_output_directory_is_one_line_naming_it(base, env, tmp_path):
    """7b. A read-only output directory (a read-only mount: refused even to root): one line naming it."""
    with tmpfs(tmp_path / "ro", "1m") as mnt:
        job_dir = os.path.join(mnt, "job")
        os.makedirs(job_dir)  # the directory exists (hydra creates a missing one itself), but cannot be written
        remount = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here ({remount.stderr.strip()})")
        out = _cli([*base, f"hydra.run.dir={job_dir}"], env, tmp_path)
        assert out.returncode == 1, out.stderr[-3000:]
        last = out.stderr.strip().splitlines()[-1]
        assert (
            last
            == f"[ib-jax] error: cannot write {job_dir}: the output directory is not writable (a read-only file system or no write permission)"
        ), out.stderr[-3000:]
        assert "Traceback" not in out.stderr and os.listdir(job_dir) == []
