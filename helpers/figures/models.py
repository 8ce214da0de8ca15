"""Figure of the model grid: AUC heatmap of feature blocks x algorithms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.data.columns import shown_name
from helpers.figures.style import FONT_SIZE_SMALL, apply_style, column_width_inches

__all__ = ["ALGORITHM_NAMES", "auc_heatmap_figure", "value_label"]

_VALUE_LABELS = {
    "cv_auc_mean": "Cross-validated AUC (mean over folds)",
    "oof_auc": "Out-of-fold AUC (training)",
    "test_auc": "AUC (held-out test set)",
}

#: Display names of the algorithm codes of :data:`helpers.learning.models.ALGORITHMS`.
ALGORITHM_NAMES = {
    "logistic": "Logistic regression",
    "svm": "SVM",
    "random_forest": "Random forest",
    "extra_trees": "Extra trees",
    "xgboost": "XGBoost",
    "lightgbm": "LightGBM",
    "catboost": "CatBoost",
}


def value_label(value: str) -> str:
    """Human label of a model-grid column for the colour bar (``auc_external_test`` -> "AUC, external test cohort")."""
    if value in _VALUE_LABELS:
        return _VALUE_LABELS[value]
    if value.startswith("auc_"):
        return f"AUC, {shown_name(value.removeprefix('auc_'))} cohort"
    return value.replace("_", " ").capitalize()


def _display(name: object) -> str:
    return ALGORITHM_NAMES.get(str(name), str(name))


def auc_heatmap_figure(
    grid: pd.DataFrame,
    value: str = "cv_auc_mean",
    rows: str = "block_label",
    cols: str = "algorithm_label",
    sd: str | None = None,
    title: str = "",
    cmap: str = "cividis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    fmt: str = ".2f",
) -> plt.Figure:
    """Heatmap of model AUCs (blocks x algorithms) on the full 0-1 scale, annotated with the values.

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
        Figure title. The colour bar is labelled with the value's name in words
        (:func:`value_label`).
    cmap : str
        Sequential colour-blind-safe colormap (``cividis`` or ``viridis``).
    vmin, vmax : float
        Colour range, by default the whole AUC scale 0-1 (0.5 = chance sits mid-scale). A value
        outside the range widens it to the value: the colours never clip.
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
    finite = values.to_numpy()[np.isfinite(values.to_numpy())]
    if finite.size:
        vmin, vmax = min(vmin, float(finite.min())), max(vmax, float(finite.max()))
    apply_style()
    n_rows, n_cols = len(row_order), len(col_order)
    width = column_width_inches("single" if n_cols <= 3 else "double")
    cell_height = 0.36 if sd else 0.26
    height = max(0.95 + cell_height * n_rows + (0.2 if title else 0.0), 1.8)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    sns.heatmap(values, annot=text.to_numpy(), fmt="", cmap=cmap, vmin=vmin, vmax=vmax, linewidths=0.5, linecolor="white",
                cbar_kws={"label": value_label(value), "ticks": np.linspace(vmin, vmax, 6) if (vmin, vmax) == (0.0, 1.0) else None},
                annot_kws={"fontsize": FONT_SIZE_SMALL}, ax=ax)  # fmt: skip
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_xticks(np.arange(n_cols) + 0.5, [_display(c) for c in col_order], rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(n_rows) + 0.5, [str(r) for r in row_order], rotation=0)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title)
    return fig
