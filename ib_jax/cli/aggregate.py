"""Turn one or more multirun (or job) directories into one table and cross-job plots.

Usage: python scripts/aggregate.py multirun/snr_sweep [more dirs...] [--out DIR] [--estimator NAME]
       [--formats png,pdf] [--dpi 150]

Reads only local files (works offline): every job directory below the given
ones that holds a ``summary.json``; a job's *setting* is its hydra overrides
(``.hydra/overrides.yaml``). A setting found in two directories (the same config fingerprint
in ``job_config.json``, else the same overrides: a copied job directory, a sweep run twice
into different directories) is warned about and counted once. For every setting x noise level it reports the
mean over seeds with its 95% Student-t interval (and the std) of the final generalization gap (loss and
accuracy), of H(X|T) per layer, of the realized injected SNR and of SGD's own
SNR, and H(X|T) per layer at matched training loss (the first evaluation at which
each member reached the train loss that all members of its job reached). H(X|T) is the
``--estimator``'s; by default each job's first binning estimator, else the first with I(X;T) and
I(T;Y), else the first recorded (the rule of a job's own plots, ``plots.estimator``). Writes
``aggregate.csv``, ``aggregate.md`` and the figure ``aggregate.<format>`` for each of ``--formats``
(gap and H(X|T) against the level, one curve per setting, one block of panels per level name:
settings of different noise kinds never share an x axis; legend: only the overrides that differ,
title: those common to all) in ``--out`` (default: the first directory), and prints the markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np
import yaml

from ib_jax import config as C
from ib_jax.job.records import loads_strict
from ib_jax.report import plots
from ib_jax.report.figures import settings_figures
from ib_jax.report.stats import paired_difference, t_interval
from ib_jax.report.summary import paired_by_seed, reference_level

# a setting is the job's overrides less the result-neutral ones (ib_jax.config.RESULT_NEUTRAL_KEYS) and
# the seeds, which aggregation pools
POOLED = ("seeds", "seed")


def find_jobs(roots):
    jobs = []
    for root in roots:
        if not os.path.isdir(root):
            raise SystemExit(f"aggregate: no such directory {root!r}")
        for dirpath, _, files in os.walk(root):
            if "summary.json" in files:
                jobs.append(dirpath)
    if not jobs:
        raise SystemExit(f"aggregate: no summary.json below {roots} (did the jobs finish?)")
    by_path = {}
    for job in sorted(jobs):
        by_path.setdefault(os.path.realpath(job), job)  # one job reached from two roots is one job
    return sorted(by_path.values())


def setting_key(job_dir):
    """What identifies a job's setting: the config fingerprint fixed at its first launch
    (``job_config.json``), else its overrides (jobs written before the fingerprint existed)."""
    path = os.path.join(job_dir, "job_config.json")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                return "config fingerprint", str(json.load(f)["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(
                f"aggregate: warning: {path} is unreadable ({type(e).__name__}: {e}); identifying the job by its overrides", file=sys.stderr
            )
    return "overrides", setting_of(job_dir)


def _is_original(job_dir):
    """Whether the job ran in this directory (its summary names it), not in a copy of it."""
    try:
        with open(os.path.join(job_dir, "summary.json"), encoding="utf-8") as f:
            recorded = json.load(f).get("output_dir")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(recorded) and os.path.realpath(recorded) == os.path.realpath(job_dir)


def unique_settings(jobs):
    """One job per setting: a setting found in several directories (a copied or re-run job
    directory) would be counted twice as if it were more seeds. Keeps the directory the job
    ran in (else the first by path), warns naming the others."""
    groups = {}
    for job in jobs:
        groups.setdefault(setting_key(job), []).append(job)
    kept = []
    for (how, key), group in groups.items():
        keep = min(group, key=lambda j: (not _is_original(j), j))
        kept.append(keep)
        for other in sorted(set(group) - {keep}):
            print(
                f"aggregate: warning: the setting of {other} appears twice (same {how} {key[:64]} as {keep}); counted once, from {keep}",
                file=sys.stderr,
            )
    return sorted(kept)


def setting_of(job_dir):
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return os.path.basename(job_dir)
    with open(path) as f:
        overrides = yaml.safe_load(f) or []
    kept = [o for o in overrides if not (C.is_result_neutral(o.split("=", 1)[0]) or o.split("=", 1)[0].lstrip("+~") in POOLED)]
    return ",".join(kept) or "defaults"


def level_of(member):
    for key in ("snr", "sigma", "p"):
        if key in member:
            return key, float(member[key])
    return "snr", float("nan")


def recorded_estimators(member) -> dict[str, set[str]]:
    """``{estimator: {quantity, ...}}`` of a member's ``final/<estimator>/<quantity>/<layer>`` keys, in record order."""
    found: dict[str, set[str]] = {}
    for k in member:
        parts = k.split("/")
        if len(parts) >= 4 and parts[0] == "final" and parts[1] != "bound":
            found.setdefault(parts[1], set()).add(parts[2])
    return found


