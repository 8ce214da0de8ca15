"""The reporting checklists (CLEAR, TRIPOD+AI) with a pointer to where each item is addressed."""


from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import MethodsParagraph, SupplementItem, _labels, _matching, load_supplement_data
from helpers.reporting.supplement.methods import _config_value
from helpers.settings.study import StudyConfig


def checklist_table(cfg: StudyConfig, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph] = (), other: Sequence[str] = (),
                    data: Mapping | None = None) -> list[dict[str, str]]:  # fmt: skip
    """Rows mapping CLEAR and TRIPOD+AI items to where the supplement addresses them.

    Returns
    -------
    list of dict
        ``guideline``, ``item`` (published number, empty when not certain),
        ``topic`` and ``addressed`` (table/figure numbers, methods sections,
        files, or ``not applicable`` / ``not addressed``).
    """
    data = data if data is not None else load_supplement_data()
    titles = {p.key: p.title for p in methods if p.text}
    rows = []
    for guideline in data.get("checklists", []):
        for entry in guideline.get("items", []):
            requires = entry.get("requires")
            if requires and not _config_value(cfg, requires):
                where = "not applicable"
            else:
                cited = _labels(_matching(items, entry.get("outputs", []), cfg))
                files = [rel for rel in other if any(fnmatch.fnmatch(rel, str(p)) for p in entry.get("files", []))]
                sections = [f"Methods: {titles[k]}" for k in entry.get("methods", []) if k in titles]
                where = "; ".join(x for x in (cited, "; ".join(sections), ", ".join(files)) if x) or "not addressed"
            rows.append({"guideline": guideline["name"], "item": str(entry.get("id", "") or ""), "topic": str(entry["text"]), "addressed": where})
    return rows


# --------------------------------------------------------------------------- assembling
