"""Models: classifiers, tuning, thresholds, leakage guards, persistence, model grid and stacking.

Synthetic data only, tiny ensembles and few trials, so the file runs in seconds.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict

import joblib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.datasets import make_classification
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from helpers.figures.models import auc_heatmap_figure
from helpers.learning.models import (
    ALGORITHMS,
    FittedModel,
    ModelFileError,
    ModelVersionError,
    ModelVersionWarning,
    ScoreStacker,
    UnknownAlgorithmError,
    build_pipeline,
    default_search_space,
    feature_blocks,
    feature_fusion,
    load_model,
    make_classifier,
    model_grid,
    save_model,
    selection_cache,
    tune,
    youden_threshold,
)
from helpers.learning.selection import build_selector

#: Tiny ensembles so every algorithm fits in well under a second.
TINY = {
    "logistic": {}, "svm": {},
    "random_forest": {"n_estimators": 15}, "extra_trees": {"n_estimators": 15},
    "xgboost": {"n_estimators": 15}, "lightgbm": {"n_estimators": 15}, "catboost": {"iterations": 15},
}  # fmt: skip
STOCHASTIC = ("random_forest", "extra_trees", "xgboost", "lightgbm", "catboost")


def frame(X: np.ndarray, y: np.ndarray, prefix: str = "f") -> tuple[pd.DataFrame, pd.Series]:
    """Features and labels indexed by synthetic patient ids."""
    index = pd.Index([f"P{i:03d}" for i in range(len(y))], name="patient")
    return pd.DataFrame(X, index=index, columns=[f"{prefix}{j}" for j in range(X.shape[1])]), pd.Series(y, index=index, name="outcome")


@pytest.fixture(scope="module")
def easy():
    X, y = make_classification(n_samples=90, n_features=12, n_informative=4, n_redundant=0, class_sep=1.2, weights=[0.65], random_state=0)
    return frame(X, y)


def scaled_selected(k: int = 5) -> list:
    return [("scale", StandardScaler()), ("select", SelectKBest(f_classif, k=k))]


# --------------------------------------------------------------------------- classifiers and spaces


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_is_seeded_and_gives_probabilities(easy, name):
    X, y = easy
    pipe = build_pipeline(scaled_selected(), make_classifier(name, random_state=3, **TINY[name]), smote=True, random_state=3)
    first = clone(pipe).fit(X, y).predict_proba(X)
    second = clone(pipe).fit(X, y).predict_proba(X)
    assert first.shape == (len(y), 2)
    assert np.all((first >= 0) & (first <= 1))
    assert np.allclose(first.sum(axis=1), 1)
    assert np.array_equal(first, second)  # same seed, bit-identical
    if name in STOCHASTIC:  # the seed really reaches the estimator
        other = build_pipeline(scaled_selected(), make_classifier(name, random_state=4, **TINY[name]), smote=True, random_state=3)
        assert not np.array_equal(first, other.fit(X, y).predict_proba(X))


def test_classifiers_are_single_threaded_and_clonable():
    for name in ALGORITHMS:
        clf = make_classifier(name)
        params = clf.get_params()
        threads = {k: v for k, v in params.items() if k in ("n_jobs", "thread_count")}
        assert all(v in (None, 1) for v in threads.values()), (name, threads)
        assert clone(clf).get_params().keys() == params.keys()
    assert make_classifier("catboost").get_params()["allow_writing_files"] is False


def test_unknown_algorithm_lists_the_choices():
    with pytest.raises(UnknownAlgorithmError, match="choose one of: logistic, svm, random_forest"):
        make_classifier("naive_bayes")
    with pytest.raises(UnknownAlgorithmError):
        default_search_space("knn")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_default_search_spaces_address_real_pipeline_parameters(name):
    pipe = build_pipeline(scaled_selected(), make_classifier(name))
    space = default_search_space(name)
    n_candidates = int(np.prod([len(v) for v in space.grid.values()]))
    assert 2 <= n_candidates <= 12
    clone(pipe).set_params(**{k: v[0] for k, v in space.grid.items()})  # raises for an invalid name
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggested = space.optuna(study.ask())
    assert suggested and all(k.startswith("classifier__") for k in suggested)
    clone(pipe).set_params(**suggested)


def test_build_pipeline_order_and_validation():
    pipe = build_pipeline(scaled_selected(), make_classifier("logistic"), smote=True, smote_k_neighbors=3, random_state=9)
    assert [n for n, _ in pipe.steps] == ["scale", "select", "smote", "classifier"]
    assert pipe.named_steps["smote"].k_neighbors == 3 and pipe.named_steps["smote"].random_state == 9
    with pytest.raises(ValueError, match="reserved"):
        build_pipeline([("classifier", StandardScaler())], make_classifier("logistic"))
    with pytest.raises(ValueError, match="fit and transform"):
        build_pipeline([("bad", object())], make_classifier("logistic"))
    with pytest.raises(ValueError, match="predict_proba"):
        build_pipeline([], StandardScaler())


# --------------------------------------------------------------------------- Youden threshold


def test_youden_threshold_hand_example_and_tie_rule():
    # thresholds 0.8 / 0.4 / 0.35 / 0.1 give J = 0.5 / 0 / 0.5 / 0: a tie, broken towards the higher threshold.
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8
    # A unique optimum: p >= 0.6 catches all 3 positives and 1 of 4 negatives (J = 1 - 0.25).
    assert youden_threshold([0, 0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9]) == 0.6


@pytest.mark.parametrize("seed", range(5))
def test_youden_threshold_matches_roc_curve(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    p = np.round(1 / (1 + np.exp(-(y + rng.normal(0, 1, 60)))), 1)  # rounded: many tied probabilities
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    assert youden_threshold(y, p) == thresholds[np.argmax(tpr - fpr)]


def test_youden_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="single class"):
        youden_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        youden_threshold([0, 2], [0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        youden_threshold([0, 1], [0.2, np.nan])


# --------------------------------------------------------------------------- tuning


def test_grid_tuning_is_deterministic_and_consistent(easy):
    X, y = easy
    pipe = build_pipeline([("scale", StandardScaler())], make_classifier("logistic"))
    a = tune(pipe, X, y, search="grid", param_space={"classifier__C": [0.01, 1.0]}, cv=4, random_state=1)
    b = tune(pipe, X, y, search="grid", param_space={"classifier__C": [0.01, 1.0]}, cv=4, random_state=1)
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_)
    pd.testing.assert_series_equal(a.oof_proba_, b.oof_proba_)
    assert a.best_params_ == b.best_params_ and a.threshold_ == b.threshold_
    # The reported CV AUC of the best candidate is the search's own score on the same folds.
    best = a.cv_results_.loc[a.cv_results_["rank_test_score"] == 1].iloc[0]
    assert a.cv_auc_mean_ == pytest.approx(best["mean_test_score"])
    assert a.cv_auc_sd_ == pytest.approx(best["std_test_score"])
    assert np.allclose(a.cv_auc_folds_, [best[f"split{k}_test_score"] for k in range(4)])
    # OOF probabilities are cross_val_predict with the same folds and the best parameters.
    folds = StratifiedKFold(4, shuffle=True, random_state=1)
    expected = cross_val_predict(clone(pipe).set_params(**a.best_params_), X, y, cv=folds, method="predict_proba")[:, 1]
    assert np.allclose(a.oof_proba_.to_numpy(), expected)
    assert a.oof_proba_.index.equals(X.index) and sorted(a.fold_.unique()) == [0, 1, 2, 3]
    assert a.pipeline_ is not pipe and not hasattr(pipe.named_steps["classifier"], "coef_")  # caller's pipeline untouched


@pytest.mark.slow
def test_optuna_tuning_is_deterministic(easy):
    X, y = easy
    pipe = build_pipeline([("scale", StandardScaler())], make_classifier("logistic"))
    # 12 trials: past TPE's 10 random start-up trials, so the Bayesian proposals are exercised too.
    a = tune(pipe, X, y, search="optuna", n_trials=12, cv=3, random_state=5)
    b = tune(pipe, X, y, search="optuna", n_trials=12, cv=3, random_state=5)
    assert len(a.cv_results_) == 12 and set(a.best_params_) == {"classifier__C"}
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_)
    assert a.best_params_ == b.best_params_
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.cv_auc_mean_ == pytest.approx(a.cv_results_["mean_test_score"].max())


def test_optuna_with_a_tree_ensemble_and_custom_space(easy):
    X, y = easy
    pipe = build_pipeline([], make_classifier("extra_trees", n_estimators=10))
    space = lambda t: {"classifier__max_depth": t.suggest_int("depth", 2, 4)}
    runs = [tune(pipe, X, y, search="optuna", param_space=space, n_trials=3, cv=3, random_state=2) for _ in range(2)]
    assert runs[0].best_params_ == runs[1].best_params_ and 2 <= runs[0].best_params_["classifier__max_depth"] <= 4
    assert runs[0].algorithm == "extra_trees"


def test_tune_rejects_bad_input(easy):
    X, y = easy
    pipe = build_pipeline([], make_classifier("logistic"))
    with pytest.raises(ValueError, match="non-numeric.*cohort"):
        tune(pipe, X.assign(cohort="training"), y, search="none")
    with pytest.raises(ValueError, match="0/1"):
        tune(pipe, X, y + 1, search="none")
    with pytest.raises(ValueError, match="lower cv"):
        tune(pipe, X.iloc[:12], pd.Series([0] * 10 + [1, 1], index=X.index[:12]), search="none", cv=5)
    with pytest.raises(ValueError, match="lower smote_k_neighbors"):
        tune(build_pipeline([], make_classifier("logistic"), smote=True, smote_k_neighbors=5),
             X.iloc[:40], pd.Series([0] * 33 + [1] * 7, index=X.index[:40]), search="none", cv=3)  # fmt: skip
    with pytest.raises(TypeError, match="function trial -> dict"):
        tune(pipe, X, y, search="optuna", param_space={"classifier__C": [1.0]})
    with pytest.raises(ValueError, match="search must be"):
        tune(pipe, X, y, search="random")
    with pytest.raises(ValueError, match="y has no value for 3 patient"):
        tune(pipe, X, y.iloc[:-3], search="none")


def test_labels_follow_patients_not_row_order(easy):
    X, y = easy
    pipe = build_pipeline([("scale", StandardScaler())], make_classifier("logistic"))
    a = tune(pipe, X, y, search="none", cv=3)
    b = tune(pipe, X, y.sample(frac=1, random_state=0), search="none", cv=3)
    pd.testing.assert_series_equal(a.oof_proba_, b.oof_proba_)


# --------------------------------------------------------------------------- leakage guards

_LOG: dict[str, list] = defaultdict(list)  # module-level: clones inside CV would deep-copy a log passed as parameter


class _RowRecorder(TransformerMixin, BaseEstimator):
    """Passes X through; logs the row ids (column 0) it is fitted on and transforms."""

    def __init__(self, key: str = "recorder"):
        self.key = key

    def fit(self, X, y=None):
        _LOG[self.key].append(("fit", np.asarray(X)[:, 0].copy()))
        return self

    def transform(self, X):
        _LOG[self.key].append(("transform", np.asarray(X)[:, 0].copy()))
        return np.asarray(X)


class _SpyClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression that logs every matrix it is fitted on or predicts."""

    def __init__(self, key: str = "spy", C: float = 1.0):
        self.key = key
        self.C = C

    def fit(self, X, y):
        _LOG[self.key].append(("fit", np.asarray(X).copy(), np.asarray(y).copy()))
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        _LOG[self.key].append(("predict", np.asarray(X).copy()))
        return self.model_.predict_proba(X)


