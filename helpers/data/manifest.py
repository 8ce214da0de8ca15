"""The cohort manifest: loading, validation before any work, cohort rules.

``data_manifest.csv`` has one row per image (patient x series). Validation
collects every problem of the manifest and the patient table and raises one
:class:`~helpers.errors.ManifestError` listing them all, each with its row,
column, patient and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk

from helpers.data.supplied_features import load_supplied_features, read_feature_tables, supplied_patients, without_features_note
from helpers.data.tables import CsvDialect, read_csv_table
from helpers.errors import ImageReadError, ManifestError, ManifestIssue
from helpers.imaging.dicom_seg import seg_reference
from helpers.imaging.io import geometry_difference, is_dicom_file, nonfinite_voxels, read_image, read_mask, sha256_file
from helpers.settings.study import StudyConfig, binary_only_steps

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
    "fits_outcome_models",
    "reads_images",
    "binary_endpoint_steps",
    "fits_survival_models",
]


def read_manifest(path: str | Path, notes: list[ManifestIssue] | None = None) -> pd.DataFrame:
    """Read the manifest CSV as text columns, with a 1-based ``row`` column.

    The file may be comma-, semicolon- or tab-separated UTF-8 (with or without
    a byte-order mark, LF or CRLF line ends; see :mod:`helpers.tables`).
    Values are stripped of surrounding spaces (a trailing space after a path,
    cohort or series from a spreadsheet is harmless) except the ``patient``
    id, which is kept verbatim: ids are compared exactly with the patient
    table and name output files, so :func:`validate_manifest` reports an id
    with surrounding spaces instead of silently changing it.

    Parameters
    ----------
    path : str or Path
        The manifest CSV.
    notes : list, optional
        Receives a note when the file is not comma-separated (it is read anyway).

    Raises
    ------
    ManifestError
        When the file is missing, unreadable or lacks required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(str(path), [ManifestIssue(None, None, None, "manifest file not found", "create it or set 'manifest' in the study config")])
    df, dialect = read_csv_table(path, all_text=True)
    _dialect_note(path, dialect, notes)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(str(path), [
            ManifestIssue(None, c, None, "required column is missing", f"add a '{c}' column (required: {', '.join(REQUIRED_COLUMNS)})")
            for c in missing
        ])
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    for c in df.columns:
        if c != "patient":
            df[c] = df[c].str.strip()
    df.insert(0, "row", df.index.to_numpy() + 1)
    return df.reset_index(drop=True)


def _dialect_note(path: Path, dialect: CsvDialect, notes: list[ManifestIssue] | None) -> None:
    """Note that a CSV file was read as semicolon-/tab-separated (with decimal commas): not an error, but said."""
    if notes is not None and not dialect.is_default:
        notes.append(ManifestIssue(None, None, None, f"{path.name} is {dialect.describe()}: read as such",
                                   "nothing to do (comma-separated UTF-8 is the portable form)"))


# -- short messages ----------------------------------------------------------------------------------------------------
#: Characters of a list shown in one message; the rest is counted ("P001, P002, P003 and 497 more").
_LIST_BUDGET = 90


def _clip(value: object, width: int = 60) -> str:
    """``value`` as text, shortened in the middle to about ``width`` characters (long paths, ids, cell values)."""
    text = str(value)
    if len(text) <= width:
        return text
    half = (width - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def _shown(value: object, width: int = 30) -> str:
    """``repr`` of a cell value for a message; long text shortened (``'63 y'``, ``2``, ``nan``)."""
    return repr(_clip(value, width)) if isinstance(value, str) else repr(value)


def _short_list(values: Iterable[object], budget: int = _LIST_BUDGET, brackets: bool = False) -> str:
    """``a, b, c and 497 more``: the items that fit in ``budget`` characters (at least one), the rest counted."""
    items = [_clip(v, 40) for v in values]
    shown: list[str] = []
    used = 0
    for item in items:
        if shown and used + len(item) + 2 > budget:
            break
        shown.append(item)
        used += len(item) + 2
    text = ", ".join(shown) + (f" and {len(items) - len(shown)} more" if len(items) > len(shown) else "")
    return f"[{text}]" if brackets else text


# -- patient ids ---------------------------------------------------------------------------------------------------------
#: Characters allowed in a patient id: ids name output files (masks, habitat maps, per-patient tables).
_ID_CHAR = re.compile(r"[A-Za-z0-9_.-]")
_ID_MAX_LENGTH = 64
_CHAR_NAMES = {" ": "a space", "\t": "a tab", "\x00": "a NUL byte", "/": "'/' (a path separator)", "\\": "'\\' (a path separator)"}


def _unsafe_id_reason(pid: str) -> str | None:
    """Why a patient id cannot safely name a file (``None``: it can).

    Allowed: ASCII letters, digits, ``_``, ``-`` and ``.`` (not ``..``, not at
    the start or the end), at most 64 characters, no surrounding spaces.
    """
    if pid != pid.strip():
        return "has surrounding spaces"
    if len(pid) > _ID_MAX_LENGTH:
        return f"is {len(pid)} characters long (at most {_ID_MAX_LENGTH})"
    bad = next((c for c in pid if not _ID_CHAR.fullmatch(c)), None)
    if bad is not None:
        return f"contains {_CHAR_NAMES.get(bad, repr(bad))}"
    if ".." in pid:
        return "contains '..'"
    if pid.startswith(".") or pid.endswith("."):
        return "starts or ends with '.'"
    return None


def _patient_id_issues(df: pd.DataFrame) -> list[ManifestIssue]:
    """Manifest patient ids that cannot name a file: one issue per patient, at its first row."""
    issues = []
    for pid, rows in df.groupby("patient", sort=False)["row"]:
        reason = _unsafe_id_reason(pid) if pid.strip() else None  # a blank id is reported as an empty value
        if reason is None:
            continue
        fix = ("remove the spaces around the id (ids are compared exactly with the patient table)" if "spaces" in reason
               else "use letters, digits, '_', '-' and '.' only (e.g. P001), the same in the patient table")
        issues.append(ManifestIssue(int(rows.iloc[0]), "patient", _clip(pid, 30), f"patient id {_clip(pid, 30)!r} {reason}: ids name output files", fix))
    return issues


def _unknown_value_issues(df: pd.DataFrame, column: str, known: Iterable[str], section: str) -> list[ManifestIssue]:
    """Cohort or series values not in the config: one issue per value (at its first row, further rows counted).

    A value differing from a configured name only by case gets that name as a hint.
    """
    known = sorted(known)
    bad = df[df[column].ne("") & ~df[column].isin(known)]
    issues = []
    for value, grp in bad.groupby(column, sort=False):
        rows = grp["row"].tolist()
        same = next((k for k in known if k.lower() == value.lower()), None)
        hint = f" (the config has '{same}': names are case-sensitive)" if same else ""
        also = f" (also row(s) {_short_list(rows[1:], 40)})" if len(rows) > 1 else ""
        issues.append(ManifestIssue(rows[0], column, grp["patient"].iloc[0] or None, f"unknown {column} '{_clip(value, 40)}'{hint}{also}",
                                    f"use one of {_short_list([repr(k) for k in known], 60, brackets=True)} or add it under '{section}' in the config"))
    return issues


# -- files shared between rows -------------------------------------------------------------------------------------------
def _shared_problem(column: str, what: str, first, row) -> str:
    """'same image file as row 3 (patient P02)', with the leakage named when the two rows are in different cohorts."""
    who = f"patient {_clip(first.patient, 30)}" if first.patient != row.patient else f"series {first.series} of the same patient"
    text = f"same {column} {what} as row {first.row} ({who})"
    if first.patient != row.patient and first.cohort and row.cohort and first.cohort != row.cohort:
        text += f": one {column} in cohorts '{first.cohort}' and '{row.cohort}' is leakage between them"
    return text


def _shared_file_issues(df: pd.DataFrame, base: Path) -> list[ManifestIssue]:
    """Image files listed in two rows, and mask files listed for two patients (compared as resolved paths).

    The same image in two rows is a copy-paste error or, across cohorts,
    leakage between training and test. One mask may serve several series of
    one patient (co-registered images), never two patients. A row listed
    twice is reported as a duplicate patient/series, not here.
    """
    issues = []
    for column, shared_within_patient in (("image", False), ("mask", True)):
        first: dict[Path, object] = {}
        for r in df.itertuples(index=False):
            value = getattr(r, column)
            if not value:
                continue
            key = _resolve(base, value).resolve()
            o = first.setdefault(key, r)
            if o is r or (o.patient == r.patient and (shared_within_patient or o.series == r.series)):
                continue
            issues.append(ManifestIssue(r.row, column, r.patient, _shared_problem(column, "file", o, r), f"point each row at its own patient's {column}"))
    return issues


def _same_content_issues(groups: dict[str, list[tuple[object, Path]]], skip_rows: set[int] = frozenset()) -> list[ManifestIssue]:
    """Rows whose image files differ but hold identical content (same SHA-256): one scan listed twice.

    ``skip_rows``: rows whose 'image' is known not to be an image (columns swapped), reported as such.
    """
    issues = []
    for entries in groups.values():
        entries = [(r, p) for r, p in entries if r.row not in skip_rows]
        if len(entries) < 2:
            continue
        first, first_path = entries[0]
        for r, path in entries[1:]:
            if path == first_path or (r.patient == first.patient and r.series == first.series):
                continue  # the same file or a duplicate row: reported as such
            issues.append(ManifestIssue(r.row, "image", r.patient, _shared_problem("image", "content (SHA-256)", first, r),
                                        "point each row at its own patient's image (a copied file?)"))
    return issues


# -- image content -------------------------------------------------------------------------------------------------------
def _dimension_problem(image: sitk.Image, what: str) -> tuple[str, str] | None:
    """(problem, fix) when an image or mask is not one 3D volume of scalar voxels (4D, 2D, a single slice, RGB)."""
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() > 1:
        return (f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector image)",
                f"save the {what} as a single-channel (grey-value) 3D volume")
    if image.GetDimension() == 4:
        return (f"{what} is 4D ({size[3]} volumes of {size[0]}x{size[1]}x{size[2]})",
                f"extract the volume to analyse (e.g. SimpleITK {what}[:, :, :, k] or fslroi) and point the manifest at it")
    if image.GetDimension() != 3 or 1 in size:
        shape = "a single slice" if image.GetDimension() == 3 else f"{image.GetDimension()}D"
        return (f"{what} is {shape} ({'x'.join(str(s) for s in size)}): 3D volumes are required (there is no 2D mode)",
                f"export the whole {what} volume (all slices) and point the manifest at it")
    return None


