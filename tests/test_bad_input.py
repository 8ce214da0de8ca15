"""The bad-input battery (issue 7): one test per kind of broken input.

Each case builds the broken input in a temporary copy of the tiny study and
checks (a) the specific exception type, (b) that the message names the
patient (and row/column/key where there is one) and (c) that it says how to
fix it. Image and manifest problems are found by validation
(``load_study`` = ``python -m helpers validate``), before any long step.

The second part (issue "validation that catches what users actually get
wrong") covers patient ids (table vs manifest both ways, whitespace, leading
zeros, file-name safety), continuous clinical variables holding text,
declared cohorts/series without rows, one image or mask for two patients
(leakage), masks of another patient (NIfTI grid, RTSTRUCT references), 4D and
single-slice images, too small masks, CSV dialects (semicolon, tab, decimal
commas, BOM + CRLF, Latin-1), swapped image/mask columns, cohort names and a
time-to-event-only study (issue 15: accepted with survival selection steps;
binary-only steps, zero/missing times, no training event, horizons beyond the
training follow-up are specific errors); every
message line stays under 300 characters.

The third part (issue 15, "Feature tables in") covers supplied feature tables
(``feature_tables:``): missing/unreadable files, id and cohort columns,
duplicate or unknown patients, non-numeric, infinite and empty values,
cohort conflicts, a block in two tables, block prefixes and second readings;
each gives one line naming the file, row, patient, column and fix.

Related cases covered elsewhere (not repeated here): every manifest problem
reported at once and sha256 mismatches (test_manifest.py), RTSTRUCT structure
errors (test_io.py), NaN/infinite prediction and label inputs of the
statistics (test_stats.py), failed units not being cached and re-run after a
fix (test_extraction.py::test_failing_unit_is_reported_and_others_complete).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml

from helpers.data.manifest import load_patient_table, load_study
from helpers.errors import ConfigError, ImageReadError, ManifestError
from helpers.features.pyradiomics import extract_features
from helpers.imaging.io import read_image
from helpers.settings.study import load_config

from .conftest import write_volume

REPO = Path(__file__).resolve().parents[1]
SHAPE = (10, 16, 12)  # z, y, x of the tiny study's volumes
ROWS = {("P01", "CT"): 1, ("P01", "MR"): 2, ("P02", "CT"): 3, ("P02", "MR"): 4,
        ("P03", "CT"): 5, ("P03", "MR"): 6, ("P04", "CT"): 7, ("P04", "MR"): 8}


# -- helpers -------------------------------------------------------------------------------------------------
def _validate(study: Path) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        load_study(load_config(study / "study.yaml"))
    return err.value


def _assert_issue(err: ManifestError, *, patient: str | None, column: str, text: str, fix: str, row: int | None = None):
    """The error holds an issue for this patient/column whose problem has ``text`` and whose fix has ``fix``."""
    found = [i for i in err.issues if i.patient == patient and i.column == column and text in i.problem]
    assert found, f"no issue ({patient}, {column}, '{text}') in:\n{err}"
    issue = found[0]
    assert fix in issue.fix, f"fix of {issue} does not say '{fix}'"
    assert len(str(issue)) <= 300, f"message line of {len(str(issue))} characters: {issue}"  # one short line per problem
    if row is not None:
        assert issue.row == row
    message = str(err)
    assert "nothing was run" in message and f"-> fix: {issue.fix}" in message
    if patient is not None:
        assert f"patient {patient}" in message
    if issue.row is not None:
        assert f"row {issue.row}" in message
    return issue


def _set_manifest(study: Path, patient: str, series: str, **values) -> None:
    df = pd.read_csv(study / "manifest.csv", dtype=str, keep_default_na=False)
    sel = (df["patient"] == patient) & (df["series"] == series)
    for col, value in values.items():
        df.loc[sel, col] = value
    df.to_csv(study / "manifest.csv", index=False)


def _edit_config(study: Path, **changes) -> None:
    data = yaml.safe_load((study / "study.yaml").read_text())
    data.update(changes)
    (study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _tumour_mask(value: int = 1) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[3:7, 5:10, 4:8] = value
    return m


def _image() -> np.ndarray:
    return np.random.default_rng(1).normal(40, 10, size=SHAPE).astype(np.int16)


def _write_dicom_series(folder: Path, array: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> Path:
    """A CT series of one DICOM file per slice, on the grid of the tiny study (origin 0, identity direction)."""
    folder.mkdir(parents=True)
    uid = "1.2.826.0.1.3680043.8.498.1762"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        s = sitk.GetImageFromArray(array[k])
        s.SetSpacing(spacing[:2])
        tags = {"0008|0060": "CT", "0020|000d": f"{uid}.1", "0020|000e": f"{uid}.2", "0008|0018": f"{uid}.3.{k}",
                "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{k * spacing[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2])}
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)
    return folder


# -- images ----------------------------------------------------------------------------------------------------
def test_missing_image_file(tiny_study):
    _set_manifest(tiny_study, "P02", "MR", image="P02/MR_image_typo.nii.gz")
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column="image", row=4, text="file not found: P02/MR_image_typo.nii.gz", fix="correct the path")


def test_unreadable_image_random_bytes(tiny_study):
    (tiny_study / "P03" / "CT_image.nii.gz").write_bytes(np.random.default_rng(0).bytes(3000))
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient="P03", column="image", row=5, text="cannot read image", fix="replace the file")
    assert "CT_image.nii.gz" in issue.problem


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti(tiny_study, suffix):
    # A valid header whose voxel data are cut: SimpleITK alone would silently fill the rest with zeros.
    path = write_volume(tiny_study / "P01" / f"MR_image{suffix}", _image())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _set_manifest(tiny_study, "P01", "MR", image=f"P01/MR_image{suffix}")
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient="P01", column="image", row=2, text="is truncated or corrupt", fix="re-export")
    assert f"MR_image{suffix}" in issue.problem


@pytest.mark.parametrize("damage", ["not DICOM", "no pixel data", "slice missing"])
def test_corrupt_dicom_series(tiny_study, damage):
    folder = _write_dicom_series(tiny_study / "P01" / "CT_dicom", _image())
    (folder / "README.txt").write_text("exported by the PACS")  # a non-DICOM side file is ignored
    _set_manifest(tiny_study, "P01", "CT", image="P01/CT_dicom")
    load_study(load_config(tiny_study / "study.yaml"))  # the intact series (same grid as its mask) is valid
    victim = folder / "slice004.dcm"
    if damage == "not DICOM":
        victim.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "no pixel data":
        ds = pydicom.dcmread(victim)
        del ds.PixelData
        ds.save_as(victim)
    else:
        victim.unlink()
    err = _validate(tiny_study)
    if damage == "slice missing":
        issue = _assert_issue(err, patient="P01", column="image", row=1, text="not evenly spaced", fix="re-export")
        assert "4.000 mm between slice003.dcm and slice005.dcm, 2.000 mm elsewhere" in issue.problem
    else:
        issue = _assert_issue(err, patient="P01", column="image", row=1, text="not readable slices of the series", fix="re-export")
        assert "(slice004.dcm)" in issue.problem and "re-export the complete series" in issue.problem


@pytest.mark.parametrize(
    ("geometry", "text"),
    [
        ({"spacing": (1.0, 1.0, 3.0)}, "mask spacing (1.0, 1.0, 3.0) differs from image spacing (1.0, 1.0, 2.0)"),
        ({"origin": (0.0, 0.0, 4.0)}, "mask origin is 4.00 mm from the image origin"),
        ({"shape": (10, 16, 11)}, "mask size (11, 16, 10) differs from image size (12, 16, 10)"),
    ],
    ids=["spacing", "origin", "size"],
)
def test_image_mask_geometry_mismatch(tiny_study, geometry, text):
    mask = np.zeros(geometry.get("shape", SHAPE), dtype=np.uint8)
    mask[3:7, 5:10, 4:8] = 1
    write_volume(tiny_study / "P03" / "MR_mask.nii.gz", mask, spacing=geometry.get("spacing", (1.0, 1.0, 2.0)),
                 origin=geometry.get("origin", (0.0, 0.0, 0.0)))
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient="P03", column="mask", row=6, text="image/mask geometry mismatch", fix="resample the mask onto its image grid")
    assert text in issue.problem


def test_empty_mask(tiny_study):
    write_volume(tiny_study / "P04" / "CT_mask.nii.gz", np.zeros(SHAPE, dtype=np.uint8))
    err = _validate(tiny_study)
    _assert_issue(err, patient="P04", column="mask", row=7, text="mask is empty", fix="segment the tumour or remove the row")


def test_all_ones_mask(tiny_study):
    # No background: a peritumoral ring is impossible and the mask is almost surely an inverted/mis-converted one.
    write_volume(tiny_study / "P02" / "CT_mask.nii.gz", np.ones(SHAPE, dtype=np.uint8))
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient="P02", column="mask", row=3, text="mask covers the whole image", fix="background 0")
    assert "peritumoral ring" in issue.problem


def test_mask_label_not_in_config(tiny_study):
    write_volume(tiny_study / "P02" / "MR_mask.nii.gz", _tumour_mask(3))
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column="mask", row=4, text="label value(s) [3] are not in the config labels [1]", fix="relabel the mask")


def test_extraction_label_absent_from_mask(tiny_study):
    # The MR extraction reads label 2 (the enhancing core); P04's MR mask only has the whole tumour (1).
    _edit_config(tiny_study, labels={"tumour": 1, "core": 2}, extraction={"series_settings": {"MR": {"label": 2}}})
    for patient in ("P01", "P02", "P03"):
        mask = _tumour_mask(1)
        mask[3:6, 6:9, 5:8] = 2  # a 3x3x3 core: the smallest region qc.min_mask_voxels (27) accepts
        write_volume(tiny_study / patient / "MR_mask.nii.gz", mask)
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P04", column="mask", row=8, text="mask has no voxel with label [2]", fix="relabel the mask")
    assert "series 'MR'" in issue.problem and "labels present: [1]" in issue.problem
    assert "extraction.series_settings.MR.label" in issue.fix


@pytest.mark.parametrize(("suffix", "dtype"), [(".nii.gz", np.float32), (".nii", np.float64), (".nrrd", np.float32)])
def test_nan_and_inf_voxels(tiny_study, suffix, dtype):
    image = _image().astype(dtype)
    image[4, 6, 5] = np.nan
    image[5, 6, 5] = np.inf
    image[0, 0, 0] = -np.inf
    write_volume(tiny_study / "P03" / f"CT_image{suffix}", image)
    _set_manifest(tiny_study, "P03", "CT", image=f"P03/CT_image{suffix}")
    err = _validate(tiny_study)
    # (SimpleITK's NIfTI reader silently turns NaN/inf into 0: the stored voxels are checked.)
    _assert_issue(err, patient="P03", column="image", row=5, text="1 NaN and 2 infinite voxel(s)", fix="re-export the image without NaN/inf")
    # Were such an image to reach the extraction anyway, the unit fails with the same diagnosis (not a pyradiomics crash).
    with pytest.raises(ValueError, match="1 NaN and 2 infinite voxel.*re-export the image"):
        extract_features(sitk.GetImageFromArray(image), sitk.GetImageFromArray(_tumour_mask()),
                         {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean"]}, "setting": {"binWidth": 10}})


# -- manifest rows ---------------------------------------------------------------------------------------------
def test_duplicate_patient_row(tiny_study):
    df = pd.read_csv(tiny_study / "manifest.csv")
    pd.concat([df, df.iloc[[2]]]).to_csv(tiny_study / "manifest.csv", index=False)  # P02 CT listed twice
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column="series", row=9, text="duplicate patient/series 'CT' (also row 3)", fix="keep one row per patient and series")


def test_patient_in_two_cohorts(tiny_study):
    _set_manifest(tiny_study, "P03", "MR", cohort="train")
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient="P03", column="cohort", row=5, text="patient is in 2 cohorts ['test', 'train']", fix="exactly one cohort")
    assert "rows [5, 6]" in issue.problem


# -- patient table and endpoints -------------------------------------------------------------------------------
def test_training_cohort_with_a_single_class_stops_at_validation(tiny_study):
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 0, 0, 1]}).to_csv(tiny_study / "patients.csv", index=False)
    load_study(load_config(tiny_study / "study.yaml"))  # a QC-only study fits nothing on the outcome: allowed
    steps = yaml.safe_load((tiny_study / "study.yaml").read_text())["steps"]
    _edit_config(tiny_study, steps=[*steps, {"name": "models", "notebook": str(REPO / "notebooks" / "05_models.ipynb"), "per_cohort": False}])
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient=None, column="outcome", text="training cohort 'train' has a single class of 'outcome'",
                          fix="add patients with 'outcome' = 1 to the training cohort")
    assert "all 2 patients (P01, P02) are 0" in issue.problem and "no model can be fitted" in issue.problem


def test_too_few_training_patients_of_a_class_for_the_cv_folds_stops_at_validation(tiny_study):
    # Found at validation, before extraction: the signature's 5-fold LASSO would fail after it (a simulated 30-patient
    # three-cohort study left 4 positives in training and stopped in notebook 04).
    ids = [f"P{i:02d}" for i in range(1, 5)]
    pd.DataFrame({"patient": ids, "outcome": [0, 1, 0, 1]}).to_csv(tiny_study / "patients.csv", index=False)
    steps = yaml.safe_load((tiny_study / "study.yaml").read_text())["steps"]
    _edit_config(tiny_study, steps=[*steps, {"name": "signature", "notebook": str(REPO / "notebooks" / "04_signature.ipynb"), "per_cohort": False}],
                 models={"cv": 3})
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient=None, column="outcome", text="has 1 patients with 'outcome' = 0: 5-fold stratified cross-validation",
                          fix="add training patients with 'outcome' = 0")
    assert "signature.steps step 5 (lasso) cv" in issue.problem  # the default signature's LASSO asks for 5 folds, more than models.cv


def test_model_fitting_on_a_single_class_gives_a_clear_error():
    # The library-level guard behind validation: the message says what is wrong and where to look.
    from helpers.learning.models import build_pipeline, make_classifier, tune

    X = pd.DataFrame({"f": np.arange(8.0)}, index=[f"P{i}" for i in range(8)])
    with pytest.raises(ValueError, match=r"single class \(8 patients, all 0\).*check the training cohort and the outcome column"):
        tune(build_pipeline([], make_classifier("logistic")), X, pd.Series(0, index=X.index), search="none")


def test_test_cohort_with_a_single_class_reports_auc_undefined(tiny_study):
    from helpers.stats import pairwise_comparison_table, performance_table

    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, 0, 0]}).to_csv(tiny_study / "patients.csv", index=False)
    load_study(load_config(tiny_study / "study.yaml"))  # a one-class TEST cohort is valid input
    rng = np.random.default_rng(0)
    rows = []
    for model in ("a", "b"):
        for cohort, ys in (("train", [0, 1] * 10), ("test", [0] * 12)):
            for i, y in enumerate(ys):
                rows.append({"model": model, "patient": f"{cohort}{i}", "cohort": cohort, "outcome": y,
                             "probability": float(rng.uniform()), "threshold": 0.5})
    predictions = pd.DataFrame(rows)
    perf = performance_table(predictions, n_bootstrap=100).set_index(["model", "cohort"])
    assert np.isnan(perf.loc[("a", "test"), "auc"]) and np.isfinite(perf.loc[("a", "train"), "auc"])
    assert "only one outcome class (0 events of 12): AUC undefined" in perf.loc[("a", "test"), "note"]
    assert "Sensitivity" in perf.loc[("a", "test"), "note"]  # sensitivity has no events to count: undefined, not 0
    pairs = pairwise_comparison_table(predictions).set_index("cohort")
    assert np.isnan(pairs.loc["test", "delong_p"]) and "comparison undefined" in pairs.loc["test", "note"]


def test_patient_missing_from_the_patient_table(tiny_study):
    pd.DataFrame({"patient": ["P01", "P02", "P04"], "outcome": [0, 1, 1]}).to_csv(tiny_study / "patients.csv", index=False)
    err = _validate(tiny_study)
    _assert_issue(err, patient="P03", column="patient", text="no row in the patient table", fix="add the patient's clinical/endpoint row")


def test_missing_endpoint_value(tiny_study):
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, None, 1]}).to_csv(tiny_study / "patients.csv", index=False)
    err = _validate(tiny_study)
    _assert_issue(err, patient="P03", column="outcome", row=3, text="endpoint value is missing", fix="fill it in (0 or 1)")


# -- study config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extraction": {"workerz": 2}}, "extraction.workerz: unknown key; remove it or check its spelling"),
        ({"qc": {"montage_columns": "eight"}}, "qc.montage_columns: Input should be a valid integer, unable to parse string as an integer (got 'eight')"),
        ({"cohorts": {"train": {"role": "training"}}}, "cohorts.train.role: Input should be 'train', 'validation' or 'test' (got 'training')"),
        ({"seed": [1, 2]}, "seed: Input should be a valid integer"),
    ],
    ids=["unknown key", "wrong type", "not an allowed value", "list for a number"],
)
def test_study_config_unknown_key_or_wrong_type(tiny_study, change, expected):
    _edit_config(tiny_study, **change)
    with pytest.raises(ConfigError) as err:
        load_config(tiny_study / "study.yaml")
    assert expected in str(err.value)
    assert str(tiny_study / "study.yaml") in str(err.value)


def test_validate_command_reports_and_exits_2(tiny_study):
    # The command line shows the same message and runs nothing.
    write_volume(tiny_study / "P04" / "CT_mask.nii.gz", np.zeros(SHAPE, dtype=np.uint8))
    proc = subprocess.run([sys.executable, "-m", "helpers", "validate", "--config", str(tiny_study / "study.yaml")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2
    assert "row 7, patient P04, column 'mask': mask is empty" in proc.stderr and "-> fix: segment the tumour" in proc.stderr


# -- feature tables --------------------------------------------------------------------------------------------
def test_constant_feature_is_dropped_with_a_record():
    from helpers.learning.selection import build_selector, selection_pathway

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(30, 4)), columns=["a", "b", "c", "flat"], index=[f"P{i:02d}" for i in range(30)])
    X["flat"] = 7.0
    y = pd.Series((X["a"] + rng.normal(0, 0.5, 30) > 0).astype(int), index=X.index)
    selector = build_selector([{"step": "zscore"}, {"step": "univariate", "p_threshold": 1.0}]).fit(X, y)
    scaler = selector.steps[0][1]
    assert scaler.dropped_ == {"flat": "constant in training data (value 7)"}
    pathway = selection_pathway(selector)
    assert pathway.loc[1, "n_removed"] == 1 and "dropped 1 constant" in pathway.loc[1, "rule"]


def test_all_nan_feature_is_reported_by_name(tiny_study):
    from helpers.learning.selection import ZScoreScaler
    from helpers.steps.signature import load_study_features

    cfg = load_config(tiny_study / "study.yaml")
    _, patients = load_study(cfg)
    table = pd.DataFrame({"cohort": ["train", "train", "test", "test"], "CT_tumour_original_firstorder_Mean": [1.0, 2.0, 3.0, 4.0],
                          "CT_tumour_original_glcm_Contrast": np.nan}, index=pd.Index(["P01", "P02", "P03", "P04"], name="patient"))
    folder = cfg.report_root / "features"
    folder.mkdir(parents=True)
    table.to_parquet(folder / "features_seed1762.parquet")
    data = load_study_features(cfg, patients)
    dropped = data.dropped_missing.set_index("feature")
    assert dropped.loc["CT_tumour_original_glcm_Contrast", ["missing_train", "missing_test"]].tolist() == [2, 2]
    assert list(data.features.columns) == ["CT_tumour_original_firstorder_Mean"]
    assert list(data.features.index) == ["P01", "P02", "P03", "P04"]  # no patient is dropped
    # Given directly to the selection, an all-NaN column is named (on_nan='raise') or dropped with its reason.
    with pytest.raises(ValueError, match=r"CT_tumour_original_glcm_Contrast.*\['P01', 'P02'\].*ZScoreScaler\(on_nan='drop'\)"):
        ZScoreScaler().fit(table.drop(columns="cohort").loc[["P01", "P02"]])
    scaler = ZScoreScaler(on_nan="drop").fit(table.drop(columns="cohort"))
    assert scaler.dropped_ == {"CT_tumour_original_glcm_Contrast": "all values missing"}


# -- a unit failing during extraction --------------------------------------------------------------------------
def test_failing_extraction_unit_keeps_the_others_and_is_listed_downstream(tiny_study, tmp_path):
    from helpers.features.extraction import plan_units, run_extraction
    from helpers.steps.signature import load_study_features

    preset = tiny_study / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Median"]},
                                      "setting": {"binWidth": 10, "label": 1}}))
    _edit_config(tiny_study, extraction={"presets": [str(preset)], "rois": {"tumour": {"kind": "tumour"}}},
                 signature={"preset": str(preset)})
    cfg = load_config(tiny_study / "study.yaml")
    manifest, patients = load_study(cfg)
    # After validation, P02's MR mask is replaced by one without the extracted label (e.g. re-exported meanwhile).
    write_volume(tiny_study / "P02" / "MR_mask.nii.gz", _tumour_mask(2))
    cache = tmp_path / "cache"
    result = run_extraction(plan_units(manifest, cfg), cache, progress=False)
    assert result.status_counts() == {"computed": 7, "cached": 0, "failed": 1, "empty": 0}
    (failure,) = result.failures_table().to_dict("records")
    assert (failure["patient"], failure["series"], failure["roi"]) == ("P02", "MR", "tumour")
    assert "patient P02, series MR, ROI tumour" in failure["reason"] and "no voxel of the mask has label 1" in failure["reason"]
    assert "labels present: [2]" in failure["reason"]
    assert len(list(cache.rglob("*.json"))) == 7  # every other unit's result is cached intact
    rerun = run_extraction(plan_units(manifest, cfg), cache, progress=False)
    assert rerun.status_counts() == {"computed": 0, "cached": 7, "failed": 1, "empty": 0}
    table = result.features_table("tiny")
    pd.testing.assert_frame_equal(table, rerun.features_table("tiny"))
    assert table.loc["P02", ["MR_tumour_original_firstorder_Mean", "MR_tumour_original_firstorder_Median"]].isna().all()
    assert table.drop(index="P02").notna().all().all() and table.loc["P02", "CT_tumour_original_firstorder_Mean"] > 0
    folder = cfg.report_root / "features"
    folder.mkdir(parents=True)
    table.to_parquet(folder / "features_tiny.parquet")
    data = load_study_features(cfg, patients)
    assert "P02" in data.features.index  # the patient is kept; the incomplete features are listed
    dropped = data.dropped_missing.set_index("feature")
    assert sorted(dropped.index) == ["MR_tumour_original_firstorder_Mean", "MR_tumour_original_firstorder_Median"]
    assert dropped["missing_train"].tolist() == [1, 1] and dropped["missing_test"].tolist() == [0, 0]


def test_read_image_error_names_the_file_and_the_fix(tmp_path):
    # Direct read of a missing file (what a notebook does for one patient): the path and the fix are in the message.
    with pytest.raises(ImageReadError, match=r"image not found: .*P09_CT\.nii\.gz; check the path in the manifest"):
        read_image(tmp_path / "P09_CT.nii.gz")


# == what users actually get wrong (validation issue) ===============================================================
PATIENTS = ["P01", "P02", "P03", "P04"]


def _write_table(study: Path, **columns) -> None:
    pd.DataFrame(columns).to_csv(study / "patients.csv", index=False)


def _rename_patient(study: Path, old: str, new: str, table: bool = True) -> None:
    """Give patient ``old`` the id ``new`` in the manifest (and the patient table); the files stay where they are."""
    df = pd.read_csv(study / "manifest.csv", dtype=str, keep_default_na=False)
    df.loc[df["patient"] == old, "patient"] = new
    df.to_csv(study / "manifest.csv", index=False)
    if table:
        _write_table(study, patient=[new if p == old else p for p in PATIENTS], outcome=[0, 1, 0, 1])


def _cli_validate(study: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers", "validate", "--config", str(study / "study.yaml")], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUTF8": "1"}, timeout=180)


# -- patient table vs manifest -----------------------------------------------------------------------------------------
def test_table_id_differs_only_by_surrounding_spaces(tiny_study):
    (tiny_study / "patients.csv").write_text("patient,outcome\n P01 ,0\nP02,1\nP03,0\nP04,1\n", encoding="utf-8")
    notes: list = []
    with pytest.raises(ManifestError) as err:
        load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    (issue,) = err.value.issues
    _assert_issue(err.value, patient="P01", column="patient",
                  text="patient ' P01 ' of the patient table differs from manifest patient 'P01' only by surrounding spaces",
                  fix="remove the spaces in the patient table")
    assert notes == []  # ' P01 ' is the near match named above, not also listed as a patient without images


def test_manifest_id_with_surrounding_spaces(tiny_study):
    # The manifest's paths are stripped, its ids are not: 'P02 ' is reported, not silently made 'P02'.
    df = pd.read_csv(tiny_study / "manifest.csv", dtype=str, keep_default_na=False)
    df.loc[(df["patient"] == "P02") & (df["series"] == "CT"), "patient"] = "P02 "
    df.to_csv(tiny_study / "manifest.csv", index=False)
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P02 ", column="patient", row=3, text="patient id 'P02 ' has surrounding spaces", fix="remove the spaces around the id")


def test_numeric_looking_ids_stay_text(tiny_study):
    _rename_patient(tiny_study, "P01", "007")
    _, patients = load_study(load_config(tiny_study / "study.yaml"))
    assert "007" in patients.index and 7 not in patients.index  # never read as the number 7
    _write_table(tiny_study, patient=["7", "P02", "P03", "P04"], outcome=[0, 1, 0, 1])  # a spreadsheet dropped the zeros
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="007", column="patient", text="patient '7' of the patient table differs from manifest patient '007' only by leading zeros",
                  fix="format the id column as text")
    assert "ids are compared as text" in issue.problem


@pytest.mark.parametrize(
    ("pid", "reason"),
    [("P/01", "contains '/' (a path separator)"), ("P\\01", "contains '\\' (a path separator)"), ("P 01", "contains a space"),
     (".P01", "starts or ends with '.'"), ("P\u00e901", "contains '\u00e9'")],
    ids=["slash", "backslash", "space", "leading dot", "non-ASCII"],
)
def test_patient_id_unsafe_as_a_file_name(tiny_study, pid, reason):
    _rename_patient(tiny_study, "P01", pid)
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=pid, column="patient", row=1, text=f"patient id {pid!r} {reason}: ids name output files", fix="use letters, digits, '_', '-' and '.' only")


def test_table_rows_without_images_are_listed_not_silent(tiny_study):
    _write_table(tiny_study, patient=[*PATIENTS, "P05", "P06"], outcome=[0, 1, 0, 1, 0, 1])
    notes: list = []
    _, patients = load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    assert len(patients) == 6  # not an error: the table may hold more patients than the imaging study
    (note,) = notes
    assert "2 patient(s) of the patient table have no image in the manifest and are not analysed: P05, P06" in str(note)
    proc = _cli_validate(tiny_study)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: 8 images of 4 patients") and "note: column 'patient': 2 patient(s) of the patient table" in proc.stdout


# -- clinical variables ---------------------------------------------------------------------------------------------------
def test_continuous_clinical_variable_holding_text(tiny_study):
    _edit_config(tiny_study, clinical={"continuous": ["age"], "categorical": ["grade"]})
    _write_table(tiny_study, patient=PATIENTS, outcome=[0, 1, 0, 1], age=["63 y", "55", "", "unknown"], grade=["G1", "G2", "x", "G3"])
    err = _validate(tiny_study)
    assert len(err.issues) == 2  # the empty age is a missing value (imputed later), not an error
    _assert_issue(err, patient="P01", column="age", row=1, text="clinical variable 'age' is declared continuous but holds text '63 y'",
                  fix="write a number (leave the cell empty when unknown)")
    _assert_issue(err, patient="P04", column="age", row=4, text="holds text 'unknown'", fix="list 'age' under clinical.categorical")


def test_decimal_comma_in_a_comma_separated_table(tiny_study):
    _edit_config(tiny_study, clinical={"continuous": ["age"]})
    (tiny_study / "patients.csv").write_text('patient,outcome,age\nP01,0,"63,5"\nP02,1,70\nP03,0,58\nP04,1,61\n', encoding="utf-8")
    err = _validate(tiny_study)
    _assert_issue(err, patient="P01", column="age", row=1, text="holds text '63,5'", fix="write decimal points (63.5)")


# -- declared but absent; one file for two patients; masks of another patient -----------------------------------------------
def test_declared_cohort_without_rows(tiny_study):
    _edit_config(tiny_study, cohorts={"train": {"role": "train"}, "test": {"role": "test"}, "validation": {"role": "validation"}})
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=None, column="cohort", text="validation cohort 'validation' is declared in the config but has no row in the manifest",
                  fix="remove it from 'cohorts:' in the config")


def test_declared_series_without_rows(tiny_study):
    series = yaml.safe_load((tiny_study / "study.yaml").read_text())["series"]
    _edit_config(tiny_study, series={**series, "PET": {"modality": "PT"}})
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=None, column="series", text="series 'PET' is declared in the config but has no row in the manifest",
                  fix="remove 'PET' from 'series:'")
    # A derived series (notebook 02's super-resolved MR_SR) is never in the manifest: not an error.
    _edit_config(tiny_study, series=series, super_resolution={"series": "MR"})
    cfg = load_config(tiny_study / "study.yaml")
    assert "MR_SR" in cfg.series
    load_study(cfg)


def test_same_image_file_for_patients_of_two_cohorts(tiny_study):
    _set_manifest(tiny_study, "P03", "CT", image="P01/CT_image.nii.gz")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P03", column="image", row=5, text="same image file as row 1 (patient P01)", fix="point each row at its own patient's image")
    assert "one image in cohorts 'train' and 'test' is leakage" in issue.problem


def test_same_image_content_under_two_file_names(tiny_study):
    shutil.copy(tiny_study / "P01" / "MR_image.nii.gz", tiny_study / "P02" / "MR_image.nii.gz")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P02", column="image", row=4, text="same image content (SHA-256) as row 2 (patient P01)", fix="a copied file")
    assert "leakage" not in issue.problem  # both in the training cohort


def test_same_mask_file_for_two_patients(tiny_study):
    _set_manifest(tiny_study, "P01", "MR", mask="P01/CT_mask.nii.gz")  # one mask for two co-registered series of one patient: fine
    load_study(load_config(tiny_study / "study.yaml"))
    _set_manifest(tiny_study, "P04", "MR", mask="P02/MR_mask.nii.gz")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P04", column="mask", row=8, text="same mask file as row 4 (patient P02)", fix="point each row at its own patient's mask")
    assert "leakage" in issue.problem


def test_mask_on_the_grid_of_another_patients_image(tiny_study):
    # P03's CT has another field of view (origin 10 mm lower); P01's CT mask was copied from P03.
    write_volume(tiny_study / "P03" / "CT_image.nii.gz", _image(), origin=(0.0, 0.0, 10.0))
    write_volume(tiny_study / "P03" / "CT_mask.nii.gz", _tumour_mask(), origin=(0.0, 0.0, 10.0))
    write_volume(tiny_study / "P01" / "CT_mask.nii.gz", _tumour_mask(), origin=(0.0, 0.0, 10.0))
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P01", column="mask", row=1, text="mask appears to belong to patient P03 (same grid as P03's CT image, not this patient's)",
                  fix="point the row at this patient's own mask")


def test_rtstruct_of_another_patient(sts_dicom_copy, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    rows = [{"patient": p, "cohort": c, "series": "CT", "image": str(sts_dicom_copy / s / "CT" / "image"), "mask": str(sts_dicom_copy / s / "CT" / "mask" / "RS.dcm")}
            for p, c, s in (("P01", "train", "STS_001"), ("P02", "test", "STS_002"))]
    pd.DataFrame(rows).to_csv(study / "manifest.csv", index=False)
    _write_table(study, patient=["P01", "P02"], outcome=[0, 1])
    from .conftest import tiny_config

    (study / "study.yaml").write_text(yaml.safe_dump(tiny_config(study, series={"CT": {"modality": "CT"}}), sort_keys=False))
    load_study(load_config(study / "study.yaml"))  # DICOM series folders with their own RTSTRUCTs: valid
    copied = sts_dicom_copy / "STS_001" / "CT" / "mask" / "RS_copied.dcm"
    shutil.copy(sts_dicom_copy / "STS_002" / "CT" / "mask" / "RS.dcm", copied)
    _set_manifest(study, "P01", "CT", mask=str(copied))
    err = _validate(study)
    (issue,) = err.issues
    _assert_issue(err, patient="P01", column="mask", row=1, text="RTSTRUCT appears to belong to patient P02 (it references P02's CT series, not this row's image)",
                  fix="point the row at the RTSTRUCT drawn on this row's image")


def _dicom_ct_study(sts_dicom_copy: Path, tmp_path: Path, masks: dict[str, Path], mask_roi: dict[str, str] | None = None) -> Path:
    """The two STS DICOM patients' CT (P01 = STS_001, P02 = STS_002) with the given mask files."""
    study = tmp_path / "study"
    study.mkdir()
    rows = [{"patient": p, "cohort": c, "series": "CT", "image": str(sts_dicom_copy / s / "CT" / "image"), "mask": str(masks[p]),
             "mask_roi": (mask_roi or {}).get(p, "")}
            for p, c, s in (("P01", "train", "STS_001"), ("P02", "test", "STS_002"))]
    pd.DataFrame(rows).to_csv(study / "manifest.csv", index=False)
    _write_table(study, patient=["P01", "P02"], outcome=[0, 1])
    from .conftest import tiny_config

    (study / "study.yaml").write_text(yaml.safe_dump(tiny_config(study, series={"CT": {"modality": "CT"}}), sort_keys=False))
    return study


