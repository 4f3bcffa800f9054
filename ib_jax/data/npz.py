"""``dataset=npz``: a user's own file from ``dataset.path``, in one of two layouts:

* ``x``, ``y`` and optionally ``x_test``, ``y_test`` (then no split is made);
* ``X_train``, ``y_train``, ``X_test``, ``y_test`` (scikit-learn's names; the layout of the
  authors' 12-bit file in kgreenewald/smoothMI).

Names are matched case-insensitively; labels may be integers, a column ``(n, 1)`` or one-hot rows
``(n, C)`` (read as their argmax)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ib_jax.data.dataset import Dataset, DatasetEntry, _validate, split
from ib_jax.registry import DATASETS

__all__ = ["from_npz"]


def from_npz(path: str | os.PathLike, *, seed: int = 0, train_fraction: float = 0.8) -> Dataset:
    """A user's ``.npz`` with ``x``, ``y`` (and optionally ``x_test``, ``y_test``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"dataset.path: no such file {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"dataset.path: {path} is not an .npz archive (np.savez writes one; a .npy or text file is not)")
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable archive is a config error naming the key
        raise ValueError(f"dataset.path: cannot read {path}: {e}") from e
    with f:
        names = {k.lower(): k for k in f.files}
        if "x" not in names and "x_train" in names:  # the X_train / y_train / X_test / y_test layout
            names["x"], names["y"] = names["x_train"], names.get("y_train", "y_train")
        missing = {"x", "y"} - {k for k in ("x", "y") if names.get(k) in f.files}
        if missing:
            raise ValueError(f"dataset.path: {path} lacks arrays {sorted(missing)} (or x_train, y_train) (has {f.files})")
        arr = lambda k: f[names[k]] if not k.startswith("y") else _labels(f[names[k]], f"dataset.path: {path} ({names[k]})")
        try:
            x, y = _validate(arr("x"), arr("y"), f"dataset.path: {path}")
        except ValueError as e:
            if "Object arrays cannot be loaded" in str(e):
                raise ValueError(f"dataset.path: {path} holds object arrays; save plain numeric arrays") from e
            raise
        if "x_test" in names:
            if "y_test" not in names:
                raise ValueError(f"dataset.path: {path} has {names['x_test']} but no y_test")
            xt, yt = _validate(arr("x_test"), arr("y_test"), f"dataset.path: {path} (test)")
            if xt.shape[1:] != x.shape[1:]:
                raise ValueError(f"dataset.path: x_test features {xt.shape[1:]} differ from x {x.shape[1:]}")
            parts = (x, y, xt, yt)
        else:
            parts = split(x, y, seed=seed, train_fraction=train_fraction)
    n_classes = int(max(parts[1].max(), parts[3].max(initial=0))) + 1
    return Dataset(*parts, n_classes=n_classes, name=path.stem)


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer labels from a vector, a ``(n, 1)`` column or one-hot ``(n, C)`` rows."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError(f"{where}: 2-d labels must be one-hot rows (a single 1 per row), got shape {y.shape}")
        return y.argmax(axis=1)
    return y


def _load(cfg) -> Dataset:
    if not cfg.dataset.path:
        raise ValueError("dataset.path is required for dataset=npz (an .npz with arrays x, y and optionally x_test, y_test)")
    return from_npz(cfg.dataset.path, seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)


# a user's discrete inputs (e.g. the 12-bit task re-saved) qualify for the exact IB frontier: it is
# computed only when the distinct rows are few (ib_frontier_for's max_distinct)
DATASETS.register("npz", DatasetEntry(_load, discrete=True))
