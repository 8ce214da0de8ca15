"""Studies that start from supplied feature tables (issue 15, "Feature tables in"; helpers.data.supplied_features).

The malformed-table battery (one actionable line per problem) is in test_bad_input.py; here: the loaded frame,
block mapping by prefix, parquet input, joining tables of several cohorts/blocks, the config rules of a study
without a manifest, the validate command, the methods naming the supplied software (never PyRadiomics
extraction) and a features-only study run end-to-end by ``python -m helpers run``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.data.manifest import load_study
from helpers.data.supplied_features import load_supplied_features
from helpers.errors import ConfigError, ManifestError
from helpers.settings.study import load_config

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def _example_module():
    spec = importlib.util.spec_from_file_location("feature_table_example", REPO / "examples" / "feature_table" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def feature_table_config(**overrides) -> dict:
    """The config of a features-only study (examples/feature_table/study.yaml, notebooks by absolute path, small settings)."""
    cfg = yaml.safe_load((REPO / "examples" / "feature_table" / "study.yaml").read_text(encoding="utf-8"))
    for step in cfg["steps"]:
        step["notebook"] = str(NOTEBOOKS / Path(step["notebook"]).name)
    cfg["models"]["algorithms"] = ["logistic"]
    cfg["statistics"]["n_bootstrap"] = 100
    cfg.update(overrides)
    return cfg


def make_feature_table_study(folder: Path, n: int = 60, **overrides) -> Path:
    """A features-only study in ``folder``: the example's generated tables (60 patients, 2 cohorts, one planted feature)."""
    _example_module().write_tables(folder, n=n)
    (folder / "study.yaml").write_text(yaml.safe_dump(feature_table_config(**overrides), sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture
def ft_study(tmp_path: Path) -> Path:
    return make_feature_table_study(tmp_path)


def _edit(study: Path, **changes) -> None:
    cfg = yaml.safe_load((study / "study.yaml").read_text(encoding="utf-8"))
    cfg.update(changes)
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


# -- the loaded frame ------------------------------------------------------------------------------------------------
def test_supplied_table_becomes_the_frame_the_signature_reads(ft_study):
    cfg = load_config(ft_study / "study.yaml")
    notes: list = []
    manifest, patients = load_study(cfg, notes=notes)
    assert not notes
    assert set(manifest.columns) >= {"patient", "cohort", "series"} and manifest["series"].eq("MR").all()
    supplied = load_supplied_features(cfg, patients)
    frame = supplied.features
    assert frame.index.name == "patient" and frame.index.is_monotonic_increasing and len(frame) == 60
    assert isinstance(frame.index[0], str) and frame.columns[0] == "cohort"
    assert frame["cohort"].value_counts().to_dict() == {"training": 40, "external": 20}
    features = frame.drop(columns="cohort")
    assert (features.dtypes == "float64").all()
    assert "MR_tumour_original_firstorder_Mean" in features.columns
    assert not any("diagnostics" in c for c in features.columns)  # excluded by the pattern
    assert supplied.reader2 is not None and len(supplied.reader2) == 40
    (table,) = supplied.record["tables"]
    assert table["software"] == "pyradiomics 3.1.0" and len(table["sha256"]) == 64 and table["file"] == "features.csv"
    assert table["excluded_columns"] == ["diagnostics_Versions_PyRadiomics"]
    assert table["blocks"] == [{"series": "MR", "roi": "tumour", "features": 13, "patients": 60}]
    assert table["reader2"]["patients"] == 40


def test_prefix_blocks_parquet_and_tables_of_two_cohorts_are_joined(ft_study):
    """Block prefixes map columns to (series, roi); a parquet table of the external cohort (``cohort:``) joins the
    training table; missing values stay missing (imputed later on training statistics)."""
    patients = pd.read_csv(ft_study / "patients.csv", dtype={"patient": str})
    train_ids = patients.loc[patients["cohort"] == "training", "patient"].tolist()
    ext_ids = patients.loc[patients["cohort"] == "external", "patient"].tolist()
    rng = np.random.default_rng(1)

    def table(ids):
        return pd.DataFrame({"ID": ids, "CT_t_original_firstorder_Mean": rng.normal(size=len(ids)),
                             "PET_ring_original_firstorder_Max": rng.normal(size=len(ids))})

    train = table(train_ids)
    train.loc[0, "PET_ring_original_firstorder_Max"] = np.nan
    train.to_csv(ft_study / "train.csv", index=False)
    table(ext_ids).to_parquet(ft_study / "external.parquet", index=False)
    blocks = {"CT_t_": {"series": "CT", "roi": "tumour"}, "PET_ring_": {"series": "PET", "roi": "ring5"}}
    common = {"patient_id_column": "ID", "blocks": blocks, "software": "LIFEx 7.3"}
    _edit(ft_study, series={"CT": {"modality": "CT"}, "PET": {"modality": "PT"}}, clinical={},
          feature_tables=[{"path": "train.csv", **common}, {"path": "external.parquet", "cohort": "external", **common}])
    cfg = load_config(ft_study / "study.yaml")
    _, pts = load_study(cfg)
    frame = load_supplied_features(cfg, pts).features
    assert list(frame.columns) == ["cohort", "CT_tumour_original_firstorder_Mean", "PET_ring5_original_firstorder_Max"]
    assert len(frame) == 60 and frame["cohort"].value_counts().to_dict() == {"training": 40, "external": 20}
    assert frame["PET_ring5_original_firstorder_Max"].isna().sum() == 1
    assert cfg.feature_rois == ["tumour", "ring5"]


# -- config rules of a study without a manifest ----------------------------------------------------------------------
def test_features_only_study_with_an_image_step_is_an_error(ft_study):
    cfg = yaml.safe_load((ft_study / "study.yaml").read_text())
    _edit(ft_study, steps=[{"name": "acquisition_qc", "notebook": str(NOTEBOOKS / "01_acquisition_qc.ipynb")}, *cfg["steps"]])
    with pytest.raises(ManifestError) as err:
        load_study(load_config(ft_study / "study.yaml"))
    (issue,) = err.value.issues
    assert "['acquisition_qc'] read images but the study has no 'manifest'" in issue.problem and "add 'manifest:'" in issue.fix


@pytest.mark.parametrize(("change", "expected"), [
    ({"signature": {"harmonization": [{"series": "MR", "batch_field": "scanner"}]}},
     "signature.harmonization reads acquisition fields of the images' manifest, but the study has no 'manifest'"),
    ({"statistics": {"subgroups": [{"series": "MR", "field": "scanner"}]}}, "statistics.subgroups reads acquisition fields"),
    ({"feature_tables": [{"path": "features.csv", "series": "CT", "roi": "tumour", "software": "x"}]},
     "feature_tables names series ['CT'] that are not under 'series'"),
    ({"feature_tables": [{"path": "features.csv", "series": "MR", "roi": "tumour", "blocks": {"a_": {"series": "MR", "roi": "x"}}, "software": "x"}]},
     "give either 'series' and 'roi'"),
    ({"feature_tables": [{"path": "features.csv", "series": "MR", "roi": "tumour"}]}, "feature_tables.0.software: required key is missing"),
    ({"feature_tables": [{"path": "features.csv", "series": "MR", "roi": "tumour", "software": "x", "cohort": "nowhere"}]},
     "feature_tables name cohorts ['nowhere']"),
    ({"feature_tables": []}, "give 'manifest' (images) or 'feature_tables'"),
])
def test_config_errors_of_a_features_only_study(ft_study, change, expected):
    _edit(ft_study, **change)
    with pytest.raises(ConfigError) as err:
        load_config(ft_study / "study.yaml")
    assert expected in str(err.value)


def test_patients_without_features_are_listed_not_dropped_silently(ft_study):
    patients = pd.read_csv(ft_study / "patients.csv", dtype={"patient": str})
    extra = patients.iloc[:2].assign(patient=["NOFEAT1", "NOFEAT2"])
    pd.concat([patients, extra]).to_csv(ft_study / "patients.csv", index=False)
    notes: list = []
    load_study(load_config(ft_study / "study.yaml"), notes=notes)
    (note,) = notes
    assert "2 patient(s) of the patient table have no supplied features and are not analysed: NOFEAT1, NOFEAT2" in note.problem


def test_validate_command_on_a_features_only_study(ft_study, capsys):
    from helpers.runner.cli import main

    assert main(["validate", "--config", str(ft_study / "study.yaml")]) == 0
    assert "OK: supplied features of 60 patients in 1 feature table(s)" in capsys.readouterr().out


# -- signature and methods --------------------------------------------------------------------------------------------
def test_signature_and_methods_name_the_supplied_software_not_pyradiomics(ft_study):
    from helpers.reporting.supplement.methods import methods_text
    from helpers.reporting.writer import ReportWriter
    from helpers.steps.signature import build_signature, write_signature_outputs

    cfg_yaml = yaml.safe_load((ft_study / "study.yaml").read_text())
    cfg_yaml["feature_tables"][0].update(software="LIFEx 7.3", settings="")
    del cfg_yaml["feature_tables"][0]["reader2"]
    _edit(ft_study, feature_tables=cfg_yaml["feature_tables"])
    cfg = load_config(ft_study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    sig = build_signature(cfg, manifest, patients)
    assert sig.icc is None  # no second reading supplied: the ICC filter is skipped
    assert "MR_tumour_original_firstorder_Mean" in sig.pathway.iloc[-1].to_string() or sig.formula
    write_signature_outputs(sig, cfg, ReportWriter(cfg, "signature"))
    record = json.loads((cfg.report_root / "provenance" / "supplied_features.json").read_text())
    assert record["tables"][0]["software"] == "LIFEx 7.3"
    paragraphs = {p.key: p.text for p in methods_text(cfg)}
    text = paragraphs["extraction"]
    assert "LIFEx 7.3" in text and "not extracted by this run but supplied as a table (features.csv" in text
    assert "its settings were not stated" in text
    assert "No second reading was supplied, so the ICC stability filter was not applied." in text
    everything = " ".join(paragraphs.values())
    assert "extracted with PyRadiomics" not in everything and "PyRadiomics defaults" not in everything
    assert "image and mask pair" not in everything and "preset seed1762" not in everything
    assert "from the supplied features" in paragraphs["signature"]
    split = pd.read_csv(cfg.report_root / "tables" / "cohort_split_counts.csv")
    assert split.set_index("cohort")["patients"].to_dict() == {"training": 40, "external": 20, "total": 60}
    assert not any(c.startswith("scans") for c in split.columns)
    assert "positive in" in paragraphs["cohorts"] and "of 40 training patients" in paragraphs["cohorts"]


# -- end to end -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("example", ["feature_table"])
def test_features_only_study_runs_end_to_end(example_run, example):
    """``python -m helpers run`` on a study of one supplied table: signature, models, statistics and supplement, no images.

    The study is examples/feature_table (the tables of its make_tables.py, lighter settings), run once for this test and
    tests/test_examples.py (tests/conftest.py::example_run).
    """
    run = example_run(example)
    assert "finished: 4 step run(s) executed" in run.printed
    root = run.folder / "reports" / "feature_table_example"
    predictions = pd.read_parquet(root / "features" / "model_predictions.parquet")
    assert set(predictions["cohort"]) == {"training", "external"}
    html = (root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    assert "pyradiomics 3.1.0" in html and "supplied as a table" in html
    assert "extracted with PyRadiomics" not in html and "image and mask pair" not in html
    assert (root / "provenance" / "supplied_features.json").is_file() and (root / "tables" / "icc_retained_counts.csv").is_file()
    perf = pd.read_csv(root / "tables" / "performance.csv")
    assert set(perf["cohort"]) >= {"training", "external"}


# -- mixed study: extracted features for the image cohorts, a collaborator's cohort supplied as a table ----------------
def _mixed_study(tmp_path: Path) -> tuple[Path, list[str]]:
    """The planted study (features as notebook 03 writes them, a manifest) plus a supplied 'collab' test cohort."""
    from .conftest import make_planted_feature_study

    study, _ = make_planted_feature_study(tmp_path)
    extracted = pd.read_parquet(study / "reports" / "planted" / "features" / "features_planted.parquet")
    rng = np.random.default_rng(5)
    ids = [f"C{i:02d}" for i in range(25)]
    collab = pd.DataFrame(rng.normal(size=(25, extracted.shape[1] - 1)), columns=extracted.columns[1:], index=ids)
    collab.index.name = "case"
    collab.reset_index().to_csv(study / "collab.csv", index=False)
    patients = pd.read_csv(study / "patients.csv", dtype={"patient": str})
    extra = pd.DataFrame({"patient": ids, "outcome": [0, 1] * 12 + [1], "age": 60.0, "grade": "G1", "sex": "F", "time_months": 12.0, "metastasis": 0})
    pd.concat([patients, extra]).to_csv(study / "patients.csv", index=False)
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    cfg["cohorts"]["collab"] = {"role": "test", "description": "collaborator's centre, features supplied"}
    cfg["signature"]["harmonization"] = []
    cfg["statistics"]["subgroups"] = []
    cfg["steps"].insert(0, {"name": "feature_extraction", "notebook": str(NOTEBOOKS / "03_feature_extraction.ipynb"), "per_cohort": False})
    cfg["feature_tables"] = [{"path": "collab.csv", "patient_id_column": "case", "cohort": "collab", "software": "pyradiomics 3.0.1",
                              "blocks": {"CT_tumour_": {"series": "CT", "roi": "tumour"}, "MR_T1_tumour_": {"series": "MR_T1", "roi": "tumour"}}}]
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return study, ids


def test_mixed_study_joins_an_external_cohort_supplied_as_a_table(tmp_path):
    from helpers.steps.signature import build_signature

    study, ids = _mixed_study(tmp_path)
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    assert not set(ids) & set(manifest["patient"])  # the manifest stays the images' manifest
    sig = build_signature(cfg, manifest, patients)
    cohort = sig.data.cohort
    assert cohort.value_counts().to_dict() == {"train": 70, "test": 30, "collab": 25}
    assert set(sig.radscores.index[sig.radscores["cohort"] == "collab"]) == set(ids)
    assert sig.data.supplied["tables"][0]["patients_per_cohort"] == {"collab": 25}
    # Fitted on training only: the collaborator's cohort does not change the selected features.
    assert sig.icc is not None and set(sig.icc.index) <= set(sig.data.features.columns)


def test_mixed_study_a_block_both_extracted_and_supplied_is_an_error(tmp_path):
    from helpers.errors import InputDataError
    from helpers.steps.signature import load_study_features

    study, _ = _mixed_study(tmp_path)
    table = pd.read_csv(study / "collab.csv").iloc[:1]
    table.loc[0, "case"] = "S001"  # a training patient whose CT/MR features were extracted (cohort from the manifest)
    table.to_csv(study / "collab.csv", index=False)
    cfg = yaml.safe_load((study / "study.yaml").read_text())
    del cfg["feature_tables"][0]["cohort"]
    (study / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    patients = pd.read_csv(study / "patients.csv", dtype={"patient": str}).set_index("patient")
    with pytest.raises(InputDataError, match="patient S001 has feature .* both extracted"):
        load_study_features(load_config(study / "study.yaml"), patients)


def test_table_one_describes_the_supplied_cohort_of_a_mixed_study(tmp_path):
    from helpers.steps.statistics import clinical_characteristics

    study, _ = _mixed_study(tmp_path)
    cfg = load_config(study / "study.yaml")
    manifest, patients = load_study(cfg, check_images=False)
    tables = clinical_characteristics(patients, manifest, cfg)
    assert "table_one_by_outcome_collab" in tables
    assert any("collab" in str(c) for c in tables["table_one_by_cohort"].columns)


@pytest.mark.slow
def test_mixed_simulated_study_with_the_external_cohort_supplied_as_a_table(tmp_path):
    """Images for training (simulator), the external cohort as a collaborator's table: ``python -m helpers run`` end to end.

    First the simulated study's features are extracted for every patient; the external cohort's rows become a
    supplied CSV (as a collaborator would send), its images leave the manifest, and the study is run again: the
    extraction covers training only (cached units) and the signature joins the supplied external cohort.
    """
    from helpers.simulation.simulate import simulate_study

    out = tmp_path / "sim"
    simulate_study(out, patients=44, seed=5, test_fraction=0.3, prevalence=0.5)
    cfg = yaml.safe_load((out / "study.yaml").read_text())
    cfg["steps"] = [s for s in cfg["steps"] if s["name"] != "acquisition_qc"]
    cfg["steps"][-1]["depends_on"] = [d for d in cfg["steps"][-1]["depends_on"] if d != "acquisition_qc"]
    cfg["models"].update(algorithms=["logistic"], cv=3)
    for step in cfg["signature"]["steps"]:
        if step["step"] == "lasso":
            step["Cs"] = 10  # a coarse lambda path: the final model refits the signature's LASSO CV in every fold
    cfg["statistics"].update(n_bootstrap=100, subgroups=[])
    cfg.pop("survival", None)
    cfg["endpoints"] = {"binary": "label"}
    (out / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUTF8": "1"}

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", str(out / "study.yaml"), *args],
                              capture_output=True, text=True, env=env, cwd=out, timeout=1800, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    run("--step", "feature_extraction")
    preset = cfg["signature"]["preset"]
    features = pd.read_parquet(out / "reports" / cfg["study"] / "features" / f"features_{preset}.parquet")
    external = features[features["cohort"] == "external_test"].drop(columns="cohort")
    series = next(iter(cfg["series"]))
    rois = sorted({c[len(series) + 1:].split("_")[0] for c in external.columns if c.startswith(f"{series}_")})
    external.rename_axis("case_id").reset_index().to_csv(out / "collaborator_external.csv", index=False)
    manifest = pd.read_csv(out / "data_manifest.csv", dtype=str)
    manifest[manifest["cohort"] != "external_test"].to_csv(out / "data_manifest.csv", index=False)
    cfg["feature_tables"] = [{"path": "collaborator_external.csv", "patient_id_column": "case_id", "cohort": "external_test",
                              "blocks": {f"{series}_{roi}_": {"series": series, "roi": roi} for roi in rois},
                              "software": "pyradiomics (collaborator's installation)", "settings": "as in the training centre"}]
    (out / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    stdout = run()
    assert "finished:" in stdout
    root = out / "reports" / cfg["study"]
    predictions = pd.read_parquet(root / "features" / "model_predictions.parquet")
    assert set(predictions.loc[predictions["cohort"] == "external_test", "patient"] if "patient" in predictions.columns
               else predictions[predictions["cohort"] == "external_test"].index) == set(external.index)
    html = (root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    assert "collaborator_external.csv" in html and "extracted with PyRadiomics" in html  # both: extracted training, supplied external


def test_supplied_tables_are_data_of_every_step_key(ft_study):
    """A changed feature table (or second reading) re-runs the steps: both files are hashed into the step keys."""
    from helpers.runner.pipeline import _data_files

    cfg = load_config(ft_study / "study.yaml")
    files = {p.name for p in _data_files(cfg, None)}
    assert {"features.csv", "features_reader2.csv", "patients.csv"} <= files
