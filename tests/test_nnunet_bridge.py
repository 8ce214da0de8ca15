"""helpers.imaging.deep.nnunet_bridge: nnU-Net v2 raw-dataset export and prediction import (nnunetv2 itself not needed).

The expected layout follows nnU-Net v2's documentation (documentation/dataset_format.md):
``DatasetXXX_Name/{imagesTr,labelsTr,imagesTs}``, image files ``<case>_<XXXX>.nii.gz`` with a
4-digit channel index, label files ``<case>.nii.gz``, and ``dataset.json`` with ``channel_names``,
``labels`` (``background`` = 0, consecutive integers), ``numTraining`` and ``file_ending``.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from helpers.errors import InputDataError
from helpers.imaging.deep.nnunet_bridge import (
    export_nnunet_dataset,
    import_nnunet_predictions,
    nnunet_cases_from_manifest,
    nnunet_dataset_folder,
    nnunet_label_map,
    read_case_mapping,
)

LABELS = {"organ": 1, "tumour": 3}  # not consecutive: nnU-Net gets 1 and 2
SPACING, ORIGIN = (0.9, 0.9, 2.5), (-20.0, 15.0, 100.0)
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _write(path: Path, arr: np.ndarray, spacing=SPACING, origin=ORIGIN, note: str | None = None) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(DIRECTION)
    if note:
        img.SetMetaData("ITK_FileNotes", note)  # a header note naming the patient must not reach the export
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def _cohort(root: Path, patients: dict[str, str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, (patient, split) in enumerate(patients.items()):
        mask = np.zeros((6, 10, 12), np.uint8)
        mask[1:5, 2:8, 2 + i % 3 : 9] = 1
        mask[2:4, 4:6, 4:7] = 3
        ct = (rng.normal(0, 10, mask.shape) + 40 * mask).astype(np.int16)
        pet = (rng.gamma(2.0, 1.0, mask.shape) + mask).astype(np.float32)
        folder = root / "study" / patient
        rows.append({
            "patient": patient, "cohort": "training" if split == "train" else "external", "split": split,
            "CT": _write(folder / "CT.nii.gz", ct, note=f"Patient {patient}"),
            "PET": _write(folder / "PET.nii.gz", pet),
            "mask": _write(folder / "mask.nii.gz", mask, note=f"Patient {patient}"),
        })
    return pd.DataFrame(rows)


PATIENTS = {"STS_031": "train", "STS_007": "train", "STS_012": "train", "STS_044": "test", "STS_002": "test"}


@pytest.fixture
def exported(tmp_path):
    cases = _cohort(tmp_path, PATIENTS)
    export = export_nnunet_dataset(
        cases, ["CT", "PET"], LABELS, tmp_path / "nnUNet_raw", 42, "Synth", channel_names={"PET": "PET_SUV"},
        description="synthetic test",
    )
    return cases, export


def _geometry(img: sitk.Image):
    return img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


def test_export_layout_and_dataset_json_follow_the_nnunet_v2_format(exported):
    _, export = exported
    ds = export.dataset_dir
    assert ds.name == "Dataset042_Synth" and ds.parent.name == "nnUNet_raw"
    # Case ids: training first, each split in patient order.
    expected_ids = {"STS_007": "case_001", "STS_012": "case_002", "STS_031": "case_003", "STS_002": "case_004", "STS_044": "case_005"}
    assert dict(zip(export.mapping["patient"], export.mapping["case_id"])) == expected_ids
    train_ids, test_ids = ["case_001", "case_002", "case_003"], ["case_004", "case_005"]
    assert sorted(p.name for p in ds.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == [f"{c}_{k:04d}.nii.gz" for c in train_ids for k in (0, 1)]
    assert sorted(p.name for p in (ds / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in train_ids]
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == [f"{c}_{k:04d}.nii.gz" for c in test_ids for k in (0, 1)]
    for p in [*(ds / "imagesTr").iterdir(), *(ds / "imagesTs").iterdir()]:
        assert re.fullmatch(r"case_\d{3}_\d{4}\.nii\.gz", p.name)
    dataset_json = json.loads((ds / "dataset.json").read_text())
    assert dataset_json == export.dataset_json
    assert dataset_json == {
        "channel_names": {"0": "CT", "1": "PET_SUV"},
        "labels": {"background": 0, "organ": 1, "tumour": 2},
        "numTraining": 3,
        "file_ending": ".nii.gz",
        "name": "Synth",
        "description": "synthetic test",
        "overwrite_image_reader_writer": "SimpleITKIO",
    }


def test_exported_cases_pass_nnunet_style_integrity_checks(exported):
    """What nnUNetv2_plan_and_preprocess --verify_dataset_integrity checks: every channel and label, one grid, labels 0..K."""
    cases, export = exported
    ds = export.dataset_dir
    original = cases.set_index("patient")
    for r in export.mapping.itertuples(index=False):
        folder = "imagesTr" if r.split == "train" else "imagesTs"
        ct, pet = (sitk.ReadImage(str(ds / folder / f"{r.case_id}_{k:04d}.nii.gz")) for k in (0, 1))
        src_ct = sitk.ReadImage(str(original.loc[r.patient, "CT"]))
        assert _geometry(ct) == _geometry(pet) == _geometry(src_ct)
        assert np.array_equal(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(src_ct))
        assert ct.GetPixelID() == src_ct.GetPixelID()
        if r.split == "train":
            seg = sitk.ReadImage(str(ds / "labelsTr" / f"{r.case_id}.nii.gz"))
            assert _geometry(seg) == _geometry(ct) and seg.GetPixelID() == sitk.sitkUInt8
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(original.loc[r.patient, "mask"])))
            expected = np.select([truth == 1, truth == 3], [1, 2], 0)
            assert np.array_equal(sitk.GetArrayFromImage(seg), expected)


def test_no_patient_identifier_reaches_the_dataset_folder(exported, tmp_path):
    cases, export = exported
    assert export.mapping_csv == tmp_path / "nnUNet_raw" / "Dataset042_Synth_case_ids.csv"
    assert export.dataset_dir not in export.mapping_csv.parents
    table = read_case_mapping(export.mapping_csv)
    assert list(table.columns) == ["patient", "case_id", "split", "cohort", "dataset"]
    assert set(table["patient"]) == set(PATIENTS) and set(table["dataset"]) == {"Dataset042_Synth"}
    source_note = gzip.decompress(Path(cases.loc[0, "CT"]).read_bytes())
    assert b"Patient STS_031" in source_note  # the inputs do carry the identifier in their header...
    for path in export.dataset_dir.rglob("*"):
        if path.is_file():
            content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            for patient in PATIENTS:  # ...the export does not, in names or contents
                assert patient not in path.name and patient.encode() not in content, path


def test_predictions_round_trip_to_patient_masks_on_the_original_grid(exported, tmp_path):
    cases, export = exported
    pred_dir = tmp_path / "predictions"
    pred_dir.mkdir()
    original = cases.set_index("patient")
    test_rows = export.mapping[export.mapping["split"] == "test"]
    for r in test_rows.itertuples(index=False):
        # nnUNetv2_predict writes <case>.nii.gz on the input's grid, with nnU-Net's consecutive labels.
        ref = sitk.ReadImage(str(export.dataset_dir / "imagesTs" / f"{r.case_id}_0000.nii.gz"))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(original.loc[r.patient, "mask"])))
        pred = sitk.GetImageFromArray(np.select([truth == 1, truth == 3], [1, 2], 0).astype(np.uint8))
        pred.CopyInformation(ref)
        sitk.WriteImage(pred, str(pred_dir / f"{r.case_id}.nii.gz"))
        np.savez(pred_dir / f"{r.case_id}.npz", probabilities=np.zeros(1))
    (pred_dir / "plans.json").write_text("{}")
    (pred_dir / "dataset.json").write_text("{}")
    images = {p: original.loc[p, "CT"] for p in ["STS_044", "STS_002"]}
    written = import_nnunet_predictions(pred_dir, export.mapping_csv, images, LABELS, tmp_path / "masks")
    assert written == [tmp_path / "masks" / "STS_044.nii.gz", tmp_path / "masks" / "STS_002.nii.gz"]
    for patient, path in zip(images, written):
        mask, image = sitk.ReadImage(str(path)), sitk.ReadImage(str(images[patient]))
        assert _geometry(mask) == _geometry(image)
        assert np.array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(sitk.ReadImage(str(original.loc[patient, "mask"]))))

    # A prediction on another grid, a missing prediction and a foreign case id are refused.
    shifted = sitk.ReadImage(str(pred_dir / "case_005.nii.gz"))
    shifted.SetSpacing((0.9, 0.9, 3.0))
    sitk.WriteImage(shifted, str(pred_dir / "case_005.nii.gz"))
    with pytest.raises(InputDataError, match=r"patient STS_044 \(case_005\): the prediction is not on the original image grid"):
        import_nnunet_predictions(pred_dir, export.mapping, images, LABELS, tmp_path / "masks2")
    (pred_dir / "case_005.nii.gz").unlink()
    with pytest.raises(InputDataError, match=r"no prediction for \['STS_044 \(case_005\)'\]"):
        import_nnunet_predictions(pred_dir, export.mapping, images, LABELS, tmp_path / "masks2")
    sitk.WriteImage(pred, str(pred_dir / "case_999.nii.gz"))
    with pytest.raises(InputDataError, match=r"case ids \['case_999'\] that are not in the mapping"):
        import_nnunet_predictions(pred_dir, export.mapping, {"STS_002": images["STS_002"]}, LABELS, tmp_path / "masks2")


def test_export_refuses_inconsistent_inputs(tmp_path):
    cases = _cohort(tmp_path, {"P1": "train", "P2": "test"})
    root = tmp_path / "raw"
    args = (["CT", "PET"], LABELS, root, 7, "Bad")
    moved = cases.copy()
    moved.loc[0, "PET"] = _write(tmp_path / "moved_pet.nii.gz", np.zeros((6, 10, 12), np.float32), origin=(0.0, 0.0, 0.0))
    with pytest.raises(InputDataError, match="patient P1: channel PET is not on the grid of channel CT"):
        export_nnunet_dataset(moved, *args)
    assert not root.exists() or not any(root.iterdir())  # a failed export leaves nothing behind
    wrong_label = cases.copy()
    wrong_label.loc[0, "mask"] = _write(tmp_path / "m.nii.gz", np.full((6, 10, 12), 2, np.uint8))
    with pytest.raises(InputDataError, match=r"patient P1: mask values \[2\] are not study labels"):
        export_nnunet_dataset(wrong_label, *args, overwrite=True)
    no_mask = cases.copy()
    no_mask.loc[0, "mask"] = None
    with pytest.raises(InputDataError, match="training case without mask"):
        export_nnunet_dataset(no_mask, *args, overwrite=True)
    with pytest.raises(InputDataError, match="listed twice"):
        export_nnunet_dataset(pd.concat([cases, cases]), *args, overwrite=True)
    with pytest.raises(InputDataError, match="inside"):
        export_nnunet_dataset(cases, *args, overwrite=True, mapping_csv=root / "Dataset007_Bad" / "ids.csv")
    export_nnunet_dataset(cases, *args, overwrite=True)
    with pytest.raises(InputDataError, match="exists; pass overwrite=True"):
        export_nnunet_dataset(cases, *args)
    again = export_nnunet_dataset(cases.iloc[[0]], *args, overwrite=True)  # stale cases do not survive an overwrite
    assert sorted(p.name for p in (again.dataset_dir / "imagesTs").iterdir()) == []
    with pytest.raises(InputDataError, match="background"):
        nnunet_label_map({"background": 1})
    with pytest.raises(InputDataError, match="1-999"):
        nnunet_dataset_folder(1000, "X")
    assert nnunet_dataset_folder(3, "Liver_CT") == "Dataset003_Liver_CT"


def test_cases_from_manifest_pivots_series_into_channels():
    manifest = pd.DataFrame([
        {"patient": "B", "cohort": "training", "series": "CT", "image": "b_ct", "mask": "b_mask"},
        {"patient": "B", "cohort": "training", "series": "PET", "image": "b_pet", "mask": "b_pet_mask"},
        {"patient": "A", "cohort": "external", "series": "CT", "image": "a_ct", "mask": "a_mask"},
        {"patient": "A", "cohort": "external", "series": "PET", "image": "a_pet", "mask": "a_pet_mask"},
        {"patient": "C", "cohort": "other", "series": "CT", "image": "c_ct", "mask": "c_mask"},
    ])
    cases = nnunet_cases_from_manifest(manifest, ["CT", "PET"], {"training": "train", "external": "test"})
    assert cases.to_dict("records") == [
        {"patient": "A", "cohort": "external", "split": "test", "CT": "a_ct", "PET": "a_pet", "mask": "a_mask"},
        {"patient": "B", "cohort": "training", "split": "train", "CT": "b_ct", "PET": "b_pet", "mask": "b_mask"},
    ]
    with pytest.raises(InputDataError, match=r"patient A: no manifest row for channel series \['MR'\]"):
        nnunet_cases_from_manifest(manifest, ["CT", "MR"], {"external": "test"})


def test_bridge_and_settings_import_without_torch():
    """The study config can embed SegmentationSettings without loading torch/MONAI (seconds, and optional)."""
    code = "import sys, helpers.imaging.deep.nnunet_bridge, helpers.imaging.deep.segmentation; print('torch' in sys.modules, 'monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.split() == ["False", "False"]
