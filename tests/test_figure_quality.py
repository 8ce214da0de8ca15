"""Figure quality: the figure check itself, journal sizes and saving, and the check run on every figure function.

Part 1 builds deliberately broken figures (each problem must be reported) and good ones (nothing
reported). Part 2 tests the style module (journal widths, panel letters, the saved size). Part 3
discovers every public figure function of :mod:`helpers.figures` by introspection, builds it from
small synthetic inputs and requires ``figure_problems(fig) == []``: a new figure function without
a case here makes the test fail.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import helpers.figures
from helpers.figures.check import figure_problems
from helpers.figures.style import (
    DOUBLE_COLUMN_MM,
    SINGLE_COLUMN_MM,
    apply_style,
    figure_size,
    panel_label,
    save_figure,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _single(aspect: float = 0.75, layout: str | None = "constrained"):
    apply_style()
    return plt.subplots(figsize=figure_size("single", aspect), layout=layout)


# --------------------------------------------------------------------------- part 1: the check


def test_good_figure_has_no_problem():
    fig, ax = _single()
    ax.plot([0, 1], [0, 1], label="model")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("Sensitivity")
    ax.set_title("ROC")
    ax.legend(loc="upper left", frameon=False)
    assert figure_problems(fig) == []


def test_overlapping_tick_labels_are_reported_by_name():
    fig, ax = _single()
    ax.plot([0, 1], [0, 1])
    ax.set_xticks(np.linspace(0, 1, 11), [f"{v:.1f}" for v in np.linspace(0, 1, 11)], fontsize=14)
    problems = figure_problems(fig)
    assert any(p.startswith("overlapping text: x tick label") and "'0.2'" in p for p in problems), problems


def test_squashed_corner_axes_are_reported():
    # the reviewer's ROC: a plot area squashed into a corner, x tick labels run together
    fig = plt.figure(figsize=figure_size("single", 1.0))
    ax = fig.add_axes((0.12, 0.12, 0.18, 0.18))
    ax.plot([0, 1], [0, 1])
    ax.set_xticks(np.linspace(0, 1, 6))
    problems = figure_problems(fig)
    assert any(p.startswith("squashed axes: axes 1") for p in problems), problems
    assert any(p.startswith("overlapping text: x tick label") for p in problems), problems


def test_sliver_axes_are_reported_by_side_ratio():
    fig = plt.figure(figsize=figure_size("double", 0.5))
    ax = fig.add_axes((0.1, 0.45, 0.85, 0.08))
    ax.plot([0, 1], [0, 1])
    problems = figure_problems(fig)
    assert any("squashed axes" in p and "side ratio" in p or "minimum side" in p for p in problems), problems


def test_overlap_across_axes_is_reported():
    fig, (a, b) = plt.subplots(1, 2, figsize=figure_size("single", 0.6))
    fig.subplots_adjust(wspace=0.0)
    for ax in (a, b):
        ax.plot([0, 1], [0, 1])
    b.set_ylabel("a long y label sitting on the left panel", fontsize=8)
    problems = figure_problems(fig)
    assert any("overlapping text" in p and "axes 1" in p and "axes 2" in p for p in problems), problems


def test_overlapping_annotations_are_reported():
    fig, ax = _single()
    ax.plot([0, 1], [0, 1])
    ax.text(0.5, 0.5, "first note", fontsize=8)
    ax.text(0.52, 0.5, "second note", fontsize=8)
    problems = figure_problems(fig)
    assert problems == ["overlapping text: text of axes 1 'first note' overlaps text of axes 1 'second note'"]


def test_rotated_tick_labels_side_by_side_are_not_an_overlap():
    # slanted labels overlap as bounding boxes but not as rotated rectangles
    fig, ax = _single()
    ax.bar(range(5), [1, 2, 3, 2, 1])
    ax.set_xticks(range(5), ["extra trees", "random forest", "logistic", "lightgbm", "catboost"], rotation=45, ha="right",
                  rotation_mode="anchor")  # fmt: skip
    assert figure_problems(fig) == []


def test_text_outside_the_canvas_is_reported():
    fig, ax = _single(layout=None)  # no layout engine: it would move the axes to make room
    ax.plot([0, 1], [0, 1])
    ax.text(1.05, 0.5, "a note right of the axes that runs off the page", transform=ax.transAxes, fontsize=8)
    problems = figure_problems(fig)
    assert any(p.startswith("text outside the canvas: text of axes 1 'a note right") for p in problems), problems


def test_small_font_at_print_size_is_reported():
    # a figure drawn 2x too large with 9 pt text prints at 4.5 pt in a single column
    apply_style()
    fig, ax = plt.subplots(figsize=(2 * figure_size("single")[0], 2 * figure_size("single")[1]), layout="constrained")
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("Threshold probability", fontsize=9)
    ax.tick_params(labelsize=16)
    problems = figure_problems(fig, print_width_mm=SINGLE_COLUMN_MM)
    assert "font too small: x axis label of axes 1 ('Threshold probability') 'Threshold probability' is 4.5 pt at 85 mm width (minimum 7 pt)" in problems
    assert not any("tick label" in p for p in problems)  # 16 pt ticks print at 8 pt


def test_wider_than_a_page_is_scaled_to_a_double_column():
    apply_style()
    wide_mm = 2 * DOUBLE_COLUMN_MM
    fig, ax = plt.subplots(figsize=(wide_mm / 25.4, 3.0), layout="constrained")
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("Time", fontsize=10)
    problems = figure_problems(fig)
    assert any("'Time' is 5.0 pt at 175 mm width" in p for p in problems), problems


def test_legend_over_the_data_is_reported():
    fig, ax = _single()
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="a model with a long legend entry")
    ax.plot(x, x**2, label="another model")
    ax.legend(loc="center", frameon=True)
    problems = figure_problems(fig)
    assert any(p.startswith("legend covers data: the legend of axes 1") for p in problems), problems


def test_legend_over_tick_labels_is_reported():
    fig, ax = _single(layout=None)  # no layout engine: it would move the axes to make room
    ax.plot([0, 1], [0, 1])
    ax.legend(handles=ax.get_lines(), labels=["model"], loc="upper left", bbox_to_anchor=(-0.25, 0.0), frameon=False)
    problems = figure_problems(fig)
    assert any(p.startswith("overlapping text: the legend of axes 1 overlaps") and "tick label" in p for p in problems), problems


def test_colour_bar_and_text_only_axes_are_not_panels():
    apply_style()
    fig, (ax, table) = plt.subplots(2, 1, figsize=figure_size("single", 0.9), height_ratios=[6, 1], layout="constrained")
    im = ax.imshow(np.arange(16).reshape(4, 4) / 15, vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="AUC")
    table.axis("off")
    table.text(0.0, 0.5, "Number at risk", fontsize=7)
    assert figure_problems(fig) == []


def test_check_is_deterministic_and_leaves_text_drawing_intact():
    import matplotlib.text

    original = matplotlib.text.Text.draw
    fig, ax = _single()
    ax.set_xticks(np.linspace(0, 1, 11), [f"{v:.1f}" for v in np.linspace(0, 1, 11)], fontsize=20)
    first = figure_problems(fig)
    assert first == figure_problems(fig)
    assert matplotlib.text.Text.draw is original


# --------------------------------------------------------------------------- part 2: style and saving


def test_journal_widths_and_figure_size():
    assert SINGLE_COLUMN_MM == 85.0 and DOUBLE_COLUMN_MM == 175.0
    w, h = figure_size()
    assert w == pytest.approx(85.0 / 25.4) and h == pytest.approx(0.75 * w)
    w2, h2 = figure_size("double", aspect=0.5)
    assert w2 == pytest.approx(175.0 / 25.4) and h2 == pytest.approx(w2 / 2)
    with pytest.raises(ValueError, match="single"):
        figure_size("triple")
    with pytest.raises(ValueError, match="positive"):
        figure_size("single", aspect=0.0)


def test_style_fonts_are_7_to_9_pt():
    apply_style()
    sizes = [plt.rcParams[k] for k in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize")]
    assert all(7.0 <= float(s) <= 9.0 for s in sizes), sizes


def test_panel_labels_are_bold_capitals_inside_the_canvas():
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=figure_size("double", 0.4), layout="constrained")
    for ax, letter in zip(axes, "AB", strict=True):
        ax.plot([0, 1], [0, 1])
        ax.set_ylabel("Sensitivity")
        panel_label(ax, letter)
    assert figure_problems(fig) == []
    letters = [t for ax in axes for t in ax.texts if t.get_gid() == "panel-label"]
    assert [t.get_text() for t in letters] == ["A", "B"]
    assert all(t.get_fontweight() == "bold" for t in letters)
    renderer = fig.canvas.get_renderer()
    for ax, t in zip(axes, letters, strict=True):  # top-left of its panel
        box, frame = t.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.x1 <= frame.x0 and box.y0 >= frame.y1 - 1


def test_saved_figure_has_the_journal_width(tmp_path):
    fig, ax = _single()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("a label")
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    width_px, height_px = Image.open(tmp_path / "f.png").size
    assert abs(width_px - SINGLE_COLUMN_MM / 25.4 * 300) <= 1
    assert abs(height_px - 0.75 * SINGLE_COLUMN_MM / 25.4 * 300) <= 1
    media_box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", (tmp_path / "f.pdf").read_bytes())
    assert float(media_box.group(1)) == pytest.approx(SINGLE_COLUMN_MM / 25.4 * 72, abs=0.5)


def test_saving_never_clips_text_that_sticks_out(tmp_path):
    fig, ax = _single(layout=None)  # no layout engine: it would move the axes to make room
    ax.plot([0, 1], [0, 1])
    ax.text(1.02, 0.5, "a note sticking out of the canvas on the right", transform=ax.transAxes)
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    assert Image.open(tmp_path / "f.png").size[0] > SINGLE_COLUMN_MM / 25.4 * 300 + 10  # tight box: text kept


def test_saving_is_byte_identical(tmp_path):
    paths = []
    for i in range(2):
        fig, ax = _single()
        ax.plot([0, 1], [0, 1])
        save_figure(fig, tmp_path / f"f{i}.png", tmp_path / f"f{i}.pdf")
        paths.append((tmp_path / f"f{i}.png", tmp_path / f"f{i}.pdf"))
    assert paths[0][0].read_bytes() == paths[1][0].read_bytes()
    assert paths[0][1].read_bytes() == paths[1][1].read_bytes()