def _seg_from_rtstruct(sts_dicom_copy: Path, patient: str, out: Path, labels: dict[str, int] | None = None, split: bool = False) -> Path:
    """A SEG of the patient's CT made from its RTSTRUCT (optionally as two segments: the tumour's two halves)."""
    from helpers.imaging.dicom_seg import write_dicom_seg
    from helpers.imaging.io import read_mask

    image = read_image(sts_dicom_copy / patient / "CT" / "image")
    mask = read_mask(sts_dicom_copy / patient / "CT" / "mask" / "RS.dcm", reference=image)
    if split:
        arr = sitk.GetArrayFromImage(mask)
        half = int(np.median(np.nonzero(arr)[2]))
        arr[:, :, half:][arr[:, :, half:] > 0] = 2
        mask = sitk.GetImageFromArray(arr)
        mask.CopyInformation(image)
    return write_dicom_seg(mask, sts_dicom_copy / patient / "CT" / "image", out, labels=labels or {"GTV": 1}, pseudonym=patient,
                           algorithm_name="test", algorithm_version="1")


def test_dicom_seg_masks(sts_dicom_copy, tmp_path):
    """SEG masks validate; a SEG of another patient's series, or with several segments and none chosen, is named."""
    own = {p: _seg_from_rtstruct(sts_dicom_copy, s, tmp_path / f"{p}.dcm") for p, s in (("P01", "STS_001"), ("P02", "STS_002"))}
    study = _dicom_ct_study(sts_dicom_copy, tmp_path, own)
    load_study(load_config(study / "study.yaml"))
    _set_manifest(study, "P01", "CT", mask=str(own["P02"]))
    err = _validate(study)
    _assert_issue(err, patient="P01", column="mask", row=1, text="SEG appears to belong to patient P02 (it references P02's CT series, not this row's image)",
                  fix="point the row at the SEG drawn on this row's image")
    assert len(err.issues) == 2  # and P02's mask is now used by two patients
    two = _seg_from_rtstruct(sts_dicom_copy, "STS_001", tmp_path / "two.dcm", labels={"GTV": 1, "Oedema": 2}, split=True)
    _set_manifest(study, "P01", "CT", mask=str(two))
    err = _validate(study)
    (issue,) = err.issues
    _assert_issue(err, patient="P01", column="mask", row=1, text="holds 2 segments (1 'GTV', 2 'Oedema'); name one (label or number) in the manifest column 'mask_roi'",
                  fix="set 'mask_roi', or re-export the RTSTRUCT/SEG")
    _set_manifest(study, "P01", "CT", mask_roi="Oedema")
    load_study(load_config(study / "study.yaml"))


