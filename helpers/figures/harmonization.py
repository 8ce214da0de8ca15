"""Figure of ComBat harmonisation: feature distributions by batch before and after (box plots, Kruskal-Wallis p).

Full-page width (175 mm), one row per feature headed by its name, panels lettered A, B, ... in reading order.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from helpers.figures.style import FONT_SIZE, FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches, panel_label
from helpers.learning.harmonize import _short, _sorted_levels

__all__ = ["combat_diagnostics_figure"]


def _format_p(p: float) -> str:
    """Kruskal-Wallis p as a journal prints it (``p < 0.001``, ``p = 0.018``)."""
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _kruskal_p(groups: Sequence[np.ndarray]) -> float:
    ok = [g for g in groups if len(g)]
    return float(stats.kruskal(*ok).pvalue) if len(ok) >= 2 and np.ptp(np.concatenate(ok)) > 0 else float("nan")


def combat_diagnostics_figure(before: pd.DataFrame, after: pd.DataFrame, batch: pd.Series, features: Sequence[str]) -> Figure:
    """Feature distributions by batch before and after ComBat (box plots, one row per feature).

    Each row is headed by the (wrapped) feature name; its two panels show one
    box per batch (Okabe-Ito colours, same colour per batch in every panel)
    before and after harmonisation, the Kruskal-Wallis p-value for a batch
    difference in the panel title, and share the y axis ("Feature value", the
    feature's own units). The batch variable (``batch.name``) labels the x
    axes of the bottom row; panels are lettered A, B, ... row by row.

    Parameters
    ----------
    before, after : DataFrame
        Feature tables indexed by patient, before and after harmonisation.
    batch : Series
        Batch of each patient (indexed by patient; must cover ``before``'s rows).
    features : sequence of str
        A few features to show (one row each).

    Returns
    -------
    matplotlib.figure.Figure
        ``2 * len(features)`` axes, row by row (before, after).
    """
    features = list(features)
    if not features:
        raise ValueError("features must name at least one feature to plot")
    for name, table in (("before", before), ("after", after)):
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise KeyError(f"features not in the '{name}' table: {_short(missing)}")
    if not before.index.equals(after.index):
        raise ValueError("before and after must hold the same patients in the same order")
    absent = [p for p in before.index if p not in batch.index]
    if absent:
        raise ValueError(f"batch has no value for patient(s) {_short(map(str, absent))}")
    b = batch.reindex(before.index)
    levels = _sorted_levels(b)
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(levels))]
    tick_labels = [str(lvl) for lvl in levels]
    slanted = sum(len(t) for t in tick_labels) > 40  # long batch names: slant them so neighbours do not collide
    apply_style()
    width = column_width_inches("double")
    row_height = 1.95 + (0.3 if slanted else 0.0)
    fig = plt.figure(figsize=(width, row_height * len(features) + 0.3), layout="constrained")
    rows = fig.subfigures(len(features), 1, squeeze=False)[:, 0]
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for r, (sub, feat) in enumerate(zip(rows, features, strict=True)):
        axes = sub.subplots(1, 2, sharey=True)
        # Radiomics names are long: the wrapped name heads the row, each panel says before/after.
        sub.suptitle("\n".join(textwrap.wrap(str(feat), 95, break_on_hyphens=False)), fontsize=FONT_SIZE, fontweight="bold", x=0.01, ha="left")
        for c, (label, table) in enumerate((("before ComBat", before), ("after ComBat", after))):
            ax = axes[c]
            groups = [table.loc[(b == lvl).to_numpy(), feat].dropna().to_numpy(dtype=float) for lvl in levels]
            bp = ax.boxplot(groups, patch_artist=True, widths=0.6, medianprops={"color": "black", "linewidth": 1.0},
                            flierprops={"markersize": 3, "markeredgewidth": 0.6}, boxprops={"linewidth": 0.6},
                            whiskerprops={"linewidth": 0.6}, capprops={"linewidth": 0.6})  # fmt: skip
            for patch, colour in zip(bp["boxes"], colours, strict=True):
                patch.set_facecolor(colour)
                patch.set_alpha(0.8)
            if slanted:
                ax.set_xticks(range(1, len(levels) + 1), tick_labels, rotation=30, ha="right", rotation_mode="anchor")
            else:
                ax.set_xticks(range(1, len(levels) + 1), tick_labels)
            ax.set_title(f"{label} (Kruskal-Wallis {_format_p(_kruskal_p(groups))})", fontsize=FONT_SIZE)
            if c == 0:
                ax.set_ylabel("Feature value")
            else:
                ax.tick_params(labelleft=False)
            if r == len(features) - 1:
                ax.set_xlabel(str(batch.name or "Batch"))
            ax.tick_params(labelsize=FONT_SIZE_SMALL)
            ax.spines[["top", "right"]].set_visible(False)
            panel_label(ax, next(letters, ""))
    return fig
