"""Reading the study's CSV files (manifest, patient table) whatever spreadsheet wrote them.

* Encoding: UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8"). Any
  other encoding (Latin-1/Windows-1252 from European spreadsheets, UTF-16 from
  Excel's "Unicode Text") is rejected with a message naming the line and the
  way to re-save the file: guessing an encoding can silently corrupt ids.
* Line ends: LF or CRLF.
* Delimiter: detected from the header line: ``,`` (default), ``;`` (European
  spreadsheets) or a tab. ``;`` and tab files are read as such, and their
  columns whose every value is a number written with a decimal comma
  (``63,5``) are read as numbers (``63.5``). In a comma-separated file a
  decimal comma cannot be told from a delimiter: it stays text (and the
  validation of continuous variables names it).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.errors import ManifestError, ManifestIssue

__all__ = ["CsvDialect", "read_csv_table", "DELIMITER_NAMES"]

#: Delimiters recognised in a header line, with their names for messages.
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}

_DECIMAL_COMMA = re.compile(r"[+-]?\d+(,\d+)?")
_RESAVE = "re-save it as UTF-8 (Excel: 'CSV UTF-8'; LibreOffice: character set 'Unicode (UTF-8)')"


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file was written: its delimiter and the columns read with a decimal comma.

    Attributes
    ----------
    delimiter : str
        ``,``, ``;`` or a tab.
    decimal_comma_columns : tuple of str
        Columns whose numbers were written with a decimal comma (read as numbers).
    bom : bool
        The file starts with a UTF-8 byte-order mark.
    """

    delimiter: str = ","
    decimal_comma_columns: tuple[str, ...] = ()
    bom: bool = False

    @property
    def is_default(self) -> bool:
        """Comma-separated without decimal commas (the portable form)."""
        return self.delimiter == "," and not self.decimal_comma_columns

    def describe(self) -> str:
        """E.g. ``semicolon-separated, decimal commas in column(s) age, weight``."""
        text = f"{DELIMITER_NAMES[self.delimiter]}-separated"
        if self.decimal_comma_columns:
            cols = list(self.decimal_comma_columns)
            text += f", decimal commas in column(s) {', '.join(cols[:5])}" + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")
        return text


def _fail(path: Path, problem: str, fix: str) -> ManifestError:
    """A :class:`ManifestError` with one file-level issue."""
    return ManifestError(str(path), [ManifestIssue(None, None, None, problem, fix)])


def _decode(path: Path, data: bytes) -> tuple[str, bool]:
    """The text of a UTF-8 file (BOM removed) and whether it had a BOM; raise a clear error for other encodings."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(path, "file is UTF-16 text (e.g. Excel's 'Unicode Text'), not UTF-8", _RESAVE)
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8-sig"), bom
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start]
        raise _fail(path, f"file is not UTF-8 text: byte 0x{byte:02x} on line {line} (probably Latin-1/Windows-1252, "
                          "e.g. an accented letter saved by a spreadsheet)", _RESAVE) from None


def _detect_delimiter(text: str) -> str:
    """The delimiter of the header line: the candidate splitting it into the most fields (``,`` on a tie)."""
    header = next(iter(text.splitlines()), "")
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITER_NAMES}
    best = max(counts.values())
    return "," if counts[","] == best else max(counts, key=lambda d: counts[d])


def _decimal_comma_columns(raw: pd.DataFrame, skip: Sequence[str]) -> list[str]:
    """Columns whose non-empty values are all numbers and at least one is written with a decimal comma."""
    out = []
    for col in raw.columns:
        if col in skip:
            continue
        values = [v.strip() for v in raw[col] if v.strip()]
        if values and any("," in v for v in values) and all(_DECIMAL_COMMA.fullmatch(v) for v in values):
            out.append(col)
    return out


def _parser_problem(exc: Exception, delimiter: str) -> str:
    """A short description of a pandas parser error (a row with more fields than the header names its line)."""
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if m:
        expected, line, saw = m.groups()
        return (f"line {line} has {saw} fields, the header {expected}: a value holds the delimiter "
                f"'{DELIMITER_NAMES[delimiter]}' without quotes")
    return f"not a readable CSV ({str(exc).strip().splitlines()[-1][:120]})"


def read_csv_table(path: str | Path, *, all_text: bool = False, text_columns: Sequence[str] = ()) -> tuple[pd.DataFrame, CsvDialect]:
    """Read a CSV file written by any common spreadsheet (see the module docstring).

    Column names are stripped of surrounding spaces; rows whose every cell is
    empty (trailing ``,,,`` lines of spreadsheets) are dropped, keeping the
    index of the other rows (row ``i`` of the file is index ``i - 1``).

    Parameters
    ----------
    path : str or Path
        The CSV file.
    all_text : bool
        Read every column as text, empty cells as ``""`` (the manifest).
        Otherwise pandas infers numeric columns (empty cells are NaN).
    text_columns : sequence of str
        Columns kept verbatim as text (empty cells ``""``, no NA conversion,
        leading zeros and spaces kept), e.g. the patient id column.

    Returns
    -------
    (DataFrame, CsvDialect)

    Raises
    ------
    ManifestError
        When the file is not UTF-8, is empty or cannot be parsed; the message
        names the line and the fix.
    """
    path = Path(path)
    text, bom = _decode(path, path.read_bytes())
    if not text.strip():
        raise _fail(path, "file is empty", "write the header line and one row per entry")
    delimiter = _detect_delimiter(text)
    fix = "quote values that hold the delimiter, or re-save the file from a spreadsheet as 'CSV UTF-8'"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # index_col=False: rows with one field more than the header must not silently turn the first column into an index.
            raw = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, index_col=False)
            table = raw.copy() if all_text else pd.read_csv(io.StringIO(text), sep=delimiter, dtype={c: str for c in text_columns}, index_col=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise _fail(path, _parser_problem(exc, delimiter), fix) from None
    if any(issubclass(w.category, pd.errors.ParserWarning) and "loss of data" in str(w.message) for w in caught):
        raise _fail(path, f"every data row has more fields than the header ({len(raw.columns)}): a value holds the delimiter "
                          f"'{DELIMITER_NAMES[delimiter]}' without quotes, or the header lacks a column name", fix)
    raw.columns = table.columns = [str(c).strip() for c in raw.columns]
    empty = raw.apply(lambda col: col.str.strip().eq("")).all(axis=1)
    raw, table = raw[~empty].copy(), table[~empty].copy()
    for col in text_columns:
        if col in raw.columns:
            table[col] = raw[col]
    converted: list[str] = []
    if delimiter != ",":
        converted = _decimal_comma_columns(raw, text_columns)
        for col in converted:
            numbers = raw[col].str.strip().str.replace(",", ".", regex=False)
            table[col] = numbers if all_text else pd.to_numeric(numbers.mask(numbers.eq("")))
    return table, CsvDialect(delimiter, tuple(converted), bom)
