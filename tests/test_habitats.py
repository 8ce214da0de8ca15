"""Tests of helpers.imaging.habitats: voxel matrices, cohort-level habitat clustering and the ITH score."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from helpers.imaging.habitats import (
    HabitatClusterer,
    habitat_fractions,
    habitat_map,
    habitat_masks,
    ith_score,
    ith_scores_by_k,
    voxel_matrix,
)

from .conftest import arr, image_from

ANISO = (0.5, 0.5, 3.0)  # x, y, z in mm: thin in-plane, thick slices


# -- voxel_matrix --------------------------------------------------------------
def _ramp(img: sitk.Image) -> np.ndarray:
    """A linear function of physical position, sampled at every voxel centre of img."""
    z, y, x = np.indices(sitk.GetArrayViewFromImage(img).shape).astype(float)
    ox, oy, oz = img.GetOrigin()
    sx, sy, sz = img.GetSpacing()
    px, py, pz = ox + x * sx, oy + y * sy, oz + z * sz
    return 1.5 * px - 0.5 * py + 2.0 * pz + 10.0


def test_voxel_matrix_resamples_coarse_pet_onto_mask_grid():
    mask_arr = np.zeros((10, 12, 12), np.uint8)
    mask_arr[3:7, 4:9, 2:10] = 1
    mask = image_from(mask_arr, (1.0, 1.0, 2.0))
    ct = image_from(np.arange(mask_arr.size, dtype=np.int16).reshape(mask_arr.shape), (1.0, 1.0, 2.0))
    pet_grid = image_from(np.zeros((7, 6, 6)), (4.7, 4.7, 4.7), origin=(-5.0, -5.0, -5.0))  # covers the mask
    pet = image_from(_ramp(pet_grid), (4.7, 4.7, 4.7), origin=(-5.0, -5.0, -5.0))
    X = voxel_matrix([ct, pet], mask)
    assert X.shape == (mask_arr.sum(), 2) and X.dtype == np.float64
    # Same grid: values copied untouched, in C order of the z, y, x array.
    np.testing.assert_array_equal(X[:, 0], arr(ct)[mask_arr > 0])
    # Linear interpolation reproduces a linear ramp exactly at the mask voxel centres.
    np.testing.assert_allclose(X[:, 1], _ramp(mask)[mask_arr > 0], atol=1e-9)
    # Known points: first and last mask voxels (z, y, x) = (3, 4, 2) and (6, 8, 9) -> (x, y, z) mm.
    assert X[0, 1] == pytest.approx(1.5 * 2 - 0.5 * 4 + 2.0 * 6 + 10.0)
    assert X[-1, 1] == pytest.approx(1.5 * 9 - 0.5 * 8 + 2.0 * 12 + 10.0)


def test_voxel_matrix_rejects_mask_outside_field_of_view():
    mask_arr = np.zeros((4, 6, 6), np.uint8)
    mask_arr[1:3, 1:5, 1:5] = 1
    small_pet = image_from(np.ones((2, 2, 2)), (4.0, 4.0, 4.0), origin=(100.0, 100.0, 100.0))
    with pytest.raises(ValueError, match=r"images\[0\].*outside the image's field of view"):
        voxel_matrix([small_pet], image_from(mask_arr))
    with pytest.raises(ValueError, match="images is empty"):
        voxel_matrix([], image_from(mask_arr))


# -- habitats ------------------------------------------------------------------
# Planted habitats: (channel 0, channel 1) means, e.g. CT-like and PET-like intensities.
PLANTED = {1: (40.0, 2.0), 2: (80.0, 8.0), 3: (20.0, 12.0)}
NOISE = (3.0, 0.6)


def synthetic_patient(seed: int, shift: float = 0.0, shape=(6, 14, 14)):
    """Two co-registered channels, a box tumour split into three planted habitats.

    Returns (images, mask, planted label array inside the mask in C order).
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    mask_arr = ((z >= 1) & (z < shape[0] - 1) & (y >= 2) & (y < shape[1] - 2) & (x >= 2) & (x < shape[2] - 2)).astype(np.uint8)
    cut1, cut2 = 4 + seed % 3, 9 - seed % 2  # habitat sizes differ between patients
    planted = np.where(x < cut1, 1, np.where(y < cut2, 2, 3))
    channels = []
    for c in range(2):
        means = np.choose(planted - 1, [PLANTED[h][c] for h in (1, 2, 3)])
        channels.append(means + rng.normal(0, NOISE[c], shape) + shift)
    images = [image_from(ch.astype(np.float32), ANISO) for ch in channels]
    return images, image_from(mask_arr, ANISO), planted[mask_arr > 0]


