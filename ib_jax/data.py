"""Data sets: generated, bundled, read from the user's files, or (image sets) downloaded once.

Every loader returns a :class:`Dataset` of numpy arrays (float32 features,
int32 labels) with a deterministic train/test split from ``seed`` and
``train_fraction`` (stratified by label, so small sets keep their balance).

* ``tishby12``: the 12-bit task of Shwartz-Ziv & Tishby (2017): all 4,096
  binary patterns of 12 bits. The original label file is not ours to ship;
  :func:`tishby12_labels` is a deterministic reconstruction with a fixed,
  rotation-invariant rule over 12 points on a sphere (see its docstring) whose
  label balance and per-bit-count rates match the published data. It is NOT the
  original: measured against the original file (``var_u.mat``), the labels agree
  on only 82.5% of the 4,096 patterns, and networks compress and generalize
  differently on it. Users who have the original file can load it as ``idnns``.
* ``mnist1d``: Greydanus' MNIST-1D, generated locally with the ``mnist1d``
  package's ``make_dataset`` (never its download path), cached as ``.npz``.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images).
* ``npz``: a user's own file with arrays ``x``, ``y`` and optionally
  ``x_test``, ``y_test`` (then no split is made).
* ``mnist``, ``fashion_mnist``, ``cifar10``: the standard distribution files
  (:mod:`ib_jax.image_data`), read from ``paths.data_dir``; when absent and the
  network is reachable they are downloaded once, checksum-verified, moved into
  place atomically. Test suites build tiny files in the same formats.
* ``idnns``: the original ``var_u.mat`` of Shwartz-Ziv & Tishby from
  ``dataset.path`` (not ours to ship).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from pathlib import Path

import numpy as np

from ib_jax.registry import DATASETS

__all__ = ["Dataset", "load", "tishby12", "tishby12_labels", "icosahedron", "mnist1d", "digits", "from_npz", "split", "NAMES", "load_config", "check_labels"]

NAMES = ("tishby12", "mnist1d", "digits", "npz")


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
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels y must be integers, got dtype {y.dtype}")
    if y.min(initial=0) < 0:
        raise ValueError(f"{where}: labels must be >= 0, got min {y.min()}")
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
            "the generalization gap needs test rows: use a value < 1 or a data set with its own test split")
    if len(tr) == 0:
        raise ValueError(f"dataset.train_fraction={train_fraction} leaves no training rows ({len(y)} rows)")
    return x[tr], y[tr], x[te], y[te]


def icosahedron() -> np.ndarray:
    """The 12 vertices of a regular icosahedron on the unit sphere ``(12, 3)``: 12 uniformly spread points."""
    phi = (1 + 5**0.5) / 2
    v = []
    for a, b in itertools.product([-1, 1], [-1, 1]):
        v += [(0, a, b * phi), (a, b * phi, 0), (b * phi, 0, a)]
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# coefficients found by a grid search to match the published label statistics (see tishby12_labels)
_TISHBY_A, _TISHBY_B, _TISHBY_P1 = -1.1, -0.1, 0.517


def tishby12_labels(x: np.ndarray | None = None) -> np.ndarray:
    """Deterministic reconstruction of the tishby12 labels.

    Bit i is attached to vertex v_i of an icosahedron; s = 2x - 1 in {-1,1}^12,
    c_ij = v_i . v_j. The score is a sum of rotation-invariant terms (it depends
    on the points only through their pairwise angles, so it is spherically
    symmetric)::

        f(x) = (k - 6) + a * Q / 12 + b * O / 12,   k = sum_i x_i,
        Q = sum_ij s_i s_j c_ij              (even under x -> 1 - x)
        O = sum_i s_i (sum_j s_j c_ij)^2     (odd under x -> 1 - x)

    with a = -1.1, b = -0.1, and y = [f(x) > theta], theta the quantile that
    makes P(y=1) = 0.517. Statistics (tested): P(y=1) = 0.517; by number of set
    bits P(y=1) = 0 for 0-4, 0.076 for 5, 0.587 for 6, 0.909 for 7, 1 for 8-12
    (published: ~0.08, ~0.58, ~0.92).
    """
    all_x = ((np.arange(4096)[:, None] >> np.arange(12)) & 1).astype(np.float64)
    v = icosahedron()
    c = v @ v.T

    def score(xb):
        s = 2 * xb - 1
        k = xb.sum(1)
        q = np.einsum("ni,ij,nj->n", s, c, s)
        o = np.einsum("ni,ni->n", s, (s @ c) ** 2)
        # rounded: the score takes few exact values; float summation order must not decide ties
        return np.round((k - 6) + _TISHBY_A * q / 12 + _TISHBY_B * o / 12, 8)

    theta = np.quantile(score(all_x), 1 - _TISHBY_P1)
    xb = all_x if x is None else np.asarray(x, np.float64)
    return (score(xb) > theta).astype(np.int32)


def tishby12(*, seed: int = 0, train_fraction: float = 0.85) -> Dataset:
    """All 4,096 12-bit patterns (bits as 0/1 floats, bit i = (index >> i) & 1) and their labels."""
    x = ((np.arange(4096)[:, None] >> np.arange(12)) & 1).astype(np.float32)
    y = tishby12_labels()
    return Dataset(*split(x, y, seed=seed, train_fraction=train_fraction), n_classes=2, name="tishby12")


def default_cache_dir() -> Path:
    return Path(os.environ.get("IB_JAX_CACHE", Path.home() / ".cache" / "ib_jax"))


def mnist1d(*, seed: int = 0, train_fraction: float = 0.8, num_samples: int = 4000, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """MNIST-1D (40 features, 10 classes), generated locally and cached as ``.npz``.

    Uses ``mnist1d.data.make_dataset`` with the package's default arguments
    (its own templates, no network) and ``num_samples`` samples; the cache file
    name hashes those settings.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # imported lazily: optional at import time

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = 42
    tag = hashlib.sha1(repr(sorted(vars(args).items())).encode()).hexdigest()[:12]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"mnist1d_{tag}.npz"
    if path.exists():
        with np.load(path) as f:
            x, y = f["x"], f["y"]
    else:
        d = make_dataset(args)
        x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
        y = np.concatenate([d["y"], d["y_test"]]).astype(np.int32)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)  # atomic: a killed job never leaves a half-written cache
    x, y = _validate(x, y, "mnist1d")
    return Dataset(*split(x, y, seed=seed, train_fraction=train_fraction), n_classes=10, name="mnist1d")


