"""Variational lower bounds of mutual information: InfoNCE and NWJ, in bits.

A critic f(a, b) is trained to tell paired rows (a_i, b_i) ~ p(a, b) from mismatched ones
(a_i, b_j), j != i, ~ p(a) p(b); the bound evaluated at the trained critic is a lower bound on
I(A;B) in expectation over the batch. With a batch of K pairs and the K x K score matrix
S_ij = f(a_i, b_j) (positives on the diagonal), in nats before conversion to bits::

    InfoNCE:  I >= E [ 1/K sum_i ( S_ii - log 1/K sum_j exp S_ij ) ]                 <= log K
    NWJ:      I >= E [ 1/K sum_i S_ii ]  -  e^-1 E [ 1/(K(K-1)) sum_{i != j} exp S_ij ]

InfoNCE: van den Oord, Li & Vinyals, "Representation learning with contrastive predictive
coding" (2018); NWJ: Nguyen, Wainwright & Jordan, "Estimating divergence functionals and the
likelihood ratio by convex risk minimization" (IEEE Trans. Inf. Theory 2010), the f-divergence
(KL) dual; both in the unified form of Poole, Ozair, van den Oord, Alemi & Tucker, "On variational
bounds of mutual information" (ICML 2019), whose estimators (all K(K-1) off-diagonal pairs as
negatives; NWJ = TUBA with baseline e) these follow. Related: MINE (Belghazi et al., ICML 2018), the
Donsker-Varadhan bound with a moving-average gradient correction (not implemented: biased
gradients, and its estimate is not a bound at finite batch).

Known biases (Poole et al. 2019; Song & Ermon, "Understanding the limitations of variational mutual
information estimators", ICLR 2020):

* InfoNCE is *capped*: each row's term S_ii - logsumexp_j S_ij <= 0, so the estimate is at most
  log2 K bits whatever the critic and whatever the true MI (exactly, not only in expectation). It has
  low variance and is biased low, strongly so once I approaches log2 K. ``cap`` is log2 K.
* NWJ is not capped (it can reach large MI) but its variance grows like e^I: its second term is
  an empirical partition function, whose variance from K samples is asymptotically at least
  (e^I - 1) / K even at the optimal critic (Song & Ermon, Theorem 2). At the exact critic of a
  10-bit Gaussian pair and K = 16, one batch's NWJ is 10.0 +- 4.3 bits, InfoNCE 3.96 <= 4 bits
  (tests/estimators/test_variational.py). ``cap`` is +inf.
* Both are lower bounds only in expectation over the batch and for a critic fixed before seeing the
  batch: the critic is trained on one part of the rows (``1 - held_out``) and the reported ``mi`` is
  the bound on the other part (``held_out``), the benchmark protocol of the papers above. ``mi_train``,
  the same bound on the training part, exceeds ``mi`` when the critic overfits.

Critics (one hidden ReLU layer of H = ``hidden`` units, plain ``jnp`` parameters):

* ``concat`` (default, both bounds): f(a, b) = w . relu(W_a a + W_b b + c) + c0, the MLP of the
  concatenated pair ("joint" critic of Poole et al. 2019; Song & Ermon 2020). W_a a and W_b b are
  computed once per row and broadcast over the K x K pairs: O(K (d_a + d_b) H + K^2 H) per step.
  NWJ's optimal critic is the whole log density ratio 1 + log p(a, b) / (p(a) p(b)), terms of a
  alone and of b alone included, which a joint critic represents directly.
* ``separable``: f(a, b) = g(a) . h(b), g and h one-hidden-layer MLPs to a 16-dimensional
  embedding (``EMBED``): the K x K scores are one matrix product, O(K H (d + EMBED) + K^2 EMBED).
  It is the cheap critic of contrastive learning at large batch; here, trained on a few hundred
  rows, it overfits: on correlated Gaussians (d = 5 per side, 1 bit, n = 1,024, 300 steps, 4 seeds)
  its held-out InfoNCE was 0.55 bits (training part 1.39) against 0.81 for concat (training part
  1.09); with two hidden layers and a 64-dimensional embedding, -1.7 bits (training part 3.4).
  Hence concat by default, for both bounds.

Training: Adam (optax) at ``learning_rate`` for ``steps`` steps in one ``lax.scan``, each on
``batch`` rows of the training part drawn without replacement with the step's key; the loss is
minus the bound itself. Inputs are standardised with the training part's per-unit mean and
standard deviation (MI is invariant to it; constant and padded units become 0). The evaluation
splits each part into floor(rows / batch) disjoint batches of ``batch`` rows and averages the
bound over them, so the InfoNCE cap is log2 ``batch``.

Padding: units where ``a_mask``/``b_mask`` are false are zeroed. The first layer's weights of input
unit u are drawn from ``fold_in(key, u)`` and scaled by 1 / sqrt(real width), so a zero-padded
layer gets the same critic as the unpadded one (padded units get zero gradients, and Adam then
never moves their weights): one compiled function serves every layer under a ``vmap``.

In a job (``estimator.names`` ``infonce``, ``nwj``; options ``estimator.variational.*``, rows a
seeded subset of ``estimator.variational.n``, drawn with ``estimator.subset_seed``; key
``PRNGKey(estimator.variational.seed)``, the same for every member and evaluation) each layer records
``i_xt``, ``i_ty`` (held out) and ``i_xt_train``, ``i_ty_train`` (training part), bits.
What it estimates: I(T;Y) with Y the labels (one-hot, :func:`variational_mutual_information_discrete`),
at most H(Y) besides the cap; and a bound on I(X;T). For a deterministic network I(X;T) is infinite
(continuous X) or log2 n (X uniform over the n rows, the ceiling of :mod:`ib_jax.estimators.ceilings`),
as :mod:`ib_jax.estimators.sliced` records; the variational bound is neither. It is the dependence a
small critic trained on ``n (1 - held_out)`` rows can certify on rows it has not seen: finite, at most
log2 K for InfoNCE, and a function of the critic and the rows as much as of the layer. It orders
layers and training steps at fixed settings; it is not a value of I(X;T).

Cost per estimate: ``steps`` x O(K (d_a + d_b) H + K^2 H) (concat) or O(K (d_a + d_b) H + K^2 EMBED)
(separable) for the training, memory O(K^2 H) per vmapped copy (concat). At the defaults (n = 512,
K = 128, H = 64, 300 steps; d_a = 12, d_b = 10) one estimate took 0.17 s concat, 0.05 s separable
on a 2-core CPU after a 2 s compilation; a registered estimator makes two per layer (I(X;T), I(T;Y)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp

from ib_jax.estimators._common import check_rank, check_same_length, nan_unless_finite, to_bits
from ib_jax.estimators.base import EvalContext, register_estimator, subset, subset_rows
from ib_jax.estimators.ceilings import register_cap

__all__ = [
    "BOUNDS",
    "CRITICS",
    "bound_cap",
    "infonce_lower_bound",
    "nwj_lower_bound",
    "variational_mutual_information",
    "variational_mutual_information_discrete",
    "infonce_mutual_information",
    "nwj_mutual_information",
]

BOUNDS = ("infonce", "nwj")
CRITICS = ("separable", "concat")
DEFAULT_CRITIC = "concat"


# ----------------------------------------------------------------------------- the bounds


def infonce_lower_bound(scores: jax.Array) -> jax.Array:
    """InfoNCE in nats from a ``(K, K)`` score matrix with the positive pairs on the diagonal:
    mean_i (S_ii - logsumexp_j S_ij) + log K, at most log K."""
    check_rank(scores, 2, "scores")
    k = scores.shape[0]
    return jnp.mean(jnp.diagonal(scores) - logsumexp(scores, axis=1)) + math.log(k)


def nwj_lower_bound(scores: jax.Array) -> jax.Array:
    """NWJ in nats from a ``(K, K)`` score matrix, positives on the diagonal:
    mean_i S_ii - exp(logmeanexp_{i != j} S_ij - 1) (the off-diagonal pairs are the negatives)."""
    check_rank(scores, 2, "scores")
    k = scores.shape[0]
    off = jnp.where(jnp.eye(k, dtype=bool), -jnp.inf, scores)
    return jnp.mean(jnp.diagonal(scores)) - jnp.exp(logsumexp(off) - math.log(k * (k - 1)) - 1.0)


_BOUND_FNS = {"infonce": infonce_lower_bound, "nwj": nwj_lower_bound}


# ----------------------------------------------------------------------------- the critics

EMBED = 16  # the separable critic's embedding dimension


def _first_layer(key, d: int, hidden: int, mask):
    """``(d, hidden)`` weights, row u from ``fold_in(key, u)``, scaled by 1/sqrt(real width)."""
    w = jax.vmap(lambda u: jax.random.normal(jax.random.fold_in(key, u), (hidden,), jnp.float32))(jnp.arange(d))
    real = jnp.float32(d) if mask is None else jnp.maximum(jnp.sum(jnp.asarray(mask, jnp.float32)), 1.0)
    return w * jax.lax.rsqrt(real)


def _dense(key, fan_in: int, fan_out: int):
    return jax.random.normal(key, (fan_in, fan_out), jnp.float32) * (1.0 / math.sqrt(fan_in))


def _init_critic(key, critic: str, d_a: int, d_b: int, hidden: int, a_mask, b_mask) -> dict:
    k = jax.random.split(key, 4)
    zeros = jnp.zeros((hidden,), jnp.float32)
    if critic == "separable":
        # g(a), h(b): input -> hidden (ReLU) -> EMBED (linear)
        return {
            "g": {"w1": _first_layer(k[0], d_a, hidden, a_mask), "b1": zeros, "w2": _dense(k[1], hidden, EMBED), "b2": jnp.zeros(EMBED)},
            "h": {"w1": _first_layer(k[2], d_b, hidden, b_mask), "b1": zeros, "w2": _dense(k[3], hidden, EMBED), "b2": jnp.zeros(EMBED)},
        }
    # [a, b] -> hidden (ReLU) -> 1, the first layer split by input (its fan-in: both real widths)
    return {
        "wa": _first_layer(k[0], d_a, hidden, a_mask) / math.sqrt(2.0),
        "wb": _first_layer(k[1], d_b, hidden, b_mask) / math.sqrt(2.0),
        "b1": zeros,
        "w2": _dense(k[2], hidden, 1)[:, 0],
        "b2": jnp.zeros((), jnp.float32),
    }


def _scores(params, critic: str, a, b):
    """``(K, K)`` critic scores f(a_i, b_j) of ``a`` ``(K, d_a)``, ``b`` ``(K, d_b)``."""
    hp = jax.lax.Precision.HIGHEST
    if critic == "separable":

        def tower(p, x):
            return jnp.matmul(jax.nn.relu(jnp.matmul(x, p["w1"], precision=hp) + p["b1"]), p["w2"], precision=hp) + p["b2"]

        return jnp.matmul(tower(params["g"], a), tower(params["h"], b).T, precision=hp)
    pa = jnp.matmul(a, params["wa"], precision=hp)  # (K, H): W_a a once per row, not per pair
    pb = jnp.matmul(b, params["wb"], precision=hp)
    z = jax.nn.relu(pa[:, None, :] + pb[None, :, :] + params["b1"])  # (K, K, H)
    return jnp.matmul(z, params["w2"], precision=hp) + params["b2"]


# ----------------------------------------------------------------------------- the estimate


def _standardize(v, train_rows, mask):
    """Zero the masked units, then standardise each unit with the training rows' mean and std."""
    v = v.astype(jnp.float32)
    if mask is not None:
        v = jnp.where(jnp.asarray(mask, bool)[None, :], v, 0.0)
    part = v[train_rows]
    mu, sd = jnp.mean(part, axis=0), jnp.std(part, axis=0)
    return jnp.where(sd > 0, (v - mu) / jnp.where(sd > 0, sd, 1.0), 0.0)


