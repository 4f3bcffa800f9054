"""Train a population over the noise grid x seeds; write metrics, plots, checkpoints, wandb runs.

    python experiments/train.py                                   # the default study (README)
    python experiments/train.py noise.snr=[inf,10,1,0.1] seeds=8  # numeric grids: one vmapped job
    python experiments/train.py -m noise=isotropic,cone model=tishby_tanh,tishby_relu   # a sweep
    python experiments/train.py experiment=snr_sweep              # a preset (conf/experiment/)
    python experiments/train.py debug=fast                        # a seconds-long smoke run
    python experiments/train.py plugins=[my_lab.noise] noise=my_noise   # your own registered parts

Relaunching the same command resumes from the last checkpoint (the output directory is derived
from the overrides). See ib_jax/job/run.py for what a job writes.
"""

import os
import sys

# Several jobs may share one GPU (joblib / submitit launchers): never pre-allocate all of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from ib_jax.config import ConfigError, refuse_renamed  # noqa: E402
from ib_jax.job.compose import register  # noqa: E402
from ib_jax.job.lock import JobLocked  # noqa: E402
from ib_jax.job.run import run  # noqa: E402
from ib_jax.registry import load_plugins, plugins_from_argv  # noqa: E402

try:  # a 0.2 flat key (estimator.knn_k=5) is refused naming its new place, before hydra composes
    refuse_renamed(a for a in sys.argv[1:] if not a.startswith("-"))
except ValueError as e:
    print(f"[ib-jax] error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
# Plug-ins register their noise kinds / estimators / data sets before hydra composes, so that
# `noise=my_noise` finds a config group option for them.
load_plugins(plugins_from_argv(sys.argv[1:]))
register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
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


if __name__ == "__main__":
    main()
