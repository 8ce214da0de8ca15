"""Supplementary document: numbering, captions, DOCX/HTML/LaTeX, methods, checklist, determinism, rendering."""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from helpers.reporting.supplement import (
    SupplementWarning,
    build_supplement,
    caption_for,
    checklist_table,
    collect_outputs,
    latex_escape,
    load_supplement_data,
    methods_text,
    validate_supplement_data,
)  # fmt: skip
from helpers.reporting.writer import ReportWriter, read_ledger  # noqa: E402
from helpers.settings.study import load_config  # noqa: E402

from .conftest import REPO, tiny_config  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
NB = str(REPO / "notebooks" / "01_acquisition_qc.ipynb")  # steps are not executed here; any existing notebook path


def _figure(seed: int) -> plt.Figure:
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    ax.plot(rng.normal(size=12), color="tab:blue")
    ax.set_title(f"panel {seed}")
    return fig


def _write_study(root: Path):
    """A small study report: four steps, per-cohort and shared outputs, a long, a wide and an uncaptioned table."""
    cfg_dict = tiny_config(
        root, study="suppl",
        cohorts={"train": {"role": "train", "description": "scanner A"}, "test": {"role": "test", "description": "scanner B"}},
        series={"CT": {"modality": "CT"}, "MR_T1": {"modality": "MR"}},
        preprocessing={"MR_T1": {"resample_mm": [1.5, 1.5, 3.0], "interpolator": "linear", "n4": True}},
        extraction={"presets": ["seed1762"], "rois": {"tumour": {"kind": "tumour"}, "ring3mm": {"kind": "ring", "width_mm": 3}},
                    "series_settings": {"CT": {"binWidth": 20}, "MR_T1": {"binCount": 16}}},
        signature={"preset": "seed1762", "icc": {"icc_type": "ICC(C,1)", "threshold": 0.85, "ci_bound": "lower"},
                   "steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.1}, {"step": "mrmr", "k": 6}]},
        models={"algorithms": ["logistic", "random_forest"], "search": "optuna", "n_trials": 9, "cv": 4, "smote": True,
                "final_algorithm": "random_forest"},
        steps=[{"name": "acquisition_qc", "notebook": NB, "per_cohort": True},
               {"name": "feature_extraction", "notebook": NB, "per_cohort": False},
               {"name": "signature", "notebook": NB, "per_cohort": False, "depends_on": ["feature_extraction"]},
               {"name": "models", "notebook": NB, "per_cohort": False, "depends_on": ["signature"]}],
    )  # fmt: skip
    (root / "study.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    cfg = load_config(root / "study.yaml")
    split = pd.DataFrame({"cohort": ["train", "test", "total"], "role": ["train", "test", ""], "patients": [30, 12, 42],
                          "outcome=0": ["18 (60.0%)", "8 (66.7%)", "26 (61.9%)"], "outcome=1": ["12 (40.0%)", "4 (33.3%)", "16 (38.1%)"]})  # fmt: skip
    for i, cohort in enumerate(cfg.cohorts):
        w = ReportWriter(cfg, "acquisition_qc", cohort)
        w.table(split, "cohort_split_counts", per_cohort=False)  # written by both cohort runs: must appear once
        w.table(pd.DataFrame({"series": ["CT", "MR_T1"], "model": ["a_b 50% R&D", "x#1 {y}"], "slice_mm": [1.25, 3.0],
                              "kvp": [0.123456789, 0.0000123456]}), "acquisition_parameters")  # fmt: skip
        w.figure(_figure(i), "montage_ct")
        w.figure(_figure(10 + i), "montage_mr_t1")
    w = ReportWriter(cfg, "feature_extraction")
    w.table(pd.DataFrame({"category": ["Shape", "First order", "Wavelet", "Total"], "image_type": ["original", "original", "wavelet", ""],
                          "CT tumour": [14, 18, 736, 768], "CT ring3mm": [0, 18, 736, 754]}), "feature_counts_seed1762", per_cohort=False)  # fmt: skip
    wide = pd.DataFrame(np.arange(42 * 30).reshape(42, 30), columns=[f"CT_tumour_f{j}" for j in range(30)],
                        index=pd.Index([f"S{i:02d}" for i in range(42)], name="patient"))  # fmt: skip
    w.data(wide, "features_seed1762")
    w.table(pd.DataFrame(columns=["patient", "series", "roi", "reason"]), "extraction_failures", per_cohort=False)
    w.json({"settings": {}}, "extraction_run")
    w = ReportWriter(cfg, "signature")
    w.table(pd.DataFrame({"series": ["CT", "CT", "Total"], "roi": ["tumour", "ring3mm", ""], "extracted": [768, 754, 1522],
                          "constant": [2, 3, 5], "retained": [700, 500, 1200], "retained_percent": [91.1, 66.3, 78.8]}),
            "icc_retained_counts", per_cohort=False)  # fmt: skip
    w.table(pd.DataFrame({"stage": [0, 1, 2, 3], "step": ["input", "zscore", "univariate", "mrmr"],
                          "rule": ["all features", "z-score", "univariate p < 0.1", "mRMR top k = 6"], "n_features": [1200, 1195, 30, 6],
                          "n_removed": [0, 5, 1165, 24]}), "selection_pathway", per_cohort=False)  # fmt: skip
    w.figure(_figure(20), "lasso_path", per_cohort=False)
    w.text("radscore = 0.5 * CT_tumour_f1 - 1.2 * CT_ring3mm_f2\n", "radscore_formula.txt")
    w = ReportWriter(cfg, "models")
    grid = pd.DataFrame({"block": [f"b{i}" for i in range(55)], "algorithm": ["logistic"] * 55, "cv_auc_mean": np.linspace(0.5, 0.9, 55)})
    w.table(grid, "model_grid", per_cohort=False)
    w.figure(_figure(30), "auc_heatmap_cv", per_cohort=False)
    w.figure(_figure(31), "auc_heatmap_test", per_cohort=False)
    w.table(pd.DataFrame({"x": [1, 2], "y": ["u", "v"]}), "mystery_numbers", per_cohort=False)
    w.artifact({"model": 1}, "models/final_model.joblib")
    prov = {"study": "suppl", "finished_utc": "2000-01-01T00:00:00+00:00", "config_hash": "ab" * 32, "helpers_source_hash": "cd" * 32,
            "git": {"commit": "0123456789abcdef", "dirty": False}, "packages": {"python": "3.11.9", "numpy": "9.9.9", "pyradiomics-bhklab": "3.1.4"}}  # fmt: skip
    (cfg.report_root / "provenance").mkdir(parents=True, exist_ok=True)
    (cfg.report_root / "provenance" / "latest.json").write_text(json.dumps(prov))
    return cfg


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("supplement")
    cfg = _write_study(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_supplement(cfg)
    first = {p.name: p.read_bytes() for p in (result.docx, result.html, result.latex)}
    return cfg, result, first, [str(w.message) for w in caught if issubclass(w.category, SupplementWarning)]


def _ledger_outputs(cfg) -> list[str]:
    out = []
    for step in cfg.steps:
        for cohort in (list(cfg.cohorts) if step.per_cohort else [None]):
            out += [p for p in read_ledger(cfg.report_root, step.name, cohort) if p not in out]
    return out


def test_every_table_and_figure_appears_once_numbered_in_order(study):
    cfg, result, _, _ = study
    items = [it for it in result.items if it.path]  # the generated tables (review points, METRICS, checklist) have no file
    ledger = _ledger_outputs(cfg)
    expected = [p for p in ledger if re.match(r"(tables/.*\.(csv|txt)|figures/.*\.png|features/.*\.csv)$", p)]
    assert [it.path for it in items] == expected  # each once, in step and write order
    assert sum(it.path == "tables/cohort_split_counts.csv" for it in items) == 1
    for kind in ("table", "figure", "note"):
        numbers = [it.number for it in result.items if it.kind == kind]
        assert numbers == list(range(1, len(numbers) + 1))
    steps = [it.step for it in items]
    assert steps == sorted(steps, key=[s.name for s in cfg.steps].index)
    by_name = {(it.kind, it.name): it for it in result.items}
    assert by_name["table", "cohort_split_counts"].label == "Table S1"
    assert by_name["table", "acquisition_parameters_train"].caption == "Acquisition parameters per series and scanner model, train cohort."
    assert by_name["figure", "montage_mr_t1_test"].caption == (
        "Mid-tumour slice of the MR_T1 images with the tumour contour for every patient, test cohort.")
    assert by_name["figure", "auc_heatmap_test"].caption.startswith("AUC in the test cohort")
    assert by_name["figure", "auc_heatmap_cv"].caption.startswith("Cross-validated AUC")
    assert by_name["table", "feature_counts_seed1762"].caption.endswith("(preset seed1762).")
    assert by_name["note", "radscore_formula"].label == "Note S1"
    assert by_name["table", "model_grid"].inline and by_name["table", "model_grid"].n_rows == 55
    assert not by_name["table", "features_seed1762"].inline  # a data table: referenced, not inlined
    assert result.n_figures == 7 and result.n_tables == 13  # 10 ledger tables + review points, METRICS and the checklist
    assert [it.name for it in result.items if not it.path] == ["review_points", "metrics_score", "reporting_checklist"]


def test_uncaptioned_output_gets_generic_caption_and_a_warning(study):
    cfg, result, _, caught = study
    assert result.uncaptioned == ("tables/mystery_numbers.csv",)
    assert any("mystery_numbers" in m for m in caught)
    with pytest.warns(SupplementWarning, match="no caption for tables/mystery_numbers.csv"):
        items = collect_outputs(cfg)
    item = next(it for it in items if it.name == "mystery_numbers")
    assert (item.caption, item.captioned) == ("Mystery numbers.", False)
    assert caption_for("odd_thing_test", cfg, "test") == ("Odd thing, test cohort.", "", False)


def test_docx_opens_with_every_table_and_figure(study):
    from docx import Document

    _, result, _, _ = study
    doc = Document(str(result.docx))
    inlined = [it for it in result.items if it.kind == "table" and it.inline]
    assert len(doc.tables) == len(inlined)
    assert len(doc.inline_shapes) == result.n_figures
    text = "\n".join(p.text for p in doc.paragraphs)
    for it in result.items:
        assert f"{it.label}. {it.caption}" in text
    grid = doc.tables[[it.name for it in inlined].index("model_grid")]
    assert len(grid.rows) == 56  # header + all 55 rows (a headline table is never cut)
    assert [c.text for c in grid.rows[0].cells] == ["Feature block", "Algorithm", "CV AUC, mean"]  # labels, not code names
    assert grid.rows[1].cells[2].text == "0.500" and grid.rows[55].cells[2].text == "0.900"
    assert "Not shown: 42 rows x 31 columns (a data table); full table: features/features_seed1762.csv" in text
    assert doc.core_properties.created.year == 2000


def test_latex_tables_are_balanced_escaped_and_numbered(study):
    _, result, _, _ = study
    tex = result.latex.read_text()
    for env in ("document", "longtable"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") > 0
    unescaped = re.sub(r"\\[{}]", "", tex)
    assert unescaped.count("{") == unescaped.count("}")
    assert r"a\_b 50\% R\&D" in tex and r"x\#1 \{y\}" in tex
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert not any(re.search(r"(?<!\\)[%&_#]", line.replace(" & ", " ").replace(r"\\", "")) for line in body if "\\\\" in line)
    inlined = [it for it in result.items if it.kind == "table" and it.inline]
    assert re.findall(r"\\label\{tab:supp-s(\d+)\}", tex) == [str(it.number) for it in inlined]
    for it in inlined:
        assert f"\\setcounter{{table}}{{{it.number - 1}}}" in tex and f"\\caption{{{latex_escape(it.caption)}}}" in tex
    assert "features_seed1762" not in tex.replace("features/features_seed1762", "")  # referenced tables are not repeated


def test_html_is_self_contained_with_contents(study):
    _, result, _, _ = study
    page = result.html.read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert not re.search(r"<script|<link|@import|url\(|https?://|file:", page)
    assert page.count("<img ") == result.n_figures
    for it in result.items:
        assert page.count(f'id="{it.anchor}"') == 1 and f'href="#{it.anchor}"' in page
        assert f"<b>{it.label}.</b>" in page


def test_rebuild_is_byte_identical(study):
    cfg, _, first, _ = study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupplementWarning)
        again = build_supplement(cfg)
    assert {p.name: p.read_bytes() for p in (again.docx, again.html, again.latex)} == first


def test_methods_text_reads_settings_and_counts(study):
    cfg, result, _, _ = study
    methods = {p.key: p.text for p in methods_text(cfg, items=[it for it in result.items if it.path])}
    text = " ".join(methods.values())
    for expected in (
        "train (model development, 30 patients; scanner A)", "positive in 12 of 30 train patients (40.0%) and 4 of 12 test patients (33.3%)",
        "Python 3.11.9", "numpy 9.9.9", "git commit 0123456789ab", "One random seed (7)",
        "MR T1 images were resampled to 1.5 x 1.5 x 3 mm voxels with linear interpolation", "corrected for bias field with N4",
        "CT images were kept on their native voxel grid",
        "PyRadiomics 3.1.4 (pyradiomics-bhklab build)", "a 3 mm peritumoral ring outside the tumour (ring3mm; without shape features)",
        "a fixed bin width of 20 for CT", "a fixed bin count of 16 for MR T1", "CT: tumour 768, ring3mm 754; 1522 in total",
        "No extraction unit failed",
        "ICC(C,1)", "lower bound of the 95% confidence interval", "0.85", "Of 1522 features with a second reading, 5 were constant and 1200 (78.8%)",
        "features with p < 0.1 kept", "top 6 features", "started from 1200 features", "30 after the univariate filter",
        "6 after mRMR", "2 algorithms (logistic regression and random forest)", "SMOTE", "4-fold cross-validation", "seed 7",
        "Optuna TPE search of 9 trials",
    ):  # fmt: skip
        assert expected in text, expected
    assert "(Table S1)" in methods["cohorts"]


def test_checklist_maps_items_to_numbers_sections_and_gaps(study):
    cfg, result, _, _ = study
    items = [it for it in result.items if it.path]
    rows = {(r["guideline"], r["item"]): r["addressed"] for r in checklist_table(cfg, items, methods_text(cfg, items=items), ["models/final_model.joblib"])}
    texts = {(r["guideline"], r["item"]): r["topic"] for r in checklist_table(cfg, items)}
    assert len(rows) == 58 + 52
    assert texts["CLEAR", "24"] == "Image types (original, filtered, transformed)"
    assert rows["CLEAR", "15"].startswith("Reported: Table S1; Methods (Cohorts and outcome")
    assert rows["CLEAR", "17"] == "Not applicable: no clinical variables are configured (radiomic predictors only)"
    assert rows["CLEAR", "20"] == "For the authors to complete"
    assert rows["CLEAR", "57"] == "For the authors to complete (material from this run: models/final_model.joblib)"
    assert rows["TRIPOD+AI", "13"] == "Reported: Methods (Models)"
    assert rows["TRIPOD+AI", "22"].startswith("Reported: Note S1") and rows["TRIPOD+AI", "22"].endswith("file models/final_model.joblib")
    tables = [it for it in result.items if it.name == "reporting_checklist"]
    assert len(tables) == 1 and tables[0].label == f"Table S{result.n_tables}"
    page = result.html.read_text()
    assert "Points a reviewer will raise" in page and "METRICS" in page and "For the authors to complete" in page


@pytest.mark.slow
def test_html_renders_in_headless_chromium(study, tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is missing ({CHROMIUM}); run `make browser` to install it (Debian package chromium)")
    _, result, _, _ = study
    page = result.html.read_text()
    probe = ("<script>window.addEventListener('load',function(){var n=0;for(var i=0;i<document.images.length;i++){var im=document.images[i];"
             "if(im.complete&&im.naturalWidth>0){n++;}}var d=document.createElement('div');d.id='probe';d.textContent='IMAGES_LOADED='+n;"
             "document.body.appendChild(d);});</script>")  # fmt: skip
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe + "</body>"))
    base = [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"IMAGES_LOADED=(\d+)", dom.stdout)
    assert found, f"no probe output from Chromium: {dom.stderr[-2000:]}"
    assert int(found.group(1)) == result.n_figures
    shot = tmp_path / "shot.png"
    subprocess.run([*base, "--window-size=1000,1400", f"--screenshot={shot}", result.html.as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        gray = np.asarray(im.convert("L"))
    assert gray.shape == (1400, 1000)
    assert (gray < 128).mean() > 0.005 and (gray > 240).mean() > 0.3  # text on a white page, not blank


def test_real_study_captions_cover_the_notebook_outputs():
    """Every name the shipped notebooks write has a caption (the generic one is only a fallback)."""
    cfg = load_config(REPO / "study.yaml")
    names = ["cohort_split_counts", "acquisition_parameters_training", "image_mask_qc_external_test", "montage_pet_training",
             "montage_ct_p2_external_test", "habitat_calinski_harabasz", "habitat_fractions", "habitat_fractions_per_patient",
             "ith_scores_by_k", "habitat_map_examples", "ibsi_phantom_compliance", "ibsi_phantom_unmapped", "ibsi_compliance_summary",
             "ibsi_deviations", "ibsi_ct_phantom_diagnostics", "ibsi_ct_phantom_compliance", "ibsi_ct_phantom_unmapped", "feature_counts_seed1762",
             "extraction_failures", "extraction_diagnostics", "features_seed1762", "features_seed1762_reader2",
             "features_dropped_missing_values", "icc_per_feature", "icc_retained_counts", "combat_batches_mr_t1", "combat_diagnostics_ct",
             "selection_pathway", "lasso_path", "lasso_cv", "radscore_coefficients", "radscore_formula", "radscores", "modelling_features",
             "model_grid", "auc_heatmap_cv", "auc_heatmap_external_test", "final_model_summary", "fusion_models", "predictions_final_model",
             "shap_beeswarm", "shap_bar", "shap_waterfall_example", "roc_external_test", "calibration_training", "decision_curve_training",
             "performance", "pairwise_comparison", "table_one", "survival_metrics", "model_predictions", "calibration", "roc_curves",
             "radscore_distribution", "feature_weights", "subgroup_performance_mr_t1_model", "subgroup_forest_mr_t1_model",
             "table_one_by_cohort", "table_one_by_outcome_training", "interobserver_agreement", "clinical_model_coefficients",
             "nomogram", "nomogram_points", "nomogram_coefficients", "survival_predictions", "cox_coefficients", "survival_risk_cutoffs",
             "km_cox_external_test", "segmentation_dice", "segmentation_dice_per_patient", "segmentation_summary",
             "segmentation_training_history", "deep_features", "deep_feature_pca", "deep_classifier_auc", "deep_classifier_loss_ct",
             "gradcam_mr_t1"]  # fmt: skip
    missing = [n for n in names if not caption_for(n, cfg)[2]]
    assert not missing
    assert caption_for("montage_ct_p2_external_test", cfg)[0].endswith("external test cohort (page 2).")
    assert caption_for("combat_batches_mr_t1", cfg)[0].startswith("ComBat harmonisation of the MR_T1 features")
    assert caption_for("subgroup_forest_mr_t1_model", cfg)[0] == "AUC with 95% confidence interval in subgroups of MR_T1 model (forest plot)."
    assert caption_for("km_rsf_training", cfg)[0] == "Kaplan-Meier curves of the predicted risk groups (rsf model), training cohort."


def test_package_data_and_subpackages_are_installed():
    """A non-editable install ships every subpackage and every data file under helpers/ (supplement.yaml, presets)."""
    import fnmatch
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert fnmatch.fnmatch("helpers.reporting.supplement", setup["packages"]["find"]["include"][0])
    patterns = [pat for pats in setup["package-data"].values() for pat in pats]
    data = [p for p in (REPO / "helpers").rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts]
    assert any(p.name == "supplement.yaml" for p in data)

    def relative_to_package(path):  # package-data patterns are relative to the nearest package
        parent = path.parent
        while not (parent / "__init__.py").exists():
            parent = parent.parent
        return path.relative_to(parent).as_posix()

    def shipped(rel):  # glob semantics: "*" does not cross "/"
        return any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns)

    assert [p for p in data if not shipped(relative_to_package(p))] == []


def test_missing_and_pdf_only_outputs_are_reported_not_dropped(tmp_path):
    cfg_dict = tiny_config(tmp_path, steps=[{"name": "acquisition_qc", "notebook": NB, "per_cohort": False},
                                            {"name": "models", "notebook": NB, "per_cohort": False}])  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    cfg = load_config(tmp_path / "study.yaml")
    w = ReportWriter(cfg, "acquisition_qc")
    (cfg.report_root / "figures").mkdir(parents=True)
    (cfg.report_root / "figures" / "only_vector.pdf").write_bytes(b"%PDF-1.4\n")
    w.record(cfg.report_root / "figures" / "only_vector.pdf")
    w.record(cfg.report_root / "tables" / "gone.csv")  # recorded, then deleted
    with pytest.warns(SupplementWarning) as record:
        result = build_supplement(cfg)
    messages = " | ".join(str(r.message) for r in record)
    assert "tables/gone.csv is recorded by step acquisition_qc but missing" in messages
    assert "figures/only_vector.pdf (step acquisition_qc) has no .png version" in messages
    assert "step models has no recorded outputs" in messages
    assert result.n_figures == 0 and result.n_tables == 3  # only the generated tables: review points, METRICS, checklist
    assert "figures/only_vector.pdf" in result.html.read_text()


def test_supplement_data_is_validated():
    data = load_supplement_data()
    assert data["captions"] and "checklists" not in data  # the checklists live in checklists.yaml (tests/test_checklists.py)
    with pytest.raises(ValueError, match="captions"):
        validate_supplement_data({"captions": [{"pattern": "x", "captoin": "typo"}]})
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\) \['checklists'\].*checklists.yaml"):
        validate_supplement_data({"captions": [], "checklists": [{"name": "CLEAR", "items": []}]})