def test_dicom_seg_of_another_frame_of_reference(sts_dicom_copy, tmp_path):
    """A SEG that names no series is checked by its frame of reference."""
    own = {p: _seg_from_rtstruct(sts_dicom_copy, s, tmp_path / f"{p}.dcm") for p, s in (("P01", "STS_001"), ("P02", "STS_002"))}
    other = pydicom.dcmread(own["P02"])
    seg = pydicom.dcmread(own["P01"])
    del seg.ReferencedSeriesSequence
    seg.FrameOfReferenceUID = other.FrameOfReferenceUID
    seg.save_as(own["P01"])
    study = _dicom_ct_study(sts_dicom_copy, tmp_path, own)
    err = _validate(study)
    (issue,) = err.issues
    _assert_issue(err, patient="P01", column="mask", row=1, text="SEG appears to belong to patient P02 (its frame of reference is that of P02's images)",
                  fix="point the row at the SEG drawn on this row's image")


# -- images that are not one 3D volume; masks too small for texture -----------------------------------------------------------
def test_4d_image(tiny_study):
    volume = sitk.GetImageFromArray(np.stack([_image()] * 3), isVector=False)  # t, z, y, x: three volumes (e.g. a dynamic series)
    sitk.WriteImage(volume, str(tiny_study / "P02" / "MR_4d.nii.gz"))
    _set_manifest(tiny_study, "P02", "MR", image="P02/MR_4d.nii.gz")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P02", column="image", row=4, text="image is 4D (3 volumes of 12x16x10)",
                  fix="extract the volume to analyse (e.g. SimpleITK image[:, :, :, k] or fslroi) and point the manifest at it")


