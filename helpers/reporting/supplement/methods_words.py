"""Wording of the generated methods: names, parameters and numbers written as a methods section writes them."""


from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from helpers.reporting.supplement.collect import _join

_MODALITY = {"CT": "CT", "PT": "PET", "MR": "MRI", "US": "ultrasound", "OT": "other"}
_ALGORITHM = {
    "logistic": "logistic regression", "svm": "support vector machine (sigmoid-calibrated)", "random_forest": "random forest",
    "extra_trees": "extremely randomised trees", "xgboost": "XGBoost", "lightgbm": "LightGBM", "catboost": "CatBoost",
}  # fmt: skip
_IMAGE_TYPE = {
    "Original": "original", "Wavelet": "wavelet (all eight first-level decompositions)", "LoG": "Laplacian of Gaussian",
    "Square": "square", "SquareRoot": "square root", "Logarithm": "logarithm", "Exponential": "exponential", "Gradient": "gradient magnitude",
    "LBP2D": "local binary pattern (2D)", "LBP3D": "local binary pattern (3D)",
}  # fmt: skip
_FEATURE_CLASS = {"shape": "shape", "shape2D": "2D shape", "firstorder": "first-order", "glcm": "GLCM", "glrlm": "GLRLM", "glszm": "GLSZM",
                  "gldm": "GLDM", "ngtdm": "NGTDM"}  # fmt: skip
_BATCH_FIELD = {"kernel": "reconstruction kernel", "model": "scanner model", "manufacturer": "manufacturer", "field_strength_T": "field strength",
                "centre": "centre", "scanner": "scanner", "slice_thickness_mm": "slice thickness"}  # fmt: skip
