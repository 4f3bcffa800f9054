"""Re-estimate a finished job's information quantities from its snapshots, without retraining.

Usage:
    python scripts/reestimate.py JOB_DIR [estimator.KEY=VALUE ...] [--range whole_run] [--per-unit]
                                 [--range-over member|population] [--force] [--quiet]

    # the job's own settings again (reproduces its metrics.jsonl)
    python scripts/reestimate.py outputs/default/default
    # other estimators and settings
    python scripts/reestimate.py JOB estimator.names=[knn,kde] estimator.knn.k=5
    python scripts/reestimate.py JOB estimator.binning.n_bins=100 estimator.binning.lo=null estimator.binning.hi=null
    # binning with the range fixed over the whole run (per layer; --per-unit: per unit)
    python scripts/reestimate.py JOB estimator.range=whole_run estimator.binning.n_bins=30

The job must have run with ``snapshots=true``. Overrides are hydra-style dotted keys of the
``estimator`` group (also ``paths.*`` and ``plugins``), merged into the job's recorded config and
checked like a job's. Results go to ``JOB_DIR/reestimate/<tag>/`` (metrics.jsonl, summary.json,
summary.md, plots/, reestimate.json); the job's own files are only read. Running the same
command again reports the existing results; ``--force`` recomputes them. See
ib_jax/job/reestimate.py and docs/estimators.md ("Re-estimation from snapshots").
Exit status: 0 computed or already there, 2 a refused setting or a busy directory.
"""

from __future__ import annotations

import argparse
import os
import sys

from ib_jax.job import reestimate as RE
from ib_jax.job import reestimate_run as RR
from ib_jax.job.lock import JobLocked
from ib_jax.job.run import setup_compilation_cache

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job_dir", help="a job directory written with snapshots=true")
    p.add_argument("overrides", nargs="*", help="estimator.KEY=VALUE (hydra style), e.g. estimator.names=[knn,kde]")
    p.add_argument(
        "--range",
        default=None,
        choices=["config", "whole_run"],
        help="binning range: config (estimator.binning.lo/hi as set) or whole_run (fixed over the run); same as estimator.range=...",
    )
    p.add_argument("--per-unit", action="store_true", help="whole-run range per unit instead of per layer")
    p.add_argument(
        "--range-over",
        default="member",
        choices=["member", "population"],
        help="whole-run range of each member's run, or over all members (same edges for every member)",
    )
    p.add_argument("--force", action="store_true", help="recompute a re-estimation that already exists")
    p.add_argument("--no-compile-cache", action="store_true", help="do not use JAX's persistent compilation cache")
    p.add_argument("--quiet", action="store_true")
    return p.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    try:
        alias = RE.split_overrides(args.overrides)[1]  # estimator.range=... is the same option as --range
        if args.range and alias and args.range != alias:
            raise ValueError(f"estimator.range={alias} conflicts with --range {args.range}")
        options = RE.Options(range=args.range or alias or "config", per_unit=args.per_unit, range_over=args.range_over)
        if not args.no_compile_cache:
            setup_compilation_cache(RE.resolve_config(RE.load_job(args.job_dir).config_dict, RE.split_overrides(args.overrides)[0]))
        res = RR.run(args.job_dir, args.overrides, options=options, force=args.force, log=None if args.quiet else print)
    except (ValueError, JobLocked) as e:
        print(f"[reestimate] error: {e}", file=sys.stderr)
        return 2
    print(res["dir"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
