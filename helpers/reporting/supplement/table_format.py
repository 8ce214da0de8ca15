"""How the supplement writes numbers, confidence intervals and column headers (one set of rules for DOCX, HTML and LaTeX).

Rules (stated in the document by :func:`conventions_text`):

- a confidence interval is written ``estimate (lower-upper)``, e.g. ``0.870 (0.760-0.950)``; a quantity that can be
  negative (declared ``signed`` in ``table_labels.yaml``: differences, NRI, IDI, calibration intercept and slope,
  regression coefficients; or any column with a negative bound) is written ``estimate (lower to upper)`` on every row,
  e.g. ``-0.180 (-0.300 to -0.050)`` and ``0.120 (0.050 to 0.300)``, so a minus sign is never confused with the
  separator and a column never mixes the two forms;
- precision by quantity: AUC, sensitivity, specificity, C-index, ICC, Brier score and other proportions 3 decimals;
  hazard and odds ratios, calibration slope and intercept and test statistics 2 decimals; percentages 1 decimal; counts
  as integers; p-values ``< 0.001`` or 3 decimals; other numbers as written when they have at most 4 decimals,
  otherwise 3 decimals (scientific notation below 0.001 and from 10^6);
- headers come from the code-name dictionary ``table_labels.yaml``; abbreviations used in a table's headers are
  spelled out in a footnote under it.

:func:`display_table` turns the cells of a CSV file into a :class:`DisplayTable` (labelled headers, formatted cells,
estimate / lower / upper triplets merged into one "(95% CI)" column, pre-formatted duplicates dropped).
"""


from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from helpers.data.columns import shown_name
from helpers.errors import ConfigError

LABELS_FILE = Path(__file__).with_name("table_labels.yaml")
FORMATS = ("d3", "d2", "d1", "percent", "count", "p", "auto", "text", "words")
_DIGITS = {"d3": 3, "d2": 2, "d1": 1, "percent": 1, "count": 0, "auto": 3, "p": 3, "text": 3, "words": 3}
_ENTRY_KEYS = {"label", "format", "signed", "interval", "id", "hide"}
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_MISSING = {"", "nan", "NaN", "NA", "None", "none", "null"}
_PREFORMATTED_CI = re.compile(r"^(?P<base>.+?) \((?P<level>\d+(?:\.\d+)?%) CI\)$")
_CI_TEXT = re.compile(r"^(?P<est>-?\d+(?:\.\d+)?) \((?P<lo>-?\d+(?:\.\d+)?)(?: to |-)(?P<hi>-?\d+(?:\.\d+)?)\)$")
_BOUND_SUFFIXES = (("_lower", "_upper"), (" lower 95%", " upper 95%"), ("_ci_low", "_ci_high"))
P_FLOOR = 0.001


# --------------------------------------------------------------------------- numbers


