"""Measured gap beside every generalization bound, for the main job's network: writes docs/bounds.md.

Three populations of the 12-10-7-5-4-3-2 tanh network on tishby12 (library API, CPU):

* the main job's own setting (``conf/config.yaml``: isotropic noise, Adam): only PAC-Bayes applies;
* ``noise=fixed`` at several sigma with plain SGD and the gradient clipped to norm 1: the
  noisy-iterative bound's assumptions hold;
* ``noise=dp_sgd`` at several noise multipliers: DP accounting, and the noisy-iterative bound.

Usage::

    python scripts/bounds_table.py [--steps 1000] [--seeds 6] [--out docs/bounds.md]

Every number is the mean [95% t-interval] over seeds at the end of training (``interval_cell``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ib_jax.config import from_hydra  # noqa: E402
from ib_jax.job.build import validate  # noqa: E402
from ib_jax.report.summary import interval_cell  # noqa: E402
from ib_jax.train import Trainer, train_population  # noqa: E402

COLUMNS = (
    ("gap_accuracy", "measured gap (0-1)"),
    ("bound/noisy_iterative_gap", "noisy-iterative bound on E[gap]"),
    ("bound/noisy_iterative_info", "I(S;W) bound [nats]"),
    ("bound/dp_epsilon", "DP ε (δ=1e-5)"),
    ("bound/dp_gap", "DP bound on E[gap]"),
    ("bound/pac_bayes_test_error", "Q test error (measured)"),
    ("bound/pac_bayes", "PAC-Bayes bound on Q's test error"),
    ("bound/pac_bayes_sigma", "chosen s"),
)

SETTINGS = {
    "main job (isotropic noise, SNR grid, Adam)": {"noise": {"kind": "isotropic", "snr": [float("inf"), 10.0, 1.0, 0.1]}},
    "fixed Gaussian noise, SGD lr 0.3, clip_norm 1, batch 256": {
        "noise": {"kind": "fixed", "snr": [0.0, 0.3, 1.0, 3.0]},
        "optimizer": {"name": "sgd", "learning_rate": 0.3, "clip_norm": 1.0, "batch_size": 256},
    },
    "DP-SGD, clip 1, SGD lr 0.3, batch 256": {
        "noise": {"kind": "dp_sgd", "snr": [0.5, 1.0, 4.0], "clip": 1.0},
        "optimizer": {"name": "sgd", "learning_rate": 0.3, "batch_size": 256},
    },
}


def _cell(v: np.ndarray) -> str:
    v = np.asarray(v, float)
    if np.isinf(v).any():
        return "inf"
    if np.isfinite(v).any() and np.nanmax(np.abs(v)) >= 1e3:
        return f"{np.nanmean(v):.3g}"
    return interval_cell(v)


def table(name, over, steps, seeds) -> list[str]:
    base = {"steps": steps, "seeds": seeds, "n_evals": 4, "estimator": {"names": []}, "probe_size": 0, "diagnostics": []}
    built = validate(from_hydra({**base, **over}))
    t0 = time.time()
    tr = Trainer(built.config, built.dataset)
    res = train_population(built.config, built.dataset, built.population, trainer=tr)
    level_name = built.noise_kind.level_name
    cols = [(k, h) for k, h in COLUMNS if k in res.metrics]
    levels = np.array([m["level"] for m in res.members])
    lines = [
        f"### {name}",
        "",
        f"{seeds} seeds x {len(set(levels))} levels, {steps} steps, {len(built.dataset.y_train)} training rows, "
        f"{tr.n_params} parameters ({time.time() - t0:.0f} s). Not computed: "
        + ("; ".join(f"`{b}`: {why}" for b, why in tr.bounds_skipped.items()) or "none"),
        "",
        f"| {level_name} | " + " | ".join(h for _, h in cols) + " |",
        "|" + " --- |" * (1 + len(cols)),
    ]
    for lv in sorted(set(levels), key=lambda v: (np.isinf(v), v)):
        sel = levels == lv
        lines.append(f"| {lv:g} | " + " | ".join(_cell(res.final(k)[sel]) for k, _ in cols) + " |")
    return lines + [""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bounds.md"))
    args = ap.parse_args(argv)
    lines = [
        "# Measured gap beside the generalization bounds",
        "",
        f"Written by `python scripts/bounds_table.py --steps {args.steps} --seeds {args.seeds}` (CPU). "
        "Mean [95% t-interval over seeds] at the end of training. The noisy-iterative and DP bounds bound the "
        "*expected* gap (compare with the gap's mean); PAC-Bayes bounds the test error of the stochastic network "
        "Q = N(W, s^2 I) (compare with Q's measured test error). inf: no noise, no bound. See `ib_jax/bounds/`.",
        "",
    ]
    for name, over in SETTINGS.items():
        lines += table(name, over, args.steps, args.seeds)
        print("\n".join(lines[-12:]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
