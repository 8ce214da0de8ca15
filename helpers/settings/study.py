"""Study configuration: YAML validated into typed, immutable objects.

The configuration is data. Every path in it is relative to the directory of
the YAML file, so a study folder can be moved or cloned anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from helpers.errors import ConfigError
from helpers.settings._base import StrictModel
from helpers.settings.preprocessing import PreprocessSettings


class CohortConfig(StrictModel):
    """A cohort of the study (e.g. training, external test)."""

    role: Literal["train", "validation", "test"]
    description: str = ""


class SeriesConfig(StrictModel):
    """One image series (modality/sequence) of the study.

    ``display_window`` is the intensity window used for figures; when omitted
    the 1st-99th percentile of the image is used.
    """

    modality: Literal["CT", "PT", "MR", "US", "OT"]
    display_window: tuple[float, float] | None = None
    description: str = ""


class DichotomisedMarker(StrictModel):
    """A binary endpoint derived from a continuous column of the patient table by a fixed threshold.

    ``endpoints.binary`` names the derived 0/1 column (e.g. ``ki67_high``);
    it is 1 where ``column`` is ``>=`` (or ``>``) ``threshold``. The threshold
    is fixed in the config before any modelling (from the literature or the
    study protocol), so deriving the label fits nothing. ``bands`` are the
    edges of the distribution table of the marker (seed study 000, Appendix
    S3): counts per band and cohort.
    """

    column: str
    threshold: float
    operator: Literal[">=", ">"] = ">="
    bands: tuple[float, ...] = Field((), description="band edges of the marker's distribution table, increasing (default: 10 equal bands over the observed range)")
    unit: str = "%"

    @field_validator("bands")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if value and (len(value) < 2 or any(b <= a for a, b in zip(value, value[1:], strict=False))):
            raise ValueError(f"bands must be at least two increasing edges, e.g. [0, 10, 20, 50, 100] (got {list(value)})")
        return value


class EndpointsConfig(StrictModel):
    """Outcome columns of the patient table.

    ``binary`` is a 0/1 column, or, with ``binary_from``, the name given to the
    0/1 column derived from a continuous marker by a fixed threshold.
    """

    binary: str | None = None
    binary_from: DichotomisedMarker | None = None
    time: str | None = None
    event: str | None = None

    @model_validator(mode="after")
    def _derived_binary_named(self) -> "EndpointsConfig":
        if self.binary_from is not None:
            if self.binary is None:
                raise ValueError("endpoints.binary_from needs endpoints.binary: the name of the derived 0/1 column (e.g. ki67_high)")
            if self.binary == self.binary_from.column:
                raise ValueError(f"endpoints.binary '{self.binary}' must differ from binary_from.column (the derived 0/1 column gets its own name)")
        return self

    @model_validator(mode="after")
    def _time_and_event_together(self) -> "EndpointsConfig":
        if (self.time is None) != (self.event is None):
            raise ValueError("endpoints.time and endpoints.event must be given together (or neither)")
        return self


class TaskConfig(StrictModel):
    """One prediction task of a study with several endpoints (seed study 002: pathological grade and Ki-67 index).

    Notebooks 04-06 run once per task, each with the task's ``endpoints``:
    its own signature, models and statistics, written under
    ``reports/<study>/tasks/<name>/``. Notebooks 01-03 (QC, segmentation,
    extraction) run once for the study and are shared by every task; the
    supplement shows each task's tables and the tasks side by side
    (``tables/task_comparison``).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="lower-case letters, digits and '_' (it names a folder)")
    title: str = Field("", description="how the supplement names the task (default: the name, e.g. 'Pathological grade')")
    endpoints: EndpointsConfig

    @model_validator(mode="after")
    def _has_endpoint(self) -> "TaskConfig":
        if self.endpoints.binary is None and self.endpoints.time is None:
            raise ValueError(f"task '{self.name}' needs an endpoint: endpoints.binary (a 0/1 column, or binary_from a marker) "
                             "or endpoints.time and endpoints.event")
        return self

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()


#: Notebooks run once per task in a study with ``tasks`` (signature, models, statistics), by step name or notebook prefix.
PER_TASK_STEPS = ("signature", "models", "statistics")
PER_TASK_NOTEBOOKS = ("04_", "05_", "06_")


class GeometryTolerance(StrictModel):
    """Allowed image/mask geometry differences.

    ``spacing`` is relative (fraction of the image spacing), ``origin_mm`` is
    absolute, ``direction`` is the maximum absolute difference of the
    direction-cosine entries.
    """

    spacing: float = Field(1e-3, ge=0)
    origin_mm: float = Field(0.5, ge=0)
    direction: float = Field(1e-4, ge=0)


class QCConfig(StrictModel):
    """Settings of the image/mask quality-control table."""

    outlier_robust_z: float = Field(3.5, gt=0, description="|robust z| above which a value is flagged")
    montage_columns: int = Field(8, ge=1)
    montage_max_panels: int = Field(54, ge=1, description="patients per montage page; larger cohorts get several pages")
    min_mask_voxels: int = Field(
        27, ge=1,
        description="validation: a mask label with fewer voxels than this is an error (default 27, a 3x3x3 cube: below it "
        "texture matrices describe a handful of voxels); checked for the label each extracted series reads, when a step reads images. "
        "A habitat subregion smaller than this in a patient is not extracted (its features are missing by design, listed in "
        "tables/extraction_empty_habitats)",
    )


