"""Tests of helpers.stats against independent references.

References (none of them calls helpers.stats):

* ``tests/data/stats/reference.csv`` -- R 4.2.2 with pROC 1.18.0 (AUC, DeLong CI and variance, roc.test,
  bootstrap CI with 20,000 resamples), rms 6.5.0 / glm (calibration), Hmisc 4.8.0 ``improveProb`` (NRI, IDI),
  ResourceSelection's ``hoslem.test`` (body reproduced in the script) and ``fisher.test``; produced by
  ``tests/data/stats/make_reference.R`` on pROC's aSAH data (``asah.csv``).
* Published worked examples typed in: pROC's documented aSAH results, Hanley & McNeil (1982) Table 1
  (AUC 0.893), Newcombe (1998) Wilson intervals.
* Python packages computed in the test: scikit-learn, statsmodels, scipy, ``dcurves`` (decision curves),
  ``tableone`` (clinical characteristics), ``MLstatkit`` (DeLong test).
* Hand-countable examples whose expected values are derived in comments.
"""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as st
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, precision_score, recall_score, roc_auc_score
from sksurv.datasets import load_gbsg2
from statsmodels.stats.proportion import proportion_confint

from helpers.errors import InputDataError
from helpers.stats import (
    auc_ci,
    binary_metrics,
    binomial_ci,
    brier_score,
    calibration_slope_intercept,
    calibration_table,
    delong_test,
    hosmer_lemeshow,
    idi,
    net_benefit,
    nri,
    pairwise_comparison_table,
    performance_table,
    scaled_brier_score,
    subgroup_performance_table,
    table_one,
)

DATA = Path(__file__).parent / "data" / "stats"
EXACT = 1e-12  # same formula, floating-point rounding only


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    return pd.read_csv(DATA / "asah.csv")


@pytest.fixture(scope="module")
def ref() -> pd.Series:
    return pd.read_csv(DATA / "reference.csv").set_index("name")["value"].astype(float)


def _tied_data(seed: int, n: int = 60):
    """Random outcome and two correlated scores rounded to one decimal (many ties within and across classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    a = np.round(rng.normal(size=n) + 0.8 * y, 1)
    b = np.round(0.6 * a + rng.normal(size=n) * 0.8 + 0.3 * y, 1)
    return y, a, b


# -- DeLong: independent O(n^2) implementation from DeLong et al. (1988) --------------------------------------------
def _delong_structural(y, scores):
    """AUCs and covariance straight from DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845.

    psi(X, Y) = 1 if X > Y, 1/2 if X = Y, 0 if X < Y for case score X and control score Y;
    V10(X_i) = mean_j psi(X_i, Y_j), V01(Y_j) = mean_i psi(X_i, Y_j), AUC = mean_i V10(X_i);
    S10 = sum_i (V10_r(X_i) - AUC_r)(V10_s(X_i) - AUC_s) / (m - 1), likewise S01 with n - 1;
    S = S10 / m + S01 / n.
    """
    aucs, v10s, v01s = [], [], []
    for s in scores:
        x, yy = s[y == 1], s[y == 0]
        psi = np.array([[1.0 if xi > yj else 0.5 if xi == yj else 0.0 for yj in yy] for xi in x])
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = len(v10s[0]), len(v01s[0])
    k = len(scores)
    s10 = np.array([[np.sum((v10s[r] - aucs[r]) * (v10s[t] - aucs[t])) / (m - 1) for t in range(k)] for r in range(k)])
    s01 = np.array([[np.sum((v01s[r] - aucs[r]) * (v01s[t] - aucs[t])) / (n - 1) for t in range(k)] for r in range(k)])
    return np.array(aucs), s10 / m + s01 / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_structural_components(seed):
    y, a, b = _tied_data(seed)
    aucs, cov = _delong_structural(y, [a, b])
    res = delong_test(y, a, b)
    assert res["auc_a"] == pytest.approx(aucs[0], abs=EXACT)
    assert res["auc_b"] == pytest.approx(aucs[1], abs=EXACT)
    assert res["var_a"] == pytest.approx(cov[0, 0], abs=EXACT)
    assert res["var_b"] == pytest.approx(cov[1, 1], abs=EXACT)
    assert res["covariance"] == pytest.approx(cov[0, 1], abs=EXACT)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert res["se"] == pytest.approx(se, abs=EXACT)
    assert res["z"] == pytest.approx((aucs[0] - aucs[1]) / se, abs=1e-10)
    assert res["correlation"] == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), abs=1e-10)
    assert auc_ci(y, a)["se"] == pytest.approx(np.sqrt(cov[0, 0]), abs=EXACT)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=EXACT)  # scikit-learn, ties counted 1/2


@pytest.mark.parametrize("score", ["s100b", "ndka", "wfns", "p_old", "p_new"])
@pytest.mark.parametrize("level,tag", [(0.95, "ci95"), (0.90, "ci90")])
def test_auc_ci_delong_matches_proc(asah, ref, score, level, tag):
    """pROC: ci.auc(roc(outcome, score, direction = "<"), method = "delong", conf.level = level)."""
    res = auc_ci(asah["outcome"], asah[score], "delong", level=level)
    assert res["auc"] == pytest.approx(ref[f"proc.{score}.auc"], abs=EXACT)
    assert res["lower"] == pytest.approx(ref[f"proc.{score}.{tag}.lower"], abs=EXACT)
    assert res["upper"] == pytest.approx(ref[f"proc.{score}.{tag}.upper"], abs=EXACT)
    assert res["se"] ** 2 == pytest.approx(ref[f"proc.{score}.var"], abs=EXACT)
    assert (res["n"], res["events"], res["method"]) == (113, 41, "delong")


def test_auc_ci_reproduces_proc_documentation(asah):
    """pROC's documentation (?ci.auc, aSAH$s100b): 'Area under the curve: 0.7314, 95% CI: 0.6301-0.8326 (DeLong)'."""
    res = auc_ci(asah["outcome"], asah["s100b"])
    assert (round(res["auc"], 4), round(res["lower"], 4), round(res["upper"], 4)) == (0.7314, 0.6301, 0.8326)


def test_hanley_mcneil_1982_worked_example(ref):
    """Hanley & McNeil (1982) Table 1: 58 normal and 51 abnormal CT images rated 1-5; the paper reports AUC 0.893."""
    hm = pd.read_csv(DATA / "hanley_mcneil.csv")
    y = np.r_[np.zeros(hm["normal"].sum()), np.ones(hm["abnormal"].sum())]
    score = np.r_[np.repeat(hm["rating"], hm["normal"]), np.repeat(hm["rating"], hm["abnormal"])]
    res = auc_ci(y, score)
    assert round(res["auc"], 3) == 0.893
    assert res["lower"] == pytest.approx(ref["hm.ci95.lower"], abs=EXACT)  # pROC DeLong CI of the same table
    assert res["upper"] == pytest.approx(ref["hm.ci95.upper"], abs=EXACT)


