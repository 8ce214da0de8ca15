"""pyradiomics feature extraction: presets, one-unit extraction, feature counts.

A preset is a pyradiomics parameter file (YAML) shipped in ``helpers/presets``
or given by path. Per-series settings from the study config (e.g. a bin width
in SUV for PET) are merged over the preset's ``setting`` block. Feature names
follow pyradiomics (``original_glcm_Contrast``, ``wavelet-LLH_firstorder_Mean``,
``log-sigma-1-0-mm-3D_glszm_ZoneEntropy``); diagnostics are kept apart.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

PRESETS_DIR = Path(__file__).parent / "presets"

#: Presets whose feature count is fixed by a publication; extraction asserts it.
EXPECTED_COUNTS = {"seed1762": 1762, "habitat1197": 1197}
#: pyradiomics' enabled 3D shape features (both presets include all 14).
SHAPE_FEATURES = 14

#: Settings of this project that pyradiomics does not know; removed from the parameters before pyradiomics sees them.
#: ``binOrigin``: with ``binWidth``, the lower edge of the first bin (IBSI fixed bin size: the re-segmentation lower
#: bound) instead of pyradiomics' ``floor(min / binWidth) * binWidth``. ``resegmentSigma``: k of IBSI's outlier
#: re-segmentation (voxels within mean +- k SD kept), after an absolute ``resegmentRange`` when one is set (IBSI's
#: combined range + outlier re-segmentation, which pyradiomics' single ``resegmentMode`` cannot express). See
#: :func:`extract_features`.
PROJECT_SETTINGS = ("binOrigin", "resegmentSigma")

_FEATURE = re.compile(r"^(?P<image_type>[^_]+)_(?P<cls>[^_]+)_(?P<name>.+)$")

__all__ = [
    "PRESETS_DIR",
    "PROJECT_SETTINGS",
    "EXPECTED_COUNTS",
    "available_presets",
    "load_preset",
    "preset_name",
    "merge_settings",
    "without_shape",
    "SHAPE_FEATURES",
    "extract_features",
    "extract_features_many",
    "shares_filtered_images",
    "MASK_FREE_IMAGE_TYPES",
    "split_feature_name",
    "feature_counts_by_class",
]


def available_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_name(name_or_path: str | Path) -> str:
    """Short name of a preset: the shipped name, or the file stem of a preset path."""
    return Path(name_or_path).stem


def load_preset(name_or_path: str | Path) -> dict:
    """Read a preset (shipped name or path to a pyradiomics YAML parameter file).

    Raises
    ------
    ValueError
        For an unknown preset name.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown extraction preset '{name_or_path}'; shipped presets: {available_presets()}, or give a path to a pyradiomics YAML file")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(params) - {"imageType", "featureClass", "setting", "voxelSetting"}
    if unknown:
        raise ValueError(f"preset {path}: unknown top-level keys {sorted(unknown)} (pyradiomics accepts imageType, featureClass, setting, voxelSetting)")
    return params


def merge_settings(preset: Mapping, overrides: Mapping | None) -> dict:
    """Preset parameters with ``overrides`` merged into its ``setting`` block.

    ``binCount`` and ``binWidth`` are mutually exclusive in pyradiomics
    (``binCount`` wins), so an override of one removes the other.
    """
    params = copy.deepcopy(dict(preset))
    settings = dict(params.get("setting") or {})
    for key, value in (overrides or {}).items():
        if key == "binCount":
            settings.pop("binWidth", None)
        if key == "binWidth":
            settings.pop("binCount", None)
        settings[key] = value
    params["setting"] = settings
    return params


_BIN_ORIGIN: contextvars.ContextVar[float | None] = contextvars.ContextVar("bin_origin", default=None)
#: pyradiomics' own ``getBinEdges``, kept when the hooks below replace it (reference tests compare against it).
_PYRADIOMICS_GET_BIN_EDGES = None


def _first_equal(values: np.ndarray, extreme):
    """The element Python's ``min``/``max`` would return for the extreme value ``extreme`` of ``values``.

    The built-ins keep the first of equal candidates, numpy's reductions do not say which: they differ only for
    +0.0/-0.0, the one value with two bit patterns that compare equal (NaN never reaches here).
    """
    if extreme != 0:
        return extreme
    return values[int(np.argmax(values == extreme))]


