"""Reliability of whole runs (issue 7): kill and resume, determinism across workers, no identifying DICOM values in reports.

The runs go through the real runner (``python -m helpers run`` / :func:`helpers.runner.pipeline.run_study`)
and the real notebooks 01 and 03-05 on tiny synthetic studies. One uninterrupted run (one worker) is
shared by the module; it is the reference of both the resumed run and the two-worker run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import SimpleITK as sitk
import yaml

from helpers.data.manifest import load_study
from helpers.features.extraction import compute_unit, plan_units, run_extraction, unit_key
from helpers.reporting.writer import find_values_in_reports, read_ledger
from helpers.runner.pipeline import run_study
from helpers.settings.study import load_config

from .conftest import tiny_config, write_volume

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

# A small preset that still gives each unit a few tenths of a second (LoG filter, texture classes).
PRESET = {
    "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
    "featureClass": {"shape": ["VoxelVolume", "Sphericity"], "firstorder": ["Mean", "Median", "Entropy", "Skewness", "Maximum"],
                     "glcm": ["Contrast", "JointEntropy", "Correlation"], "glszm": ["ZoneEntropy"]},
    "setting": {"binWidth": 10, "label": 1},
}
N_PATIENTS = 24
N_UNITS = N_PATIENTS * 2  # one series x two ROIs (tumour, ring)
# Everything a study's results consist of (provenance, executed notebooks and the cache record the run itself).
RESULT_FOLDERS = ("tables", "features", "figures", "models")


def _extraction_study(folder: Path, workers: int) -> Path:
    """24 patients (16 training, 8 test), one CT each with a spherical tumour whose intensity follows the outcome.

    Steps: feature_extraction -> signature -> models (notebooks 03-05). The data do not depend on ``workers``.
    """
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.arange(N_PATIENTS) % 2
    signal_ = 1.2 * y + rng.normal(0, 0.8, N_PATIENTS)
    zz, yy, xx = np.mgrid[:16, :32, :32]
    radius2 = ((zz - 8) * 2.0) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2
    rows, patients = [], []
    for i in range(N_PATIENTS):
        patient, cohort = f"R{i:02d}", "train" if i < 16 else "test"
        ct = rng.normal(40, 12, size=zz.shape)
        tumour = radius2 < (7 + i % 3) ** 2
        ct[tumour] += 30 + 15 * signal_[i] + rng.normal(0, 8 + 3 * abs(signal_[i]), int(tumour.sum()))
        img = write_volume(folder / patient / "CT.nii.gz", ct.astype(np.int16))
        msk = write_volume(folder / patient / "CT_mask.nii.gz", tumour.astype(np.uint8))
        rows.append({"patient": patient, "cohort": cohort, "series": "CT", "image": img.relative_to(folder).as_posix(),
                     "mask": msk.relative_to(folder).as_posix()})
        patients.append(patient)
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    pd.DataFrame({"patient": patients, "outcome": y}).to_csv(folder / "patients.csv", index=False)
    (folder / "preset.yaml").write_text(yaml.safe_dump(PRESET))
    cfg = tiny_config(
        folder, study="rel", seed=11, series={"CT": {"modality": "CT"}},
        extraction={"presets": ["preset.yaml"], "rois": {"tumour": {"kind": "tumour"}, "ring2mm": {"kind": "ring", "width_mm": 2}},
                    "workers": workers, "ibsi_ct_phantom": False},
        signature={"preset": "preset", "icc": None,
                   "steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.5}, {"step": "correlation", "threshold": 0.95},
                             {"step": "mrmr", "k": 4}]},
        models={"algorithms": ["logistic", "random_forest"], "search": "none", "cv": 3,
                "grid_steps": [{"step": "zscore"}, {"step": "mrmr", "k": 3}], "final_algorithm": "logistic"},
        steps=[{"name": "feature_extraction", "notebook": str(NOTEBOOKS / "03_feature_extraction.ipynb"), "per_cohort": False},
               {"name": "signature", "notebook": str(NOTEBOOKS / "04_signature.ipynb"), "per_cohort": False,
                "depends_on": ["feature_extraction"]},
               {"name": "models", "notebook": str(NOTEBOOKS / "05_models.ipynb"), "per_cohort": False, "depends_on": ["signature"]}],
    )
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder / "study.yaml"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file in the result folders of ``reports/<study>/``."""
    return {p.relative_to(root).as_posix(): _sha256(p) for d in RESULT_FOLDERS for p in sorted((root / d).rglob("*")) if p.is_file()}


