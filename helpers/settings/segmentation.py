"""Settings of the nnU-Net-style segmentation network (notebook 02): preprocessing, network, loss, optimiser, validation, augmentation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from helpers.settings._base import StrictModel

__all__ = ['ClipSettings', 'NetworkSettings', 'LossSettings', 'OptimizerSettings', 'ValidationSettings', 'AugmentationSettings', 'SegmentationSettings']


class ClipSettings(StrictModel):
    """Intensity clipping before z-scoring: exactly one of ``percentiles`` or ``window``.

    ``percentiles`` (low, high) are computed per image over all its voxels
    (there is no mask at inference time); ``window`` is a fixed (low, high)
    range in image units, e.g. a HU window for CT.
    """

    percentiles: tuple[float, float] | None = None
    window: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ClipSettings:
        if (self.percentiles is None) == (self.window is None):
            raise ValueError("clip: give exactly one of 'percentiles' (e.g. [0.5, 99.5]) or 'window' (e.g. [-100, 240])")
        if self.percentiles is not None and not (0 <= self.percentiles[0] < self.percentiles[1] <= 100):
            raise ValueError("clip.percentiles must be (low, high) with 0 <= low < high <= 100")
        if self.window is not None and self.window[0] >= self.window[1]:
            raise ValueError("clip.window must be (low, high) with low < high")
        return self


class NetworkSettings(StrictModel):
    """The DynUNet (nnU-Net's 3D U-Net); kernel sizes and strides are derived from patch size and spacing.

    Attributes
    ----------
    filters : channels per resolution level; default ``base_filters * 2**level``
        capped at ``max_filters`` (nnU-Net: 32, 64, 128, 256, 320, 320).
    max_levels : maximum number of resolution levels (including full resolution).
    min_feature_size : an axis is only down-sampled while its feature map stays
        at least this many voxels (nnU-Net: 4).
    deep_supervision : add auxiliary outputs at lower decoder levels to the loss.
    deep_supervision_heads : number of auxiliary outputs (must be smaller than
        the number of up-sampling levels).
    """

    filters: tuple[int, ...] | None = None
    base_filters: int = Field(32, ge=1)
    max_filters: int = Field(320, ge=1)
    max_levels: int = Field(6, ge=2)
    min_feature_size: int = Field(4, ge=1)
    deep_supervision: bool = True
    deep_supervision_heads: int = Field(2, ge=1)
    norm: Literal["instance", "batch"] = "instance"
    res_block: bool = False

    @field_validator("filters")
    @classmethod
    def _positive(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (len(value) < 2 or min(value) < 1):
            raise ValueError("network.filters needs at least two positive channel counts (one per resolution level)")
        return value


class LossSettings(StrictModel):
    """Dice + cross-entropy (MONAI ``DiceCELoss``), summed over deep-supervision heads with weights 1/2^i."""

    kind: Literal["dice_ce"] = "dice_ce"
    dice_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    include_background: bool = Field(False, description="include the background channel in the Dice term")
    batch_dice: bool = Field(True, description="Dice over the whole batch (nnU-Net), not per sample")

    @model_validator(mode="after")
    def _some_weight(self) -> LossSettings:
        if self.dice_weight == 0 and self.ce_weight == 0:
            raise ValueError("loss: dice_weight and ce_weight cannot both be 0")
        return self


class OptimizerSettings(StrictModel):
    """Optimiser and learning-rate schedule (stepped once per epoch).

    ``poly``: lr * (1 - epoch/epochs)^poly_exponent (nnU-Net); ``cosine``:
    cosine annealing to 0; ``constant``. ``momentum``/``nesterov`` are used
    by SGD only (Adam keeps torch's default betas).
    """

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_exponent: float = Field(0.9, gt=0)
    grad_clip_norm: float | None = Field(12.0, gt=0, description="clip the gradient norm (nnU-Net: 12); null: no clipping")


class ValidationSettings(StrictModel):
    """How the training cases are split when no validation cases are given.

    Either a random hold-out (``val_fraction``, 0.2 when neither is given:
    the 8:2 split of the seed study) or k-fold cross-validation (``folds``
    with ``fold`` the 0-based fold used for validation, default 0); not both.
    """

    val_fraction: float | None = Field(None, gt=0, lt=1)
    folds: int | None = Field(None, ge=2)
    fold: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _scheme(self) -> ValidationSettings:
        if self.val_fraction is not None and self.folds is not None:
            raise ValueError("validation: give val_fraction or folds, not both")
        if self.folds is None and self.fold is not None:
            raise ValueError("validation.fold needs validation.folds (k of the k-fold split)")
        if self.folds is not None and self.fold_index >= self.folds:
            raise ValueError(f"validation.fold must be 0..{self.folds - 1} for {self.folds} folds (got {self.fold})")
        return self

    @property
    def fraction(self) -> float:
        """The hold-out fraction in use (0.2 unless set)."""
        return 0.2 if self.val_fraction is None else self.val_fraction

    @property
    def fold_index(self) -> int:
        """The validation fold in use (0 unless set)."""
        return 0 if self.fold is None else self.fold


class AugmentationSettings(StrictModel):
    """Training augmentation (MONAI dictionary transforms), each with its own probability.

    Spatial: rotation (± degrees about each axis), scaling (factor range) and
    translation (± mm) in one random affine; flips along the listed axes.
    Intensity: Gaussian noise (SD in z-score units), Gaussian blur (sigma in
    voxels) and gamma contrast (intensity statistics retained). Patches are
    cropped with ``foreground_fraction`` of them centred on a labelled voxel
    (nnU-Net over-samples foreground by 1/3).
    """

    rotation_degrees: float = Field(30.0, ge=0, le=180)
    scaling: tuple[float, float] = (0.7, 1.4)
    translation_mm: float = Field(0.0, ge=0)
    affine_probability: float = Field(0.2, ge=0, le=1)
    flip_axes: tuple[Literal["x", "y", "z"], ...] = ("x", "y", "z")
    flip_probability: float = Field(0.5, ge=0, le=1)
    noise_probability: float = Field(0.1, ge=0, le=1)
    noise_std: float = Field(0.1, ge=0)
    blur_probability: float = Field(0.2, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    contrast_probability: float = Field(0.15, ge=0, le=1)
    contrast_gamma: tuple[float, float] = (0.7, 1.5)
    foreground_fraction: float = Field(0.33, ge=0, le=1)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentationSettings:
        for name in ("scaling", "blur_sigma", "contrast_gamma"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ValueError(f"augmentation.{name} must be (low, high) with 0 < low <= high (got {(lo, hi)})")
        if len(set(self.flip_axes)) != len(self.flip_axes):
            raise ValueError("augmentation.flip_axes lists an axis twice")
        return self


class SegmentationSettings(StrictModel):
    """Everything that defines a segmentation model, its training and its inference.

    Attributes
    ----------
    series : image series (key of the study's ``series``) the network reads.
    labels : label name -> mask value (positive integers; several for
        multi-label masks, e.g. ``{organ: 1, tumour: 2}``).
    target_spacing_mm : (x, y, z) spacing every image is resampled to.
    interpolator : image interpolator for resampling (label masks: linear
        interpolation of each label's indicator, then the largest fraction).
    clip : intensity clipping (percentiles per image, or a fixed window);
        ``None``: no clipping. Images are then z-scored (whole image).
    n4 : N4 bias-field correction on the native grid (MR).
    patch_size : (x, y, z) voxels of the training patch and the sliding window.
    network, loss, optimizer, validation, augmentation : see their classes.
    epochs, iterations_per_epoch, batch_size : one epoch is
        ``iterations_per_epoch`` batches of random patches.
    validate_every : validation Dice every n epochs (and after the last).
    time_budget_minutes : wall-clock budget of the training (None: none). It
        stops at the end of the first epoch after which another epoch would
        exceed the budget (that epoch is validated); the learning-rate schedule
        keeps its ``epochs``, so a budgeted run ends before the schedule does.
        Epochs run, stop reason, device and time are recorded in the
        checkpoint JSON and the methods; the epochs then depend on the
        machine (leave it unset for byte-identical re-runs).
    sw_overlap, sw_batch_size, sw_mode : sliding-window inference.
    seed : seeds torch, NumPy, Python, MONAI transforms and the data order.
    device : ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
    num_threads : torch CPU threads during training/inference (None: torch's default).
    pretrained_weights : LOCAL file of initial weights (a state dict); never a URL.
    checkpoint_dir : folder of the best checkpoint (relative to ``out_dir``).
    """

    series: str = Field(min_length=1)
    labels: dict[str, int]
    target_spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: Literal["bspline", "linear"] = "bspline"
    clip: ClipSettings | None = ClipSettings(percentiles=(0.5, 99.5))
    n4: bool = False
    patch_size: tuple[int, int, int] = (128, 128, 128)
    network: NetworkSettings = NetworkSettings()
    loss: LossSettings = LossSettings()
    optimizer: OptimizerSettings = OptimizerSettings()
    epochs: int = Field(500, ge=1)
    iterations_per_epoch: int = Field(250, ge=1)
    batch_size: int = Field(2, ge=1)
    validation: ValidationSettings = ValidationSettings()
    validate_every: int = Field(1, ge=1)
    time_budget_minutes: float | None = Field(None, gt=0)
    augmentation: AugmentationSettings = AugmentationSettings()
    sw_overlap: float = Field(0.5, ge=0, lt=1)
    sw_batch_size: int = Field(2, ge=1)
    sw_mode: Literal["gaussian", "constant"] = "gaussian"
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1)
    pretrained_weights: str | None = None
    checkpoint_dir: str = "checkpoints"

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("list at least one label (name: value)")
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"label values must be positive integers (0 is background): {bad}")
        if len(set(value.values())) != len(value):
            raise ValueError(f"two labels share a value: {value}")
        if max(value.values()) > 65535:
            raise ValueError("label values above 65535 cannot be stored in a uint16 mask")
        return value

    @field_validator("target_spacing_mm")
    @classmethod
    def _spacing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("target_spacing_mm values must be positive millimetres")
        return value

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 4:
            raise ValueError("patch_size values must be at least 4 voxels")
        return value

    @field_validator("pretrained_weights")
    @classmethod
    def _local(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(
                f"pretrained_weights must be a local file path, not a URL ({value!r}); nothing is downloaded: "
                "fetch the file yourself, check its checksum, and give its path"
            )
        return value

    @model_validator(mode="after")
    def _architecture_fits(self) -> SegmentationSettings:
        arch = self.architecture()  # raises ValueError with a readable message when the patch is too small
        ups = len(arch["strides"]) - 1
        if self.network.deep_supervision and self.network.deep_supervision_heads >= ups:
            raise ValueError(
                f"network.deep_supervision_heads={self.network.deep_supervision_heads} needs more than that many "
                f"up-sampling levels, but patch_size {self.patch_size} at {self.target_spacing_mm} mm gives {ups}; "
                f"use at most {ups - 1} head(s) or a larger patch"
            )
        return self

    # -- derived values ---------------------------------------------------
    @property
    def class_values(self) -> list[int]:
        """Mask value of each network output channel: 0 (background), then the label values in increasing order."""
        return [0, *sorted(self.labels.values())]

    @property
    def class_names(self) -> list[str]:
        """Name of each output channel (``background`` first)."""
        by_value = {v: k for k, v in self.labels.items()}
        return ["background", *[by_value[v] for v in sorted(by_value)]]

    @property
    def patch_zyx(self) -> tuple[int, int, int]:
        """``patch_size`` in array order (z, y, x)."""
        return tuple(int(v) for v in self.patch_size[::-1])  # type: ignore[return-value]

    def architecture(self) -> dict[str, Any]:
        """DynUNet kernel sizes, strides and filters derived nnU-Net style (array order z, y, x).

        At each level an axis is down-sampled by 2 when its current spacing is
        at most twice the finest current spacing (anisotropic axes wait until
        the others have caught up) and its feature map stays at least
        ``network.min_feature_size`` voxels; its kernel is 3 when its spacing
        is at most twice the finest, else 1 (no convolution across thick
        slices). Levels are added until no axis can be down-sampled or
        ``network.max_levels`` is reached.

        Returns
        -------
        dict
            ``kernel_size``, ``strides``, ``upsample_kernel_size``, ``filters``
            (lists per level), ``in_channels``, ``out_channels``,
            ``deep_supervision``, ``deep_supervision_heads``, ``norm``,
            ``res_block`` and ``axes`` (``"z,y,x"``).

        Raises
        ------
        ValueError
            When the patch allows fewer than 3 levels, or ``network.filters``
            does not have one entry per level.
        """
        net = self.network
        sizes = [float(v) for v in self.patch_size[::-1]]
        spacing = [float(v) for v in self.target_spacing_mm[::-1]]
        kernels: list[list[int]] = []
        strides: list[list[int]] = [[1, 1, 1]]
        while len(strides) < net.max_levels:
            finest = min(spacing)
            ratio = [s / finest for s in spacing]
            stride = [
                2 if r <= 2 and n % 2 == 0 and n / 2 >= net.min_feature_size else 1 for r, n in zip(ratio, sizes, strict=True)
            ]
            if all(s == 1 for s in stride):
                break
            kernels.append([3 if r <= 2 else 1 for r in ratio])
            strides.append(stride)
            sizes = [n / s for n, s in zip(sizes, stride, strict=True)]
            spacing = [p * s for p, s in zip(spacing, stride, strict=True)]
        finest = min(spacing)
        kernels.append([3 if s / finest <= 2 else 1 for s in spacing])  # the bottleneck's kernel
        if len(strides) < 3:
            # DynUNet needs an input level, at least one down-sampling level and a bottleneck.
            raise ValueError(
                f"patch_size {self.patch_size} at {self.target_spacing_mm} mm gives {len(strides)} resolution level(s); "
                f"the U-Net needs at least 3 (two halvings with feature maps of at least {net.min_feature_size} "
                f"voxels, e.g. {4 * net.min_feature_size} voxels along the finely spaced axes); use a larger patch"
            )
        levels = len(strides)
        if net.filters is not None:
            if len(net.filters) != levels:
                raise ValueError(
                    f"network.filters has {len(net.filters)} entries but patch_size {self.patch_size} at "
                    f"{self.target_spacing_mm} mm gives {levels} levels; give {levels} values or omit filters"
                )
            filters = list(net.filters)
        else:
            filters = [min(net.base_filters * 2**i, net.max_filters) for i in range(levels)]
        return {
            "axes": "z,y,x",
            "in_channels": 1,
            "out_channels": len(self.labels) + 1,
            "kernel_size": kernels,
            "strides": strides,
            "upsample_kernel_size": strides[1:],
            "filters": filters,
            "deep_supervision": net.deep_supervision,
            "deep_supervision_heads": net.deep_supervision_heads if net.deep_supervision else 0,
            "norm": net.norm,
            "res_block": net.res_block,
        }


