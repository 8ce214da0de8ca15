"""The radiomics signature of a study (notebook 04): stability, harmonisation, selection, Rad-score.

Everything fitted here learns from the TRAINING cohort(s) only and is then
applied unchanged to the other cohorts:

1. failed extraction units follow ``missing_data.failed_units`` (stop, exclude
   the patients, or impute); features missing in more than
   ``missing_data.max_missing_fraction`` of the TRAINING patients are listed and
   left out (missing values in other cohorts never remove a feature); every
   remaining gap is filled by the imputer that starts each pipeline, with
   training statistics only;
2. the ICC filter keeps features reproducible between reader 1 and reader 2
   (or the perturbed mask) on training patients; features without a second
   reading (habitats) pass through unscored;
3. ComBat harmonises each configured series by its batch variable (label-free:
   no outcome covariate, so fitting it once on the training cohort cannot leak
   outcomes into later cross-validation);
4. the configured selection steps (z-score, univariate test, correlation
   filter, mRMR, LASSO) give the signature and its Rad-score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.data import artifacts
from helpers.data.columns import columns_of_series, series_of_column
from helpers.data.headers import acquisition_records, cohort_counts
from helpers.data.manifest import extracts_features
from helpers.data.supplied_features import load_supplied_features
from helpers.errors import ConfigError, InputDataError
from helpers.features.pyradiomics import preset_name
from helpers.figures.harmonization import combat_diagnostics_figure
from helpers.figures.selection import coefficient_figure, lasso_cv_figure, lasso_path_figure
from helpers.learning.harmonize import ComBatHarmonizer
from helpers.learning.selection import (
    CoxLassoSelector,
    binary_only_steps,
    build_selector,
    radscore_formula,
    radscore_table,
    selection_pathway,
)
from helpers.learning.stability import ICCFilter, icc_table, reader_agreement_table, retained_counts
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import HarmonizationGroup, StudyConfig

__all__ = ["StudyFeatures", "Signature", "load_study_features", "batch_labels", "build_signature", "write_signature_outputs",
           "interobserver_agreement"]

_BATCH = "__batch__"
#: Harmonisation batch of patients without images (their features come from a supplied table).
SUPPLIED_BATCH = "supplied table"


@dataclass
class StudyFeatures:
    """Feature tables and outcome of a study, with the training split.

    Attributes
    ----------
    features : DataFrame
        Reader-1 features, indexed by patient (``cohort`` column dropped).
    cohort : Series
        patient -> cohort.
    y : Series
        patient -> binary endpoint.
    reader2 : DataFrame or None
        Second-reader (or perturbed-mask) features of training patients.
    dropped_missing : DataFrame
        Feature columns left out because they miss values in too many training patients, with counts per cohort.
    excluded : DataFrame
        Patients left out because an extraction unit of theirs failed (policy ``exclude_patients``).
    imputed : DataFrame
        Kept features with missing values (imputed inside the pipelines with the training statistic), with counts.
    """

    features: pd.DataFrame
    cohort: pd.Series
    y: pd.Series
    reader2: pd.DataFrame | None
    dropped_missing: pd.DataFrame
    training: list[str] = field(default_factory=list)
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient", "cohort", "failed_units", "reason"]))
    imputed: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: patient -> follow-up time and event (0/1) when the study has a time-to-event endpoint.
    time: pd.Series | None = None
    event: pd.Series | None = None
    supplied: dict | None = None

    @property
    def train_index(self) -> pd.Index:
        return self.cohort.index[self.cohort.isin(self.training)]


def load_study_features(cfg: StudyConfig, patients: pd.DataFrame) -> StudyFeatures:
    """Read notebook 03's feature tables and the binary endpoint, applying the study's missing-data policy.

    Failed extraction units (``features/extraction_diagnostics``) follow
    ``missing_data.failed_units``: ``stop`` raises (naming the failures and
    the fix), ``exclude_patients`` leaves every patient with a failed unit
    out (listed in :attr:`StudyFeatures.excluded`), ``impute`` keeps them.
    Then the feature set is decided on the TRAINING patients only: a feature
    missing in more than ``missing_data.max_missing_fraction`` of them is
    dropped (listed with its counts per cohort); every other missing value,
    in any cohort, is left for the imputer inside the model pipelines.
    Missing values in validation/test patients never remove a feature.

    Raises
    ------
    FileNotFoundError
        When notebook 03 has not produced the feature table yet.
    InputDataError
        Failed units under the ``stop`` policy, or a study without a binary endpoint.
    """
    preset = preset_name(cfg.signature.preset)
    extracted = extracts_features(cfg) or not cfg.feature_tables
    table = reader2 = supplied = None
    if extracted:
        table = artifacts.FEATURES.read(cfg, preset=preset)
        reader2 = artifacts.FEATURES_READER2.read(cfg, preset=preset).drop(columns="cohort") if artifacts.FEATURES_READER2.exists(cfg, preset=preset) else None
    if cfg.feature_tables:
        # Supplied tables (helpers.data.supplied_features): all the features, or extra blocks / cohorts joined to the extracted ones.
        supplied = load_supplied_features(cfg, patients, known_cohort=None if table is None else table["cohort"])
        table, reader2 = _with_supplied(table, reader2, supplied.features, supplied.reader2)
    cohort = table.pop("cohort")
    endpoint = cfg.endpoints.binary
    if endpoint is None and cfg.endpoints.time is None:
        raise InputDataError("the signature needs an endpoint: set endpoints.binary or endpoints.time/event in the study config")
    excluded = _apply_failed_unit_policy(cfg, preset, cohort) if extracted else pd.DataFrame(columns=["patient", "cohort", "failed_units", "reason"])
    if len(excluded):
        keep_rows = table.index.difference(excluded["patient"], sort=False)
        table, cohort = table.loc[keep_rows], cohort.loc[keep_rows]
        if reader2 is not None:
            reader2 = reader2.loc[reader2.index.difference(excluded["patient"], sort=False)]
    # A survival-only study has no binary label: y is then the event indicator (the selection is fitted on (time, event)).
    y = patients.loc[table.index, endpoint or cfg.endpoints.event].astype(int).rename(endpoint or cfg.endpoints.event)
    training = list(cfg.training_cohorts)
    missing = missing_value_table(table, cohort, cfg)
    is_dropped = missing["dropped"].to_numpy(dtype=bool)
    cols = missing.loc[is_dropped, "feature"].tolist()
    dropped = missing.loc[is_dropped].drop(columns="dropped").reset_index(drop=True)
    imputed = missing.loc[~is_dropped].drop(columns="dropped").reset_index(drop=True)
    keep = table.columns.difference(cols, sort=False)
    if reader2 is not None:
        # Missing second readings (a failed unit) are handled per feature by the ICC; columns are not dropped.
        reader2 = reader2[[c for c in keep if c in reader2.columns]]
    out = StudyFeatures(table[keep], cohort, y, reader2, dropped, training=training, excluded=excluded, imputed=imputed,
                        supplied=None if supplied is None else supplied.record)
    if cfg.endpoints.time is not None:
        out.time = patients.loc[table.index, cfg.endpoints.time].astype(float).rename("time")
        out.event = patients.loc[table.index, cfg.endpoints.event].astype(int).rename("event")
    return out


def _with_supplied(table: pd.DataFrame | None, reader2: pd.DataFrame | None, features: pd.DataFrame,
                   supplied_reader2: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Extracted and supplied features joined by patient (one value per patient and feature).

    Raises
    ------
    InputDataError
        A patient has a value of the same feature in both (the same block extracted and supplied).
    """
    if table is None:
        return features.copy(), supplied_reader2
    shared = [c for c in features.columns if c != "cohort" and c in table.columns]
    both = table[shared].notna() & features[shared].reindex(table.index).notna() if shared else pd.DataFrame()
    if shared and both.to_numpy().any():
        patient = both.index[both.any(axis=1).to_numpy()][0]
        column = both.columns[both.loc[patient].to_numpy()][0]
        raise InputDataError(f"patient {patient} has feature {column} both extracted (notebook 03) and in a supplied feature table; "
                             "supply only blocks or patients that are not extracted (remove the rows or columns from the table)")
    joined = pd.concat([table, features], axis=0).groupby(level=0, sort=True).first()
    joined = joined[["cohort", *[c for c in joined.columns if c != "cohort"]]]
    if supplied_reader2 is not None:
        reader2 = supplied_reader2 if reader2 is None else pd.concat([reader2, supplied_reader2], axis=0).groupby(level=0, sort=True).first()
    return joined, reader2


