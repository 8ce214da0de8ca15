"""Acquisition parameters from DICOM headers, a header CSV or manifest columns.

Only a fixed allow-list of acquisition attributes is ever read into a record
(:data:`ACQUISITION_FIELDS`). Names, birth dates, study dates, institution and
identifiers are never copied, so they cannot reach a report.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from helpers.errors import ImageReadError
from helpers.settings.study import StudyConfig

__all__ = [
    "ACQUISITION_FIELDS",
    "acquisition_records",
    "acquisition_table",
    "cohort_counts",
    "normalise_record",
    "read_dicom_acquisition",
    "records_from_table",
    "summarise_values",
]

#: Canonical acquisition fields: output name -> (DICOM keyword, unit label).
ACQUISITION_FIELDS: dict[str, tuple[str, str]] = {
    "manufacturer": ("Manufacturer", ""),
    "model": ("ManufacturerModelName", ""),
    "field_strength_T": ("MagneticFieldStrength", "T"),
    "sequence": ("ScanningSequence", ""),
    "acquisition_type": ("MRAcquisitionType", ""),
    "tr_ms": ("RepetitionTime", "ms"),
    "te_ms": ("EchoTime", "ms"),
    "flip_angle_deg": ("FlipAngle", "deg"),
    "slice_thickness_mm": ("SliceThickness", "mm"),
    "slice_spacing_mm": ("SpacingBetweenSlices", "mm"),
    # DICOM PixelSpacing is (row spacing, column spacing): the distance between rows, then between columns.
    "pixel_spacing_row_mm": ("PixelSpacing", "mm"),
    "pixel_spacing_col_mm": ("PixelSpacing", "mm"),
    "rows": ("Rows", ""),
    "columns": ("Columns", ""),
    "n_slices": ("n_slices", ""),
    "kvp": ("KVP", "kV"),
    "tube_current_mA": ("XRayTubeCurrent", "mA"),
    "exposure_mAs": ("Exposure", "mAs"),
    "kernel": ("ConvolutionKernel", ""),
    "pitch": ("SpiralPitchFactor", ""),
    "units": ("Units", ""),
}

_NUMERIC = {
    "field_strength_T", "tr_ms", "te_ms", "flip_angle_deg", "slice_thickness_mm", "slice_spacing_mm",
    "pixel_spacing_row_mm", "pixel_spacing_col_mm", "rows", "columns", "n_slices", "kvp", "tube_current_mA", "exposure_mAs", "pitch",
}  # fmt: skip

_KEYWORDS = {kw for kw, _ in ACQUISITION_FIELDS.values()} - {"n_slices"}


#: Fields taken from the second value of a multi-valued attribute (the first when only one is given: square pixels).
_SECOND_VALUE = {"pixel_spacing_col_mm"}


def _first_number(value: object, position: int = 0) -> float:
    """A float from a DICOM value (multi-valued -> the value at ``position``, else the first; text lists are parsed)."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return math.nan
        elif "\\" in text:
            value = text.split("\\")
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        if not len(value):
            return math.nan
        return _first_number(value[position] if position < len(value) else value[0])
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value) or None
    text = str(value).strip()
    return text or None


def normalise_record(raw: Mapping[str, object]) -> dict[str, object]:
    """Map DICOM-keyword values to the canonical, allow-listed acquisition record.

    Parameters
    ----------
    raw : mapping
        DICOM keywords (``Manufacturer``, ``RepetitionTime``, ...) to values,
        as read from a header or a CSV; any other key is ignored.

    Returns
    -------
    dict
        One entry per key of :data:`ACQUISITION_FIELDS` (NaN/None when absent).
    """
    record: dict[str, object] = {}
    for name, (keyword, _unit) in ACQUISITION_FIELDS.items():
        value = raw.get(keyword)
        if name in _NUMERIC:
            record[name] = _first_number(value, 1 if name in _SECOND_VALUE else 0)
        else:
            record[name] = _text(value)
    return record