def _fixed(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, never ``-0.000``."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_ci(estimate: float, lower: float, upper: float, digits: int = 3, signed: bool = False) -> str:
    """A point estimate with its confidence interval.

    Parameters
    ----------
    estimate, lower, upper : float
        NaN when undefined.
    digits : int
        Decimals of all three numbers.
    signed : bool
        True for a quantity that can be negative: written ``estimate (lower to upper)`` whatever the signs, so every
        row of its column reads the same. False: ``estimate (lower-upper)``.

    Returns
    -------
    str
        ``"0.870 (0.760-0.950)"``, ``"-0.180 (-0.300 to -0.050)"``; ``"NA"`` without an estimate and
        ``"0.500 (NA)"`` without an interval.

    Raises
    ------
    ValueError
        A negative bound with ``signed=False`` (``-0.30--0.05`` would be ambiguous).
    """
    if not math.isfinite(estimate):
        return "NA"
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return f"{_fixed(estimate, digits)} (NA)"
    lo, hi = _fixed(lower, digits), _fixed(upper, digits)
    if not signed and (lo.startswith("-") or hi.startswith("-")):
        raise ValueError(f"interval ({lower}, {upper}) has a negative bound: pass signed=True (written 'lower to upper')")
    return f"{_fixed(estimate, digits)} ({lo}{' to ' if signed else '-'}{hi})"


def format_p(p: float) -> str:
    """A p-value: ``"< 0.001"`` below 0.001, otherwise 3 decimals (``"0.032"``, ``"1.000"``); ``"NA"`` when undefined."""
    if not math.isfinite(p):
        return "NA"
    return f"< {P_FLOOR:.3f}" if p < P_FLOOR else _fixed(p, 3)


def _auto(text: str, x: float) -> str:
    mantissa = text.lower().split("e")[0]
    if "e" not in text.lower() and ("." not in mantissa or (len(mantissa.split(".")[1]) <= 4 and abs(x) < 1e6)):
        return text
    if x != 0 and (abs(x) < 0.001 or abs(x) >= 1e6):
        return f"{x:.3e}" if abs(x) >= 1e6 else f"{x:.2e}"
    return _fixed(x, 3)


def format_number(value: str | float, fmt: str = "auto") -> str:
    """One cell written by the rule of its quantity (see :data:`FORMATS`); text and missing values as given.

    Parameters
    ----------
    value : str or float
        The cell as read from the CSV file (or a number).
    fmt : str
        One of :data:`FORMATS`.

    Returns
    -------
    str
        E.g. ``format_number("0.89230769", "d3") == "0.892"``, ``format_number("3e-05", "p") == "< 0.001"``,
        ``format_number("18.0", "count") == "18"``; a missing value (empty, NaN) gives ``""``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown number format {fmt!r}; use one of {FORMATS}")
    text = str(value).strip()
    if text in _MISSING:
        return ""
    if fmt == "words":  # a configured name (cohort) shown as words: external_test -> external test
        return shown_name(text)
    if fmt == "text" or not _FLOAT.match(text):
        return text
    x = float(text)
    if not math.isfinite(x):
        return ""
    if fmt == "p":
        return format_p(x)
    if fmt == "count":
        return str(int(x)) if x.is_integer() else _auto(text, x)
    if fmt == "auto":
        return _auto(text, x)
    return _fixed(x, _DIGITS[fmt])


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is shown (an entry of ``table_labels.yaml``)."""

    label: str
    format: str = "auto"
    signed: bool = False
    interval: tuple[str, str] | None = None
    id: bool = False
    hide: bool = False


def _check_entry(where: str, entry: object) -> None:
    if not isinstance(entry, Mapping) or "label" not in entry or set(entry) - _ENTRY_KEYS - {"pattern"}:
        raise ConfigError(f"{where}: needs 'label' and only keys among {sorted(_ENTRY_KEYS)}, got {entry!r}")
    if entry.get("format", "auto") not in FORMATS:
        raise ConfigError(f"{where}: format {entry.get('format')!r} is not one of {FORMATS}")
    interval = entry.get("interval")
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2 and all(isinstance(c, str) for c in interval)):
        raise ConfigError(f"{where}: interval must be [lower column, upper column], got {interval!r}")
    for key in ("signed", "id", "hide"):
        if not isinstance(entry.get(key, False), bool):
            raise ConfigError(f"{where}: {key} must be true or false")


def validate_label_data(data: Mapping, source: str = "table labels") -> Mapping:
    """Check the column dictionary (entries, formats, patterns, abbreviations).

    Raises
    ------
    ConfigError
        Naming the entry and the problem.
    """
    if not isinstance(data, Mapping) or set(data) - {"abbreviations", "columns", "patterns"}:
        raise ConfigError(f"{source}: top-level keys must be among abbreviations, columns, patterns")
    abbreviations = data.get("abbreviations") or {}
    if not isinstance(abbreviations, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in abbreviations.items()):
        raise ConfigError(f"{source}: abbreviations must map an abbreviation to its meaning (both text)")
    for name, entry in (data.get("columns") or {}).items():
        _check_entry(f"{source}: columns[{name!r}]", entry)
    for i, entry in enumerate(data.get("patterns") or []):
        _check_entry(f"{source}: patterns[{i}]", entry)
        if not isinstance(entry.get("pattern"), str):
            raise ConfigError(f"{source}: patterns[{i}] needs a 'pattern'")
        unknown = set(re.findall(r"\{([a-z_]+)\}", entry["pattern"])) - {"cohort", "series", "n", "name"}
        if unknown:
            raise ConfigError(f"{source}: patterns[{i}] uses unknown placeholder(s) {sorted(unknown)}")
    return data


