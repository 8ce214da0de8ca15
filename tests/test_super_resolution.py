"""Tests of helpers.imaging.deep.super_resolution: degradation, training pairs, GAN training, tiled inference, masks, figures.

Everything runs on tiny synthetic 24^3 (and 16^3) volumes -- spheres and boxes
with sharp edges, a sinusoidal texture and mild noise -- with one torch thread
on the CPU. Nothing is downloaded (one test forbids network access outright).
The first metric call imports MONAI (~10 s on a busy machine); the training
runs themselves take a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import types
import urllib.request

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from pydantic import ValidationError

from helpers.errors import InputDataError
from helpers.figures.deep import sr_comparison_figure, sr_training_curve_figure
from helpers.imaging.deep.super_resolution import (
    FWHM_PER_SIGMA,
    ConvFeatures3D,
    SRGenerator,
    SRWeightsError,
    SuperResolutionSettings,
    apply_super_resolution,
    degrade_volume,
    load_checkpoint,
    load_perceptual_network,
    make_training_pairs,
    psnr,
    ssim,
    train_super_resolution,
    trilinear_upsample,
    upsample_mask,
)

# A rotated direction (30 degrees about z) and off-zero origin catch any index/physical mix-up.
_C, _S = math.cos(math.pi / 6), math.sin(math.pi / 6)
ROTATED = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Two busy cores: one intra-op thread is faster than two fighting for them, and results are reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _synthetic(rng: np.random.Generator, n: int = 24, spacing=(0.8, 0.8, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    """An MR-like volume in arbitrary units: bright spheres and boxes with sharp edges on a textured background."""
    z, y, x = np.indices((n, n, n)).astype(np.float32)
    vol = np.full((n, n, n), 100.0, np.float32)
    for _ in range(4):
        c, r = rng.uniform(4, n - 4, 3), rng.uniform(3, 7)
        vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r] = rng.uniform(200, 600)
    for _ in range(2):
        lo = rng.integers(0, n - 8, 3)
        hi = lo + rng.integers(4, 9, 3)
        vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = rng.uniform(0, 400)
    period, angle = rng.uniform(3, 6), rng.uniform(0, np.pi)
    vol += 40 * np.sin(2 * np.pi * (z * np.cos(angle) + y * np.sin(angle)) / period)
    vol += rng.normal(0, 5, vol.shape)
    img = sitk.GetImageFromArray(vol.astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def _settings(**kw) -> SuperResolutionSettings:
    """Small, fast settings that reliably beat trilinear interpolation on the synthetic volumes."""
    base = {
        "scale": (1, 1, 2),
        "patch_size": (16, 16, 16),
        "patches_per_volume": 4,
        "generator_width": 16,
        "generator_depth": 2,
        "discriminator_width": 8,
        "perceptual_width": 8,
        "perceptual_weight": 0.05,
        "adversarial_weight": 1e-3,
        "epochs": 6,
        "warmup_epochs": 2,
        "batch_size": 4,
        "generator_lr": 2e-3,
        "discriminator_lr": 1e-3,
        "seed": 0,
        "device": "cpu",
    }
    base.update(kw)
    return SuperResolutionSettings(**base)


def _tiny(**kw) -> SuperResolutionSettings:
    """The smallest run that still goes through warm-up and adversarial epochs (for determinism/no-network tests)."""
    base = {
        "patch_size": (8, 8, 8), "patches_per_volume": 2, "generator_width": 8, "generator_depth": 1,
        "epochs": 2, "warmup_epochs": 1, "batch_size": 2,
    }
    base.update(kw)
    return _settings(**base)


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def _corners(img: sitk.Image) -> np.ndarray:
    """Physical positions of the 8 corners of the region covered by the voxels (voxel boxes, not centres)."""
    n = img.GetSize()
    index_corners = [(i * n[0], j * n[1], k * n[2]) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return np.array([img.TransformContinuousIndexToPhysicalPoint([c - 0.5 for c in corner]) for corner in index_corners])


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.default_rng(0)
    return {
        "train": [_synthetic(rng) for _ in range(4)],
        "val": [_synthetic(rng) for _ in range(2)],
        "test": [_synthetic(rng) for _ in range(3)],  # held out from training and checkpoint selection
    }


@pytest.fixture(scope="module")
def trained(volumes, tmp_path_factory):
    return train_super_resolution(volumes["train"], volumes["val"], _settings(), checkpoint_dir=tmp_path_factory.mktemp("sr_ckpt"))


# -- degradation and pairs ------------------------------------------------------------------------------
@pytest.mark.parametrize(("scale", "size"), [((1, 1, 2), (24, 24, 12)), ((2, 2, 2), (12, 12, 12)), ((1, 1, 3), (24, 24, 8))])
def test_degraded_volume_geometry_covers_the_same_extent(scale, size):
    hr = _synthetic(np.random.default_rng(1), spacing=(0.7, 0.8, 1.5), origin=(10.0, -20.0, 5.0), direction=ROTATED)
    lr = degrade_volume(hr, _settings(scale=scale, patch_size=tuple(8 * f for f in scale)))
    assert lr.GetSize() == size
    assert lr.GetSpacing() == pytest.approx([s * f for s, f in zip(hr.GetSpacing(), scale)])
    assert lr.GetDirection() == pytest.approx(hr.GetDirection())
    # Same physical extent: the voxel boxes of both grids have the same corners.
    np.testing.assert_allclose(_corners(lr), _corners(hr), atol=1e-9)
    assert lr.GetPixelID() == sitk.sitkFloat32


def test_degradation_is_blur_then_decimation_at_block_centres():
    rng = np.random.default_rng(2)
    vol = rng.normal(0, 1, (10, 6, 6)).astype(np.float32)
    img = sitk.GetImageFromArray(vol)
    # No blur: for an even factor the LR voxel is the mean of the two HR voxels of its block (value at the block centre).
    lr = _arr(degrade_volume(img, _settings(blur_fwhm=0.0)))
    np.testing.assert_allclose(lr, 0.5 * (vol[0::2] + vol[1::2]), rtol=1e-6)
    lr3 = _arr(degrade_volume(img[:, :, :9], _settings(scale=(1, 1, 3), patch_size=(8, 8, 9), blur_fwhm=0.0)))
    np.testing.assert_allclose(lr3, vol[1:9:3], rtol=1e-6)  # odd factor: the middle voxel
    # Blur: a Gaussian of FWHM = LR spacing along z only; a constant volume stays constant.
    blurred = _arr(degrade_volume(img, _settings(blur_fwhm=1.0)))
    from scipy import ndimage

    expected = ndimage.gaussian_filter(vol.astype(np.float64), (2 / FWHM_PER_SIGMA, 0, 0), mode="nearest")
    np.testing.assert_allclose(blurred, 0.5 * (expected[0::2] + expected[1::2]), rtol=1e-5, atol=1e-6)
    constant = sitk.GetImageFromArray(np.full((8, 8, 8), 7.0, np.float32))
    np.testing.assert_allclose(_arr(degrade_volume(constant, _settings())), 7.0, rtol=1e-6)
    # Trailing voxels that do not fill a whole LR voxel are dropped (origin unchanged).
    assert degrade_volume(img[:, :, :9], _settings()).GetSize() == (6, 6, 4)


def test_training_pairs_are_aligned_seeded_and_normalised(volumes):
    s = _settings()
    pairs = make_training_pairs(volumes["train"][:2], s)
    assert pairs.lr.shape == (8, 1, 8, 16, 16) and pairs.hr.shape == (8, 1, 16, 16, 16)  # (N, 1, z, y, x); HR = LR x (2, 1, 1)
    assert pairs.lr.dtype == np.float32 and pairs.lr.min() >= 0 and pairs.lr.max() <= 1
    assert list(pairs.volume) == [0] * 4 + [1] * 4
    assert pairs.hr_spacing[0] == pytest.approx((0.8, 0.8, 1.0)) and pairs.lr_spacing[0] == pytest.approx((0.8, 0.8, 2.0))
    assert (pairs.corner_hr[:, 0] % 2 == 0).all()  # HR patches start on LR voxel boundaries
    # Each LR patch is the clipped, normalised crop of the degraded volume at corner / scale; HR the matching crop.
    lo, hi = pairs.windows[0]
    lr_vol = (_arr(degrade_volume(volumes["train"][0], s)) - lo) / (hi - lo)
    hr_vol = (_arr(volumes["train"][0]) - lo) / (hi - lo)
    z, y, x = pairs.corner_hr[0]
    np.testing.assert_allclose(pairs.lr[0, 0], np.clip(lr_vol[z // 2 : z // 2 + 8, y : y + 16, x : x + 16], 0, 1), atol=1e-6)
    np.testing.assert_allclose(pairs.hr[0, 0], hr_vol[z : z + 16, y : y + 16, x : x + 16], atol=1e-5)
    # The window comes from the LR volume (what inference sees): its 0.5th/99.5th percentiles.
    assert (lo, hi) == pytest.approx(tuple(np.percentile(_arr(degrade_volume(volumes["train"][0], s)), (0.5, 99.5))))
    again = make_training_pairs(volumes["train"][:2], s)
    other = make_training_pairs(volumes["train"][:2], s, seed=1)
    assert np.array_equal(again.corner_hr, pairs.corner_hr) and np.array_equal(again.lr, pairs.lr)
    assert not np.array_equal(other.corner_hr, pairs.corner_hr)
    with pytest.raises(InputDataError, match="fewer than patch_size"):
        make_training_pairs([volumes["train"][0][:12, :, :]], s)


# -- inference geometry and units --------------------------------------------------------------------------
def _fresh_generator(s: SuperResolutionSettings) -> SRGenerator:
    torch.manual_seed(0)
    return SRGenerator(s.scale_zyx, s.generator_width, s.generator_depth, s.upsampling)


@pytest.mark.parametrize("scale", [(1, 1, 2), (2, 2, 2)])
def test_sr_output_grid_covers_the_input_extent_in_input_units(scale):
    s = _settings(scale=scale, patch_size=(16, 16, 16), clip_percentiles=(0.0, 100.0))
    raw = _synthetic(np.random.default_rng(3), n=12, spacing=(0.9, 0.9, 3.0), origin=(-50.0, 30.0, 12.5), direction=ROTATED)
    image = sitk.Cast(raw * 3.0 - 200.0, sitk.sitkInt16)  # integer scanner units including negative values
    sr = apply_super_resolution(_fresh_generator(s), image, s)
    assert sr.GetSize() == tuple(n * f for n, f in zip(image.GetSize(), scale))
    assert sr.GetSpacing() == pytest.approx([sp / f for sp, f in zip(image.GetSpacing(), scale)])
    assert sr.GetDirection() == pytest.approx(image.GetDirection())
    np.testing.assert_allclose(_corners(sr), _corners(image), atol=1e-9)  # same physical extent
    f = np.array(scale)
    shift = -np.array(image.GetSpacing()) * (f - 1) / (2 * f)  # mm along each image axis
    expected_origin = np.array(image.GetOrigin()) + np.array(ROTATED).reshape(3, 3) @ shift
    np.testing.assert_allclose(sr.GetOrigin(), expected_origin, atol=1e-9)
    # An untrained generator (zero last layer) is exactly trilinear interpolation: intensities come back in input units.
    np.testing.assert_allclose(_arr(sr), _arr(trilinear_upsample(image, scale)), rtol=1e-5, atol=1e-2)
    assert _arr(sr).mean() == pytest.approx(_arr(image).mean(), rel=0.02)


def test_sr_of_a_degraded_volume_lands_on_the_original_grid():
    s = _settings()
    hr = _synthetic(np.random.default_rng(4), spacing=(0.7, 0.8, 1.5), origin=(3.0, 4.0, -5.0), direction=ROTATED)
    sr = apply_super_resolution(_fresh_generator(s), degrade_volume(hr, s), s)
    assert sr.GetSize() == hr.GetSize()
    np.testing.assert_allclose(sr.GetOrigin(), hr.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(sr.GetSpacing(), hr.GetSpacing(), atol=1e-12)


def test_tiled_inference_matches_whole_volume_inference():
    s = _settings(generator_width=8, generator_depth=1)
    gen = _fresh_generator(s)
    torch.manual_seed(1)
    for p in gen.tail.parameters():  # make the learned residual non-zero so tiling could show
        torch.nn.init.normal_(p, std=0.1)
    lr = degrade_volume(_synthetic(np.random.default_rng(5), n=20), s)
    whole = _arr(apply_super_resolution(gen, lr, s.model_copy(update={"inference_tile": 64})))
    tiled = _arr(apply_super_resolution(gen, lr, s.model_copy(update={"inference_tile": 4})))
    assert np.abs(whole - _arr(trilinear_upsample(lr, s.scale))).max() > 1.0  # the residual is really there
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-3)


# -- training ------------------------------------------------------------------------------------
def test_short_gan_training_beats_trilinear_on_held_out_volumes(trained, volumes):
    s = trained.settings
    hist = trained.history
    assert list(hist["phase"]) == ["warmup"] * 2 + ["adversarial"] * 4
    assert hist.loc[hist["phase"] == "warmup", ["d_loss", "g_adversarial"]].isna().all().all()
    assert hist.loc[hist["phase"] == "adversarial", ["d_loss", "g_adversarial"]].notna().all().all()
    assert hist[["g_l1", "g_gradient", "g_perceptual", "val_psnr", "val_ssim"]].notna().all().all()
    assert trained.best_epoch == int(hist.loc[hist["val_psnr"].idxmax(), "epoch"])
    assert trained.perceptual_source == "random (seed 1)" and trained.perceptual_sha256 is None
    best = hist.loc[hist["epoch"] == trained.best_epoch].iloc[0]
    assert best["val_psnr_gain"] >= 0.5  # about +1.9 dB with these settings
    assert trained.val_metrics.shape == (2, 4) and (trained.val_metrics["psnr"] > trained.val_metrics["psnr_trilinear"]).all()
    # Held-out volumes, through the public path (degrade -> apply), scored in the HR image's own units.
    gains, ssim_gains = [], []
    for hr in volumes["test"]:
        lr = degrade_volume(hr, s)
        sr, tri, ref = _arr(apply_super_resolution(trained, lr)), _arr(trilinear_upsample(lr, s.scale)), _arr(hr)
        rng = float(ref.max() - ref.min())
        gains.append(psnr(ref, sr, rng) - psnr(ref, tri, rng))
        ssim_gains.append(ssim(ref, sr, rng) - ssim(ref, tri, rng))
    # Reached (seed 0): +1.3 to +1.5 dB PSNR per volume; required: >= +0.5 dB each, and a higher SSIM.
    assert min(gains) >= 0.5, gains
    assert min(ssim_gains) > 0, ssim_gains


def test_checkpoint_holds_best_weights_settings_and_digests(trained, volumes):
    path = trained.checkpoint_path
    manifest = json.loads(path.read_text())
    folder = path.parent
    assert manifest["best_epoch"] == trained.best_epoch and manifest["state_sha256"] == trained.weights_sha256
    assert manifest["weights_sha256"] == hashlib.sha256((folder / manifest["weights_file"]).read_bytes()).hexdigest()
    assert SuperResolutionSettings.model_validate_json((folder / "sr_settings.json").read_text()) == trained.settings
    model, settings = load_checkpoint(folder)
    lr = degrade_volume(volumes["test"][0], settings)
    np.testing.assert_array_equal(_arr(apply_super_resolution(model, lr, settings)), _arr(apply_super_resolution(trained, lr)))
    # A replaced weights file is refused.
    torch.save(_fresh_generator(settings).state_dict(), folder / manifest["weights_file"])
    with pytest.raises(SRWeightsError, match="SHA-256"):
        load_checkpoint(folder)


def test_same_seed_gives_identical_weights_and_outputs_another_seed_does_not(volumes):
    train, val = volumes["train"][:2], volumes["val"][:1]
    a = train_super_resolution(train, val, _tiny())
    b = train_super_resolution(train, val, _tiny())
    c = train_super_resolution(train, val, _tiny(seed=1))
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    pd.testing.assert_frame_equal(a.history, b.history)
    lr = degrade_volume(volumes["test"][0], a.settings)
    np.testing.assert_array_equal(_arr(apply_super_resolution(a, lr)), _arr(apply_super_resolution(b, lr)))


def test_training_loading_local_weights_and_inference_need_no_network(volumes, tmp_path, monkeypatch):
    weights = tmp_path / "features.pt"
    torch.save(ConvFeatures3D(width=8).state_dict(), weights)

    def _refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(urllib.request, "urlopen", _refuse)
    s = _tiny(perceptual_weights=str(weights))
    result = train_super_resolution(volumes["train"][:2], volumes["val"][:1], s, checkpoint_dir=tmp_path / "ckpt")
    assert result.perceptual_source == "local file"
    assert result.perceptual_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    model, settings = load_checkpoint(tmp_path / "ckpt")
    sr = apply_super_resolution(model, degrade_volume(volumes["test"][0], s), settings)
    assert sr.GetSize() == volumes["test"][0].GetSize()


# -- perceptual network ---------------------------------------------------------------------------------
def test_random_perceptual_network_is_seeded_frozen_and_keeps_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    net_a, sha = load_perceptual_network(_settings(perceptual_width=8))
    assert torch.rand(1).item() == before.item()  # the seeded initialisation does not move the caller's random state
    net_b, _ = load_perceptual_network(_settings(perceptual_width=8))
    assert sha is None and not any(p.requires_grad for p in net_a.parameters())
    for (_, p), (_, q) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
        assert torch.equal(p, q)
    feats = net_a(torch.rand(1, 1, 8, 12, 12))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 8, 12, 12), (1, 16, 4, 6, 6)]


def test_local_perceptual_weights_errors_name_the_problem(tmp_path):
    with pytest.raises(SRWeightsError, match="not found"):
        load_perceptual_network(_settings(perceptual_weights=str(tmp_path / "absent.pt")))
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(SRWeightsError, match="cannot read"):
        load_perceptual_network(_settings(perceptual_weights=str(tmp_path / "junk.pt")))
    torch.save(ConvFeatures3D(width=16).state_dict(), tmp_path / "w16.pt")
    with pytest.raises(SRWeightsError, match="shape mismatch"):
        load_perceptual_network(_settings(perceptual_width=8, perceptual_weights=str(tmp_path / "w16.pt")))


def test_medicalnet_style_resnet10_weights_load_from_a_local_file(tmp_path):
    from monai.networks.nets import resnet10

    torch.manual_seed(3)
    net = resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False)
    # MedicalNet files wrap a DataParallel state dict ('module.' prefix) with a segmentation head.
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(2, 512, 1, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "resnet_10_23dataset.pth")
    s = _settings(perceptual_network="medicalnet_resnet10", perceptual_weights=str(tmp_path / "resnet_10_23dataset.pth"))
    features, sha = load_perceptual_network(s)
    assert sha == hashlib.sha256((tmp_path / "resnet_10_23dataset.pth").read_bytes()).hexdigest()
    assert torch.equal(features.net.conv1.weight, net.conv1.weight)
    out = features(torch.rand(1, 1, 16, 16, 16))
    assert [f.shape[1] for f in out] == [64, 128]


# -- masks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [(1, 1, 2), (2, 2, 3)])
def test_upsampled_mask_covers_the_same_physical_region(scale):
    s = _settings(scale=scale, patch_size=(16, 16, 18))
    rng = np.random.default_rng(6)
    image = _synthetic(rng, n=12, spacing=(0.9, 1.1, 3.0), origin=(7.0, -3.0, 40.0), direction=ROTATED)
    z, y, x = np.indices((12, 12, 12))
    m = (((z - 6) / 4.0) ** 2 + ((y - 5) / 3.5) ** 2 + ((x - 6) / 4.5) ** 2 <= 1).astype(np.uint8) * 2  # label 2
    mask = sitk.GetImageFromArray(m)
    mask.CopyInformation(image)
    sr = apply_super_resolution(_fresh_generator(s), image, s)
    up = upsample_mask(mask, sr)
    assert up.GetSize() == sr.GetSize() and up.GetPixelID() == mask.GetPixelID()
    assert set(np.unique(_arr(up))) == {0, 2}
    vol_lr = (m > 0).sum() * np.prod(mask.GetSpacing())
    vol_sr = (_arr(up) > 0).sum() * np.prod(up.GetSpacing())
    # Tolerance: 1e-9 relative -- each LR voxel becomes exactly prod(scale) SR voxels (floating-point spacing only).
    assert vol_sr == pytest.approx(vol_lr, rel=1e-9)
    # Same region, not just the same volume: every SR voxel inherits the label of the LR voxel it lies in.
    fz, fy, fx = scale[::-1]
    np.testing.assert_array_equal(_arr(up), m.repeat(fz, 0).repeat(fy, 1).repeat(fx, 2))


# -- settings -------------------------------------------------------------------------------------------
def test_settings_defaults_and_validation():
    s = SuperResolutionSettings()
    assert s.scale == (1, 1, 2) and s.scale_zyx == (2, 1, 1) and s.lr_patch_zyx == (16, 32, 32)
    assert (s.l1_weight, s.gradient_weight, s.perceptual_weight, s.adversarial_weight) == (1.0, 0.5, 0.1, 1e-3)
    bad = [
        ({"unknown_key": 1}, "Extra inputs"),
        ({"scale": (1, 1, 1)}, "at least one above 1"),
        ({"scale": (0, 1, 2)}, "factors 1-8"),
        ({"patch_size": (16, 16, 15)}, "multiple of its scale"),
        ({"patch_size": (4, 16, 16)}, "at least 8"),
        ({"l1_weight": 0, "gradient_weight": 0, "perceptual_weight": 0}, "not be tied"),
        ({"warmup_epochs": 10, "epochs": 10}, "adversarial phase would never start"),
        ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
        ({"clip_percentiles": (99, 1)}, "clip_percentiles"),
        ({"gan_loss": "wgan"}, "lsgan"),
        ({"device": "tpu"}, "auto"),
        ({"generator_lr": 0}, "greater than 0"),
    ]
    for kw, message in bad:
        with pytest.raises(ValidationError, match=message):
            SuperResolutionSettings(**kw)
    # A non-adversarial run may have warm-up >= epochs (there is no adversarial phase to start).
    assert SuperResolutionSettings(adversarial_weight=0, warmup_epochs=10, epochs=10).epochs == 10
    with pytest.raises(InputDataError, match="scale"):
        apply_super_resolution(SRGenerator((3, 1, 1), 4, 1), sitk.Image(8, 8, 8, sitk.sitkFloat32), s)


def test_metrics_on_known_cases():
    ref = np.random.default_rng(7).uniform(0, 1, (10, 10, 10)).astype(np.float32)
    assert psnr(ref, ref) == math.inf and ssim(ref, ref) == pytest.approx(1.0)
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 at data range 1
    assert ssim(ref, ref + np.float32(0.3) * np.random.default_rng(8).normal(size=ref.shape).astype(np.float32)) < 0.9


# -- figures --------------------------------------------------------------------------------------------
def test_figures_have_the_expected_panels(trained, volumes, tmp_path):
    s = trained.settings
    hr = volumes["test"][0]
    lr = degrade_volume(hr, s)
    sr = apply_super_resolution(trained, lr)
    fig = sr_comparison_figure(lr, sr, hr, slice_index=12, axis="coronal", title="synthetic")
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes]
    assert titles == ["LR (nearest)", "trilinear", "SR", "HR"]
    assert all("PSNR" in ax.get_title() for ax in fig.axes[:3])
    fig.savefig(tmp_path / "sr_comparison.png")
    plt.close(fig)
    fig = sr_comparison_figure(lr, sr, None, slice_index=5)
    assert [ax.get_title() for ax in fig.axes] == ["LR (nearest)", "trilinear", "SR"]
    plt.close(fig)
    with pytest.raises(IndexError, match="slice_index"):
        sr_comparison_figure(lr, sr, None, slice_index=24)
    fig = sr_training_curve_figure(trained.history, title="SR training")
    assert [ax.get_title() for ax in fig.axes] == ["losses", "validation PSNR", "validation SSIM"]
    fig.savefig(tmp_path / "sr_curves.png")
    plt.close(fig)
    assert (tmp_path / "sr_comparison.png").stat().st_size > 0 and (tmp_path / "sr_curves.png").stat().st_size > 0


# -- validation frequency and time budget -------------------------------------------------------------------------
def test_validate_every_validates_those_epochs_and_the_last_and_keeps_the_same_training(volumes):
    """validate_every 2 of 3 epochs: epochs 2 and 3 are validated, epoch 1 not; the training itself is unchanged."""
    train, val = volumes["train"][:2], volumes["val"][:1]
    every = train_super_resolution(train, val, _tiny(epochs=3, validate_every=2))
    each = train_super_resolution(train, val, _tiny(epochs=3))
    assert every.history["val_psnr"].isna().tolist() == [True, False, False]
    pd.testing.assert_series_equal(every.history["g_total"], each.history["g_total"])  # same batches and updates
    np.testing.assert_array_equal(every.history["val_psnr"].iloc[1:], each.history["val_psnr"].iloc[1:])
    assert every.best_epoch in (2, 3) and every.budget.epochs_run == 3 and every.budget.stopped_by == "epochs"


def test_time_budget_stops_at_an_epoch_end_validates_it_and_records_why(volumes, tmp_path, monkeypatch):
    """A budget of 2.5 clock minutes with epochs of 1 minute: after epoch 2 (2 min + 1 predicted > 2.5) training stops."""
    import helpers.imaging.deep.budget as budget

    now = iter(range(0, 6000, 60))  # each reading of the budget's clock advances it by one minute
    monkeypatch.setattr(budget, "time", types.SimpleNamespace(perf_counter=lambda: float(next(now))))
    result = train_super_resolution(volumes["train"][:2], volumes["val"][:1], _tiny(epochs=6, time_budget_minutes=2.5),
                                    checkpoint_dir=tmp_path / "ckpt")
    assert len(result.history) == 2 and result.history["val_psnr"].notna().iloc[-1]
    assert (result.budget.epochs_planned, result.budget.epochs_run, result.budget.stopped_by) == (6, 2, "time budget")
    assert result.budget.device == "cpu" and result.budget.budget_minutes == 2.5
    recorded = json.loads((tmp_path / "ckpt" / "sr_checkpoint.json").read_text())["training"]
    assert recorded["epochs_run"] == 2 and recorded["stopped_by"] == "time budget"
