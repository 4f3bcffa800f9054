"""``estimator.info_split``: the information planes on the training rows, the test rows, or both.

Checked: each set's rows come from its split only, seeded and representative; a job with
``info_split=both`` records ``e@train`` and ``e@test`` for every estimator, its ``e@train`` values
equal those of a job measured on the training rows alone (one evaluation code path), each set has
its own ceilings, and the figures and summary.md cover both sets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ib_jax import config as C
from ib_jax import data as D
from ib_jax.data.information import estimator_labels, information_sets, information_sizes
from ib_jax.job.build import validate
from ib_jax.job.compose import register

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(ROOT, "conf")
register()


def _cfg(**estimator):
    return dataclasses.replace(C.Config(), estimator=dataclasses.replace(C.Config().estimator, **estimator))


def test_each_information_set_holds_rows_of_its_split_only_seeded_and_representative():
    ds = D.tishby12()  # 4,096 patterns, train 80%, sorted: the first rows are not representative
    n_train = len(ds.y_train)
    for split, lo, hi in (("train", 0, n_train), ("test", n_train, len(ds.y_all))):
        (s,) = information_sets(_cfg(info_split=split, n_info=512), ds)
        assert s.suffix == "" and len(s.rows) == 512 and lo <= s.rows.min() and s.rows.max() < hi
        np.testing.assert_array_equal(ds.x_all[s.rows], s.x)
        np.testing.assert_array_equal(ds.y_all[s.rows], s.y)
        (again,) = information_sets(_cfg(info_split=split, n_info=512), ds)
        np.testing.assert_array_equal(again.rows, s.rows)  # seeded: the same rows every time
        (other,) = information_sets(_cfg(info_split=split, n_info=512, info_seed=1), ds)
        assert not np.array_equal(other.rows, s.rows)
        # label balance within 4 standard errors of the split's own (a draw without replacement)
        y = ds.y_all[lo:hi]
        p, n, N = float(np.mean(y)), 512, len(y)
        se = math.sqrt(p * (1 - p) / n * (N - n) / max(N - 1, 1))
        assert abs(float(np.mean(s.y)) - p) < 4 * se + 1e-12, (split, np.mean(s.y), p)
    both = information_sets(_cfg(info_split="both", n_info=2048), ds)
    assert [s.suffix for s in both] == ["@train", "@test"]
    assert len(both[0].y) == 2048 and len(both[1].y) == len(ds.y_test)  # min(n_info, rows of the split)
    assert information_sizes(_cfg(info_split="both", n_info=2048), ds) == {"@train": 2048, "@test": len(ds.y_test)}
    (pooled,) = information_sets(_cfg(n_info=10**6), ds)
    np.testing.assert_array_equal(pooled.rows, np.arange(len(ds.y_all)))  # the default: every row, train + test
    assert estimator_labels(_cfg(info_split="both", names=("binning", "knn"))) == ["binning@train", "knn@train", "binning@test", "knn@test"]


def test_a_bad_info_split_is_refused_by_name():
    with pytest.raises(ValueError, match=r"estimator\.info_split must be one of \['all', 'train', 'test', 'both'\]"):
        validate(C.from_hydra({"estimator": {"info_split": "validation"}}))


def _composed(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    from ib_jax.job import run as experiment

    out = {}
    tiny = ["debug=fast", "model.widths=[6,4]", "estimator.n_info=256", "probe_size=0", "estimator.names=[binning]", "steps=20"]
    for split in ("both", "train"):
        d = tmp_path_factory.mktemp(split)
        summary = experiment.run(_composed(*tiny, f"estimator.info_split={split}", f"paths.output_dir={d}", "quiet=true"))
        rows = [json.loads(line) for line in open(d / "metrics.jsonl")]
        out[split] = (d, summary, rows)
    return out


def test_both_records_each_set_and_its_train_set_is_the_train_only_job(jobs):
    d, summary, rows = jobs["both"]
    _, _, train_rows = jobs["train"]
    keys = set(rows[-1])
    for q in ("i_xt", "i_ty", "h_x_given_t"):
        assert {f"binning@train/{q}/h1", f"binning@test/{q}/h1"} <= keys and f"binning/{q}/h1" not in keys
    assert len(rows) == len(train_rows)
    for r, t in zip(rows, train_rows):  # the same evaluation code path, so the same numbers
        for k in [k for k in t if k.startswith("binning/")]:
            a, b = r[k.replace("binning/", "binning@train/")], t[k]
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-6, abs=1e-6), k
        assert r["train_loss"] == pytest.approx(t["train_loss"], rel=1e-6)
    # the sets differ (other rows), and each has its own ceilings: log2 of its rows
    assert any(r["binning@test/i_ty/h1"] != r["binning@train/i_ty/h1"] for r in rows)
    ceil = summary["ceilings"]
    assert ceil["binning@train"]["i_xt"] == pytest.approx(8.0) and ceil["binning@test"]["i_xt"] == pytest.approx(math.log2(256))
    assert {"binning@train", "binning@test"} == set(ceil)


def test_both_draws_and_reports_each_set(jobs):
    d, summary, _ = jobs["both"]
    for sub in ("info_train", "info_test"):
        pngs = sorted(p for p in os.listdir(d / sub) if p.endswith(".png"))
        assert any(p.startswith("infoplane_") for p in pngs) and "level_comparison.png" in pngs, (sub, pngs)
    assert any(p.startswith("gap_vs_") for p in os.listdir(d))
    report = open(d / "summary.md").read()
    assert "## binning@test" in report and "on the train information set" in report
    member = summary["members"][0]
    assert "final/binning@train/i_xt/h1" in member and "final/binning@test/i_xt/h1" in member
    assert "final/binning@test/i_xt_at_ceiling/h1" in member