def _grid(image: sitk.Image) -> dict:
    """Size, spacing, origin and direction of an image (compared by :func:`_geometry_problem`)."""
    return {"size": image.GetSize(), "spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection()}


#: A mask with more distinct values than this (and than twice the configured labels) holds intensities, not labels.
_MAX_MASK_VALUES = 32


def _image_like_mask_issue(r, column: str, values: np.ndarray, image: sitk.Image, labels: set[int]) -> ManifestIssue | None:
    """One short issue when a 'mask' holds image intensities: columns swapped (its image holds a few labels) or a wrong file.

    ``None`` when the mask has few distinct values (a label mask, checked further).
    """
    limit = max(_MAX_MASK_VALUES, 2 * len(labels))
    if len(values) <= limit:
        return None
    image_values = np.unique(sitk.GetArrayViewFromImage(image))
    if column == "mask" and len(image_values) <= limit and np.all(np.mod(image_values, 1) == 0):
        return ManifestIssue(r.row, column, r.patient,
                             f"columns 'image' and 'mask' appear swapped (the mask file has {len(values):,} distinct values, the image file {len(image_values)})",
                             "swap the two paths in the manifest")
    return ManifestIssue(r.row, column, r.patient, f"the {column} file has {len(values):,} distinct values: an image, not a label mask",
                         f"point '{column}' at the label mask (0 = background, labels {_short_list(sorted(labels), 40, brackets=True)})")


def _small_mask_issues(r, column: str, arr: np.ndarray, labels: Iterable[int], minimum: int) -> list[ManifestIssue]:
    """Labels present in a mask with fewer than ``minimum`` voxels (texture matrices of a few voxels are noise)."""
    issues = []
    for value in sorted(labels):
        n = int(np.count_nonzero(arr == value))
        if 0 < n < minimum:
            issues.append(ManifestIssue(
                r.row, column, r.patient,
                f"mask has only {n} voxel(s) with label {value} (series '{r.series}', minimum {minimum}): texture features of so few voxels are meaningless",
                "check the mask (a partial or stray segmentation?), or lower qc.min_mask_voxels in the study config"))
    return issues


def _attribute_foreign_masks(issues: list[ManifestIssue], mismatched: list[tuple[int, object, str, dict]],
                             image_grids: dict[str, dict[str, dict]], tol) -> None:
    """Replace the geometry message of a mask whose grid is exactly that of another patient's image of the same series."""
    for index, r, column, grid in mismatched:
        owners = [p for p, g in image_grids.get(r.series, {}).items() if p != r.patient and _geometry_problem(g, grid, tol) is None]
        if not 1 <= len(owners) <= 3:
            continue  # none, or a grid shared by many patients: no attribution
        who = f"patient {owners[0]} (same grid as {owners[0]}'s" if len(owners) == 1 else f"one of patients {', '.join(owners)} (same grid as their"
        issues[index] = ManifestIssue(r.row, column, r.patient, f"mask appears to belong to {who} {r.series} image, not this patient's)",
                                      "point the row at this patient's own mask (two patients' masks swapped or copied?)")


# -- DICOM RTSTRUCT / SEG ownership ----------------------------------------------------------------------------------------
def _dicom_image_identity(path: Path) -> tuple[str, str, str] | None:
    """(PatientID, SeriesInstanceUID, FrameOfReferenceUID) of a DICOM image file or series folder (its first DICOM
    file); ``None`` otherwise."""
    try:
        if path.is_dir():
            first = next((p for p in sorted(path.iterdir()) if p.is_file() and is_dicom_file(p)), None)
        else:
            first = path if is_dicom_file(path) else None
        if first is None:
            return None
        ds = pydicom.dcmread(str(first), stop_before_pixels=True)
    except Exception:  # an unreadable image is reported by the image checks
        return None
    return str(ds.get("PatientID", "") or ""), str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("FrameOfReferenceUID", "") or "")


