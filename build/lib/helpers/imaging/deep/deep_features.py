"""Deep features: 2.5D ResNet embeddings reduced by PCA, an end-to-end deep classifier and Grad-CAM.

Pipeline (after the 2.5D deep-learning arm of radiomics studies such as
Wang et al., BMC Med Imaging 2026, and the 2.5D CNN of the retroperitoneal
sarcoma study):

1. :func:`slices_25d` picks the axial slice with the largest tumour area and
   its neighbours at ``slice_offsets`` (``channel_mode="neighbours"``), or the
   same slice of three co-registered series (``channel_mode="sequences"``),
   crops the tumour bounding box dilated by ``crop_margin_mm``, resamples it
   to a square of ``input_size`` pixels (aspect kept by padding) and scales
   intensities.
2. :class:`DeepFeatureExtractor` (scikit-learn estimator contract) embeds the
   slices with a 2D ResNet (MONAI network in the torchvision key layout, so an
   ImageNet state dict saved from torchvision loads with a strict key check),
   takes the global-average-pooled penultimate layer and learns PCA on the
   TRAINING patients only; ``transform`` never changes the fitted state.
3. :func:`train_deep_classifier` trains the same network end to end (seeded,
   per-epoch training/validation loss, best-validation checkpoint) as the
   comparison arm; :func:`gradcam_maps` computes where it looks (MONAI
   Grad-CAM). The loss-curve and Grad-CAM figures are in :mod:`helpers.figures.deep`.

Nothing is ever downloaded: pretrained weights come from a local state-dict
file (:func:`load_backbone`); without one the network is randomly initialised
(seeded) and a :class:`UntrainedBackboneWarning` says so. MONAI is imported
lazily (importing it takes seconds), so slice preparation alone stays light.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from helpers.errors import BackboneWeightsError, ImageReadError, InputDataError, StudyError, UntrainedBackboneWarning  # noqa: F401  (defined in helpers.errors)
from helpers.imaging.deep.weights import read_state_dict
from helpers.imaging.io import conform_mask, read_image, read_mask, sha256_file
from helpers.settings.deep_features import DeepFeatureSettings

__all__ = [
    "DeepFeatureSettings",
    "BackboneWeightsError",
    "UntrainedBackboneWarning",
    "SliceSelection",
    "LoadedBackbone",
    "DeepClassifierResult",
    "select_slices",
    "slices_25d",
    "stack_inputs",
    "load_backbone",
    "embed",
    "DeepFeatureExtractor",
    "train_deep_classifier",
    "gradcam_maps",
]

#: ImageNet channel statistics (RGB) the torchvision/ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Block type and blocks per stage of the torchvision ResNets.
_ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _as_settings(settings: DeepFeatureSettings | Mapping[str, Any]) -> DeepFeatureSettings:
    if isinstance(settings, DeepFeatureSettings):
        return settings
    if isinstance(settings, Mapping):
        return DeepFeatureSettings(**settings)
    raise TypeError(f"settings must be DeepFeatureSettings or a mapping of its fields, not {type(settings).__name__}")


# -- 2.5D slices -----------------------------------------------------------------
ImageLike = Union[str, Path, sitk.Image, np.ndarray]
#: One patient: a prepared ``(3, S, S)`` stack, or ``(image, mask)`` / ``(image, mask, spacing_xyz)``
#: where ``image`` is a sequence of three images in ``sequences`` mode.
PatientInput = Union[np.ndarray, tuple]


@dataclass(frozen=True)
class SliceSelection:
    """Where the 2.5D input of a patient comes from.

    Attributes
    ----------
    centre : int
        Axial index (array order z, y, x) of the largest tumour slice.
    indices : tuple of int
        Axial index of each channel (neighbours mode), clamped to the volume.
    box : tuple of int
        In-plane crop ``(y0, y1, x0, x1)``, half-open voxel indices, after the margin.
    tumour_area_mm2 : float
        Tumour area on the centre slice.
    """

    centre: int
    indices: tuple[int, int, int]
    box: tuple[int, int, int, int]
    tumour_area_mm2: float


def select_slices(mask: np.ndarray, spacing: Sequence[float], settings: DeepFeatureSettings) -> SliceSelection:
    """Choose the largest tumour slice, its neighbours and the in-plane crop box.

    Slices run along the first array axis (z: the acquisition's slice
    direction, axial for axial scans). The largest slice is the one with the
    most tumour voxels (the in-plane voxel area is the same on every slice); on a tie
    the lowest index wins (``argmax`` returns the first maximum), so the choice
    never depends on anything but the mask. Neighbour indices ``centre + offset``
    outside the volume are clamped to the first/last slice (the edge slice is
    repeated) rather than dropped, so every patient has three channels. The
    crop box is the bounding box of the tumour on the chosen slices (a
    neighbour's tumour part is not cut off), widened by ``crop_margin_mm`` on
    each side, converted to voxels per axis with that axis' spacing (rounded
    up), and clipped to the image.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean tumour mask, array order ``(z, y, x)``.
    spacing : sequence of float
        Voxel spacing ``(x, y, z)`` in mm (SimpleITK order).
    settings : DeepFeatureSettings
        Uses ``slice_offsets`` and ``crop_margin_mm``.

    Returns
    -------
    SliceSelection

    Raises
    ------
    InputDataError
        When the mask is empty or not 3D.
    """
    settings = _as_settings(settings)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise InputDataError(f"mask must be a 3D (z, y, x) array, got shape {mask.shape}")
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        raise InputDataError("the tumour mask is empty: no slice to take deep features from; check the mask (and mask_label)")
    centre = int(np.argmax(areas))  # first maximum: ties go to the lower index
    nz = mask.shape[0]
    indices = tuple(int(min(max(centre + o, 0), nz - 1)) for o in settings.slice_offsets)
    rows = np.flatnonzero(mask[list(indices)].any(axis=(0, 2)))
    cols = np.flatnonzero(mask[list(indices)].any(axis=(0, 1)))
    sx, sy = float(spacing[0]), float(spacing[1])
    my = math.ceil(settings.crop_margin_mm / sy - 1e-9)
    mx = math.ceil(settings.crop_margin_mm / sx - 1e-9)
    box = (
        max(int(rows[0]) - my, 0),
        min(int(rows[-1]) + 1 + my, mask.shape[1]),
        max(int(cols[0]) - mx, 0),
        min(int(cols[-1]) + 1 + mx, mask.shape[2]),
    )
    return SliceSelection(centre, indices, box, float(areas[centre]) * sx * sy)  # type: ignore[arg-type]


def _to_image(obj: ImageLike, spacing: Sequence[float] | None, what: str) -> sitk.Image:
    if isinstance(obj, sitk.Image):
        return obj
    if isinstance(obj, (str, Path)):
        return read_image(obj)
    if isinstance(obj, np.ndarray):
        if spacing is None:
            raise InputDataError(
                f"{what} given as a numpy array without spacing: pass (image, mask, (sx, sy, sz)) so the crop margin is in mm"
            )
        if obj.ndim != 3:
            raise InputDataError(f"{what} array must be 3D (z, y, x), got shape {obj.shape}")
        img = sitk.GetImageFromArray(obj)
        img.SetSpacing(tuple(float(s) for s in spacing))
        return img
    raise TypeError(f"{what} must be a path, SimpleITK.Image or numpy array, not {type(obj).__name__}")


def _to_mask(obj: ImageLike, reference: sitk.Image, spacing: Sequence[float] | None) -> sitk.Image:
    if isinstance(obj, (str, Path)):
        return read_mask(obj, reference=reference)  # RTSTRUCT masks need their image
    if isinstance(obj, np.ndarray):
        if obj.shape != sitk.GetArrayViewFromImage(reference).shape:
            raise InputDataError(f"mask array shape {obj.shape} differs from the image's {sitk.GetArrayViewFromImage(reference).shape}")
        mask = sitk.GetImageFromArray(obj)
        mask.CopyInformation(reference)  # an array mask lies on its image's grid
        return mask
    # A mask within the geometry tolerance of its image is put on the image's exact grid (the study's policy).
    return conform_mask(_to_image(obj, spacing, "mask"), reference)


def _on_grid(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """The image's voxels on the reference (mask) grid, resampled linearly in physical space if needed."""
    same = (
        image.GetSize() == reference.GetSize()
        and np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=1e-4)
        and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
        and np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-4)
    )
    if not same:
        # Co-registered series (or a mask drawn on another grid) are compared voxel by voxel on the mask grid.
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(image).astype(np.float32)


