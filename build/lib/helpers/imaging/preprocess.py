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
    "n4_bias_correction",
    "clip_intensities",
    "zscore_normalise",
    "preprocess",
]


def _target_grid(image: sitk.Image, spacing: Sequence[float]) -> tuple[list[int], list[float]]:
    old_size, old_spacing = image.GetSize(), image.GetSpacing()
    # Keep the physical extent: the new grid covers the old one (size rounded up), same origin and direction.
    size = [max(1, int(math.ceil(n * s / t - 1e-6))) for n, s, t in zip(old_size, old_spacing, spacing, strict=True)]
    return size, [float(s) for s in spacing]


def resample_image(image: sitk.Image, spacing_mm: Sequence[float], interpolator: str = "bspline") -> sitk.Image:
    """Resample an image to ``spacing_mm`` (x, y, z), keeping origin, direction and extent.

    The output pixel type is float32 for B-spline/linear interpolation (they
    create non-integer values) and unchanged for nearest neighbour.
    """
    size, spacing = _target_grid(image, spacing_mm)
    out_type = image.GetPixelID() if interpolator == "nearest" else sitk.sitkFloat32
    return sitk.Resample(
        image, size, sitk.Transform(), _INTERPOLATORS[interpolator], image.GetOrigin(), spacing,
        image.GetDirection(), 0.0, out_type,
    )


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


def resample_mask(mask: sitk.Image, spacing_mm: Sequence[float], method: str = "partial_volume", threshold: float = 0.5) -> sitk.Image:
    """Resample a binary mask to ``spacing_mm`` on the same extent (see :func:`mask_on_grid`)."""
    size, spacing = _target_grid(mask, spacing_mm)
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetOrigin(mask.GetOrigin())
    ref.SetDirection(mask.GetDirection())
    return mask_on_grid(mask, ref, method, threshold)


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
        image = resample_image(image, settings.resample_mm, settings.interpolator)
        mask = mask_on_grid(mask, image, settings.mask_resampling, settings.mask_threshold)
    elif mask.GetSize() != image.GetSize() or not np.allclose(mask.GetSpacing(), image.GetSpacing()):
        mask = mask_on_grid(mask, image, settings.mask_resampling, settings.mask_threshold)
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
