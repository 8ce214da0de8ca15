"""Generated methods: a paragraph for every analysis that ran and only those, with the settings the run recorded, in human wording.

Each test writes a tiny report tree (the step ledgers, a few tables, figures and provenance records, no study run) under a
configuration that declares every optional analysis, so a paragraph can only come from the outputs, never from the
configuration alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import BaseModel

from helpers.reporting.supplement import methods_text
from helpers.reporting.supplement.methods import PARAGRAPH_KEYS
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig, load_config

from .conftest import REPO, tiny_config

NB = str(REPO / "notebooks" / "01_acquisition_qc.ipynb")  # steps are not executed here
STEPS = ("segmentation", "feature_extraction", "signature", "models", "statistics")
OPTIONAL = ("segmentation", "super_resolution", "habitats", "deep_features", "reliability", "harmonization", "missing_data", "clinical",
            "nomogram", "survival", "explainability", "table_one")  # fmt: skip


def _config(tmp: Path, **overrides) -> StudyConfig:
    """Every optional analysis declared; series CT and MR (MR with no scan unless the split table says otherwise)."""
    cfg = tiny_config(
        tmp, study="methods",
        endpoints={"binary": "outcome", "time": "time_months", "event": "event"},
        clinical={"continuous": ["age"], "categorical": ["tumour_grade"]},
        reader_scores={"table": "readers.csv", "variables": {"diameter_mm": "continuous", "margin": "nominal"}},
        survival={"horizons": [12, 24], "rsf_trees": 77, "cox_penalizer": 0.3},
        segmentation={"series": "CT", "labels": {"tumour": 1}, "patch_size": [16, 16, 8], "epochs": 9, "target_spacing_mm": [1.0, 1.0, 2.0],
                      "network": {"filters": [8, 16, 32], "deep_supervision_heads": 1}},
        deep_features=[{"series": "CT", "architecture": "resnet34", "pca_components": 5, "input_size": 64}],
        super_resolution={"series": "CT", "settings": {"scale": [1, 1, 3], "patch_size": [32, 32, 24], "epochs": 7}},
        extraction={"presets": ["seed1762"], "rois": {"tumour": {"kind": "tumour"}},
                    "habitats": {"series": ["CT"], "k_range": [3, 5], "max_voxels_per_patient": 700}, "stability": {}},
        signature={"preset": "seed1762", "icc": {"icc_type": "ICC(C,1)", "threshold": 0.85, "ci_bound": "lower"},
                   "harmonization": [{"series": "CT", "batch_field": "kernel"}]},
        missing_data={"failed_units": "impute", "max_missing_fraction": 0.2, "imputation": "mean"},
        statistics={"calibration_bins": 5},
        steps=[{"name": "acquisition_qc", "notebook": NB, "per_cohort": True}]
        + [{"name": s, "notebook": NB, "per_cohort": False} for s in STEPS],
    )  # fmt: skip
    cfg.update(overrides)
    (tmp / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(tmp / "study.yaml")


class _Run:
    """Writes outputs into the step ledgers like the steps do (CSV tables, placeholder PNG figures, JSON records)."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.writers: dict[tuple[str, str | None], ReportWriter] = {}

    def _writer(self, step: str, cohort: str | None = None) -> ReportWriter:
        return self.writers.setdefault((step, cohort), ReportWriter(self.cfg, step, cohort))

    def table(self, step: str, name: str, rows: list[dict] | pd.DataFrame, cohort: str | None = None) -> None:
        path = self.cfg.report_root / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        (rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)).to_csv(path, index=False)
        self._writer(step, cohort).record(path)

    def figure(self, step: str, name: str) -> None:
        path = self.cfg.report_root / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG placeholder")
        self._writer(step).record(path)

    def record(self, step: str, relative: str, payload: dict) -> None:
        path = self.cfg.report_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload), encoding="utf-8")
        self._writer(step).record(path)

    def features(self, name: str, columns: list[str], n_rows: int = 3) -> None:
        path = self.cfg.report_root / "features" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([[0] * len(columns)] * n_rows, columns=columns).to_csv(path, index=False)
        self._writer("feature_extraction").record(path)

    def methods(self) -> dict[str, str]:
        return {p.key: p.text for p in methods_text(self.cfg)}