@pytest.mark.parametrize("a,b", [("wfns", "s100b"), ("s100b", "ndka"), ("wfns", "ndka"), ("p_new", "p_old")])
def test_delong_test_matches_proc_roc_test(asah, ref, a, b):
    """pROC: roc.test(roc_a, roc_b, method = "delong", paired = TRUE) and cov(roc_a, roc_b)."""
    res = delong_test(asah["outcome"], asah[a], asah[b])
    key = f"proc.test.{a}.{b}"
    assert res["z"] == pytest.approx(ref[f"{key}.z"], abs=1e-10)
    assert res["p"] == pytest.approx(ref[f"{key}.p"], abs=EXACT)
    assert res["covariance"] == pytest.approx(ref[f"{key}.cov"], abs=EXACT)


def test_delong_test_reproduces_proc_documentation(asah):
    """pROC's documentation (?roc.test, wfns vs s100b): 'Z = 2.209, p-value = 0.02718', AUCs 0.8236789 and 0.7313686."""
    res = delong_test(asah["outcome"], asah["wfns"], asah["s100b"])
    assert (round(res["z"], 3), round(res["p"], 5)) == (2.209, 0.02718)
    assert (round(res["auc_a"], 7), round(res["auc_b"], 7)) == (0.8236789, 0.7313686)


@pytest.mark.parametrize("seed", [0, 3])
def test_delong_test_matches_mlstatkit(seed):
    """MLstatkit.Delong_test (independent fast-DeLong code; its z is signed B - A)."""
    from MLstatkit import Delong_test

    y, a, b = _tied_data(seed, 80)
    z, p, ci_a, ci_b, auc_a, auc_b, info = Delong_test(y, a, b)
    assert info["method"] == "delong"
    res = delong_test(y, a, b)
    assert res["z"] == pytest.approx(-z, abs=1e-10)
    assert res["p"] == pytest.approx(p, abs=EXACT)
    assert (res["auc_a"], res["auc_b"]) == pytest.approx((auc_a, auc_b), abs=EXACT)
    ci = auc_ci(y, a)
    assert (ci["lower"], ci["upper"]) == pytest.approx(ci_a, abs=EXACT)


def test_delong_test_identical_scores_is_not_significant():
    y, a, _ = _tied_data(5)
    res = delong_test(y, a, a)
    assert (res["difference"], res["se"], res["z"], res["p"]) == (0.0, 0.0, 0.0, 1.0)


def test_auc_ci_delong_is_clipped_to_one():
    # 5 controls below 5 cases except one tie: AUC = (24 + 0.5) / 25 = 0.98; upper bound would exceed 1
    y = np.r_[np.zeros(5), np.ones(5)]
    s = np.array([1, 2, 3, 4, 5, 5, 6, 7, 8, 9], dtype=float)
    res = auc_ci(y, s)
    assert res["auc"] == pytest.approx(24.5 / 25, abs=EXACT)
    assert res["upper"] == 1.0
    assert res["lower"] == pytest.approx(res["auc"] - st.norm.ppf(0.975) * res["se"], abs=EXACT)


# -- bootstrap AUC CI ----------------------------------------------------------------------------------------------
def test_auc_bootstrap_agrees_with_proc_bootstrap(asah, ref):
    """pROC ci.auc(method = "bootstrap", boot.stratified = TRUE) with 20,000 resamples (R's RNG) vs 10,000 here.

    Monte Carlo error of a 2.5%/97.5% percentile with 10,000 resamples is about 0.0015 (bootstrap SD 0.05);
    tolerance 0.006 (4 standard errors).
    """
    res = auc_ci(asah["outcome"], asah["s100b"], "bootstrap", n_bootstrap=10_000, random_state=1)
    assert res["lower"] == pytest.approx(ref["proc.s100b.boot20000.lower"], abs=0.006)
    assert res["upper"] == pytest.approx(ref["proc.s100b.boot20000.upper"], abs=0.006)
    assert res["auc"] == pytest.approx(ref["proc.s100b.auc"], abs=EXACT)
    # the bootstrap SD estimates the same sampling SD as DeLong's variance (within 10%)
    assert res["se"] == pytest.approx(np.sqrt(ref["proc.s100b.var"]), rel=0.10)


def test_auc_bootstrap_is_seeded_and_stratified():
    y, a, _ = _tied_data(7, 50)
    first = auc_ci(y, a, "bootstrap", n_bootstrap=500, random_state=11)
    assert auc_ci(y, a, "bootstrap", n_bootstrap=500, random_state=11) == first
    assert auc_ci(y, a, "bootstrap", n_bootstrap=500, random_state=12)["lower"] != first["lower"]
    # stratified: with a single case every resample still holds one case and the AUC is always defined
    # (an unstratified resample of 50 patients misses the case with probability (49/50)^50 = 36%)
    y1 = np.r_[1, np.zeros(49)]
    one = auc_ci(y1, a, "bootstrap", n_bootstrap=300)
    assert one["n_bootstrap"] == 300


