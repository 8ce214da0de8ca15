"""pandas inputs are paired by patient (index label), never by row position (helpers._alignment).

For every public entry point that takes y / time / event / scores together with X or with each other:

* a shuffled copy of the Series gives exactly (bitwise) the same result as the aligned Series;
* numpy arrays in row order give exactly that result too (the positional path is unchanged);
* the same shuffled values passed as numpy (positional, the old behaviour of a shuffled Series) give a
  *different* result, so the first assertion cannot pass vacuously;
* mismatched patient sets raise InputDataError naming a patient and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.preprocessing import StandardScaler

from helpers import stats
from helpers._alignment import align_series, align_to_frame, align_to_index
from helpers.errors import InputDataError
from helpers.learning.clinical import RadScoreAugmenter
from helpers.learning.models import ScoreStacker, build_pipeline, make_classifier, model_grid, tune, youden_threshold
from helpers.learning.nomogram import NomogramModel
from helpers.learning.selection import (
    CorrelationFilter,
    LassoSelector,
    MRMRSelector,
    UnivariateFilter,
    build_selector,
    radscore,
    radscore_table,
)
from helpers.learning.survival import (
    CoxModel,
    RandomSurvivalForest,
    harrell_c,
    integrated_brier_score,
    km_by_group,
    risk_groups,
    survival_metrics_table,
    time_dependent_auc,
    to_structured,
)

N = 60


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class Data:
    X: pd.DataFrame  # radiomic-like features, indexed by patient
    y: pd.Series
    score: pd.Series
    p_old: pd.Series
    p_new: pd.Series
    time: pd.Series
    event: pd.Series
    risk: pd.Series
    groups: pd.Series
    surv: pd.DataFrame  # predicted survival probabilities (rows = patients, columns = grid times)
    grid: np.ndarray
    clinical: pd.DataFrame  # one clinical variable and a Rad-score, for the nomogram


@pytest.fixture(scope="module")
def d() -> Data:
    rng = np.random.default_rng(7)
    idx = pd.Index([f"P{i:03d}" for i in range(N)], name="patient")
    z = rng.normal(size=(N, 6))
    z[:, 2] = z[:, 0] + 0.3 * rng.normal(size=N)  # correlated with f0, so the correlation filter has work to do
    X = pd.DataFrame(z, index=idx, columns=[f"f{j}" for j in range(6)])
    lin = 1.2 * z[:, 0] - 0.8 * z[:, 1]
    y = pd.Series((lin + rng.normal(size=N) > 0).astype(int), index=idx, name="y")
    score = pd.Series(lin + 0.5 * rng.normal(size=N), index=idx)
    p_old = pd.Series(expit(0.4 * z[:, 0] + 0.6 * rng.normal(size=N)), index=idx)
    p_new = pd.Series(expit(lin), index=idx)
    time = pd.Series(np.round(rng.exponential(np.exp(-0.8 * z[:, 0])) * 24 + 0.5, 3), index=idx, name="time")
    event = pd.Series((rng.random(N) < 0.75).astype(int), index=idx, name="event")
    cox = CoxModel().fit(X[["f0", "f1"]], time, event)
    risk = pd.Series(cox.predict_risk(X[["f0", "f1"]]), index=idx)
    groups = pd.Series(np.where(risk > risk.median(), "high", "low"), index=idx)
    grid = np.quantile(time, [0.2, 0.4, 0.6])
    surv = pd.DataFrame(cox.predict_survival_function(X[["f0", "f1"]], grid), index=idx)
    clinical = pd.DataFrame({"age": rng.normal(60, 8, N), "radscore": 0.7 * z[:, 0] + rng.normal(size=N)}, index=idx)
    return Data(X, y, score, p_old, p_new, time, event, risk, groups, surv, grid, clinical)


# The four ways a case passes its outcome-like vectors (``mix(vector, seed)``):
def as_is(v, seed):  # aligned Series
    return v


def shuffled(v, seed):  # the same Series, rows shuffled: must give the aligned result
    return v.sample(frac=1, random_state=seed)


def in_order_numpy(v, seed):  # numpy in row order: the unchanged positional path, must give the aligned result
    return v.to_numpy()


def shuffled_numpy(v, seed):  # shuffled values paired by position: what a shuffled Series silently gave before
    return v.sample(frac=1, random_state=seed).to_numpy()


# --------------------------------------------------------------------------- comparison


def assert_same(a, b) -> None:
    """Exact (bitwise) equality of nested results: dicts, frames, series, arrays, dataclasses, floats."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True)
    elif dataclasses.is_dataclass(a):
        assert_same(dataclasses.asdict(a), dataclasses.asdict(b))
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, z in zip(a, b, strict=True):
            assert_same(x, z)
    elif isinstance(a, np.ndarray):
        if a.dtype.names:  # structured
            assert a.dtype == b.dtype and all(np.array_equal(a[n], b[n]) for n in a.dtype.names)
        else:
            np.testing.assert_array_equal(a, b)
    elif isinstance(a, float):
        assert (np.isnan(a) and np.isnan(b)) or a == b, (a, b)
    else:
        assert a == b, (a, b)