def _split_sizes(n: int, held_out: float, batch: int) -> tuple[int, int]:
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out!r}")
    n_held = int(round(held_out * n))
    n_train = n - n_held
    if not isinstance(batch, int) or batch < 2:
        raise ValueError(f"batch must be an int >= 2, got {batch!r}")
    if batch > min(n_train, n_held):
        raise ValueError(
            f"batch={batch} must be <= the rows of each part: {n_train} to train on, {n_held} held out (n={n}, held_out={held_out})"
        )
    return n_train, n_held


def _batched_bound(bound_fn, params, critic, a, b, rows, batch: int):
    """Mean of the bound over floor(len(rows) / batch) disjoint batches of ``rows``."""
    nb = rows.shape[0] // batch
    idx = rows[: nb * batch].reshape(nb, batch)
    return jnp.mean(jax.lax.map(lambda r: bound_fn(_scores(params, critic, a[r], b[r])), idx))


def variational_mutual_information(
    a,
    b,
    key,
    *,
    bound: str = "infonce",
    critic: str = DEFAULT_CRITIC,
    steps: int = 300,
    hidden: int = 64,
    batch: int = 128,
    learning_rate: float = 1e-3,
    held_out: float = 0.5,
    a_mask=None,
    b_mask=None,
) -> dict:
    """A variational lower bound on I(A;B) of paired rows ``a`` ``(n, d_a)``, ``b`` ``(n, d_b)``, in bits.

    Args:
      a, b: samples, one per row, continuous (labels: :func:`variational_mutual_information_discrete`).
      key: PRNG key of the train / held-out split, the critic's initialisation and the minibatches.
      bound: ``"infonce"`` (van den Oord et al. 2018) or ``"nwj"`` (Nguyen et al. 2010); formulas
        in the module docstring (Poole et al. 2019).
      critic: ``"concat"`` (MLP of the pair) or ``"separable"`` (g(a) . h(b)); module docstring.
      steps: Adam steps of the critic (one ``lax.scan``).
      hidden: width H of the critic's hidden layer.
      batch: K, the rows per training step and per evaluation batch.
      learning_rate: Adam's step size.
      held_out: the fraction of rows held out (seeded by ``key``) on which ``mi`` is evaluated;
        both parts need at least ``batch`` rows.
      a_mask, b_mask: optional ``(d_a,)``, ``(d_b,)`` bool, true for real units (others are zeroed).

    Returns:
      dict of float32 scalars in bits: ``mi`` the bound on the held-out rows, ``mi_train`` on the
      training rows, ``cap`` the bound's own maximum (log2 ``batch`` for InfoNCE, +inf for NWJ),
      ``loss`` the last training step's minus-bound (nats). NaN for non-finite inputs.
    """
    check_rank(a, 2, "a")
    check_rank(b, 2, "b")
    check_same_length(a, b, "a", "b")
    if bound not in _BOUND_FNS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    if critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
    for name, v in (("steps", steps), ("hidden", hidden)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    n = a.shape[0]
    n_train, _ = _split_sizes(n, held_out, batch)
    bound_fn = _BOUND_FNS[bound]

    k_split, k_init, k_steps = jax.random.split(key, 3)
    perm = jax.random.permutation(k_split, n)
    train, held = perm[:n_train], perm[n_train:]
    za, zb = _standardize(a, train, a_mask), _standardize(b, train, b_mask)
    params = _init_critic(k_init, critic, a.shape[1], b.shape[1], hidden, a_mask, b_mask)
    opt = optax.adam(learning_rate)

    def loss_fn(p, rows):
        return -bound_fn(_scores(p, critic, za[rows], zb[rows]))

    def step(carry, k):
        p, state = carry
        rows = train[jax.random.permutation(k, n_train)[:batch]]
        loss, grads = jax.value_and_grad(loss_fn)(p, rows)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_steps, steps))
    out = {
        "mi": to_bits(_batched_bound(bound_fn, params, critic, za, zb, held, batch)),
        "mi_train": to_bits(_batched_bound(bound_fn, params, critic, za, zb, train, batch)),
        "loss": losses[-1],
    }
    out = {q: nan_unless_finite(v, a, b) for q, v in out.items()}
    out["cap"] = jnp.float32(bound_cap(bound, batch))
    return out


