"""Population training speed, measured side by side in one run.

Usage: python scripts/bench_training.py [--members 64] [--steps 300] [--torch-steps 100] [--quick]

1. P members of the 12-10-7-5-4-3-2 tanh network on tishby12 (Adam, batch
   512, as in Shwartz-Ziv & Tishby): model-steps per second of
   a. a plain PyTorch CPU loop training the P one after another (if torch is
      installed; benchmark-only, never a project dependency: pip install
      torch), at 1 thread and at the default thread count,
   b. the same jitted, scanned JAX step (``train.Trainer`` with one member)
      run P times in sequence,
   c. the vmapped population (every member its own mini-batches),
   d. the vmapped population with shared mini-batches (the first layer of
      every member reads the same input: one wide matrix product).
2. Overhead of the isotropic and cone transforms on a full training step of
   an MLP on mnist1d, against the same step without noise, and against the
   cost of drawing as many standard normals as the model has weights (the
   transforms draw one such vector per step): (t_noise - t_none) / t_draw.
3. Achieved GFLOP/s of population training (6 x weights x batch FLOPs per
   model-step: forward 2, backward 4) for the tishby net and a wide
   40-512-512-10 MLP, against this machine's f32 matmul peak measured here.
Training only (no estimators, no probes), compile time excluded, best of 3.
Uses ``ib_jax.config.Config`` and ``ib_jax.train.Trainer``; the trainer-free
scaling benchmark is scripts/bench_scale.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import jax
import numpy as np

from ib_jax import config, data, train

INF = float("inf")
TISHBY = config.ModelConf(widths=(10, 7, 5, 4, 3), activation="tanh")


def best_of(fn, repeat=3):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def quiet_cfg(model, batch, *, noise="none", shared=False, dataset="tishby12"):
    """A training-only config: no estimators, probes or diagnostics at the one evaluation."""
    return config.Config(
        dataset=config.DatasetConf(name=dataset),
        model=model,
        optimizer=config.OptimizerConf(name="adam", learning_rate=1e-3, batch_size=batch),
        noise=config.NoiseConf(kind=noise, snr=(1.0,)),
        estimator=dataclasses.replace(config.EstimatorConf(), names=(), include_output=False),
        logger=config.LoggerConf(wandb=False, progress=False),
        probe_size=0,
        diagnostics=(),
        shared_batches=shared,
        checkpoint=False,
    )


def jax_population(cfg, ds, members, steps, level=INF):
    tr = train.Trainer(cfg, ds)
    states = tr.init(train.population_grid(list(range(members)), [level]))
    return best_of(lambda: tr.run(states, [steps])[0].params)


def jax_sequential(cfg, ds, members, steps):
    tr = train.Trainer(cfg, ds)
    singles = [tr.init(train.population_grid([s], [INF])) for s in range(members)]
    return best_of(lambda: [tr.run(st, [steps])[0].params for st in singles], repeat=1)


def torch_sequential(ds, members, steps, batch, threads):
    import torch

    torch.set_num_threads(threads)
    x = torch.tensor(ds.x_train, dtype=torch.float32)
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


def matmul_peak(size=2048):
    a = jax.random.normal(jax.random.key(0), (size, size))
    f = jax.jit(lambda a: a @ a)
    t = best_of(lambda: f(a), repeat=5)
    return 2 * size**3 / t / 1e9


def n_weights(widths, n_in, n_out):
    sizes = [n_in, *widths, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--torch-steps", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="8 members, 60 steps (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.steps, args.torch_steps = 8, 60, 20
    P, S = args.members, args.steps
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}")
    ds = data.tishby12()
    rows = []
    try:
        import torch

        default_threads = torch.get_num_threads()
        rates = {th: P * args.torch_steps / torch_sequential(ds, P, args.torch_steps, 512, th) for th in sorted({1, default_threads})}
        best_th = max(rates, key=rates.get)
        other = ", ".join(f"{th} thread(s): {r:,.0f}/s" for th, r in rates.items() if th != best_th) or "one setting"
        rows.append((f"PyTorch {torch.__version__} CPU loop, one model after another ({best_th} thread(s); {other})", rates[best_th]))
    except ImportError:
        rows.append(("PyTorch CPU loop (torch not installed: pip install torch)", float("nan")))
    t_seq = jax_sequential(quiet_cfg(TISHBY, 512), ds, P, S)
    rows.append((f"JAX scanned step, {P} models in sequence", P * S / t_seq))
    t_pop = jax_population(quiet_cfg(TISHBY, 512), ds, P, S)
    rows.append(("JAX vmapped population, own batches", P * S / t_pop))
    t_shared = jax_population(quiet_cfg(TISHBY, 512, shared=True), ds, P, S)
    rows.append(("JAX vmapped population, shared batches", P * S / t_shared))
    base = rows[0][1] if np.isfinite(rows[0][1]) else rows[1][1]
    print(f"\n| {P} x 12-10-7-5-4-3-2 tanh on tishby12, Adam, batch 512 | model-steps/s | vs first row | vs JAX sequence |")
    print("| --- | ---: | ---: | ---: |")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.1f}x | {rate / rows[1][1]:.1f}x |")

    mn = data.mnist1d()
    wide = config.ModelConf(widths=(512, 512), activation="relu")
    small = config.ModelConf(widths=(64, 32, 16), activation="tanh")
    key = jax.random.key(0)
    print("\n| mnist1d MLP, Adam, 1 model | weights | batch | noise | step (ms) | overhead vs no noise | overhead / normal draw |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for label, mcfg, batch in [("40-64-32-16-10", small, 128), ("40-512-512-10", wide, 128), ("40-512-512-10", wide, 1024)]:
        n_w = n_weights(mcfg.widths, 40, 10) + sum(mcfg.widths) + 10  # weights and biases
        normal = jax.jit(lambda k, n=n_w: jax.random.normal(k, (n,)))
        t_draw = best_of(lambda: normal(key), repeat=20)
        t_none = None
        for kind in ("none", "isotropic", "cone"):
            tr = train.Trainer(quiet_cfg(mcfg, batch, noise=kind, dataset="mnist1d"), mn)
            st = tr.init(train.population_grid([0], [1.0 if kind != "none" else INF]))
            t = best_of(lambda: tr.run(st, [S])[0].params) / S
            t_none = t_none or t
            ratio = "" if kind == "none" else f"{(t - t_none) / t_draw:.2f}x"
            print(f"| {label} | {n_w:,} | {batch} | {kind} | {t * 1e3:.3f} | {100 * (t / t_none - 1):+.1f}% | {ratio} |")
        print(f"| (drawing {n_w:,} standard normals: {t_draw * 1e3:.3f} ms) | | | | | | |")

    peak = matmul_peak()
    print(f"\n| GFLOP/s of population training | members | GFLOP/s | fraction of f32 matmul peak ({peak:.1f} GFLOP/s) |")
    print("| --- | ---: | ---: | ---: |")
    gf = 6 * n_weights(TISHBY.widths, 12, 2) * 512 * P * S / t_shared / 1e9
    print(f"| tishby 12-10-7-5-4-3-2, batch 512, shared batches | {P} | {gf:.2f} | {gf / peak:.1%} |")
    for members in (8, 32):
        t = jax_population(quiet_cfg(wide, 128, shared=True, dataset="mnist1d"), mn, members, S // 3)
        gf = 6 * n_weights(wide.widths, 40, 10) * 128 * members * (S // 3) / t / 1e9
        print(f"| 40-512-512-10, batch 128, shared batches | {members} | {gf:.2f} | {gf / peak:.1%} |")


if __name__ == "__main__":
    main()
