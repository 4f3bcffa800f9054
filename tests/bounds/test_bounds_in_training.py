"""The bounds as a population trains: clipping really bounds every step, DP-SGD's aggregation and
sampling, the bounds recorded beside the gap and never below what the population measured, and
validation naming every bad key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ib_jax import noise as N
from ib_jax.config import from_hydra
from ib_jax.job.build import validate
from ib_jax.train import Trainer, train_population
from ib_jax.train.step import Step, make_tx

SMALL = {"estimator": {"names": []}, "probe_size": 0, "diagnostics": [], "n_evals": 2}


def _built(over):
    return validate(from_hydra({**SMALL, **over}))


def test_clip_norm_bounds_every_step():
    """optimizer.clip_norm=L with sigma = 0 and SGD at lr 1: every update's norm is <= L (the
    bound's assumption), while the unclipped gradients are larger."""
    b = _built({"noise": {"kind": "fixed", "snr": [0.0]}, "optimizer": {"name": "sgd", "learning_rate": 1.0, "clip_norm": 0.05}})
    step = Step(b.config, b.dataset.n_classes)
    x, y = jnp.asarray(b.dataset.x_train[:64]), jnp.asarray(b.dataset.y_train[:64])
    state = step.init(0, 0.0, 1.0, x[:2])
    train = jax.jit(step.train_step)
    raw = []
    for t in range(5):
        grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(step.apply(p, None, x, train=False)[0], y).mean())(
            state.params
        )
        raw.append(float(optax.tree.norm(grads)))
        new, _ = train(state, (x, y), jax.random.key(t))
        moved = optax.tree.norm(jax.tree.map(lambda a, b: a - b, new.params, state.params))
        assert float(moved) <= 0.05 * (1 + 1e-5)
        state = new
    assert max(raw) > 0.05  # the clip did something


def test_dp_sgd_with_no_noise_is_the_mean_of_clipped_per_example_gradients():
    rng = np.random.default_rng(0)
    per_ex = {"w": jnp.asarray(rng.normal(size=(6, 3, 2)) * 3, jnp.float32), "b": jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)}
    mean = jax.tree.map(lambda g: g.mean(0), per_ex)
    tx = N.dp_sgd(0.0, 1.0, jax.random.key(0))
    out, state = tx.update(mean, tx.init(mean), per_example_grads=per_ex)
    norms = np.sqrt(sum(np.square(np.asarray(g)).reshape(6, -1).sum(1) for g in per_ex.values()))
    scale = np.minimum(1.0, 1.0 / norms)
    for k in per_ex:
        expected = (np.asarray(per_ex[k]) * scale.reshape((6,) + (1,) * (per_ex[k].ndim - 1))).mean(0)
        np.testing.assert_allclose(np.asarray(out[k]), expected, rtol=1e-5, atol=1e-6)
    assert int(state.count) == 1
    # with noise: the std of the output around the clipped mean is z C / B per coordinate
    tx = N.dp_sgd(2.0, 1.0, jax.random.key(1))
    draws = jax.vmap(lambda k: tx.update(mean, N.reseed(tx.init(mean), k), per_example_grads=per_ex)[0]["w"])(
        jax.random.split(jax.random.key(2), 4000)
    )
    std = float(np.std(np.asarray(draws) - np.asarray(out["w"])))
    assert std == pytest.approx(2.0 / 6, rel=0.05)  # 4000 x 6 draws: the std's relative error is ~0.5%


def test_dp_sgd_draws_distinct_rows_each_step():
    b = _built({"noise": {"kind": "dp_sgd", "snr": [1.0]}, "optimizer": {"name": "sgd", "batch_size": 512}})
    tr = Trainer(b.config, b.dataset)
    assert tr.sampling == "without_replacement"
    x, _ = tr._batch(jax.random.key(3), tr.data)
    assert len(np.unique(np.asarray(x), axis=0)) == 512  # tishby12's training rows are distinct patterns


@pytest.fixture(scope="module")
def fixed_population():
    """8 seeds of the tishby network under fixed Gaussian noise with a clipped gradient and plain
    SGD: the setting in which all the noisy-iterative bound's assumptions hold."""
    b = _built(
        {
            "noise": {"kind": "fixed", "snr": [1.0, 3.0]},
            "optimizer": {"name": "sgd", "learning_rate": 0.3, "clip_norm": 1.0, "batch_size": 256},
            "steps": 200,
            "seeds": 8,
            "bounds": {"pac_bayes": {"mc_draws": 4}},
        }
    )
    tr = Trainer(b.config, b.dataset)
    return tr, train_population(b.config, b.dataset, b.population, trainer=tr)


