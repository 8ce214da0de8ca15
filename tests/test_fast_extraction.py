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


# ----------------------------------------------------------------------------------------------------------
# Several ROIs of one image, filtered once


def _volume(arr: np.ndarray, spacing=(0.8, 0.8, 2.5)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 4.0, 7.5))
    return img


def _masks(shape):
    blocks = [(slice(2, 8), slice(5, 20), slice(4, 18)), (slice(3, 9), slice(12, 26), slice(10, 27)), (slice(5, 6), slice(7, 8), slice(9, 10))]
    out = []
    for block in blocks:
        arr = np.zeros(shape, dtype=np.uint8)
        arr[block] = 1
        out.append(_volume(arr))
    return out  # the last one is a single voxel: pyradiomics refuses it


PARAMS = {
    "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}, "Wavelet": {}, "Square": {}, "Gradient": {}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": ["Contrast", "JointEntropy", "Idmn"], "glszm": None, "ngtdm": None},
}


@pytest.mark.parametrize("setting", [
    {"binWidth": 25},
    {"binCount": 16, "normalize": True},
    {"binWidth": 10, "binOrigin": -3000, "resegmentRange": [-100, 400], "resegmentSigma": 3},
    {"binWidth": 10, "resegmentRange": [0, 300], "resegmentShape": True},
    {"binWidth": 25, "resampledPixelSpacing": [1.5, 1.5, 1.5], "interpolator": "sitkBSpline"},  # plain path
])
def test_many_rois_equal_one_at_a_time(setting):
    rng = np.random.default_rng(5)
    arr = (rng.normal(120, 60, (12, 30, 32)) + np.linspace(0, 90, 32)).astype(np.int16)
    image, masks = _volume(arr), _masks(arr.shape)
    params = [{**PARAMS, "setting": {**setting, "label": 1}}, {**wrapper.without_shape(PARAMS), "setting": {**setting, "label": 1}}]
    params.append(params[0])
    many = wrapper.extract_features_many(image, masks, params)
    assert isinstance(many[2], ValueError) and "1 segmented voxel" in str(many[2])
    for mask, p, got in zip(masks[:2], params[:2], many[:2]):
        features, diagnostics = wrapper.extract_features(image, mask, p)
        assert list(got[0]) == list(features) and _bits(got[0]) == _bits(features)
        assert got[1] == diagnostics
    assert many[0][1]["diagnostics_Mask-original_Hash"] != many[1][1]["diagnostics_Mask-original_Hash"]


def test_sharing_needs_the_same_filters_and_whole_image_filtering():
    base = {**PARAMS, "setting": {"binWidth": 25}}
    assert wrapper.shares_filtered_images([base, wrapper.without_shape(base)])
    assert not wrapper.shares_filtered_images([base, {**base, "setting": {"binWidth": 10}}])
    assert not wrapper.shares_filtered_images([{**base, "setting": {"binWidth": 25, "preCrop": True}}])
    assert not wrapper.shares_filtered_images([{**base, "imageType": {"LBP3D": {}}}])


# ----------------------------------------------------------------------------------------------------------
# The engine against plain pyradiomics on real STS images

_PLAIN_PYRADIOMICS = """
import json, logging, pickle, sys
import radiomics
from radiomics import featureextractor
radiomics.setVerbosity(logging.ERROR)
out = []
for image, mask, params in pickle.load(open(sys.argv[1], "rb")):
    result = featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask)
    out.append({"features": {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")},
                "diagnostics": {k: getattr(v, "tolist", lambda: v)() for k, v in result.items() if k.startswith("diagnostics_")}})
json.dump(out, open(sys.argv[2], "w"), default=str)
"""


def _bits(features: dict) -> dict:
    return {k: np.float64(v).tobytes() for k, v in features.items()}


@pytest.mark.reference
def test_engine_features_equal_plain_pyradiomics_bitwise_on_sts(tmp_path):
    """Tumour, 5 mm ring and the perturbed second-reader masks of two STS patients, CT and T1 MR: the engine
    (one work item per image, filtered once, shared binning, fast bin edges) gives plain pyradiomics' values bit
    for bit, and the same diagnostics (mask hashes per ROI); pyradiomics runs in a fresh interpreter that never
    imports this project."""
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    from helpers.data.manifest import load_study
    from helpers.features import extraction
    from helpers.settings.study import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "study.yaml")
    manifest, _ = load_study(cfg)
    pairs = {("STS_019", "CT"), ("STS_019", "MR_T1"), ("STS_008", "CT")}  # small tumours: the test stays near a minute
    manifest = manifest[[(p, s) in pairs for p, s in zip(manifest["patient"], manifest["series"])]]
    units = extraction.plan_units(manifest, cfg)
    assert {u.roi for u in units} == {"tumour", "ring5mm"} and {u.reader for u in units} == {"reader1", "reader2"}
    result = extraction.run_extraction(units, tmp_path / "cache", progress=False)
    assert result.status_counts()["computed"] == len(units)
    assert len(extraction._work_items(units, range(len(units)))) == 3  # one per image: the sharing really ran
    inputs = []
    for unit in units:
        image, roi, params, _ = extraction._prepare(unit, extraction.read_image(unit.image_path))
        inputs.append((image, roi, params))
    (tmp_path / "in.pkl").write_bytes(pickle.dumps(inputs))
    subprocess.run([sys.executable, "-c", _PLAIN_PYRADIOMICS, str(tmp_path / "in.pkl"), str(tmp_path / "out.json")],
                   check=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONUTF8": "1"})
    import json

    plain = json.loads((tmp_path / "out.json").read_text())
    for unit, rec, want in zip(units, result.records, plain, strict=True):
        assert list(rec["features"]) == list(want["features"]), unit.unit_id
        differing = [k for k, v in _bits(rec["features"]).items() if v != _bits(want["features"])[k]]
        assert not differing, (unit.unit_id, differing[:5])
        assert json.loads(json.dumps(rec["diagnostics"], default=str)) == want["diagnostics"], unit.unit_id
    assert len({rec["diagnostics"]["diagnostics_Mask-original_Hash"] for rec in result.records}) == len(units)


def test_preprocess_many_equals_preprocess_per_mask():
    """One image preprocessed once serves all its masks when the preprocessing does not read them."""
    from helpers.imaging.preprocess import PreprocessSettings, preprocess, preprocess_many

    rng = np.random.default_rng(11)
    image = _volume(rng.normal(100, 30, (12, 30, 32)).astype(np.float32))
    masks = _masks((12, 30, 32))[:2]
    settings = PreprocessSettings(resample_mm=[1.5, 1.5, 2.0], interpolator="bspline", clip=[0, 180], zscore=True)
    shared, shared_masks, record = preprocess_many(image, masks, settings)
    for mask, got in zip(masks, shared_masks, strict=True):
        one, one_mask, one_record = preprocess(image, mask, settings)
        assert sitk.Hash(one) == sitk.Hash(shared) and sitk.Hash(one_mask) == sitk.Hash(got) and one_record == record
    with pytest.raises(ValueError, match="depends on the mask"):
        preprocess_many(image, masks, PreprocessSettings(zscore=True, zscore_region="mask"))
