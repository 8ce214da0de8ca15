"""Several prediction tasks in one study (seed study 002: pathological grade and Ki-67 index).

``tasks`` lists the endpoints of each task; notebooks 04-06 run once per task into ``reports/<study>/tasks/<task>/``,
notebooks 01-03 once for the study; validation checks every task's endpoint before anything runs; the supplement shows
each task's outputs under its name and the tasks side by side (``tables/task_comparison``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.data import artifacts
from helpers.data.manifest import load_patient_table, load_study
from helpers.errors import ConfigError, ManifestError
from helpers.reporting.supplement import assemble_supplement
from helpers.reporting.supplement.collect import MethodsParagraph
from helpers.reporting.writer import ReportWriter
from helpers.runner.pipeline import _upstream_ledgers, plan_runs, step_key
from helpers.settings.study import load_config
from helpers.steps.supplement import task_comparison

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "notebooks"
TASKS = [
    {"name": "grade", "title": "Pathological grade", "endpoints": {"binary": "high_grade"}},
    {"name": "ki67", "title": "Ki-67 index", "endpoints": {"binary": "ki67_high", "binary_from": {"column": "ki67_index", "threshold": 20}}},
]
STEPS = [
    {"name": "acquisition_qc", "notebook": str(NB / "01_acquisition_qc.ipynb"), "per_cohort": True},
    {"name": "feature_extraction", "notebook": str(NB / "03_feature_extraction.ipynb"), "per_cohort": False},
    {"name": "signature", "notebook": str(NB / "04_signature.ipynb"), "per_cohort": False, "depends_on": ["feature_extraction"]},
    {"name": "models", "notebook": str(NB / "05_models.ipynb"), "per_cohort": False, "depends_on": ["signature"]},
    {"name": "statistics", "notebook": str(NB / "06_statistics.ipynb"), "per_cohort": False, "depends_on": ["models"]},
    {"name": "supplement", "notebook": str(NB / "07_supplement.ipynb"), "per_cohort": False,
     "depends_on": ["acquisition_qc", "feature_extraction", "signature", "models", "statistics"]},
]


def _write(folder: Path, **changes) -> Path:
    data = yaml.safe_load((folder / "study.yaml").read_text())
    data.pop("endpoints", None)
    data.update({"tasks": TASKS, "steps": STEPS})
    data.update(changes)
    (folder / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "study.yaml"


@pytest.fixture
def two_task_study(tiny_study: Path) -> Path:
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "high_grade": [0, 1, 0, 1],
                  "ki67_index": [5.0, 35.0, 25.0, 10.0]}).to_csv(tiny_study / "patients.csv", index=False)
    return _write(tiny_study)


# -- configuration -----------------------------------------------------------------------------------------------


def test_task_views_have_their_endpoints_and_report_folders(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    assert cfg.task_names == ["grade", "ki67"] and cfg.task is None and cfg.endpoints.binary is None
    assert cfg.report_root == cfg.study_root == two_task_study.parent / "reports" / "tiny"
    grade, ki67 = cfg.task_views()
    assert (grade.task, grade.endpoints.binary, grade.task_label) == ("grade", "high_grade", "Pathological grade")
    assert ki67.endpoints.binary_from.column == "ki67_index"
    assert ki67.report_root == cfg.study_root / "tasks" / "ki67" and ki67.study_root == cfg.study_root
    assert load_config(two_task_study, task="ki67") == ki67
    assert ki67.content_hash() == cfg.content_hash()  # one study: the task is a run parameter, not configuration
    with pytest.raises(ConfigError, match="unknown task 'stage'.*grade"):
        load_config(two_task_study, task="stage")


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoints": {"binary": "high_grade"}}, "either under 'endpoints'.*or under each of 'tasks'"),
    ({"tasks": TASKS[:1]}, "a single task: write its endpoints under 'endpoints'"),
    ({"tasks": [TASKS[0], {**TASKS[1], "name": "grade"}]}, "task names \\['grade'\\] are given twice"),
    ({"tasks": [TASKS[0], {"name": "none", "endpoints": {}}]}, "task 'none' needs an endpoint"),
    ({"tasks": [TASKS[0], {**TASKS[1], "name": "Ki67"}]}, "tasks.1.name"),
    ({"tasks": [TASKS[1], {**TASKS[1], "name": "ki67b"}]}, "derive the endpoint column\\(s\\) \\['ki67_high'\\] more than once"),
])
def test_task_configuration_errors_are_specific(two_task_study: Path, change: dict, message: str) -> None:
    path = _write(two_task_study.parent, **change)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_fine_tuned_deep_features_need_one_endpoint(two_task_study: Path) -> None:
    path = _write(two_task_study.parent, deep_features=[{"series": "CT", "mode": "finetune"}])
    with pytest.raises(ConfigError, match="mode: finetune learn from one binary endpoint"):
        load_config(path)


# -- runner --------------------------------------------------------------------------------------------------------


def test_per_task_steps_run_once_per_task(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    runs = [(s.name, c, t) for s, c, t in plan_runs(cfg)]
    assert runs == [("acquisition_qc", "train", None), ("acquisition_qc", "test", None), ("feature_extraction", None, None),
                    ("signature", None, "grade"), ("signature", None, "ki67"), ("models", None, "grade"), ("models", None, "ki67"),
                    ("statistics", None, "grade"), ("statistics", None, "ki67"), ("supplement", None, None)]
    only = [(s.name, t) for s, _, t in plan_runs(cfg, task="ki67")]
    assert ("signature", "ki67") in only and ("signature", "grade") not in only and ("supplement", None) in only
    with pytest.raises(ConfigError, match="unknown task"):
        plan_runs(cfg, task="stage")
    # A step may opt in or out explicitly.
    data = yaml.safe_load(two_task_study.read_text())
    data["steps"][0]["per_task"] = True
    two_task_study.write_text(yaml.safe_dump(data, sort_keys=False))
    assert [(s.name, c, t) for s, c, t in plan_runs(load_config(two_task_study))][:2] == [("acquisition_qc", "train", "grade"),
                                                                                            ("acquisition_qc", "test", "grade")]


def test_upstream_of_a_task_is_its_own_run_and_the_supplement_depends_on_every_task(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    ki67 = cfg.for_task("ki67")
    models = cfg.step("models")
    assert _upstream_ledgers(ki67, models, None) == [("signature", None, ki67.report_root)]
    assert _upstream_ledgers(ki67, cfg.step("signature"), None) == [("feature_extraction", None, cfg.study_root)]
    supplement = _upstream_ledgers(cfg, cfg.step("supplement"), None)
    assert ("statistics", None, cfg.for_task("grade").report_root) in supplement and ("statistics", None, ki67.report_root) in supplement
    # A changed output of one task's statistics changes the supplement's key, and that task's models key does not move.
    before = (step_key(cfg, cfg.step("supplement"), None, {}, "c", "e"), step_key(ki67, models, None, {}, "c", "e"))
    writer = ReportWriter(cfg.for_task("grade"), "statistics")
    writer.table(pd.DataFrame({"x": [1]}), "performance", per_cohort=False)
    after = (step_key(cfg, cfg.step("supplement"), None, {}, "c", "e"), step_key(ki67, models, None, {}, "c", "e"))
    assert after[0] != before[0] and after[1] == before[1]
    assert step_key(ki67, models, None, {}, "c", "e") != step_key(cfg.for_task("grade"), models, None, {}, "c", "e")


def test_artifacts_of_per_task_steps_live_in_the_task_folder(two_task_study: Path) -> None:
    ki67 = load_config(two_task_study, task="ki67")
    assert artifacts.RADSCORES.path(ki67) == ki67.study_root / "tasks" / "ki67" / "features" / "radscores.parquet"
    assert artifacts.FEATURES.path(ki67, preset="ibsi") == ki67.study_root / "features" / "features_ibsi.parquet"
    assert artifacts.RUN_RECORD.path(ki67) == ki67.study_root / "provenance" / "latest.json"
    writer = ReportWriter(ki67, "signature")
    assert writer.root == ki67.report_root


# -- validation ------------------------------------------------------------------------------------------------------


def test_patient_table_gets_every_tasks_endpoint(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    table = load_patient_table(cfg)
    assert table["ki67_high"].tolist() == [0, 1, 1, 0] and table["high_grade"].tolist() == [0, 1, 0, 1]
    # One task's view reads its own endpoint.
    assert "high_grade" in load_patient_table(cfg.for_task("grade")).columns


def test_a_missing_column_of_the_second_task_is_named(two_task_study: Path) -> None:
    folder = two_task_study.parent
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "high_grade": [0, 1, 0, 1]}).to_csv(folder / "patients.csv", index=False)
    with pytest.raises(ManifestError) as err:
        load_patient_table(load_config(two_task_study))
    assert any(i.column == "ki67_index" and "missing" in i.problem for i in err.value.issues)


def test_a_training_cohort_with_one_class_of_one_task_names_the_task(two_task_study: Path) -> None:
    folder = two_task_study.parent
    # Training patients P01, P02: both Ki-67 low (index below 20), grade both classes.
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "high_grade": [0, 1, 0, 1],
                  "ki67_index": [5.0, 15.0, 25.0, 10.0]}).to_csv(folder / "patients.csv", index=False)
    with pytest.raises(ManifestError) as err:
        load_study(load_config(two_task_study), check_images=False)
    problems = [i.problem for i in err.value.issues]
    assert any(p.startswith("task 'ki67': training cohort 'train' has a single class of 'ki67_high'") for p in problems), problems
    assert not any(p.startswith("task 'grade': training cohort 'train' has a single class") for p in problems)


# -- the supplement -------------------------------------------------------------------------------------------------


def _performance(model: str, values: dict[str, tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for cohort, (auc, sens) in values.items():
        rows.append({"model": "Clinical", "cohort": cohort, "AUC (95% CI)": "0.500 (0.400-0.600)"})
        rows.append({"model": model, "cohort": cohort, "AUC (95% CI)": auc, "Sensitivity (95% CI)": sens, "Specificity (95% CI)": "0.700 (0.600-0.800)",
                     "Accuracy (95% CI)": "0.710 (0.610-0.810)", "PPV (95% CI)": "0.6 (0.5-0.7)", "NPV (95% CI)": "0.8 (0.7-0.9)"})
    return pd.DataFrame(rows)


def _fake_task_outputs(cfg) -> None:
    """Each task's statistics writes a performance table (values made up, distinct per task and cohort)."""
    for view, (model, values) in zip(cfg.task_views(), [
        ("Radiomics (logistic)", {"train": ("0.810 (0.700-0.900)", "0.1"), "test": ("0.740 (0.660-0.810)", "0.880 (0.740-0.960)")}),
        ("Radiomics (svm)", {"train": ("0.9", "0.2"), "test": ("0.830 (0.760-0.890)", "0.820 (0.660-0.930)")}),
    ], strict=True):
        writer = ReportWriter(view, "statistics")
        writer.table(_performance(model, values), "performance", per_cohort=False)
        (view.report_root / "provenance").mkdir(parents=True, exist_ok=True)


