"""ComBat harmonisation of radiomic features across scanners or centres.

:class:`ComBatHarmonizer` is the empirical-Bayes ComBat of Johnson, Li &
Rabinovic (Biostatistics 2007;8:118-127), as used for radiomics by Orlhac
et al. (J Nucl Med 2018;59:1321-1328), written as a scikit-learn transformer:
``fit`` learns the location/scale parameters on training patients only and
``transform`` applies them, unchanged, to any cohort (the
``neuroCombatFromTraining`` rule of neuroCombat 0.2.12, with whose
``neuroCombat`` estimates it agrees to better than 1e-6; see the tests).

Model, for feature g, patient j of batch i (a scanner or centre)::

    x_ijg = alpha_g + Z_j beta_g + gamma_ig + delta_ig * eps_ijg

Z are the covariates whose (biological) effect must be preserved. ``fit``:

1. ordinary least squares of every feature on [batch indicators, covariates]
   (categorical covariates one-hot with the first sorted level dropped,
   continuous ones as is);
2. grand mean alpha_g = sum_i (n_i / n) B_ig, pooled variance sigma_g^2 = mean
   of the squared OLS residuals, standardised data
   z_ijg = (x_ijg - alpha_g - Z_j beta_g) / sigma_g;
3. per batch, gamma_hat (mean of z) and delta_hat (variance of z, ddof 1);
4. ``eb=True``: shrink them towards their across-feature distribution, a
   normal prior for gamma (mean gamma_bar, variance tau^2) and an
   inverse-gamma prior for delta (moment estimates a, b); ``parametric=True``
   iterates the posterior means until the relative change is below 1e-4,
   ``parametric=False`` uses the non-parametric (leave-one-feature-out,
   likelihood-weighted) estimate. ``eb=False`` keeps gamma_hat, delta_hat.

``transform`` (every cohort, training included)::

    x* = (x - m_g - sigma_g gamma*_ig) / sqrt(delta*_ig) + m_g,   m_g = alpha_g + mean_train(Z beta_g)

Covariates and labels at transform time: the covariate effect is removed
and added back with the *training-average* covariate term (as
``neuroCombatFromTraining``), so no covariate, and in particular no outcome
label, of the transformed patients is needed or used. A patient's own
deviation due to its covariates stays in its data (scaled by
1/sqrt(delta*) like every within-batch deviation). Training rows are
transformed by the same rule (``fit_transform(X, y) == fit(X, y).transform(X)``),
so a model is trained on data harmonised exactly as the test data will be;
this differs from neuroCombat's in-sample output only by
(Z_j beta - mean Z beta)(1 - 1/sqrt(delta*)), and not at all without covariates.

Differences from neuroCombat: float64 throughout (neuroCombat casts data
frames and continuous covariates to float32); features with zero pooled
residual variance in the training data are not harmonised but returned
unchanged and left out of the priors (neuroCombat replaces their variance
by a constant); the non-parametric estimate is computed in log space (same
values, no underflow).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from helpers.errors import (
    UnseenBatchError,  # noqa: F401  (defined in helpers.errors)
)

__all__ = ["ComBatHarmonizer", "UnseenBatchError"]

_LIST_MAX = 10
# Same stopping rule as sva/neuroCombat (relative change of the posterior estimates), plus a guard.
_EB_CONV = 1e-4
_EB_MAX_ITER = 10_000
# A residual SD below this fraction of the feature's magnitude is rounding noise: the feature is constant.
_CONSTANT_RTOL = 1e-10
# Rows of the leave-one-feature-out likelihood matrix computed at once (memory: block x features doubles).
_NONPARAM_BLOCK = 1024


def _short(items: Sequence, limit: int = _LIST_MAX) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f", ... ({len(items)} in total)" if len(items) > limit else "")


def _sorted_levels(values: pd.Series) -> list:
    levels = list(pd.unique(values))
    try:
        return sorted(levels)
    except TypeError:  # mixed types (e.g. 1 and "A"): any fixed order will do
        return sorted(levels, key=str)


def _is_continuous(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


class ComBatHarmonizer(TransformerMixin, BaseEstimator):
    """ComBat harmonisation by batch (scanner or centre), fitted on training patients only.

    The module docstring gives the model, the estimates and how new data are
    adjusted.

    Parameters
    ----------
    batch_col : str, default "scanner"
        Column of ``X`` holding the batch of each patient (scanner model,
        centre, ...). Acquisition metadata are known for every cohort, so the
        batch travels with the features; the column is passed through unchanged.
    covariates : mapping, sequence of str or None, default None
        Covariates whose effect is preserved. A mapping name -> ``"categorical"``
        or ``"continuous"``, or names whose kind is inferred (numeric ->
        continuous, anything else -> categorical; a 0/1 variable gives the same
        design either way). A name is looked up as a column of ``X`` (e.g.
        ``age``, passed through unchanged) or, for the outcome, in ``y`` given
        to :meth:`fit`: use the name ``"y"`` (or the name of the ``y`` Series).
        Do not put the outcome in ``X``: it would be needed for test patients.
        Covariates are used in :meth:`fit` only.
    features : sequence of str, optional
        Columns to harmonise; default every numeric column except ``batch_col``
        and the covariate columns of ``X``. Other columns pass through unchanged.
    parametric : bool, default True
        Parametric (True) or non-parametric empirical-Bayes priors.
    eb : bool, default True
        Shrink the batch estimates with empirical Bayes; False uses the per-batch
        location/scale estimates as they are.
    unseen_batch : {"error", "reference"}, default "error"
        Policy for a batch met by :meth:`transform` without training patients:
        ``"error"`` raises :class:`UnseenBatchError` naming the batch and its
        patients; ``"reference"`` treats it as the pooled training reference
        (gamma* = 0, delta* = 1: its values are returned unchanged, i.e. assumed
        already on the pooled training scale) and warns naming the batch.

    Attributes
    ----------
    batches_ : ndarray
        Training batches (sorted).
    batch_sizes_ : Series
        Training patients per batch.
    features_ : list of str
        Harmonised columns.
    constant_features_ : list of str
        Columns with zero pooled residual variance in training: returned unchanged.
    grand_mean_, var_pooled_, covariate_mean_effect_ : Series
        alpha_g, sigma_g^2 and mean_train(Z beta_g) per feature.
    beta_ : DataFrame
        Covariate coefficients (design column x feature).
    gamma_hat_, delta_hat_, gamma_star_, delta_star_ : DataFrame
        Batch x feature location/scale estimates before and after empirical Bayes.
    gamma_bar_, tau2_, a_prior_, b_prior_ : Series
        Prior hyper-parameters per batch (NaN without ``eb``).
    n_iter_ : Series
        Iterations of the parametric empirical-Bayes solver per batch.
    design_columns_ : list of str
    feature_names_in_ : ndarray
    n_features_in_ : int

    Examples
    --------
    >>> combat = ComBatHarmonizer(batch_col="scanner", covariates={"y": "categorical", "age": "continuous"})
    >>> train_h = combat.fit_transform(X_train, y_train)   # doctest: +SKIP
    >>> test_h = combat.transform(X_test)                  # no test label needed  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        batch_col: str = "scanner",
        covariates: Mapping[str, str] | Sequence[str] | None = None,
        features: Sequence[str] | None = None,
        parametric: bool = True,
        eb: bool = True,
        unseen_batch: str = "error",
    ):
        self.batch_col = batch_col
        self.covariates = covariates
        self.features = features
        self.parametric = parametric
        self.eb = eb
        self.unseen_batch = unseen_batch

    # -- fit -----------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: object = None) -> ComBatHarmonizer:
        """Learn the ComBat parameters from the training patients in ``X``.

        Parameters
        ----------
        X : DataFrame
            Training table indexed by patient with ``batch_col`` and the features.
        y : Series or array-like, optional
            Target; used only when a covariate is named ``"y"`` (or the Series' name).
            Its values are taken in the row order of ``X`` (positional, as in scikit-learn).

        Returns
        -------
        ComBatHarmonizer
            The fitted harmonizer.

        Raises
        ------
        ValueError
            Missing batch column or covariate, missing/non-finite training values,
            a batch with fewer than two training patients, a single batch, or
            covariates confounded with batch (the message names them and the fix).
        """
        if self.unseen_batch not in ("error", "reference"):
            raise ValueError(f"unseen_batch must be 'error' or 'reference', got {self.unseen_batch!r}")
        X = _check_frame(X)
        batch = self._batch(X, "fit")
        cov, kinds = self._covariate_frame(X, y)
        features = self._feature_columns(X, [c for c in cov.columns if c in X.columns])
        Y = X[features].to_numpy(dtype=float)
        bad = np.isinf(Y)
        if bad.any():
            cols = [features[i] for i in np.flatnonzero(bad.any(axis=0))]
            rows = [str(p) for p in X.index[bad.any(axis=1)]]
            raise ValueError(
                f"ComBat: infinite values in {len(cols)} feature(s) ({_short(cols)}) for patient(s) {_short(rows)}; "
                "a feature value must be finite or missing (NaN): fix the extraction or drop the features"
            )
        few = [f for f, n in zip(features, (~np.isnan(Y)).sum(axis=0), strict=True) if n < 2]
        if few:
            raise ValueError(
                f"ComBat: {len(few)} feature(s) have fewer than 2 training values ({_short(few)}); drop them first "
                "(the study's missing-data policy drops features missing in too many training patients)"
            )
        levels = _sorted_levels(batch)
        if len(levels) < 2:
            raise ValueError(f"the training data hold a single batch ({levels[0]!r} in column '{self.batch_col}'): nothing to harmonise")
        codes = batch.map({b: i for i, b in enumerate(levels)}).to_numpy(dtype=int)
        counts = np.bincount(codes, minlength=len(levels))
        small = [(levels[i], [str(p) for p in X.index[codes == i]]) for i in np.flatnonzero(counts < 2)]
        if small:
            desc = "; ".join(f"{b!r}: {_short(p)}" for b, p in small)
            raise ValueError(
                f"ComBat needs at least 2 training patients per batch (a variance per batch); too few in {desc}. "
                f"Merge such batches with a similar scanner/centre in '{self.batch_col}' or leave them out"
            )
        design, cov_names = self._design(codes, len(levels), cov, kinds)
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError(
                f"the covariates {_short(list(cov.columns)) or '(none)'} are constant or confounded with batch "
                f"'{self.batch_col}' (e.g. every patient with one outcome was scanned on the same scanner), so their effect "
                "cannot be separated from the batch effect; drop that covariate or merge batches"
            )
        est = _fit_combat(Y, design, codes, counts, bool(self.eb), bool(self.parametric))

        idx = pd.Index(features, name="feature")
        bidx = pd.Index(levels, name=self.batch_col)
        self.batches_ = np.asarray(levels, dtype=object)
        self.batch_sizes_ = pd.Series(counts, index=bidx, name="n_patients")
        self.features_ = list(features)
        self.constant_features_ = [f for f, c in zip(features, est["constant"], strict=True) if c]
        self.grand_mean_ = pd.Series(est["grand_mean"], index=idx)
        self.var_pooled_ = pd.Series(est["var_pooled"], index=idx)
        self.covariate_mean_effect_ = pd.Series(est["mod_mean"], index=idx)
        self.beta_ = pd.DataFrame(est["beta"], index=pd.Index(cov_names, name="design_column"), columns=idx)
        for name in ("gamma_hat", "delta_hat", "gamma_star", "delta_star"):
            setattr(self, f"{name}_", pd.DataFrame(est[name], index=bidx, columns=idx))
        for name, attr in (
            ("gamma_bar", "gamma_bar_"),
            ("t2", "tau2_"),
            ("a_prior", "a_prior_"),
            ("b_prior", "b_prior_"),
            ("n_iter", "n_iter_"),
        ):
            setattr(self, attr, pd.Series(est[name], index=bidx))
        self.design_columns_ = [f"batch[{b}]" for b in levels] + cov_names
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def _batch(self, X: pd.DataFrame, where: str) -> pd.Series:
        if self.batch_col not in X.columns:
            raise KeyError(
                f"batch column '{self.batch_col}' is not a column of X ({where}); add the scanner/centre of every patient "
                "(e.g. from the manifest) or set batch_col"
            )
        batch = X[self.batch_col]
        if batch.isna().any():
            raise ValueError(
                f"batch column '{self.batch_col}' is empty for patient(s) {_short(map(str, X.index[batch.isna()]))}; fill it in"
            )
        return batch

    def _covariate_frame(self, X: pd.DataFrame, y: object) -> tuple[pd.DataFrame, dict[str, str]]:
        spec = self.covariates
        if spec is None:
            return pd.DataFrame(index=X.index), {}
        if isinstance(spec, str):
            spec = [spec]
        spec = dict(spec) if isinstance(spec, Mapping) else {name: None for name in spec}
        columns: dict[str, pd.Series] = {}
        kinds: dict[str, str] = {}
        for name, kind in spec.items():
            if name == self.batch_col:
                raise ValueError(f"'{name}' is the batch column; it cannot also be a covariate")
            if name in X.columns:
                values = X[name]
            else:
                values = self._from_y(name, y, len(X))
                values = pd.Series(values, index=X.index, name=name)
            if values.isna().any():
                raise ValueError(
                    f"covariate '{name}' is missing for patient(s) {_short(map(str, X.index[values.isna().to_numpy()]))}; "
                    "impute it or leave these patients out of the training data"
                )
            if kind is None:
                kind = "continuous" if _is_continuous(values) else "categorical"
            if kind not in ("categorical", "continuous"):
                raise ValueError(f"covariate '{name}': kind must be 'categorical' or 'continuous', got {kind!r}")
            if kind == "continuous" and not _is_continuous(values):
                raise ValueError(f"covariate '{name}' is declared continuous but is not numeric; declare it 'categorical'")
            columns[name], kinds[name] = values, kind
        return pd.DataFrame(columns, index=X.index), kinds

    @staticmethod
    def _from_y(name: str, y: object, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(
                f"covariate '{name}' is not a column of X and no y was given to fit; pass the target as y "
                "(name the covariate 'y'), or add the column to X"
            )
        if isinstance(y, pd.DataFrame):
            if name not in y.columns:
                raise ValueError(f"covariate '{name}' is neither a column of X nor of y ({_short(list(y.columns))})")
            values = y[name].to_numpy()
        elif name == "y" or (isinstance(y, pd.Series) and y.name == name):
            values = np.asarray(y)
        else:
            raise ValueError(
                f"covariate '{name}' is neither a column of X nor the name of y; use 'y' for the target passed to fit, "
                "or add the column to X"
            )
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"covariate '{name}' from y has shape {values.shape}, expected ({n},) (one value per row of X)")
        return values

    def _feature_columns(self, X: pd.DataFrame, cov_in_x: list[str]) -> list[str]:
        excluded = {self.batch_col, *cov_in_x}
        if self.features is None:
            features = [c for c in X.columns if c not in excluded and _is_continuous(X[c])]
            if not features:
                raise ValueError("X has no numeric feature column to harmonise (besides the batch column and covariates)")
            return features
        features = list(self.features)
        missing = [f for f in features if f not in X.columns]
        if missing:
            raise KeyError(f"features not in X: {_short(missing)}")
        clash = [f for f in features if f in excluded]
        if clash:
            raise ValueError(f"the batch column and covariates cannot be harmonised as features: {_short(clash)}")
        not_num = [f for f in features if not _is_continuous(X[f])]
        if not_num:
            raise ValueError(f"features must be numeric; not numeric: {_short(not_num)}")
        return features

    @staticmethod
    def _design(codes: np.ndarray, n_batch: int, cov: pd.DataFrame, kinds: dict[str, str]) -> tuple[np.ndarray, list[str]]:
        blocks = [np.eye(n_batch)[codes]]
        names: list[str] = []
        for name in cov.columns:
            s = cov[name]
            if kinds[name] == "continuous":
                blocks.append(s.to_numpy(dtype=float)[:, None])
                names.append(name)
            else:
                levels = _sorted_levels(s)
                # Drop the first level: it is absorbed by the batch indicators (neuroCombat's coding).
                for level in levels[1:]:
                    blocks.append((s == level).to_numpy(dtype=float)[:, None])
                    names.append(f"{name}[{level}]")
        return np.hstack(blocks), names

    # -- transform -----------------------------------------------------------------------
    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Harmonise any cohort with the training parameters (no refit, no label needed).

        Each row is adjusted on its own (its batch's gamma*/delta* and the
        training grand mean and variance), so the result of a patient does
        not depend on the other rows passed.

        Parameters
        ----------
        X : DataFrame
            Table with the columns seen in :meth:`fit` (covariates named ``y``
            are not needed). Missing feature values stay missing.

        Returns
        -------
        DataFrame
            ``X`` with the harmonised features (float), other columns unchanged,
            in the column order of :meth:`fit`.

        Raises
        ------
        UnseenBatchError
            With ``unseen_batch="error"``, when a batch had no training patients.
        """
        check_is_fitted(self, "gamma_star_")
        X = _check_frame(X)
        seen, now = set(self.feature_names_in_), set(X.columns)
        if seen != now:
            missing, extra = [c for c in self.feature_names_in_ if c not in now], [c for c in X.columns if c not in seen]
            raise ValueError(
                f"ComBatHarmonizer: X must have the columns seen in fit (missing: {_short(missing) or 'none'}; "
                f"not seen in fit: {_short(extra) or 'none'}); build every cohort's table the same way"
            )
        batch = self._batch(X, "transform")
        row_of = {b: i for i, b in enumerate(self.batches_)}
        rows = batch.map(row_of)
        unseen = rows.isna().to_numpy()
        if unseen.any():
            desc = "; ".join(
                f"{b!r} (patients {_short(map(str, X.index[(batch == b).to_numpy()]))})" for b in _sorted_levels(batch[unseen])
            )
            if self.unseen_batch == "error":
                raise UnseenBatchError(
                    f"batch(es) not seen in fit: {desc}; ComBat has no parameters for them. Refit with training patients "
                    f"from these scanners/centres, map them to a trained batch in '{self.batch_col}', or set "
                    "unseen_batch='reference' to leave them unadjusted (pooled training reference)"
                )
            warnings.warn(
                f"ComBat: batch(es) not seen in fit are treated as the pooled training reference (values unchanged): {desc}",
                UserWarning,
                stacklevel=2,
            )
        # Unseen batches (policy "reference"): gamma* = 0, delta* = 1, i.e. the identity.
        gamma = np.vstack([self.gamma_star_.to_numpy(), np.zeros((1, len(self.features_)))])
        delta = np.vstack([self.delta_star_.to_numpy(), np.ones((1, len(self.features_)))])
        idx = np.where(unseen, len(self.batches_), rows.fillna(-1).to_numpy(dtype=int))
        Y = X[self.features_].to_numpy(dtype=float)
        var_pooled = self.var_pooled_.to_numpy()
        stand = self.grand_mean_.to_numpy() + self.covariate_mean_effect_.to_numpy()
        active = ~np.isin(self.features_, self.constant_features_)
        sd = np.sqrt(var_pooled[active])
        # Same operation order as neuroCombatFromTraining (standardise, remove batch, rescale).
        z = (Y[:, active] - stand[active]) / sd
        z = (z - gamma[idx][:, active]) / np.sqrt(delta[idx][:, active])
        out = Y.copy()
        out[:, active] = z * sd + stand[active]
        harmonised = dict(zip(self.features_, out.T, strict=True))
        data = {c: (harmonised[c] if c in harmonised else X[c].to_numpy()) for c in self.feature_names_in_}
        return pd.DataFrame(data, index=X.index, columns=list(self.feature_names_in_))

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        """Output column names: the columns seen in :meth:`fit`, in the same order."""
        check_is_fitted(self, "gamma_star_")
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features must equal feature_names_in_ (the columns seen in fit)")
        return np.asarray(self.feature_names_in_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing feature values are allowed in fit and stay missing in transform
        tags.input_tags.categorical = True  # the batch column and categorical covariates
        tags.input_tags.string = True
        return tags


def _check_frame(X: object) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame indexed by patient with a batch column, got {type(X).__name__}")
    if X.index.has_duplicates:
        raise ValueError(f"X has duplicate patients in its index: {_short(map(str, X.index[X.index.duplicated()].unique()))}")
    return X


# -- the ComBat estimates -----------------------------------------------------------------
def _location_scale_missing(Y: np.ndarray, design: np.ndarray, n_batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-feature OLS on the training patients that have a value (sva's ``Beta.NA`` rule).

    Returns (B, grand mean, covariate term per row, pooled variance). The
    grand mean weights each batch by its patients with a value of that
    feature, and the pooled variance averages the squared residuals of those
    patients, so a feature's estimates are exactly those of ComBat fitted on
    its complete cases.
    """
    observed = ~np.isnan(Y)
    B = np.zeros((design.shape[1], Y.shape[1]))
    complete = observed.all(axis=0)
    if complete.any():
        B[:, complete] = np.linalg.lstsq(design, Y[:, complete], rcond=None)[0]
    for j in np.flatnonzero(~complete):
        rows = observed[:, j]
        B[:, j] = np.linalg.lstsq(design[rows], Y[rows, j], rcond=None)[0]
    n_obs = observed.sum(axis=0)
    per_batch = np.stack([observed[design[:, i] == 1].sum(axis=0) for i in range(n_batch)])  # batches x features
    grand = (per_batch / n_obs * B[:n_batch]).sum(axis=0)
    mod = design[:, n_batch:] @ B[n_batch:]
    residual = np.where(observed, Y - design @ B, 0.0)
    var_pooled = (residual**2).sum(axis=0) / n_obs
    return B, grand, mod, var_pooled


