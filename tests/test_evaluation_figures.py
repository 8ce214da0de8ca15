"""Evaluation figures: the plotted data equal independent computations; legends, limits, determinism."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from helpers.figures import evaluation as ef
from helpers.figures.style import PALETTE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _cohort(n: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = 1 / (1 + np.exp(-(shift * y + rng.normal(0, 1, n) - shift / 2)))
    b = 1 / (1 + np.exp(-(0.5 * shift * y + rng.normal(0, 1, n) - shift / 4)))
    return y, {"Radiomics": a, "Clinical": b}


def _line(ax, gid: str):
    found = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line with gid {gid!r}, got {len(found)}"
    return found[0]


def _net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    n = len(y)
    nb = [((p >= t) & (y == 1)).sum() / n - ((p >= t) & (y == 0)).sum() / n * t / (1 - t) for t in thresholds]
    return pd.DataFrame({"threshold": thresholds, "net_benefit": nb})


# --------------------------------------------------------------------------- ROC


def test_roc_lines_are_sklearn_points_with_legend_labels():
    y, scores = _cohort(120, 1)
    fig = ef.roc_figure(y, scores, labels={"Radiomics": "AUC 0.78, 95% CI 0.62-0.93"}, title="Training")
    (ax,) = fig.axes
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        line = _line(ax, f"roc:{name}")
        np.testing.assert_array_equal(line.get_xdata(), fpr)
        np.testing.assert_array_equal(line.get_ydata(), tpr)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["Radiomics (AUC 0.78, 95% CI 0.62-0.93)", f"Clinical (AUC {roc_auc_score(y, scores['Clinical']):.3f})"]
    chance = _line(ax, "roc:chance")
    assert list(chance.get_xdata()) == [0, 1] and list(chance.get_ydata()) == [0, 1]
    assert ax.get_aspect() == 1.0 and ax.get_xlim() == ax.get_ylim()
    assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 1
    # the legend is under the axes (never over the curves)
    fig.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0


def test_roc_rejects_single_class_and_misaligned_scores():
    with pytest.raises(ValueError, match="single class"):
        ef.roc_figure(np.ones(10), {"m": np.linspace(0, 1, 10)})
    with pytest.raises(ValueError, match="shape"):
        ef.roc_figure(np.r_[0, 1, 0, 1], {"m": np.linspace(0, 1, 5)})


def test_roc_panels_keep_one_colour_per_model():
    y1, s1 = _cohort(100, 2)
    y2, s2 = _cohort(60, 3)
    y3, s3 = _cohort(50, 4)
    panels = {
        "Training": (y1, s1, None),
        "Validation": (y2, {"Clinical": s2["Clinical"], "Radiomics": s2["Radiomics"]}, None),  # other order
        "Test": (y3, {"Clinical": s3["Clinical"]}, {"Clinical": "AUC 0.70, 95% CI 0.55-0.85"}),
    }
    fig = ef.roc_panels_figure(panels)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["Training (n = 100)", "Validation (n = 60)", "Test (n = 50)"]
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid().startswith("roc:") and line.get_gid() != "roc:chance":
                colours.setdefault(line.get_gid(), set()).add(to_hex(line.get_color()))
    assert colours == {"roc:Radiomics": {PALETTE[0].lower()}, "roc:Clinical": {PALETTE[1].lower()}}
    fpr, tpr, _ = roc_curve(y2, s2["Radiomics"])
    np.testing.assert_array_equal(_line(fig.axes[1], "roc:Radiomics").get_xdata(), fpr)
    # three panels share a 175 mm page: the legend texts are wrapped to the panel width, nothing dropped
    assert " ".join(fig.axes[2].get_legend().get_texts()[0].get_text().split()) == "Clinical (AUC 0.70, 95% CI 0.55-0.85)"
    assert [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "panel-label"] == ["A", "B", "C"]
    assert fig.get_figwidth() * 25.4 == pytest.approx(175.0)


# --------------------------------------------------------------------------- calibration


def test_calibration_points_equal_quantile_bin_means_with_wilson_ci():
    y, probs = _cohort(200, 5)
    fig = ef.calibration_figure(y, probs, n_bins=10)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    for name, p in probs.items():
        bins = pd.qcut(p, 10, labels=False)
        grouped = pd.DataFrame({"p": p, "y": y, "bin": bins}).groupby("bin")
        expected = grouped.agg(p=("p", "mean"), y=("y", "mean"), n=("y", "size"), k=("y", "sum"))
        line = _line(ax, f"calibration:bins:{name}")
        np.testing.assert_allclose(line.get_xdata(), expected["p"], rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), expected["y"], rtol=1e-12)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")  # a second, independent implementation
        np.testing.assert_allclose(line.get_xdata(), prob_pred, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), prob_true, rtol=1e-12)
        # the error bars are the Wilson score interval (closed form)
        z, n, k = 1.959963984540054, expected["n"].to_numpy(), expected["k"].to_numpy()
        phat = k / n
        centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z / (1 + z**2 / n) * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
        bars = next(c for c in ax.containers if c.get_label() == f"_bins:{name}")
        segments = bars.lines[2][0].get_segments()
        np.testing.assert_allclose([s[0][1] for s in segments], centre - half, atol=1e-9)
        np.testing.assert_allclose([s[1][1] for s in segments], centre + half, atol=1e-9)
        smooth = _line(ax, f"calibration:lowess:{name}")
        assert np.all(np.diff(smooth.get_xdata()) >= 0)
        assert smooth.get_ydata().min() >= 0 and smooth.get_ydata().max() <= 1
    hist = fig.axes[1]
    assert sum(patch.get_gid() is None for patch in hist.patches) == len(probs)  # one step histogram per model
    assert hist.get_xlabel() == "Predicted probability"


def test_calibration_uses_fewer_bins_in_small_cohorts_and_uniform_bins():
    y, probs = _cohort(35, 6)
    fig = ef.calibration_figure(y, {"Radiomics": probs["Radiomics"]}, n_bins=10)
    assert len(_line(fig.axes[0], "calibration:bins:Radiomics").get_xdata()) == 3  # min(10, max(2, 35 // 10))
    assert "3 quantile bins" in " ".join(t.get_text() for t in fig.axes[1].get_legend().get_texts())
    y, probs = _cohort(300, 7)
    fig = ef.calibration_figure(y, probs, n_bins=5, strategy="uniform")
    prob_true, prob_pred = calibration_curve(y, probs["Clinical"], n_bins=5, strategy="uniform")
    line = _line(fig.axes[0], "calibration:bins:Clinical")
    np.testing.assert_allclose(line.get_xdata(), prob_pred, rtol=1e-12)
    np.testing.assert_allclose(line.get_ydata(), prob_true, rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ef.calibration_figure(y, {"bad": probs["Clinical"] * 2})


# --------------------------------------------------------------------------- decision curves


def test_decision_curve_references_and_y_limits():
    y, probs = _cohort(150, 8, shift=2.0)
    t = np.round(np.linspace(0.01, 0.99, 99), 4)
    curves = {name: _net_benefit(y, p, t) for name, p in probs.items()}
    prevalence = y.mean()
    treat_all = pd.DataFrame({"threshold": t, "net_benefit": prevalence - (1 - prevalence) * t / (1 - t)})
    fig = ef.decision_curve_figure(curves, treat_all, title="Training")
    (ax,) = fig.axes
    none = _line(ax, "dca:treat_none")
    assert np.all(none.get_ydata() == 0) and tuple(none.get_xdata()) == ax.get_xlim() == (0.01, 0.99)
    lo, hi = ax.get_ylim()
    assert lo <= -0.05
    for name, df in curves.items():
        np.testing.assert_array_equal(_line(ax, f"dca:{name}").get_ydata(), df["net_benefit"])
        assert lo < df["net_benefit"].min() and df["net_benefit"].max() < hi
    assert hi > prevalence  # treat-all's maximum (threshold ~0) is shown
    assert treat_all["net_benefit"].min() < lo  # its steep fall leaves the axes instead of squashing the models
    assert hi - lo < 1.0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Radiomics", "Clinical", "Treat all", "Treat none"]
    # a restricted threshold range: the limits follow the curves on that range only
    fig = ef.decision_curve_figure(curves, treat_all, threshold_range=(0.1, 0.5))
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.1, 0.5)
    shown = pd.concat([df[(df.threshold >= 0.1) & (df.threshold <= 0.5)] for df in curves.values()])
    assert ax.get_ylim()[0] < shown["net_benefit"].min() and shown["net_benefit"].max() < ax.get_ylim()[1]
    with pytest.raises(ValueError, match="net_benefit"):
        ef.decision_curve_figure({"m": pd.DataFrame({"threshold": t})}, treat_all)


# --------------------------------------------------------------------------- forest


def _forest_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cohort": ["Training", "Training", "Training", "Test", "Test"],
            "subgroup": ["uMR 560", "uMR 570", "uMR 780", "uMR 560", "uMR 570"],
            "auc": [0.81, 0.76, np.nan, 0.74, 0.69],
            "lower": [0.70, 0.62, np.nan, 0.55, np.nan],
            "upper": [0.90, 0.88, np.nan, 0.91, np.nan],
            "n": [80, 55, 7, 28, 20],
            "events": [35, 22, 0, 12, 9],
        }
    )


def test_forest_one_marker_per_estimable_row_and_not_estimable_label():
    table = _forest_table()
    fig = ef.forest_figure(table, group="cohort", title="Subgroups by scanner")
    (ax,) = fig.axes
    markers = _line(ax, "forest:estimates")
    assert len(markers.get_xdata()) == table["auc"].notna().sum() == 4
    assert sorted(markers.get_xdata()) == sorted(table["auc"].dropna())
    assert len([ln for ln in ax.get_lines() if ln.get_gid() == "forest:ci"]) == 3  # the Test uMR 570 row has no CI
    ticks = {t.get_text(): (y, t.get_fontweight()) for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)}
    assert ticks["Training"][1] == "bold" and ticks["Test"][1] == "bold" and ticks["Training"][0] > ticks["Test"][0]
    y_nan = ticks["   uMR 780"][0]
    texts = {(t.get_text(), round(t.get_position()[1], 6)) for t in ax.texts}
    assert ("not estimable", y_nan) in texts
    assert ("7 (0)", y_nan) in texts and ("80 (35)", ticks["Training"][0] - 1) in texts  # first row under its header
    assert any(text == "0.81 (0.70–0.90)" for text, _ in texts)
    assert any(text == "0.69 (CI n/a)" for text, _ in texts)
    ref = _line(ax, "forest:reference")
    assert set(ref.get_xdata()) == {0.5}
    # estimates inside the x-limits, markers on the rows of their labels
    lo, hi = ax.get_xlim()
    assert lo < table["lower"].min() and hi > table["upper"].max()
    assert set(markers.get_ydata()) <= set(ax.get_yticks())


def test_forest_without_group_or_counts():
    table = _forest_table().drop(columns=["cohort", "n", "events"]).iloc[[0, 1, 2]]
    fig = ef.forest_figure(table, reference=None)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["uMR 560", "uMR 570", "uMR 780", "Subgroup"]
    assert not any("(events)" in t.get_text() for t in ax.texts)
    assert not [ln for ln in ax.get_lines() if ln.get_gid() == "forest:reference"]
    with pytest.raises(ValueError, match="no column"):
        ef.forest_figure(table, estimate="c_index")


# --------------------------------------------------------------------------- Rad-score


def _radscores() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"radscore": rng.normal(0, 1, 90), "outcome": rng.integers(0, 2, 90), "cohort": ["Training"] * 50 + ["Test"] * 40})
    df.loc[df.outcome == 1, "radscore"] += 1.0
    return df


def test_radscore_jitter_is_deterministic_and_points_are_the_scores():
    df = _radscores()
    kwargs = {"threshold": 0.4, "p_values": {"Training": 0.0004, "Test": 0.03}, "class_labels": {0: "low", 1: "high"}}
    fig1 = ef.radscore_distribution_figure(df, **kwargs)
    fig2 = ef.radscore_distribution_figure(df, **kwargs)
    assert len(fig1.axes) == 2
    for c, cohort in enumerate(["Training", "Test"]):
        ax1, ax2 = fig1.axes[c], fig2.axes[c]
        # two panels in one 85 mm column: the p-value goes on its own line
        assert ax1.get_title() == f"{cohort}\nMann–Whitney\n" + ("p < 0.001" if c == 0 else "p = 0.030")
        for j in (0, 1):
            (pts1,) = [s for s in ax1.collections if s.get_gid() == f"radscore:{c}:{j}"]
            (pts2,) = [s for s in ax2.collections if s.get_gid() == f"radscore:{c}:{j}"]
            off1, off2 = pts1.get_offsets(), pts2.get_offsets()
            np.testing.assert_array_equal(off1, off2)
            expected = df[(df.cohort == cohort) & (df.outcome == j)]["radscore"].to_numpy()
            np.testing.assert_array_equal(off1[:, 1], expected)
            dx = off1[:, 0] - j
            assert np.all(np.abs(dx) <= 0.18) and np.ptp(dx) > 0.05  # jittered around the class position
        assert {_line(ax1, "radscore:threshold").get_ydata()[0]} == {0.4}
        assert [t.get_text() for t in ax1.get_xticklabels()][0].startswith("low\n(n = ")
    # another seed moves the points
    fig3 = ef.radscore_distribution_figure(df, jitter_seed=1)
    (a,) = [s for s in fig1.axes[0].collections if s.get_gid() == "radscore:0:0"]
    (b,) = [s for s in fig3.axes[0].collections if s.get_gid() == "radscore:0:0"]
    assert not np.array_equal(a.get_offsets(), b.get_offsets())


# --------------------------------------------------------------------------- feature weights


def test_feature_weights_sorted_by_magnitude_and_coloured_by_sign():
    long = "log-sigma-3-0-mm-3D_glrlm_GrayLevelNonUniformityNormalized"
    w = pd.Series({"a_small": 0.05, long: -0.8, "original_shape_Sphericity": 0.5, long.replace("glrlm", "glszm"): -0.3, "b": 0.0})
    fig = ef.feature_weight_figure(w, title="Coefficients")
    (ax,) = fig.axes
    bars = sorted(ax.patches, key=lambda p: -p.get_y())  # top to bottom
    widths = [b.get_width() for b in bars]
    assert widths == [-0.8, 0.5, -0.3, 0.05, 0.0]
    assert [to_hex(b.get_facecolor()) for b in bars] == [
        ef.LINE_COLOURS[3].lower() if v < 0 else ef.LINE_COLOURS[0].lower() for v in widths
    ]
    labels = sorted(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()], strict=True), key=lambda t: -t[0])
    names = [text.replace("\n", "") for _, text in labels]
    assert names == [long, "original_shape_Sphericity", long.replace("glrlm", "glszm"), "a_small", "b"]  # full, unique
    assert all(max(len(line) for line in text.split("\n")) <= 36 for _, text in labels)
    assert "\n" in labels[0][1]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0].startswith("Positive") and legend[1].startswith("Negative")
    with pytest.raises(ValueError, match="duplicated"):
        ef.feature_weight_figure(pd.Series([1.0, 2.0], index=["x", "x"]))


# --------------------------------------------------------------------------- Dice


def _dice() -> pd.DataFrame:
    rng = np.random.default_rng(10)
    n = 20
    return pd.DataFrame(
        {
            "patient": [f"P{i:02d}" for i in range(n)] * 2,
            "label": ["kidney"] * n + ["tumour"] * n,
            "cohort": (["internal"] * 12 + ["external"] * 8) * 2,
            "dice": np.clip(np.r_[rng.normal(0.95, 0.02, n), rng.normal(0.8, 0.1, n)], 0, 1),
        }
    )


def test_dice_mean_sd_annotations_and_points():
    df = _dice()
    df.loc[3, "dice"] = np.nan  # a failed case is left out
    fig = ef.dice_figure(df)
    assert [ax.get_title() for ax in fig.axes] == ["kidney", "tumour"]
    for ax, label in zip(fig.axes, ["kidney", "tumour"], strict=True):
        texts = [t.get_text() for t in ax.texts if t.get_gid() == "dice:summary"]
        expected = []
        for j, cohort in enumerate(["internal", "external"]):
            d = df[(df.label == label) & (df.cohort == cohort)]["dice"].dropna()
            expected.append(f"{d.mean():.2f} ± {d.std(ddof=1):.2f}")
            (pts,) = [s for s in ax.collections if s.get_gid() == f"dice:{fig.axes.index(ax)}:{j}"]
            np.testing.assert_array_equal(np.sort(pts.get_offsets()[:, 1]), np.sort(d.to_numpy()))
        assert texts == expected
        lo, hi = ax.get_ylim()
        assert lo <= df["dice"].min() and hi > 1.0
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["internal\n(n = 11)", "external\n(n = 8)"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ef.dice_figure(df.assign(dice=df["dice"] * 2))


# --------------------------------------------------------------------------- all figures


def _all_figures():
    y, probs = _cohort(80, 11)
    t = np.linspace(0.02, 0.9, 45)
    prevalence = y.mean()
    treat_all = pd.DataFrame({"threshold": t, "net_benefit": prevalence - (1 - prevalence) * t / (1 - t)})
    panels = {"Training": (y, probs, None), "Test": (y[:40], {k: v[:40] for k, v in probs.items()}, None)}
    weights = pd.Series({"wavelet-LLH_glszm_SizeZoneNonUniformityNormalized": 0.4, "shape_Sphericity": -0.2})
    curves = {k: _net_benefit(y, p, t) for k, p in probs.items()}
    return {  # name: (figure factory, number of axes)
        "roc": (lambda: ef.roc_figure(y, probs, title="Test"), 1),
        "roc_panels": (lambda: ef.roc_panels_figure(panels), 2),
        "calibration": (lambda: ef.calibration_figure(y, probs, title="Test"), 2),
        "dca": (lambda: ef.decision_curve_figure(curves, treat_all), 1),
        "forest": (lambda: ef.forest_figure(_forest_table(), group="cohort"), 1),
        "radscore": (lambda: ef.radscore_distribution_figure(_radscores(), threshold=0.4), 2),
        "weights": (lambda: ef.feature_weight_figure(weights), 1),
        "dice": (lambda: ef.dice_figure(_dice()), 2),
    }


@pytest.mark.parametrize("name", list(_all_figures()))
def test_figures_are_deterministic_300_dpi_pngs(name, tmp_path):
    make, n_axes = _all_figures()[name]
    blobs = []
    for k in range(2):  # two independent calls, same inputs
        fig = make()
        assert len(fig.axes) == n_axes
        path = tmp_path / f"{name}_{k}.png"
        # no tight bounding box and fast zlib here (both only cost time on a busy CPU); the pixels are what must not vary
        fig.savefig(path, dpi=300, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
        plt.close(fig)
        blobs.append(path.read_bytes())
    assert blobs[0] == blobs[1]
    with Image.open(io.BytesIO(blobs[0])) as img:
        assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert img.size[0] >= 2 * 300  # at least 2 inches wide: journal column size, not a thumbnail
