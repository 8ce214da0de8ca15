"""Models of a study (notebook 05): the series x ROI x algorithm grid and the final model.

Inputs are notebook 04's stable, harmonised feature table (fitted on the
training cohort). Every model is a pipeline whose selection steps, optional
SMOTE and classifier are refitted inside each cross-validation fold; the
operating threshold is chosen on the training out-of-fold probabilities
(Youden) and applied unchanged to the other cohorts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline
from sklearn.metrics import roc_auc_score

from helpers.data import artifacts
from helpers.data.columns import block_name, columns_of_series, model_name, shown_name, study_block_columns
from helpers.errors import InputDataError, SeparationError
from helpers.figures.models import auc_heatmap_figure
from helpers.figures.nomogram import nomogram_figure
from helpers.figures.shap import shap_bar_figure, shap_beeswarm_figure, shap_waterfall_figure
from helpers.figures.survival import km_figure
from helpers.learning.clinical import ClinicalEncoder, ClinicalImputer, RadScoreAugmenter
from helpers.learning.explain import explainer_kind, explanation_scale, shap_explanation
from helpers.learning.models import (
    ScoreStacker,
    TunedModel,
    build_pipeline,
    class_weight_for,
    make_classifier,
    model_grid,
    save_model,
    tune,
)
from helpers.learning.nomogram import NomogramModel, nomogram_table
from helpers.learning.selection import build_selector
from helpers.learning.survival import km_by_group
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig
from helpers.steps.signature import study_steps

__all__ = ["ith_sweep_table_name", 
    "ModellingData", "load_modelling_data", "study_blocks", "run_model_grid", "fit_final_model", "write_final_model_outputs",
    "fusion_comparison", "fit_stacker", "fit_clinical_models", "write_clinical_outputs", "comparison_models", "model_predictions",
    "ith_sweep", "select_final_model", "write_final_selection", "radiomics_model_name",
    "SurvivalFit", "survival_features", "survival_predictions", "write_km_figures",
]


@dataclass
class ModellingData:
    """Features (all cohorts), outcome and cohorts for modelling.

    ``clinical`` holds the configured clinical variables (raw, possibly with
    missing values: imputation is fitted inside the training folds);
    ``time``/``event`` the time-to-event endpoint when configured.
    ``comparison`` holds the features of comparison-only series (the
    super-resolved images of notebook 02): they form model-grid blocks and the
    NR-vs-SR comparison but never enter the final model, fusion or survival
    models, which use ``X``.
    """

    X: pd.DataFrame
    y: pd.Series
    cohort: pd.Series
    training: list[str]
    clinical: pd.DataFrame | None = None
    time: pd.Series | None = None
    event: pd.Series | None = None
    comparison: pd.DataFrame | None = None
    held_out: list[str] | None = None

    @property
    def features(self) -> pd.DataFrame:
        """Every feature column: ``X`` and the comparison-only series' features."""
        return self.X if self.comparison is None else self.X.join(self.comparison)

    @property
    def inputs(self) -> pd.DataFrame:
        """``X`` joined with the clinical variables: the inputs of the final, clinical and nomogram models."""
        return self.X if self.clinical is None else self.X.join(self.clinical)

    @property
    def all_inputs(self) -> pd.DataFrame:
        """Every feature (comparison-only series too) and the clinical variables (every model picks its own columns)."""
        return self.features if self.clinical is None else self.features.join(self.clinical)

    @property
    def train(self) -> pd.Index:
        return self.cohort.index[self.cohort.isin(self.training)]

    def other_cohorts(self) -> list[str]:
        """Non-training cohorts with patients: ``held_out``'s order (validation first, then tests), then any other."""
        present = [c for c in pd.unique(self.cohort) if c not in self.training]
        first = [c for c in (self.held_out or []) if c in present]
        return first + [c for c in present if c not in first]


def load_modelling_data(cfg: StudyConfig, patients: pd.DataFrame) -> ModellingData:
    """Read notebook 04's ``modelling_features`` table and the binary endpoint."""
    table = artifacts.MODELLING_FEATURES.read(cfg)
    cohort = table.pop("cohort")
    if cfg.deep_features and artifacts.DEEP_FEATURES.exists(cfg):
        # Notebook 02's deep features (PCA fitted on training patients) join as one more block per series.
        deep = artifacts.DEEP_FEATURES.read(cfg).drop(columns=["cohort"], errors="ignore")
        missing = table.index.difference(deep.index)
        if len(missing):
            raise InputDataError(f"deep features are missing for patients {list(missing[:10])}; re-run the segmentation step (notebook 02)")
        table = table.join(deep)
    # A survival-only study has no binary label: y is the event indicator (only the time-to-event models use it there).
    y = patients.loc[table.index, cfg.endpoints.binary or cfg.endpoints.event].astype(int)
    clinical = patients.loc[table.index, cfg.clinical_variables] if cfg.clinical_variables else None
    clash = [c for c in cfg.clinical_variables if c in table.columns]
    if clash:
        raise InputDataError(f"clinical variables {clash} have the names of feature columns; rename them in the patient table and the config")
    time = event = None
    if cfg.endpoints.time:
        time = patients.loc[table.index, cfg.endpoints.time].astype(float)
        event = patients.loc[table.index, cfg.endpoints.event].astype(int)
    compared = columns_of_series(table.columns, cfg.comparison_series, cfg.series)
    comparison = table[compared] if compared else None
    return ModellingData(table.drop(columns=compared), y, cohort, list(cfg.training_cohorts), clinical, time, event, comparison,
                         held_out=cfg.held_out_cohorts)


