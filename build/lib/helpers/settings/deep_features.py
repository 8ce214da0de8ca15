"""Settings of the 2.5D deep-feature arm (notebook 02)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ['DeepFeatureSettings']


class DeepFeatureSettings(BaseModel):
    """Settings of the 2.5D deep-feature arm (validated; unknown keys are errors).

    Parameters
    ----------
    series : str
        Series whose mask defines the tumour slice and crop; also the prefix
        of the feature names (``{series}_deep_pc01``).
    architecture : {"resnet18", "resnet34", "resnet50"}, default "resnet18"
        Backbone; resnet18 keeps CPU runs short, resnet50 is the published choice.
    pretrained_weights : str or None, default None
        Local path of a state dict in the torchvision ResNet key layout (e.g.
        ImageNet weights saved with ``torch.save(model.state_dict(), path)``).
        ``None``: random initialisation (seeded) with a warning. Never downloaded.
    mode : {"frozen", "finetune"}, default "frozen"
        ``frozen``: embeddings of the loaded network as is. ``finetune``: the
        whole network is first trained on the training patients' labels.
    channel_mode : {"neighbours", "sequences"}, default "neighbours"
        ``neighbours``: the largest tumour slice and its neighbours at
        ``slice_offsets`` as three channels. ``sequences``: the largest tumour
        slice of three co-registered series (``channel_series``) as channels.
    channel_series : (str, str, str) or None
        The three series fused in ``sequences`` mode, in channel order.
    slice_offsets : (int, int, int), default (-1, 0, 1)
        Slice offsets of the three channels around the largest slice, e.g.
        ``(-2, 0, 2)``; the middle one must be 0.
    mask_label : int or None, default None
        Mask value of the tumour; ``None``: every non-zero voxel.
    crop_margin_mm : float, default 5.0
        Margin added around the tumour bounding box, in mm (per axis, so an
        anisotropic in-plane spacing gets a different number of voxels).
    input_size : int, default 224
        Side of the square network input, in pixels.
    window : (float, float) or None, default None
        Fixed intensity window (e.g. CT HU); ``None``: per-scan percentiles
        ``clip_percentiles`` of the chosen slices (whole field of view).
    clip_percentiles : (float, float), default (0.5, 99.5)
        Percentiles used when no window is given.
    normalization : {"imagenet", "zscore", "unit"}, default "imagenet"
        After windowing to [0, 1]: ImageNet channel mean/SD (matches ImageNet
        weights), z-score of the stack, or none.
    feature_layout : {"per_channel", "concatenated", "stack"}, default "per_channel"
        ``per_channel``: each channel (slice position or sequence) embedded on
        its own (grey replicated to RGB) and reduced by its own PCA
        (``pca_components`` each, e.g. 3 x 8 = 24 features). ``concatenated``:
        the per-channel embeddings concatenated, one PCA. ``stack``: the
        3-channel stack embedded once, one PCA.
    pca_components : int, default 8
        Principal components per PCA.
    epochs, learning_rate, optimizer, weight_decay, batch_size, augment
        Training of the fine-tuned network and of :func:`train_deep_classifier`
        (SGD uses momentum 0.9; augmentation: random flips and 90-degree rotations).
    seed : int, default 0
        Seed of initialisation, batch order and augmentation.
    device : {"auto", "cpu", "cuda"}, default "auto"
        ``auto``: CUDA when available, else CPU.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    series: str = Field(min_length=1)
    architecture: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    pretrained_weights: str | None = Field(None, min_length=1)
    mode: Literal["frozen", "finetune"] = "frozen"
    channel_mode: Literal["neighbours", "sequences"] = "neighbours"
    channel_series: tuple[str, str, str] | None = None
    slice_offsets: tuple[int, int, int] = (-1, 0, 1)
    mask_label: int | None = None
    crop_margin_mm: float = Field(5.0, ge=0)
    input_size: int = Field(224, ge=16, le=1024)
    window: tuple[float, float] | None = None
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    normalization: Literal["imagenet", "zscore", "unit"] = "imagenet"
    feature_layout: Literal["per_channel", "concatenated", "stack"] = "per_channel"
    pca_components: int = Field(8, ge=1)
    epochs: int = Field(20, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(16, ge=2, description="at least 2: batch norm cannot train on single images")
    augment: bool = True
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> "DeepFeatureSettings":
        lo, mid, hi = self.slice_offsets
        if not (lo < mid == 0 < hi):
            raise ValueError(
                f"slice_offsets={self.slice_offsets}: give (below, 0, above) with below < 0 < above, e.g. (-1, 0, 1) or (-2, 0, 2)"
            )
        if self.channel_mode == "sequences" and self.channel_series is None:
            raise ValueError("channel_mode 'sequences' needs channel_series: the three co-registered series fused as channels")
        if self.channel_mode == "neighbours" and self.channel_series is not None:
            raise ValueError("channel_series is only used with channel_mode 'sequences'; remove it or set channel_mode: sequences")
        if self.window is not None and not self.window[0] < self.window[1]:
            raise ValueError(f"window={self.window}: the low end must be below the high end")
        p_lo, p_hi = self.clip_percentiles
        if not 0 <= p_lo < p_hi <= 100:
            raise ValueError(f"clip_percentiles={self.clip_percentiles}: need 0 <= low < high <= 100")
        return self

    @property
    def channel_names(self) -> tuple[str, str, str]:
        """Name of each input channel: ``z-1``, ``z+0``, ``z+1`` (neighbours) or the series."""
        if self.channel_mode == "sequences":
            return tuple(self.channel_series)  # type: ignore[return-value]
        return tuple(f"z{o:+d}" for o in self.slice_offsets)  # type: ignore[return-value]


