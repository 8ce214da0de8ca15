"""Statistics that go into papers: discrimination, classification, reclassification, calibration,
clinical utility and the clinical-characteristics table, plus the study-level tables of notebook 06.

Every function here is checked in ``tests/test_stats.py`` against an independent reference (R's pROC, rms
and Hmisc through stored fixtures, statsmodels, scikit-learn, scipy, the ``dcurves`` and ``tableone``
packages, or a published worked example).

Conventions
-----------
* **Outcome** ``y``: 0/1 (1 = event / positive class); booleans are accepted.
* **Score orientation**: a higher score means "more likely positive"; AUCs are never flipped (an AUC below
  0.5 is reported as such; pROC's ``direction = "<"``).
* **Positive call**: ``score >= threshold``.
* **Results**: scalar results are plain ``dict`` objects of floats (plus a few labels); tables are
  :class:`pandas.DataFrame`. Confidence intervals are two-sided at ``level`` (default 0.95).
* **Bootstrap**: seeded (``numpy.random.default_rng(random_state)``), so the same inputs and seed give
  identical intervals. Resampling is stratified by outcome class (cases and controls are resampled
  separately with replacement, as pROC's default ``boot.stratified = TRUE``), and the percentile interval
  uses R's default (type 7, linear) quantiles.
* **Alignment**: when two or more of ``y`` and the scores/probabilities are pandas Series, they are paired by
  patient (index label, aligned to the first Series) and must hold the same patients; numpy arrays and lists
  are paired by position (see :mod:`helpers._alignment`).
* **Errors**: unusable inputs (labels that are not 0/1, a single class where two are needed, lengths that
  differ, NaN or infinite scores, probabilities outside [0, 1]) raise
  :class:`helpers.errors.InputDataError` (a ``ValueError``) naming the problem and the fix. Metrics that are
  merely undefined on valid data (e.g. PPV without positive calls) are NaN.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as _st
from scipy.special import expit

from helpers._alignment import align_series
from helpers.errors import InputDataError

__all__ = [
    "auc_ci",
    "binary_metrics",
    "binomial_ci",
    "brier_score",
    "calibration_slope_intercept",
    "calibration_table",
    "delong_test",
    "hosmer_lemeshow",
    "idi",
    "net_benefit",
    "nri",
    "pairwise_comparison_table",
    "performance_table",
    "scaled_brier_score",
    "subgroup_performance_table",
    "table_one",
]

METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")
_METRIC_LABELS = {
    "accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1",
}
PREDICTION_COLUMNS = ("model", "patient", "cohort", "outcome", "probability", "threshold")


# -- input validation ------------------------------------------------------------------------------------------
def _labels(y: object, what: str = "y", *, need_both: bool = True) -> np.ndarray:
    """0/1 integer labels, 1-D, no missing values; both classes unless ``need_both`` is False."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputDataError(f"{what} must be one-dimensional (one label per patient), got shape {arr.shape}")
    if arr.size == 0:
        raise InputDataError(f"{what} is empty: pass one 0/1 outcome per patient")
    if arr.dtype.kind == "b":
        lab = arr.astype(int)
    else:
        try:
            as_float = arr.astype(float)
        except (TypeError, ValueError):
            raise InputDataError(f"{what} must hold 0/1 labels (1 = event), got values {sorted(map(str, set(arr.tolist())))[:5]}") from None
        missing = np.isnan(as_float)
        if missing.any():
            raise InputDataError(
                f"{what} has {int(missing.sum())} missing label(s) (first at position {int(np.flatnonzero(missing)[0])}): "
                "drop those patients or fill in their outcome"
            )
        values = set(np.unique(as_float).tolist())
        if not values <= {0.0, 1.0}:
            raise InputDataError(f"{what} must hold 0/1 labels (1 = event), got values {sorted(values)[:5]}; recode the outcome to 0/1")
        lab = as_float.astype(int)
    if need_both and lab.min() == lab.max():
        raise InputDataError(
            f"{what} holds a single class ({lab.size} patients, all {int(lab[0])}); both events (1) and non-events (0) are needed: "
            "check the cohort and the outcome column"
        )
    return lab


def _values(x: object, n: int, what: str, *, probability: bool = False) -> np.ndarray:
    """Finite float vector of length ``n`` (in [0, 1] when ``probability``)."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputDataError(f"{what} must be numeric (one value per patient)") from None
    if arr.ndim != 1:
        raise InputDataError(f"{what} must be one-dimensional (one value per patient), got shape {arr.shape}")
    if arr.size != n:
        raise InputDataError(f"{what} has {arr.size} values but y has {n}: pass exactly one value per patient, in the same order as y")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputDataError(
            f"{what} has {int(bad.sum())} NaN or infinite value(s) (first at position {int(np.flatnonzero(bad)[0])}): "
            "predict every patient, or drop the patients without a prediction from every input"
        )
    if probability and (arr.min() < 0 or arr.max() > 1):
        raise InputDataError(
            f"{what} must be probabilities in [0, 1], got values from {arr.min():g} to {arr.max():g}; pass probabilities, not scores"
        )
    return arr


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise InputDataError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level}")
    return _st.norm.ppf(0.5 + level / 2)


def _check_bootstrap(n_bootstrap: int) -> None:
    if int(n_bootstrap) < 1:
        raise InputDataError(f"n_bootstrap must be >= 1, got {n_bootstrap}")


def _z_p(estimate: float, se: float) -> tuple[float, float]:
    """Wald z and two-sided p; with se = 0 the statistic is 0 (p = 1) when the estimate is 0, else infinite (p = 0)."""
    if not np.isfinite(se) or not np.isfinite(estimate):
        return float("nan"), float("nan")
    if se > 0:
        z = estimate / se
        return float(z), float(2 * _st.norm.sf(abs(z)))
    if estimate == 0:
        return 0.0, 1.0
    return float(math.copysign(math.inf, estimate)), 0.0


def _quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's ``quantile(x, probs, type = 7)``, evaluated with R's own arithmetic (bit-for-bit on the same inputs)."""
    xs = np.sort(x)
    index = (xs.size - 1) * probs
    lo = np.floor(index).astype(int)
    hi = np.ceil(index).astype(int)
    q = xs[lo].astype(float)
    h = index - lo
    i = (index > lo) & (xs[hi] != q)
    q[i] = (1 - h[i]) * q[i] + h[i] * xs[hi[i]]
    return q


def _percentile(samples: np.ndarray, level: float) -> tuple[float, float, int]:
    ok = samples[np.isfinite(samples)]
    if ok.size == 0:
        return float("nan"), float("nan"), 0
    lo, hi = _quantile7(ok, np.array([0.5 - level / 2, 0.5 + level / 2]))
    return float(lo), float(hi), int(ok.size)


