"""DICOM SEG masks: read onto the manifest image's grid (by plane position, any frame order, sparse frames, binary and
fractional, one segment of several) and written from predicted masks (re-read equal, no identifying values)."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import pack_bits
from pydicom.sr.codedict import codes

from helpers.errors import ImageReadError
from helpers.imaging.dicom_seg import (
    FRACTIONAL_THRESHOLD,
    is_dicom_seg,
    seg_reference,
    seg_segments,
    seg_to_mask,
    write_dicom_seg,
)
from helpers.imaging.io import dicom_series_files, read_image, read_mask
from helpers.reporting.writer import find_values_in_reports
from helpers.settings.study import GeometryTolerance

REPO = Path(__file__).resolve().parents[1]
DICOM = REPO / "data" / "sts_dicom"
NIFTI = REPO / "data" / "sts"


def _on_grid(mask: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """``mask`` on ``grid`` by physical position (nearest neighbour; the shipped NIfTI masks are crops of the DICOM grid)."""
    return sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _description(number: int, label: str):
    return hd.seg.SegmentDescription(segment_number=number, segment_label=label,
                                     segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                                     segmented_property_type=codes.SCT.Neoplasm,
                                     algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)


def _seg(series: Path, pixels: np.ndarray, labels: list[str], out: Path, kind: str = "BINARY", order=None) -> Path:
    """A SEG made by highdicom directly (an independent writer: a viewer's SEG, not this toolkit's)."""
    files = dicom_series_files(series)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if order is not None:  # source images (and their frames) given in another order
        sources, pixels = [sources[i] for i in order], pixels[order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=kind,
            segment_descriptions=[_description(i, label) for i, label in enumerate(labels, start=1)],
            series_instance_uid=hd.UID(), series_number=300, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(str(out))
    return out


@pytest.fixture(scope="module")
def ct001():
    """STS_001's CT series, its RTSTRUCT mask and the published NIfTI mask."""
    image = read_image(DICOM / "STS_001" / "CT" / "image")
    rtstruct = read_mask(DICOM / "STS_001" / "CT" / "mask" / "RS.dcm", reference=image)
    nifti = sitk.ReadImage(str(NIFTI / "STS_001" / "CT_mask.nii.gz"))
    return image, rtstruct, nifti


# -- reading ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patient", ["STS_001", "STS_002"])
@pytest.mark.parametrize("series", ["CT", "PET", "MR_T1"])
def test_seg_of_the_published_mask_reads_back_with_dice_1(patient, series, tmp_path):
    """The published NIfTI mask, put on its DICOM series' grid and stored as a SEG, reads back voxel for voxel."""
    image = read_image(DICOM / patient / series / "image")
    nifti = sitk.ReadImage(str(NIFTI / patient / f"{series}_mask.nii.gz"))
    on_dicom = _on_grid(nifti, image)
    assert _arr(on_dicom).sum() == _arr(nifti).sum() > 0  # the NIfTI grid is a crop of the DICOM grid: nothing lost
    path = _seg(DICOM / patient / series / "image", (_arr(on_dicom) > 0).astype(np.uint8), ["GTV"], tmp_path / "seg.dcm")
    mask = read_mask(path, reference=image)
    assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == image.GetOrigin()
    back = _on_grid(mask, nifti)
    assert _dice(_arr(back), _arr(nifti)) == 1.0 and _arr(back).sum() == _arr(nifti).sum()


def test_seg_equals_the_rtstruct_mask_it_was_made_from(ct001, tmp_path):
    image, rtstruct, _ = ct001
    path = _seg(DICOM / "STS_001" / "CT" / "image", _arr(rtstruct), ["GTV"], tmp_path / "seg.dcm")
    assert is_dicom_seg(path) and not is_dicom_seg(DICOM / "STS_001" / "CT" / "mask" / "RS.dcm")
    np.testing.assert_array_equal(_arr(read_mask(path, reference=image)), _arr(rtstruct))


