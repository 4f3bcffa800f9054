"""Every integer key of the schema and its inclusive range, checked before anything is sized by one.

A value outside never reaches numpy or XLA (2**63 steps would overflow the step counter, 10**12
seeds would allocate terabytes in validation). The upper limits are far above any study that fits
a machine; what fits is checked by the memory estimate of :mod:`ib_jax.job.build`.
``tests/test_layout.py`` asserts every int key of :class:`ib_jax.config.Config` is here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ib_jax.config import Config

__all__ = ["I32", "SEED", "INT_RANGES", "int_keys", "check_int_ranges"]

I32 = (1 << 31) - 1  # steps, seeds and batch indices are int32 / uint32 inside the compiled program
SEED = (1 << 32) - 1  # numpy and jax seeds

INT_RANGES: dict[str, tuple[int, int]] = {
    "dataset.split_seed": (0, SEED),
    "dataset.num_samples": (2, 10**7),
    "model.widths": (1, 1 << 20),
    "model.quantize_bits": (0, 16),
    "model.input_shape": (1, 1 << 16),
    "model.conv.channels": (1, 1 << 16),
    "model.conv.kernel_size": (1, 1024),
    "model.conv.dense": (1, 1 << 20),
    "model.resnet.blocks_per_stage": (1, 1000),
    "optimizer.batch_size": (0, I32),
    "estimator.n_info": (2, 1 << 24),
    "estimator.info_seed": (0, SEED),
    "estimator.subset_seed": (0, SEED),
    "estimator.max_units": (1, 1 << 24),
    "estimator.wide_seed": (0, SEED),
    "estimator.binning.n_bins": (1, 1 << 16),
    "estimator.knn.k": (1, 1 << 16),
    "estimator.channel.samples": (2, 1 << 12),
    "estimator.channel.n": (2, 1 << 20),
    "estimator.sp.replicas": (1, 1 << 16),
    "estimator.sp.n_mc": (1, 1 << 12),
    "estimator.sp.n": (2, 1 << 20),
    "estimator.renyi.n": (2, 1 << 14),
    "estimator.sliced.projections": (2, 1 << 16),
    "estimator.sliced.n": (2, 1 << 20),
    "estimator.sliced.k": (1, 1 << 16),
    "estimator.sliced.seed": (0, SEED),
    "estimator.variational.n": (2, 1 << 20),
    "estimator.variational.steps": (1, 1 << 20),
    "estimator.variational.hidden": (1, 1 << 12),
    "estimator.variational.batch": (2, 1 << 14),
    "estimator.variational.seed": (0, SEED),
    "bounds.pac_bayes.mc_draws": (1, 1 << 12),
    "seeds": (1, 1 << 20),
    "seed": (0, SEED - (1 << 20)),  # seed + seeds - 1 stays a uint32
    "steps": (1, I32 - 1),
    "n_evals": (1, 1 << 20),
    "probe_size": (0, 1 << 24),
    "evals_per_chunk": (1, 1 << 20),
    "curvature_probes": (0, 1 << 16),
    "plots.dpi": (50, 1200),
}


def int_keys(cls: type = None, prefix: str = "") -> list[str]:
    """The dotted keys of every ``int`` and ``tuple[int, ...]`` field of the schema (``Config`` by default)."""
    cls = Config if cls is None else cls
    out = []
    for f in dataclasses.fields(cls):
        t = str(f.type)
        key = prefix + f.name
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            out += int_keys(f.default_factory, key + ".")
        elif t in ("int", "tuple[int, ...]"):
            out.append(key)
    return out


def _get_key(c: Any, key: str) -> Any:
    for part in key.split("."):
        c = getattr(c, part)
    return c


def check_int_ranges(c: Config) -> None:
    """Raise ``ValueError`` naming the key and its limits for an integer outside :data:`INT_RANGES`."""
    for key in int_keys():
        lo, hi = INT_RANGES[key]
        value = _get_key(c, key)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
