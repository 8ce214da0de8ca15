"""Feature selection: references (scipy, sklearn, statsmodels, mrmr_selection), leakage guards, planted signal."""

from __future__ import annotations

import copy
import re
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.feature_selection import f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from helpers.errors import ConfigError
from helpers.figures.selection import coefficient_figure, lasso_cv_figure, lasso_path_figure
from helpers.learning.models import _content_of
from helpers.learning.selection import (
    CorrelationFilter,
    CoxLassoSelector,
    LassoSelector,
    MissingValueImputer,
    MRMRSelector,
    UnivariateCoxFilter,
    UnivariateFilter,
    ZScoreScaler,
    build_selector,
    radscore,
    radscore_formula,
    radscore_table,
    selection_pathway,
)

FULL_STEPS = [
    {"step": "zscore"},
    {"step": "univariate", "p_threshold": 0.05},
    {"step": "correlation", "threshold": 0.9},
    {"step": "mrmr", "k": 20},
    {"step": "lasso", "lambda_rule": "1se"},
]


# --------------------------------------------------------------------------- synthetic data


def _ids(n: int) -> pd.Index:
    return pd.Index([f"P{i:03d}" for i in range(n)], name="patient")


def planted(seed: int = 0, n: int = 200, p_noise: int = 500, dup_sd: float = 0.35):
    """n patients: p_noise noise features, 5 informative ones (logistic outcome), 3 near-duplicates (r ~ 0.94)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, p_noise))
    informative = rng.normal(size=(n, 5))
    logit = 1.2 * informative @ np.array([1.0, 1.0, -1.0, 1.0, -1.0])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    dups = informative[:, :3] + rng.normal(scale=dup_sd, size=(n, 3))
    cols = [f"noise_{i:03d}" for i in range(p_noise)] + [f"informative_{i}" for i in range(5)] + [f"duplicate_{i}" for i in range(3)]
    # Informative features on another scale and offset, as radiomics features are: the z-score must handle it.
    X = pd.DataFrame(np.hstack([noise, informative * 3 + 10, dups]), columns=cols, index=_ids(n))
    return X, pd.Series(y, index=X.index, name="outcome")


def small(seed: int = 0, n: int = 80, p: int = 30):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j:02d}" for j in range(p)], index=_ids(n))
    logit = 1.5 * X["f00"] - X["f01"]
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int), index=X.index, name="outcome")
    return X, y


def fitted_state(est) -> dict:
    """Learned attributes (trailing underscore) of an estimator, or of every step of a pipeline."""
    if hasattr(est, "steps"):
        return {name: fitted_state(step) for name, step in est.steps}
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def assert_same(a, b, where: str = "state") -> None:
    """Exact equality of nested fitted state (frames, arrays, dicts, sklearn models)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, LogisticRegression):
        assert_same(fitted_state(a), fitted_state(b), f"{where}.estimator")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def planted_fit():
    X, y = planted(0)
    return X, y, build_selector(FULL_STEPS).fit(X, y)


# --------------------------------------------------------------------------- ZScoreScaler


