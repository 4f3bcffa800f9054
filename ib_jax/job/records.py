"""Durable, honest records of a job: fixed config, atomic files, strict JSON.

A job directory is the record of one experiment. The functions here make every
file in it either complete or absent, readable by any standard JSON parser, and
tied to the configuration that produced it.

**Strict JSON convention** (:func:`dumps_strict` / :func:`loads_strict`).
Python's :mod:`json` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default;
these are not JSON (RFC 8259) and strict parsers (JavaScript's ``JSON.parse``,
Go, Rust's serde_json, jq) reject the whole file. Here:

* a float NaN is written as ``null`` (a missing number: a diverged loss, an
  undefined estimate);
* ``+inf`` / ``-inf`` are written as the strings ``"inf"`` / ``"-inf"`` (the
  noise-free level ``snr = inf`` is a real setting, not a missing value);
* every other float is written with Python's shortest round-trip ``repr``, so
  ``0.1`` is written as ``0.1`` and reads back as the same double;
* numpy scalars and arrays are converted exactly (``float(np.float32(x))`` is the
  float32 value itself, as a double). A setting that went through float32 (a
  member's level, say) is written as the shortest decimal of its float32 value
  with :func:`exact_float` (``np.float32(0.1)`` -> ``0.1``); computed metrics are
  not rounded;
* the strings ``"inf"`` and ``"-inf"`` are reserved: writing them as string
  values raises (they would read back as floats).

:func:`loads_strict` maps ``"inf"`` / ``"-inf"`` back to floats everywhere and
``null`` to ``null=`` (``None`` by default; pass ``math.nan`` for files such as
``metrics.jsonl`` where every null is a NaN number).

**Appends.** :func:`append_jsonl` writes all rows in one ``write`` and ``fsync``;
if anything fails midway (``ENOSPC``, an exception raised by a signal handler)
the file is cut back to its size before the append, so a full disk never leaves
a torn line. A crash (SIGKILL, power loss) can still leave a partial last line;
:func:`read_jsonl` detects it and cuts it off with a warning.

Orbax checkpoints and their fallback past a corrupted one: :mod:`ib_jax.job.checkpoints`.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "INF",
    "NEG_INF",
    "dumps_strict",
    "loads_strict",
    "canonical_json",
    "exact_float",
    "atomic_write_text",
    "atomic_write_json",
    "append_jsonl",
    "naming",
    "read_jsonl",
    "truncate_jsonl",
    "drop_keys",
    "config_fingerprint",
    "config_diff",
    "ConfigMismatch",
    "record_or_check_config",
    "CONFIG_FILE",
]

INF = "inf"
NEG_INF = "-inf"
CONFIG_FILE = "job_config.json"


# ------------------------------------------------------------------ strict JSON


def _encode(obj: Any, path: str) -> Any:
    """``obj`` -> a tree of dict/list/str/int/float(finite)/bool/None (the strict convention)."""
    if obj is None or isinstance(obj, (bool, np.bool_)):
        return None if obj is None else bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)  # exact: every float16/32/64 value is a double
        if math.isnan(v):
            return None
        if math.isinf(v):
            return INF if v > 0 else NEG_INF
        return v
    if isinstance(obj, str):
        if obj in (INF, NEG_INF):
            raise ValueError(
                f"{path or 'value'}: the string {obj!r} is reserved for the number {obj} in strict JSON; store the float instead"
            )
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = k if isinstance(k, str) else json.dumps(_encode(k, path))  # json's own rule: keys are strings
            out[key] = _encode(v, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        return _encode(np.asarray(obj).tolist(), path)
    raise TypeError(f"{path or 'value'}: {type(obj).__name__} is not JSON serializable")


def dumps_strict(obj: Any, *, indent: int | None = None, sort_keys: bool = False, separators=None) -> str:
    """Standard JSON (RFC 8259) text of ``obj``: NaN -> ``null``, +-inf -> ``"inf"``/``"-inf"``.

    Floats are written with their shortest round-trip ``repr``; numpy scalars and
    arrays are converted exactly. Raises ``ValueError`` (naming the key path) for
    a string value ``"inf"``/``"-inf"`` and ``TypeError`` for other objects.
    ``allow_nan=False`` makes a NaN/Infinity literal impossible in the output.
    """
    return json.dumps(_encode(obj, ""), allow_nan=False, indent=indent, sort_keys=sort_keys, separators=separators)


def _reject_constant(name: str):
    raise ValueError(f'non-standard JSON constant {name} (strict JSON writes NaN as null and infinities as "inf"/"-inf")')


def _legacy_constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def _decode(obj: Any, null: Any) -> Any:
    if obj is None:
        return null
    if isinstance(obj, str):
        return math.inf if obj == INF else -math.inf if obj == NEG_INF else obj
    if isinstance(obj, dict):
        return {k: _decode(v, null) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, null) for v in obj]
    return obj


def loads_strict(text: str | bytes, *, null: Any = None, allow_constants: bool = False) -> Any:
    """Inverse of :func:`dumps_strict`: ``"inf"``/``"-inf"`` -> floats, ``null`` -> ``null``.

    ``null=math.nan`` for records whose nulls are all missing numbers (metrics rows).
    ``allow_constants=True`` also accepts the ``NaN``/``Infinity`` literals that
    files written before this convention hold; otherwise they raise ``ValueError``.
    """
    parse_constant = _legacy_constant if allow_constants else _reject_constant
    return _decode(json.loads(text, parse_constant=parse_constant), null)


def canonical_json(obj: Any) -> str:
    """One text per value: strict JSON, sorted keys, no spaces, ASCII (the input of :func:`config_fingerprint`)."""
    return json.dumps(_encode(obj, ""), allow_nan=False, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def exact_float(value: Any) -> float:
    """The decimal a setting was given as, from its own precision: ``np.float32(0.1)`` -> ``0.1``.

    A Python float (or float64) is returned unchanged: ``repr`` already writes
    the shortest decimal that reads back as the same double, so a config value
    ``0.1`` is written as ``0.1``. A float32/float16/bfloat16 value (a member's
    level after it went through a float32 array) is mapped to the shortest
    decimal that rounds to the same value *in its own precision*, i.e. what the
    user typed; ``float(np.float32(0.1))`` would give ``0.10000000149011612``.
    Use it for settings, not for computed metrics (those are exact as ``float(x)``).
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"exact_float: expected a number, got {type(value).__name__}")
    if isinstance(value, (int, float, np.integer)):
        return float(value)
    a = np.asarray(value)
    if a.ndim != 0 or not (np.issubdtype(a.dtype, np.floating) or a.dtype.name.startswith(("float", "bfloat"))):
        raise TypeError(f"exact_float: expected a scalar float, got {type(value).__name__} of dtype {a.dtype} and shape {a.shape}")
    v = float(a)
    if a.dtype == np.float64 or not math.isfinite(v):
        return v
    # the first digit count whose correctly rounded decimal maps back to the same value in the value's own dtype
    for digits in range(1, 18):
        c = float(f"{v:.{digits}g}")
        if a.dtype.type(c) == a[()]:
            return c
    return v