class _Memoriser(ClassifierMixin, BaseEstimator):
    """Returns the label of a row it was trained on (by id in column 0), and 0.5 for any row it never saw."""

    def fit(self, X, y):
        self.memory_ = dict(zip(np.asarray(X)[:, 0].tolist(), np.asarray(y).tolist(), strict=True))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = np.array([self.memory_.get(v, 0.5) for v in np.asarray(X)[:, 0].tolist()], dtype=float)
        return np.column_stack([1 - p, p])


def _with_ids(X: pd.DataFrame) -> pd.DataFrame:
    """Column 0 = a unique integer row id, so logged matrices can be traced back to patients."""
    return X.assign(row_id=np.arange(len(X), dtype=float))[["row_id", *X.columns]]


def _on_segment(s: np.ndarray, A: np.ndarray) -> bool:
    """Whether s = a_i + lam * (a_j - a_i) for some rows a_i, a_j of A and 0 <= lam <= 1 (a SMOTE interpolation)."""
    d = A[None, :, :] - A[:, None, :]  # d[i, j] = a_j - a_i
    r = s[None, :] - A  # r[i] = s - a_i
    norm = np.einsum("ijk,ijk->ij", d, d)
    lam = np.einsum("ijk,ik->ij", d, r) / np.where(norm > 0, norm, 1)
    resid = np.linalg.norm(r[:, None, :] - lam[..., None] * d, axis=2)
    return bool(np.any((resid < 1e-8) & (lam >= -1e-12) & (lam <= 1 + 1e-12)))


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("search", ["none", "grid"])
def test_smote_and_selection_only_ever_see_training_folds(easy, search, cache):
    """Leakage guard (a): every fit sees training-fold rows only; SMOTE interpolates training-fold minority rows only;
    validation folds and test patients are predicted as they are, never resampled. With the selection cache the steps
    before the classifier are fitted once per training set (4 folds + the final refit) and reused by every candidate."""
    X, y = easy
    X = _with_ids(X)
    _LOG.clear()
    pipe = build_pipeline([("rec", _RowRecorder("pre"))], _SpyClassifier("post"), smote=True, smote_k_neighbors=3, random_state=0)
    space = {"classifier__C": [0.1, 1.0]} if search == "grid" else None
    model = tune(pipe, X, y, search=search, param_space=space, cv=4, random_state=0, cache_selection=cache)
    ids, folds = X["row_id"].to_numpy(), model.fold_.to_numpy()
    train_sets = [set(ids[folds != k]) for k in range(4)] + [set(ids)]  # the 4 folds, then the final refit on all patients
    pre_fits = [rows for kind, rows in _LOG["pre"] if kind == "fit"]
    post_fits = [(e[1], e[2]) for e in _LOG["post"] if e[0] == "fit"]
    assert len(post_fits) == (5 if search == "none" else 2 * 4 + 5)
    fitted_on = [frozenset(rows.tolist()) for rows in pre_fits]
    assert all(rows in train_sets for rows in fitted_on)  # exactly one training fold (or all, final refit)
    if cache or search == "none":
        assert len(set(fitted_on)) == len(fitted_on) == 5  # each training set once
    else:
        assert len(fitted_on) == 2 * 4 + 5  # every candidate refits the steps
    for Xf, yf in post_fits:
        # SMOTE keeps the originals first (in patient order), then appends synthetic rows.
        train = next(s for s in train_sets if len(s) <= len(Xf) and set(Xf[: len(s), 0].tolist()) == s)
        n = len(train)
        assert np.array_equal(Xf[:n, 0], ids[np.isin(ids, list(train))])
        minority = Xf[:n][yf[:n] == 1]
        synthetic = Xf[n:]
        assert len(synthetic) == (yf[:n] == 0).sum() - (yf[:n] == 1).sum() > 0  # balanced from this fold's counts
        assert np.all(yf[n:] == 1)
        assert all(_on_segment(s, minority) for s in synthetic)  # built only from this fold's minority patients
        if len(train) < len(ids):
            held_out = set(ids) - train
            assert not held_out & set(Xf[:, 0].tolist())  # no validation patient reaches the classifier's fit
    for kind, Xp in [(e[0], e[1]) for e in _LOG["post"] if e[0] == "predict"]:
        assert any(set(Xp[:, 0].tolist()) == set(ids[folds == k]) for k in range(4))  # validation folds as they are
    # Test cohort: predicted row for row, no resampling.
    _LOG["post"].clear()
    X_test = X.iloc[:17] + 0.5
    proba = model.predict_proba(X_test)
    (kind, Xp), = [(e[0], e[1]) for e in _LOG["post"]]  # fmt: skip
    assert kind == "predict" and proba.shape == (17, 2) and np.array_equal(Xp, X_test.to_numpy())


