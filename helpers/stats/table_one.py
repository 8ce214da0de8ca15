"""The clinical-characteristics table (Table 1) with the test chosen per variable.

Part of :mod:`helpers.stats` (see its docstring for the conventions every function follows)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from helpers.errors import InputDataError

__all__ = ['band_distribution', 'table_one']

# -- clinical characteristics -----------------------------------------------------------------------------------
def _fmt_num(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def table_one(
    patients: pd.DataFrame,
    group: str,
    continuous: Sequence[str],
    categorical: Sequence[str],
    normality_alpha: float = 0.05,
    nonnormal: Sequence[str] | None = None,
    decimals: int = 1,
    random_state: int = 0,
) -> pd.DataFrame:
    """Clinical characteristics per group with an overall column, missing counts and a test per variable.

    Continuous variables
        Normal when Shapiro-Wilk does not reject (p > ``normality_alpha``) in **every** group (a group with
        fewer than 3 values counts as non-normal) and the variable is not listed in ``nonnormal``.
        Normal: mean ± SD (SD with n - 1) and, for 2 groups, **Welch's** unequal-variance t-test (scipy
        ``ttest_ind(equal_var=False)``, tableone's default), for > 2 groups one-way ANOVA. Non-normal:
        median [Q1, Q3] (linear quantiles) and the Mann-Whitney U test (two-sided, scipy's default exact /
        asymptotic choice with continuity correction) for 2 groups, Kruskal-Wallis for > 2.
    Categorical variables
        n (%) per level, percentages of the non-missing values of the column (group). Chi-square test of
        the levels x groups table (with Yates' continuity correction for 2 x 2, as R's ``chisq.test`` and
        tableone); when any expected count is < 5: Fisher's exact test for a 2 x 2 table, and for larger
        tables the Fisher-Freeman-Halton exact test with a seeded Monte Carlo p-value (10,000 random tables
        with the observed margins, ``scipy.stats.fisher_exact(method=MonteCarloMethod)``; R's
        ``fisher.test(simulate.p.value = TRUE)``).

    Missing values are excluded from each variable's summaries and test and counted in ``missing``.

    Parameters
    ----------
    patients : pandas.DataFrame
        One row per patient.
    group : str
        Column of the comparison groups (e.g. outcome or cohort); no missing values.
    continuous, categorical : sequence of str
        Columns to summarise (continuous ones must be numeric).
    normality_alpha : float, default 0.05
    nonnormal : sequence of str, optional
        Continuous variables always summarised and tested as non-normal.
    decimals : int, default 1
        Decimals of means, SDs, medians, quartiles and percentages.
    random_state : int, default 0
        Seed of the Monte Carlo Fisher-Freeman-Halton p-values.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable``, ``level``, ``missing``, ``Overall``, one column per group (its value as text,
        in sorted order), ``p`` and ``test``. The first row is ``n``; a continuous variable has one row
        (``level`` says "mean ± SD" or "median [Q1, Q3]"), a categorical variable a header row carrying
        ``missing``, ``p`` and ``test`` followed by one row per level.
    """
    if not isinstance(patients, pd.DataFrame):
        raise InputDataError("patients must be a pandas DataFrame with one row per patient")
    cols = [group, *continuous, *categorical]
    absent = [c for c in cols if c not in patients.columns]
    if absent:
        raise InputDataError(f"column(s) {absent} not in the patient table (columns: {list(patients.columns)[:20]}); check the names")
    both = set(continuous) & set(categorical)
    if both:
        raise InputDataError(f"variable(s) {sorted(both)} are listed as both continuous and categorical; keep each in one list")
    unknown = sorted(set(nonnormal or []) - set(continuous))
    if unknown:
        raise InputDataError(f"nonnormal lists {unknown}, which are not among the continuous variables")
    if not 0 <= normality_alpha < 1:
        raise InputDataError(f"normality_alpha must be in [0, 1), e.g. 0.05; got {normality_alpha}")
    if patients[group].isna().any():
        n_missing = int(patients[group].isna().sum())
        raise InputDataError(f"group column '{group}' has {n_missing} missing value(s): drop those patients or give them a group")
    gser = patients[group]
    levels = _levels(gser)
    labels = [str(v) for v in levels]
    masks = [(gser == v).to_numpy() for v in levels]
    force_nonnormal = set(nonnormal or [])
    rows: list[dict[str, Any]] = [{"variable": "n", "level": "", "missing": pd.NA, "Overall": str(len(patients)),
                                   **{lab: str(int(m.sum())) for lab, m in zip(labels, masks)}, "p": np.nan, "test": ""}]
    for v in continuous:
        col = patients[v]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise InputDataError(f"continuous variable '{v}' is not numeric (dtype {col.dtype}); convert it or list it under categorical")
        x = col.astype(float).to_numpy()
        ok = ~np.isnan(x)
        per_group = [x[m & ok] for m in masks]
        normal = v not in force_nonnormal and all(vals.size >= 3 and _shapiro_p(vals) > normality_alpha for vals in per_group)

        def summary(vals: np.ndarray) -> str:
            if vals.size == 0:
                return ""
            if normal:
                sd = vals.std(ddof=1) if vals.size > 1 else float("nan")
                return f"{_fmt_num(vals.mean(), decimals)} ± {_fmt_num(sd, decimals)}"
            q1, med, q3 = np.quantile(vals, [0.25, 0.5, 0.75])
            return f"{_fmt_num(med, decimals)} [{_fmt_num(q1, decimals)}, {_fmt_num(q3, decimals)}]"

        p, test = _continuous_test(per_group, normal)
        rows.append({"variable": v, "level": "mean ± SD" if normal else "median [Q1, Q3]", "missing": int((~ok).sum()),
                     "Overall": summary(x[ok]), **{lab: summary(vals) for lab, vals in zip(labels, per_group)}, "p": p, "test": test})
    for v in categorical:
        col = patients[v]
        ok = col.notna().to_numpy()
        cats = _levels(col)
        table = np.array([[int(((col == c).to_numpy() & m).sum()) for m in masks] for c in cats], dtype=int).reshape(len(cats), len(masks))
        p, test = _categorical_test(table, random_state)
        blank = {lab: "" for lab in labels}
        rows.append({"variable": v, "level": "", "missing": int((~ok).sum()), "Overall": "", **blank, "p": p, "test": test})
        totals = table.sum(axis=0)
        overall_total = int(table.sum())
        for i, c in enumerate(cats):
            cell = {lab: _count_pct(table[i, j], totals[j], decimals) for j, lab in enumerate(labels)}
            overall = _count_pct(table[i].sum(), overall_total, decimals)
            rows.append({"variable": v, "level": str(c), "missing": pd.NA, "Overall": overall, **cell, "p": np.nan, "test": ""})
    out = pd.DataFrame(rows, columns=["variable", "level", "missing", "Overall", *labels, "p", "test"])
    out["missing"] = out["missing"].astype("Int64")
    out["p"] = out["p"].astype(float)
    return out


def _levels(col: pd.Series) -> list[Any]:
    """Observed values of a column: in category order for a categorical dtype, else sorted (numbers before text)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories[col.cat.categories.isin(col.dropna().unique())])
    return sorted(col.dropna().unique(), key=_sort_key)


