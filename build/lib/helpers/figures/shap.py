"""SHAP figures of the final model: beeswarm summary, global importance bars and one patient's waterfall.

They draw a :class:`shap.Explanation` from :func:`helpers.learning.explain.shap_explanation`. shap is
imported inside the functions that call it (importing it takes seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LinearSegmentedColormap, to_rgb

from helpers.figures.style import PALETTE, apply_style

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
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * n_rows + 1.2))
    with _seeded_global_numpy(random_state):  # shap jitters overlapping dots with the global RNG
        shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None, color=_VALUE_CMAP)
    ax.set_xlabel(_scale_label(explanation))
    if title:
        ax.set_title(title)
    fig.tight_layout()
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
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * n_rows + 1.0))
    y = np.arange(n_rows)[::-1]
    ax.barh(y, heights, color=PALETTE[0], height=0.7)
    for yi, h in zip(y, heights, strict=True):
        ax.text(h, yi, f" {h:.3g}", va="center", fontsize=7)
    ax.set_yticks(y, labels)
    ax.set_xlabel(f"mean |{_scale_label(explanation)}|")
    ax.set_xlim(0, max(heights) * 1.18 if max(heights) > 0 else 1)
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _recolour(fig: plt.Figure) -> None:
    """Replace shap's fixed red/blue with the palette's vermillion/blue (colour-blind safe)."""
    from shap.plots import colors as shap_colors

    mapping = {tuple(np.round(to_rgb(shap_colors.red_rgb), 3)): PALETTE[3], tuple(np.round(to_rgb(shap_colors.blue_rgb), 3)): PALETTE[0]}
    for ax in fig.axes:
        for artist in list(ax.patches) + list(ax.lines) + list(ax.texts):
            for getter, setter in (("get_facecolor", "set_facecolor"), ("get_edgecolor", "set_edgecolor"), ("get_color", "set_color")):
                if not hasattr(artist, getter):
                    continue
                try:
                    colour = tuple(np.round(to_rgb(getattr(artist, getter)()), 3))
                except (ValueError, TypeError):
                    continue
                if colour in mapping:
                    getattr(artist, setter)(mapping[colour])


def shap_waterfall_figure(explanation: shap.Explanation, index: int | str, max_display: int = 10) -> plt.Figure:
    """Waterfall of one patient: from the base value to the patient's model output.

    Parameters
    ----------
    explanation : shap.Explanation
        From :func:`helpers.learning.explain.shap_explanation`.
    index : int or str
        Row position, or the manifest patient id (an ``instance_names`` entry).
    max_display : int, default 10
        Features drawn; with more features the last row is ``"k other features"``.

    Returns
    -------
    matplotlib.figure.Figure
        Titled with the manifest patient id only (no other identifier).
    """
    import shap

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
    row = explanation[pos]
    fig = plt.figure()
    shap.plots.waterfall(row, max_display=max_display, show=False)  # draws on (and resizes) the current figure
    _recolour(fig)
    label = ids[pos] if ids is not None else f"row {pos}"
    if isinstance(explanation.output_names, str):
        fig.axes[0].set_xlabel(f"model output ({explanation.output_names})")
    fig.suptitle(label)
    # shap sizes the figure but leaves the layout to plt.show(); fix it here so a plain savefig keeps
    # the long "value = feature" labels and the f(x) / E[f(X)] annotations inside the canvas.
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig
