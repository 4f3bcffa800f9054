"""Turn one or more multirun (or job) directories into one table and cross-job plots.

Usage: python scripts/aggregate.py multirun/snr_sweep [more dirs...] [--out DIR] [--estimator binning]

Reads only local files (works offline): every job directory below the given
ones that holds a ``summary.json``; a job's *setting* is its hydra overrides
(``.hydra/overrides.yaml``). For every setting x noise level it reports the
mean and spread (std) over seeds of the final generalization gap (loss and
accuracy), of H(X|T) per layer, of the realized injected SNR and of SGD's own
SNR, and H(X|T) per layer at matched training loss (the first evaluation at which
each member reached the train loss that all members of its job reached). Writes ``aggregate.csv``, ``aggregate.md`` and PNGs (gap and H(X|T)
against the level, one line per setting) in ``--out`` (default: the first
directory), and prints the markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ib_jax import plots  # noqa: E402  (sets the Agg backend)

import matplotlib.pyplot as plt  # noqa: E402

EXCLUDE = ("hydra.", "logger.", "seeds=", "seed=")


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
    return sorted(jobs)


def setting_of(job_dir):
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return os.path.basename(job_dir)
    import yaml

    with open(path) as f:
        overrides = yaml.safe_load(f) or []
    kept = [o for o in overrides if not o.startswith(EXCLUDE)]
    return ",".join(kept) or "defaults"


def level_of(member):
    for key in ("snr", "sigma"):
        if key in member:
            return key, float(member[key])
    return "snr", float("nan")


def aggregate(roots, estimator="binning"):
    rows, layers_all = [], []
    for job in find_jobs(roots):
        with open(os.path.join(job, "summary.json")) as f:
            summary = json.load(f)
        setting = setting_of(job)
        by_level = {}
        for m in summary["members"]:
            name, lv = level_of(m)
            by_level.setdefault((name, lv), []).append(m)
        for (name, lv), members in sorted(by_level.items(), key=lambda kv: (np.isinf(kv[0][1]), kv[0][1])):
            ok = [m for m in members if not m.get("diverged")]
            prefix = f"final/{estimator}/h_x_given_t/"
            layers = [k[len(prefix):] for k in (ok or members)[0] if k.startswith(prefix)]
            layers_all = layers_all or layers

            def stat(key):
                v = np.array([m.get(key, np.nan) if m.get(key) is not None else np.nan for m in ok], float)
                return (float(np.nanmean(v)), float(np.nanstd(v))) if len(v) and np.isfinite(v).any() else (np.nan, np.nan)

            row = {"setting": setting, "job_dir": job, "level_name": name, "level": lv, "seeds": len(ok), "diverged": len(members) - len(ok)}
            for key, label in [("final/gap_loss", "gap_loss"), ("final/gap_accuracy", "gap_accuracy"), ("final/test_accuracy", "test_accuracy"),
                               ("final/noise_realized_snr", "realized_snr"), ("final/sgd_snr", "sgd_snr")]:
                row[f"{label}_mean"], row[f"{label}_std"] = stat(key)
            for layer in layers:
                row[f"h_x_given_t_{layer}_mean"], row[f"h_x_given_t_{layer}_std"] = stat(prefix + layer)
            # at matched training loss (per job: the loss all its members reached), claim 1 of the brief
            row["matched_step_mean"], row["matched_step_std"] = stat("matched/step")
            for layer in layers:
                row[f"matched_h_x_given_t_{layer}_mean"], row[f"matched_h_x_given_t_{layer}_std"] = stat(f"matched/{estimator}/h_x_given_t/{layer}")
            rows.append(row)
    return rows, layers_all


def markdown(rows, layers):
    def ms(r, k):
        m, s = r[f"{k}_mean"], r[f"{k}_std"]
        return "n/a" if not np.isfinite(m) else f"{m:.3f} ± {s:.3f}"

    head = (["setting", "level", "seeds", "gap loss", "gap acc", "realized SNR", "SGD SNR"] + [f"H(X|T) {l}" for l in layers]
            + [f"H(X|T) {l} at matched loss" for l in layers])
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["setting"], f"{r['level_name']}={plots.level_label(r['level'])}", f"{r['seeds']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else ""),
                 ms(r, "gap_loss"), ms(r, "gap_accuracy"), ms(r, "realized_snr"), ms(r, "sgd_snr")]
        cells += [ms(r, f"h_x_given_t_{l}") if f"h_x_given_t_{l}_mean" in r else "n/a" for l in layers]
        cells += [ms(r, f"matched_h_x_given_t_{l}") if f"matched_h_x_given_t_{l}_mean" in r else "n/a" for l in layers]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows, layers, out_dir):
    settings = sorted({r["setting"] for r in rows})
    paths = []
    panels = [("gap_loss", "test - train loss"), ("gap_accuracy", "train - test accuracy")] + [(f"h_x_given_t_{l}", f"H(X|T) {l} [bits]") for l in layers]
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for p, (key, label) in enumerate(panels):
        ax = axes[p // cols][p % cols]
        for s in settings:
            rs = [r for r in rows if r["setting"] == s and f"{key}_mean" in r]
            if not rs:
                continue
            xs = plots.level_positions([r["level"] for r in rs])
            ax.errorbar(xs, [r[f"{key}_mean"] for r in rs], yerr=[r[f"{key}_std"] for r in rs], marker="o", capsize=2, label=s)
            ax.set_xticks(xs, [plots.level_label(r["level"]) for r in rs])
        ax.set_xscale("log")
        ax.set_xlabel(rows[0]["level_name"])
        ax.set_ylabel(label)
    for k in range(len(panels), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("final values across jobs (mean ± std over seeds)")
    fig.tight_layout()
    path = os.path.join(out_dir, "aggregate.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", default=None)
    p.add_argument("--estimator", default="binning")
    args = p.parse_args(argv)
    rows, layers = aggregate(args.dirs, args.estimator)
    out = args.out or args.dirs[0]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "aggregate.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}, key=lambda k: (k not in ("setting", "level_name", "level", "seeds"), k)))
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows, layers)
    with open(os.path.join(out, "aggregate.md"), "w") as f:
        f.write(md + "\n")
    images = plot(rows, layers, out)
    print(md)
    print(f"\nwrote {os.path.join(out, 'aggregate.csv')}, {os.path.join(out, 'aggregate.md')}, " + ", ".join(images))


if __name__ == "__main__":
    main()