def _sort_key(value: object) -> tuple[int, object]:
    return (0, value) if isinstance(value, (int, float, np.number, bool, np.bool_)) else (1, str(value))


def _count_pct(k: int, total: int, decimals: int) -> str:
    return f"{int(k)} ({_fmt_num(100 * k / total, decimals)})" if total else f"{int(k)}"


def _shapiro_p(vals: np.ndarray) -> float:
    if np.ptp(vals) == 0:
        return 0.0  # constant values: not normally distributed (and Shapiro-Wilk is undefined)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that p may be inaccurate for n > 5000
        return float(_st.shapiro(vals).pvalue)


def _continuous_test(per_group: list[np.ndarray], normal: bool) -> tuple[float, str]:
    present = [v for v in per_group if v.size > 0]
    if len(per_group) < 2:
        return float("nan"), "not tested (one group)"
    if len(present) < len(per_group) or any(v.size < 2 for v in per_group):
        return float("nan"), "not tested (fewer than 2 values in a group)"
    if len(per_group) == 2:
        if normal:
            return float(_st.ttest_ind(*per_group, equal_var=False).pvalue), "Welch's t-test"
        return float(_st.mannwhitneyu(*per_group, alternative="two-sided").pvalue), "Mann-Whitney U test"
    if normal:
        return float(_st.f_oneway(*per_group).pvalue), "One-way ANOVA"
    return float(_st.kruskal(*per_group).pvalue), "Kruskal-Wallis test"


