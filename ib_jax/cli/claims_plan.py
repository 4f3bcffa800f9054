"""What ``ib-jax claims`` runs: the sizes of each mode, the networks and noise arms, the jobs.

Shared by :mod:`ib_jax.cli.claims` (runs and measures) and :mod:`ib_jax.cli.claims_report` (formats).
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything a mode sets (the report prints it)."""

    seeds: int
    steps: int
    n_evals: int
    levels: tuple[float, ...]
    n_info: int
    estimators: tuple[str, ...]  # on the tanh / ReLU networks
    arms: dict  # network variant -> noise arms run for it
    channel_n: int
    channel_samples: int
    quantize_bits: int
    layer_noise: float
    sp_n: int
    sp_replicas: int
    batch_sizes: tuple[int, ...]
    batch_steps: int
    batch_seeds: int
    probe_size: int
    n_batches: int  # sampled mini-batches per batch size (claim 3, direct route)
    # the data set (tishby12: the networks above; digits / mnist / fashion_mnist: the CNNs of REAL_NETWORKS)
    data: str = "tishby12"
    data_path: str | None = None  # dataset.path for data=npz (e.g. MNIST's test images: scripts/mnist_t10k_npz.py)
    cnn_channels: tuple[int, ...] = (8, 16)  # the real-data CNN: conv blocks (3x3, 2x2 max pooling), then dense layers
    cnn_dense: tuple[int, ...] = (32,)
    # optimizer.batch_size of the real-data jobs: mini-batches (a vmapped conv population costs ~ members x batch per step on a CPU)
    cnn_batch: int = 0
    renyi_n: int = 256
    sliced_n: int = 256
    margin_bits: float = 0.1  # claims 4, 5: equivalence margin for the layer-mean I(X;T)
    margin_gap: float = 0.01  # claims 4, 5: equivalence margin for the gap (nats)
    band: tuple[float, float] = (0.8, 1.2)  # claim 3: log-log slope band counted as "about linear"


MODES = {
    "quick": Sizes(
        seeds=2,
        steps=60,
        n_evals=3,
        levels=(math.inf, 0.1),
        n_info=256,
        estimators=("binning", "binning_quantile", "knn", "kde"),
        arms={"tanh": ("isotropic", "cone", "warmup", "fixed"), "quantized": ("isotropic",)},
        channel_n=64,
        channel_samples=4,
        quantize_bits=4,
        layer_noise=0.05,
        sp_n=64,
        sp_replicas=4,
        batch_sizes=(16, 256),
        batch_steps=60,
        batch_seeds=2,
        probe_size=256,
        n_batches=32,
    ),
    "full": Sizes(
        seeds=4,
        steps=1500,
        n_evals=12,
        levels=(math.inf, 1.0, 0.1),
        n_info=512,
        estimators=("binning", "binning_quantile", "knn", "kde", "channel"),
        arms={
            "tanh": ("isotropic", "cone", "warmup", "anneal", "fixed", "dp_sgd"),
            "relu": ("isotropic",),
            "quantized": ("isotropic", "cone", "warmup", "anneal"),
            "noisy": ("isotropic", "cone"),
        },
        channel_n=128,
        channel_samples=8,
        quantize_bits=4,
        layer_noise=0.05,
        sp_n=128,
        sp_replicas=8,
        batch_sizes=(16, 64, 256, 1024),
        batch_steps=1500,
        batch_seeds=4,
        probe_size=1024,
        n_batches=256,
    ),
}

# real images: a ReLU CNN (deterministic: binning saturates, Renyi and sliced MI stay defined) and the
# same CNN with Gaussian noise after every block (sample propagation's finite I(X;T)); the bundled
# 8x8 digits need no download, mnist / fashion_mnist read the standard files from --data-dir
REAL_DATA = ("digits", "mnist", "fashion_mnist", "npz")


def _real(mode: str, data: str) -> Sizes:
    small = data == "digits"  # 1,797 images of 8x8 against 70,000 of 28x28
    base = MODES[mode]
    if mode == "quick":
        return dataclasses.replace(
            base,
            data=data,
            seeds=2,
            steps=40,
            n_evals=3,
            levels=(math.inf, 0.1),
            n_info=128,
            arms={"cnn": ("isotropic", "cone"), "noisy_cnn": ("isotropic",)},
            sp_n=32,
            sp_replicas=2,
            renyi_n=64,
            sliced_n=64,
            batch_sizes=(16, 128),
            batch_steps=40,
            probe_size=128,
            n_batches=16,
            layer_noise=0.1,
            cnn_batch=128 if small else 256,
        )
    return dataclasses.replace(
        base,
        data=data,
        seeds=3,
        steps=1500 if small else 1000,
        n_evals=8,
        levels=(math.inf, 1.0, 0.1),
        n_info=512,
        arms={"cnn": ("isotropic", "cone", "warmup"), "noisy_cnn": ("isotropic", "cone")},
        sp_n=128,
        sp_replicas=8,
        renyi_n=256,
        sliced_n=256,
        batch_sizes=(16, 64, 256, 1024),
        batch_steps=1000,
        batch_seeds=3,
        cnn_batch=128 if small else 256,
        probe_size=1024,
        n_batches=128,
        layer_noise=0.5,  # ReLU activations of order 1: at beta = 0.1 sample propagation sat at log2 n (quick mode)
    )


