"""The cohort manifest: loading, validation before any work, cohort rules.

``data_manifest.csv`` has one row per image (patient x series). Validation
collects every problem of the manifest and the patient table and raises one
:class:`~helpers.errors.ManifestError` listing them all, each with its row,
column, patient and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .config import StudyConfig
from .errors import ImageReadError, ManifestError, ManifestIssue
from .io import nonfinite_voxels, read_image, read_mask, sha256_file

REQUIRED_COLUMNS = ("patient", "cohort", "series", "image", "mask")
OPTIONAL_COLUMNS = ("centre", "scanner", "mask_reader2", "mask_roi", "image_sha256", "mask_sha256")
_PATH_COLUMNS = ("image", "mask", "mask_reader2")

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "read_manifest",
    "validate_manifest",
    "load_patient_table",
    "load_study",
    "with_resolved_paths",
    "cohort_by_vendor",
]


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read the manifest CSV as text columns, with a 1-based ``row`` column.

    Raises
    ------
    ManifestError
        When the file is missing, unreadable or lacks required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(str(path), [ManifestIssue(None, None, None, "manifest file not found", "create it or set 'manifest' in the study config")])
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(str(path), [ManifestIssue(None, None, None, f"not a readable CSV ({exc})", "save it as comma-separated UTF-8")]) from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(str(path), [
            ManifestIssue(None, c, None, "required column is missing", f"add a '{c}' column (required: {', '.join(REQUIRED_COLUMNS)})")
            for c in missing
        ])
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    df = df.apply(lambda col: col.str.strip())
    df.insert(0, "row", np.arange(1, len(df) + 1))
    return df


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _geometry_problem(img: dict, msk: dict, tol) -> str | None:
    if img["size"] != msk["size"]:
        return f"mask size {msk['size']} differs from image size {img['size']}"
    sp_i, sp_m = np.array(img["spacing"]), np.array(msk["spacing"])
    if np.any(np.abs(sp_i - sp_m) > tol.spacing * sp_i):
        return f"mask spacing {tuple(round(float(v), 4) for v in sp_m)} differs from image spacing {tuple(round(float(v), 4) for v in sp_i)}"
    shift = float(np.max(np.abs(np.array(img["origin"]) - np.array(msk["origin"]))))
    if shift > tol.origin_mm:
        return f"mask origin is {shift:.2f} mm from the image origin (tolerance {tol.origin_mm} mm)"
    if np.max(np.abs(np.array(img["direction"]) - np.array(msk["direction"]))) > tol.direction:
        return "mask orientation (direction cosines) differs from the image"
    return None


def _extraction_labels(cfg: StudyConfig) -> dict[str, set[int]]:
    """Series -> mask label values the configured extraction presets read (pyradiomics ``setting.label``, default 1)."""
    from .features import load_preset, merge_settings

    ex = cfg.extraction
    out: dict[str, set[int]] = {}
    for preset_ref in ex.presets:
        try:
            base = load_preset(preset_ref)
        except (ValueError, OSError):
            continue  # an unknown preset is reported by the extraction step itself
        for series in ex.series or cfg.series:
            setting = merge_settings(base, ex.series_settings.get(series)).get("setting") or {}
            try:
                out.setdefault(series, set()).add(int(setting.get("label", 1)))
            except (TypeError, ValueError):
                continue
    return out


def _check_files(df: pd.DataFrame, cfg: StudyConfig, base: Path, issues: list[ManifestIssue], check_images: bool, hasher: Callable[[Path], str]) -> None:
    labels = set(cfg.labels.values())
    extraction_labels = _extraction_labels(cfg) if check_images else {}
    for r in df.itertuples(index=False):
        paths: dict[str, Path] = {}
        for col in _PATH_COLUMNS:
            value = getattr(r, col)
            if not value:
                continue
            p = _resolve(base, value)
            if not p.exists():
                issues.append(ManifestIssue(r.row, col, r.patient, f"file not found: {value}", "correct the path (relative to the manifest's folder) or add the file"))
            else:
                paths[col] = p
        for col, sha_col in (("image", "image_sha256"), ("mask", "mask_sha256")):
            expected = getattr(r, sha_col)
            if expected and col in paths:
                actual = hasher(paths[col])
                if actual.lower() != expected.lower():
                    issues.append(ManifestIssue(r.row, sha_col, r.patient, f"sha256 of {getattr(r, col)} is {actual[:12]}..., manifest says {expected[:12]}...", "the file changed since the manifest was written: restore the original or update the hash"))
        if not check_images or "image" not in paths:
            continue
        try:
            # The voxels are read, not only the header: truncated files, incomplete DICOM series and NaN/inf voxels
            # must be found here, before any long step starts.
            image = read_image(paths["image"])
        except ImageReadError as exc:
            issues.append(ManifestIssue(r.row, "image", r.patient, str(exc), "replace the file with a readable NIfTI/NRRD/DICOM image (re-export or copy it again)"))
            continue
        img_info = {"size": image.GetSize(), "spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection()}
        n_nan, n_inf = nonfinite_voxels(paths["image"], image)
        if n_nan or n_inf:
            issues.append(ManifestIssue(r.row, "image", r.patient, f"image has {n_nan} NaN and {n_inf} infinite voxel(s); features and resampling are undefined on them",
                                        "re-export the image without NaN/inf, or replace them with a background value (e.g. the image minimum)"))
        for col in ("mask", "mask_reader2"):
            if col not in paths:
                continue
            try:
                reference = image if paths[col].suffix.lower() == ".dcm" else None
                mask = read_mask(paths[col], reference=reference, roi_name=r.mask_roi or None)
            except ImageReadError as exc:
                issues.append(ManifestIssue(r.row, col, r.patient, str(exc), "replace the mask with a readable label image or RTSTRUCT"))
                continue
            problem = _geometry_problem(img_info, {
                "size": mask.GetSize(), "spacing": mask.GetSpacing(), "origin": mask.GetOrigin(), "direction": mask.GetDirection()
            }, cfg.geometry_tolerance)
            if problem:
                issues.append(ManifestIssue(r.row, col, r.patient, f"image/mask geometry mismatch: {problem}", "resample the mask onto its image grid or pair it with the right image"))
            arr = sitk.GetArrayViewFromImage(mask)
            values = np.unique(arr)
            if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
                issues.append(ManifestIssue(r.row, col, r.patient, "mask has non-integer values", "save the mask as an integer label image"))
                continue
            foreign = sorted(int(v) for v in values if int(v) != 0 and int(v) not in labels)
            if foreign:
                issues.append(ManifestIssue(r.row, col, r.patient, f"mask label value(s) {foreign} are not in the config labels {sorted(labels)}", "add them under 'labels' in the study config or relabel the mask"))
            present = [v for v in labels if np.any(arr == v)]
            if not present:
                issues.append(ManifestIssue(r.row, col, r.patient, f"mask is empty: no voxel has a configured label {sorted(labels)}", "segment the tumour or remove the row"))
                continue
            if np.all(arr != 0):
                issues.append(ManifestIssue(
                    r.row, col, r.patient,
                    "mask covers the whole image (no background voxel): a peritumoral ring and the tumour/background contrast are impossible",
                    "check the mask: export it as a label map with background 0 (an inverted or all-ones mask is a conversion error)"))
            absent = sorted(v for v in extraction_labels.get(r.series, ()) if not np.any(arr == v))
            if absent:
                found = sorted(int(v) for v in values if int(v) != 0)
                issues.append(ManifestIssue(
                    r.row, col, r.patient,
                    f"mask has no voxel with label {absent}, which the extraction reads for series '{r.series}' (pyradiomics setting 'label'); labels present: {found}",
                    f"relabel the mask, or set extraction.series_settings.{r.series}.label to one of {found}"))


def validate_manifest(
    cfg: StudyConfig,
    manifest: pd.DataFrame | None = None,
    check_images: bool = True,
    hasher: Callable[[Path], str] = sha256_file,
) -> pd.DataFrame:
    """Validate the manifest against the config and the files on disk.

    Checks, reporting every problem at once: blank required values, unknown
    cohort or series, missing files, duplicate patient/series, a patient in
    two cohorts, sha256 mismatches, unreadable images/masks, image/mask
    geometry beyond tolerance, empty or all-foreground masks and label values
    not in the config.

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration.
    manifest : DataFrame, optional
        An already read manifest (default: read ``cfg.manifest``).
    check_images : bool
        Also open every image and mask (slower, thorough).
    hasher : callable
        Computes a file's SHA-256 (the runner passes a cached one).

    Returns
    -------
    DataFrame
        The manifest with absolute ``image_path``, ``mask_path`` and
        ``mask_reader2_path`` columns.

    Raises
    ------
    ManifestError
        With every problem found.
    """
    source = cfg.path(cfg.manifest)
    df = read_manifest(source) if manifest is None else manifest.copy()
    base = source.parent
    issues: list[ManifestIssue] = []
    for r in df.itertuples(index=False):
        for col in REQUIRED_COLUMNS:
            if not getattr(r, col):
                issues.append(ManifestIssue(r.row, col, r.patient or None, "value is empty", f"fill in '{col}'"))
        if r.cohort and r.cohort not in cfg.cohorts:
            issues.append(ManifestIssue(r.row, "cohort", r.patient, f"unknown cohort '{r.cohort}'", f"use one of {sorted(cfg.cohorts)} or add it under 'cohorts' in the config"))
        if r.series and r.series not in cfg.series:
            issues.append(ManifestIssue(r.row, "series", r.patient, f"unknown series '{r.series}'", f"use one of {sorted(cfg.series)} or add it under 'series' in the config"))
    dup = df[df["patient"].ne("") & df.duplicated(["patient", "series"], keep=False)]
    for (patient, series), grp in dup.groupby(["patient", "series"], sort=True):
        rows = grp["row"].tolist()
        for row in rows[1:]:
            issues.append(ManifestIssue(row, "series", patient, f"duplicate patient/series '{series}' (also row {rows[0]})", "keep one row per patient and series"))
    cohorts = df[df["patient"].ne("") & df["cohort"].ne("")].groupby("patient")["cohort"].agg(lambda s: sorted(set(s)))
    for patient, cs in cohorts.items():
        if len(cs) > 1:
            rows = df.loc[df["patient"] == patient, "row"].tolist()
            issues.append(ManifestIssue(rows[0], "cohort", patient, f"patient is in {len(cs)} cohorts {cs} (rows {rows})", "assign each patient to exactly one cohort"))
    _check_files(df, cfg, base, issues, check_images, hasher)
    if issues:
        raise ManifestError(str(source), sorted(issues, key=lambda i: (i.row or 0, i.column or "")))
    return with_resolved_paths(df, base)


def with_resolved_paths(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    """Add absolute ``image_path``, ``mask_path``, ``mask_reader2_path`` columns."""
    df = df.copy()
    for col in _PATH_COLUMNS:
        df[f"{col}_path"] = [str(_resolve(base, v)) if v else "" for v in df[col]]
    return df


def load_patient_table(cfg: StudyConfig, patients: list[str] | None = None) -> pd.DataFrame:
    """Read and validate the patient table (clinical variables and endpoints).

    Checks: the id column exists and is unique, every configured endpoint and
    clinical column exists, every manifest patient has a row, binary endpoints
    and event indicators are 0/1, times are non-negative numbers; missing
    endpoint values are errors (nothing is silently dropped).

    Parameters
    ----------
    cfg : StudyConfig
    patients : list of str, optional
        Patients of the manifest that must be present.

    Returns
    -------
    DataFrame
        Indexed by patient id.
    """
    path = cfg.path(cfg.patient_table)
    if not path.is_file():
        raise ManifestError(str(path), [ManifestIssue(None, None, None, "patient table not found", "create it or fix 'patient_table' in the study config")])
    table = pd.read_csv(path, dtype={cfg.patient_id_column: str})
    pid = cfg.patient_id_column
    issues: list[ManifestIssue] = []
    needed = [pid, *[c for c in (cfg.endpoints.binary, cfg.endpoints.time, cfg.endpoints.event) if c], *cfg.clinical_variables]
    missing_cols = [c for c in needed if c not in table.columns]
    if missing_cols:
        raise ManifestError(str(path), [ManifestIssue(None, c, None, "column named in the study config is missing", f"add column '{c}' or fix the config") for c in missing_cols])
    for i, r in table.iterrows():
        row, patient = int(i) + 1, str(r[pid])
        for col in (cfg.endpoints.binary, cfg.endpoints.event):
            if col is None:
                continue
            v = r[col]
            if pd.isna(v):
                issues.append(ManifestIssue(row, col, patient, "endpoint value is missing", "fill it in (0 or 1) or remove the patient from the manifest"))
            elif v not in (0, 1):
                issues.append(ManifestIssue(row, col, patient, f"value {v!r} is not 0 or 1", "code the endpoint as 0/1"))
        if cfg.endpoints.time:
            t = pd.to_numeric(pd.Series([r[cfg.endpoints.time]]), errors="coerce").iloc[0]
            if pd.isna(t) or (isinstance(t, float) and math.isinf(t)):
                issues.append(ManifestIssue(row, cfg.endpoints.time, patient, f"time {r[cfg.endpoints.time]!r} is not a number", "give the follow-up time as a number"))
            elif t < 0:
                issues.append(ManifestIssue(row, cfg.endpoints.time, patient, f"negative time {t}", "time to event must be >= 0; check the dates"))
    dups = table[table[pid].duplicated(keep=False)]
    for patient, grp in dups.groupby(pid):
        rows = [int(i) + 1 for i in grp.index]
        issues.append(ManifestIssue(rows[1], pid, patient, f"patient appears {len(rows)} times (rows {rows})", "keep one row per patient"))
    if patients is not None:
        known = set(table[pid])
        for p in sorted(set(patients) - known):
            issues.append(ManifestIssue(None, pid, p, "patient of the manifest has no row in the patient table", "add the patient's clinical/endpoint row"))
    if issues:
        raise ManifestError(str(path), issues)
    return table.set_index(pid)


def load_study(cfg: StudyConfig, check_images: bool = True, hasher: Callable[[Path], str] = sha256_file) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate manifest and patient table together; collect all problems first.

    Parameters are those of :func:`validate_manifest`. When the study fits
    models on the outcome (:func:`fits_outcome_models`), a training cohort
    whose binary endpoint or event indicator has a single class is an error
    too (no model can be fitted; found here, before hours of extraction).

    Returns
    -------
    (manifest, patients) : tuple of DataFrame
    """
    problems: list[ManifestError] = []
    manifest = None
    try:
        manifest = validate_manifest(cfg, check_images=check_images, hasher=hasher)
    except ManifestError as exc:
        problems.append(exc)
    patients = None
    try:
        listed = None if manifest is None else sorted(set(manifest["patient"]))
        patients = load_patient_table(cfg, listed)
    except ManifestError as exc:
        problems.append(exc)
    if not problems and fits_outcome_models(cfg):
        issues = _training_class_issues(cfg, manifest, patients)
        if issues:
            problems.append(ManifestError(str(cfg.path(cfg.patient_table)), issues))
    if problems:
        if len(problems) == 1:
            raise problems[0]
        raise ManifestError(
            " and ".join(p.source for p in problems),
            [i for p in problems for i in p.issues],
        )
    return manifest, patients


