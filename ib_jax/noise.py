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
  ``scope``. :func:`diagnostics` finds them inside any chain.
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
      realized_snr: float32 scalar, ``||g||^2 / ||out - g||^2`` of the last step.
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
) -> optax.GradientTransformation:
    """Shared skeleton: resolve the level, split keys per group, add noise.

    ``draw(g_group, level, key) -> noise_group`` returns float32 noise for one
    group of leaves (a whole pytree, or one leaf with ``scope='per_leaf'``).
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
        for gi, idx in enumerate(groups):
            g = g_flat[offsets[idx[0]] : offsets[idx[-1] + 1]]
            o = g + draw([g], value, group_keys[gi])[0]
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
# finding and re-keying noise states inside any optimizer state
# ---------------------------------------------------------------------------


def _is_noise_state(x: Any) -> bool:
    return isinstance(x, NoiseState)


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
    in one chain stay independent. Use it per member, under ``vmap``::

        states = jax.vmap(reseed)(jax.vmap(tx.init)(params), member_keys)
    """
    key = _canonicalize_key(key)
    counter = iter(range(1 << 30))

    def swap(x):
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
