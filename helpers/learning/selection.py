"""Feature selection for a binary endpoint, as leakage-free scikit-learn transformers.

Every data-driven step is a transformer that learns only from the rows passed
to ``fit`` (training data) and applies that state unchanged in ``transform``,
so a step placed in a scikit-learn/imbalanced-learn ``Pipeline`` is refitted
inside every cross-validation fold. All steps take a pandas DataFrame (one row
per patient, one column per feature) and return a DataFrame with the kept
columns, same index, unchanged values (except :class:`ZScoreScaler`, which
standardises).

Steps, in the order a radiomics study usually chains them:

- :class:`MissingValueImputer`: fills missing values with the training
  median or mean (the study prepends it to every pipeline).
- :class:`ZScoreScaler`: z-score with the training mean and SD; constant and
  missing-value features are dropped or rejected (never silently kept).
- :class:`UnivariateFilter`: per-feature two-sample test against the outcome.
- :class:`CorrelationFilter`: greedy removal of redundant (highly
  correlated) features, keeping the more relevant one of each pair.
- :class:`MRMRSelector`: minimum-redundancy maximum-relevance ranking.
- :class:`LassoSelector`: L1 / elastic-net logistic regression with
  cross-validated lambda (``min`` or 1-SE rule); its coefficients are the
  Rad-score.

:func:`build_selector` composes these from plain data (the study config),
:func:`selection_pathway` tabulates the feature count after every step, and
:func:`radscore_formula`, :func:`radscore` and :func:`radscore_table` report
the final linear model. Its figures (LASSO path, cross-validation curve,
coefficients) are in :mod:`helpers.figures.selection`.

The outcome ``y`` must be binary; its two labels are sorted and the second
(e.g. ``1``, ``True``) is the positive class. With a DataFrame X, a pandas
Series y is matched to X's rows by patient (index label) and must hold exactly
X's patients (otherwise :class:`helpers.errors.InputDataError`); a numpy y is
taken in X's row order (see :mod:`helpers._alignment`).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import f_classif, mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils import ClassifierTags
from sklearn.utils.validation import check_is_fitted

from helpers._alignment import align_to_index
from helpers.errors import ConfigError, InputDataError
from helpers.settings.study import BINARY_STEPS as _BINARY_STEPS
from helpers.settings.study import SURVIVAL_STEPS as _SURVIVAL_STEPS
from helpers.settings.study import binary_only_steps as _binary_only_steps

__all__ = [
    "BINARY_STEPS",
    "STEP_TYPES",
    "SURVIVAL_STEPS",
    "CorrelationFilter",
    "CoxLassoSelector",
    "LassoSelector",
    "MRMRSelector",
    "MissingValueImputer",
    "UnivariateCoxFilter",
    "UnivariateFilter",
    "ZScoreScaler",
    "binary_only_steps",
    "build_selector",
    "cox_log_partial_likelihood",
    "radscore",
    "radscore_formula",
    "radscore_table",
    "selection_pathway",
    "univariate_cox",
]

#: Relative range below which a training feature counts as constant (floating-point round-off).
CONSTANT_RTOL = 1e-12
#: Floor of |r| in the mRMR quotient, as in ``mrmr_selection`` (avoids division by zero).
MRMR_FLOOR = 1e-3

_METADATA_HINT = "pass only numeric feature columns (drop metadata such as 'cohort', e.g. table.drop(columns='cohort'))"


# --------------------------------------------------------------------------- input validation


def _as_frame(est: BaseEstimator, X, *, reset: bool) -> pd.DataFrame:
    """X as a numeric DataFrame; on ``reset`` record the feature names, else check them."""
    if sparse.issparse(X):
        raise TypeError(f"{type(est).__name__}: sparse input is not supported; pass a dense DataFrame (patients x features)")
    if isinstance(X, pd.DataFrame):
        df = X
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"X must be 2-D (patients x features), got shape {arr.shape}; Reshape your data: "
                "X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single patient"
            )
        if np.iscomplexobj(arr):
            raise ValueError(f"{type(est).__name__}: Complex data not supported; features must be real numbers")
        if arr.dtype == object:
            # A positional array has no metadata columns: numbers stored as objects are converted, anything else is an error.
            try:
                arr = arr.astype(float)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"X holds non-numeric values ({exc}): {_METADATA_HINT}") from None
        names = getattr(est, "feature_names_in_", None)
        if not reset and names is not None and len(names) != arr.shape[1]:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(est).__name__} is expecting {len(names)} features as input "
                "(an array's columns are taken in the order seen in fit)"
            )
        if reset or names is None:
            names = [f"x{i}" for i in range(arr.shape[1])]
        df = pd.DataFrame(arr, columns=list(names))
    if reset:
        bad_names = [c for c in df.columns if not isinstance(c, str)]
        if bad_names:
            raise TypeError(f"feature names must be strings, got {bad_names[:5]}")
        dup = df.columns[df.columns.duplicated()].unique().tolist()
        if dup:
            raise ValueError(f"duplicate feature columns {dup[:5]}; every feature name must be unique")
        non_numeric = [
            c
            for c in df.columns
            if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]) or pd.api.types.is_complex_dtype(df[c])
        ]
        if non_numeric:
            raise TypeError(f"non-numeric columns {non_numeric[:5]}: {_METADATA_HINT}")
        if df.shape[1] == 0:
            raise ValueError(
                f"{type(est).__name__} received no features: the previous step kept none (relax its threshold); "
                f"0 feature(s) (shape={df.shape}) while a minimum of 1 is required."
            )
        if df.shape[0] == 0:
            raise ValueError(f"{type(est).__name__} received no rows")
        est.feature_names_in_ = np.asarray(df.columns, dtype=object)
        est.n_features_in_ = df.shape[1]
        return df
    check_is_fitted(est, "feature_names_in_")
    fitted = list(est.feature_names_in_)
    fitted_set, present = set(fitted), set(df.columns)  # sets: thousands of radiomics columns, linear not quadratic
    missing = [c for c in fitted if c not in present]
    extra = [c for c in df.columns if c not in fitted_set]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} fitted feature(s) missing, e.g. {missing[:5]}")
        if extra:
            parts.append(f"{len(extra)} unknown column(s), e.g. {extra[:5]}")
        raise ValueError(f"{type(est).__name__}: columns differ from those seen in fit: {'; '.join(parts)}; {_METADATA_HINT}")
    return df[fitted]


def _require_finite(df: pd.DataFrame, what: str) -> None:
    """Raise naming the features and rows holding NaN or infinite values."""
    values = df.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = df.columns[bad.any(axis=0)].tolist()
        rows = df.index[bad.any(axis=1)].tolist()
        raise ValueError(
            f"{what}: {len(cols)} feature(s) with NaN/infinite values (e.g. {cols[:5]}) in {len(rows)} row(s) (e.g. {rows[:5]}); "
            "impute them with a step fitted on training data, or drop the features with ZScoreScaler(on_nan='drop')"
        )


def _binary_target(y, X: pd.DataFrame, *, labelled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """y as 0/1 integers (second sorted label = 1) and the two labels.

    With ``labelled`` (X was given as a DataFrame) a Series y is matched to X's rows by patient label and
    must hold exactly X's patients (:func:`helpers._alignment.align_to_index`); otherwise y is positional.
    Inside a Pipeline every step returns a DataFrame with the patient index, so each step aligns alike.
    """
    if y is None:
        raise ValueError("this step requires y to be passed, but the target y is None: pass the binary outcome to fit")
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise ValueError(f"y must be one column, got {y.shape[1]}")
        y = y.iloc[:, 0]
    if labelled:
        y = align_to_index(X.index, y, "y", "X")
    arr = np.asarray(y).ravel()
    if arr.dtype.names is not None:
        raise ValueError("y must be binary (a class label), got a survival target (time, event): use the survival steps "
                         "univariate_cox and cox_lasso, or correlation with relevance='order'")
    if arr.shape[0] != X.shape[0]:
        raise ValueError(f"y has {arr.shape[0]} values but X has {X.shape[0]} rows")
    if pd.isna(arr).any():
        raise ValueError(f"y has {int(pd.isna(arr).sum())} missing value(s); drop those patients before fitting")
    classes = np.unique(arr)
    if classes.size != 2:
        only = "; only one class is present" if classes.size == 1 else ""
        raise ValueError(f"y must be binary (two classes), got {classes.size} distinct value(s): {classes[:5].tolist()}{only}")
    return (arr == classes[1]).astype(int), classes


def _min_per_class(y01: np.ndarray, minimum: int, what: str) -> None:
    counts = np.bincount(y01, minlength=2)
    if counts.min() < minimum:
        raise ValueError(f"{what} needs at least {minimum} patients in each class, got {counts.tolist()}")


def _standardise(values: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm, so ``Z.T @ Z[:, j]`` is Pearson r with column j.

    Constant columns become zero: their correlation with anything is defined as 0.
    """
    centred = values - values.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)


def _rank_columns(values: np.ndarray) -> np.ndarray:
    """Average ranks per column (Spearman correlation = Pearson r of these)."""
    return stats.rankdata(values, axis=0)


def _is_constant(values: np.ndarray) -> np.ndarray:
    """Per column: range <= CONSTANT_RTOL x max |value| (equal up to round-off; all-zero counts)."""
    rng = np.ptp(values, axis=0)
    return rng <= CONSTANT_RTOL * np.max(np.abs(values), axis=0)


def _auc(values: np.ndarray, y01: np.ndarray) -> np.ndarray:
    """ROC AUC of every column as a score for the positive class (Mann-Whitney U / n1 n0)."""
    ranks = stats.rankdata(values, axis=0)
    n1 = int(y01.sum())
    n0 = y01.size - n1
    u1 = ranks[y01 == 1].sum(axis=0) - n1 * (n1 + 1) / 2.0
    return u1 / (n1 * n0)