class RoiSpec(StrictModel):
    """A region of interest derived from the tumour mask.

    ``tumour``: the mask itself; ``ring``: the peritumoral ring of
    ``width_mm`` outside the tumour; ``fused``: tumour plus ring.
    """

    kind: Literal["tumour", "ring", "fused"]
    width_mm: float | None = Field(None, gt=0)
    shape_features: bool | None = Field(
        None,
        description="extract shape features; default: not for rings (a shell's shape follows the tumour's, and "
        "pyradiomics' maximum-diameter search is quadratic in the surface size, minutes for large rings)",
    )

    @property
    def with_shape(self) -> bool:
        return self.shape_features if self.shape_features is not None else self.kind != "ring"

    @model_validator(mode="after")
    def _width_for_rings(self) -> "RoiSpec":
        if self.kind in ("ring", "fused") and self.width_mm is None:
            raise ValueError(f"ROI kind '{self.kind}' needs width_mm (e.g. 5)")
        return self


class HabitatConfig(StrictModel):
    """Cohort-level habitat clustering (K-means on pooled training voxels)."""

    series: tuple[str, ...] = Field(min_length=1, description="co-registered series pooled as channels; the first one's mask defines the grid")
    k_range: tuple[int, int] = (3, 10)
    max_voxels_per_patient: int = Field(5000, ge=10)
    extract_from: tuple[str, ...] = Field((), description="series whose images the habitat features are extracted from (default: the habitat series)")
    ith_k_range: tuple[int, int] = (2, 8)
    shape_features: bool = Field(
        False,
        description="extract shape features of each habitat; off by default: habitat subregions are fragmented, their "
        "volume fractions and the ITH score describe them, and pyradiomics' diameter search is quadratic in the surface",
    )


class PerturbationConfig(StrictModel):
    """Mask perturbation simulating a second reader (see helpers.stability.perturbed_mask).

    The radius used for an image is max(radius_mm, its smallest voxel spacing):
    at least one voxel, so coarse grids (PET) are perturbed too.
    """

    mode: Literal["erode", "dilate"] = "dilate"
    radius_mm: float = Field(1.0, gt=0)


class StabilityConfig(StrictModel):
    """Second-reader extraction of the training cohort for the ICC filter.

    The manifest's ``mask_reader2`` is used where given; otherwise the tumour
    mask is perturbed as configured.
    """

    perturbation: PerturbationConfig = PerturbationConfig()


class ExtractionConfig(StrictModel):
    """What notebook 03 extracts: presets x series x ROIs (+ habitats)."""

    presets: tuple[str, ...] = ("seed1762",)
    series: tuple[str, ...] | None = None
    rois: dict[str, RoiSpec] = Field(default_factory=lambda: {"tumour": RoiSpec(kind="tumour")})
    habitats: HabitatConfig | None = None
    stability: StabilityConfig | None = None
    series_settings: dict[str, dict[str, object]] = Field(default_factory=dict, description="pyradiomics settings per series (e.g. binWidth)")
    workers: int = Field(1, ge=1)
    scheduler_address: str | None = None
    ibsi_ct_phantom: bool = Field(True, description=(
        "the run's IBSI compliance tables cover the CT phantom in configurations A-E besides the digital phantom "
        "(about 10 s on 2 cores); false leaves the digital phantom only (quick test runs)"))

    @field_validator("rois")
    @classmethod
    def _roi_names(cls, value: dict) -> dict:
        bad = [k for k in value if not re.fullmatch(r"[a-z][a-z0-9]*", k)]
        if bad:
            raise ValueError(f"ROI names {bad}: use lower-case letters and digits only (they become column-name parts)")
        return value


class ICCConfig(StrictModel):
    """The ICC stability filter (training cohort, reader 1 vs reader 2 or a perturbed mask)."""

    icc_type: Literal["ICC(A,1)", "ICC(C,1)", "ICC(1)"] = "ICC(A,1)"
    threshold: float = Field(0.80, ge=-1, le=1)
    ci_bound: Literal["point", "lower"] = "point"


class HarmonizationGroup(StrictModel):
    """ComBat of one or more series' features by a batch variable of that series.

    ``batch_field`` is an acquisition field (``model``, ``manufacturer``,
    ``kernel``, ``field_strength_T``...) read from the DICOM headers, header CSV
    or manifest (see :func:`helpers.data.headers.acquisition_records`), or ``centre`` /
    ``scanner`` from the manifest. Fitted on the training cohort only;
    covariates are not used (the harmonisation stays label-free, so fitting it
    once on the training cohort cannot leak outcomes into cross-validation).
    """

    series: str
    batch_field: str
    unseen_batch: Literal["error", "reference"] = "reference"
    min_batch_size: int = Field(2, ge=2, description="training batches smaller than this are merged into 'other'")


class SignatureConfig(StrictModel):
    """Notebook 04: stability filter, harmonisation and feature selection (fitted on training)."""

    preset: str = "seed1762"
    icc: ICCConfig | None = ICCConfig()
    harmonization: tuple[HarmonizationGroup, ...] = ()
    steps: tuple[dict[str, object], ...] = (
        {"step": "zscore"},
        {"step": "univariate", "p_threshold": 0.05},
        {"step": "correlation", "threshold": 0.9},
        {"step": "mrmr", "k": 20},
        {"step": "lasso", "lambda_rule": "1se"},
    )


