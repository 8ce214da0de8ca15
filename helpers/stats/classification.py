"""Classification at a threshold: accuracy, sensitivity, specificity, PPV, NPV, F1 with confidence intervals.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as _st

from helpers._alignment import align_series
from helpers.errors import InputDataError
from helpers.stats._validation import _check_bootstrap, _check_level, _labels, _percentile, _values

__all__ = ['binary_metrics', 'binomial_ci']

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
        Resamples of the patient-level percentile bootstrap used for F1, which is not a binomial proportion
        (patients are resampled without stratifying by class: F1 depends on the prevalence).
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
    # Patient-level bootstrap of F1 (patients resampled with replacement, class sizes free). F1 depends on the
    # prevalence through the PPV, so the class sizes must vary: a bootstrap stratified by class holds them fixed, and
    # when every patient of a class gets the same call (e.g. a threshold calling everyone positive) all its resamples
    # have the same confusion matrix and the interval collapses onto the estimate, e.g. "0.43 (0.43-0.43)".
    rng = np.random.default_rng(random_state)
    idx = rng.integers(0, lab.size, (int(n_bootstrap), lab.size))
    y_b, call_b = lab[idx], call[idx]
    tp_b = (y_b * call_b).sum(axis=1)
    fp_b = ((1 - y_b) * call_b).sum(axis=1)
    fn_b = (y_b * (1 - call_b)).sum(axis=1)
    den_b = 2 * tp_b + fp_b + fn_b
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_b = np.where(den_b > 0, 2 * tp_b / np.maximum(den_b, 1), np.nan)
    lo, hi, _ = _percentile(f1_b, level) if np.isfinite(f1) else (float("nan"), float("nan"), 0)
    rows.append({"metric": "f1", "estimate": f1, "lower": lo, "upper": hi, "numerator": 2 * tp, "denominator": f1_den,
                 "ci_method": f"bootstrap percentile (patients resampled, {int(n_bootstrap)} resamples)"})
    return pd.DataFrame(rows).set_index("metric")
