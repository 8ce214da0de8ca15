"""Every figure of the image, harmonisation, nomogram, SHAP, selection and deep-learning modules is publishable.

Each public figure function is called on small synthetic inputs and the figure is checked with
:func:`helpers.figures.check.figure_problems` (no overlapping text, no text outside the canvas, fonts of at
least 7 pt at print size, no squashed axes); image grids are also checked for titles lying over another
panel's image. Each figure must be built at a journal width (85 or 175 mm). Content the journal reviewer
asked for is asserted too: the nomogram names the endpoint, Rad-score panels say whose scores they show, the
Grad-CAM figure says where the network's weights came from, ComBat panels have a y label, and SHAP labels
keep whole feature names.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from matplotlib.figure import Figure

from helpers.figures.check import figure_problems
from helpers.figures.style import DOUBLE_COLUMN_MM, MM_PER_INCH, SINGLE_COLUMN_MM

#: Long radiomics names, as the real studies have them (up to 66 characters).
LONG_NAMES = [
    "MR_T1_ring5mm_wavelet-LLH_glrlm_ShortRunHighGrayLevelEmphasis",
    "PET_habitat1_wavelet-LHL_gldm_SmallDependenceHighGrayLevelEmphasis",
    "CT_ring5mm_squareroot_firstorder_RobustMeanAbsoluteDeviation",
    "PET_habitat4_log-sigma-5-0-mm-3D_firstorder_Median",
    "CT_tumour_wavelet-HHL_glcm_Correlation",
    "MR_T1_tumour_original_shape_Sphericity",
]


def _width_mm(fig: Figure) -> float:
    return float(fig.get_figwidth() * MM_PER_INCH)


def _titles_over_other_images(fig: Figure) -> list[str]:
    """Axes titles that lie over the image of another axes (the habitat-map defect)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    images = [(ax, ax.get_window_extent(renderer)) for ax in fig.axes if ax.images]
    found = []
    for ax in fig.axes:
        if not ax.get_title():
            continue
        box = ax.title.get_window_extent(renderer)
        for other, area in images:
            if other is not ax and box.overlaps(area) and min(box.y1, area.y1) - max(box.y0, area.y0) > 0.5:
                found.append(f"{ax.get_title()!r} over the image of {other.get_title()!r}")
    return found


def _assert_publishable(fig: Figure, width: str) -> None:
    try:
        assert figure_problems(fig) == []
        expected = {"single": SINGLE_COLUMN_MM, "double": DOUBLE_COLUMN_MM}[width]
        assert _width_mm(fig) == pytest.approx(expected, abs=0.5)
    finally:
        plt.close(fig)


# -- images ---------------------------------------------------------------------------------------------
def _write(path: Path, arr: np.ndarray, spacing: tuple[float, float, float]) -> str:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