def _univariate_pvalues(values: np.ndarray, y01: np.ndarray, test: str, normality_alpha: float, equal_var: bool):
    """Two-sample p-values per column with the test chosen per column.

    Returns ``(pvalues, test_names, shapiro_p0, shapiro_p1)``. Columns constant
    over all rows get p = 1 and test ``constant``. With ``test="auto"`` a
    column uses the t-test when the Shapiro-Wilk p-value is > ``normality_alpha``
    in both classes, otherwise Mann-Whitney U; a column constant within one
    class counts as non-normal.
    """
    x0, x1 = values[y01 == 0], values[y01 == 1]
    p = values.shape[1]
    pvalues = np.ones(p)
    names = np.empty(p, dtype=object)
    sw0 = np.full(p, np.nan)
    sw1 = np.full(p, np.nan)
    const = _is_constant(values)
    names[const] = "constant"
    t_name = "student_t" if equal_var else "welch_t"
    if test == "auto":
        for sw, xc in ((sw0, x0), (sw1, x1)):
            ok = ~_is_constant(xc)  # Shapiro-Wilk is undefined for a constant sample (scipy returns p = 1 with a warning)
            if ok.any():
                sw[ok] = stats.shapiro(xc[:, ok], axis=0).pvalue
        normal = (sw0 > normality_alpha) & (sw1 > normality_alpha)  # NaN (constant in a class) compares False
        use_t = normal & ~const
    else:
        use_t = np.full(p, test == "ttest") & ~const
    use_u = ~use_t & ~const
    if use_t.any():
        pvalues[use_t] = stats.ttest_ind(x0[:, use_t], x1[:, use_t], axis=0, equal_var=equal_var).pvalue
        names[use_t] = t_name
    if use_u.any():
        pvalues[use_u] = stats.mannwhitneyu(x0[:, use_u], x1[:, use_u], axis=0, alternative="two-sided").pvalue
        names[use_u] = "mann_whitney_u"
    # Constant within both classes but different between them: the t statistic is infinite (p = 0); NaN means no evidence.
    pvalues = np.where(np.isnan(pvalues), 1.0, pvalues)
    return pvalues, names, sw0, sw1


def _check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")


def _check_number(name: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}={value!r} must be a number in {lo}{low}, {high}{hi}")


def _check_int(name: str, value, minimum: int, *, or_none: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (a bool is not), or None with ``or_none``."""
    if or_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r} must be {'None or ' if or_none else ''}an integer >= {minimum}")


def _check_penalty_search(est: BaseEstimator, *, splitter: bool = False) -> None:
    """The parameters of the cross-validated penalty search that :class:`LassoSelector` and :class:`CoxLassoSelector`
    share: ``cv`` (an integer >= 2 or, with ``splitter``, a CV splitter), ``lambda_rule`` and ``min_features``."""
    if splitter and not isinstance(est.cv, int | np.integer):
        if isinstance(est.cv, str) or not hasattr(est.cv, "split"):  # a str has a split() too
            raise ValueError(f"cv={est.cv!r} must be an integer >= 2 or a CV splitter with split(X, y)")
    elif isinstance(est.cv, bool) or not isinstance(est.cv, int | np.integer) or est.cv < 2:
        raise ValueError(f"cv={est.cv!r} must be an integer >= 2" + (" or a CV splitter" if splitter else ""))
    _check_choice("lambda_rule", est.lambda_rule, ("min", "1se"))
    _check_int("min_features", est.min_features, 0)


# --------------------------------------------------------------------------- base class


class _FeatureStep(TransformerMixin, BaseEstimator):
    """Shared transform/get_feature_names_out of the selection steps."""

    _supervised = True

    def _check_params(self) -> None:  # pragma: no cover - overridden
        pass

    def transform(self, X) -> pd.DataFrame:
        """Keep the selected features (values unchanged).

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features_in_)
            Same feature columns as in ``fit`` (any order).

        Returns
        -------
        DataFrame
            The columns of :attr:`selected_features_`, same index.

        Raises
        ------
        ValueError
            When columns differ from those seen in ``fit`` or a selected
            feature holds NaN/infinite values.
        """
        check_is_fitted(self, "selected_features_")
        df = _as_frame(self, X, reset=False)
        out = df[list(self.selected_features_)]
        _require_finite(out, f"{type(self).__name__}.transform")
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output features (the selected ones, in output order)."""
        check_is_fitted(self, "selected_features_")
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features differ from the feature names seen in fit")
        return np.asarray(self.selected_features_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        supervised = self._supervised and getattr(self, "relevance", None) != "order"  # CorrelationFilter(relevance="order") ignores y
        tags.target_tags.required = supervised
        tags.input_tags.allow_nan = False
        if supervised:
            # y is a binary class label. ClassifierTags(multi_class=False) is scikit-learn's only way to state a binary
            # target, so the common estimator checks pass two-class y (these steps are transformers, not classifiers).
            tags.classifier_tags = ClassifierTags(multi_class=False)
        return tags

    def describe(self) -> str:
        """One-line human-readable rule of this step (for the selection pathway)."""
        return type(self).__name__


# --------------------------------------------------------------------------- z-score


class ZScoreScaler(_FeatureStep):
    """Z-score every feature with the training mean and standard deviation.

    ``z = (x - mean) / sd`` with the mean and SD (``ddof``) of the rows passed
    to ``fit``; ``transform`` applies those values unchanged to any data.
    Features that cannot be z-scored are handled explicitly:

    - constant in training (range <= ``CONSTANT_RTOL`` x max |value|):
      dropped with the reason recorded (``on_constant="drop"``, default) or
      rejected with a ValueError naming them (``"raise"``);
    - any NaN/infinite training value (including all-NaN features): rejected
      with a ValueError naming the features and patients (``on_nan="raise"``,
      default) or dropped with the reason recorded (``"drop"``). Imputation is
      deliberately not done here: put an imputer fitted on training data
      before this step if missing values should be kept.

    NaN/infinite values in ``transform`` input always raise (naming features
    and rows), so a missing value never becomes a silent prediction.

    Parameters
    ----------
    on_constant : {"drop", "raise"}
        What to do with features constant in the training data.
    on_nan : {"raise", "drop"}
        What to do with features holding NaN/infinite training values.
    ddof : int
        Delta degrees of freedom of the SD (0 as sklearn's StandardScaler,
        1 as R's ``scale``).

    Attributes
    ----------
    mean_, scale_ : Series
        Training mean and SD of the kept features.
    selected_features_ : list of str
        Kept features, in input order.
    dropped_ : dict
        Dropped feature -> reason.
    feature_names_in_, n_features_in_
        As in scikit-learn.
    """

    _supervised = False

    def __init__(self, *, on_constant: str = "drop", on_nan: str = "raise", ddof: int = 0):
        self.on_constant = on_constant
        self.on_nan = on_nan
        self.ddof = ddof

    def _check_params(self) -> None:
        _check_choice("on_constant", self.on_constant, ("drop", "raise"))
        _check_choice("on_nan", self.on_nan, ("raise", "drop"))
        _check_choice("ddof", self.ddof, (0, 1))

    def fit(self, X, y=None) -> ZScoreScaler:
        """Learn mean and SD per feature from the training rows.

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features)
            Numeric training features.
        y : ignored

        Returns
        -------
        ZScoreScaler
            Fitted.

        Raises
        ------
        ValueError
            With ``on_nan="raise"`` for missing/infinite values, with
            ``on_constant="raise"`` for constant features (names given).
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        values = df.to_numpy(dtype=float)
        finite = np.isfinite(values)
        nan_cols = ~finite.all(axis=0)
        dropped: dict[str, str] = {}
        if nan_cols.any():
            names = df.columns[nan_cols].tolist()
            if self.on_nan == "raise":
                _require_finite(df, "ZScoreScaler.fit")
            n_bad = (~finite).sum(axis=0)
            for name, k in zip(names, n_bad[nan_cols], strict=True):
                dropped[name] = "all values missing" if k == len(df) else f"{int(k)} of {len(df)} training values missing"
        ok = ~nan_cols
        const = np.zeros(values.shape[1], dtype=bool)
        if ok.any():
            const[ok] = _is_constant(values[:, ok])
        if const.any():
            names = df.columns[const].tolist()
            if self.on_constant == "raise":
                raise ValueError(
                    f"ZScoreScaler: {len(names)} feature(s) constant in the training data, e.g. {names[:5]}; "
                    "a z-score is undefined for them: remove them or use on_constant='drop'"
                )
            for name in names:
                dropped[name] = f"constant in training data (value {values[0, df.columns.get_loc(name)]:.6g})"
        keep = ok & ~const
        kept = df.columns[keep].tolist()
        self.mean_ = pd.Series(values[:, keep].mean(axis=0), index=kept, name="mean")
        sd = values[:, keep].std(axis=0, ddof=self.ddof) if len(df) > self.ddof else np.ones(len(kept))
        self.scale_ = pd.Series(sd, index=kept, name="sd")
        self.selected_features_ = kept
        self.dropped_ = {name: dropped[name] for name in df.columns if name in dropped}  # input order
        return self

    def transform(self, X) -> pd.DataFrame:
        """Z-score the kept features with the training mean and SD.

        Raises
        ------
        ValueError
            When a kept feature holds NaN/infinite values (features and rows named).
        """
        check_is_fitted(self, "mean_")
        df = _as_frame(self, X, reset=False)[self.selected_features_]
        _require_finite(df, "ZScoreScaler.transform")
        return (df.astype(float) - self.mean_) / self.scale_

    def inverse_transform(self, Z) -> pd.DataFrame:
        """Back to the original units (kept features only)."""
        check_is_fitted(self, "mean_")
        Z = pd.DataFrame(Z, columns=self.selected_features_) if not isinstance(Z, pd.DataFrame) else Z[self.selected_features_]
        return Z * self.scale_ + self.mean_

    def describe(self) -> str:
        rule = f"z-score with training mean and SD (ddof={self.ddof})"
        if getattr(self, "dropped_", None):
            n_const = sum(r.startswith("constant") for r in self.dropped_.values())
            n_nan = len(self.dropped_) - n_const
            rule += f"; dropped {n_const} constant and {n_nan} incomplete feature(s)"
        return rule


# --------------------------------------------------------------------------- univariate filter


class UnivariateFilter(_FeatureStep):
    """Keep features whose two-sample test against a binary outcome has p < ``p_threshold``.

    Test per feature:

    - ``test="auto"``: Shapiro-Wilk in each outcome class separately; when its
      p-value is > ``normality_alpha`` in *both* classes the t-test is used
      (Welch's unequal-variance t-test with ``equal_var=False``, Student's
      with ``True``), otherwise the two-sided Mann-Whitney U test (scipy
      ``method="auto"``: exact without ties for small samples, else the normal
      approximation with tie and continuity correction). A feature constant
      within a class counts as non-normal.
    - ``test="ttest"`` / ``"mannwhitney"``: that test for every feature.

    A feature constant over all training rows gets p = 1 (test ``constant``).
    With ``correction`` (any :func:`statsmodels.stats.multitest.multipletests`
    method, e.g. ``"fdr_bh"`` for Benjamini-Hochberg) selection uses the
    adjusted p-values. Selection is strict: ``p < p_threshold``.

    Parameters
    ----------
    p_threshold : float
        Keep features with (adjusted) p-value strictly below this.
    test : {"auto", "ttest", "mannwhitney"}
    normality_alpha : float
        Shapiro-Wilk significance level of the ``auto`` rule.
    equal_var : bool
        False: Welch's t-test; True: Student's t-test.
    correction : str or None
        None (no multiplicity correction) or a statsmodels ``multipletests``
        method such as ``"fdr_bh"``.
    min_features : int, default 0
        When fewer features pass the threshold, keep this many with the
        smallest p-values instead (ties: input order), so that a model grid
        block without a univariately significant feature still yields a
        model (whose AUC then shows the lack of signal) instead of an error.
        0 keeps the strict rule.

    Attributes
    ----------
    pvalues_ : Series
        Raw p-value per input feature.
    adjusted_pvalues_ : Series or None
        Adjusted p-values (None without correction).
    tests_ : Series
        Test used per feature: ``welch_t``, ``student_t``, ``mann_whitney_u`` or ``constant``.
    normality_pvalues_ : DataFrame
        Shapiro-Wilk p-values per feature and class (``auto`` only, NaN otherwise).
    selected_features_ : list of str
        Kept features, input order.
    classes_ : ndarray
        The two outcome labels (the second is positive).
    """

    def __init__(
        self,
        *,
        p_threshold: float = 0.05,
        test: str = "auto",
        normality_alpha: float = 0.05,
        equal_var: bool = False,
        correction: str | None = None,
        min_features: int = 0,
    ):
        self.p_threshold = p_threshold
        self.test = test
        self.normality_alpha = normality_alpha
        self.equal_var = equal_var
        self.correction = correction
        self.min_features = min_features

    def _check_params(self) -> None:
        _check_number("p_threshold", self.p_threshold, 0, 1, low_open=True)
        _check_choice("test", self.test, ("auto", "ttest", "mannwhitney"))
        _check_number("normality_alpha", self.normality_alpha, 0, 1, low_open=True, high_open=True)
        _check_choice("equal_var", self.equal_var, (False, True))
        _check_int("min_features", self.min_features, 0)
        if self.correction is not None:
            from statsmodels.stats.multitest import multitest_methods_names

            _check_choice("correction", self.correction, [None, *multitest_methods_names])

    def fit(self, X, y) -> UnivariateFilter:
        """Test every feature against the outcome on the training rows.

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features)
        y : array-like of shape (n_patients,)
            Binary outcome (at least 3 patients per class).

        Returns
        -------
        UnivariateFilter
            Fitted.
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "UnivariateFilter.fit")
        y01, self.classes_ = _binary_target(y, df, labelled=isinstance(X, pd.DataFrame))
        _min_per_class(y01, 3, "UnivariateFilter (Shapiro-Wilk and the two-sample tests)")
        p, names, sw0, sw1 = _univariate_pvalues(df.to_numpy(dtype=float), y01, self.test, self.normality_alpha, self.equal_var)
        cols = df.columns
        self.pvalues_ = pd.Series(p, index=cols, name="p_value")
        self.tests_ = pd.Series(names, index=cols, name="test")
        self.normality_pvalues_ = pd.DataFrame({f"shapiro_p_{self.classes_[0]}": sw0, f"shapiro_p_{self.classes_[1]}": sw1}, index=cols)
        if self.correction is not None:
            from statsmodels.stats.multitest import multipletests

            self.adjusted_pvalues_ = pd.Series(multipletests(p, method=self.correction)[1], index=cols, name="adjusted_p_value")
            used = self.adjusted_pvalues_
        else:
            self.adjusted_pvalues_ = None
            used = self.pvalues_
        keep = (used < self.p_threshold).to_numpy()
        if keep.sum() < self.min_features:
            # Stable order: smallest p first, input order among ties.
            top = np.argsort(used.to_numpy(), kind="stable")[: min(self.min_features, len(cols))]
            keep = np.zeros(len(cols), dtype=bool)
            keep[top] = True
        self.selected_features_ = cols[keep].tolist()
        return self

    def describe(self) -> str:
        test = {
            "auto": f"Shapiro-Wilk p > {self.normality_alpha} in both classes -> {'Student' if self.equal_var else 'Welch'} t-test, else Mann-Whitney U",
            "ttest": f"{'Student' if self.equal_var else 'Welch'} t-test",
            "mannwhitney": "Mann-Whitney U",
        }[self.test]
        adj = f" ({self.correction}-adjusted)" if self.correction else ""
        floor = f"; at least the {self.min_features} smallest p-values" if self.min_features else ""
        return f"univariate p{adj} < {self.p_threshold} ({test}{floor})"


