"""Tests of helpers.imaging.deep.deep_features: 2.5D slices, deep features + PCA, weights, deep classifier, Grad-CAM.

Everything runs on tiny synthetic volumes with resnet18 at 32-64 pixels on the
CPU; nothing is downloaded (one test forbids network access outright).
"""

from __future__ import annotations

import hashlib
import socket
import urllib.request

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from pydantic import ValidationError
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from helpers.errors import InputDataError
from helpers.figures.deep import gradcam_figure, loss_curve_figure
from helpers.imaging.deep.deep_features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneWeightsError,
    DeepFeatureExtractor,
    DeepFeatureSettings,
    UntrainedBackboneWarning,
    embed,
    gradcam_maps,
    load_backbone,
    select_slices,
    slices_25d,
    stack_inputs,
    train_deep_classifier,
)

from .conftest import image_from, write_volume

# Random-init networks are the norm here; the warning itself is tested once.
pytestmark = pytest.mark.filterwarnings("ignore::helpers.imaging.deep.deep_features.UntrainedBackboneWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Two busy cores: one intra-op thread is several times faster than two fighting for them.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _settings(**kw) -> DeepFeatureSettings:
    base = {"series": "CT", "input_size": 32, "pca_components": 4, "crop_margin_mm": 4.0}
    base.update(kw)
    return DeepFeatureSettings(**base)


def _tumour_patient(rng, kind: str, shape=(10, 40, 40), spacing=(1.0, 1.0, 2.0), shift: float = 0.0):
    """A noisy volume with a disc-shaped tumour over 5 slices.

    ``kind`` 'bright': homogeneous tumour; 'textured': the same mean with a
    strong 2-voxel checkerboard (the planted class difference).
    """
    img = rng.normal(100, 10, shape).astype(np.float32)
    z, y, x = np.indices(shape)
    zc, yc, xc = 5, rng.integers(17, 23), rng.integers(17, 23)
    tumour = ((y - yc) ** 2 + (x - xc) ** 2 <= rng.uniform(6, 9) ** 2) & (np.abs(z - zc) <= 2)
    texture = np.where((y // 2 + x // 2) % 2 == 0, 60.0, -60.0) if kind == "textured" else 0.0
    img[tumour] = (200 + texture + rng.normal(0, 10, shape))[tumour]
    image = image_from(img + shift, spacing)
    mask = image_from(tumour.astype(np.uint8), spacing)
    return image, mask


def _cohort(seed: int, n: int, prefix: str, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    patients, labels = {}, {}
    for i in range(n):
        label = i % 2
        patients[f"{prefix}{i:02d}"] = _tumour_patient(rng, "textured" if label else "bright", shift=shift)
        labels[f"{prefix}{i:02d}"] = label
    return patients, pd.Series(labels)


# -- settings ------------------------------------------------------------------------
def test_settings_defaults_and_validation():
    s = DeepFeatureSettings(series="T2")
    assert (s.architecture, s.mode, s.input_size, s.slice_offsets, s.pca_components) == ("resnet18", "frozen", 224, (-1, 0, 1), 8)
    assert s.pretrained_weights is None and s.channel_names == ("z-1", "z+0", "z+1")
    with pytest.raises(ValidationError, match="extra"):
        DeepFeatureSettings(series="T2", pretrained=True)  # a typo or a download flag is an error, not ignored
    with pytest.raises(ValidationError, match="slice_offsets"):
        DeepFeatureSettings(series="T2", slice_offsets=(0, 1, 2))
    with pytest.raises(ValidationError, match="channel_series"):
        DeepFeatureSettings(series="T2", channel_mode="sequences")
    with pytest.raises(ValidationError, match="resnet"):
        DeepFeatureSettings(series="T2", architecture="resnet101")
    seq = DeepFeatureSettings(series="T2", channel_mode="sequences", channel_series=("T2", "DCE1", "DCE2"))
    assert seq.channel_names == ("T2", "DCE1", "DCE2")


# -- slice choice and crop -------------------------------------------------------------
def _z_coded(nz=8, ny=30, nx=30):
    """Image whose value is 10 * z, so each output channel tells which slice it came from."""
    return np.broadcast_to(10.0 * np.arange(nz)[:, None, None], (nz, ny, nx)).astype(np.float32).copy()


def test_largest_slice_tie_goes_to_lower_index_and_neighbours_follow_offsets():
    mask = np.zeros((8, 30, 30), np.uint8)
    mask[2, 10:16, 10:16] = 1  # 36 voxels
    mask[3, 11:14, 11:14] = 1  # 9
    mask[5, 5:11, 20:26] = 1  # 36: ties with slice 2
    s = _settings(slice_offsets=(-2, 0, 2), window=(0, 100), normalization="unit", crop_margin_mm=0)
    sel = select_slices(mask, (1.0, 1.0, 2.0), s)
    assert sel.centre == 2 and sel.indices == (0, 2, 4)
    assert sel.tumour_area_mm2 == pytest.approx(36.0)
    stack = slices_25d(_z_coded(), mask, s, spacing=(1.0, 1.0, 2.0))
    assert stack.shape == (3, 32, 32) and stack.dtype == np.float32
    # Channel values are 10 * z / 100 inside the crop: slices 0, 2 and 4.
    np.testing.assert_allclose([stack[c].max() for c in range(3)], [0.0, 0.2, 0.4], atol=1e-6)


@pytest.mark.parametrize(("tumour_slice", "expected"), [(0, (0, 0, 1)), (7, (6, 7, 7))])
def test_neighbours_are_clamped_at_the_volume_edge(tumour_slice, expected):
    mask = np.zeros((8, 30, 30), np.uint8)
    mask[tumour_slice, 10:20, 10:20] = 1
    s = _settings(window=(0, 100), normalization="unit")
    assert select_slices(mask, (1.0, 1.0, 2.0), s).indices == expected
    stack = slices_25d(_z_coded(), mask, s, spacing=(1.0, 1.0, 2.0))
    np.testing.assert_allclose([stack[c].max() for c in range(3)], [z / 10 for z in expected], atol=1e-6)


def test_crop_margin_is_in_mm_and_aspect_is_kept_by_padding():
    # x spacing 0.5 mm, y 1.0 mm: a 3 mm margin is 6 voxels in x but 3 in y.
    spacing = (0.5, 1.0, 3.0)
    mask = np.zeros((5, 60, 60), np.uint8)
    mask[2, 20:30, 20:30] = 1  # 10 x 10 voxels = 10 mm (y) x 5 mm (x)
    s = _settings(input_size=64, crop_margin_mm=3.0, window=(0, 2), normalization="unit")
    sel = select_slices(mask, spacing, s)
    assert sel.box == (17, 33, 14, 36)
    # Crop: 16 voxels * 1 mm (y) by 22 * 0.5 = 11 mm (x) -> 0.25 mm pixels, 44 columns of image, 10 padded on each side.
    stack = slices_25d(np.ones((5, 60, 60), np.float32), mask, s, spacing=spacing)
    filled = stack[1] > 0
    assert filled.all(axis=1).sum() == 0 and filled.any(axis=0).sum() == 44 and filled.any(axis=1).sum() == 64
    assert not filled[:, :10].any() and not filled[:, 54:].any() and filled[:, 10:54].all()
    np.testing.assert_allclose(stack[1][filled], 0.5)
    # Same voxels on isotropic 1 mm spacing: 3 voxels of margin per axis, a square crop, no padding.
    iso = select_slices(mask, (1.0, 1.0, 1.0), s)
    assert iso.box == (17, 33, 17, 33)
    assert (slices_25d(np.ones((5, 60, 60), np.float32), mask, s, spacing=(1.0, 1.0, 1.0))[1] > 0).all()


def test_crop_is_clipped_to_the_image_and_empty_mask_is_an_error():
    mask = np.zeros((4, 20, 20), np.uint8)
    mask[1, 0:5, 15:20] = 1
    assert select_slices(mask, (1.0, 1.0, 1.0), _settings(crop_margin_mm=10)).box == (0, 15, 5, 20)
    with pytest.raises(InputDataError, match="empty"):
        select_slices(np.zeros((4, 20, 20)), (1.0, 1.0, 1.0), _settings())
    with pytest.raises(InputDataError, match="spacing"):
        slices_25d(np.ones((4, 20, 20)), mask, _settings())


def test_sequences_mode_fuses_the_same_slice_of_three_series_in_order():
    mask = np.zeros((6, 24, 24), np.uint8)
    mask[3, 8:16, 8:16] = 1
    images = []
    for value in (10.0, 20.0, 30.0):
        vol = np.zeros((6, 24, 24), np.float32)
        vol[3, 8:16, 8:16] = value
        images.append(image_from(vol, (1.0, 1.0, 2.0)))
    s = _settings(channel_mode="sequences", channel_series=("T2", "DCE1", "DCE2"), window=(0, 40), normalization="unit")
    stack = slices_25d(images, image_from(mask, (1.0, 1.0, 2.0)), s)
    np.testing.assert_allclose([stack[c].max() for c in range(3)], [0.25, 0.5, 0.75], atol=1e-6)
    with pytest.raises(InputDataError, match="three images"):
        slices_25d(images[0], image_from(mask, (1.0, 1.0, 2.0)), s)


def test_imagenet_normalisation_and_zero_variance_scan():
    mask = np.zeros((3, 20, 20), np.uint8)
    mask[1, 5:15, 5:15] = 1
    # A constant scan has no percentile range: it maps to the window's low end, not to NaN.
    stack = slices_25d(np.full((3, 20, 20), 7.0, np.float32), mask, _settings(), spacing=(1.0, 1.0, 1.0))
    assert np.isfinite(stack).all()
    np.testing.assert_allclose(stack[:, 0, 0], [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], rtol=1e-5)


# -- feature extractor -------------------------------------------------------------------
def test_extractor_shapes_names_and_sklearn_contract():
    train, _ = _cohort(0, 10, "tr")
    ext = DeepFeatureExtractor(settings=_settings(pca_components=3))
    with pytest.raises(NotFittedError):
        ext.transform(train)
    features = ext.fit_transform(train)
    assert features.shape == (10, 9) and list(features.index) == list(train) and features.index.name == "patient"
    assert list(features.columns) == [f"CT_deep_pc{i:02d}" for i in range(1, 10)]
    assert list(ext.feature_info_["channel"]) == ["z-1"] * 3 + ["z+0"] * 3 + ["z+1"] * 3
    assert ext.n_embedding_dims_ == 512 and ext.weights_sha256_ is None
    # fit_transform embeds once but gives what fit().transform() gives.
    np.testing.assert_allclose(features.to_numpy(), ext.transform(train).to_numpy(), rtol=1e-5, atol=1e-5)
    concat = DeepFeatureExtractor(settings=_settings(pca_components=3, feature_layout="concatenated")).fit(train)
    assert concat.transform(train).shape == (10, 3) and len(concat.pca_) == 1
    assert concat.pca_[0].components_.shape == (3, 3 * 512)
    stack = DeepFeatureExtractor(settings=_settings(pca_components=3, feature_layout="stack")).fit(train)
    assert stack.pca_[0].components_.shape == (3, 512)
    unfitted = clone(ext)
    assert unfitted.get_params() == ext.get_params() and not hasattr(unfitted, "pca_")
    with pytest.raises(ValueError, match="at least"):
        DeepFeatureExtractor(settings=_settings(pca_components=12)).fit(train)


def test_pca_is_learned_from_training_patients_only():
    s = _settings(window=(0, 400))  # a fixed window, so shifted test intensities really change the embeddings
    train, _ = _cohort(1, 12, "tr")
    test, _ = _cohort(2, 8, "te", shift=120.0)
    ext = DeepFeatureExtractor(settings=s).fit(train)
    components = [p.components_.copy() for p in ext.pca_]
    means = [p.mean_.copy() for p in ext.pca_]
    train_features = ext.transform(train)
    test_features = ext.transform(test)
    assert test_features.shape == (8, 12) and not test_features.isna().any().any()
    for pca, comp, mean in zip(ext.pca_, components, means):
        np.testing.assert_array_equal(pca.components_, comp)
        np.testing.assert_array_equal(pca.mean_, mean)
    pd.testing.assert_frame_equal(ext.transform(train), train_features)
    assert ext.training_patients_ == list(train)
    # The guard is sensitive: fitting on training + test patients would give other components.
    leaky = DeepFeatureExtractor(settings=s).fit({**train, **test})
    assert not np.allclose(np.abs(leaky.pca_[1].components_[0]), np.abs(components[1][0]), atol=1e-3)


def test_same_seed_gives_identical_features_and_another_seed_does_not():
    train, _ = _cohort(3, 8, "tr")
    a = DeepFeatureExtractor(settings=_settings(seed=11)).fit_transform(train)
    b = DeepFeatureExtractor(settings=_settings(seed=11)).fit_transform(train)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = DeepFeatureExtractor(settings=_settings(seed=12)).fit_transform(train)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_planted_texture_difference_separates_held_out_patients():
    # Bright homogeneous vs checkerboard-textured tumours of the same mean intensity.
    train, y_train = _cohort(4, 24, "tr")
    test, y_test = _cohort(5, 16, "te")
    ext = DeepFeatureExtractor(settings=_settings(pca_components=4))
    x_train = ext.fit_transform(train)
    x_test = ext.transform(test)
    model = LogisticRegression(max_iter=2000).fit(x_train, y_train.loc[x_train.index])
    auc = roc_auc_score(y_test.loc[x_test.index], model.predict_proba(x_test)[:, 1])
    assert auc >= 0.9  # reached 1.0: even an untrained ResNet's features separate texture from homogeneity


@pytest.mark.slow
def test_finetune_mode_needs_labels_and_records_history():
    train, y = _cohort(6, 8, "tr")
    s = _settings(mode="finetune", epochs=1, batch_size=8, optimizer="adam", pca_components=3)
    with pytest.raises(InputDataError, match="labels"):
        DeepFeatureExtractor(settings=s).fit(train)
    ext = DeepFeatureExtractor(settings=s).fit(train, y)
    assert list(ext.history_["epoch"]) == [1] and np.isfinite(ext.history_["train_loss"]).all()
    frozen = DeepFeatureExtractor(settings=_settings(pca_components=3)).fit(train)
    assert not np.allclose(ext.transform(train).to_numpy(), frozen.transform(train).to_numpy())


# -- weights ---------------------------------------------------------------------------------
def test_local_weights_round_trip_gives_identical_embeddings(tmp_path):
    s = _settings(seed=3)
    with pytest.warns(UntrainedBackboneWarning, match="UNTRAINED"):
        original = load_backbone(s)
    assert original.weights_sha256 is None
    path = tmp_path / "resnet18_weights.pt"
    # Saved as a training checkpoint from DataParallel with a classification head: all three are tolerated.
    state = {f"module.{k}": v for k, v in original.model.state_dict().items()}
    state["module.fc.weight"], state["module.fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save({"state_dict": state}, path)
    loaded = load_backbone(_settings(seed=99, pretrained_weights=str(path)))
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.weights_path == str(path)
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(embed(original.model, x), embed(loaded.model, x))
    with_head = load_backbone(_settings(seed=99, pretrained_weights=str(path)), num_classes=2)
    np.testing.assert_array_equal(embed(with_head.model, x), embed(original.model, x))
    assert with_head.model(torch.as_tensor(x)).shape == (4, 2)


def test_wrong_state_dict_gives_a_clear_error(tmp_path):
    resnet34 = load_backbone(_settings(architecture="resnet34")).model.state_dict()
    path = tmp_path / "resnet34.pt"
    torch.save(resnet34, path)
    with pytest.raises(BackboneWeightsError) as err:
        load_backbone(_settings(pretrained_weights=str(path)))
    message = str(err.value)
    assert str(path) in message and "resnet18" in message and "96 unexpected key(s): layer1.2.conv1.weight" in message
    assert "looks like a resnet34" in message
    state = load_backbone(_settings()).model.state_dict()
    del state["layer3.0.conv2.weight"]
    state["layer2.0.bn1.weight"] = torch.ones(3)
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError, match=r"missing key\(s\): layer3\.0\.conv2\.weight.*shape mismatch.*layer2\.0\.bn1\.weight"):
        load_backbone(_settings(pretrained_weights=str(path)))
    with pytest.raises(BackboneWeightsError, match="not found"):
        load_backbone(_settings(pretrained_weights=str(tmp_path / "absent.pt")))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="cannot read"):
        load_backbone(_settings(pretrained_weights=str(tmp_path / "junk.pt")))


def test_extraction_and_weight_loading_need_no_network(tmp_path, monkeypatch):
    weights = tmp_path / "w.pt"
    torch.save(load_backbone(_settings(seed=5)).model.state_dict(), weights)
    rng = np.random.default_rng(7)
    patients = {}
    for i in range(4):  # from files, through helpers.imaging.io, as the notebooks do
        image, mask = _tumour_patient(rng, "bright")
        patients[f"p{i}"] = (
            write_volume(tmp_path / f"p{i}_img.nii.gz", sitk.GetArrayFromImage(image)),
            write_volume(tmp_path / f"p{i}_mask.nii.gz", sitk.GetArrayFromImage(mask)),
        )

    def _refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    ext = DeepFeatureExtractor(settings=_settings(pretrained_weights=str(weights), pca_components=2))
    features = ext.fit_transform(patients)
    assert features.shape == (4, 6) and ext.weights_sha256_ == hashlib.sha256(weights.read_bytes()).hexdigest()


# -- deep classifier and Grad-CAM -------------------------------------------------------------------
def _spot_patient(rng, spot: bool, shape=(8, 40, 40), spacing=(1.0, 1.0, 2.0)):
    """Moderately bright tumour; class 1 carries a small very bright spot at a random place inside it."""
    img = rng.normal(100, 10, shape).astype(np.float32)
    z, y, x = np.indices(shape)
    yc, xc = rng.integers(17, 23), rng.integers(17, 23)
    tumour = ((y - yc) ** 2 + (x - xc) ** 2 <= 11**2) & (np.abs(z - 4) <= 2)
    img[tumour] = (150 + rng.normal(0, 10, shape))[tumour]
    if spot:
        angle = rng.uniform(0, 2 * np.pi)
        sy, sx = yc + 6 * np.sin(angle), xc + 6 * np.cos(angle)
        img[((y - sy) ** 2 + (x - sx) ** 2 <= 3.5**2) & (np.abs(z - 4) <= 2)] = 300
    return image_from(img, spacing), image_from(tumour.astype(np.uint8), spacing)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(21)
    train = {f"tr{i:02d}": _spot_patient(rng, i % 2 == 1) for i in range(16)}
    val = {f"va{i:02d}": _spot_patient(rng, i % 2 == 1) for i in range(8)}
    y_train = pd.Series({k: int(k[-2:]) % 2 for k in train})
    y_val = pd.Series({k: int(k[-2:]) % 2 for k in val})
    s = _settings(input_size=64, mode="finetune", optimizer="adam", epochs=3, batch_size=8, window=(50, 320), crop_margin_mm=3)
    return train_deep_classifier(train, y_train, val, y_val, s), val, y_val


@pytest.mark.slow
def test_deep_classifier_history_checkpoint_and_loss_curve(trained):
    result, val, y_val = trained
    history = result.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_auc"] and list(history["epoch"]) == [1, 2, 3]
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert result.best_epoch == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    # The returned model is the best-validation checkpoint: its validation predictions match that epoch's loss.
    probs = result.predict_proba(val)
    pd.testing.assert_series_equal(probs, result.val_probabilities)
    p_true = np.where(y_val.loc[probs.index] == 1, probs, 1 - probs)
    assert -np.mean(np.log(np.clip(p_true, 1e-12, None))) == pytest.approx(history["val_loss"].min(), rel=1e-3, abs=1e-5)
    assert roc_auc_score(y_val.loc[probs.index], probs) >= 0.9
    fig = loss_curve_figure(history)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:2] == ["training", "validation"] and labels[2].startswith("best validation")
    np.testing.assert_array_equal(fig.axes[0].get_lines()[1].get_ydata(), history["val_loss"])
    plt.close(fig)


def test_gradcam_highlights_the_planted_bright_spot(trained):
    result, val, y_val = trained
    ids, x = stack_inputs(val, result.settings)
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    # layer3 (4 x 4 at 64 px) localises; layer4 is 2 x 2 at this toy size (7 x 7 at 224 px).
    maps = gradcam_maps(result.model, x, target_layer="layer3")
    assert maps.shape == (len(ids), 64, 64) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())  # the model is untouched
    unit = x[:, 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1]  # centre slice back on the [0, 1] window scale
    spot = unit > 0.85  # only the planted spot is that bright (window 50-320, spot 300)
    positives = [i for i, pid in enumerate(ids) if y_val[pid] == 1]
    inside = np.array([maps[i][spot[i]].mean() for i in positives])
    outside = np.array([maps[i][~spot[i]].mean() for i in positives])
    assert spot[positives].any(axis=(1, 2)).all()
    assert (inside > outside).all() and inside.mean() > 1.3 * outside.mean()  # reached ~0.87 vs ~0.47
    fig = gradcam_figure(x[positives], maps[positives], [ids[i] for i in positives])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [ids[i] for i in positives]
    plt.close(fig)
    with pytest.raises(ValueError, match="target_layer"):
        gradcam_maps(result.model, x, target_layer="layer9")