# -- errors --------------------------------------------------------------------------------------------------------
P3 = np.array([0.2, 0.6, 0.7, 0.4, 0.9])
Y3 = np.array([0, 1, 1, 0, 1])
CALLS = {
    "auc_ci": lambda y, p: auc_ci(y, p),
    "delong_test": lambda y, p: delong_test(y, p, P3),
    "binary_metrics": lambda y, p: binary_metrics(y, p, 0.5),
    "nri": lambda y, p: nri(y, P3, p),
    "idi": lambda y, p: idi(y, P3, p),
    "hosmer_lemeshow": lambda y, p: hosmer_lemeshow(y, p, 3),
    "calibration": lambda y, p: calibration_slope_intercept(y, p),
    "brier_score": lambda y, p: brier_score(y, p),
    "net_benefit": lambda y, p: net_benefit(y, p, [0.1]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_invalid_inputs_raise_specific_errors(name):
    call = CALLS[name]
    with pytest.raises(InputDataError, match=r"has 4 values but y has 5: pass exactly one value per patient"):
        call(Y3, P3[:4])
    with pytest.raises(InputDataError, match=r"NaN or infinite value\(s\) \(first at position 1\)"):
        call(Y3, np.array([0.2, np.nan, 0.7, 0.4, 0.9]))
    with pytest.raises(InputDataError, match=r"1 missing label\(s\) \(first at position 2\): drop those patients"):
        call(np.array([0, 1, np.nan, 0, 1]), P3)
    with pytest.raises(InputDataError, match=r"must hold 0/1 labels"):
        call(np.array([0, 1, 2, 0, 1]), P3)
    with pytest.raises(ValueError):  # InputDataError is a ValueError for callers that catch those
        call(Y3, P3[:4])
    if name not in ("binary_metrics", "brier_score", "net_benefit"):  # these are defined for one class
        with pytest.raises(InputDataError, match=r"single class \(5 patients, all 1\).*both events \(1\) and non-events \(0\)"):
            call(np.ones(5), P3)


@pytest.mark.parametrize("name", ["nri", "idi", "hosmer_lemeshow", "calibration", "brier_score", "net_benefit"])
def test_probability_inputs_must_be_in_unit_interval(name):
    with pytest.raises(InputDataError, match=r"probabilities in \[0, 1\].*not scores"):
        CALLS[name](Y3, P3 * 2)


# -- binary metrics ------------------------------------------------------------------------------------------------
# 12 patients, threshold 0.5 (positive when score >= 0.5, so the 0.5 of patient 3 is a positive call)
Y12 = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
S12 = np.array([0.9, 0.8, 0.5, 0.3, 0.2, 0.7, 0.4, 0.3, 0.2, 0.1, 0.1, 0.49])
# cases: 0.9, 0.8, 0.5 called positive -> TP = 3, FN = 2; controls: 0.7 called positive -> FP = 1, TN = 6
COUNTS12 = {"accuracy": (9, 12), "sensitivity": (3, 5), "specificity": (6, 7), "ppv": (3, 4), "npv": (6, 8), "f1": (6, 9)}


@pytest.mark.parametrize("method,sm_method", [("wilson", "wilson"), ("clopper-pearson", "beta")])
def test_binary_metrics_hand_counts_and_statsmodels_intervals(method, sm_method):
    res = binary_metrics(Y12, S12, 0.5, proportion_ci=method)
    assert list(res.index) == ["accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"]
    for metric, (num, den) in COUNTS12.items():
        assert (res.loc[metric, "numerator"], res.loc[metric, "denominator"]) == (num, den), metric
        assert res.loc[metric, "estimate"] == pytest.approx(num / den, abs=EXACT)
        if metric != "f1":
            lo, hi = proportion_confint(num, den, alpha=0.05, method=sm_method)
            assert (res.loc[metric, "lower"], res.loc[metric, "upper"]) == pytest.approx((lo, hi), abs=EXACT), metric
            assert res.loc[metric, "ci_method"] == method
    call = (S12 >= 0.5).astype(int)
    assert res.loc["sensitivity", "estimate"] == pytest.approx(recall_score(Y12, call), abs=EXACT)
    assert res.loc["ppv", "estimate"] == pytest.approx(precision_score(Y12, call), abs=EXACT)
    assert res.loc["accuracy", "estimate"] == pytest.approx(accuracy_score(Y12, call), abs=EXACT)
    assert res.loc["f1", "estimate"] == pytest.approx(f1_score(Y12, call), abs=EXACT)


@pytest.mark.parametrize(
    "count,nobs,lower,upper",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_reproduces_newcombe_1998(count, nobs, lower, upper):
    """Newcombe (1998), Stat Med 17:857, Table I, method 3 (Wilson score interval), 4 decimals."""
    lo, hi = binomial_ci(count, nobs, 0.95, "wilson")
    assert (round(lo, 4), round(hi, 4)) == (lower, upper)


@pytest.mark.parametrize("count,nobs", [(0, 7), (7, 7), (3, 10), (250, 1000)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_binomial_ci_matches_statsmodels(count, nobs, level):
    for method, sm_method in (("wilson", "wilson"), ("clopper-pearson", "beta")):
        expected = proportion_confint(count, nobs, alpha=1 - level, method=sm_method)
        assert binomial_ci(count, nobs, level, method) == pytest.approx(expected, abs=EXACT)


def test_binary_metrics_undefined_metrics_are_nan():
    # no positive calls at threshold 0.95: PPV = 0/0 undefined; TP = 0 so F1 = 0 / (0 + 0 + 5) = 0 is defined
    res = binary_metrics(Y12, S12, 0.95)
    assert np.isnan(res.loc["ppv", ["estimate", "lower", "upper"]].astype(float)).all()
    assert res.loc["ppv", "denominator"] == 0
    assert res.loc["f1", "estimate"] == 0.0
    assert res.loc["sensitivity", "estimate"] == 0.0
    # one class only: sensitivity undefined, specificity defined
    only_controls = binary_metrics(np.zeros(4), [0.1, 0.2, 0.7, 0.8], 0.5)
    assert np.isnan(only_controls.loc["sensitivity", "estimate"])
    assert only_controls.loc["specificity", "estimate"] == 0.5


def test_binary_metrics_f1_bootstrap_is_seeded():
    first = binary_metrics(Y12, S12, 0.5, n_bootstrap=400, random_state=3)
    pd.testing.assert_frame_equal(first, binary_metrics(Y12, S12, 0.5, n_bootstrap=400, random_state=3))
    other = binary_metrics(Y12, S12, 0.5, n_bootstrap=400, random_state=4)
    assert (first.loc["f1", "lower"], first.loc["f1", "upper"]) != (other.loc["f1", "lower"], other.loc["f1", "upper"])
    assert 0 <= first.loc["f1", "lower"] <= first.loc["f1", "estimate"] <= first.loc["f1", "upper"] <= 1
    assert first.loc["f1", "ci_method"].startswith("bootstrap percentile (patients resampled")


def test_binary_metrics_f1_interval_is_not_degenerate_when_every_patient_is_called_positive():
    """A threshold calling all 18 patients (5 events) positive: F1 = 10/23 = 0.435 and its interval must reflect the
    sampling of the prevalence, not collapse to 0.43 (0.43-0.43) as a class-stratified bootstrap does."""
    y = np.array([1] * 5 + [0] * 13)
    res = binary_metrics(y, np.full(18, 0.9), 0.5, n_bootstrap=2000, random_state=0)
    assert res.loc["f1", "estimate"] == pytest.approx(10 / 23)
    assert res.loc["f1", "lower"] < 0.3 and res.loc["f1", "upper"] > 0.55
    assert res.loc["sensitivity", "lower"] < 1.0  # Wilson, unchanged


# -- NRI and IDI ---------------------------------------------------------------------------------------------------
def test_nri_idi_match_hmisc_improveprob(asah, ref):
    """Hmisc::improveProb(x1 = p_old, x2 = p_new, y): category-free NRI with the unrestricted variance, and IDI."""
    y, old, new = asah["outcome"], asah["p_old"], asah["p_new"]
    r = nri(y, old, new, se_method="unrestricted")
    assert r["estimate"] == pytest.approx(ref["hmisc.nri"], abs=EXACT)
    assert r["event_component"] == pytest.approx(ref["hmisc.nri.ev"], abs=EXACT)
    assert r["nonevent_component"] == pytest.approx(ref["hmisc.nri.ne"], abs=EXACT)
    assert r["se"] == pytest.approx(ref["hmisc.se.nri"], abs=EXACT)
    assert r["se_events"] == pytest.approx(ref["hmisc.se.nri.ev"], abs=EXACT)
    assert r["se_nonevents"] == pytest.approx(ref["hmisc.se.nri.ne"], abs=EXACT)
    assert r["z"] == pytest.approx(ref["hmisc.z.nri"], abs=1e-10)
    assert r["up_events"] / r["n_events"] == pytest.approx(ref["hmisc.pup.ev"], abs=EXACT)
    assert r["down_nonevents"] / r["n_nonevents"] == pytest.approx(ref["hmisc.pdown.ne"], abs=EXACT)
    i = idi(y, old, new)
    assert i["estimate"] == pytest.approx(ref["hmisc.idi"], abs=EXACT)
    assert i["se"] == pytest.approx(ref["hmisc.se.idi"], abs=EXACT)
    assert i["z"] == pytest.approx(ref["hmisc.z.idi"], abs=1e-10)
    assert i["event_component"] == pytest.approx(ref["hmisc.improveSens"], abs=EXACT)
    assert i["nonevent_component"] == pytest.approx(ref["hmisc.improveSpec"], abs=EXACT)


# Hand-countable example: 4 events, 6 non-events.
Y10 = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
OLD10 = np.array([0.30, 0.50, 0.20, 0.60, 0.20, 0.30, 0.40, 0.10, 0.50, 0.25])
NEW10 = np.array([0.40, 0.45, 0.20, 0.70, 0.10, 0.35, 0.30, 0.05, 0.45, 0.25])


def test_continuous_nri_hand_example():
    # events:     up (0.30->0.40), down (0.50->0.45), tie (0.20), up (0.60->0.70): 2 up, 1 down
    # non-events: down, up (0.30->0.35), down, down, down, tie (0.25):            1 up, 4 down
    # NRI_e = (2 - 1)/4 = 1/4, NRI_ne = (4 - 1)/6 = 1/2, NRI = 3/4
    # Pencina 2008 SE: sqrt((2 + 1)/4^2 + (1 + 4)/6^2) = sqrt(3/16 + 5/36)
    r = nri(Y10, OLD10, NEW10)
    se = np.sqrt(3 / 16 + 5 / 36)
    assert (r["up_events"], r["down_events"], r["up_nonevents"], r["down_nonevents"]) == (2, 1, 1, 4)
    assert (r["event_component"], r["nonevent_component"], r["estimate"]) == pytest.approx((0.25, 0.5, 0.75), abs=EXACT)
    assert r["se"] == pytest.approx(se, abs=EXACT)
    assert r["z"] == pytest.approx(0.75 / se, abs=EXACT)
    assert r["p"] == pytest.approx(2 * st.norm.sf(0.75 / se), abs=EXACT)
    assert (r["lower"], r["upper"]) == pytest.approx((0.75 - 1.959963984540054 * se, 0.75 + 1.959963984540054 * se), abs=1e-12)
    # unrestricted (Hmisc): (u + d)/n^2 - (u - d)^2/n^3 per class = 3/16 - 1/64 and 5/36 - 9/216
    ru = nri(Y10, OLD10, NEW10, se_method="unrestricted")
    assert ru["se"] == pytest.approx(np.sqrt(3 / 16 - 1 / 64 + 5 / 36 - 9 / 216), abs=EXACT)


def test_categorical_nri_hand_example_with_boundary_values():
    # cut-offs 0.25 and 0.5 -> categories [0, .25) = 0, [.25, .5) = 1, [.5, 1] = 2 (a value at a cut-off goes up)
    # events:     old 1, 2, 0, 2 -> new 1, 1, 0, 2: one down (0.50 -> 0.45)          NRI_e  = -1/4
    # non-events: old 0, 1, 1, 0, 2, 1 -> new 0, 1, 1, 0, 1, 1: one down (0.50 -> 0.45) NRI_ne = +1/6
    r = nri(Y10, OLD10, NEW10, cutoffs=[0.25, 0.5])
    assert r["kind"] == "categorical"
    assert (r["up_events"], r["down_events"], r["up_nonevents"], r["down_nonevents"]) == (0, 1, 0, 1)
    assert r["estimate"] == pytest.approx(-1 / 4 + 1 / 6, abs=EXACT)
    assert r["se"] == pytest.approx(np.sqrt(1 / 16 + 1 / 36), abs=EXACT)
    with pytest.raises(InputDataError, match="strictly increasing risks inside"):
        nri(Y10, OLD10, NEW10, cutoffs=[0.5, 0.25])


def test_idi_hand_example():
    # d = new - old: events 0.10, -0.05, 0, 0.10 (mean 0.0375); non-events -0.10, 0.05, -0.10, -0.05, -0.05, 0 (mean -1/24)
    # IDI = 0.0375 + 1/24; var(d|events) = 0.016875/3, var(d|non-events) = 0.0170833.../5 (squared deviations summed)
    r = idi(Y10, OLD10, NEW10)
    assert r["event_component"] == pytest.approx(0.0375, abs=EXACT)
    assert r["nonevent_component"] == pytest.approx(1 / 24, abs=EXACT)
    assert r["estimate"] == pytest.approx(0.0375 + 1 / 24, abs=EXACT)
    ss_ne = sum((v + 1 / 24) ** 2 for v in (-0.10, 0.05, -0.10, -0.05, -0.05, 0.0))
    assert r["se"] == pytest.approx(np.sqrt(0.016875 / 3 / 4 + ss_ne / 5 / 6), abs=EXACT)
    # IDI = difference of discrimination slopes (mean risk of events - of non-events), new minus old
    slope_old = OLD10[:4].mean() - OLD10[4:].mean()
    slope_new = NEW10[:4].mean() - NEW10[4:].mean()
    assert r["estimate"] == pytest.approx(slope_new - slope_old, abs=EXACT)
    assert r["relative_idi"] == pytest.approx((slope_new - slope_old) / slope_old, abs=EXACT)


# -- Hosmer-Lemeshow -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [10, 5])
def test_hosmer_lemeshow_matches_resourceselection(asah, ref, g):
    """ResourceSelection::hoslem.test(outcome, p_new, g) (function body run in R 4.2.2)."""
    h = hosmer_lemeshow(asah["outcome"], asah["p_new"], g)
    assert h["statistic"] == pytest.approx(ref[f"hl.g{g}.statistic"], abs=1e-10)
    assert h["p"] == pytest.approx(ref[f"hl.g{g}.p"], abs=1e-12)
    assert h["df"] == ref[f"hl.g{g}.df"] == g - 2
    tab = h["table"]
    assert len(tab) == g
    for j, row in enumerate(tab.itertuples(), start=1):
        assert row.observed_events == ref[f"hl.g{g}.group{j}.obs1"]
        assert row.observed_nonevents == ref[f"hl.g{g}.group{j}.obs0"]
        assert row.expected_events == pytest.approx(ref[f"hl.g{g}.group{j}.exp1"], abs=1e-10)
        assert row.expected_nonevents == pytest.approx(ref[f"hl.g{g}.group{j}.exp0"], abs=1e-10)


def test_hosmer_lemeshow_hand_example():
    # 12 distinct probabilities, g = 3: type-7 breaks 0.05, 0.2667, 0.6333, 0.90 -> groups of 4 (checked in R)
    # group 1 (0.05-0.20): O1 = 1, E1 = 0.50, O0 = 3, E0 = 3.50 -> 0.25/0.50 + 0.25/3.50
    # group 2 (0.30-0.60): O1 = 2, E1 = 1.80, O0 = 2, E0 = 2.20 -> 0.04/1.80 + 0.04/2.20
    # group 3 (0.70-0.90): O1 = 3, E1 = 3.25, O0 = 1, E0 = 0.75 -> 0.0625/3.25 + 0.0625/0.75
    # total 0.7143967 (R prints the same), df = 3 - 2 = 1
    p = np.array([0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85, 0.90])
    y = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0])
    expected = 0.25 / 0.5 + 0.25 / 3.5 + 0.04 / 1.8 + 0.04 / 2.2 + 0.0625 / 3.25 + 0.0625 / 0.75
    h = hosmer_lemeshow(y, p, 3)
    assert h["statistic"] == pytest.approx(expected, abs=EXACT)
    assert round(h["statistic"], 7) == 0.7143967
    assert h["df"] == 1
    assert h["p"] == pytest.approx(st.chi2.sf(expected, 1), abs=EXACT)
    assert list(h["table"]["n"]) == [4, 4, 4]


def test_hosmer_lemeshow_ties_share_a_group_and_empty_groups_are_dropped():
    # 4 tied values x 5 patients, g = 10: R's unique type-7 breaks are 0.1, 0.3, 0.45, 0.6, 0.9, so the groups are
    # [0.1, 0.3] (10 patients), (0.3, 0.45] (empty), (0.45, 0.6] (5), (0.6, 0.9] (5). hoslem.test keeps the empty
    # interval and returns NaN; here it is dropped: 3 groups, df = 1.
    # group [0.1, 0.3]: O1 = 2, E1 = 5 * 0.1 + 5 * 0.3 = 2.0; (0.45, 0.6]: O1 = 3, E1 = 3.0; (0.6, 0.9]: O1 = 4, E1 = 4.5
    # statistic = 0 + 0 + 0.25/4.5 + 0.25/0.5
    p = np.repeat([0.1, 0.3, 0.6, 0.9], 5)
    y = np.array([0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0])
    h = hosmer_lemeshow(y, p, 10)
    assert list(h["table"]["n"]) == [10, 5, 5]
    assert (h["groups"], h["df"], h["requested_groups"]) == (3, 1, 10)
    assert h["statistic"] == pytest.approx(0.25 / 4.5 + 0.25 / 0.5, abs=EXACT)
    with pytest.raises(InputDataError, match="only 2 distinct risk group"):
        hosmer_lemeshow(y, np.repeat([0.2, 0.7], 10), 10)


# -- calibration intercept and slope, Brier ------------------------------------------------------------------------
def test_calibration_matches_r_glm_and_val_prob(asah, ref):
    """R: glm(y ~ 1, offset = qlogis(p)), glm(y ~ qlogis(p)) with confint.default; rms::val.prob 'Slope'.

    R's IRLS stops at a relative deviance change of 1e-8 and reports the covariance of its last iteration, so
    estimates agree to 1e-7 and standard errors / bounds to 1e-6.
    """
    c = calibration_slope_intercept(asah["outcome"], asah["p_new"])
    for key in ("intercept", "slope"):
        assert c[key] == pytest.approx(ref[f"cal.{key}"], abs=1e-7)
        assert c[f"{key}_se"] == pytest.approx(ref[f"cal.{key}.se"], abs=1e-6)
        assert c[f"{key}_lower"] == pytest.approx(ref[f"cal.{key}.lower"], abs=1e-6)
        assert c[f"{key}_upper"] == pytest.approx(ref[f"cal.{key}.upper"], abs=1e-6)
    assert c["slope"] == pytest.approx(ref["valprob.slope"], abs=1e-6)
    assert brier_score(asah["outcome"], asah["p_new"]) == pytest.approx(ref["valprob.brier"], abs=EXACT)


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_matches_statsmodels_glm(seed):
    rng = np.random.default_rng(seed)
    lp_true = rng.normal(-0.5, 1.2, 300)
    y = rng.binomial(1, 1 / (1 + np.exp(-lp_true)))
    p = 1 / (1 + np.exp(-(0.4 + 1.6 * lp_true)))  # over-confident and shifted predictions
    p[:3] = [0.0, 1.0, 0.0]  # exact 0/1 are moved to 1e-8 / 1 - 1e-8
    c = calibration_slope_intercept(y, p, level=0.9)
    pc = np.clip(p, 1e-8, 1 - 1e-8)
    lp = np.log(pc / (1 - pc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        citl = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-12)
        slope = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)
    assert c["intercept"] == pytest.approx(citl.params[0], abs=1e-8)
    assert c["intercept_se"] == pytest.approx(citl.bse[0], abs=1e-8)
    assert (c["intercept_lower"], c["intercept_upper"]) == pytest.approx(tuple(citl.conf_int(alpha=0.1)[0]), abs=1e-8)
    assert c["slope"] == pytest.approx(slope.params[1], abs=1e-8)
    assert (c["slope_lower"], c["slope_upper"]) == pytest.approx(tuple(slope.conf_int(alpha=0.1)[1]), abs=1e-8)
    assert c["n_clipped"] == 3


def test_calibration_separation_raises():
    with pytest.raises(InputDataError, match="perfectly separated"):
        calibration_slope_intercept([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.7, 0.8])


@pytest.mark.parametrize("seed", [0, 1])
def test_brier_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 50)
    p = rng.uniform(size=50)
    bs = brier_score_loss(y, p)
    assert brier_score(y, p) == pytest.approx(bs, abs=EXACT)
    # scaled: 1 - BS / BS(prevalence for everyone), the reference Brier again from scikit-learn
    assert scaled_brier_score(y, p) == pytest.approx(1 - bs / brier_score_loss(y, np.full(50, y.mean())), abs=EXACT)


# -- net benefit ---------------------------------------------------------------------------------------------------
def test_net_benefit_matches_dcurves():
    """dcurves.dca on the package's own df_binary (750 patients, 'cancer' predicted by 'cancerpredmarker')."""
    from dcurves import dca

    df = pd.read_csv(importlib.resources.files("dcurves") / "data" / "df_binary.csv")
    thresholds = np.round(np.arange(0.0, 1.0, 0.01), 2)
    ref = dca(data=df, outcome="cancer", modelnames=["cancerpredmarker"], thresholds=thresholds)
    res = net_benefit(df["cancer"], df["cancerpredmarker"], thresholds)
    np.testing.assert_allclose(res["threshold"], thresholds)
    for col, model in (("net_benefit", "cancerpredmarker"), ("treat_all", "all"), ("treat_none", "none")):
        np.testing.assert_allclose(res[col], ref.loc[ref["model"] == model, "net_benefit"].to_numpy(), rtol=0, atol=EXACT, err_msg=col)


def test_net_benefit_hand_example():
    # threshold 0.5 (odds 1): treated p >= 0.5 -> patients 1-3 (cases) and 6 (control): TP 3, FP 1 -> (3 - 1)/12
    # treat all: prevalence 5/12 - 7/12 * 1; threshold 0.2 (odds 1/4): all 5 cases and the controls scored
    # 0.7, 0.4, 0.3, 0.2, 0.49 are treated -> TP 5, FP 5: 5/12 - 5/12 * 1/4
    res = net_benefit(Y12, S12, [0.5, 0.2]).set_index("threshold")
    assert res.loc[0.5, "net_benefit"] == pytest.approx(2 / 12, abs=EXACT)
    assert res.loc[0.5, "treat_all"] == pytest.approx(5 / 12 - 7 / 12, abs=EXACT)
    assert res.loc[0.2, "net_benefit"] == pytest.approx(5 / 12 - 5 / 12 / 4, abs=EXACT)
    assert (res.loc[0.2, "true_positives"], res.loc[0.2, "false_positives"]) == (5, 5)
    assert (res["treat_none"] == 0).all()
    with pytest.raises(InputDataError, match=r"threshold probabilities in \[0, 1\)"):
        net_benefit(Y12, S12, [0.5, 1.0])


# -- table one -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    X, y = load_gbsg2()
    return X.assign(event=y["cens"].astype(int))


CONT = ["age", "tsize", "pnodes", "progrec", "estrec"]
CAT = ["horTh", "menostat", "tgrade"]


def _tableone(df, group, continuous, categorical, nonnormal):
    from tableone import TableOne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = TableOne(df, columns=continuous + categorical, categorical=categorical, groupby=group, nonnormal=nonnormal,
                     pval=True, htest_name=True, decimals=1, pval_digits=12)
    return t.tableone.droplevel(0, axis=1)


def _row(t, variable, level=""):
    return t[(t["variable"] == variable) & (t["level"] == level)].iloc[0]


def test_table_one_matches_tableone_and_scipy_on_gbsg2(gbsg2):
    t = table_one(gbsg2, "event", CONT, CAT)
    groups = ["0", "1"]
    assert list(t.columns) == ["variable", "level", "missing", "Overall", *groups, "p", "test"]
    assert list(_row(t, "n")[["Overall", *groups]]) == ["686", "387", "299"]
    # normality decision: Shapiro-Wilk in every group (scipy)
    for v in CONT:
        normal = all(st.shapiro(gbsg2.loc[gbsg2["event"] == g, v]).pvalue > 0.05 for g in (0, 1))
        assert (_row(t, v, "mean ± SD" if normal else "median [Q1, Q3]")["variable"]) == v
    nonnormal = list(t.loc[t["level"] == "median [Q1, Q3]", "variable"])
    assert nonnormal == CONT  # every GBSG2 variable fails Shapiro-Wilk in some group
    ref = _tableone(gbsg2, "event", CONT, CAT, nonnormal)
    for v in CONT:
        mine = _row(t, v, "median [Q1, Q3]")
        theirs = ref.loc[(f"{v}, median [Q1,Q3]", "")]
        for col in ["Overall", *groups]:
            assert mine[col].replace(" ", "") == theirs[col].replace(" ", ""), (v, col)
        assert mine["missing"] == int(theirs["Missing"])
        # two groups, non-normal: Mann-Whitney U (scipy, two-sided, default method) ...
        x0, x1 = (gbsg2.loc[gbsg2["event"] == g, v] for g in (0, 1))
        assert mine["p"] == pytest.approx(st.mannwhitneyu(x0, x1, alternative="two-sided").pvalue, abs=EXACT)
        # ... which differs from tableone's Kruskal-Wallis only by the continuity correction (asymptotically equal)
        assert mine["p"] == pytest.approx(float(theirs["P-Value"].lstrip("<")), rel=0.02, abs=1e-9)
        assert mine["test"] == "Mann-Whitney U test"
    for v in CAT:
        head = _row(t, v)
        theirs = ref.loc[f"{v}, n (%)"]
        assert head["p"] == pytest.approx(float(theirs["P-Value"].iloc[0]), abs=1e-11)  # chi-square as tableone/scipy
        table = pd.crosstab(gbsg2[v], gbsg2["event"]).to_numpy()
        assert head["p"] == pytest.approx(st.chi2_contingency(table).pvalue, abs=EXACT)
        assert head["test"] == ("Chi-square test (Yates' correction)" if table.shape == (2, 2) else "Chi-square test")
        for level in theirs.index:
            mine = _row(t, v, str(level))
            for col in ["Overall", *groups]:
                assert mine[col] == theirs.loc[level, col], (v, level, col)


def test_table_one_normal_branch_matches_tableone_and_scipy():
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"grp": np.repeat(["A", "B"], [40, 30]), "x": np.r_[rng.normal(10, 2, 40), rng.normal(11.5, 3.5, 30)]})
    assert all(st.shapiro(df.loc[df["grp"] == g, "x"]).pvalue > 0.05 for g in "AB")  # premise of the test
    t = table_one(df, "grp", ["x"], [])
    row = _row(t, "x", "mean ± SD")
    expected_p = st.ttest_ind(df.loc[df["grp"] == "A", "x"], df.loc[df["grp"] == "B", "x"], equal_var=False).pvalue
    assert row["p"] == pytest.approx(expected_p, abs=EXACT)
    assert row["test"] == "Welch's t-test"
    ref = _tableone(df, "grp", ["x"], [], [])
    theirs = ref.loc[("x, mean (SD)", "")]
    assert row["p"] == pytest.approx(float(theirs["P-Value"]), abs=1e-11)  # tableone: Welch by default
    for col in ["Overall", "A", "B"]:
        mean, sd = row[col].split(" ± ")
        assert theirs[col] == f"{mean} ({sd})"
    # three groups: one-way ANOVA (normal) and Kruskal-Wallis (forced non-normal), scipy and tableone
    df3 = pd.DataFrame({"grp": np.repeat(["A", "B", "C"], 25), "x": rng.normal(5, 1, 75) + np.repeat([0, 0.5, 0.2], 25)})
    t3 = table_one(df3, "grp", ["x"], [], normality_alpha=0.0)
    parts = [df3.loc[df3["grp"] == g, "x"] for g in "ABC"]
    assert _row(t3, "x", "mean ± SD")["p"] == pytest.approx(st.f_oneway(*parts).pvalue, abs=EXACT)
    assert _row(t3, "x", "mean ± SD")["test"] == "One-way ANOVA"
    t3n = table_one(df3, "grp", ["x"], [], nonnormal=["x"])
    assert _row(t3n, "x", "median [Q1, Q3]")["p"] == pytest.approx(st.kruskal(*parts).pvalue, abs=EXACT)
    tableone_p = float(_tableone(df3, "grp", ["x"], [], ["x"]).iloc[1]["P-Value"])
    assert _row(t3n, "x", "median [Q1, Q3]")["p"] == pytest.approx(tableone_p, abs=1e-11)


