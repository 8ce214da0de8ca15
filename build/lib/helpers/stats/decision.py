"""Clinical utility: net benefit for decision curves.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from helpers._alignment import align_series
from helpers.errors import InputDataError
from helpers.stats._validation import _labels, _values

__all__ = ['net_benefit']

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
