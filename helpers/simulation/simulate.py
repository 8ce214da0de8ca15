"""Seeded ground-truth simulator: a complete radiomics study with known answers.

:func:`simulate_study` writes, for any number of patients, an MR-like study
(default) or a CT study (``modality: CT``) that the runner can process end to
end (``python -m helpers simulate``):

* per patient a T1-weighted-like volume, or a CT volume in Hounsfield units
  (NIfTI, optionally also a DICOM series with the acquisition headers of the
  seed studies' scanners and clearly fake identifying values), the tumour mask
  of reader 1 and of reader 2 (the same outline moved by a smooth random
  boundary change of about a millimetre);
* ``patients.csv``: clinical variables (age, sex, grade; some missing values),
  a binary endpoint and a time-to-event endpoint;
* ``data_manifest.csv``, ``acquisition_headers.csv`` and a ``study.yaml`` that
  passes ``python -m helpers validate``;
* ``ground_truth/``: every planted quantity (see below).

What is planted
---------------
A tumour is a lobulated ellipsoid made of K = 3 habitats with distinct mean
intensity and texture: a necrotic core (its volume share is the latent
``necrosis_fraction``), a viable rim and enhancing regions (a smooth random
partition of the non-necrotic tumour; share ``enhancing_share``). The texture
amplitude of the viable and enhancing habitats is ``texture_sd *
exp(heterogeneity_gain * heterogeneity)`` with ``heterogeneity ~ N(0, 1)``.
Around the tumour a peritumoral zone (oedema whose strength is the latent
``oedema``) fades into background tissue.

The binary label is Bernoulli with ``logit p = b0 + s * (b_h * heterogeneity +
b_n * z(necrosis_fraction) + b_o * z(oedema))``, where ``z`` standardises a
latent by its population mean and SD, ``(b_h, b_n, b_o)`` are configured
(default 1, 1, 0: oedema is a visible but non-informative latent), the scale
``s`` is solved so that the population AUC of the true probabilities equals
``target_auc`` (the Bayes ceiling: no model of the images can beat it on
average) and ``b0`` gives the configured prevalence. The time to event is
Weibull with log hazard ratio ``hazard_gain * s * (...)`` (the same latents),
with uniform accrual and administrative censoring.

Scanner effects (per scanner model, each scanner belongs to one centre):
MR: multiplicative scale, additive offset, Rician noise SD, a smooth
multiplicative bias field; CT: an additive HU offset and Gaussian noise whose
SD and in-plane correlation come from the reconstruction kernel (no scale, no
bias field: CT numbers are calibrated). Every scanner writes on its own voxel
grid (in-plane spacing from the published matrix and field of view, slice
spacing from the published slice interval: MR thickness + gap, CT thickness).
The anatomy is defined in physical millimetres and sampled on each scanner's
grid, blurred by a point-spread function of half a voxel (partial volume), so
resolution differs per scanner as it would on write.

CT (``modality: CT``, series ``CT``; seed study 002's kidney tumours): the same
tumour, habitats, texture, latents and label model, in HU (necrotic core about
15, viable 70, enhancing 135 before blur and noise), growing from the pole of a
kidney (35 HU) into perirenal fat (-100 HU), with fat stranding (the oedema
latent) around it and a posterior body wall (muscle 50 HU, then air -1000 HU)
near the edge of the field of view; written as int16 HU (NIfTI) and, with
``dicom``, as CT DICOM (12-bit stored values, RescaleIntercept -1024, KVP, tube
current, pitch, kernel). An MR study's files are byte-identical to those of the
simulator before CT existed (its ``truth.json`` settings leave out the CT keys).

Ground truth (``ground_truth/``): ``truth.json`` (formula, coefficients, scale,
intercept, the population and test-cohort Bayes ceiling AUC, scanner effects
per scanner and centre, habitat intensities, the features expected to be
informative and those expected not to be, and the settings), ``patients.csv``
(per patient: latents, realised habitat fractions, linear predictor,
probability, scanner), ``habitats/<patient>.nii.gz`` (planted habitat label map
1 = necrotic, 2 = viable, 3 = enhancing on the written image grid),
``scanner_protocols.csv`` and ``phi_values.csv`` (the fake identifying values
written into the DICOM headers, which must never reach a report).

Everything is drawn from ``numpy.random.Generator`` streams derived from the
seed (per patient ``[seed, patient index, stream]``, so a patient's images do
not depend on the cohort size); no file holds a time stamp or a random UID, so
the same seed gives byte-identical files. Patients are written one at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml
from pydantic import ValidationError
from scipy import ndimage, optimize, stats

from helpers.errors import (
    SimulationError,  # noqa: F401  (defined in helpers.errors)
)
from helpers.settings.simulation import (
    _LATENTS,
    HABITAT_NAMES,
    SCANNER_PROTOCOLS,
    SERIES,
    CTScannerEffect,
    CTScannerProtocol,
    ScannerEffect,
    ScannerProtocol,
    SimulationSettings,
    scanners_of,
)

__all__ = [
    "SCANNER_PROTOCOLS",
    "ScannerProtocol",
    "ScannerEffect",
    "CTScannerProtocol",
    "CTScannerEffect",
    "SimulationSettings",
    "SimulationError",
    "SimulationResult",
    "HABITAT_NAMES",
    "solve_label_model",
    "simulate_study",
    "expected_informative",
    "READER_VARIABLES",
    "parse_centres",
    "load_settings_file",
]

_REPO = Path(__file__).resolve().parents[2]
#: Repetition and echo time (ms) written for the additional (T2-like) sequences.
_T2_TIMING = (4000.0, 100.0)
#: Display window (HU) of a simulated CT series: the soft-tissue window of the default study.
CT_DISPLAY_WINDOW = (-160, 240)
#: CT values are written as int16 Hounsfield units in this range (12-bit stored values with RescaleIntercept -1024).
_HU_RANGE = (-1024, 3071)
#: Seed stream of a CT patient's surrounding anatomy (kidney, body wall): the patient's index, then this number.
_CT_ANATOMY_STREAM = 100


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(settings)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown setting; remove it or check its spelling")
        else:
            lines.append(f"  - {key}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _settings(value: SimulationSettings | Mapping | None, **overrides: object) -> SimulationSettings:
    try:
        if isinstance(value, SimulationSettings):
            # Only the keys that were set: an override of the modality then brings that modality's defaults.
            return SimulationSettings.model_validate({**value.model_dump(exclude_unset=True), **overrides}) if overrides else value
        return SimulationSettings.model_validate({**dict(value or {}), **overrides})
    except ValidationError as exc:
        raise SimulationError(f"invalid simulation settings:\n{_format_validation(exc)}") from None


# -- the label model -------------------------------------------------------
def _necrosis_moments(s: SimulationSettings) -> tuple[float, float]:
    a, b = s.necrosis_beta
    lo, hi = s.necrosis_range
    return lo + (hi - lo) * a / (a + b), (hi - lo) * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _standardised(latents: Mapping[str, np.ndarray], s: SimulationSettings) -> dict[str, np.ndarray]:
    mu_n, sd_n = _necrosis_moments(s)
    return {
        "heterogeneity": np.asarray(latents["heterogeneity"], float),
        "necrosis_fraction": (np.asarray(latents["necrosis_fraction"], float) - mu_n) / sd_n,
        "oedema": (np.asarray(latents["oedema"], float) - 0.5) / math.sqrt(1 / 12),
    }


def _draw_latents(rng: np.random.Generator, s: SimulationSettings, n: int | None = None) -> dict[str, np.ndarray | float]:
    size = n
    lo, hi = s.necrosis_range
    return {
        "heterogeneity": rng.standard_normal(size),
        "necrosis_fraction": lo + (hi - lo) * rng.beta(*s.necrosis_beta, size),
        "oedema": rng.random(size),
    }


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = stats.rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _population_auc(eta: np.ndarray, b0: float) -> float:
    # Expected AUC of the true probabilities: weight each draw by p (cases) and 1 - p (controls).
    p = 1 / (1 + np.exp(-(b0 + eta)))
    order = np.argsort(eta, kind="stable")
    p, w0 = p[order], 1 - p[order]
    cum0 = np.cumsum(w0) - w0  # control weight strictly below
    return float(np.sum(p * (cum0 + 0.5 * w0)) / (p.sum() * w0.sum()))


def solve_label_model(settings: SimulationSettings | Mapping | None = None, n_draws: int = 100_000) -> dict[str, float]:
    """Scale and intercept of the planted logistic label model.

    The linear predictor ``eta = b_h * heterogeneity + b_n * z(necrosis_fraction)
    + b_o * z(oedema)`` is scaled by ``s`` and shifted by ``b0`` so that, over
    the latent population (Monte Carlo with ``n_draws`` draws from a fixed
    stream), the mean probability equals ``prevalence`` and the AUC of the true
    probabilities equals ``target_auc``.

    Parameters
    ----------
    settings : SimulationSettings or mapping, optional
    n_draws : int
        Monte Carlo draws of the latent population.

    Returns
    -------
    dict
        ``scale``, ``intercept``, ``population_auc`` and ``population_prevalence``.

    Raises
    ------
    SimulationError
        When ``target_auc`` cannot be reached (e.g. above 0.99).
    """
    s = _settings(settings)
    rng = np.random.default_rng([s.seed, 2**31 - 1])
    z = _standardised(_draw_latents(rng, s, n_draws), s)
    eta = sum(s.coefficients.get(k, 0.0) * z[k] for k in _LATENTS)

    def intercept(scale: float) -> float:
        return optimize.brentq(lambda b: float(np.mean(1 / (1 + np.exp(-(b + scale * eta))))) - s.prevalence, -60, 60)

    def gap(scale: float) -> float:
        return _population_auc(scale * eta, intercept(scale)) - s.target_auc

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2
        if hi > 1e3:
            raise SimulationError(f"target_auc {s.target_auc} cannot be reached by the label model; lower it (e.g. 0.9)")
    scale = optimize.brentq(gap, 1e-6, hi, xtol=1e-6)
    b0 = intercept(scale)
    p = 1 / (1 + np.exp(-(b0 + scale * eta)))
    return {"scale": float(scale), "intercept": float(b0), "population_auc": _population_auc(scale * eta, b0),
            "population_prevalence": float(p.mean())}


def expected_informative(features: Sequence[str], series: str = SERIES) -> dict[str, list[str]]:
    """Split feature columns by what the ground truth says about them.

    With the default coefficients the label depends on the tumour's texture
    amplitude (heterogeneity) and its necrotic share, so the informative
    features are the tumour ROI's first-order and texture features of the
    original image (``{series}_tumour_original_{firstorder,glcm,glrlm,glszm,gldm,ngtdm}_*``)
    and any habitat-fraction/ITH column; tumour size and shape are drawn
    independently of the label (``shape`` features are not informative) and
    so is the peritumoral oedema (ring features are not informative, apart
    from partial-volume leakage of the tumour border).

    Parameters
    ----------
    features : sequence of str
        Feature column names (``{series}_{roi}_{imageType}_{class}_{feature}``).

    Returns
    -------
    dict
        ``informative`` and ``non_informative`` name lists (other columns are
        in neither).
    """
    texture = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
    informative, non_informative = [], []
    for f in features:
        if any(f.startswith(f"{series}_tumour_original_{c}_") for c in texture) or f.startswith(f"{series}_habitat") or f.lower().startswith("ith") or "_ith" in f.lower():
            informative.append(f)
        elif f.startswith(f"{series}_tumour_original_shape_") or f.startswith(f"{series}_ring"):
            non_informative.append(f)
    return {"informative": informative, "non_informative": non_informative}


# -- one patient -----------------------------------------------------------
def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: Sequence[float]) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to mean 0, SD 1."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma_vox, mode="reflect")
    sd = f.std()
    return (f - f.mean()) / (sd if sd > 0 else 1.0)


@dataclass
class _Patient:
    image: np.ndarray  # z, y, x float intensities after scanner effects
    mask: np.ndarray
    mask2: np.ndarray
    habitats: np.ndarray
    fractions: dict[str, float]
    volume_ml: float
    extra_images: dict[str, np.ndarray]  # additional sequences (series name -> z, y, x intensities)


def _clean_intensities(habitats: np.ndarray, dist: np.ndarray, peri: np.ndarray, background_field: np.ndarray, texture: np.ndarray,
                       amp: float, oedema: float, background, oedema_gain: float, tissues, width_mm: float) -> np.ndarray:
    """Noise-free intensities of one contrast: background, peritumoral oedema, habitats with texture."""
    clean = background.mean + background.texture_sd * background_field
    clean[peri] += oedema_gain * oedema * (1 - dist[peri] / width_mm)
    for label, name in HABITAT_NAMES.items():
        t = tissues[name]
        sel = habitats == label
        sd = t.texture_sd * (amp if name != "necrotic" else 1.0)
        clean[sel] = t.mean + sd * texture[sel]
    return clean


def _scanner_signal(rng: np.random.Generator, clean: np.ndarray, grids: tuple[np.ndarray, np.ndarray, np.ndarray], s: SimulationSettings,
                    effect: ScannerEffect) -> np.ndarray:
    """Point-spread blur, smooth multiplicative bias field (random linear + quadratic profile), scale, offset, Rician noise."""
    Z, Y, X = grids
    if s.psf_sigma_voxels > 0:
        clean = ndimage.gaussian_filter(clean, s.psf_sigma_voxels, mode="nearest")
    ext = np.array(s.fov_mm[::-1]) / 2
    cz, cy, cx = Z / ext[0], Y / ext[1], X / ext[2]
    g = rng.standard_normal(6)
    bias = g[0] * cx + g[1] * cy + 0.5 * g[2] * cz + 0.5 * g[3] * cx * cy + 0.5 * g[4] * (cx**2 - 1 / 3) + 0.5 * g[5] * (cy**2 - 1 / 3)
    bias = 1 + effect.bias_amplitude * bias / max(float(np.abs(bias).max()), 1e-9)
    signal = effect.scale * bias * clean + effect.offset
    n1, n2 = rng.standard_normal((2, *clean.shape)) * effect.noise_sd
    return np.sqrt((signal + n1) ** 2 + n2**2)


def _ct_clean_intensities(rng: np.random.Generator, habitats: np.ndarray, dist: np.ndarray, peri: np.ndarray, background_field: np.ndarray,
                          texture: np.ndarray, amp: float, oedema: float, s: SimulationSettings, grids: tuple[np.ndarray, np.ndarray, np.ndarray],
                          tumour_centre: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    """Noise-free HU of a CT patient: perirenal fat (``background``), the kidney the tumour grows from, the body wall
    (muscle, then air), fat stranding around the tumour (``oedema_gain`` x oedema, fading over the peritumoral zone)
    and the tumour habitats with their texture (the same planted habitats and texture as an MR study)."""
    a = s.ct_anatomy
    Z, Y, X = grids
    # The body wall lies posterior (+y in LPS: the bottom of an axial slice), at a random angle within 60 degrees.
    phi = np.pi / 2 + rng.uniform(-np.pi / 3, np.pi / 3)
    nx, ny = math.cos(phi), math.sin(phi)
    wall = X * nx + Y * ny + a.wall_wobble_mm * _smooth_field(rng, habitats.shape, 10.0 / spacing_zyx)
    # The kidney: an ellipsoid whose centre lies kidney_offset_mm from the tumour centre, away from the wall.
    kx, ky = tumour_centre[0] - a.kidney_offset_mm * nx, tumour_centre[1] - a.kidney_offset_mm * ny
    du, dv = (X - kx) * nx + (Y - ky) * ny, -(X - kx) * ny + (Y - ky) * nx
    ax = a.kidney_semi_axes_mm
    kidney = (du / ax[0]) ** 2 + (dv / ax[1]) ** 2 + ((Z - tumour_centre[2]) / ax[2]) ** 2 <= 1.0
    muscle = (wall > a.wall_distance_mm) & (wall <= a.wall_distance_mm + a.muscle_thickness_mm)
    air = wall > a.wall_distance_mm + a.muscle_thickness_mm
    clean = s.background.mean + s.background.texture_sd * background_field
    for sel, tissue in ((kidney & ~muscle & ~air, a.kidney), (muscle, a.muscle)):
        clean[sel] = tissue.mean + tissue.texture_sd * background_field[sel]
    clean[air] = a.air_hu
    stranding = peri & ~air
    clean[stranding] += s.oedema_gain * oedema * (1 - dist[stranding] / s.peritumoral_width_mm)
    for label, name in HABITAT_NAMES.items():
        t = s.habitats[name]
        sel = habitats == label
        sd = t.texture_sd * (amp if name != "necrotic" else 1.0)
        clean[sel] = t.mean + sd * texture[sel]
    return clean


def _ct_scanner_signal(rng: np.random.Generator, clean: np.ndarray, s: SimulationSettings, effect: CTScannerEffect,
                       spacing_zyx: np.ndarray) -> np.ndarray:
    """Point-spread blur, the scanner's HU offset and the kernel's Gaussian noise (correlated in-plane)."""
    if s.psf_sigma_voxels > 0:
        clean = ndimage.gaussian_filter(clean, s.psf_sigma_voxels, mode="nearest")
    noise = rng.standard_normal(clean.shape)
    if effect.noise_correlation_mm > 0:
        noise = ndimage.gaussian_filter(noise, (0.0, *(effect.noise_correlation_mm / spacing_zyx[1:])), mode="reflect")
    sd = float(noise.std())
    return clean + effect.hu_offset + noise * (effect.noise_sd / (sd if sd > 0 else 1.0))


def _simulate_volume(rng: np.random.Generator, lat: Mapping[str, float], geom: dict, s: SimulationSettings,
                     effect: ScannerEffect | CTScannerEffect, extra_rngs: Mapping[str, np.random.Generator] | None = None,
                     anatomy_rng: np.random.Generator | None = None) -> _Patient:
    spacing, size, origin = geom["spacing"], geom["size"], geom["origin"]
    sp_zyx = np.array(spacing[::-1])
    shape = tuple(size[::-1])
    zz, yy, xx = (origin[2 - a] + np.arange(shape[a]) * sp_zyx[a] for a in range(3))
    Z, Y, X = np.meshgrid(zz, yy, xx, indexing="ij")
    # Tumour: a lobulated ellipsoid with a random centre, size and orientation (about z).
    r = rng.uniform(*s.tumour_radius_mm)
    axes = r * rng.uniform(0.8, 1.2, 3)
    axes[2] = min(axes[2], 0.5 * s.fov_mm[2] - 2 * spacing[2] - s.peritumoral_width_mm)
    centre = rng.uniform(-5, 5, 3)
    theta = rng.uniform(0, np.pi)
    dx, dy, dz = X - centre[0], Y - centre[1], Z - centre[2]
    u, v = np.cos(theta) * dx + np.sin(theta) * dy, -np.sin(theta) * dx + np.cos(theta) * dy
    rho = np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (dz / axes[2]) ** 2)
    smooth_mm = 6.0
    lob = _smooth_field(rng, shape, smooth_mm / sp_zyx)
    rho_l = rho * (1 + s.lobulation * lob)
    mask = rho_l <= 1.0
    if mask.sum() < 20:
        raise SimulationError("a simulated tumour has fewer than 20 voxels; enlarge tumour_radius_mm or the resolution")
    # Second reader: the same outline moved by a smooth displacement of about reader2_boundary_sd_mm.
    disp = _smooth_field(rng, shape, smooth_mm / sp_zyx) * s.reader2_boundary_sd_mm
    mask2 = rho_l <= 1.0 + disp / r
    if not mask2.any():
        mask2 = mask.copy()
    # Habitats: necrotic core (share = necrosis_fraction), then enhancing vs viable by a smooth random field.
    core_field = rho_l + 0.08 * _smooth_field(rng, shape, 4.0 / sp_zyx)
    tum_vals = core_field[mask]
    n_core = int(round(lat["necrosis_fraction"] * tum_vals.size))
    habitats = np.zeros(shape, dtype=np.uint8)
    hab_t = np.full(tum_vals.size, 2, dtype=np.uint8)
    if n_core > 0:
        hab_t[np.argsort(tum_vals, kind="stable")[:n_core]] = 1
    enh_field = _smooth_field(rng, shape, 5.0 / sp_zyx)[mask]
    rest = np.flatnonzero(hab_t == 2)
    n_enh = int(round(lat["enhancing_share"] * rest.size))
    if n_enh > 0:
        hab_t[rest[np.argsort(-enh_field[rest], kind="stable")[:n_enh]]] = 3
    habitats[mask] = hab_t
    # Intensities: background, peritumoral oedema fading over peritumoral_width_mm, habitats with texture.
    tex_sigma = s.texture_correlation_mm / sp_zyx
    background_field = _smooth_field(rng, shape, 4.0 / sp_zyx)
    dist = ndimage.distance_transform_edt(~mask, sampling=sp_zyx)
    peri = (~mask) & (dist <= s.peritumoral_width_mm)
    texture = _smooth_field(rng, shape, tex_sigma)
    amp = math.exp(s.heterogeneity_gain * lat["heterogeneity"])
    if s.modality == "CT":
        if anatomy_rng is None:
            raise SimulationError("a CT patient needs its anatomy stream (anatomy_rng)")
        clean = _ct_clean_intensities(anatomy_rng, habitats, dist, peri, background_field, texture, amp, lat["oedema"], s, (Z, Y, X),
                                      centre, sp_zyx)
        image = _ct_scanner_signal(rng, clean, s, effect, sp_zyx)
    else:
        clean = _clean_intensities(habitats, dist, peri, background_field, texture, amp, lat["oedema"], s.background, s.oedema_gain,
                                   s.habitats, s.peritumoral_width_mm)
        image = _scanner_signal(rng, clean, (Z, Y, X), s, effect)
    # Additional sequences: the same anatomy and texture pattern with their own contrast, bias field and noise (own streams,
    # so the first series is the same with or without them).
    extra_images = {}
    for name, contrast in s.extra_sequences.items():
        clean_k = _clean_intensities(habitats, dist, peri, background_field, texture, amp, lat["oedema"], contrast.background,
                                     contrast.oedema_gain, contrast.habitats, s.peritumoral_width_mm)
        extra_images[name] = _scanner_signal((extra_rngs or {})[name], clean_k, (Z, Y, X), s, effect)
    counts = np.bincount(habitats[mask], minlength=4)[1:]
    fractions = {f"fraction_{HABITAT_NAMES[k + 1]}": float(counts[k] / counts.sum()) for k in range(3)}
    return _Patient(image, mask.astype(np.uint8), mask2.astype(np.uint8), habitats, fractions, float(mask.sum() * np.prod(spacing) / 1000),
                    extra_images)


# -- writing -------------------------------------------------------------------
def _write_nifti(array: np.ndarray, spacing, origin, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True)


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    # The entropy string predates the package layout; kept so simulated UIDs stay the same across versions.
    return generate_uid(entropy_srcs=["helpers.simulate", *(str(p) for p in parts)])


def _fake_phi(seed: int, index: int, patient: str, centre: str) -> dict[str, str]:
    """Deterministic, clearly fake identifying values (for the PHI tests: never in a report)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}/{index}".encode()).digest()[:8], "little")
    year, month, day = 1940 + h % 50, 1 + (h >> 8) % 12, 1 + (h >> 16) % 28
    return {
        "PatientName": f"FAKE^SIMULATED{index + 1:05d}",
        "PatientID": f"FAKEMRN{h % 10**9:09d}",
        "PatientBirthDate": f"{year:04d}{month:02d}{day:02d}",
        "InstitutionName": f"FAKE {centre.upper()} SIMULATION HOSPITAL",
        "AccessionNumber": f"FAKEACC{(h >> 20) % 10**8:08d}",
        "ReferringPhysicianName": f"FAKE^REFERRER{(h >> 40) % 1000:03d}",
        "StudyDate": f"{2015 + h % 8:04d}{1 + (h >> 12) % 12:02d}{1 + (h >> 24) % 28:02d}",
    }