def study_blocks(X: pd.DataFrame, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Feature blocks of the model grid: one per series x ROI, habitats of a series pooled.

    Keys read ``"<series> / <roi>"`` (``"<series> / habitats"`` for all habitat ROIs, ``"<series> / deep"``
    for notebook 02's deep features).
    """
    return {name: X[cols] for name, cols in study_block_columns(X.columns, cfg.series, cfg.feature_rois).items()}


def _steps_factory(cfg: StudyConfig, steps_config):
    # Every model's pipeline starts with the study's imputer (fitted inside each training fold).
    def factory():
        return list(build_selector(study_steps(cfg, steps_config)).steps)

    return factory


def run_model_grid(data: ModellingData, cfg: StudyConfig, return_models: bool = False):
    """Cross-validated (training) and held-out AUC of every block x algorithm.

    Held-out AUCs are given for each non-training cohort (``auc_<cohort>``).
    With ``return_models``, also the fitted models keyed by ``(block, algorithm)``.
    The blocks are fitted ``models.workers`` at a time (identical results for any number).
    """
    blocks = study_blocks(data.features, cfg)
    train = data.train
    others = data.other_cohorts()
    grid, models = model_grid(
        {k: v.loc[train] for k, v in blocks.items()}, data.y.loc[train],
        algorithms=list(cfg.models.algorithms), steps_factory=_steps_factory(cfg, cfg.models.grid_steps), search=cfg.models.search,
        cv=cfg.models.cv, random_state=cfg.seed, n_trials=cfg.models.n_trials, smote=cfg.models.smote,
        training_cohort="+".join(data.training), return_models=True, class_weight=cfg.models.class_weight,
        recalibration={a: cfg.models.recalibration_for(a, tuned=cfg.models.search != "none") for a in cfg.models.algorithms},
        n_jobs=cfg.models.workers,
    )
    # Held-out columns per cohort, validation first then tests (no cohort singled out as "the" test set).
    grid = grid.drop(columns=["test_auc", "test_sensitivity", "test_specificity"])
    params = grid.pop("best_params")
    for cohort in others:
        idx = data.cohort.index[data.cohort == cohort]
        y = data.y.loc[idx]
        aucs, sens, spec = [], [], []
        for row in grid.itertuples():
            model = models[(row.block, row.algorithm)]
            p = model.positive_proba(blocks[row.block].loc[idx])
            called = (p >= model.threshold_).to_numpy()  # the training threshold, unchanged
            aucs.append(_auc(y, p))
            sens.append(float(called[y.to_numpy() == 1].mean()) if (y == 1).any() else float("nan"))
            spec.append(float((~called[y.to_numpy() == 0]).mean()) if (y == 0).any() else float("nan"))
        grid[f"auc_{cohort}"], grid[f"sensitivity_{cohort}"], grid[f"specificity_{cohort}"] = aucs, sens, spec
    grid["best_params"] = params
    return (grid, models) if return_models else grid


def _auc(y: pd.Series, p: pd.Series) -> float:
    return float(roc_auc_score(y, p)) if y.nunique() == 2 else float("nan")


def fit_final_model(data: ModellingData, cfg: StudyConfig, algorithm: str | None = None) -> TunedModel:
    """The final model: the signature's selection steps and the configured algorithm (or ``algorithm``), tuned on training.

    Class weights (``models.class_weight``), SMOTE (``models.smote``) and the recalibration
    (``models.recalibration``; its calibrator is fitted on the training patients' out-of-fold scores only) are
    those of the configuration.
    """
    algorithm = algorithm or cfg.models.final_algorithm
    steps = list(build_selector(study_steps(cfg, cfg.signature.steps)).steps)
    classifier = make_classifier(algorithm, random_state=cfg.seed, class_weight=class_weight_for(algorithm, cfg.models.class_weight))
    pipeline = build_pipeline(steps, classifier, smote=cfg.models.smote, random_state=cfg.seed)
    train = data.train
    return tune(pipeline, data.X.loc[train], data.y.loc[train], search=cfg.models.search if cfg.models.search != "none" else "grid",
                cv=cfg.models.cv, n_trials=cfg.models.n_trials, random_state=cfg.seed, training_cohort="+".join(data.training),
                recalibration=cfg.models.recalibration_for(algorithm, tuned=True))  # always tuned (grid when search is none)


def predictions_table(model: TunedModel, data: ModellingData) -> pd.DataFrame:
    """Probability and class at the training threshold for every patient (training: out-of-fold)."""
    proba = model.positive_proba(data.X)
    oof = pd.Series(model.oof_proba_, index=data.train) if not isinstance(model.oof_proba_, pd.Series) else model.oof_proba_
    table = pd.DataFrame({"cohort": data.cohort, "outcome": data.y, "probability": proba})
    table["probability_oof"] = oof.reindex(table.index)
    table["predicted"] = (table["probability"] >= model.threshold_).astype(int)
    table["threshold"] = model.threshold_
    return table


def write_final_model_outputs(model: TunedModel, data: ModellingData, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Save the final model and its predictions; SHAP figures on the training background."""
    preds = predictions_table(model, data)
    report.data(preds, "predictions_final_model")
    path = cfg.report_root / "models" / "final_model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = save_model(model, path)
    report.record(path)
    report.record(sidecar)
    summary = pd.DataFrame([
        {"cohort": c, "patients": int((preds["cohort"] == c).sum()),
         "auc": _auc(preds.loc[preds["cohort"] == c, "outcome"], preds.loc[preds["cohort"] == c, "probability_oof" if c in data.training else "probability"])}
        for c in [*[t for t in data.training if t in set(preds["cohort"])], *data.other_cohorts()]  # training, validation, tests
    ])
    summary["threshold"] = model.threshold_
    summary["cv_auc_mean"], summary["cv_auc_sd"] = model.cv_auc_mean_, model.cv_auc_sd_
    report.table(summary, "final_model_summary", per_cohort=False)
    explanation = shap_explanation(model.pipeline_, data.X.loc[data.train], data.X, random_state=cfg.seed)
    kind = explainer_kind(model.pipeline_)
    n_train = len(data.train)
    report.json({"explainer": kind, "scale": explanation_scale(model.pipeline_), "training_patients": n_train,
                 "background_patients": {"tree": min(n_train, 100), "kernel": min(n_train, 50)}.get(kind, n_train),
                 "explained_patients": len(data.X)}, "shap")
    report.figure(shap_beeswarm_figure(explanation), "shap_beeswarm", per_cohort=False)
    report.figure(shap_bar_figure(explanation), "shap_bar", per_cohort=False)
    others = [i for i, p in enumerate(data.X.index) if data.cohort[p] not in data.training]
    report.figure(shap_waterfall_figure(explanation, others[0] if others else 0), "shap_waterfall_example", per_cohort=False)
    return {"final_model_summary": summary}


def write_grid_outputs(grid: pd.DataFrame, report: ReportWriter) -> pd.DataFrame:
    """Write the model-grid table and its AUC heatmaps (CV on training, held-out per cohort)."""
    table = grid.drop(columns=[c for c in ("best_params",) if c in grid.columns]).copy()
    if "best_params" in grid.columns:
        table["best_params"] = grid["best_params"].astype(str)
    report.table(table, "model_grid", per_cohort=False)
    report.figure(auc_heatmap_figure(grid, value="cv_auc_mean", title="Cross-validated AUC (training)"), "auc_heatmap_cv", per_cohort=False)
    for col in [c for c in grid.columns if c.startswith("auc_")]:
        report.figure(auc_heatmap_figure(grid, value=col, title=f"Held-out AUC ({shown_name(col.removeprefix('auc_'))} cohort)"), f"auc_heatmap_{col.removeprefix('auc_')}", per_cohort=False)
    return table


def fit_stacker(data: ModellingData, cfg: StudyConfig) -> ScoreStacker:
    """Score-level fusion: one logistic model per block (the grid's selection steps), logistic meta-model on their OOF probabilities.

    The base models get the configured class weights and SMOTE; the meta-model is an unweighted logistic regression
    fitted on the training outcome, so it also recalibrates the stack (no separate recalibration).
    """
    train = data.train
    blocks = study_blocks(data.X, cfg)
    factory = _steps_factory(cfg, cfg.models.grid_steps)
    weight = class_weight_for("logistic", cfg.models.class_weight)
    bases = [
        (name, build_pipeline(factory(), make_classifier("logistic", random_state=cfg.seed, class_weight=weight), smote=cfg.models.smote,
                              random_state=cfg.seed), list(block.columns))
        for name, block in blocks.items()
    ]
    return ScoreStacker(estimators=bases, cv=cfg.models.cv, random_state=cfg.seed).fit(data.X.loc[train], data.y.loc[train])


def fusion_comparison(data: ModellingData, cfg: StudyConfig, grid: pd.DataFrame, final: TunedModel, stacker: ScoreStacker | None = None) -> pd.DataFrame:
    """Single-block, feature-level and score-level fusion side by side.

    Rows: the best single block x algorithm of the grid (by training CV AUC),
    feature-level fusion (the final model: the signature's selection over all
    blocks' features), and score-level stacking (:func:`fit_stacker`; fitted
    here when not given). Training AUCs are out-of-fold; other cohorts are
    predicted once by the models refitted on training.
    """
    train = data.train
    stacker = stacker if stacker is not None else fit_stacker(data, cfg)
    best = grid.sort_values("cv_auc_mean", ascending=False).iloc[0]
    rows = [{"model": f"best single block: {best['block']} ({best['algorithm']})", "training_auc_oof": best["oof_auc"],
             **{f"auc_{c}": best.get(f"auc_{c}", float("nan")) for c in data.other_cohorts()}}]
    rows.append({"model": f"feature-level fusion (final model, {final.algorithm or cfg.models.final_algorithm})", "training_auc_oof": final.oof_auc_,
                 **{f"auc_{c}": _auc(data.y[data.cohort == c], final.positive_proba(data.X[data.cohort == c])) for c in data.other_cohorts()}})
    stack_proba = pd.Series(stacker.predict_proba(data.X)[:, 1], index=data.X.index)
    rows.append({"model": f"score-level stacking ({len(stacker.estimators_)} block models)", "training_auc_oof": _auc(data.y.loc[train], pd.Series(stacker.oof_proba_, index=train)),
                 **{f"auc_{c}": _auc(data.y[data.cohort == c], stack_proba[data.cohort == c]) for c in data.other_cohorts()}})
    return pd.DataFrame(rows)


# -- ITH cluster sweep (seed 004 Table S2) -----------------------------------------------------------------------------

def ith_sweep_table_name(cfg: StudyConfig) -> str:
    """``ith_sweep`` (binary endpoint: accuracy, AUC and, with a time endpoint, C-index) or ``ith_sweep_cox`` (a
    survival-only study: the C-index alone), so each table gets the caption and note that describe it."""
    return "ith_sweep_cox" if cfg.survival_only else "ith_sweep"


def ith_sweep(data: ModellingData, cfg: StudyConfig) -> pd.DataFrame | None:
    """``tables/ith_sweep``: a model on each K's ITH score and on the configured K set, per held-out cohort.

    Notebook 03's ITH scores (``tables/ith_scores_by_k``); each model is fitted on the training cohort only
    (``models.ith_sweep.algorithm``, SMOTE when ``models.smote``), thresholded at its training out-of-fold
    Youden threshold. Columns: accuracy and AUC with 95% CIs, training out-of-fold then each held-out cohort
    (validation first, then tests), and with a time-to-event endpoint the C-index of a Cox model on the same
    scores (a survival-only study: the C-index only). None when the sweep is off (``models.ith_sweep: null``), no
    habitats are configured or the ITH scores were not written.
    """
    from helpers.learning.ith_sweep import fit_ith_models, ith_cox_sweep, ith_sweep_table

    sweep = cfg.models.ith_sweep
    if sweep is None or cfg.extraction.habitats is None or not artifacts.ITH_SCORES.exists(cfg):
        return None
    scores = artifacts.ITH_SCORES.read(cfg).drop(columns=["cohort"], errors="ignore").set_index("patient")
    scores.index = scores.index.astype(str)
    ith = scores.reindex(data.y.index.astype(str))
    ith.index = data.y.index
    train = data.train
    if cfg.survival_only:
        # No binary endpoint: accuracy and AUC of the event indicator would ignore censoring; the C-index of a Cox model
        # on each K's score is the sweep's measure.
        cox = ith_cox_sweep(ith, data.time, data.event, data.cohort, data.training, data.other_cohorts(), combined=sweep.combined_k,
                            penalizer=cfg.survival.cox_penalizer, cv=cfg.models.cv, n_bootstrap=cfg.statistics.survival_bootstrap,
                            random_state=cfg.seed)  # fmt: skip
        cox.insert(1, "algorithm", "Cox")
        return cox
    models = fit_ith_models(ith, data.y.loc[train], combined=sweep.combined_k, algorithm=sweep.algorithm, smote=cfg.models.smote,
                            cv=cfg.models.cv, search=cfg.models.search if sweep.tune else "none", n_trials=cfg.models.n_trials,
                            random_state=cfg.seed, training_cohort="+".join(data.training),
                            class_weight=class_weight_for(sweep.algorithm, cfg.models.class_weight),
                            recalibration=cfg.models.recalibration_for(sweep.algorithm, tuned=sweep.tune and cfg.models.search != "none"))  # fmt: skip
    table = ith_sweep_table(models, ith, data.y, data.cohort, data.training, data.other_cohorts(),
                            proportion_ci=cfg.statistics.proportion_ci)  # fmt: skip
    table.insert(1, "algorithm", sweep.algorithm)
    if data.time is not None:
        cox = ith_cox_sweep(ith, data.time, data.event, data.cohort, data.training, data.other_cohorts(), combined=sweep.combined_k,
                            penalizer=cfg.survival.cox_penalizer, cv=cfg.models.cv, n_bootstrap=cfg.statistics.survival_bootstrap,
                            random_state=cfg.seed)  # fmt: skip
        table = table.merge(cox, on="clusters", how="left", validate="one_to_one")
    return table


# -- the validation cohort's choice: the final model's algorithm and threshold ---------------------------------------

def select_final_model(data: ModellingData, cfg: StudyConfig) -> tuple[TunedModel, pd.DataFrame | None]:
    """The final model, with the choice made on the validation cohort when configured.

    ``models.final_selection: configured`` (default): :func:`fit_final_model` with ``final_algorithm``; the
    table (only with a validation cohort) has its one row, the validation AUC reported, nothing chosen; no
    table without a validation cohort. ``validation``: every algorithm of ``models.algorithms`` is fitted like the final model (same
    signature steps, training only) and the one with the highest AUC in the validation cohort is kept
    (ties: the first listed); the table lists every candidate's training CV/out-of-fold AUC and its
    validation AUC. ``models.threshold_from: validation`` then moves the operating threshold to Youden's J
    on the validation cohort's probabilities (the fitted pipeline is unchanged). Test cohorts are never
    used. Write the table as ``tables/final_model_selection`` (:func:`write_final_selection`).
    """
    m = cfg.models
    validation = [c for c in cfg.validation_cohorts if c in set(data.cohort)]
    if (m.final_selection == "validation" or m.threshold_from == "validation") and not validation:
        raise InputDataError(f"models.final_selection/threshold_from = validation, but no patient is in a validation cohort "
                             f"({cfg.validation_cohorts or 'none declared'}); assign patients to it in the manifest")
    if m.final_selection == "configured":
        final, table = fit_final_model(data, cfg), None
        if validation:
            table = _selection_rows({m.final_algorithm: final}, data, validation[0])
            table["selected"] = True
    else:
        idx = data.cohort.index[data.cohort == validation[0]]
        if data.y.loc[idx].nunique() < 2:
            raise InputDataError(f"validation cohort '{validation[0]}' has a single outcome class: the final model cannot be chosen by its AUC")
        candidates = {alg: fit_final_model(data, cfg, algorithm=alg) for alg in dict.fromkeys(m.algorithms)}
        table = _selection_rows(candidates, data, validation[0])
        best = table[f"auc_{validation[0]}"].round(10).idxmax()  # first maximum: the first listed wins a tie
        table["selected"] = table.index == best
        final = candidates[table.loc[best, "candidate_algorithm"]]
    if m.threshold_from == "validation":
        from dataclasses import replace

        from helpers.learning.models import youden_threshold

        idx = data.cohort.index[data.cohort == validation[0]]
        final = replace(final, threshold_=youden_threshold(data.y.loc[idx].to_numpy(), final.positive_proba(data.X.loc[idx]).to_numpy()),
                        threshold_rule=f"Youden's J on the {validation[0]} cohort's probabilities; positive when p >= threshold")
    if table is not None:
        table["selection_rule"] = (f"highest AUC in the {validation[0]} cohort (ties: first listed)" if m.final_selection == "validation"
                                   else "configured (models.final_algorithm); validation AUC reported only")  # fmt: skip
        table["threshold_from"] = ("Youden's J on the validation cohort" if m.threshold_from == "validation"
                                   else "Youden's J on training out-of-fold probabilities")  # fmt: skip
        table["threshold"] = np.where(table["selected"], final.threshold_, table["threshold"])
    return final, table


def _selection_rows(candidates: dict[str, TunedModel], data: ModellingData, validation: str) -> pd.DataFrame:
    idx = data.cohort.index[data.cohort == validation]
    return pd.DataFrame([
        {"candidate_algorithm": alg, "cv_auc_mean": model.cv_auc_mean_, "cv_auc_sd": model.cv_auc_sd_, "oof_auc": model.oof_auc_,
         f"auc_{validation}": _auc(data.y.loc[idx], model.positive_proba(data.X.loc[idx])), "threshold": model.threshold_}
        for alg, model in candidates.items()
    ])


def write_final_selection(table: pd.DataFrame | None, cfg: StudyConfig, report: ReportWriter) -> None:
    """``tables/final_model_selection`` and ``provenance/cohort_use.json`` (what each cohort was used for; read by the methods)."""
    m = cfg.models
    decided = [what for what, on in (("the final model's algorithm", m.final_selection == "validation"),
                                      ("the operating threshold", m.threshold_from == "validation")) if on]  # fmt: skip
    if table is not None:
        report.table(table, "final_model_selection", per_cohort=False)
    report.json({"training": list(cfg.training_cohorts), "validation": list(cfg.validation_cohorts), "test": list(cfg.test_cohorts),
                 "final_selection": m.final_selection, "threshold_from": m.threshold_from, "decided_on_validation": decided,
                 "candidates": list(table["candidate_algorithm"]) if table is not None else [],
                 "selected": str(table.loc[table["selected"], "candidate_algorithm"].iloc[0]) if table is not None else m.final_algorithm},
                "cohort_use")  # fmt: skip


# -- clinical model and clinical-radiomics nomogram -------------------------------------------------------------------

def fit_clinical_models(data: ModellingData, cfg: StudyConfig) -> dict[str, TunedModel]:
    """The clinical model and the clinical-radiomics nomogram (when clinical variables are configured).

    ``clinical``: training-fold imputation, z-scores/one-hot coding and a
    logistic regression with its C tuned like the final model. ``nomogram``
    (``clinical.nomogram`` and signature steps ending in ``lasso``): an
    unpenalised logistic regression (:class:`~helpers.learning.nomogram.NomogramModel`)
    on the clinical variables and the Rad-score, where the Rad-score's
    selection + LASSO is relearned inside every training fold
    (:class:`~helpers.clinical.RadScoreAugmenter`), so the out-of-fold
    probabilities carry no signature fitted on the patients they predict.

    Returns
    -------
    dict
        ``{"clinical": TunedModel, "nomogram": TunedModel}`` (either may be
        absent; empty without clinical variables).
    """
    out: dict[str, TunedModel] = {}
    if data.clinical is None:
        return out
    cc = cfg.clinical
    train = data.train
    y = data.y.loc[train]
    search = cfg.models.search if cfg.models.search != "none" else "grid"
    steps = [
        ("impute", ClinicalImputer(continuous=cc.continuous, categorical=cc.categorical)),
        ("encode", ClinicalEncoder(continuous=cc.continuous, categorical=cc.categorical)),
    ]
    clinical = make_classifier("logistic", random_state=cfg.seed, class_weight=class_weight_for("logistic", cfg.models.class_weight))
    pipe = build_pipeline(steps, clinical, smote=cfg.models.smote, random_state=cfg.seed)
    out["clinical"] = tune(pipe, data.clinical.loc[train], y, search=search, cv=cfg.models.cv, n_trials=cfg.models.n_trials,
                           random_state=cfg.seed, training_cohort="+".join(data.training), categorical=cc.categorical,
                           recalibration=cfg.models.recalibration_for("logistic", tuned=True))
    steps_cfg = study_steps(cfg, cfg.signature.steps)
    if cc.nomogram and steps_cfg and steps_cfg[-1].get("step") == "lasso":
        nomogram = Pipeline([
            ("radscore", RadScoreAugmenter(steps=steps_cfg, clinical=cc.variables)),
            ("impute", ClinicalImputer(continuous=cc.continuous, categorical=cc.categorical)),
            ("classifier", NomogramModel(categorical=cc.categorical)),
        ])
        try:
            # Unweighted, without SMOTE and untuned (maximum likelihood), whatever models.class_weight/smote say: only an explicit
            # sigmoid/isotonic recalibrates it (auto leaves the printed nomogram and the model's probabilities the same).
            out["nomogram"] = tune(nomogram, data.inputs.loc[train], y, search="none", cv=cfg.models.cv, random_state=cfg.seed,
                                   training_cohort="+".join(data.training), categorical=cc.categorical,
                                   recalibration=cfg.models.recalibration if cfg.models.recalibration in ("sigmoid", "isotonic") else "none")
        except SeparationError as exc:
            # An unpenalised model cannot be fitted on these data (e.g. a small training cohort where a variable separates
            # the classes in a fold): the study goes on without the nomogram, and says why.
            warnings.warn(f"clinical-radiomics nomogram not fitted: {exc}", stacklevel=2)
    return out


def write_clinical_outputs(models: dict[str, TunedModel], data: ModellingData, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Coefficient tables of the clinical model and the nomogram, the nomogram figure and its points table."""
    shown: dict[str, pd.DataFrame] = {}
    if "clinical" in models:
        pipe = models["clinical"].pipeline_
        names = pipe.named_steps["encode"].get_feature_names_out()
        clf = pipe.steps[-1][1]
        table = pd.DataFrame({"variable": names, "coefficient": clf.coef_[0]})
        table["odds_ratio"] = np.exp(table["coefficient"])
        table.loc[len(table)] = {"variable": "(intercept)", "coefficient": float(clf.intercept_[0]), "odds_ratio": float("nan")}
        table["scale"] = "per training SD (continuous); vs the reference level (categorical)"
        report.table(table, "clinical_model_coefficients", per_cohort=False)
        shown["clinical_model_coefficients"] = table
    if "nomogram" in models:
        nomo: NomogramModel = models["nomogram"].pipeline_.named_steps["classifier"]
        summary = nomo.summary_.reset_index().rename(columns={"index": "term"})
        report.table(summary, "nomogram_coefficients", per_cohort=False)
        points = nomogram_table(nomo)
        report.table(points.scales, "nomogram_points", per_cohort=False)
        report.figure(nomogram_figure(nomo, points, endpoint=cfg.endpoints.binary), "nomogram", per_cohort=False)
        shown["nomogram_coefficients"] = summary
    for name, model in models.items():
        path = cfg.report_root / "models" / f"{name}_model.joblib"
        path.parent.mkdir(parents=True, exist_ok=True)
        sidecar = save_model(model, path)
        report.record(path)
        report.record(sidecar)
    return shown


# -- the models compared in notebook 06 -----------------------------------------------------------------------------

def comparison_models(
    cfg: StudyConfig,
    final: TunedModel,
    grid: pd.DataFrame | None = None,
    grid_models: dict | None = None,
    stacker: ScoreStacker | None = None,
    clinical_models: dict[str, TunedModel] | None = None,
) -> dict[str, tuple[object, str]]:
    """Models whose predictions notebook 06 compares, with their family.

    Family ``main``: the radiomics model (final), score-level fusion, the
    clinical model and the nomogram; family ``block``: the best algorithm of
    each series x ROI block of the grid (by training CV AUC); family
    ``resolution`` (with ``super_resolution`` configured): the final
    algorithm on each block of the super-resolved series and of its
    normal-resolution parent, so notebook 06 compares NR and SR with the same
    algorithm (not added again when already listed as a block's best).
    """
    models: dict[str, tuple[object, str]] = {}
    if clinical_models and "clinical" in clinical_models:
        models["Clinical"] = (clinical_models["clinical"], "main")
    models[radiomics_model_name(final.algorithm or cfg.models.final_algorithm)] = (final, "main")
    if clinical_models and "nomogram" in clinical_models:
        models["Nomogram (clinical + Rad-score)"] = (clinical_models["nomogram"], "main")
    if stacker is not None:
        models["Score-level fusion"] = (stacker, "main")
    if grid is not None and grid_models:
        best = grid.sort_values(["block", "cv_auc_mean", "algorithm"], ascending=[True, False, True]).groupby("block", sort=False).head(1)
        for row in best.itertuples():
            models[model_name(row.block, row.algorithm)] = (grid_models[(row.block, row.algorithm)], "block")
        sr = cfg.super_resolution
        if sr is not None:
            algorithm = cfg.models.final_algorithm
            for block in sorted(set(grid["block"])):
                parent_block = block.replace(block_name(sr.output_series, ""), block_name(sr.series, ""), 1)
                if not block.startswith(block_name(sr.output_series, "")) or parent_block not in set(grid["block"]):
                    continue
                for name in (parent_block, block):
                    if (name, algorithm) in grid_models:
                        models.setdefault(model_name(name, algorithm), (grid_models[(name, algorithm)], "resolution"))
    return models


def radiomics_model_name(algorithm: str) -> str:
    """How notebook 06's tables name the final radiomics model (e.g. ``Radiomics (logistic)``)."""
    return f"Radiomics ({algorithm})"


def model_predictions(models: dict[str, tuple[object, str]], data: ModellingData) -> pd.DataFrame:
    """Long table of every model's predictions: the input of notebook 06's statistics.

    Columns ``model, family, patient, cohort, outcome, probability,
    threshold, out_of_fold``. Training-cohort probabilities are out-of-fold
    (each from a model that never saw the patient); other cohorts are
    predicted by the model refitted on all training patients. ``threshold`` is
    the model's training (Youden) threshold.
    """
    inputs = data.all_inputs
    train = data.train
    frames = []
    for name, (model, family) in models.items():
        if isinstance(model, ScoreStacker):
            proba = pd.Series(model.predict_proba(inputs)[:, 1], index=inputs.index)
        else:
            proba = model.positive_proba(inputs)
        oof = model.oof_proba_
        oof = oof.reindex(train) if isinstance(oof, pd.Series) else pd.Series(np.asarray(oof), index=train)
        proba = proba.copy()
        proba.loc[train] = oof.loc[train].to_numpy()
        frames.append(pd.DataFrame({
            "model": name, "family": family, "patient": inputs.index, "cohort": data.cohort.loc[inputs.index].to_numpy(),
            "outcome": data.y.loc[inputs.index].to_numpy(), "probability": proba.to_numpy(),
            "threshold": float(model.threshold_), "out_of_fold": inputs.index.isin(train),
        }))
    return pd.concat(frames, ignore_index=True)


# -- time-to-event models ------------------------------------------------------------------------------------------

@dataclass
class SurvivalFit:
    """A survival model fitted on training, with risks and survival curves of every patient.

    ``risk`` and ``survival`` of training patients are out-of-fold (k-fold on
    training); other cohorts are predicted by ``model`` (fitted on all
    training patients). ``groups`` holds the training-derived risk cut-offs.
    """

    name: str
    model: object
    features: list[str]
    risk: pd.Series
    survival: pd.DataFrame
    groups: pd.Series
    cutoffs: tuple[float, ...]


def survival_features(cfg: StudyConfig, X: pd.DataFrame) -> pd.DataFrame:
    """The features selected for survival, transformed by the selection's fitted steps (z-scores learned on training).

    Read from notebook 04's ``models/signature.joblib``: the selection fitted
    against (time, event) on the training cohort (a survival-only study's
    signature, or ``survival.signature_steps``). Only with ``survival.features:
    binary_signature`` (set explicitly) are they the features the signature
    selected for the binary endpoint.
    """
    saved = artifacts.SIGNATURE_MODEL.read(cfg)
    selector = saved["selector"]
    if cfg.survival_only or cfg.survival.features == "survival_signature":
        selector = saved.get("survival_selector")
        if selector is None:
            raise InputDataError("notebook 04 fitted no survival selection (models/signature.joblib has no 'survival_selector'); "
                                 "re-run the signature step, or set survival.features: binary_signature")
    lasso = selector.steps[-1][1]
    features = list(getattr(lasso, "selected_features_", []))
    if not features:
        raise InputDataError("the signature selected no feature (or has no final LASSO step): survival models need selected features")
    Z = selector[:-1].transform(X[list(selector.feature_names_in_)]) if len(selector.steps) > 1 else X
    return Z[features]


def _time_grid(time: pd.Series, event: pd.Series, horizons: tuple[float, ...]) -> list[float]:
    observed = time[event == 1]
    lo, hi = float(observed.quantile(0.05)), float(observed.quantile(0.95))
    grid = set(np.round(np.linspace(lo, hi, 20), 6).tolist()) | {float(h) for h in horizons if lo <= h <= hi}
    return sorted(grid)


def survival_predictions(fits: dict[str, SurvivalFit], data: ModellingData) -> pd.DataFrame:
    """Long table (model, patient, cohort, time, event, risk, risk_group, out_of_fold, S@t...) for notebook 06."""
    frames = []
    for name, fit in fits.items():
        idx = fit.risk.index
        frame = pd.DataFrame({"model": name, "patient": idx, "cohort": data.cohort.loc[idx].to_numpy(), "time": data.time.loc[idx].to_numpy(),
                              "event": data.event.loc[idx].to_numpy(), "risk": fit.risk.to_numpy(), "risk_group": fit.groups.to_numpy(),
                              "out_of_fold": idx.isin(data.train)})
        frames.append(pd.concat([frame, fit.survival.reset_index(drop=True)], axis=1))
    return pd.concat(frames, ignore_index=True)



def _risk_group_label(group: str) -> str:
    """A risk group as figure text: ``low`` -> ``Low risk`` (quartiles ``Q1``... stay as they are)."""
    return f"{group.capitalize()} risk" if group in ("low", "intermediate", "high") else group


def write_km_figures(name: str, slug: str, fit: SurvivalFit, data: ModellingData, cfg: StudyConfig, report: ReportWriter) -> None:
    """``figures/km_<slug>_<cohort>``: Kaplan-Meier curves of one survival model's training-derived risk groups per cohort
    (cohorts where the patients fall in one group only are skipped)."""
    for cohort in pd.unique(data.cohort):
        idx = data.cohort.index[data.cohort == cohort]
        if fit.groups.loc[idx].nunique() < 2:
            continue
        order = [_risk_group_label(g) for g in pd.unique(fit.groups) if g in set(fit.groups.loc[idx])]
        km = km_by_group(data.time.loc[idx], data.event.loc[idx], fit.groups.loc[idx].map(_risk_group_label), order=order)
        report.figure(km_figure(km, title=f"{name}: {shown_name(cohort)} cohort", time_label=f"Time ({cfg.survival.time_unit})"),
                      f"km_{slug}_{cohort}", per_cohort=False)
