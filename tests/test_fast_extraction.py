"""Exact faster extraction (issue 17): every shortcut gives pyradiomics' own values, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import helpers.features.pyradiomics as wrapper

REAL = ["data/sts/STS_001/CT_image.nii.gz", "data/sts/STS_003/MR_T1_image.nii.gz", "data/sts/STS_002/PET_image.nii.gz"]


def _pyradiomics_bin_edges():
    from radiomics import imageoperations

    wrapper._install_bin_edges_hook()
    assert imageoperations.getBinEdges is wrapper._bin_edges_from_origin
    return wrapper._PYRADIOMICS_GET_BIN_EDGES


def _same_edges(got, want) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def _arrays(rng):
    """Random ROI values of every dtype pyradiomics bins, with ties, signed zeros, flat regions and bin-edge values."""
    yield np.array([7.0])
    yield np.array([50.0, 50.0, 50.0])  # flat on a bin edge: pyradiomics' two-edge case
    yield np.array([-0.0, 0.0, 3.0])
    yield np.array([0.0, -0.0, -3.0, 0.0])
    yield np.array([-0.0, 0.0], dtype=np.float32)
    yield np.array([-25.0, 100.0, 75.0])
    for dtype in (np.int16, np.int32, np.float32, np.float64, np.uint8):
        for _ in range(25):
            n = int(rng.integers(1, 400))
            if np.dtype(dtype).kind == "f":
                values = rng.normal(rng.uniform(-500, 500), rng.uniform(0.01, 300), n)
                values[rng.random(n) < 0.1] = rng.choice([0.0, -0.0, 25.0, -50.0])
            else:
                info = np.iinfo(dtype)
                values = rng.integers(max(info.min, -1200), min(info.max, 2000), n)
            yield values.astype(dtype)
    for path in REAL:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(path)).ravel()
        yield arr
        yield (arr[::7] * 0.37).astype(np.float32)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # small integer dtypes overflow alike in both
@pytest.mark.parametrize("width", [25, 10, 0.25, 1, 3.3, 0.1, 2 ** -3])
def test_fast_bin_edges_equal_pyradiomics_bitwise(width):
    original = _pyradiomics_bin_edges()
    rng = np.random.default_rng(17)
    for values in _arrays(rng):
        assert _same_edges(wrapper._fast_bin_edges(values, binWidth=width), original(values, binWidth=width)), (values[:8], width)


@pytest.mark.parametrize("count", [1, 16, 32, 64])
def test_bin_count_edges_are_pyradiomics_own(count):
    original = _pyradiomics_bin_edges()
    rng = np.random.default_rng(3)
    for values in _arrays(rng):
        assert _same_edges(wrapper._fast_bin_edges(values, binCount=count), original(values, binCount=count))


def test_bin_origin_hook_keeps_working_with_the_fast_edges():
    """The project's ``binOrigin`` still sets the first edge; without it the hook gives pyradiomics' edges."""
    original = _pyradiomics_bin_edges()
    values = np.array([-480.0, -10.0, 120.0])
    token = wrapper._BIN_ORIGIN.set(-500.0)
    try:
        assert wrapper._bin_edges_from_origin(values, binWidth=25)[0] == -500.0
    finally:
        wrapper._BIN_ORIGIN.reset(token)
    assert _same_edges(wrapper._bin_edges_from_origin(values, binWidth=25), original(values, binWidth=25))