# --------------------------------------------------------------------------- correlation filter


def _relevance_order(values: np.ndarray, y01: np.ndarray | None, relevance: str) -> tuple[np.ndarray, np.ndarray]:
    """Relevance per column and the processing order (most relevant first, ties by column position)."""
    pos = np.arange(values.shape[1])
    if relevance == "univariate_p":
        score = _univariate_pvalues(values, y01, "auto", 0.05, False)[0]
        order = np.lexsort((pos, score))  # ascending p, then position
    elif relevance == "auc":
        score = np.abs(_auc(values, y01) - 0.5)
        order = np.lexsort((pos, -score))
    else:  # "order": the earlier column wins (unsupervised)
        score = pos.astype(float)
        order = pos
    return score, order


class CorrelationFilter(_FeatureStep):
    """Remove redundant features: of every highly correlated pair keep the more relevant one.

    Greedy algorithm (deterministic): rank the features by relevance on the
    training outcome (most relevant first; ties broken by input column
    position, earlier first); walk down the ranking and keep a feature if its
    absolute correlation with *every* already-kept feature is <= ``threshold``,
    otherwise drop it and record the highest-ranked kept feature with
    ``|r| > threshold`` as the reason. Hence no two kept features have
    ``|r| > threshold``, and a dropped feature is never more relevant than
    the feature that made it redundant.

    A feature constant in training has correlation 0 with everything (never
    dropped here; remove constants with :class:`ZScoreScaler`).

    Parameters
    ----------
    threshold : float
        Pairs with ``|r| > threshold`` are redundant.
    method : {"pearson", "spearman"}
        Correlation coefficient.
    relevance : {"univariate_p", "auc", "order"}
        ``univariate_p``: lower p-value of the :class:`UnivariateFilter`
        ``auto`` rule (Shapiro-Wilk at 0.05 -> Welch t / Mann-Whitney U;
        note the two members of a pair may be ranked by p-values of
        different tests); ``auc``: larger ``|AUC - 0.5|`` (one rank-based
        scale for all features; invariant to monotone transforms);
        ``order``: earlier column (unsupervised, ``y`` ignored).

    Attributes
    ----------
    relevance_ : Series
        Relevance score per input feature (p-value, ``|AUC - 0.5|`` or position).
    ranking_ : list of str
        Processing order.
    selected_features_ : list of str
        Kept features, input order.
    dropped_ : dict
        Dropped feature -> the kept feature that made it redundant.
    dropped_correlation_ : dict
        Dropped feature -> its correlation with that kept feature.
    """

    def __init__(self, *, threshold: float = 0.9, method: str = "pearson", relevance: str = "univariate_p"):
        self.threshold = threshold
        self.method = method
        self.relevance = relevance

    def _check_params(self) -> None:
        _check_number("threshold", self.threshold, 0, 1, high_open=False)
        _check_choice("method", self.method, ("pearson", "spearman"))
        _check_choice("relevance", self.relevance, ("univariate_p", "auc", "order"))

    def fit(self, X, y=None) -> CorrelationFilter:
        """Find the redundant features on the training rows.

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features)
        y : array-like of shape (n_patients,)
            Binary outcome (not needed with ``relevance="order"``).

        Returns
        -------
        CorrelationFilter
            Fitted.
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "CorrelationFilter.fit")
        values = df.to_numpy(dtype=float)
        y01 = None
        if self.relevance != "order":
            y01, self.classes_ = _binary_target(y, df, labelled=isinstance(X, pd.DataFrame))
            _min_per_class(y01, 3, "CorrelationFilter relevance")
        score, order = _relevance_order(values, y01, self.relevance)
        Z = _standardise(_rank_columns(values) if self.method == "spearman" else values)
        p = values.shape[1]
        kept = np.zeros(p, dtype=bool)
        undecided = np.ones(p, dtype=bool)
        reason = np.full(p, -1)
        r_reason = np.full(p, np.nan)
        for j in order:
            if not undecided[j]:
                continue
            kept[j] = True
            undecided[j] = False
            # Every undecided feature is ranked below j (processed later): those correlated with j are redundant.
            r = Z.T @ Z[:, j]
            hit = undecided & (np.abs(r) > self.threshold)
            reason[hit] = j
            r_reason[hit] = r[hit]
            undecided[hit] = False
        cols = df.columns
        self.relevance_ = pd.Series(score, index=cols, name=self.relevance)
        self.ranking_ = cols[order].tolist()
        self.selected_features_ = cols[kept].tolist()
        self.dropped_ = {cols[i]: cols[reason[i]] for i in np.flatnonzero(~kept)}
        self.dropped_correlation_ = {cols[i]: float(r_reason[i]) for i in np.flatnonzero(~kept)}
        return self

    def describe(self) -> str:
        return f"|{self.method} r| > {self.threshold}: keep the more relevant feature ({self.relevance}), greedy"


# --------------------------------------------------------------------------- mRMR


class MRMRSelector(_FeatureStep):
    """Minimum-redundancy maximum-relevance ranking (Peng, Long & Ding 2005), top ``k`` kept.

    Forward selection: the first feature is the most relevant; then, with S
    the selected set, each step adds the candidate j maximising

    - ``scheme="MIQ"`` (quotient, default): ``relevance_j / mean_{s in S} max(|r_js|, 0.001)``
    - ``scheme="MID"`` (difference): ``relevance_j - mean_{s in S} |r_js|``

    Relevance: ``"f_test"`` the ANOVA F statistic (sklearn ``f_classif``) or
    ``"mutual_info"`` (sklearn ``mutual_info_classif``, k-NN estimator, seeded
    by ``random_state``). Redundancy: absolute Pearson (or Spearman)
    correlation between features. Peng et al. define both terms with mutual
    information on discretised data; for continuous radiomics features this
    follows Ding & Peng's F-test/correlation variant (FCQ with ``f_test`` +
    MIQ), which is what the ``mrmr_selection`` package implements. The
    difference scheme subtracts quantities on different scales unless
    relevance is mutual information, so prefer MIQ with ``f_test``.

    Only features with relevance > 0 are candidates (an F of 0 or a mutual
    information of 0 means no association), so fewer than ``k`` features are
    returned when fewer are relevant, and all candidates when ``k`` exceeds
    their number. Ties go to the earlier input column. Output columns are in
    selection order.

    Differences from ``mrmr_selection.mrmr_classif`` (0.2.8): none for
    ``f_test`` + ``pearson`` + MIQ except that the package sets the score of
    a candidate whose mean redundancy is exactly 1.0 to 0; here such a perfect
    duplicate keeps ``relevance / 1`` (an exact float equality is not a
    reliable test: remove duplicates with :class:`CorrelationFilter`).

    Parameters
    ----------
    k : int
        Number of features to keep.
    relevance : {"f_test", "mutual_info"}
    redundancy : {"pearson", "spearman"}
    scheme : {"MIQ", "MID"}
    random_state : int
        Seed of the mutual-information estimator.

    Attributes
    ----------
    relevance_ : Series
        Relevance per input feature.
    selected_features_ : list of str
        Selected features in selection order.
    scores_ : Series
        mRMR score of each selected feature when it was selected.
    """

    def __init__(self, *, k: int = 20, relevance: str = "f_test", redundancy: str = "pearson", scheme: str = "MIQ", random_state: int = 0):
        self.k = k
        self.relevance = relevance
        self.redundancy = redundancy
        self.scheme = scheme
        self.random_state = random_state

    def _check_params(self) -> None:
        if not isinstance(self.k, int | np.integer) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k={self.k!r} must be a positive integer")
        _check_choice("relevance", self.relevance, ("f_test", "mutual_info"))
        _check_choice("redundancy", self.redundancy, ("pearson", "spearman"))
        _check_choice("scheme", self.scheme, ("MIQ", "MID"))

    def fit(self, X, y) -> MRMRSelector:
        """Rank the features on the training rows and keep the top ``k``.

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features)
        y : array-like of shape (n_patients,)
            Binary outcome.

        Returns
        -------
        MRMRSelector
            Fitted.
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "MRMRSelector.fit")
        y01, self.classes_ = _binary_target(y, df, labelled=isinstance(X, pd.DataFrame))
        _min_per_class(y01, 2, "MRMRSelector")
        values = df.to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant features: F = 0/0, set to 0 below
            warnings.simplefilter("ignore", UserWarning)
            if self.relevance == "f_test":
                rel = f_classif(values, y01)[0]
            else:
                rel = mutual_info_classif(values, y01, random_state=self.random_state)
        rel = np.nan_to_num(rel, nan=0.0, posinf=np.finfo(float).max)
        Z = _standardise(_rank_columns(values) if self.redundancy == "spearman" else values)
        available = rel > 0
        k = min(int(self.k), int(available.sum()))
        red_sum = np.zeros(values.shape[1])
        chosen: list[int] = []
        scores: list[float] = []
        for step in range(k):
            if step == 0:
                score = rel.copy()
            else:
                mean_red = red_sum / step
                score = rel / mean_red if self.scheme == "MIQ" else rel - mean_red
            score = np.where(available, score, -np.inf)
            j = int(np.argmax(score))  # first maximum: ties go to the earlier column
            chosen.append(j)
            scores.append(float(score[j]))
            available[j] = False
            r = np.abs(Z.T @ Z[:, j])
            red_sum += np.maximum(r, MRMR_FLOOR) if self.scheme == "MIQ" else r
        cols = df.columns
        self.relevance_ = pd.Series(rel, index=cols, name=self.relevance)
        self.selected_features_ = cols[chosen].tolist()
        self.scores_ = pd.Series(scores, index=self.selected_features_, name=f"mrmr_{self.scheme}")
        return self

    def describe(self) -> str:
        return f"mRMR {self.scheme} ({self.relevance} relevance, |{self.redundancy} r| redundancy), top k = {self.k}"


