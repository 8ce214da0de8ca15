"""The nomogram figure: a points ruler, one axis per variable, total points and the predicted probability.

Full-page width (175 mm), 7 pt scale labels, 8 pt row labels; the outcome axis names the endpoint
("Probability of lung metastasis"), never a bare column name such as ``label``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from helpers.figures.style import FONT_SIZE, FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches
from helpers.learning.nomogram import NomogramModel, NomogramTable, nomogram_table

__all__ = ["nomogram_figure", "outcome_axis_label", "variable_display_name"]

#: Smallest distance (on the 0-100 points width) between two probability ticks kept.
_LABEL_GAP = 4.0

_PROBABILITY_PRIORITY = (0.5, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.05, 0.95, 0.4, 0.6, 0.01, 0.99, 0.02, 0.98)


#: Endpoint column names that say nothing about the outcome: the axis then reads "Predicted probability of the outcome".
_GENERIC_ENDPOINTS = frozenset({"label", "labels", "outcome", "target", "y", "class", "event", "status", "response", "endpoint",
                                "binary", "result", "group", "positive"})  # fmt: skip
#: Row labels longer than this (characters) are wrapped.
_ROW_LABEL_WIDTH = 22


def outcome_axis_label(endpoint: str | None) -> str:
    """Label of the nomogram's probability axis, naming the endpoint in words.

    Parameters
    ----------
    endpoint : str or None
        The configured binary endpoint (``endpoints.binary``, a column of the
        patient table), e.g. ``"lung_metastasis"``.

    Returns
    -------
    str
        ``"Probability of lung metastasis"`` (underscores and hyphens read as
        spaces); ``"Predicted probability of the outcome"`` when the endpoint is
        missing or a generic column name (``label``, ``outcome``, ``target``, ...).
    """
    words = " ".join(str(endpoint or "").replace("_", " ").replace("-", " ").split())
    if not words or words.lower() in _GENERIC_ENDPOINTS:
        return "Predicted probability of the outcome"
    return f"Probability of {words}"


def variable_display_name(variable: str) -> str:
    """A nomogram variable as a row label: ``rad_score``/``radscore`` read "Rad-score", others in words, capitalised."""
    if variable.lower().replace("_", "").replace("-", "") == "radscore":
        return "Rad-score"
    words = " ".join(variable.replace("_", " ").split())
    return words[:1].upper() + words[1:] if words else variable


def _format_value(v: object) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return f"{v:g}".replace("-", "\N{MINUS SIGN}")  # the typographic minus, as on matplotlib axes
    return str(v)


def nomogram_figure(
    model: NomogramModel,
    table: NomogramTable | None = None,
    outcome_label: str | None = None,
    labels: Mapping[str, str] | None = None,
    title: str = "",
    endpoint: str | None = None,
) -> plt.Figure:
    """The classic nomogram: a points ruler, one axis per variable, total points and probability.

    Every variable axis is drawn on the 0-100 points ruler at the top: a
    patient's value read on its axis scores the points straight above. The
    total-points axis is rescaled to the same width (0..max total points), and
    the probability axis is aligned with it.

    Parameters
    ----------
    model : NomogramModel
        Fitted model.
    table : NomogramTable, optional
        From :func:`helpers.learning.nomogram.nomogram_table` (computed when omitted).
    outcome_label : str, optional
        Label of the probability axis (e.g. "Risk of lung metastasis"); default
        :func:`outcome_axis_label` of ``endpoint``.
    labels : mapping of str to str, optional
        Display names of variables (e.g. ``{"rad_score": "Rad-score"}``); the
        others get :func:`variable_display_name`.
    title : str
        Figure title.
    endpoint : str, optional
        The configured binary endpoint (``endpoints.binary``), named on the
        probability axis when ``outcome_label`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; row labels are the axes' y tick labels (top to bottom:
        ``Points``, the variables, ``Total points``, the outcome label; labels
        longer than 22 characters are wrapped over lines).
    """
    apply_style()
    tab = table if table is not None else nomogram_table(model)
    variables = list(tab.scales["variable"])
    names = {v: textwrap.fill((labels or {}).get(v, variable_display_name(v)), _ROW_LABEL_WIDTH) for v in variables}
    outcome_label = textwrap.fill(outcome_label if outcome_label is not None else outcome_axis_label(endpoint), _ROW_LABEL_WIDTH)
    rows = ["Points", *[names[v] for v in variables], "Total points", outcome_label]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(column_width_inches("double"), 0.42 * n + 0.4), layout="constrained")
    y = {label: n - 1 - i for i, label in enumerate(rows)}

    # Points-scale units per character of a 7 pt label: the axes span about 106 units over ~80% of the figure width.
    per_char = 106 / (0.8 * fig.get_figwidth() * 72) * 0.62 * FONT_SIZE_SMALL

    def fits(x: float, lab: str, last: tuple[float, str] | None) -> bool:
        return last is None or x - last[0] >= (len(lab) + len(last[1])) / 2 * per_char + 0.8

    def ruler(yy: float, positions: Sequence[float], tick_labels: Sequence[str], colour: str, span: tuple[float, float],
              keep_all: bool = False) -> None:  # fmt: skip
        """Line, ticks and labels: a label that does not fit above goes below; a value label fitting neither is left out
        (its tick stays); with ``keep_all`` (categorical levels) every label is drawn."""
        ax.plot(span, [yy, yy], color=colour, linewidth=1.0)
        last_above: tuple[float, str] | None = None
        last_below: tuple[float, str] | None = None
        for x, lab in sorted(zip(positions, tick_labels, strict=True), key=lambda item: item[0]):
            ax.plot([x, x], [yy, yy + 0.12], color=colour, linewidth=0.8)
            if fits(x, lab, last_above):
                ax.text(x, yy + 0.18, lab, ha="center", va="bottom", fontsize=FONT_SIZE_SMALL, color=colour)
                last_above = (x, lab)
            elif fits(x, lab, last_below) or keep_all:
                ax.text(x, yy - 0.12, lab, ha="center", va="top", fontsize=FONT_SIZE_SMALL, color=colour)
                last_below = (x, lab)

    pts = np.arange(0, 101, 10)
    ruler(y["Points"], pts, [str(p) for p in pts], "black", (0, 100))
    for i, var in enumerate(variables):
        colour = PALETTE[i % len(PALETTE)] if PALETTE[i % len(PALETTE)] != "#F0E442" else "#000000"  # yellow is unreadable on white
        tk = tab.ticks[tab.ticks["variable"] == var]
        row = tab.scales.set_index("variable").loc[var]
        span = (0.0, float(row["max_points"]))
        categorical = not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in tk["value"])
        ruler(y[names[var]], list(tk["points"]), [_format_value(v) for v in tk["value"]], colour, span, keep_all=categorical)
    max_total = tab.max_total_points
    scale = 100 / max_total  # total points are drawn on the 0-100 width
    total_ticks = [t for t in MaxNLocator(nbins=10, integer=True).tick_values(0, max_total) if 0 <= t <= max_total + 1e-9]
    ruler(y["Total points"], [t * scale for t in total_ticks], [f"{t:g}" for t in total_ticks], "black", (0, 100))
    pt = tab.probability_ticks
    # A steep model crowds the probability ticks: keep the most informative ones that fit (0.5 first, then 0.1/0.9, ...).
    xs = dict(zip(pt["probability"], pt["total_points"] * scale, strict=True))
    priority = sorted(xs, key=lambda p: (_PROBABILITY_PRIORITY.index(p) if p in _PROBABILITY_PRIORITY else len(_PROBABILITY_PRIORITY), p))
    kept: list[float] = []
    for p in priority:
        if all(abs(xs[p] - xs[q]) >= _LABEL_GAP for q in kept):
            kept.append(p)
    pt = pt[pt["probability"].isin(kept)]
    ruler(y[outcome_label], list(pt["total_points"] * scale), [f"{p:g}" for p in pt["probability"]], "black",
          (float(pt["total_points"].min() * scale) if len(pt) else 0.0, float(pt["total_points"].max() * scale) if len(pt) else 100.0))
    ax.set_yticks([y[r] for r in rows], rows, fontsize=FONT_SIZE)
    ax.set_ylim(-0.6, n - 0.3)
    ax.set_xlim(-3, 103)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    for gx in pts:  # faint guides from the points ruler
        ax.axvline(gx, color="#DDDDDD", linewidth=0.4, zorder=0)
    if title:
        ax.set_title(title)
    return fig