def differs(a, b) -> bool:
    try:
        assert_same(a, b)
    except AssertionError:
        return True
    return False


# --------------------------------------------------------------------------- cases
# Each case: (d, mix) -> a comparable result. ``mix`` transforms every vector that the test reorders;
# the first vector of a stats call (the reference) is left as is.

_TH = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
_SEL_STEPS = [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.5}, {"step": "lasso", "Cs": 8, "cv": 3}]


def _logistic():
    return build_pipeline([("scale", StandardScaler())], make_classifier("logistic"))


def _survival_table(d: Data, mix: Callable) -> pd.DataFrame:
    return survival_metrics_table(
        d.time, mix(d.event, 1), {"cox": mix(d.risk, 2)}, [float(np.median(d.time))], d.time.to_numpy(), d.event.to_numpy(),
        survival_probabilities={"cox": mix(d.surv, 3)}, ibs_times=d.grid, n_bootstrap=20,
    )


def _pipeline(d: Data, mix: Callable):
    pipe = build_selector(_SEL_STEPS).fit(d.X, mix(d.y, 1))
    return pipe["lasso"].coef_, radscore(d.X, pipe)


STATS_CASES = {
    "auc_ci": lambda d, mix: stats.auc_ci(d.y, mix(d.score, 1)),
    "auc_ci_bootstrap": lambda d, mix: stats.auc_ci(d.y, mix(d.score, 1), method="bootstrap", n_bootstrap=200),
    "delong_test": lambda d, mix: stats.delong_test(d.y, mix(d.p_old, 1), mix(d.p_new, 2)),
    "binary_metrics": lambda d, mix: stats.binary_metrics(d.y, mix(d.p_new, 1), 0.5, n_bootstrap=200),
    "nri_continuous": lambda d, mix: stats.nri(d.y, mix(d.p_old, 1), mix(d.p_new, 2)),
    "nri_categorical": lambda d, mix: stats.nri(d.y, mix(d.p_old, 1), mix(d.p_new, 2), cutoffs=[0.3, 0.6]),
    "idi": lambda d, mix: stats.idi(d.y, mix(d.p_old, 1), mix(d.p_new, 2)),
    "hosmer_lemeshow": lambda d, mix: stats.hosmer_lemeshow(d.y, mix(d.p_new, 1), groups=5),
    "calibration_slope_intercept": lambda d, mix: stats.calibration_slope_intercept(d.y, mix(d.p_new, 1)),
    "brier_score": lambda d, mix: stats.brier_score(d.y, mix(d.p_new, 1)),
    "scaled_brier_score": lambda d, mix: stats.scaled_brier_score(d.y, mix(d.p_new, 1)),
    "net_benefit": lambda d, mix: stats.net_benefit(d.y, mix(d.p_new, 1), _TH),
}

