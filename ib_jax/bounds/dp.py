"""DP-SGD's privacy, (epsilon, delta) per evaluation, and the gap bound it implies (``bounds.names=[dp]``).

Accounting: the RDP accountant of the maintained ``dp-accounting`` package (Google; Mironov 2017,
Wang, Balle & Kasiviswanathan 2019 for sampling without replacement). Each step of a
``noise=dp_sgd`` job draws B distinct rows of the m training rows (``NoiseKind.sampling``), sums
their clipped gradients (norm <= C each) and adds N(0, z^2 C^2 I): under the *replace-one*
relation (n public, the relation the generalization argument below uses) the sum's L2
sensitivity is 2C, so the accountant sees a sampled-without-replacement Gaussian mechanism of
noise multiplier z / 2, composed over the t steps done. RDP composes additively, so the one-step
RDP curve is computed once per (m, B, z) and scaled by t (``compute_epsilon`` at each
evaluation). Full-batch training (B = m) is the plain Gaussian mechanism.

Generalization (Dwork et al. 2015, "Preserving statistical validity in adaptive data analysis";
the form of Jung et al. 2020): an (epsilon, delta)-DP algorithm under replace-one, with a loss in
[0, 1], has E[test error] <= e^epsilon E[train error] + delta, so::

    E[test error - train error] <= (e^epsilon - 1) E[train error] + delta

Recorded: ``bound/dp_epsilon`` (for ``bounds.dp.delta``) and ``bound/dp_gap`` (0-1 error; it
bounds the expectation, compared with the mean of ``gap_accuracy`` over seeds). Computed only for
``noise=dp_sgd`` with a constant noise multiplier (the accountant composes one mechanism).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ib_jax.bounds.base import HostContext, register_bound

__all__ = ["one_step_rdp", "epsilon", "dp"]


def _accounting():
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    return dp_accounting, rdp_privacy_accountant


def _orders() -> tuple[float, ...]:
    return tuple(_accounting()[1].DEFAULT_RDP_ORDERS)


def _event(n: int, batch_size: int, noise_multiplier: float):
    dpa, _ = _accounting()
    gaussian = dpa.GaussianDpEvent(noise_multiplier / 2.0)  # replace-one: sensitivity 2C
    if batch_size >= n:
        return gaussian
    return dpa.SampledWithoutReplacementDpEvent(n, batch_size, gaussian)


@functools.lru_cache(maxsize=256)
def one_step_rdp(n: int, batch_size: int, noise_multiplier: float) -> tuple[float, ...]:
    """The RDP of one DP-SGD step at each of dp_accounting's default orders (cached: it costs ~0.5 s)."""
    dpa, rdp = _accounting()
    acc = rdp.RdpAccountant(orders=_orders(), neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    acc.compose(_event(n, batch_size, noise_multiplier), 1)
    return tuple(float(v) for v in acc._rdp)  # the accountant's own curve; composition multiplies it by t


def epsilon(n: int, batch_size: int, noise_multiplier: float, steps: int, delta: float) -> float:
    """epsilon of ``steps`` DP-SGD steps at ``delta`` (inf for z = 0; 0 for no step)."""
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    _, rdp = _accounting()
    curve = np.asarray(one_step_rdp(int(n), int(batch_size), float(noise_multiplier))) * steps
    return float(rdp.compute_epsilon(_orders(), curve, delta)[0])


def dp(ctx: HostContext, cfg) -> dict:
    """The ``dp`` entry: ``{dp_epsilon, dp_gap}`` each ``(E, P)``."""
    delta = cfg.bounds.dp.delta
    E, P = len(ctx.steps), len(ctx.level)
    eps = np.zeros((E, P))
    for p in range(P):
        for e, t in enumerate(ctx.steps):
            eps[e, p] = epsilon(ctx.n_train, ctx.batch_size, float(ctx.level[p]), int(t), delta)
    train_error = 1.0 - np.asarray(ctx.metrics["train_accuracy"], np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        gap = np.expm1(eps) * train_error + delta
    gap = np.where(np.isinf(eps), np.inf, gap)  # e^inf * 0 is still no guarantee
    bad = np.isnan(np.asarray(ctx.metrics["train_loss"], np.float64))
    return {"dp_epsilon": np.where(bad, np.nan, eps), "dp_gap": np.where(bad, np.nan, gap)}


def _applies(cfg) -> str | None:
    if cfg.noise.kind != "dp_sgd":
        return f"noise.kind={cfg.noise.kind}: no privacy guarantee to account (noise=dp_sgd)"
    if cfg.schedule.kind != "constant" or cfg.schedule.params or cfg.schedule.normalize:
        return "schedule: the accountant composes one mechanism; a scheduled noise multiplier is not accounted"
    return None


def _check(cfg, n_train: int) -> None:
    d = cfg.bounds.dp.delta
    if not (isinstance(d, (int, float)) and 0 < d < 1 / n_train):
        raise ValueError(f"bounds.dp.delta must be in (0, 1 / n_train = {1 / n_train:.3g}) (a larger delta protects no one), got {d}")


register_bound("dp", host=dp, applies=_applies, check=_check, reads=("dp",))
