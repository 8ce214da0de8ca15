"""Kaplan-Meier figure: curves per risk group with censoring marks, log-rank p and a numbers-at-risk table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np

from helpers.figures.style import FONT_SIZE_SMALL, PALETTE, apply_style, column_width_inches

if TYPE_CHECKING:
    from helpers.learning.survival import KaplanMeierGroups

__all__ = ["km_figure", "round_time_ticks"]

#: Tick steps for follow-up in months (multiples of 6 or 12 beyond a year), days, weeks and years.
_MONTH_STEPS = (1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 36.0, 48.0, 60.0, 120.0)
_DAY_STEPS = (7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0, 1825.0)
_WEEK_STEPS = (1.0, 2.0, 4.0, 8.0, 13.0, 26.0, 52.0, 104.0)
_GENERIC_STEPS = (1.0, 2.0, 2.5, 5.0)


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _time_unit(time_label: str) -> str:
    text = time_label.lower()
    for unit in ("month", "day", "week", "year"):
        if unit in text:
            return unit
    return ""


def round_time_ticks(t_max: float, unit: str = "month", max_ticks: int = 7) -> np.ndarray:
    """Round follow-up ticks from 0 to at least ``t_max``: the smallest natural step giving at most ``max_ticks`` ticks.

    Parameters
    ----------
    t_max : float
        Longest follow-up.
    unit : {"month", "day", "week", "year", ""}
        Time unit: months use 1, 2, 3, 6, 12, 24, ... (multiples of 6 or 12 for any follow-up
        beyond 18 months); days 7, 14, 30, 90, 180, 365, ...; weeks 1, 2, 4, 8, 13, 26, 52; years
        and unknown units 1, 2, 2.5, 5 times a power of ten.
    max_ticks : int
        Most ticks allowed (including 0).

    Returns
    -------
    numpy.ndarray
        ``0, step, 2 step, ...`` up to the first multiple of ``step`` at or after ``t_max``.
    """
    if not np.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"the longest follow-up must be a positive number, got {t_max!r}")
    steps = {"month": _MONTH_STEPS, "day": _DAY_STEPS, "week": _WEEK_STEPS}.get(unit)
    if steps is None:
        magnitude = 10.0 ** np.floor(np.log10(t_max / max(max_ticks - 1, 1)))
        steps = tuple(m * magnitude * f for f in (1.0, 10.0) for m in _GENERIC_STEPS)
    for step in steps:
        if np.ceil(t_max / step - 1e-9) + 1 <= max_ticks:
            break
    else:
        step = float(10.0 ** np.ceil(np.log10(t_max)))
    n = int(np.ceil(t_max / step - 1e-9))
    return np.round(np.arange(n + 1) * step, 10)


def km_figure(
    km: KaplanMeierGroups,
    at_risk_times: Sequence[float] | None = None,
    title: str = "",
    time_label: str = "Time",
    ci: bool = True,
) -> plt.Figure:
    """Kaplan-Meier curves with censoring marks, log-rank p and a numbers-at-risk table under the plot.

    Parameters
    ----------
    km : KaplanMeierGroups
        From :func:`helpers.learning.survival.km_by_group`.
    at_risk_times : sequence of float, optional
        Times of the numbers-at-risk columns, also the x ticks; default round ticks from 0
        past the last follow-up (:func:`round_time_ticks`; the unit is read from ``time_label``,
        e.g. months give steps of 6 or 12).
    title, time_label : str
        Title and x-axis label (give the unit, e.g. "Time (months)").
    ci : bool, default True
        Draw the pointwise confidence bands.

    Returns
    -------
    matplotlib.figure.Figure
        One journal column wide. Two axes: the curves (``axes[0]``; legend of groups with
        their n above the plot, log-rank p right above the plot area) and the numbers-at-risk
        table (``axes[1]``: one text per group and time, at x = time, y = row; the group names
        as coloured row labels).
    """
    apply_style()
    names = list(km.fitters)
    t_max = float(km.time.max())
    ticks = np.asarray(at_risk_times, dtype=float) if at_risk_times is not None else round_time_ticks(t_max, _time_unit(time_label))
    x_hi = max(t_max, float(ticks.max()))
    x_lo = min(0.0, float(ticks.min()))
    width = column_width_inches("single")
    table_inches = 0.22 + 0.16 * len(names)
    height = 2.6 + 0.5 + table_inches + 0.14 * len(names) + (0.22 if title else 0.0)
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(width, height), gridspec_kw={"height_ratios": [2.6, table_inches]}, layout="constrained")
    handles = []
    for i, name in enumerate(names):
        kmf = km.fitters[name]
        colour = PALETTE[i % len(PALETTE)]
        sf = kmf.survival_function_.iloc[:, 0]
        (line,) = ax.step(
            sf.index, sf.to_numpy(), where="post", color=colour, lw=1.3, label=f"{name} (n = {int(np.sum(km.groups == name))})"
        )
        handles.append(line)
        if ci:
            band = kmf.confidence_interval_survival_function_
            ax.fill_between(band.index, band.iloc[:, 0], band.iloc[:, 1], step="post", color=colour, alpha=0.15, linewidth=0)
        m = (km.groups == name) & ~km.event
        censored = np.unique(km.time[m])
        ax.plot(censored, kmf.survival_function_at_times(censored).to_numpy(), "|", color=colour, markersize=5, markeredgewidth=0.8)
    ax.set_xlim(x_lo - 0.02 * (x_hi - x_lo), x_hi * 1.02)
    ax.set_xticks(ticks, [_tick_text(t) for t in ticks])
    ax.set_ylim(0, 1.02)
    ax.set_yticks(np.linspace(0, 1, 6), [f"{v:.1f}" for v in np.linspace(0, 1, 6)])
    ax.set_ylabel("Survival probability")
    ax.set_xlabel(time_label)
    ax.spines[["top", "right"]].set_visible(False)
    ax.text(1.0, 1.01, f"Log-rank {_format_p(km.p_value)}", transform=ax.transAxes, ha="right", va="bottom", fontsize=FONT_SIZE_SMALL)
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=1, frameon=False,
              borderaxespad=0.2, handlelength=1.5, columnspacing=1.0)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    _at_risk_table(tab, km, names, ticks, ax.get_xlim())
    return fig


def _tick_text(t: float) -> str:
    return f"{t:g}"


def _at_risk_table(tab: plt.Axes, km: KaplanMeierGroups, names: list[str], ticks: np.ndarray, xlim: tuple[float, float]) -> None:
    """Numbers at risk per group (rows) at the tick times (columns), aligned with the curves' x-axis."""
    counts = km.at_risk(ticks)
    for i, name in enumerate(names):
        y = len(names) - 1 - i
        for tt in ticks:
            tab.text(
                tt, y, str(counts.loc[name, float(tt)]), ha="center", va="center", fontsize=FONT_SIZE_SMALL, color=PALETTE[i % len(PALETTE)]
            )
    tab.set_xlim(*xlim)
    tab.set_ylim(-0.5, len(names) - 0.5)
    tab.set_yticks(range(len(names))[::-1], names)
    for i, label in enumerate(tab.get_yticklabels()):
        label.set_color(PALETTE[i % len(PALETTE)])
    tab.set_xticks([])
    tab.set_title("Number at risk", loc="left", fontsize=FONT_SIZE_SMALL, fontweight="bold")
    tab.tick_params(left=False, bottom=False)
    tab.spines[["top", "right", "left", "bottom"]].set_visible(False)