def test_task_comparison_copies_each_tasks_final_model_in_the_held_out_cohorts(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    _fake_task_outputs(cfg)
    table = task_comparison(cfg)
    assert list(table.columns) == ["metric", "Pathological grade: test", "Ki-67 index: test"]  # training is not a held-out cohort
    row = table.set_index("metric")
    assert row.loc["AUC (95% CI)"].tolist() == ["0.740 (0.660-0.810)", "0.830 (0.760-0.890)"]
    assert row.loc["Sensitivity (95% CI)"].tolist() == ["0.880 (0.740-0.960)", "0.820 (0.660-0.930)"]
    assert table.attrs["models"] == ["Pathological grade: Radiomics (logistic)", "Ki-67 index: Radiomics (svm)"]
    assert task_comparison(cfg.for_task("grade").model_copy(update={"tasks": ()})) is None


def test_task_comparison_needs_each_tasks_statistics(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    with pytest.raises(FileNotFoundError, match="tasks/grade/tables/performance.csv not found: run the statistics step"):
        task_comparison(cfg)


def test_supplement_shows_every_task_under_its_name(two_task_study: Path) -> None:
    cfg = load_config(two_task_study)
    _fake_task_outputs(cfg)
    shared = ReportWriter(cfg, "feature_extraction")
    shared.table(pd.DataFrame({"class": ["glcm"], "features": [24]}), "feature_counts_ct", per_cohort=False)
    for view in cfg.task_views():  # a label-free table, identical in both tasks, and one that differs
        writer = ReportWriter(view, "signature")
        writer.table(pd.DataFrame({"block": ["CT tumour"], "retained": [12]}), "icc_retained_counts", per_cohort=False)
        writer.table(pd.DataFrame({"step": ["lasso"], "remaining": [3 if view.task == "grade" else 5]}), "selection_pathway", per_cohort=False)
    supplement = ReportWriter(cfg, "supplement")
    from helpers.steps.supplement import write_task_comparison

    write_task_comparison(cfg, supplement)
    supp = assemble_supplement(cfg, exclude_steps=("supplement",))
    titles = [title for _, title, _ in supp.sections]
    assert titles[:6] == ["Regions of interest and radiomics feature extraction",
                          "Pathological grade: Feature stability, harmonisation and selection", "Pathological grade: Model performance and statistical comparisons",
                          "Ki-67 index: Feature stability, harmonisation and selection", "Ki-67 index: Model performance and statistical comparisons",
                          "The tasks compared"]
    icc = [it for it in supp.items if it.name == "icc_retained_counts"]
    assert len(icc) == 1 and icc[0].all_tasks and icc[0].caption.startswith("All tasks (identical for each) - ")
    assert [it.task for it in supp.items if it.name == "selection_pathway"] == ["grade", "ki67"]
    keys = [key for key, _, _ in supp.sections]
    assert len(keys) == len(set(keys))  # HTML ids stay unique
    perf = [it for it in supp.items if it.name == "performance"]
    assert [(it.path, it.task) for it in perf] == [("tasks/grade/tables/performance.csv", "grade"), ("tasks/ki67/tables/performance.csv", "ki67")]
    assert perf[0].caption.startswith("Pathological grade - ") and perf[1].caption.startswith("Ki-67 index - ")
    comparison = next(it for it in supp.items if it.name == "task_comparison")
    cells = supp.tables[comparison.anchor].display
    assert [c.label for c in cells.columns] == ["Metric", "Pathological grade, test", "Ki-67 index, test"]
    assert not cells.unlabelled
    # Each task's statistics paragraph is written from its own outputs, titled with the task.
    stats = [p for p in supp.methods if p.key == "statistics"]
    assert [p.heading for p in stats] == ["Statistical evaluation: Pathological grade", "Statistical evaluation: Ki-67 index"]
    assert len({p.anchor for p in supp.methods}) == len(supp.methods)


def test_methods_paragraph_heading_and_anchor() -> None:
    p = MethodsParagraph("signature", "Signature", "text", "ki67", "Ki-67 index")
    assert (p.heading, p.anchor) == ("Signature: Ki-67 index", "signature-ki67")
    assert (MethodsParagraph("signature", "Signature", "text").heading, MethodsParagraph("a", "A", "t").anchor) == ("Signature", "a")
    assert json.dumps([p.key for p in [p]]) == '["signature"]'


def test_task_comparison_of_a_binary_and_a_survival_task(tiny_study: Path) -> None:
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "high_grade": [0, 1, 0, 1], "months": [10.0, 20.0, 30.0, 40.0],
                  "relapse": [1, 0, 1, 0]}).to_csv(tiny_study / "patients.csv", index=False)
    tasks = [TASKS[0], {"name": "relapse", "title": "Relapse-free survival", "endpoints": {"time": "months", "event": "relapse"}}]
    cfg = load_config(_write(tiny_study, tasks=tasks))
    grade, relapse = cfg.task_views()
    assert relapse.survival_only and not grade.survival_only
    ReportWriter(grade, "statistics").table(_performance("Radiomics (logistic)", {"test": ("0.700 (0.600-0.800)", "0.5")}), "performance",
                                            per_cohort=False)
    ablation = pd.DataFrame([{"model": "Clinical", "cohort": "test", "C-index (95% CI)": "0.55 (0.45-0.65)"},
                             {"model": "C-radiomics", "cohort": "test", "C-index (95% CI)": "0.71 (0.62-0.80)", "AUC (95% CI)": "0.73 (0.60-0.85)",
                              "IBS (95% CI)": "0.17 (0.12-0.22)"}])
    ReportWriter(relapse, "statistics").table(ablation, "survival_ablation", per_cohort=False)
    table = task_comparison(cfg).set_index("metric")
    assert table.index.tolist() == ["AUC (95% CI)", "Sensitivity (95% CI)", "Specificity (95% CI)", "Accuracy (95% CI)", "PPV (95% CI)",
                                    "NPV (95% CI)", "C-index (95% CI)", "IBS (95% CI)"]
    assert table["Relapse-free survival: test"].tolist() == ["0.73 (0.60-0.85)", "-", "-", "-", "-", "-", "0.71 (0.62-0.80)", "0.17 (0.12-0.22)"]
    assert table["Pathological grade: test"].tolist()[:2] == ["0.700 (0.600-0.800)", "0.5"] and table.loc["C-index (95% CI)"].iloc[0] == "-"


