"""ITH cluster sweep (issue 15, seed 004 Table S2): one model per K's ITH score and one on a K set, fitted on training.

Checked against a hand-computed reference (scikit-learn on the same split), for leakage (held-out labels change
nothing fitted), the combined row, and the Cox C-index against lifelines' ``concordance_index``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.proportion import proportion_confint

from helpers.learning.ith_sweep import combined_ks, fit_ith_models, ith_columns, ith_cox_sweep, ith_sweep_table, k_label
from helpers.learning.models import DEFAULT_PARAMS


def _study(seed: int = 3, n: int = 120):
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient")
    y = pd.Series(rng.integers(0, 2, n), index=ids)
    ith = pd.DataFrame({f"ith_k{k}": 0.4 * y.to_numpy() * (k % 3 + 1) / 3 + rng.normal(0, 1, n) for k in (2, 3, 4, 5, 6)}, index=ids)
    cohort = pd.Series(np.repeat(["training", "validation", "external_test"], [60, 30, 30]), index=ids)
    time = pd.Series(rng.exponential(30, n) * np.exp(-0.5 * ith["ith_k3"].to_numpy()), index=ids)
    event = pd.Series((rng.random(n) < 0.7).astype(int), index=ids)
    return ith, y, cohort, time, event


def _sweep(ith, y, cohort, **kw):
    train = cohort.index[cohort == "training"]
    models = fit_ith_models(ith, y.loc[train], combined=(2, 3, 4, 5), random_state=0, cv=5, **kw)
    return models, ith_sweep_table(models, ith, y, cohort, ["training"], ["validation", "external_test"])


def test_k_sets_and_labels() -> None:
    assert ith_columns(["patient", "ith_k10", "ith_k2", "cohort"]) == {2: "ith_k2", 10: "ith_k10"}
    assert combined_ks([2, 3, 4], [2, 3, 4, 5]) == [2, 3, 4]
    assert k_label([3]) == "3" and k_label([2, 3, 4, 5]) == "2-5" and k_label([2, 3, 5]) == "2, 3, 5"


def test_values_equal_a_hand_computed_reference() -> None:
    ith, y, cohort, _, _ = _study()
    _, table = _sweep(ith, y, cohort)
    assert list(table["clusters"]) == ["2", "3", "4", "5", "6", "2-5"]  # one row per K, the combined set last
    train = cohort.index[cohort == "training"]
    for label, cols in (("4", ["ith_k4"]), ("2-5", ["ith_k2", "ith_k3", "ith_k4", "ith_k5"])):
        row = table.set_index("clusters").loc[label]
        ref = make_pipeline(StandardScaler(), LogisticRegression(random_state=0, **DEFAULT_PARAMS["logistic"]))
        Xt, yt = ith.loc[train, cols], y.loc[train]
        oof = np.empty(len(train))
        for fit, val in StratifiedKFold(5, shuffle=True, random_state=0).split(Xt, yt):
            oof[val] = ref.fit(Xt.iloc[fit], yt.iloc[fit]).predict_proba(Xt.iloc[val])[:, 1]
        fpr, tpr, thr = roc_curve(yt, oof)
        threshold = thr[np.argmax(tpr - fpr)]
        assert row["threshold"] == pytest.approx(threshold)
        assert row["oof_auc"] == pytest.approx(roc_auc_score(yt, oof))
        ref.fit(Xt, yt)
        for c in ("validation", "external_test"):
            idx = cohort.index[cohort == c]
            p = ref.predict_proba(ith.loc[idx, cols])[:, 1]
            correct = int(((p >= threshold).astype(int) == y.loc[idx].to_numpy()).sum())
            assert row[f"auc_{c}"] == pytest.approx(roc_auc_score(y.loc[idx], p))
            assert row[f"accuracy_{c}"] == pytest.approx(correct / len(idx))
            lo, hi = proportion_confint(correct, len(idx), method="wilson")
            assert (row[f"accuracy_{c}_lower"], row[f"accuracy_{c}_upper"]) == pytest.approx((lo, hi))
            assert row[f"auc_{c}_lower"] <= row[f"auc_{c}"] <= row[f"auc_{c}_upper"]


def test_held_out_labels_change_nothing_fitted() -> None:
    ith, y, cohort, _, _ = _study()
    models, table = _sweep(ith, y, cohort)
    flipped = y.copy()
    test = cohort.index[cohort != "training"]
    flipped.loc[test] = 1 - flipped.loc[test]
    models2, table2 = _sweep(ith, flipped, cohort)
    for label in models:
        assert models[label].threshold_ == models2[label].threshold_
        np.testing.assert_array_equal(models[label].positive_proba(ith[models[label].feature_names_in_]),
                                      models2[label].positive_proba(ith[models2[label].feature_names_in_]))
    fitted = ["clusters", "n_features", "threshold", *[c for c in table.columns if c.startswith("oof_")]]
    pd.testing.assert_frame_equal(table[fitted], table2[fitted])
    assert not np.allclose(table["auc_external_test"], table2["auc_external_test"])  # the held-out columns do move


def test_combined_row_is_clipped_and_skipped_with_one_k() -> None:
    ith, y, cohort, _, _ = _study()
    train = cohort.index[cohort == "training"]
    models = fit_ith_models(ith[["ith_k2", "ith_k3"]], y.loc[train], combined=(2, 3, 4, 5))
    assert list(models) == ["2", "3", "2-3"] and models["2-3"].feature_names_in_ == ["ith_k2", "ith_k3"]
    assert list(fit_ith_models(ith[["ith_k2", "ith_k6"]], y.loc[train], combined=(2, 3, 4, 5))) == ["2", "6"]


def test_random_forest_with_smote_runs_on_training_only() -> None:
    ith, y, cohort, _, _ = _study()
    models, table = _sweep(ith, y, cohort, algorithm="random_forest", smote=True)
    assert "smote" in models["2"].pipeline_.named_steps and table[["auc_validation", "oof_auc"]].notna().all().all()


def test_cox_c_index_equals_lifelines_concordance() -> None:
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index

    ith, _, cohort, time, event = _study()
    table = ith_cox_sweep(ith, time, event, cohort, ["training"], ["validation", "external_test"], n_bootstrap=50).set_index("clusters")
    train = cohort.index[cohort == "training"]
    for k in (2, 3, 6):
        col = f"ith_k{k}"
        cph = CoxPHFitter().fit(pd.DataFrame({"x": ith.loc[train, col], "t": time.loc[train], "e": event.loc[train]}), "t", "e")
        sign = np.sign(cph.params_["x"])  # a univariate Cox risk is monotone in the score, in the direction of its coefficient
        for c in ("validation", "external_test"):
            idx = cohort.index[cohort == c]
            expected = concordance_index(time.loc[idx], -sign * ith.loc[idx, col], event.loc[idx])
            assert table.loc[str(k), f"c_index_{c}"] == pytest.approx(expected)
            assert table.loc[str(k), f"c_index_{c}_lower"] <= expected <= table.loc[str(k), f"c_index_{c}_upper"]
    assert table["oof_c_index"].between(0, 1).all() and "2-5" in table.index