def missing_value_table(table: pd.DataFrame, cohort: pd.Series, cfg: StudyConfig) -> pd.DataFrame:
    """Missing values per feature and cohort, and the training-only decision to drop it.

    A feature is dropped when the share of TRAINING patients without a value
    exceeds ``missing_data.max_missing_fraction``; the other cohorts' counts
    are reported but take no part in the decision (a test patient's missing
    value must not change the training feature set).

    Returns
    -------
    DataFrame
        One row per feature with any missing value: ``feature``,
        ``missing_<cohort>`` for every cohort, ``missing_fraction_training``,
        ``dropped`` (bool) and ``rule``.
    """
    missing = table.isna()
    cols = missing.columns[missing.any().to_numpy()]
    train = cohort.isin(cfg.training_cohorts).reindex(table.index, fill_value=False).to_numpy()
    n_train = int(train.sum())
    limit = cfg.missing_data.max_missing_fraction
    frac = missing.loc[train, cols].mean() if n_train else pd.Series(1.0, index=cols)
    out = pd.DataFrame({"feature": list(cols)})
    for c in cfg.cohorts:
        out[f"missing_{c}"] = [int(missing.loc[(cohort == c).reindex(table.index, fill_value=False).to_numpy(), f].sum()) for f in cols]
    out["missing_fraction_training"] = frac.round(4).to_numpy(dtype=float)
    out["dropped"] = (frac > limit).to_numpy(dtype=bool)
    out["rule"] = [
        f"missing in {f:.0%} of training patients (> {limit:.0%}): dropped" if f > limit
        else f"missing in {f:.0%} of training patients (<= {limit:.0%}): kept, imputed with the training {cfg.missing_data.imputation}"
        for f in (frac.to_numpy() if len(cols) else [])
    ]
    return out


