"""One config, pluggable parts: the schema hydra and the engine share, the registries, plug-ins
from the command line, and the output-directory names.

Two real CLI runs (subprocesses): a job built only from a plug-in's noise kind, estimator and
data set, and a ``name=../x`` that must be refused before anything is written. Everything else
composes ``conf/`` in-process with hydra's compose API (no JAX compile).
"""

import ast
import json
import math
import os
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ib_jax import config as C
from ib_jax import registry as R
from ib_jax import train
from ib_jax.estimators import register_estimator
from ib_jax.job import dirnames as DN
from ib_jax.job.build import validate
from ib_jax.job.rows import read_metrics
from ib_jax.noise import register_noise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "conf")
INF = float("inf")

from ib_jax.job.compose import register

register()


def composed(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def cli_env(tmp_path):
    return dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true", IB_JAX_CACHE=str(tmp_path / "cache"))


# ------------------------------------------------------------- plug-ins from the CLI

# A user's module: every part below is selected by name on the command line. Each one's effect is
# exactly predictable, so the job's records prove it ran:
# * noise "signflip": each gradient coordinate flips sign with probability p (the level). At p = 1
#   the update is -g: realized SNR ||g||^2 / ||-g - g||^2 = 1/4 exactly (scaling by 2 is exact in
#   floating point) and angle pi; at p = 0 nothing flips (SNR inf, angle 0).
# * estimator "shape": per layer, the rows of the information set and the layer's width.
# * data set "parity6": the 64 patterns of 6 bits, labelled by parity.
PLUGIN = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from ib_jax import data as D
    from ib_jax import noise as N
    from ib_jax.estimators import register_estimator
    from ib_jax.noise import register_noise
    from ib_jax.registry import DATASETS


    def signflip(level, key, cfg):
        def init(params):
            return N.NoiseState(count=jnp.zeros([], jnp.int32), key=key, realized_snr=jnp.array(jnp.inf, jnp.float32),
                                angle=jnp.zeros([], jnp.float32))

        def update(updates, state, params=None):
            p = level(state.count)
            leaves, treedef = jax.tree.flatten(updates)
            k_next, k = jax.random.split(state.key)
            keys = jax.random.split(k, len(leaves))
            out = [jnp.where(jax.random.bernoulli(kk, p, g.shape), -g, g) for kk, g in zip(keys, leaves)]
            g2 = sum(jnp.sum(g * g) for g in leaves)
            d2 = sum(jnp.sum((o - g) ** 2) for o, g in zip(out, leaves))
            dot = sum(jnp.sum(o * g) for o, g in zip(out, leaves))
            snr = jnp.where(d2 > 0, g2 / jnp.where(d2 > 0, d2, 1.0), jnp.inf)
            angle = jnp.arccos(jnp.clip(dot / jnp.maximum(g2, 1e-30), -1.0, 1.0))  # |out| = |g|
            return jax.tree.unflatten(treedef, out), N.NoiseState(state.count + 1, k_next, snr.astype(jnp.float32),
                                                                  angle.astype(jnp.float32))

        return optax.GradientTransformation(init, update)


    register_noise("signflip", signflip, level_name="p", level_doc="must be a flip probability in [0, 1]",
                   valid_level=lambda v: 0.0 <= v <= 1.0)


    def shape(ctx, cfg):
        return {"rows": jnp.full(ctx.dims.shape, ctx.n, jnp.float32), "width": ctx.dims}


    register_estimator("shape", shape)


    @DATASETS.register("parity6")
    def parity6(cfg):
        x = ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(np.float32)
        y = (x.sum(1) % 2).astype(np.int32)
        parts = D.split(x, y, seed=cfg.dataset.split_seed, train_fraction=cfg.dataset.train_fraction)
        return D.Dataset(*parts, n_classes=2, name="parity6")
    """
)


def test_plugins_from_the_cli_train_a_real_job(tmp_path):
    (tmp_path / "ib_signflip_plugin.py").write_text(PLUGIN)
    run_dir = tmp_path / "run"
    args = [
        "plugins=[ib_signflip_plugin]",
        "noise=signflip",
        "noise.snr=[0.0,1.0]",
        "dataset=parity6",
        "estimator.names=[binning,shape]",
        "optimizer.batch_size=0",
        "seeds=1",
        "steps=20",
        "n_evals=2",
        "evals_per_chunk=2",
        "probe_size=0",
        "logger=none",
        "checkpoint=false",
        f"paths.compile_cache_dir={os.path.join(ROOT, '.cache', 'jax')}",
        f"hydra.run.dir={run_dir}",
    ]
    # cwd = tmp_path: the module is found on the working directory, as a user's would be
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    rows = read_metrics(str(run_dir / "metrics.jsonl"))  # strict JSON: inf is stored as "inf"
    layers = ["h1", "h2", "h3", "h4", "h5", "output"]
    widths = [10, 7, 5, 4, 3, 2]  # conf/model/tishby_tanh.yaml, then the 2 classes of parity6
    assert len(rows) == 3 * 2  # eval steps [0, 1, 20] x the members p = 0, 1 (one seed)
    assert {r["noise_kind"] for r in rows} == {"signflip"}
    assert sorted({r["p"] for r in rows}) == [0.0, 1.0] and all("snr" not in r for r in rows)  # the kind's level name
    for r in rows:
        for layer, w in zip(layers, widths):
            assert r[f"shape/rows/{layer}"] == 64.0  # the information set is all 64 rows of parity6
            assert r[f"shape/width/{layer}"] == float(w)
            # X uniform over 64 distinct rows: I(X;T) + H(X|T) = H(X) = log2(64) bits
            assert r[f"binning/i_xt/{layer}"] + r[f"binning/h_x_given_t/{layer}"] == pytest.approx(6.0, abs=1e-4)
    by = {(r["step"], r["p"]): r for r in rows}
    assert sorted({s for s, _ in by}) == [0, 1, 20]
    for step in (1, 20):  # the transform's state after its last update
        assert by[step, 1.0]["noise_realized_snr"] == pytest.approx(0.25, rel=1e-6)
        assert by[step, 1.0]["noise_angle"] == pytest.approx(math.pi, abs=1e-5)
        assert by[step, 0.0]["noise_realized_snr"] == INF and by[step, 0.0]["noise_angle"] == 0.0
    # same seed, so the same start; full-batch Adam then descends at p = 0 and ascends at p = 1
    # (every coordinate of the gradient flipped). To first order a step changes the loss by
    # -/+ lr * ||g||_1, far above the O(lr^2) curvature term at lr = 1e-3.
    loss = {k: r["train_loss"] for k, r in by.items()}
    assert loss[0, 0.0] == loss[0, 1.0]
    assert loss[20, 0.0] < loss[0, 0.0] < loss[20, 1.0]
    summary = json.load(open(run_dir / "summary.json"))
    assert sorted(m["p"] for m in summary["members"]) == [0.0, 1.0]
    assert (run_dir / "gap_vs_p.png").exists()


def test_plugins_by_path_load_once_and_import_errors_name_the_key(tmp_path):
    path = tmp_path / "my_widgets.py"
    path.write_text("from ib_jax.noise import register_noise\nregister_noise('zz_widget_noise', None, valid_level=lambda v: True)\n")
    try:
        assert R.load_plugins([str(path)]) == [str(path)]
        kind = R.NOISE.get("zz_widget_noise")
        # the CLI loads plug-ins before hydra composes and validate() loads them again: the
        # module runs once, so its registrations are not refused as duplicates
        assert R.load_plugins([str(path)]) == [str(path)]
        assert R.NOISE.get("zz_widget_noise") is kind
    finally:
        R.NOISE.unregister("zz_widget_noise")
        sys.modules.pop("ib_jax_plugin_my_widgets", None)
    with pytest.raises(ValueError, match=r"^plugins: cannot import 'no_such_module_zz'"):
        R.load_plugins(["no_such_module_zz"])
    with pytest.raises(ValueError, match=r"^plugins: cannot import"):
        R.load_plugins([str(tmp_path / "absent.py")])
    assert R.plugins_from_argv(["noise=x", "plugins=[a.b, c]", "+plugins=d.py", "steps=3"]) == ["a.b", "c", "d.py"]
    assert R.plugins_from_argv(["plugins=e"]) == ["e"]


# ------------------------------------------------------------------ registry errors


@pytest.mark.parametrize(
    "cfg,key,bad,registry",
    [
        (C.Config(noise=C.NoiseConf(kind="pink")), "noise.kind", "pink", R.NOISE),
        (C.Config(estimator=C.EstimatorConf(names=("binning", "mine"))), "estimator.names", "mine", R.ESTIMATORS),
        (C.Config(dataset=C.DatasetConf(name="no_such_data")), "dataset.name", "no_such_data", R.DATASETS),
        (C.Config(model=C.ModelConf(kind="resnet")), "model.kind", "resnet", R.MODELS),
        (C.Config(optimizer=C.OptimizerConf(name="lbfgs")), "optimizer.name", "lbfgs", R.OPTIMIZERS),
        (C.Config(schedule=C.ScheduleConf(kind="zigzag")), "schedule.kind", "zigzag", R.SCHEDULES),
    ],
)
def test_unknown_names_fail_naming_the_key_and_the_registered_names(cfg, key, bad, registry):
    with pytest.raises(ValueError) as err:
        validate(cfg)
    msg = str(err.value)
    assert msg.startswith(f"{key}: unknown") and repr(bad) in msg
    assert len(registry) >= 1 and all(repr(n) in msg for n in registry.names())  # every registered name listed


def test_unknown_noise_on_the_command_line_names_the_key():
    with pytest.raises(ValueError, match=r"^noise\.kind: unknown noise kind 'pink'.*'isotropic'"):
        validate(composed("noise.kind=pink"), load_data=False)


def test_double_registration_is_refused_without_overwrite():
    cone = R.NOISE.get("cone")
    with pytest.raises(ValueError, match=r"noise kind 'cone' is already registered"):
        register_noise("cone", lambda level, key, cfg: None)
    assert R.NOISE.get("cone") is cone
    binning = R.ESTIMATORS.get("binning")
    with pytest.raises(ValueError, match=r"estimator 'binning' is already registered"):
        register_estimator("binning", lambda ctx, cfg: {})
    assert R.ESTIMATORS.get("binning") is binning
    with pytest.raises(ValueError, match=r"data set 'tishby12' is already registered"):
        R.DATASETS.register("tishby12", lambda cfg: None)
    # on a private registry: the same builder twice is a no-op, overwrite=True replaces
    reg = R.Registry("widget", "widget.name")
    a, b = object(), object()
    reg.register("w", a)
    reg.register("w", a)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("w", b)
    assert reg.get("w") is a
    reg.register("w", b, overwrite=True)
    assert reg.get("w") is b

    @reg.register("v")
    def v():
        return 1

    assert reg.get("v") is v and reg.names() == ("v", "w")
    with pytest.raises(ValueError, match=r"^widget\.name: unknown widget 'u'; registered: \['v', 'w'\]"):
        reg.get("u")


# -------------------------------------------------------------------- the one schema


OVERRIDES = [
    "optimizer=momentum",
    "optimizer.learning_rate=0.05",
    "noise=cone",
    "noise.snr=[inf,4.0]",
    "noise.mode=cap",
    "model.widths=[8,6]",
    "schedule=warmup",
    "estimator.names=[binning,knn]",
    "seeds=2",
    "steps=100",
    "logger=none",
    "paths.cache_dir=/tmp/ib-jax-cache",
]


def python_config():
    """The Config of OVERRIDES written in Python: the defaults of conf/config.yaml's groups
    (tishby12, tishby_tanh, binning, constant) are the dataclass defaults, so only the
    overridden values and the groups' own values appear."""
    return C.Config(
        name="default",
        model=C.ModelConf(widths=(8, 6)),
        optimizer=C.OptimizerConf(name="momentum", learning_rate=0.05, momentum=0.9, batch_size=512),
        noise=C.NoiseConf(kind="cone", snr=(INF, 4.0), mode="cap"),
        schedule=C.ScheduleConf(kind="warmup", params={"target": 1.0, "warmup_steps": 500, "init_value": 100.0}),
        estimator=C.EstimatorConf(names=("binning", "knn")),
        logger=C.LoggerConf(wandb=False),
        paths=C.PathsConf(cache_dir="/tmp/ib-jax-cache"),
        seeds=2,
        steps=100,
    )


def test_composed_config_is_the_python_config_and_the_engine_takes_it():
    c = C.from_hydra(composed(*OVERRIDES))
    expected = python_config()
    assert type(c) is C.Config and c == expected and hash(c) == hash(expected)
    assert isinstance(c.noise.snr, tuple) and isinstance(c.model.widths, tuple) and isinstance(c.estimator.names, tuple)
    assert C.from_hydra(c) is c
    built = validate(c)
    assert built.config == expected and built.levels == (INF, 4.0) and built.noise_kind is R.NOISE.get("cone")
    assert built.population.size == 4 and built.population.level.tolist() == [INF, INF, 4.0, 4.0]
    assert built.dataset.name == "tishby12"
    tr = train.Trainer(c, built.dataset)  # the engine takes the same object
    assert tr.layer_names == ["h1", "h2", "output"] and tr.batch_size == 512
    # to_dict is the plain record of it, and reads back to the same Config
    assert C.from_hydra(C.to_dict(c)) == expected


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["optimizer.learning_rate=-1"], "optimizer.learning_rate"),
        (["optimizer.learning_rate=inf"], "optimizer.learning_rate"),
        (["optimizer.learning_rate=nan"], "optimizer.learning_rate"),
        (["optimizer=sgd", "optimizer.momentum=0.9"], "optimizer.momentum"),
        (["optimizer=adam", "optimizer.momentum=0.9"], "optimizer.momentum"),
        (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum"),
        (["optimizer=momentum", "optimizer.momentum=null"], "optimizer.momentum"),
        (["noise.snr=[1,1]"], "noise.snr"),
        (["noise.snr=[]"], "noise.snr"),
        (["dataset.train_fraction=1.0"], "dataset.train_fraction"),
    ],
)
def test_bad_value_is_refused_before_compute_naming_the_cli_key(overrides, key, tmp_path, monkeypatch):
    from ib_jax.job import run as experiment

    def no_compute(*a, **k):
        raise AssertionError("a Trainer was built for an invalid config")

    monkeypatch.setattr(experiment, "Trainer", no_compute)
    out = tmp_path / "job"
    with pytest.raises(ValueError) as err:
        experiment.run(composed(*overrides, "logger=none", f"paths.output_dir={out}"))
    assert key in str(err.value), str(err.value)
    assert not out.exists()  # refused before the job wrote anything