def test_zscore_matches_standard_scaler_with_training_statistics():
    X, _ = small()
    train, test = X.iloc[:60], X.iloc[60:] * 4 + 7
    zs = ZScoreScaler().fit(train)
    ref = StandardScaler().fit(train)
    out = zs.transform(test)
    assert isinstance(out, pd.DataFrame) and out.index.equals(test.index) and list(out.columns) == list(X.columns)
    np.testing.assert_allclose(out.to_numpy(), ref.transform(test), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(zs.inverse_transform(out).to_numpy(), test.to_numpy(), rtol=1e-12)
    r = ZScoreScaler(ddof=1).fit(train)  # R's scale(): SD with n - 1
    np.testing.assert_allclose(r.scale_.to_numpy(), train.std(ddof=1).to_numpy(), rtol=1e-12)


def test_zscore_constant_and_missing_policies():
    X, _ = small(n=10, p=4)
    X["const"] = 3.0
    X["zeros"] = 0.0
    zs = ZScoreScaler().fit(X)
    assert zs.selected_features_ == ["f00", "f01", "f02", "f03"]
    assert zs.dropped_ == {"const": "constant in training data (value 3)", "zeros": "constant in training data (value 0)"}
    assert "dropped 2 constant" in zs.describe()
    with pytest.raises(ValueError, match=r"constant in the training data, e\.g\. \['const', 'zeros'\]"):
        ZScoreScaler(on_constant="raise").fit(X)

    X = X.drop(columns=["const", "zeros"])
    X.loc["P003", "f01"] = np.nan
    X["empty"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/infinite values \(e\.g\. \['f01', 'empty'\]\).*impute"):
        ZScoreScaler().fit(X)
    zs = ZScoreScaler(on_nan="drop").fit(X)
    assert zs.dropped_ == {"f01": "1 of 10 training values missing", "empty": "all values missing"}
    assert zs.selected_features_ == ["f00", "f02", "f03"]
    # Missing values in a dropped feature are irrelevant at transform; in a kept one they raise, naming the patient.
    Xt = X.copy()
    zs.transform(Xt)
    Xt.loc["P005", "f02"] = np.inf
    with pytest.raises(ValueError, match=r"ZScoreScaler\.transform.*\['f02'\].*\['P005'\]"):
        zs.transform(Xt)


# --------------------------------------------------------------------------- UnivariateFilter


def test_univariate_pvalues_match_scipy():
    rng = np.random.default_rng(5)
    n = 60
    y = pd.Series(np.repeat([0, 1], n // 2), index=_ids(n))
    X = pd.DataFrame(
        {
            "normal": rng.normal(size=n) + 0.8 * y,  # normal in both classes -> Welch t
            "skewed": rng.lognormal(sigma=1.2, size=n) * (1 + y),  # non-normal -> Mann-Whitney U
            "binary": np.r_[np.zeros(20), np.ones(10), np.zeros(5), np.ones(25)],  # two values (ties): non-normal
            "noise": rng.normal(size=n),
            "const": np.full(n, 2.0),
        },
        index=y.index,
    )
    uf = UnivariateFilter().fit(X, y)
    x0, x1 = X[y == 0], X[y == 1]
    for col in ["normal", "skewed", "binary", "noise"]:
        normal = stats.shapiro(x0[col]).pvalue > 0.05 and stats.shapiro(x1[col]).pvalue > 0.05
        ref = (
            stats.ttest_ind(x0[col], x1[col], equal_var=False) if normal else stats.mannwhitneyu(x0[col], x1[col], alternative="two-sided")
        )
        assert uf.tests_[col] == ("welch_t" if normal else "mann_whitney_u")
        assert uf.pvalues_[col] == pytest.approx(ref.pvalue, rel=1e-10)
        assert uf.normality_pvalues_.loc[col, "shapiro_p_0"] == pytest.approx(stats.shapiro(x0[col]).pvalue, rel=1e-10)
    assert (uf.tests_["normal"], uf.tests_["skewed"], uf.tests_["binary"]) == ("welch_t", "mann_whitney_u", "mann_whitney_u")
    assert uf.tests_["const"] == "constant" and uf.pvalues_["const"] == 1.0
    assert uf.selected_features_ == [c for c in X.columns if uf.pvalues_[c] < 0.05]
    assert "normal" in uf.selected_features_ and "skewed" in uf.selected_features_ and "noise" not in uf.selected_features_

    forced = UnivariateFilter(test="ttest", equal_var=True).fit(X, y)
    assert forced.pvalues_["skewed"] == pytest.approx(stats.ttest_ind(x0["skewed"], x1["skewed"]).pvalue, rel=1e-10)
    assert set(forced.tests_.drop("const")) == {"student_t"}
    mw = UnivariateFilter(test="mannwhitney").fit(X, y)
    assert mw.pvalues_["normal"] == pytest.approx(stats.mannwhitneyu(x0["normal"], x1["normal"]).pvalue, rel=1e-10)


def test_univariate_fdr_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    X, y = small(seed=2, n=80, p=40)
    raw = UnivariateFilter(p_threshold=0.05).fit(X, y)
    bh = UnivariateFilter(p_threshold=0.05, correction="fdr_bh").fit(X, y)
    expected = multipletests(raw.pvalues_.to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(bh.adjusted_pvalues_.to_numpy(), expected, rtol=1e-12)
    assert bh.selected_features_ == list(X.columns[expected < 0.05])
    assert set(bh.selected_features_) <= set(raw.selected_features_) and "f00" in bh.selected_features_
    assert raw.adjusted_pvalues_ is None


# --------------------------------------------------------------------------- CorrelationFilter


def test_correlation_filter_greedy_chain_by_hand():
    # a ~ b (r = 0.8), ab = (a + b) / |a + b| has r = 0.949 with both: greedy by column order keeps a, drops ab
    # (made redundant by a), then keeps b because its only |r| > 0.9 is with the *dropped* ab.
    rng = np.random.default_rng(0)
    n = 2000
    u, v = rng.normal(size=(2, n))
    a = u
    b = 0.8 * u + 0.6 * v
    X = pd.DataFrame({"a": a, "ab": a + b, "b": b, "c": rng.normal(size=n)}, index=_ids(n))
    cf = CorrelationFilter(threshold=0.9, relevance="order").fit(X)
    assert cf.selected_features_ == ["a", "b", "c"]
    assert cf.dropped_ == {"ab": "a"}
    assert cf.dropped_correlation_["ab"] == pytest.approx(np.corrcoef(X["a"], X["ab"])[0, 1], rel=1e-10)
    # Relevance decides which member of a pair survives: make b the most relevant and ab second.
    y = pd.Series((b + 0.1 * rng.normal(size=n) > 0).astype(int), index=X.index)
    cf = CorrelationFilter(threshold=0.9, relevance="auc").fit(X, y)
    assert cf.ranking_[:3] == ["b", "ab", "a"]
    assert cf.selected_features_ == ["a", "b", "c"] and cf.dropped_ == {"ab": "b"}
    np.testing.assert_allclose(cf.relevance_.to_numpy(), [abs(roc_auc_score(y, X[c]) - 0.5) for c in X.columns], rtol=1e-12)


def test_correlation_filter_references_and_ties():
    X, y = small(seed=3, n=60, p=12)
    X["f00_copy"] = X["f00"] * 2 + 1  # r = 1 and exactly the same AUC: the tie goes to the earlier column
    X["f05_exp"] = np.exp(X["f05"])  # Spearman rho = 1 with f05 (same AUC again), Pearson ~0.76
    cf = CorrelationFilter(threshold=0.9, relevance="auc").fit(X, y)
    assert cf.relevance_["f00"] == cf.relevance_["f00_copy"] and cf.dropped_ == {"f00_copy": "f00"}
    sp = CorrelationFilter(threshold=0.9, method="spearman", relevance="auc").fit(X, y)
    assert sp.dropped_ == {"f00_copy": "f00", "f05_exp": "f05"}
    pv = CorrelationFilter(threshold=0.9, relevance="univariate_p").fit(X, y)
    np.testing.assert_allclose(pv.relevance_.to_numpy(), UnivariateFilter().fit(X, y).pvalues_.to_numpy(), rtol=1e-12)
    assert pv.ranking_ == sorted(X.columns, key=lambda c: (pv.relevance_[c], X.columns.get_loc(c)))
    # No two kept features exceed the threshold (numpy Pearson and scipy Spearman as references).
    r = np.abs(np.corrcoef(X[cf.selected_features_].to_numpy().T))
    assert (r[np.triu_indices_from(r, 1)] <= 0.9).all()
    rho = np.abs(stats.spearmanr(X[sp.selected_features_]).statistic)
    assert (rho[np.triu_indices_from(rho, 1)] <= 0.9).all()


# --------------------------------------------------------------------------- MRMRSelector


def test_mrmr_planted_answer_by_hand():
    # x1 is the most relevant; x1b is an almost exact copy (r ~ 0.999, slightly less relevant); x2 is
    # independent and less relevant than the copy. Relevance alone would take x1, x1b; mRMR takes x1, x2.
    rng = np.random.default_rng(1)
    n = 400
    y = pd.Series(rng.integers(0, 2, n), index=_ids(n))
    x1 = y * 1.0 + rng.normal(size=n)
    X = pd.DataFrame(
        {"x1b": x1 + 0.05 * rng.normal(size=n), "x2": 0.5 * y + rng.normal(size=n), "x1": x1, "noise": rng.normal(size=n)}, index=y.index
    )
    F = pd.Series(f_classif(X, y)[0], index=X.columns)
    assert F.idxmax() == "x1" and F["x1b"] > F["x2"] > F["noise"]
    m = MRMRSelector(k=2).fit(X, y)
    assert m.selected_features_ == ["x1", "x2"]
    assert list(m.transform(X).columns) == ["x1", "x2"]  # output in selection order
    # MIQ scores by hand: step 2 is F_j / max(|r(j, x1)|, 0.001); step 3 divides by the mean over {x1, x2}.
    r = X.corr().abs().clip(lower=1e-3)
    assert m.scores_["x1"] == pytest.approx(F["x1"])
    assert m.scores_["x2"] == pytest.approx(F["x2"] / r.loc["x2", "x1"], rel=1e-10)
    third = F[["x1b", "noise"]] / r.loc[["x1b", "noise"], ["x1", "x2"]].mean(axis=1)
    m4 = MRMRSelector(k=10).fit(X, y)  # k > features: every relevant feature, ranked
    assert m4.selected_features_[:3] == ["x1", "x2", third.idxmax()] and len(m4.selected_features_) == 4
    assert m4.scores_.iloc[2] == pytest.approx(third.max(), rel=1e-10)
    # MID subtracts |r| (<= 1) from F (~100 here): the copy wins; why MIQ is the default with F-test relevance.
    mid = MRMRSelector(k=2, scheme="MID").fit(X, y)
    assert mid.selected_features_ == ["x1", "x1b"]
    assert mid.scores_["x1b"] == pytest.approx(F["x1b"] - X.corr().abs().loc["x1b", "x1"], rel=1e-10)


def _mrmr_reference_data(seed: int, n: int = 120, p: int = 40):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    X = latent @ rng.normal(size=(4, p)) + rng.normal(size=(n, p))
    logit = 1.5 * latent[:, 0] - latent[:, 1] + 0.5 * X[:, 7]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(X, columns=[f"f{j:02d}" for j in range(p)]), pd.Series(y, name="y")


# Complete rankings (K = 40 of 40) from mrmr_selection 0.2.8 (PyPI; numpy 2.4.6, pandas 3.1.1, scikit-learn
# 1.9.1, in a throwaway venv): mrmr.mrmr_classif(X, y, K=40, relevance="f", redundancy="c",
# denominator="mean"), i.e. F-test relevance / mean |Pearson r| (FCQ, floor 0.001). Its returned F relevance
# also agreed with MRMRSelector.relevance_ to <= 7.8e-14 (absolute) on all three data sets.
MRMR_SELECTION_RANKINGS = {
    0: "34 07 36 13 22 19 04 37 20 11 38 15 30 06 09 01 31 35 03 21 23 12 39 08 29 24 28 14 27 33 00 10 17 25 26 16 05 02 18 32",
    1: "17 04 07 23 34 33 32 24 39 26 20 30 06 21 11 12 25 37 38 31 01 10 02 09 13 15 35 18 08 14 22 00 27 03 29 19 16 05 36 28",
    2: "26 38 15 19 16 32 18 01 06 29 23 34 24 04 30 28 31 07 10 14 12 13 37 05 17 20 36 03 11 39 35 25 00 09 08 21 22 33 27 02",
}


@pytest.mark.parametrize("seed", sorted(MRMR_SELECTION_RANKINGS))
def test_mrmr_matches_mrmr_selection_package(seed):
    X, y = _mrmr_reference_data(seed)
    expected = [f"f{j}" for j in MRMR_SELECTION_RANKINGS[seed].split()]
    assert MRMRSelector(k=40).fit(X, y).selected_features_ == expected
    assert MRMRSelector(k=10).fit(X, y).selected_features_ == expected[:10]


def test_mrmr_mutual_info_is_seeded():
    X, y = small(seed=4, n=60, p=15)
    a = MRMRSelector(k=5, relevance="mutual_info", random_state=3).fit(X, y)
    b = MRMRSelector(k=5, relevance="mutual_info", random_state=3).fit(X, y)
    assert_same(fitted_state(a), fitted_state(b))
    assert (a.relevance_ >= 0).all() and len(a.selected_features_) <= 5


# --------------------------------------------------------------------------- LassoSelector


@pytest.fixture(scope="module")
def lasso_fit():
    X, y = small(seed=3, n=150, p=12)
    return X, y, LassoSelector(Cs=30, tol=1e-8, max_iter=100_000).fit(X, y)


def test_lasso_path_lambda_max_and_one_se_rule(lasso_fit):
    X, y, las = lasso_fit
    res = las.cv_results_
    n = len(X)
    lam_max = np.max(np.abs((X - X.mean()).T.to_numpy() @ (y - y.mean()).to_numpy())) / n
    assert res["lambda"].iloc[0] == pytest.approx(lam_max) and res["lambda"].is_monotonic_decreasing
    assert (las.path_.iloc[0] == 0).all()  # lambda_max: every coefficient zero (KKT bound)
    just_below = LogisticRegression(C=1 / (0.97 * lam_max * n), l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100_000).fit(X, y)
    score = np.abs((X - X.mean()).T.to_numpy() @ (y - y.mean()).to_numpy())
    assert np.flatnonzero(just_below.coef_[0]).tolist() == [int(np.argmax(score))]  # first to enter the path
    # CV table: mean and SE of the fold columns; lambda_min maximises the mean; lambda_1se is the largest lambda
    # whose mean is within one SE (of the best) of the best mean.
    folds = res.filter(like="fold_").to_numpy()
    np.testing.assert_allclose(res["mean"], folds.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(res["se"], folds.std(axis=1, ddof=1) / np.sqrt(5), rtol=1e-12)
    best = res["mean"].idxmax()
    assert las.lambda_min_ == res["lambda"][best]
    ok = res["mean"] >= res["mean"][best] - res["se"][best]
    assert las.lambda_1se_ == res["lambda"][ok].max()
    assert las.lambda_1se_ >= las.lambda_min_ and las.lambda_ == las.lambda_min_
    assert res["n_nonzero"].tolist() == (las.path_ != 0).sum(axis=1).tolist()
    np.testing.assert_array_equal(las.path_.loc[las.lambda_].to_numpy(), las.coef_.to_numpy())
    assert las.selected_features_ == list(las.coef_.index[las.coef_ != 0]) and {"f00", "f01"} <= set(las.selected_features_)
    one_se = clone(las).set_params(lambda_rule="1se").fit(X, y)
    assert one_se.lambda_ == las.lambda_1se_ and len(one_se.selected_features_) <= len(las.selected_features_)


def test_lasso_coefficients_match_statsmodels_l1_logit(lasso_fit):
    # Independent solver: statsmodels minimises -loglik + sum(alpha_k |b_k|); alpha = lambda * n for the
    # features and 0 for the intercept is the same objective (x n). Measured max |difference|: 5.5e-7.
    import statsmodels.api as sm

    X, y, las = lasso_fit
    alpha = np.r_[0.0, np.full(X.shape[1], las.lambda_ * len(X))]
    ref = sm.Logit(y.to_numpy(), sm.add_constant(X.to_numpy())).fit_regularized(method="l1", alpha=alpha, disp=0, acc=1e-12, maxiter=1000)
    np.testing.assert_allclose(np.r_[las.intercept_, las.coef_.to_numpy()], ref.params, atol=1e-5)
    assert las.C_ == pytest.approx(1 / (las.lambda_ * len(X)))


def test_lasso_cv_scores_match_cold_sklearn_fits(lasso_fit):
    X, y, las = lasso_fit
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    i = 8
    lam = las.cv_results_["lambda"][i]
    for f, (tr, va) in enumerate(folds):
        m = LogisticRegression(C=1 / (lam * len(tr)), l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100_000).fit(X.iloc[tr], y.iloc[tr])
        assert las.cv_results_[f"fold_{f + 1}"][i] == pytest.approx(roc_auc_score(y.iloc[va], m.decision_function(X.iloc[va])), abs=1e-3)


def test_lasso_is_deterministic_and_elasticnet_path():
    X, y = small(seed=6, n=90, p=20)
    kw = {"Cs": 15, "cv": 3, "random_state": 11}
    a, b = LassoSelector(**kw).fit(X, y), LassoSelector(**kw).fit(X, y)
    assert_same(fitted_state(a), fitted_state(b))
    en = LassoSelector(penalty="elasticnet", l1_ratio=0.5, scoring="neg_log_loss", **kw).fit(X, y)
    assert en.cv_results_["lambda"].iloc[0] == pytest.approx(2 * a.cv_results_["lambda"].iloc[0])  # lambda_max / l1_ratio
    assert (en.path_.iloc[0] == 0).all() and (en.cv_results_["mean"] < 0).all()
    assert en.estimator_.l1_ratio == 0.5


# --------------------------------------------------------------------------- sklearn compatibility and leakage


def test_clone_pipelines_and_imblearn():
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline as ImbPipeline

    X, y = small(seed=1, n=80, p=25)
    for est in [ZScoreScaler(on_nan="drop"), UnivariateFilter(p_threshold=0.2, correction="fdr_bh"), CorrelationFilter(threshold=0.8, method="spearman", relevance="auc"),
                MRMRSelector(k=4, scheme="MID"), LassoSelector(Cs=8, cv=3)]:  # fmt: skip
        c = clone(est)
        assert c.get_params() == est.get_params() and not hasattr(c, "selected_features_")
        out = c.fit(X, y).transform(X)
        assert isinstance(out, pd.DataFrame) and list(out.columns) == list(c.get_feature_names_out())
    pipe = ImbPipeline([("zscore", ZScoreScaler()), ("smote", SMOTE(random_state=0)), ("univariate", UnivariateFilter(p_threshold=0.2)),
                        ("mrmr", MRMRSelector(k=5)), ("lasso", LassoSelector(Cs=8, cv=3))])  # fmt: skip
    pipe.fit(X, y)
    table = selection_pathway(pipe)
    assert table["step"].tolist() == ["input", "zscore", "univariate", "mrmr", "lasso"]  # the sampler is no stage
    assert radscore(X, pipe).shape == (len(X),)
    with pytest.raises(ValueError, match="y has no value for 1 patient"):  # a shuffled y is aligned by patient (tests/test_alignment.py)
        UnivariateFilter().fit(X, y.iloc[1:])
    with pytest.raises(ValueError, match="binary"):
        UnivariateFilter().fit(X, pd.Series(np.arange(len(X)) % 3, index=X.index))
    with pytest.raises(TypeError, match="non-numeric columns \\['cohort'\\].*drop metadata"):
        ZScoreScaler().fit(X.assign(cohort="train"))
    with pytest.raises(ValueError, match="received no features: the previous step kept none"):
        MRMRSelector().fit(X.iloc[:, :0], y)
    with pytest.raises(ValueError, match="columns differ from those seen in fit"):
        pipe[0].transform(X.drop(columns="f03"))


def test_transforming_shifted_test_data_changes_no_fitted_state(planted_fit):
    X, _, pipe = planted_fit
    before = copy.deepcopy(fitted_state(pipe))
    rng = np.random.default_rng(9)
    shifted = X * 3 + 50 + rng.normal(size=X.shape)  # a test cohort from another distribution
    out = pipe[:-1].transform(shifted)
    scores = radscore(shifted, pipe)
    selection_pathway(pipe)
    radscore_formula(pipe)
    assert_same(before, fitted_state(pipe))
    assert list(out.columns) == pipe["mrmr"].selected_features_ and scores.notna().all()
    # The z-score of test data uses training statistics: shifted data stay far from mean 0.
    assert pipe["zscore"].transform(shifted).mean().mean() > 10


def test_refit_on_training_rows_equals_fitting_once():
    X, y = planted(1, n=120, p_noise=150)
    train = X.index[:80]
    steps = [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.1}, {"step": "correlation"}, {"step": "mrmr", "k": 8},
             {"step": "lasso", "Cs": 12, "cv": 3}]  # fmt: skip
    once = build_selector(steps).fit(X.loc[train], y.loc[train])
    refit = build_selector(steps).fit(X, y).fit(X.loc[train], y.loc[train])  # first fit on everything, incl. test rows
    assert_same(fitted_state(once), fitted_state(refit))
    # Test rows carry no influence on the fit: replace them entirely, same state.
    assert_same(fitted_state(once), fitted_state(clone(once).fit(X.loc[train], y.loc[train])))


def test_selection_inside_cross_validation_is_not_optimistic():
    # Pure noise: selection refitted in each fold gives an honest AUC near 0.5, whereas selecting on all rows
    # first (the classic leak) makes the same model look predictive.
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(80, 300)), columns=[f"f{j:03d}" for j in range(300)], index=_ids(80))
    y = pd.Series(np.tile([0, 1], 40), index=X.index)
    steps = [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05}, {"step": "mrmr", "k": 5}]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    honest = Pipeline([("select", build_selector(steps)), ("model", LogisticRegression())])
    auc_honest = cross_val_score(honest, X, y, cv=cv, scoring="roc_auc").mean()
    leaked = build_selector(steps).fit(X, y).transform(X)
    auc_leaked = cross_val_score(LogisticRegression(), leaked, y, cv=cv, scoring="roc_auc").mean()
    assert auc_honest < 0.65 and auc_leaked > 0.75, (auc_honest, auc_leaked)


# --------------------------------------------------------------------------- planted signal, pathway, Rad-score


def test_planted_signal_full_pipeline(planted_fit):
    _, _, pipe = planted_fit
    selected = pipe["lasso"].selected_features_
    informative = {f"informative_{i}" for i in range(5)}
    assert len(informative & set(selected)) >= 4, selected
    # Each near-duplicate is removed by the correlation step because of its (more relevant) original. The rule
    # keeps whichever member of a pair has the lower training p-value, so with another seed a duplicate can stand
    # in for its original (seeds 0-7: one duplicate survived in 5, all three in 1); seed 0 is a typical draw.
    assert pipe["correlation"].dropped_ == {f"duplicate_{i}": f"informative_{i}" for i in range(3)}
    assert not any(f.startswith("duplicate") for f in selected)
    table = selection_pathway(pipe)
    assert table["n_features"].is_monotonic_decreasing and table["n_features"].iloc[0] == 508
    assert table["step"].tolist() == ["input", "zscore", "univariate", "correlation", "mrmr", "lasso"]
    assert table.attrs["pathway"] == " -> ".join(map(str, table["n_features"]))
    assert (table["n_removed"].iloc[1:] == -table["n_features"].diff().iloc[1:]).all()
    assert table.loc[table["step"] == "mrmr", "n_features"].item() == 20
    las = pipe["lasso"]
    assert las.lambda_1se_ >= las.lambda_min_ and las.lambda_ == las.lambda_1se_


def test_radscore_is_the_final_models_decision_function(planted_fit):
    X, y, pipe = planted_fit
    las = pipe["lasso"]
    table = X.assign(cohort=np.where(np.arange(len(X)) < 150, "train", "test"))
    score = radscore(table, pipe)  # the cohort column is ignored
    Z = pipe[:-1].transform(X)
    np.testing.assert_allclose(score.to_numpy(), las.estimator_.decision_function(Z), rtol=1e-12)
    manual = las.intercept_ + Z[las.selected_features_] @ las.coef_[las.selected_features_]
    np.testing.assert_allclose(score.to_numpy(), manual.to_numpy(), rtol=1e-10, atol=1e-12)
    # The same from raw features: z-score by hand with the training mean and SD.
    zs = pipe["zscore"]
    sel = las.selected_features_
    raw = las.intercept_ + ((X[sel] - zs.mean_[sel]) / zs.scale_[sel]) @ las.coef_[sel]
    np.testing.assert_allclose(score.to_numpy(), raw.to_numpy(), rtol=1e-10, atol=1e-12)
    assert score.name == "radscore" and score.index.equals(X.index)

    rt = radscore_table(table, pipe, outcome=y)
    assert rt.columns.tolist() == ["cohort", "outcome", "radscore", "probability"] and rt.index.name == "patient"
    np.testing.assert_allclose(rt["probability"], las.predict_proba(Z)[:, 1], rtol=1e-12)
    with pytest.raises(ValueError, match="outcome missing for 1 patient"):
        radscore_table(table, pipe, outcome=y.iloc[1:])


def test_radscore_formula_text(planted_fit):
    _, _, pipe = planted_fit
    las = pipe["lasso"]
    text = radscore_formula(pipe)
    first, *rest = text.splitlines()
    assert first.startswith(f"Rad-score = {las.intercept_:.3f} ")
    top = las.coef_.abs().idxmax()
    c = las.coef_[top]
    assert first.split(" = ", 1)[1].split(" ", 1)[1].startswith(f"{'-' if c < 0 else '+'} {abs(c):.3f} × z({top})")
    assert first.count("× z(") == len(las.selected_features_)
    assert rest[0].startswith("where z(f) = (f - mean) / SD") and len(rest) == 1 + len(las.selected_features_)
    zs = pipe["zscore"]
    assert f"  {top}: mean = {zs.mean_[top]:.6g}, SD = {zs.scale_[top]:.6g}" in rest
    plain = radscore_formula(pd.Series({"a": 0.5, "b": 0.0, "c": -1.25}), intercept=-0.1, decimals=2)
    assert plain == "Rad-score = -0.10 - 1.25 × c + 0.50 × a"
    with pytest.raises(ValueError, match="intercept is required"):
        radscore_formula(pd.Series({"a": 1.0}))


# --------------------------------------------------------------------------- configuration


def test_build_selector_from_config_and_errors():
    pipe = build_selector(FULL_STEPS + [{"step": "univariate", "p_threshold": 0.01}])
    assert [n for n, _ in pipe.steps] == ["zscore", "univariate", "correlation", "mrmr", "lasso", "univariate_2"]
    assert pipe["mrmr"].k == 20 and pipe["lasso"].lambda_rule == "1se" and pipe["univariate_2"].p_threshold == 0.01
    with pytest.raises(ConfigError) as err:
        build_selector([{"step": "zscore"}, {"step": "pca"}, {"step": "mrmr", "kk": 3}, {"step": "univariate", "test": "anova"}, {"k": 3}])
    msg = str(err.value)
    assert "step 2: unknown step 'pca'; choose one of ['impute', 'zscore', 'univariate', 'correlation', 'mrmr', 'lasso', 'univariate_cox', 'cox_lasso']" in msg
    assert "step 3 (mrmr): unknown parameter(s) ['kk']; allowed: ['k', 'relevance'" in msg
    assert "step 4 (univariate): test='anova' is not one of ['auto', 'ttest', 'mannwhitney']" in msg
    assert "step 5: {'k': 3} must be a mapping with a 'step' key" in msg
    with pytest.raises(ConfigError, match="must be a list"):
        build_selector({"step": "zscore"})
    with pytest.raises(ValueError, match="lambda_rule='2se'"):
        LassoSelector(lambda_rule="2se").fit(*small())


# --------------------------------------------------------------------------- figures


def test_figures(planted_fit):
    _, _, pipe = planted_fit
    las = pipe["lasso"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warnings (e.g. missing glyphs)
        path = lasso_path_figure(las)
        cvf = lasso_cv_figure(las)
        bars = coefficient_figure(las.coef_)
    try:
        ax = path.axes[0]
        assert len(ax.get_lines()) == 20 + 2 + 1  # one per input feature, two lambda markers, zero line
        assert {t.get_text() for t in ax.get_legend().get_texts()} >= {
            f"lambda_min = {las.lambda_min_:.3g}",
            f"lambda_1se = {las.lambda_1se_:.3g}",
        }
        xs = [line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2 and line.get_linestyle() in ("--", ":")]
        np.testing.assert_allclose(sorted(xs), sorted(np.log([las.lambda_min_, las.lambda_1se_])))
        assert cvf.axes[0].get_ylabel() == "cross-validated AUC"
        assert len(bars.axes[0].patches) == len(las.selected_features_)
        labels = [t.get_text() for t in bars.axes[0].get_yticklabels()]
        assert labels == las.coef_[las.coef_ != 0].sort_values(kind="stable").index.tolist()
    finally:
        for fig in (path, cvf, bars):
            plt.close(fig)


def test_univariate_min_features_keeps_the_smallest_p_values_when_none_pass():
    from scipy.stats import mannwhitneyu, ttest_ind

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(40, 6)), columns=[f"f{i}" for i in range(6)])
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    strict = UnivariateFilter(p_threshold=1e-9).fit(X, y)
    assert strict.selected_features_ == []
    floor = UnivariateFilter(p_threshold=1e-9, min_features=2).fit(X, y)
    expected = strict.pvalues_.sort_values(kind="stable").index[:2]
    assert floor.selected_features_ == [c for c in X.columns if c in set(expected)]
    # Independent p-value check of the chosen features' ranking (Welch or Mann-Whitney by the Shapiro rule).
    for f in floor.selected_features_:
        ref = ttest_ind(X[f][y == 1], X[f][y == 0], equal_var=False).pvalue if floor.tests_[f] == "welch_t" else mannwhitneyu(X[f][y == 1], X[f][y == 0]).pvalue
        assert floor.pvalues_[f] == pytest.approx(ref, rel=1e-10)
    # Enough features pass: the floor changes nothing.
    loose = UnivariateFilter(p_threshold=1.0, min_features=2).fit(X, y)
    assert loose.selected_features_ == list(X.columns)
    with pytest.raises(ValueError, match="min_features"):
        UnivariateFilter(min_features=-1).fit(X, y)


def test_lasso_never_hands_an_empty_feature_set_to_the_classifier():
    # Pure noise and a small training set: the 1-SE rule picks the intercept-only model. With min_features=1 (default)
    # the largest lambda of the same path that keeps a feature is used and said so; min_features=0 keeps the rule's
    # lambda (a constant Rad-score, with a warning). Found on a 24-patient simulated DICOM cohort, where the final
    # model's CV folds crashed inside scikit-learn ("at least one array or dtype is required").
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(30, 8)), columns=[f"f{i}" for i in range(8)], index=[f"P{i:02d}" for i in range(30)])
    y = pd.Series(np.tile([0, 1], 15), index=X.index)
    with pytest.warns(UserWarning, match="no feature has a non-zero coefficient at lambda_1se"):
        bare = LassoSelector(lambda_rule="1se", cv=3, Cs=20, random_state=0, min_features=0).fit(X, y)
    assert bare.selected_features_ == [] and bare.lambda_note_ == ""
    fitted = LassoSelector(lambda_rule="1se", cv=3, Cs=20, random_state=0).fit(X, y)
    assert len(fitted.selected_features_) >= 1
    assert fitted.lambda_ < bare.lambda_ and fitted.lambda_ in fitted.path_.index
    first = int(np.flatnonzero((fitted.path_ != 0).sum(axis=1).to_numpy() >= 1)[0])
    assert fitted.lambda_ == fitted.path_.index[first]  # the largest lambda with a feature, from the same path
    np.testing.assert_array_equal(fitted.coef_.to_numpy(), fitted.path_.iloc[first].to_numpy())
    assert "kept 0 feature(s); the largest lambda keeping at least 1 was used" in fitted.describe()
    # In a pipeline the classifier now always gets a feature.
    from helpers.learning.models import build_pipeline, make_classifier, tune

    pipe = build_pipeline([("lasso", LassoSelector(lambda_rule="1se", cv=3, Cs=20, random_state=0))], make_classifier("logistic"))
    model = tune(pipe, X, y, search="none", cv=3, random_state=0)
    assert np.isfinite(model.oof_proba_).all()
    with pytest.raises(ValueError, match="min_features=-1 must be an integer >= 0"):
        LassoSelector(min_features=-1).fit(X, y)


