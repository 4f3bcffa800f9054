"""MNIST's 10,000 test images as an ``.npz`` for ``dataset=npz`` (re-split into train and test there).

Usage:
  python scripts/mnist_t10k_npz.py DIR OUT.npz

``DIR`` holds ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (the standard files;
the IDNNs repository of Shwartz-Ziv & Tishby carries them under ``data/MNIST_data/``, where its
training images are missing). They are checked against MNIST's published MD5 checksums, read,
scaled to [0, 1] and written as ``x`` ``(10000, 28, 28, 1)`` float32 and ``y`` ``(10000,)``
int32 (no ``x_test``: ``dataset=npz`` makes its stratified, seeded split, ``dataset.train_fraction``
of the rows for training). Keep the file outside the repository; never commit MNIST.

Then, e.g.: ``python scripts/claims.py --data npz --data-path OUT.npz``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ib_jax.data import MNIST_RESOURCES, file_md5, read_idx


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    p.add_argument("out", help="the .npz to write (outside the repository)")
    args = p.parse_args(argv)
    arrays = {}
    for r in MNIST_RESOURCES:
        if not r.filename.startswith("t10k"):
            continue
        path = os.path.join(args.dir, r.filename)
        if not os.path.isfile(path):
            print(f"missing {path}", file=sys.stderr)
            return 2
        if file_md5(path) != r.md5:
            print(f"{path}: MD5 {file_md5(path)} is not MNIST's published {r.md5}", file=sys.stderr)
            return 2
        arrays["images" if "images" in r.filename else "labels"] = read_idx(path)
    x = (arrays["images"].astype(np.float32) / 255.0)[..., None]
    y = arrays["labels"].astype(np.int32)
    tmp = args.out + ".tmp.npz"  # written whole, then renamed: a killed run never leaves a partial archive
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(y)} images 28x28x1, labels {np.bincount(y, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