def test_review_points_name_their_task_and_shared_points_are_listed_once(two_task_study: Path) -> None:
    from helpers.reporting.supplement.review_points import review_points

    cfg = load_config(two_task_study)
    # Shared files: the cohort counts (per task's endpoint: different counts) and the failed extraction units (alike).
    ReportWriter(cfg, "acquisition_qc").table(pd.DataFrame([
        {"cohort": "train", "patients": 2, "high_grade=0": "1 (50.0%)", "high_grade=1": "1 (50.0%)", "ki67_high=0": "1 (50.0%)", "ki67_high=1": "1 (50.0%)"},
        {"cohort": "test", "patients": 2, "high_grade=0": "1 (50.0%)", "high_grade=1": "1 (50.0%)", "ki67_high=0": "2 (100.0%)", "ki67_high=1": "0 (0.0%)"},
    ]), "cohort_split_counts", per_cohort=False)
    ReportWriter(cfg, "feature_extraction").table(pd.DataFrame({"patient": ["P03"], "series": ["CT"], "reason": ["boom"]}), "extraction_failures",
                                                  per_cohort=False)
    ReportWriter(cfg.for_task("ki67"), "statistics").table(pd.DataFrame([{"model": "Radiomics (logistic)", "cohort": "test", "slope": 3.0,
                                                                          "slope_lower": 1.5, "slope_upper": 4.5}]), "calibration", per_cohort=False)
    points = review_points(cfg)
    small = [p for p in points if p.rule == "small_evaluation_cohort"]
    assert [p.text.split(":")[0] for p in small] == ["Pathological grade", "Ki-67 index"]
    assert "2 patients, 1 events and 1 non-events" in small[0].text and "2 patients, 0 events and 2 non-events" in small[1].text
    failed = [p for p in points if p.rule == "failed_units"]
    assert len(failed) == 1 and failed[0].text.startswith("1 feature-extraction unit failed") and failed[0].source == "tables/extraction_failures.csv"
    slope = [p for p in points if p.rule == "calibration_slope"]
    assert [(p.text.split(":")[0], p.source) for p in slope] == [("Ki-67 index", "tasks/ki67/tables/calibration.csv")]


