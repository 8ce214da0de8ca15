"""Bridge to nnU-Net v2: export a cohort as a raw dataset, import its predictions back.

nnU-Net is the reference self-configuring U-Net; training it needs a GPU. It
stays an optional tool, NOT a dependency of this package (a plain
``pip install nnunetv2`` pulls a CUDA build of torch). The route:

1. here, on the study machine: :func:`export_nnunet_dataset` writes
   ``<out_root>/DatasetXXX_Name/`` in the raw-dataset layout and the case-id
   mapping table next to (never inside) that folder;
2. on a GPU machine, copy only the ``DatasetXXX_Name`` folder, then::

       pip install nnunetv2
       export nnUNet_raw=/data/nnUNet_raw            # holds DatasetXXX_Name/
       export nnUNet_preprocessed=/data/nnUNet_preprocessed
       export nnUNet_results=/data/nnUNet_results
       nnUNetv2_plan_and_preprocess -d XXX --verify_dataset_integrity
       nnUNetv2_train XXX 3d_fullres 0               # ... and folds 1-4 (5-fold CV)
       nnUNetv2_find_best_configuration XXX -c 3d_fullres
       nnUNetv2_predict -i $nnUNet_raw/DatasetXXX_Name/imagesTs -o predictions -d XXX -c 3d_fullres -f 0 1 2 3 4

3. back here: :func:`import_nnunet_predictions` matches the predicted files to
   patients by case id, checks each against the original image's grid and
   writes ``<patient>.nii.gz`` masks with the study's label values, ready
   for :func:`helpers.segmentation.evaluation_table`.

Layout written (nnU-Net v2 ``dataset_format.md``)::

    DatasetXXX_Name/
        dataset.json                  channel_names, labels (background 0), numTraining, file_ending
        imagesTr/<case>_0000.nii.gz   one file per channel, 4-digit channel suffix
        labelsTr/<case>.nii.gz        consecutive integer labels 0..K
        imagesTs/<case>_0000.nii.gz

Case ids are ``<prefix>_<number>`` (e.g. ``case_001``): no patient id, name,
date or DICOM UID reaches the dataset folder, and the image headers are
written without metadata (NIfTI ``descrip`` notes could carry names). The
mapping patient -> case id stays with the study.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from helpers.errors import InputDataError
from helpers.imaging.deep.segmentation import geometry_difference
from helpers.imaging.io import read_image, read_image_info, read_mask

__all__ = [
    "NnUNetExport",
    "nnunet_dataset_folder",
    "nnunet_label_map",
    "nnunet_cases_from_manifest",
    "export_nnunet_dataset",
    "read_case_mapping",
    "import_nnunet_predictions",
]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAPPING_COLUMNS = ["patient", "case_id", "split", "cohort", "dataset"]


@dataclass(frozen=True)
class NnUNetExport:
    """What :func:`export_nnunet_dataset` wrote.

    Attributes
    ----------
    dataset_dir : the ``DatasetXXX_Name`` folder (the only thing to copy to the GPU machine).
    dataset_json : content of its ``dataset.json``.
    mapping : patient -> case id table (``patient``, ``case_id``, ``split``, ``cohort``, ``dataset``).
    mapping_csv : where the mapping was written (outside ``dataset_dir``).
    """

    dataset_dir: Path
    dataset_json: dict
    mapping: pd.DataFrame
    mapping_csv: Path


def nnunet_dataset_folder(dataset_id: int, name: str) -> str:
    """``DatasetXXX_Name``: nnU-Net's folder name (3-digit id 1-999, name of letters, digits, ``_`` or ``-``)."""
    if not 1 <= int(dataset_id) <= 999:
        raise InputDataError(f"nnU-Net dataset id must be 1-999 (got {dataset_id})")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise InputDataError(f"nnU-Net dataset name {name!r}: use letters, digits, '_' or '-' only")
    return f"Dataset{int(dataset_id):03d}_{name}"


