"""Evaluation of one member: losses, gaps, every selected estimator (via the registry), gradient diagnostics.

The estimators themselves (their math, adapters and checks) live in :mod:`ib_jax.estimators`;
here the member's layers on the information set become an
:class:`ib_jax.estimators.EvalContext` and each selected entry's ``compute(ctx, cfg)`` is called.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ib_jax import bounds as B
from ib_jax import estimators as E
from ib_jax import noise as N
from ib_jax.data.information import info_suffixes
from ib_jax.estimators.base import Estimator, EvalContext
from ib_jax.estimators.layer_features import reduce_hidden
from ib_jax.registry import ESTIMATORS
from ib_jax.train import gradient_stats as G
from ib_jax.train.step import Step, TrainState, xent

__all__ = ["make_evaluate"]

# ----------------------------------------------------------------------- evaluation


def _grad_layer_names(cfg, param_layers: list[str]) -> list[str]:
    """Names of the weight layers in the records: one naming of layers everywhere.

    In an MLP the weights ``Dense_i`` compute the representation ``h{i+1}`` (the last ones the
    output), so ``grad_snr/h2`` is the gradient SNR of the weights that compute ``h2``, the layer
    whose ``binning/i_xt/h2`` sits beside it. Models whose weight layers do not map one to one onto
    the recorded representations (convolutions, residual blocks) keep the parameter names."""
    short = [p.rsplit("/", 1)[-1] for p in param_layers]
    if cfg.model.kind != "mlp" or not all(n.startswith("Dense_") and n[6:].isdigit() for n in short):
        return short
    order = sorted(range(len(short)), key=lambda i: int(short[i][6:]))  # Dense_10 after Dense_9 (the tree sorts by string)
    names = [""] * len(short)
    for rank, i in enumerate(order):
        names[i] = "output" if rank == len(short) - 1 else f"h{rank + 1}"
    return names


def _gradient_diagnostics(step: Step, cfg, state: TrainState, data, batch_size: int, key) -> dict:
    """SGD's own gradient noise on the probe set (m examples, the data distribution):
    SNR_B and B_simple always; with ``diagnostics``: the tail index of the centred
    per-example gradients (Simsekli et al. 2019), Tr(H Sigma) and B_noise (Zhu et al. 2019;
    McCandlish et al. 2018), and per layer the gradient mean norm, std and SNR at batch B."""
    x, y = data["x_probe"], data["y_probe"]
    g = G.per_example_grads(step.example_loss, state.params, x, y)
    stats = G.gradient_noise_stats(g, batch_size)
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
        stats_by_layer = G.layer_gradient_stats(g, batch_size=batch_size, kernel_only=True)
        for name, st in zip(_grad_layer_names(cfg, list(stats_by_layer)), stats_by_layer.values()):
            for q in ("mean_norm", "std", "snr"):
                out[f"grad_{q}/{name}"] = st[q]
    return out


def _after(x, values):
    """``x``, computed only once every array of ``values`` is: a real data dependency (``x + 0 * s``,
    ``s`` a finite sum of them), which XLA keeps (it does not fold ``0 * s`` for floats) where an
    ``optimization_barrier`` is dropped before scheduling. Why: the second information set's
    estimators must not run beside the first's, since two of jaxlib's batched LAPACK kernels
    (renyi's eigenvalues) at once can wedge a small CPU thread pool
    (:func:`ib_jax.estimators.renyi.renyi_entropies`)."""
    s = sum((jnp.sum(jnp.where(jnp.isfinite(v), v, 0.0)) for v in values), jnp.float32(0.0))
    return x + jnp.zeros_like(x) * s.astype(x.dtype)


def make_evaluate(step: Step, cfg, batch_size: int, extra: dict[str, Estimator] | None = None) -> Callable[..., dict]:
    """``evaluate(state, data, reference=None) -> {metric: scalar or (L,)}`` for one member (vmap it).

    ``data`` holds ``x_train, y_train, x_test, y_test`` (losses, gaps), ``x_info, y_info``
    (the information set; ``x_info@train`` ... ``y_info@test`` with ``estimator.info_split=both``,
    whose metrics are ``{estimator}@train/...`` and ``{estimator}@test/...``) and ``x_probe, y_probe`` (SGD's own gradient noise). ``reference``: the
    member's initial parameters, needed by the bounds that centre a prior on them (PAC-Bayes;
    :mod:`ib_jax.bounds`), recorded as ``bound/{quantity}``. A diverged member's metrics are NaN
    from the step it diverged. ``extra``: estimators by name that are not (and need not be)
    registered, for tools built on the evaluation (re-estimation).
    """
    est_cfg = cfg.estimator
    extra = extra or {}
    entries = [(name, extra[name] if name in extra else ESTIMATORS.get(name)) for name in est_cfg.names]
    jit_bounds = [(name, b) for name, b in B.applicable(cfg)[0] if b.compute is not None]
    suffixes = info_suffixes(cfg)

    hc = getattr(step.model, "hidden_channels", None)
    channels = hc() if callable(hc) else None

    def layers_of(params, batch_stats, x, key=None, centers=False):
        logits, hidden, _ = step.apply(params, batch_stats, x, train=False, key=key, centers=centers)
        # wide layers (conv maps): the documented policy, the same units for every member and step
        hidden = reduce_hidden(
            [h.reshape(h.shape[0], -1) for h in hidden], est_cfg.wide_policy, est_cfg.max_units, est_cfg.wide_seed, channels=channels
        )
        return [h.astype(jnp.float32) for h in hidden] + ([jax.nn.softmax(logits)] if est_cfg.include_output else [])

    def evaluate(state: TrainState, data, reference=None) -> dict:
        out = {}
        key = jax.random.fold_in(jax.random.fold_in(state.dropout_key, 0x5EED), state.step)
        k_eval, k_est = jax.random.split(key)
        for split in ("train", "test"):
            logits, _, _ = step.apply(state.params, state.batch_stats, data[f"x_{split}"], train=False, key=k_eval)
            out[f"{split}_loss"] = xent(logits, data[f"y_{split}"])
            out[f"{split}_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == data[f"y_{split}"])
        out["gap_loss"] = out["test_loss"] - out["train_loss"]
        out["gap_accuracy"] = out["train_accuracy"] - out["test_accuracy"]
        for suffix in suffixes if entries else ():  # one information set, or @train and @test (estimator.info_split)
            x_info, y_info = data[f"x_info{suffix}"], data[f"y_info{suffix}"]
            if suffix != suffixes[0]:
                x_info = _after(x_info, [v for k, v in out.items() if f"{suffixes[0]}/" in k])  # the first set's estimates
            layers = layers_of(state.params, state.batch_stats, x_info, k_eval)
            stacked, mask = E.pad_layers(layers)
            ctx = EvalContext(
                layers=layers,
                stacked=stacked,
                mask=mask,
                dims=jnp.asarray([t.shape[-1] for t in layers], jnp.float32),
                x=x_info,
                y=y_info,
                n=y_info.shape[0],
                n_classes=step.n_classes,
                apply=lambda p, x, key=None, centers=False: layers_of(p, state.batch_stats, x, key, centers),
                params=state.params,
                key=k_est,  # the same key for each set: the test set's draws do not depend on the train set's
            )
            for name, entry in entries:
                for q, v in entry.compute(ctx, cfg).items():
                    out[f"{name}{suffix}/{q}"] = v
        if jit_bounds:
            if reference is None:
                raise ValueError(f"bounds {[n for n, _ in jit_bounds]} need the member's initial parameters: pass reference=")
            bctx = B.BoundContext(
                params=state.params,
                reference=reference,
                predict=lambda p, x, k: step.apply(p, state.batch_stats, x, train=False, key=k)[0],
                x_train=data["x_train"],
                y_train=data["y_train"],
                x_test=data["x_test"],
                y_test=data["y_test"],
                key=jax.random.fold_in(key, 0xB0D),  # its own stream: the estimators' draws are unchanged
            )
            for _, b in jit_bounds:
                for q, v in b.compute(bctx, cfg).items():
                    out[B.PREFIX + q] = v
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