def sizes(mode: str, data: str = "tishby12", data_path: str | None = None) -> Sizes:
    """The sizes of a mode (``quick`` | ``full``) on a data set (``tishby12`` or one of :data:`REAL_DATA`;
    ``npz``: image rows ``(n, H, W, C)`` from ``data_path``)."""
    if data == "tishby12":
        return MODES[mode]
    if data not in REAL_DATA:
        raise ValueError(f"--data must be tishby12 or one of {list(REAL_DATA)}, got {data!r}")
    if (data == "npz") != (data_path is not None):
        raise ValueError("--data-path is the file of --data npz (and only of it)")
    return dataclasses.replace(_real(mode, data), data_path=data_path)


ARMS = {
    "isotropic": "isotropic noise, constant SNR",
    "cone": "cone (perpendicular) noise, constant SNR",
    "warmup": "isotropic noise warm-up: SNR x100 -> x1 over the first quarter (geometric), equal total noise",
    "anneal": "isotropic noise annealing: SNR x1 -> x100 over the run (geometric), equal total noise",
    "fixed": "fixed Gaussian noise sigma in {0, 1, 3}, plain SGD with the gradient clipped to norm 1 (the bound routes of claim 2)",
    "dp_sgd": "DP-SGD, noise multiplier in {0.5, 1, 4}, clip 1, plain SGD (the bound routes of claim 2)",
}
# the arms whose noise is not an SNR: their own level grid, replacing the SNR grid of the others
ARM_LEVELS = {"fixed": "[0,1,3]", "dp_sgd": "[0.5,1,4]"}


@dataclasses.dataclass(frozen=True)
class JobSpec:
    key: str
    network: str  # tanh | relu | quantized | noisy | sgd
    arm: str
    overrides: tuple[str, ...]


def _levels(levels) -> str:
    return "[" + ",".join("inf" if math.isinf(v) else f"{v:g}" for v in levels) + "]"


