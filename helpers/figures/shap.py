"""SHAP figures of the final model: beeswarm summary, global importance bars and one patient's waterfall.

They draw a :class:`shap.Explanation` from :func:`helpers.learning.explain.shap_explanation`. shap is
imported inside the functions that call it (importing it takes seconds). All three are full-page
width (175 mm; radiomics feature names are long), fonts 7-9 pt, long names wrapped over lines
(never cut); the waterfall is drawn here rather than by ``shap.plots.waterfall``, whose fixed
8-inch layout truncated the labels and stacked the base-value annotation on the axis label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from helpers.figures.selection import wrap_feature_name
from helpers.figures.style import FONT_SIZE, FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches

if TYPE_CHECKING:
    import shap

__all__ = ["shap_bar_figure", "shap_beeswarm_figure", "shap_waterfall_figure"]

#: Colour map of feature values (low -> high) from the colour-blind-safe palette.
_VALUE_CMAP = LinearSegmentedColormap.from_list("helpers_shap", [PALETTE[0], "#CCCCCC", PALETTE[3]])


def _scale_label(explanation: shap.Explanation) -> str:
    scale = explanation.output_names
    return f"SHAP value (impact on {scale})" if isinstance(scale, str) else "SHAP value"


def _n_shown(n_features: int, max_display: int) -> int:
    if max_display < 1:
        raise ValueError(f"max_display must be >= 1, got {max_display}")
    return min(n_features, max_display)


def shap_beeswarm_figure(
    explanation: shap.Explanation, max_display: int = 10, title: str = "", random_state: int = 0
) -> plt.Figure:
    """Beeswarm summary: one row per feature, one dot per patient, coloured by feature value.

    Features are ordered by mean |SHAP|. With more features than
    ``max_display``, the last row is ``"Sum of k other features"`` (so exactly
    ``min(n_features, max_display)`` rows are drawn).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import shap

    from helpers.learning.explain import _seeded_global_numpy

    apply_style()
    n_rows = _n_shown(explanation.values.shape[1], max_display)
    fig, ax = plt.subplots(figsize=(column_width_inches("double"), 0.3 * n_rows + 1.0), layout="constrained")
    with _seeded_global_numpy(random_state):  # shap jitters overlapping dots with the global RNG
        shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None, color=_VALUE_CMAP, s=10)
    fig.set_size_inches(column_width_inches("double"), 0.3 * n_rows + 1.0)  # shap resizes the figure: back to the page width
    ax.set_yticks(ax.get_yticks(), [wrap_feature_name(t.get_text()) for t in ax.get_yticklabels()], fontsize=FONT_SIZE_SMALL)
    ax.tick_params(axis="x", labelsize=FONT_SIZE_SMALL)
    ax.set_xlabel(_scale_label(explanation), fontsize=FONT_SIZE)
    for bar in fig.axes[1:]:  # shap's colour bar of the feature values
        bar.tick_params(labelsize=FONT_SIZE_SMALL)
        bar.set_ylabel(bar.get_ylabel(), fontsize=FONT_SIZE)
    if title:
        ax.set_title(title)
    return fig


