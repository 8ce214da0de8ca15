"""Reading images and masks: NIfTI/NRRD/MHA files, DICOM series, RTSTRUCT and DICOM SEG.

A manifest path may be a file readable by SimpleITK, a folder holding one DICOM
series, or (for masks) a DICOM RTSTRUCT file, which is rasterised onto the grid
of its image, or a DICOM SEG file, whose frames are placed on that grid
(:mod:`helpers.imaging.dicom_seg`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from helpers.errors import ImageReadError
from helpers.settings.study import GeometryTolerance

__all__ = [
    "sha256_file",
    "is_dicom_file",
    "dicom_series_files",
    "read_image",
    "read_image_info",
    "read_mask",
    "grid_difference",
    "geometry_difference",
    "conform_mask",
    "nonfinite_voxels",
    "rtstruct_roi_names",
    "rtstruct_to_mask",
]


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, or of every file of a folder in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()


def is_dicom_file(path: str | Path) -> bool:
    """True when the file starts with the DICOM preamble and ``DICM`` prefix."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_series_files(folder: str | Path) -> list[str]:
    """Files of the single DICOM image series in ``folder``, sorted by position.

    Raises
    ------
    ImageReadError
        When the folder holds no series or more than one.
    """
    folder = str(folder)
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not ids:
        raise ImageReadError(f"{folder}: no DICOM image series found; point the manifest at a folder of .dcm slices")
    if len(ids) > 1:
        raise ImageReadError(
            f"{folder}: {len(ids)} DICOM series found ({', '.join(ids)}); put each series in its own folder"
        )
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, ids[0]))
    listed = {Path(f).resolve() for f in files}
    stray = [
        p.name for p in sorted(Path(folder).iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR" and p.resolve() not in listed
        and (p.suffix.lower() in (".dcm", ".ima", "") or is_dicom_file(p))
    ]
    if stray:
        # GDCM silently leaves out files it cannot use: the series would be read with slices missing.
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        raise ImageReadError(
            f"{folder}: {len(stray)} file(s) are not readable slices of the series ({shown}): corrupt, without pixel "
            "data, or another DICOM object (e.g. an RTSTRUCT); re-export the complete series, or move non-image files "
            "out of the folder"
        )
    return files


#: Largest relative deviation of a DICOM slice step from the series' median step (larger: a slice is missing).
SLICE_STEP_RTOL = 0.05


def _check_slice_steps(folder: str | Path, reader: sitk.ImageSeriesReader, files: list[str]) -> None:
    """Raise when the slice positions of a series are not evenly spaced (a missing or duplicated slice)."""
    if len(files) < 3:
        return
    try:
        pos = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(len(files))])
        cosines = np.array([float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")])
    except (RuntimeError, ValueError):
        return  # no ImagePositionPatient / ImageOrientationPatient: nothing to check
    if pos.shape[1] != 3 or cosines.size != 6:
        return
    steps = np.diff(pos @ np.cross(cosines[:3], cosines[3:]))
    median = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - median) > SLICE_STEP_RTOL * abs(median))
    if median == 0 or bad.size:
        i = int(bad[0]) if bad.size else 0
        raise ImageReadError(
            f"{folder}: slice positions are not evenly spaced: {steps[i]:.3f} mm between {Path(files[i]).name} and "
            f"{Path(files[i + 1]).name}, {median:.3f} mm elsewhere; a slice is missing, duplicated or unreadable: "
            "re-export the complete series"
        )


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise ImageReadError(f"{what} not found: {path}; check the path in the manifest")


def read_image(path: str | Path) -> sitk.Image:
    """Read an image file (NIfTI, NRRD, MHA, single DICOM) or a DICOM series folder.

    Raises
    ------
    ImageReadError
        When the path does not exist or cannot be decoded.
    """
    path = Path(path)
    _check_exists(path, "image")
    try:
        if path.is_dir():
            files = dicom_series_files(path)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            reader.MetaDataDictionaryArrayUpdateOn()
            image = reader.Execute()
            _check_slice_steps(path, reader, files)
            return image
        image = sitk.ReadImage(str(path))
        _check_nifti_complete(path)
        return image
    except ImageReadError:
        raise
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read image {path}: {_reader_message(exc)}; replace the file with an intact copy") from None


