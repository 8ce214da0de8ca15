"""Acquisition and image/mask quality control (notebook 01).

Tables: acquisition parameters per protocol group, image/mask QC per scan
with outlier flags, and cohort/split counts (CLEAR item 15).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import SimpleITK as sitk

from helpers.imaging.io import read_image, read_mask
from helpers.settings.study import StudyConfig

__all__ = [
    "mask_qc",
    "image_mask_qc",
    "flag_outliers",
]


def mask_qc(image: sitk.Image, mask: sitk.Image) -> dict[str, object]:
    """QC measurements of one image and its mask.

    Returns
    -------
    dict
        Geometry (size, spacing, orientation code), mask volume in ml, number
        of 26-connected components, the largest component's share, whether the
        mask touches the image border, and intensity statistics inside the mask
        (mean, SD, min, 1st/50th/99th percentile, max, count of non-finite voxels).
    """
    arr = sitk.GetArrayViewFromImage(image).astype(float)
    msk = sitk.GetArrayViewFromImage(mask) > 0
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    cc = sitk.ConnectedComponent(sitk.Cast(mask > 0, sitk.sitkUInt8), True)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(cc)
    sizes = sorted((stats.GetNumberOfPixels(lab) for lab in stats.GetLabels()), reverse=True)
    border = np.zeros_like(msk)
    border[[0, -1], :, :] = True
    border[:, [0, -1], :] = True
    border[:, :, [0, -1]] = True
    inside = arr[msk]
    finite = inside[np.isfinite(inside)]
    q = np.percentile(finite, [1, 50, 99]) if finite.size else [math.nan] * 3
    return {
        "size": "x".join(str(s) for s in image.GetSize()),
        "spacing_x_mm": round(image.GetSpacing()[0], 4),
        "spacing_y_mm": round(image.GetSpacing()[1], 4),
        "spacing_z_mm": round(image.GetSpacing()[2], 4),
        "orientation": sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()),
        "mask_volume_ml": round(float(msk.sum()) * voxel_ml, 3),
        "mask_voxels": int(msk.sum()),
        "components": len(sizes),
        "largest_component_share": round(sizes[0] / sum(sizes), 4) if sizes else math.nan,
        "touches_border": bool(np.any(msk & border)),
        "intensity_mean": float(np.mean(finite)) if finite.size else math.nan,
        "intensity_sd": float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan,
        "intensity_min": float(np.min(finite)) if finite.size else math.nan,
        "intensity_p01": float(q[0]),
        "intensity_p50": float(q[1]),
        "intensity_p99": float(q[2]),
        "intensity_max": float(np.max(finite)) if finite.size else math.nan,
        "nonfinite_voxels": int(np.count_nonzero(~np.isfinite(arr))),
    }


def image_mask_qc(manifest: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """Image/mask QC table: one row per manifest row, outliers flagged.

    Images are read one at a time (never all in memory at once).
    """
    rows = []
    for r in manifest.itertuples(index=False):
        image = read_image(r.image_path)
        mask = read_mask(r.mask_path, reference=image, roi_name=r.mask_roi or None, tolerance=cfg.geometry_tolerance)
        rows.append({"patient": r.patient, "cohort": r.cohort, "series": r.series, **mask_qc(image, mask)})
    table = pd.DataFrame(rows)
    return flag_outliers(table, cfg.qc.outlier_robust_z)


def _robust_z(values: pd.Series) -> pd.Series:
    med = values.median()
    mad = (values - med).abs().median()
    if not np.isfinite(mad) or mad == 0:
        return pd.Series(0.0, index=values.index)
    # 1.4826 * MAD estimates the SD for normal data (Iglewicz & Hoaglin's modified z uses 0.6745 = 1/1.4826).
    return (values - med) / (1.4826 * mad)


def flag_outliers(table: pd.DataFrame, threshold: float = 3.5) -> pd.DataFrame:
    """Add ``qc_flags``: reasons a scan needs a look.

    Per series (a CT and an MR are never compared), a robust z-score
    (median/MAD) above ``threshold`` on log mask volume, intensity mean or
    spacing flags the scan; so do a mask split into several components, a mask
    touching the image border and non-finite voxels.
    """
    table = table.copy()
    flags: list[list[str]] = [[] for _ in range(len(table))]
    checks = {"mask volume": np.log(table["mask_volume_ml"].clip(lower=1e-9)), "intensity mean": table["intensity_mean"], "z spacing": table["spacing_z_mm"], "in-plane spacing": table["spacing_x_mm"]}
    for series, idx in table.groupby("series").groups.items():
        for label, values in checks.items():
            z = _robust_z(values.loc[idx].astype(float))
            for i in z.index[z.abs() > threshold]:
                flags[table.index.get_loc(i)].append(f"{label} outlier (robust z={z[i]:+.1f})")
    for pos, r in enumerate(table.itertuples(index=False)):
        if r.components > 1:
            flags[pos].append(f"{r.components} components (largest {r.largest_component_share:.0%})")
        if r.touches_border:
            flags[pos].append("mask touches image border")
        if r.nonfinite_voxels:
            flags[pos].append(f"{r.nonfinite_voxels} non-finite voxels")
    table["qc_flags"] = ["; ".join(f) for f in flags]
    return table


