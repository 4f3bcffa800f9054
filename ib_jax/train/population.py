"""Who is in a population (seeds x levels x learning rates) and when it is evaluated."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["Population", "population_grid", "eval_steps"]


@dataclasses.dataclass(frozen=True)
class Population:
    """Per-member settings, arrays of length P.

    Levels and learning rates are kept as float64 (the values as given, so records read
    ``0.1`` back as 0.1); the compiled program sees them as float32.
    """

    seeds: np.ndarray
    level: np.ndarray
    learning_rate: np.ndarray | None = None

    def __post_init__(self):
        seeds = np.asarray(self.seeds, np.int64).reshape(-1)
        level = np.asarray(self.level, np.float64).reshape(-1)
        if len(seeds) != len(level):
            raise ValueError(f"population: {len(seeds)} seeds but {len(level)} levels")
        if np.isnan(level).any() or (level < 0).any():
            raise ValueError(f"noise.snr / sigma must be >= 0 and not NaN, got {level.tolist()}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "level", level)
        if self.learning_rate is not None:
            lr = np.asarray(self.learning_rate, np.float64).reshape(-1)
            if len(lr) != len(seeds) or not (lr > 0).all():
                raise ValueError("population.learning_rate must be P positive values")
            object.__setattr__(self, "learning_rate", lr)

    @property
    def size(self) -> int:
        return len(self.seeds)

    def members(self) -> list[dict]:
        out = []
        for i in range(self.size):
            m = {"member": i, "seed": int(self.seeds[i]), "level": float(self.level[i])}
            if self.learning_rate is not None:
                m["learning_rate"] = float(self.learning_rate[i])
            out.append(m)
        return out


def population_grid(seeds: Sequence[int], levels: Sequence[float], learning_rates: Sequence[float] | None = None) -> Population:
    """Cartesian product, level-major: member = ((level_i, lr_j), seed_k)."""
    lrs = [None] if learning_rates is None else list(learning_rates)
    rows = [(s, lv, lr) for lv in levels for lr in lrs for s in seeds]
    return Population(
        seeds=[r[0] for r in rows],
        level=[r[1] for r in rows],
        learning_rate=None if learning_rates is None else [r[2] for r in rows],
    )


def eval_steps(steps: int, n_evals: int, schedule: str = "log") -> np.ndarray:
    """Sorted unique evaluation steps in [0, steps], always including 0 and ``steps``."""
    if schedule == "linear":
        pts = np.linspace(0, steps, n_evals + 1)
    else:
        pts = np.concatenate([[0], np.logspace(0, np.log10(max(steps, 1)), n_evals)])
    return np.unique(np.round(pts).astype(np.int64).clip(0, steps).tolist() + [0, steps])