def job_estimator(members, requested=None):
    """The estimator whose H(X|T) a job's rows report: ``requested``, else the plots' rule
    (:func:`ib_jax.report.plots.select_estimator`) over the estimators its summary recorded."""
    found = recorded_estimators(next((m for m in members if not m.get("diverged")), members[0])) if members else {}
    available = {f"{e}/{q}" for e, qs in found.items() for q in qs}
    return plots.select_estimator(list(found), available, requested)


def aggregate(roots, estimator=None):
    """``(rows, layers)``: one row per setting x level (see the module docstring); ``estimator``
    None: each job's by :func:`job_estimator`'s rule."""
    rows, layers_all = [], []
    for job in unique_settings(find_jobs(roots)):
        path = os.path.join(job, "summary.json")
        try:
            with open(path, encoding="utf-8") as f:
                summary = loads_strict(f.read())  # strict JSON: the level "inf" comes back as a float
            members = summary["members"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # a truncated or foreign file: say which, go on
            print(
                f"aggregate: warning: skipping {path}: unreadable ({type(e).__name__}: {e}); relaunch the job's command to rebuild "
                "it from its metrics.jsonl",
                file=sys.stderr,
            )
            continue
        setting = setting_of(job)
        est = job_estimator(members, estimator) or "binning"
        by_level = {}
        for m in members:
            name, lv = level_of(m)
            by_level.setdefault((name, lv), []).append(m)
        # each level is compared with the job's reference level (no noise) by the paired difference of same-seed members
        ref = reference_level([lv for _, lv in by_level], next(iter(by_level))[0]) if by_level else None
        for (name, lv), members in sorted(by_level.items(), key=lambda kv: (np.isinf(kv[0][1]), kv[0][1])):
            ok = [m for m in members if not m.get("diverged")]
            prefix = f"final/{est}/h_x_given_t/"
            layers = [k[len(prefix) :] for k in (ok or members)[0] if k.startswith(prefix)]
            layers_all = layers_all or layers

            row = {
                "setting": setting,
                "job_dir": job,
                "level_name": name,
                "level": lv,
                "estimator": est,
                "seeds": len(ok),
                "diverged": len(members) - len(ok),
            }

            def put(label, key, row=row, ok=ok, name=name, lv=lv):
                """``{label}_mean``, ``_std`` and the 95% Student-t interval ``_lo``, ``_hi`` over seeds (NaN for one seed);
                at a level other than the reference, ``d_{label}_mean/_lo/_hi/_p``: the paired difference (same seed) to it."""
                v = np.array([np.nan if m.get(key) is None else float(m[key]) for m in ok], float)
                v = v[np.isfinite(v)]
                iv = t_interval(v) if len(v) else None
                row[f"{label}_mean"] = float(iv.mean) if iv is not None else np.nan
                row[f"{label}_std"] = float(np.std(v)) if len(v) else np.nan
                row[f"{label}_lo"], row[f"{label}_hi"] = (float(iv.lo), float(iv.hi)) if len(v) > 1 else (np.nan, np.nan)
                if ref is not None and lv != ref:
                    d = paired_difference(*paired_by_seed(summary["members"], name, lv, ref, key))
                    row[f"d_{label}_mean"], row[f"d_{label}_lo"], row[f"d_{label}_hi"], row[f"d_{label}_p"] = (
                        float(d.mean),
                        float(d.lo),
                        float(d.hi),
                        float(d.p_value),
                    )

            for key, label in [
                ("final/gap_loss", "gap_loss"),
                ("final/gap_accuracy", "gap_accuracy"),
                ("final/test_accuracy", "test_accuracy"),
                ("final/noise_realized_snr", "realized_snr"),
                ("final/sgd_snr", "sgd_snr"),
            ]:
                put(label, key)
            for layer in layers:
                put(f"h_x_given_t_{layer}", prefix + layer)
            # at matched training loss (per job: the loss all its members reached), claim 1 of the brief
            put("matched_step", "matched/step")
            for layer in layers:
                put(f"matched_h_x_given_t_{layer}", f"matched/{est}/h_x_given_t/{layer}")
            rows.append(row)
    return rows, layers_all


def markdown(rows, layers):
    def ms(r, k):
        m, lo, hi = r[f"{k}_mean"], r.get(f"{k}_lo", np.nan), r.get(f"{k}_hi", np.nan)
        if not np.isfinite(m):
            return "n/a"
        return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{m:.3f} (n=1)"

    def paired(r, k):
        m, lo, hi, p = (r.get(f"d_{k}_{s}", np.nan) for s in ("mean", "lo", "hi", "p"))
        if not np.isfinite(m):
            return "n/a"
        return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] p={p:.2g}" if np.isfinite(lo) else f"{m:+.3f} (n=1)"

    head = (
        ["setting", "level", "seeds", "gap loss", "gap acc", "realized SNR", "SGD SNR"]
        + [f"H(X|T) {l}" for l in layers]
        + [f"H(X|T) {l} at matched loss" for l in layers]
    )
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [
            r["setting"],
            f"{r['level_name']}={plots.level_label(r['level'])}",
            f"{r['seeds']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else ""),
            ms(r, "gap_loss"),
            ms(r, "gap_accuracy"),
            ms(r, "realized_snr"),
            ms(r, "sgd_snr"),
        ]
        cells += [ms(r, f"h_x_given_t_{l}") if f"h_x_given_t_{l}_mean" in r else "n/a" for l in layers]
        cells += [ms(r, f"matched_h_x_given_t_{l}") if f"matched_h_x_given_t_{l}_mean" in r else "n/a" for l in layers]
        out.append("| " + " | ".join(cells) + " |")
    ests = sorted({r.get("estimator", "binning") for r in rows})
    out = [
        f"mean [95% t-interval over seeds: mean ± t(0.975, n-1) s/√n]; n=1: one seed, no interval; H(X|T) by {', '.join(ests)}",
        "",
    ] + out
    diffs = [r for r in rows if "d_gap_loss_mean" in r]
    if diffs:
        head = ["setting", "level", "Δ gap loss", "Δ gap acc"] + [f"Δ H(X|T) {l}" for l in layers]
        out += [
            "",
            "paired difference vs each job's reference level (no noise: snr=inf, sigma/p=0, else the first level): members "
            "with the same seed, level minus reference, mean [95% paired t-interval] and the paired t-test's p-value",
            "",
            "| " + " | ".join(head) + " |",
            "|" + " --- |" * len(head),
        ]
        for r in diffs:
            cells = [r["setting"], f"{r['level_name']}={plots.level_label(r['level'])}", paired(r, "gap_loss"), paired(r, "gap_accuracy")]
            cells += [paired(r, f"h_x_given_t_{l}") for l in layers]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows, layers, out_dir, formats=("png",), dpi=150):
    """The cross-job figure (:func:`ib_jax.report.figures.draw_settings`) as ``aggregate.<format>``."""
    return settings_figures(rows, layers, out_dir, "aggregate", formats=formats, dpi=dpi)