def _fit_combat(Y: np.ndarray, design: np.ndarray, codes: np.ndarray, counts: np.ndarray, eb: bool, parametric: bool) -> dict:
    """ComBat estimates of training data ``Y`` (patients x features); see the module docstring.

    Missing training values (NaN) are allowed, as in sva's ``ComBat``: every
    estimate of a feature uses the training patients that have a value
    (:func:`_location_scale_missing`; per batch, the mean and variance of
    the observed standardised values, and the EB posterior with the observed
    count). A batch without a value of a feature keeps gamma_hat 0 and
    delta_hat 1 (EB then gives it the prior); with fewer than two values its
    delta_hat is 1. Complete data take the vectorised path, unchanged.
    """
    n, n_feat = Y.shape
    n_batch = len(counts)
    if np.isnan(Y).any():
        B, grand, mod, var_pooled = _location_scale_missing(Y, design, n_batch)
    else:
        B, *_ = np.linalg.lstsq(design, Y, rcond=None)
        grand = (counts / n) @ B[:n_batch]
        mod = design[:, n_batch:] @ B[n_batch:]
        var_pooled = ((Y - design @ B) ** 2).mean(axis=0)
    scale = np.maximum(np.nanmax(np.abs(Y), axis=0), np.finfo(float).tiny)
    constant = np.sqrt(var_pooled) <= _CONSTANT_RTOL * scale
    act = ~constant
    n_act = int(act.sum())
    out = {
        "grand_mean": grand, "var_pooled": var_pooled, "mod_mean": mod.mean(axis=0), "beta": B[n_batch:], "constant": constant,
        "gamma_hat": np.zeros((n_batch, n_feat)), "delta_hat": np.ones((n_batch, n_feat)),
        "gamma_star": np.zeros((n_batch, n_feat)), "delta_star": np.ones((n_batch, n_feat)),
        "gamma_bar": np.full(n_batch, np.nan), "t2": np.full(n_batch, np.nan), "a_prior": np.full(n_batch, np.nan),
        "b_prior": np.full(n_batch, np.nan), "n_iter": np.zeros(n_batch, dtype=int),
    }  # fmt: skip
    if n_act == 0:
        return out
    s = (Y[:, act] - grand[act] - mod[:, act]) / np.sqrt(var_pooled[act])
    if np.isnan(s).any():
        g_hat, d_hat = _batch_moments_missing(s, codes, n_batch)
    else:
        g_hat = np.vstack([s[codes == i].mean(axis=0) for i in range(n_batch)])
        d_hat = np.vstack([s[codes == i].var(axis=0, ddof=1) for i in range(n_batch)])
    d_hat[d_hat == 0] = 1.0  # a feature constant within one batch: no scale adjustment (as sva/neuroCombat)
    out["gamma_hat"][:, act], out["delta_hat"][:, act] = g_hat, d_hat
    if not eb:
        out["gamma_star"][:, act], out["delta_star"][:, act] = g_hat, d_hat
        return out
    if n_act < 2:
        raise ValueError("empirical Bayes pools information across features and needs at least 2 non-constant features; use eb=False")
    g_bar = g_hat.mean(axis=1)
    t2 = g_hat.var(axis=1, ddof=1)
    m, s2 = d_hat.mean(axis=1), d_hat.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_prior = (2 * s2 + m**2) / s2
        b_prior = (m * s2 + m**3) / s2
    if not (np.isfinite(a_prior).all() and np.isfinite(b_prior).all()):
        raise ValueError(
            "the empirical-Bayes priors are undefined (the batch variances are identical across features, e.g. a single "
            "harmonised feature pattern); use eb=False"
        )
    out.update(gamma_bar=g_bar, t2=t2, a_prior=a_prior, b_prior=b_prior)
    g_star, d_star = np.empty_like(g_hat), np.empty_like(d_hat)
    for i in range(n_batch):
        sdat = s[codes == i]
        if parametric:
            g_star[i], d_star[i], out["n_iter"][i] = _it_sol(sdat, g_hat[i], d_hat[i], g_bar[i], t2[i], a_prior[i], b_prior[i])
        else:
            g_star[i], d_star[i] = _nonparametric(sdat, g_hat[i], d_hat[i])
    out["gamma_star"][:, act], out["delta_star"][:, act] = g_star, d_star
    return out


