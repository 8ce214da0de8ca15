"""Points a reviewer will raise: every rule fires exactly when its condition holds, on small crafted report trees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.reporting.supplement import review_points as rp
from helpers.settings.study import load_config

from .conftest import tiny_config


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path), sort_keys=False))
    return load_config(tmp_path / "study.yaml")  # cohorts: train (role train), test (role test); endpoint "outcome"


def _write(root: Path, rel: str, rows: list[dict]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def _run(cfg, root: Path, rule) -> list[rp.ReviewPoint]:
    return rp.review_points(cfg, root, rules=[rule])


def _split(root: Path, test_n: int, test_pos: int, train_n: int = 200, train_pos: int = 100) -> None:
    _write(root, "tables/cohort_split_counts.csv", [
        {"cohort": "train", "role": "train", "patients": train_n, "outcome=0": f"{train_n - train_pos} (x%)", "outcome=1": f"{train_pos} (y%)"},
        {"cohort": "test", "role": "test", "patients": test_n, "outcome=0": f"{test_n - test_pos} (x%)", "outcome=1": f"{test_pos} (y%)"},
    ])  # fmt: skip


def test_no_outputs_no_points(cfg, tmp_path):
    assert rp.review_points(cfg, tmp_path / "empty") == []


@pytest.mark.parametrize(("n", "pos", "fires"), [(18, 5, True), (300, 99, True), (300, 201, True), (250, 100, False), (200, 100, False)])
def test_small_evaluation_cohort(cfg, tmp_path, n, pos, fires):
    _split(tmp_path, n, pos)
    points = _run(cfg, tmp_path, rp.small_evaluation_cohort)
    assert len(points) == int(fires)
    if fires:
        assert points[0].severity == "major" and f"{n} patients, {pos} events" in points[0].text
        assert points[0].source == "tables/cohort_split_counts.csv"


@pytest.mark.parametrize(("train_pos", "n_features", "fires"), [(14, 13, True), (30, 4, True), (40, 4, False), (100, 10, False)])
def test_events_per_variable(cfg, tmp_path, train_pos, n_features, fires):
    _split(tmp_path, 300, 150, train_n=200, train_pos=train_pos)
    _write(tmp_path, "tables/radscore_coefficients.csv",
           [{"feature": "(intercept)", "coefficient": 0.1}] + [{"feature": f"f{i}", "coefficient": 1.0} for i in range(n_features)])
    points = _run(cfg, tmp_path, rp.events_per_variable)
    assert len(points) == int(fires)
    if fires:
        assert f"{train_pos / n_features:.1f} events per variable" in points[0].text


@pytest.mark.parametrize(("train_auc", "test_auc", "fires", "word"), [(0.70, 0.89, True, "above"), (0.90, 0.75, True, "falls"),
                                                                      (0.80, 0.85, False, ""), (0.80, 0.71, False, "")])
def test_auc_gap(cfg, tmp_path, train_auc, test_auc, fires, word):
    _write(tmp_path, "tables/final_model_summary.csv", [{"cohort": "test", "patients": 40, "auc": test_auc},
                                                        {"cohort": "train", "patients": 100, "auc": train_auc}])  # fmt: skip
    points = _run(cfg, tmp_path, rp.auc_gap)
    assert len(points) == int(fires)
    if fires:
        assert word in points[0].text and points[0].source == "tables/final_model_summary.csv"


def test_calibration_slope(cfg, tmp_path):
    _write(tmp_path, "tables/calibration.csv", [
        {"model": "A", "cohort": "test", "slope": 0.27, "slope_lower": -0.11, "slope_upper": 0.64},  # far, CI excludes 1: major
        {"model": "B", "cohort": "test", "slope": 1.6, "slope_lower": 0.5, "slope_upper": 2.7},  # far, CI holds 1: minor
        {"model": "C", "cohort": "test", "slope": 1.09, "slope_lower": 0.0, "slope_upper": 2.2},  # near 1
        {"model": "D", "cohort": "train", "slope": 0.3, "slope_lower": 0.1, "slope_upper": 0.5},  # training: not checked
    ])  # fmt: skip
    points = _run(cfg, tmp_path, rp.calibration_slope)
    assert [(p.severity, p.text.split(" ")[0]) for p in points] == [("major", "A"), ("minor", "B")]
    assert "too extreme" in points[0].text and "too moderate" in points[1].text


def test_degenerate_threshold(cfg, tmp_path):
    _write(tmp_path, "tables/performance.csv", [
        {"model": "A", "cohort": "test", "threshold": 0.9, "sensitivity": 0.0, "specificity": 1.0},
        {"model": "B", "cohort": "train", "threshold": 0.1, "sensitivity": 1.0, "specificity": 0.0},
        {"model": "C", "cohort": "test", "threshold": 0.5, "sensitivity": 0.1, "specificity": 0.9},
        {"model": "D", "cohort": "test", "threshold": 0.5, "sensitivity": "", "specificity": 0.9},
    ])  # fmt: skip
    points = _run(cfg, tmp_path, rp.degenerate_threshold)
    assert [p.text.split(" ")[0] for p in points] == ["A", "B"]
    assert "sensitivity 0" in points[0].text and "specificity 0" in points[1].text


def test_untrained_deep_weights(cfg, tmp_path):
    rows = [{"series": "MR", "weights": "sha256 abc"}, {"series": "CT", "weights": "sha256 def"}]
    _write(tmp_path, "tables/deep_feature_pca.csv", rows)
    assert _run(cfg, tmp_path, rp.untrained_deep_weights) == []
    rows[1]["weights"] = "random initialisation (untrained; set pretrained_weights)"
    _write(tmp_path, "tables/deep_feature_pca.csv", rows)
    points = _run(cfg, tmp_path, rp.untrained_deep_weights)
    assert len(points) == 1 and "of CT come from a randomly initialised" in points[0].text and points[0].severity == "major"


def test_in_sample_training_scores(cfg, tmp_path):
    oof = [{"model": "M", "cohort": "train", "out_of_fold": True}, {"model": "M", "cohort": "test", "out_of_fold": False}]
    _write(tmp_path, "features/model_predictions.csv", oof)
    _write(tmp_path, "features/radscores.csv", [{"patient": "a", "cohort": "train", "radscore": 1.0}])
    assert _run(cfg, tmp_path, rp.in_sample_training_scores) == []  # out-of-fold predictions; no Rad-score figure
    _write(tmp_path, "features/model_predictions.csv", [*oof, {"model": "N", "cohort": "train", "out_of_fold": False}])
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "radscore_distribution.png").write_bytes(b"png")
    points = _run(cfg, tmp_path, rp.in_sample_training_scores)
    assert [p.source for p in points] == ["features/model_predictions.csv", "figures/radscore_distribution.png"]
    assert "of N are in-sample" in points[0].text


def test_failed_units_and_excluded_data(cfg, tmp_path):
    _write(tmp_path, "tables/extraction_failures.csv", [{"patient": "", "series": "", "reason": ""}])
    _write(tmp_path, "tables/excluded_patients.csv", [{"patient": "", "reason": ""}])
    assert _run(cfg, tmp_path, rp.failed_units) == [] and _run(cfg, tmp_path, rp.excluded_data) == []
    _write(tmp_path, "tables/extraction_failures.csv", [{"patient": "P1", "series": "CT", "reason": "x"},
                                                        {"patient": "P1", "series": "MR", "reason": "y"}])  # fmt: skip
    _write(tmp_path, "tables/excluded_patients.csv", [{"patient": "P1", "reason": "x"}])
    _write(tmp_path, "tables/features_dropped_missing_values.csv", [{"feature": "f1"}, {"feature": "f2"}])
    failed = _run(cfg, tmp_path, rp.failed_units)
    assert len(failed) == 1 and failed[0].text.startswith("2 feature-extraction units failed (1 patient)")
    excluded = _run(cfg, tmp_path, rp.excluded_data)
    assert [(p.severity, p.source) for p in excluded] == [("major", "tables/excluded_patients.csv"),
                                                          ("minor", "tables/features_dropped_missing_values.csv")]
    assert excluded[0].text.startswith("1 patient was excluded") and excluded[1].text.startswith("2 features were dropped")


def test_small_subgroups(cfg, tmp_path):
    _write(tmp_path, "tables/subgroup_performance_ct_model.csv", [
        {"model": "M", "cohort": "test", "subgroup": "A", "n": 40, "events": 20},
        {"model": "M", "cohort": "test", "subgroup": "B", "n": 40, "events": 36},  # 4 non-events
        {"model": "N", "cohort": "test", "subgroup": "B", "n": 40, "events": 36},  # same subgroup, another model: listed once
        {"model": "M", "cohort": "test", "subgroup": "C", "n": 9, "events": 4},
    ])  # fmt: skip
    points = _run(cfg, tmp_path, rp.small_subgroups)
    assert len(points) == 1 and points[0].text.startswith("2 subgroups have fewer than 5")
    assert points[0].source == "tables/subgroup_performance_ct_model.csv"
    assert "B (test, 40 patients, 36 events); C (test, 9 patients, 4 events)" in points[0].text
    _write(tmp_path, "tables/subgroup_performance_ct_model.csv", [{"model": "M", "cohort": "test", "subgroup": "A", "n": 10, "events": 5}])
    assert _run(cfg, tmp_path, rp.small_subgroups) == []


def test_icc_keeps_few(cfg, tmp_path):
    rows = [{"series": "CT", "roi": "tumour", "extracted": 100, "constant": 0, "retained": 90},
            {"series": "MR", "roi": "tumour", "extracted": 100, "constant": 0, "retained": 20},
            {"series": "Total", "roi": "", "extracted": 200, "constant": 0, "retained": 5}]  # the Total row is not a block
    _write(tmp_path, "tables/icc_retained_counts.csv", rows)
    assert _run(cfg, tmp_path, rp.icc_keeps_few) == []
    rows[1]["retained"] = 19  # under 20% of 100
    rows[0].update(extracted=20, constant=11, retained=9)  # fewer than 10
    _write(tmp_path, "tables/icc_retained_counts.csv", rows)
    points = _run(cfg, tmp_path, rp.icc_keeps_few)
    assert len(points) == 1 and "CT tumour 9 of 9; MR tumour 19 of 100" in points[0].text


@pytest.mark.parametrize(("selected", "fires"), [(5, "upper"), (3, "lower"), (4, None)])
def test_habitat_k_at_edge(cfg, tmp_path, selected, fires):
    _write(tmp_path, "tables/habitat_calinski_harabasz.csv", [{"k": k, "calinski_harabasz": 1.0, "selected": k == selected} for k in (3, 4, 5)])
    points = _run(cfg, tmp_path, rp.habitat_k_at_edge)
    assert len(points) == int(fires is not None)
    if fires:
        assert f"K = {selected} was selected at the {fires} edge of the searched range 3-5" in points[0].text


def test_single_k_is_not_an_edge(cfg, tmp_path):
    _write(tmp_path, "tables/habitat_calinski_harabasz.csv", [{"k": 3, "calinski_harabasz": 1.0, "selected": True}])
    assert _run(cfg, tmp_path, rp.habitat_k_at_edge) == []


def test_points_are_ordered_major_first_and_reproducible(cfg, tmp_path):
    _split(tmp_path, 18, 5)
    _write(tmp_path, "tables/habitat_calinski_harabasz.csv", [{"k": k, "selected": k == 5} for k in (3, 4, 5)])
    _write(tmp_path, "tables/calibration.csv", [{"model": "A", "cohort": "test", "slope": 0.5, "slope_lower": 0.4, "slope_upper": 0.6}])
    points = rp.review_points(cfg, tmp_path)
    assert [p.rule for p in points] == ["small_evaluation_cohort", "calibration_slope", "prevalence_shift", "habitat_k_at_edge"]
    assert points == rp.review_points(cfg, tmp_path)
