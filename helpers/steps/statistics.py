"""Statistics of a study (notebook 06): tables and figures from notebook 05's predictions.

Inputs are the long prediction tables written by notebook 05
(``features/model_predictions`` and, with a time-to-event endpoint,
``features/survival_predictions``): training-cohort values are out-of-fold,
other cohorts are predicted by the models refitted on training, and every
threshold was chosen on training. Nothing here fits a model; every statistic
comes from :mod:`helpers.stats` / :mod:`helpers.learning.survival`, which are pinned to
reference implementations by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from helpers.data import artifacts
from helpers.data.columns import block_name, model_name, parse_model_name, shown_name
from helpers.data.headers import acquisition_records
from helpers.data.supplied_features import patient_cohorts
from helpers.figures.evaluation import (
    calibration_bin_count,
    calibration_figure,
    decision_curve_figure,
    feature_weight_figure,
    forest_figure,
    roc_figure,
)
from helpers.figures.selection import radscore_distribution_by_cohort
from helpers.learning.survival import survival_metrics_table
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig
from helpers.stats import (
    calibration_table,
    net_benefit,
    pairwise_comparison_table,
    performance_table,
    subgroup_performance_table,
    band_distribution,
    table_one,
)
from helpers.steps.survival import ablation_table, td_auc_table

__all__ = [
    "StudyPredictions", "load_predictions", "subgroup_values", "clinical_characteristics", "marker_distribution", "model_statistics", "survival_statistics",
    "resolution_pairs", "resolution_comparison_table", "write_statistics_figures",
]


@dataclass
class StudyPredictions:
    """Notebook 05's predictions (binary models and, when configured, survival models)."""

    binary: pd.DataFrame
    survival: pd.DataFrame | None = None
    radscores: pd.DataFrame | None = None
    radscore_coefficients: pd.DataFrame | None = None
    cohorts: list[str] = field(default_factory=list)

    def main(self) -> pd.DataFrame:
        """Predictions of the main models (clinical, radiomics, nomogram, fusion)."""
        return self.binary[self.binary["family"] == "main"] if "family" in self.binary.columns else self.binary


def load_predictions(cfg: StudyConfig) -> StudyPredictions:
    """Read notebook 05's prediction tables (and notebook 04's Rad-scores and coefficients when present)."""
    # A survival-only study has no binary model predictions (notebook 05 fits the survival models only).
    binary = (artifacts.MODEL_PREDICTIONS.read(cfg) if not cfg.survival_only or artifacts.MODEL_PREDICTIONS.exists(cfg)
              else pd.DataFrame(columns=["model", "family", "patient", "cohort", "outcome", "probability", "threshold", "out_of_fold"]))

    def optional(artifact: artifacts.Artifact) -> pd.DataFrame | None:
        return artifact.read(cfg) if artifact.exists(cfg) else None

    survival = optional(artifacts.SURVIVAL_PREDICTIONS)
    radscores = optional(artifacts.RADSCORES)
    coefs = optional(artifacts.RADSCORE_COEFFICIENTS)
    present = set(binary["cohort"]) | (set(survival["cohort"]) if survival is not None else set())
    # Training first, then the validation cohort, then the tests (each cohort's tables and figures in that order).
    cohorts = [c for c in [*cfg.training_cohorts, *cfg.held_out_cohorts] if c in present]
    return StudyPredictions(binary, survival, radscores, coefs, cohorts)


def subgroup_values(manifest: pd.DataFrame, cfg: StudyConfig, series: str, field_name: str) -> pd.Series:
    """Subgroup label of every patient: an acquisition field of ``series`` (or the manifest's ``centre``/``scanner``)."""
    rows = manifest[manifest["series"] == series]
    if field_name in ("centre", "scanner"):
        if field_name not in rows.columns:
            raise ValueError(f"subgroup field '{field_name}' is not a manifest column; add it or choose an acquisition field")
        values = rows.set_index("patient")[field_name]
    else:
        records = acquisition_records(rows, cfg).set_index("patient")
        if field_name not in records.columns:
            raise ValueError(f"subgroup field '{field_name}' is not an acquisition field; use one of {sorted(records.columns)}")
        values = records[field_name]
    return values.astype(str).replace({"nan": "unknown", "None": "unknown", "": "unknown"}).rename(f"{series} {field_name}")


