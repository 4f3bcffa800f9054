"""The ``ib-jax`` command: ``ib-jax {train,aggregate,reestimate,claims} ...``.

Each subcommand is one module of this package with a ``main(argv)``; ``experiments/train.py`` and
``scripts/{aggregate,reestimate,claims}.py`` are thin entry points to the same functions, for a
checkout. ``ib-jax <command> --help`` prints a command's own usage.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# name -> (module, one line of help); a plain table, dispatched by name
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ib_jax.cli.train", "train a population (hydra overrides; -m for a sweep)"),
    "aggregate": ("ib_jax.cli.aggregate", "one table and cross-job plots over multirun / job directories"),
    "reestimate": ("ib_jax.cli.reestimate", "recompute estimators from a job's snapshots, no retraining"),
    "claims": ("ib_jax.cli.claims", "claims 1-5 of the science brief, every route, one report"),
}


def _usage() -> str:
    lines = ["usage: ib-jax <command> [args...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "ib-jax <command> --help: the command's own options (train: hydra's --help / --cfg job)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"ib-jax {version('ib-jax')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"ib-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"ib-jax {name}", *rest]
    rc = module.main(rest)
    return int(rc or 0)
