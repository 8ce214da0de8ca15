"""Publication figures of model evaluation: ROC, calibration, decision curves, forest plots and more.

Every function takes already-computed data (arrays, DataFrames) and returns a
matplotlib :class:`~matplotlib.figure.Figure`; nothing is saved here (the
caller writes PNG at 300 dpi and PDF with a tight bounding box, e.g. through
``helpers.reporting``). The figures share the project style
(:func:`helpers.figures.apply_style`) and the Okabe-Ito palette
(:data:`helpers.figures.PALETTE`, colour-blind safe), are built at a journal width
(single column 85 mm, double column 175 mm; :mod:`helpers.figures.style`)
with 7-9 pt text, keep every legend outside the data area, and are deterministic: no randomness (the jitter of
strip points comes from a fixed seed), so identical inputs give identical
PNG bytes when saved with the same metadata (e.g. ``metadata={"Software": None}``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless, as in helpers.figures

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation, blended_transform_factory
from sklearn.metrics import roc_auc_score, roc_curve

from helpers.figures.style import (
    FONT_SIZE_SMALL,
    PALETTE,
    apply_style,
    column_width_inches,
    panel_label,
)

__all__ = [
    "calibration_bin_count",
    "calibration_figure",
    "decision_curve_figure",
    "dice_figure",
    "feature_weight_figure",
    "forest_figure",
    "radscore_distribution_figure",
    "roc_figure",
    "roc_panels_figure",
]

#: Palette for lines and points: Okabe-Ito without the yellow, which is too pale on white.
LINE_COLOURS = tuple(c for c in PALETTE if c.upper() != "#F0E442")
_LINESTYLES = ("-", "--", "-.", ":")
_REFERENCE = "0.55"  # grey of reference lines (chance diagonal, ideal calibration, forest reference)
SINGLE_COLUMN = column_width_inches("single")  # 85 mm
DOUBLE_COLUMN = column_width_inches("double")  # 175 mm
_LEGEND_GAP = 0.42  # inches between an axes' bottom edge and a legend placed under it (ticks + x label)
_LINE_INCHES = 0.135  # height of one 7 pt legend line (with spacing)


# --------------------------------------------------------------------------- helpers


def _colour(i: int) -> str:
    return LINE_COLOURS[i % len(LINE_COLOURS)]


def _linestyle(i: int) -> str:
    """Solid for the first 7 series, then dashed, ... so more series than colours stay distinct."""
    return _LINESTYLES[(i // len(LINE_COLOURS)) % len(_LINESTYLES)]


def _despine(ax: plt.Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)


def _text_width_inches(text: str, fontsize: float) -> float:
    """Width of one line of text in the current font, in inches (measured, not estimated)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    return width / 72.0


def _wrap_to_width(text: str, width_in: float, fontsize: float = FONT_SIZE_SMALL) -> str:
    """Break ``text`` at spaces so that no line is wider than ``width_in`` at ``fontsize``.

    Existing line breaks are kept; nothing is dropped (a single word wider than the
    width stays on its own line).
    """
    out = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width_inches(candidate, fontsize) > width_in:
                out.append(line)
                line = word
            else:
                line = candidate
        out.append(line)
    return "\n".join(out)


def _n_lines(labels: Sequence[str]) -> int:
    return sum(label.count("\n") + 1 for label in labels)


