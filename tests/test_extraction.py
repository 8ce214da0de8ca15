"""Extraction engine: units, keys, cache/resume, failures, parallel and Dask runs, tables."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from helpers.data.manifest import load_study
from helpers.features.extraction import (
    ExtractionUnit,
    compute_unit,
    plan_units,
    run_extraction,
    unit_key,
)
from helpers.features.pyradiomics import load_preset, merge_settings
from helpers.settings.study import load_config
from helpers.steps.feature_extraction import extraction_provenance

from .conftest import write_volume

REPO = Path(__file__).resolve().parents[1]

SMALL_PRESET = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": ["Mean", "Entropy", "Maximum"], "glcm": ["Contrast", "JointEntropy"], "shape": ["VoxelVolume"]},
    "setting": {"binWidth": 10, "label": 1},
}


@pytest.fixture
def small_study(tiny_study: Path) -> Path:
    (tiny_study / "small.yaml").write_text(yaml.safe_dump(SMALL_PRESET))
    data = yaml.safe_load((tiny_study / "study.yaml").read_text())
    data["extraction"] = {
        "presets": [str(tiny_study / "small.yaml")],
        "rois": {"tumour": {"kind": "tumour"}, "ring2mm": {"kind": "ring", "width_mm": 2}},
        "series_settings": {"MR": {"binWidth": 20}},
    }
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tiny_study


def _units(study: Path) -> list[ExtractionUnit]:
    cfg = load_config(study / "study.yaml")
    manifest, _ = load_study(cfg)
    return plan_units(manifest, cfg)


def test_plan_units_order_and_settings(small_study):
    units = _units(small_study)
    assert len(units) == 4 * 2 * 2  # patients x series x ROIs
    assert [u.unit_id.rsplit("/", 1)[0] for u in units[:4]] == ["P01/CT/tumour", "P01/CT/ring2mm", "P01/MR/tumour", "P01/MR/ring2mm"]
    assert units[0].params["setting"]["binWidth"] == 10 and units[2].params["setting"]["binWidth"] == 20


def test_unit_key_tracks_content_and_settings(small_study):
    units = _units(small_study)
    k0 = unit_key(units[0])
    assert unit_key(units[0]) == k0
    assert unit_key(units[1]) != k0  # another ROI
    changed = ExtractionUnit(**{**units[0].__dict__, "params": merge_settings(units[0].params, {"binWidth": 5})})
    assert unit_key(changed) != k0
    write_volume(small_study / "P01" / "CT_image.nii.gz", np.full((10, 16, 12), 3, dtype=np.int16))
    assert unit_key(units[0]) != k0


def test_features_match_direct_pyradiomics_and_table_layout(small_study, tmp_path):
    import radiomics
    from radiomics import featureextractor

    from helpers.imaging.rois import peritumoral_ring, tumour_mask

    units = _units(small_study)
    result = run_extraction(units, tmp_path / "cache", progress=False)
    assert result.status_counts() == {"computed": 16, "cached": 0, "failed": 0, "empty": 0}
    preset = units[0].preset
    table = result.features_table(preset, series_order=["CT", "MR"], roi_order=["tumour", "ring2mm"])
    assert list(table.index) == ["P01", "P02", "P03", "P04"] and table["cohort"].tolist() == ["train", "train", "test", "test"]
    assert table.columns[1] == "CT_tumour_original_shape_VoxelVolume"
    assert {c.split("_original_")[0] for c in table.columns[1:]} == {"CT_tumour", "CT_ring2mm", "MR_tumour", "MR_ring2mm"}
    # Independent path: pyradiomics directly on the same image and ROI.
    radiomics.setVerbosity(40)
    image = sitk.ReadImage(str(small_study / "P03" / "MR_image.nii.gz"))
    mask = sitk.ReadImage(str(small_study / "P03" / "MR_mask.nii.gz"))
    ring = peritumoral_ring(tumour_mask(mask), 2.0, image=image)
    ext = featureextractor.RadiomicsFeatureExtractor({**SMALL_PRESET, "setting": {"binWidth": 20, "label": 1}})
    direct = ext.execute(image, ring)
    assert table.loc["P03", "MR_ring2mm_original_glcm_Contrast"] == pytest.approx(float(direct["original_glcm_Contrast"]), rel=1e-12)
    assert table.loc["P03", "MR_ring2mm_original_firstorder_Mean"] == pytest.approx(float(direct["original_firstorder_Mean"]), rel=1e-12)
    counts = result.feature_count_table(preset)
    assert counts.set_index("category").loc["Total", "CT tumour"] == 6
    prov = extraction_provenance(load_config(small_study / "study.yaml"), result)
    assert len(prov["units"]) == 16 and prov["versions"]["pyradiomics-bhklab"] == "3.1.4"


def test_cache_rerun_and_partial_files(small_study, tmp_path):
    units = _units(small_study)
    cache = tmp_path / "cache"
    first = run_extraction(units, cache, progress=False)
    preset = units[0].preset
    # A stray temporary file (as a kill during a write would leave) is never taken as a result.
    (cache / "zz").mkdir()
    (cache / "zz" / ".tmp-partial.json").write_text('{"status": "comp')
    second = run_extraction(units, cache, progress=False)
    assert second.status_counts() == {"computed": 0, "cached": 16, "failed": 0, "empty": 0}
    pd.testing.assert_frame_equal(first.features_table(preset), second.features_table(preset))
    victim = next(cache.rglob(f"{second.records[5]['key']}.json"))
    victim.unlink()
    third = run_extraction(units, cache, progress=False)
    assert third.status_counts() == {"computed": 1, "cached": 15, "failed": 0, "empty": 0}
    assert not list(cache.rglob(".tmp-*.json"))[1:]  # only the planted stray file


def test_failing_unit_is_reported_and_others_complete(small_study, tmp_path):
    units = _units(small_study)
    broken = small_study / "P02" / "MR_mask_broken.nii.gz"
    broken.write_bytes(b"not an image")
    units = [ExtractionUnit(**{**u.__dict__, "mask_path": str(broken)}) if u.patient == "P02" and u.series == "MR" else u for u in units]
    result = run_extraction(units, tmp_path / "cache", progress=False)
    assert result.status_counts() == {"computed": 14, "cached": 0, "failed": 2, "empty": 0}
    failures = result.failures_table()
    assert failures["patient"].tolist() == ["P02", "P02"] and failures["roi"].tolist() == ["tumour", "ring2mm"]
    assert failures["reason"].str.contains("patient P02, series MR").all()
    table = result.features_table(units[0].preset)
    mr_cols = [c for c in table.columns if c.startswith("MR_")]
    assert table.loc["P02", mr_cols].isna().all() and table.loc["P01", mr_cols].notna().all()
    # Failures are not cached: fixing the input and re-running computes exactly them.
    fixed = [ExtractionUnit(**{**u.__dict__, "mask_path": str(small_study / "P02" / "MR_mask.nii.gz")}) if u.patient == "P02" and u.series == "MR" else u for u in units]
    assert run_extraction(fixed, tmp_path / "cache", progress=False).status_counts() == {"computed": 2, "cached": 14, "failed": 0, "empty": 0}


@pytest.mark.slow
def test_parallel_and_dask_give_identical_tables(small_study, tmp_path):
    units = _units(small_study)
    preset = units[0].preset
    seq = run_extraction(units, tmp_path / "c1", workers=1, progress=False).features_table(preset)
    par = run_extraction(units, tmp_path / "c2", workers=2, progress=False).features_table(preset)
    pd.testing.assert_frame_equal(seq, par, check_exact=True)
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = run_extraction(units, tmp_path / "c3", scheduler_address=cluster.scheduler_address, progress=False).features_table(preset)
    pd.testing.assert_frame_equal(seq, dask, check_exact=True)


@pytest.mark.slow
def test_resume_after_kill_is_identical(small_study, tmp_path):
    """Kill a run mid-extraction; the restart resumes from the cache and gives the same table."""
    cache = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import time
        from helpers.features import extraction
        from helpers.settings.study import load_config
        from helpers.data.manifest import load_study
        cfg = load_config({str(small_study / 'study.yaml')!r})
        manifest, _ = load_study(cfg)
        units = extraction.plan_units(manifest, cfg)
        original = extraction._write_cache
        def slow(*a, **k):  # every unit written to the cache, then a pause: the kill lands between units
            original(*a, **k)
            time.sleep(0.4)
        extraction._write_cache = slow
        extraction.run_extraction(units, {str(cache)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 300  # generous: the machine may be busy; the loop exits as soon as 3 units are done
    while time.time() < deadline and len(list(cache.rglob("[0-9a-f]*.json"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(cache.rglob("[0-9a-f]*.json")))
    assert 3 <= done_before < 16
    units = _units(small_study)
    resumed = run_extraction(units, cache, progress=False)
    counts = resumed.status_counts()
    assert counts["cached"] == done_before and counts["computed"] == 16 - done_before
    fresh = run_extraction(units, tmp_path / "fresh", progress=False)
    preset = units[0].preset
    pd.testing.assert_frame_equal(resumed.features_table(preset), fresh.features_table(preset), check_exact=True)


def test_seed1762_gives_exactly_1762_features_on_real_data(tmp_path):
    cfg = load_config(REPO / "study.yaml")
    params = merge_settings(load_preset("seed1762"), cfg.extraction.series_settings["PET"])
    unit = ExtractionUnit(
        patient="STS_002", cohort="external_test", series="PET", roi="tumour", preset="seed1762",
        image_path=str(REPO / "data/sts/STS_002/PET_image.nii.gz"), mask_path=str(REPO / "data/sts/STS_002/PET_mask.nii.gz"),
        roi_kind="tumour", params=params, preprocessing=cfg.preprocessing["PET"].model_dump(mode="json"),
    )
    rec = compute_unit(unit, unit_key(unit), tmp_path)
    assert rec["status"] == "computed" and len(rec["features"]) == 1762
    assert rec["preprocessing"]["final_spacing"] == [4.0, 4.0, 4.0]
    stored = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert stored["features"] == rec["features"]


def test_second_reader_units_for_training_patients_only(small_study, tmp_path):
    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["stability"] = {"perturbation": {"mode": "dilate", "radius_mm": 1.0}}
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    df = pd.read_csv(small_study / "manifest.csv")
    df["mask_reader2"] = ""
    df.loc[df["patient"].eq("P01") & df["series"].eq("CT"), "mask_reader2"] = "P01/CT_mask.nii.gz"  # a real second reader for one scan
    df.to_csv(small_study / "manifest.csv", index=False)
    units = _units(small_study)
    second = [u for u in units if u.reader == "reader2"]
    assert {u.patient for u in second} == {"P01", "P02"}  # training cohort only
    assert len(second) == 2 * 2 * 2
    p01_ct = [u for u in second if u.patient == "P01" and u.series == "CT"]
    assert all(u.perturbation is None and u.mask_path.endswith("P01/CT_mask.nii.gz") for u in p01_ct)
    assert all(u.perturbation == {"mode": "dilate", "radius_mm": 1.0} for u in second if not (u.patient == "P01" and u.series == "CT"))
    result = run_extraction(units, tmp_path / "cache", progress=False)
    preset = units[0].preset
    r1, r2 = result.features_table(preset), result.features_table(preset, reader="reader2")
    assert list(r2.index) == ["P01", "P02"] and list(r2.columns) == list(r1.columns)
    # Identical second reader -> identical values; dilated tumour -> larger volume.
    assert r2.loc["P01", "CT_tumour_original_shape_VoxelVolume"] == r1.loc["P01", "CT_tumour_original_shape_VoxelVolume"]
    assert r2.loc["P02", "MR_tumour_original_shape_VoxelVolume"] > r1.loc["P02", "MR_tumour_original_shape_VoxelVolume"]


def test_rings_skip_shape_features_unless_asked(small_study):
    units = _units(small_study)
    ring = next(u for u in units if u.roi == "ring2mm")
    tumour = next(u for u in units if u.roi == "tumour")
    assert "shape" not in ring.params["featureClass"] and "shape" in tumour.params["featureClass"]
    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["rois"]["ring2mm"]["shape_features"] = True
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert "shape" in next(u for u in _units(small_study) if u.roi == "ring2mm").params["featureClass"]


def test_habitat_units_use_the_label_maps_without_shape(small_study):
    from types import SimpleNamespace

    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["habitats"] = {"series": ["CT"], "k_range": [2, 3]}
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    maps = {p: str(small_study / p / "CT_mask.nii.gz") for p in ("P01", "P02", "P03", "P04")}
    cfg = load_config(small_study / "study.yaml")
    manifest, _ = load_study(cfg)
    units = plan_units(manifest, cfg, SimpleNamespace(map_paths=maps, k=2))
    hab = [u for u in units if u.roi_kind == "label"]
    assert [u.roi for u in hab[:2]] == ["habitat1", "habitat2"] and {u.series for u in hab} == {"CT"} and len(hab) == 4 * 2
    assert all("shape" not in u.params["featureClass"] and u.label_map_path == maps[u.patient] for u in hab)


def test_perturbation_radius_is_at_least_one_voxel(tmp_path):
    from helpers.features.extraction import _perturbation_for

    coarse = write_volume(tmp_path / "pet.nii.gz", np.zeros((4, 4, 4), dtype=np.float32), spacing=(4.7, 4.7, 3.27))
    fine = write_volume(tmp_path / "ct.nii.gz", np.zeros((4, 4, 4), dtype=np.float32), spacing=(0.5, 0.5, 3.0))
    assert _perturbation_for({"mode": "dilate", "radius_mm": 1.0}, str(coarse))["radius_mm"] >= 3.27
    awkward = write_volume(tmp_path / "pet2.nii.gz", np.zeros((4, 4, 4), dtype=np.float32), spacing=(4.7, 4.7, 3.27004))
    assert _perturbation_for({"mode": "dilate", "radius_mm": 1.0}, str(awkward))["radius_mm"] >= sitk.ReadImage(str(awkward)).GetSpacing()[2]
    assert _perturbation_for({"mode": "dilate", "radius_mm": 1.0}, str(fine)) == {"mode": "dilate", "radius_mm": 1.0}


# -- the study's geometry policy (issue 12) ----------------------------------------------------------------------
def _shift_masks(study: Path, offset: tuple[float, float, float], spacing_factor: float = 1.0) -> None:
    """Rewrite every mask (and use it as a habitat map) with its origin moved by ``offset`` mm: as a NIfTI mask of a
    DICOM image differs by floating-point noise. The voxels do not change."""
    for path in sorted(study.glob("P0*/*_mask.nii.gz")):
        mask = sitk.ReadImage(str(path))
        mask.SetOrigin(tuple(o + d for o, d in zip(mask.GetOrigin(), offset, strict=True)))
        mask.SetSpacing(tuple(s * spacing_factor for s in mask.GetSpacing()))
        sitk.WriteImage(mask, str(path))


@pytest.mark.parametrize("offset", [(2e-6, -3e-6, 1e-6), (0.3, 0.0, -0.2)], ids=["float noise", "0.3 mm"])
def test_masks_within_tolerance_are_put_on_the_image_grid_and_give_identical_features(small_study, tmp_path, offset):
    from types import SimpleNamespace

    reference = run_extraction(_units(small_study), tmp_path / "exact", progress=False)
    _shift_masks(small_study, offset, spacing_factor=1 + 2e-7)
    units = _units(small_study)  # validation accepts the shifted masks (within geometry_tolerance)
    maps = {p: str(small_study / p / "CT_mask.nii.gz") for p in ("P01", "P02", "P03", "P04")}
    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["habitats"] = {"series": ["CT"], "k_range": [2, 2]}
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(small_study / "study.yaml")
    with_maps = plan_units(load_study(cfg)[0], cfg, SimpleNamespace(map_paths=maps, k=1))
    result = run_extraction(with_maps, tmp_path / "shifted", progress=False)
    # No unit fails on geometry (pyradiomics alone rejects a 1e-6 mm offset), habitat label maps included ...
    assert result.status_counts()["failed"] == 0, result.failures_table()
    assert any(u.roi_kind == "label" for u in with_maps) and len(with_maps) > len(units)
    # ... and the features are those of the masks on the exact grid: the voxels were kept, not resampled.
    pd.testing.assert_frame_equal(result.features_table("small").drop(columns=[c for c in result.features_table("small") if "habitat" in c]),
                                  reference.features_table("small"), check_exact=True)


def test_a_mask_beyond_tolerance_is_still_rejected_by_validation(small_study):
    from helpers.errors import ManifestError

    _shift_masks(small_study, (0.0, 0.0, 0.8))  # 0.8 mm > the default 0.5 mm
    with pytest.raises(ManifestError, match="mask origin is 0.80 mm from the image origin"):
        _units(small_study)


def test_absent_tiny_or_linear_habitats_are_missing_by_design_not_failures(small_study, tmp_path):
    # Habitat k of one patient: absent (0 voxels), 4 voxels (< qc.min_mask_voxels, set to 5 here) or a line of 10
    # voxels (pyradiomics needs two dimensions). Their features are missing by design, listed as 'empty', never 'failed'
    # (a failed unit would stop the study under the default policy).
    from types import SimpleNamespace

    maps = {}
    for patient, shape in (("P01", "absent"), ("P02", "tiny"), ("P03", "line"), ("P04", "normal")):
        label = np.zeros((10, 16, 12), dtype=np.uint8)
        label[3:7, 5:10, 4:8] = 1
        if shape == "tiny":
            label[3:4, 5:7, 4:6] = 2
        elif shape == "line":
            label[4, 6, 2:12] = 2
        elif shape == "normal":
            label[3:6, 5:8, 4:7] = 2
        maps[patient] = str(write_volume(tmp_path / "maps" / f"{patient}.nii.gz", label))
    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["habitats"] = {"series": ["CT"], "k_range": [2, 2]}
    data["qc"] = {"min_mask_voxels": 5}
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(small_study / "study.yaml")
    units = [u for u in plan_units(load_study(cfg)[0], cfg, SimpleNamespace(map_paths=maps, k=2)) if u.roi == "habitat2"]
    result = run_extraction(units, tmp_path / "cache", progress=False)
    assert result.status_counts() == {"computed": 1, "cached": 0, "failed": 0, "empty": 3}
    empty = result.empty_rois_table().set_index("patient")
    assert list(empty.index) == ["P01", "P02", "P03"]
    assert "0 voxel(s)" in empty.loc["P01", "note"] and "4 voxel(s)" in empty.loc["P02", "note"] and "a line of 10" in empty.loc["P03", "note"]
    table = result.features_table("small")
    assert table.loc[["P01", "P02", "P03"]].drop(columns="cohort").isna().all().all() and table.loc["P04"].drop("cohort").notna().all()
    # Cached as 'empty': a re-run neither recomputes nor turns them into failures.
    assert run_extraction(units, tmp_path / "cache", progress=False).status_counts() == {"computed": 0, "cached": 1, "failed": 0, "empty": 3}


# -- the cache key covers the code that computes a unit (issue 13) -------------------------------------------------
def _helpers_modules_run_by(fn, *args) -> set[str]:
    """helpers modules whose functions execute while ``fn(*args)`` runs (a profile hook on every call)."""
    seen: set[str] = set()

    def hook(frame, event, arg):
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name.startswith("helpers."):
                seen.add(name)

    sys.setprofile(hook)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return seen


def test_unit_key_covers_every_module_that_computes_a_unit(small_study, tmp_path):
    from types import SimpleNamespace

    from helpers.features import extraction

    data = yaml.safe_load((small_study / "study.yaml").read_text())
    data["extraction"]["habitats"] = {"series": ["CT"], "k_range": [2, 2]}
    data["extraction"]["stability"] = {"perturbation": {"mode": "dilate", "radius_mm": 1.0}}
    data["preprocessing"] = {"CT": {"resample_mm": [1.5, 1.5, 2.0], "zscore": True, "clip": [-100, 300]}}
    (small_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(small_study / "study.yaml")
    maps = {p: str(small_study / p / "CT_mask.nii.gz") for p in ("P01", "P02", "P03", "P04")}
    units = plan_units(load_study(cfg)[0], cfg, SimpleNamespace(map_paths=maps, k=1))
    kinds = {(u.roi_kind, u.reader) for u in units}
    assert {("tumour", "reader1"), ("ring", "reader1"), ("tumour", "reader2"), ("label", "reader1")} <= kinds
    ran: set[str] = set()
    for kind in sorted(kinds):
        unit = next(u for u in units if (u.roi_kind, u.reader) == kind)
        key = extraction.unit_key(unit)
        records = []
        ran |= _helpers_modules_run_by(lambda u=unit, k=key: records.append(extraction.compute_unit(u, k, tmp_path / "cache")))
        assert records[0]["status"] == "computed", records[0].get("error")
    # Settings models validate values that are themselves in the key; errors only raise.
    covered = set(extraction.CODE_MODULES) | {"helpers.features.extraction", "helpers.errors"}
    uncovered = sorted(m for m in ran if m not in covered and not m.startswith("helpers.settings."))
    assert not uncovered, f"compute_unit runs code of {uncovered}: add them to helpers.features.extraction.CODE_MODULES"
    assert set(extraction.CODE_MODULES) <= ran  # and every listed module does compute
    # Moving a listed module fails loudly instead of dropping it from the key.
    original = extraction.CODE_MODULES
    try:
        extraction.CODE_MODULES = (*original, "helpers.features.moved_away")
        with pytest.raises(ModuleNotFoundError):
            extraction._code_hash()
    finally:
        extraction.CODE_MODULES = original


def test_ibsi_compliance_without_the_ct_phantom_writes_the_digital_phantom_only(tmp_path):
    """``extraction.ibsi_ct_phantom: false`` (quick test runs): the digital phantom's tables, a one-row summary, no CT."""
    from helpers.reporting.writer import ReportWriter, read_ledger
    from helpers.steps.feature_extraction import write_ibsi_compliance

    from .conftest import tiny_config

    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path, extraction={"ibsi_ct_phantom": False})))
    cfg = load_config(tmp_path / "study.yaml")
    summary = write_ibsi_compliance(ReportWriter(cfg, "feature_extraction"))
    assert summary[["phantom", "mapped_features", "features_within_tolerance"]].values.tolist() == [["digital", 385, 383]]
    written = read_ledger(cfg.report_root, "feature_extraction", None)
    assert sorted({Path(p).stem for p in written}) == ["ibsi_compliance_summary", "ibsi_deviations", "ibsi_phantom_compliance",
                                                     "ibsi_phantom_unmapped"]
    from helpers.settings.study import ExtractionConfig

    assert ExtractionConfig().ibsi_ct_phantom is True  # every study's default: both phantoms
