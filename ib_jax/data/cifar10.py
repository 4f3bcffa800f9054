"""``dataset=cifar10``: CIFAR-10 (Krizhevsky 2009) from the python-version archive; pickled batches are
read with an unpickler that refuses every global except the few numpy needs to rebuild an array."""

from __future__ import annotations

import os
import pickle
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ib_jax.data.dataset import DatasetEntry
from ib_jax.data.files import Fetch, ImageArrays, Resource, file_md5, image_entry, resolve_data_dir
from ib_jax.data.files import ensure_files as _ensure
from ib_jax.registry import DATASETS

__all__ = ["load_cifar10", "read_cifar_batch", "extract_cifar10", "CIFAR10_ARCHIVE", "CIFAR10_BATCH_MD5", "CIFAR10_FOLDER"]

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
            raise ValueError(
                f"dataset cifar10: {p} has md5 {got} but the published batch has {md5}; set dataset.verify=false to read it as it is"
            )
        parts[name] = read_cifar_batch(p)
    xs, ys = zip(*(parts[f"data_batch_{i}"] for i in range(1, 6)))
    x_train = np.concatenate(xs).astype(np.float32) / 255.0
    y_train = np.concatenate(ys)
    x_test = parts["test_batch"][0].astype(np.float32) / 255.0
    y_test = parts["test_batch"][1]
    desc = f"CIFAR-10: {len(x_train)} train / {len(x_test)} test 32x32x3 RGB images, pixels uint8/255 in [0,1], 10 classes ({folder})"
    return ImageArrays(x_train, y_train, x_test, y_test, 10, desc)


DATASETS.register("cifar10", DatasetEntry(image_entry(load_cifar10, "cifar10")))