class MissingDataConfig(StrictModel):
    """What happens to failed extraction units and missing feature values (decided on training data only).

    ``failed_units``: ``stop`` (default) ends the run after feature extraction
    with the list of failed units and the fix, before anything is fitted;
    ``exclude_patients`` leaves every patient with a failed unit out of the
    signature, models and statistics (listed in ``tables/excluded_patients``
    and in the methods); ``impute`` keeps them and treats their missing
    features like any other missing value.

    Missing feature values: a feature missing in more than
    ``max_missing_fraction`` of the TRAINING patients is dropped (listed with
    its counts per cohort); the remaining gaps of every cohort are imputed by
    the training ``imputation`` statistic inside each model's pipeline (so
    cross-validation refits it per fold). Missing values in other cohorts
    never drop a feature: they cannot change what is learned from training.
    """

    failed_units: Literal["stop", "exclude_patients", "impute"] = "stop"
    max_missing_fraction: float = Field(0.1, ge=0, lt=1, description="largest share of training patients a kept feature may miss")
    imputation: Literal["median", "mean"] = "median"


class IthSweepConfig(StrictModel):
    """Notebook 05's ITH cluster sweep: a model on each K's intratumoral heterogeneity score, and one on a set of K.

    Fitted on the training cohort (SMOTE when ``models.smote``), evaluated on every other cohort at the training
    out-of-fold Youden threshold.
    """

    algorithm: str = "logistic"
    combined_k: tuple[int, ...] = Field((2, 3, 4, 5), min_length=1, description="K whose ITH scores form the combined model "
                                        "(clipped to extraction.habitats.ith_k_range)")
    tune: bool = Field(False, description="tune hyperparameters with models.search (default: the algorithm's defaults)")


#: Algorithms with scikit-learn class weights (helpers.learning.models.CLASS_WEIGHT_ALGORITHMS; settings import nothing
#: of the learning package, a test keeps the two equal).
_CLASS_WEIGHT_ALGORITHMS = ("logistic", "svm", "random_forest", "extra_trees")


class ModelsConfig(StrictModel):
    """Notebook 05: the model grid and the final model."""

    algorithms: tuple[str, ...] = ("logistic", "svm", "random_forest", "extra_trees", "xgboost", "lightgbm", "catboost")
    search: Literal["grid", "optuna", "none"] = "grid"
    cv: int = Field(5, ge=2)
    n_trials: int = Field(20, ge=1)
    smote: bool = Field(False, description="SMOTE oversampling of the minority class inside every training fold (never of "
                        "held-out data); moves the probabilities away from the training prevalence (see recalibration)")
    class_weight: Literal["none", "balanced"] = Field(
        "none",
        description="none (default): every patient weighs the same, so probabilities estimate the risk at the training "
        "prevalence; balanced: class weights inversely proportional to the training class frequencies for logistic, svm, "
        "random_forest and extra_trees (the boosting algorithms are never weighted)",
    )
    recalibration: Literal["auto", "none", "sigmoid", "isotonic"] = Field(
        "auto",
        description="recalibration of each model's probabilities on the training cohort's out-of-fold scores only (Platt's "
        "sigmoid or isotonic regression, as scikit-learn's CalibratedClassifierCV with ensemble=False on the same folds); "
        "auto (default): sigmoid for every model trained with class weights or SMOTE or whose hyperparameters were chosen by "
        "cross-validated AUC (which cannot see calibration), none for a model with fixed hyperparameters and no reweighting; "
        "none: never (the outputs then say when probabilities of reweighted models are not calibrated)",
    )
    grid_steps: tuple[dict[str, object], ...] = (
        {"step": "zscore"},
        {"step": "univariate", "p_threshold": 0.05},
        {"step": "correlation", "threshold": 0.9},
        {"step": "mrmr", "k": 10},
    )
    final_algorithm: str = "logistic"
    workers: int = Field(1, ge=1, description="blocks of the model grid fitted in parallel (processes; every fit stays "
                         "single-threaded and seeded, so the results are identical for any number of workers)")
    final_selection: Literal["configured", "validation"] = Field(
        "configured",
        description="configured: the final model uses final_algorithm; validation: the final model's algorithm is chosen among "
        "'algorithms' by the AUC in the validation cohort (ties: the first listed), written to tables/final_model_selection",
    )
    threshold_from: Literal["training", "validation"] = Field(
        "training",
        description="operating threshold of the final model: Youden's J on the training out-of-fold probabilities (default) or on "
        "the validation cohort's probabilities; test cohorts never choose anything",
    )
    ith_sweep: IthSweepConfig | None = Field(
        default_factory=lambda: IthSweepConfig(),
        description="one model per ITH score (K) and one on a set of K (tables/ith_sweep); runs when habitats are configured; "
        "null turns it off",
    )

    def weighted(self, algorithm: str) -> bool:
        """Whether ``algorithm``'s classifier is fitted with class weights (``class_weight: balanced`` on logistic,
        svm, random_forest or extra_trees)."""
        return self.class_weight == "balanced" and algorithm in _CLASS_WEIGHT_ALGORITHMS

    def recalibration_for(self, algorithm: str, *, tuned: bool, smote: bool | None = None) -> str:
        """The recalibration (``none``, ``sigmoid``, ``isotonic``) of a model of ``algorithm``: ``auto`` is ``sigmoid``
        when that model is class-weighted, has SMOTE (``smote``: default ``self.smote``) or has hyperparameters ``tuned``
        by cross-validated AUC, else ``none`` (helpers.learning.recalibration.recalibration_for)."""
        if self.recalibration != "auto":
            return self.recalibration
        return "sigmoid" if self.weighted(algorithm) or (self.smote if smote is None else smote) or tuned else "none"

    @property
    def uncalibrated_reweighting(self) -> bool:
        """Class weighting or SMOTE with ``recalibration: none``: the reported probabilities are not calibrated."""
        return self.recalibration == "none" and (self.smote or self.class_weight == "balanced")