def test_threshold_and_pipeline_are_unchanged_by_predicting_a_shifted_cohort(easy):
    """Leakage guard (b): predicting another cohort (here shifted by +3 SD) changes nothing that was fitted."""
    X, y = easy
    model = tune(build_pipeline(scaled_selected(), make_classifier("random_forest", n_estimators=15), smote=True), X, y, search="none", cv=3)
    before = (joblib.hash(model.pipeline_), model.threshold_, model.predict_proba(X))
    shifted = X * 1.5 + 3.0
    called = model.predict(shifted)
    assert set(np.unique(called)) <= {0, 1}
    assert np.array_equal(called, (model.positive_proba(shifted).to_numpy() >= before[1]).astype(int))
    after = (joblib.hash(model.pipeline_), model.threshold_, model.predict_proba(X))
    assert before[0] == after[0] and before[1] == after[1] and np.array_equal(before[2], after[2])
    # Each patient's probability depends on that patient only (nothing is learned from the test cohort as a whole).
    assert np.array_equal(model.predict_proba(shifted.iloc[:5]), model.predict_proba(shifted)[:5])


def test_out_of_fold_predictions_are_out_of_fold(easy):
    """Leakage guard (c): a memorising classifier returns the true label for any row it was trained on. Out-of-fold
    it must know nothing (0.5 everywhere), while in-sample it is perfect; the threshold comes from the OOF side."""
    X, y = easy
    model = tune(build_pipeline([], _Memoriser()), _with_ids(X), y, search="none", cv=5)
    assert np.all(model.oof_proba_ == 0.5) and model.oof_auc_ == 0.5
    assert np.array_equal(model.positive_proba(_with_ids(X)).to_numpy(), y.to_numpy())  # in-sample: memorised
    assert model.threshold_ == youden_threshold(y, model.oof_proba_)