def digits(*, seed: int = 0, train_fraction: float = 0.8) -> Dataset:
    """scikit-learn's bundled 8x8 digits, flattened to 64 features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = _validate(d.data / 16.0, d.target, "digits")
    return Dataset(*split(x, y, seed=seed, train_fraction=train_fraction), n_classes=10, name="digits")


def from_npz(path: str | os.PathLike, *, seed: int = 0, train_fraction: float = 0.8) -> Dataset:
    """A user's ``.npz`` with ``x``, ``y`` (and optionally ``x_test``, ``y_test``)."""
    import zipfile

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
        missing = {"x", "y"} - set(f.files)
        if missing:
            raise ValueError(f"dataset.path: {path} lacks arrays {sorted(missing)} (has {f.files})")
        try:
            x, y = _validate(f["x"], f["y"], f"dataset.path: {path}")
        except ValueError as e:
            if "Object arrays cannot be loaded" in str(e):
                raise ValueError(f"dataset.path: {path} holds object arrays; save plain numeric arrays") from e
            raise
        if "x_test" in f.files:
            if "y_test" not in f.files:
                raise ValueError(f"dataset.path: {path} has x_test but no y_test")
            xt, yt = _validate(f["x_test"], f["y_test"], f"dataset.path: {path} (test)")
            if xt.shape[1:] != x.shape[1:]:
                raise ValueError(f"dataset.path: x_test features {xt.shape[1:]} differ from x {x.shape[1:]}")
            parts = (x, y, xt, yt)
        else:
            parts = split(x, y, seed=seed, train_fraction=train_fraction)
    n_classes = int(max(parts[1].max(), parts[3].max(initial=0))) + 1
    return Dataset(*parts, n_classes=n_classes, name=path.stem)