def clinical_characteristics(patients: pd.DataFrame, manifest: pd.DataFrame, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Table 1: clinical variables per cohort, and per outcome class within each cohort.

    Empty when no clinical variables are configured. Only analysed patients
    (in the manifest or a supplied feature table) are described.
    """
    cc = cfg.clinical
    cohort = patient_cohorts(cfg, patients, manifest)  # patients with images and those of supplied feature tables
    marker = marker_distribution(patients, cohort, cfg)
    if not cc.variables:
        return marker
    table = patients.loc[patients.index.isin(cohort.index), list(cc.variables)].copy()
    table["cohort"] = cohort.reindex(table.index)
    out = {"table_one_by_cohort": table_one(table, "cohort", list(cc.continuous), list(cc.categorical), random_state=cfg.seed)}
    if cfg.endpoints.binary:
        table["outcome"] = patients.loc[table.index, cfg.endpoints.binary].map({0: f"{cfg.endpoints.binary}=0", 1: f"{cfg.endpoints.binary}=1"})
        for name in cfg.cohorts:
            part = table[table["cohort"] == name]
            if part["outcome"].nunique() == 2:
                out[f"table_one_by_outcome_{name}"] = table_one(part, "outcome", list(cc.continuous), list(cc.categorical), random_state=cfg.seed)
    return {**out, **marker}


def marker_distribution(patients: pd.DataFrame, cohort: pd.Series, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """``marker_distribution``: the continuous marker behind a dichotomised endpoint (``endpoints.binary_from``) by band
    and cohort, with the threshold row (seed study 000, Appendix S3). Empty without ``binary_from``."""
    rule = cfg.endpoints.binary_from
    if rule is None:
        return {}
    values = patients.loc[patients.index.isin(cohort.index), rule.column]
    table = band_distribution(values, cohort.reindex(values.index), rule.bands, unit=rule.unit)
    positive = patients.loc[values.index, cfg.endpoints.binary]
    row = {"band": f"{cfg.endpoints.binary} = 1 ({rule.column} {rule.operator} {rule.threshold:g}{rule.unit})"}
    for name in table.columns[1:]:
        members = positive if name == "all" else positive[cohort.reindex(positive.index) == name]
        n, k = int(members.notna().sum()), int((members == 1).sum())
        row[name] = f"{k} ({100 * k / n:.1f})" if n else "0"
    return {"marker_distribution": pd.concat([table, pd.DataFrame([row])], ignore_index=True)}


def resolution_pairs(models: list[str], cfg: StudyConfig) -> pd.DataFrame:
    """Normal- and super-resolution models that differ only in the image series (same ROI block, same algorithm).

    Model names are notebook 05's ``"<series> / <block> (<algorithm>)"``; a
    pair is a model of the super-resolved series (``<series>_SR``) whose
    counterpart on the parent series was also predicted. Columns ``block``,
    ``algorithm``, ``model_nr``, ``model_sr``; empty without
    ``super_resolution`` in the config.
    """
    columns = ["block", "algorithm", "model_nr", "model_sr"]
    sr = cfg.super_resolution
    if sr is None:
        return pd.DataFrame(columns=columns)
    names = set(models)
    prefix = block_name(sr.output_series, "")
    rows = []
    for name in models:
        parsed = parse_model_name(name)
        if parsed is None or not parsed[0].startswith(prefix):
            continue
        roi_block, algorithm = parsed[0].removeprefix(prefix), parsed[1]
        nr = model_name(block_name(sr.series, roi_block), algorithm)
        if nr in names:
            rows.append({"block": roi_block, "algorithm": algorithm, "model_nr": nr, "model_sr": name})
    return pd.DataFrame(rows, columns=columns)


def resolution_comparison_table(preds: StudyPredictions, cfg: StudyConfig) -> pd.DataFrame:
    """NR vs SR per ROI block and cohort: AUCs, DeLong test, continuous NRI and IDI (SR over NR).

    The seed study's "DeLong test and NRI for pairwise comparison" of
    normal- and super-resolution models. Training rows are out-of-fold; each
    pair uses the same algorithm and selection steps, so the image series is
    the only difference. Positive NRI/IDI favour the super-resolved images.
    Empty when no pair was predicted.
    """
    pairs = resolution_pairs(list(pd.unique(preds.binary["model"])), cfg)
    frames = []
    for pair in pairs.itertuples():
        both = preds.binary[preds.binary["model"].isin([pair.model_nr, pair.model_sr])]
        table = pairwise_comparison_table(both, reference=pair.model_nr)
        table.insert(0, "algorithm", pair.algorithm)
        table.insert(0, "block", pair.block)
        frames.append(table.rename(columns={"model_a": "model_sr", "model_b": "model_nr", "auc_a": "auc_sr", "auc_b": "auc_nr",
                                            "auc_difference": "auc_difference_sr_minus_nr"}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def model_statistics(preds: StudyPredictions, cfg: StudyConfig, manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Performance, pairwise comparison (DeLong, NRI, IDI), calibration and subgroup tables.

    Performance covers every compared model (main models and each grid
    block's best); the pairwise comparison and calibration cover the main
    models (or every model against ``statistics.reference_model``).
    """
    sc = cfg.statistics
    tables: dict[str, pd.DataFrame] = {}
    tables["performance"] = performance_table(preds.binary, proportion_ci=sc.proportion_ci, n_bootstrap=sc.n_bootstrap, random_state=cfg.seed)
    main = preds.main()
    if sc.reference_model is not None:
        if sc.reference_model not in set(preds.binary["model"]):
            raise ValueError(f"statistics.reference_model '{sc.reference_model}' is not a compared model; models: {sorted(set(preds.binary['model']))}")
        tables["pairwise_comparison"] = pairwise_comparison_table(preds.binary, reference=sc.reference_model)
    elif main["model"].nunique() > 1:
        tables["pairwise_comparison"] = pairwise_comparison_table(main)
    tables["calibration"] = calibration_table(main)
    resolution = resolution_comparison_table(preds, cfg)
    if not resolution.empty:
        tables["nr_vs_sr_comparison"] = resolution
    for spec in sc.subgroups:
        groups = subgroup_values(manifest, cfg, spec.series, spec.field)
        tables[f"subgroup_performance_{spec.series.lower()}_{spec.field.lower()}"] = subgroup_performance_table(main, groups)
    return {name: with_cohort_roles(table, cfg) for name, table in tables.items()}


#: How a cohort's role is shown next to its name in the statistics tables.
ROLE_LABELS = {"train": "training (out-of-fold)", "validation": "validation", "test": "test"}


def with_cohort_roles(table: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """A ``role`` column after ``cohort`` (training, validation, test) and rows in cohort order: training, validation, tests.

    Validation and test cohorts are labelled apart, so a reader never takes the cohort a choice was made on
    (``models.final_selection``/``threshold_from``) for an untouched test cohort.
    """
    if "cohort" not in table.columns or table.empty or "role" in table.columns:
        return table
    order = {c: i for i, c in enumerate([*cfg.training_cohorts, *cfg.held_out_cohorts])}
    out = table.iloc[np.argsort(table["cohort"].map(order).fillna(len(order)).to_numpy(), kind="stable")].reset_index(drop=True)
    roles = out["cohort"].map(lambda c: ROLE_LABELS.get(cfg.cohorts[c].role, "") if c in cfg.cohorts else "")
    out.insert(out.columns.get_loc("cohort") + 1, "role", roles)
    return out


def survival_statistics(preds: StudyPredictions, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Survival metrics per model and cohort: C-index, time-dependent AUC per horizon, IBS (all with CIs).

    The integrated Brier score uses the saved survival curves at the times
    inside the evaluated cohort's follow-up.
    """
    sp = preds.survival
    if sp is None or sp.empty:
        return {}
    train_cohorts = set(cfg.training_cohorts)
    first = sp[sp["model"] == sp["model"].iloc[0]]
    tr = first[first["cohort"].isin(train_cohorts)]
    s_cols = [c for c in sp.columns if c.startswith("S@")]
    s_times = np.array([float(c[2:]) for c in s_cols])
    frames = []
    for cohort in [c for c in cfg.cohorts if c in set(sp["cohort"])]:
        part = sp[sp["cohort"] == cohort]
        models = list(pd.unique(part["model"]))
        ref = part[part["model"] == models[0]]
        inside = (s_times >= ref["time"].min()) & (s_times < ref["time"].max()) & (s_times < tr["time"].max())
        risks = {m: part.loc[part["model"] == m, "risk"].to_numpy() for m in models}
        probs = {m: part.loc[part["model"] == m, np.array(s_cols)[inside]].to_numpy() for m in models} if inside.sum() >= 2 else None
        table = survival_metrics_table(
            ref["time"].to_numpy(), ref["event"].to_numpy(), risks, cfg.survival.horizons, tr["time"].to_numpy(), tr["event"].to_numpy(),
            survival_probabilities=probs, ibs_times=s_times[inside] if probs else None, n_bootstrap=cfg.statistics.survival_bootstrap,
            random_state=cfg.seed,
        )
        table.insert(1, "cohort", cohort)
        frames.append(table)
    out = {"survival_metrics": pd.concat(frames, ignore_index=True)}
    if any(c not in train_cohorts for c in set(sp["cohort"])):
        # Seed Tables S4 (ablation) and S5 (time-dependent AUC per horizon), validation/test cohorts only.
        out["survival_ablation"] = ablation_table(sp, cfg)
        out["survival_td_auc"] = td_auc_table(sp, cfg)
    return out


def _thresholds(cfg: StudyConfig) -> np.ndarray:
    first, last, step = cfg.statistics.dca_thresholds
    return np.round(np.arange(first, last + step / 2, step), 10)


def _auc_labels(perf: pd.DataFrame, cohort: str) -> dict[str, str]:
    rows = perf[perf["cohort"] == cohort]
    return {r["model"]: f"AUC {r['auc']:.2f}, 95% CI {r['auc_lower']:.2f}-{r['auc_upper']:.2f}" for _, r in rows.iterrows() if np.isfinite(r["auc"])}


def write_statistics_figures(preds: StudyPredictions, tables: dict[str, pd.DataFrame], cfg: StudyConfig, report: ReportWriter) -> list[str]:
    """ROC, calibration and decision curves per cohort (main models), subgroup forest plots, Rad-score and weight figures.

    Returns the names of the figures written.
    """
    written: list[str] = []
    main = preds.main()
    perf = tables["performance"]
    panels = {}
    for cohort in preds.cohorts:
        part = main[main["cohort"] == cohort]
        models = list(pd.unique(part["model"]))
        y = part.loc[part["model"] == models[0], "outcome"].to_numpy()
        if len(np.unique(y)) < 2:
            continue
        scores = {m: part.loc[part["model"] == m, "probability"].to_numpy() for m in models}
        panels[cohort] = (y, scores, _auc_labels(perf, cohort))
        report.figure(calibration_figure(y, scores, n_bins=cfg.statistics.calibration_bins, title=f"Calibration: {shown_name(cohort)}"), f"calibration_{cohort}", per_cohort=False)
        thresholds = _thresholds(cfg)
        curves = {m: net_benefit(y, s, thresholds) for m, s in scores.items()}
        treat_all = next(iter(curves.values()))[["threshold", "treat_all"]].rename(columns={"treat_all": "net_benefit"})
        report.figure(decision_curve_figure({m: c[["threshold", "net_benefit"]] for m, c in curves.items()}, treat_all, title=f"Decision curves: {shown_name(cohort)}"),
                      f"decision_curve_{cohort}", per_cohort=False)
        written += [f"calibration_{cohort}", f"decision_curve_{cohort}"]
    # One ROC figure per cohort: the AUC-with-CI legend labels are long, and side-by-side panels would squeeze the axes.
    for cohort, (y, scores, labels) in panels.items():
        report.figure(roc_figure(y, scores, labels, title=f"ROC: {shown_name(cohort)} (n = {len(y)})"), f"roc_{cohort}", per_cohort=False)
        written.append(f"roc_{cohort}")
    # The bins each calibration figure drew (the figure's rule: at most calibration_bins, about 10 patients per bin), for the methods.
    report.json({"calibration_bins": {c: calibration_bin_count(len(y), cfg.statistics.calibration_bins) for c, (y, _, _) in panels.items()},
                 "calibration_strategy": "quantile", "survival_bootstrap": cfg.statistics.survival_bootstrap}, "statistics")
    written += _resolution_roc_figures(preds, perf, cfg, report)
    for name, table in tables.items():
        if name.startswith("subgroup_performance_") and not table.empty:
            fig_name = name.replace("subgroup_performance_", "subgroup_forest_")
            panel = table.assign(panel=table["model"].astype(str) + ", " + table["cohort"].map(shown_name) + " cohort")
            report.figure(forest_figure(panel, estimate="auc", lower="auc_lower", upper="auc_upper", label="subgroup", group="panel",
                                        xlabel="AUC (95% CI)"), fig_name, per_cohort=False)
            written.append(fig_name)
    if preds.radscores is not None and "radscore" in preds.radscores.columns and "outcome" in preds.radscores.columns:
        rs = preds.radscores.dropna(subset=["radscore", "outcome"])
        p_values = {}
        for cohort, part in rs.groupby("cohort"):
            if part["outcome"].nunique() == 2:
                p_values[cohort] = float(mannwhitneyu(part.loc[part["outcome"] == 1, "radscore"], part.loc[part["outcome"] == 0, "radscore"]).pvalue)
        # Training scores are in-sample (the formula was fitted on them): the panels say so.
        report.figure(radscore_distribution_by_cohort(rs[["radscore", "outcome", "cohort"]], training_cohorts=cfg.training_cohorts, p_values=p_values,
                                                      cohorts=[c for c in preds.cohorts if c in set(rs["cohort"])]), "radscore_distribution", per_cohort=False)
        written.append("radscore_distribution")
    if preds.radscore_coefficients is not None:
        coef = preds.radscore_coefficients
        weights = coef[coef["feature"] != "(intercept)"].set_index("feature")["coefficient"]
        if len(weights):
            report.figure(feature_weight_figure(weights, title="Rad-score feature weights"), "feature_weights", per_cohort=False)
            written.append("feature_weights")
    return written


def _resolution_roc_figures(preds: StudyPredictions, perf: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> list[str]:
    # The seed study's ROC panels of NR and SR models: one figure per cohort with every NR/SR pair.
    pairs = resolution_pairs(list(pd.unique(preds.binary["model"])), cfg)
    written = []
    if pairs.empty:
        return written
    names = [m for pair in pairs.itertuples() for m in (pair.model_nr, pair.model_sr)]
    for cohort in preds.cohorts:
        part = preds.binary[(preds.binary["cohort"] == cohort) & preds.binary["model"].isin(names)]
        if part.empty:
            continue
        y = part.loc[part["model"] == names[0], "outcome"].to_numpy()
        if len(np.unique(y)) < 2:
            continue
        scores = {m: part.loc[part["model"] == m, "probability"].to_numpy() for m in names}
        name = f"roc_nr_vs_sr_{cohort}"
        report.figure(roc_figure(y, scores, _auc_labels(perf, cohort), title=f"ROC, normal vs super-resolution: {shown_name(cohort)} (n = {len(y)})"),
                      name, per_cohort=False)
        written.append(name)
    return written
