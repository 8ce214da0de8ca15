"""Study-level tables of notebook 06: performance, pairwise comparison, calibration and subgroup tables of the compared models' predictions.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
import pandas as pd

from helpers.errors import InputDataError
from helpers.stats._validation import _check_level, _labels, _values
from helpers.stats.calibration import brier_score, calibration_slope_intercept, hosmer_lemeshow, scaled_brier_score
from helpers.stats.classification import binary_metrics
from helpers.stats.discrimination import auc_ci, delong_test
from helpers.stats.reclassification import idi, nri
from helpers.stats.table_one import _sort_key

__all__ = ['calibration_table', 'pairwise_comparison_table', 'performance_table', 'subgroup_performance_table']

METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")
_METRIC_LABELS = {
    "accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1",
}
PREDICTION_COLUMNS = ("model", "patient", "cohort", "outcome", "probability", "threshold")


# -- study-level tables (notebook 06) ----------------------------------------------------------------------------
def _fmt_ci(est: float, lo: float, hi: float, digits: int, signed: bool = False) -> str:
    """``0.78 (0.62-0.93)``; for a quantity that can be negative (``signed``: NRI, IDI, calibration intercept and
    slope) ``-0.12 (-0.30 to 0.05)`` on every row, whatever the signs, so one column never mixes the two forms;
    ``NA`` when undefined. The separator depends on the quantity, never on the values."""
    if not np.isfinite(est):
        return "NA"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    sep = " to " if signed or min(lo, hi) < 0 else "-"
    return f"{est:.{digits}f} ({lo:.{digits}f}{sep}{hi:.{digits}f})"


def _check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of the long predictions table (see :func:`performance_table`)."""
    if not isinstance(predictions, pd.DataFrame):
        raise InputDataError("predictions must be a DataFrame with columns " + ", ".join(PREDICTION_COLUMNS))
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise InputDataError(
            f"predictions lack column(s) {missing}; expected {list(PREDICTION_COLUMNS)} (one row per model x patient x cohort)"
        )
    df = predictions.loc[:, list(PREDICTION_COLUMNS)].copy()
    for c in ("model", "patient", "cohort"):
        if df[c].isna().any():
            raise InputDataError(f"predictions column '{c}' has {int(df[c].isna().sum())} missing value(s)")
    df["outcome"] = _labels(df["outcome"].to_numpy(), "predictions['outcome']", need_both=False)
    df["probability"] = _values(df["probability"].to_numpy(), len(df), "predictions['probability']", probability=True)
    thr = pd.to_numeric(df["threshold"], errors="coerce")
    if thr.isna().any() or not np.all(np.isfinite(thr)):
        raise InputDataError("predictions['threshold'] must be a finite number on every row (the model's training-chosen threshold)")
    df["threshold"] = thr.astype(float)
    varying = df.groupby("model", sort=False)["threshold"].nunique()
    varying = varying[varying > 1]
    if len(varying):
        raise InputDataError(
            f"the threshold must be constant per model (chosen once on training data), but it varies for model(s) {list(varying.index)}"
        )
    dup = df.duplicated(["model", "cohort", "patient"])
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise InputDataError(
            f"{int(dup.sum())} duplicated (model, cohort, patient) row(s), e.g. ({first['model']}, {first['cohort']}, {first['patient']}): "
            "keep one prediction per model and patient in each cohort"
        )
    return df


def _one_class_note(y: np.ndarray) -> str:
    return f"only one outcome class ({int(y.sum())} events of {y.size}): AUC undefined"


