"""Figure check: what a journal reviewer would object to in a figure, found by drawing it.

:func:`figure_problems` draws a figure with the Agg renderer and lists, in plain words
naming the text concerned:

* text that overlaps other text (tick labels, titles, axis labels, legend entries,
  annotations, table cells; within one axes and across axes), judged on the rotated
  rectangles of the texts, so slanted tick labels are not flagged for their bounding boxes;
* a legend that overlaps text or covers the plotted data of its axes;
* text that sticks out of the canvas (it would be clipped, or the saved figure would
  not have the size it was built for);
* text smaller than the minimum font size once the figure is printed at its journal width;
* axes (plot areas) that are squashed: a small share of the canvas, a short side of only
  a few millimetres at print size, or an extreme height-to-width ratio.

The check is used by the tests on every figure function of :mod:`helpers.figures`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backend_bases import RendererBase  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from helpers.figures.style import DOUBLE_COLUMN_MM, MM_PER_INCH  # noqa: E402

__all__ = ["figure_problems"]

#: Overlaps smaller than this (in points, at figure size) are ignored: anti-aliasing, glyph padding.
OVERLAP_TOLERANCE_PT = 0.75
#: Text may reach this far (points) past the canvas edge before it counts as outside.
CANVAS_TOLERANCE_PT = 0.5


@dataclass(frozen=True)
class _DrawnText:
    """A text artist as drawn: its name for messages and its (possibly rotated) rectangle in display pixels."""

    artist: Text
    name: str
    corners: np.ndarray  # 4 x 2, display pixels
    bbox: Bbox
    owner: object  # the Axes, Legend or Figure the text belongs to


@contextlib.contextmanager
def _recording_drawn_texts() -> Iterator[list[Text]]:
    """Record every Text whose ``draw`` runs with something to show (visible, non-empty)."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self: Text, renderer: RendererBase) -> None:
        if self.get_visible() and self.get_text().strip() and renderer is not None:
            drawn.append(self)
        original(self, renderer)

    Text.draw = draw  # type: ignore[method-assign]
    try:
        yield drawn
    finally:
        Text.draw = original  # type: ignore[method-assign]


def _draw(fig: Figure) -> tuple[RendererBase, list[Text]]:
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    with _recording_drawn_texts() as drawn:
        canvas.draw()
    unique = list(dict.fromkeys(drawn))  # draw order, each text once
    return canvas.get_renderer(), unique


# --------------------------------------------------------------------------- naming


