"""Image figures: contour montages of the cohort and habitat maps on the mid-tumour slice."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from helpers.figures.style import PALETTE, apply_style  # noqa: E402
from helpers.imaging.io import read_image, read_mask  # noqa: E402
from helpers.settings.study import GeometryTolerance, StudyConfig  # noqa: E402


def mid_slice_index(mask: np.ndarray) -> int:
    """Axial index in the middle of the mask's z extent (array order z, y, x).

    Raises
    ------
    ValueError
        When the mask is empty.
    """
    zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if zs.size == 0:
        raise ValueError("empty mask has no mid slice")
    mid = (zs[0] + zs[-1]) // 2
    # The middle of the extent can fall in a gap of a multi-part mask: take the nearest slice with mask.
    return int(zs[np.argmin(np.abs(zs - mid))])


def _window(image: np.ndarray, window: Sequence[float] | None) -> tuple[float, float]:
    if window is not None:
        return float(window[0]), float(window[1])
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1)


def contour_montage(
    items: Sequence[tuple[str, str, str, str | None]],
    window: Sequence[float] | None = None,
    columns: int = 8,
    title: str = "",
    panel_inches: float = 1.6,
    tolerance: GeometryTolerance | None = None,
) -> plt.Figure:
    """Mid-slice montage with the mask contour for each patient.

    Parameters
    ----------
    items : sequence of (label, image path, mask path, RTSTRUCT ROI name or None)
        One panel each, in the given order; the label is the manifest
        patient id (never a DICOM name).
    window : (low, high), optional
        Display window; default per image 1st-99th percentile.
    columns : int
        Panels per row.
    title : str
        Figure title.
    tolerance : GeometryTolerance, optional
        The study's ``geometry_tolerance``: a mask within it is drawn on its image's exact grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    apply_style()
    n = max(len(items), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_inches, rows * panel_inches + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, image_path, mask_path, roi) in zip(axes.ravel(), items, strict=False):
        image = read_image(image_path)
        mask = read_mask(mask_path, reference=image, roi_name=roi, tolerance=tolerance)
        img = sitk.GetArrayViewFromImage(image).astype(float)
        msk = sitk.GetArrayViewFromImage(mask) > 0
        k = mid_slice_index(msk)
        lo, hi = _window(img, window)
        sx, sy = image.GetSpacing()[:2]
        ax.imshow(img[k], cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="nearest")
        if msk[k].any() and not msk[k].all():
            ax.contour(msk[k].astype(float), levels=[0.5], colors=[PALETTE[1]], linewidths=0.8)
        ax.set_title(f"{label} (z={k})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cohort_montages(rows: pd.DataFrame, cfg: StudyConfig, cohort: str) -> Iterator[tuple[str, plt.Figure]]:
    """Contour montages of one cohort: one per series, paginated for large cohorts.

    Yields ``(name, figure)`` one at a time (write and close each before the
    next is drawn, so memory stays flat). Names are ``montage_<series>`` or,
    when a series needs several pages, ``montage_<series>_p<k>``.
    """
    per_page = cfg.qc.montage_max_panels
    for series, series_rows in rows.groupby("series", sort=False):
        items = [(r.patient, r.image_path, r.mask_path, r.mask_roi or None) for r in series_rows.itertuples()]
        pages = [items[i : i + per_page] for i in range(0, len(items), per_page)]
        for k, page in enumerate(pages, start=1):
            suffix = f" (page {k} of {len(pages)})" if len(pages) > 1 else ""
            fig = contour_montage(
                page,
                window=cfg.series[series].display_window,
                columns=cfg.qc.montage_columns,
                title=f"{series}, {cohort} cohort: mid-tumour slice with contour{suffix}",
                tolerance=cfg.geometry_tolerance,
            )
            yield f"montage_{series.lower()}" + (f"_p{k}" if len(pages) > 1 else ""), fig


def habitat_overlay(
    items: Sequence[tuple[str, str, str]],
    k: int,
    window: Sequence[float] | None = None,
    columns: int = 4,
    title: str = "",
    panel_inches: float = 2.2,
) -> plt.Figure:
    """Habitat maps over the image on the mid-tumour slice, one panel per patient.

    Parameters
    ----------
    items : sequence of (label, image path, habitat label-map path)
        The label map must be on the image grid (habitats are computed on the
        grid of the first habitat series).
    k : int
        Number of habitats (colours from the colour-blind-safe palette).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    apply_style()
    n = max(len(items), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_inches, rows * panel_inches + 0.7), squeeze=False)
    cmap = ListedColormap(list(PALETTE[:k]) if k <= len(PALETTE) else plt.get_cmap("tab20").colors[:k])
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, image_path, map_path) in zip(axes.ravel(), items, strict=False):
        image = read_image(image_path)
        labels = sitk.GetArrayFromImage(read_image(map_path))  # a copy: a view of a temporary image would dangle
        img = sitk.GetArrayViewFromImage(image).astype(float)
        z = mid_slice_index(labels > 0)
        lo, hi = _window(img, window)
        sx, sy = image.GetSpacing()[:2]
        ax.imshow(img[z], cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="nearest")
        overlay = np.ma.masked_where(labels[z] == 0, labels[z] - 1)
        ax.imshow(overlay, cmap=cmap, vmin=0, vmax=k - 1, alpha=0.6, aspect=sy / sx, interpolation="nearest")
        ax.set_title(f"{label} (z={z})", fontsize=7)
    fig.legend(handles=[Patch(color=cmap(i), label=f"habitat {i + 1}") for i in range(k)], loc="lower center", ncol=min(k, 6), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
