"""Job directory names: a valid, bounded, stable name from a job's command-line overrides.

Relaunching the same command must find the same directory (that is how a job resumes), two
different commands must never share one, and result-neutral overrides
(:data:`ib_jax.config.RESULT_NEUTRAL_KEYS`: ``logger=none``, ``paths.data_dir=...``, ``fresh=true``)
never enter the name. Hydra calls these through the ``ib.dir`` / ``ib.name`` / ``ib.sweep``
resolvers of ``conf/config.yaml`` (:func:`ib_jax.job.compose.register`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from ib_jax.config import is_result_neutral

__all__ = ["MAX_DIR_NAME", "safe_name", "dir_name", "job_dir_name", "sweep_dir_name"]


_SAFE = re.compile(r"[^A-Za-z0-9._=+,@-]+")
MAX_DIR_NAME = 96


def safe_name(name: str) -> str:
    """A job ``name``: one path component, no escape from ``outputs/``. Raises naming ``name``."""
    s = str(name)
    if not s or s in (".", "..") or "/" in s or "\\" in s or "\0" in s or not re.fullmatch(r"[A-Za-z0-9._+-]+", s):
        raise ValueError(f"name must be one path component of letters, digits and ._+- (no '/' or '..'), got {s!r}")
    return s


def dir_name(overrides: str, max_len: int = MAX_DIR_NAME) -> str:
    """A valid, bounded and stable directory name for a job's overrides string.

    Characters outside ``[A-Za-z0-9._=+,@-]`` (``/``, brackets, spaces...) become ``_`` (orbax
    cannot reopen checkpoints under a directory whose name holds ``[``). When characters were
    replaced, or the name is longer than ``max_len``, it keeps a readable prefix plus ``~`` and
    12 hex digits of the full string's SHA-256, so two different override lists never share a
    directory (``a/b`` vs ``a_b``) and the same one always maps to the same name (relaunching
    resumes). Empty overrides: ``default``.
    """
    raw = str(overrides)
    if not raw:
        return "default"
    s = _SAFE.sub("_", raw).strip("._") or "default"
    if s != raw or len(s) > max_len:
        # replaced characters lose information (a/b and a_b would collide): the hash keeps names apart
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        s = f"{s[: max_len - 13].rstrip('._')}~{digest}"
    return s


def job_dir_name(task_overrides: Iterable[str] | str) -> str:
    """The directory name of a job from its command-line overrides (``hydra.overrides.task``).

    Result-neutral overrides (:func:`is_result_neutral`) are left out, the rest sorted and joined
    with ``,`` exactly as hydra's ``override_dirname`` does, then made a valid bounded name by
    :func:`dir_name`. So ``logger=none`` or ``paths.data_dir=...`` resume the same job.
    """
    if isinstance(task_overrides, str):
        return dir_name(task_overrides)
    lines = [str(o) for o in task_overrides]
    return dir_name(",".join(sorted(o for o in lines if not is_result_neutral(o.split("=", 1)[0]))))


def sweep_dir_name(name: str, task_overrides: Iterable[str] | str) -> str:
    """The directory of a multirun under ``multirun/``: the job ``name`` when one was given (every
    preset names its sweep), else ``sweep-`` plus the keys the command line sets (``-m
    noise=isotropic,cone model=a,b steps=100`` -> ``sweep-model,noise,steps``).

    Hydra resolves the sweep directory once per job, with that job's overrides, so only what all
    jobs of a sweep share can name it: the set of keys (the values differ job by job). Unnamed
    sweeps over different keys never share a directory; two over the same keys share the parent
    but never a job directory (each job's name holds its values); ``name=...`` separates them.
    """
    n = safe_name(name)
    if n not in ("default", "ib"):
        return n
    lines = [o for o in task_overrides.split(",")] if isinstance(task_overrides, str) else [str(o) for o in task_overrides]
    keys = sorted({o.split("=", 1)[0].lstrip("+~") for o in lines if "=" in o and not is_result_neutral(o.split("=", 1)[0])})
    return dir_name("sweep-" + ",".join(keys)) if keys else "default"
