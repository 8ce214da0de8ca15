"""Time-to-event endpoint: survival models, risk groups and metrics with confidence intervals.

Conventions used throughout
---------------------------
* **Risk sign**: a higher risk score means a higher hazard, i.e. an earlier
  expected event. :meth:`CoxModel.predict_risk` is the linear predictor
  (log partial hazard) and :meth:`RandomSurvivalForest.predict_risk` the
  ensemble cumulative hazard summed over the training event times; both are
  "higher = worse".
* **C-index**: Harrell's C as in ``sksurv.metrics.concordance_index_censored``
  (pairs are comparable when the earlier time is an event; an event and a
  censoring at the same time are comparable, two events at the same time are
  not; risk ties within 1e-8 count 1/2). ``lifelines.utils.concordance_index``
  gives the same number when passed ``-risk`` (it expects predicted survival
  *times*, where higher = better).
* **Confidence intervals**: non-parametric percentile bootstrap over patients
  (resampling with replacement, seeded; default 95%). For metrics needing a
  censoring distribution (time-dependent AUC, Brier score) the
  inverse-probability-of-censoring weights come from the TRAINING cohort's
  Kaplan-Meier estimate of censoring and stay fixed across resamples; only
  the evaluated cohort is resampled. Resamples in which the metric is
  undefined (no comparable pair, evaluation time outside the resample's
  follow-up) are dropped and the number of usable resamples is reported.
* **Risk groups**: cut-offs are learned from TRAINING risks only and applied
  unchanged to every other cohort; a patient is in group k when
  ``cutoff[k-1] < risk <= cutoff[k]`` (a risk equal to a cut-off goes to the
  lower group).
* **Alignment**: pandas inputs are paired by patient, never by position. With a
  DataFrame ``X``, Series ``time``/``event`` must hold exactly X's patients
  (index labels) and are reordered to X's rows; without X, pandas vectors
  given together (time, event, risk, groups, survival probabilities) are
  aligned to the first of them. numpy arrays are positional. Mismatched
  patients raise :class:`helpers.errors.InputDataError` (see
  :mod:`helpers._alignment`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc
from sksurv.metrics import integrated_brier_score as _sksurv_ibs

from helpers._alignment import align_series, align_to_frame

__all__ = [
    "CoxModel",
    "Estimate",
    "KaplanMeierGroups",
    "RandomSurvivalForest",
    "RiskGroups",
    "TimeDependentAUC",
    "survival_metrics_table",
    "assign_risk_groups",
    "harrell_c",
    "integrated_brier_score",
    "km_by_group",
    "risk_groups",
    "time_dependent_auc",
    "to_structured",
]

_TIME, _EVENT = "__time__", "__event__"


# -- inputs ------------------------------------------------------------------------
def _time_event(time: object, event: object, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validated float time (>= 0, finite) and bool event arrays of equal length (Series paired by patient)."""
    time, event = align_series(("time", time), ("event", event))
    t = np.asarray(time, dtype=float).reshape(-1)
    e_raw = np.asarray(event).reshape(-1)
    where = f" ({what})" if what else ""
    if t.shape != e_raw.shape:
        raise ValueError(f"time and event{where} have different lengths: {t.size} and {e_raw.size}")
    if t.size == 0:
        raise ValueError(f"time and event{where} are empty")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"time{where} must be finite and >= 0; check the patient table for missing or negative follow-up times")
    values = set(np.unique(e_raw).tolist())
    if not values <= {0, 1}:  # also matches False/True and 0.0/1.0
        raise ValueError(f"event{where} must be 0/1 (1 = event observed, 0 = censored), got values {sorted(values)[:5]}")
    return t, e_raw.astype(bool)