def test_frames_are_placed_by_position_not_by_order(ct001, tmp_path):
    """Frames stored in a shuffled order (per-frame positions and pixel data permuted together) give the same mask."""
    image, rtstruct, _ = ct001
    path = _seg(DICOM / "STS_001" / "CT" / "image", _arr(rtstruct), ["GTV"], tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    perm = np.random.default_rng(0).permutation(len(frames))
    assert not np.array_equal(perm, np.arange(len(frames)))
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in perm])
    ds.PixelData = pack_bits(frames[perm].ravel())
    shuffled = tmp_path / "shuffled.dcm"
    ds.save_as(shuffled)
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in pydicom.dcmread(shuffled).PerFrameFunctionalGroupsSequence]
    assert z != sorted(z) and z != sorted(z, reverse=True)  # the premise: the stored order is not the slice order
    np.testing.assert_array_equal(_arr(seg_to_mask(shuffled, image)), _arr(rtstruct))


def test_source_images_given_in_another_order(ct001, tmp_path):
    image, rtstruct, _ = ct001
    order = np.random.default_rng(1).permutation(image.GetSize()[2])
    path = _seg(DICOM / "STS_001" / "CT" / "image", _arr(rtstruct), ["GTV"], tmp_path / "seg.dcm", order=order)
    np.testing.assert_array_equal(_arr(seg_to_mask(path, image)), _arr(rtstruct))


def test_sparse_frames_with_gaps(ct001, tmp_path):
    """A segment covering some slices only, with empty slices between them (no frames there), is placed exactly."""
    image, rtstruct, _ = ct001
    arr = _arr(rtstruct).copy()
    filled = np.flatnonzero(arr.any(axis=(1, 2)))
    arr[filled[3]] = 0
    arr[filled[10]: filled[14]] = 0
    path = _seg(DICOM / "STS_001" / "CT" / "image", arr, ["GTV"], tmp_path / "seg.dcm")
    assert int(pydicom.dcmread(path).NumberOfFrames) == int(arr.any(axis=(1, 2)).sum()) < image.GetSize()[2]
    np.testing.assert_array_equal(_arr(seg_to_mask(path, image)), arr)


def test_fractional_segment_is_binarised_at_half_the_maximum(ct001, tmp_path):
    image, rtstruct, _ = ct001
    truth = _arr(rtstruct).astype(bool)
    rng = np.random.default_rng(2)
    prob = np.where(truth, rng.uniform(0.3, 1.0, truth.shape), rng.uniform(0.0, 0.45, truth.shape)).astype(np.float32)
    path = _seg(DICOM / "STS_001" / "CT" / "image", prob, ["GTV"], tmp_path / "seg.dcm", kind="FRACTIONAL")
    stored = np.round(prob * 255) / 255  # PROBABILITY stored as 0..255 (MaximumFractionalValue)
    expected = (stored >= FRACTIONAL_THRESHOLD).astype(np.uint8)
    assert 0 < expected.sum() < truth.sum()  # the threshold matters: part of the tumour is below it
    np.testing.assert_array_equal(_arr(seg_to_mask(path, image)), expected)


@pytest.fixture
def two_segments(ct001, tmp_path):
    """A SEG with segments 1 'GTV' (the tumour's left half) and 2 'Oedema' (its right half)."""
    image, rtstruct, _ = ct001
    arr = _arr(rtstruct).astype(np.uint8)
    split = int(np.median(np.nonzero(arr)[2]))
    labels = arr.copy()
    labels[:, :, split:][arr[:, :, split:] > 0] = 2
    return image, labels, _seg(DICOM / "STS_001" / "CT" / "image", labels, ["GTV", "Oedema"], tmp_path / "two.dcm")


