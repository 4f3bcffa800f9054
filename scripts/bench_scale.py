"""Population throughput and memory at scale, against the device's own matmul peak.

Usage: python scripts/bench_scale.py [--sizes 1,4,16,64,256,1024,4096] [--quick] [--out results.json]
                                     [--steps N] [--no-torch] [--only tishby,mnist,cifar,estimators]

Independent of ``ib_jax.train`` (a minimal jitted loop of its own, so it
measures the population pattern itself): every model is a flax module, the
optimizer optax Adam, and one call trains P members for S steps as
``jit(vmap(member_run))`` with ``member_run`` a ``lax.scan`` over S steps that
draws the member's own mini-batch (indices from the member's key) each step.

Rows:
1. peak: a large float32 ``jnp`` matmul at default precision (the precision
   the training uses; TF32 tensor cores on recent NVIDIA GPUs), in GFLOP/s.
2. tishby: the 12-10-7-5-4-3-2 tanh MLP on tishby12-like data (all 4,096
   12-bit inputs as +-1, a fixed random binary rule), Adam, batch 512, at
   P = 1 ... 4,096 members (``--sizes``): model-steps/s, GFLOP/s (XLA's cost
   analysis of one population step), fraction of the matmul peak, and device
   memory: the compiled program's footprint (arguments + outputs + temporaries,
   from XLA's memory analysis) and, where the device reports it
   (``memory_stats()``, GPUs), the process's running peak after the run.
   With torch importable, the same population on the same device in PyTorch:
   a per-member loop (``torch.optim.Adam`` per model) and a ``torch.func``
   population (``functional_call`` vmapped over stacked parameters, one Adam
   over the stacked tensors: the same per-member update).
3. mnist: a 784-1024-20-20-20-10 ReLU MLP on synthetic 28x28 inputs, batch
   128, P = 1 ... 64.
4. cifar: a small CNN (conv 3x3x32, pool, conv 3x3x64, pool, dense 128, 10)
   on synthetic 32x32x3 inputs, batch 128, P = 1 ... 64.
5. estimators at n = 4,096 and 60,000: binned I(X;T), I(T;Y) of a width-10
   layer, Kozachenko-Leonenko entropy (d = 10) and the KDE upper bound
   (d = 10): evaluations/s, and for the pairwise ones GFLOP/s counted as
   2 n^2 (d + 1) (the distance matmul) against the peak. Binning is
   sort-bound: no FLOP rate.
Synthetic data of the right shapes throughout: the rates do not depend on the
values. Compile time is excluded (warm-up call); times are best of 2 (--quick: 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ib_jax import estimators as E

# ------------------------------------------------------------------ helpers


REPEAT = [2]  # timed calls after the warm-up (--quick: 1)


def timed(fn, repeat=None):
    """(best seconds of ``repeat`` calls after one warm-up, last output)."""
    repeat = repeat or REPEAT[0]
    out = jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out


def device_peak_bytes():
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def program_bytes(compiled):
    """Arguments + outputs + temporaries of a compiled program (XLA's memory analysis)."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def program_flops(lowered_or_compiled):
    try:
        cost = lowered_or_compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", float("nan")))
    except Exception:
        return float("nan")


def matmul_peak(size):
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    t, _ = timed(lambda: f(a), repeat=5)
    return 2 * size**3 / t / 1e9


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def fmt_bytes(b):
    return "n/a" if b is None else f"{b / 2**20:,.1f} MiB"


# ------------------------------------------------------------------- models


class MLP(nn.Module):
    widths: tuple[int, ...]
    n_out: int
    act: str = "tanh"

    @nn.compact
    def __call__(self, x):
        f = jnp.tanh if self.act == "tanh" else nn.relu
        for w in self.widths:
            x = f(nn.Dense(w)(x))
        return nn.Dense(self.n_out)(x)


class SmallCNN(nn.Module):
    n_out: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.n_out)(x)


def tishby_like_data():
    """All 4,096 12-bit inputs as +-1 and a fixed random rule (about half the labels 1)."""
    bits = (np.arange(4096)[:, None] >> np.arange(12)[None, :]) & 1
    x = (2.0 * bits - 1.0).astype(np.float32)
    w = np.random.default_rng(0).normal(size=12)
    y = (np.tanh(x @ w) + 0.3 * np.sin(3 * x @ w) > 0).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def synthetic(n, shape, n_classes, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (n, *shape)), jax.random.randint(k2, (n,), 0, n_classes)


def make_population(model, x, y, batch, steps, lr=1e-3):
    """(init(keys) -> states, run(states, keys) -> (states, last losses), one_step(states, keys))."""
    tx = optax.adam(lr)
    n = x.shape[0]

    def init(key):
        params = model.init(key, x[:1])["params"]
        return params, tx.init(params)

    def loss_fn(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": params}, xb), yb).mean()

    def step(state, key):
        params, opt = state
        idx = jax.random.randint(key, (batch,), 0, n)  # the member's own mini-batch
        loss, g = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
        upd, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd), opt), loss

    def run(state, key):
        state, losses = jax.lax.scan(step, state, jax.random.split(key, steps))
        return state, losses[-1]

    return jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run)), jax.jit(jax.vmap(step))