@pytest.mark.parametrize(
    ("kind", "text", "fix"),
    [("single slice", "image is a single slice (12x16x1): 3D volumes are required (there is no 2D mode)", "export the whole image volume (all slices)"),
     ("2D file", "image is 2D (12x16): 3D volumes are required (there is no 2D mode)", "export the whole image volume (all slices)"),
     ("RGB", "image has 3 components per voxel (RGB or vector image)", "save the image as a single-channel (grey-value) 3D volume")],
)
def test_image_that_is_not_one_3d_volume(tiny_study, kind, text, fix):
    path = tiny_study / "P04" / "CT_other.nrrd"
    if kind == "single slice":
        write_volume(path, _image()[4:5])
    elif kind == "2D file":
        sitk.WriteImage(sitk.GetImageFromArray(_image()[4]), str(path))
    else:
        write_volume(path, np.stack([_image().astype(np.uint8)] * 3, axis=-1))  # a screenshot-like colour volume
    _set_manifest(tiny_study, "P04", "CT", image="P04/CT_other.nrrd")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P04", column="image", row=7, text=text, fix=fix)


def test_mask_too_small_for_texture_features(tiny_study):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[4:6, 6:8, 5:7] = 1  # 8 voxels
    write_volume(tiny_study / "P03" / "MR_mask.nii.gz", mask)
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P03", column="mask", row=6, text="mask has only 8 voxel(s) with label 1 (series 'MR', minimum 27)",
                  fix="lower qc.min_mask_voxels in the study config")
    _edit_config(tiny_study, qc={"min_mask_voxels": 8})  # the threshold is the study's choice
    load_study(load_config(tiny_study / "study.yaml"))