def _cache_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Finished unit files of the cache (temporary files excluded): key -> (inode, mtime_ns)."""
    out = {}
    for p in cache.glob("??/*.json"):
        if not p.name.startswith("."):
            st = p.stat()
            out[p.stem] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The study run once, uninterrupted, with one extraction worker: the reference. Returns reports/<study>/."""
    cfg_path = _extraction_study(tmp_path_factory.mktemp("uninterrupted"), workers=1)
    results = run_study(cfg_path, out=io.StringIO())
    assert [r.status for r in results] == ["ran", "ran", "ran"]
    root = load_config(cfg_path).report_root
    prov = json.loads((root / "provenance" / "extraction.json").read_text())
    assert prov["unit_counts"] == {"computed": N_UNITS, "cached": 0, "failed": 0, "empty": 0}
    return root


def _kill_tree(proc: subprocess.Popen, token: str) -> None:
    """SIGKILL the runner and every process it started (no clean-up runs in any of them).

    papermill's kernel runs in its own session and the extraction pool's workers below it, so a process-group kill
    would miss them; they are found as the runner's descendants and, in case one was reparented meanwhile, by the
    marker variable the runner's environment passed down to all of them.
    """
    def ours() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("RELIABILITY_TEST_RUN") == token:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    try:
        parent = psutil.Process(proc.pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for _ in range(3):
        for p in tree + ours():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(tree + ours(), timeout=30)
        if not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]:
            return
        tree = alive
    raise AssertionError(f"processes survived SIGKILL: {alive}")


@pytest.mark.slow
def test_killed_run_resumes_from_cache_and_matches_uninterrupted_run(uninterrupted, tmp_path):
    cfg_path = _extraction_study(tmp_path / "study", workers=2)
    root = load_config(cfg_path).report_root
    cache = root / ".cache" / "extraction"
    cmd = [sys.executable, "-m", "helpers", "run", "--config", str(cfg_path), "--step", "feature_extraction"]
    log = (tmp_path / "killed.log").open("w")
    token = f"{os.getpid()}-{time.time_ns()}"
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RELIABILITY_TEST_RUN": token})
    try:
        deadline = time.time() + 300  # generous for a busy machine; the loop ends as soon as 4 units are done
        while time.time() < deadline and proc.poll() is None and len(_cache_files(cache)) < 4:
            time.sleep(0.01)
        assert proc.poll() is None, f"the runner ended before it could be killed:\n{(tmp_path / 'killed.log').read_text()}"
    finally:
        _kill_tree(proc, token)
        log.close()
    before = _cache_files(cache)
    assert 4 <= len(before) < N_UNITS, len(before)
    assert not (root / "features" / "features_preset.parquet").exists()  # the kill came before the tables were written

    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "feature_extraction: running" in out.stdout  # the killed step never finished, so it runs again
    after = _cache_files(cache)
    # (a) Nothing finished was recomputed: the files are untouched and the run reports exactly them as cached.
    assert {k: after[k] for k in before} == before
    assert len(after) == N_UNITS
    prov = json.loads((root / "provenance" / "extraction.json").read_text())
    assert prov["unit_counts"] == {"computed": N_UNITS - len(before), "cached": len(before), "failed": 0, "empty": 0}
    assert {u["key"] for u in prov["units"] if u["status"] == "cached"} == set(before)
    # (b) The results are byte-identical to the uninterrupted run's (another folder, another time, one worker):
    # no path, timestamp, timing or cache history in any table.
    outputs = [o for o in read_ledger(root, "feature_extraction", None) if o.split("/")[0] in RESULT_FOLDERS]
    assert {"features/features_preset.parquet", "features/features_preset.csv", "features/extraction_diagnostics.parquet",
            "tables/feature_counts_preset.csv", "tables/feature_counts_preset.xlsx", "tables/extraction_failures.csv"} <= set(outputs)
    reference = _result_hashes(uninterrupted)
    assert {o: _sha256(root / o) for o in outputs} == {o: reference[o] for o in outputs}


