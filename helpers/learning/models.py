"""Classifiers, leakage-free tuning, operating thresholds, persistence, model grids and fusion.

Every fitted quantity is learned from training patients only:

- preprocessing, feature selection, SMOTE and the classifier live in one
  imbalanced-learn :class:`~imblearn.pipeline.Pipeline` (:func:`build_pipeline`),
  so cross-validation refits all of them inside every training fold; SMOTE
  resamples only in ``fit`` and never at prediction time;
- hyperparameters are chosen by stratified, shuffled, seeded k-fold CV on the
  training cohort (:func:`tune`: grid search or a seeded optuna TPE study);
  the steps before the classifier are fitted once per training fold and
  parameter set, not once per candidate (:func:`selection_cache`);
- the operating threshold (Youden's J, :func:`youden_threshold`) is chosen on
  the training patients' *out-of-fold* probabilities and applied unchanged to
  every other cohort;
- no class weighting by default (``class_weight="balanced"`` is opt-in); a
  model trained with class weights or SMOTE can be recalibrated
  (:func:`tune`'s ``recalibration``): Platt's sigmoid or isotonic regression
  fitted on the training patients' out-of-fold scores only
  (:mod:`helpers.learning.recalibration`), equal to scikit-learn's
  ``CalibratedClassifierCV(ensemble=False)`` on the same folds; the threshold
  is then chosen on the recalibrated out-of-fold probabilities;
- score-level stacking (:class:`ScoreStacker`) trains its meta-model on the
  base models' out-of-fold training probabilities only.

Classifiers are single-threaded and seeded (:func:`make_classifier`), so the
same seed gives identical predictions; parallelism is left to the caller
(e.g. one process per model of :func:`model_grid`). The AUC heatmap of a model
grid is :func:`helpers.figures.models.auc_heatmap_figure`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import numbers
import pickle
import platform
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
from joblib import Parallel, delayed
import numpy as np
import pandas as pd
import scipy.sparse as sp
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.utils.validation import check_is_fitted

from helpers._alignment import align_series, align_to_index
from helpers.errors import ModelFileError, ModelVersionError, ModelVersionWarning, StudyError, UnknownAlgorithmError  # noqa: F401  (defined in helpers.errors)
from helpers.learning.recalibration import (
    ProbabilityCalibrator,
    cross_fitted_probabilities,
    response_method,
    response_scores,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna
    from imblearn.pipeline import Pipeline

__all__ = [
    "ALGORITHMS",
    "CLASS_WEIGHT_ALGORITHMS",
    "DEFAULT_PARAMS",
    "FittedModel",
    "ModelFileError",
    "ModelVersionError",
    "ModelVersionWarning",
    "ScoreStacker",
    "SearchSpace",
    "StepCache",
    "TunedModel",
    "UnknownAlgorithmError",
    "build_pipeline",
    "class_weight_for",
    "default_search_space",
    "feature_blocks",
    "feature_fusion",
    "load_model",
    "make_classifier",
    "model_grid",
    "save_model",
    "selection_cache",
    "tune",
    "youden_threshold",
]

#: Algorithms known to :func:`make_classifier` and :func:`default_search_space`.
ALGORITHMS = ("logistic", "svm", "random_forest", "extra_trees", "xgboost", "lightgbm", "catboost")

#: Defaults for small radiomics cohorts (tens to a few hundred patients), passed to the library estimator.
#: No class weighting (probabilities estimate the event probability at the training prevalence; see
#: :func:`make_classifier`'s ``class_weight``); boosting is shallow with a small learning rate and row/column
#: subsampling; forests use bushy trees with a leaf floor of 2. Everything is single-threaded and silent so
#: results are reproducible and parallelism is left to the caller.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # L2 penalty (sklearn's default l1_ratio=0); needs standardised features (put a scaler in the steps).
    "logistic": {"C": 1.0, "solver": "lbfgs", "max_iter": 5000},
    # RBF SVC; probabilities by Platt scaling in CalibratedClassifierCV(cv=3, ensemble=False), see make_classifier.
    "svm": {"C": 1.0, "kernel": "rbf", "gamma": "scale"},
    "random_forest": {"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 2, "n_jobs": 1},
    "extra_trees": {"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 2, "n_jobs": 1},
    "xgboost": {
        "n_estimators": 200, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8, "colsample_bytree": 0.8,
        "min_child_weight": 1, "reg_lambda": 1.0, "tree_method": "hist", "eval_metric": "logloss", "n_jobs": 1, "verbosity": 0,
    },
    "lightgbm": {
        # min_child_samples=5 (library default 20) so that trees can split at all in folds of ~25 patients.
        "n_estimators": 200, "learning_rate": 0.05, "max_depth": 3, "num_leaves": 31, "min_child_samples": 5,
        "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
        "n_jobs": 1, "verbose": -1, "deterministic": True, "force_row_wise": True,
    },
    "catboost": {
        # allow_writing_files=False: CatBoost otherwise writes a catboost_info/ folder into the working directory.
        "iterations": 300, "learning_rate": 0.05, "depth": 4, "l2_leaf_reg": 3.0,
        "thread_count": 1, "verbose": False, "allow_writing_files": False,
    },
}  # fmt: skip

#: Algorithms whose library estimator takes scikit-learn's ``class_weight`` (``balanced``: weights inversely proportional
#: to the class frequencies of the data it is fitted on). The boosting libraries are always fitted unweighted.
CLASS_WEIGHT_ALGORITHMS = ("logistic", "svm", "random_forest", "extra_trees")
_CLASS_WEIGHTS = (None, "none", "balanced")

_SVM_CALIBRATION_FOLDS = 3
_RESERVED_STEPS = ("smote", "classifier")
_CORE_MODULES = ("numpy", "scipy", "pandas", "sklearn", "imblearn", "joblib")
_TRACKED_MODULES = ("sklearn", "imblearn", "xgboost", "lightgbm", "catboost", "helpers")


# --------------------------------------------------------------------------- classifiers and search spaces


def _unknown(name: object) -> UnknownAlgorithmError:
    return UnknownAlgorithmError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}")


def class_weight_for(algorithm: str, class_weight: str | None) -> str | None:
    """The ``class_weight`` :func:`make_classifier` gets for an algorithm under a study-wide setting.

    ``"balanced"`` for an algorithm of :data:`CLASS_WEIGHT_ALGORITHMS` when the setting is ``"balanced"``; ``None``
    otherwise (the boosting algorithms are never weighted).
    """
    if class_weight not in _CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be 'none' or 'balanced', got {class_weight!r}")
    return "balanced" if class_weight == "balanced" and algorithm in CLASS_WEIGHT_ALGORITHMS else None


def make_classifier(name: str, random_state: int = 0, *, class_weight: str | None = None, **params: Any) -> BaseEstimator:
    """A seeded, single-threaded binary classifier with small-cohort defaults.

    Parameters
    ----------
    name : str
        One of :data:`ALGORITHMS`: ``logistic`` (``LogisticRegression``),
        ``svm`` (RBF ``SVC`` with Platt-scaled probabilities), ``random_forest``,
        ``extra_trees``, ``xgboost`` (``XGBClassifier``), ``lightgbm``
        (``LGBMClassifier``) or ``catboost`` (``CatBoostClassifier``).
    random_state : int
        Seed of the estimator (``random_seed`` for CatBoost); the same seed
        and data give identical probabilities.
    class_weight : {None, "none", "balanced"}
        ``None``/``"none"`` (default): every patient weighs the same, so the
        probabilities estimate the event probability at the training
        prevalence. ``"balanced"``: scikit-learn's class weights inversely
        proportional to the class frequencies (only for
        :data:`CLASS_WEIGHT_ALGORITHMS`); the probabilities are then pulled
        towards 0.5 and need recalibration (:func:`tune`'s ``recalibration``)
        to mean a risk.
    **params
        Override :data:`DEFAULT_PARAMS` of the algorithm; passed to the
        library estimator (for ``svm`` to the inner ``SVC``).

    Returns
    -------
    estimator
        An unfitted scikit-learn compatible classifier with ``predict_proba``.

    Notes
    -----
    ``SVC(probability=True)`` is deprecated in scikit-learn 1.9, and its
    internal 5-fold Platt scaling is random unless seeded. ``svm`` is therefore
    ``CalibratedClassifierCV(SVC(...), method="sigmoid", cv=3, ensemble=False)``:
    the sigmoid is fitted on 3-fold cross-validated decision values of the
    training data it is given (unshuffled folds, hence deterministic) and the
    SVC is refitted on all of it. Tune the SVC through the
    ``classifier__estimator__`` prefix (see :func:`default_search_space`).
    Linear models and the SVM assume standardised features: put a scaler in
    the pipeline steps.

    Raises
    ------
    UnknownAlgorithmError
        For a name not in :data:`ALGORITHMS` (the message lists them).
    ValueError
        For a ``class_weight`` other than None, ``"none"`` or ``"balanced"``,
        or ``"balanced"`` for an algorithm without class weights.
    """
    if name not in DEFAULT_PARAMS:
        raise _unknown(name)
    if class_weight not in _CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be None, 'none' or 'balanced', got {class_weight!r}")
    if class_weight == "balanced" and name not in CLASS_WEIGHT_ALGORITHMS:
        raise ValueError(f"class_weight='balanced' is not available for {name!r}; weighted algorithms: {', '.join(CLASS_WEIGHT_ALGORITHMS)}")
    weights = {"class_weight": "balanced"} if class_weight == "balanced" else {}
    kwargs = {**DEFAULT_PARAMS[name], **weights, **params}
    if name == "logistic":
        return LogisticRegression(random_state=random_state, **kwargs)
    if name == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        return CalibratedClassifierCV(SVC(random_state=random_state, **kwargs), method="sigmoid", cv=_SVM_CALIBRATION_FOLDS,
                                      ensemble=False, n_jobs=1)  # fmt: skip
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=random_state, **kwargs)
    if name == "extra_trees":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(random_state=random_state, **kwargs)
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=random_state, **kwargs)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=random_state, **kwargs)
    from catboost import CatBoostClassifier

    return CatBoostClassifier(random_seed=random_state, **kwargs)


@dataclass(frozen=True)
class SearchSpace:
    """Hyperparameter search space of one algorithm, with pipeline parameter names.

    Attributes
    ----------
    grid : dict of str to list
        For grid search (:class:`~sklearn.model_selection.GridSearchCV`).
    optuna : callable
        ``optuna(trial) -> dict`` of pipeline parameters suggested on an
        optuna trial (Bayesian search in :func:`tune`).
    """

    grid: dict[str, list]
    optuna: Callable[[optuna.trial.Trial], dict[str, Any]]


def default_search_space(name: str, step: str | None = "classifier") -> SearchSpace:
    """Small, sensible search spaces per algorithm for :func:`tune`.

    ============== ====================================================== ==========================================
    algorithm      grid                                                   optuna
    ============== ====================================================== ==========================================
    logistic       C in {0.01, 0.1, 1, 10}                                C log-uniform [1e-3, 1e2]
    svm            C in {0.1, 1, 10} x gamma in {scale, 0.01, 0.1}        C log [1e-2, 1e2], gamma log [1e-4, 1]
    random_forest  n_estimators {200, 500} x max_depth {3, 6, None}       n_estimators 100-800, max_depth 2-12,
    extra_trees    (same)                                                 min_samples_leaf 1-5, max_features
    xgboost        learning_rate {0.03, 0.1, 0.3} x max_depth {2, 3, 5}   learning_rate log [0.01, 0.3], max_depth
                                                                          2-6, n_estimators 50-500, subsample,
                                                                          colsample_bytree 0.5-1, min_child_weight
    lightgbm       learning_rate {0.03, 0.1, 0.3} x max_depth {2, 3, 5}   as xgboost, min_child_samples 3-15
    catboost       learning_rate {0.03, 0.1, 0.3} x depth {3, 4, 6}       learning_rate, depth 2-6, iterations
                                                                          100-500, l2_leaf_reg log [1, 10]
    ============== ====================================================== ==========================================

    Parameters
    ----------
    name : str
        One of :data:`ALGORITHMS`.
    step : str or None
        Name of the classifier step in the pipeline (:func:`build_pipeline`
        names it ``classifier``); ``None`` for a bare classifier.

    Returns
    -------
    SearchSpace
        Keys are pipeline parameter names, e.g. ``classifier__C`` or, for the
        calibrated SVM, ``classifier__estimator__C``.

    Raises
    ------
    UnknownAlgorithmError
        For a name not in :data:`ALGORITHMS`.
    """
    if name not in DEFAULT_PARAMS:
        raise _unknown(name)
    p = f"{step}__" if step else ""
    if name == "svm":
        p += "estimator__"

    if name == "logistic":
        grid = {"C": [0.01, 0.1, 1.0, 10.0]}

        def space(t):
            return {"C": t.suggest_float("C", 1e-3, 1e2, log=True)}

    elif name == "svm":
        grid = {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01, 0.1]}

        def space(t):
            return {"C": t.suggest_float("C", 1e-2, 1e2, log=True), "gamma": t.suggest_float("gamma", 1e-4, 1.0, log=True)}

    elif name in ("random_forest", "extra_trees"):
        grid = {"n_estimators": [200, 500], "max_depth": [3, 6, None]}

        def space(t):
            return {
                "n_estimators": t.suggest_int("n_estimators", 100, 800, step=100),
                "max_depth": t.suggest_int("max_depth", 2, 12),
                "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 5),
                "max_features": t.suggest_categorical("max_features", ["sqrt", "log2"]),
            }

    elif name in ("xgboost", "lightgbm"):
        grid = {"learning_rate": [0.03, 0.1, 0.3], "max_depth": [2, 3, 5]}
        child = ("min_child_weight", 1, 5) if name == "xgboost" else ("min_child_samples", 3, 15)

        def space(t):
            return {
                "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
                "max_depth": t.suggest_int("max_depth", 2, 6),
                "n_estimators": t.suggest_int("n_estimators", 50, 500, step=50),
                "subsample": t.suggest_float("subsample", 0.6, 1.0),
                "colsample_bytree": t.suggest_float("colsample_bytree", 0.5, 1.0),
                child[0]: t.suggest_int(child[0], child[1], child[2]),
            }

    else:  # catboost
        grid = {"learning_rate": [0.03, 0.1, 0.3], "depth": [3, 4, 6]}

        def space(t):
            return {
                "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
                "depth": t.suggest_int("depth", 2, 6),
                "iterations": t.suggest_int("iterations", 100, 500, step=100),
                "l2_leaf_reg": t.suggest_float("l2_leaf_reg", 1.0, 10.0, log=True),
            }

    def prefixed(trial):
        return {p + k: v for k, v in space(trial).items()}

    return SearchSpace(grid={p + k: v for k, v in grid.items()}, optuna=prefixed)


def _algorithm_of(estimator: object) -> str | None:
    """Algorithm name of a (pipeline's final) classifier, or None when not one of ours."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if isinstance(final, ScoreStacker):
        return "stacking"
    cls = type(final).__name__
    if cls == "CalibratedClassifierCV" and type(getattr(final, "estimator", None)).__name__ == "SVC":
        return "svm"
    names = {"LogisticRegression": "logistic", "RandomForestClassifier": "random_forest", "ExtraTreesClassifier": "extra_trees",
             "XGBClassifier": "xgboost", "LGBMClassifier": "lightgbm", "CatBoostClassifier": "catboost"}  # fmt: skip
    return names.get(cls)


# --------------------------------------------------------------------------- pipeline


def build_pipeline(
    steps: Sequence[tuple[str, Any]],
    classifier: BaseEstimator,
    smote: bool = False,
    smote_k_neighbors: int = 5,
    random_state: int = 0,
) -> Pipeline:
    """Preprocessing/selection steps, optional SMOTE, then the classifier, as one pipeline.

    Parameters
    ----------
    steps : sequence of (name, transformer)
        Any scikit-learn transformers (scalers, imputers, selectors), applied
        in order. They are used as given (not copied); :func:`tune` clones the
        whole pipeline before fitting, so nothing is shared between models.
    classifier : estimator
        A classifier with ``predict_proba`` (e.g. :func:`make_classifier`).
    smote : bool
        Add ``SMOTE`` (imbalanced-learn) after the steps. A sampler in an
        imbalanced-learn pipeline resamples only in ``fit``; at prediction
        time it is skipped, so validation and test patients are never
        resampled, and inside cross-validation it sees the training fold only.
    smote_k_neighbors : int
        SMOTE's neighbours; the minority class of every training fold needs
        more patients than this (checked by :func:`tune`).
    random_state : int
        Seed of SMOTE.

    Returns
    -------
    imblearn.pipeline.Pipeline
        Steps named as given, then ``smote`` (when requested) and ``classifier``.

    Raises
    ------
    ValueError
        For malformed steps, duplicate or reserved step names, a step without
        ``fit``/``transform``, or a classifier without ``predict_proba``.
    """
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline

    steps = list(steps)
    seen: set[str] = set()
    for i, item in enumerate(steps):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"step {i} must be a (name, transformer) tuple, got {item!r}")
        name, step = item
        if name in _RESERVED_STEPS or "__" in name or name in seen:
            raise ValueError(f"step name {name!r} is reserved, duplicated or contains '__'; rename it "
                             f"(reserved: {', '.join(_RESERVED_STEPS)})")  # fmt: skip
        seen.add(name)
        if not hasattr(step, "fit") or not (hasattr(step, "transform") or hasattr(step, "fit_resample")):
            raise ValueError(f"step {name!r} ({type(step).__name__}) needs fit and transform: pass scikit-learn transformers")
    if not hasattr(classifier, "fit") or not hasattr(classifier, "predict_proba"):
        raise ValueError(f"classifier {type(classifier).__name__} needs fit and predict_proba; use make_classifier()")
    if smote:
        steps.append(("smote", SMOTE(k_neighbors=smote_k_neighbors, random_state=random_state)))
    steps.append(("classifier", classifier))
    return Pipeline(steps)


# --------------------------------------------------------------------------- threshold


def _binary_labels(y: object, what: str = "y") -> np.ndarray:
    if y is None:
        raise ValueError(f"{what} is None: the model requires y to be passed, but the target y is None; give the 0/1 labels")
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional (one label per patient), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty: no patient to fit or evaluate")
    if arr.dtype.kind == "b":
        return arr.astype(int)
    try:
        as_float = arr.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold 0/1 labels, got values {sorted(set(arr.tolist()))[:5]}") from None
    if np.isnan(as_float).any():
        raise ValueError(f"{what} has {int(np.isnan(as_float).sum())} missing label(s): drop those patients first")
    values = set(np.unique(as_float).tolist())
    if not values <= {0.0, 1.0}:
        kind = "continuous values" if not np.all(as_float == np.round(as_float)) else "values"
        more = "; Only binary classification is supported." if len(values) > 2 else ""
        raise ValueError(f"{what} must hold 0/1 labels (1 = event), got {kind} {sorted(values)[:5]}{more}")
    if len(values) < 2:
        raise ValueError(
            f"{what} holds a single class ({as_float.size} patients, all {int(next(iter(values)))}); only one class is present, both are needed "
            "to fit or evaluate a model: check the training cohort and the outcome column (python -m helpers validate reports it)"
        )
    return as_float.astype(int)


def youden_threshold(y: object, p: object) -> float:
    """Probability threshold maximising Youden's J = sensitivity + specificity - 1.

    A patient is called positive when ``p >= threshold``. Candidates are the
    distinct observed probabilities (the thresholds of
    :func:`sklearn.metrics.roc_curve`).

    Parameters
    ----------
    y : array-like of 0/1
        True labels.
    p : array-like of float
        Predicted probabilities of class 1. For a model, pass the training
        patients' *out-of-fold* probabilities (:attr:`TunedModel.oof_proba_`):
        in-sample probabilities of flexible models (forests, boosting) are
        over-fitted, nearly separate the classes and give a threshold that
        does not transfer to new patients.

    Returns
    -------
    float
        The threshold. Ties (several thresholds with the same maximal J) are
        broken towards the highest threshold, i.e. the most specific operating
        point, the same point ``np.argmax`` picks on ``roc_curve``'s
        decreasing thresholds. When no threshold beats chance (max J = 0) the
        highest probability with J = 0 is returned.

    Raises
    ------
    ValueError
        For non-binary or single-class labels, lengths that differ, or
        non-finite probabilities; :class:`~helpers.errors.InputDataError` for
        pandas Series ``y`` and ``p`` holding different patients.

    Notes
    -----
    Two pandas Series are paired by patient (``p`` reordered to ``y``'s
    index); arrays are paired by position.
    """
    y, p = align_series(("y", y), ("p", p))
    y = _binary_labels(y)
    p = np.asarray(p, dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"y has {y.shape[0]} labels but p has shape {p.shape}: pass one probability per patient")
    if not np.isfinite(p).all():
        raise ValueError("p holds NaN or infinite probabilities; predict every patient before choosing a threshold")
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    candidates = np.unique(p)[::-1]  # decreasing, like roc_curve, so argmax breaks ties towards the highest threshold
    tpr = (pos.size - np.searchsorted(pos, candidates, side="left")) / pos.size  # share of positives with p >= t
    fpr = (neg.size - np.searchsorted(neg, candidates, side="left")) / neg.size
    return float(candidates[int(np.argmax(tpr - fpr))])


# --------------------------------------------------------------------------- fitted and tuned models


def _class_weight_of(classifier: object) -> str:
    """``balanced``, ``none`` or the repr of a custom weighting, of a classifier (the SVM's inner SVC for ``svm``)."""
    inner = getattr(classifier, "estimator", None) if type(classifier).__name__ == "CalibratedClassifierCV" else classifier
    params = inner.get_params(deep=False) if hasattr(inner, "get_params") else {}
    weight = params.get("class_weight")
    return "none" if weight is None else weight if isinstance(weight, str) else repr(weight)


def _positive_proba(estimator: object, X: object) -> np.ndarray:
    proba = np.asarray(estimator.predict_proba(X))
    classes = list(np.asarray(estimator.classes_).tolist())
    return proba[:, classes.index(1)]


def _rows(X: object, idx: np.ndarray) -> object:
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


@dataclass(kw_only=True)
class FittedModel:
    """A fitted pipeline with its operating threshold and provenance.

    Attributes
    ----------
    pipeline_ : estimator
        The fitted pipeline (or any fitted classifier with ``predict_proba``).
    threshold_ : float
        Operating threshold on the class-1 probability (positive when
        ``p >= threshold_``), chosen on training data and never changed.
    best_params_ : dict
        Parameters set on the pipeline before fitting.
    algorithm : str or None
        Algorithm name (:data:`ALGORITHMS`, ``stacking``) when known.
    feature_names_in_ : list of str or None
        Training feature columns, in order; prediction selects these columns
        by name from a DataFrame.
    training_cohort : str or None
        Name of the cohort the model was trained on.
    random_state : int or None
        Seed used for folds, samplers and classifiers.
    n_train : int
        Number of training patients.
    threshold_rule : str
        How the threshold was chosen (recorded in the sidecar).
    calibrator_ : ProbabilityCalibrator or None
        Recalibration of the pipeline's raw score (its decision function, or
        its class-1 probability), fitted on the training patients'
        out-of-fold scores only; applied by :meth:`positive_proba`. ``None``:
        the pipeline's own probabilities are reported.
    """

    pipeline_: Any = field(repr=False)
    threshold_: float
    best_params_: dict[str, Any] = field(default_factory=dict)
    algorithm: str | None = None
    feature_names_in_: list[str] | None = field(default=None, repr=False)
    training_cohort: str | None = None
    random_state: int | None = None
    n_train: int = 0
    threshold_rule: str = "Youden's J on training out-of-fold probabilities; positive when p >= threshold"
    calibrator_: ProbabilityCalibrator | None = field(default=None, repr=False)

    def _features(self, X: object) -> object:
        names = self.feature_names_in_
        if names is None:
            return X
        if isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ValueError(f"{len(missing)} training feature(s) missing from X, e.g. {missing[:3]}; "
                                 "extract the same features for this cohort")  # fmt: skip
            return X[names]  # by name and in training order; extra columns (e.g. cohort) are ignored
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(f"X has shape {arr.shape}, the model expects {len(names)} feature columns; pass a DataFrame with the training columns")
        return arr

    def positive_proba(self, X: object) -> pd.Series:
        """Predicted probability of class 1, one per patient (indexed like X when a DataFrame); recalibrated when the
        model has a calibrator (:attr:`calibrator_`)."""
        features = self._features(X)
        calibrator = getattr(self, "calibrator_", None)  # models saved before recalibration existed have none
        if calibrator is not None:
            p = calibrator.predict(response_scores(self.pipeline_, features))
        else:
            p = _positive_proba(self.pipeline_, features)
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.Series(p, index=index, name="probability")

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities, columns ordered as classes 0 and 1."""
        p = self.positive_proba(X).to_numpy()
        return np.column_stack([1.0 - p, p])

    def predict(self, X: object) -> np.ndarray:
        """0/1 predictions at the stored training threshold (``p >= threshold_``)."""
        return (self.positive_proba(X).to_numpy() >= self.threshold_).astype(int)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description: algorithm, parameters, threshold, features, cohort, seed, versions."""
        final = self.pipeline_.steps[-1][1] if hasattr(self.pipeline_, "steps") else self.pipeline_
        return {
            "kind": type(self).__name__,
            "algorithm": self.algorithm,
            "params": _jsonable(self.best_params_),
            "classifier": type(final).__name__,
            "classifier_params": _jsonable(final.get_params(deep=False)) if hasattr(final, "get_params") else {},
            "steps": [name for name, _ in self.pipeline_.steps] if hasattr(self.pipeline_, "steps") else [],
            "threshold": self.threshold_,
            "threshold_rule": self.threshold_rule,
            "class_weight": _class_weight_of(final),
            "recalibration": self.calibrator_.summary() if getattr(self, "calibrator_", None) is not None else {"method": "none"},
            "features": list(self.feature_names_in_) if self.feature_names_in_ is not None else None,
            "n_features": len(self.feature_names_in_) if self.feature_names_in_ is not None else None,
            "training_cohort": self.training_cohort,
            "n_train": self.n_train,
            "random_state": self.random_state,
            "versions": _library_versions(self.pipeline_),
        }


@dataclass(kw_only=True)
class TunedModel(FittedModel):
    """Result of :func:`tune`: the refitted best pipeline and its cross-validation record.

    Attributes
    ----------
    search : str
        ``grid``, ``optuna`` or ``none``.
    scoring : str
        Score optimised by the search.
    cv : int
        Number of folds.
    cv_results_ : DataFrame
        One row per candidate: ``params``, ``mean_test_score``,
        ``std_test_score`` (SD over folds, ddof=0 as in scikit-learn),
        ``rank_test_score`` and ``split<k>_test_score``.
    cv_auc_mean_, cv_auc_sd_ : float
        AUC of the best parameters over the folds (mean, SD with ddof=0).
    cv_auc_folds_ : ndarray
        AUC of each fold.
    oof_proba_ : Series
        Out-of-fold probability of every training patient: each from a
        pipeline (every step, selection and SMOTE included) fitted on the
        other folds with the best parameters. With recalibration: that
        pipeline's raw score through a calibrator fitted on the other folds'
        out-of-fold scores (cross-fitted), so no training probability comes
        from a calibrator that saw the patient.
    oof_proba_uncalibrated_ : Series
        The pipelines' own out-of-fold probabilities (equal to ``oof_proba_``
        without recalibration).
    oof_score_ : Series
        Out-of-fold raw scores the calibrator was fitted on (decision
        function or class-1 probability, see
        :func:`~helpers.learning.recalibration.response_method`); empty
        without recalibration.
    oof_auc_ : float
        AUC of the pooled out-of-fold probabilities.
    oof_auc_uncalibrated_ : float
        AUC of the pipelines' own pooled out-of-fold probabilities (equal to ``oof_auc_`` without recalibration).
    fold_ : Series
        Validation fold (0-based) of each training patient.

    Notes
    -----
    The best parameters are chosen on the same folds, so the CV and
    out-of-fold AUCs carry the (small) optimism of the hyperparameter choice;
    only nested CV or the held-out cohorts remove it. No fitted step ever saw
    the patient it predicts.
    """

    search: str = "none"
    scoring: str = "roc_auc"
    cv: int = 5
    cv_results_: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    cv_auc_mean_: float = float("nan")
    cv_auc_sd_: float = float("nan")
    cv_auc_folds_: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    oof_proba_: pd.Series = field(default_factory=pd.Series, repr=False)
    oof_proba_uncalibrated_: pd.Series = field(default_factory=pd.Series, repr=False)
    oof_score_: pd.Series = field(default_factory=pd.Series, repr=False)
    oof_auc_: float = float("nan")
    oof_auc_uncalibrated_: float = float("nan")
    fold_: pd.Series = field(default_factory=pd.Series, repr=False)
    training_prevalence_: float = float("nan")

    def metadata(self) -> dict[str, Any]:
        """As :meth:`FittedModel.metadata`, plus the search, its cross-validated AUCs and the training event rate
        against the mean out-of-fold probability (recalibrated and, when different, the pipeline's own)."""
        def mean(s: pd.Series) -> float:
            return float(np.mean(s)) if len(s) else float("nan")

        return {
            **super().metadata(),
            "search": self.search,
            "scoring": self.scoring,
            "cv_folds": self.cv,
            "cv_auc_mean": self.cv_auc_mean_,
            "cv_auc_sd": self.cv_auc_sd_,
            "cv_auc_folds": [float(a) for a in self.cv_auc_folds_],
            "oof_auc": self.oof_auc_,
            "oof_auc_uncalibrated": self.oof_auc_uncalibrated_,
            "training_prevalence": self.training_prevalence_,
            "oof_mean_probability": mean(self.oof_proba_),
            "oof_mean_probability_uncalibrated": mean(self.oof_proba_uncalibrated_),
        }


def _check_Xy(X: object, y: object, categorical: Sequence[str] = ()) -> tuple[object, np.ndarray, list[str] | None]:
    """Validate features and labels; align a labelled y to X's patients."""
    if isinstance(X, pd.DataFrame):
        bad = [str(c) for c in X.columns if (not is_numeric_dtype(X[c]) or is_bool_dtype(X[c])) and c not in set(categorical)]
        if bad:
            raise ValueError(f"non-numeric column(s) {bad[:5]} in X: pass feature columns only "
                             "(drop 'cohort' and identifiers, e.g. with feature_blocks())")  # fmt: skip
        if not X.index.is_unique:
            raise ValueError(f"X has duplicated patients in its index, e.g. {X.index[X.index.duplicated()][:3].tolist()}")
        # labels follow the patients, not the row order; y must hold exactly X's patients
        y = align_to_index(X.index, y, "y", "X")
        names = [str(c) for c in X.columns]
    else:
        if sp.issparse(X):
            raise TypeError("sparse input is not supported: pass a dense array or DataFrame (patients x features)")
        X = np.asarray(X)
        if np.iscomplexobj(X):
            raise ValueError("Complex data not supported: features must be real numbers")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be two-dimensional (patients x features), got shape {X.shape}")
        names = None
    y = _binary_labels(y)
    if len(y) != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} patients but y has {len(y)} labels")
    return X, y, names


