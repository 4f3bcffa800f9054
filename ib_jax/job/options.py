"""The options of the parts a job uses: its config less the option groups no selected part reads.

The schema holds every option of every part (ResNet widths, SP replicas, cone modes...), most of
which a given job never reads. Views for people (the wandb run config) show only what is in use:
an option group is kept when a selected part declares that it reads it (``reads`` of the model,
noise kind, estimator and bound registry entries); a part that declares nothing (a plug-in given as
a plain function) keeps everything. The records (``job_config.json``) keep the whole config: they
fingerprint the job.
"""

from __future__ import annotations

import copy

from ib_jax import registry as R
from ib_jax.config import Config, to_dict

__all__ = ["used_options", "ESTIMATOR_GROUPS", "NOISE_OPTIONS", "MODEL_GROUPS", "BOUND_GROUPS"]

ESTIMATOR_GROUPS = ("binning", "knn", "kde", "channel", "sp", "exact", "renyi", "sliced", "variational")
NOISE_OPTIONS = ("position", "mode", "scope", "preserve_norm", "alpha", "variant", "clip")
MODEL_GROUPS = ("conv", "resnet")
BOUND_GROUPS = ("pac_bayes", "dp")


def _reads(registry, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if name not in registry:
        return default
    reads = getattr(registry.get(name), "reads", None)
    return default if reads is None else tuple(reads)


def used_options(c: Config) -> dict:
    """``to_dict(c)`` less the option groups that none of the job's parts reads (see module docstring)."""
    d = copy.deepcopy(to_dict(c))
    # (registry, the parts in use, the option groups of the family, the section of the dict)
    families = (
        (R.ESTIMATORS, c.estimator.names, ESTIMATOR_GROUPS, "estimator"),
        (R.MODELS, (c.model.kind,), MODEL_GROUPS, "model"),
        (R.NOISE, (c.noise.kind,), NOISE_OPTIONS, "noise"),
        (R.BOUNDS, c.bounds.names, BOUND_GROUPS, "bounds"),
    )
    for registry, names, groups, section in families:
        read = set()
        for n in names:
            read |= set(_reads(registry, n, groups))
        for g in groups:
            if g not in read:
                d[section].pop(g, None)
    if c.optimizer.name != "momentum":
        d["optimizer"].pop("momentum", None)
    if c.optimizer.name != "adamw":
        d["optimizer"].pop("weight_decay", None)
    if not c.schedule.params:
        d["schedule"].pop("params", None)
    return d
