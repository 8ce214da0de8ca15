"""The one figure style of the study: a colour-blind-safe palette, matplotlib settings and the one way figures are saved."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["PALETTE", "STYLE", "apply_style", "save_figure"]

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


def save_figure(fig: Figure, png_path: str | Path, pdf_path: str | Path) -> None:
    """Write ``fig`` as PNG (300 dpi) and PDF, then close it.

    Volatile metadata (software version, creation dates, producer) is left out, so
    identical figures give identical files; the bounding box is "tight" so long
    radiomics feature names in axis labels are not clipped.
    """
    fig.savefig(png_path, dpi=300, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    fig.savefig(pdf_path, metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
