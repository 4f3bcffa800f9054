"""The population driver: P members trained under controlled noise in one jitted program.

A *population* is P members that differ by seed (init, mini-batches, noise key, dropout)
and by numeric settings that can be arrays: the noise level (one value of ``noise.snr``)
and the learning rate. One compiled program trains all of them: the per-member step
(:mod:`ib_jax.train.step`) is ``vmap``-ed, steps run under ``lax.fori_loop`` between evaluation
points, evaluation points (:mod:`ib_jax.train.evaluation`) under ``lax.scan``; the member axis
is sharded over every available device.

Quick start: :mod:`ib_jax.train`.

Mini-batches are drawn i.i.d. (with replacement) from a per-member key folded with the step
number: the setting in which SGD's SNR_B = B ||G||^2 / tr(Sigma) holds exactly, and a run
resumed from step s draws exactly the batches an uninterrupted run would. A noise kind may ask
for B distinct rows per step instead (``NoiseKind.sampling``: DP-SGD, whose accountant assumes it).

Generalization bounds (:mod:`ib_jax.bounds`): the in-jit ones run inside the evaluation, with the
population's initial parameters (kept by :meth:`Trainer.init`) as the PAC-Bayes prior's centre;
the host-side ones are added to each chunk's metrics as it is yielded.
``optimizer.batch_size=0`` is full-batch gradient descent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ib_jax import bounds as B
from ib_jax.data.dataset import Dataset
from ib_jax.data.information import information_rows, information_sets
from ib_jax.registry import NOISE
from ib_jax.train.evaluation import make_evaluate
from ib_jax.train.population import Population, eval_steps
from ib_jax.train.step import Step, TrainState

SNAPSHOT = "_snapshot"  # key of the per-evaluation parameters in a segment's outputs (cfg.snapshots)

__all__ = ["SNAPSHOT", "Trainer", "Chunk", "PopulationResult", "train_population", "collect", "check_batch_size", "information_rows"]


def check_batch_size(cfg, dataset: Dataset) -> None:
    """``optimizer.batch_size`` in ``[0, n_train]`` (0 = full batch): the one check, run by validation
    and by every :class:`Trainer`."""
    n_train = len(dataset.y_train)
    if not 0 <= cfg.optimizer.batch_size <= n_train:
        raise ValueError(f"optimizer.batch_size must be in [0, n_train={n_train}] (0 = full batch), got {cfg.optimizer.batch_size}")


class Chunk(NamedTuple):
    """One compiled call's worth of training: evaluations ``start .. start + valid - 1``.

    ``metrics[name]`` is ``(valid, P, ...)`` numpy; ``step`` the step of its last evaluation;
    ``snapshot`` the population's parameters at each of its evaluations (``cfg.snapshots``) or None.
    """

    start: int
    valid: int
    step: int
    states: TrainState
    metrics: dict[str, np.ndarray]
    snapshot: Any


class Trainer:
    """Compiled pieces for one (config, data set); build once, reuse for populations of one shape.

    ``init``, ``run`` and ``evaluate`` are jitted and cached on the instance.
    """

    def __init__(self, cfg, dataset: Dataset):
        self.cfg = cfg
        self.dataset = dataset
        self.step = Step(cfg, dataset.n_classes)
        check_batch_size(cfg, dataset)
        self.batch_size = cfg.optimizer.batch_size or len(dataset.y_train)
        probe = min(cfg.probe_size, len(dataset.y_train))
        self.data = {
            "x_train": jnp.asarray(dataset.x_train),
            "y_train": jnp.asarray(dataset.y_train),
            "x_test": jnp.asarray(dataset.x_test),
            "y_test": jnp.asarray(dataset.y_test),
            "x_probe": jnp.asarray(dataset.x_train[:probe]),
            "y_probe": jnp.asarray(dataset.y_train[:probe]),
        }
        # the information set(s) (estimator.info_split): x_info / y_info, or x_info@train ... @test
        for info in information_sets(cfg, dataset):
            self.data[f"x_info{info.suffix}"] = jnp.asarray(info.x)
            self.data[f"y_info{info.suffix}"] = jnp.asarray(info.y)
        self.sampling = NOISE.get(cfg.noise.kind).sampling
        bounds, self.bounds_skipped = B.applicable(cfg)
        self.host_bounds = [(name, b) for name, b in bounds if b.host is not None]
        self.needs_reference = any(b.needs_reference for _, b in bounds)
        self.reference = None  # the population's initial parameters (Trainer.init), when a bound needs them
        self.evaluate_member = make_evaluate(self.step, cfg, self.batch_size)
        self._init = jax.jit(jax.vmap(self._init_member))
        self._run = jax.jit(self._run_segment)
        self._evaluate = jax.jit(jax.vmap(self.evaluate_member, in_axes=(0, None, 0)))
        self._compiled: dict[int, Callable] = {}
        x2 = self.data["x_train"][:2]

        def hidden_of():
            v = self.step.model.init(jax.random.key(0), x2, train=False)
            return self.step.apply(v["params"], v.get("batch_stats", {}), x2, train=False)[1]

        n_hidden = len(jax.eval_shape(hidden_of))
        shapes = jax.eval_shape(lambda: self.step.model.init(jax.random.key(0), x2, train=False)["params"])
        self.n_params = int(sum(np.prod(a.shape) for a in jax.tree.leaves(shapes)))  # d of the bounds
        self.layer_names = [f"h{i + 1}" for i in range(n_hidden)] + (["output"] if cfg.estimator.include_output else [])

    # ---------------------------------------------------------------- init

    def _init_member(self, seed, level, learning_rate):
        return self.step.init(seed, level, learning_rate, self.data["x_train"][:2])

    def init(self, population: Population) -> TrainState:
        """Stacked states of the population, sharded over devices along the member axis."""
        lr = (
            population.learning_rate if population.learning_rate is not None else np.full(population.size, self.cfg.optimizer.learning_rate)
        )
        states = self.shard(
            self._init(jnp.asarray(population.seeds, jnp.uint32), jnp.asarray(population.level, jnp.float32), jnp.asarray(lr, jnp.float32))
        )
        if self.needs_reference:  # W_0 of every member: a deterministic function of its seed, so a resumed job recomputes it
            self.reference = states.params
        return states

    def _reference(self):
        """The initial parameters the evaluation's bounds need (``{}``: none needs them)."""
        if not self.needs_reference:
            return {}
        if self.reference is None:
            raise RuntimeError("Trainer.init(population) must run first: the PAC-Bayes prior is centred on the initial parameters")
        return self.reference

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
        n = data["y_train"].shape[0]
        if self.sampling == "without_replacement":
            idx = jax.random.choice(key, n, (self.batch_size,), replace=False)
        else:
            idx = jax.random.randint(key, (self.batch_size,), 0, n)
        return data["x_train"][idx], data["y_train"][idx]

    def _population_step(self, states: TrainState, data) -> TrainState:
        step = states.step[0]  # members advance in lockstep
        shared = self._batch(jax.random.fold_in(jax.random.key(self.cfg.seed), step), data) if self.cfg.shared_batches else None

        def one(st):
            batch = shared if shared is not None else self._batch(jax.random.fold_in(st.data_key, st.step), data)
            return self.step.train_step(st, batch, jax.random.fold_in(st.dropout_key, st.step))[0]

        return jax.vmap(one)(states)

    def _run_segment(self, states: TrainState, data, gaps: jax.Array, reference):
        """For each gap: ``gap`` population steps, then one evaluation. Returns (states, metrics (k, P, ...))."""

        def interval(st, gap):
            st = jax.lax.fori_loop(0, gap, lambda _, s: self._population_step(s, data), st)
            m = jax.vmap(self.evaluate_member, in_axes=(0, None, 0))(st, data, reference)
            if self.cfg.snapshots:  # the population's parameters at this evaluation (re-estimation later)
                m = {**m, SNAPSHOT: {"params": st.params, "batch_stats": st.batch_stats}}
            return st, m

        return jax.lax.scan(interval, states, gaps)

    def compile(self, states: TrainState, k: int) -> float:
        """Compile the k-evaluation segment ahead of time; returns the seconds it took
        (near zero when JAX's persistent compilation cache already holds it)."""
        t0 = time.perf_counter()
        self._compiled[k] = self._run.lower(states, self.data, jnp.zeros(k, jnp.int32), self._reference()).compile()
        return time.perf_counter() - t0

    def run(self, states: TrainState, gaps: Sequence[int]) -> tuple[TrainState, dict]:
        """Advance by ``gaps[0]`` steps, evaluate, ``gaps[1]`` steps, evaluate, ..."""
        g = jnp.asarray(gaps, jnp.int32)
        fn = self._compiled.get(len(gaps))
        return (fn or self._run)(states, self.data, g, self._reference())

    def evaluate(self, states: TrainState) -> dict:
        return self._evaluate(states, self.data, self._reference())

    def host_bound_metrics(self, states: TrainState, steps: np.ndarray, metrics: dict) -> dict:
        """The host-side bounds (:mod:`ib_jax.bounds`) of evaluations at ``steps`` ``(E,)``, from the
        chunk's ``metrics`` ``{name: (E, P)}``: ``{bound/quantity: (E, P)}``."""
        if not self.host_bounds:
            return {}
        ctx = B.HostContext(
            steps=np.asarray(steps),
            level=np.asarray(states.level, np.float64),
            learning_rate=np.asarray(states.learning_rate, np.float64),
            n_train=len(self.dataset.y_train),
            batch_size=self.batch_size,
            n_params=self.n_params,
            metrics=metrics,
        )
        out = {}
        for _, b in self.host_bounds:
            for q, v in b.host(ctx, self.cfg).items():
                out[B.PREFIX + q] = np.asarray(v, np.float64)
        return out

    # ---------------------------------------------------------------- chunks

    def schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(evaluation steps ``(E,)``, steps to train before each evaluation ``(E,)``)."""
        steps = eval_steps(self.cfg.steps, self.cfg.n_evals, self.cfg.eval_schedule)
        return steps, np.diff(np.concatenate([[0], steps]))

    def chunk_size(self, evals_per_chunk: int | None = None) -> int:
        """Evaluations per compiled call: ``evals_per_chunk`` (default all), at most the number of evaluations."""
        n = len(self.schedule()[0])
        return min(evals_per_chunk or n, n)

    def chunks(self, states: TrainState, *, start: int = 0, evals_per_chunk: int | None = None) -> Iterator[Chunk]:
        """Train from evaluation ``start`` to the end, one compiled call per chunk of evaluations.

        Every chunk has the same compiled shape (the last one is padded with zero-step
        evaluations, dropped before it is yielded). The generator is lazy: a caller that stops
        iterating (a preemption) stops training at a chunk boundary, with the states of the last
        yielded chunk. The one chunk loop of the engine: jobs and :func:`train_population` use it.
        """
        steps, gaps = self.schedule()
        k = self.chunk_size(evals_per_chunk)
        for first in range(start, len(gaps), k):
            g = gaps[first : first + k]
            valid = len(g)
            g = np.concatenate([g, np.zeros(k - valid, np.int64)])
            states, m = self.run(states, g)
            snap = m.pop(SNAPSHOT, None)
            metrics = {name: np.asarray(v)[:valid] for name, v in m.items()}
            metrics.update(self.host_bound_metrics(states, steps[first : first + valid], metrics))
            yield Chunk(start=first, valid=valid, step=int(steps[first + valid - 1]), states=states, metrics=metrics, snapshot=snap)


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
    steps, _ = trainer.schedule()
    states = trainer.init(population)
    chunks = []
    for chunk in trainer.chunks(states, evals_per_chunk=evals_per_chunk):
        states = chunk.states
        chunks.append(chunk.metrics)
        if callback is not None:
            callback(chunk.step, states, chunk.metrics)
    return PopulationResult(
        steps=steps,
        metrics=collect(chunks),
        members=population.members(),
        diverged=np.asarray(states.diverged),
        diverged_step=np.asarray(states.diverged_step),
        state=states,
        layer_names=trainer.layer_names,
    )
