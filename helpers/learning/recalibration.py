"""Recalibration of predicted probabilities on the training cohort's out-of-fold scores.

Class weighting and SMOTE train a classifier on a reweighted outcome
distribution, so its probabilities are pulled towards 0.5 instead of the
training prevalence. :class:`ProbabilityCalibrator` maps a model's raw score to
a probability calibrated on the training cohort: Platt's sigmoid or isotonic
regression fitted on the *out-of-fold* scores of the training patients (each
score from a pipeline that never saw the patient), exactly as scikit-learn's
:class:`~sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``
does on the same folds. The calibrator is scikit-learn's own: a
``CalibratedClassifierCV`` fitted on the scores through a score pass-through
estimator, so the smoothing of Platt's targets and the isotonic clipping are
scikit-learn's, not a re-implementation.

The raw score is what ``CalibratedClassifierCV`` uses: the pipeline's
``decision_function`` when it has one (logistic regression: the linear
predictor), otherwise its class-1 probability (forests, boosting, the
Platt-scaled SVM) (:func:`response_method`).

:func:`cross_fitted_probabilities` gives the training patients' recalibrated
out-of-fold probabilities: fold k's scores through a calibrator fitted on the
other folds' scores only, so no reported training probability comes from a
calibrator that saw the patient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "RECALIBRATION_METHODS",
    "ProbabilityCalibrator",
    "cross_fitted_probabilities",
    "recalibration_for",
    "response_method",
    "response_scores",
]

#: Recalibration methods of :class:`ProbabilityCalibrator` (``none``: no calibrator).
RECALIBRATION_METHODS = ("none", "sigmoid", "isotonic")


def response_method(estimator: object) -> str:
    """``decision_function`` when the (pipeline's final) estimator has one, else ``predict_proba``.

    The same choice as ``CalibratedClassifierCV``: an imbalanced-learn or
    scikit-learn pipeline exposes ``decision_function`` only when its final
    step does.
    """
    return "decision_function" if hasattr(estimator, "decision_function") else "predict_proba"


def response_scores(estimator: object, X: object) -> np.ndarray:
    """Raw scores of a fitted binary classifier: its decision function, or its class-1 probability (see :func:`response_method`)."""
    if response_method(estimator) == "decision_function":
        return _floating(np.asarray(estimator.decision_function(X)).reshape(-1))
    proba = np.asarray(estimator.predict_proba(X))
    classes = list(np.asarray(estimator.classes_).tolist())
    return _floating(proba[:, classes.index(1)])


def _floating(values: np.ndarray) -> np.ndarray:
    """Floating scores keep their dtype (XGBoost's float32, as scikit-learn's calibration sees them); others become float64."""
    return values if values.dtype.kind == "f" else values.astype(float)


def recalibration_for(setting: str, *, weighted: bool, smote: bool, tuned: bool) -> str:
    """The recalibration a model gets: ``auto`` is ``sigmoid`` for a model trained with class weights or SMOTE, or whose
    hyperparameters were chosen by cross-validated AUC; ``none`` otherwise.

    Why tuning counts: the AUC ranks patients and cannot see calibration, so the AUC-best hyperparameters can shrink the
    probabilities towards the event rate (a logistic regression's smallest ``C`` wins by an AUC difference of 0.0007 on
    planted data and gives a calibration slope of 2.2; ``tests/test_recalibration.py``). A model with fixed
    hyperparameters fitted by maximum likelihood without reweighting (e.g. the nomogram) keeps its own probabilities.

    Parameters
    ----------
    setting : {"auto", "none", "sigmoid", "isotonic"}
        ``models.recalibration``.
    weighted : bool
        Whether the model's classifier weights the classes (``models.class_weight: balanced`` on an algorithm that
        supports it).
    smote : bool
        Whether the model's pipeline oversamples with SMOTE.
    tuned : bool
        Whether the model's hyperparameters are chosen by a cross-validated search on the AUC.
    """
    if setting == "auto":
        return "sigmoid" if (weighted or smote or tuned) else "none"
    if setting not in RECALIBRATION_METHODS:
        raise ValueError(f"recalibration must be 'auto' or one of {', '.join(RECALIBRATION_METHODS)}, got {setting!r}")
    return setting


class _ScorePassThrough(ClassifierMixin, BaseEstimator):
    """A "classifier" whose decision function is its single input column: lets CalibratedClassifierCV calibrate given scores."""

    def fit(self, X, y):
        self.classes_ = np.unique(np.asarray(y))
        return self

    def decision_function(self, X):
        return _floating(np.asarray(X)[:, 0])

    def predict(self, X):  # required of an estimator by cross_val_predict; never used for the calibration
        return (self.decision_function(X) > 0).astype(int)


def _check_scores(scores: object, y: object | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    s = _floating(np.asarray(scores))
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional (one score per patient), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values; recalibration needs a finite score for every patient")
    if y is None:
        return s, None
    lab = np.asarray(y)
    if lab.shape != s.shape:
        raise ValueError(f"{s.size} scores but {lab.size} labels: pass one label per score")
    values = set(np.unique(lab).tolist())
    if not values <= {0, 1} or len(values) < 2:
        raise ValueError(f"recalibration needs 0/1 labels with both classes, got {sorted(values)[:5]}")
    return s, lab.astype(int)


class ProbabilityCalibrator(BaseEstimator):
    """Maps raw scores to probabilities calibrated on training out-of-fold scores (Platt's sigmoid or isotonic).

    Parameters
    ----------
    method : {"sigmoid", "isotonic"}
        ``sigmoid``: Platt scaling, ``p = 1 / (1 + exp(a * s + b))`` fitted with Platt's smoothed targets;
        ``isotonic``: isotonic regression, clipped outside the fitted range. Both are scikit-learn's
        (``CalibratedClassifierCV(method=...)``).
    response : {"decision_function", "predict_proba"}
        Which score of the model the calibrator takes (recorded; see :func:`response_method`).

    Attributes
    ----------
    calibrated_ : CalibratedClassifierCV
        scikit-learn's fitted calibration on the scores (a pass-through "classifier" of the scores, ``ensemble=False``).
    a_, b_ : float
        The sigmoid's parameters (NaN for isotonic).
    n_fitted_ : int
        Number of scores the calibrator was fitted on (the training patients).
    reverses_ : bool
        The sigmoid decreases with the score (``a_ > 0``): the out-of-fold scores ranked the patients the wrong way
        round, and the calibrated model reverses the pipeline's ranking (a model without usable signal). Isotonic
        regression is non-decreasing and never reverses.
    score_range_ : tuple of float
        Smallest and largest fitted score.
    """

    def __init__(self, *, method: str = "sigmoid", response: str = "decision_function"):
        self.method = method
        self.response = response

    def fit(self, scores: Sequence[float] | np.ndarray, y: Sequence[int] | np.ndarray) -> ProbabilityCalibrator:
        """Fit on out-of-fold training scores and their 0/1 labels."""
        if self.method not in ("sigmoid", "isotonic"):
            raise ValueError(f"method must be 'sigmoid' or 'isotonic', got {self.method!r}")
        if self.response not in ("decision_function", "predict_proba"):
            raise ValueError(f"response must be 'decision_function' or 'predict_proba', got {self.response!r}")
        s, lab = _check_scores(scores, y)
        idx = np.arange(s.size)
        # One "split" whose test part is every score: cross_val_predict of the pass-through returns the scores as given.
        self.calibrated_ = CalibratedClassifierCV(_ScorePassThrough(), method=self.method, cv=[(idx, idx)], ensemble=False).fit(s[:, None], lab)
        inner = self.calibrated_.calibrated_classifiers_[0].calibrators[0]
        self.a_ = float(getattr(inner, "a_", np.nan))
        self.b_ = float(getattr(inner, "b_", np.nan))
        self.n_fitted_ = int(s.size)
        self.reverses_ = bool(self.method == "sigmoid" and self.a_ > 0)
        self.score_range_ = (float(s.min()), float(s.max()))
        return self

    def predict(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated class-1 probabilities of the given raw scores."""
        check_is_fitted(self, "calibrated_")
        s, _ = _check_scores(scores)
        return self.calibrated_.predict_proba(s[:, None])[:, 1]

    def summary(self) -> dict[str, object]:
        """JSON-serialisable description (method, response, parameters, patients fitted on)."""
        check_is_fitted(self, "calibrated_")
        out: dict[str, object] = {"method": self.method, "response": self.response, "n_fitted": self.n_fitted_,
                                  "fitted_on": "training out-of-fold scores"}  # fmt: skip
        if self.method == "sigmoid":
            out.update(a=self.a_, b=self.b_, reverses_ranking=self.reverses_)
        return out


def cross_fitted_probabilities(
    scores: np.ndarray, y: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]], *, method: str, response: str
) -> np.ndarray:
    """Recalibrated out-of-fold probabilities: each fold's scores through a calibrator fitted on the other folds' scores.

    Parameters
    ----------
    scores : ndarray
        Out-of-fold raw scores of the training patients.
    y : ndarray of 0/1
        Their labels.
    splits : sequence of (train, validation) index arrays
        The cross-validation folds the scores came from.
    method, response
        As in :class:`ProbabilityCalibrator`.

    Returns
    -------
    ndarray
        One probability per patient. (The other folds' scores came from pipelines that were fitted with this fold's
        patients: a second-order effect, negligible for a one-dimensional calibrator, as for stacking.)
    """
    s, lab = _check_scores(scores, y)
    out = np.full(s.size, np.nan)
    for tr, va in splits:
        out[va] = ProbabilityCalibrator(method=method, response=response).fit(s[tr], lab[tr]).predict(s[va])
    return out
