"""Every information estimate has a ceiling (log2 n for I(X;T) on n rows, H(Y) for I(T;Y)); values
at it are flagged in the summaries, marked in the tables and never counted by the claims."""

from __future__ import annotations

import math

import numpy as np

from ib_jax import config as C
from ib_jax.estimators import ceilings as CE
from ib_jax.estimators.base import subset_rows
from ib_jax.report import claims as K
from ib_jax.report import summary as S
from ib_jax.report import verdicts as V

LAYERS = ["h1", "h2", "output"]


def test_ceilings_follow_the_rows_each_estimator_uses():
    cfg = C.Config(estimator=C.EstimatorConf(names=("binning", "sp", "channel"), sp=C.SpConf(n=64), channel=C.ChannelConf(n=5000)))
    y = np.r_[np.zeros(768, int), np.ones(256, int)]  # H(Y) = h(1/4) = 0.811 bits
    c = CE.ceilings(cfg, y)
    assert c["binning"]["rows"] == 1024 and c["binning"]["i_xt"] == 10.0
    assert c["sp"]["rows"] == 64 and c["sp"]["i_xt"] == 6.0  # its seeded subset of 64 rows
    assert c["channel"]["rows"] == 1024  # asks for more rows than there are: all of them
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert abs(c["binning"]["i_ty"] - h) < 1e-12
    # the subset's own label entropy (plug-in I(T;Y) on 64 rows cannot exceed it)
    rows = subset_rows(1024, 64, cfg.estimator.subset_seed)
    assert c["sp"]["i_ty"] == CE.label_entropy_bits(y[rows])


def test_at_ceiling_uses_the_margin_and_never_flags_nan():
    assert CE.at_ceiling(9.96, 10.0, 0.05) and not CE.at_ceiling(9.94, 10.0, 0.05)
    assert not CE.at_ceiling(math.nan, 10.0, 0.05)
    assert CE.at_ceiling(10.0, 10.0, 0.0)
    np.testing.assert_array_equal(CE.at_ceiling([10.0, 3.0, np.nan], 10.0, 0.05), [True, False, False])


def _metrics(P, E, h1_value):
    """(P, E, L) binning I(X;T): h1 pinned at ``h1_value``, h2 / output well below 10 bits."""
    ix = np.empty((P, E, 3))
    ix[..., 0] = h1_value
    ix[..., 1] = 6.0 + 0.1 * np.arange(P)[:, None]
    ix[..., 2] = 1.0
    return {"binning/i_xt": ix, "binning/h_x_given_t": 10.0 - ix, "binning/i_ty": np.full((P, E, 3), 0.5), "train_loss": np.ones((P, E))}


def test_summaries_flag_values_at_the_ceiling_and_tables_mark_them():
    P, E = 4, 3
    members = [{"member": i, "seed": i % 2, "level": [math.inf, 0.1][i // 2]} for i in range(P)]
    ceils = {"binning": {"rows": 1024, "i_xt": 10.0, "i_ty": 1.0}}
    ss = S.summarize(np.arange(E) * 10, _metrics(P, E, 9.99), members, LAYERS, np.zeros(P, bool), np.zeros(P, int), "snr", ceils, 0.05)
    for s in ss:
        assert s["final/binning/i_xt_at_ceiling/h1"] is True
        assert s["final/binning/i_xt_at_ceiling/h2"] is False and s["final/binning/i_ty_at_ceiling/h1"] is False
    table = S.summary_table(ss, LAYERS, "snr")
    assert S.CEILING_NOTE in table
    final = [line for line in table.splitlines() if line.startswith("| inf") or line.startswith("| 0.1")][0]
    cells = [c.strip() for c in final.strip("|").split("|")]
    assert cells[4].endswith(S.CEILING_MARK) and not cells[5].endswith(S.CEILING_MARK)  # H(X|T) h1 marked, h2 not
    assert S.CEILING_NOTE in S.console_table(ss, LAYERS, "snr", width=400)
    # nothing at its ceiling: no mark, no note
    ss = S.summarize(np.arange(E) * 10, _metrics(P, E, 8.0), members, LAYERS, np.zeros(P, bool), np.zeros(P, int), "snr", ceils, 0.05)
    assert S.CEILING_NOTE not in S.summary_table(ss, LAYERS, "snr")


def _claim_members(effect, capped_layers):
    out = []
    for lv in (math.inf, 0.1):
        for s in range(6):
            m = {"member": len(out), "seed": s, "snr": lv, "diverged": False}
            for j, layer in enumerate(LAYERS):
                v = 4.0 + j + 0.3 * s + (effect if lv == 0.1 else 0.0) + 0.01 * ((s * 7 + j) % 3)
                m[f"final/binning/i_xt/{layer}"] = 10.0 if layer in capped_layers else v
                m[f"final/binning/i_xt_at_ceiling/{layer}"] = layer in capped_layers
            out.append(m)
    return out


def test_claims_leave_estimates_at_their_ceiling_out():
    route = K.Route("binning", "binning", "i_xt")
    row = K.claim1(_claim_members(-1.0, {"h1"}), "snr", route, stage="final")
    assert row.verdict == V.SUPPORTED and abs(row.effect.mean + 1.0) < 0.05  # from h2 and output only
    assert any("left out at the estimator's ceiling" in d and "h1" in d for d in row.detail)
    assert any("at ceiling: not evidence" in d for d in row.detail)
    # every layer at its ceiling: no evidence at all, whatever the (zero) difference says
    row = K.claim1(_claim_members(-1.0, set(LAYERS)), "snr", route, stage="final")
    assert row.verdict == V.INCONCLUSIVE and row.effect.n == 0
    # claim 2 leaves them out too
    row2 = K.claim2(_claim_members(-1.0, {"h1"}), "snr", route)
    assert any("left out at the estimator's ceiling" in d for d in row2.detail)


def test_subset_estimators_have_the_ceiling_of_their_own_rows():
    """renyi, sliced (and sp, channel, infonce, nwj) use a seeded subset of the information set: their
    ceiling is log2 of the subset's rows, not of the whole set's."""
    import dataclasses
    import math

    import numpy as np

    from ib_jax import config as C
    from ib_jax.estimators.ceilings import ceilings

    e = C.EstimatorConf(names=("binning", "renyi", "sliced"), n_info=512, renyi=C.RenyiConf(n=64), sliced=C.SlicedConf(n=128))
    cfg = dataclasses.replace(C.Config(), estimator=e)
    c = ceilings(cfg, np.arange(512) % 2)
    assert c["binning"]["i_xt"] == 9.0 and c["renyi"]["i_xt"] == math.log2(64) and c["sliced"]["i_xt"] == math.log2(128)
    assert c["renyi"]["rows"] == 64 and c["sliced"]["rows"] == 128
