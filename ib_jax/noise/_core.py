"""The shared core of the noise transforms: their state, the re-key protocol, the skeleton.

Gradient-noise injection as composable optax transforms.

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
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["NoiseState", "NoiseDiagnostics", "RekeyableNoiseState", "is_noise_state", "SCOPES", "CONE_MODES"]

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

    def rekey(self, key: jax.Array) -> NoiseState:
        """This state with a new key (:func:`ib_jax.noise.reseed`)."""
        return self._replace(key=key)


class NoiseDiagnostics(NamedTuple):
    """What one noise transform did on its last step (see :class:`NoiseState`)."""

    realized_snr: jax.Array
    angle: jax.Array


@runtime_checkable
class RekeyableNoiseState(Protocol):
    """What a noise transform's state offers the population code (:mod:`ib_jax.noise.state`).

    Any state with these fields and a ``rekey(key) -> state`` method is found by
    :func:`ib_jax.noise.diagnostics`, re-keyed per member by :func:`ib_jax.noise.reseed` /
    :func:`ib_jax.noise.population_init` and checked by :func:`ib_jax.noise.check_independent_keys`,
    so a new stateful kind (one that carries more than a key, like :class:`AnticorrelatedState`)
    needs no edit anywhere else: it redraws whatever depends on the key inside ``rekey``.
    """

    key: jax.Array
    realized_snr: jax.Array
    angle: jax.Array

    def rekey(self, key: jax.Array) -> Any: ...


def is_noise_state(x: Any) -> bool:
    """A noise transform's state: a NamedTuple following :class:`RekeyableNoiseState`."""
    return isinstance(x, tuple) and hasattr(x, "_fields") and isinstance(x, RekeyableNoiseState)


def concrete(value: Any, name: str) -> np.ndarray | None:
    """``value`` as float64 numpy if known now; None when traced (cannot be checked)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a number, got {value!r}") from e


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
