"""Gradient noise: optax transforms, mini-batch perturbations, level schedules, the ``noise=`` kinds.

One module per noise kind, each holding its math and its ``NOISE`` registry entry:
:mod:`isotropic`, :mod:`cone`, :mod:`fixed`, :mod:`sgd_shaped`, :mod:`heavy_tailed`,
:mod:`anticorrelated`, :mod:`dp_sgd` (optax transforms) and :mod:`multiplicative`, :mod:`label` (mini-batch
perturbations). :mod:`_core` holds the state every transform carries and the re-key protocol,
:mod:`state` finds and re-keys those states inside any optimizer state, :mod:`kinds` defines a
registry entry, :mod:`schedules` the level schedules. Importing this package registers every
built-in kind.

Every transform is an :class:`optax.GradientTransformation` with its PRNG key in the state: first
in an ``optax.chain`` it perturbs the gradient, after an optimizer the update. The strength is a
power SNR ``||g||^2 / E||xi||^2`` (dimensionless), an ``optax.ScalarOrSchedule``; ``inf`` passes
the update through bit for bit.
"""

from ib_jax.noise import schedules
from ib_jax.noise._core import CONE_MODES, SCOPES, NoiseDiagnostics, NoiseState, RekeyableNoiseState, is_noise_state
from ib_jax.noise.anticorrelated import AnticorrelatedState, anticorrelated
from ib_jax.noise.cone import cone
from ib_jax.noise.dp_sgd import dp_sgd
from ib_jax.noise.fixed import fixed
from ib_jax.noise.heavy_tailed import heavy_tailed, symmetric_stable
from ib_jax.noise.isotropic import isotropic
from ib_jax.noise.kinds import NoiseKind, register_noise
from ib_jax.noise.label import label_noise
from ib_jax.noise.multiplicative import WEIGHT_VARIANTS, multiplicative_weights
from ib_jax.noise.sgd_shaped import sgd_shaped
from ib_jax.noise.state import check_independent_keys, diagnostics, population_init, reseed
from ib_jax.registry import import_parts

__all__ = [
    "NoiseState",
    "NoiseDiagnostics",
    "RekeyableNoiseState",
    "is_noise_state",
    "isotropic",
    "cone",
    "fixed",
    "dp_sgd",
    "sgd_shaped",
    "heavy_tailed",
    "anticorrelated",
    "AnticorrelatedState",
    "symmetric_stable",
    "multiplicative_weights",
    "label_noise",
    "WEIGHT_VARIANTS",
    "diagnostics",
    "reseed",
    "population_init",
    "check_independent_keys",
    "NoiseKind",
    "register_noise",
    "schedules",
    "SCOPES",
    "CONE_MODES",
]

# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