SURVIVAL_CASES = {
    "CoxModel.fit": lambda d, mix: CoxModel().fit(d.X[["f0", "f1"]], mix(d.time, 1), mix(d.event, 2)).coef_,
    "CoxModel.score": lambda d, mix: CoxModel().fit(d.X[["f0", "f1"]], d.time, d.event).score(d.X[["f0", "f1"]], mix(d.time, 1), mix(d.event, 2)),
    "RandomSurvivalForest.fit": lambda d, mix: RandomSurvivalForest(n_estimators=10).fit(d.X, mix(d.time, 1), mix(d.event, 2)).predict_risk(d.X),
    "harrell_c": lambda d, mix: harrell_c(d.time, mix(d.event, 1), mix(d.risk, 2), n_bootstrap=50),
    "time_dependent_auc": lambda d, mix: time_dependent_auc(
        (d.time.to_numpy(), d.event.to_numpy()), (d.time, mix(d.event, 1)), mix(d.risk, 2), d.grid[:2], n_bootstrap=20
    ),
    "integrated_brier_score": lambda d, mix: integrated_brier_score(
        (d.time.to_numpy(), d.event.to_numpy()), (d.time, mix(d.event, 1)), mix(d.surv, 2), d.grid, n_bootstrap=20
    ),
    "risk_groups_maxstat": lambda d, mix: risk_groups(d.risk, method="maxstat", time_train=mix(d.time, 1), event_train=mix(d.event, 2)),
    "km_by_group": lambda d, mix: (lambda km: (km.summary, km.test_statistic))(km_by_group(d.time, mix(d.event, 1), mix(d.groups, 2))),
    "survival_metrics_table": _survival_table,
    "to_structured": lambda d, mix: to_structured(d.time, mix(d.event, 1)),
}

SELECTION_CASES = {
    "UnivariateFilter.fit": lambda d, mix: UnivariateFilter(p_threshold=0.5).fit(d.X, mix(d.y, 1)).pvalues_,
    "CorrelationFilter.fit": lambda d, mix: (lambda c: (c.relevance_, c.selected_features_))(
        CorrelationFilter(threshold=0.5, relevance="auc").fit(d.X, mix(d.y, 1))
    ),
    "MRMRSelector.fit": lambda d, mix: MRMRSelector(k=3).fit(d.X, mix(d.y, 1)).relevance_,
    "LassoSelector.fit": lambda d, mix: LassoSelector(Cs=8, cv=3).fit(d.X, mix(d.y, 1)).coef_,
    "build_selector_pipeline": _pipeline,
}

MODEL_CASES = {
    "youden_threshold": lambda d, mix: youden_threshold(d.y, mix(d.p_new, 1)),
    "tune": lambda d, mix: (lambda m: (m.oof_proba_, m.threshold_))(tune(_logistic(), d.X, mix(d.y, 1), search="none", cv=3)),
    "ScoreStacker.fit": lambda d, mix: ScoreStacker(estimators=[("a", _logistic(), ["f0", "f2"]), ("b", _logistic(), ["f1", "f3"])], cv=3)
    .fit(d.X, mix(d.y, 1))
    .meta_coef_,
    "model_grid": lambda d, mix: model_grid({"b": d.X}, mix(d.y, 1), {"b": d.X}, mix(d.y, 2), algorithms=["logistic"], search="none", cv=3),
    "NomogramModel.fit": lambda d, mix: NomogramModel().fit(d.clinical, mix(d.y, 1)).params_,
    "RadScoreAugmenter.fit": lambda d, mix: RadScoreAugmenter(steps=_SEL_STEPS[::2], clinical=["f5"]).fit(d.X, mix(d.y, 1)).selector_["lasso"].coef_,
}

ALL_CASES = {**STATS_CASES, **SURVIVAL_CASES, **SELECTION_CASES, **MODEL_CASES}


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_shuffled_series_give_the_aligned_result(d, name):
    case = ALL_CASES[name]
    aligned = case(d, as_is)
    assert_same(case(d, shuffled), aligned)  # paired by patient, not by row
    assert_same(case(d, in_order_numpy), aligned)  # aligned input: bitwise what the positional path gives
    assert differs(case(d, shuffled_numpy), aligned), "positional pairing of the shuffled values should change the result"


# --------------------------------------------------------------------------- mismatched patients


def _drop(v, *labels):
    return v.drop(list(labels))