def test_threshold_is_chosen_out_of_fold_not_in_sample(easy):
    X, y = easy
    model = tune(build_pipeline([], make_classifier("random_forest", n_estimators=25)), X, y, search="none", cv=5)
    assert model.threshold_ == youden_threshold(y, model.oof_proba_)
    in_sample = model.positive_proba(X)
    assert roc_auc_score(y, in_sample) > model.oof_auc_  # in-sample forests are over-fitted
    assert model.threshold_ != youden_threshold(y, in_sample)


def test_planted_signal_is_recovered_without_optimism():
    """A logistic truth on 2 of 20 features: CV AUC close to the AUC of the true risk (the ceiling), not above it."""
    for seed in range(2):
        rng = np.random.default_rng(100 + seed)
        X = rng.normal(size=(200, 20))
        risk = 2 * X[:, 0] + 2 * X[:, 1]
        y = (rng.random(200) < 1 / (1 + np.exp(-risk))).astype(int)
        ceiling = roc_auc_score(y, risk)
        model = tune(build_pipeline(scaled_selected(k=5), make_classifier("logistic")), X, y, search="none", random_state=seed)
        assert model.cv_auc_mean_ > 0.85
        assert ceiling - 0.06 < model.cv_auc_mean_ < ceiling + 0.02


def test_selection_inside_cv_shows_no_optimism_on_noise():
    """Pure noise, 300 features, 60 patients: with selection inside the pipeline the CV AUC stays at chance over several
    seeds, whereas selecting on all patients before CV (the leak this design prevents) looks predictive."""
    honest, leaky = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(60, 300))
        y = rng.permutation(np.r_[np.zeros(30), np.ones(30)]).astype(int)
        honest.append(tune(build_pipeline(scaled_selected(k=10), make_classifier("logistic")), X, y, search="none", random_state=seed).cv_auc_mean_)
        keep = SelectKBest(f_classif, k=10).fit(X, y).get_support()
        leaky.append(tune(build_pipeline([("scale", StandardScaler())], make_classifier("logistic")), X[:, keep], y, search="none",
                          random_state=seed).cv_auc_mean_)  # fmt: skip
    assert abs(np.mean(honest) - 0.5) < 0.15 and max(honest) < 0.7
    assert np.mean(leaky) > 0.75


# --------------------------------------------------------------------------- selection fitted once per fold (cache)


class _CountingSelector(TransformerMixin, BaseEstimator):
    """Keeps the k columns with the largest absolute class-mean difference; logs (k, patients) of every fit."""

    def __init__(self, k: int = 3):
        self.k = k

    def fit(self, X, y):
        if self.k < 1:
            raise ValueError("k must be at least 1")
        _LOG["count"].append((self.k, frozenset(X.index)))
        X, y = np.asarray(X), np.asarray(y)
        gap = np.abs(X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0))
        self.keep_ = np.sort(np.argsort(-gap, kind="stable")[: self.k])
        return self

    def transform(self, X):
        return np.asarray(X)[:, self.keep_]


