"""Three-cohort designs (issue 15): training, an internal validation cohort and an external test cohort.

The validation cohort has one documented use: with ``models.final_selection: validation`` it chooses the final
model's algorithm among ``models.algorithms`` (and with ``models.threshold_from: validation`` the operating
threshold); test cohorts are never used for any choice. The fast tests check the config rules; the slow ones assert on
the end-to-end runs of the three-cohort examples (tests/conftest.py::example_run, shared with tests/test_examples.py):
example 001 (validate, QC, super-resolution, extraction, signature, models with ``final_selection: validation``,
statistics, supplement) for the choice, its reports and its leakage on the run's own modelling data, example 003
(habitats) for the ITH sweep's held-out columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.errors import ConfigError
from helpers.settings.study import load_config

#: The example whose final model's algorithm is chosen on its validation cohort (``models.final_selection: validation``).
CHOOSING = "001_nr_sr_three_cohorts"
#: The three-cohort example with habitats (ITH scores, the ITH sweep).
HABITATS = "003_habitats_deep_fusion"


# --------------------------------------------------------------------------- config rules (fast)


def _config(tmp_path: Path, cohorts: dict, **models: object) -> Path:
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path)
    cfg["cohorts"] = cohorts
    cfg.setdefault("models", {}).update(models)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


THREE = {"training": {"role": "train"}, "validation": {"role": "validation"}, "external_test": {"role": "test"}}


def test_three_cohorts_order_validation_before_tests(tmp_path) -> None:
    cohorts = {"external_test": {"role": "test"}, "training": {"role": "train"}, "validation": {"role": "validation"}}
    cfg = load_config(_config(tmp_path, cohorts, final_selection="validation"))
    assert cfg.validation_cohorts == ["validation"] and cfg.test_cohorts == ["external_test"]
    assert cfg.held_out_cohorts == ["validation", "external_test"]


def test_choices_on_validation_need_a_validation_cohort(tmp_path) -> None:
    two = {"training": {"role": "train"}, "external_test": {"role": "test"}}
    for key in ("final_selection", "threshold_from"):
        with pytest.raises(ConfigError, match=rf"models.{key} = validation needs a cohort with role 'validation'"):
            load_config(_config(tmp_path, two, **{key: "validation"}))
    assert load_config(_config(tmp_path, two)).models.final_selection == "configured"


def test_at_most_one_validation_cohort(tmp_path) -> None:
    with pytest.raises(ConfigError, match="at most one cohort may have role 'validation'"):
        load_config(_config(tmp_path, {**THREE, "validation_b": {"role": "validation"}}))


def test_statistics_tables_label_validation_and_test_apart(tmp_path) -> None:
    from helpers.steps.statistics import with_cohort_roles

    cfg = load_config(_config(tmp_path, THREE))
    table = pd.DataFrame({"model": ["a"] * 3, "cohort": ["external_test", "training", "validation"], "auc": [0.6, 0.7, 0.8]})
    out = with_cohort_roles(table, cfg)
    assert list(out["cohort"]) == ["training", "validation", "external_test"]
    assert list(out.columns[:3]) == ["model", "cohort", "role"]
    assert list(out["role"]) == ["training (out-of-fold)", "validation", "test"]


def test_methods_say_what_the_validation_cohort_decided() -> None:
    from helpers.reporting.supplement.methods import _cohort_use_text

    chose = _cohort_use_text({"validation": ["validation"], "test": ["external_test"], "decided": ["the final model's algorithm"]})[0]
    assert chose.startswith("The validation cohort (internal validation) was used to choose the final model's algorithm")
    assert chose.endswith("the external test cohort was used only to report performance, never for a choice.")
    nothing = _cohort_use_text({"validation": ["validation"], "test": ["a", "b"], "decided": []})[0]
    assert nothing.startswith("No choice was made on the validation cohort") and "the a and b cohorts were used only" in nothing
    assert _cohort_use_text({"validation": [], "test": ["external_test"], "decided": []}) == []


# --------------------------------------------------------------------------- end to end (slow)


@pytest.fixture
def three_cohort_run(example_run, example):
    """The config of example 001's run: training, internal validation (centre 1) and external test (centre 2).

    Tests using it are parametrized by the example's name (one pytest-xdist unit with the example's own test)."""
    assert example == CHOOSING
    cfg = load_config(example_run(example).folder / "study.yaml")
    assert cfg.models.final_selection == "validation" and cfg.models.algorithms == ("logistic", "random_forest")
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("example", [CHOOSING])
def test_three_cohort_study_reports_what_the_validation_cohort_decided(three_cohort_run) -> None:
    cfg = three_cohort_run
    tables = cfg.report_root / "tables"
    # The choice: every candidate with its training CV and validation AUC; the highest validation AUC is selected.
    sel = pd.read_csv(tables / "final_model_selection.csv")
    assert list(sel["candidate_algorithm"]) == ["logistic", "random_forest"] and sel["selected"].sum() == 1
    assert sel.loc[sel["selected"], "auc_validation"].iloc[0] == sel["auc_validation"].max()
    assert not any("external_test" in c for c in sel.columns)  # the test cohort took no part
    chosen = sel.loc[sel["selected"], "candidate_algorithm"].iloc[0]
    summary = pd.read_csv(tables / "final_model_summary.csv")
    assert list(summary["cohort"]) == ["training", "validation", "external_test"]
    # Held-out columns of the model grid: validation first, then the test cohort.
    grid = pd.read_csv(tables / "model_grid.csv")
    cols = [c for c in grid.columns if c.startswith(("auc_", "sensitivity_", "specificity_"))]
    assert cols[:3] == ["auc_validation", "sensitivity_validation", "specificity_validation"] and "test_auc" not in grid.columns
    # Statistics: validation and test cohorts are labelled apart.
    perf = pd.read_csv(tables / "performance.csv")
    assert perf.groupby("cohort")["role"].first().to_dict() == {"training": "training (out-of-fold)", "validation": "validation",
                                                                "external_test": "test"}  # fmt: skip
    assert f"Radiomics ({chosen})" in set(perf["model"])
    # The supplement says what the validation cohort was for.
    html = (cfg.report_root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    assert cfg.cohorts["validation"].description in html  # "centre 1, held out at random (internal validation)"
    assert "was used to choose the final model&#x27;s algorithm" in html or "was used to choose the final model's algorithm" in html
    assert "the external test cohort was used only to report performance, never for a choice" in html
    assert "by the highest AUC in the validation cohort" in html


@pytest.mark.slow
@pytest.mark.parametrize("example", [HABITATS])
def test_ith_sweep_of_a_three_cohort_study_reports_validation_before_test(example_run, example) -> None:
    cfg = load_config(example_run(example).folder / "study.yaml")
    assert cfg.validation_cohorts == ["validation"] and cfg.test_cohorts == ["external_test"]
    tables = cfg.report_root / "tables"
    grid = pd.read_csv(tables / "model_grid.csv")
    cols = [c for c in grid.columns if c.startswith(("auc_", "sensitivity_", "specificity_"))]
    assert cols[:3] == ["auc_validation", "sensitivity_validation", "specificity_validation"] and "test_auc" not in grid.columns
    sweep = pd.read_csv(tables / "ith_sweep.csv", dtype={"clusters": str})
    assert list(sweep["clusters"]) == ["2", "3", "4", "2-4"]  # ith_k_range [2, 4] (the test's setting); combined K = 2..5 clipped to 2..4
    assert sweep.columns.get_loc("auc_validation") < sweep.columns.get_loc("auc_external_test")
    assert {"oof_auc", "oof_accuracy_upper", "accuracy_external_test_lower", "auc_validation_upper"} <= set(sweep.columns)
    assert sweep[["oof_auc", "auc_validation", "auc_external_test"]].notna().all().all()
    html = (cfg.report_root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    assert "ITH score" in html and "Clusters (K)" in html


def _quick(cfg, **models):
    """The run's config with light selection steps (no inner LASSO CV), 3 folds and one Optuna trial per candidate: these
    tests check the choice, not the signature or the tuning."""
    steps = ({"step": "zscore"}, {"step": "univariate", "p_threshold": 0.2, "min_features": 2}, {"step": "mrmr", "k": 5})
    return cfg.model_copy(update={"signature": cfg.signature.model_copy(update={"steps": steps}),
                                  "models": cfg.models.model_copy(update={"cv": 3, "search": "optuna", "n_trials": 1, **models})})  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("example", [CHOOSING])
def test_test_labels_change_no_choice_and_validation_labels_only_the_choice(three_cohort_run) -> None:
    from helpers.data.manifest import load_study
    from helpers.steps.models import load_modelling_data, select_final_model

    cfg = _quick(three_cohort_run)
    _, patients = load_study(cfg, check_images=False)
    data = load_modelling_data(cfg, patients)
    final, table = select_final_model(data, cfg)
    test = data.cohort.index[data.cohort == "external_test"]
    permuted = data.y.copy()
    permuted.loc[test] = np.random.default_rng(0).permutation(permuted.loc[test].to_numpy())
    data.y = permuted
    final2, table2 = select_final_model(data, cfg)
    pd.testing.assert_frame_equal(table, table2)  # same candidates, same AUCs, same choice
    assert final2.threshold_ == final.threshold_
    pd.testing.assert_series_equal(final.positive_proba(data.X), final2.positive_proba(data.X))
    # Validation labels drive the choice (and nothing fitted): flipping them inverts every validation AUC.
    val = data.cohort.index[data.cohort == "validation"]
    flipped = permuted.copy()
    flipped.loc[val] = 1 - flipped.loc[val]
    data.y = flipped
    _, table3 = select_final_model(data, cfg)
    np.testing.assert_allclose(table3["auc_validation"], 1 - table["auc_validation"])
    pd.testing.assert_frame_equal(table3[["cv_auc_mean", "oof_auc"]], table[["cv_auc_mean", "oof_auc"]])
    assert table3.loc[table3["selected"], "candidate_algorithm"].iloc[0] == table3.loc[table3["auc_validation"].idxmax(), "candidate_algorithm"]


@pytest.mark.slow
@pytest.mark.parametrize("example", [CHOOSING])
def test_threshold_from_validation_moves_only_the_threshold(three_cohort_run) -> None:
    from helpers.data.manifest import load_study
    from helpers.learning.models import youden_threshold
    from helpers.steps.models import load_modelling_data, select_final_model

    cfg = _quick(three_cohort_run, final_selection="configured", threshold_from="validation")
    _, patients = load_study(cfg, check_images=False)
    data = load_modelling_data(cfg, patients)
    final, table = select_final_model(data, cfg)
    val = data.cohort.index[data.cohort == "validation"]
    assert final.threshold_ == youden_threshold(data.y.loc[val], final.positive_proba(data.X.loc[val]))
    assert "validation cohort" in final.threshold_rule and final.algorithm == "logistic"
    assert list(table["candidate_algorithm"]) == ["logistic"] and table["selected"].all()  # reported, not chosen
    assert table["threshold_from"].iloc[0] == "Youden's J on the validation cohort"


def test_a_validation_cohort_that_decides_needs_both_classes(tmp_path) -> None:
    from helpers.data.manifest import _validation_class_issues

    manifest = pd.DataFrame({"patient": ["a", "b", "c", "d"], "cohort": ["training", "training", "validation", "validation"]})
    patients = pd.DataFrame({"outcome": [0, 1, 1, 1]}, index=["a", "b", "c", "d"])
    deciding = load_config(_config(tmp_path, THREE, final_selection="validation"))
    issues = _validation_class_issues(deciding, manifest, patients)
    assert len(issues) == 1 and "validation cohort 'validation' has a single class of 'outcome'" in issues[0].problem
    assert _validation_class_issues(load_config(_config(tmp_path, THREE)), manifest, patients) == []  # reporting only: allowed
