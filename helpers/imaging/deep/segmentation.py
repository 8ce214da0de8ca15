"""Automatic segmentation: a 3D U-Net (MONAI DynUNet) trained and applied like nnU-Net, and its evaluation.

The seed studies segment tumours (and organs) with a 3D U-Net trained with a
Dice + cross-entropy loss, deep supervision, spatial and intensity
augmentation, an 8:2 split or 5-fold cross-validation, best-validation-Dice
checkpointing and sliding-window inference; they report Dice as mean ± SD per
structure and cohort. This module does the same, configured by one validated
:class:`SegmentationSettings`:

* data: :func:`prepare_case` / :func:`prepare_cases` read an image (and its
  label mask), apply N4 (optional, MR), resampling to ``target_spacing_mm``,
  clipping and z-scoring with :mod:`helpers.preprocess`, and keep the original
  grid so predictions can be mapped back onto it;
* training: :func:`train_segmentation` (seeded, deterministic data loading,
  checkpoint with settings, library versions and the weights' SHA-256);
* inference: :func:`predict_masks` writes one NIfTI label mask per image on
  the image's ORIGINAL grid (size, spacing, origin and direction);
* evaluation: :func:`segmentation_metrics`, :func:`evaluation_table` and
  :func:`summarise_evaluation` (Dice and HD95 in mm per label; mean ± SD per
  label and cohort).

Nothing is ever downloaded: ``pretrained_weights`` must be a local file.
torch and MONAI are imported lazily, so the settings class (and the study
configuration that embeds it) can be loaded without them.

Conventions: spacings and ``patch_size`` are given in SimpleITK order
(x, y, z); arrays and tensors are in NumPy order (z, y, x), so the derived
kernel sizes and strides (:meth:`SegmentationSettings.architecture`) are
listed as (z, y, x). Network output channel 0 is background and channel *i*
is the *i*-th label by increasing label value.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from helpers.errors import (
    CheckpointMismatchError,  # noqa: F401  (defined in helpers.errors)
    ConfigError,
    InputDataError,
    StudyError,
)
from helpers.imaging.deep.budget import BudgetClock, TrainingBudget
from helpers.imaging.io import conform_mask, grid_difference, read_image, read_mask, sha256_file
from helpers.imaging.preprocess import clip_intensities, n4_bias_correction, resample_image, zscore_normalise
from helpers.settings.segmentation import (
    AugmentationSettings,
    ClipSettings,
    LossSettings,
    NetworkSettings,
    OptimizerSettings,
    SegmentationSettings,
    ValidationSettings,
)
from helpers.settings.study import GeometryTolerance

if TYPE_CHECKING:  # torch is optional: imported only where a network is built or run
    import torch

__all__ = [
    "ClipSettings",
    "NetworkSettings",
    "LossSettings",
    "OptimizerSettings",
    "ValidationSettings",
    "AugmentationSettings",
    "SegmentationSettings",
    "CheckpointMismatchError",
    "PreparedCase",
    "TrainResult",
    "geometry_difference",
    "prepare_case",
    "prepare_cases",
    "split_cases",
    "build_network",
    "resolve_device",
    "train_segmentation",
    "load_segmentation_model",
    "settings_from_checkpoint",
    "predict_image",
    "predict_masks",
    "segmentation_metrics",
    "evaluation_table",
    "summarise_evaluation",
]

#: Format tag of the checkpoint sidecar JSON (bumped when its layout changes).
CHECKPOINT_FORMAT = "helpers.segmentation.checkpoint/1"

# Settings that define what a trained network computes (its input preprocessing, architecture and
# output classes). A checkpoint is refused when any of them differs; training-only settings
# (epochs, optimiser, augmentation...) may differ, since they do not change how the weights are used.
_MODEL_DEFINING = ("series", "labels", "target_spacing_mm", "interpolator", "clip", "n4", "patch_size", "network")

_AXIS_INDEX = {"z": 0, "y": 1, "x": 2}  # array axis of each named image axis


# --------------------------------------------------------------------------- torch access
def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StudyError("segmentation needs torch and monai: pip install torch monai (CPU or CUDA build)") from exc
    return torch


def resolve_device(setting: str = "auto") -> torch.device:
    """The torch device for a ``device`` setting.

    Parameters
    ----------
    setting : {"auto", "cpu", "cuda"}
        ``auto`` uses the first CUDA GPU when one is visible, else the CPU.

    Raises
    ------
    ConfigError
        When ``cuda`` is requested but no GPU is visible.
    """
    torch = _torch()
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("segmentation device 'cuda' requested but no CUDA GPU is visible; set device: auto or cpu")
    return torch.device(setting)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    # torch's thread count is process-wide: restore it so other steps of the session are unaffected.
    if n is None:
        yield
        return
    torch = _torch()
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _seed_everything(seed: int) -> None:
    from monai.utils import set_determinism

    # Seeds Python, NumPy and torch and makes cuDNN deterministic (no benchmark autotuning).
    set_determinism(seed=seed)


def _library_versions() -> dict[str, str]:
    import monai

    from helpers import __version__

    torch = _torch()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "helpers": __version__,
    }


# --------------------------------------------------------------------------- geometry
def _geometry(img: sitk.Image) -> dict[str, tuple]:
    return {
        "size": tuple(int(v) for v in img.GetSize()),
        "spacing": tuple(float(v) for v in img.GetSpacing()),
        "origin": tuple(float(v) for v in img.GetOrigin()),
        "direction": tuple(float(v) for v in img.GetDirection()),
    }


def _with_geometry(img: sitk.Image, geometry: Mapping[str, Sequence]) -> sitk.Image:
    img.SetSpacing([float(v) for v in geometry["spacing"]])
    img.SetOrigin([float(v) for v in geometry["origin"]])
    img.SetDirection([float(v) for v in geometry["direction"]])
    return img


def _same_geometry(a: Mapping[str, Sequence], b: Mapping[str, Sequence]) -> bool:
    return tuple(a["size"]) == tuple(b["size"]) and all(
        np.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in ("spacing", "origin", "direction")
    )


def geometry_difference(
    reference: sitk.Image,
    other: sitk.Image,
    spacing_rtol: float = 1e-3,
    origin_mm: float = 0.5,
    direction_atol: float = 1e-4,
) -> str | None:
    """Describe how ``other``'s grid differs from ``reference``'s, or ``None`` when they match.

    The study's one geometry rule (:func:`helpers.imaging.io.grid_difference`) with the tolerances given as numbers
    (relative spacing, absolute origin in mm, absolute direction-cosine difference); sizes must be equal.
    """
    return grid_difference(reference, other, GeometryTolerance(spacing=spacing_rtol, origin_mm=origin_mm, direction=direction_atol))


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class PreparedCase:
    """One preprocessed case on the target grid, with what is needed to map results back.

    Attributes
    ----------
    case_id : patient / case identifier.
    image : float32 array (z, y, x): N4 (optional), resampled, clipped, z-scored.
    label : uint8 array (z, y, x) of class indices (0 background, i the i-th
        label by value), or ``None`` for an image without mask.
    grid : geometry (size, spacing, origin, direction) of the target grid.
    original : geometry of the input image (where predictions are written).
    record : preprocessing values used (clip limits, z-score mean/SD, N4...).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    grid: dict[str, tuple]
    original: dict[str, tuple]
    record: dict[str, Any] = field(default_factory=dict)


