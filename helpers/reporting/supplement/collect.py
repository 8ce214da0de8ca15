"""Collecting a run's outputs into numbered, captioned supplement items (and the helpers the writers share)."""


from __future__ import annotations

import csv
import datetime as _dt
import fnmatch
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from helpers.data.columns import shown_name
from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.imaging.io import sha256_file
from helpers.reporting.supplement.table_format import DisplayTable, LabelBook, display_table, format_number
from helpers.reporting.supplement.table_layout import TableLayout, plan_layout
from helpers.reporting.writer import read_ledger
from helpers.settings.study import StudyConfig

DATA_FILE = Path(__file__).with_name("supplement.yaml")
#: Folder under ``reports/<study>/`` the documents are written to.
SUPPLEMENT_DIR = "supplementary"

_FIXED_TIME = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
_KIND_LABEL = {"table": "Table", "figure": "Figure", "note": "Note"}
_NOTE_MAX_CHARS = 6000
# Outputs whose presence shows that a stage ran (its methods paragraph is written only then).
_EXTRACTION_OUTPUTS = ("feature_counts_*", "features_{preset}", "extraction_failures", "extraction_diagnostics")
_SIGNATURE_OUTPUTS = ("selection_pathway", "icc_*", "radscore*", "combat_*", "modelling_features")
_MODEL_OUTPUTS = ("model_grid", "final_model_summary", "auc_heatmap_*", "predictions_final_model", "fusion_models", "ith_sweep*",
                  "final_model_selection")
_STATISTICS_OUTPUTS = ("performance*", "pairwise_comparison*", "calibration", "calibration_*", "decision_curve_*", "subgroup_*")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_PLACEHOLDER = re.compile(r"(\{[a-z_]+\}|\*)")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SupplementItem:
    """One numbered table, figure or note of the supplement.

    Attributes
    ----------
    kind : str
        ``table``, ``figure`` or ``note`` (a text output such as the Rad-score formula).
    name : str
        File stem (e.g. ``acquisition_parameters_training``).
    path : str
        File shown or referenced, relative to ``reports/<study>/`` (``""`` for the checklist).
    step, cohort : str, str or None
        The step run whose ledger recorded the file first.
    number : int
        Number within its kind (``Table S<number>``).
    caption, note : str
        Caption (from the caption data, or generic) and a note printed under it.
    captioned : bool
        False when no caption pattern matched (the generic caption is used).
    n_rows, n_columns : int or None
        Size of a table (data rows, columns).
    inline : bool
        Whether a table's cells are shown (False: referenced by its path only).
    """

    kind: str
    name: str
    path: str
    step: str
    cohort: str | None
    number: int
    caption: str
    note: str = ""
    captioned: bool = True
    n_rows: int | None = None
    n_columns: int | None = None
    inline: bool = True
    task: str | None = None  # the task of a per-task step's output (a study with several tasks)
    all_tasks: bool = False  # a per-task output identical in every task, shown once (under the first task)

    @property
    def label(self) -> str:
        """``Table S3``, ``Figure S1`` or ``Note S1``."""
        return f"{_KIND_LABEL[self.kind]} S{self.number}"

    @property
    def anchor(self) -> str:
        """HTML id / LaTeX label part, e.g. ``table-s3``."""
        return f"{self.kind}-s{self.number}"


@dataclass(frozen=True)
class MethodsParagraph:
    """One paragraph of the generated methods (``key`` is referenced by the checklist data)."""

    key: str
    title: str
    text: str
    task: str = ""  # a per-task paragraph of a study with several tasks: the task's name ...
    task_label: str = ""  # ... and how the document names it

    @property
    def heading(self) -> str:
        """The title as printed: with the task for a per-task paragraph."""
        return f"{self.title}: {self.task_label}" if self.task_label else self.title

    @property
    def anchor(self) -> str:
        """HTML id part, unique across tasks."""
        return f"{self.key}-{self.task}" if self.task else self.key


@dataclass
class Supplement:
    """Everything the three documents show, assembled once (see :func:`assemble_supplement`)."""

    study: str
    root: Path
    title: str
    subtitle: str
    sections: list[tuple[str, str, list[SupplementItem]]]  # (step, title, items)
    methods: list[MethodsParagraph]
    checklist: SupplementItem
    tables: dict[str, SupplementTable]  # anchor -> formatted cells, layout and note of an inlined table
    notes_text: dict[str, str]  # anchor -> text of a note
    warnings: list[str] = field(default_factory=list)
    conventions: list[str] = field(default_factory=list)  # the table rules, printed before the first table

    @property
    def items(self) -> list[SupplementItem]:
        """Every numbered item in document order (ledger outputs, then the checklist)."""
        return [it for _, _, items in self.sections for it in items] + [self.checklist]


