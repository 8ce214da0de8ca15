"""Time-to-event models of a study (notebook 05) and their ablation/td-AUC tables (notebook 06).

Every study with a time-to-event endpoint fits this model set: survival-only studies and studies with a binary
endpoint too ("mixed-endpoint"; their radiomics features are ``survival.signature_steps``' selection against (time,
event), or the binary signature's with ``survival.features: binary_signature``). Models (seed study 004, Table
S4/S5), all fitted on the TRAINING cohort:

- ``Clinical``: Cox on the clinical variables (training-fold median/mode imputation, z-scores, one-hot coding);
- ``C-radiomics``: Cox on the radiomics signature's features (selected against (time, event) by notebook 04),
  and ``C-radiomics (RSF)``, a random survival forest on the same features;
- ``ITH``: Cox on the ITH score(s) of notebook 03 (``survival.ith_k``);
- ``DL_F``: Cox on notebook 02's deep features (when present);
- ``<each> + ITH``: the same inputs with the ITH score(s) added (the ablation);
- ``Combined``: clinical + radiomics + deep features + ITH.

Every Cox model is lifelines' penalised Cox (``survival.cox_penalizer`` / ``cox_l1_ratio``) inside a
:class:`~helpers.learning.survival_pipeline.SurvivalPipeline`, so imputation, encoding and z-scores are refitted in
every fold. Training risks and survival curves are out-of-fold (``models.cv`` folds stratified by the event,
seeded); other cohorts are predicted by the model refitted on all training patients; risk groups use cut-offs of
the training out-of-fold risks. A model whose inputs are absent (no clinical variables, no ITH scores, no deep
features) is not fitted, and the reason is listed.

No ``DL_E`` (end-to-end network) model. Seed 004's ablation (Table S4) has none: DL_E appears only beside it, in the
td-AUC table (Table S5). Here it could not enter on equal terms: notebook 02's end-to-end 2.5D network is a binary
classifier (cross-entropy on ``endpoints.binary``; a survival-only study trains none), fitted once on 80% of the
training patients, so it has no out-of-fold training risks (no training risk-group cut-offs, no honest training
C-index) and no survival curves (no IBS). A DL_E survival model would need a network trained on (time, event) with
out-of-fold predictions; deep features enter as ``DL_F``. The methods say so (``methods_optional._survival_model_set``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from helpers.data import artifacts
from helpers.learning.survival import (
    CoxModel,
    RandomSurvivalForest,
    assign_risk_groups,
    harrell_c,
    integrated_brier_score,
    risk_groups,
    time_dependent_auc,
)
from helpers.learning.survival_pipeline import SurvivalPipeline
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig
from helpers.steps.models import ModellingData, SurvivalFit, _time_grid, survival_features, survival_predictions, write_km_figures

__all__ = [
    "MODEL_ORDER", "SurvivalModelSet", "ablation_table", "fit_survival_model_set", "ith_scores", "supported_horizons",
    "survival_input_blocks", "survival_model_specs", "horizon_label", "td_auc_by_horizon", "td_auc_columns", "td_auc_table", "td_auc_wide",
    "write_survival_model_outputs",
]

#: Model names in table order (seed Table S4/S5).
MODEL_ORDER = ("Clinical", "C-radiomics", "ITH", "DL_F", "Clinical + ITH", "C-radiomics + ITH", "DL_F + ITH", "Combined", "C-radiomics (RSF)")
_BLOCK_LABEL = {"clinical": "clinical variables", "radiomics": "radiomics signature", "ith": "ITH score(s)", "deep": "deep features"}


@dataclass
class SurvivalModelSet:
    """The fitted survival models, the inputs of each, and the models not fitted (with the reason)."""

    fits: dict[str, SurvivalFit]
    inputs: dict[str, list[str]]
    skipped: pd.DataFrame


def ith_scores(cfg: StudyConfig, index: pd.Index) -> pd.DataFrame | None:
    """Notebook 03's ITH scores for ``survival.ith_k`` (columns ``ith_k<K>``), or None when absent.

    Raises
    ------
    ValueError
        When patients of ``index`` have no ITH score row.
    """
    if not artifacts.ITH_SCORES.exists(cfg):
        return None
    table = artifacts.ITH_SCORES.read(cfg).set_index("patient")
    cols = [f"ith_k{k}" for k in cfg.ith_k if f"ith_k{k}" in table.columns]
    if not cols:
        return None
    missing = index.difference(table.index)
    if len(missing):
        raise ValueError(f"tables/ith_scores_by_k.csv has no ITH score for patients {list(missing[:10])}; re-run feature extraction (notebook 03)")
    return table.loc[index, cols].astype(float)


def survival_input_blocks(data: ModellingData, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Input blocks of the survival models: ``clinical``, ``radiomics``, ``ith``, ``deep`` (absent ones left out)."""
    blocks: dict[str, pd.DataFrame] = {}
    if data.clinical is not None and cfg.clinical_variables:
        blocks["clinical"] = data.clinical
    blocks["radiomics"] = survival_features(cfg, data.X)
    ith = ith_scores(cfg, data.X.index)
    if ith is not None:
        blocks["ith"] = ith
    deep = [c for c in data.X.columns if "_deep_" in c]
    if deep:
        blocks["deep"] = data.X[deep]
    return blocks