def _planted(n: int = 80, p: int = 30, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(n_samples=n, n_features=p, n_informative=4, n_redundant=3, class_sep=1.0, random_state=seed)
    return frame(X, y)


def _selection_pipeline(steps: list[dict]) -> object:
    return build_pipeline(list(build_selector(steps).steps), make_classifier("logistic"))


def _assert_same_model(a, b, X) -> None:
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_, check_exact=True)
    assert a.best_params_ == b.best_params_ and a.threshold_ == b.threshold_
    np.testing.assert_array_equal(a.cv_auc_folds_, b.cv_auc_folds_)
    np.testing.assert_array_equal(a.oof_proba_.to_numpy(), b.oof_proba_.to_numpy())
    np.testing.assert_array_equal(a.fold_.to_numpy(), b.fold_.to_numpy())
    np.testing.assert_array_equal(a.positive_proba(X).to_numpy(), b.positive_proba(X).to_numpy())
    np.testing.assert_array_equal(a.predict(X + 0.3), b.predict(X + 0.3))


_SELECTION_SEARCHES = {
    # grid: a selection parameter (mrmr__k) searched with the classifier's C
    "grid": ([{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.2, "min_features": 2}, {"step": "mrmr", "k": 6}],
             {"classifier__C": [0.01, 0.1, 1.0, 10.0], "mrmr__k": [3, 6]}),
    # optuna: LASSO selection, its lambda rule searched with C
    "optuna": ([{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.2, "min_features": 2},
                {"step": "lasso", "Cs": 4, "cv": 3, "random_state": 1}],
               lambda t: {"classifier__C": t.suggest_float("C", 1e-2, 1e2, log=True),
                          "lasso__lambda_rule": t.suggest_categorical("rule", ["min", "1se"])}),
}  # fmt: skip


@pytest.mark.parametrize("search", ["grid", "optuna"])
def test_cached_selection_gives_identical_results(search):
    """The selection cache changes nothing: scores of every candidate, best parameters, out-of-fold probabilities and
    the refitted model's predictions are bitwise those of refitting every step for every candidate."""
    X, y = _planted()
    steps, space = _SELECTION_SEARCHES[search]
    runs = [tune(_selection_pipeline(steps), X, y, search=search, param_space=space, cv=3, n_trials=4, random_state=2,
                 cache_selection=cache) for cache in (False, True)]  # fmt: skip
    _assert_same_model(*runs, X)
    assert runs[1].pipeline_.memory is None  # the returned model does not point at the removed cache folder
    assert len(runs[0].cv_results_) == (8 if search == "grid" else 4)


@pytest.mark.slow
def test_cached_selection_does_not_depend_on_n_jobs():
    X, y = _planted()
    steps, space = _SELECTION_SEARCHES["grid"]
    serial = tune(_selection_pipeline(steps), X, y, param_space=space, cv=4, random_state=2, cache_selection=False)
    parallel = tune(_selection_pipeline(steps), X, y, param_space=space, cv=4, random_state=2, n_jobs=2)
    _assert_same_model(serial, parallel, X)


def _counted_fits(easy, search: str, cache: bool) -> tuple[list[tuple[int, frozenset]], object]:
    X, y = easy
    _LOG["count"].clear()
    pipe = build_pipeline([("count", _CountingSelector()), ("scale", StandardScaler())], make_classifier("logistic"))
    space = ({"count__k": [2, 4], "classifier__C": [0.1, 1.0, 10.0]} if search == "grid" else
             lambda t: {"count__k": t.suggest_categorical("k", [2, 4]), "classifier__C": t.suggest_float("C", 0.01, 10, log=True)})
    model = tune(pipe, X, y, search=search, param_space=space, cv=4, n_trials=6, random_state=0, cache_selection=cache)
    return list(_LOG["count"]), model


@pytest.mark.parametrize("search", ["grid", "optuna"])
def test_selection_is_fitted_once_per_fold_and_selection_parameters(easy, search):
    """With the cache each (training fold, selection parameters) pair is fitted exactly once, on that training fold
    only; the out-of-fold pass reuses the search's fits and only the final refit on all patients is new."""
    X, _ = easy
    fits, model = _counted_fits(easy, search, cache=True)
    folds = model.fold_.to_numpy()
    train_sets = {frozenset(X.index[folds != k]) for k in range(4)}
    ks = sorted({p["count__k"] for p in model.cv_results_["params"]})
    assert len(ks) == 2 or search == "optuna"
    assert len(fits) == len(set(fits)) == len(ks) * 4 + 1
    assert {(k, rows) for k, rows in fits if rows != frozenset(X.index)} == {(k, rows) for k in ks for rows in train_sets}
    assert fits[-1] == (model.best_params_["count__k"], frozenset(X.index))  # the final refit, best k, all patients
    uncached, _ = _counted_fits(easy, search, cache=False)
    n_candidates = len(model.cv_results_)
    assert len(uncached) == n_candidates * 4 + 4 + 1  # before: every candidate, then the out-of-fold pass and the refit


