"""Settings of the simulated studies (helpers.simulation): scanners, effects, tissues, cohort design."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from helpers.settings._base import StrictModel

HABITAT_NAMES: dict[int, str] = {1: "necrotic", 2: "viable", 3: "enhancing"}
SERIES = "MR"
_LATENTS = ("heterogeneity", "necrosis_fraction", "oedema")

__all__ = ['HABITAT_NAMES', 'SERIES', 'ScannerProtocol', 'ScannerEffect', 'HabitatTissue', 'SequenceContrast', 'ContinuousMarker',
           'SimulationSettings', 'SCANNER_PROTOCOLS', '_DEFAULT_EFFECTS']


class ScannerProtocol(StrictModel):
    """Published T1WI acquisition protocol of one MR scanner.

    Values of the seed study 000 (``/work/shared/seeds/000_4be63d6c23d9a703.txt``,
    Appendix S1, "MRI images acquisition": Siemens Verio 3.0T at centre 1, GE
    Signa HDXT 1.5T and Philips Ingenia CX 3.0T at centre 2; T1WI TR/TE, matrix,
    field of view, slice thickness and slice gap).
    """

    manufacturer: str
    model: str
    field_strength_T: float
    tr_ms: float
    te_ms: float
    matrix: tuple[int, int] = Field(description="acquisition matrix (frequency x phase)")
    fov_mm: tuple[float, float] = Field(description="field of view (x, y)")
    slice_thickness_mm: float
    slice_gap_mm: float

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """Published in-plane voxel size (x, y) = FOV / matrix."""
        return (self.fov_mm[0] / self.matrix[0], self.fov_mm[1] / self.matrix[1])


#: The seed study's scanners (seed 000, Appendix S1; T1WI values).
SCANNER_PROTOCOLS: dict[str, ScannerProtocol] = {
    "verio": ScannerProtocol(manufacturer="SIEMENS", model="Verio", field_strength_T=3.0, tr_ms=1750, te_ms=24,
                             matrix=(320, 320), fov_mm=(240, 192), slice_thickness_mm=5.5, slice_gap_mm=1.5),
    "signa_hdxt": ScannerProtocol(manufacturer="GE MEDICAL SYSTEMS", model="Signa HDxt", field_strength_T=1.5, tr_ms=300, te_ms=9,
                                  matrix=(256, 256), fov_mm=(220, 220), slice_thickness_mm=6.0, slice_gap_mm=1.0),
    "ingenia_cx": ScannerProtocol(manufacturer="Philips Medical Systems", model="Ingenia CX", field_strength_T=3.0, tr_ms=2162, te_ms=15,
                                  matrix=(448, 256), fov_mm=(230, 230), slice_thickness_mm=6.0, slice_gap_mm=1.0),
}  # fmt: skip


class ScannerEffect(StrictModel):
    """Planted batch effect of one scanner: ``scale * bias(x) * clean + offset``, then Rician noise."""

    scale: float = Field(gt=0)
    offset: float
    noise_sd: float = Field(ge=0)
    bias_amplitude: float = Field(ge=0, lt=1, description="peak relative amplitude of the smooth multiplicative bias field")


_DEFAULT_EFFECTS = {
    "verio": ScannerEffect(scale=1.0, offset=0.0, noise_sd=12.0, bias_amplitude=0.08),
    "signa_hdxt": ScannerEffect(scale=0.7, offset=150.0, noise_sd=20.0, bias_amplitude=0.15),  # 1.5 T: lower SNR
    "ingenia_cx": ScannerEffect(scale=1.35, offset=-60.0, noise_sd=14.0, bias_amplitude=0.10),
}


class HabitatTissue(StrictModel):
    """Mean intensity and texture SD (before scanner effects) of a tissue class."""

    mean: float
    texture_sd: float = Field(ge=0)


class SequenceContrast(StrictModel):
    """Tissue contrast of an additional co-registered MR sequence (e.g. a T2-weighted series).

    The sequence shares the patient's anatomy, habitats, masks and texture
    pattern (the same tissue seen with another contrast) but has its own
    tissue means and texture amplitudes, bias field and noise. The default
    is T2-like: the necrotic core is bright, the enhancing tissue darker.
    Its habitat names are checked with the T1WI's by :class:`SimulationSettings`.
    """

    background: HabitatTissue = HabitatTissue(mean=300.0, texture_sd=12.0)
    oedema_gain: float = Field(400.0, description="peritumoral intensity added at the tumour border for oedema = 1 (oedema is bright on T2)")
    habitats: dict[str, HabitatTissue] = Field(default_factory=lambda: {
        "necrotic": HabitatTissue(mean=1100.0, texture_sd=25.0),
        "viable": HabitatTissue(mean=700.0, texture_sd=50.0),
        "enhancing": HabitatTissue(mean=520.0, texture_sd=45.0),
    })
    description: str = "simulated T2WI-like sequence (co-registered with the T1WI)"


class ContinuousMarker(StrictModel):
    """A continuous tissue marker in percent (e.g. a Ki-67 index), written to ``patients.csv``.

    ``index = 100 / (1 + exp(-(intercept + gain * scale * eta + noise_sd * N(0, 1))))``, where ``eta`` is the
    label model's linear predictor without intercept and ``scale`` its solved scale: the marker carries the
    same image information as the binary label plus its own noise, so dichotomising it at a threshold gives a
    second, correlated binary task (seed study 000's Ki-67 design).
    """

    column: str = Field("ki67_index", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    intercept: float = -0.5
    gain: float = Field(1.0, ge=0)
    noise_sd: float = Field(0.8, ge=0)


class SimulationSettings(StrictModel):
    """Every parameter of a simulated study (unknown keys are rejected).

    Geometry is in millimetres, (x, y, z). Each scanner writes on its own grid:
    in-plane spacing = published FOV / matrix x ``in_plane_scale``, slice spacing
    = published (thickness + gap) x ``slice_scale``; the defaults keep the
    scanners' relative resolutions while giving volumes of about 64 x 64 x 21.
    """

    study: str = Field("simulated", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    patients: int = Field(100, ge=2)
    centres: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {"centre1": ("verio",), "centre2": ("signa_hdxt", "ingenia_cx")},
        description="centre -> scanner keys of SCANNER_PROTOCOLS (a scanner belongs to one centre)",
    )
    scanner_effects: dict[str, ScannerEffect] = Field(default_factory=lambda: dict(_DEFAULT_EFFECTS))
    split: Literal["random", "centre"] = "random"
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of each scanner's patients in external_test (split 'random')")
    validation_fraction: float = Field(
        0.0, ge=0, lt=1,
        description="share of each scanner's patients in an internal 'validation' cohort (split 'centre': of the training "
        "centres' scanners; 0: no validation cohort)")
    train_centres: tuple[str, ...] = Field((), description="training centres (split 'centre'); the others are external_test")
    validation_centres: tuple[str, ...] = Field(
        (), description="split 'centre': centres whose patients form the 'validation' cohort (neither training nor external_test)")
    extra_sequences: dict[str, SequenceContrast] = Field(
        default_factory=dict,
        description="additional co-registered MR sequences, series name -> contrast (e.g. {'T2': {}}); the first series is 'MR' (T1WI)")
    marker: ContinuousMarker | None = Field(ContinuousMarker(), description="continuous marker column in patients.csv (None: none)")
    reader_scores: bool = Field(
        False,
        description="write reader_scores.csv: two readers' semantic scores of every tumour (necrosis grade 0-3, enhancement "
        "pattern, margin, longest diameter in mm) read from the planted anatomy with reader-specific errors")
    fov_mm: tuple[float, float, float] = (96.0, 96.0, 72.0)
    in_plane_scale: float = Field(2.0, gt=0)
    slice_scale: float = Field(0.5, gt=0)
    psf_sigma_voxels: float = Field(0.5, ge=0, description="partial-volume blur (Gaussian SD in voxels of the scanner grid)")
    tumour_radius_mm: tuple[float, float] = (12.0, 22.0)
    lobulation: float = Field(0.08, ge=0, lt=0.5)
    peritumoral_width_mm: float = Field(6.0, gt=0)
    reader2_boundary_sd_mm: float = Field(1.0, ge=0, description="SD of the second reader's smooth boundary displacement")
    background: HabitatTissue = HabitatTissue(mean=400.0, texture_sd=15.0)
    oedema_gain: float = Field(220.0, description="peritumoral intensity added at the tumour border for oedema = 1")
    habitats: dict[str, HabitatTissue] = Field(default_factory=lambda: {
        "necrotic": HabitatTissue(mean=180.0, texture_sd=20.0),
        "viable": HabitatTissue(mean=650.0, texture_sd=55.0),
        "enhancing": HabitatTissue(mean=1000.0, texture_sd=55.0),
    })
    texture_correlation_mm: float = Field(1.5, gt=0)
    heterogeneity_gain: float = Field(0.5, ge=0, description="texture SD of viable/enhancing habitats = texture_sd * exp(gain * heterogeneity)")
    necrosis_beta: tuple[float, float] = Field((2.0, 4.0), description="necrosis_fraction = lo + (hi - lo) * Beta(a, b)")
    necrosis_range: tuple[float, float] = (0.05, 0.55)
    enhancing_share_range: tuple[float, float] = (0.3, 0.7)
    coefficients: dict[str, float] = Field(default_factory=lambda: {"heterogeneity": 1.0, "necrosis_fraction": 1.0, "oedema": 0.0})
    target_auc: float = Field(0.85, gt=0.5, lt=1.0, description="planted Bayes ceiling (population AUC of the true probabilities)")
    prevalence: float = Field(0.4, gt=0, lt=1)
    hazard_gain: float = Field(0.8, ge=0)
    weibull_shape: float = Field(1.2, gt=0)
    median_event_free_months: float = Field(48.0, gt=0)
    followup_months: float = Field(36.0, gt=0)
    accrual_months: float = Field(24.0, ge=0)
    missing_rate: float = Field(0.05, ge=0, lt=1)
    dicom: bool = False
    notebooks_dir: str | None = Field(None, description="folder of the study notebooks (default: the repository's notebooks/)")

    @model_validator(mode="after")
    def _check(self) -> "SimulationSettings":
        problems = []
        seen: dict[str, str] = {}
        if not self.centres:
            problems.append("centres is empty: give at least one centre with a scanner, e.g. {'centre1': ['verio']}")
        for centre, scanners in self.centres.items():
            if not scanners:
                problems.append(f"centre '{centre}' has no scanner")
            for s in scanners:
                if s not in SCANNER_PROTOCOLS:
                    problems.append(f"centre '{centre}': unknown scanner '{s}'; choose from {sorted(SCANNER_PROTOCOLS)}")
                elif s in seen:
                    problems.append(f"scanner '{s}' is listed under centres '{seen[s]}' and '{centre}'; a scanner belongs to one centre")
                elif s not in self.scanner_effects:
                    problems.append(f"scanner '{s}' has no entry in scanner_effects (known: {sorted(self.scanner_effects)})")
                seen.setdefault(s, centre)
        if self.split == "centre":
            unknown = [c for c in self.train_centres if c not in self.centres]
            if not self.train_centres or unknown:
                problems.append(f"split 'centre' needs train_centres naming some of {sorted(self.centres)} (got {list(self.train_centres)})")
            elif set(self.train_centres) == set(self.centres):
                problems.append("split 'centre': every centre is a training centre; leave at least one for external_test")
            bad = [c for c in self.validation_centres if c not in self.centres or c in self.train_centres]
            if bad:
                problems.append(f"validation_centres {bad} must be centres of 'centres' that are not training centres")
            elif self.validation_centres and set(self.train_centres) | set(self.validation_centres) == set(self.centres):
                problems.append("split 'centre': training and validation centres cover every centre; leave at least one for external_test")
            if self.validation_centres and self.validation_fraction:
                problems.append("give validation_centres or validation_fraction, not both")
        elif self.validation_centres:
            problems.append("validation_centres needs split 'centre' (with split 'random' use validation_fraction)")
        if self.split == "random" and self.test_fraction + self.validation_fraction >= 0.9:
            problems.append(f"test_fraction + validation_fraction = {self.test_fraction + self.validation_fraction:g} leaves too few "
                            "training patients; keep the sum below 0.9")
        clash = [k for k in self.extra_sequences if k == SERIES or not k.replace("_", "").isalnum() or not k[0].isalpha()]
        if clash:
            problems.append(f"extra_sequences names {clash}: use letters, digits and '_' (starting with a letter), not '{SERIES}' "
                            "(the T1WI series)")
        # One habitat-name check for the T1WI and every extra sequence (they share the planted habitat maps).
        named = {"habitats": self.habitats, **{f"extra_sequences.{k}.habitats": c.habitats for k, c in self.extra_sequences.items()}}
        for where, habitats in named.items():
            if set(habitats) != set(HABITAT_NAMES.values()):
                problems.append(f"{where} must name exactly {list(HABITAT_NAMES.values())} (got {sorted(habitats)})")
        if set(self.habitats) == set(HABITAT_NAMES.values()) and not (
                self.habitats["necrotic"].mean < self.habitats["viable"].mean < self.habitats["enhancing"].mean):
            problems.append("habitat means must increase necrotic < viable < enhancing (label order of the ground truth)")
        unknown = sorted(set(self.coefficients) - set(_LATENTS))
        if unknown:
            problems.append(f"coefficients: unknown latent(s) {unknown}; use {list(_LATENTS)}")
        elif not any(self.coefficients.get(k, 0.0) for k in _LATENTS):
            problems.append("coefficients are all 0: the label would not depend on the images")
        for name, (lo, hi) in {"tumour_radius_mm": self.tumour_radius_mm, "necrosis_range": self.necrosis_range,
                               "enhancing_share_range": self.enhancing_share_range}.items():
            if not 0 < lo <= hi:
                problems.append(f"{name} must be (low, high) with 0 < low <= high (got {(lo, hi)})")
        if not (0 < self.necrosis_range[1] < 1 and 0 < self.enhancing_share_range[1] < 1):
            problems.append("necrosis_range and enhancing_share_range must lie within (0, 1)")
        if min(self.necrosis_beta) <= 0:
            problems.append("necrosis_beta parameters must be positive")
        if min(self.fov_mm) <= 0:
            problems.append("fov_mm values must be positive")
        elif 2 * (self.tumour_radius_mm[1] * (1 + self.lobulation) + self.peritumoral_width_mm) + 10 > min(self.fov_mm[:2]):
            problems.append(f"fov_mm {self.fov_mm} is too small for tumours of radius up to {self.tumour_radius_mm[1]} mm with "
                            f"a {self.peritumoral_width_mm} mm peritumoral zone; enlarge fov_mm or reduce tumour_radius_mm")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived ---------------------------------------------------------
    @property
    def scanners(self) -> list[tuple[str, str]]:
        """(centre, scanner key) pairs in configuration order."""
        return [(c, s) for c, ss in self.centres.items() for s in ss]

    def grid(self, scanner: str) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
        """Spacing (x, y, z) and size (x, y, z) of a scanner's written grid."""
        p = SCANNER_PROTOCOLS[scanner]
        px, py = p.pixel_spacing_mm
        spacing = (round(px * self.in_plane_scale, 4), round(py * self.in_plane_scale, 4),
                   round((p.slice_thickness_mm + p.slice_gap_mm) * self.slice_scale, 4))
        size = tuple(max(4, int(round(f / s))) for f, s in zip(self.fov_mm, spacing, strict=True))
        return spacing, size  # type: ignore[return-value]


