"""The population driver: P members trained under controlled noise in one jitted program.

A *population* is P members that differ by seed (init, mini-batches, noise key, dropout)
and by numeric settings that can be arrays: the noise level (one value of ``noise.snr``)
and the learning rate. One compiled program trains all of them: the per-member step
(:mod:`ib_jax.step`) is ``vmap``-ed, steps run under ``lax.fori_loop`` between evaluation
points, evaluation points (:mod:`ib_jax.evaluation`) under ``lax.scan``; the member axis
is sharded over every available device.

Quick start::

    from ib_jax import config, data, train
    cfg = config.Config(noise=config.NoiseConf(kind="isotropic"), steps=2000)
    ds = data.tishby12()
    pop = train.population_grid(seeds=[0, 1, 2], levels=[float("inf"), 10.0, 1.0])
    res = train.train_population(cfg, ds, pop)
    res.metrics["gap_loss"]            # (P, n_evals)
    res.metrics["binning/h_x_given_t"] # (P, n_evals, n_layers)

Mini-batches are drawn i.i.d. (with replacement) from a per-member key folded with the step
number: the setting in which SGD's SNR_B = B ||G||^2 / tr(Sigma) holds exactly, and a run
resumed from step s draws exactly the batches an uninterrupted run would.
``optimizer.batch_size=0`` is full-batch gradient descent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ib_jax.data import Dataset
from ib_jax.evaluation import make_evaluate
from ib_jax.image_data import information_subset
from ib_jax.step import Step, TrainState

SNAPSHOT = "_snapshot"  # key of the per-evaluation parameters in a segment's outputs (cfg.snapshots)

__all__ = [
    "SNAPSHOT",
    "Population",
    "population_grid",
    "TrainState",
    "Trainer",
    "PopulationResult",
    "train_population",
    "eval_steps",
]


@dataclasses.dataclass(frozen=True)
class Population:
    """Per-member settings, arrays of length P.

    Levels and learning rates are kept as float64 (the values as given, so records read
    ``0.1`` back as 0.1); the compiled program sees them as float32.
    """

    seeds: np.ndarray
    level: np.ndarray
    learning_rate: np.ndarray | None = None

    def __post_init__(self):
        seeds = np.asarray(self.seeds, np.int64).reshape(-1)
        level = np.asarray(self.level, np.float64).reshape(-1)
        if len(seeds) != len(level):
            raise ValueError(f"population: {len(seeds)} seeds but {len(level)} levels")
        if np.isnan(level).any() or (level < 0).any():
            raise ValueError(f"noise.snr / sigma must be >= 0 and not NaN, got {level.tolist()}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "level", level)
        if self.learning_rate is not None:
            lr = np.asarray(self.learning_rate, np.float64).reshape(-1)
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


def eval_steps(steps: int, n_evals: int, schedule: str = "log") -> np.ndarray:
    """Sorted unique evaluation steps in [0, steps], always including 0 and ``steps``."""
    if schedule == "linear":
        pts = np.linspace(0, steps, n_evals + 1)
    else:
        pts = np.concatenate([[0], np.logspace(0, np.log10(max(steps, 1)), n_evals)])
    return np.unique(np.round(pts).astype(np.int64).clip(0, steps).tolist() + [0, steps])


class Trainer:
    """Compiled pieces for one (config, data set); build once, reuse for populations of one shape.

    ``init``, ``run`` and ``evaluate`` are jitted and cached on the instance.
    """

    def __init__(self, cfg, dataset: Dataset):
        self.cfg = cfg
        self.dataset = dataset
        self.step = Step(cfg, dataset.n_classes, diverge_factor=getattr(cfg, "diverge_factor", 1e6))
        self.batch_size = cfg.optimizer.batch_size or len(dataset.y_train)
        if self.batch_size > len(dataset.y_train):
            raise ValueError(f"optimizer.batch_size must be in [0, n_train={len(dataset.y_train)}], got {cfg.optimizer.batch_size}")
        n_all = len(dataset.y_all)
        # the information set: every row, or a fixed seeded subset of estimator.n_info rows
        info = np.arange(n_all) if cfg.estimator.n_info >= n_all else information_subset(n_all, cfg.estimator.n_info, cfg.estimator.info_seed)
        probe = min(cfg.probe_size, len(dataset.y_train))
        self.data = {
            "x_train": jnp.asarray(dataset.x_train),
            "y_train": jnp.asarray(dataset.y_train),
            "x_test": jnp.asarray(dataset.x_test),
            "y_test": jnp.asarray(dataset.y_test),
            "x_info": jnp.asarray(dataset.x_all[info]),
            "y_info": jnp.asarray(dataset.y_all[info]),
            "x_probe": jnp.asarray(dataset.x_train[:probe]),
            "y_probe": jnp.asarray(dataset.y_train[:probe]),
        }
        self.evaluate_member = make_evaluate(self.step, cfg, self.batch_size)
        self._init = jax.jit(jax.vmap(self._init_member))
        self._run = jax.jit(self._run_segment)
        self._evaluate = jax.jit(jax.vmap(self.evaluate_member, in_axes=(0, None)))
        self._compiled: dict[int, Callable] = {}
        x2 = self.data["x_train"][:2]

        def hidden_of():
            v = self.step.model.init(jax.random.key(0), x2, train=False)
            return self.step.apply(v["params"], v.get("batch_stats", {}), x2, train=False)[1]

        n_hidden = len(jax.eval_shape(hidden_of))
        self.layer_names = [f"h{i + 1}" for i in range(n_hidden)] + (["output"] if cfg.estimator.include_output else [])

    # ---------------------------------------------------------------- init

    def _init_member(self, seed, level, learning_rate):
        return self.step.init(seed, level, learning_rate, self.data["x_train"][:2])

    def init(self, population: Population) -> TrainState:
        """Stacked states of the population, sharded over devices along the member axis."""
        lr = population.learning_rate if population.learning_rate is not None else np.full(population.size, self.cfg.optimizer.learning_rate)
        states = self._init(jnp.asarray(population.seeds, jnp.uint32), jnp.asarray(population.level, jnp.float32), jnp.asarray(lr, jnp.float32))
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

    # ---------------------------------------------------------------- steps

    def _batch(self, key, data):
        if self.cfg.optimizer.batch_size == 0:
            return data["x_train"], data["y_train"]
        idx = jax.random.randint(key, (self.batch_size,), 0, data["y_train"].shape[0])
        return data["x_train"][idx], data["y_train"][idx]

    def _population_step(self, states: TrainState, data) -> TrainState:
        step = states.step[0]  # members advance in lockstep
        shared = self._batch(jax.random.fold_in(jax.random.key(self.cfg.seed), step), data) if self.cfg.shared_batches else None

        def one(st):
            batch = shared if shared is not None else self._batch(jax.random.fold_in(st.data_key, st.step), data)
            return self.step.train_step(st, batch, jax.random.fold_in(st.dropout_key, st.step))[0]

        return jax.vmap(one)(states)

    def _run_segment(self, states: TrainState, data, gaps: jax.Array):
        """For each gap: ``gap`` population steps, then one evaluation. Returns (states, metrics (k, P, ...))."""

        def interval(st, gap):
            st = jax.lax.fori_loop(0, gap, lambda _, s: self._population_step(s, data), st)
            m = jax.vmap(self.evaluate_member, in_axes=(0, None))(st, data)
            if self.cfg.snapshots:  # the population's parameters at this evaluation (re-estimation later)
                m = {**m, SNAPSHOT: {"params": st.params, "batch_stats": st.batch_stats}}
            return st, m

        return jax.lax.scan(interval, states, gaps)

    def compile(self, states: TrainState, k: int) -> float:
        """Compile the k-evaluation segment ahead of time; returns the seconds it took
        (near zero when JAX's persistent compilation cache already holds it)."""
        t0 = time.perf_counter()
        self._compiled[k] = self._run.lower(states, self.data, jnp.zeros(k, jnp.int32)).compile()
        return time.perf_counter() - t0

    def run(self, states: TrainState, gaps: Sequence[int]) -> tuple[TrainState, dict]:
        """Advance by ``gaps[0]`` steps, evaluate, ``gaps[1]`` steps, evaluate, ..."""
        g = jnp.asarray(gaps, jnp.int32)
        fn = self._compiled.get(len(gaps))
        return fn(states, self.data, g) if fn is not None else self._run(states, self.data, g)

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


def collect(chunks: list[dict]) -> dict[str, np.ndarray]:
    """Concatenate per-chunk metrics (k, P, ...) over evaluations -> (P, n_evals, ...)."""
    out = {}
    for name in chunks[0]:
        arr = np.concatenate([np.asarray(c[name]) for c in chunks], axis=0)
        out[name] = np.moveaxis(arr, 0, 1)
    return out


def train_population(
    cfg,
    dataset: Dataset,
    population: Population,
    *,
    trainer: Trainer | None = None,
    evals_per_chunk: int | None = None,
    callback: Callable[[int, TrainState, dict], None] | None = None,
) -> PopulationResult:
    """Train a population; evaluate on ``eval_steps``; return everything measured.

    Args:
      cfg: the job's :class:`ib_jax.config.Config` (its noise grid and seeds are ignored:
        ``population`` gives the members).
      evals_per_chunk: evaluation points per compiled call (default: all in one).
        Smaller chunks let ``callback(steps_done, states, chunk_metrics)`` report
        progress or checkpoint between calls; each chunk is one jitted program.
    """
    trainer = trainer or Trainer(cfg, dataset)
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
        m.pop(SNAPSHOT, None)
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
        layer_names=trainer.layer_names,
    )
