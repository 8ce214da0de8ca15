"""Models of a study (notebook 05): the series x ROI x algorithm grid and the final model.

Inputs are notebook 04's stable, harmonised feature table (fitted on the
training cohort). Every model is a pipeline whose selection steps, optional
SMOTE and classifier are refitted inside each cross-validation fold; the
operating threshold is chosen on the training out-of-fold probabilities
(Youden) and applied unchanged to the other cohorts.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.metrics import roc_auc_score

from .config import StudyConfig
from .explain import shap_bar_figure, shap_beeswarm_figure, shap_explanation, shap_waterfall_figure
from .models import ScoreStacker, TunedModel, auc_heatmap_figure, build_pipeline, make_classifier, model_grid, save_model, tune
from .report import ReportWriter
from .selection import build_selector

__all__ = [
    "ModellingData", "load_modelling_data", "study_blocks", "run_model_grid", "fit_final_model", "write_final_model_outputs",
    "fusion_comparison",
]


@dataclass
class ModellingData:
    """Features (all cohorts), outcome and cohorts for modelling."""

    X: pd.DataFrame
    y: pd.Series
    cohort: pd.Series
    training: list[str]

    @property
    def train(self) -> pd.Index:
        return self.cohort.index[self.cohort.isin(self.training)]

    def other_cohorts(self) -> list[str]:
        return [c for c in pd.unique(self.cohort) if c not in self.training]


def load_modelling_data(cfg: StudyConfig, patients: pd.DataFrame) -> ModellingData:
    """Read notebook 04's ``modelling_features`` table and the binary endpoint."""
    path = cfg.report_root / "features" / "modelling_features.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the signature step (notebook 04) first")
    table = pd.read_parquet(path)
    cohort = table.pop("cohort")
    y = patients.loc[table.index, cfg.endpoints.binary].astype(int)
    return ModellingData(table, y, cohort, list(cfg.training_cohorts))


def study_blocks(X: pd.DataFrame, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Feature blocks of the model grid: one per series x ROI, habitats of a series pooled.

    Keys read ``"<series> / <roi>"`` (``"<series> / habitats"`` for all habitat ROIs).
    """
    blocks: dict[str, pd.DataFrame] = {}
    for series in cfg.series:
        for roi in cfg.extraction.rois:
            cols = [c for c in X.columns if c.startswith(f"{series}_{roi}_")]
            if cols:
                blocks[f"{series} / {roi}"] = X[cols]
        habitat = [c for c in X.columns if c.startswith(f"{series}_habitat")]
        if habitat:
            blocks[f"{series} / habitats"] = X[habitat]
    return blocks


def _steps_factory(steps_config):
    def factory():
        return list(build_selector([dict(s) for s in steps_config]).steps)

    return factory


def run_model_grid(data: ModellingData, cfg: StudyConfig, n_jobs: int = 1) -> pd.DataFrame:
    """Cross-validated (training) and held-out AUC of every block x algorithm.

    Held-out AUCs are given for each non-training cohort (``auc_<cohort>``).
    """
    blocks = study_blocks(data.X, cfg)
    train = data.train
    others = data.other_cohorts()
    first_test = data.cohort.index[data.cohort == others[0]] if others else None
    grid, models = model_grid(
        {k: v.loc[train] for k, v in blocks.items()}, data.y.loc[train],
        {k: v.loc[first_test] for k, v in blocks.items()} if first_test is not None else None,
        data.y.loc[first_test] if first_test is not None else None,
        algorithms=list(cfg.models.algorithms), steps_factory=_steps_factory(cfg.models.grid_steps), search=cfg.models.search,
        cv=cfg.models.cv, random_state=cfg.seed, n_trials=cfg.models.n_trials, smote=cfg.models.smote,
        training_cohort="+".join(data.training), return_models=True,
    )
    for cohort in others:
        idx = data.cohort.index[data.cohort == cohort]
        aucs = []
        for row in grid.itertuples():
            aucs.append(_auc(data.y.loc[idx], models[(row.block, row.algorithm)].positive_proba(blocks[row.block].loc[idx])))
        grid[f"auc_{cohort}"] = aucs
    return grid


def _auc(y: pd.Series, p: pd.Series) -> float:
    return float(roc_auc_score(y, p)) if y.nunique() == 2 else float("nan")


def fit_final_model(data: ModellingData, cfg: StudyConfig) -> TunedModel:
    """The final model: the signature's selection steps and the configured algorithm, tuned on training."""
    steps = list(build_selector([dict(s) for s in cfg.signature.steps]).steps)
    pipeline = build_pipeline(steps, make_classifier(cfg.models.final_algorithm, random_state=cfg.seed), smote=cfg.models.smote, random_state=cfg.seed)
    train = data.train
    return tune(pipeline, data.X.loc[train], data.y.loc[train], search=cfg.models.search if cfg.models.search != "none" else "grid",
                cv=cfg.models.cv, n_trials=cfg.models.n_trials, random_state=cfg.seed, training_cohort="+".join(data.training))


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
        for c in pd.unique(preds["cohort"])
    ])
    summary["threshold"] = model.threshold_
    summary["cv_auc_mean"], summary["cv_auc_sd"] = model.cv_auc_mean_, model.cv_auc_sd_
    report.table(summary, "final_model_summary", per_cohort=False)
    explanation = shap_explanation(model.pipeline_, data.X.loc[data.train], data.X, random_state=cfg.seed)
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
        report.figure(auc_heatmap_figure(grid, value=col, title=f"Held-out AUC ({col.removeprefix('auc_')})"), f"auc_heatmap_{col.removeprefix('auc_')}", per_cohort=False)
    return table


