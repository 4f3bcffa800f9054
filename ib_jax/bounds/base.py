"""What a generalization bound is: the contexts it sees, its registry entry, which bounds apply.

A bound is a :class:`Bound` in the ``BOUNDS`` registry (``bounds.names`` selects them). It is
computed in one of two places:

* ``compute(ctx: BoundContext, cfg) -> {quantity: scalar}``: inside the jitted evaluation of one
  member (vmapped over the population), for bounds that need the network (PAC-Bayes);
* ``host(ctx: HostContext, cfg) -> {quantity: (E, P)}``: on the host after each compiled chunk,
  for bounds that follow from the configuration and the step count alone (the noisy-iterative
  bound, differential privacy's accountant); it sees the chunk's metrics, so an in-jit bound may
  also have a host step (PAC-Bayes records its chosen s as the grid value as given).

Every quantity is recorded as ``bound/{quantity}`` (one column per member and evaluation). A
bound whose assumptions a job does not meet is not computed: ``applies(cfg)`` returns the reason
(recorded in ``summary.json`` under ``bounds_skipped`` and printed), so no number is written
that does not hold. Units: information in nats, errors and gaps as 0-1 error rates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ib_jax.registry import BOUNDS

__all__ = ["Bound", "BoundContext", "HostContext", "register_bound", "applicable", "check", "PREFIX"]

PREFIX = "bound/"


class BoundContext(NamedTuple):
    """One member at one evaluation, for in-jit bounds.

    Attributes:
      params: the member's parameters W_t; ``reference``: its initial parameters W_0 (the
        data-independent prior's centre), same structure.
      predict: ``(params, x, key) -> logits`` the member's network in evaluation mode.
      x_train, y_train, x_test, y_test: the training set S (m rows) and the test split.
      key: a PRNG key fresh to this member and evaluation.
    """

    params: Any
    reference: Any
    predict: Callable[..., jax.Array]
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    key: jax.Array


class HostContext(NamedTuple):
    """One chunk of evaluations of the whole population, for host-side bounds.

    Attributes:
      steps: ``(E,)`` the step of each evaluation (updates done).
      level: ``(P,)`` each member's noise level (one value of ``noise.snr``).
      learning_rate: ``(P,)`` each member's learning rate.
      n_train: m, the training rows; ``batch_size``: B (m for full batch).
      n_params: d, the number of trained parameters.
      metrics: ``{name: (E, P)}`` what the evaluation measured (``train_accuracy``...).
    """

    steps: np.ndarray
    level: np.ndarray
    learning_rate: np.ndarray
    n_train: int
    batch_size: int
    n_params: int
    metrics: dict


class Bound(NamedTuple):
    """One registered bound: ``compute`` (in-jit) or ``host`` (after each chunk), ``applies(cfg) ->
    reason or None``, ``check(cfg, n_train)`` raising ``ValueError`` naming the key (run by
    validation, before any compute, for the bounds that apply), and the option groups of
    ``bounds`` it reads."""

    compute: Callable[[BoundContext, Any], dict] | None = None
    host: Callable[[HostContext, Any], dict] | None = None
    applies: Callable[[Any], str | None] | None = None
    check: Callable[[Any, int], None] | None = None
    reads: tuple[str, ...] = ()
    needs_reference: bool = False  # the evaluation must carry W_0 (PAC-Bayes' prior centre)


def register_bound(name: str, **fields) -> Bound:
    """Register a bound under ``name`` (keyword arguments: the fields of :class:`Bound`)."""
    b = Bound(**fields)
    BOUNDS.register(name, b)
    return b


def check(cfg, n_train: int) -> dict[str, str]:
    """The ``bounds`` part of validation: names registered and unique, ``bounds.delta`` in (0, 1),
    each applicable bound's own check. Returns the skipped bounds with their reasons."""
    names = cfg.bounds.names
    for name in names:
        BOUNDS.get(name)
    if len(set(names)) != len(names):
        raise ValueError(f"bounds.names lists a bound twice: {list(names)}")
    d = cfg.bounds.delta
    if not (isinstance(d, (int, float)) and 0 < d < 1):
        raise ValueError(f"bounds.delta (the confidence: bounds hold with probability >= 1 - delta) must be in (0, 1), got {d}")
    use, skipped = applicable(cfg)
    for _, b in use:
        if b.check is not None:
            b.check(cfg, n_train)
    return skipped


def applicable(cfg) -> tuple[list[tuple[str, Bound]], dict[str, str]]:
    """``([(name, bound)] that apply to the job, {name: why not} for the others)``, in
    ``bounds.names`` order."""
    use, skipped = [], {}
    for name in cfg.bounds.names:
        b = BOUNDS.get(name)
        reason = b.applies(cfg) if b.applies is not None else None
        if reason is None:
            use.append((name, b))
        else:
            skipped[name] = reason
    return use, skipped