def bench_population(name, model, x, y, batch, steps, sizes, peak):
    rows = []
    for p in sizes:
        init, run, one_step = make_population(model, x, y, batch, steps)
        keys = jax.random.split(jax.random.key(p), p)
        try:
            states = init(keys)
            compiled = run.lower(states, keys).compile()
            flops_step = program_flops(one_step.lower(states, keys))  # one population step (HLO cost analysis, no compile)
            t, _ = timed(lambda: compiled(states, keys))
        except Exception as e:  # out of memory at the largest sizes
            print(f"  {name} P={p}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})", flush=True)
            rows.append({"benchmark": name, "members": p, "error": type(e).__name__})
            break
        gflops = flops_step * steps / t / 1e9
        row = {
            "benchmark": name,
            "members": p,
            "steps": steps,
            "batch": batch,
            "seconds": t,
            "model_steps_per_s": p * steps / t,
            "gflops": gflops,
            "fraction_of_peak": gflops / peak,
            "program_bytes": program_bytes(compiled),
            "device_peak_bytes": device_peak_bytes(),
        }
        rows.append(row)
        print(f"  {name} P={p}: {fmt_rate(row['model_steps_per_s'])} model-steps/s, {gflops:.1f} GFLOP/s", flush=True)
    return rows


# -------------------------------------------------------------------- torch


def torch_tishby(x, y, sizes, steps, batch, loop_max):
    """The tishby population in PyTorch on the same device: per-member loop and torch.func."""
    import torch
    from torch.func import functional_call, stack_module_state

    dev = "cuda" if torch.cuda.is_available() and jax.devices()[0].platform == "gpu" else "cpu"
    xt = torch.tensor(np.asarray(x), device=dev)
    yt = torch.tensor(np.asarray(y), dtype=torch.long, device=dev)
    n = len(yt)

    def net():
        layers, sizes_ = [], [12, 10, 7, 5, 4, 3]
        for a, b in zip(sizes_[:-1], sizes_[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        return torch.nn.Sequential(*layers, torch.nn.Linear(3, 2)).to(dev)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    rows = []
    for p in sizes:
        # per-member loop (capped: it is linear in P by construction)
        if p <= loop_max:
            nets = [net() for _ in range(p)]
            opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in nets]

            def loop(k):
                for m, o in zip(nets, opts):
                    for _ in range(k):
                        idx = torch.randint(0, n, (batch,), device=dev)
                        o.zero_grad()
                        torch.nn.functional.cross_entropy(m(xt[idx]), yt[idx]).backward()
                        o.step()
                sync()

            loop(2)
            t0 = time.perf_counter()
            loop(steps)
            t = time.perf_counter() - t0
            rows.append(
                {
                    "benchmark": "tishby_torch_loop",
                    "members": p,
                    "steps": steps,
                    "seconds": t,
                    "model_steps_per_s": p * steps / t,
                    "device": dev,
                }
            )
        # torch.func population: stacked parameters, vmapped forward, one Adam on the stack
        base = net().to("meta")
        params, _ = stack_module_state([net() for _ in range(p)])
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        opt = torch.optim.Adam(list(params.values()), lr=1e-3)

        def fwd(pr, xb):
            return functional_call(base, pr, (xb,))

        vfwd = torch.func.vmap(fwd)

        def pop(k):
            for _ in range(k):
                idx = torch.randint(0, n, (p, batch), device=dev)  # every member its own batch
                logits = vfwd(params, xt[idx])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), yt[idx].reshape(-1)) * p
                opt.zero_grad()
                loss.backward()  # members are independent: the gradient of the sum is per-member
                opt.step()
            sync()

        pop(2)
        t0 = time.perf_counter()
        pop(steps)
        t = time.perf_counter() - t0
        rows.append(
            {
                "benchmark": "tishby_torch_func",
                "members": p,
                "steps": steps,
                "seconds": t,
                "model_steps_per_s": p * steps / t,
                "device": dev,
            }
        )
        print(
            f"  torch P={p}: " + ", ".join(f"{r['benchmark']} {r['model_steps_per_s']:,.0f}/s" for r in rows if r["members"] == p),
            flush=True,
        )
    return rows


# --------------------------------------------------------------- estimators


def bench_estimators(ns, peak, knn_max_n):
    rows = []
    for n in ns:
        y = jax.random.randint(jax.random.key(1), (n,), 0, 10)
        t10 = jnp.tanh(jax.random.normal(jax.random.key(0), (n, 10)) * 2)
        cases = [("binned_information", jax.jit(lambda t: E.binned_information(t, y, n_classes=10)), None)]
        if n <= knn_max_n:
            cases += [
                ("knn_entropy_d10", jax.jit(lambda t: E.knn_entropy(t)), 2 * n * n * 11),
                ("kde_upper_bound_d10", jax.jit(lambda t: E.kde_mutual_information_x_bounds(t, 0.1)[1]), 2 * n * n * 11),
            ]
        for name, f, flops in cases:
            t, _ = timed(lambda f=f: f(t10))
            row = {"benchmark": "estimator", "estimator": name, "n": n, "seconds": t, "evals_per_s": 1 / t}
            if flops:
                row["gflops"] = flops / t / 1e9
                row["fraction_of_peak"] = row["gflops"] / peak
            rows.append(row)
            print(f"  {name} n={n}: {t * 1e3:.2f} ms", flush=True)
    return rows


