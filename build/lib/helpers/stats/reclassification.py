"""Reclassification: net reclassification improvement (NRI) and integrated discrimination improvement (IDI).

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from helpers._alignment import align_series
from helpers.errors import InputDataError
from helpers.stats._validation import _check_level, _labels, _values, _z_p

__all__ = ['nri', 'idi']

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
