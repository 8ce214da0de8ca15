"""Cohort-level habitats: fitted on the training cohort only, applied to everyone."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from helpers.data.manifest import load_study
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import load_config
from helpers.steps.feature_extraction import cohort_habitats, write_habitat_outputs

from .conftest import write_volume


@pytest.fixture
def habitat_study(tiny_study):
    """Tumours with two planted intensity habitats (low/high halves) in CT and MR."""
    rng = np.random.default_rng(3)
    for patient in ("P01", "P02", "P03", "P04"):
        for series, (lo, hi) in {"CT": (0, 100), "MR": (200, 600)}.items():
            arr = rng.normal(lo, 5, size=(10, 16, 12))
            arr[3:7, 5:10, 6:8] = rng.normal(hi, 5, size=(4, 5, 2))
            write_volume(tiny_study / patient / f"{series}_image.nii.gz", arr.astype(np.int16))
    data = yaml.safe_load((tiny_study / "study.yaml").read_text())
    data["extraction"] = {"habitats": {"series": ["CT", "MR"], "k_range": [2, 3], "ith_k_range": [2, 3], "max_voxels_per_patient": 50}}
    (tiny_study / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tiny_study


def _fit(study):
    cfg = load_config(study / "study.yaml")
    manifest, _ = load_study(cfg)
    return cfg, manifest, cohort_habitats(manifest, cfg, ReportWriter(cfg, "feature_extraction"))


def test_habitats_recover_planted_regions_and_write_maps(habitat_study):
    cfg, manifest, hab = _fit(habitat_study)
    assert hab.k == 2
    assert sorted(hab.map_paths) == ["P01", "P02", "P03", "P04"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(hab.map_paths["P03"]))
    # Tumour is [3:7, 5:10, 4:8]; the bright half is x 6..7: habitat 2 (ordered by ascending first-channel centroid).
    assert (labels[3:7, 5:10, 6:8] == 2).all() and (labels[3:7, 5:10, 4:6] == 1).all()
    assert (labels[0] == 0).all()
    assert hab.fractions.loc[hab.fractions["patient"] == "P03", "habitat_2"].item() == pytest.approx(0.5)
    assert set(hab.ith["k"]) == {2, 3} and hab.ith["ith_score"].between(0, 1).all()
    tables = write_habitat_outputs(hab, manifest, cfg, ReportWriter(cfg, "feature_extraction"))
    assert tables["habitat_calinski_harabasz"]["selected"].sum() == 1
    assert (cfg.report_root / "figures" / "habitat_map_examples.png").is_file()
    assert write_habitat_outputs(None, manifest, cfg, ReportWriter(cfg, "x")) == {}


def test_test_cohort_images_do_not_change_the_fit(habitat_study):
    """Leakage guard: shifting the test patients' intensities leaves the fitted habitats unchanged."""
    _, _, before = _fit(habitat_study)
    train_maps = {p: sitk.GetArrayFromImage(sitk.ReadImage(before.map_paths[p])) for p in ("P01", "P02")}  # files are rewritten by the refit
    for patient in ("P03", "P04"):
        path = habitat_study / patient / "CT_image.nii.gz"
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.int16) + 500
        write_volume(path, arr)
    _, _, after = _fit(habitat_study)
    np.testing.assert_array_equal(before.clusterer.centroids_, after.clusterer.centroids_)
    np.testing.assert_array_equal(before.clusterer.mean_, after.clusterer.mean_)
    assert before.clusterer.ch_scores_.equals(after.clusterer.ch_scores_)
    # Training patients' maps are identical; the shifted test patients are re-labelled by the same centroids.
    for p, arr in train_maps.items():
        np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(sitk.ReadImage(after.map_paths[p])))


def test_no_habitats_configured(tiny_study):
    cfg = load_config(tiny_study / "study.yaml")
    manifest, _ = load_study(cfg)
    assert cohort_habitats(manifest, cfg, ReportWriter(cfg, "s")) is None
