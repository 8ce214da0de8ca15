"""Input checks and small numeric helpers shared by the statistics modules.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from helpers.errors import InputDataError

__all__ = []

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
