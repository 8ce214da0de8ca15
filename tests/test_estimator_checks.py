"""The scikit-learn estimator contract of every estimator of the toolkit.

scikit-learn's common checks (``parametrize_with_checks``) run on one small, fast instance of each estimator.
A check that does not apply to an estimator by design is recorded in :data:`EXPECTED_FAILED_CHECKS` with a one-line
reason and runs as a strict expected failure: it must fail (a check that starts passing has to be removed from the
list). The design reasons are few:

- DataFrame-only input: the clinical steps, the nomogram, ComBat and the ICC filter find their columns by name
  (clinical variables, batch column, reader features); the checks pass numpy arrays;
- survival models: ``fit(X, time, event)`` takes the outcome as two vectors; the checks pass one ``y``;
- 0/1 labels: :class:`ScoreStacker` takes a 0/1 endpoint (``classes_`` is ``[0, 1]``) and predicts at its
  out-of-fold Youden threshold;
- the feature-selection steps return DataFrames (no ndarray dtype to preserve) and check NaN only in the features
  they keep.

Binary targets are declared with the tag ``classifier_tags.multi_class = False`` (also on the supervised selection
transformers, whose ``y`` is the binary endpoint), so the checks pass two-class ``y`` instead of failing on it.

Where the common checks cannot reach (DataFrame-only and survival estimators), :func:`test_dataframe_contract`
checks the same contract on DataFrames: fit returns self and leaves its inputs and parameters unchanged, learned
state ends in ``_`` and is absent before fit, refits are deterministic, rows are predicted independently, pickling
and ``clone`` work. :class:`helpers.imaging.deep.deep_features.DeepFeatureExtractor` takes a mapping of patients to
images (tag ``two_d_array=False``), so no common check applies; only its parameters are checked here.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.utils.estimator_checks import parametrize_with_checks

from helpers.imaging.habitats import HabitatClusterer
from helpers.learning.clinical import ClinicalEncoder, ClinicalImputer, RadScoreAugmenter
from helpers.learning.harmonize import ComBatHarmonizer
from helpers.learning.models import ScoreStacker
from helpers.learning.nomogram import NomogramModel
from helpers.learning.selection import (
    CorrelationFilter,
    LassoSelector,
    MissingValueImputer,
    MRMRSelector,
    UnivariateFilter,
    ZScoreScaler,
)
from helpers.learning.stability import ICCFilter
from helpers.learning.survival import CoxModel, RandomSurvivalForest

REPO = Path(__file__).resolve().parents[1]

#: One configured instance per estimator (small and fast: the whole file runs in well under a minute).
ESTIMATORS = [
    MissingValueImputer(),
    ZScoreScaler(),
    UnivariateFilter(),
    CorrelationFilter(),
    MRMRSelector(k=2),
    LassoSelector(Cs=4, cv=3),
    ICCFilter(),
    ComBatHarmonizer(),
    ClinicalImputer(),
    ClinicalEncoder(),
    RadScoreAugmenter(steps=[{"step": "lasso", "Cs": 4, "cv": 3}]),
    NomogramModel(),
    ScoreStacker(estimators=[("logistic", LogisticRegression()), ("bayes", GaussianNB())], cv=3),
    CoxModel(),
    RandomSurvivalForest(n_estimators=5),
    HabitatClusterer(k=2, n_init=2),
]

#: Estimators without common checks, and why.
NOT_CHECKED = {
    "DeepFeatureExtractor": "X is a mapping patient -> images (tag two_d_array=False): scikit-learn's checks need 2-D arrays",
    # Survival selection steps (issue 15): y is a survival outcome (a structured (event, time) array); scikit-learn's checks
    # pass class labels or regression targets. Pinned against lifelines/scikit-survival in test_survival_selection.py.
    "UnivariateCoxFilter": "y is a structured survival array (to_structured(time, event)); the checks pass class labels",
    "CoxLassoSelector": "y is a structured survival array (to_structured(time, event)); the checks pass class labels",
    "SurvivalPipeline": "fit(X, time, event) on a DataFrame with named clinical columns; the checks call fit(X, y) with numpy X",
    # Issue 19: maps a model's one-dimensional out-of-fold scores to probabilities (held by TunedModel, never a pipeline step).
    "ProbabilityCalibrator": "fit(scores, y) on one score per patient, not a 2-D X; pinned to CalibratedClassifierCV in test_recalibration.py",
}

# Checks that fail for every estimator refusing numpy X (each calls fit or transform with an ndarray).
_NUMPY_X_CHECKS = (
    "check_complex_data", "check_dict_unchanged", "check_dont_overwrite_parameters", "check_dtype_object",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimator_sparse_tag", "check_estimators_dtypes",
    "check_estimators_empty_data_messages", "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit1d", "check_fit2d_1feature", "check_fit2d_1sample",
    "check_fit2d_predict1d", "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_pipeline_consistency", "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
)  # fmt: skip
_NUMPY_X_TRANSFORMER_CHECKS = ("check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_preserve_dtypes")
_NUMPY_X_CLASSIFIER_CHECKS = (
    "check_classifier_data_not_an_array", "check_classifier_not_supporting_multiclass", "check_classifiers_classes",
    "check_classifiers_one_label", "check_classifiers_regression_target", "check_classifiers_train",
    "check_decision_proba_consistency", "check_supervised_y_2d", "check_supervised_y_no_nan",
)  # fmt: skip


def _all(checks, reason: str) -> dict[str, str]:
    return dict.fromkeys(checks, reason)


_DATAFRAME_OUTPUT = "transform returns a pandas DataFrame (feature names, patient index) for any input: no ndarray dtype to preserve"
_SELECTED_NAN_ONLY = "transform checks NaN/inf only in the features it keeps; the check's NaN is in a dropped feature (ignored by design)"
_SURVIVAL = "fit(X, time, event): the survival outcome is two vectors, the checks call fit(X, y) with one y"
_LABELS_01 = "labels must be 0/1 (1 = event; classes_ is [0, 1]); the check uses other labels (1/2 or strings)"

#: Per estimator: check -> why it does not apply (run as strict expected failures).
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "MissingValueImputer": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT},
    "ZScoreScaler": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT},
    "UnivariateFilter": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT, "check_estimators_nan_inf": _SELECTED_NAN_ONLY},
    "CorrelationFilter": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT},
    "MRMRSelector": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT, "check_estimators_nan_inf": _SELECTED_NAN_ONLY},
    "LassoSelector": {"check_transformer_preserve_dtypes": _DATAFRAME_OUTPUT},
    "ICCFilter": _all(
        _NUMPY_X_CHECKS + _NUMPY_X_TRANSFORMER_CHECKS,
        "X must be a patient-indexed DataFrame whose feature names match the reader tables (fit(X, readers=...)); the checks pass numpy X",
    ),
    "ComBatHarmonizer": _all(
        _NUMPY_X_CHECKS + _NUMPY_X_TRANSFORMER_CHECKS,
        "X must be a patient-indexed DataFrame holding the batch column (batch_col); the checks pass numpy X",
    ),
    "ClinicalImputer": _all(
        _NUMPY_X_CHECKS + _NUMPY_X_TRANSFORMER_CHECKS,
        "X must be a DataFrame with the named clinical columns; the checks pass numpy X",
    ),
    "ClinicalEncoder": _all(
        (*_NUMPY_X_CHECKS, *_NUMPY_X_TRANSFORMER_CHECKS, "check_estimators_nan_inf"),
        "X must be a DataFrame with the named clinical columns; the checks pass numpy X",
    ),
    "RadScoreAugmenter": _all(
        (*_NUMPY_X_CHECKS, *_NUMPY_X_TRANSFORMER_CHECKS, "check_estimators_nan_inf", "check_requires_y_none"),
        "X must be a DataFrame whose clinical columns are named (the others are radiomic); the checks pass numpy X",
    ),
    "NomogramModel": _all(
        (*_NUMPY_X_CHECKS, *_NUMPY_X_CLASSIFIER_CHECKS, "check_estimators_nan_inf", "check_requires_y_none"),
        "X must be a DataFrame of named clinical variables and the Rad-score (levels coded by column); the checks pass numpy X",
    ),
    "ScoreStacker": {
        "check_classifier_data_not_an_array": _LABELS_01,
        "check_classifiers_classes": _LABELS_01,
        "check_estimators_dtypes": _LABELS_01,
        "check_fit2d_1feature": _LABELS_01,
        "check_classifiers_train": "predict applies the out-of-fold Youden threshold (threshold_), not the argmax of predict_proba",
        "check_supervised_y_2d": "y must be 1-D (one 0/1 label per patient): a column vector is an error, not ravelled with a warning",
    },
    "CoxModel": _all((*_NUMPY_X_CHECKS, "check_estimators_nan_inf", "check_requires_y_none"), _SURVIVAL),
    "RandomSurvivalForest": _all((*_NUMPY_X_CHECKS, "check_estimators_nan_inf", "check_requires_y_none"), _SURVIVAL),
    "HabitatClusterer": {},
}


def _expected_failed_checks(estimator) -> dict[str, str]:
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


def _check_name(check) -> str:
    return check.func.__name__ if isinstance(check, functools.partial) else check.__name__


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks, xfail_strict=True)
def test_sklearn_compatible_estimator(estimator, check):
    if _check_name(check) not in _expected_failed_checks(estimator):
        check(estimator)
        return
    try:
        check(estimator)
    except Exception as exc:  # noqa: BLE001  (the expected failure: marked xfail, strict, by parametrize_with_checks)
        # Re-raised without scikit-learn's deep traceback: pytest would spend ~0.3 s formatting each one.
        pytest.fail(f"{type(exc).__name__}: {exc}", pytrace=False)


# -- every estimator is covered --------------------------------------------------------------------------------------


def _estimator_classes() -> set[str]:
    """Public classes under helpers/ deriving (directly or through another one) from scikit-learn's BaseEstimator."""
    bases: dict[str, set[str]] = {}
    for path in (REPO / "helpers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {ast.unparse(b).split(".")[-1] for b in node.bases}
    found = {"BaseEstimator"}
    while True:
        more = {name for name, b in bases.items() if b & found} - found
        if not more:
            break
        found |= more
    return {name for name in found - {"BaseEstimator"} if not name.startswith("_")}


def test_every_estimator_is_checked_or_listed():
    checked = {type(e).__name__ for e in ESTIMATORS}
    assert checked.isdisjoint(NOT_CHECKED)
    assert _estimator_classes() == checked | set(NOT_CHECKED)
    assert set(EXPECTED_FAILED_CHECKS) == checked


def _constructors():
    from helpers.learning.recalibration import ProbabilityCalibrator

    classes = [type(e) for e in ESTIMATORS] + [ProbabilityCalibrator]
    try:
        from helpers.imaging.deep.deep_features import DeepFeatureExtractor
    except ImportError:  # pragma: no cover - torch missing
        pass
    else:
        classes.append(DeepFeatureExtractor)
    return classes


@pytest.mark.parametrize("cls", _constructors(), ids=lambda c: c.__name__)
def test_parameters_are_keyword_only_and_stored_unchanged(cls):
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    est = cls(**{p.name: (p.default if p.default is not inspect.Parameter.empty else []) for p in params})
    assert set(est.get_params(deep=False)) == {p.name for p in params}
    assert not [k for k in vars(est) if k.endswith("_")]  # no learned state before fit


# -- the contract on DataFrames, where the common checks cannot go -----------------------------------------------------


def _table(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient")
    y = pd.Series(np.tile([0, 1], n // 2), index=index, name="y")
    X = pd.DataFrame({f"f{j}": rng.normal(size=n) + (0.9 * y.to_numpy() if j < 2 else 0.0) for j in range(5)}, index=index)
    return X, y


def _case_icc():
    X, _ = _table()
    rng = np.random.default_rng(1)
    readers = [X + rng.normal(scale=s, size=X.shape) for s in (0.1, 0.3)]
    X = X.assign(cohort="train")  # metadata passes through
    return ICCFilter(threshold=0.5, unscored="passthrough"), X, (), {"readers": readers}, "transform"


def _case_combat():
    X, y = _table()
    scanner = np.tile(["A", "A", "B", "B"], len(X) // 4)
    X = X + np.where(scanner == "B", 1.5, 0.0)[:, None]
    return ComBatHarmonizer(covariates={"y": "categorical"}), X.assign(scanner=scanner), (y,), {}, "transform"


def _clinical(missing: bool) -> tuple[pd.DataFrame, pd.Series]:
    X, y = _table()
    rng = np.random.default_rng(2)
    clinical = pd.DataFrame(
        {"age": rng.normal(60, 8, len(X)).round(), "grade": rng.choice(["G1", "G2", "G3"], len(X)), "radscore": X["f0"] + X["f1"]},
        index=X.index,
    )
    if missing:
        clinical.loc[clinical.index[::7], "age"] = np.nan
        clinical.loc[clinical.index[3::9], "grade"] = None
    return clinical, y


def _case_clinical_imputer():
    X, _ = _clinical(missing=True)
    return ClinicalImputer(continuous=["age"], categorical=["grade"]), X, (), {}, "transform"


def _case_clinical_encoder():
    X, _ = _clinical(missing=False)
    return ClinicalEncoder(continuous=["age"], categorical=["grade"]), X, (), {}, "transform"


def _case_radscore():
    X, y = _table()
    clinical, _ = _clinical(missing=False)
    steps = [{"step": "zscore"}, {"step": "lasso", "Cs": 4, "cv": 3}]
    return RadScoreAugmenter(steps=steps, clinical=["age"]), X.assign(age=clinical["age"]), (y,), {}, "transform"


def _case_nomogram():
    X, y = _clinical(missing=False)
    return NomogramModel(categorical=["grade"]), X, (y,), {}, "predict_proba"


def _survival() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    X, _ = _table()
    rng = np.random.default_rng(3)
    time = pd.Series(rng.exponential(10 * np.exp(-0.7 * X["f0"].to_numpy())), index=X.index).round(2) + 0.1
    event = pd.Series((rng.uniform(size=len(X)) < 0.7).astype(int), index=X.index)
    return X[["f0", "f1", "f2"]], time, event


def _case_cox():
    X, time, event = _survival()
    return CoxModel(), X, (time, event), {}, "predict_risk"


def _case_forest():
    X, time, event = _survival()
    return RandomSurvivalForest(n_estimators=5, min_samples_split=6, min_samples_leaf=3), X, (time, event), {}, "predict_risk"


DATAFRAME_CASES = {
    "ICCFilter": _case_icc,
    "ComBatHarmonizer": _case_combat,
    "ClinicalImputer": _case_clinical_imputer,
    "ClinicalEncoder": _case_clinical_encoder,
    "RadScoreAugmenter": _case_radscore,
    "NomogramModel": _case_nomogram,
    "CoxModel": _case_cox,
    "RandomSurvivalForest": _case_forest,
}


def _as_array(out) -> np.ndarray:
    return out.to_numpy() if isinstance(out, pd.DataFrame | pd.Series) else np.asarray(out)


def _assert_same(a, b) -> None:
    a, b = _as_array(a), _as_array(b)
    assert a.shape == b.shape
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_array_equal(a, b)


def _learned(est) -> list[str]:
    return [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


@pytest.mark.parametrize("name", list(DATAFRAME_CASES))
def test_dataframe_contract(name):
    est, X, args, kwargs, method = DATAFRAME_CASES[name]()
    params = est.get_params()
    assert not _learned(est)
    with pytest.raises(NotFittedError):
        getattr(est, method)(X)
    X_before, args_before, kwargs_before = X.copy(deep=True), copy.deepcopy(args), copy.deepcopy(kwargs)

    assert est.fit(X, *args, **kwargs) is est
    pd.testing.assert_frame_equal(X, X_before)  # fit never modifies its inputs...
    for got, before in zip([*args, *kwargs.get("readers", [])], [*args_before, *kwargs_before.get("readers", [])], strict=True):
        (pd.testing.assert_series_equal if isinstance(got, pd.Series) else pd.testing.assert_frame_equal)(got, before)
    assert est.get_params() == params  # ...nor its parameters
    assert _learned(est)
    assert est.n_features_in_ == X.shape[1] and list(est.feature_names_in_) == list(X.columns)

    out = getattr(est, method)(X)
    pd.testing.assert_frame_equal(X, X_before)
    # Each row is predicted from its own values and the fitted state only.
    _assert_same(getattr(est, method)(X.iloc[5:12]), _as_array(out)[5:12])
    _assert_same(getattr(est, method)(X.iloc[::-1]), _as_array(out)[::-1])
    # Deterministic refits, from a clone and in place; pickling keeps the fitted state.
    fresh = clone(est)
    assert fresh.get_params() == params and not _learned(fresh)
    _assert_same(getattr(fresh.fit(X, *args, **kwargs), method)(X), out)
    _assert_same(getattr(est.fit(X, *args, **kwargs), method)(X), out)
    _assert_same(getattr(pickle.loads(pickle.dumps(est)), method)(X), out)
    assert est.set_params(**params) is est


@pytest.mark.parametrize("name, column", [("NomogramModel", "radscore"), ("ClinicalEncoder", "age"), ("CoxModel", "f0"),
                                          ("RandomSurvivalForest", "f0")])  # fmt: skip
def test_infinite_values_are_rejected_not_predicted(name, column):
    est, X, args, kwargs, method = DATAFRAME_CASES[name]()
    bad = X.copy()
    bad.loc[bad.index[2], column] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        est.fit(bad, *args, **kwargs)
    est.fit(X, *args, **kwargs)
    with pytest.raises(ValueError, match="infinite"):
        getattr(est, method)(bad)