# -- CSV dialects -------------------------------------------------------------------------------------------------------------
def test_semicolon_separated_manifest_and_table_are_read(tiny_study):
    _edit_config(tiny_study, clinical={"continuous": ["age"]})
    pd.read_csv(tiny_study / "manifest.csv", dtype=str).to_csv(tiny_study / "manifest.csv", sep=";", index=False)
    (tiny_study / "patients.csv").write_text("patient;outcome;age\nP01;0;63,5\nP02;1;70\nP03;0;\nP04;1;58,25\n", encoding="utf-8")
    notes: list = []
    manifest, patients = load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    assert len(manifest) == 8 and patients["age"].tolist()[:2] == [63.5, 70.0] and np.isnan(patients.loc["P03", "age"])
    assert [n.problem for n in notes] == ["manifest.csv is semicolon-separated: read as such",
                                          "patients.csv is semicolon-separated, decimal commas in column(s) age: read as such"]


def test_tab_separated_table_with_decimal_comma_times(tiny_study):
    _edit_config(tiny_study, endpoints={"binary": "outcome", "time": "months", "event": "died"})
    (tiny_study / "patients.csv").write_text("patient\toutcome\tmonths\tdied\nP01\t0\t12,5\t0\nP02\t1\t3\t1\nP03\t0\t5,25\t1\nP04\t1\t7\t0\n", encoding="utf-8")
    _, patients = load_study(load_config(tiny_study / "study.yaml"))
    assert patients["months"].tolist() == [12.5, 3.0, 5.25, 7.0]
    (tiny_study / "patients.csv").write_text("patient\toutcome\tmonths\tdied\nP01\t0\t12,5\t0\nP02\t1\t-3\t1\nP03\t0\t5,25\t1\nP04\t1\t7\t0\n", encoding="utf-8")
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column="months", row=2, text="negative time -3", fix="time to event must be >= 0")


