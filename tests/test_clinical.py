"""Clinical variables as model inputs; clinical model, nomogram, comparison predictions, survival models, reader scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers.data.manifest import load_study
from helpers.errors import InputDataError
from helpers.learning.clinical import ClinicalEncoder, ClinicalImputer, RadScoreAugmenter
from helpers.learning.survival import harrell_c
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import load_config
from helpers.steps.models import (
    ModellingData,
    comparison_models,
    fit_clinical_models,
    fit_final_model,
    load_modelling_data,
    model_predictions,
    survival_predictions,
    write_clinical_outputs,
)
from helpers.steps.signature import build_signature, interobserver_agreement, write_signature_outputs
from helpers.steps.statistics import StudyPredictions, survival_statistics
from helpers.steps.survival import fit_survival_model_set, write_survival_model_outputs
from tests.conftest import make_planted_feature_study


@pytest.fixture
def clinical_frame():
    return pd.DataFrame(
        {"age": [50.0, np.nan, 70.0, 64.0, 58.0], "grade": ["G1", "G3", None, "G3", "G2"]},
        index=pd.Index(["a", "b", "c", "d", "e"], name="patient"),
    )


def test_imputer_uses_training_statistics_only(clinical_frame):
    imp = ClinicalImputer(continuous=["age"], categorical=["grade"]).fit(clinical_frame)
    assert imp.fill_values_ == {"age": 61.0, "grade": "G3"} and imp.n_imputed_ == {"age": 1, "grade": 1}
    other = pd.DataFrame({"age": [np.nan, 1000.0], "grade": [None, "G1"]}, index=["x", "y"])
    out = imp.transform(other)
    assert out.loc["x", "age"] == 61.0 and out.loc["x", "grade"] == "G3" and out.loc["y", "age"] == 1000.0
    assert imp.fill_values_ == {"age": 61.0, "grade": "G3"}  # transforming other data never refits


def test_encoder_codes_training_levels_and_names_unseen_patients(clinical_frame):
    X = ClinicalImputer(continuous=["age"], categorical=["grade"]).fit_transform(clinical_frame)
    enc = ClinicalEncoder(continuous=["age"], categorical=["grade"]).fit(X)
    Z = enc.transform(X)
    assert list(Z.columns) == ["age", "grade=G2", "grade=G3"]
    np.testing.assert_allclose(Z["age"].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(Z["age"].std(ddof=0), 1)
    assert Z.loc["e", "grade=G2"] == 1 and Z.loc["a", ["grade=G2", "grade=G3"]].sum() == 0
    bad = X.copy()
    bad.loc["d", "grade"] = "G4"
    with pytest.raises(InputDataError, match=r"'grade'.*G4.*\['d'\].*never occur in training"):
        enc.transform(bad)


def test_imputer_rejects_a_variable_without_training_values():
    with pytest.raises(InputDataError, match="'age' has no value in the training data"):
        ClinicalImputer(continuous=["age"], categorical=[]).fit(pd.DataFrame({"age": [np.nan, np.nan]}))


@pytest.mark.slow
def test_radscore_augmenter_relearns_the_signature_on_the_data_it_is_fitted_on():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 12)), columns=[f"f{i}" for i in range(12)])
    y = pd.Series((X["f0"] - X["f1"] + rng.normal(0, 0.5, 80) > 0).astype(int))
    X["age"] = rng.normal(60, 10, 80)
    steps = [{"step": "zscore"}, {"step": "lasso", "lambda_rule": "min", "random_state": 0}]
    full = RadScoreAugmenter(steps=steps, clinical=["age"]).fit(X, y)
    half = RadScoreAugmenter(steps=steps, clinical=["age"]).fit(X.iloc[:40], y.iloc[:40])
    out = full.transform(X)
    assert list(out.columns) == ["age", "radscore"] and full.radiomic_columns_ == [f"f{i}" for i in range(12)]
    assert roc_auc_score(y, out["radscore"]) > 0.9
    assert not np.allclose(half.transform(X)["radscore"], out["radscore"])
    with pytest.raises(ValueError, match="ending in a 'lasso' step"):
        RadScoreAugmenter(steps=[{"step": "zscore"}], clinical=["age"]).fit(X, y)


@pytest.fixture(scope="module")
def fitted_study(tmp_path_factory):
    """The planted study with its signature written (shared by the tests of this module: they only read it)."""
    study, truth = make_planted_feature_study(tmp_path_factory.mktemp("planted"))
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    write_signature_outputs(build_signature(cfg, manifest, patients), cfg, ReportWriter(cfg, "signature"))
    return cfg, patients, load_modelling_data(cfg, patients), truth


@pytest.fixture(scope="module")
def clinical_models(fitted_study):
    cfg, _, data, _ = fitted_study
    return fit_clinical_models(data, cfg)


@pytest.mark.slow
def test_clinical_models_nomogram_and_their_outputs(fitted_study):
    cfg, _, data, _ = fitted_study
    assert list(data.clinical.columns) == ["age", "grade", "sex"] and data.time is not None
    models = fit_clinical_models(data, cfg)
    assert set(models) == {"clinical", "nomogram"}
    clin, nomo = models["clinical"], models["nomogram"]
    assert clin.feature_names_in_ == ["age", "grade", "sex"]
    # The planted outcome drives grade; the nomogram adds the Rad-score and must beat the clinical model out of fold.
    assert 0.6 < clin.oof_auc_ < nomo.oof_auc_
    test = data.cohort.index[data.cohort == "test"]
    assert roc_auc_score(data.y[test], nomo.positive_proba(data.inputs.loc[test])) > 0.8
    # Out-of-fold nomogram probabilities come from a pipeline (Rad-score included) refitted without the fold's patients.
    from sklearn.base import clone

    fold0 = nomo.fold_[nomo.fold_ == 0].index
    rest = data.train.difference(fold0)
    refit = clone(nomo.pipeline_).fit(data.inputs.loc[rest], data.y.loc[rest])
    np.testing.assert_allclose(refit.predict_proba(data.inputs.loc[fold0])[:, 1], nomo.oof_proba_.loc[fold0], rtol=1e-10)
    full_rs = nomo.pipeline_.named_steps["radscore"].transform(data.inputs.loc[fold0])["radscore"]
    fold_rs = refit.named_steps["radscore"].transform(data.inputs.loc[fold0])["radscore"]
    assert not np.allclose(full_rs, fold_rs)
    report = ReportWriter(cfg, "models")
    shown = write_clinical_outputs(models, data, cfg, report)
    coefs = shown["nomogram_coefficients"]
    assert {"radscore", "age"} <= set(coefs["term"]) and (coefs["term"].str.startswith("grade")).any()
    for name in ("tables/clinical_model_coefficients.csv", "tables/nomogram_coefficients.csv", "tables/nomogram_points.csv", "figures/nomogram.png",
                 "models/clinical_model.joblib", "models/nomogram_model.joblib"):
        assert (cfg.report_root / name).is_file(), name


@pytest.mark.slow
def test_clinical_models_ignore_test_cohort_values(fitted_study, clinical_models):
    cfg, _, data, _ = fitted_study
    models = clinical_models
    clinical = data.clinical.copy()
    test = data.cohort == "test"
    clinical.loc[test, "age"] = clinical.loc[test, "age"] + 50
    shifted = fit_clinical_models(ModellingData(data.X + np.where(test.to_numpy()[:, None], 5.0, 0.0), data.y, data.cohort, data.training,
                                                clinical, data.time, data.event), cfg)
    for name in ("clinical", "nomogram"):
        assert shifted[name].threshold_ == models[name].threshold_
        pd.testing.assert_series_equal(shifted[name].oof_proba_, models[name].oof_proba_)


@pytest.mark.slow
def test_model_predictions_are_out_of_fold_on_training(fitted_study, clinical_models):
    cfg, _, data, _ = fitted_study
    final = fit_final_model(data, cfg)
    clinical = clinical_models
    models = comparison_models(cfg, final, clinical_models=clinical)
    assert list(models) == ["Clinical", "Radiomics (logistic)", "Nomogram (clinical + Rad-score)"]
    preds = model_predictions(models, data)
    assert len(preds) == 3 * len(data.X) and preds.groupby("model")["threshold"].nunique().eq(1).all()
    rad = preds[preds["model"] == "Radiomics (logistic)"].set_index("patient")
    train, test = data.train, data.cohort.index[data.cohort == "test"]
    np.testing.assert_array_equal(rad.loc[train, "probability"], final.oof_proba_.loc[train])
    np.testing.assert_allclose(rad.loc[test, "probability"], final.positive_proba(data.X.loc[test]), rtol=1e-12)
    assert rad.loc[train, "out_of_fold"].all() and not rad.loc[test, "out_of_fold"].any()
    assert rad["threshold"].iloc[0] == final.threshold_


@pytest.fixture(scope="module")
def survival_model_set(fitted_study):
    cfg, _, data, _ = fitted_study
    return fit_survival_model_set(data, cfg)


@pytest.mark.slow
def test_survival_models_recover_the_planted_hazard_with_training_cut_offs(fitted_study, survival_model_set):
    # A study with a binary AND a time-to-event endpoint fits the survival-only studies' model set (helpers.steps.survival),
    # on the features selected against (time, event); this study has clinical variables but no habitats or deep features.
    cfg, _, data, _ = fitted_study
    fits = survival_model_set.fits
    assert list(fits) == ["Clinical", "C-radiomics", "Combined", "C-radiomics (RSF)"]
    assert set(survival_model_set.skipped["model"]) == {"ITH", "DL_F", "Clinical + ITH", "C-radiomics + ITH", "DL_F + ITH"}
    test = data.cohort.index[data.cohort == "test"]
    for name, fit in fits.items():
        if name.startswith("C-radiomics"):
            # Hazard grows with the planted logit: risks must rank patients in held-out and out-of-fold data.
            assert harrell_c(data.time[test], data.event[test], fit.risk[test], n_bootstrap=10).estimate > 0.65
            assert harrell_c(data.time[data.train], data.event[data.train], fit.risk[data.train], n_bootstrap=10).estimate > 0.6
        assert fit.cutoffs == (pytest.approx(float(np.median(fit.risk[data.train]))),)
        assert fit.survival.notna().all().all() and (fit.survival.diff(axis=1).iloc[:, 1:] <= 1e-12).all().all()
    # Test-cohort features and clinical values do not move the cut-offs or the training risks.
    shifted = data.X.copy()
    shifted.loc[test] += 3
    clinical = data.clinical.copy()
    clinical.loc[test, "age"] += 20
    again = fit_survival_model_set(ModellingData(shifted, data.y, data.cohort, data.training, clinical, data.time, data.event), cfg).fits
    for name, fit in fits.items():
        assert again[name].cutoffs == fit.cutoffs
        pd.testing.assert_series_equal(again[name].risk[data.train], fit.risk[data.train])
    preds = survival_predictions(fits, data)
    assert {"model", "patient", "cohort", "time", "event", "risk", "risk_group", "out_of_fold"} <= set(preds.columns)
    assert any(c.startswith("S@") for c in preds.columns)
    shown = write_survival_model_outputs(survival_model_set, data, cfg, ReportWriter(cfg, "models"))
    assert {"survival_models", "survival_models_not_fitted", "cox_coefficients", "survival_risk_cutoffs"} <= set(shown)
    for name in ("figures/km_c_radiomics_train.png", "figures/km_c_radiomics_rsf_test.png", "figures/km_combined_test.png",
                 "features/survival_predictions.parquet", "tables/survival_risk_cutoffs.csv"):
        assert (cfg.report_root / name).is_file(), name


@pytest.mark.slow
def test_mixed_endpoint_study_gets_the_survival_ablation_and_td_auc_tables(fitted_study, survival_model_set):
    # The same tables as a survival-only study (tests/test_survival_first.py): one ablation row and one td-AUC row per
    # validation/test cohort and model of the set, the td-AUC horizons side by side.
    cfg, _, data, _ = fitted_study
    preds = StudyPredictions(binary=pd.DataFrame(), survival=survival_predictions(survival_model_set.fits, data))
    tables = survival_statistics(preds, cfg)
    assert {"survival_metrics", "survival_ablation", "survival_td_auc"} <= set(tables)
    models = ["Clinical", "C-radiomics", "Combined", "C-radiomics (RSF)"]
    ablation, td = tables["survival_ablation"], tables["survival_td_auc"]
    assert list(ablation["model"]) == models and set(ablation["cohort"]) == {"test"}
    assert {"C-index (95% CI)", "AUC (95% CI)", "IBS (95% CI)", "auc_definition", "note"} <= set(ablation.columns)
    assert list(td["model"]) == models
    assert list(td.columns) == ["model", "cohort", "AUC at 12 months (95% CI)", "AUC at 24 months (95% CI)", "AUC at 36 months (95% CI)", "note"]
    assert ablation["c_index"].between(0, 1).all()


@pytest.mark.slow
def test_interobserver_agreement_from_the_reader_table(fitted_study):
    cfg, patients, _, truth = fitted_study
    table = interobserver_agreement(cfg, patients).set_index("variable")
    assert list(table.index) == ["diameter_mm", "necrosis", "margin"]
    assert table.loc["diameter_mm", "statistic"].startswith("ICC") and table.loc["margin", "statistic"] == "Cohen's kappa"
    assert table.loc["diameter_mm", "estimate"] > 0.95 and table.loc["necrosis", "estimate"] > 0.8
    # kappa of a 50/50 nominal score with a fraction f of flips is about 1 - 2f.
    assert table.loc["margin", "estimate"] == pytest.approx(1 - 2 * truth["reader_flip_rate"], abs=0.12)
    assert (table["n_patients"] == 70).all() and (table["readers"] == "R1 vs R2").all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.assign(reader=np.where(np.arange(len(t)) % 3 == 0, "R3", t["reader"])), "exactly two readers"),
        (lambda t: pd.concat([t, t.iloc[[0]]]), r"scored twice by one reader \(CSV rows"),
        (lambda t: t.drop(columns=["margin"]), r"columns \['margin'\] are missing"),
        (lambda t: t.assign(patient=np.where(np.arange(len(t)) == 0, "NOPE", t["patient"])), r"\['NOPE'\] are not in the patient table"),
    ],
)
def test_interobserver_agreement_bad_tables(fitted_study, tmp_path, edit, message):
    cfg, patients, _, _ = fitted_study
    path = tmp_path / "reader_scores.csv"
    edit(pd.read_csv(cfg.path(cfg.reader_scores.table), dtype={"patient": str})).to_csv(path, index=False)
    cfg = cfg.model_copy(update={"reader_scores": cfg.reader_scores.model_copy(update={"table": str(path)})})
    with pytest.raises(InputDataError, match=message):
        interobserver_agreement(cfg, patients)


@pytest.mark.parametrize(("group", "shown"), [("low", "Low risk"), ("intermediate", "Intermediate risk"), ("high", "High risk"), ("Q3", "Q3")])
def test_risk_groups_are_named_in_words_in_the_kaplan_meier_figures(group, shown):
    from helpers.steps.models import _risk_group_label

    assert _risk_group_label(group) == shown
