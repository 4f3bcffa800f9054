"""Image models return logits and per-block hidden tensors; wide layers reduce to fixed feature views.

Tiny shapes throughout (8x8 inputs, a few channels, one block per stage) to keep compile time low.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ib_jax.estimators import layer_features as lf
from ib_jax.models import CNN2D, ResNet20
from ib_jax.models.layers import as_images as _as_images

X8 = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
TINY = dict(width=0.25, blocks_per_stage=1)  # 4/8/16 channels


def _count(tree):
    return sum(a.size for a in jax.tree.leaves(tree))


def jinit(m, x, seed=0):
    """Variables with ``init``'s structure, filled by numpy (kernels N(0, 1/fan_in), biases N(0, 0.01),
    BN scale 1, running mean 0 / var 1): compiling a ResNet's ``init`` costs ~8 CPU-s, its ``apply``
    < 1 s. ``init`` itself is exercised by the population test."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape).astype(np.float32)
        if name in ("scale", "var", "mean"):
            return np.full(s.shape, float(name != "mean"), np.float32)
        return rng.normal(0, 0.1, s.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(m.init, jax.random.key(0), x))


@functools.cache  # modules are frozen dataclasses (hashable): one jitted apply per model, reused across tests
def _apply_fn(m):
    return jax.jit(m.apply)


def japply(m, v, x):
    return _apply_fn(m)(v, x)


@pytest.fixture(scope="module")
def plain_resnet():
    """A tiny ResNet without batch norm, its variables and its hidden tensors on X8 (shared by two tests)."""
    m = ResNet20(batch_norm=False, **TINY)
    v = jinit(m, X8)
    return m, v, japply(m, v, X8)[1]


@pytest.mark.parametrize("act,pool", [("relu", "max"), ("tanh", "avg")])
def test_cnn2d_hidden_is_the_pooled_activation(act, pool):
    m = CNN2D(channels=(2, 3), dense=(5,), n_classes=4, kernel_size=3, activation=act, pool=pool)
    x = X8[..., :1]
    v = jinit(m, x)
    logits, hidden = japply(m, v, x)
    assert logits.shape == (3, 4) and [h.shape for h in hidden] == [(3, 4 * 4 * 2), (3, 2 * 2 * 3), (3, 5)]
    assert m.hidden_channels() == (2, 3, None)
    # reference for block 1: SAME conv + bias, nonlinearity, 2x2/2 pooling, flattened channel-last
    p = v["params"]["Conv_0"]
    z = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
    a = {"relu": jax.nn.relu, "tanh": jnp.tanh}[act](z).reshape(3, 4, 2, 4, 2, 2)
    ref = a.max(axis=(2, 4)) if pool == "max" else a.mean(axis=(2, 4))
    np.testing.assert_allclose(hidden[0], ref.reshape(3, -1), rtol=1e-5, atol=1e-6)


def test_inputs_become_images():
    # the first thing both models do: flat rows (with input_shape) and (n, H, W) arrays become (n, H, W, C)
    x = X8[..., :1]
    np.testing.assert_array_equal(_as_images(x.reshape(3, -1), (8, 8, 1)), x)
    np.testing.assert_array_equal(_as_images(x[..., 0], None), x)
    assert _as_images(X8, None) is X8


def test_cnn2d_population_init_and_bad_configs():
    m = CNN2D(channels=(2,), dense=(3,), n_classes=2, kernel_size=3)
    vs = jax.vmap(m.init, in_axes=(0, None))(jax.random.split(jax.random.key(0), 4), X8[:1, ..., :1])
    assert vs["params"]["Conv_0"]["kernel"].shape == (4, 3, 3, 1, 2)  # one parameter set per member
    assert not np.allclose(vs["params"]["Conv_0"]["kernel"][0], vs["params"]["Conv_0"]["kernel"][1])
    for bad, msg in (
        (CNN2D(activation="swish"), "model.activation"),
        (CNN2D(pool="l2"), "model.conv.pool"),
        (ResNet20(shortcut="C", **TINY), "model.resnet.shortcut"),
        (ResNet20(record="all", **TINY), "model.resnet.record"),
        (ResNet20(blocks_per_stage=0), "model.resnet.blocks_per_stage"),
    ):
        with pytest.raises(ValueError, match=msg):
            bad.init(jax.random.key(0), X8)
    with pytest.raises(ValueError, match="model.input_shape"):
        CNN2D().init(jax.random.key(0), X8.reshape(3, -1))


