"""Feature tables supplied by the user (``feature_tables:`` in the study config) instead of, or next to, extraction.

A supplied table has one row per patient and one column per feature, as CSV
(any dialect :mod:`helpers.data.tables` reads) or parquet. It becomes the same
frame notebook 03 writes: index = patient id (text), one ``cohort`` column and
``{series}_{roi}_{feature}`` float64 columns (:mod:`helpers.data.columns`).

Every problem is one :class:`~helpers.errors.ManifestIssue` naming the file,
the data row (1-based, header = row 0), the patient, the column and the fix;
all are collected and raised together before any step runs
(``python -m helpers validate``):

* file missing, unreadable or of an unknown type; id or cohort column missing;
  ``columns``/``exclude`` naming absent columns; a feature column matching no
  block prefix;
* empty or duplicate patient ids; ids absent from the patient table;
* non-numeric values (the column, row and value; columns of text such as
  pyradiomics' ``diagnostics_*`` go under ``exclude``, which takes patterns);
  infinite values; a column empty in every row;
* cohorts not under ``cohorts:``; a patient whose cohort differs between the
  table, the manifest and the patient table's ``cohort`` column, or who has none;
* a patient with features of one block (series x ROI) in two tables;
* second-reader tables (``reader2``) with patients absent from the reader-1 table.

Missing values are allowed (the signature drops or imputes them on training
patients only). Patients of the patient table without features (and without
images) are listed as a note, not analysed: nothing is dropped silently.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.data.columns import feature_column
from helpers.data.tables import read_csv_table
from helpers.errors import ManifestError, ManifestIssue
from helpers.settings.study import FeatureTableConfig, StudyConfig

__all__ = [
    "PATIENT_TABLE_COHORT_COLUMN",
    "SuppliedFeatures",
    "SuppliedTable",
    "load_supplied_features",
    "patient_cohorts",
    "provenance_record",
    "read_feature_tables",
    "supplied_patients",
    "without_features_note",
]

#: Column of the patient table that may assign the cohort of patients without images.
PATIENT_TABLE_COHORT_COLUMN = "cohort"
_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")


def _clip(value: object, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else f"{text[:(width - 3) // 2]}...{text[-((width - 3) // 2):]}"


def _short(values: Iterable[object], n: int = 6) -> str:
    items = [_clip(v) for v in values]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class SuppliedTable:
    """One supplied table after the checks that need no patient table.

    ``features`` is indexed by patient id with ``{series}_{roi}_{feature}``
    float64 columns; ``rows`` maps patient -> data row; ``cohort`` holds the
    table's own cohort of each patient (``None`` when the table gives none).
    """

    index: int
    spec: FeatureTableConfig
    path: Path
    features: pd.DataFrame
    rows: dict[str, int]
    cohort: pd.Series | None
    blocks: dict[tuple[str, str], list[str]]
    excluded: list[str]
    reader2: pd.DataFrame | None = None
    reader2_path: Path | None = None

    @property
    def key(self) -> str:
        return f"feature_tables[{self.index}]"


@dataclass
class SuppliedFeatures:
    """The supplied feature tables joined: the frame the signature reads, second readings and the provenance record."""

    features: pd.DataFrame
    reader2: pd.DataFrame | None
    record: dict
    tables: list[SuppliedTable] = field(default_factory=list)


def _read_raw(path: Path, key: str) -> tuple[pd.DataFrame | None, list[ManifestIssue]]:
    """The table as text/numbers with a 1-based data-row index, or the issue why it cannot be read."""
    if not path.is_file():
        return None, [ManifestIssue(None, None, None, f"feature table not found: {_clip(path, 80)}",
                                    f"fix '{key}.path' (relative to the study config's folder) or add the file")]
    suffix = path.suffix.lower()
    try:
        if suffix in _PARQUET:
            df = pd.read_parquet(path)
            df.columns = [str(c).strip() for c in df.columns]
            df = df.reset_index(drop=df.index.name is None)
            df.index = pd.RangeIndex(1, len(df) + 1)
            return df, []
        if suffix in _CSV:
            df, _ = read_csv_table(path, all_text=True)
            df.index = df.index + 1
            return df, []
    except ManifestError as exc:
        return None, [ManifestIssue(i.row, i.column, i.patient, f"feature table cannot be read: {i.problem}", i.fix) for i in exc.issues]
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one actionable line
        reason = _clip(f"{type(exc).__name__}: {exc}", 120)
        return None, [ManifestIssue(None, None, None, f"feature table cannot be read as {suffix[1:]} ({reason})",
                                    "re-export it as CSV (UTF-8) or parquet, one row per patient")]
    return None, [ManifestIssue(None, None, None, f"feature table {path.name} has the unknown type '{suffix or '(none)'}'",
                                "save it as .csv or .parquet")]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _number_issues(df: pd.DataFrame, col: str, ids: pd.Series, key: str) -> tuple[pd.Series, list[ManifestIssue]]:
    """The column as float64 and its non-numeric / infinite values (one issue per column and kind)."""
    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.astype("float64")
        text = None
    else:
        text = raw.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip())
        values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")
    issues = []
    if text is not None:
        bad = text[(text != "") & values.isna()]
        if len(bad):
            row = int(bad.index[0])
            value = bad.iloc[0]
            more = f" ({len(bad) - 1} more rows of this column too)" if len(bad) > 1 else ""
            comma = "," in value and value.replace(",", "", 1).replace("-", "", 1).isdigit()
            fix = (f"write a decimal point ({value.replace(',', '.')})" if comma
                   else f"write a number (leave the cell empty when unknown), or add '{col}' to '{key}.exclude'")
            issues.append(ManifestIssue(row, col, str(ids.loc[row]), f"non-numeric value {_clip(value, 30)!r}{more}", fix))
    inf = values[values.map(lambda v: isinstance(v, float) and math.isinf(v))]
    if len(inf):
        row = int(inf.index[0])
        more = f" ({len(inf) - 1} more rows of this column too)" if len(inf) > 1 else ""
        issues.append(ManifestIssue(row, col, str(ids.loc[row]), f"infinite value {inf.iloc[0]}{more}",
                                    "replace it by the feature's value, or leave the cell empty (missing values are imputed from training patients)"))
    return values, issues


def _read_one(cfg: StudyConfig, index: int, spec: FeatureTableConfig, path: Path, reader: str = "") -> tuple[SuppliedTable | None, list[ManifestIssue]]:
    key = f"feature_tables[{index}]"
    df, issues = _read_raw(path, key + (".reader2" if reader else ""))
    if df is None:
        return None, issues
    pid = spec.patient_id_column or cfg.patient_id_column
    if pid not in df.columns:
        return None, [ManifestIssue(None, pid, None, f"patient id column '{pid}' is missing (columns: {_short(df.columns, 4)})",
                                    f"set '{key}.patient_id_column' to the table's id column, or rename that column '{pid}'")]
    cohort_col = None if reader else spec.cohort_column
    if cohort_col is not None and cohort_col not in df.columns:
        return None, [ManifestIssue(None, cohort_col, None, f"cohort column '{cohort_col}' is missing",
                                    f"fix '{key}.cohort_column' or add the column")]
    ids = df[pid].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    for row in ids.index[ids.str.strip() == ""]:
        issues.append(ManifestIssue(int(row), pid, None, "patient id is empty", "fill in the id or delete the row"))
    filled = ids[ids.str.strip() != ""]
    for patient, rows in filled.groupby(filled).groups.items():
        if len(rows) > 1:
            shown = ", ".join(str(int(r)) for r in rows[:6])
            issues.append(ManifestIssue(int(rows[1]), pid, str(patient), f"patient appears {len(rows)} times (rows {shown})", "keep one row per patient"))
    # Which columns are features.
    reserved = {pid, *([cohort_col] if cohort_col else [])}
    if spec.columns is not None:
        absent = [c for c in spec.columns if not any(_matches(x, [c]) for x in df.columns)]
        if absent:
            issues.append(ManifestIssue(None, absent[0], None, f"'{key}.columns' names {len(absent)} column(s) absent from the table: {_short(absent, 4)}",
                                        f"fix the names in '{key}.columns' (patterns such as 'original_*' are allowed)"))
        candidates = [c for c in df.columns if c not in reserved and _matches(c, spec.columns)]
    else:
        candidates = [c for c in df.columns if c not in reserved]
    unused_ex = [p for p in spec.exclude if not any(_matches(c, [p]) for c in df.columns)]
    if unused_ex:
        issues.append(ManifestIssue(None, unused_ex[0], None, f"'{key}.exclude' names {len(unused_ex)} column(s) absent from the table: {_short(unused_ex, 4)}",
                                    f"fix or remove them in '{key}.exclude' (a misspelt exclusion would keep the column)"))
    excluded = [c for c in candidates if _matches(c, spec.exclude)]
    used = [c for c in candidates if c not in excluded]
    if not used:
        issues.append(ManifestIssue(None, None, None, "the table has no feature column left", f"check '{key}.columns' and '{key}.exclude'"))
    mapped: dict[str, str] = {}
    blocks: dict[tuple[str, str], list[str]] = {}
    unmatched = [c for c in used if spec.block_of(c) is None]
    if unmatched:
        issues.append(ManifestIssue(None, unmatched[0], None, f"{len(unmatched)} column(s) match no prefix of '{key}.blocks': {_short(unmatched, 2)}",
                                    f"add their prefixes to '{key}.blocks' or list them under '{key}.exclude'"))
    for c in used:
        block = spec.block_of(c)
        if block is None:
            continue
        name = feature_column(*block)
        if name in mapped.values():
            other = next(k for k, v in mapped.items() if v == name)
            issues.append(ManifestIssue(None, c, None, f"columns '{other}' and '{c}' both become feature {name}",
                                        f"exclude one of them in '{key}.exclude' or map their prefixes to different blocks"))
            continue
        mapped[c] = name
        blocks.setdefault(block[:2], []).append(name)
    values: dict[str, pd.Series] = {}
    for c, name in mapped.items():
        col, col_issues = _number_issues(df, c, ids, key)
        issues += col_issues
        if not col_issues and col.isna().all():
            issues.append(ManifestIssue(None, c, None, "column is empty in every row", f"fill it in, or add '{c}' to '{key}.exclude'"))
        values[name] = col
    if issues:
        return None, issues
    features = pd.DataFrame(values, index=df.index).set_axis(ids.loc[df.index].to_numpy(), axis=0)
    features.index.name = "patient"
    cohort = None
    if cohort_col is not None:
        cohort = pd.Series(df[cohort_col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()).to_numpy(),
                           index=features.index, name="cohort")
    elif spec.cohort is not None and not reader:
        cohort = pd.Series(spec.cohort, index=features.index, name="cohort")
    rows = {str(p): int(r) for r, p in ids.items()}
    return SuppliedTable(index, spec, path, features, rows, cohort, blocks, excluded), []


def read_feature_tables(cfg: StudyConfig) -> tuple[list[SuppliedTable], dict[str, list[ManifestIssue]]]:
    """Read every supplied table (and its second-reader table) with the checks that need no patient table.

    Returns
    -------
    (tables, issues)
        The tables read without problems, and the problems per file (empty when none).
    """
    tables: list[SuppliedTable] = []
    found: dict[str, list[ManifestIssue]] = {}
    for i, spec in enumerate(cfg.feature_tables):
        path = cfg.path(spec.path)
        table, issues = _read_one(cfg, i, spec, path)
        if issues:
            found.setdefault(str(path), []).extend(issues)
            continue
        assert table is not None
        if spec.reader2:
            path2 = cfg.path(spec.reader2)
            second, issues2 = _read_one(cfg, i, spec, path2, reader="reader2")
            if issues2:
                found.setdefault(str(path2), []).extend(issues2)
            else:
                assert second is not None
                extra = [p for p in second.features.index if p not in table.features.index]
                if extra:
                    found.setdefault(str(path2), []).extend(
                        ManifestIssue(second.rows[p], spec.patient_id_column or cfg.patient_id_column, p,
                                      f"patient of the second-reader table is not in {table.path.name}",
                                      "remove the row or add the patient's reader-1 features") for p in extra[:10])
                missing_cols = [c for c in table.features.columns if c not in second.features.columns]
                if missing_cols:
                    found.setdefault(str(path2), []).append(ManifestIssue(
                        None, missing_cols[0], None, f"{len(missing_cols)} feature(s) of {table.path.name} are absent here: {_short(missing_cols, 3)}",
                        "export the second reading with the same columns (features without a second reading pass the ICC filter unscored)"))
                table.reader2, table.reader2_path = second.features, path2
        tables.append(table)
    return tables, found


def supplied_patients(tables: Iterable[SuppliedTable]) -> list[str]:
    """Every patient with supplied features, sorted."""
    return sorted({p for t in tables for p in t.features.index})


def _resolve_cohorts(cfg: StudyConfig, tables: list[SuppliedTable], patients: pd.DataFrame | None,
                     known: pd.Series | None, found: dict[str, list[ManifestIssue]]) -> pd.Series:
    """patient -> cohort from the tables, ``known`` (manifest or extracted features) and the patient table's ``cohort``."""
    col = PATIENT_TABLE_COHORT_COLUMN
    table_cohort = None
    if patients is not None and col in patients.columns:
        table_cohort = patients[col].map(lambda v: "" if pd.isna(v) else str(v).strip())
    out: dict[str, str] = {}
    origin: dict[str, str] = {}
    homeless: dict[Path, list[str]] = {}
    for t in tables:
        issues = found.setdefault(str(t.path), [])
        cohort_col = t.spec.cohort_column or t.spec.patient_id_column or cfg.patient_id_column
        mismatched: list[ManifestIssue] = []
        for p in t.features.index:
            row = t.rows[p]
            if patients is not None and p not in patients.index:
                continue  # reported: not in the patient table
            candidates: list[tuple[str, str]] = []
            if t.cohort is not None and t.cohort.get(p, ""):
                where = f"column '{t.spec.cohort_column}'" if t.spec.cohort_column else f"'{t.key}.cohort'"
                candidates.append((str(t.cohort[p]), f"{t.path.name} ({where})"))
            if known is not None and p in known.index:
                candidates.append((str(known[p]), "the manifest"))
            if table_cohort is not None and p in table_cohort.index and table_cohort[p]:
                candidates.append((str(table_cohort[p]), f"the patient table's '{col}' column"))
            if p in out:
                candidates.append((out[p], origin[p]))
            unknown = [(c, w) for c, w in candidates if c not in cfg.cohorts]
            if unknown:
                c, w = unknown[0]
                issues.append(ManifestIssue(row, cohort_col, p, f"cohort {_clip(c, 30)!r} (from {w}) is not under 'cohorts:' ({_short(cfg.cohorts, 4)})",
                                            "use a configured cohort name, or add the cohort to 'cohorts:' in the study config"))
                continue
            if not candidates:
                homeless.setdefault(t.path, []).append(p)
                continue
            names = {c for c, _ in candidates}
            if len(names) > 1:
                (c1, w1), (c2, w2) = candidates[0], next(x for x in candidates if x[0] != candidates[0][0])
                mismatched.append(ManifestIssue(row, cohort_col, p, f"cohort {c1!r} in {w1} but {c2!r} in {w2}",
                                                "assign the patient to one cohort in every file"))
                continue
            out[p], origin[p] = candidates[0]
        if len(mismatched) > 5:
            first = mismatched[0]
            issues.append(ManifestIssue(None, cohort_col, None, f"{len(mismatched)} patients have different cohorts in different files, e.g. "
                                        f"{first.patient}: {first.problem}", first.fix))
        else:
            issues.extend(mismatched)
    for t in tables:
        lost = homeless.get(t.path, [])
        fix = f"set '{t.key}.cohort' or '{t.key}.cohort_column', or give the patient table a '{col}' column"
        column = t.spec.cohort_column or t.spec.patient_id_column or cfg.patient_id_column
        if len(lost) > 3:
            found[str(t.path)].append(ManifestIssue(None, column, None, f"{len(lost)} patients have no cohort: {_short(lost, 4)}", fix))
        else:
            found[str(t.path)].extend(ManifestIssue(t.rows[p], column, p, "patient has no cohort", fix) for p in lost)
    return pd.Series(out, name="cohort", dtype=object)


