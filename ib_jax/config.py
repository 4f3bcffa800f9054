"""The one schema of a job: frozen dataclasses shared by hydra, the engine and the records.

Every field *is* a command-line key: ``noise.snr`` on the CLI is ``Config.noise.snr`` in
the engine, so a bad value's message names the key the user typed. Hydra's ConfigStore
registers exactly these classes (:func:`register`; a typo or a wrong type is rejected by
OmegaConf while composing), :func:`from_hydra` turns a composed config into a
:class:`Config`, and :func:`validate` checks every value — once, in one place, before any
compute — and builds the job's pieces. The engine (:mod:`ib_jax.train`) takes a
:class:`Config` directly.

Which part does what is chosen by name from the registries of :mod:`ib_jax.registry`
(noise kinds, estimators, data sets, models, schedules, optimizers); ``plugins`` names
user modules to import first, so their registered entries can be selected.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "ConfigError",
    "Config",
    "DatasetConf",
    "ModelConf",
    "OptimizerConf",
    "NoiseConf",
    "ScheduleConf",
    "EstimatorConf",
    "LoggerConf",
    "PathsConf",
    "Built",
    "register",
    "from_hydra",
    "to_dict",
    "validate",
    "safe_name",
    "dir_name",
]


class ConfigError(ValueError):
    """A job refused before any compute: a bad value, a changed config, a busy or used directory.
    The CLI prints its message and exits with status 2; other errors keep their traceback."""


def _tuples(obj) -> None:
    """Frozen dataclasses hold tuples, never lists (OmegaConf hands lists back)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, list):
            object.__setattr__(obj, f.name, tuple(v))


@dataclass(frozen=True)
class DatasetConf:
    """``dataset=<name>``: a registered data set (``ib_jax.data``; ``DATASETS`` registry)."""

    name: str = "tishby12"
    path: Optional[str] = None  # a file the loader reads (npz, idnns)
    train_fraction: float = 0.85  # fraction of rows for training (the rest is the test split)
    split_seed: int = 0
    num_samples: int = 4000  # mnist1d: rows generated
    download: bool = True  # image data sets: fetch the standard files once when absent and online
    verify: bool = True  # image data sets: check the files' published MD5 checksums

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class ModelConf:
    """``model=<preset>``; ``kind`` picks the builder from the ``MODELS`` registry."""

    kind: str = "mlp"
    widths: tuple[int, ...] = (10, 7, 5, 4, 3)  # mlp hidden widths
    activation: str = "tanh"
    init_scale: float = 1.0  # multiplies the init std 1/sqrt(fan_in)
    dropout: float = 0.0
    batch_norm: bool = False
    channels: tuple[int, ...] = (16, 16, 16)  # conv nets
    kernel_size: int = 5
    dense: tuple[int, ...] = (512,)  # cnn2d: dense widths after the conv blocks
    pool: str = "max"  # cnn2d: max | avg
    width: float = 1.0  # resnet20: channel multiplier (16/32/64 x width)
    blocks_per_stage: int = 3  # resnet20: 3 = ResNet-20
    shortcut: str = "A"  # resnet20: A (parameter-free, as in He et al. for CIFAR) | B (1x1 conv)
    record: str = "blocks"  # resnet20: hidden representations per block | per stage
    layer_noise: float = 0.0  # beta: T_l = f_l(T_{l-1}) + N(0, beta^2 I) in training and evaluation
    quantize_bits: int = 0  # k-bit activations (straight-through gradient); 0 = full precision

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class OptimizerConf:
    """``optimizer=<name>`` from the ``OPTIMIZERS`` registry (sgd, momentum, adam)."""

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: Optional[float] = None  # used by optimizer=momentum only (required there)
    batch_size: int = 512  # 0: full batch


