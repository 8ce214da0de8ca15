"""Cohort-level habitats for a study: fit on training patients, apply to all.

K-means habitats (:class:`helpers.rois.HabitatClusterer`) are fitted on the
pooled voxels of the TRAINING cohort(s) only, K chosen by the
Calinski-Harabasz index; the fitted centroids are then applied unchanged to
every patient. Each patient's habitat label map is written as NIfTI so the
extraction can use habitat ROIs. The intratumoral-heterogeneity (ITH) score
is computed per patient for a sweep of fixed K (one clusterer per K, also
fitted on training only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from helpers.features.extraction import ExtractionResult, _code_hash, _versions, plan_units, run_extraction
from helpers.features.ibsi import CT_PHANTOM_CONFIGS, CT_PHANTOM_DIR, PHANTOM_DIR
from helpers.features.ibsi_compliance import ibsi_compliance
from helpers.features.pyradiomics import preset_name
from helpers.imaging.habitats import HabitatClusterer, habitat_fractions, habitat_map, ith_score, voxel_matrix
from helpers.imaging.io import read_image, read_mask
from helpers.imaging.rois import tumour_mask
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig

__all__ = ["CohortHabitats", "cohort_habitats", "extraction_provenance", "run_feature_extraction", "write_extraction_outputs",
           "write_habitat_outputs", "write_ibsi_compliance"]


@dataclass
class CohortHabitats:
    """Fitted habitats of a study and their per-patient results.

    Attributes
    ----------
    clusterer : HabitatClusterer
        Fitted on training patients (``k_``, ``ch_scores_``, centroids).
    map_paths : dict
        patient -> absolute path of the habitat label map (NIfTI, labels 1..K).
    fractions : DataFrame
        ``patient``, ``cohort`` and the fraction of tumour voxels per habitat.
    ith : DataFrame
        ``patient``, ``cohort``, ``k``, ``ith_score``: the cluster-number sweep.
    """

    clusterer: HabitatClusterer
    map_paths: dict[str, str]
    fractions: pd.DataFrame
    ith: pd.DataFrame

    @property
    def k(self) -> int:
        return int(self.clusterer.k_)

    def fractions_by_cohort(self) -> pd.DataFrame:
        """Mean (SD) habitat volume fraction per cohort, in percent."""
        cols = [c for c in self.fractions.columns if c.startswith("habitat_")]
        rows = []
        for cohort, grp in self.fractions.groupby("cohort", sort=False):
            row = {"cohort": cohort, "patients": len(grp)}
            for c in cols:
                row[c] = f"{100 * grp[c].mean():.1f} ({100 * grp[c].std(ddof=1):.1f})" if len(grp) > 1 else f"{100 * grp[c].mean():.1f}"
            rows.append(row)
        return pd.DataFrame(rows)

    def ith_wide(self) -> pd.DataFrame:
        """ITH score per patient (rows) and K (columns ``ith_k2`` ...)."""
        wide = self.ith.pivot(index=["patient", "cohort"], columns="k", values="ith_score")
        wide.columns = [f"ith_k{k}" for k in wide.columns]
        return wide.reset_index()


def _patient_inputs(manifest: pd.DataFrame, patient: str, series: tuple[str, ...], tolerance=None) -> tuple[list[sitk.Image], sitk.Image]:
    rows = manifest[manifest["patient"] == patient].set_index("series")
    missing = [s for s in series if s not in rows.index]
    if missing:
        raise ValueError(f"patient {patient} has no {missing} image; habitats need every series in extraction.habitats.series")
    images = [read_image(rows.loc[s, "image_path"]) for s in series]
    first = rows.loc[series[0]]
    mask = read_mask(first["mask_path"], reference=images[0], roi_name=first["mask_roi"] or None, tolerance=tolerance)
    return images, tumour_mask(mask)


def cohort_habitats(manifest: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> CohortHabitats | None:
    """Fit habitats on the training cohort and write every patient's habitat map.

    Parameters
    ----------
    manifest : DataFrame
        The validated manifest (all cohorts).
    cfg : StudyConfig
        ``extraction.habitats`` configures the series, K range and sampling;
        ``seed`` seeds the clustering.
    report : ReportWriter
        Writes ``rois/habitats/<patient>.nii.gz`` and records them.

    Returns
    -------
    CohortHabitats or None
        None when habitats are not configured.
    """
    hc = cfg.extraction.habitats
    if hc is None:
        return None
    training = set(cfg.training_cohorts)
    patients = manifest.drop_duplicates("patient")[["patient", "cohort"]].sort_values("patient")
    train_ids = [p for p, c in patients.itertuples(index=False) if c in training]
    if len(train_ids) < 2:
        raise ValueError(f"habitats need at least 2 training patients, found {len(train_ids)} in cohorts {sorted(training)}")
    train_voxels = [voxel_matrix(*_patient_inputs(manifest, p, hc.series, cfg.geometry_tolerance)) for p in train_ids]
    common = {"max_voxels_per_patient": hc.max_voxels_per_patient, "random_state": cfg.seed}
    clusterer = HabitatClusterer(k_range=hc.k_range, **common).fit(train_voxels)
    sweep = {k: HabitatClusterer(k=k, **common).fit(train_voxels) for k in range(hc.ith_k_range[0], hc.ith_k_range[1] + 1)}
    del train_voxels  # the fitted state is all that is needed from here on
    map_paths, fraction_rows, ith_rows = {}, [], []
    for patient, cohort in patients.itertuples(index=False):
        images, mask = _patient_inputs(manifest, patient, hc.series, cfg.geometry_tolerance)
        labels = habitat_map(images, mask, clusterer)
        map_paths[patient] = str(report.image(labels, f"rois/habitats/{patient}.nii.gz"))
        fraction_rows.append({"patient": patient, "cohort": cohort, **habitat_fractions(labels, clusterer.k_)})
        for k, c in sweep.items():
            ith_rows.append({"patient": patient, "cohort": cohort, "k": k, "ith_score": ith_score(habitat_map(images, mask, c))})
    return CohortHabitats(clusterer, map_paths, pd.DataFrame(fraction_rows), pd.DataFrame(ith_rows))


def write_habitat_outputs(habitats: CohortHabitats | None, manifest: pd.DataFrame, cfg: StudyConfig, report: ReportWriter, examples_per_cohort: int = 3) -> dict[str, pd.DataFrame]:
    """Write the habitat tables and the overlay figure; return the tables for display.

    Tables: ``habitat_calinski_harabasz`` (CH index per K, selected K marked),
    ``habitat_fractions`` (mean (SD) volume fraction per cohort),
    ``habitat_fractions_per_patient`` and ``ith_scores_by_k``. Figure:
    ``habitat_map_examples`` (the first patients of each cohort). Nothing is
    written (empty dict) when habitats are not configured (``habitats`` None).
    """
    if habitats is None:
        return {}
    from helpers.figures.images import habitat_overlay

    ch = habitats.clusterer.ch_scores_.copy()
    ch["selected"] = ch["k"] == habitats.k
    tables = {
        "habitat_calinski_harabasz": ch,
        "habitat_fractions": habitats.fractions_by_cohort(),
        "habitat_fractions_per_patient": habitats.fractions,
        "ith_scores_by_k": habitats.ith_wide(),
    }
    for name, table in tables.items():
        report.table(table, name, per_cohort=False)
    first_series = cfg.extraction.habitats.series[0]
    rows = manifest[manifest["series"] == first_series].sort_values("patient")
    items = [
        (r.patient, r.image_path, habitats.map_paths[r.patient])
        for _, grp in rows.groupby("cohort", sort=False)
        for r in grp.head(examples_per_cohort).itertuples()
    ]
    fig = habitat_overlay(items, habitats.k, window=cfg.series[first_series].display_window, columns=examples_per_cohort,
                          title=f"Habitats (K={habitats.k}, fitted on the training cohort) over {first_series}")
    report.figure(fig, "habitat_map_examples", per_cohort=False)
    return tables


def run_feature_extraction(manifest: pd.DataFrame, cfg: StudyConfig, habitats: CohortHabitats | None = None) -> ExtractionResult:
    """Plan every unit of the study (patients x series x ROIs x presets, habitats, second reader) and run them with
    the configured workers or Dask scheduler, reusing the study's extraction cache (``reports/<study>/.cache``)."""
    units = plan_units(manifest, cfg, habitats)
    return run_extraction(units, cfg.report_root / ".cache" / "extraction", workers=cfg.extraction.workers,
                          scheduler_address=cfg.extraction.scheduler_address)


