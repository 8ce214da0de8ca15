"""Endpoints derived from a continuous marker by a fixed threshold (seed study 000: Ki-67 high vs low).

``endpoints.binary_from`` names the marker column, the threshold and the operator; ``endpoints.binary`` names the
derived 0/1 column, which every later step reads like any binary endpoint. The marker's distribution by band and
cohort is the seed's Appendix S3 table (``marker_distribution``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.data.manifest import load_patient_table, load_study
from helpers.errors import ConfigError, ManifestError
from helpers.settings.study import load_config
from helpers.stats import band_distribution
from helpers.steps.statistics import clinical_characteristics, marker_distribution

RULE = {"column": "ki67_index", "threshold": 20, "bands": [0, 10, 20, 50, 100]}


def _with_marker(study: Path, values: list, rule: dict | None = None, binary: str = "ki67_high") -> Path:
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    cfg["endpoints"] = {"binary": binary, "binary_from": rule or RULE}
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "ki67_index": values}).to_csv(study / "patients.csv", index=False)
    return study


@pytest.mark.parametrize(("operator", "expected"), [(">=", [0, 1, 1, 1]), (">", [0, 0, 1, 1])])
def test_binary_endpoint_is_derived_from_the_marker_at_the_threshold(tiny_study: Path, operator: str, expected: list) -> None:
    _with_marker(tiny_study, [5.0, 20.0, 35.5, 90], {**RULE, "operator": operator})
    manifest, patients = load_study(load_config(tiny_study / "study.yaml"), check_images=False)
    assert patients["ki67_high"].tolist() == expected
    assert patients["ki67_index"].tolist() == [5.0, 20.0, 35.5, 90.0]


def test_marker_that_is_not_a_number_is_named_with_row_patient_and_fix(tiny_study: Path) -> None:
    _with_marker(tiny_study, ["5", "high", "35", "90"])
    with pytest.raises(ManifestError) as err:
        load_patient_table(load_config(tiny_study / "study.yaml"))
    issue = next(i for i in err.value.issues if i.column == "ki67_index")
    assert (issue.row, issue.patient) == (2, "P02")
    assert "'high' is not a number" in issue.problem and "give the ki67_index value as a number" in issue.fix


def test_missing_marker_value_is_a_missing_endpoint_naming_the_marker(tiny_study: Path) -> None:
    _with_marker(tiny_study, [5, None, 35, 90])
    with pytest.raises(ManifestError) as err:
        load_study(load_config(tiny_study / "study.yaml"), check_images=False)
    issue = next(i for i in err.value.issues if i.patient == "P02")
    assert issue.column == "ki67_index" and "derived endpoint 'ki67_high'" in issue.problem and "fill in ki67_index" in issue.fix


def test_derived_column_may_not_overwrite_a_column_of_the_table(tiny_study: Path) -> None:
    _with_marker(tiny_study, [5, 25, 35, 90])
    table = pd.read_csv(tiny_study / "patients.csv").assign(ki67_high=[1, 1, 1, 1])
    table.to_csv(tiny_study / "patients.csv", index=False)
    with pytest.raises(ManifestError, match="exists but endpoints.binary_from derives it"):
        load_patient_table(load_config(tiny_study / "study.yaml"))


@pytest.mark.parametrize(("endpoints", "message"), [
    ({"binary_from": RULE}, "needs endpoints.binary"),
    ({"binary": "ki67_index", "binary_from": RULE}, "must differ from binary_from.column"),
    ({"binary": "k", "binary_from": {**RULE, "bands": [0, 50, 20]}}, "bands must be at least two increasing edges"),
    ({"binary": "k", "binary_from": {**RULE, "operator": "<"}}, "binary_from.operator"),
])
def test_invalid_marker_rules_are_config_errors(tiny_study: Path, endpoints: dict, message: str) -> None:
    cfg = yaml.safe_load((tiny_study / "study.yaml").read_text())
    cfg["endpoints"] = endpoints
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_study / "study.yaml")


def test_band_distribution_counts_half_open_bands_with_the_top_edge_in_the_last_band() -> None:
    values = pd.Series([0, 9.99, 10, 19.9, 20, 50, 99, 100, np.nan, 120, -1], index=[f"p{i}" for i in range(11)])
    groups = pd.Series(["a"] * 6 + ["b"] * 5, index=values.index)
    table = band_distribution(values, groups, [0, 10, 20, 50, 100]).set_index("band")
    # By hand: a = {0, 9.99} in 0-10, {10, 19.9} in 10-20, {20} in 20-50, {50} in 50-100; b = {99, 100} in 50-100.
    assert table.index.tolist() == ["50%-100%", "20%-50%", "10%-20%", "0%-10%", "above 100%", "below 0%", "missing"]
    assert table.loc["0%-10%", "a"] == "2 (33.3)" and table.loc["50%-100%", "a"] == "1 (16.7)"
    assert table.loc["50%-100%", "b"] == "2 (40.0)" and table.loc["missing", "b"] == "1 (20.0)"
    assert table.loc["above 100%", "all"] == "1 (9.1)" and table.loc["below 0%", "all"] == "1 (9.1)"
    assert table.loc["50%-100%", "all"] == "3 (27.3)"


def test_marker_distribution_table_per_cohort_with_the_threshold_row(tiny_study: Path) -> None:
    _with_marker(tiny_study, [5, 25, 35, 90])
    cfg = load_config(tiny_study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    tables = clinical_characteristics(patients, manifest, cfg)  # no clinical variables: only the marker table
    assert list(tables) == ["marker_distribution"]
    table = tables["marker_distribution"].set_index("band")
    assert table.columns.tolist() == ["train", "test", "all"]
    assert table.loc["20%-50%", "train"] == "1 (50.0)" and table.loc["50%-100%", "test"] == "1 (50.0)"
    assert table.loc["ki67_high = 1 (ki67_index >= 20%)"].tolist() == ["1 (50.0)", "2 (100.0)", "3 (75.0)"]
    assert marker_distribution(patients, manifest.drop_duplicates("patient").set_index("patient")["cohort"],
                               cfg.model_copy(update={"endpoints": cfg.endpoints.model_copy(update={"binary_from": None})})) == {}