def test_table_one_small_counts_use_fisher(ref):
    # 2 x 2 with expected counts < 5 -> Fisher's exact test (scipy; tableone makes the same switch)
    df = pd.DataFrame({"grp": ["a"] * 10 + ["b"] * 10, "flag": ["y"] * 8 + ["n"] * 2 + ["y"] * 3 + ["n"] * 7})
    t = table_one(df, "grp", [], ["flag"])
    head = _row(t, "flag")
    assert head["test"] == "Fisher's exact test"
    assert head["p"] == pytest.approx(st.fisher_exact([[2, 7], [8, 3]]).pvalue, abs=EXACT)
    assert head["p"] == pytest.approx(float(_tableone(df, "grp", [], ["flag"], []).iloc[1]["P-Value"]), abs=1e-11)
    # 3 x 2 with small expected counts -> Fisher-Freeman-Halton, Monte Carlo p with 10,000 tables;
    # R's exact fisher.test p = 0.0571 (fixture); Monte Carlo SE 0.0023, tolerance 0.01
    tab = pd.read_csv(DATA / "fisher_rxc.csv")
    rows = [(lev, g) for lev, r in tab.set_index("level").iterrows() for g in ("g0", "g1") for _ in range(int(r[g]))]
    df2 = pd.DataFrame(rows, columns=["level", "grp"])
    head2 = _row(table_one(df2, "grp", [], ["level"]), "level")
    assert head2["test"] == "Fisher-Freeman-Halton exact test (Monte Carlo)"
    assert head2["p"] == pytest.approx(ref["fisher.rxc.p"], abs=0.01)
    assert _row(table_one(df2, "grp", [], ["level"]), "level")["p"] == head2["p"]  # seeded


