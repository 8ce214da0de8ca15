"""Tests of helpers.learning.harmonize: agreement with neuroCombat, a planted batch effect, no leakage,
the unseen-batch policy, determinism and the diagnostics figure."""

from __future__ import annotations

import builtins
import contextlib
import copy
import importlib
import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from scipy import stats
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from helpers.figures.harmonization import combat_diagnostics_figure
from helpers.figures.style import PALETTE
from helpers.learning.harmonize import ComBatHarmonizer, UnseenBatchError

# The package's __init__ re-exports the function under the module's name; import the module itself.
nc = importlib.import_module("neuroCombat.neuroCombat")

FITTED = ("batches_", "batch_sizes_", "features_", "constant_features_", "grand_mean_", "var_pooled_", "covariate_mean_effect_",
          "beta_", "gamma_hat_", "delta_hat_", "gamma_star_", "delta_star_", "gamma_bar_", "tau2_", "a_prior_", "b_prior_",
          "n_iter_", "design_columns_")  # fmt: skip


def _cohort(seed: int = 0, n: int = 60, n_features: int = 25):
    """Three scanners with location and scale effects, a binary outcome and an integer age (exact in float32)."""
    rng = np.random.default_rng(seed)
    scanner = np.repeat(["GE", "Philips", "Siemens"], [n // 3 + 5, n // 3, n - 2 * (n // 3) - 5])
    age = rng.integers(30, 85, n).astype(float)
    outcome = rng.integers(0, 2, n)
    gain = pd.Series({"GE": 1.0, "Philips": 2.0, "Siemens": 0.6})[scanner].to_numpy()
    offset = pd.Series({"GE": 0.0, "Philips": 1.5, "Siemens": -1.0})[scanner].to_numpy()
    Y = 5 + rng.normal(size=(n, n_features)) * gain[:, None] + offset[:, None] + 0.8 * outcome[:, None] + 0.03 * age[:, None]
    cols = [f"CT_tumour_original_firstorder_F{i:02d}" for i in range(n_features)]
    X = pd.DataFrame(Y, index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient"), columns=cols)
    X.insert(0, "cohort", "train")
    X.insert(1, "scanner", scanner)
    X["age"] = age
    return X, pd.Series(outcome, index=X.index, name="lung_metastasis"), cols


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its progress
        return fn(*args, **kwargs)


@pytest.fixture
def neurocombat_from_training(monkeypatch):
    # neuroCombatFromTraining calls int() on a 1-element array, an error since NumPy 2; give its module an int that
    # accepts it, so the unmodified reference function runs.
    monkeypatch.setattr(nc, "int", lambda v: builtins.int(np.asarray(v).item()), raising=False)
    return nc.neuroCombatFromTraining


# -- reference: neuroCombat ----------------------------------------------------------------
@pytest.mark.parametrize(("parametric", "eb"), [(True, True), (False, True), (True, False)])
def test_estimates_and_application_match_neurocombat(neurocombat_from_training, parametric, eb):
    X, y, cols = _cohort(seed=1)
    train, test = X.iloc[::2], X.iloc[1::2]
    h = ComBatHarmonizer(covariates={"y": "categorical", "age": "continuous"}, parametric=parametric, eb=eb).fit(train, y.iloc[::2])
    covars = pd.DataFrame({"scanner": train["scanner"].to_numpy(), "outcome": y.iloc[::2].to_numpy(), "age": train["age"].to_numpy()})
    ref = _quiet(nc.neuroCombat, dat=train[cols].to_numpy().T.copy(), covars=covars, batch_col="scanner",
                 categorical_cols=["outcome"], continuous_cols=["age"], parametric=parametric, eb=eb)  # fmt: skip
    est = ref["estimates"]
    assert list(est["batches"]) == list(h.batches_)
    np.testing.assert_allclose(h.grand_mean_.to_numpy(), est["stand.mean"][:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(h.var_pooled_.to_numpy(), est["var.pooled"].ravel(), rtol=1e-9)
    np.testing.assert_allclose(h.covariate_mean_effect_.to_numpy(), est["mod.mean"].mean(axis=1), rtol=0, atol=1e-9)
    np.testing.assert_allclose(h.gamma_star_.to_numpy(), est["gamma.star"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(h.delta_star_.to_numpy(), est["delta.star"], rtol=1e-9)
    # Application to new patients: neuroCombatFromTraining with the training estimates.
    expected = _quiet(neurocombat_from_training, dat=test[cols].to_numpy().T.copy(), batch=test["scanner"].to_numpy(), estimates=est)
    got = h.transform(test)
    np.testing.assert_allclose(got[cols].to_numpy(), expected["data"].T, rtol=0, atol=1e-6)
    assert np.abs(got[cols].to_numpy() - expected["data"].T).max() < 1e-10  # in practice float64 round-off only
    pd.testing.assert_frame_equal(got[["cohort", "scanner", "age"]], test[["cohort", "scanner", "age"]])


def test_without_covariates_fit_transform_equals_neurocombat_in_sample():
    X, _, cols = _cohort(seed=2)
    ref = _quiet(
        nc.neuroCombat, dat=X[cols].to_numpy().T.copy(), covars=pd.DataFrame({"scanner": X["scanner"].to_numpy()}), batch_col="scanner"
    )
    got = ComBatHarmonizer(features=cols).fit_transform(X)
    np.testing.assert_allclose(got[cols].to_numpy(), ref["data"].T, rtol=0, atol=1e-9)
    pd.testing.assert_series_equal(got["age"], X["age"])  # not a listed feature: passed through
    # By default every numeric column except the batch column and covariates is harmonised, age included.
    assert (ComBatHarmonizer().fit_transform(X)["age"] != X["age"]).any()


# -- planted batch effect ------------------------------------------------------------------
def _planted(seed: int = 3, n_per: int = 60, n_features: int = 20, beta: float = 1.0):
    """Scanner effects as gain/offset on the whole signal (signal = beta * group + N(0, 1) noise), with the
    biological group unevenly spread across scanners (25/50/75% positives) so batch and biology are entangled."""
    rng = np.random.default_rng(seed)
    shift, gain, share = {"A": 0.0, "B": 3.0, "C": -2.0}, {"A": 1.0, "B": 1.6, "C": 0.7}, {"A": 0.25, "B": 0.5, "C": 0.75}
    mu = np.linspace(10, 100, n_features)
    blocks = []
    for s in "ABC":
        group = (rng.random(n_per) < share[s]).astype(int)
        signal = beta * group[:, None] + rng.normal(size=(n_per, n_features))
        x = mu + shift[s] * np.sqrt(mu) + gain[s] * signal * np.sqrt(mu) / 3
        blocks.append(
            pd.DataFrame(x, columns=[f"PET_tumour_original_glcm_F{i:02d}" for i in range(n_features)]).assign(scanner=s, group=group)
        )
    df = pd.concat(blocks, ignore_index=True)
    df.index = pd.Index([f"P{i:03d}" for i in range(len(df))], name="patient")
    y = df.pop("group").rename("outcome")
    return df, y, [c for c in df.columns if c != "scanner"]


def _batch_pvalues(T: pd.DataFrame, batch: pd.Series, y: pd.Series, cols) -> tuple[np.ndarray, np.ndarray]:
    """Kruskal-Wallis (location) and Fligner-Killeen (scale) p for batch, on values with the group means removed."""
    resid = T[cols] - T[cols].groupby(y).transform("mean")
    groups = [resid[batch == b] for b in sorted(batch.unique())]
    kw = np.array([stats.kruskal(*[g[c] for g in groups]).pvalue for c in cols])
    fl = np.array([stats.fligner(*[g[c] for g in groups]).pvalue for c in cols])
    return kw, fl


def _effect_size(T: pd.DataFrame, y: pd.Series, cols) -> float:
    """Cohen's d of the outcome groups, pooled over all patients, averaged over features."""
    d = []
    for c in cols:
        a, b = T.loc[y == 1, c], T.loc[y == 0, c]
        sd = np.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1)) / (len(a) + len(b) - 2))
        d.append((a.mean() - b.mean()) / sd)
    return float(np.mean(d))


def test_planted_batch_effect_removed_and_biological_effect_preserved():
    X, y, cols = _planted()
    kw, fl = _batch_pvalues(X, X["scanner"], y, cols)
    assert kw.max() < 1e-6 and fl.max() < 0.01 and np.median(fl) < 1e-3  # strong location and scale batch effects
    assert _effect_size(X, y, cols) < 0.2  # pooled raw data hide the planted d = 1 (batch confounding)

    H = ComBatHarmonizer(covariates={"y": "categorical"}).fit_transform(X, y)
    kw, fl = _batch_pvalues(H, X["scanner"], y, cols)
    alpha = 0.05 / len(cols)  # Bonferroni over features
    assert kw.min() > alpha and fl.min() > alpha
    d_with = _effect_size(H, y, cols)
    assert d_with == pytest.approx(1.0, abs=0.15)
    # Without the covariate ComBat attributes part of the biology to the scanners (groups are unevenly spread).
    d_without = _effect_size(ComBatHarmonizer().fit_transform(X), y, cols)
    assert d_without < d_with - 0.15


# -- no leakage ------------------------------------------------------------------------------
def _state(h: ComBatHarmonizer) -> dict:
    return {k: copy.deepcopy(getattr(h, k)) for k in FITTED}


def _assert_same_state(a: dict, b: dict) -> None:
    for k in FITTED:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k], check_exact=True)
        elif isinstance(a[k], pd.Series):
            pd.testing.assert_series_equal(a[k], b[k], check_exact=True)
        else:
            np.testing.assert_array_equal(np.asarray(a[k], dtype=object), np.asarray(b[k], dtype=object))


def test_no_leakage_transform_never_refits_and_rows_are_independent():
    X, y, cols = _cohort(seed=4, n=90)
    is_test = np.arange(len(X)) % 3 == 0
    train, y_train, test = X[~is_test], y[~is_test], X[is_test].assign(cohort="test")
    h = ComBatHarmonizer(covariates={"y": "categorical", "age": "continuous"}).fit(train, y_train)
    state = _state(h)
    out = h.transform(test)  # no test label anywhere: transform takes none
    _assert_same_state(state, _state(h))
    # Shifting the other test patients, or transforming one patient alone, does not change a patient's result.
    shifted = test.copy()
    shifted.iloc[1:, shifted.columns.get_indexer(cols)] += 1000.0
    pd.testing.assert_frame_equal(h.transform(shifted).iloc[:1], out.iloc[:1])
    pd.testing.assert_frame_equal(h.transform(test.iloc[[5]]), out.iloc[[5]])
    pd.testing.assert_frame_equal(h.transform(test.iloc[::-1]), out.iloc[::-1])
    # The training rows are harmonised by the same label-free rule as new rows.
    pd.testing.assert_frame_equal(clone(h).fit_transform(train, y_train), h.transform(train))
    # Refitting on the training rows after any test traffic gives the identical state.
    _assert_same_state(state, _state(clone(h).fit(train, y_train)))


def test_no_leakage_in_cross_validation_each_fold_fits_its_training_rows_only():
    X, y, cols = _cohort(seed=5, n=90)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    pipe = Pipeline([
        ("combat", ComBatHarmonizer(covariates={"y": "categorical"})),
        ("numeric", ColumnTransformer([("drop", "drop", ["cohort", "scanner"])], remainder="passthrough")),
        ("model", LogisticRegression(max_iter=500)),
    ])  # fmt: skip
    res = cross_validate(pipe, X, y, cv=cv, return_estimator=True, scoring="roc_auc")
    # The test rows of each fold shifted by a large amount: the fold's fitted ComBat must be unchanged.
    for est, (train_idx, test_idx) in zip(res["estimator"], cv.split(X, y), strict=True):
        direct = ComBatHarmonizer(covariates={"y": "categorical"}).fit(X.iloc[train_idx], y.iloc[train_idx])
        _assert_same_state(_state(est.named_steps["combat"]), _state(direct))
        polluted = X.copy()
        polluted.iloc[test_idx, polluted.columns.get_indexer(cols)] += 50.0
        again = ComBatHarmonizer(covariates={"y": "categorical"}).fit(polluted.iloc[train_idx], y.iloc[train_idx])
        _assert_same_state(_state(direct), _state(again))
        # ... while fitting on train + test would have given other parameters (the check above is not vacuous).
        leaky = ComBatHarmonizer(covariates={"y": "categorical"}).fit(polluted, y)
        assert not np.allclose(leaky.grand_mean_, direct.grand_mean_)


# -- unseen batches, determinism, contract, errors ---------------------------------------------
def test_unseen_batch_policy():
    X, y, _ = _cohort(seed=6)
    h = ComBatHarmonizer().fit(X, y)
    new = X.iloc[:6].copy()
    new.iloc[:2, new.columns.get_loc("scanner")] = "Canon"
    with pytest.raises(UnseenBatchError, match=r"not seen in fit: 'Canon' \(patients P000, P001\).*unseen_batch='reference'"):
        h.transform(new)
    ref = clone(h).set_params(unseen_batch="reference").fit(X, y)
    with pytest.warns(UserWarning, match=r"pooled training reference.*'Canon' \(patients P000, P001\)"):
        out = ref.transform(new)
    pd.testing.assert_frame_equal(out.iloc[:2], new.iloc[:2], check_dtype=False)  # the reference is the identity
    pd.testing.assert_frame_equal(out.iloc[2:], h.transform(X.iloc[2:6]))
    with pytest.raises(ValueError, match="unseen_batch must be"):
        ComBatHarmonizer(unseen_batch="nearest").fit(X)


def test_deterministic_and_estimator_contract():
    X, y, cols = _cohort(seed=7)
    params = {"batch_col": "scanner", "covariates": {"y": "categorical"}, "features": cols, "parametric": False, "eb": True,
              "unseen_batch": "error"}  # fmt: skip
    h = ComBatHarmonizer(**params)
    assert h.get_params() == params
    a = h.fit_transform(X, y)
    b = clone(h).fit_transform(X, y)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.columns) == list(X.columns) and a.index.equals(X.index)
    assert list(h.get_feature_names_out()) == list(X.columns)
    out = clone(h).set_output(transform="pandas").fit(X, y).transform(X)
    pd.testing.assert_frame_equal(out, a)
    # The outcome named by its Series name works like "y".
    named = ComBatHarmonizer(covariates=["lung_metastasis"], features=cols).fit(X, y)
    np.testing.assert_array_equal(named.beta_.index, ["lung_metastasis"])  # inferred continuous 0/1 == categorical design


def test_constant_feature_passes_through_unchanged():
    X, _y, cols = _cohort(seed=8)
    X["CT_tumour_original_shape_Const"] = 7.0
    h = ComBatHarmonizer().fit(X)
    assert h.constant_features_ == ["CT_tumour_original_shape_Const"]
    out = h.transform(X)
    assert (out["CT_tumour_original_shape_Const"] == 7.0).all() and np.isfinite(out[cols].to_numpy()).all()


def test_errors_name_the_problem_and_the_fix():
    X, _y, cols = _cohort(seed=9)
    with pytest.raises(KeyError, match="batch column 'centre'"):
        ComBatHarmonizer(batch_col="centre").fit(X)
    lonely = X.copy()
    lonely.iloc[0, lonely.columns.get_loc("scanner")] = "Toshiba"
    with pytest.raises(ValueError, match=r"at least 2 training patients per batch.*'Toshiba': P000"):
        ComBatHarmonizer().fit(lonely)
    holes = X.copy()
    holes.iloc[3, holes.columns.get_loc(cols[2])] = np.inf
    with pytest.raises(ValueError, match=rf"infinite values.*{cols[2]}.*patient\(s\) P003.*finite or missing"):
        ComBatHarmonizer().fit(holes)
    holes.iloc[:-1, holes.columns.get_loc(cols[2])] = np.nan
    with pytest.raises(ValueError, match=rf"fewer than 2 training values \({cols[2]}\)"):
        ComBatHarmonizer().fit(holes)
    with pytest.raises(ValueError, match="no y was given"):
        ComBatHarmonizer(covariates={"y": "categorical"}).fit(X)
    confounded = pd.Series((X["scanner"] == "GE").astype(int).to_numpy(), index=X.index)
    with pytest.raises(ValueError, match="confounded with batch"):
        ComBatHarmonizer(covariates={"y": "categorical"}).fit(X, confounded)
    h = ComBatHarmonizer().fit(X)
    with pytest.raises(ValueError, match="missing: age"):
        h.transform(X.drop(columns=["age"]))


# -- figure ---------------------------------------------------------------------------------------
def test_combat_diagnostics_figure():
    X, y, cols = _planted(n_features=4)
    H = ComBatHarmonizer(covariates={"y": "categorical"}).fit_transform(X, y)
    fig = combat_diagnostics_figure(X, H, X["scanner"], cols[:2])
    try:
        axes = fig.get_axes()
        assert len(axes) == 4
        assert "before ComBat" in axes[0].get_title() and "after ComBat" in axes[1].get_title()
        faces = [to_hex(p.get_facecolor(), keep_alpha=False) for p in axes[0].patches]
        assert faces == [c.lower() for c in PALETTE[:3]]  # one colour-blind-safe colour per scanner
        assert axes[0].get_ylim() == axes[1].get_ylim()
    finally:
        plt.close(fig)
    with pytest.raises(KeyError, match=f"not in the 'after' table: {cols[0]}"):
        combat_diagnostics_figure(X, H.drop(columns=[cols[0]]), X["scanner"], [cols[0]])


# -- missing training values (the study's missing-data policy keeps features missing in few training patients) ------
def test_missing_values_use_each_features_complete_cases():
    # Without EB every feature is estimated on its own: a feature with holes must get exactly the estimates of ComBat
    # fitted on the patients that have a value (sva's per-feature rule), and the complete features keep theirs
    # (to rounding: the per-feature path sums in another order).
    X, _y, cols = _cohort(seed=21)
    holes = X.copy()
    victim = cols[1]
    holes.loc[holes.index[[2, 7, 11, 30]], victim] = np.nan
    fitted = ComBatHarmonizer(eb=False).fit(holes)
    subset = ComBatHarmonizer(eb=False).fit(X.drop(index=X.index[[2, 7, 11, 30]]))
    full = ComBatHarmonizer(eb=False).fit(X)
    for attr in ("gamma_hat_", "delta_hat_"):
        np.testing.assert_allclose(getattr(fitted, attr)[victim], getattr(subset, attr)[victim], rtol=1e-12, atol=1e-12)
        other = [c for c in cols if c != victim]
        np.testing.assert_allclose(getattr(fitted, attr)[other].to_numpy(), getattr(full, attr)[other].to_numpy(), rtol=1e-10, atol=1e-12)
    for attr in ("grand_mean_", "var_pooled_"):
        np.testing.assert_allclose(getattr(fitted, attr)[victim], getattr(subset, attr)[victim], rtol=1e-12)
    out = fitted.transform(holes)
    assert out[victim].isna().sum() == 4 and out.drop(columns="scanner").notna().sum().sum() == out.drop(columns="scanner").size - 4


def test_missing_values_in_the_eb_posteriors_use_the_observed_count():
    from helpers.learning.harmonize import _it_sol, _nonparametric

    rng = np.random.default_rng(3)
    S = rng.normal(0.3, 1.2, size=(25, 6))
    g, d = S.mean(axis=0), S.var(axis=0, ddof=1)
    holes = S.copy()
    holes[[1, 4, 9], 0] = np.nan
    keep = ~np.isnan(holes[:, 0])
    # Parametric: one feature alone iterates to the same point as its observed values.
    g_ref, d_ref, _ = _it_sol(S[keep][:, [0]], g[[0]], d[[0]], 0.1, 0.5, 3.0, 2.0)
    g_nan, d_nan, _ = _it_sol(holes[:, [0]], g[[0]], d[[0]], 0.1, 0.5, 3.0, 2.0)
    np.testing.assert_allclose([g_nan[0], d_nan[0]], [g_ref[0], d_ref[0]], rtol=1e-12)
    # Non-parametric: a feature's posterior depends on its own observed values and the others' (gamma, delta).
    g_star, d_star = _nonparametric(holes, g, d)
    g_sub, d_sub = _nonparametric(S[keep], g, d)
    np.testing.assert_allclose([g_star[0], d_star[0]], [g_sub[0], d_sub[0]], rtol=1e-12)
    np.testing.assert_allclose(_nonparametric(S, g, d), _nonparametric(S, g, d), rtol=0)  # complete data: unchanged path


def test_eb_fit_with_missing_values_is_finite_and_close_to_the_complete_fit():
    X, _y, cols = _cohort(seed=22)
    holes = X.copy()
    holes.loc[holes.index[[0, 5]], cols[0]] = np.nan
    with_holes = ComBatHarmonizer().fit(holes)
    complete = ComBatHarmonizer().fit(X)
    assert np.isfinite(with_holes.gamma_star_.to_numpy()).all() and np.isfinite(with_holes.delta_star_.to_numpy()).all()
    # Two of the training values gone change the estimates a little, not wholesale.
    np.testing.assert_allclose(with_holes.gamma_star_[cols[1:]].to_numpy(), complete.gamma_star_[cols[1:]].to_numpy(), atol=0.05)
