"""Validation: every value of a job's config checked once, before any compute, and the job built.

Order: the config's own ranges (counts, factors, names) -> each selected registry entry's own
check (optimizer, noise kind, schedule, model, estimators, bounds: the entries carry their checks, this
module only walks the registries) -> the data set -> the checks that need the data (batch size
against the training rows, an estimator's k against the information set). A ``ValueError`` names
the key. Nothing here compiles or trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ib_jax import bounds as B
from ib_jax import data as D
from ib_jax import models as M
from ib_jax import registry as R
from ib_jax.config import Config, from_hydra
from ib_jax.data.information import check_info_split, information_sizes
from ib_jax.estimators.layer_features import POLICIES
from ib_jax.job.dirnames import safe_name
from ib_jax.job.memory import check_fits
from ib_jax.job.ranges import check_int_ranges
from ib_jax.noise import schedules as S
from ib_jax.noise.kinds import NoiseKind
from ib_jax.report.plots import check_plots
from ib_jax.train import optimizers as O
from ib_jax.train.population import Population, population_grid
from ib_jax.train.trainer import check_batch_size

__all__ = ["Built", "validate", "noise_levels", "DIAGNOSTICS"]

DIAGNOSTICS = ("tail_index", "curvature", "layer_grads")


@dataclass(frozen=True)
class Built:
    """Everything a job needs, built from a validated config."""

    config: Config
    population: Population | None
    dataset: Any  # ib_jax.data.Dataset, or None with load_data=False
    levels: tuple[float, ...]
    noise_kind: NoiseKind


def _check_top_level(c: Config) -> None:
    safe_name(c.name)
    check_int_ranges(c)  # every integer key within its range, before anything is sized by one
    for key, v, lo in (("seeds", c.seeds, 1), ("steps", c.steps, 1), ("n_evals", c.n_evals, 1), ("evals_per_chunk", c.evals_per_chunk, 1)):
        if v < lo:
            raise ValueError(f"{key} must be >= {lo}, got {v}")
    if c.on_version_change not in ("refuse", "resume"):
        raise ValueError(f"on_version_change must be 'refuse' or 'resume', got {c.on_version_change!r}")
    metric, _, how = str(c.objective).partition(":")
    if not metric or how not in ("", "mean", "median", "min", "max"):
        raise ValueError(f"objective must be <metric>[:mean|median|min|max] (e.g. test_loss, gap_loss:max), got {c.objective!r}")
    check_plots(c)
    if c.probe_size < 0:
        raise ValueError(f"probe_size must be >= 0, got {c.probe_size}")
    if not c.diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1 (inf: only NaN/inf losses diverge), got {c.diverge_factor}")
    unknown = sorted(set(c.diagnostics) - set(DIAGNOSTICS))
    if unknown:
        raise ValueError(f"diagnostics: unknown {unknown}; expected some of {sorted(DIAGNOSTICS)}")
    if c.curvature_probes < 0:
        raise ValueError(f"curvature_probes must be >= 0 (0 = exact), got {c.curvature_probes}")
    if c.eval_schedule not in ("log", "linear"):
        raise ValueError(f"eval_schedule must be 'log' or 'linear', got {c.eval_schedule!r}")


def noise_levels(c: Config, nk: NoiseKind) -> tuple[float, ...]:
    """The level grid ``noise.snr`` checked against the kind (one member per value x seed)."""
    if c.noise.position not in ("gradient", "update"):
        raise ValueError(f"noise.position must be 'gradient' or 'update', got {c.noise.position!r}")
    if nk.check is not None:
        nk.check(c.noise)
    grid = c.noise.snr if isinstance(c.noise.snr, (tuple, list)) else (c.noise.snr,)
    bad = [x for x in grid if isinstance(x, bool) or not isinstance(x, (int, float))]
    if bad:
        raise ValueError(f"noise.snr must be a number or a list of numbers (the {nk.level_name} grid), got {list(grid)!r}")
    levels = tuple(float(x) for x in grid)
    if not levels:
        raise ValueError("noise.snr must list at least one value")
    if nk.transform is None and nk.batch is None:
        levels = (math.inf,)  # without injected noise the level means nothing: one member per seed
    for v in levels:
        if math.isnan(v) or not nk.valid_level(v):
            raise ValueError(f"noise.snr (the {nk.level_name} of kind={c.noise.kind}): {nk.level_doc}, got {v}")
    if len(set(levels)) != len(levels):
        dup = sorted({v for v in levels if levels.count(v) > 1})
        raise ValueError(f"noise.snr lists {dup} more than once; each value is one group of seeds (use seeds= for more)")
    return levels


def _check_estimators_static(c: Config) -> None:
    e = c.estimator
    for n in e.names:
        R.ESTIMATORS.get(n)
    if len(set(e.names)) != len(e.names):
        raise ValueError(f"estimator.names lists an estimator twice: {list(e.names)}")
    if e.n_info < 2:
        raise ValueError(f"estimator.n_info must be >= 2, got {e.n_info}")
    check_info_split(c)
    if not (isinstance(e.ceiling_margin, (int, float)) and 0 <= e.ceiling_margin < 1):
        raise ValueError(f"estimator.ceiling_margin must be a number of bits in [0, 1), got {e.ceiling_margin!r}")
    if e.wide_policy not in POLICIES or e.max_units < 1:
        raise ValueError(
            f"estimator.wide_policy must be one of {POLICIES} and estimator.max_units >= 1, got {e.wide_policy!r}, {e.max_units}"
        )


def validate(cfg, *, load_data: bool = True) -> Built:
    """Check every value of a job's config and build its pieces; ``ValueError`` names the key.

    Cheap checks come first; the data set is loaded only once they pass, then the checks
    that need it (batch size vs rows, k < n...). Nothing here compiles or trains.
    """
    c = from_hydra(cfg)
    R.ensure_builtins()
    R.load_plugins(c.plugins)
    _check_top_level(c)
    O.check(c)
    nk = R.NOISE.get(c.noise.kind)
    levels = noise_levels(c, nk)
    if c.schedule.kind != "constant" or c.schedule.params or c.schedule.normalize:
        S.build(c.schedule, steps=c.steps, level_name=nk.level_name)
    M.check(c)
    if nk.per_example_grads and c.model.batch_norm:
        raise ValueError(f"noise.kind={c.noise.kind!r} needs per-example gradients, undefined with model.batch_norm")
    _check_estimators_static(c)
    if not load_data:
        return Built(config=c, population=None, dataset=None, levels=levels, noise_kind=nk)

    # the data set, then the checks that need it
    dataset = D.load_config(c)
    check_batch_size(c, dataset)
    n_info = min(information_sizes(c, dataset).values())  # the smallest information set (estimator.info_split)
    for n in c.estimator.names:
        entry = R.ESTIMATORS.get(n)
        if entry.check is not None:
            entry.check(c, n_info)
    B.check(c, len(dataset.y_train))  # the bounds that apply, each with its own check
    population = population_grid([c.seed + i for i in range(c.seeds)], levels)
    check_fits(c, dataset, population)  # before anything compiles: a population that cannot fit is refused with the numbers
    return Built(config=c, population=population, dataset=dataset, levels=levels, noise_kind=nk)