def test_measured_gaps_stay_below_the_bounds(fixed_population):
    tr, res = fixed_population
    assert tr.bounds_skipped == {"dp": "noise.kind=fixed: no privacy guarantee to account (noise=dp_sgd)"}
    level = np.array([m["level"] for m in res.members])
    gap = res.final("gap_accuracy")
    for lv in np.unique(level):
        g = gap[level == lv]
        upper = g.mean() + 2.998 * g.std(ddof=1) / np.sqrt(len(g))  # one-sided 99% t (7 dof) upper limit
        bound = res.final("bound/noisy_iterative_gap")[level == lv]
        assert np.allclose(bound, bound[0]) and np.isfinite(bound[0])  # a property of the config, the same for every seed
        assert upper <= bound[0], (lv, g, bound[0])
    # the non-vacuous case is really tested: at sigma = 3 the bound is below 0.1
    assert res.final("bound/noisy_iterative_gap")[level == 3.0][0] < 0.1
    # PAC-Bayes: the stochastic network's measured test error never exceeds its bound
    assert np.all(res.final("bound/pac_bayes_test_error") <= res.final("bound/pac_bayes"))
    # its KL is ||W - W_0||^2 / (2 s^2) at the chosen s
    w0 = tr.reference
    dist2 = sum(
        np.square(np.asarray(a) - np.asarray(b)).reshape(len(level), -1).sum(1)
        for a, b in zip(jax.tree.leaves(res.state.params), jax.tree.leaves(w0))
    )
    s = res.final("bound/pac_bayes_sigma")
    np.testing.assert_allclose(res.final("bound/pac_bayes_kl"), dist2 / (2 * s**2), rtol=1e-4)


def test_the_bound_is_monotone_in_sigma_in_training(fixed_population):
    _, res = fixed_population
    level = np.array([m["level"] for m in res.members])
    info = res.final("bound/noisy_iterative_info")
    assert info[level == 1.0].min() > info[level == 3.0].max()


def test_dp_sgd_population_records_epsilon_beside_the_accountant():
    b = _built(
        {
            "noise": {"kind": "dp_sgd", "snr": [1.0, 4.0], "clip": 1.0},
            "optimizer": {"name": "sgd", "learning_rate": 0.5, "batch_size": 256},
            "steps": 60,
            "seeds": 2,
            "bounds": {"names": ["dp", "noisy_iterative"]},
        }
    )
    res = train_population(b.config, b.dataset, b.population)
    from ib_jax.bounds import epsilon

    n = len(b.dataset.y_train)
    for m in res.members:
        assert res.metrics["bound/dp_epsilon"][m["member"], -1] == pytest.approx(epsilon(n, 256, m["level"], 60, 1e-5))
    assert np.all(res.final("gap_accuracy") <= res.final("bound/dp_gap"))
    assert "bound/pac_bayes" not in res.metrics


@pytest.mark.parametrize(
    "over,key",
    [
        ({"bounds": {"names": ["nope"]}}, "bounds.names"),
        ({"bounds": {"names": ["dp", "dp"]}}, "bounds.names"),
        ({"bounds": {"delta": 1.5}}, "bounds.delta"),
        ({"bounds": {"pac_bayes": {"sigmas": [0.1, -1.0]}}}, "bounds.pac_bayes.sigmas"),
        ({"bounds": {"pac_bayes": {"mc_draws": 0}}}, "bounds.pac_bayes.mc_draws"),
        ({"noise": {"kind": "dp_sgd", "snr": [1.0]}, "bounds": {"dp": {"delta": 0.01}}}, "bounds.dp.delta"),
        ({"noise": {"kind": "dp_sgd", "snr": [1.0], "clip": 0.0}}, "noise.clip"),
        ({"noise": {"kind": "dp_sgd", "snr": [1.0], "position": "update"}}, "noise.position"),
        ({"noise": {"kind": "dp_sgd", "snr": [-1.0]}}, "noise.snr"),
        ({"noise": {"kind": "dp_sgd", "snr": [1.0]}, "optimizer": {"clip_norm": 1.0}}, "optimizer.clip_norm"),
        ({"optimizer": {"clip_norm": -2.0}}, "optimizer.clip_norm"),
    ],
)
def test_bad_bound_settings_are_refused_naming_the_key(over, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _built(over)


@pytest.mark.parametrize(
    "over,skipped",
    [
        ({"noise": {"kind": "isotropic", "snr": [1.0]}}, ("noisy_iterative", "not data-independent")),
        ({"noise": {"kind": "fixed", "snr": [1.0]}, "optimizer": {"name": "adam"}}, ("noisy_iterative", "optimizer=adam")),
        ({"noise": {"kind": "fixed", "snr": [1.0]}, "optimizer": {"name": "sgd"}}, ("noisy_iterative", "optimizer.clip_norm")),
        ({"noise": {"kind": "fixed", "snr": [1.0]}}, ("dp", "noise=dp_sgd")),
        (
            {"noise": {"kind": "dp_sgd", "snr": [1.0]}, "schedule": {"kind": "cosine", "params": {"init_value": 1.0, "decay_steps": 100}}},
            ("dp", "schedule"),
        ),
        ({"model": {"batch_norm": True}}, ("pac_bayes", "batch_norm")),
    ],
)
def test_a_bound_whose_assumptions_fail_records_no_number_and_says_why(over, skipped):
    from ib_jax import bounds as B

    b = _built(over)
    _, why = B.applicable(b.config)
    name, words = skipped
    assert words in why[name]
    tx = make_tx(b.config, 1.0, 0.1)  # the job still builds
    assert tx is not None
    assert dataclasses.replace(b.config.bounds, names=()).names == ()
