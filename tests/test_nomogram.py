"""Tests of helpers.learning.nomogram on the Wisconsin diagnostic breast cancer data shipped with scikit-learn.

569 fine-needle-aspirate images (212 malignant); the endpoint is malignancy. ``worst radius`` (standardised)
stands in for the Rad-score, ``mean texture`` for a continuous clinical variable and tertiles of
``mean smoothness`` for a categorical one.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from helpers.figures.nomogram import nomogram_figure
from helpers.learning.nomogram import NomogramModel, _nice_ticks, nomogram_table

N_TRAIN = 400


@pytest.fixture(scope="module")
def cohorts():
    df = load_breast_cancer(as_frame=True).frame
    radius = df["worst radius"]
    X = pd.DataFrame(
        {
            "texture": df["mean texture"],
            "rad_score": (radius - radius.iloc[:N_TRAIN].mean()) / radius.iloc[:N_TRAIN].std(),  # training statistics only
            "smoothness": pd.cut(df["mean smoothness"], [0, 0.09, 0.1, 1], labels=["low", "mid", "high"]).astype(str),
        }
    )
    y = (df["target"] == 0).astype(int)  # 1 = malignant
    return X.iloc[:N_TRAIN], y.iloc[:N_TRAIN], X.iloc[N_TRAIN:], y.iloc[N_TRAIN:]


@pytest.fixture(scope="module")
def model(cohorts) -> NomogramModel:
    X_train, y_train, _, _ = cohorts
    return NomogramModel().fit(X_train, y_train)


# -- coefficients ------------------------------------------------------------------------
def test_coefficients_match_statsmodels_formula_logit(cohorts, model):
    X_train, y_train, _, _ = cohorts
    ref = smf.logit("y ~ texture + rad_score + C(smoothness)", data=X_train.assign(y=y_train)).fit(disp=0)
    # patsy's treatment coding: sorted levels, the first ("high") is the reference.
    names = {"Intercept": "Intercept", "texture": "texture", "rad_score": "rad_score",
             "smoothness[low]": "C(smoothness)[T.low]", "smoothness[mid]": "C(smoothness)[T.mid]"}
    assert model.categories_ == {"smoothness": ["high", "low", "mid"]}
    assert model.design_columns_ == ["texture", "rad_score", "smoothness[low]", "smoothness[mid]"]
    for ours, theirs in names.items():
        assert model.params_[ours] == pytest.approx(ref.params[theirs], abs=1e-8), ours
        assert model.bse_[ours] == pytest.approx(ref.bse[theirs], rel=1e-6), ours
        assert model.pvalues_[ours] == pytest.approx(ref.pvalues[theirs], rel=1e-6, abs=1e-300), ours
    ci = ref.conf_int()
    np.testing.assert_allclose(model.conf_int_.loc["rad_score"].to_numpy(), ci.loc["rad_score"].to_numpy(), rtol=1e-6)
    s = model.summary_.loc["rad_score"]
    assert s["odds_ratio"] == pytest.approx(np.exp(ref.params["rad_score"]), rel=1e-8)
    assert s["or_ci_low"] < s["odds_ratio"] < s["or_ci_high"]


def test_coefficients_match_unpenalised_sklearn(cohorts, model):
    X_train, y_train, _, _ = cohorts
    design = pd.get_dummies(X_train, columns=["smoothness"], dtype=float).drop(columns="smoothness_high")
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(design, y_train)
    np.testing.assert_allclose(sk.coef_.ravel(), model.params_[["texture", "rad_score", "smoothness[low]", "smoothness[mid]"]], atol=1e-4)
    assert sk.intercept_[0] == pytest.approx(model.params_["Intercept"], abs=1e-3)


# -- points -> probability ------------------------------------------------------------------
def test_points_to_probability_reproduces_model_exactly(cohorts, model):
    X_train, _, X_test, _ = cohorts
    table = nomogram_table(model)
    patients = pd.concat([X_train.iloc[:5], X_test.iloc[:15]])  # includes test patients outside the training range
    scales = table.scales.set_index("variable")
    levels = table.levels.set_index(["variable", "level"])["points"]
    for _, patient in patients.iterrows():
        # From the table only: continuous points = (x - zero_value) * points_per_unit; categorical from the level row.
        total = sum((patient[v] - scales.loc[v, "zero_value"]) * scales.loc[v, "points_per_unit"] for v in ("texture", "rad_score"))
        total += levels[("smoothness", patient["smoothness"])]
        probability = 1 / (1 + np.exp(-(table.lp_at_zero + total * table.lp_per_point)))
        expected = model.predict_proba(patient.to_frame().T.astype({"texture": float, "rad_score": float}))[0, 1]
        assert probability == pytest.approx(expected, abs=1e-9)
    via_methods = table.probability(table.points(patients)["total"])
    np.testing.assert_allclose(via_methods, model.predict_proba(patients)[:, 1], atol=1e-9)
    np.testing.assert_allclose(table.linear_predictor(table.points(patients)["total"]), model.decision_function(patients), atol=1e-9)


def test_largest_effect_gets_100_points_and_others_scale(cohorts, model):
    X_train, _, _, _ = cohorts
    table = nomogram_table(model)
    s = table.scales.set_index("variable")
    spans = {
        "texture": abs(model.params_["texture"]) * np.ptp(X_train["texture"]),
        "rad_score": abs(model.params_["rad_score"]) * np.ptp(X_train["rad_score"]),
        "smoothness": np.ptp([0.0, model.params_["smoothness[low]"], model.params_["smoothness[mid]"]]),
    }
    biggest = max(spans, key=spans.get)
    assert s.loc[biggest, "max_points"] == pytest.approx(100.0)
    for var, span in spans.items():
        assert s.loc[var, "max_points"] == pytest.approx(100 * span / spans[biggest])
    points_train = table.points(X_train)
    assert points_train.drop(columns="total").min().min() == pytest.approx(0.0, abs=1e-9)  # each scale starts at 0 in training
    assert points_train[biggest].max() == pytest.approx(100.0)
    assert table.levels.groupby("variable")["points"].min().iloc[0] == pytest.approx(0.0)
    # Probability ticks sit where the mapping gives that probability.
    pt = table.probability_ticks
    np.testing.assert_allclose(table.probability(pt["total_points"]), pt["probability"], atol=1e-12)


def test_value_ticks_are_matplotlibs_maxnlocator_ticks():
    """The table's axis ticks (computed without matplotlib) are MaxNLocator's, bit for bit, as the figure used to draw."""
    from matplotlib.ticker import MaxNLocator

    rng = np.random.default_rng(7)
    ranges = [(0.0, 1.0), (-3.2, 7.9), (12.0, 12.0), (0.0, 0.0), (1e6, 1e6 + 0.25), (1e15, 1e15 + 1), (5.0, 2.0), (-1e-300, 1e-300)]
    for _ in range(2000):
        lo = rng.normal() * 10 ** rng.uniform(-6, 8)
        ranges.append((lo, lo + abs(rng.normal()) * 10 ** rng.uniform(-8, 6)))
    for lo, hi in ranges:
        for nbins in (1, 2, 4, 6, 10):
            expected = MaxNLocator(nbins=nbins).tick_values(lo, hi)
            got = _nice_ticks(lo, hi, nbins)
            assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), (lo, hi, nbins, got, expected)


def test_point_scales_use_training_ranges_only(cohorts):
    X_train, y_train, X_test, _ = cohorts
    fitted = NomogramModel().fit(X_train, y_train)
    assert fitted.ranges_["texture"] == (X_train["texture"].min(), X_train["texture"].max())
    before = nomogram_table(fitted)
    fitted.predict_proba(X_test.assign(texture=X_test["texture"] * 10))  # predicting an extreme cohort changes nothing
    pd.testing.assert_frame_equal(nomogram_table(fitted).scales, before.scales)
    assert not hasattr(clone(fitted), "params_") and clone(fitted).get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        NomogramModel().predict_proba(X_test)


# -- categorical variables --------------------------------------------------------------------
def test_reference_level_changes_coding_not_predictions(cohorts, model):
    X_train, y_train, X_test, _ = cohorts
    low_ref = NomogramModel(reference={"smoothness": "low"}).fit(X_train, y_train)
    assert low_ref.categories_["smoothness"] == ["low", "high", "mid"]
    assert low_ref.params_["smoothness[high]"] == pytest.approx(-model.params_["smoothness[low]"], abs=1e-8)
    np.testing.assert_allclose(low_ref.predict_proba(X_test), model.predict_proba(X_test), atol=1e-10)
    # A pandas Categorical keeps its category order (first = reference), as patsy does.
    ordered = X_train.assign(smoothness=pd.Categorical(X_train["smoothness"], categories=["low", "mid", "high"]))
    assert NomogramModel().fit(ordered, y_train).categories_["smoothness"] == ["low", "mid", "high"]
    # Numeric codes are dummy-coded when listed as categorical.
    coded = X_train.assign(smoothness=X_train["smoothness"].map({"low": 1, "mid": 2, "high": 3}))
    as_cat = NomogramModel(categorical=["smoothness"]).fit(coded, y_train)
    assert as_cat.design_columns_ == ["texture", "rad_score", "smoothness[2]", "smoothness[3]"]
    np.testing.assert_allclose(as_cat.predict_proba(coded), model.predict_proba(X_train), atol=1e-10)
    assert NomogramModel().fit(coded, y_train).design_columns_ == ["texture", "rad_score", "smoothness"]  # numeric: linear
    with pytest.raises(ValueError, match="not seen in training"):
        model.predict_proba(X_test.assign(smoothness="very high"))
    with pytest.raises(ValueError, match="does not occur"):
        NomogramModel(reference={"smoothness": "none"}).fit(X_train, y_train)


def test_perfect_separation_is_reported(cohorts):
    X_train, y_train, _, _ = cohorts
    leaky = X_train.assign(leak=y_train.astype(float) * 10)
    with pytest.raises(ValueError, match="separates the classes"):
        NomogramModel().fit(leaky, y_train)
    with pytest.raises(ValueError, match="binary"):
        NomogramModel().fit(X_train, y_train + 1)


# -- figure ------------------------------------------------------------------------------------
def test_nomogram_figure_axes_and_probability_ticks(model):
    table = nomogram_table(model)
    fig = nomogram_figure(model, table, outcome_label="Risk of malignancy", labels={"rad_score": "Rad-score"})
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["Points", "Texture", "Rad-score", "Smoothness", "Total points", "Risk of malignancy"]  # names in words
    y_of = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}

    def row_texts(label):
        return [t for t in ax.texts if abs(t.get_position()[1] - y_of[label]) < 0.5]

    scale = 100 / table.max_total_points
    prob_texts = row_texts("Risk of malignancy")
    assert prob_texts
    for t in prob_texts:  # each probability label sits at the total points giving that probability
        assert table.probability(t.get_position()[0] / scale) == pytest.approx(float(t.get_text()), abs=1e-9)
    level_x = {t.get_text(): t.get_position()[0] for t in row_texts("Smoothness")}
    expected = table.levels.set_index("level")["points"]
    assert level_x == pytest.approx({k: float(v) for k, v in expected.items()})
    for t in row_texts("Rad-score"):  # value ticks sit at their points
        v = float(t.get_text().replace("\N{MINUS SIGN}", "-"))  # typographic minus on the axis
        s = table.scales.set_index("variable").loc["rad_score"]
        assert t.get_position()[0] == pytest.approx((v - s["zero_value"]) * s["points_per_unit"])
    plt.close(fig)


@pytest.mark.parametrize(("endpoint", "axis"), [("lung_metastasis", "Probability of lung\nmetastasis"), ("malignant", "Probability of\nmalignant"),
                                                ("label", "Predicted probability\nof the outcome"), (None, "Predicted probability\nof the outcome")])
def test_nomogram_outcome_axis_names_the_endpoint(model, endpoint, axis):
    fig = nomogram_figure(model, endpoint=endpoint)
    try:
        rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert rows[-1] == axis  # never "Probability of label"
    finally:
        plt.close(fig)