class ClinicalConfig(StrictModel):
    """Clinical variables of the patient table: Table 1, the clinical model and the nomogram.

    Continuous variables are imputed by the training median and z-scored,
    categorical ones imputed by the training mode and one-hot coded (the first
    level, or the most frequent training level in the nomogram, is the
    reference); every imputer is fitted inside the training folds.
    """

    continuous: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    nomogram: bool = Field(True, description="fit the clinical-radiomics nomogram (clinical variables + Rad-score)")

    @property
    def variables(self) -> list[str]:
        return [*self.continuous, *self.categorical]


class ReaderScoresConfig(StrictModel):
    """Semantic/clinical scores given by two readers (notebook 04's interobserver table).

    ``table`` is a CSV with the patient id column, a ``reader`` column (two
    distinct values) and one column per scored variable.
    """

    table: str
    variables: dict[str, Literal["continuous", "ordinal", "nominal"]]
    icc_type: Literal["ICC(A,1)", "ICC(C,1)", "ICC(1)"] = "ICC(A,1)"


#: Steps whose target is a survival outcome (``to_structured(time, event)``).
SURVIVAL_STEPS = ("univariate_cox", "cox_lasso")
#: Steps whose target is a binary label (``correlation`` only with a supervised ``relevance``).
BINARY_STEPS = ("univariate", "mrmr", "lasso")


def binary_only_steps(steps_config) -> list[str]:
    """Configured steps that need a binary label (unusable against a survival target), as ``"<position>: <step>"``."""
    out = []
    for pos, entry in enumerate(steps_config, start=1):
        name = entry.get("step") if isinstance(entry, dict) else None
        if name in BINARY_STEPS or (name == "correlation" and entry.get("relevance", "univariate_p") != "order"):
            extra = f" (relevance {entry.get('relevance', 'univariate_p')})" if name == "correlation" else ""
            out.append(f"step {pos}: {name}{extra}")
    return out


#: Default survival selection (``survival.signature_steps``): z-score, univariate Cox filter, redundancy filter keeping the
#: more significant feature of each correlated pair (the Cox filter returns features most significant first), Cox LASSO.
SURVIVAL_SIGNATURE_STEPS: tuple[dict[str, object], ...] = (
    {"step": "zscore"},
    {"step": "univariate_cox", "p_threshold": 0.05, "min_features": 5},
    {"step": "correlation", "threshold": 0.9, "relevance": "order"},
    {"step": "cox_lasso", "lambda_rule": "1se", "scoring": "partial_likelihood"},
)


class SurvivalConfig(StrictModel):
    """Time-to-event models of notebook 05 (used when ``endpoints.time``/``event`` are set).

    Features: with a survival-only study (no ``endpoints.binary``) notebook 04
    fits ``signature.steps`` against (time, event), so they must be survival
    steps (``univariate_cox``, ``cox_lasso``; ``zscore``, ``impute`` and
    ``correlation`` with ``relevance: order`` are label-free). With both
    endpoints, notebook 04 also fits ``signature_steps`` against (time,
    event) and the survival models use those features
    (``features: survival_signature``, the default); ``features:
    binary_signature`` restores the earlier behaviour (the features the
    signature selected for the binary endpoint) and must be set explicitly.

    Models (notebook 05): Cox models on the clinical variables, the radiomics
    signature (``C-radiomics``, also a random survival forest), the ITH
    score(s) (``ith_k``; default the habitats' ``ith_k_range``, else 2-5),
    the deep features (when present), each with and without ITH, and a
    combined model; every preprocessing step (imputation, encoding,
    z-scores) is refitted inside the training folds; training risks are
    out-of-fold; risk-group cut-offs come from the training risks only.

    ``ablation_auc``: the AUC column of notebook 06's ablation table, either
    ``mean`` (scikit-survival's mean cumulative/dynamic AUC over the
    ``horizons`` the evaluated cohort supports) or one horizon.
    """

    horizons: tuple[float, ...] = (12, 24, 36, 48, 60)
    time_unit: str = "months"
    cox_penalizer: float = Field(0.1, ge=0)
    cox_l1_ratio: float = Field(0.0, ge=0, le=1)
    rsf_trees: int = Field(200, ge=10)
    rsf_min_samples_leaf: int = Field(5, ge=1)
    risk_cutoff: Literal["median", "tertiles", "quartiles", "maxstat"] = "median"
    signature_steps: tuple[dict[str, object], ...] = SURVIVAL_SIGNATURE_STEPS
    features: Literal["survival_signature", "binary_signature"] = Field(
        "survival_signature", description="features of the survival models when a binary endpoint exists too: selected for survival "
        "(signature_steps) or, explicitly, the binary signature's features (the earlier behaviour)")
    ith_k: tuple[int, ...] | None = Field(None, description="cluster numbers K whose ITH scores form the ITH model (default: the habitats' ith_k_range, else 2-5)")
    ablation_auc: Literal["mean"] | float = "mean"

    @field_validator("ith_k")
    @classmethod
    def _ith_k(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(k < 2 for k in value)):
            raise ValueError("ith_k lists cluster numbers >= 2, e.g. [2, 3, 4, 5]")
        return value


class SubgroupSpec(StrictModel):
    """A subgroup analysis: patients grouped by an acquisition field of one series (or ``centre``/``scanner``)."""

    series: str
    field: str


