"""``model.init`` (flax's LeCun init or PyTorch's default) and ``model.layer_noise`` on the conv nets.

The noisy conv nets must be what sample propagation assumes: every recorded block's output is
T = S + N(0, beta^2 I), the rest of the network sees T, and ``centers=True`` gives S; the SP
estimator then runs on them with its forward passes in blocks of replicas.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ib_jax import config as C
from ib_jax import models as M
from ib_jax.estimators import EvalContext
from ib_jax.estimators.sp import replica_layers
from ib_jax.registry import ESTIMATORS

SMALL = {
    "mlp": {"widths": (64, 32)},
    "cnn2d": {"conv": C.ConvConf(channels=(4, 8), dense=(16,), kernel_size=3)},
    "resnet20": {"resnet": C.ResNetConf(width=0.25, blocks_per_stage=1)},
}
X_IMG = jax.random.uniform(jax.random.key(5), (6, 8, 8, 1), minval=-1, maxval=1)


def _x(kind):
    return X_IMG.reshape(6, -1) if kind == "mlp" else X_IMG


def _build(kind, **kw):
    return M.build(C.ModelConf(kind=kind, **SMALL[kind], **kw), 3)


def test_torch_init_is_pytorchs_default():
    """Kernels and biases uniform on +-1/sqrt(fan_in) (std 1/sqrt(3 fan_in)); lecun: std 1/sqrt(fan_in), zero biases."""
    fan_in, width = 512, 512
    x = jnp.zeros((2, fan_in))
    for init, std_factor, bias_zero in (("torch", 1 / np.sqrt(3), False), ("lecun", 1.0, True)):
        p = M.build(C.ModelConf(kind="mlp", widths=(width,), init=init), 3).init(jax.random.key(0), x)["params"]["Dense_0"]
        k, b = np.asarray(p["kernel"]), np.asarray(p["bias"])
        bound = 1 / np.sqrt(fan_in)
        n = k.size  # std of the sample std of n draws: ~ std / sqrt(2 n)
        assert abs(k.std() / (std_factor * bound) - 1) < 6 / np.sqrt(2 * n), (init, k.std())
        if init == "torch":
            assert np.abs(k).max() <= bound and np.abs(k).max() > 0.99 * bound
            assert np.abs(b).max() <= bound and abs(b.std() / (bound / np.sqrt(3)) - 1) < 6 / np.sqrt(2 * width)
        assert (not np.any(b)) == bias_zero


def test_init_scale_multiplies_the_torch_bound_and_conv_fan_in_counts_the_kernel_area():
    p = _build("cnn2d", init="torch", init_scale=2.0).init(jax.random.key(1), X_IMG)["params"]
    k = np.asarray(p["Conv_1"]["kernel"])  # 3x3 kernel over 4 input channels: fan_in 36
    assert k.shape == (3, 3, 4, 8)
    assert np.abs(k).max() <= 2.0 / 6.0 and np.abs(k).max() > 0.9 * 2.0 / 6.0


@pytest.mark.parametrize("kind", ["mlp", "cnn2d", "resnet20"])
def test_layer_noise_after_every_recorded_layer(kind):
    beta = 0.05
    net = _build(kind, layer_noise=beta)
    v = net.init(jax.random.key(0), _x(kind))
    key = {"layer_noise": jax.random.key(7)}
    noisy = net.apply(v, _x(kind), rngs=key)[1]
    clean = net.apply(v, _x(kind), rngs=key, centers=True)[1]
    det = net.apply(v, _x(kind))[1]  # no layer_noise stream: the deterministic network
    first = np.asarray(noisy[0] - clean[0])  # T_1 - S_1 is exactly the first layer's noise
    assert abs(first.std() / beta - 1) < 6 / np.sqrt(2 * first.size) and abs(first.mean()) < 6 * beta / np.sqrt(first.size)
    np.testing.assert_allclose(clean[0], det[0], rtol=1e-5, atol=1e-6)  # S_1 = f_1(x) has no noise in it
    for t, s in zip(noisy, clean):
        assert t.shape == s.shape and float(jnp.std(t - s)) > 0.5 * beta  # every recorded layer is noisy
    assert any(float(jnp.max(jnp.abs(s - d))) > 1e-4 for s, d in zip(clean[1:], det[1:]))  # later layers see T, not S


def test_sp_runs_on_a_noisy_cnn_and_replica_blocks_do_not_change_it():
    cfg = C.from_hydra(
        {
            "model": {"kind": "cnn2d", "layer_noise": 0.1, "conv": {"channels": [2, 4], "dense": [8], "kernel_size": 3}},
            "estimator": {"names": ["sp"], "sp": {"n": 6, "replicas": 4}},
        }
    )
    net = M.build(cfg.model, 3)
    v = net.init(jax.random.key(0), X_IMG)

    def apply(p, x, key=None, centers=False):
        logits, hidden = net.apply({"params": p}, x, rngs=None if key is None else {"layer_noise": key}, centers=centers)
        return [h.astype(jnp.float32) for h in hidden] + [jax.nn.softmax(logits)]

    layers = apply(v["params"], X_IMG)

    def ctx(params, key):
        return EvalContext(
            layers=layers, stacked=None, mask=None, dims=None, x=X_IMG, y=jnp.zeros(6, jnp.int32), n=6, n_classes=3,
            apply=apply, params=params, key=key,
        )  # fmt: skip

    sp = ESTIMATORS.get("sp").compute
    params2 = jax.tree.map(lambda a: jnp.stack([a, 1.5 * a]), v["params"])  # two members
    out = jax.jit(jax.vmap(lambda p, k: sp(ctx(p, k), cfg)))(params2, jax.random.split(jax.random.key(3), 2))
    i_xt = np.asarray(out["i_xt"])
    assert i_xt.shape == (2, 4) and np.all(np.isfinite(i_xt[:, :3])) and np.all(np.isnan(i_xt[:, 3]))
    assert np.all(i_xt[:, :3] >= -0.1) and np.all(i_xt[:, :3] <= np.log2(6) + 0.1)
    # the forward passes in blocks of one replica (lax.map) equal all replicas at once (vmap)
    keys = jax.random.split(jax.random.key(9), 4)
    fwd = lambda k: apply(v["params"], X_IMG, key=k, centers=True)  # noqa: E731
    a, b = replica_layers(fwd, keys), replica_layers(fwd, keys, budget_floats=1)
    for s, t in zip(a, b):
        assert s.shape[0] == 4
        np.testing.assert_allclose(s, t, rtol=1e-5, atol=1e-6)