def _fast_bin_edges(parameterValues, **kwargs):  # pyradiomics' signature
    """pyradiomics' ``getBinEdges`` with ndarray reductions instead of Python's ``min()``/``max()``.

    pyradiomics iterates the ROI's voxels in Python there (about 160x slower than ``ndarray.min``, 10-14% of a CT
    unit); the edges are bitwise the same: same dtype, same element chosen (:func:`_first_equal`), same arithmetic.
    ``binCount``, non-arrays and NaN go to pyradiomics' function unchanged.
    """
    values = parameterValues
    if kwargs.get("binCount") is not None or not isinstance(values, np.ndarray) or values.ndim != 1 or not values.size:
        return _PYRADIOMICS_GET_BIN_EDGES(parameterValues, **kwargs)
    minimum, maximum = values.min(), values.max()
    if np.isnan(minimum) or np.isnan(maximum):  # NaN: the built-ins' order-dependent result is pyradiomics' own
        return _PYRADIOMICS_GET_BIN_EDGES(parameterValues, **kwargs)
    minimum, maximum = _first_equal(values, minimum), _first_equal(values, maximum)
    bin_width = kwargs.get("binWidth", 25)
    # pyradiomics' fixed-bin-width arithmetic, verbatim (including its flat-region case).
    edges = np.arange(minimum - (minimum % bin_width), maximum + 2 * bin_width, bin_width)
    if len(edges) == 1:
        edges = [edges[0] - 0.5, edges[0] + 0.5]
    return edges


