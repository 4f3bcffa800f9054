"""Exact pattern counting: the engine under the binning and exact estimators, in bits.

Exact counting, jit-able with static shapes
-------------------------------------------
The bin codes of a row are first packed exactly into W uint32 words
(``ceil(log2(n_bins+1))`` bits per unit), so equal rows <=> equal words.

* If a row fits one word together with its label, that word *is* the sort
  key: one sort, run lengths, done (exact, no hashing).
* Otherwise the words are hashed, and one 32-bit key per row is laid out as
  [hash | label | row index]. A single-operand sort (XLA's fast path on CPU;
  multi-operand sorts, argsort and searchsorted were measured 6-10x slower)
  gives both the groups and, from the low bits, the permutation. Each run's
  first row is its representative and every row is compared with it **word by
  word**: a row that differs is a hash collision and is left for another
  round with a new hash (while more than ``_FALLBACK`` remain; each round
  resolves at least one pattern per run, so this terminates); the last few
  are counted by exact pairwise comparison. The counts are exact whatever the
  hash does.

Entropy from per-row counts: sum_groups c log c = sum_rows log c_row, so
H = log2 n - mean_i log2 c_i, with c_i the number of rows equal to row i.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax.estimators._common import check_rank, check_same_length

__all__ = ["information_from_codes", "miller_madow_correction", "host_sort", "sort_u32", "pack_codes"]

_FALLBACK = 64  # rows resolved by exact pairwise comparison
_SEED = 0x1B873593


def _y_bits(n_classes):
    return max(1, int(np.ceil(np.log2(max(n_classes, 2)))))


def _fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _pack(codes, n_bins):
    """Exact, injective packing of bin codes (0..n_bins) into uint32 words ``(n, W)``.

    ``bits = ceil(log2(n_bins + 1))`` per unit, ``32 // bits`` units per word.
    Rows are equal iff their packed words are equal, so comparing W words is
    an exact content comparison at a fraction of the gather cost of d codes.
    """
    n, d = codes.shape
    bits = max(1, int(np.ceil(np.log2(n_bins + 1))))
    per_word = 32 // bits
    n_words = -(-d // per_word)
    # column by column (static slices): fuses with the binning into one pass over t,
    # ~2x faster than a padded reshape-and-sum, which materializes the padded codes
    words = []
    for w in range(n_words):
        acc = jnp.zeros((n,), jnp.uint32)
        for j, u in enumerate(range(w * per_word, min(d, (w + 1) * per_word))):
            acc = acc | (codes[:, u].astype(jnp.uint32) << jnp.uint32(bits * j))
        words.append(acc)
    return jnp.stack(words, axis=-1), bits * min(d, per_word)


def _hash_words(words, round_):
    key = jax.random.fold_in(jax.random.key(_SEED), round_)
    mult = jax.random.bits(key, (words.shape[-1],), jnp.uint32) | jnp.uint32(1)
    h = jnp.sum(_fmix32(words ^ mult) * mult, axis=-1, dtype=jnp.uint32)
    return _fmix32(h + round_.astype(jnp.uint32) * jnp.uint32(0x9E3779B9))


def _run_starts(boundary):
    """Index of the first element of each element's run (boundary[p]: p starts a run)."""
    pos = jnp.arange(boundary.shape[0])
    return jax.lax.associative_scan(jnp.maximum, jnp.where(boundary, pos, 0))


def _segmented_cumsum(boundary, w):
    """Running sum of ``w`` restarting at every run boundary (one associative scan)."""

    def combine(a, b):
        fa, va = a
        fb, vb = b
        return fa | fb, jnp.where(fb, vb, va + vb)

    return jax.lax.associative_scan(combine, (boundary, w))[1]


def _sum_log_runs(boundary, weight):
    """sum_runs c log2 c, c the summed ``weight`` of each run (``boundary[p]``: p starts a run)."""
    last = jnp.concatenate([boundary[1:], jnp.ones(1, bool)])
    c = _segmented_cumsum(boundary, weight.astype(jnp.float32))
    return jnp.sum(jnp.where(last & (c > 0), c * jnp.log2(jnp.maximum(c, 1.0)), 0.0))


def _sum_log_counts(s_key, group_shift, weight):
    """sum_runs c log2 c, c the weighted size of each run of equal ``s_key >> group_shift``.

    Equals sum_p weight_p log2(c of p's run): the per-row form of sum_t c log c.
    """
    g = s_key >> jnp.uint32(group_shift)
    boundary = jnp.concatenate([jnp.ones(1, bool), g[1:] != g[:-1]])
    return _sum_log_runs(boundary, weight), boundary


