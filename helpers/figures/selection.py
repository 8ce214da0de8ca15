"""Figures of feature selection: the LASSO coefficient path, its cross-validation curve, the Rad-score coefficients
and the Rad-score distribution per cohort.

Each takes a fitted :class:`helpers.learning.selection.LassoSelector` (or its coefficients, or the Rad-scores) and
returns a matplotlib figure at a journal width (the cross-validation curve one column, 85 mm; figures naming
features the full page, 175 mm, long names wrapped over lines); nothing is saved here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.utils.validation import check_is_fitted

from helpers.data.columns import shown_name
from helpers.figures.style import FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches, figure_size

if TYPE_CHECKING:
    from helpers.learning.selection import LassoSelector

__all__ = ["coefficient_figure", "lasso_cv_figure", "lasso_path_figure", "radscore_distribution_by_cohort", "wrap_feature_name"]

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
    fig, ax = plt.subplots(figsize=figure_size("double", 0.5), layout="constrained")
    for name in path.columns:
        if name not in selected:
            ax.plot(x, path[name], color="0.75", lw=0.6)
    for i, name in enumerate(selected):
        ax.plot(x, path[name], color=PALETTE[i % len(PALETTE)], lw=1.2, label=wrap_feature_name(name) if i < max_labels else None)
    _mark_lambdas(ax, lasso_selector)
    ax.axhline(0, color="0.4", lw=0.5)
    ax.set_xlabel("log(λ)")
    ax.set_ylabel("coefficient (z-scored features)")
    ax.set_title(f"LASSO coefficient path: {len(selected)} of {path.shape[1]} features non-zero at λ_{lasso_selector.lambda_rule}", loc="left")
    # Beside the axes: long feature names inside would cover the paths.
    ax.legend(fontsize=FONT_SIZE_SMALL, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.spines[["top", "right"]].set_visible(False)
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
    fig, ax = plt.subplots(figsize=figure_size("single", 0.9), layout="constrained")
    ax.errorbar(
        res["log_lambda"],
        res["mean"],
        yerr=res["se"],
        fmt="o",
        ms=2.5,
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
    ax.set_ylabel({"roc_auc": "cross-validated AUC", "neg_log_loss": "cross-validated -log loss", "c_index": "cross-validated C-index",
                   "partial_likelihood": "cross-validated partial log-likelihood"}[lasso_selector.scoring])
    n_folds = sum(c.startswith("fold_") for c in res.columns)
    ax.set_title(f"{n_folds}-fold cross-validation of λ")
    # Below the axes (one column is narrow: a legend inside would cover the curve).
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False, fontsize=FONT_SIZE_SMALL)
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
    labels = [wrap_feature_name(str(name)) for name in nz.index]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(column_width_inches("double"), 0.8 + 0.14 * lines + 0.08 * len(nz)), layout="constrained")
    colours = [PALETTE[3] if v < 0 else PALETTE[0] for v in nz]
    ax.barh(np.arange(len(nz)), nz.to_numpy(), color=colours)
    ax.set_yticks(np.arange(len(nz)), labels=labels, fontsize=FONT_SIZE_SMALL)
    ax.spines[["top", "right"]].set_visible(False)
    ax.axvline(0, color="0.3", lw=0.6)
    ax.set_xlabel("Coefficient (per SD of the feature)")
    ax.set_title(title)
    return fig


def radscore_distribution_by_cohort(
    scores: pd.DataFrame,
    training_cohorts: Sequence[str],
    p_values: Mapping[str, float] | None = None,
    cohorts: Sequence[str] | None = None,
) -> Figure:
    """Rad-score by outcome class per cohort, each panel saying whose scores it shows.

    The Rad-score formula is fitted on the training cohort, so its training
    scores are in-sample (optimistic: the same patients chose the features
    and the coefficients); the panels of the training cohort(s) are titled
    ``"<cohort> (in-sample)"`` and the others ``"<cohort> (held out)"``.
    Drawn by :func:`helpers.figures.evaluation.radscore_distribution_figure`.

    Parameters
    ----------
    scores : DataFrame
        Columns ``radscore``, ``outcome`` (0/1) and ``cohort``, one row per patient.
    training_cohorts : sequence of str
        Cohorts the Rad-score was fitted on (``StudyConfig.training_cohorts``).
    p_values : mapping of cohort -> float, optional
        E.g. Mann-Whitney U p-values per cohort (keys: the cohort names in ``scores``).
    cohorts : sequence of str, optional
        Panel order (cohort names in ``scores``); default order of first appearance.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from helpers.figures.evaluation import radscore_distribution_figure

    training = set(training_cohorts)

    def panel(cohort: object) -> str:
        shown = shown_name(cohort)  # cohort names as words, so long titles wrap between them
        return f"{shown}\n(in-sample)" if cohort in training else f"{shown}\n(held out)"

    order = list(pd.unique(scores["cohort"])) if cohorts is None else list(cohorts)
    named = scores.assign(cohort=scores["cohort"].map(panel))
    p = {panel(c): float(v) for c, v in p_values.items()} if p_values is not None else None
    return radscore_distribution_figure(named, p_values=p, cohorts=[panel(c) for c in order])
