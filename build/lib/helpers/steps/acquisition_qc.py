"""Step ``acquisition_qc`` (notebook 01, per cohort): cohort counts, acquisition parameters, image/mask QC, montages.

Acquisition values come from DICOM headers, the header CSV or manifest columns through an allow-list of acquisition
attributes (no identifying value is read); each image/mask pair is checked for geometry, volume, connected
components, border contact and intensity; values far from the series median are flagged.
"""

from __future__ import annotations

import pandas as pd

from helpers.data.headers import acquisition_records, acquisition_table, cohort_counts
from helpers.figures.images import cohort_montages
from helpers.imaging.qc import image_mask_qc
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig

__all__ = ["cohort_rows", "write_acquisition_table", "write_cohort_counts", "write_image_mask_qc", "write_montages"]


def cohort_rows(manifest: pd.DataFrame, cohort: str) -> pd.DataFrame:
    """The manifest rows of one cohort."""
    return manifest[manifest["cohort"] == cohort]


def write_cohort_counts(manifest: pd.DataFrame, patients: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> pd.DataFrame:
    """``tables/cohort_split_counts``: patients per cohort and outcome class, scans per series (CLEAR item 15)."""
    counts = cohort_counts(manifest, patients, cfg)
    report.table(counts, "cohort_split_counts", per_cohort=False)
    return counts


def write_acquisition_table(rows: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> pd.DataFrame:
    """``tables/acquisition_parameters_<cohort>``: acquisition parameters per protocol group (Table S1)."""
    table = acquisition_table(acquisition_records(rows, cfg))
    report.table(table, "acquisition_parameters")
    return table


def write_image_mask_qc(rows: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> pd.DataFrame:
    """``tables/image_mask_qc_<cohort>``: one row per scan with QC values and robust-z outlier flags (flagged first
    in the returned view)."""
    qc = image_mask_qc(rows, cfg)
    report.table(qc, "image_mask_qc")
    return qc.sort_values("qc_flags", ascending=False, key=lambda s: s.str.len())


def write_montages(rows: pd.DataFrame, cfg: StudyConfig, cohort: str, report: ReportWriter) -> list[str]:
    """``figures/montage_<series>_<cohort>``: the mid-tumour slice with the contour of every patient, per series
    (written one page at a time, so memory stays flat)."""
    written = []
    for name, fig in cohort_montages(rows, cfg, cohort):
        written.append(str(report.figure(fig, name)))
    return written