@pytest.fixture(scope="module")
def cohort():
    patients = [synthetic_patient(s) for s in range(3)]
    voxels = [voxel_matrix(images, mask) for images, mask, _ in patients]
    return patients, voxels


@pytest.fixture(scope="module")
def fitted(cohort):
    _, voxels = cohort
    return HabitatClusterer(k_range=(2, 6), random_state=0).fit(voxels)


def test_clusterer_recovers_planted_habitats_and_picks_k3(cohort, fitted):
    patients, _ = cohort
    assert fitted.k_ == 3
    scores = fitted.ch_scores_
    assert list(scores.columns) == ["k", "calinski_harabasz"] and list(scores["k"]) == [2, 3, 4, 5, 6]
    assert int(scores.loc[scores["calinski_harabasz"].idxmax(), "k"]) == 3
    for images, mask, planted in patients:
        label_map = habitat_map(images, mask, fitted)
        assert label_map.GetPixelID() == sitk.sitkUInt8 and label_map.GetSpacing() == mask.GetSpacing()
        lm = arr(label_map)
        assert set(np.unique(lm[arr(mask) == 0])) == {0}
        assert adjusted_rand_score(planted, lm[arr(mask) > 0]) >= 0.95
    # Habitats are ordered by ascending channel-0 centroid: 1 = (20, 12), 2 = (40, 2), 3 = (80, 8).
    raw = fitted.centroids_ * fitted.scale_ + fitted.mean_
    np.testing.assert_allclose(raw, [PLANTED[3], PLANTED[1], PLANTED[2]], atol=1.0)
    assert fitted.n_features_in_ == 2 and fitted.centroids_.shape == (3, 2)


def test_standardization_uses_training_voxels(cohort, fitted):
    _, voxels = cohort
    pooled = np.concatenate(voxels)
    np.testing.assert_allclose(fitted.mean_, pooled.mean(axis=0))
    np.testing.assert_allclose(fitted.scale_, pooled.std(axis=0))
    plain = HabitatClusterer(k=3, standardize=False).fit(voxels)
    np.testing.assert_array_equal(plain.mean_, [0.0, 0.0])
    np.testing.assert_array_equal(plain.scale_, [1.0, 1.0])