def _base(tmp: Path, **overrides) -> _Run:
    cfg = _config(tmp, **overrides)
    run = _Run(cfg)
    split = [{"cohort": "train", "role": "train", "patients": 30, "outcome=0": "18 (60.0%)", "outcome=1": "12 (40.0%)", "scans CT": 30, "scans MR": 0},
             {"cohort": "test", "role": "test", "patients": 12, "outcome=0": "8 (66.7%)", "outcome=1": "4 (33.3%)", "scans CT": 12, "scans MR": 0}]  # fmt: skip
    for cohort in cfg.cohorts:
        run.table("acquisition_qc", "cohort_split_counts", split, cohort)
    return run


@pytest.fixture
def base(tmp_path: Path) -> _Run:
    return _base(tmp_path)


# --------------------------------------------------------------------------- writers of each analysis's outputs


def _clinical(run: _Run) -> None:
    run.table("models", "clinical_model_coefficients", [{"variable": "age", "coefficient": 0.2}, {"variable": "tumour_grade=G2", "coefficient": 0.1}])
    run.record("models", "models/clinical_model.json", {"params": {"classifier__C": 0.01}, "cv_folds": 5, "search": "grid"})


def _nomogram(run: _Run) -> None:
    run.table("models", "nomogram_coefficients", [{"term": "radscore", "coef": 1.2}, {"term": "age", "coef": 0.1}])
    run.figure("models", "nomogram")


def _survival(run: _Run) -> None:
    run.table("models", "cox_coefficients", [{"covariate": f"CT_tumour_f{i}", "coef": 0.1} for i in range(3)])
    run.table("models", "survival_risk_cutoffs", [{"model": "Cox (penalised)", "rule": "median", "cutoffs": "0.1912", "groups": "low; high"},
                                                  {"model": "Random survival forest", "rule": "median", "cutoffs": "1.858", "groups": "low; high"}])  # fmt: skip
    run.table("statistics", "survival_metrics", [{"model": "Cox (penalised)", "cohort": "train", "c_index": 0.7, "auc_12": 0.8, "auc_24": 0.7, "ibs": 0.1}])
    run.figure("models", "km_cox_train")


def _segmentation(run: _Run) -> None:
    run.table("segmentation", "segmentation_summary", [{"label": "tumour", "cohort": "train", "n": 8, "dice_mean": 0.9}])
    run.table("segmentation", "segmentation_training_history", [{"epoch": e, "best": e in (1, 3)} for e in range(1, 10)])
    settings = run.cfg.segmentation.model_dump(mode="json")
    run.record("segmentation", "segmentation/checkpoints/best.json",
               {"architecture": {"filters": [8, 16, 32], "norm": "instance", "deep_supervision": True}, "settings": settings,
                "train_cases": ["P1", "P2", "P3", "P4"], "val_cases": ["P5"], "epoch": 9})  # fmt: skip


def _deep(run: _Run) -> None:
    run.table("segmentation", "deep_feature_pca", [
        {"series": "CT", "channel": ch, "component": k, "explained_variance_ratio": 0.1, "architecture": "resnet34",
         "weights": "random initialisation (untrained; set pretrained_weights)", "training_patients": 8}
        for ch in ("z-1", "z+0", "z+1") for k in range(1, 6)])  # fmt: skip
    run.record("segmentation", "provenance/deep_features.json",
               {"arms": [{"series": "CT", "settings": run.cfg.deep_features[0].model_dump(mode="json"), "training_patients": 8}],
                "gradcam_layer": "layer3"})  # fmt: skip
    run.figure("segmentation", "gradcam_ct")


def _super_resolution(run: _Run) -> None:
    run.table("segmentation", "super_resolution_training_history", [{"epoch": 1, "phase": "warmup"}, {"epoch": 2, "phase": "adversarial"}])
    run.record("segmentation", "super_resolution/checkpoint/sr_settings.json", run.cfg.super_resolution.settings.model_dump(mode="json"))
    run.record("segmentation", "super_resolution/checkpoint/sr_checkpoint.json", {"best_epoch": 6, "perceptual_source": "random (seed 0)"})


def _habitats(run: _Run, ks=(3, 4, 5), selected=4) -> None:
    run.table("feature_extraction", "habitat_calinski_harabasz", [{"k": k, "calinski_harabasz": 100 + k, "selected": k == selected} for k in ks])
    run.table("feature_extraction", "habitat_fractions_per_patient",
              [{"patient": f"P{i}", "cohort": "train" if i < 30 else "test", "habitat_1": 0.5} for i in range(42)])  # fmt: skip