def _write_dicom_series(pixels: np.ndarray, spacing, origin, folder: Path, protocol: ScannerProtocol | CTScannerProtocol,
                        phi: dict[str, str], seed: int, patient: str, series: str = SERIES, series_number: int = 1) -> None:
    """One DICOM file per slice: an MR series, or (for a CT protocol) a CT series of 12-bit stored values with
    RescaleIntercept -1024 and RescaleSlope 1 (``pixels`` in HU) and the scanner's tube voltage, current, pitch and kernel."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

    ct = protocol.modality == "CT"
    sop_class = CTImageStorage if ct else MRImageStorage
    folder.mkdir(parents=True, exist_ok=True)
    # The first series keeps the UIDs it always had; other sequences get their own series and instance UIDs in the same study
    # and frame of reference (co-registered).
    own = () if series_number == 1 else (series,)
    study_uid, frame_uid = (_uid(seed, patient, k) for k in ("study", "frame"))
    series_uid = _uid(seed, patient, "series", *own)
    impl_uid = _uid("implementation")
    for k in range(pixels.shape[0]):
        sop_uid = _uid(seed, patient, "sop", *own, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = impl_uid
        meta.ImplementationVersionName = "HELPERS_SIM"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if ct else ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = phi["StudyDate"]
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.AccessionNumber = phi["AccessionNumber"]
        ds.Modality = "CT" if ct else "MR"
        ds.Manufacturer = protocol.manufacturer
        ds.InstitutionName = phi["InstitutionName"]
        ds.ReferringPhysicianName = phi["ReferringPhysicianName"]
        ds.StudyDescription = "SIMULATED STUDY (helpers.simulate)"
        ds.SeriesDescription = "CT abdomen simulated" if ct else "T1WI simulated" if series == SERIES else f"{series} simulated"
        ds.ManufacturerModelName = protocol.model
        ds.PatientName = phi["PatientName"]
        ds.PatientID = phi["PatientID"]
        ds.PatientBirthDate = phi["PatientBirthDate"]
        ds.PatientSex = "O"
        if ct:
            # Contiguous reconstruction: the (scaled) slice thickness is the slice interval.
            ds.SliceThickness = f"{spacing[2]:.4g}"
            ds.KVP = f"{protocol.kvp:g}"
            ds.XRayTubeCurrent = round(protocol.tube_current_mA)
            ds.SpiralPitchFactor = float(protocol.pitch)
            ds.ConvolutionKernel = protocol.kernel
            ds.PatientPosition = "FFS"
        else:
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.MRAcquisitionType = "2D"
            ds.SliceThickness = f"{protocol.slice_thickness_mm * spacing[2] / (protocol.slice_thickness_mm + protocol.slice_gap_mm):.4g}"
            ds.RepetitionTime = f"{protocol.tr_ms if series == SERIES else _T2_TIMING[0]:g}"
            ds.EchoTime = f"{protocol.te_ms if series == SERIES else _T2_TIMING[1]:g}"
            ds.MagneticFieldStrength = f"{protocol.field_strength_T:g}"
            ds.SpacingBetweenSlices = f"{spacing[2]:.4g}"
            ds.FlipAngle = "90"
            ds.AcquisitionMatrix = [protocol.matrix[0], 0, 0, protocol.matrix[1]]
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{origin[0]:.6g}", f"{origin[1]:.6g}", f"{origin[2] + k * spacing[2]:.6g}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.SliceLocation = f"{origin[2] + k * spacing[2]:.6g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
        ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]  # row spacing (y), column spacing (x)
        if ct:
            # Stored value = HU + 1024 in 12 bits (0..4095), as CT scanners write it; readers apply the rescale.
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
            ds.WindowCenter, ds.WindowWidth = "40", "400"
            stored = np.clip(pixels[k].astype(np.int32) - _HU_RANGE[0], 0, 4095)
            ds.PixelData = np.ascontiguousarray(stored.astype("<u2")).tobytes()
        else:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.ascontiguousarray(pixels[k].astype("<u2")).tobytes()
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)


def _header_row(pid: str, series: str, protocol: ScannerProtocol | CTScannerProtocol, spacing, size) -> dict[str, object]:
    """One row of ``acquisition_headers.csv`` (DICOM keywords as columns): the values the DICOM series holds."""
    if protocol.modality == "CT":
        return {"patient": pid, "series": series, "Modality": "CT", "Manufacturer": protocol.manufacturer,
                "ManufacturerModelName": protocol.model, "KVP": protocol.kvp, "XRayTubeCurrent": protocol.tube_current_mA,
                "SpiralPitchFactor": protocol.pitch, "ConvolutionKernel": protocol.kernel, "SliceThickness": spacing[2],
                "SpacingBetweenSlices": spacing[2], "PixelSpacing": f"['{spacing[1]:g}', '{spacing[0]:g}']",
                "Rows": size[1], "Columns": size[0], "n_slices": size[2]}
    return {"patient": pid, "series": series, "Modality": "MR", "Manufacturer": protocol.manufacturer,
            "ManufacturerModelName": protocol.model, "MagneticFieldStrength": protocol.field_strength_T,
            "RepetitionTime": protocol.tr_ms if series == SERIES else _T2_TIMING[0],
            "EchoTime": protocol.te_ms if series == SERIES else _T2_TIMING[1], "ScanningSequence": "SE", "MRAcquisitionType": "2D",
            "SliceThickness": round(protocol.slice_thickness_mm * spacing[2] / (protocol.slice_thickness_mm + protocol.slice_gap_mm), 4),
            "SpacingBetweenSlices": spacing[2], "PixelSpacing": f"['{spacing[1]:g}', '{spacing[0]:g}']",
            "Rows": size[1], "Columns": size[0], "n_slices": size[2]}


def _sha(path: Path) -> str:
    from helpers.imaging.io import sha256_file

    return sha256_file(path)


@dataclass(frozen=True)
class SimulationResult:
    """Where a simulated study was written and its headline ground truth."""

    out_dir: Path
    study_yaml: Path
    manifest: Path
    patient_table: Path
    truth_json: Path
    n_patients: int
    bayes_auc_test: float
    population_auc: float


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out} is a file; give a folder to write the study into")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SimulationError(f"--out {out} exists and is not empty; choose a new folder (or --overwrite a previous simulation)")
        if not (out / "ground_truth" / "truth.json").is_file():
            raise SimulationError(f"--overwrite refused: {out} does not hold a previous simulation (no ground_truth/truth.json)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _cohorts(s: SimulationSettings, scanner_of: list[str], centre_of: list[str]) -> list[str]:
    n = len(scanner_of)
    cohort = ["training"] * n
    if s.split == "centre":
        cohort = ["training" if c in s.train_centres else "validation" if c in s.validation_centres else "external_test" for c in centre_of]
        if not s.validation_fraction:
            return cohort
    rng = np.random.default_rng([s.seed, 2**31 - 2])
    for centre, sc in s.scanners:
        if s.split == "centre" and centre not in s.train_centres:
            continue
        idx = [i for i in range(n) if scanner_of[i] == sc]
        # Split 'centre': the test cohort is the other centres; a validation share may still come from the training centres.
        n_test = int(round(s.test_fraction * len(idx))) if s.split == "random" else 0
        order = rng.permutation(idx)
        for i in order[:n_test]:
            cohort[int(i)] = "external_test"
        # The validation share is taken after the test share from the same permutation, so adding a validation cohort
        # leaves the external test cohort (and the seeded draws) unchanged.
        n_val = int(round(s.validation_fraction * len(idx)))
        for i in order[n_test:n_test + n_val]:
            cohort[int(i)] = "validation"
    return cohort


def _study_yaml(s: SimulationSettings, train_scanners: int) -> dict:
    nb = Path(s.notebooks_dir).resolve() if s.notebooks_dir else _REPO / "notebooks"
    step = lambda name, file, **kw: {"name": name, "notebook": str(nb / file), **kw}  # noqa: E731
    first = s.series
    all_series = [first, *s.extra_sequences]
    harmonization = [{"series": x, "batch_field": "model", "unseen_batch": "reference"} for x in all_series] if train_scanners > 1 else []
    cohorts = {"training": {"role": "train", "description": "simulated training cohort"}}
    if s.validation_fraction or s.validation_centres:
        cohorts["validation"] = {"role": "validation", "description": "simulated internal validation cohort"}
    cohorts["external_test"] = {"role": "test", "description": "simulated external test cohort"}
    if s.modality == "CT":
        series = {first: {"modality": "CT", "display_window": list(CT_DISPLAY_WINDOW),
                          "description": "simulated contrast-enhanced CT of a kidney tumour, HU (scanner protocols in the range of seed study 002)"}}
    else:
        series = {SERIES: {"modality": "MR", "description": "simulated T1WI (scanner protocols of seed study 000)"}}
    series.update({name: {"modality": "MR", "description": c.description} for name, c in s.extra_sequences.items()})
    # Discretisation: a fixed bin width in HU for CT (calibrated intensities), a fixed bin count for MR (arbitrary units).
    discretisation = {"binWidth": 25} if s.modality == "CT" else {"binCount": 32}
    # Subgroups: scanner model, and MR field strength or the CT centre.
    subgroups = [{"series": first, "field": "model"}, {"series": first, "field": "centre" if s.modality == "CT" else "field_strength_T"}]
    validation_rule = ""
    if s.validation_fraction:
        where = "training-centre scanner's" if s.split == "centre" else "scanner's"
        validation_rule = f"; a random {s.validation_fraction:g} of each {where} patients form the internal validation cohort"
    elif s.validation_centres:
        validation_rule = f"; patients of centres {list(s.validation_centres)} form the internal validation cohort"
    return {
        "study": s.study,
        "seed": s.seed,
        "manifest": "data_manifest.csv",
        "patient_table": "patients.csv",
        "patient_id_column": "patient",
        "acquisition_headers": "acquisition_headers.csv",
        "cohort_rule": (f"Simulated (helpers.simulation.simulate, seed {s.seed}): " + (
            f"a random {s.test_fraction:g} of each scanner's patients form the external test cohort"
            if s.split == "random" else f"patients of centres {list(s.train_centres)} form the training cohort, the others the external test")
            + validation_rule),
        "cohorts": cohorts,
        "series": series,
        "labels": {"tumour": 1},
        "endpoints": {"binary": "label", "time": "time_months", "event": "event"},
        "clinical": {"continuous": ["age"], "categorical": ["grade", "sex"]},
        **({"reader_scores": {"table": "reader_scores.csv", "variables": dict(READER_VARIABLES)}} if s.reader_scores else {}),
        "survival": {"horizons": [12, 24, 36, 48], "rsf_trees": 100},
        "extraction": {
            "presets": ["ibsi"],
            "rois": {"tumour": {"kind": "tumour"}, "ring5mm": {"kind": "ring", "width_mm": 5}},
            "series_settings": {x: dict(discretisation) for x in all_series},
            "habitats": {"series": [first], "k_range": [3, 3], "max_voxels_per_patient": 2000, "ith_k_range": [2, 4]},
            "stability": {"perturbation": {"mode": "dilate", "radius_mm": 1.0}},
            "workers": 2,
        },
        "signature": {
            "preset": "ibsi",
            "icc": {"icc_type": "ICC(A,1)", "threshold": 0.75, "ci_bound": "point"},
            "harmonization": harmonization,
            "steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05}, {"step": "correlation", "threshold": 0.9},
                      {"step": "mrmr", "k": 20}, {"step": "lasso", "lambda_rule": "1se", "random_state": s.seed}],
        },
        "models": {
            "algorithms": ["logistic", "svm", "random_forest"],
            "search": "none",
            "cv": 5,
            "grid_steps": [{"step": "zscore"}, {"step": "univariate", "p_threshold": 0.05, "min_features": 2},
                           {"step": "correlation", "threshold": 0.9}, {"step": "mrmr", "k": 10}],
            "final_algorithm": "logistic",
        },
        "statistics": {"subgroups": subgroups, "n_bootstrap": 500},
        "reports_dir": "reports",
        "steps": [
            step("acquisition_qc", "01_acquisition_qc.ipynb", per_cohort=True),
            step("feature_extraction", "03_feature_extraction.ipynb", per_cohort=False),
            step("signature", "04_signature.ipynb", per_cohort=False, depends_on=["feature_extraction"]),
            step("models", "05_models.ipynb", per_cohort=False, depends_on=["signature"]),
            step("statistics", "06_statistics.ipynb", per_cohort=False, depends_on=["models"]),
            step("supplement", "07_supplement.ipynb", per_cohort=False,
                 depends_on=["acquisition_qc", "feature_extraction", "signature", "models", "statistics"]),
        ],
    }


#: The semantic variables of ``reader_scores.csv`` and their kinds (as ``reader_scores.variables`` of a study config takes them).
READER_VARIABLES = {"necrosis_grade": "ordinal", "enhancement_pattern": "nominal", "margin": "nominal", "longest_diameter_mm": "continuous"}


def _reader_scores(s: SimulationSettings, ids: list[str], truth_rows: list[dict]) -> pd.DataFrame:
    """Two readers' semantic scores per patient, read from the planted anatomy with reader-specific errors.

    necrosis_grade: the necrotic share in quartile-like grades 0-3 (boundaries 0.1 / 0.25 / 0.4 of the tumour),
    read with a reader error of SD 0.05; enhancement_pattern: heterogeneous when the enhancing share of the viable
    tumour exceeds 0.5 (error SD 0.08); margin: lobulated when the patient's heterogeneity latent exceeds 0.5 (error
    SD 0.4, a subjective call); longest diameter: from the tumour volume as a sphere, with a 4% relative error.
    """
    rng = np.random.default_rng([s.seed, 2**31 - 5])
    rows = []
    for reader in ("reader_1", "reader_2"):
        for pid, t in zip(ids, truth_rows, strict=True):
            necrosis = t["fraction_necrotic"] + rng.normal(0, 0.05)
            enhancing = t["fraction_enhancing"] / max(t["fraction_enhancing"] + t["fraction_viable"], 1e-9) + rng.normal(0, 0.08)
            diameter = 2 * (3 * t["tumour_volume_ml"] * 1000 / (4 * math.pi)) ** (1 / 3) * (1 + rng.normal(0, 0.04))
            rows.append({"patient": pid, "reader": reader, "necrosis_grade": int(np.searchsorted([0.1, 0.25, 0.4], necrosis)),
                         "enhancement_pattern": "heterogeneous" if enhancing > 0.5 else "homogeneous",
                         "margin": "lobulated" if t["heterogeneity"] + rng.normal(0, 0.4) > 0.5 else "smooth",
                         "longest_diameter_mm": round(float(diameter), 1)})
    return pd.DataFrame(rows)


def _json_safe(value: object) -> object:
    """NaN (e.g. an AUC of a one-class cohort) as null: strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n", float_format="%.6g")


