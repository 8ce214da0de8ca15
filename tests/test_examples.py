"""Every example study under ``examples/`` (one per seed-study design) is valid and runs end to end.

Each example folder holds ``simulation.yaml`` (the settings of ``python -m helpers simulate`` for its cohort),
``study.yaml`` (the study, reading the simulated cohort from ``cohort/``) and ``outputs.yaml`` (what the matching seed
supplement reports and the output of the example that regenerates it). The fast tests check that the three files are
valid and agree with each other and with the README; the slow test simulates a small cohort for each example, runs
``python -m helpers run`` on it with lighter settings (fewer patients, algorithms and bootstrap resamples, a
smaller deep-feature input) and checks that every output listed in ``outputs.yaml`` and the supplement exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from helpers.runner.cli import main
from helpers.settings.simulation import SimulationSettings
from helpers.settings.study import load_config
from helpers.simulation.simulate import simulate_study

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if (p / "study.yaml").is_file())
#: Patients simulated per example in the end-to-end test (enough for five-fold cross-validation in every training cohort).
TEST_PATIENTS = {"001_nr_sr_three_cohorts": 90, "003_habitats_deep_fusion": 90, "004_survival_ith": 90}


def _example(name: str) -> Path:
    return REPO / "examples" / name


def test_there_is_an_example_per_seed_design() -> None:
    assert {n[:3] for n in EXAMPLES} >= {"000", "001", "003", "004"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_files_are_valid_and_consistent(name: str) -> None:
    folder = _example(name)
    sim = SimulationSettings.model_validate(yaml.safe_load((folder / "simulation.yaml").read_text()))
    cfg = load_config(folder / "study.yaml")
    assert cfg.study == sim.study and cfg.seed == sim.seed
    assert cfg.manifest == "cohort/data_manifest.csv" and cfg.patient_table == "cohort/patients.csv"
    simulated_cohorts = {"training", "external_test"} | ({"validation"} if sim.validation_fraction or sim.validation_centres else set())
    assert set(cfg.cohorts) == simulated_cohorts
    assert set(cfg.series) == {"MR", *sim.extra_sequences}
    for step in cfg.steps:
        assert cfg.path(step.notebook).resolve().is_file(), step.notebook
    outputs = yaml.safe_load((folder / "outputs.yaml").read_text())
    assert outputs and all(set(o) == {"seed", "output"} for o in outputs)
    readme = (REPO / "README.md").read_text(encoding="utf-8") + (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    assert f"examples/{name}" in readme


def _prepare(name: str, tmp_path: Path) -> Path:
    """The example copied to ``tmp_path`` with a small simulated cohort and lighter settings."""
    folder = tmp_path / name
    folder.mkdir()
    for f in ("simulation.yaml", "study.yaml", "outputs.yaml"):
        shutil.copy(_example(name) / f, folder / f)
    sim = yaml.safe_load((folder / "simulation.yaml").read_text())
    simulate_study(folder / "cohort", {**sim, "patients": TEST_PATIENTS.get(name, 60)})
    cfg = yaml.safe_load((folder / "study.yaml").read_text())
    for step in cfg["steps"]:
        step["notebook"] = str((_example(name) / step["notebook"]).resolve())
    cfg.setdefault("statistics", {})["n_bootstrap"] = 200
    models = cfg.setdefault("models", {})
    models["algorithms"] = sorted({models.get("final_algorithm", "logistic"), "random_forest"})
    for arm in cfg.get("deep_features", []):
        arm.update(input_size=64, epochs=1)
    if cfg.get("super_resolution"):
        cfg["super_resolution"]["settings"].update(epochs=2, warmup_epochs=1)
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_end_to_end_and_regenerates_the_seed_outputs(name: str, tmp_path: Path) -> None:
    folder = _prepare(name, tmp_path)
    assert main(["run", "--config", str(folder / "study.yaml")]) == 0
    root = folder / "reports" / load_config(folder / "study.yaml").study
    missing = [o["output"] for o in yaml.safe_load((folder / "outputs.yaml").read_text()) if not list(root.glob(o["output"]))]
    assert not missing, f"outputs listed in examples/{name}/outputs.yaml were not written: {missing}"
    assert (root / "supplementary" / "supplementary.docx").is_file() and (root / "supplementary" / "supplementary.html").is_file()