# --------------------------------------------------------------------------- LASSO


class LassoSelector(_FeatureStep):
    """Logistic LASSO / elastic net with stratified k-fold cross-validated lambda.

    Penalised logistic regression in glmnet's parametrisation,
    ``-(1/n) loglik + lambda * (a * ||w||_1 + (1 - a)/2 * ||w||_2^2)`` with
    ``a = 1`` (``penalty="l1"``) or ``a = l1_ratio`` (``"elasticnet"``),
    intercept unpenalised. It is fitted with scikit-learn's
    ``LogisticRegression(solver="saga", C=1 / (lambda * n_fit), l1_ratio=a)``,
    which minimises the same objective times ``C * n_fit``; ``n_fit`` is the
    number of rows of that fit, so a lambda means the same penalty in every
    fold and on the full training data (as in glmnet).

    Lambda path: ``Cs`` values log-spaced from ``lambda_max`` (the smallest
    lambda with all coefficients zero: ``max_j |x_j . (y - mean(y))| / (n a)``,
    ``a`` floored at 0.001) down to ``lambda_max * lambda_min_ratio``
    (default 0.01 when patients < features, else 1e-4, as glmnet). Given a
    sequence instead of an int, ``Cs`` are scikit-learn C values of the full
    training data (lambda = 1 / (C n)). The path is computed on the training
    data; cross-validation uses ``StratifiedKFold(cv, shuffle=True,
    random_state)`` and warm starts along the path in every fold.

    Lambda choice: ``lambda_min`` maximises the mean CV score (ties: the
    larger lambda); the 1-SE rule picks ``lambda_1se``, the largest lambda
    (most regularised) whose mean CV score is >= best mean - SE of the best,
    where SE = SD of the fold scores (ddof=1) / sqrt(folds) (glmnet's rule).
    By construction ``lambda_1se >= lambda_min``.

    Inputs should be standardised (put :class:`ZScoreScaler` first): the
    penalty treats all coefficients alike, and the Rad-score is stated on
    z-scored features. The model at the chosen lambda (refit on all training
    rows, from the path) is :attr:`estimator_`; its coefficients are the
    Rad-score. saga is seeded by ``random_state``, so results are
    deterministic.

    Parameters
    ----------
    penalty : {"l1", "elasticnet"}
    l1_ratio : float
        Elastic-net mixing ``a`` in (0, 1]; ignored for ``"l1"`` (a = 1).
    cv : int or CV splitter
        Folds (stratified, shuffled, seeded) or a splitter with ``split(X, y)``.
    lambda_rule : {"min", "1se"}
    Cs : int or sequence of float
        Length of the lambda path, or explicit C values.
    random_state : int
        Seed of the folds and of saga.
    scoring : {"roc_auc", "neg_log_loss"}
        CV score (higher is better).
    lambda_min_ratio : float or None
        Smallest lambda of the path as a fraction of ``lambda_max``.
    max_iter, tol : int, float
        saga iteration limit and tolerance.
    min_features : int, default 1
        A Rad-score needs features: when the rule's lambda keeps fewer
        non-zero coefficients, the largest lambda of the path that keeps at
        least this many is used instead (recorded in :attr:`lambda_note_` and
        the selection pathway). On small training sets (or inside a
        cross-validation fold) the 1-SE rule can otherwise end at the
        intercept-only model, and the classifier after it would receive no
        feature. ``0`` keeps the rule's lambda whatever it selects.

    Attributes
    ----------
    coef_ : Series
        Coefficient per input feature (zeros included) at the chosen lambda.
    intercept_ : float
    lambda_, lambda_min_, lambda_1se_ : float
        Chosen lambda and the two candidates.
    lambda_note_ : str
        Empty, or why ``lambda_`` is not the rule's lambda (``min_features``).
    C_ : float
        scikit-learn C of the final model (1 / (lambda_ n)).
    cv_results_ : DataFrame
        Per lambda (descending): ``lambda``, ``log_lambda``, ``C``, ``mean``,
        ``se``, ``fold_1..fold_k`` scores and ``n_nonzero`` (full-data fit).
    path_ : DataFrame
        Coefficients along the path (index ``lambda``, columns features).
    selected_features_ : list of str
        Features with a non-zero coefficient, input order.
    estimator_ : LogisticRegression
        The final model (on all input features).
    n_iter_ : int
        saga iterations of the final model (at most ``max_iter``).
    """

    def __init__(
        self,
        *,
        penalty: str = "l1",
        l1_ratio: float = 0.5,
        cv=5,
        lambda_rule: str = "min",
        Cs=50,
        random_state: int = 0,
        scoring: str = "roc_auc",
        lambda_min_ratio: float | None = None,
        max_iter: int = 5000,
        tol: float = 1e-4,
        min_features: int = 1,
    ):
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.cv = cv
        self.lambda_rule = lambda_rule
        self.Cs = Cs
        self.random_state = random_state
        self.scoring = scoring
        self.lambda_min_ratio = lambda_min_ratio
        self.max_iter = max_iter
        self.tol = tol
        self.min_features = min_features

    def _check_params(self) -> None:
        _check_choice("penalty", self.penalty, ("l1", "elasticnet"))
        if self.penalty == "elasticnet":
            _check_number("l1_ratio", self.l1_ratio, 0, 1, low_open=True)
        _check_penalty_search(self, splitter=True)
        if isinstance(self.Cs, int | np.integer) and not isinstance(self.Cs, bool):
            if self.Cs < 2:
                raise ValueError(f"Cs={self.Cs!r}: the lambda path needs at least 2 values")
        else:
            cs = np.asarray(self.Cs, dtype=float) if not isinstance(self.Cs, str) else np.array([np.nan])
            if cs.ndim != 1 or cs.size < 2 or not np.all(np.isfinite(cs) & (cs > 0)):
                raise ValueError(f"Cs={self.Cs!r} must be an int >= 2 or a sequence of at least 2 positive C values")
        _check_choice("scoring", self.scoring, ("roc_auc", "neg_log_loss"))
        if self.lambda_min_ratio is not None:
            _check_number("lambda_min_ratio", self.lambda_min_ratio, 0, 1, low_open=True, high_open=True)

    def _a(self) -> float:
        return 1.0 if self.penalty == "l1" else float(self.l1_ratio)

    def _lambdas(self, values: np.ndarray, y01: np.ndarray) -> np.ndarray:
        n, p = values.shape
        if not isinstance(self.Cs, int | np.integer):
            return np.sort(1.0 / (np.asarray(self.Cs, dtype=float) * n))[::-1]
        lam_max = np.max(np.abs((values - values.mean(axis=0)).T @ (y01 - y01.mean()))) / (n * max(self._a(), 1e-3))
        if lam_max <= 0:
            raise ValueError("LassoSelector: no feature is associated with y at all (lambda_max = 0); check the inputs")
        ratio = self.lambda_min_ratio if self.lambda_min_ratio is not None else (1e-2 if n < p else 1e-4)
        return np.geomspace(lam_max, lam_max * ratio, int(self.Cs))

    def _model(self) -> LogisticRegression:
        return LogisticRegression(
            C=1.0, l1_ratio=self._a(), solver="saga", max_iter=self.max_iter, tol=self.tol, random_state=self.random_state, warm_start=True
        )

    def _path(self, X: pd.DataFrame, y01: np.ndarray, lambdas: np.ndarray, keep_index: int):
        """Warm-started fits along the path on all training rows.

        Returns the coefficients, the index of the kept model (``keep_index``, or the first later index with at
        least ``min_features`` non-zero coefficients when ``keep_index`` has fewer) and that model.
        """
        model = self._model()
        coefs = np.zeros((len(lambdas), X.shape[1]))
        kept, kept_index = None, keep_index
        for i, lam in enumerate(lambdas):
            model.set_params(C=1.0 / (lam * X.shape[0]))
            model.fit(X, y01)  # a DataFrame, so the final model knows its feature names
            coefs[i] = model.coef_[0]
            if i == kept_index:
                kept = copy.deepcopy(model)
                if np.count_nonzero(coefs[i]) < self.min_features and i + 1 < len(lambdas):
                    kept_index = i + 1  # warm starts make the path sequential: keep walking down it
        return coefs, kept_index, kept

    def _score(self, model: LogisticRegression, values, y01) -> float:
        if self.scoring == "roc_auc":
            return float(roc_auc_score(y01, model.decision_function(values)))
        return float(-log_loss(y01, model.predict_proba(values), labels=[0, 1]))

    def fit(self, X, y) -> LassoSelector:
        """Cross-validate lambda on the training rows and fit the final model.

        Parameters
        ----------
        X : DataFrame of shape (n_patients, n_features)
            Standardised training features.
        y : array-like of shape (n_patients,)
            Binary outcome (at least ``cv`` patients per class).

        Returns
        -------
        LassoSelector
            Fitted.
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "LassoSelector.fit")
        y01, self.classes_ = _binary_target(y, df, labelled=isinstance(X, pd.DataFrame))
        values = df.to_numpy(dtype=float)
        if isinstance(self.cv, int | np.integer):
            _min_per_class(y01, int(self.cv), f"LassoSelector with cv={self.cv} stratified folds")
            splitter = StratifiedKFold(n_splits=int(self.cv), shuffle=True, random_state=self.random_state)
        else:
            splitter = self.cv
        lambdas = self._lambdas(values, y01)
        folds = list(splitter.split(values, y01))
        scores = np.zeros((len(lambdas), len(folds)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            for f, (tr, va) in enumerate(folds):
                if np.unique(y01[va]).size < 2 or np.unique(y01[tr]).size < 2:
                    raise ValueError(f"CV fold {f + 1} lacks one outcome class; use stratified folds or fewer folds")
                model = self._model()
                for i, lam in enumerate(lambdas):
                    model.set_params(C=1.0 / (lam * len(tr)))
                    model.fit(values[tr], y01[tr])
                    scores[i, f] = self._score(model, values[va], y01[va])
            mean = scores.mean(axis=1)
            se = scores.std(axis=1, ddof=1) / np.sqrt(len(folds))
            best = int(np.argmax(mean))  # lambdas descend: the first maximum is the larger lambda
            i_1se = int(np.flatnonzero(mean >= mean[best] - se[best])[0])
            chosen = best if self.lambda_rule == "min" else i_1se
            coefs, used, final = self._path(df.astype(float), y01, lambdas, keep_index=chosen)
        n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if n_warn:
            warnings.warn(
                f"LassoSelector: saga did not converge in {n_warn} of {len(lambdas) * (len(folds) + 1)} fits "
                f"(max_iter={self.max_iter}); increase max_iter or lambda_min_ratio",
                ConvergenceWarning,
                stacklevel=2,
            )
        cols = df.columns
        n_nonzero = (coefs != 0).sum(axis=1)
        table = {"lambda": lambdas, "log_lambda": np.log(lambdas), "C": 1.0 / (lambdas * len(df)), "mean": mean, "se": se}
        table.update({f"fold_{f + 1}": scores[:, f] for f in range(len(folds))})
        table["n_nonzero"] = n_nonzero
        self.cv_results_ = pd.DataFrame(table)
        self.path_ = pd.DataFrame(coefs, index=pd.Index(lambdas, name="lambda"), columns=cols)
        self.lambda_min_ = float(lambdas[best])
        self.lambda_1se_ = float(lambdas[i_1se])
        self.lambda_ = float(lambdas[used])
        self.lambda_note_ = ""
        if used != chosen:
            self.lambda_note_ = (f"lambda_{self.lambda_rule} = {lambdas[chosen]:.4g} kept {int(n_nonzero[chosen])} feature(s); the largest "
                                 f"lambda keeping at least {self.min_features} was used")
        self.C_ = 1.0 / (self.lambda_ * len(df))
        self.estimator_ = final
        self.n_iter_ = int(np.max(final.n_iter_))  # saga iterations of the final model
        self.coef_ = pd.Series(final.coef_[0], index=cols, name="coefficient")
        self.intercept_ = float(final.intercept_[0])
        self.selected_features_ = cols[(self.coef_ != 0).to_numpy()].tolist()
        if not self.selected_features_:
            warnings.warn(
                f"LassoSelector: no feature has a non-zero coefficient at lambda_{self.lambda_rule} = {self.lambda_:.4g} "
                "(the cross-validated model is the intercept only); the Rad-score is constant",
                UserWarning,
                stacklevel=2,
            )
        return self

    def decision_function(self, X) -> np.ndarray:
        """Linear predictor ``intercept_ + X @ coef_`` (the Rad-score) per row.

        Parameters
        ----------
        X : DataFrame
            The input features of ``fit`` (standardised the same way).
        """
        check_is_fitted(self, "estimator_")
        df = _as_frame(self, X, reset=False)
        _require_finite(df[self.selected_features_], "LassoSelector.decision_function")
        return self.estimator_.decision_function(df.astype(float))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the final model (columns: ``classes_``)."""
        z = self.decision_function(X)
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p1, p1])

    def describe(self) -> str:
        name = "LASSO" if self.penalty == "l1" else f"elastic net (l1_ratio={self.l1_ratio})"
        folds = f"{self.cv}-fold" if isinstance(self.cv, int | np.integer) else "CV"
        lam = f" = {self.lambda_:.4g}" if hasattr(self, "lambda_") else ""
        note = f" ({self.lambda_note_})" if getattr(self, "lambda_note_", "") else ""
        return f"{name} logistic, {folds} CV ({self.scoring}), lambda_{self.lambda_rule}{lam}{note}, non-zero coefficients"