def _batch_moments_missing(s: np.ndarray, codes: np.ndarray, n_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per batch, mean and variance (ddof 1) of the observed standardised values of each feature.

    No observed value: gamma_hat 0 (no shift); fewer than two: delta_hat 1 (no scaling).
    """
    g_hat, d_hat = np.zeros((n_batch, s.shape[1])), np.ones((n_batch, s.shape[1]))
    for i in range(n_batch):
        part = s[codes == i]
        n_obs = (~np.isnan(part)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(part, axis=0) / n_obs
            var = np.nansum((part - mean) ** 2, axis=0) / (n_obs - 1)
        g_hat[i] = np.where(n_obs > 0, mean, 0.0)
        d_hat[i] = np.where(n_obs > 1, var, 1.0)
    return g_hat, d_hat


def _it_sol(sdat, g_hat, d_hat, g_bar, t2, a, b) -> tuple[np.ndarray, np.ndarray, int]:
    """Parametric EB posterior means by fixed-point iteration (Johnson et al. 2007; sva's ``it.sol``).

    With missing values, ``n`` is each feature's number of observed values in the batch (as sva).
    """
    missing = np.isnan(sdat).any()
    n = (~np.isnan(sdat)).sum(axis=0) if missing else sdat.shape[0]
    g_old, d_old = g_hat.copy(), d_hat.copy()
    change, count = 1.0, 0
    with np.errstate(divide="ignore", invalid="ignore"):
        while change > _EB_CONV:
            g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
            sum2 = np.nansum((sdat - g_new) ** 2, axis=0) if missing else ((sdat - g_new) ** 2).sum(axis=0)
            d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            # Signed relative change, exactly as sva/neuroCombat, so the stopping point (and the estimates) agree.
            change = max((abs(g_new - g_old) / g_old).max(), (abs(d_new - d_old) / d_old).max())
            g_old, d_old = g_new, d_new
            count += 1
            if count >= _EB_MAX_ITER:
                warnings.warn(f"ComBat empirical Bayes did not converge in {_EB_MAX_ITER} iterations (change {change:.2e})",
                              ConvergenceWarning, stacklevel=3)  # fmt: skip
                break
    return g_new, d_new, count


def _nonparametric(sdat: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric EB (sva's ``int.eprior``): for each feature, the other features' (gamma, delta)
    weighted by the likelihood of this feature's data, computed in log space."""
    n_rows, n_feat = sdat.shape
    if np.isnan(sdat).any():
        # Each feature's likelihood uses its observed values only: n, mean and SS per feature (as sva with NAs).
        n = (~np.isnan(sdat)).sum(axis=0).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(sdat, axis=0) / n, 0.0)
        ss = np.nansum((sdat - mean) ** 2, axis=0)
    else:
        n = np.full(n_feat, float(n_rows))
        mean = sdat.mean(axis=0)
        ss = ((sdat - mean) ** 2).sum(axis=0)
    log_2pi_d = np.log(2 * np.pi * d_hat)
    g_star, d_star = np.empty(n_feat), np.empty(n_feat)
    for start in range(0, n_feat, _NONPARAM_BLOCK):
        rows = np.arange(start, min(start + _NONPARAM_BLOCK, n_feat))
        # sum_t (x_it - g_j)^2 = SS_i + n (mean_i - g_j)^2 (no cancellation)
        sum2 = ss[rows, None] + n[rows, None] * (mean[rows, None] - g_hat[None, :]) ** 2
        loglik = -0.5 * n[rows, None] * log_2pi_d[None, :] - sum2 / (2 * d_hat[None, :])
        loglik[np.arange(len(rows)), rows] = -np.inf  # leave the feature itself out
        w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        total = w.sum(axis=1)
        g_star[rows] = (w @ g_hat) / total
        d_star[rows] = (w @ d_hat) / total
    return g_star, d_star