def _short(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _axes_name(ax: Axes, index: int) -> str:
    for title in (ax.get_title("center"), ax.get_title("left"), ax.get_title("right")):
        if title.strip():
            return f"axes {index + 1} ({_short(title, 30)!r})"
    for label in (ax.get_ylabel(), ax.get_xlabel()):
        if label.strip():
            return f"axes {index + 1} ({_short(label, 30)!r})"
    return f"axes {index + 1}"


def _text_names(fig: Figure) -> tuple[dict[int, str], dict[int, object]]:
    """Human names (and owners) of the text artists of ``fig``, keyed by ``id``."""
    names: dict[int, str] = {}
    owners: dict[int, object] = {}

    def add(t: Text | None, name: str, owner: object) -> None:
        if t is not None and id(t) not in names:
            names[id(t)] = name
            owners[id(t)] = owner

    def add_legend(legend: Legend | None, where: str, owner: object) -> None:
        if legend is None:
            return
        add(legend.get_title(), f"legend title{where}", legend)
        for t in legend.get_texts():
            add(t, f"legend entry{where}", legend)

    for i, ax in enumerate(fig.axes):
        where = f" of {_axes_name(ax, i)}"
        add(ax.title, f"title{where}", ax)
        add(ax._left_title, f"title{where}", ax)  # noqa: SLF001 - matplotlib keeps the side titles private
        add(ax._right_title, f"title{where}", ax)  # noqa: SLF001
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            add(axis.label, f"{letter} axis label{where}", ax)
            add(axis.get_offset_text(), f"{letter} axis offset{where}", ax)
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                add(tick.label1, f"{letter} tick label{where}", ax)
                add(tick.label2, f"{letter} tick label{where}", ax)
        for t in ax.texts:
            add(t, f"{'panel letter' if t.get_gid() == 'panel-label' else 'text'}{where}", ax)
        add_legend(ax.get_legend(), where, ax)
        for table in ax.tables:
            for cell in table.get_celld().values():
                add(cell.get_text(), f"table cell{where}", ax)
    for t in fig.texts:
        add(t, "figure text", fig)
    for attr, label in (("_suptitle", "figure title"), ("_supxlabel", "figure x label"), ("_supylabel", "figure y label")):
        add(getattr(fig, attr, None), label, fig)
    for legend in fig.legends:
        add_legend(legend, " of the figure", fig)
    return names, owners


# --------------------------------------------------------------------------- geometry


def _rectangle(t: Text, renderer: RendererBase) -> tuple[np.ndarray, Bbox]:
    """Corners of the text's rotated rectangle and its axis-aligned bounding box, in display pixels."""
    bbox = t.get_window_extent(renderer)
    angle = t.get_rotation() % 180
    if np.isclose(angle, 0.0) or np.isclose(angle, 180.0):
        corners = np.array([[bbox.x0, bbox.y0], [bbox.x1, bbox.y0], [bbox.x1, bbox.y1], [bbox.x0, bbox.y1]])
        return corners, bbox
    rotation = t.get_rotation()
    t.set_rotation(0)
    try:
        flat = t.get_window_extent(renderer)
    finally:
        t.set_rotation(rotation)
    theta = np.deg2rad(rotation)
    half = np.array([[-flat.width, -flat.height], [flat.width, -flat.height], [flat.width, flat.height], [-flat.width, flat.height]]) / 2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([(bbox.x0 + bbox.x1) / 2, (bbox.y0 + bbox.y1) / 2])  # a rotated rectangle is centred in its bounding box
    return half @ rot.T + centre, bbox


def _penetration(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap depth of two convex polygons (separating-axis test): 0 when they are apart."""
    depth = np.inf
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for edge in edges:
            norm = np.hypot(*edge)
            if norm == 0:
                continue
            axis = np.array([-edge[1], edge[0]]) / norm
            pa, pb = a @ axis, b @ axis
            overlap = min(pa.max(), pb.max()) - max(pa.min(), pb.min())
            if overlap <= 0:
                return 0.0
            depth = min(depth, overlap)
    return float(depth) if np.isfinite(depth) else 0.0


# --------------------------------------------------------------------------- checks


def _collect(fig: Figure, renderer: RendererBase, drawn: list[Text]) -> list[_DrawnText]:
    names, owners = _text_names(fig)
    out = []
    for t in drawn:
        if t.figure is not fig:
            continue
        corners, bbox = _rectangle(t, renderer)
        if bbox.width <= 0 or bbox.height <= 0:
            continue
        name = names.get(id(t), "text")
        out.append(_DrawnText(t, f"{name} {_short(t.get_text())!r}", corners, bbox, owners.get(id(t), fig)))
    return out


def _overlapping_texts(texts: list[_DrawnText], tolerance_px: float) -> list[str]:
    problems = []
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            if not a.bbox.overlaps(b.bbox):
                continue
            if _penetration(a.corners, b.corners) > tolerance_px:
                problems.append(f"overlapping text: {a.name} overlaps {b.name}")
    return problems


def _outside_canvas(texts: list[_DrawnText], fig: Figure, tolerance_px: float) -> list[str]:
    width, height = fig.bbox.width, fig.bbox.height
    problems = []
    for t in texts:
        xs, ys = t.corners[:, 0], t.corners[:, 1]
        if xs.min() < -tolerance_px or ys.min() < -tolerance_px or xs.max() > width + tolerance_px or ys.max() > height + tolerance_px:
            problems.append(f"text outside the canvas: {t.name}")
    return problems


def _print_scale(fig: Figure, print_width_mm: float | None) -> tuple[float, float]:
    """(scale from figure size to print size, printed width in mm)."""
    fig_width_mm = fig.get_figwidth() * MM_PER_INCH
    printed = print_width_mm if print_width_mm is not None else min(fig_width_mm, DOUBLE_COLUMN_MM)
    return printed / fig_width_mm, printed


def _small_fonts(texts: list[_DrawnText], scale: float, printed_mm: float, min_font_pt: float) -> list[str]:
    problems = []
    for t in texts:
        size = t.artist.get_fontsize() * scale
        if size < min_font_pt - 1e-6:
            problems.append(f"font too small: {t.name} is {size:.1f} pt at {printed_mm:.0f} mm width (minimum {min_font_pt:g} pt)")
    return problems


def _legends(fig: Figure) -> list[tuple[Legend, Axes | None]]:
    out: list[tuple[Legend, Axes | None]] = [(ax.get_legend(), ax) for ax in fig.axes if ax.get_legend() is not None]
    out += [(legend, None) for legend in fig.legends]
    return [(lg, ax) for lg, ax in out if lg.get_visible()]


def _data_points(ax: Axes, spacing_px: float = 2.0) -> np.ndarray:
    """Display coordinates of the data drawn inside ``ax``: lines resampled every ``spacing_px`` and scatter points."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = line.get_transform().transform(np.column_stack(line.get_data()).astype(float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 1 or line.get_linestyle() in ("None", "none", " ", ""):
            pts.append(xy)
            continue
        for p, q in zip(xy[:-1], xy[1:], strict=True):
            steps = max(2, int(np.hypot(*(q - p)) / spacing_px) + 1)
            pts.append(p + np.linspace(0, 1, steps)[:, None] * (q - p))
    for coll in ax.collections:
        if coll.get_visible() and isinstance(coll, PathCollection) and len(coll.get_offsets()):
            xy = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), dtype=float))
            pts.append(xy[np.isfinite(xy).all(axis=1)])
    if not pts:
        return np.empty((0, 2))
    xy = np.vstack(pts)
    box = ax.get_window_extent()  # data outside the plot area is clipped, so not drawn
    keep = (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    return xy[keep]


def _legend_problems(fig: Figure, renderer: RendererBase, texts: list[_DrawnText], tolerance_px: float) -> list[str]:
    problems = []
    for legend, ax in _legends(fig):
        box = legend.get_window_extent(renderer)
        where = "the figure legend" if ax is None else f"the legend of {_axes_name(ax, fig.axes.index(ax))}"
        own = {id(t) for t in [*legend.get_texts(), legend.get_title()]}
        for t in texts:
            if id(t.artist) in own or t.owner is legend:
                continue
            shrunk = Bbox.from_extents(box.x0 + tolerance_px, box.y0 + tolerance_px, box.x1 - tolerance_px, box.y1 - tolerance_px)
            if shrunk.width > 0 and shrunk.height > 0 and _penetration(np.array(shrunk.corners())[[0, 2, 3, 1]], t.corners) > 0:
                problems.append(f"overlapping text: {where} overlaps {t.name}")
        if ax is not None:
            pts = _data_points(ax)
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1) if len(pts) else []
            if np.any(inside):
                problems.append(f"legend covers data: {where} lies over {int(np.sum(inside))} plotted point(s)")
    return problems


