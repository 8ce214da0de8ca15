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
    assert (
        "font too small: x axis label of axes 1 ('Threshold probability') 'Threshold probability' is 4.5 pt at 85 mm width (minimum 7 pt)"
        in problems
    )
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
    sizes = [
        plt.rcParams[k] for k in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize")
    ]
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


# --------------------------------------------------------------------------- part 3: every figure function

#: Public functions of helpers.figures that do not draw a figure.
NOT_FIGURES = {
    "check.figure_problems",
    "style.apply_style",
    "style.column_width_inches",
    "style.figure_size",
    "style.panel_label",
    "style.save_figure",
    "images.mid_slice_index",
    "models.value_label",
    "survival.round_time_ticks",
    "evaluation.calibration_bin_count",
    "deep.network_weights_note",
    "nomogram.outcome_axis_label",
    "nomogram.variable_display_name",
    "selection.wrap_feature_name",
}

def _public_functions() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(helpers.figures.__path__):
        module = importlib.import_module(f"helpers.figures.{info.name}")
        for name, obj in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and obj.__module__ == module.__name__:
                names.append(f"{info.name}.{name}")
    return sorted(names)


def _binary_cohort(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    a = 1 / (1 + np.exp(-(1.5 * y + rng.normal(0, 1, n) - 0.75)))
    b = 1 / (1 + np.exp(-(0.8 * y + rng.normal(0, 1, n) - 0.4)))
    return y, {"Radiomics (logistic)": a, "Clinical-radiomics nomogram": b}


def _net_benefit(y, p, thresholds):
    n = len(y)
    rows = [((p >= t) & (y == 1)).sum() / n - ((p >= t) & (y == 0)).sum() / n * t / (1 - t) for t in thresholds]
    return pd.DataFrame({"threshold": thresholds, "net_benefit": rows})


def _roc():
    from helpers.figures.evaluation import roc_figure

    y, s = _binary_cohort()
    return roc_figure(y, s, {"Radiomics (logistic)": "AUC 0.78, 95% CI 0.66-0.90"}, title="ROC: external test (n = 60)")


def _roc_panels():
    from helpers.figures.evaluation import roc_panels_figure

    panels = {c: (*_binary_cohort(40 + 10 * i, i), None) for i, c in enumerate(["Training", "Validation", "Test"])}
    return roc_panels_figure(panels)


def _calibration():
    from helpers.figures.evaluation import calibration_figure

    y, s = _binary_cohort(80)
    return calibration_figure(y, s, title="Calibration: training")


def _decision_curve():
    from helpers.figures.evaluation import decision_curve_figure

    y, s = _binary_cohort(80)
    t = np.round(np.arange(0.01, 1.0, 0.01), 2)
    prevalence = y.mean()
    treat_all = pd.DataFrame({"threshold": t, "net_benefit": prevalence - (1 - prevalence) * t / (1 - t)})
    return decision_curve_figure({m: _net_benefit(y, p, t) for m, p in s.items()}, treat_all, title="Decision curves: test")


def _forest():
    from helpers.figures.evaluation import forest_figure

    table = pd.DataFrame({
        "panel": ["Radiomics (logistic) | training"] * 3 + ["Radiomics (logistic) | external test"] * 2,
        "subgroup": ["Philips Medical Systems / MIM Software", "SIEMENS / MIM Software", "GE MEDICAL SYSTEMS", "uMR 560", "uMR 570"],
        "auc": [0.83, 0.67, np.nan, 0.74, 0.69], "auc_lower": [0.51, 0.20, np.nan, 0.55, 0.50], "auc_upper": [1.0, 1.0, np.nan, 0.91, 0.88],
        "n": [8, 8, 2, 28, 20], "events": [2, 3, 0, 12, 9],
    })  # fmt: skip
    return forest_figure(table, estimate="auc", lower="auc_lower", upper="auc_upper", group="panel", xlabel="AUC (95% CI)")


def _radscore():
    from helpers.figures.evaluation import radscore_distribution_figure

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"radscore": rng.normal(0, 1, 90), "outcome": np.r_[[0, 1] * 45], "cohort": ["Training"] * 50 + ["Test"] * 40})
    return radscore_distribution_figure(df, threshold=0.2, p_values={"Training": 0.0004, "Test": 0.03})


