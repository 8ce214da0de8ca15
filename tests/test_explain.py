"""Tests of helpers.learning.explain: SHAP explanations of the final pipeline and their figures."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline as ImbPipeline
from matplotlib.patches import FancyArrow
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from helpers.figures.shap import shap_bar_figure, shap_beeswarm_figure, shap_waterfall_figure
from helpers.learning.explain import (
    explained_output,
    explainer_kind,
    explanation_scale,
    shap_explanation,
    top_features,
    transform_features,
)


def _cohorts(n_train: int = 80, n_test: int = 20, n_features: int = 8, seed: int = 0):
    """Synthetic radiomics-like cohorts: the outcome depends on the first two features."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    X = pd.DataFrame(
        rng.normal(size=(n, n_features)) * np.linspace(1, 3, n_features) + 10,
        columns=[f"CT_tumour_original_feat{i}" for i in range(n_features)],
        index=[f"STS-{i:03d}" for i in range(n)],
    )
    logit = 1.5 * (X.iloc[:, 0] - 10) - 0.8 * (X.iloc[:, 1] - 10) / 1.3 - 0.5
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int), index=X.index)
    return X.iloc[:n_train], y.iloc[:n_train], X.iloc[n_train:], y.iloc[n_train:]


def _pipeline(clf, k: int = 5) -> ImbPipeline:
    # SMOTE sits between the transforms: it must be skipped when explaining.
    return ImbPipeline([("scale", StandardScaler()), ("smote", SMOTE(random_state=0)), ("select", SelectKBest(f_classif, k=k)), ("clf", clf)])


@pytest.fixture(scope="module")
def data():
    return _cohorts()


@pytest.fixture(scope="module")
def forest(data):
    X_train, y_train, _, _ = data
    return _pipeline(RandomForestClassifier(n_estimators=40, max_depth=3, random_state=0)).fit(X_train, y_train)


@pytest.fixture(scope="module")
def logistic(data):
    X_train, y_train, _, _ = data
    return _pipeline(LogisticRegression(C=0.5)).fit(X_train, y_train)


# -- transformed feature space ----------------------------------------------------
def test_transform_skips_sampler_and_names_selected_features(data, forest):
    X_train, _, X_test, _ = data
    Z = transform_features(forest, X_test)
    selected = list(forest.named_steps["select"].get_feature_names_out(X_train.columns))
    assert list(Z.columns) == selected and Z.shape == (len(X_test), 5)
    assert list(Z.index) == list(X_test.index)  # patient ids kept
    expected = forest.named_steps["select"].transform(forest.named_steps["scale"].transform(X_test))
    np.testing.assert_allclose(Z.to_numpy(), expected)


def test_explainer_choice_and_scale(forest, logistic, data):
    X_train, y_train, _, _ = data
    svm = _pipeline(SVC(random_state=0)).fit(X_train, y_train)
    assert (explainer_kind(forest), explanation_scale(forest)) == ("tree", "probability")
    assert (explainer_kind(logistic), explanation_scale(logistic)) == ("linear", "log-odds")
    assert (explainer_kind(svm), explanation_scale(svm)) == ("kernel", "decision function")


def test_wrapped_pipeline_is_explained_like_the_pipeline(data, logistic):
    X_train, _, X_test, _ = data
    wrapped = SimpleNamespace(pipeline_=logistic, threshold_=0.5)  # the shape of helpers.learning.models.FittedModel
    np.testing.assert_array_equal(shap_explanation(wrapped, X_train, X_test).values, shap_explanation(logistic, X_train, X_test).values)


# -- additivity ----------------------------------------------------------------
def test_tree_additivity_on_probability_and_base_is_training_mean(data, forest):
    X_train, _, X_test, _ = data
    exp = shap_explanation(forest, X_train, X_test, random_state=0)
    assert exp.values.shape == (len(X_test), 5) and exp.output_names == "probability"
    prob = forest.predict_proba(X_test)[:, 1]
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), prob, atol=1e-6)
    np.testing.assert_allclose(explained_output(forest, X_test), prob)
    # Interventional Tree SHAP: base value = mean predicted probability over the (80 <= 100, so all) training rows.
    np.testing.assert_allclose(exp.base_values, forest.predict_proba(X_train)[:, 1].mean(), atol=1e-6)
    assert list(exp.instance_names) == list(X_test.index)


