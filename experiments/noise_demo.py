"""Realized SNR and angle of the noise transforms, measured over many draws.

Usage: python experiments/noise_demo.py [--dim 10000] [--draws 512]

For every transform x SNR it applies the transform to one fixed random
gradient with ``draws`` independent keys (one jitted, vmapped call) and prints
the mean and std of the realized power SNR ||g||^2/||xi||^2 and of the angle
between g and g + xi (degrees), next to the cone half-angle arctan(1/sqrt(snr)).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from ib_jax import noise

TRANSFORMS = {
    "isotropic": lambda snr, key: noise.isotropic(snr, key),
    "cone/surface": lambda snr, key: noise.cone(snr, key, mode="surface"),
    "cone/cap": lambda snr, key: noise.cone(snr, key, mode="cap"),
    "cone/gaussian": lambda snr, key: noise.cone(snr, key, mode="gaussian"),
}


def measure(make, g, snrs, draws, seed=0):
    """(len(snrs), draws) arrays of realized SNR and angle."""

    def one(snr, key):
        tx = make(snr, key)
        _, state = tx.update(g, tx.init(g))
        return state.realized_snr, state.angle

    keys = jax.random.split(jax.random.key(seed), draws)
    fn = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    rs, ang = fn(jnp.asarray(snrs, jnp.float32), keys)
    return np.asarray(rs), np.degrees(np.asarray(ang))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=10_000)
    parser.add_argument("--draws", type=int, default=512)
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0])
    args = parser.parse_args(argv)
    g = jax.random.normal(jax.random.key(42), (args.dim,))
    print(f"gradient: D={args.dim}, {args.draws} draws per cell, device={jax.devices()[0].platform}")
    header = f"{'transform':<15}{'snr':>8}{'realized snr':>22}{'angle (deg)':>22}{'theta (deg)':>13}"
    print(header)
    print("-" * len(header))
    for name, make in TRANSFORMS.items():
        rs, ang = measure(make, g, args.snrs, args.draws)
        for i, snr in enumerate(args.snrs):
            theta = np.degrees(np.arctan(1 / np.sqrt(snr)))
            print(
                f"{name:<15}{snr:>8g}{rs[i].mean():>13.4f} ± {rs[i].std():<7.4f}{ang[i].mean():>13.4f} ± {ang[i].std():<7.4f}{theta:>13.4f}"
            )


if __name__ == "__main__":
    main()