@pytest.mark.parametrize(("params", "message"), [
    ({"cv": 1}, "cv=1 must be an integer >= 2"),
    ({"cv": True}, "cv=True must be an integer >= 2"),
    ({"lambda_rule": "max"}, "lambda_rule='max' is not one of ['min', '1se']"),
    ({"min_features": -1}, "min_features=-1 must be an integer >= 0"),
    ({"min_features": 1.5}, "min_features=1.5 must be an integer >= 0"),
])
@pytest.mark.parametrize("selector", [LassoSelector, CoxLassoSelector])
def test_lasso_and_cox_lasso_check_their_shared_parameters_alike(selector, params, message):
    # One check (selection._check_penalty_search) for the penalty search both selectors run.
    with pytest.raises(ValueError, match=re.escape(message)):
        selector(**params)._check_params()


def test_only_the_logistic_lasso_takes_a_cv_splitter_and_integer_checks_refuse_bools():
    LassoSelector(cv=StratifiedKFold(3))._check_params()
    with pytest.raises(ValueError, match=re.escape("cv=StratifiedKFold(n_splits=3, random_state=None, shuffle=False) must be an integer >= 2")):
        CoxLassoSelector(cv=StratifiedKFold(3))._check_params()
    with pytest.raises(ValueError, match=re.escape("cv='five' must be an integer >= 2 or a CV splitter with split(X, y)")):
        LassoSelector(cv="five")._check_params()
    with pytest.raises(ValueError, match=re.escape("n_alphas=1 must be an integer >= 2")):
        CoxLassoSelector(n_alphas=1)._check_params()
    with pytest.raises(ValueError, match=re.escape("max_features=0 must be None or an integer >= 1")):
        UnivariateCoxFilter(max_features=0)._check_params()
    UnivariateCoxFilter(max_features=None)._check_params()
    for step in (UnivariateFilter, UnivariateCoxFilter):
        with pytest.raises(ValueError, match=re.escape("min_features=True must be an integer >= 0")):  # True is an int to Python
            step(min_features=True)._check_params()


