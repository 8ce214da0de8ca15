"""The embedded real cohort (soft-tissue sarcoma, CC BY 3.0) and its manifest rule.

``data_manifest.csv`` at the repository root is exactly what
:func:`sts_manifest` returns (a test checks it), so the cohort assignment is
reproducible from the rule alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.data.manifest import cohort_by_vendor
from helpers.imaging.io import sha256_file

STS_SERIES = ("CT", "PET", "MR_T1")

#: Documented cohort rule of the default study (also stated in study.yaml and the README).
STS_COHORT_RULE = (
    "Vendor-level external test: patients whose T1 MR was acquired on a GE scanner form the "
    "training cohort; patients scanned on any other MR vendor (Siemens, Philips, Varian-exported) "
    "form the external test cohort. Fixed before any modelling, from DICOM Manufacturer only."
)


def sts_manifest(data_dir: str | Path, relative_to: str | Path) -> pd.DataFrame:
    """Build the manifest of the embedded STS cohort.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding ``STS_xxx/<series>_image.nii.gz`` and
        ``dicom_acquisition_headers.csv``.
    relative_to : str or Path
        Folder the manifest paths are written relative to (the manifest's own folder).

    Returns
    -------
    DataFrame
        One row per patient and series, sorted by patient then series.
    """
    data_dir, relative_to = Path(data_dir), Path(relative_to)
    headers = pd.read_csv(data_dir / "dicom_acquisition_headers.csv", dtype=str)
    cohort_of = cohort_by_vendor(headers, series="MR_T1", train_vendors=("GE",))
    rows = []
    for _, h in headers.sort_values(["patient", "series"], key=lambda s: s.map(_series_order) if s.name == "series" else s).iterrows():
        patient, series = h["patient"], h["series"]
        folder = (data_dir / patient).relative_to(relative_to) if (data_dir / patient).is_relative_to(relative_to) else data_dir / patient
        rows.append({
            "patient": patient,
            "cohort": cohort_of[patient],
            "centre": "",
            "scanner": f"{h['Manufacturer'].split(' / ')[0]} {h['ManufacturerModelName']}",
            "series": series,
            "image": (folder / f"{series}_image.nii.gz").as_posix(),
            "mask": (folder / f"{series}_mask.nii.gz").as_posix(),
            "image_sha256": sha256_file(data_dir / patient / f"{series}_image.nii.gz"),
            "mask_sha256": sha256_file(data_dir / patient / f"{series}_mask.nii.gz"),
        })
    return pd.DataFrame(rows)


def _series_order(name: str) -> int:
    return STS_SERIES.index(name) if name in STS_SERIES else len(STS_SERIES)