def survival_model_specs(blocks: dict[str, pd.DataFrame]) -> tuple[list[tuple[str, list[str], str]], pd.DataFrame]:
    """(model name, input blocks, estimator kind) of every model whose blocks exist, and the skipped models with reasons."""
    wanted = {
        "Clinical": (["clinical"], "cox"), "C-radiomics": (["radiomics"], "cox"), "ITH": (["ith"], "cox"), "DL_F": (["deep"], "cox"),
        "Clinical + ITH": (["clinical", "ith"], "cox"), "C-radiomics + ITH": (["radiomics", "ith"], "cox"), "DL_F + ITH": (["deep", "ith"], "cox"),
        "Combined": (["clinical", "radiomics", "deep", "ith"], "cox"), "C-radiomics (RSF)": (["radiomics"], "rsf"),
    }
    specs, skipped = [], []
    for name in MODEL_ORDER:
        parts, kind = wanted[name]
        if name == "Combined":
            present = [p for p in parts if p in blocks]
            if len(present) >= 2:
                specs.append((name, present, kind))
            else:
                skipped.append({"model": name, "reason": "fewer than two input blocks available"})
            continue
        absent = [p for p in parts if p not in blocks]
        if absent:
            skipped.append({"model": name, "reason": f"no {', '.join(_BLOCK_LABEL[a] for a in absent)} in this study"})
        else:
            specs.append((name, parts, kind))
    return specs, pd.DataFrame(skipped, columns=["model", "reason"])


def _estimator(kind: str, cfg: StudyConfig):
    sc = cfg.survival
    if kind == "cox":
        return CoxModel(penalizer=sc.cox_penalizer, l1_ratio=sc.cox_l1_ratio)
    return RandomSurvivalForest(n_estimators=sc.rsf_trees, min_samples_leaf=sc.rsf_min_samples_leaf, random_state=cfg.seed)


