"""ib-jax: gradient-noise studies of what a network's layers keep about their input.

The flow of a job: :mod:`ib_jax.config` (the schema) -> :mod:`ib_jax.data` -> :mod:`ib_jax.models`
-> :mod:`ib_jax.train` (step, evaluation, population driver; noise from :mod:`ib_jax.noise`,
information from :mod:`ib_jax.estimators`, generalization bounds from :mod:`ib_jax.bounds`) -> :mod:`ib_jax.job` (validation, records, the run)
-> :mod:`ib_jax.report` (statistics, tables, plots, claims). Importing this package imports every
plug-in family, which registers the built-in parts (:mod:`ib_jax.registry`); ``job`` and ``report``
are imported on use (they pull in orbax, wandb and matplotlib).
"""

from ib_jax import bounds, data, estimators, models, noise, train
from ib_jax.noise import schedules
from ib_jax.train import gradient_stats

__version__ = "0.3.0"
__all__ = ["bounds", "data", "estimators", "gradient_stats", "models", "noise", "schedules", "train", "__version__"]