def _as_image(source: str | Path | sitk.Image, what: str) -> sitk.Image:
    img = source if isinstance(source, sitk.Image) else read_image(source)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputDataError(f"{what}: a 3D single-channel image is needed (got {img.GetDimension()}D, "
                             f"{img.GetNumberOfComponentsPerPixel()} component(s))")
    return img


def _labels_on_grid(mask: sitk.Image, reference: sitk.Image, class_values: Sequence[int]) -> np.ndarray:
    """Class-index array of a multi-label mask on the grid of ``reference``.

    Each label's indicator is interpolated linearly (a partial-volume
    fraction) and every voxel takes the class with the largest fraction
    (background = 1 - sum; ties go to the higher class). Unlike nearest
    neighbour this does not shift boundaries by up to half a voxel when
    down-sampling, and unlike thresholding each label at 0.5 it leaves no
    gaps where labels touch.
    """
    if geometry_difference(reference, mask, 1e-6, 1e-6, 1e-6) is None:
        arr = sitk.GetArrayViewFromImage(mask)
        lut = {v: i for i, v in enumerate(class_values)}
        out = np.zeros(arr.shape, dtype=np.uint8)
        for v, i in lut.items():
            out[arr == v] = i
        return out
    fractions = []
    for v in class_values[1:]:
        indicator = sitk.Cast(mask == v, sitk.sitkFloat32)
        resampled = sitk.Resample(indicator, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        fractions.append(sitk.GetArrayFromImage(resampled))
    stack = np.concatenate([(1.0 - np.sum(fractions, axis=0))[None], np.stack(fractions)])
    # Exact ties are common (up-sampling by 2 puts every other voxel midway between two native ones):
    # they go to the higher class, so a label keeps voxels at fraction 0.5 as mask_on_grid's ">= 0.5"
    # does, instead of every structure shrinking (argmax alone returns the first maximum: background).
    last = len(class_values) - 1
    return (last - np.argmax(stack[::-1], axis=0)).astype(np.uint8)


def prepare_case(
    image: str | Path | sitk.Image,
    mask: str | Path | sitk.Image | None,
    settings: SegmentationSettings,
    case_id: str = "case",
) -> PreparedCase:
    """Preprocess one image (and its label mask) for the network.

    Order (as :func:`helpers.preprocess.preprocess`): N4 on the native grid
    (when ``settings.n4``) -> resampling to ``target_spacing_mm`` -> clipping
    -> z-score over the whole image. The mask is brought onto the resampled
    grid label by label (see the module notes).

    Parameters
    ----------
    image : path or SimpleITK.Image
        The image of ``settings.series`` (file or DICOM series folder).
    mask : path, SimpleITK.Image or None
        Label mask (values 0 and ``settings.labels`` values); RTSTRUCT files
        are rasterised on the image. ``None`` for inference.
    settings : SegmentationSettings
    case_id : str
        Identifier used in messages and results.

    Returns
    -------
    PreparedCase

    Raises
    ------
    InputDataError
        When the mask holds values that are not configured labels, or the
        image is constant (cannot be z-scored).
    """
    raw = _as_image(image, f"image of {case_id}")
    img = sitk.Cast(raw, sitk.sitkFloat32)
    original = _geometry(img)
    record: dict[str, Any] = {"native_spacing": list(original["spacing"]), "n4": settings.n4}
    if settings.n4:
        img = n4_bias_correction(img)
    # Skip resampling when already on the target spacing: B-spline resampling onto the same grid is a no-op but slow.
    if not np.allclose(img.GetSpacing(), settings.target_spacing_mm, rtol=1e-6, atol=0):
        img = resample_image(img, settings.target_spacing_mm, settings.interpolator)
    if settings.clip is not None:
        if settings.clip.window is not None:
            lo, hi = settings.clip.window
        else:
            lo, hi = np.percentile(sitk.GetArrayViewFromImage(img), settings.clip.percentiles)
        record["clip"] = [float(lo), float(hi)]
        img = clip_intensities(img, float(lo), float(hi))
    arr = sitk.GetArrayViewFromImage(img)
    record["zscore_mean_sd"] = [float(np.mean(arr, dtype=np.float64)), float(np.std(arr, dtype=np.float64))]
    try:
        img = zscore_normalise(img)
    except ValueError as exc:
        raise InputDataError(f"{case_id}: {exc}") from None
    label = None
    if mask is not None:
        # reference: RTSTRUCT rasterisation, and a mask within the geometry tolerance is put on the image's exact grid.
        m = conform_mask(mask, raw) if isinstance(mask, sitk.Image) else read_mask(mask, reference=raw)
        marr = sitk.GetArrayViewFromImage(m)
        values = np.unique(marr)
        if not np.all(np.mod(values, 1) == 0):
            raise InputDataError(f"{case_id}: the mask holds non-integer values; a label mask is needed")
        unknown = sorted({int(v) for v in values} - set(settings.class_values))
        if unknown:
            raise InputDataError(
                f"{case_id}: mask values {unknown} are not configured labels {settings.labels}; "
                "add them to segmentation labels or relabel the mask"
            )
        label = _labels_on_grid(sitk.Cast(m, sitk.sitkInt32), img, settings.class_values)
    return PreparedCase(
        case_id=str(case_id),
        image=np.ascontiguousarray(sitk.GetArrayFromImage(img), dtype=np.float32),
        label=label,
        grid=_geometry(img),
        original=original,
        record=record,
    )


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _keyed(items: Mapping[str, Any] | Sequence[Any], path_of) -> dict[str, Any]:
    # Mappings are keyed by patient id; sequences by file name, which must then be unique.
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    out: dict[str, Any] = {}
    for item in items:
        key = _stem(path_of(item))
        if key in out:
            raise InputDataError(
                f"two inputs share the file name '{key}'; pass a mapping patient id -> path(s) instead of a list"
            )
        out[key] = item
    return out


def prepare_cases(
    pairs: Mapping[str, tuple[str | Path, str | Path | None]] | Sequence[tuple[str | Path, str | Path | None]],
    settings: SegmentationSettings,
) -> list[PreparedCase]:
    """Preprocess (image, mask) pairs with :func:`prepare_case`.

    Parameters
    ----------
    pairs : mapping patient id -> (image, mask), or sequence of (image, mask)
        With a sequence, cases are named by the image file name (which must
        then be unique).
    settings : SegmentationSettings

    Returns
    -------
    list of PreparedCase
        In input order.
    """
    keyed = _keyed(pairs, lambda p: p[0])
    return [prepare_case(img, msk, settings, case_id=cid) for cid, (img, msk) in keyed.items()]


def split_cases(case_ids: Sequence[str], settings: SegmentationSettings) -> tuple[list[str], list[str]]:
    """Training/validation split of case ids by ``settings.validation`` (seeded by ``settings.seed``).

    ``val_fraction``: a random ``round(fraction * n)`` cases (at least one,
    leaving at least one for training). ``folds``: ids are shuffled once and
    dealt into k folds; fold ``fold`` validates. The result does not depend
    on the input order.

    Returns
    -------
    (train_ids, val_ids)
        Both in sorted order.

    Raises
    ------
    InputDataError
        With fewer than 2 cases, or fewer cases than folds.
    """
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise InputDataError("duplicate case ids in the split")
    n = len(ids)
    if n < 2:
        raise InputDataError(f"{n} case(s): at least 2 are needed to split into training and validation")
    order = [ids[i] for i in np.random.default_rng(settings.seed).permutation(n)]
    v = settings.validation
    if v.folds is not None:
        if v.folds > n:
            raise InputDataError(f"{v.folds} folds need at least {v.folds} cases (got {n})")
        val = {cid for i, cid in enumerate(order) if i % v.folds == v.fold_index}
    else:
        n_val = min(max(1, round(v.fraction * n)), n - 1)
        val = set(order[:n_val])
    return sorted(c for c in ids if c not in val), sorted(val)


# --------------------------------------------------------------------------- network
def build_network(settings: SegmentationSettings) -> torch.nn.Module:
    """A freshly initialised MONAI DynUNet with :meth:`SegmentationSettings.architecture`."""
    from monai.networks.nets import DynUNet

    arch = settings.architecture()
    norm = ("INSTANCE", {"affine": True}) if arch["norm"] == "instance" else ("BATCH", {"affine": True})
    return DynUNet(
        spatial_dims=3,
        in_channels=arch["in_channels"],
        out_channels=arch["out_channels"],
        kernel_size=arch["kernel_size"],
        strides=arch["strides"],
        upsample_kernel_size=arch["upsample_kernel_size"],
        filters=arch["filters"],
        norm_name=norm,
        deep_supervision=arch["deep_supervision"],
        deep_supr_num=max(1, arch["deep_supervision_heads"]),
        res_block=arch["res_block"],
    )


def _load_state(path: Path) -> dict:
    torch = _torch()
    # weights_only: a checkpoint is data; unpickling arbitrary objects from a file could run code.
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{path} does not hold a state dict (name -> tensor)")
    return state


def _load_pretrained(net: torch.nn.Module, path_text: str) -> dict[str, Any]:
    """Copy the tensors of a local weights file whose names and shapes match the network."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"pretrained_weights file not found: {path}; it must be a local file (nothing is downloaded)"
        )
    state = _load_state(path)
    own = net.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matched:
        raise CheckpointMismatchError(
            f"pretrained_weights {path}: no tensor matches the network's names and shapes; "
            "it was trained with a different architecture"
        )
    own.update(matched)
    net.load_state_dict(own)
    # Partial loading is allowed (e.g. another number of labels changes only the output layers); it is recorded.
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "tensors_loaded": len(matched),
        "tensors_in_network": len(own),
        "tensors_skipped": sorted(set(own) - set(matched)),
    }


# --------------------------------------------------------------------------- training
class _PatchDataset:
    """Random training patches: item i augments case ``i % n_cases`` (map-style, for torch's DataLoader).

    Arrays are padded once to at least the patch size and the foreground /
    background voxel indices are computed once per case, so the random crop
    does not scan the whole volume at every draw.
    """

    def __init__(self, cases: Sequence[PreparedCase], settings: SegmentationSettings):
        from monai.transforms.utils import map_binary_to_indices

        self.length = settings.iterations_per_epoch * settings.batch_size
        self.transform = _training_transforms(settings)
        self.transform.set_random_state(seed=settings.seed)
        self.items = []
        patch = settings.patch_zyx
        for case in cases:
            pad = [(0, max(0, p - s)) for p, s in zip(patch, case.image.shape, strict=True)]
            image = np.pad(case.image, pad)[None]
            label = np.pad(case.label, pad)[None]
            fg, bg = map_binary_to_indices(label)
            self.items.append({"image": image, "label": label, "fg": fg, "bg": bg})

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        torch = _torch()
        out = self.transform(dict(self.items[index % len(self.items)]))
        out = out[0] if isinstance(out, list) else out  # the crop returns a list of num_samples dicts
        image, label = (x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x) for x in (out["image"], out["label"]))
        return image.float(), label.long()  # plain tensors: MetaTensor collation is slower and not needed


def _training_transforms(settings: SegmentationSettings):
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
    )

    a = settings.augmentation
    patch = settings.patch_zyx
    keys = ["image", "label"]
    fg = a.foreground_fraction
    chain: list = [
        RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=patch, pos=fg, neg=1.0 - fg, num_samples=1,
            fg_indices_key="fg", bg_indices_key="bg",
        )
    ]
    has_affine = a.rotation_degrees > 0 or a.scaling != (1.0, 1.0) or a.translation_mm > 0
    if a.affine_probability > 0 and has_affine:
        rot = math.radians(a.rotation_degrees)
        # MONAI adds 1 to the sampled scale offset; translation is in voxels of the target grid (z, y, x).
        translate = [a.translation_mm / s for s in settings.target_spacing_mm[::-1]]
        chain.append(
            RandAffined(
                keys=keys, prob=a.affine_probability, spatial_size=patch,
                rotate_range=(rot, rot, rot), scale_range=[(a.scaling[0] - 1, a.scaling[1] - 1)] * 3,
                translate_range=translate, mode=("bilinear", "nearest"), padding_mode="zeros",
            )
        )
    if a.flip_probability > 0:
        chain += [RandFlipd(keys=keys, prob=a.flip_probability, spatial_axis=_AXIS_INDEX[ax]) for ax in a.flip_axes]
    if a.noise_probability > 0 and a.noise_std > 0:
        chain.append(RandGaussianNoised(keys="image", prob=a.noise_probability, mean=0.0, std=a.noise_std))
    if a.blur_probability > 0:
        s = a.blur_sigma
        chain.append(RandGaussianSmoothd(keys="image", prob=a.blur_probability, sigma_x=s, sigma_y=s, sigma_z=s))
    if a.contrast_probability > 0:
        chain.append(RandAdjustContrastd(keys="image", prob=a.contrast_probability, gamma=a.contrast_gamma, retain_stats=True))
    return Compose(chain)


def _loss_function(settings: SegmentationSettings):
    from monai.losses import DiceCELoss

    torch = _torch()
    ls = settings.loss
    base = DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=ls.include_background, batch=ls.batch_dice,
        lambda_dice=ls.dice_weight, lambda_ce=ls.ce_weight,
    )

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dim() == target.dim():  # no deep supervision: (B, C, z, y, x)
            return base(output, target)
        # DynUNet stacks the full-resolution output and the up-sampled auxiliary heads on dim 1;
        # head i weighs 1/2^i (normalised), as nnU-Net's deep-supervision loss.
        heads = torch.unbind(output, dim=1)
        weights = [0.5**i for i in range(len(heads))]
        return sum(w * base(h, target) for w, h in zip(weights, heads, strict=True)) / sum(weights)

    return loss


def _optimizer_and_schedule(net: torch.nn.Module, settings: SegmentationSettings):
    torch = _torch()
    o = settings.optimizer
    if o.name == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                              weight_decay=o.weight_decay)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    epochs = settings.epochs

    def factor(epoch: int) -> float:  # learning-rate multiplier of a (0-based) epoch
        if o.schedule == "poly":
            return (1.0 - epoch / epochs) ** o.poly_exponent
        if o.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _infer_probabilities(net: torch.nn.Module, image: np.ndarray, settings: SegmentationSettings, device) -> np.ndarray:
    """Softmax probabilities (C, z, y, x) of a preprocessed image by sliding-window inference."""
    from monai.inferers import sliding_window_inference

    torch = _torch()
    net.eval()
    with torch.no_grad():
        x = torch.as_tensor(image[None, None], dtype=torch.float32, device=device)
        logits = sliding_window_inference(
            x, roi_size=settings.patch_zyx, sw_batch_size=settings.sw_batch_size, predictor=net,
            overlap=settings.sw_overlap, mode=settings.sw_mode,
        )
        logits = logits.as_tensor() if hasattr(logits, "as_tensor") else logits
        return torch.softmax(logits, dim=1)[0].float().cpu().numpy()


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays; NaN when both are empty (nothing to agree on)."""
    denom = int(pred.sum()) + int(truth.sum())
    return float("nan") if denom == 0 else 2.0 * int(np.logical_and(pred, truth).sum()) / denom


def _validation_dice(net, cases: Sequence[PreparedCase], settings: SegmentationSettings, device) -> dict[str, float]:
    """Mean Dice per label over the validation cases, on the target grid (what the network sees)."""
    per_label: dict[str, list[float]] = {name: [] for name in settings.class_names[1:]}
    for case in cases:
        pred = np.argmax(_infer_probabilities(net, case.image, settings, device), axis=0)
        for i, name in enumerate(settings.class_names[1:], start=1):
            per_label[name].append(_dice(pred == i, case.label == i))
    return {k: float(np.nanmean(v)) if np.any(np.isfinite(v)) else float("nan") for k, v in per_label.items()}


@dataclass
class TrainResult:
    """Outcome of :func:`train_segmentation`.

    Attributes
    ----------
    model : the DynUNet with the best-validation weights, in eval mode.
    history : one row per epoch: ``epoch``, ``lr``, ``train_loss``,
        ``val_dice_<label>`` and ``val_dice_mean`` (NaN on epochs without
        validation), ``best`` (checkpoint written) and ``seconds``.
    checkpoint : the best weights file (``<checkpoint_dir>/best.pt``).
    checkpoint_info : the content of its sidecar ``best.json``.
    best_epoch, best_val_dice : epoch (1-based) and per-label Dice of the checkpoint.
    train_cases, val_cases : case ids used for training and validation.
    device : device trained on.
    budget : epochs run, why training stopped, device and wall time.
    """

    model: Any
    history: pd.DataFrame
    checkpoint: Path
    checkpoint_info: dict
    best_epoch: int
    best_val_dice: dict[str, float]
    train_cases: list[str]
    val_cases: list[str]
    device: str
    budget: TrainingBudget | None = None


def _write_checkpoint(net, info: dict, ckpt_dir: Path) -> tuple[Path, dict]:
    torch = _torch()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    weights = ckpt_dir / "best.pt"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(state, str(weights))
    info = {**info, "weights_file": weights.name, "weights_sha256": sha256_file(weights)}
    (ckpt_dir / "best.json").write_text(json.dumps(info, indent=2, sort_keys=True, allow_nan=False), encoding="utf-8")
    return weights, info


def train_segmentation(
    train_pairs: Mapping[str, tuple[str | Path, str | Path]] | Sequence[tuple[str | Path, str | Path]],
    val_pairs: Mapping[str, tuple[str | Path, str | Path]] | Sequence[tuple[str | Path, str | Path]] | None,
    settings: SegmentationSettings,
    out_dir: str | Path,
) -> TrainResult:
    """Train the DynUNet and keep the weights with the best mean validation Dice.

    Each epoch draws ``iterations_per_epoch`` batches of augmented random
    patches (deterministic DataLoader, ``num_workers=0``), minimises Dice + CE
    (deep supervision), steps the learning-rate schedule, and every
    ``validate_every`` epochs runs sliding-window inference on the whole
    validation images; the mean Dice over labels (on the target grid) selects
    the checkpoint (ties keep the earlier epoch).

    Parameters
    ----------
    train_pairs : mapping patient id -> (image, mask), or sequence of (image, mask)
    val_pairs : same, or None
        ``None``: the training cases are split by ``settings.validation``
        (see :func:`split_cases`).
    settings : SegmentationSettings
    out_dir : str or Path
        Receives ``<checkpoint_dir>/best.pt`` (state dict), ``best.json``
        (settings, architecture, library versions, weights SHA-256, cases,
        validation Dice) and ``training_history.csv``.

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        When ``pretrained_weights`` is missing or ``cuda`` is unavailable.
    InputDataError
        When a training case has no mask or holds unconfigured label values.
    """
    torch = _torch()
    out_dir = Path(out_dir)
    ckpt_dir = Path(settings.checkpoint_dir)
    ckpt_dir = ckpt_dir if ckpt_dir.is_absolute() else out_dir / ckpt_dir
    device = resolve_device(settings.device)
    train_keyed = _keyed(train_pairs, lambda p: p[0])
    if val_pairs is None:
        train_ids, val_ids = split_cases(list(train_keyed), settings)
        val_keyed = {k: train_keyed[k] for k in val_ids}
        train_keyed = {k: train_keyed[k] for k in train_ids}
    else:
        val_keyed = _keyed(val_pairs, lambda p: p[0])
    overlap = sorted(set(train_keyed) & set(val_keyed))
    if overlap:
        raise InputDataError(f"cases {overlap} are in both training and validation; a case must be in one only")
    if not train_keyed or not val_keyed:
        raise InputDataError("training needs at least one training and one validation case")
    missing = [k for k, (_, m) in {**train_keyed, **val_keyed}.items() if m is None]
    if missing:
        raise InputDataError(f"cases {missing} have no mask; training and validation cases need masks")

    with _torch_threads(settings.num_threads):
        _seed_everything(settings.seed)
        train_cases = prepare_cases(train_keyed, settings)
        val_cases = prepare_cases(val_keyed, settings)
        net = build_network(settings)
        pretrained = _load_pretrained(net, settings.pretrained_weights) if settings.pretrained_weights else None
        net = net.to(device)
        loader = torch.utils.data.DataLoader(
            _PatchDataset(train_cases, settings), batch_size=settings.batch_size, shuffle=True, num_workers=0,
            generator=torch.Generator().manual_seed(settings.seed), drop_last=False,
        )
        loss_fn = _loss_function(settings)
        opt, sched = _optimizer_and_schedule(net, settings)
        base_info = {
            "format": CHECKPOINT_FORMAT,
            "settings": settings.model_dump(mode="json"),
            "architecture": settings.architecture(),
            "class_values": settings.class_values,
            "class_names": settings.class_names,
            "versions": _library_versions(),
            "device": str(device),
            "train_cases": sorted(train_keyed),
            "val_cases": sorted(val_keyed),
            "pretrained": pretrained,
        }
        rows: list[dict[str, Any]] = []
        best = -math.inf
        best_epoch, best_dice, weights, info = 0, {}, None, {}
        clock = BudgetClock(settings.epochs, settings.time_budget_minutes, str(device))
        for epoch in range(1, settings.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            lr = opt.param_groups[0]["lr"]
            losses = []
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                if settings.optimizer.grad_clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), settings.optimizer.grad_clip_norm)
                opt.step()
                losses.append(float(loss.detach()))
            sched.step()
            row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses))}
            last = clock.last_epoch(epoch)  # the epochs are done, or another one would exceed the time budget
            validate = epoch % settings.validate_every == 0 or last
            dice = _validation_dice(net, val_cases, settings, device) if validate else {}
            for name in settings.class_names[1:]:
                row[f"val_dice_{name}"] = dice.get(name, float("nan"))
            mean = float(np.nanmean(list(dice.values()))) if dice and np.any(np.isfinite(list(dice.values()))) else float("nan")
            row["val_dice_mean"] = mean
            # The first validated epoch always writes a checkpoint (even with NaN Dice), so one always exists.
            is_best = validate and (weights is None or (np.isfinite(mean) and mean > best))
            if is_best:
                best = mean if np.isfinite(mean) else -math.inf
                best_epoch, best_dice = epoch, dice
                # NaN (a label absent from every validation mask) is not valid JSON: recorded as null.
                as_json = {k: (v if np.isfinite(v) else None) for k, v in {**dice, "mean": mean}.items()}
                mean_json = as_json.pop("mean")
                weights, info = _write_checkpoint(
                    net, {**base_info, "epoch": epoch, "val_dice": as_json, "val_dice_mean": mean_json}, ckpt_dir
                )
            row["best"] = bool(is_best)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            clock.epoch_done()
            if last:
                break
        budget = clock.summary()
        # The checkpoint's sidecar also says what the training was allowed and used (read by the methods).
        info = {**info, "training": budget.as_dict()}
        (ckpt_dir / "best.json").write_text(json.dumps(info, indent=2, sort_keys=True, allow_nan=False), encoding="utf-8")
        history = pd.DataFrame(rows)
        out_dir.mkdir(parents=True, exist_ok=True)
        history.to_csv(out_dir / "training_history.csv", index=False)
        net.load_state_dict(_load_state(weights))
        net.eval()
    return TrainResult(
        model=net, history=history, checkpoint=weights, checkpoint_info=info, best_epoch=best_epoch,
        best_val_dice=best_dice, train_cases=sorted(train_keyed), val_cases=sorted(val_keyed), device=str(device),
        budget=budget,
    )