def test_utf8_bom_and_crlf_keep_working(tiny_study):
    for name in ("manifest.csv", "patients.csv"):
        text = (tiny_study / name).read_text(encoding="utf-8")
        (tiny_study / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    notes: list = []
    manifest, patients = load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    assert notes == [] and list(patients.index) == PATIENTS and manifest.loc[0, "mask"] == "P01/CT_mask.nii.gz"


def test_latin1_patient_table_is_rejected_naming_the_line(tiny_study):
    _edit_config(tiny_study, clinical={"categorical": ["centre"]})
    (tiny_study / "patients.csv").write_bytes("patient,outcome,centre\nP01,0,K\u00f6ln\nP02,1,Paris\nP03,0,Paris\nP04,1,Lyon\n".encode("latin-1"))
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=None, column=None, text="file is not UTF-8 text: byte 0xf6 on line 2 (probably Latin-1/Windows-1252",
                  fix="re-save it as UTF-8 (Excel: 'CSV UTF-8'")
    assert err.source.endswith("patients.csv")


@pytest.mark.parametrize(
    ("content", "text", "fix"),
    [("patient,outcome\nP01,0\nP02,1\nP03,0\nP04,1\n".encode("utf-16"), "file is UTF-16 text (e.g. Excel's 'Unicode Text'), not UTF-8", "re-save it as UTF-8"),
     (b"patient,outcome\nP01,0,x\nP02,1,y\nP03,0,z\nP04,1,w\n", "every data row has more fields than the header (2): a value holds the delimiter 'comma'",
      "quote values that hold the delimiter"),
     (b"\n\n", "file is empty", "write the header line")],
    ids=["UTF-16", "extra field in every row", "empty"],
)
def test_unreadable_patient_table(tiny_study, content, text, fix):
    (tiny_study / "patients.csv").write_bytes(content)
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=None, column=None, text=text, fix=fix)
    assert err.source.endswith("patients.csv")


def test_manifest_value_holding_the_delimiter_unquoted(tiny_study):
    lines = (tiny_study / "manifest.csv").read_text().splitlines()
    lines[3] += ",GE, Signa"  # data row 3 (file line 4): an unquoted comma inside a value
    (tiny_study / "manifest.csv").write_text("\n".join(lines) + "\n")
    err = _validate(tiny_study)
    _assert_issue(err, patient=None, column=None, text="line 4 has 7 fields, the header 5: a value holds the delimiter 'comma' without quotes",
                  fix="quote values that hold the delimiter")


# -- image and mask swapped -----------------------------------------------------------------------------------------------------
def test_image_and_mask_swapped_in_one_row(tiny_study):
    _set_manifest(tiny_study, "P02", "MR", image="P02/MR_mask.nii.gz", mask="P02/MR_image.nii.gz")
    err = _validate(tiny_study)
    (issue,) = err.issues  # one message, not the intensity values as a list of foreign labels
    _assert_issue(err, patient="P02", column="mask", row=4, text="columns 'image' and 'mask' appear swapped (the mask file has", fix="swap the two paths in the manifest")
    assert issue.problem.endswith("distinct values, the image file 2)") and len(str(issue)) < 200
    # With hashes in the manifest (as the simulator writes them), the swapped paths are still one message: the hashes
    # match the other column's file, so no "the file changed" lines are added.
    from helpers.imaging.io import sha256_file

    _set_manifest(tiny_study, "P02", "MR", image_sha256=sha256_file(tiny_study / "P02" / "MR_image.nii.gz"),
                  mask_sha256=sha256_file(tiny_study / "P02" / "MR_mask.nii.gz"))
    (issue,) = _validate(tiny_study).issues
    assert "appear swapped" in issue.problem


def test_image_and_mask_header_swapped(tiny_study):
    df = pd.read_csv(tiny_study / "manifest.csv", dtype=str)
    df.rename(columns={"image": "mask", "mask": "image"}).to_csv(tiny_study / "manifest.csv", index=False)
    err = _validate(tiny_study)
    (issue,) = err.issues  # one line for the whole file (and no 'same content' for the identical masks read as images)
    _assert_issue(err, patient=None, column="mask", text="columns 'image' and 'mask' appear swapped in all 8 rows", fix="swap the names of the two columns in the header line")


def test_mask_column_pointing_at_an_image(tiny_study):
    _set_manifest(tiny_study, "P01", "CT", mask="P01/MR_image.nii.gz")
    _set_manifest(tiny_study, "P02", "CT", mask="P02/CT_image.nii.gz")
    err = _validate(tiny_study)
    assert len(err.issues) == 2
    _assert_issue(err, patient="P01", column="mask", row=1, text="distinct values: an image, not a label mask", fix="point 'mask' at the label mask")
    _assert_issue(err, patient="P02", column="mask", row=3, text="the mask is the image file itself", fix="point 'mask' at the label mask of the image")


# -- cohort names -----------------------------------------------------------------------------------------------------------------
def test_upper_case_cohort_name_is_rejected_at_validation(tiny_study):
    # An upper-case cohort used to pass validation and fail minutes later when notebook 05 named 'auc_heatmap_<cohort>'.
    _edit_config(tiny_study, cohorts={"Train": {"role": "train"}, "test": {"role": "test"}})
    df = pd.read_csv(tiny_study / "manifest.csv", dtype=str)
    df.replace({"cohort": {"train": "Train"}}).to_csv(tiny_study / "manifest.csv", index=False)
    with pytest.raises(ConfigError) as err:
        load_config(tiny_study / "study.yaml")
    assert "cohort names ['Train']: use lower-case letters, digits, '_' or '-' (they name output files)" in str(err.value)
    assert "rename them here and in the manifest's cohort column, e.g. 'Train' -> 'train'" in str(err.value)
    proc = _cli_validate(tiny_study)
    assert proc.returncode == 2 and "cohort names ['Train']" in proc.stderr and "Traceback" not in proc.stderr


def test_manifest_cohort_differing_only_by_case(tiny_study):
    for series in ("CT", "MR"):
        _set_manifest(tiny_study, "P03", series, cohort="Test")
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient="P03", column="cohort", row=5, text="unknown cohort 'Test' (the config has 'test': names are case-sensitive) (also row(s) 6)",
                  fix="use one of ['test', 'train']")


# -- endpoints the steps need -------------------------------------------------------------------------------------------------------
def _add_training_patients(study: Path, ids: list[str]) -> None:
    """More training patients with their own CT + MR images (the tiny study's two cannot fill stratified folds)."""
    rng = np.random.default_rng(len(ids))
    rows = []
    for patient in ids:
        for series in ("CT", "MR"):
            arr = rng.normal(40 if series == "CT" else 300, 10, size=SHAPE).astype(np.int16)
            img = write_volume(study / patient / f"{series}_image.nii.gz", arr)
            msk = write_volume(study / patient / f"{series}_mask.nii.gz", _tumour_mask())
            rows.append({"patient": patient, "cohort": "train", "series": series,
                         "image": img.relative_to(study).as_posix(), "mask": msk.relative_to(study).as_posix()})
    df = pd.read_csv(study / "manifest.csv", dtype=str, keep_default_na=False)
    pd.concat([df, pd.DataFrame(rows)], ignore_index=True).to_csv(study / "manifest.csv", index=False)


def _time_to_event_study(tiny_study, months=(12, 3, 5, 7), died=(0, 1, 1, 0), steps=None, enough_for_folds=False, binary=False, **config):
    """The tiny study with a time-to-event endpoint (time 'months', event 'died') and the signature, models and statistics
    steps: time-to-event only (no endpoints.binary; survival signature steps unless ``steps``) by default.

    ``enough_for_folds``: four more training patients (times below 12, two events) and 2-fold cross-validation, so the
    validation of the fold sizes passes (2 training patients never fill stratified folds). ``binary``: the binary
    endpoint 'outcome' too (the study's binary signature steps unless ``steps``)."""
    ids, months, died = list(PATIENTS), list(months), list(died)
    if enough_for_folds:
        _add_training_patients(tiny_study, ["P05", "P06", "P07", "P08"])
        ids, months, died = ids + ["P05", "P06", "P07", "P08"], months + [4, 8, 9, 10], died + [1, 0, 1, 0]
        config.setdefault("models", {"cv": 2})
    endpoints = {"binary": "outcome"} if binary else {}
    _edit_config(tiny_study, endpoints={**endpoints, "time": "months", "event": "died"}, **config)
    outcome = {"outcome": [i % 2 for i in range(len(ids))]} if binary else {}
    _write_table(tiny_study, patient=ids, **outcome, months=months, died=died)
    base = yaml.safe_load((tiny_study / "study.yaml").read_text())["steps"]
    added = [{"name": n, "notebook": str(REPO / "notebooks" / f"{nb}.ipynb"), "per_cohort": False}
             for n, nb in (("signature", "04_signature"), ("models", "05_models"), ("statistics", "06_statistics"))]
    signature = {"steps": steps} if steps is not None else {} if binary else {"steps": SURVIVAL_STEPS}
    _edit_config(tiny_study, steps=[*base, *added], **({"signature": signature} if signature else {}))


