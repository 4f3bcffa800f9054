"""``dataset=mnist1d``: Greydanus' MNIST-1D, generated locally with the ``mnist1d`` package's
``make_dataset`` (never its download path), cached as ``.npz``. ``mnist1d`` is imported when the set is
loaded (an optional dependency at import time)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ib_jax.data.dataset import Dataset, DatasetEntry, _validate, cache_dir_of, default_cache_dir, split
from ib_jax.registry import DATASETS

__all__ = ["mnist1d"]


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


DATASETS.register(
    "mnist1d",
    DatasetEntry(
        lambda cfg: mnist1d(
            seed=cfg.dataset.split_seed,
            train_fraction=cfg.dataset.train_fraction,
            num_samples=cfg.dataset.num_samples,
            cache_dir=cache_dir_of(cfg),
        )
    ),
)