def variational_mutual_information_discrete(t, y, key, n_classes: int, *, bound: str = "infonce", t_mask=None, **kw) -> dict:
    """The bound on I(T;Y) of rows ``t`` ``(n, d)`` and int labels ``y`` ``(n,)`` in ``[0, n_classes)``,
    bits: :func:`variational_mutual_information` with B the one-hot labels ``(n, n_classes)``
    (``kw``: its other keyword arguments). I(T;Y) <= H(Y) <= log2 n_classes besides the bound's cap."""
    check_rank(y, 1, "y")
    return variational_mutual_information(t, jax.nn.one_hot(y, n_classes, dtype=jnp.float32), key, bound=bound, a_mask=t_mask, **kw)


def infonce_mutual_information(a, b, key, **kw) -> dict:
    """InfoNCE lower bound on I(A;B) in bits (van den Oord et al. 2018; Poole et al. 2019), at most
    log2 ``batch``: :func:`variational_mutual_information` with ``bound="infonce"``."""
    return variational_mutual_information(a, b, key, bound="infonce", **kw)


def nwj_mutual_information(a, b, key, **kw) -> dict:
    """NWJ lower bound on I(A;B) in bits (Nguyen, Wainwright & Jordan 2010; Poole et al. 2019), not
    capped, variance growing like e^I (Song & Ermon 2020): :func:`variational_mutual_information`
    with ``bound="nwj"``."""
    return variational_mutual_information(a, b, key, bound="nwj", **kw)


