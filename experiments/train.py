"""Train a population over the noise grid x seeds: ``ib-jax train`` for a checkout (same arguments).

    python experiments/train.py                                   # the default study (README)
    python experiments/train.py noise.snr=[inf,10,1,0.1] seeds=8  # numeric grids: one vmapped job
    python experiments/train.py debug=fast                        # a seconds-long smoke run
    python experiments/train.py -m noise=isotropic,cone model=tishby_tanh,tishby_relu   # a sweep

Needs the package installed (``pip install -e .[experiments]``); see ib_jax/cli/train.py.
"""

from ib_jax.cli.train import main

if __name__ == "__main__":
    main()
