"""Models return logits and every hidden layer; dropout, batch norm and every estimator train end to end."""

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax import config as C
from ib_jax import data, models, train


def test_forward_returns_every_hidden_layer():
    x = jnp.ones((5, 40))
    mlp = models.build(C.ModelConf(widths=(7, 5, 3), activation="gelu"), 4)
    v = mlp.init(jax.random.key(0), x)
    logits, hidden = mlp.apply(v, x)
    assert logits.shape == (5, 4) and [h.shape for h in hidden] == [(5, 7), (5, 5), (5, 3)]
    cnn = models.build(C.ModelConf(kind="cnn1d", conv=C.ConvConf(channels=(4, 6)), activation="relu"), 10)
    v = cnn.init(jax.random.key(0), x)
    logits, hidden = cnn.apply(v, x)
    assert logits.shape == (5, 10) and [h.shape for h in hidden] == [(5, 20 * 4), (5, 10 * 6)]
    for act in models.ACTIVATIONS:  # each activation is what it says on a known input
        m = models.build(C.ModelConf(widths=(3,), activation=act), 2)
        params = jax.tree.map(jnp.ones_like, m.init(jax.random.key(0), jnp.ones((1, 2))))
        _, (h,) = m.apply(params, jnp.array([[0.5, -1.0]]))  # pre-activation = -0.5 + 1 (bias) = 0.5
        np.testing.assert_allclose(h, models.ACTIVATIONS[act](jnp.full((1, 3), 0.5)), rtol=1e-6)


def test_dropout_batchnorm_and_all_estimators_train():
    ds = data.tishby12()
    cfg = C.Config(
        model=C.ModelConf(widths=(8, 4), activation="relu", dropout=0.2, batch_norm=True),
        optimizer=C.OptimizerConf(name="adam", learning_rate=0.01, batch_size=64),
        steps=30,
        n_evals=2,
        probe_size=0,
        estimator=C.EstimatorConf(
            names=("binning", "binning_quantile", "knn", "kde", "channel"),
            n_info=128,
            binning=C.BinningConf(lo=None, hi=None),
            channel=C.ChannelConf(n=32, samples=4),
        ),
    )
    res = train.train_population(cfg, ds, train.population_grid([0, 1], [float("inf")]))
    assert res.layer_names == ["h1", "h2", "output"]
    for key in (
        "binning/i_xt",
        "binning_quantile/i_ty",
        "knn/h_t",
        "knn/i_ty",
        "kde/i_xt",
        "kde/i_xt_lower",
        "kde/h_x_given_t",
        "channel/i_xt",
        "channel/h_x_given_t",
    ):
        v = res.metrics[key]
        assert v.shape == (2, len(res.steps), 3) and np.isfinite(v).all(), key
    assert (res.metrics["kde/i_xt_lower"] <= res.metrics["kde/i_xt"] + 1e-5).all()
    assert (res.metrics["kde/i_xt"] <= np.log2(128) + 1e-4).all()
    np.testing.assert_allclose(res.metrics["channel/i_xt"] + res.metrics["channel/h_x_given_t"], 5.0, atol=1e-4)  # log2(32)
    bs = jax.tree.leaves(res.state.batch_stats)
    assert bs and not np.allclose(np.asarray(bs[0])[0], np.asarray(bs[0])[1])  # running stats moved, per member
    assert np.isfinite(res.final("train_loss")).all()
