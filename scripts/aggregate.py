"""``ib-jax aggregate`` for a checkout (same arguments); see ib_jax/cli/aggregate.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without pip install

from ib_jax.cli.aggregate import main

if __name__ == "__main__":
    raise SystemExit(main())
