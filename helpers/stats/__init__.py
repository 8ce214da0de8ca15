"""Statistics that go into papers: discrimination, classification, reclassification, calibration,
clinical utility and the clinical-characteristics table, plus the study-level tables of notebook 06.

Every function here is checked in ``tests/test_stats.py`` against an independent reference (R's pROC, rms
and Hmisc through stored fixtures, statsmodels, scikit-learn, scipy, the ``dcurves`` and ``tableone``
packages, or a published worked example).

Conventions
-----------
* **Outcome** ``y``: 0/1 (1 = event / positive class); booleans are accepted.
* **Score orientation**: a higher score means "more likely positive"; AUCs are never flipped (an AUC below
  0.5 is reported as such; pROC's ``direction = "<"``).
* **Positive call**: ``score >= threshold``.
* **Results**: scalar results are plain ``dict`` objects of floats (plus a few labels); tables are
  :class:`pandas.DataFrame`. Confidence intervals are two-sided at ``level`` (default 0.95).
* **Bootstrap**: seeded (``numpy.random.default_rng(random_state)``), so the same inputs and seed give
  identical intervals. Resampling is stratified by outcome class (cases and controls are resampled
  separately with replacement, as pROC's default ``boot.stratified = TRUE``), and the percentile interval
  uses R's default (type 7, linear) quantiles.
* **Alignment**: when two or more of ``y`` and the scores/probabilities are pandas Series, they are paired by
  patient (index label, aligned to the first Series) and must hold the same patients; numpy arrays and lists
  are paired by position (see :mod:`helpers._alignment`).
* **Errors**: unusable inputs (labels that are not 0/1, a single class where two are needed, lengths that
  differ, NaN or infinite scores, probabilities outside [0, 1]) raise
  :class:`helpers.errors.InputDataError` (a ``ValueError``) naming the problem and the fix. Metrics that are
  merely undefined on valid data (e.g. PPV without positive calls) are NaN.
"""

from __future__ import annotations

from helpers.stats.calibration import brier_score, calibration_slope_intercept, hosmer_lemeshow, scaled_brier_score
from helpers.stats.classification import binary_metrics, binomial_ci
from helpers.stats.decision import net_benefit
from helpers.stats.discrimination import auc_ci, delong_test
from helpers.stats.reclassification import idi, nri
from helpers.stats.table_one import band_distribution, table_one
from helpers.stats.tables import (
    METRICS,
    PREDICTION_COLUMNS,
    calibration_table,
    pairwise_comparison_table,
    performance_table,
    subgroup_performance_table,
)

__all__ = [
    "METRICS",
    "PREDICTION_COLUMNS",
    "auc_ci",
    "binary_metrics",
    "binomial_ci",
    "brier_score",
    "calibration_slope_intercept",
    "calibration_table",
    "delong_test",
    "hosmer_lemeshow",
    "idi",
    "net_benefit",
    "nri",
    "pairwise_comparison_table",
    "performance_table",
    "scaled_brier_score",
    "subgroup_performance_table",
    "band_distribution",
    "table_one",
]