@dataclass(frozen=True)
class SupplementPaths:
    """What :func:`build_supplement` wrote."""

    docx: Path
    html: Path
    latex: Path
    items: tuple[SupplementItem, ...]
    uncaptioned: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def n_tables(self) -> int:
        return sum(it.kind == "table" for it in self.items)

    @property
    def n_figures(self) -> int:
        return sum(it.kind == "figure" for it in self.items)


_CAPTION_KEYS = {"pattern", "caption", "note"}
_TOP_KEYS = {"steps", "captions"}


def validate_supplement_data(data: Mapping, source: str = "supplement data") -> Mapping:
    """Check the step titles and caption entries (a misspelt key would otherwise be ignored silently).

    Raises
    ------
    ValueError
        Naming the entry and the problem.
    """
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        where = " (the checklists live in checklists.yaml)" if "checklists" in unknown else ""
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}; expected {sorted(_TOP_KEYS)}{where}")
    for i, rule in enumerate(data.get("captions", []) or []):
        if not isinstance(rule, Mapping) or not {"pattern", "caption"} <= set(rule) or set(rule) - _CAPTION_KEYS:
            raise ValueError(f"{source}: captions[{i}] must have 'pattern' and 'caption' (and optionally 'note'), got {rule!r}")
    return data


@cache
def _load_data(path: str) -> dict:
    return dict(validate_supplement_data(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}, path))


def load_supplement_data(path: str | Path | None = None) -> dict:
    """The caption and step-title data (``supplement.yaml`` of this package by default), validated."""
    return _load_data(str(Path(path) if path else DATA_FILE))


# --------------------------------------------------------------------------- captions


def _display(value: str) -> str:
    return shown_name(value)


def _pattern_regex(pattern: str, cfg: StudyConfig) -> re.Pattern:
    presets = tuple(sorted({Path(p).stem for p in cfg.extraction.presets}, key=len, reverse=True))
    cohorts = tuple(sorted(cfg.cohorts, key=len, reverse=True))
    series = tuple(sorted((s.lower() for s in cfg.series), key=len, reverse=True))
    return _compile(pattern, cohorts, series, presets)


@cache
def _compile(pattern: str, cohorts: tuple[str, ...], series: tuple[str, ...], presets: tuple[str, ...]) -> re.Pattern:
    alternatives = {
        "cohort": "|".join(map(re.escape, cohorts)),
        "series": "|".join(map(re.escape, series)),
        "preset": "|".join([*map(re.escape, presets), r"[a-z0-9][a-z0-9.-]*"]),
        "page": r"\d+",
    }
    out, used = [], set()
    for part in _PLACEHOLDER.split(pattern):
        if part == "*":
            out.append(".*" if "name" in used else "(?P<name>.*)")
            used.add("name")
        elif _PLACEHOLDER.fullmatch(part):
            key = part[1:-1]
            if key in used:
                raise ValueError(f"caption pattern {pattern!r}: placeholder {part} used twice")
            used.add(key)
            out.append(f"(?P<{key}>{alternatives.get(key, '.+?')})")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


def _name_matches(pattern: str, name: str, cfg: StudyConfig) -> re.Match | None:
    return _pattern_regex(pattern, cfg).match(name)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def caption_for(name: str, cfg: StudyConfig, cohort: str | None = None, data: Mapping | None = None) -> tuple[str, str, bool]:
    """Caption of an output from the caption data.

    Parameters
    ----------
    name : str
        The output's file stem.
    cohort : str, optional
        Cohort of the step run that wrote it (used by the generic caption).

    Returns
    -------
    (caption, note, captioned)
        ``captioned`` is False when no pattern matched; the caption is then
        made from the name (e.g. ``"Mystery numbers, test cohort."``).
    """
    data = data if data is not None else load_supplement_data()
    series_names = {s.lower(): s for s in cfg.series}
    for rule in data.get("captions", []):
        m = _name_matches(str(rule["pattern"]), name, cfg)
        if m is None:
            continue
        values = _Blank()
        for key, value in m.groupdict().items():
            value = value or ""
            values[key] = series_names.get(value, value) if key == "series" else _display(value)
        caption = str(rule["caption"]).format_map(values).replace(" ()", "")
        return caption, str(rule.get("note", "") or ""), True
    stem, suffix = name, ""
    for c in sorted(cfg.cohorts, key=len, reverse=True):
        if (cohort is None or c == cohort) and name.endswith("_" + c):
            stem, suffix = name[: -len(c) - 1], f", {_display(c)} cohort"
            break
    words = _display(stem).replace(".", " ").strip() or name
    return words[:1].upper() + words[1:] + suffix + ".", "", False


