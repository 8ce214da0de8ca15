"""Feature stability (reproducibility) between readers: ICC, mask perturbation and the ICC filter.

Radiomics studies keep only features that are reproducible between two
segmentations of the same tumour (a second reader, or a perturbed mask when
there is no second reader). This module provides

- :func:`icc_table`: the intraclass correlation coefficient of every feature
  with its confidence interval (McGraw & Wong 1996), vectorised over
  thousands of features, for two or more readers;
- :func:`helpers.imaging.rois.perturbed_mask` (moved there: a mask operation): an erosion or dilation by a ball in millimetres,
  the documented "second reader" when none exists;
- :class:`ICCFilter`: a scikit-learn transformer that keeps the stable
  features, fitted on the ICC of the training patients only;
- :func:`retained_counts`: extracted/retained feature counts per series x ROI;
- :func:`reader_agreement_table`: the interobserver table of semantic or
  clinical reader scores (ICC or Cohen's kappa with 95% CIs).

ICC definitions (n patients, k readers; two-way ANOVA mean squares MSR =
patients, MSC = readers, MSE = residual, MSW = within patients)::

    ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW)                      one-way random, single rater
    ICC(A,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)  two-way, absolute agreement
    ICC(C,1) = (MSR - MSE) / (MSR + (k-1) MSE)                      two-way, consistency
    ICC(1,k) = (MSR - MSW) / MSR
    ICC(A,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)
    ICC(C,k) = (MSR - MSE) / MSR

ICC(A,1) is Shrout & Fleiss' ICC(2,1) (pingouin ``ICC2``), ICC(C,1) is
ICC(3,1) (``ICC3``) and ICC(1,1) is ICC(1,1) (``ICC1``). The confidence
intervals are the exact F-based intervals of McGraw & Wong (1996, Table 7)
for ICC(1,*) and ICC(C,*) and their Satterthwaite approximation for
ICC(A,*) (identical to pingouin's ``intraclass_corr``).

References: Shrout PE, Fleiss JL. Psychol Bull 1979;86:420-428. McGraw KO,
Wong SP. Psychol Methods 1996;1:30-46. Koo TK, Li MY. J Chiropr Med
2016;15:155-163. Fleiss JL, Cohen J, Everitt BS. Psychol Bull 1969;72:323-327.
Landis JR, Koch GG. Biometrics 1977;33:159-174.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from helpers.errors import (
    ReaderMismatchError,  # noqa: F401  (defined in helpers.errors)
    )

__all__ = [
    "ICC_TYPES",
    "ICCFilter",
    "ReaderMismatchError",
    "cohens_kappa",
    "icc_table",
    "reader_agreement_table",
    "retained_counts",
]

#: Canonical ICC names (McGraw & Wong), as used by pingouin.
ICC_TYPES = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)")
_ICC_ALIASES = {
    "ICC(1)": "ICC(1,1)", "ICC1": "ICC(1,1)", "ICC(2,1)": "ICC(A,1)", "ICC2": "ICC(A,1)", "ICC(3,1)": "ICC(C,1)",
    "ICC3": "ICC(C,1)", "ICC(K)": "ICC(1,k)", "ICC1K": "ICC(1,k)", "ICC(2,K)": "ICC(A,k)", "ICC2K": "ICC(A,k)",
    "ICC(3,K)": "ICC(C,k)", "ICC3K": "ICC(C,k)",
}  # fmt: skip
_ICC_COLUMNS = ["icc", "ci_low", "ci_high", "F", "df1", "df2", "pval", "ms_patients", "ms_readers", "ms_error",
                "ms_within", "n_patients", "n_readers", "constant", "icc_type"]  # fmt: skip
_DEFINED_WHEN_CONSTANT = ("df1", "df2", "ms_patients", "ms_readers", "ms_error", "ms_within")
# Features are processed in blocks so memory stays bounded for very wide tables (n x k x block doubles).
_FEATURE_BLOCK = 4096
# A voxel exactly at radius_mm must not flip because of floating-point rounding of the distance.
_DISTANCE_RTOL = 1e-9
_PATIENT_LIST_MAX = 20


# -- ICC core -----------------------------------------------------------------------
def _canonical_icc_type(icc_type: str) -> str:
    if isinstance(icc_type, str):
        if icc_type in ICC_TYPES:
            return icc_type
        key = icc_type.replace(" ", "").upper()
        for name in ICC_TYPES:
            if name.upper() == key:
                return name
        if key in _ICC_ALIASES:
            return _ICC_ALIASES[key]
    raise ValueError(f"unknown icc_type {icc_type!r}; use one of {', '.join(ICC_TYPES)} (or ICC1/ICC2/ICC3[k], ICC(2,1), ICC(3,1))")


def _icc_arrays(Y: np.ndarray, icc_type: str, confidence: float) -> dict[str, np.ndarray]:
    """ICC, CI, F test and mean squares of complete data ``Y`` (patients x readers x features).

    Sums of squares are computed from centred residuals, not by subtraction
    (SST - SSR - SSC), so readers that agree exactly give MSE = 0 exactly.
    """
    n, k, _ = Y.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        Yc = Y - Y.mean(axis=(0, 1))  # centring first keeps precision for large feature values
        grand = Yc.mean(axis=(0, 1))
        rows = Yc.mean(axis=1)  # patients x features
        cols = Yc.mean(axis=0)  # readers x features
        msr = k * ((rows - grand) ** 2).sum(axis=0) / (n - 1)
        msc = n * ((cols - grand) ** 2).sum(axis=0) / (k - 1)
        mse = ((Yc - rows[:, None, :] - cols[None, :, :] + grand) ** 2).sum(axis=(0, 1)) / ((n - 1) * (k - 1))
        msw = ((Yc - rows[:, None, :]) ** 2).sum(axis=(0, 1)) / (n * (k - 1))

        alpha = 1.0 - confidence
        df1, df_w, df_e = n - 1, n * (k - 1), (n - 1) * (k - 1)
        q = 1 - alpha / 2
        if icc_type in ("ICC(1,1)", "ICC(1,k)"):
            F, df2 = msr / msw, df_w
            f_low = F / stats.f.ppf(q, df1, df_w)
            f_up = F * stats.f.ppf(q, df_w, df1)
            if icc_type == "ICC(1,1)":
                icc = (msr - msw) / (msr + (k - 1) * msw)
                low, up = (f_low - 1) / (f_low + k - 1), (f_up - 1) / (f_up + k - 1)
            else:
                icc = (msr - msw) / msr
                low, up = 1 - 1 / f_low, 1 - 1 / f_up
        elif icc_type in ("ICC(C,1)", "ICC(C,k)"):
            F, df2 = msr / mse, df_e
            f_low = F / stats.f.ppf(q, df1, df_e)
            f_up = F * stats.f.ppf(q, df_e, df1)
            if icc_type == "ICC(C,1)":
                icc = (msr - mse) / (msr + (k - 1) * mse)
                low, up = (f_low - 1) / (f_low + k - 1), (f_up - 1) / (f_up + k - 1)
            else:
                icc = (msr - mse) / msr
                low, up = 1 - 1 / f_low, 1 - 1 / f_up
        else:  # ICC(A,1), ICC(A,k): Satterthwaite degrees of freedom (McGraw & Wong 1996, Table 7, case 2A)
            F, df2 = msr / mse, df_e
            icc1 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
            fj = msc / mse
            vn = df_e * (k * icc1 * fj + n * (1 + (k - 1) * icc1) - k * icc1) ** 2
            vd = df1 * k**2 * icc1**2 * fj**2 + (n * (1 + (k - 1) * icc1) - k * icc1) ** 2
            v = vn / vd
            f_up = stats.f.ppf(q, df1, v)
            f_low = stats.f.ppf(q, v, df1)
            low = n * (msr - f_up * mse) / (f_up * (k * msc + (k * n - k - n) * mse) + n * msr)
            up = n * (f_low * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_low * msr)
            if icc_type == "ICC(A,1)":
                icc = icc1
            else:
                icc = (msr - mse) / (msr + (msc - mse) / n)
                # Spearman-Brown step-up of the single-rater bounds equals McGraw & Wong's ICC(A,k) bounds.
                low, up = low * k / (1 + low * (k - 1)), up * k / (1 + up * (k - 1))
        pval = stats.f.sf(F, df1, df2)
    shape = icc.shape
    return {
        "icc": icc, "ci_low": low, "ci_high": up, "F": F, "df1": np.full(shape, float(df1)),
        "df2": np.broadcast_to(np.asarray(df2, dtype=float), shape).copy(), "pval": pval,
        "ms_patients": msr, "ms_readers": msc, "ms_error": mse, "ms_within": msw,
    }  # fmt: skip


def _numeric_columns(df: pd.DataFrame) -> list:
    return [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]


def _short(items: Sequence, limit: int = _PATIENT_LIST_MAX) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f", ... ({len(items)} in total)" if len(items) > limit else "")


def _check_reader_table(df: object, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame indexed by patient, got {type(df).__name__}")
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()].unique()
        raise ReaderMismatchError(f"{name} has duplicate patients: {_short(dup)}; keep one row per patient (index = patient id)")
    return df


def _aligned_readers(readers: Sequence[pd.DataFrame], strict: bool) -> tuple[pd.Index, list]:
    """Shared patients (order of the first table) and shared numeric features (order of the first table)."""
    names = [f"reader{i + 1}" for i in range(len(readers))]
    tables = [_check_reader_table(r, n) for r, n in zip(readers, names, strict=True)]
    patient_sets = [set(t.index) for t in tables]
    feature_sets = [set(_numeric_columns(t)) for t in tables]
    shared_patients = set.intersection(*patient_sets)
    shared_features = set.intersection(*feature_sets)
    if strict:
        problems = []
        for name, ps, fs in zip(names, patient_sets, feature_sets, strict=True):
            if extra := ps - shared_patients:
                problems.append(f"patients only in {name} (missing in another reader): {_short(sorted(map(str, extra)))}")
            if extra := fs - shared_features:
                problems.append(f"features only in {name}: {_short(sorted(map(str, extra)))}")
        if problems:
            raise ReaderMismatchError(
                "the reader tables do not match:\n  - "
                + "\n  - ".join(problems)
                + f"\nfix the tables, or pass strict=False to use the {len(shared_patients)} shared patients and "
                f"{len(shared_features)} shared features"
            )
    patients = pd.Index([p for p in tables[0].index if p in shared_patients], name=tables[0].index.name or "patient")
    features = [c for c in _numeric_columns(tables[0]) if c in shared_features]
    if len(patients) < 2:
        raise ReaderMismatchError(
            f"the reader tables share {len(patients)} patient(s); an ICC needs at least 2 patients read by every reader: "
            "check that the tables are indexed by the same patient ids"
        )
    if not features:
        raise ReaderMismatchError("the reader tables share no numeric feature column; check the column names")
    return patients, features


def icc_table(
    reader1: pd.DataFrame,
    reader2: pd.DataFrame,
    *more_readers: pd.DataFrame,
    icc_type: str = "ICC(A,1)",
    confidence: float = 0.95,
    strict: bool = True,
) -> pd.DataFrame:
    """Intraclass correlation of every feature between readers, with its confidence interval.

    Parameters
    ----------
    reader1, reader2, *more_readers : DataFrame
        Feature tables of the same patients by each reader (or segmentation),
        indexed by patient, e.g. the wide feature table of
        :mod:`helpers.extraction`. Numeric columns are features; other columns
        (``cohort``) are ignored. Any number k >= 2 of readers.
    icc_type : str, default "ICC(A,1)"
        One of :data:`ICC_TYPES` (aliases: ``ICC1``/``ICC(1)``, ``ICC2``/``ICC(2,1)``,
        ``ICC3``/``ICC(3,1)`` and their ``k`` versions); see the module docstring.
    confidence : float, default 0.95
        Level of the two-sided confidence interval.
    strict : bool, default True
        When True, a patient or feature present in only some tables raises
        :class:`ReaderMismatchError` listing them. When False, the shared
        patients and features are used.

    Returns
    -------
    DataFrame
        Indexed by ``feature`` (order of ``reader1``): ``icc``, ``ci_low``,
        ``ci_high``, ``F``, ``df1``, ``df2``, ``pval`` (F test of ICC = 0),
        the mean squares ``ms_patients``, ``ms_readers``, ``ms_error``,
        ``ms_within``, ``n_patients`` (patients with a finite value from every
        reader), ``n_readers``, ``constant`` (True when every value is
        identical: the ICC is undefined and NaN) and ``icc_type``.
        ``attrs["patients"]`` lists the patients used (for the leakage check
        of :class:`ICCFilter`).

    Raises
    ------
    ReaderMismatchError
        When (with ``strict``) patients or features differ between tables, or
        fewer than two patients are shared.

    Notes
    -----
    Missing or non-finite values are dropped per feature (complete patients
    only, as pingouin's ``nan_policy="omit"``); features sharing a pattern of
    missing values are computed together, so the cost stays that of a few
    array operations over all features.
    """
    kind = _canonical_icc_type(icc_type)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    readers = (reader1, reader2, *more_readers)
    patients, features = _aligned_readers(readers, strict)
    k = len(readers)
    Y = np.stack([r.loc[patients, features].to_numpy(dtype=float) for r in readers], axis=1)  # n x k x F
    complete = np.isfinite(Y).all(axis=1)  # n x F
    out = {name: np.full(len(features), np.nan) for name in _ICC_COLUMNS[:-4]}
    n_used = complete.sum(axis=0)
    constant = np.zeros(len(features), dtype=bool)
    # Group features by their missingness pattern: each group is one complete n' x k x F' block.
    patterns, inverse = np.unique(complete.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        cols = np.flatnonzero(inverse.ravel() == g)
        if pattern.sum() < 2:
            continue  # fewer than 2 complete patients: ICC undefined, left NaN
        for start in range(0, len(cols), _FEATURE_BLOCK):
            block = cols[start : start + _FEATURE_BLOCK]
            sub = Y[:, :, block][pattern]
            res = _icc_arrays(sub, kind, confidence)
            flat = sub.reshape(-1, len(block))
            is_const = flat.max(axis=0) == flat.min(axis=0)
            constant[block] = is_const
            for name, values in res.items():
                # All values identical: the ICC is 0/0, reported NaN; the (zero) mean squares and dfs stay as computed.
                out[name][block] = values if name in _DEFINED_WHEN_CONSTANT else np.where(is_const, np.nan, values)
    table = pd.DataFrame(out, index=pd.Index(features, name="feature"))
    table["n_patients"] = n_used.astype(int)
    table["n_readers"] = k
    table["constant"] = constant
    table["icc_type"] = kind
    table.attrs["patients"] = [str(p) for p in patients]
    table.attrs["icc_type"] = kind
    table.attrs["confidence"] = confidence
    return table[_ICC_COLUMNS]


# -- the ICC filter ------------------------------------------------------------------
class ICCFilter(TransformerMixin, BaseEstimator):
    """Keep the features whose inter-reader ICC reaches a threshold, learned from training patients only.

    Parameters
    ----------
    threshold : float, default 0.80
        A feature is kept when its ICC (or lower CI bound) is ``>= threshold``.
        Undefined ICCs (constant features, too few patients) are never kept.
    icc_type : str, default "ICC(A,1)"
        ICC used (see :func:`icc_table`).
    ci_bound : {"point", "lower"}, default "point"
        Filter on the point estimate or on the lower bound of the 95% CI
        (stricter: the feature is stable with 97.5% confidence).
    unscored : {"error", "passthrough", "drop"}, default "error"
        What to do with *numeric* columns of ``X`` that have no ICC (not in
        the ICC table, e.g. a clinical variable, or a feature missing from a
        reader table): raise (listing them), pass them through unchanged, or
        drop them. Non-numeric columns (``cohort``, ``scanner``) are metadata
        and always pass through unchanged, so a later step (e.g.
        :class:`helpers.harmonize.ComBatHarmonizer`) still sees them.

    Attributes
    ----------
    icc_ : DataFrame
        ICC table of the scored columns of ``X`` (see :func:`icc_table`).
    selected_features_ : list of str
        Features kept, in the column order of ``X``.
    training_patients_ : list of str or None
        Patients the ICC was computed on (None when a precomputed table carries no patient list).
    feature_names_in_ : ndarray of str
    n_features_in_ : int

    Notes
    -----
    No leakage: :meth:`fit` computes (or checks) the ICC on the patients of
    ``X`` only, i.e. the training rows of the fold in cross-validation; reader
    rows of other patients are ignored, and a precomputed table whose
    ``attrs["patients"]`` names a patient outside ``X`` is rejected.
    :meth:`transform` only selects columns and never looks at reader data.

    Examples
    --------
    In a pipeline, route the reader tables to ``fit`` (a list, so that
    scikit-learn does not split it by rows; the filter selects the training
    patients itself)::

        pipe = Pipeline([("icc", ICCFilter(threshold=0.8)), ("model", model)])
        cross_validate(pipe, X, y, params={"icc__readers": [reader1, reader2]})
    """

    def __init__(self, *, threshold: float = 0.80, icc_type: str = "ICC(A,1)", ci_bound: str = "point", unscored: str = "error"):
        self.threshold = threshold
        self.icc_type = icc_type
        self.ci_bound = ci_bound
        self.unscored = unscored

    def _validate_params(self) -> str:
        kind = _canonical_icc_type(self.icc_type)
        if self.ci_bound not in ("point", "lower"):
            raise ValueError(f"ci_bound must be 'point' or 'lower', got {self.ci_bound!r}")
        if self.unscored not in ("error", "passthrough", "drop"):
            raise ValueError(f"unscored must be 'error', 'passthrough' or 'drop', got {self.unscored!r}")
        if not isinstance(self.threshold, numbers.Real) or not -1 <= float(self.threshold) <= 1:
            raise ValueError(f"threshold must be a number in [-1, 1] (an ICC), got {self.threshold!r}")
        return kind

    def fit(
        self,
        X: pd.DataFrame,
        y: object = None,
        *,
        icc: pd.DataFrame | None = None,
        readers: Sequence[pd.DataFrame] | None = None,
    ) -> ICCFilter:
        """Learn the stable features from the training patients.

        Parameters
        ----------
        X : DataFrame
            Training feature table, indexed by patient (its rows define the
            training patients).
        y : ignored
        icc : DataFrame, optional
            A precomputed :func:`icc_table` of training patients (index =
            feature, columns ``icc`` and ``ci_low``).
        readers : sequence of DataFrame, optional
            Reader tables (two or more) of any patients; only the patients of
            ``X`` read by every reader are used. Give exactly one of ``icc``
            and ``readers``.

        Returns
        -------
        ICCFilter
            The fitted filter.

        Raises
        ------
        ReaderMismatchError
            When the precomputed table was computed on patients outside ``X``,
            has another ICC type, or fewer than two training patients were read.
        ValueError
            When unscored numeric columns exist with ``unscored="error"``.
        """
        kind = self._validate_params()
        X = _check_frame(X, "X")
        if (icc is None) == (readers is None):
            raise ValueError("pass exactly one of icc= (a precomputed icc_table of training patients) or readers=[reader1, reader2, ...]")
        if readers is not None:
            if isinstance(readers, pd.DataFrame) or len(readers) < 2:
                raise ValueError("readers must be a list of at least two reader tables, e.g. readers=[reader1, reader2]")
            readers = [_check_reader_table(r, f"reader{i + 1}") for i, r in enumerate(readers)]
            train = [p for p in X.index if all(p in r.index for r in readers)]
            if len(train) < 2:
                raise ReaderMismatchError(
                    f"only {len(train)} training patient(s) of X are in every reader table; the ICC needs at least 2: "
                    "check that the reader tables are indexed by the same patient ids as X"
                )
            icc = icc_table(*[r.loc[train] for r in readers], icc_type=kind, strict=False)
        else:
            icc = self._check_precomputed(icc, kind, X)
        needed = "ci_low" if self.ci_bound == "lower" else "icc"
        if needed not in icc.columns:
            raise ValueError(f"the ICC table has no '{needed}' column; compute it with helpers.stability.icc_table")

        numeric = set(_numeric_columns(X))
        scored = [c for c in X.columns if c in icc.index]
        if not scored:
            raise ReaderMismatchError(
                "no column of X has an ICC; the ICC table and X must use the same feature names "
                f"(e.g. X has {_short(list(X.columns)[:3])}, the table {_short(list(icc.index)[:3])})"
            )
        unscored = [c for c in X.columns if c not in icc.index and c in numeric]
        if unscored and self.unscored == "error":
            raise ValueError(
                f"{len(unscored)} numeric column(s) of X have no ICC: {_short(unscored)}; add them to the reader tables, "
                "or set unscored='passthrough' (keep them, e.g. clinical variables) or unscored='drop'"
            )
        value = icc.loc[scored, needed].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            keep = value >= float(self.threshold)  # NaN (undefined ICC) compares False: never kept
        selected = {c for c, k in zip(scored, keep, strict=True) if k}
        if not selected:
            best = np.nanmax(value) if np.isfinite(value).any() else float("nan")
            warnings.warn(
                f"ICCFilter kept no feature: the highest {needed} is {best:.3f} < threshold {self.threshold}; "
                "check the reader tables or lower the threshold",
                UserWarning,
                stacklevel=2,
            )
        passthrough_unscored = self.unscored == "passthrough"
        scored_set = set(scored)
        self.columns_out_ = [
            c for c in X.columns
            if c in selected or (c not in scored_set and (c not in numeric or passthrough_unscored))
        ]  # fmt: skip
        self.icc_ = icc.loc[scored].copy()
        self.selected_features_ = [c for c in X.columns if c in selected]
        self.unscored_columns_ = unscored
        patients = icc.attrs.get("patients")
        self.training_patients_ = list(patients) if patients is not None else None
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def _check_precomputed(self, icc: pd.DataFrame, kind: str, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(icc, pd.DataFrame):
            raise TypeError(f"icc must be a DataFrame from helpers.stability.icc_table, got {type(icc).__name__}")
        if "icc_type" in icc.columns:
            types = set(icc["icc_type"].astype(str))
            if types != {kind}:
                raise ReaderMismatchError(
                    f"the ICC table holds {', '.join(sorted(types))} but the filter uses {kind}; recompute the table with "
                    f"icc_type={kind!r} or set ICCFilter(icc_type=...) to match"
                )
        patients = icc.attrs.get("patients")
        if patients is not None:
            train = {str(p) for p in X.index}
            outside = [p for p in patients if str(p) not in train]
            if outside:
                raise ReaderMismatchError(
                    f"the ICC table was computed with {len(outside)} patient(s) that are not training rows of X: "
                    f"{_short(outside)}; that would leak test patients into feature selection. Compute the table on the "
                    "training patients only, or pass readers=[...] and let fit select them"
                )
        return icc

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Keep the selected features and the pass-through columns (same rows, column order of ``X``).

        Parameters
        ----------
        X : DataFrame
            Any cohort's table with the columns seen in :meth:`fit`.

        Returns
        -------
        DataFrame
            ``X[get_feature_names_out()]`` (a copy).
        """
        check_is_fitted(self, "selected_features_")
        X = _check_frame(X, "X")
        _check_same_columns(X, self.feature_names_in_, type(self).__name__)
        return X.loc[:, self.columns_out_].copy()

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        """Names of the output columns (selected features plus pass-through columns, in input order)."""
        check_is_fitted(self, "selected_features_")
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features must equal feature_names_in_ (the columns seen in fit)")
        return np.asarray(self.columns_out_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # only columns are selected: values of X are never used
        tags.input_tags.string = True  # non-numeric metadata columns pass through
        return tags


def _check_frame(X: object, name: str) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame indexed by patient (the wide feature table), got {type(X).__name__}")
    if X.index.has_duplicates:
        raise ValueError(f"{name} has duplicate patients in its index: {_short(X.index[X.index.duplicated()].unique())}")
    return X


def _check_same_columns(X: pd.DataFrame, seen: np.ndarray, who: str) -> None:
    seen_set, now = set(seen), set(X.columns)
    if seen_set != now:
        missing = [c for c in seen if c not in now]
        extra = [c for c in X.columns if c not in seen_set]
        parts = []
        if missing:
            parts.append(f"missing: {_short(missing)}")
        if extra:
            parts.append(f"not seen in fit: {_short(extra)}")
        raise ValueError(f"{who}: X must have the columns seen in fit ({'; '.join(parts)}); build every cohort's table the same way")


# -- counts per series x ROI -----------------------------------------------------------
def retained_counts(
    icc: pd.DataFrame,
    threshold: float,
    groups: Sequence[tuple[str, str]],
    *,
    ci_bound: str = "point",
) -> pd.DataFrame:
    """Extracted and retained (ICC >= threshold) feature counts per series x ROI.

    Feature names are ``{series}_{roi}_{imageType}_{class}_{feature}``; the
    group of a feature is the (series, ROI) pair whose ``{series}_{roi}_``
    prefix it starts with (the longest when several match), so names holding
    underscores (``MR_T1``, ``ring_5mm``) are parsed correctly.

    Parameters
    ----------
    icc : DataFrame
        An :func:`icc_table` (index = feature).
    threshold : float
        Retention threshold on the ICC (or on its lower CI bound).
    groups : sequence of (series, roi)
        The series x ROI pairs of the study, in display order, e.g.
        ``[(s, r) for s in cfg.series for r in cfg.extraction.rois]``.
    ci_bound : {"point", "lower"}, default "point"

    Returns
    -------
    DataFrame
        One row per group plus ``Total``: ``series``, ``roi``, ``extracted``,
        ``constant`` (undefined ICC), ``retained``, ``retained_percent``.

    Raises
    ------
    ValueError
        When a feature matches no group (the message lists them).
    """
    if ci_bound not in ("point", "lower"):
        raise ValueError(f"ci_bound must be 'point' or 'lower', got {ci_bound!r}")
    groups = [(str(s), str(r)) for s, r in groups]
    if not groups:
        raise ValueError("groups must list the (series, roi) pairs of the study")
    names = pd.Series(icc.index.astype(str), index=icc.index)
    owner = pd.Series(-1, index=icc.index)
    best_len = pd.Series(-1, index=icc.index)
    for i, (s, r) in enumerate(groups):
        prefix = f"{s}_{r}_"
        hit = names.str.startswith(prefix) & (best_len < len(prefix))
        owner[hit], best_len[hit] = i, len(prefix)
    if (owner < 0).any():
        lost = list(names[owner < 0])
        raise ValueError(f"{len(lost)} feature(s) match no (series, roi) prefix: {_short(lost, 5)}; add their series and ROI to `groups`")
    value = icc["ci_low" if ci_bound == "lower" else "icc"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        kept = value >= threshold
    constant = icc["constant"].to_numpy(dtype=bool) if "constant" in icc.columns else np.isnan(value)
    rows = []
    for i, (s, r) in enumerate(groups):
        sel = (owner == i).to_numpy()
        rows.append({"series": s, "roi": r, "extracted": int(sel.sum()), "constant": int((sel & constant).sum()),
                     "retained": int((sel & kept).sum())})  # fmt: skip
    rows.append({"series": "Total", "roi": "", "extracted": len(icc), "constant": int(constant.sum()), "retained": int(kept.sum())})
    table = pd.DataFrame(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["retained_percent"] = np.round(100.0 * table["retained"] / table["extracted"].replace(0, np.nan), 1)
    return table


# -- reader agreement of semantic / clinical scores -------------------------------------------
def cohens_kappa(a: Sequence, b: Sequence, confidence: float = 0.95) -> dict[str, float]:
    """Unweighted Cohen's kappa of two readers with its asymptotic confidence interval.

    kappa = (p_o - p_e) / (1 - p_e). The standard error is the large-sample
    (non-null) one of Fleiss, Cohen & Everitt (1969), as in SAS PROC FREQ and
    statsmodels' ``cohens_kappa``::

        var = [ sum_i p_ii (1 - (p_i. + p_.i)(1 - kappa))^2
                + (1 - kappa)^2 sum_{i != j} p_ij (p_.i + p_j.)^2
                - (kappa - p_e (1 - kappa))^2 ] / (n (1 - p_e)^2)

    and the interval is kappa +/- z_{1-alpha/2} sqrt(var) (not clipped to [-1, 1]).

    Parameters
    ----------
    a, b : sequence
        Category labels of the same subjects by each reader (no missing values).
    confidence : float, default 0.95

    Returns
    -------
    dict
        ``kappa``, ``se``, ``ci_low``, ``ci_high``, ``n``; NaN when the
        chance agreement is 1 (both readers used a single category).
    """
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("a and b must be 1-D sequences of the same length")
    n = len(a)
    cats = pd.unique(np.concatenate([a, b]))
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    np.add.at(table, (np.array([index[x] for x in a], dtype=int), np.array([index[x] for x in b], dtype=int)), 1)
    p = table / n
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    po, pe = np.trace(p), float(pr @ pc)
    if n == 0 or np.isclose(pe, 1.0):
        return {"kappa": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n}
    kappa = (po - pe) / (1 - pe)
    term_a = (np.diag(p) * (1 - (pr + pc) * (1 - kappa)) ** 2).sum()
    off = p * (pc[:, None] + pr[None, :]) ** 2
    np.fill_diagonal(off, 0.0)
    term_b = (1 - kappa) ** 2 * off.sum()
    term_c = (kappa - pe * (1 - kappa)) ** 2
    var = max(term_a + term_b - term_c, 0.0) / ((1 - pe) ** 2 * n)
    se = math.sqrt(var)
    z = stats.norm.ppf(0.5 + confidence / 2)
    return {"kappa": float(kappa), "se": se, "ci_low": kappa - z * se, "ci_high": kappa + z * se, "n": n}


def _icc_agreement(v: float) -> str:
    # Koo & Li (2016)
    if not np.isfinite(v):
        return "undefined"
    return "poor" if v < 0.5 else "moderate" if v < 0.75 else "good" if v < 0.9 else "excellent"


def _kappa_agreement(v: float) -> str:
    # Landis & Koch (1977)
    if not np.isfinite(v):
        return "undefined"
    if v < 0:
        return "poor"
    return "slight" if v <= 0.2 else "fair" if v <= 0.4 else "moderate" if v <= 0.6 else "substantial" if v <= 0.8 else "almost perfect"


def reader_agreement_table(
    reader1: pd.DataFrame,
    reader2: pd.DataFrame,
    variables: Sequence[str],
    kinds: Mapping[str, str] | Sequence[str],
    *,
    icc_type: str = "ICC(A,1)",
    confidence: float = 0.95,
    strict: bool = True,
) -> pd.DataFrame:
    """Interobserver agreement of semantic/clinical reader scores (the seed studies' interobserver table).

    Ordinal and continuous variables: ICC (``icc_type``, default ICC(A,1))
    with its F-based CI (:func:`icc_table`). Nominal variables: unweighted
    Cohen's kappa with the Fleiss-Cohen-Everitt asymptotic CI
    (:func:`cohens_kappa`). Patients missing a score from either reader are
    dropped for that variable (``n_patients`` says how many remain).

    Parameters
    ----------
    reader1, reader2 : DataFrame
        Scores by each reader, indexed by patient, one column per variable.
    variables : sequence of str
        Columns to compare, in display order.
    kinds : mapping or sequence
        Kind of each variable: ``"continuous"``, ``"ordinal"`` or
        ``"nominal"`` (a mapping variable -> kind, or a sequence parallel to
        ``variables``). Ordinal scores must be numeric codes or an ordered
        pandas Categorical (its codes are used).
    icc_type : str, default "ICC(A,1)"
    confidence : float, default 0.95
    strict : bool, default True
        Raise :class:`ReaderMismatchError` when the readers scored different patients.

    Returns
    -------
    DataFrame
        One row per variable: ``variable``, ``kind``, ``statistic``
        (e.g. ``ICC(A,1)`` or ``Cohen's kappa``), ``estimate``, ``ci_low``,
        ``ci_high``, ``n_patients``, ``agreement`` (Koo & Li 2016 for ICC,
        Landis & Koch 1977 for kappa) and ``text`` (``"0.85 (0.78-0.91)"``).
    """
    kind_icc = _canonical_icc_type(icc_type)
    r1, r2 = _check_reader_table(reader1, "reader1"), _check_reader_table(reader2, "reader2")
    variables = list(variables)
    kind_map = dict(kinds) if isinstance(kinds, Mapping) else dict(zip(variables, list(kinds), strict=True))
    only1, only2 = set(r1.index) - set(r2.index), set(r2.index) - set(r1.index)
    if strict and (only1 or only2):
        raise ReaderMismatchError(
            f"the readers scored different patients (only reader1: {_short(sorted(map(str, only1))) or 'none'}; only reader2: "
            f"{_short(sorted(map(str, only2))) or 'none'}); fix the tables or pass strict=False to use the shared patients"
        )
    r2_patients = set(r2.index)
    patients = [p for p in r1.index if p in r2_patients]
    rows = []
    for var in variables:
        for name, t in (("reader1", r1), ("reader2", r2)):
            if var not in t.columns:
                raise KeyError(f"variable {var!r} is not a column of {name}; columns: {_short(list(t.columns), 10)}")
        kind = kind_map.get(var)
        if kind not in ("continuous", "ordinal", "nominal"):
            raise ValueError(f"kind of variable {var!r} must be 'continuous', 'ordinal' or 'nominal', got {kind!r}")
        a, b = r1.loc[patients, var], r2.loc[patients, var]
        ok = a.notna().to_numpy() & b.notna().to_numpy()
        a, b = a[ok], b[ok]
        if kind == "nominal":
            res = cohens_kappa(a.to_numpy(), b.to_numpy(), confidence)
            est, low, high, stat, label = res["kappa"], res["ci_low"], res["ci_high"], "Cohen's kappa", _kappa_agreement(res["kappa"])
        else:
            va, vb = _scores_as_numbers(a, var), _scores_as_numbers(b, var)
            if len(va) < 2:
                est = low = high = np.nan
            else:
                Y = np.stack([va, vb], axis=1)[:, :, None]
                res = _icc_arrays(Y, kind_icc, confidence)
                const = Y.max() == Y.min()
                est, low, high = (
                    (np.nan, np.nan, np.nan) if const else (float(res["icc"][0]), float(res["ci_low"][0]), float(res["ci_high"][0]))
                )
            stat, label = kind_icc, _icc_agreement(est)
        text = f"{est:.2f} ({low:.2f}-{high:.2f})" if np.isfinite(est) else "n/a"
        rows.append({"variable": var, "kind": kind, "statistic": stat, "estimate": est, "ci_low": low, "ci_high": high,
                     "n_patients": int(ok.sum()), "agreement": label, "text": text})  # fmt: skip
    return pd.DataFrame(rows, columns=["variable", "kind", "statistic", "estimate", "ci_low", "ci_high", "n_patients", "agreement", "text"])


def _scores_as_numbers(s: pd.Series, var: str) -> np.ndarray:
    if isinstance(s.dtype, pd.CategoricalDtype):
        if not s.dtype.ordered:
            raise ValueError(f"variable {var!r} is an unordered Categorical; declare it 'nominal' or make it ordered")
        return s.cat.codes.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise ValueError(f"variable {var!r} is not numeric; ordinal scores need numeric codes (or an ordered Categorical), "
                         "or declare it 'nominal'")  # fmt: skip
    return s.to_numpy(dtype=float)