def _splits(cv: int | object, y: np.ndarray, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(cv, (int, np.integer)):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 folds, got {cv}")
        smallest = int(np.bincount(y).min())
        if smallest < cv:
            raise ValueError(f"cv={cv} stratified folds need at least {cv} patients per class; the smaller class has "
                             f"{smallest}: lower cv")  # fmt: skip
        cv = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    dummy = np.zeros((len(y), 1))
    return [(np.asarray(tr), np.asarray(va)) for tr, va in cv.split(dummy, y)]


def _check_smote(pipeline: object, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Fail early (with the fix) when SMOTE has too few minority patients in a training fold."""
    for name, step in getattr(pipeline, "steps", []):
        k = getattr(step, "k_neighbors", None)
        if not hasattr(step, "fit_resample") or not isinstance(k, (int, np.integer)):
            continue
        minority = min(int(np.bincount(y[tr], minlength=2).min()) for tr, _ in splits)
        if minority <= k:
            raise ValueError(f"step {name!r}: k_neighbors={k} needs more than {k} minority patients per training fold, "
                             f"the smallest fold has {minority}; lower smote_k_neighbors to {max(minority - 1, 1)} or use fewer folds")  # fmt: skip


def _fold_pass(estimator: object, X: object, y: np.ndarray, splits, scoring: str,
               responses: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold probabilities, fold ids, per-fold AUC and per-fold score (every step refitted per fold).

    Equivalent to ``cross_val_predict(..., method="predict_proba")`` with the
    same folds, keeping the per-fold AUC of the very same fits. ``responses``
    (a list), when given, receives ``(validation indices, raw scores)`` of the
    same fits per fold (:func:`~helpers.learning.recalibration.response_scores`,
    in the estimator's own dtype: what ``cross_val_predict(...,
    method=response_method(estimator))`` collects; see :func:`_gather`).
    """
    oof = np.full(len(y), np.nan)
    fold = np.full(len(y), -1)
    aucs, scores = [], []
    scorer = None if scoring == "roc_auc" else get_scorer(scoring)
    for k, (tr, va) in enumerate(splits):
        fitted = clone(estimator).fit(_rows(X, tr), y[tr])
        p = _positive_proba(fitted, _rows(X, va))
        oof[va], fold[va] = p, k
        if responses is not None:  # the class-1 probability already computed, or the decision function (one more predict)
            responses.append((va, response_scores(fitted, _rows(X, va)) if response_method(fitted) == "decision_function" else p))
        aucs.append(roc_auc_score(y[va], p))
        scores.append(aucs[-1] if scorer is None else scorer(fitted, _rows(X, va), y[va]))
    return oof, fold, np.asarray(aucs), np.asarray(scores, dtype=float)


def _gather(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Per-fold (indices, values) as one array in patient order, in the values' common dtype (float32 scores of
    XGBoost stay float32, as in ``cross_val_predict``, so the calibrator sees what ``CalibratedClassifierCV`` sees)."""
    out = np.empty(n, dtype=np.result_type(*[v.dtype for _, v in parts]))
    for idx, values in parts:
        out[idx] = values
    return out


def _results_table(params: list[dict], split_scores: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame({"params": params})
    table["mean_test_score"] = split_scores.mean(axis=1)
    table["std_test_score"] = split_scores.std(axis=1)  # ddof=0, as GridSearchCV reports it
    table["rank_test_score"] = table["mean_test_score"].rank(method="min", ascending=False).astype(int)
    for k in range(split_scores.shape[1]):
        table[f"split{k}_test_score"] = split_scores[:, k]
    return table


def _default_space(pipeline: object, search: str) -> object:
    algorithm = _algorithm_of(pipeline)
    if algorithm not in DEFAULT_PARAMS:
        raise ValueError(f"no default search space for {type(pipeline).__name__}: pass param_space "
                         "(a grid dict for search='grid', a function of an optuna trial for search='optuna')")  # fmt: skip
    names = dict(getattr(pipeline, "steps", []))
    step = "classifier" if "classifier" in names else (pipeline.steps[-1][0] if names else None)
    space = default_search_space(algorithm, step=step)
    return space.grid if search == "grid" else space.optuna


class StepCache:
    """In-process cache of fitted pipeline steps with the ``cache(func)`` interface of :class:`joblib.Memory`.

    Given to a scikit-learn/imbalanced-learn pipeline as ``memory``, the
    pipeline fits each step through ``cache(...)``; the key is the
    :func:`joblib.hash` of everything the fit sees (the unfitted step with its
    parameters, its input rows and labels), and the value is the fitted step
    and its output. Held in memory rather than on disk: joblib's disk store
    writes the repr of every input DataFrame and re-reads the function's
    source on every fit, which costs more than fitting a z-score or a filter
    on a small cohort. A hit returns an unpickled copy, so no two pipelines
    share a fitted object. ``copy.deepcopy`` (which :func:`~sklearn.base.clone`
    applies to the pipeline's parameters) returns the cache itself, so every
    candidate's clone shares it; a pickled copy (a parallel worker) starts
    empty, so with ``n_jobs > 1`` each worker fits its own steps (same
    results, less saved).
    """

    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}
        self.hits = 0
        self.misses = 0

    def cache(self, func: Callable) -> Callable:
        """``func`` memoised by the hash of its arguments (the pipeline's ``_fit_transform_one``/``_fit_resample_one``)."""

        def cached(*args: Any, **kwargs: Any) -> Any:
            key = joblib.hash((func.__module__, func.__qualname__, [_content_of(a) for a in args],
                               {name: _content_of(value) for name, value in kwargs.items()}))
            if key in self._store:
                self.hits += 1
                return pickle.loads(self._store[key])
            self.misses += 1
            result = func(*args, **kwargs)
            try:
                self._store[key] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError):
                pass  # a fitted step that cannot be pickled is simply refitted next time
            return result

        return cached

    def clear(self) -> None:
        """Drop every fitted step."""
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)

    def __deepcopy__(self, memo: dict) -> StepCache:
        return self  # clones of a pipeline share its cache

    def __getstate__(self) -> dict:
        return {"_store": {}, "hits": 0, "misses": 0}  # a worker process starts empty; nothing large is shipped


def _content_of(value: Any) -> Any:
    """What a cache key needs of an argument: a DataFrame by its labels, dtypes and values, whatever its memory layout.

    Why: :func:`joblib.hash` pickles a DataFrame block by block in pure Python, and a frame assembled column by column
    (e.g. by pandas' ``fillna`` with one value per column) holds one block per column: 2 s per hash for 40 x 16,874
    features. Here the labels and dtypes are pickled by the C pickler and the values hashed from one C-ordered
    buffer. Two frames with the same labels, dtypes, values and ``attrs`` get the same key, as they should.
    """
    if not isinstance(value, pd.DataFrame):
        return value
    dtypes = value.dtypes.tolist()
    labels = hashlib.sha256(pickle.dumps((list(value.columns), list(value.index), dtypes),
                                         protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
    if dtypes and all(dtype == dtypes[0] for dtype in dtypes) and isinstance(dtypes[0], np.dtype) and dtypes[0] != object:
        values: Any = np.ascontiguousarray(value.to_numpy())  # one buffer, hashed as bytes
    else:
        values = [value.iloc[:, i].to_numpy() for i in range(value.shape[1])]
    return ("pandas.DataFrame", labels, values, value.attrs)


@contextmanager
def selection_cache(*, enabled: bool = True) -> Iterator[StepCache | None]:
    """A cache of fitted pipeline steps for the duration of a ``with`` block, emptied on exit.

    Why: the steps before the classifier (imputation, z-score, filters, mRMR,
    LASSO, SMOTE) do not depend on the classifier's hyperparameters, yet a
    search refits the whole pipeline for every candidate in every fold. With
    the cache as the pipeline's ``memory`` (:class:`StepCache`), every fitted
    step is keyed by its parameters and its exact input (the training fold's
    rows and labels, i.e. the output of the steps before it), so each
    (training fold, step parameters) pair is fitted once and later candidates
    get a copy of the very same fit. Exact: a step parameter in the search
    space is part of the key, so every value is fitted on its own; a
    validation patient is never part of a key, so nothing fitted on one fold
    serves another. Steps must be deterministic for a given input (the
    project's steps are seeded). Nothing is written to disk.

    Parameters
    ----------
    enabled : bool
        ``False`` yields ``None`` (no cache), the behaviour before the cache.

    Yields
    ------
    StepCache or None
        Pass it to :func:`tune` (``selection_memory``) to share fitted steps
        between several tunings of the same data (e.g. the algorithms of one
        block in :func:`model_grid`).
    """
    if not enabled:
        yield None
        return
    cache = StepCache()
    try:
        yield cache
    finally:
        cache.clear()


def _cacheable(pipeline: object) -> bool:
    """Whether the steps before the classifier can be cached: a pipeline without its own memory whose steps hash
    deterministically (a lambda parameter cannot be pickled, so such a pipeline runs uncached, as before)."""
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) < 2 or "memory" not in pipeline.get_params(deep=False) or pipeline.memory is not None:
        return False
    try:
        return all(joblib.hash(clone(step)) == joblib.hash(clone(step)) for _, step in steps[:-1] if step not in (None, "passthrough"))
    except (pickle.PicklingError, TypeError, AttributeError):
        return False


def _with_memory(pipeline: object, memory: StepCache | None) -> object:
    """A clone of the pipeline caching its fitted steps in ``memory`` (the pipeline itself when it cannot be cached)."""
    if memory is None or not _cacheable(pipeline):
        return pipeline
    return clone(pipeline).set_params(memory=memory)


def tune(
    pipeline: object,
    X: pd.DataFrame | np.ndarray,
    y: pd.Series | np.ndarray,
    search: str = "grid",
    param_space: Mapping[str, Sequence] | Sequence[Mapping[str, Sequence]] | Callable | None = None,
    cv: int = 5,
    n_trials: int = 30,
    scoring: str = "roc_auc",
    random_state: int = 0,
    *,
    n_jobs: int | None = 1,
    training_cohort: str | None = None,
    categorical: Sequence[str] = (),
    cache_selection: bool = True,
    selection_memory: StepCache | None = None,
    recalibration: str = "none",
) -> TunedModel:
    """Tune hyperparameters by stratified k-fold CV on training data, then refit.

    Parameters
    ----------
    pipeline : estimator
        Usually :func:`build_pipeline`; any classifier with ``predict_proba``
        works. It is cloned, never fitted in place.
    X : DataFrame or array (patients x features)
        Training features only (numeric; no ``cohort`` column).
    y : Series or array of 0/1
        Training labels; with a DataFrame X a Series is matched to X's rows
        by patient (index label) and must hold exactly X's patients.
    search : {"grid", "optuna", "none"}
        ``grid``: :class:`~sklearn.model_selection.GridSearchCV` over
        ``param_space`` (a dict of lists, or a list of them). ``optuna``: a
        study maximising the CV mean score with a seeded TPE sampler, run
        sequentially (so deterministic); ``param_space(trial)`` returns the
        pipeline parameters of a trial. ``none``: the pipeline as given.
    param_space : dict, list of dicts or callable, optional
        Default: :func:`default_search_space` of the pipeline's classifier.
    cv : int or CV splitter
        Number of folds: ``StratifiedKFold(cv, shuffle=True, random_state)``.
        The same folds serve the search, the CV AUC and the out-of-fold
        probabilities.
    n_trials : int
        Optuna trials.
    scoring : str
        scikit-learn scorer optimised by the search (the reported CV AUC is
        always the ROC AUC).
    random_state : int
        Seed of the folds and of the TPE sampler.
    n_jobs : int or None
        Parallel fits of the search (classifiers themselves are
        single-threaded); results do not depend on it.
    training_cohort : str, optional
        Name recorded with the model.
    categorical : sequence of str
        Non-numeric columns the pipeline encodes itself (e.g. clinical
        variables before a :class:`~helpers.clinical.ClinicalEncoder`); any
        other non-numeric column is an error.
    cache_selection : bool
        Fit the steps before the classifier once per training fold and
        parameter set instead of once per candidate (:func:`selection_cache`,
        emptied before returning). Results are identical either way;
        ``False`` refits every step for every candidate.
    selection_memory : StepCache, optional
        A cache opened by the caller with :func:`selection_cache`, to share
        fitted steps between tunings of the same data (used instead of a
        temporary one; ignored when ``cache_selection`` is False).
    recalibration : {"none", "sigmoid", "isotonic"}
        ``none`` (default): the pipeline's own probabilities. ``sigmoid``
        (Platt) or ``isotonic``: a
        :class:`~helpers.learning.recalibration.ProbabilityCalibrator` fitted
        on the best parameters' out-of-fold raw scores of the training
        patients (the fold fits this function makes anyway; nothing is
        refitted) and applied to the refitted pipeline's scores. The deployed
        probabilities equal ``CalibratedClassifierCV(pipeline, method=...,
        cv=<the same folds>, ensemble=False)``'s. The reported out-of-fold
        probabilities are cross-fitted (each fold through a calibrator fitted
        on the other folds' scores) and the Youden threshold is chosen on
        them. Use it when the classifier weights the classes or the pipeline
        has SMOTE: their probabilities are otherwise pulled towards 0.5.

    Returns
    -------
    TunedModel
        The best pipeline refitted on all of X, ``best_params_``,
        ``cv_results_``, the best parameters' per-fold AUC (mean, SD) and
        out-of-fold probabilities (recalibrated when asked), the calibrator,
        and the Youden threshold chosen on those out-of-fold probabilities.

    Raises
    ------
    ValueError
        For an unknown search, invalid X/y, too few patients per class for
        ``cv`` or for SMOTE's neighbours, or ``param_space`` given with
        ``search="none"``.
    TypeError
        When ``search="optuna"`` and ``param_space`` is not callable.
    """
    if search not in ("grid", "optuna", "none"):
        raise ValueError(f"search must be 'grid', 'optuna' or 'none', got {search!r}")
    if recalibration not in ("none", "sigmoid", "isotonic"):
        raise ValueError(f"recalibration must be 'none', 'sigmoid' or 'isotonic', got {recalibration!r}")
    if search == "none" and param_space is not None:
        raise ValueError("param_space is only used by search='grid' or 'optuna'; set parameters on the pipeline for search='none'")
    X, y, names = _check_Xy(X, y, categorical)
    splits = _splits(cv, y, random_state)
    _check_smote(pipeline, y, splits)
    n_splits = len(splits)

    with ExitStack() as stack:
        if cache_selection and selection_memory is None:
            selection_memory = stack.enter_context(selection_cache())
        searched = _with_memory(pipeline, selection_memory if cache_selection else None)
        if search == "grid":
            grid = param_space if param_space is not None else _default_space(pipeline, "grid")
            gs = GridSearchCV(clone(searched), grid, scoring=scoring, cv=splits, refit=False, n_jobs=n_jobs, error_score="raise")
            gs.fit(X, y)
            res = gs.cv_results_
            split_scores = np.column_stack([res[f"split{k}_test_score"] for k in range(n_splits)])
            cv_results = _results_table(list(res["params"]), split_scores)
            best_params = dict(gs.best_params_)
        elif search == "optuna":
            best_params, cv_results = _optuna_search(searched, X, y, splits, param_space, n_trials, scoring, random_state, n_jobs)
        else:
            best_params, cv_results = {}, None

        best = clone(searched).set_params(**best_params)
        responses: list | None = [] if recalibration != "none" else None
        oof, fold, aucs, scores = _fold_pass(best, X, y, splits, scoring, responses)  # the search's fold fits of the steps, reused
        if cv_results is None:
            cv_results = _results_table([{}], scores[None, :])
        final = clone(best).fit(X, y)
    if searched is not pipeline:
        final.set_params(memory=None)  # the returned model neither holds nor refits through the emptied cache
    index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(y))
    calibrator, reported = None, oof
    if responses is not None:
        # Training out-of-fold scores only: each came from a pipeline that never saw the patient, and no other cohort is here.
        responses = _gather(responses, len(y))
        response = response_method(best)
        calibrator = ProbabilityCalibrator(method=recalibration, response=response).fit(responses, y)
        reported = cross_fitted_probabilities(responses, y, splits, method=recalibration, response=response)
    return TunedModel(
        pipeline_=final,
        threshold_=youden_threshold(y, reported),  # out-of-fold (recalibrated when asked), never in-sample
        calibrator_=calibrator,
        best_params_=best_params,
        algorithm=_algorithm_of(pipeline),
        feature_names_in_=names,
        training_cohort=training_cohort,
        random_state=random_state,
        n_train=len(y),
        search=search,
        scoring=scoring,
        cv=n_splits,
        cv_results_=cv_results,
        cv_auc_mean_=float(aucs.mean()),
        cv_auc_sd_=float(aucs.std()),
        cv_auc_folds_=aucs,
        oof_proba_=pd.Series(reported, index=index, name="oof_probability"),
        oof_proba_uncalibrated_=pd.Series(oof, index=index, name="oof_probability_uncalibrated"),
        oof_score_=pd.Series(responses, index=index, name="oof_score") if responses is not None else pd.Series(dtype=float, name="oof_score"),
        oof_auc_=float(roc_auc_score(y, reported)),
        oof_auc_uncalibrated_=float(roc_auc_score(y, oof)),
        fold_=pd.Series(fold, index=index, name="fold"),
        training_prevalence_=float(y.mean()),
    )


def _optuna_search(pipeline, X, y, splits, param_space, n_trials, scoring, random_state, n_jobs) -> tuple[dict, pd.DataFrame]:
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    space = param_space if param_space is not None else _default_space(pipeline, "optuna")
    if not callable(space):
        raise TypeError("search='optuna' needs param_space as a function trial -> dict of pipeline parameters "
                         "(see default_search_space(name).optuna)")  # fmt: skip

    def objective(trial):
        params = dict(space(trial))
        scores = cross_val_score(clone(pipeline).set_params(**params), X, y, cv=splits, scoring=scoring, n_jobs=n_jobs, error_score="raise")
        trial.set_user_attr("pipeline_params", params)  # the space may map suggestions to different pipeline names
        trial.set_user_attr("split_scores", [float(s) for s in scores])
        return float(scores.mean())

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=random_state))
        study.optimize(objective, n_trials=n_trials, n_jobs=1)  # sequential: TPE proposals depend on the order of results
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    table = _results_table([t.user_attrs["pipeline_params"] for t in trials], np.array([t.user_attrs["split_scores"] for t in trials]))
    table.insert(0, "trial", [t.number for t in trials])
    return dict(study.best_trial.user_attrs["pipeline_params"]), table