# --------------------------------------------------------------------------- imputation


def _holey(rows: int, cols: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, cols)) * 10.0 ** rng.integers(-3, 4, size=cols)
    values[rng.random(values.shape) < 0.15] = np.nan
    return pd.DataFrame(values, index=[f"P{seed}_{i}" for i in range(rows)], columns=[f"f{j}" for j in range(cols)])


@pytest.mark.parametrize("strategy", ["median", "mean"])
def test_imputer_equals_sklearn_simple_imputer_bitwise(strategy):
    """Training statistics and filled values are scikit-learn's ``SimpleImputer``'s, bit for bit, on held-out rows
    with their own missing values; observed values are untouched and the output is the input's labels."""
    train, test = _holey(30, 40, 1), _holey(12, 40, 2)
    ours = MissingValueImputer(strategy=strategy).fit(train)
    reference = SimpleImputer(strategy=strategy).fit(train.to_numpy())
    for frame in (train, test):
        out = ours.transform(frame)
        assert list(out.columns) == list(frame.columns) and list(out.index) == list(frame.index)
        assert (out.dtypes == np.float64).all()
        expected = reference.transform(frame.to_numpy())
        np.testing.assert_array_equal(out.to_numpy().view(np.int64), expected.view(np.int64))
        # the vectorised fill equals pandas' per-column fillna it replaced, and leaves the input unchanged
        assert frame.isna().to_numpy().any()
        pd.testing.assert_frame_equal(out, frame.fillna(ours.statistics_), check_exact=True)


