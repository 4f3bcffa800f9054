import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ib_jax.noise import schedules


@pytest.mark.parametrize(
    "cfg,t,expected",
    [
        (5.0, 100, 5.0),
        ({"kind": "constant", "value": 2.0}, 7, 2.0),
        ({"kind": "linear", "init_value": 10.0, "end_value": 0.0, "transition_steps": 10}, 5, 5.0),
        ({"kind": "cosine", "init_value": 2.0, "decay_steps": 10}, 5, 1.0),
        ({"kind": "exponential", "init_value": 8.0, "decay_rate": 0.5, "transition_steps": 2}, 4, 2.0),
        ({"kind": "piecewise", "init_value": 1.0, "boundaries_and_scales": {"3": 10.0, "6": 10.0}}, 7, 100.0),
        ({"kind": "warmup", "target": 1.0, "warmup_steps": 4, "init_value": 100.0}, 2, 10.0),
        ({"kind": "warmup", "target": 1.0, "warmup_steps": 4, "init_value": 100.0}, 9, 1.0),
        ({"kind": "warmup", "target": 0.0, "warmup_steps": 4, "init_value": 1.0, "geometric": False}, 1, 0.75),
        ({"kind": "anneal", "eta": 0.3, "gamma": 0.55}, 9, np.sqrt(0.3 / 10**0.55)),
    ],
)
def test_from_config_values(cfg, t, expected):
    sched = schedules.from_config(cfg)
    assert float(sched(jnp.asarray(t))) == pytest.approx(expected, rel=1e-5)


def test_piecewise_keeps_inf_snr():
    sched = schedules.piecewise(float("inf"), {})
    assert float(sched(3)) == np.inf


def test_anneal_matches_add_noise_variance_law():
    sched = schedules.anneal(0.01, 0.55)
    for t in range(5):
        assert float(sched(t)) ** 2 == pytest.approx(0.01 / (1 + t) ** 0.55, rel=1e-5)


def test_schedules_are_optax_schedules():
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedules.from_config({"kind": "cosine", "init_value": 1.0, "decay_steps": 4}))
    assert tx.init(jnp.zeros(2)) is not None


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"kind": "triangle"}, "schedule.kind"),
        ({"kind": "linear", "init": 1.0}, "bad arguments"),
        ({"kind": "warmup", "target": 1.0, "warmup_steps": 0, "init_value": 2.0}, "warmup_steps"),
        ({"kind": "anneal", "eta": -1.0}, "eta"),
    ],
)
def test_bad_config_raises(cfg, match):
    with pytest.raises(ValueError, match=match):
        schedules.from_config(cfg)
