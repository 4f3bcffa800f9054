"""Training: one member's pure step, its evaluation, and the population driver.

:mod:`step` (``train_step(state, batch, key)`` and the optax chain with its noise),
:mod:`optimizers` (the ``OPTIMIZERS`` entries), :mod:`evaluation` (losses, gaps, estimators,
gradient diagnostics), :mod:`gradient_stats` (SGD's SNR, tail index, curvature), :mod:`population`
(seeds x levels), :mod:`trainer` (one compiled program for a whole population, chunk by chunk).

Quick start::

    from ib_jax import config, data, train
    cfg = config.Config(noise=config.NoiseConf(kind="isotropic"), steps=2000)
    ds = data.tishby12()
    pop = train.population_grid(seeds=[0, 1, 2], levels=[float("inf"), 10.0, 1.0])
    res = train.train_population(cfg, ds, pop)
    res.metrics["gap_loss"]            # (P, n_evals)
    res.metrics["binning/h_x_given_t"] # (P, n_evals, n_layers)
"""

from ib_jax.registry import import_parts
from ib_jax.train import gradient_stats, optimizers
from ib_jax.train.evaluation import make_evaluate
from ib_jax.train.population import Population, eval_steps, population_grid
from ib_jax.train.step import Step, TrainState, make_tx, xent
from ib_jax.train.trainer import SNAPSHOT, Chunk, PopulationResult, Trainer, collect, train_population

__all__ = [
    "SNAPSHOT",
    "Chunk",
    "Population",
    "PopulationResult",
    "Step",
    "TrainState",
    "Trainer",
    "collect",
    "eval_steps",
    "gradient_stats",
    "make_evaluate",
    "make_tx",
    "optimizers",
    "population_grid",
    "train_population",
    "xent",
]

# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