def _boosted(name: str):
    if name == "ExtraTrees":
        return ExtraTreesClassifier(n_estimators=20, max_depth=3, random_state=0)
    if name == "xgboost":
        return pytest.importorskip("xgboost").XGBClassifier(n_estimators=20, max_depth=2, random_state=0, n_jobs=1)
    if name == "lightgbm":
        return pytest.importorskip("lightgbm").LGBMClassifier(n_estimators=20, num_leaves=4, random_state=0, n_jobs=1, verbose=-1)
    return pytest.importorskip("catboost").CatBoostClassifier(
        iterations=20, depth=2, random_seed=0, thread_count=1, verbose=0, allow_writing_files=False
    )


@pytest.mark.parametrize("name", ["ExtraTrees", "xgboost", "lightgbm", "catboost"])
def test_other_tree_models_additive_on_probability(data, name):
    X_train, y_train, X_test, _ = data
    pipe = _pipeline(_boosted(name)).fit(X_train, y_train)
    assert explainer_kind(pipe) == "tree"
    exp = shap_explanation(pipe, X_train, X_test)
    # Boosted models' raw output is the log-odds; the explanation is of the probability (as for forests).
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), pipe.predict_proba(X_test)[:, 1], atol=1e-5)


def test_linear_shap_is_closed_form_on_log_odds(data, logistic):
    X_train, _, X_test, _ = data
    exp = shap_explanation(logistic, X_train, X_test)
    Z_train, Z_test = transform_features(logistic, X_train), transform_features(logistic, X_test)
    clf = logistic.named_steps["clf"]
    coef = clf.coef_.ravel()
    # phi_j = coef_j * (x_j - mean over the training background of x_j), in the transformed space.
    np.testing.assert_allclose(exp.values, coef * (Z_test.to_numpy() - Z_train.to_numpy().mean(axis=0)), atol=1e-10)
    np.testing.assert_allclose(exp.base_values, clf.intercept_[0] + coef @ Z_train.to_numpy().mean(axis=0), atol=1e-10)
    log_odds = logistic.decision_function(X_test)
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), log_odds, atol=1e-10)
    p = logistic.predict_proba(X_test)[:, 1]
    np.testing.assert_allclose(log_odds, np.log(p / (1 - p)), atol=1e-8)
    assert exp.output_names == "log-odds"