def _binary(y: object, name: str = "y", both: bool = True) -> np.ndarray:
    """Outcome as an int array of 0/1; ``both`` requires both classes."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array")
    if pd.isna(arr).any():
        raise ValueError(f"{name} has missing values")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name} must be binary 0/1, got values {sorted(values)}")
    out = arr.astype(int)
    if both and len(np.unique(out)) < 2:
        raise ValueError(f"{name} has a single class: ROC/AUC needs events and non-events")
    return out


def _scores(values: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"scores of {name!r} have shape {arr.shape}, expected ({n},) like y")
    if not np.isfinite(arr).all():
        raise ValueError(f"scores of {name!r} have missing or infinite values")
    return arr


def _legend_below(ax: plt.Axes, handles: Sequence, fontsize: float = FONT_SIZE_SMALL, ncol: int = 1) -> None:
    """Legend under the axes (below tick labels and x label): it can never hide data.

    Give the handles labels that fit the axes width (:func:`_wrap_to_width`): a layout
    engine makes room for a wider legend by shrinking the axes.
    """
    fig = ax.figure
    anchor = ax.transAxes + ScaledTranslation(0, -_LEGEND_GAP, fig.dpi_scale_trans)
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, 0.0),
        bbox_transform=anchor,
        frameon=False,
        fontsize=fontsize,
        ncol=ncol,
        borderaxespad=0.0,
        handlelength=1.8,
        labelspacing=0.3,
    )


def _format_p(p: float) -> str:
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _order(values: pd.Series, order: Sequence | None, what: str) -> list:
    present = list(pd.unique(values))
    if order is None:
        return present
    missing = [v for v in order if v not in present]
    if missing:
        raise ValueError(f"{what} {missing} not in the data (present: {present})")
    return list(order)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} has no column(s) {missing}; available: {list(df.columns)}")


def _jitter(n: int, width: float, seed: Sequence[int]) -> np.ndarray:
    """Fixed pseudo-random horizontal offsets in [-width/2, width/2] (seeded: the same on every call)."""
    rng = np.random.default_rng(list(seed))
    return (rng.random(n) - 0.5) * width


def _roc_label(name: str, y: np.ndarray, s: np.ndarray, labels: Mapping[str, str] | None) -> tuple[str, str]:
    """Model name and its AUC text (given, or ``AUC 0.781`` computed here)."""
    auc = labels[name] if labels is not None and name in labels else f"AUC {roc_auc_score(y, s):.3f}"
    return name, auc


def _roc_axes_inches(panel_width: float) -> float:
    """Side of the square ROC axes in a panel of the given width (room left for the y label and tick labels)."""
    return panel_width - 0.62


def _roc_legend_width(panel_width: float) -> float:
    """Width available to a legend text under a ROC axes (axes width minus the legend handle)."""
    return _roc_axes_inches(panel_width) - 0.32


def _roc_figure_height(axes_inches: float, legend_lines: int, title_lines: int) -> float:
    return axes_inches + 0.2 * title_lines + 0.5 + _LINE_INCHES * legend_lines + 0.12


def _roc_labels(y: object, scores: Mapping[str, object], labels: Mapping[str, str] | None, width_in: float) -> dict[str, str]:
    """Legend texts ``name (AUC ...)``; if one is wider than ``width_in``, every text puts the AUC on its own line."""
    if not scores:
        raise ValueError("no model scores to plot")
    yy = _binary(y)
    parts = [_roc_label(name, yy, _scores(values, len(yy), name), labels) for name, values in scores.items()]
    one_line = [f"{name} ({auc})" for name, auc in parts]
    if all(_text_width_inches(text, FONT_SIZE_SMALL) <= width_in for text in one_line):
        return dict(zip(scores, one_line, strict=True))
    return {name: _wrap_to_width(name, width_in) + "\n" + _wrap_to_width(f"({auc})", width_in) for name, auc in parts}


def _draw_roc(
    ax: plt.Axes, y: object, scores: Mapping[str, object], legend_labels: Mapping[str, str], colour_index: Mapping[str, int]
) -> None:
    """ROC curves, chance diagonal, square 0-1 axes with ticks every 0.2, legend under the axes."""
    yy = _binary(y)
    handles = []
    for name, values in scores.items():
        s = _scores(values, len(yy), name)
        fpr, tpr, _ = roc_curve(yy, s)
        i = colour_index[name]
        (line,) = ax.plot(fpr, tpr, color=_colour(i), ls=_linestyle(i), lw=1.3, label=legend_labels[name], gid=f"roc:{name}")
        handles.append(line)
    ax.plot([0, 1], [0, 1], color=_REFERENCE, ls="--", lw=0.8, zorder=1, gid="roc:chance")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ticks = np.round(np.linspace(0, 1, 6), 1)
    ax.set_xticks(ticks, [f"{t:.1f}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:.1f}" for t in ticks])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("Sensitivity")
    _despine(ax)
    _legend_below(ax, handles)


# --------------------------------------------------------------------------- ROC


def roc_figure(
    y: object,
    scores: Mapping[str, object],
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """ROC curves of several models on one cohort, one journal column wide (85 mm).

    Parameters
    ----------
    y : array-like of 0/1
        Outcome (1 = event / positive class); both classes must be present.
    scores : dict of model name -> array-like
        Predicted probabilities or any score (higher = more likely positive),
        aligned with ``y``. Plotted in the dict's order, one palette colour each.
    labels : dict of model name -> str, optional
        Text shown in parentheses after the model name in the legend, e.g.
        ``"AUC 0.78, 95% CI 0.62-0.93"`` (from the statistics module). Models
        without one get ``"AUC 0.781"`` computed with scikit-learn. A legend
        text wider than the axes is broken after the model name.
    title : str, optional
        Axes title (e.g. the cohort); wrapped to the column width.

    Returns
    -------
    matplotlib.figure.Figure
        One square axes with equal scales, 0-1 on both axes with ticks every
        0.2, the curves (points of :func:`sklearn.metrics.roc_curve`), the
        chance diagonal and the legend under the axes (never over the curves).
    """
    apply_style()
    width = SINGLE_COLUMN
    legend = _roc_labels(y, scores, labels, _roc_legend_width(width))
    title_text = _wrap_to_width(title, width - 0.3, 9.0) if title else ""
    height = _roc_figure_height(_roc_axes_inches(width), _n_lines(list(legend.values())), title_text.count("\n") + 1 if title else 0)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    _draw_roc(ax, y, scores, legend, {name: i for i, name in enumerate(scores)})
    if title:
        ax.set_title(title_text)
    return fig


def roc_panels_figure(
    panels: Mapping[str, tuple[object, Mapping[str, object], Mapping[str, str] | None]],
    width: str = "double",
) -> Figure:
    """ROC curves per cohort, one lettered panel each side by side (e.g. training / validation / test).

    Parameters
    ----------
    panels : dict of cohort -> (y, scores, labels)
        For each cohort (panel title, in the dict's order) the arguments of
        :func:`roc_figure`: outcome, dict of model -> scores, and optional
        legend texts (``None`` = AUC computed here).
    width : {"double", "single"}
        Journal width shared by the panels (a single panel is always one column).

    Returns
    -------
    matplotlib.figure.Figure
        One square axes per cohort, lettered A, B, ..., with its own legend
        under it (AUCs differ by cohort); a model has the same colour in
        every panel.
    """
    if not panels:
        raise ValueError("no panel to plot")
    apply_style()
    order: dict[str, int] = {}
    for _, scores, _ in panels.values():
        for name in scores:
            order.setdefault(name, len(order))
    k = len(panels)
    total = column_width_inches("single" if k == 1 else width)
    panel_width = total / k
    legends = {cohort: _roc_labels(y, scores, labels, _roc_legend_width(panel_width)) for cohort, (y, scores, labels) in panels.items()}
    titles = {
        cohort: _wrap_to_width(f"{cohort} (n = {len(np.asarray(y))})", panel_width - 0.3, 9.0) for cohort, (y, _, _) in panels.items()
    }
    lines = max(_n_lines(list(lg.values())) for lg in legends.values())
    title_lines = max(t.count("\n") + 1 for t in titles.values())
    height = _roc_figure_height(_roc_axes_inches(panel_width), lines, title_lines)
    fig, axes = plt.subplots(1, k, figsize=(total, height), squeeze=False, layout="constrained")
    for i, (ax, (cohort, (y, scores, _))) in enumerate(zip(axes[0], panels.items(), strict=True)):
        _draw_roc(ax, y, scores, legends[cohort], order)
        ax.set_title(titles[cohort])
        if k > 1:
            panel_label(ax, chr(ord("A") + i))
    return fig


# --------------------------------------------------------------------------- calibration


def calibration_bin_count(n: int, n_bins: int) -> int:
    """At most ``n_bins`` bins and about 10 or more patients per bin (at least 2 bins)."""
    return int(min(n_bins, max(2, n // 10)))


def _calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int, strategy: str) -> pd.DataFrame:
    """Observed proportion (Wilson 95% CI) and mean predicted probability per non-empty bin.

    Bins are right-closed (the lowest includes its left edge), as in
    :func:`sklearn.calibration.calibration_curve` and :func:`pandas.qcut`.
    """
    from statsmodels.stats.proportion import proportion_confint

    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    ids = np.searchsorted(edges[1:-1], p, side="left")
    rows = []
    for b in np.unique(ids):
        m = ids == b
        events, total = int(y[m].sum()), int(m.sum())
        lo, hi = proportion_confint(events, total, alpha=0.05, method="wilson")
        rows.append({"predicted": float(p[m].mean()), "observed": events / total, "n": total, "events": events, "lower": lo, "upper": hi})
    return pd.DataFrame(rows)


def calibration_figure(
    y: object,
    probabilities: Mapping[str, object],
    n_bins: int = 10,
    strategy: str = "quantile",
    title: str | None = None,
    lowess_frac: float = 2 / 3,
) -> Figure:
    """Calibration plot: observed vs predicted probability, with the distribution of predictions below.

    For each model: the observed proportion of events per bin of predicted
    probability (points at the bin's mean prediction, 95% Wilson CI error
    bars) and a lowess-smoothed calibration curve (statsmodels ``lowess`` of
    the outcome on the prediction, no robustness iterations since the outcome
    is binary, clipped to 0-1); the diagonal is ideal calibration.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome.
    probabilities : dict of model name -> array-like
        Predicted probabilities in [0, 1], aligned with ``y``.
    n_bins : int
        Maximum number of bins. Small cohorts get fewer: the number of bins is
        ``min(n_bins, max(2, n // 10))`` so each point rests on about 10
        patients or more (e.g. 3 bins for n = 35); quantile bins with tied
        edges are merged and empty uniform bins are left out.
    strategy : {"quantile", "uniform"}
        Bins of equal size (quantiles of each model's predictions) or of
        equal width on 0-1.
    title : str, optional
        Title of the calibration axes.
    lowess_frac : float
        Fraction of the data used for each lowess fit (2/3 as R's ``lowess``).
        No smooth is drawn for a model with fewer than 3 distinct predictions.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: ``axes[0]`` the calibration plot (square, 0-1), ``axes[1]``
        step histograms of the predicted probabilities (counts of patients).
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    if not probabilities:
        raise ValueError("no model probabilities to plot")
    yy = _binary(y, both=False)
    apply_style()
    k = calibration_bin_count(len(yy), n_bins)
    side, hist_inches = _roc_axes_inches(SINGLE_COLUMN), 0.85
    legend_width = _roc_legend_width(SINGLE_COLUMN)
    key_texts = [
        _wrap_to_width("Observed per bin (95% Wilson CI)", legend_width) + f"\n{k} {strategy} bins",
        "Lowess-smoothed calibration",
        "Ideal calibration",
    ]
    model_texts = [_wrap_to_width(str(name), legend_width) for name in probabilities]
    title_text = _wrap_to_width(title, SINGLE_COLUMN - 0.3, 9.0) if title else ""
    height = side + hist_inches + 0.12 + 0.5 + _LINE_INCHES * _n_lines(model_texts + key_texts) + 0.12
    height += 0.2 * (title_text.count("\n") + 1) if title else 0.0
    fig, (ax, hist) = plt.subplots(
        2,
        1,
        figsize=(SINGLE_COLUMN, height),
        sharex=True,
        gridspec_kw={"height_ratios": [side, hist_inches]},
        layout="constrained",
    )
    ax.plot([0, 1], [0, 1], color=_REFERENCE, ls="--", lw=0.8, zorder=1, gid="calibration:ideal")
    hist_edges = np.linspace(0, 1, 41 if len(yy) >= 100 else 21)
    model_handles = []
    for i, (name, values) in enumerate(probabilities.items()):
        p = _scores(values, len(yy), name)
        if (p < 0).any() or (p > 1).any():
            raise ValueError(f"probabilities of {name!r} must lie in [0, 1]")
        colour, ls = _colour(i), _linestyle(i)
        bins = _calibration_bins(yy, p, k, strategy)
        err = np.clip(np.vstack([bins["observed"] - bins["lower"], bins["upper"] - bins["observed"]]), 0, None)  # rounding at 0 / 1
        cont = ax.errorbar(
            bins["predicted"].to_numpy(), bins["observed"].to_numpy(), yerr=err, fmt="o", ms=4, color=colour, mfc=colour,
            mec="white", mew=0.5, ecolor=colour, elinewidth=0.9, capsize=2, zorder=3, label=f"_bins:{name}",
        )  # fmt: skip
        cont.lines[0].set_gid(f"calibration:bins:{name}")
        if len(np.unique(p)) >= 3:  # a smooth needs spread predictions
            with warnings.catch_warnings():  # windows of tied predictions give NaN (0/0), left out below
                warnings.simplefilter("ignore", RuntimeWarning)
                smooth = lowess(yy.astype(float), p, frac=lowess_frac, it=0, return_sorted=True)
            ok = np.isfinite(smooth).all(axis=1)
            ax.plot(smooth[ok, 0], np.clip(smooth[ok, 1], 0, 1), color=colour, ls=ls, lw=1.3, zorder=2, gid=f"calibration:lowess:{name}")
        hist.hist(p, bins=hist_edges, histtype="step", color=colour, ls=ls, lw=1.0)
        model_handles.append(Line2D([], [], color=colour, ls=ls, marker="o", ms=4, mfc=colour, mec="white", mew=0.5, label=model_texts[i]))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ticks = np.round(np.linspace(0, 1, 6), 1)
    ax.set_yticks(ticks, [f"{t:.1f}" for t in ticks])
    ax.set_aspect("equal", adjustable="box")
    ax.set_ylabel("Observed proportion of events")
    _despine(ax)
    if title:
        ax.set_title(title_text)
    hist.set_xticks(ticks, [f"{t:.1f}" for t in ticks])
    hist.set_xlabel("Predicted probability")
    hist.set_ylabel("Patients")
    hist.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(3, integer=True))
    _despine(hist)
    key = [
        Line2D([], [], color="0.3", marker="o", ms=4, ls="none", label=key_texts[0]),
        Line2D([], [], color="0.3", lw=1.3, label=key_texts[1]),
        Line2D([], [], color=_REFERENCE, ls="--", lw=0.8, label=key_texts[2]),
    ]
    _legend_below(hist, model_handles + key)
    return fig


# --------------------------------------------------------------------------- decision curves


def _curve(df: pd.DataFrame, what: str) -> pd.DataFrame:
    _require(df, ["threshold", "net_benefit"], what)
    out = df[["threshold", "net_benefit"]].astype(float).dropna().sort_values("threshold", kind="stable")
    if out.empty:
        raise ValueError(f"{what} has no finite threshold/net_benefit row")
    return out


def decision_curve_figure(
    curves: Mapping[str, pd.DataFrame],
    treat_all: pd.DataFrame,
    title: str | None = None,
    threshold_range: tuple[float, float] | None = None,
) -> Figure:
    """Decision curve analysis: net benefit of each model against the threshold probability.

    Parameters
    ----------
    curves : dict of model name -> DataFrame
        Columns ``threshold`` and ``net_benefit`` (rows with missing values
        are dropped).
    treat_all : DataFrame
        The treat-all reference, same columns.
    title : str, optional
    threshold_range : (low, high), optional
        Plotted thresholds; default the range of all given thresholds.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one journal column wide. The treat-none reference is the
        line at 0. The y-axis runs from the lowest model net benefit (at most
        -0.05), but not below ``-max(0.05, top / 2)``, to the highest net
        benefit ``top`` of the models and treat-all plus a 10% margin, over the
        plotted range: the range where the models help or barely harm is
        readable, and curves falling far below zero (harmful thresholds, such
        as the steep fall of treat-all) leave the axes instead of squashing it.
    """
    if not curves:
        raise ValueError("no model curve to plot")
    apply_style()
    models = {name: _curve(df, f"curve {name!r}") for name, df in curves.items()}
    reference = _curve(treat_all, "treat_all")
    if threshold_range is None:
        lo_t = min(float(df["threshold"].min()) for df in [*models.values(), reference])
        hi_t = max(float(df["threshold"].max()) for df in [*models.values(), reference])
    else:
        lo_t, hi_t = map(float, threshold_range)
    if not hi_t > lo_t:
        raise ValueError(f"empty threshold range ({lo_t}, {hi_t})")

    def within(df: pd.DataFrame) -> pd.DataFrame:
        return df[(df["threshold"] >= lo_t) & (df["threshold"] <= hi_t)]

    shown = [within(df)["net_benefit"].to_numpy() for df in models.values()]
    top = max([float(s.max()) for s in shown if s.size] + [float(within(reference)["net_benefit"].to_numpy().max(initial=0.0))])
    bottom = min([float(s.min()) for s in shown if s.size] + [0.0])
    floor = -max(0.05, 0.5 * top)  # net benefit far below "treat none" says only "harmful": not worth the axis
    low = max(min(-0.05, bottom), floor)
    span = max(top - low, 0.05)
    ylim = (low - 0.05 * span, top + 0.1 * span)

    legend_width = _roc_legend_width(SINGLE_COLUMN)
    names = {name: _wrap_to_width(str(name), legend_width) for name in models}
    title_text = _wrap_to_width(title, SINGLE_COLUMN - 0.3, 9.0) if title else ""
    height = 2.5 + 0.5 + _LINE_INCHES * (_n_lines(list(names.values())) + 2) + 0.12
    height += 0.2 * (title_text.count("\n") + 1) if title else 0.0
    fig, ax = plt.subplots(figsize=(SINGLE_COLUMN, height), layout="constrained")
    handles = []
    for i, (name, df) in enumerate(models.items()):
        (line,) = ax.plot(
            df["threshold"], df["net_benefit"], color=_colour(i), ls=_linestyle(i), lw=1.4, label=names[name], gid=f"dca:{name}"
        )
        handles.append(line)
    (all_line,) = ax.plot(
        reference["threshold"], reference["net_benefit"], color="0.35", lw=0.9, ls="-.", label="Treat all", gid="dca:treat_all"
    )
    (none_line,) = ax.plot([lo_t, hi_t], [0.0, 0.0], color="0.1", lw=0.9, ls=":", label="Treat none", gid="dca:treat_none")
    ax.set_xlim(lo_t, hi_t)
    ax.set_ylim(*ylim)
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit (true positives per patient)")
    _despine(ax)
    if title:
        ax.set_title(title_text)
    _legend_below(ax, handles + [all_line, none_line])
    return fig


# --------------------------------------------------------------------------- forest plot


def forest_figure(
    table: pd.DataFrame,
    estimate: str = "auc",
    lower: str = "lower",
    upper: str = "upper",
    label: str = "subgroup",
    group: str | None = None,
    reference: float | None = 0.5,
    xlabel: str | None = None,
    title: str | None = None,
    fmt: str = ".2f",
) -> Figure:
    """Subgroup forest plot: one row per subgroup with its estimate and 95% CI.

    Parameters
    ----------
    table : DataFrame
        One row per subgroup, plotted top to bottom in the table's order.
        Optional columns ``n`` and ``events`` are written at the right as
        ``n (events)``.
    estimate, lower, upper : str
        Columns of the point estimate and its CI bounds. A missing estimate
        (e.g. a subgroup with a single class) is shown as "not estimable"; a
        missing bound draws the point without its interval.
    label : str
        Column of the subgroup names (y tick labels).
    group : str, optional
        Column grouping the rows (e.g. ``cohort``): each group, in order of
        first appearance, gets a bold header row above its subgroups.
    reference : float or None
        Vertical dashed reference line (AUC 0.5 = chance); None for none.
    xlabel : str, optional
        Default ``"<ESTIMATE> (95% CI)"``.
    title : str, optional
    fmt : str
        Number format of the estimates written at the right.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, the full page width (175 mm): subgroup names (wrapped at a
        third of the page) left, the estimates with their CIs (lines with end
        caps) on an x-axis from round ticks around every estimate, bound and
        the reference, and the estimate texts and ``n (events)`` right of
        the axes. The estimates are one marker line (gid ``forest:estimates``).
    """
    cols = [estimate, lower, upper, label] + ([group] if group else [])
    _require(table, cols, "table")
    if table.empty:
        raise ValueError("empty table")
    apply_style()
    df = table.reset_index(drop=True)
    label_width = 0.34 * DOUBLE_COLUMN  # subgroup names wrap beyond a third of the page
    rows: list[dict] = []  # top to bottom: headers and subgroups
    if group:
        for g in pd.unique(df[group]):
            rows.append({"header": True, "text": _wrap_to_width(str(g), label_width)})
            rows.extend({"header": False, "text": _indent(_wrap_to_width(str(r[label]), label_width - 0.15)), "row": r}
                        for _, r in df[df[group] == g].iterrows())  # fmt: skip
    else:
        rows.extend({"header": False, "text": _wrap_to_width(str(r[label]), label_width), "row": r} for _, r in df.iterrows())
    n_rows = len(rows)
    ys = np.arange(n_rows)[::-1].astype(float)
    has_n, has_events = "n" in df.columns, "events" in df.columns
    lines = max(item["text"].count("\n") + 1 for item in rows)
    row_inches = 0.19 + 0.12 * (lines - 1)
    height = 0.75 + row_inches * (n_rows + 1) + (0.2 if title else 0.0)

    fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN, height), layout="constrained")
    right = blended_transform_factory(ax.transAxes, ax.transData)
    est_x = right + ScaledTranslation(10 / 72, 0, fig.dpi_scale_trans)
    n_x = right + ScaledTranslation(88 / 72, 0, fig.dpi_scale_trans)
    pts_x, pts_y, bounds = [], [], []
    for y, item in zip(ys, rows, strict=True):
        if item["header"]:
            continue
        r = item["row"]
        e, lo, hi = (float(r[c]) if pd.notna(r[c]) else np.nan for c in (estimate, lower, upper))
        if np.isfinite(e):
            pts_x.append(e)
            pts_y.append(y)
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=PALETTE[0], lw=1.2, solid_capstyle="butt", gid="forest:ci")
                ax.plot(
                    [lo, lo, np.nan, hi, hi],
                    [y - 0.15, y + 0.15, np.nan, y - 0.15, y + 0.15],
                    color=PALETTE[0],
                    lw=1.0,
                    gid="forest:ci-caps",
                )
                bounds += [lo, hi]
                text = f"{e:{fmt}} ({lo:{fmt}}–{hi:{fmt}})"
            else:
                text = f"{e:{fmt}} (CI n/a)"
            bounds.append(e)
            ax.text(1, y, text, transform=est_x, ha="left", va="center", clip_on=False)
        else:
            ax.text(1, y, "not estimable", transform=est_x, ha="left", va="center", color="0.35", style="italic", clip_on=False)
        if has_n:
            nn = f"{int(r['n'])}" if pd.notna(r["n"]) else "–"
            if has_events:
                nn += f" ({int(r['events'])})" if pd.notna(r["events"]) else " (–)"
            ax.text(1, y, nn, transform=n_x, ha="left", va="center", clip_on=False)
    ax.plot(pts_x, pts_y, ls="none", marker="s", ms=4.5, color=PALETTE[0], zorder=3, gid="forest:estimates")
    top = float(n_rows)  # header row of the text columns, above the first subgroup
    ax.text(1, top, f"{estimate.upper()} (95% CI)", transform=est_x, ha="left", va="center", fontweight="bold", clip_on=False)
    if has_n:
        head = "n (events)" if has_events else "n"
        ax.text(1, top, head, transform=n_x, ha="left", va="center", fontweight="bold", clip_on=False)
    if reference is not None:
        ax.plot([reference, reference], [-0.6, n_rows - 0.5], color=_REFERENCE, ls="--", lw=0.8, zorder=1, gid="forest:reference")
        bounds.append(reference)
    ax.set_xlim(*_forest_limits(bounds))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_ylim(-0.6, n_rows + 0.4)
    ax.set_yticks([*ys, top], [item["text"] for item in rows] + [label.capitalize()])
    for tick, bold in zip(ax.get_yticklabels(), [item["header"] for item in rows] + [True], strict=True):
        if bold:
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", length=0)
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_xlabel(xlabel or f"{estimate.upper()} (95% CI)")
    if title:
        ax.set_title(title, loc="left")
    return fig


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.split("\n"))


