"""A new user's first cohort: the simulator's multi-vendor DICOM study run end to end with zero failed units (issue 12).

DICOM images and the NIfTI masks written from them differ by floating-point noise in origin and spacing (1e-7 mm
here; a NIfTI header stores float32), which validation accepts. Before the study-wide geometry policy, every
Siemens/Philips tumour unit and every habitat unit failed in pyradiomics ("Image/Mask geometry mismatch"), the runner
said "done", and the run stopped later blaming a selection threshold. This test runs the simulated study as
``python -m helpers run`` does: validation, every configured step (QC, extraction with rings, habitats and a second
reader, signature, models, statistics, supplement), with a coarser LASSO path and fewer bootstrap resamples.

The manifest mixes the three mask formats a new user brings (issue 18): a third of the patients keep the simulator's
NIfTI masks, a third have a DICOM SEG (some with a second segment, chosen by ``mask_roi``), a third an RTSTRUCT.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from helpers.imaging.dicom_seg import write_dicom_seg
from helpers.imaging.io import grid_difference, read_image, read_mask
from helpers.runner.pipeline import run_study
from helpers.settings.study import load_config
from helpers.simulation.simulate import simulate_study
from tests.conftest import write_rtstruct

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("first_cohort") / "study"
    # Three vendors (Siemens Verio, GE Signa HDxt, Philips Ingenia CX) in both cohorts; enough training patients of
    # each class for the 5-fold LASSO of the default signature.
    simulate_study(out, patients=32, seed=5, dicom=True, prevalence=0.5, test_fraction=0.25)
    # The simulator's config with two modelling settings lightened (what this test checks is untouched: every step,
    # every extraction unit): 10 LASSO lambdas instead of 50 (the final model's tuning refits the signature's LASSO CV
    # in every fold of every candidate) and 100 bootstrap resamples instead of 500.
    cfg = yaml.safe_load((out / "study.yaml").read_text(encoding="utf-8"))
    for step in cfg["signature"]["steps"]:
        if step["step"] == "lasso":
            step["Cs"] = 10
    cfg["statistics"]["n_bootstrap"] = 100
    (out / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    _mix_mask_formats(out)
    return out


def _mix_mask_formats(study: Path) -> None:
    """A third of the patients get their tumour mask as a DICOM SEG (every other one with a second segment, the
    tumour's far half, so 'mask_roi' must choose), a third as an RTSTRUCT; the rest keep NIfTI."""
    manifest = pd.read_csv(study / "data_manifest.csv", dtype=str, keep_default_na=False)
    manifest["mask_roi"] = ""
    for i, r in enumerate(manifest.itertuples()):
        if i % 3 == 0:
            continue
        image = read_image(study / r.image)
        mask = read_mask(study / r.mask, reference=image)
        folder = study / "dicom_masks" / r.patient
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3 == 1:
            labels, arr = {"tumour": 1}, sitk.GetArrayFromImage(mask)
            if i % 2:
                half = int(np.median(np.nonzero(arr)[0]))
                arr[half:][arr[half:] > 0] = 2
                labels = {"far_half": 2, "tumour_near_half": 1}  # segment 1 is 'far_half': numbers follow this order
            two = sitk.GetImageFromArray(arr)
            two.CopyInformation(mask)
            path = write_dicom_seg(two, study / r.image, folder / "seg.dcm", labels=labels, pseudonym=r.patient, algorithm_name="reader 1",
                                   algorithm_version="1")
            manifest.loc[r.Index, "mask_roi"] = "" if len(labels) == 1 else "tumour_near_half"
        else:
            path = write_rtstruct(mask, study / r.image, folder / "rs.dcm", "GTV")
        manifest.loc[r.Index, ["mask", "mask_sha256"]] = [path.relative_to(study).as_posix(), ""]
    manifest.to_csv(study / "data_manifest.csv", index=False)


def test_the_dicom_images_and_nifti_masks_are_on_slightly_different_grids(dicom_cohort):
    # The premise of the test: the inputs carry the real-world noise the geometry policy has to absorb.
    manifest = pd.read_csv(dicom_cohort / "data_manifest.csv")
    offsets = []
    for r in manifest.groupby("scanner").head(1).itertuples():
        image = read_image(dicom_cohort / r.image)
        nifti_mask = dicom_cohort / "images" / r.patient / "MR_mask.nii.gz"  # the simulator's mask (some rows now use a SEG or RTSTRUCT)
        mask = read_mask(nifti_mask)
        offsets.append(float(np.max(np.abs(np.subtract(image.GetOrigin(), mask.GetOrigin())))))
        assert grid_difference(image, mask) is None  # within the default tolerance: validation accepts it
        conformed = read_mask(nifti_mask, reference=image)
        assert conformed.GetOrigin() == image.GetOrigin() and conformed.GetSpacing() == image.GetSpacing()
    assert manifest["scanner"].nunique() == 3 and max(offsets) > 0


def test_seg_and_rtstruct_masks_read_back_as_the_nifti_masks(dicom_cohort):
    manifest = pd.read_csv(dicom_cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    kinds = manifest["mask"].str.rsplit("/", n=1).str[-1].str.split(".").str[-1].value_counts().to_dict()
    assert kinds == {"gz": 11, "dcm": 21}
    assert (manifest["mask_roi"] == "tumour_near_half").sum() == 6
    nifti = {p.name: p for p in (dicom_cohort / "images").iterdir()}
    for r in manifest[manifest["mask"].str.endswith(".dcm")].itertuples():
        image = read_image(dicom_cohort / r.image)
        original = read_mask(nifti[r.patient] / "MR_mask.nii.gz", reference=image)
        read = read_mask(dicom_cohort / r.mask, reference=image, roi_name=r.mask_roi or None)
        expected = sitk.GetArrayFromImage(original).astype(bool)
        if r.mask_roi:  # the near half only
            expected[int(np.median(np.nonzero(expected)[0])):] = False
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read).astype(bool), expected, err_msg=r.patient)