def _is_panel(ax: Axes) -> bool:
    """A data panel: not a colour bar, and not a text-only axes (e.g. a numbers-at-risk table drawn with the axis off)."""
    if ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar"):
        return False
    if not ax.get_visible():
        return False
    has_data = bool(ax.get_lines() or ax.collections or ax.patches or ax.images)
    return has_data or ax.axison


def _squashed_axes(fig: Figure, scale: float, min_axes_fraction: float, min_axes_side_mm: float, max_axes_aspect: float) -> list[str]:
    panels = [ax for ax in fig.axes if _is_panel(ax)]
    if not panels:
        return []
    canvas = fig.bbox.width * fig.bbox.height
    share = canvas / len(panels)
    px_to_mm = MM_PER_INCH / fig.dpi * scale
    problems = []
    for ax in panels:
        name = _axes_name(ax, fig.axes.index(ax))
        box = ax.get_window_extent()
        area = box.width * box.height
        fraction = area / share
        if fraction < min_axes_fraction:
            problems.append(
                f"squashed axes: {name} fills {100 * area / canvas:.0f}% of the canvas "
                f"({100 * fraction:.0f}% of its share of {len(panels)} panel(s); minimum {100 * min_axes_fraction:.0f}%)"
            )
        side_mm = min(box.width, box.height) * px_to_mm
        if side_mm < min_axes_side_mm:
            problems.append(f"squashed axes: {name} is {box.width * px_to_mm:.0f} x {box.height * px_to_mm:.0f} mm at print size "
                            f"(minimum side {min_axes_side_mm:g} mm)")  # fmt: skip
        elif min(box.width, box.height) > 0 and max(box.width, box.height) / min(box.width, box.height) > max_axes_aspect:
            problems.append(f"squashed axes: {name} is {box.width * px_to_mm:.0f} x {box.height * px_to_mm:.0f} mm, "
                            f"a side ratio above {max_axes_aspect:g}")  # fmt: skip
    return problems