def bound_cap(bound: str, batch: int) -> float:
    """The bound's own maximum in bits: log2 ``batch`` for InfoNCE, +inf for NWJ."""
    return math.log2(batch) if bound == "infonce" else math.inf


# ----------------------------------------------------------------------------- the estimators


def _compute(bound: str):
    def compute(ctx: EvalContext, cfg):
        o = cfg.estimator.variational
        rows = subset_rows(ctx.n, o.n, cfg.estimator.subset_seed)
        n = len(rows)
        x = subset(ctx, o.n, cfg.estimator.subset_seed).reshape(n, -1).astype(jnp.float32)
        stacked, y = (ctx.stacked, ctx.y) if n == ctx.n else (ctx.stacked[:, rows], ctx.y[rows])
        # fixed: the same split, critic initialisation and minibatches for every member and evaluation
        k_xt, k_ty = jax.random.split(jax.random.PRNGKey(o.seed))
        kw = dict(
            bound=bound,
            critic=o.critic,
            steps=o.steps,
            hidden=o.hidden,
            batch=o.batch,
            learning_rate=o.learning_rate,
            held_out=o.held_out,
        )

        def layer(t, mask):
            xt = variational_mutual_information(x, t, k_xt, b_mask=mask, **kw)
            ty = variational_mutual_information_discrete(t, y, k_ty, ctx.n_classes, t_mask=mask, **kw)
            return {"i_xt": xt["mi"], "i_ty": ty["mi"], "i_xt_train": xt["mi_train"], "i_ty_train": ty["mi_train"]}

        return jax.vmap(layer)(stacked, ctx.mask)

    return compute


