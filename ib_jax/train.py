"""Population training under controlled gradient noise, in one jitted, vmapped program.

A *population* is P members that differ by seed (init, mini-batches, noise
key, dropout) and by numeric settings that can be arrays: the noise level
(SNR, or sigma for ``fixed`` noise) and the learning rate. One compiled
program trains all of them: members are ``vmap``-ed, steps run under
``lax.fori_loop`` between evaluation points, evaluation points under
``lax.scan``; the population axis is sharded over every available device.

Quick start::

    from ib_jax import data, models, train
    ds = data.tishby12()
    cfg = train.TrainConfig(steps=2000, noise=train.NoiseConfig(kind="isotropic"))
    pop = train.population_grid(seeds=[0, 1, 2], levels=[float("inf"), 10.0, 1.0])
    res = train.train_population(models.ModelConfig(), cfg, ds, pop)
    res.metrics["gap_loss"]            # (P, n_evals)
    res.metrics["binning/h_x_given_t"] # (P, n_evals, n_layers)

Mini-batches are drawn i.i.d. (with replacement) from a per-member key folded
with the step number: the setting in which SGD's SNR_B = B ||G||^2 / tr(Sigma)
holds exactly, and a run resumed from step s draws exactly the batches an
uninterrupted run would. ``batch_size=0`` is full-batch gradient descent (no
sampling noise: injected noise is the only noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ib_jax import estimators as E
from ib_jax import models as M
from ib_jax import noise as N
from ib_jax import schedules as S
from ib_jax.data import Dataset
from ib_jax.gradient_stats import gradient_noise_stats, per_example_grads

__all__ = [
    "NoiseConfig",
    "EstimatorConfig",
    "TrainConfig",
    "Population",
    "population_grid",
    "TrainState",
    "Trainer",
    "PopulationResult",
    "train_population",
    "eval_steps",
    "NOISE_KINDS",
    "OPTIMIZERS",
    "ESTIMATORS",
]

NOISE_KINDS = ("none", "isotropic", "cone", "fixed", "sgd_shaped")
OPTIMIZERS = ("sgd", "momentum", "adam")
ESTIMATORS = ("binning", "binning_quantile", "knn", "kde", "channel")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Injected noise. ``kind``: none | isotropic | cone | fixed | sgd_shaped.

    The member's level (``Population.level``) is the SNR (sigma for ``fixed``);
    ``schedule`` (a dict for :func:`ib_jax.schedules.from_config`) multiplies
    it over steps: level_t = level * schedule(t).
    """

    kind: str = "none"
    position: str = "gradient"  # gradient (before the optimizer) | update (after it)
    mode: str = "surface"  # cone only
    scope: str = "global"
    preserve_norm: bool = False
    schedule: Any = None


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """Which information estimators run at each evaluation, on the information set.

    The information set is every input of the data set (train + test, X
    uniform over its rows), capped at ``n_info`` rows.
    """

    names: tuple[str, ...] = ("binning",)
    n_bins: int = 30
    lo: float | None = -1.0
    hi: float | None = 1.0
    knn_k: int = 3
    kde_noise_var: float = 0.1
    n_info: int = 4096
    include_output: bool = True  # the softmax output as the last layer T
    # the weight-noise channel (noise-aware): I(X;T'), H(X|T') under weights w + zeta at this SNR,
    # on the first channel_n inputs of the information set, K = channel_samples weight draws
    channel_snr: float = 1.0
    channel_samples: int = 8
    channel_kernel_var: float = 0.01
    channel_n: int = 256


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 0  # 0: full batch
    steps: int = 1000
    shared_batches: bool = False  # all members see the same mini-batches (one wide first-layer matmul)
    data_seed: int = 0  # batches when shared_batches
    eval_schedule: str = "log"  # log | linear
    n_evals: int = 30
    probe_size: int = 256  # examples for SGD's own gradient SNR (0: off)
    noise: NoiseConfig = NoiseConfig()
    estimators: EstimatorConfig = EstimatorConfig()

    def validate(self, n_train: int | None = None) -> None:
        """Raise ``ValueError`` naming the offending key, before any compute."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"optimizer.learning_rate must be > 0, got {self.learning_rate}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 0 or (n_train is not None and self.batch_size > n_train):
            raise ValueError(f"batch_size must be in [0, n_train={n_train}] (0 = full batch), got {self.batch_size}")
        if self.eval_schedule not in ("log", "linear"):
            raise ValueError(f"eval_schedule must be 'log' or 'linear', got {self.eval_schedule!r}")
        if self.n_evals < 1:
            raise ValueError(f"n_evals must be >= 1, got {self.n_evals}")
        n = self.noise
        if n.kind not in NOISE_KINDS:
            raise ValueError(f"noise.kind must be one of {NOISE_KINDS}, got {n.kind!r}")
        if n.position not in ("gradient", "update"):
            raise ValueError(f"noise.position must be 'gradient' or 'update', got {n.position!r}")
        if n.mode not in N.CONE_MODES:
            raise ValueError(f"noise.mode must be one of {N.CONE_MODES}, got {n.mode!r}")
        if n.scope not in N.SCOPES:
            raise ValueError(f"noise.scope must be one of {N.SCOPES}, got {n.scope!r}")
        if n.schedule is not None:
            S.from_config(n.schedule)
        e = self.estimators
        unknown = [x for x in e.names if x not in ESTIMATORS]
        if unknown:
            raise ValueError(f"estimators.names: unknown {unknown}; expected some of {ESTIMATORS}")
        if e.n_bins < 1:
            raise ValueError(f"estimators.n_bins must be >= 1, got {e.n_bins}")
        if (e.lo is None) != (e.hi is None) or (e.lo is not None and not e.lo < e.hi):
            raise ValueError(f"estimators.lo/hi must both be null or lo < hi, got {e.lo}, {e.hi}")
        if e.n_info < 2:
            raise ValueError(f"estimators.n_info must be >= 2, got {e.n_info}")
        if "knn" in e.names and not 1 <= e.knn_k < e.n_info:
            raise ValueError(f"estimators.knn_k must be in [1, n_info), got {e.knn_k}")
        if not e.kde_noise_var > 0:
            raise ValueError(f"estimators.kde_noise_var must be > 0, got {e.kde_noise_var}")
        if "channel" in e.names:
            if not e.channel_snr > 0:
                raise ValueError(f"estimators.channel_snr must be > 0, got {e.channel_snr}")
            if e.channel_samples < 2:
                raise ValueError(f"estimators.channel_samples must be >= 2, got {e.channel_samples}")
            if not e.channel_kernel_var > 0:
                raise ValueError(f"estimators.channel_kernel_var must be > 0, got {e.channel_kernel_var}")
            if e.channel_n < 2:
                raise ValueError(f"estimators.channel_n must be >= 2, got {e.channel_n}")
        if self.probe_size < 0:
            raise ValueError(f"probe_size must be >= 0, got {self.probe_size}")


@dataclasses.dataclass(frozen=True)
class Population:
    """Per-member settings, arrays of length P."""

    seeds: np.ndarray
    level: np.ndarray
    learning_rate: np.ndarray | None = None

    def __post_init__(self):
        seeds = np.asarray(self.seeds, np.int64).reshape(-1)
        level = np.asarray(self.level, np.float32).reshape(-1)
        if len(seeds) != len(level):
            raise ValueError(f"population: {len(seeds)} seeds but {len(level)} levels")
        if np.isnan(level).any() or (level < 0).any():
            raise ValueError(f"noise.snr / sigma must be >= 0 and not NaN, got {level.tolist()}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "level", level)
        if self.learning_rate is not None:
            lr = np.asarray(self.learning_rate, np.float32).reshape(-1)
            if len(lr) != len(seeds) or not (lr > 0).all():
                raise ValueError("population.learning_rate must be P positive values")
            object.__setattr__(self, "learning_rate", lr)

    @property
    def size(self) -> int:
        return len(self.seeds)

    def members(self) -> list[dict]:
        out = []
        for i in range(self.size):
            m = {"member": i, "seed": int(self.seeds[i]), "level": float(self.level[i])}
            if self.learning_rate is not None:
                m["learning_rate"] = float(self.learning_rate[i])
            out.append(m)
        return out


def population_grid(seeds: Sequence[int], levels: Sequence[float], learning_rates: Sequence[float] | None = None) -> Population:
    """Cartesian product, level-major: member = ((level_i, lr_j), seed_k)."""
    lrs = [None] if learning_rates is None else list(learning_rates)
    rows = [(s, lv, lr) for lv in levels for lr in lrs for s in seeds]
    return Population(
        seeds=[r[0] for r in rows],
        level=[r[1] for r in rows],
        learning_rate=None if learning_rates is None else [r[2] for r in rows],
    )


class TrainState(NamedTuple):
    """One member's state (a population stacks a leading axis on every leaf)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    data_key: jax.Array
    dropout_key: jax.Array
    level: jax.Array
    learning_rate: jax.Array
    diverged: jax.Array
    diverged_step: jax.Array