def extraction_provenance(cfg: StudyConfig, result: ExtractionResult) -> dict:
    """Everything needed to trace the feature values: settings, versions, hashes, unit keys.

    Returns
    -------
    dict
        Library versions, the helpers code hash, per preset and series the
        merged pyradiomics parameters and preprocessing settings, the ROI
        definitions, the number of units computed, taken from the cache and
        failed in this run, and per unit its key, status (``computed``,
        ``cached`` or ``failed``), seconds of computation and pyradiomics
        image/mask hashes; second-reader units also record their mask
        perturbation (``None``: the manifest's second-reader mask).
    """
    settings: dict[str, dict[str, dict]] = {}
    for u in result.units:
        settings.setdefault(u.preset, {}).setdefault(u.series, {"pyradiomics_params": u.params, "preprocessing": u.preprocessing})
    return {
        "versions": _versions(),
        "helpers_extraction_code_hash": _code_hash(),
        "settings": settings,
        "rois": {name: spec.model_dump() for name, spec in cfg.extraction.rois.items()},
        "habitats": cfg.extraction.habitats.model_dump() if cfg.extraction.habitats else None,
        "unit_counts": result.status_counts(),
        "units": [
            {"unit": u.unit_id, "key": r["key"], "status": r["status"], "seconds": r.get("seconds"),
             "image_hash": (r.get("diagnostics") or {}).get("diagnostics_Image-original_Hash"),
             "mask_hash": (r.get("diagnostics") or {}).get("diagnostics_Mask-original_Hash"),
             "preprocessing": r.get("preprocessing"),
             **({"perturbation": u.perturbation} if u.reader == "reader2" else {})}
            for u, r in zip(result.units, result.records, strict=True)
        ],
    }


