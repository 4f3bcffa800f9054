"""The one schema of a job: frozen dataclasses shared by hydra, the engine and the records.

Every field *is* a command-line key: ``noise.snr`` on the CLI is ``Config.noise.snr`` in
the engine, so a bad value's message names the key the user typed. Options are grouped by the
part that reads them (``estimator.knn.k``, ``model.resnet.width``); the 0.2 flat keys are refused
naming their new place (:data:`RENAMED_KEYS`) and recorded 0.2 configs are migrated
(:func:`migrate`). Hydra's ConfigStore registers exactly these classes
(:func:`ib_jax.job.compose.register`; a typo or a wrong type is rejected by OmegaConf while
composing), :func:`from_hydra` turns a composed config into a :class:`Config`, and
:func:`ib_jax.job.build.validate` checks every value — once, before any compute — and builds the
job's pieces. The engine (:mod:`ib_jax.train`) takes a :class:`Config` directly.

Which part does what is chosen by name from the registries of :mod:`ib_jax.registry`
(noise kinds, estimators, data sets, models, schedules, optimizers); ``plugins`` names
user modules to import first, so their registered entries can be selected. This module imports
no other ib_jax module: the schema sits below everything it configures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
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
    "BinningConf",
    "KnnConf",
    "KdeConf",
    "ChannelConf",
    "SpConf",
    "ExactConf",
    "ConvConf",
    "ResNetConf",
    "LoggerConf",
    "PathsConf",
    "from_hydra",
    "to_dict",
    "RESULT_NEUTRAL_KEYS",
    "RENAMED_KEYS",
    "refuse_renamed",
    "migrate",
]


class ConfigError(ValueError):
    """A job refused before any compute: a bad value, a changed config, a busy or used directory.
    The CLI prints its message and exits with status 2; other errors keep their traceback."""


def _level(v: Any) -> Any:
    """A grid value as a float (``1`` -> ``1.0``, ``"inf"`` -> ``inf``); a non-number as given, for
    the type check that names the key."""
    v = _number(v)
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _tuples(obj) -> None:
    """Frozen dataclasses hold tuples, never lists (OmegaConf hands lists back)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, list):
            object.__setattr__(obj, f.name, tuple(v))