def _bin_edges_from_origin(parameterValues, **kwargs):  # pyradiomics' signature
    """``getBinEdges`` with the first edge at the active ``binOrigin`` (fixed bin width only).

    Without an active origin, or with ``binCount``, the exact fast replacement :func:`_fast_bin_edges` runs.
    """
    origin = _BIN_ORIGIN.get()
    if origin is None or kwargs.get("binCount") is not None:
        return _fast_bin_edges(parameterValues, **kwargs)
    width = float(kwargs.get("binWidth", 25))
    values = np.asarray(parameterValues, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if low < origin:
        raise ValueError(
            f"binOrigin {origin:g} is above the lowest intensity in the ROI ({low:g}): set binOrigin to the "
            "re-segmentation lower bound (resegmentRange[0]) or lower, or remove it"
        )
    # Edges origin + k * width (half-open bins, as pyradiomics): bin index floor((x - origin) / width) + 1 (IBSI).
    n = math.floor((high - origin) / width) + 2
    return origin + width * np.arange(n + 1, dtype=np.float64)


#: pyradiomics functions replaced by this module's hooks: (owner, attribute name) -> pyradiomics' own function.
_REPLACED: dict[tuple[object, str], object] = {}


def _replace_once(owner: object, name: str, replacement: object) -> object:
    """Put ``replacement`` in place of pyradiomics' ``owner.name`` (the first call only); return pyradiomics' function.

    pyradiomics looks these up at call time (module globals, class attributes), so replacing the attribute reroutes
    every caller; the original is kept for the hook to call and for the tests that compare against it.
    """
    if (owner, name) not in _REPLACED:
        _REPLACED[(owner, name)] = getattr(owner, name)
        setattr(owner, name, replacement)
    return _REPLACED[(owner, name)]


def _install_bin_edges_hook() -> None:
    """Route pyradiomics' ``getBinEdges`` (looked up as a module global by ``binImage``) through the hooks above."""
    global _PYRADIOMICS_GET_BIN_EDGES
    from radiomics import imageoperations

    _PYRADIOMICS_GET_BIN_EDGES = _replace_once(imageoperations, "getBinEdges", _bin_edges_from_origin)


_RESEGMENT_SIGMA: contextvars.ContextVar[float | None] = contextvars.ContextVar("resegment_sigma", default=None)
_ORIGINAL_RESEGMENT_MASK = None


def _resegment_range_then_sigma(imageNode, maskNode, **kwargs):  # pyradiomics' signature
    """pyradiomics' ``resegmentMask`` (the absolute range), then the active ``resegmentSigma`` outlier filter.

    The filter keeps voxels within mean +- k SD (population SD, as pyradiomics' ``sigma`` mode) of the voxels the
    range kept (IBSI 1, re-segmentation: range first, then outliers). Without an active k pyradiomics runs unchanged.
    """
    mask = _ORIGINAL_RESEGMENT_MASK(imageNode, maskNode, **kwargs)
    sigma = _RESEGMENT_SIGMA.get()
    if sigma is None:
        return mask
    return _ORIGINAL_RESEGMENT_MASK(imageNode, mask, **{**kwargs, "resegmentRange": [-sigma, sigma], "resegmentMode": "sigma"})


def _install_resegment_hook() -> None:
    global _ORIGINAL_RESEGMENT_MASK
    from radiomics import imageoperations

    _ORIGINAL_RESEGMENT_MASK = _replace_once(imageoperations, "resegmentMask", _resegment_range_then_sigma)


_SHARED_BINNING: contextvars.ContextVar[dict | None] = contextvars.ContextVar("shared_binning", default=None)
_PYRADIOMICS_APPLY_BINNING = None


class _Binned:
    """One discretisation of a cropped image within one ROI: its input, mask and settings, the result and levels."""

    def __init__(self, source: np.ndarray, mask: np.ndarray, settings: dict, matrix: np.ndarray, coefficients: dict):
        self.source, self.mask, self.settings, self.matrix, self.coefficients = source, mask, settings, matrix, coefficients

    def serves(self, feature_class, matrix: np.ndarray) -> bool:
        try:
            same_settings = bool(self.settings == feature_class.settings)
        except (TypeError, ValueError):  # settings holding arrays: not comparable, not shared
            return False
        return same_settings and np.array_equal(self.mask, feature_class.maskArray) and np.array_equal(self.source, matrix)


def _apply_binning_once(self, matrix):  # pyradiomics' method signature (RadiomicsFeaturesBase._applyBinning)
    """pyradiomics' ``_applyBinning``, computed once per filtered image and ROI for all texture classes.

    Within :func:`_add_features` the six feature classes of one cropped image each copy it and bin it again with the
    same settings and mask; the first binning is kept and handed out (as copies) when the input array, mask and
    settings are equal, so each class sees exactly what its own binning gives. Elsewhere pyradiomics runs unchanged.
    """
    cache = _SHARED_BINNING.get()
    if cache is None or self.voxelBased:
        return _PYRADIOMICS_APPLY_BINNING(self, matrix)
    key = (id(self.inputImage), id(self.inputMask))
    binned = cache.get(key)
    if binned is None or not binned.serves(self, matrix):
        source = matrix.copy()
        result = _PYRADIOMICS_APPLY_BINNING(self, matrix)
        cache[key] = binned = _Binned(source, self.maskArray.copy(), dict(self.settings), result.copy(),
                                      {k: self.coefficients[k] for k in ("grayLevels", "Ng")})
        return result
    self.coefficients["grayLevels"] = binned.coefficients["grayLevels"].copy()
    self.coefficients["Ng"] = binned.coefficients["Ng"]
    return binned.matrix.copy()


def _install_binning_hook() -> None:
    global _PYRADIOMICS_APPLY_BINNING
    from radiomics import base

    _PYRADIOMICS_APPLY_BINNING = _replace_once(base.RadiomicsFeaturesBase, "_applyBinning", _apply_binning_once)


#: pyradiomics extractors by their parameters: building one validates the parameters against pyradiomics' schema
#: (about 0.1 s, parsing YAML), more than extracting a small ROI; ``execute`` copies the settings, so reuse is safe.
_EXTRACTORS: dict[str, object] = {}
_EXTRACTOR_CACHE_SIZE = 16


def _extractor(params: Mapping):
    import json

    import radiomics
    from radiomics import featureextractor

    # pyradiomics logs every filter at INFO; keep the notebook output readable.
    radiomics.setVerbosity(logging.ERROR)
    _install_bin_edges_hook()
    _install_binning_hook()
    key = json.dumps(params, sort_keys=True, default=repr)
    if key not in _EXTRACTORS:
        if len(_EXTRACTORS) >= _EXTRACTOR_CACHE_SIZE:
            _EXTRACTORS.pop(next(iter(_EXTRACTORS)))
        _EXTRACTORS[key] = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(dict(params)))
    return _EXTRACTORS[key]


def without_shape(params: Mapping) -> dict:
    """The parameters with the shape feature class switched off (e.g. for peritumoral rings)."""
    out = copy.deepcopy(dict(params))
    out["featureClass"] = {k: v for k, v in (out.get("featureClass") or {}).items() if k not in ("shape", "shape2D")}
    return out