SURVIVAL_STEPS = [{"step": "zscore"}, {"step": "univariate_cox", "p_threshold": 0.1}, {"step": "cox_lasso", "cv": 2}]


def test_time_to_event_only_study_with_survival_steps_validates(tiny_study):
    # Issue 15: a survival-only study runs steps 04-07 against (time, event); no blanket "needs a binary endpoint".
    _time_to_event_study(tiny_study, survival={"horizons": [4, 6]}, enough_for_folds=True)
    notes: list = []
    load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    assert notes == []


def test_time_to_event_only_study_with_binary_selection_steps(tiny_study):
    _time_to_event_study(tiny_study, steps=[{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05}, {"step": "correlation", "threshold": 0.9},
                                      {"step": "lasso"}], survival={"horizons": [4, 6]})
    err = _validate(tiny_study)
    (issue,) = err.issues
    _assert_issue(err, patient=None, column="signature.steps",
                  text="step 2: univariate; step 3: correlation (relevance univariate_p); step 4: lasso need a binary label, "
                       "but the study's endpoint is time-to-event only",
                  fix="use survival steps: zscore, univariate_cox, correlation with relevance: order, cox_lasso")
    assert err.source.endswith("study.yaml")


def test_time_to_event_only_study_without_any_endpoint_still_needs_one(tiny_study):
    _edit_config(tiny_study, endpoints={})
    steps = yaml.safe_load((tiny_study / "study.yaml").read_text())["steps"]
    _edit_config(tiny_study, steps=[*steps, {"name": "models", "notebook": str(REPO / "notebooks" / "05_models.ipynb"), "per_cohort": False}])
    err = _validate(tiny_study)
    _assert_issue(err, patient=None, column=None, text="steps ['models'] need a binary endpoint but endpoints.binary is not set",
                  fix="set endpoints.binary to a 0/1 column of the patient table")


@pytest.mark.parametrize("binary", [False, True], ids=["time-to-event only", "binary and time-to-event"])
@pytest.mark.parametrize(
    ("months", "died", "column", "text", "fix"),
    [
        ([12, 0, 5, 7], [0, 1, 1, 0], "months", "follow-up time is 0", "time to event must be > 0 for the survival models"),
        ([12, None, 5, 7], [0, 1, 1, 0], "months", "time nan is not a number", "give the follow-up time as a number"),
        ([12, -1, 5, 7], [0, 1, 1, 0], "months", "negative time -1", "time to event must be >= 0"),
        ([12, 3, 5, 7], [0, 3, 1, 0], "died", "value 3 is not 0 or 1", "code the endpoint as 0/1"),
        ([12, 3, 5, 7], [0, None, 1, 0], "died", "endpoint value is missing", "fill it in (0 or 1)"),
    ],
    ids=["zero time", "missing time", "negative time", "event not 0/1", "missing event"],
)
def test_time_to_event_patient_rows(tiny_study, binary, months, died, column, text, fix):
    # The same row checks with or without a binary endpoint beside the time-to-event one.
    _time_to_event_study(tiny_study, months, died, binary=binary, survival={"horizons": [4, 6]})
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column=column, row=2, text=text, fix=fix)


def test_survival_only_event_column_missing(tiny_study):
    _time_to_event_study(tiny_study, survival={"horizons": [4, 6]})
    _write_table(tiny_study, patient=PATIENTS, months=[12, 3, 5, 7])
    err = _validate(tiny_study)
    _assert_issue(err, patient=None, column="died", text="column named in the study config is missing", fix="add column 'died' or fix the config")


def test_survival_only_training_cohort_without_events(tiny_study):
    _time_to_event_study(tiny_study, died=(0, 0, 1, 0), survival={"horizons": [4, 6]})
    err = _validate(tiny_study)
    issue = _assert_issue(err, patient=None, column="died", text="training cohort 'train' has no event: all 2 patients (P01, P02) are censored",
                          fix="check the coding of 'died' (1 = event observed)")
    assert "no survival model can be fitted without events" in issue.problem


def test_survival_horizons_beyond_the_training_follow_up(tiny_study):
    # Every horizon at or beyond the last training time (12 months): no time-dependent AUC can be estimated, an error.
    _time_to_event_study(tiny_study, survival={"horizons": [12, 24]}, enough_for_folds=True)
    err = _validate(tiny_study)
    _assert_issue(err, patient=None, column="survival.horizons",
                  text="every horizon (12, 24 months) is at or beyond the last training follow-up time (12)",
                  fix="set survival.horizons to times below 12 months")
    assert err.source.endswith("study.yaml")
    # Some beyond it: a note (their AUC is reported as '-' with the reason), not an error.
    _edit_config(tiny_study, survival={"horizons": [6, 24]})
    notes: list = []
    load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    (note,) = notes
    assert note.column == "survival.horizons" and "horizon(s) 24 months are at or beyond the last training follow-up time (12)" in note.problem


# -- the command line, message length, no false positives ---------------------------------------------------------------------------
def test_validate_command_prints_one_short_line_per_problem(tiny_study):
    _set_manifest(tiny_study, "P02", "MR", image="P02/MR_mask.nii.gz", mask="P02/MR_image.nii.gz")
    _write_table(tiny_study, patient=["P01", "P02", "P03"], outcome=[0, 1, 0])
    proc = _cli_validate(tiny_study)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: 2 problem(s) in ") and "nothing was run" in lines[0]
    assert lines[1].startswith("  - row 4, patient P02, column 'mask': columns 'image' and 'mask' appear swapped")
    assert lines[2] == "  - patient P04, column 'patient': patient of the manifest has no row in the patient table -> fix: add the patient's clinical/endpoint row"
    assert max(len(line) for line in lines[1:]) < 300


def test_every_message_line_stays_short_for_the_worst_cases(tiny_study):
    # 200 configured labels and 200 foreign label values in one mask, a 200-character path, a 100-character id, 30 text values of
    # a continuous variable, 500 patients missing from the patient table: each problem stays one line under 300 characters.
    labels = {f"l{v}": v for v in range(1, 201)}
    _edit_config(tiny_study, labels=labels, clinical={"continuous": ["age"]})
    mask = np.zeros(SHAPE, dtype=np.uint16)
    mask.flat[:200] = np.arange(201, 401)
    mask.flat[400:600] = 1
    write_volume(tiny_study / "P01" / "CT_mask.nii.gz", mask)
    _set_manifest(tiny_study, "P02", "MR", image="P02/" + "x" * 200 + ".nii.gz")
    long_id = "P" * 100
    _rename_patient(tiny_study, "P03", long_id, table=False)
    _write_table(tiny_study, patient=[*PATIENTS[:2], long_id, "P04", *[f"X{i:02d}" for i in range(26)]], outcome=[0, 1] * 15,
                 age=[f"{60 + i} years and some more words" for i in range(30)])
    err = _validate(tiny_study)
    lines = [str(i) for i in err.issues]
    assert any("mask label value(s) [201, 202," in line and "more] are not in the config labels [1, 2," in line for line in lines)
    assert any("file not found: P02/xxx" in line for line in lines)
    assert any("is 100 characters long" in line for line in lines)
    assert any("is declared continuous but 30 rows hold text:" in line and "more" in line for line in lines)
    cfg = load_config(tiny_study / "study.yaml")
    with pytest.raises(ManifestError) as many:
        load_patient_table(cfg, [f"Q{i:03d}" for i in range(500)])
    missing = [str(i) for i in many.value.issues if "no row in the patient table" in i.problem]
    assert len(missing) == 1 and "500 patients of the manifest have no row in the patient table: Q000, Q001" in missing[0]
    lines += [str(i) for i in many.value.issues]
    longest = max(lines, key=len)
    assert len(longest) <= 300, longest