@cache
def _load(path: str) -> dict:
    return dict(validate_label_data(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}, path))


def load_label_data(path: str | Path | None = None) -> dict:
    """The column dictionary (``table_labels.yaml`` of this package by default), validated."""
    return _load(str(Path(path) if path else LABELS_FILE))


def _spec(entry: Mapping, fill: Mapping[str, str] | None = None) -> ColumnSpec:
    label = str(entry["label"])
    if fill:
        label = label.format(**fill)
    interval = tuple(entry["interval"]) if entry.get("interval") else None
    return ColumnSpec(label, entry.get("format", "auto"), bool(entry.get("signed", False)), interval,  # type: ignore[arg-type]
                      bool(entry.get("id", False)), bool(entry.get("hide", False)))  # fmt: skip


@dataclass(frozen=True)
class LabelBook:
    """The column dictionary resolved for one study (its cohort and series names fill the patterns)."""

    data: Mapping
    cohorts: tuple[str, ...] = ()
    series: tuple[str, ...] = ()

    @classmethod
    def for_study(cls, cohorts: Sequence[str], series: Sequence[str], data: Mapping | None = None) -> LabelBook:
        return cls(data if data is not None else load_label_data(), tuple(cohorts), tuple(series))

    @property
    def abbreviations(self) -> Mapping[str, str]:
        return self.data.get("abbreviations") or {}

    def _regex(self, pattern: str) -> re.Pattern:
        def alt(names: Sequence[str], ignore_case: bool = False) -> str:
            names = sorted(names, key=len, reverse=True)
            body = "|".join(map(re.escape, names)) if names else "(?!)"
            return f"(?i:{body})" if ignore_case else body

        alternatives = {"cohort": alt(self.cohorts), "series": alt(self.series, True), "n": r"\d+(?:\.\d+)?", "name": ".+?"}
        out = []
        for part in re.split(r"(\{[a-z]+\})", pattern):
            key = part[1:-1] if re.fullmatch(r"\{[a-z]+\}", part) else None
            out.append(f"(?P<{key}>{alternatives[key]})" if key else re.escape(part))
        return re.compile("^" + "".join(out) + "$")

    def spec(self, name: str) -> ColumnSpec | None:
        """The spec of a column name: an exact entry, else the first matching pattern; None when unknown."""
        columns = self.data.get("columns") or {}
        if name in columns:
            return _spec(columns[name])
        series_names = {s.lower(): s for s in self.series}
        for entry in self.data.get("patterns") or []:
            m = self._regex(str(entry["pattern"])).match(name)
            if m:
                fill = {k: series_names.get(v.lower(), v) if k == "series" else v.replace("_", " ") for k, v in m.groupdict().items()}
                return _spec(entry, fill)
        return None


def fallback_label(name: str) -> str:
    """Header of a column the dictionary lacks (the name with spaces, first letter upper-case)."""
    words = name.replace("_", " ").strip() or name
    return words[:1].upper() + words[1:]


def abbreviations_used(texts: Sequence[str], abbreviations: Mapping[str, str]) -> list[tuple[str, str]]:
    """The abbreviations (key, meaning) occurring as words in ``texts``, in order of first occurrence."""
    found: dict[str, int] = {}
    joined = "\n".join(texts)
    for key in abbreviations:
        m = re.search(rf"(?<![A-Za-z0-9-]){re.escape(key)}(?![A-Za-z0-9-])", joined)
        if m:
            found[key] = m.start()
    return [(k, str(abbreviations[k])) for k in sorted(found, key=lambda k: (found[k], k))]


def abbreviation_note(pairs: Sequence[tuple[str, str]]) -> str:
    """``"AUC, area under ...; CI, confidence interval."`` (empty without abbreviations)."""
    return "; ".join(f"{k}, {v}" for k, v in pairs) + "." if pairs else ""


# --------------------------------------------------------------------------- display table


