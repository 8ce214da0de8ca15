"""Shared fixtures: a tiny synthetic study written to a temporary folder."""

from __future__ import annotations

import contextlib
import io
import locale
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml

REPO = Path(__file__).resolve().parents[1]
#: The example studies (examples/<name>/study.yaml).
EXAMPLE_NAMES = frozenset(p.name for p in (REPO / "examples").iterdir() if (p / "study.yaml").is_file())


def work_unit(nodeid: str) -> str:
    """The pytest-xdist work unit of a test (``-n 2``): the tests of one unit run in one worker, one after the other.

    A test whose parameter is the name of an example study (``test_x[001_nr_sr_three_cohorts]``) belongs to that
    example's unit: every such test asserts on the example's one run (:func:`example_run`), so the run happens once.
    Any other test belongs to its module's unit, so a module's fixtures are set up in one worker only.
    """
    path, _, name = nodeid.partition("::")
    param = name[name.rfind("[") + 1 : -1] if name.endswith("]") else ""
    return f"example {param}" if param in EXAMPLE_NAMES else path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``-n`` (pytest-xdist's default ``--dist load``): hand out whole :func:`work_unit` s, in collection order."""
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist keeps pytest-xdist's own scheduling
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # the order of pytest_collection_modifyitems below, not units by size
    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """In a pytest-xdist worker: units holding ``slow`` tests first, then ``reference`` ones, then the rest.

    The long runs start at once and the short tests fill the other worker's time at the end, instead of one long run
    starting last and running alone. Within a tier the collection order is kept; without ``-n`` nothing changes.
    """
    if not hasattr(config, "workerinput"):
        return
    tier: dict[str, int] = {}
    for item in items:
        rank = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("reference") else 2
        unit = work_unit(item.nodeid)
        tier[unit] = min(rank, tier.get(unit, 2))
    items.sort(key=lambda item: tier[work_unit(item.nodeid)])


@pytest.fixture(autouse=True)
def _process_locale_restored():
    """Tests that write DICOM with SimpleITK leave the process locale at "C" (GDCM's writer sets it when it formats
    the image position), which would turn the default text encoding of every later test into ASCII."""
    saved = locale.setlocale(locale.LC_ALL, None)
    yield
    if locale.setlocale(locale.LC_ALL, None) != saved:
        locale.setlocale(locale.LC_ALL, saved)


def write_volume(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """Write a z,y,x array as an image with the given geometry."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def image_from(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    """An in-memory image from a z,y,x array with the given geometry."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def arr(img: sitk.Image) -> np.ndarray:
    """The z,y,x voxel array of an image (a copy)."""
    return sitk.GetArrayFromImage(img)


def write_rtstruct(mask: sitk.Image, series: Path, out: Path, roi_name: str) -> Path:
    """An RTSTRUCT of a 0/1 mask on a DICOM series' grid, as a planning system would export it (test data only).

    Each run of inside voxels along a row becomes one closed planar contour around those voxel centres (0.4 voxel
    outside them); the runs are disjoint, so the even-odd fill of the RTSTRUCT reader gives the mask back exactly.
    """
    from helpers.imaging.io import dicom_series_files

    first = pydicom.dcmread(dicom_series_files(series)[0], stop_before_pixels=True)
    arr = sitk.GetArrayFromImage(mask)
    contours = []
    for z, y in zip(*np.nonzero(arr.any(axis=2)), strict=True):
        row = np.concatenate([[0], arr[z, y], [0]]).astype(int)
        starts, ends = np.flatnonzero(np.diff(row) == 1), np.flatnonzero(np.diff(row) == -1) - 1
        for x0, x1 in zip(starts, ends, strict=True):
            corners = [(x0 - 0.4, y - 0.4), (x1 + 0.4, y - 0.4), (x1 + 0.4, y + 0.4), (x0 - 0.4, y + 0.4)]
            points = [c for x, yy in corners for c in mask.TransformContinuousIndexToPhysicalPoint((float(x), float(yy), float(z)))]
            item = pydicom.Dataset()
            item.ContourGeometricType, item.NumberOfContourPoints, item.ContourData = "CLOSED_PLANAR", 4, [f"{v:.6f}" for v in points]
            contours.append(item)
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(out)])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "RTSTRUCT", first.PatientID, first.StudyInstanceUID
    ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(out), "series"])
    roi = pydicom.Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, roi_name, first.FrameOfReferenceUID
    ds.StructureSetROISequence = [roi]
    roi_contour = pydicom.Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ContourSequence = 1, contours
    ds.ROIContourSequence = [roi_contour]
    referenced_series, study, frame = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    referenced_series.SeriesInstanceUID = first.SeriesInstanceUID
    study.RTReferencedSeriesSequence = [referenced_series]
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = first.FrameOfReferenceUID, [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    ds.save_as(out, enforce_file_format=True)
    return out


def write_dicom_series(image: sitk.Image, folder: Path, patient_id: str, modality: str = "MR", **header) -> Path:
    """A 3D image as an MR or CT DICOM series (one file per slice, signed 16-bit, CT with the identity rescale), with
    extra header values (e.g. identifying ones planted for the PHI tests); UIDs are derived from ``patient_id`` so
    re-written series are the same."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    arr = sitk.GetArrayFromImage(image).astype(np.int16)
    uid = lambda *k: generate_uid(entropy_srcs=[patient_id, *map(str, k)])  # noqa: E731
    sx, sy, sz = image.GetSpacing()
    for k in range(arr.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid("sop", k)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, f"{patient_id}^"
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uid("study"), uid("series"), uid("frame")
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in image.GetDirection()[0::3] + image.GetDirection()[1::3]]
        ds.PixelSpacing, ds.SliceThickness = [f"{sy:.6f}", f"{sx:.6f}"], f"{sz:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = arr[k].tobytes()
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


def tiny_config(tmp: Path, **overrides) -> dict:
    cfg = {
        "study": "tiny",
        "seed": 7,
        "manifest": "manifest.csv",
        "patient_table": "patients.csv",
        "cohort_rule": "fixed by the test",
        "cohorts": {"train": {"role": "train"}, "test": {"role": "test"}},
        "series": {"CT": {"modality": "CT", "display_window": [-100, 200]}, "MR": {"modality": "MR"}},
        "labels": {"tumour": 1},
        "endpoints": {"binary": "outcome"},
        "steps": [{"name": "acquisition_qc", "notebook": str(REPO / "notebooks" / "01_acquisition_qc.ipynb"), "per_cohort": True}],
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_study(tmp_path: Path):
    """Four patients (two per cohort), CT + MR each, 12x16x10 volumes with a cubic tumour.

    Returns the folder; ``study.yaml``, ``manifest.csv`` and ``patients.csv`` are in it.
    """
    rng = np.random.default_rng(0)
    rows = []
    for i, (patient, cohort) in enumerate([("P01", "train"), ("P02", "train"), ("P03", "test"), ("P04", "test")]):
        for series in ("CT", "MR"):
            arr = rng.normal(40 if series == "CT" else 300, 10, size=(10, 16, 12)).astype(np.int16)
            mask = np.zeros(arr.shape, dtype=np.uint8)
            mask[3:7, 5:10, 4:8] = 1
            img = write_volume(tmp_path / patient / f"{series}_image.nii.gz", arr)
            msk = write_volume(tmp_path / patient / f"{series}_mask.nii.gz", mask)
            rows.append({"patient": patient, "cohort": cohort, "series": series,
                         "image": img.relative_to(tmp_path).as_posix(), "mask": msk.relative_to(tmp_path).as_posix()})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"patient": ["P01", "P02", "P03", "P04"], "outcome": [0, 1, 0, 1]}).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path), sort_keys=False))
    return tmp_path


@pytest.fixture
def sts_dicom_copy(tmp_path: Path) -> Path:
    """A writable copy of the embedded STS DICOM data (two patients)."""
    dst = tmp_path / "sts_dicom"
    shutil.copytree(REPO / "data" / "sts_dicom", dst)
    return dst


@pytest.fixture
def planted_feature_study(tmp_path: Path):
    """The planted feature study in a fresh folder (see :func:`make_planted_feature_study`)."""
    return make_planted_feature_study(tmp_path)


def make_planted_feature_study(tmp_path: Path, super_resolution: bool = False):
    """A study whose feature tables are planted (no images to extract): for notebooks 04/05.

    100 patients (70 training, 30 external test), series CT and MR, ROI tumour; 3 informative
    features drive a logistic outcome; 'unstable' features differ between the two readers;
    MR features carry a multiplicative + additive scanner effect (two scanners in both cohorts).
    With ``super_resolution``, the config declares notebook 02's super-resolution arm on MR_T1 and
    the feature tables hold an ``MR_T1_SR`` copy of every MR feature (same scanner effect) plus one more
    informative SR feature, so the SR block carries more of the planted signal than the NR block.
    Returns (folder, truth) where truth names the informative and unstable features.
    """
    rng = np.random.default_rng(11)
    n, n_noise = 100, 40
    patients = [f"S{i:03d}" for i in range(n)]
    cohort = ["train"] * 70 + ["test"] * 30
    scanner = np.where(rng.random(n) < 0.5, "A", "B")
    cols = {}
    informative = ["CT_tumour_original_firstorder_Mean", "CT_tumour_original_glcm_Contrast", "MR_T1_tumour_original_glszm_ZoneEntropy"]
    signal = rng.normal(size=(n, 3))
    for j, name in enumerate(informative):
        cols[name] = signal[:, j]
    for j in range(n_noise):
        series = "CT" if j % 2 else "MR_T1"
        cols[f"{series}_tumour_original_firstorder_Noise{j}"] = rng.normal(size=n)
    table = pd.DataFrame(cols, index=pd.Index(patients, name="patient"))
    mr = [c for c in table.columns if c.startswith("MR_T1_")]
    table.loc[scanner == "B", mr] = table.loc[scanner == "B", mr] * 1.5 + 2.0  # planted scanner effect
    logit = 3.0 * signal[:, 0] - 3.0 * signal[:, 1] + 3.0 * signal[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    reader2 = table.copy() + rng.normal(0, 0.05, table.shape)
    unstable = [f"CT_tumour_original_firstorder_Noise{j}" for j in (1, 3, 5)]
    reader2[unstable] = rng.normal(size=(n, 3))  # the second reading has nothing to do with the first
    if super_resolution:
        # SR MR: the NR MR features re-measured (small noise, same scanner effect) plus a texture feature that only the
        # finer grid resolves (it carries the second planted signal). Own generator: the NR study's values are unchanged.
        sr_rng = np.random.default_rng(12)
        sr = table[mr].copy()
        sr.columns = [c.replace("MR_T1_", "MR_T1_SR_", 1) for c in mr]
        sr += sr_rng.normal(0, 0.1, sr.shape)
        contrast = signal[:, 1] + sr_rng.normal(0, 0.1, n)
        sr["MR_T1_SR_tumour_original_glcm_Contrast"] = np.where(scanner == "B", contrast * 1.5 + 2.0, contrast)
        table = table.join(sr)
        reader2 = reader2.join(sr + sr_rng.normal(0, 0.05, sr.shape))
    root = tmp_path / "reports" / "planted" / "features"
    root.mkdir(parents=True)
    table.assign(cohort=cohort)[["cohort", *table.columns]].to_parquet(root / "features_planted.parquet")
    reader2.loc[[p for p, c in zip(patients, cohort) if c == "train"]].assign(cohort="train").to_parquet(root / "features_planted_reader2.parquet")
    rows = []
    for p, c, s in zip(patients, cohort, scanner):
        for series in ("CT", "MR_T1"):
            img = write_volume(tmp_path / p / f"{series}.nii.gz", np.zeros((3, 3, 3), dtype=np.int16))
            msk = np.zeros((3, 3, 3), dtype=np.uint8)
            msk[1, 1, 1] = 1
            mpath = write_volume(tmp_path / p / f"{series}_mask.nii.gz", msk)
            rows.append({"patient": p, "cohort": c, "series": series, "scanner": f"scanner {s}" if series == "MR_T1" else "ct",
                         "image": img.relative_to(tmp_path).as_posix(), "mask": mpath.relative_to(tmp_path).as_posix()})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    # Clinical variables: age carries a little of the planted signal, grade more, sex none; 5 ages missing.
    age = np.round(60 + 8 * signal[:, 0] + rng.normal(0, 8, n), 1)
    age[rng.choice(n, 5, replace=False)] = np.nan
    grade = np.where(logit + rng.normal(0, 2, n) > 1, "G3", np.where(rng.random(n) < 0.5, "G1", "G2"))
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    # Time to metastasis: exponential with hazard rising with the planted logit, censored at 60 months or uniformly.
    t_event = rng.exponential(40 * np.exp(-0.5 * logit))
    t_cens = np.minimum(60.0, rng.uniform(10, 90, n))
    time = np.round(np.minimum(t_event, t_cens), 2)
    event = (t_event <= t_cens).astype(int)
    pd.DataFrame({"patient": patients, "outcome": y, "age": age, "grade": grade, "sex": sex, "time_months": time, "metastasis": event}).to_csv(
        tmp_path / "patients.csv", index=False)
    # Two readers' semantic scores of the training patients: diameter (continuous, small disagreement),
    # necrosis grade (ordinal, one-step disagreements on 10%), margin (nominal, 15% flipped).
    train_ids = [p for p, c in zip(patients, cohort) if c == "train"]
    diameter = rng.uniform(20, 120, len(train_ids))
    necrosis = rng.integers(0, 4, len(train_ids))
    margin = np.where(rng.random(len(train_ids)) < 0.5, "smooth", "irregular")
    flip = rng.random(len(train_ids)) < 0.15
    step = (rng.random(len(train_ids)) < 0.1).astype(int)
    pd.concat([
        pd.DataFrame({"patient": train_ids, "reader": "R1", "diameter_mm": diameter.round(1), "necrosis": necrosis, "margin": margin}),
        pd.DataFrame({"patient": train_ids, "reader": "R2", "diameter_mm": (diameter + rng.normal(0, 3, len(train_ids))).round(1),
                      "necrosis": np.clip(necrosis + step, 0, 3), "margin": np.where(flip, np.where(margin == "smooth", "irregular", "smooth"), margin)}),
    ]).to_csv(tmp_path / "reader_scores.csv", index=False)
    cfg = tiny_config(
        tmp_path, study="planted", seed=3, cohorts={"train": {"role": "train"}, "test": {"role": "test"}},
        series={"CT": {"modality": "CT"}, "MR_T1": {"modality": "MR"}},
        extraction={"presets": ["planted"], "rois": {"tumour": {"kind": "tumour"}}},
        signature={"preset": "planted", "icc": {"icc_type": "ICC(A,1)", "threshold": 0.8},
                   "harmonization": [{"series": "MR_T1", "batch_field": "scanner", "unseen_batch": "error"}],
                   "steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.1}, {"step": "correlation", "threshold": 0.9},
                             {"step": "mrmr", "k": 8}, {"step": "lasso", "lambda_rule": "min", "Cs": 20, "random_state": 3}]},
        models={"algorithms": ["logistic", "random_forest"], "search": "none", "cv": 4,
                "grid_steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.1}, {"step": "mrmr", "k": 5}],
                "final_algorithm": "logistic"},
        endpoints={"binary": "outcome", "time": "time_months", "event": "metastasis"},
        clinical={"continuous": ["age"], "categorical": ["grade", "sex"]},
        reader_scores={"table": "reader_scores.csv", "variables": {"diameter_mm": "continuous", "necrosis": "ordinal", "margin": "nominal"}},
        survival={"horizons": [12, 24, 36], "rsf_trees": 50},
        steps=[{"name": "signature", "notebook": str(REPO / "notebooks" / "04_signature.ipynb"), "per_cohort": False},
               {"name": "models", "notebook": str(REPO / "notebooks" / "05_models.ipynb"), "per_cohort": False, "depends_on": ["signature"]},
               {"name": "statistics", "notebook": str(REPO / "notebooks" / "06_statistics.ipynb"), "per_cohort": False, "depends_on": ["models"]},
               {"name": "supplement", "notebook": str(REPO / "notebooks" / "07_supplement.ipynb"), "per_cohort": False,
                "depends_on": ["signature", "models", "statistics"]}],
        statistics={"subgroups": [{"series": "MR_T1", "field": "scanner"}], "n_bootstrap": 200},
    )
    if super_resolution:
        cfg["super_resolution"] = {"series": "MR_T1", "settings": {"epochs": 2, "warmup_epochs": 1}}
        cfg["signature"]["harmonization"].append({"series": "MR_T1_SR", "batch_field": "scanner", "unseen_batch": "error"})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path, {"informative": informative, "unstable": unstable, "scanner": dict(zip(patients, scanner)), "y": dict(zip(patients, y)),
                      "reader_flip_rate": float(flip.mean())}


class ExampleRun(NamedTuple):
    """One example study run end to end: its folder (config, cohort, ``reports/``) and what the run printed."""

    folder: Path
    printed: str


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """``example_run(name)``: example ``name`` run end to end by ``python -m helpers run`` (an :class:`ExampleRun`).

    The example is prepared by ``tests/test_examples.py::_prepare`` (a small simulated cohort or the generated table,
    lighter settings) and run once per test process; every test asserting on the same example shares that run. Such
    tests are parametrized by the example's name, which puts them in the example's :func:`work_unit`, so pytest-xdist
    runs them in one worker. A failed run fails every test that asks for it.
    """
    from helpers.runner.cli import main
    from tests.test_examples import _prepare

    runs: dict[str, ExampleRun | Exception] = {}

    def run(name: str) -> ExampleRun:
        if name not in runs:
            try:
                folder = _prepare(name, tmp_path_factory.mktemp("examples"))
                printed = io.StringIO()
                try:
                    with contextlib.redirect_stdout(printed):
                        code = main(["run", "--config", str(folder / "study.yaml")])
                finally:
                    sys.stdout.write(printed.getvalue())  # the progress lines, in the captured output of the test
                assert code == 0, f"python -m helpers run failed on example {name}"
                runs[name] = ExampleRun(folder, printed.getvalue())
            except Exception as exc:  # recorded so that later tests on this run fail fast; re-raised here
                runs[name] = exc
                raise
        result = runs[name]
        if isinstance(result, Exception):
            pytest.fail(f"the run of example {name} failed in an earlier test: {result!r}")
        return result

    return run