def _number(v: Any) -> Any:
    """``"inf"`` / ``"1e-3"`` (strict JSON records, untyped dicts) -> float; anything else as given."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


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
class ConvConf:
    """``model.conv.*``: read by the convolutional models (``cnn1d``, ``cnn2d``)."""

    channels: tuple[int, ...] = (16, 16, 16)
    kernel_size: int = 5
    dense: tuple[int, ...] = (512,)  # cnn2d: dense widths after the conv blocks
    pool: str = "max"  # cnn2d: max | avg

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class ResNetConf:
    """``model.resnet.*``: read by ``resnet20``."""

    width: float = 1.0  # channel multiplier (16/32/64 x width)
    blocks_per_stage: int = 3  # 3 = ResNet-20
    shortcut: str = "A"  # A (parameter-free, as in He et al. for CIFAR) | B (1x1 conv)
    record: str = "blocks"  # hidden representations per block | per stage


@dataclass(frozen=True)
class ModelConf:
    """``model=<preset>``; ``kind`` picks the builder from the ``MODELS`` registry. The top-level
    fields are read by every model (``widths`` by the MLP); ``conv`` and ``resnet`` only by the
    models that name them (a changed group another model would ignore is refused)."""

    kind: str = "mlp"
    widths: tuple[int, ...] = (10, 7, 5, 4, 3)  # mlp hidden widths
    activation: str = "tanh"
    # weights and biases at init (ib_jax.models.layers.INITS): lecun = flax's (truncated normal, std
    # init_scale/sqrt(fan_in), zero biases); torch = PyTorch's default (uniform +-init_scale/sqrt(fan_in), biases too)
    init: str = "lecun"
    init_scale: float = 1.0  # multiplies the init spread 1/sqrt(fan_in)
    dropout: float = 0.0
    batch_norm: bool = False
    # beta: T_l = f_l(T_{l-1}) + N(0, beta^2 I) after every recorded layer, in training and evaluation (mlp, cnn2d, resnet20)
    layer_noise: float = 0.0
    quantize_bits: int = 0  # k-bit activations (straight-through gradient); 0 = full precision (mlp)
    # (H, W, C) of flat input rows for the image models (cnn2d, resnet20), e.g. [8, 8, 1] for dataset=digits;
    # () = the data's own shape (mnist, fashion_mnist, cifar10 are images already)
    input_shape: tuple[int, ...] = ()
    conv: ConvConf = field(default_factory=ConvConf)
    resnet: ResNetConf = field(default_factory=ResNetConf)

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class OptimizerConf:
    """``optimizer=<name>`` from the ``OPTIMIZERS`` registry (sgd, momentum, adam)."""

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: Optional[float] = None  # used by optimizer=momentum only (required there)
    weight_decay: Optional[float] = None  # used by optimizer=adamw only (required there; conf/optimizer/adamw.yaml: 1e-4)
    batch_size: int = 512  # 0: full batch
    clip_norm: Optional[float] = None  # clip the mean gradient to this global L2 norm before the noise (the noisy-iterative bound's L)


@dataclass(frozen=True)
class NoiseConf:
    """``noise=<kind>`` from the ``NOISE`` registry. ``snr`` is the level grid: one member per
    value x seed. It holds an SNR for most kinds (power ratio ||g||^2 / E||xi||^2), sigma for
    ``fixed``; the kind's entry says which (``NoiseKind.level_name``)."""

    kind: str = "none"
    # the level grid: one value per group of seeds (snr for SNR kinds, sigma for fixed, p for label); a
    # scalar is a one-value grid, so a sweeper (optuna, nevergrad) can search it (typed Any: OmegaConf has
    # no union of float and list; build.noise_levels checks every value)
    snr: Any = (math.inf,)
    position: str = "gradient"  # gradient (before the optimizer) | update (after it)
    mode: str = "surface"  # cone: surface | cap | gaussian
    scope: str = "global"  # global | per_leaf
    preserve_norm: bool = False  # cone
    alpha: float = 1.5  # heavy_tailed: stability index in (0, 2]
    variant: str = "gaussian"  # multiplicative: gaussian | bernoulli
    clip: float = 1.0  # dp_sgd: per-example L2 clipping norm C

    def __post_init__(self):
        _tuples(self)
        grid = self.snr if isinstance(self.snr, (tuple, list)) else (self.snr,)
        # levels are floats (1 and 1.0 are one level: one record, one directory name, one wandb value)
        object.__setattr__(self, "snr", tuple(_level(v) for v in grid))


@dataclass(frozen=True)
class PacBayesConf:
    """``bounds.pac_bayes.*``: read by the ``pac_bayes`` bound."""

    mc_draws: int = 8  # Monte-Carlo draws of the stochastic classifier per sigma
    sigmas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)  # the posterior/prior std grid (paid for by a union bound)

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class DpConf:
    """``bounds.dp.*``: read by the ``dp`` bound (``noise=dp_sgd``)."""

    delta: float = 1e-5  # the delta of (epsilon, delta)-DP; must be < 1 / n_train


@dataclass(frozen=True)
class BoundsConf:
    """``bounds.*``: generalization bounds logged beside the gap (``ib_jax.bounds``; ``BOUNDS``
    registry). A listed bound whose assumptions the job does not meet is skipped with its reason."""

    names: tuple[str, ...] = ("pac_bayes", "noisy_iterative", "dp")
    delta: float = 0.05  # each high-probability bound holds with probability >= 1 - delta
    pac_bayes: PacBayesConf = field(default_factory=PacBayesConf)
    dp: DpConf = field(default_factory=DpConf)

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
class BinningConf:
    """``estimator.binning.*``: read by ``binning`` and ``binning_quantile``."""

    n_bins: int = 30
    lo: Optional[float] = -1.0  # bin range; null/null: from the data at each evaluation
    hi: Optional[float] = 1.0
    bin_width: Optional[float] = None  # instead of n_bins
    data_range: str = "layer"  # with lo/hi null: one range per layer | per unit
    miller_madow: bool = False  # Miller-Madow bias correction of the binned entropies


