"""Calibration that means something (issue 19): class weights off by default, recalibration on training out-of-fold
scores only, and planted-truth checks of the probabilities the deployed model reports.

References: scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` on the same folds (the deployed probabilities),
``IsotonicRegression`` and a direct maximisation of Platt's likelihood (the calibrators), the R-pinned
``calibration_slope_intercept`` (the calibration of the reported probabilities), and data simulated from a known
event probability (the truth the probabilities must recover).
"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from helpers.learning.models import (
    ALGORITHMS,
    CLASS_WEIGHT_ALGORITHMS,
    build_pipeline,
    class_weight_for,
    make_classifier,
    save_model,
    tune,
    youden_threshold,
)
from helpers.learning.recalibration import ProbabilityCalibrator, recalibration_for, response_method
from helpers.reporting.supplement import review_points as rp
from helpers.reporting.supplement.methods import _final_calibration_text
from helpers.settings import study as study_settings
from helpers.settings.study import ModelsConfig, load_config
from helpers.stats import calibration_table
from helpers.stats.calibration import brier_score, calibration_slope_intercept
from helpers.steps.models import ModellingData, fit_final_model, model_predictions, radiomics_model_name

from .conftest import tiny_config
from .test_models import _LOG, TINY, _Memoriser, _RowRecorder, _SpyClassifier, _with_ids, frame

#: Tolerances of the planted-truth checks (stated in the README): training out-of-fold calibration slope within 0.2 of 1
#: and intercept within 0.2 of 0 (about two standard errors at 600 training patients); a large external cohort from the
#: training distribution: slope within 0.1 of 1, intercept within 0.1 of 0.
OOF_TOLERANCE = 0.2
EXTERNAL_TOLERANCE = 0.1


# --------------------------------------------------------------------------- planted data


def _planted(n: int, prevalence: float, seed: int, n_features: int = 8) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Two Gaussian classes (identity covariance, means differing in 3 features): the true risk is logistic-linear.

    ``x | y ~ N(mu_y, I)`` with ``P(y = 1) = prevalence``, so ``logit P(y = 1 | x) = logit(prevalence) + delta . x - c``:
    a cohort drawn with another prevalence has the same class-conditional features (a pure prevalence shift). Returns
    features, outcome and the true event probability of every patient.
    """
    rng = np.random.default_rng(seed)
    delta = np.zeros(n_features)
    delta[:3] = (0.9, -0.7, 0.5)
    y = (rng.random(n) < prevalence).astype(int)
    X = rng.normal(size=(n, n_features)) + np.outer(y, delta)
    true_logit = logit(prevalence) + X @ delta - 0.5 * float(delta @ delta)
    Xf, ys = frame(X, y, prefix="CT_tumour_original_firstorder_f")
    Xf.index = pd.Index([f"S{seed}_{i:04d}" for i in range(n)], name="patient")
    ys.index = Xf.index
    return Xf, ys, expit(true_logit)


@pytest.fixture(scope="module")
def planted():
    return _planted(600, 0.3, seed=1)


def _pipe(algorithm: str = "logistic", smote: bool = False, class_weight: str | None = None, **params):
    return build_pipeline([("z", StandardScaler())], make_classifier(algorithm, random_state=0, class_weight=class_weight, **params),
                          smote=smote, random_state=0)  # fmt: skip


def _oof_calibration(model, y) -> dict:
    return calibration_slope_intercept(y.loc[model.oof_proba_.index].to_numpy(), model.oof_proba_.to_numpy())


# --------------------------------------------------------------------------- defaults and settings


@pytest.mark.parametrize("name", ALGORITHMS)
def test_no_class_weights_by_default_balanced_only_on_request(name):
    def weight(est):
        inner = est.estimator if type(est).__name__ == "CalibratedClassifierCV" else est
        return inner.get_params().get("class_weight")

    assert weight(make_classifier(name)) is None
    if name in CLASS_WEIGHT_ALGORITHMS:
        assert weight(make_classifier(name, class_weight="balanced")) == "balanced"
        assert class_weight_for(name, "balanced") == "balanced"
    else:
        with pytest.raises(ValueError, match="not available"):
            make_classifier(name, class_weight="balanced")
        assert class_weight_for(name, "balanced") is None
    assert class_weight_for(name, "none") is None
    with pytest.raises(ValueError, match="class_weight"):
        make_classifier(name, class_weight="inverse")


