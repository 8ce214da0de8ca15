"""Tests of helpers.learning.survival on public survival data shipped with lifelines and scikit-survival.

* Rossi recidivism data (``lifelines.datasets.load_rossi``; 432 released prisoners, 114 re-arrests within
  52 weeks): Cox coefficients against published output and statsmodels' PHReg.
* German Breast Cancer Study Group 2 (``sksurv.datasets.load_gbsg2``; 686 patients, recurrence-free survival
  in days): train/test metrics.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import concordance_index
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sksurv.datasets import load_gbsg2
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as sksurv_ibs
from statsmodels.duration.hazard_regression import PHReg

from helpers.figures.survival import km_figure
from helpers.learning.survival import (
    CoxModel,
    RandomSurvivalForest,
    _harrell_c_fast,
    _logrank_by_cut,
    assign_risk_groups,
    harrell_c,
    integrated_brier_score,
    km_by_group,
    risk_groups,
    time_dependent_auc,
    to_structured,
)

COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]

# R survival::coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi) (Efron ties),
# as printed in Fox & Weisberg's appendix "Cox Proportional-Hazards Regression for Survival Data" (the source the
# lifelines documentation cites for this data set): coef and se(coef), 5 decimals.
R_COEF = {"fin": -0.37942, "age": -0.05744, "race": 0.31390, "wexp": -0.14980, "mar": -0.43370, "paro": -0.08487, "prio": 0.09150}
R_SE = {"fin": 0.19138, "age": 0.02200, "race": 0.30799, "wexp": 0.21222, "mar": 0.38187, "paro": 0.19576, "prio": 0.02865}
# lifelines documentation, "Survival regression" (cph.print_summary() on load_rossi): 2 decimals.
DOCS_COEF = {"fin": -0.38, "age": -0.06, "race": 0.31, "wexp": -0.15, "mar": -0.43, "paro": -0.08, "prio": 0.09}
DOCS_SE = {"fin": 0.19, "age": 0.02, "race": 0.31, "wexp": 0.21, "mar": 0.38, "paro": 0.20, "prio": 0.03}


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    return load_rossi()


@pytest.fixture(scope="module")
def rossi_cox(rossi) -> CoxModel:
    return CoxModel().fit(rossi[COVARIATES], rossi["week"], rossi["arrest"])


@pytest.fixture(scope="module")
def gbsg2():
    """GBSG2 with numeric covariates, split 2:1 into training and test cohorts (seeded)."""
    X, y = load_gbsg2()
    X = X.assign(
        horTh=(X["horTh"] == "yes").astype(float),
        menostat=(X["menostat"] == "Post").astype(float),
        tgrade=X["tgrade"].astype(str).str.len().astype(float),  # I, II, III -> 1, 2, 3
    ).astype(float)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[: 2 * len(X) // 3], order[2 * len(X) // 3 :]
    return X.iloc[train], y[train], X.iloc[test], y[test]


# -- Cox model -----------------------------------------------------------------------
def test_cox_reproduces_published_rossi_results(rossi_cox):
    for name in COVARIATES:
        assert rossi_cox.coef_[name] == pytest.approx(R_COEF[name], abs=6e-6), name
        assert rossi_cox.summary_.loc[name, "se(coef)"] == pytest.approx(R_SE[name], abs=6e-6), name
        assert rossi_cox.coef_[name] == pytest.approx(DOCS_COEF[name], abs=0.005 + 1e-9), name
        assert rossi_cox.summary_.loc[name, "se(coef)"] == pytest.approx(DOCS_SE[name], abs=0.005 + 1e-9), name
    assert rossi_cox.summary_.loc["fin", "exp(coef)"] == pytest.approx(0.68426, abs=6e-6)
    assert rossi_cox.summary_.loc["fin", "p"] == pytest.approx(0.04742, abs=6e-6)
    # lifelines docs: "partial log-likelihood = -658.75", "Concordance = 0.64".
    assert rossi_cox.fitter_.log_likelihood_ == pytest.approx(-658.75, abs=0.005)
    assert rossi_cox.concordance_train_ == pytest.approx(0.64, abs=0.005)


def test_cox_matches_statsmodels_phreg(rossi, rossi_cox):
    ph = PHReg(rossi["week"].to_numpy(float), rossi[COVARIATES].to_numpy(float), status=rossi["arrest"].to_numpy(), ties="efron").fit()
    np.testing.assert_allclose(rossi_cox.coef_.to_numpy(), ph.params, atol=1e-4)
    np.testing.assert_allclose(rossi_cox.summary_["se(coef)"].to_numpy(), ph.bse, atol=1e-4)


def test_cox_predictions_match_lifelines(rossi, rossi_cox):
    X = rossi[COVARIATES]
    np.testing.assert_allclose(rossi_cox.predict_risk(X), rossi_cox.fitter_.predict_log_partial_hazard(X).to_numpy(), atol=1e-12)
    np.testing.assert_allclose(rossi_cox.predict_partial_hazard(X), rossi_cox.fitter_.predict_partial_hazard(X).to_numpy(), rtol=1e-12)
    times = [1.0, 8.0, 20.0, 52.0]  # event times, where the Breslow estimate is defined
    ours = rossi_cox.predict_survival_function(X.iloc[:20], times)
    theirs = rossi_cox.fitter_.predict_survival_function(X.iloc[:20], times=times).T.to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    # Between event times ours is a step function (lifelines interpolates linearly there); before the first time S = 1.
    between = rossi_cox.predict_survival_function(X.iloc[:20], [0.5, 20.5])
    np.testing.assert_allclose(between[:, 0], 1.0)
    np.testing.assert_allclose(between[:, 1], ours[:, 2])
    # Column order does not matter; a missing feature is named.
    np.testing.assert_allclose(rossi_cox.predict_risk(X[COVARIATES[::-1]]), rossi_cox.predict_risk(X))
    with pytest.raises(ValueError, match="prio"):
        rossi_cox.predict_risk(X.drop(columns="prio"))


def test_cox_penalty_is_lifelines_elastic_net(rossi):
    X = rossi[COVARIATES]
    ours = CoxModel(penalizer=0.1, l1_ratio=0.5).fit(X, rossi["week"], rossi["arrest"])
    ref = CoxPHFitter(penalizer=0.1, l1_ratio=0.5).fit(rossi, "week", "arrest")
    np.testing.assert_allclose(ours.coef_.to_numpy(), ref.params_[COVARIATES].to_numpy(), atol=1e-8)
    assert np.abs(ours.coef_).sum() < np.abs(CoxModel().fit(X, rossi["week"], rossi["arrest"]).coef_).sum()


def test_cox_estimator_contract_and_training_only(rossi):
    model = CoxModel(penalizer=0.01)
    assert clone(model).get_params() == {"penalizer": 0.01, "l1_ratio": 0.0, "alpha": 0.05}
    with pytest.raises(NotFittedError):
        model.predict_risk(rossi[COVARIATES])
    train, test = rossi.iloc[:300], rossi.iloc[300:]
    fitted = model.fit(train[COVARIATES], train["week"], train["arrest"])
    assert not hasattr(clone(fitted), "coef_")
    coef = fitted.coef_.copy()
    fitted.predict_risk(test[COVARIATES] * 10)  # predicting never refits
    pd.testing.assert_series_equal(fitted.coef_, coef)
    # The fit depends on the training rows only: changing the test cohort's outcome changes nothing.
    again = CoxModel(penalizer=0.01).fit(train[COVARIATES], train["week"], train["arrest"])
    pd.testing.assert_series_equal(again.coef_, coef)
    np.testing.assert_allclose(fitted.means_.to_numpy(), train[COVARIATES].mean().to_numpy())
    with pytest.raises(ValueError, match="0/1"):
        CoxModel().fit(train[COVARIATES], train["week"], train["arrest"] + 1)
    with pytest.raises(ValueError, match="no events"):
        CoxModel().fit(train[COVARIATES], train["week"], np.zeros(len(train)))


# -- random survival forest ------------------------------------------------------------
def test_rsf_is_deterministic_with_a_seed(gbsg2):
    X_train, y_train, X_test, y_test = gbsg2
    fit = lambda seed: RandomSurvivalForest(n_estimators=30, random_state=seed).fit(X_train, y_train["time"], y_train["cens"])
    a, b, c = fit(0), fit(0), fit(1)
    np.testing.assert_array_equal(a.predict_risk(X_test), b.predict_risk(X_test))
    times = [365.0, 730.0, 1460.0]
    np.testing.assert_array_equal(a.predict_survival_function(X_test, times), b.predict_survival_function(X_test, times))
    assert not np.array_equal(a.predict_risk(X_test), c.predict_risk(X_test))
    assert clone(a).get_params() == a.get_params() and not hasattr(clone(a), "forest_")
    # Survival functions equal scikit-survival's own step functions; risk higher = worse.
    fns = a.forest_.predict_survival_function(X_test.to_numpy()[:5])
    np.testing.assert_allclose(a.predict_survival_function(X_test.iloc[:5], times), [[fn(t) for t in times] for fn in fns])
    assert a.score(X_test, y_test["time"], y_test["cens"]) > 0.6


# -- C-index -------------------------------------------------------------------------
def test_harrell_c_equal_across_lifelines_and_sksurv(rossi, rossi_cox, gbsg2):
    t, e = rossi["week"].to_numpy(float), rossi["arrest"].to_numpy()
    risk = rossi_cox.predict_risk(rossi[COVARIATES])
    c = harrell_c(t, e, risk, n_bootstrap=200)
    sk = concordance_index_censored(e.astype(bool), t, risk)[0]
    ll = concordance_index(t, -risk, e)  # lifelines expects predicted survival times: higher = better, hence -risk
    assert c.estimate == pytest.approx(sk, abs=1e-12) and c.estimate == pytest.approx(ll, abs=1e-12)
    assert c.estimate == pytest.approx(0.6403, abs=5e-5) and c.estimate == pytest.approx(rossi_cox.concordance_train_, abs=1e-12)
    assert c.ci_low < c.estimate < c.ci_high and c.n_bootstrap == 200
    assert harrell_c(t, e, -risk, n_bootstrap=1).estimate == pytest.approx(1 - c.estimate, abs=1e-12)
    # Monotone transforms of the risk (partial hazard vs linear predictor) give the same C.
    assert harrell_c(t, e, np.exp(risk), n_bootstrap=1).estimate == pytest.approx(c.estimate, abs=1e-12)
    X_train, y_train, X_test, y_test = gbsg2
    cox = CoxModel().fit(X_train, y_train["time"], y_train["cens"])
    r_test = cox.predict_risk(X_test)
    c_test = harrell_c(y_test["time"], y_test["cens"], r_test, n_bootstrap=1)
    assert c_test.estimate == pytest.approx(concordance_index(y_test["time"], -r_test, y_test["cens"]), abs=1e-12)


def test_fast_bootstrap_c_index_matches_sksurv_on_resamples(rossi, rossi_cox):
    t, e = rossi["week"].to_numpy(float), rossi["arrest"].to_numpy().astype(bool)
    risk = np.round(rossi_cox.predict_risk(rossi[COVARIATES]), 1)  # rounding creates risk ties
    rng = np.random.default_rng(5)
    for _ in range(5):
        idx = rng.integers(0, len(t), len(t))  # duplicates: tied times and risks
        assert _harrell_c_fast(t[idx], e[idx], risk[idx]) == pytest.approx(concordance_index_censored(e[idx], t[idx], risk[idx])[0], abs=1e-12)


def test_harrell_c_bootstrap_is_seeded(rossi, rossi_cox):
    t, e = rossi["week"], rossi["arrest"]
    risk = rossi_cox.predict_risk(rossi[COVARIATES])
    a, b = harrell_c(t, e, risk, n_bootstrap=100, random_state=3), harrell_c(t, e, risk, n_bootstrap=100, random_state=3)
    assert a == b
    assert harrell_c(t, e, risk, n_bootstrap=100, random_state=4).ci_low != a.ci_low


# -- risk groups -----------------------------------------------------------------------
def test_risk_group_cutoffs_come_from_training_only():
    rng = np.random.default_rng(0)
    r_train, r_test = rng.normal(size=101), rng.normal(size=40)
    groups = risk_groups(r_train, r_test, "median")
    assert groups.cutoffs == (float(np.median(r_train)),)
    # Leakage guard: shifting the other cohort's risks moves neither the cut-off nor the training labels.
    shifted = risk_groups(r_train, r_test + 100.0, "median")
    assert shifted.cutoffs == groups.cutoffs
    np.testing.assert_array_equal(shifted.train, groups.train)
    assert set(shifted.other) == {"high"}
    np.testing.assert_array_equal(groups.other, np.where(r_test > np.median(r_train), "high", "low"))
    tert = risk_groups(r_train, r_test + 1.0, "tertiles")
    assert tert.cutoffs == tuple(np.quantile(r_train, [1 / 3, 2 / 3]))
    assert pd.Series(tert.train).value_counts().to_dict() == {"low": 34, "intermediate": 33, "high": 34}
    assert risk_groups(r_train, method="quartiles").names == ("Q1", "Q2", "Q3", "Q4")


def test_risk_equal_to_cutoff_goes_to_lower_group():
    labels = assign_risk_groups([0.9, 1.0, 1.1, 2.0, 2.5], [1.0, 2.0], ["low", "intermediate", "high"])
    assert list(labels) == ["low", "low", "intermediate", "intermediate", "high"]
    with pytest.raises(ValueError, match="strictly increasing"):
        assign_risk_groups([1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="not distinct"):
        risk_groups(np.r_[np.zeros(10), 1.0], method="tertiles")


def test_youden_cutoff_on_training_status_at_horizon():
    # Cases (event by t=10) have risks 3, 4, 5; controls (followed beyond 10) 1, 2, 3.5; one censored at 5 is excluded.
    risk = np.array([3.0, 4.0, 5.0, 1.0, 2.0, 3.5, 100.0])
    time = np.array([2.0, 5.0, 8.0, 20.0, 20.0, 20.0, 5.0])
    event = np.array([1, 1, 1, 0, 0, 1, 0])
    groups = risk_groups(risk, [2.5, 3.2], "youden", time_train=time, event_train=event, horizon=10)
    # cut 2: sens 1, spec 2/3 (J 0.667); cut 3.5: sens 2/3, spec 1 (J 0.667) -> the lowest maximiser, 2.
    assert groups.cutoffs == (2.0,)
    assert list(groups.other) == ["high", "high"]
    with pytest.raises(ValueError, match="horizon"):
        risk_groups(risk, method="youden", time_train=time, event_train=event)
    with pytest.raises(ValueError, match="time_train and event_train"):
        risk_groups(risk, method="maxstat")


def test_maxstat_cutoff_maximises_lifelines_logrank(rossi, rossi_cox):
    t, e = rossi["week"].to_numpy(float), rossi["arrest"].to_numpy().astype(bool)
    risk = np.round(rossi_cox.predict_risk(rossi[COVARIATES]), 2)
    groups = risk_groups(risk, method="maxstat", time_train=t, event_train=e, min_prop=0.2)
    lo, hi = np.quantile(risk, [0.2, 0.8])
    cands = np.unique(risk[(risk >= lo) & (risk < hi)])
    stats = [logrank_test(t[risk > c], t[risk <= c], e[risk > c], e[risk <= c]).test_statistic for c in cands]
    assert groups.cutoffs == (float(cands[int(np.argmax(stats))]),)
    np.testing.assert_allclose(_logrank_by_cut(risk, t, e, cands), stats, rtol=1e-10)


# -- Kaplan-Meier and log-rank -----------------------------------------------------------
def test_km_by_group_logrank_matches_lifelines(rossi, rossi_cox):
    t, e = rossi["week"].to_numpy(float), rossi["arrest"].to_numpy()
    risk = rossi_cox.predict_risk(rossi[COVARIATES])
    groups = risk_groups(risk, method="tertiles")
    km = km_by_group(t, e, groups.train, order=groups.names)
    direct = multivariate_logrank_test(t, groups.train, e)
    assert km.p_value == pytest.approx(direct.p_value, rel=1e-12) and km.degrees_of_freedom == 2
    assert km.test_statistic == pytest.approx(direct.test_statistic, rel=1e-12)
    assert list(km.fitters) == ["low", "intermediate", "high"]
    assert km.summary["n"].sum() == len(t) and km.summary["events"].sum() == e.sum()
    fin = km_by_group(t, e, np.where(rossi["fin"] == 1, "aid", "no aid"))
    two = logrank_test(t[rossi["fin"] == 1], t[rossi["fin"] == 0], e[rossi["fin"] == 1], e[rossi["fin"] == 0])
    assert fin.p_value == pytest.approx(two.p_value, rel=1e-12)
    ref = KaplanMeierFitter().fit(t[rossi["fin"] == 1], e[rossi["fin"] == 1])
    pd.testing.assert_series_equal(fin.fitters["aid"].survival_function_.iloc[:, 0], ref.survival_function_.iloc[:, 0], check_names=False)
    with pytest.raises(ValueError, match="at least two groups"):
        km_by_group(t, e, np.full(len(t), "all"))


def test_km_figure_numbers_at_risk(rossi):
    t, e = rossi["week"].to_numpy(float), rossi["arrest"].to_numpy()
    labels = np.where(rossi["fin"] == 1, "aid", "no aid")
    km = km_by_group(t, e, labels)
    ticks = [0, 13, 26, 39, 52]
    fig = km_figure(km, at_risk_times=ticks, time_label="Time (weeks)")
    table = fig.axes[1]
    shown = {(round(txt.get_position()[0]), round(txt.get_position()[1])): int(txt.get_text()) for txt in table.texts}
    for row, name in enumerate(["aid", "no aid"]):
        kmf = km.fitters[name]
        for tick in ticks:
            expected = int(np.sum(t[labels == name] >= tick))
            assert shown[(tick, 1 - row)] == expected
            if tick in kmf.event_table.index:  # lifelines' own at-risk column agrees
                assert kmf.event_table.loc[tick, "at_risk"] == expected
    texts = [txt.get_text() for txt in fig.axes[0].texts]
    assert any(txt.startswith("Log-rank p") for txt in texts)
    plt.close(fig)


# -- time-dependent AUC and Brier score ----------------------------------------------------
def test_time_dependent_auc_matches_sksurv_with_bootstrap_ci(gbsg2):
    X_train, y_train, X_test, y_test = gbsg2
    cox = CoxModel().fit(X_train, y_train["time"], y_train["cens"])
    risk = cox.predict_risk(X_test)
    times = [365.0, 730.0, 1095.0, 1460.0]
    s_train, s_test = to_structured(y_train["time"], y_train["cens"]), to_structured(y_test["time"], y_test["cens"])
    res = time_dependent_auc(s_train, s_test, risk, times, n_bootstrap=100)
    auc, mean = cumulative_dynamic_auc(y_train, y_test, risk, times)
    np.testing.assert_allclose(res.table["auc"], auc, atol=1e-12)
    assert res.mean.estimate == pytest.approx(mean, abs=1e-12)
    assert (res.table["ci_low"] < res.table["auc"]).all() and (res.table["auc"] < res.table["ci_high"]).all()
    assert res.mean.ci_low < res.mean.estimate < res.mean.ci_high
    again = time_dependent_auc((y_train["time"], y_train["cens"]), (y_test["time"], y_test["cens"]), risk, times, n_bootstrap=100)
    pd.testing.assert_frame_equal(res.table, again.table)
    with pytest.raises(ValueError, match="follow-up"):
        time_dependent_auc(s_train, s_test, risk, [10_000.0])


def test_ipcw_metrics_handle_administrative_censoring(rossi, rossi_cox):
    # Everyone event-free is censored at week 52: the censoring survival is 0 there, and scikit-survival refuses an
    # evaluated event at week 52. The evaluated follow-up is cut at the last training time (exact before it), so the
    # AUC at week 26 is scikit-survival's on the cut data.
    surv = to_structured(rossi["week"], rossi["arrest"])
    risk = np.asarray(rossi_cox.predict_risk(rossi[COVARIATES]))
    with pytest.raises(ValueError, match="censoring survival function is zero"):
        cumulative_dynamic_auc(surv, surv[:200], risk[:200], [26.0])
    week, arrest = rossi["week"].to_numpy()[:200], rossi["arrest"].to_numpy()[:200].astype(bool)
    cut = to_structured(np.minimum(week, 52.0), arrest & (week < 52.0))
    reference, _ = cumulative_dynamic_auc(surv, cut, risk[:200], [26.0])
    assert time_dependent_auc(surv, surv[:200], risk[:200], [26.0], n_bootstrap=1).table["auc"].iloc[0] == pytest.approx(reference[0], abs=1e-12)


def test_integrated_brier_score_cox_and_rsf(gbsg2):
    X_train, y_train, X_test, y_test = gbsg2
    times = np.arange(180.0, 1800.0, 90.0)
    cox = CoxModel().fit(X_train, y_train["time"], y_train["cens"])
    rsf = RandomSurvivalForest(n_estimators=30).fit(X_train, y_train["time"], y_train["cens"])
    km = KaplanMeierFitter().fit(y_train["time"], y_train["cens"])
    null = np.tile(km.survival_function_at_times(times).to_numpy(), (len(X_test), 1))  # same curve for everyone
    null_ibs = integrated_brier_score(y_train, y_test, null, times, n_bootstrap=1).estimate
    for model in (cox, rsf):
        S = model.predict_survival_function(X_test, times)
        res = integrated_brier_score(y_train, y_test, S, times, n_bootstrap=50)
        assert res.estimate == pytest.approx(sksurv_ibs(y_train, y_test, S, times), abs=1e-12)
        assert res.ci_low < res.estimate < res.ci_high and res.n_bootstrap == 50
        assert res.estimate < null_ibs  # the covariates help
    with pytest.raises(ValueError, match="survival probabilities"):
        integrated_brier_score(y_train, y_test, -cox.predict_survival_function(X_test, times), times)