# --------------------------------------------------------------------------- persistence


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _module_version(module: str) -> str:
    if module == "python":
        return platform.python_version()
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except ImportError:
        return "not installed"


def _library_versions(estimator: object) -> dict[str, str]:
    """Versions of Python, the scientific stack and every library whose objects the estimator holds."""
    found: set[str] = set()
    stack, seen = [estimator], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "fit") and hasattr(obj, "__dict__"):
            found.add(type(obj).__module__.split(".")[0])
            stack.extend(vars(obj).values())  # steps, wrapped and fitted sub-estimators
    modules = ["python", *_CORE_MODULES, *sorted(m for m in found if m in _TRACKED_MODULES and m not in _CORE_MODULES)]
    return {m: _module_version(m) for m in modules}


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model: FittedModel, path: str | Path) -> Path:
    """Write a model with joblib and its metadata to a JSON sidecar.

    Parameters
    ----------
    model : FittedModel
        Usually a :class:`TunedModel`.
    path : str or Path
        Model file (e.g. ``models/mr_t1_tumour_rf.joblib``); the sidecar is
        the same path with suffix ``.json``. Folders are created.

    Returns
    -------
    Path
        The sidecar path. It holds the algorithm, parameters, threshold,
        features, training cohort, seed, CV AUCs, library versions and the
        SHA-256 of the model file. Nothing time-dependent is written, so the
        same model gives the same files.

    Raises
    ------
    TypeError
        When ``model`` is not a :class:`FittedModel`.
    ValueError
        When ``path`` ends in ``.json`` (that name is the sidecar's).
    """
    if not isinstance(model, FittedModel):
        raise TypeError(f"save_model expects a FittedModel or TunedModel, got {type(model).__name__}; wrap a fitted "
                        "pipeline as FittedModel(pipeline_=..., threshold_=...)")  # fmt: skip
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: use another suffix (e.g. .joblib); the .json name is the metadata sidecar")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)  # atomic: a killed save never leaves a half-written model under the final name
    meta = {**model.metadata(), "model_file": path.name, "sha256": _sha256(path)}
    sidecar = _sidecar(path)
    sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sidecar


