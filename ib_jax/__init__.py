"""ib-jax: gradient-noise studies of what a network's layers keep about their input."""

from ib_jax import data, estimators, gradient_stats, models, noise, schedules, train

__version__ = "0.1.0"
__all__ = ["data", "estimators", "gradient_stats", "models", "noise", "schedules", "train", "__version__"]
