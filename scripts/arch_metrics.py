"""Architecture metrics of a Python package, from its source alone (stdlib ``ast``; nothing is imported).

Run it from the repository root::

    python scripts/arch_metrics.py                      # analyse ./ib_jax, human-readable
    python scripts/arch_metrics.py --json               # the same, as JSON
    python scripts/arch_metrics.py --package DIR        # another package directory
    python scripts/arch_metrics.py --leaf ib_jax.config --leaf ib_jax.registry
                                                        # exit 1 unless each named module is a leaf

What each number means
----------------------
files
    Number of ``.py`` files under the package directory (every module, ``__init__.py`` included;
    ``__pycache__`` and hidden directories are skipped).
lines
    Total physical lines of those files (``str.splitlines``, comments and docstrings included).
edges (module-level / all)
    The internal import graph: an edge ``A -> B`` when module ``A`` has an import statement naming
    module ``B`` of the same package.  Resolution:

    * ``import ib_jax.a.b``            -> ``ib_jax.a.b`` (the longest prefix that is a module file);
    * ``from ib_jax.x import y``       -> ``ib_jax.x.y`` if that is a module or package file, else
      ``ib_jax.x`` (``y`` is then a name defined in ``ib_jax.x``);
    * relative imports (``from . import y``, ``from ..x import y``) are resolved against the
      importing module's package first, then as above;
    * importing a package (``import ib_jax.foo``) is an edge to ``ib_jax.foo``, i.e. its
      ``__init__.py``.

    Only explicit import statements count.  No implicit edge is added from a module to its parent
    packages' ``__init__`` (Python does execute those when the module is imported, but the metric
    measures what the code asks for), and string-based imports (``importlib.import_module("...")``)
    are not seen.  Edges are distinct ``(A, B)`` pairs; self edges are not counted as edges (they are
    reported as self-loops among the cycles).

    *module-level* graph: import statements executed when the module is imported -- at the top
    level, including inside top-level ``if``/``try``/``with`` blocks and class bodies, but NOT inside
    ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``) blocks, and not inside functions.

    *all* graph: the module-level edges plus those from imports inside function/method bodies (and
    lambdas).  Imports under ``if TYPE_CHECKING:`` are in neither graph (they never run); they are
    reported separately as ``edges_type_checking``.
cycles (module-level / all)
    Strongly connected components of more than one module in each graph, plus self-loops (a module
    importing itself), each listed as its sorted module names.
levels
    Length of the longest import chain in the module-level graph, counting modules: a module that
    imports no other internal module is level 1, a module importing only level-1 modules is level 2,
    and so on.  Computed on the condensation (each cycle collapsed to one node) if there are cycles.
function-local imports
    Import statements (of anything: stdlib, third-party or internal) inside a function or method
    body, per module and in total (``import a, b`` is one statement).  They are also listed one
    imported name at a time, split into *internal* (an ``ib_jax`` module: usually a hidden cycle or a
    layering problem) and *external* (a possible optional heavy dependency), the latter marked as
    ``stdlib`` or ``third-party`` (``sys.stdlib_module_names``).
longest modules
    The 10 modules with the most lines, and how many modules exceed 500 and 600 lines.
families
    The same module-level graph folded onto the package's top-level parts (``ib_jax.noise.cone`` ->
    ``noise``; a root module such as ``ib_jax.config`` is its own part): which families import which,
    and whether that graph has a cycle.
check (``--check``)
    Exit 1 unless: no cycle in either graph, no function-local import of a package module, no module
    over 600 lines, and every ``--leaf`` module is a leaf (the assertions of tests/test_architecture.py).
leaves (``--leaf MOD``)
    Whether each named module imports any other module of the package at any level (module level,
    inside functions, or under ``TYPE_CHECKING``).  A leaf imports none.

Importable API (used by ``tests/test_architecture.py``): ``analyse(package_dir) -> dict`` with keys
``files, lines, edges_module, edges_all, cycles_module, cycles_all, levels, local_imports,
local_imports_internal, longest`` (and more, see ``analyse``), ``leaf_report(result, modules)``,
``strongly_connected_components(nodes, edges)`` and ``format_report(result)``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path

LONG_THRESHOLDS = (500, 600)
TOP_N = 10

try:
    _STDLIB = frozenset(sys.stdlib_module_names)  # Python >= 3.10
except AttributeError:  # pragma: no cover - older interpreters
    _STDLIB = frozenset(sys.builtin_module_names)


# --------------------------------------------------------------------------------------------
# Discovering modules
# --------------------------------------------------------------------------------------------


def discover_modules(package_dir: str | os.PathLike) -> dict[str, dict]:
    """Map each dotted module name to ``{"path", "is_package", "lines"}``.

    The top-level package name is the directory's name; ``pkg/a/__init__.py`` is ``pkg.a``.
    """
    root = Path(package_dir).resolve()
    name = root.name
    modules: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        prefix = [name, *rel.parts] if rel.parts else [name]
        for fname in sorted(filenames):
            if not fname.endswith(".py"):
                continue
            path = Path(dirpath) / fname
            stem = fname[:-3]
            is_package = stem == "__init__"
            dotted = ".".join(prefix if is_package else [*prefix, stem])
            text = path.read_text(encoding="utf-8", errors="replace")
            modules[dotted] = {
                "path": str(path),
                "is_package": is_package,
                "lines": len(text.splitlines()),
                "text": text,
            }
    return modules


# --------------------------------------------------------------------------------------------
# Collecting import statements
# --------------------------------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return False


class _ImportCollector(ast.NodeVisitor):
    """Every import statement with its scope: function-local or not, under TYPE_CHECKING or not."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.stmt, bool, bool]] = []  # (node, in_function, type_checking)
        self._function_depth = 0
        self._type_checking_depth = 0

    def _visit_function(self, node: ast.AST) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function
    visit_Lambda = _visit_function

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        if _is_type_checking(node.test):
            self._type_checking_depth += 1
            for child in node.body:
                self.visit(child)
            self._type_checking_depth -= 1
        else:
            for child in node.body:
                self.visit(child)
        for child in node.orelse:  # the ``else`` of ``if TYPE_CHECKING`` does run
            self.visit(child)

    def _record(self, node: ast.stmt) -> None:
        self.found.append((node, self._function_depth > 0, self._type_checking_depth > 0))

    visit_Import = _record
    visit_ImportFrom = _record


