"""Writing tables and figures under ``reports/<study>/`` and recording them.

Every file a step writes goes through a :class:`ReportWriter`, which records it
in the step's output ledger (``.state/outputs/<step>[__<cohort>].json``). The
runner uses the ledger to hash upstream artefacts and to skip unchanged steps.
Tables are written as CSV and XLSX, figures as PNG (300 dpi) and PDF, with
volatile metadata (creation dates) removed so identical inputs give identical
files.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import SimpleITK as sitk

from helpers.figures.style import save_figure
from helpers.imaging.io import sha256_file
from helpers.settings.study import StudyConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_W3CDTF = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def ledger_path(report_root: Path, step: str, cohort: str | None) -> Path:
    """Path of the output ledger of one step run."""
    suffix = f"__{cohort}" if cohort else ""
    return report_root / ".state" / "outputs" / f"{step}{suffix}.json"


class ReportWriter:
    """Writes a step's tables and figures and records them in its ledger.

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration (defines ``reports/<study>/``).
    step : str
        Name of the step writing (e.g. ``acquisition_qc``).
    cohort : str, optional
        Cohort of a per-cohort step; file names then end in ``_<cohort>``.
    """

    def __init__(self, cfg: StudyConfig, step: str, cohort: str | None = None):
        self.cfg = cfg
        self.step = step
        self.cohort = cohort
        self.root = cfg.report_root
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self._ledger = ledger_path(self.root, step, cohort)
        self._ledger.parent.mkdir(parents=True, exist_ok=True)
        # A new writer starts a fresh ledger: a step run owns exactly the files it writes.
        self._written: list[str] = []
        self._failures: dict | None = None
        self._save_ledger()

    def _name(self, name: str, per_cohort: bool) -> str:
        if not _NAME.match(name):
            raise ValueError(f"output name {name!r}: use lower-case letters, digits, '_', '-', '.' (it names a file)")
        return f"{name}_{self.cohort}" if (per_cohort and self.cohort) else name

    def _record(self, path: Path) -> None:
        rel = path.relative_to(self.root).as_posix()
        if rel not in self._written:
            self._written.append(rel)
        self._save_ledger()

    def _save_ledger(self) -> None:
        entry: dict[str, object] = {"step": self.step, "cohort": self.cohort, "outputs": self._written}
        if self._failures is not None:
            entry["failures"] = self._failures
        self._ledger.write_text(json.dumps(entry, indent=1), encoding="utf-8")

    def failures(self, table: pd.DataFrame, what: str, table_path: Path | None = None, examples: int = 5) -> None:
        """Record the units of work this step could not complete (the runner reports them after the step).

        Parameters
        ----------
        table : DataFrame
            One row per failed unit with ``patient`` and ``reason`` (and e.g. ``series``, ``roi``); empty when none failed.
        what : str
            What a unit is, in plural (e.g. ``"extraction units"``).
        table_path : Path, optional
            The written table listing every failure (cited by the runner).
        examples : int
            Failures quoted in full in the ledger (the first ones, in table order).
        """
        keys = [c for c in ("patient", "series", "roi", "reader", "reason") if c in table.columns]
        self._failures = {
            "what": what,
            "count": int(len(table)),
            "patients": sorted({str(p) for p in table["patient"]}) if "patient" in table.columns else [],
            "examples": [{k: str(r[k]) for k in keys} for r in table.head(examples).to_dict("records")],
            "table": table_path.relative_to(self.root).as_posix() if table_path is not None else None,
        }
        self._save_ledger()

    def table(self, df: pd.DataFrame, name: str, per_cohort: bool = True, index: bool = False) -> Path:
        """Write ``tables/<name>[_<cohort>].csv`` and ``.xlsx``; return the CSV path."""
        stem = self._name(name, per_cohort)
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        csv = self.tables_dir / f"{stem}.csv"
        xlsx = self.tables_dir / f"{stem}.xlsx"
        df.to_csv(csv, index=index, lineterminator="\n")
        with pd.ExcelWriter(xlsx, engine="openpyxl") as xw:
            df.to_excel(xw, index=index, sheet_name=stem[:31])
            xw.book.properties.creator = "helpers"
        _normalise_zip(xlsx)
        self._record(csv)
        self._record(xlsx)
        return csv

    def figure(self, fig: Figure, name: str, per_cohort: bool = True) -> Path:
        """Write ``figures/<name>[_<cohort>].png`` (300 dpi) and ``.pdf``; close the figure."""
        stem = self._name(name, per_cohort)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        png = self.figures_dir / f"{stem}.png"
        pdf = self.figures_dir / f"{stem}.pdf"
        save_figure(fig, png, pdf)  # PNG 300 dpi + PDF, bbox "tight", no volatile metadata; closes the figure
        self._record(png)
        self._record(pdf)
        return png

    def data(self, df: pd.DataFrame, name: str, per_cohort: bool = False, index: bool = True) -> Path:
        """Write a data table as ``features/<name>.parquet`` and ``.csv``; return the parquet path.

        Used for analysis-ready tables (e.g. the wide feature table) that later
        notebooks read back; parquet keeps the dtypes exactly.
        """
        stem = self._name(name, per_cohort)
        folder = self.root / "features"
        folder.mkdir(parents=True, exist_ok=True)
        parquet, csv = folder / f"{stem}.parquet", folder / f"{stem}.csv"
        df.to_parquet(parquet, index=index)
        df.to_csv(csv, index=index, lineterminator="\n")
        self._record(parquet)
        self._record(csv)
        return parquet

    def json(self, payload: object, name: str, folder: str = "provenance") -> Path:
        """Write ``<folder>/<name>.json`` (sorted keys, so identical content gives identical bytes)."""
        stem = self._name(name, per_cohort=False)
        out_dir = self.root / folder
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{stem}.json"
        path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str), encoding="utf-8")
        self._record(path)
        return path

    def image(self, image: sitk.Image, relative_path: str) -> Path:
        """Write an image (e.g. a habitat label map) under the report root and record it."""
        path = self.root / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), True)
        self._record(path)
        return path

    def record(self, path: Path) -> None:
        """Record a file written by another writer (e.g. a saved model) as this step's output."""
        self._record(Path(path))

    def text(self, content: str, name: str) -> Path:
        """Write ``tables/<name>`` (e.g. the Rad-score formula as plain text)."""
        path = self.tables_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        self._record(path)
        return path

    def artifact(self, obj: object, relative_path: str) -> Path:
        """Pickle a fitted object with joblib under the report root (e.g. ``models/signature.joblib``)."""
        import joblib

        path = self.root / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(obj, path)
        self._record(path)
        return path

    @property
    def outputs(self) -> list[str]:
        """Files written so far, relative to ``reports/<study>/``."""
        return list(self._written)