def _icc(run: _Run) -> None:
    run.table("signature", "icc_retained_counts", [{"series": "CT", "roi": "tumour", "extracted": 100, "constant": 2, "retained": 80, "retained_percent": 80.0},
                                                   {"series": "Total", "roi": "", "extracted": 100, "constant": 2, "retained": 80, "retained_percent": 80.0}])  # fmt: skip
    tumour = [f"CT_tumour_original_firstorder_F{i}" for i in range(4)]
    habitat = [f"CT_habitat1_original_firstorder_F{i}" for i in range(6)]
    run.features("features_seed1762", ["patient", "cohort", *tumour, *habitat], n_rows=42)
    run.features("features_seed1762_reader2", ["patient", "cohort", *tumour], n_rows=30)
    run.table("signature", "features_dropped_missing_values", [{"feature": habitat[0], "missing_fraction_training": 0.5}])


def _combat(run: _Run) -> None:
    run.table("signature", "combat_batches_ct", [{"cohort": "train", "batch": "B30f", "patients": 20}, {"cohort": "train", "batch": "FC17", "patients": 10},
                                                 {"cohort": "test", "batch": "B30f", "patients": 9}, {"cohort": "test", "batch": "STANDARD", "patients": 3}])  # fmt: skip
    run.figure("signature", "combat_diagnostics_ct")


def _interobserver(run: _Run) -> None:
    run.table("signature", "interobserver_agreement", [
        {"readers": "R1 vs R2", "variable": "diameter_mm", "kind": "continuous", "statistic": "ICC(A,1)", "estimate": 0.9, "n_patients": 30},
        {"readers": "R1 vs R2", "variable": "margin", "kind": "nominal", "statistic": "Cohen's kappa", "estimate": 0.6, "n_patients": 30}])  # fmt: skip


def _missing(run: _Run) -> None:
    run.table("feature_extraction", "extraction_failures", [{"patient": "P1", "series": "CT", "roi": "tumour", "reason": "x"},
                                                            {"patient": "P2", "series": "CT", "roi": "tumour", "reason": "y"}])  # fmt: skip
    run.table("signature", "features_dropped_missing_values", [{"feature": f"f{i}"} for i in range(3)])
    run.table("signature", "selection_pathway", [
        {"stage": 0, "step": "input", "rule": "all features", "n_features": 120, "n_removed": 0},
        {"stage": 1, "step": "impute", "rule": "missing values imputed with the training mean (17 training values imputed)", "n_features": 120, "n_removed": 0},
        {"stage": 2, "step": "lasso", "rule": "LASSO logistic, 5-fold CV (roc_auc), lambda_1se = 0.04707, non-zero coefficients", "n_features": 6, "n_removed": 114}])  # fmt: skip


def _shap(run: _Run) -> None:
    for name in ("shap_beeswarm", "shap_bar"):
        run.figure("models", name)
    run.record("models", "provenance/shap.json", {"explainer": "tree", "training_patients": 150, "background_patients": 100, "scale": "probability"})


def _table_one(run: _Run) -> None:
    run.table("statistics", "table_one_by_cohort", [{"variable": "n", "test": ""}, {"variable": "age", "test": "Welch's t-test"},
                                                    {"variable": "tumour_grade", "test": "Fisher's exact test"}])  # fmt: skip


def _calibration(run: _Run, record: bool = True) -> None:
    run.table("statistics", "calibration", [{"model": "Radiomics", "cohort": "train", "n": 42, "hl_groups": 4, "note": ""},
                                            {"model": "Radiomics", "cohort": "test", "n": 25, "hl_groups": "", "note": "Hosmer-Lemeshow not computed"}])  # fmt: skip
    for c in ("train", "test"):
        run.figure("statistics", f"calibration_{c}")
    if record:
        run.record("statistics", "provenance/statistics.json", {"calibration_bins": {"train": 4, "test": 2}})


WRITERS = {"clinical": _clinical, "nomogram": _nomogram, "survival": _survival, "segmentation": _segmentation, "deep_features": _deep,
           "super_resolution": _super_resolution, "habitats": _habitats, "reliability": _icc, "harmonization": _combat,
           "missing_data": _missing, "explainability": _shap, "table_one": _table_one}  # fmt: skip


# --------------------------------------------------------------------------- presence


