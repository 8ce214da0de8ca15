"""The bad-input battery (issue 7): one test per kind of broken input.

Each case builds the broken input in a temporary copy of the tiny study and
checks (a) the specific exception type, (b) that the message names the
patient (and row/column/key where there is one) and (c) that it says how to
fix it. Image and manifest problems are found by validation
(``load_study`` = ``python -m helpers validate``), before any long step.

Related cases covered elsewhere (not repeated here): every manifest problem
reported at once and sha256 mismatches (test_manifest.py), RTSTRUCT structure
errors (test_io.py), NaN/infinite prediction and label inputs of the
statistics (test_stats.py), failed units not being cached and re-run after a
fix (test_extraction.py::test_failing_unit_is_reported_and_others_complete).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml

from helpers.config import load_config
from helpers.errors import ConfigError, ImageReadError, ManifestError
from helpers.features import extract_features
from helpers.io import read_image
from helpers.manifest import load_study

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
        mask[4:6, 6:9, 5:7] = 2
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


def test_model_fitting_on_a_single_class_gives_a_clear_error():
    # The library-level guard behind validation: the message says what is wrong and where to look.
    from helpers.models import build_pipeline, make_classifier, tune

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


@pytest.mark.parametrize(
    ("months", "died", "column", "text", "fix"),
    [
        ([12, -3, 5, 7], [0, 1, 1, 0], "months", "negative time -3", "time to event must be >= 0"),
        ([12, 3, 5, 7], [0, 2, 1, 0], "died", "value 2 is not 0 or 1", "code the endpoint as 0/1"),
        ([12, None, 5, 7], [0, 1, 1, 0], "months", "time nan is not a number", "give the follow-up time as a number"),
        ([12, 3, 5, 7], [0, None, 1, 0], "died", "endpoint value is missing", "fill it in"),
    ],
    ids=["negative time", "event not 0/1", "NaN time", "missing event"],
)
def test_time_to_event_row(tiny_study, months, died, column, text, fix):
    _edit_config(tiny_study, endpoints={"binary": "outcome", "time": "months", "event": "died"})
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, 0, 1], "months": months, "died": died}).to_csv(
        tiny_study / "patients.csv", index=False)
    err = _validate(tiny_study)
    _assert_issue(err, patient="P02", column=column, row=2, text=text, fix=fix)


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
    from helpers.selection import build_selector, selection_pathway

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
    from helpers.selection import ZScoreScaler
    from helpers.signature import load_study_features

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
    from helpers.extraction import plan_units, run_extraction
    from helpers.signature import load_study_features

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
    assert result.status_counts() == {"computed": 7, "cached": 0, "failed": 1}
    (failure,) = result.failures_table().to_dict("records")
    assert (failure["patient"], failure["series"], failure["roi"]) == ("P02", "MR", "tumour")
    assert "patient P02, series MR, ROI tumour" in failure["reason"] and "no voxel of the mask has label 1" in failure["reason"]
    assert "labels present: [2]" in failure["reason"]
    assert len(list(cache.rglob("*.json"))) == 7  # every other unit's result is cached intact
    rerun = run_extraction(plan_units(manifest, cfg), cache, progress=False)
    assert rerun.status_counts() == {"computed": 0, "cached": 7, "failed": 1}
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