def _apply_failed_unit_policy(cfg: StudyConfig, preset: str, cohort: pd.Series) -> pd.DataFrame:
    """Patients excluded because an extraction unit of theirs failed (empty unless the policy is ``exclude_patients``).

    Raises
    ------
    InputDataError
        Under the ``stop`` policy when units failed (the runner stops before this step; this guards notebooks run by hand).
    """
    columns = ["patient", "cohort", "failed_units", "reason"]
    if not artifacts.EXTRACTION_DIAGNOSTICS.exists(cfg):
        return pd.DataFrame(columns=columns)
    diag = artifacts.EXTRACTION_DIAGNOSTICS.read(cfg)
    failed = diag[(diag["status"] == "failed") & (diag["preset"] == preset)]
    if failed.empty:
        return pd.DataFrame(columns=columns)
    policy = cfg.missing_data.failed_units
    patients = sorted(failed["patient"].astype(str).unique())
    if policy == "stop":
        shown = ", ".join(patients[:8]) + (f" and {len(patients) - 8} more" if len(patients) > 8 else "")
        raise InputDataError(
            f"{len(failed)} extraction unit(s) of preset {preset} failed (patients {shown}; tables/extraction_failures.csv gives "
            "each reason); fix the inputs and re-run feature extraction, or set missing_data.failed_units to 'exclude_patients' "
            "or 'impute' in the study config")
    if policy == "impute":
        return pd.DataFrame(columns=columns)
    reasons = artifacts.EXTRACTION_FAILURES.read(cfg) if artifacts.EXTRACTION_FAILURES.exists(cfg) else pd.DataFrame(columns=["patient", "reason"])
    rows = []
    for patient in patients:
        mine = failed[failed["patient"].astype(str) == patient]
        units = [f"{r.series}/{r.roi}" + ("" if r.reader == "reader1" else f" ({r.reader})") for r in mine.itertuples()]
        why = reasons.loc[reasons["patient"] == patient, "reason"]
        first = str(why.iloc[0]) if len(why) else ""
        rows.append({"patient": patient, "cohort": str(cohort.get(patient, "")), "failed_units": "; ".join(units),
                     "reason": first if len(first) <= 200 else first[:197] + "..."})
    return pd.DataFrame(rows, columns=columns)


def study_steps(cfg: StudyConfig, steps) -> list[dict]:
    """The configured selection steps, preceded by the study's imputer (``missing_data.imputation``).

    Every pipeline of the study starts with it, so missing values are filled
    with statistics of the rows each fit sees (training, or the training part
    of a cross-validation fold); on complete data it changes nothing.
    """
    steps = [dict(s) for s in steps]
    if steps and steps[0].get("step") == "impute":
        return steps
    return [{"step": "impute", "strategy": cfg.missing_data.imputation}, *steps]