def _reader_message(exc: RuntimeError) -> str:
    """The informative line of a SimpleITK/ITK reader exception (not its source-file location or a stale errno)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR" in ln:
            return re.sub(r"^.*?ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", ln)
    return lines[-1] if lines else "unknown reader error"


def _nifti_layout(header: bytes) -> tuple[str, int, int, int] | None:
    """(byte order, datatype code, voxel-data offset, voxel count) of a single-file NIfTI-1/2 image.

    ``None`` when ``header`` is not one (other formats, or a .hdr/.img pair whose voxels are in another file).
    """
    if len(header) < 348:
        return None
    for endian in "<>":
        (size,) = struct.unpack(endian + "i", header[:4])
        if size == 348 and header[344:347] == b"n+1":
            dim = struct.unpack(endian + "8h", header[40:56])
            (datatype, bitpix) = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif size == 540 and len(header) >= 540 and header[4:7] == b"n+2":
            (datatype, bitpix) = struct.unpack(endian + "2h", header[12:16])
            dim = struct.unpack(endian + "8q", header[16:80])
            (offset,) = struct.unpack(endian + "q", header[168:176])
        else:
            continue
        if not 1 <= dim[0] <= 7 or bitpix <= 0 or bitpix % 8:
            return None
        return endian, int(datatype), int(offset), math.prod(max(int(d), 1) for d in dim[1 : dim[0] + 1]) * (bitpix // 8)
    return None


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Header + voxel bytes of a single-file NIfTI image (``None``: not one)."""
    layout = _nifti_layout(header)
    return None if layout is None else layout[2] + layout[3]


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def nonfinite_voxels(path: str | Path, image: sitk.Image | None = None) -> tuple[int, int]:
    """Numbers of NaN and of infinite voxels of an image file, as stored on disk.

    ITK's NIfTI reader (5.4) turns NaN and infinite voxels into 0 without a
    warning, so for NIfTI files the stored voxels are read directly; other
    formats keep them and ``image`` (the file read with :func:`read_image`)
    is inspected.
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            layout = _nifti_layout(fh.read(540))
            if layout is None:
                return 0, 0
            endian, datatype, offset, nbytes = layout
            if datatype not in _NIFTI_FLOATS:
                return 0, 0  # integer voxels cannot be NaN
            fh.seek(offset)
            arr = np.frombuffer(fh.read(nbytes), dtype=endian + _NIFTI_FLOATS[datatype])
    else:
        if image is None:
            image = read_image(path)
        arr = sitk.GetArrayViewFromImage(image)
        if arr.dtype.kind != "f":
            return 0, 0
    if np.isfinite(arr).all():
        return 0, 0
    return int(np.isnan(arr).sum()), int(np.isinf(arr).sum())


def _gunzipped_size(path: Path) -> tuple[int, str | None]:
    """Decompressed size of a gzip file and the reason it stopped early (``None`` when intact)."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    except EOFError:
        return total, "the compressed stream ends early"
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return total, f"the compressed data are corrupt ({exc})"
    return total, None