def _patient_issues(cfg: StudyConfig, tables: list[SuppliedTable], patients: pd.DataFrame, found: dict[str, list[ManifestIssue]]) -> None:
    known = set(patients.index.astype(str))
    owner: dict[tuple[str, str, str], str] = {}
    for t in tables:
        issues = found.setdefault(str(t.path), [])
        pid = t.spec.patient_id_column or cfg.patient_id_column
        absent = [p for p in t.features.index if p not in known]
        for p in absent[:10]:
            stripped = [k for k in known if k.strip().lstrip("0").lower() == p.strip().lstrip("0").lower()]
            hint = f" (the patient table has {stripped[0]!r})" if stripped else ""
            issues.append(ManifestIssue(t.rows[p], pid, p, f"patient is not in the patient table{hint}",
                                        "write the id identically in both files, or add the patient's clinical/endpoint row"))
        if len(absent) > 10:
            issues.append(ManifestIssue(None, pid, None, f"{len(absent) - 10} more patients are not in the patient table: {_short(absent[10:])}",
                                        "write the ids identically in both files (format the id column as text)"))
        for (series, roi), cols in t.blocks.items():
            has = t.features[cols].notna().any(axis=1)
            twice: list[tuple[str, str]] = []
            for p in t.features.index[has.to_numpy()]:
                other = owner.get((p, series, roi))
                if other is not None:
                    twice.append((p, other))
                else:
                    owner[(p, series, roi)] = t.path.name
            fix = "keep each patient's block in one table (remove the row from one of them)"
            if len(twice) > 3:
                issues.append(ManifestIssue(None, pid, None, f"{len(twice)} patients already have {series}/{roi} features in {twice[0][1]}: "
                                            f"{_short([p for p, _ in twice], 4)}", fix))
            else:
                issues.extend(ManifestIssue(t.rows[p], pid, p, f"patient already has {series}/{roi} features in {other}", fix) for p, other in twice)


