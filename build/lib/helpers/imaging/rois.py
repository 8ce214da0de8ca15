"""Regions of interest: tumour mask, peritumoral ring and fused region.

Every distance is in physical millimetres computed from the voxel spacing, so
the regions are correct on anisotropic grids (e.g. 0.5 x 0.5 x 3 mm). Images
are SimpleITK images: arrays are indexed z, y, x (``sitk.GetArrayFromImage``)
while spacing, origin and size are given x, y, z.

Habitats and the ITH score live in :mod:`helpers.imaging.habitats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from helpers.errors import PerturbationError

__all__ = [
    "tumour_mask",
    "peritumoral_ring",
    "fused_region",
    "perturbed_mask",
]

# Geometry differences below these are rounding noise from file headers, not a different grid.
_SPACING_RTOL = 1e-6
_ORIGIN_ATOL_MM = 1e-4
_DIRECTION_ATOL = 1e-6
# A ring voxel exactly at width_mm must not be lost to floating-point rounding of the distance.
_DISTANCE_RTOL = 1e-9


# -- grids ----------------------------------------------------------------
def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=_SPACING_RTOL, atol=0)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=_ORIGIN_ATOL_MM)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=_DIRECTION_ATOL)
    )


def _label_on_grid(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``mask`` on the grid of ``reference`` (nearest neighbour keeps label values)."""
    if _same_grid(mask, reference):
        return mask
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


def _binary_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(array.astype(np.uint8))
    img.CopyInformation(reference)
    return img


def _check_3d(img: sitk.Image, what: str) -> None:
    if not isinstance(img, sitk.Image):
        raise TypeError(f"{what} must be a SimpleITK.Image, got {type(img).__name__}; read it with helpers.imaging.io.read_image/read_mask")
    if img.GetDimension() != 3:
        raise ValueError(f"{what} is {img.GetDimension()}D; regions of interest need a 3D image (z, y, x)")


# -- tumour and peritumoral ring -------------------------------------------
def tumour_mask(mask: sitk.Image, label: int = 1) -> sitk.Image:
    """Binary mask of one label of a label image.

    Parameters
    ----------
    mask : SimpleITK.Image
        Label image (0 = background).
    label : int, default 1
        Label value of the tumour.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` image, 1 where ``mask == label`` and 0 elsewhere, with the
        geometry of ``mask``.

    Raises
    ------
    ValueError
        When no voxel carries ``label`` (the message lists the labels present).
    """
    _check_3d(mask, "mask")
    arr = sitk.GetArrayViewFromImage(mask)
    binary = arr == label
    if not binary.any():
        present = [int(v) for v in np.unique(arr) if v != 0][:20]
        raise ValueError(
            f"no voxel of the mask has label {label}; labels present: {present or 'none (empty mask)'}; "
            "pass one of them as `label` (see `labels` in the study config)"
        )
    return _binary_image(binary, mask)


def _tumour_array(mask: sitk.Image, label: int | None) -> np.ndarray:
    arr = sitk.GetArrayViewFromImage(mask)
    tumour = arr > 0 if label is None else arr == label
    if not tumour.any():
        which = "non-zero" if label is None else f"label {label}"
        raise ValueError(f"the mask holds no {which} voxel; a ring needs a tumour: check the mask file and `label`")
    return tumour