def main(argv=None) -> int:
    defaults = C.PlotsConf()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", default=None)
    p.add_argument(
        "--estimator",
        default=None,
        help="the estimator whose H(X|T) is reported; default: per job, the first binning estimator, else the first with I(X;T) and I(T;Y)",
    )
    p.add_argument(
        "--formats", default=",".join(defaults.formats), help=f"figure formats, comma-separated, among {','.join(plots.FORMATS)}"
    )
    p.add_argument("--dpi", type=int, default=defaults.dpi, help="PNG resolution")
    args = p.parse_args(argv)
    try:
        formats = plots.plot_formats([f for f in args.formats.split(",") if f.strip()])
    except ValueError as e:
        p.error(str(e).replace("plots.formats", "--formats"))
    if args.dpi <= 0:
        p.error(f"--dpi must be a positive integer, got {args.dpi}")
    rows, layers = aggregate(args.dirs, args.estimator)
    if not rows:
        raise SystemExit(f"aggregate: no readable summary.json below {args.dirs} (see the warnings above)")
    out = args.out or args.dirs[0]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "aggregate.csv"), "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=sorted({k for r in rows for k in r}, key=lambda k: (k not in ("setting", "level_name", "level", "seeds"), k))
        )
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows, layers)
    with open(os.path.join(out, "aggregate.md"), "w") as f:
        f.write(md + "\n")
    images = plot(rows, layers, out, formats, args.dpi)
    print(md)
    print(f"\nwrote {os.path.join(out, 'aggregate.csv')}, {os.path.join(out, 'aggregate.md')}, " + ", ".join(images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
