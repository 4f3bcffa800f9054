"""Generalization bounds logged beside the measured gap, one module per bound.

:mod:`pac_bayes` (Dziugaite & Roy 2017's recipe, in-jit for every member), :mod:`noisy_iterative`
(Pensia, Jog & Loh 2018 with Xu & Raginsky 2017: I(S; W) from the injected Gaussian noise) and
:mod:`dp` (DP-SGD's (epsilon, delta) by the ``dp-accounting`` RDP accountant, and the gap bound of
differential privacy). Shared parts: :mod:`base` (the contexts a bound sees, its registry entry,
which bounds apply to a job) and :mod:`kl` (Gaussian KL, binary kl and its inverse). Each bound
states where its assumptions hold; where a job does not meet them it is skipped with the reason,
never written as a number that does not hold. Information in nats, errors as 0-1 rates. Importing
this package registers every built-in bound.
"""

from ib_jax.bounds.base import PREFIX, Bound, BoundContext, HostContext, applicable, check, register_bound
from ib_jax.bounds.dp import epsilon, one_step_rdp
from ib_jax.bounds.kl import binary_kl, gaussian_kl, kl_inverse_upper
from ib_jax.bounds.noisy_iterative import information_bound, norm_bound
from ib_jax.bounds.pac_bayes import pac_bayes_bound
from ib_jax.registry import import_parts

__all__ = [
    "PREFIX",
    "Bound",
    "BoundContext",
    "HostContext",
    "applicable",
    "check",
    "register_bound",
    "epsilon",
    "one_step_rdp",
    "binary_kl",
    "gaussian_kl",
    "kl_inverse_upper",
    "information_bound",
    "norm_bound",
    "pac_bayes_bound",
]

# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
