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
  slices. pyradiomics has no per-slice aggregation (``force2D`` merges the
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
from pathlib import Path

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
}

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
    for agg in ("3D_avg", "3D_comb", "2_5D_avg", "2_5D_comb"):
        mapping.update({f"cm_{stem}_{agg}": f"original_glcm_{name}" for stem, name in _CM.items()})
        mapping.update({f"rlm_{stem}_{agg}": f"original_glrlm_{name}" for stem, name in _RLM.items()})
    for agg in ("3D", "2_5D"):
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

#: Mapped IBSI tags whose pyradiomics value is known to differ from the reference, with the reason. An entry may
#: still fall within tolerance on the phantom (``morph_pca_maj_axis``): the systematic difference is documented.
KNOWN_DEVIATIONS: dict[str, str] = {
    "stat_kurt": "pyradiomics reports kurtosis (m4 / m2^2); IBSI reports excess kurtosis (kurtosis - 3)",
    "morph_pca_maj_axis": _AXES,
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
    "_2D": (
        "IBSI 2D aggregation (features per slice, averaged over slices) is not available in pyradiomics: force2D "
        "merges the in-plane matrices of all slices (IBSI 2.5D)"
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


def _settings_label(overrides: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


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
    reference = read_ibsi_reference(reference_csv)
    mapped = reference[reference["tag"].isin(IBSI_TO_PYRADIOMICS)].copy()
    image = sitk.ReadImage(str(image_path))
    mask = sitk.ReadImage(str(mask_path), sitk.sitkUInt32)
    preset = load_preset("ibsi")

    mapped["aggregation"] = [_aggregation(t) for t in mapped["tag"]]
    mapped["pyradiomics_feature"] = [IBSI_TO_PYRADIOMICS[t] for t in mapped["tag"]]
    values: dict[str, float] = {}
    for aggregation, rows in mapped.groupby("aggregation", sort=True):
        overrides = AGGREGATION_SETTINGS[aggregation]
        classes = sorted({name.split("_")[1] for name in rows["pyradiomics_feature"]})
        params = merge_settings(preset, overrides)
        params["featureClass"] = {cls: preset["featureClass"].get(cls) for cls in classes}
        features, _ = extract_features(image, mask, params)
        for tag, name in zip(rows["tag"], rows["pyradiomics_feature"]):
            if name not in features:
                raise RuntimeError(f"pyradiomics did not return {name} (IBSI {tag}) with settings {overrides}")
            values[tag] = features[name]

    out = pd.DataFrame(
        {
            "tag": mapped["tag"],
            "ibsi_family": mapped["ibsi_family"],
            "pyradiomics_feature": mapped["pyradiomics_feature"],
            "pyradiomics_settings": [_settings_label(AGGREGATION_SETTINGS[a]) for a in mapped["aggregation"]],
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
    family = tag.split("_", 1)[0]
    if family in _TEXTURE_FAMILIES and tag.endswith(("_2D", "_2D_avg", "_2D_comb")):
        return UNMAPPED_REASONS["_2D"]
    keys = [k for k in UNMAPPED_REASONS if k != "_2D" and (tag == k or (k.endswith("_") and tag.startswith(k)))]
    return UNMAPPED_REASONS[max(keys, key=len)] if keys else "no pyradiomics equivalent"


#: The IBSI 1 digital phantom shipped with the repository (CC BY 4.0).
PHANTOM_DIR = Path(__file__).resolve().parents[2] / "data" / "ibsi1_digital_phantom"
