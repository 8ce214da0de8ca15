"""Radiomics extraction at scale: units, cache, parallel and Dask execution.

An extraction unit is one patient x series x ROI x preset. Each unit has a
key: the SHA-256 of its image and mask (and habitat label map) contents, its
ROI definition, preprocessing and pyradiomics settings, the versions of the
libraries that compute it and the source of the helpers modules involved.
A finished unit is written to the cache atomically (temporary file, then
rename), so a killed run never leaves a partial result and a re-run or
resumed run skips every finished unit. A failing unit is reported with its
patient and reason; the other units complete.

Units run sequentially in-process (``workers=1``), in a local process pool
(BLAS and SimpleITK threads capped at one per worker), or on a Dask
distributed scheduler given by address; results are identical either way and
are assembled in unit order, not completion order. The units of one image
(all its ROIs, readers and presets with the same filters) form one work item:
the image is read, and each filtered image computed, once for all of them,
with the values of one unit at a time, bit for bit
(:func:`helpers.features.pyradiomics.extract_features_many`); each unit keeps
its own key and cache entry.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from helpers._environment import package_versions
from helpers.data.columns import feature_column
from helpers.errors import EmptyROIError
from helpers.features.pyradiomics import (
    EXPECTED_COUNTS,
    SHAPE_FEATURES,
    extract_features_many,
    load_preset,
    merge_settings,
    preset_name,
    without_shape,
)
from helpers.imaging import rois
from helpers.imaging.io import conform_mask, grid_difference, read_image, read_image_info, read_mask, sha256_file
from helpers.imaging.preprocess import PreprocessSettings, image_depends_on_mask, mask_on_grid, preprocess_many
from helpers.settings.study import GeometryTolerance, StudyConfig

__all__ = [
    "ExtractionUnit",
    "ExtractionResult",
    "plan_units",
    "unit_key",
    "compute_unit",
    "compute_units",
    "run_extraction",
]

#: Modules whose code computes feature values, by import name: their source is part of every unit key (table
#: assembly and scheduling code is not). A module that is moved or renamed fails the import here instead of silently
#: dropping out of the key; tests/test_extraction.py traces a unit's computation and fails when it runs code of a
#: helpers module not listed here.
CODE_MODULES = ("helpers.features.pyradiomics", "helpers.imaging.io", "helpers.imaging.preprocess", "helpers.imaging.rois")
_VERSION_PACKAGES = ("pyradiomics-bhklab", "SimpleITK", "numpy", "PyWavelets", "scipy")


@dataclass(frozen=True)
class ExtractionUnit:
    """One patient x series x ROI x preset to extract.

    ``roi_kind`` is ``tumour``, ``ring``, ``fused`` (derived from the mask with
    ``width_mm``) or ``label`` (voxels of ``label_map_path`` equal to
    ``label_value``, e.g. a habitat). ``params`` are the merged pyradiomics
    parameters, ``preprocessing`` the series' preprocessing settings.
    """

    patient: str
    cohort: str
    series: str
    roi: str
    preset: str
    image_path: str
    mask_path: str
    roi_kind: str
    params: dict
    preprocessing: dict
    mask_roi: str | None = None
    width_mm: float | None = None
    label_map_path: str | None = None
    label_value: int | None = None
    reader: str = "reader1"
    perturbation: dict | None = None
    geometry_tolerance: dict | None = None
    min_roi_voxels: int = 2

    @property
    def unit_id(self) -> str:
        suffix = "" if self.reader == "reader1" else f"/{self.reader}"
        return f"{self.patient}/{self.series}/{self.roi}/{self.preset}{suffix}"


@dataclass
class ExtractionResult:
    """Results of an extraction run, in unit order."""

    units: list[ExtractionUnit]
    records: list[dict] = field(default_factory=list)

    def status_counts(self) -> dict[str, int]:
        """How many units were computed, taken from the cache, failed, or had an empty habitat ROI (by design)."""
        out = {"computed": 0, "cached": 0, "failed": 0, "empty": 0}
        for r in self.records:
            out[r["status"]] += 1
        return out

    def features_table(
        self, preset: str, series_order: Sequence[str] | None = None, roi_order: Sequence[str] | None = None, reader: str = "reader1"
    ) -> pd.DataFrame:
        """Wide table of one preset: one row per patient, columns ``{series}_{roi}_{feature}``.

        pyradiomics feature names are ``{imageType}_{class}_{feature}``, so the
        columns read ``{series}_{roi}_{imageType}_{class}_{feature}``. A failed
        unit leaves its columns empty (NaN) for that patient; see
        :meth:`failures_table`. ``reader="reader2"`` gives the second-reader
        (or perturbed-mask) table of the stability analysis.
        """
        rows: dict[str, dict[str, float]] = {}
        cohorts: dict[str, str] = {}
        blocks: dict[tuple[str, str], list[str]] = {}
        for unit, rec in zip(self.units, self.records, strict=True):
            if unit.preset != preset or unit.reader != reader:
                continue
            cohorts[unit.patient] = unit.cohort
            row = rows.setdefault(unit.patient, {})
            if rec["status"] in ("failed", "empty"):
                continue
            prefix = f"{unit.series}_{unit.roi}_"
            names = blocks.setdefault((unit.series, unit.roi), list(rec["features"]))
            for name in names:
                row[prefix + name] = rec["features"].get(name, np.nan)
        s_order = list(series_order or sorted({s for s, _ in blocks}))
        r_order = list(roi_order or sorted({r for _, r in blocks}))
        ordered = sorted(blocks, key=lambda sr: (_pos(s_order, sr[0]), _pos(r_order, sr[1]), sr))
        columns = [feature_column(s, r, n) for s, r in ordered for n in blocks[(s, r)]]
        patients = sorted(rows)
        table = pd.DataFrame([[rows[p].get(c, np.nan) for c in columns] for p in patients], index=pd.Index(patients, name="patient"), columns=columns)
        table.insert(0, "cohort", [cohorts[p] for p in patients])
        return table

    def feature_count_table(self, preset: str) -> pd.DataFrame:
        """Features per class and filter family (Appendix S2 style), one column per series x ROI.

        Counted from what was actually extracted (first successful unit of
        each series x ROI), so the table documents the real feature set.
        """
        from helpers.features.pyradiomics import feature_counts_by_class

        columns: dict[str, pd.Series] = {}
        for unit, rec in zip(self.units, self.records, strict=True):
            label = f"{unit.series} {unit.roi}"
            if unit.preset != preset or unit.reader != "reader1" or rec["status"] in ("failed", "empty") or label in columns:
                continue
            counts = feature_counts_by_class(list(rec["features"]))
            columns[label] = counts.set_index(["category", "image_type"])["n_features"]
        if not columns:
            return pd.DataFrame(columns=["category", "image_type"])
        table = pd.DataFrame(columns).fillna(0).astype(int)
        # Keep the category order of the first block (original classes, then filter families, Total last).
        first = next(iter(columns.values())).index
        order = list(first) + [i for i in table.index if i not in first]
        order = [i for i in order if i[0] != "Total"] + [i for i in order if i[0] == "Total"]
        return table.loc[order].reset_index()

    def diagnostics_table(self) -> pd.DataFrame:
        """One row per unit: identity, key, outcome (``ok`` or ``failed``) and the main pyradiomics diagnostics.

        Only results are tabulated: whether a unit came from the cache and how
        long it took depend on the run's history, so they are in the
        provenance (:func:`helpers.steps.feature_extraction.extraction_provenance`), and an interrupted and
        resumed run gives the same table, byte for byte, as an uninterrupted one.
        """
        keep = (
            "diagnostics_Versions_PyRadiomics", "diagnostics_Image-original_Hash", "diagnostics_Mask-original_Hash",
            "diagnostics_Image-original_Spacing", "diagnostics_Mask-original_VoxelNum", "diagnostics_Mask-original_VolumeNum",
            "diagnostics_Image-original_Mean",
        )  # fmt: skip
        rows = []
        for unit, rec in zip(self.units, self.records, strict=True):
            diag = rec.get("diagnostics") or {}
            rows.append({
                "patient": unit.patient, "cohort": unit.cohort, "series": unit.series, "roi": unit.roi, "preset": unit.preset,
                "reader": unit.reader, "status": rec["status"] if rec["status"] in ("failed", "empty") else "ok", "key": rec["key"],
                "n_features": len(rec.get("features") or {}),
                **{k.removeprefix("diagnostics_"): (json.dumps(diag[k]) if isinstance(diag.get(k), list | tuple) else diag.get(k)) for k in keep},
            })
        return pd.DataFrame(rows)

    def empty_rois_table(self) -> pd.DataFrame:
        """Habitat units whose subregion is absent (or below ``qc.min_mask_voxels``) in a patient's tumour.

        Their features are missing by design (not failures) and follow the missing-value policy.
        """
        rows = [
            {"patient": u.patient, "cohort": u.cohort, "series": u.series, "roi": u.roi, "preset": u.preset, "reader": u.reader,
             "note": r.get("note", "")}
            for u, r in zip(self.units, self.records, strict=True)
            if r["status"] == "empty"
        ]
        return pd.DataFrame(rows, columns=["patient", "cohort", "series", "roi", "preset", "reader", "note"])

    def failures_table(self) -> pd.DataFrame:
        """Failed units with patient and reason (empty when all succeeded)."""
        rows = [
            {"patient": u.patient, "cohort": u.cohort, "series": u.series, "roi": u.roi, "preset": u.preset, "reader": u.reader, "reason": r["error"]}
            for u, r in zip(self.units, self.records, strict=True)
            if r["status"] == "failed"
        ]
        return pd.DataFrame(rows, columns=["patient", "cohort", "series", "roi", "preset", "reader", "reason"])


def _pos(order: Sequence[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def plan_units(manifest: pd.DataFrame, cfg: StudyConfig, habitats: object | None = None) -> list[ExtractionUnit]:
    """All extraction units of a study, in a deterministic order.

    Parameters
    ----------
    manifest : DataFrame
        The validated manifest (with ``image_path``/``mask_path``).
    cfg : StudyConfig
        Its ``extraction`` block says which presets, series and ROIs.
    habitats : CohortHabitats, optional
        Fitted habitats (anything with ``map_paths``: patient -> label-map
        path, and ``k``); adds ``habitat1..K`` ROIs for the series in
        ``extraction.habitats.extract_from`` (default: the habitat series).
    """
    ex = cfg.extraction
    series = list(ex.series or cfg.series)
    habitat_series: list[str] = []
    habitat_maps: dict[str, str] = {}
    habitat_k = 0
    if habitats is not None:
        if ex.habitats is None:
            raise ValueError("habitat ROIs need extraction.habitats in the study config")
        habitat_maps, habitat_k = habitats.map_paths, int(habitats.k)
        habitat_series = list(ex.habitats.extract_from or ex.habitats.series)
    units: list[ExtractionUnit] = []
    rows = manifest.sort_values(["patient", "series"], key=lambda s: s.map(lambda v: _pos(list(cfg.series), v)) if s.name == "series" else s)
    for preset_ref in ex.presets:
        base = load_preset(preset_ref)
        preset = preset_name(preset_ref)
        for r in rows.itertuples(index=False):
            if r.series not in series:
                continue
            params = merge_settings(base, ex.series_settings.get(r.series))
            prep = cfg.preprocessing.get(r.series, PreprocessSettings()).model_dump(mode="json")
            common = dict(patient=r.patient, cohort=r.cohort, series=r.series, preset=preset, image_path=r.image_path,
                          mask_path=r.mask_path, params=params, preprocessing=prep, mask_roi=(r.mask_roi or None),
                          geometry_tolerance=cfg.geometry_tolerance.model_dump(), min_roi_voxels=max(2, cfg.qc.min_mask_voxels))
            for roi, spec in ex.rois.items():
                roi_common = common if spec.with_shape else {**common, "params": without_shape(params)}
                units.append(ExtractionUnit(roi=roi, roi_kind=spec.kind, width_mm=spec.width_mm, **roi_common))
                if ex.stability is not None and r.cohort in cfg.training_cohorts:
                    # Second reader for the ICC filter: the real one when the manifest has it, else a perturbed mask.
                    second = {"mask_path": r.mask_reader2_path, "perturbation": None} if r.mask_reader2_path else {
                        "mask_path": r.mask_path, "perturbation": _perturbation_for(ex.stability.perturbation.model_dump(), r.image_path)}
                    units.append(ExtractionUnit(roi=roi, roi_kind=spec.kind, width_mm=spec.width_mm, reader="reader2",
                                                **{**roi_common, **second}))
            if habitat_maps and r.series in habitat_series and r.patient in habitat_maps:
                habitat_common = common if ex.habitats.shape_features else {**common, "params": without_shape(params)}
                for k in range(1, habitat_k + 1):
                    units.append(ExtractionUnit(roi=f"habitat{k}", roi_kind="label", label_map_path=habitat_maps[r.patient], label_value=k,
                                                **habitat_common))
    return units


def _perturbation_for(perturbation: dict, image_path: str) -> dict:
    """The configured perturbation, its radius raised to at least one voxel of this image.

    A 1 mm dilation changes nothing on a 4 mm PET grid; the documented rule is
    radius = max(radius_mm, smallest voxel spacing), so every series gets at
    least a one-voxel perturbation. The radius used is part of the unit key.
    """
    smallest = float(min(read_image_info(image_path)["spacing"]))
    # Rounded up (not to nearest) at 0.1 micrometre: the radius must not fall below the spacing it was raised to.
    return {**perturbation, "radius_mm": max(float(perturbation["radius_mm"]), math.ceil(smallest * 1e4) / 1e4)}


def _versions() -> dict[str, str]:
    return package_versions(_VERSION_PACKAGES)


def _code_hash() -> str:
    digest = hashlib.sha256()
    for name in CODE_MODULES:
        # inspect.getsource raises when the source is missing: a key never silently stops covering a module.
        digest.update(name.encode() + inspect.getsource(importlib.import_module(name)).encode())
    for func in _KEY_FUNCTIONS:
        digest.update(inspect.getsource(func).encode())
    return digest.hexdigest()


def _perturbation_code_hash() -> str:
    from helpers.imaging.rois import perturbed_mask

    return hashlib.sha256(inspect.getsource(perturbed_mask).encode()).hexdigest()


def unit_key(unit: ExtractionUnit, hasher: Callable[[Path], str] = sha256_file, versions: dict | None = None, code: str | None = None) -> str:
    """Cache key of a unit: content hashes, ROI, settings, versions and code."""
    files = {"image": unit.image_path, "mask": unit.mask_path, "label_map": unit.label_map_path}
    payload = {
        "files": {k: hasher(Path(v)) for k, v in files.items() if v},
        "roi": [unit.roi_kind, unit.width_mm, unit.label_value, unit.mask_roi, unit.perturbation],
        "params": unit.params,
        "preprocessing": unit.preprocessing,
        "geometry_tolerance": unit.geometry_tolerance,
        "min_roi_voxels": unit.min_roi_voxels if unit.roi_kind == "label" else None,
        "versions": versions or _versions(),
        "code": code or _code_hash(),
    }
    if unit.perturbation:
        # Only perturbed units depend on the perturbation code; other units keep their cache when it changes.
        payload["perturbation_code"] = _perturbation_code_hash()
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cache_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.json"


def _roi_mask(unit: ExtractionUnit, image: sitk.Image) -> sitk.Image:
    # The study's geometry policy: a mask within tolerance of its image is put on the image's exact grid.
    tolerance = GeometryTolerance.model_validate(unit.geometry_tolerance) if unit.geometry_tolerance else None
    if unit.roi_kind == "label":
        label_map = read_image(unit.label_map_path)
        roi = sitk.Cast(label_map == int(unit.label_value), sitk.sitkUInt8)
    else:
        mask = read_mask(unit.mask_path, reference=image, roi_name=unit.mask_roi, tolerance=tolerance)
        tumour = rois.tumour_mask(mask, int(unit.params.get("setting", {}).get("label", 1)))
        if unit.perturbation:
            from helpers.imaging.rois import perturbed_mask

            # A simulated second reader: the tumour outline moved by a fixed distance in mm.
            tumour = perturbed_mask(tumour, unit.perturbation["mode"], float(unit.perturbation["radius_mm"]))
        if unit.roi_kind == "tumour":
            roi = tumour
        elif unit.roi_kind == "ring":
            roi = rois.peritumoral_ring(tumour, unit.width_mm, image=image)
        elif unit.roi_kind == "fused":
            roi = rois.fused_region(tumour, unit.width_mm, image=image)
        else:
            raise ValueError(f"unknown ROI kind {unit.roi_kind!r}")
    if grid_difference(image, roi, tolerance) is None:
        # Within the study's geometry tolerance (e.g. a habitat map written as NIfTI, whose float32 header rounds a
        # DICOM origin by 1e-6 mm): the same grid, so the image's exact geometry is copied and no voxel moves.
        roi = conform_mask(roi, image, tolerance)
    else:
        # e.g. a habitat map on the CT grid used with the PET image of the same PET/CT.
        roi = mask_on_grid(roi, image, "partial_volume", 0.5)
    arr = sitk.GetArrayViewFromImage(roi)
    n_voxels = int(np.count_nonzero(arr))
    if unit.roi_kind == "label" and n_voxels < unit.min_roi_voxels:
        # A habitat absent from this tumour, or only a few voxels of it (qc.min_mask_voxels, as for the masks at
        # validation): its features are undefined or meaningless, missing by design, not a failure of the input.
        raise EmptyROIError(f"habitat ROI '{unit.roi}' has {n_voxels} voxel(s) in this patient's tumour "
                            f"(fewer than qc.min_mask_voxels = {unit.min_roi_voxels})")
    if unit.roi_kind == "label" and sum(int(np.ptp(ax)) > 0 for ax in np.nonzero(arr)) < 2:
        # A habitat that is a line of voxels: pyradiomics needs an ROI extending in at least two dimensions.
        raise EmptyROIError(f"habitat ROI '{unit.roi}' is a line of {n_voxels} voxels in this patient's tumour "
                            "(texture needs at least two dimensions)")
    if not n_voxels:
        raise ValueError(f"ROI '{unit.roi}' is empty for this patient and series")
    return roi



def _limit_threads() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def compute_unit(unit: ExtractionUnit, key: str, cache_dir: str | Path, limit_threads: bool = False) -> dict:
    """Compute one unit (or load it from the cache) and return its record.

    The record has ``status`` (``computed``, ``cached``, ``failed``, or
    ``empty`` for a habitat absent from the patient's tumour),
    ``key``, ``features``, ``diagnostics``, ``preprocessing``, ``seconds`` and
    ``error`` (patient, series, ROI and reason, for failures).
    """
    return compute_units([unit], [key], cache_dir, limit_threads)[0]


def compute_units(units: Sequence[ExtractionUnit], keys: Sequence[str], cache_dir: str | Path, limit_threads: bool = False) -> list[dict]:
    """Compute units of one image together (or load them from the cache); one record per unit, as :func:`compute_unit`.

    Units of one work item (:func:`_work_items`) share their image, preprocessing and filter settings: the image is
    read once and each filtered image computed once for all their ROIs (:func:`extract_features_many`, values
    identical to one unit at a time). Each unit is still cached under its own key as soon as the item is done, and
    fails or is empty on its own. ``seconds`` is an equal share of the item's time.
    """
    if len(units) != len(keys) or len(_work_items(units, range(len(units)))) > 1:
        raise ValueError("compute_units takes the units of one work item (same image, preprocessing and filters), one key each")
    paths = [_cache_file(Path(cache_dir), key) for key in keys]
    records: list[dict | None] = [_read_cached(path) for path in paths]
    pending = [i for i, rec in enumerate(records) if rec is None]
    if not pending:
        return records
    if limit_threads:
        _limit_threads()
    t0 = time.perf_counter()
    try:
        image = read_image(units[pending[0]].image_path)
    except Exception as exc:
        return [rec if rec is not None else _failed(units[i], keys[i], exc, time.perf_counter() - t0) for i, rec in enumerate(records)]
    rois: dict[int, sitk.Image] = {}
    for i in pending:
        t = time.perf_counter()
        try:
            rois[i] = _roi_mask(units[i], image)
        except EmptyROIError as exc:
            records[i] = _empty(units[i], keys[i], exc, time.perf_counter() - t)
            _write_cache(paths[i], records[i])
        except Exception as exc:  # one unit's failure must not stop the others
            records[i] = _failed(units[i], keys[i], exc, time.perf_counter() - t)
    done = list(rois)
    if not done:
        return records
    params = [_unit_params(units[i]) for i in done]
    prep_record = None
    try:
        # The units share their preprocessing, which does not read the mask (_work_items): the image is preprocessed,
        # and each filtered image computed, once for all of them.
        image, masks, prep_record = preprocess_many(image, [rois[i] for i in done], PreprocessSettings.model_validate(units[done[0]].preprocessing))
        outcomes = extract_features_many(image, masks, params)
    except Exception as exc:  # a failing preprocessing fails each unit, as it would alone
        outcomes = [exc] * len(done)
    share = (time.perf_counter() - t0) / len(done)
    for i, unit_params, outcome in zip(done, params, outcomes, strict=True):
        records[i] = _finished(units[i], keys[i], outcome, unit_params, prep_record, share)
        if records[i]["status"] == "computed":
            _write_cache(paths[i], records[i])
    return records


def _unit_params(unit: ExtractionUnit) -> dict:
    """The unit's pyradiomics parameters; pyradiomics reads the label from the settings, our ROI masks are 0/1."""
    return {**unit.params, "setting": {**(unit.params.get("setting") or {}), "label": 1}}


def _prepare(unit: ExtractionUnit, image: sitk.Image) -> tuple[sitk.Image, sitk.Image, dict, dict]:
    """One unit's preprocessed image, ROI mask on its grid, pyradiomics parameters and preprocessing record.

    What :func:`compute_units` extracts for the unit (tests and benchmarks hand the same inputs to pyradiomics).
    """
    image, masks, record = preprocess_many(image, [_roi_mask(unit, image)], PreprocessSettings.model_validate(unit.preprocessing))
    return image, masks[0], _unit_params(unit), record


def _finished(unit: ExtractionUnit, key: str, outcome, params: dict, prep_record: dict | None, seconds: float) -> dict:
    """The record of an extracted unit: its features, or its failure (also a preset giving the wrong feature count)."""
    if isinstance(outcome, Exception):
        return _failed(unit, key, outcome, seconds)
    features, diagnostics = outcome
    expected = EXPECTED_COUNTS.get(unit.preset)
    if expected is not None and "shape" not in (params.get("featureClass") or {}):
        expected -= SHAPE_FEATURES
    if expected is not None and len(features) != expected:
        error = RuntimeError(f"preset {unit.preset} must give {expected} features, got {len(features)}; check the pyradiomics version")
        return _failed(unit, key, error, seconds)
    return {"status": "computed", "key": key, "unit": asdict(unit), "features": features, "diagnostics": diagnostics,
            "preprocessing": prep_record, "seconds": seconds, "error": None}


def _empty(unit: ExtractionUnit, key: str, exc: EmptyROIError, seconds: float) -> dict:
    return {"status": "empty", "key": key, "unit": asdict(unit), "features": {}, "diagnostics": {}, "preprocessing": None,
            "seconds": seconds, "error": None, "note": str(exc)}


def _failed(unit: ExtractionUnit, key: str, exc: Exception, seconds: float) -> dict:
    reason = f"{type(exc).__name__}: {exc}".strip()
    return {"status": "failed", "key": key, "error": f"patient {unit.patient}, series {unit.series}, ROI {unit.roi}: {reason}",
            "traceback": "".join(traceback.format_exception(exc, limit=5)), "seconds": seconds}


def _work_items(units: Sequence[ExtractionUnit], todo: Sequence[int]) -> list[list[int]]:
    """The units to compute grouped by image: same image file, preprocessing and filters (image types and settings).

    Such units get the same preprocessed and filtered images, so one work item computes them once for all their
    ROIs, readers and presets. Preprocessing that depends on the mask (:func:`image_depends_on_mask`) keeps units
    apart. Items keep the order of their first unit in ``todo``.
    """
    items: dict[object, list[int]] = {}
    for i in todo:
        u = units[i]
        if image_depends_on_mask(PreprocessSettings.model_validate(u.preprocessing)):
            group: object = i
        else:
            group = json.dumps([u.image_path, u.preprocessing, u.params.get("imageType"), u.params.get("setting")], sort_keys=True, default=str)
        items.setdefault(group, []).append(i)
    return list(items.values())


def _write_cache(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic write: a unit is either fully in the cache or absent, even if the run is killed here.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rec, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cached(path: Path) -> dict | None:
    """The cached record at ``path`` (status ``cached``), or None when absent or unreadable.

    Cache files are written atomically, so a damaged one (a disk fault, a copy
    cut short) is unexpected; it is treated as absent and recomputed rather
    than read or allowed to stop the run.
    """
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("status") not in ("computed", "empty") or not isinstance(rec.get("features"), dict):
        return None
    if rec["status"] == "computed":
        rec["status"] = "cached"
    return rec


def run_extraction(
    units: Sequence[ExtractionUnit],
    cache_dir: str | Path,
    workers: int = 1,
    scheduler_address: str | None = None,
    progress: bool = True,
    hasher: Callable[[Path], str] = sha256_file,
) -> ExtractionResult:
    """Run every unit, reusing the cache; return the results in unit order.

    Parameters
    ----------
    units : sequence of ExtractionUnit
    cache_dir : path
        Per-unit cache (shared by all workers; on a cluster, a shared filesystem).
    workers : int
        Local worker processes (1 = in this process).
    scheduler_address : str, optional
        Address of a Dask distributed scheduler (e.g. ``tcp://10.0.0.5:8786``);
        overrides ``workers``. Workers need this package installed and the
        image paths and cache directory reachable.
    progress : bool
        Show a progress bar over units.
    hasher : callable
        File hashing for the unit keys (the runner passes a cached one).
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    versions, code = _versions(), _code_hash()
    keys = [unit_key(u, hasher, versions, code) for u in units]
    records: list[dict | None] = [None] * len(units)
    todo = []
    for i, key in enumerate(keys):
        records[i] = _read_cached(_cache_file(cache_dir, key))
        if records[i] is None:
            todo.append(i)
    # One work item per image (all its ROIs), largest first: long items start early and the workers finish together
    # (LPT scheduling).
    items = sorted(_work_items(units, todo), key=lambda item: -_size_hint(units[item[0]].image_path) * len(item))
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="extraction units", unit="unit", disable=not progress, file=sys.stderr)

    def finish(item: list[int], item_records: list[dict]) -> None:
        for i, rec in zip(item, item_records, strict=True):
            records[i] = rec
        bar.update(len(item))

    try:
        if scheduler_address:
            _run_dask(units, keys, items, cache_dir, scheduler_address, finish)
        elif workers <= 1 or len(items) <= 1:
            for item in items:
                finish(item, compute_units([units[i] for i in item], [keys[i] for i in item], cache_dir))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_limit_threads) as pool:
                futures = {pool.submit(compute_units, [units[i] for i in item], [keys[i] for i in item], cache_dir): item for item in items}
                for fut in as_completed(futures):
                    finish(futures[fut], fut.result())
    finally:
        bar.close()
    return ExtractionResult(list(units), [r for r in records if r is not None])


def _size_hint(path: str) -> int:
    p = Path(path)
    try:
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.iterdir())
    except OSError:
        return 0


def _run_dask(units, keys, items: Iterable[list[int]], cache_dir: Path, address: str, finish: Callable) -> None:
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(address) as client:
        futures = {client.submit(compute_units, [units[i] for i in item], [keys[i] for i in item], str(cache_dir), True, pure=False): item
                   for item in items}
        for fut in dask_completed(list(futures)):
            finish(futures.pop(fut), fut.result())
            fut.release()  # drop the result from the workers' memory once it is here (memory stays flat in cohort size)


# The functions whose source is part of every unit key (bound at import, so a wrapper installed later, e.g. for
# instrumentation, does not change the keys).
_KEY_FUNCTIONS = (compute_unit, compute_units, _unit_params, _finished, _roi_mask)