def simulate_study(out_dir: str | Path, settings: SimulationSettings | Mapping | None = None, overwrite: bool = False,
                   **overrides: object) -> SimulationResult:
    """Write a complete simulated study with its ground truth.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into; must be absent or empty (or hold a previous
        simulation and ``overwrite=True``).
    settings : SimulationSettings or mapping, optional
        Simulation parameters (defaults: :class:`SimulationSettings`).
    overwrite : bool
        Replace a previous simulation in ``out_dir``.
    **overrides
        Settings given as keywords (e.g. ``patients=20, seed=3``) override
        ``settings``.

    Returns
    -------
    SimulationResult

    Raises
    ------
    SimulationError
        For invalid settings or an unusable output folder.
    """
    s = _settings(settings, **overrides)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    label_model = solve_label_model(s)
    n = s.patients
    width = max(4, len(str(n)))
    ids = [f"SIM{i + 1:0{width}d}" for i in range(n)]
    pairs = s.scanners
    # Patient-level draws (scalars only; volumes are made one patient at a time below).
    latents, scanner_of, centre_of = [], [], []
    for i in range(n):
        rng = np.random.default_rng([s.seed, i, 0])
        c, sc = pairs[int(rng.integers(len(pairs)))]
        lat = {k: float(v) for k, v in _draw_latents(rng, s).items()}
        lat["enhancing_share"] = float(rng.uniform(*s.enhancing_share_range))
        latents.append(lat)
        scanner_of.append(sc)
        centre_of.append(c)
    cohort = _cohorts(s, scanner_of, centre_of)
    wanted = ("training", "external_test", *(("validation",) if s.validation_fraction or s.validation_centres else ()))
    if any(c not in cohort for c in wanted):
        raise SimulationError(f"{n} patients leave a cohort empty with split '{s.split}'; simulate more patients or change the split")
    z = _standardised({k: np.array([lat[k] for lat in latents]) for k in _LATENTS}, s)
    eta = sum(s.coefficients.get(k, 0.0) * z[k] for k in _LATENTS)
    lin = label_model["intercept"] + label_model["scale"] * eta
    prob = 1 / (1 + np.exp(-lin))
    out_rng = np.random.default_rng([s.seed, 2**31 - 3])
    y = (out_rng.random(n) < prob).astype(int)
    # Time to event: Weibull, hazard ratio exp(hazard_gain * scale * eta); uniform accrual + administrative censoring.
    k_w = s.weibull_shape
    lam = s.median_event_free_months / math.log(2) ** (1 / k_w)
    t_event = lam * (-np.log(out_rng.random(n)) / np.exp(s.hazard_gain * label_model["scale"] * eta)) ** (1 / k_w)
    t_cens = s.followup_months + out_rng.uniform(0, s.accrual_months, n) if s.accrual_months else np.full(n, s.followup_months)
    t_cens = np.minimum(t_cens, s.followup_months + s.accrual_months)
    time = np.round(np.minimum(t_event, t_cens), 2)
    event = (t_event <= t_cens).astype(int)
    # Clinical: age independent of the label, grade tied to the linear predictor, sex random; some values missing.
    age = np.round(out_rng.normal(58, 12, n), 1)
    grade_score = lin - label_model["intercept"] + out_rng.normal(0, 1.0, n)
    grade = np.where(grade_score > 0.8, "G3", np.where(grade_score > -0.8, "G2", "G1")).astype(object)
    sex = np.where(out_rng.random(n) < 0.5, "F", "M")
    age_f = age.astype(float)
    age_f[out_rng.random(n) < s.missing_rate] = np.nan
    grade[out_rng.random(n) < s.missing_rate] = ""
    marker = None
    if s.marker is not None:
        # Own stream: adding the marker changes no other draw.
        m = s.marker
        marker_rng = np.random.default_rng([s.seed, 2**31 - 4])
        marker_lin = m.intercept + m.gain * label_model["scale"] * eta + m.noise_sd * marker_rng.standard_normal(n)
        marker = np.round(100 / (1 + np.exp(-marker_lin)), 1)

    series = s.series
    manifest_rows, header_rows, truth_rows, phi_rows = [], [], [], []
    for i, pid in enumerate(ids):
        sc, centre = scanner_of[i], centre_of[i]
        protocol, effect = SCANNER_PROTOCOLS[sc], s.scanner_effects[sc]
        spacing, size = s.grid(sc)
        origin = tuple(-0.5 * (n_ - 1) * sp for n_, sp in zip(size, spacing, strict=True))
        rng = np.random.default_rng([s.seed, i, 1])
        extra_rngs = {name: np.random.default_rng([s.seed, i, 2 + j]) for j, name in enumerate(s.extra_sequences)}
        anatomy_rng = np.random.default_rng([s.seed, i, _CT_ANATOMY_STREAM]) if s.modality == "CT" else None
        pat = _simulate_volume(rng, latents[i], {"spacing": spacing, "size": size, "origin": origin}, s, effect, extra_rngs, anatomy_rng)
        low, high = _HU_RANGE if s.modality == "CT" else (0, 32767)
        pixels = np.clip(np.round(pat.image), low, high).astype(np.int16)
        img_rel, mask_rel, mask2_rel = (f"images/{pid}/{series}_{n_}.nii.gz" for n_ in ("image", "mask", "mask_reader2"))
        _write_nifti(pixels, spacing, origin, out / img_rel)
        _write_nifti(pat.mask, spacing, origin, out / mask_rel)
        _write_nifti(pat.mask2, spacing, origin, out / mask2_rel)
        _write_nifti(pat.habitats, spacing, origin, out / "ground_truth" / "habitats" / f"{pid}.nii.gz")
        image_ref = img_rel
        phi = _fake_phi(s.seed, i, pid, centre)
        if s.dicom:
            image_ref = f"dicom/{pid}/{series}"
            _write_dicom_series(pixels, spacing, origin, out / image_ref, protocol, phi, s.seed, pid, series=series)
            phi_rows.append({"patient": pid, **phi})
        images = {series: image_ref}
        for name, extra in pat.extra_images.items():
            extra_pixels = np.clip(np.round(extra), 0, 32767).astype(np.int16)
            images[name] = f"images/{pid}/{name}_image.nii.gz"
            _write_nifti(extra_pixels, spacing, origin, out / images[name])
            if s.dicom:
                images[name] = f"dicom/{pid}/{name}"
                _write_dicom_series(extra_pixels, spacing, origin, out / images[name], protocol, phi, s.seed, pid, series=name,
                                    series_number=2 + list(s.extra_sequences).index(name))
            del extra_pixels
        for name, ref in images.items():
            # Every sequence is co-registered with the T1WI: one tumour outline (and second reading) for all of them.
            manifest_rows.append({"patient": pid, "cohort": cohort[i], "centre": centre, "scanner": f"{protocol.manufacturer} {protocol.model}",
                                  "series": name, "image": ref, "mask": mask_rel, "image_sha256": _sha(out / ref),
                                  "mask_sha256": _sha(out / mask_rel), "mask_reader2": mask2_rel})
            header_rows.append(_header_row(pid, name, protocol, spacing, size))
        truth_rows.append({"patient": pid, "cohort": cohort[i], "centre": centre, "scanner": sc, **latents[i], **pat.fractions,
                           "tumour_volume_ml": pat.volume_ml, "linear_predictor": float(lin[i]), "probability": float(prob[i]),
                           "label": int(y[i])})
        del pat, pixels

    if s.reader_scores:
        _write_csv(_reader_scores(s, ids, truth_rows), out / "reader_scores.csv")
    _write_csv(pd.DataFrame(manifest_rows), out / "data_manifest.csv")
    _write_csv(pd.DataFrame(header_rows), out / "acquisition_headers.csv")
    patients = pd.DataFrame({"patient": ids, "age": age_f, "sex": sex, "grade": grade, "label": y, "time_months": time, "event": event})
    if marker is not None:
        patients[s.marker.column] = marker
    _write_csv(patients, out / "patients.csv")
    gt = out / "ground_truth"
    truth_df = pd.DataFrame(truth_rows)
    _write_csv(truth_df, gt / "patients.csv")
    proto_rows = [{"centre": c, "scanner": sc, **SCANNER_PROTOCOLS[sc].model_dump(mode="json"),
                   "simulated_spacing_mm": list(s.grid(sc)[0]), "simulated_size": list(s.grid(sc)[1]),
                   **{f"effect_{k}": v for k, v in s.scanner_effects[sc].model_dump().items()}} for c, sc in pairs]
    _write_csv(pd.DataFrame(proto_rows), gt / "scanner_protocols.csv")
    if phi_rows:
        _write_csv(pd.DataFrame(phi_rows), gt / "phi_values.csv")
    test = np.array([c == "external_test" for c in cohort])
    train = np.array([c == "training" for c in cohort])
    bayes_test = _auc(prob[test], y[test])
    train_scanners = len({sc for sc, c in zip(scanner_of, cohort, strict=True) if c == "training"})
    truth = {
        "generator": "helpers.simulation.simulate",
        "seed": s.seed,
        "n_patients": n,
        "series": series,
        **({"modality": "CT", "intensity_unit": "HU"} if s.modality == "CT" else {}),
        "habitat_labels": {str(k): v for k, v in HABITAT_NAMES.items()},
        "label_model": {
            "formula": "logit P(label=1) = intercept + scale * (" + " + ".join(
                f"{s.coefficients.get(k, 0.0):g} * z({k})" for k in _LATENTS) + ")",
            "standardisation": {"heterogeneity": {"mean": 0.0, "sd": 1.0},
                                "necrosis_fraction": dict(zip(("mean", "sd"), _necrosis_moments(s), strict=True)),
                                "oedema": {"mean": 0.5, "sd": math.sqrt(1 / 12)}},
            "coefficients": {k: s.coefficients.get(k, 0.0) for k in _LATENTS},
            **label_model,
        },
        "bayes_ceiling_auc": {"population": label_model["population_auc"], "external_test": bayes_test,
                              "training": _auc(prob[train], y[train]), "all": _auc(prob, y),
                              **({"validation": _auc(prob[~train & ~test], y[~train & ~test])} if "validation" in cohort else {})},
        "marker": None if s.marker is None else {
            "column": s.marker.column,
            "formula": f"{s.marker.column} = 100 / (1 + exp(-({s.marker.intercept:g} + {s.marker.gain:g} * scale * eta + "
                       f"{s.marker.noise_sd:g} * N(0, 1))))",
            "eta": "the label model's linear predictor without intercept"},
        "all_series": [series, *s.extra_sequences],
        "survival_model": {"distribution": "Weibull", "shape": k_w, "scale_months": lam,
                           "log_hazard_ratio": f"{s.hazard_gain:g} * scale * (linear predictor without intercept)",
                           "administrative_censoring_months": s.followup_months + s.accrual_months},
        "scanner_effects": {sc: {"centre": c, **s.scanner_effects[sc].model_dump(), "spacing_mm": list(s.grid(sc)[0]),
                                 "size": list(s.grid(sc)[1]), "manufacturer": SCANNER_PROTOCOLS[sc].manufacturer,
                                 "model": SCANNER_PROTOCOLS[sc].model} for c, sc in pairs},
        "expected_informative": {
            "latents": [k for k in _LATENTS if s.coefficients.get(k, 0.0)],
            "non_informative_latents": [k for k in ("enhancing_share", "oedema", "tumour_volume_ml") if not s.coefficients.get(k, 0.0)],
            "feature_families": {
                "heterogeneity": f"{series}_tumour_original_glcm/glrlm/glszm/gldm/ngtdm texture and firstorder dispersion "
                                 "(Variance, MeanAbsoluteDeviation, InterquartileRange, Entropy)",
                "necrosis_fraction": f"{series}_tumour_original_firstorder location/percentiles (Mean, Median, 10Percentile, Skewness), "
                                     "habitat fractions",
                "oedema": f"{series}_ring* first order (Mean, Median): visible but not informative unless its coefficient is non-zero",
            },
            "rule": "helpers.simulation.simulate.expected_informative(feature_names"
                    + (f", series='{series}'" if series != SERIES else "") + ")",
        },
        "cohorts": {c: int(sum(x == c for x in cohort)) for c in ("training", "validation", "external_test") if c in cohort},
        "settings": s.record(),
    }
    (gt / "truth.json").write_text(json.dumps(_json_safe(truth), indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    (out / "study.yaml").write_text(
        "# Simulated study written by `python -m helpers simulate` (helpers/simulate.py); ground truth in ground_truth/.\n"
        + yaml.safe_dump(_study_yaml(s, train_scanners), sort_keys=False), encoding="utf-8")
    return SimulationResult(out, out / "study.yaml", out / "data_manifest.csv", out / "patients.csv", gt / "truth.json", n,
                            bayes_test, label_model["population_auc"])


def parse_centres(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Parse CLI centre specs ``NAME=SCANNER[,SCANNER...]`` into the ``centres`` setting.

    Raises
    ------
    SimulationError
        For a malformed spec.
    """
    centres: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, scanners = spec.partition("=")
        items = tuple(x.strip() for x in scanners.split(",") if x.strip())
        if not sep or not name.strip() or not items:
            raise SimulationError(f"--centres {spec!r}: write NAME=SCANNER[,SCANNER...], e.g. centre1=verio centre2=signa_hdxt,ingenia_cx "
                                  f"(MR scanners: {', '.join(scanners_of('MR'))}; CT scanners: {', '.join(scanners_of('CT'))})")
        centres[name.strip()] = items
    return centres


def load_settings_file(path: str | Path) -> dict:
    """Read a YAML/JSON file of :class:`SimulationSettings` keys.

    Raises
    ------
    SimulationError
        When the file is missing or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"settings file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SimulationError(f"{path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SimulationError(f"{path} must hold a mapping of simulation settings (patients, seed, centres, ...)")
    return raw

