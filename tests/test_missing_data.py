"""The study's missing-data policy (issue 12): decided on training data only, never reshaped by a test patient.

- Missing values in validation/test patients change no fitted state, no selected feature and no training prediction
  (the NaN-injection leakage test): they are imputed with training statistics.
- A feature is dropped only when it misses values in more than ``missing_data.max_missing_fraction`` of the TRAINING
  patients; every drop and every imputed feature is listed.
- Failed extraction units follow ``missing_data.failed_units`` (stop / exclude_patients / impute).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.data.columns import series_of_column
from helpers.data.manifest import load_study
from helpers.errors import InputDataError
from helpers.learning.selection import MissingValueImputer
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import load_config
from helpers.steps.models import ModellingData, fit_final_model, run_model_grid
from helpers.steps.signature import build_signature, write_signature_outputs


def _build(study, **config_changes):
    cfg = load_config(study / "study.yaml")
    if config_changes:
        cfg = cfg.model_copy(update=config_changes)
    manifest, patients = load_study(cfg, check_images=False)
    return cfg, build_signature(cfg, manifest, patients)


def _features_path(study):
    return study / "reports" / "planted" / "features" / "features_planted.parquet"


def _modelling_data(cfg, sig) -> ModellingData:
    eligible = [c for c in sig.harmonized.columns if series_of_column(c, cfg.series) not in cfg.comparison_series]
    return ModellingData(sig.harmonized[eligible], sig.data.y, sig.data.cohort, list(cfg.training_cohorts))


def _inject_test_nans(study) -> dict[str, object]:
    """NaNs in test patients only: a whole failed CT block, scattered cells, and one feature missing in every test patient."""
    path = _features_path(study)
    table = pd.read_parquet(path)
    test = table.index[table["cohort"] == "test"]
    ct = [c for c in table.columns if c.startswith("CT_tumour_")]
    table.loc[test[0], ct] = np.nan  # a failed CT unit of one test patient
    rng = np.random.default_rng(0)
    features = table.columns.drop("cohort")
    for patient in test[1:11]:
        table.loc[patient, list(rng.choice(features, 5, replace=False))] = np.nan
    everywhere = "MR_T1_tumour_original_glszm_ZoneEntropy"  # informative: it must stay in the signature
    table.loc[test, everywhere] = np.nan
    table.to_parquet(path)
    return {"block_patient": test[0], "everywhere": everywhere, "test": list(test)}


@pytest.mark.slow
def test_nan_in_test_patients_changes_no_fitted_state(planted_feature_study):
    study, _ = planted_feature_study
    cfg, before = _build(study)
    injected = _inject_test_nans(study)
    _, after = _build(study)
    train = before.data.train_index
    # Same feature set and nothing dropped because of the test cohort.
    assert after.data.dropped_missing.empty and before.data.dropped_missing.empty
    assert list(after.data.features.columns) == list(before.data.features.columns)
    imputed = after.data.imputed.set_index("feature")
    assert imputed.loc[injected["everywhere"], ["missing_train", "missing_test"]].tolist() == [0, 30]
    # Every fitted state is identical: ICC filter, ComBat, the imputer, every selection step, the LASSO.
    assert before.icc_filter.selected_features_ == after.icc_filter.selected_features_
    for series in before.harmonizers:
        for attr in ("gamma_star_", "delta_star_", "grand_mean_", "var_pooled_"):
            pd.testing.assert_frame_equal(pd.DataFrame(getattr(before.harmonizers[series], attr)),
                                          pd.DataFrame(getattr(after.harmonizers[series], attr)), check_exact=True)
    imputer_b, imputer_a = before.selector.steps[0][1], after.selector.steps[0][1]
    assert isinstance(imputer_a, MissingValueImputer)
    pd.testing.assert_series_equal(imputer_b.statistics_, imputer_a.statistics_, check_exact=True)
    for (name, step_b), (_, step_a) in zip(before.selector.steps, after.selector.steps, strict=True):
        assert list(step_b.selected_features_) == list(step_a.selected_features_), name
    pd.testing.assert_series_equal(before.selector.steps[-1][1].coef_, after.selector.steps[-1][1].coef_, check_exact=True)
    assert injected["everywhere"] in after.selector.steps[-1][1].selected_features_  # still in the signature
    pd.testing.assert_frame_equal(before.radscores.loc[train], after.radscores.loc[train], check_exact=True)
    pd.testing.assert_frame_equal(before.harmonized.loc[train], after.harmonized.loc[train], check_exact=True)
    # Every test patient still gets a Rad-score (imputed with training statistics, not dropped).
    test = after.radscores.loc[injected["test"], "radscore"]
    assert test.notna().all() and np.isfinite(test).all()
    # The models: the same training out-of-fold predictions, threshold and coefficients; finite test predictions.
    final_b, final_a = fit_final_model(_modelling_data(cfg, before), cfg), fit_final_model(_modelling_data(cfg, after), cfg)
    pd.testing.assert_series_equal(pd.Series(final_b.oof_proba_), pd.Series(final_a.oof_proba_), check_exact=True)
    assert final_b.threshold_ == final_a.threshold_
    assert isinstance(final_a.pipeline_.steps[0][1], MissingValueImputer)  # refitted inside every CV fold by tune()
    proba = final_a.positive_proba(_modelling_data(cfg, after).X.loc[injected["test"]])
    assert np.isfinite(proba).all()
    grid_cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"algorithms": ("logistic",)})})
    grid_b, grid_a = run_model_grid(_modelling_data(cfg, before), grid_cfg), run_model_grid(_modelling_data(cfg, after), grid_cfg)
    pd.testing.assert_series_equal(grid_b["cv_auc_mean"], grid_a["cv_auc_mean"], check_exact=True)
    assert grid_a["auc_test"].notna().all()


@pytest.mark.slow
def test_training_missingness_alone_decides_what_is_dropped(planted_feature_study):
    study, _ = planted_feature_study
    path = _features_path(study)
    table = pd.read_parquet(path)
    train = table.index[table["cohort"] == "train"]
    test = table.index[table["cohort"] == "test"]
    many, few, test_only = ("CT_tumour_original_firstorder_Noise7", "CT_tumour_original_firstorder_Noise9",
                            "CT_tumour_original_firstorder_Noise11")
    table.loc[train[:8], many] = np.nan  # 8 of 70 = 11% > 10%: dropped
    table.loc[train[:3], few] = np.nan  # 3 of 70 = 4%: kept, imputed
    table.loc[test, test_only] = np.nan  # every test patient, no training patient: kept
    table.to_parquet(path)
    cfg, sig = _build(study)
    dropped = sig.data.dropped_missing.set_index("feature")
    assert list(dropped.index) == [many]
    assert dropped.loc[many, ["missing_train", "missing_test"]].tolist() == [8, 0]
    assert dropped.loc[many, "missing_fraction_training"] == pytest.approx(8 / 70, abs=1e-4)
    assert "(> 10%): dropped" in dropped.loc[many, "rule"]
    imputed = sig.data.imputed.set_index("feature")
    assert sorted(imputed.index) == sorted([few, test_only]) and "imputed with the training median" in imputed.loc[few, "rule"]
    assert many not in sig.harmonized.columns and {few, test_only} <= set(sig.harmonized.columns)
    # The imputer's statistic is the training median of the harmonised values (its input), NaNs ignored.
    imputer = sig.selector.steps[0][1]
    assert imputer.statistics_[few] == np.nanmedian(sig.harmonized.loc[sig.data.train_index, few])
    assert imputer.n_missing_fit_ == 3
    # A looser limit keeps the feature; the decision is the configured one.
    _, loose = _build(study, missing_data=cfg.missing_data.model_copy(update={"max_missing_fraction": 0.2}))
    assert loose.data.dropped_missing.empty and many in loose.harmonized.columns
    # Everything is listed in the outputs.
    shown = write_signature_outputs(sig, cfg, ReportWriter(cfg, "signature"))
    assert {"features_dropped_missing_values", "features_imputed_missing_values"} <= set(shown)
    assert (cfg.report_root / "tables" / "features_imputed_missing_values.csv").is_file()
    pathway = pd.read_csv(cfg.report_root / "tables" / "selection_pathway.csv")
    assert pathway.loc[1, "step"] == "impute" and "3 training values imputed" in pathway.loc[1, "rule"]


def _write_failures(study, failed: list[tuple[str, str, str]]) -> None:
    """Extraction diagnostics and failures tables as notebook 03 writes them, with the given failed units."""
    table = pd.read_parquet(_features_path(study))
    rows, failures = [], []
    for patient, cohort in table["cohort"].items():
        for series in ("CT", "MR_T1"):
            bad = (patient, series, "tumour") in failed
            rows.append({"patient": patient, "cohort": cohort, "series": series, "roi": "tumour", "preset": "planted", "reader": "reader1",
                         "status": "failed" if bad else "ok"})
            if bad:
                failures.append({"patient": patient, "cohort": cohort, "series": series, "roi": "tumour", "preset": "planted",
                                 "reader": "reader1", "reason": f"patient {patient}, series {series}, ROI tumour: ValueError: geometry"})
                table.loc[patient, [c for c in table.columns if c.startswith(f"{series}_tumour_")]] = np.nan
    table.to_parquet(_features_path(study))
    pd.DataFrame(rows).to_parquet(study / "reports" / "planted" / "features" / "extraction_diagnostics.parquet")
    (study / "reports" / "planted" / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(failures).to_csv(study / "reports" / "planted" / "tables" / "extraction_failures.csv", index=False)


def _set_policy(study, policy: str) -> None:
    data = yaml.safe_load((study / "study.yaml").read_text())
    data["missing_data"] = {"failed_units": policy}
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


FAILED = [("S004", "CT", "tumour"), ("S081", "MR_T1", "tumour")]


def test_failed_units_stop_the_signature_by_default(planted_feature_study):
    study, _ = planted_feature_study
    _write_failures(study, FAILED)
    with pytest.raises(InputDataError, match=r"2 extraction unit\(s\) of preset planted failed \(patients S004, S081;.*"
                                             r"extraction_failures.csv.*'exclude_patients' or 'impute'"):
        _build(study)


@pytest.mark.slow
def test_failed_units_exclude_the_patients_when_configured(planted_feature_study):
    from helpers.reporting.supplement import methods_text

    study, _ = planted_feature_study
    _write_failures(study, FAILED)
    _set_policy(study, "exclude_patients")
    cfg, sig = _build(study)
    assert {"S004", "S081"}.isdisjoint(sig.data.features.index) and len(sig.data.features) == 98
    assert {"S004", "S081"}.isdisjoint(sig.radscores.index)
    excluded = sig.data.excluded.set_index("patient")
    assert excluded.loc["S004", ["cohort", "failed_units"]].tolist() == ["train", "CT/tumour"]
    assert "ValueError: geometry" in excluded.loc["S081", "reason"]
    assert sig.data.dropped_missing.empty and sig.data.imputed.empty  # the excluded patients' gaps left with them
    write_signature_outputs(sig, cfg, ReportWriter(cfg, "signature"))
    assert pd.read_csv(cfg.report_root / "tables" / "excluded_patients.csv")["patient"].tolist() == ["S004", "S081"]
    missing_paragraph = next(p.text for p in methods_text(cfg) if p.key == "missing_data")
    assert "Two patients were excluded for failed extraction" in missing_paragraph
    assert "Features missing in more than 10% of the training patients were left out" in missing_paragraph


def test_failed_units_are_imputed_when_configured(planted_feature_study):
    study, _ = planted_feature_study
    _write_failures(study, FAILED)
    _set_policy(study, "impute")
    _, sig = _build(study)
    assert {"S004", "S081"} <= set(sig.radscores.index) and sig.data.excluded.empty
    # 1 of 70 training patients misses the CT block: under 10%, so the features are kept and imputed.
    imputed = sig.data.imputed.set_index("feature")
    assert imputed["missing_train"].max() == 1 and sig.data.dropped_missing.empty
    assert np.isfinite(sig.radscores.loc[["S004", "S081"], "radscore"]).all()