def extract_features(image: sitk.Image, mask: sitk.Image, params: Mapping) -> tuple[dict[str, float], dict[str, object]]:
    """Extract one unit's features with pyradiomics.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The (preprocessed) image and a mask on the same grid.
    params : mapping
        pyradiomics parameters (a preset merged with series settings), plus the
        project settings of :data:`PROJECT_SETTINGS`: ``binOrigin`` (with
        ``binWidth``) puts the first bin's lower edge at that value, IBSI's
        fixed-bin-size discretisation (bin ``floor((x - binOrigin) / binWidth) +
        1``); pyradiomics alone starts at ``floor(min / binWidth) * binWidth``,
        which shifts every grey-level index when the ROI minimum is more than a
        bin above the re-segmentation bound. ``resegmentSigma`` k keeps the
        voxels within mean +- k SD: after an absolute ``resegmentRange`` (IBSI's
        combined re-segmentation), or alone (pyradiomics' ``sigma`` mode). The
        morphological mask is not re-segmented (pyradiomics' ``resegmentShape``
        false, as IBSI). Without these settings pyradiomics runs unchanged.

    Returns
    -------
    (features, diagnostics) : tuple of dict
        Feature values as floats (pyradiomics names) and the
        ``diagnostics_*`` entries (versions, settings, image/mask hashes).
    """
    _check_finite(image)
    params, origin, sigma = _pyradiomics_params(params)
    with _project_settings(origin, sigma):
        result = _extractor(params).execute(image, mask, label=int(params["setting"].get("label", 1)))
    return _split_result(result)


def _check_finite(image: sitk.Image) -> None:
    arr = sitk.GetArrayViewFromImage(image)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        # pyradiomics fails on them with an unrelated message ("Maximum allowed size exceeded").
        raise ValueError(
            f"the image has {int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} infinite voxel(s); features are "
            "undefined on them: re-export the image without NaN/inf or replace them with a background value"
        )


def _pyradiomics_params(params: Mapping) -> tuple[dict, float | None, float | None]:
    """The parameters pyradiomics sees, the active ``binOrigin`` and the ``resegmentSigma`` left to the hook.

    Validates the project settings (:data:`PROJECT_SETTINGS`) and installs the hook that applies them.
    """
    settings = dict(params.get("setting") or {})
    origin = settings.pop("binOrigin", None)
    if origin is not None:
        if settings.get("binCount") is not None or not isinstance(origin, (int, float)) or not math.isfinite(origin):
            raise ValueError(f"binOrigin must be a finite number used with binWidth (not binCount), got {origin!r}")
    sigma = settings.pop("resegmentSigma", None)
    if sigma is not None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"resegmentSigma must be a positive number of standard deviations (e.g. 3), got {sigma!r}")
        if settings.get("resegmentRange") is None:  # the filter alone: pyradiomics' own sigma mode
            settings.update(resegmentRange=[-float(sigma), float(sigma)], resegmentMode="sigma")
            sigma = None
        elif settings.get("resegmentMode", "absolute") != "absolute":
            raise ValueError(
                f"resegmentSigma follows an absolute resegmentRange (IBSI: range, then outliers); resegmentMode is "
                f"{settings['resegmentMode']!r}: remove resegmentMode or resegmentSigma"
            )
        else:
            _install_resegment_hook()
    return {**dict(params), "setting": settings}, None if origin is None else float(origin), None if sigma is None else float(sigma)


@contextlib.contextmanager
def _project_settings(origin: float | None, sigma: float | None):
    """Activate ``binOrigin`` and ``resegmentSigma`` for the hooks while pyradiomics runs."""
    token = _BIN_ORIGIN.set(origin)
    sigma_token = _RESEGMENT_SIGMA.set(sigma)
    try:
        yield
    finally:
        _BIN_ORIGIN.reset(token)
        _RESEGMENT_SIGMA.reset(sigma_token)


def _split_result(result: Mapping) -> tuple[dict[str, float], dict[str, object]]:
    """pyradiomics' result as (features as floats, ``diagnostics_*`` entries as JSON-ready values)."""
    features: dict[str, float] = {}
    diagnostics: dict[str, object] = {}
    for key, value in result.items():
        if key.startswith("diagnostics_"):
            diagnostics[key] = value.tolist() if isinstance(value, np.ndarray) else value
        else:
            features[key] = float(value)
    return features, diagnostics