def nnunet_label_map(labels: Mapping[str, int]) -> dict[int, int]:
    """Study label value -> nnU-Net label (nnU-Net needs consecutive integers: 1..K by increasing study value)."""
    if not labels:
        raise InputDataError("list at least one label")
    if "background" in labels:
        raise InputDataError("'background' is nnU-Net's name for label 0; rename that study label")
    values = sorted(int(v) for v in labels.values())
    if values[0] <= 0 or len(set(values)) != len(values):
        raise InputDataError(f"study labels must be distinct positive integers (got {dict(labels)})")
    return {v: i for i, v in enumerate(values, start=1)}


def _strip(img: sitk.Image) -> sitk.Image:
    # Header notes (NIfTI descrip, ITK_FileNotes) survive a read/write round trip and may hold names: drop them.
    for key in img.GetMetaDataKeys():
        img.EraseMetaData(key)
    return img


def _check_patient_id(patient: str) -> str:
    if not _SAFE_NAME.fullmatch(patient):
        raise InputDataError(f"patient id {patient!r} cannot name a file; use letters, digits, '.', '_' or '-'")
    return patient


def nnunet_cases_from_manifest(
    manifest: pd.DataFrame,
    channels: Sequence[str],
    splits: Mapping[str, str],
) -> pd.DataFrame:
    """Cases table for :func:`export_nnunet_dataset` from the study manifest (one row per patient and series).

    Parameters
    ----------
    manifest : DataFrame
        With ``patient``, ``cohort``, ``series``, ``image`` and ``mask``
        (resolved paths, e.g. from :func:`helpers.manifest.with_resolved_paths`).
    channels : sequence of str
        Series used as channels, in channel order; the first one's mask is the label.
    splits : mapping cohort -> ``"train"`` or ``"test"``
        Cohorts not listed are left out.

    Returns
    -------
    pandas.DataFrame
        ``patient``, ``cohort``, ``split``, one column per channel (image
        path) and ``mask``; patients lacking a channel raise.
    """
    bad = {c: s for c, s in splits.items() if s not in ("train", "test")}
    if bad:
        raise InputDataError(f"splits must be 'train' or 'test': {bad}")
    df = manifest[manifest["cohort"].isin(list(splits)) & manifest["series"].isin(list(channels))]
    rows = []
    for patient, sub in df.groupby("patient", sort=True):
        by_series = {r.series: r for r in sub.itertuples(index=False)}
        missing = [c for c in channels if c not in by_series]
        if missing:
            raise InputDataError(f"patient {patient}: no manifest row for channel series {missing}")
        first = by_series[channels[0]]
        row = {"patient": str(patient), "cohort": first.cohort, "split": splits[first.cohort]}
        row.update({c: by_series[c].image for c in channels})
        row["mask"] = getattr(first, "mask", None)
        rows.append(row)
    return pd.DataFrame(rows, columns=["patient", "cohort", "split", *channels, "mask"])