def batch_labels(manifest: pd.DataFrame, cfg: StudyConfig, group: HarmonizationGroup, training: pd.Index) -> pd.Series:
    """Batch of every patient for one harmonisation group.

    Training batches with fewer than ``min_batch_size`` patients are merged
    into ``other`` (ComBat cannot estimate a batch of one); batches met only
    outside training keep their name (the unseen-batch policy applies).
    """
    # A derived series (super-resolved images) has the acquisition of the series it was computed from.
    rows = manifest[manifest["series"] == cfg.source_series(group.series)]
    if group.batch_field in ("centre", "scanner"):
        values = rows.set_index("patient")[group.batch_field]
    else:
        records = acquisition_records(rows, cfg).set_index("patient")
        if group.batch_field not in records.columns:
            raise ValueError(f"batch_field '{group.batch_field}' is not an acquisition field; use one of {sorted(records.columns)}")
        values = records[group.batch_field]
    labels = values.astype(str).replace({"nan": "unknown", "None": "unknown", "": "unknown"})
    sizes = labels[labels.index.isin(training)].value_counts()
    small = set(sizes[sizes < group.min_batch_size].index)
    return labels.where(~labels.isin(small), "other").rename(_BATCH)


@dataclass
class Signature:
    """The fitted signature and everything notebook 04 reports."""

    data: StudyFeatures
    icc: pd.DataFrame | None
    icc_filter: ICCFilter | None
    retained: pd.DataFrame | None
    harmonizers: dict[str, ComBatHarmonizer]
    batches: dict[str, pd.Series]
    before_harmonization: pd.DataFrame
    harmonized: pd.DataFrame
    selector: object
    pathway: pd.DataFrame
    formula: str
    radscores: pd.DataFrame
    #: The selection fitted against (time, event) (survival-only: the signature itself; with both endpoints:
    #: ``survival.signature_steps``), its pathway, Cox Rad-score formula and Rad-scores; None without survival selection.
    survival_selector: object = None
    survival_pathway: pd.DataFrame | None = None
    survival_formula: str = ""
    survival_radscores: pd.DataFrame | None = None

    def modelling_table(self) -> pd.DataFrame:
        """Stable, harmonised features of all cohorts (input of the model grid)."""
        return self.harmonized


def _harmonize(X: pd.DataFrame, train: pd.Index, groups: tuple[HarmonizationGroup, ...], manifest: pd.DataFrame, cfg: StudyConfig):
    out = X.copy()
    harmonizers, batches = {}, {}
    for group in groups:
        cols = columns_of_series(X.columns, group.series, cfg.series)
        if not cols:
            continue
        # Patients of supplied feature tables have no image (no acquisition record): their table is a batch of its own
        # (unseen in training for a supplied external cohort: the group's unseen_batch policy applies).
        batch = batch_labels(manifest, cfg, group, train).reindex(X.index).fillna(SUPPLIED_BATCH)
        frame = X[cols].assign(**{_BATCH: batch})
        combat = ComBatHarmonizer(batch_col=_BATCH, unseen_batch=group.unseen_batch).fit(frame.loc[train])
        out[cols] = combat.transform(frame)[cols]
        harmonizers[group.series], batches[group.series] = combat, batch
    return out, harmonizers, batches


