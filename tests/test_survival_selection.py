"""Survival-first selection and evaluation (issue 15).

Pinned against the reference implementations directly:

- ``univariate_cox`` / ``UnivariateCoxFilter``: coefficients, SEs and Wald p-values of lifelines' ``CoxPHFitter``
  (Efron ties) one feature at a time; Harrell's C of scikit-survival's ``concordance_index_censored``;
- ``cox_log_partial_likelihood``: lifelines' log partial likelihood (no ties: Breslow = Efron);
- ``CoxLassoSelector``: the alpha path and coefficients of scikit-survival's ``CoxnetSurvivalAnalysis``, and the
  chosen alpha of a cross-validation written out here with Coxnet and ``concordance_index_censored``;
- ``td_auc_by_horizon``: scikit-survival's ``cumulative_dynamic_auc`` on each cohort's supported horizons (``td_auc_table``
  lays it out like seed Table S5).

Plus: the survival target travels through a Pipeline, binary steps refuse it (and survival steps a binary label),
and the survival-only signature is leakage-free (test patients' times/events change nothing that is fitted).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter
from sklearn.model_selection import StratifiedKFold
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc

from helpers.errors import ConfigError
from helpers.learning.selection import (
    CoxLassoSelector,
    UnivariateCoxFilter,
    build_selector,
    cox_log_partial_likelihood,
    radscore,
    radscore_formula,
    selection_pathway,
    univariate_cox,
)
from helpers.learning.survival import to_structured


def _data(n=90, p=8, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient")
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j}" for j in range(p)], index=index)
    hazard = np.exp(0.9 * X["f0"] - 0.6 * X["f1"] + 0.3 * X["f2"])
    t_event = rng.exponential(20 / hazard)
    t_cens = rng.uniform(5, 60, n)
    time = np.minimum(t_event, t_cens)
    time = np.ceil(time) if ties else time + 1e-3
    event = (t_event <= t_cens).astype(int)
    return X, pd.Series(time, index=index, name="time"), pd.Series(event, index=index, name="event")


# -- univariate Cox ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [True, False])
def test_univariate_cox_matches_lifelines_feature_by_feature(ties):
    X, t, e = _data(ties=ties)
    X["f7"] = np.round(X["f7"])  # a tied covariate
    coef, se, p = univariate_cox(X.to_numpy(), t.to_numpy(), e.to_numpy().astype(bool))
    for j, col in enumerate(X.columns):
        # scikit-survival's Efron fit to its own tight tolerance: the same maximum.
        exact = CoxPHSurvivalAnalysis(ties="efron", tol=1e-12).fit(X[[col]], to_structured(t, e)).coef_[0]
        assert coef[j] == pytest.approx(exact, rel=1e-7, abs=1e-10)
        # lifelines (the library the study's Cox models use) stops its Newton steps a little earlier: agreement to ~1e-4.
        fit = CoxPHFitter().fit(pd.DataFrame({"x": X[col], "T": t, "E": e}), "T", "E")
        assert coef[j] == pytest.approx(fit.params_["x"], rel=1e-4, abs=1e-4)
        assert se[j] == pytest.approx(fit.standard_errors_["x"], rel=1e-4)
        assert p[j] == pytest.approx(fit.summary.loc["x", "p"], rel=1e-3, abs=1e-3)


def test_univariate_cox_constant_feature_has_no_estimate():
    X, t, e = _data()
    X["const"] = 3.0
    coef, se, p = univariate_cox(X.to_numpy(), t.to_numpy(), e.to_numpy().astype(bool))
    assert np.isnan(coef[-1]) and np.isnan(se[-1]) and p[-1] == 1.0


def test_univariate_cox_filter_keeps_significant_features_most_significant_first():
    X, t, e = _data()
    y = to_structured(t, e)
    step = UnivariateCoxFilter(p_threshold=0.01).fit(X, y)
    assert set(step.selected_features_) >= {"f0", "f1"} and "f5" not in step.selected_features_
    assert list(step.pvalues_[step.selected_features_]) == sorted(step.pvalues_[step.selected_features_])
    assert list(step.transform(X).columns) == step.selected_features_
    # Harrell's C in the fitted direction equals scikit-survival's.
    for f in ("f0", "f1"):
        ref = concordance_index_censored(e.astype(bool).to_numpy(), t.to_numpy(), X[f].to_numpy() * np.sign(step.coef_[f]))[0]
        assert step.cindex_[f] == pytest.approx(ref, abs=1e-12)
    # A (time, event) DataFrame indexed by patient is matched by label (shuffled rows give the same result).
    shuffled = pd.DataFrame({"time": t, "event": e}).sample(frac=1.0, random_state=1)
    again = UnivariateCoxFilter(p_threshold=0.01).fit(X, shuffled)
    pd.testing.assert_series_equal(again.pvalues_, step.pvalues_)
    # min_features: too strict a threshold keeps the best ones, and says so.
    strict = UnivariateCoxFilter(p_threshold=1e-300, min_features=3).fit(X, y)
    assert strict.selected_features_ == list(step.pvalues_.sort_values(kind="stable").index[:3]) and "min_features=3" in strict.describe()
    by_c = UnivariateCoxFilter(criterion="c_index", c_threshold=0.6).fit(X, y)
    assert all(by_c.cindex_[f] >= 0.6 for f in by_c.selected_features_)


def test_cox_log_partial_likelihood_matches_lifelines():
    X, t, e = _data(ties=False)
    fit = CoxPHFitter().fit(pd.concat([X[["f0", "f1"]], t, e], axis=1), "time", "event")
    eta = X[["f0", "f1"]].to_numpy() @ fit.params_.to_numpy()
    assert cox_log_partial_likelihood(eta, t.to_numpy(), e.to_numpy()) == pytest.approx(fit.log_likelihood_, rel=1e-8)


# -- Cox LASSO ---------------------------------------------------------------------------------------------------------
def test_cox_lasso_path_and_coefficients_match_coxnet():
    X, t, e = _data()
    Z = (X - X.mean()) / X.std(ddof=0)
    y = to_structured(t, e)
    sel = CoxLassoSelector(cv=5, lambda_rule="min", random_state=3, n_alphas=30).fit(Z, y)
    ref = CoxnetSurvivalAnalysis(l1_ratio=1.0, n_alphas=30, alpha_min_ratio=0.01, max_iter=100000, tol=1e-7, fit_baseline_model=False).fit(Z.to_numpy(), y)
    n = len(sel.cv_results_)
    np.testing.assert_allclose(sel.cv_results_["alpha"], ref.alphas_[:n])
    np.testing.assert_allclose(sel.path_.to_numpy(), ref.coef_[:, :n].T, atol=1e-12)
    i = int(np.flatnonzero(np.isclose(ref.alphas_, sel.alpha_))[0])
    np.testing.assert_allclose(sel.coef_.to_numpy(), ref.coef_[:, i], atol=1e-12)
    assert sel.selected_features_ == [c for c, b in zip(Z.columns, ref.coef_[:, i], strict=True) if b != 0]
    assert {"f0", "f1"} <= set(sel.selected_features_)
    np.testing.assert_allclose(sel.decision_function(Z), Z.to_numpy() @ ref.coef_[:, i], atol=1e-10)
    assert sel.alpha_1se_ >= sel.alpha_min_


def test_cox_lasso_cindex_cv_chooses_the_alpha_of_a_direct_cross_validation():
    X, t, e = _data(seed=4)
    Z = (X - X.mean()) / X.std(ddof=0)
    y = to_structured(t, e)
    sel = CoxLassoSelector(cv=4, scoring="c_index", lambda_rule="min", random_state=11, n_alphas=25).fit(Z, y)
    alphas = sel.cv_results_["alpha"].to_numpy()
    scores = np.zeros((alphas.size, 4))
    folds = StratifiedKFold(4, shuffle=True, random_state=11).split(Z, e)
    for f, (tr, va) in enumerate(folds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=alphas, max_iter=100000, tol=1e-7, fit_baseline_model=False).fit(Z.to_numpy()[tr], y[tr])
        for i in range(alphas.size):
            scores[i, f] = concordance_index_censored(y["event"][va], y["time"][va], Z.to_numpy()[va] @ m.coef_[:, i])[0]
    np.testing.assert_allclose(sel.cv_results_[[f"fold_{k + 1}" for k in range(4)]].to_numpy(), scores, atol=1e-12)
    assert sel.alpha_min_ == pytest.approx(alphas[int(np.argmax(scores.mean(axis=1)))])
    mean, se = scores.mean(axis=1), scores.std(axis=1, ddof=1) / 2.0
    best = int(np.argmax(mean))
    assert sel.alpha_1se_ == pytest.approx(alphas[int(np.flatnonzero(mean >= mean[best] - se[best])[0])])


def test_cox_lasso_partial_likelihood_cv_is_the_verweij_van_houwelingen_score():
    X, t, e = _data(seed=5)
    Z = (X - X.mean()) / X.std(ddof=0)
    y = to_structured(t, e)
    sel = CoxLassoSelector(cv=3, random_state=2, n_alphas=10).fit(Z, y)
    alphas = sel.cv_results_["alpha"].to_numpy()
    tr, _va = next(StratifiedKFold(3, shuffle=True, random_state=2).split(Z, e))
    m = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=alphas, max_iter=100000, tol=1e-7, fit_baseline_model=False).fit(Z.to_numpy()[tr], y[tr])
    b = m.coef_[:, 4]
    expected = (cox_log_partial_likelihood(Z.to_numpy() @ b, t.to_numpy(), e.to_numpy())
                - cox_log_partial_likelihood(Z.to_numpy()[tr] @ b, t.to_numpy()[tr], e.to_numpy()[tr]))
    assert sel.cv_results_["fold_1"].iloc[4] == pytest.approx(expected, rel=1e-10)


def test_survival_pipeline_radscore_and_pathway():
    X, t, e = _data()
    pipe = build_selector([{"step": "impute"}, {"step": "zscore"}, {"step": "univariate_cox", "p_threshold": 0.2},
                           {"step": "correlation", "threshold": 0.9, "relevance": "order"}, {"step": "cox_lasso", "random_state": 1}])
    pipe.fit(X, to_structured(t, e))
    pathway = selection_pathway(pipe)
    assert list(pathway["step"]) == ["input", "impute", "zscore", "univariate_cox", "correlation", "cox_lasso"]
    assert "Cox LASSO" in pathway["rule"].iloc[-1] and "alpha_1se" in pathway["rule"].iloc[-1]
    formula = radscore_formula(pipe)
    assert formula.startswith("Rad-score = ") and "0.000" not in formula.splitlines()[0] and "Cox linear predictor" in formula
    lasso = pipe.steps[-1][1]
    z = pipe[:-1].transform(X)
    np.testing.assert_allclose(radscore(X, pipe), z.to_numpy() @ lasso.coef_.to_numpy())


def test_binary_and_survival_steps_refuse_the_other_target():
    X, t, e = _data()
    with pytest.raises(ValueError, match=r"y must be binary \(a class label\), got a survival target"):
        build_selector([{"step": "univariate"}]).fit(X, to_structured(t, e))
    with pytest.raises(ValueError, match=r"needs a survival target: pass y = to_structured\(time, event\)"):
        build_selector([{"step": "univariate_cox"}]).fit(X, e)
    with pytest.raises(ValueError, match="no event"):
        UnivariateCoxFilter().fit(X, to_structured(t, np.zeros(len(t), dtype=int)))
    with pytest.raises(ConfigError, match="cox_lasso.*lambda_rule"):
        build_selector([{"step": "cox_lasso", "lambda_rule": "2se"}])


def test_keyword_only_parameters_and_no_state_before_fit():
    import inspect

    for cls in (UnivariateCoxFilter, CoxLassoSelector):
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        assert not [k for k in vars(cls()) if k.endswith("_")]


# -- the survival-only signature: config error and leakage ----------------------------------------------------------------
def _survival_only_planted(tmp_path, steps):
    from helpers.settings.study import load_config

    from .conftest import make_planted_feature_study

    study, _ = make_planted_feature_study(tmp_path)
    data = yaml.safe_load((study / "study.yaml").read_text())
    data["endpoints"] = {"time": "time_months", "event": "metastasis"}
    data["signature"]["steps"] = steps
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(study / "study.yaml")


STEPS = [{"step": "zscore"}, {"step": "univariate_cox", "p_threshold": 0.2, "min_features": 3},
         {"step": "correlation", "threshold": 0.9, "relevance": "order"}, {"step": "cox_lasso", "random_state": 3, "cv": 4}]


def test_survival_only_signature_refuses_binary_steps(tmp_path):
    from helpers.data.manifest import load_study
    from helpers.steps.signature import build_signature

    cfg = _survival_only_planted(tmp_path, [{"step": "zscore"}, {"step": "univariate"}, {"step": "lasso"}])
    # Validation already refuses this config (test_bad_input.py); the step itself refuses it too, for notebooks run by hand.
    manifest, patients = load_study(cfg.model_copy(update={"steps": ()}), check_images=False)
    with pytest.raises(ConfigError, match=r"signature.steps has steps that need a binary label.*step 2: univariate; step 3: lasso"):
        build_signature(cfg, manifest, patients)


def test_survival_only_signature_is_leakage_free(tmp_path):
    from helpers.data.manifest import load_study
    from helpers.steps.signature import build_signature

    cfg = _survival_only_planted(tmp_path, STEPS)
    manifest, patients = load_study(cfg, check_images=False)
    sig = build_signature(cfg, manifest, patients)
    final = sig.selector.steps[-1][1]
    assert isinstance(final, CoxLassoSelector) and final.selected_features_ and sig.survival_selector is sig.selector
    assert "radscore" in sig.radscores.columns and "probability" not in sig.radscores.columns
    test = manifest.loc[manifest["cohort"] == "test", "patient"].unique()
    changed = patients.copy()
    rng = np.random.default_rng(0)
    changed.loc[test, "time_months"] = rng.uniform(1, 80, len(test)).round(2)
    changed.loc[test, "metastasis"] = 1 - changed.loc[test, "metastasis"]
    again = build_signature(cfg, manifest, changed)
    other = again.selector.steps[-1][1]
    assert other.selected_features_ == final.selected_features_
    pd.testing.assert_series_equal(other.coef_, final.coef_)
    assert other.alpha_ == final.alpha_
    pd.testing.assert_frame_equal(other.cv_results_, final.cv_results_)
    for (_, a), (_, b) in zip(sig.selector.steps, again.selector.steps, strict=True):
        assert list(a.selected_features_) == list(b.selected_features_)
    train = sig.data.train_index
    pd.testing.assert_series_equal(again.radscores.loc[train, "radscore"], sig.radscores.loc[train, "radscore"])
    # Changing a TRAINING patient's outcome does change the fit (the test above is not vacuous).
    moved = patients.copy()
    moved.loc[train[:10], "metastasis"] = 1 - moved.loc[train[:10], "metastasis"]
    assert not build_signature(cfg, manifest, moved).selector.named_steps["univariate_cox"].pvalues_.equals(sig.selector.named_steps["univariate_cox"].pvalues_)


# -- notebook 06's td-AUC and ablation tables ------------------------------------------------------------------------------
def _predictions(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n, follow in (("train", 80, 70.0), ("val", 40, 40.0), ("test", 40, 65.0)):
        x = rng.normal(size=n)
        t_event = rng.exponential(30 * np.exp(-0.8 * x))
        t_cens = rng.uniform(5, follow, n)
        time, event = np.round(np.minimum(t_event, t_cens), 2), (t_event <= t_cens).astype(int)
        for model, noise in (("C-radiomics", 0.5), ("ITH", 1.5)):
            risk = x + rng.normal(0, noise, n)
            surv = np.exp(-np.outer(np.exp(risk), np.array([10.0, 20.0, 30.0])) / 40)
            for i in range(n):
                rows.append({"model": model, "patient": f"{cohort}{i}", "cohort": cohort, "time": time[i], "event": event[i], "risk": risk[i],
                             "S@10": surv[i, 0], "S@20": surv[i, 1], "S@30": surv[i, 2]})
    return pd.DataFrame(rows)


def _cfg(tmp_path, **survival):
    from helpers.settings.study import StudyConfig

    from .conftest import tiny_config

    raw = tiny_config(tmp_path, cohorts={"train": {"role": "train"}, "val": {"role": "validation"}, "test": {"role": "test"}},
                      endpoints={"time": "t", "event": "e"}, survival={"horizons": [12, 24, 36, 48, 60], **survival},
                      statistics={"n_bootstrap": 100})
    return StudyConfig.model_validate({**raw, "base_dir": str(tmp_path)})


def test_td_auc_by_horizon_matches_scikit_survival_on_the_supported_horizons(tmp_path):
    from helpers.steps.survival import td_auc_by_horizon

    sp = _predictions()
    cfg = _cfg(tmp_path)
    table = td_auc_by_horizon(sp, cfg)
    assert set(table["cohort"]) == {"val", "test"} and set(table["model"]) == {"C-radiomics", "ITH"}
    tr = sp[(sp["cohort"] == "train") & (sp["model"] == "ITH")]
    s_tr = to_structured(tr["time"], tr["event"])
    for cohort in ("val", "test"):
        part = sp[(sp["cohort"] == cohort) & (sp["model"] == "C-radiomics")]
        rows = table[(table["cohort"] == cohort) & (table["model"] == "C-radiomics")].set_index("horizon")
        ok = [h for h in (12, 24, 36, 48, 60) if h < part["time"].max() and h < tr["time"].max()]
        t = np.minimum(part["time"].to_numpy(), tr["time"].max())  # the cohort's follow-up cut at the last training time
        e = part["event"].to_numpy().astype(bool) & (part["time"].to_numpy() < tr["time"].max())
        ref, _ = cumulative_dynamic_auc(s_tr, to_structured(t, e), part["risk"].to_numpy(), ok)
        np.testing.assert_allclose(rows.loc[ok, "auc"].to_numpy(), ref, rtol=1e-12)
        assert (rows.loc[ok, "note"] == "").all() and (rows.loc[ok, "auc_lower"] <= rows.loc[ok, "auc"]).all()
        beyond = [h for h in (12, 24, 36, 48, 60) if h not in ok]
        assert beyond and rows.loc[beyond, "AUC (95% CI)"].eq("-").all() and rows.loc[beyond, "auc"].isna().all()
        assert rows.loc[beyond, "note"].str.contains("beyond the cohort's follow-up|beyond the training follow-up").all()


def test_td_auc_table_reads_like_seed_table_s5(tmp_path):
    from helpers.steps.survival import td_auc_by_horizon, td_auc_table

    sp = _predictions()
    cfg = _cfg(tmp_path)
    long, table = td_auc_by_horizon(sp, cfg), td_auc_table(sp, cfg)
    # One row per cohort and model (cohorts in the configured order), the horizons side by side as integers with the unit.
    horizons = [f"AUC at {h} months (95% CI)" for h in (12, 24, 36, 48, 60)]
    assert list(table.columns) == ["model", "cohort", *horizons, "note"]
    assert list(zip(table["cohort"], table["model"], strict=True)) == [("val", "C-radiomics"), ("val", "ITH"), ("test", "C-radiomics"), ("test", "ITH")]
    for row in table.itertuples(index=False):
        cells = long[(long["cohort"] == row.cohort) & (long["model"] == row.model)].set_index("horizon")
        assert list(row[2:7]) == list(cells["AUC (95% CI)"])  # the long table's cells, horizon by horizon
    # 'val' follows up to ~39 months: 48 and 60 are '-' for every model, the reason (one per cohort, the horizons grouped)
    # is on the cohort's first row.
    val = table[table["cohort"] == "val"]
    last = sp.loc[sp["cohort"] == "val", "time"].max()
    assert (val[horizons[3]] == "-").all() and (val[horizons[4]] == "-").all() and (val[horizons[0]] != "-").all()
    assert list(val["note"]) == [f"48, 60 months: beyond the cohort's follow-up (last observed time {last:g})", ""]
    why_60 = long.loc[(long["cohort"] == "test") & (long["horizon"] == 60), "note"].iloc[0]
    assert list(table.loc[table["cohort"] == "test", "note"]) == [f"60 months: {why_60}", ""]
    supported = table[[h for h in horizons if (table[h] != "-").all()]]
    assert supported.map(lambda c: bool(re.fullmatch(r"0\.\d{3} \(0\.\d{3}-[01]\.\d{3}\)", c))).all().all()
    # Another unit and non-integral horizons keep their decimals; integral ones lose the '.0'.
    years = td_auc_table(sp.assign(time=sp["time"] / 12), _cfg(tmp_path, horizons=[1.5, 2.0, 3], time_unit="years"))
    assert [c for c in years.columns if c.startswith("AUC at")] == ["AUC at 1.5 years (95% CI)", "AUC at 2 years (95% CI)", "AUC at 3 years (95% CI)"]


def test_td_auc_table_says_why_a_horizon_has_no_case(tmp_path):
    from helpers.steps.survival import supported_horizons

    why = supported_horizons(np.array([15.0, 30, 50]), np.array([0, 1, 0]), np.array([10.0, 70]), [12, 24, 36, 48, 60])
    assert why[12] == "before the cohort's first observed time (15)"
    assert why[24] == "no event in the cohort at or before this time (no case)"
    assert why[36] == "" and why[48] == ""
    assert why[60].startswith("beyond the cohort's follow-up (last observed time 50)")
    assert supported_horizons(np.array([5.0, 90]), np.array([1, 0]), np.array([10.0, 70]), [80])[80].startswith("beyond the training follow-up")


def test_ablation_table_columns_and_auc_definition(tmp_path):
    from helpers.learning.survival import harrell_c, time_dependent_auc
    from helpers.steps.survival import ablation_table

    sp = _predictions(seed=1)
    table = ablation_table(sp, _cfg(tmp_path))
    assert list(table["model"]) == ["C-radiomics", "ITH", "C-radiomics", "ITH"] and list(table["cohort"]) == ["val", "val", "test", "test"]
    row = table.iloc[0]
    part = sp[(sp["cohort"] == "val") & (sp["model"] == "C-radiomics")]
    tr = sp[(sp["cohort"] == "train") & (sp["model"] == "C-radiomics")]
    assert row["c_index"] == pytest.approx(concordance_index_censored(part["event"].astype(bool).to_numpy(), part["time"].to_numpy(), part["risk"].to_numpy())[0])
    assert row["c_index"] == pytest.approx(harrell_c(part["time"], part["event"], part["risk"], n_bootstrap=100).estimate)
    ok = [h for h in (12, 24, 36) if h < part["time"].max()]
    mean = time_dependent_auc((tr["time"].to_numpy(), tr["event"].to_numpy()), (part["time"].to_numpy(), part["event"].to_numpy()),
                              part["risk"].to_numpy(), ok, n_bootstrap=100).mean.estimate
    assert row["auc"] == pytest.approx(mean) and row["auc_definition"].startswith("mean td-AUC over 12, 24")
    assert "AUC at 60" in row["note"] and np.isfinite(row["ibs"]) and row["ibs_lower"] <= row["ibs"] <= row["ibs_upper"]
    single = ablation_table(sp, _cfg(tmp_path, ablation_auc=24.0))
    assert single["auc_definition"].iloc[0] == "td-AUC at 24 months"
    # Deterministic: the same call gives the same table.
    pd.testing.assert_frame_equal(ablation_table(sp, _cfg(tmp_path)), table)


def test_with_both_endpoints_the_survival_models_get_their_own_selection(tmp_path):
    from helpers.data.manifest import load_study
    from helpers.settings.study import load_config
    from helpers.steps.signature import build_signature

    from .conftest import make_planted_feature_study

    study, _ = make_planted_feature_study(tmp_path)
    data = yaml.safe_load((study / "study.yaml").read_text())
    data["survival"] = {**data.get("survival", {}), "signature_steps": STEPS}
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    sig = build_signature(cfg, manifest, patients)
    assert sig.survival_selector is not sig.selector and isinstance(sig.survival_selector.steps[-1][1], CoxLassoSelector)
    assert sig.selector.steps[-1][0] == "lasso" and sig.survival_pathway["step"].iloc[-1] == "cox_lasso"
    assert sig.survival_formula.startswith("Rad-score = ") and "radscore" in sig.survival_radscores.columns
    # The earlier behaviour (survival models on the binary signature's features) only when set explicitly.
    data["survival"]["features"] = "binary_signature"
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert build_signature(load_config(study / "study.yaml"), manifest, patients).survival_selector is None
    # survival.signature_steps must be survival steps.
    data["survival"] = {"signature_steps": [{"step": "zscore"}, {"step": "mrmr", "k": 3}, {"step": "cox_lasso"}]}
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=r"survival.signature_steps has steps that need a binary label.*step 2: mrmr"):
        build_signature(load_config(study / "study.yaml"), manifest, patients)


# -- notebook 05's survival model set ----------------------------------------------------------------------------------
def test_survival_model_specs_follow_the_available_blocks():
    from helpers.steps.survival import MODEL_ORDER, survival_model_specs

    blocks = dict.fromkeys(("clinical", "radiomics", "ith", "deep"), pd.DataFrame())
    specs, skipped = survival_model_specs(blocks)
    assert [name for name, _, _ in specs] == list(MODEL_ORDER) and skipped.empty
    assert {n: parts for n, parts, _ in specs}["Combined"] == ["clinical", "radiomics", "deep", "ith"]
    specs, skipped = survival_model_specs({"radiomics": pd.DataFrame(), "ith": pd.DataFrame()})
    assert [n for n, _, _ in specs] == ["C-radiomics", "ITH", "C-radiomics + ITH", "Combined", "C-radiomics (RSF)"]
    assert skipped.set_index("model").loc["DL_F", "reason"] == "no deep features in this study"


def test_survival_pipeline_fits_its_preprocessing_on_the_training_rows_only():
    from helpers.learning.survival import CoxModel
    from helpers.learning.survival_pipeline import SurvivalPipeline

    X, t, e = _data(n=80)
    rng = np.random.default_rng(3)
    X["age"] = np.where(rng.random(80) < 0.1, np.nan, 60 + 10 * X["f0"])
    X["grade"] = np.where(X["f1"] > 0.5, "G3", np.where(rng.random(80) < 0.5, "G1", "G2"))
    X["f2"] = X["f2"].where(rng.random(80) > 0.1)  # missing feature values
    cols = ["age", "grade", "f0", "f2"]
    train, test = X.index[:60], X.index[60:]
    model = SurvivalPipeline(estimator=CoxModel(penalizer=0.1), continuous=("age",), categorical=("grade",)).fit(X.loc[train, cols], t, e)
    risk = model.predict_risk(X.loc[test, cols])
    assert np.isfinite(risk).all() and model.clinical_encoder_ is not None and model.feature_scaler_ is not None
    # Changing the test patients' inputs changes nothing learned (imputation, encoding, z-scores, coefficients).
    shifted = X.copy()
    shifted.loc[test, "f0"] += 10
    shifted.loc[test, "age"] = np.nan
    again = SurvivalPipeline(estimator=CoxModel(penalizer=0.1), continuous=("age",), categorical=("grade",)).fit(shifted.loc[train, cols], t, e)
    pd.testing.assert_series_equal(again.estimator_.coef_, model.estimator_.coef_)
    assert again.clinical_imputer_.fill_values_ == model.clinical_imputer_.fill_values_
    np.testing.assert_allclose(again.predict_risk(X.loc[train, cols]), model.predict_risk(X.loc[train, cols]))