def test_table_one_missing_values_counted_and_excluded():
    # x: group a has 4 values + 1 missing; group b 3 values + 2 missing -> missing 3; medians over the present values
    # c: 'u' in a: 2 of 4 non-missing (50.0%), in b: 1 of 4 (25.0%); overall 3 of 8 (37.5%); 2 missing
    df = pd.DataFrame({
        "g": ["a"] * 5 + ["b"] * 5,
        "x": [1.0, 2.0, 3.0, 4.0, np.nan, 10.0, 20.0, 30.0, np.nan, np.nan],
        "c": ["u", "u", "v", "v", None, "u", "v", "v", "v", None],
    })
    t = table_one(df, "g", ["x"], ["c"], nonnormal=["x"])
    x = _row(t, "x", "median [Q1, Q3]")
    assert x["missing"] == 3
    assert (x["a"], x["b"]) == ("2.5 [1.8, 3.2]", "20.0 [15.0, 25.0]")  # numpy/R type-7 quartiles of 1..4 and 10, 20, 30
    assert _row(t, "c")["missing"] == 2
    u = _row(t, "c", "u")
    assert (u["Overall"], u["a"], u["b"]) == ("3 (37.5)", "2 (50.0)", "1 (25.0)")


def test_table_one_errors(gbsg2):
    with pytest.raises(InputDataError, match=r"column\(s\) \['nope'\] not in the patient table"):
        table_one(gbsg2, "event", ["nope"], [])
    with pytest.raises(InputDataError, match="group column 'g' has 1 missing value"):
        table_one(pd.DataFrame({"g": ["a", None], "x": [1.0, 2.0]}), "g", ["x"], [])
    with pytest.raises(InputDataError, match="continuous variable 'horTh' is not numeric"):
        table_one(gbsg2, "event", ["horTh"], [])