def export_nnunet_dataset(
    cases: pd.DataFrame,
    channels: Sequence[str],
    labels: Mapping[str, int],
    out_root: str | Path,
    dataset_id: int,
    dataset_name: str,
    channel_names: Mapping[str, str] | None = None,
    mapping_csv: str | Path | None = None,
    case_prefix: str = "case",
    description: str = "",
    overwrite: bool = False,
    spacing_rtol: float = 1e-3,
    origin_mm: float = 0.5,
    direction_atol: float = 1e-4,
) -> NnUNetExport:
    """Write a cohort in nnU-Net v2's raw-dataset layout.

    Parameters
    ----------
    cases : DataFrame
        ``patient``, ``split`` (``train``/``test``), one column per channel
        (image path or DICOM folder), ``mask`` (required for ``train`` rows;
        a label file, RTSTRUCT or DICOM SEG) and optionally ``cohort`` and
        ``mask_roi`` (the RTSTRUCT structure or SEG segment).
    channels : sequence of str
        Columns of ``cases`` holding the channels, in channel order
        (``_0000``, ``_0001``...). All channels of a case must share the
        first channel's grid.
    labels : mapping name -> study label value
        Written as consecutive nnU-Net labels (see :func:`nnunet_label_map`).
    out_root : str or Path
        nnU-Net raw folder receiving ``DatasetXXX_Name``.
    dataset_id, dataset_name : int, str
    channel_names : mapping channel column -> name for ``dataset.json``
        Default: the column name. nnU-Net normalises a channel named exactly
        ``CT`` with its CT scheme (foreground percentiles); other names are
        z-scored per image.
    mapping_csv : str or Path, optional
        Where the patient -> case id table goes; default
        ``<out_root>/DatasetXXX_Name_case_ids.csv``. Must not be inside the
        dataset folder (which may leave the study machine).
    case_prefix : str
        Case ids are ``<case_prefix>_<number>``, numbered from 1: training
        cases first, each split in patient-id order.
    description : str
        ``description`` of ``dataset.json``.
    overwrite : bool
        Replace an existing export of this dataset (its ``imagesTr``,
        ``labelsTr``, ``imagesTs`` and ``dataset.json``; other files in the
        folder are kept); otherwise an existing folder is an error. The
        export is written to a scratch folder first, so a failure leaves the
        previous export untouched.
    spacing_rtol, origin_mm, direction_atol : float
        Grid tolerances between channels and mask (the study's
        ``geometry_tolerance``); within them, channels and mask are written
        with the first channel's exact geometry, as nnU-Net expects.

    Returns
    -------
    NnUNetExport

    Raises
    ------
    InputDataError
        Duplicate patients, unknown splits, a training case without mask,
        grids that differ beyond tolerance, mask values that are not labels,
        an existing dataset folder without ``overwrite``.
    """
    channels = list(channels)
    if not channels:
        raise InputDataError("give at least one channel column")
    need = ["patient", "split", *channels]
    missing_cols = [c for c in need if c not in cases.columns]
    if missing_cols:
        raise InputDataError(f"cases table lacks columns {missing_cols}")
    if not _SAFE_NAME.fullmatch(case_prefix):
        raise InputDataError(f"case_prefix {case_prefix!r}: use letters, digits, '.', '_' or '-'")
    patients = cases["patient"].astype(str)
    dupes = sorted(patients[patients.duplicated()].unique())
    if dupes:
        raise InputDataError(f"patients listed twice: {dupes}")
    bad_split = sorted(set(cases["split"]) - {"train", "test"})
    if bad_split:
        raise InputDataError(f"split values {bad_split}: use 'train' or 'test'")
    label_map = nnunet_label_map(labels)
    names = {c: (channel_names or {}).get(c, c) for c in channels}

    out_root = Path(out_root)
    folder = nnunet_dataset_folder(dataset_id, dataset_name)
    dataset_dir = out_root / folder
    mapping_csv = Path(mapping_csv) if mapping_csv is not None else out_root / f"{folder}_case_ids.csv"
    if dataset_dir.resolve() in mapping_csv.resolve().parents:
        raise InputDataError(f"mapping_csv {mapping_csv} is inside {dataset_dir}: keep the patient mapping outside the dataset folder")
    if dataset_dir.exists() and any(dataset_dir.iterdir()) and not overwrite:
        raise InputDataError(f"{dataset_dir} exists; pass overwrite=True to replace it or choose another dataset id")
    # Written into a scratch folder and moved in at the end: a failed export leaves no half-written dataset,
    # and an overwrite leaves no stale case of the previous export.
    staging = out_root / f".{folder}.incomplete"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        dataset_json, ordered = _write_dataset(
            cases, channels, labels, label_map, names, staging, dataset_name, case_prefix, description,
            (spacing_rtol, origin_mm, direction_atol),
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for part in ("imagesTr", "labelsTr", "imagesTs", "dataset.json"):
        old = dataset_dir / part
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        (staging / part).rename(old)
    staging.rmdir()
    mapping = pd.DataFrame({
        "patient": ordered["patient"],
        "case_id": ordered["case_id"],
        "split": ordered["split"],
        "cohort": ordered["cohort"] if "cohort" in ordered.columns else "",
        "dataset": folder,
    })[_MAPPING_COLUMNS]
    mapping_csv.parent.mkdir(parents=True, exist_ok=True)
    mapping.to_csv(mapping_csv, index=False)
    return NnUNetExport(dataset_dir=dataset_dir, dataset_json=dataset_json, mapping=mapping, mapping_csv=mapping_csv)


def _write_dataset(
    cases: pd.DataFrame,
    channels: list[str],
    labels: Mapping[str, int],
    label_map: dict[int, int],
    names: dict[str, str],
    dataset_dir: Path,
    dataset_name: str,
    case_prefix: str,
    description: str,
    tolerances: tuple[float, float, float],
) -> tuple[dict, pd.DataFrame]:
    """Write images, labels and dataset.json under ``dataset_dir``; return dataset.json and the cases with ids."""
    ordered = pd.concat(
        [cases[cases["split"] == s].assign(patient=lambda d: d["patient"].astype(str)).sort_values("patient") for s in ("train", "test")],
        ignore_index=True,
    )
    width = max(3, len(str(len(ordered))))
    ordered["case_id"] = [f"{case_prefix}_{i:0{width}d}" for i in range(1, len(ordered) + 1)]
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (dataset_dir / sub).mkdir(parents=True, exist_ok=True)
    # Records, not itertuples: channel columns need not be valid Python identifiers.
    for row in ordered.to_dict("records"):
        patient, case_id, train = row["patient"], row["case_id"], row["split"] == "train"
        images_dir = dataset_dir / ("imagesTr" if train else "imagesTs")
        first = None
        for k, column in enumerate(channels):
            img = _strip(read_image(row[column]))
            components = img.GetNumberOfComponentsPerPixel()
            if components != 1:
                raise InputDataError(f"patient {patient}: channel {column} has {components} components; write one channel per file")
            if first is None:
                first = img
            else:
                diff = geometry_difference(first, img, *tolerances)
                if diff is not None:
                    raise InputDataError(
                        f"patient {patient}: channel {column} is not on the grid of channel {channels[0]} ({diff}); "
                        "nnU-Net needs co-registered channels on one grid: resample it first"
                    )
                img.CopyInformation(first)
            sitk.WriteImage(img, str(images_dir / f"{case_id}_{k:04d}.nii.gz"), True)
        if not train:
            continue
        mask_path = row.get("mask")
        if mask_path is None or (not isinstance(mask_path, str | Path) and pd.isna(mask_path)) or str(mask_path) == "":
            raise InputDataError(f"patient {patient}: training case without mask")
        roi = row.get("mask_roi")
        roi = None if roi is None or (not isinstance(roi, str) and pd.isna(roi)) or not str(roi).strip() else str(roi).strip()
        mask = read_mask(mask_path, reference=first, roi_name=roi)  # an RTSTRUCT structure or SEG segment
        diff = geometry_difference(first, mask, *tolerances)
        if diff is not None:
            raise InputDataError(f"patient {patient}: mask is not on the image grid ({diff})")
        arr = sitk.GetArrayFromImage(mask)
        values = set(np.unique(arr).tolist())
        unknown = sorted(values - {0, *label_map})
        if unknown:
            raise InputDataError(f"patient {patient}: mask values {unknown} are not study labels {dict(labels)}")
        out = np.zeros(arr.shape, dtype=np.uint8 if len(label_map) <= 255 else np.uint16)
        for study_value, nn_value in label_map.items():
            out[arr == study_value] = nn_value
        seg = sitk.GetImageFromArray(out)
        seg.CopyInformation(first)
        sitk.WriteImage(seg, str(dataset_dir / "labelsTr" / f"{case_id}.nii.gz"), True)

    by_value = {int(v): k for k, v in labels.items()}
    dataset_json = {
        "channel_names": {str(k): names[c] for k, c in enumerate(channels)},
        "labels": {"background": 0, **{by_value[v]: n for v, n in label_map.items()}},
        "numTraining": int((ordered["split"] == "train").sum()),
        "file_ending": ".nii.gz",
        "name": dataset_name,
        "description": description,
        "overwrite_image_reader_writer": "SimpleITKIO",
    }
    (dataset_dir / "dataset.json").write_text(json.dumps(dataset_json, indent=2), encoding="utf-8")
    return dataset_json, ordered


def read_case_mapping(path: str | Path) -> pd.DataFrame:
    """Read a mapping table written by :func:`export_nnunet_dataset` (ids kept as text)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("patient", "case_id") if c not in df.columns]
    if missing:
        raise InputDataError(f"{path}: mapping table lacks columns {missing}")
    return df


def _reference_from_info(info: Mapping) -> sitk.Image:
    ref = sitk.Image([int(v) for v in info["size"]], sitk.sitkUInt8)
    ref.SetSpacing(info["spacing"])
    ref.SetOrigin(info["origin"])
    ref.SetDirection(info["direction"])
    return ref


def import_nnunet_predictions(
    prediction_dir: str | Path,
    mapping: pd.DataFrame | str | Path,
    images: Mapping[str, str | Path],
    labels: Mapping[str, int],
    out_dir: str | Path,
    file_ending: str = ".nii.gz",
    spacing_rtol: float = 1e-3,
    origin_mm: float = 0.5,
    direction_atol: float = 1e-4,
) -> list[Path]:
    """Write nnU-Net's predictions as study masks named by patient.

    Parameters
    ----------
    prediction_dir : str or Path
        Output folder of ``nnUNetv2_predict`` (``<case_id><file_ending>``;
        other files there, e.g. ``plans.json`` or ``.npz`` probabilities, are ignored).
    mapping : DataFrame or path of the mapping CSV
        Patient -> case id table of the export.
    images : mapping patient -> original image path
        The patients to import; each prediction is checked against this
        image's grid and written with its exact geometry.
    labels : mapping name -> study label value
        As exported: nnU-Net labels 1..K are mapped back to these values.
    out_dir : str or Path
        Receives ``<patient>.nii.gz``.
    file_ending : str
        ``file_ending`` of the dataset.
    spacing_rtol, origin_mm, direction_atol : float
        Grid tolerances (the study's ``geometry_tolerance``).

    Returns
    -------
    list of Path
        Written masks, in the order of ``images``.

    Raises
    ------
    InputDataError
        A prediction file whose case id is not in the mapping (another
        dataset's output?), a patient without case id or prediction, a grid
        that differs from the original image, or label values beyond K.
    """
    table = read_case_mapping(mapping) if isinstance(mapping, str | Path) else mapping.astype({"patient": str, "case_id": str})
    dupes = sorted(table["case_id"][table["case_id"].duplicated()].unique())
    if dupes:
        raise InputDataError(f"mapping lists case ids twice: {dupes}")
    case_of = dict(zip(table["patient"], table["case_id"], strict=True))
    known = set(table["case_id"])
    prediction_dir = Path(prediction_dir)
    files = {p.name[: -len(file_ending)]: p for p in sorted(prediction_dir.glob(f"*{file_ending}"))}
    unknown = sorted(set(files) - known)
    if unknown:
        raise InputDataError(f"{prediction_dir}: predictions for case ids {unknown} that are not in the mapping; wrong mapping table?")
    no_case = [p for p in images if str(p) not in case_of]
    if no_case:
        raise InputDataError(f"patients {no_case} are not in the mapping table")
    missing = [f"{p} ({case_of[str(p)]})" for p in images if case_of[str(p)] not in files]
    if missing:
        raise InputDataError(f"{prediction_dir}: no prediction for {missing}")
    back = {nn: study for study, nn in nnunet_label_map(labels).items()}
    lut = np.zeros(max(back) + 1, dtype=np.uint8 if max(back.values()) <= 255 else np.uint16)
    for nn, study in back.items():
        lut[nn] = study
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for patient, image_path in images.items():
        patient = _check_patient_id(str(patient))
        case_id = case_of[patient]
        pred = read_image(files[case_id])
        reference = _reference_from_info(read_image_info(image_path))
        diff = geometry_difference(reference, pred, spacing_rtol, origin_mm, direction_atol)
        if diff is not None:
            raise InputDataError(f"patient {patient} ({case_id}): the prediction is not on the original image grid ({diff})")
        arr = sitk.GetArrayFromImage(pred)
        values = np.unique(arr)
        bad = sorted(int(v) for v in values if v < 0 or v > max(back) or v != int(v))
        if bad:
            raise InputDataError(f"patient {patient} ({case_id}): predicted labels {bad} are not 0..{max(back)}")
        out = sitk.GetImageFromArray(lut[arr.astype(np.int64)])
        out.CopyInformation(reference)
        target = out_dir / f"{patient}.nii.gz"
        sitk.WriteImage(out, str(target), True)
        written.append(target)
    return written
