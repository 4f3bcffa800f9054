"""Data sets: generated, bundled, read from the user's files, or (image sets) downloaded once.

One module per data set, each registering itself in ``DATASETS``: :mod:`tishby12` (a
*reconstruction* of Shwartz-Ziv & Tishby's 12-bit task, not the original file), :mod:`mnist1d`,
:mod:`digits`, :mod:`npz` (a user's own file), :mod:`mnist`, :mod:`fashion_mnist`, :mod:`cifar10`
(standard distribution files) and :mod:`idnns` (the original ``var_u.mat``, from the user).
:mod:`dataset` holds what a data set is (:class:`Dataset`, the split, label checks, the
information subset), :mod:`information` the information sets a job's estimators see
(``estimator.info_split``), :mod:`files` the standard-file machinery (data directory, checksums, atomic
downloads). Importing this package registers every built-in data set; a job's data set is
``DATASETS.get(cfg.dataset.name)(cfg)`` (:func:`load_config`).
"""

from __future__ import annotations

from ib_jax.data.cifar10 import CIFAR10_ARCHIVE, CIFAR10_BATCH_MD5, CIFAR10_FOLDER, extract_cifar10, load_cifar10, read_cifar_batch
from ib_jax.data.dataset import Dataset, DatasetEntry, check_labels, default_cache_dir, information_subset, split
from ib_jax.data.digits import digits
from ib_jax.data.fashion_mnist import FASHION_MNIST_RESOURCES, load_fashion_mnist
from ib_jax.data.files import ImageArrays, Resource, download, file_md5, resolve_data_dir, urllib_fetch
from ib_jax.data.idnns import load_idnns
from ib_jax.data.mnist import MNIST_RESOURCES, load_mnist, read_idx
from ib_jax.data.mnist1d import mnist1d
from ib_jax.data.npz import from_npz
from ib_jax.data.tishby12 import icosahedron, tishby12, tishby12_labels
from ib_jax.registry import DATASETS, import_parts

__all__ = [
    "Dataset",
    "DatasetEntry",
    "split",
    "check_labels",
    "information_subset",
    "default_cache_dir",
    "load_config",
    "tishby12",
    "tishby12_labels",
    "icosahedron",
    "mnist1d",
    "digits",
    "from_npz",
    "ImageArrays",
    "Resource",
    "resolve_data_dir",
    "file_md5",
    "urllib_fetch",
    "download",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "read_cifar_batch",
    "extract_cifar10",
    "load_idnns",
    "MNIST_RESOURCES",
    "FASHION_MNIST_RESOURCES",
    "CIFAR10_ARCHIVE",
    "CIFAR10_BATCH_MD5",
    "CIFAR10_FOLDER",
]


def load_config(cfg) -> Dataset:
    """The data set of a job's :class:`ib_jax.config.Config`, from the ``DATASETS`` registry
    (label warnings, not errors, for a single class, gaps or test labels unseen in training)."""
    ds = DATASETS.get(cfg.dataset.name)(cfg)
    check_labels(ds, f"dataset.name={cfg.dataset.name}")
    return ds


# every module of this package registers its part when imported: a new part is one new module
import_parts(__name__, __path__)
