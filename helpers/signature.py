"""The radiomics signature of a study (notebook 04): stability, harmonisation, selection, Rad-score.

Everything fitted here learns from the TRAINING cohort(s) only and is then
applied unchanged to the other cohorts:

1. features with missing values (failed extraction units) are listed and left
   out (a data-availability rule that looks at no outcome);
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

import pandas as pd

from .config import HarmonizationGroup, StudyConfig
from .errors import InputDataError
from .features import preset_name
from .harmonize import ComBatHarmonizer, combat_diagnostics_figure
from .qc import acquisition_records
from .report import ReportWriter
from .selection import (
    build_selector,
    coefficient_figure,
    lasso_cv_figure,
    lasso_path_figure,
    radscore_formula,
    radscore_table,
    selection_pathway,
)
from .stability import ICCFilter, icc_table, reader_agreement_table, retained_counts

__all__ = ["StudyFeatures", "Signature", "load_study_features", "batch_labels", "build_signature", "write_signature_outputs",
           "interobserver_agreement"]

_BATCH = "__batch__"


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
        Feature columns left out because of missing values, with counts per cohort.
    """

    features: pd.DataFrame
    cohort: pd.Series
    y: pd.Series
    reader2: pd.DataFrame | None
    dropped_missing: pd.DataFrame
    training: list[str] = field(default_factory=list)

    @property
    def train_index(self) -> pd.Index:
        return self.cohort.index[self.cohort.isin(self.training)]


def load_study_features(cfg: StudyConfig, patients: pd.DataFrame) -> StudyFeatures:
    """Read notebook 03's feature tables and the binary endpoint.

    Raises
    ------
    FileNotFoundError
        When notebook 03 has not produced the feature table yet.
    """
    preset = preset_name(cfg.signature.preset)
    folder = cfg.report_root / "features"
    path = folder / f"features_{preset}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the feature_extraction step (notebook 03) with preset '{preset}' first")
    table = pd.read_parquet(path)
    cohort = table.pop("cohort")
    endpoint = cfg.endpoints.binary
    if endpoint is None:
        raise ValueError("the signature needs a binary endpoint: set endpoints.binary in the study config")
    y = patients.loc[table.index, endpoint].astype(int).rename(endpoint)
    missing = table.isna()
    cols = missing.any()[lambda s: s].index
    dropped = pd.DataFrame(
        {"feature": cols, **{f"missing_{c}": [int(missing.loc[cohort == c, f].sum()) for f in cols] for c in cfg.cohorts}}
    )
    reader2_path = folder / f"features_{preset}_reader2.parquet"
    reader2 = pd.read_parquet(reader2_path).drop(columns="cohort") if reader2_path.is_file() else None
    keep = table.columns.difference(cols, sort=False)
    if reader2 is not None:
        # Missing second readings (a failed unit) are handled per feature by the ICC; columns are not dropped.
        reader2 = reader2[[c for c in keep if c in reader2.columns]]
    return StudyFeatures(table[keep], cohort, y, reader2, dropped, training=list(cfg.training_cohorts))


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

    def modelling_table(self) -> pd.DataFrame:
        """Stable, harmonised features of all cohorts (input of the model grid)."""
        return self.harmonized


def _harmonize(X: pd.DataFrame, train: pd.Index, groups: tuple[HarmonizationGroup, ...], manifest: pd.DataFrame, cfg: StudyConfig):
    out = X.copy()
    harmonizers, batches = {}, {}
    for group in groups:
        cols = cfg.columns_of_series(X.columns, group.series)
        if not cols:
            continue
        batch = batch_labels(manifest, cfg, group, train).reindex(X.index)
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
        icc_filter = ICCFilter(cfg.signature.icc.threshold, cfg.signature.icc.icc_type, cfg.signature.icc.ci_bound, unscored="passthrough")
        icc_filter.fit(X.loc[train], icc=icc)
        groups = sorted({(s, r) for s in cfg.series for r in cfg.extraction.rois if any(c.startswith(f"{s}_{r}_") for c in icc.index)})
        retained = retained_counts(icc, cfg.signature.icc.threshold, groups, ci_bound=cfg.signature.icc.ci_bound)
        X = icc_filter.transform(X)
    harmonized, harmonizers, batches = _harmonize(X, train, cfg.signature.harmonization, manifest, cfg)
    # Comparison-only series (super-resolved images) are filtered and harmonised like the others but stay out of the
    # signature: they are compared in the model grid and notebook 06's NR-vs-SR table.
    eligible = [c for c in harmonized.columns if cfg.series_of_column(c) not in cfg.comparison_series]
    selector = build_selector([dict(s) for s in cfg.signature.steps])
    selector.fit(harmonized.loc[train, eligible], data.y.loc[train])
    # A Rad-score needs a linear final step (LASSO/ElasticNet); without one the signature is the selected feature set.
    linear = hasattr(selector.steps[-1][1], "coef_")
    table = harmonized[eligible].assign(cohort=data.cohort)
    radscores = radscore_table(table, selector, outcome=data.y) if linear else table[["cohort"]].assign(outcome=data.y)
    return Signature(
        data=data, icc=icc, icc_filter=icc_filter, retained=retained, harmonizers=harmonizers, batches=batches,
        before_harmonization=X, harmonized=harmonized, selector=selector, pathway=selection_pathway(selector),
        formula=radscore_formula(selector) if linear else "", radscores=radscores,
    )


def _diagnostic_features(combat: ComBatHarmonizer, X: pd.DataFrame, n: int = 4) -> list[str]:
    # The features whose batch means differ most before harmonisation show what ComBat does.
    gamma = combat.gamma_hat_.abs().max(axis=0).sort_values(ascending=False)
    return [f for f in gamma.index if f in X.columns][:n]


def write_signature_outputs(sig: Signature, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Write notebook 04's tables, figures and the fitted signature; return tables for display."""
    shown: dict[str, pd.DataFrame] = {}
    if not sig.data.dropped_missing.empty:
        report.table(sig.data.dropped_missing, "features_dropped_missing_values", per_cohort=False)
        shown["features_dropped_missing_values"] = sig.data.dropped_missing
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
        coefs = pd.DataFrame({"feature": ["(intercept)", *coef.index], "coefficient": [lasso.intercept_, *coef.values]})
        report.table(coefs, "radscore_coefficients", per_cohort=False)
        shown["radscore_coefficients"] = coefs
    if sig.formula:
        report.text(sig.formula + "\n", "radscore_formula.txt")
    report.data(sig.radscores, "radscores")
    if "radscore" in sig.radscores.columns:
        shown["radscore_by_cohort"] = sig.radscores.groupby("cohort")["radscore"].describe().reset_index()
    report.artifact({"selector": sig.selector, "icc_filter": sig.icc_filter, "harmonizers": sig.harmonizers}, "models/signature.joblib")
    report.data(sig.harmonized.assign(cohort=sig.data.cohort), "modelling_features")
    return shown


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
