"""What a data set is: train/test arrays, the split, label checks, the information subset, registry entries.

Every loader returns a :class:`Dataset` of numpy arrays (float32 features, int32 labels) with a
deterministic train/test split from ``seed`` and ``train_fraction`` (stratified by label, so
small sets keep their balance).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

MAX_CLASSES = 1 << 16  # the estimators count labels in 16 bits (binning, exact: n_classes <= 65536)

__all__ = [
    "MAX_CLASSES",
    "Dataset",
    "DatasetEntry",
    "split",
    "check_labels",
    "information_subset",
    "default_cache_dir",
    "validate_arrays",
    "cache_dir_of",
]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/test arrays plus the set the information estimators see.

    Attributes:
      x_train, y_train, x_test, y_test: float32 ``(n, ...)`` / int32 ``(n,)``.
      n_classes: number of labels.
      name: data set name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str

    @property
    def x_all(self) -> np.ndarray:
        return np.concatenate([self.x_train, self.x_test])

    @property
    def y_all(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_test])


def _validate(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype == object or y.dtype == object:
        raise ValueError(f"{where}: arrays must be numeric, got object dtype (x {x.dtype}, y {y.dtype}); save plain numeric arrays")
    if len(x) == 0:
        raise ValueError(f"{where}: no rows")
    if x.ndim < 2:
        raise ValueError(f"{where}: x must have shape (n, features...), got {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{where}: y must have shape (n,), got {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} rows but y has {len(y)}")
    if not np.issubdtype(y.dtype, np.integer) and not (
        np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        raise ValueError(f"{where}: labels y must be integers, got dtype {y.dtype}")
    # class indices in range before any cast (int32 would wrap 2**32 to 0) and before anything is
    # sized by a label value (n_classes = max + 1)
    lo, hi = (y.min(), y.max()) if y.size else (0, 0)
    if lo < 0 or hi >= MAX_CLASSES:
        raise ValueError(f"{where}: labels must be class indices in [0, {MAX_CLASSES - 1}], got min {lo} and max {hi}")
    y = y.astype(np.int64)
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: features must be numeric, got dtype {x.dtype}")
    bad = ~np.isfinite(x.astype(np.float64))
    if bad.any():
        raise ValueError(f"{where}: features contain {int(bad.sum())} NaN/inf values (first at row {int(np.argwhere(bad)[0][0])})")
    return x.astype(np.float32), y.astype(np.int32)


def split(x: np.ndarray, y: np.ndarray, *, seed: int, train_fraction: float) -> tuple[np.ndarray, ...]:
    """Deterministic stratified split: the same (seed, fraction) always gives the same rows."""
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = int(round(train_fraction * len(idx)))
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    tr = np.sort(np.concatenate(train_idx))
    te = np.sort(np.concatenate(test_idx))
    if len(te) == 0:
        raise ValueError(
            f"dataset.train_fraction={train_fraction} leaves an empty test split ({len(y)} rows); "
            "the generalization gap needs test rows: use a value < 1 or a data set with its own test split"
        )
    if len(tr) == 0:
        raise ValueError(f"dataset.train_fraction={train_fraction} leaves no training rows ({len(y)} rows)")
    return x[tr], y[tr], x[te], y[te]


def validate_arrays(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``_validate`` under its public name, for loaders in other modules."""
    return _validate(x, y, where)


def check_labels(ds: Dataset, where: str = "dataset") -> list[str]:
    """Warnings (not errors) about labels a study should know of: one class only, label values
    with gaps (n_classes counts the unused ones), test labels never seen in training."""
    msgs = []
    train, test = set(np.unique(ds.y_train).tolist()), set(np.unique(ds.y_test).tolist())
    seen = train | test
    if len(seen) < 2:
        msgs.append(f"{where}: a single class ({sorted(seen)}): accuracy and I(T;Y) are trivial")
    missing = sorted(set(range(ds.n_classes)) - seen)
    if missing:
        msgs.append(f"{where}: labels {missing} of 0..{ds.n_classes - 1} never occur (gaps in the label values)")
    unseen = sorted(test - train)
    if unseen:
        msgs.append(f"{where}: test labels {unseen} never occur in the training split")
    for m in msgs:
        warnings.warn(m, stacklevel=2)
    return msgs


def information_subset(n_total: int, n_info: int, seed: int) -> np.ndarray:
    """A fixed, seeded subset of row indices for the information set: sorted int64 ``(n_info,)``.

    Drawn uniformly without replacement by ``numpy.random.default_rng(seed)``, so the same
    ``(n_total, n_info, seed)`` gives the same rows on every machine and at every evaluation;
    ``n_info == n_total`` gives all rows. Sorted so slicing keeps the data's order.
    """
    n_total, n_info = int(n_total), int(n_info)
    if n_total < 1:
        raise ValueError(f"information_subset: n_total must be >= 1, got {n_total}")
    if not 1 <= n_info <= n_total:
        raise ValueError(f"estimator.n_info must be in [1, {n_total}] (the data set's size), got {n_info}")
    if n_info == n_total:
        return np.arange(n_total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n_info, replace=False)).astype(np.int64)


def default_cache_dir() -> Path:
    return Path(os.environ.get("IB_JAX_CACHE", Path.home() / ".cache" / "ib_jax"))


def cache_dir_of(cfg) -> str:
    """``paths.cache_dir`` of a job's config, expanded."""
    return os.path.expanduser(cfg.paths.cache_dir)


class DatasetEntry(NamedTuple):
    """A ``DATASETS`` registry entry: ``load(cfg: Config) -> Dataset`` plus what the reports may assume.

    Attributes:
      load: the loader; raises ``ValueError`` naming a ``dataset.*`` key.
      discrete: the inputs are few and discrete (X uniform over the rows), so the exact
        information-bottleneck frontier applies (:func:`ib_jax.report.summary.ib_frontier_for`).

    Called like its loader, so a plug-in may also register a plain function.
    """

    load: Callable[[Any], Dataset]
    discrete: bool = False

    def __call__(self, cfg) -> Dataset:
        return self.load(cfg)
