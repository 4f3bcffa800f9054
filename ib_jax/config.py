"""Structured configs (the schema behind ``conf/``) and their validation.

Registered with hydra's ConfigStore as ``base_config``: ``conf/config.yaml``
extends it, so a typo (an unknown key) or a wrong type is rejected by
OmegaConf, and :func:`validate` checks values **before any compute**, with a
message naming the key (``noise.snr``, ``estimator.knn_k``...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from ib_jax import data as D
from ib_jax import models as M
from ib_jax import schedules as S
from ib_jax import train as T

__all__ = ["Config", "validate", "register", "Built"]


@dataclass
class DatasetConf:
    name: str = "tishby12"
    path: Optional[str] = None  # for name=npz
    train_fraction: float = 0.85
    split_seed: int = 0
    num_samples: int = 4000  # mnist1d


@dataclass
class ModelConf:
    kind: str = "mlp"
    widths: list[int] = field(default_factory=lambda: [10, 7, 5, 4, 3])
    activation: str = "tanh"
    init_scale: float = 1.0
    dropout: float = 0.0
    batch_norm: bool = False
    channels: list[int] = field(default_factory=lambda: [16, 16, 16])
    kernel_size: int = 5


@dataclass
class OptimizerConf:
    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 512  # 0: full batch


@dataclass
class NoiseConf:
    kind: str = "none"  # none | isotropic | cone | fixed | sgd_shaped
    snr: list[float] = field(default_factory=lambda: [math.inf])  # the grid (sigma for kind=fixed)
    position: str = "gradient"
    mode: str = "surface"
    scope: str = "global"
    preserve_norm: bool = False


@dataclass
class ScheduleConf:
    """Shape of the noise level over steps: level_t = level * schedule(t) (constant: 1)."""

    kind: str = "constant"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EstimatorConf:
    names: list[str] = field(default_factory=lambda: ["binning"])
    n_bins: int = 30
    lo: Optional[float] = -1.0
    hi: Optional[float] = 1.0
    knn_k: int = 3
    kde_noise_var: float = 0.1
    n_info: int = 4096
    include_output: bool = True
    channel_snr: float = 1.0
    channel_samples: int = 8
    channel_kernel_var: float = 0.01
    channel_n: int = 256


@dataclass
class LoggerConf:
    wandb: bool = True
    mode: str = "offline"  # conf/logger sets ${oc.env:WANDB_MODE,offline}
    project: str = "ib-jax"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep (or run) directory name
    log_images: bool = True
    progress: bool = True


@dataclass
class PathsConf:
    cache_dir: str = "~/.cache/ib_jax"
    output_dir: Optional[str] = None  # default: hydra's run/sweep job directory


@dataclass
class Config:
    dataset: DatasetConf = field(default_factory=DatasetConf)
    model: ModelConf = field(default_factory=ModelConf)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    noise: NoiseConf = field(default_factory=NoiseConf)
    schedule: ScheduleConf = field(default_factory=ScheduleConf)
    estimator: EstimatorConf = field(default_factory=EstimatorConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    paths: PathsConf = field(default_factory=PathsConf)
    name: str = "ib"
    seeds: int = 3  # members per grid value
    seed: int = 0  # first seed
    steps: int = 3000
    n_evals: int = 30
    eval_schedule: str = "log"
    shared_batches: bool = False
    probe_size: int = 256
    evals_per_chunk: int = 5  # evaluations per compiled call: the checkpoint and progress granularity
    checkpoint: bool = True
    resume: bool = True  # relaunching the same command continues from the last checkpoint


def register() -> None:
    """Register the schema with hydra's ConfigStore as ``base_config``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)


@dataclass(frozen=True)
class Built:
    """Everything a job needs, built from a validated config."""

    model: M.ModelConfig
    train: T.TrainConfig
    population: T.Population
    dataset: D.Dataset
    levels: list[float]


def _as_container(cfg) -> Config:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))
    return cfg