#: Steps that fit models on the outcome (by step name or notebook file-name stem prefix).
_FITTING_STEPS = ("signature", "models")
_FITTING_NOTEBOOKS = ("04_signature", "05_models")


def fits_outcome_models(cfg: StudyConfig) -> bool:
    """True when a configured step fits on the outcome (the signature or model notebooks).

    A study running only QC/extraction steps may have a training cohort of
    one outcome class; a study that fits models may not.
    """
    return any(s.name in _FITTING_STEPS or Path(s.notebook).stem.startswith(_FITTING_NOTEBOOKS) for s in cfg.steps)


def _training_class_issues(cfg: StudyConfig, manifest: pd.DataFrame, patients: pd.DataFrame) -> list[ManifestIssue]:
    """A training cohort without patients, or whose binary endpoint / event indicator has a single class.

    No model (logistic, Cox) can be fitted on one class, so this stops the run
    at validation instead of deep inside the signature or model step. Test
    cohorts with one class are allowed: their statistics report the AUC as
    undefined.
    """
    issues: list[ManifestIssue] = []
    for cohort in cfg.training_cohorts:
        ids = sorted(set(manifest.loc[manifest["cohort"] == cohort, "patient"]))
        if not ids:
            issues.append(ManifestIssue(None, "cohort", None, f"training cohort '{cohort}' has no patient in the manifest", f"assign patients to cohort '{cohort}'"))
            continue
        for col in (cfg.endpoints.binary, cfg.endpoints.event):
            if col is None or col not in patients.columns:
                continue
            values = pd.to_numeric(patients[col].reindex(ids), errors="coerce").dropna()
            classes = sorted(set(values.astype(int)))
            if len(classes) == 1:
                shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
                issues.append(ManifestIssue(
                    None, col, None,
                    f"training cohort '{cohort}' has a single class of '{col}': all {len(values)} patients ({shown}) are {classes[0]}; "
                    "no model can be fitted on one class",
                    f"add patients with '{col}' = {1 - classes[0]} to the training cohort, or check the coding of '{col}' and the cohort assignment"))
    return issues


def cohort_by_vendor(headers: pd.DataFrame, series: str, train_vendors: tuple[str, ...], train: str = "training", test: str = "external_test") -> dict[str, str]:
    """Assign cohorts by the scanner manufacturer of one series.

    A patient whose ``series`` scan was acquired on a manufacturer whose name
    starts with one of ``train_vendors`` (case-insensitive) is in ``train``;
    every other patient is in ``test``. The rule uses acquisition metadata
    only, never outcomes, so it cannot be tuned on results.

    Parameters
    ----------
    headers : DataFrame
        ``patient``, ``series`` and ``Manufacturer`` columns.
    series : str
        The series whose scanner defines the split (e.g. ``MR_T1``).
    train_vendors : tuple of str
        Manufacturer prefixes of the training cohort (e.g. ``("GE",)``).

    Returns
    -------
    dict
        patient -> cohort name.
    """
    rows = headers[headers["series"] == series]
    prefixes = tuple(v.upper() for v in train_vendors)
    return {
        str(r["patient"]): train if str(r["Manufacturer"]).upper().startswith(prefixes) else test
        for _, r in rows.sort_values("patient").iterrows()
    }