# -- study-level tables ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictions(asah) -> pd.DataFrame:
    """Two models (old, new) on the aSAH patients as cohort 'validation'; 'mini' is a one-class cohort."""
    rows = []
    for model, col, thr in (("old", "p_old", 0.35), ("new", "p_new", 0.4)):
        rows.append(pd.DataFrame({"model": model, "patient": asah["patient"], "cohort": "validation", "outcome": asah["outcome"],
                                  "probability": asah[col], "threshold": thr}))
        mini = asah[asah["outcome"] == 0].head(6)
        rows.append(pd.DataFrame({"model": model, "patient": mini["patient"], "cohort": "mini", "outcome": 0,
                                  "probability": mini[col], "threshold": thr}))
    return pd.concat(rows, ignore_index=True)


def test_performance_table_against_proc_sklearn_statsmodels(predictions, asah, ref):
    t = performance_table(predictions, n_bootstrap=200)
    assert list(zip(t["model"], t["cohort"])) == [("old", "validation"), ("old", "mini"), ("new", "validation"), ("new", "mini")]
    new = t[(t["model"] == "new") & (t["cohort"] == "validation")].iloc[0]
    assert (new["n"], new["events"], new["threshold"]) == (113, 41, 0.4)
    assert (new["auc"], new["auc_lower"], new["auc_upper"]) == pytest.approx(
        (ref["proc.p_new.auc"], ref["proc.p_new.ci95.lower"], ref["proc.p_new.ci95.upper"]), abs=EXACT)
    assert new["AUC (95% CI)"] == "0.79 (0.70-0.88)"  # pROC: 0.7866 (0.6966-0.8766)
    call = (asah["p_new"] >= 0.4).astype(int)
    tp = int(((call == 1) & (asah["outcome"] == 1)).sum())
    assert new["sensitivity"] == pytest.approx(recall_score(asah["outcome"], call), abs=EXACT)
    assert (new["sensitivity_lower"], new["sensitivity_upper"]) == pytest.approx(proportion_confint(tp, 41, method="wilson"), abs=EXACT)
    assert new["specificity"] == pytest.approx(recall_score(1 - asah["outcome"], 1 - call), abs=EXACT)
    assert new["ppv"] == pytest.approx(precision_score(asah["outcome"], call), abs=EXACT)
    assert new["f1"] == pytest.approx(f1_score(asah["outcome"], call), abs=EXACT)
    mini = t[(t["model"] == "new") & (t["cohort"] == "mini")].iloc[0]
    assert np.isnan(mini["auc"]) and mini["AUC (95% CI)"] == "NA"
    assert "only one outcome class (0 events of 6)" in mini["note"]
    assert np.isnan(mini["sensitivity"]) and "Sensitivity" in mini["note"]


