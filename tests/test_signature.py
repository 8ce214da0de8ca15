"""The study signature (notebook 04): ICC filter, ComBat, selection, Rad-score, all fitted on training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import load_config
from helpers.steps.signature import batch_labels, build_signature, write_signature_outputs


def _build(study):
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    return cfg, manifest, build_signature(cfg, manifest, patients)


def test_planted_signature(planted_feature_study):
    study, truth = planted_feature_study
    cfg, manifest, sig = _build(study)
    # ICC filter drops exactly the planted unstable features.
    assert sorted(set(sig.data.features.columns) - set(sig.before_harmonization.columns)) == sorted(truth["unstable"])
    # ComBat removes the planted MR scanner effect in the training cohort.
    train = sig.data.train_index
    mr = [c for c in sig.harmonized.columns if c.startswith("MR_T1_") and "Noise" in c]
    batch = pd.Series(truth["scanner"]).loc[train]
    p_before = [stats.kruskal(*[sig.before_harmonization.loc[train][c][batch == b] for b in "AB"]).pvalue for c in mr]
    p_after = [stats.kruskal(*[sig.harmonized.loc[train][c][batch == b] for b in "AB"]).pvalue for c in mr]
    assert np.median(p_before) < 1e-3 and np.min(p_after) > 0.01
    # Selection recovers the informative features; the Rad-score separates the classes in the external test cohort.
    lasso = sig.selector.steps[-1][1]
    assert set(truth["informative"]) <= set(lasso.selected_features_)
    test = sig.radscores[sig.radscores["cohort"] == "test"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test["outcome"], test["radscore"]) > 0.8
    assert sig.formula.startswith("Rad-score = ")
    counts = sig.pathway["n_features"].tolist()
    assert counts == sorted(counts, reverse=True)


def test_test_cohort_does_not_change_the_signature(planted_feature_study):
    """Leakage guard: rewriting the external-test feature values leaves every fitted step unchanged."""
    study, _ = planted_feature_study
    _, _, before = _build(study)
    path = study / "reports" / "planted" / "features" / "features_planted.parquet"
    table = pd.read_parquet(path)
    num = table.columns.drop("cohort")
    table.loc[table["cohort"] == "test", num] = table.loc[table["cohort"] == "test", num] * 3 + 10
    table.to_parquet(path)
    _, _, after = _build(study)
    lasso_b, lasso_a = before.selector.steps[-1][1], after.selector.steps[-1][1]
    pd.testing.assert_series_equal(lasso_b.coef_, lasso_a.coef_)
    assert before.icc_filter.selected_features_ == after.icc_filter.selected_features_
    combat_b, combat_a = before.harmonizers["MR_T1"], after.harmonizers["MR_T1"]
    pd.testing.assert_frame_equal(combat_b.gamma_star_, combat_a.gamma_star_)
    train = before.data.train_index
    pd.testing.assert_frame_equal(before.radscores.loc[train], after.radscores.loc[train])


@pytest.mark.slow
def test_outputs_and_batch_merging(planted_feature_study):
    study, _ = planted_feature_study
    cfg, manifest, sig = _build(study)
    shown = write_signature_outputs(sig, cfg, ReportWriter(cfg, "signature"))
    root = cfg.report_root
    for name in ("tables/icc_retained_counts.csv", "tables/selection_pathway.csv", "tables/radscore_formula.txt",
                 "figures/lasso_path.png", "figures/lasso_cv.png", "figures/radscore_coefficients.png",
                 "figures/combat_diagnostics_mr_t1.png", "features/radscores.parquet", "features/modelling_features.parquet",
                 "models/signature.joblib"):
        assert (root / name).is_file(), name
    assert "selection_pathway" in shown
    group = cfg.signature.harmonization[0].model_copy(update={"min_batch_size": 100})
    labels = batch_labels(manifest, cfg, group, sig.data.train_index)
    assert set(labels) == {"other"}  # every training batch is smaller than 100 patients


def test_a_test_patients_missing_value_is_imputed_not_dropped(planted_feature_study):
    # A failed unit in the test cohort must not remove the feature for everyone (that would let the test cohort change
    # the training feature set); the value is imputed with the training median (tests/test_missing_data.py has more).
    study, _ = planted_feature_study
    path = study / "reports" / "planted" / "features" / "features_planted.parquet"
    table = pd.read_parquet(path)
    table.loc["S085", "CT_tumour_original_firstorder_Noise7"] = np.nan
    table.to_parquet(path)
    _, _, sig = _build(study)
    assert sig.data.dropped_missing.empty
    assert sig.data.imputed.set_index("feature").loc["CT_tumour_original_firstorder_Noise7", "missing_test"] == 1
    assert "CT_tumour_original_firstorder_Noise7" in sig.harmonized.columns and np.isfinite(sig.radscores.loc["S085", "radscore"])


def test_signature_needs_features(tiny_study):
    cfg = load_config(tiny_study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    with pytest.raises(FileNotFoundError, match="run the feature_extraction step"):
        build_signature(cfg, manifest, patients)


@pytest.mark.slow
def test_signature_without_lasso_has_no_radscore(planted_feature_study):
    import yaml

    study, truth = planted_feature_study
    data = yaml.safe_load((study / "study.yaml").read_text())
    data["signature"]["steps"] = [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05}, {"step": "mrmr", "k": 3}]
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg, _, sig = _build(study)
    assert sig.formula == "" and "radscore" not in sig.radscores.columns
    assert set(sig.selector.steps[-1][1].selected_features_) == set(truth["informative"])
    write_signature_outputs(sig, cfg, ReportWriter(cfg, "signature"))
    assert not (cfg.report_root / "tables" / "radscore_formula.txt").exists()