@pytest.mark.slow
def test_one_and_two_workers_give_byte_identical_results(uninterrupted, tmp_path):
    cfg_path = _extraction_study(tmp_path / "study", workers=2)
    results = run_study(cfg_path, out=io.StringIO())
    assert [r.status for r in results] == ["ran", "ran", "ran"]
    root = load_config(cfg_path).report_root
    hashes, reference = _result_hashes(root), _result_hashes(uninterrupted)
    # Extraction, signature and model outputs: feature tables, selected features, Rad-scores, predictions, the
    # model grid, figures and the pickled models.
    assert {"features/features_preset.parquet", "features/modelling_features.parquet", "features/radscores.parquet",
            "features/predictions_final_model.parquet", "tables/model_grid.csv", "tables/selection_pathway.xlsx",
            "figures/auc_heatmap_cv.png", "figures/shap_beeswarm.pdf", "models/final_model.joblib"} <= set(hashes)
    assert len(hashes) >= 40
    assert hashes == reference


def _one_unit(study_cfg: Path):
    cfg = load_config(study_cfg)
    manifest, _ = load_study(cfg)
    return plan_units(manifest, cfg)[:3]


def test_cache_file_cut_short_is_never_read_as_valid(tmp_path, monkeypatch):
    """A process killed while writing a unit leaves no file under the unit's name; a damaged file is recomputed."""
    cfg_path = _extraction_study(tmp_path / "study", workers=1)
    monkeypatch.chdir(cfg_path.parent)  # the preset path is relative to the study folder (the notebooks' working directory)
    units = _one_unit(cfg_path)
    cache = tmp_path / "cache"
    key = unit_key(units[0])
    # Kill the process in the middle of writing the record (after half of it reached the file).
    script = f"""
import json, os, signal, sys
sys.path.insert(0, {str(REPO)!r})
from helpers.features import extraction
from helpers.settings.study import load_config
from helpers.data.manifest import load_study
class HalfThenDie:
    def dump(self, obj, fh):
        text = json.dumps(obj)
        fh.write(text[: len(text) // 2]); fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return getattr(json, name)
cfg = load_config({str(cfg_path)!r})
manifest, _ = load_study(cfg)
unit = extraction.plan_units(manifest, cfg)[0]
extraction.json = HalfThenDie()
extraction.compute_unit(unit, {key!r}, {str(cache)!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=cfg_path.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = [p for p in cache.rglob("*") if p.is_file()]
    assert len(partial) == 1 and partial[0].name.startswith(".tmp-") and partial[0].stat().st_size > 0
    assert not _cache_files(cache)  # nothing under a unit's name
    first = run_extraction(units, cache, progress=False)
    assert first.status_counts() == {"computed": 3, "cached": 0, "failed": 0, "empty": 0}
    # A damaged file under the unit's name (e.g. a copy of the cache cut short) is recomputed, not read or fatal.
    target = next(cache.glob(f"??/{key}.json"))
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])
    second = run_extraction(units, cache, progress=False)
    assert second.status_counts() == {"computed": 1, "cached": 2, "failed": 0, "empty": 0}
    assert json.loads(target.read_text())["features"] == first.records[0]["features"]
    assert compute_unit(units[0], key, cache)["status"] == "cached"


# ----------------------------------------------------------------------------------------------------------
# Patient-identifying DICOM values never reach reports/

IDENTIFYING = {
    "0010|0010": "Quixby^Zelda",          # PatientName
    "0010|0020": "MRN5550123",            # PatientID (the manifest uses pseudonyms D01..D04)
    "0010|0030": "19580417",              # PatientBirthDate
    "0008|0080": "Marlowe Vance Clinic",  # InstitutionName
    "0008|0050": "ACC7730419",            # AccessionNumber
    "0008|0090": "Threlkeld^Osric",       # ReferringPhysicianName
    "0008|0020": "20190822",              # StudyDate
    "0008|0021": "20190822",              # SeriesDate
    "0008|1010": "Vance-CT-Room-7",       # StationName
    "0020|0010": "STUDY8812",             # StudyID
}
SEARCHED = sorted(set(IDENTIFYING.values()) | {"Quixby", "Zelda", "Threlkeld", "Osric", "Marlowe", "1958-04-17", "2019-08-22"})
TINY_PRESET = {"imageType": {"Original": {}},
               "featureClass": {"shape": ["VoxelVolume"], "firstorder": ["Mean", "Entropy"], "glcm": ["Contrast"]},
               "setting": {"binWidth": 10, "label": 1}}


def _write_dicom_series(folder: Path, array: np.ndarray, spacing: tuple[float, float, float], index: int) -> None:
    """A CT series (z,y,x int16 array), one file per slice, every slice carrying the identifying values."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    root_uid = "1.2.826.0.1.3680043.8.498.7"
    tags = {
        **IDENTIFYING, "0008|0060": "CT", "0008|0070": "GE MEDICAL SYSTEMS", "0008|1090": "Discovery ST", "0018|0060": "120",
        "0018|0050": f"{spacing[2]}", "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0020|0037": "1\\0\\0\\0\\1\\0",
        "0020|000d": f"{root_uid}.{index}.1", "0020|000e": f"{root_uid}.{index}.2", "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
        "0028|1052": "0", "0028|1053": "1",
    }
    for z in range(array.shape[0]):
        sl = image[:, :, z]
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        sl.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, z))))
        sl.SetMetaData("0020|0013", str(z + 1))
        sl.SetMetaData("0008|0018", f"{root_uid}.{index}.3.{z + 1}")
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(sl)


