"""The grouped schema and the family layout, as a user meets them.

* 0.2's flat keys (``estimator.knn_k``) are refused naming their new place, on the command line
  (before hydra composes or anything is written) and in a config dict;
* a recorded 0.2 job config migrates to the grouped layout value for value, so old jobs resume;
* one list of result-neutral keys: the overrides it names do not enter the job directory's name;
* an option group a model does not read is refused (it would be silently ignored);
* a new part is one module: importing its family's package registers it (no list of names to edit).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from ib_jax import config as C
from ib_jax import registry as R
from ib_jax.job import dirnames as DN
from ib_jax.job import ranges as RG
from ib_jax.job.build import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_renamed_key_names_its_new_place():
    for old, new in C.RENAMED_KEYS.items():
        with pytest.raises(ValueError) as e:
            C.refuse_renamed([f"{old}=1"])
        assert old in str(e.value) and all(n in str(e.value) for n in new)
        # the new key exists in the schema: migrate() puts the value exactly there
        group, rest = new[0].split(".", 1)
        sub, field = rest.split(".")
        assert hasattr(getattr(getattr(C.Config(), group), sub), field), new[0]
    C.refuse_renamed(["estimator.knn.k=5", "model.widths=[3]", "estimator.n_info=64"])  # current keys pass


def test_a_flat_key_in_a_dict_is_refused_naming_the_new_key():
    with pytest.raises(ValueError, match=r"estimator\.knn_k is now estimator\.knn\.k"):
        C.from_hydra({"estimator": {"knn_k": 5}})
    with pytest.raises(ValueError, match=r"model\.width is now model\.resnet\.width"):
        C.from_hydra({"model": {"kind": "resnet20", "width": 2.0}})


def test_the_cli_refuses_a_flat_key_before_anything_is_written(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), "estimator.sp_n=64", "logger=none"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "estimator.sp_n is now estimator.sp.n" in out.stderr
    assert not os.listdir(tmp_path)  # no outputs/ directory, no .hydra


OLD_RECORD = {  # the estimator and model groups of a job_config.json written by ib-jax 0.2
    "estimator": {
        "names": ["binning", "knn"],
        "n_bins": 20,
        "lo": None,
        "hi": None,
        "knn_k": 5,
        "kde_noise_var": 0.1,
        "n_info": 512,
        "include_output": True,
        "channel_snr": 1.0,
        "channel_samples": 8,
        "channel_kernel_var": 0.01,
        "channel_n": 256,
        "bin_width": None,
        "data_range": "unit",
        "miller_madow": True,
        "sp_replicas": 16,
        "sp_n_mc": 1,
        "sp_n": 128,
        "info_seed": 0,
        "wide_policy": "random_units",
        "max_units": 1024,
        "wide_seed": 0,
    },
    "model": {
        "kind": "mlp",
        "widths": [10, 7],
        "activation": "tanh",
        "init_scale": 1.0,
        "dropout": 0.0,
        "batch_norm": False,
        "channels": [16, 16, 16],
        "kernel_size": 5,
        "dense": [512],
        "pool": "max",
        "width": 1.0,
        "blocks_per_stage": 3,
        "shortcut": "A",
        "record": "blocks",
        "layer_noise": 0.0,
        "quantize_bits": 0,
    },
    "seeds": 2,
}


def test_a_0_2_record_migrates_value_for_value():
    new = C.migrate(OLD_RECORD)
    cfg = C.from_hydra(new)  # fits the current schema exactly (OmegaConf refuses unknown keys)
    e, m = cfg.estimator, cfg.model
    assert (e.binning.n_bins, e.binning.lo, e.binning.data_range, e.binning.miller_madow) == (20, None, "unit", True)
    assert e.exact.miller_madow and e.knn.k == 5 and (e.sp.replicas, e.sp.n) == (16, 128) and e.n_info == 512
    assert m.widths == (10, 7) and m.conv == C.ConvConf() and m.resnet == C.ResNetConf()
    assert C.migrate(new) == new  # the current layout is left as it is


def test_an_old_job_resumes_and_a_changed_one_is_still_refused(tmp_path):
    from ib_jax.job.records import ConfigMismatch, atomic_write_json, config_fingerprint, record_or_check_config

    atomic_write_json(str(tmp_path / "job_config.json"), {"fingerprint": config_fingerprint(OLD_RECORD), "config": OLD_RECORD})
    before = (tmp_path / "job_config.json").read_bytes()
    same = C.to_dict(C.from_hydra(C.migrate(OLD_RECORD)))
    mine = {k: same[k] for k in OLD_RECORD}
    # resumes: only the layout changed, and keys added since then hold their defaults (as a job checks)
    record_or_check_config(str(tmp_path), mine, migrate=C.migrate, defaults=C.to_dict(C.Config()))
    changed = {**mine, "estimator": {**mine["estimator"], "knn": {"k": 7}}}
    with pytest.raises(ConfigMismatch, match=r"estimator\.knn\.k: 5 -> 7"):
        record_or_check_config(str(tmp_path), changed, migrate=C.migrate)
    assert (tmp_path / "job_config.json").read_bytes() == before  # the record is never rewritten


def test_result_neutral_overrides_do_not_name_the_job():
    base = DN.job_dir_name(["noise=cone", "seeds=2"])
    assert base == DN.dir_name("noise=cone,seeds=2")
    for neutral in (
        "logger=none",
        "logger.mode=online",
        "paths.data_dir=/data",
        "+paths.cache_dir=/c",
        "resume=false",
        "evals_per_chunk=1",
        "compile_cache=false",
        "checkpoint=false",
        "hydra/launcher=joblib",
    ):
        assert C.is_result_neutral(neutral.split("=")[0]), neutral
        assert DN.job_dir_name(["seeds=2", neutral, "noise=cone"]) == base, neutral
    assert not C.is_result_neutral("loggers") and not C.is_result_neutral("seed")
    assert DN.job_dir_name(["noise=cone", "seeds=3"]) != base


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"model": {"kind": "mlp", "resnet": {"width": 2.0}}}, r"model\.resnet\.\* is read by model\.kind in \['resnet20'\]"),
        ({"model": {"kind": "resnet20", "conv": {"pool": "avg"}}}, r"model\.conv\.\* is read by model\.kind in \['cnn1d', 'cnn2d'\]"),
        (
            {"model": {"kind": "cnn1d", "layer_noise": 0.1}},
            r"model\.layer_noise is implemented for model\.kind in \['cnn2d', 'mlp', 'resnet20'\]",
        ),
        ({"model": {"kind": "cnn2d", "quantize_bits": 4}}, r"model\.quantize_bits is implemented for model\.kind in \['mlp'\]"),
        ({"model": {"init": "xavier"}}, r"model\.init must be one of \['lecun', 'torch'\]"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, r"optimizer\.momentum is used by optimizer=momentum only"),
        ({"estimator": {"names": ["binning"], "binning": {"lo": 1.0, "hi": 0.0}}}, r"estimator\.binning\.lo/hi"),
    ],
)
def test_each_part_checks_its_own_options(overrides, match):
    with pytest.raises(ValueError, match=match):
        validate(C.from_hydra(overrides))  # tishby12: the data-dependent checks run too


def test_a_new_part_is_one_module(tmp_path, monkeypatch):
    """A family's package imports every module in it (``import_parts``): a module dropped into the
    package registers its part with no other file edited, and every built-in module is imported."""
    pkg = tmp_path / "ib_fam_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from ib_jax.registry import import_parts\nPARTS = import_parts(__name__, __path__)\n")
    (pkg / "_shared.py").write_text("raise RuntimeError('a helper module is imported by its users, not by import_parts')\n")
    (pkg / "zz_dither.py").write_text(
        textwrap.dedent("""
        import optax
        from ib_jax.noise.kinds import register_noise
        register_noise("zz_dither", lambda level, key, cfg: optax.identity())
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import ib_fam_demo

        assert ib_fam_demo.PARTS == ["zz_dither"] and "zz_dither" in R.NOISE
    finally:
        R.NOISE.unregister("zz_dither")
        sys.modules.pop("ib_fam_demo", None)
        sys.modules.pop("ib_fam_demo.zz_dither", None)
    for family in ("noise", "estimators", "data", "models", "train"):
        folder = os.path.join(ROOT, "ib_jax", family)
        modules = [f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_")]
        missing = [m for m in modules if f"ib_jax.{family}.{m}" not in sys.modules]
        assert not missing, f"ib_jax.{family}: {missing} not imported with the package"


def test_the_readme_api_imports_from_where_the_readme_says():
    import importlib

    from ib_jax import data, estimators, noise, train
    from ib_jax.config import Config  # noqa: F401
    from ib_jax.registry import DATASETS, ESTIMATORS, MODELS, NOISE, OPTIMIZERS, SCHEDULES  # noqa: F401

    for name in (
        "isotropic",
        "cone",
        "fixed",
        "sgd_shaped",
        "heavy_tailed",
        "anticorrelated",
        "diagnostics",
        "population_init",
        "reseed",
        "register_noise",
        "schedules",
    ):
        assert hasattr(noise, name), f"ib_jax.noise.{name}"
    for name in ("Trainer", "train_population", "population_grid", "Population"):
        assert hasattr(train, name), f"ib_jax.train.{name}"
    for name in (
        "binned_information",
        "knn_entropy",
        "ksg_mutual_information",
        "kde_mutual_information_x_bounds",
        "noise_channel_information",
        "sp_mutual_information",
        "exact_information",
        "ib_frontier",
        "register_estimator",
    ):
        assert hasattr(estimators, name), f"ib_jax.estimators.{name}"
    assert hasattr(data, "from_npz") and hasattr(data, "Dataset")
    assert importlib.import_module("ib_jax").schedules is noise.schedules


def test_the_readme_plugin_example_runs(tmp_path, monkeypatch):
    """The README's plug-in module, verbatim: its noise kind and estimator train and record."""
    import re

    import numpy as np

    from ib_jax import train

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if b.startswith("# my_lab/noise.py"))
    (tmp_path / "my_lab_readme.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cfg = C.Config(
            plugins=("my_lab_readme",),
            noise=C.NoiseConf(kind="signflip", snr=(1.0,)),
            seeds=2,
            steps=6,
            n_evals=2,
            probe_size=0,
            estimator=C.EstimatorConf(names=("binning", "mean_abs"), n_info=256),
        )
        built = validate(cfg)
        res = train.train_population(built.config, built.dataset, built.population)
        assert res.metrics["mean_abs/mean_abs"].shape == (2, len(res.steps), len(res.layer_names))
        assert np.all(np.isfinite(res.metrics["mean_abs/mean_abs"])) and np.all(res.metrics["mean_abs/mean_abs"] >= 0)
        assert np.all(np.isfinite(res.metrics["gap_loss"]))
    finally:
        R.NOISE.unregister("signflip")
        R.ESTIMATORS.unregister("mean_abs")
        sys.modules.pop("my_lab_readme", None)


def test_every_integer_key_has_a_range_and_it_is_enforced():
    assert set(RG.int_keys()) == set(RG.INT_RANGES)  # a new int key must come with its range
    RG.check_int_ranges(C.Config())  # the defaults are in range
    for key, (lo, hi) in RG.INT_RANGES.items():
        group, *rest = key.split(".")
        for bad in (lo - 1, hi + 1):
            value = (bad,) if key in ("model.widths", "model.conv.channels", "model.conv.dense", "model.input_shape") else bad
            node = {rest[-1]: value} if rest else value
            for part in reversed(rest[:-1]):
                node = {part: node}
            cfg = C.from_hydra({group: node} if rest else {key: value})
            with pytest.raises(ValueError, match=rf"^{re.escape(key)} must be an integer in \[{lo}, {hi}\]"):
                RG.check_int_ranges(cfg)
