"""Preprocessing: resampling (images and masks), N4, clipping, z-score."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydantic import ValidationError

from helpers.imaging.preprocess import (
    PreprocessSettings,
    clip_intensities,
    mask_on_grid,
    n4_bias_correction,
    preprocess,
    resample_image,
    resample_mask,
    resegment_mask,
    zscore_normalise,
)


def _img(arr, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    return im


def test_resample_keeps_origin_extent_and_reproduces_a_linear_ramp():
    z, y, x = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    ramp = (2.0 * x + 3.0 * y + 0.5 * z * 3.0).astype(np.float32)  # linear in physical mm (z spacing 3)
    image = _img(ramp, spacing=(1.0, 1.0, 3.0), origin=(5.0, -2.0, 10.0))
    out = resample_image(image, (0.5, 0.5, 1.0), "linear")
    assert out.GetSize() == (20, 16, 18) and out.GetOrigin() == image.GetOrigin() and out.GetSpacing() == (0.5, 0.5, 1.0)
    arr = sitk.GetArrayFromImage(out)
    # Interior points: linear interpolation of a linear function is exact.
    for k, j, i in [(3, 4, 5), (10, 9, 13), (14, 12, 17)]:
        px, py, pz = i * 0.5, j * 0.5, k * 1.0  # mm from the origin
        assert arr[k, j, i] == pytest.approx(2.0 * px + 3.0 * py + 0.5 * pz, abs=1e-4)
    assert resample_image(image, (0.5, 0.5, 1.0), "bspline").GetPixelID() == sitk.sitkFloat32
    assert resample_image(sitk.Cast(image, sitk.sitkInt16), (2, 2, 3), "nearest").GetPixelID() == sitk.sitkInt16


@pytest.mark.parametrize(("ones", "kept"), [(4, True), (3, False), (8, True)])
def test_partial_volume_mask_threshold(ones, kept):
    """Down-sampling 1 mm -> 2 mm: each new voxel centre sits between 8 old ones (weights 1/8)."""
    m = np.zeros((2, 2, 2), dtype=np.uint8)
    m.ravel()[:ones] = 1
    mask = _img(m, origin=(0.0, 0.0, 0.0))
    ref = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    ref.SetSpacing((2.0, 2.0, 2.0))
    ref.SetOrigin((0.5, 0.5, 0.5))  # centre of the 2x2x2 block
    out = mask_on_grid(mask, ref, "partial_volume", 0.5)
    assert bool(sitk.GetArrayFromImage(out)[0, 0, 0]) is kept


def test_resample_mask_nearest_and_partial_volume_sizes():
    m = np.zeros((4, 10, 10), dtype=np.uint8)
    m[1:3, 2:8, 2:8] = 1
    mask = _img(m, spacing=(1.0, 1.0, 3.0))
    for method in ("nearest", "partial_volume"):
        out = resample_mask(mask, (1.0, 1.0, 1.0), method)
        assert out.GetSize() == (10, 10, 12)
        vol_in = m.sum() * 3.0
        vol_out = sitk.GetArrayFromImage(out).sum() * 1.0
        assert abs(vol_out - vol_in) / vol_in < 0.35  # same object, re-gridded


def test_n4_removes_a_smooth_multiplicative_bias():
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 32), np.linspace(-1, 1, 32), indexing="ij")
    obj = (x**2 + y**2 + z**2 < 0.8).astype(float)
    bias = np.exp(0.4 * x + 0.3 * y)
    arr = (100.0 * obj * bias + rng.normal(0, 1, obj.shape) + 1.0).astype(np.float32)
    image = _img(arr, spacing=(2.0, 2.0, 2.0))
    inside = obj > 0
    cv_before = arr[inside].std() / arr[inside].mean()
    out = sitk.GetArrayFromImage(n4_bias_correction(image, _img(inside.astype(np.uint8), spacing=(2.0, 2.0, 2.0)), shrink_factor=2))
    cv_after = out[inside].std() / out[inside].mean()
    assert cv_before > 0.15 and cv_after < 0.5 * cv_before


def test_clip_and_zscore():
    arr = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    clipped = sitk.GetArrayFromImage(clip_intensities(_img(arr), 5, 20))
    assert clipped.min() == 5 and clipped.max() == 20
    mask = np.zeros_like(arr, dtype=np.uint8)
    mask[1] = 1
    z = sitk.GetArrayFromImage(zscore_normalise(_img(arr), _img(mask)))
    assert z[1].mean() == pytest.approx(0, abs=1e-6) and z[1].std() == pytest.approx(1, abs=1e-6)
    with pytest.raises(ValueError, match="constant region"):
        zscore_normalise(_img(np.ones((2, 2, 2), dtype=np.float32)))


def test_preprocess_chain_records_everything():
    rng = np.random.default_rng(1)
    arr = rng.normal(100, 20, (8, 12, 12)).astype(np.float32)
    m = np.zeros_like(arr, dtype=np.uint8)
    m[2:6, 3:9, 3:9] = 1
    settings = PreprocessSettings(resample_mm=(2.0, 2.0, 2.0), interpolator="linear", clip_percentiles=(1, 99), zscore=True, zscore_region="mask")
    image, mask, record = preprocess(_img(arr), _img(m), settings)
    assert image.GetSpacing() == (2.0, 2.0, 2.0) and mask.GetSize() == image.GetSize()
    assert record["settings"]["resample_mm"] == [2.0, 2.0, 2.0] and len(record["clip_percentile_values"]) == 2
    vals = sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(mask) > 0]
    assert vals.mean() == pytest.approx(0, abs=1e-5)


def test_center_aligned_grid_shares_the_centre_of_the_original_grid():
    """IBSI grid-centre alignment: origin shifted by ((n - 1) s - (n' - 1) t) / 2 per axis (worked out by hand)."""
    image = _img(np.zeros((60, 201, 204), dtype=np.float32), spacing=(0.977, 0.977, 3.0), origin=(-174.3945, -79.6255, -100.4))
    out = resample_image(image, (2.0, 2.0, 2.0), "linear", grid_alignment="center")
    assert out.GetSize() == (100, 99, 90)  # ceil(204 * 0.977 / 2), ceil(201 * 0.977 / 2), 60 * 3 / 2
    # x: (203 * 0.977 - 99 * 2) / 2 = 0.1655; y: (200 * 0.977 - 98 * 2) / 2 = -0.3; z: (59 * 3 - 89 * 2) / 2 = -0.5
    assert out.GetOrigin() == pytest.approx((-174.3945 + 0.1655, -79.6255 - 0.3, -100.4 - 0.5), abs=1e-9)
    centre = lambda im: np.array(im.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in im.GetSize()]))
    assert np.allclose(centre(out), centre(image), atol=1e-9)
    # The default keeps the origin (unchanged behaviour); so does resample_mask.
    assert resample_image(image, (2.0, 2.0, 2.0), "linear").GetOrigin() == image.GetOrigin()
    m = _img(np.ones((60, 201, 204), dtype=np.uint8), spacing=(0.977, 0.977, 3.0), origin=(-174.3945, -79.6255, -100.4))
    assert resample_mask(m, (2.0, 2.0, 2.0), grid_alignment="center").GetOrigin() == pytest.approx(out.GetOrigin(), abs=1e-9)
    with pytest.raises(ValueError, match="grid_alignment"):
        resample_image(image, (2.0, 2.0, 2.0), "linear", grid_alignment="corner")