def test_model_grid_shares_fitted_selection_between_algorithms(easy):
    """The selection does not depend on the algorithm: the algorithms of one block share each fold's fitted steps."""
    X, y = easy
    _LOG["count"].clear()
    steps = lambda: [("count", _CountingSelector(k=3)), ("scale", StandardScaler())]
    kwargs = {"algorithms": ["logistic", "extra_trees"], "steps_factory": steps, "search": "none", "cv": 4,
              "classifier_params": {"extra_trees": {"n_estimators": 10}}}  # fmt: skip
    cached = model_grid({"CT / tumour": X}, y, **kwargs)
    assert len(_LOG["count"]) == 4 + 1  # 4 training folds and the refit on all patients, for both algorithms
    _LOG["count"].clear()
    uncached = model_grid({"CT / tumour": X}, y, **kwargs, cache_selection=False)
    assert len(_LOG["count"]) == 2 * (4 + 1)
    pd.testing.assert_frame_equal(cached, uncached, check_exact=True)


def test_selection_cache_is_emptied_writes_nothing_and_skips_unpicklable_steps(easy, tmp_path, monkeypatch):
    """The cache lives in memory for one tuning (or one ``with`` block) and is emptied afterwards, also after an error;
    no file is written; the returned model does not hold it; steps that cannot be hashed (a lambda) run uncached."""
    X, y = easy
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    pipe = build_pipeline([("count", _CountingSelector()), ("scale", StandardScaler())], make_classifier("logistic"))
    model = tune(pipe, X, y, param_space={"classifier__C": [0.1, 1.0]}, cv=3)
    assert model.pipeline_.memory is None and pipe.memory is None
    with pytest.raises(ValueError, match="k must be at least 1"):
        tune(pipe.set_params(count__k=0), X, y, param_space={"classifier__C": [0.1, 1.0]}, cv=3)
    pipe.set_params(count__k=3)
    with pytest.raises(RuntimeError, match="interrupted"), selection_cache() as memory:
        tune(pipe, X, y, param_space={"classifier__C": [0.1, 1.0]}, cv=3, selection_memory=memory)
        assert len(memory) == 2 * (3 + 1) and memory.hits == 2 * 3 + 2 * 3  # 2 steps x (3 folds + refit); reused
        raise RuntimeError("interrupted")
    assert len(memory) == 0
    with selection_cache(enabled=False) as memory:
        assert memory is None
    lam = build_pipeline([("select", SelectKBest(lambda a, b: f_classif(a, b), k=3))], make_classifier("logistic"))
    runs = [tune(lam, X, y, param_space={"classifier__C": [0.1, 1.0]}, cv=3, cache_selection=c) for c in (False, True)]
    _assert_same_model(*runs, X)
    assert not list(scratch.iterdir())  # nothing written to the temporary directory (nor anywhere else)


# --------------------------------------------------------------------------- persistence


def test_save_load_roundtrip(easy, tmp_path):
    X, y = easy
    model = tune(build_pipeline(scaled_selected(), make_classifier("xgboost", n_estimators=10)), X, y, search="grid",
                 param_space={"classifier__max_depth": [2, 3]}, cv=3, training_cohort="training")  # fmt: skip
    sidecar = save_model(model, tmp_path / "models" / "xgb.joblib")
    meta = json.loads(sidecar.read_text())
    assert sidecar.name == "xgb.json"
    assert meta["algorithm"] == "xgboost" and meta["training_cohort"] == "training" and meta["random_state"] == 0
    assert meta["threshold"] == model.threshold_ and meta["features"] == list(X.columns)
    assert meta["params"] == {"classifier__max_depth": model.best_params_["classifier__max_depth"]}
    assert {"python", "numpy", "sklearn", "imblearn", "xgboost"} <= set(meta["versions"]) and "catboost" not in meta["versions"]
    loaded = load_model(tmp_path / "models" / "xgb.joblib")
    assert isinstance(loaded, FittedModel) and loaded.threshold_ == model.threshold_
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(loaded.predict(X[list(reversed(X.columns))]), model.predict(X))  # columns are matched by name
    first = (tmp_path / "models" / "xgb.joblib").read_bytes()
    save_model(model, tmp_path / "models" / "xgb.joblib")
    assert (tmp_path / "models" / "xgb.joblib").read_bytes() == first and json.loads(sidecar.read_text()) == meta  # byte-stable


def test_load_model_checks_versions_and_integrity(easy, tmp_path):
    X, y = easy
    model = tune(build_pipeline([("scale", StandardScaler())], make_classifier("logistic")), X, y, search="none", cv=3)
    path = tmp_path / "m.joblib"
    sidecar = save_model(model, path)
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "versions": {**meta["versions"], "sklearn": "0.0.1"}}))
    with pytest.warns(ModelVersionWarning, match="sklearn saved 0.0.1"):
        load_model(path)
    with pytest.raises(ModelVersionError, match="sklearn saved 0.0.1"):
        load_model(path, strict=True)
    sidecar.write_text(json.dumps({**meta, "versions": {**meta["versions"], "no_such_library": "1.0"}}))
    with pytest.raises(ModelVersionError, match="not installed"):
        load_model(path)
    sidecar.write_text(json.dumps(meta))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="changed since it was saved"):
        load_model(path)
    sidecar.unlink()
    with pytest.raises(ModelFileError, match="sidecar .* is missing"):
        load_model(path)
    with pytest.raises(ValueError, match="sidecar"):
        save_model(model, tmp_path / "m.json")
    with pytest.raises(ValueError, match="training feature"):
        model.predict(X.drop(columns=["f0"]))