def _forest_limits(bounds: Sequence[float]) -> tuple[float, float]:
    """x-limits of a forest plot: round ticks around every estimate, CI bound and the reference, with a small margin."""
    if not bounds:
        return (0.0, 1.0)
    lo, hi = min(bounds), max(bounds)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    ticks = matplotlib.ticker.MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    first, last = float(ticks[ticks <= lo + 1e-12].max()), float(ticks[ticks >= hi - 1e-12].min())
    pad = 0.02 * (last - first)
    return (first - pad, last + pad)


# --------------------------------------------------------------------------- Rad-score distribution


def _box_and_points(ax: plt.Axes, groups: Sequence[np.ndarray], colours: Sequence[str], seed: Sequence[int], gid: str) -> None:
    """Box plots (no fliers: every point is drawn) with jittered points, at x = 0, 1, ..."""
    positions = np.arange(len(groups), dtype=float)
    data = [g if len(g) else np.array([np.nan]) for g in groups]
    ax.boxplot(
        data, positions=positions, widths=0.5, showfliers=False, patch_artist=True,
        boxprops={"facecolor": "none", "edgecolor": "0.25", "lw": 0.9}, medianprops={"color": "0.1", "lw": 1.2},
        whiskerprops={"color": "0.25", "lw": 0.9}, capprops={"color": "0.25", "lw": 0.9},
    )  # fmt: skip
    for j, (g, colour) in enumerate(zip(groups, colours, strict=True)):
        if not len(g):
            continue
        x = positions[j] + _jitter(len(g), 0.36, [*seed, j])
        ax.scatter(x, g, s=9, color=colour, alpha=0.7, linewidths=0, zorder=3, gid=f"{gid}:{j}")


