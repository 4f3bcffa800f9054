"""``dataset=digits``: scikit-learn's bundled 8x8 digits (1,797 images); scikit-learn is imported when
the set is loaded."""

from __future__ import annotations

from ib_jax.data.dataset import Dataset, DatasetEntry, _validate, split
from ib_jax.registry import DATASETS

__all__ = ["digits"]


def digits(*, seed: int = 0, train_fraction: float = 0.8) -> Dataset:
    """scikit-learn's bundled 8x8 digits, flattened to 64 features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = _validate(d.data / 16.0, d.target, "digits")
    return Dataset(*split(x, y, seed=seed, train_fraction=train_fraction), n_classes=10, name="digits")


DATASETS.register("digits", DatasetEntry(lambda cfg: digits(seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)))