def test_settings_state_class_weight_and_recalibration_with_the_auto_rule(tmp_path):
    assert study_settings._CLASS_WEIGHT_ALGORITHMS == CLASS_WEIGHT_ALGORITHMS  # settings keep their own copy (no import)
    m = ModelsConfig()
    assert (m.class_weight, m.smote, m.recalibration) == ("none", False, "auto")
    # auto: a model tuned on the AUC is recalibrated; untuned, unweighted and without SMOTE it keeps its probabilities
    assert {m.recalibration_for(a, tuned=True) for a in ALGORITHMS} == {"sigmoid"}
    assert {m.recalibration_for(a, tuned=False) for a in ALGORITHMS} == {"none"} and not m.uncalibrated_reweighting
    smote = ModelsConfig(smote=True)
    assert {smote.recalibration_for(a, tuned=False) for a in ALGORITHMS} == {"sigmoid"}
    weighted = ModelsConfig(class_weight="balanced")
    assert [weighted.recalibration_for(a, tuned=False) for a in ALGORITHMS] == [
        "sigmoid" if a in CLASS_WEIGHT_ALGORITHMS else "none" for a in ALGORITHMS]
    assert ModelsConfig(recalibration="isotonic").recalibration_for("xgboost", tuned=False) == "isotonic"
    off = ModelsConfig(smote=True, recalibration="none")
    assert off.recalibration_for("logistic", tuned=True) == "none" and off.uncalibrated_reweighting
    assert recalibration_for("auto", weighted=False, smote=True, tuned=False) == "sigmoid"
    assert recalibration_for("auto", weighted=False, smote=False, tuned=False) == "none"
    for key, bad in (("class_weight", "inverse"), ("recalibration", "platt")):
        (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, models={key: bad}), sort_keys=False))
        with pytest.raises(Exception, match=key):
            load_config(tmp_path / "study.yaml")


# --------------------------------------------------------------------------- the calibrator against scikit-learn


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_deployed_probabilities_equal_calibrated_classifier_cv(planted, name, method):
    """The model tune returns predicts exactly what CalibratedClassifierCV(pipeline, cv=<the same folds>, ensemble=False)
    predicts: the same out-of-fold scores (decision function or probability), the same calibrator, the same refit.
    SMOTE and (where available) class weights are on: the case the recalibration exists for."""
    X, y, _ = planted
    X, y = X.iloc[:200], y.iloc[:200]
    X_new = X.iloc[:60] * 1.3 + 0.2
    pipe = _pipe(name, smote=True, class_weight=class_weight_for(name, "balanced"), **TINY[name])
    model = tune(pipe, X, y, search="none", cv=5, random_state=0, recalibration=method)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    reference = CalibratedClassifierCV(pipe, method=method, cv=folds, ensemble=False).fit(X, y)
    np.testing.assert_allclose(model.positive_proba(X_new).to_numpy(), reference.predict_proba(X_new)[:, 1], rtol=0, atol=1e-10)
    assert model.calibrator_.response == response_method(pipe) and model.calibrator_.n_fitted_ == len(y)
    scores = cross_val_predict(pipe, X, y, cv=folds, method=response_method(pipe))
    scores = scores[:, 1] if scores.ndim == 2 else scores
    np.testing.assert_allclose(model.oof_score_.to_numpy(), scores, rtol=0, atol=1e-12)  # tune's own fold fits, reused


def test_tuned_hyperparameters_then_recalibration_equal_calibrated_classifier_cv(planted):
    X, y, _ = planted
    pipe = _pipe("logistic", smote=True)
    model = tune(pipe, X, y, search="grid", cv=5, random_state=0, recalibration="sigmoid")
    best = pipe.set_params(**model.best_params_)
    reference = CalibratedClassifierCV(best, method="sigmoid", cv=StratifiedKFold(5, shuffle=True, random_state=0), ensemble=False).fit(X, y)
    np.testing.assert_allclose(model.positive_proba(X).to_numpy(), reference.predict_proba(X)[:, 1], rtol=0, atol=1e-10)