def radscore_distribution_figure(
    scores: pd.DataFrame,
    threshold: float | None = None,
    p_values: Mapping[str, float] | None = None,
    class_labels: Mapping[object, str] | None = None,
    cohorts: Sequence[str] | None = None,
    ylabel: str = "Rad-score (a.u.)",
    jitter_seed: int = 0,
) -> Figure:
    """Rad-score by outcome class, one panel per cohort (box plot + jittered points).

    Parameters
    ----------
    scores : DataFrame
        Columns ``radscore``, ``outcome`` (0/1) and ``cohort``, one row per
        patient (rows with a missing Rad-score are dropped).
    threshold : float, optional
        Cut-off drawn as a dashed horizontal line in every panel.
    p_values : dict of cohort -> float, optional
        E.g. Mann-Whitney U p-values (computed by the caller), added to the
        panel titles.
    class_labels : dict of outcome value -> str, optional
        Tick labels of the classes; default ``"0"`` and ``"1"``.
    cohorts : sequence of str, optional
        Panel order; default order of first appearance.
    ylabel : str
    jitter_seed : int
        Seed of the horizontal jitter; the offsets depend only on it, the
        panel and the class, so two calls give identical figures.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per cohort (shared y-axis); the points of panel ``c`` and
        class ``j`` are the scatter with gid ``radscore:<c>:<j>``.
    """
    _require(scores, ["radscore", "outcome", "cohort"], "scores")
    df = scores.dropna(subset=["radscore"])
    if df.empty:
        raise ValueError("no Rad-score to plot")
    _binary(df["outcome"], "outcome", both=False)
    order = _order(df["cohort"], cohorts, "cohort(s)")
    apply_style()
    k = len(order)
    fig, axes = plt.subplots(1, k, figsize=(SINGLE_COLUMN if k <= 2 else DOUBLE_COLUMN, 3.1 + (0.3 if threshold is not None else 0)),
                             sharey=True, squeeze=False, layout="constrained")  # fmt: skip
    classes = [0, 1]
    colours = [LINE_COLOURS[0], LINE_COLOURS[1]]
    names = [(class_labels or {}).get(c, str(c)) for c in classes]
    for c, (ax, cohort) in enumerate(zip(axes[0], order, strict=True)):
        sub = df[df["cohort"] == cohort]
        outcome = sub["outcome"].astype(int).to_numpy()
        values = sub["radscore"].astype(float).to_numpy()
        groups = [values[outcome == cl] for cl in classes]
        _box_and_points(ax, groups, colours, [jitter_seed, c], gid=f"radscore:{c}")
        ax.set_xticks(range(len(classes)), [f"{nm}\n(n = {len(g)})" for nm, g in zip(names, groups, strict=True)])
        ax.set_xlim(-0.6, len(classes) - 0.4)
        if threshold is not None:
            ax.axhline(threshold, color="0.2", ls="--", lw=0.9, zorder=2, gid="radscore:threshold")
        # Titles wrap to the panel's own width (the figure less the shared y-axis labels), so none runs past the edge.
        panel_inches = (fig.get_figwidth() - 0.6) / k - 0.1
        head = _wrap_to_width(str(cohort), panel_inches, 9.0)
        if p_values is not None and cohort in p_values:
            test = f"Mann–Whitney {_format_p(float(p_values[cohort]))}"
            fits = _text_width_inches(test, 9.0) <= panel_inches
            head += "\n" + (test if fits else test.replace(" p ", "\np ", 1))
        ax.set_title(head)
        _despine(ax)
    axes[0][0].set_ylabel(ylabel)
    if threshold is not None:
        fig.legend(handles=[Line2D([], [], color="0.2", ls="--", lw=0.9, label=f"Cut-off = {threshold:.3g}")],
                   loc="outside lower center", frameon=False)  # fmt: skip
    return fig


