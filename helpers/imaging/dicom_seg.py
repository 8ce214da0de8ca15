"""DICOM Segmentation objects (SEG): one segment read onto its image's grid; label masks written as SEG.

Reading and writing go through highdicom (the DICOM object model: frame
decoding, bit packing, per-frame plane positions, segment descriptions).
This module only places the frames on the manifest image's voxel grid and
keeps the written objects free of identifying values.

Frames are placed by their plane position and orientation, never by file or
frame order: a SEG whose frames are stored shuffled, or that covers only
some slices (sparse frames), gives the same mask. Fractional segments
(probability or occupancy) are binarised at half their maximum value.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from helpers.errors import ImageReadError
from helpers.settings.study import GeometryTolerance

__all__ = ["SegReference", "is_dicom_seg", "seg_segments", "seg_reference", "seg_to_mask", "write_dicom_seg",
           "FRACTIONAL_THRESHOLD"]

#: A fractional segment's voxel is inside when its value is at least this fraction of the maximum (partial volume 0.5).
FRACTIONAL_THRESHOLD = 0.5

_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class SegReference:
    """What a SEG says it was drawn on: DICOM PatientID, referenced series and frame of reference."""

    patient_id: str
    series_uids: frozenset[str]
    frame_of_reference_uid: str


def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file of modality SEG."""
    from helpers.imaging.io import is_dicom_file

    path = Path(path)
    if not path.is_file() or not is_dicom_file(path):
        return False
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
    except Exception:  # unreadable: not a SEG as far as dispatching is concerned
        return False
    return ds.get("Modality") == "SEG" or str(ds.get("SOPClassUID", "")) == _SEG_SOP_CLASS


def _read(path: Path):
    import highdicom as hd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # highdicom warns about non-conformant but readable attributes
            return hd.seg.segread(str(path))
    except Exception as exc:  # highdicom and pydicom raise several types for malformed objects
        raise ImageReadError(f"cannot read DICOM SEG {path}: {exc}") from None


def _header(source: str | Path | pydicom.Dataset) -> pydicom.Dataset:
    """A SEG's header: the dataset itself, or read from its file (pixel data skipped)."""
    return source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(str(source), stop_before_pixels=True)


def seg_segments(source: str | Path | pydicom.Dataset) -> list[tuple[int, str]]:
    """(segment number, segment label) of every segment of a SEG file or dataset."""
    return [(int(s.SegmentNumber), str(s.get("SegmentLabel", ""))) for s in _header(source).get("SegmentSequence", [])]


def seg_reference(source: str | Path | pydicom.Dataset) -> SegReference:
    """PatientID, referenced SeriesInstanceUIDs and FrameOfReferenceUID of a SEG file or dataset (an already read
    header is not read again)."""
    ds = _header(source)
    series = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    series |= {str(s.SeriesInstanceUID) for st in ds.get("StudiesContainingOtherReferencedInstancesSequence", [])
               for s in st.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s}
    return SegReference(str(ds.get("PatientID", "") or ""), frozenset(series), str(ds.get("FrameOfReferenceUID", "") or ""))


def _listing(segments: list[tuple[int, str]]) -> str:
    return ", ".join(f"{n} '{label}'" for n, label in segments)


def _segment_number(path: Path, segments: list[tuple[int, str]], choice: str | None) -> int:
    """The segment named by ``choice`` (label, else number); the only one when ``choice`` is empty."""
    fix = "name one (label or number) in the manifest column 'mask_roi'"
    if not segments:
        raise ImageReadError(f"{path} is a DICOM SEG without segments (empty SegmentSequence); re-export the segmentation")
    if choice is None or str(choice).strip() == "":
        if len(segments) != 1:
            raise ImageReadError(f"{path} holds {len(segments)} segments ({_listing(segments)}); {fix}")
        return segments[0][0]
    choice = str(choice).strip()
    by_label = [n for n, label in segments if label == choice]
    if len(by_label) > 1:
        raise ImageReadError(f"{path}: {len(by_label)} segments are labelled '{choice}' (numbers {by_label}); "
                             f"give the segment number in the manifest column 'mask_roi' instead")
    if by_label:
        return by_label[0]
    if choice.isdigit() and int(choice) in {n for n, _ in segments}:
        return int(choice)
    raise ImageReadError(f"segment '{choice}' not in {path}; segments: {_listing(segments)}; fix the manifest column 'mask_roi'")