def _exact_interventional_shapley(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Shapley values of v(S) = mean_b f(x_S, b_rest) by enumerating all coalitions."""
    m = len(x)

    def v(S: tuple[int, ...]) -> float:
        Z = background.copy()
        Z[:, list(S)] = x[list(S)]
        return float(f(Z).mean())

    phi = np.zeros(m)
    for j in range(m):
        others = [i for i in range(m) if i != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for S in itertools.combinations(others, size):
                phi[j] += weight * (v(tuple(sorted(S + (j,)))) - v(S))
    return phi


def test_kernel_fallback_is_exact_shapley_for_few_features(data):
    X_train, y_train, X_test, _ = data
    X_train, y_train = X_train.iloc[:40], y_train.iloc[:40]  # <= kernel_background: the whole training set is the background
    pipe = _pipeline(SVC(C=1.0, random_state=0), k=4).fit(X_train, y_train)
    exp = shap_explanation(pipe, X_train, X_test.iloc[:3])
    out = pipe.decision_function(X_test.iloc[:3])
    np.testing.assert_allclose(exp.base_values + exp.values.sum(axis=1), out, atol=1e-8)
    Z_train, Z_test = transform_features(pipe, X_train).to_numpy(), transform_features(pipe, X_test.iloc[:3]).to_numpy()
    svc = pipe.named_steps["clf"]
    for i in range(3):
        np.testing.assert_allclose(exp.values[i], _exact_interventional_shapley(svc.decision_function, Z_test[i], Z_train), atol=1e-6)


# -- training-only background and determinism ------------------------------------
def test_base_value_depends_on_training_background_only(data, forest, logistic):
    X_train, _, X_test, _ = data
    for pipe in (forest, logistic):
        a = shap_explanation(pipe, X_train, X_test)
        shifted = shap_explanation(pipe, X_train, X_test + 3.0)  # a shifted external cohort
        np.testing.assert_allclose(a.base_values, shifted.base_values)
        other_background = shap_explanation(pipe, X_train.iloc[:40], X_test)
        assert not np.allclose(a.base_values, other_background.base_values)


def test_explanations_are_deterministic_and_leave_global_rng_alone(data):
    X_train, y_train, X_test, _ = data
    X_train12, X_test12 = (pd.concat([X, X.add_suffix("_b") * 0.5], axis=1) for X in (X_train, X_test))
    # 12 features: 2^12 coalitions exceed nsamples, so KernelExplainer samples (seeded).
    pipe = Pipeline([("scale", StandardScaler()), ("clf", SVC(random_state=0))]).fit(X_train12, y_train)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = shap_explanation(pipe, X_train12, X_test12.iloc[:2], random_state=3, nsamples=300)
    assert np.array_equal(np.random.get_state()[1], state)
    b = shap_explanation(pipe, X_train12, X_test12.iloc[:2], random_state=3, nsamples=300)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.base_values + a.values.sum(axis=1), pipe.decision_function(X_test12.iloc[:2]), atol=1e-8)


def test_tree_explanation_deterministic_with_subsampled_background(data):
    X_train, y_train, X_test, _ = data
    pipe = _pipeline(RandomForestClassifier(n_estimators=20, max_depth=3, random_state=0)).fit(X_train, y_train)
    a = shap_explanation(pipe, X_train, X_test, max_background=30, random_state=1)
    b = shap_explanation(pipe, X_train, X_test, max_background=30, random_state=1)
    c = shap_explanation(pipe, X_train, X_test, max_background=30, random_state=2)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.base_values, c.base_values)  # a different seeded background sample


# -- errors --------------------------------------------------------------------
def test_unfitted_and_multiclass_models_are_rejected(data):
    X_train, y_train, X_test, _ = data
    with pytest.raises(NotFittedError, match="fit the pipeline"):
        shap_explanation(_pipeline(LogisticRegression()), X_train, X_test)
    three = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X_train, np.arange(len(X_train)) % 3)
    with pytest.raises(ValueError, match="binary"):
        shap_explanation(three, X_train, X_test)
    with pytest.raises(ValueError, match="same columns"):
        shap_explanation(Pipeline([("clf", LogisticRegression())]).fit(X_train, y_train), X_train, X_test.iloc[:, ::-1])


# -- figures -------------------------------------------------------------------
@pytest.mark.parametrize("max_display, rows", [(3, 3), (5, 5), (10, 5)])
def test_beeswarm_and_bar_show_expected_features(data, forest, max_display, rows):
    import matplotlib.pyplot as plt

    X_train, _, X_test, _ = data
    exp = shap_explanation(forest, X_train, X_test)
    ranking = list(top_features(exp, k=5)["feature"])
    for make in (shap_beeswarm_figure, shap_bar_figure):
        fig = make(exp, max_display=max_display)
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert len(labels) == rows
        shown = [lab for lab in labels if not lab.startswith("Sum of")]
        assert set(shown) == set(ranking[: rows if rows == 5 else rows - 1])
        if rows < 5:
            assert f"Sum of {5 - (rows - 1)} other features" in labels
        plt.close(fig)


def test_bar_heights_are_mean_absolute_shap(data, logistic):
    import matplotlib.pyplot as plt

    X_train, _, X_test, _ = data
    exp = shap_explanation(logistic, X_train, X_test)
    fig = shap_bar_figure(exp, max_display=10)
    bars = sorted((p.get_width() for p in fig.axes[0].patches), reverse=True)
    np.testing.assert_allclose(bars, np.sort(np.abs(exp.values).mean(axis=0))[::-1])
    plt.close(fig)


def test_beeswarm_figure_is_deterministic(data, forest):
    import matplotlib.pyplot as plt

    X_train, _, X_test, _ = data
    exp = shap_explanation(forest, X_train, X_test)
    offsets = []
    for _ in range(2):
        fig = shap_beeswarm_figure(exp, max_display=5)
        offsets.append(np.concatenate([c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())]))
        plt.close(fig)
    np.testing.assert_array_equal(offsets[0], offsets[1])


def test_waterfall_one_patient_labelled_with_patient_id_only(data, forest):
    import matplotlib.pyplot as plt

    X_train, _, X_test, _ = data
    exp = shap_explanation(forest, X_train, X_test)
    patient = X_test.index[4]
    fig = shap_waterfall_figure(exp, patient, max_display=4)
    assert fig._suptitle.get_text() == patient
    assert all(ax.get_title() in ("", patient) for ax in fig.axes)
    assert sum(isinstance(p, FancyArrow) for p in fig.axes[0].patches) == 4  # 3 features + "2 other features"
    by_position = shap_waterfall_figure(exp, 4, max_display=4)
    assert by_position._suptitle.get_text() == patient
    with pytest.raises(KeyError, match="not in the explanation"):
        shap_waterfall_figure(exp, "STS-999")
    plt.close("all")