def test_no_optional_paragraph_without_its_outputs(base):
    methods = base.methods()
    assert set(methods) == {"cohorts", "software"}  # everything is declared in the configuration, nothing ran
    assert set(methods) <= set(PARAGRAPH_KEYS)


@pytest.mark.parametrize("key", sorted(WRITERS))
def test_each_optional_paragraph_appears_exactly_when_its_analysis_ran(tmp_path, key):
    run = _base(tmp_path)
    WRITERS[key](run)
    methods = run.methods()
    assert key in methods
    others = set(OPTIONAL) - {key}
    # A few analyses legitimately write into a neighbour's paragraph: the nomogram's absence is stated by the clinical model,
    # the ICC filter's unscored habitat features count for missing data (its dropped-features table).
    allowed = {"clinical": set(), "reliability": {"missing_data"}, "missing_data": set()}.get(key, set())
    assert not (set(methods) & others) - allowed, set(methods) & others


# --------------------------------------------------------------------------- key settings, read from the run


def test_clinical_model_states_variables_tuning_and_missing_nomogram(base):
    _clinical(base)
    text = base.methods()["clinical"]
    assert "age (continuous, z-scored" in text and "tumour grade (categorical, one-hot" in text
    assert "C = 0.01" in text and "5-fold" in text
    assert "nomogram was not fitted" in text  # declared, signature ends with LASSO, no nomogram output: separation


def test_nomogram_paragraph(base):
    _clinical(base)
    _nomogram(base)
    methods = base.methods()
    assert "nomogram was not fitted" not in methods["clinical"]
    text = methods["nomogram"]
    assert "unpenalised logistic regression" in text and "Rad-score" in text and "age and tumour grade" in text
    assert "refitted inside every training fold" in text


def test_survival_paragraph_reads_horizons_cutoffs_and_settings(base):
    _survival(base)
    text = base.methods()["survival"]
    for expected in ("77 trees", "penalty 0.3", "3 selected features", "at 12 and 24 months", "0.1912 for the Cox model",
                     "1.858 for the forest", "the median of the training out-of-fold risks", "Harrell's C-index", "integrated Brier score"):  # fmt: skip
        assert expected in text, expected
    assert "time months" in base.methods()["cohorts"]


def _survival_model_set(run: _Run, deep: bool) -> None:
    """Notebook 05's survival model set (helpers.steps.survival) of a study with a binary endpoint too."""
    model_set = {"Clinical": ["clinical"], "C-radiomics": ["radiomics"], **({"DL_F": ["deep"]} if deep else {}), "C-radiomics (RSF)": ["radiomics"]}
    run.table("models", "survival_models", [{"model": m, "estimator": "random survival forest" if "RSF" in m else "penalised Cox",
                                             "inputs": " + ".join(b), "n_variables": 3} for m, b in model_set.items()])
    run.table("models", "cox_coefficients", [{"model": "C-radiomics", "term": f"CT_tumour_f{i}", "coefficient": 0.1} for i in range(3)])
    run.table("models", "survival_risk_cutoffs", [{"model": m, "rule": "median", "cutoffs": "0.2", "groups": "low; high"} for m in model_set])
    run.record("models", "provenance/survival.json", {"models": {"cox": {"penalizer": 0.1, "l1_ratio": 0.0}, "rsf": {"n_estimators": 77,
                                                                 "min_samples_leaf": 5}}, "model_set": model_set, "features": "survival_signature"})
    run.table("signature", "survival_selection_pathway", [{"step": "cox_lasso", "features_out": 3}])
    run.table("statistics", "survival_ablation", [{"model": "Clinical", "cohort": "test", "c_index": 0.7}])
    run.table("statistics", "survival_td_auc", [{"model": "Clinical", "cohort": "test", "AUC at 12 months (95% CI)": "0.700 (0.600-0.800)", "note": ""}])


@pytest.mark.parametrize("classifier", [False, True], ids=["no end-to-end network", "end-to-end classifier trained"])
def test_survival_model_set_paragraph_says_where_features_came_from_and_why_no_end_to_end_network(base, classifier):
    _survival_model_set(base, deep=True)
    if classifier:
        base.table("segmentation", "deep_classifier_auc", [{"series": "CT", "set": "held out", "auc": 0.7}])
    text = base.methods()["survival"]
    assert "Clinical (the clinical variables), C-radiomics (the radiomics signature's features) and DL_F (the deep features)" in text
    assert "selected against the follow-up time and event on the training cohort (survival.signature_steps:" in text
    assert "ablation table" in text and "time-dependent AUC is given per horizon" in text
    if classifier:
        assert "the end-to-end deep network was not evaluated as a survival model: it classifies the binary endpoint" in text
    else:
        assert "no end-to-end deep network was trained (one is trained only for a binary endpoint)" in text
    _survival_model_set(base, deep=False)
    assert "end-to-end" not in base.methods()["survival"]


