"""The papermill runner: order, per-cohort runs, skip/re-run logic, failures, provenance."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from helpers.errors import ConfigError, StepFailedError
from helpers.runner.cli import main
from helpers.runner.pipeline import plan_runs, run_study
from helpers.settings.study import load_config

from .conftest import write_volume

HEADER = """from helpers.settings.study import load_config
from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
import pandas as pd
cfg = load_config(config_path)
manifest, patients = load_study(cfg, check_images=False)
report = ReportWriter(cfg, step, cohort or None)"""

COUNT = """report.table(pd.DataFrame({"images": [int((manifest.cohort == cohort).sum())]}), "count")"""
COMBINE = """frames = [pd.read_csv(cfg.report_root / "tables" / f"count_{c}.csv").assign(cohort=c) for c in cfg.cohorts]
report.table(pd.concat(frames), "all_counts")"""


def _notebook(path: Path, *sources: str, parameters: str = 'config_path = "study.yaml"\nstep = ""\ncohort = ""') -> str:
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, *[new_code_cell(s) for s in sources]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return str(path.relative_to(path.parents[1]))


@pytest.fixture
def two_step_study(tiny_study: Path) -> Path:
    a = _notebook(tiny_study / "nbs" / "a.ipynb", HEADER, COUNT)
    b = _notebook(tiny_study / "nbs" / "b.ipynb", HEADER, COMBINE)
    data = yaml.safe_load((tiny_study / "study.yaml").read_text())
    data["steps"] = [
        {"name": "count", "notebook": a, "per_cohort": True},
        {"name": "combine", "notebook": b, "per_cohort": False, "depends_on": ["count"]},
    ]
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tiny_study


def _statuses(results) -> dict[str, str]:
    return {r.label: r.status for r in results}


def test_plan_order_and_selection(two_step_study):
    cfg = load_config(two_step_study / "study.yaml")
    assert [(s.name, c) for s, c, _ in plan_runs(cfg)] == [("count", "train"), ("count", "test"), ("combine", None)]
    assert [(s.name, c) for s, c, _ in plan_runs(cfg, cohort="test")] == [("count", "test"), ("combine", None)]
    assert [(s.name, c) for s, c, _ in plan_runs(cfg, step="count", cohort="train")] == [("count", "train")]
    with pytest.raises(ConfigError, match="unknown step 'nope'"):
        plan_runs(cfg, step="nope")
    with pytest.raises(ConfigError, match="unknown cohort 'validation'"):
        plan_runs(cfg, cohort="validation")


@pytest.mark.slow
def test_run_skip_and_rerun_logic(two_step_study):
    cfg_path = two_step_study / "study.yaml"
    cfg = load_config(cfg_path)
    sink = io.StringIO()
    first = run_study(cfg_path, out=sink)
    assert _statuses(first) == {"count [train]": "ran", "count [test]": "ran", "combine": "ran"}
    assert (cfg.report_root / "tables" / "all_counts.csv").read_text().splitlines()[1:] == ["4,train", "4,test"]
    assert (cfg.report_root / "notebooks" / "a__train.ipynb").is_file()
    assert "[1/3] count [train]: running" in sink.getvalue()

    # Nothing changed: everything is skipped.
    assert set(_statuses(run_study(cfg_path, out=sink)).values()) == {"skipped"}

    # Only the downstream notebook changed: only it re-runs.
    nb = nbformat.read(two_step_study / "nbs" / "b.ipynb", as_version=4)
    nb.cells.append(new_code_cell("print('changed')"))
    nbformat.write(nb, two_step_study / "nbs" / "b.ipynb")
    assert _statuses(run_study(cfg_path, out=sink)) == {"count [train]": "skipped", "count [test]": "skipped", "combine": "ran"}

    # A deleted output is regenerated; identical content upstream leaves the downstream step skipped.
    (cfg.report_root / "tables" / "count_train.csv").unlink()
    assert _statuses(run_study(cfg_path, out=sink)) == {"count [train]": "ran", "count [test]": "skipped", "combine": "skipped"}

    # A changed data file (new voxel values) re-runs every step.
    write_volume(two_step_study / "P03" / "CT_image.nii.gz", np.full((10, 16, 12), 5, dtype=np.int16))
    assert set(_statuses(run_study(cfg_path, out=sink)).values()) == {"ran"}

    # --force re-runs, and selection runs only what was asked.
    assert _statuses(run_study(cfg_path, step="count", cohort="test", force=True, out=sink)) == {"count [test]": "ran"}


@pytest.mark.slow
def test_changed_upstream_output_reruns_downstream(two_step_study):
    cfg_path = two_step_study / "study.yaml"
    run_study(cfg_path, out=io.StringIO())
    data = yaml.safe_load(cfg_path.read_text())
    # Changing the patient table is a data change for every step...
    (two_step_study / "patients.csv").write_text("patient,outcome\nP01,1\nP02,1\nP03,0\nP04,1\n")
    assert set(_statuses(run_study(cfg_path, out=io.StringIO())).values()) == {"ran"}
    # ...and a config change (seed) too.
    data["seed"] = 8
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert set(_statuses(run_study(cfg_path, out=io.StringIO())).values()) == {"ran"}


@pytest.mark.slow
def test_provenance_record(two_step_study):
    cfg_path = two_step_study / "study.yaml"
    run_study(cfg_path, out=io.StringIO())
    cfg = load_config(cfg_path)
    record = json.loads((cfg.report_root / "provenance" / "latest.json").read_text())
    assert record["seed"] == 7 and record["config_hash"] == cfg.content_hash()
    assert record["packages"]["SimpleITK"] and record["packages"]["python"].startswith("3.11")
    assert "P01/CT_image.nii.gz" in record["data_hashes"] and len(record["data_hashes"]) == 16 + 2
    assert [s["status"] for s in record["steps"]] == ["ran", "ran", "ran"]
    assert set(record["git"]) == {"commit", "dirty"}


@pytest.mark.slow
def test_failure_names_notebook_and_cell(two_step_study, capsys):
    _notebook(two_step_study / "nbs" / "a.ipynb", HEADER, "x = 1", "raise ValueError(f'boom in {cohort}')")
    cfg_path = two_step_study / "study.yaml"
    with pytest.raises(StepFailedError) as err:
        run_study(cfg_path, out=io.StringIO())
    exc = err.value
    # Cell 5 of the executed notebook: parameters, injected parameters, header, "x = 1", the raise.
    assert (exc.step, exc.cohort, exc.cell) == ("count", "train", 5)
    assert "ValueError: boom in train" in str(exc) and exc.notebook.endswith("a__train.ipynb")
    cfg = load_config(cfg_path)
    record = json.loads((cfg.report_root / "provenance" / "latest.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["failed"]  # later steps did not run
    # The CLI exits non-zero with the same message.
    assert main(["run", "--config", str(cfg_path)]) == 1
    assert "step 'count' (cohort 'train') failed in cell 5 of the executed notebook: ValueError: boom in train" in capsys.readouterr().err


def test_invalid_input_runs_nothing(two_step_study, capsys):
    (two_step_study / "P02" / "MR_mask.nii.gz").unlink()
    cfg_path = two_step_study / "study.yaml"
    assert main(["run", "--config", str(cfg_path)]) == 2
    err = capsys.readouterr().err
    assert "row 4, patient P02, column 'mask': file not found: P02/MR_mask.nii.gz" in err
    assert not (load_config(cfg_path).report_root / "notebooks").exists()
    assert main(["validate", "--config", str(cfg_path)]) == 2


@pytest.mark.slow
def test_notebooks_read_the_config_they_were_run_with(two_step_study):
    # Another config in the same folder (its own study name, so its own reports) must be the one the notebooks load,
    # not the folder's study.yaml.
    data = yaml.safe_load((two_step_study / "study.yaml").read_text())
    data["study"] = "other"
    (two_step_study / "other.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    results = run_study(two_step_study / "other.yaml", out=io.StringIO())
    assert set(_statuses(results).values()) == {"ran"}
    other = load_config(two_step_study / "other.yaml")
    assert other.config_file == "other.yaml" and (other.report_root / "tables" / "all_counts.csv").is_file()
    assert not load_config(two_step_study / "study.yaml").report_root.exists()


# -- failed units: loud, and the study's policy decides (issue 12) ---------------------------------------------------
FAILING = """failures = pd.DataFrame({"patient": ["P03", "P01"], "cohort": ["test", "train"], "series": ["MR", "CT"], "roi": ["tumour", "ring5mm"],
    "reader": ["reader1", "reader2"],
    "reason": ["patient P03, series MR, ROI tumour: ValueError: Image/Mask geometry mismatch", "patient P01, series CT, ROI ring5mm: boom"]})
