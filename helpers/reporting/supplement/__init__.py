"""The supplementary document: every table and figure of a study run, numbered and captioned.

The step ledgers (``reports/<study>/.state/outputs/``) say which files each
step wrote. :func:`collect_outputs` walks them in step order (per-cohort steps
in cohort order) and numbers the tables (``Table S1``...), figures
(``Figure S1``...) and text notes (``Note S1``...), captioned from
``supplement.yaml`` (this package). :func:`build_supplement` writes, under
``reports/<study>/supplementary/``:

- ``supplementary.docx``: title, generated methods, tables as Word tables
  (at most ``max_rows`` rows shown; tables wider than ``max_columns`` and the
  data tables under ``features/`` are referenced, not inlined), figures from
  the 300 dpi PNGs scaled to the page width, the points a reviewer will
  raise, the METRICS quality score and the CLEAR / TRIPOD+AI checklists;
- ``supplementary.html``: the same content in one self-contained file (CSS
  inline, figures as base64 PNG data URIs, a table of contents, no script);
- ``supplementary_tables.tex``: every inlined table as a booktabs LaTeX
  table with the same number (``\\caption``/``\\label``).

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
    SUPPLEMENT_DIR,
    MethodsParagraph,
    Supplement,
    SupplementItem,
    SupplementPaths,
    _collect,
    _display,
    _read_cells,
    _read_json,
    _root,
    caption_for,
    collect_outputs,
    load_supplement_data,
    validate_supplement_data,
)  # fmt: skip
from helpers.reporting.supplement.docx_document import write_docx
from helpers.reporting.supplement.html_document import write_html
from helpers.reporting.supplement.latex_tables import latex_escape, write_latex
from helpers.reporting.supplement.methods import _other_outputs_paragraph, methods_text
from helpers.settings.study import StudyConfig, load_config

__all__ = [
    "DATA_FILE", "MethodsParagraph", "Supplement", "SupplementItem", "SupplementPaths", "SupplementWarning",
    "assemble_supplement", "build_supplement", "caption_for", "checklist_table", "collect_outputs", "latex_escape", "load_supplement_data",
    "validate_supplement_data",
    "methods_text", "write_docx", "write_html", "write_latex",
]  # fmt: skip

#: Step titles, caption templates and checklist items.

def assemble_supplement(cfg: StudyConfig, report_root: str | Path | None = None, max_rows: int = 40, max_columns: int = 24,
                        data: Mapping | None = None, exclude_steps: tuple[str, ...] = ()) -> Supplement:  # fmt: skip
    """Collect, caption, number and read everything the documents show (one pass over the files)."""
    root = _root(cfg, report_root)
    data = validate_supplement_data(data) if data is not None else load_supplement_data()
    collected = _collect(cfg, root, max_columns, data, exclude_steps)
    items = collected.items
    methods = methods_text(cfg, root, items)
    extra = _other_outputs_paragraph(collected.other)
    if extra is not None:
        methods.append(extra)
    step_titles = data.get("steps", {}) or {}
    sections = []
    for step in cfg.steps:
        own = [it for it in items if it.step == step.name]
        if own:
            title = step_titles.get(step.name) or _display(step.name).capitalize()
            sections.append((step.name, title, own))
    cells: dict[str, tuple[list[str], list[list[str]]]] = {}
    notes_text: dict[str, str] = {}
    for it in items:
        if it.kind == "table" and it.inline:
            cells[it.anchor] = _read_cells(root / it.path, max_rows)
        elif it.kind == "note":
            text = (root / it.path).read_text(errors="replace", encoding="utf-8")
            notes_text[it.anchor] = text if len(text) <= _NOTE_MAX_CHARS else text[:_NOTE_MAX_CHARS] + f"\n[... truncated; full text: {it.path}]"
    n_tables = sum(it.kind == "table" for it in items)
    quality, quality_cells = quality_sections(cfg, root, items, methods, collected.other, n_tables + 1)
    sections += quality
    cells.update(quality_cells)
    checklist, checklist_cells = checklist_item(cfg, items, methods, collected.other, n_tables + 1 + len(quality))
    cells[checklist.anchor] = checklist_cells
    prov = _read_json(root / "provenance" / "latest.json")
    sub = f"Study '{cfg.study}'. Generated by helpers.reporting.supplement from the outputs under reports/{cfg.study}/"
    if prov.get("finished_utc"):
        sub += f" (run finished {prov['finished_utc']})"
    sub += f": {n_tables} tables, {sum(it.kind == 'figure' for it in items)} figures."
    return Supplement(cfg.study, root, f"Supplementary material: {cfg.study}", sub, sections, methods, checklist, cells, notes_text,
                      list(collected.messages))  # fmt: skip


# --------------------------------------------------------------------------- DOCX



def build_supplement(cfg: StudyConfig, report_root: str | Path | None = None, max_rows: int = 40, max_columns: int = 24,
                     out_dir: str | Path | None = None, writer=None) -> SupplementPaths:  # fmt: skip
    """Write ``supplementary/supplementary.docx``, ``.html`` and ``supplementary_tables.tex`` under the report root.

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration (steps, cohorts and settings for the methods).
    report_root : path, optional
        ``reports/<study>/`` (default: ``cfg.report_root``).
    max_rows : int
        Table rows shown; longer tables end with a note naming the full file.
    max_columns : int
        Tables with more columns are referenced, not inlined.
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
        write_docx(supp, folder / "supplementary.docx", max_rows),
        write_html(supp, folder / "supplementary.html", max_rows),
        write_latex(supp, folder / "supplementary_tables.tex", max_rows),
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
    p.add_argument("--max-rows", type=int, default=40)
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupplementWarning)
        result = build_supplement(cfg, args.report_root, max_rows=args.max_rows, out_dir=args.out_dir)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"{result.n_tables} tables, {result.n_figures} figures -> {result.docx.parent}")
    return 0