def test_pairwise_comparison_table_against_proc_and_hmisc(predictions, ref):
    t = pairwise_comparison_table(predictions, reference="old", nri_se_method="unrestricted")
    row = t[t["cohort"] == "validation"].iloc[0]
    assert (row["model_a"], row["model_b"]) == ("new", "old")
    assert row["delong_z"] == pytest.approx(ref["proc.test.p_new.p_old.z"], abs=1e-10)
    assert row["delong_p"] == pytest.approx(ref["proc.test.p_new.p_old.p"], abs=EXACT)
    assert row["nri"] == pytest.approx(ref["hmisc.nri"], abs=EXACT)
    z975 = st.norm.ppf(0.975)
    half = z975 * ref["hmisc.se.nri"]
    assert (row["nri_lower"], row["nri_upper"]) == pytest.approx((ref["hmisc.nri"] - half, ref["hmisc.nri"] + half), abs=EXACT)
    assert row["idi"] == pytest.approx(ref["hmisc.idi"], abs=EXACT)
    assert row["idi_p"] == pytest.approx(2 * st.norm.sf(ref["hmisc.z.idi"]), abs=EXACT)
    mini = t[t["cohort"] == "mini"].iloc[0]
    assert np.isnan(mini["delong_p"]) and "only one outcome class" in mini["note"]
    every = pairwise_comparison_table(predictions)
    assert list(zip(every["model_a"], every["model_b"])) == [("old", "new"), ("old", "new")]
    assert every.iloc[0]["auc_difference"] == pytest.approx(-row["auc_difference"], abs=EXACT)
    with pytest.raises(InputDataError, match=r"reference model 'xgb' is not in the predictions; models are \['old', 'new'\]"):
        pairwise_comparison_table(predictions, reference="xgb")