def _dicom_mask_reference(path: Path) -> tuple[str, str, set[str], str] | None:
    """(kind, PatientID, referenced SeriesInstanceUIDs, FrameOfReferenceUID) of an RTSTRUCT or SEG file; ``None``
    for any other file."""
    if not path.is_file() or not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # reported by the mask checks
        return None
    kind = ds.get("Modality")
    if kind == "RTSTRUCT":
        series = {str(se.SeriesInstanceUID)
                  for f in ds.get("ReferencedFrameOfReferenceSequence", []) for st in f.get("RTReferencedStudySequence", [])
                  for se in st.get("RTReferencedSeriesSequence", []) if "SeriesInstanceUID" in se}
        return "RTSTRUCT", str(ds.get("PatientID", "") or ""), series, ""
    if kind == "SEG":
        ref = seg_reference(ds)  # the header already read
        return "SEG", ref.patient_id, set(ref.series_uids), ref.frame_of_reference_uid
    return None


def _mask_owner_problem(r, reference: tuple[str, str, set[str], str], identities: dict[int, tuple[str, str, str, str, str]]) -> str | None:
    """Why an RTSTRUCT or SEG was not drawn on its row's image (``None``: it was, or it cannot be told).

    ``identities`` maps manifest rows to (patient, series, DICOM PatientID,
    SeriesInstanceUID, FrameOfReferenceUID) of their DICOM images. The
    referenced series is compared first; without one, the frame of reference
    (SEG), then the DICOM PatientID. DICOM ids are never printed (they may
    identify the patient): the owner is named by study id.
    """
    own = identities.get(r.row)
    if own is None:
        return None
    kind, dicom_patient, uids, frame = reference
    if uids:
        if own[3] in uids:
            return None
        owners = [o for o in identities.values() if o[3] in uids]
        if owners and owners[0][0] == r.patient:
            return f"{kind} was drawn on this patient's {owners[0][1]} series, not on this row's image"
        if owners:
            return f"{kind} appears to belong to patient {owners[0][0]} (it references {owners[0][0]}'s {owners[0][1]} series, not this row's image)"
        return f"{kind} references another DICOM series than this row's image (drawn on another scan)"
    if frame and own[4] and frame != own[4]:
        owners = sorted({o[0] for o in identities.values() if o[4] == frame and o[0] != r.patient})
        if owners:
            return f"{kind} appears to belong to patient {owners[0]} (its frame of reference is that of {owners[0]}'s images)"
        return f"{kind}'s frame of reference differs from its image's (drawn on another scan)"
    if dicom_patient and own[2] and dicom_patient != own[2]:
        owners = sorted({o[0] for o in identities.values() if o[2] == dicom_patient})
        if owners:
            return f"{kind} appears to belong to patient {owners[0]} (its DICOM PatientID is that of {owners[0]}'s images)"
        return f"{kind}'s DICOM PatientID differs from its image's (drawn on another patient's scan)"
    return None


def _dicom_identities(df: pd.DataFrame, base: Path) -> dict[int, tuple[str, str, str, str, str]]:
    """Row -> (patient, series, DICOM PatientID, SeriesInstanceUID, FrameOfReferenceUID) of the DICOM images, when a
    mask is a DICOM file (RTSTRUCT or SEG)."""
    masks = [_resolve(base, v) for col in ("mask", "mask_reader2") for v in df[col] if v]
    if not any(p.is_file() and is_dicom_file(p) for p in masks):
        return {}
    out = {}
    for r in df.itertuples(index=False):
        ident = _dicom_image_identity(_resolve(base, r.image)) if r.image else None
        if ident is not None:
            out[r.row] = (r.patient, r.series, *ident)
    return out


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _geometry_problem(img: dict, msk: dict, tol) -> str | None:
    # The study's one geometry rule (helpers.imaging.io): what it accepts, every later reader conforms (io.conform_mask).
    return geometry_difference(img, msk, tol, "mask")