# --------------------------------------------------------------------------- collecting


def _classify(rel: str) -> str:
    folder, suffix = rel.split("/", 1)[0] if "/" in rel else "", Path(rel).suffix.lower()
    if folder == "tables":
        return {".csv": "table", ".xlsx": "twin", ".txt": "note", ".md": "note"}.get(suffix, "other")
    if folder == "figures":
        return {".png": "figure", ".pdf": "twin", ".svg": "twin"}.get(suffix, "other")
    if folder == "features":
        return {".csv": "data", ".parquet": "twin"}.get(suffix, "other")
    return "other"


def _csv_shape(path: Path) -> tuple[int, int]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = sum(1 for _ in reader)
    return rows, len(header)


@dataclass
class _Collected:
    items: list[SupplementItem]
    other: list[str]
    messages: list[str]


def document_runs(cfg: StudyConfig) -> list[tuple[object, str | None]]:
    """(step, task) in document order: the shared steps in config order, and in a study with several tasks, at the
    first per-task step, every per-task step of the first task, then of the next task (each task's results together)."""
    per_task = [s for s in cfg.steps if cfg.tasks and s.runs_per_task]
    runs: list[tuple[object, str | None]] = []
    for step in cfg.steps:
        if step not in per_task:
            runs.append((step, None))
        elif step is per_task[0]:
            runs += [(s, t) for t in cfg.task_names for s in per_task]
    return runs


def task_caption(cfg: StudyConfig, task: str | None, caption: str) -> str:
    """A per-task output's caption starts with the task's name (a study with several tasks)."""
    return f"{cfg.task_config(task).label} - {caption}" if task else caption


def _merge_identical_task_outputs(cfg: StudyConfig, root: Path, entries: list) -> tuple[list, set[str], set[str]]:
    """Per-task outputs identical in every task (label-free steps: the ICC filter, ComBat, the harmonised features) are
    shown once, under the first task: (the entries without the repeats, the paths shown once for all tasks, the
    repeats left out)."""
    groups: dict[str, list[str]] = {}
    for _, _, rel, _, task in entries:
        if task:
            groups.setdefault(rel.split("/", 2)[2], []).append(rel)
    repeats, shared = set(), set()
    for rels in groups.values():
        if len(rels) == len(cfg.task_names) > 1 and len({sha256_file(root / r) for r in rels}) == 1:
            shared.add(rels[0])
            repeats.update(rels[1:])
    return [e for e in entries if e[2] not in repeats], shared, repeats


