"""Reading images and masks: NIfTI/NRRD/MHA files, DICOM series and RTSTRUCT.

A manifest path may be a file readable by SimpleITK, a folder holding one DICOM
series, or (for masks) a DICOM RTSTRUCT file, which is rasterised onto the grid
of its image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from matplotlib.path import Path as _PolygonPath

from .errors import ImageReadError

__all__ = [
    "sha256_file",
    "is_dicom_file",
    "dicom_series_files",
    "read_image",
    "read_image_info",
    "read_mask",
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
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, ids[0]))


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
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(dicom_series_files(path))
            return reader.Execute()
        return sitk.ReadImage(str(path))
    except ImageReadError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise ImageReadError(f"cannot read image {path}: {first}; replace the file with an intact copy") from None


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
        raise ImageReadError(f"cannot read image header {path}: {str(exc).strip().splitlines()[-1]}") from None
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


def rtstruct_to_mask(rtstruct: str | Path, reference: sitk.Image, roi_name: str | None = None) -> sitk.Image:
    """Rasterise one RTSTRUCT structure onto the grid of ``reference``.

    Each closed planar contour is mapped to continuous voxel indices of the
    reference image and filled on its slice; contours on the same slice are
    combined with even-odd (XOR) logic, so inner contours cut holes, as the
    DICOM standard specifies for nested contours. A voxel is inside when its
    centre is inside the polygon.

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
            inside = _PolygonPath(idx[:, :2]).contains_points(centres).reshape(size[1], size[0])
            mask[int(k[0])] ^= inside
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(reference)
    return out


def read_mask(path: str | Path, reference: sitk.Image | None = None, roi_name: str | None = None) -> sitk.Image:
    """Read a mask: a label image file, a DICOM SEG-like series folder, or an RTSTRUCT.

    Parameters
    ----------
    path : str or Path
        Mask file or folder.
    reference : SimpleITK.Image, optional
        The image; required for RTSTRUCT masks.
    roi_name : str, optional
        RTSTRUCT structure name.
    """
    path = Path(path)
    _check_exists(path, "mask")
    if path.is_file() and is_dicom_file(path):
        modality = getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "Modality", None)
        if modality == "RTSTRUCT":
            if reference is None:
                raise ImageReadError(f"{path} is an RTSTRUCT: its image is needed to rasterise it")
            return rtstruct_to_mask(path, reference, roi_name)
    return read_image(path)


def unique_labels(mask: sitk.Image) -> list[int]:
    """Sorted distinct values of a mask (non-integer values are reported as-is)."""
    arr = sitk.GetArrayViewFromImage(mask)
    values = np.unique(arr)
    return [int(v) if float(v).is_integer() else float(v) for v in values]

