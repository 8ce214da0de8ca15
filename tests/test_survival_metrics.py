"""Tests of helpers.learning.survival.survival_metrics_table on GBSG2 (``sksurv.datasets.load_gbsg2``, shipped offline).

Point values are checked against scikit-survival called directly in the test; the bootstrap intervals are
checked for being seeded (identical with the same seed, different with another).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.datasets import load_gbsg2
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as sksurv_ibs

from helpers.learning.survival import CoxModel, survival_metrics_table, to_structured

HORIZONS = [365.0, 730.0, 1095.0, 1460.0, 1825.0]  # 12, 24, 36, 48, 60 months in days
IBS_TIMES = np.array([180.0, 365.0, 730.0, 1095.0, 1460.0, 1825.0])


@pytest.fixture(scope="module")
def split():
    """GBSG2, numeric covariates, seeded 2:1 split; a Cox model fitted on the training part."""
    X, y = load_gbsg2()
    X = X.assign(
        horTh=(X["horTh"] == "yes").astype(float),
        menostat=(X["menostat"] == "Post").astype(float),
        tgrade=X["tgrade"].astype(str).str.len().astype(float),
    ).astype(float)
    order = np.random.default_rng(0).permutation(len(X))
    tr, te = order[: 2 * len(X) // 3], order[2 * len(X) // 3 :]
    cox = CoxModel().fit(X.iloc[tr], y["time"][tr], y["cens"][tr])
    return {
        "t_tr": y["time"][tr], "e_tr": y["cens"][tr], "t": y["time"][te], "e": y["cens"][te],
        "risks": {"cox": cox.predict_risk(X.iloc[te]), "nodes": X["pnodes"].to_numpy()[te]},
        "surv": {"cox": cox.predict_survival_function(X.iloc[te], IBS_TIMES)},
    }


def _table(split, **kw):
    args = dict(n_bootstrap=30, random_state=0)
    args.update(kw)
    return survival_metrics_table(split["t"], split["e"], split["risks"], HORIZONS + [9000.0], split["t_tr"], split["e_tr"],
                                  survival_probabilities=split["surv"], ibs_times=IBS_TIMES, **args)


@pytest.fixture(scope="module")
def table(split):
    return _table(split)


def test_point_values_match_scikit_survival(split, table):
    train, test = to_structured(split["t_tr"], split["e_tr"]), to_structured(split["t"], split["e"])
    assert list(table["model"]) == ["cox", "nodes"]
    for model, risk in split["risks"].items():
        row = table.set_index("model").loc[model]
        assert (row["n"], row["events"]) == (len(split["t"]), int(split["e"].sum()))
        assert row["c_index"] == pytest.approx(concordance_index_censored(split["e"], split["t"], risk)[0], abs=1e-12)
        auc, _ = cumulative_dynamic_auc(train, test, risk, HORIZONS)
        for h, a in zip(HORIZONS, auc):
            assert row[f"auc_{h:g}"] == pytest.approx(a, abs=1e-12), (model, h)
            assert row[f"auc_{h:g}_lower"] <= row[f"auc_{h:g}_upper"]
    cox = table.set_index("model").loc["cox"]
    assert cox["ibs"] == pytest.approx(sksurv_ibs(train, test, split["surv"]["cox"], IBS_TIMES), abs=1e-12)
    assert np.isnan(table.set_index("model").loc["nodes", "ibs"])  # no survival probabilities given for it


def test_formatted_columns_and_out_of_range_horizon(table):
    cox = table.set_index("model").loc["cox"]
    assert cox["C-index (95% CI)"] == f"{cox['c_index']:.2f} ({cox['c_index_lower']:.2f}-{cox['c_index_upper']:.2f})"
    assert cox["IBS (95% CI)"].startswith(f"{cox['ibs']:.3f} (")
    assert np.isnan(cox["auc_9000"]) and cox["AUC at 9000 (95% CI)"] == "NA"
    assert "horizon(s) 9000 outside the follow-up" in cox["note"]


def test_bootstrap_is_seeded(split, table):
    pd.testing.assert_frame_equal(table, _table(split))
    other = _table(split, random_state=1)
    assert not np.allclose(other["c_index_lower"], table["c_index_lower"])
    assert not np.allclose(other["auc_730_upper"], table["auc_730_upper"])
    pd.testing.assert_series_equal(other["c_index"], table["c_index"])  # point values do not depend on the seed


def test_errors(split):
    with pytest.raises(ValueError, match="risk scores of model 'bad' have 3 values"):
        survival_metrics_table(split["t"], split["e"], {"bad": [1.0, 2.0, 3.0]}, HORIZONS, split["t_tr"], split["e_tr"])
    with pytest.raises(ValueError, match="ibs_times is required"):
        survival_metrics_table(
            split["t"], split["e"], split["risks"], HORIZONS, split["t_tr"], split["e_tr"], survival_probabilities=split["surv"]
        )
    with pytest.raises(ValueError, match="risk_scores is empty"):
        survival_metrics_table(split["t"], split["e"], {}, HORIZONS, split["t_tr"], split["e_tr"])


# -- an evaluated cohort followed longer than the training cohort ------------------------------------------------------


def _longer_external_follow_up(seed: int = 0):
    """Training follow-up ends at 60 (administratively censored); the external cohort has events up to 88."""
    rng = np.random.default_rng(seed)
    t_tr = np.round(rng.exponential(30, 80), 2).clip(0.5, 60)
    e_tr = rng.random(80) < 0.7
    t_tr[-1], e_tr[-1] = 60.0, False
    t_te = np.round(rng.exponential(35, 40), 2).clip(0.5, 90)
    e_te = rng.random(40) < 0.7
    t_te[:3], e_te[:3] = [70.0, 75.0, 88.0], True
    risk = -t_te + rng.normal(0, 10, 40)
    return t_tr, e_tr, t_te, e_te, risk


def _cut(t, e, tau):
    return np.minimum(t, tau), e & (t < tau)


def test_cutting_follow_up_after_the_horizons_changes_no_auc_or_brier_score():
    """The property the cut relies on, shown with scikit-survival itself on a cohort inside the training follow-up."""
    t_tr, e_tr, t_te, e_te, risk = _longer_external_follow_up()
    inside = t_te < 55
    t_in, e_in, r_in = t_te[inside], e_te[inside], risk[inside]
    s_tr = to_structured(t_tr, e_tr)
    hz = [12.0, 24.0, 36.0]
    full, _ = cumulative_dynamic_auc(s_tr, to_structured(t_in, e_in), r_in, hz)
    cut, _ = cumulative_dynamic_auc(s_tr, to_structured(*_cut(t_in, e_in, 40.0)), r_in, hz)
    np.testing.assert_allclose(cut, full, rtol=0, atol=1e-12)
    surv = np.exp(-np.outer(np.exp(r_in / 20), np.array(hz) / 40))
    np.testing.assert_allclose(sksurv_ibs(s_tr, to_structured(*_cut(t_in, e_in, 40.0)), surv, hz),
                               sksurv_ibs(s_tr, to_structured(t_in, e_in), surv, hz), rtol=0, atol=1e-12)  # fmt: skip


def test_time_dependent_auc_and_ibs_with_events_after_the_last_training_time():
    from helpers.learning.survival import integrated_brier_score, time_dependent_auc

    t_tr, e_tr, t_te, e_te, risk = _longer_external_follow_up()
    s_tr = to_structured(t_tr, e_tr)
    hz = [12.0, 24.0, 36.0]
    with pytest.raises(ValueError):  # scikit-survival refuses the events after the training follow-up ...
        cumulative_dynamic_auc(s_tr, to_structured(t_te, e_te), risk, hz)
    ours = time_dependent_auc((t_tr, e_tr), (t_te, e_te), risk, hz, n_bootstrap=20)
    reference, _ = cumulative_dynamic_auc(s_tr, to_structured(*_cut(t_te, e_te, 60.0)), risk, hz)
    np.testing.assert_allclose(ours.table["auc"], reference, rtol=0, atol=1e-12)  # ... the cut gives its own values
    assert ours.table["ci_low"].notna().all()
    surv = np.exp(-np.outer(np.exp(risk / 20), np.array(hz) / 40))
    b = integrated_brier_score((t_tr, e_tr), (t_te, e_te), surv, hz, n_bootstrap=20)
    assert b.estimate == pytest.approx(sksurv_ibs(s_tr, to_structured(*_cut(t_te, e_te, 60.0)), surv, hz), abs=1e-12)
    table = survival_metrics_table(t_te, e_te, {"model": risk}, [12, 24, 36, 72], t_tr, e_tr, n_bootstrap=20)
    assert table[["auc_12", "auc_24", "auc_36"]].notna().all(axis=None) and np.isnan(table.loc[0, "auc_72"])
    assert "72 outside the follow-up" in table.loc[0, "note"] and "not computed" not in table.loc[0, "note"]