def test_resnet20_is_the_paper_size():
    # He et al. (2016), table 6: ResNet-20 on CIFAR-10 has 0.27M parameters (option A shortcuts)
    v = jax.eval_shape(ResNet20().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert _count(v["params"]) == 269_722
    m = ResNet20()
    logits, hidden = jax.eval_shape(m.apply, v, jnp.zeros((2, 32, 32, 3)))
    assert logits.shape == (2, 10)
    assert [h.shape[1] for h in hidden] == [32 * 32 * 16] * 4 + [16 * 16 * 32] * 3 + [8 * 8 * 64] * 3 + [64]
    assert len(m.hidden_channels()) == len(hidden)
    vb = jax.eval_shape(ResNet20(shortcut="B").init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    # option B adds two 1x1 projections with BN: 16*32 + 2*32 + 32*64 + 2*64 parameters
    assert _count(vb["params"]) - 269_722 == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64


def test_resnet_hidden_blocks_and_option_a_shortcut(plain_resnet):
    m, v, _ = plain_resnet
    # zero every conv after the stem: each block's residual branch is 0, so its output is act(shortcut)
    params = {k: (jax.tree.map(jnp.zeros_like, p) if k.startswith("Conv_") and k != "Conv_0" else p) for k, p in v["params"].items()}
    logits, hidden = japply(m, {"params": params}, X8)
    assert [h.shape for h in hidden] == [(3, 8 * 8 * 4), (3, 8 * 8 * 4), (3, 4 * 4 * 8), (3, 2 * 2 * 16), (3, 16)]
    assert m.hidden_channels() == (4, 4, 8, 16, None)
    stem, b1, b2, b3, pooled = hidden
    assert float(jnp.abs(stem).max()) > 0
    np.testing.assert_allclose(b1, stem, rtol=1e-6)  # identity shortcut, relu(relu(s)) = relu(s)
    # option A: every second pixel, new channels zero
    want2 = jnp.pad(b1.reshape(3, 8, 8, 4)[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (0, 4)))
    np.testing.assert_allclose(b2.reshape(3, 4, 4, 8), want2, rtol=1e-6)
    np.testing.assert_allclose(pooled, b3.reshape(3, 2, 2, 16).mean(axis=(1, 2)), rtol=1e-6)
    # record="stages" keeps each stage's last block (here the only one) and the pooled vector
    _, stages = japply(ResNet20(batch_norm=False, record="stages", **TINY), {"params": params}, X8)
    assert len(stages) == 4
    for a, b in zip(stages, hidden[1:]):
        np.testing.assert_array_equal(a, b)


def test_resnet_batch_norm_train_and_eval():
    m = ResNet20(**TINY)
    v = jinit(m, X8)
    x2 = X8.at[1:].set(jax.random.normal(jax.random.key(5), X8[1:].shape) * 3.0)  # other rows change, row 0 does not
    ev = jax.jit(lambda v, x: m.apply(v, x, train=False)[0])
    tr = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"]))
    # eval uses running averages: each row's output depends on that row alone
    np.testing.assert_allclose(ev(v, X8)[0], ev(v, x2)[0], rtol=1e-5, atol=1e-6)
    # train uses batch statistics: row 0's output moves when the rest of the batch changes
    (l1, _), upd = tr(v, X8)
    (l2, _), _ = tr(v, x2)
    assert float(jnp.abs(l1[0] - l2[0]).max()) > 1e-3
    # running stats after one step: 0.9 * init + 0.1 * batch (biased variance) of the stem conv output
    z = nn.Conv(4, (3, 3), padding="SAME", use_bias=False).apply({"params": v["params"]["Conv_0"]}, X8)
    bs = upd["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(bs["mean"], 0.1 * z.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bs["var"], 0.9 + 0.1 * z.var(axis=(0, 1, 2)), rtol=1e-4)
    # eval with the updated statistics differs from eval with the initial ones
    v2 = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    assert float(jnp.abs(ev(v2, X8) - ev(v, X8)).max()) > 1e-4


@pytest.mark.parametrize(
    "make", [lambda: CNN2D(channels=(2, 3), dense=(4,), n_classes=3, kernel_size=3, dropout=0.5), lambda: ResNet20(dropout=0.5, **TINY)]
)
def test_dropout_is_a_function_of_the_key(make):
    m = make()
    v = jinit(m, X8)
    run = jax.jit(lambda v, k: m.apply(v, X8, train=True, rngs={"dropout": k}, mutable=["batch_stats"])[0])
    (a, ha), (b, _), (c, hc) = run(v, jax.random.key(1)), run(v, jax.random.key(1)), run(v, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-4
    np.testing.assert_array_equal(ha[0], hc[0])  # the first block is recorded before any dropout
    assert float(jnp.abs(ha[1] - hc[1]).max()) > 1e-4  # the second sees a dropped input
    ev = jax.jit(lambda v: m.apply(v, X8, train=False)[0])  # eval: no dropout, no rng needed
    np.testing.assert_array_equal(ev(v), ev(v))
    np.testing.assert_array_equal(ev(v), jax.jit(lambda v, k: m.apply(v, X8, train=False, rngs={"dropout": k})[0])(v, jax.random.key(3)))


# ---------------------------------------------------------------- layer_features

CODED = jnp.broadcast_to(jnp.arange(50, dtype=jnp.float32), (4, 50))  # column j holds j: a column names itself
reduce_jit = jax.jit(lf.reduce_features, static_argnames=("policy", "max_units", "channels"))


def test_random_units_fixed_subset():
    out = lf.reduce_features(CODED, "random_units", 7, 3)
    idx = np.asarray(out[0]).astype(int)
    assert out.shape == (4, 7) and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 50
    assert np.all(out == out[0])  # the same units for every row
    np.testing.assert_array_equal(reduce_jit(CODED, "random_units", 7, jax.random.key(3)), out)  # seed == key(seed), under jit
    np.testing.assert_array_equal(lf.reduce_features(CODED * 2, "random_units", 7, 3), 2 * out)  # same units at another evaluation
    assert not np.array_equal(lf.reduce_features(CODED, "random_units", 7, 4), out)
    np.testing.assert_array_equal(lf.reduce_features(CODED, "random_units", 50, 3), CODED)
    np.testing.assert_array_equal(lf.reduce_features(CODED.reshape(4, 5, 10), "all", 1, 0), CODED)
    # uniform: over S keys unit j is kept ~Binomial(S, m/D); S=1000, m/D=0.3 gives mean 300,
    # sd sqrt(1000 * 0.3 * 0.7) = 14.5, and 5 sd bounds all 10 counts (p(fail) < 1e-5)
    subsets = jax.vmap(lambda k: lf.unit_subset(k, 10, 3))(jax.random.split(jax.random.key(0), 1000))
    counts = np.bincount(np.asarray(subsets).ravel(), minlength=10)
    assert np.all(np.abs(counts - 300) < 5 * 14.5), counts


def test_channel_mean_and_fallbacks():
    t4 = jax.random.normal(jax.random.key(0), (3, 4, 4, 6))
    want = t4.mean(axis=(1, 2))
    np.testing.assert_allclose(lf.reduce_features(t4.reshape(3, -1), "channel_mean", 100, 0, channels=6), want, rtol=1e-5)
    np.testing.assert_allclose(reduce_jit(t4, "channel_mean", 100, 0), want, rtol=1e-5)
    few = lf.reduce_features(t4, "channel_mean", 2, 9)
    np.testing.assert_allclose(few, want[:, np.asarray(lf.unit_subset(9, 6, 2))], rtol=1e-5)
    np.testing.assert_array_equal(lf.reduce_features(CODED, "channel_mean", 5, 1), lf.reduce_features(CODED, "random_units", 5, 1))
    for args, kw, msg in (
        ((t4, "pca", 5), {}, "estimator.wide_policy"),
        ((CODED, "random_units", 0), {}, "estimator.max_units"),
        ((t4, "channel_mean", 5), {"channels": 4}, "channels=4"),
        ((CODED, "channel_mean", 5), {"channels": 7}, "not a multiple"),
    ):
        with pytest.raises(ValueError, match=msg):
            lf.reduce_features(*args, **kw)


def test_reduce_hidden_on_a_model(plain_resnet):
    m, _, hidden = plain_resnet
    red = lf.reduce_hidden(hidden, "channel_mean", 8, seed=0, channels=m.hidden_channels())
    assert [r.shape for r in red] == [(3, 4), (3, 4), (3, 8), (3, 8), (3, 8)]
    np.testing.assert_allclose(red[1], hidden[1].reshape(3, 64, 4).mean(1), rtol=1e-5)
    a, b = lf.reduce_hidden([CODED, CODED], "random_units", 3, seed=0)
    assert not np.array_equal(a, b)  # layers get independent subsets
    np.testing.assert_array_equal(lf.reduce_hidden([CODED, CODED], "random_units", 3, seed=0)[1], b)
    with pytest.raises(ValueError, match="2 channel counts for 5 layers"):
        lf.reduce_hidden(hidden, "channel_mean", 8, channels=(4, 4))