def fit_survival_model_set(data: ModellingData, cfg: StudyConfig) -> SurvivalModelSet:
    """Fit every survival model of the ablation (module docstring) on the training cohort.

    Returns an empty set when the study has no time-to-event endpoint.
    """
    empty = SurvivalModelSet({}, {}, pd.DataFrame(columns=["model", "reason"]))
    if data.time is None:
        return empty
    blocks = survival_input_blocks(data, cfg)
    specs, skipped = survival_model_specs(blocks)
    train = data.train
    t, e = data.time, data.event
    times = _time_grid(t.loc[train], e.loc[train], cfg.survival.horizons)
    cols = [f"S@{x:g}" for x in times]
    splits = list(StratifiedKFold(cfg.models.cv, shuffle=True, random_state=cfg.seed).split(np.zeros(len(train)), e.loc[train]))
    cc = cfg.clinical
    fits: dict[str, SurvivalFit] = {}
    inputs: dict[str, list[str]] = {}
    failed = []
    for name, parts, kind in specs:
        X = pd.concat([blocks[p] for p in parts], axis=1)

        def make():
            return SurvivalPipeline(estimator=_estimator(kind, cfg), continuous=tuple(cc.continuous), categorical=tuple(cc.categorical))  # noqa: B023

        risk = pd.Series(np.nan, index=X.index)
        surv = pd.DataFrame(np.nan, index=X.index, columns=cols)
        try:
            for fit_idx, val_idx in splits:
                fi, vi = train[fit_idx], train[val_idx]
                est = make().fit(X.loc[fi], t.loc[fi], e.loc[fi])
                risk.loc[vi] = est.predict_risk(X.loc[vi])
                surv.loc[vi] = est.predict_survival_function(X.loc[vi], times)
            model = make().fit(X.loc[train], t.loc[train], e.loc[train])
        except Exception as exc:  # noqa: BLE001 - one model failing (e.g. lifelines convergence) must not stop the others
            warnings.warn(f"survival model {name!r} not fitted: {exc}", stacklevel=2)
            failed.append({"model": name, "reason": f"fit failed: {str(exc)[:200]}"})
            continue
        others = X.index.difference(train, sort=False)
        if len(others):
            risk.loc[others] = model.predict_risk(X.loc[others])
            surv.loc[others] = model.predict_survival_function(X.loc[others], times)
        rg = risk_groups(risk.loc[train].to_numpy(), method=cfg.survival.risk_cutoff)
        groups = pd.Series(assign_risk_groups(risk.to_numpy(), rg.cutoffs, rg.names), index=risk.index)
        fits[name] = SurvivalFit(name, model, list(X.columns), risk, surv, groups, tuple(rg.cutoffs))
        inputs[name] = parts
    if failed:
        skipped = pd.concat([skipped, pd.DataFrame(failed)], ignore_index=True)
    return SurvivalModelSet(fits, inputs, skipped)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_").replace("__", "_").replace("__", "_")