def _crop_resize(
    plane: np.ndarray, box: tuple[int, int, int, int], spacing_xy: tuple[float, float], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample the crop box onto a square grid of isotropic pixels, padding the short side.

    Returns the resampled plane and the boolean map of pixels inside the crop
    (the rest is padding). The pixel size is the longer physical side of the
    crop divided by ``size``, so the physical aspect ratio is preserved.
    """
    y0, y1, x0, x1 = box
    sx, sy = spacing_xy
    h_mm, w_mm = (y1 - y0) * sy, (x1 - x0) * sx
    pixel = max(h_mm, w_mm) / size
    offsets_mm = (np.arange(size) + 0.5 - size / 2) * pixel  # output pixel centres relative to the crop centre
    ys = (y0 + y1 - 1) / 2 + offsets_mm / sy  # voxel i has its centre at index i
    xs = (x0 + x1 - 1) / 2 + offsets_mm / sx
    valid = ((ys >= y0 - 0.5) & (ys <= y1 - 0.5))[:, None] & ((xs >= x0 - 0.5) & (xs <= x1 - 0.5))[None, :]
    # Downsampling by linear interpolation aliases fine texture: blur first (sigma = (factor - 1) / 2, as skimage does).
    sigma = (max(pixel / sy - 1, 0) / 2, max(pixel / sx - 1, 0) / 2)
    source = ndimage.gaussian_filter(plane, sigma=sigma, mode="nearest") if max(sigma) > 0 else plane
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    out = ndimage.map_coordinates(source, [yy, xx], order=1, mode="nearest")
    return out.astype(np.float32), valid


def _window_limits(values: np.ndarray, settings: DeepFeatureSettings) -> tuple[float, float]:
    if settings.window is not None:
        return float(settings.window[0]), float(settings.window[1])
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, settings.clip_percentiles) if finite.size else (0.0, 1.0)
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _normalise(unit: np.ndarray, valid: np.ndarray, settings: DeepFeatureSettings) -> np.ndarray:
    if settings.normalization == "imagenet":
        mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
        std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
        return (unit - mean) / std
    if settings.normalization == "zscore":
        # Statistics of the image pixels only: the amount of padding differs between patients.
        inside = unit[:, valid]
        sd = float(inside.std())
        return (unit - float(inside.mean())) / (sd if sd > 0 else 1.0)
    return unit


def slices_25d(
    image: ImageLike | Sequence[ImageLike],
    mask: ImageLike,
    settings: DeepFeatureSettings,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """The 2.5D network input of one patient: three cropped, resized, scaled slices.

    See :func:`select_slices` for the slice choice (largest tumour slice, ties
    to the lower index, neighbours clamped at the volume edge) and the crop
    (tumour bounding box plus ``crop_margin_mm`` per axis). The crop is
    resampled (linear interpolation, anti-aliased when shrinking) onto
    ``input_size`` x ``input_size`` square pixels whose size is the crop's
    longer physical side divided by ``input_size``: the physical aspect ratio
    is kept and the shorter side is padded symmetrically with the low end of
    the window. Intensities are clipped to ``window`` (or, without one, to the
    ``clip_percentiles`` of the chosen slices' whole field of view, so tumour
    contrast against its surroundings survives), scaled to [0, 1] (padding 0)
    and normalised (``normalization``).

    Parameters
    ----------
    image : path, SimpleITK.Image or numpy array; or a sequence of three of them
        The image (``neighbours`` mode) or the three co-registered series in
        ``channel_series`` order (``sequences`` mode). Images on another grid
        than the mask are resampled onto the mask grid (linear). Arrays are
        ``(z, y, x)`` and need ``spacing``.
    mask : path, SimpleITK.Image or numpy array
        Tumour mask (``mask_label`` or any non-zero voxel); an RTSTRUCT path is
        rasterised on the (first) image.
    settings : DeepFeatureSettings
    spacing : (sx, sy, sz), optional
        Voxel spacing in mm for array inputs.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(3, input_size, input_size)``.

    Raises
    ------
    InputDataError
        On an empty mask, arrays without spacing, or the wrong number of series.
    """
    stack, _ = _prepare_patient(image, mask, _as_settings(settings), spacing)
    return stack


def _prepare_patient(
    image: ImageLike | Sequence[ImageLike], mask: ImageLike, settings: DeepFeatureSettings, spacing: Sequence[float] | None
) -> tuple[np.ndarray, SliceSelection]:
    if settings.channel_mode == "sequences":
        if isinstance(image, (str, Path, sitk.Image, np.ndarray)) or len(image) != 3:
            raise InputDataError(f"channel_mode 'sequences' needs three images per patient, in the order {settings.channel_series}")
        images = [_to_image(im, spacing, f"image of series {name}") for im, name in zip(image, settings.channel_series, strict=True)]
    else:
        if not isinstance(image, (str, Path, sitk.Image, np.ndarray)):
            raise InputDataError("channel_mode 'neighbours' takes one image per patient; use channel_mode 'sequences' to fuse series")
        images = [_to_image(image, spacing, "image")]
    mask_img = _to_mask(mask, images[0], spacing)
    mask_arr = sitk.GetArrayFromImage(mask_img)
    tumour = mask_arr == settings.mask_label if settings.mask_label is not None else mask_arr != 0
    volumes = [_on_grid(im, mask_img) for im in images]
    spacing_xyz = mask_img.GetSpacing()
    sel = select_slices(tumour, spacing_xyz, settings)
    if settings.channel_mode == "sequences":
        planes = [vol[sel.centre] for vol in volumes]
        limits = [_window_limits(p, settings) for p in planes]  # each series has its own intensity scale
    else:
        planes = [volumes[0][k] for k in sel.indices]
        # One window for the three slices keeps their relative intensities.
        limits = [_window_limits(np.stack(planes), settings)] * 3
    channels, valid = [], None
    for plane, (lo, hi) in zip(planes, limits, strict=True):
        unit = np.clip((plane - lo) / (hi - lo), 0.0, 1.0)
        resized, valid = _crop_resize(unit, sel.box, (spacing_xyz[0], spacing_xyz[1]), settings.input_size)
        channels.append(np.where(valid, resized, 0.0))
    stack = _normalise(np.stack(channels).astype(np.float32), valid, settings)
    return stack.astype(np.float32), sel


def stack_inputs(patients: Mapping[str, PatientInput], settings: DeepFeatureSettings) -> tuple[list[str], np.ndarray]:
    """Prepare the 2.5D inputs of several patients.

    Parameters
    ----------
    patients : mapping of patient id to input
        Each value is ``(image, mask)``, ``(image, mask, spacing_xyz)`` (see
        :func:`slices_25d`; ``image`` is a sequence of three in ``sequences``
        mode) or an already prepared ``(3, input_size, input_size)`` array.
    settings : DeepFeatureSettings

    Returns
    -------
    ids : list of str
        Patient ids in mapping order.
    stacks : numpy.ndarray
        ``float32`` array ``(n_patients, 3, input_size, input_size)``.
    """
    settings = _as_settings(settings)
    if not isinstance(patients, Mapping) or len(patients) == 0:
        raise InputDataError("patients must be a non-empty mapping of patient id -> (image, mask) or a prepared (3, S, S) array")
    size = settings.input_size
    ids, stacks = [], []
    for pid, value in patients.items():
        if isinstance(value, np.ndarray):
            if value.shape != (3, size, size):
                raise InputDataError(f"patient {pid}: a prepared input must have shape (3, {size}, {size}), got {value.shape}")
            stack = value.astype(np.float32)
        elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
            try:
                stack = slices_25d(value[0], value[1], settings, value[2] if len(value) == 3 else None)
            except (InputDataError, ImageReadError) as exc:
                raise type(exc)(f"patient {pid}: {exc}") from None  # name the patient whose input failed
        else:
            raise InputDataError(f"patient {pid}: give (image, mask), (image, mask, spacing) or a prepared (3, S, S) array")
        if not np.isfinite(stack).all():
            raise InputDataError(f"patient {pid}: the prepared slices contain NaN or infinite values; check the image")
        ids.append(str(pid))
        stacks.append(stack)
    return ids, np.stack(stacks)


# -- network -----------------------------------------------------------------------
class LoadedBackbone(NamedTuple):
    """A network ready to use and where its weights came from."""

    model: torch.nn.Module
    weights_sha256: str | None
    weights_path: str | None


def _device(settings: DeepFeatureSettings) -> torch.device:
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise StudyError("device 'cuda' was requested but no CUDA GPU is available; use device: auto or cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def _build_resnet(architecture: str, num_classes: int | None, seed: int) -> torch.nn.Module:
    from monai.networks.nets import ResNet  # lazy: importing MONAI takes seconds

    block, layers = _ARCHITECTURES[architecture]
    # fork_rng: the seeded initialisation must not move the caller's global torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # These options give torchvision's layout and key names (7x7/2 stem, no bias in the
        # downsampling convolution), so ImageNet state dicts load with a strict key check.
        return ResNet(
            block=block,
            layers=list(layers),
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=3,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=num_classes is not None,
            num_classes=num_classes or 1,
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path, BackboneWeightsError)


def _guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which supported ResNet a state dict's blocks match (by block type and blocks per stage), if any."""
    block = "bottleneck" if any(k.endswith("conv3.weight") for k in state) else "basic"
    counts = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    return next((name for name, spec in _ARCHITECTURES.items() if spec == (block, counts)), None)


def _load_weights(model: torch.nn.Module, path: Path, architecture: str) -> None:
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}  # the head is task specific
    target = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    # Keys in network order (not alphabetical), so the listed ones read like the model.
    # Old torchvision files lack the batch-norm step counters; they carry no learned value.
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or mismatched:

        def _show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_show(unexpected)}")
        if mismatched:
            parts.append(
                f"{len(mismatched)} shape mismatch(es): "
                + _show([f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched])
            )
        guess = _guess_architecture(state)
        if guess and guess != architecture:
            parts.append(f"the file looks like a {guess}")
        raise BackboneWeightsError(
            f"pretrained weights {path} do not fit a 2D {architecture} (torchvision key layout): "
            + "; ".join(parts)
            + "; set 'architecture' to the network the weights belong to, or point 'pretrained_weights' at the right file"
        )
    model.load_state_dict(state, strict=False)  # strict key check done above; only the head (fc) is left as initialised


