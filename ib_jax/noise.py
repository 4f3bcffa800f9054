"""Gradient-noise injection as composable optax transforms.

Every transform here is an :class:`optax.GradientTransformation` with a pure
``init``/``update`` pair and its PRNG key carried in the state, so it can stand
anywhere in an ``optax.chain``: first in the chain it perturbs the *gradient*,
after an optimizer it perturbs the *update*.

Signal-to-noise ratio
---------------------
The SNR is a power ratio (dimensionless, not dB)::

    snr = ||g||^2 / E||xi||^2

with ``g`` the incoming update (a pytree flattened to a vector of D elements)
and ``xi`` the added noise. ``snr`` is an ``optax.ScalarOrSchedule``: a Python
float, a jax array (so a jitted program can ``vmap`` over a grid of SNRs) or a
schedule ``count -> snr``. ``snr = inf`` means no noise: the update passes
through bit for bit.

Conventions shared by all transforms
------------------------------------
* **Zero gradient**: ``g = 0`` gets no noise (the relative transforms scale
  noise by ``||g||``); the output is exactly ``g``, the recorded realized SNR is
  ``inf`` and the angle ``0``. No NaN is produced.
* **Diagnostics**: the state records what the last step did: the realized SNR
  ``||g||^2 / ||out - g||^2`` (``inf`` when nothing was added) and the angle
  between ``g`` and ``out`` in radians, both over the whole pytree whatever the
  ``scope``. :func:`diagnostics` finds them inside any chain. (The one
  exception is :func:`heavy_tailed`, whose noise power is infinite for
  ``alpha < 2``: its realized SNR is measured on the *scale* convention, for
  every alpha, see there.)
* **Populations**: ``jax.vmap(tx.init)`` over a population copies the single key
  given at construction into every member, so all members would draw the same
  noise. Use :func:`population_init` (or :func:`reseed` after your own vmapped
  init) to give each member an independent key, and
  :func:`check_independent_keys` to assert it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "NoiseState",
    "NoiseDiagnostics",
    "isotropic",
    "cone",
    "fixed",
    "sgd_shaped",
    "heavy_tailed",
    "anticorrelated",
    "AnticorrelatedState",
    "symmetric_stable",
    "diagnostics",
    "reseed",
    "population_init",
    "check_independent_keys",
    "SCOPES",
    "CONE_MODES",
]

SCOPES = ("global", "per_leaf")
CONE_MODES = ("surface", "cap", "gaussian")


class NoiseState(NamedTuple):
    """State of every noise transform.

    Attributes:
      count: int32 scalar, number of updates seen (drives schedules).
      key: typed PRNG key for the next draw.
      realized_snr: float32 scalar, ``||g||^2 / ||out - g||^2`` of the last step
        (:func:`heavy_tailed`: the scale-convention estimate described there).
      angle: float32 scalar, angle between ``g`` and ``out`` of the last step
        (radians).
    """

    count: jax.Array
    key: jax.Array
    realized_snr: jax.Array
    angle: jax.Array


class NoiseDiagnostics(NamedTuple):
    """What one noise transform did on its last step (see :class:`NoiseState`)."""

    realized_snr: jax.Array
    angle: jax.Array


# ---------------------------------------------------------------------------
# argument checking and helpers
# ---------------------------------------------------------------------------


def _canonicalize_key(key: Any, name: str = "key") -> jax.Array:
    """An int seed, a typed key or a raw uint32[2] key -> a typed key."""
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if not isinstance(key, jax.Array):
        try:
            key = jnp.asarray(key)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be an int seed or a jax PRNG key, got {key!r}") from e
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(f"{name} must be an int seed or a jax PRNG key, got {key!r}")


def _check_level(value: Any, name: str, *, allow_zero: bool) -> None:
    """Validate an SNR / sigma known at construction (floats, concrete arrays).

    Schedules are probed at count 0; traced arrays cannot be checked here.
    """
    if callable(value):
        try:
            probe = value(jnp.zeros([], jnp.int32))
        except Exception:  # a schedule that cannot be probed eagerly
            return
        _check_level(probe, f"{name}(0)", allow_zero=allow_zero)
        return
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced (e.g. vmapped over an SNR grid): cannot be checked here
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, array or schedule, got {value!r}") from e
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not be NaN, got {value!r}")
    if allow_zero:
        if (arr < 0).any():
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    elif (arr <= 0).any():
        raise ValueError(f"{name} must be > 0 (use inf for no noise), got {value!r}")


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")


def _resolve(level: optax.ScalarOrSchedule, count: jax.Array) -> jax.Array:
    value = level(count) if callable(level) else level
    return jnp.asarray(value, dtype=jnp.float32)


def _sqnorm(leaves: list[jax.Array]) -> jax.Array:
    return sum((jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves), jnp.zeros([], jnp.float32))


def _dot(a: list[jax.Array], b: list[jax.Array]) -> jax.Array:
    return sum(
        (jnp.sum(x.astype(jnp.float32) * y.astype(jnp.float32)) for x, y in zip(a, b)),
        jnp.zeros([], jnp.float32),
    )


def _groups(n_leaves: int, scope: str) -> list[list[int]]:
    """Leaf indices that share one norm: all of them, or each on its own."""
    if scope == "global":
        return [list(range(n_leaves))]
    return [[i] for i in range(n_leaves)]


def _safe(x: jax.Array) -> jax.Array:
    """``x`` where positive, 1 elsewhere: a denominator that never makes NaN."""
    return jnp.where(x > 0, x, 1.0)


def _angle(g: list[jax.Array], out: list[jax.Array]) -> jax.Array:
    """Angle between two vectors, stable at small angles (Kahan's formula).

    theta = 2 atan2(|| g/|g| - o/|o| ||, || g/|g| + o/|o| ||); 0 if either is 0.
    """
    ng = jnp.sqrt(_sqnorm(g))
    no = jnp.sqrt(_sqnorm(out))
    gh = [x.astype(jnp.float32) / _safe(ng) for x in g]
    oh = [x.astype(jnp.float32) / _safe(no) for x in out]
    diff = jnp.sqrt(_sqnorm([a - b for a, b in zip(gh, oh)]))
    summ = jnp.sqrt(_sqnorm([a + b for a, b in zip(gh, oh)]))
    theta = 2.0 * jnp.arctan2(diff, summ)
    return jnp.where((ng > 0) & (no > 0), theta, 0.0)


def _realized(g: list[jax.Array], out: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    xi2 = _sqnorm([o.astype(jnp.float32) - x.astype(jnp.float32) for x, o in zip(g, out)])
    g2 = _sqnorm(g)
    snr = jnp.where(xi2 > 0, g2 / _safe(xi2), jnp.inf)
    return snr, _angle(g, out)


def _perpendicular(z: list[jax.Array], g: list[jax.Array]) -> list[jax.Array]:
    """Project ``z`` onto the orthogonal complement of ``g`` (twice, for accuracy).

    With ``g = 0`` the projection is the identity.
    """
    g32 = [x.astype(jnp.float32) for x in g]
    g2 = _safe(_sqnorm(g32))
    for _ in range(2):  # one Gram-Schmidt pass leaves O(eps |z|) along g
        c = _dot(z, g32) / g2
        z = [a - c * b for a, b in zip(z, g32)]
    return z


def _initial_state(key: jax.Array) -> Callable[[Any], NoiseState]:
    """``init`` of every noise transform: count 0, the key, nothing added yet."""

    def init_fn(params):
        del params
        return NoiseState(
            count=jnp.zeros([], jnp.int32),
            key=key,
            realized_snr=jnp.asarray(jnp.inf, jnp.float32),
            angle=jnp.zeros([], jnp.float32),
        )

    return init_fn


def _make_transform(
    draw: Callable[[list[jax.Array], jax.Array, jax.Array], list[jax.Array]],
    level: optax.ScalarOrSchedule,
    key: Any,
    scope: str,
    *,
    passthrough_at_inf: bool = True,
    finalize: Callable[[list[jax.Array], list[jax.Array]], list[jax.Array]] | None = None,
    group_log_snr: Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = None,
) -> optax.GradientTransformation:
    """Shared skeleton: resolve the level, split keys per group, add noise.

    ``draw(g_group, level, key) -> noise_group`` returns float32 noise for one
    group of leaves (a whole pytree, or one leaf with ``scope='per_leaf'``).
    ``group_log_snr(g_group, noise_group, level) -> (log_snr_k, weight_k)``, when
    given, replaces the realized power ratio (for noise without a finite power):
    the realized SNR is then exp(sum_k weight_k log_snr_k / sum_k weight_k), inf
    when every weight is 0 (nothing added).
    """
    key = _canonicalize_key(key)

    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None):
        del params
        value = _resolve(level, state.count)
        leaves, treedef = jax.tree.flatten(updates)
        next_key, sample_key = jax.random.split(state.key)
        groups = _groups(len(leaves), scope)
        group_keys = jax.random.split(sample_key, len(groups))
        # every group is raveled into one float32 vector: the math below is then a handful of
        # XLA ops whatever the number of leaves (per-leaf ops cost ~2x a small model's step)
        g_flat = _ravel(leaves)
        sizes = [math.prod(x.shape) for x in leaves]
        offsets = np.cumsum([0] + sizes)
        out_parts = []
        log_snr_sum = jnp.zeros([], jnp.float32)
        weight_sum = jnp.zeros([], jnp.float32)
        for gi, idx in enumerate(groups):
            g = g_flat[offsets[idx[0]] : offsets[idx[-1] + 1]]
            n = draw([g], value, group_keys[gi])[0]
            if group_log_snr is not None:
                log_snr_k, weight_k = group_log_snr(g, n, value)
                log_snr_sum = log_snr_sum + jnp.where(weight_k > 0, weight_k * log_snr_k, 0.0)
                weight_sum = weight_sum + weight_k
            o = g + n
            if finalize is not None:
                o = finalize([g], [o])[0]
            out_parts.append(o)
        o_flat = out_parts[0] if len(out_parts) == 1 else jnp.concatenate(out_parts)
        out = [o_flat[offsets[i] : offsets[i + 1]].reshape(x.shape).astype(x.dtype) for i, x in enumerate(leaves)]
        if passthrough_at_inf:
            # bit-for-bit identity (g + 0.0 would turn -0.0 into +0.0)
            no_noise = jnp.isinf(value) & (value > 0)
            out = [jnp.where(no_noise, x, o) for x, o in zip(leaves, out)]
            o_flat = jnp.where(no_noise, g_flat, o_flat)
        snr, angle = _realized([g_flat], [o_flat])
        if group_log_snr is not None:
            snr = jnp.where(weight_sum > 0, jnp.exp(log_snr_sum / _safe(weight_sum)), jnp.inf)
            if passthrough_at_inf:
                snr = jnp.where(no_noise, jnp.inf, snr)
        new_state = NoiseState(
            count=optax.safe_increment(state.count),
            key=next_key,
            realized_snr=snr,
            angle=angle,
        )
        return jax.tree.unflatten(treedef, out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _ravel(leaves: list[jax.Array]) -> jax.Array:
    """All leaves as one float32 vector (leaf order)."""
    flat = [x.astype(jnp.float32).reshape(-1) for x in leaves]
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat)


def _normal_like(key: jax.Array, leaves: list[jax.Array]) -> list[jax.Array]:
    """Standard normal float32 noise shaped like ``leaves``, from ONE draw sliced into leaves.

    One threefry call instead of one per leaf: the same distribution, and
    ~4x less XLA compile time for a typical network's pytree.
    """
    sizes = [math.prod(x.shape) for x in leaves]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    out, start = [], 0
    for x, size in zip(leaves, sizes):
        out.append(flat[start : start + size].reshape(x.shape))
        start += size
    return out


def _size(leaves: list[jax.Array]) -> int:
    return int(sum(math.prod(x.shape) for x in leaves))


# ---------------------------------------------------------------------------
# public transforms
# ---------------------------------------------------------------------------


def isotropic(snr: optax.ScalarOrSchedule, key: Any, *, scope: str = "global") -> optax.GradientTransformation:
    """Isotropic Gaussian noise at a given power SNR.

    xi ~ N(0, sigma^2 I_D) with sigma^2 = ||g||^2 / (D * snr), so that
    E||xi||^2 = ||g||^2 / snr. ``scope='global'`` uses one norm and one D over
    the whole pytree; ``scope='per_leaf'`` gives every leaf (layer) its own
    norm, D and hence its own SNR.

    Args:
      snr: power SNR > 0 (float, array, or schedule ``count -> snr``); inf = off.
      key: int seed or PRNG key.
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        d = _size(g)
        sigma = jnp.sqrt(_sqnorm(g) / (d * value))
        return [sigma * z for z in _normal_like(key, g)]

    return _make_transform(draw, snr, key, scope)


def _cap_angle(key: jax.Array, theta: jax.Array, dim: int) -> jax.Array:
    """Polar angle of a direction uniform over a spherical cap of half-angle theta.

    On S^{D-1} the polar angle phi of a uniform point has density
    proportional to sin^{D-2}(phi). With w = sin^2(phi) this is a Beta((D-1)/2,
    1/2) density truncated to w <= s = sin^2(theta); writing w = s r, r in [0,1]
    has density proportional to r^{a-1} (1 - s r)^{-1/2}, a = (D-1)/2. We propose
    r ~ Beta(a, 1) (r = U^{1/a}) and accept with sqrt((1-s)/(1-s r)) <= 1: exact
    in any dimension, acceptance >= cos(theta), near 1 when D is large.
    """
    a = (dim - 1) / 2.0
    s = jnp.square(jnp.sin(theta))

    def cond(carry):
        return ~carry[2]

    def body(carry):
        k, _, _ = carry
        k, k1, k2 = jax.random.split(k, 3)
        r = jnp.exp(jnp.log(jax.random.uniform(k1, minval=1e-38)) / a)
        accept = jax.random.uniform(k2) < jnp.sqrt((1.0 - s) / (1.0 - s * r))
        return k, r, accept

    _, r, _ = jax.lax.while_loop(cond, body, (key, jnp.zeros([], jnp.float32), jnp.array(False)))
    return jnp.arcsin(jnp.sqrt(jnp.clip(s * r, 0.0, 1.0)))


def cone(
    snr: optax.ScalarOrSchedule,
    key: Any,
    *,
    mode: str = "surface",
    scope: str = "global",
    preserve_norm: bool = False,
) -> optax.GradientTransformation:
    """Noise perpendicular to the update: each step is a draw from a cone around g.

    The cone's half-angle is theta = arctan(1/sqrt(snr)). With u a unit vector
    uniform among directions perpendicular to g:

    * ``mode='surface'``: xi = ||g|| tan(theta) u. Every draw makes exactly the
      angle theta with g and ||xi||^2 = ||g||^2 / snr (realized SNR = snr).
    * ``mode='cap'``: xi = ||g|| tan(phi) u with phi drawn so that the direction
      of g + xi is uniform over the solid angle of the cone (density of phi
      proportional to sin^{D-2} phi on [0, theta]). Since phi <= theta, the
      noise power is at most ||g||^2 / snr (realized SNR >= snr); ``snr`` sets
      the cone's aperture.
    * ``mode='gaussian'``: an isotropic Gaussian projected onto the orthogonal
      complement of g, scaled so E||xi||^2 = ||g||^2 / snr (angle varies).

    ``preserve_norm=True`` rescales g + xi to ||g|| (a pure rotation; the
    realized SNR then counts the radial change too). With D = 1 there is no
    perpendicular direction and no noise is added.

    Args:
      snr: power SNR > 0 (float, array, or schedule); inf = off.
      key: int seed or PRNG key.
      mode: ``'surface'``, ``'cap'`` or ``'gaussian'``.
      scope: ``'global'`` (one cone for the whole pytree) or ``'per_leaf'``.
      preserve_norm: rescale the noisy update to the norm of g.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(mode, "mode", CONE_MODES)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        d = _size(g)
        if d < 2:
            return [jnp.zeros(x.shape, jnp.float32) for x in g]
        gnorm = jnp.sqrt(_sqnorm(g))
        k_dir, k_angle = jax.random.split(key)
        z = _perpendicular(_normal_like(k_dir, g), g)
        if mode == "gaussian":
            scale = gnorm / jnp.sqrt(value * (d - 1))
            return [scale * x for x in z]
        u_scale = 1.0 / _safe(jnp.sqrt(_sqnorm(z)))
        theta = jnp.arctan(1.0 / jnp.sqrt(value))
        phi = theta if mode == "surface" else _cap_angle(k_angle, theta, d)
        scale = gnorm * jnp.tan(phi) * u_scale
        return [scale * x for x in z]

    def finalize(g, out):
        if not preserve_norm:
            return out
        ratio = jnp.sqrt(_sqnorm(g)) / _safe(jnp.sqrt(_sqnorm(out)))
        return [(o.astype(jnp.float32) * ratio).astype(o.dtype) for o in out]

    return _make_transform(draw, snr, key, scope, finalize=finalize)


def fixed(sigma: optax.ScalarOrSchedule, key: Any) -> optax.GradientTransformation:
    """Noise of absolute standard deviation sigma: xi ~ N(0, sigma^2 I).

    The Langevin / ``optax.add_noise`` family: the noise does not scale with g.
    With ``sigma = ib_jax.schedules.anneal(eta, gamma)`` it reproduces
    ``optax.add_noise(eta, gamma, key)`` exactly (same key use, same draws).
    ``sigma = 0`` adds nothing.
    """
    _check_level(sigma, "sigma", allow_zero=True)
    key = _canonicalize_key(key)

    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None):
        del params
        sigma_t = _resolve(sigma, state.count)
        next_key, sample_key = jax.random.split(state.key)
        # same tree-wide key split and sampler as optax.add_noise
        noise = optax.tree.random_like(sample_key, target_tree=updates, sampler=jax.random.normal)
        out = optax.tree.add_scale(updates, sigma_t, noise)
        snr, angle = _realized([_ravel(jax.tree.leaves(updates))], [_ravel(jax.tree.leaves(out))])
        return out, NoiseState(optax.safe_increment(state.count), next_key, snr, angle)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd_shaped(snr: optax.ScalarOrSchedule, key: Any) -> optax.GradientTransformationExtraArgs:
    """Noise with the covariance of mini-batch gradient noise, at a given power SNR.

    Zhu et al. (2019), "anisotropic noise". Needs the per-example gradients
    g_i (i <= m) of the batch, passed as an extra argument::

        updates, state = tx.update(grads, state, params, per_example_grads=per_ex)

    (``optax.chain`` forwards it). With g_bar their mean and z ~ N(0, I_m)::

        xi = c * (1 / sqrt(m - 1)) * sum_i z_i (g_i - g_bar)

    has covariance c^2 Sigma_hat (Sigma_hat the sample covariance of the per-
    example gradients) and c^2 = ||g||^2 / (snr tr Sigma_hat) sets
    E||xi||^2 = ||g||^2 / snr, the same power ratio as :func:`isotropic` and
    :func:`cone`, so the three shapes compare at equal SNR. If tr Sigma_hat = 0
    (all examples agree, or m = 1) no noise is added.
    """
    _check_level(snr, "snr", allow_zero=False)
    key = _canonicalize_key(key)

    init_fn = _initial_state(key)

    def update_fn(updates, state, params=None, *, per_example_grads=None, **extra):
        del params, extra
        if per_example_grads is None:
            raise ValueError("sgd_shaped noise needs per_example_grads=... in update (a pytree with a leading example axis)")
        value = _resolve(snr, state.count)
        leaves, treedef = jax.tree.flatten(updates)
        per_ex = jax.tree.leaves(per_example_grads)
        m = per_ex[0].shape[0]
        next_key, sample_key = jax.random.split(state.key)
        z = jax.random.normal(sample_key, (m,), jnp.float32)
        centred = [p.astype(jnp.float32) - jnp.mean(p.astype(jnp.float32), axis=0, keepdims=True) for p in per_ex]
        trace = sum(jnp.sum(jnp.square(c)) for c in centred) / max(m - 1, 1)
        scale = jnp.sqrt(_sqnorm(leaves) / (value * _safe(trace))) / jnp.sqrt(max(m - 1, 1))
        scale = jnp.where(trace > 0, scale, 0.0)
        xi = [scale * jnp.tensordot(z, c, axes=1) for c in centred]
        out = [(g.astype(jnp.float32) + n).astype(g.dtype) for g, n in zip(leaves, xi)]
        no_noise = jnp.isinf(value) & (value > 0)
        out = [jnp.where(no_noise, g, o) for g, o in zip(leaves, out)]
        realized, angle = _realized(leaves, out)
        new_state = NoiseState(optax.safe_increment(state.count), next_key, realized, angle)
        return jax.tree.unflatten(treedef, out), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# heavy-tailed (alpha-stable) noise
# ---------------------------------------------------------------------------

# float32(pi/2) rounds *above* pi/2 (cos of it is negative); the largest float32 below pi/2
_HALF_PI_BELOW = float(np.nextafter(np.float32(np.pi / 2), np.float32(0)))
_EULER = 0.5772156649015329  # Euler-Mascheroni constant


def _check_alpha(alpha: Any) -> None:
    """0 < alpha <= 2 for values known at construction; traced (vmapped) alphas pass."""
    try:
        arr = np.asarray(alpha, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    except (TypeError, ValueError) as e:
        raise ValueError(f"alpha must be a number in (0, 2], got {alpha!r}") from e
    if np.isnan(arr).any() or (arr <= 0).any() or (arr > 2).any():
        raise ValueError(f"alpha must be in (0, 2] (the stable tail index), got {alpha!r}")


def symmetric_stable(key: jax.Array, alpha: Any, shape: tuple[int, ...]) -> jax.Array:
    """IID standard symmetric alpha-stable float32 draws, E exp(iuS) = exp(-|u|^alpha).

    Chambers, Mallows & Stuck (1976), skewness 0: with V ~ U(-pi/2, pi/2) and
    W ~ Exp(1) independent::

        S = sin(alpha V) / cos(V)^(1/alpha) * (cos((1 - alpha) V) / W)^((1 - alpha) / alpha)

    exact for every alpha in (0, 2]: alpha = 1 gives tan V (standard Cauchy),
    alpha = 2 gives 2 sin(V) sqrt(W) ~ N(0, 2). Evaluated as sign(V) exp(log|S|)
    so that no factor overflows on its own (for small alpha, cos(V)^(1/alpha)
    underflows long before S does); only draws whose true value exceeds the
    float32 range (possible for alpha below ~0.3) come out as +-inf.
    ``alpha`` (in (0, 2]) may be a traced scalar.
    """
    _check_alpha(alpha)
    alpha = jnp.asarray(alpha, jnp.float32)
    k_v, k_w = jax.random.split(key)
    v = (jax.random.uniform(k_v, shape, jnp.float32) - 0.5) * jnp.float32(np.pi)
    v = jnp.clip(v, -_HALF_PI_BELOW, _HALF_PI_BELOW)
    # u in [tiny, 1): W = -log u > 0, so log W is finite (alpha = 1 multiplies it by 0)
    w = -jnp.log(jax.random.uniform(k_w, shape, jnp.float32, minval=np.finfo(np.float32).tiny))
    inv = 1.0 / alpha
    log_abs = (
        jnp.log(jnp.abs(jnp.sin(alpha * v)))
        - inv * jnp.log(jnp.cos(v))
        + (1.0 - alpha) * inv * (jnp.log(jnp.cos((1.0 - alpha) * v)) - jnp.log(w))
    )
    return jnp.sign(v) * jnp.exp(log_abs)


def _stable_log_snr(alpha: Any) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """``(g, xi, snr) -> (log snr_hat, D_nonzero)``: the scale-convention SNR of one group.

    For xi_i = c S_i with S_i standard symmetric alpha-stable,
    E log|S| = C_e (1/alpha - 1) (C_e Euler's constant; Zolotarev 1986, Kuruoglu
    2001) and Var log|S| = (pi^2 / 12)(2 / alpha^2 + 1), so
    log c_hat = mean_i log|xi_i| - C_e (1/alpha - 1) estimates log c without bias
    and log snr_hat = log(||g||^2 / (2 D c_hat^2)) estimates log snr without
    bias, standard error 2 sqrt(Var log|S| / D). Exact zeros (c = 0: nothing
    added) are left out; the weight is the number of entries used.
    """

    def log_snr(g, xi, value):
        del value
        a = jnp.abs(xi.astype(jnp.float32))
        nz = a > 0
        k = jnp.sum(nz).astype(jnp.float32)
        mean_log = jnp.sum(jnp.where(nz, jnp.log(jnp.where(nz, a, 1.0)), 0.0)) / jnp.maximum(k, 1.0)
        log_c = mean_log - _EULER * (1.0 / jnp.asarray(alpha, jnp.float32) - 1.0)
        g2 = _sqnorm([g])
        out = jnp.log(_safe(g2)) - jnp.log(2.0 * xi.size) - 2.0 * log_c
        return jnp.where(k > 0, out, 0.0), k

    return log_snr


def heavy_tailed(
    snr: optax.ScalarOrSchedule,
    key: Any,
    *,
    alpha: Any = 1.5,
    scope: str = "global",
) -> optax.GradientTransformation:
    """Symmetric alpha-stable noise: the heavy-tailed gradient-noise model.

    Simsekli, Sagun & Gurbuzbalaban (2019), "A tail-index analysis of stochastic
    gradient noise in deep neural networks". Every coordinate gets::

        xi_i = c S_i,   S_i iid standard symmetric alpha-stable,
        E exp(i u S) = exp(-|u|^alpha),   c = ||g|| / sqrt(2 D snr)

    drawn exactly (:func:`symmetric_stable`, Chambers-Mallows-Stuck). ``D`` and
    ``||g||`` are over the whole pytree (``scope='global'``) or per leaf
    (``scope='per_leaf'``, one c per leaf).

    **What snr means.** At alpha = 2, S ~ N(0, 2), so xi ~ N(0, ||g||^2/(D snr) I):
    the transform *is* :func:`isotropic` in distribution and snr is the power
    ratio ||g||^2 / E||xi||^2. For alpha < 2, E S^2 = inf: the noise has no
    power, and snr is a **scale** ratio, snr = ||g||^2 / (2 D c^2), the power SNR
    that Gaussian noise of the same scale c would have. Lower alpha = heavier
    tails at the same scale (alpha = 1: Cauchy).

    **Realized SNR** (:func:`diagnostics`) is on the same scale convention, for
    every alpha: ||g||^2 / (2 D c_hat^2), with c_hat the log-moment estimate
    of the scale of the noise drawn, log c_hat = mean_i log|xi_i| - C_e (1/alpha - 1)
    (C_e Euler's constant; E log|S| = C_e (1/alpha - 1)); with
    ``scope='per_leaf'`` the per-leaf values are averaged in log, weighted by
    leaf size. Its log is unbiased for log snr with standard error
    2 sqrt((pi^2/12)(2/alpha^2 + 1) / D). (The power ratio
    ||g||^2/||xi||^2 would be meaningless for alpha < 2: it falls like
    D^(1 - 2/alpha) as the model grows.) The recorded angle is the actual angle
    between g and g + xi.

    ``alpha`` may be a jax array, e.g. traced under ``vmap`` over a grid of
    tail indices; only values known at construction are checked. For alpha
    below ~0.3 single draws can exceed the float32 range (see
    :func:`symmetric_stable`). Zero gradient and snr = inf add nothing.

    Args:
      snr: scale SNR > 0 (power SNR at alpha = 2): float, array or schedule; inf = off.
      key: int seed or PRNG key.
      alpha: tail index in (0, 2].
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_alpha(alpha)
    _check_choice(scope, "scope", SCOPES)

    def draw(g, value, key):
        sizes = [math.prod(x.shape) for x in g]
        d = sum(sizes)
        c = jnp.sqrt(_sqnorm(g) / (2.0 * d * value))
        s = symmetric_stable(key, alpha, (d,))
        # c = 0 (zero gradient, snr = inf) must give exact zeros even where S is +-inf
        flat = jnp.where(c > 0, c * s, 0.0)
        out, start = [], 0
        for x, size in zip(g, sizes):
            out.append(flat[start : start + size].reshape(x.shape))
            start += size
        return out

    return _make_transform(draw, snr, key, scope, group_log_snr=_stable_log_snr(alpha))


# ---------------------------------------------------------------------------
# anti-correlated (Anti-PGD) noise
# ---------------------------------------------------------------------------


class AnticorrelatedState(NamedTuple):
    """State of :func:`anticorrelated`: :class:`NoiseState`'s fields plus z_{t-1}.

    Attributes:
      count, key, realized_snr, angle: as in :class:`NoiseState`.
      z_prev: float32 pytree shaped like the params, the previous standard
        normal draw z_{t-1} (z_{-1} drawn at ``init``).
    """

    count: jax.Array
    key: jax.Array
    realized_snr: jax.Array
    angle: jax.Array
    z_prev: Any


def _fresh_anticorrelated(key: jax.Array, like: Any) -> tuple[jax.Array, Any]:
    """(state key, z_{-1} ~ N(0, I) shaped like ``like``) from one key.

    Used by ``init`` and by :func:`reseed`, so a re-keyed population member gets
    its own z_{-1} too.
    """
    k_state, k_z = jax.random.split(key)
    leaves, treedef = jax.tree.flatten(like)
    z = _normal_like(k_z, leaves)
    return k_state, jax.tree.unflatten(treedef, z)


def anticorrelated(snr: optax.ScalarOrSchedule, key: Any, *, scope: str = "global") -> optax.GradientTransformation:
    """Anti-correlated perturbations (Anti-PGD) at a given power SNR.

    Orvieto, Kersting, Proske, Bach & Lucchi (2022), "Anticorrelated noise
    injection for improved generalization"::

        n_t = s_t (z_t - z_{t-1}),   z_t iid N(0, I_D),   s_t^2 = ||g_t||^2 / (2 D snr_t)

    so E||n_t||^2 = ||g_t||^2 / snr_t (the :func:`isotropic` power convention)
    and consecutive perturbations are anti-correlated: per coordinate
    corr(n_t, n_{t-1}) = -1/2 and corr(n_t, n_{t-k}) = 0 for k >= 2. With a
    constant s the sum telescopes, sum_{t<T} n_t = s (z_{T-1} - z_{-1}): the
    accumulated perturbation stays O(s sqrt(D)) instead of growing like a
    random walk's s sqrt(2 D T). When s_t varies (it follows ||g_t||) the sum
    is s_t-weighted and telescopes only approximately; the form keeps the
    per-step SNR exact, which is what the SNR grid compares. Orvieto et al.
    perturb the *iterate*; placed after the optimizer (update position) with
    SGD this is their Anti-PGD, placed first it perturbs the gradient.

    The state (:class:`AnticorrelatedState`) carries z_{t-1} (a float32 pytree
    like the params; z_{-1} is drawn at ``init``). ``scope='per_leaf'`` uses one
    s per leaf. Zero gradient and snr = inf add nothing (z still advances).
    :func:`diagnostics`, :func:`reseed` and :func:`population_init` know this
    state; reseeding redraws z_{-1} from the new key.

    Args:
      snr: power SNR > 0 (float, array, or schedule ``count -> snr``); inf = off.
      key: int seed or PRNG key.
      scope: ``'global'`` or ``'per_leaf'``.
    """
    _check_level(snr, "snr", allow_zero=False)
    _check_choice(scope, "scope", SCOPES)
    key = _canonicalize_key(key)

    def init_fn(params):
        k_state, z_prev = _fresh_anticorrelated(key, params)
        return AnticorrelatedState(
            count=jnp.zeros([], jnp.int32),
            key=k_state,
            realized_snr=jnp.asarray(jnp.inf, jnp.float32),
            angle=jnp.zeros([], jnp.float32),
            z_prev=z_prev,
        )

    def update_fn(updates, state, params=None):
        del params
        value = _resolve(snr, state.count)
        leaves, treedef = jax.tree.flatten(updates)
        z_leaves, z_treedef = jax.tree.flatten(state.z_prev)
        next_key, sample_key = jax.random.split(state.key)
        g_flat = _ravel(leaves)
        z_prev = _ravel(z_leaves)
        z_new = jax.random.normal(sample_key, g_flat.shape, jnp.float32)
        dz = z_new - z_prev
        sizes = [math.prod(x.shape) for x in leaves]
        offsets = np.cumsum([0] + sizes)
        parts = []
        for idx in _groups(len(leaves), scope):
            lo, hi = offsets[idx[0]], offsets[idx[-1] + 1]
            g = g_flat[lo:hi]
            s = jnp.sqrt(_sqnorm([g]) / (2.0 * (hi - lo) * value))
            parts.append(g + s * dz[lo:hi])
        o_flat = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        no_noise = jnp.isinf(value) & (value > 0)
        o_flat = jnp.where(no_noise, g_flat, o_flat)
        out = [
            jnp.where(no_noise, x, o_flat[offsets[i] : offsets[i + 1]].reshape(x.shape).astype(x.dtype))
            for i, x in enumerate(leaves)
        ]
        realized, angle = _realized([g_flat], [o_flat])
        z_out = [z_new[offsets[i] : offsets[i + 1]].reshape(z.shape) for i, z in enumerate(z_leaves)]
        new_state = AnticorrelatedState(
            count=optax.safe_increment(state.count),
            key=next_key,
            realized_snr=realized,
            angle=angle,
            z_prev=jax.tree.unflatten(z_treedef, z_out),
        )
        return jax.tree.unflatten(treedef, out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------
# finding and re-keying noise states inside any optimizer state
# ---------------------------------------------------------------------------


def _is_noise_state(x: Any) -> bool:
    return isinstance(x, (NoiseState, AnticorrelatedState))


def _noise_states(opt_state: Any) -> list[NoiseState]:
    return [s for s in jax.tree.leaves(opt_state, is_leaf=_is_noise_state) if _is_noise_state(s)]


def diagnostics(opt_state: Any) -> tuple[NoiseDiagnostics, ...]:
    """Realized SNR and angle of every noise transform inside ``opt_state``.

    Works on any chain / wrapper state (the search walks the pytree), in the
    order the transforms appear. An empty tuple means no noise transform.
    Under a population (vmapped state) each field carries the member axis.
    """
    return tuple(NoiseDiagnostics(s.realized_snr, s.angle) for s in _noise_states(opt_state))


def reseed(opt_state: Any, key: Any) -> Any:
    """Replace the key of every noise transform in ``opt_state``.

    The i-th noise state found gets ``fold_in(key, i)``, so two noise transforms
    in one chain stay independent (an :class:`AnticorrelatedState` also redraws
    its z_{-1} from that key). Use it per member, under ``vmap``::

        states = jax.vmap(reseed)(jax.vmap(tx.init)(params), member_keys)
    """
    key = _canonicalize_key(key)
    counter = iter(range(1 << 30))

    def swap(x):
        if isinstance(x, AnticorrelatedState):
            k_state, z_prev = _fresh_anticorrelated(jax.random.fold_in(key, next(counter)), x.z_prev)
            return x._replace(key=k_state, z_prev=z_prev)
        if _is_noise_state(x):
            return x._replace(key=jax.random.fold_in(key, next(counter)))
        return x

    return jax.tree.map(swap, opt_state, is_leaf=_is_noise_state)


def population_init(tx: optax.GradientTransformation, params: Any, keys: jax.Array) -> Any:
    """``vmap(tx.init)`` over a population, each member with its own noise key.

    Args:
      tx: any transformation (chain) that may contain noise transforms.
      params: pytree with a leading population axis of size P.
      keys: P PRNG keys (typed ``(P,)`` or raw ``(P, 2)``), one per member.
    """
    keys = _canonicalize_key(keys, "keys")
    return jax.vmap(reseed)(jax.vmap(tx.init)(params), keys)


def check_independent_keys(opt_state: Any) -> None:
    """Raise ``ValueError`` if population members share a noise key.

    ``opt_state`` is a population state (leading member axis). A host-side
    check, for use right after initialisation.
    """
    for i, s in enumerate(_noise_states(opt_state)):
        data = np.asarray(jax.random.key_data(s.key))
        if data.ndim < 2:
            continue  # a single model, nothing to compare
        flat = data.reshape(data.shape[0], -1)
        if len(np.unique(flat, axis=0)) < flat.shape[0]:
            raise ValueError(
                f"noise transform #{i}: population members share a PRNG key "
                "(vmap(tx.init) copies the constructor key); use "
                "ib_jax.noise.population_init or reseed"
            )
