"""The noisy-iterative bound by hand, its monotonicity in sigma, and DP-SGD's epsilon against the
accountant called directly."""

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant

from ib_jax.bounds import HostContext, epsilon
from ib_jax.bounds.dp import dp
from ib_jax.bounds.noisy_iterative import noisy_iterative
from ib_jax.config import BoundsConf, Config, DpConf, NoiseConf, OptimizerConf


def _cfg(kind="fixed", position="gradient", clip_norm=1.0, **noise):
    return Config(
        noise=NoiseConf(kind=kind, position=position, **noise),
        optimizer=OptimizerConf(name="sgd", clip_norm=clip_norm if kind != "dp_sgd" else None),
        bounds=BoundsConf(dp=DpConf(delta=1e-5)),
        steps=10,
    )


def _ctx(levels, steps, *, lr=0.1, d=3, m=100, batch=10, train_acc=None):
    P, E = len(levels), len(steps)
    metrics = {"train_loss": np.zeros((E, P)), "train_accuracy": np.full((E, P), 0.9 if train_acc is None else train_acc)}
    return HostContext(np.asarray(steps), np.asarray(levels, float), np.full(P, lr), m, batch, d, metrics)


def test_two_step_example_by_hand():
    """d = 3, L = 1, eta = 0.1, sigma = 0.5, two steps: gradient-position noise reaches the weights
    as eta sigma, so each step adds (3/2) ln(1 + 1 / (3 * 0.25)); update-position noise adds
    (3/2) ln(1 + 0.01 / (3 * 0.25))."""
    ctx = _ctx([0.5], [1, 2], lr=0.1, d=3, m=100)
    grad = noisy_iterative(ctx, _cfg(position="gradient"))
    per_step = 1.5 * math.log(1 + 1 / (3 * 0.25))
    assert grad["noisy_iterative_info"][:, 0] == pytest.approx([per_step, 2 * per_step])
    assert grad["noisy_iterative_gap"][1, 0] == pytest.approx(math.sqrt(2 * per_step / 200))
    upd = noisy_iterative(ctx, _cfg(position="update"))
    per_step = 1.5 * math.log(1 + 0.01 / (3 * 0.25))
    assert upd["noisy_iterative_info"][:, 0] == pytest.approx([per_step, 2 * per_step])


def test_the_bound_falls_with_sigma_and_grows_with_steps():
    sigmas = [0.0, 0.01, 0.1, 1.0, 10.0]
    out = noisy_iterative(_ctx(sigmas, [1, 5, 10], d=50), _cfg())
    info = out["noisy_iterative_info"]
    assert np.isinf(info[:, 0]).all()  # no noise: no bound
    assert np.all(np.diff(info[:, 1:], axis=1) < 0)  # more noise, less information
    assert np.all(np.diff(info[:, 1:], axis=0) > 0)  # more steps, more information


def test_dp_sgd_gives_its_own_norm_bound_and_noise():
    """dp_sgd: L = C and the gradient noise std is z C / B."""
    ctx = _ctx([2.0], [3], lr=0.1, d=4, batch=8)
    got = noisy_iterative(ctx, _cfg(kind="dp_sgd", clip=0.5))["noisy_iterative_info"][0, 0]
    std = 2.0 * 0.5 / 8
    assert got == pytest.approx(3 * 2.0 * math.log(1 + 0.25 / (4 * std**2)))


@pytest.mark.parametrize("n,batch,z,steps", [(3400, 256, 1.1, 500), (1000, 1000, 2.0, 30), (5000, 64, 0.8, 2000)])
def test_epsilon_matches_the_accountant_called_directly(n, batch, z, steps):
    acc = RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    g = dpa.GaussianDpEvent(z / 2)  # replace-one: the clipped sum's sensitivity is 2C
    event = g if batch >= n else dpa.SampledWithoutReplacementDpEvent(n, batch, g)
    acc.compose(dpa.SelfComposedDpEvent(event, steps))
    assert epsilon(n, batch, z, steps, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_dp_bound_columns():
    ctx = _ctx([0.0, 1.0, 4.0], [0, 10, 100], m=1000, batch=100, train_acc=0.8)
    out = dp(ctx, _cfg(kind="dp_sgd"))
    eps = out["dp_epsilon"]
    assert np.all(eps[0] == 0) and np.isinf(eps[1:, 0]).all()
    assert np.all(np.diff(eps[1:, 1:], axis=1) < 0) and np.all(np.diff(eps[:, 1:], axis=0) > 0)
    assert out["dp_gap"][2, 2] == pytest.approx(math.expm1(eps[2, 2]) * 0.2 + 1e-5)