def test_center_alignment_follows_the_direction_cosines():
    image = _img(np.zeros((3, 4, 5), dtype=np.float32), spacing=(1.0, 1.0, 1.0), origin=(10.0, 20.0, 30.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # LPS flip of x and y
    out = resample_image(image, (2.0, 2.0, 2.0), "linear", grid_alignment="center")
    # sizes 3, 2, 2; index shifts (4 - 4) / 2 = 0, (3 - 2) / 2 = 0.5, (2 - 2) / 2 = 0 mm, x and y negated
    assert out.GetSize() == (3, 2, 2)
    assert out.GetOrigin() == pytest.approx((10.0, 19.5, 30.0))


def test_round_intensities_after_interpolation():
    arr = np.array([[[0.0, 1.0, 2.0, 3.0]]], dtype=np.float32)  # x 0..3 mm, linear ramp 1 per mm
    image = _img(arr)
    out = resample_image(image, (0.4, 1.0, 1.0), "linear", round_intensities=True)
    got = sitk.GetArrayFromImage(out)[0, 0]
    # x = 0, 0.4, ..., 2.8 mm lie inside the image, where the interpolated ramp is x (no ties at .5)
    assert got[:8].tolist() == [0, 0, 1, 1, 2, 2, 2, 3]
    assert np.array_equal(got, np.rint(got)) and out.GetPixelID() == sitk.sitkFloat32
    assert not np.array_equal(sitk.GetArrayFromImage(resample_image(image, (0.4, 1.0, 1.0), "linear")), got)
    settings = PreprocessSettings(resample_mm=(0.4, 1.0, 1.0), interpolator="linear", round_intensities=True, grid_alignment="origin")
    assert np.array_equal(sitk.GetArrayFromImage(preprocess(image, _img(np.ones_like(arr, dtype=np.uint8)), settings)[0])[0, 0], got)


def test_resegment_mask_range_then_outlier_filter():
    values = np.array([[[-1200.0, -1000.0, -10.0, 0.0, 10.0, 400.0, 401.0, 3000.0]]], dtype=np.float32)
    image, mask = _img(values), _img(np.ones_like(values, dtype=np.uint8))
    got = lambda **kw: sitk.GetArrayFromImage(resegment_mask(image, mask, **kw))[0, 0].tolist()
    assert got(value_range=(-1000, 400)) == [0, 1, 1, 1, 1, 1, 0, 0]  # bounds inclusive
    # range first: -1000, -10, 0, 10, 400 remain; mean -120, population SD 466.5; 1 SD keeps [-586.5, 346.5]
    assert got(value_range=(-1000, 400), outlier_sigma=1.0) == [0, 0, 1, 1, 1, 0, 0, 0]
    # the filter alone: mean 200.125 and SD 1195.9 of all 8 values: 1 SD keeps [-995.7, 1396.0]
    assert got(outlier_sigma=1.0) == [0, 0, 1, 1, 1, 1, 1, 0]
    assert got() == [1] * 8


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [({"grid_alignment": "centre"}, "'origin' or 'center'"), ({"resample_mm": (1, 0, 1)}, "positive"), ({"clip": (5, 1)}, "low < high"), ({"clip_percentiles": (50, 120)}, "<= 100"), ({"zscor": True}, "Extra inputs")],
)
def test_settings_validation(kwargs, text):
    with pytest.raises(ValidationError, match=text):
        PreprocessSettings(**kwargs)
