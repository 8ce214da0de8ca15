"""SHAP explanations of the final classification model.

The final model is a fitted scikit-learn (or imbalanced-learn) ``Pipeline``
whose last step is a binary classifier and whose earlier steps transform or
select features. Explanations are computed on the *transformed* feature space
(the features the classifier actually sees), with the background drawn from
the TRAINING cohort only.

Explainer and explained output, by classifier:

* Tree models (RandomForest, ExtraTrees, DecisionTree, GradientBoosting,
  HistGradientBoosting, XGBoost, LightGBM, CatBoost): ``shap.TreeExplainer``
  with interventional feature perturbation on a seeded sample of at most
  ``max_background`` training rows; explained output: the probability of the
  positive class (also for boosted models, whose raw output is the log-odds).
* ``LogisticRegression`` and the other ``sklearn.linear_model`` classifiers:
  ``shap.LinearExplainer`` with an independent masker on the whole training
  background; explained output: the log-odds (``decision_function``; for
  non-logistic linear classifiers, their decision function).
* Anything else (SVM, including ``CalibratedClassifierCV(SVC)``, kNN, MLP,
  ...): model-agnostic ``shap.KernelExplainer`` on a seeded sample of at most
  ``kernel_background`` training rows; explained output: the probability of
  the positive class (``decision_function`` when there is no
  ``predict_proba``). With few features (2^M <= ``nsamples``) every coalition
  is enumerated and the values are the exact interventional Shapley values;
  otherwise coalitions are sampled from a seeded NumPy state (restored
  afterwards).

In every case the explanation is additive: ``base_values + values.sum(1)``
equals :func:`explained_output` for each patient, and the base value is the
mean explained output over the (sampled) training background, so it does not
depend on the patients being explained. For a linear model the SHAP value of
feature j is exactly ``coef_j * (x_j - mean_background_j)``.

Pipeline steps with ``fit_resample`` (SMOTE and the other imbalanced-learn
samplers) are skipped: they only act during fitting, exactly as
``Pipeline.predict`` skips them.

The SHAP figures (beeswarm, bar, waterfall) are in :mod:`helpers.figures.shap`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    # shap 0.51 builds its colour maps with matplotlib calls that are pending deprecation; not ours to fix.
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    import shap
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "explained_output",
    "explainer_kind",
    "explanation_scale",
    "shap_explanation",
    "top_features",
    "transform_features",
]

#: Classifiers explained with TreeExplainer, as (top-level module, class name).
_TREE_MODELS = {
    ("sklearn", "DecisionTreeClassifier"),
    ("sklearn", "ExtraTreeClassifier"),
    ("sklearn", "RandomForestClassifier"),
    ("sklearn", "ExtraTreesClassifier"),
    ("sklearn", "GradientBoostingClassifier"),
    ("sklearn", "HistGradientBoostingClassifier"),
    ("xgboost", "XGBClassifier"),
    ("lightgbm", "LGBMClassifier"),
    ("catboost", "CatBoostClassifier"),
}


# -- pipeline handling -----------------------------------------------------------
def _split_pipeline(pipeline: object) -> tuple[list[tuple[str, object]], object]:
    """(transform steps, final classifier) of a Pipeline, or ([], model) for a bare model."""
    pipeline = getattr(pipeline, "pipeline_", pipeline)  # a helpers.learning.models.FittedModel wraps its pipeline
    steps = getattr(pipeline, "steps", None)
    if steps is None:
        return [], pipeline
    if not steps:
        raise ValueError("the pipeline has no steps; pass a fitted Pipeline whose last step is the classifier")
    return list(steps[:-1]), steps[-1][1]


def _check_binary_classifier(model: object) -> None:
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise NotFittedError(
            f"the final step {type(model).__name__} is not fitted; fit the pipeline on the training cohort "
            "before explaining it"
        ) from exc
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        raise ValueError(
            f"{type(model).__name__} must be a binary classifier (classes_ of length 2, got {classes!r}); "
            "SHAP explanations here are of the positive class (classes_[1]) of a binary endpoint"
        )


def _input_names(X: object, pipeline: object) -> list[str]:
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    names = getattr(pipeline, "feature_names_in_", None)
    n = np.shape(X)[1]
    if names is not None and len(names) == n:
        return [str(c) for c in names]
    return [f"x{i}" for i in range(n)]


def _names_after(step: object, names: list[str], Z: object) -> list[str]:
    if isinstance(Z, pd.DataFrame):
        return [str(c) for c in Z.columns]
    n_out = np.shape(Z)[1]
    if hasattr(step, "get_feature_names_out"):
        try:
            out = [str(c) for c in step.get_feature_names_out(np.asarray(names, dtype=object))]
            if len(out) == n_out:
                return out
        except (ValueError, TypeError, AttributeError, NotFittedError):
            pass  # some steps cannot name their outputs; fall back below
    if n_out == len(names):
        return names  # a shape-preserving transform (e.g. a scaler without name support)
    return [f"x{i}" for i in range(n_out)]


def transform_features(pipeline: object, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """Apply the pipeline's transform steps (all but the last), as at prediction time.

    Samplers (steps with ``fit_resample``, e.g. SMOTE) and ``"passthrough"``
    steps are skipped, as ``Pipeline.predict`` does.

    Parameters
    ----------
    pipeline : Pipeline or estimator
        Fitted pipeline whose last step is the classifier (a bare classifier
        is also accepted: then nothing is transformed).
    X : pandas.DataFrame or numpy.ndarray
        Input features (one row per patient).

    Returns
    -------
    pandas.DataFrame
        The features the classifier sees, float64, with the feature names of
        the last naming step (``get_feature_names_out``, DataFrame columns or
        ``x0..`` as a last resort) and the index of ``X`` (patient ids) when
        ``X`` is a DataFrame.
    """
    transforms, _ = _split_pipeline(pipeline)
    names = _input_names(X, getattr(pipeline, "pipeline_", pipeline))
    index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(np.shape(X)[0])
    Z: object = X
    for name, step in transforms:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if hasattr(step, "fit_resample"):
            continue  # samplers change the training set only; they have no effect at prediction time
        if not hasattr(step, "transform"):
            raise TypeError(f"pipeline step '{name}' ({type(step).__name__}) has no transform(); only the last step may be a model")
        Z = step.transform(Z)
        names = _names_after(step, names, Z)
    if hasattr(Z, "toarray"):
        Z = Z.toarray()  # sparse output (e.g. one-hot encoders)
    values = np.asarray(Z, dtype=float)
    return pd.DataFrame(values, columns=names, index=index)


# -- model kinds and their explained output --------------------------------------
def explainer_kind(pipeline: object) -> str:
    """Which SHAP explainer :func:`shap_explanation` uses: ``"tree"``, ``"linear"`` or ``"kernel"``."""
    _, model = _split_pipeline(pipeline)
    module = type(model).__module__.split(".")[0]
    if (module, type(model).__name__) in _TREE_MODELS:
        return "tree"
    if type(model).__module__.startswith("sklearn.linear_model") and hasattr(model, "coef_"):
        return "linear"
    return "kernel"


def explanation_scale(pipeline: object) -> str:
    """Scale of the explained output: ``"probability"``, ``"log-odds"`` or ``"decision function"``."""
    _, model = _split_pipeline(pipeline)
    kind = explainer_kind(pipeline)
    if kind == "tree":
        return "probability"
    if kind == "linear":
        is_logistic = type(model).__name__ in {"LogisticRegression", "LogisticRegressionCV"} or getattr(model, "loss", None) == "log_loss"
        return "log-odds" if is_logistic else "decision function"
    return "probability" if hasattr(model, "predict_proba") else "decision function"


def _model_function(model: object, names: list[str], scale: str):
    """f(Z) -> explained output of the classifier on the transformed features Z (ndarray)."""
    wants_frame = getattr(model, "feature_names_in_", None) is not None

    def f(Z: np.ndarray) -> np.ndarray:
        Zin = pd.DataFrame(np.asarray(Z, dtype=float), columns=names) if wants_frame else np.asarray(Z, dtype=float)
        if scale == "probability":
            return np.asarray(model.predict_proba(Zin))[:, 1]
        return np.asarray(model.decision_function(Zin)).reshape(-1)

    return f


def explained_output(pipeline: object, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The model output that :func:`shap_explanation` decomposes, per patient.

    Probability of the positive class for tree models and the model-agnostic
    fallback, log-odds (``decision_function``) for logistic regression; see
    :func:`explanation_scale`.
    """
    _, model = _split_pipeline(pipeline)
    _check_binary_classifier(model)
    Z = transform_features(pipeline, X)
    return _model_function(model, list(Z.columns), explanation_scale(pipeline))(Z.to_numpy())


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's legacy global RNG (used by KernelExplainer and shap's beeswarm) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _sample_rows(Z: np.ndarray, k: int, random_state: int) -> np.ndarray:
    if k <= 0:
        raise ValueError(f"background size must be >= 1, got {k}")
    if len(Z) <= k:
        return Z
    idx = np.sort(np.random.default_rng(random_state).choice(len(Z), size=k, replace=False))
    return Z[idx]