def read_dicom_acquisition(path: str | Path) -> dict[str, object]:
    """Acquisition record of a DICOM file or series folder.

    For a folder, every slice header is read (pixels skipped); a value that
    varies across slices (e.g. modulated tube current) is given as the median.

    Raises
    ------
    ImageReadError
        When no DICOM file can be read.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=sorted(_KEYWORDS)))
        except Exception:  # non-DICOM files in the folder are skipped, counted below
            continue
    if not datasets:
        raise ImageReadError(f"no readable DICOM header in {path}; point the manifest at the series folder")
    records = [normalise_record({kw: ds.get(kw) for kw in _KEYWORDS}) for ds in datasets]
    merged = dict(records[0])
    for name in _NUMERIC:
        values = [r[name] for r in records if not math.isnan(r[name])]
        merged[name] = float(np.median(values)) if values else math.nan
    merged["n_slices"] = float(len(datasets)) if path.is_dir() else math.nan
    return merged


def records_from_table(table: pd.DataFrame, patient_col: str = "patient", series_col: str = "series") -> pd.DataFrame:
    """Acquisition records from a table with DICOM-keyword columns.

    Parameters
    ----------
    table : DataFrame
        One row per patient and series, columns named by DICOM keyword
        (like ``dicom_acquisition_headers.csv``). Other columns are dropped.

    Returns
    -------
    DataFrame
        ``patient``, ``series`` and the canonical acquisition fields.
    """
    rows = []
    for _, r in table.iterrows():
        rec = normalise_record(r.to_dict())
        rows.append({"patient": str(r[patient_col]), "series": str(r[series_col]), **rec})
    return pd.DataFrame(rows, columns=["patient", "series", *ACQUISITION_FIELDS])


def _fmt_number(x: float) -> str:
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}".rstrip("0").rstrip(".")


def summarise_values(values: pd.Series, max_levels: int = 4) -> str:
    """Summarise one parameter across the scans of a protocol group.

    One value -> the value; a few distinct values -> each with its count
    (``3.27 (n=30); 5 (n=3)``); many numeric values -> ``min-max (median m)``.
    Absent everywhere -> ``n/a``. Values missing in some scans are counted as
    ``n/a (n=k)`` so nothing is hidden.
    """
    numeric = values.map(lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool))
    present = values[values.notna()]
    n_missing = int(len(values) - len(present))
    if present.empty:
        return "n/a"
    if numeric[values.notna()].all():
        nums = present.astype(float).round(3)
        levels = nums.value_counts()
        if len(levels) > max_levels:
            text = f"{_fmt_number(nums.min())}-{_fmt_number(nums.max())} (median {_fmt_number(nums.median())})"
        else:
            text = _levels_text({_fmt_number(k): v for k, v in levels.items()}, len(present))
    else:
        levels = present.astype(str).value_counts()
        text = _levels_text(dict(levels.items()), len(present)) if len(levels) <= max_levels else (
            "; ".join(f"{k} (n={v})" for k, v in list(levels.items())[:max_levels]) + f"; +{len(levels) - max_levels} more"
        )
    if n_missing:
        text += f"; n/a (n={n_missing})"
    return text


def _levels_text(levels: dict[str, int], n: int) -> str:
    if len(levels) == 1:
        return next(iter(levels))
    ordered = sorted(levels.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{k} (n={v})" for k, v in ordered)


def _pair_summary(first: pd.Series, second: pd.Series, max_levels: int = 4, digits: int | None = None) -> str:
    """``R x C`` for paired values (pixel spacing, matrix, FOV: rows first); per-axis ranges when many differ.

    ``digits`` rounds both values first (so 0.97656200000000 and 0.976562 are one level).
    """
    pairs = [(a, b) for a, b in zip(first.astype(float), second.astype(float), strict=True) if not (math.isnan(a) or math.isnan(b))]
    if digits is not None:
        pairs = [(round(a, digits), round(b, digits)) for a, b in pairs]
    if not pairs:
        return "n/a"
    levels = pd.Series([f"{_fmt_number(a)}x{_fmt_number(b)}" for a, b in pairs]).value_counts()
    if len(levels) <= max_levels:
        text = _levels_text(dict(levels.items()), len(pairs))
    else:
        a, b = zip(*pairs, strict=True)
        text = f"{_fmt_number(min(a))}-{_fmt_number(max(a))} x {_fmt_number(min(b))}-{_fmt_number(max(b))}"
    missing = len(first) - len(pairs)
    return text + (f"; n/a (n={missing})" if missing else "")


def acquisition_table(
    records: pd.DataFrame, group_by: tuple[str, ...] = ("cohort", "centre", "series", "modality", "manufacturer", "model")
) -> pd.DataFrame:
    """Acquisition-parameter table per protocol group (like the seeds' Table S1).

    Parameters
    ----------
    records : DataFrame
        One row per scan: the grouping columns and the canonical acquisition
        fields (see :func:`records_from_table`).
    group_by : tuple of str
        Columns defining a protocol group; a column that is absent or blank
        for every scan (e.g. no centre given) is left out.

    Returns
    -------
    DataFrame
        One row per group with ``n_scans`` and one column per acquisition
        parameter (with its unit in the header), mixed values summarised.
    """
    derived = records.copy()
    rows, cols = derived["rows"].astype(float), derived["columns"].astype(float)
    # FOV along the columns (vertical) = Rows x row spacing; along the rows (horizontal) = Columns x column spacing.
    row_sp, col_sp = derived["pixel_spacing_row_mm"].astype(float), derived["pixel_spacing_col_mm"].astype(float)
    derived["fov_rows_mm"], derived["fov_cols_mm"] = (rows * row_sp).round(1), (cols * col_sp).round(1)
    keys = [k for k in group_by if k in derived.columns and derived[k].replace("", np.nan).notna().any()]
    for k in keys:
        derived[k] = derived[k].fillna("n/a")
    paired = ("rows", "columns", "pixel_spacing_row_mm", "pixel_spacing_col_mm")
    params = [f for f in ACQUISITION_FIELDS if f not in ("manufacturer", "model", *paired) and f not in keys]
    out_rows = []
    for key, grp in derived.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["n_scans"] = len(grp)
        for p in params:
            row[p] = summarise_values(grp[p])
        row["pixel_spacing_mm"] = _pair_summary(grp["pixel_spacing_row_mm"], grp["pixel_spacing_col_mm"], digits=3)
        row["matrix"] = _pair_summary(grp["rows"], grp["columns"])
        row["fov_mm"] = _pair_summary(grp["fov_rows_mm"], grp["fov_cols_mm"])
        out_rows.append(row)
    params += ["pixel_spacing_mm", "matrix", "fov_mm"]
    table = pd.DataFrame(out_rows)
    # Drop parameters absent for every group (e.g. kVp in an MR-only study): they carry no information.
    empty = [p for p in params if (table[p] == "n/a").all()]
    return table.drop(columns=empty).reset_index(drop=True)


def acquisition_records(manifest: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """One acquisition record per manifest row, from the best available source.

    Priority: the DICOM headers when the image is a DICOM series/file; else the
    header CSV named by ``acquisition_headers`` in the config; else manifest
    columns named by DICOM keyword (``Manufacturer``, ``RepetitionTime``...).
    The ``source`` column says which one was used. Only allow-listed
    acquisition fields are read (see :data:`helpers.headers.ACQUISITION_FIELDS`).

    Returns
    -------
    DataFrame
        ``patient``, ``cohort``, ``centre``, ``series``, ``modality``, ``source`` and the
        canonical acquisition fields.
    """
    csv = None
    if cfg.acquisition_headers:
        raw = pd.read_csv(cfg.path(cfg.acquisition_headers), dtype=str, keep_default_na=False)
        csv = records_from_table(raw.replace("", np.nan)).set_index(["patient", "series"])
    keyword_cols = [kw for kw, _ in ACQUISITION_FIELDS.values() if kw in manifest.columns]
    rows = []
    for r in manifest.itertuples(index=False):
        image = Path(r.image_path)
        base = {"patient": r.patient, "cohort": r.cohort, "centre": r.centre, "series": r.series, "modality": cfg.series[r.series].modality}
        if image.is_dir() or image.suffix.lower() == ".dcm":
            rec, source = read_dicom_acquisition(image), "DICOM header"
        elif csv is not None and (r.patient, r.series) in csv.index:
            rec, source = csv.loc[(r.patient, r.series)].to_dict(), "header CSV"
        elif keyword_cols:
            rec = normalise_record({kw: (getattr(r, kw) or None) for kw in keyword_cols})
            source = "manifest"
        else:
            rec, source = {k: (math.nan if k != "manufacturer" else None) for k in ACQUISITION_FIELDS}, "none"
        rows.append({**base, "source": source, **rec})
    return pd.DataFrame(rows)


def cohort_counts(manifest: pd.DataFrame, patients: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """Patients per cohort and outcome class, and scans per series (CLEAR item 15).

    Returns
    -------
    DataFrame
        One row per cohort (plus a ``total`` row): role, patients, patients
        per binary outcome class (with %), and scans per series.
    """
    per_patient = manifest.groupby("patient")["cohort"].first()
    # Every task's binary endpoint (a study with several tasks counts each; the one-task study its endpoints.binary).
    endpoints = list(dict.fromkeys(ep.binary for ep in cfg.all_endpoints if ep.binary and ep.binary in patients.columns))
    rows = []
    for cohort in [*cfg.cohorts, "total"]:
        ids = per_patient.index if cohort == "total" else per_patient.index[per_patient == cohort]
        row: dict[str, object] = {"cohort": cohort, "role": cfg.cohorts[cohort].role if cohort != "total" else "", "patients": len(ids)}
        for endpoint in endpoints:
            y = patients.loc[ids, endpoint]
            for cls in sorted(patients[endpoint].dropna().unique()):
                k = int((y == cls).sum())
                row[f"{endpoint}={int(cls)}"] = f"{k} ({100 * k / len(ids):.1f}%)" if len(ids) else "0"
        sub = manifest if cohort == "total" else manifest[manifest["cohort"] == cohort]
        for series in (s for s in cfg.series if cfg.source_series(s) == s):  # acquired series (not notebook 02's SR images)
            row[f"scans {series}"] = int((sub["series"] == series).sum())
        rows.append(row)
    return pd.DataFrame(rows)