def _check_nifti_complete(path: Path) -> None:
    """Raise when a NIfTI file holds less voxel data than its header announces.

    SimpleITK (ITK 5.4) fills the missing voxels of a truncated NIfTI file
    with zeros without an error; a cut download or copy would then be
    analysed as an image with a black block.
    """
    name = path.name.lower()
    if name.endswith(".nii"):
        with open(path, "rb") as fh:
            expected = _nifti_expected_bytes(fh.read(540))
        if expected is None:
            return
        have, reason = path.stat().st_size, None
    elif name.endswith(".nii.gz"):
        try:
            with gzip.open(path, "rb") as fh:
                expected = _nifti_expected_bytes(fh.read(540))
        except (OSError, EOFError, zlib.error):
            expected = None
        if expected is None:
            return
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            if struct.unpack("<I", fh.read(4))[0] == expected % 2**32:
                return  # the gzip trailer records the full size: intact (the common, cheap case)
        have, reason = _gunzipped_size(path)
        if reason is None and have >= expected:
            return
    else:
        return
    if have < expected or reason:
        why = reason or f"{have} of the {expected} bytes its header announces are present"
        raise ImageReadError(
            f"image {path} is truncated or corrupt: {why}; the file was cut during copy or export: "
            "copy or re-export it again from the source"
        )


def read_image_info(path: str | Path) -> dict:
    """Geometry of an image without reading its voxels (folders: first slice + count).

    Returns
    -------
    dict
        ``size``, ``spacing``, ``origin``, ``direction`` (tuples) and ``pixel_type``.
    """
    path = Path(path)
    _check_exists(path, "image")
    if path.is_dir():
        img = read_image(path)  # series geometry needs every slice position
        return _geometry(img)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageReadError(f"cannot read image header {path}: {_reader_message(exc)}; replace the file with an intact copy") from None
    return {
        "size": tuple(reader.GetSize()),
        "spacing": tuple(reader.GetSpacing()),
        "origin": tuple(reader.GetOrigin()),
        "direction": tuple(reader.GetDirection()),
        "pixel_type": sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    }


def _geometry(img: sitk.Image) -> dict:
    return {
        "size": tuple(img.GetSize()),
        "spacing": tuple(img.GetSpacing()),
        "origin": tuple(img.GetOrigin()),
        "direction": tuple(img.GetDirection()),
        "pixel_type": img.GetPixelIDTypeAsString(),
    }


def rtstruct_roi_names(path: str | Path) -> list[str]:
    """Names of the structures (ROIs) in an RTSTRUCT file."""
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return [str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])]