MISMATCH = {
    "auc_ci": (lambda d: stats.auc_ci(d.y, _drop(d.score, "P004", "P017")), "score has no value for 2 patient(s) of y: P004, P017"),
    "delong_test": (lambda d: stats.delong_test(d.y, d.p_old, _drop(d.p_new, "P009")), "score_b has no value for 1 patient(s) of y: P009"),
    "brier_score": (lambda d: stats.brier_score(_drop(d.y, "P003"), d.p_new), "p has 1 patient(s) not in y: P003"),
    "net_benefit": (lambda d: stats.net_benefit(d.y, d.p_new.rename({"P001": "X001"}), _TH), "no value for 1 patient(s) of y: P001"),
    "CoxModel.fit": (lambda d: CoxModel().fit(d.X[["f0"]], _drop(d.time, "P011"), d.event), "time has no value for 1 patient(s) of X: P011"),
    "harrell_c": (lambda d: harrell_c(d.time, d.event, _drop(d.risk, "P020"), n_bootstrap=5), "risk has no value for 1 patient(s) of time: P020"),
    "time_dependent_auc": (
        lambda d: time_dependent_auc((d.time, d.event), (d.time, d.event), _drop(d.risk, "P002"), d.grid[:1], n_bootstrap=5),
        "risk has no value for 1 patient(s) of test_surv time: P002",
    ),
    "km_by_group": (lambda d: km_by_group(d.time, _drop(d.event, "P030"), d.groups), "event has no value for 1 patient(s) of time: P030"),
    "UnivariateFilter.fit": (lambda d: UnivariateFilter().fit(d.X, _drop(d.y, "P005")), "y has no value for 1 patient(s) of X: P005"),
    "build_selector": (lambda d: build_selector(_SEL_STEPS).fit(d.X.iloc[:-1], d.y), "y has 1 patient(s) not in X: P059"),
    "tune_extra_patient": (lambda d: tune(_logistic(), d.X.iloc[1:], d.y, search="none", cv=3), "y has 1 patient(s) not in X: P000"),
    "model_grid": (
        lambda d: model_grid({"b": d.X}, _drop(d.y, "P006"), algorithms=["logistic"], search="none", cv=3),
        "y_train has no value for 1 patient(s) of blocks['b']: P006",
    ),
    "youden_threshold": (lambda d: youden_threshold(d.y, _drop(d.p_new, "P012")), "p has no value for 1 patient(s) of y: P012"),
    "NomogramModel.fit": (lambda d: NomogramModel().fit(d.clinical, _drop(d.y, "P040")), "y has no value for 1 patient(s) of X: P040"),
    "radscore_table_extra": (
        lambda d: radscore_table(d.X.iloc[1:], build_selector(_SEL_STEPS).fit(d.X, d.y), outcome=d.y),
        "outcome has 1 patient(s) not in table: P000",
    ),
}


@pytest.mark.parametrize("name", list(MISMATCH))
def test_mismatched_patients_raise_with_the_fix(d, name):
    call, expected = MISMATCH[name]
    with pytest.raises(InputDataError) as info:
        call(d)
    message = str(info.value)
    assert expected in message
    assert "indexed by the same patients as" in message  # says how to fix it
    assert len(message) < 300


def test_default_range_index_beside_patient_labels_is_an_error_not_positional(d):
    plain = d.y.reset_index(drop=True)  # same values, same order, but labelled 0..n-1
    with pytest.raises(InputDataError, match=r"y has no value for 60 patient\(s\) of X: P000, P001, P002, P003, P004, \.\.\..*default 0\.\.n-1 index"):
        UnivariateFilter().fit(d.X, plain)
    with pytest.raises(InputDataError, match="default 0..n-1 index"):
        CoxModel().fit(d.X[["f0"]], d.time.reset_index(drop=True), d.event)
    with pytest.raises(InputDataError, match="default 0..n-1 index"):
        stats.auc_ci(d.y, d.score.reset_index(drop=True))


def test_duplicated_labels_are_rejected(d):
    dup = pd.concat([d.y.iloc[:-1], d.y.iloc[:1]])  # P000 twice, P059 missing
    with pytest.raises(InputDataError, match=r"y has 1 duplicated patient label\(s\): P000"):
        UnivariateFilter().fit(d.X, dup)
    with pytest.raises(InputDataError, match=r"X has 1 duplicated patient label\(s\): P000"):
        CoxModel().fit(pd.concat([d.X.iloc[:-1], d.X.iloc[:1]])[["f0"]], d.time, d.event)