def plan(sz: Sizes) -> list[JobSpec]:
    """Every job of a mode: information jobs (network x arm), then claim 3's batch-size jobs."""
    common = [
        "experiment=cone_vs_isotropic",
        "name=claims",
        "logger=none",
        "logger.progress=false",
        f"seeds={sz.seeds}",
        f"steps={sz.steps}",
        f"n_evals={sz.n_evals}",
        "probe_size=0",
        "diagnostics=[]",
        f"estimator.n_info={sz.n_info}",
    ]
    est = "[" + ",".join(sz.estimators) + "]"
    channel = (
        [f"estimator.channel.n={sz.channel_n}", f"estimator.channel.samples={sz.channel_samples}"] if "channel" in sz.estimators else []
    )
    cnn = [
        f"dataset={sz.data}",
        *([f"dataset.path={sz.data_path}"] if sz.data_path else []),
        "model=cnn2d",
        "model.conv.kernel_size=3",
        f"model.conv.channels=[{','.join(str(c) for c in sz.cnn_channels)}]",
        f"model.conv.dense=[{','.join(str(c) for c in sz.cnn_dense)}]",
        *(["model.input_shape=[8,8,1]"] if sz.data == "digits" else []),  # digits are flat rows of 64 pixels
        f"optimizer.batch_size={sz.cnn_batch}",
        f"estimator.renyi.n={sz.renyi_n}",
        f"estimator.sliced.n={sz.sliced_n}",
    ]
    networks = {
        "cnn": [*cnn, "estimator.names=[binning,renyi,sliced]", "estimator.binning.lo=null", "estimator.binning.hi=null"],
        "noisy_cnn": [
            *cnn,
            f"model.layer_noise={sz.layer_noise:g}",
            "estimator.names=[sp,renyi]",
            f"estimator.sp.n={sz.sp_n}",
            f"estimator.sp.replicas={sz.sp_replicas}",
        ],
        "tanh": ["model=tishby_tanh", f"estimator.names={est}", *channel],
        "relu": ["model=tishby_relu", f"estimator.names={est}", "estimator.binning.lo=null", "estimator.binning.hi=null", *channel],
        "quantized": ["model=tishby_tanh", f"model.quantize_bits={sz.quantize_bits}", "estimator.names=[exact,binning]"],
        "noisy": [
            "model=tishby_tanh",
            f"model.layer_noise={sz.layer_noise:g}",
            "estimator.names=[sp,binning]",
            f"estimator.sp.n={sz.sp_n}",
            f"estimator.sp.replicas={sz.sp_replicas}",
        ],
    }
    arms = {
        "isotropic": ["noise=isotropic"],
        "cone": ["noise=cone"],
        "warmup": [
            "noise=isotropic",
            "schedule=warmup",
            "schedule.params.init_value=100",
            "schedule.params.target=1",
            f"schedule.params.warmup_steps={max(1, sz.steps // 4)}",
            "schedule.normalize=total_noise",
        ],
        "anneal": [
            "noise=isotropic",
            "schedule=warmup",
            "schedule.params.init_value=1",
            "schedule.params.target=100",
            f"schedule.params.warmup_steps={sz.steps}",
            "schedule.normalize=total_noise",
        ],
        "fixed": ["noise=fixed", "optimizer=sgd", "optimizer.learning_rate=0.3", "optimizer.clip_norm=1.0", "optimizer.batch_size=256"],
        "dp_sgd": ["noise=dp_sgd", "optimizer=sgd", "optimizer.learning_rate=0.3", "optimizer.batch_size=256"],
    }
    jobs = []
    for network, network_arms in sz.arms.items():
        for arm in network_arms:
            levels = [f"noise.snr={ARM_LEVELS.get(arm, _levels(sz.levels))}"]
            jobs.append(JobSpec(f"{network}_{arm}", network, arm, tuple(common + levels + networks[network] + arms[arm])))
    for b in sz.batch_sizes:
        jobs.append(
            JobSpec(
                f"sgd_b{b}",
                "sgd",
                f"B={b}",
                (
                    "experiment=batch_size_snr",
                    "name=claims",
                    "logger=none",
                    "logger.progress=false",
                    f"seeds={sz.batch_seeds}",
                    f"steps={sz.batch_steps}",
                    f"n_evals={max(2, sz.n_evals // 2)}",
                    f"optimizer.batch_size={b}",
                    f"probe_size={sz.probe_size}",
                    "diagnostics=[]",
                    "estimator.names=[]",
                    # the real-data CNN without its estimators and full batch: each job its own B
                    *([o for o in cnn if not o.startswith(("estimator.", "optimizer."))] if sz.data != "tishby12" else []),
                ),
            )
        )
    return jobs


# ------------------------------------------------------------------------- jobs


ROUTES = {
    "tanh": [
        ("binning, 30 bins, range [-1, 1]", "binning", "i_xt"),
        ("quantile binning, 30 bins", "binning_quantile", "i_xt"),
        ("kNN h(T), k=3", "knn", "h_t"),
        ("KDE upper bound, noise var 0.1", "kde", "i_xt"),
        ("weight-noise channel, SNR 1", "channel", "i_xt"),
    ],
    "relu": [
        ("binning, 30 bins, per-evaluation range", "binning", "i_xt"),
        ("quantile binning, 30 bins", "binning_quantile", "i_xt"),
        ("kNN h(T), k=3", "knn", "h_t"),
        ("KDE upper bound, noise var 0.1", "kde", "i_xt"),
        ("weight-noise channel, SNR 1", "channel", "i_xt"),
    ],
    "quantized": [("exact counting", "exact", "i_xt")],
    "noisy": [("sample propagation", "sp", "i_xt")],
    "cnn": [
        ("binning, 30 bins, per-evaluation range", "binning", "i_xt"),
        ("matrix Renyi entropy, alpha 1.01", "renyi", "i_xt"),
        ("sliced MI, 64 projections", "sliced", "i_xt"),
    ],
    "noisy_cnn": [("sample propagation", "sp", "i_xt"), ("matrix Renyi entropy, alpha 1.01", "renyi", "i_xt")],
}
NETWORK_NAMES = {
    "cnn": "{data} ReLU CNN conv {channels}, dense {dense}",
    "noisy_cnn": "{data} noisy ReLU CNN (beta={beta:g})",
    "tanh": "tanh 12-10-7-5-4-3-2",
    "relu": "ReLU 12-10-7-5-4-3-2",
    "quantized": "{bits}-bit quantized tanh",
    "noisy": "noisy tanh (beta={beta:g})",
}


def _network_label(network: str, sz: Sizes) -> str:
    return NETWORK_NAMES[network].format(
        bits=sz.quantize_bits,
        beta=sz.layer_noise,
        data=sz.data,
        channels="-".join(str(c) for c in sz.cnn_channels),
        dense="-".join(str(c) for c in sz.cnn_dense),
    )