def _extraction_labels(cfg: StudyConfig) -> dict[str, set[int]]:
    """Series -> mask label values the configured extraction presets read (pyradiomics ``setting.label``, default 1)."""
    from helpers.features.pyradiomics import load_preset, merge_settings

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
    """Files of every row: existence, hashes, shared files; with ``check_images`` the voxels of every image and mask.

    Image content checks that only matter when a configured step reads the
    images (:func:`reads_images`: identical image content in two rows, the
    minimum mask size) are skipped for studies that only model feature tables.
    """
    labels = set(cfg.labels.values())
    extraction_labels = _extraction_labels(cfg) if check_images else {}
    content_checks = check_images and reads_images(cfg)
    issues.extend(_shared_file_issues(df, base))
    identities = _dicom_identities(df, base) if check_images else {}
    digests: dict[Path, str] = {}
    image_grids: dict[str, dict[str, dict]] = {}  # series -> patient -> grid of the image
    mismatched: list[tuple[int, object, str, dict]] = []  # (index in issues, row, column, mask grid)
    same_content: dict[str, list[tuple[object, Path]]] = {}
    swapped: list[int] = []

    def digest(p: Path) -> str:
        if p not in digests:
            digests[p] = hasher(p)
        return digests[p]

    for r in df.itertuples(index=False):
        paths: dict[str, Path] = {}
        for col in _PATH_COLUMNS:
            value = getattr(r, col)
            if not value:
                continue
            p = _resolve(base, value)
            if not p.exists():
                issues.append(ManifestIssue(r.row, col, r.patient, f"file not found: {_clip(value)}", "correct the path (relative to the manifest's folder) or add the file"))
            else:
                paths[col] = p
        for col, sha_col in (("image", "image_sha256"), ("mask", "mask_sha256")):
            expected = getattr(r, sha_col)
            if expected and col in paths:
                actual = digest(paths[col])
                if actual.lower() != expected.lower():
                    other = "mask_sha256" if col == "image" else "image_sha256"
                    if actual.lower() == str(getattr(r, other)).lower():
                        # The hash of the other column: the paths were swapped, not the file changed (reported once, below).
                        continue
                    issues.append(ManifestIssue(r.row, sha_col, r.patient, f"sha256 of {_clip(getattr(r, col))} is {actual[:12]}..., manifest says {expected[:12]}...", "the file changed since the manifest was written: restore the original or update the hash"))
        if not check_images or "image" not in paths:
            continue
        try:
            # The voxels are read, not only the header: truncated files, incomplete DICOM series and NaN/inf voxels
            # must be found here, before any long step starts.
            image = read_image(paths["image"])
        except ImageReadError as exc:
            # The reader's message names the file and what to do; the manifest path replaces the absolute one (short lines).
            issues.append(ManifestIssue(r.row, "image", r.patient, str(exc).replace(str(paths["image"]), _clip(r.image, 40)),
                                        "re-export or replace the file"))
            continue
        dimension = _dimension_problem(image, "image")
        if dimension:
            issues.append(ManifestIssue(r.row, "image", r.patient, *dimension))
            continue
        img_info = _grid(image)
        image_grids.setdefault(r.series, {}).setdefault(r.patient, img_info)
        if content_checks:
            same_content.setdefault(digest(paths["image"]), []).append((r, paths["image"].resolve()))
        n_nan, n_inf = nonfinite_voxels(paths["image"], image)
        if n_nan or n_inf:
            issues.append(ManifestIssue(r.row, "image", r.patient, f"image has {n_nan} NaN and {n_inf} infinite voxel(s); features and resampling are undefined on them",
                                        "re-export the image without NaN/inf, or replace them with a background value (e.g. the image minimum)"))
        for col in ("mask", "mask_reader2"):
            if col not in paths:
                continue
            if paths[col].resolve() == paths["image"].resolve():
                issues.append(ManifestIssue(r.row, col, r.patient, f"the {col} is the image file itself", f"point '{col}' at the label mask of the image"))
                continue
            reference = _dicom_mask_reference(paths[col]) if identities else None
            owner = _mask_owner_problem(r, reference, identities) if reference else None
            if owner:
                issues.append(ManifestIssue(r.row, col, r.patient, owner, f"point the row at the {reference[0]} drawn on this row's image"))
                continue
            dicom_mask = is_dicom_file(paths[col])
            try:
                mask = read_mask(paths[col], reference=image if dicom_mask else None, roi_name=r.mask_roi or None,
                                 tolerance=cfg.geometry_tolerance)
            except ImageReadError as exc:
                fix = ("set 'mask_roi', or re-export the RTSTRUCT/SEG on this row's image"
                       if dicom_mask else "replace the mask with a readable label image, RTSTRUCT or DICOM SEG")
                issues.append(ManifestIssue(r.row, col, r.patient, str(exc).replace(str(paths[col]), _clip(getattr(r, col))), fix))
                continue
            dimension = _dimension_problem(mask, "mask")
            if dimension:
                issues.append(ManifestIssue(r.row, col, r.patient, *dimension))
                continue
            mask_info = _grid(mask)
            problem = _geometry_problem(img_info, mask_info, cfg.geometry_tolerance)
            if problem:
                mismatched.append((len(issues), r, col, mask_info))
                issues.append(ManifestIssue(r.row, col, r.patient, f"image/mask geometry mismatch: {problem}", "resample the mask onto its image grid or pair it with the right image"))
            arr = sitk.GetArrayViewFromImage(mask)
            values = np.unique(arr)
            image_like = _image_like_mask_issue(r, col, values, image, labels)
            if image_like is not None:
                if "swapped" in image_like.problem:
                    swapped.append(len(issues))
                issues.append(image_like)
                continue
            if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
                issues.append(ManifestIssue(r.row, col, r.patient, "mask has non-integer values", "save the mask as an integer label image"))
                continue
            foreign = sorted(int(v) for v in values if int(v) != 0 and int(v) not in labels)
            if foreign:
                issues.append(ManifestIssue(r.row, col, r.patient,
                                            f"mask label value(s) {_short_list(foreign, 60, brackets=True)} are not in the config labels {_short_list(sorted(labels), 40, brackets=True)}",
                                            "add them under 'labels' in the study config or relabel the mask"))
            present = [v for v in labels if np.any(arr == v)]
            if not present:
                issues.append(ManifestIssue(r.row, col, r.patient, f"mask is empty: no voxel has a configured label {_short_list(sorted(labels), 40, brackets=True)}", "segment the tumour or remove the row"))
                continue
            if np.all(arr != 0):
                issues.append(ManifestIssue(
                    r.row, col, r.patient,
                    "mask covers the whole image (no background voxel): a peritumoral ring and the tumour/background contrast are impossible",
                    "check the mask: export it as a label map with background 0 (an inverted or all-ones mask is a conversion error)"))
            extracted = extraction_labels.get(r.series)
            absent = sorted(v for v in extracted or () if not np.any(arr == v))
            if absent:
                found = sorted(int(v) for v in values if int(v) != 0)
                issues.append(ManifestIssue(
                    r.row, col, r.patient,
                    f"mask has no voxel with label {absent}, which the extraction reads for series '{r.series}' (pyradiomics setting 'label'); labels present: {_short_list(found, 40, brackets=True)}",
                    f"relabel the mask, or set extraction.series_settings.{r.series}.label to one of {_short_list(found, 30, brackets=True)}"))
            if content_checks:
                issues.extend(_small_mask_issues(r, col, arr, extracted if extracted is not None else present, cfg.qc.min_mask_voxels))
    _attribute_foreign_masks(issues, mismatched, image_grids, cfg.geometry_tolerance)
    swapped_rows = {issues[k].row for k in swapped}
    if len(swapped) > 1 and len(swapped) == len(df):
        # Every row swapped: the header names the two columns the wrong way round; one message says so.
        first = issues[swapped[0]]
        issues[:] = [i for k, i in enumerate(issues) if k not in set(swapped)]
        issues.append(ManifestIssue(None, "mask", None, f"columns 'image' and 'mask' appear swapped in all {len(swapped)} rows (row {first.row}: {first.problem.split('(', 1)[1]}",
                                    "swap the names of the two columns in the header line"))
    if content_checks:
        issues.extend(_same_content_issues(same_content, skip_rows=swapped_rows))