@pytest.mark.parametrize("choice, value", [("GTV", 1), ("Oedema", 2), ("1", 1), ("2", 2)])
def test_segment_chosen_by_label_or_number(two_segments, choice, value):
    image, labels, path = two_segments
    assert seg_segments(path) == [(1, "GTV"), (2, "Oedema")]
    np.testing.assert_array_equal(_arr(read_mask(path, reference=image, roi_name=choice)), (labels == value).astype(np.uint8))


def test_segment_choice_errors_list_the_segments(two_segments, tmp_path):
    image, labels, path = two_segments
    with pytest.raises(ImageReadError, match=r"holds 2 segments \(1 'GTV', 2 'Oedema'\); name one \(label or number\) in the manifest column 'mask_roi'"):
        read_mask(path, reference=image)
    with pytest.raises(ImageReadError, match=r"segment 'Tumour' not in .*; segments: 1 'GTV', 2 'Oedema'; fix the manifest column 'mask_roi'"):
        read_mask(path, reference=image, roi_name="Tumour")
    with pytest.raises(ImageReadError, match="segment '3' not in"):
        read_mask(path, reference=image, roi_name="3")
    with pytest.raises(ImageReadError, match="is a DICOM SEG: its image is needed"):
        read_mask(path)
    same = _seg(DICOM / "STS_001" / "CT" / "image", labels, ["GTV", "GTV"], tmp_path / "same.dcm")
    with pytest.raises(ImageReadError, match=r"2 segments are labelled 'GTV' \(numbers \[1, 2\]\); give the segment number"):
        read_mask(same, reference=image, roi_name="GTV")
    np.testing.assert_array_equal(_arr(read_mask(same, reference=image, roi_name="2")), (labels == 2).astype(np.uint8))


def test_seg_on_another_grid_is_refused(ct001, tmp_path):
    image, rtstruct, _ = ct001
    path = _seg(DICOM / "STS_001" / "CT" / "image", _arr(rtstruct), ["GTV"], tmp_path / "seg.dcm")
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(np.add(image.GetOrigin(), (0.4, 0.0, 0.0))))  # 0.4 mm: within 0.5 mm of the voxel centres
    assert _arr(seg_to_mask(path, shifted)).sum() == _arr(rtstruct).sum()
    with pytest.raises(ImageReadError, match=r"frames lie 0\.40 mm between the image's voxel centres \(tolerance 0\.3 mm\)"):
        seg_to_mask(path, shifted, tolerance=GeometryTolerance(origin_mm=0.3))
    finer = sitk.Image([s * 2 for s in image.GetSize()], sitk.sitkInt16)
    finer.SetSpacing(tuple(s / 2 for s in image.GetSpacing()))
    finer.SetOrigin(image.GetOrigin())
    with pytest.raises(ImageReadError, match="not on the image's voxel grid"):
        seg_to_mask(path, finer)
    cropped = image[:, :, :20]  # the tumour extends beyond slice 20
    with pytest.raises(ImageReadError, match=r"voxel\(s\) of segment 1 lie outside the image's extent"):
        seg_to_mask(path, cropped)


def test_seg_references_its_series_and_frame_of_reference(ct001, tmp_path):
    image, rtstruct, _ = ct001
    path = _seg(DICOM / "STS_001" / "CT" / "image", _arr(rtstruct), ["GTV"], tmp_path / "seg.dcm")
    first = pydicom.dcmread(dicom_series_files(DICOM / "STS_001" / "CT" / "image")[0], stop_before_pixels=True)
    ref = seg_reference(path)
    assert ref.series_uids == {str(first.SeriesInstanceUID)} and ref.frame_of_reference_uid == str(first.FrameOfReferenceUID)


def test_not_a_seg(tmp_path):
    bad = tmp_path / "broken.dcm"
    ds = pydicom.dcmread(DICOM / "STS_001" / "CT" / "mask" / "RS.dcm")
    ds.Modality = "SEG"
    ds.save_as(bad)
    with pytest.raises(ImageReadError, match="cannot read DICOM SEG|DICOM SEG without segments"):
        read_mask(bad, reference=read_image(DICOM / "STS_001" / "CT" / "image"))