def _collect(cfg: StudyConfig, root: Path, max_columns: int, data: Mapping, exclude_steps: tuple[str, ...] = (),
             max_rows: int = 300) -> _Collected:  # fmt: skip
    """Number and caption the ledger outputs. Tables under ``tables/`` are always inlined; data tables under
    ``features/`` only with at most ``max_rows`` rows and ``max_columns`` columns (others are referenced by file).

    ``exclude_steps``: the step building the supplement; what it recorded before building (the tasks' comparison
    table) is shown, and it is not reported as a step without outputs. The outputs of a per-task step of a study with
    several tasks are under ``tasks/<task>/`` (their paths here start with it)."""
    seen: set[str] = set()
    entries: list[tuple[str, str | None, str, str, str | None]] = []  # step, cohort, rel, kind, task
    other: list[str] = []
    messages: list[str] = []
    twins: list[tuple[str, str | None, str]] = []
    for step, task in document_runs(cfg):
        cohorts: list[str | None] = list(cfg.cohorts) if step.per_cohort else [None]
        base, prefix = (root / "tasks" / task, f"tasks/{task}/") if task else (root, "")
        any_output = False
        for c in cohorts:
            for own in read_ledger(base, step.name, c):
                any_output = True
                rel = prefix + own
                if rel in seen:
                    continue
                seen.add(rel)
                kind = _classify(own)
                if kind == "twin":
                    twins.append((step.name, c, rel))
                    continue
                if not (root / rel).is_file():
                    messages.append(f"{rel} is recorded by step {step.name}{f' [{c}]' if c else ''} but missing; not in the supplement")
                    continue
                if kind == "other":
                    other.append(rel)
                else:
                    entries.append((step.name, c, rel, kind, task))
        if not any_output and step.name not in exclude_steps:
            where = f" for task {task}" if task else ""
            messages.append(f"step {step.name} has no recorded outputs{where} (not run yet?); it has no section in the supplement")
    entries, shared_by_tasks, repeats = _merge_identical_task_outputs(cfg, root, entries)
    primaries = {rel for _, _, rel, _, _ in entries} | repeats
    for step_name, c, rel in twins:
        primary = Path(rel).with_suffix(".png" if "figures/" in rel else ".csv").as_posix()
        if primary not in primaries and (root / rel).is_file():
            # e.g. a figure saved only as PDF: listed with the other files, never dropped silently
            other.append(rel)
            messages.append(f"{rel} (step {step_name}) has no {Path(primary).suffix} version; listed as a file, not shown")
    counters = {"table": 0, "figure": 0, "note": 0}
    items: list[SupplementItem] = []
    for step, c, rel, kind, task in entries:
        name = Path(rel).stem
        caption, note, captioned = caption_for(name, cfg, c, data)
        caption = f"All tasks (identical for each) - {caption}" if rel in shared_by_tasks else task_caption(cfg, task, caption)
        shown_kind = "table" if kind == "data" else kind
        counters[shown_kind] += 1
        n_rows = n_cols = None
        inline = True
        if shown_kind == "table":
            n_rows, n_cols = _csv_shape(root / rel)
            inline = kind == "table" or (n_rows <= max_rows and n_cols <= max_columns)
        item = SupplementItem(shown_kind, name, rel, step, c, counters[shown_kind], caption, note, captioned, n_rows, n_cols, inline, task,
                              rel in shared_by_tasks)
        if not captioned:
            messages.append(f"no caption for {rel} (step {step}); shown as {item.label} with the generic caption {caption!r}; "
                            f"add a pattern to {DATA_FILE.name}")  # fmt: skip
        items.append(item)
    return _Collected(items, other, messages)


def _root(cfg: StudyConfig, report_root: str | Path | None) -> Path:
    return Path(report_root) if report_root is not None else cfg.report_root


def collect_outputs(
    cfg: StudyConfig, report_root: str | Path | None = None, max_columns: int = 24, data: Mapping | None = None, max_rows: int = 300
) -> list[SupplementItem]:
    """Number and caption every table, figure and note the study's step ledgers record.

    Steps are taken in configuration order, per-cohort steps in cohort order,
    files in the order each step wrote them; a file recorded by several runs
    (e.g. ``cohort_split_counts``) appears once. Tables are ``tables/*.csv``
    (always inlined) and the data tables ``features/*.csv`` (inlined with at
    most ``max_rows`` rows and ``max_columns`` columns, else referenced); figures are ``figures/*.png``; notes
    are text files under ``tables/``. Emits a :class:`SupplementWarning` for
    every output without a caption pattern and every recorded file that is
    missing.
    """
    collected = _collect(cfg, _root(cfg, report_root), max_columns, data if data is not None else load_supplement_data(), (), max_rows)
    for message in collected.messages:
        warnings.warn(message, SupplementWarning, stacklevel=2)
    return collected.items


# --------------------------------------------------------------------------- table cells

#: Tables always shown in full, however long (the study's headline results).
HEADLINE_TABLES = ("performance*", "survival_metrics*", "pairwise_comparison*", "nr_vs_sr_comparison", "calibration",
                   "final_model_summary", "model_grid", "fusion_models", "table_one*", "cox_coefficients",
                   "clinical_model_coefficients", "nomogram_coefficients", "radscore_coefficients")  # fmt: skip
#: Rows shown of a table longer than ``max_rows`` that is not a headline table.
EXCERPT_ROWS = 40


@dataclass(frozen=True)
class SupplementTable:
    """A table as the three documents show it: formatted cells, page layout and the note printed under it."""

    display: DisplayTable
    layout: TableLayout
    note: str