def _categorical_test(table: np.ndarray, random_state: int) -> tuple[float, str]:
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return float("nan"), "not tested (one group)"
    if table.shape[0] < 2:
        return float("nan"), "not tested (one level)"
    res = _st.chi2_contingency(table)  # Yates' correction applies to 2 x 2 (dof = 1) only
    if res.expected_freq.min() >= 5:
        return float(res.pvalue), "Chi-square test (Yates' correction)" if table.shape == (2, 2) else "Chi-square test"
    if table.shape == (2, 2):
        return float(_st.fisher_exact(table).pvalue), "Fisher's exact test"
    method = _st.MonteCarloMethod(n_resamples=10_000, rng=np.random.default_rng(random_state))
    return float(_st.fisher_exact(table, method=method).pvalue), "Fisher-Freeman-Halton exact test (Monte Carlo)"


def band_distribution(values: pd.Series, groups: pd.Series, edges: Sequence[float] = (), unit: str = "%",
                      highest_first: bool = True) -> pd.DataFrame:
    """Counts of a continuous marker by band and group (e.g. the Ki-67 index by 10% band per cohort).

    Bands are ``[lo, hi)``; the last band also holds ``hi``. Without ``edges``,
    ten equal bands span the observed range. Missing values are counted in a
    last ``missing`` row (only when there are any).

    Parameters
    ----------
    values : Series
        The marker per patient (numeric; NaN for missing).
    groups : Series
        Group of every patient (same index), e.g. the cohort.
    edges : sequence of float
        Increasing band edges; values outside them are counted in ``below <first>`` / ``above <last>`` rows.
    unit : str
        Appended to the band bounds in the labels.
    highest_first : bool
        List the highest band first (as seed study 000 does).

    Returns
    -------
    DataFrame
        ``band`` then ``n (%)`` per group (percent of that group's patients) and ``all``.
    """
    values = pd.to_numeric(values, errors="coerce")
    groups = groups.reindex(values.index)
    observed = values.dropna()
    if not len(edges):
        lo, hi = (float(observed.min()), float(observed.max())) if len(observed) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, 11)
    edges = [float(e) for e in edges]
    labels, masks = [], []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        labels.append(f"{lo:g}{unit}-{hi:g}{unit}")
        masks.append((values >= lo) & ((values <= hi) if last else (values < hi)))
    if highest_first:
        labels, masks = labels[::-1], masks[::-1]
    extra = [(f"above {edges[-1]:g}{unit}", values > edges[-1]), (f"below {edges[0]:g}{unit}", values < edges[0]), ("missing", values.isna())]
    for label, mask in extra:
        if mask.any():
            labels.append(label)
            masks.append(mask)
    order = list(pd.unique(groups.dropna()))
    out = pd.DataFrame({"band": labels})
    for name, members in [*((g, groups == g) for g in order), ("all", pd.Series(True, index=values.index))]:
        total = int(members.sum())
        out[str(name)] = [_count_pct(int((m & members).sum()), total, 1) for m in masks]
    return out