def _points_in_polygon(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which ``points`` (n, 2) lie inside the closed polygon ``polygon`` (m, 2): even-odd (crossing-number) rule.

    A ray is cast from each point towards +x and the polygon edges it crosses are counted, the closing edge
    from the last vertex back to the first included; an odd count is inside, so a self-touching or
    self-intersecting outline alternates inside/outside like any even-odd fill. Edge (a, b) crosses the ray of
    point p when exactly one end has y >= p.y and the crossing is at or right of p, i.e. when
    ``(b.y - p.y) (a.x - b.x) >= (b.x - p.x) (a.y - b.y)`` has the truth value of ``b.y >= p.y`` (the
    crossings-multiply test of E. Haines, Graphics Gems IV, which is also the arithmetic of matplotlib's
    ``Path.contains_points``, so even points on an edge are classified as it does). Non-finite points and
    polygons of fewer than 3 vertices give False.
    """
    poly = np.asarray(polygon, dtype=float).reshape(-1, 2)
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    inside = np.zeros(len(pts), dtype=bool)
    if len(poly) < 3:
        return inside
    x0, y0 = poly[:, 0], poly[:, 1]  # edge starts
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)  # edge ends; the last edge closes the polygon
    # Only a point strictly above the lowest vertex and not above the highest one can have an edge crossing its ray.
    cand = np.flatnonzero(np.isfinite(pts).all(axis=1) & (pts[:, 1] > y0.min()) & (pts[:, 1] <= y0.max()))
    tx, ty = pts[cand, 0], pts[cand, 1]
    odd = np.zeros(len(cand), dtype=bool)
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        b_above = by >= ty
        odd ^= ((ay >= ty) != b_above) & ((((by - ty) * (ax - bx)) >= ((bx - tx) * (ay - by))) == b_above)
    inside[cand] = odd
    return inside


def rtstruct_to_mask(rtstruct: str | Path, reference: sitk.Image, roi_name: str | None = None) -> sitk.Image:
    """Rasterise one RTSTRUCT structure onto the grid of ``reference``.

    Each closed planar contour is mapped to continuous voxel indices of the
    reference image and filled on its slice; contours on the same slice are
    combined with even-odd (XOR) logic, so inner contours cut holes, as the
    DICOM standard specifies for nested contours. A voxel is inside when its
    centre is inside the polygon (even-odd crossing test, :func:`_points_in_polygon`).

    Parameters
    ----------
    rtstruct : str or Path
        The RTSTRUCT file.
    reference : SimpleITK.Image
        The image the structure was drawn on (its geometry defines the mask grid).
    roi_name : str, optional
        Structure to convert; may be omitted when the file holds exactly one.

    Returns
    -------
    SimpleITK.Image
        A ``sitkUInt8`` mask (0/1) with the reference geometry.

    Raises
    ------
    ImageReadError
        When the file is not an RTSTRUCT, the ROI is absent or ambiguous, or a
        contour is not on an axial slice of the reference grid.
    """
    rtstruct = Path(rtstruct)
    _check_exists(rtstruct, "RTSTRUCT")
    try:
        ds = pydicom.dcmread(str(rtstruct))
    except Exception as exc:  # pydicom raises several types for corrupt files
        raise ImageReadError(f"cannot read RTSTRUCT {rtstruct}: {exc}") from None
    if getattr(ds, "Modality", None) != "RTSTRUCT":
        raise ImageReadError(f"{rtstruct} is not an RTSTRUCT (Modality={getattr(ds, 'Modality', None)!r})")
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    if roi_name is None:
        if len(names) != 1:
            raise ImageReadError(
                f"{rtstruct} holds {len(names)} structures {sorted(names.values())}; "
                "name the one to use in the manifest column 'mask_roi'"
            )
        number = next(iter(names))
    else:
        matches = [n for n, name in names.items() if name == roi_name]
        if not matches:
            raise ImageReadError(
                f"structure '{roi_name}' not in {rtstruct}; available: {sorted(names.values())}; "
                "fix the manifest column 'mask_roi'"
            )
        number = matches[0]

    size = reference.GetSize()
    mask = np.zeros(size[::-1], dtype=bool)  # z, y, x
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    contours = [rc for rc in ds.ROIContourSequence if int(rc.ReferencedROINumber) == number]
    for roi_contour in contours:
        for contour in getattr(roi_contour, "ContourSequence", []):
            if contour.ContourGeometricType not in ("CLOSED_PLANAR", "CLOSEDPLANAR"):
                continue  # points and open contours do not enclose a volume
            pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            idx = np.array([reference.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in pts])
            k = np.round(idx[:, 2])
            if np.ptp(idx[:, 2]) > 0.1 or not (0 <= k[0] < size[2]):
                if 0 <= k[0] < size[2]:
                    raise ImageReadError(
                        f"{rtstruct}: a contour of '{names[number]}' is not on one axial slice of the image grid; "
                        "convert it on an image with the same orientation"
                    )
                continue  # contour outside the image extent
            inside = _points_in_polygon(idx[:, :2], centres).reshape(size[1], size[0])
            mask[int(k[0])] ^= inside
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(reference)
    return out


def grid_difference(reference: sitk.Image, other: sitk.Image, tolerance: GeometryTolerance | None = None, what: str = "mask") -> str | None:
    """How ``other``'s voxel grid differs from ``reference``'s beyond ``tolerance``; ``None`` when within it.

    The one geometry rule of the study (``geometry_tolerance`` in the config):
    sizes equal; spacing within a relative tolerance; origin within an
    absolute distance in mm; direction cosines within an absolute tolerance.
    Validation rejects what this reports, and every reader of a mask puts a
    mask within tolerance on its image's exact grid (:func:`conform_mask`).
    """
    return geometry_difference(_geometry(reference), _geometry(other), tolerance, what)


def geometry_difference(reference: dict, other: dict, tolerance: GeometryTolerance | None = None, what: str = "mask") -> str | None:
    """:func:`grid_difference` on geometry records (``size``, ``spacing``, ``origin``, ``direction``), e.g. from
    :func:`read_image_info`, so validation can compare grids without keeping the voxels."""
    tol = tolerance or GeometryTolerance()
    if tuple(reference["size"]) != tuple(other["size"]):
        return f"{what} size {tuple(other['size'])} differs from image size {tuple(reference['size'])}"
    sp_i, sp_m = np.array(reference["spacing"]), np.array(other["spacing"])
    if np.any(np.abs(sp_i - sp_m) > tol.spacing * sp_i):
        return (f"{what} spacing {tuple(round(float(v), 4) for v in sp_m)} differs from image spacing "
                f"{tuple(round(float(v), 4) for v in sp_i)}")
    shift = float(np.max(np.abs(np.array(reference["origin"]) - np.array(other["origin"]))))
    if shift > tol.origin_mm:
        return f"{what} origin is {shift:.2f} mm from the image origin (tolerance {tol.origin_mm} mm)"
    if np.max(np.abs(np.array(reference["direction"]) - np.array(other["direction"]))) > tol.direction:
        return f"{what} orientation (direction cosines) differs from the image"
    return None


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())


def conform_mask(mask: sitk.Image, image: sitk.Image, tolerance: GeometryTolerance | None = None) -> sitk.Image:
    """The mask on its image's exact grid when their grids agree within ``tolerance``.

    DICOM images and NIfTI masks exported from them routinely differ by
    floating-point noise (1e-7 mm in the origin, 1e-8 in the spacing), which
    validation accepts but pyradiomics, SimpleITK filters and resampling
    would treat as two grids. Within tolerance the voxels are kept and the
    image's geometry copied (same size, no resampling, so no label moves);
    beyond it the mask is returned unchanged (validation reports it, and the
    caller's own handling applies).
    """
    if _same_grid(mask, image) or grid_difference(image, mask, tolerance) is not None:
        return mask
    out = sitk.Image(mask)  # a copy: the caller's image keeps its own geometry
    out.CopyInformation(image)
    return out


def read_mask(
    path: str | Path,
    reference: sitk.Image | None = None,
    roi_name: str | None = None,
    tolerance: GeometryTolerance | None = None,
) -> sitk.Image:
    """Read a mask: a label image file or DICOM series folder, an RTSTRUCT, or a DICOM SEG.

    Parameters
    ----------
    path : str or Path
        Mask file or folder.
    reference : SimpleITK.Image, optional
        The mask's image: required for RTSTRUCT masks (rasterised on its
        grid) and DICOM SEG masks (frames placed on its grid); a label-image
        mask within ``tolerance`` of it is put on its exact grid
        (:func:`conform_mask`).
    roi_name : str, optional
        RTSTRUCT structure name, or DICOM SEG segment label or number (the
        manifest column ``mask_roi``).
    tolerance : GeometryTolerance, optional
        The study's ``geometry_tolerance`` (default: its default values).
    """
    path = Path(path)
    _check_exists(path, "mask")
    if path.is_file() and is_dicom_file(path):
        modality = getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "Modality", None)
        if modality == "RTSTRUCT":
            if reference is None:
                raise ImageReadError(f"{path} is an RTSTRUCT: its image is needed to rasterise it")
            return rtstruct_to_mask(path, reference, roi_name)
        if modality == "SEG":
            from helpers.imaging.dicom_seg import seg_to_mask

            if reference is None:
                raise ImageReadError(f"{path} is a DICOM SEG: its image is needed to place its frames")
            return seg_to_mask(path, reference, roi_name, tolerance)
    mask = read_image(path)
    return mask if reference is None else conform_mask(mask, reference, tolerance)


def unique_labels(mask: sitk.Image) -> list[int]:
    """Sorted distinct values of a mask (non-integer values are reported as-is)."""
    arr = sitk.GetArrayViewFromImage(mask)
    values = np.unique(arr)
    return [int(v) if float(v).is_integer() else float(v) for v in values]