# --------------------------------------------------------------------------- composition

#: Step names accepted by :func:`build_selector`.
class MissingValueImputer(_FeatureStep):
    """Fill missing feature values with the training median (or mean) of each feature.

    The first step of every study pipeline (the study's missing-data policy):
    the statistic is learned from the rows passed to ``fit`` only, so inside
    cross-validation each fold imputes with its own training rows, and a
    validation or test patient's missing value is filled with the training
    value, never with its own cohort's. A feature with no training value at
    all (possible inside a fold) has no statistic: it is dropped with the
    reason recorded (as scikit-learn's ``SimpleImputer`` drops it). On
    complete data the step changes nothing.

    Parameters
    ----------
    strategy : {"median", "mean"}
        Training statistic filled in (NaN-ignoring; identical to
        ``sklearn.impute.SimpleImputer(strategy=...)``).

    Attributes
    ----------
    statistics_ : Series
        Fill value per kept feature.
    n_missing_fit_ : int
        Missing values filled in the training rows.
    selected_features_ : list of str
    dropped_ : dict
        Feature -> reason (no training value).
    feature_names_in_, n_features_in_
    """

    _supervised = False

    def __init__(self, *, strategy: str = "median"):
        self.strategy = strategy

    def _check_params(self) -> None:
        _check_choice("strategy", self.strategy, ("median", "mean"))

    def fit(self, X, y=None) -> MissingValueImputer:
        """Learn each feature's training statistic (ignoring missing values).

        Raises
        ------
        ValueError
            For infinite values (a missing value is NaN; +-inf is an error upstream, named with its rows).
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        values = df.to_numpy(dtype=float)
        if np.isinf(values).any():
            _require_finite(df.replace([np.nan], 0.0), "MissingValueImputer.fit")
        observed = ~np.isnan(values)
        empty = ~observed.any(axis=0)
        kept = df.columns[~empty].tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are dropped below, not averaged
            stat = np.nanmedian(values, axis=0) if self.strategy == "median" else np.nanmean(values, axis=0)
        self.statistics_ = pd.Series(stat[~empty], index=kept, name=self.strategy)
        self.n_missing_fit_ = int((~observed[:, ~empty]).sum())
        self.selected_features_ = kept
        self.dropped_ = {name: "no training value to impute from" for name in df.columns[empty]}
        return self

    def transform(self, X) -> pd.DataFrame:
        """The kept features with every NaN replaced by its training statistic (other values unchanged)."""
        check_is_fitted(self, "statistics_")
        df = _as_frame(self, X, reset=False)[self.selected_features_]
        if (df.dtypes == np.float64).all():
            # One vectorised fill instead of pandas' per-column ``fillna``: same values bit for bit, and one
            # block instead of one per column (a 16,874-block frame costs 100x more to copy, pickle and hash).
            values = df.to_numpy(dtype=np.float64, copy=True)
            rows, cols = np.nonzero(np.isnan(values))
            if rows.size:
                values[rows, cols] = self.statistics_.to_numpy(dtype=np.float64)[cols]
                df = pd.DataFrame(values, index=df.index, columns=df.columns)
        elif df.isna().to_numpy().any():
            df = df.fillna(self.statistics_)
        _require_finite(df, "MissingValueImputer.transform")
        return df

    def describe(self) -> str:
        rule = f"missing values imputed with the training {self.strategy}"
        if getattr(self, "n_missing_fit_", None) is not None:
            rule += f" ({self.n_missing_fit_} training value{'s' if self.n_missing_fit_ != 1 else ''} imputed)"
        if getattr(self, "dropped_", None):
            rule += f"; dropped {len(self.dropped_)} feature(s) without a training value"
        return rule

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


STEP_TYPES: dict[str, type[_FeatureStep]] = {
    "impute": MissingValueImputer,
    "zscore": ZScoreScaler,
    "univariate": UnivariateFilter,
    "correlation": CorrelationFilter,
    "mrmr": MRMRSelector,
    "lasso": LassoSelector,
}


def build_selector(steps_config: Sequence[Mapping]) -> Pipeline:
    """Compose selection steps from plain data into a scikit-learn Pipeline.

    Parameters
    ----------
    steps_config : list of dict
        In order, each ``{"step": name, **parameters}`` with a name of
        :data:`STEP_TYPES` (``zscore``, ``univariate``, ``correlation``,
        ``mrmr``, ``lasso``) and keyword arguments of that class, e.g.
        ``[{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05},
        {"step": "mrmr", "k": 20}, {"step": "lasso", "lambda_rule": "1se"}]``.

    Returns
    -------
    Pipeline
        Unfitted; step names are the step names (``_2``, ``_3`` for repeats).

    Raises
    ------
    ConfigError
        For an unknown step name, an unknown parameter or an invalid value
        (all problems listed, with the position of the step).
    """
    if isinstance(steps_config, Mapping) or not isinstance(steps_config, Sequence) or isinstance(steps_config, str):
        raise ConfigError("selection steps must be a list of mappings like [{'step': 'zscore'}, {'step': 'lasso'}]")
    if not steps_config:
        raise ConfigError("selection steps are empty: give at least one step")
    problems: list[str] = []
    steps: list[tuple[str, _FeatureStep]] = []
    seen: dict[str, int] = {}
    for pos, entry in enumerate(steps_config, start=1):
        if not isinstance(entry, Mapping) or "step" not in entry:
            problems.append(f"step {pos}: {entry!r} must be a mapping with a 'step' key")
            continue
        name = entry["step"]
        if name not in STEP_TYPES:
            problems.append(f"step {pos}: unknown step {name!r}; choose one of {list(STEP_TYPES)}")
            continue
        cls = STEP_TYPES[name]
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        params = {k: v for k, v in entry.items() if k != "step"}
        unknown = [k for k in params if k not in allowed]
        if unknown:
            problems.append(f"step {pos} ({name}): unknown parameter(s) {unknown}; allowed: {allowed}")
            continue
        est = cls(**params)
        try:
            est._check_params()
        except ValueError as exc:
            problems.append(f"step {pos} ({name}): {exc}")
            continue
        seen[name] = seen.get(name, 0) + 1
        steps.append((name if seen[name] == 1 else f"{name}_{seen[name]}", est))
    if problems:
        raise ConfigError("invalid selection steps:\n" + "\n".join(f"  - {p}" for p in problems))
    return Pipeline(steps)


def selection_pathway(pipeline) -> pd.DataFrame:
    """Feature count after every step of a fitted selection pipeline.

    Parameters
    ----------
    pipeline : Pipeline
        Fitted sklearn or imblearn Pipeline; samplers and steps without
        ``get_feature_names_out`` are skipped.

    Returns
    -------
    DataFrame
        One row per stage (``0`` = input): ``stage``, ``step``, ``rule``
        (human-readable), ``n_features`` and ``n_removed``. ``attrs["pathway"]``
        holds the counts as text, e.g. ``"3474 -> 195 -> 54 -> 12"``.
    """
    steps = list(pipeline.steps)
    first = next((est for _, est in steps if hasattr(est, "n_features_in_")), None)
    if first is None:
        raise ValueError("the pipeline is not fitted: call fit(X_train, y_train) first")
    rows = [{"stage": 0, "step": "input", "rule": "all features", "n_features": int(first.n_features_in_), "n_removed": 0}]
    for name, est in steps:
        # Samplers (imblearn, fit_resample) change rows, not features: they are no stage.
        if est is None or est == "passthrough" or hasattr(est, "fit_resample") or not hasattr(est, "get_feature_names_out"):
            continue
        n = len(est.get_feature_names_out())
        rule = est.describe() if hasattr(est, "describe") else type(est).__name__
        rows.append({"stage": len(rows), "step": name, "rule": rule, "n_features": n, "n_removed": rows[-1]["n_features"] - n})
    table = pd.DataFrame(rows)
    table.attrs["pathway"] = " -> ".join(str(n) for n in table["n_features"])
    return table


# --------------------------------------------------------------------------- Rad-score


def _lasso_index(pipeline) -> int:
    idx = [i for i, (_, est) in enumerate(pipeline.steps) if isinstance(est, LassoSelector | CoxLassoSelector)]
    if not idx:
        raise ValueError("the pipeline has no LassoSelector (or CoxLassoSelector) step: the Rad-score is its linear predictor")
    check_is_fitted(pipeline.steps[idx[-1]][1], "estimator_")
    return idx[-1]


def _pipeline_features(pipeline, X: pd.DataFrame) -> pd.DataFrame:
    """The columns the pipeline was fitted on (drops metadata such as 'cohort')."""
    first = next(est for _, est in pipeline.steps if hasattr(est, "feature_names_in_"))
    names = list(first.feature_names_in_)
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise ValueError(f"{len(missing)} feature(s) the pipeline was fitted on are missing from X, e.g. {missing[:5]}")
    return X[names]


def radscore_formula(selector_or_coef, intercept: float | None = None, scaler: ZScoreScaler | None = None, decimals: int = 3) -> str:
    """The Rad-score as a readable formula.

    Parameters
    ----------
    selector_or_coef : LassoSelector, Pipeline or Series
        A fitted LassoSelector, a fitted pipeline containing one (its first
        ZScoreScaler is used as ``scaler`` unless given), or coefficients
        indexed by feature name (zeros are left out).
    intercept : float, optional
        Required with a Series; taken from the selector otherwise.
    scaler : ZScoreScaler, optional
        When given, the training mean and SD of every term are stated.
    decimals : int
        Decimals of intercept and coefficients.

    Returns
    -------
    str
        E.g. ``"Rad-score = -0.412 + 0.813 × z(CT_tumour_original_glcm_Idmn) - ..."``
        (terms by decreasing |coefficient|), then, with a scaler,
        ``"where z(f) = (f - mean) / SD with training values: ..."``.
    """
    if isinstance(selector_or_coef, Pipeline) or hasattr(selector_or_coef, "steps"):
        lasso = selector_or_coef.steps[_lasso_index(selector_or_coef)][1]
        if scaler is None:
            scaler = next((est for _, est in selector_or_coef.steps if isinstance(est, ZScoreScaler)), None)
        selector_or_coef = lasso
    cox = isinstance(selector_or_coef, CoxLassoSelector)
    if isinstance(selector_or_coef, LassoSelector | CoxLassoSelector):
        check_is_fitted(selector_or_coef, "coef_")
        coef = selector_or_coef.coef_
        intercept = selector_or_coef.intercept_ if intercept is None else intercept
    elif isinstance(selector_or_coef, pd.Series):
        coef = selector_or_coef
        if intercept is None:
            raise ValueError("intercept is required when coefficients are given as a Series")
    else:
        raise TypeError(f"expected a fitted LassoSelector, a pipeline or a coefficient Series, got {type(selector_or_coef).__name__}")
    coef = coef[coef != 0]
    coef = coef.iloc[np.lexsort((np.arange(len(coef)), -np.abs(coef.to_numpy())))]
    fmt = f"{{:.{decimals}f}}"
    wrap = (lambda n: f"z({n})") if scaler is not None else (lambda n: n)
    text = f"Rad-score = {fmt.format(intercept)}"
    for name, c in coef.items():
        text += f" {'-' if c < 0 else '+'} {fmt.format(abs(c))} × {wrap(name)}"
    if cox:
        # A Cox model has no intercept: the Rad-score is the linear predictor (log relative hazard).
        text = text.replace(f"Rad-score = {fmt.format(intercept)} + ", "Rad-score = ", 1).replace(f"Rad-score = {fmt.format(intercept)} - ", "Rad-score = -", 1)
        text += "\n(Cox linear predictor: log hazard ratio relative to a patient at the training mean of every feature)"
    if scaler is not None:
        check_is_fitted(scaler, "mean_")
        missing = [n for n in coef.index if n not in scaler.mean_.index]
        if missing:
            raise ValueError(f"the scaler has no mean/SD for {missing[:5]}: pass the ZScoreScaler of the same pipeline")
        text += "\nwhere z(f) = (f - mean) / SD with the training mean and SD:"
        for name in coef.index:
            text += f"\n  {name}: mean = {scaler.mean_[name]:.6g}, SD = {scaler.scale_[name]:.6g}"
    return text


def radscore(X: pd.DataFrame, pipeline) -> pd.Series:
    """Rad-score (linear predictor of the final LASSO model) per patient.

    ``intercept + sum(coef * feature after the preceding steps)``, i.e. on
    z-scored features when a ZScoreScaler precedes the LassoSelector.

    Parameters
    ----------
    X : DataFrame
        Patients x features; extra columns (e.g. ``cohort``) are ignored.
    pipeline : Pipeline
        Fitted, containing a LassoSelector (the last one is used).

    Returns
    -------
    Series
        Named ``radscore``, indexed like X.
    """
    i = _lasso_index(pipeline)
    Xf = _pipeline_features(pipeline, X)
    Z = pipeline[:i].transform(Xf) if i > 0 else Xf
    return pd.Series(pipeline.steps[i][1].decision_function(Z), index=X.index, name="radscore")


def radscore_table(table: pd.DataFrame, pipeline, outcome: pd.Series | str | None = None, cohort_column: str = "cohort") -> pd.DataFrame:
    """Rad-score per patient with cohort and outcome.

    Parameters
    ----------
    table : DataFrame
        Wide feature table (index ``patient``, a cohort column, features).
    pipeline : Pipeline
        Fitted selection pipeline with a LassoSelector.
    outcome : Series, str or None
        Outcome per patient (indexed by patient) or the name of a column of ``table``.
    cohort_column : str
        Cohort column of ``table`` (left out when absent).

    Returns
    -------
    DataFrame
        Index ``patient``; columns ``cohort``, ``outcome`` (when given),
        ``radscore`` and ``probability`` (logistic of the Rad-score).
    """
    out = pd.DataFrame(index=table.index)
    if cohort_column in table.columns:
        out["cohort"] = table[cohort_column]
    if outcome is not None:
        values = table[outcome] if isinstance(outcome, str) else outcome
        if not isinstance(values, pd.Series):
            raise InputDataError(f"outcome must be a Series indexed by patient or a column name of table, got {type(values).__name__}")
        missing = table.index.difference(values.index)
        if len(missing):
            raise InputDataError(
                f"outcome missing for {len(missing)} patient(s), e.g. {missing[:5].tolist()}; pass outcome indexed by the same patients as table"
            )
        out["outcome"] = align_to_index(table.index, values, "outcome", "table")  # by patient; extra patients are an error
    score = radscore(table, pipeline)
    out["radscore"] = score
    if isinstance(pipeline.steps[_lasso_index(pipeline)][1], LassoSelector):  # a Cox Rad-score is a log relative hazard, no probability
        out["probability"] = 1.0 / (1.0 + np.exp(-score))
    return out


# --------------------------------------------------------------------------- survival (time-to-event) steps
#
# The survival target travels through a Pipeline like a class label: ``y`` is the structured array of
# :func:`helpers.learning.survival.to_structured` (fields ``event`` bool, ``time`` float; positional, in X's row
# order) or a DataFrame with ``time`` and ``event`` columns indexed by patient (matched to X's rows by label).


def _survival_target(y, X: pd.DataFrame, *, labelled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(time float, event bool) of the rows of X from a structured array or a (time, event) DataFrame."""
    if y is None:
        raise ValueError("this step requires y to be passed, but the target y is None: pass to_structured(time, event) to fit")
    if isinstance(y, pd.DataFrame):
        if not {"time", "event"} <= set(y.columns):
            raise ValueError(f"a DataFrame survival target needs 'time' and 'event' columns, got {list(y.columns)[:5]}")
        if labelled:
            t = align_to_index(X.index, y["time"], "y['time']", "X")
            e = align_to_index(X.index, y["event"], "y['event']", "X")
        else:
            t, e = y["time"], y["event"]
        time, event = np.asarray(t, dtype=float), np.asarray(e)
    else:
        arr = np.asarray(y)
        names = arr.dtype.names
        if names is None or len(names) != 2:
            raise ValueError(
                "this step needs a survival target: pass y = to_structured(time, event) (helpers.learning.survival), "
                f"not {arr.dtype} values; a binary label belongs to the binary steps (univariate, mrmr, lasso)")
        # scikit-survival's layout: first field the event indicator, second the time.
        event, time = arr[names[0]], np.asarray(arr[names[1]], dtype=float)
    time, event = time.ravel(), np.asarray(event).ravel()
    if time.shape[0] != X.shape[0]:
        raise ValueError(f"y has {time.shape[0]} values but X has {X.shape[0]} rows")
    if pd.isna(event).any() or not np.all(np.isfinite(time)) or np.any(time <= 0):
        raise ValueError("survival target: times must be finite and > 0 and events 0/1 without missing values")
    if not set(np.unique(event).tolist()) <= {0, 1}:
        raise ValueError(f"survival target: event must be 0/1 (or bool), got {np.unique(event)[:5].tolist()}")
    event = event.astype(bool)
    if not event.any():
        raise ValueError("survival target: no event in these rows; a Cox model needs at least one observed event")
    return time, event