class StatisticsConfig(StrictModel):
    """Notebook 06: statistics of the compared models' predictions."""

    reference_model: str | None = Field(None, description="compare every model with this one; default: every pair of the main models")
    subgroups: tuple[SubgroupSpec, ...] = ()
    n_bootstrap: int = Field(2000, ge=100)
    proportion_ci: Literal["wilson", "clopper-pearson"] = "wilson"
    dca_thresholds: tuple[float, float, float] = Field((0.01, 0.80, 0.01), description="first, last, step of the decision-curve thresholds")
    calibration_bins: int = Field(10, ge=2)

    @property
    def survival_bootstrap(self) -> int:
        """Bootstrap resamples of the survival metrics: ``n_bootstrap``, at most 500 (each resample refits the censoring
        distribution and the time-dependent AUC at every horizon, so they cost far more than the AUC bootstrap)."""
        return min(self.n_bootstrap, 500)


class SuperResolutionConfig(StrictModel):
    """Notebook 02's super-resolution arm: the series to super-resolve and the GAN settings.

    ``settings`` is validated into :class:`helpers.super_resolution.SuperResolutionSettings`
    (imported lazily: loading a config does not import torch).
    """

    series: str
    settings: Any = Field(default_factory=dict)
    compare_only: bool = Field(
        True,
        description="True: the super-resolved series is a comparison arm (its own model-grid blocks and the NR-vs-SR "
        "table of notebook 06) and stays out of the signature, the final model and score-level fusion; False: it is "
        "pooled like any other series",
    )

    @property
    def output_series(self) -> str:
        """Name of the derived series of super-resolved images (``<series>_SR``)."""
        return f"{self.series}_SR"

    @field_validator("settings", mode="before")
    @classmethod
    def _settings(cls, value: object) -> object:
        from helpers.settings.super_resolution import SuperResolutionSettings

        return SuperResolutionSettings.model_validate(value or {})


class FeatureBlockSpec(StrictModel):
    """The series and ROI of the columns of a supplied feature table that start with one prefix."""

    series: str
    roi: str = Field(pattern=r"^[a-z][a-z0-9]*$", description="lower-case letters and digits (it becomes a column-name part)")


class FeatureTableConfig(StrictModel):
    """A feature table supplied instead of (or next to) notebook 03's extraction (see ``helpers.data.supplied_features``).

    One row per patient, one column per feature (CSV or parquet). The whole
    table is one block (``series`` + ``roi``) or ``blocks`` maps column-name
    prefixes to blocks (the prefix is removed from the feature name). The
    cohort of each patient comes from ``cohort`` (the whole table),
    ``cohort_column``, else the manifest or the patient table's ``cohort`` column.
    """

    path: str
    patient_id_column: str | None = Field(None, description="id column of the table (default: the study's patient_id_column)")
    cohort_column: str | None = None
    cohort: str | None = Field(None, description="every patient of the table is in this cohort (e.g. a collaborator's external cohort)")
    series: str | None = None
    roi: str | None = Field(None, pattern=r"^[a-z][a-z0-9]*$")
    blocks: dict[str, FeatureBlockSpec] = Field(default_factory=dict, description="column prefix -> series and ROI")
    columns: tuple[str, ...] | None = Field(None, description="feature columns to use (default: every column but the id and cohort columns)")
    exclude: tuple[str, ...] = Field((), description="columns to leave out (recorded in the provenance and the methods)")
    software: str = Field(min_length=1, description="software (and version) that computed the features, e.g. 'pyradiomics 3.1.0' or 'LIFEx 7.3'")
    settings: str = Field("", description="how the features were computed (discretisation, filters, ...), quoted in the methods")
    reader2: str | None = Field(None, description="the same table computed from a second reader's masks (training patients at least): enables the ICC filter")

    @model_validator(mode="after")
    def _one_block_rule(self) -> FeatureTableConfig:
        if self.blocks and (self.series or self.roi):
            raise ValueError(f"feature table {self.path}: give either 'series' and 'roi' (the whole table is one block) or 'blocks', not both")
        if not self.blocks and not (self.series and self.roi):
            raise ValueError(f"feature table {self.path}: give 'series' and 'roi' (the whole table is one block) or 'blocks' "
                             "(column prefix -> series and roi)")
        if self.cohort and self.cohort_column:
            raise ValueError(f"feature table {self.path}: give 'cohort' (the whole table) or 'cohort_column', not both")
        return self

    def block_of(self, column: str) -> tuple[str, str, str] | None:
        """(series, roi, feature name) of a feature column, ``None`` when no block prefix matches."""
        if not self.blocks:
            return str(self.series), str(self.roi), column
        matches = [p for p in self.blocks if column.startswith(p) and len(column) > len(p)]
        if not matches:
            return None
        prefix = max(matches, key=len)
        return self.blocks[prefix].series, self.blocks[prefix].roi, column[len(prefix):]

    @property
    def block_series(self) -> list[str]:
        return [str(self.series)] if not self.blocks else list(dict.fromkeys(b.series for b in self.blocks.values()))


class StepConfig(StrictModel):
    """A notebook step of the study run."""

    name: str
    notebook: str
    per_cohort: bool = True
    per_task: bool | None = Field(None, description="run once per task of a study with 'tasks' (default: notebooks 04-06 "
                                  "and the steps named signature, models, statistics)")
    depends_on: tuple[str, ...] = ()
    parameters: dict[str, object] = Field(default_factory=dict)

    @property
    def runs_per_task(self) -> bool:
        """Whether the step runs once per task when the study has ``tasks``."""
        if self.per_task is not None:
            return self.per_task
        return self.name in PER_TASK_STEPS or Path(self.notebook).stem.startswith(PER_TASK_NOTEBOOKS)