def _weights():
    from helpers.figures.evaluation import feature_weight_figure

    w = pd.Series({"wavelet-LLH_glszm_SizeZoneNonUniformityNormalized": 0.41, "original_shape_Sphericity": -0.22,
                   "log-sigma-3-0-mm-3D_glrlm_GrayLevelNonUniformityNormalized": 0.15, "original_firstorder_Skewness": -0.05})  # fmt: skip
    return feature_weight_figure(w, title="Rad-score feature weights")


def _dice():
    from helpers.figures.evaluation import dice_figure

    rng = np.random.default_rng(4)
    n = 20
    df = pd.DataFrame({"patient": [f"P{i:02d}" for i in range(n)] * 2, "label": ["kidney"] * n + ["tumour"] * n,
                       "cohort": (["internal"] * 12 + ["external"] * 8) * 2,
                       "dice": np.clip(np.r_[rng.normal(0.95, 0.02, n), rng.normal(0.8, 0.1, n)], 0, 1)})  # fmt: skip
    return dice_figure(df)


def _grid() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    blocks = ["CT / tumour", "CT / ring5mm", "PET / tumour", "MR_T1 / habitats"]
    algorithms = ["logistic", "svm", "random_forest", "extra_trees", "xgboost", "lightgbm", "catboost"]
    rows = [{"block_label": b, "algorithm_label": a, "cv_auc_mean": rng.uniform(0.25, 0.95), "cv_auc_sd": rng.uniform(0.05, 0.2),
             "auc_external_test": rng.uniform(0.3, 1.0)} for b in blocks for a in algorithms]  # fmt: skip
    return pd.DataFrame(rows)


def _heatmap():
    from helpers.figures.models import auc_heatmap_figure

    return auc_heatmap_figure(_grid(), value="auc_external_test", title="Held-out AUC (external test)")


def _km():
    from helpers.figures.survival import km_figure
    from helpers.learning.survival import km_by_group

    rng = np.random.default_rng(6)
    n = 60
    group = np.where(np.arange(n) < 30, "Low risk", "High risk")
    time = np.round(rng.exponential(np.where(group == "Low risk", 60.0, 25.0)), 2).clip(0.5, 59.3)
    event = (rng.uniform(size=n) < 0.6).astype(int)
    km = km_by_group(time, event, group, order=["Low risk", "High risk"])
    return km_figure(km, title="Cox model: training", time_label="Time (months)")


def _volume(tmp_path, name: str, array: np.ndarray) -> str:
    from tests.conftest import write_volume

    return str(write_volume(tmp_path / f"{name}.nii.gz", array))


def _image_and_mask(tmp_path, i: int):
    rng = np.random.default_rng(i)
    image = rng.normal(40, 10, (10, 32, 32)).astype(np.float32)
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[3:7, 10:22, 9:20] = 1
    return _volume(tmp_path, f"img{i}", image), _volume(tmp_path, f"mask{i}", mask)


def _contour_montage(tmp_path):
    from helpers.figures.images import contour_montage

    items = [(f"P{i:02d}", *_image_and_mask(tmp_path, i), None) for i in range(6)]
    return contour_montage(items, title="CT, training")


def _cohort_montages(tmp_path):
    from helpers.data.manifest import load_study
    from helpers.figures.images import cohort_montages
    from helpers.settings.study import load_config
    from tests.conftest import tiny_study

    study = tiny_study.__wrapped__(tmp_path)
    cfg = load_config(study / "study.yaml")
    manifest, _ = load_study(cfg)
    return [fig for _, fig in cohort_montages(manifest[manifest["cohort"] == "train"], cfg, "train")]