@dataclass(frozen=True)
class DisplayColumn:
    """One shown column: its header and what it holds (``text``, ``number`` or ``ci``)."""

    key: str
    label: str
    kind: str = "text"
    id: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "ci")


@dataclass(frozen=True)
class DisplayTable:
    """A table as the documents show it.

    Attributes
    ----------
    columns : tuple of DisplayColumn
    rows : tuple of tuple of str
        Formatted cells (all rows shown).
    abbreviations : tuple of (str, str)
        Abbreviations used by the headers (and ``NA`` when a cell is ``NA``), for the footnote.
    unlabelled : tuple of str
        Column names the dictionary lacks (shown with :func:`fallback_label`).
    dropped : tuple of str
        Columns not shown: pre-formatted intervals rebuilt from their numbers, bounds merged into an interval column,
        code-name twins of a shown column and columns empty in every row.
    """

    columns: tuple[DisplayColumn, ...]
    rows: tuple[tuple[str, ...], ...]
    abbreviations: tuple[tuple[str, str], ...] = ()
    unlabelled: tuple[str, ...] = ()
    dropped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def header(self) -> list[str]:
        return [c.label for c in self.columns]

    @property
    def footnote(self) -> str:
        return abbreviation_note(self.abbreviations)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace(" at ", " "))


def _float(text: str) -> float:
    t = text.strip()
    return float(t) if _FLOAT.match(t) else math.nan


def _intervals(header: Sequence[str], book: LabelBook) -> dict[int, tuple[int, int]]:
    """Estimate column -> (lower column, upper column) of each confidence-interval triplet."""
    where = {h: j for j, h in enumerate(header)}
    out: dict[int, tuple[int, int]] = {}
    for j, name in enumerate(header):
        spec = book.spec(name)
        pairs = [(name + lo, name + hi) for lo, hi in _BOUND_SUFFIXES]
        if spec is not None and spec.interval:
            pairs.insert(0, spec.interval)
        for lo, hi in pairs:
            if lo in where and hi in where:
                out[j] = (where[lo], where[hi])
                break
    return out


def _ci_cells(rows: Sequence[Sequence[str]], j: int, lo: int, hi: int, spec: ColumnSpec) -> list[str]:
    triples = [(_float(r[j]), _float(r[lo]), _float(r[hi])) for r in rows]
    signed = spec.signed or any(min(a, b) < 0 for _, a, b in triples if math.isfinite(a) and math.isfinite(b))
    fmt = spec.format if spec.format in ("d3", "d2", "d1", "percent") else "d3"
    return [format_ci(e, a, b, _DIGITS[fmt], signed) for e, a, b in triples]


def _reformat_ci_text(values: Sequence[str]) -> list[str]:
    """Pre-formatted interval strings without their numbers: separators made consistent (precision as written)."""
    parsed = [_CI_TEXT.match(v.strip()) for v in values]
    if not any(parsed):
        return list(values)
    signed = any(m and (m["lo"].startswith("-") or m["hi"].startswith("-")) for m in parsed)
    return [f"{m['est']} ({m['lo']}{' to ' if signed else '-'}{m['hi']})" if m else v for m, v in zip(parsed, values, strict=True)]


