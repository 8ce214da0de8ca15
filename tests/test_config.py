from pathlib import Path

import pytest
import yaml

from helpers.errors import ConfigError
from helpers.settings.study import load_config

REPO = Path(__file__).resolve().parents[1]


def test_default_study_config_loads():
    cfg = load_config(REPO / "study.yaml")
    assert cfg.study == "sts"
    assert cfg.training_cohorts == ["training"]
    # The NR-vs-SR arm is its own study (study_nr_sr.yaml) since issue 17.
    assert set(cfg.series) == {"CT", "PET", "MR_T1"} and cfg.comparison_series == [] and cfg.super_resolution is None
    assert cfg.path(cfg.manifest) == REPO / "data_manifest.csv"
    assert cfg.report_root == REPO / "reports" / "sts"


def _write(tmp_path, data) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture
def base():
    return yaml.safe_load((REPO / "study.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(cohortz={}), "cohortz: unknown key"),
        (lambda d: d["qc"].update(outlier_robustz=3), "qc.outlier_robustz: unknown key"),
        (lambda d: d.pop("seed"), "seed: required key is missing"),
        (lambda d: d.update(seed="abc"), "seed: Input should be a valid integer"),
        (lambda d: d["series"]["CT"].update(modality="XR"), "series.CT.modality"),
        (lambda d: d.update(labels={"GTV": 0}), "label values must be positive"),
        (lambda d: d["cohorts"]["training"].update(role="test"), "one cohort must have role 'train'"),
        (lambda d: d["steps"][0].update(depends_on=["later"]), "not earlier steps"),
        (lambda d: d.update(endpoints={"time": "os_months"}), "must be given together"),
        (lambda d: d.update(study="my study"), "study: String should match pattern"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, base, mutate, expected):
    mutate(base)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, base))
    assert expected in str(err.value)


def test_all_problems_reported_together(tmp_path, base):
    base["unknown_a"] = 1
    base.pop("manifest")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, base))
    assert "unknown_a: unknown key" in str(err.value)
    assert "feature_tables: Value error, give 'manifest' (images) or 'feature_tables'" in str(err.value)  # manifest optional with feature tables


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_content_hash_ignores_location_but_not_content(tmp_path, base):
    a = load_config(_write(tmp_path, base))
    other = tmp_path / "elsewhere"
    other.mkdir()
    b = load_config(_write(other, base))
    assert a.content_hash() == b.content_hash()
    base["seed"] += 1
    c = load_config(_write(other, base))
    assert c.content_hash() != a.content_hash()


def test_super_resolution_derives_a_series_with_the_parent_settings(tmp_path, base):
    base["super_resolution"] = {"series": "MR_T1", "settings": {"epochs": 3, "warmup_epochs": 1}}
    base["preprocessing"]["MR_T1"] = {"resample_mm": [1.0, 1.0, 1.0]}
    base["extraction"]["series"] = ["CT", "MR_T1"]
    cfg = load_config(_write(tmp_path, base))
    assert cfg.series["MR_T1_SR"].modality == "MR" and "super-resolved" in cfg.series["MR_T1_SR"].description
    assert cfg.extraction.series_settings["MR_T1_SR"] == cfg.extraction.series_settings["MR_T1"] == {"binCount": 32}
    assert cfg.preprocessing["MR_T1_SR"] == cfg.preprocessing["MR_T1"]
    assert cfg.extraction.series == ("CT", "MR_T1", "MR_T1_SR")
    assert cfg.comparison_series == ["MR_T1_SR"] and cfg.source_series("MR_T1_SR") == "MR_T1" and cfg.source_series("CT") == "CT"
    # Columns belong to the longest matching series prefix: MR_T1_SR_... is not an MR_T1 feature (helpers.data.columns).
    from helpers.data.columns import columns_of_series, series_of_column

    assert series_of_column("MR_T1_SR_tumour_original_firstorder_Mean", cfg.series) == "MR_T1_SR"
    assert series_of_column("MR_T1_tumour_original_firstorder_Mean", cfg.series) == "MR_T1"
    assert series_of_column("age", cfg.series) is None
    cols = ["MR_T1_tumour_a", "MR_T1_SR_tumour_a", "CT_tumour_a"]
    assert columns_of_series(cols, "MR_T1", cfg.series) == ["MR_T1_tumour_a"] and columns_of_series(cols, ["MR_T1_SR", "CT"], cfg.series) == cols[1:]
    # Explicit settings of the derived series win; compare_only: false pools the SR series like any other.
    base["extraction"]["series_settings"]["MR_T1_SR"] = {"binCount": 64}
    base["super_resolution"]["compare_only"] = False
    cfg = load_config(_write(tmp_path, base))
    assert cfg.extraction.series_settings["MR_T1_SR"] == {"binCount": 64} and cfg.comparison_series == []
    # A derived series can be harmonised; the SR series of an unknown parent is an error naming the key.
    base["signature"]["harmonization"] = [g for g in base["signature"]["harmonization"] if g["series"] != "MR_T1_SR"]
    base["signature"]["harmonization"].append({"series": "MR_T1_SR", "batch_field": "model", "unseen_batch": "reference"})
    assert load_config(_write(tmp_path, base)).signature.harmonization[-1].series == "MR_T1_SR"
    base["signature"]["harmonization"] = [g for g in base["signature"]["harmonization"] if g["series"] != "MR_T1_SR"]
    del base["extraction"]["series_settings"]["MR_T1_SR"]
    base["super_resolution"]["series"] = "MR_T2"
    with pytest.raises(ConfigError, match=r"super_resolution.series names series \['MR_T2'\]"):
        load_config(_write(tmp_path, base))


def test_nr_vs_sr_study_config_loads():
    cfg = load_config(REPO / "study_nr_sr.yaml")
    assert cfg.extraction.series == ("MR_T1", "MR_T1_SR") and cfg.comparison_series == ["MR_T1_SR"]
    assert [s.name for s in cfg.steps] == ["segmentation", "feature_extraction", "signature", "models", "statistics"]
    assert cfg.segmentation is None and cfg.deep_features == ()
    assert cfg.super_resolution.series == "MR_T1" and cfg.super_resolution.settings.epochs == 8


def test_ibsi_preset_resamples_on_centre_aligned_grids_unless_a_series_says_otherwise(tmp_path, base):
    """IBSI's interpolation grid (centres of the original and resampled grids aligned) comes with the 'ibsi' preset."""
    assert load_config(_write(tmp_path, base)).preprocessing["PET"].grid_alignment == "origin"  # seed1762: unchanged
    base["extraction"]["presets"] = ["seed1762", "ibsi"]
    base["preprocessing"]["CT"] = {"resample_mm": [1.0, 1.0, 1.0], "grid_alignment": "origin"}
    cfg = load_config(_write(tmp_path, base))
    assert cfg.preprocessing["PET"].grid_alignment == "center" and cfg.preprocessing["PET"].resample_mm == (4.0, 4.0, 4.0)
    assert cfg.preprocessing["CT"].grid_alignment == "origin"  # set explicitly: kept
