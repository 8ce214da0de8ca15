"""Figures of the deep-learning arms: training curves, Grad-CAM maps and super-resolution comparisons.

- :func:`loss_curve_figure` and :func:`gradcam_figure`: the 2.5D deep classifier of
  :mod:`helpers.imaging.deep.deep_features` (the maps come from its ``gradcam_maps``);
- :func:`sr_comparison_figure` and :func:`sr_training_curve_figure`: the GAN super-resolution of
  :mod:`helpers.imaging.deep.super_resolution`.

torch and the deep-learning modules are imported only inside :func:`sr_comparison_figure`, the one
figure that computes with them, so the curves and Grad-CAM panels draw without loading torch.

Sizes: the classifier loss curve is one journal column (85 mm), the others the full page (175 mm);
multi-panel figures carry panel letters. A Grad-CAM figure states where the network's weights came
from (:func:`network_weights_note`): maps of an untrained, randomly initialised backbone show no
learned image evidence, and the figure says so.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from helpers.errors import InputDataError
from helpers.figures.style import (
    FONT_SIZE,
    FONT_SIZE_LARGE,
    FONT_SIZE_SMALL,
    PALETTE,
    apply_style,
    column_width_inches,
    figure_size,
    panel_label,
)

__all__ = ["gradcam_figure", "loss_curve_figure", "network_weights_note", "sr_comparison_figure", "sr_training_curve_figure"]


def _unique_legend(axes: Sequence[plt.Axes]) -> tuple[list, list[str]]:
    """Handles and labels of several axes, each label once, in drawing order."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def loss_curve_figure(history: pd.DataFrame, title: str = "") -> Figure:
    """Training and validation loss per epoch, with the best-validation epoch marked.

    Parameters
    ----------
    history : pandas.DataFrame
        ``epoch``, ``train_loss`` and optionally ``val_loss`` (as in :class:`helpers.imaging.deep.deep_features.DeepClassifierResult`).
    title : str
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    apply_style()
    fig, ax = plt.subplots(figsize=figure_size("single", 0.8), layout="constrained")
    ax.plot(history["epoch"], history["train_loss"], color=PALETTE[0], marker="o", markersize=3, label="training")
    if "val_loss" in history:
        ax.plot(history["epoch"], history["val_loss"], color=PALETTE[1], marker="s", markersize=3, label="validation")
        best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
        ax.axvline(best, color=PALETTE[7], linestyle=":", linewidth=1, label=f"best validation (epoch {best})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    # Below the axes: inside, a one-column plot has no free corner for three entries.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def gradcam_figure(
    inputs: np.ndarray,
    maps: np.ndarray,
    patients: Sequence[str],
    channel: int = 1,
    columns: int = 4,
    cmap: str = "magma",
    alpha: float = 0.45,
    title: str = "",
    weights_note: str = "",
) -> Figure:
    """Grad-CAM heatmaps over the input slices, one panel per patient, at full-page width.

    Parameters
    ----------
    inputs : numpy.ndarray
        ``(n, 3, H, W)`` network inputs.
    maps : numpy.ndarray
        ``(n, H, W)`` maps in [0, 1] from :func:`helpers.imaging.deep.deep_features.gradcam_maps`.
    patients : sequence of str
        Panel titles (patient ids only).
    channel : int, default 1
        Input channel shown in grey (1: the largest tumour slice, or the second series).
    columns : int
        Panels per row.
    cmap : str, default "magma"
        Perceptually uniform, colour-blind-safe colormap of the heatmap.
    alpha : float
        Opacity of the heatmap.
    title : str
        Figure title.
    weights_note : str
        Where the network's weights came from (:func:`network_weights_note`),
        printed below the panels; an untrained backbone's note is in vermillion.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel (patient id as title) and a colour bar.
    """
    if len(inputs) != len(maps) or len(maps) != len(patients):
        raise InputDataError(f"{len(inputs)} inputs, {len(maps)} maps and {len(patients)} patient ids: give one of each per patient")
    apply_style()
    n = max(len(patients), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    width = column_width_inches("double")
    side = (width - 0.9) / cols  # room for the colour bar and its label on the right
    extra = (0.3 if title else 0.0) + (0.45 if weights_note else 0.0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, rows * (side + 0.25) + extra + 0.1), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    heat = None
    for ax, img, cam, pid in zip(axes.ravel(), inputs, maps, patients, strict=False):
        grey = img[channel]
        lo, hi = float(grey.min()), float(grey.max())
        ax.imshow((grey - lo) / (hi - lo if hi > lo else 1.0), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        heat = ax.imshow(cam, cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
        ax.set_title(str(pid), fontsize=FONT_SIZE)
    if heat is not None:
        bar = fig.colorbar(heat, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
        bar.solids.set_alpha(1)
        bar.set_label("Grad-CAM (scaled to max)")
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE_LARGE)
    if weights_note:
        untrained = weights_note.lower().startswith("untrained")
        fig.supxlabel("\n".join(textwrap.wrap(weights_note, 110)), fontsize=FONT_SIZE, color=PALETTE[3] if untrained else "black",
                      fontweight="bold" if untrained else "normal")  # fmt: skip
    return fig


def network_weights_note(pretrained: bool, backbone_trained: bool) -> str:
    """One sentence on where a Grad-CAM network's weights came from, for the figure.

    Parameters
    ----------
    pretrained : bool
        The backbone started from pretrained weights (``weights_sha256`` is set);
        otherwise from a seeded random initialisation.
    backbone_trained : bool
        The backbone itself was trained on the study's patients (``mode="finetune"``);
        otherwise it stayed as loaded and only the classification head was trained
        (``mode="frozen"``).

    Returns
    -------
    str
        E.g. "Untrained backbone (random initialisation, frozen; only the
        classification head was trained): the maps do not show learned image features."
    """
    if not pretrained and not backbone_trained:
        return ("Untrained backbone (random initialisation, frozen; only the classification head was trained): "
                "the maps do not show learned image features.")  # fmt: skip
    if not pretrained:
        return "Network trained from random initialisation on the training cohort (no pretrained weights)."
    if not backbone_trained:
        return "Pretrained backbone (frozen); only the classification head was trained on the training cohort."
    return "Pretrained backbone fine-tuned on the training cohort."


#: Array axis (z, y, x order) fixed by each slice orientation.
_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


def _slice(arr: np.ndarray, axis: str, index: int) -> np.ndarray:
    return np.take(arr, index, axis=_AXES[axis])


def sr_comparison_figure(
    lr: sitk.Image,
    sr: sitk.Image,
    hr_or_none: sitk.Image | None,
    slice_index: int,
    axis: Literal["axial", "coronal", "sagittal"] = "axial",
    window: Sequence[float] | None = None,
    title: str = "",
) -> Figure:
    """One slice of the LR input (nearest-neighbour up-sampled for display), trilinear, SR and HR.

    Parameters
    ----------
    lr : SimpleITK.Image
        The LR input.
    sr : SimpleITK.Image
        Its super-resolved version (sizes must be integer multiples of ``lr``'s).
    hr_or_none : SimpleITK.Image or None
        The true HR volume on the SR grid (simulated LR data), or ``None`` for
        real LR scans; when given, each panel's title carries its PSNR
        against it (whole volume, data range = HR max - min).
    slice_index : int
        Index of the slice on the SR grid along ``axis``.
    axis : {"axial", "coronal", "sagittal"}, default "axial"
        Slice orientation in array terms (z, y or x index fixed); through-plane
        SR is best judged on coronal or sagittal slices.
    window : (low, high), optional
        Display window; default the 1st-99th percentile of HR (else SR).
    title : str
        Figure title (the scale factor is appended).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel, titled ``LR (nearest)``, ``trilinear``, ``SR`` and ``HR``.
    """
    import torch

    from helpers.imaging.deep.super_resolution import _as_image, _trilinear, psnr

    if axis not in _AXES:
        raise ValueError(f"axis={axis!r}: use 'axial', 'coronal' or 'sagittal'")
    lr_arr = sitk.GetArrayFromImage(_as_image(lr, "lr")).astype(np.float32)
    sr_arr = sitk.GetArrayFromImage(_as_image(sr, "sr")).astype(np.float32)
    ratios = [s / n for s, n in zip(sr_arr.shape, lr_arr.shape, strict=True)]
    if any(r != int(r) or r < 1 for r in ratios):
        raise InputDataError(f"SR size {sr_arr.shape[::-1]} is not an integer multiple of LR size {lr_arr.shape[::-1]} (x, y, z)")
    f = [int(r) for r in ratios]
    nearest = lr_arr
    for ax_, fi in enumerate(f):
        nearest = np.repeat(nearest, fi, axis=ax_)
    tri = _trilinear(torch.from_numpy(lr_arr)[None, None], f)[0, 0].numpy()
    panels = [("LR (nearest)", nearest), ("trilinear", tri), ("SR", sr_arr)]
    hr_arr = None
    if hr_or_none is not None:
        hr_arr = sitk.GetArrayFromImage(_as_image(hr_or_none, "hr")).astype(np.float32)
        if hr_arr.shape != sr_arr.shape:
            raise InputDataError(f"HR size {hr_arr.shape[::-1]} differs from SR size {sr_arr.shape[::-1]}; put HR on the SR grid")
        panels.append(("HR", hr_arr))
    n_slices = sr_arr.shape[_AXES[axis]]
    if not 0 <= slice_index < n_slices:
        raise IndexError(f"slice_index={slice_index} is outside 0..{n_slices - 1} of the SR grid along the {axis} axis")
    ref = hr_arr if hr_arr is not None else sr_arr
    lo, hi = (float(window[0]), float(window[1])) if window is not None else tuple(float(v) for v in np.percentile(ref, [1, 99]))
    sx, sy, sz = sr.GetSpacing()
    # Rows/columns of the displayed slice and their spacings, so pixels have their physical aspect.
    aspect = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[axis]
    origin = "upper" if axis == "axial" else "lower"  # slice index increases upwards in coronal/sagittal views
    data_range = float(hr_arr.max() - hr_arr.min()) if hr_arr is not None else 1.0

    apply_style()
    width = column_width_inches("double")
    shown_rows, shown_cols = _slice(sr_arr, axis, slice_index).shape
    ratio = min(max(shown_rows * aspect / shown_cols, 0.25), 2.0)  # displayed height / width of one panel
    panel = (width - 0.1 * len(panels)) / len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, panel * ratio + 0.8), squeeze=False, layout="constrained")
    for letter, ax, (name, arr) in zip("ABCD", axes[0], panels, strict=False):
        ax.imshow(_slice(arr, axis, slice_index), cmap="gray", vmin=lo, vmax=hi, aspect=aspect, origin=origin, interpolation="nearest")
        label = name
        if hr_arr is not None and name != "HR":
            label += f"\nPSNR {psnr(hr_arr, arr, data_range or 1.0):.1f} dB"
        ax.set_title(label, fontsize=FONT_SIZE)
        ax.set_xticks([])
        ax.set_yticks([])
        panel_label(ax, letter)
    scale_txt = "\N{MULTIPLICATION SIGN}".join(str(v) for v in f[::-1])
    fig.suptitle((f"{title}: " if title else "") + f"{axis} slice {slice_index}, scale {scale_txt} (x, y, z)", fontsize=FONT_SIZE_LARGE)
    return fig


def sr_training_curve_figure(history: pd.DataFrame, title: str = "") -> Figure:
    """Loss terms, validation PSNR and SSIM (SR vs trilinear) per epoch; best epoch and warm-up marked.

    Parameters
    ----------
    history : pandas.DataFrame
        :attr:`helpers.imaging.deep.super_resolution.SRResult.history`.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Three axes: ``losses``, ``validation PSNR`` and ``validation SSIM``.
    """
    apply_style()
    fig, (ax_loss, ax_psnr, ax_ssim) = plt.subplots(1, 3, figsize=figure_size("double", 0.42), layout="constrained")
    epochs = history["epoch"]
    terms = [
        ("g_l1", "G L1"),
        ("g_gradient", "G gradient"),
        ("g_perceptual", "G perceptual"),
        ("g_adversarial", "G adversarial"),
        ("d_loss", "D"),
    ]
    for (col, label), colour in zip(terms, PALETTE, strict=False):
        if col in history and history[col].notna().any():
            ax_loss.plot(epochs, history[col], color=colour, marker="o", markersize=2.5, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (unweighted)")
    ax_loss.set_title("losses")
    best = int(history.loc[history["val_psnr"].idxmax(), "epoch"])
    warm = history.loc[history["phase"] == "warmup", "epoch"] if "phase" in history else pd.Series(dtype=float)
    for ax, metric, name in ((ax_psnr, "psnr", "validation PSNR (dB)"), (ax_ssim, "ssim", "validation SSIM")):
        validated = history.dropna(subset=[f"val_{metric}"])  # validate_every > 1: the other epochs have no value
        ax.plot(validated["epoch"], validated[f"val_{metric}"], color=PALETTE[0], marker="o", markersize=2.5, label="SR")
        ax.plot(epochs, history[f"val_{metric}_trilinear"], color=PALETTE[1], linestyle="--", label="trilinear")
        ax.set_ylabel(name)
        ax.set_title(name.replace(" (dB)", ""))
    for ax in (ax_loss, ax_psnr, ax_ssim):
        if len(warm):
            label = "warm-up (no GAN loss)" if ax is ax_loss else None
            ax.axvspan(epochs.min() - 0.5, warm.max() + 0.5, color="0.9", zorder=0, label=label)
        ax.axvline(best, color=PALETTE[7], linestyle=":", linewidth=1, label=f"best (epoch {best})" if ax is not ax_loss else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.spines[["top", "right"]].set_visible(False)
    for letter, ax in zip("ABC", (ax_loss, ax_psnr, ax_ssim), strict=True):
        panel_label(ax, letter)
    # One legend below the panels: inside, the loss terms would cover the curves.
    handles, labels = _unique_legend([ax_loss, ax_psnr])
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False, fontsize=FONT_SIZE_SMALL)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZE_LARGE)
    return fig
