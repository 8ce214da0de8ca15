"""Discrimination: AUC with DeLong or bootstrap confidence intervals, and the paired DeLong test.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as _st

from helpers._alignment import align_series
from helpers.errors import InputDataError
from helpers.stats._validation import _check_bootstrap, _check_level, _labels, _percentile, _values, _z_p

__all__ = ['auc_ci', 'delong_test']

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
