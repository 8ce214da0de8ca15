"""Presets, settings merge, feature naming and the feature-count table."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.features.pyradiomics import (
    EXPECTED_COUNTS,
    available_presets,
    extract_features,
    feature_counts_by_class,
    load_preset,
    merge_settings,
    preset_name,
    split_feature_name,
)

# Appendix S2 of the multi-scanner MRI Ki-67 seed study: the published breakdown of its 1762 features.
SEED1762_PUBLISHED = {
    "Shape": 14, "First-order statistics": 18, "GLCM": 23, "GLRLM": 16, "GLSZM": 16, "NGTDM": 5, "GLDM": 14,
    "Wavelet": 736, "Laplacian of Gaussian": 460, "Square": 92, "Square root": 92, "Logarithm": 92,
    "Exponential": 92, "Gradient": 92, "Total": 1762,
}  # fmt: skip


@pytest.fixture(scope="module")
def phantom():
    rng = np.random.default_rng(5)
    arr = rng.normal(100, 30, size=(40, 40, 40)).astype(np.float32)
    mask = np.zeros(arr.shape, dtype=np.uint8)
    mask[12:28, 10:30, 11:29] = 1
    image, m = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(mask)
    return image, m


def test_shipped_presets():
    assert {"seed1762", "habitat1197", "ibsi"} <= set(available_presets())
    assert preset_name("/some/where/my_preset.yaml") == "my_preset"
    with pytest.raises(ValueError, match="unknown extraction preset 'nope'"):
        load_preset("nope")


def test_preset_with_unknown_key_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("imageType: {Original: {}}\nfeatureClasses: {}\n")
    with pytest.raises(ValueError, match="unknown top-level keys \\['featureClasses'\\]"):
        load_preset(p)


def test_merge_settings_bin_exclusivity():
    base = {"setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}}}
    merged = merge_settings(base, {"binCount": 32})
    assert merged["setting"] == {"label": 1, "binCount": 32}
    assert base["setting"] == {"binWidth": 25, "label": 1}  # the preset itself is not modified
    assert merge_settings(merged, {"binWidth": 5})["setting"] == {"label": 1, "binWidth": 5}
    assert merge_settings(base, None) == base


def test_split_feature_name():
    assert split_feature_name("wavelet-LLH_glcm_Idmn") == ("wavelet-LLH", "glcm", "Idmn")
    assert split_feature_name("log-sigma-1-0-mm-3D_firstorder_10Percentile") == ("log-sigma-1-0-mm-3D", "firstorder", "10Percentile")
    with pytest.raises(ValueError):
        split_feature_name("diagnostics")


@pytest.mark.parametrize("preset", sorted(EXPECTED_COUNTS))
def test_preset_feature_counts(phantom, preset):
    features, diagnostics = extract_features(*phantom, load_preset(preset))
    assert len(features) == EXPECTED_COUNTS[preset]
    assert all(np.isfinite(v) for v in features.values())
    assert "diagnostics_Versions_PyRadiomics" in diagnostics and not set(features) & set(diagnostics)
    counts = feature_counts_by_class(list(features)).set_index("category")["n_features"].to_dict()
    if preset == "seed1762":
        assert counts == SEED1762_PUBLISHED
    else:
        assert counts == {"Shape": 14, "First-order statistics": 18, "GLCM": 22, "GLRLM": 16, "GLSZM": 16, "NGTDM": 5, "GLDM": 14,
                          "Wavelet": 8 * 91, "Laplacian of Gaussian": 4 * 91, "Total": 1197}


def _glcm_params(**setting):
    return {"imageType": {"Original": {}}, "featureClass": {"glcm": ["JointAverage"], "firstorder": ["Entropy"]},
            "setting": {"label": 1, **setting}}


def test_bin_origin_gives_ibsi_fixed_bin_size_indices():
    """IBSI fixed bin size: bin = floor((x - origin) / width) + 1, counted from the re-segmentation lower bound.

    Two grey values, -939 and -880 HU, with origin -1000 and width 25: IBSI bins floor(61 / 25) + 1 = 3 and
    floor(120 / 25) + 1 = 5 (worked out by hand). pyradiomics alone starts at floor(-939 / 25) * 25 = -950, giving
    bins 1 and 3. In a checkerboard (equal counts, symmetric GLCM) JointAverage is the mean bin index: 4 vs 2.
    """
    z, y, x = np.indices((6, 6, 6))
    arr = np.where((x + y + z) % 2 == 0, -939.0, -880.0).astype(np.float32)
    image, mask = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(np.ones(arr.shape, dtype=np.uint8))
    plain, _ = extract_features(image, mask, _glcm_params(binWidth=25))
    ibsi, _ = extract_features(image, mask, _glcm_params(binWidth=25, binOrigin=-1000))
    assert ibsi["original_glcm_JointAverage"] == pytest.approx(4.0, abs=1e-12)
    assert plain["original_glcm_JointAverage"] == pytest.approx(2.0, abs=1e-12)
    # Index-free features agree; after a binOrigin call pyradiomics' own binning is back, bit for bit.
    assert ibsi["original_firstorder_Entropy"] == pytest.approx(plain["original_firstorder_Entropy"], abs=1e-12)
    again, _ = extract_features(image, mask, _glcm_params(binWidth=25))
    assert again == plain


@pytest.mark.parametrize(
    ("setting", "text"),
    [({"binWidth": 25, "binOrigin": -900}, "binOrigin -900 is above the lowest intensity"),
     ({"binCount": 8, "binOrigin": -1000}, "binOrigin must be a finite number used with binWidth"),
     ({"binWidth": 25, "binOrigin": "low"}, "binOrigin must be a finite number")],
)  # fmt: skip
def test_bin_origin_errors(setting, text):
    arr = np.full((4, 4, 4), -939.0, dtype=np.float32)
    image, mask = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(np.ones(arr.shape, dtype=np.uint8))
    with pytest.raises(ValueError, match=text):
        extract_features(image, mask, _glcm_params(**setting))
