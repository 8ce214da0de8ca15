"""Figures of feature selection: the LASSO coefficient path, its cross-validation curve and the Rad-score coefficients.

Each takes a fitted :class:`helpers.learning.selection.LassoSelector` (or its coefficients) and returns a
matplotlib figure; nothing is saved here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from helpers.figures.style import PALETTE, apply_style

if TYPE_CHECKING:
    from helpers.learning.selection import LassoSelector

__all__ = ["coefficient_figure", "lasso_cv_figure", "lasso_path_figure", "wrap_feature_name"]

#: Characters per line of a wrapped feature name (at 7 pt about 45 mm).
FEATURE_NAME_WIDTH = 45


def wrap_feature_name(name: str, width: int = FEATURE_NAME_WIDTH) -> str:
    """Wrap a long radiomics feature name over lines, breaking after ``_``, ``-``, ``.`` or a space.

    Nothing is dropped or abbreviated: removing the line breaks gives the name
    back, so distinct names stay distinct. A part longer than ``width`` without
    a break point is cut at ``width``.

    Parameters
    ----------
    name : str
        E.g. ``"MR_T1_ring5mm_wavelet-LLH_glrlm_ShortRunHighGrayLevelEmphasis"``.
    width : int
        Longest line, in characters.

    Returns
    -------
    str
        The name, with ``"\\n"`` between lines.
    """
    if len(name) <= width:
        return name
    lines, line = [], ""
    for part in re.findall(r"[^_\-. ]*[_\-. ]|[^_\-. ]+$", name):
        while len(part) > width:  # a single part too long for a line
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = part
        else:
            line += part
    if line:
        lines.append(line)
    return "\n".join(lines)


def _mark_lambdas(ax, lasso: LassoSelector) -> None:
    ax.axvline(np.log(lasso.lambda_min_), color=PALETTE[3], ls="--", lw=0.9, label=f"lambda_min = {lasso.lambda_min_:.3g}")
    ax.axvline(np.log(lasso.lambda_1se_), color=PALETTE[7], ls=":", lw=0.9, label=f"lambda_1se = {lasso.lambda_1se_:.3g}")


def lasso_path_figure(lasso_selector: LassoSelector, max_labels: int = 10):
    """Coefficient paths against log(lambda), lambda_min and lambda_1se marked.

    Features selected at the chosen lambda are coloured (the ``max_labels``
    largest named in the legend); the others are thin grey lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_is_fitted(lasso_selector, "path_")
    apply_style()
    path = lasso_selector.path_
    x = np.log(path.index.to_numpy())
    selected = lasso_selector.coef_[lasso_selector.coef_ != 0].abs().sort_values(ascending=False, kind="stable").index
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in path.columns:
        if name not in selected:
            ax.plot(x, path[name], color="0.75", lw=0.6)
    for i, name in enumerate(selected):
        ax.plot(x, path[name], color=PALETTE[i % len(PALETTE)], lw=1.2, label=name if i < max_labels else None)
    _mark_lambdas(ax, lasso_selector)
    ax.axhline(0, color="0.4", lw=0.5)
    ax.set_xlabel("log(λ)")
    ax.set_ylabel("coefficient (z-scored features)")
    ax.set_title(f"LASSO coefficient path ({len(selected)} of {path.shape[1]} features non-zero at λ_{lasso_selector.lambda_rule})")
    ax.legend(fontsize=6, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def lasso_cv_figure(lasso_selector: LassoSelector):
    """Mean cross-validated score +/- SE against log(lambda), lambda_min and lambda_1se marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_is_fitted(lasso_selector, "cv_results_")
    apply_style()
    res = lasso_selector.cv_results_
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(
        res["log_lambda"],
        res["mean"],
        yerr=res["se"],
        fmt="o",
        ms=3,
        color=PALETTE[0],
        ecolor="0.6",
        elinewidth=0.8,
        capsize=2,
        label="mean ± SE",
    )
    _mark_lambdas(ax, lasso_selector)
    top = ax.secondary_xaxis("top")
    ticks = res.iloc[:: max(1, len(res) // 8)]
    top.set_xticks(ticks["log_lambda"].to_numpy(), labels=[str(int(n)) for n in ticks["n_nonzero"]])
    top.set_xlabel("non-zero coefficients")
    ax.set_xlabel("log(λ)")
    ax.set_ylabel({"roc_auc": "cross-validated AUC", "neg_log_loss": "cross-validated -log loss"}[lasso_selector.scoring])
    n_folds = sum(c.startswith("fold_") for c in res.columns)
    ax.set_title(f"{n_folds}-fold cross-validation of λ")
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def coefficient_figure(coef: pd.Series, title: str = "Rad-score coefficients"):
    """Horizontal bar chart of the non-zero coefficients, sorted by value.

    Parameters
    ----------
    coef : Series
        Coefficients indexed by feature (zeros are left out), e.g. ``LassoSelector.coef_``.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    apply_style()
    nz = coef[coef != 0].sort_values(kind="stable")
    if nz.empty:
        raise ValueError("no non-zero coefficient to plot")
    fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.28 * len(nz)))
    colours = [PALETTE[3] if v < 0 else PALETTE[0] for v in nz]
    ax.barh(np.arange(len(nz)), nz.to_numpy(), color=colours)
    ax.set_yticks(np.arange(len(nz)), labels=list(nz.index), fontsize=7)
    ax.axvline(0, color="0.3", lw=0.6)
    ax.set_xlabel("coefficient (per SD of the feature)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
