"""The naming grammars of feature columns and model names (helpers.data.columns)."""

from __future__ import annotations

import pytest

from helpers.data.columns import (
    block_name,
    columns_of_series,
    deep_feature_name,
    feature_column,
    habitat_roi,
    model_name,
    parse_model_name,
    series_of_column,
    study_block_columns,
)

SERIES = ("CT", "MR_T1", "MR_T1_SR")


@pytest.mark.parametrize(("column", "series"), [
    ("MR_T1_SR_tumour_original_firstorder_Mean", "MR_T1_SR"),  # the longest prefix wins
    ("MR_T1_ring5mm_wavelet-LLH_glcm_Contrast", "MR_T1"),
    ("CT_habitat2_original_glszm_ZoneEntropy", "CT"),
    ("MR_T1_deep_pc03", "MR_T1"),
    ("age", None),
    ("CTX_tumour_a", None),  # a prefix needs the underscore
])
def test_series_of_column(column, series):
    assert series_of_column(column, SERIES) == series


def test_names_round_trip_and_blocks():
    cols = [feature_column("CT", "tumour", "original_firstorder_Mean"), feature_column("CT", habitat_roi(1), "original_glcm_Contrast"),
            feature_column("MR_T1", "tumour", "original_firstorder_Mean"), feature_column("MR_T1_SR", "tumour", "original_firstorder_Mean"),
            deep_feature_name("MR_T1", 1), "age"]
    assert cols[:2] == ["CT_tumour_original_firstorder_Mean", "CT_habitat1_original_glcm_Contrast"] and cols[4] == "MR_T1_deep_pc01"
    assert columns_of_series(cols, "MR_T1", SERIES) == [cols[2], cols[4]]
    assert columns_of_series(cols, ["CT", "MR_T1_SR"], SERIES) == [cols[0], cols[1], cols[3]]
    blocks = study_block_columns(cols, SERIES, ["tumour", "ring5mm"])
    assert blocks == {"CT / tumour": [cols[0]], "CT / habitats": [cols[1]], "MR_T1 / tumour": [cols[2]], "MR_T1 / deep": [cols[4]],
                      "MR_T1_SR / tumour": [cols[3]]}
    name = model_name(block_name("MR_T1", "tumour"), "random_forest")
    assert name == "MR_T1 / tumour (random_forest)" and parse_model_name(name) == ("MR_T1 / tumour", "random_forest")
    assert parse_model_name("Radiomics (logistic)") == ("Radiomics", "logistic")
    assert parse_model_name("Nomogram (clinical + Rad-score)") == ("Nomogram", "clinical + Rad-score")
    assert parse_model_name("Clinical") is None


@pytest.mark.parametrize(("name", "shown"), [("external_test", "external test"), ("training", "training"), ("MR_T1", "MR T1")])
def test_shown_name_writes_underscores_as_spaces(name, shown):
    from helpers.data.columns import shown_name

    assert shown_name(name) == shown