# -- the explanation -------------------------------------------------------------
def shap_explanation(
    pipeline: object,
    X_background: pd.DataFrame | np.ndarray,
    X_explain: pd.DataFrame | np.ndarray,
    random_state: int = 0,
    max_background: int = 100,
    kernel_background: int = 50,
    nsamples: int | str = "auto",
) -> shap.Explanation:
    """SHAP values of a fitted pipeline's classifier on the transformed features.

    Parameters
    ----------
    pipeline : Pipeline or estimator
        Fitted sklearn/imblearn Pipeline whose last step is a binary
        classifier (or a bare fitted classifier, or an object holding the
        pipeline in ``pipeline_`` such as ``helpers.learning.models.FittedModel``).
    X_background : pandas.DataFrame or numpy.ndarray
        Background (reference) patients, in the pipeline's input space. Must
        be TRAINING-cohort data: the base value is the mean model output over
        it, and a test-cohort background would leak test information into the
        reported explanation.
    X_explain : pandas.DataFrame or numpy.ndarray
        Patients to explain (any cohort). With a DataFrame, its index (the
        manifest patient id) becomes ``instance_names``.
    random_state : int, default 0
        Seed of the background subsampling and of KernelExplainer's sampling.
    max_background : int, default 100
        Largest background for the tree explainer (seeded subsample beyond).
    kernel_background : int, default 50
        Largest background for the model-agnostic KernelExplainer (its cost is
        linear in this number).
    nsamples : int or "auto", default "auto"
        Coalitions evaluated per patient by KernelExplainer (``"auto"``:
        ``2 * M + 2048``, which enumerates all coalitions exactly up to
        M = 11 features).

    Returns
    -------
    shap.Explanation
        ``values`` (n_patients, n_features), ``base_values`` (n_patients,),
        ``data`` (transformed features), ``feature_names`` and
        ``output_names`` (the explained scale: ``"probability"``,
        ``"log-odds"`` or ``"decision function"``); see the module docstring.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When the classifier is not fitted.
    ValueError
        When the classifier is not binary, or the inputs are empty or differ
        in their features.
    """
    _, model = _split_pipeline(pipeline)
    _check_binary_classifier(model)
    if len(X_background) == 0 or len(X_explain) == 0:
        raise ValueError("X_background and X_explain need at least one patient each")
    both_frames = isinstance(X_background, pd.DataFrame) and isinstance(X_explain, pd.DataFrame)
    if both_frames and list(X_background.columns) != list(X_explain.columns):
        raise ValueError("X_background and X_explain must have the same columns in the same order (the pipeline's input features)")
    background = transform_features(pipeline, X_background)
    explain = transform_features(pipeline, X_explain)
    names = list(explain.columns)
    Zb, Ze = background.to_numpy(), explain.to_numpy()
    kind = explainer_kind(pipeline)
    scale = explanation_scale(pipeline)

    if kind == "tree":
        # Interventional Tree SHAP on training background: exact Shapley values of the predicted
        # probability, with the base value = mean training-background probability.
        explainer = shap.TreeExplainer(
            model, data=_sample_rows(Zb, max_background, random_state), feature_perturbation="interventional", model_output="probability"
        )
        raw = explainer(Ze)
        values, base = np.asarray(raw.values, dtype=float), np.asarray(raw.base_values, dtype=float)
        if values.ndim == 3:  # one slice per class (sklearn forests): keep the positive class
            values, base = values[:, :, 1], base[:, 1]
    elif kind == "linear":
        # All background rows (max_samples = len) so the base value uses the exact training mean.
        explainer = shap.LinearExplainer(model, shap.maskers.Independent(Zb, max_samples=len(Zb)))
        raw = explainer(Ze)
        values, base = np.asarray(raw.values, dtype=float), np.asarray(raw.base_values, dtype=float)
    else:
        f = _model_function(model, names, scale)
        with _seeded_global_numpy(random_state):
            explainer = shap.KernelExplainer(f, _sample_rows(Zb, kernel_background, random_state))
            values = np.asarray(explainer.shap_values(Ze, nsamples=nsamples, silent=True), dtype=float)
        base = np.full(len(Ze), float(np.asarray(explainer.expected_value).reshape(-1)[0]))

    base = np.broadcast_to(base.reshape(-1), (len(Ze),)).astype(float)
    instance_names = [str(i) for i in X_explain.index] if isinstance(X_explain, pd.DataFrame) else None
    return shap.Explanation(
        values=values.reshape(len(Ze), len(names)),
        base_values=base,
        data=Ze,
        feature_names=names,
        instance_names=instance_names,
        output_names=scale,
    )


def top_features(explanation: shap.Explanation, k: int = 10) -> pd.DataFrame:
    """Table of the k features with the largest mean |SHAP| (for the supplementary tables).

    Returns
    -------
    pandas.DataFrame
        Columns ``feature``, ``mean_abs_shap`` and ``mean_shap``, sorted by
        decreasing ``mean_abs_shap``.
    """
    values = np.asarray(explanation.values, dtype=float)
    table = pd.DataFrame(
        {"feature": list(explanation.feature_names), "mean_abs_shap": np.abs(values).mean(0), "mean_shap": values.mean(0)}
    )
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable").head(k).reset_index(drop=True)
