"""Architecture rules of the ``ib_jax`` package, checked from its source by ``scripts/arch_metrics.py``.

* no import cycle, neither among module-level imports nor counting function-local ones;
* ``ib_jax.config`` and ``ib_jax.registry`` are leaves: they import no other ``ib_jax`` module;
* no library module exceeds 600 lines;
* no function-local import of an ``ib_jax`` module, and function-local imports of third-party
  modules only for the optional heavy dependencies of ``OPTIONAL_HEAVY`` (stdlib ones are free).

The analyser itself is tested on a synthetic package first, so that these checks are known to be
able to fail.  Nothing here imports ``ib_jax``: the analysis reads the source with ``ast``.
Run the metrics by hand with ``python scripts/arch_metrics.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "arch_metrics.py"
PACKAGE_DIR = ROOT / "ib_jax"

MAX_LINES = 600
LEAVES = ("ib_jax.config", "ib_jax.registry")
# Top-level packages a function may import lazily: optional at import time, or heavy to load.
OPTIONAL_HEAVY = {
    "wandb",
    "matplotlib",
    "orbax",
    "submitit",
    "hydra",
    "omegaconf",
    "sklearn",
    "mnist1d",
    "scipy",
    "tqdm",
    "PIL",
    "torch",
    "dp_accounting",
    "yaml",
    "tabulate",
}


def _load_arch_metrics():
    spec = importlib.util.spec_from_file_location("arch_metrics", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


arch_metrics = _load_arch_metrics()


# ----------------------------------------------------------------------------------------------
# The rules, as functions returning offenders (empty = rule holds), shared by both test groups
# ----------------------------------------------------------------------------------------------


def _cycles(result: dict, graph: str) -> list[str]:
    return [" <-> ".join(cycle) for cycle in result[f"cycles_{graph}"]]


def _non_leaves(result: dict, names) -> list[str]:
    report = arch_metrics.leaf_report(result, names)
    offenders = []
    for name, info in report.items():
        if not info["found"]:
            offenders.append(f"{name}: module not found")
        elif not info["leaf"]:
            offenders.append(f"{name} imports " + ", ".join(info["imports"]))
    return offenders


def _long_modules(result: dict, limit: int = MAX_LINES) -> list[str]:
    return [f"{m}: {n} lines" for m, n in result["module_lines"].items() if n > limit]


def _local_internal_imports(result: dict) -> list[str]:
    return [f"{e['module']}:{e['line']}:{e['target']}" for e in result["local_imports_internal"]]


def _local_third_party_imports(result: dict, allowed=frozenset(OPTIONAL_HEAVY)) -> list[str]:
    return [
        f"{e['module']}:{e['line']}:{e['target']}"
        for e in result["local_imports_external"]
        if e["kind"] == "third-party" and e["top"] not in allowed
    ]


# ----------------------------------------------------------------------------------------------
# The analyser on a synthetic package: the rules above can fail
# ----------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def synthetic(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg / "__init__.py", "")
    # a and b import each other, but only inside functions.
    _write(
        pkg / "a.py",
        "def f():\n    from pkg import b\n    import json, numpy\n    return b, json, numpy\n",
    )
    _write(
        pkg / "b.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub import c\n"
        "def g():\n"
        "    from . import a  # relative, function-local\n"
        "    return a\n",
    )
    _write(pkg / "sub" / "__init__.py", "import pkg.sub.c\n")
    # A relative import two levels up, at module level (inside a try block), and a long module.
    _write(
        pkg / "sub" / "c.py",
        "try:\n    from ..a import f\nexcept ImportError:\n    f = None\n" + "x = 1\n" * 600,
    )
    _write(pkg / "leaf.py", "import os\n")
    return arch_metrics.analyse(pkg)


def test_synthetic_function_local_cycle_only_in_all_imports_graph(synthetic):
    assert synthetic["cycles_all"] == [["pkg.a", "pkg.b"]]
    assert synthetic["cycles_module"] == []
    assert _cycles(synthetic, "all") and not _cycles(synthetic, "module")
    assert ["pkg.b", "pkg.a"] in synthetic["edges_all"]
    assert ["pkg.b", "pkg.a"] not in synthetic["edges_module"]


def test_synthetic_relative_and_package_imports_resolved(synthetic):
    assert ["pkg.sub.c", "pkg.a"] in synthetic["edges_module"]  # from ..a import f
    assert ["pkg.sub", "pkg.sub.c"] in synthetic["edges_module"]  # import pkg.sub.c
    assert {"module": "pkg.b", "line": 5, "target": "pkg.a", "top": "pkg"} in synthetic["local_imports_internal"]
    # TYPE_CHECKING imports are in neither graph, but still break a leaf.
    assert ["pkg.b", "pkg.sub.c"] not in synthetic["edges_all"]
    assert ["pkg.b", "pkg.sub.c"] in synthetic["edges_type_checking"]
    # No implicit edge to parent packages' __init__.
    assert not any(b == "pkg" for _, b in synthetic["edges_all"])
    # pkg.sub -> pkg.sub.c -> pkg.a: three levels.
    assert synthetic["levels"] == 3


def test_synthetic_function_local_imports_counted(synthetic):
    assert synthetic["files"] == 6
    assert synthetic["local_imports"] == {"pkg.a": 2, "pkg.b": 1}
    assert synthetic["local_imports_total"] == 3
    assert _local_internal_imports(synthetic) == ["pkg.a:2:pkg.b", "pkg.b:5:pkg.a"]
    assert _local_third_party_imports(synthetic) == ["pkg.a:3:numpy"]  # json is stdlib


def test_synthetic_rules_can_fail(synthetic):
    assert _long_modules(synthetic) == ["pkg.sub.c: 604 lines"]
    assert synthetic["over_600"] == 1 and synthetic["longest"][0] == ["pkg.sub.c", 604]
    assert _non_leaves(synthetic, ["pkg.leaf"]) == []
    assert _non_leaves(synthetic, ["pkg.b"]) == ["pkg.b imports pkg.a, pkg.sub.c"]
    assert _non_leaves(synthetic, ["pkg.missing"]) == ["pkg.missing: module not found"]


# ----------------------------------------------------------------------------------------------
# The rules on the real package
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    return arch_metrics.analyse(PACKAGE_DIR)


def test_package_parses(real):
    assert real["files"] > 0
    assert real["errors"] == []


def test_no_cycle_among_module_level_imports(real):
    offenders = _cycles(real, "module")
    assert not offenders, "import cycles (module-level imports):\n" + "\n".join(offenders)


def test_no_cycle_among_all_imports(real):
    offenders = _cycles(real, "all")
    assert not offenders, "import cycles (including function-local imports):\n" + "\n".join(offenders)


def test_config_and_registry_are_leaves(real):
    offenders = _non_leaves(real, LEAVES)
    assert not offenders, "modules that must import no other ib_jax module:\n" + "\n".join(offenders)


def test_no_module_over_600_lines(real):
    offenders = _long_modules(real)
    assert not offenders, f"modules over {MAX_LINES} lines:\n" + "\n".join(offenders)


def test_no_function_local_import_of_ib_jax(real):
    offenders = _local_internal_imports(real)
    assert not offenders, "function-local imports of ib_jax modules (module:line:imported-name):\n" + "\n".join(offenders)


def test_function_local_third_party_imports_only_optional_heavy(real):
    offenders = _local_third_party_imports(real)
    assert not offenders, (
        "function-local imports of third-party modules outside the optional heavy dependencies "
        f"{sorted(OPTIONAL_HEAVY)} (module:line:imported-name):\n" + "\n".join(offenders)
    )


# the flow of a job, config -> data / models / noise -> estimators -> train -> job -> report, as the
# imports between the package's top-level parts: each may import only the parts before it
ALLOWED_FAMILY_IMPORTS = {
    "config": set(),
    "registry": set(),
    "data": {"registry"},
    "models": {"registry"},
    "noise": {"registry"},
    "estimators": {"registry", "models", "noise"},
    "bounds": {"registry", "noise"},
    "train": {"registry", "data", "models", "noise", "estimators", "bounds"},
    "report": {"registry", "data", "estimators"},
    "job": {"config", "registry", "data", "models", "noise", "estimators", "bounds", "train", "report"},
    "cli": {"config", "registry", "data", "models", "noise", "estimators", "bounds", "train", "report", "job"},
    "__init__": {"bounds", "data", "estimators", "models", "noise", "train"},
}


def test_families_follow_the_flow(real):
    fam = arch_metrics.family_graph(real)
    assert not fam["cycles"], fam["cycles"]
    bad = [f"{a} -> {b}" for a, b in fam["edges"] if b not in ALLOWED_FAMILY_IMPORTS.get(a, set())]
    assert not bad, "imports against the flow config -> data/models/noise -> estimators -> train -> job -> report: " + ", ".join(bad)


def test_check_mode_agrees(real):
    leaves = arch_metrics.leaf_report(real, LEAVES)
    assert arch_metrics.check(real, leaves) == []


def test_synthetic_family_cycle_is_found(tmp_path):
    pkg = tmp_path / "pk"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for p in (pkg, pkg / "a", pkg / "b"):
        (p / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from pk.b import y\n")
    (pkg / "b" / "y.py").write_text("import pk.a.z\n")
    (pkg / "a" / "z.py").write_text("")
    fam = arch_metrics.family_graph(arch_metrics.analyse(str(pkg)))
    assert fam["cycles"] == [["a", "b"]] and ("a", "b") in fam["edges"]