def to_structured(time: object, event: object) -> np.ndarray:
    """Survival outcome as the structured array scikit-survival expects.

    Parameters
    ----------
    time : array-like of float
        Follow-up time (event or censoring), >= 0.
    event : array-like of 0/1 or bool
        1 when the event was observed, 0 when censored.

    Returns
    -------
    numpy.ndarray
        Structured array with fields ``event`` (bool) and ``time`` (float).
    """
    t, e = _time_event(time, event)
    out = np.empty(t.size, dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = e, t
    return out


def _unpack(surv: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(time, event) from a structured array or a (time, event) pair."""
    if isinstance(surv, np.ndarray) and surv.dtype.names is not None and len(surv.dtype.names) == 2:
        first, second = surv.dtype.names
        # scikit-survival's layout: first field the bool event, second the time.
        return _time_event(surv[second], surv[first], what)
    if isinstance(surv, (tuple, list)) and len(surv) == 2:
        return _time_event(surv[0], surv[1], what)
    raise TypeError(f"{what} must be a structured array from to_structured(time, event) or a (time, event) pair")


def _align_to_surv(surv: object, values: object, what: str, surv_name: str) -> tuple[object, object]:
    """Pair ``values`` with a (time, event) pair by patient when pandas; structured arrays stay positional."""
    if isinstance(surv, (tuple, list)) and len(surv) == 2:
        t, e, v = align_series((f"{surv_name} time", surv[0]), (f"{surv_name} event", surv[1]), (what, values))
        return (t, e), v
    return surv, values


def _frame(X: object, names: Sequence[str] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (patients x features), got shape {arr.shape}")
    cols = list(names) if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=cols)


def _features_for_predict(est: BaseEstimator, X: object) -> pd.DataFrame:
    check_is_fitted(est)
    names = list(est.feature_names_in_)
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the training feature(s) {missing}; pass the same feature columns the model was fitted on")
        Xf = X[names]
    else:
        Xf = _frame(X, names)
        if Xf.shape[1] != len(names):
            raise ValueError(f"X has {Xf.shape[1]} features, the model was fitted on {len(names)}")
    values = Xf.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("X contains missing or infinite values; impute them with a step fitted on the training cohort first")
    return pd.DataFrame(values, columns=names, index=Xf.index)


def _step_values(grid: np.ndarray, values: np.ndarray, times: np.ndarray, before: float) -> np.ndarray:
    """Right-continuous step function through (grid, values) at ``times``; ``before`` left of grid[0].

    ``values`` may be 2-D (rows = patients, columns = grid points).
    """
    idx = np.searchsorted(grid, times, side="right") - 1
    vals = np.asarray(values)
    padded = np.concatenate([np.full(vals.shape[:-1] + (1,), before), vals], axis=-1)
    return padded[..., idx + 1]


# -- models ------------------------------------------------------------------------
class CoxModel(BaseEstimator):
    """Cox proportional-hazards model (lifelines ``CoxPHFitter``) with the estimator contract.

    Ties are handled with Efron's method (lifelines' only method); the baseline
    hazard is Breslow's estimate. The penalty is lifelines'
    ``0.5 * penalizer * ((1 - l1_ratio) * ||b||^2 + l1_ratio * ||b||_1)``
    (on the unstandardised coefficients as given; standardise features first
    when penalising).

    Parameters
    ----------
    penalizer : float, default 0.0
        Penalty strength (0 = the ordinary partial-likelihood fit).
    l1_ratio : float, default 0.0
        Elastic-net mixing: 0 = ridge, 1 = lasso.
    alpha : float, default 0.05
        1 - confidence level of the Wald intervals in ``summary_``.

    Attributes
    ----------
    coef_ : pandas.Series
        Log hazard ratios per feature.
    summary_ : pandas.DataFrame
        lifelines' summary (coef, exp(coef), SE, CIs, z, p) per feature.
    means_ : pandas.Series
        Training means; :meth:`predict_risk` is centred on them, as lifelines'
        log partial hazard is.
    baseline_cumulative_hazard_ : pandas.Series
        Breslow cumulative baseline hazard (at the training means) indexed by
        the training follow-up times.
    concordance_train_ : float
        Harrell's C on the training data (apparent, optimistic).
    fitter_ : lifelines.CoxPHFitter
        The fitted lifelines object.
    feature_names_in_ : numpy.ndarray
    n_features_in_ : int
    """

    def __init__(self, *, penalizer: float = 0.0, l1_ratio: float = 0.0, alpha: float = 0.05):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.alpha = alpha

    def fit(self, X: pd.DataFrame | np.ndarray, time: object, event: object) -> CoxModel:
        """Fit on the TRAINING cohort.

        Parameters
        ----------
        X : pandas.DataFrame or numpy.ndarray
            Features (one row per patient, no time/event columns).
        time, event : array-like
            Follow-up time and event indicator (1 = event, 0 = censored). pandas
            Series are matched to X's rows by patient (index label) and must
            hold exactly X's patients; arrays are taken in the row order of ``X``.

        Returns
        -------
        CoxModel
        """
        time, event = align_to_frame(X, ("time", time), ("event", event))
        if self.penalizer < 0 or not 0 <= self.l1_ratio <= 1:
            raise ValueError(f"need penalizer >= 0 and 0 <= l1_ratio <= 1, got penalizer={self.penalizer}, l1_ratio={self.l1_ratio}")
        Xf = _frame(X)
        t, e = _time_event(time, event, "training")
        if len(Xf) != t.size:
            raise ValueError(f"X has {len(Xf)} rows but time/event have {t.size}")
        if not e.any():
            raise ValueError("no events in the training data: a Cox model cannot be fitted")
        clash = {_TIME, _EVENT} & set(map(str, Xf.columns))
        if clash:
            raise ValueError(f"feature names {sorted(clash)} are reserved; rename these columns")
        data = Xf.astype(float).reset_index(drop=True)
        if not np.all(np.isfinite(data.to_numpy())):
            raise ValueError("X contains missing or infinite values; impute them with a step fitted on the training cohort first")
        data[_TIME], data[_EVENT] = t, e.astype(int)
        fitter = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, alpha=self.alpha)
        fitter.fit(data, duration_col=_TIME, event_col=_EVENT)
        self.fitter_ = fitter
        self.feature_names_in_ = np.asarray(Xf.columns, dtype=object)
        self.n_features_in_ = Xf.shape[1]
        self.coef_ = fitter.params_.rename(None).copy()
        self.summary_ = fitter.summary.copy()
        self.means_ = data[list(Xf.columns)].mean()  # lifelines centres the linear predictor on these
        self.baseline_cumulative_hazard_ = fitter.baseline_cumulative_hazard_.iloc[:, 0].copy()
        self.concordance_train_ = float(fitter.concordance_index_)
        return self

    def predict_risk(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Linear predictor ``(x - means_) @ coef_`` (log partial hazard; higher = worse)."""
        Xf = _features_for_predict(self, X)
        return (Xf.to_numpy() - self.means_.to_numpy()) @ self.coef_.to_numpy()

    def predict_partial_hazard(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Partial hazard ``exp(predict_risk(X))`` (hazard ratio against the training mean patient)."""
        return np.exp(self.predict_risk(X))

    def predict_survival_function(self, X: pd.DataFrame | np.ndarray, times: Sequence[float]) -> np.ndarray:
        """Survival probabilities ``S(t | x) = exp(-H0(t) * exp(lp(x)))`` at ``times``.

        ``H0`` is the Breslow baseline, a right-continuous step function of the
        training follow-up times (0 before the first; the last value beyond the
        last training time).

        Returns
        -------
        numpy.ndarray
            Shape (n_patients, n_times).
        """
        lp = self.predict_risk(X)
        grid = self.baseline_cumulative_hazard_.index.to_numpy(dtype=float)
        H0 = _step_values(grid, self.baseline_cumulative_hazard_.to_numpy(), np.asarray(times, dtype=float), before=0.0)
        return np.exp(-np.outer(np.exp(lp), H0))

    def score(self, X: pd.DataFrame | np.ndarray, time: object, event: object) -> float:
        """Harrell's C of :meth:`predict_risk` on (X, time, event); Series are matched to X's rows by patient."""
        time, event = align_to_frame(X, ("time", time), ("event", event))
        t, e = _time_event(time, event)
        return float(concordance_index_censored(e, t, self.predict_risk(X))[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # the survival outcome, given as fit(X, time, event) (no single y)
        return tags


class RandomSurvivalForest(BaseEstimator):
    """Random survival forest (``sksurv.ensemble.RandomSurvivalForest``), seeded, small defaults.

    Parameters
    ----------
    n_estimators : int, default 100
    max_depth : int or None, default None
    min_samples_split : int, default 10
    min_samples_leaf : int, default 5
        Larger than scikit-survival's defaults (6, 3): radiomics cohorts are
        small, and tiny leaves give noisy survival curves.
    max_features : str, int or float, default "sqrt"
    n_jobs : int, default 1
        One thread by default so runs are reproducible and share the machine.
    random_state : int or None, default 0
        Seed of the bootstrap samples and split candidates (``None`` is not
        reproducible).

    Attributes
    ----------
    forest_ : sksurv.ensemble.RandomSurvivalForest
    unique_times_ : numpy.ndarray
        Training times at which survival functions are estimated.
    feature_names_in_ : numpy.ndarray
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_depth: int | None = None,
        min_samples_split: int = 10,
        min_samples_leaf: int = 5,
        max_features: str | float | None = "sqrt",
        n_jobs: int = 1,
        random_state: int | None = 0,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: pd.DataFrame | np.ndarray, time: object, event: object) -> RandomSurvivalForest:
        """Fit on the TRAINING cohort (same interface as :meth:`CoxModel.fit`; Series matched to X by patient)."""
        from sksurv.ensemble import RandomSurvivalForest as _SksurvRSF

        time, event = align_to_frame(X, ("time", time), ("event", event))
        Xf = _frame(X)
        t, e = _time_event(time, event, "training")
        if len(Xf) != t.size:
            raise ValueError(f"X has {len(Xf)} rows but time/event have {t.size}")
        if not e.any():
            raise ValueError("no events in the training data: a survival forest cannot be fitted")
        values = Xf.to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError("X contains missing or infinite values; impute them with a step fitted on the training cohort first")
        forest = _SksurvRSF(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        forest.fit(values, to_structured(t, e))
        self.forest_ = forest
        self.unique_times_ = np.asarray(forest.unique_times_, dtype=float)
        self.feature_names_in_ = np.asarray(Xf.columns, dtype=object)
        self.n_features_in_ = Xf.shape[1]
        return self

    def predict_risk(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Ensemble cumulative hazard summed over the training times (scikit-survival's ``predict``; higher = worse)."""
        values = _features_for_predict(self, X).to_numpy()  # first: NotFittedError before forest_ is looked up
        return np.asarray(self.forest_.predict(values), dtype=float)

    def predict_survival_function(self, X: pd.DataFrame | np.ndarray, times: Sequence[float]) -> np.ndarray:
        """Ensemble survival probabilities at ``times`` (step function; 1 before the first training time).

        Returns
        -------
        numpy.ndarray
            Shape (n_patients, n_times).
        """
        values = _features_for_predict(self, X).to_numpy()  # first: NotFittedError before forest_ is looked up
        surv = self.forest_.predict_survival_function(values, return_array=True)
        return _step_values(self.unique_times_, surv, np.asarray(times, dtype=float), before=1.0)

    def score(self, X: pd.DataFrame | np.ndarray, time: object, event: object) -> float:
        """Harrell's C of :meth:`predict_risk` on (X, time, event); Series are matched to X's rows by patient."""
        time, event = align_to_frame(X, ("time", time), ("event", event))
        t, e = _time_event(time, event)
        return float(concordance_index_censored(e, t, self.predict_risk(X))[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # the survival outcome, given as fit(X, time, event) (no single y)
        return tags


# -- risk groups -------------------------------------------------------------------
_GROUP_NAMES = {
    "median": ("low", "high"),
    "youden": ("low", "high"),
    "maxstat": ("low", "high"),
    "tertiles": ("low", "intermediate", "high"),
    "quartiles": ("Q1", "Q2", "Q3", "Q4"),
}


@dataclass(frozen=True)
class RiskGroups:
    """Risk groups of the training cohort and of another cohort, from training cut-offs.

    Attributes
    ----------
    method : str
        Rule that produced the cut-offs.
    cutoffs : tuple of float
        Increasing cut-offs on the risk scale, learned from training risks.
    names : tuple of str
        Group names from lowest to highest risk.
    train : numpy.ndarray
        Group name per training patient.
    other : numpy.ndarray or None
        Group name per patient of the other cohort (when given).
    """

    method: str
    cutoffs: tuple[float, ...]
    names: tuple[str, ...]
    train: np.ndarray
    other: np.ndarray | None = None


def assign_risk_groups(risk: object, cutoffs: Sequence[float], names: Sequence[str] | None = None) -> np.ndarray:
    """Group names for risks given fixed cut-offs (``cutoff[k-1] < risk <= cutoff[k]`` is group k).

    Parameters
    ----------
    risk : array-like of float
    cutoffs : sequence of float
        Strictly increasing (e.g. :attr:`RiskGroups.cutoffs` from training).
    names : sequence of str, optional
        ``len(cutoffs) + 1`` names, lowest risk first; default ``G1, G2, ...``.

    Returns
    -------
    numpy.ndarray of str
    """
    r = np.asarray(risk, dtype=float).reshape(-1)
    cuts = np.asarray(cutoffs, dtype=float).reshape(-1)
    if cuts.size == 0 or np.any(np.diff(cuts) <= 0) or not np.all(np.isfinite(cuts)):
        raise ValueError(f"cut-offs must be finite and strictly increasing, got {cuts.tolist()}")
    if not np.all(np.isfinite(r)):
        raise ValueError("risk scores contain missing or infinite values")
    labels = tuple(names) if names is not None else tuple(f"G{i + 1}" for i in range(cuts.size + 1))
    if len(labels) != cuts.size + 1:
        raise ValueError(f"{cuts.size} cut-off(s) make {cuts.size + 1} groups, but {len(labels)} names were given")
    return np.asarray(labels, dtype=object)[np.searchsorted(cuts, r, side="left")]


def _youden_cutoff(risk: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    case = event & (time <= horizon)
    control = time > horizon  # censored before the horizon: status unknown, excluded
    if not case.any() or not control.any():
        raise ValueError(
            f"horizon={horizon}: the training cohort needs events before and patients followed beyond the horizon "
            f"(cases {int(case.sum())}, controls {int(control.sum())}); choose a horizon inside the follow-up"
        )
    cands = np.unique(risk)[:-1]  # "high" = risk > cut, so the largest value would leave no high group
    if cands.size == 0:
        raise ValueError("all training risks are equal; no cut-off can separate them")
    cs, ct = np.sort(risk[case]), np.sort(risk[control])
    sens = 1 - np.searchsorted(cs, cands, side="right") / cs.size
    spec = np.searchsorted(ct, cands, side="right") / ct.size
    youden = sens + spec - 1
    # Ties (up to rounding) go to the lowest cut-off, so the rule does not depend on summation order.
    return float(cands[int(np.flatnonzero(youden >= youden.max() - 1e-12)[0])])


def _logrank_by_cut(risk: np.ndarray, time: np.ndarray, event: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Two-group log-rank chi-square (high = risk > cut) for every cut at once.

    Same statistic as ``lifelines.statistics.logrank_test`` (hypergeometric
    variance with the ties correction), vectorised over cuts so a maximally
    selected cut-off over hundreds of candidates stays fast.
    """
    event_times = np.unique(time[event])
    at_risk = time[:, None] >= event_times[None, :]  # patients x event times
    died = (time[:, None] == event_times[None, :]) & event[:, None]
    high = risk[None, :] > cuts[:, None]  # cuts x patients
    n, d = at_risk.sum(0).astype(float), died.sum(0).astype(float)
    n1, d1 = high.astype(float) @ at_risk, high.astype(float) @ died
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = d * n1 / n
        var = np.where(n > 1, d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1), 0.0)
        return (d1 - expected).sum(1) ** 2 / var.sum(1)


def _maxstat_cutoff(risk: np.ndarray, time: np.ndarray, event: np.ndarray, min_prop: float) -> float:
    lo, hi = np.quantile(risk, [min_prop, 1 - min_prop])
    cands = np.unique(risk[(risk >= lo) & (risk < hi)])
    if cands.size == 0:
        raise ValueError(f"no candidate cut-off between the {min_prop:.0%} and {1 - min_prop:.0%} training quantiles")
    stats = _logrank_by_cut(risk, time, event, cands)
    if not np.any(np.isfinite(stats)):
        raise ValueError("the log-rank statistic is undefined for every candidate cut-off (too few events in the training cohort)")
    best = np.nanmax(stats)
    return float(cands[int(np.flatnonzero(stats >= best - 1e-12 * max(1.0, best))[0])])  # ties: the lowest cut-off


def risk_groups(
    risk_train: object,
    risk_other: object | None = None,
    method: str = "median",
    *,
    time_train: object | None = None,
    event_train: object | None = None,
    horizon: float | None = None,
    min_prop: float = 0.1,
) -> RiskGroups:
    """Stratify patients by risk with cut-offs learned from the TRAINING cohort only.

    Parameters
    ----------
    risk_train : array-like of float
        Training risk scores (higher = worse).
    risk_other : array-like of float, optional
        Risks of another cohort (validation/test); labelled with the training
        cut-offs unchanged.
    method : {"median", "tertiles", "quartiles", "youden", "maxstat"}
        * ``median``: the training median (numpy's linear interpolation).
        * ``tertiles`` / ``quartiles``: training quantiles 1/3, 2/3 /
          0.25, 0.5, 0.75.
        * ``youden``: maximises sensitivity + specificity - 1 for the binary
          status at ``horizon`` in the training cohort (case: event at or
          before the horizon; control: follow-up beyond it; patients censored
          before the horizon are excluded); candidates are the training risks.
        * ``maxstat``: maximises the two-group log-rank statistic in the
          training cohort over training risks between the ``min_prop`` and
          ``1 - min_prop`` quantiles (survminer's ``surv_cutpoint`` idea). The
          log-rank p-value of the *training* split is then optimistic; report
          the validation p-value.
    time_train, event_train : array-like, optional
        Training outcome; required by ``youden`` and ``maxstat``.
    horizon : float, optional
        Time horizon of ``youden``.
    min_prop : float, default 0.1
        Smallest group fraction considered by ``maxstat``.

    Returns
    -------
    RiskGroups
        ``train`` follows the order of ``risk_train`` (pandas ``time_train`` /
        ``event_train`` are matched to a pandas ``risk_train`` by patient).
    """
    risk_train, time_train, event_train = align_series(("risk_train", risk_train), ("time_train", time_train), ("event_train", event_train))
    r_train = np.asarray(risk_train, dtype=float).reshape(-1)
    if r_train.size < 2 or not np.all(np.isfinite(r_train)):
        raise ValueError("risk_train needs at least two finite risk scores")
    if method not in _GROUP_NAMES:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(_GROUP_NAMES)}")
    if method in ("median", "tertiles", "quartiles"):
        q = {"median": [0.5], "tertiles": [1 / 3, 2 / 3], "quartiles": [0.25, 0.5, 0.75]}[method]
        cutoffs = tuple(float(c) for c in np.quantile(r_train, q))
        if np.any(np.diff(cutoffs) <= 0) or cutoffs[-1] >= r_train.max():
            raise ValueError(
                f"{method} cut-offs {cutoffs} are not distinct or leave the top group empty (many tied training risks); "
                "use method='median' or a continuous risk score"
            )
    else:
        if time_train is None or event_train is None:
            raise ValueError(f"method={method!r} needs time_train and event_train (the training outcome)")
        t, e = _time_event(time_train, event_train, "training")
        if t.size != r_train.size:
            raise ValueError(f"risk_train has {r_train.size} values but time_train/event_train have {t.size}")
        if method == "youden":
            if horizon is None:
                raise ValueError("method='youden' needs horizon (e.g. 3-year survival: horizon=36 with times in months)")
            cutoffs = (_youden_cutoff(r_train, t, e, float(horizon)),)
        else:
            if not 0 < min_prop < 0.5:
                raise ValueError(f"min_prop must be in (0, 0.5), got {min_prop}")
            cutoffs = (_maxstat_cutoff(r_train, t, e, min_prop),)
    names = _GROUP_NAMES[method]
    other = None if risk_other is None else assign_risk_groups(risk_other, cutoffs, names)
    return RiskGroups(method=method, cutoffs=cutoffs, names=names, train=assign_risk_groups(r_train, cutoffs, names), other=other)


# -- metrics -----------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile-bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        Value on the original (not resampled) data.
    ci_low, ci_high : float
        Percentile bootstrap interval (``alpha / 2`` and ``1 - alpha / 2``).
    n_bootstrap : int
        Resamples in which the metric was defined (used for the interval).
    level : float
        Confidence level, e.g. 0.95.
    """

    estimate: float
    ci_low: float
    ci_high: float
    n_bootstrap: int
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.level:.0%} CI {self.ci_low:.3f}-{self.ci_high:.3f})"


def _percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float, int]:
    ok = samples[np.isfinite(samples)]
    if ok.size == 0:
        return float("nan"), float("nan"), 0
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi), int(ok.size)


def _check_ci_args(n_bootstrap: int, alpha: float) -> None:
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _harrell_c_fast(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tied_tol: float = 1e-8) -> float:
    """Vectorised Harrell's C with scikit-survival's pair rules (used inside the bootstrap)."""
    rows = np.flatnonzero(event)
    ti, ri = time[rows, None], risk[rows, None]
    comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
    n = comparable.sum()
    if n == 0:
        return float("nan")
    diff = ri - risk[None, :]
    tie = np.abs(diff) <= tied_tol
    score = np.where(tie, 0.5, (diff > 0).astype(float))
    return float((score * comparable).sum() / n)


def harrell_c(
    time: object,
    event: object,
    risk: object,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    random_state: int = 0,
) -> Estimate:
    """Harrell's concordance index of a risk score, with a bootstrap CI.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator (1 = event).
    risk : array-like of float
        Higher = worse (e.g. :meth:`CoxModel.predict_risk`).
    n_bootstrap : int, default 1000
        Patient-level resamples (with replacement) for the percentile CI.
    alpha : float, default 0.05
        1 - confidence level.
    random_state : int, default 0
        Seed of the resampling.

    Returns
    -------
    Estimate
        Point estimate from ``sksurv.metrics.concordance_index_censored``
        (equal to ``lifelines.utils.concordance_index(time, -risk, event)``).

    Notes
    -----
    pandas Series are paired by patient (aligned to the first Series' index), arrays by position.
    """
    _check_ci_args(n_bootstrap, alpha)
    time, event, risk = align_series(("time", time), ("event", event), ("risk", risk))
    t, e = _time_event(time, event)
    r = np.asarray(risk, dtype=float).reshape(-1)
    if r.size != t.size or not np.all(np.isfinite(r)):
        raise ValueError(f"risk must hold {t.size} finite values (one per patient), got {r.size}")
    if not e.any():
        raise ValueError("no events: the C-index is undefined")
    point = float(concordance_index_censored(e, t, r)[0])
    rng = np.random.default_rng(random_state)
    boot = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        idx = rng.integers(0, t.size, t.size)
        boot[b] = _harrell_c_fast(t[idx], e[idx], r[idx]) if e[idx].any() else np.nan
    lo, hi, n_ok = _percentile_ci(boot, alpha)
    return Estimate(point, lo, hi, n_ok, 1 - alpha)


@dataclass(frozen=True)
class TimeDependentAUC:
    """Cumulative/dynamic AUC at several times, with bootstrap CIs.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``time``, ``auc``, ``ci_low``, ``ci_high``, ``n_bootstrap``.
    mean : Estimate
        scikit-survival's summary (AUC weighted by the change of the
        survival function) with its CI.
    """

    table: pd.DataFrame
    mean: Estimate


def _check_times_inside(times: np.ndarray, t_test: np.ndarray, t_train: np.ndarray) -> None:
    if times.size == 0:
        raise ValueError("times is empty; give the evaluation times (e.g. 1, 3 and 5 years in the time unit of the data)")
    if times.min() < t_test.min() or times.max() >= t_test.max():
        raise ValueError(
            f"evaluation times must lie within the evaluated cohort's follow-up [{t_test.min()}, {t_test.max()}); "
            f"got {times.min()}..{times.max()}"
        )
    if times.max() >= t_train.max():
        raise ValueError(f"evaluation times must be before the last training follow-up time ({t_train.max()}): the censoring weights are undefined beyond it")


def _truncate_at_training_follow_up(t_te: np.ndarray, e_te: np.ndarray, t_tr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated cohort's follow-up cut at the last training follow-up time ``tau`` (time = min(time, tau); an event
    at or after tau becomes censored at tau).

    The training censoring distribution (the IPCW weights) is undefined after its last time, so scikit-survival refuses
    any evaluated event there, even when every evaluation time lies well before it (an external cohort followed longer
    than the training cohort). For evaluation times before tau the cut changes no metric: cases (events at or before t)
    and their weights are untouched, and a patient followed past tau is event-free after t either way.
    """
    tau = float(t_tr.max())
    beyond = t_te >= tau
    if not beyond.any():
        return t_te, e_te
    return np.where(beyond, tau, t_te), np.where(beyond, False, e_te)


def time_dependent_auc(
    train_surv: object,
    test_surv: object,
    risk: object,
    times: Sequence[float],
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
) -> TimeDependentAUC:
    """Cumulative/dynamic time-dependent AUC (``sksurv.metrics.cumulative_dynamic_auc``).

    At time t, cases are patients with an event at or before t and controls
    those still event-free after t; cases are weighted by the inverse
    probability of censoring estimated on the TRAINING cohort.

    Parameters
    ----------
    train_surv : structured array or (time, event)
        Training outcome (censoring distribution only).
    test_surv : structured array or (time, event)
        Outcome of the evaluated cohort.
    risk : array-like of float
        Risk scores of the evaluated cohort (higher = worse).
    times : sequence of float
        Evaluation times, inside the evaluated cohort's follow-up.
    n_bootstrap, alpha, random_state
        Percentile bootstrap over the evaluated patients (training weights fixed).

    Returns
    -------
    TimeDependentAUC

    Notes
    -----
    With ``test_surv`` a (time, event) pair, pandas time/event/risk are paired by patient; a structured
    array and numpy risks are positional.
    """
    _check_ci_args(n_bootstrap, alpha)
    test_surv, risk = _align_to_surv(test_surv, risk, "risk", "test_surv")
    t_tr, e_tr = _unpack(train_surv, "train_surv")
    t_te, e_te = _unpack(test_surv, "test_surv")
    r = np.asarray(risk, dtype=float).reshape(-1)
    if r.size != t_te.size or not np.all(np.isfinite(r)):
        raise ValueError(f"risk must hold {t_te.size} finite values (one per evaluated patient), got {r.size}")
    grid = np.unique(np.asarray(times, dtype=float))
    _check_times_inside(grid, t_te, t_tr)
    t_te, e_te = _truncate_at_training_follow_up(t_te, e_te, t_tr)
    s_tr = to_structured(t_tr, e_tr)
    auc, mean = cumulative_dynamic_auc(s_tr, to_structured(t_te, e_te), r, grid)
    rng = np.random.default_rng(random_state)
    boot = np.full((n_bootstrap, grid.size + 1), np.nan)
    for b in range(n_bootstrap):
        idx = rng.integers(0, t_te.size, t_te.size)
        try:
            a, m = cumulative_dynamic_auc(s_tr, to_structured(t_te[idx], e_te[idx]), r[idx], grid)
        except ValueError:
            continue  # times outside this resample's follow-up: AUC undefined here
        boot[b, :-1], boot[b, -1] = a, m
    rows = []
    for j, tj in enumerate(grid):
        lo, hi, n_ok = _percentile_ci(boot[:, j], alpha)
        rows.append({"time": float(tj), "auc": float(auc[j]), "ci_low": lo, "ci_high": hi, "n_bootstrap": n_ok})
    lo, hi, n_ok = _percentile_ci(boot[:, -1], alpha)
    return TimeDependentAUC(pd.DataFrame(rows), Estimate(float(mean), lo, hi, n_ok, 1 - alpha))


def integrated_brier_score(
    train_surv: object,
    test_surv: object,
    surv_prob: object,
    times: Sequence[float],
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
) -> Estimate:
    """Integrated Brier score (``sksurv.metrics.integrated_brier_score``) with a bootstrap CI.

    The Brier score at t compares predicted survival with the observed status,
    inverse-probability-of-censoring weighted (censoring from the TRAINING
    cohort); it is integrated over ``times`` with the trapezoidal rule and
    divided by the time span. Lower is better; 0.25 is a non-informative
    prediction of 0.5.

    Parameters
    ----------
    train_surv, test_surv : structured array or (time, event)
    surv_prob : array-like, shape (n_test, n_times)
        Predicted survival probabilities of the evaluated patients at
        ``times``, e.g. ``model.predict_survival_function(X_test, times)`` of
        :class:`CoxModel` (Breslow baseline) or :class:`RandomSurvivalForest`.
    times : sequence of float
        Increasing evaluation times (at least two), inside the evaluated
        cohort's follow-up.
    n_bootstrap, alpha, random_state
        Percentile bootstrap over the evaluated patients.

    Returns
    -------
    Estimate

    Notes
    -----
    With ``test_surv`` a (time, event) pair, pandas time/event and a ``surv_prob`` DataFrame (rows =
    patients) are paired by patient; a structured array and numpy probabilities are positional.
    """
    _check_ci_args(n_bootstrap, alpha)
    test_surv, surv_prob = _align_to_surv(test_surv, surv_prob, "surv_prob", "test_surv")
    t_tr, e_tr = _unpack(train_surv, "train_surv")
    t_te, e_te = _unpack(test_surv, "test_surv")
    grid = np.asarray(times, dtype=float).reshape(-1)
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("times must be at least two strictly increasing evaluation times")
    _check_times_inside(grid, t_te, t_tr)
    S = np.asarray(surv_prob, dtype=float)
    if S.shape != (t_te.size, grid.size):
        raise ValueError(f"surv_prob must have shape (n_test, n_times) = ({t_te.size}, {grid.size}), got {S.shape}")
    if not np.all((S >= 0) & (S <= 1)):
        raise ValueError("surv_prob must be survival probabilities in [0, 1] (not risk scores)")
    t_te, e_te = _truncate_at_training_follow_up(t_te, e_te, t_tr)
    s_tr = to_structured(t_tr, e_tr)
    point = float(_sksurv_ibs(s_tr, to_structured(t_te, e_te), S, grid))
    rng = np.random.default_rng(random_state)
    boot = np.full(n_bootstrap, np.nan)
    for b in range(n_bootstrap):
        idx = rng.integers(0, t_te.size, t_te.size)
        try:
            boot[b] = _sksurv_ibs(s_tr, to_structured(t_te[idx], e_te[idx]), S[idx], grid)
        except ValueError:
            continue  # times outside this resample's follow-up
    lo, hi, n_ok = _percentile_ci(boot, alpha)
    return Estimate(point, lo, hi, n_ok, 1 - alpha)


# -- Kaplan-Meier --------------------------------------------------------------------
@dataclass(frozen=True)
class KaplanMeierGroups:
    """Kaplan-Meier curves per group and the log-rank test between them.

    Attributes
    ----------
    fitters : dict of str to lifelines.KaplanMeierFitter
        One fitted curve per group, in plotting order.
    summary : pandas.DataFrame
        Per group: ``n``, ``events``, ``median_survival`` (inf when not reached).
    test_statistic, p_value : float
        Log-rank chi-square (``lifelines.statistics.multivariate_logrank_test``)
        and its p-value.
    degrees_of_freedom : int
        Number of groups - 1.
    time, event, groups : numpy.ndarray
        The data (for numbers at risk).
    """

    fitters: dict[str, KaplanMeierFitter]
    summary: pd.DataFrame
    test_statistic: float
    p_value: float
    degrees_of_freedom: int
    time: np.ndarray = field(repr=False)
    event: np.ndarray = field(repr=False)
    groups: np.ndarray = field(repr=False)

    def at_risk(self, times: Sequence[float]) -> pd.DataFrame:
        """Numbers at risk (follow-up >= t) per group (rows) at ``times`` (columns)."""
        ts = np.asarray(times, dtype=float)
        return pd.DataFrame(
            {float(t): [int(np.sum(self.time[self.groups == g] >= t)) for g in self.fitters] for t in ts},
            index=list(self.fitters),
        )


def km_by_group(
    time: object, event: object, groups: object, order: Sequence[str] | None = None, alpha: float = 0.05
) -> KaplanMeierGroups:
    """Kaplan-Meier estimates per group with the (multivariate) log-rank test.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator (1 = event).
    groups : array-like
        Group label per patient (e.g. :attr:`RiskGroups.other`).
    order : sequence of str, optional
        Group order (e.g. :attr:`RiskGroups.names`; groups without patients
        are dropped); default: sorted labels.
    alpha : float, default 0.05
        1 - level of the pointwise confidence bands (Greenwood, log-log).

    Returns
    -------
    KaplanMeierGroups
        pandas time/event/groups are paired by patient (aligned to the first
        Series' index); arrays by position.
    """
    time, event, groups = align_series(("time", time), ("event", event), ("groups", groups))
    t, e = _time_event(time, event)
    g = np.asarray(groups, dtype=object).reshape(-1).astype(str)
    if g.size != t.size:
        raise ValueError(f"groups has {g.size} labels but time/event have {t.size}")
    present = sorted(set(g))
    names = [str(x) for x in order if str(x) in present] if order is not None else present
    unknown = set(present) - set(names)
    if unknown:
        raise ValueError(f"groups {sorted(unknown)} are not in order={list(order)}")
    if len(names) < 2:
        raise ValueError(f"the log-rank test needs at least two groups with patients, got {names}")
    fitters, rows = {}, []
    for name in names:
        m = g == name
        kmf = KaplanMeierFitter(alpha=alpha, label=name).fit(t[m], e[m])
        fitters[name] = kmf
        rows.append({"group": name, "n": int(m.sum()), "events": int(e[m].sum()), "median_survival": float(kmf.median_survival_time_)})
    test = multivariate_logrank_test(t, g, e)
    return KaplanMeierGroups(
        fitters=fitters,
        summary=pd.DataFrame(rows),
        test_statistic=float(test.test_statistic),
        p_value=float(test.p_value),
        degrees_of_freedom=int(test.degrees_of_freedom),
        time=t,
        event=e,
        groups=g,
    )


# -- survival-metrics table (paper table of notebook 06) -------------------------------------------------------------
def _fmt_estimate(est: float, lo: float, hi: float, digits: int) -> str:
    """``0.71 (0.65-0.77)``; ``NA`` when undefined."""
    if not np.isfinite(est):
        return "NA"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def survival_metrics_table(
    times: object,
    events: object,
    risk_scores: dict[str, object],
    horizons: Sequence[float],
    train_times: object,
    train_events: object,
    survival_probabilities: dict[str, object] | None = None,
    ibs_times: Sequence[float] | None = None,
    n_bootstrap: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
    digits: int = 2,
) -> pd.DataFrame:
    """Survival metrics per model: Harrell's C, time-dependent AUC at each horizon and the IBS, with CIs.

    Each model's numbers come from :func:`harrell_c`, :func:`time_dependent_auc` and
    :func:`integrated_brier_score` (point values equal scikit-survival's ``concordance_index_censored``,
    ``cumulative_dynamic_auc`` and ``integrated_brier_score``; intervals are seeded percentile bootstraps
    over the evaluated patients with the TRAINING censoring weights held fixed). Every model uses the same
    seed, so its intervals are reproducible.

    Parameters
    ----------
    times, events : array-like
        Follow-up time and event indicator (1 = event) of the evaluated cohort.
    risk_scores : dict of str to array-like
        Risk score per model (higher = worse), one value per evaluated patient.
    horizons : sequence of float
        Times of the time-dependent AUC (e.g. 12, 24, 36, 48, 60 months, in the time unit of ``times``).
        A horizon outside the evaluated cohort's follow-up (or not before the last training follow-up
        time) gets NaN and a note instead of an error.
    train_times, train_events : array-like
        Training outcome (censoring distribution of the inverse-probability-of-censoring weights).
    survival_probabilities : dict of str to array-like, optional
        Predicted survival probabilities per model, shape (n_patients, len(ibs_times)), for the integrated
        Brier score; a model without an entry gets NaN.
    ibs_times : sequence of float, optional
        Increasing times at which ``survival_probabilities`` are given (required with them).
    n_bootstrap : int, default 200
    alpha : float, default 0.05
        1 - confidence level.
    random_state : int, default 0
    digits : int, default 2
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model``, ``n``, ``events``, ``c_index``, ``c_index_lower``,
        ``c_index_upper``, ``C-index (95% CI)``; per horizon h ``auc_<h>``, ``auc_<h>_lower``,
        ``auc_<h>_upper``, ``AUC at <h> (95% CI)``; ``ibs``, ``ibs_lower``, ``ibs_upper``,
        ``IBS (95% CI)``; ``note``.

    Notes
    -----
    pandas inputs are paired by patient: ``events``, each model's risk Series and survival-probability
    DataFrame are aligned to the first pandas input among ``times``, ``events``, the risks and the
    probabilities (``train_events`` to ``train_times``); arrays are positional.
    """
    times, events = align_series(("times", times), ("events", events))
    train_times, train_events = align_series(("train_times", train_times), ("train_events", train_events))
    t, e = _time_event(times, events, "evaluated cohort")
    t_tr, e_tr = _time_event(train_times, train_events, "training cohort")
    if not risk_scores:
        raise ValueError("risk_scores is empty; pass {model name: risk scores of the evaluated patients}")
    hz = [float(h) for h in horizons]
    valid = [h for h in hz if t.min() <= h < t.max() and h < t_tr.max()]
    pct = f"{1 - alpha:.0%}"
    probs = dict(survival_probabilities or {})
    unknown = sorted(set(probs) - set(risk_scores))
    if unknown:
        raise ValueError(f"survival_probabilities has model(s) {unknown} that are not in risk_scores")
    if probs and ibs_times is None:
        raise ValueError("ibs_times is required with survival_probabilities (the times their columns refer to)")
    rows = []
    for model, risk in risk_scores.items():
        # pair this model's risks (and survival probabilities) with the evaluated patients by label
        named = [("times", times), ("events", events), (f"risk_scores[{model!r}]", risk)]
        if model in probs:
            named.append((f"survival_probabilities[{model!r}]", probs[model]))
        aligned = align_series(*named)
        risk = aligned[2]
        if model in probs:
            probs[model] = aligned[3]
        r = np.asarray(risk, dtype=float).reshape(-1)
        if r.size != t.size:
            raise ValueError(f"risk scores of model '{model}' have {r.size} values for {t.size} patients")
        notes = []
        row: dict[str, object] = {"model": model, "n": int(t.size), "events": int(e.sum())}
        c = harrell_c(t, e, r, n_bootstrap=n_bootstrap, alpha=alpha, random_state=random_state)
        row.update(c_index=c.estimate, c_index_lower=c.ci_low, c_index_upper=c.ci_high)
        row[f"C-index ({pct} CI)"] = _fmt_estimate(c.estimate, c.ci_low, c.ci_high, digits)
        auc_rows: dict[float, tuple[float, float, float]] = {}
        if valid:
            try:
                td = time_dependent_auc((t_tr, e_tr), (t, e), r, valid, n_bootstrap=n_bootstrap, alpha=alpha, random_state=random_state)
                for rec in td.table.itertuples():
                    auc_rows[float(rec.time)] = (float(rec.auc), float(rec.ci_low), float(rec.ci_high))
            except ValueError as exc:
                notes.append(f"time-dependent AUC not computed: {exc}")
        for h in hz:
            est, lo, hi = auc_rows.get(h, (np.nan, np.nan, np.nan))
            key = f"auc_{h:g}"
            row.update({key: est, f"{key}_lower": lo, f"{key}_upper": hi, f"AUC at {h:g} ({pct} CI)": _fmt_estimate(est, lo, hi, digits)})
        outside = [h for h in hz if h not in valid]
        if outside:
            notes.append(f"horizon(s) {', '.join(f'{h:g}' for h in outside)} outside the follow-up: AUC not estimable")
        ibs = (np.nan, np.nan, np.nan)
        if model in probs:
            b = integrated_brier_score(
                (t_tr, e_tr), (t, e), probs[model], ibs_times, n_bootstrap=n_bootstrap, alpha=alpha, random_state=random_state
            )
            ibs = (b.estimate, b.ci_low, b.ci_high)
        row.update(ibs=ibs[0], ibs_lower=ibs[1], ibs_upper=ibs[2])
        row[f"IBS ({pct} CI)"] = _fmt_estimate(*ibs, digits=max(digits, 3))
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)
