"""Clinical-radiomics nomogram: logistic regression on clinical variables + Rad-score.

Model
-----
:class:`NomogramModel` is an unpenalised logistic regression fitted with
statsmodels ``Logit`` (Newton-Raphson maximum likelihood), so coefficients
come with Wald standard errors, 95% confidence intervals and p-values (the
usual "multivariable logistic regression" table of clinical-radiomics papers).

Categorical variables use treatment (dummy) coding, as R's ``glm`` and
patsy's ``C()`` do: levels are the pandas categories in their order (for a
``Categorical`` column) or the sorted training values (otherwise); the first
level is the reference (override with ``reference``); one 0/1 column
``"<variable>[<level>]"`` is made per other level. Levels are learned from
the TRAINING data; an unseen level at prediction time is an error.

Points (the classic Iasonos/Kattan construction)
------------------------------------------------
For a continuous variable j with coefficient b_j and TRAINING range
[min_j, max_j], its contribution to the linear predictor spans
``R_j = |b_j| (max_j - min_j)``; for a categorical variable, ``R_j`` is the
spread of its level coefficients (reference = 0). The variable with the
largest ``R_j`` (``R_max``) gets 0-100 points, the others proportionally::

    points_j(x) = 100 * (b_j x - min contribution of j) / R_max
    total points TP = sum_j points_j
    linear predictor LP = lp_at_zero + TP * R_max / 100
    probability = 1 / (1 + exp(-LP))

where ``lp_at_zero`` is the intercept plus every variable's minimum
contribution. The mapping reproduces the model's predicted probability
exactly (up to floating point) for any patient; values outside the training
range extrapolate linearly (points below 0 or above the variable's maximum).

The nomogram figure is :func:`helpers.figures.nomogram.nomogram_figure`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from helpers._alignment import align_to_index
from helpers.errors import SeparationError

__all__ = ["NomogramModel", "NomogramTable", "nomogram_table"]

_INTERCEPT = "Intercept"


def _expit(x: np.ndarray) -> np.ndarray:
    # Split by sign so neither branch overflows for large |x|.
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1 + ex)
    return out


class NomogramModel(ClassifierMixin, BaseEstimator):
    """Logistic regression for a nomogram (statsmodels ``Logit``, no penalty).

    Parameters
    ----------
    categorical : sequence of str, optional
        Columns to dummy-code. Columns of object, string, category or bool
        dtype are categorical anyway; list numeric codes (e.g. T stage 1-4
        stored as integers) here to treat them as categories.
    reference : mapping of str to level, optional
        Reference level per categorical variable (default: the first level).
    alpha : float, default 0.05
        1 - confidence level of the coefficient intervals.

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        Input columns (clinical variables and the Rad-score), in order.
    categories_ : dict of str to list
        Levels per categorical variable; the first is the reference.
    ranges_ : dict of str to (float, float)
        Training minimum and maximum per continuous variable (the point scales).
    design_columns_ : list of str
        Columns of the design matrix (without the intercept).
    params_ : pandas.Series
        ``Intercept`` and one coefficient (log odds ratio) per design column.
    bse_, pvalues_ : pandas.Series
        Wald standard errors and p-values.
    conf_int_ : pandas.DataFrame
        Columns ``lower`` and ``upper`` (coefficient scale).
    summary_ : pandas.DataFrame
        Per design column: ``coef``, ``se``, ``odds_ratio``, ``or_ci_low``,
        ``or_ci_high``, ``p``.
    result_ : statsmodels LogitResults
    classes_ : numpy.ndarray
        ``[0, 1]``.
    """

    def __init__(self, *, categorical: Sequence[str] = (), reference: Mapping[str, object] | None = None, alpha: float = 0.05):
        self.categorical = categorical
        self.reference = reference
        self.alpha = alpha

    # -- design matrix ------------------------------------------------------------
    def _learn_levels(self, X: pd.DataFrame) -> dict[str, list]:
        unknown = [c for c in self.categorical if c not in X.columns]
        if unknown:
            raise ValueError(f"categorical={unknown} are not columns of X ({list(X.columns)})")
        levels: dict[str, list] = {}
        for col in X.columns:
            s = X[col]
            is_cat = col in self.categorical or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
            if not is_cat:
                continue
            if isinstance(s.dtype, pd.CategoricalDtype):
                lv = [c for c in s.cat.categories if (s == c).any()]
            else:
                lv = sorted(s.dropna().unique().tolist())
            ref = (self.reference or {}).get(col)
            if ref is not None:
                if ref not in lv:
                    raise ValueError(f"reference level {ref!r} of '{col}' does not occur in the training data (levels {lv})")
                lv = [ref] + [v for v in lv if v != ref]
            if len(lv) < 2:
                raise ValueError(f"categorical variable '{col}' has a single level {lv} in the training data; drop it")
            levels[col] = lv
        unknown_ref = set(self.reference or {}) - set(levels)
        if unknown_ref:
            raise ValueError(f"reference given for {sorted(unknown_ref)}, which are not categorical variables")
        return levels

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for col in self.feature_names_in_:
            s = X[col]
            if s.isna().any():
                raise ValueError(f"'{col}' has missing values; impute them (with a step fitted on the training cohort) first")
            if col in self.categories_:
                lv = self.categories_[col]
                unseen = sorted(set(s.tolist()) - set(lv), key=str)
                if unseen:
                    raise ValueError(f"'{col}' has level(s) {unseen} not seen in training (levels {lv}); recode or merge them")
                for level in lv[1:]:
                    cols[f"{col}[{level}]"] = (s == level).astype(float).to_numpy()
            else:
                values = pd.to_numeric(s, errors="raise").astype(float).to_numpy()
                if not np.isfinite(values).all():
                    raise ValueError(f"'{col}' has infinite values; a variable must be finite (fix the patient table or the Rad-score)")
                cols[col] = values
        return pd.DataFrame(cols, index=X.index)

    def _check_X(self, X: object) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("X must be a pandas DataFrame with named clinical variables and the Rad-score")
        if hasattr(self, "feature_names_in_"):
            missing = [c for c in self.feature_names_in_ if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks the variable(s) {missing} the nomogram was fitted on")
        return X

    # -- fit / predict --------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: object) -> NomogramModel:
        """Fit on the TRAINING cohort.

        Parameters
        ----------
        X : pandas.DataFrame
            Clinical variables and the Rad-score, one row per patient.
        y : array-like of 0/1
            Binary endpoint; a Series is matched to X's rows by patient (index
            label) and must hold exactly X's patients, an array is taken in
            X's row order.

        Returns
        -------
        NomogramModel
        """
        import statsmodels.api as sm
        from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

        X = self._check_X(X)
        y = align_to_index(X.index, y, "y", "X")  # by patient, not by row position
        yv = np.asarray(y).reshape(-1)
        if yv.size != len(X):
            raise ValueError(f"y has {yv.size} values but X has {len(X)} rows")
        if not set(np.unique(yv).tolist()) <= {0, 1} or np.unique(yv).size != 2:
            raise ValueError("y must be a binary 0/1 endpoint with both classes present in the training data")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categories_ = self._learn_levels(X)
        design = self._design(X)
        self.design_columns_ = list(design.columns)
        self.ranges_ = {c: (float(design[c].min()), float(design[c].max())) for c in self.feature_names_in_ if c not in self.categories_}
        exog = pd.concat([pd.Series(1.0, index=design.index, name=_INTERCEPT), design], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                result = sm.Logit(yv.astype(float), exog).fit(method="newton", maxiter=100, disp=0)
            except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError) as exc:
                raise SeparationError(
                    f"the logistic regression has no finite maximum-likelihood estimate ({type(exc).__name__}: {exc}); "
                    "a variable (or level) separates the classes perfectly or variables are collinear: merge sparse "
                    "categories, drop the variable, or use fewer variables"
                ) from exc
        self.result_ = result
        self.params_ = result.params.copy()
        self.bse_ = result.bse.copy()
        self.pvalues_ = result.pvalues.copy()
        ci = result.conf_int(alpha=self.alpha)
        ci.columns = ["lower", "upper"]
        self.conf_int_ = ci
        self.summary_ = pd.DataFrame(
            {
                "coef": self.params_,
                "se": self.bse_,
                "odds_ratio": np.exp(self.params_),
                "or_ci_low": np.exp(ci["lower"]),
                "or_ci_high": np.exp(ci["upper"]),
                "p": self.pvalues_,
            }
        )
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Linear predictor (log-odds) per patient."""
        check_is_fitted(self)
        design = self._design(self._check_X(X))
        return self.params_[_INTERCEPT] + design[self.design_columns_].to_numpy() @ self.params_[self.design_columns_].to_numpy()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of classes 0 and 1, shape (n_patients, 2)."""
        p = _expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class at probability threshold 0.5 (report threshold-free metrics for a nomogram)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # a binary 0/1 endpoint
        tags.input_tags.categorical = True  # categorical variables are dummy-coded
        tags.input_tags.string = True
        return tags


# -- nomogram table --------------------------------------------------------------------
@dataclass(frozen=True)
class NomogramTable:
    """Points scales of a fitted :class:`NomogramModel`.

    Attributes
    ----------
    scales : pandas.DataFrame
        One row per variable: ``variable``, ``kind`` (continuous/categorical),
        ``coef`` (continuous), ``min_value``/``max_value`` (training range of a
        continuous variable), ``zero_value`` (value scoring 0 points),
        ``points_per_unit`` (signed; continuous), ``lp_range`` (spread of the
        variable's contribution) and ``max_points``.
    levels : pandas.DataFrame
        Categorical variables: ``variable``, ``level``, ``coef`` (0 for the
        reference) and ``points``.
    ticks : pandas.DataFrame
        Axis ticks for the figure: ``variable``, ``value`` (label) and ``points``.
    lp_at_zero : float
        Linear predictor at 0 total points.
    lp_per_point : float
        Linear-predictor change per point (``R_max / 100``).
    probability_ticks : pandas.DataFrame
        ``probability`` and the ``total_points`` giving it (within the
        achievable range of total points).
    """

    scales: pd.DataFrame
    levels: pd.DataFrame
    ticks: pd.DataFrame
    lp_at_zero: float
    lp_per_point: float
    probability_ticks: pd.DataFrame

    @property
    def max_total_points(self) -> float:
        """Largest achievable total points (every variable at its maximum)."""
        return float(self.scales["max_points"].sum())

    def points(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per variable and ``total`` for each patient (rows of X)."""
        out = {}
        for row in self.scales.itertuples():
            if row.kind == "continuous":
                out[row.variable] = (X[row.variable].to_numpy(dtype=float) - row.zero_value) * row.points_per_unit
            else:
                lv = self.levels[self.levels["variable"] == row.variable]
                mapping = dict(zip(lv["level"], lv["points"], strict=True))
                unseen = sorted(set(X[row.variable].tolist()) - set(mapping), key=str)
                if unseen:
                    raise ValueError(f"'{row.variable}' has level(s) {unseen} without points (levels {list(mapping)})")
                out[row.variable] = X[row.variable].map(mapping).to_numpy(dtype=float)
        table = pd.DataFrame(out, index=X.index)
        table["total"] = table.sum(axis=1)
        return table

    def linear_predictor(self, total_points: object) -> np.ndarray:
        """Total points -> linear predictor (log-odds)."""
        return self.lp_at_zero + np.asarray(total_points, dtype=float) * self.lp_per_point

    def probability(self, total_points: object) -> np.ndarray:
        """Total points -> predicted probability."""
        return _expit(self.linear_predictor(total_points))


_PROBABILITY_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


#: Tick multiples of :func:`_nice_ticks` (matplotlib's ``MaxNLocator`` default), as a staircase over three decades.
_TICK_STEPS = np.array([1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10])
_TICK_STAIRCASE = np.concatenate([0.1 * _TICK_STEPS[:-1], _TICK_STEPS, [10 * _TICK_STEPS[1]]])


def _nice_ticks(vmin: float, vmax: float, nbins: int) -> np.ndarray:
    """Evenly spaced round tick values covering [vmin, vmax] with at most ``nbins`` intervals inside it.

    The same values as ``matplotlib.ticker.MaxNLocator(nbins=nbins).tick_values(vmin, vmax)`` (default steps
    1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10; ``axes.autolimit_mode`` "data"), computed the same way so they are
    identical to the last bit; here so the table needs no plotting library. The first and last ticks may lie
    just outside the range.
    """
    # matplotlib.transforms._nonsingular(vmin, vmax, expander=1e-13, tiny=1e-14)
    expander, tiny = 1e-13, 1e-14
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        vmin, vmax = -expander, expander
    else:
        vmin, vmax = float(min(vmin, vmax)), float(max(vmin, vmax))
        largest = max(abs(vmin), abs(vmax))
        if largest < (1e6 / tiny) * np.finfo(float).tiny:
            vmin, vmax = -expander, expander
        elif vmax - vmin <= largest * tiny:
            if vmax == 0 and vmin == 0:
                vmin, vmax = -expander, expander
            else:
                vmin -= expander * abs(vmin)
                vmax += expander * abs(vmax)
    # matplotlib.ticker.scale_range(vmin, vmax, nbins)
    dv = abs(vmax - vmin)
    meanv = (vmax + vmin) / 2
    offset = 0 if abs(meanv) / dv < 100 else math.copysign(10 ** (math.log10(abs(meanv)) // 1), meanv)
    scale = 10 ** (math.log10(dv / nbins) // 1)
    # MaxNLocator._raw_ticks: the smallest step >= range / nbins, or smaller ones until at least 2 ticks fall inside.
    lo, hi = vmin - offset, vmax - offset
    steps = _TICK_STAIRCASE * scale
    large = np.flatnonzero(steps >= (hi - lo) / nbins)
    istep = large[0] if large.size else len(steps) - 1
    # Edge tolerance of matplotlib.ticker._Edge_integer: more slop when the offset is large compared to the step.
    def close(ms: float, edge: float, step: float) -> bool:
        tol = min(0.4999, max(1e-10, 10 ** (np.log10(abs(offset) / step) - 12))) if offset else 1e-10
        return abs(ms - edge) < tol

    for step in steps[: istep + 1][::-1]:
        best_vmin = (lo // step) * step
        d, m = divmod(lo - best_vmin, step)
        low = d + 1 if close(m / step, 1, step) else d
        d, m = divmod(hi - best_vmin, step)
        high = d if close(m / step, 0, step) else d + 1
        ticks = np.arange(low, high + 1) * step + best_vmin
        if ((ticks <= hi) & (ticks >= lo)).sum() >= 2:
            break
    return ticks + offset


def nomogram_table(model: NomogramModel, n_ticks: int = 6, probabilities: Sequence[float] = _PROBABILITY_GRID) -> NomogramTable:
    """Points per variable and the total points -> probability mapping of a fitted nomogram.

    Parameters
    ----------
    model : NomogramModel
        Fitted on the training cohort (point scales use its training ranges).
    n_ticks : int, default 6
        Approximate number of value ticks per continuous axis.
    probabilities : sequence of float
        Candidate probability ticks; those reachable within 0..max total
        points are kept.

    Returns
    -------
    NomogramTable
    """
    check_is_fitted(model)
    params = model.params_
    scales, levels, ticks = [], [], []
    for var in model.feature_names_in_:
        if var in model.categories_:
            lv = model.categories_[var]
            coefs = np.array([0.0] + [float(params[f"{var}[{level}]"]) for level in lv[1:]])
            scales.append({"variable": var, "kind": "categorical", "coef": np.nan, "min_value": np.nan, "max_value": np.nan,
                           "zero_value": np.nan, "points_per_unit": np.nan, "lp_min": coefs.min(), "lp_range": coefs.max() - coefs.min()})
            levels += [{"variable": var, "level": level, "coef": c} for level, c in zip(lv, coefs, strict=True)]
        else:
            b = float(params[var])
            lo, hi = model.ranges_[var]
            zero = lo if b >= 0 else hi
            scales.append({"variable": var, "kind": "continuous", "coef": b, "min_value": lo, "max_value": hi,
                           "zero_value": zero, "points_per_unit": np.nan, "lp_min": b * zero, "lp_range": abs(b) * (hi - lo)})
    scales_df = pd.DataFrame(scales)
    r_max = float(scales_df["lp_range"].max())
    if not r_max > 0:
        raise ValueError("every variable has zero effect on the linear predictor over its training range; there is nothing to draw")
    cont = scales_df["kind"] == "continuous"
    scales_df.loc[cont, "points_per_unit"] = 100 * scales_df.loc[cont, "coef"] / r_max
    scales_df["max_points"] = 100 * scales_df["lp_range"] / r_max
    levels_df = pd.DataFrame(levels, columns=["variable", "level", "coef"])
    if len(levels_df):
        lp_min = levels_df["variable"].map(scales_df.set_index("variable")["lp_min"])
        levels_df["points"] = 100 * (levels_df["coef"] - lp_min) / r_max
    else:
        levels_df["points"] = pd.Series(dtype=float)
    lp_at_zero = float(params[_INTERCEPT] + scales_df["lp_min"].sum())
    lp_per_point = r_max / 100

    for row in scales_df.itertuples():
        if row.kind == "continuous":
            values = [v for v in _nice_ticks(row.min_value, row.max_value, n_ticks)
                      if row.min_value - 1e-12 <= v <= row.max_value + 1e-12]
            ticks += [{"variable": row.variable, "value": v, "points": (v - row.zero_value) * row.points_per_unit} for v in values]
        else:
            lv = levels_df[levels_df["variable"] == row.variable]
            ticks += [{"variable": row.variable, "value": level, "points": p} for level, p in zip(lv["level"], lv["points"], strict=True)]
    max_total = float(scales_df["max_points"].sum())
    lp_lo, lp_hi = lp_at_zero, lp_at_zero + max_total * lp_per_point
    prob_rows = []
    for p in probabilities:
        lp = np.log(p / (1 - p))
        if lp_lo <= lp <= lp_hi:
            prob_rows.append({"probability": float(p), "total_points": (lp - lp_at_zero) / lp_per_point})
    return NomogramTable(
        scales=scales_df.drop(columns="lp_min"),
        levels=levels_df.reset_index(drop=True),
        ticks=pd.DataFrame(ticks, columns=["variable", "value", "points"]),
        lp_at_zero=lp_at_zero,
        lp_per_point=lp_per_point,
        probability_ticks=pd.DataFrame(prob_rows, columns=["probability", "total_points"]),
    )