def load_supplied_features(cfg: StudyConfig, patients: pd.DataFrame | None, known_cohort: pd.Series | None = None,
                           tables: list[SuppliedTable] | None = None) -> SuppliedFeatures:
    """Read, check and join the supplied feature tables.

    Parameters
    ----------
    patients : DataFrame or None
        The validated patient table (indexed by patient id); ``None`` skips the checks against it.
    known_cohort : Series, optional
        patient -> cohort of patients with images (the manifest or notebook 03's features); a supplied patient
        listed there must have the same cohort.
    tables : list, optional
        Tables already read by :func:`read_feature_tables`.

    Raises
    ------
    ManifestError
        Every problem of every table, one line each (file, row, patient, column, fix).
    """
    found: dict[str, list[ManifestIssue]] = {}
    if tables is None:
        tables, found = read_feature_tables(cfg)
    if patients is not None:
        _patient_issues(cfg, tables, patients, found)
    cohort = _resolve_cohorts(cfg, tables, patients, known_cohort, found)
    found = {k: v for k, v in found.items() if v}
    if found:
        raise ManifestError(" and ".join(found), [i for v in found.values() for i in v])
    features = _join([t.features for t in tables])
    features.insert(0, "cohort", cohort.reindex(features.index).to_numpy())
    second = [t.reader2 for t in tables if t.reader2 is not None]
    reader2 = _join(second) if second else None
    return SuppliedFeatures(features, reader2, provenance_record(cfg, tables, cohort), tables)


