"""Shared test setup: CPU, wandb offline, and a persistent XLA compilation cache.

Compile time dominates this suite on CPU; the cache lets pytest-xdist workers
and reruns reuse compiled programs (it never changes results).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import jax  # noqa: E402

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
# Tests check the mathematics to float32 tolerances: full float32 matmuls on every backend (a
# GPU's default TF32 rounds at ~1e-4 and would fail comparisons meant for float32; CPU is unchanged).
jax.config.update("jax_default_matmul_precision", "highest")
