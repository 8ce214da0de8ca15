"""Calibration: Hosmer-Lemeshow, calibration slope and intercept, Brier score.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as _st
from scipy.special import expit

from helpers._alignment import align_series
from helpers.errors import InputDataError
from helpers.stats._validation import _check_level, _labels, _quantile7, _values

__all__ = ['hosmer_lemeshow', 'calibration_slope_intercept', 'brier_score', 'scaled_brier_score']

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
