"""The ceiling of every information estimate, and which estimates sit at it.

With X uniform over the n distinct rows an estimator uses, no estimate of I(X;T) (nor a discrete H(T)) can
exceed H(X) = log2 n bits, and no plug-in estimate of I(T;Y) can exceed H(Y) of those rows'
labels. An estimate *at* its ceiling says nothing about compression: a deterministic layer that
keeps every input apart (a wide layer on real data, binned: every input its own pattern) reads
I(X;T) = log2 n whatever training did to it, and H(X|T) = 0 (Goldfeld et al. 2019; Amjad &
Geiger 2019). The reports flag such values (tables mark them, plots draw the ceiling) and the
claims report leaves them out as evidence.

An estimate is *at its ceiling* when ``value >= ceiling - margin`` (``estimator.ceiling_margin``,
bits). The rows an estimator uses: the information set (``estimator.n_info`` rows), or the
seeded subset of it that O(n^2) estimators draw (``rows`` of its registry entry, e.g.
``estimator.sp.n``; :func:`ib_jax.estimators.base.subset_rows`). An estimator whose estimates have
a lower maximum of their own (InfoNCE: log2 of its batch, :mod:`ib_jax.estimators.variational`)
registers it with :func:`register_cap`; its ceiling is then the smaller of the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ib_jax.estimators.base import subset_rows
from ib_jax.registry import ESTIMATORS

__all__ = ["register_cap", "estimator_rows", "label_entropy_bits", "ceilings", "at_ceiling", "flag_keys", "layers_at_ceiling"]


# estimator name -> cap(cfg, rows) -> {"i_xt": bits, "i_ty": bits}: a maximum of its estimates themselves
_CAPS: dict[str, Callable[..., Mapping[str, float]]] = {}


def register_cap(name: str, cap: Callable[..., Mapping[str, float]]) -> None:
    """Estimator ``name``'s own maximum: ``cap(cfg, rows) -> {"i_xt": bits, "i_ty": bits}`` (either
    key optional; ``rows`` those it uses), applied by :func:`ceilings` as min(ceiling, cap)."""
    _CAPS[name] = cap


def estimator_rows(cfg, name: str, n_info: int) -> int:
    """Rows of the information set (``n_info`` of them) that estimator ``name`` uses."""
    rows = getattr(ESTIMATORS.get(name), "rows", None)
    return int(min(n_info, rows(cfg, n_info))) if rows is not None else int(n_info)


def label_entropy_bits(y) -> float:
    """Plug-in H(Y) of integer labels, bits: -sum_c p_c log2 p_c."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def ceilings(cfg, y_info) -> dict[str, dict]:
    """Per estimator of ``cfg.estimator.names``: ``{"rows": n, "i_xt": log2 n,
    "i_ty": H(Y) of the n rows' labels}`` in bits (``y_info``: the information set's labels, in
    its order), each lowered to the estimator's own cap where it registered one (:func:`register_cap`)."""
    y_info = np.asarray(y_info)
    out = {}
    for name in cfg.estimator.names:
        n = estimator_rows(cfg, name, len(y_info))
        rows = subset_rows(len(y_info), n, cfg.estimator.subset_seed) if n < len(y_info) else slice(None)
        out[name] = {"rows": n, "i_xt": math.log2(n), "i_ty": label_entropy_bits(y_info[rows])}
        for q, v in (_CAPS[name](cfg, n) if name in _CAPS else {}).items():
            out[name][q] = min(out[name][q], float(v))
    return out


def at_ceiling(value, ceiling: float, margin: float):
    """``value >= ceiling - margin`` (bool, or a bool array); False for NaN (undefined is not at a ceiling)."""
    v = np.asarray(value, float)
    out = np.isfinite(v) & (v >= ceiling - margin)
    return bool(out) if out.ndim == 0 else out


def flag_keys(values: Mapping[str, float], ceils: Mapping[str, dict], margin: float, stage: str) -> dict[str, bool]:
    """``{stage}/{est}/{q}_at_ceiling/{layer}`` flags (q: i_xt, i_ty) for the ``{stage}/{est}/{q}/{layer}``
    values of one member's summary; an I(X;T) flag also marks that layer's H(X|T) (= log2 n - I(X;T))."""
    out = {}
    for est, c in ceils.items():
        for q in ("i_xt", "i_ty"):
            head = f"{stage}/{est}/{q}/"
            for k, v in values.items():
                if k.startswith(head) and "/" not in k[len(head) :] and v is not None:
                    out[f"{stage}/{est}/{q}_at_ceiling/{k[len(head) :]}"] = at_ceiling(v, c[q], margin)
    return out


def layers_at_ceiling(members: Sequence[Mapping], prefix: str, layers: Sequence[str]) -> list[str]:
    """The layers ``l`` for which some member records ``{prefix}_at_ceiling/{l}`` true (``prefix``:
    ``final/binning/i_xt``...; an H(X|T) prefix reads the I(X;T) flags): estimates that carry no
    evidence about compression."""
    prefix = prefix.replace("/h_x_given_t", "/i_xt")
    return [l for l in layers if any(m.get(f"{prefix}_at_ceiling/{l}") for m in members)]
