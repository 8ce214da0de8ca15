"""The supplementary document: every table and figure of a study run, numbered and captioned.

The step ledgers (``reports/<study>/.state/outputs/``) say which files each
step wrote. :func:`collect_outputs` walks them in step order (per-cohort steps
in cohort order) and numbers the tables (``Table S1``...), figures
(``Figure S1``...) and text notes (``Note S1``...), captioned from
``supplement.yaml`` (this package). :func:`build_supplement` writes, under
``reports/<study>/supplementary/``:

- ``supplementary.docx``: title, generated methods, tables as Word tables,
  figures from the 300 dpi PNGs scaled to the page width, the points a
  reviewer will raise, the METRICS quality score and the CLEAR / TRIPOD+AI
  checklists;
- ``supplementary.html``: the same content in one self-contained file (CSS
  inline with print rules for A4 portrait and landscape pages, figures as
  base64 PNG data URIs, a table of contents, no script);
- ``supplementary_tables.tex``: a standalone LaTeX document (pdflatex) with
  every inlined table as a booktabs ``longtable`` numbered like the other two.

Tables (``table_format``, ``table_layout``, headers from ``table_labels.yaml``):
tables under ``tables/`` are shown in full up to ``max_rows`` rows (headline
tables always in full), else their first rows; data tables under
``features/`` are shown when they have at most ``max_rows`` rows and
``max_columns`` columns, else referenced by file. Wide tables go on landscape
pages or are split into column groups; nothing is set below 7 pt.

Everything shown is read from files already under ``reports/<study>/`` (and
from the study configuration for the methods), so the document holds no value
the reports do not; identical inputs give byte-identical files (the DOCX zip
timestamps and core-property dates are fixed).

Modules: ``collect`` (items, captions, cells), ``methods`` (the generated methods), ``checklists``
(CLEAR, TRIPOD+AI, METRICS), ``review_points``, ``docx_document``, ``html_document`` and ``latex_tables`` (the three writers).
"""


from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.checklists import checklist_item, checklist_table, quality_sections
from helpers.reporting.supplement.collect import (
    _NOTE_MAX_CHARS,
    DATA_FILE,
    EXCERPT_ROWS,
    SUPPLEMENT_DIR,
    MethodsParagraph,
    Supplement,
    SupplementItem,
    SupplementPaths,
    SupplementTable,
    _collect,
    _display,
    _read_json,
    _root,
    caption_for,
    collect_outputs,
    document_runs,
    load_supplement_data,
    read_table,
    validate_supplement_data,
)  # fmt: skip
from helpers.reporting.supplement.docx_document import write_docx
from helpers.reporting.supplement.html_document import write_html
from helpers.reporting.supplement.latex_tables import latex_escape, write_latex
from helpers.reporting.supplement.methods import _other_outputs_paragraph, methods_text
from helpers.reporting.supplement.table_format import DisplayColumn, DisplayTable, LabelBook, conventions_text
from helpers.reporting.supplement.table_layout import plan_layout
from helpers.settings.study import StudyConfig, load_config

__all__ = [
    "DATA_FILE", "MethodsParagraph", "Supplement", "SupplementItem", "SupplementPaths", "SupplementTable", "SupplementWarning",
    "assemble_supplement", "build_supplement", "caption_for", "checklist_table", "collect_outputs", "latex_escape", "load_supplement_data",
    "validate_supplement_data",
    "methods_text", "write_docx", "write_html", "write_latex",
]  # fmt: skip

#: Step titles, caption templates and checklist items.

def _text_table(header: list[str], rows: list[list[str]], note: str) -> SupplementTable:
    """A table the supplement generates itself (checklists, METRICS, review points): text cells, the first column the identifier."""
    display = DisplayTable(tuple(DisplayColumn(f"c{j}", label, "text", j == 0) for j, label in enumerate(header)),
                           tuple(tuple(str(c) for c in row) for row in rows))  # fmt: skip
    return SupplementTable(display, plan_layout(display), note)