#: pyradiomics' image types whose filter reads the image only (never the mask): computed once, they serve every ROI.
MASK_FREE_IMAGE_TYPES = frozenset({"Original", "Wavelet", "LoG", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient"})


def shares_filtered_images(params_list: Sequence[Mapping]) -> bool:
    """Whether ROIs with these parameters can take their filtered images from one filtering of the image.

    True when they differ at most in their feature classes, every image type is mask-free, and pyradiomics filters the
    whole image: resampling (``resampledPixelSpacing``) and ``preCrop`` crop around each mask before filtering, which
    changes the filtered values near the crop border, so such ROIs take the plain path.
    """
    first = params_list[0]
    settings = first.get("setting") or {}
    return (
        all(p.get("setting") == first.get("setting") and p.get("imageType") == first.get("imageType") for p in params_list)
        and set(first.get("imageType") or {"Original": {}}) <= MASK_FREE_IMAGE_TYPES
        and settings.get("resampledPixelSpacing") is None
        and not settings.get("preCrop", False)
    )


def extract_features_many(
    image: sitk.Image, masks: Sequence[sitk.Image], params_list: Sequence[Mapping]
) -> list[tuple[dict[str, float], dict[str, object]] | Exception]:
    """:func:`extract_features` of several ROIs of one image, filtering the image once for all of them.

    pyradiomics filters the whole image, unchanged by the mask, then crops each filtered image to the ROI; so the
    filtered images of one image are the same for all its ROIs and are computed once here, each serving every ROI
    in turn. Each ROI gets exactly what :func:`extract_features` returns for it, bit for bit (its own mask hashes,
    diagnostics, shape on its own mask, its own bounding box and re-segmentation), or the exception it raises: one
    ROI's failure leaves the others. Parameters that make sharing inexact (:func:`shares_filtered_images`) take
    :func:`extract_features` per ROI.
    """
    if len(masks) != len(params_list):
        raise ValueError(f"{len(masks)} masks but {len(params_list)} parameter sets")
    if not shares_filtered_images(params_list):
        return [_outcome(extract_features, image, m, p) for m, p in zip(masks, params_list)]
    try:
        _check_finite(image)
        prepared = [_pyradiomics_params(p) for p in params_list]
    except Exception as exc:  # the same error for every ROI, as extract_features would raise it
        return [exc] * len(masks)
    _, origin, sigma = prepared[0]
    label = int(prepared[0][0]["setting"].get("label", 1))
    with _project_settings(origin, sigma):
        runs = [_outcome(_start_roi, _extractor(p), image, m, label) for m, (p, _, _) in zip(masks, prepared)]
        _features_of_filtered_images(runs)
    return [run if isinstance(run, Exception) else _split_result(run.vector) for run in runs]


def _outcome(func, *args):
    """``func(*args)``, or the exception it raised (one ROI's failure is its own)."""
    try:
        return func(*args)
    except Exception as exc:
        return exc


class _RoiRun:
    """One ROI within :func:`extract_features_many`: its extractor, settings, image, mask, bounding box, results."""

    def __init__(self, extractor, settings: dict, image: sitk.Image, mask: sitk.Image, bounding_box, vector: dict):
        self.extractor, self.settings, self.image, self.mask, self.bounding_box, self.vector = (
            extractor, settings, image, mask, bounding_box, vector)


def _start_roi(extractor, image: sitk.Image, mask: sitk.Image, label: int) -> _RoiRun:
    """Steps 1-5 of pyradiomics' ``RadiomicsFeatureExtractor.execute`` (segment-based) for one mask.

    Loading (mask cast, normalisation), mask checks and bounding box, re-segmentation, diagnostics and shape, in
    pyradiomics' order and with its calls, so the ROI's diagnostics and shape features are its own.
    """
    from radiomics import featureextractor, generalinfo, imageoperations

    settings = extractor.settings.copy()
    settings["label"] = label
    if featureextractor.geometryTolerance != settings.get("geometryTolerance"):
        extractor._setTolerance()
    info = None
    if settings.get("additionalInfo", False):
        info = generalinfo.GeneralInfo()
        info.addGeneralSettings(settings)
        info.addEnabledImageTypes(extractor.enabledImagetypes)
    vector: dict = collections.OrderedDict()
    image, mask = extractor.loadImage(image, mask, info, **settings)
    bounding_box, corrected = imageoperations.checkMask(image, mask, **settings)
    if corrected is not None:
        if info is not None:
            info.addMaskElements(image, corrected, label, "corrected")
        mask = corrected
    resegmented = None
    if settings.get("resegmentRange", None) is not None:
        resegmented = imageoperations.resegmentMask(image, mask, **settings)
        bounding_box, _ = imageoperations.checkMask(image, resegmented, **settings)
        if info is not None:
            info.addMaskElements(image, resegmented, label, "resegmented")
    if info is not None:
        vector.update(info.getGeneralInfo())
    reshape = settings.get("resegmentShape", False)
    if reshape and resegmented is not None:
        mask = resegmented
    vector.update(extractor.computeShape(image, mask, bounding_box, **settings))
    if not reshape and resegmented is not None:
        mask = resegmented
    return _RoiRun(extractor, settings, image, mask, bounding_box, vector)


def _features_of_filtered_images(runs: list) -> None:
    """Step 6 of ``execute`` for every started ROI, each filtered image computed once (from the first ROI's image).

    A ROI whose features fail is replaced by its exception in ``runs``; a failing filter fails every ROI, as it
    would have failed each alone.
    """
    from radiomics import imageoperations

    live = [i for i, run in enumerate(runs) if not isinstance(run, Exception)]
    if not live:
        return
    first = runs[live[0]]
    generators = [getattr(imageoperations, f"get{name}Image")(first.image, first.mask, **{**first.settings, **custom})
                  for name, custom in first.extractor.enabledImagetypes.items()]
    try:
        for filtered, image_type, kwargs in itertools.chain(*generators):
            for i in live:
                if not isinstance(runs[i], Exception):
                    runs[i] = _outcome(_add_features, runs[i], filtered, image_type, kwargs)
    except Exception as exc:
        for i in live:
            if not isinstance(runs[i], Exception):
                runs[i] = exc


def _add_features(run: _RoiRun, filtered: sitk.Image, image_type: str, kwargs: dict) -> _RoiRun:
    """The ROI's features of one filtered image: cropped to its bounding box, as ``execute`` does, binned once."""
    from radiomics import imageoperations

    image, mask = imageoperations.cropToTumorMask(filtered, run.mask, run.bounding_box, padDistance=0)
    token = _SHARED_BINNING.set({})
    try:
        run.vector.update(run.extractor.computeFeatures(image, mask, image_type, **kwargs))
    finally:
        _SHARED_BINNING.reset(token)
    return run


def split_feature_name(name: str) -> tuple[str, str, str]:
    """``(image_type, feature_class, feature)`` of a pyradiomics feature name."""
    m = _FEATURE.match(name)
    if not m:
        raise ValueError(f"not a pyradiomics feature name: {name!r}")
    return m["image_type"], m["cls"], m["name"]


def _image_type_family(image_type: str) -> str:
    if image_type.startswith("wavelet"):
        return "wavelet"
    if image_type.startswith("log-sigma"):
        return "log"
    return image_type


_CLASS_LABELS = {
    "shape": "Shape", "firstorder": "First-order statistics", "glcm": "GLCM", "glrlm": "GLRLM", "glszm": "GLSZM",
    "ngtdm": "NGTDM", "gldm": "GLDM", "shape2D": "Shape (2D)",
}  # fmt: skip
_FAMILY_LABELS = {
    "wavelet": "Wavelet", "log": "Laplacian of Gaussian", "square": "Square", "squareroot": "Square root",
    "logarithm": "Logarithm", "exponential": "Exponential", "gradient": "Gradient", "lbp-2D": "LBP 2D", "lbp-3D": "LBP 3D",
}  # fmt: skip


def feature_counts_by_class(names: list[str]) -> pd.DataFrame:
    """Feature-count table like the seeds' Appendix S2.

    Features of the original image are counted per class (shape, first order,
    GLCM, ...); features of filtered images are counted per filter family
    (wavelet, LoG, square, ...). A ``Total`` row closes the table.

    Parameters
    ----------
    names : list of str
        pyradiomics feature names of one unit (or unique names of a preset).

    Returns
    -------
    DataFrame
        ``category``, ``image_type``, ``n_features``.
    """
    rows: dict[tuple[str, str], int] = {}
    for n in names:
        image_type, cls, _ = split_feature_name(n)
        if image_type == "original":
            key = (_CLASS_LABELS.get(cls, cls), "original")
        else:
            family = _image_type_family(image_type)
            key = (_FAMILY_LABELS.get(family, family), family)
        rows[key] = rows.get(key, 0) + 1
    order = list(_CLASS_LABELS.values()) + list(_FAMILY_LABELS.values())
    table = pd.DataFrame([{"category": c, "image_type": t, "n_features": k} for (c, t), k in rows.items()])
    if table.empty:
        return pd.DataFrame(columns=["category", "image_type", "n_features"])
    table["_order"] = [order.index(c) if c in order else len(order) for c in table["category"]]
    table = table.sort_values(["_order", "category"]).drop(columns="_order").reset_index(drop=True)
    total = pd.DataFrame([{"category": "Total", "image_type": "", "n_features": int(table["n_features"].sum())}])
    return pd.concat([table, total], ignore_index=True)
