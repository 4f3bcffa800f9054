"""Plain registries: one ``name -> builder`` mapping per family of pluggable parts.

The families (each instance below) and what a builder is:

* :data:`NOISE` — ``noise=<kind>``: a :class:`ib_jax.noise.NoiseKind` (how the kind
  turns a member's level into an optax transform and/or a mini-batch perturbation; its ``check``).
* :data:`ESTIMATORS` — ``estimator.names=[...]``: an :class:`ib_jax.estimators.Estimator`
  (``compute(ctx, cfg) -> {quantity: (L,) array}`` and its ``check``), see
  :mod:`ib_jax.estimators.base` for ``ctx``.
* :data:`DATASETS` — ``dataset=<name>``: ``fn(cfg: Config) -> Dataset`` (built-ins: an
  :class:`ib_jax.data.DatasetEntry`).
* :data:`MODELS` — ``model.kind``: ``fn(cfg: ModelConf, n_classes) -> flax module`` (built-ins: an
  :class:`ib_jax.models.ModelEntry`, which also says which option groups it reads).
* :data:`SCHEDULES` — ``schedule.kind``: ``fn(**params) -> (count -> multiplier)``.
* :data:`OPTIMIZERS` — ``optimizer.name``: ``fn(learning_rate, cfg: OptimizerConf) -> optax.GradientTransformation``
  (built-ins: an :class:`ib_jax.train.optimizers.OptimizerEntry` with its ``check``).

Every entry that has a ``check`` carries it itself; validation (:mod:`ib_jax.job.build`) walks the
registries. The built-ins register themselves in their own modules, one module per part, each
family a sub-package (``ib_jax.noise``, ``ib_jax.estimators``, ``ib_jax.data``, ``ib_jax.models``,
``ib_jax.train.optimizers``); a user registers theirs in any module and names it with
``plugins=[my_lab.noise]`` on the command line (see :func:`load_plugins`). This module imports no
other ib_jax module.
No metaclasses: a registry is a dict with a good error, filled by plain imports (a family's
package imports each of its modules, :func:`import_parts`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterator
from typing import Any

__all__ = [
    "import_parts",
    "Registry",
    "NOISE",
    "ESTIMATORS",
    "DATASETS",
    "MODELS",
    "SCHEDULES",
    "OPTIMIZERS",
    "BOUNDS",
    "load_plugins",
    "plugins_from_argv",
    "ensure_builtins",
]


class Registry:
    """``name -> builder`` for one family; ``key`` is the config key that selects from it."""

    def __init__(self, family: str, key: str):
        self.family = family
        self.key = key
        self._entries: dict[str, Any] = {}

    def register(self, name: str, builder: Any = None, *, overwrite: bool = False):
        """Register ``builder`` under ``name``; usable as ``@REG.register("name")``.

        Re-registering a name is an error unless ``overwrite=True`` (a plug-in that silently
        replaced a built-in would change results without a trace).
        """

        def add(b):
            if name in self._entries and not overwrite and self._entries[name] is not b:
                raise ValueError(f"{self.family} {name!r} is already registered (pass overwrite=True to replace it)")
            self._entries[name] = b
            return b

        return add if builder is None else add(builder)

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"{self.key}: unknown {self.family} {name!r}; registered: {sorted(self._entries)} "
                "(a plug-in module is loaded with plugins=[my_module])"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {self.names()})"


NOISE = Registry("noise kind", "noise.kind")
ESTIMATORS = Registry("estimator", "estimator.names")
DATASETS = Registry("data set", "dataset.name")
MODELS = Registry("model kind", "model.kind")
SCHEDULES = Registry("schedule", "schedule.kind")
OPTIMIZERS = Registry("optimizer", "optimizer.name")
BOUNDS = Registry("bound", "bounds.names")


def load_plugins(modules) -> list[str]:
    """Import user modules that register entries (``plugins=[my_lab.noise, ...]``).

    A module is imported by its dotted name (from ``sys.path``, which includes the working
    directory for the CLI) or from a ``.py`` path. An import error names the ``plugins`` key.
    """
    loaded = []
    for m in modules or ():
        try:
            if str(m).endswith(".py"):
                path = os.path.abspath(os.path.expanduser(m))
                name = "ib_jax_plugin_" + os.path.splitext(os.path.basename(path))[0]
                prev = sys.modules.get(name)
                if prev is not None and getattr(prev, "__file__", None) == path:
                    # imported once, like `import`: the CLI loads plug-ins before hydra composes
                    # and validate() loads them again; re-running it would re-register its entries
                    loaded.append(str(m))
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or not os.path.exists(path):
                    raise FileNotFoundError(path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                try:
                    spec.loader.exec_module(mod)
                except BaseException:
                    sys.modules.pop(name, None)  # a failed import is retried, not half-registered
                    raise
            else:
                if os.getcwd() not in sys.path:
                    sys.path.insert(0, os.getcwd())
                importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - any import failure is a config error naming the key
            raise ValueError(f"plugins: cannot import {m!r}: {type(e).__name__}: {e}") from e
        loaded.append(str(m))
    return loaded


def plugins_from_argv(argv) -> list[str]:
    """The modules named by a ``plugins=[a.b,c]`` (or ``+plugins=...``) command-line override."""
    out = []
    for a in argv:
        key, sep, value = a.partition("=")
        if sep and key.lstrip("+~") == "plugins":
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                value = value[1:-1]
            out += [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return out


def ensure_builtins() -> None:
    """Register the built-in entries: importing the ``ib_jax`` package imports each plug-in family's
    package (``noise``, ``estimators``, ``data``, ``models``, ``train``), whose modules register
    their parts as they are imported. No list of module names here: a new part's module is imported
    by its family's ``__init__``."""
    importlib.import_module("ib_jax")


def import_parts(package: str, path) -> list[str]:
    """Import every module of a plug-in family's package (``package`` its name, ``path`` its
    ``__path__``), in name order; each registers its part as it is imported.

    Called at the end of each family's ``__init__`` (``ib_jax.noise``, ``ib_jax.estimators``,
    ``ib_jax.data``, ``ib_jax.models``, ``ib_jax.train``): the package *is* the registry of its
    built-ins, so a new part is one new module and no list of module names is edited. Modules whose
    name starts with ``_`` are shared helpers (imported by the parts that use them).
    """
    names = sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
