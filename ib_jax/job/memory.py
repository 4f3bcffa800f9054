"""What a population needs in memory, estimated before anything compiles, and the refusal when it cannot fit.

A population of P members is one program: every member's parameters, optimizer and noise state,
mini-batch and evaluation buffers live on the device at once (divided over the devices when the
member axis is sharded). The estimate counts float32 words of

* parameters, their gradient and the update (3 x params), the optimizer's state (Adam: 2 x params,
  momentum: 1 x), a noise state that carries a params-shaped array (anti-correlated noise: 1 x),
  the PAC-Bayes bound's initial parameters and perturbed copy (2 x);
* per-example gradients where a kind needs them (SGD-shaped noise: batch x params) and for the
  probe-set diagnostics at each evaluation (``probe_size`` x params);
* the mini-batch inputs and every hidden layer on the batch (forward and backward: 2 x);
* the evaluation: every layer on the train, test and information sets (a layer wider than
  ``estimator.max_units`` is reduced first), the estimators' pairwise tiles, and with
  ``snapshots=true`` the parameters of every evaluation of a chunk;
* the data set itself (once, shared by all members).

It is a lower bound of what XLA allocates (temporaries are not counted), meant to catch what
cannot fit by orders of magnitude (``seeds=100000 model=wide_mlp``: terabytes) before a compile
that would then wait on an allocation, not to predict the peak.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax import models as M
from ib_jax import registry as R
from ib_jax.data.information import information_sizes

__all__ = ["MemoryEstimate", "estimate", "available_bytes", "check_fits"]

F32 = 4
OPTIMIZER_SLOTS = {"adam": 2, "momentum": 1, "sgd": 0}  # params-shaped arrays in the optimizer state
NOISE_SLOTS = {"anticorrelated": 1}  # params-shaped arrays in the noise state (z_{t-1})
FITS_FRACTION = 0.9  # of the available memory


class MemoryEstimate(NamedTuple):
    """Bytes per part for the whole population (``total`` their sum), ``members`` and ``params`` per member."""

    parts: dict[str, float]
    total: float
    members: int
    params: int


def _shapes(model, x2):
    def build():
        v = model.init(jax.random.key(0), x2, train=False)
        _, hidden = model.apply(v, x2, train=False)
        return v, hidden

    return jax.eval_shape(build)


def estimate(cfg, dataset, population) -> MemoryEstimate:
    """The population's memory (see the module docstring); traces the model abstractly, compiles nothing."""
    P = population.size
    x2 = jnp.asarray(dataset.x_train[:2])
    variables, hidden = _shapes(M.build(cfg.model, dataset.n_classes), x2)
    n_params = int(sum(np.prod(a.shape) for a in jax.tree.leaves(variables)))
    widths = [int(np.prod(h.shape[1:])) for h in hidden] + [dataset.n_classes]
    seen = [min(w, cfg.estimator.max_units) if cfg.estimator.wide_policy != "all" else w for w in widths]
    n_train, n_test = len(dataset.y_train), len(dataset.y_test)
    batch = cfg.optimizer.batch_size or n_train
    n_info = sum(information_sizes(cfg, dataset).values())  # rows of every information set (estimator.info_split)
    d_in = int(np.prod(dataset.x_train.shape[1:]))
    kind = R.NOISE.get(cfg.noise.kind)
    # + the initial parameters a PAC-Bayes prior is centred on, and one perturbed copy per member
    reference = 2 if "pac_bayes" in cfg.bounds.names and not cfg.model.batch_norm else 0
    slots = 3 + OPTIMIZER_SLOTS.get(cfg.optimizer.name, 2) + NOISE_SLOTS.get(cfg.noise.kind, 0) + reference
    per_example = (batch if kind.per_example_grads else 0) + (min(cfg.probe_size, n_train) if cfg.probe_size else 0)
    k = min(cfg.evals_per_chunk, cfg.n_evals + 1)
    pairwise = min(n_info, 4096) * 512 if cfg.estimator.names else 0  # row-blocked tiles of the kNN/KDE/SP estimators
    parts = {
        "parameters, gradients, optimizer and noise state": P * slots * n_params * F32,
        "per-example gradients (noise kind, probe diagnostics)": P * per_example * n_params * F32,
        "mini-batches and their activations": 0 if cfg.shared_batches else P * batch * (d_in + 2 * sum(widths)) * F32,
        "evaluation (layers on train, test and information sets)": P * ((n_train + n_test) * widths[-1] + n_info * sum(seen)) * F32
        + P * pairwise * F32,
        "snapshots of a chunk": P * k * n_params * F32 if cfg.snapshots else 0,
        "data set": (n_train + n_test) * (d_in + 1) * F32 + n_info * d_in * F32,
    }
    return MemoryEstimate(parts, float(sum(parts.values())), P, n_params)


def available_bytes() -> tuple[float, str]:
    """(bytes the population may use, where from): the devices' memory limit on an accelerator
    (the member axis is sharded over all of them), the available physical memory on a CPU."""
    devices = jax.devices()
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return float(free) * len(devices), f"{len(devices)} x {devices[0].device_kind}"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return float(info["MemAvailable"]), "host memory available (MemAvailable)"
    except (OSError, KeyError, ValueError, IndexError):
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")), "host memory available"


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


def check_fits(cfg, dataset, population) -> MemoryEstimate:
    """Raise ``ValueError`` with the numbers and what to change when the population cannot fit."""
    est = estimate(cfg, dataset, population)
    avail, where = available_bytes()
    if est.total > FITS_FRACTION * avail:
        detail = "; ".join(f"{k} {_gib(v)}" for k, v in est.parts.items() if v)
        raise ValueError(
            f"the population cannot fit: {est.members} members of {est.params:,} parameters need at least {_gib(est.total)} "
            f"({detail}) but {where} is {_gib(avail)}. Use fewer members (seeds=, fewer noise.snr values), a smaller model, "
            "a smaller estimator.n_info or probe_size, optimizer.batch_size, fewer evals_per_chunk with snapshots=true, "
            "or split the grid into jobs (-m)."
        )
    return est