def _longest_known_prefix(dotted: str, modules: dict) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _relative_base(module: str, is_package: bool, level: int, target: str | None) -> str | None:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level - 1 > 0:
        if level - 1 > len(parts):
            return None
        parts = parts[: len(parts) - (level - 1)]
    if target:
        parts = [*parts, *target.split(".")]
    return ".".join(parts) if parts else None


def collect_imports(modules: dict[str, dict], package: str) -> tuple[list[dict], list[dict]]:
    """Return ``(records, errors)``.

    One record per imported name: ``module, line, scope ("module"|"function"), type_checking,
    target`` (the absolute dotted name imported), ``internal`` (bool), ``resolved`` (the internal
    module the edge goes to, or None), ``top`` (top-level package of ``target``), ``stmt`` (an id
    shared by the names of one statement).
    """

    def is_internal(dotted: str) -> bool:
        return dotted == package or dotted.startswith(package + ".")

    records: list[dict] = []
    errors: list[dict] = []
    stmt_id = 0
    for module, info in modules.items():
        try:
            tree = ast.parse(info["text"], filename=info["path"])
        except SyntaxError as exc:
            errors.append({"module": module, "error": f"SyntaxError: {exc}"})
            continue
        collector = _ImportCollector()
        collector.visit(tree)
        for node, in_function, type_checking in collector.found:
            stmt_id += 1
            common = {
                "module": module,
                "line": node.lineno,
                "scope": "function" if in_function else "module",
                "type_checking": type_checking,
                "stmt": stmt_id,
            }
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    internal = is_internal(target)
                    records.append(
                        {
                            **common,
                            "target": target,
                            "top": target.split(".")[0],
                            "internal": internal,
                            "resolved": _longest_known_prefix(target, modules) if internal else None,
                        }
                    )
                continue
            # ast.ImportFrom
            if node.level:
                base = _relative_base(module, info["is_package"], node.level, node.module)
                if base is None:
                    errors.append({"module": module, "error": f"line {node.lineno}: relative import beyond top-level package"})
                    continue
            else:
                base = node.module or ""
            if base == "__future__":
                continue  # a compiler directive, not an import of anything
            internal = is_internal(base)
            for alias in node.names:
                resolved = None
                target = base
                if internal:
                    submodule = f"{base}.{alias.name}"
                    if alias.name != "*" and submodule in modules:
                        resolved = target = submodule
                    else:
                        resolved = _longest_known_prefix(base, modules)
                records.append(
                    {
                        **common,
                        "target": target,
                        "top": base.split(".")[0],
                        "internal": internal,
                        "resolved": resolved,
                    }
                )
    return records, errors