def performance_table(
    predictions: pd.DataFrame,
    level: float = 0.95,
    proportion_ci: Literal["wilson", "clopper-pearson"] = "wilson",
    n_bootstrap: int = 2000,
    random_state: int = 0,
    digits: int = 2,
) -> pd.DataFrame:
    """Discrimination and classification performance per model and cohort.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long table with columns ``model``, ``patient``, ``cohort``, ``outcome`` (0/1), ``probability``
        (out-of-fold for the training cohort) and ``threshold`` (the model's training-chosen threshold,
        constant per model).
    level : float, default 0.95
    proportion_ci : {"wilson", "clopper-pearson"}, default "wilson"
    n_bootstrap, random_state
        F1 bootstrap (see :func:`binary_metrics`); the same seed for every model and cohort.
    digits : int, default 2
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        One row per model x cohort (order of first appearance): ``model``, ``cohort``, ``n``, ``events``,
        ``threshold``, ``auc``, ``auc_lower``, ``auc_upper`` (DeLong), ``AUC (95% CI)`` (formatted, e.g.
        ``0.78 (0.62-0.93)``), then for accuracy, sensitivity, specificity, ppv, npv and f1 the estimate,
        ``<metric>_lower``, ``<metric>_upper`` and a formatted ``<Metric> (95% CI)``, and ``note``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        y, p, thr = sub["outcome"].to_numpy(), sub["probability"].to_numpy(), float(sub["threshold"].iloc[0])
        row: dict[str, Any] = {"model": model, "cohort": cohort, "n": int(y.size), "events": int(y.sum()), "threshold": thr}
        notes = []
        if 0 < y.sum() < y.size:
            a = auc_ci(y, p, "delong", level)
            row.update(auc=a["auc"], auc_lower=a["lower"], auc_upper=a["upper"])
            if not np.isfinite(a["lower"]):
                notes.append("AUC CI undefined with a single event or non-event")
        else:
            row.update(auc=np.nan, auc_lower=np.nan, auc_upper=np.nan)
            notes.append(_one_class_note(y))
        row[f"AUC ({pct} CI)"] = _fmt_ci(row["auc"], row["auc_lower"], row["auc_upper"], digits)
        bm = binary_metrics(y, p, thr, level, proportion_ci, n_bootstrap, random_state)
        for m in METRICS:
            est, lo, hi = bm.loc[m, ["estimate", "lower", "upper"]]
            row.update({m: est, f"{m}_lower": lo, f"{m}_upper": hi, f"{_METRIC_LABELS[m]} ({pct} CI)": _fmt_ci(est, lo, hi, digits)})
        undefined = [_METRIC_LABELS[m] for m in METRICS if not np.isfinite(bm.loc[m, "estimate"])]
        if undefined:
            notes.append(f"undefined (denominator 0): {', '.join(undefined)}")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(df: pd.DataFrame, cohort: object, a: object, b: object) -> tuple[pd.DataFrame, str]:
    """Patients of a cohort predicted by both models: columns outcome, a, b."""
    sub = df[df["cohort"] == cohort]
    wide = sub.pivot(index="patient", columns="model", values="probability")
    outcome = sub.groupby("patient", sort=False)["outcome"].agg(["min", "max"])
    bad = outcome.index[outcome["min"] != outcome["max"]]
    if len(bad):
        raise InputDataError(
            f"cohort {cohort!r}: patient(s) {list(bad[:5])} have different outcomes for different models; "
            "the outcome is a property of the patient, give it once"
        )
    pair = pd.DataFrame({"outcome": outcome["min"], "a": wide[a], "b": wide[b]}).dropna()
    dropped = len(wide) - len(pair)
    note = f"{dropped} patient(s) without a prediction from both models excluded" if dropped else ""
    return pair, note


def pairwise_comparison_table(
    predictions: pd.DataFrame,
    reference: str | None = None,
    level: float = 0.95,
    nri_se_method: Literal["pencina", "unrestricted"] = "pencina",
    digits: int = 3,
) -> pd.DataFrame:
    """Pairwise model comparison per cohort: DeLong test, continuous NRI and IDI.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`). Pairs use the patients of the cohort that
        both models predicted.
    reference : str, optional
        Compare every other model with this one (``model_b`` = reference). By default every pair of models
        (order of first appearance; ``model_a`` the earlier one).
    level : float, default 0.95
    nri_se_method : {"pencina", "unrestricted"}, default "pencina"
        Standard error of the NRI (see :func:`nri`).
    digits : int, default 3
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        ``cohort``, ``model_a``, ``model_b``, ``n``, ``events``, ``auc_a``, ``auc_b``, ``auc_difference``
        (a - b), ``delong_z``, ``delong_p``, ``nri``, ``nri_lower``, ``nri_upper``, ``nri_p``, ``idi``,
        ``idi_lower``, ``idi_upper``, ``idi_p`` and formatted ``NRI (95% CI)``, ``IDI (95% CI)``, ``note``.
        NRI and IDI are of ``model_a`` (new) over ``model_b`` (old): positive values favour ``model_a``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    models = list(pd.unique(df["model"]))
    if reference is not None and reference not in models:
        raise InputDataError(f"reference model {reference!r} is not in the predictions; models are {models}")
    pct = f"{level:.0%}"
    rows = []
    for cohort in pd.unique(df["cohort"]):
        present = [m for m in models if ((df["cohort"] == cohort) & (df["model"] == m)).any()]
        if reference is None:
            pairs = list(itertools.combinations(present, 2))
        else:
            pairs = [(m, reference) for m in present if m != reference] if reference in present else []
        for a, b in pairs:
            pair, note = _paired(df, cohort, a, b)
            y = pair["outcome"].to_numpy().astype(int)
            row: dict[str, Any] = {"cohort": cohort, "model_a": a, "model_b": b, "n": int(y.size), "events": int(y.sum())}
            notes = [note] if note else []
            keys = ["auc_a", "auc_b", "auc_difference", "delong_z", "delong_p", "nri", "nri_lower", "nri_upper", "nri_p",
                    "idi", "idi_lower", "idi_upper", "idi_p"]
            row.update({k: np.nan for k in keys})
            if y.size and 0 < y.sum() < y.size:
                dl = delong_test(y, pair["a"], pair["b"])
                row.update(auc_a=dl["auc_a"], auc_b=dl["auc_b"], auc_difference=dl["difference"], delong_z=dl["z"], delong_p=dl["p"])
                r = nri(y, pair["b"], pair["a"], level=level, se_method=nri_se_method)
                row.update(nri=r["estimate"], nri_lower=r["lower"], nri_upper=r["upper"], nri_p=r["p"])
                if min(y.sum(), y.size - y.sum()) >= 2:
                    i = idi(y, pair["b"], pair["a"], level=level)
                    row.update(idi=i["estimate"], idi_lower=i["lower"], idi_upper=i["upper"], idi_p=i["p"])
                else:
                    notes.append("IDI needs at least two events and two non-events")
            else:
                notes.append(f"only one outcome class ({int(y.sum())} events of {y.size}): comparison undefined")
            row[f"NRI ({pct} CI)"] = _fmt_ci(row["nri"], row["nri_lower"], row["nri_upper"], digits, signed=True)
            row[f"IDI ({pct} CI)"] = _fmt_ci(row["idi"], row["idi_lower"], row["idi_upper"], digits, signed=True)
            row["note"] = "; ".join(notes)
            rows.append(row)
    return pd.DataFrame(rows)


def calibration_table(
    predictions: pd.DataFrame,
    level: float = 0.95,
    hl_groups: int = 10,
    min_patients_per_group: int = 10,
    digits: int = 2,
) -> pd.DataFrame:
    """Calibration per model and cohort: intercept and slope with CIs, expected vs observed event rate, Brier and
    scaled Brier score, Hosmer-Lemeshow test.

    ``mean_predicted`` (the expected event rate: mean predicted probability) against ``observed_rate`` (the observed
    prevalence) is calibration-in-the-large on the probability scale; the calibration intercept is the same on the
    logit scale (0 when they agree, negative when risks are overestimated). A cohort whose prevalence differs from
    the training cohort's shifts both even for a model calibrated on training.

    The Hosmer-Lemeshow test uses ``g = min(hl_groups, n // min_patients_per_group)`` groups, so that a
    group holds ``min_patients_per_group`` patients on average (10 groups need 100 patients; a cohort of 60
    gets 6 groups). With fewer than 3 groups (n < 3 * ``min_patients_per_group``) the test is not done and
    ``note`` says so.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`).
    level : float, default 0.95
    hl_groups : int, default 10
    min_patients_per_group : int, default 10
    digits : int, default 2
        Decimals of the formatted columns.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``cohort``, ``n``, ``events``, ``observed_rate``, ``mean_predicted``, ``intercept``,
        ``intercept_lower``, ``intercept_upper``, ``slope``, ``slope_lower``, ``slope_upper``, formatted
        ``Intercept (95% CI)`` and ``Slope (95% CI)``, ``brier``, ``scaled_brier``, ``hl_statistic``,
        ``hl_df``, ``hl_p``, ``hl_groups``, ``note``.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        y, p = sub["outcome"].to_numpy(), sub["probability"].to_numpy()
        row: dict[str, Any] = {"model": model, "cohort": cohort, "n": int(y.size), "events": int(y.sum()),
                               "observed_rate": float(y.mean()), "mean_predicted": float(np.mean(p))}
        keys = ["intercept", "intercept_lower", "intercept_upper", "slope", "slope_lower", "slope_upper", "brier", "scaled_brier",
                "hl_statistic", "hl_df", "hl_p", "hl_groups"]
        row.update({k: np.nan for k in keys})
        notes = []
        row["brier"] = brier_score(y, p)
        if 0 < y.sum() < y.size:
            row["scaled_brier"] = scaled_brier_score(y, p)
            try:
                c = calibration_slope_intercept(y, p, level)
                row.update({k: c[k] for k in keys[:6]})
                if c["n_clipped"]:
                    notes.append(f"{c['n_clipped']} probabilities of 0 or 1 set to 1e-8 / 1 - 1e-8 for the logit")
            except InputDataError as exc:
                notes.append(str(exc).split(";")[0])
            g = min(int(hl_groups), y.size // int(min_patients_per_group))
            if g >= 3:
                try:
                    h = hosmer_lemeshow(y, p, g)
                    row.update(hl_statistic=h["statistic"], hl_df=h["df"], hl_p=h["p"], hl_groups=h["groups"])
                    if h["groups"] < int(hl_groups):
                        notes.append(f"Hosmer-Lemeshow with {h['groups']} groups")
                except InputDataError as exc:
                    notes.append(f"Hosmer-Lemeshow not computed: {str(exc).split(';')[0]}")
            else:
                notes.append(f"Hosmer-Lemeshow not computed: {y.size} patients give fewer than 3 groups of {min_patients_per_group}")
        else:
            notes.append(
                f"only one outcome class ({int(y.sum())} events of {y.size}): calibration intercept, slope and Hosmer-Lemeshow undefined"
            )
        row[f"Intercept ({pct} CI)"] = _fmt_ci(row["intercept"], row["intercept_lower"], row["intercept_upper"], digits, signed=True)
        row[f"Slope ({pct} CI)"] = _fmt_ci(row["slope"], row["slope_lower"], row["slope_upper"], digits, signed=True)
        row["note"] = "; ".join(notes)
        rows.append(row)
    out = pd.DataFrame(rows)
    order = ["model", "cohort", "n", "events", "observed_rate", "mean_predicted", "intercept", "intercept_lower", "intercept_upper", "slope", "slope_lower", "slope_upper",
             f"Intercept ({pct} CI)", f"Slope ({pct} CI)", "brier", "scaled_brier", "hl_statistic", "hl_df", "hl_p", "hl_groups", "note"]
    return out[order]


def subgroup_performance_table(
    predictions: pd.DataFrame,
    subgroups: pd.Series,
    level: float = 0.95,
    digits: int = 2,
) -> pd.DataFrame:
    """AUC with DeLong CI per subgroup (e.g. scanner model), model and cohort.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Long predictions table (see :func:`performance_table`).
    subgroups : pandas.Series
        Subgroup of each patient, indexed by patient identifier (the values of ``predictions['patient']``).
        Missing values form the subgroup ``"missing"``.
    level : float, default 0.95
    digits : int, default 2

    Returns
    -------
    pandas.DataFrame
        ``model``, ``cohort``, ``subgroup``, ``n``, ``events``, ``auc``, ``auc_lower``, ``auc_upper``,
        formatted ``AUC (95% CI)`` and ``note`` (why an AUC or its CI is missing, e.g. a subgroup with one
        class). Subgroups are in sorted order.
    """
    df = _check_predictions(predictions)
    _check_level(level)
    if not isinstance(subgroups, pd.Series):
        raise InputDataError("subgroups must be a pandas Series indexed by patient identifier")
    if subgroups.index.has_duplicates:
        dups = list(subgroups.index[subgroups.index.duplicated()][:5])
        raise InputDataError(f"subgroups has duplicated patient(s) {dups}; give each patient one subgroup")
    absent = pd.unique(df.loc[~df["patient"].isin(subgroups.index), "patient"])
    if len(absent):
        raise InputDataError(
            f"{len(absent)} patient(s) of the predictions have no subgroup, e.g. {list(absent[:5])}; add them to subgroups"
        )
    df["subgroup"] = df["patient"].map(subgroups.astype(object).where(subgroups.notna(), "missing"))
    pct = f"{level:.0%}"
    rows = []
    for (model, cohort), sub in df.groupby(["model", "cohort"], sort=False):
        for value in sorted(pd.unique(sub["subgroup"]), key=_sort_key):
            part = sub[sub["subgroup"] == value]
            y, p = part["outcome"].to_numpy(), part["probability"].to_numpy()
            row: dict[str, Any] = {"model": model, "cohort": cohort, "subgroup": value, "n": int(y.size), "events": int(y.sum()),
                                   "auc": np.nan, "auc_lower": np.nan, "auc_upper": np.nan, "note": ""}
            if 0 < y.sum() < y.size:
                a = auc_ci(y, p, "delong", level)
                row.update(auc=a["auc"], auc_lower=a["lower"], auc_upper=a["upper"])
                if not np.isfinite(a["lower"]):
                    row["note"] = "AUC CI undefined with a single event or non-event"
            else:
                row["note"] = _one_class_note(y)
            row[f"AUC ({pct} CI)"] = _fmt_ci(row["auc"], row["auc_lower"], row["auc_upper"], digits)
            rows.append(row)
    cols = ["model", "cohort", "subgroup", "n", "events", "auc", "auc_lower", "auc_upper", f"AUC ({pct} CI)", "note"]
    return pd.DataFrame(rows, columns=cols)
