"""ib-jax: gradient-noise studies of what a network's layers keep about their input."""

from ib_jax import noise, schedules

__version__ = "0.1.0"
__all__ = ["noise", "schedules", "__version__"]