def _check(cfg, n_info: int) -> None:
    o = cfg.estimator.variational
    key = "estimator.variational"
    if o.critic not in CRITICS:
        raise ValueError(f"{key}.critic must be one of {CRITICS}, got {o.critic!r}")
    if not o.learning_rate > 0:
        raise ValueError(f"{key}.learning_rate must be > 0, got {o.learning_rate}")
    if not 0.0 < o.held_out < 1.0:
        raise ValueError(f"{key}.held_out must be in (0, 1), got {o.held_out}")
    if o.steps < 1:
        raise ValueError(f"{key}.steps must be >= 1, got {o.steps}")
    if o.hidden < 1:
        raise ValueError(f"{key}.hidden must be >= 1, got {o.hidden}")
    rows = min(o.n, n_info)
    n_held = int(round(o.held_out * rows))
    if not 2 <= o.batch <= min(n_held, rows - n_held):
        raise ValueError(
            f"{key}.batch={o.batch} must be in [2, {min(n_held, rows - n_held)}]: both parts of the {rows} rows used "
            f"(min({key}.n, n_info), split by {key}.held_out={o.held_out}) need a batch: {rows - n_held} train, {n_held} held out"
        )


def _rows(cfg, n_info: int) -> int:
    return min(cfg.estimator.variational.n, n_info)


register_estimator("infonce", _compute("infonce"), _check, reads=("variational",), rows=_rows)
register_estimator("nwj", _compute("nwj"), _check, reads=("variational",), rows=_rows)
# InfoNCE's estimates never exceed log2 K: its ceiling (NWJ has none of its own)
register_cap("infonce", lambda cfg, rows: dict.fromkeys(("i_xt", "i_ty"), bound_cap("infonce", cfg.estimator.variational.batch)))
