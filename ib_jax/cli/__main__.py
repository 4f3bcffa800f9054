"""``python -m ib_jax.cli <command> ...``: the ``ib-jax`` command without its console script."""

import sys

from ib_jax.cli import main

sys.exit(main())