def _efron_terms(time: np.ndarray, event: np.ndarray):
    """Sorting and tie structure shared by the Cox likelihood computations (Efron's tie correction)."""
    order = np.argsort(time, kind="stable")
    t, e = time[order], event[order]
    ev_times = np.unique(t[e])
    first_at_risk = np.searchsorted(t, ev_times, side="left")  # risk set of an event time: rows first_at_risk..end
    group = np.searchsorted(ev_times, t)  # event-time index of each event row
    d = np.bincount(group[e], minlength=ev_times.size)
    return order, e, first_at_risk, group, d


def univariate_cox(values: np.ndarray, time: np.ndarray, event: np.ndarray, *, max_iter: int = 50, tol: float = 1e-9):
    """One-covariate Cox models of every column at once (Newton-Raphson, Efron ties, as lifelines' CoxPHFitter).

    Returns ``(coef, se, p)``: log hazard ratio per unit of the column, its standard error (inverse observed
    information) and the two-sided Wald p-value. A column without a finite maximum (constant, or separating the
    events so the estimate diverges) gets coef NaN and p = 1.
    """
    p = values.shape[1]
    order, e, start, group, d = _efron_terms(time, event)
    x = values[order] - values.mean(axis=0)  # centring leaves the estimate unchanged and keeps exp() finite
    sx = x.std(axis=0)
    ok = sx > 0
    x = np.divide(x, sx, out=np.zeros_like(x), where=ok)  # fitted on the unit scale, reported per original unit
    xd = np.zeros((d.size, p))
    np.add.at(xd, group[e], x[e])
    beta = np.zeros(p)
    dmax = int(d.max())

    def terms(b):
        w = np.exp(np.clip(x * b, -700, 700))
        s0 = np.cumsum(w[::-1], axis=0)[::-1][start]
        s1 = np.cumsum((w * x)[::-1], axis=0)[::-1][start]
        s2 = np.cumsum((w * x * x)[::-1], axis=0)[::-1][start]
        d0 = np.zeros((d.size, p)); d1 = np.zeros((d.size, p)); d2 = np.zeros((d.size, p))
        np.add.at(d0, group[e], w[e]); np.add.at(d1, group[e], (w * x)[e]); np.add.at(d2, group[e], (w * x * x)[e])
        ll = (xd * b).sum(axis=0)
        score = xd.sum(axis=0).copy()
        info = np.zeros(p)
        for ell in range(dmax):
            m = (ell < d)[:, None]
            f = (ell / np.maximum(d, 1))[:, None]
            a0, a1, a2 = s0 - f * d0, s1 - f * d1, s2 - f * d2
            a0 = np.where(m, a0, 1.0)
            ll -= np.where(m, np.log(a0), 0.0).sum(axis=0)
            score -= np.where(m, a1 / a0, 0.0).sum(axis=0)
            info += np.where(m, a2 / a0 - (a1 / a0) ** 2, 0.0).sum(axis=0)
        return ll, score, info

    ll, score, info = terms(beta)
    converged = np.zeros(p, dtype=bool)
    for _ in range(max_iter):
        step = np.divide(score, info, out=np.zeros(p), where=info > 0)
        new = beta + np.where(converged | ~ok, 0.0, step)
        ll_new, score_new, info_new = terms(new)
        worse = ll_new < ll - 1e-12  # step halving where the likelihood went down
        for _half in range(20):
            if not worse.any():
                break
            new = np.where(worse, (beta + new) / 2, new)
            ll_new, score_new, info_new = terms(new)
            worse = ll_new < ll - 1e-12
        converged |= np.abs(new - beta) < tol * (1 + np.abs(beta))
        beta, ll, score, info = new, ll_new, score_new, info_new
        if converged[ok].all():
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        se = 1.0 / np.sqrt(info)
        z = beta / se
    pvals = 2 * stats.norm.sf(np.abs(z))
    bad = ~ok | ~np.isfinite(pvals) | (np.abs(beta) > 30)  # > 30 SDs per log hazard: a diverging (separated) fit
    coef = np.where(bad, np.nan, beta / np.where(ok, sx, 1.0))
    se = np.where(bad, np.nan, se / np.where(ok, sx, 1.0))
    pvals = np.where(bad, 1.0, pvals)
    return coef, se, pvals


