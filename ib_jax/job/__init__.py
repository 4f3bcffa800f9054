"""One job, from config to records: validation (:mod:`build`), the run (:mod:`run`), the record
schema (:mod:`rows`), strict atomic records (:mod:`records`), checkpoints (:mod:`checkpoints`),
the job lock (:mod:`lock`), preemption (:mod:`preemption`), wandb (:mod:`tracking`), snapshots
(:mod:`snapshots`) and re-estimation from them (:mod:`reestimate`, :mod:`reestimate_run`).

Imported on use (``from ib_jax.job import run``): it pulls in orbax, hydra and wandb.
"""
