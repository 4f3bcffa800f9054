"""Sample propagation (SP): I(X;T_l) of a noisy network, in bits.

Goldfeld, van den Berg, Greenewald, Melnyk, Nguyen, Kingsbury & Polyanskiy,
"Estimating Information Flow in Deep Neural Networks", ICML 2019 (reference
code: github.com/kgreenewald/smoothMI, ``MIestimation.py``).

The noisy network
-----------------
Every hidden layer adds isotropic Gaussian noise to its clean output::

    S_l = f_l(T_{l-1}),    T_l = S_l + Z_l,    Z_l ~ N(0, beta^2 I_d)

(T_0 = X). X is uniform over n inputs x_i. Given x_i, S_l is random only
through the noise of the earlier layers; the caller draws R replicas of that
noise and passes ``centers[r, i]`` = S_l for input i under replica r. Then

    p(t | x_i) ~= p_i(t) = (1/R) sum_r N(t; centers[r, i], beta^2 I)
    p(t)       ~= p(t)   = (1/n) sum_i p_i(t)          (n R equal Gaussians)

and (R = 1 is exact for the first hidden layer, whose S_1 = f_1(x) is
deterministic; for deeper layers the R-replica mixture is SP's Monte Carlo
approximation of p(t|x), unbiased in R only in the limit)::

    h(T_l)     = -E_{t ~ p} log p(t)
    h(T_l | X) = (1/n) sum_i -E_{t ~ p_i} log p_i(t)    (R = 1: d/2 log(2 pi e beta^2))
    I(X;T_l)   = h(T_l) - h(T_l | X)                     (0 <= I <= log n)
    H(X|T_l)   = log n - I(X;T_l)

Monte Carlo, as in the paper: every mixture component j = (r, i) emits
``n_mc`` samples s = centers[r, i] + beta z, z ~ N(0, I). A sample from
component (r, i) is a sample of p (all components equally likely) *and* of
p_i, so one set of samples serves both entropies (common random numbers: the
noise of the two terms cancels in I instead of adding up)::

    I(X;T) ~= log n + mean_s [ LSE_{k in own(i)} e_k(s) - LSE_{all k} e_k(s) ]
    h(T)   ~= -mean_s LSE_{all k} e_k(s) + log(n R) + d/2 log(2 pi beta^2)
    e_k(s) = -||s - c_k||^2 / (2 beta^2)

For R = 1, h(T|X) is the exact Gaussian entropy and h(T) = I + h(T|X) (the
exact conditional term acts as a control variate); for R > 1,
h(T|X) ~= -mean_s LSE_own + log R + d/2 log(2 pi beta^2) and h(T) - h(T|X) is
the I above, to rounding. Results are converted to bits (divide by ln 2).

Accuracy: the Monte Carlo error of I given the centres is reported as
``i_xt_mc_se`` (standard error of the mean over the n R n_mc samples, bits).
It does not include the replica approximation of p(t|x) for R > 1 (whose bias
falls with R: docs/estimators.md, "Sample propagation").

Numerics: exponents are computed in units of beta (centres divided by beta).
For d <= ``DIRECT_MAX_DIM`` the squared distances are summed column by
column (exact to rounding, ~ as fast as a matmul at these widths); wider
layers use ||a||^2 + ||b||^2 - 2 a.b on centred data, whose float32 rounding
error is ~1e-7 (||s||^2 + ||c||^2) / beta^2 in the exponent.

Memory: the n R n_mc evaluation points are processed in blocks of ``block``
rows against all n R components: O(block * n R) floats alive at a time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ib_jax.estimators._common import blocked_rows, check_rank, nan_unless_finite, sq_distances, to_bits
from ib_jax.estimators.base import EvalContext, n_hidden, register_estimator, subset

__all__ = ["sp_mutual_information", "gaussian_entropy_bits", "replica_layers", "DIRECT_MAX_DIM"]

DIRECT_MAX_DIM = 32  # column-by-column distances up to this width (measured: d=12 within 15% of a matmul on CPU)
_CPU_BLOCK_FLOATS = 1 << 19  # (block, n R) tile of ~2 MiB stays in cache on CPU
_ACCEL_BLOCK_FLOATS = 1 << 26  # ~256 MiB tiles keep a GPU busy
_CPU_REPLICA_FLOATS = 1 << 25  # activations of one block of replicas' forward passes (~128 MiB)
_ACCEL_REPLICA_FLOATS = 1 << 28  # ~1 GiB on an accelerator


def gaussian_entropy_bits(dim, beta):
    """Differential entropy of N(0, beta^2 I_dim) in bits: dim/2 log2(2 pi e beta^2)."""
    return 0.5 * dim * jnp.log2(2.0 * jnp.pi * jnp.e * jnp.square(beta))


def _default_block(n_comp: int) -> int:
    budget = _ACCEL_BLOCK_FLOATS if jax.default_backend() != "cpu" else _CPU_BLOCK_FLOATS
    return int(max(16, budget // max(1, n_comp)))


def _sq_dist(s, c, c_sq):
    """||s_a - c_k||^2, ``(len(s), len(c))``: the shared distance function (exact column sums up to
    ``DIRECT_MAX_DIM`` units, else the full-precision matmul form clamped at its resolution)."""
    return sq_distances(s, c, c_sq, direct_max_dim=DIRECT_MAX_DIM)


def _check_args(centers, beta, n_mc):
    check_rank(centers, 3, "centers")
    if isinstance(beta, (int, float, np.floating, np.integer)) and not beta > 0:
        raise ValueError(f"beta (the noise standard deviation) must be > 0, got {beta}")
    if not isinstance(n_mc, (int, np.integer)) or n_mc < 1:
        raise ValueError(f"n_mc (Monte Carlo samples per mixture component) must be an int >= 1, got {n_mc!r}")


def sp_mutual_information(centers, beta, key, *, n_mc: int = 1, block: int | None = None, unit_mask=None):
    """SP estimate of I(X;T), h(T), h(T|X), H(X|T) in bits for one noisy layer.

    Args:
      centers: ``(R, n, d)`` clean layer outputs S_l: ``centers[r, i]`` for
        input i under replica r of the earlier layers' noise (R >= 1; R = 1
        for the first hidden layer, or to ignore earlier noise).
      beta: noise standard deviation of this layer (T = S + N(0, beta^2 I));
        may be traced.
      key: PRNG key for the Monte Carlo noise. Sample e (component
        j = e // n_mc) and unit u use ``fold_in(fold_in(key, e), u)``, so the
        result does not depend on ``block`` nor on zero-padding of units.
      n_mc: samples per mixture component (n R n_mc samples in all).
      block: evaluation points per block (memory O(block * n R)); default
        fits a ~2 MiB tile on CPU, ~256 MiB on an accelerator.
      unit_mask: optional ``(d,)`` bool, true for real units (zero-padded
        layers from :func:`ib_jax.estimators.pad_layers`): padded units get no
        noise and do not count in the dimension d of the Gaussian terms.

    Returns:
      dict of scalars (bits): ``i_xt`` = I(X;T), ``h_t`` = h(T), ``h_t_given_x``
      = h(T|X), ``h_x_given_t`` = log2 n - I(X;T), ``i_xt_mc_se`` = Monte Carlo
      standard error of ``i_xt``. NaN if ``centers`` has a non-finite entry.
    """
    _check_args(centers, beta, n_mc)
    n_rep, n, d = centers.shape
    n_comp = n * n_rep
    m = n_comp * n_mc
    valid = jnp.ones(d, bool) if unit_mask is None else jnp.asarray(unit_mask).astype(bool)
    dim = jnp.sum(valid).astype(jnp.float32)
    beta = jnp.asarray(beta, jnp.float32)

    # component j = i * R + r (input-major), so input i owns rows [i R, (i + 1) R)
    comps = jnp.swapaxes(centers.astype(jnp.float32), 0, 1).reshape(n_comp, d)
    comps = comps - jnp.mean(comps, axis=0, keepdims=True)  # distances unchanged; less cancellation
    comps = jnp.where(valid, comps / beta, 0.0)  # units of beta: e_k(s) = -||s - c_k||^2 / 2
    comps_sq = jnp.sum(comps * comps, axis=-1)
    units = jnp.arange(d)

    def noise(e):
        k = jax.random.fold_in(key, e)
        return jax.vmap(lambda u: jax.random.normal(jax.random.fold_in(k, u), (), jnp.float32))(units)

    def fn(rows):
        j = rows // n_mc
        i = j // n_rep
        s = comps[j] + jnp.where(valid, jax.vmap(noise)(rows), 0.0)
        lse_all = logsumexp(-0.5 * _sq_dist(s, comps, comps_sq), axis=1)
        own = comps[i[:, None] * n_rep + jnp.arange(n_rep)[None, :]]  # (b, R, d)
        lse_own = logsumexp(-0.5 * jnp.sum(jnp.square(s[:, None, :] - own), axis=-1), axis=1)
        return lse_own - lse_all, lse_all, lse_own

    diff, lse_all, lse_own = blocked_rows(fn, m, block or _default_block(n_comp))()
    log_norm = 0.5 * dim * jnp.log(2.0 * jnp.pi * jnp.square(beta))  # log of (2 pi beta^2)^{d/2}
    i_xt = math.log(n) + jnp.mean(diff)
    if n_rep == 1:
        h_cond = 0.5 * dim * jnp.log(2.0 * jnp.pi * jnp.e * jnp.square(beta))
        h_t = i_xt + h_cond
    else:
        h_cond = -jnp.mean(lse_own) + math.log(n_rep) + log_norm
        h_t = -jnp.mean(lse_all) + math.log(n_comp) + log_norm
    se = jnp.std(diff, ddof=1) / math.sqrt(m) if m > 1 else jnp.float32(jnp.nan)
    out = {
        "i_xt": to_bits(i_xt),
        "h_t": to_bits(h_t),
        "h_t_given_x": to_bits(h_cond),
        "h_x_given_t": math.log2(n) - to_bits(i_xt),
        "i_xt_mc_se": to_bits(se),
    }
    return {k: nan_unless_finite(v, centers) for k, v in out.items()}


# ----------------------------------------------------------------------------- the estimator


def replica_layers(forward, keys, budget_floats: int | None = None):
    """``forward(key) -> layers`` for every key, stacked: layers of ``(R, n, d_l)``.

    The R forward passes run in blocks of replicas (``lax.map`` with ``batch_size``) sized so that
    one block's activations stay within ``budget_floats`` floats (~128 MiB on CPU, ~1 GiB on an
    accelerator by default): on a conv net R x n images at once would not fit, and the block size
    changes the memory, never the result (every replica has its own key). A block's activations
    are taken as 4x its recorded outputs (a conv map before 2x2 pooling).
    """
    out = jax.eval_shape(forward, keys[0])
    per_replica = 4 * sum(int(np.prod(t.shape)) for t in out)
    if budget_floats is None:
        budget_floats = _ACCEL_REPLICA_FLOATS if jax.default_backend() != "cpu" else _CPU_REPLICA_FLOATS
    block = int(max(1, budget_floats // max(1, per_replica)))
    if block >= keys.shape[0]:
        return jax.vmap(forward)(keys)
    return jax.lax.map(forward, keys, batch_size=block)


def _sp(ctx: EvalContext, cfg):
    """Sample propagation (Goldfeld et al. 2019) on a noisy network: for each of ``estimator.sp.n``
    inputs, ``estimator.sp.replicas`` draws of the earlier layers' noise give the centers S_l of
    T_l's mixture; I(X;T_l) = h(T_l) - h(T_l|X) by Monte Carlo. Hidden layers only (the output
    has no noise): the output's entries are NaN."""
    o, beta = cfg.estimator.sp, float(cfg.model.layer_noise)
    x = subset(ctx, o.n, cfg.estimator.subset_seed)
    keys = jax.random.split(ctx.key, o.replicas + 1)
    reps = replica_layers(lambda k: ctx.apply(ctx.params, x, key=k, centers=True), keys[:-1])  # layers of (R, n, d_l)
    hidden = reps[: n_hidden(ctx, cfg)]
    d_max = max(h.shape[-1] for h in hidden)
    stacked = jnp.stack([jnp.pad(h, ((0, 0), (0, 0), (0, d_max - h.shape[-1]))) for h in hidden])
    mask = jnp.stack([jnp.arange(d_max) < h.shape[-1] for h in hidden])
    r = jax.vmap(lambda c, m, k: sp_mutual_information(c, beta, k, n_mc=o.n_mc, unit_mask=m))(
        stacked, mask, jax.random.split(keys[-1], len(hidden))
    )
    pad = len(ctx.layers) - len(hidden)
    nan = jnp.full((pad,), jnp.nan, jnp.float32)
    return {q: jnp.concatenate([r[q].astype(jnp.float32), nan]) for q in ("i_xt", "h_x_given_t", "h_t", "i_xt_mc_se")}


def _check(cfg, n_info: int) -> None:
    o = cfg.estimator.sp
    if not cfg.model.layer_noise > 0:
        raise ValueError(
            "estimator.names: sp needs a noisy network (model.layer_noise > 0, the noise std beta); "
            f"got model.layer_noise={cfg.model.layer_noise}"
        )
    if o.replicas < 1 or o.n_mc < 1 or o.n < 2:
        raise ValueError(
            f"estimator.sp.replicas and estimator.sp.n_mc must be >= 1, estimator.sp.n >= 2; got {o.replicas}, {o.n_mc}, {o.n}"
        )


register_estimator("sp", _sp, _check, reads=("sp",), rows=lambda cfg, n_info: min(cfg.estimator.sp.n, n_info))
