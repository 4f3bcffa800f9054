"""``dataset=fashion_mnist``: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), the same idx files as MNIST."""

from __future__ import annotations

import os

from ib_jax.data.dataset import DatasetEntry
from ib_jax.data.files import Fetch, ImageArrays, Resource, image_entry
from ib_jax.data.mnist import IDX_NAMES as _IDX_NAMES
from ib_jax.data.mnist import load_idx_set as _load_idx_set
from ib_jax.registry import DATASETS

__all__ = ["load_fashion_mnist", "FASHION_MNIST_RESOURCES"]

_FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

FASHION_MNIST_RESOURCES: tuple[Resource, ...] = tuple(
    Resource(n, m, (_FASHION_MIRROR + n,))
    for n, m in zip(
        _IDX_NAMES,
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    )
)


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


DATASETS.register("fashion_mnist", DatasetEntry(image_entry(load_fashion_mnist, "fashion_mnist")))