# -- writing ---------------------------------------------------------------------------------------------------------------
IDENTIFYING = {"PatientName": "Doe^Jane", "PatientID": "MRN-998877", "PatientBirthDate": "19610203", "InstitutionName": "St Example Hospital",
               "AccessionNumber": "ACC-445566", "ReferringPhysicianName": "Who^Doctor", "StudyDate": "20200102", "StudyID": "STUDY-776655",
               "OtherPatientIDs": "OTHER-1122", "PatientAge": "061Y"}


def test_written_seg_reads_back_equal_and_carries_no_identifying_value(tmp_path, sts_dicom_copy):
    series = sts_dicom_copy / "STS_002" / "MR_T1" / "image"
    for f in series.iterdir():
        ds = pydicom.dcmread(f)
        for keyword, value in IDENTIFYING.items():
            setattr(ds, keyword, value)
        ds.save_as(f)
    image = read_image(series)
    truth = read_mask(sts_dicom_copy / "STS_002" / "MR_T1" / "mask" / "RS.dcm", reference=image)
    labels = _arr(truth).astype(np.uint8)
    labels[:, :, int(np.median(np.nonzero(labels)[2])):][labels[:, :, int(np.median(np.nonzero(labels)[2])):] > 0] = 3
    predicted = sitk.GetImageFromArray(labels)
    predicted.CopyInformation(image)
    out = tmp_path / "reports" / "P02.dcm"
    write_dicom_seg(predicted, series, out, labels={"tumour": 1, "necrosis": 3}, pseudonym="P02",
                    algorithm_name="DynUNet", algorithm_version="0.1.0")
    assert seg_segments(out) == [(1, "tumour"), (2, "necrosis")]
    np.testing.assert_array_equal(_arr(read_mask(out, reference=image, roi_name="tumour")), (labels == 1).astype(np.uint8))
    np.testing.assert_array_equal(_arr(read_mask(out, reference=image, roi_name="necrosis")), (labels == 3).astype(np.uint8))
    ds = pydicom.dcmread(out)
    source = pydicom.dcmread(dicom_series_files(series)[0], stop_before_pixels=True)
    assert str(ds.PatientID) == "P02" and str(ds.PatientName) == "P02^" and ds.PatientBirthDate == "" and ds.StudyDate == ""
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg_reference(out).series_uids == {str(source.SeriesInstanceUID)}
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert find_values_in_reports(tmp_path / "reports", sorted(IDENTIFYING.values())) == {}
    # A re-run writes the same UIDs (derived from the source series and the mask).
    again = write_dicom_seg(predicted, series, tmp_path / "again.dcm", labels={"tumour": 1, "necrosis": 3}, pseudonym="P02",
                            algorithm_name="DynUNet", algorithm_version="0.1.0")
    assert pydicom.dcmread(again).SOPInstanceUID == ds.SOPInstanceUID and pydicom.dcmread(again).SeriesInstanceUID == ds.SeriesInstanceUID


def test_write_refuses_a_mask_off_the_series(ct001, tmp_path):
    image, rtstruct, _ = ct001
    with pytest.raises(ImageReadError, match=r"does not match the 59 slices"):
        write_dicom_seg(rtstruct[:, :, :30], DICOM / "STS_001" / "CT" / "image", tmp_path / "x.dcm", labels={"GTV": 1},
                        pseudonym="P01", algorithm_name="a", algorithm_version="1")
    with pytest.raises(ImageReadError, match=r"mask values \[2\] are not configured labels"):
        write_dicom_seg(rtstruct * 2, DICOM / "STS_001" / "CT" / "image", tmp_path / "x.dcm", labels={"GTV": 1},
                        pseudonym="P01", algorithm_name="a", algorithm_version="1")