def cox_log_partial_likelihood(eta: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Breslow log partial likelihood of linear predictors ``eta`` (the likelihood CoxnetSurvivalAnalysis maximises)."""
    order = np.argsort(time, kind="stable")
    t, e, h = time[order], event[order].astype(bool), eta[order]
    ev_times = np.unique(t[e])
    start = np.searchsorted(t, ev_times, side="left")
    m = h.max()
    s0 = np.cumsum(np.exp(h - m)[::-1])[::-1][start]
    d = np.bincount(np.searchsorted(ev_times, t[e]), minlength=ev_times.size)
    return float(h[e].sum() - (d * (np.log(s0) + m)).sum())


class UnivariateCoxFilter(_FeatureStep):
    """Keep features whose one-covariate Cox model is associated with survival (training rows only).

    Each feature is fitted alone by a Cox proportional-hazards model (Efron
    ties; the same estimates and Wald p-values as lifelines' ``CoxPHFitter``)
    and its Harrell's C (risk = the feature times the sign of its
    coefficient, i.e. concordance in the fitted direction) is recorded. A
    feature is kept when its p-value is <= ``p_threshold`` (``criterion="p"``)
    or its C-index is >= ``c_threshold`` (``criterion="c_index"``). When fewer
    than ``min_features`` pass, the ``min_features`` best ones (lowest p /
    highest C) are kept instead and the step says so. Kept features are
    returned most relevant first (ascending p, or descending C; ties by input
    position), so a following ``correlation`` step with ``relevance="order"``
    keeps the more relevant feature of each correlated pair.

    Parameters
    ----------
    criterion : {"p", "c_index"}
    p_threshold : float in (0, 1]
    c_threshold : float in [0.5, 1]
    min_features : int >= 0
    max_features : int or None
        Keep at most this many (the best ones).

    Attributes
    ----------
    coef_, se_, pvalues_, cindex_ : Series
        Per input feature: log hazard ratio per unit, its SE, Wald p-value, Harrell's C in the fitted direction.
    n_events_ : int
    note_ : str
        Empty, or why ``min_features`` overrode the threshold.
    selected_features_ : list of str
        Most relevant first.
    """

    def __init__(self, *, criterion: str = "p", p_threshold: float = 0.05, c_threshold: float = 0.6, min_features: int = 1,
                 max_features: int | None = None):
        self.criterion = criterion
        self.p_threshold = p_threshold
        self.c_threshold = c_threshold
        self.min_features = min_features
        self.max_features = max_features

    def _check_params(self) -> None:
        _check_choice("criterion", self.criterion, ("p", "c_index"))
        _check_number("p_threshold", self.p_threshold, 0, 1, low_open=True)
        _check_number("c_threshold", self.c_threshold, 0.5, 1)
        _check_int("min_features", self.min_features, 0)
        _check_int("max_features", self.max_features, 1, or_none=True)

    def fit(self, X, y) -> UnivariateCoxFilter:
        """Fit one Cox model per feature on the training rows.

        Parameters
        ----------
        X : DataFrame (n_patients, n_features)
        y : structured array from ``to_structured(time, event)`` or DataFrame with ``time``/``event``
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "UnivariateCoxFilter.fit")
        time, event = _survival_target(y, df, labelled=isinstance(X, pd.DataFrame))
        values = df.to_numpy(dtype=float)
        coef, se, pvals = univariate_cox(values, time, event)
        cidx = np.full(values.shape[1], 0.5)
        for j in range(values.shape[1]):
            if np.isfinite(coef[j]) and coef[j] != 0:
                cidx[j] = _harrell_c(time, event, values[:, j] * np.sign(coef[j]))
        cols = df.columns
        self.coef_ = pd.Series(coef, index=cols, name="coef")
        self.se_ = pd.Series(se, index=cols, name="se")
        self.pvalues_ = pd.Series(pvals, index=cols, name="p_value")
        self.cindex_ = pd.Series(cidx, index=cols, name="c_index")
        self.n_events_ = int(event.sum())
        pos = np.arange(len(cols))
        if self.criterion == "p":
            order = np.lexsort((pos, pvals))
            passed = pvals <= self.p_threshold
        else:
            order = np.lexsort((pos, -cidx))
            passed = cidx >= self.c_threshold
        keep = [i for i in order if passed[i]]
        self.note_ = ""
        if len(keep) < self.min_features:
            keep = list(order[: min(self.min_features, len(cols))])
            self.note_ = f"{int(passed.sum())} feature(s) passed; the {len(keep)} best were kept (min_features={self.min_features})"
        if self.max_features is not None:
            keep = keep[: self.max_features]
        self.selected_features_ = [cols[i] for i in keep]
        return self

    def describe(self) -> str:
        rule = (f"univariate Cox p <= {self.p_threshold:g}" if self.criterion == "p" else f"univariate Cox C-index >= {self.c_threshold:g}")
        if self.max_features is not None:
            rule += f" (at most {self.max_features})"
        note = f" ({self.note_})" if getattr(self, "note_", "") else ""
        return rule + note

    def __sklearn_tags__(self):
        return _survival_tags(super().__sklearn_tags__())