def display_table(header: Sequence[str], rows: Sequence[Sequence[str]], book: LabelBook) -> DisplayTable:
    """Labelled, formatted cells of a table read from a CSV file.

    Parameters
    ----------
    header : sequence of str
        Column names as in the file.
    rows : sequence of sequence of str
        Cells as written in the file (the rows to show).
    book : LabelBook
        The column dictionary of the study.

    Returns
    -------
    DisplayTable
        ``x``, ``x_lower``, ``x_upper`` become one column ``"<label of x> (95% CI)"`` (the level is taken from a
        pre-formatted ``"X (NN% CI)"`` column of the file, which is then dropped as a duplicate); other numbers are
        written by the format of their quantity.
    """
    header = ["" if h.startswith("Unnamed: ") else h for h in header]
    rows = [list(r) + [""] * (len(header) - len(r)) for r in rows]
    intervals = _intervals(header, book)
    bounds = {k for pair in intervals.values() for k in pair}
    interval_keys = {_norm(book.spec(header[j]).label if book.spec(header[j]) else header[j]) for j in intervals} | {
        _norm(header[j]) for j in intervals}  # fmt: skip
    level, dropped, preformatted = "95%", [], set()
    for j, name in enumerate(header):
        m = _PREFORMATTED_CI.match(name)
        if m and intervals and _norm(m["base"]) in interval_keys:
            level = m["level"]
            preformatted.add(j)
    specs = [book.spec(h) for h in header]
    labels_present = {s.label for j, s in enumerate(specs) if s is not None and not s.hide}
    columns, cells, unlabelled = [], [], []
    for j, name in enumerate(header):
        spec = specs[j]
        values = [r[j] for r in rows]
        if j in bounds or j in preformatted:
            dropped.append(name)
            continue
        if spec is not None and spec.hide and spec.label in labels_present:
            dropped.append(name)
            continue
        if rows and all(v.strip() in _MISSING for v in values):
            dropped.append(name)
            continue
        if spec is None:
            if name:
                unlabelled.append(name)
            spec = ColumnSpec(fallback_label(name) if name else "")
        if j in intervals:
            lo, hi = intervals[j]
            columns.append(DisplayColumn(name, f"{spec.label} ({level} CI)", "ci", spec.id))
            cells.append(_ci_cells(rows, j, lo, hi, spec))
            continue
        shown = _reformat_ci_text(values) if _PREFORMATTED_CI.match(name) else [format_number(v, spec.format) for v in values]
        numeric = spec.format not in ("text", "words") and any(shown) and all(_FLOAT.match(v) or v.startswith("< ") for v in shown if v)
        # A pre-formatted interval column shown as written (no numbers to rebuild it from) is set like a built one; its
        # other cells may only be placeholders ('-': not estimable, the note says why).
        ci = bool(_PREFORMATTED_CI.match(name)) and all(_CI_TEXT.match(v.strip()) or v.strip() in _MISSING | {"-"} for v in shown)
        columns.append(DisplayColumn(name, spec.label, "ci" if ci else "number" if numeric else "text", spec.id))
        cells.append(shown)
    table_rows = tuple(tuple(col[i] for col in cells) for i in range(len(rows)))
    texts = [c.label for c in columns] + (["NA"] if any(c == "NA" or c.endswith("(NA)") for r in table_rows for c in r) else [])
    return DisplayTable(tuple(columns), table_rows, tuple(abbreviations_used(texts, book.abbreviations)), tuple(unlabelled),
                        tuple(dropped))  # fmt: skip


def conventions_text(max_rows: int, excerpt_rows: int, max_data_columns: int) -> list[str]:
    """The paragraphs stating the table rules at the start of the supplement's tables."""
    return [
        ("Confidence intervals are written as estimate (lower-upper), e.g. 0.870 (0.760-0.950). For quantities that can be "
         "negative (differences, net reclassification and integrated discrimination improvement, calibration intercept and "
         "slope, regression coefficients) every row of the column is written estimate (lower to upper), e.g. "
         "-0.180 (-0.300 to -0.050), so a minus sign is never read as the separator. NA: not available (the note "
         "column or the table note gives the reason)."),
        ("AUC, sensitivity, specificity, predictive values, accuracy, F1, C-index, ICC, Brier score and thresholds are given "
         "with 3 decimals; hazard ratios, calibration intercept and slope and test statistics with 2 decimals; percentages "
         "with 1 decimal; counts as integers; p-values as < 0.001 or with 3 decimals. Values are rounded from the full-"
         "precision numbers of the files named under each table."),
        (f"Tables are shown in full when they have at most {max_rows} rows, otherwise their first {excerpt_rows} rows; the "
         "tables of the model performance, survival, model comparison and calibration, the model summary and the baseline "
         f"characteristics are always shown in full. Per-patient data tables (folder features/) are shown when they have at "
         f"most {max_rows} rows and {max_data_columns} columns and are otherwise referenced by file. Tables too wide for a "
         "landscape page at 7 pt are split into column groups; the identifier columns are repeated in every group. Columns "
         "that are empty in every row, and pre-formatted interval columns whose numbers are shown, are left out."),
    ]
