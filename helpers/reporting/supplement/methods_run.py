"""What a finished run recorded, as the generated methods read it: its numbered outputs, tables and provenance files."""


from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from helpers.reporting.supplement.collect import SupplementItem, _labels, _matching, _read_json, _read_rows
from helpers.settings.study import StudyConfig


@dataclass
class RunRecord:
    """The configuration, the report root and the numbered outputs of one run.

    A stage's paragraph is written only when the outputs it leaves are among
    ``items`` (the step ledgers), so the methods describe what ran.
    """

    cfg: StudyConfig
    root: Path
    items: list[SupplementItem]
    _by_name: dict[str, SupplementItem] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for it in self.items:  # a table and a figure may share a name (radscore_coefficients): the table is the one read
            if it.path.endswith(".csv"):
                self._by_name.setdefault(it.name, it)

    def matching(self, *patterns: str) -> list[SupplementItem]:
        """Outputs whose name matches any caption-style pattern (``calibration_*``, ``combat_batches_{series}``)."""
        return _matching(self.items, patterns, self.cfg)

    def has(self, *patterns: str) -> bool:
        return bool(self.matching(*patterns))

    def cite(self, *patterns: str, bare: bool = False) -> str:
        """`` (Table S2; Figure S4)`` for the matching outputs (empty when none)."""
        text = _labels(self.matching(*patterns))
        return text if bare or not text else f" ({text})"

    def item(self, name: str) -> SupplementItem | None:
        """The recorded table called ``name`` (None when the run did not write it)."""
        return self._by_name.get(name)

    def rows(self, name: str) -> list[dict[str, str]]:
        """Rows of a recorded table (empty when the run did not write it)."""
        it = self.item(name)
        return _read_rows(self.root / it.path) if it is not None and it.path else []

    def header(self, name: str) -> list[str]:
        """Column names of a recorded table (read from its first line only: feature tables are wide)."""
        it = self.item(name)
        if it is None or not it.path or not (self.root / it.path).is_file():
            return []
        with (self.root / it.path).open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])

    def n_rows(self, name: str) -> int:
        it = self.item(name)
        return int(it.n_rows or 0) if it is not None else 0

    def json(self, relative: str) -> dict:
        """A JSON record under the report root (empty when absent or unreadable); for one task of a study with several
        tasks, the task's own record (``tasks/<task>/<relative>``) when it has one."""
        if self.cfg.task and (self.root / "tasks" / self.cfg.task / relative).is_file():
            return _read_json(self.root / "tasks" / self.cfg.task / relative)
        return _read_json(self.root / relative)