def test_calibrators_are_platt_and_isotonic_regression():
    """Independent references for the calibrator itself: Platt's likelihood with his smoothed targets
    ((N+ + 1) / (N+ + 2) and 1 / (N- + 2)) maximised directly, and scikit-learn's IsotonicRegression."""
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.35).astype(int)
    s = rng.normal(size=300) + 1.3 * y
    sig = ProbabilityCalibrator(method="sigmoid").fit(s, y)
    n_pos, n_neg = y.sum(), (1 - y).sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(ab):
        z = ab[0] * s + ab[1]  # p = 1 / (1 + exp(z))
        return float(np.sum(t * np.logaddexp(0, z) + (1 - t) * np.logaddexp(0, -z)))

    a, b = minimize(loss, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    assert sig.a_ == pytest.approx(a, abs=1e-5) and sig.b_ == pytest.approx(b, abs=1e-5)
    grid = np.linspace(-3, 4, 50)
    np.testing.assert_allclose(sig.predict(grid), 1 / (1 + np.exp(sig.a_ * grid + sig.b_)), rtol=0, atol=1e-12)
    iso = ProbabilityCalibrator(method="isotonic").fit(s, y)
    np.testing.assert_allclose(iso.predict(grid), IsotonicRegression(out_of_bounds="clip").fit(s, y).predict(grid), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="method"):
        ProbabilityCalibrator(method="platt").fit(s, y)
    with pytest.raises(ValueError, match="both classes"):
        ProbabilityCalibrator().fit(s, np.zeros(300, dtype=int))
    with pytest.raises(ValueError, match="recalibration"):
        tune(_pipe(), pd.DataFrame(s[:, None]), y, search="none", recalibration="platt")


def test_recalibrated_out_of_fold_probabilities_are_cross_fitted_and_the_threshold_is_chosen_on_them(planted):
    X, y, _ = planted
    model = tune(_pipe("logistic", smote=True), X, y, search="none", cv=5, random_state=0, recalibration="sigmoid")
    scores, labels, fold = model.oof_score_.to_numpy(), y.to_numpy(), model.fold_.to_numpy()
    for k in range(5):
        calibrator = ProbabilityCalibrator(method="sigmoid", response="decision_function").fit(scores[fold != k], labels[fold != k])
        np.testing.assert_allclose(model.oof_proba_.to_numpy()[fold == k], calibrator.predict(scores[fold == k]), rtol=0, atol=1e-12)
    deployed = ProbabilityCalibrator(method="sigmoid", response="decision_function").fit(scores, labels)
    assert (deployed.a_, deployed.b_) == (model.calibrator_.a_, model.calibrator_.b_)
    assert model.threshold_ == youden_threshold(y, model.oof_proba_)
    assert not np.allclose(model.oof_proba_, model.oof_proba_uncalibrated_)  # SMOTE's probabilities were moved
    meta = model.metadata()
    assert meta["recalibration"]["method"] == "sigmoid" and meta["recalibration"]["n_fitted"] == len(y)
    assert meta["class_weight"] == "none" and meta["training_prevalence"] == pytest.approx(y.mean())


# --------------------------------------------------------------------------- leakage


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibrator_sees_only_training_out_of_fold_scores(planted, method):
    """Leakage guard: a memorising classifier scores every patient it was trained on perfectly (0 or 1) and any other
    0.5. Out of fold it therefore scores every training patient 0.5, so a calibrator fitted on out-of-fold scores only
    can learn nothing but the training event rate: the deployed model returns that rate even for the memorised training
    patients. A calibrator fitted on in-sample scores would map 1 to 1 and 0 to 0."""
    X, y, _ = planted
    X, y = _with_ids(X.iloc[:120]), y.iloc[:120]
    model = tune(build_pipeline([], _Memoriser()), X, y, search="none", cv=5, recalibration=method)
    assert np.all(model.oof_score_ == 0.5) and np.all(model.oof_proba_uncalibrated_ == 0.5)
    in_sample = model.positive_proba(X).to_numpy()
    if method == "isotonic":
        np.testing.assert_allclose(in_sample, y.mean(), rtol=0, atol=1e-12)
    else:
        assert np.ptp(in_sample) < 0.05 and abs(in_sample.mean() - y.mean()) < 0.05  # Platt's smoothing shifts it a little
    # Another cohort (shifted by 3 SD) is predicted patient by patient and changes nothing that was fitted.
    state = joblib.hash(model)
    shifted = X.iloc[:25].assign(**{c: X[c].iloc[:25] * 2 + 3 for c in X.columns if c != "row_id"})
    batch = model.positive_proba(shifted).to_numpy()
    np.testing.assert_array_equal(batch[:5], model.positive_proba(shifted.iloc[:5]).to_numpy())
    assert joblib.hash(model) == state


def test_recalibration_reuses_the_fold_fits_and_predicts_only_validation_folds(planted):
    """Leakage and speed: with recalibration the classifier is fitted exactly as often as without (the k training folds,
    then all training patients: no extra fit for the calibrator), every fold fit sees its training fold only, and the
    only patients it scores before the refit are each fold's validation patients (the calibrator's input). A test
    cohort is scored once, patient by patient, by the refitted pipeline."""
    X, y, _ = planted
    X, y = _with_ids(X.iloc[:120]), y.iloc[:120]
    logs = {}
    for method in ("none", "sigmoid"):
        _LOG.clear()
        pipe = build_pipeline([("rec", _RowRecorder("pre"))], _SpyClassifier("post"), smote=True, smote_k_neighbors=3, random_state=0)
        model = tune(pipe, X, y, search="none", cv=4, random_state=0, recalibration=method)
        logs[method] = [(e[0], frozenset(np.asarray(e[1])[:, 0].tolist())) for e in _LOG["post"]]
    assert logs["sigmoid"] == logs["none"]  # the same fits and predictions: the calibrator costs no refit
    ids, folds = X["row_id"].to_numpy(), model.fold_.to_numpy()
    fits = [rows for kind, rows in logs["sigmoid"] if kind == "fit"]
    predicted = [rows for kind, rows in logs["sigmoid"] if kind == "predict"]
    assert len(fits) == 5 and fits[-1] >= set(ids)  # 4 folds + the refit (SMOTE adds synthetic rows)
    for k in range(4):
        assert not fits[k] & set(ids[folds == k])  # no validation patient in a fold's fit
    assert sorted(map(sorted, predicted)) == sorted(sorted(ids[folds == k].tolist()) for k in range(4))
    _LOG["post"].clear()
    test = X.iloc[:9].copy()
    test[X.columns[1]] += 3
    model.positive_proba(test)
    ((kind, rows),) = [(e[0], np.asarray(e[1])) for e in _LOG["post"]]
    assert kind == "predict" and np.array_equal(rows, test.to_numpy())


# --------------------------------------------------------------------------- planted truth


@pytest.mark.parametrize(("settings", "calibrated"), [
    ({}, True),                                                   # default: no weights, no SMOTE; tuned on AUC + auto = sigmoid
    ({"search": "none"}, True),                                   # untuned, unweighted: auto = none, the model's own probabilities
    ({"smote": True}, True),                                      # SMOTE + auto = sigmoid
    ({"class_weight": "balanced"}, True),                         # class weights + auto = sigmoid
    ({"smote": True, "recalibration": "isotonic"}, True),
    ({"smote": True, "recalibration": "none"}, False),            # SMOTE without recalibration: probabilities pulled to 0.5
    ({"class_weight": "balanced", "recalibration": "none"}, False),
], ids=["default", "untuned", "smote+auto", "balanced+auto", "smote+isotonic", "smote+none", "balanced+none"])  # fmt: skip
def test_planted_truth_calibration_of_the_deployed_model(planted, settings, calibrated):
    """A known event probability (prevalence 0.3): the training out-of-fold and the deployed model's external
    probabilities are calibrated, and close to the true probabilities, under the defaults and whenever reweighting is
    recalibrated; without recalibration class weights and SMOTE overestimate the risk (intercept well below 0)."""
    X, y, _ = planted
    m = ModelsConfig(**settings)
    pipe = _pipe("logistic", smote=m.smote, class_weight=class_weight_for("logistic", m.class_weight))
    model = tune(pipe, X, y, search=m.search, cv=5, random_state=0, recalibration=m.recalibration_for("logistic", tuned=m.search != "none"))
    X_ext, y_ext, truth = _planted(20000, 0.3, seed=2)
    p_ext = model.positive_proba(X_ext).to_numpy()
    oof, ext = _oof_calibration(model, y), calibration_slope_intercept(y_ext.to_numpy(), p_ext)
    if calibrated and settings.get("recalibration") == "isotonic":
        # Isotonic regression's lowest plateau is 0 (36 training and about 1,000 external patients here), whose logit is
        # clipped, so the logistic calibration slope does not describe it; calibration-in-the-large and the Brier score do.
        assert abs(oof["intercept"]) < OOF_TOLERANCE and abs(ext["intercept"]) < EXTERNAL_TOLERANCE
        assert abs(p_ext.mean() - truth.mean()) < 0.02 and np.mean(np.abs(p_ext - truth)) < 0.08
        assert brier_score(y_ext, p_ext) < brier_score(y_ext, truth) + 0.01
    elif calibrated:
        assert abs(oof["slope"] - 1) < OOF_TOLERANCE and abs(oof["intercept"]) < OOF_TOLERANCE, oof
        assert abs(ext["slope"] - 1) < EXTERNAL_TOLERANCE and abs(ext["intercept"]) < EXTERNAL_TOLERANCE, ext
        assert abs(p_ext.mean() - truth.mean()) < 0.02 and np.mean(np.abs(p_ext - truth)) < 0.05
    else:
        assert oof["intercept"] < -0.5 and ext["intercept"] < -0.5  # risks overestimated
        assert model.oof_proba_.mean() > y.mean() + 0.1 and p_ext.mean() > truth.mean() + 0.1


# --------------------------------------------------------------------------- the study's steps and outputs


def _study_cfg(tmp_path, **models):
    cfg = tiny_config(tmp_path, cohorts={"train": {"role": "train"}, "external_low": {"role": "test"}, "external_high": {"role": "test"}},
                      signature={"steps": [{"step": "zscore"}]}, models={"cv": 5, "search": "grid", **models})  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(tmp_path / "study.yaml")


def _study_data() -> tuple[ModellingData, pd.Series]:
    """The issue's setting, planted: training event rate 0.54, external cohorts 0.29 and 0.73, the same class-conditional
    features everywhere (a pure prevalence shift)."""
    parts = [(name, *_planted(n, rate, seed=seed)) for name, n, rate, seed in
             (("train", 500, 0.54, 11), ("external_low", 3000, 0.29, 12), ("external_high", 3000, 0.73, 13))]  # fmt: skip
    X = pd.concat([p[1] for p in parts])
    y = pd.concat([p[2] for p in parts])
    cohort = pd.concat([pd.Series(name, index=Xc.index) for name, Xc, _, _ in parts])
    # The true risk at the training event rate (0.54), for every patient: what a model calibrated on training estimates.
    truth = pd.concat([pd.Series(expit(logit(t) - logit(rate) + logit(0.54)), index=Xc.index)
                       for (_, Xc, _, t), rate in zip(parts, (0.54, 0.29, 0.73), strict=True)])  # fmt: skip
    return ModellingData(X, y, cohort, ["train"], held_out=["external_low", "external_high"]), truth


@pytest.fixture(scope="module")
def planted_study():
    return _study_data()


def _write_run(cfg, model, data) -> pd.DataFrame:
    """What notebooks 05-06 write for the reviewer points: the model sidecar, the split counts, the calibration table."""
    root = cfg.report_root
    save_model(model, root / "models" / "final_model.joblib")
    preds = model_predictions({radiomics_model_name("logistic"): (model, "main")}, data)
    table = calibration_table(preds)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    table.to_csv(root / "tables" / "calibration.csv", index=False)
    counts = [{"cohort": c, "patients": int((data.cohort == c).sum()), "outcome=0": f"{int(((data.cohort == c) & (data.y == 0)).sum())} (x%)",
               "outcome=1": f"{int(((data.cohort == c) & (data.y == 1)).sum())} (y%)"} for c in cfg.cohorts]  # fmt: skip
    pd.DataFrame(counts).to_csv(root / "tables" / "cohort_split_counts.csv", index=False)
    return table.set_index("cohort")


@pytest.mark.parametrize("settings", [{}, {"smote": True}], ids=["default", "smote+auto"])
def test_study_reports_the_calibration_of_the_deployed_model_and_flags_the_prevalence_shift(tmp_path, planted_study, settings):
    """Notebook 05's final model and notebook 06's calibration table on the planted three-cohort study: training
    out-of-fold and the deployed model's probabilities are calibrated to the training event rate; each external cohort's
    calibration intercept is the planted prevalence shift, logit(rate) - logit(training rate) (about -1.1 and +0.7), its
    mean predicted probability is the mean true risk at the training event rate (pulled towards the training rate: the
    issue's 'about 0.50 in both cohorts'), and the reviewer points name both rates. Nothing of the external cohorts
    reaches the calibrator: changing their outcomes and features changes no fitted value."""
    cfg = _study_cfg(tmp_path, **settings)
    data, truth = planted_study
    model = fit_final_model(data, cfg)
    assert model.calibrator_ is not None and model.calibrator_.method == "sigmoid"  # tuned on AUC (and SMOTE): auto = sigmoid
    table = _write_run(cfg, model, data)
    train = table.loc["train"]
    assert abs(train["slope"] - 1) < OOF_TOLERANCE and abs(train["intercept"]) < OOF_TOLERANCE
    assert abs(train["mean_predicted"] - train["observed_rate"]) < 0.02
    rates = {c: data.y[data.cohort == c].mean() for c in cfg.cohorts}
    for cohort in ("external_low", "external_high"):
        row = table.loc[cohort]
        planted_shift = logit(rates[cohort]) - logit(rates["train"])
        assert row["intercept_lower"] < planted_shift < row["intercept_upper"], (cohort, row["intercept"], planted_shift)
        assert abs(row["slope"] - 1) < OOF_TOLERANCE  # a model estimated on 500 patients: its slope is known to about 0.1
        assert abs(row["mean_predicted"] - truth[data.cohort == cohort].mean()) < 0.03 and row["observed_rate"] == pytest.approx(rates[cohort])
    points = [p for p in rp.review_points(cfg) if p.rule == "prevalence_shift"]
    assert len(points) == 2 and all(p.severity == "major" for p in points)
    low = next(p.text for p in points if "external low" in p.text)
    assert f"({rates['external_low']:.2f}, " in low and f"({rates['train']:.2f}, " in low
    assert f"= {logit(rates['external_low']) - logit(rates['train']):+.2f}" in low
    assert not [p for p in rp.review_points(cfg) if p.rule == "uncalibrated_probabilities"]
    # The external cohorts' outcomes and features are never seen by anything fitted (calibrator included).
    external = data.cohort != "train"
    X_changed = data.X.copy()
    X_changed.loc[external] = X_changed.loc[external] * 3 + 1
    flipped = ModellingData(X_changed, data.y.where(~external, 1 - data.y), data.cohort, data.training, held_out=data.held_out)
    other = fit_final_model(flipped, cfg)
    assert joblib.hash(other.pipeline_) == joblib.hash(model.pipeline_) and joblib.hash(other.calibrator_) == joblib.hash(model.calibrator_)
    assert other.threshold_ == model.threshold_


@pytest.mark.parametrize("settings", [{"smote": True, "recalibration": "none"}, {"class_weight": "balanced", "recalibration": "none"}],
                         ids=["smote", "balanced"])  # fmt: skip
def test_reweighting_without_recalibration_is_said_to_be_uncalibrated(tmp_path, planted_study, settings):
    """Reweighting with recalibration off: the probabilities are pulled to 0.5 (the training event rate is 0.57 here, so the
    risks are underestimated: intercept above 0), and the sidecar, the reviewer points and the methods say so."""
    cfg = _study_cfg(tmp_path, **settings)
    data, _ = planted_study
    model = fit_final_model(data, cfg)
    assert model.calibrator_ is None
    table = _write_run(cfg, model, data)
    train = table.loc["train"]
    assert abs(train["mean_predicted"] - 0.5) < 0.02 and train["observed_rate"] > 0.55 and train["intercept"] > 0.15
    (point,) = [p for p in rp.review_points(cfg) if p.rule == "uncalibrated_probabilities"]
    assert point.severity == "major" and point.source == "models/final_model.json"
    assert "not calibrated" in point.text and ("SMOTE" in point.text) == bool(settings.get("smote"))
    sidecar = json.loads((cfg.report_root / "models" / "final_model.json").read_text())
    text = " ".join(_final_calibration_text(sidecar))
    assert "not recalibrated" in text and "do not estimate the risk at the training event rate" in text


def test_methods_state_weighting_smote_and_recalibration_as_configured():
    base = {"steps": ["impute", "zscore", "classifier"], "training_prevalence": 0.3, "oof_mean_probability": 0.301}
    recalibrated = {**base, "steps": ["impute", "zscore", "smote", "classifier"], "class_weight": "none", "oof_mean_probability_uncalibrated": 0.41,
                    "recalibration": {"method": "sigmoid", "response": "decision_function", "n_fitted": 200, "a": -1.25, "b": 0.5}}  # fmt: skip
    (text,) = _final_calibration_text(recalibrated)
    assert text.startswith("Its probabilities were recalibrated by Platt's sigmoid (logistic) recalibration fitted on its 200 training "
                           "out-of-fold decision values, a = -1.25, b = 0.5")
    assert "because it was trained with SMOTE" in text and "before recalibration the mean out-of-fold probability was 0.41" in text
    (plain,) = _final_calibration_text({**base, "class_weight": "none", "recalibration": {"method": "none"}})
    assert plain.startswith("It was trained without class weights or oversampling, and its probabilities were not recalibrated")
    # A sidecar written before issue 19 (balanced weights, no recalibration record) is reported as not recalibrated.
    (old,) = _final_calibration_text({"steps": ["zscore", "classifier"], "classifier_params": {"class_weight": "balanced"}})
    assert old.startswith("It was trained with weighted classes and its probabilities were not recalibrated")


def test_a_recalibration_that_reverses_the_ranking_is_recorded_and_raised(tmp_path):
    """Anti-informative out-of-fold scores (the outcome falls as the score rises) give Platt's sigmoid a positive a: the
    calibrator reverses the model. The sidecar records it and a major reviewer point says the model has no usable signal;
    isotonic regression is non-decreasing and never reverses."""
    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.4).astype(int)
    s = rng.normal(size=200) - 1.0 * y
    sig, iso = ProbabilityCalibrator(method="sigmoid").fit(s, y), ProbabilityCalibrator(method="isotonic").fit(s, y)
    assert sig.reverses_ and sig.a_ > 0 and sig.summary()["reverses_ranking"] is True
    assert not iso.reverses_ and np.all(np.diff(iso.predict(np.sort(s))) >= 0)
    assert not ProbabilityCalibrator(method="sigmoid").fit(-s, y).reverses_
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path), sort_keys=False))
    cfg = load_config(tmp_path / "study.yaml")
    path = cfg.report_root / "models" / "clinical_model.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"recalibration": sig.summary(), "oof_auc_uncalibrated": 0.31}))
    (text,) = _final_calibration_text({"recalibration": sig.summary(), "steps": ["classifier"]})
    assert "the recalibrated model reverses the pipeline's ranking" in text
    (point,) = rp.review_points(cfg, rules=[rp.reversed_recalibration])
    assert point.severity == "major" and "the clinical model" in point.text and "out-of-fold AUC 0.31 before recalibration" in point.text
    path.write_text(json.dumps({"recalibration": ProbabilityCalibrator(method="sigmoid").fit(-s, y).summary()}))
    assert rp.review_points(cfg, rules=[rp.reversed_recalibration]) == []
