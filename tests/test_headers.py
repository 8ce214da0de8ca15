"""Acquisition-header parsing against pydicom's bundled real test files (pydicom-data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from helpers.data.headers import (
    ACQUISITION_FIELDS,
    acquisition_table,
    read_dicom_acquisition,
    records_from_table,
    summarise_values,
)

# Values as stored in the files' headers (vendor, model, TR/TE/flip, kVp, mA, kernel...).
EXPECTED = {
    "CT_small.dcm": {"manufacturer": "GE MEDICAL SYSTEMS", "model": "RHAPSODE", "kvp": 120.0, "tube_current_mA": 170.0,
                     "kernel": "STANDARD", "slice_thickness_mm": 5.0, "pixel_spacing_row_mm": 0.661468, "pixel_spacing_col_mm": 0.661468, "rows": 128.0, "columns": 128.0},
    "MR_small.dcm": {"manufacturer": "TOSHIBA_MEC", "model": "MRT50H1", "tr_ms": 4000.0, "te_ms": 240.0, "flip_angle_deg": 90.0,
                     "slice_thickness_mm": 0.8, "pixel_spacing_row_mm": 0.3125, "pixel_spacing_col_mm": 0.3125, "rows": 64.0},
    "MR2_UNCI.dcm": {"manufacturer": "Philips", "model": "T5", "field_strength_T": 1.5, "tr_ms": 350.0, "te_ms": 27.0,
                     "flip_angle_deg": 90.0, "slice_thickness_mm": 6.0, "rows": 1024.0},
    "MR-SIEMENS-DICOM-WithOverlays.dcm": {"manufacturer": "SIEMENS", "model": "Avanto", "field_strength_T": 1.4939999580383,
                                          "tr_ms": 5.53, "te_ms": 2.81, "flip_angle_deg": 10.0, "slice_thickness_mm": 4.0},
    "bad_sequence.dcm": {"manufacturer": "SIEMENS", "model": "SOMATOM Definition AS+", "kvp": 120.0, "tube_current_mA": 442.0,
                         "kernel": "B30s", "pitch": 1.0, "slice_thickness_mm": 1.0},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_header_values_from_real_files(name):
    rec = read_dicom_acquisition(get_testdata_file(name))
    for key, value in EXPECTED[name].items():
        if isinstance(value, float):
            assert rec[key] == pytest.approx(value), key
        else:
            assert rec[key] == value, key
    assert set(rec) == set(ACQUISITION_FIELDS)


def test_no_identifying_value_is_read():
    path = get_testdata_file("CT_small.dcm")
    rec = read_dicom_acquisition(path)
    text = " ".join(str(v) for v in rec.values())
    # CT_small.dcm carries PatientName 'CompressedSamples^CT1', PatientID '1CT1', a study date and an institution.
    for identifying in ("CompressedSamples", "1CT1", "2004", "JFK"):
        assert identifying not in text


def test_series_folder_counts_slices_and_takes_median(tmp_path):
    import pydicom

    folder = tmp_path / "series"
    folder.mkdir()
    for i, ma in enumerate([100, 200, 400]):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.XRayTubeCurrent = ma
        ds.save_as(folder / f"{i}.dcm")
    (folder / "notes.txt").write_text("not dicom")
    rec = read_dicom_acquisition(folder)
    assert rec["n_slices"] == 3 and rec["tube_current_mA"] == 200


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 3.0, 3.0], "3"),
        ([3.27, 3.27, 5.0], "3.27 (n=2); 5 (n=1)"),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "1-6 (median 3.5)"),
        (["SOFT", "STANDARD", "STANDARD"], "STANDARD (n=2); SOFT (n=1)"),
        ([np.nan, np.nan], "n/a"),
        ([140.0, np.nan, 140.0], "140; n/a (n=1)"),
    ],
)
def test_summarise_values(values, expected):
    assert summarise_values(pd.Series(values, dtype=object)) == expected


def test_records_from_sts_header_table_and_acquisition_table():
    table = pd.DataFrame({
        "patient": ["A", "B", "C"], "series": ["CT", "CT", "CT"], "Manufacturer": ["GE MEDICAL SYSTEMS"] * 3,
        "ManufacturerModelName": ["Discovery ST"] * 3, "SliceThickness": ["3.26999999999998"] * 3,
        "PixelSpacing": ["['0.97656200000000', '0.97656200000000']"] * 3, "Rows": ["202", "143", "202"],
        "Columns": ["198", "161", "198"], "KVP": ["140.0", "120.0", "140.0"], "StudyDate": ["20000907"] * 3,
    })
    rec = records_from_table(table)
    assert "StudyDate" not in rec.columns and "20000907" not in rec.to_csv()
    assert rec.loc[0, "pixel_spacing_row_mm"] == pytest.approx(0.976562) == rec.loc[0, "pixel_spacing_col_mm"]
    rec["cohort"], rec["modality"] = "train", "CT"
    out = acquisition_table(rec)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["n_scans"] == 3 and row["slice_thickness_mm"] == "3.27"
    assert row["kvp"] == "140 (n=2); 120 (n=1)"
    assert row["matrix"] == "202x198 (n=2); 143x161 (n=1)"
    assert row["fov_mm"] == "197.3x193.4 (n=2); 139.6x157.2 (n=1)"
    assert row["pixel_spacing_mm"] == "0.977x0.977"
    assert "tr_ms" not in out.columns  # absent for every group: dropped
    assert math.isclose(float(rec["kvp"].mean()), 400 / 3)


def test_sts_header_csv_gives_one_group_per_scanner():
    repo = Path(__file__).resolve().parents[1]
    raw = pd.read_csv(repo / "data" / "sts" / "dicom_acquisition_headers.csv", dtype=str)
    rec = records_from_table(raw)
    rec["cohort"], rec["modality"] = "all", rec["series"]
    table = acquisition_table(rec)
    assert table["n_scans"].sum() == 153
    ct = table[table["series"] == "CT"].iloc[0]
    assert ct["model"] == "Discovery ST" and ct["n_scans"] == 51
    assert ct["kvp"] == "140 (n=49); 120 (n=2)"
    assert len(table[table["series"] == "MR_T1"]) == raw[raw["series"] == "MR_T1"]["ManufacturerModelName"].nunique()


def test_non_square_pixels_give_fov_from_each_spacing():
    # DICOM PixelSpacing is (row spacing, column spacing). A Philips-like 448 x 256 acquisition of a 230 x 230 mm FOV
    # has 0.513 mm between rows and 0.898 mm between columns; the FOV is about 230 x 230 mm, not 230 x 131 or 403 x 230.
    table = pd.DataFrame({"patient": ["A", "B"], "series": ["MR", "MR"], "Manufacturer": ["Philips"] * 2,
                          "ManufacturerModelName": ["Ingenia CX"] * 2, "Rows": ["448", "448"], "Columns": ["256", "256"],
                          "PixelSpacing": ["['0.513393', '0.898438']", "0.513393\\0.898438"]})
    rec = records_from_table(table)
    assert rec["pixel_spacing_row_mm"].tolist() == pytest.approx([0.513393] * 2)
    assert rec["pixel_spacing_col_mm"].tolist() == pytest.approx([0.898438] * 2)
    rec["cohort"], rec["modality"] = "train", "MR"
    row = acquisition_table(rec).iloc[0]
    assert row["matrix"] == "448x256" and row["pixel_spacing_mm"] == "0.513x0.898" and row["fov_mm"] == "230x230"
    assert "pixel_spacing_row_mm" not in row.index  # shown once, as the pair


def test_simulated_philips_dicom_fov(tmp_path):
    # The simulator writes non-square Philips pixels: the table's FOV must match the simulated field of view.
    from helpers.simulation.simulate import simulate_study

    out = simulate_study(tmp_path / "sim", patients=3, seed=2, dicom=True, centres={"c1": ["ingenia_cx"]}, test_fraction=0.34).out_dir
    manifest = pd.read_csv(out / "data_manifest.csv")
    rec = pd.DataFrame([{"patient": r.patient, "series": r.series, **read_dicom_acquisition(out / r.image)} for r in manifest.itertuples()])
    rows, cols = rec["rows"] * rec["pixel_spacing_row_mm"], rec["columns"] * rec["pixel_spacing_col_mm"]
    assert rec["pixel_spacing_row_mm"].iloc[0] != pytest.approx(rec["pixel_spacing_col_mm"].iloc[0], rel=0.05)  # non-square
    assert (rows / cols).tolist() == pytest.approx([1.0] * len(rec), rel=0.02)