def write_extraction_outputs(result: ExtractionResult, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Write the feature tables, counts, diagnostics, failures and provenance.

    Per preset: ``features/features_<preset>.parquet`` + ``.csv`` (wide table;
    ``features_<preset>_reader2`` for the training patients' second reader)
    and ``tables/feature_counts_<preset>`` (Appendix S2 style); then
    ``features/extraction_diagnostics``, ``tables/extraction_failures`` and
    ``provenance/extraction.json``. Returns the small tables for display.
    """
    series_order = list(cfg.series)
    roi_order = list(cfg.extraction.rois) + [f"habitat{k}" for k in range(1, 64)]
    shown: dict[str, pd.DataFrame] = {}
    for preset_ref in cfg.extraction.presets:
        preset = preset_name(preset_ref)
        report.data(result.features_table(preset, series_order, roi_order), f"features_{preset}")
        if cfg.extraction.stability is not None:
            report.data(result.features_table(preset, series_order, roi_order, reader="reader2"), f"features_{preset}_reader2")
        counts = result.feature_count_table(preset)
        report.table(counts, f"feature_counts_{preset}", per_cohort=False)
        shown[f"feature_counts_{preset}"] = counts
    report.data(result.diagnostics_table(), "extraction_diagnostics", index=False)
    failures = result.failures_table()
    # Reasons may quote input paths: relative to the study folder, so the table does not depend on where the study lives.
    failures["reason"] = failures["reason"].astype(str).str.replace(str(cfg.base_dir) + os.sep, "", regex=False)
    failures_csv = report.table(failures, "extraction_failures", per_cohort=False)
    report.failures(failures, "extraction units", failures_csv)
    shown["extraction_failures"] = failures
    empty = result.empty_rois_table()
    if not empty.empty:
        # Habitats absent from a tumour: listed (their features are missing and follow the missing-data policy).
        report.table(empty, "extraction_empty_habitats", per_cohort=False)
        shown["extraction_empty_habitats"] = empty
    report.json(extraction_provenance(cfg, result), "extraction")
    return shown


def write_ibsi_compliance(report: ReportWriter, phantom_dir: str | Path = PHANTOM_DIR,
                          ct_phantom_dir: str | Path = CT_PHANTOM_DIR) -> pd.DataFrame:
    """Write the IBSI compliance tables of the project's extraction (IBSI 1 digital phantom and CT phantom A-E).

    Tables, in reading order (see :func:`helpers.features.ibsi_compliance.ibsi_compliance`):
    ``ibsi_compliance_summary`` (per phantom and configuration: image processing, diagnostics and features within
    tolerance, deviating, unmapped), ``ibsi_deviations`` (every mapped feature outside tolerance with value,
    reference, tolerance and reason), ``ibsi_phantom_compliance`` and ``ibsi_phantom_unmapped`` (the digital
    phantom, every tag), ``ibsi_ct_phantom_diagnostics`` (the CT phantom's image-processing diagnostics per
    configuration: compared first, as features can only match on the same voxels), ``ibsi_ct_phantom_compliance``
    and ``ibsi_ct_phantom_unmapped``. ``extraction.ibsi_ct_phantom: false`` in the study config leaves the CT
    phantom out (the digital phantom's tables only).

    Returns
    -------
    DataFrame
        The summary.
    """
    ct = report.cfg.extraction.ibsi_ct_phantom
    result = ibsi_compliance(phantom_dir, ct_phantom_dir, ct_configs=tuple(CT_PHANTOM_CONFIGS) if ct else ())
    tables = [(result.summary, "ibsi_compliance_summary"), (result.deviations, "ibsi_deviations"),
              (result.digital, "ibsi_phantom_compliance"), (result.digital_unmapped, "ibsi_phantom_unmapped")]
    if ct:
        tables += [(result.ct_diagnostics, "ibsi_ct_phantom_diagnostics"), (result.ct, "ibsi_ct_phantom_compliance"),
                   (result.ct_unmapped, "ibsi_ct_phantom_unmapped")]
    for table, name in tables:
        report.table(table, name, per_cohort=False)
    return result.summary