def test_valid_study_has_no_false_positives(tiny_study):
    notes: list = []
    manifest, patients = load_study(load_config(tiny_study / "study.yaml"), notes=notes)
    assert len(manifest) == 8 and list(patients.index) == PATIENTS and notes == []
    proc = _cli_validate(tiny_study)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK: 8 images of 4 patients in 2 cohorts; patient table has 4 rows"


# -- supplied feature tables (issue 15, "Feature tables in"): one actionable line per problem ------------------------------
def _ft_edit_table(study: Path, name: str = "features.csv", **cells) -> None:
    """Set cells of the feature table: ``cells`` maps column -> {data row (1-based): value}; a value ``None`` drops the column."""
    table = pd.read_csv(study / name, dtype=str, keep_default_na=False)
    for column, values in cells.items():
        if values is None:
            table = table.drop(columns=column)
            continue
        for row, value in values.items():
            table.loc[row - 1, column] = value
    table.to_csv(study / name, index=False)


def _ft_edit_patients(study: Path, **cells) -> None:
    table = pd.read_csv(study / "patients.csv", dtype=str, keep_default_na=False)
    for column, values in cells.items():
        if values is None:
            table = table.drop(columns=column)
            continue
        for row, value in values.items():
            table.loc[row - 1, column] = value
    table.to_csv(study / "patients.csv", index=False)


def _ft_table(study: Path, **changes) -> None:
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    cfg["feature_tables"][0].update(changes)
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _ft_second_table(study: Path) -> None:
    pd.read_csv(study / "features.csv", dtype=str).iloc[[2]].to_csv(study / "more.csv", index=False)
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    cfg["feature_tables"].append({**cfg["feature_tables"][0], "path": "more.csv", "reader2": None})
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _ft_parquet_garbage(study: Path) -> None:
    (study / "features.parquet").write_bytes(b"PAR1 this is not a parquet file")
    _ft_table(study, path="features.parquet")


def _ft_reader2_extra(study: Path) -> None:
    _ft_edit_table(study, "features_reader2.csv", patient={3: "ZZ9"})


def _ft_latin1(study: Path) -> None:
    text = (study / "features.csv").read_text(encoding="utf-8").replace("FT004", "FT\u00e904", 1)
    (study / "features.csv").write_bytes(text.encode("latin-1"))


def _ft_parquet_text(study: Path) -> None:
    table = pd.read_csv(study / "features.csv", dtype={"patient": str})
    table["original_glcm_Noise04"] = table["original_glcm_Noise04"].astype(str)
    table.loc[9, "original_glcm_Noise04"] = "n/a"
    table.to_parquet(study / "features.parquet", index=False)
    _ft_table(study, path="features.parquet")


# (edit, file, patient, row, column, text, fix)
FEATURE_TABLE_CASES = {
    "missing file": (lambda s: (s / "features.csv").unlink(), "features.csv", None, None, None,
                     "feature table not found", "fix 'feature_tables[0].path'"),
    "unreadable parquet": (_ft_parquet_garbage, "features.parquet", None, None, None,
                           "feature table cannot be read as parquet", "re-export it as CSV (UTF-8) or parquet"),
    "not UTF-8": (_ft_latin1, "features.csv", None, None, None, "feature table cannot be read: file is not UTF-8 text", "re-save it as UTF-8"),
    "parquet text value": (_ft_parquet_text, "features.parquet", "FT009", 10, "original_glcm_Noise04", "non-numeric value 'n/a'",
                           "write a number"),
    "missing id column": (lambda s: _ft_table(s, patient_id_column="PatientID"), "features.csv", None, None, "PatientID",
                          "patient id column 'PatientID' is missing (columns: patient,", "set 'feature_tables[0].patient_id_column'"),
    "duplicate patient": (lambda s: _ft_edit_table(s, patient={5: "FT003"}), "features.csv", "FT003", 5, "patient",
                          "patient appears 2 times (rows 4, 5)", "keep one row per patient"),
    "empty patient id": (lambda s: _ft_edit_table(s, patient={6: ""}), "features.csv", None, 6, "patient",
                         "patient id is empty", "fill in the id or delete the row"),
    "patient not in the patient table": (lambda s: _ft_edit_table(s, patient={45: "FT999"}), "features.csv", "FT999", 45, "patient",
                                         "patient is not in the patient table", "add the patient's clinical/endpoint row"),
    "non-numeric value": (lambda s: _ft_edit_table(s, original_firstorder_Mean={7: "12.3 HU"}), "features.csv", "FT006", 7,
                          "original_firstorder_Mean", "non-numeric value '12.3 HU'", "write a number (leave the cell empty when unknown)"),
    "decimal comma": (lambda s: _ft_edit_table(s, original_glcm_Noise01={2: "0,5"}), "features.csv", "FT001", 2,
                      "original_glcm_Noise01", "non-numeric value '0,5'", "write a decimal point (0.5)"),
    "text column": (lambda s: _ft_table(s, exclude=[]), "features.csv", "FT000", 1, "diagnostics_Versions_PyRadiomics",
                    "non-numeric value 'v3.1.0' (59 more rows of this column too)", "or add 'diagnostics_Versions_PyRadiomics' to 'feature_tables[0].exclude'"),
    "infinite value": (lambda s: _ft_edit_table(s, original_glcm_Noise02={9: "inf"}), "features.csv", "FT008", 9,
                       "original_glcm_Noise02", "infinite value inf", "leave the cell empty"),
    "empty column": (lambda s: _ft_edit_table(s, original_glcm_Noise03={i: "" for i in range(1, 61)}), "features.csv", None, None,
                     "original_glcm_Noise03", "column is empty in every row", "add 'original_glcm_Noise03' to 'feature_tables[0].exclude'"),
    "unknown cohort": (lambda s: _ft_edit_patients(s, cohort={11: "validation"}), "features.csv", "FT010", 11, "patient",
                       "cohort 'validation' (from the patient table's 'cohort' column) is not under 'cohorts:'", "add the cohort to 'cohorts:'"),
    "cohort mismatch": (lambda s: (_ft_edit_table(s, site={i: "training" if i <= 40 else "external" for i in range(1, 61)}),
                                   _ft_edit_table(s, site={1: "external"}),
                                   _ft_table(s, cohort_column="site")), "features.csv", "FT000", 1, "site",
                        "cohort 'external' in features.csv (column 'site') but 'training' in the patient table's 'cohort' column",
                        "assign the patient to one cohort in every file"),
    "no cohort": (lambda s: _ft_edit_patients(s, cohort=None), "features.csv", None, None, "patient",
                  "60 patients have no cohort: FT000", "give the patient table a 'cohort' column"),
    "patient in two tables for one block": (_ft_second_table, "more.csv", "FT002", 1, "patient",
                                            "patient already has MR/tumour features in features.csv", "keep each patient's block in one table"),
    "exclude names an absent column": (lambda s: _ft_table(s, exclude=["diagnostics_*", "original_shape_Volume"]), "features.csv", None, None,
                                       "original_shape_Volume", "'feature_tables[0].exclude' names 1 column(s) absent from the table",
                                       "a misspelt exclusion would keep the column"),
    "column matches no block prefix": (lambda s: _ft_table(s, series=None, roi=None, blocks={"original_firstorder_": {"series": "MR", "roi": "tumour"}}),
                                       "features.csv", None, None, "original_glcm_Noise00", "12 column(s) match no prefix of 'feature_tables[0].blocks': original_glcm_Noise00",
                                       "add their prefixes to 'feature_tables[0].blocks'"),
    "second reader patient absent from reader 1": (_ft_reader2_extra, "features_reader2.csv", "ZZ9", 3, "patient",
                                                   "patient of the second-reader table is not in features.csv", "remove the row"),
}


@pytest.mark.parametrize("case", list(FEATURE_TABLE_CASES))
def test_malformed_feature_table(tmp_path, case):
    from .test_supplied_features import make_feature_table_study

    edit, file, patient, row, column, text, fix = FEATURE_TABLE_CASES[case]
    study = make_feature_table_study(tmp_path)
    edit(study)
    err = _validate(study)
    assert file in err.source, err.source  # the message names the file
    _assert_issue(err, patient=patient, column=column, text=text, fix=fix, row=row)
    assert len(err.issues) == 1, str(err)  # one line for the one problem
