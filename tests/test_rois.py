"""Tests of helpers.imaging.rois: tumour mask, peritumoral ring and fused region geometry in millimetres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.imaging.rois import fused_region, peritumoral_ring, tumour_mask

from .conftest import arr, image_from

ANISO = (0.5, 0.5, 3.0)  # x, y, z in mm: thin in-plane, thick slices


def brute_force_ring(tumour: np.ndarray, spacing_xyz, width_mm: float) -> np.ndarray:
    """Every voxel centre vs every tumour voxel centre, in mm; the ring rule by exhaustion."""
    sz, sy, sx = spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]
    grid = np.indices(tumour.shape).reshape(3, -1).T * np.array([sz, sy, sx])
    centres = np.argwhere(tumour) * np.array([sz, sy, sx])
    d = np.sqrt(((grid[:, None, :] - centres[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return ((d > 0) & (d <= width_mm + 1e-9)).reshape(tumour.shape)


# -- tumour mask -------------------------------------------------------------
def test_tumour_mask_selects_one_label_and_keeps_geometry():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[0, 0, 0] = 2
    img = image_from(labels, ANISO, origin=(3.0, -2.0, 7.5))
    out = tumour_mask(img, label=1)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSpacing() == img.GetSpacing() and out.GetOrigin() == img.GetOrigin()
    np.testing.assert_array_equal(arr(out), (labels == 1).astype(np.uint8))
    assert arr(tumour_mask(img, label=2)).sum() == 1


def test_tumour_mask_missing_label_lists_present_labels():
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[1, 1, 1] = 2
    with pytest.raises(ValueError, match=r"label 1.*labels present: \[2\]"):
        tumour_mask(image_from(labels))


# -- peritumoral ring ----------------------------------------------------------
@pytest.mark.parametrize("width_mm", [1.0, 2.2, 3.0, 4.1])
def test_ring_single_voxel_anisotropic_matches_brute_force(width_mm):
    tumour = np.zeros((5, 15, 15), np.uint8)
    tumour[2, 7, 7] = 1
    ring = arr(peritumoral_ring(image_from(tumour, ANISO), width_mm))
    expected = brute_force_ring(tumour.astype(bool), ANISO, width_mm)
    np.testing.assert_array_equal(ring.astype(bool), expected)
    # Analytic check: in-plane the ring is a disc of radius width (clipped to the 15 x 15 grid,
    # offsets -7..7 voxels); the next slice is 3 mm away.
    in_plane = np.count_nonzero(ring[2])
    assert in_plane == sum(1 for dy in range(-7, 8) for dx in range(-7, 8)
                           if 0 < math.hypot(0.5 * dy, 0.5 * dx) <= width_mm + 1e-9)
    assert bool(ring[1].any()) == (width_mm >= 3.0)  # voxel exactly 3.0 mm above is included (<=)


@pytest.mark.parametrize("width_mm", [1.2, 3.0, 5.0])
def test_ring_box_tumour_touching_border_matches_brute_force(width_mm):
    tumour = np.zeros((6, 14, 16), np.uint8)
    tumour[0:2, 3:7, 10:16] = 1  # touches the first slice and the last column: ring clipped to the grid
    ring = peritumoral_ring(image_from(tumour, ANISO, origin=(-10.0, 4.0, 2.5)), width_mm)
    expected = brute_force_ring(tumour.astype(bool), ANISO, width_mm)
    got = arr(ring).astype(bool)
    np.testing.assert_array_equal(got, expected)
    assert ring.GetSize() == (16, 14, 6) and ring.GetSpacing() == ANISO
    assert not (got & tumour.astype(bool)).any()  # ring and tumour are disjoint


def test_ring_independent_of_orientation_and_label_selection():
    labels = np.zeros((5, 12, 12), np.uint8)
    labels[2, 5:7, 4:6] = 3
    labels[0, 0, 0] = 1  # another structure, ignored when label=3
    tilted = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 90 degree in-plane rotation: distances unchanged
    ring = arr(peritumoral_ring(image_from(labels, ANISO, direction=tilted), 2.0, label=3)).astype(bool)
    np.testing.assert_array_equal(ring, brute_force_ring(labels == 3, ANISO, 2.0))


def test_ring_body_mask_clipping_and_fused_region():
    tumour = np.zeros((5, 16, 16), np.uint8)
    tumour[2, 6:9, 6:9] = 1
    body = np.zeros_like(tumour)
    body[:, :, :8] = 1  # body ends at x = 8: tumour straddles the edge, ring outside the body must go
    t_img, b_img = image_from(tumour, ANISO), image_from(body, ANISO)
    width = 3.0
    full = brute_force_ring(tumour.astype(bool), ANISO, width)
    ring = arr(peritumoral_ring(t_img, width, body_mask=b_img)).astype(bool)
    np.testing.assert_array_equal(ring, full & body.astype(bool))
    assert ring.any() and not ring[:, :, 8:].any()
    fused = arr(fused_region(t_img, width, body_mask=b_img)).astype(bool)
    # The tumour is kept whole (only the ring is clipped by the body mask).
    np.testing.assert_array_equal(fused, ring | tumour.astype(bool))
    assert not (ring & tumour.astype(bool)).any()


def test_ring_on_image_grid_same_geometry_is_unchanged():
    tumour = np.zeros((4, 10, 10), np.uint8)
    tumour[1:3, 4:6, 4:6] = 1
    t_img = image_from(tumour, ANISO)
    image = image_from(np.zeros(tumour.shape, np.int16), ANISO)
    np.testing.assert_array_equal(arr(peritumoral_ring(t_img, 2.0, image=image)), arr(peritumoral_ring(t_img, 2.0)))


def test_ring_on_coarser_image_grid():
    tumour = np.zeros((4, 12, 12), np.uint8)
    tumour[:, 4:8, 4:8] = 1  # x, y in [4, 8) mm at 1 mm spacing
    t_img = image_from(tumour, (1.0, 1.0, 2.0))
    image = image_from(np.zeros((4, 6, 6), np.int16), (2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.0))
    ring = peritumoral_ring(t_img, 2.0, image=image)
    assert ring.GetSize() == image.GetSize() and ring.GetSpacing() == image.GetSpacing()
    tumour_on_image = arr(sitk.Resample(t_img, image, sitk.Transform(), sitk.sitkNearestNeighbor)).astype(bool)
    np.testing.assert_array_equal(arr(ring).astype(bool), brute_force_ring(tumour_on_image, (2.0, 2.0, 2.0), 2.0))


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), "wide"])
def test_ring_rejects_bad_width(width):
    tumour = np.zeros((3, 3, 3), np.uint8)
    tumour[1, 1, 1] = 1
    with pytest.raises(ValueError, match="width_mm"):
        peritumoral_ring(image_from(tumour), width)


def test_ring_rejects_empty_mask():
    with pytest.raises(ValueError, match="no non-zero voxel"):
        peritumoral_ring(image_from(np.zeros((3, 3, 3), np.uint8)), 2.0)
