"""The exact information-bottleneck frontier of a discrete p(x, y), in bits.

Tishby, Pereira & Bialek, "The information bottleneck method" (1999). Over
encoders p(t|x) (T - X - Y a Markov chain), the frontier is

    F(r) = max { I(T;Y) : I(X;T) <= r },     0 <= r <= H(X),

concave and nondecreasing, F(r) <= min(r, I(X;Y)) (data processing) and
F -> I(X;Y) as r grows. It is traced by minimising the Lagrangian
L = I(X;T) - beta I(T;Y) for a grid of beta; its stationary points satisfy
the self-consistent equations, iterated Blahut-Arimoto style::

    p(t|x) = p(t) exp(-beta KL[p(y|x) || p(y|t)]) / Z(x, beta)
    p(t)   = sum_x p(x) p(t|x)
    p(y|t) = sum_x p(y|x) p(x|t)

Each iteration decreases L, but L is not convex in p(t|x): a single run can
stop at a poor stationary point. So (as in deterministic annealing, Slonim
2002) beta is swept up and then down, every step warm-started from the
previous solution with a small random perturbation (so clusters can split),
with ``n_restarts`` independent chains; per beta the run with the lowest L is
kept. The returned ``frontier_*`` is the upper concave envelope of every
point found (the achievable set is convex by time sharing, so this envelope
is itself achievable and the best lower bound on F these runs give).

Inputs x with the same p(y|x) are merged first (the optimal encoder depends
on x only through p(y|x), so the frontier is unchanged), and |T| defaults to
the number of merged inputs + 1, enough for the whole curve (Witsenhausen &
Wyner's cardinality bound). Plain numpy, host side: the sizes are |X| x |T| x
|Y| per iteration and run.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["ib_frontier", "frontier_i_ty_at", "discrete_mutual_information"]

_TINY = 1e-300


def _entropy_bits(p, axis=None):
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log2(np.maximum(p, _TINY)), 0.0), axis=axis)


def discrete_mutual_information(p_xy) -> float:
    """I(X;Y) in bits of a joint probability table ``(|X|, |Y|)`` (normalized here)."""
    p = _check_joint(p_xy)
    return float(_entropy_bits(p.sum(1)) + _entropy_bits(p.sum(0)) - _entropy_bits(p))


def _check_joint(p_xy):
    p = np.asarray(p_xy, np.float64)
    if p.ndim != 2:
        raise ValueError(f"p_xy must be a 2-D table p(x, y), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not p.sum() > 0:
        raise ValueError("p_xy must be finite, nonnegative and not all zero")
    return p / p.sum()


def _merge_equivalent(p):
    """Drop p(x) = 0 and merge inputs with equal p(y|x) (rounded to 1e-12): returns p(x), p(y|x)."""
    p_x = p.sum(1)
    keep = p_x > 0
    p, p_x = p[keep], p_x[keep]
    p_y_x = p / p_x[:, None]
    _, inv = np.unique(np.round(p_y_x, 12), axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    n_groups = inv.max() + 1
    p_g = np.bincount(inv, weights=p_x, minlength=n_groups)
    p_y_g = np.zeros((n_groups, p.shape[1]))
    np.add.at(p_y_g, inv, p)
    return p_g, p_y_g / p_g[:, None]


class _Problem:
    def __init__(self, p_x, p_y_x):
        self.p_x = p_x
        self.p_y_x = p_y_x
        self.p_y = p_x @ p_y_x
        self.log_p_y_x = np.log(np.maximum(p_y_x, _TINY))

    def stats(self, log_q):
        """(p(t), p(y|t), log p(y|t)) for encoders ``log_q`` (S, X, T)."""
        q = np.exp(log_q)
        p_t = np.einsum("x,sxt->st", self.p_x, q)
        p_ty = np.einsum("x,sxt,xy->sty", self.p_x, q, self.p_y_x)
        alive = p_t > _TINY
        p_y_t = np.where(alive[..., None], p_ty / np.maximum(p_t, _TINY)[..., None], self.p_y[None, None, :])
        return p_t, p_y_t, np.log(np.maximum(p_y_t, _TINY))

    def update(self, log_q, beta):
        p_t, _, log_p_y_t = self.stats(log_q)
        # -beta KL(x, t) up to a term in x alone, which the normalisation over t removes
        logits = np.log(np.maximum(p_t, _TINY))[:, None, :] + beta * np.einsum("xy,sty->sxt", self.p_y_x, log_p_y_t)
        logits = np.where((p_t > _TINY)[:, None, :], logits, -np.inf)
        return logits - logsumexp(logits, axis=2, keepdims=True)

    def information(self, log_q):
        """(I(X;T), I(T;Y)) in bits for each encoder (S, X, T)."""
        q = np.exp(log_q)
        p_t, p_y_t, log_p_y_t = self.stats(log_q)
        log_p_t = np.log(np.maximum(p_t, _TINY))
        i_xt = np.einsum("x,sxt,sxt->s", self.p_x, q, np.where(q > 0, log_q - log_p_t[:, None, :], 0.0))
        h_y = -np.sum(np.where(self.p_y > 0, self.p_y * np.log(np.maximum(self.p_y, _TINY)), 0.0))
        h_y_t = -np.einsum("st,sty,sty->s", p_t, p_y_t, np.where(p_y_t > 0, log_p_y_t, 0.0))
        return np.maximum(i_xt, 0.0) / np.log(2), np.maximum(h_y - h_y_t, 0.0) / np.log(2)

    def solve(self, log_q, beta, max_iter, tol):
        for _ in range(max_iter):
            new = self.update(log_q, beta)
            change = np.max(np.abs(np.exp(new) - np.exp(log_q)))
            log_q = new
            if change < tol:
                break
        return log_q


def _perturb(log_q, rng, scale):
    noisy = log_q + scale * rng.standard_normal(log_q.shape)
    return noisy - logsumexp(noisy, axis=2, keepdims=True)


def _split_clusters(prob, log_q, rng):
    """Free duplicate clusters, then refill every empty slot by splitting a cluster that mixes inputs.

    An empty slot (p(t) = 0) never comes back under the updates, and two
    clusters with the same p(y|t) stay equal, so without this a run that
    merged clusters at low beta cannot separate them at high beta (the
    annealing bifurcations of deterministic annealing). The cluster with the
    largest distortion sum_x p(x, t) KL[p(y|x) || p(y|t)] is split first; each
    input goes to the new slot with a random share in (0.3, 0.7).
    """
    q = np.exp(log_q)
    p_t, p_y_t, log_p_y_t = prob.stats(log_q)
    for s in range(q.shape[0]):
        alive = list(np.flatnonzero(p_t[s] > 1e-12))
        for a_i, t in enumerate(list(alive)):  # fold clusters with (nearly) equal p(y|t) into one slot
            for t2 in alive[a_i + 1 :]:
                if q[s, :, t].any() and q[s, :, t2].any() and np.max(np.abs(p_y_t[s, t] - p_y_t[s, t2])) < 1e-9:
                    q[s, :, t] += q[s, :, t2]
                    q[s, :, t2] = 0.0
        kl = np.einsum("xy,xy->x", prob.p_y_x, prob.log_p_y_x)[:, None] - prob.p_y_x @ log_p_y_t[s].T  # (X, T)
        distortion = np.einsum("x,xt,xt->t", prob.p_x, q[s], np.maximum(kl, 0.0))
        dead = [t for t in range(q.shape[2]) if not q[s, :, t].any() or prob.p_x @ q[s, :, t] <= 1e-12]
        order = [t for t in np.argsort(-distortion) if distortion[t] > 1e-12 and t not in dead]
        for k, t_new in enumerate(dead):
            if not order:
                break
            t = order[k % len(order)]
            share = rng.uniform(0.3, 0.7, size=q.shape[1])
            q[s, :, t_new] = q[s, :, t] * share
            q[s, :, t] = q[s, :, t] * (1.0 - share)
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    return log_q - logsumexp(log_q, axis=2, keepdims=True)


def _upper_concave_envelope(xs, ys):
    """Vertices of the upper concave envelope of points (x, y) that also starts at (0, 0), sorted by x."""
    pts = sorted(set(zip(np.round(xs, 12), np.round(ys, 12))) | {(0.0, 0.0)})
    hull = []
    for x, y in pts:
        if hull and y <= hull[-1][1]:  # no higher than a point at smaller x: dominated (F is nondecreasing)
            continue
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:  # hull[-1] lies on or below the chord
                hull.pop()
            else:
                break
        hull.append((x, y))
    hx, hy = np.array(hull).T
    return hx, hy


def ib_frontier(p_xy, betas=None, *, n_t=None, n_restarts=4, max_iter=2000, tol=1e-10, perturbation=0.05, seed=0):
    """The IB frontier of ``p_xy`` by annealed Blahut-Arimoto iterations, in bits.

    Args:
      p_xy: ``(|X|, |Y|)`` joint probabilities (normalized here).
      betas: increasing positive trade-off parameters (L = I(X;T) - beta I(T;Y));
        default 120 values log-spaced over [0.1, 1e4].
      n_t: cardinality of T (default: merged |X| + 1).
      n_restarts: independent annealing chains.
      max_iter, tol: per-beta iteration cap and stop rule (max change of p(t|x)).
      perturbation: std of the log-space noise added to each warm start.
      seed: numpy seed for the initial encoders and perturbations.

    Returns:
      dict of numpy arrays: ``beta``, and per beta the best run's ``i_xt``,
      ``i_ty`` and ``lagrangian``; ``frontier_i_xt``, ``frontier_i_ty`` the
      upper concave envelope of all points found (from (0, 0)); scalars
      ``i_xy`` = I(X;Y), ``h_x`` = H(X), ``h_y`` = H(Y).
    """
    p = _check_joint(p_xy)
    betas = np.geomspace(0.1, 1e4, 120) if betas is None else np.asarray(betas, np.float64)
    if betas.ndim != 1 or len(betas) < 1 or np.any(betas <= 0) or np.any(np.diff(betas) <= 0):
        raise ValueError("betas must be a 1-D increasing sequence of positive numbers")
    if not isinstance(n_restarts, (int, np.integer)) or n_restarts < 1:
        raise ValueError(f"n_restarts must be an int >= 1, got {n_restarts!r}")
    p_x, p_y_x = _merge_equivalent(p)
    n_x = len(p_x)
    n_t = n_x + 1 if n_t is None else n_t
    if not isinstance(n_t, (int, np.integer)) or n_t < 1:
        raise ValueError(f"n_t must be an int >= 1, got {n_t!r}")
    prob = _Problem(p_x, p_y_x)
    rng = np.random.default_rng(seed)

    init = rng.standard_normal((n_restarts, n_x, n_t)) * perturbation
    log_q = init - logsumexp(init, axis=2, keepdims=True)
    runs = {}  # beta index -> list of (lagrangian, i_xt, i_ty) over runs
    all_xt, all_ty = [], []

    def record(b, lq):
        i_xt, i_ty = prob.information(lq)
        runs.setdefault(b, []).extend(zip(i_xt - betas[b] * i_ty, i_xt, i_ty))
        all_xt.extend(i_xt)
        all_ty.extend(i_ty)

    for b in range(len(betas)):  # anneal up, splitting clusters as beta grows
        log_q = prob.solve(_perturb(_split_clusters(prob, log_q, rng), rng, perturbation), betas[b], max_iter, tol)
        record(b, log_q)
    for b in range(len(betas) - 1, -1, -1):  # and back down from the most informative solutions
        log_q = prob.solve(_perturb(log_q, rng, perturbation), betas[b], max_iter, tol)
        record(b, log_q)

    best = [min(runs[b]) for b in range(len(betas))]
    lag, i_xt, i_ty = (np.array(v) for v in zip(*best))
    fx, fy = _upper_concave_envelope(np.array(all_xt), np.array(all_ty))
    return {
        "beta": betas,
        "i_xt": i_xt,
        "i_ty": i_ty,
        "lagrangian": lag,
        "frontier_i_xt": fx,
        "frontier_i_ty": fy,
        "i_xy": discrete_mutual_information(p),
        "h_x": float(_entropy_bits(p.sum(1))),
        "h_y": float(_entropy_bits(p.sum(0))),
    }


def frontier_i_ty_at(frontier: dict, i_xt):
    """The frontier's I(T;Y) at given I(X;T) values (linear between vertices, flat beyond the last).

    E.g. the gap of a layer to the bound: ``frontier_i_ty_at(f, layer_i_xt) - layer_i_ty``.
    """
    return np.interp(np.asarray(i_xt, np.float64), frontier["frontier_i_xt"], frontier["frontier_i_ty"])
