"""Notebook 06's study-level statistics from prediction tables (the statistics themselves are pinned in test_stats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.data.manifest import load_study
from helpers.learning.survival import harrell_c
from helpers.settings.study import load_config
from helpers.stats import auc_ci, delong_test
from helpers.steps.statistics import (
    StudyPredictions,
    clinical_characteristics,
    load_predictions,
    model_statistics,
    subgroup_values,
    survival_statistics,
)


def _predictions(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n in (("train", 70), ("test", 30)):
        patients = [f"{cohort}{i:03d}" for i in range(n)]
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        strong = 1 / (1 + np.exp(-(2.5 * (y - 0.5) + rng.normal(0, 1, n))))
        weak = 1 / (1 + np.exp(-(0.8 * (y - 0.5) + rng.normal(0, 1, n))))
        for model, p, thr, fam in (("strong", strong, 0.5, "main"), ("weak", weak, 0.45, "main"), ("CT / tumour (svm)", weak, 0.4, "block")):
            rows.append(pd.DataFrame({"model": model, "family": fam, "patient": patients, "cohort": cohort, "outcome": y, "probability": p,
                                      "threshold": thr, "out_of_fold": cohort == "train"}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def study(planted_feature_study):
    folder, truth = planted_feature_study
    cfg = load_config(folder / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    return cfg, manifest, patients, truth


def test_model_statistics_tables_agree_with_the_stats_functions(study):
    cfg, manifest, _, truth = study
    preds = _predictions()
    # The planted manifest's patients are S000..S099; map the synthetic ones onto them for the subgroup lookup.
    ids = {p: f"S{i:03d}" for i, p in enumerate(pd.unique(preds["patient"]))}
    preds["patient"] = preds["patient"].map(ids)
    tables = model_statistics(StudyPredictions(preds, cohorts=["train", "test"]), cfg, manifest)
    assert set(tables) == {"performance", "pairwise_comparison", "calibration", "subgroup_performance_mr_t1_scanner"}
    perf = tables["performance"].set_index(["model", "cohort"])
    assert len(perf) == 6  # block models are in the performance table ...
    sub = preds[(preds["model"] == "strong") & (preds["cohort"] == "test")]
    ref = auc_ci(sub["outcome"], sub["probability"], "delong")
    assert perf.loc[("strong", "test"), "auc"] == pytest.approx(ref["auc"], abs=1e-12)
    assert perf.loc[("strong", "test"), "auc_lower"] == pytest.approx(ref["lower"], abs=1e-12)
    pair = tables["pairwise_comparison"]
    assert len(pair) == 2 and set(pair["cohort"]) == {"train", "test"}  # ... the pairwise table compares the main models only
    weak = preds[(preds["model"] == "weak") & (preds["cohort"] == "test")]
    # rows of two models in the long table: paired by position, so compare values, not the long table's row labels
    d = delong_test(sub["outcome"].to_numpy(), sub["probability"].to_numpy(), weak["probability"].to_numpy())
    row = pair[pair["cohort"] == "test"].iloc[0]
    assert {row["model_a"], row["model_b"]} == {"strong", "weak"}
    p_col = next(c for c in pair.columns if c.lower() in ("delong_p", "p_delong"))
    assert row[p_col] == pytest.approx(d["p"], rel=1e-10)
    assert set(tables["calibration"]["model"]) == {"strong", "weak"}
    subgroups = tables["subgroup_performance_mr_t1_scanner"]
    expected = {truth["scanner"][p] for p in preds["patient"]}
    assert set(subgroups["subgroup"]) == {f"scanner {s}" for s in expected}


def test_reference_model_must_exist(study):
    cfg, manifest, _, _ = study
    cfg = cfg.model_copy(update={"statistics": cfg.statistics.model_copy(update={"reference_model": "nope", "subgroups": ()})})
    with pytest.raises(ValueError, match="reference_model 'nope' is not a compared model"):
        model_statistics(StudyPredictions(_predictions(), cohorts=["train", "test"]), cfg, manifest)


def test_subgroup_values_from_acquisition_records_or_manifest(study):
    cfg, manifest, _, truth = study
    values = subgroup_values(manifest, cfg, "MR_T1", "scanner")
    assert values.to_dict() == {p: f"scanner {s}" for p, s in truth["scanner"].items()}
    with pytest.raises(ValueError, match="not an acquisition field"):
        subgroup_values(manifest, cfg, "MR_T1", "no_such_field")


def test_table_one_per_cohort_and_outcome(study):
    cfg, manifest, patients, _ = study
    tables = clinical_characteristics(patients, manifest, cfg)
    assert set(tables) == {"table_one_by_cohort", "table_one_by_outcome_train", "table_one_by_outcome_test"}
    text = tables["table_one_by_cohort"].to_string()
    assert "age" in text and "grade" in text and "sex" in text


@pytest.mark.slow
def test_survival_statistics_per_cohort(study):
    cfg, _, patients, _ = study
    rng = np.random.default_rng(1)
    rows = []
    cohort = pd.Series(["train"] * 70 + ["test"] * 30, index=patients.index)
    for model in ("Cox (penalised)", "Random survival forest"):
        risk = -patients["time_months"].to_numpy() + rng.normal(0, 20, len(patients))
        frame = pd.DataFrame({"model": model, "patient": patients.index, "cohort": cohort.to_numpy(), "time": patients["time_months"].to_numpy(),
                              "event": patients["metastasis"].to_numpy(), "risk": risk, "risk_group": "low", "out_of_fold": cohort.eq("train").to_numpy()})
        for t in (6.0, 12.0, 24.0, 36.0):
            frame[f"S@{t:g}"] = np.exp(-t / 40 * np.exp(risk / 40))
        rows.append(frame)
    preds = StudyPredictions(pd.DataFrame(), survival=pd.concat(rows, ignore_index=True), cohorts=["train", "test"])
    table = survival_statistics(preds, cfg)["survival_metrics"]
    assert len(table) == 4 and list(pd.unique(table["cohort"])) == ["train", "test"]
    test = rows[0][rows[0]["cohort"] == "test"]
    expected = harrell_c(test["time"], test["event"], test["risk"], n_bootstrap=10).estimate
    got = table[(table["cohort"] == "test") & (table["model"] == "Cox (penalised)")]["c_index"].iloc[0]
    assert got == pytest.approx(expected, abs=1e-12)
    assert table["ibs"].notna().all()


def test_load_predictions_needs_notebook_05(study):
    cfg, _, _, _ = study
    with pytest.raises(FileNotFoundError, match="run the models step"):
        load_predictions(cfg)


def test_resolution_pairs_and_nr_vs_sr_table(study):
    from helpers.settings.study import SuperResolutionConfig
    from helpers.steps.statistics import resolution_comparison_table, resolution_pairs

    cfg, _, _, _ = study
    preds = _predictions(3)
    # Rename the synthetic models into NR/SR grid models of one block, plus an SR model without an NR counterpart.
    names = {"strong": "MR_T1_SR / tumour (logistic)", "weak": "MR_T1 / tumour (logistic)", "CT / tumour (svm)": "MR_T1_SR / ring (svm)"}
    preds["model"] = preds["model"].map(names)
    assert resolution_pairs(list(pd.unique(preds["model"])), cfg).empty  # no super_resolution in the config: nothing pairs
    sr_cfg = cfg.model_copy(update={"super_resolution": SuperResolutionConfig(series="MR_T1")})
    pairs = resolution_pairs(list(pd.unique(preds["model"])), sr_cfg)
    assert pairs.to_dict("records") == [{"block": "tumour", "algorithm": "logistic", "model_nr": "MR_T1 / tumour (logistic)",
                                         "model_sr": "MR_T1_SR / tumour (logistic)"}]
    table = resolution_comparison_table(StudyPredictions(preds, cohorts=["train", "test"]), sr_cfg)
    assert list(table["cohort"]) == ["train", "test"] and set(table["model_sr"]) == {"MR_T1_SR / tumour (logistic)"}
    for row in table.itertuples():
        part = preds[preds["cohort"] == row.cohort]
        sr = part[part["model"] == "MR_T1_SR / tumour (logistic)"]
        nr = part[part["model"] == "MR_T1 / tumour (logistic)"]
        ref = delong_test(sr["outcome"], sr["probability"].to_numpy(), nr["probability"].to_numpy())
        assert row.auc_sr == pytest.approx(ref["auc_a"], abs=1e-12) and row.auc_nr == pytest.approx(ref["auc_b"], abs=1e-12)
        assert row.delong_p == pytest.approx(ref["p"], abs=1e-12) and row.auc_sr > row.auc_nr  # the planted strong model is SR