def validate(cfg: DictConfig | Config) -> Built:
    """Check every value and build the job's pieces; raise ``ValueError`` naming the key.

    Cheap checks come first; the data set is loaded only once they pass.
    """
    c = _as_container(cfg)
    if c.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {c.seeds}")
    if c.steps < 1:
        raise ValueError(f"steps must be >= 1, got {c.steps}")
    if c.evals_per_chunk < 1:
        raise ValueError(f"evals_per_chunk must be >= 1, got {c.evals_per_chunk}")
    levels = [float(x) for x in c.noise.snr]
    if not levels:
        raise ValueError("noise.snr must list at least one value")
    if c.noise.kind == "none":
        levels = [math.inf]  # without injected noise the level means nothing: one member per seed
    for v in levels:
        if math.isnan(v) or (c.noise.kind == "fixed" and v < 0) or (c.noise.kind != "fixed" and v <= 0):
            what = "noise.snr (sigma for kind=fixed) must be >= 0" if c.noise.kind == "fixed" else "noise.snr must be > 0 (inf = no noise)"
            raise ValueError(f"{what}, got {v}")
    schedule = None
    if c.schedule.kind != "constant" or c.schedule.params:
        schedule = {"kind": c.schedule.kind, **dict(c.schedule.params)}
        try:
            S.from_config(schedule)
        except ValueError as e:
            raise ValueError(str(e).replace("schedule.", "schedule.", 1)) from e
    if c.dataset.name not in D.NAMES:
        raise ValueError(f"dataset.name must be one of {D.NAMES}, got {c.dataset.name!r}")
    if not 0.0 < c.dataset.train_fraction <= 1.0:
        raise ValueError(f"dataset.train_fraction must be in (0, 1], got {c.dataset.train_fraction}")
    model = _fill(M.ModelConfig, c.model, widths=tuple(c.model.widths), channels=tuple(c.model.channels))
    M.build(model, 2)  # model.* errors, before any data is loaded
    est = c.estimator
    tcfg = T.TrainConfig(
        optimizer=c.optimizer.name,
        learning_rate=c.optimizer.learning_rate,
        momentum=c.optimizer.momentum,
        batch_size=c.optimizer.batch_size,
        steps=c.steps,
        shared_batches=c.shared_batches,
        data_seed=c.seed,
        eval_schedule=c.eval_schedule,
        n_evals=c.n_evals,
        probe_size=c.probe_size,
        noise=_fill(T.NoiseConfig, c.noise, schedule=schedule),
        estimators=_fill(T.EstimatorConfig, est, names=tuple(est.names)),
    )
    try:
        tcfg.validate()
    except ValueError as e:  # the trainer names keys as optimizer.* / noise.* / estimators.*
        raise ValueError(str(e).replace("estimators.", "estimator.").replace("batch_size", "optimizer.batch_size", 1)) from e
    dataset = D.load(
        c.dataset.name,
        seed=c.dataset.split_seed,
        train_fraction=c.dataset.train_fraction,
        path=c.dataset.path,
        **({"num_samples": c.dataset.num_samples, "cache_dir": _expand(c.paths.cache_dir)} if c.dataset.name == "mnist1d" else {}),
    )
    try:
        tcfg.validate(len(dataset.y_train))
    except ValueError as e:
        raise ValueError(str(e).replace("batch_size", "optimizer.batch_size", 1)) from e
    n_info = min(est.n_info, len(dataset.y_all))
    if "knn" in est.names and est.knn_k >= n_info:
        raise ValueError(f"estimator.knn_k={est.knn_k} must be < n (the {n_info} rows of the information set)")
    seeds = [c.seed + i for i in range(c.seeds)]
    population = T.population_grid(seeds, levels)
    return Built(model=model, train=tcfg, population=population, dataset=dataset, levels=levels)


def _fill(cls, src, **given):
    """``cls`` (a frozen engine dataclass) from the same-named fields of a schema node, plus ``given``.

    The schema groups mirror the engine's configs field for field; copying by name keeps the two
    from drifting apart when a field is added.
    """
    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    return cls(**{k: getattr(src, k) for k in names if hasattr(src, k)}, **given)


def _expand(path: str) -> str:
    import os

    return os.path.expanduser(path)
