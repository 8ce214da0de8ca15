"""3D super-resolution (SR) of MR volumes with a small GAN, for normal- vs super-resolution radiomics.

After the GAN super-resolution arm of NR-vs-SR MRI radiomics studies (a
generator turns low-resolution volumes into high-resolution ones; a
discriminator tells generated from real; losses: L1, gradient, perceptual and
adversarial). The pieces:

1. :func:`degrade_volume` simulates a low-resolution (LR) acquisition of a
   high-resolution (HR) volume: a Gaussian blur along the down-sampled axes
   (anti-aliasing; FWHM ``blur_fwhm`` x the LR spacing, i.e. a Gaussian slice
   profile as thick as the new voxel) followed by decimation at the centre of
   every block of ``scale`` HR voxels, so the LR grid covers exactly the
   physical extent of the HR grid. :func:`make_training_pairs` cuts seeded,
   aligned LR/HR patch pairs from such volumes.
2. :func:`train_super_resolution` trains :class:`SRGenerator` (residual 3D
   conv network on top of trilinear interpolation, learned sub-voxel or
   trilinear upsampling head) against :class:`PatchDiscriminator3D`
   (PatchGAN) after an optional warm-up without the adversarial term, keeps
   the checkpoint with the best validation PSNR and reports PSNR/SSIM against
   the trilinear-interpolation baseline per epoch.
3. :func:`apply_super_resolution` runs tiled inference over a whole
   SimpleITK image and returns an image on the finer grid in the input's
   intensity units; :func:`upsample_mask` puts an ROI mask on that grid
   (nearest neighbour) so the SR image flows through the same radiomics
   extraction as the original; :func:`trilinear_upsample` gives the
   interpolation baseline on the same grid.

The comparison and training-curve figures are in :mod:`helpers.figures.deep`.

Grid convention (used throughout): a finer grid covers the SAME physical
extent as the coarse one. Each coarse voxel of spacing ``s`` is split into
``f`` sub-voxels of spacing ``s / f``, so the first fine voxel centre lies
``s * (f - 1) / (2 f)`` before the first coarse voxel centre (along the
image's direction cosines): the origin moves, the extent does not. This
differs from :func:`helpers.preprocess.resample_image`, which keeps the origin
(first voxel centre) and therefore shifts the covered extent by half a voxel.

Perceptual loss: the published method compares features of a pretrained
network. No pretrained 3D network can be downloaded here (nothing is ever
downloaded), so the feature network is either loaded from a LOCAL state dict
(:class:`ConvFeatures3D`, or MONAI's 3D ResNet-10 for MedicalNet weights) or
is a seeded, randomly initialised and frozen 3D conv network. Random-weight
features are a known weight-free stand-in for VGG features (He, Wang &
Hopcroft, NeurIPS 2016; Ustyuzhaninov et al., ICLR 2017: random convolutional
filters already capture local structure and texture statistics); they
penalise structural differences beyond voxel-wise errors but carry no learned
anatomical prior, and the result records which kind was used.

Intensities: each volume is clipped to its ``clip_percentiles`` of the
network input (the LR volume) and scaled to [0, 1]; the inverse mapping is
applied to the output, which is not clipped (so the SR image may exceed the
input's window where the network restores contrast lost to blurring).
Intensities beyond the percentile window of the input are saturated at the
window limits; use ``clip_percentiles=(0, 100)`` to keep the full range.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from helpers.errors import (
    InputDataError,
    SRWeightsError,  # noqa: F401  (defined in helpers.errors)
    StudyError,
)
from helpers.imaging.deep.budget import BudgetClock, TrainingBudget
from helpers.imaging.deep.weights import read_state_dict
from helpers.imaging.io import sha256_file
from helpers.settings.super_resolution import SuperResolutionSettings

__all__ = [
    "SuperResolutionSettings",
    "SRWeightsError",
    "SRGenerator",
    "PatchDiscriminator3D",
    "ConvFeatures3D",
    "TrainingPairs",
    "SRResult",
    "degrade_volume",
    "make_training_pairs",
    "load_perceptual_network",
    "train_super_resolution",
    "apply_super_resolution",
    "trilinear_upsample",
    "upsample_mask",
    "save_checkpoint",
    "load_checkpoint",
    "psnr",
    "ssim",
]

#: FWHM of a Gaussian in units of its sigma (2 sqrt(2 ln 2)).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# File names inside a checkpoint folder.
_WEIGHTS_FILE = "sr_generator.pt"
_SETTINGS_FILE = "sr_settings.json"
_MANIFEST_FILE = "sr_checkpoint.json"


def _as_settings(settings: SuperResolutionSettings | Mapping[str, Any]) -> SuperResolutionSettings:
    if isinstance(settings, SuperResolutionSettings):
        return settings
    if isinstance(settings, Mapping):
        return SuperResolutionSettings(**settings)
    raise TypeError(f"settings must be SuperResolutionSettings or a mapping of its fields, not {type(settings).__name__}")


def _device(settings: SuperResolutionSettings) -> torch.device:
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise StudyError("device 'cuda' was requested but no CUDA GPU is available; use device: auto or cpu")
        return torch.device("cuda")
    return torch.device("cpu")


# -- networks -----------------------------------------------------------------------
class _ResBlock(nn.Module):
    """conv-ReLU-conv with identity skip; no batch norm (EDSR: it hurts SR and would couple tiles and batches)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv3d(width, width, 3, padding=1)
        self.conv2 = nn.Conv3d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _pixel_shuffle_3d(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """(B, C*fz*fy*fx, D, H, W) -> (B, C, D*fz, H*fy, W*fx); anisotropic 3D version of ``nn.PixelShuffle``."""
    fz, fy, fx = factors
    b, c, d, h, w = x.shape
    c_out = c // (fz * fy * fx)
    x = x.view(b, c_out, fz, fy, fx, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c_out, d * fz, h * fy, w * fx)


def _trilinear(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    # align_corners=False puts each coarse voxel centre at the centre of its block of fine voxels:
    # exactly the same-extent grid convention of this module (borders are clamped).
    size = [n * f for n, f in zip(x.shape[2:], factors, strict=True)]
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


class SRGenerator(nn.Module):
    """Small 3D residual SR generator: trilinear interpolation plus a learned residual.

    head conv -> ``depth`` residual blocks -> conv (+ long skip) -> up-sampling
    head (sub-voxel convolution or trilinear + conv) -> LeakyReLU -> conv to
    one channel, added to the trilinear interpolation of the input. The last
    convolution starts at zero, so an untrained generator reproduces trilinear
    interpolation exactly and training only has to learn the correction.

    Parameters
    ----------
    scale_zyx : (int, int, int)
        Up-sampling factors in array order (z, y, x).
    width, depth : int
        Feature channels and residual blocks.
    upsampling : {"learned", "trilinear"}
    """

    def __init__(self, scale_zyx: Sequence[int], width: int = 32, depth: int = 4, upsampling: str = "learned"):
        super().__init__()
        self.scale_zyx = tuple(int(f) for f in scale_zyx)
        self.width, self.depth, self.upsampling = int(width), int(depth), upsampling
        self.head = nn.Conv3d(1, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(width) for _ in range(depth)])
        self.body = nn.Conv3d(width, width, 3, padding=1)
        sub_voxels = math.prod(self.scale_zyx)
        self.up = nn.Conv3d(width, width * sub_voxels if upsampling == "learned" else width, 3, padding=1)
        self.tail = nn.Conv3d(width, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def receptive_radius(self) -> int:
        """Bound (in LR voxels) on how far an output voxel sees: head, 2 per block, body, up, tail, interpolation."""
        return 2 * self.depth + 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an LR batch ``(B, 1, D, H, W)`` to ``(B, 1, D*fz, H*fy, W*fx)``."""
        base = _trilinear(x, self.scale_zyx)
        feat = self.head(x)
        feat = feat + self.body(self.blocks(feat))
        if self.upsampling == "learned":
            up = _pixel_shuffle_3d(self.up(feat), self.scale_zyx)
        else:
            up = self.up(_trilinear(feat, self.scale_zyx))
        return base + self.tail(F.leaky_relu(up, 0.2))


class PatchDiscriminator3D(nn.Module):
    """3D PatchGAN discriminator: a map of real/fake logits, one per overlapping patch of the input.

    Two stride-2 4x4x4 convolutions then two 3x3x3 convolutions (instance
    norm, LeakyReLU 0.2), after pix2pix; inputs need at least 8 voxels per axis.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = int(width)
        self.net = nn.Sequential(
            nn.Conv3d(1, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(w, 2 * w, 4, stride=2, padding=1),
            nn.InstanceNorm3d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Conv3d(2 * w, 4 * w, 3, padding=1),
            nn.InstanceNorm3d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Conv3d(4 * w, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit map of ``x`` (B, 1, D, H, W)."""
        return self.net(x)


class ConvFeatures3D(nn.Module):
    """Fixed 3D conv feature extractor of the perceptual loss: two stages of two 3x3x3 conv + ReLU.

    The second stage works at half resolution (average pooling). Returns the
    output of each stage. Random initialisation is Kaiming-normal weights with
    zero bias (features keep their scale through the ReLUs).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = int(width)
        self.stage1 = nn.Sequential(nn.Conv3d(1, w, 3, padding=1), nn.ReLU(), nn.Conv3d(w, w, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(
            nn.AvgPool3d(2, ceil_mode=True),
            nn.Conv3d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of both stages."""
        f1 = self.stage1(x)
        return [f1, self.stage2(f1)]


class _MedicalNetFeatures(nn.Module):
    """MONAI 3D ResNet-10 in the MedicalNet layout (conv1 stride 2, shortcut B, no downsample bias); layer1/2 outputs."""

    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import resnet10  # lazy: importing MONAI takes seconds

        self.net = resnet10(
            spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type="B", bias_downsample=False, conv1_t_stride=2
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # MedicalNet was trained on per-volume z-scored intensities.
        dims = tuple(range(1, x.ndim))
        x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-6)
        n = self.net
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        f1 = n.layer1(x)
        return [f1, n.layer2(f1)]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path, SRWeightsError)


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    target = model.state_dict()
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or mismatched:

        def _show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f", ... ({len(keys) - 6} more)" if len(keys) > 6 else "")

        parts = [f"{len(missing)} missing key(s): {_show(missing)}"] if missing else []
        parts += [f"{len(unexpected)} unexpected key(s): {_show(unexpected)}"] if unexpected else []
        if mismatched:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched]
            parts.append(f"{len(mismatched)} shape mismatch(es): " + _show(shapes))
        raise SRWeightsError(f"weights {path} do not fit the {what}: " + "; ".join(parts) + "; check the network settings or the file")
    model.load_state_dict(dict(state), strict=False)  # strict check done above (BN step counters may be absent)


def load_perceptual_network(settings: SuperResolutionSettings) -> tuple[nn.Module, str | None]:
    """Build the frozen feature network of the perceptual loss (never downloads).

    Parameters
    ----------
    settings : SuperResolutionSettings
        ``perceptual_network``, ``perceptual_weights``, ``perceptual_width``
        and ``seed`` are used.

    Returns
    -------
    (torch.nn.Module, str or None)
        The network (eval mode, gradients off, on CPU) mapping ``(B, 1, D, H, W)``
        to a list of feature maps, and the SHA-256 of the weights file
        (``None`` for the seeded random initialisation).

    Raises
    ------
    SRWeightsError
        When the file is missing, not a state dict, or its keys/shapes do not
        match the network (a ``module.`` prefix and a ``state_dict`` wrapper
        are accepted; for ResNet-10, MedicalNet's segmentation head
        ``conv_seg.*`` and any ``fc.*`` keys are ignored).
    """
    settings = _as_settings(settings)
    # fork_rng: the seeded initialisation must not move the caller's global torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed + 1)  # +1: different filters from the generator's initialisation
        if settings.perceptual_network == "conv3d":
            net: nn.Module = ConvFeatures3D(settings.perceptual_width)
        else:
            net = _MedicalNetFeatures()
    sha = None
    if settings.perceptual_weights is not None:
        path = Path(settings.perceptual_weights).expanduser()
        if not path.is_file():
            raise SRWeightsError(f"perceptual weights file not found: {path.resolve()}; weights are never downloaded, copy the file there")
        state = _read_state_dict(path)
        if settings.perceptual_network == "medicalnet_resnet10":
            state = {k: v for k, v in state.items() if not k.startswith(("conv_seg.", "fc."))}
            _load_strict(net.net, state, path, "3D ResNet-10 (MedicalNet layout)")
        else:
            _load_strict(net, state, path, f"ConvFeatures3D(width={settings.perceptual_width})")
        sha = sha256_file(path)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, sha


# -- degradation and training pairs ----------------------------------------------------------
def _as_image(volume: sitk.Image | np.ndarray, what: str) -> sitk.Image:
    if isinstance(volume, np.ndarray):
        if volume.ndim != 3:
            raise InputDataError(f"{what}: a 3D (z, y, x) array is needed, got shape {volume.shape}")
        return sitk.GetImageFromArray(volume.astype(np.float32))  # unit spacing, origin 0, identity direction
    if not isinstance(volume, sitk.Image):
        raise TypeError(f"{what}: expected a SimpleITK image or a (z, y, x) numpy array, not {type(volume).__name__}")
    if volume.GetDimension() != 3 or volume.GetNumberOfComponentsPerPixel() != 1:
        raise InputDataError(
            f"{what}: a 3D scalar image is needed (got {volume.GetDimension()}D, {volume.GetNumberOfComponentsPerPixel()} component(s))"
        )
    return volume


def _crop_to_scale(image: sitk.Image, scale_xyz: Sequence[int]) -> sitk.Image:
    """Drop trailing voxels so each size is a multiple of its factor (origin unchanged)."""
    size = [n - n % f for n, f in zip(image.GetSize(), scale_xyz, strict=True)]
    if min(size) < 1:
        raise InputDataError(f"image of size {image.GetSize()} is smaller than the scale factors {tuple(scale_xyz)}")
    return image if list(image.GetSize()) == size else image[: size[0], : size[1], : size[2]]


def _degrade_array(hr: np.ndarray, scale_zyx: Sequence[int], blur_fwhm: float) -> np.ndarray:
    """Gaussian blur along the down-sampled axes, then sample at the centre of each block of f voxels.

    For odd f the block centre is a voxel; for even f it lies between the two
    middle voxels and their mean (linear interpolation) is taken. Sizes must be
    multiples of the factors.
    """
    sigma = [blur_fwhm * f / FWHM_PER_SIGMA if f > 1 else 0.0 for f in scale_zyx]
    # mode='nearest': replicate the border, so edges of the field of view do not darken.
    out = ndimage.gaussian_filter(hr.astype(np.float64), sigma, mode="nearest") if any(sigma) else hr.astype(np.float64)
    for axis, f in enumerate(scale_zyx):
        if f == 1:
            continue
        c = (f - 1) // 2
        first = np.take(out, np.arange(c, out.shape[axis], f), axis=axis)
        out = first if f % 2 else 0.5 * (first + np.take(out, np.arange(c + 1, out.shape[axis], f), axis=axis))
    return out.astype(np.float32)


def _coarse_origin(fine: sitk.Image, scale_xyz: Sequence[int]) -> tuple[float, ...]:
    # The first coarse voxel centre is the centre of the first block of f fine voxels: index (f - 1) / 2.
    return fine.TransformContinuousIndexToPhysicalPoint([(f - 1) / 2.0 for f in scale_xyz])


def _fine_origin(coarse: sitk.Image, scale_xyz: Sequence[int]) -> tuple[float, ...]:
    # Inverse of _coarse_origin: the first fine voxel centre lies (f - 1) / (2 f) coarse voxels before it.
    return coarse.TransformContinuousIndexToPhysicalPoint([-(f - 1) / (2.0 * f) for f in scale_xyz])


def degrade_volume(image: sitk.Image | np.ndarray, settings: SuperResolutionSettings) -> sitk.Image:
    """Simulate the low-resolution acquisition of a high-resolution volume.

    Anti-aliased down-sampling: a Gaussian blur along each axis with a factor
    above 1 (FWHM ``blur_fwhm`` x the LR spacing, ``mode='nearest'`` at the
    borders), then decimation at the centre of every block of ``scale`` HR
    voxels (for even factors the mean of the two middle voxels). Trailing
    voxels that do not fill a whole block are dropped first.

    Parameters
    ----------
    image : SimpleITK.Image or numpy.ndarray
        HR volume; an array is ``(z, y, x)`` with unit spacing.
    settings : SuperResolutionSettings
        ``scale`` and ``blur_fwhm`` are used.

    Returns
    -------
    SimpleITK.Image
        float32 LR image: size ``floor(size / scale)``, spacing ``spacing *
        scale``, same direction, origin at the centre of the first HR block,
        so it covers the same physical extent as the (cropped) HR volume.
    """
    settings = _as_settings(settings)
    hr = _crop_to_scale(_as_image(image, "image"), settings.scale)
    lr = sitk.GetImageFromArray(_degrade_array(sitk.GetArrayViewFromImage(hr), settings.scale_zyx, settings.blur_fwhm))
    lr.SetSpacing([s * f for s, f in zip(hr.GetSpacing(), settings.scale, strict=True)])
    lr.SetDirection(hr.GetDirection())
    lr.SetOrigin(_coarse_origin(hr, settings.scale))
    return lr


def _window(values: np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    if not np.isfinite(values).all():
        raise InputDataError("the volume has non-finite (NaN or infinite) voxels; fix or mask them before super-resolution")
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    return lo, (hi if hi > lo else lo + 1.0)  # a constant volume maps to 0 instead of dividing by zero


@dataclass
class _Prepared:
    """One volume ready for training or validation: normalised LR (clipped) and HR arrays (z, y, x)."""

    lr: np.ndarray
    hr: np.ndarray
    window: tuple[float, float]
    hr_spacing: tuple[float, float, float]
    lr_spacing: tuple[float, float, float]


def _prepare(volumes: Sequence[sitk.Image | np.ndarray], settings: SuperResolutionSettings, what: str) -> list[_Prepared]:
    if isinstance(volumes, (sitk.Image, np.ndarray)):
        volumes = [volumes]
    out = []
    for i, volume in enumerate(volumes):
        hr_img = _crop_to_scale(_as_image(volume, f"{what}[{i}]"), settings.scale)
        hr = sitk.GetArrayFromImage(hr_img).astype(np.float32)
        lr = _degrade_array(hr, settings.scale_zyx, settings.blur_fwhm)
        # The window comes from the LR volume: at inference the LR image is all there is.
        lo, hi = _window(lr, settings.clip_percentiles)
        out.append(
            _Prepared(
                lr=np.clip((lr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32),
                hr=((hr - lo) / (hi - lo)).astype(np.float32),
                window=(lo, hi),
                hr_spacing=tuple(hr_img.GetSpacing()),
                lr_spacing=tuple(s * f for s, f in zip(hr_img.GetSpacing(), settings.scale, strict=True)),
            )
        )
    return out


def _check_patch_fits(prepared: Sequence[_Prepared], settings: SuperResolutionSettings, what: str) -> None:
    for i, p in enumerate(prepared):
        if any(n < q for n, q in zip(p.hr.shape, settings.patch_zyx, strict=True)):
            raise InputDataError(
                f"{what}[{i}] has {p.hr.shape[::-1]} voxels (x, y, z, after cropping to whole LR voxels), "
                f"fewer than patch_size={settings.patch_size}; lower patch_size or drop the volume"
            )


def _sample_patches(prepared: Sequence[_Prepared], settings: SuperResolutionSettings, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    f, lr_p, hr_p = settings.scale_zyx, settings.lr_patch_zyx, settings.patch_zyx
    lrs, hrs, src, corners = [], [], [], []
    for v, p in enumerate(prepared):
        for _ in range(settings.patches_per_volume):
            # Corners on the LR grid, so the HR patch starts on a block boundary and the pair is aligned.
            c_lr = [int(rng.integers(0, n - q + 1)) for n, q in zip(p.lr.shape, lr_p, strict=True)]
            c_hr = [c * fi for c, fi in zip(c_lr, f, strict=True)]
            lrs.append(p.lr[tuple(slice(c, c + q) for c, q in zip(c_lr, lr_p, strict=True))])
            hrs.append(p.hr[tuple(slice(c, c + q) for c, q in zip(c_hr, hr_p, strict=True))])
            src.append(v)
            corners.append(c_hr)
    return np.stack(lrs)[:, None], np.stack(hrs)[:, None], np.asarray(src), np.asarray(corners, dtype=np.int64)


@dataclass(frozen=True)
class TrainingPairs:
    """Aligned LR/HR patch pairs cut from degraded volumes.

    Attributes
    ----------
    lr, hr : numpy.ndarray
        ``(N, 1, z, y, x)`` float32 patches in normalised units (LR clipped to
        [0, 1]; HR on the same scale, not clipped); ``hr`` sizes are ``lr``
        sizes times the scale factors.
    volume : numpy.ndarray
        ``(N,)`` index of the source volume of each pair.
    corner_hr : numpy.ndarray
        ``(N, 3)`` HR voxel index (z, y, x) of each patch's first voxel (the LR
        corner is ``corner_hr / scale``).
    windows : list of (float, float)
        Intensities mapped to 0 and 1, per volume.
    hr_spacing, lr_spacing : list of (float, float, float)
        Spacing (x, y, z) of each HR volume and of its LR version.
    """

    lr: np.ndarray
    hr: np.ndarray
    volume: np.ndarray
    corner_hr: np.ndarray
    windows: list[tuple[float, float]]
    hr_spacing: list[tuple[float, float, float]]
    lr_spacing: list[tuple[float, float, float]]


def make_training_pairs(
    volumes: Sequence[sitk.Image | np.ndarray], settings: SuperResolutionSettings, seed: int | None = None
) -> TrainingPairs:
    """Degrade HR volumes (:func:`degrade_volume`) and cut seeded, aligned LR/HR patch pairs.

    Each volume is normalised with the ``clip_percentiles`` of its LR
    version, then ``patches_per_volume`` patch positions are drawn uniformly
    on the LR grid (so every HR patch starts on a block boundary).

    Parameters
    ----------
    volumes : sequence of SimpleITK.Image or (z, y, x) numpy arrays
        HR volumes, each at least ``patch_size`` voxels per axis.
    settings : SuperResolutionSettings
    seed : int, optional
        Seed of the patch positions; default ``settings.seed``.

    Returns
    -------
    TrainingPairs

    Raises
    ------
    InputDataError
        When a volume is smaller than the patch or has non-finite voxels.
    """
    settings = _as_settings(settings)
    prepared = _prepare(volumes, settings, "volumes")
    if not prepared:
        raise InputDataError("no volumes given")
    _check_patch_fits(prepared, settings, "volumes")
    lr, hr, src, corners = _sample_patches(prepared, settings, np.random.default_rng(settings.seed if seed is None else seed))
    return TrainingPairs(
        lr=lr,
        hr=hr,
        volume=src,
        corner_hr=corners,
        windows=[p.window for p in prepared],
        hr_spacing=[p.hr_spacing for p in prepared],
        lr_spacing=[p.lr_spacing for p in prepared],
    )


# -- metrics ---------------------------------------------------------------------------
def _as_5d(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float32) if not isinstance(a, torch.Tensor) else a, dtype=torch.float32)
    if t.ndim != 3:
        raise InputDataError(f"metrics need a 3D (z, y, x) volume, got shape {tuple(t.shape)}")
    return t[None, None]


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (MONAI ``PSNRMetric``; scikit-image is not installed).

    Parameters
    ----------
    reference, test : numpy.ndarray
        3D volumes of the same shape.
    data_range : float
        Peak value range (1 for the normalised [0, 1] scale used in training).

    Returns
    -------
    float
        ``inf`` for identical volumes.
    """
    from monai.metrics import PSNRMetric  # lazy: importing MONAI takes seconds

    ref, tst = _as_5d(reference), _as_5d(test)
    if ref.shape != tst.shape:
        raise InputDataError(f"shapes differ: {tuple(ref.shape[2:])} vs {tuple(tst.shape[2:])}")
    return float(PSNRMetric(max_val=float(data_range))(tst, ref).item())


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity of 3D volumes (MONAI ``SSIMMetric``, Gaussian window sigma 1.5).

    The window is 7 voxels per axis, or the largest odd size that fits a
    thinner volume (at least 3 voxels per axis are needed); the mean over the
    valid (unpadded) region is returned.

    Parameters
    ----------
    reference, test : numpy.ndarray
        3D volumes of the same shape.
    data_range : float
        Intensity range (1 for the normalised scale).

    Returns
    -------
    float
    """
    from monai.metrics import SSIMMetric  # lazy: importing MONAI takes seconds

    ref, tst = _as_5d(reference), _as_5d(test)
    if ref.shape != tst.shape:
        raise InputDataError(f"shapes differ: {tuple(ref.shape[2:])} vs {tuple(tst.shape[2:])}")
    win = [min(7, n if n % 2 else n - 1) for n in ref.shape[2:]]
    if min(win) < 3:
        raise InputDataError(f"SSIM needs at least 3 voxels per axis, got {tuple(ref.shape[2:])}")
    return float(SSIMMetric(spatial_dims=3, data_range=float(data_range), win_size=win)(tst, ref).item())


# -- inference -------------------------------------------------------------------------
@torch.no_grad()
def _infer_array(model: SRGenerator, lr: np.ndarray, tile: int, device: torch.device) -> np.ndarray:
    """Tiled inference of a normalised LR volume (z, y, x); the result equals whole-volume inference.

    Each LR tile of ``tile`` voxels is processed together with a margin of the
    generator's receptive radius of real neighbouring voxels (cut at the volume
    border), and only the tile's own part of the output is kept: the zero
    padding of the convolutions at a tile edge never reaches kept voxels, while
    at the volume border the network sees the same zero padding as in a
    whole-volume pass (and as at the edges of training patches). So tiles join
    seamlessly, and a volume that fits one tile costs no extra computation.
    """
    f, m = model.scale_zyx, model.receptive_radius
    lr = np.ascontiguousarray(lr, dtype=np.float32)
    out = np.empty([n * fi for n, fi in zip(lr.shape, f, strict=True)], np.float32)
    starts = [range(0, n, tile) for n in lr.shape]
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                core = [(s, min(s + tile, n)) for s, n in zip((z0, y0, x0), lr.shape, strict=True)]
                win = [(max(0, s - m), min(n, e + m)) for (s, e), n in zip(core, lr.shape, strict=True)]
                block = lr[tuple(slice(a, b) for a, b in win)]
                pred = model(torch.from_numpy(np.ascontiguousarray(block))[None, None].to(device))[0, 0].cpu().numpy()
                keep = tuple(slice((s - a) * fi, (e - a) * fi) for (s, e), (a, _), fi in zip(core, win, f, strict=True))
                out[tuple(slice(s * fi, e * fi) for (s, e), fi in zip(core, f, strict=True))] = pred[keep]
    return out


def _check_model(model: Any, settings: SuperResolutionSettings | None) -> tuple[SRGenerator, SuperResolutionSettings]:
    if isinstance(model, SRResult):
        settings = model.settings if settings is None else settings
        model = model.model
    if not isinstance(model, SRGenerator):
        raise TypeError(f"model must be an SRGenerator or SRResult, not {type(model).__name__}")
    if settings is None:
        raise TypeError("settings are needed with a bare SRGenerator (pass the training settings)")
    settings = _as_settings(settings)
    if model.scale_zyx != settings.scale_zyx:
        raise InputDataError(f"the generator up-samples by {model.scale_zyx[::-1]} (x, y, z) but settings.scale is {settings.scale}")
    return model, settings


def _fine_image(array: np.ndarray, coarse: sitk.Image, scale_xyz: Sequence[int]) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.SetSpacing([s / f for s, f in zip(coarse.GetSpacing(), scale_xyz, strict=True)])
    out.SetDirection(coarse.GetDirection())
    out.SetOrigin(_fine_origin(coarse, scale_xyz))
    return out


def apply_super_resolution(
    model: SRGenerator | SRResult, image: sitk.Image, settings: SuperResolutionSettings | None = None
) -> sitk.Image:
    """Super-resolve a whole volume (tiled inference) onto the finer grid, in the input's intensity units.

    The image is normalised with its own ``clip_percentiles`` window (clipped
    to [0, 1]), processed in LR tiles of ``inference_tile`` voxels with a
    margin of the generator's receptive radius (the result does not depend on
    the tile size) and mapped back with the inverse of the window, unclipped.

    Parameters
    ----------
    model : SRGenerator or SRResult
        Trained generator (an :class:`SRResult` brings its own settings).
    image : SimpleITK.Image
        3D scalar LR image, any pixel type.
    settings : SuperResolutionSettings, optional
        Needed with a bare generator; its ``scale`` must match the generator.

    Returns
    -------
    SimpleITK.Image
        float32 image of size ``size * scale``, spacing ``spacing / scale``,
        the same direction, and origin moved by ``-spacing * (scale - 1) /
        (2 scale)`` along each axis (direction cosines applied), so it covers
        exactly the physical extent of the input (see the module notes).
        Metadata dictionary entries are not copied (they describe the old grid).
    """
    generator, settings = _check_model(model, settings)
    image = _as_image(image, "image")
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    lo, hi = _window(arr, settings.clip_percentiles)
    device = _device(settings)
    generator.to(device).eval()
    y = _infer_array(generator, np.clip((arr - lo) / (hi - lo), 0.0, 1.0), settings.inference_tile, device)
    return _fine_image(y.astype(np.float64) * (hi - lo) + lo, image, settings.scale)


def trilinear_upsample(image: sitk.Image, scale: Sequence[int]) -> sitk.Image:
    """Trilinear interpolation onto the same finer grid as :func:`apply_super_resolution` (the baseline).

    Parameters
    ----------
    image : SimpleITK.Image
        3D scalar image.
    scale : (int, int, int)
        Factors per axis (x, y, z).

    Returns
    -------
    SimpleITK.Image
        float32, in the input's units (no normalisation: interpolation is linear);
        values beyond the outermost voxel centres are clamped to the border voxels.
    """
    image = _as_image(image, "image")
    scale_xyz = [int(f) for f in scale]
    if len(scale_xyz) != 3 or min(scale_xyz) < 1:
        raise ValueError(f"scale={tuple(scale)}: give three integer factors >= 1 (x, y, z)")
    arr = torch.from_numpy(sitk.GetArrayFromImage(image).astype(np.float32))[None, None]
    return _fine_image(_trilinear(arr, scale_xyz[::-1])[0, 0].numpy(), image, scale_xyz)


def upsample_mask(mask: sitk.Image, reference_sr_image: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a mask onto the SR grid, so the ROI is the same physical region.

    With the same-extent grid and integer factors, every fine voxel centre
    lies strictly inside one coarse voxel, so each mask voxel becomes exactly
    ``prod(scale)`` sub-voxels and the ROI volume in mm^3 is unchanged.

    Parameters
    ----------
    mask : SimpleITK.Image
        Label mask on (typically) the LR image grid.
    reference_sr_image : SimpleITK.Image
        The output of :func:`apply_super_resolution`.

    Returns
    -------
    SimpleITK.Image
        The mask on the grid of ``reference_sr_image``, same pixel type and label values.
    """
    mask = _as_image(mask, "mask")
    return sitk.Resample(mask, reference_sr_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


# -- training ------------------------------------------------------------------------------
def _gradient_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of forward differences along each axis (edge/gradient consistency)."""
    terms = [(torch.diff(sr, dim=d) - torch.diff(hr, dim=d)).abs().mean() for d in (2, 3, 4) if sr.shape[d] > 1]
    return torch.stack(terms).mean()


def _perceptual_loss(net: nn.Module, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Relative L1 distance of feature maps, averaged over stages.

    Dividing by the mean magnitude of the HR features (no gradient) makes the
    loss scale-free, so the same weight works for random and pretrained
    networks whose feature magnitudes differ by orders of magnitude.
    """
    with torch.no_grad():
        target = net(hr)
    terms = [(a - b).abs().mean() / (b.abs().mean() + 1e-6) for a, b in zip(net(sr), target, strict=True)]
    return torch.stack(terms).mean()


def _gan_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def _augment(lr: torch.Tensor, hr: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Flipping an aligned pair keeps it aligned: patch sizes are whole blocks and the degradation is symmetric.
    dims = [d for d in (2, 3, 4) if torch.rand(1, generator=gen).item() < 0.5]
    return (lr.flip(dims), hr.flip(dims)) if dims else (lr, hr)


def _state_sha256(model: nn.Module) -> str:
    """SHA-256 of the weights' names, dtypes, shapes and bytes in key order (independent of file format)."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _validate(model: SRGenerator, val: Sequence[_Prepared], settings: SuperResolutionSettings, device: torch.device) -> list[dict]:
    model.eval()
    rows = []
    for i, p in enumerate(val):
        sr = _infer_array(model, p.lr, settings.inference_tile, device)
        rows.append({"volume": i, "psnr": psnr(p.hr, sr), "ssim": ssim(p.hr, sr)})
    return rows


@dataclass
class SRResult:
    """A trained super-resolution generator and its training record.

    Attributes
    ----------
    model : SRGenerator
        Generator with the best-validation weights, eval mode.
    discriminator : PatchDiscriminator3D or None
        The discriminator at the end of training (``None`` when ``adversarial_weight`` is 0).
    history : pandas.DataFrame
        One row per epoch: ``epoch``, ``phase`` (``warmup``/``adversarial``),
        generator losses ``g_total``, ``g_l1``, ``g_gradient``,
        ``g_perceptual``, ``g_adversarial`` and discriminator loss ``d_loss``
        (means over the epoch's batches, unweighted; NaN when a term is off),
        validation ``val_psnr``, ``val_ssim`` (means over validation volumes,
        normalised [0, 1] scale, data range 1), the constant trilinear
        baseline ``val_psnr_trilinear``, ``val_ssim_trilinear`` and the gains
        ``val_psnr_gain`` (dB) and ``val_ssim_gain``.
    best_epoch : int
        Epoch with the highest validation PSNR (the first on a tie); its weights are in ``model``.
    val_metrics : pandas.DataFrame
        Per validation volume at the best epoch: ``psnr``, ``ssim``, ``psnr_trilinear``, ``ssim_trilinear``.
    weights_sha256 : str
        SHA-256 of the best weights' tensors (see ``_state_sha256``; equal for equal weights).
    perceptual_sha256 : str or None
        SHA-256 of the local perceptual weights file; ``None``: random features or no perceptual loss.
    perceptual_source : str
        ``"local file"``, ``"random (seed N)"`` or ``"off"``.
    checkpoint_path : pathlib.Path or None
        The checkpoint manifest written by :func:`save_checkpoint`, when a folder was given.
    settings : SuperResolutionSettings
    budget : TrainingBudget or None
        Epochs run, why training stopped, device and wall time (see :class:`~helpers.imaging.deep.budget.TrainingBudget`).
    """

    model: SRGenerator
    discriminator: PatchDiscriminator3D | None
    history: pd.DataFrame
    best_epoch: int
    val_metrics: pd.DataFrame
    weights_sha256: str
    perceptual_sha256: str | None
    perceptual_source: str
    checkpoint_path: Path | None
    settings: SuperResolutionSettings = field(repr=False)
    budget: TrainingBudget | None = None


def train_super_resolution(
    train_volumes: Sequence[sitk.Image | np.ndarray],
    val_volumes: Sequence[sitk.Image | np.ndarray],
    settings: SuperResolutionSettings,
    checkpoint_dir: str | Path | None = None,
) -> SRResult:
    """Train the 3D SR GAN on volumes degraded by :func:`degrade_volume`.

    Per epoch: fresh seeded patch pairs (``patches_per_volume`` per training
    volume), shuffled into batches, optionally flipped; for each batch the
    discriminator is updated on real HR vs generated patches (from epoch
    ``warmup_epochs + 1`` and only when ``adversarial_weight > 0``), then the
    generator on ``l1 * L1 + gradient * G + perceptual * P + adversarial * A``
    (Adam). After each epoch the generator super-resolves every whole
    validation volume (tiled, like :func:`apply_super_resolution`) and PSNR and
    SSIM against the HR volume are compared with trilinear interpolation; the
    weights with the best validation PSNR are kept. Runs are reproducible for
    a given seed, device and thread count.

    Parameters
    ----------
    train_volumes, val_volumes : sequence of SimpleITK.Image or (z, y, x) arrays
        HR volumes; training volumes must hold at least one patch. Keep the
        final test volumes out of both (validation selects the checkpoint).
    settings : SuperResolutionSettings
    checkpoint_dir : str or Path, optional
        Write the best checkpoint there (:func:`save_checkpoint`).

    Returns
    -------
    SRResult
    """
    settings = _as_settings(settings)
    device = _device(settings)
    train = _prepare(train_volumes, settings, "train_volumes")
    val = _prepare(val_volumes, settings, "val_volumes")
    if not train or not val:
        raise InputDataError("training and validation volumes are both needed (validation selects the checkpoint)")
    _check_patch_fits(train, settings, "train_volumes")

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's random state
        torch.manual_seed(settings.seed)
        generator = SRGenerator(settings.scale_zyx, settings.generator_width, settings.generator_depth, settings.upsampling)
        adversarial = settings.adversarial_weight > 0
        discriminator = PatchDiscriminator3D(settings.discriminator_width) if adversarial else None
    generator.to(device)
    if settings.perceptual_weight > 0:
        perceptual, perceptual_sha = load_perceptual_network(settings)
        perceptual.to(device)
        source = "local file" if perceptual_sha else f"random (seed {settings.seed + 1})"
    else:
        perceptual, perceptual_sha, source = None, None, "off"
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.generator_lr, betas=settings.adam_betas)
    opt_d = None
    if discriminator is not None:
        discriminator.to(device)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.discriminator_lr, betas=settings.adam_betas)

    # Baseline metrics: the trilinear interpolation of the same clipped LR input the generator sees.
    baseline = []
    for p in val:
        tri = _trilinear(torch.from_numpy(p.lr)[None, None], settings.scale_zyx)[0, 0].numpy()
        baseline.append({"psnr_trilinear": psnr(p.hr, tri), "ssim_trilinear": ssim(p.hr, tri)})
    base_psnr = float(np.mean([b["psnr_trilinear"] for b in baseline]))
    base_ssim = float(np.mean([b["ssim_trilinear"] for b in baseline]))

    rng = np.random.default_rng(settings.seed)  # patch positions
    gen = torch.Generator().manual_seed(settings.seed)  # batch order and flips
    rows: list[dict] = []
    best = (-math.inf, settings.epochs, None, None)  # psnr, epoch, state, per-volume rows
    clock = BudgetClock(settings.epochs, settings.time_budget_minutes, str(device))
    for epoch in range(1, settings.epochs + 1):
        adv_on = discriminator is not None and epoch > settings.warmup_epochs
        lr_all, hr_all, _, _ = _sample_patches(train, settings, rng)
        order = torch.randperm(len(lr_all), generator=gen).numpy()
        sums = dict.fromkeys(("g_total", "g_l1", "g_gradient", "g_perceptual", "g_adversarial", "d_loss"), 0.0)
        seen = 0
        generator.train()
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            lr_b, hr_b = torch.from_numpy(lr_all[idx]), torch.from_numpy(hr_all[idx])
            if settings.augment:
                lr_b, hr_b = _augment(lr_b, hr_b, gen)
            lr_b, hr_b = lr_b.to(device), hr_b.to(device)
            sr = generator(lr_b)
            if adv_on:
                for p in discriminator.parameters():
                    p.requires_grad_(True)
                d_real = _gan_loss(discriminator(hr_b), True, settings.gan_loss)
                d_loss = 0.5 * (d_real + _gan_loss(discriminator(sr.detach()), False, settings.gan_loss))
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                sums["d_loss"] += d_loss.item() * len(idx)
                # The generator step must not accumulate gradients in the discriminator.
                for p in discriminator.parameters():
                    p.requires_grad_(False)
            l1 = (sr - hr_b).abs().mean()
            grad = _gradient_loss(sr, hr_b)
            total = settings.l1_weight * l1 + settings.gradient_weight * grad
            perc = _perceptual_loss(perceptual, sr, hr_b) if perceptual is not None else None
            if perc is not None:
                total = total + settings.perceptual_weight * perc
            adv = _gan_loss(discriminator(sr), True, settings.gan_loss) if adv_on else None
            if adv is not None:
                total = total + settings.adversarial_weight * adv
            opt_g.zero_grad()
            total.backward()
            opt_g.step()
            n = len(idx)
            sums["g_total"] += total.item() * n
            sums["g_l1"] += l1.item() * n
            sums["g_gradient"] += grad.item() * n
            sums["g_perceptual"] += perc.item() * n if perc is not None else 0.0
            sums["g_adversarial"] += adv.item() * n if adv is not None else 0.0
            seen += n
        last = clock.last_epoch(epoch)  # the epochs are done, or another one would exceed the time budget
        row = {"epoch": epoch, "phase": "adversarial" if adv_on else "warmup"}
        row.update({k: v / seen for k, v in sums.items()})
        if perceptual is None:
            row["g_perceptual"] = math.nan
        if not adv_on:
            row["g_adversarial"] = row["d_loss"] = math.nan
        val_rows = _validate(generator, val, settings, device) if last or epoch % settings.validate_every == 0 else None
        row["val_psnr"] = float(np.mean([r["psnr"] for r in val_rows])) if val_rows else math.nan
        row["val_ssim"] = float(np.mean([r["ssim"] for r in val_rows])) if val_rows else math.nan
        row.update(
            val_psnr_trilinear=base_psnr,
            val_ssim_trilinear=base_ssim,
            val_psnr_gain=row["val_psnr"] - base_psnr,
            val_ssim_gain=row["val_ssim"] - base_ssim,
        )
        rows.append(row)
        if val_rows and row["val_psnr"] > best[0]:  # strict: on a tie the earlier epoch is kept
            best = (row["val_psnr"], epoch, copy.deepcopy(generator.state_dict()), val_rows)
        clock.epoch_done()
        if last:
            break

    _, best_epoch, best_state, best_rows = best
    generator.load_state_dict(best_state)
    generator.eval()
    val_metrics = pd.DataFrame(
        [{**r, **b} for r, b in zip(best_rows, baseline, strict=True)],
        columns=["volume", "psnr", "psnr_trilinear", "ssim", "ssim_trilinear"],
    ).set_index("volume")
    if discriminator is not None:
        for p in discriminator.parameters():  # handed back trainable, as built
            p.requires_grad_(True)
    result = SRResult(
        model=generator,
        discriminator=discriminator.eval() if discriminator is not None else None,
        history=pd.DataFrame(rows),
        best_epoch=best_epoch,
        val_metrics=val_metrics,
        weights_sha256=_state_sha256(generator),
        perceptual_sha256=perceptual_sha,
        perceptual_source=source,
        checkpoint_path=None,
        settings=settings,
        budget=clock.summary(),
    )
    if checkpoint_dir is not None:
        result.checkpoint_path = save_checkpoint(result, checkpoint_dir)
    return result


# -- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(result: SRResult, directory: str | Path) -> Path:
    """Write the best generator weights, the settings JSON and a manifest with SHA-256 digests.

    Parameters
    ----------
    result : SRResult
    directory : str or Path
        Created when missing; files ``sr_generator.pt`` (state dict),
        ``sr_settings.json`` and ``sr_checkpoint.json`` are overwritten.

    Returns
    -------
    pathlib.Path
        The manifest ``sr_checkpoint.json``: file names and SHA-256 of the
        weights and settings files, the tensor digest, best epoch, validation
        PSNR/SSIM vs trilinear, perceptual-network source and torch version.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, settings_path = directory / _WEIGHTS_FILE, directory / _SETTINGS_FILE
    torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, weights)
    settings_path.write_text(result.settings.model_dump_json(indent=2) + "\n", encoding="utf-8")
    best = result.history.loc[result.history["epoch"] == result.best_epoch].iloc[0]
    manifest = {
        "weights_file": _WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "settings_file": _SETTINGS_FILE,
        "settings_sha256": sha256_file(settings_path),
        "state_sha256": result.weights_sha256,
        "best_epoch": int(result.best_epoch),
        "val_psnr": float(best["val_psnr"]),
        "val_psnr_trilinear": float(best["val_psnr_trilinear"]),
        "val_ssim": float(best["val_ssim"]),
        "val_ssim_trilinear": float(best["val_ssim_trilinear"]),
        "perceptual_source": result.perceptual_source,
        "perceptual_weights_sha256": result.perceptual_sha256,
        "torch_version": torch.__version__,
        **({"training": result.budget.as_dict()} if result.budget is not None else {}),
    }
    path = directory / _MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def load_checkpoint(directory: str | Path) -> tuple[SRGenerator, SuperResolutionSettings]:
    """Load a generator saved by :func:`save_checkpoint`, verifying the SHA-256 of its files.

    Parameters
    ----------
    directory : str or Path
        Folder holding ``sr_checkpoint.json`` (or the manifest path itself).

    Returns
    -------
    (SRGenerator, SuperResolutionSettings)
        The generator in eval mode on the CPU and its training settings.

    Raises
    ------
    SRWeightsError
        When a file is missing, altered (digest mismatch) or does not fit the network.
    """
    directory = Path(directory)
    manifest_path = directory if directory.is_file() else directory / _MANIFEST_FILE
    if not manifest_path.is_file():
        raise SRWeightsError(
            f"no checkpoint manifest at {manifest_path}; point at the folder given to train_super_resolution or save_checkpoint"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    folder = manifest_path.parent
    for key in ("weights", "settings"):
        path = folder / manifest[f"{key}_file"]
        if not path.is_file():
            raise SRWeightsError(f"checkpoint file missing: {path}")
        if sha256_file(path) != manifest[f"{key}_sha256"]:
            raise SRWeightsError(f"{path} does not match the SHA-256 recorded in {manifest_path}: the file was changed or replaced")
    settings = SuperResolutionSettings.model_validate_json((folder / manifest["settings_file"]).read_text(encoding="utf-8"))
    model = SRGenerator(settings.scale_zyx, settings.generator_width, settings.generator_depth, settings.upsampling)
    weights = folder / manifest["weights_file"]
    _load_strict(model, _read_state_dict(weights), weights, "SR generator of these settings")
    return model.eval(), settings