def test_segmentation_paragraph_reads_the_checkpoint_record(base):
    _segmentation(base)
    text = base.methods()["segmentation"]
    for expected in ("DynUNet", "3 resolution levels with 8, 16 and 32 filters", "4 training patients, with 1 further training patient held out",
                     "9 epochs", "patches of 16 x 16 x 8 voxels", "epoch 3 (best validation Dice)", "Dice similarity coefficient", "HD95",
                     "used the manual masks", "saved as NIfTI label images on each image's grid."):  # fmt: skip
        assert expected in text, expected
    assert "DICOM Segmentation" not in text  # NIfTI input: no SEG written


def test_segmentation_paragraph_names_the_dicom_seg_outputs(base):
    _segmentation(base)
    folder = base.cfg.report_root / "segmentation" / "masks_dicom_seg"
    folder.mkdir(parents=True)
    for patient in ("P01", "P02", "P03"):
        (folder / f"{patient}.dcm").write_bytes(b"")
    text = base.methods()["segmentation"]
    assert ("for the 3 patients whose images were DICOM series, also as DICOM Segmentation objects referencing the source series "
            "(highdicom 0.28.2), which carry the study's patient pseudonym in place of the source's identifying values.") in text


def test_deep_features_paragraph_reads_pca_table_and_record(base):
    _deep(base)
    text = base.methods()["deep_features"]
    for expected in ("ResNet-34", "randomly initialised weights", "64 x 64 pixels", "to 5 components", "the 8 training patients only",
                     "Grad-CAM", "residual stage 3 (layer3)"):  # fmt: skip
        assert expected in text, expected
    assert "pretrained_weights" not in text and "untrained; set" not in text


def test_super_resolution_paragraph_reads_the_checkpoint_settings(base):
    _super_resolution(base)
    methods = base.methods()
    text = methods["super_resolution"]
    assert "1 x 1 x 3" in text and "then up to 7 epochs in all" in text and "epoch 6 (best validation PSNR)" in text
    assert "comparison arm" in text
    assert "CT SR (the CT images super-resolved" in methods["cohorts"]


def test_habitats_with_a_fixed_k_are_not_said_to_be_selected(base):
    _habitats(base, ks=(3,), selected=3)
    text = base.methods()["habitats"]
    assert "fixed at K = 3 (no selection)" in text and "Calinski-Harabasz index on" not in text
    assert "30 training patients" in text and "700 voxels" in text


def test_habitats_with_a_k_range_state_the_selection(base):
    _habitats(base)
    text = base.methods()["habitats"]
    assert "chosen among 3 to 5 by the highest Calinski-Harabasz index" in text and "K = 4" in text


def test_icc_filter_states_type_threshold_and_habitat_bypass(base):
    _habitats(base)
    _icc(base)
    methods = base.methods()
    text = methods["reliability"]
    assert "consistency" in text and "ICC(C,1)" in text and "lower bound of the 95% confidence interval" in text and "0.85" in text
    assert "30 training patients" in text and "Of 100 features with a second reading, 2 were constant and 80 (80.0%) passed" in text
    # 6 habitat features without a second reading, 1 of them dropped for missing values: 5 bypass the filter.
    assert "The 5 habitat features, which have no second reading, were not scored and passed the filter unchanged" in text
    assert "5 habitat features kept after the missing-data rule bypassed the ICC" in methods["habitats"]


def test_combat_paragraph_counts_batches_and_unseen_patients(base):
    _combat(base)
    text = base.methods()["harmonization"]
    assert "ComBat" in text and "by reconstruction kernel: 2 training batches" in text
    assert "the 3 patients of batches absent from training were left unadjusted" in text


def test_interobserver_agreement_names_statistics(base):
    _interobserver(base)
    text = base.methods()["reliability"]
    assert "Interobserver agreement" in text and "R1 and R2" in text and "30 patients" in text
    assert "ICC(A,1) for diameter mm (continuous)" in text and "Cohen's kappa for margin (nominal)" in text
    assert "Feature stability" not in text  # no ICC filter ran