@dataclass(frozen=True)
class KnnConf:
    """``estimator.knn.*``: read by ``knn``."""

    k: int = 3


@dataclass(frozen=True)
class KdeConf:
    """``estimator.kde.*``: read by ``kde``."""

    noise_var: float = 0.1


@dataclass(frozen=True)
class ChannelConf:
    """``estimator.channel.*``: read by ``channel`` (the weight-noise channel)."""

    snr: float = 1.0  # weights w + zeta at this power SNR
    samples: int = 8
    kernel_var: float = 0.01
    n: int = 256  # inputs used


@dataclass(frozen=True)
class SpConf:
    """``estimator.sp.*``: read by ``sp`` (sample propagation, noisy networks: model.layer_noise > 0).
    Cost grows as (n * replicas)^2."""

    replicas: int = 32  # noise replicas per input
    n_mc: int = 1  # Monte-Carlo samples per mixture component
    n: int = 512  # inputs used


@dataclass(frozen=True)
class ExactConf:
    """``estimator.exact.*``: read by ``exact`` (quantized networks)."""

    miller_madow: bool = False  # Miller-Madow bias correction of the exact entropies


@dataclass(frozen=True)
class RenyiConf:
    """``estimator.renyi.*``: read by ``renyi`` (matrix-based Renyi entropy). Cost grows as n^3."""

    alpha: float = 1.01  # order, > 0 and != 1 (1.01: near the von Neumann limit, as the papers)
    n: int = 256  # inputs used (seeded subset)
    width_scale: float = 1.0  # gamma of the kernel width sigma = gamma n^(-1/(4+d)), in the units of the data


@dataclass(frozen=True)
class SlicedConf:
    """``estimator.sliced.*``: read by ``sliced`` (sliced mutual information). Cost grows as projections * n^2."""

    projections: int = 64  # random direction pairs averaged
    n: int = 512  # inputs used (seeded subset)
    k: int = 3  # neighbours of the one-dimensional KSG / Ross estimates
    seed: int = 0  # the directions: the same for every member and evaluation


@dataclass(frozen=True)
class VariationalConf:
    """``estimator.variational.*``: read by ``infonce`` and ``nwj`` (variational lower bounds, a trained
    critic per layer and quantity). Cost grows as steps * batch^2 * hidden (concat critic)."""

    n: int = 512  # inputs used (seeded subset), split into a training and a held-out part
    steps: int = 300  # Adam steps of each critic
    hidden: int = 64  # width of the critic's hidden layer
    batch: int = 128  # K: rows per step and per evaluation batch (InfoNCE is capped at log2 K bits)
    learning_rate: float = 1e-3  # Adam step size
    held_out: float = 0.5  # fraction of the rows the bound is reported on (the critic never trains on them)
    critic: str = "concat"  # concat: f(a, b) = MLP([a, b]) | separable: g(a) . h(b), cheaper, overfits more
    seed: int = 0  # the split, the critics' initialisation and minibatches: the same for every member and evaluation