def check_labels(ds: Dataset, where: str = "dataset") -> list[str]:
    """Warnings (not errors) about labels a study should know of: one class only, label values
    with gaps (n_classes counts the unused ones), test labels never seen in training."""
    import warnings

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


def load_config(cfg) -> Dataset:
    """The data set of a job's :class:`ib_jax.config.Config`, from the ``DATASETS`` registry."""
    ds = DATASETS.get(cfg.dataset.name)(cfg)
    check_labels(ds, f"dataset.name={cfg.dataset.name}")
    return ds


def _cache(cfg) -> str:
    return os.path.expanduser(cfg.paths.cache_dir)


@DATASETS.register("tishby12")
def _tishby12(cfg) -> Dataset:
    return tishby12(seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)


@DATASETS.register("mnist1d")
def _mnist1d(cfg) -> Dataset:
    return mnist1d(seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction,
                   num_samples=cfg.dataset.num_samples, cache_dir=_cache(cfg))


@DATASETS.register("digits")
def _digits(cfg) -> Dataset:
    return digits(seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)


@DATASETS.register("npz")
def _npz(cfg) -> Dataset:
    if not cfg.dataset.path:
        raise ValueError("dataset.path is required for dataset=npz (an .npz with arrays x, y and optionally x_test, y_test)")
    return from_npz(cfg.dataset.path, seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)


def _image(loader_name: str, name: str):
    def load_images(cfg) -> Dataset:
        from ib_jax import image_data

        a = getattr(image_data, loader_name)(cfg.paths.data_dir, cache_dir=os.path.expanduser(cfg.paths.cache_dir),
                                             download=cfg.dataset.download, verify=cfg.dataset.verify)
        return Dataset(a.x_train, a.y_train, a.x_test, a.y_test, n_classes=a.n_classes, name=name)

    return load_images


# standard distribution files from paths.data_dir (or $IB_JAX_DATA_DIR, or <cache_dir>/data); downloaded
# once with checksum verification when absent and online (dataset.download), else a message naming them
DATASETS.register("mnist", _image("load_mnist", "mnist"))
DATASETS.register("fashion_mnist", _image("load_fashion_mnist", "fashion_mnist"))
DATASETS.register("cifar10", _image("load_cifar10", "cifar10"))


@DATASETS.register("idnns")
def _idnns(cfg) -> Dataset:
    """The original 12-bit file of Shwartz-Ziv & Tishby (``var_u.mat``), from a path the user gives."""
    from ib_jax import image_data

    if not cfg.dataset.path:
        raise ValueError("dataset.path is required for dataset=idnns: the original var_u.mat of Shwartz-Ziv & Tishby (not shipped)")
    a = image_data.load_idnns(cfg.dataset.path, seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)
    return Dataset(a.x_train, a.y_train, a.x_test, a.y_test, n_classes=a.n_classes, name="idnns")


def load(name: str, *, seed: int = 0, train_fraction: float | None = None, path: str | None = None, **kwargs) -> Dataset:
    """Load a built-in data set by name (``tishby12``, ``mnist1d``, ``digits``, ``npz``)."""
    if name not in NAMES:
        raise ValueError(f"dataset.name must be one of {NAMES}, got {name!r}")
    kw = dict(kwargs)
    if train_fraction is not None:
        kw["train_fraction"] = train_fraction
    if name == "npz":
        if path is None:
            raise ValueError("dataset.path is required for dataset.name='npz'")
        return from_npz(path, seed=seed, **kw)
    return {"tishby12": tishby12, "mnist1d": mnist1d, "digits": digits}[name](seed=seed, **kw)
