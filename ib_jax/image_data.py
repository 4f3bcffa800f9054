"""Readers of the standard distribution files of MNIST, Fashion-MNIST, CIFAR-10 and IDNNs' 12-bit task.

Each loader returns an :class:`ImageArrays` named tuple
``(x_train, y_train, x_test, y_test, n_classes, description)`` of numpy arrays:

* images float32 ``(n, H, W, C)``, channel last, pixel values ``uint8 / 255`` in ``[0, 1]``
  (MNIST and Fashion-MNIST ``(n, 28, 28, 1)``, CIFAR-10 ``(n, 32, 32, 3)`` RGB);
* labels int32 ``(n,)`` in ``[0, n_classes)``;
* ``load_idnns`` gives ``x`` float32 ``(n, 12)`` bits instead of images.

Where the files live (:func:`resolve_data_dir`): an explicit ``data_dir``, else the environment
variable ``IB_JAX_DATA_DIR``, else ``<cache_dir>/data``; inside it ``mnist/``, ``fashion_mnist/``
and ``cifar10/`` hold the files under their distribution names.

Downloads happen only when a file is absent and ``download=True``: each file is fetched once
from its usual public location into a temporary file in the target directory, its MD5 is checked
against the published value (the ones torchvision checks), and only then moved into place with
``os.replace`` (atomic on one file system), so an interrupted or corrupted download never leaves a
file under the final name. Offline, or with ``download=False``, a ``ValueError`` says which files
to put in which directory. The fetching function is an argument (``fetch(url, dest_path)``), so the
whole path is testable without a network.

MD5 here guards against truncated and corrupted transfers and against a different release of the
data under the same name, not against an adversary; pickled CIFAR batches are additionally read
with an unpickler that refuses every global except the few numpy needs to rebuild an array.

References: LeCun et al. (1998) for MNIST; Xiao, Rasul & Vollgraf (2017) for Fashion-MNIST;
Krizhevsky (2009) for CIFAR-10; Shwartz-Ziv & Tishby (2017), "Opening the black box of deep neural
networks via information", for the 12-bit ``var_u.mat``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "ImageArrays",
    "Resource",
    "MNIST_RESOURCES",
    "FASHION_MNIST_RESOURCES",
    "CIFAR10_ARCHIVE",
    "CIFAR10_BATCH_MD5",
    "CIFAR10_FOLDER",
    "resolve_data_dir",
    "file_md5",
    "urllib_fetch",
    "download",
    "read_idx",
    "read_cifar_batch",
    "extract_cifar10",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_idnns",
    "information_subset",
]

Fetch = Callable[[str, Path], None]


class ImageArrays(NamedTuple):
    """What every loader returns; unpacks like a tuple, in this order.

    Attributes:
      x_train: float32 ``(n_train, H, W, C)`` in [0, 1] (``(n_train, 12)`` bits for idnns).
      y_train: int32 ``(n_train,)``.
      x_test: float32 ``(n_test, ...)``, same trailing shape as ``x_train``.
      y_test: int32 ``(n_test,)``.
      n_classes: number of labels.
      description: one line naming the source, sizes and scaling (for logs and run records).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str