# --------------------------------------------------------------------------- checkpoints
def _checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if p.suffix == ".json":
        meta = p
        weights = p.parent / json.loads(p.read_text(encoding="utf-8")).get("weights_file", p.with_suffix(".pt").name)
    else:
        weights, meta = p, p.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise CheckpointMismatchError(
            f"checkpoint {p}: need the weights file and its settings JSON side by side ({weights.name}, {meta.name})"
        )
    return weights, meta


def settings_from_checkpoint(checkpoint_path: str | Path) -> SegmentationSettings:
    """The :class:`SegmentationSettings` a checkpoint was trained with (from its sidecar JSON)."""
    _, meta = _checkpoint_files(checkpoint_path)
    return SegmentationSettings.model_validate(json.loads(meta.read_text(encoding="utf-8"))["settings"])


def _differences(stored: Any, given: Any, prefix: str) -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for k in sorted(set(stored) | set(given)):
            out += _differences(stored.get(k, "<absent>"), given.get(k, "<absent>"), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if stored == given else [f"{prefix}: checkpoint {stored!r}, given {given!r}"]


def load_segmentation_model(checkpoint_path: str | Path, settings: SegmentationSettings) -> torch.nn.Module:
    """Load a checkpoint written by :func:`train_segmentation`, refusing one that does not fit ``settings``.

    Parameters
    ----------
    checkpoint_path : str or Path
        ``best.pt``, its ``best.json``, or the checkpoint folder.
    settings : SegmentationSettings
        The settings predictions will use. The model-defining ones (series,
        labels, target spacing, interpolator, clipping, N4, patch size and
        network) and the derived architecture must equal the checkpoint's.

    Returns
    -------
    torch.nn.Module
        The DynUNet in eval mode on ``settings.device``.

    Raises
    ------
    CheckpointMismatchError
        When settings or architecture differ (every difference is listed),
        the weights' SHA-256 differs from the recorded one, or the state dict
        does not fit the network.
    """
    weights, meta_path = _checkpoint_files(checkpoint_path)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{meta_path}: not a {CHECKPOINT_FORMAT} checkpoint (format {meta.get('format')!r})")
    given = settings.model_dump(mode="json")
    stored = meta.get("settings", {})
    diffs = []
    for key in _MODEL_DEFINING:
        diffs += _differences(stored.get(key, "<absent>"), given.get(key), key)
    diffs += _differences(meta.get("architecture"), json.loads(json.dumps(settings.architecture())), "architecture")
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {weights} was trained with different settings; refusing to load it:\n"
            + "\n".join(f"  - {d}" for d in diffs)
            + f"\n  fix: use the settings stored in {meta_path} (helpers.segmentation.settings_from_checkpoint) or retrain"
        )
    digest = sha256_file(weights)
    if digest != meta.get("weights_sha256"):
        raise CheckpointMismatchError(
            f"{weights}: SHA-256 {digest[:12]}... differs from the recorded {str(meta.get('weights_sha256'))[:12]}...; "
            "the weights file was altered or replaced"
        )
    net = build_network(settings)
    try:
        net.load_state_dict(_load_state(weights), strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"{weights} does not fit the network: {str(exc).splitlines()[0]}") from None
    net = net.to(resolve_device(settings.device))
    net.eval()
    return net