def test_many_missing_patients_keep_the_message_short(d):
    other = d.score.rename(lambda p: "Q" + p[1:] + "-with-a-long-identifier-suffix")
    with pytest.raises(InputDataError) as info:
        stats.auc_ci(d.y, other)
    message = str(info.value)
    assert "60 patient(s) of y" in message and "60 patient(s) not in y" in message and len(message) < 300


# --------------------------------------------------------------------------- numpy stays positional


def test_numpy_inputs_are_positional(d):
    assert_same(stats.auc_ci(d.y.to_numpy(), d.score.to_numpy()), stats.auc_ci(d.y, d.score))
    # one Series with an array: nothing to align with, so positional (as before)
    sh = d.score.sample(frac=1, random_state=0)
    assert_same(stats.auc_ci(d.y.to_numpy(), sh), stats.auc_ci(d.y.to_numpy(), sh.to_numpy()))
    # numpy X with Series time/event: rows positional, but time and event are still paired with each other
    Xn = d.X[["f0", "f1"]].to_numpy()
    a = CoxModel().fit(Xn, d.time, d.event).coef_.to_numpy()
    b = CoxModel().fit(Xn, d.time, d.event.sample(frac=1, random_state=3)).coef_.to_numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, CoxModel().fit(d.X[["f0", "f1"]], d.time, d.event).coef_.to_numpy())
    # numpy X with a Series y in a selection step: positional
    u = UnivariateFilter(p_threshold=0.5)
    np.testing.assert_array_equal(u.fit(d.X.to_numpy(), d.y).pvalues_.to_numpy(), u.fit(d.X, d.y).pvalues_.to_numpy())


def test_numpy_length_mismatch_keeps_its_error(d):
    with pytest.raises(InputDataError, match="score has 59 values but y has 60"):
        stats.auc_ci(d.y.to_numpy(), d.score.to_numpy()[:-1])
    with pytest.raises(ValueError, match="X has 60 rows but time/event have 59"):
        CoxModel().fit(d.X[["f0"]], d.time.to_numpy()[:-1], d.event.to_numpy()[:-1])


def test_radscore_table_outcome_follows_patients(d):
    pipe = build_selector(_SEL_STEPS).fit(d.X, d.y)
    out = radscore_table(d.X, pipe, outcome=d.y.sample(frac=1, random_state=0))
    pd.testing.assert_series_equal(out["outcome"], d.y.rename("outcome"), check_exact=True)
    pd.testing.assert_frame_equal(out, radscore_table(d.X, pipe, outcome=d.y), check_exact=True)


# --------------------------------------------------------------------------- the helper itself


def test_align_helpers(d):
    # already aligned: the very same object (so results cannot change by a bit)
    assert align_to_index(d.X.index, d.y) is d.y
    assert align_series(("y", d.y), ("s", d.score))[1] is d.score
    sh = d.y.sample(frac=1, random_state=0)
    out = align_to_index(d.X.index, sh)
    assert out.index.equals(d.X.index) and out.dtype == d.y.dtype  # integer labels stay integers
    pd.testing.assert_series_equal(out, d.y, check_exact=True)
    # DataFrames are aligned by rows
    rows = align_series(("y", d.y), ("surv", d.surv.sample(frac=1, random_state=1)))[1]
    pd.testing.assert_frame_equal(rows, d.surv, check_exact=True)
    # non-pandas values pass through untouched; the first pandas vector is the reference
    arr = d.y.to_numpy()
    got = align_series(("a", arr), ("b", sh), ("c", d.y))
    assert got[0] is arr and got[1] is sh and got[2].index.equals(sh.index)
    assert align_to_frame(d.X.to_numpy(), ("t", d.time), ("e", d.event.iloc[::-1]))[1].index.equals(d.time.index)
    assert align_to_frame(d.X, ("y", sh))[0].index.equals(d.X.index)
