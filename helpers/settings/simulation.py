"""Settings of the simulated studies (helpers.simulation): scanners, effects, tissues, cohort design."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from helpers.settings._base import StrictModel

HABITAT_NAMES: dict[int, str] = {1: "necrotic", 2: "viable", 3: "enhancing"}
#: Name of the first (MR: T1WI) series of a simulated MR study.
SERIES = "MR"
#: Series name of a simulated study's image series, per modality.
SERIES_BY_MODALITY: dict[str, str] = {"MR": "MR", "CT": "CT"}
_LATENTS = ("heterogeneity", "necrosis_fraction", "oedema")

__all__ = ['HABITAT_NAMES', 'SERIES', 'SERIES_BY_MODALITY', 'ScannerProtocol', 'CTScannerProtocol', 'ScannerEffect', 'CTScannerEffect',
           'HabitatTissue', 'SequenceContrast', 'ContinuousMarker', 'CTAnatomy', 'SimulationSettings', 'SCANNER_PROTOCOLS',
           'CT_DEFAULTS', 'scanners_of', '_DEFAULT_EFFECTS', '_DEFAULT_CT_EFFECTS']


class ScannerProtocol(StrictModel):
    """Published T1WI acquisition protocol of one MR scanner.

    Values of the seed study 000 (``/work/shared/seeds/000_4be63d6c23d9a703.txt``,
    Appendix S1, "MRI images acquisition": Siemens Verio 3.0T at centre 1, GE
    Signa HDXT 1.5T and Philips Ingenia CX 3.0T at centre 2; T1WI TR/TE, matrix,
    field of view, slice thickness and slice gap).
    """

    modality: ClassVar[str] = "MR"
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

    @property
    def slice_interval_mm(self) -> float:
        """Published distance between slice centres: thickness + gap."""
        return self.slice_thickness_mm + self.slice_gap_mm


class CTScannerProtocol(StrictModel):
    """Acquisition and reconstruction protocol of one CT scanner (contiguous helical reconstruction).

    Values in the range of seed study 002 (``/work/shared/seeds/002_ceef9e70554235e7.txt``, Table S1, seven
    cohorts of contrast-enhanced kidney CT: 120 kV, 200-360 mA, 512 x 512 matrix, slice thickness 0.625-5 mm,
    pitch 0.83-0.98). The seed names no vendors or kernels: manufacturer, model, kernel and display field of view
    are typical abdominal-CT values, not the seed's.
    """

    modality: ClassVar[str] = "CT"
    manufacturer: str
    model: str
    kvp: float = Field(gt=0, description="tube voltage (kV)")
    tube_current_mA: float = Field(gt=0)
    pitch: float = Field(gt=0, description="spiral pitch factor")
    kernel: str = Field(description="reconstruction (convolution) kernel")
    matrix: tuple[int, int] = Field((512, 512), description="reconstruction matrix (columns x rows)")
    fov_mm: tuple[float, float] = Field(description="display field of view (x, y)")
    slice_thickness_mm: float = Field(gt=0, description="reconstructed slice thickness (contiguous: also the slice interval)")

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """Published in-plane voxel size (x, y) = FOV / matrix."""
        return (self.fov_mm[0] / self.matrix[0], self.fov_mm[1] / self.matrix[1])

    @property
    def slice_interval_mm(self) -> float:
        """Distance between slice centres (contiguous reconstruction: the slice thickness)."""
        return self.slice_thickness_mm


#: The simulated scanners: the MR scanners of seed 000 (Appendix S1; T1WI values) and three CT scanners with
#: Table S1 rows of seed 002 (cohort 4: 360 mA, pitch 0.98, 1 mm; cohort 2: 220 mA, pitch 0.83, 1 mm; cohort 3:
#: 280 mA, pitch 0.89, 0.625 mm; all 120 kV, 512 x 512).
SCANNER_PROTOCOLS: dict[str, ScannerProtocol | CTScannerProtocol] = {
    "verio": ScannerProtocol(manufacturer="SIEMENS", model="Verio", field_strength_T=3.0, tr_ms=1750, te_ms=24,
                             matrix=(320, 320), fov_mm=(240, 192), slice_thickness_mm=5.5, slice_gap_mm=1.5),
    "signa_hdxt": ScannerProtocol(manufacturer="GE MEDICAL SYSTEMS", model="Signa HDxt", field_strength_T=1.5, tr_ms=300, te_ms=9,
                                  matrix=(256, 256), fov_mm=(220, 220), slice_thickness_mm=6.0, slice_gap_mm=1.0),
    "ingenia_cx": ScannerProtocol(manufacturer="Philips Medical Systems", model="Ingenia CX", field_strength_T=3.0, tr_ms=2162, te_ms=15,
                                  matrix=(448, 256), fov_mm=(230, 230), slice_thickness_mm=6.0, slice_gap_mm=1.0),
    "discovery_ct750": CTScannerProtocol(manufacturer="GE MEDICAL SYSTEMS", model="Discovery CT750 HD", kvp=120, tube_current_mA=360,
                                         pitch=0.98, kernel="STANDARD", fov_mm=(360, 360), slice_thickness_mm=1.0),
    "definition_flash": CTScannerProtocol(manufacturer="SIEMENS", model="SOMATOM Definition Flash", kvp=120, tube_current_mA=220,
                                          pitch=0.83, kernel="B30f", fov_mm=(380, 380), slice_thickness_mm=1.0),
    "brilliance_ict": CTScannerProtocol(manufacturer="Philips", model="Brilliance iCT", kvp=120, tube_current_mA=280,
                                        pitch=0.89, kernel="B", fov_mm=(400, 400), slice_thickness_mm=0.625),
}  # fmt: skip


def _a(modality: str) -> str:
    """``an MR`` / ``a CT`` (for messages)."""
    return f"an {modality}" if modality == "MR" else f"a {modality}"


def scanners_of(modality: str) -> list[str]:
    """Keys of :data:`SCANNER_PROTOCOLS` of one modality (``MR`` or ``CT``), sorted."""
    return sorted(k for k, p in SCANNER_PROTOCOLS.items() if p.modality == modality)


class ScannerEffect(StrictModel):
    """Planted batch effect of one MR scanner: ``scale * bias(x) * clean + offset``, then Rician noise."""

    modality: ClassVar[str] = "MR"
    scale: float = Field(gt=0)
    offset: float
    noise_sd: float = Field(ge=0)
    bias_amplitude: float = Field(ge=0, lt=1, description="peak relative amplitude of the smooth multiplicative bias field")


_DEFAULT_EFFECTS = {
    "verio": ScannerEffect(scale=1.0, offset=0.0, noise_sd=12.0, bias_amplitude=0.08),
    "signa_hdxt": ScannerEffect(scale=0.7, offset=150.0, noise_sd=20.0, bias_amplitude=0.15),  # 1.5 T: lower SNR
    "ingenia_cx": ScannerEffect(scale=1.35, offset=-60.0, noise_sd=14.0, bias_amplitude=0.10),
}


class CTScannerEffect(StrictModel):
    """Planted batch effect of one CT scanner and its reconstruction kernel, in HU: ``clean + hu_offset + noise``.

    CT intensities are calibrated (water 0 HU), so there is no multiplicative scale or bias field: a scanner shifts
    the HU scale a little (calibration) and its kernel sets the image noise, Gaussian with SD ``noise_sd`` and an
    in-plane correlation length ``noise_correlation_mm`` (smooth kernels: lower, coarser noise; sharp kernels:
    higher, finer-grained noise).
    """

    modality: ClassVar[str] = "CT"
    hu_offset: float = Field(description="additive calibration offset (HU)")
    noise_sd: float = Field(ge=0, description="image noise SD (HU)")
    noise_correlation_mm: float = Field(0.0, ge=0, description="in-plane Gaussian correlation of the noise (SD, mm); 0: white noise")


#: HU offsets within the +-4 HU tolerance of a CT number calibration (water); noise SD proportional to
#: 1 / sqrt(tube current x slice thickness), 10 HU at 360 mA and 1 mm (Discovery: 10; 220 mA: 12.8 -> 13;
#: 280 mA at 0.625 mm: 14.3 -> 14); in-plane noise correlation by kernel (B30f smooth, B sharper than STANDARD).
_DEFAULT_CT_EFFECTS = {
    "discovery_ct750": CTScannerEffect(hu_offset=0.0, noise_sd=10.0, noise_correlation_mm=1.0),   # STANDARD
    "definition_flash": CTScannerEffect(hu_offset=4.0, noise_sd=13.0, noise_correlation_mm=1.4),  # B30f: medium smooth
    "brilliance_ict": CTScannerEffect(hu_offset=-3.0, noise_sd=14.0, noise_correlation_mm=0.8),   # B
}


def _effect_kind(value: Any) -> str:
    """Which effect model a ``scanner_effects`` entry is: CT when it names a CT key (``hu_offset``...), else MR."""
    if isinstance(value, StrictModel):
        return getattr(value, "modality", "MR")
    if isinstance(value, dict) and set(value) & {"hu_offset", "noise_correlation_mm"}:
        return "CT"
    return "MR"


AnyScannerEffect = Annotated[Annotated[ScannerEffect, Tag("MR")] | Annotated[CTScannerEffect, Tag("CT")], Discriminator(_effect_kind)]


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


class CTAnatomy(StrictModel):
    """What surrounds a simulated kidney tumour on CT (HU before scanner effects; geometry in mm).

    The tumour grows from the pole of a kidney (an ellipsoid of soft tissue whose centre lies
    ``kidney_offset_mm`` behind the tumour centre, away from the body wall) into perirenal fat (the study's
    ``background`` tissue). The body wall is a band of muscle starting ``wall_distance_mm`` from the
    field-of-view centre (posterior, at a random angle, with a smooth wobble), with air beyond it.
    """

    air_hu: float = -1000.0
    kidney: HabitatTissue = HabitatTissue(mean=35.0, texture_sd=6.0)
    muscle: HabitatTissue = HabitatTissue(mean=50.0, texture_sd=6.0)
    kidney_semi_axes_mm: tuple[float, float, float] = Field((22.0, 17.0, 55.0), description="along the body-wall direction, across it, along z")
    kidney_offset_mm: float = Field(20.0, ge=0)
    wall_distance_mm: float = Field(36.0, gt=0)
    muscle_thickness_mm: float = Field(10.0, ge=0)
    wall_wobble_mm: float = Field(2.0, ge=0)


#: Defaults that differ with ``modality: CT`` (used for every key the settings leave out): CT scanners at two
#: centres, HU tissues (perirenal fat around the tumour; necrosis, viable and enhancing tumour in the range of
#: contrast-enhanced renal cell carcinoma), fat stranding instead of MR oedema, and a slice scale that puts the
#: thin CT slices on a grid of about 20-40 slices.
CT_DEFAULTS: dict[str, Any] = {
    "centres": {"centre1": ("definition_flash", "brilliance_ict"), "centre2": ("discovery_ct750",)},
    "scanner_effects": dict(_DEFAULT_CT_EFFECTS),
    "slice_scale": 3.0,
    "background": HabitatTissue(mean=-100.0, texture_sd=10.0),
    "oedema_gain": 45.0,
    "habitats": {
        "necrotic": HabitatTissue(mean=15.0, texture_sd=8.0),
        "viable": HabitatTissue(mean=70.0, texture_sd=22.0),
        "enhancing": HabitatTissue(mean=135.0, texture_sd=28.0),
    },
}

#: Settings keys that exist only for CT (left out of the record of an MR simulation, whose files stay as before).
_CT_ONLY_KEYS = ("modality", "ct_anatomy")


class SimulationSettings(StrictModel):
    """Every parameter of a simulated study (unknown keys are rejected).

    Geometry is in millimetres, (x, y, z). Each scanner writes on its own grid:
    in-plane spacing = published FOV / matrix x ``in_plane_scale``, slice spacing
    = published slice interval (MR: thickness + gap; CT: thickness) x ``slice_scale``;
    the defaults keep the scanners' relative resolutions while giving volumes of about
    64 x 64 x 21 (MR) and 61-68 x 61-68 x 24-38 (CT).

    ``modality`` selects an MR study (default: T1WI-like intensities, series ``MR``) or a CT
    study (series ``CT``: int16 Hounsfield units, CT scanners and kernels, kidney and fat
    around the tumour); with ``CT``, every key of :data:`CT_DEFAULTS` left out takes its CT default.
    """

    modality: Literal["MR", "CT"] = Field("MR", description="MR (T1WI-like, default) or CT (Hounsfield units; see CT_DEFAULTS)")
    study: str = Field("simulated", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    patients: int = Field(100, ge=2)
    centres: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {"centre1": ("verio",), "centre2": ("signa_hdxt", "ingenia_cx")},
        description="centre -> scanner keys of SCANNER_PROTOCOLS of the study's modality (a scanner belongs to one centre)",
    )
    scanner_effects: dict[str, AnyScannerEffect] = Field(default_factory=lambda: dict(_DEFAULT_EFFECTS))
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
    ct_anatomy: CTAnatomy = Field(default_factory=CTAnatomy, description="modality CT: kidney, muscle, air around the tumour")

    @model_validator(mode="before")
    @classmethod
    def _ct_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("modality") == "CT":
            data = {**{k: v for k, v in CT_DEFAULTS.items() if k not in data}, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SimulationSettings":
        problems = []
        seen: dict[str, str] = {}
        modality = self.modality
        example = "discovery_ct750" if modality == "CT" else "verio"
        if not self.centres:
            problems.append(f"centres is empty: give at least one centre with a scanner, e.g. {{'centre1': ['{example}']}}")
        for centre, scanners in self.centres.items():
            if not scanners:
                problems.append(f"centre '{centre}' has no scanner")
            for s in scanners:
                if s not in SCANNER_PROTOCOLS:
                    problems.append(f"centre '{centre}': unknown scanner '{s}'; choose from {scanners_of(modality)} (modality {modality})")
                elif SCANNER_PROTOCOLS[s].modality != modality:
                    other = SCANNER_PROTOCOLS[s].modality
                    problems.append(f"centre '{centre}': '{s}' is {_a(other)} scanner but modality is {modality}; choose from "
                                    f"{scanners_of(modality)} or set modality: {other}")
                elif s in seen:
                    problems.append(f"scanner '{s}' is listed under centres '{seen[s]}' and '{centre}'; a scanner belongs to one centre")
                elif s not in self.scanner_effects:
                    problems.append(f"scanner '{s}' has no entry in scanner_effects (known: {sorted(self.scanner_effects)})")
                elif self.scanner_effects[s].modality != modality:
                    keys = "hu_offset, noise_sd, noise_correlation_mm" if modality == "CT" else "scale, offset, noise_sd, bias_amplitude"
                    problems.append(f"scanner_effects['{s}'] is {_a(self.scanner_effects[s].modality)} effect; {_a(modality)} scanner's "
                                    f"effect takes {keys}")
                seen.setdefault(s, centre)
        if modality == "CT" and self.extra_sequences:
            problems.append(f"extra_sequences {sorted(self.extra_sequences)} are MR sequences (T2-like contrast); a CT study has the "
                            "one series 'CT': remove extra_sequences or set modality: MR")
        if modality == "MR" and self.ct_anatomy != CTAnatomy():
            problems.append("ct_anatomy applies to modality CT only: remove it or set modality: CT")
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
        clash = [k for k in self.extra_sequences if k in SERIES_BY_MODALITY.values() or not k.replace("_", "").isalnum() or not k[0].isalpha()]
        if clash:
            problems.append(f"extra_sequences names {clash}: use letters, digits and '_' (starting with a letter), not '{SERIES}' "
                            "(the T1WI series) or 'CT'")
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
    def series(self) -> str:
        """Name of the study's (first) image series: ``MR`` or ``CT``."""
        return SERIES_BY_MODALITY[self.modality]

    def record(self) -> dict[str, Any]:
        """The settings as written to ``ground_truth/truth.json`` (JSON types).

        An MR simulation leaves out the CT-only keys (``modality``, ``ct_anatomy``), so its record, and every file
        of an MR study, is byte-identical to that of the simulator before CT existed; it reads back as MR.
        """
        record = self.model_dump(mode="json")
        if self.modality == "MR":
            for key in _CT_ONLY_KEYS:
                record.pop(key)
        return record

    @property
    def scanners(self) -> list[tuple[str, str]]:
        """(centre, scanner key) pairs in configuration order."""
        return [(c, s) for c, ss in self.centres.items() for s in ss]

    def grid(self, scanner: str) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
        """Spacing (x, y, z) and size (x, y, z) of a scanner's written grid."""
        p = SCANNER_PROTOCOLS[scanner]
        px, py = p.pixel_spacing_mm
        spacing = (round(px * self.in_plane_scale, 4), round(py * self.in_plane_scale, 4),
                   round(p.slice_interval_mm * self.slice_scale, 4))
        size = tuple(max(4, int(round(f / s))) for f, s in zip(self.fov_mm, spacing, strict=True))
        return spacing, size  # type: ignore[return-value]


