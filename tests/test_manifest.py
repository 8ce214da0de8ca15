"""Manifest and patient-table validation: each broken input gives its precise error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data.manifest import cohort_by_vendor, load_patient_table, load_study, read_manifest, validate_manifest
from helpers.errors import ManifestError
from helpers.imaging.io import sha256_file
from helpers.settings.study import load_config

from .conftest import write_volume


def _validate(study: Path, edit=None):
    cfg = load_config(study / "study.yaml")
    df = read_manifest(study / "manifest.csv")
    if edit is not None:
        df = edit(df, study) or df
    return validate_manifest(cfg, df)


def _issues(study: Path, edit) -> list:
    with pytest.raises(ManifestError) as err:
        _validate(study, edit)
    return err.value.issues


def test_valid_tiny_manifest(tiny_study):
    df = _validate(tiny_study)
    assert len(df) == 8
    assert Path(df.loc[0, "image_path"]).is_absolute()


def _set(row, col, value):
    def edit(df, study):
        df.loc[row - 1, col] = value
    return edit


def _mask_array(study, patient, series, fn):
    def edit(df, study_dir):
        arr = np.zeros((10, 16, 12), dtype=np.float32 if fn == "float" else np.uint8)
        if fn == "labels":
            arr[3:7, 5:10, 4:8] = 1
            arr[0, 0, 0] = 3
        elif fn == "ones":
            arr[:] = 1
        elif fn == "float":
            arr[3:7, 5:10, 4:8] = 0.5
        write_volume(study_dir / patient / f"{series}_mask.nii.gz", arr)
    return edit


CASES = {
    "empty value": (_set(2, "cohort", ""), 2, "cohort", "value is empty"),
    "unknown cohort": (_set(3, "cohort", "validaton"), 3, "cohort", "unknown cohort 'validaton'"),
    "unknown series": (_set(1, "series", "T2"), 1, "series", "unknown series 'T2'"),
    "missing image": (_set(4, "image", "P02/nothing.nii.gz"), 4, "image", "file not found: P02/nothing.nii.gz"),
    "missing reader-2 mask": (_set(1, "mask_reader2", "P01/reader2.nii.gz"), 1, "mask_reader2", "file not found"),
    "duplicate patient/series": (_set(2, "series", "CT"), 2, "series", "duplicate patient/series 'CT' (also row 1)"),
    "sha256 mismatch": (_set(1, "image_sha256", "0" * 64), 1, "image_sha256", "sha256 of P01/CT_image.nii.gz"),
    "empty mask": (_mask_array(None, "P01", "CT", "empty"), 1, "mask", "mask is empty"),
    "all-ones mask": (_mask_array(None, "P01", "CT", "ones"), 1, "mask", "covers the whole image"),
    "label not in config": (_mask_array(None, "P02", "MR", "labels"), 4, "mask", "label value(s) [3] are not in the config labels [1]"),
    "non-integer mask": (_mask_array(None, "P01", "MR", "float"), 2, "mask", "non-integer values"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_manifest_battery(tiny_study, case):
    edit, row, column, text = CASES[case]
    issues = _issues(tiny_study, edit)
    match = [i for i in issues if i.row == row and i.column == column and text in i.problem]
    assert match, f"expected row {row} column {column} '{text}', got {[str(i) for i in issues]}"
    assert match[0].fix  # every issue says how to fix it
    assert match[0].patient == ["P01", "P01", "P02", "P02", "P03", "P03", "P04", "P04"][row - 1]


def test_patient_in_two_cohorts(tiny_study):
    issues = _issues(tiny_study, _set(2, "cohort", "test"))
    (issue,) = [i for i in issues if "cohorts" in i.problem]
    assert issue.patient == "P01" and issue.column == "cohort"
    assert "['test', 'train']" in issue.problem and "rows [1, 2]" in issue.problem


@pytest.mark.parametrize(
    ("geometry", "text"),
    [
        ({"spacing": (1.0, 1.0, 3.0)}, "mask spacing"),
        ({"origin": (0.0, 0.0, 4.0)}, "4.00 mm from the image origin"),
        ({"shape": (10, 16, 11)}, "mask size (11, 16, 10) differs from image size (12, 16, 10)"),
    ],
)
def test_geometry_mismatch(tiny_study, geometry, text):
    def edit(df, study):
        arr = np.zeros(geometry.get("shape", (10, 16, 12)), dtype=np.uint8)
        arr[3:7, 5:10, 4:8] = 1
        write_volume(study / "P03" / "CT_mask.nii.gz", arr, spacing=geometry.get("spacing", (1.0, 1.0, 2.0)), origin=geometry.get("origin", (0.0, 0.0, 0.0)))
    issues = _issues(tiny_study, edit)
    (issue,) = issues
    assert (issue.row, issue.column, issue.patient) == (5, "mask", "P03")
    assert "geometry mismatch" in issue.problem and text in issue.problem


def test_geometry_within_tolerance_passes(tiny_study):
    def edit(df, study):
        arr = np.zeros((10, 16, 12), dtype=np.uint8)
        arr[3:7, 5:10, 4:8] = 1
        write_volume(study / "P03" / "CT_mask.nii.gz", arr, origin=(0.0, 0.0, 0.3))  # 0.3 mm < 0.5 mm tolerance
    _validate(tiny_study, edit)


def test_corrupt_image_is_reported(tiny_study):
    def edit(df, study):
        path = study / "P04" / "MR_image.nii.gz"
        path.write_bytes(gzip.compress(b"this is not a nifti header" * 20))
    issues = _issues(tiny_study, edit)
    (issue,) = issues
    assert (issue.row, issue.column, issue.patient) == (8, "image", "P04")
    assert "cannot read image" in issue.problem


def test_every_problem_reported_at_once(tiny_study):
    def edit(df, study):
        df.loc[0, "cohort"] = "nope"
        df.loc[3, "image"] = "missing.nii.gz"
        df.loc[6, "series"] = "PET"
    issues = _issues(tiny_study, edit)
    assert {(i.row, i.column) for i in issues} >= {(1, "cohort"), (4, "image"), (7, "series")}
    msg = str(ManifestError("m.csv", issues))
    assert msg.startswith(f"{len(issues)} problem(s) in m.csv; nothing was run")


def test_missing_required_column(tiny_study):
    df = pd.read_csv(tiny_study / "manifest.csv").drop(columns=["mask"])
    df.to_csv(tiny_study / "manifest.csv", index=False)
    with pytest.raises(ManifestError) as err:
        read_manifest(tiny_study / "manifest.csv")
    assert err.value.issues[0].column == "mask"
    assert "required column is missing" in str(err.value)


def test_sha256_match_passes(tiny_study):
    def edit(df, study):
        df.loc[0, "image_sha256"] = sha256_file(study / "P01" / "CT_image.nii.gz")
    _validate(tiny_study, edit)


@pytest.mark.parametrize(
    ("table", "row", "column", "text"),
    [
        ({"patient": ["P01", "P02", "P03"], "outcome": [0, 1, 0]}, None, "patient", "no row in the patient table"),
        ({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 2, 0, 1]}, 2, "outcome", "value 2 is not 0 or 1"),
        ({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, None, 0, 1]}, 2, "outcome", "endpoint value is missing"),
        ({"patient": ["P01", "P02", "P03", "P04", "P04"], "outcome": [0, 1, 0, 1, 1]}, 5, "patient", "appears 2 times"),
    ],
)
def test_patient_table_battery(tiny_study, table, row, column, text):
    pd.DataFrame(table).to_csv(tiny_study / "patients.csv", index=False)
    cfg = load_config(tiny_study / "study.yaml")
    with pytest.raises(ManifestError) as err:
        load_patient_table(cfg, ["P01", "P02", "P03", "P04"])
    match = [i for i in err.value.issues if i.row == row and i.column == column and text in i.problem]
    assert match, [str(i) for i in err.value.issues]


def test_negative_time_to_event(tiny_study):
    import yaml

    data = yaml.safe_load((tiny_study / "study.yaml").read_text())
    data["endpoints"] = {"binary": "outcome", "time": "months", "event": "died"}
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, 0, 1], "months": [12, -3, 5, 7], "died": [0, 1, 1, 0]}).to_csv(tiny_study / "patients.csv", index=False)
    with pytest.raises(ManifestError) as err:
        load_patient_table(load_config(tiny_study / "study.yaml"))
    (issue,) = err.value.issues
    assert (issue.row, issue.column, issue.patient) == (2, "months", "P02")
    assert "negative time -3" in issue.problem


def test_load_study_collects_manifest_and_table_problems(tiny_study):
    df = pd.read_csv(tiny_study / "manifest.csv")
    df.loc[0, "cohort"] = "nope"
    df.to_csv(tiny_study / "manifest.csv", index=False)
    pd.DataFrame({"patient": ["P01"], "outcome": [5]}).to_csv(tiny_study / "patients.csv", index=False)
    with pytest.raises(ManifestError) as err:
        load_study(load_config(tiny_study / "study.yaml"))
    text = str(err.value)
    assert "unknown cohort 'nope'" in text and "value 5 is not 0 or 1" in text


def test_cohort_by_vendor_uses_only_the_manufacturer():
    headers = pd.DataFrame({
        "patient": ["A", "A", "B", "C"],
        "series": ["CT", "MR_T1", "MR_T1", "MR_T1"],
        "Manufacturer": ["SIEMENS", "GE MEDICAL SYSTEMS / MIM Software", "Philips", "ge healthcare"],
    })
    assert cohort_by_vendor(headers, "MR_T1", ("GE",)) == {"A": "training", "B": "external_test", "C": "training"}


# -- CSV reading (helpers.data.tables) ---------------------------------------------------------------------------------------
def test_read_csv_table_semicolon_bom_crlf_decimal_comma(tmp_path):
    from helpers.data.tables import read_csv_table

    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf patient ;age;grade\r\nNA;63,5;G1\r\n007;70;G2\r\n;;\r\n0012;;G3\r\n")
    table, dialect = read_csv_table(path, text_columns=("patient",))
    assert list(table.columns) == ["patient", "age", "grade"]  # BOM and header spaces gone
    assert table["patient"].tolist() == ["NA", "007", "0012"]  # ids verbatim: no NA conversion, leading zeros kept
    assert table["age"].tolist()[:2] == [63.5, 70.0] and np.isnan(table["age"].iloc[2])
    assert list(table.index) == [0, 1, 3]  # the all-empty spreadsheet row is dropped; row numbers of the others kept
    assert (dialect.delimiter, dialect.decimal_comma_columns, dialect.bom) == (";", ("age",), True)
    assert dialect.describe() == "semicolon-separated, decimal commas in column(s) age"
    text, _ = read_csv_table(path, all_text=True)
    assert text["age"].tolist() == ["63.5", "70", ""]


def test_read_csv_table_comma_file_keeps_quoted_commas_as_text(tmp_path):
    from helpers.data.tables import read_csv_table

    path = tmp_path / "t.csv"
    path.write_text('patient,age,note\nP01,"63,5","a; b"\nP02,70,c\n', encoding="utf-8")
    table, dialect = read_csv_table(path, text_columns=("patient",))
    assert dialect.is_default and table["age"].tolist() == ["63,5", "70"] and table["note"].tolist() == ["a; b", "c"]


def test_read_manifest_strips_values_but_not_patient_ids(tiny_study):
    text = (tiny_study / "manifest.csv").read_text().replace("P01,train,CT,", "P01 ,train ,CT ,")
    (tiny_study / "manifest.csv").write_text(text)
    df = read_manifest(tiny_study / "manifest.csv")
    assert df.loc[0, ["patient", "cohort", "series"]].tolist() == ["P01 ", "train", "CT"]
