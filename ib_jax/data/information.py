"""The information sets: which rows the estimators see (``estimator.n_info``, ``info_seed``, ``info_split``).

X is uniform over the rows of an information set; every I(X;T), H(T), I(T;Y) of a job is
estimated on one. ``estimator.info_split`` picks where the rows come from:

* ``all`` (the default): ``n_info`` rows of train + test pooled (the convention of Shwartz-Ziv &
  Tishby 2017, whose 12-bit plane uses all 4,096 patterns);
* ``train`` / ``test``: ``n_info`` rows of that split only;
* ``both``: two information sets, ``n_info`` rows of each, and two sets of metrics: every
  estimator ``e`` is recorded as ``e@train`` and ``e@test`` (``e@train/i_xt``, ...). Wickstrom,
  Lokse, Kampffmeyer, Yu, Principe & Jenssen (Entropy 2023) find compression mostly on the
  training data, so the planes must be measurable on each.

Each set holds ``min(n_info, rows of its split)`` rows drawn uniformly without replacement with
``numpy.random.default_rng(info_seed)`` (:func:`ib_jax.data.information_subset`), in the data's
order: the same rows on every machine, for every member and evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ib_jax.data.dataset import information_subset

__all__ = [
    "INFO_SPLITS",
    "InformationSet",
    "information_rows",
    "information_sets",
    "information_sizes",
    "info_suffixes",
    "estimator_labels",
    "check_info_split",
]

INFO_SPLITS = ("all", "train", "test", "both")


class InformationSet(NamedTuple):
    """One information set: ``suffix`` of its metric names ("" or ``@train`` / ``@test``), its inputs
    ``x`` ``(n, ...)`` and labels ``y`` ``(n,)`` (numpy), and ``rows``, their indices into the data
    set's ``x_all`` (train then test), for the ceilings and the exact frontier of the same rows."""

    suffix: str
    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray


def check_info_split(cfg) -> None:
    if cfg.estimator.info_split not in INFO_SPLITS:
        raise ValueError(f"estimator.info_split must be one of {list(INFO_SPLITS)}, got {cfg.estimator.info_split!r}")


def information_rows(cfg, n_all: int) -> np.ndarray:
    """The rows of ``n_all`` rows an information set takes: all of them when ``estimator.n_info >= n_all``,
    else a seeded subset of ``n_info`` (``estimator.info_seed``), sorted int64."""
    e = cfg.estimator
    return np.arange(n_all) if e.n_info >= n_all else information_subset(n_all, e.n_info, e.info_seed)


def info_suffixes(cfg) -> tuple[str, ...]:
    """The metric-name suffixes of the job's information sets: ``("",)``, or ``("@train", "@test")``."""
    check_info_split(cfg)
    return ("@train", "@test") if cfg.estimator.info_split == "both" else ("",)


def estimator_labels(cfg) -> list[str]:
    """The estimator names as the metrics spell them: ``estimator.names``, or each with ``@train``
    and ``@test`` when ``estimator.info_split=both``."""
    return [name + s for s in info_suffixes(cfg) for name in cfg.estimator.names]


def _parts(cfg, dataset) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    check_info_split(cfg)
    split = cfg.estimator.info_split
    parts = {"all": (dataset.x_all, dataset.y_all), "train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}
    chosen = [("@train", "train"), ("@test", "test")] if split == "both" else [("", split)]
    out = []
    for suffix, part in chosen:
        x, y = parts[part]
        if len(y) < 2:
            raise ValueError(f"estimator.info_split={split}: the {part} split has {len(y)} rows; an information set needs at least 2")
        offset = len(dataset.y_train) if part == "test" else 0  # x_all = train then test
        out.append((suffix, offset, x, y))
    return out


def information_sizes(cfg, dataset) -> dict[str, int]:
    """Rows of each information set by suffix (``min(n_info, rows of its split)``), without copying data."""
    return {suffix: min(int(cfg.estimator.n_info), len(y)) for suffix, _, _, y in _parts(cfg, dataset)}


def information_sets(cfg, dataset) -> list[InformationSet]:
    """The job's information sets from a :class:`ib_jax.data.Dataset` (see the module docstring)."""
    out = []
    for suffix, offset, x, y in _parts(cfg, dataset):
        rows = information_rows(cfg, len(y))
        out.append(InformationSet(suffix, np.asarray(x)[rows], np.asarray(y)[rows], rows + offset))
    return out