# --------------------------------------------------------------- atomic files


def _fsync_dir(directory: str) -> None:
    """Make a rename or a new directory entry durable (POSIX: the entry lives in the directory)."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming(path: str):
    """Re-raise an ``OSError`` that does not name its file (a full disk, EFBIG from ``ulimit -f``,
    a read-only file system) as the same error naming ``path``: every failed write says which."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        named = type(e)(e.errno, e.strerror or str(e), os.fspath(path))
        for note in getattr(e, "__notes__", ()):
            named.add_note(note)
        raise named from e


def atomic_write_text(path: str, text: str) -> None:
    """Write ``path`` so that readers see the old file or the new one, never a mix or a prefix.

    Temp file in the same directory (same file system, so ``os.replace`` is an
    atomic rename), written, fsynced, renamed over ``path``, then the directory
    fsynced so the rename survives a power loss. On failure the temp file is
    removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with naming(path):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; records are meant to be read by others
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    _fsync_dir(directory)


def atomic_write_json(path: str, obj: Any, *, indent: int | None = 1) -> None:
    """:func:`atomic_write_text` of :func:`dumps_strict` (serialized before the file is touched)."""
    atomic_write_text(path, dumps_strict(obj, indent=indent) + "\n")


def append_jsonl(path: str, rows: Iterable[Any]) -> int:
    """Append ``rows`` as strict JSON lines in one write + fsync; all of them or none.

    The rows are serialized first (a bad value raises before the file is
    touched). If the write or fsync fails midway (``OSError`` such as ENOSPC,
    or any exception, e.g. ``SystemExit`` raised by a signal handler), the file
    is truncated back to its size before the append and the error re-raised: a
    full disk never leaves a torn line. Returns the number of bytes appended.
    """
    path = os.fspath(path)
    data = "".join(dumps_strict(r) + "\n" for r in rows).encode("utf-8")
    if not data:
        return 0
    created = not os.path.exists(path)
    with naming(path):
        return _append(path, data, created)


def _append(path: str, data: bytes, created: bool) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)  # a short count is possible when the disk fills up
                view = view[n:]
            os.fsync(fd)
        except BaseException as e:
            try:
                os.ftruncate(fd, size)  # shrinking needs no free space
                os.fsync(fd)
                if created:
                    os.unlink(path)  # leave no file where there was none
            except OSError as e2:
                e.add_note(f"append_jsonl: could not cut {path} back to {size} bytes ({e2}); read_jsonl repairs the torn tail")
            raise
    finally:
        os.close(fd)
    if created:
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return len(data)


def _scan_jsonl(path: str, *, null: Any, allow_constants: bool) -> tuple[list[Any], list[bytes], int, bytes]:
    """(rows, their raw lines, byte length of the complete valid part, torn tail bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    pieces = data.split(b"\n")
    tail = pieces.pop()  # b"" when the file ends with a newline
    rows, lines, good = [], [], 0
    for i, line in enumerate(pieces):
        end = good + len(line) + 1
        if line.strip():
            try:
                row = loads_strict(line, null=null, allow_constants=allow_constants)
            except ValueError as e:
                if i == len(pieces) - 1 and not tail:
                    tail = line + b"\n"  # a garbled last line: the tail of an interrupted append
                    break
                raise ValueError(
                    f"{path}: line {i + 1} is not valid JSON ({e}) and is not the last line; "
                    "this is corruption, not an interrupted append, so nothing was changed"
                ) from None
            rows.append(row)
            lines.append(line)
        good = end
    return rows, lines, good, tail


def read_jsonl(path: str, *, repair: bool = True, null: Any = None, allow_constants: bool = True) -> list[Any]:
    """Rows of a JSON-lines file; a torn last line (interrupted append) is cut off with a warning.

    A last line is torn when it lacks its newline or is not valid JSON. With
    ``repair=True`` the file is truncated back to the end of the last complete
    valid line (when rows are appended before the checkpoint that covers them
    is saved, as in :mod:`ib_jax.job.run`, a torn append belongs to a chunk
    the relaunch computes again, so nothing is lost); with ``repair=False``
    the file is left unchanged and the torn line skipped. A bad line that is
    not the last raises ``ValueError`` (corruption; nothing is changed).
    ``null`` / ``allow_constants`` as in :func:`loads_strict` (constants are
    accepted by default so files written before the strict convention read).
    Missing file: ``[]``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return []
    rows, _, good, tail = _scan_jsonl(path, null=null, allow_constants=allow_constants)
    if tail:
        shown = tail[:80].decode("utf-8", "replace")
        if repair:
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
            warnings.warn(
                f"{path}: cut a torn last line ({len(tail)} bytes: {shown!r}...) left by an interrupted "
                f"append; {len(rows)} complete rows kept",
                stacklevel=2,
            )
        else:
            warnings.warn(f"{path}: skipping a torn last line ({len(tail)} bytes: {shown!r}...)", stacklevel=2)
    return rows


def truncate_jsonl(path: str, keep: Callable[[Any], bool], *, null: Any = None) -> int:
    """Keep only the rows for which ``keep(row)`` is true, atomically; returns the number kept.

    Kept lines are copied byte for byte (never re-serialized). A torn last line
    is repaired first (:func:`read_jsonl`). The file is rewritten only when a
    row is dropped. Missing file: 0.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return 0
    read_jsonl(path, repair=True, null=null)
    rows, lines, _, _ = _scan_jsonl(path, null=null, allow_constants=True)
    kept = [line for row, line in zip(rows, lines) if keep(row)]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(line.decode("utf-8") + "\n" for line in kept))
    return len(kept)


