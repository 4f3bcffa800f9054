"""Standard data files: where they live, checksums, atomic downloads.

The readers of MNIST, Fashion-MNIST, CIFAR-10 and IDNNs' 12-bit task (one module each) share this.

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

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ib_jax.data.dataset import Dataset

__all__ = ["ImageArrays", "Resource", "resolve_data_dir", "file_md5", "urllib_fetch", "download", "ensure_files", "to_dataset", "Fetch"]

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


def _ensure(
    directory: Path, resources: Sequence[Resource], *, download_missing: bool, fetch: Fetch | None, verify: bool, what: str
) -> list[Path]:
    """Paths of ``resources`` in ``directory``, verified when ``verify``; downloads the missing ones if allowed."""
    missing = [r for r in resources if not (directory / r.filename).is_file()]
    if missing and not download_missing:
        raise ValueError(f"{what}: files missing and dataset.download is false; " + _manual_help(directory, missing))
    failed = []
    for r in missing:  # try every missing file, then name all that could not be fetched
        try:
            download(r, directory, fetch=fetch)
        except ValueError as e:
            failed.append((r, str(e).split("\n", 1)[1].split("\nput these files", 1)[0]))
    if failed:
        raise ValueError(
            f"{what}: could not download {len(failed)} of the {len(resources)} files:\n"
            + "\n".join(f"  {r.filename}:\n  {why}" for r, why in failed)
            + "\n"
            + _manual_help(directory, [r for r, _ in failed])
        )
    missing = [r for r in missing if r not in {f for f, _ in failed}]
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


ensure_files = _ensure


def to_dataset(a: ImageArrays, name: str) -> Dataset:
    return Dataset(a.x_train, a.y_train, a.x_test, a.y_test, n_classes=a.n_classes, name=name)


def image_entry(loader: Callable[..., ImageArrays], name: str):
    """The ``DATASETS`` loader of an image set: its standard files from ``paths.data_dir`` (or
    ``$IB_JAX_DATA_DIR``, or ``<cache_dir>/data``), downloaded once with checksum verification when
    absent and online (``dataset.download``), else a message naming them."""

    def load(cfg) -> Dataset:
        a = loader(
            cfg.paths.data_dir, cache_dir=os.path.expanduser(cfg.paths.cache_dir), download=cfg.dataset.download, verify=cfg.dataset.verify
        )
        return to_dataset(a, name)

    return load