def fusion_comparison(data: ModellingData, cfg: StudyConfig, grid: pd.DataFrame, final: TunedModel) -> pd.DataFrame:
    """Single-block, feature-level and score-level fusion side by side.

    Rows: the best single block x algorithm of the grid (by training CV AUC),
    feature-level fusion (the final model: the signature's selection over all
    blocks' features), and score-level stacking (one logistic base model with
    the grid's selection steps per block; a logistic meta-model on their
    out-of-fold training probabilities). Training AUCs are out-of-fold;
    other cohorts are predicted once by the models refitted on training.
    """
    train = data.train
    blocks = study_blocks(data.X, cfg)
    factory = _steps_factory(cfg.models.grid_steps)
    bases = [
        (name, build_pipeline(factory(), make_classifier("logistic", random_state=cfg.seed), smote=cfg.models.smote, random_state=cfg.seed), list(block.columns))
        for name, block in blocks.items()
    ]
    stacker = ScoreStacker(bases, cv=cfg.models.cv, random_state=cfg.seed).fit(data.X.loc[train], data.y.loc[train])
    best = grid.sort_values("cv_auc_mean", ascending=False).iloc[0]
    rows = [{"model": f"best single block: {best['block']} ({best['algorithm']})", "training_auc_oof": best["oof_auc"],
             **{f"auc_{c}": best.get(f"auc_{c}", float("nan")) for c in data.other_cohorts()}}]
    rows.append({"model": f"feature-level fusion (final model, {cfg.models.final_algorithm})", "training_auc_oof": final.oof_auc_,
                 **{f"auc_{c}": _auc(data.y[data.cohort == c], final.positive_proba(data.X[data.cohort == c])) for c in data.other_cohorts()}})
    stack_proba = pd.Series(stacker.predict_proba(data.X)[:, 1], index=data.X.index)
    rows.append({"model": f"score-level stacking ({len(bases)} block models)", "training_auc_oof": _auc(data.y.loc[train], pd.Series(stacker.oof_proba_, index=train)),
                 **{f"auc_{c}": _auc(data.y[data.cohort == c], stack_proba[data.cohort == c]) for c in data.other_cohorts()}})
    return pd.DataFrame(rows)