@pytest.fixture
def identifying_dicom_study(tmp_path: Path) -> Path:
    """Four patients, each a CT DICOM series with identifying values in every header and a NIfTI tumour mask."""
    rng = np.random.default_rng(3)
    rows = []
    for i, cohort in enumerate(["train", "train", "test", "test"]):
        patient = f"D{i + 1:02d}"
        ct = rng.normal(40, 10, size=(10, 20, 20)).astype(np.int16)
        mask = np.zeros(ct.shape, dtype=np.uint8)
        mask[3:7, 6:14, 6:13] = 1
        ct[mask > 0] += np.int16(30 + 10 * i)
        _write_dicom_series(tmp_path / patient / "CT", ct, (0.8, 0.8, 2.5), i + 1)
        write_volume(tmp_path / patient / "CT_mask.nii.gz", mask, spacing=(0.8, 0.8, 2.5))
        rows.append({"patient": patient, "cohort": cohort, "series": "CT", "image": f"{patient}/CT", "mask": f"{patient}/CT_mask.nii.gz"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"patient": [r["patient"] for r in rows], "outcome": [0, 1, 0, 1]}).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_PRESET))
    cfg = tiny_config(
        tmp_path, study="phi", series={"CT": {"modality": "CT", "display_window": [-100, 200]}},
        # Habitat maps are images written under reports/ (a header could carry DICOM values): kept, at a single K.
        extraction={"presets": ["tiny.yaml"], "rois": {"tumour": {"kind": "tumour"}},
                    "habitats": {"series": ["CT"], "k_range": [2, 2], "ith_k_range": [2, 2], "max_voxels_per_patient": 100},
                    "ibsi_ct_phantom": False},
        steps=[{"name": "acquisition_qc", "notebook": str(NOTEBOOKS / "01_acquisition_qc.ipynb"), "per_cohort": True},
               {"name": "feature_extraction", "notebook": str(NOTEBOOKS / "03_feature_extraction.ipynb"), "per_cohort": False}],
    )
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path / "study.yaml"