def _habitat_overlay(tmp_path):
    from helpers.figures.images import habitat_overlay

    items = []
    for i in range(4):
        image, _mask = _image_and_mask(tmp_path, i)
        habitats = np.zeros((10, 32, 32), np.uint8)
        habitats[3:7, 10:22, 9:14], habitats[3:7, 10:22, 14:20] = 1, 2
        items.append((f"P{i:02d}", image, _volume(tmp_path, f"hab{i}", habitats)))
    return habitat_overlay(items, k=2, title="Habitats (k = 2)")


def _combat():
    from helpers.figures.harmonization import combat_diagnostics_figure

    rng = np.random.default_rng(7)
    batch = pd.Series(np.repeat(["Scanner A", "Scanner B", "Scanner C"], 20), name="scanner")
    before = pd.DataFrame({"original_firstorder_Mean": rng.normal(0, 1, 60) + np.repeat([0, 2, 4], 20),
                           "original_glcm_Contrast": rng.normal(0, 1, 60) * np.repeat([1, 2, 3], 20)})  # fmt: skip
    after = (before - before.groupby(batch.to_numpy()).transform("mean")) / before.groupby(batch.to_numpy()).transform("std")
    return combat_diagnostics_figure(before, after, batch, list(before.columns))


def _nomogram():
    from helpers.figures.nomogram import nomogram_figure
    from helpers.learning.nomogram import NomogramModel

    rng = np.random.default_rng(8)
    n = 120
    X = pd.DataFrame({"rad_score": rng.normal(0, 1, n), "age": rng.normal(60, 10, n), "grade": rng.choice(["G1", "G2", "G3"], n)})
    y = pd.Series((X["rad_score"] + rng.normal(0, 1, n) > 0).astype(int))
    return nomogram_figure(NomogramModel().fit(X, y), outcome_label="Probability of high grade", title="Nomogram")


def _explanation():
    from sklearn.linear_model import LogisticRegression

    from helpers.learning.explain import shap_explanation

    rng = np.random.default_rng(9)
    X = pd.DataFrame(
        rng.normal(size=(60, 6)), columns=[f"original_glcm_Feature{i}" for i in range(6)], index=[f"P{i:02d}" for i in range(60)]
    )
    y = (X.iloc[:, 0] + rng.normal(0, 1, 60) > 0).astype(int)
    model = LogisticRegression().fit(X.iloc[:40], y.iloc[:40])
    return shap_explanation(model, X.iloc[:40], X.iloc[40:])


def _lasso():
    from helpers.learning.selection import LassoSelector

    rng = np.random.default_rng(10)
    X = pd.DataFrame(rng.normal(size=(80, 12)), columns=[f"original_firstorder_Feature{i}" for i in range(12)])
    y = pd.Series((X.iloc[:, 0] - X.iloc[:, 1] + rng.normal(0, 1, 80) > 0).astype(int))
    return LassoSelector(Cs=10, cv=3).fit(X, y)


def _gradcam():
    from helpers.figures.deep import gradcam_figure

    rng = np.random.default_rng(11)
    inputs = rng.normal(0, 1, (4, 3, 32, 32)).astype(np.float32)
    maps = rng.uniform(0, 1, (4, 32, 32)).astype(np.float32)
    return gradcam_figure(inputs, maps, ["P01", "P02", "P03", "P04"], title="Grad-CAM, layer3")


def _sr_comparison():
    import SimpleITK as sitk

    from helpers.figures.deep import sr_comparison_figure

    rng = np.random.default_rng(12)
    hr = rng.normal(100, 20, (16, 32, 32)).astype(np.float32)
    lr = hr[::4]
    return sr_comparison_figure(sitk.GetImageFromArray(lr), sitk.GetImageFromArray(hr), sitk.GetImageFromArray(hr), slice_index=16, axis="coronal",
                                title="Super-resolution")  # fmt: skip


def _loss_curve():
    from helpers.figures.deep import loss_curve_figure

    history = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "train_loss": [0.9, 0.7, 0.6, 0.5, 0.45], "val_loss": [0.95, 0.8, 0.7, 0.72, 0.75],
                            "val_auc": [0.6, 0.7, 0.75, 0.74, 0.73]})  # fmt: skip
    return loss_curve_figure(history, title="Deep classifier")


