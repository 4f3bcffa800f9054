"""The training engine: populations, equality with single models, diagnostics, faults, sharding.

Compile time dominates on CPU, so the tests share one Trainer (population size
4, tiny network) and vary only what is data: seeds, levels, step counts.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ib_jax import config as C
from ib_jax import data, models, train
from ib_jax.job.build import validate
from ib_jax.train.gradient_stats import gradient_noise_stats, per_example_grads

INF = float("inf")
MODEL = C.ModelConf(widths=(8, 6, 4), activation="tanh")
CFG = C.Config(
    model=MODEL,
    optimizer=C.OptimizerConf(name="adam", learning_rate=0.01, batch_size=128),
    noise=C.NoiseConf(kind="cone"),
    steps=40,
    n_evals=3,
    probe_size=64,
)


@pytest.fixture(scope="module")
def tishby():
    return data.tishby12(seed=0, train_fraction=0.85)


@pytest.fixture(scope="module")
def trainer(tishby):
    return train.Trainer(CFG, tishby)


def run(trainer, pop, gaps):
    states = trainer.init(pop)
    return trainer.run(states, gaps)


# ----------------------------------------------------------------------- data


def test_tishby12_statistics():
    y = data.tishby12_labels()
    bits = ((np.arange(4096)[:, None] >> np.arange(12)) & 1).sum(1)
    assert abs(y.mean() - 0.517) < 0.002
    by_k = np.array([y[bits == k].mean() for k in range(13)])
    assert (by_k[:5] == 0).all() and (by_k[8:] == 1).all()
    np.testing.assert_allclose(by_k[5:8], [0.08, 0.58, 0.92], atol=0.015)
    # rotation invariance: the label depends on the points only through their pairwise angles,
    # so an icosahedral symmetry (a permutation of the vertices) maps labels to labels
    v = data.icosahedron()
    rot = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # cyclic axis permutation: a symmetry
    perm = [int(np.argmin(np.linalg.norm(v - r, axis=1))) for r in v @ rot.T]
    assert sorted(perm) == list(range(12))
    x = ((np.arange(4096)[:, None] >> np.arange(12)) & 1).astype(float)
    np.testing.assert_array_equal(data.tishby12_labels(x[:, perm]), y)


def test_split_is_deterministic_and_stratified(tishby):
    again = data.tishby12(seed=0, train_fraction=0.85)
    np.testing.assert_array_equal(again.x_train, tishby.x_train)
    other = data.tishby12(seed=1, train_fraction=0.85)
    assert not np.array_equal(other.x_train, tishby.x_train)
    assert len(tishby.y_train) + len(tishby.y_test) == 4096
    assert abs(tishby.y_train.mean() - tishby.y_test.mean()) < 0.01


def test_npz_loader_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.normal(size=(50, 3)), y=rng.integers(0, 3, 50))
    ds = data.from_npz(str(good), train_fraction=0.8)
    assert ds.x_train.shape[1] == 3 and ds.n_classes == 3 and len(ds.y_train) + len(ds.y_test) == 50
    with_test = tmp_path / "t.npz"
    np.savez(with_test, x=rng.normal(size=(20, 3)), y=rng.integers(0, 2, 20), x_test=rng.normal(size=(5, 3)), y_test=rng.integers(0, 2, 5))
    assert len(data.from_npz(str(with_test)).y_test) == 5
    cases = {
        "missing.npz": (None, "no such file"),
        "shape.npz": (dict(x=np.zeros((5, 2)), y=np.zeros(4, int)), "5 rows but y has 4"),
        "float.npz": (dict(x=np.zeros((5, 2)), y=np.full(5, 0.5)), "must be integers"),
        "nan.npz": (dict(x=np.array([[0.0, np.nan]] * 5), y=np.zeros(5, int)), "NaN"),
        "nokeys.npz": (dict(a=np.zeros(3)), "lacks arrays"),
    }
    for name, (arrays, match) in cases.items():
        path = tmp_path / name
        if arrays is not None:
            np.savez(path, **arrays)
        with pytest.raises(ValueError, match=match):
            data.from_npz(str(path))
    with pytest.raises(ValueError, match="dataset.name"):  # one dispatcher, the registry: names every data set
        validate(C.Config(dataset=C.DatasetConf(name="cifar")))


def test_digits_and_mnist1d_load_locally(tmp_path):
    d = data.digits()
    assert d.x_train.shape[1] == 64 and d.n_classes == 10
    m = data.mnist1d(cache_dir=tmp_path, num_samples=500)
    assert m.x_train.shape[1] == 40 and len(m.y_train) + len(m.y_test) == 500
    assert list(tmp_path.glob("mnist1d_*.npz"))
    again = data.mnist1d(cache_dir=tmp_path, num_samples=500)  # from the cache
    np.testing.assert_array_equal(again.x_train, m.x_train)


# --------------------------------------------------------------- populations


def test_seeds_and_noise_keys(trainer):
    pop = train.Population(seeds=[0, 0, 1, 0], level=[INF, INF, INF, 4.0])
    states, m = run(trainer, pop, [5, 5, 0])
    p = np.asarray(states.params["Dense_0"]["kernel"])
    assert np.array_equal(p[0], p[1])  # equal seeds, no noise: identical
    assert not np.allclose(p[0], p[2])  # other seed
    assert not np.allclose(p[0], p[3])  # noise moved it
    snr = np.asarray(m["noise_realized_snr"][-1])
    assert snr[0] == np.inf and abs(snr[3] - 4.0) < 1e-2  # cone surface: exact SNR
    assert abs(float(m["noise_angle"][-1][3]) - np.arctan(0.5)) < 1e-4
    # members with the same seed and level but drawn noise must not share noise keys
    pop2 = train.Population(seeds=[0, 1, 2, 3], level=[4.0] * 4)
    st2 = trainer.init(pop2)
    from ib_jax import noise

    noise.check_independent_keys(st2.opt_state)


def test_determinism(trainer):
    pop = train.Population(seeds=[3, 4, 5, 6], level=[INF, 10.0, 1.0, 0.3])
    _, a = run(trainer, pop, [4, 4, 4])
    _, b = run(trainer, pop, [4, 4, 4])
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_population_member_equals_model_trained_alone(tishby):
    """Noiseless full-batch GD: a vmapped member == the same model stepped alone with plain optax."""
    cfg = C.Config(
        model=MODEL,
        optimizer=C.OptimizerConf(name="sgd", learning_rate=0.5, batch_size=0),
        noise=C.NoiseConf(kind="none"),
        estimator=C.EstimatorConf(names=()),
        steps=10,
        probe_size=0,
    )
    tr = train.Trainer(cfg, tishby)
    pop = train.Population(seeds=[7, 8], level=[INF, INF])
    states, _ = tr.run(tr.init(pop), [10])
    model = models.build(MODEL, 2)
    k_init = jax.random.split(jax.random.key(8), 4)[0]
    params = model.init(k_init, jnp.asarray(tishby.x_train[:2]))["params"]
    opt = optax.sgd(0.5)
    opt_state = opt.init(params)
    x, y = jnp.asarray(tishby.x_train), jnp.asarray(tishby.y_train)

    @jax.jit
    def step(params, opt_state):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x)[0], y).mean()

        g = jax.grad(loss)(params)
        u, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, u), opt_state

    for _ in range(10):
        params, opt_state = step(params, opt_state)
    member = jax.tree.map(lambda a: a[1], states.params)
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_diverged_member_is_isolated(trainer):
    pop = train.Population(seeds=[0, 1, 2, 3], level=[INF, INF, INF, INF], learning_rate=[0.01, 1e38, 0.01, 0.01])
    states, m = run(trainer, pop, [0, 6, 6])
    assert np.asarray(states.diverged).tolist() == [False, True, False, False]
    assert int(states.diverged_step[1]) >= 0
    loss = np.asarray(m["train_loss"])  # (evals, P)
    assert np.isfinite(loss[0]).all()  # before training, all fine
    assert np.isnan(loss[-1, 1]) and np.isfinite(loss[-1, [0, 2, 3]]).all()
    assert np.isnan(np.asarray(m["binning/i_xt"])[-1, 1]).all()
    # the others trained exactly as without the faulty member
    pop_ok = train.Population(seeds=[0, 5, 2, 3], level=[INF] * 4)
    _, m_ok = run(trainer, pop_ok, [0, 6, 6])
    np.testing.assert_allclose(np.asarray(m_ok["train_loss"])[-1, [0, 2, 3]], loss[-1, [0, 2, 3]], rtol=1e-6)


def test_learns_tishby12_beyond_chance(trainer):
    pop = train.Population(seeds=[0, 1, 2, 3], level=[INF, INF, 10.0, 10.0])
    _, m = run(trainer, pop, [0, 400, 400])
    acc = np.asarray(m["test_accuracy"])[-1]
    assert (acc > 0.8).all(), acc  # chance is ~0.52
    i_xt = np.asarray(m["binning/i_xt"])  # (evals, P, layers)
    assert i_xt.shape[-1] == 4  # 3 hidden + output
    assert trainer.layer_names == ["h1", "h2", "h3", "output"]
    assert (i_xt <= 12 + 1e-4).all() and (i_xt >= 0).all()
    h = np.asarray(m["binning/h_x_given_t"])
    np.testing.assert_allclose(h + i_xt, 12.0, atol=1e-4)
    assert np.isfinite(np.asarray(m["sgd_snr"])).all()


def test_learns_mnist1d_beyond_chance(tmp_path):
    ds = data.mnist1d(cache_dir=tmp_path, num_samples=1000)
    cfg = C.Config(
        model=C.ModelConf(widths=(64, 64), activation="relu"),
        optimizer=C.OptimizerConf(name="adam", learning_rate=3e-3, batch_size=100),
        estimator=C.EstimatorConf(names=(), n_info=256),
        steps=300,
        n_evals=1,
        probe_size=0,
    )
    res = train.train_population(cfg, ds, train.population_grid([0, 1], [INF]))
    assert (res.final("test_accuracy") > 0.3).all(), res.final("test_accuracy")  # chance 0.1


# ------------------------------------------------------------ gradient SNR


def test_sgd_snr_matches_brute_force_minibatches(tishby):
    model = models.build(MODEL, 2)
    params = model.init(jax.random.key(0), jnp.asarray(tishby.x_train[:2]))["params"]
    x, y = jnp.asarray(tishby.x_train[:256]), jnp.asarray(tishby.y_train[:256])

    def loss1(p, xi, yi):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xi[None])[0], yi[None]).mean()

    per_ex = per_example_grads(loss1, params, x, y)
    flat = np.concatenate([np.asarray(v).reshape(256, -1) for v in jax.tree.leaves(per_ex)], axis=1).astype(np.float64)
    # a batch-mean loss has the mean of the per-example gradients as its gradient
    g_batch = jax.grad(lambda p: jnp.mean(jax.vmap(loss1, in_axes=(None, 0, 0))(p, x, y)))(params)
    np.testing.assert_allclose(
        np.concatenate([np.asarray(v).ravel() for v in jax.tree.leaves(g_batch)]), flat.mean(0), rtol=1e-4, atol=1e-7
    )
    batch, reps = 16, 4000
    stats = gradient_noise_stats(per_ex, batch)
    rng = np.random.default_rng(0)
    g = flat.mean(0)
    dev = np.array([np.sum((flat[rng.integers(0, 256, batch)].mean(0) - g) ** 2) for _ in range(reps)])
    brute = np.sum(g**2) / dev.mean()
    rel_se = dev.std() / dev.mean() / np.sqrt(reps)
    assert abs(float(stats["snr_b"]) / brute - 1) < 5 * rel_se
    assert float(stats["b_simple"]) == pytest.approx(batch / float(stats["snr_b"]), rel=1e-5)
    # claim 3 of the brief: linear in B
    assert float(gradient_noise_stats(per_ex, 64)["snr_b"]) == pytest.approx(4 * float(stats["snr_b"]), rel=1e-6)


# ------------------------------------------------------------------ sharding


SHARDED_CHILD = textwrap.dedent(
    """
    import json, sys, numpy as np
    sys.path.insert(0, {root!r})
    import jax
    assert len(jax.devices()) == 8, jax.devices()
    from ib_jax import data, train
    from tests.train.test_train import CFG
    tr = train.Trainer(CFG, data.tishby12(seed=0, train_fraction=0.85))
    states = tr.init(train.Population(seeds=[0, 1, 2, 3, 4, 5, 6, 7], level=[float("inf"), 10.0, 1.0, 0.3] * 2))
    assert len(states.params["Dense_0"]["kernel"].sharding.device_set) == 8
    _, m = tr.run(states, [0, 10, 10])
    print(json.dumps({{k: np.asarray(v).tolist() for k, v in m.items() if k in ("train_loss", "binning/i_xt", "noise_angle")}}))
    """
)


def test_sharded_population_equals_unsharded(trainer):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SHARDED_CHILD.format(root=root)], capture_output=True, text=True, env=env, cwd=root, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    _, m = run(trainer, train.Population(seeds=[0, 1, 2, 3, 4, 5, 6, 7], level=[INF, 10.0, 1.0, 0.3] * 2), [0, 10, 10])
    for k, v in sharded.items():
        # losses and angles: float tolerance. Binned quantities are step functions of the
        # activations: the 8-device program rounds differently in the last bit, which can move
        # one of the 4096 rows across a bin edge: |dH| <= ~ 2 log2(n) / n = 6e-3 bits.
        atol = 6e-3 if k.startswith("binning/") else 1e-6
        np.testing.assert_allclose(np.asarray(v, float), np.asarray(m[k], float), rtol=1e-5, atol=atol, err_msg=k)


# ---------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    "cfg,match",
    [
        (C.Config(optimizer=C.OptimizerConf(name="lbfgs")), r"optimizer\.name"),
        (C.Config(optimizer=C.OptimizerConf(learning_rate=-1.0)), r"optimizer\.learning_rate"),
        (C.Config(optimizer=C.OptimizerConf(batch_size=10**6)), r"optimizer\.batch_size"),
        (C.Config(noise=C.NoiseConf(kind="pink")), r"noise\.kind"),
        (C.Config(noise=C.NoiseConf(kind="cone", mode="disk")), r"noise\.mode"),
        (C.Config(estimator=C.EstimatorConf(names=("mine",))), r"estimator\.names"),
        (C.Config(estimator=C.EstimatorConf(names=("knn",), knn=C.KnnConf(k=5000), n_info=100)), r"estimator\.knn\.k"),
    ],
)
def test_bad_config_fails_before_compute(cfg, match):
    # every check lives in job.build.validate, which builds the job's pieces but compiles nothing
    with pytest.raises(ValueError, match=match):
        validate(cfg)


def test_trainer_checks_the_batch_size_itself(tishby):
    # the engine's one own check: a batch larger than the training split cannot be drawn
    with pytest.raises(ValueError, match=r"optimizer\.batch_size"):
        train.Trainer(C.Config(model=MODEL, optimizer=C.OptimizerConf(batch_size=len(tishby.y_train) + 1)), tishby)


def test_bad_population_and_model():
    with pytest.raises(ValueError, match="snr"):
        train.Population(seeds=[0], level=[-1.0])
    with pytest.raises(ValueError, match=r"model\.activation"):
        models.build(C.ModelConf(activation="swish"), 2)


def test_scheduled_update_noise_and_sgd_shaped_noise_in_the_trainer(tishby):
    # cone noise after Adam with a schedule: the last step's realized SNR is level * schedule(count)
    sched = C.ScheduleConf(kind="linear", params={"init_value": 1.0, "end_value": 0.1, "transition_steps": 10})
    cfg = C.Config(
        model=MODEL,
        optimizer=C.OptimizerConf(name="adam", batch_size=64),
        noise=C.NoiseConf(kind="cone", position="update"),
        schedule=sched,
        estimator=C.EstimatorConf(names=()),
        steps=12,
        n_evals=1,
        probe_size=0,
    )
    res = train.train_population(cfg, tishby, train.Population(seeds=[0, 1], level=[4.0, 20.0]))
    np.testing.assert_allclose(res.final("noise_realized_snr"), [0.4, 2.0], rtol=1e-3)  # schedule(11) = 0.1
    # SGD-shaped noise: per-example gradients of each member's own batch drive it
    cfg = C.Config(
        model=MODEL,
        optimizer=C.OptimizerConf(name="adam", batch_size=32),
        noise=C.NoiseConf(kind="sgd_shaped"),
        estimator=C.EstimatorConf(names=()),
        steps=8,
        n_evals=1,
        probe_size=0,
    )
    res = train.train_population(cfg, tishby, train.Population(seeds=[0, 0], level=[INF, 1.0]))
    snr = res.final("noise_realized_snr")
    assert snr[0] == np.inf and 0 < snr[1] < np.inf
    assert np.isfinite(res.final("train_loss")).all()
    a, b = (jax.tree.map(lambda x: np.asarray(x)[i], res.state.params) for i in (0, 1))
    assert not np.allclose(a["Dense_0"]["kernel"], b["Dense_0"]["kernel"])  # same seed: only the noise differs