def _task_notebook(path: Path, *sources: str) -> str:
    """A notebook with the runner's parameters, ``task`` included; its absolute path."""
    from .test_pipeline import _notebook

    _notebook(path, *sources, parameters='config_path = "study.yaml"\nstep = ""\ncohort = ""\ntask = ""')
    return str(path)


_HEADER = """from helpers.settings.study import load_config
from helpers.reporting.writer import ReportWriter
import pandas as pd
cfg = load_config(config_path, task=task or None)
report = ReportWriter(cfg, step, cohort or None)"""


@pytest.mark.slow
def test_runner_runs_each_task_into_its_folder_and_skips_what_is_unchanged(two_task_study: Path) -> None:
    import io

    from helpers.runner.pipeline import run_study

    folder = two_task_study.parent
    fit = _task_notebook(folder / "nbs" / "fit.ipynb", _HEADER,
                         'report.table(pd.DataFrame({"endpoint": [cfg.endpoints.binary], "task": [cfg.task]}), "endpoint", per_cohort=False)')
    gather = _task_notebook(folder / "nbs" / "gather.ipynb", _HEADER,
                            'report.table(pd.concat([pd.read_csv(v.report_root / "tables" / "endpoint.csv") for v in cfg.task_views()]), '
                            '"gathered", per_cohort=False)')
    steps = [{"name": "fit", "notebook": fit, "per_cohort": False, "per_task": True},
             {"name": "gather", "notebook": gather, "per_cohort": False, "depends_on": ["fit"]}]
    path = _write(folder, steps=steps)
    first = run_study(path, out=io.StringIO())
    assert [(r.step, r.task, r.status) for r in first] == [("fit", "grade", "ran"), ("fit", "ki67", "ran"), ("gather", None, "ran")]
    root = folder / "reports" / "tiny"
    assert pd.read_csv(root / "tables" / "gathered.csv").to_dict("list") == {"endpoint": ["high_grade", "ki67_high"], "task": ["grade", "ki67"]}
    assert (root / "tasks" / "ki67" / "notebooks" / "fit.ipynb").is_file() and first[1].notebook == "tasks/ki67/notebooks/fit.ipynb"
    record = json.loads((root / "provenance" / "latest.json").read_text())
    assert [(s["step"], s["task"]) for s in record["steps"]] == [("fit", "grade"), ("fit", "ki67"), ("gather", None)]
    again = run_study(path, out=io.StringIO())
    assert [r.status for r in again] == ["skipped"] * 3
    # A damaged output of one task re-runs that task only; its output comes back identical, so the study-level step stays current
    # (that a changed task output changes the study-level step's key: test_upstream_of_a_task_is_its_own_run...).
    (root / "tasks" / "grade" / "tables" / "endpoint.csv").write_text("endpoint,task\nchanged,grade\n")
    third = run_study(path, out=io.StringIO())
    assert [(r.step, r.task, r.status) for r in third] == [("fit", "grade", "ran"), ("fit", "ki67", "skipped"), ("gather", None, "skipped")]
    assert pd.read_csv(root / "tasks" / "grade" / "tables" / "endpoint.csv")["endpoint"].tolist() == ["high_grade"]
    only = run_study(path, task="ki67", force=True, out=io.StringIO())
    assert [(r.step, r.task) for r in only] == [("fit", "ki67"), ("gather", None)]