class Resource(NamedTuple):
    """One distribution file: its name on disk, published MD5, and mirrors tried in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# Published MD5s (the values torchvision.datasets.MNIST / FashionMNIST check; the zalando
# README lists the same for Fashion-MNIST).
MNIST_RESOURCES: tuple[Resource, ...] = tuple(
    Resource(n, m, tuple(u + n for u in _MNIST_MIRRORS))
    for n, m in zip(
        _IDX_NAMES,
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432", "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
    )
)
FASHION_MNIST_RESOURCES: tuple[Resource, ...] = tuple(
    Resource(n, m, (_FASHION_MIRROR + n,))
    for n, m in zip(
        _IDX_NAMES,
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe", "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
    )
)
CIFAR10_ARCHIVE = Resource(
    "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCH_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


def resolve_data_dir(data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None) -> Path:
    """Where data files live: ``data_dir`` if given, else ``$IB_JAX_DATA_DIR``, else ``<cache_dir>/data``.

    ``cache_dir=None`` means ``$IB_JAX_CACHE`` or ``~/.cache/ib_jax`` (as
    :func:`ib_jax.data.default_cache_dir`). ``~`` is expanded; the directory is not created here
    (a download creates it).
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("IB_JAX_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if cache_dir is None:
        cache_dir = os.environ.get("IB_JAX_CACHE", Path.home() / ".cache" / "ib_jax")
    return Path(cache_dir).expanduser() / "data"


def file_md5(path: str | os.PathLike) -> str:
    """Hex MD5 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def urllib_fetch(url: str, dest: Path, *, timeout: float = 60.0) -> None:
    """Stream ``url`` into the file ``dest`` (the default ``fetch``); raises ``OSError`` when offline."""
    req = urllib.request.Request(url, headers={"User-Agent": "ib-jax"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(dest, "wb") as f:
        for chunk in iter(lambda: r.read(1 << 20), b""):
            f.write(chunk)


def _manual_help(directory: Path, resources: Sequence[Resource]) -> str:
    lines = "\n".join(f"  {directory / r.filename}   (from {r.urls[0]}, md5 {r.md5})" for r in resources)
    return (
        f"put these files in {directory}:\n{lines}\n"
        "(set paths.data_dir or the environment variable IB_JAX_DATA_DIR to use another directory)"
    )


def download(resource: Resource, directory: str | os.PathLike, *, fetch: Fetch | None = None) -> Path:
    """Fetch ``resource`` into ``directory`` once, verified, atomically; return its final path.

    Each mirror is tried in order: the bytes go to a temporary file in ``directory`` (same file
    system, so the final ``os.replace`` is atomic), the file's MD5 is compared with
    ``resource.md5``, and only a matching file is moved to ``directory/resource.filename``. A
    mismatching or failed transfer is deleted. When every mirror fails, ``ValueError`` lists the
    errors and says which file to put where.

    Args:
      resource: the file, its published MD5 and its mirrors.
      directory: target directory (created if absent).
      fetch: ``fetch(url, dest_path)`` writes the body of ``url`` to ``dest_path``; defaults to
        :func:`urllib_fetch`. Tests pass a fake.
    """
    fetch = urllib_fetch if fetch is None else fetch
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / resource.filename
    errors = []
    for url in resource.urls:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{resource.filename}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch(url, tmp)
            got = file_md5(tmp)
            if got != resource.md5:
                errors.append(f"{url}: checksum mismatch (md5 {got}, expected {resource.md5})")
                continue
            os.replace(tmp, final)
            return final
        except OSError as e:  # urllib's URLError, timeouts and refused connections are OSErrors
            errors.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            tmp.unlink(missing_ok=True)  # after a successful os.replace the name is already gone
    raise ValueError(f"could not download {resource.filename}:\n  " + "\n  ".join(errors) + "\n" + _manual_help(directory, [resource]))


def _ensure(directory: Path, resources: Sequence[Resource], *, download_missing: bool, fetch: Fetch | None, verify: bool, what: str) -> list[Path]:
    """Paths of ``resources`` in ``directory``, verified when ``verify``; downloads the missing ones if allowed."""
    missing = [r for r in resources if not (directory / r.filename).is_file()]
    if missing and not download_missing:
        raise ValueError(f"{what}: files missing and dataset.download is false; " + _manual_help(directory, missing))
    for r in missing:
        download(r, directory, fetch=fetch)
    paths = []
    for r in resources:
        p = directory / r.filename
        if verify and r not in missing:  # a fresh download was verified already
            got = file_md5(p)
            if got != r.md5:
                raise ValueError(
                    f"{what}: {p} has md5 {got} but the published file has {r.md5}; delete it to download it again, "
                    "or set dataset.verify=false to read it as it is"
                )
        paths.append(p)
    return paths


# ---------------------------------------------------------------- idx (MNIST, Fashion-MNIST)

# idx type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); data are big-endian.
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


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
        raise ValueError(f"{path}: bad idx magic {buf[:4].hex()} (expected 0000 then a type code in {[hex(c) for c in _IDX_DTYPES]} and a rank)")
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


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    fetch: Fetch | None = None,
    verify: bool = True,
) -> ImageArrays:
    """Fashion-MNIST (Xiao et al. 2017) from ``<data_dir>/fashion_mnist/`` (same idx files as MNIST).

    Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
    8 Bag, 9 Ankle boot.
    """
    return _load_idx_set("fashion_mnist", FASHION_MNIST_RESOURCES, "Fashion-MNIST", data_dir, cache_dir, download, fetch, verify)


# ---------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: any other global is refused.

    A CIFAR batch (a Python-2 pickle) needs ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype``; pickles written by Python 3 use ``_codecs.encode`` for
    bytes (protocol 2) or numpy's ``_frombuffer`` (protocol 5). Anything else (``os.system``, ``builtins.eval``...) raises.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy >= 2 renamed the private module
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> uint8 images ``(n, 32, 32, 3)`` (RGB, channel last), int32 labels ``(n,)``.

    The file is a pickled dict with ``data``: uint8 ``(n, 3072)``, each row 1024 red then 1024
    green then 1024 blue values, each plane 32x32 row-major; and ``labels``: n ints in 0-9. Keys
    may be ``bytes`` (Python-2 pickles) or ``str``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: CIFAR batch lacks keys 'data'/'labels' (has {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: 'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0-9 (min {labels.min()}, max {labels.max()})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def extract_cifar10(archive: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Extract the six batches of ``cifar-10-python.tar.gz`` into ``directory/cifar-10-batches-py``.

    Safe by construction: only members named exactly ``cifar-10-batches-py/<batch>`` for the six
    known batch names, and only regular files, are read; their bytes are written under names this
    function builds (never a path taken from the archive), each through a temporary file and
    ``os.replace``. Raises ``ValueError`` if a batch is missing or the archive is unreadable.
    """
    archive, out = Path(archive), Path(directory) / CIFAR10_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{CIFAR10_FOLDER}/{n}": n for n in CIFAR10_BATCH_MD5}
    found = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                name = wanted.get(m.name)
                if name is None or not m.isreg():
                    continue
                src = tar.extractfile(m)
                fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as f:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            f.write(block)
                    os.replace(tmp, out / name)
                finally:
                    Path(tmp).unlink(missing_ok=True)
                found.add(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{archive}: not a readable tar.gz ({type(e).__name__}: {e})") from None
    lost = sorted(set(CIFAR10_BATCH_MD5) - found)
    if lost:
        raise ValueError(f"{archive}: archive lacks {[f'{CIFAR10_FOLDER}/{n}' for n in lost]}")
    return out


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    fetch: Fetch | None = None,
    verify: bool = True,
) -> ImageArrays:
    """CIFAR-10 (Krizhevsky 2009): 50,000 train (data_batch_1..5, in order) / 10,000 test images.

    Looks in ``<data_dir>/cifar10/`` for the extracted ``cifar-10-batches-py/`` folder; else for
    ``cifar-10-python.tar.gz``, which it extracts there (:func:`extract_cifar10`); else downloads
    the archive (when ``download``). ``verify`` checks the batches (and an archive found on disk)
    against the published MD5s. Images float32 ``(n, 32, 32, 3)`` RGB in [0, 1]; labels 0 airplane,
    1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
    """
    directory = resolve_data_dir(data_dir, cache_dir) / "cifar10"
    folder = directory / CIFAR10_FOLDER
    if not all((folder / n).is_file() for n in CIFAR10_BATCH_MD5):
        if not (directory / CIFAR10_ARCHIVE.filename).is_file() and not download:
            raise ValueError(
                f"dataset cifar10: files missing and dataset.download is false; put {CIFAR10_ARCHIVE.filename} "
                f"(from {CIFAR10_ARCHIVE.urls[0]}, md5 {CIFAR10_ARCHIVE.md5}) in {directory}, or its extracted folder "
                f"{folder} with {', '.join(CIFAR10_BATCH_MD5)} "
                "(set paths.data_dir or the environment variable IB_JAX_DATA_DIR to use another directory)"
            )
        (archive,) = _ensure(directory, [CIFAR10_ARCHIVE], download_missing=download, fetch=fetch, verify=verify, what="dataset cifar10")
        extract_cifar10(archive, directory)
    parts = {}
    for name, md5 in CIFAR10_BATCH_MD5.items():
        p = folder / name
        if verify and (got := file_md5(p)) != md5:
            raise ValueError(f"dataset cifar10: {p} has md5 {got} but the published batch has {md5}; set dataset.verify=false to read it as it is")
        parts[name] = read_cifar_batch(p)
    xs, ys = zip(*(parts[f"data_batch_{i}"] for i in range(1, 6)))
    x_train = np.concatenate(xs).astype(np.float32) / 255.0
    y_train = np.concatenate(ys)
    x_test = parts["test_batch"][0].astype(np.float32) / 255.0
    y_test = parts["test_batch"][1]
    desc = f"CIFAR-10: {len(x_train)} train / {len(x_test)} test 32x32x3 RGB images, pixels uint8/255 in [0,1], 10 classes ({folder})"
    return ImageArrays(x_train, y_train, x_test, y_test, 10, desc)


# ---------------------------------------------------------------- IDNNs 12-bit task


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
    import scipy.io

    from ib_jax.data import split  # lazy: data.py may import this module to register the loaders

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
        raise ValueError(f"dataset.path: {path}: y has shape {y.shape}; expected {n} labels ((1, {n}), ({n}, 1), ({n},) or one-hot ({n}, 2)) for F {f.shape}")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"dataset.path: {path}: labels y must be 0/1, got values {np.unique(y)[:10]}")
    if not np.all(np.isfinite(f.astype(np.float64))):
        raise ValueError(f"dataset.path: {path}: F contains NaN/inf")
    x = f.astype(np.float32)
    parts = split(x, y.astype(np.int32), seed=seed, train_fraction=train_fraction)
    desc = (f"IDNNs {path.name}: {n} patterns of {f.shape[1]} bits, P(y=1)={y.mean():.3f}, "
            f"stratified split seed={seed} train_fraction={train_fraction}")
    return ImageArrays(*parts, n_classes=2, description=desc)


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
