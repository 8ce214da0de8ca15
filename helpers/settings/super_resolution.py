"""Settings of the 3D GAN super-resolution arm (notebook 02)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ['SuperResolutionSettings']


class SuperResolutionSettings(BaseModel):
    """Settings of the 3D GAN super-resolution (validated; unknown keys are errors).

    All per-axis values are in image index order ``(x, y, z)`` like SimpleITK
    spacing (arrays are ``(z, y, x)``).

    Parameters
    ----------
    scale : (int, int, int), default (1, 1, 2)
        Up-sampling factor per axis: ``(1, 1, 2)`` halves the slice spacing
        (through-plane SR), ``(2, 2, 2)`` is isotropic. Integers 1-8, at least
        one above 1.
    patch_size : (int, int, int), default (32, 32, 32)
        HR training patch size in voxels; each entry at least 8 and a multiple
        of the scale factor (the LR patch is ``patch_size / scale``).
    patches_per_volume : int, default 8
        Patches sampled from each training volume per epoch (fresh, seeded
        positions every epoch).
    blur_fwhm : float, default 1.0
        Anti-aliasing Gaussian applied before decimation, FWHM in units of the
        LR spacing along each down-sampled axis (1.0: slice profile as thick
        as the LR voxel); 0 disables the blur (pure decimation, aliased).
    generator_width, generator_depth : int, default 32, 4
        Feature channels and residual blocks of :class:`SRGenerator`.
    upsampling : {"learned", "trilinear"}, default "learned"
        Up-sampling head: ``learned`` = sub-voxel convolution (3D pixel
        shuffle); ``trilinear`` = trilinear feature up-sampling + convolution.
        Either way the generator predicts a residual on top of the trilinear
        interpolation of its input.
    discriminator_width : int, default 16
        Channels of the first :class:`PatchDiscriminator3D` layer.
    gan_loss : {"lsgan", "bce"}, default "lsgan"
        Least-squares GAN loss (more stable on small data) or binary cross-entropy.
    l1_weight, gradient_weight, perceptual_weight, adversarial_weight : float
        Generator loss weights (defaults 1.0, 0.5, 0.1, 0.001). The gradient
        loss is the L1 distance of finite differences along each axis (edges);
        the perceptual loss the relative L1 distance of feature maps; at
        least one of L1/gradient/perceptual must be positive (an adversarial
        loss alone is not tied to the HR target). ``adversarial_weight=0``
        trains without a discriminator.
    perceptual_network : {"conv3d", "medicalnet_resnet10"}, default "conv3d"
        Fixed feature network: :class:`ConvFeatures3D` (two conv stages) or
        MONAI's 3D ResNet-10 (layer1 and layer2 outputs; the architecture of
        MedicalNet weights, heavier and imports MONAI).
    perceptual_weights : str or None, default None
        LOCAL state-dict file for the feature network; ``None``: seeded random
        initialisation, frozen (the documented weight-free stand-in). Never
        downloaded.
    perceptual_width : int, default 16
        Channels of the first :class:`ConvFeatures3D` stage.
    warmup_epochs : int, default 5
        Epochs trained without the adversarial term (pixel/gradient/perceptual
        losses only) before the discriminator starts; must be below ``epochs``
        when ``adversarial_weight > 0``.
    epochs, batch_size : int, default 100, 4
    validate_every : int, default 1
        Validation (PSNR/SSIM of the whole validation volumes, which picks the
        checkpoint) every n epochs and after the last one. On CPU it costs more
        than an epoch of training; other epochs' validation columns are empty.
    time_budget_minutes : float or None, default None
        Wall-clock budget of the training: it stops at the end of the first
        epoch after which another epoch would exceed the budget (that epoch is
        validated), or when ``epochs`` are done. The epochs run, the stop
        reason, the device and the time are recorded with the checkpoint and
        in the methods. The number of epochs then depends on the machine, so
        for byte-identical re-runs leave it unset and set ``epochs`` (e.g. to
        the epochs a budgeted run reached).
    generator_lr, discriminator_lr : float, default 1e-4, 1e-4
        Adam learning rates.
    adam_betas : (float, float), default (0.9, 0.999)
    augment : bool, default True
        Random flips of patch pairs along each axis (consistent for LR and HR).
    clip_percentiles : (float, float), default (0.5, 99.5)
        Percentiles of the network input (LR volume) mapped to 0 and 1.
    inference_tile : int, default 48
        Side of the LR tile processed at once by :func:`apply_super_resolution`
        (plus a margin of the generator's receptive radius, so the result does
        not depend on the tiling); lower it when memory is short.
    seed : int, default 0
        Seed of initialisation, patch sampling, batch order and augmentation.
    device : {"auto", "cpu", "cuda"}, default "auto"
        ``auto``: CUDA when available, else CPU.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: tuple[int, int, int] = (1, 1, 2)
    patch_size: tuple[int, int, int] = (32, 32, 32)
    patches_per_volume: int = Field(8, ge=1)
    blur_fwhm: float = Field(1.0, ge=0, le=4)
    generator_width: int = Field(32, ge=4, le=256)
    generator_depth: int = Field(4, ge=1, le=32)
    upsampling: Literal["learned", "trilinear"] = "learned"
    discriminator_width: int = Field(16, ge=4, le=256)
    gan_loss: Literal["lsgan", "bce"] = "lsgan"
    l1_weight: float = Field(1.0, ge=0)
    gradient_weight: float = Field(0.5, ge=0)
    perceptual_weight: float = Field(0.1, ge=0)
    adversarial_weight: float = Field(1e-3, ge=0)
    perceptual_network: Literal["conv3d", "medicalnet_resnet10"] = "conv3d"
    perceptual_weights: str | None = Field(None, min_length=1)
    perceptual_width: int = Field(16, ge=4, le=256)
    warmup_epochs: int = Field(5, ge=0)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(4, ge=1)
    validate_every: int = Field(1, ge=1)
    time_budget_minutes: float | None = Field(None, gt=0)
    generator_lr: float = Field(1e-4, gt=0)
    discriminator_lr: float = Field(1e-4, gt=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    augment: bool = True
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    inference_tile: int = Field(48, ge=4)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> "SuperResolutionSettings":
        if any(not 1 <= f <= 8 for f in self.scale) or all(f == 1 for f in self.scale):
            raise ValueError(f"scale={self.scale}: give integer factors 1-8 per axis (x, y, z), at least one above 1, e.g. (1, 1, 2)")
        for p, f, axis in zip(self.patch_size, self.scale, "xyz", strict=True):
            if p < 8 or p % f:
                raise ValueError(
                    f"patch_size={self.patch_size}: the {axis} size must be at least 8 and a multiple of its scale factor {f} "
                    "(each LR voxel must map onto whole HR voxels)"
                )
        if self.l1_weight + self.gradient_weight + self.perceptual_weight <= 0:
            raise ValueError("l1_weight, gradient_weight and perceptual_weight are all 0: the generator would not be tied to the HR image")
        if self.adversarial_weight > 0 and self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} >= epochs={self.epochs}: the adversarial phase would never start; "
                "lower warmup_epochs or set adversarial_weight: 0 for a non-adversarial run"
            )
        if not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas={self.adam_betas}: each must be in [0, 1)")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"clip_percentiles={self.clip_percentiles}: need 0 <= low < high <= 100")
        return self

    @property
    def scale_zyx(self) -> tuple[int, int, int]:
        """Scale factors in array order (z, y, x)."""
        return tuple(reversed(self.scale))  # type: ignore[return-value]

    @property
    def patch_zyx(self) -> tuple[int, int, int]:
        """HR patch size in array order (z, y, x)."""
        return tuple(reversed(self.patch_size))  # type: ignore[return-value]

    @property
    def lr_patch_zyx(self) -> tuple[int, int, int]:
        """LR patch size in array order (z, y, x)."""
        return tuple(p // f for p, f in zip(self.patch_zyx, self.scale_zyx, strict=True))  # type: ignore[return-value]