def _normalise_zip(path: Path) -> None:
    """Rewrite a zip container (XLSX) with fixed entry timestamps.

    zip entries carry their write time, so two identical tables would give
    different bytes; a fixed time keeps re-runs byte-identical.
    """
    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                # openpyxl stamps the save time into 'modified' whatever the properties say.
                data = _W3CDTF.sub(rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2000, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            zout.writestr(fixed, data)


def read_ledger(report_root: Path, step: str, cohort: str | None) -> list[str]:
    """Outputs recorded by a step run (empty when the step never ran)."""
    path = ledger_path(report_root, step, cohort)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("outputs", []))


def read_failures(report_root: Path, step: str, cohort: str | None) -> dict | None:
    """Failures recorded by a step run with :meth:`ReportWriter.failures` (``None`` when it recorded none)."""
    path = ledger_path(report_root, step, cohort)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8")).get("failures")
    return record if record and record.get("count") else None


def hash_outputs(report_root: Path, outputs: list[str]) -> dict[str, str | None]:
    """SHA-256 of each recorded output (``None`` when the file is gone)."""
    return {rel: (sha256_file(report_root / rel) if (report_root / rel).is_file() else None) for rel in outputs}


def find_values_in_reports(report_root: Path, values: list[str]) -> dict[str, list[str]]:
    """Files under ``report_root`` containing any of ``values`` (case-insensitive).

    Every file is searched as raw bytes, and so is what it embeds: the
    members of zip containers (XLSX, DOCX), the text chunks of PNG images
    (``tEXt``, and the compressed ``zTXt``/``iTXt``), gzip files (``.nii.gz``), the compressed streams
    and hex strings of PDFs, and base64 images and documents inside executed
    notebooks and HTML (``data:`` URIs), recursively. Values are also matched
    in UTF-16 (PDF metadata strings). Used to prove that no
    patient-identifying value reaches a report.

    Returns
    -------
    dict
        value -> list of files (relative paths) that contain it.
    """
    needles = {v: [v.lower().encode(), v.lower().encode("utf-16-be"), v.lower().encode("utf-16-le")] for v in values if v}
    hits: dict[str, list[str]] = {v: [] for v in needles}
    for path in sorted(p for p in Path(report_root).rglob("*") if p.is_file()):
        low = [b.lower() for b in _embedded_blobs(path.read_bytes(), path.suffix.lower())]
        for value, forms in needles.items():
            if any(form in b for b in low for form in forms):
                hits[value].append(path.relative_to(report_root).as_posix())
    return {v: files for v, files in hits.items() if files}


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.S)
_PDF_HEX = re.compile(rb"<([0-9A-Fa-f\s]{4,})>")
_DATA_URI = re.compile(rb"data:[\w/+.-]+;base64,([A-Za-z0-9+/=\s]+)")