def _join(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables of different patients and/or blocks joined, sorted by patient (one value per patient and column: checked before)."""
    out = pd.concat(parts, axis=0).groupby(level=0, sort=True).first()
    out.index.name = "patient"
    return out.astype("float64")


def provenance_record(cfg: StudyConfig, tables: list[SuppliedTable], cohort: pd.Series) -> dict:
    """What the methods say about the supplied tables: files, hashes, software, settings, counts per block."""

    def rel(path: Path) -> str:
        base = Path(cfg.base_dir)
        return str(path.relative_to(base).as_posix()) if path.is_relative_to(base) else path.name

    out = []
    for t in tables:
        counts = cohort.reindex(t.features.index).value_counts()
        out.append({
            "path": rel(t.path), "file": t.path.name, "sha256": _sha256(t.path), "software": t.spec.software, "settings": t.spec.settings,
            "patients": len(t.features), "patients_per_cohort": {c: int(counts.get(c, 0)) for c in cfg.cohorts if counts.get(c, 0)},
            "blocks": [{"series": s, "roi": r, "features": len(cols), "patients": int(t.features[cols].notna().any(axis=1).sum())}
                       for (s, r), cols in t.blocks.items()],
            "excluded_columns": list(t.excluded),
            "reader2": None if t.reader2 is None else {"path": rel(t.reader2_path), "file": t.reader2_path.name,
                                                       "sha256": _sha256(t.reader2_path), "patients": len(t.reader2)},
        })
    return {"tables": out}


def patient_cohorts(cfg: StudyConfig, patients: pd.DataFrame, manifest: pd.DataFrame) -> pd.Series:
    """patient -> cohort of every analysed patient: the manifest's, and those of the supplied feature tables."""
    known = manifest.drop_duplicates("patient").set_index("patient")["cohort"]
    if not cfg.feature_tables:
        return known
    supplied = load_supplied_features(cfg, patients, known_cohort=known if cfg.manifest is not None else None).features["cohort"]
    return pd.concat([known, supplied[~supplied.index.isin(known.index)]])


def without_features_note(cfg: StudyConfig, patients: pd.DataFrame, analysed: Collection[str]) -> ManifestIssue | None:
    """Patients of the patient table with neither images nor supplied features (listed, not analysed)."""
    left = sorted(set(patients.index.astype(str)) - set(analysed))
    if not left:
        return None
    return ManifestIssue(None, cfg.patient_id_column, None,
                         f"{len(left)} patient(s) of the patient table have no supplied features{'' if cfg.manifest is None else ' and no image'} "
                         f"and are not analysed: {_short(left, 8)}", "nothing to do if intended; otherwise add their rows to a feature table")
