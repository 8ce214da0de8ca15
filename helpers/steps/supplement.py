"""Step ``supplement`` (notebook 07): the tasks side by side, then the supplementary document (DOCX, self-contained HTML,
LaTeX tables)."""

from __future__ import annotations

import pandas as pd

from helpers.data import artifacts
from helpers.errors import InputDataError
from helpers.reporting.supplement import SupplementPaths, build_supplement
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig

__all__ = ["numbered_items", "task_comparison", "write_supplement", "write_task_comparison"]

#: Rows of the comparison table, from notebook 06's ``performance`` (binary tasks) and ``survival_ablation`` (survival-only
#: tasks) tables: the formatted estimate with its 95% CI.
BINARY_ROWS = ("AUC (95% CI)", "Sensitivity (95% CI)", "Specificity (95% CI)", "Accuracy (95% CI)", "PPV (95% CI)", "NPV (95% CI)")
SURVIVAL_ROWS = ("C-index (95% CI)", "AUC (95% CI)", "IBS (95% CI)")
#: The model of a survival-only task compared across tasks: the Cox model on the radiomics signature.
SURVIVAL_MODEL = "C-radiomics"


def _final_rows(view: StudyConfig) -> tuple[str, pd.DataFrame, tuple[str, ...]]:
    """(model, its rows of notebook 06's table, the metric columns) for one task."""
    if view.survival_only:
        table, model, metrics = artifacts.SURVIVAL_ABLATION.read(view), SURVIVAL_MODEL, SURVIVAL_ROWS
    else:
        table, metrics = artifacts.PERFORMANCE.read(view), BINARY_ROWS
        finals = [m for m in dict.fromkeys(table["model"]) if str(m).startswith("Radiomics (")]
        if len(finals) != 1:
            raise InputDataError(f"task '{view.task}': {artifacts.PERFORMANCE.path(view)} should hold one final radiomics model "
                                 f"('Radiomics (<algorithm>)'), found {finals}; re-run the models and statistics steps of this task")
        model = finals[0]
    return model, table[table["model"] == model].set_index("cohort"), metrics


def task_comparison(cfg: StudyConfig) -> pd.DataFrame | None:
    """The final radiomics model of every task side by side (seed study 002, Table S2), ``None`` without ``tasks``.

    One row per metric (AUC, sensitivity, specificity, accuracy, PPV and NPV with 95% CIs at the task's training
    threshold; C-index, AUC and IBS for a survival-only task's Cox model), one column per task and held-out cohort
    (validation, then test cohorts), named ``<task>: <cohort>``. Values are copied from each task's notebook 06 tables,
    so the comparison holds no number those tables do not.
    """
    if not cfg.tasks:
        return None
    views = cfg.task_views()
    metrics = list(dict.fromkeys(m for v in views for m in (SURVIVAL_ROWS if v.survival_only else BINARY_ROWS)))
    out = pd.DataFrame({"metric": metrics})
    models = []
    for view in views:
        model, rows, own = _final_rows(view)
        models.append(f"{view.task_label}: {model}")
        for cohort in cfg.held_out_cohorts:
            values = rows.loc[cohort] if cohort in rows.index else None
            out[f"{view.task_label}: {cohort}"] = [str(values[m]) if values is not None and m in own and m in values.index
                                                   and pd.notna(values[m]) else "-" for m in metrics]
    out.attrs["models"] = models
    return out


def write_task_comparison(cfg: StudyConfig, report: ReportWriter) -> pd.DataFrame | None:
    """Write ``tables/task_comparison`` for a study with several tasks (before the document is built, so it is in it)."""
    table = task_comparison(cfg)
    if table is not None:
        report.table(table, "task_comparison", per_cohort=False)
    return table


def write_supplement(cfg: StudyConfig, report: ReportWriter) -> SupplementPaths:
    """Build ``supplementary/supplementary.{docx,html}`` and ``supplementary_tables.tex`` from every output of the
    run (numbered, captioned; methods from the provenance; CLEAR / TRIPOD+AI checklist)."""
    return build_supplement(cfg, writer=report)


def numbered_items(supplement: SupplementPaths) -> pd.DataFrame:
    """The numbered tables and figures of the document (number, kind, name, caption)."""
    return pd.DataFrame([{"number": it.number, "kind": it.kind, "name": it.name, "caption": it.caption} for it in supplement.items])