# Sorting is the cost of exact counting. XLA's CPU sort calls a compiled comparator
# (~95 us for 4,096 uint32 keys, measured), numpy's vectorized sort takes ~7 us. Inside
# `host_sort()` the sort runs on the host through a pure callback (one call per vmapped
# batch) when the program is lowered for one CPU device; other platforms (GPU radix sort)
# always use XLA's own. Same values either way. Not the default: JAX does not write
# programs with host callbacks to its persistent compilation cache, and on CPU a
# training job's compile time is worth more than its evaluation sorts.
_HOST_SORT = [False]


@contextlib.contextmanager
def host_sort(enabled: bool = True):
    """Within this context, estimators traced on one CPU device sort on the host (numpy).

    For offline estimation over many snapshots (re-estimation, benchmarks): ~10x faster
    sorts on CPU, identical results. Read when a function is traced: a function jitted
    before entering keeps its sort. Programs that use it are not persistently cached.
    """
    previous = _HOST_SORT[0]
    _HOST_SORT[0] = bool(enabled)
    try:
        yield
    finally:
        _HOST_SORT[0] = previous


def _host_sort(x):
    return np.sort(np.asarray(x), axis=-1)


def _host_sort_pairs(hi, lo):
    key = np.sort((np.asarray(hi, np.uint64) << np.uint64(32)) | np.asarray(lo, np.uint64), axis=-1)
    return (key >> np.uint64(32)).astype(np.uint32), (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _callback_sort(x):
    return jax.pure_callback(_host_sort, jax.ShapeDtypeStruct(x.shape, x.dtype), x, vmap_method="expand_dims")


def _callback_sort_pairs(hi, lo):
    shape = jax.ShapeDtypeStruct(hi.shape, jnp.uint32)
    return tuple(jax.pure_callback(_host_sort_pairs, (shape, shape), hi, lo, vmap_method="expand_dims"))


def _xla_sort(x):
    return jnp.sort(x, axis=-1)


def _xla_sort_pairs(hi, lo):
    return tuple(jax.lax.sort((hi, lo), dimension=-1, num_keys=2))


def _host_sort_ok():
    # one device only: with several (e.g. a population sharded over forced host devices)
    # a host callback inside the SPMD program stalls the devices' collectives (measured:
    # an all-reduce rendezvous timeout), so those programs keep XLA's sort
    return _HOST_SORT[0] and jax.device_count() == 1


def _sort_u32(x):
    """``x`` (uint32) sorted along the last axis (host sort on one CPU device, XLA's elsewhere)."""
    if not _host_sort_ok():
        return _xla_sort(x)
    return jax.lax.platform_dependent(x, cpu=_callback_sort, default=_xla_sort)


def _sort_u32_pairs(hi, lo):
    """uint32 pairs sorted lexicographically (hi first) along the last axis."""
    if not _host_sort_ok():
        return _xla_sort_pairs(hi, lo)
    return jax.lax.platform_dependent(hi, lo, cpu=_callback_sort_pairs, default=_xla_sort_pairs)


def _pair_sum_logs(hi, lo, t_mask):
    """Two-word path: rows keyed exactly by (hi, lo), one pair sort.

    ``lo & t_mask`` is the part of ``lo`` that belongs to the pattern T (the rest
    is the label): T-runs compare (hi, lo & t_mask), (T, Y)-runs all of it.
    """
    s_hi, s_lo = _sort_u32_pairs(hi, lo)
    t_mask = jnp.uint32(t_mask)
    same_t = (s_hi[1:] == s_hi[:-1]) & ((s_lo[1:] & t_mask) == (s_lo[:-1] & t_mask))
    head = jnp.ones(1, bool)
    ones = jnp.ones(s_hi.shape, bool)
    log_t = _sum_log_runs(jnp.concatenate([head, ~same_t]), ones)
    log_ty = _sum_log_runs(jnp.concatenate([head, ~(same_t & (s_lo[1:] == s_lo[:-1]))]), ones)
    return log_t, log_ty


def _exact_sum_logs(words, yv, y_bits, code_bits):
    """Fast path: a row fits one word with its label, so the packed code is an exact sort key."""
    key = (words[:, 0] << jnp.uint32(y_bits)) | yv if y_bits else words[:, 0]
    s = _sort_u32(key)
    ones = jnp.ones(s.shape, bool)
    log_t, _ = _sum_log_counts(s, y_bits, ones)
    log_ty, _ = _sum_log_counts(s, 0, ones)
    return log_t, log_ty


def _hashed_sum_logs(words, yv, y_bits):
    """General path: hashed keys with the row index in the low bits, checked exactly.

    Key layout (32 bits): [hash | label | row index]. The sorted keys give the
    permutation for free; each run's first row is the representative and every
    row is compared word by word with it. Rows that differ (hash collisions)
    stay active for another round with a new hash; the last <= _FALLBACK are
    counted by exact pairwise comparison.
    """
    n = words.shape[0]
    b = max(1, int(np.ceil(np.log2(n))))
    hash_bits = 32 - b - y_bits
    if hash_bits < 4:
        raise ValueError(f"n={n} rows with {y_bits} label bits leave {hash_bits} hash bits; at most 2**26 rows supported")
    idx = jnp.arange(n, dtype=jnp.uint32)
    idx_mask = jnp.uint32((1 << b) - 1)

    def one_round(carry):
        active, log_t, log_ty, round_ = carry
        h = _hash_words(words, round_) >> jnp.uint32(32 - hash_bits)
        h = jnp.where(active, h, jnp.uint32((1 << hash_bits) - 1))
        key = (h << jnp.uint32(b + y_bits)) | (yv << jnp.uint32(b)) | idx
        s = _sort_u32(key)
        perm = (s & idx_mask).astype(jnp.int32)
        g = s >> jnp.uint32(b + y_bits)
        boundary = jnp.concatenate([jnp.ones(1, bool), g[1:] != g[:-1]])
        start = _run_starts(boundary)
        rows = words[perm]
        rep_active = active[perm][start]
        match = active[perm] & rep_active & jnp.all(rows == rows[start], axis=-1)
        lt, _ = _sum_log_counts(s, b + y_bits, match)
        lty, _ = _sum_log_counts(s, b, match)
        still = jnp.zeros(n, bool).at[perm].set(active[perm] & ~match)
        return still, log_t + lt, log_ty + lty, round_ + 1

    zero = jnp.zeros([], jnp.float32)
    carry = one_round((jnp.ones(n, bool), zero, zero, jnp.int32(0)))
    carry = jax.lax.while_loop(lambda c: jnp.sum(c[0]) > _FALLBACK, one_round, carry)
    active, log_t, log_ty, _ = carry

    # the last few colliding rows: exact pairwise comparison
    k = min(_FALLBACK, n)
    slot = jnp.where(active, jnp.cumsum(active) - 1, k)
    sel = jnp.full(k, n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    ok = sel < n
    safe = jnp.minimum(sel, n - 1)
    sub = words[safe]
    eq = jnp.all(sub[:, None, :] == sub[None, :, :], axis=-1) & ok[:, None] & ok[None, :]
    eq_y = eq & (yv[safe][:, None] == yv[safe][None, :])
    log_t += jnp.sum(jnp.where(ok, jnp.log2(jnp.maximum(jnp.sum(eq, 1), 1).astype(jnp.float32)), 0.0))
    log_ty += jnp.sum(jnp.where(ok, jnp.log2(jnp.maximum(jnp.sum(eq_y, 1), 1).astype(jnp.float32)), 0.0))
    return log_t, log_ty


def _sum_log_pattern_counts(codes, n_bins, y, y_bits):
    """(sum_i log2 c_t[i], sum_i log2 c_ty[i]) with exact counts of equal rows (and labels)."""
    words, code_bits = _pack(codes, n_bins)
    yv = y.astype(jnp.uint32) if y is not None else jnp.zeros(codes.shape[0], jnp.uint32)
    n_words = words.shape[-1]
    if n_words == 1 and code_bits + y_bits <= 32:
        return _exact_sum_logs(words, yv, y_bits, code_bits)
    if not _host_sort_ok():
        # XLA's two-key sort is ~5x its one-key sort on CPU: the hashed path is faster there
        return _hashed_sum_logs(words, yv, y_bits)
    if n_words == 1:  # the label does not fit beside the code: it becomes the second word
        return _pair_sum_logs(words[:, 0], yv, 0)
    bits = max(1, int(np.ceil(np.log2(n_bins + 1))))
    if n_words == 2 and bits * (codes.shape[1] - 32 // bits) + y_bits <= 32:
        lo = (words[:, 1] << jnp.uint32(y_bits)) | yv
        return _pair_sum_logs(words[:, 0], lo, (0xFFFFFFFF << y_bits) & 0xFFFFFFFF)
    return _hashed_sum_logs(words, yv, y_bits)


def _entropy_from_sum_logs(sum_log, n):
    """H = log2 n - (1/n) sum_i log2 c_i (bits)."""
    return jnp.log2(jnp.float32(n)) - sum_log / n


def _label_entropy(y, n_classes):
    p = jnp.bincount(y, length=n_classes) / y.shape[0]
    return -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0))


def _labels(t, y, n_classes):
    check_rank(y, 1, "y")
    check_same_length(t, y, "t", "y")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    if n_classes is None:
        try:
            n_classes = int(np.max(np.asarray(y))) + 1
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            raise ValueError("pass n_classes (a static int) when y is traced (under jit or vmap)") from None
    if n_classes < 1 or n_classes > 1 << 16:
        raise ValueError(f"n_classes must be in [1, 65536], got {n_classes}")
    in_range = jnp.all((y >= 0) & (y < n_classes))
    return y, n_classes, in_range


def miller_madow_correction(m, n):
    """Miller-Madow bias correction of a plug-in entropy, in bits: (m - 1) / (2 n ln 2).

    Miller (1955): for n iid draws of a discrete distribution, E[H_plugin] =
    H - (m - 1) / (2 n) nats + O(n^-2), m the number of symbols with nonzero
    probability; the occupied count stands in for m.
    """
    return (jnp.asarray(m, jnp.float32) - 1.0) / (2.0 * n * np.log(2.0))


def _count_distinct_rows(codes, n_bins, y):
    """(distinct rows of ``codes``, distinct rows of (codes, y)): one lexicographic sort of the packed words.

    Exact (packed words are an injective encoding). A multi-key sort is several
    times slower than the single-key sort of the counting path: used only for
    Miller-Madow.
    """
    words, _ = _pack(codes, n_bins)
    keys = ([] if y is None else [y.astype(jnp.uint32)]) + [words[:, w] for w in range(words.shape[1] - 1, -1, -1)]
    perm = jnp.lexsort(keys)  # last key is the primary one: rows by (word 0, word 1, ..., label)
    sw = words[perm]
    new_t = jnp.any(sw[1:] != sw[:-1], axis=-1)
    m_t = 1 + jnp.sum(new_t)
    if y is None:
        return m_t, m_t
    sy = y[perm]
    m_ty = 1 + jnp.sum(new_t | (sy[1:] != sy[:-1]))
    return m_t, m_ty


def information_from_codes(codes, y=None, *, n_codes, n_classes=None, miller_madow=False):
    """H(T), I(X;T), H(X|T) (and with labels I(T;Y)) in bits from integer codes, by exact pattern counting.

    The counting path of :func:`binned_information`, for callers that make
    their own discrete symbols (e.g. quantized activations,
    :func:`ib_jax.estimators.exact.exact_information`).

    Args:
      codes: ``(n, d)`` integers in ``[1, n_codes]`` for real units, 0 for
        padded units (so padding never changes a pattern).
      y: optional ``(n,)`` integer labels.
      n_codes: static number of code values per unit (the packing width).
      n_classes: static number of classes (inferred when y is concrete).
      miller_madow: as in :func:`binned_information`.

    Returns:
      the dict of :func:`binned_information` (NaN if a label is out of range).
    """
    check_rank(codes, 2, "codes")
    if not isinstance(n_codes, (int, np.integer)) or n_codes < 1:
        raise ValueError(f"n_codes must be an int >= 1, got {n_codes!r}")
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    n = codes.shape[0]
    log_n = jnp.log2(jnp.float32(n))
    codes = codes.astype(jnp.int32)
    if y is None:
        log_t, _ = _sum_log_pattern_counts(codes, n_codes, None, 0)
        h_t = _entropy_from_sum_logs(log_t, n)
        extra = {}
        if miller_madow:
            m_t, _ = _count_distinct_rows(codes, n_codes, None)
            h_t = h_t + miller_madow_correction(m_t, n)
            extra = {"n_patterns_t": m_t.astype(jnp.float32)}
        return {"h_t": h_t, "i_xt": h_t, "h_x_given_t": log_n - h_t, **extra}
    y, n_classes, in_range = _labels(codes, y, n_classes)
    log_t, log_ty = _sum_log_pattern_counts(codes, n_codes, y, _y_bits(n_classes))
    h_t = _entropy_from_sum_logs(log_t, n)
    h_ty = _entropy_from_sum_logs(log_ty, n)
    h_y = _label_entropy(y, n_classes)
    extra = {}
    if miller_madow:
        m_t, m_ty = _count_distinct_rows(codes, n_codes, y)
        m_y = jnp.sum(jnp.bincount(y, length=n_classes) > 0)
        h_t = h_t + miller_madow_correction(m_t, n)
        h_ty = h_ty + miller_madow_correction(m_ty, n)
        h_y = h_y + miller_madow_correction(m_y, n)
        extra = {"n_patterns_t": m_t.astype(jnp.float32), "n_patterns_ty": m_ty.astype(jnp.float32)}
    out = {"h_t": h_t, "i_xt": h_t, "h_x_given_t": log_n - h_t, "h_y": h_y, "h_ty": h_ty, "i_ty": h_t + h_y - h_ty, **extra}
    return {k: jnp.where(in_range, v, jnp.nan) for k, v in out.items()}


# the names other estimators use (kNN's cell search sorts with the same fast path)
sort_u32 = _sort_u32
pack_codes = _pack
