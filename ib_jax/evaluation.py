"""Evaluation of one member: losses, gaps, and every selected estimator via the registry.

An estimator is a function ``compute(ctx, cfg) -> {quantity: (L,) array}`` registered with
:func:`register_estimator`; its quantities are recorded as ``{name}/{quantity}/{layer}``.
``ctx`` (:class:`EvalContext`) holds the member's layers on the information set, padded to
one stack so an estimator can ``vmap`` over layers (one copy of its code to compile), the
labels, and the member's network for estimators that re-run it (weight-noise channel,
noisy-network sample propagation). ``cfg`` is the job's :class:`ib_jax.config.Config`.

Adding an estimator is one function plus one registration::

    def mean_abs(ctx, cfg):
        total = jnp.abs(ctx.stacked).sum(axis=(1, 2))          # padded units are zero
        return {"mean_abs": total / (ctx.dims * ctx.n)}
    register_estimator("mean_abs", mean_abs)               # estimator.names=[binning,mean_abs]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ib_jax import estimators as E
from ib_jax import noise as N
from ib_jax.gradient_stats import gradient_noise_stats
from ib_jax.layer_features import reduce_hidden
from ib_jax.registry import ESTIMATORS
from ib_jax.step import Step, TrainState, xent

__all__ = ["EvalContext", "Estimator", "register_estimator", "make_evaluate"]


class EvalContext(NamedTuple):
    """What an estimator sees for one member at one evaluation.

    Attributes:
      layers: the representations T, each ``(n, d_l)`` float32 (hidden layers, then the
        softmax output when ``estimator.include_output``).
      stacked: ``(L, n, d_max)`` the layers zero-padded to one width; ``mask`` ``(L, d_max)``
        marks real units; ``dims`` ``(L,)`` float32 their widths.
      x, y: the information set's inputs and labels ``(n,)``; ``n`` its size.
      n_classes: number of labels.
      apply: ``(params, x, key=None, centers=False) -> layers`` the member's network in
        evaluation mode (``key`` draws layer noise; ``centers`` returns S_l = f_l(T_{l-1})
        before a noisy network adds its noise).
      params: the member's parameters.
      key: a PRNG key fresh to this member and evaluation.
    """

    layers: list
    stacked: jax.Array
    mask: jax.Array
    dims: jax.Array
    x: jax.Array
    y: jax.Array
    n: int
    n_classes: int
    apply: Callable[..., list]
    params: Any
    key: jax.Array


class Estimator(NamedTuple):
    """``compute(ctx, cfg) -> {quantity: (L,)}``; ``check(cfg, n_info)`` raises ``ValueError``
    naming the key for settings it cannot use (run before any compute), or None."""

    compute: Callable[[EvalContext, Any], dict]
    check: Callable[[Any, int], None] | None = None


def register_estimator(name: str, compute, check=None, *, overwrite: bool = False) -> Estimator:
    est = Estimator(compute, check)
    ESTIMATORS.register(name, est, overwrite=overwrite)
    return est


# ----------------------------------------------------------------------- built-ins


def _binning(method: str, fixed_range: bool):
    def compute(ctx: EvalContext, cfg):
        e = cfg.estimator
        lo, hi = (e.lo, e.hi) if fixed_range else (None, None)
        width = e.bin_width if method == "uniform" else None
        b = jax.vmap(lambda t, m: E.binned_information(t, ctx.y, n_classes=ctx.n_classes, n_bins=e.n_bins, lo=lo, hi=hi,
                                                       method=method, unit_mask=m, bin_width=width, data_range=e.data_range,
                                                       miller_madow=e.miller_madow))(ctx.stacked, ctx.mask)
        return {q: b[q] for q in ("i_xt", "i_ty", "h_x_given_t")}

    return compute


def _knn(ctx: EvalContext, cfg):
    k = cfg.estimator.knn_k
    return {
        "h_t": jax.vmap(lambda t, d: E.knn_entropy(t, k=k, dim=d))(ctx.stacked, ctx.dims),
        "i_ty": jax.vmap(lambda t: E.knn_mutual_information_discrete(t, ctx.y, k=k))(ctx.stacked),
    }


def _knn_check(cfg, n_info: int) -> None:
    if not 1 <= cfg.estimator.knn_k < n_info:
        raise ValueError(f"estimator.knn_k={cfg.estimator.knn_k} must be in [1, n) (the {n_info} rows of the information set)")


def _kde(ctx: EvalContext, cfg):
    v = cfg.estimator.kde_noise_var
    lo, hi = jax.vmap(lambda t: E.kde_mutual_information_x_bounds(t, v))(ctx.stacked)
    _, i_ty = jax.vmap(lambda t: E.kde_mutual_information_y(t, ctx.y, v))(ctx.stacked)
    return {"i_xt_lower": lo, "i_xt": hi, "h_x_given_t": jnp.log2(jnp.float32(ctx.n)) - hi, "i_ty": i_ty}


def _kde_check(cfg, n_info: int) -> None:
    if not cfg.estimator.kde_noise_var > 0:
        raise ValueError(f"estimator.kde_noise_var must be > 0, got {cfg.estimator.kde_noise_var}")


def _channel(ctx: EvalContext, cfg):
    e = cfg.estimator
    ch = E.noise_channel_information(lambda p, x: ctx.apply(p, x), ctx.params, ctx.x[: e.channel_n], snr=e.channel_snr,
                                     key=ctx.key, n_samples=e.channel_samples, kernel_var=e.channel_kernel_var)
    return {"i_xt": jnp.stack([c["i_xt"] for c in ch]), "h_x_given_t": jnp.stack([c["h_x_given_t"] for c in ch])}


def _channel_check(cfg, n_info: int) -> None:
    e = cfg.estimator
    if not e.channel_snr > 0 or e.channel_samples < 2 or not e.channel_kernel_var > 0 or e.channel_n < 2:
        raise ValueError("estimator.channel_snr and channel_kernel_var must be > 0, channel_samples >= 2, channel_n >= 2; "
                         f"got {e.channel_snr}, {e.channel_kernel_var}, {e.channel_samples}, {e.channel_n}")


def _n_hidden(ctx: EvalContext, cfg) -> int:
    return len(ctx.layers) - (1 if cfg.estimator.include_output else 0)


def _sp(ctx: EvalContext, cfg):
    """Sample propagation (Goldfeld et al. 2019) on a noisy network: for each of ``sp_n`` inputs,
    ``sp_replicas`` draws of the earlier layers' noise give the centers S_l of T_l's mixture;
    I(X;T_l) = h(T_l) - h(T_l|X) by Monte Carlo. Hidden layers only (the output has no noise)."""
    e, beta = cfg.estimator, float(cfg.model.layer_noise)
    n = min(e.sp_n, ctx.n)
    keys = jax.random.split(ctx.key, e.sp_replicas + 1)
    reps = jax.vmap(lambda k: ctx.apply(ctx.params, ctx.x[:n], key=k, centers=True))(keys[:-1])  # layers of (R, n, d_l)
    hidden = reps[: _n_hidden(ctx, cfg)]
    d_max = max(h.shape[-1] for h in hidden)
    stacked = jnp.stack([jnp.pad(h, ((0, 0), (0, 0), (0, d_max - h.shape[-1]))) for h in hidden])
    mask = jnp.stack([jnp.arange(d_max) < h.shape[-1] for h in hidden])
    r = jax.vmap(lambda c, m, k: E.sp_mutual_information(c, beta, k, n_mc=e.sp_n_mc, unit_mask=m))(
        stacked, mask, jax.random.split(keys[-1], len(hidden)))
    pad = len(ctx.layers) - len(hidden)
    nan = jnp.full((pad,), jnp.nan, jnp.float32)
    return {q: jnp.concatenate([r[q].astype(jnp.float32), nan]) for q in ("i_xt", "h_x_given_t", "h_t", "i_xt_mc_se")}


def _sp_check(cfg, n_info: int) -> None:
    e = cfg.estimator
    if not cfg.model.layer_noise > 0:
        raise ValueError("estimator.names: sp needs a noisy network (model.layer_noise > 0, the noise std beta); "
                         f"got model.layer_noise={cfg.model.layer_noise}")
    if e.sp_replicas < 1 or e.sp_n_mc < 1 or e.sp_n < 2:
        raise ValueError(f"estimator.sp_replicas and sp_n_mc must be >= 1, sp_n >= 2; got {e.sp_replicas}, {e.sp_n_mc}, {e.sp_n}")


def _exact(ctx: EvalContext, cfg):
    """Exact I(X;T) = H(T), I(T;Y), H(X|T) of a quantized network (Lorenzen et al. 2022) by
    exact pattern counting of the layers' own k-bit values; the softmax output is quantized to
    the same bits over its range at measurement."""
    from ib_jax.quantize import batch_range, quantize

    bits = int(cfg.model.quantize_bits)
    layers = list(ctx.layers)
    if cfg.estimator.include_output:
        lo, hi = batch_range(layers[-1])
        layers[-1] = quantize(layers[-1], bits, lo, hi)
    stacked, mask = E.pad_layers(layers)
    r = jax.vmap(lambda t, m: E.exact_information(t, ctx.y, n_classes=ctx.n_classes, bits=bits, unit_mask=m,
                                                  miller_madow=cfg.estimator.miller_madow))(stacked, mask)
    return {q: r[q] for q in ("i_xt", "i_ty", "h_x_given_t")}


def _exact_check(cfg, n_info: int) -> None:
    if cfg.model.quantize_bits <= 0:
        raise ValueError("estimator.names: exact counts a quantized network's own values; set model.quantize_bits "
                         f"(e.g. 4 or 8), got model.quantize_bits={cfg.model.quantize_bits}")


register_estimator("binning", _binning("uniform", True))
register_estimator("binning_quantile", _binning("quantile", False))
register_estimator("knn", _knn, _knn_check)
register_estimator("kde", _kde, _kde_check)
register_estimator("channel", _channel, _channel_check)
register_estimator("sp", _sp, _sp_check)
register_estimator("exact", _exact, _exact_check)


# ----------------------------------------------------------------------- evaluation


def _gradient_diagnostics(step: Step, cfg, state: TrainState, data, batch_size: int, key) -> dict:
    """SGD's own gradient noise on the probe set (m examples, the data distribution):
    SNR_B and B_simple always; with ``diagnostics``: the tail index of the centred
    per-example gradients (Simsekli et al. 2019), Tr(H Sigma) and B_noise (Zhu et al. 2019;
    McCandlish et al. 2018), and per layer the gradient mean norm, std and SNR at batch B."""
    from ib_jax import gradient_stats as G

    x, y = data["x_probe"], data["y_probe"]
    g = G.per_example_grads(step.example_loss, state.params, x, y)
    stats = gradient_noise_stats(g, batch_size)
    out = {"sgd_snr": stats["snr_b"], "grad_noise_scale": stats["b_simple"]}
    diags = cfg.diagnostics
    if "tail_index" in diags:
        # each centred per-example gradient is one multivariate sample (|.| its norm): coordinates
        # of very different scales pooled as scalars would read as heavy tails by themselves
        centred = jnp.concatenate([(a - a.mean(axis=0, keepdims=True)).reshape(a.shape[0], -1) for a in jax.tree.leaves(g)], axis=1)
        out["tail_index"] = G.tail_index(centred, vectors=True)
    if "curvature" in diags:
        c = G.curvature_noise_stats(step.example_loss, state.params, x, y, key, cfg.curvature_probes or None)
        out["trace_h_sigma"] = c["trace_h_sigma"]
        out["b_noise"] = c["b_noise"]
    if "layer_grads" in diags:
        for layer, st in G.layer_gradient_stats(g, batch_size=batch_size, kernel_only=True).items():
            name = layer.rsplit("/", 1)[-1]
            for q in ("mean_norm", "std", "snr"):
                out[f"grad_{q}/{name}"] = st[q]
    return out


def make_evaluate(step: Step, cfg, batch_size: int, extra: dict[str, Estimator] | None = None) -> Callable[[TrainState, dict], dict]:
    """``evaluate(state, data) -> {metric: scalar or (L,)}`` for one member (vmap it).

    ``data`` holds ``x_train, y_train, x_test, y_test`` (losses, gaps), ``x_info, y_info``
    (the information set) and ``x_probe, y_probe`` (SGD's own gradient noise). A diverged
    member's metrics are NaN from the step it diverged. ``extra``: estimators by name that are not
    (and need not be) registered, for tools built on the evaluation (re-estimation).
    """
    est_cfg = cfg.estimator
    extra = extra or {}
    entries = [(name, extra[name] if name in extra else ESTIMATORS.get(name)) for name in est_cfg.names]

    hc = getattr(step.model, "hidden_channels", None)
    channels = hc() if callable(hc) else None

    def layers_of(params, batch_stats, x, key=None, centers=False):
        logits, hidden, _ = step.apply(params, batch_stats, x, train=False, key=key, centers=centers)
        # wide layers (conv maps): the documented policy, the same units for every member and step
        hidden = reduce_hidden([h.reshape(h.shape[0], -1) for h in hidden], est_cfg.wide_policy, est_cfg.max_units,
                               est_cfg.wide_seed, channels=channels)
        return [h.astype(jnp.float32) for h in hidden] + ([jax.nn.softmax(logits)] if est_cfg.include_output else [])

    def evaluate(state: TrainState, data) -> dict:
        out = {}
        key = jax.random.fold_in(jax.random.fold_in(state.dropout_key, 0x5EED), state.step)
        k_eval, k_est = jax.random.split(key)
        for split in ("train", "test"):
            logits, _, _ = step.apply(state.params, state.batch_stats, data[f"x_{split}"], train=False, key=k_eval)
            out[f"{split}_loss"] = xent(logits, data[f"y_{split}"])
            out[f"{split}_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == data[f"y_{split}"])
        out["gap_loss"] = out["test_loss"] - out["train_loss"]
        out["gap_accuracy"] = out["train_accuracy"] - out["test_accuracy"]
        if entries:
            layers = layers_of(state.params, state.batch_stats, data["x_info"], k_eval)
            stacked, mask = E.pad_layers(layers)
            ctx = EvalContext(
                layers=layers, stacked=stacked, mask=mask, dims=jnp.asarray([t.shape[-1] for t in layers], jnp.float32),
                x=data["x_info"], y=data["y_info"], n=data["y_info"].shape[0], n_classes=step.n_classes,
                apply=lambda p, x, key=None, centers=False: layers_of(p, state.batch_stats, x, key, centers),
                params=state.params, key=k_est,
            )
            for name, entry in entries:
                for q, v in entry.compute(ctx, cfg).items():
                    out[f"{name}/{q}"] = v
        diags = N.diagnostics(state.opt_state)
        if diags:
            out["noise_realized_snr"] = diags[0].realized_snr
            out["noise_angle"] = diags[0].angle
        if cfg.probe_size > 0:
            out.update(_gradient_diagnostics(step, cfg, state, data, batch_size, k_est))
        # masked from the evaluation where the member went bad: diverged already, or a loss already
        # past diverge_factor x its first loss (the step that will mark it has not run yet)
        bad = state.diverged | (out["train_loss"] > step.diverge_factor * jnp.maximum(state.first_loss, 1e-12))
        out = {k: jnp.where(bad, jnp.nan, jnp.asarray(v).astype(jnp.float32)) for k, v in out.items()}
        out["step"] = state.step
        return out

    return evaluate