# --------------------------------------------------------------------------- inference
def _to_original_grid(probabilities: np.ndarray, case: PreparedCase, settings: SegmentationSettings) -> sitk.Image:
    """Label mask on the case's original grid from probabilities on the target grid.

    Probabilities (not labels) are resampled, channel by channel, and the
    argmax taken on the original grid, as nnU-Net does: smoother boundaries
    than nearest-neighbour up-sampling of a label map. A running maximum
    keeps memory at two channels.
    """
    og = case.original
    if _same_geometry(og, case.grid):
        classes = np.argmax(probabilities, axis=0)
    else:
        best_p = best_c = None
        for c in range(probabilities.shape[0]):
            img = _with_geometry(sitk.GetImageFromArray(np.ascontiguousarray(probabilities[c], dtype=np.float32)), case.grid)
            # Outside the resampled extent (at most half a voxel at the far borders) count as background.
            default = 1.0 if c == 0 else 0.0
            resampled = sitk.Resample(
                img, [int(v) for v in og["size"]], sitk.Transform(), sitk.sitkLinear, og["origin"], og["spacing"],
                og["direction"], default, sitk.sitkFloat32,
            )
            p = sitk.GetArrayFromImage(resampled)
            if best_p is None:
                best_p, best_c = p, np.zeros(p.shape, dtype=np.int64)
            else:
                better = p > best_p
                best_p = np.where(better, p, best_p)
                best_c[better] = c
        classes = best_c
    values = np.asarray(settings.class_values)
    dtype = np.uint8 if values.max() <= 255 else np.uint16
    return _with_geometry(sitk.GetImageFromArray(values[classes].astype(dtype)), og)


