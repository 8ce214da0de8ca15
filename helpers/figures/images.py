"""Image figures: contour montages of the cohort and habitat maps on the mid-tumour slice.

Both are grids of equal, square panels at a journal's full-page width
(:data:`~helpers.figures.style.DOUBLE_COLUMN_MM`): each panel shows a square
field of view centred on the tumour (its in-plane extent plus a margin, in
millimetres, so pixels keep their physical aspect), titled with the manifest
patient id and the slice index. Every title has its own row of space above
its panel, so no title covers the image above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helpers.figures.style import FONT_SIZE_LARGE, FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches
from helpers.imaging.io import read_image, read_mask
from helpers.settings.study import GeometryTolerance, StudyConfig

__all__ = ["cohort_montages", "contour_montage", "habitat_overlay", "mid_slice_index"]

#: Field of view of a panel: the tumour's larger in-plane extent times this factor, plus :data:`_MARGIN_MM` on each side.
_FOV_FACTOR = 1.15
_MARGIN_MM = 8.0
#: Space of a two-line panel title and of the figure title, in points.
_PANEL_TITLE_PT = 2.6 * FONT_SIZE_SMALL
_FIGURE_TITLE_PT = 2.2 * FONT_SIZE_LARGE
#: Outer margin and gap between panels, in inches.
_PAD_IN = 0.04
_GAP_IN = 0.06
#: Width of one title character at 7 pt, in inches (DejaVu Sans averages about 0.6 em).
_CHAR_IN = 0.6 * FONT_SIZE_SMALL / 72


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


def _square_view(region: np.ndarray, spacing_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a square field of view (in mm) centred on ``region`` (2-D boolean, rows = y).

    Indices outside the image are -1 (drawn as background). An empty region gives the whole slice.
    """
    sx, sy = spacing_xy
    ny, nx = region.shape
    if not region.any():
        return np.arange(ny), np.arange(nx)
    ys, xs = np.nonzero(region)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    extent_mm = max((ys.max() - ys.min() + 1) * sy, (xs.max() - xs.min() + 1) * sx)
    half_mm = extent_mm * _FOV_FACTOR / 2 + _MARGIN_MM
    rows = np.arange(math.floor(cy - half_mm / sy), math.ceil(cy + half_mm / sy) + 1)
    cols = np.arange(math.floor(cx - half_mm / sx), math.ceil(cx + half_mm / sx) + 1)
    rows[(rows < 0) | (rows >= ny)] = -1
    cols[(cols < 0) | (cols >= nx)] = -1
    return rows, cols


def _crop(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: float) -> np.ndarray:
    out = plane[np.clip(rows, 0, None)][:, np.clip(cols, 0, None)].astype(float)
    out[rows < 0, :] = fill
    out[:, cols < 0] = fill
    return out