def test_optimizer_groups_compose_with_their_own_keys():
    sgd = OmegaConf.load(os.path.join(CONF, "optimizer", "sgd.yaml"))
    assert "momentum" not in sgd
    for name, momentum in (("sgd", None), ("adam", None), ("momentum", 0.9)):
        c = validate(composed(f"optimizer={name}"), load_data=False).config
        assert c.optimizer.name == name and c.optimizer.momentum == momentum


def test_train_script_documents_the_debug_group_as_it_composes():
    doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, "experiments", "train.py")).read()))
    assert "+debug=fast" not in doc and "debug=fast" in doc
    c = validate(composed("debug=fast"), load_data=False).config  # the documented form composes
    assert (c.seeds, c.steps, c.logger.wandb) == (1, 50, False)


def test_wandb_floor():
    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["optional-dependencies"]["experiments"]  # wandb is not core
    (wandb,) = [Requirement(d) for d in deps if Requirement(d).name == "wandb"]
    assert not wandb.specifier.contains("0.19.9") and wandb.specifier.contains("0.19.10")


# ----------------------------------------------------------- output directory names


def valid_component(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "[" not in name
        and "]" not in name
        and len(name) <= DN.MAX_DIR_NAME
        and os.path.basename(name) == name
    )


def test_dir_name_is_a_bounded_stable_path_component(tmp_path):
    for overrides in ("dataset.path=/data/x.npz", "noise.snr=[inf,10,1]", "name=../../etc", "a b/c\\d", ""):
        n = DN.dir_name(overrides)
        assert valid_component(n) and n == DN.dir_name(overrides), (overrides, n)
        (tmp_path / n).mkdir()  # a real directory, directly under its parent
        assert (tmp_path / n).resolve().parent == tmp_path.resolve()
    # short names stay readable; a replaced character adds the hash, so a/b and a_b never collide
    assert DN.dir_name("dataset.path=/data/x.npz").startswith("dataset.path=_data_x.npz~")
    assert DN.dir_name("dataset.path=/data/a_b.npz") != DN.dir_name("dataset.path=/data/a/b.npz")
    assert DN.dir_name("noise=cone,seeds=2") == "noise=cone,seeds=2"  # nothing replaced: no hash
    assert DN.dir_name("") == "default"
    grid = [f"{v:.6g}" for v in np.logspace(-3, 3, 200)]
    long_a = "noise.snr=[" + ",".join(grid) + "]"
    long_b = "noise.snr=[" + ",".join(grid[:-1] + ["1e9"]) + "]"  # differs only after the kept prefix
    a, b = DN.dir_name(long_a), DN.dir_name(long_b)
    assert len(long_a) > 1000 and valid_component(a) and a == DN.dir_name(long_a)
    assert a != b and a.split("~")[0] == b.split("~")[0]  # same readable prefix, different hash
    assert a.startswith("noise.snr=_0.001,") and len(a.split("~")[1]) == 12


def test_safe_name_refuses_paths():
    for bad in ("../x", "a/b", "", "..", ".", "a\\b"):
        with pytest.raises(ValueError, match=r"^name must be one path component"):
            DN.safe_name(bad)
    assert DN.safe_name("snr_sweep-2.v1") == "snr_sweep-2.v1"
    # the resolver conf/config.yaml builds output directories with
    node = OmegaConf.create({"name": "../x", "ov": "a=[1,2]", "dir": "outputs/${ib.name:${name}}/${ib.dir:${ov}}"})
    with pytest.raises(Exception, match="name must be one path component"):
        _ = node.dir
    node.name = "ok"
    assert node.dir.startswith("outputs/ok/a=_1,2~")  # brackets become _, plus the hash of the original


def test_cli_name_escaping_outputs_is_refused_and_writes_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "train.py"), "name=../x", "steps=1", "logger=none"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        cwd=work,
        timeout=300,
    )
    assert out.returncode != 0
    assert "name must be one path component" in out.stderr + out.stdout
    assert not (work / "x").exists() and not (tmp_path / "x").exists()
    assert not [p for p in work.rglob("*") if p.is_file()]  # nothing written anywhere under the cwd