def load_model(path: str | Path, strict: bool = False) -> FittedModel:
    """Load a model written by :func:`save_model`, checking its file and library versions.

    Only load files you trust: joblib files are pickles and run code when loaded.

    Parameters
    ----------
    path : str or Path
        The model file (its ``.json`` sidecar must be next to it).
    strict : bool
        Raise :class:`ModelVersionError` on any version difference instead of
        warning.

    Returns
    -------
    FittedModel

    Raises
    ------
    FileNotFoundError
        When the model file does not exist.
    ModelFileError
        When the sidecar is missing or unreadable, or the model file changed
        since it was saved (SHA-256 differs).
    ModelVersionError
        When a library the model needs is not installed, or (``strict``) any
        version differs.

    Warns
    -----
    ModelVersionWarning
        When versions differ (not ``strict``): predictions may change;
        re-train or install the recorded versions.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    sidecar = _sidecar(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"metadata sidecar {sidecar} is missing; save models with save_model()") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"metadata sidecar {sidecar} is not valid JSON ({exc})") from None
    if meta.get("sha256") != _sha256(path):
        raise ModelFileError(f"{path} changed since it was saved (SHA-256 differs from {sidecar.name}); re-save it with save_model()")
    saved = meta.get("versions", {})
    installed = {m: _module_version(m) for m in saved}
    missing = [m for m in saved if installed[m] == "not installed"]
    if missing:
        raise ModelVersionError(f"{path} needs {', '.join(f'{m}=={saved[m]}' for m in missing)}, not installed here")
    differ = {m: (saved[m], installed[m]) for m in saved if saved[m] != installed[m]}
    if differ:
        text = ", ".join(f"{m} saved {a}, installed {b}" for m, (a, b) in sorted(differ.items()))
        message = f"{path} was saved with other library versions ({text}); predictions may differ: install the saved versions or re-train"
        if strict:
            raise ModelVersionError(message)
        warnings.warn(message, ModelVersionWarning, stacklevel=2)
    model = joblib.load(path)
    if not isinstance(model, FittedModel) or model.threshold_ != meta.get("threshold"):
        raise ModelFileError(f"{path} does not hold the model described by {sidecar.name}; re-save it with save_model()")
    return model


# --------------------------------------------------------------------------- blocks, grid and heatmap


def _block_label(key: object) -> str:
    return " / ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def _block_prefix(key: object) -> str:
    """Column prefix of a block: its name with runs of characters other than letters, digits, '.', '-' and '_' as '_'.

    Kept free of the JSON special characters LightGBM rejects in feature names.
    """
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", _block_label(key)).strip("_")


def feature_blocks(table: pd.DataFrame, series: Iterable[str], rois: Iterable[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """Split the wide feature table into one block per series x ROI.

    Parameters
    ----------
    table : DataFrame
        Rows = patients, columns ``{series}_{roi}_{imageType}_{class}_{feature}``
        (the ``cohort`` column and any other column are left out).
    series, rois : iterable of str
        Series and ROI names (e.g. ``["CT", "PET", "MR_T1"]``, ``["tumour", "ring"]``).

    Returns
    -------
    dict of (series, roi) to DataFrame
        Blocks in series-then-ROI order; combinations without columns are omitted.

    Raises
    ------
    ValueError
        When no column matches any series x ROI.
    """
    blocks = {}
    series, rois = list(series), list(rois)
    for s in series:
        for r in rois:
            cols = [c for c in table.columns if str(c).startswith(f"{s}_{r}_")]
            if cols:
                blocks[(s, r)] = table[cols]
    if not blocks:
        raise ValueError(f"no column starts with any of {[f'{s}_{r}_' for s in series for r in rois][:6]}; check the series and ROI names")
    return blocks


def feature_fusion(blocks: Mapping[object, pd.DataFrame], join: str = "strict") -> pd.DataFrame:
    """Feature-level fusion: concatenate blocks by patient, prefixing each column with its block name.

    Parameters
    ----------
    blocks : mapping of block key to DataFrame
        Keys are names (``"MR_T1 / tumour"``) or tuples (``("MR_T1", "tumour")``);
        each DataFrame is indexed by patient.
    join : {"strict", "inner", "outer"}
        ``strict`` requires every block to hold the same patients (the
        message names the missing ones); ``inner`` keeps common patients;
        ``outer`` keeps all (missing blocks become NaN: add an imputer).

    Returns
    -------
    DataFrame
        Columns ``{prefix}__{column}``, prefix = block name with characters
        outside letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``
        (``"MR_T1 / tumour"`` -> ``MR_T1_tumour``); rows in the first block's
        order (then new patients sorted, for ``outer``).

    Raises
    ------
    ValueError
        For no blocks, an unknown join, two keys with the same prefix,
        duplicated patients, or (strict) differing patient sets.
    """
    if not blocks:
        raise ValueError("no blocks to fuse")
    if join not in ("strict", "inner", "outer"):
        raise ValueError(f"join must be 'strict', 'inner' or 'outer', got {join!r}")
    frames, prefixes = [], {}
    first = next(iter(blocks.values())).index
    for key, block in blocks.items():
        prefix = _block_prefix(key)
        if prefix in prefixes:
            raise ValueError(f"blocks {prefixes[prefix]!r} and {key!r} share the column prefix {prefix!r}; rename one")
        prefixes[prefix] = key
        if not block.index.is_unique:
            raise ValueError(f"block {key!r} has duplicated patients, e.g. {block.index[block.index.duplicated()][:3].tolist()}")
        if join == "strict" and set(block.index) != set(first):
            only = sorted(map(str, set(block.index) ^ set(first)))
            raise ValueError(f"block {key!r} and the first block hold different patients ({only[:5]}); "
                             "use join='inner' or 'outer' or fix the blocks")  # fmt: skip
        frames.append(block.add_prefix(f"{prefix}__"))
    fused = pd.concat(frames, axis=1, join="inner" if join == "inner" else "outer")
    order = [p for p in first if p in fused.index]
    first_set = set(first)
    order += sorted((p for p in fused.index if p not in first_set), key=str)
    fused = fused.loc[order]
    fused.index.name = first.name or "patient"
    return fused


def _aligned_labels(y: object, X: pd.DataFrame, what: str, ref: str = "X") -> object:
    """A Series y reordered to X's patients (exactly the same patients required); arrays unchanged."""
    return align_to_index(X.index, y, what, ref)