def predict_image(
    model: torch.nn.Module,
    image: str | Path | sitk.Image,
    settings: SegmentationSettings,
    case_id: str = "case",
) -> sitk.Image:
    """Predicted label mask of one image, on the image's original grid.

    Preprocessing as in training, sliding-window inference on the target grid
    (``patch_size``, ``sw_overlap``, ``sw_mode``), softmax probabilities
    resampled to the original grid, argmax, class -> label value.
    """
    case = prepare_case(image, None, settings, case_id=case_id)
    first = next(iter(model.parameters()), None)  # run where the model lives
    device = first.device if first is not None else resolve_device(settings.device)
    with _torch_threads(settings.num_threads):
        probs = _infer_probabilities(model, case.image, settings, device)
    return _to_original_grid(probs, case, settings)


def predict_masks(
    model_or_checkpoint: torch.nn.Module | str | Path,
    images: Mapping[str, str | Path] | Sequence[str | Path],
    settings: SegmentationSettings,
    out_dir: str | Path,
) -> list[Path]:
    """Segment images and write one NIfTI label mask per image on its original grid.

    Parameters
    ----------
    model_or_checkpoint : torch.nn.Module, or path of a checkpoint
        A checkpoint is loaded with :func:`load_segmentation_model` (refused
        when it does not match ``settings``).
    images : mapping patient id -> image path, or sequence of image paths
        Sequences name the outputs by image file name (which must be unique).
    settings : SegmentationSettings
    out_dir : str or Path
        Receives ``<patient>.nii.gz`` (uint8 label values; uint16 above 255)
        with the size, spacing, origin and direction of the input image.

    Returns
    -------
    list of Path
        The written masks, in input order.
    """
    if isinstance(model_or_checkpoint, str | Path):
        model = load_segmentation_model(model_or_checkpoint, settings)
    else:
        model = model_or_checkpoint
    keyed = _keyed(images, lambda p: p)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bad = [k for k in keyed if Path(k).name != k or k in ("", ".", "..")]
    if bad:
        raise InputDataError(f"ids {bad} cannot name an output file; use ids without path separators")
    for case_id, path in keyed.items():
        mask = predict_image(model, path, settings, case_id=case_id)
        target = out_dir / f"{case_id}.nii.gz"
        sitk.WriteImage(mask, str(target), True)
        written.append(target)
    return written