def assemble_supplement(cfg: StudyConfig, report_root: str | Path | None = None, max_rows: int = 300, max_columns: int = 24,
                        data: Mapping | None = None, exclude_steps: tuple[str, ...] = ()) -> Supplement:  # fmt: skip
    """Collect, caption, number and read everything the documents show (one pass over the files).

    ``max_rows``: tables with more rows show their first rows (headline tables are always complete) and data tables
    with more rows are referenced; ``max_columns``: data tables (``features/``) with more columns are referenced.
    """
    root = _root(cfg, report_root)
    data = validate_supplement_data(data) if data is not None else load_supplement_data()
    collected = _collect(cfg, root, max_columns, data, exclude_steps, max_rows)
    book = LabelBook.for_study(list(cfg.cohorts), list(cfg.series))
    items = collected.items
    methods = methods_text(cfg, root, items)
    extra = _other_outputs_paragraph(collected.other)
    if extra is not None:
        methods.append(extra)
    step_titles = data.get("steps", {}) or {}
    sections = []
    for step, task in document_runs(cfg):
        own = [it for it in items if it.step == step.name and it.task == task]
        if own:
            title = step_titles.get(step.name) or _display(step.name).capitalize()
            # A per-task section's key (its HTML id) names the task too: every task has a signature section.
            sections.append((f"{step.name}-{task}" if task else step.name, f"{cfg.task_config(task).label}: {title}" if task else title, own))
    tables: dict[str, SupplementTable] = {}
    notes_text: dict[str, str] = {}
    for it in items:
        if it.kind == "table" and it.inline:
            tables[it.anchor] = read_table(root, it, max_rows, book)
            if tables[it.anchor].display.unlabelled:
                collected.messages.append(f"{it.path}: no header label for column(s) {list(tables[it.anchor].display.unlabelled)}; "
                                          "shown by name; add them to table_labels.yaml")  # fmt: skip
        elif it.kind == "note":
            text = (root / it.path).read_text(errors="replace", encoding="utf-8")
            notes_text[it.anchor] = text if len(text) <= _NOTE_MAX_CHARS else text[:_NOTE_MAX_CHARS] + f"\n[... truncated; full text: {it.path}]"
    n_tables = sum(it.kind == "table" for it in items)
    quality, quality_cells = quality_sections(cfg, root, items, methods, collected.other, n_tables + 1)
    sections += quality
    checklist, checklist_cells = checklist_item(cfg, items, methods, collected.other, n_tables + 1 + len(quality))
    generated = {**quality_cells, checklist.anchor: checklist_cells}
    for item in [it for _, _, its in quality for it in its] + [checklist]:
        tables[item.anchor] = _text_table(*generated[item.anchor], item.note)
    prov = _read_json(root / "provenance" / "latest.json")
    sub = f"Study '{cfg.study}'. Generated by helpers.reporting.supplement from the outputs under reports/{cfg.study}/"
    if prov.get("finished_utc"):
        sub += f" (run finished {prov['finished_utc']})"
    sub += f": {n_tables} tables, {sum(it.kind == 'figure' for it in items)} figures."
    return Supplement(cfg.study, root, f"Supplementary material: {cfg.study}", sub, sections, methods, checklist, tables, notes_text,
                      list(collected.messages), conventions_text(max_rows, EXCERPT_ROWS, max_columns))  # fmt: skip


# --------------------------------------------------------------------------- DOCX



def build_supplement(cfg: StudyConfig, report_root: str | Path | None = None, max_rows: int = 300, max_columns: int = 24,
                     out_dir: str | Path | None = None, writer=None) -> SupplementPaths:  # fmt: skip
    """Write ``supplementary/supplementary.docx``, ``.html`` and ``supplementary_tables.tex`` under the report root.

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration (steps, cohorts and settings for the methods).
    report_root : path, optional
        ``reports/<study>/`` (default: ``cfg.report_root``).
    max_rows : int
        Tables with more rows show their first rows (headline tables are always complete) and end with a note
        naming the full file; data tables (``features/``) with more rows are referenced, not inlined.
    max_columns : int
        Data tables (``features/``) with more columns are referenced, not inlined.
    out_dir : path, optional
        Where the three files go (default: ``<report root>/supplementary``).
    writer : ReportWriter, optional
        When given (a notebook step), the three files are recorded in its ledger.

    Returns
    -------
    SupplementPaths
        The files, the numbered items, the outputs shown with a generic
        caption and every warning (each also emitted as a
        :class:`SupplementWarning`).
    """
    supp = assemble_supplement(cfg, report_root, max_rows, max_columns, exclude_steps=(writer.step,) if writer is not None else ())
    for message in supp.warnings:
        warnings.warn(message, SupplementWarning, stacklevel=2)
    folder = Path(out_dir) if out_dir is not None else supp.root / SUPPLEMENT_DIR
    paths = (
        write_docx(supp, folder / "supplementary.docx"),
        write_html(supp, folder / "supplementary.html"),
        write_latex(supp, folder / "supplementary_tables.tex"),
    )
    if writer is not None:
        for p in paths:
            writer.record(p)
    uncaptioned = tuple(it.path for it in supp.items if not it.captioned)
    return SupplementPaths(*paths, tuple(supp.items), uncaptioned, tuple(supp.warnings))


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.reporting.supplement --config study.yaml``: build the supplement of a finished (or partial) run."""
    p = argparse.ArgumentParser(prog="python -m helpers.reporting.supplement", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="study.yaml")
    p.add_argument("--report-root", default=None, help="reports/<study>/ (default: from the config)")
    p.add_argument("--out-dir", default=None, help="output folder (default: <report root>/supplementary)")
    p.add_argument("--max-rows", type=int, default=300)
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupplementWarning)
        result = build_supplement(cfg, args.report_root, max_rows=args.max_rows, out_dir=args.out_dir)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"{result.n_tables} tables, {result.n_figures} figures -> {result.docx.parent}")
    return 0