# --------------------------------------------------------------------------- feature weights


def _wrap_name(name: str, width: int) -> str:
    """Wrap a long feature name on several lines, breaking after ``_``, ``-``, ``.`` or a space.

    Nothing is dropped (removing the line breaks gives the name back), so
    distinct names stay distinct; a part longer than ``width`` without a
    break point is cut at ``width``.
    """
    if len(name) <= width:
        return name
    parts = re.findall(r"[^_\-. ]*[_\-. ]|[^_\-. ]+$", name)
    if "".join(parts) != name:  # cannot happen with the pattern above; never lose characters
        parts = [name]
    lines, line = [], ""
    for part in parts:
        while len(part) > width:  # a single part too long for a line
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if len(line) + len(part) > width:
            lines.append(line)
            line = part
        else:
            line += part
    if line:
        lines.append(line)
    return "\n".join(lines)


def feature_weight_figure(
    weights: pd.Series,
    title: str | None = None,
    xlabel: str = "Weight (coefficient per SD of the feature)",
    max_chars: int = 36,
) -> Figure:
    """Horizontal bars of model weights, sorted by absolute value (largest at the top).

    Parameters
    ----------
    weights : Series
        Weight (e.g. logistic / LASSO coefficient) indexed by feature name.
    title : str, optional
    xlabel : str
        Give the unit of the weights.
    max_chars : int
        Longer names are wrapped on several lines (after ``_``, ``-``, ``.``
        or a space), never shortened: every label is the full, unique name.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; positive weights in blue, negative in vermillion.
    """
    w = pd.Series(weights, dtype=float)
    if w.empty:
        raise ValueError("no weight to plot")
    if w.isna().any():
        raise ValueError(f"missing weights for {list(w.index[w.isna()])}")
    if w.index.duplicated().any():
        raise ValueError(f"duplicated feature names {list(w.index[w.index.duplicated()])}")
    apply_style()
    order = np.argsort(-np.abs(w.to_numpy()), kind="stable")
    w = w.iloc[order]
    n = len(w)
    names = [_wrap_name(str(i), max_chars) for i in w.index]
    lines = max(nm.count("\n") + 1 for nm in names)
    pos, neg = LINE_COLOURS[0], LINE_COLOURS[3]
    fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN, 1.3 + (0.08 + 0.13 * lines) * n), layout="constrained")
    y = np.arange(n)[::-1]
    colours = [neg if v < 0 else pos for v in w]
    ax.barh(y, w.to_numpy(), color=colours, height=0.7, gid="weights:bars")
    ax.set_yticks(y, names, linespacing=1.0)
    ax.set_ylim(-0.6, n - 0.4)
    ax.axvline(0, color="0.3", lw=0.7)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right", "left"]].set_visible(False)
    if title:
        ax.set_title(title)
    handles = []
    if (w >= 0).any():
        handles.append(Patch(color=pos, label="Positive (higher value, higher predicted risk)"))
    if (w < 0).any():
        handles.append(Patch(color=neg, label="Negative (higher value, lower predicted risk)"))
    fig.legend(handles=handles, loc="outside lower center", frameon=False, ncol=1)
    return fig