def test_imputer_keeps_integer_columns_and_fills_the_float_ones():
    frame = pd.DataFrame({"count": [1, 2, 3, 4], "size": [1.5, np.nan, 2.5, np.nan]}, index=list("abcd"))
    out = MissingValueImputer().fit(frame).transform(frame)
    assert out["count"].dtype == np.int64 and out["size"].tolist() == [1.5, 2.0, 2.5, 2.0]


def test_selection_cache_key_is_a_frames_content_not_its_memory_layout():
    """A frame built column by column (one block per column) and the same frame in one block share a cache key; a
    different value, label, patient or dtype gives a different key."""
    import joblib

    frame = _holey(6, 50, 3).fillna(0.5)
    fragmented = pd.DataFrame(index=frame.index)
    for name in frame.columns:
        fragmented[name] = frame[name].to_numpy()
    assert fragmented._mgr.nblocks == 50 and frame._mgr.nblocks == 1
    key = joblib.hash(_content_of(frame))
    assert joblib.hash(_content_of(fragmented)) == key
    other_order = pd.DataFrame(np.asfortranarray(frame.to_numpy()), index=frame.index, columns=frame.columns)
    assert joblib.hash(_content_of(other_order)) == key
    changed_value = frame.copy()
    changed_value.iloc[2, 7] = np.nextafter(changed_value.iloc[2, 7], 1.0)
    variants = [changed_value, frame.rename(columns={"f7": "g7"}), frame.rename(index={frame.index[0]: "other"}),
                frame.astype({"f1": np.float32}), frame.iloc[:, ::-1], frame.iloc[:5]]  # fmt: skip
    keys = {joblib.hash(_content_of(variant)) for variant in variants}
    assert key not in keys and len(keys) == len(variants)
    assert _content_of(frame["f1"]) is frame["f1"]  # anything but a DataFrame is hashed as it is