def load_backbone(settings: DeepFeatureSettings, num_classes: int | None = None) -> LoadedBackbone:
    """Build the 2D ResNet and load local pretrained weights (never downloads).

    Parameters
    ----------
    settings : DeepFeatureSettings
        ``architecture``, ``pretrained_weights``, ``seed`` and ``device`` are used.
    num_classes : int, optional
        Add a fresh (seeded) linear head with this many outputs; ``None``: no
        head, the network outputs the global-average-pooled embedding.

    Returns
    -------
    LoadedBackbone
        ``(model, weights_sha256, weights_path)``; the model is in eval mode on
        the settings' device; sha256 and path are ``None`` for random weights.

    Raises
    ------
    BackboneWeightsError
        When the weights file does not exist, is not a state dict, or its keys
        or shapes do not match the network exactly (the message lists the
        missing, unexpected and mismatched keys and the path). Keys of a
        classification head (``fc.*``) in the file are ignored, as is a missing
        ``num_batches_tracked`` counter; a ``module.`` prefix is stripped.

    Warns
    -----
    UntrainedBackboneWarning
        When ``pretrained_weights`` is ``None``: the features then come from a
        randomly initialised (seeded, reproducible) network.
    """
    settings = _as_settings(settings)
    model = _build_resnet(settings.architecture, num_classes, settings.seed)
    sha, path_txt = None, None
    if settings.pretrained_weights is None:
        warnings.warn(
            f"no pretrained_weights given: deep features come from an UNTRAINED {settings.architecture} "
            f"(random initialisation, seed {settings.seed}); point pretrained_weights at a local state dict for ImageNet features",
            UntrainedBackboneWarning,
            stacklevel=2,
        )
    else:
        path = Path(settings.pretrained_weights).expanduser()
        if not path.is_file():
            raise BackboneWeightsError(
                f"pretrained weights file not found: {path.resolve()}; weights are never downloaded, copy the file there"
            )
        _load_weights(model, path, settings.architecture)
        sha, path_txt = sha256_file(path), str(path)
    model.to(_device(settings)).eval()
    return LoadedBackbone(model, sha, path_txt)