def test_calibration_table_against_r(predictions, ref):
    t = calibration_table(predictions)
    row = t[(t["model"] == "new") & (t["cohort"] == "validation")].iloc[0]
    assert row["slope"] == pytest.approx(ref["cal.slope"], abs=1e-7)
    assert row["intercept_upper"] == pytest.approx(ref["cal.intercept.upper"], abs=1e-6)
    assert row["brier"] == pytest.approx(ref["valprob.brier"], abs=EXACT)
    # 113 patients -> min(10, 113 // 10) = 10 groups: ResourceSelection's g = 10 result
    assert (row["hl_groups"], row["hl_df"]) == (10, 8)
    assert row["hl_statistic"] == pytest.approx(ref["hl.g10.statistic"], abs=1e-10)
    first55 = predictions[(predictions["model"] == "new") & (predictions["cohort"] == "validation")].head(55)
    small = calibration_table(first55, min_patients_per_group=10).iloc[0]  # 55 patients -> min(10, 55 // 10) = 5 groups
    assert (small["n"], small["hl_groups"], small["hl_df"]) == (55, 5, 3)
    assert small["hl_statistic"] == pytest.approx(hosmer_lemeshow(first55["outcome"], first55["probability"], 5)["statistic"], abs=EXACT)
    assert "Hosmer-Lemeshow with 5 groups" in small["note"]
    tiny = calibration_table(first55.head(25)).iloc[0]
    assert np.isnan(tiny["hl_p"]) and "25 patients give fewer than 3 groups of 10" in tiny["note"]
    mini = t[t["cohort"] == "mini"].iloc[0]
    assert np.isnan(mini["slope"]) and "only one outcome class" in mini["note"]


def test_subgroup_performance_table(predictions, asah):
    sex = pd.Series(np.where(asah["female"] == 1, "female", "male"), index=asah["patient"], name="sex")
    t = subgroup_performance_table(predictions, sex)
    val = t[(t["model"] == "new") & (t["cohort"] == "validation")].set_index("subgroup")
    for label, flag in (("female", 1), ("male", 0)):
        part = asah[asah["female"] == flag]
        assert val.loc[label, "n"] == len(part)
        assert val.loc[label, "auc"] == pytest.approx(roc_auc_score(part["outcome"], part["p_new"]), abs=EXACT)
        assert val.loc[label, "auc_lower"] < val.loc[label, "auc"] < val.loc[label, "auc_upper"]
    mini = t[t["cohort"] == "mini"]
    assert mini["auc"].isna().all() and mini["note"].str.contains("only one outcome class").all()
    with pytest.raises(InputDataError, match=r"patient\(s\) of the predictions have no subgroup"):
        subgroup_performance_table(predictions, sex.iloc[5:])


def test_prediction_table_validation(predictions):
    with pytest.raises(InputDataError, match=r"lack column\(s\) \['threshold'\]"):
        performance_table(predictions.drop(columns="threshold"))
    varying = predictions.copy()
    varying.loc[0, "threshold"] = 0.9
    with pytest.raises(InputDataError, match=r"threshold must be constant per model.*\['old'\]"):
        calibration_table(varying)
    with pytest.raises(InputDataError, match=r"duplicated \(model, cohort, patient\)"):
        performance_table(pd.concat([predictions, predictions.head(1)]))
    nan_prob = predictions.copy()
    nan_prob.loc[3, "probability"] = np.nan
    with pytest.raises(InputDataError, match=r"predictions\['probability'\] has 1 NaN"):
        pairwise_comparison_table(nan_prob)
