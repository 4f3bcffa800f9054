"""What a job ran under: library versions, the code's version and the device, recorded and compared.

JAX's PRNG streams and XLA's numerics change across releases, so a job resumed under another jax,
jaxlib, flax, optax or numpy cannot be "identical" to an uninterrupted one. The first launch
records :func:`provenance` in ``job_config.json`` (beside the config, not in its fingerprint); every
launch appends its own to ``launches.jsonl``. A relaunch whose libraries differ from the record is
refused naming the versions (``on_version_change=refuse``, the default) or resumes saying so
(``on_version_change=resume``, the launch row records it); a different code version only (another
git commit of ib-jax, same libraries) is reported and resumes.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata

import jax

__all__ = ["LIBRARIES", "provenance", "library_changes", "code_version", "device_info"]

# the distributions whose versions decide a job's numbers (PRNG streams, XLA numerics, initializers)
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy")
_ALSO = ("ib-jax", "orbax-checkpoint", "scipy")  # recorded, not compared (no effect on the numbers, or covered by code)
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def code_version() -> str:
    """``<ib-jax version>`` plus ``+g<commit>`` (and ``.dirty`` with uncommitted changes) when the package
    runs from a git checkout, so a relaunch after a code change is told apart."""
    v = _version("ib-jax") or "unknown"
    if not os.path.isdir(os.path.join(_CHECKOUT, ".git")):
        return v
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=_CHECKOUT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "ib_jax"],
            cwd=_CHECKOUT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return v
    if commit.returncode != 0:
        return v
    return f"{v}+g{commit.stdout.strip()}" + (".dirty" if dirty.stdout.strip() else "")


def device_info() -> dict:
    """The backend JAX uses: platform, device kind (e.g. ``NVIDIA H200``, ``cpu``) and count."""
    devs = jax.devices()
    return {
        "platform": devs[0].platform,
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "process_count": jax.process_count(),
    }


def provenance() -> dict:
    """``{"versions": {dist: version}, "python", "code", "device": {...}, "host_platform"}``."""
    return {
        "versions": {d: _version(d) for d in (*LIBRARIES, *_ALSO)},
        "python": platform.python_version(),
        "code": code_version(),
        "device": device_info(),
        "host_platform": f"{sys.platform}-{platform.machine()}",
    }


def library_changes(recorded: dict | None, now: dict) -> list[tuple[str, str | None, str | None]]:
    """``[(name, recorded, now)]`` for every library of :data:`LIBRARIES` and Python whose version differs;
    ``[]`` when ``recorded`` is None (a job recorded before versions were)."""
    if not recorded:
        return []
    out = [(d, recorded.get("versions", {}).get(d), now["versions"].get(d)) for d in LIBRARIES]
    out.append(("python", recorded.get("python"), now["python"]))
    return [(d, a, b) for d, a, b in out if a != b]