# --------------------------------------------------------------------------------------------
# Graph algorithms
# --------------------------------------------------------------------------------------------


def strongly_connected_components(nodes, edges) -> list[list[str]]:
    """Tarjan's algorithm, iterative.  Returns every SCC (including singletons) as a sorted list."""
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_cycles(nodes, edges, self_loops) -> list[list[str]]:
    """SCCs of size > 1 plus self-loops, sorted."""
    cycles = [c for c in strongly_connected_components(nodes, edges) if len(c) > 1]
    in_cycle = {m for c in cycles for m in c}
    cycles += [[m] for m in sorted(self_loops) if m not in in_cycle]
    return sorted(cycles)


def import_levels(nodes, edges) -> dict[str, int]:
    """Level of each node: 1 for a leaf, else 1 + the highest level it imports (on the condensation)."""
    components = strongly_connected_components(nodes, edges)
    comp_of = {m: i for i, comp in enumerate(components) for m in comp}
    succ: dict[int, set[int]] = {i: set() for i in range(len(components))}
    for a, b in edges:
        ca, cb = comp_of[a], comp_of[b]
        if ca != cb:
            succ[ca].add(cb)
    # Tarjan emits components in reverse topological order: successors come first.
    level: dict[int, int] = {}
    for i in range(len(components)):
        level[i] = 1 + max((level[j] for j in succ[i]), default=0)
    return {m: level[comp_of[m]] for m in comp_of}


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