def _grid_block(key, X, X_test, *, y_train, y_test, algorithms, steps_factory, search, cv, random_state, labels,
                n_trials, smote, smote_k_neighbors, param_spaces, classifier_params, training_cohort, cache_selection,
                class_weight, recalibration) -> tuple[list[dict], dict[tuple[str, str], TunedModel]]:
    """:func:`model_grid`'s rows and models of one block (every algorithm), with the block's own selection cache.

    ``X_test`` is the block's held-out frame or None: a worker process receives its own block's data only."""
    rows, models = [], {}
    name = _block_label(key)
    y = _aligned_labels(y_train, X, "y_train", f"blocks[{name!r}]") if isinstance(X, pd.DataFrame) else y_train
    with selection_cache(enabled=cache_selection) as memory:  # one per block: only the same data shares fitted steps
        for algorithm in algorithms:
            steps = steps_factory() if steps_factory is not None else []
            weight = class_weight_for(algorithm, class_weight)
            recal = recalibration if isinstance(recalibration, str) else recalibration.get(algorithm, "none")
            pipe = build_pipeline(steps, make_classifier(algorithm, random_state=random_state, class_weight=weight,
                                                         **classifier_params.get(algorithm, {})),
                                  smote=smote, smote_k_neighbors=smote_k_neighbors, random_state=random_state)  # fmt: skip
            space = param_spaces.get(algorithm) if search != "none" else None
            model = tune(pipe, X, y, search=search, param_space=space, cv=cv, n_trials=n_trials, random_state=random_state,
                         training_cohort=training_cohort, cache_selection=cache_selection, selection_memory=memory,
                         recalibration=recal)  # fmt: skip
            row = {
                "block": name, "algorithm": algorithm,
                "block_label": labels.get(key, labels.get(name, name)), "algorithm_label": labels.get(algorithm, algorithm),
                "n_features": X.shape[1], "n_train": model.n_train, "class_weight": weight or "none", "recalibration": recal,
                "cv_auc_mean": model.cv_auc_mean_, "cv_auc_sd": model.cv_auc_sd_, "oof_auc": model.oof_auc_,
                "threshold": model.threshold_,
                "test_auc": np.nan, "test_sensitivity": np.nan, "test_specificity": np.nan,
                "best_params": json.dumps(_jsonable(model.best_params_), sort_keys=True),
            }  # fmt: skip
            if X_test is not None:
                yt = _binary_labels(_aligned_labels(y_test, X_test, "y_test", f"X_test_blocks[{name!r}]") if isinstance(X_test, pd.DataFrame) else y_test, "y_test")
                p = model.positive_proba(X_test).to_numpy()
                called = p >= model.threshold_  # the training threshold, unchanged
                row.update(test_auc=roc_auc_score(yt, p), test_sensitivity=called[yt == 1].mean(), test_specificity=(~called[yt == 0]).mean())
            rows.append(row)
            models[(name, algorithm)] = model
    return rows, models