@pytest.fixture(scope="module")
def image_items(tmp_path_factory):
    """Five patients with tumours of different shapes and grids (one wide, one tall, anisotropic pixels)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    shapes = [((12, 40, 40), (1.0, 1.0, 3.0)), ((10, 24, 60), (0.8, 0.8, 3.0)), ((14, 64, 30), (1.0, 1.0, 2.5)),
              ((8, 30, 30), (0.7, 1.4, 4.0)), ((12, 40, 40), (1.0, 1.0, 3.0))]  # fmt: skip
    items = []
    for i, (shape, spacing) in enumerate(shapes):
        arr = rng.normal(40, 20, size=shape).astype(np.float32)
        mask = np.zeros(shape, dtype=np.uint8)
        z, y, x = (s // 2 for s in shape)
        mask[z - 2 : z + 3, y - shape[1] // 4 : y + shape[1] // 4, x - shape[2] // 4 : x + shape[2] // 4] = 1
        habitats = mask * (1 + (np.indices(shape)[2] > x)).astype(np.uint8)  # two habitats: left and right half
        pid = f"PAT-{i:03d}"
        items.append((pid, _write(root / pid / "image.nii.gz", arr, spacing), _write(root / pid / "mask.nii.gz", mask, spacing),
                      _write(root / pid / "habitats.nii.gz", habitats, spacing)))  # fmt: skip
    return items


def test_contour_montage_is_publishable(image_items):
    from helpers.figures.images import contour_montage

    fig = contour_montage([(pid, img, msk, None) for pid, img, msk, _ in image_items], columns=4, title="CT, training cohort")
    assert _titles_over_other_images(fig) == []
    assert next(ax.get_title() for ax in fig.axes if ax.get_title()) == "PAT-000\nz = 6"
    _assert_publishable(fig, "double")


def test_contour_montage_with_many_columns_keeps_titles_apart(image_items):
    from helpers.figures.images import contour_montage

    items = [(f"{pid}-LONG-IDENTIFIER", img, msk, None) for pid, img, msk, _ in image_items] * 3
    fig = contour_montage(items, columns=12)
    assert _titles_over_other_images(fig) == []
    _assert_publishable(fig, "double")


def test_cohort_montages_are_publishable(tiny_study):
    from helpers.data.manifest import load_study
    from helpers.figures.images import cohort_montages
    from helpers.settings.study import load_config

    cfg = load_config(tiny_study / "study.yaml")
    manifest, _ = load_study(cfg)
    for _, fig in cohort_montages(manifest[manifest["cohort"] == "train"], cfg, "train"):
        assert _titles_over_other_images(fig) == []
        _assert_publishable(fig, "double")


def test_habitat_overlay_titles_stay_off_the_images_above(image_items):
    from helpers.figures.images import habitat_overlay

    fig = habitat_overlay([(pid, img, hab) for pid, img, _, hab in image_items], k=2, columns=3,
                          title="Habitats (K=2, fitted on the training cohort) over CT")  # fmt: skip
    assert _titles_over_other_images(fig) == []
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["habitat 1", "habitat 2"]
    _assert_publishable(fig, "double")


# -- harmonisation ----------------------------------------------------------------------------------------
def test_combat_diagnostics_is_publishable_and_has_a_y_label():
    from helpers.figures.harmonization import combat_diagnostics_figure

    rng = np.random.default_rng(1)
    idx = [f"P{i:02d}" for i in range(40)]
    batch = pd.Series(np.repeat(["GE Signa HDxt", "Siemens Avanto", "Philips Ingenia"], [14, 13, 13]), index=idx, name="MR_T1 manufacturer")
    before = pd.DataFrame(rng.normal(size=(40, 3)) + (batch == "GE Signa HDxt").to_numpy()[:, None], index=idx, columns=LONG_NAMES[:3])
    after = before - before.groupby(batch).transform("mean")
    fig = combat_diagnostics_figure(before, after, batch, LONG_NAMES[:3])
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes[::2]] == ["Feature value"] * 3
    assert axes[-1].get_xlabel() == "MR_T1 manufacturer"
    assert [t.get_text() for ax in axes for t in ax.texts if t.get_gid() == "panel-label"] == list("ABCDEF")
    _assert_publishable(fig, "double")


# -- nomogram -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nomogram_model():
    from helpers.learning.nomogram import NomogramModel

    rng = np.random.default_rng(2)
    n = 150
    X = pd.DataFrame({"rad_score": rng.normal(size=n), "age": rng.normal(60, 10, n).round(), "grade": rng.choice(["G1", "G2", "G3"], n)})
    logit = 1.2 * X["rad_score"] + 0.03 * (X["age"] - 60) + 0.8 * (X["grade"] == "G3") - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return NomogramModel(categorical=["grade"]).fit(X, y)


@pytest.mark.parametrize(("endpoint", "expected"), [("lung_metastasis", "Probability of lung\nmetastasis"), ("label", "Predicted probability\nof the outcome")])
def test_nomogram_is_publishable_and_names_the_endpoint(nomogram_model, endpoint, expected):
    from helpers.figures.nomogram import nomogram_figure

    fig = nomogram_figure(nomogram_model, endpoint=endpoint)
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows == ["Points", "Rad-score", "Age", "Grade", "Total points", expected]
    assert not any("label" in r for r in rows)
    _assert_publishable(fig, "double")


def test_outcome_axis_label():
    from helpers.figures.nomogram import outcome_axis_label

    assert outcome_axis_label("lung_metastasis") == "Probability of lung metastasis"
    assert outcome_axis_label("LNM") == "Probability of LNM"
    for generic in ("label", "Outcome", "y", None, ""):
        assert outcome_axis_label(generic) == "Predicted probability of the outcome"


# -- SHAP -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def explanation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from helpers.learning.explain import shap_explanation

    rng = np.random.default_rng(3)
    names = LONG_NAMES + [f"CT_tumour_original_glcm_feature{i}" for i in range(7)]
    X = pd.DataFrame(rng.normal(size=(60, len(names))), columns=names, index=[f"STS_{i:03d}" for i in range(60)])
    y = (X.iloc[:, 0] - X.iloc[:, 1] + rng.normal(size=60) > 0).astype(int)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]).fit(X.iloc[:45], y.iloc[:45])
    return shap_explanation(pipe, X.iloc[:45], X, random_state=0)


def _whole_names(fig: Figure) -> set[str]:
    return {t.get_text().replace("\n", "") for t in fig.axes[0].get_yticklabels()}


def test_shap_beeswarm_is_publishable_and_keeps_whole_names(explanation):
    from helpers.figures.shap import shap_beeswarm_figure

    fig = shap_beeswarm_figure(explanation)
    assert set(LONG_NAMES[:2]) <= _whole_names(fig)
    _assert_publishable(fig, "double")


def test_shap_bar_is_publishable_and_keeps_whole_names(explanation):
    from helpers.figures.shap import shap_bar_figure

    fig = shap_bar_figure(explanation)
    assert set(LONG_NAMES[:2]) <= _whole_names(fig)
    _assert_publishable(fig, "double")


def test_shap_waterfall_is_publishable_and_keeps_whole_labels(explanation):
    from matplotlib.patches import FancyArrow

    from helpers.figures.shap import shap_waterfall_figure

    fig = shap_waterfall_figure(explanation, "STS_050")
    ax = fig.axes[0]
    labels = [t.get_text().replace("\n", "") for t in ax.get_yticklabels()]
    assert len(labels) == 10 and labels[-1] == f"{len(explanation.feature_names) - 9} other features"
    for name in LONG_NAMES[:2]:
        assert any(label.startswith(f"{name} = ") for label in labels)  # never cut
    assert sum(isinstance(p, FancyArrow) for p in ax.patches) == 10
    row = explanation[50]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0].startswith("E[f(X)] = ") and legend[1].startswith("f(x) = ")
    out = float(legend[1].split(" = ")[1].split()[0].replace("\N{MINUS SIGN}", "-"))
    assert out == pytest.approx(float(row.base_values) + float(row.values.sum()), abs=1e-3)
    _assert_publishable(fig, "double")


# -- selection -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lasso():
    from helpers.learning.selection import LassoSelector

    rng = np.random.default_rng(4)
    names = LONG_NAMES + [f"CT_tumour_wavelet-LLL_glszm_Zone{i}" for i in range(14)]
    X = pd.DataFrame(rng.normal(size=(80, len(names))), columns=names)
    y = (X.iloc[:, 0] + 0.8 * X.iloc[:, 1] - 0.6 * X.iloc[:, 2] + rng.normal(size=80) > 0).astype(int)
    return LassoSelector(cv=5, Cs=20, random_state=0).fit(X, y)


def test_lasso_path_is_publishable(lasso):
    from helpers.figures.selection import lasso_path_figure

    _assert_publishable(lasso_path_figure(lasso), "double")


def test_lasso_cv_is_publishable(lasso):
    from helpers.figures.selection import lasso_cv_figure

    _assert_publishable(lasso_cv_figure(lasso), "single")


def test_coefficient_figure_is_publishable(lasso):
    from helpers.figures.selection import coefficient_figure

    fig = coefficient_figure(lasso.coef_)
    assert {t.get_text().replace("\n", "") for t in fig.axes[0].get_yticklabels()} == set(lasso.selected_features_)
    _assert_publishable(fig, "double")


def test_radscore_distribution_says_training_scores_are_in_sample():
    from helpers.figures.selection import radscore_distribution_by_cohort

    rng = np.random.default_rng(5)
    scores = pd.DataFrame({"radscore": rng.normal(size=60), "outcome": np.tile([0, 1], 30),
                           "cohort": np.repeat(["training", "external_test"], [40, 20])})  # fmt: skip
    fig = radscore_distribution_by_cohort(scores, training_cohorts=["training"], p_values={"training": 0.0004, "external_test": 0.21},
                                          cohorts=["training", "external_test"])  # fmt: skip
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert titles[0].startswith("training (in-sample)") and "p < 0.001" in titles[0]
    assert titles[1].startswith("external test (held out)") and "p = 0.210" in titles[1]
    try:
        assert figure_problems(fig) == []
    finally:
        plt.close(fig)


def test_wrap_feature_name_keeps_every_character():
    from helpers.figures.selection import wrap_feature_name

    for name in [*LONG_NAMES, "x" * 120, "short"]:
        wrapped = wrap_feature_name(name)
        assert wrapped.replace("\n", "") == name
        assert max(len(line) for line in wrapped.split("\n")) <= 45


# -- deep learning ---------------------------------------------------------------------------------------------
def test_loss_curve_is_publishable():
    from helpers.figures.deep import loss_curve_figure

    history = pd.DataFrame({"epoch": range(1, 16), "train_loss": np.linspace(0.7, 0.2, 15), "val_loss": np.linspace(0.72, 0.45, 15)})
    _assert_publishable(loss_curve_figure(history, title="2.5D classifier (MR)"), "single")


@pytest.mark.parametrize(("pretrained", "trained", "start"), [(False, False, "Untrained backbone"), (False, True, "Network trained from random"),
                                                               (True, False, "Pretrained backbone (frozen)"), (True, True, "Pretrained backbone fine-tuned")])
def test_gradcam_figure_states_the_network_weights(pretrained, trained, start):
    from helpers.figures.deep import gradcam_figure, network_weights_note

    rng = np.random.default_rng(6)
    inputs = rng.random((5, 3, 64, 64))
    maps = rng.random((5, 64, 64))
    note = network_weights_note(pretrained=pretrained, backbone_trained=trained)
    assert note.startswith(start)
    fig = gradcam_figure(inputs, maps, [f"SIM_{i:03d}" for i in range(5)], title="Grad-CAM (MR, layer4)", weights_note=note)
    assert fig._supxlabel.get_text().replace("\n", " ") == note
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [f"SIM_{i:03d}" for i in range(5)]
    _assert_publishable(fig, "double")


def test_sr_training_curve_is_publishable():
    from helpers.figures.deep import sr_training_curve_figure

    e = np.arange(1, 13)
    history = pd.DataFrame({"epoch": e, "phase": ["warmup"] * 3 + ["gan"] * 9, "g_l1": np.linspace(0.2, 0.05, 12),
                            "g_gradient": np.linspace(0.3, 0.1, 12), "g_perceptual": np.linspace(0.5, 0.2, 12),
                            "g_adversarial": [np.nan] * 3 + list(np.linspace(0.7, 0.6, 9)), "d_loss": [np.nan] * 3 + list(np.linspace(1.3, 1.1, 9)),
                            "val_psnr": 25 + np.log(e), "val_psnr_trilinear": np.full(12, 25.5), "val_ssim": 0.8 + 0.01 * np.log(e),
                            "val_ssim_trilinear": np.full(12, 0.8)})  # fmt: skip
    fig = sr_training_curve_figure(history, title="Super-resolution training (MR)")
    assert [ax.get_title() for ax in fig.axes] == ["losses", "validation PSNR", "validation SSIM"]
    _assert_publishable(fig, "double")


@pytest.mark.parametrize("axis", ["axial", "coronal"])
def test_sr_comparison_is_publishable(axis):
    from helpers.figures.deep import sr_comparison_figure

    zz, yy, xx = np.mgrid[:16, :32, :32]
    hr_arr = (100 * np.exp(-((zz - 8) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2) / 40.0) + np.random.default_rng(7).normal(0, 2, zz.shape)).astype(np.float32)
    hr = sitk.GetImageFromArray(hr_arr)
    lr = sitk.GetImageFromArray(hr_arr[::2].copy())
    lr.SetSpacing((1.0, 1.0, 2.0))
    fig = sr_comparison_figure(lr, hr, hr, 8, axis=axis, title="STS_003")
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["LR (nearest)", "trilinear", "SR", "HR"]
    _assert_publishable(fig, "double")