def analyse(package_dir: str | os.PathLike = "ib_jax") -> dict:
    """Analyse a package directory; see the module docstring for what each entry means.

    Keys: ``package, files, lines, edges_module, edges_all, edges_type_checking`` (sorted lists of
    ``[A, B]``), ``self_loops_module, self_loops_all, cycles_module, cycles_all`` (lists of sorted
    module lists), ``levels`` (int), ``module_levels`` (module -> level), ``local_imports`` (module ->
    number of function-local import statements, modules with none omitted), ``local_imports_total``,
    ``local_imports_internal`` and ``local_imports_external`` (lists of ``{"module", "line",
    "target", "top"}``; external ones also ``"kind": "stdlib"|"third-party"``), ``longest`` (top 10
    ``[module, lines]``), ``over_500, over_600`` (counts), ``module_lines`` (module -> lines),
    ``internal_imports`` (module -> sorted internal modules it imports at any level, TYPE_CHECKING
    included), ``errors``.
    """
    root = Path(package_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"not a package directory: {package_dir}")
    package = root.name
    modules = discover_modules(root)
    records, errors = collect_imports(modules, package)

    edges_module: set[tuple[str, str]] = set()
    edges_all: set[tuple[str, str]] = set()
    edges_tc: set[tuple[str, str]] = set()
    self_module: set[str] = set()
    self_all: set[str] = set()
    internal_imports: dict[str, set[str]] = {m: set() for m in modules}
    for r in records:
        target = r["resolved"]
        if target is None:
            continue
        a = r["module"]
        if target != a:
            internal_imports[a].add(target)
        if r["type_checking"]:
            if target != a:
                edges_tc.add((a, target))
            continue
        if target == a:
            self_all.add(a)
            if r["scope"] == "module":
                self_module.add(a)
            continue
        edges_all.add((a, target))
        if r["scope"] == "module":
            edges_module.add((a, target))

    nodes = sorted(modules)
    module_levels = import_levels(nodes, edges_module)

    local_counts: dict[str, int] = {}
    seen_stmt: set[int] = set()
    seen_entry: set[tuple] = set()
    local_internal: list[dict] = []
    local_external: list[dict] = []
    for r in records:
        if r["scope"] != "function":
            continue
        if r["stmt"] not in seen_stmt:
            seen_stmt.add(r["stmt"])
            local_counts[r["module"]] = local_counts.get(r["module"], 0) + 1
        key = (r["stmt"], r["target"])  # ``from x import a, b`` lists ``x`` once
        if key in seen_entry:
            continue
        seen_entry.add(key)
        entry = {"module": r["module"], "line": r["line"], "target": r["target"], "top": r["top"]}
        if r["internal"]:
            local_internal.append(entry)
        else:
            entry["kind"] = "stdlib" if r["top"] in _STDLIB else "third-party"
            local_external.append(entry)

    module_lines = {m: info["lines"] for m, info in modules.items()}
    longest = sorted(module_lines.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]

    return {
        "package": package,
        "package_dir": str(root),
        "files": len(modules),
        "lines": sum(module_lines.values()),
        "edges_module": sorted(list(e) for e in edges_module),
        "edges_all": sorted(list(e) for e in edges_all),
        "edges_type_checking": sorted(list(e) for e in edges_tc),
        "self_loops_module": sorted(self_module),
        "self_loops_all": sorted(self_all),
        "cycles_module": find_cycles(nodes, edges_module, self_module),
        "cycles_all": find_cycles(nodes, edges_all, self_all),
        "levels": max(module_levels.values(), default=0),
        "module_levels": dict(sorted(module_levels.items())),
        "local_imports": dict(sorted(local_counts.items())),
        "local_imports_total": sum(local_counts.values()),
        "local_imports_internal": sorted(local_internal, key=lambda e: (e["module"], e["line"], e["target"])),
        "local_imports_external": sorted(local_external, key=lambda e: (e["module"], e["line"], e["target"])),
        "longest": [list(kv) for kv in longest],
        "over_500": sum(1 for n in module_lines.values() if n > LONG_THRESHOLDS[0]),
        "over_600": sum(1 for n in module_lines.values() if n > LONG_THRESHOLDS[1]),
        "module_lines": dict(sorted(module_lines.items())),
        "internal_imports": {m: sorted(v) for m, v in sorted(internal_imports.items())},
        "errors": errors,
    }


def family_graph(result: dict) -> dict:
    """The module-level edges folded onto top-level parts: ``{"edges": [(a, b)], "cycles": [...]}``."""
    pkg = result["package"]

    def part(m: str) -> str:
        rest = m[len(pkg) + 1 :] if m.startswith(pkg + ".") else "__init__"
        return rest.split(".", 1)[0] or "__init__"

    edges = sorted({(part(a), part(b)) for a, b in result["edges_module"] if part(a) != part(b)})
    nodes = sorted({x for e in edges for x in e})
    cycles = find_cycles(nodes, edges, set())
    return {"edges": edges, "cycles": cycles}


def check(result: dict, leaves: dict | None) -> list[str]:
    """The architecture rules; the list of violations (empty: all hold)."""
    bad = []
    bad += [f"import cycle (module level): {', '.join(c)}" for c in result["cycles_module"]]
    bad += [f"import cycle (incl. function-local): {', '.join(c)}" for c in result["cycles_all"]]
    bad += [f"function-local import of a package module: {e['module']}:{e['line']}:{e['target']}" for e in result["local_imports_internal"]]
    bad += [f"{m} has {n} lines (> {LONG_THRESHOLDS[1]})" for m, n in result["module_lines"].items() if n > LONG_THRESHOLDS[1]]
    for name, info in (leaves or {}).items():
        if not info["leaf"]:
            bad.append(f"{name} is not a leaf: imports {', '.join(info['imports']) or '(not found)'}")
    return bad


