"""The supplementary document: every table and figure of a study run, numbered and captioned.

The step ledgers (``reports/<study>/.state/outputs/``) say which files each
step wrote. :func:`collect_outputs` walks them in step order (per-cohort steps
in cohort order) and numbers the tables (``Table S1``...), figures
(``Figure S1``...) and text notes (``Note S1``...), captioned from
``helpers/supplement.yaml``. :func:`build_supplement` writes, under
``reports/<study>/supplementary/``:

- ``supplementary.docx``: title, generated methods, tables as Word tables
  (at most ``max_rows`` rows shown; tables wider than ``max_columns`` and the
  data tables under ``features/`` are referenced, not inlined), figures from
  the 300 dpi PNGs scaled to the page width, and the CLEAR / TRIPOD+AI
  checklist;
- ``supplementary.html``: the same content in one self-contained file (CSS
  inline, figures as base64 PNG data URIs, a table of contents, no script);
- ``supplementary_tables.tex``: every inlined table as a booktabs LaTeX
  table with the same number (``\\caption``/``\\label``).

Everything shown is read from files already under ``reports/<study>/`` (and
from the study configuration for the methods), so the document holds no value
the reports do not; identical inputs give byte-identical files (the DOCX zip
timestamps and core-property dates are fixed).
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as _dt
import fnmatch
import html
import json
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.writer import _normalise_zip, read_ledger
from helpers.settings.study import StudyConfig, load_config

__all__ = [
    "DATA_FILE", "MethodsParagraph", "Supplement", "SupplementItem", "SupplementPaths", "SupplementWarning",
    "assemble_supplement", "build_supplement", "caption_for", "checklist_table", "collect_outputs", "latex_escape", "load_supplement_data",
    "validate_supplement_data",
    "methods_text", "write_docx", "write_html", "write_latex",
]  # fmt: skip

#: Step titles, caption templates and checklist items.
DATA_FILE = Path(__file__).with_name("supplement.yaml")
#: Folder under ``reports/<study>/`` the documents are written to.
SUPPLEMENT_DIR = "supplementary"

_FIXED_TIME = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
_KIND_LABEL = {"table": "Table", "figure": "Figure", "note": "Note"}
_NOTE_MAX_CHARS = 6000
# Outputs whose presence shows that a stage ran (its methods paragraph is written only then).
_EXTRACTION_OUTPUTS = ("feature_counts_*", "features_{preset}", "extraction_failures", "extraction_diagnostics")
_SIGNATURE_OUTPUTS = ("selection_pathway", "icc_*", "radscore*", "combat_*", "modelling_features")
_MODEL_OUTPUTS = ("model_grid", "final_model_summary", "auc_heatmap_*", "predictions_final_model", "fusion_models")
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
    cells: dict[str, tuple[list[str], list[list[str]]]]  # anchor -> (header, rows shown)
    notes_text: dict[str, str]  # anchor -> text of a note
    warnings: list[str] = field(default_factory=list)

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
_ITEM_KEYS = {"id", "text", "outputs", "methods", "files", "requires"}


def validate_supplement_data(data: Mapping, source: str = "supplement data") -> Mapping:
    """Check the caption and checklist entries (a misspelt key would otherwise be ignored silently).

    Raises
    ------
    ValueError
        Naming the entry and the problem.
    """
    for i, rule in enumerate(data.get("captions", []) or []):
        if not isinstance(rule, Mapping) or not {"pattern", "caption"} <= set(rule) or set(rule) - _CAPTION_KEYS:
            raise ValueError(f"{source}: captions[{i}] must have 'pattern' and 'caption' (and optionally 'note'), got {rule!r}")
    for guideline in data.get("checklists", []) or []:
        for entry in guideline.get("items", []) or []:
            if not isinstance(entry, Mapping) or "text" not in entry or set(entry) - _ITEM_KEYS:
                raise ValueError(f"{source}: checklist {guideline.get('name')!r} item {entry!r}: keys must be among {sorted(_ITEM_KEYS)} "
                                 f"with 'text' required")  # fmt: skip
            for key in ("outputs", "methods", "files"):
                if not isinstance(entry.get(key, []), list):
                    raise ValueError(f"{source}: checklist {guideline.get('name')!r} item {entry.get('id')!r}: '{key}' must be a list")
    return data


@cache
def _load_data(path: str) -> dict:
    return dict(validate_supplement_data(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}, path))


def load_supplement_data(path: str | Path | None = None) -> dict:
    """The caption, step-title and checklist data (``helpers/supplement.yaml`` by default), validated."""
    return _load_data(str(Path(path) if path else DATA_FILE))


# --------------------------------------------------------------------------- captions


def _display(value: str) -> str:
    return value.replace("_", " ")


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


def _collect(cfg: StudyConfig, root: Path, max_columns: int, data: Mapping, exclude_steps: tuple[str, ...] = ()) -> _Collected:
    seen: set[str] = set()
    entries: list[tuple[str, str | None, str, str]] = []  # step, cohort, rel, kind
    other: list[str] = []
    messages: list[str] = []
    twins: list[tuple[str, str | None, str]] = []
    for step in cfg.steps:
        if step.name in exclude_steps:  # the step building the supplement does not document itself
            continue
        cohorts: list[str | None] = list(cfg.cohorts) if step.per_cohort else [None]
        any_output = False
        for c in cohorts:
            for rel in read_ledger(root, step.name, c):
                any_output = True
                if rel in seen:
                    continue
                seen.add(rel)
                kind = _classify(rel)
                if kind == "twin":
                    twins.append((step.name, c, rel))
                    continue
                if not (root / rel).is_file():
                    messages.append(f"{rel} is recorded by step {step.name}{f' [{c}]' if c else ''} but missing; not in the supplement")
                    continue
                if kind == "other":
                    other.append(rel)
                else:
                    entries.append((step.name, c, rel, kind))
        if not any_output:
            messages.append(f"step {step.name} has no recorded outputs (not run yet?); it has no section in the supplement")
    primaries = {rel for _, _, rel, _ in entries}
    for step_name, c, rel in twins:
        primary = Path(rel).with_suffix(".png" if rel.startswith("figures/") else ".csv").as_posix()
        if primary not in primaries and (root / rel).is_file():
            # e.g. a figure saved only as PDF: listed with the other files, never dropped silently
            other.append(rel)
            messages.append(f"{rel} (step {step_name}) has no {Path(primary).suffix} version; listed as a file, not shown")
    counters = {"table": 0, "figure": 0, "note": 0}
    items: list[SupplementItem] = []
    for step, c, rel, kind in entries:
        name = Path(rel).stem
        caption, note, captioned = caption_for(name, cfg, c, data)
        shown_kind = "table" if kind == "data" else kind
        counters[shown_kind] += 1
        n_rows = n_cols = None
        inline = True
        if shown_kind == "table":
            n_rows, n_cols = _csv_shape(root / rel)
            inline = kind == "table" and n_cols <= max_columns
        item = SupplementItem(shown_kind, name, rel, step, c, counters[shown_kind], caption, note, captioned, n_rows, n_cols, inline)
        if not captioned:
            messages.append(f"no caption for {rel} (step {step}); shown as {item.label} with the generic caption {caption!r}; "
                            f"add a pattern to {DATA_FILE.name}")  # fmt: skip
        items.append(item)
    return _Collected(items, other, messages)


def _root(cfg: StudyConfig, report_root: str | Path | None) -> Path:
    return Path(report_root) if report_root is not None else cfg.report_root


def collect_outputs(
    cfg: StudyConfig, report_root: str | Path | None = None, max_columns: int = 24, data: Mapping | None = None
) -> list[SupplementItem]:
    """Number and caption every table, figure and note the study's step ledgers record.

    Steps are taken in configuration order, per-cohort steps in cohort order,
    files in the order each step wrote them; a file recorded by several runs
    (e.g. ``cohort_split_counts``) appears once. Tables are ``tables/*.csv``
    (inlined up to ``max_columns`` columns) and the data tables
    ``features/*.csv`` (referenced only); figures are ``figures/*.png``; notes
    are text files under ``tables/``. Emits a :class:`SupplementWarning` for
    every output without a caption pattern and every recorded file that is
    missing.
    """
    collected = _collect(cfg, _root(cfg, report_root), max_columns, data if data is not None else load_supplement_data())
    for message in collected.messages:
        warnings.warn(message, SupplementWarning, stacklevel=2)
    return collected.items


# --------------------------------------------------------------------------- table cells


def _fmt_cell(value: str) -> str:
    """Long decimals shortened for display (3 decimals; scientific below 0.001 and from 1e6); other text as written."""
    v = value.strip()
    if not _FLOAT.match(v):
        return v
    mantissa = v.lower().split("e")[0]
    if "." not in mantissa or ("e" not in v.lower() and len(mantissa.split(".")[1]) <= 4):
        return v
    x = float(v)
    if x != 0 and (abs(x) < 0.001 or abs(x) >= 1e6):
        return f"{x:.3e}" if abs(x) >= 1e6 else f"{x:.2e}"
    return f"{x:.3f}"


def _read_cells(path: Path, max_rows: int) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = []
        for i, row in enumerate(reader):
            if i >= max_rows:
                break
            rows.append([_fmt_cell(v) for v in row] + [""] * (len(header) - len(row)))
    header = ["" if h.startswith("Unnamed: ") else h for h in header]
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


def _table_note(item: SupplementItem, max_rows: int, root: Path) -> str:
    parts = [item.note] if item.note else []
    if item.path:
        twin = _twin(root, item.path, ".parquet" if item.path.startswith("features/") else ".xlsx")
        if not item.inline:
            parts.append(f"Not shown: {item.n_rows} rows x {item.n_columns} columns; full table: {item.path}{twin}.")
        elif item.n_rows is not None and item.n_rows > max_rows:
            parts.append(f"First {max_rows} of {item.n_rows} rows shown; full table: {item.path}{twin}.")
        elif item.n_rows == 0:
            parts.append(f"The table has no rows. File: {item.path}.")
        else:
            parts.append(f"File: {item.path}{twin}.")
    return " ".join(parts)


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


def _params_text(step: Mapping[str, object]) -> str:
    name = str(step.get("step", "?"))
    params = [f"{k.replace('_', ' ')} {_num(v)}" for k, v in step.items() if k != "step"]
    return name + (f" ({', '.join(params)})" if params else "")


def _prep_text(series: str, modality: str, prep: Mapping[str, object]) -> str:
    parts = []
    spacing = prep.get("resample_mm")
    if spacing:
        mask = str(prep.get("mask_resampling"))
        mask = {"partial_volume": "partial volume", "nearest": "nearest neighbour"}.get(mask, mask)
        thr = f" with threshold {_num(prep.get('mask_threshold'))}" if prep.get("mask_resampling") == "partial_volume" else ""
        interp = {"bspline": "B-spline", "nearest": "nearest-neighbour"}.get(str(prep.get("interpolator")), str(prep.get("interpolator")))
        parts.append(f"resampled to {' x '.join(_num(s) for s in spacing)} mm ({interp} interpolation of the image; "
                     f"mask resampled by {mask}{thr})")  # fmt: skip
    else:
        parts.append("kept on its native voxel grid")
    if prep.get("n4"):
        its = ", ".join(_num(i) for i in prep.get("n4_iterations") or [])
        parts.append(f"N4 bias-field correction (shrink factor {_num(prep.get('n4_shrink_factor'))}, iterations {its})")
    if prep.get("clip"):
        lo, hi = prep["clip"]
        parts.append(f"intensities clipped to [{_num(lo)}, {_num(hi)}]")
    if prep.get("clip_percentiles"):
        lo, hi = prep["clip_percentiles"]
        parts.append(f"intensities clipped to the {_num(lo)}th-{_num(hi)}th percentiles inside the mask")
    if prep.get("zscore"):
        parts.append(f"z-score normalised over the {prep.get('zscore_region', 'image')}")
    return f"{series} ({modality}): {_join(parts)}."


def _extraction_settings(cfg: StudyConfig, root: Path) -> tuple[dict[str, dict[str, dict]], str]:
    """preset -> series -> {pyradiomics_params, preprocessing}, and where it was read from."""
    record = _read_json(root / "provenance" / "extraction.json")
    if record.get("settings"):
        return record["settings"], "provenance/extraction.json"
    from helpers.features.pyradiomics import load_preset, merge_settings, preset_name
    from helpers.imaging.preprocess import PreprocessSettings

    settings: dict[str, dict[str, dict]] = {}
    for ref in cfg.extraction.presets:
        try:
            base = load_preset(ref)
        except ValueError:
            continue
        for s in cfg.extraction.series or cfg.series:
            settings.setdefault(preset_name(ref), {})[s] = {
                "pyradiomics_params": merge_settings(base, cfg.extraction.series_settings.get(s)),
                "preprocessing": cfg.preprocessing.get(s, PreprocessSettings()).model_dump(mode="json"),
            }
    return settings, "the study configuration"


def _image_types(params: Mapping) -> str:
    out = []
    for name, opts in (params.get("imageType") or {}).items():
        opts = opts or {}
        if "sigma" in opts:
            out.append(f"{name} (sigma {', '.join(_num(s) for s in opts['sigma'])} mm)")
        else:
            out.append(name)
    return _join(out)


def _feature_classes(params: Mapping) -> str:
    out = []
    for name, sub in (params.get("featureClass") or {}).items():
        out.append(f"{name} ({len(sub)} features)" if sub else name)
    return _join(out)


def _discretisation(setting: Mapping) -> str:
    if "binCount" in setting:
        return f"fixed bin count {_num(setting['binCount'])}"
    if "binWidth" in setting:
        return f"fixed bin width {_num(setting['binWidth'])}"
    return "pyradiomics' default discretisation (fixed bin width 25)"


def _versions(root: Path) -> tuple[dict[str, str], dict]:
    latest = _read_json(root / "provenance" / "latest.json")
    if latest.get("packages"):
        return {k: str(v) for k, v in latest["packages"].items()}, latest
    extraction = _read_json(root / "provenance" / "extraction.json")
    return {k: str(v) for k, v in (extraction.get("versions") or {}).items()}, latest


def methods_text(cfg: StudyConfig, report_root: str | Path | None = None, items: Sequence[SupplementItem] | None = None) -> list[MethodsParagraph]:
    """Methods paragraphs generated from the configuration and the files of the run.

    Software versions come from ``provenance/latest.json`` (the run record;
    ``provenance/extraction.json`` when it is missing), extraction settings
    from ``provenance/extraction.json`` (the configuration when missing),
    counts from the run's tables (cohort split, feature counts, ICC retained
    counts, selection pathway, Rad-score coefficients) and the threshold rule
    from the saved final model's JSON sidecar. Nothing is specific to one
    cohort. ``items`` (from :func:`collect_outputs`) are cited by number.
    """
    root = _root(cfg, report_root)
    if items is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SupplementWarning)
            items = collect_outputs(cfg, root)
    items = list(items)
    paths = {Path(it.path).stem: root / it.path for it in items if it.path}

    def cite(*patterns: str, bare: bool = False) -> str:
        text = _labels(_matching(items, patterns, cfg))
        return text if bare or not text else f" ({text})"

    def has(*patterns: str) -> bool:
        return bool(_matching(items, patterns, cfg))

    out: list[MethodsParagraph] = []

    # -- cohorts and outcome
    role_word = {"train": "model development", "validation": "validation", "test": "testing"}
    split = {r.get("cohort", ""): r for r in _read_rows(paths.get("cohort_split_counts", Path("-")))}
    cohort_parts = []
    for name, c in cfg.cohorts.items():
        n = split.get(name, {}).get("patients")
        desc = f"; {c.description.rstrip('.')}" if c.description else ""
        cohort_parts.append(f"{name} ({role_word[c.role]}{f', {n} patients' if n else ''}{desc})")
    text = [f"Patients were assigned to {len(cfg.cohorts)} cohort{'s' if len(cfg.cohorts) > 1 else ''}: {_join(cohort_parts)}."]
    text.append(f"Assignment rule: {cfg.cohort_rule.strip().rstrip('.')}.")
    series = [f"{s} ({v.modality}{f'; {v.description}' if v.description else ''})" for s, v in cfg.series.items()]
    text.append(f"Image series: {_join(series)}.")
    ep = cfg.endpoints
    if ep.binary:
        col = f"{ep.binary}=1"
        pos = [f"{name} {split[name][col]}" for name in cfg.cohorts if name in split and split[name].get(col)]
        text.append(f"The outcome was the binary variable '{ep.binary}' of the patient table"
                    + (f" (positive: {_join(pos)})" if pos else "") + f"{cite('cohort_split_counts')}.")  # fmt: skip
    if ep.time:
        text.append(f"The time-to-event endpoint was '{ep.time}' with event indicator '{ep.event}'.")
    if cfg.clinical_variables:
        text.append(f"Non-radiomic (clinical) variables: {_join(list(cfg.clinical_variables))}.")
    held_out = [n for n, c in cfg.cohorts.items() if c.role != "train"]
    text.append(f"Every fitted step (harmonisation, feature selection, models, thresholds) learned from the {_join(cfg.training_cohorts)} "
                f"cohort only" + (f" and was applied unchanged to the {_join(held_out)} cohort{'s' if len(held_out) > 1 else ''}." if held_out else "."))  # fmt: skip
    out.append(MethodsParagraph("cohorts", "Cohorts and outcome", " ".join(text)))

    # -- software and reproducibility
    versions, latest = _versions(root)
    text = []
    if versions:
        py = versions.get("python")
        pkgs = [f"{k} {v}" for k, v in versions.items() if k != "python" and v != "not installed"]
        text.append(f"Analyses ran in Python {py}" if py else "Analyses ran in Python")
        text[-1] += f" with {_join(pkgs)}." if pkgs else "."
        source = "provenance/latest.json" if latest.get("packages") else "provenance/extraction.json"
        text.append(f"Versions are those recorded in {source}.")
    else:
        text.append("No provenance record was found under provenance/, so software versions are not reported.")
    if latest:
        git = latest.get("git") or {}
        bits = []
        if git.get("commit"):
            bits.append(f"git commit {str(git['commit'])[:12]}" + (" with uncommitted changes" if git.get("dirty") else ""))
        if latest.get("config_hash"):
            bits.append(f"configuration SHA-256 {str(latest['config_hash'])[:12]}")
        if latest.get("helpers_source_hash"):
            bits.append(f"helpers source SHA-256 {str(latest['helpers_source_hash'])[:12]}")
        if bits:
            text.append(f"The run used {_join(bits)}.")
    text.append(f"The random seed was {cfg.seed} for every seeded step (cross-validation splits, resampling, models).")
    out.append(MethodsParagraph("software", "Software and reproducibility", " ".join(text)))

    # -- preprocessing and QC
    settings, source = _extraction_settings(cfg, root)
    first_preset = next(iter(settings.values()), {})
    extracted = has(*_EXTRACTION_OUTPUTS)
    text = []
    if extracted:
        text.append("Images were preprocessed per series before feature extraction:")
        for s, v in cfg.series.items():
            prep = (first_preset.get(s) or {}).get("preprocessing")
            if prep is None:
                prep = cfg.preprocessing[s].model_dump(mode="json") if s in cfg.preprocessing else {}
            text.append(_prep_text(s, v.modality, prep))
    if has("image_mask_qc_*"):
        g = cfg.geometry_tolerance
        text.append(f"Every image and mask pair was checked for matching geometry (tolerances: spacing {_num(g.spacing)} relative, origin "
                    f"{_num(g.origin_mm)} mm, direction {_num(g.direction)}), mask volume, connected components, contact with the image "
                    f"border and intensities inside the mask; values with a robust z-score above {_num(cfg.qc.outlier_robust_z)} were "
                    f"flagged{cite('image_mask_qc_*')}.")  # fmt: skip
    if has("acquisition_parameters_*"):
        text.append(f"Acquisition parameters were read from an allow-list of non-identifying header attributes{cite('acquisition_parameters_*')}.")
    if text:
        out.append(MethodsParagraph("preprocessing", "Image preprocessing and quality control", " ".join(text)))

    # -- feature extraction
    if extracted:
        text = []
        pyrad = next((f"{k} {v}" for k, v in versions.items() if "pyradiomics" in k.lower()), "pyradiomics")
        ex = cfg.extraction
        roi_parts = []
        for name, spec in ex.rois.items():
            what = {"tumour": "the tumour mask", "ring": f"a {_num(spec.width_mm)} mm peritumoral ring outside the tumour",
                    "fused": f"the tumour with a {_num(spec.width_mm)} mm peritumoral ring"}[spec.kind]  # fmt: skip
            roi_parts.append(f"{name} ({what}{'' if spec.with_shape else ', without shape features'})")
        text.append(f"Radiomics features were extracted with {pyrad} from the regions of interest {_join(roi_parts)}.")
        if ex.habitats is not None:
            h = ex.habitats
            ch = _read_rows(paths.get("habitat_calinski_harabasz", Path("-")))
            chosen = [r.get("k") for r in ch if str(r.get("selected", "")).lower() == "true"]
            text.append(f"Habitats were found by K-means clustering of the pooled voxel intensities of {_join(list(h.series))} of the training "
                        f"patients (at most {h.max_voxels_per_patient} voxels per patient), K from {h.k_range[0]} to {h.k_range[1]} chosen by the "
                        f"Calinski-Harabasz index" + (f" (K = {chosen[0]} selected; {cite('habitat_calinski_harabasz', bare=True)})" if chosen else "")
                        + f"; habitat features were extracted from {_join(list(h.extract_from or h.series))}, and the ITH score was computed for "
                        f"K = {h.ith_k_range[0]}-{h.ith_k_range[1]}.")  # fmt: skip
        for preset, per_series in settings.items():
            if not per_series:
                continue
            first = next(iter(per_series.values()))["pyradiomics_params"]
            disc = [f"{s} {_discretisation((v['pyradiomics_params'].get('setting') or {}))}" for s, v in per_series.items()]
            other = {k: v for k, v in (first.get("setting") or {}).items() if k not in ("binWidth", "binCount", "label")}
            other_txt = f"; other settings: {', '.join(f'{k} {_num(v)}' for k, v in other.items())}" if other else ""
            text.append(f"Preset {preset} (settings from {source}): image types {_image_types(first)}; feature classes {_feature_classes(first)}; "
                        f"discretisation {_join(disc)}{other_txt}; all remaining parameters at pyradiomics defaults.")  # fmt: skip
        for it in items:
            m = _name_matches("feature_counts_{preset}", it.name, cfg)
            if not m or not it.path:
                continue
            rows = _read_rows(root / it.path)
            if not rows:
                continue
            blocks = [c for c in rows[0] if c not in ("category", "image_type")]
            total = next((r for r in rows if r.get("category") == "Total"), None)
            if total and blocks:
                per_block = [f"{b} {total[b]}" for b in blocks]
                n_all = sum(int(float(total[b] or 0)) for b in blocks)
                classes = [f"{r['category']} {r[blocks[0]]}" for r in rows if r.get("category") != "Total" and r.get(blocks[0]) not in ("", "0")]
                text.append(f"Features per series and region of interest (preset {m.group('preset')}): {_join(per_block)}; {n_all} in total "
                            f"({it.label}). By class and image type ({blocks[0]}): {_join(classes)}.")  # fmt: skip
        fail = next((it for it in items if it.name == "extraction_failures"), None)
        if fail is not None:
            if fail.n_rows:
                policy = {"stop": "the run stopped before the signature",
                          "exclude_patients": "the patients concerned were excluded from the analysis",
                          "impute": "the patients concerned were kept and their missing features imputed"}[cfg.missing_data.failed_units]
                text.append(f"{fail.n_rows} extraction unit{'s' if fail.n_rows != 1 else ''} failed ({fail.label}); as configured, {policy}.")
            else:
                text.append(f"No extraction unit failed ({fail.label}).")
        empty = next((it for it in items if it.name == "extraction_empty_habitats"), None)
        if empty is not None and empty.n_rows:
            text.append(f"In {empty.n_rows} patient x habitat unit{'s' if empty.n_rows != 1 else ''} the habitat was absent from the tumour "
                        f"or smaller than {cfg.qc.min_mask_voxels} voxels; those habitat features were missing ({empty.label}).")  # fmt: skip
        if ex.stability is not None:
            p = ex.stability.perturbation
            text.append(f"For the stability analysis the training patients were read a second time: with the manifest's second-reader mask where "
                        f"given, otherwise with the tumour mask {'dilated' if p.mode == 'dilate' else 'eroded'} by {_num(p.radius_mm)} mm "
                        f"(at least one voxel).")  # fmt: skip
        out.append(MethodsParagraph("extraction", "Feature extraction", " ".join(text)))

    # -- signature
    if has(*_SIGNATURE_OUTPUTS):
        sig = cfg.signature
        text = [f"The signature was fitted on the training cohort with preset {sig.preset}."]
        md = cfg.missing_data
        excluded = next((it for it in items if it.name == "excluded_patients"), None)
        if excluded is not None and excluded.n_rows:
            text.append(f"{excluded.n_rows} patient{'s were' if excluded.n_rows != 1 else ' was'} excluded from the signature, models and "
                        f"statistics because feature extraction failed for them ({excluded.label}).")  # fmt: skip
        text.append(f"Missing feature values were handled on the training cohort only: features missing in more than "
                    f"{md.max_missing_fraction:.0%} of the training patients were left out, and the remaining gaps of every cohort were "
                    f"imputed with the training {md.imputation} as the first step of every model pipeline (refitted within each "
                    f"cross-validation fold).")  # fmt: skip
        dropped = next((it for it in items if it.name == "features_dropped_missing_values"), None)
        if dropped is not None and dropped.n_rows:
            text.append(f"{dropped.n_rows} feature{'s were' if dropped.n_rows != 1 else ' was'} left out for missing values ({dropped.label}).")
        imputed = next((it for it in items if it.name == "features_imputed_missing_values"), None)
        if imputed is not None and imputed.n_rows:
            text.append(f"{imputed.n_rows} kept feature{'s' if imputed.n_rows != 1 else ''} had missing values that were imputed ({imputed.label}).")
        if not any(x is not None and x.n_rows for x in (dropped, imputed)):
            text.append("No feature value was missing.")
        if sig.icc is not None:
            bound = "the ICC" if sig.icc.ci_bound == "point" else "the lower bound of the 95% confidence interval of the ICC"
            text.append(f"Stability filter: {sig.icc.icc_type} between the two readings; features with {bound} of at least "
                        f"{_num(sig.icc.threshold)} were kept.")  # fmt: skip
            total = next((r for r in _read_rows(paths.get("icc_retained_counts", Path("-"))) if r.get("series") == "Total"), None)
            if total:
                pct = f" ({total['retained_percent']}%)" if total.get("retained_percent") else ""
                text.append(f"Of {total.get('extracted')} features, {total.get('constant')} were constant and {total.get('retained')}{pct} were "
                            f"retained{cite('icc_retained_counts', 'icc_per_feature')}.")  # fmt: skip
        for g in sig.harmonization:
            policy = "left unadjusted" if g.unseen_batch == "reference" else "rejected"
            text.append(f"ComBat harmonised the {g.series} features by {g.batch_field} (fitted on the training cohort without covariates; training "
                        f"batches smaller than {g.min_batch_size} merged; batches not seen in training {policy})"
                        f"{cite('combat_batches_' + g.series.lower(), 'combat_diagnostics_' + g.series.lower())}.")  # fmt: skip
        text.append(f"Selection steps, in order: {_join([_params_text(s) for s in sig.steps])}.")
        pathway = _read_rows(paths.get("selection_pathway", Path("-")))
        if pathway:
            stages = [f"{r.get('n_features')} after {r.get('step')} ({r.get('rule')})" for r in pathway[1:]]
            text.append(f"On the training cohort the pathway started from {pathway[0].get('n_features')} features: {_join(stages, 'and')}"
                        f"{cite('selection_pathway')}.")  # fmt: skip
        coefs = _read_rows(paths.get("radscore_coefficients", Path("-")))
        if coefs:
            n = sum(1 for r in coefs if r.get("feature") != "(intercept)")
            text.append(f"The Rad-score is the linear predictor of the final step, with {n} feature{'s' if n != 1 else ''}"
                        f"{cite('radscore_coefficients', 'radscore_formula')}.")  # fmt: skip
        out.append(MethodsParagraph("signature", "Feature stability, harmonisation and selection", " ".join(text)))

    # -- models
    if has(*_MODEL_OUTPUTS):
        m = cfg.models
        search = {"none": "default hyperparameters (no search)", "grid": "hyperparameters tuned by grid search within the cross-validation",
                  "optuna": f"hyperparameters tuned by a seeded optuna TPE search with {m.n_trials} trials within the cross-validation"}[m.search]  # fmt: skip
        smote = "SMOTE oversampling of the training folds (never of held-out data)" if m.smote else "no resampling for class imbalance"
        text = [f"Model grid: every feature block (series and region of interest) was modelled with each of {len(m.algorithms)} algorithms "
                f"({_join(list(m.algorithms))}); each model is one pipeline of the selection steps {_join([_params_text(s) for s in m.grid_steps])}, "
                f"{smote} and the classifier, refitted inside every fold of a stratified, shuffled {m.cv}-fold cross-validation on the training "
                f"cohort (seed {cfg.seed}), with {search}{cite('model_grid', 'auc_heatmap_*')}."]  # fmt: skip
        sidecar = _read_json(root / "models" / "final_model.json")
        final_alg = sidecar.get("algorithm") or m.final_algorithm
        text.append(f"Final model: the signature's selection steps and the {final_alg} classifier, trained on the training cohort"
                    + (f" ({sidecar['n_train']} patients, {sidecar['n_features']} input features)"
                       if sidecar.get("n_train") and sidecar.get("n_features") else "")
                    + f"{cite('final_model_summary')}.")  # fmt: skip
        rule = sidecar.get("threshold_rule") or "Youden's J on the training out-of-fold probabilities; positive when p >= threshold"
        thr = f" (threshold {_num(round(float(sidecar['threshold']), 4))})" if isinstance(sidecar.get("threshold"), int | float) else ""
        text.append(f"Operating threshold: {rule.rstrip('.')}{thr}; it was applied unchanged to the other cohorts.")
        if has("shap_*"):
            text.append(f"SHAP values explain the final model on the training background{cite('shap_*')}.")
        out.append(MethodsParagraph("models", "Models", " ".join(text)))

    # -- statistics of the compared models (optional step)
    sc = getattr(cfg, "statistics", None)
    if sc is not None and has(*_STATISTICS_OUTPUTS):
        text = []
        if has("performance*"):
            text.append(f"Discrimination and classification performance are given with 95% confidence intervals ({getattr(sc, 'n_bootstrap', '?')} "
                        f"bootstrap resamples, seed {cfg.seed}; {getattr(sc, 'proportion_ci', '?')} intervals for proportions){cite('performance*')}.")  # fmt: skip
        if has("pairwise_comparison*"):
            ref = getattr(sc, "reference_model", None)
            pairs = f"every model against {ref}" if ref else "every pair of models"
            text.append(f"Pairwise comparisons ({pairs}) used the DeLong test, the continuous net reclassification improvement and the "
                        f"integrated discrimination improvement{cite('pairwise_comparison*')}.")  # fmt: skip
        if has("calibration", "calibration_*"):
            text.append(f"Calibration was assessed by calibration intercept and slope, Brier score and the Hosmer-Lemeshow test, and plotted in "
                        f"{getattr(sc, 'calibration_bins', '?')} bins{cite('calibration', 'calibration_*')}.")  # fmt: skip
        if has("decision_curve_*"):
            first, last, step = (getattr(sc, "dca_thresholds", None) or ("?", "?", "?"))[:3]
            text.append(f"Decision curves cover threshold probabilities from {_num(first)} to {_num(last)} in steps of {_num(step)}"
                        f"{cite('decision_curve_*')}.")  # fmt: skip
        groups = [f"{g.series} {g.field}" for g in getattr(sc, "subgroups", ()) or ()]
        if groups and has("subgroup_*"):
            text.append(f"Subgroup analyses: {_join(groups)}{cite('subgroup_*')}.")
        if text:
            out.append(MethodsParagraph("statistics", "Statistical evaluation", " ".join(text)))
    return out


def _other_outputs_paragraph(other: Sequence[str]) -> MethodsParagraph | None:
    if not other:
        return None
    groups: dict[str, list[str]] = {}
    for rel in other:
        groups.setdefault(str(Path(rel).parent.as_posix()), []).append(rel)
    parts = [f"{folder}/ ({len(files)} files)" if len(files) > 4 else _join(files) for folder, files in groups.items()]
    return MethodsParagraph("outputs", "Other recorded outputs", f"The run also recorded {len(other)} file{'s' if len(other) != 1 else ''} not "
                            f"shown here (relative to reports/<study>/): {'; '.join(parts)}.")  # fmt: skip


# --------------------------------------------------------------------------- checklist


def _config_value(cfg: StudyConfig, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = getattr(value, part, None) if not isinstance(value, Mapping) else value.get(part)
    return value


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
    rows = checklist_table(cfg, items, methods, collected.other, data)
    n_tables = sum(it.kind == "table" for it in items)
    refs = " ".join(str(g.get("reference", "")) for g in data.get("checklists", []) if g.get("reference"))
    checklist = SupplementItem(
        "table", "reporting_checklist", "", "", None, n_tables + 1,
        "Reporting checklist - where the items of CLEAR and TRIPOD+AI are addressed in this supplement.",
        note=("Item numbers are those of the published checklists; items named by topic only are listed without a number. "
              "Items about the manuscript text (title, introduction, discussion, ethics) are not covered by this supplement. " + refs),
        n_rows=len(rows), n_columns=4,
    )  # fmt: skip
    cells[checklist.anchor] = (["Guideline", "Item", "Topic", "Addressed in"], [[r["guideline"], r["item"], r["topic"], r["addressed"]] for r in rows])
    prov = _read_json(root / "provenance" / "latest.json")
    sub = f"Study '{cfg.study}'. Generated by helpers.reporting.supplement from the outputs under reports/{cfg.study}/"
    if prov.get("finished_utc"):
        sub += f" (run finished {prov['finished_utc']})"
    sub += f": {n_tables} tables, {sum(it.kind == 'figure' for it in items)} figures."
    return Supplement(cfg.study, root, f"Supplementary material: {cfg.study}", sub, sections, methods, checklist, cells, notes_text,
                      list(collected.messages))  # fmt: skip


# --------------------------------------------------------------------------- DOCX


def _png_info(data: bytes) -> tuple[int, int, float]:
    """Width and height in pixels and the resolution in dpi (pHYs chunk; 300 when absent) of a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    width, height, dpi = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), 300.0
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"pHYs" and length >= 9 and data[pos + 16] == 1:  # unit: metre
            dpi = int.from_bytes(data[pos + 8 : pos + 12], "big") * 0.0254 or 300.0
            break
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return width, height, dpi


_LANDSCAPE_COLUMNS = 10  # DOCX tables with more columns go on landscape pages


def _docx_font_size(n_columns: int) -> float:
    return 9 if n_columns <= 6 else 8 if n_columns <= 10 else 7 if n_columns <= 16 else 6


def write_docx(supp: Supplement, path: str | Path, max_rows: int = 40) -> Path:
    """Write the supplement as a Word document (A4, fixed metadata dates, byte-identical for identical inputs)."""
    from docx import Document
    from docx.enum.section import WD_ORIENT, WD_SECTION
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Cm, Emu, Pt

    path = Path(path)
    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Cm(21.0), Cm(29.7)
    sec.left_margin = sec.right_margin = sec.top_margin = sec.bottom_margin = Cm(2.0)
    usable_w, usable_h = Cm(17.0), Cm(22.0)
    doc.styles["Normal"].font.size = Pt(10)
    props = doc.core_properties
    props.title, props.author, props.last_modified_by, props.revision = supp.title, "helpers.reporting.supplement", "helpers.reporting.supplement", 1
    props.created = props.modified = props.last_printed = _FIXED_TIME.replace(tzinfo=None)
    props.comments = props.subject = props.keywords = props.category = ""

    def orientation(landscape: bool) -> None:
        # Wide tables get a landscape page of their own (a new section), then portrait pages resume.
        new = doc.add_section(WD_SECTION.NEW_PAGE)
        new.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
        new.page_width, new.page_height = (Cm(29.7), Cm(21.0)) if landscape else (Cm(21.0), Cm(29.7))

    def caption(item: SupplementItem) -> None:
        p = doc.add_paragraph(style="Caption")
        p.add_run(f"{item.label}. ").bold = True
        p.add_run(item.caption)

    def small(text: str) -> None:
        if text:
            p = doc.add_paragraph()
            r = p.add_run(text)
            r.font.size = Pt(8)
            r.italic = True

    def add_table(item: SupplementItem) -> None:
        header, rows = supp.cells[item.anchor]
        size = Pt(_docx_font_size(len(header)))
        numeric = _numeric_columns(rows, len(header))
        table = doc.add_table(rows=1, cols=max(1, len(header)))
        table.style = "Table Grid"
        for cell, text in zip(table.rows[0].cells, header, strict=False):
            run = cell.paragraphs[0].add_run(text)
            run.bold, run.font.size = True, size
        tr_pr = table.rows[0]._tr.get_or_add_trPr()
        hdr = OxmlElement("w:tblHeader")
        hdr.set(qn("w:val"), "true")
        tr_pr.append(hdr)  # repeat the header row on every page
        for row in rows:
            cells = table.add_row().cells
            for j, (cell, text) in enumerate(zip(cells, row, strict=False)):
                para = cell.paragraphs[0]
                para.add_run(text).font.size = size
                if numeric[j]:
                    para.alignment = WD_ALIGN_PARAGRAPH.RIGHT

    doc.add_heading(supp.title, level=0)
    doc.add_paragraph(supp.subtitle)
    doc.add_heading("Contents", level=1)
    for _, title, items in supp.sections:
        doc.add_paragraph(title, style="List Bullet")
        for it in items:
            doc.add_paragraph(f"{it.label}. {it.caption}", style="List Bullet 2")
    doc.add_paragraph(f"{supp.checklist.label}. {supp.checklist.caption}", style="List Bullet")
    doc.add_heading("Supplementary methods", level=1)
    for para in supp.methods:
        doc.add_heading(para.title, level=2)
        doc.add_paragraph(para.text)
    for _, title, items in supp.sections:
        doc.add_heading(title, level=1)
        for it in items:
            if it.kind == "table":
                landscape = it.inline and (it.n_columns or 0) > _LANDSCAPE_COLUMNS
                if landscape:
                    orientation(True)
                caption(it)
                if it.inline:
                    add_table(it)
                small(_table_note(it, max_rows, supp.root))
                if landscape:
                    orientation(False)
            elif it.kind == "figure":
                w_px, h_px, dpi = _png_info((supp.root / it.path).read_bytes())
                # Natural size at the PNG's resolution, shrunk to the page width (and height).
                width = int(min(Emu(int(w_px / dpi * 914400)), usable_w, usable_h * w_px / h_px))
                doc.add_picture(str(supp.root / it.path), width=width)
                doc.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
                caption(it)
                small(_figure_note(it, supp.root))
            else:
                caption(it)
                p = doc.add_paragraph()
                r = p.add_run(supp.notes_text[it.anchor].rstrip("\n"))
                r.font.name, r.font.size = "Courier New", Pt(8)
                small(f"File: {it.path}.")
    doc.add_heading("Reporting checklist", level=1)
    caption(supp.checklist)
    add_table(supp.checklist)
    small(supp.checklist.note)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    _normalise_zip(path)
    return path


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;color:#111;background:#fff;max-width:62rem;margin:2rem auto;padding:0 1.2rem;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.3rem}h2{font-size:1.3rem;border-bottom:1px solid #bbb;padding-bottom:.2rem;margin-top:2.5rem}
h3{font-size:1.05rem;margin:1.2rem 0 .3rem}p.sub{color:#444;margin-top:0}
nav.toc{background:#f5f5f5;border:1px solid #ddd;padding:.6rem 1.2rem;font-size:.9rem}nav.toc ul{padding-left:1.2rem;margin:.2rem 0}
nav.toc a{color:#124;text-decoration:none}nav.toc a:hover{text-decoration:underline}
section.item{margin:1.2rem 0 2rem}.tbl{overflow-x:auto;margin:.3rem 0}
table{border-collapse:collapse;font-size:.78rem}th,td{padding:.15rem .5rem;text-align:left;vertical-align:top}
thead th{border-top:2px solid #111;border-bottom:1px solid #111;white-space:nowrap}tbody tr:last-child td{border-bottom:2px solid #111}
td{white-space:nowrap}td.num{text-align:right}td.long{white-space:normal;min-width:18rem}tbody tr:nth-child(even){background:#fafafa}
figure{margin:0}figure img{max-width:100%;height:auto;display:block;margin:0 auto}
.caption{font-size:.92rem;margin:.4rem 0}.caption b{margin-right:.3rem}.note{font-size:.8rem;color:#444;font-style:italic;margin:.2rem 0}
pre{white-space:pre-wrap;word-break:break-word;font-size:.8rem;background:#f6f6f6;border:1px solid #e3e3e3;padding:.5rem}
@media print{body{max-width:none;margin:0}section.item{page-break-inside:avoid}nav.toc{display:none}}
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    numeric = _numeric_columns(rows, len(header))
    out = ['<div class="tbl"><table><thead><tr>', "".join(f"<th>{_h(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        cls = ['num' if numeric[j] else 'long' if len(v) > 40 else '' for j, v in enumerate(row)]
        out.append("<tr>" + "".join(f'<td class="{c}">{_h(v)}</td>' if c else f"<td>{_h(v)}</td>" for c, v in zip(cls, row, strict=False)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def write_html(supp: Supplement, path: str | Path, max_rows: int = 40) -> Path:
    """Write the supplement as one self-contained HTML file (inline CSS, figures as data URIs, no script)."""
    path = Path(path)
    caption = lambda it: f'<p class="caption"><b>{_h(it.label)}.</b>{_h(it.caption)}</p>'  # noqa: E731
    note = lambda text: f'<p class="note">{_h(text)}</p>' if text else ""  # noqa: E731
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_h(supp.title)}</title>",
        f"<style>{_CSS.strip()}</style>", "</head>", "<body>", f"<h1>{_h(supp.title)}</h1>", f'<p class="sub">{_h(supp.subtitle)}</p>',
    ]  # fmt: skip
    toc = ['<nav class="toc" id="contents"><h2>Contents</h2><ul>', '<li><a href="#methods">Supplementary methods</a><ul>']
    toc += [f'<li><a href="#methods-{p.key}">{_h(p.title)}</a></li>' for p in supp.methods]
    toc.append("</ul></li>")
    for step, title, items in supp.sections:
        toc.append(f'<li><a href="#step-{_h(step)}">{_h(title)}</a><ul>')
        toc += [f'<li><a href="#{it.anchor}">{_h(it.label)}</a>. {_h(it.caption)}</li>' for it in items]
        toc.append("</ul></li>")
    toc.append(f'<li><a href="#checklist">Reporting checklist</a> (<a href="#{supp.checklist.anchor}">{_h(supp.checklist.label)}</a>)</li></ul></nav>')
    parts += toc
    parts.append('<section id="methods"><h2>Supplementary methods</h2>')
    for p in supp.methods:
        parts.append(f'<h3 id="methods-{p.key}">{_h(p.title)}</h3><p>{_h(p.text)}</p>')
    parts.append("</section>")
    for step, title, items in supp.sections:
        parts.append(f'<section id="step-{_h(step)}"><h2>{_h(title)}</h2>')
        for it in items:
            parts.append(f'<section class="item" id="{it.anchor}">')
            if it.kind == "table":
                parts.append(caption(it))
                if it.inline:
                    parts.append(_html_table(*supp.cells[it.anchor]))
                parts.append(note(_table_note(it, max_rows, supp.root)))
            elif it.kind == "figure":
                data = (supp.root / it.path).read_bytes()
                w, h, dpi = _png_info(data)
                css_w, css_h = round(w * 96 / dpi), round(h * 96 / dpi)  # natural print size in CSS pixels; max-width 100%
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                parts.append(f'<figure><img src="{uri}" width="{css_w}" height="{css_h}" alt="{_h(it.label)}: {_h(it.caption)}">'
                             f"<figcaption>{caption(it)}{note(_figure_note(it, supp.root))}</figcaption></figure>")  # fmt: skip
            else:
                parts.append(caption(it) + f"<pre>{_h(supp.notes_text[it.anchor])}</pre>" + note(f"File: {it.path}."))
            parts.append("</section>")
        parts.append("</section>")
    parts.append(f'<section id="checklist"><h2>Reporting checklist</h2><section class="item" id="{supp.checklist.anchor}">')
    parts += [caption(supp.checklist), _html_table(*supp.cells[supp.checklist.anchor]), note(supp.checklist.note), "</section></section>"]
    parts += ["</body>", "</html>", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- LaTeX

_TEX_CHARS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "±": r"$\pm$", "µ": r"$\mu$", "μ": r"$\mu$", "–": "--", "—": "---",
    "…": r"\ldots{}", "°": r"\textdegree{}", "\n": " ", "\r": " ",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and a few symbols pdflatex lacks) in plain text."""
    return "".join(_TEX_CHARS.get(ch, ch) for ch in str(text))


def _latex_table(item: SupplementItem, header: list[str], rows: list[list[str]], note_text: str) -> str:
    n = max(1, len(header))
    numeric = _numeric_columns(rows, n)
    widest = [max([len(header[j]) if j < len(header) else 0, *(len(r[j]) for r in rows if j < len(r))]) for j in range(n)]
    spec = "".join("r" if numeric[j] else (r"p{0.32\linewidth}" if widest[j] > 45 and n <= 6 else "l") for j in range(n))
    wide = n > 8 or sum(min(w, 45) for w in widest) > 110
    lines = [
        f"% {item.label}: {item.path or item.name}",
        r"\begin{table}[htbp]",
        r"\centering",
        f"\\setcounter{{table}}{{{item.number - 1}}}",
        f"\\caption{{{latex_escape(item.caption)}}}",
        f"\\label{{tab:supp-s{item.number}}}",
        r"\scriptsize",
    ]
    if wide:
        lines.append(r"\resizebox{\linewidth}{!}{%")
    lines += [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}%" if wide else r"\end{tabular}"]
    if wide:
        lines.append("}")
    if note_text:
        lines += [r"\par\smallskip", f"\\parbox{{\\linewidth}}{{\\footnotesize {latex_escape(note_text)}}}"]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def write_latex(supp: Supplement, path: str | Path, max_rows: int = 40) -> Path:
    """Write every inlined table (and the checklist) as booktabs LaTeX tables numbered like the documents (S1, S2...)."""
    path = Path(path)
    out = [
        f"% Supplementary tables of study '{latex_escape(supp.study)}', generated by helpers.reporting.supplement from reports/{latex_escape(supp.study)}/.",
        r"% Preamble needs: \usepackage{booktabs,graphicx}. Tables are numbered S1, S2, ... like the DOCX/HTML supplement;",
        r"% tables that are only referenced there (too wide, or data tables) are not repeated here.",
        r"\renewcommand{\thetable}{S\arabic{table}}",
        "",
    ]
    for it in supp.items:
        if it.kind == "table" and it.inline:
            header, rows = supp.cells[it.anchor]
            note_text = it.note if it is supp.checklist else _table_note(it, max_rows, supp.root)
            out.append(_latex_table(it, header, rows, note_text))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- entry point


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


if __name__ == "__main__":
    sys.exit(main())