# --------------------------------------------------------------------------- evaluation
def _as_array(x: sitk.Image | np.ndarray) -> np.ndarray:
    return sitk.GetArrayFromImage(x) if isinstance(x, sitk.Image) else np.asarray(x)


def _hausdorff(pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float], percentile: float | None) -> float:
    from monai.metrics import compute_hausdorff_distance

    torch = _torch()
    p = torch.as_tensor(pred[None, None].astype(np.float32))
    t = torch.as_tensor(truth[None, None].astype(np.float32))
    with warnings.catch_warnings():
        # MONAI 1.5+ passes a deprecated argument to itself (get_mask_edges); nothing for the caller to fix.
        warnings.simplefilter("ignore", FutureWarning)
        d = compute_hausdorff_distance(p, t, include_background=True, percentile=percentile, spacing=list(spacing_zyx))
    return float(d.reshape(-1)[0])


def segmentation_metrics(
    pred: sitk.Image | np.ndarray,
    truth: sitk.Image | np.ndarray,
    labels: Mapping[str, int],
    spacing: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Dice, HD95 and maximum Hausdorff distance (mm) per label.

    Dice = 2|P ∩ T| / (|P| + |T|). HD95 is MONAI's
    ``compute_hausdorff_distance(percentile=95)``: the larger of the two
    directed 95th percentiles of distances between the surface voxels of the
    prediction and of the truth, in mm (voxel spacing applied); ``hd_mm`` is
    the maximum (percentile None).

    Empty structures are handled explicitly, never by a crash:
    both empty -> Dice and HD NaN, note ``absent in truth and prediction``;
    prediction empty -> Dice 0, HD inf, note ``missed: prediction empty``;
    truth empty -> Dice 0, HD inf, note ``false positive: truth empty``.

    Parameters
    ----------
    pred, truth : SimpleITK.Image or array (z, y, x)
        Label masks on the same grid.
    labels : mapping name -> label value
    spacing : (x, y, z) mm, optional
        Required for arrays; images use (and must share) their own spacing.

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``value``, ``dice``, ``hd95_mm``,
        ``hd_mm``, ``truth_ml``, ``pred_ml``, ``note``.

    Raises
    ------
    InputDataError
        When the grids differ or no spacing is known.
    """
    if isinstance(pred, sitk.Image) and isinstance(truth, sitk.Image):
        diff = geometry_difference(truth, pred)
        if diff is not None:
            raise InputDataError(f"prediction and truth are on different grids: prediction {diff}")
    image_spacing = next((x.GetSpacing() for x in (truth, pred) if isinstance(x, sitk.Image)), None)
    if spacing is None:
        spacing = image_spacing
    elif image_spacing is not None and not np.allclose(spacing, image_spacing, rtol=1e-3):
        raise InputDataError(f"spacing {tuple(spacing)} differs from the images' spacing {tuple(image_spacing)}")
    if spacing is None:
        raise InputDataError("segmentation_metrics: give spacing (x, y, z mm) for arrays")
    p_arr, t_arr = _as_array(pred), _as_array(truth)
    if p_arr.shape != t_arr.shape:
        raise InputDataError(f"prediction shape {p_arr.shape} differs from truth shape {t_arr.shape}")
    spacing_zyx = [float(s) for s in tuple(spacing)[::-1]]
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    rows = []
    for name, value in labels.items():
        p, t = p_arr == value, t_arr == value
        n_p, n_t = int(p.sum()), int(t.sum())
        note = ""
        if n_p == 0 and n_t == 0:
            dice = hd95 = hd = float("nan")
            note = "absent in truth and prediction"
        elif n_p == 0 or n_t == 0:
            dice, hd95, hd = 0.0, float("inf"), float("inf")
            note = "missed: prediction empty" if n_p == 0 else "false positive: truth empty"
        else:
            dice = _dice(p, t)
            hd95 = _hausdorff(p, t, spacing_zyx, 95)
            hd = _hausdorff(p, t, spacing_zyx, None)
        rows.append({
            "label": name, "value": int(value), "dice": dice, "hd95_mm": hd95, "hd_mm": hd,
            "truth_ml": n_t * voxel_ml, "pred_ml": n_p * voxel_ml, "note": note,
        })
    return pd.DataFrame(rows)


def evaluation_table(
    cases: pd.DataFrame | Sequence[Mapping[str, Any]],
    labels: Mapping[str, int],
    spacing_rtol: float = 1e-3,
    origin_mm: float = 0.5,
    direction_atol: float = 1e-4,
) -> pd.DataFrame:
    """Per patient x label x cohort metrics of predicted vs reference masks.

    Parameters
    ----------
    cases : DataFrame or records with ``patient``, ``cohort``, ``prediction``
        and ``truth`` (paths, or masks already read; an RTSTRUCT or DICOM SEG
        truth is placed on the prediction's grid, which is the image's).
    labels : mapping name -> label value
    spacing_rtol, origin_mm, direction_atol : grid tolerances (the study's
        ``geometry_tolerance``).

    Returns
    -------
    pandas.DataFrame
        ``patient``, ``cohort`` and the columns of :func:`segmentation_metrics`
        (``label`` holds the name), one row per patient and label; the
        ``patient``/``label``/``cohort``/``dice`` columns feed
        :func:`helpers.evaluation_figures.dice_figure`.

    Raises
    ------
    InputDataError
        When a prediction is not on its reference mask's grid (the patient is named).
    """
    df = pd.DataFrame(list(cases)) if not isinstance(cases, pd.DataFrame) else cases
    missing = [c for c in ("patient", "cohort", "prediction", "truth") if c not in df.columns]
    if missing:
        raise InputDataError(f"evaluation_table: columns {missing} are missing")
    parts = []
    for r in df.itertuples(index=False):
        pred = read_mask(r.prediction)
        tol = GeometryTolerance(spacing=spacing_rtol, origin_mm=origin_mm, direction=direction_atol)
        truth = conform_mask(r.truth, pred, tol) if isinstance(r.truth, sitk.Image) else read_mask(r.truth, reference=pred, tolerance=tol)
        diff = geometry_difference(truth, pred, spacing_rtol, origin_mm, direction_atol)
        if diff is not None:
            raise InputDataError(f"patient {r.patient}: the prediction is not on the reference mask's grid ({diff})")
        m = segmentation_metrics(sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(truth), labels, truth.GetSpacing())
        m.insert(0, "cohort", r.cohort)
        m.insert(0, "patient", r.patient)
        parts.append(m)
    cols = ["patient", "cohort", "label", "value", "dice", "hd95_mm", "hd_mm", "truth_ml", "pred_ml", "note"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def _mean_sd(values: pd.Series, digits: int) -> tuple[float, float, str]:
    v = values.astype(float)
    mean = float(v.mean()) if len(v) else float("nan")
    sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    text = "" if not np.isfinite(mean) else (f"{mean:.{digits}f} ± {sd:.{digits}f}" if np.isfinite(sd) else f"{mean:.{digits}f}")
    return mean, sd, text


def summarise_evaluation(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SD of Dice and HD95 per label and cohort (the seed studies' Dice table).

    Dice statistics use every patient with a defined Dice (cases where the
    label is absent in both masks are left out); HD95 statistics use the
    finite values only, and ``n_hd95_infinite`` counts the cases with an
    empty prediction or truth (HD undefined). SD is the sample SD (n - 1).

    Parameters
    ----------
    table : DataFrame of :func:`evaluation_table`

    Returns
    -------
    pandas.DataFrame
        ``label``, ``cohort``, ``n``, ``dice_mean``, ``dice_sd``,
        ``dice_mean_sd`` (text, 3 decimals), ``hd95_mean_mm``, ``hd95_sd_mm``,
        ``hd95_mean_sd_mm`` (text, 2 decimals), ``n_hd95_infinite``,
        ``n_absent``; in the order labels and cohorts first appear.
    """
    rows = []
    labels = list(dict.fromkeys(table["label"]))
    cohorts = list(dict.fromkeys(table["cohort"]))
    for label in labels:
        for cohort in cohorts:
            sub = table[(table["label"] == label) & (table["cohort"] == cohort)]
            if sub.empty:
                continue
            dice = sub["dice"].dropna()
            hd = sub["hd95_mm"].astype(float)
            finite = hd[np.isfinite(hd)]
            d_mean, d_sd, d_txt = _mean_sd(dice, 3)
            h_mean, h_sd, h_txt = _mean_sd(finite, 2)
            rows.append({
                "label": label, "cohort": cohort, "n": len(dice),
                "dice_mean": d_mean, "dice_sd": d_sd, "dice_mean_sd": d_txt,
                "hd95_mean_mm": h_mean, "hd95_sd_mm": h_sd, "hd95_mean_sd_mm": h_txt,
                "n_hd95_infinite": int(np.isinf(hd).sum()), "n_absent": int(sub["dice"].isna().sum()),
            })
    return pd.DataFrame(rows)
