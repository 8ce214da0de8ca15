"""IBSI chapter 1 digital phantom: pyradiomics against the IBSI reference values.

The Image Biomarker Standardisation Initiative (IBSI; Zwanenburg A et al.,
*Radiology* 2020;295:328-338) publishes consensus values of its features for a
small digital phantom (5 x 4 x 4 voxels of 2 mm, integer grey levels 1..9).
This module maps IBSI feature tags (``morph_volume``, ``stat_mean``,
``cm_joint_max_3D_avg``, ...) to pyradiomics feature names, extracts the
phantom with the ``ibsi`` preset (``helpers/presets/ibsi.yaml``) and compares.

Aggregation of texture features (IBSI reference manual, "aggregating features") matters:

* ``*_3D_avg`` (GLCM, GLRLM): one matrix per direction (13 in 3D), features
  computed per matrix, then averaged. This is pyradiomics' default
  (``weightingNorm: null``), i.e. the ``ibsi`` preset itself.
* ``*_3D_comb`` (GLCM, GLRLM): the 13 matrices are merged (summed) before the
  features are computed. pyradiomics does this with ``weightingNorm:
  no_weighting`` (every direction weighted 1, matrices summed, then
  normalised), run here as a variant of the preset.
* ``*_2_5D_avg`` / ``*_2_5D_comb`` / ``*_2_5D``: in-plane directions only, the
  matrices of all slices merged per direction (avg) or over everything
  (comb). pyradiomics' ``force2D: true`` builds in-plane matrices over the whole
  volume at once, which is exactly the slice-merged matrix; with
  ``weightingNorm: no_weighting`` added it is the 2.5D merged variant.
* ``*_3D`` (GLSZM, NGTDM, NGLDM): one matrix for the volume; pyradiomics default.
* ``*_2D_avg`` / ``*_2D_comb`` / ``*_2D``: features per slice, averaged over
  slices (:data:`PER_SLICE_AGGREGATIONS`): pyradiomics runs once per axial
  slice of the ROI (``force2D``, the mask cut to that slice; directions
  averaged or merged as above) on intensities discretised once for the whole
  ROI, and the slice values are averaged. pyradiomics alone has no per-slice
  aggregation (``force2D`` merges the
  slices), so these tags are unmapped.

The comparison rounds nothing: a value is within tolerance when its distance to
the reference is at most the IBSI tolerance plus half a unit in the third
significant digit of the reference, because IBSI publishes the phantom values
rounded to 3 significant digits (with tolerance 0 for all but the morphological
features).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from helpers.features.pyradiomics import extract_features, load_preset, merge_settings

__all__ = [
    "IBSI_FAMILIES",
    "AGGREGATION_SETTINGS",
    "IBSI_TO_PYRADIOMICS",
    "KNOWN_DEVIATIONS",
    "UNMAPPED_REASONS",
    "read_ibsi_reference",
    "ibsi_tolerance_bound",
    "ibsi_phantom_comparison",
    "ibsi_unmapped_tags",
    "IBSI_CONVERSIONS",
    "PER_SLICE_AGGREGATIONS",
    "CT_PHANTOM_DIR",
    "CTPhantomConfig",
    "CT_PHANTOM_CONFIGS",
    "IBSI_CONFORMANCE",
    "LEGACY_PROCESSING",
    "ct_phantom_preprocess",
    "ct_phantom_diagnostics",
    "ct_phantom_comparison",
]

#: IBSI tag prefix -> feature family (IBSI reference manual, image features).
IBSI_FAMILIES: dict[str, str] = {
    "morph": "morphology",
    "loc": "local intensity",
    "stat": "intensity-based statistics",
    "ih": "intensity histogram",
    "ivh": "intensity-volume histogram",
    "cm": "grey level co-occurrence matrix",
    "rlm": "grey level run length matrix",
    "szm": "grey level size zone matrix",
    "dzm": "grey level distance zone matrix",
    "ngt": "neighbourhood grey tone difference matrix",
    "ngl": "neighbouring grey level dependence matrix",
}

_FORCE_2D = {"force2D": True, "force2Ddimension": 0}  # in-plane (axial) directions, slices merged
_MERGED = {"weightingNorm": "no_weighting"}  # matrices summed over directions before the features

#: IBSI aggregation suffix -> pyradiomics settings merged over the ``ibsi`` preset (see the module docstring).
AGGREGATION_SETTINGS: dict[str, dict] = {
    "3D_avg": {},
    "3D_comb": dict(_MERGED),
    "3D": {},
    "2_5D_avg": dict(_FORCE_2D),
    "2_5D_comb": {**_FORCE_2D, **_MERGED},
    "2_5D": dict(_FORCE_2D),
    "2D_avg": dict(_FORCE_2D),
    "2D_comb": {**_FORCE_2D, **_MERGED},
    "2D": dict(_FORCE_2D),
}

#: Aggregations computed per axial slice and averaged over slices (IBSI 2D).
PER_SLICE_AGGREGATIONS = frozenset({"2D_avg", "2D_comb", "2D"})

# --- the correspondences --------------------------------------------------------------------------------------
# Sources: the IBSI notes in pyradiomics' feature documentation (radiomics/*.py docstrings and the
# "removed features" page) and IBSI's feature definitions. Several IBSI features are one pyradiomics feature:
# cm_dissimilarity is GLCM DifferenceAverage and cm_sum_var is ClusterTendency (pyradiomics removed Dissimilarity
# and SumVariance as mathematically identical); cm_joint_var is SumSquares; ngl_glnu_norm is first-order
# Uniformity (pyradiomics deprecated GLDM GrayLevelNonUniformityNormalized as identical to it: each voxel yields
# exactly one dependence count). pyradiomics' GLDM with gldm_a 0 and distance 1 is IBSI's NGLDM with alpha 0, d 1.

_MORPH = {  # shape class; mesh-based except VoxelVolume
    "morph_volume": "MeshVolume",
    "morph_vol_approx": "VoxelVolume",
    "morph_area_mesh": "SurfaceArea",
    "morph_av": "SurfaceVolumeRatio",
    "morph_comp_1": "Compactness1",
    "morph_comp_2": "Compactness2",
    "morph_sph_dispr": "SphericalDisproportion",
    "morph_sphericity": "Sphericity",
    "morph_diam": "Maximum3DDiameter",
    "morph_pca_maj_axis": "MajorAxisLength",
    "morph_pca_min_axis": "MinorAxisLength",
    "morph_pca_least_axis": "LeastAxisLength",
    "morph_pca_elongation": "Elongation",
    "morph_pca_flatness": "Flatness",
}
_STAT = {  # first-order class on the original intensities
    "stat_mean": "Mean",
    "stat_var": "Variance",
    "stat_skew": "Skewness",
    "stat_kurt": "Kurtosis",
    "stat_median": "Median",
    "stat_min": "Minimum",
    "stat_p10": "10Percentile",
    "stat_p90": "90Percentile",
    "stat_max": "Maximum",
    "stat_iqr": "InterquartileRange",
    "stat_range": "Range",
    "stat_mad": "MeanAbsoluteDeviation",
    "stat_rmad": "RobustMeanAbsoluteDeviation",
    "stat_energy": "Energy",
    "stat_rms": "RootMeanSquared",
}
_IH = {  # the only first-order features pyradiomics computes on the discretised intensities
    "ih_entropy": "Entropy",
    "ih_uniformity": "Uniformity",
}
_CM = {
    "joint_max": "MaximumProbability",
    "joint_avg": "JointAverage",
    "joint_var": "SumSquares",
    "joint_entr": "JointEntropy",
    "diff_avg": "DifferenceAverage",
    "diff_var": "DifferenceVariance",
    "diff_entr": "DifferenceEntropy",
    "sum_avg": "SumAverage",
    "sum_var": "ClusterTendency",
    "sum_entr": "SumEntropy",
    "energy": "JointEnergy",
    "contrast": "Contrast",
    "dissimilarity": "DifferenceAverage",
    "inv_diff": "Id",
    "inv_diff_norm": "Idn",
    "inv_diff_mom": "Idm",
    "inv_diff_mom_norm": "Idmn",
    "inv_var": "InverseVariance",
    "corr": "Correlation",
    "auto_corr": "Autocorrelation",
    "clust_tend": "ClusterTendency",
    "clust_shade": "ClusterShade",
    "clust_prom": "ClusterProminence",
    "info_corr1": "Imc1",
    "info_corr2": "Imc2",
}
_RLM = {
    "sre": "ShortRunEmphasis",
    "lre": "LongRunEmphasis",
    "lgre": "LowGrayLevelRunEmphasis",
    "hgre": "HighGrayLevelRunEmphasis",
    "srlge": "ShortRunLowGrayLevelEmphasis",
    "srhge": "ShortRunHighGrayLevelEmphasis",
    "lrlge": "LongRunLowGrayLevelEmphasis",
    "lrhge": "LongRunHighGrayLevelEmphasis",
    "glnu": "GrayLevelNonUniformity",
    "glnu_norm": "GrayLevelNonUniformityNormalized",
    "rlnu": "RunLengthNonUniformity",
    "rlnu_norm": "RunLengthNonUniformityNormalized",
    "r_perc": "RunPercentage",
    "gl_var": "GrayLevelVariance",
    "rl_var": "RunVariance",
    "rl_entr": "RunEntropy",
}
_SZM = {
    "sze": "SmallAreaEmphasis",
    "lze": "LargeAreaEmphasis",
    "lgze": "LowGrayLevelZoneEmphasis",
    "hgze": "HighGrayLevelZoneEmphasis",
    "szlge": "SmallAreaLowGrayLevelEmphasis",
    "szhge": "SmallAreaHighGrayLevelEmphasis",
    "lzlge": "LargeAreaLowGrayLevelEmphasis",
    "lzhge": "LargeAreaHighGrayLevelEmphasis",
    "glnu": "GrayLevelNonUniformity",
    "glnu_norm": "GrayLevelNonUniformityNormalized",
    "zsnu": "SizeZoneNonUniformity",
    "zsnu_norm": "SizeZoneNonUniformityNormalized",
    "z_perc": "ZonePercentage",
    "gl_var": "GrayLevelVariance",
    "zs_var": "ZoneVariance",
    "zs_entr": "ZoneEntropy",
}
_NGT = {
    "coarseness": "Coarseness",
    "contrast": "Contrast",
    "busyness": "Busyness",
    "complexity": "Complexity",
    "strength": "Strength",
}
_NGL = {  # pyradiomics class, feature (ngl_glnu_norm is first-order Uniformity, see above)
    "lde": ("gldm", "SmallDependenceEmphasis"),
    "hde": ("gldm", "LargeDependenceEmphasis"),
    "lgce": ("gldm", "LowGrayLevelEmphasis"),
    "hgce": ("gldm", "HighGrayLevelEmphasis"),
    "ldlge": ("gldm", "SmallDependenceLowGrayLevelEmphasis"),
    "ldhge": ("gldm", "SmallDependenceHighGrayLevelEmphasis"),
    "hdlge": ("gldm", "LargeDependenceLowGrayLevelEmphasis"),
    "hdhge": ("gldm", "LargeDependenceHighGrayLevelEmphasis"),
    "glnu": ("gldm", "GrayLevelNonUniformity"),
    "glnu_norm": ("firstorder", "Uniformity"),
    "dcnu": ("gldm", "DependenceNonUniformity"),
    "dcnu_norm": ("gldm", "DependenceNonUniformityNormalized"),
    "gl_var": ("gldm", "GrayLevelVariance"),
    "dc_var": ("gldm", "DependenceVariance"),
    "dc_entr": ("gldm", "DependenceEntropy"),
}


def _build_mapping() -> dict[str, str]:
    mapping: dict[str, str] = {}
    mapping.update({tag: f"original_shape_{name}" for tag, name in _MORPH.items()})
    mapping.update({tag: f"original_firstorder_{name}" for tag, name in {**_STAT, **_IH}.items()})
    for agg in ("3D_avg", "3D_comb", "2_5D_avg", "2_5D_comb", "2D_avg", "2D_comb"):
        mapping.update({f"cm_{stem}_{agg}": f"original_glcm_{name}" for stem, name in _CM.items()})
        mapping.update({f"rlm_{stem}_{agg}": f"original_glrlm_{name}" for stem, name in _RLM.items()})
    for agg in ("3D", "2_5D", "2D"):
        mapping.update({f"szm_{stem}_{agg}": f"original_glszm_{name}" for stem, name in _SZM.items()})
        mapping.update({f"ngt_{stem}_{agg}": f"original_ngtdm_{name}" for stem, name in _NGT.items()})
        mapping.update({f"ngl_{stem}_{agg}": f"original_{cls}_{name}" for stem, (cls, name) in _NGL.items()})
    return mapping


#: IBSI tag -> pyradiomics feature name (extracted with the ``ibsi`` preset plus the settings of the tag's
#: aggregation suffix, :data:`AGGREGATION_SETTINGS`).
IBSI_TO_PYRADIOMICS: dict[str, str] = _build_mapping()

_AXES = (
    "pyradiomics normalises the covariance of the voxel-centre coordinates by N (population covariance); the IBSI "
    "reference values correspond to N-1, so pyradiomics' PCA axis lengths are smaller by sqrt((N-1)/N) (74 voxels "
    "in the phantom: -0.7 %); elongation and flatness (ratios) are unaffected"
)

_NG_2D = (
    "IBSI 2D (per slice): pyradiomics normalises by Ng = the highest grey level in the slice, IBSI by the number of "
    "grey levels of the whole ROI's discretisation; with the whole-ROI Ng (36 in CT phantom A) the per-slice mean is "
    "within tolerance (tests/test_features_reference.py verifies it)"
)

#: Mapped IBSI tags whose pyradiomics value is known to differ from the reference, with the reason. An entry may
#: still fall within tolerance on the phantom (``morph_pca_maj_axis``): the systematic difference is documented.
KNOWN_DEVIATIONS: dict[str, str] = {
    "morph_pca_maj_axis": _AXES,
    **{f"cm_{stem}_2D_{agg}": _NG_2D for stem in ("inv_diff_norm", "inv_diff_mom_norm") for agg in ("avg", "comb")},
    "morph_pca_min_axis": _AXES,
    "morph_pca_least_axis": _AXES,
}

#: Reasons for IBSI tags without a pyradiomics counterpart; keys are exact tags or prefixes ending in ``_``,
#: the longest matching key wins (see :func:`ibsi_unmapped_tags`).
UNMAPPED_REASONS: dict[str, str] = {
    "morph_": "no pyradiomics equivalent (pyradiomics' shape class has no such morphological feature)",
    "morph_vol_dens_": "volume densities (bounding boxes, enclosing ellipsoids, convex hull) are not in pyradiomics",
    "morph_area_dens_": "area densities (bounding boxes, enclosing ellipsoids, convex hull) are not in pyradiomics",
    "morph_integ_int": "integrated intensity (mean intensity x volume) is not a pyradiomics feature",
    "morph_moran_i": "Moran's I spatial autocorrelation is not in pyradiomics",
    "morph_geary_c": "Geary's C spatial autocorrelation is not in pyradiomics",
    "morph_asphericity": "asphericity (SphericalDisproportion - 1) is not a pyradiomics feature",
    "morph_com": "centre of mass shift (morphological vs intensity-weighted) is not in pyradiomics",
    "loc_": "local intensity peak features (1 cm^3 spheres) are not in pyradiomics",
    "stat_": "no pyradiomics first-order equivalent",
    "ih_": (
        "pyradiomics computes first-order statistics on the original intensities (IBSI 'stat_' tags); only Entropy "
        "and Uniformity use the discretised histogram. The histogram's mode and gradients have no equivalent"
    ),
    "ivh_": "pyradiomics has no intensity-volume histogram features",
    "dzm_": "pyradiomics has no grey level distance zone matrix",
    "ngl_dc_perc_": "pyradiomics' GLDM DependencePercentage is removed (always 1); no value is computed",
    "ngl_dc_energy_": "dependence count energy is not a pyradiomics GLDM feature",
    "_diagnostic": (
        "image-processing diagnostic (grid, ROI voxel count, intensity range after interpolation and re-segmentation), "
        "not a feature: compared by helpers.features.ibsi.ct_phantom_diagnostics"
    ),
}


def read_ibsi_reference(reference_csv: str | Path) -> pd.DataFrame:
    """Read an IBSI reference table (``reference value;tolerance;tag``).

    Parameters
    ----------
    reference_csv : str or Path
        Semicolon-separated IBSI reference values. Blank values (features without
        consensus) become NaN.

    Returns
    -------
    DataFrame
        ``tag``, ``ibsi_family``, ``reference``, ``tolerance`` in file order.
    """
    raw = pd.read_csv(reference_csv, sep=";", dtype={"tag": str})
    expected = {"reference value", "tolerance", "tag"}
    if set(raw.columns) != expected:
        raise ValueError(f"{reference_csv}: expected columns {sorted(expected)}, found {list(raw.columns)}")
    table = pd.DataFrame(
        {
            "tag": raw["tag"].str.strip(),
            "reference": pd.to_numeric(raw["reference value"], errors="raise"),
            "tolerance": pd.to_numeric(raw["tolerance"], errors="raise"),
        }
    )
    if table["tag"].duplicated().any():
        raise ValueError(f"{reference_csv}: duplicated tags {sorted(table.loc[table['tag'].duplicated(), 'tag'])}")
    table.insert(1, "ibsi_family", [_family(t) for t in table["tag"]])
    return table


def ibsi_tolerance_bound(reference: float, tolerance: float) -> float:
    """Largest accepted ``|value - reference|`` for an IBSI phantom reference.

    IBSI publishes the phantom's reference values rounded to 3 significant
    digits (tolerance 0 for exact features), so half a unit in the third
    significant digit is added to the published tolerance.

    Parameters
    ----------
    reference, tolerance : float
        The published reference value and tolerance.

    Returns
    -------
    float
        ``tolerance + 0.5 * 10**(floor(log10|reference|) - 2)``; for a reference
        of 0 the tolerance plus 1e-9.
    """
    tolerance = 0.0 if math.isnan(tolerance) else float(tolerance)
    if reference == 0:
        return tolerance + 1e-9
    return tolerance + 0.5 * 10.0 ** (math.floor(math.log10(abs(reference))) - 2) + 1e-12


_TEXTURE_FAMILIES = ("cm", "rlm", "szm", "ngt", "ngl")  # families mapped for their 3D and 2.5D aggregations


def _family(tag: str) -> str:
    prefix = tag.split("_", 1)[0]
    return IBSI_FAMILIES.get(prefix, prefix)


def _aggregation(tag: str) -> str:
    for suffix in sorted(AGGREGATION_SETTINGS, key=len, reverse=True):
        if tag.endswith("_" + suffix):
            return suffix
    return "3D"  # morphology and first-order features are not aggregated


def _settings_label(overrides: Mapping, aggregation: str = "") -> str:
    label = ", ".join(f"{k}={v}" for k, v in overrides.items())
    if aggregation in PER_SLICE_AGGREGATIONS:
        label += ", per axial slice, mean over slices"
    return label


def ibsi_phantom_comparison(image_path: str | Path, mask_path: str | Path, reference_csv: str | Path) -> pd.DataFrame:
    """Compare pyradiomics (``ibsi`` preset) with the IBSI phantom reference values.

    Every IBSI tag of ``reference_csv`` that :data:`IBSI_TO_PYRADIOMICS` maps is
    extracted with the ``ibsi`` preset merged with the settings of its
    aggregation (:data:`AGGREGATION_SETTINGS`; one extraction per distinct
    setting). Unmapped tags are listed by :func:`ibsi_unmapped_tags`.

    Parameters
    ----------
    image_path, mask_path : str or Path
        The IBSI digital phantom and its mask (label 1).
    reference_csv : str or Path
        IBSI reference values (``reference value;tolerance;tag``).

    Returns
    -------
    DataFrame
        One row per mapped tag, in file order: ``tag``, ``ibsi_family``,
        ``pyradiomics_feature``, ``pyradiomics_settings`` (overrides of the
        preset, empty for the preset itself), ``reference``, ``tolerance``,
        ``value``, ``abs_diff``, ``within_tolerance`` (bool, see
        :func:`ibsi_tolerance_bound`) and ``known_reason`` (from
        :data:`KNOWN_DEVIATIONS`, empty when none is known).
    """
    image = sitk.ReadImage(str(image_path))
    mask = sitk.ReadImage(str(mask_path), sitk.sitkUInt32)
    return _comparison(image, {"shape": mask, "other": mask}, reference_csv, {})


#: Mapped tags whose pyradiomics value is converted to IBSI's definition: tag -> (function, what it does).
IBSI_CONVERSIONS: dict[str, tuple] = {
    "stat_kurt": (lambda v: v - 3.0, "pyradiomics Kurtosis - 3 (IBSI reports excess kurtosis)"),
}


def _discretise_like_pyradiomics(image: sitk.Image, mask: sitk.Image, settings: dict) -> tuple[sitk.Image, dict]:
    """Discretise the ROI once (as pyradiomics would for the whole ROI) so that per-slice runs share the bins.

    Fixed bin count: the grey levels ``1..binCount`` of pyradiomics' (and IBSI's) fixed bin number
    discretisation, returned as an image with ``binWidth 1, binOrigin 1`` (levels kept). Fixed bin size: the image
    unchanged and ``binOrigin`` set to the whole ROI's origin when none is given (pyradiomics'
    ``floor(min / binWidth) * binWidth``).
    """
    arr = sitk.GetArrayViewFromImage(image).astype(np.float64)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    values = arr[inside]
    settings = dict(settings)
    if settings.get("binCount") is not None:
        edges = np.histogram(values, int(settings.pop("binCount")))[1]
        edges[-1] += 1  # as pyradiomics: the maximum falls in the last bin
        levels = np.zeros(arr.shape, dtype=np.float32)
        levels[inside] = np.digitize(values, edges)
        out = sitk.GetImageFromArray(levels)
        out.CopyInformation(image)
        settings.update(binWidth=1, binOrigin=1)
        return out, settings
    if settings.get("binOrigin") is None:
        width = float(settings.get("binWidth", 25))
        settings["binOrigin"] = math.floor(values.min() / width) * width
    return image, settings


def _per_slice_features(image: sitk.Image, mask: sitk.Image, params: dict) -> dict[str, float]:
    """IBSI 2D aggregation: pyradiomics per axial slice of the ROI (bins of the whole ROI), mean over the slices.

    Slices with fewer than 2 ROI voxels are left out (pyradiomics rejects single-voxel ROIs); a feature
    undefined in a slice (NaN) is left out of that feature's mean.
    """
    image, settings = _discretise_like_pyradiomics(image, mask, params["setting"])
    params = {**params, "setting": settings}
    inside = sitk.GetArrayFromImage(mask) > 0
    per_slice: list[dict[str, float]] = []
    for z in np.flatnonzero(inside.reshape(inside.shape[0], -1).sum(axis=1) >= 2):
        cut = np.zeros(inside.shape, dtype=np.uint8)
        cut[z] = inside[z]
        slice_mask = sitk.GetImageFromArray(cut)
        slice_mask.CopyInformation(mask)
        per_slice.append(extract_features(image, slice_mask, params)[0])
    if not per_slice:
        raise ValueError("IBSI 2D aggregation needs a slice with at least 2 ROI voxels; the ROI has none")
    names = per_slice[0].keys()
    return {name: float(np.nanmean([f[name] for f in per_slice])) for name in names}


def _comparison(image: sitk.Image, masks: Mapping[str, sitk.Image], reference_csv: str | Path, base: Mapping) -> pd.DataFrame:
    """Extract every mapped tag of ``reference_csv`` (``ibsi`` preset + ``base`` + aggregation settings) and compare.

    ``masks['shape']`` is used for morphology, ``masks['other']`` for every other class.
    """
    reference = read_ibsi_reference(reference_csv)
    mapped = reference[reference["tag"].isin(IBSI_TO_PYRADIOMICS)].copy()
    preset = load_preset("ibsi")

    mapped["aggregation"] = [_aggregation(t) for t in mapped["tag"]]
    mapped["pyradiomics_feature"] = [IBSI_TO_PYRADIOMICS[t] for t in mapped["tag"]]
    values: dict[str, float] = {}
    for aggregation, rows in mapped.groupby("aggregation", sort=True):
        overrides = {**dict(base), **AGGREGATION_SETTINGS[aggregation]}
        classes = sorted({name.split("_")[1] for name in rows["pyradiomics_feature"]})
        if masks["shape"] is masks["other"]:
            groups = [classes]
        else:  # morphology on the interpolated ROI, the other classes on the re-segmented one
            groups = [[c] for c in classes if c == "shape"] + [[c for c in classes if c != "shape"]]
        features: dict[str, float] = {}
        for group in groups:
            if not group:
                continue
            params = merge_settings(preset, overrides)
            params["featureClass"] = {cls: preset["featureClass"].get(cls) for cls in group}
            mask = masks["shape"] if group == ["shape"] else masks["other"]
            if aggregation in PER_SLICE_AGGREGATIONS:
                features.update(_per_slice_features(image, mask, params))
            else:
                features.update(extract_features(image, mask, params)[0])
        for tag, name in zip(rows["tag"], rows["pyradiomics_feature"]):
            if name not in features:
                raise RuntimeError(f"pyradiomics did not return {name} (IBSI {tag}) with settings {overrides}")
            convert = IBSI_CONVERSIONS.get(tag)
            values[tag] = convert[0](features[name]) if convert else features[name]

    out = pd.DataFrame(
        {
            "tag": mapped["tag"],
            "ibsi_family": mapped["ibsi_family"],
            "pyradiomics_feature": mapped["pyradiomics_feature"],
            "pyradiomics_settings": [_settings_label({**dict(base), **AGGREGATION_SETTINGS[a]}, a) for a in mapped["aggregation"]],
            "reference": mapped["reference"],
            "tolerance": mapped["tolerance"],
            "value": [values[t] for t in mapped["tag"]],
        }
    ).reset_index(drop=True)
    out["abs_diff"] = (out["value"] - out["reference"]).abs()
    bounds = [ibsi_tolerance_bound(r, t) for r, t in zip(out["reference"], out["tolerance"])]
    out["within_tolerance"] = [bool(d <= b) for d, b in zip(out["abs_diff"], bounds)]  # NaN reference -> False
    out["known_reason"] = [KNOWN_DEVIATIONS.get(t, "") for t in out["tag"]]
    return out


def ibsi_unmapped_tags(reference_csv: str | Path) -> pd.DataFrame:
    """IBSI tags of ``reference_csv`` without a pyradiomics counterpart, with the reason.

    Together with :func:`ibsi_phantom_comparison` every tag of the reference
    table is accounted for: a tag is either mapped or listed here.

    Parameters
    ----------
    reference_csv : str or Path
        IBSI reference values (``reference value;tolerance;tag``).

    Returns
    -------
    DataFrame
        ``tag``, ``ibsi_family``, ``reference``, ``tolerance``, ``reason`` in
        file order; ``reference`` is NaN where IBSI has no consensus value.
    """
    reference = read_ibsi_reference(reference_csv)
    unmapped = reference[~reference["tag"].isin(IBSI_TO_PYRADIOMICS)].copy()
    unmapped["reason"] = [_unmapped_reason(t) for t in unmapped["tag"]]
    no_consensus = unmapped["reference"].isna()
    unmapped.loc[no_consensus, "reason"] = unmapped.loc[no_consensus, "reason"] + "; IBSI gives no consensus value"
    return unmapped.reset_index(drop=True)


def _unmapped_reason(tag: str) -> str:
    if tag.endswith(("_init_img", "_interp_img", "_init_roi", "_interp_roi", "_reseg_roi")):
        return UNMAPPED_REASONS["_diagnostic"]
    keys = [k for k in UNMAPPED_REASONS if k != "_diagnostic" and (tag == k or (k.endswith("_") and tag.startswith(k)))]
    return UNMAPPED_REASONS[max(keys, key=len)] if keys else "no pyradiomics equivalent"


#: The IBSI 1 digital phantom shipped with the repository (CC BY 4.0).
PHANTOM_DIR = Path(__file__).resolve().parents[2] / "data" / "ibsi1_digital_phantom"


# --- IBSI 1 CT phantom, configurations A-E -------------------------------------------------------------------

#: The IBSI 1 CT phantom (lung-cancer patient CT, GTV) shipped with the repository (CC BY 4.0).
CT_PHANTOM_DIR = Path(__file__).resolve().parents[2] / "data" / "ibsi1_ct_phantom"


@dataclass(frozen=True)
class CTPhantomConfig:
    """One IBSI 1 CT phantom configuration (IBSI reference manual, CT phantom configurations).

    ``resample_mm`` None: no interpolation; ``interpolator``: the project's
    name (``linear`` = IBSI (bi/tri)linear, ``bspline`` = IBSI tricubic
    spline); ``resegment_range`` (HU, inclusive) is applied before the
    ``outlier_sigma`` filter (mean +- k SD of the remaining voxels);
    discretisation by ``bin_width`` (fixed bin size from the range's lower
    bound) or ``bin_count``.
    """

    name: str
    dimensions: str  # "2D" (IBSI 2D/2.5D texture tags) or "3D"
    resample_mm: tuple[float, float, float] | None
    interpolator: str
    resegment_range: tuple[float, float] | None
    outlier_sigma: float | None
    bin_width: float | None
    bin_count: int | None


#: IBSI 1 CT phantom configurations A-E. B resamples in-plane only (2 x 2 mm, native 3 mm slices kept).
CT_PHANTOM_CONFIGS: dict[str, CTPhantomConfig] = {
    "A": CTPhantomConfig("A", "2D", None, "linear", (-500.0, 400.0), None, 25.0, None),
    "B": CTPhantomConfig("B", "2D", (2.0, 2.0, 3.0), "linear", (-500.0, 400.0), None, None, 32),
    "C": CTPhantomConfig("C", "3D", (2.0, 2.0, 2.0), "linear", (-1000.0, 400.0), None, 25.0, None),
    "D": CTPhantomConfig("D", "3D", (2.0, 2.0, 2.0), "linear", None, 3.0, None, 32),
    "E": CTPhantomConfig("E", "3D", (2.0, 2.0, 2.0), "bspline", (-1000.0, 400.0), 3.0, None, 32),
}

#: Switches of the IBSI conformance steps (all on: the IBSI configuration; all off: the project before issue 16).
IBSI_CONFORMANCE = {"grid_alignment": "center", "round_intensities": True, "bin_origin": True, "combined_resegmentation": True}
LEGACY_PROCESSING = {"grid_alignment": "origin", "round_intensities": False, "bin_origin": False, "combined_resegmentation": False}

_DIAGNOSTIC_STAGES = ("_init_img", "_interp_img", "_interp_roi", "_reseg_roi")


def ct_phantom_preprocess(config: CTPhantomConfig, image: sitk.Image, mask: sitk.Image,
                          processing: Mapping | None = None) -> tuple[sitk.Image, sitk.Image, sitk.Image, dict]:
    """Interpolate and re-segment the CT phantom as IBSI configuration ``config`` prescribes.

    Uses the project's preprocessing (:func:`helpers.imaging.preprocess.preprocess`:
    resampling with the partial-volume mask at 0.5) and
    :func:`helpers.imaging.preprocess.resegment_mask`.

    Returns
    -------
    (image, morphological_mask, intensity_mask, pyradiomics_overrides)
        The interpolated image, the interpolated (not re-segmented) ROI for
        morphology, the re-segmented ROI for intensity and texture features,
        and the pyradiomics settings of the configuration's discretisation.
    """
    from helpers.imaging.preprocess import preprocess, resegment_mask
    from helpers.settings.preprocessing import PreprocessSettings

    proc = {**IBSI_CONFORMANCE, **(processing or {})}
    if config.resample_mm is not None:
        settings = PreprocessSettings(
            resample_mm=config.resample_mm, interpolator=config.interpolator, mask_resampling="partial_volume",
            mask_threshold=0.5, grid_alignment=proc["grid_alignment"], round_intensities=proc["round_intensities"],
        )
        image, mask, _ = preprocess(image, mask, settings)
    else:
        mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if config.resegment_range is not None and config.outlier_sigma is not None and not proc["combined_resegmentation"]:
        intensity_mask = resegment_mask(image, mask, None, config.outlier_sigma)  # before issue 16: the filter only
    else:
        intensity_mask = resegment_mask(image, mask, config.resegment_range, config.outlier_sigma)
    overrides: dict[str, object] = {}
    if config.bin_count is not None:
        overrides["binCount"] = config.bin_count
    else:
        overrides["binWidth"] = config.bin_width
        if proc["bin_origin"] and config.resegment_range is not None:
            overrides["binOrigin"] = config.resegment_range[0]
    return image, mask, intensity_mask, overrides


def _roi_diagnostics(image: sitk.Image, roi: sitk.Image, stage: str) -> dict[str, float]:
    arr = sitk.GetArrayViewFromImage(image)
    inside = sitk.GetArrayViewFromImage(roi) > 0
    values = arr[inside].astype(np.float64)
    zyx = np.nonzero(inside)
    bb = [int(zyx[axis].max() - zyx[axis].min() + 1) for axis in (2, 1, 0)]
    out = {f"int_mask_vox_count{stage}": float(values.size), f"int_mask_mean_int{stage}": float(values.mean()),
           f"int_mask_min_int{stage}": float(values.min()), f"int_mask_max_int{stage}": float(values.max())}
    for axis, n in zip("xyz", roi.GetSize()):
        out[f"int_mask_dim_{axis}{stage}"] = float(n)
    for axis, n in zip("xyz", bb):
        out[f"int_mask_bb_dim_{axis}{stage}"] = float(n)
    return out


def _image_diagnostics(image: sitk.Image, stage: str) -> dict[str, float]:
    arr = sitk.GetArrayViewFromImage(image)
    out = {f"mean_int{stage}": float(arr.mean(dtype=np.float64)), f"min_int{stage}": float(arr.min()), f"max_int{stage}": float(arr.max())}
    for axis, n, s in zip("xyz", image.GetSize(), image.GetSpacing()):
        out[f"img_dim_{axis}{stage}"] = float(n)
        out[f"vox_dim_{axis}{stage}"] = float(s)
    return out


def ct_phantom_diagnostics(config: str | CTPhantomConfig, phantom_dir: str | Path = CT_PHANTOM_DIR,
                           processing: Mapping | None = None) -> pd.DataFrame:
    """IBSI image-processing diagnostics of one CT phantom configuration against the reference.

    Returns
    -------
    DataFrame
        ``tag``, ``reference``, ``tolerance``, ``value``, ``within_tolerance``
        for every diagnostic tag (``*_init_img``, ``*_interp_img``,
        ``*_interp_roi``, ``*_reseg_roi``) of the configuration's reference file.
    """
    cfg = CT_PHANTOM_CONFIGS[config] if isinstance(config, str) else config
    phantom_dir = Path(phantom_dir)
    image, mask = _read_ct_phantom(phantom_dir)
    values = _image_diagnostics(image, "_init_img")
    values.update({k.replace("int_mask", "morph_mask"): v for k, v in _roi_diagnostics(image, mask, "_init_roi").items()})
    values.update(_roi_diagnostics(image, mask, "_init_roi"))
    interp, morph, intensity, _ = ct_phantom_preprocess(cfg, image, mask, processing)
    values.update(_image_diagnostics(interp, "_interp_img"))
    for stage, roi in (("_interp_roi", morph), ("_reseg_roi", intensity)):
        values.update(_roi_diagnostics(interp, roi, stage))
        values.update({k.replace("int_mask", "morph_mask"): v for k, v in _roi_diagnostics(interp, morph, stage).items()})
    reference = read_ibsi_reference(_ct_reference_csv(phantom_dir, cfg.name))
    diag = reference[reference["tag"].str.endswith(_DIAGNOSTIC_STAGES + ("_init_roi",))].copy()
    diag["value"] = [values.get(t, float("nan")) for t in diag["tag"]]
    bounds = [ibsi_tolerance_bound(r, t) for r, t in zip(diag["reference"], diag["tolerance"])]
    diag["within_tolerance"] = [bool(abs(v - r) <= b) for v, r, b in zip(diag["value"], diag["reference"], bounds)]
    return diag.drop(columns="ibsi_family").reset_index(drop=True)


def _read_ct_phantom(phantom_dir: Path) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.Cast(sitk.ReadImage(str(phantom_dir / "image" / "phantom.nii.gz")), sitk.sitkFloat32)
    mask = sitk.ReadImage(str(phantom_dir / "mask" / "mask.nii.gz"), sitk.sitkUInt8)
    return image, mask


def _ct_reference_csv(phantom_dir: Path, name: str) -> Path:
    return Path(phantom_dir) / f"ibsi_1_chest_config_{name.lower()}.csv"


def ct_phantom_comparison(config: str | CTPhantomConfig, phantom_dir: str | Path = CT_PHANTOM_DIR,
                          processing: Mapping | None = None) -> pd.DataFrame:
    """Compare the project's features (``ibsi`` preset) with the IBSI CT phantom reference of one configuration.

    The phantom is interpolated and re-segmented by :func:`ct_phantom_preprocess`;
    morphology is computed on the interpolated ROI, everything else on the
    re-segmented ROI with the configuration's discretisation, per aggregation
    as in :func:`ibsi_phantom_comparison`.

    Parameters
    ----------
    config : str or CTPhantomConfig
        ``"A"`` .. ``"E"`` (:data:`CT_PHANTOM_CONFIGS`).
    phantom_dir : str or Path
        Folder with ``image/``, ``mask/`` and ``ibsi_1_chest_config_<x>.csv``.
    processing : mapping, optional
        Overrides of :data:`IBSI_CONFORMANCE` (e.g. :data:`LEGACY_PROCESSING`
        to measure the project's behaviour before the IBSI settings).

    Returns
    -------
    DataFrame
        The columns of :func:`ibsi_phantom_comparison`.
    """
    cfg = CT_PHANTOM_CONFIGS[config] if isinstance(config, str) else config
    phantom_dir = Path(phantom_dir)
    image, mask = _read_ct_phantom(phantom_dir)
    image, morph, intensity, overrides = ct_phantom_preprocess(cfg, image, mask, processing)
    return _comparison(image, {"shape": morph, "other": intensity}, _ct_reference_csv(phantom_dir, cfg.name), overrides)