@dataclass(frozen=True)
class EstimatorConf:
    """Which information estimators run at each evaluation (``ESTIMATORS`` registry), on the
    information set: ``n_info`` rows of train + test, or of one split (``info_split``; X uniform over
    them). The top-level fields
    are read by every estimator; each group by the estimator it is named after."""

    names: tuple[str, ...] = ("binning",)
    n_info: int = 4096
    info_seed: int = 0  # the information set: n_info rows drawn once with this seed (all rows when n_info >= n)
    # where its rows come from: all (train + test pooled) | train | test | both (two sets, metrics e@train and
    # e@test for every estimator e; ib_jax.data.information)
    info_split: str = "all"
    # the rows of the information set that estimators using fewer rows (sp.n, channel.n) draw: a
    # seeded uniform subset, the same for every member and evaluation (never the first rows: data are sorted)
    subset_seed: int = 0
    # an estimate within this many bits of its ceiling (log2 of the rows used; H(Y) for I(T;Y)) is
    # flagged "at ceiling" and never counted as evidence (ib_jax.estimators.ceilings)
    ceiling_margin: float = 0.05
    include_output: bool = True  # the softmax output as the last layer T
    # very wide layers (conv maps): what the estimators see of a layer with more than max_units units;
    # random_units: a fixed seeded subset of units; channel_mean: per-channel spatial means; all: every unit
    wide_policy: str = "random_units"
    max_units: int = 1024
    wide_seed: int = 0  # the same units for every member and evaluation
    binning: BinningConf = field(default_factory=BinningConf)
    knn: KnnConf = field(default_factory=KnnConf)
    kde: KdeConf = field(default_factory=KdeConf)
    channel: ChannelConf = field(default_factory=ChannelConf)
    sp: SpConf = field(default_factory=SpConf)
    exact: ExactConf = field(default_factory=ExactConf)
    renyi: RenyiConf = field(default_factory=RenyiConf)
    sliced: SlicedConf = field(default_factory=SlicedConf)
    variational: VariationalConf = field(default_factory=VariationalConf)

    def __post_init__(self):
        _tuples(self)


@dataclass(frozen=True)
class LoggerConf:
    wandb: bool = True
    mode: str = "offline"  # conf/logger sets ${oc.env:WANDB_MODE,offline}
    project: str = "ib-jax"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the sweep (or run) directory name
    log_images: bool = True  # the job's plots, logged once per job (to its first member's run)
    progress: bool = True