def validate_manifest(
    cfg: StudyConfig,
    manifest: pd.DataFrame | None = None,
    check_images: bool = True,
    hasher: Callable[[Path], str] = sha256_file,
) -> pd.DataFrame:
    """Validate the manifest against the config and the files on disk.

    Checks, reporting every problem at once: blank required values, unknown
    cohort or series (a name differing only by case is pointed out), patient
    ids that cannot name a file, missing files, duplicate patient/series, a
    patient in two cohorts, one image file in two rows or one mask file for
    two patients, sha256 mismatches, unreadable images/masks, 4D, 2D,
    single-slice or RGB images, image/mask geometry beyond tolerance (a mask
    on the grid of another patient's image is named as such), RTSTRUCTs
    or DICOM SEGs drawn on another patient's series (referenced series, frame of reference), columns 'image' and 'mask' swapped,
    empty, all-foreground or too small masks (``qc.min_mask_voxels``), label
    values not in the config and identical image content in two rows.

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
            if not getattr(r, col).strip():
                issues.append(ManifestIssue(r.row, col, r.patient.strip() or None, "value is empty", f"fill in '{col}'"))
    issues += _unknown_value_issues(df, "cohort", cfg.cohorts, "cohorts")
    issues += _unknown_value_issues(df, "series", cfg.series, "series")
    issues += _patient_id_issues(df)
    dup = df[df["patient"].str.strip().ne("") & df.duplicated(["patient", "series"], keep=False)]
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


def load_patient_table(cfg: StudyConfig, patients: list[str] | None = None, notes: list[ManifestIssue] | None = None,
                       supplied: Iterable[str] = ()) -> pd.DataFrame:
    """Read and validate the patient table (clinical variables and endpoints).

    Checks: the id column exists, is filled in and unique, every configured
    endpoint and clinical column exists, every manifest patient has a row,
    binary endpoints and event indicators are 0/1, times are non-negative
    numbers, continuous clinical variables hold numbers (empty = missing,
    imputed later; text such as ``63 y`` or ``unknown`` is an error); missing
    endpoint values are errors (nothing is silently dropped).

    Ids are read as text and compared exactly with the manifest (``007`` and
    ``7`` are different patients); a manifest patient whose id differs from
    a table id only by surrounding spaces, leading zeros / number format or
    case gets a message saying so. The file may be comma-, semicolon- or
    tab-separated UTF-8 (see :mod:`helpers.tables`).

    Parameters
    ----------
    cfg : StudyConfig
    patients : list of str, optional
        Patients of the manifest that must be present.
    notes : list, optional
        Receives warning-level findings: table rows without images in the
        manifest (listed, not analysed) and a non-comma delimiter.
    supplied : iterable of str
        Patients with supplied feature tables (analysed without images).

    Returns
    -------
    DataFrame
        Indexed by patient id.
    """
    path = cfg.path(cfg.patient_table)
    if not path.is_file():
        raise ManifestError(str(path), [ManifestIssue(None, None, None, "patient table not found", "create it or fix 'patient_table' in the study config")])
    pid = cfg.patient_id_column
    table, dialect = read_csv_table(path, text_columns=(pid,))
    _dialect_note(path, dialect, notes)
    issues: list[ManifestIssue] = []
    endpoint_sets = cfg.all_endpoints  # one per task of a study with 'tasks'
    rules = {ep.binary: ep.binary_from for ep in endpoint_sets if ep.binary_from is not None}  # derived column -> marker rule
    zero_one = list(dict.fromkeys(c for ep in endpoint_sets for c in (ep.binary, ep.event) if c))
    times = list(dict.fromkeys(ep.time for ep in endpoint_sets if ep.time))
    read = [rules[c].column if c in rules else c for c in zero_one]
    needed = list(dict.fromkeys([pid, *read, *times, *cfg.clinical_variables]))
    missing_cols = [c for c in needed if c not in table.columns]
    if missing_cols:
        raise ManifestError(str(path), [ManifestIssue(None, c, None, "column named in the study config is missing", f"add column '{c}' or fix the config") for c in missing_cols])
    marker_issues = [i for ep in endpoint_sets if ep.binary_from is not None for i in _derive_binary_endpoint(table, cfg, ep)]
    if marker_issues:
        raise ManifestError(str(path), marker_issues)
    survival_fitted = fits_outcome_models(cfg)
    for i, r in table.iterrows():
        row, patient = int(i) + 1, str(r[pid])
        if not patient.strip():
            issues.append(ManifestIssue(row, pid, None, "patient id is empty", "fill in the id or delete the row"))
            continue
        for col in zero_one:
            v, rule = r[col], rules.get(col)
            if pd.isna(v) and rule is not None:
                issues.append(ManifestIssue(row, rule.column, patient, f"{rule.column} is missing, so the derived endpoint '{col}' is too",
                                            f"fill in {rule.column} or remove the patient from the manifest"))
            elif pd.isna(v):
                issues.append(ManifestIssue(row, col, patient, "endpoint value is missing", "fill it in (0 or 1) or remove the patient from the manifest"))
            elif v not in (0, 1):
                issues.append(ManifestIssue(row, col, patient, f"value {_shown(v)} is not 0 or 1", "code the endpoint as 0/1"))
        for time in times:
            t = pd.to_numeric(pd.Series([r[time]]), errors="coerce").iloc[0]
            if pd.isna(t) or (isinstance(t, float) and math.isinf(t)):
                issues.append(ManifestIssue(row, time, patient, f"time {_shown(r[time])} is not a number", "give the follow-up time as a number"))
            elif t < 0:
                issues.append(ManifestIssue(row, time, patient, f"negative time {t}", "time to event must be >= 0; check the dates"))
            elif t == 0 and survival_fitted:
                # Cox partial likelihood and the IPCW metrics need a positive follow-up (an event at time 0 has no risk set before it).
                issues.append(ManifestIssue(row, time, patient, "follow-up time is 0",
                                            "time to event must be > 0 for the survival models: check the dates, or remove the patient"))
    issues += _continuous_text_issues(table, cfg, dialect)
    filled = table[table[pid].str.strip().ne("")]
    dups = filled[filled[pid].duplicated(keep=False)]
    for patient, grp in dups.groupby(pid):
        rows = [int(i) + 1 for i in grp.index]
        issues.append(ManifestIssue(rows[1], pid, patient, f"patient appears {len(rows)} times (rows {_short_list(rows, 40)})", "keep one row per patient"))
    if patients is not None:
        matched, id_issues = _table_match_issues(patients, list(filled[pid]), pid)
        issues += id_issues
        supplied = set(supplied)
        unimaged = sorted(set(filled[pid]) - set(patients) - matched - supplied)
        if supplied and notes is not None:
            note = without_features_note(cfg, table.set_index(pid).loc[unimaged] if unimaged else table.iloc[:0].set_index(pid), [])
            if note is not None:
                notes.append(note)
        elif unimaged and notes is not None:
            notes.append(ManifestIssue(None, pid, None, f"{len(unimaged)} patient(s) of the patient table have no image in the manifest and are not analysed: {_short_list(unimaged)}",
                                       "nothing to do if intended; otherwise add their images to the manifest"))
    if issues:
        raise ManifestError(str(path), issues)
    return table.set_index(pid)


def _derive_binary_endpoint(table: pd.DataFrame, cfg: StudyConfig, endpoints=None) -> list[ManifestIssue]:
    """Add the 0/1 column ``endpoints.binary`` derived from the marker of ``endpoints.binary_from`` (in place; ``endpoints``:
    one task's, default the study's).

    A value that is not a number is an issue (row, column, patient, fix); a
    missing marker value gives a missing endpoint, which the endpoint checks
    then report for the patients in the manifest.
    """
    endpoints = endpoints if endpoints is not None else cfg.endpoints
    rule, name, pid = endpoints.binary_from, endpoints.binary, cfg.patient_id_column
    if name in table.columns:
        return [ManifestIssue(None, name, None, f"column '{name}' exists but endpoints.binary_from derives it from '{rule.column}'",
                              f"rename endpoints.binary (e.g. '{rule.column}_high') or drop the column from the patient table")]
    values = pd.to_numeric(table[rule.column], errors="coerce")
    issues = [ManifestIssue(int(i) + 1, rule.column, str(table.at[i, pid]), f"value {_shown(table.at[i, rule.column])} is not a number",
                            f"give the {rule.column} value as a number (e.g. 35 for {rule.column} = 35{rule.unit}), or leave it empty")
              for i in table.index[values.isna() & table[rule.column].notna() & table[rule.column].astype(str).str.strip().ne("")]]
    positive = values >= rule.threshold if rule.operator == ">=" else values > rule.threshold
    table[name] = positive.astype(float).where(values.notna())
    return issues


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _id_hints(missing: list[str], table_ids: list[str]) -> dict[str, tuple[str, str] | None]:
    """For each manifest id absent from the table: (table id, how it differs) when it nearly matches one, else ``None``.

    Near matches, in this order: the same id but for surrounding spaces, the
    same number written differently (``7`` / ``007`` / ``7.0``), the same
    letters in another case.
    """
    stripped, numeric, lower = {}, {}, {}
    for t in table_ids:
        stripped.setdefault(t.strip(), t)
        if _NUMBER.fullmatch(t.strip()):
            numeric.setdefault(float(t), t)
        lower.setdefault(t.lower(), t)
    hints: dict[str, tuple[str, str] | None] = {}
    for p in missing:
        t = stripped.get(p.strip())
        if t is not None and t != p:
            hints[p] = (t, "only by surrounding spaces")
        elif _NUMBER.fullmatch(p) and float(p) in numeric:
            hints[p] = (numeric[float(p)], "only by leading zeros or number format (ids are compared as text)")
        elif p.lower() in lower:
            hints[p] = (lower[p.lower()], "only by upper/lower case")
        else:
            hints[p] = None
    return hints


def _table_match_issues(patients: list[str], table_ids: list[str], pid: str) -> tuple[set[str], list[ManifestIssue]]:
    """Manifest patients without a row in the patient table (ids compared exactly), with a hint for near matches.

    Returns the table ids that nearly match a manifest id (not listed again as
    unimaged) and the issues. A manifest id with surrounding spaces whose
    stripped form is in the table is left out: :func:`validate_manifest`
    reports it, with the same fix. More than 10 missing patients make one issue.
    """
    known = set(table_ids)
    absent = sorted(p for p in set(patients) - known if p.strip())
    spaced = {p.strip() for p in absent if p != p.strip() and p.strip() in known}
    missing = [p for p in absent if not (p != p.strip() and p.strip() in known)]
    hints = _id_hints(missing, table_ids)
    matched = spaced | {h[0] for h in hints.values() if h}
    fix_text = "write the id identically in both files (format the id column as text in the spreadsheet)"
    if len(missing) > 10:
        near = [p for p in missing if hints[p]]
        why = f"; {len(near)} of them differ from a table id {hints[near[0]][1]}, e.g. {_clip(near[0], 30)!r} vs {_clip(hints[near[0]][0], 30)!r}" if near else ""
        return matched, [ManifestIssue(None, pid, None, f"{len(missing)} patients of the manifest have no row in the patient table: {_short_list(missing, 80)}{why}",
                                       fix_text if near else "add their clinical/endpoint rows (ids are compared as text)")]
    issues = []
    for p in missing:
        hint = hints[p]
        if hint is None:
            issues.append(ManifestIssue(None, pid, p, "patient of the manifest has no row in the patient table", "add the patient's clinical/endpoint row"))
        else:
            fix = "remove the spaces in the patient table (ids are compared exactly)" if "spaces" in hint[1] else fix_text
            issues.append(ManifestIssue(None, pid, p, f"patient {_clip(hint[0], 40)!r} of the patient table differs from manifest patient {_clip(p, 40)!r} {hint[1]}", fix))
    return matched, issues


def _continuous_text_issues(table: pd.DataFrame, cfg: StudyConfig, dialect: CsvDialect) -> list[ManifestIssue]:
    """Values of continuous clinical variables that are not numbers ('63 y', 'unknown'), named by row and patient.

    Empty cells (and pandas' NA spellings such as ``NA``) are missing values,
    imputed later. More than 10 bad values in one column make one issue.
    """
    pid = cfg.patient_id_column
    issues = []
    for col in cfg.clinical.continuous:
        bad = []
        for i, v in table[col].items():
            if pd.isna(v) or (isinstance(v, str) and not v.strip()):
                continue
            number = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
            if pd.isna(number) or math.isinf(float(number)):
                bad.append((int(i) + 1, str(table.at[i, pid]), str(v)))
        if not bad:
            continue
        comma = any(re.fullmatch(r"[+-]?\d+,\d+", v.strip()) for _, _, v in bad)
        fix = (f"write decimal points ({bad[0][2].strip().replace(',', '.')}), or save the table semicolon-separated" if comma and dialect.delimiter == ","
               else f"write a number (leave the cell empty when unknown), or list '{col}' under clinical.categorical")
        if len(bad) > 10:
            shown = _short_list([f"{_clip(v, 20)!r} ({p})" for _, p, v in bad], 110)
            issues.append(ManifestIssue(None, col, None, f"clinical variable '{col}' is declared continuous but {len(bad)} rows hold text: {shown}", fix))
        else:
            issues += [ManifestIssue(row, col, p, f"clinical variable '{col}' is declared continuous but holds text {_clip(v, 30)!r}", fix) for row, p, v in bad]
    return issues


def load_study(
    cfg: StudyConfig,
    check_images: bool = True,
    hasher: Callable[[Path], str] = sha256_file,
    notes: list[ManifestIssue] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate manifest, patient table and config together; collect all problems first.

    Parameters are those of :func:`validate_manifest`. Beyond the manifest
    and the patient table, the study as a whole is checked: every cohort and
    every acquired series of the config has manifest rows (derived
    ``<series>_SR`` series are made by notebook 02), the configured steps
    have the endpoints they need (:func:`binary_endpoint_steps`), and when
    the study fits models on the outcome (:func:`fits_outcome_models`), a
    training cohort whose binary endpoint or event indicator has a single
    class is an error too (no model can be fitted; found here, before hours
    of extraction).

    Parameters
    ----------
    notes : list, optional
        Receives warning-level findings that do not stop the study: patient
        table rows without images (listed, not analysed), CSV files read as
        semicolon-/tab-separated. ``python -m helpers validate`` prints them.

    Returns
    -------
    (manifest, patients) : tuple of DataFrame
    """
    source = str(cfg.path(cfg.manifest)) if cfg.manifest is not None else None
    found: dict[str, list[ManifestIssue]] = {}

    def collect(exc: ManifestError) -> None:
        found.setdefault(exc.source, []).extend(exc.issues)

    raw = manifest = patients = None
    if source is None:
        image_steps = [s.name for s in cfg.steps if not _is_step(s, _TABLE_ONLY_STEPS, _TABLE_ONLY_NOTEBOOKS)]
        if image_steps:
            collect(ManifestError(str(cfg.path(cfg.config_file)), [ManifestIssue(
                None, "manifest", None, f"steps {image_steps} read images but the study has no 'manifest' (its features come from feature_tables)",
                f"add 'manifest:' with the images, or remove {_short_list(image_steps, 60)} from 'steps:'")]))
    else:
        try:
            raw = read_manifest(source, notes=notes)
        except ManifestError as exc:
            collect(exc)
    if raw is not None:
        try:
            manifest = validate_manifest(cfg, raw, check_images=check_images, hasher=hasher)
        except ManifestError as exc:
            collect(exc)
    tables, table_issues = read_feature_tables(cfg) if cfg.feature_tables else ([], {})
    for src, issues in table_issues.items():
        collect(ManifestError(src, issues))
    with_features = supplied_patients(tables)
    try:
        listed = ([] if source is None else None) if raw is None else sorted({p for p in raw["patient"] if p.strip()})
        patients = load_patient_table(cfg, listed, notes=notes, supplied=with_features)
    except ManifestError as exc:
        collect(exc)
    supplied_rows = pd.DataFrame(columns=["patient", "cohort", "series"])
    if tables and patients is not None:
        known = None if raw is None else raw.drop_duplicates("patient").set_index("patient")["cohort"]
        try:
            supplied = load_supplied_features(cfg, patients, known_cohort=known, tables=tables)
            supplied_rows = pd.DataFrame(
                [{"patient": p, "cohort": supplied.features.at[p, "cohort"], "series": s} for t in tables
                 for s in dict.fromkeys(b[0] for b in t.blocks) for p in t.features.index]).drop_duplicates(["patient", "series"])
        except ManifestError as exc:
            collect(exc)
    if raw is not None or (source is None and len(supplied_rows)):
        parts = [df for df in (raw[["patient", "cohort", "series"]] if raw is not None else None, supplied_rows) if df is not None and len(df)]
        where = "the manifest" if not tables else "the feature tables" if source is None else "the manifest or the feature tables"
        coverage = _coverage_issues(cfg, pd.concat(parts, ignore_index=True), where)
        if coverage:
            collect(ManifestError(source or ", ".join(str(cfg.path(t.path)) for t in cfg.feature_tables), coverage))
    endpoint_issues = _per_task(cfg, lambda v: _endpoint_step_issues(v) + _survival_step_issues(v))
    if endpoint_issues:
        collect(ManifestError(str(cfg.path(cfg.config_file)), endpoint_issues))
    if source is None:
        manifest = supplied_rows.sort_values(["patient", "series"]).reset_index(drop=True)
    if not found and fits_outcome_models(cfg):
        assigned = manifest if not len(supplied_rows) or source is None else pd.concat([manifest[["patient", "cohort"]], supplied_rows], ignore_index=True)
        issues = _per_task(cfg, lambda v: _training_class_issues(v, assigned, patients))
        if issues:
            collect(ManifestError(str(cfg.path(cfg.patient_table)), issues))
        else:
            horizon_issues = _per_task(cfg, lambda v: _horizon_issues(v, manifest, patients, notes) if fits_survival_models(v) else [])
            if horizon_issues:
                collect(ManifestError(str(cfg.path(cfg.config_file)), horizon_issues))
    if found:
        raise ManifestError(" and ".join(found), [i for issues in found.values() for i in issues])
    return manifest, patients


def _per_task(cfg: StudyConfig, check: Callable[[StudyConfig], list[ManifestIssue]]) -> list[ManifestIssue]:
    """``check`` run on each task's view of a study with ``tasks`` (each problem names its task), else on the study."""
    if not cfg.splits_into_tasks:
        return check(cfg)
    return [ManifestIssue(i.row, i.column, i.patient, f"task '{v.task}': {i.problem}", i.fix) for v in cfg.task_views() for i in check(v)]


def _coverage_issues(cfg: StudyConfig, df: pd.DataFrame, where: str = "the manifest") -> list[ManifestIssue]:
    """Cohorts and acquired series of the config without any manifest row (an empty cohort makes empty tables).

    Derived series (``<series>_SR`` of ``super_resolution``) are never in the
    manifest: notebook 02 makes their images.
    """
    issues = []
    for cohort in cfg.cohorts:
        if not df["cohort"].eq(cohort).any():
            role = cfg.cohorts[cohort].role
            issues.append(ManifestIssue(None, "cohort", None, f"{role} cohort '{cohort}' is declared in the config but has no row in {where}",
                                        f"assign patients to '{cohort}' in {where}, or remove it from 'cohorts:' in the config"))
    derived = {cfg.super_resolution.output_series} if cfg.super_resolution is not None else set()
    for series in cfg.series:
        if series not in derived and not df["series"].eq(series).any():
            issues.append(ManifestIssue(None, "series", None, f"series '{series}' is declared in the config but has no row in {where}",
                                        f"add its images (or a feature table naming it) to {where}, or remove '{series}' from 'series:' (and the sections naming it)"))
    return issues


#: Steps that fit models on the outcome (by step name or notebook file-name stem prefix).
_FITTING_STEPS = ("signature", "models")
_FITTING_NOTEBOOKS = ("04_signature", "05_models")


def fits_outcome_models(cfg: StudyConfig) -> bool:
    """True when a configured step fits on the outcome (the signature or model notebooks).

    A study running only QC/extraction steps may have a training cohort of
    one outcome class; a study that fits models may not.
    """
    return any(s.name in _FITTING_STEPS or Path(s.notebook).stem.startswith(_FITTING_NOTEBOOKS) for s in cfg.steps)


#: Steps that read only feature tables and model outputs, never the images (notebooks 04-07).
_TABLE_ONLY_STEPS = ("signature", "models", "statistics", "supplement")
_TABLE_ONLY_NOTEBOOKS = ("04_signature", "05_models", "06_statistics", "07_supplement")


def _is_step(step, names: tuple[str, ...], notebooks: tuple[str, ...]) -> bool:
    """True when a configured step has one of ``names`` or runs a notebook whose file name starts with one of ``notebooks``."""
    return step.name in names or Path(step.notebook).stem.startswith(notebooks)


def reads_images(cfg: StudyConfig) -> bool:
    """True when a configured step reads the images (QC, segmentation, extraction or any custom step).

    Checks of image content that only matter for such steps (identical image
    content in two rows, the minimum mask size) are skipped for a study of
    notebooks 04-07 only, whose features come as tables.
    """
    return any(not _is_step(s, _TABLE_ONLY_STEPS, _TABLE_ONLY_NOTEBOOKS) for s in cfg.steps)


def extracts_features(cfg: StudyConfig) -> bool:
    """True when the study extracts its radiomics features (a ``feature_extraction`` step or notebook 03)."""
    return any(_is_step(s, ("feature_extraction",), ("03_feature",)) for s in cfg.steps)


#: Steps that need a binary endpoint: the signature (LASSO on the label), the model grid and its statistics (AUC, DCA).
_BINARY_STEPS = ("signature", "models", "statistics")
_BINARY_NOTEBOOKS = ("04_signature", "05_models", "06_statistics")


def binary_endpoint_steps(cfg: StudyConfig) -> list[str]:
    """Names of the configured steps that cannot run without ``endpoints.binary``.

    Notebooks 04-06 (signature, models, statistics) when the study has no
    time-to-event endpoint either (a survival-only study runs them against
    (time, event)), and notebook 02 when a deep-feature extractor is
    fine-tuned on the label (``mode: finetune``).
    """
    out = [] if cfg.endpoints.time else [s.name for s in cfg.steps if _is_step(s, _BINARY_STEPS, _BINARY_NOTEBOOKS)]
    if any(getattr(d, "mode", None) == "finetune" for d in cfg.deep_features):
        out += [s.name for s in cfg.steps if _is_step(s, ("segmentation",), ("02_segmentation",)) and s.name not in out]
    return out


def _endpoint_step_issues(cfg: StudyConfig) -> list[ManifestIssue]:
    """Configured steps that need a binary endpoint when only a time-to-event endpoint (or none) is configured."""
    if cfg.endpoints.binary is not None:
        return []
    steps = binary_endpoint_steps(cfg)
    if not steps:
        return []
    only = " (only a time-to-event endpoint is configured)" if cfg.endpoints.time else ""
    return [ManifestIssue(None, None, None, f"steps {steps} need a binary endpoint but endpoints.binary is not set{only}",
                          f"set endpoints.binary to a 0/1 column of the patient table, or remove {_short_list(steps, 60)} from 'steps:'")]


def fits_survival_models(cfg: StudyConfig) -> bool:
    """True when the study has a time-to-event endpoint and a step fitting on the outcome (signature or models)."""
    return cfg.endpoints.time is not None and fits_outcome_models(cfg)


def _survival_step_issues(cfg: StudyConfig) -> list[ManifestIssue]:
    """Selection steps fitted against (time, event) that need a binary label (survival-only ``signature.steps``, or
    ``survival.signature_steps`` when the survival models use their own selection)."""
    if not fits_survival_models(cfg):
        return []
    if cfg.survival_only:
        key, steps = "signature.steps", cfg.signature.steps
    elif cfg.survival.features == "survival_signature":
        key, steps = "survival.signature_steps", cfg.survival.signature_steps
    else:
        return []
    bad = binary_only_steps(steps)
    if not bad:
        return []
    why = "the study's endpoint is time-to-event only (endpoints.binary is not set)" if cfg.survival_only else "they are fitted against (time, event)"
    return [ManifestIssue(None, key, None, f"{'; '.join(bad) if len(bad) <= 4 else _short_list(bad, 90)} need a binary label, but {why}",
                          "use survival steps: zscore, univariate_cox, correlation with relevance: order, cox_lasso")]


def _horizon_issues(cfg: StudyConfig, manifest: pd.DataFrame, patients: pd.DataFrame, notes: list[ManifestIssue] | None) -> list[ManifestIssue]:
    """``survival.horizons`` against the training follow-up: none estimable is an error, some beyond it a note.

    The time-dependent AUC at a horizon needs censoring weights from the training cohort, undefined at or after its
    last follow-up time; such horizons are reported as not estimable ('-') in every cohort.
    """
    train_ids = sorted(set(manifest.loc[manifest["cohort"].isin(cfg.training_cohorts), "patient"]))
    times = pd.to_numeric(patients[cfg.endpoints.time].reindex(train_ids), errors="coerce").dropna()
    if times.empty:
        return []
    last = float(times.max())
    beyond = [h for h in cfg.survival.horizons if h >= last]
    if not beyond:
        return []
    shown = ", ".join(f"{h:g}" for h in beyond)
    if len(beyond) == len(cfg.survival.horizons):
        return [ManifestIssue(None, "survival.horizons", None,
                              f"every horizon ({shown} {cfg.survival.time_unit}) is at or beyond the last training follow-up time ({last:g}): "
                              "no time-dependent AUC can be estimated", f"set survival.horizons to times below {last:g} {cfg.survival.time_unit}")]
    if notes is not None:
        notes.append(ManifestIssue(None, "survival.horizons", None,
                                   f"horizon(s) {shown} {cfg.survival.time_unit} are at or beyond the last training follow-up time ({last:g}): "
                                   "their time-dependent AUC is reported as not estimable ('-')", f"nothing to do if intended; otherwise lower them below {last:g}"))
    return []


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
                shown = _short_list(ids, 80)
                if col == cfg.endpoints.event and classes == [0]:
                    issues.append(ManifestIssue(
                        None, col, None, f"training cohort '{cohort}' has no event: all {len(values)} patients ({shown}) are censored ('{col}' = 0); "
                        "no survival model can be fitted without events",
                        f"check the coding of '{col}' (1 = event observed) and the cohort assignment, or add training patients with events"))
                    continue
                issues.append(ManifestIssue(
                    None, col, None,
                    f"training cohort '{cohort}' has a single class of '{col}': all {len(values)} patients ({shown}) are {classes[0]}; "
                    "no model can be fitted on one class",
                    f"add patients with '{col}' = {1 - classes[0]} to the training cohort, or check the coding of '{col}' and the cohort assignment"))
    issues += _validation_class_issues(cfg, manifest, patients)
    return issues or _fold_size_issues(cfg, manifest, patients)


def _cv_folds(cfg: StudyConfig) -> tuple[int, str]:
    """The largest number of stratified cross-validation folds the configured fitting asks for, and where it is set."""
    folds = [(cfg.models.cv, "models.cv")]
    selections = [("signature.steps", cfg.signature.steps)]
    if cfg.endpoints.time is not None and not cfg.survival_only and cfg.survival.features == "survival_signature":
        selections.append(("survival.signature_steps", cfg.survival.signature_steps))  # fitted too when both endpoints exist
    for key, steps in selections:
        for pos, step in enumerate(steps, start=1):
            if isinstance(step, dict) and step.get("step") in ("lasso", "cox_lasso"):
                cv = step.get("cv", 5)
                if isinstance(cv, int) and not isinstance(cv, bool):
                    folds.append((cv, f"{key} step {pos} ({step['step']}) cv"))
    return max(folds, key=lambda f: f[0])


def _fold_size_issues(cfg: StudyConfig, manifest: pd.DataFrame, patients: pd.DataFrame) -> list[ManifestIssue]:
    """Training patients of the rarer class fewer than the cross-validation folds (stratified folds need one per fold).

    Found here, before extraction, instead of in the signature's LASSO after it (the message names the counts and the
    settings to change).
    """
    ids = sorted(set(manifest.loc[manifest["cohort"].isin(cfg.training_cohorts), "patient"]))
    folds, where = _cv_folds(cfg)
    issues = []
    for col in (cfg.endpoints.binary, cfg.endpoints.event):
        if col is None or col not in patients.columns:
            continue
        values = pd.to_numeric(patients[col].reindex(ids), errors="coerce").dropna().astype(int)
        counts = values.value_counts()
        if len(counts) < 2 or int(counts.min()) >= folds:
            continue
        rare = int(counts.idxmin())
        what = "events" if col == cfg.endpoints.event and rare == 1 else f"patients with '{col}' = {rare}"
        issues.append(ManifestIssue(
            None, col, None,
            f"the training cohort{'s' if len(cfg.training_cohorts) > 1 else ''} ({len(values)} patients) {'have' if len(cfg.training_cohorts) > 1 else 'has'} "
            f"{int(counts.min())} {what}: {folds}-fold stratified cross-validation ({where}) needs at least {folds}",
            f"add training patients, or lower {where} to {int(counts.min())}" if int(counts.min()) >= 2
            else f"add training {what} (stratified cross-validation needs at least 2 of each class)"))
    return issues


def _validation_class_issues(cfg: StudyConfig, manifest: pd.DataFrame, patients: pd.DataFrame) -> list[ManifestIssue]:
    """A validation cohort that choices are made on (``models.final_selection``/``threshold_from: validation``) needs
    both classes of the binary endpoint: an AUC or a Youden threshold is undefined on one class."""
    m = cfg.models
    col = cfg.endpoints.binary
    if "validation" not in (m.final_selection, m.threshold_from) or col is None or col not in patients.columns:
        return []
    issues = []
    for cohort in cfg.validation_cohorts:
        ids = sorted(set(manifest.loc[manifest["cohort"] == cohort, "patient"]))
        classes = sorted(set(pd.to_numeric(patients[col].reindex(ids), errors="coerce").dropna().astype(int)))
        if ids and len(classes) < 2:
            issues.append(ManifestIssue(
                None, col, None,
                f"validation cohort '{cohort}' has a single class of '{col}' ({classes[0] if classes else 'none'}) but the final model is "
                f"chosen on it (models.final_selection / threshold_from = validation): its AUC and Youden threshold are undefined",
                f"add patients of both classes to '{cohort}', or set models.final_selection: configured and models.threshold_from: training"))
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