def figure_problems(
    fig: Figure,
    *,
    print_width_mm: float | None = None,
    min_font_pt: float = 7.0,
    min_axes_fraction: float = 0.25,
    min_axes_side_mm: float = 12.0,
    max_axes_aspect: float = 8.0,
) -> list[str]:
    """Problems a journal would object to in ``fig``, in plain words (empty list: none found).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure, as it will be saved (its size is its intended print size unless
        ``print_width_mm`` says otherwise). It is drawn with the Agg renderer.
    print_width_mm : float, optional
        Width the figure is printed at, e.g. :data:`helpers.figures.style.SINGLE_COLUMN_MM`.
        Font sizes and axes sizes are scaled by ``print_width_mm / figure width``. Default:
        the figure's own width, or a double column (175 mm) if it is wider.
    min_font_pt : float
        Smallest font size allowed at print size.
    min_axes_fraction : float
        Smallest area of a data panel, as a fraction of its share of the canvas (canvas area
        divided by the number of data panels; colour bars and text-only axes such as a
        numbers-at-risk table are not panels).
    min_axes_side_mm : float
        Smallest width and height of a data panel at print size.
    max_axes_aspect : float
        Largest ratio of the longer to the shorter side of a data panel.

    Returns
    -------
    list of str
        One sentence per problem, naming the text or axes concerned, in a fixed order
        (overlaps, legends, outside the canvas, font sizes, axes).
    """
    renderer, drawn = _draw(fig)
    texts = _collect(fig, renderer, drawn)
    pt_to_px = fig.dpi / 72.0
    scale, printed_mm = _print_scale(fig, print_width_mm)
    problems: list[str] = []
    problems += _overlapping_texts(texts, OVERLAP_TOLERANCE_PT * pt_to_px)
    problems += _legend_problems(fig, renderer, texts, OVERLAP_TOLERANCE_PT * pt_to_px)
    problems += _outside_canvas(texts, fig, CANVAS_TOLERANCE_PT * pt_to_px)
    problems += _small_fonts(texts, scale, printed_mm, min_font_pt)
    problems += _squashed_axes(fig, scale, min_axes_fraction, min_axes_side_mm, max_axes_aspect)
    return list(dict.fromkeys(problems))
