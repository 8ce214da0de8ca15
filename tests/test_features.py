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
