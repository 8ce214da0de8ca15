"""Figure of the model grid: AUC heatmap of feature blocks x algorithms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.figures.style import apply_style

__all__ = ["auc_heatmap_figure"]

_VALUE_LABELS = {
    "cv_auc_mean": "CV AUC (mean over folds)",
    "oof_auc": "training out-of-fold AUC",
    "test_auc": "held-out AUC",
}


def auc_heatmap_figure(
    grid: pd.DataFrame,
    value: str = "cv_auc_mean",
    rows: str = "block_label",
    cols: str = "algorithm_label",
    sd: str | None = None,
    title: str = "",
    cmap: str = "cividis",
    vmin: float = 0.5,
    vmax: float = 1.0,
    fmt: str = ".2f",
) -> plt.Figure:
    """Heatmap of model AUCs (blocks x algorithms), annotated with the values.

    Parameters
    ----------
    grid : DataFrame
        Output of :func:`helpers.learning.models.model_grid` (or any long table with ``rows``,
        ``cols`` and ``value`` columns, one row per cell).
    value : str
        Column shown (``cv_auc_mean``, ``oof_auc``, ``test_auc``, ...).
    rows, cols : str
        Columns giving the heatmap rows and columns, in order of first appearance.
    sd : str, optional
        Column annotated as ``± sd`` under each value (e.g. ``cv_auc_sd``).
    title : str
        Figure title.
    cmap : str
        Sequential colour-blind-safe colormap (``cividis`` or ``viridis``).
    vmin, vmax : float
        Colour range (AUC 0.5 = chance to 1).
    fmt : str
        Number format of the annotations.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For missing columns or a cell given twice.
    """
    import seaborn as sns

    needed = [c for c in (rows, cols, value, sd) if c is not None and c not in grid.columns]
    if needed:
        raise ValueError(f"grid has no column(s) {needed}; available: {list(grid.columns)}")
    if grid.duplicated([rows, cols]).any():
        raise ValueError(f"several rows per {rows} x {cols} cell; filter the grid first")
    row_order, col_order = list(pd.unique(grid[rows])), list(pd.unique(grid[cols]))
    values = grid.pivot(index=rows, columns=cols, values=value).reindex(index=row_order, columns=col_order).astype(float)
    text = values.map(lambda v: format(v, fmt) if np.isfinite(v) else "n/a")
    if sd is not None:
        sds = grid.pivot(index=rows, columns=cols, values=sd).reindex(index=row_order, columns=col_order).astype(float)
        text = text + sds.map(lambda s: f"\n±{format(s, fmt)}" if np.isfinite(s) else "")
    apply_style()
    height = 0.9 + (0.5 if sd else 0.35) * len(row_order)
    fig, ax = plt.subplots(figsize=(2.2 + 0.85 * len(col_order), max(height, 2.0)))
    sns.heatmap(values, annot=text.to_numpy(), fmt="", cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0.5, linecolor="white",
                cbar_kws={"label": _VALUE_LABELS.get(value, value)}, annot_kws={"fontsize": 7}, ax=ax)  # fmt: skip
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