def _index_map(affine: np.ndarray, reference: sitk.Image, tol: GeometryTolerance, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Integer (3x3 signed permutation, offset) taking a SEG volume's (slice, row, column) to the reference's (x, y, z).

    Raises when the SEG's voxels are not voxels of the reference grid (other spacing or orientation, or
    positions between the reference's voxel centres by more than the study's origin tolerance).
    """
    spacing = np.array(reference.GetSpacing())
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    to_index = np.linalg.inv(direction * spacing)  # physical offset -> continuous reference index
    m = to_index @ affine[:3, :3]
    offset = to_index @ (affine[:3, 3] - np.array(reference.GetOrigin()))
    perm = np.round(m)
    ok = (np.abs(np.abs(perm).sum(axis=0) - 1) < 1e-9).all() and (np.abs(perm).sum(axis=1) == 1).all()
    # Relative spacing and direction tolerance of the study rule, applied to the index-space axes.
    if not ok or np.max(np.abs(m - perm)) > max(tol.spacing, tol.direction) * 1.0001:
        raise ImageReadError(
            f"{path}: the SEG's frames are not on the image's voxel grid (its pixel spacing, slice spacing or orientation "
            "differ from the image's); export the segmentation on the image it references")
    shift_mm = np.abs((offset - np.round(offset)) * spacing)
    if shift_mm.max() > tol.origin_mm:
        raise ImageReadError(
            f"{path}: the SEG's frames lie {shift_mm.max():.2f} mm between the image's voxel centres (tolerance "
            f"{tol.origin_mm} mm); export the segmentation on the image it references")
    return perm.astype(int), np.round(offset).astype(int)


def seg_to_mask(path: str | Path, reference: sitk.Image, segment: str | None = None,
                tolerance: GeometryTolerance | None = None) -> sitk.Image:
    """One segment of a DICOM SEG as a 0/1 mask on the grid of ``reference``.

    Parameters
    ----------
    path : str or Path
        The SEG file.
    reference : SimpleITK.Image
        The image the segmentation was drawn on (its grid is the mask's grid).
    segment : str, optional
        Segment label, or segment number; may be omitted when the SEG holds one segment.
    tolerance : GeometryTolerance, optional
        The study's geometry tolerance: how far the SEG's frame positions may be from the reference's voxel
        centres, and its spacing and orientation from the reference's.

    Returns
    -------
    SimpleITK.Image
        A ``sitkUInt8`` mask (0/1) with the reference geometry. Binary segments are read as stored; fractional
        ones are inside where the value is at least :data:`FRACTIONAL_THRESHOLD` of the maximum.

    Raises
    ------
    ImageReadError
        When the file is not a readable SEG, the segment is missing or ambiguous, or its frames are not on the
        reference grid or extend beyond it.
    """
    path = Path(path)
    tol = tolerance or GeometryTolerance()
    seg = _read(path)
    if str(seg.get("Modality", "")) != "SEG":
        raise ImageReadError(f"{path} is not a DICOM SEG (Modality={seg.get('Modality')!r})")
    number = _segment_number(path, seg_segments(seg), segment)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = seg.get_volume(segment_numbers=[number], combine_segments=False, rescale_fractional=True, dtype=np.float32)
    except Exception as exc:  # e.g. frames not on one regular grid, missing plane positions
        raise ImageReadError(f"{path}: the frames of segment {number} cannot be placed as one volume ({exc}); "
                             "re-export the segmentation from the viewer that made it") from None
    values = np.asarray(volume.array)
    if values.ndim == 4:
        values = values[..., 0]
    inside = values >= FRACTIONAL_THRESHOLD if str(seg.SegmentationType) == "FRACTIONAL" else values > 0
    perm, offset = _index_map(np.asarray(volume.affine, dtype=float), reference, tol, path)
    size = np.array(reference.GetSize())  # x, y, z
    out = np.zeros(tuple(size[::-1]), dtype=np.uint8)  # z, y, x
    coords = np.argwhere(inside)  # (slice, row, column) of the SEG volume
    if coords.size:
        xyz = coords @ perm.T + offset
        beyond = ~((xyz >= 0) & (xyz < size)).all(axis=1)
        if beyond.any():
            raise ImageReadError(
                f"{path}: {int(beyond.sum())} voxel(s) of segment {number} lie outside the image's extent; "
                "the SEG was drawn on a larger or shifted image: export it on the image it references")
        out[xyz[:, 2], xyz[:, 1], xyz[:, 0]] = 1
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(reference)
    return mask


# -- writing ---------------------------------------------------------------------------------------------------------------
#: Attributes of the source images that identify the patient or the visit; the SEG gets the study's pseudonym or blanks.
_IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "AccessionNumber", "StudyID",
                "ReferringPhysicianName", "StudyDate", "StudyTime", "StudyDescription", "IssuerOfPatientID",
                "OtherPatientIDs", "OtherPatientIDsSequence", "InstitutionName", "InstitutionAddress", "StationName",
                "OperatorsName", "PerformingPhysicianName", "PatientWeight", "PatientSize", "EthnicGroup")


def _deidentified_headers(files: list[str], pseudonym: str) -> list[pydicom.Dataset]:
    """The source headers highdicom needs, with every identifying value replaced by the pseudonym or removed."""
    out = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for keyword in _IDENTIFYING:
            if keyword in ds:
                delattr(ds, keyword)
        ds.PatientName = pseudonym + "^"  # one-component person name: the trailing caret says so
        ds.PatientID = pseudonym
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDate", "StudyTime"):
            setattr(ds, keyword, "")  # type 2 attributes: present and empty
        out.append(ds)
    return out


def write_dicom_seg(mask: sitk.Image, source_series: str | Path, out_path: str | Path, *, labels: Mapping[str, int],
                    pseudonym: str, algorithm_name: str, algorithm_version: str,
                    series_description: str = "Automatic segmentation") -> Path:
    """Write a label mask as a binary DICOM SEG referencing the source DICOM series it was predicted on.

    Parameters
    ----------
    mask : SimpleITK.Image
        Label mask on the source series' grid (as read by :func:`helpers.imaging.io.read_image`).
    source_series : str or Path
        Folder of the source DICOM series.
    out_path : str or Path
        The SEG file to write.
    labels : mapping label name -> value
        One segment per label present in the configuration (segments numbered 1..N in this order).
    pseudonym : str
        The study's patient id (manifest column ``patient``): written as PatientID and PatientName.
    algorithm_name, algorithm_version : str
        Recorded in each segment's algorithm identification (automatic segmentation).
    series_description : str
        SeriesDescription of the SEG.

    Notes
    -----
    The SEG references the source by its UIDs (study, series, frame of reference and each image's SOP
    instance), which is what viewers such as 3D Slicer and OHIF use to overlay it. It carries no
    identifying value: the patient module holds the pseudonym, and the source's name, birth date, sex,
    accession number, study id, dates and institution are left empty or out. Its own UIDs are derived from
    the source series UID and the mask, so a re-run writes the same UIDs.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from helpers.imaging.io import dicom_series_files

    files = dicom_series_files(source_series)
    sources = _deidentified_headers(files, pseudonym)
    arr = sitk.GetArrayFromImage(mask)  # z, y, x; z in the order of dicom_series_files (read_image's order)
    if arr.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise ImageReadError(f"mask shape {arr.shape} does not match the {len(sources)} slices of "
                             f"{int(sources[0].Rows)}x{int(sources[0].Columns)} in {source_series}")
    segment_map = {int(v): n for n, v in enumerate(labels.values(), start=1)}
    foreign = sorted(set(np.unique(arr).tolist()) - {0} - set(segment_map))
    if foreign:
        raise ImageReadError(f"mask values {foreign} are not configured labels {dict(labels)}")
    numbered = np.zeros(arr.shape, dtype=np.uint8)
    for value, number in segment_map.items():
        numbered[arr == value] = number
    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=algorithm_version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(segment_number=number, segment_label=name,
                                  segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                                  segmented_property_type=codes.SCT.Neoplasm,
                                  algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                  algorithm_identification=algorithm)
        for (name, _), number in zip(labels.items(), segment_map.values(), strict=True)
    ]
    source_uid = str(sources[0].SeriesInstanceUID)
    content = hashlib.sha256(numbered.tobytes()).hexdigest()
    uid = lambda kind: pydicom.uid.generate_uid(entropy_srcs=[source_uid, content, kind, algorithm_name, algorithm_version])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's advisory warnings on the source's own attribute values
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=numbered, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=uid("series"), series_number=9901,
            sop_instance_uid=uid("instance"), instance_number=1, manufacturer="radiomics-study-helpers",
            manufacturer_model_name=algorithm_name, software_versions=algorithm_version, device_serial_number="none",
            series_description=series_description, omit_empty_frames=True,
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(out_path))
    return out_path
