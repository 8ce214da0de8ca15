"""Kaplan-Meier figure: curves per risk group with censoring marks, log-rank p and a numbers-at-risk table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt
import numpy as np

from helpers.figures.style import PALETTE, apply_style

if TYPE_CHECKING:
    from helpers.learning.survival import KaplanMeierGroups

__all__ = ["km_figure"]


def _format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def km_figure(
    km: KaplanMeierGroups,
    at_risk_times: Sequence[float] | None = None,
    title: str = "",
    time_label: str = "Time",
    ci: bool = True,
) -> plt.Figure:
    """Kaplan-Meier curves with censoring marks, log-rank p and a numbers-at-risk table.

    Parameters
    ----------
    km : KaplanMeierGroups
        From :func:`helpers.learning.survival.km_by_group`.
    at_risk_times : sequence of float, optional
        Times of the numbers-at-risk columns (also the x ticks); default 6
        evenly spaced times from 0 to the last follow-up.
    title, time_label : str
        Title and x-axis label (give the unit, e.g. "Time (months)").
    ci : bool, default True
        Draw the pointwise confidence bands.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the curves (``axes[0]``) and the at-risk table (``axes[1]``,
        one text per group and time).
    """
    apply_style()
    names = list(km.fitters)
    t_max = float(km.time.max())
    ticks = np.asarray(at_risk_times, dtype=float) if at_risk_times is not None else np.linspace(0, t_max, 6)
    fig, (ax, tab) = plt.subplots(
        2, 1, figsize=(6.0, 4.2 + 0.2 * len(names)), sharex=True, gridspec_kw={"height_ratios": [4, 0.5 + 0.3 * len(names)]}
    )
    for i, name in enumerate(names):
        kmf = km.fitters[name]
        colour = PALETTE[i % len(PALETTE)]
        sf = kmf.survival_function_.iloc[:, 0]
        ax.step(sf.index, sf.to_numpy(), where="post", color=colour, label=f"{name} (n={int(np.sum(km.groups == name))})")
        if ci:
            band = kmf.confidence_interval_survival_function_
            ax.fill_between(band.index, band.iloc[:, 0], band.iloc[:, 1], step="post", color=colour, alpha=0.15, linewidth=0)
        m = (km.groups == name) & ~km.event
        censored = np.unique(km.time[m])
        ax.plot(censored, kmf.survival_function_at_times(censored).to_numpy(), "|", color=colour, markersize=6)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Survival probability")
    ax.legend(frameon=False, loc="lower left")
    ax.text(0.98, 0.95, f"Log-rank {_format_p(km.p_value)}", transform=ax.transAxes, ha="right", va="top")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    counts = km.at_risk(ticks)
    for i, name in enumerate(names):
        y = len(names) - 1 - i
        for tt in ticks:
            tab.text(tt, y, str(counts.loc[name, float(tt)]), ha="center", va="center", color=PALETTE[i % len(PALETTE)])
    tab.set_ylim(-0.5, len(names) - 0.5)
    tab.set_yticks(range(len(names))[::-1], names)
    tab.set_xticks(ticks)
    tab.set_xlim(min(0.0, float(ticks.min())) - 0.03 * t_max, max(t_max, float(ticks.max())) * 1.03)
    tab.set_xlabel(time_label)
    tab.set_title("Number at risk", loc="left", fontsize=8)
    tab.tick_params(left=False)
    tab.spines[["top", "right", "left"]].set_visible(False)
    fig.tight_layout()
    return fig
