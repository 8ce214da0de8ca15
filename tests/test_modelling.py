"""Notebook 05's modelling on a planted study: grid, final model, threshold, predictions; notebooks 04+05 smoke."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
from helpers.runner.pipeline import run_study
from helpers.settings.study import load_config
from helpers.stats import pairwise_comparison_table
from helpers.steps.models import fit_final_model, load_modelling_data, predictions_table, run_model_grid, study_blocks
from helpers.steps.signature import build_signature, write_signature_outputs
from tests.conftest import make_planted_feature_study

# Whole-study model grids and the notebooks 04-07 smoke run: slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def modelling_study(tmp_path_factory):
    """The planted study with its signature written, and its modelling data (shared by the module: nothing changes it)."""
    study, truth = make_planted_feature_study(tmp_path_factory.mktemp("planted"))
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    write_signature_outputs(build_signature(cfg, manifest, patients), cfg, ReportWriter(cfg, "signature"))
    return cfg, load_modelling_data(cfg, patients), truth


@pytest.fixture(scope="module")
def model_grid(modelling_study):
    cfg, data, _ = modelling_study
    return run_model_grid(data, cfg)


@pytest.fixture(scope="module")
def final_model(modelling_study):
    cfg, data, _ = modelling_study
    return fit_final_model(data, cfg)


def test_blocks_and_grid(modelling_study, model_grid):
    cfg, data, _ = modelling_study
    blocks = study_blocks(data.X, cfg)
    assert list(blocks) == ["CT / tumour", "MR_T1 / tumour"]
    grid = model_grid
    assert len(grid) == 2 * 2 and {"cv_auc_mean", "auc_test"} <= set(grid.columns)
    assert grid["cv_auc_mean"].between(0.5, 1).all() and grid["auc_test"].between(0.5, 1).all()


def test_final_model_threshold_from_training_and_deterministic(modelling_study, final_model):
    cfg, data, _ = modelling_study
    model = final_model
    preds = predictions_table(model, data)
    assert preds["threshold"].nunique() == 1 and 0 < model.threshold_ < 1
    train = preds[preds["cohort"] == "train"]
    assert train["probability_oof"].notna().all() and preds.loc[preds["cohort"] == "test", "probability_oof"].isna().all()
    from sklearn.metrics import roc_auc_score

    test = preds[preds["cohort"] == "test"]
    assert roc_auc_score(test["outcome"], test["probability"]) > 0.8
    # Same seed, same predictions; the test cohort does not move the threshold.
    again = fit_final_model(data, cfg)
    pd.testing.assert_series_equal(predictions_table(again, data)["probability"], preds["probability"])
    shifted = data.X.copy()
    shifted.loc[data.cohort == "test"] += 5
    assert fit_final_model(type(data)(shifted, data.y, data.cohort, data.training), cfg).threshold_ == model.threshold_


def test_notebooks_04_to_07_smoke(tmp_path):
    # The planted study with notebook 02's super-resolution arm declared (SR features planted; no images to extract).
    study, _ = make_planted_feature_study(tmp_path, super_resolution=True)
    # Lighter than the planted study's settings (checked here: the outputs and the wiring of notebooks 04-07): 10 LASSO
    # lambdas (refitted in every fold of the final model's tuning) and 100 bootstrap resamples.
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    cfg["signature"]["steps"][-1]["Cs"] = 10
    cfg["statistics"]["n_bootstrap"] = 100
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    results = run_study(study / "study.yaml", out=io.StringIO())
    assert [r.status for r in results] == ["ran", "ran", "ran", "ran"]
    root = load_config(study / "study.yaml").report_root
    for name in ("tables/model_grid.csv", "figures/auc_heatmap_cv.png", "figures/auc_heatmap_test.png", "tables/final_model_summary.csv",
                 "features/predictions_final_model.parquet", "models/final_model.joblib", "figures/shap_beeswarm.png",
                 "figures/shap_bar.png", "figures/shap_waterfall_example.png", "tables/selection_pathway.csv", "tables/fusion_models.csv",
                 "tables/interobserver_agreement.csv", "tables/nomogram_coefficients.csv", "figures/nomogram.png", "features/model_predictions.parquet",
                 "features/survival_predictions.parquet", "figures/km_c_radiomics_test.png", "tables/cox_coefficients.csv",
                 "tables/survival_models.csv",
                 # notebook 06
                 "tables/table_one_by_cohort.csv", "tables/table_one_by_outcome_train.csv", "tables/performance.csv", "tables/pairwise_comparison.csv",
                 "tables/calibration.csv", "tables/subgroup_performance_mr_t1_scanner.csv", "tables/survival_metrics.csv", "figures/roc_test.png",
                 "figures/calibration_test.png", "figures/decision_curve_train.png", "figures/subgroup_forest_mr_t1_scanner.png",
                 "figures/radscore_distribution.png", "figures/feature_weights.png", "tables/survival_ablation.csv", "tables/survival_td_auc.csv",
                 # notebook 07
                 "supplementary/supplementary.docx", "supplementary/supplementary.html", "supplementary/supplementary_tables.tex"):
        assert (root / name).is_file(), name
    preds = pd.read_parquet(root / "features" / "model_predictions.parquet")
    assert {"Clinical", "Radiomics (logistic)", "Nomogram (clinical + Rad-score)", "Score-level fusion", "CT / tumour (logistic)"} <= set(preds["model"])
    html = (root / "supplementary" / "supplementary.html").read_text()
    for caption_source in ("performance", "pairwise_comparison", "nomogram", "roc_test", "table_one_by_cohort", "survival_metrics",
                           "nr_vs_sr_comparison", "roc_nr_vs_sr_test"):
        assert caption_source in html, caption_source
    # With the binary endpoint, notebook 05 still fits the survival-only studies' model set and notebook 06 its ablation tables.
    assert list(pd.read_csv(root / "tables" / "survival_ablation.csv")["model"]) == ["Clinical", "C-radiomics", "Combined", "C-radiomics (RSF)"]
    for text in ("Ablation of the survival models", "AUC at 12 months (95% CI)", "selected against the follow-up time and event"):
        assert text in html, text
    # Super-resolution arm: SR features form their own grid block, stay out of the signature and the final model, and
    # notebook 06 compares NR and SR with the same algorithm (values = the pairwise DeLong/NRI table of those two models).
    grid = pd.read_csv(root / "tables" / "model_grid.csv")
    assert {"MR_T1 / tumour", "MR_T1_SR / tumour"} <= set(grid["block"])
    pathway = pd.read_csv(root / "tables" / "selection_pathway.csv").to_string()
    assert "MR_T1_SR_" not in pathway and "MR_T1_tumour" in pd.read_parquet(root / "features" / "modelling_features.parquet").columns.str.cat()
    assert "MR_T1_SR_" in pd.read_parquet(root / "features" / "modelling_features.parquet").columns.str.cat()
    final = joblib.load(root / "models" / "final_model.joblib")
    assert final.feature_names_in_ and not any(str(c).startswith("MR_T1_SR_") for c in final.feature_names_in_)
    assert {"MR_T1 / tumour (logistic)", "MR_T1_SR / tumour (logistic)"} <= set(preds["model"])
    table = pd.read_csv(root / "tables" / "nr_vs_sr_comparison.csv")
    assert list(table["cohort"]) == ["train", "test"] and set(table["block"]) == {"tumour"} and set(table["algorithm"]) == {"logistic"}
    pair = preds[preds["model"].isin(["MR_T1 / tumour (logistic)", "MR_T1_SR / tumour (logistic)"])]
    ref = pairwise_comparison_table(pair, reference="MR_T1 / tumour (logistic)").set_index("cohort")
    for row in table.itertuples():
        assert row.auc_sr == pytest.approx(ref.loc[row.cohort, "auc_a"], abs=1e-6) and row.delong_p == pytest.approx(ref.loc[row.cohort, "delong_p"], abs=1e-6)
        assert row.nri == pytest.approx(ref.loc[row.cohort, "nri"], abs=1e-6)
    # Planted: the SR copy of the informative MR feature is less noisy, so the SR model discriminates better out of fold.
    assert table.set_index("cohort").loc["train", "auc_sr"] > table.set_index("cohort").loc["train", "auc_nr"]
    assert (root / "figures" / "roc_nr_vs_sr_test.png").is_file()


def test_fusion_comparison(modelling_study, model_grid, final_model):
    from helpers.steps.models import fusion_comparison

    cfg, data, _ = modelling_study
    table = fusion_comparison(data, cfg, model_grid, final_model)
    assert len(table) == 3 and table["model"].str.startswith(("best single", "feature-level", "score-level")).all()
    assert table[["training_auc_oof", "auc_test"]].apply(lambda s: s.between(0, 1)).all().all()
    # The planted signal spans both series: stacking both blocks beats chance clearly on the external test cohort.
    assert table.loc[2, "auc_test"] > 0.7


def test_nomogram_without_a_finite_estimate_is_skipped_with_the_reason(modelling_study):
    from helpers.steps.models import fit_clinical_models

    cfg, data, _ = modelling_study
    # 'grade' separates the outcome perfectly: the unpenalised nomogram has no maximum-likelihood estimate in any fold.
    clinical = data.clinical.copy()
    clinical["grade"] = np.where(data.y == 1, "G3", "G1")
    separated = type(data)(data.X, data.y, data.cohort, data.training, clinical, data.time, data.event)
    with pytest.warns(UserWarning, match="nomogram not fitted: the logistic regression has no finite maximum-likelihood estimate"):
        models = fit_clinical_models(separated, cfg)
    assert set(models) == {"clinical"}  # the penalised clinical model is still fitted
