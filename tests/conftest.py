"""Shared fixtures: a tiny synthetic study written to a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

REPO = Path(__file__).resolve().parents[1]


def write_volume(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """Write a z,y,x array as an image with the given geometry."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def image_from(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    """An in-memory image from a z,y,x array with the given geometry."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def arr(img: sitk.Image) -> np.ndarray:
    """The z,y,x voxel array of an image (a copy)."""
    return sitk.GetArrayFromImage(img)


def tiny_config(tmp: Path, **overrides) -> dict:
    cfg = {
        "study": "tiny",
        "seed": 7,
        "manifest": "manifest.csv",
        "patient_table": "patients.csv",
        "cohort_rule": "fixed by the test",
        "cohorts": {"train": {"role": "train"}, "test": {"role": "test"}},
        "series": {"CT": {"modality": "CT", "display_window": [-100, 200]}, "MR": {"modality": "MR"}},
        "labels": {"tumour": 1},
        "endpoints": {"binary": "outcome"},
        "steps": [{"name": "acquisition_qc", "notebook": str(REPO / "notebooks" / "01_acquisition_qc.ipynb"), "per_cohort": True}],
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Four patients (two per cohort), CT + MR each, 12x16x10 volumes with a cubic tumour.

    Returns the folder; ``study.yaml``, ``manifest.csv`` and ``patients.csv`` are in it.
    """
    rng = np.random.default_rng(0)
    rows = []
    for i, (patient, cohort) in enumerate([("P01", "train"), ("P02", "train"), ("P03", "test"), ("P04", "test")]):
        for series in ("CT", "MR"):
            arr = rng.normal(40 if series == "CT" else 300, 10, size=(10, 16, 12)).astype(np.int16)
            mask = np.zeros(arr.shape, dtype=np.uint8)
            mask[3:7, 5:10, 4:8] = 1
            img = write_volume(tmp_path / patient / f"{series}_image.nii.gz", arr)
            msk = write_volume(tmp_path / patient / f"{series}_mask.nii.gz", mask)
            rows.append({"patient": patient, "cohort": cohort, "series": series,
                         "image": img.relative_to(tmp_path).as_posix(), "mask": msk.relative_to(tmp_path).as_posix()})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, 0, 1]}).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path), sort_keys=False))
    return tmp_path


@pytest.fixture
def sts_dicom_copy(tmp_path: Path) -> Path:
    """A writable copy of the embedded STS DICOM data (two patients)."""
    dst = tmp_path / "sts_dicom"
    shutil.copytree(REPO / "data" / "sts_dicom", dst)
    return dst