# --------------------------------------------------------------------------- Dice


def dice_figure(
    table: pd.DataFrame,
    labels: Sequence[str] | None = None,
    cohorts: Sequence[str] | None = None,
    jitter_seed: int = 0,
) -> Figure:
    """Per-patient Dice of automatic vs reference segmentation, per label and cohort.

    Parameters
    ----------
    table : DataFrame
        Columns ``patient``, ``label`` (structure, e.g. kidney, tumour),
        ``cohort`` and ``dice`` (0-1); missing Dice values are left out.
    labels, cohorts : sequence of str, optional
        Panel order (labels) and box order (cohorts); default order of first
        appearance.
    jitter_seed : int
        Seed of the fixed horizontal jitter of the points.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per label; in each, a box plot and the points of every
        cohort, with ``mean ± SD`` written above each box (gid
        ``dice:summary``).
    """
    _require(table, ["patient", "label", "cohort", "dice"], "table")
    df = table.dropna(subset=["dice"])
    if df.empty:
        raise ValueError("no Dice value to plot")
    d = df["dice"].astype(float)
    if (d < 0).any() or (d > 1).any():
        raise ValueError("Dice values must lie in [0, 1]")
    label_order = _order(df["label"], labels, "label(s)")
    cohort_order = _order(df["cohort"], cohorts, "cohort(s)")
    apply_style()
    k, m = len(label_order), len(cohort_order)
    width = SINGLE_COLUMN if (1.0 + 0.75 * m) * k <= SINGLE_COLUMN else DOUBLE_COLUMN
    fig, axes = plt.subplots(1, k, figsize=(width, 3.2), sharey=True, squeeze=False, layout="constrained")
    low = float(np.floor((d.min() - 0.05) * 10) / 10)
    low = max(0.0, low)
    colours = [_colour(j) for j in range(m)]
    for i, (ax, lab) in enumerate(zip(axes[0], label_order, strict=True)):
        sub = df[df["label"] == lab]
        groups = [sub.loc[sub["cohort"] == c, "dice"].astype(float).to_numpy() for c in cohort_order]
        _box_and_points(ax, groups, colours, [jitter_seed, i], gid=f"dice:{i}")
        for j, g in enumerate(groups):
            if len(g):
                sd = float(np.std(g, ddof=1)) if len(g) > 1 else float("nan")
                text = f"{g.mean():.2f} ± {sd:.2f}" if np.isfinite(sd) else f"{g.mean():.2f}"
                ax.text(j, 1.0 + 0.03 * (1 - low), text, ha="center", va="bottom", fontsize=FONT_SIZE_SMALL, gid="dice:summary")
        ax.set_xticks(range(m), [f"{c}\n(n = {len(g)})" for c, g in zip(cohort_order, groups, strict=True)])
        ax.set_xlim(-0.6, m - 0.4)
        ax.set_title(str(lab))
        _despine(ax)
    axes[0][0].set_ylim(low, 1.0 + 0.12 * (1 - low))
    ticks = matplotlib.ticker.MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]).tick_values(low, 1.0)
    axes[0][0].set_yticks([round(t, 6) for t in ticks if low - 1e-9 <= t <= 1.0 + 1e-9])
    axes[0][0].set_ylabel("Dice similarity coefficient")
    fig.supxlabel("Numbers above the boxes: mean ± SD of the per-patient Dice", fontsize=FONT_SIZE_SMALL)
    return fig