@pytest.mark.slow
def test_identifying_dicom_values_never_reach_reports(identifying_dicom_study):
    # The planted values are really in the headers the pipeline reads.
    import pydicom

    ds = pydicom.dcmread(next((identifying_dicom_study.parent / "D01" / "CT").glob("*.dcm")))
    assert str(ds.PatientName) == "Quixby^Zelda" and ds.PatientID == "MRN5550123" and ds.InstitutionName == "Marlowe Vance Clinic"
    results = run_study(identifying_dicom_study, out=io.StringIO())
    assert [r.status for r in results] == ["ran", "ran", "ran"]
    root = load_config(identifying_dicom_study).report_root
    # The DICOM series were read: acquisition values from their headers, features from their pixels.
    acq = pd.read_csv(root / "tables" / "acquisition_parameters_train.csv", dtype=str)
    assert acq.loc[0, "model"] == "Discovery ST" and acq.loc[0, "n_slices"] == "10"
    table = pd.read_parquet(root / "features" / "features_tiny.parquet")
    assert list(table.index) == ["D01", "D02", "D03", "D04"] and table["CT_tumour_original_firstorder_Mean"].notna().all()
    assert len(list((root / "rois" / "habitats").glob("*.nii.gz"))) == 4
    kinds = {p.suffix for p in root.rglob("*") if p.is_file()}
    assert {".csv", ".xlsx", ".parquet", ".png", ".pdf", ".ipynb", ".json", ".gz"} <= kinds
    # Every file under reports/ (and what it embeds) is searched, the extraction cache included.
    assert find_values_in_reports(root, SEARCHED) == {}


def test_identifying_value_search_looks_inside_containers(tmp_path):
    """The search of the test above finds a value hidden in compressed or encoded places (so its 'nothing found' means something)."""
    import base64
    import zipfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image, PngImagePlugin

    root = tmp_path / "reports"
    root.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "scanned for Quixby^Zelda", zip=True)
    Image.new("L", (4, 4)).save(root / "figure.png", pnginfo=info)
    png_bytes = (root / "figure.png").read_bytes()
    assert b"quixby" not in png_bytes.lower()  # compressed: a plain byte search would miss it
    fig = plt.figure()
    fig.text(0.5, 0.5, "Threlkeld^Osric")
    with matplotlib.rc_context({"pdf.compression": 9, "pdf.use14corefonts": True}):
        fig.savefig(root / "figure.pdf")
    plt.close(fig)
    assert b"threlkeld" not in (root / "figure.pdf").read_bytes().lower()
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(png_bytes).decode()}}]}]}
    (root / "executed.ipynb").write_text(json.dumps(nb))
    (root / "page.html").write_text(f'<img src="data:image/png;base64,{base64.b64encode(png_bytes).decode()}">')
    with zipfile.ZipFile(root / "table.xlsx", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/sharedStrings.xml", "<si><t>Marlowe Vance Clinic</t></si>")
    label_map = sitk.GetImageFromArray(np.zeros((2, 2, 2), dtype=np.uint8))
    label_map.SetMetaData("ITK_FileNotes", "MRN5550123")  # the NIfTI header's free-text field, inside the gzip stream
    sitk.WriteImage(label_map, str(root / "map.nii.gz"), True)
    assert b"mrn5550123" not in (root / "map.nii.gz").read_bytes().lower()
    (root / "other.bin").write_bytes(zlib.compress(b"nothing identifying here"))
    hits = find_values_in_reports(root, ["Quixby", "Threlkeld", "Marlowe Vance Clinic", "MRN5550123", "absent-value"])
    assert hits == {"Quixby": ["executed.ipynb", "figure.png", "page.html"], "Threlkeld": ["figure.pdf"],
                    "Marlowe Vance Clinic": ["table.xlsx"], "MRN5550123": ["map.nii.gz"]}