path = report.table(failures, "unit_failures", per_cohort=False)
report.failures(failures, "extraction units", path)"""


def _failing_study(two_step_study: Path, policy: str | None) -> Path:
    a = _notebook(two_step_study / "nbs" / "fail.ipynb", HEADER, FAILING)
    data = yaml.safe_load((two_step_study / "study.yaml").read_text())
    data["steps"] = [{"name": "extract", "notebook": a, "per_cohort": False}, *data["steps"]]
    if policy is not None:
        data["missing_data"] = {"failed_units": policy}
    (two_step_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return two_step_study / "study.yaml"


@pytest.mark.slow
def test_failed_units_stop_the_study_by_default(two_step_study, capsys):
    from helpers.errors import UnitsFailedError

    cfg_path = _failing_study(two_step_study, None)
    out = io.StringIO()
    with pytest.raises(UnitsFailedError) as err:
        run_study(cfg_path, out=out)
    printed = out.getvalue()
    # Never a plain "done": the count, the patients, the first failures with their reasons and the table are printed.
    assert "extract: finished in" in printed and "WITH 2 FAILED EXTRACTION UNITS (patients P01, P03)" in printed
    assert "policy missing_data.failed_units: stop" in printed and ": done in" not in printed.split("[1/4]")[1].split("\n")[1]
    assert "    - patient P03, series MR, ROI tumour: ValueError: Image/Mask geometry mismatch" in printed
    assert "    - [reader2] patient P01, series CT, ROI ring5mm: boom" in printed
    assert "every failure: tables/unit_failures.csv" in printed
    message = str(err.value)
    assert "2 extraction units failed (2 patient(s))" in message and "before the signature and models" in message
    assert "fix: correct the inputs named above" in message and "'exclude_patients'" in message
    # The later steps did not run; the failing step is not recorded as current, so the next run repeats it.
    cfg = load_config(cfg_path)
    record = json.loads((cfg.report_root / "provenance" / "latest.json").read_text())
    assert [(s["step"], s["status"], s["failed_units"]) for s in record["steps"]] == [("extract", "failed", 2)]
    assert main(["run", "--config", str(cfg_path)]) == 1
    captured = capsys.readouterr()
    assert "extract: running" in captured.out and "error: step 'extract' finished, but 2 extraction units failed" in captured.err


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["exclude_patients", "impute"])
def test_failed_units_continue_only_when_the_config_allows_it(two_step_study, capsys, policy):
    cfg_path = _failing_study(two_step_study, policy)
    out = io.StringIO()
    results = run_study(cfg_path, out=out)
    assert _statuses(results) == {"extract": "ran", "count [train]": "ran", "count [test]": "ran", "combine": "ran"}
    assert results[0].failed_units == 2 and results[0].failed_patients == ["P01", "P03"]
    printed = out.getvalue()
    assert f"WITH 2 FAILED EXTRACTION UNITS (patients P01, P03); policy missing_data.failed_units: {policy}" in printed
    # A re-run skips the unchanged step but still says it had failures; the CLI's last line counts them.
    assert main(["run", "--config", str(cfg_path)]) == 0
    captured = capsys.readouterr().out
    assert "extract: unchanged, skipped (with 2 failed extraction units" in captured
    assert captured.strip().endswith("2 unit(s) of 2 patient(s) FAILED (listed above)")


PROVENANCE_PROBE = """import json
record = json.loads((cfg.report_root / "provenance" / "latest.json").read_text())
report.json({"packages": bool(record.get("packages")), "finished": record.get("finished_utc")}, "probe", folder="tables")"""


@pytest.mark.slow
def test_first_run_steps_see_the_run_record(two_step_study):
    # The supplement's methods read the software versions from provenance/latest.json: on the very first run they must
    # find this run's record (provisional: no finish time yet), not nothing.
    b = _notebook(two_step_study / "nbs" / "b.ipynb", HEADER, PROVENANCE_PROBE)
    data = yaml.safe_load((two_step_study / "study.yaml").read_text())
    data["steps"][1]["notebook"] = b
    (two_step_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run_study(two_step_study / "study.yaml", out=io.StringIO())
    cfg = load_config(two_step_study / "study.yaml")
    assert json.loads((cfg.report_root / "tables" / "probe.json").read_text()) == {"packages": True, "finished": None}
    final = json.loads((cfg.report_root / "provenance" / "latest.json").read_text())
    assert final["finished_utc"] and [s["status"] for s in final["steps"]] == ["ran", "ran", "ran"]