def test_predicting_shifted_test_patient_does_not_leak(cohort, fitted):
    _, voxels = cohort
    before = copy.deepcopy({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    test_images, test_mask, _ = synthetic_patient(7, shift=25.0)
    fitted.predict(voxel_matrix(test_images, test_mask))
    habitat_map(test_images, test_mask, fitted)
    after = {k: v for k, v in vars(fitted).items() if k.endswith("_")}
    assert before.keys() == after.keys()
    for key in ("mean_", "scale_", "centroids_"):
        np.testing.assert_array_equal(after[key], before[key])
    pd.testing.assert_frame_equal(after["ch_scores_"], before["ch_scores_"])
    assert after["k_"] == before["k_"]
    # Refitting a clone on the training data alone gives the identical state.
    refit = clone(fitted).fit(voxels)
    for key in ("mean_", "scale_", "centroids_"):
        np.testing.assert_array_equal(getattr(refit, key), before[key])
    # ...whereas pooling the test patient in would have moved the standardization (the guard is sensitive).
    leaky = clone(fitted).fit([*voxels, voxel_matrix(test_images, test_mask)])
    assert not np.allclose(leaky.mean_, before["mean_"])


def test_determinism_and_patient_order_invariance_with_subsampling(cohort):
    _, voxels = cohort
    params = dict(k_range=(2, 4), max_voxels_per_patient=200, n_init=4, random_state=3)
    a = HabitatClusterer(**params).fit(voxels)
    b = HabitatClusterer(**params).fit(voxels)
    c = HabitatClusterer(**params).fit([voxels[2], voxels[0], voxels[1]])
    assert a.n_training_voxels_ == 600  # each patient capped at 200 voxels
    probe = np.concatenate(voxels)
    for other in (b, c):
        np.testing.assert_array_equal(other.centroids_, a.centroids_)
        np.testing.assert_array_equal(other.predict(probe), a.predict(probe))
        assert other.k_ == a.k_


def test_estimator_contract_params_stored_unchanged():
    est = HabitatClusterer(k_range=[2, 5], k=None, max_voxels_per_patient=None, standardize=False, n_init=3, random_state=None)
    assert est.get_params() == {"k_range": [2, 5], "k": None, "max_voxels_per_patient": None,
                                "standardize": False, "n_init": 3, "random_state": None}
    assert clone(est).get_params() == est.get_params()
    assert not hasattr(est, "k_")


def test_fixed_k_overrides_search(cohort):
    _, voxels = cohort
    est = HabitatClusterer(k_range=(2, 6), k=4, n_init=2).fit(voxels)
    assert est.k_ == 4 and list(est.ch_scores_["k"]) == [4]
    labels = est.predict(voxels[0])
    assert labels.min() >= 1 and labels.max() <= 4


@pytest.mark.parametrize(
    "params, voxels, message",
    [
        (dict(k_range=(5, 3)), None, "k_range"),
        (dict(k_range=(1, 4)), None, "k_range"),
        (dict(k_range=(2.5, 4)), None, "k_range"),
        (dict(k=1), None, "k=1"),
        (dict(k_range=(2, 6)), [np.ones((3, 2)) * [[1], [2], [3]]], "cannot form 6 habitats"),
        (dict(k=3), [np.zeros((3, 2))], "cannot form 3 habitats"),
        (dict(k=2), [np.ones((10, 2)), np.ones((10, 3))], "pass the same series"),
        (dict(k=2), [np.full((10, 2), np.nan)], "NaN"),
        (dict(k=2), [], "non-empty list"),
        (dict(k=2, max_voxels_per_patient=0), None, "max_voxels_per_patient"),
    ],
)
def test_fit_rejects_invalid_input(params, voxels, message):
    data = voxels if voxels is not None else [np.random.default_rng(0).normal(size=(50, 2))]
    with pytest.raises(ValueError, match=message):
        HabitatClusterer(**params).fit(data)


def test_predict_checks_features(fitted):
    with pytest.raises(ValueError, match="fitted on 2"):
        fitted.predict(np.zeros((4, 3)))


def test_pooled_matrix_with_groups_fits_like_the_list_of_patients(cohort):
    _, voxels = cohort
    params = {"k_range": (2, 4), "max_voxels_per_patient": 200, "n_init": 4, "random_state": 3}
    listed = HabitatClusterer(**params).fit(voxels)
    pooled, groups = np.concatenate(voxels), np.repeat(["P3", "P1", "P2"], [len(v) for v in voxels])
    grouped = HabitatClusterer(**params).fit(pooled, groups=groups)
    for key in ("mean_", "scale_", "centroids_"):
        np.testing.assert_array_equal(getattr(grouped, key), getattr(listed, key))
    pd.testing.assert_frame_equal(grouped.ch_scores_, listed.ch_scores_)
    assert grouped.k_ == listed.k_ and grouped.n_training_voxels_ == listed.n_training_voxels_ == 600
    assert grouped.n_patients_ == listed.n_patients_ == 3
    # Without groups the pooled matrix is one patient: the cap applies to all its rows.
    assert HabitatClusterer(**params).fit(pooled).n_training_voxels_ == 200
    # transform is the transformer form of predict: one integer label column.
    labels = grouped.transform(voxels[0])
    assert labels.shape == (len(voxels[0]), 1) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels[:, 0], grouped.predict(voxels[0]))
    np.testing.assert_array_equal(HabitatClusterer(**params).fit_transform(pooled, groups=groups), grouped.transform(pooled))
    np.testing.assert_allclose(grouped.standardized(voxels[0]), (voxels[0] - grouped.mean_) / grouped.scale_)
    assert list(grouped.get_feature_names_out()) == ["habitat"]
    with pytest.raises(ValueError, match="groups must give the patient of every voxel"):
        HabitatClusterer(**params).fit(pooled, groups=groups[:-1])
    with pytest.raises(ValueError, match="groups is for a pooled"):
        HabitatClusterer(**params).fit(voxels, groups=groups)


def test_habitat_fractions_and_masks(cohort, fitted):
    images, mask, _ = cohort[0][0]
    label_map = habitat_map(images, mask, fitted)
    fractions = habitat_fractions(label_map, fitted.k_)
    assert list(fractions) == ["habitat_1", "habitat_2", "habitat_3"]
    assert sum(fractions.values()) == pytest.approx(1.0)
    masks = habitat_masks(label_map, fitted.k_)
    n_tumour = int(arr(mask).sum())
    for name, m in masks.items():
        assert m.GetPixelID() == sitk.sitkUInt8 and m.GetSpacing() == label_map.GetSpacing()
        assert int(arr(m).sum()) == round(fractions[name] * n_tumour)
    # A habitat absent from a patient gives a zero fraction and an empty mask.
    one = image_from(np.pad(np.ones((2, 2, 2), np.uint8), 1))
    assert habitat_fractions(one, 3) == {"habitat_1": 1.0, "habitat_2": 0.0, "habitat_3": 0.0}
    assert arr(habitat_masks(one, 3)["habitat_3"]).sum() == 0
    with pytest.raises(ValueError, match="positive integer"):
        habitat_fractions(one, 0)
    with pytest.raises(ValueError, match="label 2 > k=1"):
        habitat_masks(image_from(np.pad(np.full((2, 2, 2), 2, np.uint8), 1)), 1)


# -- ITH score -----------------------------------------------------------------
def test_ith_solid_tumour_is_zero():
    solid = np.pad(np.full((3, 4, 5), 2, np.uint8), 1)
    assert ith_score(solid) == 0.0
    assert ith_score(image_from(solid), connectivity="face") == 0.0


def test_ith_checkerboard():
    cube = (np.indices((4, 4, 4)).sum(0) % 2 + 1).astype(np.uint8)  # 64 voxels, two interleaved clusters
    # Face connectivity: every voxel is its own region. Each cluster: S_max = 1, n = 32;
    # ITH = 1 - (1/64) * (1/32 + 1/32) = 1 - 1/1024.
    assert ith_score(cube, connectivity="face") == pytest.approx(1 - 1 / 1024, abs=1e-15)
    # Full (26-) connectivity joins diagonal neighbours of the same colour: each cluster is one
    # region of 32 voxels, ITH = 1 - (32 + 32) / 64 = 0.
    assert ith_score(cube, connectivity="full") == 0.0


HAND_MAP = np.array([
    [0, 0, 0, 0, 0, 0],
    [0, 1, 1, 2, 2, 0],
    [0, 1, 1, 2, 2, 0],
    [0, 3, 3, 1, 1, 0],
    [0, 3, 3, 1, 2, 0],
    [0, 0, 0, 0, 0, 0],
])


def test_ith_hand_computed_small_map():
    # S_total = 16.
    # full (8-conn): cluster 1 = one region of 7 (the two blocks touch diagonally) -> 7/1;
    #   cluster 2 = {4, 1} -> 4/2; cluster 3 = {4} -> 4/1; ITH = 1 - 13/16 = 0.1875.
    assert ith_score(HAND_MAP, "full") == pytest.approx(3 / 16)
    # face (4-conn): cluster 1 = {4, 3} -> 4/2; cluster 2 = {4, 1} -> 4/2; cluster 3 -> 4; ITH = 1 - 8/16.
    assert ith_score(HAND_MAP, "face") == pytest.approx(0.5)
    # Ignoring single-voxel regions: cluster 2 = {4} -> 4; ITH = 1 - 15/16.
    assert ith_score(HAND_MAP, "full", min_region_voxels=2) == pytest.approx(1 / 16)
    # As a one-slice 3D image the value is the same.
    assert ith_score(image_from(HAND_MAP[None].astype(np.uint8))) == pytest.approx(3 / 16)


# Reference values from the published implementation: PyPI `ITHscore` 0.3.3, function
# `ITHscore.calITHscore(label_map)` with its defaults (8-connectivity, regions of <= 1 pixel
# ignored), run in a throwaway venv (pip install ITHscore==0.3.3 --no-deps plus numpy, scipy,
# matplotlib, scikit-learn, six, pydicom, SimpleITK, pyradiomics-bhklab) on exactly these maps.
# The maps carry a 0 border because the package skips the lowest label, assuming it is background.
PACKAGE_MAPS = [
    ([[0, 0, 0, 0, 3, 0, 0, 0, 0], [0, 0, 3, 3, 2, 1, 1, 0, 0], [0, 2, 2, 2, 2, 2, 2, 1, 0],
      [0, 1, 1, 1, 2, 3, 2, 2, 0], [3, 2, 1, 1, 2, 3, 3, 2, 3], [0, 3, 2, 1, 2, 3, 3, 3, 0],
      [0, 2, 3, 1, 1, 3, 3, 3, 0], [0, 0, 1, 1, 1, 1, 3, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0]], 0.6598639455782312),
    ([[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 4, 4, 4, 4, 0, 0], [0, 2, 1, 2, 3, 4, 4, 4, 2, 0],
      [0, 1, 1, 3, 3, 2, 2, 2, 2, 0], [0, 4, 2, 3, 1, 1, 1, 1, 2, 0], [0, 4, 4, 1, 3, 1, 1, 1, 2, 0],
      [0, 2, 2, 1, 3, 3, 2, 3, 2, 0], [0, 1, 3, 3, 3, 3, 4, 4, 2, 0], [0, 0, 4, 4, 3, 3, 3, 4, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], 0.5875),
    ([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 2, 2, 2, 0, 0], [0, 1, 1, 1, 1, 1, 2, 0], [0, 1, 2, 1, 1, 1, 2, 0],
      [0, 2, 1, 2, 1, 1, 1, 0], [0, 1, 1, 2, 2, 2, 2, 0], [0, 0, 2, 2, 2, 2, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], 0.328125),
    (np.pad(np.indices((6, 6)).sum(0) % 2 + 1, 1).tolist(), 0.0),  # 6x6 checkerboard: one 8-connected region per colour
    (HAND_MAP.tolist(), 0.0625),
]


@pytest.mark.parametrize("label_map, reference", PACKAGE_MAPS)
def test_ith_matches_ithscore_package(label_map, reference):
    m = np.array(label_map)
    assert ith_score(m, connectivity="full", min_region_voxels=2) == pytest.approx(reference, abs=1e-12)
    # Maps without single-pixel regions: the plain published formula gives the same number.
    if reference in (0.6598639455782312, 0.328125, 0.0):
        assert ith_score(m, connectivity="full") == pytest.approx(reference, abs=1e-12)


def test_ith_rejects_invalid_input():
    with pytest.raises(ValueError, match="no tumour voxel"):
        ith_score(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="connectivity"):
        ith_score(HAND_MAP, connectivity="edge")
    with pytest.raises(ValueError, match="min_region_voxels"):
        ith_score(HAND_MAP, min_region_voxels=0)
    with pytest.raises(ValueError, match="integer labels"):
        ith_score(HAND_MAP + 0.5)


def test_ith_scores_by_k_sweep(cohort):
    _, voxels = cohort
    images, mask, _ = synthetic_patient(5)
    table = ith_scores_by_k(images, mask, voxels, ks=range(2, 5), clusterer_params={"n_init": 3})
    assert list(table.columns) == ["k", "ith_score", "habitats_present"]
    assert list(table["k"]) == [2, 3, 4]
    assert table["ith_score"].between(0, 1).all()
    assert (table["habitats_present"] <= table["k"]).all()
    # K = 3 recovers the three planted slabs: each habitat is one connected region.
    k3 = table.set_index("k").loc[3]
    assert k3["habitats_present"] == 3
    clusterer = HabitatClusterer(k=3, n_init=3, random_state=0).fit(voxels)
    assert k3["ith_score"] == pytest.approx(ith_score(habitat_map(images, mask, clusterer)))
    pd.testing.assert_frame_equal(table, ith_scores_by_k(images, mask, voxels, ks=range(2, 5), clusterer_params={"n_init": 3}))
    with pytest.raises(ValueError, match="clusterer_params must not set"):
        ith_scores_by_k(images, mask, voxels, clusterer_params={"k": 3})
