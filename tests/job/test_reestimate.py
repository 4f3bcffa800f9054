"""Re-estimation from snapshots (ib_jax/job/reestimate.py, scripts/reestimate.py).

One tiny job (tishby12, the 12-10-7-5-4-3-2 tanh net, 20 steps, 4 evaluations, 2 members:
SNR inf and 1) is trained once per module with snapshots; every test re-estimates from it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ib_jax import config as C
from ib_jax import estimators as E
from ib_jax.job import records as R
from ib_jax.job import reestimate as RE
from ib_jax.job import reestimate_run as RR
from ib_jax.job.build import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_INFO = 256
TOL = 1e-5  # bits: the brief's tolerance; the same program on the same parameters agrees to float32 round-off


def _job_config() -> C.Config:
    return C.Config(
        name="tiny",
        steps=20,
        n_evals=3,
        seeds=1,
        probe_size=0,
        diagnostics=(),
        snapshots=True,
        noise=C.NoiseConf(kind="isotropic", snr=(math.inf, 1.0)),
        estimator=C.EstimatorConf(names=("binning", "knn"), n_info=N_INFO),
        logger=C.LoggerConf(wandb=False, progress=False),
        checkpoint=False,
        compile_cache=False,
    )


def _tree_hash(root: str) -> dict[str, str]:
    """sha256 of every file of the job except the re-estimations (and the lock's pid note)."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "reestimate"]
        for f in files:
            if f == "job.lock":
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from ib_jax.job import run as experiment

    out = str(tmp_path_factory.mktemp("reestimate") / "job")
    experiment.run(_job_config(), output_dir=out)
    return out


@pytest.fixture(scope="module")
def network(job):
    """The job's trainer (information set, network) and its snapshots as numpy trees."""
    from ib_jax import train as T

    built = validate(_job_config())
    trainer = T.Trainer(built.config, built.dataset)
    evals = RE.snapshot_evals(job)
    snaps = [dict(np.load(os.path.join(job, "snapshots", f"eval_{e:05d}.npz"))) for e in evals]
    return trainer, evals, snaps


def _numpy_layers(snap, member, x):
    """The tanh MLP's hidden layers and softmax output in float64 numpy, from a snapshot's arrays."""
    h, layers = np.asarray(x, np.float64), []
    n_dense = sum(1 for k in snap if k.endswith("['kernel']"))
    for k in range(n_dense):
        w = snap[f"['params']['Dense_{k}']['kernel']"][member].astype(np.float64)
        b = snap[f"['params']['Dense_{k}']['bias']"][member].astype(np.float64)
        z = h @ w + b
        if k < n_dense - 1:
            h = np.tanh(z)
            layers.append(h)
        else:
            p = np.exp(z - z.max(axis=1, keepdims=True))
            layers.append(p / p.sum(axis=1, keepdims=True))
    return layers


def _jax_layers(trainer, snap, member):
    """The same layers from the library's network (what the estimators see)."""
    params = {"Dense_" + k.split("['Dense_")[1].split("']")[0]: None for k in snap}
    for name in params:
        params[name] = {q: jnp.asarray(snap[f"['params']['{name}']['{q}']"][member]) for q in ("kernel", "bias")}
    logits, hidden, _ = trainer.step.apply(params, {}, trainer.data["x_info"], train=False)
    return [h.astype(jnp.float32) for h in hidden] + [jax.nn.softmax(logits)]


def _rows(path):
    return {(r["eval"], r["member"]): r for r in R.read_jsonl(path, repair=False, null=math.nan)}


# --------------------------------------------------------------------------- (1)


def test_reestimate_with_the_jobs_settings_reproduces_its_metrics(job):
    res = RR.run(job, [], log=None)
    assert res["status"] == "computed" and res["tag"].startswith("same~")
    src = _rows(os.path.join(job, "metrics.jsonl"))
    new = _rows(os.path.join(res["dir"], "metrics.jsonl"))
    assert set(new) == set(src) and len(new) == 4 * 2  # every evaluation x member
    compared = 0
    for key, row in new.items():
        for k, v in row.items():
            if k.startswith(("binning/", "knn/")):
                assert abs(v - src[key][k]) <= TOL, (key, k, v, src[key][k])
                compared += 1
            elif k in RR.COPIED:
                assert v == src[key][k]
    # binning: 3 quantities, knn: 2, over 6 layers, 8 rows
    assert compared == 8 * 6 * (3 + 2)
    rec = res["reestimate"]
    with open(os.path.join(job, "job_config.json")) as f:
        assert rec["source_fingerprint"] == R.loads_strict(f.read())["fingerprint"]
    assert rec["status"] == "complete" and rec["evals"] == [0, 1, 2, 3]
    assert os.path.exists(os.path.join(res["dir"], "plots", "binning", "h_x_given_t_vs_step.png"))

    # the same settings again: reported, not recomputed, not rewritten (library and CLI)
    before = _tree_hash(res["dir"])
    again = RR.run(job, ["estimator.names=[binning,knn]"], log=None)  # spelled differently, same settings
    assert again["status"] == "exists" and again["dir"] == res["dir"]
    spec = importlib.util.spec_from_file_location("reestimate_cli", os.path.join(ROOT, "scripts", "reestimate.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([job, "--quiet", "--no-compile-cache"]) == 0
    assert _tree_hash(res["dir"]) == before
    # a refused setting: exit 2, nothing written
    assert cli.main([job, "model.widths=[3]", "--quiet", "--no-compile-cache"]) == 2
    # --force goes past the "exists" answer to recompute; a second launch while one runs (here
    # the lock held by the test) is refused at once by the directory's lock
    from ib_jax.job.lock import JobLock, JobLocked

    with JobLock(res["dir"]), pytest.raises(JobLocked):
        RR.run(job, [], force=True, log=None)
    assert _tree_hash(res["dir"]) == before
    # killed while replacing its files (status "writing", a torn metrics file): the next run
    # recomputes without --force and ends with the same rows
    status = os.path.join(res["dir"], RE.STATUS_FILE)
    R.atomic_write_json(status, {**rec, "status": "writing"})
    metrics = os.path.join(res["dir"], "metrics.jsonl")
    with open(metrics, "r+b") as f:
        f.truncate(os.path.getsize(metrics) // 2)
    redo = RR.run(job, [], log=None)
    assert redo["status"] == "computed" and _rows(metrics) == new  # deterministic: the same values
    assert RR.run(job, [], log=None)["status"] == "exists"


# --------------------------------------------------------------------------- (2)


def test_whole_run_range_is_the_min_max_over_all_snapshots(job, network):
    trainer, evals, snaps = network
    before = _tree_hash(job)
    res = RR.run(job, ["estimator.range=whole_run"], log=None)
    assert _tree_hash(job) == before  # the job's records are untouched
    assert "range=whole_run" in res["tag"] and res["reestimate"]["options"]["range"] == "whole_run"
    with np.load(os.path.join(res["dir"], "whole_run_range.npz")) as f:
        lo, hi = f["lo"], f["hi"]  # (P, L)
    assert lo.shape == (2, 6)

    # independent: a float64 numpy forward pass of every snapshot; min/max over snapshots, rows, units.
    # float32 vs float64 differ by ~1e-7 relative on tanh/softmax values of order 1
    x = np.asarray(trainer.data["x_info"])
    for i in range(2):
        acts = [_numpy_layers(s, i, x) for s in snaps]  # [E][L] (n, d)
        for li in range(6):
            stack = np.stack([a[li] for a in acts])
            np.testing.assert_allclose(lo[i, li], stack.min(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(hi[i, li], stack.max(), rtol=1e-5, atol=1e-6)
    # the library's own whole_run_range on the library's activations gives exactly the recorded range
    jl = [[_jax_layers(trainer, s, i) for s in snaps] for i in range(2)]
    for i in range(2):
        for li in range(6):
            r_lo, r_hi = E.whole_run_range(jnp.stack([jl[i][e][li] for e in range(len(evals))]))
            assert float(r_lo) == lo[i, li] and float(r_hi) == hi[i, li]

    # every snapshot is binned with those fixed edges: H(T) by exact pattern counting in numpy
    new = _rows(os.path.join(res["dir"], "metrics.jsonl"))
    y = np.asarray(trainer.data["y_info"])
    n = len(y)
    for i in range(2):
        for j, e in enumerate(evals):
            for li, layer in enumerate(trainer.layer_names):
                t = np.asarray(jl[i][j][li])
                codes = np.clip(np.floor((t - lo[i, li]) * np.float32(30 / (hi[i, li] - lo[i, li]))), 0, 29).astype(int)
                _, counts = np.unique(codes, axis=0, return_counts=True)
                h_t = -np.sum(counts / n * np.log2(counts / n))
                assert abs(new[(e, i)][f"binning/i_xt/{layer}"] - h_t) <= TOL
                assert abs(new[(e, i)][f"binning/h_x_given_t/{layer}"] - (np.log2(n) - h_t)) <= TOL


# --------------------------------------------------------------------------- (3)


def test_an_estimator_the_job_did_not_run_works_from_snapshots(job, network):
    trainer, evals, snaps = network
    res = RR.run(job, ["estimator.names=[kde]", "estimator.kde.noise_var=0.05"], log=None)
    assert res["tag"].startswith("kde.noise_var=0.05,names=kde~")
    new = _rows(os.path.join(res["dir"], "metrics.jsonl"))
    assert not any(k.startswith("binning/") for k in new[(0, 0)])
    # the values of member i at evaluation e come from snapshot e's parameters of member i:
    # the kernel bounds computed directly on those layers (tolerance: float32 sums of 256^2 terms)
    # (zero-padded units leave every pairwise distance unchanged: one vmapped call over the layers)
    bounds = jax.jit(jax.vmap(lambda t: E.kde_mutual_information_x_bounds(t, 0.05)))
    for i in (0, 1):
        for j in (0, len(evals) - 1):
            lo_b, hi_b = bounds(E.pad_layers(_jax_layers(trainer, snaps[j], i))[0])
            for li, layer in enumerate(trainer.layer_names):
                row = new[(evals[j], i)]
                assert abs(row[f"kde/i_xt/{layer}"] - float(hi_b[li])) <= 1e-4
                assert abs(row[f"kde/i_xt_lower/{layer}"] - float(lo_b[li])) <= 1e-4
                assert row[f"kde/i_xt_lower/{layer}"] <= row[f"kde/i_xt/{layer}"] + 1e-6
                assert abs(row[f"kde/h_x_given_t/{layer}"] - (math.log2(N_INFO) - row[f"kde/i_xt/{layer}"])) <= 1e-5


# --------------------------------------------------------------------------- no compute


def test_overrides_are_checked_before_any_compute(job, tmp_path):
    with pytest.raises(ValueError, match="model.widths"):
        RR.run(job, ["model.widths=[3]"], log=None)
    with pytest.raises(ValueError, match="no binning"):
        RR.run(job, ["estimator.range=whole_run", "estimator.names=[knn]"], log=None)
    with pytest.raises(ValueError, match="both set the binning range"):
        RR.run(job, ["estimator.range=whole_run", "estimator.binning.lo=0.0"], log=None)
    with pytest.raises(ValueError, match="estimator.names"):
        RR.run(job, ["estimator.names=[nope]"], log=None)
    with pytest.raises(ValueError, match="estimator.binning.n_bins"):
        RR.run(job, ["estimator.binning.n_bins=0"], log=None)
    with pytest.raises(ValueError, match="--per-unit"):
        RE.Options(per_unit=True)
    assert not os.path.exists(os.path.join(job, "reestimate", "names=nope")) and all(
        "nope" not in d and "n_bins=0" not in d for d in os.listdir(os.path.join(job, "reestimate"))
    )  # refused: no directory
    with pytest.raises(ValueError, match="not a job directory"):
        RE.load_job(str(tmp_path))
    with open(os.path.join(job, "job_config.json")) as f, open(tmp_path / "job_config.json", "w") as g:
        g.write(f.read())
    with pytest.raises(ValueError, match="snapshots=true"):
        RE.load_job(str(tmp_path))


def test_tag_names_the_differences_and_hashes_the_settings():
    job = C.Config()
    a = RE.tag_for(job, RE.resolve_config(C.to_dict(job), ["estimator.binning.n_bins=20"]), RE.Options())
    b = RE.tag_for(job, RE.resolve_config(C.to_dict(job), ["estimator.binning.n_bins=20", "estimator.binning.lo=-1.0"]), RE.Options())
    c = RE.tag_for(job, RE.resolve_config(C.to_dict(job), ["estimator.binning.n_bins=20"]), RE.Options("whole_run", per_unit=True))
    assert a == b and a.startswith("binning.n_bins=20~")  # lo=-1.0 is the job's own value
    assert c.startswith("binning.n_bins=20,range=whole_run,per_unit~") and c.split("~")[1] != a.split("~")[1]


def test_finalize_ranges_conventions():
    nan, inf = math.nan, math.inf
    lo = np.array([[0.0, 2.0, nan, inf], [-1.0, 2.0, nan, inf]])
    hi = np.array([[1.0, 2.0, nan, -inf], [3.0, 2.0, nan, -inf]])
    r_lo, r_hi = RE.finalize_ranges(lo, hi)
    np.testing.assert_array_equal(r_lo, [[0, 2, 0, 0], [-1, 2, 0, 0]])
    np.testing.assert_array_equal(r_hi, [[1, 3, 1, 1], [3, 3, 1, 1]])  # constant: lo + 1; NaN/padded: (0, 1)
    p_lo, p_hi = RE.finalize_ranges(lo, hi, range_over="population")
    np.testing.assert_array_equal(p_lo, [[-1, 2, 0, 0]] * 2)
    np.testing.assert_array_equal(p_hi, [[3, 3, 1, 1]] * 2)
    # a member that diverged (NaN) at one evaluation is left out of the population range
    q_lo, q_hi = RE.finalize_ranges(np.array([[nan], [0.5]]), np.array([[nan], [0.7]]), range_over="population")
    np.testing.assert_allclose(q_lo, [[0.5], [0.5]])
    np.testing.assert_allclose(q_hi, [[0.7], [0.7]])


@pytest.mark.slow
def test_whole_run_per_unit_over_the_population(job, network):
    trainer, evals, snaps = network
    res = RR.run(job, ["estimator.range=whole_run"], options=RE.Options("whole_run", per_unit=True, range_over="population"), log=None)
    with np.load(os.path.join(res["dir"], "whole_run_range.npz")) as f:
        lo, hi = f["lo"], f["hi"]  # (P, L, d_max)
    assert lo.shape == (2, 6, 10)
    x = np.asarray(trainer.data["x_info"])
    acts = [[_numpy_layers(s, i, x) for s in snaps] for i in range(2)]
    for li in range(6):
        stack = np.stack([a[li] for i in range(2) for a in acts[i]])  # (P E, n, d)
        d = stack.shape[-1]
        for i in range(2):
            np.testing.assert_allclose(lo[i, li, :d], stack.min(axis=(0, 1)), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(hi[i, li, :d], stack.max(axis=(0, 1)), rtol=1e-5, atol=1e-6)
            assert np.all(lo[i, li, d:] == 0) and np.all(hi[i, li, d:] == 1)  # padded units