def build_signature(cfg: StudyConfig, manifest: pd.DataFrame, patients: pd.DataFrame) -> Signature:
    """Fit the ICC filter, ComBat and the selection pipeline on the training cohort.

    Returns
    -------
    Signature
        Fitted steps, the harmonised feature table of all cohorts, the
        selection pathway, the Rad-score formula and per-patient Rad-scores.
    """
    data = load_study_features(cfg, patients)
    train = data.train_index
    X = data.features
    icc = icc_filter = retained = None
    if cfg.signature.icc is not None and data.reader2 is not None and not data.reader2.empty:
        r2 = data.reader2.loc[data.reader2.index.intersection(train)]
        icc = icc_table(X.loc[r2.index, r2.columns], r2, icc_type=cfg.signature.icc.icc_type)
        icc_cfg = cfg.signature.icc
        icc_filter = ICCFilter(threshold=icc_cfg.threshold, icc_type=icc_cfg.icc_type, ci_bound=icc_cfg.ci_bound, unscored="passthrough")
        icc_filter.fit(X.loc[train], icc=icc)
        groups = sorted({(s, r) for s in cfg.series for r in cfg.feature_rois if any(c.startswith(f"{s}_{r}_") for c in icc.index)})
        retained = retained_counts(icc, cfg.signature.icc.threshold, groups, ci_bound=cfg.signature.icc.ci_bound)
        X = icc_filter.transform(X)
    harmonized, harmonizers, batches = _harmonize(X, train, cfg.signature.harmonization, manifest, cfg)
    # Comparison-only series (super-resolved images) are filtered and harmonised like the others but stay out of the
    # signature: they are compared in the model grid and notebook 06's NR-vs-SR table.
    eligible = [c for c in harmonized.columns if series_of_column(c, cfg.series) not in cfg.comparison_series]
    table = harmonized[eligible].assign(cohort=data.cohort)
    survival = None
    if cfg.survival_only or (cfg.endpoints.time is not None and cfg.survival.features == "survival_signature"):
        survival = _fit_survival_selection(cfg, harmonized.loc[train, eligible], data, table)
    if cfg.survival_only:
        selector, pathway, formula, radscores = survival
    else:
        selector = build_selector(study_steps(cfg, cfg.signature.steps))
        selector.fit(harmonized.loc[train, eligible], data.y.loc[train])
        # A Rad-score needs a linear final step (LASSO/ElasticNet); without one the signature is the selected feature set.
        linear = hasattr(selector.steps[-1][1], "coef_")
        radscores = radscore_table(table, selector, outcome=data.y) if linear else table[["cohort"]].assign(outcome=data.y)
        pathway, formula = selection_pathway(selector), radscore_formula(selector) if linear else ""
    sig = Signature(
        data=data, icc=icc, icc_filter=icc_filter, retained=retained, harmonizers=harmonizers, batches=batches,
        before_harmonization=X, harmonized=harmonized, selector=selector, pathway=pathway, formula=formula, radscores=radscores,
    )
    if survival is not None:
        sig.survival_selector, sig.survival_pathway, sig.survival_formula, sig.survival_radscores = survival
    return sig


def survival_selection_steps(cfg: StudyConfig) -> list[dict]:
    """The steps fitted against (time, event): ``signature.steps`` of a survival-only study, else ``survival.signature_steps``.

    Raises
    ------
    ConfigError
        When a step needs a binary label (univariate t-test/Mann-Whitney, mRMR, logistic LASSO, or a correlation filter
        ranking by a binary test), naming the steps and the fix.
    """
    where = "signature.steps" if cfg.survival_only else "survival.signature_steps"
    steps = cfg.signature.steps if cfg.survival_only else cfg.survival.signature_steps
    bad = binary_only_steps(steps)
    if bad:
        why = "the study's endpoint is time-to-event only (no endpoints.binary)" if cfg.survival_only else "they are fitted against (time, event)"
        raise ConfigError(
            f"{where} has steps that need a binary label, but {why}: {'; '.join(bad)}. Use survival steps, e.g. "
            "[{step: zscore}, {step: univariate_cox, p_threshold: 0.05}, {step: correlation, threshold: 0.9, relevance: order}, "
            "{step: cox_lasso, lambda_rule: 1se}]")
    return study_steps(cfg, steps)


def _fit_survival_selection(cfg: StudyConfig, X_train: pd.DataFrame, data: StudyFeatures, table: pd.DataFrame):
    """Fit the survival selection on the training rows; (selector, pathway, Cox Rad-score formula, Rad-scores of every patient)."""
    selector = build_selector(survival_selection_steps(cfg))
    target = pd.DataFrame({"time": data.time, "event": data.event}).loc[X_train.index]
    try:
        selector.fit(X_train, target)
    except ValueError as exc:
        where = "signature.steps" if cfg.survival_only else "survival.signature_steps"
        hint = "" if cfg.survival_only else ", or set survival.features: binary_signature to use the binary signature's features"
        raise InputDataError(f"the selection against (time, event) ({where}) failed on the training cohort "
                             f"({int(target['event'].sum())} events in {len(target)} patients): {exc}; adjust {where}{hint}") from exc
    linear = hasattr(selector.steps[-1][1], "coef_")
    radscores = table[["cohort"]].assign(time=data.time, event=data.event)
    if linear:
        radscores["radscore"] = radscore_table(table, selector)["radscore"]
    return selector, selection_pathway(selector), radscore_formula(selector) if linear else "", radscores