def test_missing_data_paragraph_counts_from_the_run(base):
    _missing(base)
    text = base.methods()["missing_data"]
    assert "Two extraction units failed" in text and "kept and their missing features imputed" in text
    assert "more than 20% of the training patients were left out (3 features" in text
    assert "imputed with the training mean" in text and "no kept feature had a missing value" in text


def test_shap_paragraph_reads_explainer_and_background(base):
    _shap(base)
    text = base.methods()["explainability"]
    assert "Tree SHAP" in text and "a seeded sample of 100 of the 150 training patients" in text and "never held-out" in text
    assert "before its recalibration" not in text
    base.record("models", "models/final_model.json", {"recalibration": {"method": "sigmoid"}})
    assert "The explanations are those of the model before its recalibration" in base.methods()["explainability"]


def test_table_one_paragraph_names_the_tests(base):
    _table_one(base)
    text = base.methods()["table_one"]
    assert "Shapiro-Wilk" in text and "Welch's t-test" in text and "Mann-Whitney" in text and "Fisher's exact test" in text
    assert "chi-square" in text


def test_calibration_bins_are_those_the_figures_used(base):
    _calibration(base)
    text = base.methods()["statistics"]
    assert "4 for the train cohort and 2 for the test cohort" in text and "10 bins" not in text
    assert "not computed for the test cohort" in text and "4 groups" in text


def test_calibration_bins_without_a_record_follow_the_figure_rule(base):
    _calibration(base, record=False)
    # min(calibration_bins = 5, max(2, n // 10)): 42 patients -> 4 bins, 25 patients -> 2 bins
    assert "4 for the train cohort and 2 for the test cohort" in base.methods()["statistics"]


def test_declared_series_without_scans_is_said_unused(base):
    text = base.methods()["cohorts"]
    assert "CT (30" not in text and "CT (42 scans)" in text
    assert "The series MR was declared in the study configuration but no patient had a scan of it; it was not used." in text


# --------------------------------------------------------------------------- wording