def _ring_array(tumour: np.ndarray, spacing_xyz: Sequence[float], width_mm: float) -> np.ndarray:
    """Voxels with 0 < distance(centre, nearest tumour voxel centre) <= width_mm."""
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]
    # The ring cannot reach further than width_mm from the tumour, so the distance
    # transform only needs the tumour's bounding box plus that margin (large CTs stay fast).
    margin = np.ceil(width_mm / spacing_zyx).astype(int) + 1
    nz = np.nonzero(tumour)
    lo = np.maximum([n.min() for n in nz] - margin, 0)
    hi = np.minimum([n.max() + 1 for n in nz] + margin, tumour.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    # distance_transform_edt measures, for each non-zero input voxel, the Euclidean
    # distance (in mm via `sampling`) to the nearest zero voxel, i.e. to the nearest tumour voxel centre.
    dist = ndimage.distance_transform_edt(~tumour[box], sampling=spacing_zyx)
    ring = np.zeros(tumour.shape, dtype=bool)
    ring[box] = (dist > 0) & (dist <= width_mm * (1 + _DISTANCE_RTOL))
    return ring


def _check_width(width_mm: float) -> float:
    try:
        width = float(width_mm)
    except (TypeError, ValueError):
        raise ValueError(f"width_mm must be a number of millimetres, got {width_mm!r}") from None
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width_mm must be a positive finite number of millimetres, got {width_mm!r}")
    return width


def _ring_and_tumour(
    mask: sitk.Image, width_mm: float, image: sitk.Image | None, body_mask: sitk.Image | None, label: int | None
) -> tuple[np.ndarray, np.ndarray, sitk.Image]:
    width = _check_width(width_mm)
    _check_3d(mask, "mask")
    grid = mask
    if image is not None:
        _check_3d(image, "image")
        grid = image
        mask = _label_on_grid(mask, image)
    tumour = _tumour_array(mask, label)
    ring = _ring_array(tumour, grid.GetSpacing(), width)
    if body_mask is not None:
        _check_3d(body_mask, "body_mask")
        ring &= sitk.GetArrayFromImage(_label_on_grid(body_mask, grid)) > 0
    return ring, tumour, grid


def peritumoral_ring(
    mask: sitk.Image,
    width_mm: float,
    image: sitk.Image | None = None,
    body_mask: sitk.Image | None = None,
    *,
    label: int | None = None,
) -> sitk.Image:
    """Peritumoral ring: the voxels within ``width_mm`` of the tumour, tumour excluded.

    Inclusion rule: a voxel belongs to the ring when the Euclidean distance in
    millimetres between its centre and the centre of the nearest tumour voxel
    is ``> 0`` and ``<= width_mm`` (distances use the voxel spacing, so the
    ring is correct on anisotropic grids; a relative tolerance of 1e-9 keeps
    voxels exactly at ``width_mm``). Tumour voxels have distance 0 and are
    never in the ring. The ring is computed on a voxel grid, so it is clipped to
    that grid's field of view; with ``body_mask`` it is also clipped to the body.

    Parameters
    ----------
    mask : SimpleITK.Image
        Tumour mask or label image.
    width_mm : float
        Ring width in millimetres (> 0).
    image : SimpleITK.Image, optional
        Image the ring will be used with. The ring is returned on its grid: the
        mask is resampled onto it (nearest neighbour) when the geometries
        differ, and the ring is clipped to the image's field of view. Default:
        the mask's grid.
    body_mask : SimpleITK.Image, optional
        Body (or organ) mask; ring voxels outside it (air, table) are removed.
        Resampled onto the ring's grid (nearest neighbour) when needed.
    label : int, optional
        Tumour label; default: every non-zero voxel of ``mask``.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` ring mask (0/1) on the mask's grid, or the image's grid
        when ``image`` is given. It may be empty when ``body_mask`` removes it all.

    Raises
    ------
    ValueError
        When ``width_mm`` is not a positive number or the mask has no tumour voxel.
    """
    ring, _, grid = _ring_and_tumour(mask, width_mm, image, body_mask, label)
    return _binary_image(ring, grid)


def fused_region(
    mask: sitk.Image,
    width_mm: float,
    image: sitk.Image | None = None,
    body_mask: sitk.Image | None = None,
    *,
    label: int | None = None,
) -> sitk.Image:
    """Tumour plus its peritumoral ring (tumour OR ring).

    The tumour itself is never clipped by ``body_mask``; only the ring is. See
    :func:`peritumoral_ring` for the inclusion rule and the parameters.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` mask (0/1) on the same grid as :func:`peritumoral_ring`.
    """
    ring, tumour, grid = _ring_and_tumour(mask, width_mm, image, body_mask, label)
    return _binary_image(ring | tumour, grid)



# -- mask perturbation ---------------------------------------------------------------
def perturbed_mask(mask: sitk.Image, mode: str, radius_mm: float, *, label: int | None = None) -> sitk.Image:
    """Erode or dilate a mask by a ball of ``radius_mm`` millimetres (a simulated second reader).

    Definition (morphology with the ball B = {offsets d : |d| <= radius_mm},
    distances in mm between voxel centres from the voxel spacing, so the ball
    is correct on anisotropic grids):

    - ``dilate``: a voxel is in the result when the nearest mask voxel centre is
      at most ``radius_mm`` away (the mask grown by ``radius_mm``);
    - ``erode``: a mask voxel is kept when every voxel of the grid within
      ``radius_mm`` of it is a mask voxel, i.e. the nearest background voxel
      centre is more than ``radius_mm`` away. Voxels outside the image count
      as foreground (ITK's default boundary condition), so a tumour cut by the
      field of view is not eroded from the image edge.

    A relative tolerance of 1e-9 treats distances equal to ``radius_mm`` as
    inside the ball. The perturbed mask is used as the "second reader" of
    :func:`icc_table` when only one segmentation exists (e.g. erosion and
    dilation by 1-2 mm, as in the seed studies).

    Parameters
    ----------
    mask : SimpleITK.Image
        3D tumour mask or label image.
    mode : {"erode", "dilate"}
    radius_mm : float
        Radius of the ball in millimetres; at least the smallest voxel
        spacing (smaller balls change nothing).
    label : int, optional
        Label of the tumour; default: every non-zero voxel.

    Returns
    -------
    SimpleITK.Image
        ``sitkUInt8`` mask (0/1) with the geometry of ``mask``.

    Raises
    ------
    PerturbationError
        When the radius is below the smallest spacing (no voxel would change),
        when the mask fills the whole image (nothing to erode), or when erosion
        would remove every voxel; the message gives the largest radius that
        keeps voxels and the fallback (``mode="dilate"`` or a smaller radius).
    ValueError
        For an unknown ``mode``, a non-positive radius or an empty mask.
    """
    if mode not in ("erode", "dilate"):
        raise ValueError(f"mode must be 'erode' or 'dilate', got {mode!r}")
    try:
        radius = float(radius_mm)
    except (TypeError, ValueError):
        raise ValueError(f"radius_mm must be a number of millimetres, got {radius_mm!r}") from None
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius_mm must be a positive finite number of millimetres, got {radius_mm!r}")
    if not isinstance(mask, sitk.Image) or mask.GetDimension() != 3:
        raise ValueError("mask must be a 3D SimpleITK.Image (read it with helpers.imaging.io.read_mask)")
    arr = sitk.GetArrayViewFromImage(mask)
    fg = arr > 0 if label is None else arr == label
    if not fg.any():
        raise ValueError(f"the mask holds no {'non-zero' if label is None else f'label {label}'} voxel; nothing to perturb")
    spacing_zyx = np.asarray(mask.GetSpacing(), dtype=float)[::-1]
    if radius < spacing_zyx.min() * (1 - _DISTANCE_RTOL):
        raise PerturbationError(
            f"radius_mm={radius:g} is smaller than the smallest voxel spacing ({spacing_zyx.min():g} mm): the {mode} would "
            f"change no voxel; use radius_mm >= {spacing_zyx.min():g}"
        )
    limit = radius * (1 + _DISTANCE_RTOL)
    # Only the tumour's bounding box plus a margin matters: further voxels are beyond the ball (dilation), and the
    # nearest background voxel of a tumour voxel always lies within one voxel of the bounding box (erosion).
    reach = np.ceil(radius / spacing_zyx).astype(int) + 1 if mode == "dilate" else np.ones(3, dtype=int)
    nz = np.nonzero(fg)
    lo = np.maximum([n.min() for n in nz] - reach, 0)
    hi = np.minimum([n.max() + 1 for n in nz] + reach, fg.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = fg[box]
    out = np.zeros(fg.shape, dtype=bool)
    if mode == "dilate":
        # distance_transform_edt: distance (mm via `sampling`) from each non-zero voxel to the nearest zero voxel,
        # i.e. here from each voxel to the nearest mask voxel centre.
        out[box] = ndimage.distance_transform_edt(~sub, sampling=spacing_zyx) <= limit
    else:
        if sub.all():
            raise PerturbationError(
                "the mask fills the whole image, so there is no boundary to erode (outside the image counts as "
                "foreground); use mode='dilate' or a mask that is not cropped to the tumour"
            )
        depth = ndimage.distance_transform_edt(sub, sampling=spacing_zyx)
        out[box] = depth > limit
        if not out.any():
            raise PerturbationError(
                f"eroding by {radius:g} mm removes every voxel of the mask (its deepest voxel is {depth.max():g} mm from "
                f"the background); use a radius_mm below {depth.max():g} mm, or fall back to mode='dilate' with the "
                "same radius as the second reader"
            )
    img = sitk.GetImageFromArray(out.astype(np.uint8))
    img.CopyInformation(mask)
    return img