def _embedded_blobs(data: bytes, suffix: str = "", depth: int = 0) -> list[bytes]:
    """``data`` and every blob embedded in it that a plain byte search would miss."""
    import base64
    import gzip
    import io
    import zlib

    def inflate(raw: bytes) -> bytes:  # what can be decompressed of a zlib stream (truncated or trailing data tolerated)
        try:
            return zlib.decompressobj().decompress(raw)
        except zlib.error:
            return b""

    blobs = [data]
    if depth > 4:
        return blobs
    inner: list[tuple[bytes, str]] = []
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                inner += [(zf.read(n), Path(n).suffix.lower()) for n in zf.namelist()]
        except (zipfile.BadZipFile, OSError, RuntimeError):
            pass
    elif data[:2] == b"\x1f\x8b":  # gzip (e.g. a NIfTI label map, whose header has free-text fields)
        try:
            inner.append((gzip.decompress(data), Path(suffix).suffix))
        except (OSError, EOFError, zlib.error):
            pass
    elif data[:8] == _PNG_SIGNATURE:
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos:pos + 4], "big")
            kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
            pos += 12 + length
            if kind == b"zTXt":
                key, _, rest = chunk.partition(b"\0")
                blobs += [key, inflate(rest[1:])]
            elif kind == b"iTXt" and len(chunk.partition(b"\0")[2]) >= 2:
                key, _, rest = chunk.partition(b"\0")
                text = rest[2:].split(b"\0", 2)[-1]
                blobs += [key, inflate(text) if rest[0] else text]
    elif data[:5] == b"%PDF-":
        inner += [(inflate(m.group(1)), "") for m in _PDF_STREAM.finditer(data)]
        for m in _PDF_HEX.finditer(data):
            digits = re.sub(rb"\s", b"", m.group(1))
            if len(digits) % 2 == 0:
                blobs.append(bytes.fromhex(digits.decode()))  # UTF-16 metadata strings (<FEFF...>)
    else:
        encoded = [m.group(1) for m in _DATA_URI.finditer(data)]
        if suffix == ".ipynb":
            try:
                nb = json.loads(data)
            except ValueError:
                nb = {}
            for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
                for output in cell.get("outputs", []) or []:
                    for mime, payload in (output.get("data") or {}).items():
                        if mime.startswith(("image/", "application/")) and mime != "application/json":
                            text = "".join(payload) if isinstance(payload, list) else str(payload)
                            encoded.append(text.encode())
        for payload in encoded:
            try:
                inner.append((base64.b64decode(re.sub(rb"\s", b"", payload)), ""))
            except ValueError:
                continue
    for blob, inner_suffix in inner:
        blobs += _embedded_blobs(blob, inner_suffix, depth + 1)
    return blobs
