"""Step ``supplement`` (notebook 07): the supplementary document (DOCX, self-contained HTML, LaTeX tables)."""

from __future__ import annotations

import pandas as pd

from helpers.reporting.supplement import SupplementPaths, build_supplement
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig

__all__ = ["numbered_items", "write_supplement"]


def write_supplement(cfg: StudyConfig, report: ReportWriter) -> SupplementPaths:
    """Build ``supplementary/supplementary.{docx,html}`` and ``supplementary_tables.tex`` from every output of the
    run (numbered, captioned; methods from the provenance; CLEAR / TRIPOD+AI checklist)."""
    return build_supplement(cfg, writer=report)


def numbered_items(supplement: SupplementPaths) -> pd.DataFrame:
    """The numbered tables and figures of the document (number, kind, name, caption)."""
    return pd.DataFrame([{"number": it.number, "kind": it.kind, "name": it.name, "caption": it.caption} for it in supplement.items])
