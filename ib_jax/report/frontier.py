"""The exact information-bottleneck frontier of a data set with few discrete inputs, for the plots.

:func:`ib_frontier_for` traces F(r) = max {I(T;Y) : I(X;T) <= r} (Tishby, Pereira & Bialek 1999)
of a data set's (or a job's information set's) p(x, y), in bits, cached by content;
:func:`frontier_applies` says which registered data sets are discrete enough for it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ib_jax import registry as R
from ib_jax.data.dataset import information_subset
from ib_jax.estimators.ib_bound import ib_frontier

__all__ = ["frontier_applies", "ib_frontier_for"]


def frontier_applies(kind: str | None) -> bool:
    """The data set's registry entry says its inputs are discrete and few (``DatasetEntry.discrete``),
    X uniform over the rows: the exact frontier applies."""
    return kind is not None and kind in R.DATASETS and bool(getattr(R.DATASETS.get(kind), "discrete", False))


_FRONTIERS: dict[str, tuple[int, tuple[np.ndarray, np.ndarray]]] = {}  # content hash -> (distinct rows, curve)


def ib_frontier_for(
    dataset, *, kind: str | None = None, max_distinct: int = 4096, rows=None, n_info: int | None = None, info_seed: int = 0
):
    """The exact information-bottleneck frontier of a data set with few discrete inputs, or None.

    p(x, y): X uniform over the data set's rows (``dataset.x_all``, or ``x_all[rows]`` for an
    information subset), Y its label; duplicate rows are merged into one input x with p(x)
    proportional to its count (and p(y|x) the label frequencies among its copies). The frontier
    F(r) = max {I(T;Y) : I(X;T) <= r} (Tishby, Pereira & Bialek 1999) is traced by
    :func:`ib_jax.estimators.ib_bound.ib_frontier`, in bits, and extended flat from its last
    vertex to r = H(X) (F is nondecreasing and reaches I(X;Y)), so it spans the I(X;T) axis.
    No representation T of X can lie above it: drawn on the information plane it bounds every
    layer (estimates above it are estimator bias, e.g. binning on a subset).

    Args:
      dataset: a :class:`ib_jax.data.Dataset`.
      kind: the ``dataset.name`` the job used (npz sets are named after their file); default
        ``dataset.name``. Only data sets registered as discrete qualify (``tishby12``, ``idnns``, ``npz``).
      max_distinct: the most distinct input rows for which it is computed.
      rows: optional indices into ``x_all`` (the information set).
      n_info, info_seed: or the information set of a job (``estimator.n_info``, ``estimator.info_seed``):
        the same rows the estimators see (all rows when ``n_info`` >= their number), so the
        bound's H(X) = log2 n matches the estimates' axis.

    Returns:
      ``(i_xt, i_ty)`` float64 arrays (the curve's vertices, increasing I(X;T)), or None when the
      data set does not qualify. Cached in-process by the content of (x, y): for tishby12 it
      costs about 0.4 s once (4096 inputs merge into 2 groups of equal p(y|x)).
    """
    kind = kind or getattr(dataset, "name", None)
    if not frontier_applies(kind):
        return None
    x = np.asarray(dataset.x_all)
    y = np.asarray(dataset.y_all)
    if rows is None and n_info is not None and n_info < len(y):
        rows = information_subset(len(y), int(n_info), int(info_seed))
    if rows is not None:
        x, y = x[np.asarray(rows)], y[np.asarray(rows)]
    x = x.reshape(len(x), -1)
    h = hashlib.sha256()
    for a in (x, y):
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    key = h.hexdigest()
    if key in _FRONTIERS:
        n_distinct, curve = _FRONTIERS[key]
        return curve if n_distinct <= max_distinct else None
    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    if len(distinct) > max_distinct:
        return None
    n_classes = int(max(getattr(dataset, "n_classes", 0), int(y.max()) + 1))
    p = np.zeros((len(distinct), n_classes))
    np.add.at(p, (np.asarray(inverse).ravel(), y.astype(np.int64)), 1.0)
    f = ib_frontier(p)
    fx, fy = np.asarray(f["frontier_i_xt"], float), np.asarray(f["frontier_i_ty"], float)
    if f["h_x"] > fx[-1]:
        fx, fy = np.append(fx, f["h_x"]), np.append(fy, fy[-1])
    _FRONTIERS[key] = (len(distinct), (fx, fy))
    return fx, fy