def _pooled(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer embedding: the globally average-pooled output of the last stage."""
    x = model.act(model.bn1(model.conv1(x)))
    if not model.no_max_pool:
        x = model.maxpool(x)
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def embed(model: torch.nn.Module, inputs: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Global-average-pooled penultimate-layer embeddings of network inputs.

    Parameters
    ----------
    model : torch.nn.Module
        A network from :func:`load_backbone` (with or without a head; the head is skipped).
    inputs : numpy.ndarray
        ``(n, 3, H, W)`` network inputs.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(n, d)``; d = 512 (resnet18/34) or 2048 (resnet50).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # batch-norm running statistics, so an image's embedding does not depend on its batch
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.as_tensor(np.ascontiguousarray(inputs[start : start + batch_size]), dtype=torch.float32, device=device)
            out.append(_pooled(model, batch).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def _replicate_channel(stacks: np.ndarray, c: int, settings: DeepFeatureSettings) -> np.ndarray:
    """Channel c of each stack as a grey RGB image, with the normalisation each RGB channel expects."""
    grey = stacks[:, c]
    if settings.normalization != "imagenet":
        return np.repeat(grey[:, None], 3, axis=1)
    unit = grey * IMAGENET_STD[c] + IMAGENET_MEAN[c]  # undo channel c's ImageNet normalisation exactly
    return np.stack([(unit - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)], axis=1).astype(np.float32)


def _network_inputs(stacks: np.ndarray, settings: DeepFeatureSettings) -> list[np.ndarray]:
    """The image sets embedded for a feature layout: one per channel, or the stacks themselves."""
    if settings.feature_layout == "stack":
        return [stacks]
    return [_replicate_channel(stacks, c, settings) for c in range(stacks.shape[1])]


# -- training ------------------------------------------------------------------------
def _labels(y: Any, ids: list[str], what: str) -> np.ndarray:
    if y is None:
        raise InputDataError(f"{what}: labels are needed to train the network (binary 0/1 per patient)")
    if isinstance(y, (pd.Series, Mapping)):
        series = pd.Series(y)
        series.index = series.index.astype(str)
        absent = [p for p in ids if p not in series.index]
        if absent:
            raise InputDataError(f"{what}: no label for patient(s) {absent[:10]}")
        values = series.loc[ids].to_numpy()
    else:
        values = np.asarray(y)
        if values.shape != (len(ids),):
            raise InputDataError(f"{what}: {values.shape[0] if values.ndim else 0} labels for {len(ids)} patients")
    if pd.isna(values).any() or not set(np.unique(values).tolist()) <= {0, 1}:
        raise InputDataError(f"{what}: labels must be 0/1 without missing values, got {sorted(set(pd.unique(values).tolist()))[:10]}")
    return values.astype(np.int64)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations per image (exact: no interpolation)."""
    out = []
    draws = torch.randint(0, 2, (len(batch), 2), generator=generator)
    turns = torch.randint(0, 4, (len(batch),), generator=generator)
    for img, (fh, fv), k in zip(batch, draws.tolist(), turns.tolist(), strict=True):
        if fh:
            img = torch.flip(img, dims=(-1,))
        if fv:
            img = torch.flip(img, dims=(-2,))
        out.append(torch.rot90(img, k, dims=(-2, -1)))
    return torch.stack(out)


def _mean_loss(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    device = next(model.parameters()).device
    model.eval()
    losses, probs = [], []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[start : start + batch_size], device=device)
            yb = torch.as_tensor(y[start : start + batch_size], device=device)
            logits = model(xb)
            losses.append(torch.nn.functional.cross_entropy(logits, yb, reduction="sum").item())
            probs.append(torch.softmax(logits, 1)[:, 1].cpu().numpy())
    return float(np.sum(losses) / len(x)), np.concatenate(probs)


def _fit_network(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: DeepFeatureSettings,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> tuple[pd.DataFrame, int]:
    """Train a network with a 2-class head; keep the best-validation weights when a validation set is given.

    ``frozen`` mode trains the head only (a linear probe; the backbone, batch
    norm included, stays as loaded); ``finetune`` trains every layer. Returns
    the per-epoch history and the epoch whose weights the model ends with.
    """
    device = next(model.parameters()).device
    head_only = settings.mode == "frozen"
    for name, p in model.named_parameters():
        p.requires_grad_(not head_only or name.startswith("fc."))
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=settings.learning_rate, momentum=0.9, weight_decay=settings.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)  # batch order and augmentation: reproducible, independent of global state
    n = len(x)
    rows, best_state, best_epoch, best_val = [], None, settings.epochs, math.inf
    for epoch in range(1, settings.epochs + 1):
        model.train(not head_only)  # a frozen backbone keeps its batch-norm statistics
        order = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for start in range(0, n, settings.batch_size):
            idx = order[start : start + settings.batch_size]
            if len(idx) < 2 and not head_only:
                continue  # batch norm cannot train on a single image (the last, incomplete batch)
            xb = torch.as_tensor(x[idx.numpy()])
            if settings.augment:
                xb = _augment(xb, gen)
            xb, yb = xb.to(device), torch.as_tensor(y[idx.numpy()], device=device)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        row = {"epoch": epoch, "train_loss": total / max(seen, 1)}
        if x_val is not None:
            val_loss, val_prob = _mean_loss(model, x_val, y_val, settings.batch_size)
            row["val_loss"] = val_loss
            row["val_auc"] = roc_auc_score(y_val, val_prob) if len(np.unique(y_val)) == 2 else np.nan
            if val_loss < best_val:  # strict: on a tie the earlier epoch is kept
                best_val, best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rows.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return pd.DataFrame(rows), best_epoch


@dataclass
class DeepClassifierResult:
    """An end-to-end trained 2.5D classifier.

    Attributes
    ----------
    model : torch.nn.Module
        The network with the best-validation weights, in eval mode; output: 2 logits (class 1 = positive).
    history : pandas.DataFrame
        One row per epoch: ``epoch``, ``train_loss`` (mean over the epoch's
        augmented batches), ``val_loss`` and ``val_auc`` (after the epoch, no augmentation).
    best_epoch : int
        Epoch with the lowest validation loss (first one on a tie); its weights are in ``model``.
    val_probabilities : pandas.Series
        Probability of class 1 per validation patient from the best checkpoint.
    weights_sha256 : str or None
        SHA-256 of the pretrained weights the training started from.
    settings : DeepFeatureSettings
    """

    model: torch.nn.Module
    history: pd.DataFrame
    best_epoch: int
    val_probabilities: pd.Series
    weights_sha256: str | None
    settings: DeepFeatureSettings = field(repr=False)

    def predict_proba(self, patients: Mapping[str, PatientInput]) -> pd.Series:
        """Probability of class 1 for each patient (index: patient id)."""
        ids, x = stack_inputs(patients, self.settings)
        _, prob = _mean_loss(self.model, x, np.zeros(len(x), np.int64), self.settings.batch_size)
        return pd.Series(prob, index=pd.Index(ids, name="patient"), name="probability")


def train_deep_classifier(
    train_inputs: Mapping[str, PatientInput],
    y_train: Any,
    val_inputs: Mapping[str, PatientInput],
    y_val: Any,
    settings: DeepFeatureSettings,
) -> DeepClassifierResult:
    """Train the 2.5D ResNet end to end on binary labels (the deep-learning comparison arm).

    The network starts from :func:`load_backbone` (local weights or seeded
    random init) with a fresh 2-output head and is trained with cross-entropy
    for ``epochs`` epochs (``optimizer``, ``learning_rate``, ``batch_size``,
    flips/rotations when ``augment``); ``mode='frozen'`` trains the head only.
    The validation loss after each epoch selects the checkpoint that is
    returned (best validation loss), so the validation patients must not be the
    final test cohort. Runs are reproducible for a given seed on one device.

    Parameters
    ----------
    train_inputs, val_inputs : mapping of patient id to input
        See :func:`stack_inputs`.
    y_train, y_val : pandas.Series, mapping or array-like
        0/1 labels; a Series/mapping is matched by patient id, an array by order.
    settings : DeepFeatureSettings

    Returns
    -------
    DeepClassifierResult
    """
    settings = _as_settings(settings)
    train_ids, x = stack_inputs(train_inputs, settings)
    val_ids, x_val = stack_inputs(val_inputs, settings)
    if set(train_ids) & set(val_ids):
        raise InputDataError(f"patients in both training and validation inputs: {sorted(set(train_ids) & set(val_ids))[:10]}")
    y = _labels(y_train, train_ids, "y_train")
    yv = _labels(y_val, val_ids, "y_val")
    backbone = load_backbone(settings, num_classes=2)
    history, best_epoch = _fit_network(backbone.model, x, y, settings, x_val, yv)
    _, prob = _mean_loss(backbone.model, x_val, yv, settings.batch_size)
    return DeepClassifierResult(
        model=backbone.model,
        history=history,
        best_epoch=best_epoch,
        val_probabilities=pd.Series(prob, index=pd.Index(val_ids, name="patient"), name="probability"),
        weights_sha256=backbone.weights_sha256,
        settings=settings,
    )


# -- feature extractor -----------------------------------------------------------------
class DeepFeatureExtractor(TransformerMixin, BaseEstimator):
    """2.5D deep features: ResNet penultimate-layer embeddings reduced by PCA fitted on training patients.

    Follows the scikit-learn estimator contract: the only parameter is
    ``settings``; :meth:`fit` learns everything (optional fine-tuning, PCA)
    from the training patients and stores it in attributes ending in ``_``;
    :meth:`transform` maps any cohort with that fitted state and never changes
    it. Embeddings are computed per call and kept in memory only for that call.

    Parameters
    ----------
    settings : DeepFeatureSettings or mapping
        See :class:`DeepFeatureSettings`; ``feature_layout`` decides the features:
        ``per_channel`` gives ``3 * pca_components`` features (channel 1's
        components first), the other layouts ``pca_components``. Names are
        ``{series}_deep_pc01``, ``{series}_deep_pc02``, ...

    Attributes
    ----------
    settings_ : DeepFeatureSettings
        The validated settings.
    model_ : torch.nn.Module
        The embedding network (fine-tuned in ``finetune`` mode), eval mode.
    pca_ : list of sklearn.decomposition.PCA
        One PCA per channel (``per_channel``) or a single one.
    weights_sha256_ : str or None
        SHA-256 of the pretrained weights (``None``: random init).
    history_ : pandas.DataFrame or None
        Fine-tuning loss per epoch (``finetune`` mode).
    training_patients_ : list of str
        The patients the state was learned from.
    feature_names_out_ : numpy.ndarray
        Output feature names.
    feature_info_ : pandas.DataFrame
        Per feature: ``channel`` (slice position such as ``z-1`` or series),
        ``component`` and ``explained_variance_ratio``.
    n_embedding_dims_ : int
        Length of one embedding (512 or 2048).
    """

    def __init__(self, *, settings: DeepFeatureSettings | Mapping[str, Any] | None = None):
        self.settings = settings

    def _checked_settings(self) -> DeepFeatureSettings:
        if self.settings is None:
            raise ValueError("DeepFeatureExtractor needs settings (a DeepFeatureSettings with at least 'series')")
        return _as_settings(self.settings)

    def _embeddings(self, stacks: np.ndarray) -> list[np.ndarray]:
        s = self.settings_
        return [embed(self.model_, images, batch_size=max(s.batch_size, 16)) for images in _network_inputs(stacks, s)]

    def fit(self, X: Mapping[str, PatientInput], y: Any = None) -> "DeepFeatureExtractor":
        """Learn the feature mapping from TRAINING patients only.

        Parameters
        ----------
        X : mapping of patient id to input
            Training patients (see :func:`stack_inputs`).
        y : pandas.Series, mapping or array-like, optional
            0/1 labels; required in ``finetune`` mode, ignored in ``frozen`` mode.

        Returns
        -------
        DeepFeatureExtractor
            The fitted estimator.

        Raises
        ------
        ValueError
            When there are fewer training patients than ``pca_components``.
        """
        self._fit(X, y)
        return self

    def _fit(self, X: Mapping[str, PatientInput], y: Any) -> tuple[list[str], list[np.ndarray]]:
        s = self._checked_settings()
        ids, stacks = stack_inputs(X, s)
        if len(ids) < s.pca_components:
            raise ValueError(f"pca_components={s.pca_components} needs at least as many training patients; got {len(ids)}")
        backbone = load_backbone(s, num_classes=2 if s.mode == "finetune" else None)
        self.settings_ = s
        self.model_ = backbone.model
        self.weights_sha256_ = backbone.weights_sha256
        self.history_ = None
        if s.mode == "finetune":
            labels = _labels(y, ids, "fit(y)")
            images = _network_inputs(stacks, s)
            # Per-channel layouts embed single slices, so the network is tuned on single slices too.
            x_train = np.concatenate(images)
            y_train = np.tile(labels, len(images))
            self.history_, _ = _fit_network(self.model_, x_train, y_train, s)
        embeddings = self._embeddings(stacks)
        blocks = embeddings if s.feature_layout == "per_channel" else [np.concatenate(embeddings, axis=1)]
        # Full SVD: deterministic, no randomised solver whose result depends on a seed.
        self.pca_ = [PCA(n_components=s.pca_components, svd_solver="full").fit(b) for b in blocks]
        self.n_embedding_dims_ = int(embeddings[0].shape[1])
        self.training_patients_ = ids
        names, info = [], []
        channels = s.channel_names if s.feature_layout == "per_channel" else ("+".join(s.channel_names),)
        for channel, pca in zip(channels, self.pca_, strict=True):
            for j, ratio in enumerate(pca.explained_variance_ratio_, start=1):
                names.append(f"{s.series}_deep_pc{len(names) + 1:02d}")
                info.append({"channel": channel, "component": j, "explained_variance_ratio": float(ratio)})
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_info_ = pd.DataFrame(info, index=pd.Index(names, name="feature"))
        return ids, blocks

    def _frame(self, ids: list[str], blocks: list[np.ndarray]) -> pd.DataFrame:
        values = np.concatenate([pca.transform(b) for pca, b in zip(self.pca_, blocks, strict=True)], axis=1)
        return pd.DataFrame(values, index=pd.Index(ids, name="patient"), columns=list(self.feature_names_out_))

    def transform(self, X: Mapping[str, PatientInput]) -> pd.DataFrame:
        """Deep features of any cohort with the fitted network and PCA.

        Parameters
        ----------
        X : mapping of patient id to input
            See :func:`stack_inputs`.

        Returns
        -------
        pandas.DataFrame
            One row per patient (index ``patient``), columns ``feature_names_out_``.
        """
        check_is_fitted(self, "pca_")
        ids, stacks = stack_inputs(X, self.settings_)
        embeddings = self._embeddings(stacks)
        blocks = embeddings if self.settings_.feature_layout == "per_channel" else [np.concatenate(embeddings, axis=1)]
        return self._frame(ids, blocks)

    def fit_transform(self, X: Mapping[str, PatientInput], y: Any = None, **fit_params: Any) -> pd.DataFrame:
        """Fit on ``X`` and return its features, embedding each patient once.

        Parameters
        ----------
        X : mapping of patient id to input
            Training patients.
        y : array-like, optional
            Labels (``finetune`` mode).

        Returns
        -------
        pandas.DataFrame
            Same as ``fit(X, y).transform(X)``.
        """
        ids, blocks = self._fit(X, y)
        return self._frame(ids, blocks)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output feature names (``{series}_deep_pc01``, ...)."""
        check_is_fitted(self, "pca_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a mapping patient -> images/paths (see stack_inputs), not a 2-D array.
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        return tags


# -- Grad-CAM --------------------------------------------------------------------------
def _unit_max(x: torch.Tensor) -> torch.Tensor:
    """Scale each map by its maximum: zero stays zero, the strongest evidence becomes 1.

    (MONAI's default postprocessing maps (min, max) to (1, 0), i.e. inverts the map.)
    """
    peak = x.flatten(1).amax(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    return x / peak


def gradcam_maps(
    model: torch.nn.Module,
    inputs: np.ndarray,
    target_layer: str = "layer4",
    class_idx: int = 1,
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM heatmaps (MONAI ``GradCAM``) of a 2-class network for its inputs.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier, e.g. ``DeepClassifierResult.model``. It is not modified:
        MONAI registers hooks it never removes, so they go on a copy.
    inputs : numpy.ndarray
        ``(n, 3, H, W)`` network inputs (from :func:`stack_inputs`).
    target_layer : str, default "layer4"
        Name of the layer whose activations are weighted (``layer4``: the last
        stage, as in the published study; ``layer3`` is twice as fine).
    class_idx : int, default 1
        Class whose evidence is mapped (1 = positive).
    batch_size : int
        Images per pass.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(n, H, W)``, finite, in [0, 1] (each map divided by its maximum).
    """
    from monai.visualize import GradCAM  # lazy: importing MONAI takes seconds

    if inputs.ndim != 4:
        raise InputDataError(f"inputs must be (n, 3, H, W), got shape {inputs.shape}")
    if target_layer not in dict(model.named_modules()):
        raise ValueError(f"target_layer '{target_layer}' is not a layer of the model (e.g. 'layer4', 'layer3')")
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(True)  # gradients must flow back to the target layer, also for a frozen backbone
    device = next(net.parameters()).device
    cam = GradCAM(nn_module=net, target_layers=target_layer, postprocessing=_unit_max)
    maps = []
    for start in range(0, len(inputs), batch_size):
        x = torch.as_tensor(np.ascontiguousarray(inputs[start : start + batch_size]), dtype=torch.float32, device=device)
        maps.append(cam(x, class_idx=class_idx).detach().cpu().numpy()[:, 0])
    out = np.concatenate(maps).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
