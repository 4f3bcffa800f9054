"""``ib-jax train [hydra overrides]``: train a population over the noise grid x seeds (one job per setting).

    ib-jax train                                    # the default study (README)
    ib-jax train noise.snr=[inf,10,1,0.1] seeds=8   # numeric grids: one vmapped job
    ib-jax train -m noise=isotropic,cone model=tishby_tanh,tishby_relu   # a sweep, one job each
    ib-jax train experiment=snr_sweep               # a preset (conf/experiment/)
    ib-jax train debug=fast                         # a seconds-long smoke run
    ib-jax train plugins=[my_lab.noise] noise=my_noise   # your own registered parts
    ib-jax train -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 'optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))'

Relaunching the same command resumes from the last checkpoint (the output directory is derived
from the overrides; ``fresh=true`` moves it aside first). The task returns the float named by
``objective`` (default: the members' mean final test loss), so hydra's optuna and nevergrad sweepers
can search any key. See ``ib_jax/job/run.py`` for what a job writes.
"""

from __future__ import annotations

import os
import sys

from ib_jax.config import ConfigError, refuse_renamed
from ib_jax.job.compose import CONF_DIR, register
from ib_jax.job.lock import JobLocked
from ib_jax.job.run import objective, run
from ib_jax.registry import load_plugins, plugins_from_argv

__all__ = ["main"]


def _task(cfg) -> float:
    try:
        return objective(run(cfg), cfg.objective)
    except (ConfigError, JobLocked) as e:  # refused before any compute: the message says it all
        print(f"[ib-jax] error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if e.filename is None:
            raise  # not a failed file operation: keep the traceback
        # a full disk, a file-size limit, a read-only or unwritable directory: one line naming the path;
        # the records already written are intact (every write is atomic or rolled back)
        print(f"[ib-jax] error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: list[str] | None = None) -> None:
    """Run hydra on ``argv`` (default ``sys.argv[1:]``) with the configs in :data:`CONF_DIR`."""
    import hydra

    args = list(sys.argv[1:] if argv is None else argv)
    # Several jobs may share one GPU (joblib / submitit launchers): never pre-allocate all of it (read
    # when the first computation creates the GPU client, so setting it here, before any, is in time).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:  # a 0.2 flat key (estimator.knn_k=5) is refused naming its new place, before hydra composes
        refuse_renamed(a for a in args if not a.startswith("-"))
    except ValueError as e:
        print(f"[ib-jax] error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    # Plug-ins register their noise kinds / estimators / data sets before hydra composes, so that
    # `noise=my_noise` finds a config group option for them.
    load_plugins(plugins_from_argv(args))
    register()
    sys.argv = [sys.argv[0], *args]  # hydra parses sys.argv
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_task)()


if __name__ == "__main__":
    main()