def _config_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        for arg in getattr(info.annotation, "__args__", ()) or (info.annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys |= _config_keys(arg)
    return keys


def test_text_has_no_code_names_arrows_or_none(tmp_path):
    run = _base(tmp_path)
    for writer in WRITERS.values():
        writer(run)
    _calibration(run)
    methods = run.methods()
    assert set(OPTIONAL) <= set(methods)
    (tmp_path / "methods.md").write_text("\n\n".join(f"## {k}\n{v}" for k, v in methods.items()), encoding="utf-8")
    text = " ".join(methods.values())
    prose = " ".join(t for t in text.split() if "/" not in t)  # file paths (provenance/latest.json) are names of files
    assert "->" not in text and not re.search(r"\bNone\b", text)
    assert not re.findall(r"\b\w+_\w+\b", prose), re.findall(r"\b\w+_\w+\b", prose)
    from helpers.settings.deep_features import DeepFeatureSettings
    from helpers.settings.segmentation import SegmentationSettings
    from helpers.settings.super_resolution import SuperResolutionSettings

    keys = set().union(*(_config_keys(m) for m in (StudyConfig, SegmentationSettings, DeepFeatureSettings, SuperResolutionSettings)))
    keys |= {"p_threshold", "lambda_rule", "min_features", "random_state", "pretrained_weights"}
    assert not [k for k in keys if "_" in k and re.search(rf"\b{re.escape(k)}\b", text)]


def test_survival_paragraph_prefers_the_settings_the_run_recorded(base):
    """The fitted models' parameters (provenance/survival.json) win over the config, which may have changed since the run."""
    _survival(base)
    base.record("models", "provenance/survival.json", {"models": {"cox": {"penalizer": 0.05, "l1_ratio": 0.5, "alpha": 0.05},
                                                                  "rsf": {"n_estimators": 250, "min_samples_leaf": 7}},
                                                       "cv_folds": 4, "risk_cutoff_rule": "median", "n_features": 5})  # fmt: skip
    base.record("statistics", "provenance/statistics.json", {"survival_bootstrap": 321})
    text = base.methods()["survival"]
    for expected in ("penalty 0.05", "L1 ratio 0.5", "250 trees", "at least 7 patients per leaf", "5 selected features",
                     "4-fold cross-validation", "321 resamples"):  # fmt: skip
        assert expected in text, expected
    assert "77 trees" not in text and "penalty 0.3" not in text


def test_extraction_paragraph_reports_both_ibsi_phantoms_and_the_deviations(base):
    """The IBSI sentence reads the run's compliance summary: digital phantom, CT phantom per configuration, deviations."""
    base.table("feature_extraction", "extraction_failures", pd.DataFrame(columns=["patient", "series", "roi", "reason"]))
    rows = [{"phantom": "digital", "configuration": "-", "diagnostics": "", "diagnostics_within_tolerance": "", "mapped_features": 385,
             "features_within_tolerance": 383, "deviating": 2, "unmapped_features": 102}]
    rows += [{"phantom": "CT", "configuration": c, "diagnostics": 60, "diagnostics_within_tolerance": 60, "mapped_features": n,
              "features_within_tolerance": w, "deviating": n - w, "unmapped_features": 66} for c, n, w in (("A", 267, 263), ("C", 149, 149))]
    base.table("feature_extraction", "ibsi_compliance_summary", rows)
    base.table("feature_extraction", "ibsi_deviations", [{"phantom": "CT", "configuration": "A", "tag": "cm_inv_diff_norm_2D_avg"}])
    text = base.methods()["extraction"]
    assert "on the digital phantom 383 of 385 mapped features were within tolerance" in text
    assert "CT phantom in configurations A, C the image-processing diagnostics" in text and "all matched the reference" in text
    assert "263 of 267 (A), 149 of 149 (C) mapped features were within tolerance" in text
    assert "Each of the 6 features outside tolerance is listed with its verified cause" in text
    rows[1]["diagnostics_within_tolerance"] = 59
    base.table("feature_extraction", "ibsi_compliance_summary", rows)
    assert "did not all match the reference" in base.methods()["extraction"]


@pytest.mark.parametrize(
    ("setting", "words"),
    [({"resegmentRange": [-1000, 400]}, "mask re-segmented to intensities -1000 to 400"),
     ({"resegmentRange": [-1000, 400], "resegmentSigma": 3}, "mask re-segmented to intensities -1000 to 400, then to the mean ± 3 SD of the remaining voxels"),
     ({"resegmentSigma": 3}, "mask re-segmented to intensities within the mean ± 3 SD of the ROI"),
     ({"resegmentRange": [-3, 3], "resegmentMode": "sigma"}, "mask re-segmented to intensities within the mean ± 3 SD of the ROI"),
     ({"resegmentRange": [0.5], "resegmentMode": "relative"}, "mask re-segmented to intensities of at least 50% of the ROI maximum"),
     ({"resegmentRange": [-500]}, "mask re-segmented to intensities of at least -500")],
)  # fmt: skip
def test_resegmentation_settings_in_words(setting, words):
    """pyradiomics' modes (absolute, relative, sigma; one or two bounds) and the project's resegmentSigma."""
    from helpers.reporting.supplement.methods_words import discretisation, pyradiomics_settings

    assert pyradiomics_settings(setting) == [words]
    assert discretisation({"binWidth": 25, "binOrigin": -1000}) == "a fixed bin width of 25 with the first bin starting at -1000"


def test_network_paragraphs_state_device_budget_epochs_run_and_validation(base):
    """The checkpoints' training records: a run stopped by its time budget, and one that ran all its epochs."""
    _segmentation(base)
    record = json.loads((base.cfg.report_root / "segmentation/checkpoints/best.json").read_text())
    record["training"] = {"epochs_planned": 24, "epochs_run": 9, "stopped_by": "time budget", "budget_minutes": 4,
                          "device": "cpu", "seconds": 231.0}
    record["settings"]["validate_every"] = 3
    base.record("segmentation", "segmentation/checkpoints/best.json", record)
    _super_resolution(base)
    base.record("segmentation", "super_resolution/checkpoint/sr_checkpoint.json",
                {"best_epoch": 6, "perceptual_source": "random (seed 0)",
                 "training": {"epochs_planned": 7, "epochs_run": 7, "stopped_by": "epochs", "budget_minutes": None,
                              "device": "cuda:0", "seconds": 90.0}})
    methods = base.methods()
    assert ("Training used the CPU: 9 of the 24 planned epochs ran within the time budget of 4 minutes in 3.9 minutes, "
            "validating every 3 epochs and after the last.") in methods["segmentation"]
    assert "Training used a GPU: all 7 epochs ran (no time budget) in 1.5 minutes." in methods["super_resolution"]


# --------------------------------------------------------------------------- class weights, SMOTE and recalibration (issue 19)


def _final_model(run: _Run, **sidecar) -> None:
    run.table("models", "model_grid", [{"block": "CT / tumour", "algorithm": "logistic", "cv_auc_mean": 0.7}])
    run.table("models", "final_model_summary", [{"cohort": "train", "patients": 30, "auc": 0.7}])
    run.record("models", "models/final_model.json", {"algorithm": "logistic", "steps": ["impute", "zscore", "classifier"], "n_train": 30,
                                                      "n_features": 12, "threshold": 0.41, "search": "grid", "params": {"classifier__C": 0.1},
                                                      "training_prevalence": 0.4, "oof_mean_probability": 0.402, **sidecar})  # fmt: skip


@pytest.mark.parametrize(("models", "sidecar", "expected", "absent"), [
    ({}, {"class_weight": "none", "recalibration": {"method": "sigmoid", "response": "decision_function", "n_fitted": 30, "a": -1.1, "b": 0.2},
          "oof_mean_probability_uncalibrated": 0.45},
     ["Classes were not weighted (every patient weighed the same).",
      "The probabilities of every model that had its hyperparameters chosen by cross-validated AUC (which ranks patients and cannot see "
      "calibration) were recalibrated by Platt's sigmoid (logistic) recalibration fitted on that model's training out-of-fold scores only",
      "no validation or test patient was used",
      "Its probabilities were recalibrated by Platt's sigmoid (logistic) recalibration fitted on its 30 training out-of-fold decision values, "
      "a = -1.1, b = 0.2 in p = 1 / (1 + exp(a s + b)), because its hyperparameters were chosen by AUC (training event rate 0.4, mean "
      "out-of-fold probability 0.402); before recalibration the mean out-of-fold probability was 0.45."],
     ["not calibrated"]),
    ({"class_weight": "balanced", "algorithms": ["logistic", "xgboost"]},
     {"class_weight": "balanced", "recalibration": {"method": "sigmoid", "response": "decision_function", "n_fitted": 30, "a": -1.0, "b": 0.1}},
     ["Classes were weighted inversely to their training frequencies (balanced class weights) in the logistic regression classifiers "
      "(XGBoost unweighted).", "every model that was trained with class weights or had its hyperparameters chosen",
      "because it was trained with weighted classes and its hyperparameters were chosen by AUC"], ["not calibrated"]),
    ({"smote": True, "recalibration": "none"}, {"class_weight": "none", "steps": ["impute", "zscore", "smote", "classifier"],
                                                "recalibration": {"method": "none"}, "oof_mean_probability": 0.5},
     ["The probabilities were not recalibrated (recalibration was switched off in the configuration): trained with SMOTE, the models' "
      "probabilities are pulled towards 0.5 and are not calibrated risks",
      "It was trained with SMOTE and its probabilities were not recalibrated (training event rate 0.4, mean out-of-fold probability 0.5)"],
     ["were recalibrated"]),
    ({"recalibration": "isotonic"}, {"class_weight": "none", "recalibration": {"method": "isotonic", "response": "decision_function", "n_fitted": 30}},
     ["The probabilities of every model were recalibrated by isotonic regression fitted on that model's training out-of-fold scores only",
      "Its probabilities were recalibrated by isotonic regression fitted on its 30 training out-of-fold decision values, because"],
     ["not calibrated"]),
], ids=["default", "balanced", "smote-without-recalibration", "isotonic"])  # fmt: skip
def test_models_paragraph_states_class_weights_smote_and_recalibration_as_configured(tmp_path, models, sidecar, expected, absent):
    run = _base(tmp_path, models=models)
    _final_model(run, **sidecar)
    text = run.methods()["models"]
    for part in expected:
        assert part in text, (part, text)
    for part in absent:
        assert part not in text
    prose = " ".join(t for t in text.split() if "/" not in t)
    assert not re.findall(r"\b\w+_\w+\b", prose) and not re.search(r"\bNone\b", text)


def test_statistics_paragraph_explains_calibration_in_the_large_and_the_prevalence_rule(base):
    _calibration(base)
    text = base.methods()["statistics"]
    assert "calibration-in-the-large (the mean predicted probability against the observed event rate" in text
    assert "by at least 0.10 is flagged among the reviewer points" in text