def test_the_whole_study_runs_with_zero_failed_units(dicom_cohort):
    out = io.StringIO()
    results = run_study(dicom_cohort / "study.yaml", out=out)
    printed = out.getvalue()
    assert [r.status for r in results] == ["ran"] * len(results), printed
    assert sum(r.failed_units for r in results) == 0 and "FAILED" not in printed, printed
    cfg = load_config(dicom_cohort / "study.yaml")
    root = cfg.report_root
    diagnostics = pd.read_parquet(root / "features" / "extraction_diagnostics.parquet")
    assert (diagnostics["status"] != "failed").all()
    ok = diagnostics[diagnostics["status"] == "ok"]
    # Every patient's tumour and ring were extracted (both readers for training), on every vendor's images.
    for roi in ("tumour", "ring5mm"):
        assert set(ok.loc[(ok["roi"] == roi) & (ok["reader"] == "reader1"), "patient"]) == set(diagnostics["patient"])
    assert ok["roi"].str.startswith("habitat").any()
    assert pd.read_csv(root / "tables" / "extraction_failures.csv").empty
    # Downstream: the signature kept every patient, the statistics and the supplement exist.
    radscores = pd.read_parquet(root / "features" / "radscores.parquet")
    assert set(radscores.index) == set(diagnostics["patient"])
    assert not (root / "tables" / "excluded_patients.csv").exists()
    assert (root / "tables" / "performance.csv").is_file()
    # The QC table counts the mask voxels each format gave (NIfTI, SEG segment, rasterised RTSTRUCT).
    qc = pd.concat([pd.read_csv(p) for p in (root / "tables").glob("image_mask_qc_*.csv")]).set_index("patient")
    manifest = pd.read_csv(dicom_cohort / "data_manifest.csv", dtype=str, keep_default_na=False).set_index("patient")
    for patient in ("SIM0001", "SIM0002", "SIM0003", "SIM0004"):
        m = manifest.loc[patient]
        expected = read_mask(dicom_cohort / m["mask"], reference=read_image(dicom_cohort / m["image"]), roi_name=m["mask_roi"] or None)
        assert qc.loc[patient, "mask_voxels"] == int(sitk.GetArrayFromImage(expected).sum()) > 0, patient
    # The first run's supplement is complete: the run record existed when it was written (software versions reported),
    # and its methods state the missing-data handling.
    html = (root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    assert "The run left no provenance record" not in html and "Analyses were run in Python 3." in html
    assert "Features missing in more than 10% of the training patients were left out" in html and "No extraction unit failed" in html
    record = json.loads((root / "provenance" / "latest.json").read_text())
    assert record["finished_utc"] and all(s["failed_units"] == 0 for s in record["steps"])
