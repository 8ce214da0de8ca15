"""Every example study under ``examples/`` (one per seed-study design) is valid and runs end to end.

Each example folder holds ``study.yaml``, ``outputs.yaml`` (what the matching seed supplement reports and the output
of the example that regenerates it) and the source of its data: ``simulation.yaml`` (the settings of ``python -m
helpers simulate`` for a cohort written to ``cohort/``) or, for the study started from a feature table,
``make_tables.py`` (a seeded generator of the table). The fast tests check that the three files are
valid and agree with each other and with the README; the slow test simulates a small cohort for each example, runs
``python -m helpers run`` on it with lighter settings (fewer patients, algorithms and bootstrap resamples, a coarser
LASSO lambda path, a smaller deep-feature input and super-resolution network) and checks that every output listed in
``outputs.yaml`` and the supplement exist. The run is the session fixture ``example_run`` (tests/conftest.py): other
slow tests assert on the same run (tests/test_three_cohorts.py on examples 001 and 003).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.settings.simulation import SimulationSettings
from helpers.settings.study import load_config
from helpers.simulation.simulate import simulate_study

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if (p / "study.yaml").is_file())
SIMULATED = [n for n in EXAMPLES if (REPO / "examples" / n / "simulation.yaml").is_file()]
#: Patients simulated per example in the end-to-end test (enough for five-fold cross-validation in every training cohort).
TEST_PATIENTS = {"001_nr_sr_three_cohorts": 80, "002_grade_ki67": 64, "003_habitats_deep_fusion": 72, "004_survival_ith": 80}


def _example(name: str) -> Path:
    return REPO / "examples" / name


def test_there_is_an_example_per_seed_design_and_one_from_a_feature_table() -> None:
    assert {n[:3] for n in EXAMPLES} >= {"000", "001", "003", "004"}
    assert "feature_table" in EXAMPLES and set(EXAMPLES) - set(SIMULATED) == {"feature_table"}


def _check_outputs_and_readme(name: str) -> None:
    outputs = yaml.safe_load((_example(name) / "outputs.yaml").read_text())
    assert outputs and all(set(o) == {"seed", "output"} for o in outputs)
    readme = (REPO / "README.md").read_text(encoding="utf-8") + (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    assert f"examples/{name}" in readme


def test_feature_table_example_is_valid() -> None:
    cfg = load_config(_example("feature_table") / "study.yaml")
    assert cfg.manifest is None and cfg.feature_tables and (_example("feature_table") / "make_tables.py").is_file()
    _check_outputs_and_readme("feature_table")


@pytest.mark.parametrize("name", SIMULATED)
def test_example_files_are_valid_and_consistent(name: str) -> None:
    folder = _example(name)
    sim = SimulationSettings.model_validate(yaml.safe_load((folder / "simulation.yaml").read_text()))
    cfg = load_config(folder / "study.yaml")
    assert cfg.study == sim.study and cfg.seed == sim.seed
    assert cfg.manifest == "cohort/data_manifest.csv" and cfg.patient_table == "cohort/patients.csv"
    simulated_cohorts = {"training", "external_test"} | ({"validation"} if sim.validation_fraction or sim.validation_centres else set())
    assert set(cfg.cohorts) == simulated_cohorts
    derived = {cfg.super_resolution.output_series} if cfg.super_resolution is not None else set()
    # The simulated series (MR, or CT with modality CT) and its extra sequences, with the simulated modality.
    assert set(cfg.series) - derived == {sim.series, *sim.extra_sequences}
    assert cfg.series[sim.series].modality == sim.modality
    for step in cfg.steps:
        assert cfg.path(step.notebook).resolve().is_file(), step.notebook
    _check_outputs_and_readme(name)


def _prepare(name: str, tmp_path: Path) -> Path:
    """The example copied to ``tmp_path`` with its data (a small simulated cohort, or the generated table) and lighter
    settings: fewer algorithms, bootstrap resamples, LASSO lambdas, habitat K, network epochs and channels, and the IBSI
    compliance of the digital phantom only (the design is unchanged)."""
    folder = tmp_path / name
    folder.mkdir()
    for f in ("simulation.yaml", "study.yaml", "outputs.yaml", "make_tables.py"):
        if (_example(name) / f).is_file():
            shutil.copy(_example(name) / f, folder / f)
    if (folder / "simulation.yaml").is_file():
        sim = yaml.safe_load((folder / "simulation.yaml").read_text())
        simulate_study(folder / "cohort", {**sim, "patients": TEST_PATIENTS.get(name, 60)})
    else:
        subprocess.run([sys.executable, str(folder / "make_tables.py"), str(folder)], check=True, capture_output=True)
    cfg = yaml.safe_load((folder / "study.yaml").read_text())
    for step in cfg["steps"]:
        step["notebook"] = str((_example(name) / step["notebook"]).resolve())
    cfg.setdefault("statistics", {})["n_bootstrap"] = 100
    for step in cfg.get("signature", {}).get("steps", []):
        if step["step"] == "lasso":
            # 10 lambdas instead of 50: the final model's tuning refits the signature (with its inner LASSO CV) in
            # every fold of every candidate, the largest cost of the examples' model step.
            step["Cs"] = 10
    # The IBSI tables of the digital phantom only (the CT phantom A-E is covered by tests/test_notebooks.py's run).
    cfg.setdefault("extraction", {})["ibsi_ct_phantom"] = False
    models = cfg.setdefault("models", {})
    models["algorithms"] = sorted({models.get("final_algorithm", "logistic"), "random_forest"})
    for arm in cfg.get("deep_features", []):
        arm.update(input_size=32, epochs=1)
    habitats = cfg.get("extraction", {}).get("habitats")
    if habitats:
        # ITH scores for K = 2..4 (example 003: the ITH sweep's combined row, K = 2..5 by default, is clipped to 2..4)
        # or up to the largest K the survival models use (example 004: survival.ith_k ends at 5).
        habitats.update(k_range=[3, 3], ith_k_range=[2, max([4, *cfg.get("survival", {}).get("ith_k", [])])])
    if cfg.get("segmentation"):
        cfg["segmentation"].update(epochs=2, validate_every=1, iterations_per_epoch=2)
    if cfg.get("super_resolution"):
        cfg["super_resolution"]["settings"].update(epochs=2, warmup_epochs=1, patches_per_volume=2, generator_depth=1,
                                                   generator_width=4, discriminator_width=4, perceptual_width=4)
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_end_to_end_and_regenerates_the_seed_outputs(name: str, example_run) -> None:
    folder = example_run(name).folder  # python -m helpers run exited with 0
    root = folder / "reports" / load_config(folder / "study.yaml").study
    missing = [o["output"] for o in yaml.safe_load((folder / "outputs.yaml").read_text()) if not list(root.glob(o["output"]))]
    assert not missing, f"outputs listed in examples/{name}/outputs.yaml were not written: {missing}"
    assert (root / "supplementary" / "supplementary.docx").is_file() and (root / "supplementary" / "supplementary.html").is_file()
    cfg = load_config(folder / "study.yaml")
    if cfg.tasks:  # every task's final model in every held-out cohort, side by side (seed 002 Table S2)
        comparison = pd.read_csv(root / "tables" / "task_comparison.csv")
        assert list(comparison.columns) == ["metric", *[f"{v.task_label}: {c}" for v in cfg.task_views() for c in cfg.held_out_cohorts]]
        # AUC, sensitivity, specificity and accuracy are defined in every held-out cohort (PPV/NPV may not be: no predicted positive).
        assert not comparison.set_index("metric").iloc[:4].eq("-").any().any()