def eval_steps(steps: int, n_evals: int, schedule: str = "log") -> np.ndarray:
    """Sorted unique evaluation steps in [0, steps], always including 0 and ``steps``."""
    if schedule == "linear":
        pts = np.linspace(0, steps, n_evals + 1)
    else:
        pts = np.concatenate([[0], np.logspace(0, np.log10(max(steps, 1)), n_evals)])
    return np.unique(np.round(pts).astype(np.int64).clip(0, steps).tolist() + [0, steps])


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, a, b):
    """Tree-wise ``where(pred, a, b)`` that also handles typed PRNG keys."""

    def sel(x, y):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.where(pred, jax.random.key_data(x), jax.random.key_data(y)))
        return jnp.where(pred, x, y)

    return jax.tree.map(sel, a, b)


def _xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class Trainer:
    """Compiled pieces for one (model, training config, data set).

    Build it once and reuse it: ``init``, ``run`` and ``evaluate`` are jitted
    and cached on the instance, so several populations of the same shape share
    one compilation.
    """

    def __init__(self, model_cfg: M.ModelConfig, cfg: TrainConfig, dataset: Dataset):
        cfg.validate(len(dataset.y_train))
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.dataset = dataset
        self.model = M.build(model_cfg, dataset.n_classes)
        if cfg.noise.kind == "sgd_shaped" and model_cfg.batch_norm:
            raise ValueError("noise.kind='sgd_shaped' needs per-example gradients, undefined with model.batch_norm")
        self.batch_size = cfg.batch_size or len(dataset.y_train)
        n_info = min(cfg.estimators.n_info, len(dataset.y_all))
        probe = min(cfg.probe_size, len(dataset.y_train))
        self.data = {
            "x_train": jnp.asarray(dataset.x_train),
            "y_train": jnp.asarray(dataset.y_train),
            "x_test": jnp.asarray(dataset.x_test),
            "y_test": jnp.asarray(dataset.y_test),
            "x_info": jnp.asarray(dataset.x_all[:n_info]),
            "y_info": jnp.asarray(dataset.y_all[:n_info]),
            "x_probe": jnp.asarray(dataset.x_train[:probe]),
            "y_probe": jnp.asarray(dataset.y_train[:probe]),
        }
        self._has_bn = model_cfg.batch_norm
        self._init = jax.jit(jax.vmap(self._init_member))
        self._run = jax.jit(self._run_segment)
        self._evaluate = jax.jit(jax.vmap(self._evaluate_member, in_axes=(0, None)))

    # ----------------------------------------------------------- optimizer

    def make_tx(self, level, learning_rate) -> optax.GradientTransformation:
        """The member's optimizer chain with the noise transform in place (key reseeded at init)."""
        cfg = self.cfg
        opt = {
            "sgd": lambda: optax.sgd(learning_rate),
            "momentum": lambda: optax.sgd(learning_rate, momentum=cfg.momentum),
            "adam": lambda: optax.adam(learning_rate),
        }[cfg.optimizer]()
        nc = cfg.noise
        if nc.kind == "none":
            return opt
        lvl = level
        if nc.schedule is not None:
            shape = S.from_config(nc.schedule)
            lvl = lambda t: level * shape(t)  # noqa: E731
        if nc.kind == "isotropic":
            nz = N.isotropic(lvl, 0, scope=nc.scope)
        elif nc.kind == "cone":
            nz = N.cone(lvl, 0, mode=nc.mode, scope=nc.scope, preserve_norm=nc.preserve_norm)
        elif nc.kind == "fixed":
            nz = N.fixed(lvl, 0)
        else:
            nz = N.sgd_shaped(lvl, 0)
        return optax.chain(nz, opt) if nc.position == "gradient" else optax.chain(opt, nz)

    # ---------------------------------------------------------------- init

    def _init_member(self, seed, level, learning_rate):
        k_init, k_data, k_noise, k_drop = jax.random.split(jax.random.key(seed), 4)
        variables = self.model.init(k_init, self.data["x_train"][:2], train=False)
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
        tx = self.make_tx(level, learning_rate)
        opt_state = N.reseed(tx.init(params), k_noise)  # every member its own noise key
        return TrainState(
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            step=jnp.zeros([], jnp.int32),
            data_key=k_data,
            dropout_key=k_drop,
            level=jnp.asarray(level, jnp.float32),
            learning_rate=jnp.asarray(learning_rate, jnp.float32),
            diverged=jnp.array(False),
            diverged_step=jnp.array(-1, jnp.int32),
        )

    def init(self, population: Population) -> TrainState:
        """Stacked states of the population, sharded over devices along the member axis."""
        lr = population.learning_rate if population.learning_rate is not None else np.full(population.size, self.cfg.learning_rate, np.float32)
        states = self._init(jnp.asarray(population.seeds, jnp.uint32), jnp.asarray(population.level), jnp.asarray(lr))
        return self.shard(states)

    def shard(self, states: TrainState) -> TrainState:
        """Place the member axis across all devices (a no-op layout on one device)."""
        devices = jax.devices()
        p = jax.tree.leaves(states)[0].shape[0]
        if len(devices) == 1:
            return states
        if p % len(devices):
            raise ValueError(f"population size {p} must be a multiple of the device count {len(devices)}")
        mesh = Mesh(np.asarray(devices), ("pop",))
        return jax.device_put(states, NamedSharding(mesh, PartitionSpec("pop")))

    # ---------------------------------------------------------------- step

    def _apply(self, params, batch_stats, x, *, train, key=None):
        variables = {"params": params}
        if self._has_bn:
            variables["batch_stats"] = batch_stats
        rngs = {"dropout": key} if (train and key is not None) else None
        if self._has_bn and train:
            (logits, hidden), upd = self.model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
            return logits, hidden, upd["batch_stats"]
        logits, hidden = self.model.apply(variables, x, train=train, rngs=rngs)
        return logits, hidden, batch_stats

    def train_step(self, state: TrainState, batch, key) -> tuple[TrainState, dict]:
        """One pure step of one member: ``(state, (x, y), dropout key) -> (state, metrics)``.

        A non-finite loss or parameter marks the member diverged at this step;
        a diverged member's state is frozen from then on.
        """
        x, y = batch

        def loss_fn(params):
            logits, _, bs = self._apply(params, state.batch_stats, x, train=True, key=key)
            return _xent(logits, y), (bs, jnp.mean(jnp.argmax(logits, -1) == y))

        (loss, (batch_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        extra = {}
        if self.cfg.noise.kind == "sgd_shaped":
            extra["per_example_grads"] = per_example_grads(self._example_loss, state.params, x, y)
        tx = self.make_tx(state.level, state.learning_rate)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        ok = jnp.isfinite(loss) & _tree_all_finite(params)
        newly = ~ok & ~state.diverged
        diverged = state.diverged | ~ok
        new = state._replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
        kept = _select(diverged, state, new)
        kept = kept._replace(
            step=state.step + 1,
            diverged=diverged,
            diverged_step=jnp.where(newly, state.step, state.diverged_step),
        )
        metrics = {"loss": loss, "accuracy": acc}
        diags = N.diagnostics(opt_state)
        if diags:
            metrics["noise_realized_snr"] = diags[0].realized_snr
            metrics["noise_angle"] = diags[0].angle
        return kept, metrics

    def _example_loss(self, params, x, y):
        logits, _, _ = self._apply(params, None, x[None], train=False)
        return _xent(logits, y[None])

    def _batch(self, key, data):
        if self.cfg.batch_size == 0:
            return data["x_train"], data["y_train"]
        idx = jax.random.randint(key, (self.batch_size,), 0, data["y_train"].shape[0])
        return data["x_train"][idx], data["y_train"][idx]

    def _population_step(self, states: TrainState, data) -> TrainState:
        step = states.step[0]  # members advance in lockstep
        if self.cfg.shared_batches:
            batch = self._batch(jax.random.fold_in(jax.random.key(self.cfg.data_seed), step), data)

            def one(st):
                return self.train_step(st, batch, jax.random.fold_in(st.dropout_key, st.step))[0]
        else:

            def one(st):
                batch = self._batch(jax.random.fold_in(st.data_key, st.step), data)
                return self.train_step(st, batch, jax.random.fold_in(st.dropout_key, st.step))[0]

        return jax.vmap(one)(states)

    def _run_segment(self, states: TrainState, data, gaps: jax.Array):
        """For each gap: ``gap`` population steps, then one evaluation. Returns (states, metrics (k, P, ...))."""

        def interval(st, gap):
            st = jax.lax.fori_loop(0, gap, lambda _, s: self._population_step(s, data), st)
            return st, jax.vmap(self._evaluate_member, in_axes=(0, None))(st, data)

        return jax.lax.scan(interval, states, gaps)

    def run(self, states: TrainState, gaps: Sequence[int]) -> tuple[TrainState, dict]:
        """Advance by ``gaps[0]`` steps, evaluate, ``gaps[1]`` steps, evaluate, ..."""
        return self._run(states, self.data, jnp.asarray(gaps, jnp.int32))

    # ------------------------------------------------------------ evaluate

    def _noise_diagnostics(self, state: TrainState) -> dict:
        diags = N.diagnostics(state.opt_state)
        if not diags:
            return {}
        return {"noise_realized_snr": diags[0].realized_snr, "noise_angle": diags[0].angle}

    def _evaluate_member(self, state: TrainState, data) -> dict:
        cfg, est = self.cfg, self.cfg.estimators
        out = {}
        for split in ("train", "test"):
            logits, _, _ = self._apply(state.params, state.batch_stats, data[f"x_{split}"], train=False)
            out[f"{split}_loss"] = _xent(logits, data[f"y_{split}"])
            out[f"{split}_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == data[f"y_{split}"])
        out["gap_loss"] = out["test_loss"] - out["train_loss"]
        out["gap_accuracy"] = out["train_accuracy"] - out["test_accuracy"]
        logits, hidden, _ = self._apply(state.params, state.batch_stats, data["x_info"], train=False)
        layers = list(hidden) + ([jax.nn.softmax(logits)] if est.include_output else [])
        y, n_classes = data["y_info"], self.dataset.n_classes
        n = y.shape[0]
        # one padded stack, every estimator vmapped over layers: one copy of its code to compile
        stacked, mask = E.pad_layers([t.astype(jnp.float32) for t in layers])
        dims = jnp.asarray([t.shape[-1] for t in layers], jnp.float32)
        if "binning" in est.names:
            b = jax.vmap(lambda t, m: E.binned_information(t, y, n_classes=n_classes, n_bins=est.n_bins, lo=est.lo, hi=est.hi, unit_mask=m))(stacked, mask)
            out.update({f"binning/{q}": b[q] for q in ("i_xt", "i_ty", "h_x_given_t")})
        if "binning_quantile" in est.names:
            b = jax.vmap(lambda t, m: E.binned_information(t, y, n_classes=n_classes, n_bins=est.n_bins, lo=None, hi=None, method="quantile", unit_mask=m))(stacked, mask)
            out.update({f"binning_quantile/{q}": b[q] for q in ("i_xt", "i_ty", "h_x_given_t")})
        if "knn" in est.names:
            out["knn/h_t"] = jax.vmap(lambda t, d: E.knn_entropy(t, k=est.knn_k, dim=d))(stacked, dims)
            out["knn/i_ty"] = jax.vmap(lambda t: E.knn_mutual_information_discrete(t, y, k=est.knn_k))(stacked)
        if "kde" in est.names:
            lo, hi = jax.vmap(lambda t: E.kde_mutual_information_x_bounds(t, est.kde_noise_var))(stacked)
            _, i_ty = jax.vmap(lambda t: E.kde_mutual_information_y(t, y, est.kde_noise_var))(stacked)
            out.update({"kde/i_xt_lower": lo, "kde/i_xt": hi, "kde/h_x_given_t": jnp.log2(jnp.float32(n)) - hi, "kde/i_ty": i_ty})
        if "channel" in est.names:
            x_c = data["x_info"][: est.channel_n]

            def apply_fn(params, x):
                logits, hidden, _ = self._apply(params, state.batch_stats, x, train=False)
                return list(hidden) + ([jax.nn.softmax(logits)] if est.include_output else [])

            key = jax.random.fold_in(jax.random.fold_in(state.dropout_key, 0x5EED), state.step)
            ch = E.noise_channel_information(apply_fn, state.params, x_c, snr=est.channel_snr, key=key,
                                             n_samples=est.channel_samples, kernel_var=est.channel_kernel_var)
            out["channel/i_xt"] = jnp.stack([c["i_xt"] for c in ch])
            out["channel/h_x_given_t"] = jnp.stack([c["h_x_given_t"] for c in ch])
        out.update(self._noise_diagnostics(state))
        if cfg.probe_size > 0:
            g = per_example_grads(self._example_loss, state.params, data["x_probe"], data["y_probe"])
            stats = gradient_noise_stats(g, self.batch_size)
            out["sgd_snr"] = stats["snr_b"]
            out["grad_noise_scale"] = stats["b_simple"]
        out["step"] = state.step
        # a diverged member's metrics are masked from the step it diverged
        return {
            k: (v if k == "step" else jnp.where(state.diverged, jnp.nan, v.astype(jnp.float32)))
            for k, v in out.items()
        }

    def evaluate(self, states: TrainState) -> dict:
        return self._evaluate(states, self.data)


@dataclasses.dataclass
class PopulationResult:
    """What a population run measured.

    ``metrics[name]`` has shape ``(P, n_evals)`` or ``(P, n_evals, n_layers)``
    for per-layer information quantities; ``steps`` ``(n_evals,)``.
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    members: list[dict]
    diverged: np.ndarray
    diverged_step: np.ndarray
    state: TrainState
    layer_names: list[str]

    def final(self, name: str) -> np.ndarray:
        """Last evaluation of a metric per member."""
        return self.metrics[name][:, -1]


def layer_names(model_cfg: M.ModelConfig, include_output: bool) -> list[str]:
    n = len(model_cfg.widths) if model_cfg.kind == "mlp" else len(model_cfg.channels)
    return [f"h{i + 1}" for i in range(n)] + (["output"] if include_output else [])


def collect(chunks: list[dict]) -> dict[str, np.ndarray]:
    """Concatenate per-chunk metrics (k, P, ...) over evaluations -> (P, n_evals, ...)."""
    out = {}
    for name in chunks[0]:
        arr = np.concatenate([np.asarray(c[name]) for c in chunks], axis=0)
        out[name] = np.moveaxis(arr, 0, 1)
    return out


def train_population(
    model_cfg: M.ModelConfig,
    cfg: TrainConfig,
    dataset: Dataset,
    population: Population,
    *,
    trainer: Trainer | None = None,
    evals_per_chunk: int | None = None,
    callback: Callable[[int, TrainState, dict], None] | None = None,
) -> PopulationResult:
    """Train a population; evaluate on ``eval_steps``; return everything measured.

    Args:
      evals_per_chunk: evaluation points per compiled call (default: all in one).
        Smaller chunks let ``callback(steps_done, states, chunk_metrics)`` report
        progress or checkpoint between calls; each chunk is one jitted program.
    """
    trainer = trainer or Trainer(model_cfg, cfg, dataset)
    steps = eval_steps(cfg.steps, cfg.n_evals, cfg.eval_schedule)
    gaps = np.diff(np.concatenate([[0], steps]))
    k = evals_per_chunk or len(gaps)
    states = trainer.init(population)
    chunks = []
    for start in range(0, len(gaps), k):
        g = gaps[start : start + k]
        if len(g) < k:  # keep one compiled shape: pad with zero-step evaluations, dropped below
            g = np.concatenate([g, np.zeros(k - len(g), np.int64)])
        states, m = trainer.run(states, g)
        valid = min(k, len(gaps) - start)
        m = {name: v[:valid] for name, v in m.items()}
        chunks.append(m)
        if callback is not None:
            callback(int(steps[start + valid - 1]), states, m)
    return PopulationResult(
        steps=steps,
        metrics=collect(chunks),
        members=population.members(),
        diverged=np.asarray(states.diverged),
        diverged_step=np.asarray(states.diverged_step),
        state=states,
        layer_names=layer_names(model_cfg, cfg.estimators.include_output),
    )

