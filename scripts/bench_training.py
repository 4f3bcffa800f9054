"""Population training speed, measured side by side in one run.

Usage: python scripts/bench_training.py [--members 64] [--steps 300] [--torch-steps 100]

1. 64 members of the 12-10-7-5-4-3-2 tanh network on tishby12 (Adam, batch
   512, as in Shwartz-Ziv & Tishby): model-steps per second of
   a. a plain PyTorch CPU loop training the 64 one after another (if torch is
      installed; benchmark-only, never a project dependency),
   b. the same jitted, scanned JAX step run 64 times in sequence,
   c. the vmapped population (every member its own mini-batches),
   d. the vmapped population with shared mini-batches (the first layer of
      every member reads the same input: one wide matrix product).
2. Overhead of the isotropic and cone transforms on a full training step of
   an MLP on mnist1d (same step without noise as the baseline).
3. Achieved GFLOP/s of population training (6 x weights x batch FLOPs per
   model-step: forward 2, backward 4) for the tishby net and a wide
   40-512-512-10 MLP, against this machine's f32 matmul peak measured here.
Training only (no evaluation), compile time excluded, best of 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

from ib_jax import data, models, train

INF = float("inf")
TISHBY = models.ModelConfig(widths=(10, 7, 5, 4, 3), activation="tanh")


def best_of(fn, repeat=3):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def quiet_cfg(**kw):
    return train.TrainConfig(probe_size=0, n_evals=1, estimators=train.EstimatorConfig(names=()), **kw)


def jax_population(model_cfg, cfg, ds, members, steps):
    tr = train.Trainer(model_cfg, cfg, ds)
    states = tr.init(train.population_grid(list(range(members)), [INF]))
    return best_of(lambda: tr.run(states, [steps])[0].params)


def jax_sequential(model_cfg, cfg, ds, members, steps):
    tr = train.Trainer(model_cfg, cfg, ds)
    singles = [tr.init(train.population_grid([s], [INF])) for s in range(members)]
    return best_of(lambda: [tr.run(st, [steps])[0].params for st in singles], repeat=1)


def torch_sequential(ds, members, steps, batch, threads=None):
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    x = torch.tensor(ds.x_train)
    y = torch.tensor(ds.y_train, dtype=torch.long)
    t0 = time.perf_counter()
    for m in range(members):
        torch.manual_seed(m)
        layers, sizes = [], [12, 10, 7, 5, 4, 3]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(3, 2))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(steps):
            idx = torch.randint(0, len(y), (batch,))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def matmul_peak():
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    f = jax.jit(lambda a: a @ a)
    t = best_of(lambda: f(a), repeat=5)
    return 2 * 2048**3 / t / 1e9


def n_weights(model_cfg, n_in, n_out):
    sizes = [n_in, *model_cfg.widths, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--torch-steps", type=int, default=100)
    args = p.parse_args(argv)
    P, S = args.members, args.steps
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}")
    ds = data.tishby12()
    cfg = quiet_cfg(optimizer="adam", learning_rate=1e-3, batch_size=512)
    rows = []
    try:
        import torch

        default_threads = torch.get_num_threads()
        t1 = torch_sequential(ds, P, args.torch_steps, 512, threads=1)
        tn = torch_sequential(ds, P, args.torch_steps, 512, threads=default_threads)
        # the baseline is the faster of the two thread settings
        best = min((t1, 1), (tn, default_threads))
        rows.append((f"PyTorch CPU loop, one model after another ({best[1]} thread(s); "
                     f"other setting: {P * args.torch_steps / max(t1, tn):,.0f}/s)", P * args.torch_steps / best[0]))
    except ImportError:
        rows.append(("PyTorch CPU loop (torch not installed: pip install torch==2.13.0)", float("nan")))
    t_seq = jax_sequential(TISHBY, cfg, ds, P, S)
    rows.append(("JAX scanned step, 64 models in sequence", P * S / t_seq))
    t_pop = jax_population(TISHBY, cfg, ds, P, S)
    rows.append(("JAX vmapped population, own batches", P * S / t_pop))
    cfg_shared = quiet_cfg(optimizer="adam", learning_rate=1e-3, batch_size=512, shared_batches=True)
    t_shared = jax_population(TISHBY, cfg_shared, ds, P, S)
    rows.append(("JAX vmapped population, shared batches", P * S / t_shared))
    base = rows[0][1] if np.isfinite(rows[0][1]) else rows[1][1]
    print(f"\n| {P} x 12-10-7-5-4-3-2 tanh on tishby12, Adam, batch 512 | model-steps/s | vs first row |")
    print("| --- | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.1f}x |")

    mn = data.mnist1d()
    wide = models.ModelConfig(widths=(512, 512), activation="relu")
    small = models.ModelConfig(widths=(64, 32, 16), activation="tanh")
    print("\n| mnist1d MLP, Adam, 1 model | weights | batch | noise | step (ms) | overhead vs no noise |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for label, mcfg, batch in [("40-64-32-16-10 (model=tanh_mlp)", small, 128), ("40-512-512-10 (model=wide_mlp)", wide, 128),
                               ("40-512-512-10 (model=wide_mlp)", wide, 1024)]:
        t_none = None
        for kind in ("none", "isotropic", "cone"):
            c = quiet_cfg(optimizer="adam", learning_rate=1e-3, batch_size=batch, noise=train.NoiseConfig(kind=kind))
            tr = train.Trainer(mcfg, c, mn)
            st = tr.init(train.population_grid([0], [1.0]))
            t = best_of(lambda: tr.run(st, [S])[0].params) / S
            t_none = t_none or t
            print(f"| {label} | {n_weights(mcfg, 40, 10):,} | {batch} | {kind} | {t * 1e3:.3f} | {100 * (t / t_none - 1):+.1f}% |")
    key = jax.random.key(0)
    normal = jax.jit(lambda k: jax.random.normal(k, (n_weights(wide, 40, 10),)))
    print(f"(floor: drawing {n_weights(wide, 40, 10):,} standard normals with threefry takes "
          f"{best_of(lambda: normal(key)) * 1e3:.3f} ms)")

    peak = matmul_peak()
    print(f"\n| GFLOP/s of population training | members | GFLOP/s | fraction of f32 matmul peak ({peak:.1f} GFLOP/s) |")
    print("| --- | ---: | ---: | ---: |")
    flops_tishby = 6 * n_weights(TISHBY, 12, 2) * 512
    gf = flops_tishby * P * S / t_shared / 1e9
    print(f"| tishby 12-10-7-5-4-3-2, batch 512, shared batches | {P} | {gf:.2f} | {gf / peak:.1%} |")
    for members in (8, 32):
        c = quiet_cfg(optimizer="adam", learning_rate=1e-3, batch_size=128, shared_batches=True)
        t = jax_population(wide, c, mn, members, S // 3)
        gf = 6 * n_weights(wide, 40, 10) * 128 * members * (S // 3) / t / 1e9
        print(f"| 40-512-512-10, batch 128, shared batches | {members} | {gf:.2f} | {gf / peak:.1%} |")


if __name__ == "__main__":
    main()