def shap_bar_figure(explanation: shap.Explanation, max_display: int = 10, title: str = "") -> plt.Figure:
    """Global importance: mean |SHAP| per feature, largest on top.

    With more features than ``max_display``, the last bar is the summed mean
    |SHAP| of the remaining features (``"Sum of k other features"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    apply_style()
    values = np.asarray(explanation.values, dtype=float)
    names = list(explanation.feature_names)
    n_rows = _n_shown(len(names), max_display)
    importance = np.abs(values).mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    if len(names) > max_display:
        keep = order[: max_display - 1]
        labels = [names[i] for i in keep] + [f"Sum of {len(names) - len(keep)} other features"]
        heights = list(importance[keep]) + [float(importance[order[max_display - 1 :]].sum())]
    else:
        labels = [names[i] for i in order]
        heights = list(importance[order])
    fig, ax = plt.subplots(figsize=(column_width_inches("double"), 0.3 * n_rows + 0.8), layout="constrained")
    y = np.arange(n_rows)[::-1]
    colours = [("0.6" if lab.startswith("Sum of ") and len(names) > max_display else PALETTE[0]) for lab in labels]  # the pooled rest in grey
    ax.barh(y, heights, color=colours, height=0.7)
    for yi, h in zip(y, heights, strict=True):
        ax.text(h, yi, f" {h:.3g}", va="center", fontsize=FONT_SIZE_SMALL)
    ax.set_yticks(y, [wrap_feature_name(lab) for lab in labels])
    scale = explanation.output_names
    ax.set_xlabel(f"Mean |SHAP value| (impact on {scale})" if isinstance(scale, str) else "Mean |SHAP value|")
    ax.set_xlim(0, max(heights) * 1.18 if max(heights) > 0 else 1)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def _waterfall_rows(values: np.ndarray, data: np.ndarray, names: list[str], max_display: int) -> list[tuple[str, float]]:
    """(label, SHAP value) per row, largest |SHAP| first; beyond ``max_display`` the rest is one ``"k other features"`` row."""
    order = np.argsort(-np.abs(values), kind="stable")
    shown = order if len(order) <= max_display else order[: max_display - 1]
    rows = [(f"{wrap_feature_name(names[i])} = {_format_value(data[i])}", float(values[i])) for i in shown]
    rest = order[len(shown) :]
    if len(rest):
        rows.append((f"{len(rest)} other features", float(values[rest].sum())))
    return rows


def _signed(v: float) -> str:
    """``v`` with 3 decimals and a typographic minus, as on the axis."""
    return f"{v:.3f}".replace("-", "\N{MINUS SIGN}")


def _format_value(v: object) -> str:
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return str(v)


def shap_waterfall_figure(explanation: shap.Explanation, index: int | str, max_display: int = 10) -> Figure:
    """Waterfall of one patient: from the base value E[f(X)] to the patient's model output f(x).

    One arrow per feature (largest |SHAP| on top; vermillion pushes the
    output up, blue down), starting where the features below it left the
    output; the row label is the (wrapped) feature name and the patient's
    value. The base value and the output are dashed and dotted vertical lines,
    stated with their values in the axes title (so they never collide with
    tick or axis labels).

    Parameters
    ----------
    explanation : shap.Explanation
        From :func:`helpers.learning.explain.shap_explanation`.
    index : int or str
        Row position, or the manifest patient id (an ``instance_names`` entry).
    max_display : int, default 10
        Rows drawn; with more features the last row is ``"k other features"``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one arrow (``FancyArrow``) per row; the figure is titled
        with the manifest patient id only (no other identifier).
    """
    from matplotlib.lines import Line2D

    apply_style()
    ids = list(explanation.instance_names) if explanation.instance_names is not None else None
    if isinstance(index, str):
        if ids is None or index not in ids:
            raise KeyError(f"patient {index!r} is not in the explanation; explain a DataFrame indexed by patient id, or pass a row position")
        pos = ids.index(index)
    else:
        pos = int(index)
        if not -len(explanation.values) <= pos < len(explanation.values):
            raise IndexError(f"row {pos} is out of range for an explanation of {len(explanation.values)} patients")
    _n_shown(explanation.values.shape[1], max_display)
    values = np.asarray(explanation.values[pos], dtype=float)
    data = np.asarray(explanation.data[pos]) if explanation.data is not None else np.full(len(values), np.nan)
    base = float(np.ravel(explanation.base_values)[pos] if np.ndim(explanation.base_values) else explanation.base_values)
    rows = _waterfall_rows(values, data, list(explanation.feature_names), max_display)
    output = base + float(values.sum())
    n = len(rows)
    fig, ax = plt.subplots(figsize=(column_width_inches("double"), 0.3 * n + 1.1), layout="constrained")
    # Cumulative start of each row: the bottom row starts at the base value, each row above where the one below ended.
    starts = base + np.concatenate([[0.0], np.cumsum([v for _, v in rows[::-1]])])[:-1][::-1]
    lo = min(base, output, *(starts), *(starts + [v for _, v in rows]))
    hi = max(base, output, *(starts), *(starts + [v for _, v in rows]))
    span = hi - lo if hi > lo else 1.0
    head = 0.02 * span  # arrow-head length
    for k, ((_, v), x0) in enumerate(zip(rows, starts, strict=True)):
        yk = n - 1 - k
        colour = PALETTE[3] if v >= 0 else PALETTE[0]
        length = abs(v)
        head_length = min(head, length)
        ax.arrow(x0, yk, v - np.sign(v) * head_length if v else 0.0, 0, width=0.55, head_width=0.55, head_length=head_length,
                 length_includes_head=False, color=colour, linewidth=0)  # fmt: skip
        inside = length > 0.16 * span
        text = f"{v:+.2f}".replace("-", "\N{MINUS SIGN}")
        if inside:
            ax.text(x0 + v / 2, yk, text, ha="center", va="center", color="white", fontsize=FONT_SIZE_SMALL, fontweight="bold")
        else:
            ax.text(x0 + v + np.sign(v or 1) * 0.01 * span, yk, text, ha="left" if v >= 0 else "right", va="center", color=colour,
                    fontsize=FONT_SIZE_SMALL)  # fmt: skip
    ax.axvline(base, color="0.45", ls="--", lw=0.8, zorder=0)
    ax.axvline(output, color="0.2", ls=":", lw=0.9, zorder=0)
    ax.set_yticks(range(n - 1, -1, -1), [label for label, _ in rows], fontsize=FONT_SIZE_SMALL)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(lo - 0.12 * span, hi + 0.12 * span)
    ax.tick_params(axis="y", length=0)
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.grid(axis="y", color="0.9", lw=0.5)
    ax.set_axisbelow(True)  # grid lines behind the arrows
    scale = explanation.output_names if isinstance(explanation.output_names, str) else None
    ax.set_xlabel(f"Model output ({scale})" if scale else "Model output")
    handles = [Line2D([], [], color="0.45", ls="--", lw=0.8, label=f"E[f(X)] = {_signed(base)} (mean output of the background)"),
               Line2D([], [], color="0.2", ls=":", lw=0.9, label=f"f(x) = {_signed(output)} (this patient)")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=FONT_SIZE_SMALL)
    label = ids[pos] if ids is not None else f"row {pos}"
    fig.suptitle(label, fontsize=FONT_SIZE)
    return fig