def model_grid(
    blocks: Mapping[object, pd.DataFrame],
    y_train: pd.Series | np.ndarray,
    X_test_blocks: Mapping[object, pd.DataFrame] | None = None,
    y_test: pd.Series | np.ndarray | None = None,
    algorithms: Sequence[str] = ("logistic", "random_forest"),
    steps_factory: Callable[[], list[tuple[str, Any]]] | None = None,
    search: str = "grid",
    cv: int = 5,
    random_state: int = 0,
    labels: Mapping[object, str] | None = None,
    *,
    n_trials: int = 30,
    smote: bool = False,
    smote_k_neighbors: int = 5,
    param_spaces: Mapping[str, object] | None = None,
    classifier_params: Mapping[str, Mapping[str, Any]] | None = None,
    training_cohort: str | None = None,
    return_models: bool = False,
    cache_selection: bool = True,
    class_weight: str | None = None,
    recalibration: str | Mapping[str, str] = "none",
    n_jobs: int = 1,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[tuple[str, str], TunedModel]]:
    """Tune every feature block x algorithm on training data; evaluate held-out blocks.

    Parameters
    ----------
    blocks : mapping of block key to DataFrame
        Training features per block (e.g. from :func:`feature_blocks`).
    y_train : Series or array of 0/1
        Training labels (a Series is matched to each block's rows by patient
        and must hold exactly its patients).
    X_test_blocks : mapping, optional
        Held-out features with the same keys and columns.
    y_test : Series or array, optional
        Held-out labels (required with ``X_test_blocks``); a Series is matched
        to each test block's rows by patient.
    algorithms : sequence of str
        Names from :data:`ALGORITHMS`.
    steps_factory : callable, optional
        Returns a fresh list of (name, transformer) steps for each model
        (selection, scaling); default no steps.
    search, cv, random_state, n_trials
        As in :func:`tune`.
    labels : mapping, optional
        Display names of blocks and algorithms (columns ``block_label``,
        ``algorithm_label``).
    smote, smote_k_neighbors
        As in :func:`build_pipeline`.
    param_spaces : mapping of algorithm to search space, optional
        Overrides :func:`default_search_space` per algorithm.
    classifier_params : mapping of algorithm to dict, optional
        Extra parameters for :func:`make_classifier` per algorithm.
    training_cohort : str, optional
        Recorded with every model.
    return_models : bool
        Also return the tuned models keyed by (block label, algorithm).
    cache_selection : bool
        Share the fitted steps before the classifier between the algorithms
        of a block (one :func:`selection_cache` per block): the steps do not
        depend on the algorithm, so each training fold's selection is fitted
        once per block instead of once per algorithm and candidate. Results
        are identical either way.
    class_weight : {None, "none", "balanced"}
        ``balanced`` weights the classes of the algorithms that support it
        (:func:`class_weight_for`); the others are fitted unweighted.
    recalibration : str or mapping of algorithm to str
        :func:`tune`'s ``recalibration``, for every algorithm or per
        algorithm (missing algorithms: ``none``).
    n_jobs : int
        Blocks fitted in parallel (joblib processes, one block with all its
        algorithms per task, so a block's selection cache stays shared).
        Every fit is seeded and single-threaded, so the table and the models
        are identical for any ``n_jobs`` (tested bitwise).

    Returns
    -------
    DataFrame
        One row per block x algorithm: ``block``, ``algorithm``,
        ``block_label``, ``algorithm_label``, ``n_features``, ``n_train``,
        ``class_weight``, ``recalibration``,
        ``cv_auc_mean``, ``cv_auc_sd``, ``oof_auc``, ``threshold``,
        ``test_auc``, ``test_sensitivity``, ``test_specificity`` (at the
        training threshold; NaN without a test block) and ``best_params``
        (JSON). With ``return_models``, ``(table, models)``.

    Raises
    ------
    ValueError
        For an empty grid, a test block missing for a key, or test blocks without ``y_test``.
    UnknownAlgorithmError
        For an unknown algorithm.
    """
    if not blocks or not algorithms:
        raise ValueError("model_grid needs at least one block and one algorithm")
    for name in algorithms:
        if name not in DEFAULT_PARAMS:
            raise _unknown(name)
    if X_test_blocks is not None:
        if y_test is None:
            raise ValueError("X_test_blocks given without y_test: pass the held-out labels")
        missing = [k for k in blocks if k not in X_test_blocks]
        if missing:
            raise ValueError(f"no test block for {missing[:3]}; give X_test_blocks the same keys as blocks")
    if not isinstance(n_jobs, numbers.Integral) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    options = {
        "y_train": y_train, "y_test": y_test, "algorithms": tuple(algorithms),
        "steps_factory": steps_factory, "search": search, "cv": cv, "random_state": random_state, "labels": dict(labels or {}),
        "n_trials": n_trials, "smote": smote, "smote_k_neighbors": smote_k_neighbors, "param_spaces": dict(param_spaces or {}),
        "classifier_params": dict(classifier_params or {}), "training_cohort": training_cohort,
        "cache_selection": cache_selection, "class_weight": class_weight, "recalibration": recalibration,
    }  # fmt: skip
    tasks = [(key, X, None if X_test_blocks is None else X_test_blocks[key]) for key, X in blocks.items()]
    jobs = min(n_jobs, len(blocks))
    if jobs == 1:
        results = [_grid_block(*task, **options) for task in tasks]
    else:
        # Processes, in block order; each worker's BLAS/OpenMP is limited to one thread by loky, as the classifiers are.
        results = Parallel(n_jobs=jobs, backend="loky")(delayed(_grid_block)(*task, **options) for task in tasks)
    rows, models = [], {}
    for block_rows, block_models in results:
        rows += block_rows
        models.update(block_models)
    table = pd.DataFrame(rows)
    return (table, models) if return_models else table


