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

from dataclasses import dataclass

import pandas as pd
import SimpleITK as sitk

from helpers.settings.study import StudyConfig
from helpers.imaging.io import read_image, read_mask
from helpers.reporting.writer import ReportWriter
from helpers.imaging.habitats import HabitatClusterer, habitat_fractions, habitat_map, ith_score, voxel_matrix
from helpers.imaging.rois import tumour_mask

__all__ = ["CohortHabitats", "cohort_habitats", "write_habitat_outputs"]


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