@dataclass(frozen=True)
class NoiseConf:
    """``noise=<kind>`` from the ``NOISE`` registry. ``snr`` is the level grid: one member per
    value x seed. It holds an SNR for most kinds (power ratio ||g||^2 / E||xi||^2), sigma for
    ``fixed``; the kind's entry says which (``NoiseKind.level_name``)."""

    kind: str = "none"
    snr: tuple[float, ...] = (math.inf,)
    position: str = "gradient"  # gradient (before the optimizer) | update (after it)
    mode: str = "surface"  # cone: surface | cap | gaussian
    scope: str = "global"  # global | per_leaf
    preserve_norm: bool = False  # cone
    alpha: float = 1.5  # heavy_tailed: stability index in (0, 2]
    variant: str = "gaussian"  # multiplicative: gaussian | bernoulli

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class ScheduleConf:
    """Shape of the noise level over steps: level_t = level * schedule(t) (constant: 1).
    ``kind`` from the ``SCHEDULES`` registry, ``params`` its keyword arguments."""

    kind: str = "constant"
    params: dict[str, Any] = field(default_factory=dict)
    normalize: Optional[str] = None  # total_noise: same summed noise power as the constant schedule

    def __hash__(self):  # params is a dict: hash by value for jit static use
        return hash((self.kind, tuple(sorted((k, repr(v)) for k, v in self.params.items())), self.normalize))


@dataclass(frozen=True)
class EstimatorConf:
    """Which information estimators run at each evaluation (``ESTIMATORS`` registry), on the
    information set: the first ``n_info`` rows of train + test (X uniform over them)."""

    names: tuple[str, ...] = ("binning",)
    n_bins: int = 30
    lo: Optional[float] = -1.0  # bin range; null/null: from the data at each evaluation
    hi: Optional[float] = 1.0
    knn_k: int = 3
    kde_noise_var: float = 0.1
    n_info: int = 4096
    include_output: bool = True  # the softmax output as the last layer T
    channel_snr: float = 1.0  # weight-noise channel: weights w + zeta at this power SNR
    channel_samples: int = 8
    channel_kernel_var: float = 0.01
    channel_n: int = 256
    # binning conventions: bin_width (instead of n_bins) and, with lo/hi null, data_range layer | unit
    bin_width: Optional[float] = None
    data_range: str = "layer"
    miller_madow: bool = False  # Miller-Madow bias correction of the binned / exact entropies
    # sample propagation (estimator sp, noisy networks: model.layer_noise > 0): noise replicas per input,
    # Monte-Carlo samples per mixture component, inputs used (cost grows as (sp_n * sp_replicas)^2)
    sp_replicas: int = 32
    sp_n_mc: int = 1
    sp_n: int = 512
    info_seed: int = 0  # the information set: n_info rows drawn once with this seed (all rows when n_info >= n)
    # very wide layers (conv maps): what the estimators see of a layer with more than max_units units;
    # random_units: a fixed seeded subset of units; channel_mean: per-channel spatial means; all: every unit
    wide_policy: str = "random_units"
    max_units: int = 1024
    wide_seed: int = 0  # the same units for every member and evaluation

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class LoggerConf:
    wandb: bool = True
    mode: str = "offline"  # conf/logger sets ${oc.env:WANDB_MODE,offline}
    project: str = "ib-jax"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep (or run) directory name
    log_images: bool = True
    progress: bool = True


@dataclass(frozen=True)
class PathsConf:
    cache_dir: str = "~/.cache/ib_jax"
    output_dir: Optional[str] = None  # default: hydra's run/sweep job directory
    data_dir: Optional[str] = None  # image data files; default $IB_JAX_DATA_DIR or <cache_dir>/data
    compile_cache_dir: Optional[str] = None  # default <cache_dir>/jax_compile


