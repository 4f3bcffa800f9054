"""What an estimator is: the context it sees, its registry entry, how it registers.

An estimator is a function ``compute(ctx, cfg) -> {quantity: (L,) array}`` registered with
:func:`register_estimator`; its quantities are recorded as ``{name}/{quantity}/{layer}``.
``ctx`` (:class:`EvalContext`) holds the member's layers on the information set, padded to
one stack so an estimator can ``vmap`` over layers (one copy of its code to compile), the
labels, and the member's network for estimators that re-run it (weight-noise channel,
noisy-network sample propagation). ``cfg`` is the job's :class:`ib_jax.config.Config`.

Each built-in estimator's module holds its math, its adapter, its check and its registration
(``binning.py``, ``knn.py``...). Adding one is one function plus one registration::

    def mean_abs(ctx, cfg):
        total = jnp.abs(ctx.stacked).sum(axis=(1, 2))          # padded units are zero
        return {"mean_abs": total / (ctx.dims * ctx.n)}
    register_estimator("mean_abs", mean_abs)               # estimator.names=[binning,mean_abs]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ib_jax.registry import ESTIMATORS

__all__ = ["EvalContext", "Estimator", "register_estimator", "n_hidden", "subset", "subset_rows"]


class EvalContext(NamedTuple):
    """What an estimator sees for one member at one evaluation.

    Attributes:
      layers: the representations T, each ``(n, d_l)`` float32 (hidden layers, then the
        softmax output when ``estimator.include_output``).
      stacked: ``(L, n, d_max)`` the layers zero-padded to one width; ``mask`` ``(L, d_max)``
        marks real units; ``dims`` ``(L,)`` float32 their widths.
      x, y: the information set's inputs and labels ``(n,)``; ``n`` its size.
      n_classes: number of labels.
      apply: ``(params, x, key=None, centers=False) -> layers`` the member's network in
        evaluation mode (``key`` draws layer noise; ``centers`` returns S_l = f_l(T_{l-1})
        before a noisy network adds its noise).
      params: the member's parameters.
      key: a PRNG key fresh to this member and evaluation.
    """

    layers: list
    stacked: jax.Array
    mask: jax.Array
    dims: jax.Array
    x: jax.Array
    y: jax.Array
    n: int
    n_classes: int
    apply: Callable[..., list]
    params: Any
    key: jax.Array


class Estimator(NamedTuple):
    """``compute(ctx, cfg) -> {quantity: (L,)}``; ``check(cfg, n_info)`` raises ``ValueError``
    naming the key for settings it cannot use (run before any compute), or None."""

    compute: Callable[[EvalContext, Any], dict]
    check: Callable[[Any, int], None] | None = None
    # the option groups of ``estimator`` it reads (``estimator.knn.k``...): documents the part's keys
    reads: tuple[str, ...] = ()
    # ``rows(cfg, n_info) -> int``: how many rows of the information set it uses (its estimates'
    # ceiling is log2 of that, :mod:`ib_jax.estimators.ceilings`); None: all ``n_info``
    rows: Callable[[Any, int], int] | None = None


def register_estimator(
    name: str, compute, check=None, *, reads: tuple[str, ...] = (), rows: Callable[[Any, int], int] | None = None, overwrite: bool = False
) -> Estimator:
    """Register ``compute`` (and its ``check``) under ``name`` in the ``ESTIMATORS`` registry."""
    est = Estimator(compute, check, tuple(reads), rows)
    ESTIMATORS.register(name, est, overwrite=overwrite)
    return est


# ----------------------------------------------------------------------- built-ins


def n_hidden(ctx: EvalContext, cfg) -> int:
    """Hidden layers among ``ctx.layers`` (the softmax output is last when ``estimator.include_output``)."""
    return len(ctx.layers) - (1 if cfg.estimator.include_output else 0)


def subset_rows(n_total: int, n: int, seed: int):
    """The rows of the information set an O(n^2) estimator uses: ``min(n, n_total)`` indices drawn
    uniformly without replacement with ``numpy.random.default_rng(seed)`` (sorted int64), all rows
    when ``n >= n_total``. Static (numpy, at trace time): the same rows for every member and every
    evaluation of a job, and on every machine.

    Why random: the information set keeps the data's order, and on sorted data the first rows are
    not representative (the 12-bit task's rows 0..650 have P(y=1) = 0.205 against 0.517 overall;
    a last-layer SP estimate on them differed by up to 1.2 bits from one on a random subset).
    """
    n_total, n = int(n_total), min(int(n), int(n_total))
    if n == n_total:
        return np.arange(n_total, dtype=np.int64)
    # the draw of ib_jax.data.information_subset (same rows for the same arguments)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False)).astype(np.int64)


def subset(ctx: EvalContext, n: int, seed: int) -> jax.Array:
    """``ctx.x`` at :func:`subset_rows` ``(ctx.n, n, seed)``: a seeded random subset of the
    information set's inputs, ``(min(n, ctx.n), ...)`` (``estimator.subset_seed`` in a job)."""
    rows = subset_rows(ctx.n, n, seed)
    return ctx.x if len(rows) == ctx.n else ctx.x[rows]