def _diagnostic_features(combat: ComBatHarmonizer, X: pd.DataFrame, n: int = 4) -> list[str]:
    # The features whose batch means differ most before harmonisation show what ComBat does.
    gamma = combat.gamma_hat_.abs().max(axis=0).sort_values(ascending=False)
    return [f for f in gamma.index if f in X.columns][:n]


def write_signature_outputs(sig: Signature, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Write notebook 04's tables, figures and the fitted signature; return tables for display."""
    shown: dict[str, pd.DataFrame] = {}
    if sig.data.supplied is not None:
        # What the methods say about the supplied tables (files, hashes, software, counts): provenance/supplied_features.json.
        report.json(sig.data.supplied, "supplied_features")
        counts = pd.DataFrame([{"file": t["file"], "software": t["software"], "series": b["series"], "roi": b["roi"], "features": b["features"],
                                "patients": b["patients"], "second_reader_patients": (t["reader2"] or {}).get("patients", 0)}
                               for t in sig.data.supplied["tables"] for b in t["blocks"]])
        report.table(counts, "supplied_feature_tables", per_cohort=False)
        shown["supplied_feature_tables"] = counts
        if cfg.manifest is None:
            # No acquisition step in a features-only study: the patients per cohort and outcome class (CLEAR item 15) come from here.
            pseudo = pd.DataFrame({"patient": sig.data.cohort.index, "cohort": sig.data.cohort.to_numpy(), "series": ""})
            split = cohort_counts(pseudo, sig.data.y.to_frame(), cfg)
            split = split.drop(columns=[c for c in split.columns if c.startswith("scans ")])
            report.table(split, "cohort_split_counts", per_cohort=False)
            shown["cohort_split_counts"] = split
    if len(sig.data.excluded):
        report.table(sig.data.excluded, "excluded_patients", per_cohort=False)
        shown["excluded_patients"] = sig.data.excluded
    if not sig.data.dropped_missing.empty:
        report.table(sig.data.dropped_missing, "features_dropped_missing_values", per_cohort=False)
        shown["features_dropped_missing_values"] = sig.data.dropped_missing
    if not sig.data.imputed.empty:
        report.table(sig.data.imputed, "features_imputed_missing_values", per_cohort=False)
        shown["features_imputed_missing_values"] = sig.data.imputed
    if sig.icc is not None:
        report.table(sig.icc.reset_index(), "icc_per_feature", per_cohort=False)
        report.table(sig.retained, "icc_retained_counts", per_cohort=False)
        shown["icc_retained_counts"] = sig.retained
    for series, combat in sig.harmonizers.items():
        batch = sig.batches[series]
        sizes = batch.groupby([sig.data.cohort.reindex(batch.index), batch]).size().rename("patients").reset_index()
        sizes.columns = ["cohort", "batch", "patients"]
        report.table(sizes, f"combat_batches_{series.lower()}", per_cohort=False)
        shown[f"combat_batches_{series.lower()}"] = sizes
        feats = _diagnostic_features(combat, sig.before_harmonization)
        field = next(g.batch_field for g in cfg.signature.harmonization if g.series == series)
        fig = combat_diagnostics_figure(sig.before_harmonization[feats], sig.harmonized[feats], batch.rename(f"{series} {field}"), feats)
        report.figure(fig, f"combat_diagnostics_{series.lower()}", per_cohort=False)
    report.table(sig.pathway, "selection_pathway", per_cohort=False)
    shown["selection_pathway"] = sig.pathway
    lasso = sig.selector.steps[-1][1]
    if hasattr(lasso, "path_"):
        report.figure(lasso_path_figure(lasso), "lasso_path", per_cohort=False)
        report.figure(lasso_cv_figure(lasso), "lasso_cv", per_cohort=False)
        coef = lasso.coef_[lasso.coef_ != 0]
        report.figure(coefficient_figure(coef), "radscore_coefficients", per_cohort=False)
        coefs = _coefficient_table(lasso)
        report.table(coefs, "radscore_coefficients", per_cohort=False)
        shown["radscore_coefficients"] = coefs
    if sig.formula:
        report.text(sig.formula + "\n", "radscore_formula.txt")
    report.data(sig.radscores, "radscores")
    if "radscore" in sig.radscores.columns:
        shown["radscore_by_cohort"] = sig.radscores.groupby("cohort")["radscore"].describe().reset_index()
    if sig.survival_selector is not None and sig.survival_selector is not sig.selector:
        # Both endpoints: the selection fitted against (time, event) for the survival models (survival.signature_steps).
        report.table(sig.survival_pathway, "survival_selection_pathway", per_cohort=False)
        shown["survival_selection_pathway"] = sig.survival_pathway
        final = sig.survival_selector.steps[-1][1]
        if hasattr(final, "coef_"):
            coefs = _coefficient_table(final)
            report.table(coefs, "survival_radscore_coefficients", per_cohort=False)
            shown["survival_radscore_coefficients"] = coefs
        if sig.survival_formula:
            report.text(sig.survival_formula + "\n", "survival_radscore_formula.txt")
        report.data(sig.survival_radscores, "survival_radscores")
    report.artifact({"selector": sig.selector, "icc_filter": sig.icc_filter, "harmonizers": sig.harmonizers,
                     "survival_selector": sig.survival_selector}, "models/signature.joblib")
    report.data(sig.harmonized.assign(cohort=sig.data.cohort), "modelling_features")
    return shown


def _coefficient_table(final) -> pd.DataFrame:
    """Non-zero coefficients of a LASSO step: with the intercept (logistic) or with hazard ratios (Cox, no intercept)."""
    coef = final.coef_[final.coef_ != 0]
    if isinstance(final, CoxLassoSelector):
        return pd.DataFrame({"feature": list(coef.index), "coefficient": coef.to_numpy(), "hazard_ratio": np.exp(coef.to_numpy()),
                             "scale": "per training SD of the feature"})
    return pd.DataFrame({"feature": ["(intercept)", *coef.index], "coefficient": [final.intercept_, *coef.values]})


def interobserver_agreement(cfg: StudyConfig, patients: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Interobserver agreement of the two readers' semantic/clinical scores (``reader_scores`` in the config).

    ICC (the configured type, F-based 95% CI) for continuous and ordinal
    scores, Cohen's kappa for nominal ones (:func:`helpers.stability.reader_agreement_table`).
    ``None`` when no reader scores are configured.

    Raises
    ------
    InputDataError
        The table is missing, has no ``reader`` column or not exactly two
        readers, lacks a configured variable, lists a patient twice for a
        reader, or names patients absent from the patient table.
    """
    rs = cfg.reader_scores
    if rs is None:
        return None
    path = cfg.path(rs.table)
    if not path.is_file():
        raise InputDataError(f"reader-score table {path} not found: create it or fix 'reader_scores.table' in the study config")
    pid = cfg.patient_id_column
    table = pd.read_csv(path, dtype={pid: str})
    missing = [c for c in (pid, "reader", *rs.variables) if c not in table.columns]
    if missing:
        raise InputDataError(f"{path.name}: columns {missing} are missing; it needs '{pid}', 'reader' and one column per variable in 'reader_scores.variables'")
    readers = sorted(table["reader"].astype(str).unique())
    if len(readers) != 2:
        raise InputDataError(f"{path.name}: the 'reader' column must hold exactly two readers, found {readers}")
    dup = table[table.duplicated([pid, "reader"], keep=False)]
    if len(dup):
        rows = [int(i) + 2 for i in dup.index[:10]]
        raise InputDataError(f"{path.name}: patient(s) {sorted(dup[pid].unique())[:10]} scored twice by one reader (CSV rows {rows}); keep one row per patient and reader")
    if patients is not None:
        unknown = sorted(set(table[pid]) - set(patients.index.astype(str)))
        if unknown:
            raise InputDataError(f"{path.name}: patients {unknown[:10]} are not in the patient table; fix the ids or remove the rows")
    by_reader = [table[table["reader"].astype(str) == r].set_index(pid)[list(rs.variables)] for r in readers]
    out = reader_agreement_table(by_reader[0], by_reader[1], list(rs.variables), dict(rs.variables), icc_type=rs.icc_type)
    out.insert(0, "readers", f"{readers[0]} vs {readers[1]}")
    return out