_ICC_TYPE = {
    "ICC(A,1)": "the two-way, absolute-agreement, single-measurement intraclass correlation coefficient, ICC(A,1)",
    "ICC(C,1)": "the two-way, consistency, single-measurement intraclass correlation coefficient, ICC(C,1)",
    "ICC(1)": "the one-way random-effects, single-measurement intraclass correlation coefficient, ICC(1)",
}  # fmt: skip
_INTERPOLATOR = {"bspline": "B-spline", "linear": "linear", "nearest": "nearest-neighbour", "gaussian": "Gaussian", "lanczos": "Lanczos"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def words(name: object) -> str:
    """An identifier written as words: ``external_test`` -> ``external test``, ``MR_T1`` -> ``MR T1``."""
    return str(name).replace("_", " ").strip()


def camel_words(name: str) -> str:
    """``minimumROISize`` -> ``minimum ROI size`` (pyradiomics setting names)."""
    parts = _CAMEL.sub(" ", name).split()
    return " ".join(p if p.isupper() and len(p) > 1 else p.lower() for p in parts)


def number(value: object, digits: int = 3) -> str:
    """A number with at most ``digits`` significant decimals and no trailing zeros (``0.04707`` -> ``0.0471``)."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    if abs(x) >= 1:
        return f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return f"{x:.{digits}g}"


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 patient``, ``3 patients``."""
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"


def plural_number(value: object, singular: str) -> str:
    """``1 voxel``, ``1.5 voxels`` (a measured quantity)."""
    text = number(value)
    return f"{text} {singular if text == '1' else singular + 's'}"


def sentence_start(text: str) -> str:
    """A count opening a sentence in words: ``2 patients were`` -> ``Two patients were`` (up to nine)."""
    m = re.match(r"(\d+)(\b.*)", text, re.S)
    if not m or int(m.group(1)) > 9:
        return text
    word = count_word(int(m.group(1)))
    return word[:1].upper() + word[1:] + m.group(2)


def count_word(n: int) -> str:
    """Small counts as words at the start of a clause (``two cohorts``)."""
    return {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}.get(n, str(n))


def modality(code: str) -> str:
    return _MODALITY.get(code, code)


def algorithm(name: str) -> str:
    return _ALGORITHM.get(name, words(name))


def batch_field(name: str) -> str:
    return _BATCH_FIELD.get(name, words(name))


def icc_type(name: str) -> str:
    return _ICC_TYPE.get(name, name)


def interpolator(name: object) -> str:
    return _INTERPOLATOR.get(str(name), words(name))


def spacing(values: Sequence[object]) -> str:
    """``1 x 1 x 1 mm isotropic voxels`` or ``0.8 x 0.8 x 3 mm voxels``."""
    text = " x ".join(number(v) for v in values)
    iso = len({float(v) for v in values}) == 1  # type: ignore[arg-type]
    return f"{text} mm{' isotropic' if iso else ''} voxels"


def size(values: Sequence[object], unit: str = "voxels") -> str:
    return f"{' x '.join(number(v) for v in values)} {unit}"


_IMAGE_ORDER = ("Original", "Wavelet", "LoG", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient", "LBP2D", "LBP3D")
_CLASS_ORDER = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def _ordered(mapping: Mapping, order: Sequence[str]) -> list:
    """Items in the conventional order (provenance JSON has sorted keys), unknown names last."""
    return sorted(mapping.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def image_types(params: Mapping) -> str:
    out = []
    for name, opts in _ordered(params.get("imageType") or {}, _IMAGE_ORDER):
        opts = opts or {}
        text = _IMAGE_TYPE.get(name, camel_words(name))
        if "sigma" in opts:
            text += f" (sigma {_join([number(s) for s in opts['sigma']])} mm)"
        out.append(text)
    return _join(out)


def feature_classes(params: Mapping) -> str:
    out = []
    for name, sub in _ordered(params.get("featureClass") or {}, _CLASS_ORDER):
        label = _FEATURE_CLASS.get(name, name)
        out.append(f"{label} ({plural(len(sub), 'feature')})" if sub else label)
    return _join(out)


def discretisation(setting: Mapping) -> str:
    if "binCount" in setting:
        return f"a fixed bin count of {number(setting['binCount'])}"
    if "binWidth" in setting:
        if setting.get("binOrigin") is not None:  # IBSI fixed bin size: bins counted from the re-segmentation bound
            return f"a fixed bin width of {number(setting['binWidth'])} with the first bin starting at {number(setting['binOrigin'])}"
        return f"a fixed bin width of {number(setting['binWidth'])}"
    return "the PyRadiomics default fixed bin width of 25"


_SETTING_SKIP = {"binWidth", "binCount", "binOrigin", "resegmentMode", "label", "geometryTolerance", "additionalInfo", "enableCExtensions"}


def _resegmentation(bounds, mode: str, sigma) -> str:
    """pyradiomics' ``resegmentRange`` (one or two bounds, in its ``resegmentMode``) and the project's ``resegmentSigma``."""
    bounds = sorted(float(b) for b in bounds)
    if mode == "sigma":
        if len(bounds) == 2 and bounds[0] == -bounds[1]:
            text = f"mask re-segmented to intensities within the mean \u00b1 {number(bounds[1])} SD of the ROI"
        else:
            text = f"mask re-segmented to intensities from the mean {' to '.join(f'{number(b)} SD' for b in bounds)}"
    elif mode == "relative":
        parts = [f"{number(100 * b)}%" for b in bounds]
        text = f"mask re-segmented to intensities {' to '.join(parts)} of the ROI maximum" if len(parts) == 2 else \
            f"mask re-segmented to intensities of at least {parts[0]} of the ROI maximum"
    else:
        text = f"mask re-segmented to intensities {number(bounds[0])} to {number(bounds[1])}" if len(bounds) == 2 else \
            f"mask re-segmented to intensities of at least {number(bounds[0])}"
    if sigma is not None:
        text += f", then to the mean \u00b1 {number(sigma)} SD of the remaining voxels"
    return text


def pyradiomics_settings(setting: Mapping) -> list[str]:
    """Other PyRadiomics settings in words (unset ones, those given as null, are PyRadiomics defaults and not listed)."""
    out = []
    for key, value in setting.items():
        if key in _SETTING_SKIP or value is None:
            continue
        if key == "force2D":
            out.append("features computed in 2D slices" if value else "features computed in 3D")
        elif key == "normalize":
            if value:
                out.append(f"intensities normalised (scale {number(setting.get('normalizeScale', 1))})")
        elif key == "normalizeScale":
            continue
        elif key == "voxelArrayShift":
            out.append("no intensity shift before the energy features" if float(value) == 0 else f"intensities shifted by {number(value)} before the energy features")
        elif key == "distances":
            out.append(f"texture matrices at {'distance' if len(value) == 1 else 'distances'} {_join([number(d) for d in value])}")
        elif key == "symmetricalGLCM":
            out.append("symmetrical GLCM" if value else "asymmetrical GLCM")
        elif key == "weightingNorm":
            out.append(f"GLCM directions weighted by the {value} norm")
        elif key == "gldm_a":
            out.append(f"GLDM dependence threshold {number(value)}")
        elif key == "resegmentRange":
            out.append(_resegmentation(value, setting.get("resegmentMode") or "absolute", setting.get("resegmentSigma")))
        elif key == "resegmentSigma":
            if setting.get("resegmentRange") is None:
                out.append(_resegmentation([-value, value], "sigma", None))
        elif key == "resampledPixelSpacing":
            out.append(f"resampled by PyRadiomics to {spacing(value)}")
        elif key == "interpolator":
            out.append(f"{camel_words(str(value).removeprefix('sitk'))} interpolation")
        elif isinstance(value, bool):
            out.append(f"{camel_words(key)} {'on' if value else 'off'}")
        else:
            out.append(f"{camel_words(key)} {number(value) if not isinstance(value, list | tuple) else _join([number(v) for v in value])}")
    return out


# --------------------------------------------------------------------------- selection steps


def selection_step(step: Mapping[str, object]) -> str:
    """One configured selection step in words (parameters that are not set take the documented defaults)."""
    name = str(step.get("step"))
    p = {k: v for k, v in step.items() if k != "step"}
    if name == "impute":
        return f"imputation of missing values with the training {p.get('strategy', 'median')}"
    if name == "zscore":
        return "z-score standardisation with the training mean and standard deviation (constant features removed)"
    if name == "univariate":
        test = {"auto": "Welch's t-test when a Shapiro-Wilk test did not reject normality in either class, otherwise the Mann-Whitney U test",
                "ttest": "Welch's t-test", "mannwhitney": "the Mann-Whitney U test"}[str(p.get("test", "auto"))]  # fmt: skip
        text = f"a univariate filter ({test}; features with p < {number(p.get('p_threshold', 0.05))} kept"
        if p.get("correction"):
            text += f" after {words(p['correction'])} correction"
        if p.get("min_features"):
            text += f", at least the {number(p['min_features'])} with the smallest p-values"
        return text + ")"
    if name == "correlation":
        method = str(p.get("method", "pearson")).capitalize()
        kept = {"univariate_p": "the feature with the smaller univariate p-value", "auc": "the feature with the higher univariate AUC",
                "order": "the feature listed first"}.get(str(p.get("relevance", "univariate_p")), "the more relevant feature")  # fmt: skip
        return f"a correlation filter (of every pair with an absolute {method} correlation above {number(p.get('threshold', 0.9))}, {kept} was kept)"
    if name == "mrmr":
        return (f"minimum-redundancy maximum-relevance selection of the top {number(p.get('k', 20))} features ({str(p.get('scheme', 'MIQ'))} scheme, "
                f"F-test relevance, {str(p.get('redundancy', 'pearson')).capitalize()} correlation redundancy)")  # fmt: skip
    if name == "univariate_cox":
        if p.get("criterion") == "c_index":
            text = f"a univariate Cox filter (one Cox model per feature, Efron ties; features with Harrell's C-index >= {number(p.get('c_threshold', 0.6))} kept"
        else:
            text = f"a univariate Cox filter (one Cox model per feature, Efron ties; features with Wald p <= {number(p.get('p_threshold', 0.05))} kept"
        if p.get("min_features", 1):
            text += f", at least the {number(p.get('min_features', 1))} most significant"
        return text + ", ordered by significance)"
    if name == "cox_lasso":
        l1 = float(p.get("l1_ratio", 1.0))
        penalty = "LASSO" if l1 == 1 else f"elastic-net (L1 ratio {number(l1)})"
        rule = "the largest penalty within one standard error of the best" if p.get("lambda_rule", "1se") == "1se" else "the penalty with the best score"
        score = "Harrell's C-index" if p.get("scoring") == "c_index" else "cross-validated partial likelihood (Verweij and van Houwelingen)"
        return (f"a {penalty}-penalised Cox model (scikit-survival's Coxnet; {number(p.get('cv', 5))}-fold cross-validation stratified by the event, "
                f"seeded, scored by {score} over the penalty path; {rule}; features with non-zero coefficients kept)")  # fmt: skip
    if name == "lasso":
        penalty = "elastic-net" if p.get("penalty") == "elasticnet" else "LASSO"
        rule = "the largest penalty within one standard error of the best" if p.get("lambda_rule") == "1se" else "the penalty with the best score"
        return (f"{penalty}-penalised logistic regression ({number(p.get('cv', 5))}-fold cross-validated AUC over the penalty path; {rule}; "
                f"features with non-zero coefficients kept)")  # fmt: skip
    return words(name)


def selection_steps(steps: Sequence[Mapping[str, object]]) -> str:
    out = []
    for i, s in enumerate(steps):
        text = selection_step(s)
        after_cox = any(str(prev.get("step")) == "univariate_cox" for prev in steps[:i])
        if s.get("step") == "correlation" and s.get("relevance") == "order" and after_cox:
            # The univariate Cox filter passes features most significant first: "listed first" is the more significant one.
            text = text.replace("the feature listed first", "the one more significant in the univariate Cox filter")
        out.append(text)
    return _join(out)


_STEP_SHORT = {"impute": "imputation", "zscore": "z-scoring", "univariate": "the univariate filter", "correlation": "the correlation filter",
               "mrmr": "mRMR", "lasso": "LASSO", "univariate_cox": "the univariate Cox filter", "cox_lasso": "the Cox LASSO"}  # fmt: skip


def step_short(name: str) -> str:
    base = re.sub(r"_\d+$", "", name)
    return _STEP_SHORT.get(base, words(base))


def hyperparameter(name: str, value: object) -> str:
    """``classifier__C`` = 0.1 -> ``C = 0.1``."""
    key = name.split("__")[-1]
    return f"{key if len(key) <= 2 else words(key)} = {number(value)}"
