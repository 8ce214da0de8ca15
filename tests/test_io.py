"""Image, DICOM-series and RTSTRUCT reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from helpers.errors import ImageReadError
from helpers.imaging.io import (
    _points_in_polygon,
    dicom_series_files,
    read_image,
    read_image_info,
    read_mask,
    rtstruct_roi_names,
    rtstruct_to_mask,
    sha256_file,
)

REPO = Path(__file__).resolve().parents[1]
DICOM = REPO / "data" / "sts_dicom"
NIFTI = REPO / "data" / "sts"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("patient", ["STS_001", "STS_002"])
@pytest.mark.parametrize("series", ["CT", "PET", "MR_T1"])
def test_rtstruct_matches_shipped_nifti_mask(patient, series):
    """DICOM series + RTSTRUCT -> mask agrees with the published NIfTI mask (cropped grid).

    The NIfTI masks are on a cropped grid; the RTSTRUCT mask is compared after
    resampling onto it by physical coordinates (nearest neighbour, identity transform).
    """
    image = read_image(DICOM / patient / series / "image")
    mask = read_mask(DICOM / patient / series / "mask" / "RS.dcm", reference=image)
    assert mask.GetSize() == image.GetSize()
    reference = sitk.ReadImage(str(NIFTI / patient / f"{series}_mask.nii.gz"))
    on_ref = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    d = dice(sitk.GetArrayFromImage(on_ref) > 0, sitk.GetArrayFromImage(reference) > 0)
    assert d >= 0.95
    # Nothing of the structure falls outside the cropped grid: voxel counts agree as well.
    assert abs(int(sitk.GetArrayFromImage(mask).sum()) - int(sitk.GetArrayFromImage(reference).sum())) <= 0.05 * sitk.GetArrayFromImage(reference).sum()


def test_dicom_series_geometry_matches_nifti_physical_space():
    image = read_image(DICOM / "STS_001" / "CT" / "image")
    nifti = sitk.ReadImage(str(NIFTI / "STS_001" / "CT_image.nii.gz"))
    assert np.allclose(image.GetSpacing(), nifti.GetSpacing(), atol=1e-3)
    # The NIfTI is a crop: its first voxel is a voxel of the DICOM grid with identical intensity.
    idx = image.TransformPhysicalPointToIndex(nifti.GetOrigin())
    assert image[idx] == nifti[0, 0, 0]
    assert len(dicom_series_files(DICOM / "STS_001" / "CT" / "image")) == image.GetSize()[2]


def test_read_image_info_matches_full_read():
    path = NIFTI / "STS_002" / "PET_image.nii.gz"
    info = read_image_info(path)
    img = sitk.ReadImage(str(path))
    assert info["size"] == img.GetSize() and info["spacing"] == img.GetSpacing()


def test_rtstruct_roi_selection_errors():
    image = read_image(DICOM / "STS_002" / "PET" / "image")
    rs = DICOM / "STS_002" / "PET" / "mask" / "RS.dcm"
    assert rtstruct_roi_names(rs) == ["GTV_Mass_PET"]
    with pytest.raises(ImageReadError, match="structure 'GTV' not in .*available: \\['GTV_Mass_PET'\\]"):
        rtstruct_to_mask(rs, image, roi_name="GTV")
    with pytest.raises(ImageReadError, match="is an RTSTRUCT: its image is needed"):
        read_mask(rs)
    with pytest.raises(ImageReadError, match="not an RTSTRUCT"):
        rtstruct_to_mask(next((DICOM / "STS_002" / "PET" / "image").iterdir()), image)


def test_rtstruct_hole_is_cut_by_inner_contour(tmp_path):
    """Nested contours on one slice follow even-odd logic: the inner one is a hole."""
    ref = sitk.Image(20, 20, 3, sitk.sitkInt16)
    ref.SetSpacing((1.0, 1.0, 2.0))
    ds = pydicom.dcmread(DICOM / "STS_002" / "PET" / "mask" / "RS.dcm")
    roi_contour = ds.ROIContourSequence[0]
    outer, inner = pydicom.Dataset(), pydicom.Dataset()
    for c, (lo, hi) in ((outer, (1.5, 16.5)), (inner, (6.5, 11.5))):
        c.ContourGeometricType = "CLOSED_PLANAR"
        pts = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
        c.ContourData = [v for x, y in pts for v in (x, y, 2.0)]
        c.NumberOfContourPoints = 4
    roi_contour.ContourSequence = [outer, inner]
    ds.ROIContourSequence = [roi_contour]
    path = tmp_path / "rs.dcm"
    ds.save_as(path)
    arr = sitk.GetArrayFromImage(rtstruct_to_mask(path, ref))
    assert arr[0].sum() == 0 and arr[2].sum() == 0
    # Edges lie between voxel centres: 15x15 centres inside the outer square minus 5x5 inside the inner one.
    assert arr[1, 9, 9] == 0 and arr[1, 4, 4] == 1
    assert arr[1].sum() == 15 * 15 - 5 * 5
    assert arr[1, 2:17, 2:17].sum() == 200


def _test_polygons(rng: np.random.Generator):
    """Seeded polygons (kind, (m, 2) vertices) on a 0..40 square: convex, concave, self-touching, self-crossing."""
    for _ in range(40):
        m = int(rng.integers(3, 30))
        angles = np.sort(rng.uniform(0, 2 * np.pi, m))
        centre = rng.uniform(12, 28, 2)
        yield "convex", centre + rng.uniform(4, 12) * np.column_stack([np.cos(angles), np.sin(angles)])
        # star-shaped with random radii: concave
        yield "concave", centre + rng.uniform(2, 12, (m, 1)) * np.column_stack([np.cos(angles), np.sin(angles)])
        # two squares whose outline passes twice through their shared corner
        x, y, s, t = *rng.uniform(5, 20, 2), *rng.uniform(2, 10, 2)
        yield "self-touching", np.array([(x, y), (x + s, y), (x + s, y + s), (x + s + t, y + s), (x + s + t, y + s + t),
                                         (x + s, y + s + t), (x + s, y + s), (x, y + s)])
        # two lobes joined where a vertex lies on the bottom edge
        (a, y0), (b, y1) = rng.uniform(2, 15, 2), rng.uniform(25, 38, 2)
        yield "self-touching", np.array([(a, y0), (b, y0), (b, y1), ((a + b) / 2, y0), (a, y1)])
        # random vertex order: edges cross each other
        yield "self-crossing", rng.uniform(0, 40, (m, 2))
    # integer vertices, for the second check below (voxel centres on edges and vertices)
    for _ in range(40):
        yield "integer", rng.integers(0, 40, (int(rng.integers(3, 15)), 2)).astype(float)


def test_points_in_polygon_matches_matplotlib():
    """The RTSTRUCT fill (numpy even-odd crossing test) classifies points as matplotlib's Path.contains_points,
    which rasterised the contours before: on convex, concave, self-touching and self-crossing polygons."""
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(20240613)
    # grid points offset by irrational fractions: never exactly on an edge of the polygons above (except "integer")
    axis = np.arange(-2.0, 42.0, 0.5)
    xx, yy = np.meshgrid(axis + (np.sqrt(2) - 1), axis + (np.sqrt(5) - 2))
    off_edge = np.column_stack([xx.ravel(), yy.ravel()])
    xx, yy = np.meshgrid(np.arange(-1.0, 42.0), np.arange(-1.0, 42.0))
    on_grid = np.column_stack([xx.ravel(), yy.ravel()])
    kinds = set()
    for kind, poly in _test_polygons(rng):
        kinds.add(kind)
        points = on_grid if kind == "integer" else off_edge
        ours = _points_in_polygon(poly, points)
        ref = MplPath(poly).contains_points(points)
        assert ours.dtype == bool and ours.shape == (len(points),)
        # Same arithmetic as matplotlib (Haines' crossings test): even points exactly on an edge or a vertex agree.
        np.testing.assert_array_equal(ours, ref, err_msg=f"{kind} polygon {poly.tolist()}")
        if kind != "integer":
            assert 0 < ours.sum() < len(points), kind  # the polygon covers some of the grid, not all of it
    assert kinds == {"convex", "concave", "self-touching", "self-crossing", "integer"}
    # Degenerate input: fewer than 3 vertices enclose nothing; non-finite points are outside.
    assert not _points_in_polygon(np.array([[0.0, 0.0], [10.0, 10.0]]), off_edge).any()
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    np.testing.assert_array_equal(_points_in_polygon(square, np.array([[5.0, 5.0], [np.nan, 5.0], [5.0, np.inf]])), [True, False, False])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ImageReadError, match="image not found"):
        read_image(tmp_path / "none.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x00" * 400)
    with pytest.raises(ImageReadError, match="cannot read image"):
        read_image(bad)
    empty_dir = tmp_path / "series"
    empty_dir.mkdir()
    with pytest.raises(ImageReadError, match="no DICOM image series found"):
        read_image(empty_dir)


def test_sha256_file_and_folder(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    # Published SHA-256 test vector of "abc" (FIPS 180-2).
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    before = sha256_file(tmp_path)
    (tmp_path / "b.txt").write_bytes(b"")
    assert sha256_file(tmp_path) != before


# -- conform_mask: the study's geometry policy (issue 12) ------------------------------------------------------
def test_conform_mask_copies_the_image_grid_within_tolerance_only():
    import numpy as np
    import SimpleITK as sitk

    from helpers.imaging.io import conform_mask, grid_difference
    from helpers.settings.study import GeometryTolerance

    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), dtype=np.int16))
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetOrigin((-120.000000012, 33.5, 7.25))
    arr = np.zeros((4, 5, 6), dtype=np.uint8)
    arr[1:3, 2:4, 2:5] = 1
    near = sitk.GetImageFromArray(arr)
    near.SetSpacing((0.70000003, 0.7, 3.0))
    near.SetOrigin((-120.0000015, 33.5000001, 7.25))
    out = conform_mask(near, image)
    assert (out.GetOrigin(), out.GetSpacing(), out.GetDirection()) == (image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), arr)  # the voxels are kept
    assert near.GetOrigin() == (-120.0000015, 33.5000001, 7.25)  # the input is not modified
    far = sitk.Image(near)
    far.SetOrigin((-119.0, 33.5, 7.25))  # 1 mm: beyond the default 0.5 mm
    assert conform_mask(far, image) is far and "origin is 1.00 mm" in grid_difference(image, far)
    assert conform_mask(far, image, GeometryTolerance(origin_mm=2.0)).GetOrigin() == image.GetOrigin()  # the configured tolerance
    exact = sitk.Image(near)
    exact.CopyInformation(image)
    assert conform_mask(exact, image) is exact
