"""Image preprocessing for radiomics, configurable per series.

Resampling to a target spacing (B-spline or linear for images; nearest
neighbour or partial-volume thresholding for masks), N4 bias-field correction
(MR), intensity clipping by fixed values or percentiles, and z-score
normalisation. :func:`preprocess` applies the configured chain and returns a
record of every setting used, which goes into the extraction provenance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from helpers.settings.preprocessing import PreprocessSettings

_INTERPOLATORS = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}

__all__ = [
    "PreprocessSettings",
    "resample_image",
    "resample_mask",
    "mask_on_grid",
    "resegment_mask",
    "n4_bias_correction",
    "clip_intensities",
    "zscore_normalise",
    "preprocess",
    "image_depends_on_mask",
    "preprocess_many",
]


_ALIGNMENTS = ("origin", "center")


def _target_grid(image: sitk.Image, spacing: Sequence[float], alignment: str = "origin") -> tuple[list[int], list[float], tuple[float, ...]]:
    """Size, spacing and origin of the resampled grid.

    The new grid covers the old extent (size ``ceil(n * s / t)``). ``origin``
    keeps the old origin (first voxel centre); ``center`` shifts it by
    ``((n - 1) s - (n' - 1) t) / 2`` along each axis so the centres of both grids
    coincide (IBSI 1, grid-centre alignment).
    """
    if alignment not in _ALIGNMENTS:
        raise ValueError(f"grid_alignment must be one of {list(_ALIGNMENTS)}, got {alignment!r}")
    old_size, old_spacing = image.GetSize(), image.GetSpacing()
    size = [max(1, int(math.ceil(n * s / t - 1e-6))) for n, s, t in zip(old_size, old_spacing, spacing, strict=True)]
    origin = tuple(float(o) for o in image.GetOrigin())
    if alignment == "center":
        shift = np.array([((n - 1) * s - (m - 1) * t) / 2.0 for n, s, m, t in zip(old_size, old_spacing, size, spacing)])
        direction = np.array(image.GetDirection(), dtype=float).reshape(image.GetDimension(), image.GetDimension())
        origin = tuple(float(v) for v in np.array(origin) + direction @ shift)
    return size, [float(s) for s in spacing], origin


def resample_image(image: sitk.Image, spacing_mm: Sequence[float], interpolator: str = "bspline",
                   grid_alignment: str = "origin", round_intensities: bool = False) -> sitk.Image:
    """Resample an image to ``spacing_mm`` (x, y, z), keeping direction and extent.

    ``grid_alignment='origin'`` (default) keeps the origin; ``'center'`` aligns
    the centres of the original and the new grid (IBSI 1). The output pixel
    type is float32 for B-spline/linear interpolation (they create non-integer
    values) and unchanged for nearest neighbour; ``round_intensities`` rounds
    the interpolated values to the nearest integer (integer-valued modalities
    such as CT; ties to even, as numpy).
    """
    size, spacing, origin = _target_grid(image, spacing_mm, grid_alignment)
    out_type = image.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    out = sitk.Resample(
        image, size, sitk.Transform(), _INTERPOLATORS[interpolator], origin, spacing,
        image.GetDirection(), 0.0, out_type,
    )
    if round_intensities and interpolator != "nearest":
        rounded = sitk.GetImageFromArray(np.rint(sitk.GetArrayViewFromImage(out)).astype(np.float32))
        rounded.CopyInformation(out)
        out = rounded
    return out


def mask_on_grid(mask: sitk.Image, reference: sitk.Image, method: str = "partial_volume", threshold: float = 0.5) -> sitk.Image:
    """Resample a binary mask onto the grid of ``reference``.

    ``partial_volume``: the mask is linearly interpolated as a fraction and
    voxels with fraction >= ``threshold`` are kept; ``nearest``: nearest
    neighbour. Returns a uint8 0/1 mask.
    """
    binary = sitk.Cast(mask > 0, sitk.sitkFloat32 if method == "partial_volume" else sitk.sitkUInt8)
    if method == "partial_volume":
        frac = sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.Cast(frac >= threshold, sitk.sitkUInt8)
    return sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def resample_mask(mask: sitk.Image, spacing_mm: Sequence[float], method: str = "partial_volume", threshold: float = 0.5,
                  grid_alignment: str = "origin") -> sitk.Image:
    """Resample a binary mask to ``spacing_mm`` on the same extent (see :func:`mask_on_grid`, :func:`resample_image`)."""
    size, spacing, origin = _target_grid(mask, spacing_mm, grid_alignment)
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetOrigin(origin)
    ref.SetDirection(mask.GetDirection())
    return mask_on_grid(mask, ref, method, threshold)


def resegment_mask(image: sitk.Image, mask: sitk.Image, value_range: Sequence[float] | None = None,
                   outlier_sigma: float | None = None) -> sitk.Image:
    """Re-segment a mask by intensity (IBSI 1, re-segmentation), as a uint8 0/1 mask on the mask's grid.

    ``value_range`` (low, high) keeps voxels with low <= value <= high; then
    ``outlier_sigma`` k keeps voxels within mean +- k SD (population SD) of
    the voxels still in the mask. Either may be None; IBSI's combined
    re-segmentation applies the range first, as here.
    """
    arr = sitk.GetArrayViewFromImage(image)
    keep = sitk.GetArrayFromImage(mask) > 0
    if value_range is not None:
        low, high = value_range
        keep &= (arr >= low) & (arr <= high)
    if outlier_sigma is not None and keep.any():
        values = arr[keep].astype(np.float64)
        mean, sd = values.mean(), values.std()
        keep &= (arr >= mean - outlier_sigma * sd) & (arr <= mean + outlier_sigma * sd)
    out = sitk.GetImageFromArray(keep.astype(np.uint8))
    out.CopyInformation(mask)
    return out


def n4_bias_correction(image: sitk.Image, mask: sitk.Image | None = None, shrink_factor: int = 4, iterations: Sequence[int] = (50, 50, 30, 20)) -> sitk.Image:
    """N4 bias-field correction (Tustison 2010), estimated on a shrunk image.

    The field is estimated at ``1/shrink_factor`` resolution for speed, then
    evaluated at full resolution and divided out. ``mask`` (optional) limits
    the voxels used for the estimate; by default Otsu's foreground is used.
    """
    img = sitk.Cast(image, sitk.sitkFloat32)
    fg = sitk.OtsuThreshold(img, 0, 1, 200) if mask is None else sitk.Cast(mask > 0, sitk.sitkUInt8)
    small = sitk.Shrink(img, [shrink_factor] * img.GetDimension())
    small_fg = sitk.Shrink(fg, [shrink_factor] * img.GetDimension())
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.Execute(small, small_fg)
    log_field = corrector.GetLogBiasFieldAsImage(img)
    return img / sitk.Exp(log_field)


def clip_intensities(image: sitk.Image, low: float, high: float) -> sitk.Image:
    """Clamp intensities to [low, high] (e.g. a HU window)."""
    return sitk.Clamp(image, image.GetPixelID(), float(low), float(high))


def zscore_normalise(image: sitk.Image, mask: sitk.Image | None = None) -> sitk.Image:
    """(x - mean) / SD, statistics over ``mask`` voxels when given, else the whole image.

    Raises
    ------
    ValueError
        When the region has no variance (a constant image cannot be normalised).
    """
    arr = sitk.GetArrayViewFromImage(image).astype(np.float64)
    region = arr[sitk.GetArrayViewFromImage(mask) > 0] if mask is not None else arr.ravel()
    mean, sd = float(np.mean(region)), float(np.std(region, ddof=0))
    if not np.isfinite(sd) or sd == 0:
        raise ValueError("z-score normalisation of a constant region: check the image and mask (SD is 0)")
    out = sitk.GetImageFromArray(((arr - mean) / sd).astype(np.float32))
    out.CopyInformation(image)
    return out


def image_depends_on_mask(settings: PreprocessSettings) -> bool:
    """Whether :func:`preprocess` changes the image's intensities according to the mask.

    Percentile clipping and z-scoring in the mask do; everything else reads the image only, so all masks of an
    image get the same preprocessed image (the extraction engine then filters it once for all of them).
    """
    return settings.clip_percentiles is not None or (settings.zscore and settings.zscore_region == "mask")


def _mask_on_image_grid(mask: sitk.Image, image: sitk.Image, settings: PreprocessSettings) -> sitk.Image:
    """The mask on the preprocessed image's grid (clipping and z-scoring keep the grid; only its geometry is read)."""
    if settings.resample_mm is not None or mask.GetSize() != image.GetSize() or not np.allclose(mask.GetSpacing(), image.GetSpacing()):
        return mask_on_grid(mask, image, settings.mask_resampling, settings.mask_threshold)
    return mask


def preprocess_many(image: sitk.Image, masks: list[sitk.Image], settings: PreprocessSettings) -> tuple[sitk.Image, list[sitk.Image], dict]:
    """:func:`preprocess` of one image with several masks, the image preprocessed once (N4, resampling, ...).

    Only for preprocessing that does not read the mask (:func:`image_depends_on_mask`): the image and the record
    are then those of every mask, and each mask is put on the image's grid as :func:`preprocess` does.
    """
    if len(masks) > 1 and image_depends_on_mask(settings):
        raise ValueError("this preprocessing depends on the mask (percentile clipping or z-score in the mask): preprocess each mask")
    image, first, record = preprocess(image, masks[0], settings)
    return image, [first, *(_mask_on_image_grid(m, image, settings) for m in masks[1:])], record


def preprocess(image: sitk.Image, mask: sitk.Image, settings: PreprocessSettings) -> tuple[sitk.Image, sitk.Image, dict]:
    """Apply the configured preprocessing chain to an image and its mask.

    Order: N4 (native grid) -> resampling -> clipping -> z-score. The mask is
    brought onto the final image grid.

    Returns
    -------
    (image, mask, record)
        ``record`` holds every setting and the derived values (percentile
        clip limits, z-score mean/SD), for the provenance.
    """
    record: dict[str, object] = {"settings": settings.model_dump(mode="json"), "native_spacing": list(image.GetSpacing())}
    if settings.n4:
        image = n4_bias_correction(image, None, settings.n4_shrink_factor, settings.n4_iterations)
    if settings.resample_mm is not None:
        image = resample_image(image, settings.resample_mm, settings.interpolator, settings.grid_alignment,
                               settings.round_intensities)
    mask = _mask_on_image_grid(mask, image, settings)
    if settings.clip is not None:
        image = clip_intensities(image, *settings.clip)
    if settings.clip_percentiles is not None:
        inside = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) > 0]
        lo, hi = np.percentile(inside, settings.clip_percentiles)
        record["clip_percentile_values"] = [float(lo), float(hi)]
        image = clip_intensities(image, lo, hi)
    if settings.zscore:
        region = mask if settings.zscore_region == "mask" else None
        arr = sitk.GetArrayViewFromImage(image)
        vals = arr[sitk.GetArrayViewFromImage(mask) > 0] if region is not None else arr
        record["zscore_mean_sd"] = [float(np.mean(vals)), float(np.std(vals))]
        image = zscore_normalise(image, region)
    record["final_spacing"] = list(image.GetSpacing())
    return image, mask, record