def leaf_report(result: dict, names) -> dict[str, dict]:
    """For each named module: ``{"found": bool, "leaf": bool, "imports": [...]}``."""
    report = {}
    for name in names:
        imports = result["internal_imports"].get(name)
        if imports is None:
            report[name] = {"found": False, "leaf": False, "imports": []}
        else:
            report[name] = {"found": True, "leaf": not imports, "imports": imports}
    return report


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _format_cycles(cycles) -> list[str]:
    if not cycles:
        return ["    (none)"]
    return [f"    [{len(c)}] " + ", ".join(c) for c in cycles]


def format_report(result: dict, leaves: dict | None = None) -> str:
    out = []
    add = out.append
    add(f"package: {result['package']}  ({result['package_dir']})")
    add(f"files: {result['files']}")
    add(f"lines: {result['lines']}")
    add(f"levels (longest module-level import chain, leaf = 1): {result['levels']}")
    add(f"edges module-level: {len(result['edges_module'])}")
    add(f"edges all (incl. function-local): {len(result['edges_all'])}")
    add(f"edges under TYPE_CHECKING only (in neither graph): {len(result['edges_type_checking'])}")
    add(f"cycles module-level: {len(result['cycles_module'])}")
    out.extend(_format_cycles(result["cycles_module"]))
    add(f"cycles all: {len(result['cycles_all'])}")
    out.extend(_format_cycles(result["cycles_all"]))
    internal = result["local_imports_internal"]
    external = result["local_imports_external"]
    add(
        f"function-local import statements: total {result['local_imports_total']}"
        f" (imported names: internal {len(internal)}, external {len(external)})"
    )
    for module, count in result["local_imports"].items():
        add(f"    {module}: {count}")
    add(f"function-local imports of {result['package']} modules: {len(internal)}")
    for e in internal:
        add(f"    {e['module']}:{e['line']}:{e['target']}")
    add(f"function-local imports of other modules (possible optional heavy dependencies): {len(external)}")
    for e in external:
        add(f"    {e['module']}:{e['line']}:{e['target']}  [{e['kind']}]")
    add(f"longest modules (top {TOP_N}):")
    for module, lines in result["longest"]:
        add(f"    {lines:6d}  {module}")
    add(f"modules > {LONG_THRESHOLDS[0]} lines: {result['over_500']}")
    add(f"modules > {LONG_THRESHOLDS[1]} lines: {result['over_600']}")
    fam = family_graph(result)
    add(f"families (module-level imports between top-level parts): {len(fam['edges'])} edges, {len(fam['cycles'])} cycles")
    by_source: dict[str, list[str]] = {}
    for a, b in fam["edges"]:
        by_source.setdefault(a, []).append(b)
    for a in sorted(by_source):
        add(f"    {a} -> {', '.join(by_source[a])}")
    out.extend(_format_cycles(fam["cycles"]) if fam["cycles"] else [])
    if leaves:
        add("leaves (imports no other package module, at any level):")
        for name, info in leaves.items():
            if not info["found"]:
                add(f"    {name}: NOT FOUND")
            elif info["leaf"]:
                add(f"    {name}: leaf")
            else:
                add(f"    {name}: NOT a leaf, imports " + ", ".join(info["imports"]))
    for err in result["errors"]:
        add(f"error: {err['module']}: {err['error']}")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--package", default="ib_jax", help="package directory (default: ib_jax)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--leaf", action="append", default=[], metavar="MOD", help="module that must import no other package module")
    parser.add_argument("--check", action="store_true", help="exit 1 when an architecture rule is broken (see the docstring)")
    args = parser.parse_args(argv)
    result = analyse(args.package)
    leaves = leaf_report(result, args.leaf) if args.leaf else None
    if args.json:
        payload = dict(result)
        if leaves is not None:
            payload["leaves"] = leaves
        print(json.dumps(payload, indent=2))
    else:
        print(format_report(result, leaves))
    if args.check:
        violations = check(result, leaves)
        for v in violations:
            print(f"architecture: {v}", file=sys.stderr)
        return 1 if violations else 0
    if leaves is not None and not all(info["leaf"] for info in leaves.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