# --------------------------------------------------------------------------- score-level stacking


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)  # finite logits for 0/1 probabilities (e.g. from forests)
    return np.log(p / (1 - p))


class ScoreStacker(ClassifierMixin, BaseEstimator):
    """Score-level fusion: a logistic meta-model on base models' out-of-fold probabilities.

    ``fit`` (training data only):

    1. each base model's out-of-fold probability of every training patient is
       computed with ``StratifiedKFold(cv, shuffle=True, random_state)``, the
       whole base pipeline being refitted in each fold;
    2. a logistic regression (``C=meta_C``) is fitted on the logits of these
       out-of-fold probabilities, so the meta-model learns how the base
       scores behave on patients they were *not* trained on (in-sample scores
       of flexible models are over-confident and would dominate);
    3. each base model is refitted on all training patients.

    ``predict_proba`` feeds the refitted base models' probabilities to the
    meta-model. Nothing is learned at prediction time: each patient's output
    depends only on that patient's features and the training data.

    Parameters
    ----------
    estimators : list of (name, estimator) or (name, estimator, columns)
        Base classifiers with ``predict_proba`` (e.g. pipelines from
        :func:`build_pipeline`). ``columns`` selects the base model's
        features: ``None`` (all), a block key as given to
        :func:`feature_fusion` (its prefixed columns), or a list of columns.
    cv : int
        Folds for the out-of-fold base scores (and the meta-level
        out-of-fold probabilities).
    random_state : int
        Seed of the folds and the meta-model.
    meta_C : float
        Inverse L2 regularisation of the meta-model.

    Attributes
    ----------
    estimators_ : list of (name, fitted estimator)
        Base models refitted on all training data.
    meta_model_ : LogisticRegression
        The meta-model.
    oof_scores_ : DataFrame
        Out-of-fold base probabilities of the training patients (the
        meta-model's only training input).
    oof_proba_ : ndarray
        Meta-level out-of-fold probabilities: the meta-model refitted on the
        other folds' rows of ``oof_scores_``. (The base scores of those rows
        came from base models that saw the predicted patient, a second-order
        effect that is negligible for a low-dimensional meta-model.)
    threshold_ : float
        Youden threshold on ``oof_proba_``; used by :meth:`predict`.
    meta_coef_ : Series
        Meta-model weight of each base model (on the logit scale).
    classes_ : ndarray
        ``[0, 1]``.
    """

    def __init__(self, *, estimators: Sequence[tuple], cv: int = 5, random_state: int = 0, meta_C: float = 1.0):
        self.estimators = estimators
        self.cv = cv
        self.random_state = random_state
        self.meta_C = meta_C

    def _specs(self) -> list[tuple[str, object, object]]:
        specs, names = [], set()
        for i, item in enumerate(self.estimators):
            if not isinstance(item, tuple) or len(item) not in (2, 3) or not isinstance(item[0], str):
                raise ValueError(f"estimators[{i}] must be (name, estimator) or (name, estimator, columns), got {item!r}")
            name, est, cols = item if len(item) == 3 else (*item, None)
            if name in names:
                raise ValueError(f"base model name {name!r} is used twice")
            if not hasattr(est, "predict_proba"):
                raise ValueError(f"base model {name!r} ({type(est).__name__}) has no predict_proba")
            names.add(name)
            specs.append((name, est, cols))
        if not specs:
            raise ValueError("ScoreStacker needs at least one base estimator")
        return specs

    @staticmethod
    def _select(X: object, cols: object, name: str) -> object:
        if cols is None:
            return X
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"base model {name!r} selects columns: pass X as a DataFrame (e.g. from feature_fusion())")
        if isinstance(cols, str):
            prefix = _block_prefix(cols) + "__"
            chosen = [c for c in X.columns if str(c).startswith(prefix)]
            if not chosen:
                known = sorted({str(c).split("__")[0] for c in X.columns})
                raise ValueError(f"base model {name!r}: no column of block {cols!r} (prefix {prefix!r}); blocks in X: {known[:8]}")
            return X[chosen]
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"base model {name!r}: {len(missing)} column(s) missing from X, e.g. {missing[:3]}")
        return X[list(cols)]

    def fit(self, X: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray) -> ScoreStacker:
        """Fit base models (out-of-fold, then on all data) and the meta-model on training data.

        Parameters
        ----------
        X : DataFrame or array
            Training features (a DataFrame when base models select columns).
        y : Series or array of 0/1
            Training labels; with a DataFrame X a Series is matched to X's rows
            by patient and must hold exactly X's patients.

        Returns
        -------
        ScoreStacker
        """
        specs = self._specs()
        X, y, names = _check_Xy(X, y)
        splits = _splits(self.cv, y, self.random_state)
        oof = np.column_stack([_fold_pass(est, self._select(X, cols, name), y, splits, "roc_auc")[0] for name, est, cols in specs])
        index = X.index if isinstance(X, pd.DataFrame) else None
        self.oof_scores_ = pd.DataFrame(oof, index=index, columns=[s[0] for s in specs])
        meta = LogisticRegression(C=self.meta_C, random_state=self.random_state, max_iter=5000)
        self.meta_model_ = clone(meta).fit(_logit(oof), y)
        meta_oof = np.full(len(y), np.nan)
        for tr, va in splits:
            meta_oof[va] = clone(meta).fit(_logit(oof[tr]), y[tr]).predict_proba(_logit(oof[va]))[:, 1]
        self.oof_proba_ = meta_oof
        self.threshold_ = youden_threshold(y, meta_oof)
        self.estimators_ = [(name, clone(est).fit(self._select(X, cols, name), y)) for name, est, cols in specs]
        self._columns_ = [cols for _, _, cols in specs]
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        return self

    @property
    def meta_coef_(self) -> pd.Series:
        """Meta-model weight per base model (logit scale)."""
        check_is_fitted(self, "meta_model_")
        return pd.Series(self.meta_model_.coef_[0], index=[n for n, _ in self.estimators_], name="meta_coef")

    def base_scores(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Class-1 probabilities of the refitted base models, one column per base model."""
        check_is_fitted(self, "meta_model_")
        scores = [_positive_proba(est, self._select(X, cols, name)) for (name, est), cols in zip(self.estimators_, self._columns_, strict=True)]
        return pd.DataFrame(np.column_stack(scores), index=X.index if isinstance(X, pd.DataFrame) else None,
                            columns=[n for n, _ in self.estimators_])  # fmt: skip

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Meta-model probabilities (columns: classes 0 and 1)."""
        check_is_fitted(self, "meta_model_")  # before the attribute lookup below: NotFittedError, not AttributeError
        return self.meta_model_.predict_proba(_logit(self.base_scores(X).to_numpy()))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """0/1 predictions at the training out-of-fold Youden threshold."""
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # a binary 0/1 endpoint
        return tags
