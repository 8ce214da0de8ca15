"""A survival model with its own preprocessing, refitted as one unit inside every training fold.

:class:`SurvivalPipeline` imputes and encodes the clinical variables
(:class:`~helpers.learning.clinical.ClinicalImputer`,
:class:`~helpers.learning.clinical.ClinicalEncoder`), imputes (training median)
and z-scores every other column (:class:`~helpers.learning.selection.MissingValueImputer`,
:class:`~helpers.learning.selection.ZScoreScaler`, constant columns dropped),
then fits a survival estimator with the ``fit(X, time, event)`` contract
(:class:`~helpers.learning.survival.CoxModel`,
:class:`~helpers.learning.survival.RandomSurvivalForest`). Everything is
learned from the rows passed to ``fit``; prediction applies that state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from helpers.learning.clinical import ClinicalEncoder, ClinicalImputer
from helpers.learning.selection import MissingValueImputer, ZScoreScaler

__all__ = ["SurvivalPipeline"]


class SurvivalPipeline(BaseEstimator):
    """Fold-fitted preprocessing (clinical imputation/encoding, feature imputation/z-scores) and a survival estimator.

    Parameters
    ----------
    estimator : estimator with ``fit(X, time, event)``, ``predict_risk`` and ``predict_survival_function``
    continuous, categorical : sequence of str
        Clinical columns of X (imputed by the training median / mode; continuous z-scored, categorical one-hot coded).
        Every other column is a feature: imputed by the training median and z-scored.

    Attributes
    ----------
    estimator_ : the fitted estimator (on the transformed columns)
    clinical_imputer_, clinical_encoder_, feature_imputer_, feature_scaler_ : fitted steps (None when unused)
    feature_names_in_ : ndarray
    """

    def __init__(self, *, estimator=None, continuous: Sequence[str] = (), categorical: Sequence[str] = ()):
        self.estimator = estimator
        self.continuous = continuous
        self.categorical = categorical

    def _clinical(self) -> list[str]:
        return [*self.continuous, *self.categorical]

    def _fit_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        clinical = [c for c in self._clinical() if c in X.columns]
        features = [c for c in X.columns if c not in clinical]
        parts = []
        self.clinical_imputer_ = self.clinical_encoder_ = self.feature_imputer_ = self.feature_scaler_ = None
        if clinical:
            cont = [c for c in self.continuous if c in clinical]
            cat = [c for c in self.categorical if c in clinical]
            self.clinical_imputer_ = ClinicalImputer(continuous=cont, categorical=cat).fit(X[clinical])
            imputed = self.clinical_imputer_.transform(X[clinical])
            self.clinical_encoder_ = ClinicalEncoder(continuous=cont, categorical=cat).fit(imputed)
            parts.append(self.clinical_encoder_.transform(imputed))
        if features:
            self.feature_imputer_ = MissingValueImputer().fit(X[features])
            filled = self.feature_imputer_.transform(X[features])
            self.feature_scaler_ = ZScoreScaler(on_constant="drop").fit(filled)
            parts.append(self.feature_scaler_.transform(filled))
        return pd.concat(parts, axis=1)

    def _transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "estimator_")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"SurvivalPipeline: columns seen in fit are missing, e.g. {missing[:5]}")
        X = X[list(self.feature_names_in_)]
        parts = []
        if self.clinical_encoder_ is not None:
            cols = list(self.clinical_imputer_.feature_names_in_)
            parts.append(self.clinical_encoder_.transform(self.clinical_imputer_.transform(X[cols])))
        if self.feature_scaler_ is not None:
            cols = list(self.feature_imputer_.feature_names_in_)
            parts.append(self.feature_scaler_.transform(self.feature_imputer_.transform(X[cols])))
        return pd.concat(parts, axis=1)

    def fit(self, X: pd.DataFrame, time: object, event: object) -> SurvivalPipeline:
        """Fit preprocessing and estimator on these (training) rows; time/event Series are matched to X by patient."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError("SurvivalPipeline needs a DataFrame X (named clinical and feature columns)")
        if self.estimator is None:
            raise ValueError("SurvivalPipeline needs an estimator")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        Z = self._fit_transform(X)
        if isinstance(time, pd.Series):
            time, event = time.reindex(X.index), event.reindex(X.index)
        self.estimator_ = clone(self.estimator).fit(Z, np.asarray(time, dtype=float), np.asarray(event, dtype=int))
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The estimator's input columns for X (training-fitted imputation, encoding and z-scores)."""
        return self._transform(X)

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Risk score of the estimator (higher = worse)."""
        return self.estimator_.predict_risk(self._transform(X))

    def predict_survival_function(self, X: pd.DataFrame, times: Sequence[float]) -> np.ndarray:
        """Survival probabilities at ``times``, shape (n_patients, n_times)."""
        return self.estimator_.predict_survival_function(self._transform(X), times)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