# ---------------------------------------------------------------- job config


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{dotted.key: leaf}``; lists are leaves (compared whole). An empty dict is a leaf."""
    if isinstance(d, dict) and d:
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _ignored(key: str, patterns: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") or fnmatch.fnmatchcase(key, p) for p in patterns)


def drop_keys(cfg: dict, ignore_keys: Sequence[str]) -> dict:
    """``cfg`` without the dotted keys matching ``ignore_keys`` (exact key, its subtree, or an fnmatch glob)."""

    def walk(d: dict, prefix: str) -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if _ignored(key, ignore_keys):
                continue
            out[k] = walk(v, key) if isinstance(v, dict) else v
        return out

    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be a dict (OmegaConf.to_container(cfg, resolve=True)), got {type(cfg).__name__}")
    return walk(cfg, "")


def config_fingerprint(cfg: dict) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``cfg`` (key order does not matter; 1 and 1.0 differ)."""
    return hashlib.sha256(canonical_json(cfg).encode("ascii")).hexdigest()


def config_diff(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, old value, new value)]`` where the nested dicts differ, sorted by key.

    A key present on one side only has :data:`ABSENT` on the other. Values are
    compared by their canonical JSON, so NaN equals NaN and ``[1.0]`` differs
    from ``[1]`` exactly when their fingerprints would.
    """
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, ABSENT), b.get(key, ABSENT)
        if va is ABSENT or vb is ABSENT or canonical_json(va) != canonical_json(vb):
            out.append((key, va, vb))
    return out


def _show(v: Any) -> str:
    return repr(v) if v is ABSENT else dumps_strict(v)


class ConfigMismatch(ValueError):
    """A relaunch whose resolved config differs from the one recorded at the job's first launch.

    ``diff``: the :func:`config_diff` list; ``path``: the recorded config file.
    """

    def __init__(self, message: str, diff: list[tuple[str, Any, Any]], path: str):
        super().__init__(message)
        self.diff = diff
        self.path = path


DEFAULT_FRESH_HINT = (
    "To run the new configuration, start a fresh job in a new directory "
    "(hydra.run.dir=<new dir>, or paths.output_dir=<new dir>); to continue this job, "
    "relaunch it with the recorded values."
)


def record_or_check_config(
    job_dir: str,
    cfg: dict,
    *,
    ignore_keys: Sequence[str] = (),
    filename: str = CONFIG_FILE,
    fresh_hint: str = DEFAULT_FRESH_HINT,
    defaults: dict | None = None,
    migrate: Callable[[dict], dict] | None = None,
    extra: dict | None = None,
) -> str:
    """Fix a job's configuration at its first launch; refuse a relaunch that changes it. Returns the fingerprint.

    ``cfg``: the resolved config as plain containers. ``ignore_keys``: dotted keys
    (exact, subtree, or fnmatch glob such as ``"logger.*"``) that do not change
    results (logging, output paths, resume flags, launcher settings); they are
    neither recorded nor compared.

    First launch (no ``<job_dir>/<filename>``): writes, atomically,
    ``{"fingerprint", "config", "ignored_keys", "recorded_at"}``. Later launches:
    compares the recorded config (minus the current ``ignore_keys``) with
    ``cfg`` and raises :class:`ConfigMismatch` naming every differing key with
    its old and new value; nothing is written in either failing case.

    ``defaults``: the schema's default config. A key absent from the record (added to the schema
    after the job started) whose new value is its default does not count as a difference, so a
    new setting does not block resuming the jobs already running.

    ``migrate``: maps a recorded config of an older layout to the current one before comparing
    (:func:`ib_jax.config.migrate`), so an old job resumes when only the layout changed; the
    recorded file itself is never rewritten.

    ``extra``: more top-level fields written beside the config at the first launch only (the
    versions the job started under); neither fingerprinted nor compared.
    """
    path = os.path.join(job_dir, filename)
    new = drop_keys(cfg, ignore_keys)
    fp = config_fingerprint(new)
    if not os.path.exists(path):
        os.makedirs(job_dir, exist_ok=True)
        atomic_write_json(
            path,
            {
                "fingerprint": fp,
                "config": new,
                "ignored_keys": list(ignore_keys),
                "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                **(extra or {}),
            },
        )
        return fp
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        stored = loads_strict(text)
        old = drop_keys(migrate(stored["config"]) if migrate is not None else stored["config"], ignore_keys)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path} is unreadable ({type(e).__name__}: {e}); it records this job's configuration, "
            "so the job cannot be checked and was not started. " + fresh_hint
        ) from None
    if config_fingerprint(old) == fp:
        return fp
    diff = config_diff(old, new)
    if defaults is not None:
        flat_defaults = _flatten(drop_keys(defaults, ignore_keys))
        diff = [(k, a, b) for k, a, b in diff if not (isinstance(a, _Absent) and k in flat_defaults and flat_defaults[k] == b)]
        if not diff:
            return config_fingerprint(old)
    lines = [
        f"{job_dir}: this launch's configuration differs from the one recorded at the job's first launch "
        f"({path}, fingerprint {config_fingerprint(old)[:12]}, now {fp[:12]}); a job's configuration is fixed "
        f"once it has started. Differing keys (recorded -> this launch):"
    ]
    lines += [f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in diff]
    lines.append("Nothing was changed or computed. " + fresh_hint)
    raise ConfigMismatch("\n".join(lines), diff, path)
