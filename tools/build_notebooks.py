"""Write the study notebooks from their cell sources (kept here so diffs stay readable).

Run `python tools/build_notebooks.py` after editing; tests check the committed
notebooks match this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_acquisition_qc.ipynb": [
        ("md", """# 01 Acquisition and image/mask quality control

Methods: acquisition parameters are read from DICOM headers (or the cohort's header table) through an
allow-list of acquisition attributes, so no identifying value is read. Each image/mask pair is checked for
geometry, mask volume, connected components, contact with the image border and intensity inside the mask;
values far from the series median (robust z-score) are flagged. Outputs go to `reports/<study>/`."""),
        ("parameters", """config_path = "study.yaml"
step = "acquisition_qc"
cohort = "training\""""),
        ("code", """from IPython.display import display

from helpers._environment import set_seeds
from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
from helpers.settings import load_config
from helpers.steps.acquisition_qc import (
    cohort_rows, write_acquisition_table, write_cohort_counts, write_image_mask_qc, write_montages,
)

cfg = load_config(config_path)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort)"""),
        ("md", "## Inputs: manifest and patient table (validated before any work)"),
        ("code", """manifest, patients = load_study(cfg)
rows = cohort_rows(manifest, cohort)
print(f"cohort {cohort}: {rows['patient'].nunique()} patients, {len(rows)} images")"""),
        ("md", "## Cohorts and outcome classes (CLEAR item 15)"),
        ("code", """display(write_cohort_counts(manifest, patients, cfg, report))"""),
        ("md", "## Acquisition parameters per protocol group (Table S1)"),
        ("code", """display(write_acquisition_table(rows, cfg, report))"""),
        ("md", "## Image and mask QC (flagged scans first)"),
        ("code", """display(write_image_mask_qc(rows, cfg, report).head(20))"""),
        ("md", "## Mid-slice montage with the tumour contour, per series"),
        ("code", """print("\\n".join(write_montages(rows, cfg, cohort, report)))"""),
    ],
    "02_segmentation_deep_features.ipynb": [
        ("md", """# 02 Auto-segmentation and deep features

Methods: a 3D U-Net in the nnU-Net style (MONAI DynUNet with deep supervision, Dice + cross-entropy loss, spatial
and intensity augmentation, best-validation-Dice checkpoint) is trained on the **training** cohort (with its own
validation split) and applied to every patient; predicted masks are written on each image's original grid and
compared with the manual masks (Dice, 95th-percentile Hausdorff distance). Deep features: the largest tumour slice
and its neighbours (2.5D), cropped to the dilated ROI, embedded by a ResNet (weights from a local file only) and
reduced by PCA fitted on the training patients; an end-to-end 2.5D classifier gives loss curves and Grad-CAM maps.
Everything runs on the CPU with the small settings of the study config and uses a GPU when present."""),
        ("parameters", """config_path = "study.yaml"
step = "segmentation"
cohort = ''"""),
        ("code", """from IPython.display import display

from helpers.settings import load_config
from helpers.steps.segmentation import (
    run_deep_features,
    run_segmentation,
    run_super_resolution,
    write_deep_feature_outputs,
    write_segmentation_outputs,
    write_super_resolution_outputs,
)
from helpers.data.manifest import load_study, read_manifest
from helpers._environment import set_seeds
from helpers.reporting.writer import ReportWriter

cfg = load_config(config_path)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)
manifest, patients = load_study(cfg, check_images=False)"""),
        ("md", "## Segmentation: train on the training cohort, predict every patient, Dice / HD95 against the manual masks"),
        ("code", """if cfg.segmentation is None:
    print("no segmentation configured (segmentation: in the study config)")
else:
    segmentation = run_segmentation(manifest, cfg)
    for name, table in write_segmentation_outputs(segmentation, read_manifest(cfg.path(cfg.manifest)), cfg, report).items():
        print(name)
        display(table)"""),
        ("md", "## Deep features (2.5D ResNet + PCA fitted on training), end-to-end classifier, Grad-CAM"),
        ("code", """if not cfg.deep_features:
    print("no deep features configured (deep_features: in the study config)")
else:
    deep = run_deep_features(manifest, patients, cfg)
    for name, table in write_deep_feature_outputs(deep, manifest, cfg, report).items():
        print(name)
        display(table)"""),
        ("md", """## Super-resolution (3D GAN trained on degraded training images)

The SR images and masks are listed in `super_resolution/manifest_super_resolution.csv` as series `<series>_SR`;
declare that series in a second study config to extract the same radiomics from NR and SR images and compare the
models (notebook 06's DeLong + NRI table)."""),
        ("code", """if cfg.super_resolution is None:
    print("no super-resolution configured (super_resolution: in the study config)")
else:
    sr = run_super_resolution(manifest, cfg)
    for name, table in write_super_resolution_outputs(sr, manifest, cfg, report).items():
        print(name)
        display(table)"""),
    ],
    "03_feature_extraction.ipynb": [
        ("md", """# 03 Regions of interest and radiomics feature extraction

Methods: each image is preprocessed per series as configured (resampling, N4, clipping, normalisation), regions of
interest are derived in millimetres (tumour, peritumoral rings), and habitats are found by K-means on the pooled
voxel intensities of co-registered series of the **training** patients only (K by the Calinski-Harabasz index;
centroids applied unchanged to every patient). Features are extracted with pyradiomics per patient x series x ROI x
preset; every unit is cached under a key of its inputs, settings and software versions, so re-runs and resumed runs
skip finished units. Outputs: the wide feature table per preset, feature counts by class, diagnostics, failures and
the extraction provenance."""),
        ("parameters", """config_path = "study.yaml"
step = "feature_extraction"
cohort = ''"""),
        ("code", """import pandas as pd
from IPython.display import display

from helpers._environment import set_seeds
from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
from helpers.settings import load_config
from helpers.steps.feature_extraction import (
    cohort_habitats, run_feature_extraction, write_extraction_outputs, write_habitat_outputs, write_ibsi_compliance,
)
from helpers.steps.segmentation import with_super_resolution

cfg = load_config(config_path)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)
manifest, patients = load_study(cfg)
# With super_resolution configured: notebook 02's super-resolved images join as series <series>_SR (same extraction).
manifest = with_super_resolution(manifest, cfg)"""),
        ("md", "## Habitats (fitted on the training cohort only)"),
        ("code", """habitats = cohort_habitats(manifest, cfg, report)
habitat_tables = write_habitat_outputs(habitats, manifest, cfg, report)
for name, table in habitat_tables.items():
    print(name)
    display(table.head(12))"""),
        ("md", "## Extraction (patient x series x ROI x preset)"),
        ("code", """result = run_feature_extraction(manifest, cfg, habitats)
display(pd.Series(result.status_counts(), name="units"))"""),
        ("md", "## IBSI compliance of the IBSI preset (digital phantom, chapter 1 reference values)"),
        ("code", """display(write_ibsi_compliance(report))"""),
        ("md", "## Feature tables, counts by class, failures"),
        ("code", """shown = write_extraction_outputs(result, cfg, report)
for name, table in shown.items():
    print(name)
    display(table)"""),
    ],
    "04_signature.ipynb": [
        ("md", """# 04 Feature stability, harmonisation and selection: the radiomics signature

Methods: everything fitted here learns from the **training** cohort only and is applied unchanged to the other
cohorts. Patients with failed extraction units are handled as `missing_data.failed_units` says (the default stops
the run before this notebook; `exclude_patients` lists and excludes them). Features missing in more than
`missing_data.max_missing_fraction` of the training patients are listed and left out; every other gap is imputed
with the training median as the first step of each pipeline. The ICC filter keeps features reproducible between two
readers (here: the tumour mask and the mask dilated by 1 mm), ICC(A,1) >= 0.80. ComBat harmonises the configured
series by their batch variable (label-free; estimated from the training patients with a value). The selection
pipeline (imputation, z-score, univariate test chosen by normality, correlation filter, mRMR, LASSO with the 1-SE
rule) gives the signature and the Rad-score."""),
        ("parameters", """config_path = "study.yaml"
step = "signature"
cohort = ''
task = ''  # a study with several tasks: the task this run is for"""),
        ("code", """from IPython.display import display

from helpers.settings import load_config
from helpers.data.manifest import load_study
from helpers._environment import set_seeds
from helpers.reporting.writer import ReportWriter
from helpers.steps.signature import build_signature, interobserver_agreement, write_signature_outputs

cfg = load_config(config_path, task=task or None)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)
manifest, patients = load_study(cfg, check_images=False)"""),
        ("md", "## Fit on the training cohort: ICC filter, ComBat, selection"),
        ("code", """signature = build_signature(cfg, manifest, patients)
print(signature.formula)"""),
        ("md", "## Tables and figures: ICC retained counts, ComBat batches, selection pathway, Rad-score"),
        ("code", """for name, table in write_signature_outputs(signature, cfg, report).items():
    print(name)
    display(table)"""),
        ("md", "## Interobserver agreement of the readers' semantic scores (ICC / Cohen's kappa with 95% CI)"),
        ("code", """agreement = interobserver_agreement(cfg, patients)
if agreement is None:
    print("no reader scores configured (reader_scores in the study config)")
else:
    report.table(agreement, "interobserver_agreement", per_cohort=False)
    display(agreement)"""),
    ],
    "05_models.ipynb": [
        ("md", """# 05 Models: series x ROI x algorithm grid and the final model

Methods: each model is a pipeline (selection steps, optional SMOTE, classifier) refitted inside every fold of a
stratified, seeded k-fold cross-validation on the training cohort; held-out cohorts are predicted once by the model
refitted on all training patients. No class weights unless `models.class_weight: balanced`; a model trained with
class weights or SMOTE, or tuned on the AUC, is recalibrated (`models.recalibration: auto`, Platt's sigmoid) on the
training out-of-fold scores only. The operating threshold is Youden's J on the training out-of-fold (recalibrated)
probabilities and is applied unchanged to the other cohorts. SHAP explains the final model's pipeline (before
recalibration) on the training background."""),
        ("parameters", """config_path = "study.yaml"
step = "models"
cohort = ''
task = ''  # a study with several tasks: the task this run is for"""),
        ("code", """from IPython.display import display

from helpers.settings import load_config
from helpers.data.manifest import load_study
from helpers.steps.models import (
    comparison_models,
    fit_clinical_models,
    fit_stacker,
    fusion_comparison,
    ith_sweep,
    ith_sweep_table_name,
    load_modelling_data,
    model_predictions,
    run_model_grid,
    select_final_model,
    write_clinical_outputs,
    write_final_model_outputs,
    write_final_selection,
    write_grid_outputs,
)
from helpers.steps.survival import fit_survival_model_set, write_survival_model_outputs
from helpers._environment import set_seeds
from helpers.reporting.writer import ReportWriter

cfg = load_config(config_path, task=task or None)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)
manifest, patients = load_study(cfg, check_images=False)
data = load_modelling_data(cfg, patients)"""),
        ("md", "## Model grid (AUC heatmaps like the seed's 48-model figure)"),
        ("code", """binary = not cfg.survival_only  # a survival-only study (no endpoints.binary) fits the time-to-event models only
if binary:
    grid, grid_models = run_model_grid(data, cfg, return_models=True)
    display(write_grid_outputs(grid, report))
else:
    print("survival-only study (no endpoints.binary): binary model grid, final model, fusion and nomogram skipped")"""),
        ("md", """## Final model: signature selection + algorithm; threshold; predictions; SHAP

The algorithm is `models.final_algorithm`, or with `models.final_selection: validation` the algorithm of
`models.algorithms` with the highest AUC in the validation cohort (the only choice made on it; test cohorts are
never used for a choice). The threshold is Youden's J on the training out-of-fold probabilities unless
`models.threshold_from: validation`."""),
        ("code", """if binary:
    final, selection = select_final_model(data, cfg)
    write_final_selection(selection, cfg, report)
    if selection is not None:
        display(selection)
    for name, table in write_final_model_outputs(final, data, cfg, report).items():
        print(name)
        display(table)"""),
        ("md", """## ITH cluster sweep: a model on each K's intratumoral heterogeneity score, and on a set of K

Runs when habitats are configured (`extraction.habitats`) and `models.ith_sweep` is not null; every model is fitted on
the training cohort and thresholded at its training out-of-fold Youden threshold."""),
        ("code", """sweep = ith_sweep(data, cfg)
if sweep is None:
    print("no ITH scores (habitats not configured, or models.ith_sweep: null): ITH sweep skipped")
else:
    report.table(sweep, ith_sweep_table_name(cfg), per_cohort=False)
    display(sweep)"""),
        ("md", "## Fusion: best single block vs feature-level fusion vs score-level stacking"),
        ("code", """if binary:
    stacker = fit_stacker(data, cfg)
    fusion = fusion_comparison(data, cfg, grid, final, stacker)
    report.table(fusion, "fusion_models", per_cohort=False)
    display(fusion)"""),
        ("md", """## Clinical model and clinical-radiomics nomogram

Runs when the study config lists clinical variables (`clinical:`); the nomogram's Rad-score is relearned inside every
training fold, so its out-of-fold AUC is honest."""),
        ("code", """clinical_models = fit_clinical_models(data, cfg) if binary else {}
if binary and not clinical_models:
    print("no clinical variables configured: clinical model and nomogram skipped")
for name, table in write_clinical_outputs(clinical_models, data, cfg, report).items():
    print(name)
    display(table)"""),
        ("md", "## Predictions of the compared models (input of notebook 06)"),
        ("code", """if binary:
    models = comparison_models(cfg, final, grid, grid_models, stacker, clinical_models)
    predictions = model_predictions(models, data)
    report.data(predictions, "model_predictions", index=False)
    display(predictions.groupby(["model", "cohort"]).size().unstack())"""),
        ("md", """## Time-to-event models

Runs when the study config names a time-to-event endpoint (`endpoints.time`, `endpoints.event`), survival-only or
with a binary endpoint too: Cox models on the clinical variables, the radiomics signature (also a random survival
forest), the ITH score(s) and the deep features, each with and without ITH, and a combined model (seed Table S4).
The radiomics features are those selected against (time, event) (`signature.steps` of a survival-only study,
`survival.signature_steps` otherwise). Training risks are out-of-fold; risk-group cut-offs come from the training
cohort's out-of-fold risks."""),
        ("code", """if data.time is None:
    print("no time-to-event endpoint configured: survival models skipped")
    shown = {}
else:
    survival_models = fit_survival_model_set(data, cfg)
    shown = write_survival_model_outputs(survival_models, data, cfg, report)
for name, table in shown.items():
    print(name)
    display(table)"""),
    ],
    "06_statistics.ipynb": [
        ("md", """# 06 Statistics: performance, comparisons, calibration, clinical usefulness, survival

Methods: every number is computed from notebook 05's predictions, where training-cohort probabilities are
out-of-fold and other cohorts are predicted by the models refitted on training; binary metrics use each model's
training (Youden) threshold unchanged. The probabilities are those of the deployed models: recalibrated on the
training out-of-fold scores where notebook 05 recalibrated them (models.recalibration). AUC 95% CIs by DeLong's
method; pairwise AUC comparisons by the paired DeLong test; continuous NRI and IDI with asymptotic CIs (Pencina
2008/2011); proportions with Wilson intervals, F1 with a seeded bootstrap; calibration-in-the-large (observed event
rate vs mean predicted probability, calibration intercept), calibration slope, Brier and scaled Brier score and
Hosmer-Lemeshow test; decision curves (net benefit, Vickers & Elkin 2006). Table 1 tests continuous variables by Welch's t-test or
Mann-Whitney U (Shapiro-Wilk rule) and categorical ones by chi-square or Fisher's exact test (expected counts < 5)."""),
        ("parameters", """config_path = "study.yaml"
step = "statistics"
cohort = ''
task = ''  # a study with several tasks: the task this run is for"""),
        ("code", """from IPython.display import display

from helpers.settings import load_config
from helpers.steps.statistics import (
    clinical_characteristics,
    load_predictions,
    model_statistics,
    survival_statistics,
    write_statistics_figures,
)
from helpers.data.manifest import load_study
from helpers._environment import set_seeds
from helpers.reporting.writer import ReportWriter

cfg = load_config(config_path, task=task or None)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)
manifest, patients = load_study(cfg, check_images=False)
predictions = load_predictions(cfg)"""),
        ("md", "## Table 1: clinical characteristics per cohort and outcome class"),
        ("code", """table_one = clinical_characteristics(patients, manifest, cfg)
if not table_one:
    print("no clinical variables configured (clinical: in the study config)")
for name, table in table_one.items():
    report.table(table, name, per_cohort=False)
    print(name)
    display(table)"""),
        ("md", "## Performance per model and cohort; pairwise DeLong / NRI / IDI; calibration; subgroups"),
        ("code", """tables = model_statistics(predictions, cfg, manifest) if not cfg.survival_only else {}
if cfg.survival_only:
    print("survival-only study (no endpoints.binary): no binary model statistics")
for name, table in tables.items():
    report.table(table, name, per_cohort=False)
    print(name)
    display(table.head(30))"""),
        ("md", """## Survival metrics (C-index, time-dependent AUC per horizon, integrated Brier score)

Per model and cohort (training: out-of-fold); the ablation table (seed Table S4: C-index, AUC, IBS per validation/test
cohort) and the time-dependent AUC per horizon (seed Table S5). Each cohort is evaluated in the time range it
supports: a horizon beyond its follow-up, beyond the training follow-up, or without an event before it is '-' with the
reason in the note column."""),
        ("code", """survival_tables = survival_statistics(predictions, cfg)
if not survival_tables:
    print("no time-to-event endpoint configured: survival metrics skipped")
for name, table in survival_tables.items():
    report.table(table, name, per_cohort=False)
    display(table)"""),
        ("md", "## Figures: ROC, calibration and decision curves per cohort; subgroup forest plots; Rad-score; feature weights"),
        ("code", """if not cfg.survival_only:
    print("\\n".join(write_statistics_figures(predictions, tables, cfg, report)))"""),
    ],
    "07_supplement.ipynb": [
        ("md", """# 07 The supplementary document

Every table and figure the study wrote (from each step's ledger, in step order) is numbered and captioned into one
`supplementary.docx`, one self-contained `supplementary.html` and `supplementary_tables.tex`, with a methods section
generated from the provenance (software versions, preprocessing and extraction settings, feature counts, selection
steps and counts, model settings) and a checklist mapping the outputs to CLEAR and TRIPOD+AI items."""),
        ("parameters", """config_path = "study.yaml"
step = "supplement"
cohort = ''"""),
        ("code", """from IPython.display import display

import pandas as pd

from helpers._environment import set_seeds
from helpers.reporting.writer import ReportWriter
from helpers.settings import load_config
from helpers.steps.supplement import numbered_items, write_supplement, write_task_comparison

cfg = load_config(config_path)
set_seeds(cfg.seed)
report = ReportWriter(cfg, step, cohort or None)"""),
        ("md", "## The tasks side by side (a study with several tasks: each task's final model in the held-out cohorts)"),
        ("code", """comparison = write_task_comparison(cfg, report)
if comparison is None:
    print("one task (endpoints): nothing to compare")
else:
    display(comparison)"""),
        ("md", "## Build the document"),
        ("code", """supplement = write_supplement(cfg, report)
print(f"{supplement.n_tables} tables and {supplement.n_figures} figures")
print("\\n".join(str(p) for p in (supplement.docx, supplement.html, supplement.latex)))"""),
        ("md", "## Numbered items and anything that needs attention (uncaptioned or missing outputs)"),
        ("code", """display(numbered_items(supplement).head(80))
for warning in supplement.warnings:
    print("WARNING:", warning)"""),
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` as an nbformat object (no outputs)."""
    cells = []
    for kind, source in NOTEBOOKS[name]:
        if kind == "md":
            cells.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"  # stable ids keep the file byte-identical across rebuilds
    return nb


def main(check: bool = False) -> int:
    stale = []
    for name in NOTEBOOKS:
        path = ROOT / "notebooks" / name
        text = nbformat.writes(build(name)) + "\n"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"notebooks out of date with tools/build_notebooks.py: {stale}; run python tools/build_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
