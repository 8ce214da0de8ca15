"""Notebook 02 (auto-segmentation and deep features) on a small synthetic study, end to end through the runner."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from helpers.data.manifest import load_study
from helpers.errors import ManifestError
from helpers.runner.pipeline import run_study
from helpers.settings.study import load_config
from helpers.steps.segmentation import with_super_resolution
from helpers.imaging.dicom_seg import write_dicom_seg
from helpers.imaging.io import read_image, read_mask
from helpers.reporting.writer import find_values_in_reports
from tests.conftest import REPO, tiny_config, write_dicom_series, write_rtstruct, write_volume

#: Patients whose images are DICOM series (identifying values planted), with the format of their manual mask.
DICOM_PATIENTS = {"P01": "seg", "P09": "rtstruct", "P10": "nifti"}
PLANTED = {"PatientName": "Doe^Jane", "PatientBirthDate": "19610203", "InstitutionName": "St Example Hospital",
           "AccessionNumber": "ACC-445566", "ReferringPhysicianName": "Who^Doctor", "StudyDate": "20200102", "StudyID": "STUDY-776655"}

# Notebook 02 trains a segmentation network and runs papermill: slow tier.
pytestmark = pytest.mark.slow


def _sphere_study(tmp: Path, n_train: int = 8, n_test: int = 4) -> Path:
    """CT-like volumes with a bright noisy sphere (the tumour); outcome = large vs small sphere."""
    rng = np.random.default_rng(5)
    rows, pts = [], []
    zz, yy, xx = np.mgrid[:14, :24, :24]
    for i in range(n_train + n_test):
        patient, cohort = f"P{i:02d}", "train" if i < n_train else "test"
        outcome = i % 2
        radius = 5.5 if outcome else 3.5
        centre = (7 + rng.integers(-1, 2), 12 + rng.integers(-2, 3), 12 + rng.integers(-2, 3))
        # Voxels are 1 x 1 x 2 mm: the sphere is round in mm.
        inside = ((xx - centre[2]) ** 2 + (yy - centre[1]) ** 2 + (2 * (zz - centre[0])) ** 2) <= radius**2
        image = rng.normal(0, 15, inside.shape) + np.where(inside, 120, 0)
        img = write_volume(tmp / patient / "CT.nii.gz", image.astype(np.int16), spacing=(1.0, 1.0, 2.0))
        msk = write_volume(tmp / patient / "CT_mask.nii.gz", inside.astype(np.uint8), spacing=(1.0, 1.0, 2.0))
        if patient in DICOM_PATIENTS:  # a DICOM series with an identifying header, its mask as NIfTI, SEG or RTSTRUCT
            img = write_dicom_series(sitk.ReadImage(str(img)), tmp / patient / "CT_dicom", f"MRN-{patient}", modality="CT", **PLANTED)
            mask = read_mask(msk, reference=read_image(img))
            if DICOM_PATIENTS[patient] == "seg":
                msk = write_dicom_seg(mask, img, tmp / patient / "seg.dcm", labels={"tumour": 1}, pseudonym=f"MRN-{patient}",
                                      algorithm_name="reader", algorithm_version="1")
            elif DICOM_PATIENTS[patient] == "rtstruct":
                msk = write_rtstruct(mask, img, tmp / patient / "rs.dcm", "GTV")
        rows.append({"patient": patient, "cohort": cohort, "series": "CT", "image": img.relative_to(tmp).as_posix(), "mask": msk.relative_to(tmp).as_posix()})
        pts.append({"patient": patient, "outcome": outcome})
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    pd.DataFrame(pts).to_csv(tmp / "patients.csv", index=False)
    cfg = tiny_config(
        tmp, study="deep", series={"CT": {"modality": "CT"}},
        segmentation={"series": "CT", "labels": {"tumour": 1}, "target_spacing_mm": [1.0, 1.0, 2.0], "patch_size": [16, 16, 8],
                      "clip": {"window": [-100, 300]}, "network": {"filters": [8, 16, 32], "deep_supervision": True, "deep_supervision_heads": 1},
                      "optimizer": {"name": "adam", "lr": 0.01, "schedule": "constant"},
                      "epochs": 12, "iterations_per_epoch": 6, "batch_size": 4, "num_threads": 1, "seed": 1},
        deep_features=[{"series": "CT", "architecture": "resnet18", "input_size": 32, "pca_components": 3, "epochs": 2, "batch_size": 4,
                        "window": [-100, 300], "crop_margin_mm": 3}],
        deep_gradcam_layer="layer3",
        super_resolution={"series": "CT", "settings": {"scale": [1, 1, 2], "patch_size": [16, 16, 8], "patches_per_volume": 2, "generator_width": 8,
                                                       "generator_depth": 1, "discriminator_width": 8, "perceptual_width": 8, "warmup_epochs": 1,
                                                       "epochs": 2, "batch_size": 4, "generator_lr": 1e-3, "inference_tile": 16, "seed": 2}},
        extraction={"presets": [str(tmp / "small.yaml")], "rois": {"tumour": {"kind": "tumour"}}, "series_settings": {"CT": {"binWidth": 25}}},
        steps=[{"name": "segmentation", "notebook": str(REPO / "notebooks" / "02_segmentation_deep_features.ipynb"), "per_cohort": False},
               {"name": "feature_extraction", "notebook": str(REPO / "notebooks" / "03_feature_extraction.ipynb"), "per_cohort": False,
                "depends_on": ["segmentation"]}],
    )
    (tmp / "small.yaml").write_text(yaml.safe_dump({"imageType": {"Original": {}}, "setting": {"label": 1},
                                                    "featureClass": {"firstorder": ["Mean"], "shape": ["VoxelVolume"]}}))
    (tmp / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp / "study.yaml"


@pytest.fixture(scope="module")
def deep_study(tmp_path_factory):
    cfg_path = _sphere_study(tmp_path_factory.mktemp("deep"))
    results = run_study(cfg_path, out=io.StringIO())
    assert [r.status for r in results] == ["ran", "ran"], [r.status for r in results]
    return load_config(cfg_path)


def test_notebook02_segments_and_evaluates(deep_study):
    cfg = deep_study
    root = cfg.report_root
    summary = pd.read_csv(root / "tables" / "segmentation_summary.csv")
    per_patient = pd.read_csv(root / "tables" / "segmentation_dice_per_patient.csv")
    assert set(per_patient["patient"]) == {f"P{i:02d}" for i in range(12)} and set(per_patient["label"]) == {"tumour"}
    # A bright sphere on noise: the small U-Net must find it on the held-out test cohort.
    held_out = per_patient[per_patient["cohort"] == "test"]
    assert held_out["dice"].mean() >= 0.7, held_out[["patient", "dice"]]
    assert set(summary["cohort"]) == {"train", "test"}
    for name in ("figures/segmentation_dice.png", "tables/segmentation_training_history.csv", "segmentation/checkpoints/best.pt"):
        assert (root / name).is_file(), name
    # Predicted masks are on the original image grid, and the automatic-mask manifest validates and points at them.
    img = sitk.ReadImage(str(cfg.base_dir + "/P08/CT.nii.gz"))
    pred = sitk.ReadImage(str(root / "segmentation" / "masks" / "P08.nii.gz"))
    assert pred.GetSize() == img.GetSize() and np.allclose(pred.GetSpacing(), img.GetSpacing()) and np.allclose(pred.GetOrigin(), img.GetOrigin())
    auto = cfg.model_copy(update={"manifest": str(root / "segmentation" / "manifest_automatic_masks.csv")})
    manifest, _ = load_study(auto, check_images=True)
    assert all("segmentation/masks" in p for p in manifest["mask_path"])
    reader2 = cfg.model_copy(update={"manifest": str(root / "segmentation" / "manifest_automatic_as_reader2.csv")})
    manifest2, _ = load_study(reader2, check_images=True)
    assert all("segmentation/masks" in p for p in manifest2["mask_reader2_path"]) and not any("segmentation" in str(Path(p).resolve()) for p in manifest2["mask_path"])


def test_notebook02_writes_dicom_seg_for_dicom_images(deep_study):
    """The predicted masks of the DICOM-series patients are also DICOM SEGs referencing their series: re-read on the
    series they equal the NIfTI predictions; nothing identifying from the source headers reaches the reports."""
    root = deep_study.report_root
    written = sorted(p.stem for p in (root / "segmentation" / "masks_dicom_seg").glob("*.dcm"))
    assert written == sorted(DICOM_PATIENTS)
    for patient in DICOM_PATIENTS:
        image = read_image(Path(deep_study.base_dir) / patient / "CT_dicom")
        seg = read_mask(root / "segmentation" / "masks_dicom_seg" / f"{patient}.dcm", reference=image)
        nifti = read_mask(root / "segmentation" / "masks" / f"{patient}.nii.gz", reference=image)
        assert sitk.GetArrayFromImage(nifti).any(), patient
        np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), sitk.GetArrayFromImage(nifti), err_msg=patient)
    # Whole values only: a 3-letter name part ('Doe') turns up by chance in compressed figures and images.
    values = sorted(set(PLANTED.values()) | {"MRN-P01", "MRN-P09", "MRN-P10"})
    assert find_values_in_reports(root, values) == {}


def test_notebook02_deep_features_fitted_on_training(deep_study):
    cfg = deep_study
    root = cfg.report_root
    table = pd.read_parquet(root / "features" / "deep_features.parquet")
    assert list(table.columns[:3]) == ["CT_deep_pc01", "CT_deep_pc02", "CT_deep_pc03"] and len(table) == 12
    assert table["cohort"].value_counts().to_dict() == {"train": 8, "test": 4}
    # PCA on the 8 training patients: their scores are centred, the test cohort's are not forced to be.
    train = table[table["cohort"] == "train"].drop(columns="cohort")
    np.testing.assert_allclose(train.mean(axis=0).to_numpy(), 0, atol=1e-4)
    pca = pd.read_csv(root / "tables" / "deep_feature_pca.csv")
    assert (pca["training_patients"] == 8).all() and pca["weights"].str.contains("random initialisation").all()
    for name in ("figures/deep_classifier_loss_ct.png", "figures/gradcam_ct.png", "tables/deep_classifier_auc.csv"):
        assert (root / name).is_file(), name


def test_notebook02_super_resolution_outputs(deep_study):
    cfg = deep_study
    root = cfg.report_root
    sr_manifest = pd.read_csv(root / "super_resolution" / "manifest_super_resolution.csv")
    assert set(sr_manifest["series"]) == {"CT_SR"} and len(sr_manifest) == 12
    original = sitk.ReadImage(str(Path(cfg.base_dir) / "P09" / "CT.nii.gz"))
    sr_image = sitk.ReadImage(str(root / "super_resolution" / "P09" / "image.nii.gz"))
    sr_mask = sitk.ReadImage(str(root / "super_resolution" / "P09" / "mask.nii.gz"))
    # Through-plane x2: twice the slices at half the spacing, same physical extent; the mask covers the same volume.
    assert sr_image.GetSize() == (24, 24, 28) and np.allclose(sr_image.GetSpacing(), (1.0, 1.0, 1.0))
    assert sr_image.GetSize()[2] == 2 * original.GetSize()[2] and sr_image.GetSpacing()[2] == pytest.approx(original.GetSpacing()[2] / 2)
    assert np.allclose(np.multiply(sr_image.GetSize(), sr_image.GetSpacing()), np.multiply(original.GetSize(), original.GetSpacing()))
    manual = sitk.ReadImage(str(Path(cfg.base_dir) / "P09" / "CT_mask.nii.gz"))
    vol = lambda m: sitk.GetArrayFromImage(m).sum() * np.prod(m.GetSpacing())  # noqa: E731
    assert vol(sr_mask) == pytest.approx(vol(manual), rel=1e-9)
    # The config derives series CT_SR (CT's modality and extraction settings); notebook 03 adds the SR images to the manifest.
    assert cfg.series["CT_SR"].modality == "CT" and cfg.extraction.series_settings["CT_SR"] == {"binWidth": 25}
    manifest, _ = load_study(cfg, check_images=False)
    both = with_super_resolution(manifest, cfg)
    sr_rows = both[both["series"] == "CT_SR"].set_index("patient")
    assert len(both) == 2 * len(manifest) and len(sr_rows) == 12
    assert (sr_rows["cohort"] == manifest.set_index("patient")["cohort"].reindex(sr_rows.index)).all()
    assert all(Path(p).is_file() for p in sr_rows["image_path"]) and all(Path(p).is_file() for p in sr_rows["mask_path"])
    # ... and extracts the same features from them: the NN-upsampled mask keeps the tumour volume exactly.
    features = pd.read_parquet(root / "features" / "features_small.parquet")
    assert np.allclose(features["CT_SR_tumour_original_shape_VoxelVolume"], features["CT_tumour_original_shape_VoxelVolume"], rtol=1e-9)
    assert features.filter(like="CT_SR_tumour_original_firstorder_Mean").notna().all().all()
    # A patient without its SR image stops notebook 03 with the patient named and the fix.
    broken = Path(cfg.base_dir) / "broken_reports"
    shutil.copytree(root / "super_resolution", broken / cfg.study / "super_resolution")
    listed = pd.read_csv(broken / cfg.study / "super_resolution" / "manifest_super_resolution.csv")
    listed[listed["patient"] != "P03"].to_csv(broken / cfg.study / "super_resolution" / "manifest_super_resolution.csv", index=False)
    with pytest.raises(ManifestError, match=r"P03.*no super-resolved CT image.*re-run the segmentation step"):
        with_super_resolution(manifest, cfg.model_copy(update={"reports_dir": str(broken)}))
    history = pd.read_csv(root / "tables" / "super_resolution_training_history.csv")
    assert len(history) == 2
    for name in ("figures/super_resolution_training.png", "figures/super_resolution_example.png"):
        assert (root / name).is_file(), name
