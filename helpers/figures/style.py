"""The one figure style of the study: journal sizes, fonts, a colour-blind-safe palette and the one way figures are saved.

Figures are built at the width they are printed at (a journal column: single about 85 mm,
double about 175 mm; :func:`figure_size`), with fonts of 7-9 pt at that size
(:data:`FONT_SIZE_SMALL`, :data:`FONT_SIZE`, :data:`FONT_SIZE_LARGE`), so a journal can place
them without scaling. Multi-panel figures carry upper-case bold panel letters ("A", "B", ...)
in their top-left corners (:func:`panel_label`), as the seed supplements do.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown in a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

__all__ = [
    "PALETTE",
    "STYLE",
    "MM_PER_INCH",
    "SINGLE_COLUMN_MM",
    "DOUBLE_COLUMN_MM",
    "FONT_SIZE_SMALL",
    "FONT_SIZE",
    "FONT_SIZE_LARGE",
    "PANEL_LABEL_SIZE",
    "apply_style",
    "column_width_inches",
    "figure_size",
    "panel_label",
    "save_figure",
]

#: Okabe-Ito palette (colour-blind safe), in plotting order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

MM_PER_INCH = 25.4
#: Width of a single journal column, in mm (most journals: 84-90 mm).
SINGLE_COLUMN_MM = 85.0
#: Width of a full page (two columns), in mm (most journals: 170-180 mm).
DOUBLE_COLUMN_MM = 175.0

#: Smallest text of a figure (tick labels, legends, annotations), in pt at print size.
FONT_SIZE_SMALL = 7.0
#: Axis labels and body text, in pt at print size.
FONT_SIZE = 8.0
#: Titles, in pt at print size.
FONT_SIZE_LARGE = 9.0
#: Panel letters ("A", "B", ...), bold, in pt at print size.
PANEL_LABEL_SIZE = 9.0

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE_LARGE,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE_SMALL,
    "ytick.labelsize": FONT_SIZE_SMALL,
    "legend.fontsize": FONT_SIZE_SMALL,
    "legend.title_fontsize": FONT_SIZE_SMALL,
    "figure.titlesize": FONT_SIZE_LARGE,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "lines.linewidth": 1.2,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "pdf.fonttype": 42,  # embed TrueType so PDF text stays editable
    "ps.fonttype": 42,
    "svg.hashsalt": "radiomics-study",
    "path.simplify": False,
}

_WIDTHS_MM = {"single": SINGLE_COLUMN_MM, "double": DOUBLE_COLUMN_MM}


def apply_style() -> None:
    """Apply the project's matplotlib style (idempotent)."""
    plt.rcParams.update(STYLE)


def column_width_inches(width: str = "single") -> float:
    """Printed width of a figure in inches.

    Parameters
    ----------
    width : {"single", "double"}
        One journal column (:data:`SINGLE_COLUMN_MM`) or the full page (:data:`DOUBLE_COLUMN_MM`).

    Returns
    -------
    float
        The width in inches.

    Raises
    ------
    ValueError
        If ``width`` is neither "single" nor "double".
    """
    if width not in _WIDTHS_MM:
        raise ValueError(f"figure width must be 'single' or 'double', got {width!r}")
    return _WIDTHS_MM[width] / MM_PER_INCH


def figure_size(width: str = "single", aspect: float = 0.75) -> tuple[float, float]:
    """Size of a figure at its printed journal width.

    Parameters
    ----------
    width : {"single", "double"}
        Single column (85 mm) or double column (175 mm).
    aspect : float
        Height divided by width (0.75: a 4:3 landscape figure; 1.0: square; above 1: portrait).

    Returns
    -------
    tuple of float
        ``(width, height)`` in inches, for ``plt.subplots(figsize=...)``.

    Raises
    ------
    ValueError
        If ``width`` is unknown or ``aspect`` is not a positive finite number.
    """
    if not (aspect > 0 and aspect < float("inf")):
        raise ValueError(f"figure aspect (height / width) must be a positive number, got {aspect!r}")
    inches = column_width_inches(width)
    return (inches, inches * float(aspect))


def panel_label(ax: Axes, label: str) -> None:
    """Put a bold panel letter ("A", "B", ...) at the top-left corner of ``ax``.

    The letter sits just above the axes' top-left corner, shifted left by a fixed
    distance so it clears the y tick labels of a typical axes; it is a text artist of
    the axes, so layout engines and the figure check account for it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    label : str
        The letter, e.g. "A".
    """
    offset = ScaledTranslation(-0.30, 0.06, ax.figure.dpi_scale_trans)
    ax.text(
        0.0,
        1.0,
        label,
        transform=ax.transAxes + offset,
        fontsize=PANEL_LABEL_SIZE,
        fontweight="bold",
        ha="right",
        va="bottom",
        gid="panel-label",
    )


def _content_fits_canvas(fig: Figure) -> bool:
    """Whether everything drawn lies inside the figure canvas (so no crop is needed)."""
    renderer = fig.canvas.get_renderer()
    bbox = fig.get_tightbbox(renderer)  # inches
    width, height = fig.get_size_inches()
    tolerance = 0.5 / 72  # half a point
    return bbox.x0 >= -tolerance and bbox.y0 >= -tolerance and bbox.x1 <= width + tolerance and bbox.y1 <= height + tolerance


def save_figure(fig: Figure, png_path: str | Path, pdf_path: str | Path) -> None:
    """Write ``fig`` as PNG (300 dpi) and PDF, then close it.

    The saved size is the figure size: a figure built with :func:`figure_size` prints at
    exactly the journal column width, fonts at their nominal size. Only a figure whose
    text sticks out of its canvas (which :func:`helpers.figures.check.figure_problems`
    reports) is saved with a "tight" bounding box instead, so nothing is clipped.
    Volatile metadata (software version, creation dates, producer) is left out, so
    identical figures give identical files.
    """
    fig.canvas.draw()
    bbox = None if _content_fits_canvas(fig) else "tight"
    fig.savefig(png_path, dpi=300, metadata={"Software": None}, bbox_inches=bbox, pad_inches=0.05)
    fig.savefig(pdf_path, metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}, bbox_inches=bbox, pad_inches=0.05)
    plt.close(fig)