# --------------------------------------------------------------------------- blocks, grid, heatmap


def _two_block_problem(n: int, seed: int) -> tuple[dict, pd.Series]:
    """Two 5-feature blocks, each carrying an independent half of a logistic signal."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * a[:, 0] + 1.5 * b[:, 0])))).astype(int)
    A, labels = frame(a, y, "a")
    B, _ = frame(b, y, "b")
    return {"CT / tumour": A, "PET / tumour": B}, labels


def test_feature_blocks_and_fusion():
    table = pd.DataFrame({"cohort": ["t", "t"], "MR_T1_tumour_original_firstorder_Mean": [1.0, 2.0],
                          "MR_T1_ring_original_firstorder_Mean": [3.0, 4.0], "CT_tumour_original_shape_Sphericity": [5.0, 6.0]},
                         index=pd.Index(["P1", "P2"], name="patient"))  # fmt: skip
    blocks = feature_blocks(table, series=["CT", "MR_T1"], rois=["tumour", "ring"])
    assert list(blocks) == [("CT", "tumour"), ("MR_T1", "tumour"), ("MR_T1", "ring")]
    fused = feature_fusion(blocks)
    assert list(fused.columns) == ["CT_tumour__CT_tumour_original_shape_Sphericity", "MR_T1_tumour__MR_T1_tumour_original_firstorder_Mean",
                                   "MR_T1_ring__MR_T1_ring_original_firstorder_Mean"]  # fmt: skip
    assert list(fused.index) == ["P1", "P2"] and fused.index.name == "patient"
    short = {"a": blocks[("CT", "tumour")], "b": blocks[("MR_T1", "ring")].iloc[:1]}
    with pytest.raises(ValueError, match="different patients"):
        feature_fusion(short)
    assert feature_fusion(short, join="inner").shape == (1, 2)
    assert feature_fusion(short, join="outer").isna().sum().sum() == 1
    with pytest.raises(ValueError, match="share the column prefix"):
        feature_fusion({"CT / tumour": blocks[("CT", "tumour")], ("CT", "tumour"): blocks[("CT", "tumour")]})


def test_model_grid_and_heatmap():
    train, y_train = _two_block_problem(80, seed=0)
    test, y_test = _two_block_problem(60, seed=1)
    made = []

    def steps():
        made.append([("scale", StandardScaler()), ("select", SelectKBest(f_classif, k=3))])
        return made[-1]

    grid, models = model_grid(
        train, y_train, test, y_test, algorithms=["logistic", "extra_trees"], steps_factory=steps, search="grid", cv=3,
        labels={"extra_trees": "Extra trees"}, param_spaces={"extra_trees": {"classifier__max_depth": [2, None]}},
        classifier_params={"extra_trees": {"n_estimators": 10}}, return_models=True,
    )  # fmt: skip
    assert grid.shape[0] == 4 and len(models) == 4
    assert list(grid["block"]) == ["CT / tumour"] * 2 + ["PET / tumour"] * 2
    assert list(grid["algorithm_label"]) == ["logistic", "Extra trees"] * 2
    assert grid[["cv_auc_mean", "cv_auc_sd", "oof_auc", "test_auc", "test_sensitivity", "test_specificity"]].notna().all().all()
    assert (grid["test_auc"] > 0.6).all() and (grid["n_features"] == 5).all()
    assert len({id(s[0][1]) for s in made}) == 4  # fresh selection steps for every model
    assert json.loads(grid.loc[1, "best_params"])["classifier__max_depth"] in (2, None)
    fig = auc_heatmap_figure(grid, value="test_auc", sd=None, title="held-out AUC")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [format(v, ".2f") for v in grid["test_auc"]]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CT / tumour", "PET / tumour"]
    plt.close(fig)
    fig = auc_heatmap_figure(grid, sd="cv_auc_sd")
    assert all("±" in t.get_text() for t in fig.axes[0].texts) and len(fig.axes) == 2  # heatmap + colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="no column"):
        auc_heatmap_figure(grid, value="auc")
    with pytest.raises(ValueError, match="without y_test"):
        model_grid(train, y_train, test, None, algorithms=["logistic"], search="none")


# --------------------------------------------------------------------------- stacking


def _stacker(cv: int = 5) -> ScoreStacker:
    base = lambda: build_pipeline([("scale", StandardScaler())], make_classifier("logistic"))
    return ScoreStacker(estimators=[("ct", base(), "CT / tumour"), ("pet", base(), "PET / tumour")], cv=cv, random_state=0)


def test_stacking_matches_or_beats_the_best_base_model():
    train, y_train = _two_block_problem(200, seed=2)
    test, y_test = _two_block_problem(1000, seed=3)
    X_train, X_test = feature_fusion(train), feature_fusion(test)
    stack = _stacker().fit(X_train, y_train)
    base_auc = roc_auc_score(np.repeat(y_test.to_numpy()[:, None], 2, axis=1), stack.base_scores(X_test).to_numpy(), average=None)
    stack_auc = roc_auc_score(y_test, stack.predict_proba(X_test)[:, 1])
    assert stack_auc >= max(base_auc) - 0.005
    assert stack_auc > max(base_auc)  # independent halves of the signal: fusion should help
    assert (stack.meta_coef_ > 0).all()
    assert set(stack.predict(X_test)) <= {0, 1} and stack.threshold_ == youden_threshold(y_train, stack.oof_proba_)


def test_stacking_uses_only_out_of_fold_training_scores():
    train, y_train = _two_block_problem(120, seed=4)
    test, _ = _two_block_problem(50, seed=5)
    X_train, X_test = feature_fusion(train), feature_fusion(test)
    stack = _stacker(cv=4)
    fitted = clone(stack).fit(X_train, y_train)
    assert not hasattr(stack, "meta_model_")  # clone-able; fit never touches the given estimators
    assert not hasattr(stack.estimators[0][1].named_steps["classifier"], "coef_")
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    expected = {
        name: cross_val_predict(build_pipeline([("scale", StandardScaler())], make_classifier("logistic")),
                                X_train[[c for c in X_train.columns if c.startswith(prefix)]], y_train, cv=folds,
                                method="predict_proba")[:, 1]
        for name, prefix in [("ct", "CT_tumour__"), ("pet", "PET_tumour__")]
    }  # fmt: skip
    assert np.allclose(fitted.oof_scores_["ct"], expected["ct"]) and np.allclose(fitted.oof_scores_["pet"], expected["pet"])
    in_sample = fitted.base_scores(X_train)
    assert not np.allclose(in_sample.to_numpy(), fitted.oof_scores_.to_numpy())  # the meta-model did not see in-sample scores
    logits = np.log(fitted.oof_scores_ / (1 - fitted.oof_scores_)).to_numpy()
    meta = LogisticRegression(random_state=0, max_iter=5000).fit(logits, y_train)
    assert np.allclose(meta.coef_, fitted.meta_model_.coef_)
    state = joblib.hash(fitted)
    batch = fitted.predict_proba(X_test)
    # No test information shared between patients: the same probabilities for a patient alone or in a batch, up to the
    # last bit of BLAS's blocked matrix product (1 ulp differences depend on the batch size, a leak would be far larger).
    np.testing.assert_allclose(batch[:7], fitted.predict_proba(X_test.iloc[:7]), rtol=0, atol=1e-15)
    assert joblib.hash(fitted) == state
    with pytest.raises(ValueError, match="no column of block"):
        ScoreStacker(estimators=[("mr", build_pipeline([], make_classifier("logistic")), "MR / tumour")]).fit(X_train, y_train)


def test_stacker_inside_tune_gives_nested_out_of_fold_estimate():
    train, y_train = _two_block_problem(100, seed=6)
    model = tune(_stacker(cv=3), feature_fusion(train), y_train, search="none", cv=3)
    assert model.algorithm == "stacking" and 0.6 < model.cv_auc_mean_ <= 1.0
    assert "helpers" in model.metadata()["versions"]


@pytest.mark.parametrize("recalibration", ["none", "sigmoid"])
def test_model_grid_in_parallel_processes_gives_identical_results(recalibration):
    """``n_jobs`` fits blocks in loky processes: the table, every out-of-fold probability, threshold and held-out
    probability are bitwise those of the sequential grid (each fit is seeded and single-threaded)."""
    train, y_train = _two_block_problem(80, seed=0)
    test, y_test = _two_block_problem(60, seed=1)
    train = {**train, "MR / ring": train["CT / tumour"] * 2.0 + 1.0}
    test = {**test, "MR / ring": test["CT / tumour"] * 2.0 + 1.0}
    kwargs = {"algorithms": ["logistic", "svm", "random_forest", "xgboost", "lightgbm", "catboost"],
              "steps_factory": scaled_selected, "search": "none", "cv": 3, "recalibration": recalibration,
              "classifier_params": {"random_forest": {"n_estimators": 20}, "xgboost": {"n_estimators": 20},
                                    "lightgbm": {"n_estimators": 20}, "catboost": {"iterations": 20}},
              "return_models": True}  # fmt: skip
    grid_seq, models_seq = model_grid(train, y_train, test, y_test, **kwargs)
    grid_par, models_par = model_grid(train, y_train, test, y_test, n_jobs=2, **kwargs)
    pd.testing.assert_frame_equal(grid_seq, grid_par, check_exact=True)
    assert list(models_seq) == list(models_par) and len(models_seq) == 3 * 6
    for key, model in models_seq.items():
        other = models_par[key]
        block = test[key[0]]
        assert np.array_equal(model.oof_proba_.to_numpy(), other.oof_proba_.to_numpy()), key
        assert model.threshold_ == other.threshold_, key
        assert np.array_equal(model.positive_proba(block).to_numpy(), other.positive_proba(block).to_numpy()), key


@pytest.mark.parametrize("n_jobs", [0, -1, 1.5, "2"])
def test_model_grid_refuses_a_bad_n_jobs(easy, n_jobs):
    X, y = easy
    with pytest.raises(ValueError, match="n_jobs must be a positive integer"):
        model_grid({"b": X}, y, algorithms=["logistic"], search="none", n_jobs=n_jobs)