# -- AUC and DeLong --------------------------------------------------------------------------------------------
def _delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``k`` score vectors (rows of ``scores``).

    Fast algorithm of Sun & Xu (2014, IEEE Signal Process. Lett. 21:1389): with midranks ``Tz`` over all
    patients, ``Tx`` within the m cases and ``Ty`` within the n controls, the structural components of
    DeLong et al. (1988) are ``V10 = (Tz - Tx) / n`` (cases) and ``V01 = 1 - (Tz - Ty) / m`` (controls);
    ``AUC = mean(V10)`` and ``S = cov(V10) / m + cov(V01) / n`` (sample covariances, denominator m - 1 and
    n - 1, as pROC). With a single case or control the covariance is undefined (NaN).
    """
    scores = np.atleast_2d(scores)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tz = _st.rankdata(np.hstack([pos, neg]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    k = scores.shape[0]
    if m < 2 or n < 2:
        return aucs, np.full((k, k), np.nan)
    v10 = (tz[:, :m] - _st.rankdata(pos, axis=1)) / n
    v01 = 1.0 - (tz[:, m:] - _st.rankdata(neg, axis=1)) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _stratified_indices(y: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``size`` resamples of the case and the control positions (each with replacement, class sizes kept)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    ip = pos[rng.integers(0, pos.size, (size, pos.size))] if pos.size else np.empty((size, 0), int)
    ineg = neg[rng.integers(0, neg.size, (size, neg.size))] if neg.size else np.empty((size, 0), int)
    return ip, ineg


def _bootstrap_aucs(y: np.ndarray, score: np.ndarray, n_bootstrap: int, random_state: int) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    m, n = int(y.sum()), int((1 - y).sum())
    chunk = max(1, 2_000_000 // y.size)  # bounded memory; a function of the data only, so results stay reproducible
    out = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        ip, ineg = _stratified_indices(y, size, rng)
        ranks = _st.rankdata(np.hstack([score[ip], score[ineg]]), axis=1)
        out[start : start + size] = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    return out


def auc_ci(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    method: Literal["delong", "bootstrap"] = "delong",
    level: float = 0.95,
    n_bootstrap: int = 2000,
    random_state: int = 0,
) -> dict[str, Any]:
    """Area under the ROC curve with a confidence interval.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    score : array-like of float
        Predicted probability or any score, higher = more likely positive (never flipped).
    method : {"delong", "bootstrap"}, default "delong"
        ``"delong"``: as pROC's ``ci.auc(method = "delong")``: ``AUC +/- z * sqrt(var)`` with the DeLong
        variance (see :func:`delong_test`), clipped to [0, 1]. ``"bootstrap"``: as pROC's
        ``ci.auc(method = "bootstrap")``: stratified percentile bootstrap (cases and controls resampled
        separately), seeded.
    level : float, default 0.95
        Confidence level.
    n_bootstrap : int, default 2000
        Bootstrap resamples (``method="bootstrap"`` only; pROC's default ``boot.n``).
    random_state : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``auc``, ``lower``, ``upper``, ``se`` (DeLong standard error, or the standard deviation of the
        bootstrap AUCs), ``level``, ``method``, ``n``, ``events``, ``n_bootstrap`` (0 for DeLong).

    Raises
    ------
    InputDataError
        Labels not 0/1, a single class, scores of another length, NaN or infinite scores; pandas Series
        ``y`` and ``score`` with different patients (index labels).

    Notes
    -----
    Two pandas Series are paired by index label (``score`` is reordered to ``y``'s patients); numpy arrays
    are paired by position. See :mod:`helpers._alignment`.
    """
    y, score = align_series(("y", y), ("score", score))
    lab = _labels(y)
    s = _values(score, lab.size, "score")
    z = _check_level(level)
    aucs, cov = _delong(lab, s[None, :])
    auc = float(aucs[0])
    out: dict[str, Any] = {"auc": auc, "level": level, "method": method, "n": int(lab.size), "events": int(lab.sum())}
    if method == "delong":
        se = float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else float("nan")
        out.update(lower=max(0.0, auc - z * se), upper=min(1.0, auc + z * se), se=se, n_bootstrap=0)
        if not np.isfinite(se):
            out.update(lower=float("nan"), upper=float("nan"))
    elif method == "bootstrap":
        _check_bootstrap(n_bootstrap)
        boot = _bootstrap_aucs(lab, s, int(n_bootstrap), random_state)
        lo, hi, used = _percentile(boot, level)
        out.update(lower=lo, upper=hi, se=float(np.std(boot, ddof=1)) if boot.size > 1 else float("nan"), n_bootstrap=used)
    else:
        raise InputDataError(f"method must be 'delong' or 'bootstrap', got {method!r}")
    return {k: out[k] for k in ("auc", "lower", "upper", "se", "level", "method", "n", "events", "n_bootstrap")}


def delong_test(y: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike) -> dict[str, float]:
    """Paired two-sided DeLong test of two correlated AUCs (same patients, two scores).

    DeLong, DeLong & Clarke-Pearson (1988, Biometrics 44:837) with the fast midrank algorithm of Sun & Xu
    (2014); identical to pROC's ``roc.test(roc_a, roc_b, method = "delong", paired = TRUE)``:
    ``z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov_ab)``, ``p = 2 * (1 - Phi(|z|))``.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    score_a, score_b : array-like of float
        The two scores of the same patients, in the same order (higher = more likely positive).

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (a - b), ``se`` (of the difference), ``z``, ``p``,
        ``correlation`` (between the two AUC estimates), ``var_a``, ``var_b``, ``covariance``, ``n``,
        ``events``. When the difference has zero variance (e.g. identical scores) ``z = 0`` and ``p = 1``
        if the AUCs are equal. With a single case or control the variance, z and p are NaN.

    Raises
    ------
    InputDataError
        Labels not 0/1, a single class, scores of another length than y, NaN or infinite scores; pandas
        Series with different patients (index labels).

    Notes
    -----
    pandas Series are paired by index label (aligned to the first Series' patients), numpy arrays by position.
    """
    y, score_a, score_b = align_series(("y", y), ("score_a", score_a), ("score_b", score_b))
    lab = _labels(y)
    a = _values(score_a, lab.size, "score_a")
    b = _values(score_b, lab.size, "score_b")
    aucs, cov = _delong(lab, np.vstack([a, b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")
    z, p = _z_p(diff, se)
    denom = np.sqrt(cov[0, 0] * cov[1, 1])
    corr = float(cov[0, 1] / denom) if np.isfinite(denom) and denom > 0 else float("nan")
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": diff,
        "se": se,
        "z": z,
        "p": p,
        "correlation": corr,
        "var_a": float(cov[0, 0]),
        "var_b": float(cov[1, 1]),
        "covariance": float(cov[0, 1]),
        "n": int(lab.size),
        "events": int(lab.sum()),
    }


# -- classification metrics -------------------------------------------------------------------------------------
def binomial_ci(count: int, nobs: int, level: float = 0.95, method: Literal["wilson", "clopper-pearson"] = "wilson") -> tuple[float, float]:
    """Confidence interval of a binomial proportion ``count / nobs``.

    Parameters
    ----------
    count, nobs : int
        Successes and trials (``0 <= count <= nobs``).
    level : float, default 0.95
    method : {"wilson", "clopper-pearson"}
        Wilson score interval (Wilson 1927; Newcombe 1998 method 3), or the exact Clopper-Pearson interval
        (beta quantiles; 0 and 1 at the boundaries). Equal to statsmodels' ``proportion_confint`` with
        ``method="wilson"`` / ``"beta"``.

    Returns
    -------
    tuple of float
        ``(lower, upper)``; ``(nan, nan)`` when ``nobs == 0``.
    """
    z = _check_level(level)
    if count < 0 or nobs < 0 or count > nobs:
        raise InputDataError(f"a proportion needs 0 <= count <= nobs, got {count}/{nobs}")
    if nobs == 0:
        return float("nan"), float("nan")
    if method == "wilson":
        centre = (count + z**2 / 2) / (nobs + z**2)
        half = z / (nobs + z**2) * math.sqrt(count * (nobs - count) / nobs + z**2 / 4)
        return max(0.0, centre - half), min(1.0, centre + half)
    if method == "clopper-pearson":
        alpha = 1 - level
        lo = 0.0 if count == 0 else float(_st.beta.ppf(alpha / 2, count, nobs - count + 1))
        hi = 1.0 if count == nobs else float(_st.beta.ppf(1 - alpha / 2, count + 1, nobs - count))
        return lo, hi
    raise InputDataError(f"method must be 'wilson' or 'clopper-pearson', got {method!r}")


def _confusion(y: np.ndarray, call: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum((call == 1) & (y == 1)))
    fp = int(np.sum((call == 1) & (y == 0)))
    fn = int(np.sum((call == 0) & (y == 1)))
    tn = int(np.sum((call == 0) & (y == 0)))
    return tp, fp, fn, tn


def binary_metrics(
    y: npt.ArrayLike,
    score: npt.ArrayLike,
    threshold: float,
    level: float = 0.95,
    proportion_ci: Literal["wilson", "clopper-pearson"] = "wilson",
    n_bootstrap: int = 2000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 at a threshold, each with a confidence interval.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome (a single class is allowed; the metrics that need the other class are NaN).
    score : array-like of float
        Probability or score; a patient is called positive when ``score >= threshold``.
    threshold : float
        Operating threshold (e.g. chosen on the training cohort and applied unchanged).
    level : float, default 0.95
    proportion_ci : {"wilson", "clopper-pearson"}, default "wilson"
        Interval of the five proportions (see :func:`binomial_ci`).
    n_bootstrap : int, default 2000
        Resamples of the stratified percentile bootstrap used for F1, which is not a binomial proportion.
    random_state : int, default 0
        Seed of the F1 bootstrap.

    Returns
    -------
    pandas.DataFrame
        Index ``metric`` (accuracy, sensitivity, specificity, ppv, npv, f1); columns ``estimate``,
        ``lower``, ``upper``, ``numerator``, ``denominator``, ``ci_method``. Accuracy = (TP + TN) / n,
        sensitivity = TP / (TP + FN), specificity = TN / (TN + FP), PPV = TP / (TP + FP),
        NPV = TN / (TN + FN), F1 = 2TP / (2TP + FP + FN). An undefined metric (denominator 0) is NaN.

    Notes
    -----
    pandas Series ``y`` and ``score`` are paired by index label, numpy arrays by position.
    """
    y, score = align_series(("y", y), ("score", score))
    lab = _labels(y, need_both=False)
    s = _values(score, lab.size, "score")
    if not np.isfinite(threshold):
        raise InputDataError(f"threshold must be a finite number, got {threshold}")
    _check_level(level)
    _check_bootstrap(n_bootstrap)
    if proportion_ci not in ("wilson", "clopper-pearson"):
        raise InputDataError(f"proportion_ci must be 'wilson' or 'clopper-pearson', got {proportion_ci!r}")
    call = (s >= threshold).astype(int)
    tp, fp, fn, tn = _confusion(lab, call)
    fractions = {
        "accuracy": (tp + tn, lab.size),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }
    rows = []
    for name, (num, den) in fractions.items():
        lo, hi = binomial_ci(num, den, level, proportion_ci)
        rows.append({"metric": name, "estimate": num / den if den else float("nan"), "lower": lo, "upper": hi,
                     "numerator": num, "denominator": den, "ci_method": proportion_ci})
    f1_den = 2 * tp + fp + fn
    f1 = 2 * tp / f1_den if f1_den else float("nan")
    # stratified bootstrap of F1: resample cases and controls separately, count calls in each resample
    rng = np.random.default_rng(random_state)
    ip, ineg = _stratified_indices(lab, int(n_bootstrap), rng)
    tp_b = call[ip].sum(axis=1)
    fn_b = ip.shape[1] - tp_b
    fp_b = call[ineg].sum(axis=1)
    den_b = 2 * tp_b + fp_b + fn_b
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_b = np.where(den_b > 0, 2 * tp_b / np.maximum(den_b, 1), np.nan)
    lo, hi, _ = _percentile(f1_b, level) if np.isfinite(f1) else (float("nan"), float("nan"), 0)
    rows.append({"metric": "f1", "estimate": f1, "lower": lo, "upper": hi, "numerator": 2 * tp, "denominator": f1_den,
                 "ci_method": f"bootstrap percentile (stratified, {int(n_bootstrap)} resamples)"})
    return pd.DataFrame(rows).set_index("metric")


# -- reclassification -------------------------------------------------------------------------------------------
def nri(
    y: npt.ArrayLike,
    p_old: npt.ArrayLike,
    p_new: npt.ArrayLike,
    cutoffs: Sequence[float] | None = None,
    level: float = 0.95,
    se_method: Literal["pencina", "unrestricted"] = "pencina",
) -> dict[str, Any]:
    """Net reclassification improvement of ``p_new`` over ``p_old`` (Pencina et al. 2008, 2011).

    Up/down movement of a patient:

    * ``cutoffs=None`` -- category-free (continuous) NRI (Pencina, D'Agostino & Steyerberg 2011): up when
      ``p_new > p_old``, down when ``p_new < p_old`` (equal probabilities do not move), as
      ``Hmisc::improveProb``.
    * ``cutoffs`` given -- categorical NRI (Pencina et al. 2008) with risk categories
      ``[0, c1), [c1, c2), ..., [ck, 1]`` (a probability equal to a cut-off belongs to the higher category,
      consistent with "positive when p >= threshold"); up when the new category is higher.

    With ``P(up|event)`` etc. the proportions of events (n_e of them) and non-events (n_ne) moving::

        NRI_events    = P(up|event) - P(down|event)
        NRI_nonevents = P(down|nonevent) - P(up|nonevent)
        NRI           = NRI_events + NRI_nonevents

    Standard errors (``se_method``):

    * ``"pencina"`` (Pencina et al. 2008, eq. for the McNemar-type z statistic, variance under H0):
      ``se^2 = (P(up|event) + P(down|event)) / n_e + (P(up|nonevent) + P(down|nonevent)) / n_ne``.
    * ``"unrestricted"`` (multinomial variance, as ``Hmisc::improveProb``):
      ``var_events = (u + d) / n_e^2 - (u - d)^2 / n_e^3`` with counts u, d of events moving up/down, the
      same for non-events, ``se^2 = var_events + var_nonevents``.

    ``z = NRI / se``, two-sided normal p, Wald interval ``NRI +/- z_(1-alpha/2) * se``.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    p_old, p_new : array-like of float in [0, 1]
        Predicted probabilities of the reference (old) and the new model for the same patients.
    cutoffs : sequence of float in (0, 1), optional
        Increasing risk cut-offs for the categorical NRI.
    level : float, default 0.95
    se_method : {"pencina", "unrestricted"}, default "pencina"

    Returns
    -------
    dict
        ``estimate``, ``event_component``, ``nonevent_component``, ``se``, ``se_events``,
        ``se_nonevents``, ``z``, ``p``, ``lower``, ``upper``, the counts ``up_events``, ``down_events``,
        ``up_nonevents``, ``down_nonevents``, ``n_events``, ``n_nonevents``, and ``kind``
        ("continuous"/"categorical"), ``se_method``, ``level``.

    Notes
    -----
    pandas Series are paired by index label (aligned to the first Series' patients), numpy arrays by position.
    """
    y, p_old, p_new = align_series(("y", y), ("p_old", p_old), ("p_new", p_new))
    lab = _labels(y)
    old = _values(p_old, lab.size, "p_old", probability=True)
    new = _values(p_new, lab.size, "p_new", probability=True)
    zc = _check_level(level)
    if cutoffs is None:
        kind = "continuous"
        up, down = new > old, new < old
    else:
        cuts = np.asarray(cutoffs, dtype=float).reshape(-1)
        if cuts.size == 0 or not np.all(np.isfinite(cuts)) or np.any(cuts <= 0) or np.any(cuts >= 1) or np.any(np.diff(cuts) <= 0):
            raise InputDataError(
                f"cutoffs must be strictly increasing risks inside (0, 1), e.g. [0.1, 0.2]; got {list(np.asarray(cutoffs).tolist())}"
            )
        kind = "categorical"
        c_old, c_new = np.searchsorted(cuts, old, side="right"), np.searchsorted(cuts, new, side="right")
        up, down = c_new > c_old, c_new < c_old
    ev, ne = lab == 1, lab == 0
    n_e, n_ne = int(ev.sum()), int(ne.sum())
    u_e, d_e, u_ne, d_ne = int(up[ev].sum()), int(down[ev].sum()), int(up[ne].sum()), int(down[ne].sum())
    comp_e = (u_e - d_e) / n_e
    comp_ne = (d_ne - u_ne) / n_ne
    if se_method == "pencina":
        var_e, var_ne = (u_e + d_e) / n_e**2, (u_ne + d_ne) / n_ne**2
    elif se_method == "unrestricted":
        var_e = (u_e + d_e) / n_e**2 - (u_e - d_e) ** 2 / n_e**3
        var_ne = (u_ne + d_ne) / n_ne**2 - (u_ne - d_ne) ** 2 / n_ne**3
    else:
        raise InputDataError(f"se_method must be 'pencina' or 'unrestricted', got {se_method!r}")
    est = comp_e + comp_ne
    se = math.sqrt(max(var_e + var_ne, 0.0))
    z, p = _z_p(est, se)
    return {
        "estimate": est,
        "event_component": comp_e,
        "nonevent_component": comp_ne,
        "se": se,
        "se_events": math.sqrt(max(var_e, 0.0)),
        "se_nonevents": math.sqrt(max(var_ne, 0.0)),
        "z": z,
        "p": p,
        "lower": est - zc * se,
        "upper": est + zc * se,
        "up_events": u_e,
        "down_events": d_e,
        "up_nonevents": u_ne,
        "down_nonevents": d_ne,
        "n_events": n_e,
        "n_nonevents": n_ne,
        "kind": kind,
        "se_method": se_method,
        "level": level,
    }


def idi(y: npt.ArrayLike, p_old: npt.ArrayLike, p_new: npt.ArrayLike, level: float = 0.95) -> dict[str, Any]:
    """Integrated discrimination improvement of ``p_new`` over ``p_old`` (Pencina et al. 2008).

    With ``d = p_new - p_old``::

        IDI_events    = mean(d | event)           (gain in mean predicted risk of the events)
        IDI_nonevents = -mean(d | nonevent)       (drop in mean predicted risk of the non-events)
        IDI           = IDI_events + IDI_nonevents
                      = discrimination slope (new) - discrimination slope (old)
        se^2          = var(d | event) / n_e + var(d | nonevent) / n_ne      (sample variances, n - 1)

    i.e. Pencina et al. (2008)'s standard errors of the paired differences within events and within
    non-events, as ``Hmisc::improveProb``. ``z = IDI / se``, two-sided normal p, Wald interval.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, at least two events and two non-events.
    p_old, p_new : array-like of float in [0, 1]
        Predicted probabilities of the reference (old) and the new model.
    level : float, default 0.95

    Returns
    -------
    dict
        ``estimate``, ``event_component``, ``nonevent_component``, ``se``, ``z``, ``p``, ``lower``,
        ``upper``, ``discrimination_slope_old``, ``discrimination_slope_new``, ``relative_idi``
        (IDI / old slope), ``n_events``, ``n_nonevents``, ``level``.

    Notes
    -----
    pandas Series are paired by index label (aligned to the first Series' patients), numpy arrays by position.
    """
    y, p_old, p_new = align_series(("y", y), ("p_old", p_old), ("p_new", p_new))
    lab = _labels(y)
    old = _values(p_old, lab.size, "p_old", probability=True)
    new = _values(p_new, lab.size, "p_new", probability=True)
    zc = _check_level(level)
    ev, ne = lab == 1, lab == 0
    if ev.sum() < 2 or ne.sum() < 2:
        raise InputDataError(
            f"the IDI's standard error needs at least two events and two non-events, got {int(ev.sum())} and {int(ne.sum())}"
        )
    d = new - old
    comp_e, comp_ne = float(d[ev].mean()), float(-d[ne].mean())
    est = comp_e + comp_ne
    se = math.sqrt(d[ev].var(ddof=1) / ev.sum() + d[ne].var(ddof=1) / ne.sum())
    z, p = _z_p(est, se)
    slope_old = float(old[ev].mean() - old[ne].mean())
    slope_new = float(new[ev].mean() - new[ne].mean())
    return {
        "estimate": est,
        "event_component": comp_e,
        "nonevent_component": comp_ne,
        "se": se,
        "z": z,
        "p": p,
        "lower": est - zc * se,
        "upper": est + zc * se,
        "discrimination_slope_old": slope_old,
        "discrimination_slope_new": slope_new,
        "relative_idi": est / slope_old if slope_old != 0 else float("nan"),
        "n_events": int(ev.sum()),
        "n_nonevents": int(ne.sum()),
        "level": level,
    }


# -- calibration ------------------------------------------------------------------------------------------------
def hosmer_lemeshow(y: npt.ArrayLike, p: npt.ArrayLike, groups: int = 10) -> dict[str, Any]:
    """Hosmer-Lemeshow goodness-of-fit test, grouped as R's ``ResourceSelection::hoslem.test``.

    Breaks are the unique R type-7 quantiles of ``p`` at ``0, 1/g, ..., 1``; a patient is in group k when
    ``break[k-1] < p <= break[k]`` (the first group also takes ``p == break[0]``), i.e. R's
    ``cut(p, breaks, include.lowest = TRUE)``. **Ties**: tied probabilities always share a group; when
    ties make quantiles coincide the duplicate breaks are dropped, giving fewer groups (empty groups, which
    R would keep and turn into a NaN statistic, are dropped too). The statistic sums
    ``(observed - expected)^2 / expected`` over the event and the non-event cell of every group, where
    expected events are the sum of ``p`` in the group. **Degrees of freedom** are the number of groups
    actually formed minus 2; hoslem.test uses the requested ``g - 2`` even when ties merged groups, so the
    two agree whenever the g groups are distinct.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    p : array-like of float in [0, 1]
        Predicted probabilities.
    groups : int, default 10
        Requested number of groups (at least 3).

    Returns
    -------
    dict
        ``statistic``, ``df``, ``p``, ``groups`` (formed), ``requested_groups`` and ``table`` (a DataFrame
        with ``group``, ``lower``, ``upper``, ``n``, ``observed_events``, ``expected_events``,
        ``observed_nonevents``, ``expected_nonevents``, ``mean_predicted``, ``observed_rate``).

    Raises
    ------
    InputDataError
        Invalid inputs, fewer than 3 groups formed, or a group whose expected events or non-events are 0
        (all its probabilities are 0 or 1), where the statistic is undefined; pandas Series ``y`` and
        ``p`` with different patients.
    """
    y, p = align_series(("y", y), ("p", p))  # pandas Series pair by patient label, arrays by position
    lab = _labels(y)
    prob = _values(p, lab.size, "p", probability=True)
    if int(groups) < 3:
        raise InputDataError(f"groups must be >= 3 (df = groups - 2), got {groups}")
    g = int(groups)
    probs = np.arange(g + 1) * (1 / g)  # R: seq(0, 1, 1/g) = 0 + (0:g) * (1/g)
    breaks = np.unique(_quantile7(prob, probs))
    idx = np.clip(np.searchsorted(breaks, prob, side="left") - 1, 0, max(breaks.size - 2, 0))
    rows = []
    for k in range(max(breaks.size - 1, 1)):
        inside = idx == k
        if not inside.any():
            continue
        o1, e1 = float(lab[inside].sum()), float(prob[inside].sum())
        n_k = int(inside.sum())
        rows.append({"group": len(rows) + 1, "lower": float(breaks[k]), "upper": float(breaks[min(k + 1, breaks.size - 1)]), "n": n_k,
                     "observed_events": o1, "expected_events": e1, "observed_nonevents": n_k - o1, "expected_nonevents": n_k - e1,
                     "mean_predicted": e1 / n_k, "observed_rate": o1 / n_k})
    table = pd.DataFrame(rows)
    if len(table) < 3:
        raise InputDataError(
            f"only {len(table)} distinct risk group(s) could be formed (too many tied probabilities); "
            "the Hosmer-Lemeshow test needs at least 3"
        )
    zero = table.index[(table["expected_events"] <= 0) | (table["expected_nonevents"] <= 0)]
    if len(zero):
        raise InputDataError(
            f"group {int(table.loc[zero[0], 'group'])} has an expected count of 0 (all its probabilities are 0 or 1): "
            "the Hosmer-Lemeshow statistic is undefined; use fewer groups"
        )
    stat = float(
        (((table["observed_events"] - table["expected_events"]) ** 2) / table["expected_events"]).sum()
        + (((table["observed_nonevents"] - table["expected_nonevents"]) ** 2) / table["expected_nonevents"]).sum()
    )
    df = len(table) - 2
    return {"statistic": stat, "df": df, "p": float(_st.chi2.sf(stat, df)), "groups": len(table), "requested_groups": g, "table": table}


def _logistic(y: np.ndarray, X: np.ndarray, offset: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression (Newton-Raphson with step halving); coefficients and covariance."""

    def loglik(beta: np.ndarray) -> float:
        eta = offset + X @ beta
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(X.shape[1])
    ll = loglik(beta)
    for _ in range(max_iter):
        mu = expit(offset + X @ beta)
        info = X.T @ (X * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(info, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            break
        for _halving in range(40):
            new_ll = loglik(beta + step)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        beta, ll = beta + step, new_ll
        if np.max(np.abs(step)) < tol:
            mu = expit(offset + X @ beta)
            info = X.T @ (X * (mu * (1 - mu))[:, None])
            return beta, np.linalg.inv(info)
    raise InputDataError(
        "the logistic calibration model did not converge: the outcome is (nearly) perfectly separated by the predicted "
        "probabilities, so the calibration slope is infinite; report calibration graphically or with more patients"
    )


def calibration_slope_intercept(y: npt.ArrayLike, p: npt.ArrayLike, level: float = 0.95, eps: float = 1e-8) -> dict[str, Any]:
    """Calibration intercept (calibration-in-the-large) and calibration slope, with Wald confidence intervals.

    As Van Calster et al. (2016, J Clin Epidemiol 74:167) and R's ``rms::val.prob``, with
    ``lp = logit(p)``:

    * **intercept** (calibration-in-the-large, ideal 0): ``a`` in ``logit P(y=1) = a + offset(lp)``
      (slope fixed at 1); R ``glm(y ~ 1, offset = lp, family = binomial)``;
    * **slope** (ideal 1): ``b`` in ``logit P(y=1) = a' + b * lp``; R ``glm(y ~ lp, family = binomial)``,
      equal to val.prob's "Slope".

    Maximum likelihood by Newton-Raphson; intervals ``estimate +/- z * se`` from the observed information
    (R's ``confint.default``). Probabilities of exactly 0 or 1 (whose logit is infinite) are first moved to
    ``eps`` and ``1 - eps``, as the CalibrationCurves package (``val.prob.ci.2``) does; their number is
    returned as ``n_clipped``.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    p : array-like of float in [0, 1]
        Predicted probabilities.
    level : float, default 0.95
    eps : float, default 1e-8

    Returns
    -------
    dict
        ``intercept``, ``intercept_se``, ``intercept_lower``, ``intercept_upper``, ``slope``, ``slope_se``,
        ``slope_lower``, ``slope_upper``, ``n``, ``events``, ``n_clipped``, ``level``.

    Raises
    ------
    InputDataError
        Invalid inputs, or the outcome perfectly separated by ``p`` (infinite slope); pandas Series ``y``
        and ``p`` with different patients.
    """
    y, p = align_series(("y", y), ("p", p))  # pandas Series pair by patient label, arrays by position
    lab = _labels(y)
    prob = _values(p, lab.size, "p", probability=True)
    zc = _check_level(level)
    clipped = np.clip(prob, eps, 1 - eps)
    lp = np.log(clipped) - np.log1p(-clipped)
    yf = lab.astype(float)
    a, cov_a = _logistic(yf, np.ones((lab.size, 1)), lp)
    b, cov_b = _logistic(yf, np.column_stack([np.ones(lab.size), lp]), np.zeros(lab.size))
    se_a, se_b = float(np.sqrt(cov_a[0, 0])), float(np.sqrt(cov_b[1, 1]))
    return {
        "intercept": float(a[0]),
        "intercept_se": se_a,
        "intercept_lower": float(a[0] - zc * se_a),
        "intercept_upper": float(a[0] + zc * se_a),
        "slope": float(b[1]),
        "slope_se": se_b,
        "slope_lower": float(b[1] - zc * se_b),
        "slope_upper": float(b[1] + zc * se_b),
        "n": int(lab.size),
        "events": int(lab.sum()),
        "n_clipped": int(np.sum(clipped != prob)),
        "level": level,
    }


def brier_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Brier score ``mean((p - y)^2)`` (lower is better), as ``sklearn.metrics.brier_score_loss``.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome (a single class is allowed).
    p : array-like of float in [0, 1]
        Predicted probabilities.

    Returns
    -------
    float
    """
    y, p = align_series(("y", y), ("p", p))  # pandas Series pair by patient label, arrays by position
    lab = _labels(y, need_both=False)
    prob = _values(p, lab.size, "p", probability=True)
    return float(np.mean((prob - lab) ** 2))


def scaled_brier_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Scaled Brier score ``1 - Brier / Brier_max`` with ``Brier_max = ybar * (1 - ybar)``.

    ``Brier_max`` is the Brier score of predicting the observed prevalence for everyone (Steyerberg et al.
    2010, Epidemiology 21:128); 1 is perfect, 0 no better than the prevalence, negative worse.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome, both classes present.
    p : array-like of float in [0, 1]
        Predicted probabilities.

    Returns
    -------
    float
    """
    y, p = align_series(("y", y), ("p", p))  # before y becomes an array: pair pandas Series by patient label
    lab = _labels(y)
    prev = lab.mean()
    return 1.0 - brier_score(lab, p) / (prev * (1 - prev))


# -- clinical utility -------------------------------------------------------------------------------------------
def net_benefit(y: npt.ArrayLike, p: npt.ArrayLike, thresholds: npt.ArrayLike) -> pd.DataFrame:
    """Decision-curve net benefit (Vickers & Elkin 2006, Med Decis Making 26:565).

    At threshold probability ``pt``, with ``n`` patients and a patient treated when ``p >= pt``::

        net_benefit = TP / n - FP / n * pt / (1 - pt)
        treat_all   = prevalence - (1 - prevalence) * pt / (1 - pt)
        treat_none  = 0

    Parameters
    ----------
    y : array-like of 0/1
        Outcome.
    p : array-like of float in [0, 1]
        Predicted probabilities.
    thresholds : array-like of float in [0, 1)
        Threshold probabilities.

    Returns
    -------
    pandas.DataFrame
        Columns ``threshold``, ``net_benefit``, ``treat_all``, ``treat_none``, ``true_positives``,
        ``false_positives``, ``n``.
    """
    y, p = align_series(("y", y), ("p", p))  # pandas Series pair by patient label, arrays by position
    lab = _labels(y, need_both=False)
    prob = _values(p, lab.size, "p", probability=True)
    t = np.asarray(thresholds, dtype=float).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or t.min() < 0 or t.max() >= 1:
        raise InputDataError(
            "thresholds must be threshold probabilities in [0, 1) (net benefit divides by 1 - threshold), "
            "e.g. numpy.arange(0.01, 0.99, 0.01)"
        )
    n = lab.size
    treated = prob[None, :] >= t[:, None]
    tp = (treated & (lab[None, :] == 1)).sum(axis=1)
    fp = (treated & (lab[None, :] == 0)).sum(axis=1)
    odds = t / (1 - t)
    prev = lab.mean()
    return pd.DataFrame({
        "threshold": t,
        "net_benefit": tp / n - fp / n * odds,
        "treat_all": prev - (1 - prev) * odds,
        "treat_none": np.zeros(t.size),
        "true_positives": tp,
        "false_positives": fp,
        "n": n,
    })


# -- clinical characteristics -----------------------------------------------------------------------------------
def _fmt_num(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def table_one(
    patients: pd.DataFrame,
    group: str,
    continuous: Sequence[str],
    categorical: Sequence[str],
    normality_alpha: float = 0.05,
    nonnormal: Sequence[str] | None = None,
    decimals: int = 1,
    random_state: int = 0,
) -> pd.DataFrame:
    """Clinical characteristics per group with an overall column, missing counts and a test per variable.

    Continuous variables
        Normal when Shapiro-Wilk does not reject (p > ``normality_alpha``) in **every** group (a group with
        fewer than 3 values counts as non-normal) and the variable is not listed in ``nonnormal``.
        Normal: mean ± SD (SD with n - 1) and, for 2 groups, **Welch's** unequal-variance t-test (scipy
        ``ttest_ind(equal_var=False)``, tableone's default), for > 2 groups one-way ANOVA. Non-normal:
        median [Q1, Q3] (linear quantiles) and the Mann-Whitney U test (two-sided, scipy's default exact /
        asymptotic choice with continuity correction) for 2 groups, Kruskal-Wallis for > 2.
    Categorical variables
        n (%) per level, percentages of the non-missing values of the column (group). Chi-square test of
        the levels x groups table (with Yates' continuity correction for 2 x 2, as R's ``chisq.test`` and
        tableone); when any expected count is < 5: Fisher's exact test for a 2 x 2 table, and for larger
        tables the Fisher-Freeman-Halton exact test with a seeded Monte Carlo p-value (10,000 random tables
        with the observed margins, ``scipy.stats.fisher_exact(method=MonteCarloMethod)``; R's
        ``fisher.test(simulate.p.value = TRUE)``).

    Missing values are excluded from each variable's summaries and test and counted in ``missing``.

    Parameters
    ----------
    patients : pandas.DataFrame
        One row per patient.
    group : str
        Column of the comparison groups (e.g. outcome or cohort); no missing values.
    continuous, categorical : sequence of str
        Columns to summarise (continuous ones must be numeric).
    normality_alpha : float, default 0.05
    nonnormal : sequence of str, optional
        Continuous variables always summarised and tested as non-normal.
    decimals : int, default 1
        Decimals of means, SDs, medians, quartiles and percentages.
    random_state : int, default 0
        Seed of the Monte Carlo Fisher-Freeman-Halton p-values.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable``, ``level``, ``missing``, ``Overall``, one column per group (its value as text,
        in sorted order), ``p`` and ``test``. The first row is ``n``; a continuous variable has one row
        (``level`` says "mean ± SD" or "median [Q1, Q3]"), a categorical variable a header row carrying
        ``missing``, ``p`` and ``test`` followed by one row per level.
    """
    if not isinstance(patients, pd.DataFrame):
        raise InputDataError("patients must be a pandas DataFrame with one row per patient")
    cols = [group, *continuous, *categorical]
    absent = [c for c in cols if c not in patients.columns]
    if absent:
        raise InputDataError(f"column(s) {absent} not in the patient table (columns: {list(patients.columns)[:20]}); check the names")
    both = set(continuous) & set(categorical)
    if both:
        raise InputDataError(f"variable(s) {sorted(both)} are listed as both continuous and categorical; keep each in one list")
    unknown = sorted(set(nonnormal or []) - set(continuous))
    if unknown:
        raise InputDataError(f"nonnormal lists {unknown}, which are not among the continuous variables")
    if not 0 <= normality_alpha < 1:
        raise InputDataError(f"normality_alpha must be in [0, 1), e.g. 0.05; got {normality_alpha}")
    if patients[group].isna().any():
        n_missing = int(patients[group].isna().sum())
        raise InputDataError(f"group column '{group}' has {n_missing} missing value(s): drop those patients or give them a group")
    gser = patients[group]
    levels = _levels(gser)
    labels = [str(v) for v in levels]
    masks = [(gser == v).to_numpy() for v in levels]
    force_nonnormal = set(nonnormal or [])
    rows: list[dict[str, Any]] = [{"variable": "n", "level": "", "missing": pd.NA, "Overall": str(len(patients)),
                                   **{lab: str(int(m.sum())) for lab, m in zip(labels, masks)}, "p": np.nan, "test": ""}]
    for v in continuous:
        col = patients[v]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise InputDataError(f"continuous variable '{v}' is not numeric (dtype {col.dtype}); convert it or list it under categorical")
        x = col.astype(float).to_numpy()
        ok = ~np.isnan(x)
        per_group = [x[m & ok] for m in masks]
        normal = v not in force_nonnormal and all(vals.size >= 3 and _shapiro_p(vals) > normality_alpha for vals in per_group)

        def summary(vals: np.ndarray) -> str:
            if vals.size == 0:
                return ""
            if normal:
                sd = vals.std(ddof=1) if vals.size > 1 else float("nan")
                return f"{_fmt_num(vals.mean(), decimals)} ± {_fmt_num(sd, decimals)}"
            q1, med, q3 = np.quantile(vals, [0.25, 0.5, 0.75])
            return f"{_fmt_num(med, decimals)} [{_fmt_num(q1, decimals)}, {_fmt_num(q3, decimals)}]"

        p, test = _continuous_test(per_group, normal)
        rows.append({"variable": v, "level": "mean ± SD" if normal else "median [Q1, Q3]", "missing": int((~ok).sum()),
                     "Overall": summary(x[ok]), **{lab: summary(vals) for lab, vals in zip(labels, per_group)}, "p": p, "test": test})
    for v in categorical:
        col = patients[v]
        ok = col.notna().to_numpy()
        cats = _levels(col)
        table = np.array([[int(((col == c).to_numpy() & m).sum()) for m in masks] for c in cats], dtype=int).reshape(len(cats), len(masks))
        p, test = _categorical_test(table, random_state)
        blank = {lab: "" for lab in labels}
        rows.append({"variable": v, "level": "", "missing": int((~ok).sum()), "Overall": "", **blank, "p": p, "test": test})
        totals = table.sum(axis=0)
        overall_total = int(table.sum())
        for i, c in enumerate(cats):
            cell = {lab: _count_pct(table[i, j], totals[j], decimals) for j, lab in enumerate(labels)}
            overall = _count_pct(table[i].sum(), overall_total, decimals)
            rows.append({"variable": v, "level": str(c), "missing": pd.NA, "Overall": overall, **cell, "p": np.nan, "test": ""})
    out = pd.DataFrame(rows, columns=["variable", "level", "missing", "Overall", *labels, "p", "test"])
    out["missing"] = out["missing"].astype("Int64")
    out["p"] = out["p"].astype(float)
    return out


def _levels(col: pd.Series) -> list[Any]:
    """Observed values of a column: in category order for a categorical dtype, else sorted (numbers before text)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories[col.cat.categories.isin(col.dropna().unique())])
    return sorted(col.dropna().unique(), key=_sort_key)


def _sort_key(value: object) -> tuple[int, object]:
    return (0, value) if isinstance(value, (int, float, np.number, bool, np.bool_)) else (1, str(value))


def _count_pct(k: int, total: int, decimals: int) -> str:
    return f"{int(k)} ({_fmt_num(100 * k / total, decimals)})" if total else f"{int(k)}"


def _shapiro_p(vals: np.ndarray) -> float:
    if np.ptp(vals) == 0:
        return 0.0  # constant values: not normally distributed (and Shapiro-Wilk is undefined)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that p may be inaccurate for n > 5000
        return float(_st.shapiro(vals).pvalue)


def _continuous_test(per_group: list[np.ndarray], normal: bool) -> tuple[float, str]:
    present = [v for v in per_group if v.size > 0]
    if len(per_group) < 2:
        return float("nan"), "not tested (one group)"
    if len(present) < len(per_group) or any(v.size < 2 for v in per_group):
        return float("nan"), "not tested (fewer than 2 values in a group)"
    if len(per_group) == 2:
        if normal:
            return float(_st.ttest_ind(*per_group, equal_var=False).pvalue), "Welch's t-test"
        return float(_st.mannwhitneyu(*per_group, alternative="two-sided").pvalue), "Mann-Whitney U test"
    if normal:
        return float(_st.f_oneway(*per_group).pvalue), "One-way ANOVA"
    return float(_st.kruskal(*per_group).pvalue), "Kruskal-Wallis test"


def _categorical_test(table: np.ndarray, random_state: int) -> tuple[float, str]:
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return float("nan"), "not tested (one group)"
    if table.shape[0] < 2:
        return float("nan"), "not tested (one level)"
    res = _st.chi2_contingency(table)  # Yates' correction applies to 2 x 2 (dof = 1) only
    if res.expected_freq.min() >= 5:
        return float(res.pvalue), "Chi-square test (Yates' correction)" if table.shape == (2, 2) else "Chi-square test"
    if table.shape == (2, 2):
        return float(_st.fisher_exact(table).pvalue), "Fisher's exact test"
    method = _st.MonteCarloMethod(n_resamples=10_000, rng=np.random.default_rng(random_state))
    return float(_st.fisher_exact(table, method=method).pvalue), "Fisher-Freeman-Halton exact test (Monte Carlo)"


# -- study-level tables (notebook 06) ----------------------------------------------------------------------------
def _fmt_ci(est: float, lo: float, hi: float, digits: int) -> str:
    """``0.78 (0.62-0.93)``; ``" to "`` instead of ``-`` when a bound is negative; ``NA`` when undefined."""
    if not np.isfinite(est):
        return "NA"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    sep = " to " if min(lo, hi) < 0 else "-"
    return f"{est:.{digits}f} ({lo:.{digits}f}{sep}{hi:.{digits}f})"


def _check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of the long predictions table (see :func:`performance_table`)."""
    if not isinstance(predictions, pd.DataFrame):
        raise InputDataError("predictions must be a DataFrame with columns " + ", ".join(PREDICTION_COLUMNS))
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise InputDataError(
            f"predictions lack column(s) {missing}; expected {list(PREDICTION_COLUMNS)} (one row per model x patient x cohort)"
        )
    df = predictions.loc[:, list(PREDICTION_COLUMNS)].copy()
    for c in ("model", "patient", "cohort"):
        if df[c].isna().any():
            raise InputDataError(f"predictions column '{c}' has {int(df[c].isna().sum())} missing value(s)")
    df["outcome"] = _labels(df["outcome"].to_numpy(), "predictions['outcome']", need_both=False)
    df["probability"] = _values(df["probability"].to_numpy(), len(df), "predictions['probability']", probability=True)
    thr = pd.to_numeric(df["threshold"], errors="coerce")
    if thr.isna().any() or not np.all(np.isfinite(thr)):
        raise InputDataError("predictions['threshold'] must be a finite number on every row (the model's training-chosen threshold)")
    df["threshold"] = thr.astype(float)
    varying = df.groupby("model", sort=False)["threshold"].nunique()
    varying = varying[varying > 1]
    if len(varying):
        raise InputDataError(
            f"the threshold must be constant per model (chosen once on training data), but it varies for model(s) {list(varying.index)}"
        )
    dup = df.duplicated(["model", "cohort", "patient"])
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise InputDataError(
            f"{int(dup.sum())} duplicated (model, cohort, patient) row(s), e.g. ({first['model']}, {first['cohort']}, {first['patient']}): "
            "keep one prediction per model and patient in each cohort"
        )
    return df


def _one_class_note(y: np.ndarray) -> str:
    return f"only one outcome class ({int(y.sum())} events of {y.size}): AUC undefined"


def performance_table(
    predictions: pd.DataFrame,
    level: float = 0.95,
    proportion_ci: Literal["wilson", "clopper-pearson"] = "wilson",
    n_bootstrap: int = 2000,
    random_state: int = 0,
    digits: int = 2,
) -> pd.DataFrame:
    """Discrimination and classification performance per model and cohort.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long table with columns ``model``, ``patient``, ``cohort``, ``outcome`` (0/1), ``probability``
        (out-of-fold for the training cohort) and ``threshold`` (the model's training-chosen threshold,
        constant per model).
    level : float, default 0.95
    proportion_ci : {"wilson", "clopper-pearson"}, default "wilson"
    n_bootstrap, random_state
        F1 bootstrap (see :func:`binary_metrics`); the same seed for every model and cohort.
    digits : int, default 2
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        One row per model x cohort (order of first appearance): ``model``, ``cohort``, ``n``, ``events``,
        ``threshold``, ``auc``, ``auc_lower``, ``auc_upper`` (DeLong), ``AUC (95% CI)`` (formatted, e.g.
        ``0.78 (0.62-0.93)``), then for accuracy, sensitivity, specificity, ppv, npv and f1 the estimate,
        ``<metric>_lower``, ``<metric>_upper`` and a formatted ``<Metric> (95% CI)``, and ``note``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        y, p, thr = sub["outcome"].to_numpy(), sub["probability"].to_numpy(), float(sub["threshold"].iloc[0])
        row: dict[str, Any] = {"model": model, "cohort": cohort, "n": int(y.size), "events": int(y.sum()), "threshold": thr}
        notes = []
        if 0 < y.sum() < y.size:
            a = auc_ci(y, p, "delong", level)
            row.update(auc=a["auc"], auc_lower=a["lower"], auc_upper=a["upper"])
            if not np.isfinite(a["lower"]):
                notes.append("AUC CI undefined with a single event or non-event")
        else:
            row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan)
            notes.append(_one_class_note(y))
        row[f"AUC ({pct} CI)"] = _fmt_ci(row["auc"], row["auc_lower"], row["auc_upper"], digits)
        bm = binary_metrics(y, p, thr, level, proportion_ci, n_bootstrap, random_state)
        for m in METRICS:
            est, lo, hi = bm.loc[m, ["estimate", "lower", "upper"]]
            row.update({m: est, f"{m}_lower": lo, f"{m}_upper": hi, f"{_METRIC_LABELS[m]} ({pct} CI)": _fmt_ci(est, lo, hi, digits)})
        undefined = [_METRIC_LABELS[m] for m in METRICS if not np.isfinite(bm.loc[m, "estimate"])]
        if undefined:
            notes.append(f"undefined (denominator 0): {', '.join(undefined)}")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(df: pd.DataFrame, cohort: object, a: object, b: object) -> tuple[pd.DataFrame, str]:
    """Patients of a cohort predicted by both models: columns outcome, a, b."""
    sub = df[df["cohort"] == cohort]
    wide = sub.pivot(index="patient", columns="model", values="probability")
    outcome = sub.groupby("patient", sort=False)["outcome"].agg(["min", "max"])
    bad = outcome.index[outcome["min"] != outcome["max"]]
    if len(bad):
        raise InputDataError(
            f"cohort {cohort!r}: patient(s) {list(bad[:5])} have different outcomes for different models; "
            "the outcome is a property of the patient, give it once"
        )
    pair = pd.DataFrame({"outcome": outcome["min"], "a": wide[a], "b": wide[b]}).dropna()
    dropped = len(wide) - len(pair)
    note = f"{dropped} patient(s) without a prediction from both models excluded" if dropped else ""
    return pair, note


def pairwise_comparison_table(
    predictions: pd.DataFrame,
    reference: str | None = None,
    level: float = 0.95,
    nri_se_method: Literal["pencina", "unrestricted"] = "pencina",
    digits: int = 3,
) -> pd.DataFrame:
    """Pairwise model comparison per cohort: DeLong test, continuous NRI and IDI.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`). Pairs use the patients of the cohort that
        both models predicted.
    reference : str, optional
        Compare every other model with this one (``model_b`` = reference). By default every pair of models
        (order of first appearance; ``model_a`` the earlier one).
    level : float, default 0.95
    nri_se_method : {"pencina", "unrestricted"}, default "pencina"
        Standard error of the NRI (see :func:`nri`).
    digits : int, default 3
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        ``cohort``, ``model_a``, ``model_b``, ``n``, ``events``, ``auc_a``, ``auc_b``, ``auc_difference``
        (a - b), ``delong_z``, ``delong_p``, ``nri``, ``nri_lower``, ``nri_upper``, ``nri_p``, ``idi``,
        ``idi_lower``, ``idi_upper``, ``idi_p`` and formatted ``NRI (95% CI)``, ``IDI (95% CI)``, ``note``.
        NRI and IDI are of ``model_a`` (new) over ``model_b`` (old): positive values favour ``model_a``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    models = list(pd.unique(df["model"]))
    if reference is not None and reference not in models:
        raise InputDataError(f"reference model {reference!r} is not in the predictions; models are {models}")
    pct = f"{level:.0%}"
    rows = []
    for cohort in pd.unique(df["cohort"]):
        present = [m for m in models if ((df["cohort"] == cohort) & (df["model"] == m)).any()]
        if reference is None:
            pairs = list(itertools.combinations(present, 2))
        else:
            pairs = [(m, reference) for m in present if m != reference] if reference in present else []
        for a, b in pairs:
            pair, note = _paired(df, cohort, a, b)
            y = pair["outcome"].to_numpy().astype(int)
            row: dict[str, Any] = {"cohort": cohort, "model_a": a, "model_b": b, "n": int(y.size), "events": int(y.sum())}
            notes = [note] if note else []
            keys = ["auc_a", "auc_b", "auc_difference", "delong_z", "delong_p", "nri", "nri_lower", "nri_upper", "nri_p",
                    "idi", "idi_lower", "idi_upper", "idi_p"]
            row.update({k: np.nan for k in keys})
            if y.size and 0 < y.sum() < y.size:
                dl = delong_test(y, pair["a"], pair["b"])
                row.update(auc_a=dl["auc_a"], auc_b=dl["auc_b"], auc_difference=dl["difference"], delong_z=dl["z"], delong_p=dl["p"])
                r = nri(y, pair["b"], pair["a"], level=level, se_method=nri_se_method)
                row.update(nri=r["estimate"], nri_lower=r["lower"], nri_upper=r["upper"], nri_p=r["p"])
                if min(y.sum(), y.size - y.sum()) >= 2:
                    i = idi(y, pair["b"], pair["a"], level=level)
                    row.update(idi=i["estimate"], idi_lower=i["lower"], idi_upper=i["upper"], idi_p=i["p"])
                else:
                    notes.append("IDI needs at least two events and two non-events")
            else:
                notes.append(f"only one outcome class ({int(y.sum())} events of {y.size}): comparison undefined")
            row[f"NRI ({pct} CI)"] = _fmt_ci(row["nri"], row["nri_lower"], row["nri_upper"], digits)
            row[f"IDI ({pct} CI)"] = _fmt_ci(row["idi"], row["idi_lower"], row["idi_upper"], digits)
            row["note"] = "; ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows)


def calibration_table(
    predictions: pd.DataFrame,
    level: float = 0.95,
    hl_groups: int = 10,
    min_patients_per_group: int = 10,
    digits: int = 2,
) -> pd.DataFrame:
    """Calibration per model and cohort: intercept and slope with CIs, Brier score and Hosmer-Lemeshow test.

    The Hosmer-Lemeshow test uses ``g = min(hl_groups, n // min_patients_per_group)`` groups, so that a
    group holds ``min_patients_per_group`` patients on average (10 groups need 100 patients; a cohort of 60
    gets 6 groups). With fewer than 3 groups (n < 3 * ``min_patients_per_group``) the test is not done and
    ``note`` says so.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`).
    level : float, default 0.95
    hl_groups : int, default 10
    min_patients_per_group : int, default 10
    digits : int, default 2
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``cohort``, ``n``, ``events``, ``intercept``, ``intercept_lower``, ``intercept_upper``,
        ``slope``, ``slope_lower``, ``slope_upper``, formatted ``Intercept (95% CI)`` and
        ``Slope (95% CI)``, ``brier``, ``scaled_brier``, ``hl_statistic``, ``hl_df``, ``hl_p``,
        ``hl_groups``, ``note``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        y, p = sub["outcome"].to_numpy(), sub["probability"].to_numpy()
        row: dict[str, Any] = {"model": model, "cohort": cohort, "n": int(y.size), "events": int(y.sum())}
        keys = ["intercept", "intercept_lower", "intercept_upper", "slope", "slope_lower", "slope_upper", "brier", "scaled_brier",
                "hl_statistic", "hl_df", "hl_p", "hl_groups"]
        row.update({k: np.nan for k in keys})
        notes = []
        row["brier"] = brier_score(y, p)
        if 0 < y.sum() < y.size:
            row["scaled_brier"] = scaled_brier_score(y, p)
            try:
                c = calibration_slope_intercept(y, p, level)
                row.update({k: c[k] for k in keys[:6]})
                if c["n_clipped"]:
                    notes.append(f"{c['n_clipped']} probabilities of 0 or 1 set to 1e-8 / 1 - 1e-8 for the logit")
            except InputDataError as exc:
                notes.append(str(exc).split(";")[0])
            g = min(int(hl_groups), y.size // int(min_patients_per_group))
            if g >= 3:
                try:
                    h = hosmer_lemeshow(y, p, g)
                    row.update(hl_statistic=h["statistic"], hl_df=h["df"], hl_p=h["p"], hl_groups=h["groups"])
                    if h["groups"] < int(hl_groups):
                        notes.append(f"Hosmer-Lemeshow with {h['groups']} groups")
                except InputDataError as exc:
                    notes.append(f"Hosmer-Lemeshow not computed: {str(exc).split(';')[0]}")
            else:
                notes.append(f"Hosmer-Lemeshow not computed: {y.size} patients give fewer than 3 groups of {min_patients_per_group}")
        else:
            notes.append(
                f"only one outcome class ({int(y.sum())} events of {y.size}): calibration intercept, slope and Hosmer-Lemeshow undefined"
            )
        row[f"Intercept ({pct} CI)"] = _fmt_ci(row["intercept"], row["intercept_lower"], row["intercept_upper"], digits)
        row[f"Slope ({pct} CI)"] = _fmt_ci(row["slope"], row["slope_lower"], row["slope_upper"], digits)
        row["note"] = "; ".join(notes)
        rows.append(row)
    out = pd.DataFrame(rows)
    order = ["model", "cohort", "n", "events", "intercept", "intercept_lower", "intercept_upper", "slope", "slope_lower", "slope_upper",
             f"Intercept ({pct} CI)", f"Slope ({pct} CI)", "brier", "scaled_brier", "hl_statistic", "hl_df", "hl_p", "hl_groups", "note"]
    return out[order]


def subgroup_performance_table(
    predictions: pd.DataFrame,
    subgroups: pd.Series,
    level: float = 0.95,
    digits: int = 2,
) -> pd.DataFrame:
    """AUC with DeLong CI per subgroup (e.g. scanner model), model and cohort.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`).
    subgroups : pandas.Series
        Subgroup of each patient, indexed by patient identifier (the values of ``predictions['patient']``).
        Missing values form the subgroup ``"missing"``.
    level : float, default 0.95
    digits : int, default 2

    Returns
    -------
    pandas.DataFrame
        ``model``, ``cohort``, ``subgroup``, ``n``, ``events``, ``auc``, ``auc_lower``, ``auc_upper``,
        formatted ``AUC (95% CI)`` and ``note`` (why an AUC or its CI is missing, e.g. a subgroup with one
        class). Subgroups are in sorted order.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    if not isinstance(subgroups, pd.Series):
        raise InputDataError("subgroups must be a pandas Series indexed by patient identifier")
    if subgroups.index.has_duplicates:
        dups = list(subgroups.index[subgroups.index.duplicated()][:5])
        raise InputDataError(f"subgroups has duplicated patient(s) {dups}; give each patient one subgroup")
    absent = pd.unique(df.loc[~df["patient"].isin(subgroups.index), "patient"])
    if len(absent):
        raise InputDataError(
            f"{len(absent)} patient(s) of the predictions have no subgroup, e.g. {list(absent[:5])}; add them to subgroups"
        )
    df["subgroup"] = df["patient"].map(subgroups.astype(object).where(subgroups.notna(), "missing"))
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        for value in sorted(pd.unique(sub["subgroup"]), key=_sort_key):
            part = sub[sub["subgroup"] == value]
            y, p = part["outcome"].to_numpy(), part["probability"].to_numpy()
            row: dict[str, Any] = {"model": model, "cohort": cohort, "subgroup": value, "n": int(y.size), "events": int(y.sum()),
                                   "auc": np.nan, "auc_lower": np.nan, "auc_upper": np.nan, "note": ""}
            if 0 < y.sum() < y.size:
                a = auc_ci(y, p, "delong", level)
                row.update(auc=a["auc"], auc_lower=a["lower"], auc_upper=a["upper"])
                if not np.isfinite(a["lower"]):
                    row["note"] = "AUC CI undefined with a single event or non-event"
            else:
                row["note"] = _one_class_note(y)
            row[f"AUC ({pct} CI)"] = _fmt_ci(row["auc"], row["auc_lower"], row["auc_upper"], digits)
            rows.append(row)
    cols = ["model", "cohort", "subgroup", "n", "events", "auc", "auc_lower", "auc_upper", f"AUC ({pct} CI)", "note"]
    return pd.DataFrame(rows, columns=cols)