@dataclass(frozen=True)
class PlotsConf:
    """``plots.*``: the figures a job (and ``ib-jax aggregate``) draws; result-neutral.

    Bands and error bars are the same 95% Student-t intervals over seeds as the tables."""

    estimator: Optional[str] = (
        None  # the estimator plotted; default: the first binning estimator listed, else the first with I(X;T) and I(T;Y)
    )
    formats: tuple[str, ...] = ("png", "pdf")  # every figure in each format (png, pdf, svg)
    dpi: int = 150  # PNG resolution

    def __post_init__(self):
        _tuples(self)


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
    bounds: BoundsConf = field(default_factory=BoundsConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    plots: PlotsConf = field(default_factory=PlotsConf)
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
    # result-neutral switches of a launch (RESULT_NEUTRAL_KEYS)
    quiet: bool = False  # print only errors and the job's one-line result; job.log keeps everything
    fresh: bool = False  # move an existing job directory aside (<dir>~prev-<UTC time>) and start afresh
    on_version_change: str = "refuse"  # a relaunch under other library versions: refuse | resume (recorded)
    # the float the hydra task returns, for optuna / nevergrad sweepers: <metric>[:<reduction>] over
    # the members' final values, e.g. test_loss, gap_loss:mean, test_acc:max (default reduction: mean)
    objective: str = "test_loss"
    diverge_factor: float = 1e6  # a finite train loss above this x the member's first loss counts as diverged
    # gradient-noise diagnostics on the probe set at each evaluation (probe_size > 0):
    # tail_index (Simsekli et al.), curvature (Tr(H Sigma), B_noise), layer_grads (per-layer mean/std/SNR)
    diagnostics: tuple[str, ...] = ("tail_index", "curvature", "layer_grads")
    curvature_probes: int = 8  # Hutchinson probes for Tr(H Sigma) (0: exact, one HVP per probe example)

    def __post_init__(self):
        _tuples(self)


# ------------------------------------------------------------------------------- hydra


# hydra and omegaconf are imported where they are used: the schema (and everything that reads a
# Config) works without them, e.g. for a user who only wants the noise transforms


def unfreeze(node) -> None:
    """OmegaConf marks frozen dataclasses read-only, which hydra cannot compose onto."""
    from omegaconf import DictConfig

    node._set_flag("readonly", None)
    for k in node.keys():
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            unfreeze(child)
        else:
            child._set_flag("readonly", None)


def from_hydra(cfg) -> Config:
    """A composed hydra/OmegaConf config (or a plain dict) -> :class:`Config`.

    A plain dict that still uses a key of the flat 0.2 layout (``estimator.knn_k``) is refused with
    a message naming the new key (:data:`RENAMED_KEYS`); :func:`migrate` converts a recorded one.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, Config):
        return cfg
    if not isinstance(cfg, DictConfig):
        refuse_renamed(_flat_keys(cfg))
        cfg = OmegaConf.create(cfg)
    base = OmegaConf.structured(Config)
    unfreeze(base)
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


# ------------------------------------------------------------------ keys that do not change results

# The one list of settings that do not change what a job computes (dotted prefixes of config keys
# and of command-line overrides): a relaunch may change them freely, they are not part of the
# recorded config, and overrides of them do not enter the output directory's name.
RESULT_NEUTRAL_KEYS: tuple[str, ...] = (
    "logger",
    "paths",
    "plots",
    "resume",
    "checkpoint",
    "evals_per_chunk",
    "compile_cache",
    "quiet",
    "fresh",
    "on_version_change",
    "objective",
    "hydra",
)


def is_result_neutral(key: str) -> bool:
    """``key`` (``logger.mode``, ``+paths.data_dir``, ``hydra/launcher``...) is in :data:`RESULT_NEUTRAL_KEYS`."""
    k = key.lstrip("+~")
    return any(k == p or k.startswith(p + ".") or k.startswith(p + "/") for p in RESULT_NEUTRAL_KEYS)


# ------------------------------------------------------------------ the 0.2 flat keys

# 0.2's flat keys -> where each now lives (a key read by two estimators maps to both)
RENAMED_KEYS: dict[str, tuple[str, ...]] = {
    **{f"estimator.{k}": (f"estimator.binning.{k}",) for k in ("n_bins", "lo", "hi", "bin_width", "data_range")},
    "estimator.miller_madow": ("estimator.binning.miller_madow", "estimator.exact.miller_madow"),
    "estimator.knn_k": ("estimator.knn.k",),
    "estimator.kde_noise_var": ("estimator.kde.noise_var",),
    **{f"estimator.channel_{k}": (f"estimator.channel.{k}",) for k in ("snr", "samples", "kernel_var", "n")},
    **{f"estimator.sp_{k}": (f"estimator.sp.{k}",) for k in ("replicas", "n_mc", "n")},
    **{f"model.{k}": (f"model.conv.{k}",) for k in ("channels", "kernel_size", "dense", "pool")},
    **{f"model.{k}": (f"model.resnet.{k}",) for k in ("width", "blocks_per_stage", "shortcut", "record")},
}


def _flat_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, Mapping):
        return [prefix] if prefix else []
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out += _flat_keys(v, key) if isinstance(v, Mapping) and v else [key]
    return out


def refuse_renamed(keys: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the new key for every 0.2 flat key among ``keys``
    (command-line overrides such as ``estimator.knn_k=5`` or dotted config keys)."""
    bad = []
    for key in keys:
        k = str(key).split("=", 1)[0].lstrip("+~")
        if k in RENAMED_KEYS:
            bad.append(f"{k} is now {' and '.join(RENAMED_KEYS[k])}")
    if bad:
        raise ValueError("options are grouped by the part that reads them: " + "; ".join(bad))


def migrate(d: dict) -> dict:
    """A recorded 0.2 config (``job_config.json``'s ``config``) in the grouped layout of this schema.

    Values move to their new keys unchanged, so an old job resumes when nothing else differs; a
    record in the current layout is returned as it is.
    """
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items()}
    for old, new in RENAMED_KEYS.items():
        group, key = old.split(".", 1)
        part = out.get(group)
        if not isinstance(part, dict) or key not in part:
            continue
        value = part.pop(key)
        for target in new:
            _, sub, field_name = target.split(".")
            part.setdefault(sub, {})
            if isinstance(part[sub], Mapping):
                part[sub] = {**part[sub], field_name: value}
    return out