def _harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (scikit-survival's pair rules: ties in risk count 1/2)."""
    from helpers.learning.survival import _harrell_c_fast  # learning-internal; imported lazily (survival imports lifelines)

    return _harrell_c_fast(time, event, risk)


class CoxLassoSelector(_FeatureStep):
    """Cox LASSO / elastic net (scikit-survival's ``CoxnetSurvivalAnalysis``) with cross-validated penalty.

    The penalised Cox model maximises the Breslow log partial likelihood
    ``/ n`` minus ``alpha * (l1_ratio * ||b||_1 + (1 - l1_ratio)/2 * ||b||_2^2)``
    (glmnet's Cox parametrisation). The alpha path (``n_alphas`` values from
    the smallest alpha with all coefficients zero down to ``alpha_min_ratio``
    times it) is computed on the training rows and reused in every fold of a
    ``StratifiedKFold(cv, shuffle=True, random_state)`` split stratified by
    the event indicator.

    CV score per alpha and fold (higher is better):

    - ``"partial_likelihood"``: the cross-validated partial likelihood of
      Verweij and van Houwelingen (1993), glmnet's ``grouped`` Cox deviance:
      ``l(b_-k; all training rows) - l(b_-k; rows outside fold k)`` with
      ``b_-k`` fitted without fold k (Breslow log partial likelihood);
    - ``"c_index"``: Harrell's C of ``X_fold @ b_-k`` in fold k.

    ``alpha_min_`` maximises the mean score (ties: the larger alpha);
    ``alpha_1se_`` is the largest alpha whose mean is >= best mean - SE of
    the best (SE = SD of fold scores (ddof=1) / sqrt(folds)). When the
    rule's alpha keeps fewer than ``min_features`` non-zero coefficients, the
    largest alpha of the path keeping that many is used (:attr:`alpha_note_`).
    Coefficients are those of the full-training path at the chosen alpha;
    they are the Cox Rad-score (no intercept: a Cox model has none). Put
    :class:`ZScoreScaler` first (the penalty treats coefficients alike).

    Parameters
    ----------
    l1_ratio : float in (0, 1]
        1 = LASSO, < 1 elastic net.
    cv : int >= 2
    lambda_rule : {"min", "1se"}
    scoring : {"partial_likelihood", "c_index"}
    n_alphas : int >= 2
    alpha_min_ratio : float in (0, 1)
    random_state : int
    min_features : int >= 0
    max_iter, tol : Coxnet's coordinate-descent limits.

    Attributes
    ----------
    coef_ : Series
        Per input feature (zeros included), log hazard ratio per input unit.
    intercept_ : float
        0.0 (kept for the Rad-score helpers).
    alpha_, alpha_min_, alpha_1se_ : float
    alpha_note_ : str
    cv_results_ : DataFrame
        Per alpha (descending): ``alpha``, ``log_alpha``, ``mean``, ``se``, ``fold_1..k``, ``n_nonzero``.
    path_ : DataFrame
        Coefficients along the training path (index ``alpha``).
    selected_features_ : list of str
    estimator_ : CoxnetSurvivalAnalysis
        The full-training path model.
    """

    def __init__(self, *, l1_ratio: float = 1.0, cv=5, lambda_rule: str = "1se", scoring: str = "partial_likelihood", n_alphas: int = 50,
                 alpha_min_ratio: float = 0.01, random_state: int = 0, min_features: int = 1, max_iter: int = 100000, tol: float = 1e-7):
        self.l1_ratio = l1_ratio
        self.cv = cv
        self.lambda_rule = lambda_rule
        self.scoring = scoring
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.random_state = random_state
        self.min_features = min_features
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self) -> None:
        _check_number("l1_ratio", self.l1_ratio, 0, 1, low_open=True)
        _check_penalty_search(self)
        _check_choice("scoring", self.scoring, ("partial_likelihood", "c_index"))
        _check_int("n_alphas", self.n_alphas, 2)
        _check_number("alpha_min_ratio", self.alpha_min_ratio, 0, 1, low_open=True, high_open=True)

    def _coxnet(self, alphas=None):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        kw = {"alphas": alphas} if alphas is not None else {"n_alphas": int(self.n_alphas), "alpha_min_ratio": self.alpha_min_ratio}
        return CoxnetSurvivalAnalysis(l1_ratio=float(self.l1_ratio), max_iter=self.max_iter, tol=self.tol, fit_baseline_model=False, **kw)

    @staticmethod
    def _target(time, event):
        out = np.empty(time.size, dtype=[("event", bool), ("time", float)])
        out["event"], out["time"] = event, time
        return out

    def fit(self, X, y) -> CoxLassoSelector:
        """Cross-validate the penalty on the training rows and keep the path's coefficients at the chosen alpha.

        Parameters
        ----------
        X : DataFrame (n_patients, n_features), standardised
        y : structured array from ``to_structured(time, event)`` or DataFrame with ``time``/``event``
        """
        self._check_params()
        df = _as_frame(self, X, reset=True)
        _require_finite(df, "CoxLassoSelector.fit")
        time, event = _survival_target(y, df, labelled=isinstance(X, pd.DataFrame))
        k = int(self.cv)
        if event.sum() < k or (~event).sum() < 1:
            raise ValueError(f"CoxLassoSelector with cv={k} folds stratified by event needs at least {k} events, got {int(event.sum())}")
        values = df.to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            full = self._coxnet().fit(values, self._target(time, event))
        alphas = np.asarray(full.alphas_, dtype=float)
        coefs = np.asarray(full.coef_, dtype=float).T  # (n_alphas, p)
        folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state).split(values, event))
        fold_coefs = []
        for f, (tr, _va) in enumerate(folds):
            if not event[tr].any():
                raise ValueError(f"CV fold {f + 1}: no event among the fitting rows; use fewer folds")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = self._coxnet(alphas).fit(values[tr], self._target(time[tr], event[tr]))
            fold_coefs.append(np.asarray(model.coef_, dtype=float))  # (p, n_alphas fitted)
        # Coxnet stops a path early when the fit saturates: the path is the alphas fitted everywhere.
        n_path = min([alphas.size, *(b.shape[1] for b in fold_coefs)])
        alphas, coefs = alphas[:n_path], coefs[:n_path]
        scores = np.full((n_path, k), np.nan)
        for f, ((tr, va), b) in enumerate(zip(folds, fold_coefs, strict=True)):
            for i in range(n_path):
                if self.scoring == "partial_likelihood":
                    scores[i, f] = (cox_log_partial_likelihood(values @ b[:, i], time, event)
                                    - cox_log_partial_likelihood(values[tr] @ b[:, i], time[tr], event[tr]))
                else:
                    scores[i, f] = _harrell_c(time[va], event[va], values[va] @ b[:, i]) if event[va].any() else np.nan
        mean = np.nanmean(scores, axis=1)
        se = np.nanstd(scores, axis=1, ddof=1) / np.sqrt(np.sum(np.isfinite(scores), axis=1))
        best = int(np.nanargmax(mean))  # alphas descend: the first maximum is the larger alpha
        i_1se = int(np.flatnonzero(mean >= mean[best] - se[best])[0])
        chosen = best if self.lambda_rule == "min" else i_1se
        n_nonzero = (coefs != 0).sum(axis=1)
        used = chosen
        while n_nonzero[used] < self.min_features and used + 1 < alphas.size:
            used += 1
        cols = df.columns
        # ``lambda``/``log_lambda`` repeat alpha under the binary LASSO's names (read by the LASSO figures).
        table = {"alpha": alphas, "log_alpha": np.log(alphas), "lambda": alphas, "log_lambda": np.log(alphas), "mean": mean, "se": se}
        table.update({f"fold_{f + 1}": scores[:, f] for f in range(k)})
        table["n_nonzero"] = n_nonzero
        self.cv_results_ = pd.DataFrame(table)
        self.path_ = pd.DataFrame(coefs, index=pd.Index(alphas, name="alpha"), columns=cols)
        self.alpha_min_, self.alpha_1se_, self.alpha_ = float(alphas[best]), float(alphas[i_1se]), float(alphas[used])
        self.alpha_note_ = ""
        if used != chosen:
            self.alpha_note_ = (f"alpha_{self.lambda_rule} = {alphas[chosen]:.4g} kept {int(n_nonzero[chosen])} feature(s); the largest "
                                f"alpha keeping at least {self.min_features} was used")
        self.estimator_ = full
        self.coef_ = pd.Series(coefs[used], index=cols, name="coefficient")
        self.intercept_ = 0.0
        self.selected_features_ = cols[(self.coef_ != 0).to_numpy()].tolist()
        if not self.selected_features_:
            warnings.warn(f"CoxLassoSelector: no feature has a non-zero coefficient at alpha_{self.lambda_rule} = {self.alpha_:.4g}; "
                          "the Rad-score is constant", UserWarning, stacklevel=2)
        return self

    # The binary LASSO's names, so the lasso figures and Rad-score helpers read both.
    @property
    def lambda_(self) -> float:
        return self.alpha_

    @property
    def lambda_min_(self) -> float:
        return self.alpha_min_

    @property
    def lambda_1se_(self) -> float:
        return self.alpha_1se_

    def decision_function(self, X) -> np.ndarray:
        """Cox linear predictor ``X @ coef_`` (the Rad-score; higher = higher hazard)."""
        check_is_fitted(self, "coef_")
        df = _as_frame(self, X, reset=False)
        _require_finite(df[self.selected_features_], "CoxLassoSelector.decision_function")
        return df.to_numpy(dtype=float) @ self.coef_.to_numpy()

    def describe(self) -> str:
        name = "Cox LASSO" if self.l1_ratio == 1 else f"Cox elastic net (l1_ratio={self.l1_ratio})"
        lam = f" = {self.alpha_:.4g}" if hasattr(self, "alpha_") else ""
        note = f" ({self.alpha_note_})" if getattr(self, "alpha_note_", "") else ""
        return f"{name}, {self.cv}-fold CV ({self.scoring.replace('_', ' ')}), alpha_{self.lambda_rule}{lam}{note}, non-zero coefficients"

    def __sklearn_tags__(self):
        return _survival_tags(super().__sklearn_tags__())


def _survival_tags(tags):
    # y is a survival outcome (structured array), not a class label: no classifier tags.
    tags.classifier_tags = None
    return tags


STEP_TYPES["univariate_cox"] = UnivariateCoxFilter
STEP_TYPES["cox_lasso"] = CoxLassoSelector
# Which configured steps need a binary label is a property of the config (helpers.settings.study), shared with validation.
SURVIVAL_STEPS, BINARY_STEPS, binary_only_steps = _SURVIVAL_STEPS, _BINARY_STEPS, _binary_only_steps
