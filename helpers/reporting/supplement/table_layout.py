"""Page layout of the supplement's tables: orientation, font size, column widths and column groups (all three writers).

A table is set on an A4 page with 2 cm margins (text width 17.0 cm portrait, 25.7 cm landscape). Column widths are
estimated from the text: a column is at least as wide as its longest unbreakable piece (a word, a number, a
confidence interval ``(0.736-1.000)``, which is kept on one line) and at most as wide as its longest cell. The first of
these that fits is used:

1. portrait at 8 pt;
2. landscape at 8 pt;
3. landscape at 7 pt (the smallest size used);
4. column groups on landscape pages at 7 pt: the identifier columns (``id`` in ``table_labels.yaml``, else the
   leading text columns, at most 2) are repeated in every group and the other columns are packed in their order.

Nothing is shrunk below 7 pt and nothing is cut off.
"""


from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from helpers.reporting.supplement.table_format import DisplayTable

PORTRAIT_CM, LANDSCAPE_CM = 17.0, 25.7
FONT_SIZES = (8.0, 7.0)
MIN_FONT_PT = 7.0
_PT_CM = 2.54 / 72
WIDE_FONT = 1.12
BOLD = 1.32  # bold headers are wider (Latin Modern bold extended)
SAFETY_EM = 0.8  # added to every column's minimum width (font metrics differ between DOCX, HTML and LaTeX)
PAD_CM = 0.2  # left plus right cell padding of one column
SLACK_CM = 0.05  # kept free at the right margin (rounding of widths in the three formats)
_MAX_ID_COLUMNS = 2
_LONG_TOKEN = 16
_CI = re.compile(r"^(\S+) (\((?:-?[\d.]+(?:-| to )-?[\d.]+|NA)\))$")


@dataclass(frozen=True)
class TablePart:
    """One column group of a table on one kind of page.

    Attributes
    ----------
    columns : tuple of int
        Indices into the table's columns.
    widths_cm : tuple of float
        Width of each column's text (padding excluded).
    landscape : bool
    font_pt : float
    """

    columns: tuple[int, ...]
    widths_cm: tuple[float, ...]
    landscape: bool
    font_pt: float

    @property
    def text_width_cm(self) -> float:
        return PORTRAIT_CM if not self.landscape else LANDSCAPE_CM

    @property
    def width_cm(self) -> float:
        """Width of the table including cell padding."""
        return sum(self.widths_cm) + PAD_CM * len(self.widths_cm)


@dataclass(frozen=True)
class TableLayout:
    """How a table is set: one part, or several column groups (``split``)."""

    parts: tuple[TablePart, ...]
    id_columns: tuple[int, ...] = ()

    @property
    def split(self) -> bool:
        return len(self.parts) > 1


def part_caption(item, part: int, n_parts: int) -> tuple[str, str]:
    """(label, caption) of part ``part`` (0-based) of a table split into ``n_parts`` column groups.

    ``("Table S3", "Caption. (columns, part 1 of 2)")`` then ``("Table S3 (continued)", ...)``; unchanged when not split.
    """
    if n_parts <= 1:
        return item.label, item.caption
    return (item.label if part == 0 else f"{item.label} (continued)"), f"{item.caption.rstrip('.')} (columns, part {part + 1} of {n_parts})."


def cell_tokens(text: str, ci: bool = False) -> list[str]:
    """Pieces of a cell that are never broken: words; in a confidence-interval column the estimate and the interval
    ``(lower-upper)`` / ``(lower to upper)``."""
    m = _CI.match(text) if ci else None
    if m:
        return [m.group(1), m.group(2)]
    # long identifiers (feature names) may break after an underscore; short ones (cohort names) stay whole
    return [p for t in text.split() for p in (re.split(r"(?<=_)", t) if len(t) > _LONG_TOKEN else [t]) if p]


def text_em(text: str) -> float:
    """Estimated width of a text in em: Helvetica / Arial advance widths times :data:`WIDE_FONT` (DejaVu Sans, the
    substitute for Arial where it is missing, e.g. LibreOffice on Linux, is that much wider; Latin Modern and Calibri
    are narrower), so no column is too narrow in any of the fonts the documents may be shown with."""
    total = 0.0
    for ch in text:
        if ch.isupper():
            total += 0.72 if ch not in "MW" else 0.9
        elif ch.isdigit():
            total += 0.556
        elif ch.islower():
            total += 0.83 if ch in "mw" else 0.25 if ch in "ijlft" else 0.54
        elif ch in " .,:;'!|":
            total += 0.28
        elif ch in "()[]-/":
            total += 0.34
        else:
            total += 0.6
    return total * WIDE_FONT