def write_survival_model_outputs(models: SurvivalModelSet, data: ModellingData, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Predictions (input of notebook 06), model inputs, Cox coefficients, risk cut-offs, Kaplan-Meier figures, fitted models."""
    fits = models.fits
    if not fits:
        return {}
    shown: dict[str, pd.DataFrame] = {}
    report.data(survival_predictions(fits, data), "survival_predictions", index=False)
    inputs = pd.DataFrame([{"model": n, "estimator": "random survival forest" if isinstance(f.model.estimator_, RandomSurvivalForest) else "penalised Cox",
                            "inputs": " + ".join(_BLOCK_LABEL[p] for p in models.inputs[n]), "n_variables": len(f.features)}
                           for n, f in fits.items()])
    report.table(inputs, "survival_models", per_cohort=False)
    shown["survival_models"] = inputs
    if not models.skipped.empty:
        report.table(models.skipped, "survival_models_not_fitted", per_cohort=False)
        shown["survival_models_not_fitted"] = models.skipped
    rows = []
    for name, fit in fits.items():
        est = fit.model.estimator_
        if isinstance(est, CoxModel):
            summ = est.summary_
            for term, r in summ.iterrows():
                rows.append({"model": name, "term": term, "coefficient": r["coef"], "hazard_ratio": r["exp(coef)"],
                             "hr_lower": r["exp(coef) lower 95%"], "hr_upper": r["exp(coef) upper 95%"], "p_value": r["p"]})
    coef = pd.DataFrame(rows)
    report.table(coef, "cox_coefficients", per_cohort=False)
    shown["cox_coefficients"] = coef
    cut = pd.DataFrame([{"model": n, "rule": cfg.survival.risk_cutoff, "cutoffs": "; ".join(f"{c:.4g}" for c in f.cutoffs),
                         "groups": "; ".join(pd.unique(f.groups))} for n, f in fits.items()])
    report.table(cut, "survival_risk_cutoffs", per_cohort=False)
    shown["survival_risk_cutoffs"] = cut
    first_cox = next((f.model.estimator_ for f in fits.values() if isinstance(f.model.estimator_, CoxModel)), None)
    first_rsf = next((f.model.estimator_ for f in fits.values() if isinstance(f.model.estimator_, RandomSurvivalForest)), None)
    report.json({"models": {k: v.get_params() for k, v in (("cox", first_cox), ("rsf", first_rsf)) if v is not None},
                 "cv_folds": cfg.models.cv, "risk_cutoff_rule": cfg.survival.risk_cutoff,
                 "n_features": len(fits["C-radiomics"].features) if "C-radiomics" in fits else None,
                 "model_set": {n: models.inputs[n] for n in fits}, "ith_k": cfg.ith_k,
                 "features": "survival_signature" if cfg.survival_only else cfg.survival.features}, "survival")
    for name, fit in fits.items():
        if "+" in name and name != "Combined":
            continue  # the Kaplan-Meier figures of the single-source models and the combined model
        write_km_figures(name, _slug(name), fit, data, cfg, report)
    for name, fit in fits.items():
        report.artifact(fit.model, f"models/survival_{_slug(name)}.joblib")
    return shown


# -- notebook 06: the ablation (Table S4) and time-dependent AUC (Table S5) tables ------------------------------------

def supported_horizons(time: np.ndarray, event: np.ndarray, train_time: np.ndarray, horizons) -> dict[float, str]:
    """Per horizon: '' when the cohort supports a time-dependent AUC there, else the reason it does not.

    A horizon is supported when it lies within the cohort's follow-up (at or after its first and before its last
    observed time), before the last training follow-up time (the censoring weights come from training), and at least
    one event of the cohort occurred at or before it (otherwise there is no case).
    """
    out = {}
    for h in (float(x) for x in horizons):
        if h >= time.max():
            out[h] = f"beyond the cohort's follow-up (last observed time {time.max():g})"
        elif h >= train_time.max():
            out[h] = f"beyond the training follow-up (last training time {train_time.max():g}; censoring weights undefined)"
        elif h < time.min():
            out[h] = f"before the cohort's first observed time ({time.min():g})"
        elif not np.any(event.astype(bool) & (time <= h)):
            out[h] = "no event in the cohort at or before this time (no case)"
        else:
            out[h] = ""
    return out


def _cohort_parts(sp: pd.DataFrame, cfg: StudyConfig):
    train = sp[sp["cohort"].isin(cfg.training_cohorts)]
    first = train[train["model"] == train["model"].iloc[0]]
    cohorts = [c for c in cfg.cohorts if c in set(sp["cohort"]) and c not in cfg.training_cohorts]
    models = [m for m in MODEL_ORDER if m in set(sp["model"])] + [m for m in pd.unique(sp["model"]) if m not in MODEL_ORDER]
    return first["time"].to_numpy(float), first["event"].to_numpy(int), cohorts, models


def _fmt(est: float, lo: float, hi: float, digits: int = 3) -> str:
    if not np.isfinite(est):
        return "-"
    ci = f" ({lo:.{digits}f}-{hi:.{digits}f})" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"{est:.{digits}f}{ci}"


def horizon_label(horizon: float, unit: str) -> str:
    """A horizon as text: ``12 months`` for 12.0 (integers without ``.0``), ``1.5 years`` for 1.5."""
    h = float(horizon)
    number = str(int(h)) if h.is_integer() else f"{h:.10g}"
    return f"{number} {unit}".strip()


def horizon_label_list(horizons, unit: str) -> str:
    """Several horizons with one unit: ``48, 60 months``."""
    return f"{', '.join(horizon_label(h, '') for h in horizons)} {unit}".strip()


def td_auc_by_horizon(sp: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """Time-dependent AUC per model, non-training cohort and horizon (long form, numbers), with 95% bootstrap CIs.

    Each cohort is evaluated in the time range it supports (:func:`supported_horizons`): an unsupported horizon has
    no estimate (NaN, ``AUC (95% CI)`` ``-``) and the reason in ``note`` (never a silent NaN). Values equal
    scikit-survival's ``cumulative_dynamic_auc`` with the training censoring distribution (the cohort's follow-up cut
    at the last training time). :func:`td_auc_table` lays this out like seed Table S5.
    """
    t_tr, e_tr, cohorts, models = _cohort_parts(sp, cfg)
    rows = []
    for cohort in cohorts:
        part = sp[sp["cohort"] == cohort]
        ref = part[part["model"] == models[0]]
        t, e = ref["time"].to_numpy(float), ref["event"].to_numpy(int)
        support = supported_horizons(t, e, t_tr, cfg.survival.horizons)
        ok = [h for h, why in support.items() if not why]
        for model in models:
            risk = part.loc[part["model"] == model, "risk"].to_numpy(float)
            values = {}
            if ok:
                td = time_dependent_auc((t_tr, e_tr), (t, e), risk, ok, n_bootstrap=cfg.statistics.survival_bootstrap, random_state=cfg.seed)
                values = {float(r.time): (float(r.auc), float(r.ci_low), float(r.ci_high)) for r in td.table.itertuples()}
            for h, why in support.items():
                est, lo, hi = values.get(h, (np.nan, np.nan, np.nan))
                rows.append({"model": model, "cohort": cohort, "horizon": h, "auc": est, "auc_lower": lo, "auc_upper": hi,
                             "AUC (95% CI)": _fmt(est, lo, hi), "n": int(t.size), "events": int(e.sum()),
                             "events_by_horizon": int(((t <= h) & (e == 1)).sum()), "note": why})
    return pd.DataFrame(rows)


def td_auc_columns(horizons, unit: str) -> list[str]:
    """Headers of the horizon columns of :func:`td_auc_table`: ``AUC at 12 months (95% CI)``, ..."""
    return [f"AUC at {horizon_label(h, unit)} (95% CI)" for h in horizons]


def td_auc_wide(long: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Seed Table S5's layout of :func:`td_auc_by_horizon`: one row per cohort and model (in the long table's order),
    the horizons side by side (``AUC at 12 months (95% CI)``, ...; ``-`` where the cohort does not support the horizon)
    and ``note``: the cohort's unsupported horizons grouped by reason (``48, 60 months: beyond the cohort's follow-up
    (last observed time 45)``), on the cohort's first row. The reasons depend on the cohort's follow-up only, not on
    the model: repeated on every row they made the note column, squeezed beside the horizons, many lines tall per row.
    Patients and events per cohort are in the ablation table beside it."""
    horizons = [float(h) for h in pd.unique(long["horizon"])]
    columns = td_auc_columns(horizons, unit)
    rows = []
    for (cohort, model), part in long.groupby(["cohort", "model"], sort=False):
        by_h = part.set_index("horizon")
        row = {"model": model, "cohort": cohort}
        reasons: dict[str, list[float]] = {}
        for h, col in zip(horizons, columns, strict=True):
            row[col] = by_h.loc[h, "AUC (95% CI)"]
            if by_h.loc[h, "note"]:
                reasons.setdefault(by_h.loc[h, "note"], []).append(h)
        first = not rows or rows[-1]["cohort"] != cohort
        row["note"] = "; ".join(f"{horizon_label_list(hs, unit)}: {why}" for why, hs in reasons.items()) if first else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "cohort", *columns, "note"])


