"""``dataset=idnns``: the original ``var_u.mat`` of Shwartz-Ziv & Tishby (2017), "Opening the black box of
deep neural networks via information", from ``dataset.path`` (not ours to ship)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ib_jax.data.dataset import DatasetEntry, split
from ib_jax.data.files import ImageArrays, to_dataset
from ib_jax.registry import DATASETS

__all__ = ["load_idnns"]


def load_idnns(path: str | os.PathLike, *, seed: int = 0, train_fraction: float = 0.85) -> ImageArrays:
    """Shwartz-Ziv & Tishby's 12-bit task from their ``var_u.mat`` (github.com/ravidziv/IDNNs, ``data/``).

    The file (MATLAB 5, read with ``scipy.io.loadmat``) holds ``F``: uint8 ``(4096, 12)``, row i
    the 12 bits of i most significant first (``F[i, j] = (i >> (11 - j)) & 1``), and ``y``: uint8
    ``(1, 4096)`` in {0, 1} with mean 0.517. IDNNs' ``load_data`` turns y into the one-hot
    ``[y, 1 - y]``; we return the label ``y`` itself (class 1 = ``y == 1``), a relabelling that no
    information quantity or accuracy depends on. ``y`` shaped ``(n, 1)`` or ``(n,)`` is accepted
    too, as is a one-hot ``(n, 2)`` in IDNNs' ``[y, 1 - y]`` column order (then ``y`` = column 0).
    The same reader fits IDNNs' ``g1.mat``/``g2.mat`` (same arrays).

    The file has no test split: a stratified split by ``seed`` and ``train_fraction``
    (:func:`ib_jax.data.split`, as for ``tishby12``) gives train/test. ``x`` is float32 bits in
    the file's column order.
    """
    import scipy.io  # scipy.io loads a dozen submodules: imported when the file is read

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"dataset.path: no such file {str(path)!r} (the idnns loader needs IDNNs' var_u.mat)")
    try:
        d = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise ValueError(f"dataset.path: {path} is not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    missing = {"F", "y"} - set(d)
    if missing:
        raise ValueError(f"dataset.path: {path} lacks arrays {sorted(missing)} (has {sorted(k for k in d if not k.startswith('__'))})")
    f, y = np.asarray(d["F"]), np.asarray(d["y"])
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.number):
        raise ValueError(f"dataset.path: {path}: F must be a numeric (n, bits) matrix, got {f.dtype} {f.shape}")
    n = f.shape[0]
    if y.shape in ((n, 2), (2, n)) and n != 2:
        onehot = y if y.shape == (n, 2) else y.T
        if not np.all(np.isin(onehot, (0, 1))) or not np.all(onehot.sum(1) == 1):
            raise ValueError(f"dataset.path: {path}: y shaped {y.shape} is not one-hot")
        y = onehot[:, 0]
    elif y.size == n and sum(s != 1 for s in y.shape) <= 1:
        y = y.reshape(n)
    else:
        raise ValueError(
            f"dataset.path: {path}: y has shape {y.shape}; expected {n} labels ((1, {n}), ({n}, 1), ({n},) or one-hot ({n}, 2)) for F {f.shape}"
        )
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"dataset.path: {path}: labels y must be 0/1, got values {np.unique(y)[:10]}")
    if not np.all(np.isfinite(f.astype(np.float64))):
        raise ValueError(f"dataset.path: {path}: F contains NaN/inf")
    x = f.astype(np.float32)
    parts = split(x, y.astype(np.int32), seed=seed, train_fraction=train_fraction)
    desc = (
        f"IDNNs {path.name}: {n} patterns of {f.shape[1]} bits, P(y=1)={y.mean():.3f}, "
        f"stratified split seed={seed} train_fraction={train_fraction}"
    )
    return ImageArrays(*parts, n_classes=2, description=desc)


def _load(cfg):
    """The original 12-bit file of Shwartz-Ziv & Tishby (``var_u.mat``), from a path the user gives."""
    if not cfg.dataset.path:
        raise ValueError("dataset.path is required for dataset=idnns: the original var_u.mat of Shwartz-Ziv & Tishby (not shipped)")
    return to_dataset(load_idnns(cfg.dataset.path, seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction), "idnns")


DATASETS.register("idnns", DatasetEntry(_load, discrete=True))