def _chars(table: DisplayTable, j: int) -> tuple[float, float]:
    """(minimum, preferred) width of column ``j`` in em."""
    label, ci = table.columns[j].label, table.columns[j].kind == "ci"
    cells = [r[j] for r in table.rows]
    tokens = [text_em(t) for c in cells for t in cell_tokens(c, ci)] or [0.0]
    head_words = [text_em(w) * BOLD for w in label.split()] or [0.0]
    lo = max(max(tokens), max(head_words)) + SAFETY_EM
    longest = max([text_em(c) for c in cells] or [0.0])
    # Prose (review points, checklist status) may take up to about 60 em (110 characters) when the page has room, so
    # generated text tables fill the text width; the spare room is shared in proportion, so numbers keep their widths.
    # Headers wrap at their words.
    hi = max(lo, min(longest, 60.0), min(text_em(label) * BOLD, max(7.0, longest)))
    return lo, hi


def _fit(mins: Sequence[float], prefs: Sequence[float], font: float, avail: float) -> tuple[float, ...] | None:
    """Column text widths in cm that fit ``avail`` (min widths grown towards preferred), or None."""
    scale = font * _PT_CM
    lo = [m * scale for m in mins]
    hi = [p * scale for p in prefs]
    room = avail - PAD_CM * len(lo) - SLACK_CM
    if sum(lo) > room + 1e-9:
        return None
    extra, want = room - sum(lo), sum(h - m for h, m in zip(hi, lo, strict=True))
    share = 1.0 if want <= extra else extra / want
    return tuple(math.floor((m + (h - m) * share) * 100) / 100 for m, h in zip(lo, hi, strict=True))


def _id_columns(table: DisplayTable) -> tuple[int, ...]:
    flagged = tuple(j for j, c in enumerate(table.columns) if c.id)
    if flagged:
        return flagged[:3]
    lead = []
    for j, c in enumerate(table.columns):
        if c.numeric or len(lead) == _MAX_ID_COLUMNS:
            break
        lead.append(j)
    return tuple(lead)


def plan_layout(table: DisplayTable) -> TableLayout:
    """Orientation, font size, column widths and column groups of a table (see the module docstring)."""
    n = len(table.columns)
    if n == 0:
        return TableLayout((TablePart((), (), False, FONT_SIZES[0]),))
    sizes = [_chars(table, j) for j in range(n)]
    mins, prefs = [s[0] for s in sizes], [s[1] for s in sizes]
    for font, landscape in ((8.0, False), (8.0, True), (7.0, True)):
        widths = _fit(mins, prefs, font, LANDSCAPE_CM if landscape else PORTRAIT_CM)
        if widths is not None:
            return TableLayout((TablePart(tuple(range(n)), widths, landscape, font),))
    font, avail, scale = MIN_FONT_PT, LANDSCAPE_CM, MIN_FONT_PT * _PT_CM
    ids = _id_columns(table)
    id_width = sum(mins[j] * scale + PAD_CM for j in ids)
    groups: list[list[int]] = [[]]
    used = id_width
    for j in (j for j in range(n) if j not in ids):
        w = min(mins[j] * scale, avail - id_width - PAD_CM) + PAD_CM
        if groups[-1] and used + w > avail:
            groups.append([])
            used = id_width
        groups[-1].append(j)
        used += w
    parts = []
    for group in groups:
        cols = (*ids, *group)
        widths = _fit([min(mins[j], (avail - id_width) / scale) for j in cols], [prefs[j] for j in cols], font, avail)
        if widths is None:  # a single column wider than the page: give it the remaining width
            widths = tuple(math.floor(min(mins[j] * scale, avail - id_width - PAD_CM - SLACK_CM) * 100) / 100 for j in cols)
        parts.append(TablePart(cols, widths, True, font))
    return TableLayout(tuple(parts), ids)
