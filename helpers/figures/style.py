"""The one figure style of the study: a colour-blind-safe palette and matplotlib settings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["PALETTE", "STYLE", "apply_style"]

#: Okabe-Ito palette (colour-blind safe), in plotting order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "pdf.fonttype": 42,  # embed TrueType so PDF text stays editable
    "svg.hashsalt": "radiomics-study",
    "path.simplify": False,
}


def apply_style() -> None:
    """Apply the project's matplotlib style (idempotent)."""
    plt.rcParams.update(STYLE)
