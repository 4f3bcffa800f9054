"""``dataset=mnist``: MNIST (LeCun et al. 1998) from its standard idx files, and the idx reader
Fashion-MNIST shares."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ib_jax.data.dataset import DatasetEntry
from ib_jax.data.files import Fetch, ImageArrays, Resource, image_entry, resolve_data_dir
from ib_jax.data.files import ensure_files as _ensure
from ib_jax.registry import DATASETS

__all__ = ["load_mnist", "read_idx", "MNIST_RESOURCES", "load_idx_set"]

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")

_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# Published MD5s (the values torchvision.datasets.MNIST / FashionMNIST check; the zalando
# README lists the same for Fashion-MNIST).
MNIST_RESOURCES: tuple[Resource, ...] = tuple(
    Resource(n, m, tuple(u + n for u in _MNIST_MIRRORS))
    for n, m in zip(
        _IDX_NAMES,
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    )
)

# ---------------------------------------------------------------- idx (MNIST, Fashion-MNIST)

# idx type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); data are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip: an uncompressed idx file
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a truncated stream raises EOFError
        raise ValueError(f"{path}: not a readable gzip file ({type(e).__name__}: {e})") from None


def read_idx(path: str | os.PathLike, *, expect_dtype: int | None = None, expect_ndim: int | None = None) -> np.ndarray:
    """Parse an idx file (gzip-compressed or not) strictly; returns the array in native byte order.

    Layout: bytes 0-1 are zero, byte 2 the type code (0x08 ubyte, 0x09 byte, 0x0B short,
    0x0C int, 0x0D float, 0x0E double), byte 3 the number of dimensions d; then d big-endian
    uint32 sizes; then exactly ``prod(sizes) * itemsize`` bytes of big-endian data. MNIST images
    have magic 0x00000803 (2051, ubyte, 3 dims), labels 0x00000801 (2049, ubyte, 1 dim).

    Raises ``ValueError`` naming the file for a bad magic, an unexpected type or rank, or a payload
    that is shorter or longer than the header says.
    """
    path = Path(path)
    buf = _read_maybe_gz(path)
    if len(buf) < 4:
        raise ValueError(f"{path}: {len(buf)} bytes, too short for an idx header")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: bad idx magic {buf[:4].hex()} (expected 0000 then a type code in {[hex(c) for c in _IDX_DTYPES]} and a rank)"
        )
    code, ndim = buf[2], buf[3]
    if expect_dtype is not None and code != expect_dtype:
        raise ValueError(f"{path}: idx type code {code:#04x}, expected {expect_dtype:#04x}")
    if expect_ndim is not None and ndim != expect_ndim:
        raise ValueError(f"{path}: idx rank {ndim}, expected {expect_ndim} (magic {buf[:4].hex()})")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated idx header ({len(buf)} bytes, rank {ndim} needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got != want:
        raise ValueError(f"{path}: header says shape {dims} ({want} data bytes) but the file holds {got} data bytes")
    return np.frombuffer(buf, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_idx_pair(images: Path, labels: Path, *, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, expect_dtype=0x08, expect_ndim=3)
    y = read_idx(labels, expect_dtype=0x08, expect_ndim=1)
    if x.shape[1:] != (28, 28):
        raise ValueError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and y.max() >= n_classes:
        raise ValueError(f"{labels}: label {int(y.max())} outside [0, {n_classes})")
    return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int32)


def _load_idx_set(sub: str, resources, title: str, data_dir, cache_dir, download, fetch, verify) -> ImageArrays:
    directory = resolve_data_dir(data_dir, cache_dir) / sub
    tr_x, tr_y, te_x, te_y = _ensure(directory, resources, download_missing=download, fetch=fetch, verify=verify, what=f"dataset {sub}")
    x_train, y_train = _read_idx_pair(tr_x, tr_y, n_classes=10)
    x_test, y_test = _read_idx_pair(te_x, te_y, n_classes=10)
    desc = f"{title}: {len(x_train)} train / {len(x_test)} test 28x28x1 images, pixels uint8/255 in [0,1], 10 classes ({directory})"
    return ImageArrays(x_train, y_train, x_test, y_test, 10, desc)


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    fetch: Fetch | None = None,
    verify: bool = True,
) -> ImageArrays:
    """MNIST (LeCun et al. 1998) from ``<data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.

    Returns 60,000 train / 10,000 test images ``(n, 28, 28, 1)`` float32 in [0, 1] and int32 labels
    0-9, in the files' order. ``verify`` checks files found on disk against the published MD5s
    (downloads are always checked).
    """
    return _load_idx_set("mnist", MNIST_RESOURCES, "MNIST", data_dir, cache_dir, download, fetch, verify)


load_idx_set = _load_idx_set
IDX_NAMES = _IDX_NAMES

DATASETS.register("mnist", DatasetEntry(image_entry(load_mnist, "mnist")))
