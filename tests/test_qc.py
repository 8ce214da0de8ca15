"""Image/mask QC measurements, outlier flags and cohort counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from helpers.data.headers import acquisition_records, cohort_counts
from helpers.data.manifest import load_study
from helpers.imaging.qc import flag_outliers, image_mask_qc, mask_qc
from helpers.settings.study import load_config

REPO = Path(__file__).resolve().parents[1]


def _image(arr, spacing):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


def test_mask_qc_measures_in_physical_units():
    arr = np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    mask = np.zeros_like(arr, dtype=np.uint8)
    mask[2:5, 3:7, 4:9] = 1  # 3*4*5 = 60 voxels
    mask[8, 10, 1] = 1  # a second component
    q = mask_qc(_image(arr, (0.5, 0.8, 2.5)), _image(mask, (0.5, 0.8, 2.5)))
    assert q["mask_voxels"] == 61
    assert q["mask_volume_ml"] == pytest.approx(61 * 0.5 * 0.8 * 2.5 / 1000)
    assert q["components"] == 2 and q["largest_component_share"] == pytest.approx(60 / 61, abs=1e-4)
    assert q["touches_border"] is False  # (8, 10, 1) is not on a face of the 10x12x14 grid
    inside = arr[mask > 0]
    assert q["intensity_mean"] == pytest.approx(inside.mean())
    assert q["intensity_sd"] == pytest.approx(inside.std(ddof=1))
    assert q["intensity_p50"] == pytest.approx(np.median(inside))
    assert q["orientation"] == "LPS" and q["size"] == "14x12x10"


def test_mask_qc_border_and_nonfinite():
    arr = np.ones((4, 5, 6), dtype=np.float32)
    arr[1, 1, 1] = np.nan
    mask = np.zeros((4, 5, 6), dtype=np.uint8)
    mask[0, 2, 2] = 1
    q = mask_qc(_image(arr, (1, 1, 1)), _image(mask, (1, 1, 1)))
    assert q["touches_border"] is True and q["nonfinite_voxels"] == 1


def test_flag_outliers_flags_only_the_planted_scan():
    n = 30
    table = pd.DataFrame({
        "patient": [f"P{i}" for i in range(n)], "series": ["CT"] * n,
        "mask_volume_ml": np.linspace(20, 80, n), "intensity_mean": np.linspace(30, 50, n),
        "spacing_x_mm": [0.98] * n, "spacing_z_mm": [3.0] * n, "components": [1] * n,
        "largest_component_share": [1.0] * n, "touches_border": [False] * n, "nonfinite_voxels": [0] * n,
    })
    table.loc[7, "intensity_mean"] = 400.0
    table.loc[12, "components"] = 3
    table.loc[12, "largest_component_share"] = 0.9
    out = flag_outliers(table, 3.5)
    flagged = out.index[out["qc_flags"] != ""].tolist()
    assert flagged == [7, 12]
    assert out.loc[7, "qc_flags"].startswith("intensity mean outlier (robust z=+")
    assert out.loc[12, "qc_flags"] == "3 components (largest 90%)"


def test_flag_outliers_compares_within_series_only():
    table = pd.DataFrame({
        "patient": ["a", "b", "c", "d", "e", "f"], "series": ["CT"] * 3 + ["MR"] * 3,
        "mask_volume_ml": [10.0] * 6, "intensity_mean": [40, 42, 41, 900, 905, 910],
        "spacing_x_mm": [1.0] * 6, "spacing_z_mm": [3.0] * 6, "components": [1] * 6,
        "largest_component_share": [1.0] * 6, "touches_border": [False] * 6, "nonfinite_voxels": [0] * 6,
    })
    assert (flag_outliers(table)["qc_flags"] == "").all()


def test_default_cohort_counts_and_records():
    cfg = load_config(REPO / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    counts = cohort_counts(manifest, patients, cfg).set_index("cohort")
    assert counts.loc["training", "patients"] == 33 and counts.loc["external_test", "patients"] == 18
    assert counts.loc["total", "lung_metastasis=1"] == "19 (37.3%)"  # 19/51 as published for the cohort
    assert counts.loc["training", "lung_metastasis=1"] == "14 (42.4%)"
    assert counts.loc["external_test", "scans MR_T1"] == 18
    rec = acquisition_records(manifest, cfg)
    assert (rec["source"] == "header CSV").all() and len(rec) == 153


def test_image_mask_qc_on_tiny_study(tiny_study):
    cfg = load_config(tiny_study / "study.yaml")
    manifest, _ = load_study(cfg)
    qc = image_mask_qc(manifest, cfg)
    assert len(qc) == 8
    assert (qc["mask_voxels"] == 4 * 5 * 4).all()
    assert qc["mask_volume_ml"].tolist() == pytest.approx([80 * 2 / 1000] * 8)


def test_acquisition_values_from_manifest_columns(tiny_study):
    """Without DICOM headers or a header CSV, DICOM-keyword columns of the manifest are used."""
    df = pd.read_csv(tiny_study / "manifest.csv")
    df["Manufacturer"] = ["SIEMENS", "GE MEDICAL SYSTEMS"] * 4
    df["ManufacturerModelName"] = ["Verio", "Signa HDxt"] * 4
    df["MagneticFieldStrength"] = [3.0, 1.5] * 4
    df["RepetitionTime"] = ["1750", "300"] * 4
    df.to_csv(tiny_study / "manifest.csv", index=False)
    cfg = load_config(tiny_study / "study.yaml")
    manifest, _ = load_study(cfg)
    rec = acquisition_records(manifest, cfg)
    assert (rec["source"] == "manifest").all()
    mr = rec[rec["series"] == "MR"].iloc[0]
    assert (mr["manufacturer"], mr["model"], mr["field_strength_T"], mr["tr_ms"]) == ("GE MEDICAL SYSTEMS", "Signa HDxt", 1.5, 300.0)