@dataclass(frozen=True)
class Config:
    dataset: DatasetConf = field(default_factory=DatasetConf)
    model: ModelConf = field(default_factory=ModelConf)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    noise: NoiseConf = field(default_factory=NoiseConf)
    schedule: ScheduleConf = field(default_factory=ScheduleConf)
    estimator: EstimatorConf = field(default_factory=EstimatorConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    paths: PathsConf = field(default_factory=PathsConf)
    plugins: tuple[str, ...] = ()  # user modules that register noise kinds, estimators, data sets...
    name: str = "ib"
    seeds: int = 3  # members per grid value
    seed: int = 0  # first seed
    steps: int = 3000
    n_evals: int = 30
    eval_schedule: str = "log"  # log | linear
    shared_batches: bool = False  # all members see the same mini-batches
    probe_size: int = 256  # examples for SGD's own gradient SNR (0: off)
    evals_per_chunk: int = 5  # evaluations per compiled call: the checkpoint and progress granularity
    checkpoint: bool = True
    resume: bool = True  # relaunching the same command continues from the last checkpoint
    compile_cache: bool = True  # JAX's persistent compilation cache under paths.compile_cache_dir
    snapshots: bool = False  # save every member's parameters at every evaluation (scripts/reestimate.py)
    diverge_factor: float = 1e6  # a finite train loss above this x the member's first loss counts as diverged
    # gradient-noise diagnostics on the probe set at each evaluation (probe_size > 0):
    # tail_index (Simsekli et al.), curvature (Tr(H Sigma), B_noise), layer_grads (per-layer mean/std/SNR)
    diagnostics: tuple[str, ...] = ("tail_index", "curvature", "layer_grads")
    curvature_probes: int = 8  # Hutchinson probes for Tr(H Sigma) (0: exact, one HVP per probe example)

    def __post_init__(self):
        _tuples(self)


# ------------------------------------------------------------------------------- hydra


def _unfreeze(node) -> None:
    """OmegaConf marks frozen dataclasses read-only, which hydra cannot compose onto."""
    from omegaconf import DictConfig

    node._set_flag("readonly", None)
    for k in node.keys():
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            _unfreeze(child)
        else:
            child._set_flag("readonly", None)


def register() -> None:
    """Register :class:`Config` with hydra's ConfigStore as ``base_config``, the resolvers
    ``ib.dir`` (:func:`dir_name`) and ``ib.name`` (:func:`safe_name`) that build output
    directory names in ``conf/config.yaml``, plus a group
    option for every registered noise kind / data set / model that has no yaml in ``conf/``
    (so ``noise=my_noise`` works for a plug-in's kind)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from ib_jax import registry as R

    R.ensure_builtins()
    OmegaConf.register_new_resolver("ib.dir", lambda overrides: dir_name(overrides), replace=True)
    OmegaConf.register_new_resolver("ib.name", lambda name: safe_name(name), replace=True)
    node = OmegaConf.structured(Config)
    _unfreeze(node)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=node)
    import os

    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    for group, reg, key in (("noise", R.NOISE, "kind"), ("dataset", R.DATASETS, "name"), ("model", R.MODELS, "kind")):
        for name in reg:
            if not os.path.exists(os.path.join(conf, group, f"{name}.yaml")):
                cs.store(group=group, name=name, node={key: name})


def from_hydra(cfg) -> Config:
    """A composed hydra/OmegaConf config (or a plain dict) -> :class:`Config`."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, Config):
        return cfg
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    base = OmegaConf.structured(Config)
    _unfreeze(base)
    cfg = OmegaConf.merge(base, cfg)
    return OmegaConf.to_object(cfg)


def to_dict(c: Config) -> dict:
    """Plain nested dict (lists for tuples): what records and wandb store."""

    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x

    return conv(c)


# --------------------------------------------------------------------- directory names

_SAFE = re.compile(r"[^A-Za-z0-9._=+,@-]+")
MAX_DIR_NAME = 96


def safe_name(name: str) -> str:
    """A job ``name``: one path component, no escape from ``outputs/``. Raises naming ``name``."""
    s = str(name)
    if not s or s in (".", "..") or "/" in s or "\\" in s or "\0" in s or not re.fullmatch(r"[A-Za-z0-9._+-]+", s):
        raise ValueError(f"name must be one path component of letters, digits and ._+- (no '/' or '..'), got {s!r}")
    return s


def dir_name(overrides: str, max_len: int = MAX_DIR_NAME) -> str:
    """A valid, bounded and stable directory name for a job's overrides string.

    Characters outside ``[A-Za-z0-9._=+,@-]`` (``/``, brackets, spaces...) become ``_`` (orbax
    cannot reopen checkpoints under a directory whose name holds ``[``). When characters were
    replaced, or the name is longer than ``max_len``, it keeps a readable prefix plus ``~`` and
    12 hex digits of the full string's SHA-256, so two different override lists never share a
    directory (``a/b`` vs ``a_b``) and the same one always maps to the same name (relaunching
    resumes). Empty overrides: ``default``.
    """
    import hashlib

    raw = str(overrides)
    if not raw:
        return "default"
    s = _SAFE.sub("_", raw).strip("._") or "default"
    if s != raw or len(s) > max_len:
        # replaced characters lose information (a/b and a_b would collide): the hash keeps names apart
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        s = f"{s[: max_len - 13].rstrip('._')}~{digest}"
    return s


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Built:
    """Everything a job needs, built from a validated config."""

    config: Config
    population: Any  # ib_jax.train.Population
    dataset: Any  # ib_jax.data.Dataset
    levels: tuple[float, ...]
    noise_kind: Any  # ib_jax.noise_kinds.NoiseKind


def _finite_positive(v, key):
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{key} must be a finite number > 0, got {v}")


def validate(cfg, *, load_data: bool = True) -> Built:
    """Check every value of a job's config and build its pieces; ``ValueError`` names the key.

    Cheap checks come first; the data set is loaded only once they pass, then the checks
    that need it (batch size vs rows, k < n...). Nothing here compiles or trains.
    """
    from ib_jax import registry as R

    c = from_hydra(cfg)
    R.ensure_builtins()
    R.load_plugins(c.plugins)
    safe_name(c.name)
    for key, v, lo in (("seeds", c.seeds, 1), ("steps", c.steps, 1), ("n_evals", c.n_evals, 1), ("evals_per_chunk", c.evals_per_chunk, 1)):
        if v < lo:
            raise ValueError(f"{key} must be >= {lo}, got {v}")
    if c.probe_size < 0:
        raise ValueError(f"probe_size must be >= 0, got {c.probe_size}")
    if not c.diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1 (inf: only NaN/inf losses diverge), got {c.diverge_factor}")
    unknown = sorted(set(c.diagnostics) - {"tail_index", "curvature", "layer_grads"})
    if unknown:
        raise ValueError(f"diagnostics: unknown {unknown}; expected some of ['curvature', 'layer_grads', 'tail_index']")
    if c.curvature_probes < 0:
        raise ValueError(f"curvature_probes must be >= 0 (0 = exact), got {c.curvature_probes}")
    if c.eval_schedule not in ("log", "linear"):
        raise ValueError(f"eval_schedule must be 'log' or 'linear', got {c.eval_schedule!r}")

    # optimizer
    o = c.optimizer
    R.OPTIMIZERS.get(o.name)
    _finite_positive(o.learning_rate, "optimizer.learning_rate")
    if o.batch_size < 0:
        raise ValueError(f"optimizer.batch_size must be >= 0 (0 = full batch), got {o.batch_size}")
    if o.name == "momentum":
        if o.momentum is None or not 0.0 <= o.momentum < 1.0:
            raise ValueError(f"optimizer.momentum must be in [0, 1) for optimizer=momentum, got {o.momentum}")
    elif o.momentum is not None:
        raise ValueError(f"optimizer.momentum is used by optimizer=momentum only; optimizer={o.name} would ignore it (got {o.momentum})")

    # noise: the kind's own checks, then the grid
    nk = R.NOISE.get(c.noise.kind)
    if c.noise.position not in ("gradient", "update"):
        raise ValueError(f"noise.position must be 'gradient' or 'update', got {c.noise.position!r}")
    if nk.check is not None:
        nk.check(c.noise)
    levels = tuple(float(x) for x in c.noise.snr)
    if not levels:
        raise ValueError("noise.snr must list at least one value")
    if nk.transform is None and nk.batch is None:
        levels = (math.inf,)  # without injected noise the level means nothing: one member per seed
    for v in levels:
        if math.isnan(v) or not nk.valid_level(v):
            raise ValueError(f"noise.snr (the {nk.level_name} of kind={c.noise.kind}): {nk.level_doc}, got {v}")
    if len(set(levels)) != len(levels):
        dup = sorted({v for v in levels if levels.count(v) > 1})
        raise ValueError(f"noise.snr lists {dup} more than once; each value is one group of seeds (use seeds= for more)")

    # schedule
    if c.schedule.kind != "constant" or c.schedule.params or c.schedule.normalize:
        from ib_jax import schedules as S

        S.build(c.schedule, steps=c.steps, level_name=nk.level_name)

    # model: the builder raises naming model.*
    if c.model.layer_noise < 0 or not math.isfinite(c.model.layer_noise):
        raise ValueError(f"model.layer_noise must be a finite std >= 0, got {c.model.layer_noise}")
    if c.model.quantize_bits < 0 or c.model.quantize_bits > 16:
        raise ValueError(f"model.quantize_bits must be in [0, 16] (0 = full precision), got {c.model.quantize_bits}")
    from ib_jax import models as M

    M.build(c.model, 2)
    if nk.per_example_grads and c.model.batch_norm:
        raise ValueError(f"noise.kind={c.noise.kind!r} needs per-example gradients, undefined with model.batch_norm")

    # estimators: names, common settings, then each one's own check
    e = c.estimator
    for n in e.names:
        R.ESTIMATORS.get(n)
    if len(set(e.names)) != len(e.names):
        raise ValueError(f"estimator.names lists an estimator twice: {list(e.names)}")
    if e.n_bins < 1:
        raise ValueError(f"estimator.n_bins must be >= 1, got {e.n_bins}")
    if (e.lo is None) != (e.hi is None) or (e.lo is not None and not e.lo < e.hi):
        raise ValueError(f"estimator.lo/hi must both be null or lo < hi, got {e.lo}, {e.hi}")
    if e.n_info < 2:
        raise ValueError(f"estimator.n_info must be >= 2, got {e.n_info}")
    if e.bin_width is not None and not e.bin_width > 0:
        raise ValueError(f"estimator.bin_width must be > 0 (or null: n_bins), got {e.bin_width}")
    if e.data_range not in ("layer", "unit"):
        raise ValueError(f"estimator.data_range must be 'layer' or 'unit', got {e.data_range!r}")
    if e.wide_policy not in ("all", "random_units", "channel_mean") or e.max_units < 1:
        raise ValueError(f"estimator.wide_policy must be all | random_units | channel_mean and estimator.max_units >= 1, got {e.wide_policy!r}, {e.max_units}")

    if not load_data:
        return Built(config=c, population=None, dataset=None, levels=levels, noise_kind=nk)

    # the data set, then the checks that need it
    from ib_jax import data as D

    dataset = D.load_config(c)
    n_train = len(dataset.y_train)
    if o.batch_size > n_train:
        raise ValueError(f"optimizer.batch_size must be in [0, n_train={n_train}] (0 = full batch), got {o.batch_size}")
    n_info = min(e.n_info, len(dataset.y_all))
    for n in e.names:
        entry = R.ESTIMATORS.get(n)
        if entry.check is not None:
            entry.check(c, n_info)
    from ib_jax import train as T

    seeds = [c.seed + i for i in range(c.seeds)]
    population = T.population_grid(seeds, levels)
    return Built(config=c, population=population, dataset=dataset, levels=levels, noise_kind=nk)