def td_auc_table(sp: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """Time-dependent AUC of every survival model at each horizon in each validation/test cohort (seed Table S5).

    The supplement's table (``tables/survival_td_auc``): :func:`td_auc_wide` of :func:`td_auc_by_horizon`, horizons
    in ``survival.time_unit``.
    """
    return td_auc_wide(td_auc_by_horizon(sp, cfg), cfg.survival.time_unit)


def ablation_table(sp: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """C-index, AUC and IBS per model and non-training cohort with 95% bootstrap CIs (seed Table S4).

    AUC is ``survival.ablation_auc``: ``mean`` = scikit-survival's mean cumulative/dynamic AUC over the configured
    horizons the cohort supports, or the AUC at one horizon. IBS integrates the Brier score (training censoring
    weights) over the saved survival-curve times inside the cohort's supported range.
    """
    t_tr, e_tr, cohorts, models = _cohort_parts(sp, cfg)
    s_cols = [c for c in sp.columns if c.startswith("S@")]
    s_times = np.array([float(c[2:]) for c in s_cols])
    n_boot, seed = cfg.statistics.survival_bootstrap, cfg.seed
    mode = cfg.survival.ablation_auc
    rows = []
    for cohort in cohorts:
        part = sp[sp["cohort"] == cohort]
        ref = part[part["model"] == models[0]]
        t, e = ref["time"].to_numpy(float), ref["event"].to_numpy(int)
        horizons = cfg.survival.horizons if mode == "mean" else (float(mode),)
        support = supported_horizons(t, e, t_tr, horizons)
        ok = [h for h, why in support.items() if not why]
        inside = (s_times >= t.min()) & (s_times < t.max()) & (s_times < t_tr.max())
        for model in models:
            mp = part[part["model"] == model]
            risk = mp["risk"].to_numpy(float)
            notes = [f"AUC at {horizon_label(h, cfg.survival.time_unit)}: {why}" for h, why in support.items() if why]
            c = harrell_c(t, e, risk, n_bootstrap=n_boot, random_state=seed)
            auc = (np.nan, np.nan, np.nan)
            if ok:
                td = time_dependent_auc((t_tr, e_tr), (t, e), risk, ok, n_bootstrap=n_boot, random_state=seed)
                auc = (td.mean.estimate, td.mean.ci_low, td.mean.ci_high) if mode == "mean" else tuple(td.table.iloc[0][["auc", "ci_low", "ci_high"]])
            ibs = (np.nan, np.nan, np.nan)
            if inside.sum() >= 2:
                b = integrated_brier_score((t_tr, e_tr), (t, e), mp[np.array(s_cols)[inside]].to_numpy(float), s_times[inside],
                                           n_bootstrap=n_boot, random_state=seed)
                ibs = (b.estimate, b.ci_low, b.ci_high)
            else:
                notes.append("IBS: fewer than two survival-curve times inside the cohort's follow-up")
            rows.append({"model": model, "cohort": cohort, "n": int(t.size), "events": int(e.sum()),
                         "c_index": c.estimate, "c_index_lower": c.ci_low, "c_index_upper": c.ci_high, "C-index (95% CI)": _fmt(c.estimate, c.ci_low, c.ci_high),
                         "auc": auc[0], "auc_lower": auc[1], "auc_upper": auc[2], "AUC (95% CI)": _fmt(*auc),
                         "auc_definition": (f"mean td-AUC over {', '.join(f'{h:g}' for h in ok)} {cfg.survival.time_unit}" if mode == "mean"
                                            else f"td-AUC at {float(mode):g} {cfg.survival.time_unit}") if ok else "-",
                         "ibs": ibs[0], "ibs_lower": ibs[1], "ibs_upper": ibs[2], "IBS (95% CI)": _fmt(*ibs),
                         "note": "; ".join(notes)})
    return pd.DataFrame(rows)