def is_headline(name: str) -> bool:
    """Whether a table is always shown in full (:data:`HEADLINE_TABLES`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in HEADLINE_TABLES)


def rows_shown(item: SupplementItem, max_rows: int) -> int:
    """How many rows of an inlined table are shown: all of a headline table or of one with at most ``max_rows``."""
    n = item.n_rows or 0
    return n if is_headline(item.name) or n <= max_rows else min(n, EXCERPT_ROWS)


def _fmt_cell(value: str) -> str:
    """A cell of a column the dictionary does not know: long decimals shortened (see ``table_format.format_number``)."""
    return format_number(value, "auto")


def _read_cells(path: Path, max_rows: int | None) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``max_rows`` rows (all when None) of a CSV file, cells as written."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = []
        for i, row in enumerate(reader):
            if max_rows is not None and i >= max_rows:
                break
            rows.append(row + [""] * (len(header) - len(row)))
    return header, rows


def _numeric_columns(rows: list[list[str]], n: int) -> list[bool]:
    out = []
    for j in range(n):
        values = [r[j] for r in rows if j < len(r) and r[j] not in ("", "nan", "NaN")]
        out.append(bool(values) and all(_FLOAT.match(v) for v in values))
    return out


def _twin(root: Path, rel: str, suffix: str) -> str:
    twin = Path(rel).with_suffix(suffix)
    return f" (also {suffix})" if (root / twin).is_file() else ""


def _table_note(item: SupplementItem, shown: int, root: Path, display: DisplayTable | None = None,
                layout: TableLayout | None = None) -> str:  # fmt: skip
    """The note under a table: caption note, abbreviations, column groups, rows shown and the file."""
    parts = [item.note] if item.note else []
    if display is not None and display.footnote:
        parts.append(display.footnote)
    if display is not None and layout is not None and layout.split:
        ids = ", ".join(display.columns[j].label for j in layout.id_columns)
        parts.append(f"The columns are shown in {len(layout.parts)} groups" + (f" ({ids} repeated in each)." if ids else "."))
    if item.path:
        twin = _twin(root, item.path, ".parquet" if ("/" + item.path).find("/features/") >= 0 else ".xlsx")
        if not item.inline:
            parts.append(f"Not shown: {item.n_rows} rows x {item.n_columns} columns (a data table); full table: {item.path}{twin}.")
        elif item.n_rows is not None and item.n_rows > shown:
            parts.append(f"First {shown} of {item.n_rows} rows shown; full table: {item.path}{twin}.")
        elif item.n_rows == 0:
            parts.append(f"The table has no rows. File: {item.path}.")
        else:
            parts.append(f"File: {item.path}{twin}.")
    return " ".join(parts)


def read_table(root: Path, item: SupplementItem, max_rows: int, book: LabelBook) -> SupplementTable:
    """Read, format and lay out one inlined table of the supplement."""
    shown = rows_shown(item, max_rows)
    header, rows = _read_cells(root / item.path, shown)
    display = display_table(header, rows, book)
    layout = plan_layout(display)
    return SupplementTable(display, layout, _table_note(item, shown, root, display, layout))


def _figure_note(item: SupplementItem, root: Path) -> str:
    pdf = Path(item.path).with_suffix(".pdf").as_posix()
    vector = f" (vector version: {pdf})" if (root / pdf).is_file() else ""
    return " ".join([*([item.note] if item.note else []), f"File: {item.path}{vector}."])


# --------------------------------------------------------------------------- methods


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _num(value: object) -> str:
    """A number as written in a file or config, without a trailing ``.0``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


def _join(parts: Sequence[str], last: str = "and") -> str:
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {last} " + parts[-1]


def _labels(items: Iterable[SupplementItem]) -> str:
    """``Tables S2 and S4; Figure S1`` for a list of items (empty when none)."""
    by_kind: dict[str, list[int]] = {}
    for it in items:
        by_kind.setdefault(it.kind, []).append(it.number)
    return "; ".join(f"{_KIND_LABEL[k]}{'s' if len(n) > 1 else ''} {_join([f'S{i}' for i in n])}" for k, n in by_kind.items())


def _matching(items: Iterable[SupplementItem], patterns: Iterable[str], cfg: StudyConfig) -> list[SupplementItem]:
    patterns = list(patterns)
    return [it for it in items if any(_name_matches(str(p), it.name, cfg) for p in patterns)]
