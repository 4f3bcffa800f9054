"""Hydra's view of the schema: the ConfigStore entry, the directory-name resolvers, plug-in group options.

:func:`register` is called by the CLI (``experiments/train.py``) before hydra composes, after the
plug-ins named by ``plugins=[...]`` are imported.
"""

from __future__ import annotations

import os

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ib_jax import registry as R
from ib_jax.config import Config, unfreeze
from ib_jax.job.dirnames import job_dir_name, safe_name, sweep_dir_name

__all__ = ["register", "conf_dir", "CONF_DIR", "compose"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conf_dir() -> str:
    """The hydra config directory: ``ib_jax/conf`` in an installed wheel (``pyproject.toml`` ships the
    checkout's ``conf/`` there), else the checkout's ``conf/`` beside the package (an editable install,
    or running from the repository)."""
    shipped = os.path.join(_PACKAGE, "conf")
    if os.path.isfile(os.path.join(shipped, "config.yaml")):
        return shipped
    return os.path.join(os.path.dirname(_PACKAGE), "conf")


CONF_DIR = conf_dir()


def compose(overrides=()):
    """A job's config composed by hydra's compose API (no output directory, no logging set-up), as the
    CLI would compose it from these overrides; :func:`register` must have run."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return _compose(config_name="config", overrides=list(overrides))


def register() -> None:
    """Register :class:`Config` with hydra's ConfigStore as ``base_config``, the resolvers
    ``ib.dir`` (:func:`job_dir_name`) and ``ib.name`` (:func:`safe_name`) that build output
    directory names in ``conf/config.yaml``, plus a group
    option for every registered noise kind / data set / model that has no yaml in ``conf/``
    (so ``noise=my_noise`` works for a plug-in's kind)."""
    R.ensure_builtins()
    OmegaConf.register_new_resolver("ib.dir", lambda overrides: job_dir_name(overrides), replace=True)
    OmegaConf.register_new_resolver("ib.name", lambda name: safe_name(name), replace=True)
    OmegaConf.register_new_resolver("ib.sweep", lambda name, overrides: sweep_dir_name(name, overrides), replace=True)
    node = OmegaConf.structured(Config)
    unfreeze(node)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=node)
    conf = CONF_DIR
    for group, reg, key in (("noise", R.NOISE, "kind"), ("dataset", R.DATASETS, "name"), ("model", R.MODELS, "kind")):
        for name in reg:
            if not os.path.exists(os.path.join(conf, group, f"{name}.yaml")):
                cs.store(group=group, name=name, node={key: name})