def _sr_training_curve():
    from helpers.figures.deep import sr_training_curve_figure

    e = np.arange(1, 7)
    history = pd.DataFrame({"epoch": e, "phase": ["warmup"] * 2 + ["gan"] * 4, "g_l1": 0.2 / e, "g_gradient": 0.1 / e, "g_perceptual": 0.3 / e,
                            "g_adversarial": [np.nan, np.nan, 0.7, 0.69, 0.68, 0.7], "d_loss": [np.nan, np.nan, 0.69, 0.68, 0.67, 0.69],
                            "val_psnr": 25 + e, "val_psnr_trilinear": np.full(6, 26.0), "val_ssim": 0.7 + 0.02 * e,
                            "val_ssim_trilinear": np.full(6, 0.75)})  # fmt: skip
    return sr_training_curve_figure(history, title="SR training")


#: One case per figure function: name -> builder (tmp_path -> figure or list of figures).

def _radscore_by_cohort():
    from helpers.figures.selection import radscore_distribution_by_cohort

    rng = np.random.default_rng(2)
    scores = pd.DataFrame({"radscore": rng.normal(size=60), "outcome": np.tile([0, 1], 30),
                           "cohort": np.repeat(["training", "external_test"], [40, 20])})  # fmt: skip
    return radscore_distribution_by_cohort(scores, training_cohorts=["training"], p_values={"training": 0.01, "external_test": 0.3})

CASES = {
    "evaluation.roc_figure": lambda tmp: _roc(),
    "evaluation.roc_panels_figure": lambda tmp: _roc_panels(),
    "evaluation.calibration_figure": lambda tmp: _calibration(),
    "evaluation.decision_curve_figure": lambda tmp: _decision_curve(),
    "evaluation.forest_figure": lambda tmp: _forest(),
    "evaluation.radscore_distribution_figure": lambda tmp: _radscore(),
    "selection.radscore_distribution_by_cohort": lambda tmp: _radscore_by_cohort(),
    "evaluation.feature_weight_figure": lambda tmp: _weights(),
    "evaluation.dice_figure": lambda tmp: _dice(),
    "models.auc_heatmap_figure": lambda tmp: _heatmap(),
    "survival.km_figure": lambda tmp: _km(),
    "images.contour_montage": _contour_montage,
    "images.cohort_montages": _cohort_montages,
    "images.habitat_overlay": _habitat_overlay,
    "harmonization.combat_diagnostics_figure": lambda tmp: _combat(),
    "nomogram.nomogram_figure": lambda tmp: _nomogram(),
    "shap.shap_beeswarm_figure": lambda tmp: __import__("helpers.figures.shap", fromlist=["x"]).shap_beeswarm_figure(
        _explanation(), max_display=5
    ),
    "shap.shap_bar_figure": lambda tmp: __import__("helpers.figures.shap", fromlist=["x"]).shap_bar_figure(_explanation(), max_display=5),
    "shap.shap_waterfall_figure": lambda tmp: __import__("helpers.figures.shap", fromlist=["x"]).shap_waterfall_figure(
        _explanation(), 0, max_display=5
    ),
    "selection.lasso_path_figure": lambda tmp: __import__("helpers.figures.selection", fromlist=["x"]).lasso_path_figure(_lasso()),
    "selection.lasso_cv_figure": lambda tmp: __import__("helpers.figures.selection", fromlist=["x"]).lasso_cv_figure(_lasso()),
    "selection.coefficient_figure": lambda tmp: __import__("helpers.figures.selection", fromlist=["x"]).coefficient_figure(_lasso().coef_),
    "deep.gradcam_figure": lambda tmp: _gradcam(),
    "deep.sr_comparison_figure": lambda tmp: _sr_comparison(),
    "deep.loss_curve_figure": lambda tmp: _loss_curve(),
    "deep.sr_training_curve_figure": lambda tmp: _sr_training_curve(),
}


def _case_params():
    params = []
    for name in _public_functions():
        if name in NOT_FIGURES:
            continue
        params.append(pytest.param(name, id=name))
    return params


