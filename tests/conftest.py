"""Shared test setup: CPU, wandb offline, and a persistent XLA compilation cache.

No global numerics switch (matmul precision, x64): the tests run the code as a user's process
runs it, and code that forgets full precision where it needs it (TF32 on a GPU) fails this suite on a GPU.

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