def _columns_that_fit(labels: Sequence[str], columns: int, width_in: float) -> int:
    """At most ``columns`` panels per row, fewer when the longest title would be wider than a panel."""
    longest = max((len(s) for s in labels), default=1) * _CHAR_IN + _GAP_IN
    fit = max(1, int((width_in - 2 * _PAD_IN + _GAP_IN) // max(longest, 1e-9)))
    return max(1, min(columns, fit, len(labels) or 1))


def _panel_grid(n: int, columns: int, labels: Sequence[str], title: str, bottom_in: float = 0.0) -> tuple[Figure, np.ndarray]:
    """A full-page-width figure of ``n`` equal square panels, each with room for a two-line title above it.

    Axes are placed explicitly (no layout engine), so titles never reach the panel above.
    """
    width = column_width_inches("double")
    cols = _columns_that_fit(labels, columns, width)
    rows = math.ceil(max(n, 1) / cols)
    side = (width - 2 * _PAD_IN - (cols - 1) * _GAP_IN) / cols
    title_in = _PANEL_TITLE_PT / 72
    head = _FIGURE_TITLE_PT / 72 if title else 0.0
    height = 2 * _PAD_IN + head + rows * (title_in + side) + (rows - 1) * _GAP_IN + bottom_in
    fig = plt.figure(figsize=(width, height))
    axes = np.empty((rows, cols), dtype=object)
    for r in range(rows):
        top = height - _PAD_IN - head - r * (title_in + side + _GAP_IN) - title_in
        for c in range(cols):
            left = _PAD_IN + c * (side + _GAP_IN)
            ax = fig.add_axes((left / width, (top - side) / height, side / width, side / height))
            ax.axis("off")
            axes[r, c] = ax
    if title:
        fig.suptitle(title, y=1 - _PAD_IN / height, va="top", fontsize=FONT_SIZE_LARGE)
    return fig, axes


def _panel_title(ax: Axes, label: str, z: int) -> None:
    ax.set_title(f"{label}\nz = {z}", fontsize=FONT_SIZE_SMALL, pad=2, linespacing=1.1)


def contour_montage(
    items: Sequence[tuple[str, str, str, str | None]],
    window: Sequence[float] | None = None,
    columns: int = 8,
    title: str = "",
    tolerance: GeometryTolerance | None = None,
) -> Figure:
    """Mid-slice montage with the mask contour for each patient, at full-page width.

    Parameters
    ----------
    items : sequence of (label, image path, mask path, RTSTRUCT ROI name or None)
        One panel each, in the given order; the label is the manifest
        patient id (never a DICOM name).
    window : (low, high), optional
        Display window; default per image 1st-99th percentile.
    columns : int
        Panels per row (fewer when long patient ids would not fit a panel's width).
    title : str
        Figure title.
    tolerance : GeometryTolerance, optional
        The study's ``geometry_tolerance``: a mask within it is drawn on its image's exact grid.

    Returns
    -------
    matplotlib.figure.Figure
        One square axes per panel, titled ``"<patient>\\nz = <slice index>"``.
    """
    apply_style()
    labels = [str(item[0]) for item in items]
    fig, axes = _panel_grid(len(items), columns, labels, title)
    for ax, (label, image_path, mask_path, roi) in zip(axes.ravel(), items, strict=False):
        image = read_image(image_path)
        mask = read_mask(mask_path, reference=image, roi_name=roi, tolerance=tolerance)
        img = sitk.GetArrayViewFromImage(image).astype(float)
        msk = sitk.GetArrayViewFromImage(mask) > 0
        k = mid_slice_index(msk)
        lo, hi = _window(img, window)
        spacing = image.GetSpacing()[:2]
        rows, cols = _square_view(msk[k], spacing)
        ax.imshow(_crop(img[k], rows, cols, lo), cmap="gray", vmin=lo, vmax=hi, aspect=spacing[1] / spacing[0], interpolation="nearest")
        outline = _crop(msk[k], rows, cols, 0.0)
        if outline.any() and not outline.all():
            ax.contour(outline, levels=[0.5], colors=[PALETTE[1]], linewidths=0.6)
        _panel_title(ax, label, k)
    return fig


def cohort_montages(rows: pd.DataFrame, cfg: StudyConfig, cohort: str) -> Iterator[tuple[str, Figure]]:
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
) -> Figure:
    """Habitat maps over the image on the mid-tumour slice, one panel per patient, at full-page width.

    Parameters
    ----------
    items : sequence of (label, image path, habitat label-map path)
        The label map must be on the image grid (habitats are computed on the
        grid of the first habitat series).
    k : int
        Number of habitats (colours from the colour-blind-safe palette).
    window : (low, high), optional
        Display window; default per image 1st-99th percentile.
    columns : int
        Panels per row.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One square axes per patient (titled ``"<patient>\\nz = <slice index>"``)
        and a figure legend of the habitats below the panels.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    apply_style()
    legend_rows = math.ceil(k / min(k, 6))
    legend_in = (legend_rows * 1.6 * FONT_SIZE_SMALL + 8) / 72  # the legend rows and a gap above them
    labels = [str(item[0]) for item in items]
    fig, axes = _panel_grid(len(items), columns, labels, title, bottom_in=legend_in)
    cmap = ListedColormap(list(PALETTE[:k]) if k <= len(PALETTE) else plt.get_cmap("tab20").colors[:k])
    for ax, (label, image_path, map_path) in zip(axes.ravel(), items, strict=False):
        image = read_image(image_path)
        habitat_map = sitk.GetArrayFromImage(read_image(map_path))  # a copy: a view of a temporary image would dangle
        img = sitk.GetArrayViewFromImage(image).astype(float)
        z = mid_slice_index(habitat_map > 0)
        lo, hi = _window(img, window)
        spacing = image.GetSpacing()[:2]
        aspect = spacing[1] / spacing[0]
        rows, cols = _square_view(habitat_map[z] > 0, spacing)
        ax.imshow(_crop(img[z], rows, cols, lo), cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        plane = _crop(habitat_map[z], rows, cols, 0.0)
        overlay = np.ma.masked_where(plane == 0, plane - 1)
        ax.imshow(overlay, cmap=cmap, vmin=0, vmax=max(k - 1, 1), alpha=0.6, aspect=aspect, interpolation="nearest")
        _panel_title(ax, label, z)
    height = fig.get_figheight()
    fig.legend(handles=[Patch(color=cmap(i), label=f"habitat {i + 1}") for i in range(k)], loc="lower center",
               bbox_to_anchor=(0.5, _PAD_IN / height), ncol=min(k, 6), frameon=False, fontsize=FONT_SIZE_SMALL,
               handlelength=1.2, columnspacing=1.2)  # fmt: skip
    return fig