# --------------------------------------------------------------------- main


def print_tables(rows, peak, device):
    print(f"\n## Population throughput on {device}; float32 matmul peak {peak:,.0f} GFLOP/s\n")
    print("| model | members | steps | model-steps/s | GFLOP/s | of peak | program memory | device peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r["benchmark"] in ("tishby", "mnist", "cifar") and "error" not in r:
            print(
                f"| {r['benchmark']} | {r['members']} | {r['steps']} | {fmt_rate(r['model_steps_per_s'])} | {r['gflops']:.2f} | "
                f"{r['fraction_of_peak']:.2%} | {fmt_bytes(r['program_bytes'])} | {fmt_bytes(r['device_peak_bytes'])} |"
            )
        elif "error" in r:
            print(f"| {r['benchmark']} | {r['members']} | | failed: {r['error']} | | | | |")
    torch_rows = [r for r in rows if r["benchmark"].startswith("tishby_torch")]
    if torch_rows:
        jax_rate = {r["members"]: r["model_steps_per_s"] for r in rows if r["benchmark"] == "tishby" and "error" not in r}
        print("\n| tishby population | members | model-steps/s | JAX population / this |")
        print("| --- | ---: | ---: | ---: |")
        for r in torch_rows:
            ratio = jax_rate.get(r["members"], float("nan")) / r["model_steps_per_s"]
            print(f"| PyTorch {r['benchmark'][13:]} ({r['device']}) | {r['members']} | {fmt_rate(r['model_steps_per_s'])} | {ratio:.1f}x |")
    est = [r for r in rows if r["benchmark"] == "estimator"]
    if est:
        print("\n| estimator | n | ms per evaluation | evaluations/s | GFLOP/s | of peak |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in est:
            g = f"{r['gflops']:.1f} | {r['fraction_of_peak']:.1%}" if "gflops" in r else "n/a (sort-bound) | n/a"
            print(f"| {r['estimator']} | {r['n']:,} | {r['seconds'] * 1e3:.2f} | {r['evals_per_s']:,.1f} | {g} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="tishby population sizes (default 1,4,16,64,256,1024,4096; --quick 1,4,16)")
    p.add_argument("--quick", action="store_true", help="small sizes and few steps: a CPU smoke run (< 2 min)")
    p.add_argument("--out", default=None, help="write every measured row as JSON here")
    p.add_argument("--steps", type=int, default=None, help="training steps per timed call (tishby; others scale down)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--only", default="tishby,mnist,cifar,estimators")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    q = args.quick
    REPEAT[0] = 1 if q else 2
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else ([1, 4, 16] if q else [1, 4, 16, 64, 256, 1024, 4096])
    small_sizes = [s for s in sizes if s <= (2 if q else 64)] or [1]
    steps = args.steps or (30 if q else 200)
    dev = jax.devices()[0]
    device = f"{dev.platform}: {getattr(dev, 'device_kind', '')} ({os.cpu_count()} CPU cores, {platform.machine()})"
    print(f"jax {jax.__version__}, {device}", flush=True)
    peak = matmul_peak(1024 if q else (8192 if dev.platform == "gpu" else 2048))
    print(f"  matmul peak: {peak:,.0f} GFLOP/s", flush=True)
    rows = [{"benchmark": "matmul_peak", "gflops": peak, "device": device, "jax": jax.__version__}]
    if "tishby" in only:
        x, y = tishby_like_data()
        rows += bench_population("tishby", MLP((10, 7, 5, 4, 3), 2, "tanh"), x, y, 512, steps, sizes, peak)
        if not args.no_torch:
            try:
                import torch  # noqa: F401

                rows += torch_tishby(x, y, sizes, max(5, steps // (4 if q else 2)), 512, loop_max=4 if q else 64)
            except ImportError:
                print("  (torch not importable: no PyTorch rows)")
    if "mnist" in only:
        x, y = synthetic(8192, (784,), 10, 1)
        rows += bench_population("mnist", MLP((1024, 20, 20, 20), 10, "relu"), x, y, 128, max(5, steps // 4), small_sizes, peak)
    if "cifar" in only:
        x, y = synthetic(4096, (32, 32, 3), 10, 2)
        rows += bench_population("cifar", SmallCNN(10), x, y, 128, 1 if q else max(3, steps // 10), small_sizes, peak)
    if "estimators" in only:
        rows += bench_estimators([4096] if q else [4096, 60000], peak, knn_max_n=4096 if dev.platform == "cpu" else 60000)
    print_tables(rows, peak, device)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