class StudyConfig(StrictModel):
    """The validated study configuration.

    Build it with :func:`load_config`; paths are resolved with :meth:`path`.
    """

    study: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int
    manifest: str | None = Field(None, description="image manifest; may be left out when every step reads tables only (04-07) and the "
                                 "features come from feature_tables")
    feature_tables: tuple[FeatureTableConfig, ...] = Field((), validate_default=True,
                                                           description="feature tables supplied instead of (or next to) extraction")
    patient_table: str
    patient_id_column: str = "patient"
    acquisition_headers: str | None = None
    cohort_rule: str
    cohorts: dict[str, CohortConfig]
    series: dict[str, SeriesConfig]
    labels: dict[str, int]
    endpoints: EndpointsConfig = EndpointsConfig()
    tasks: tuple[TaskConfig, ...] = Field((), description="several prediction tasks (each with its own endpoints) instead of "
                                          "'endpoints': notebooks 04-06 run once per task")
    clinical: ClinicalConfig = ClinicalConfig()
    reader_scores: ReaderScoresConfig | None = None
    survival: SurvivalConfig = SurvivalConfig()
    statistics: StatisticsConfig = StatisticsConfig()
    # Notebook 02 (validated into helpers.segmentation.SegmentationSettings / helpers.deep_features.DeepFeatureSettings;
    # imported lazily so that loading a config does not import torch).
    segmentation: Any = None
    deep_features: tuple[Any, ...] = ()
    deep_gradcam_layer: str = "layer4"
    super_resolution: SuperResolutionConfig | None = None
    geometry_tolerance: GeometryTolerance = GeometryTolerance()
    qc: QCConfig = QCConfig()
    preprocessing: dict[str, PreprocessSettings] = Field(default_factory=dict)
    extraction: ExtractionConfig = ExtractionConfig()
    signature: SignatureConfig = SignatureConfig()
    missing_data: MissingDataConfig = MissingDataConfig()
    models: ModelsConfig = ModelsConfig()
    reports_dir: str = "reports"
    steps: tuple[StepConfig, ...]
    # Set by load_config, not by the YAML file.
    base_dir: str = Field("", exclude=True)
    task: str | None = Field(None, exclude=True, description="the task this view of the study is for (see for_task)")
    config_file: str = Field("study.yaml", exclude=True, description="file name of the config in base_dir")

    @model_validator(mode="before")
    @classmethod
    def _derived_series(cls, raw: object) -> object:
        # Notebook 02's super-resolved images form a derived series "<series>_SR" with the parent's modality, display
        # window, preprocessing and extraction settings (unless the config sets them explicitly), so NR and SR go
        # through the same radiomics pipeline.
        if not isinstance(raw, dict) or not isinstance(raw.get("super_resolution"), dict):
            return raw
        parent = raw["super_resolution"].get("series")
        series = raw.get("series")
        if not isinstance(parent, str) or not isinstance(series, dict) or not isinstance(series.get(parent), dict):
            return raw
        derived = f"{parent}_SR"
        raw = dict(raw)
        if derived not in series:
            description = series[parent].get("description") or parent
            raw["series"] = {**series, derived: {**series[parent], "description": f"super-resolved (notebook 02): {description}"}}
        if isinstance(raw.get("preprocessing"), dict) and parent in raw["preprocessing"] and derived not in raw["preprocessing"]:
            raw["preprocessing"] = {**raw["preprocessing"], derived: raw["preprocessing"][parent]}
        extraction = raw.get("extraction")
        if isinstance(extraction, dict):
            extraction = dict(extraction)
            settings = extraction.get("series_settings")
            if isinstance(settings, dict) and parent in settings and derived not in settings:
                extraction["series_settings"] = {**settings, derived: settings[parent]}
            listed = extraction.get("series")
            if isinstance(listed, list | tuple) and parent in listed and derived not in listed:
                extraction["series"] = [*listed, derived]
            raw["extraction"] = extraction
        return raw

    @model_validator(mode="before")
    @classmethod
    def _ibsi_grid(cls, raw: object) -> object:
        # IBSI aligns the centres of the original and the resampled grids: a study extracting with the 'ibsi' preset
        # resamples that way unless a series' preprocessing says otherwise (other presets keep the 'origin' default).
        if not isinstance(raw, dict) or not isinstance(raw.get("preprocessing"), dict):
            return raw
        extraction = raw.get("extraction") if isinstance(raw.get("extraction"), dict) else {}
        if "ibsi" not in (extraction.get("presets") or ()):
            return raw
        raw = dict(raw)
        raw["preprocessing"] = {series: {"grid_alignment": "center", **settings} if isinstance(settings, dict) else settings
                                for series, settings in raw["preprocessing"].items()}
        return raw

    @field_validator("feature_tables")
    @classmethod
    def _some_input(cls, value: tuple, info) -> tuple:
        # A field validator (not the model validator) so that it is reported together with every other problem.
        if not value and "manifest" in info.data and info.data["manifest"] is None:
            raise ValueError("give 'manifest' (images) or 'feature_tables' (supplied features): the study has no input")
        return value

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: tuple[TaskConfig, ...], info) -> tuple[TaskConfig, ...]:
        names = [t.name for t in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names {dupes} are given twice; each task needs its own name")
        if value and len(value) < 2:
            raise ValueError("a single task: write its endpoints under 'endpoints' instead of 'tasks' (tasks are for several endpoints)")
        endpoints = info.data.get("endpoints")
        if value and endpoints is not None and endpoints != EndpointsConfig():
            raise ValueError("give the endpoints either under 'endpoints' (one task) or under each of 'tasks' (several), not both")
        derived = [t.endpoints.binary for t in value if t.endpoints.binary_from is not None]
        clash = sorted({d for d in derived if derived.count(d) > 1})
        if clash:
            raise ValueError(f"tasks derive the endpoint column(s) {clash} more than once; give each derived column its own name")
        return value

    @field_validator("segmentation", mode="before")
    @classmethod
    def _segmentation_settings(cls, value: object) -> object:
        if value is None:
            return None
        from helpers.settings.segmentation import SegmentationSettings

        return SegmentationSettings.model_validate(value)

    @field_validator("deep_features", mode="before")
    @classmethod
    def _deep_feature_settings(cls, value: object) -> object:
        from helpers.settings.deep_features import DeepFeatureSettings

        items = [value] if isinstance(value, dict) else list(value or ())
        return tuple(DeepFeatureSettings.model_validate(v) for v in items)

    @field_validator("cohorts", "series", "labels")
    @classmethod
    def _not_empty(cls, value: dict) -> dict:
        if not value:
            raise ValueError("must list at least one entry")
        return value

    @field_validator("cohorts")
    @classmethod
    def _cohort_names(cls, value: dict) -> dict:
        # Cohort names become parts of output file names (tables/<name>_<cohort>.csv, figures/auc_heatmap_<cohort>.png),
        # which the report writer requires in lower case: an upper-case name would pass validation and fail late.
        bad = [k for k in value if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", k)]
        if bad:
            hint = ", ".join(f"'{k}' -> '{re.sub(r'[^a-z0-9_-]+', '_', k.lower()).strip('_-') or 'cohort'}'" for k in bad)
            raise ValueError(f"cohort names {bad}: use lower-case letters, digits, '_' or '-' (they name output files); "
                             f"rename them here and in the manifest's cohort column, e.g. {hint}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"label values must be positive integers (0 is background): {bad}")
        return value

    @model_validator(mode="after")
    def _steps_consistent(self) -> "StudyConfig":
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate step names: {dupes}")
        seen: set[str] = set()
        for step in self.steps:
            unknown = [d for d in step.depends_on if d not in seen]
            if unknown:
                raise ValueError(
                    f"step '{step.name}' depends on {unknown}, which are not earlier steps; "
                    "list steps in execution order"
                )
            seen.add(step.name)
        referenced = {
            "preprocessing": list(self.preprocessing),
            "extraction.series": list(self.extraction.series or ()),
            "extraction.series_settings": list(self.extraction.series_settings),
            "extraction.habitats.series": list(self.extraction.habitats.series) if self.extraction.habitats else [],
            "extraction.habitats.extract_from": list(self.extraction.habitats.extract_from) if self.extraction.habitats else [],
            "signature.harmonization": [g.series for g in self.signature.harmonization],
            "statistics.subgroups": [g.series for g in self.statistics.subgroups],
            "segmentation.series": [self.segmentation.series] if self.segmentation is not None else [],
            "deep_features.series": [d.series for d in self.deep_features],
            "super_resolution.series": [self.super_resolution.series] if self.super_resolution is not None else [],
            "feature_tables": [s for t in self.feature_tables for s in t.block_series],
        }
        for where, names in referenced.items():
            unknown = [n for n in names if n not in self.series]
            if unknown:
                raise ValueError(f"{where} names series {unknown} that are not under 'series' ({sorted(self.series)})")
        unknown_cohorts = [t.cohort for t in self.feature_tables if t.cohort is not None and t.cohort not in self.cohorts]
        if unknown_cohorts:
            raise ValueError(f"feature_tables name cohorts {unknown_cohorts} that are not under 'cohorts' ({sorted(self.cohorts)})")
        if self.manifest is None:
            for where, used in (("signature.harmonization", bool(self.signature.harmonization)),
                                ("statistics.subgroups", bool(self.statistics.subgroups))):
                if used:
                    raise ValueError(f"{where} reads acquisition fields of the images' manifest, but the study has no 'manifest'; "
                                     f"remove {where} (or add a manifest)")
        if not any(c.role == "train" for c in self.cohorts.values()):
            raise ValueError("cohorts: one cohort must have role 'train' (fitted steps learn from it only)")
        if self.tasks and any(getattr(d, "mode", None) == "finetune" for d in self.deep_features):
            raise ValueError("deep_features with mode: finetune learn from one binary endpoint, but the study has several tasks "
                             "(notebook 02 is shared by every task); use mode: frozen, or one set of endpoints")
        self._validation_cohort_consistent()
        return self

    def _validation_cohort_consistent(self) -> None:
        validation = self.validation_cohorts
        if len(validation) > 1:
            raise ValueError(f"cohorts: at most one cohort may have role 'validation' (got {validation}); it is the cohort the "
                             "documented choices (models.final_selection, models.threshold_from) are made on. Give the others "
                             "role 'test', or merge them into one validation cohort")
        m = self.models
        uses = [f"models.{k} = validation" for k, v in (("final_selection", m.final_selection), ("threshold_from", m.threshold_from))
                if v == "validation"]
        if uses and not validation:
            raise ValueError(f"{' and '.join(uses)} needs a cohort with role 'validation' under 'cohorts' (none is declared); "
                             "declare one, or set models.final_selection: configured and models.threshold_from: training")

    # -- derived values -------------------------------------------------
    def path(self, relative: str | Path) -> Path:
        """Resolve a config-relative path to an absolute path."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def study_root(self) -> Path:
        """``reports/<study>/``: the study's report folder (steps shared by every task write here)."""
        return self.path(self.reports_dir) / self.study

    @property
    def report_root(self) -> Path:
        """Where this view's tables, figures and notebooks land: ``reports/<study>/``, or
        ``reports/<study>/tasks/<task>/`` for one task of a study with ``tasks`` (see :meth:`for_task`)."""
        return self.study_root / "tasks" / self.task if self.task else self.study_root

    @property
    def task_names(self) -> list[str]:
        """Names of the study's tasks (empty for a study with one set of ``endpoints``)."""
        return [t.name for t in self.tasks]

    def task_config(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(f"unknown task '{name}'; configured tasks: {self.task_names or 'none (the study has one set of endpoints)'}")

    def for_task(self, name: str | None) -> "StudyConfig":
        """The study as one task sees it: that task's ``endpoints`` and report folder (``None``: the study itself)."""
        if name is None or name == self.task:
            return self
        task = self.task_config(name)
        return self.model_copy(update={"endpoints": task.endpoints, "task": task.name})

    @property
    def splits_into_tasks(self) -> bool:
        """True for the study-wide view of a study with ``tasks`` (it stands for several task views)."""
        return bool(self.tasks) and self.task is None

    def task_views(self) -> list["StudyConfig"]:
        """One view per task (:meth:`for_task`), or ``[self]`` for a study with one set of endpoints."""
        return [self.for_task(t) for t in self.task_names] if self.splits_into_tasks else [self]

    @property
    def task_label(self) -> str:
        """How the supplement names this view's task (empty for the study itself)."""
        return self.task_config(self.task).label if self.task else ""

    @property
    def all_endpoints(self) -> list[EndpointsConfig]:
        """The endpoints of every task (or the study's one set)."""
        return [t.endpoints for t in self.tasks] if self.splits_into_tasks else [self.endpoints]

    @property
    def feature_rois(self) -> list[str]:
        """ROI names of the feature columns: the extracted ROIs, then those of the supplied feature tables."""
        supplied = [t.roi for t in self.feature_tables if t.roi] + [b.roi for t in self.feature_tables for b in t.blocks.values()]
        # Supplied habitat ROIs (habitat<k>) join the pooled habitat block of their series, as extracted ones do.
        return list(dict.fromkeys([*self.extraction.rois, *(r for r in supplied if not re.fullmatch(r"habitat\d+", r))]))

    @property
    def clinical_variables(self) -> list[str]:
        """Continuous then categorical clinical variables."""
        return self.clinical.variables

    @property
    def comparison_series(self) -> list[str]:
        """Series kept out of the signature, the final model and fusion (compared in the model grid only).

        The super-resolved series of notebook 02 when ``super_resolution.compare_only`` (the default).
        """
        sr = self.super_resolution
        return [sr.output_series] if sr is not None and sr.compare_only else []

    def source_series(self, series: str) -> str:
        """The acquired series an image series comes from: the parent of a derived ``<series>_SR``, else itself."""
        sr = self.super_resolution
        return sr.series if sr is not None and series == sr.output_series else series

    @property
    def survival_only(self) -> bool:
        """True when the study's endpoint is time-to-event only (no ``endpoints.binary``)."""
        return self.endpoints.binary is None and self.endpoints.time is not None

    @property
    def ith_k(self) -> list[int]:
        """Cluster numbers of the ITH model: ``survival.ith_k``, else the habitats' ``ith_k_range``, else 2-5."""
        if self.survival.ith_k is not None:
            return list(self.survival.ith_k)
        habitats = self.extraction.habitats
        if habitats is not None:
            lo, hi = habitats.ith_k_range
            return list(range(lo, hi + 1))
        return [2, 3, 4, 5]

    @property
    def training_cohorts(self) -> list[str]:
        """Cohorts whose role is ``train``."""
        return [name for name, c in self.cohorts.items() if c.role == "train"]

    @property
    def validation_cohorts(self) -> list[str]:
        """Cohorts whose role is ``validation`` (at most one): the cohort the documented model choices are made on."""
        return [name for name, c in self.cohorts.items() if c.role == "validation"]

    @property
    def test_cohorts(self) -> list[str]:
        """Cohorts whose role is ``test``: only evaluated, never used for a choice."""
        return [name for name, c in self.cohorts.items() if c.role == "test"]

    @property
    def held_out_cohorts(self) -> list[str]:
        """Validation cohort first, then the test cohorts (the order of held-out columns and tables)."""
        return [*self.validation_cohorts, *self.test_cohorts]

    def step(self, name: str) -> StepConfig:
        """Return the step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise ConfigError(f"unknown step '{name}'; configured steps: {[s.name for s in self.steps]}")

    def content_hash(self) -> str:
        """SHA-256 of the configuration content (independent of its location)."""
        content = self.model_dump(mode="json")
        if self.task:  # a task's view (for_task) is the same study: its hash is the study's
            content["endpoints"] = EndpointsConfig().model_dump(mode="json")
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key; remove it or check its spelling")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required key is missing; add it")
        else:
            got = e.get("input")
            got_txt = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            lines.append(f"  - {key}: {e['msg']}{got_txt}")
    return "\n".join(lines)


def load_config(path: str | Path, task: str | None = None) -> StudyConfig:
    """Read and validate a study configuration file.

    Parameters
    ----------
    path : str or Path
        The YAML file (e.g. ``study.yaml``).
    task : str, optional
        For a study with ``tasks``: the view of one task (:meth:`StudyConfig.for_task`).

    Returns
    -------
    StudyConfig
        The validated configuration with ``base_dir`` set to the file's folder.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, has unknown keys, missing keys
        or values of the wrong type; the message lists every problem.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"study config not found: {path}; pass --config with the path of your study.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a mapping of keys (study, seed, manifest, ...)")
    raw["base_dir"] = str(path.parent)
    raw["config_file"] = path.name
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid study config {path}:\n{_format_validation_error(exc)}") from None
    return cfg.for_task(task) if task else cfg
