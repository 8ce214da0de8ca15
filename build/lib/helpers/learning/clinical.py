"""Clinical variables as model inputs: imputation, encoding, and the Rad-score as a covariate.

Every class follows the scikit-learn estimator contract so that cross-validation
refits it inside each training fold: the imputation values, scaling and
category levels, and the Rad-score's selection + LASSO all come from the
training fold only. The clinical-radiomics nomogram is the pipeline
``RadScoreAugmenter -> ClinicalImputer -> NomogramModel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import ClassifierTags
from sklearn.utils.validation import check_is_fitted

from helpers._alignment import align_to_index
from helpers.errors import InputDataError
from helpers.learning.selection import build_selector, radscore

__all__ = ["ClinicalImputer", "ClinicalEncoder", "RadScoreAugmenter"]


def _frame(X: object, what: str) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{what} needs a DataFrame with named clinical columns, got {type(X).__name__}")
    return X


def _require_columns(X: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise InputDataError(f"{what}: columns {missing} are missing; add them to the patient table or remove them from 'clinical' in the study config")


def _require_finite(values: pd.DataFrame, what: str) -> None:
    bad = np.isinf(values.to_numpy(dtype=float))
    if bad.any():
        cols = values.columns[bad.any(axis=0)].tolist()
        rows = values.index[bad.any(axis=1)].tolist()
        raise InputDataError(f"{what}: infinite values in {cols} for patient(s) {rows[:10]}; a clinical value must be finite")


class ClinicalImputer(TransformerMixin, BaseEstimator):
    """Impute clinical variables with training statistics (median / most frequent level).

    Parameters
    ----------
    continuous, categorical : sequence of str
        Column names. Other columns pass through unchanged.

    Attributes
    ----------
    fill_values_ : dict
        Training median of each continuous and most frequent level of each
        categorical column (ties: the smallest level, so the choice is stable).
    n_imputed_ : dict
        Missing values per column in the data seen by ``fit``.
    """

    def __init__(self, *, continuous: Sequence[str] = (), categorical: Sequence[str] = ()):
        self.continuous = continuous
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> ClinicalImputer:
        X = _frame(X, "ClinicalImputer")
        _require_columns(X, [*self.continuous, *self.categorical], "ClinicalImputer")
        fill: dict[str, object] = {}
        for col in self.continuous:
            values = pd.to_numeric(X[col], errors="coerce")
            if values.notna().sum() == 0:
                raise InputDataError(f"clinical variable '{col}' has no value in the training data; remove it from 'clinical.continuous'")
            fill[col] = float(values.median())
        for col in self.categorical:
            counts = X[col].dropna().astype(str).value_counts()
            if counts.empty:
                raise InputDataError(f"clinical variable '{col}' has no value in the training data; remove it from 'clinical.categorical'")
            top = counts[counts == counts.max()].index
            fill[col] = sorted(top)[0]
        self.fill_values_ = fill
        self.n_imputed_ = {c: int(X[c].isna().sum()) for c in [*self.continuous, *self.categorical]}
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "fill_values_")
        X = _frame(X, "ClinicalImputer").copy()
        _require_columns(X, [*self.continuous, *self.categorical], "ClinicalImputer")
        for col in self.continuous:
            X[col] = pd.to_numeric(X[col], errors="coerce").fillna(self.fill_values_[col]).astype(float)
        for col in self.categorical:
            X[col] = X[col].astype("object").where(X[col].notna(), self.fill_values_[col]).astype(str)
        return X

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        return self.feature_names_in_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are what it fills
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


class ClinicalEncoder(TransformerMixin, BaseEstimator):
    """Z-score continuous and one-hot code categorical clinical variables (training levels).

    Parameters
    ----------
    continuous, categorical : sequence of str
        Column names (already imputed). Only these columns are output.

    Attributes
    ----------
    mean_, scale_ : Series
        Training mean and SD (ddof=0) of each continuous column (SD 0 -> 1).
    levels_ : dict
        Training levels of each categorical column, sorted; the first is the
        reference (no indicator column).

    Raises
    ------
    InputDataError
        At ``transform``, a categorical level that training never saw (the
        model has no coefficient for it): the message names the patients.
    """

    def __init__(self, *, continuous: Sequence[str] = (), categorical: Sequence[str] = ()):
        self.continuous = continuous
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> ClinicalEncoder:
        X = _frame(X, "ClinicalEncoder")
        _require_columns(X, [*self.continuous, *self.categorical], "ClinicalEncoder")
        cont = X[list(self.continuous)].astype(float)
        if cont.isna().any().any():
            raise InputDataError("ClinicalEncoder got missing continuous values: put a ClinicalImputer before it")
        _require_finite(cont, "ClinicalEncoder.fit")
        self.mean_ = cont.mean()
        scale = cont.std(ddof=0)
        self.scale_ = scale.where(scale > 0, 1.0)
        self.levels_ = {c: sorted(X[c].astype(str).unique()) for c in self.categorical}
        self.feature_names_out_ = np.asarray(
            [*self.continuous, *[f"{c}={lvl}" for c in self.categorical for lvl in self.levels_[c][1:]]], dtype=object
        )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "levels_")
        X = _frame(X, "ClinicalEncoder")
        _require_columns(X, [*self.continuous, *self.categorical], "ClinicalEncoder")
        cont = X[list(self.continuous)].astype(float)
        _require_finite(cont, "ClinicalEncoder.transform")
        out = (cont - self.mean_) / self.scale_
        for col in self.categorical:
            values = X[col].astype(str)
            unseen = values[~values.isin(self.levels_[col])]
            if len(unseen):
                raise InputDataError(
                    f"clinical variable '{col}': level(s) {sorted(set(unseen))} of patient(s) {list(unseen.index)[:10]} never occur in "
                    f"training (levels {self.levels_[col]}); recode them to a training level or merge rare levels in the patient table"
                )
            for lvl in self.levels_[col][1:]:
                out[f"{col}={lvl}"] = (values == lvl).astype(float)
        return out[list(self.feature_names_out_)]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True  # one-hot coded with the training levels
        tags.input_tags.string = True
        return tags


class RadScoreAugmenter(TransformerMixin, BaseEstimator):
    """Replace the radiomic columns by a Rad-score learned on the data ``fit`` sees.

    The selection steps (ending in a LASSO step) are fitted on the radiomic
    columns; ``transform`` returns the clinical columns plus ``radscore``.
    Inside cross-validation the Rad-score is therefore relearned per fold, so
    a nomogram's out-of-fold AUC is not inflated by a signature fitted on the
    validation patients.

    Parameters
    ----------
    steps : sequence of mapping
        Selection steps as in the study config (``signature.steps``); the last
        must be ``lasso``.
    clinical : sequence of str
        Clinical columns to keep; every other column is radiomic.

    Attributes
    ----------
    selector_ : Pipeline
        The fitted selection pipeline.
    radiomic_columns_ : list of str
    """

    def __init__(self, *, steps: Sequence[Mapping[str, object]] = (), clinical: Sequence[str] = ()):
        self.steps = steps
        self.clinical = clinical

    def fit(self, X: pd.DataFrame, y: object) -> RadScoreAugmenter:
        """Fit the selection steps on the radiomic columns of the training rows.

        Parameters
        ----------
        X : pandas.DataFrame
            Clinical and radiomic columns, one row per patient.
        y : array-like of 0/1
            Binary endpoint; a Series is matched to X's rows by patient (index label) and must hold
            exactly X's patients, an array is taken in X's row order.

        Returns
        -------
        RadScoreAugmenter
        """
        X = _frame(X, "RadScoreAugmenter")
        if not self.steps or dict(self.steps[-1]).get("step") != "lasso":
            raise ValueError("RadScoreAugmenter needs selection steps ending in a 'lasso' step (the Rad-score is its linear predictor)")
        _require_columns(X, self.clinical, "RadScoreAugmenter")
        self.radiomic_columns_ = [c for c in X.columns if c not in set(self.clinical)]
        if not self.radiomic_columns_:
            raise InputDataError("RadScoreAugmenter: no radiomic columns besides the clinical ones")
        y = align_to_index(X.index, y, "y", "X")  # a Series y is matched to X's patients, not paired by row position
        self.selector_ = clone(build_selector([dict(s) for s in self.steps])).fit(X[self.radiomic_columns_], y)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "selector_")
        X = _frame(X, "RadScoreAugmenter")
        out = X[list(self.clinical)].copy()
        out["radscore"] = radscore(X[self.radiomic_columns_], self.selector_)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([*self.clinical, "radscore"], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.classifier_tags = ClassifierTags(multi_class=False)  # y is the binary endpoint (see helpers.learning.selection)
        tags.input_tags.categorical = True  # clinical columns pass through unchanged
        tags.input_tags.string = True
        return tags