def test_every_figure_function_has_a_case():
    figures = [n for n in _public_functions() if n not in NOT_FIGURES]
    assert sorted(CASES) == figures, "add a case to CASES (or the name to NOT_FIGURES) for every public function of helpers.figures"


@pytest.mark.parametrize("name", _case_params())
def test_figure_passes_the_figure_check(name, tmp_path):
    if name not in CASES:
        pytest.fail(f"no case for the figure function {name}: add one to CASES")
    built = CASES[name](tmp_path)
    figures = built if isinstance(built, list) else [built]
    assert figures
    for fig in figures:
        assert figure_problems(fig) == []
        width_mm = fig.get_figwidth() * 25.4
        assert width_mm == pytest.approx(SINGLE_COLUMN_MM, abs=0.1) or width_mm == pytest.approx(DOUBLE_COLUMN_MM, abs=0.1), (
            f"{name}: {width_mm:.0f} mm wide, not a journal column (85 mm) or page (175 mm)"
        )


# --------------------------------------------------------------------------- part 4: the reviewer's defects stay fixed


def test_roc_is_square_with_round_ticks():
    fig = _roc()
    ax = fig.axes[0]
    fig.canvas.draw()
    box = ax.get_window_extent()
    assert box.width == pytest.approx(box.height, rel=0.02)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert box.width / fig.bbox.width > 0.7  # the plot fills the column, not a corner


def test_forest_axis_shows_every_ci():
    fig = _forest()
    ax = fig.axes[0]
    fig.canvas.draw()
    mm_per_px = 25.4 / fig.dpi
    assert ax.get_window_extent().width * mm_per_px >= 60  # a readable axis, not a sliver
    for line in (ln for ln in ax.get_lines() if ln.get_gid() == "forest:ci"):
        (x0, _), (x1, _) = ax.transData.transform(np.column_stack(line.get_data()))
        assert (x1 - x0) * mm_per_px >= 2  # every CI visible
    lo, hi = ax.get_xlim()
    assert lo < 0.2 and hi > 1.0 and len(ax.get_xticks()) >= 4


def test_km_ticks_are_round_months_with_numbers_at_risk():
    from helpers.figures.survival import round_time_ticks

    assert list(round_time_ticks(59.3, "month")) == [0, 12, 24, 36, 48, 60]
    assert list(round_time_ticks(23.7, "month")) == [0, 6, 12, 18, 24]
    assert list(round_time_ticks(8.0, "month")) == [0, 2, 4, 6, 8]
    assert list(round_time_ticks(1100, "day")) == [0, 365, 730, 1095, 1460]  # yearly: 180-day steps would need 8 ticks
    assert list(round_time_ticks(52, "week")) == [0, 13, 26, 39, 52]
    with pytest.raises(ValueError, match="positive"):
        round_time_ticks(0.0)
    fig = _km()
    ax, table = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "12", "24", "36", "48", "60"]
    assert table.get_title(loc="left") == "Number at risk"
    assert {round(t.get_position()[0]) for t in table.texts} == {0, 12, 24, 36, 48, 60}
    fig.canvas.draw()
    assert table.get_window_extent().y1 < ax.get_window_extent().y0  # the table is under the plot


def test_heatmap_full_scale_never_clips_and_has_a_human_colour_bar_label():
    from helpers.figures.models import auc_heatmap_figure, value_label

    grid = _grid()
    fig = auc_heatmap_figure(grid, value="auc_external_test")
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 1.0
    assert fig.axes[1].get_ylabel() == "AUC, external test cohort" == value_label("auc_external_test")
    assert value_label("cv_auc_mean") == "Cross-validated AUC (mean over folds)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:3] == ["Logistic regression", "SVM", "Random forest"]
    assert len(fig.axes[0].texts) == len(grid)  # every value annotated
    odd = grid.assign(cv_auc_mean=grid["cv_auc_mean"] * 1.2)  # values above 1 widen the scale
    mesh = auc_heatmap_figure(odd, value="cv_auc_mean").axes[0].collections[0]
    assert mesh.norm.vmax == pytest.approx(odd["cv_auc_mean"].max())
