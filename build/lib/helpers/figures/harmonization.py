"""Figure of ComBat harmonisation: feature distributions by batch before and after (box plots, Kruskal-Wallis p)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import stats

from helpers.figures.style import PALETTE, apply_style
from helpers.learning.harmonize import _short, _sorted_levels

__all__ = ["combat_diagnostics_figure"]


def combat_diagnostics_figure(before: pd.DataFrame, after: pd.DataFrame, batch: pd.Series, features: Sequence[str]) -> Figure:
    """Feature distributions by batch before and after ComBat (box plots, one row per feature).

    Each panel shows one box per batch (Okabe-Ito colours, same colour per
    batch in every panel) and the Kruskal-Wallis p-value for a batch
    difference; the two panels of a row share the y axis.

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
    apply_style()
    width = max(7.5, 2.0 + 0.45 * len(levels) * 2)
    fig, axes = plt.subplots(len(features), 2, figsize=(width, 2.6 * len(features) + 0.5), squeeze=False)
    for r, feat in enumerate(features):
        for c, (label, table) in enumerate((("before ComBat", before), ("after ComBat", after))):
            ax = axes[r, c]
            groups = [table.loc[(b == lvl).to_numpy(), feat].dropna().to_numpy(dtype=float) for lvl in levels]
            bp = ax.boxplot(groups, patch_artist=True, widths=0.6, medianprops={"color": "black"})
            for patch, colour in zip(bp["boxes"], colours, strict=True):
                patch.set_facecolor(colour)
                patch.set_alpha(0.8)
            ax.set_xticks(range(1, len(levels) + 1), [str(lvl) for lvl in levels], rotation=30, ha="right")
            ok = [g for g in groups if len(g)]
            p = stats.kruskal(*ok).pvalue if len(ok) >= 2 and np.ptp(np.concatenate(ok)) > 0 else np.nan
            # Radiomics names are long: the (wrapped) name heads the row, each panel says before/after.
            name = "\n".join(textwrap.wrap(str(feat), 70, break_on_hyphens=False)) if c == 0 else ""
            ax.set_title(f"{label} (Kruskal-Wallis p = {p:.2g})", fontsize=8)
            if name:
                ax.annotate(name, xy=(0, 1.18), xycoords="axes fraction", fontsize=8, fontweight="bold", va="bottom", annotation_clip=False)
        lo = min(axes[r, 0].get_ylim()[0], axes[r, 1].get_ylim()[0])
        hi = max(axes[r, 0].get_ylim()[1], axes[r, 1].get_ylim()[1])
        axes[r, 0].set_ylim(lo, hi)
        axes[r, 1].set_ylim(lo, hi)
    fig.legend(handles=[Patch(facecolor=col, label=str(lvl)) for lvl, col in zip(levels, colours, strict=True)],
               loc="lower center", ncol=min(len(levels), 6), frameon=False, title=str(batch.name or "batch"))  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
