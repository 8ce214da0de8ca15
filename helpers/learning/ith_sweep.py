"""ITH cluster sweep: one model per number of clusters K on that K's ITH score, and one on a set of K.

Seed study 004 (Table S2) clustered each tumour with K = 2..8, scored its
intratumoral heterogeneity (ITH) per K, fitted one model per K and reported
its accuracy and AUC in the internal and external validation cohorts, then a
model on the ITH scores of K = 2-5 together. Here every model is fitted on
the training cohort only (:func:`~helpers.learning.models.tune`: median
imputation and z-scores fitted inside every fold, optional SMOTE, the
classifier); its operating threshold is Youden's J on the training
out-of-fold probabilities, applied unchanged to every other cohort.
Accuracy has a Wilson interval (:func:`~helpers.stats.classification.binomial_ci`),
the AUC a DeLong interval (:func:`~helpers.stats.discrimination.auc_ci`).
Training values are out-of-fold (the threshold was chosen on them, so the
training accuracy is optimistic).

For a time-to-event endpoint, :func:`ith_cox_sweep` gives Harrell's C-index
of a Cox model on each K's score (and on the combined set), fitted the same
way (training only; training C-index out-of-fold).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from helpers.errors import InputDataError
from helpers.learning.models import TunedModel, build_pipeline, make_classifier, tune
from helpers.learning.survival import CoxModel, harrell_c
from helpers.stats.classification import binomial_ci
from helpers.stats.discrimination import auc_ci

__all__ = ["combined_ks", "fit_ith_models", "ith_columns", "ith_cox_sweep", "ith_sweep_table", "k_label"]

_ITH_COLUMN = re.compile(r"^ith_k(\d+)$")


def ith_columns(table: pd.DataFrame | Sequence[str]) -> dict[int, str]:
    """``{K: "ith_k<K>"}`` of the ITH score columns of a table, by ascending K."""
    names = table.columns if isinstance(table, pd.DataFrame) else table
    found = {int(m.group(1)): c for c in names if (m := _ITH_COLUMN.match(str(c)))}
    return dict(sorted(found.items()))


def combined_ks(available: Sequence[int], wanted: Sequence[int]) -> list[int]:
    """The wanted K that have an ITH score (the configured set clipped to the available range), ascending."""
    return sorted({int(k) for k in wanted} & {int(k) for k in available})


def k_label(ks: Sequence[int]) -> str:
    """Row label of a K set: ``"3"``, ``"2-5"`` (consecutive) or ``"2, 3, 5"``."""
    ks = sorted(ks)
    if len(ks) == 1:
        return str(ks[0])
    if ks == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}-{ks[-1]}"
    return ", ".join(map(str, ks))


def _k_sets(ith: pd.DataFrame, combined: Sequence[int]) -> dict[str, list[str]]:
    cols = ith_columns(ith)
    if not cols:
        raise InputDataError(f"no ITH score column (ith_k<K>) in the table; columns: {list(ith.columns)[:10]}")
    sets = {k_label([k]): [c] for k, c in cols.items()}
    both = combined_ks(list(cols), combined)
    if len(both) >= 2:  # one K alone is already a row
        sets[k_label(both)] = [cols[k] for k in both]
    return sets


def _pipeline(algorithm: str, smote: bool, random_state: int, class_weight: str | None = None):
    steps = [("impute", SimpleImputer(strategy="median")), ("zscore", StandardScaler())]
    return build_pipeline(steps, make_classifier(algorithm, random_state=random_state, class_weight=class_weight), smote=smote,
                          random_state=random_state)


def fit_ith_models(
    ith: pd.DataFrame,
    y_train: pd.Series,
    *,
    combined: Sequence[int] = (2, 3, 4, 5),
    algorithm: str = "logistic",
    smote: bool = False,
    cv: int = 5,
    search: str = "none",
    n_trials: int = 20,
    random_state: int = 0,
    training_cohort: str | None = None,
    class_weight: str | None = None,
    recalibration: str = "none",
) -> dict[str, TunedModel]:
    """One tuned model per K (its ``ith_k<K>`` column) and one on the ``combined`` K, fitted on training only.

    Parameters
    ----------
    ith : DataFrame
        ITH scores (``ith_k<K>`` columns) indexed by patient; only the rows of ``y_train``'s patients are used.
    y_train : Series of 0/1
        Training outcome, indexed by patient.
    combined : sequence of int
        K of the combined model, clipped to the available K (no combined model when fewer than two remain).
    algorithm, smote, cv, search, n_trials, random_state, class_weight, recalibration
        As in :func:`~helpers.learning.models.tune` / :func:`~helpers.learning.models.make_classifier`.

    Returns
    -------
    dict of row label to TunedModel
        ``"2"``, ``"3"``, ... then the combined set (e.g. ``"2-5"``), in that order.
    """
    X = ith.reindex(y_train.index)
    out: dict[str, TunedModel] = {}
    for label, cols in _k_sets(ith, combined).items():
        out[label] = tune(_pipeline(algorithm, smote, random_state, class_weight), X[cols], y_train, search=search, cv=cv, n_trials=n_trials,
                          random_state=random_state, training_cohort=training_cohort, recalibration=recalibration)  # fmt: skip
    return out


def _auc_cells(prefix: str, y: pd.Series, p: pd.Series, level: float) -> dict[str, float]:
    if y.nunique() < 2:
        return {prefix: float("nan"), f"{prefix}_lower": float("nan"), f"{prefix}_upper": float("nan")}
    ci = auc_ci(y.to_numpy(), p.to_numpy(), method="delong", level=level)
    return {prefix: ci["auc"], f"{prefix}_lower": ci["lower"], f"{prefix}_upper": ci["upper"]}


def _accuracy_cells(prefix: str, y: pd.Series, p: pd.Series, threshold: float, level: float, method: str) -> dict[str, float]:
    correct = int(((p.to_numpy() >= threshold).astype(int) == y.to_numpy()).sum())
    n = len(y)
    lo, hi = binomial_ci(correct, n, level, method) if n else (float("nan"), float("nan"))
    return {prefix: correct / n if n else float("nan"), f"{prefix}_lower": lo, f"{prefix}_upper": hi}


def ith_sweep_table(
    models: Mapping[str, TunedModel],
    ith: pd.DataFrame,
    y: pd.Series,
    cohort: pd.Series,
    training: Sequence[str],
    held_out: Sequence[str],
    level: float = 0.95,
    proportion_ci: str = "wilson",
) -> pd.DataFrame:
    """Accuracy (at the training threshold) and AUC with CIs: training out-of-fold, then each held-out cohort.

    Returns one row per model (``clusters``: its K label), columns ``clusters, n_features, threshold, oof_accuracy(_lower,
    _upper), oof_auc(...)``, then ``accuracy_<cohort>``, ``auc_<cohort>`` (with ``_lower``/``_upper``) per cohort of
    ``held_out`` in that order. A cohort with one outcome class has NaN AUC.
    """
    train = cohort.index[cohort.isin(training)].intersection(y.index, sort=False)
    rows = []
    for label, model in models.items():
        cols = list(model.feature_names_in_ or [])
        oof = model.oof_proba_.reindex(train)
        row: dict[str, object] = {"clusters": label, "n_features": len(cols), "threshold": model.threshold_}
        row.update(_accuracy_cells("oof_accuracy", y.loc[train], oof, model.threshold_, level, proportion_ci))
        row.update(_auc_cells("oof_auc", y.loc[train], oof, level))
        for name in held_out:
            idx = cohort.index[cohort == name].intersection(y.index, sort=False)
            p = model.positive_proba(ith.loc[idx, cols])
            row.update(_accuracy_cells(f"accuracy_{name}", y.loc[idx], p, model.threshold_, level, proportion_ci))
            row.update(_auc_cells(f"auc_{name}", y.loc[idx], p, level))
        rows.append(row)
    return pd.DataFrame(rows)


def _cox_fit(X: pd.DataFrame, time: pd.Series, event: pd.Series, penalizer: float):
    """Median imputation and z-scores learned on ``X`` (training rows), then a Cox model; returns a risk function."""
    median = X.median()
    filled = X.fillna(median)
    mean, sd = filled.mean(), filled.std(ddof=0).replace(0, 1.0)
    cox = CoxModel(penalizer=penalizer).fit((filled - mean) / sd, time, event)

    def risk(Z: pd.DataFrame) -> np.ndarray:
        return np.asarray(cox.predict_risk((Z.fillna(median) - mean) / sd), dtype=float)

    return risk


def ith_cox_sweep(
    ith: pd.DataFrame,
    time: pd.Series,
    event: pd.Series,
    cohort: pd.Series,
    training: Sequence[str],
    held_out: Sequence[str],
    *,
    combined: Sequence[int] = (2, 3, 4, 5),
    penalizer: float = 0.0,
    cv: int = 5,
    n_bootstrap: int = 500,
    random_state: int = 0,
) -> pd.DataFrame:
    """Harrell's C-index of a Cox model on each K's ITH score (and the combined set), fitted on training only.

    Training C-index is out-of-fold (``cv`` folds stratified by event, seeded); other cohorts are scored by the
    model refitted on all training patients. Percentile-bootstrap CIs (:func:`~helpers.learning.survival.harrell_c`).
    Columns ``clusters, oof_c_index(_lower, _upper)``, then ``c_index_<cohort>`` (with bounds) per held-out cohort.
    """
    train = cohort.index[cohort.isin(training)].intersection(time.index, sort=False)
    t, e = time.astype(float), event.astype(int)
    splits = list(StratifiedKFold(cv, shuffle=True, random_state=random_state).split(np.zeros(len(train)), e.loc[train]))
    rows = []

    def cells(prefix: str, idx: pd.Index, risk: np.ndarray) -> dict[str, float]:
        if len(idx) < 2 or e.loc[idx].sum() == 0:
            return {prefix: float("nan"), f"{prefix}_lower": float("nan"), f"{prefix}_upper": float("nan")}
        est = harrell_c(t.loc[idx].to_numpy(), e.loc[idx].to_numpy(), risk, n_bootstrap=n_bootstrap, random_state=random_state)
        return {prefix: float(est.estimate), f"{prefix}_lower": float(est.ci_low), f"{prefix}_upper": float(est.ci_high)}

    for label, cols in _k_sets(ith, combined).items():
        X = ith.reindex(t.index)[cols]
        oof = pd.Series(np.nan, index=train)
        for fit_idx, val_idx in splits:
            fi, vi = train[fit_idx], train[val_idx]
            oof.loc[vi] = _cox_fit(X.loc[fi], t.loc[fi], e.loc[fi], penalizer)(X.loc[vi])
        row: dict[str, object] = {"clusters": label}
        row.update(cells("oof_c_index", train, oof.to_numpy()))
        risk = _cox_fit(X.loc[train], t.loc[train], e.loc[train], penalizer)
        for name in held_out:
            idx = cohort.index[cohort == name].intersection(t.index, sort=False)
            row.update(cells(f"c_index_{name}", idx, risk(X.loc[idx])))
        rows.append(row)
    return pd.DataFrame(rows)
