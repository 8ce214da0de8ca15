"""Points a reviewer will raise: checks on a finished run's outputs (one small rule per point).

Every rule reads files under ``reports/<study>/`` and returns the points it
finds, each naming the file it comes from. :func:`review_points` runs all
rules in a fixed order (major points first), so identical outputs give an
identical list. The thresholds are the usual rules of thumb and are stated in
the text of each point:

- a gap of at least 0.10 between the training out-of-fold AUC and the AUC of
  another cohort (optimism or chance);
- the number of habitats at the edge of the searched range;
- a threshold that classifies every patient of a cohort alike (sensitivity or
  specificity 0);
- subgroups with fewer than 5 patients in either outcome class;
- deep features from an untrained (randomly initialised) network;
- training-cohort scores shown in-sample;
- an ICC filter keeping fewer than 10 features, or under 20% of the
  non-constant features, of a block;
- fewer than 10 events per variable of the Rad-score in the training cohort
  (Peduzzi et al. 1996; Riley et al. 2020);
- an evaluation cohort with fewer than 100 patients, events or non-events
  (Collins et al. 2016; Riley et al. 2021);
- excluded patients, dropped features and failed extraction units;
- a calibration slope below 0.8 or above 1.25 in an evaluation cohort;
- an evaluation cohort whose event rate differs from the training cohort's by
  at least 0.10 in absolute terms (prevalence shift: it moves the calibration
  intercept even of a model calibrated on training, by about the difference
  of the two rates' logits; major when a model's calibration intercept there
  has a 95% CI excluding 0);
- probabilities of a model trained with class weights or SMOTE that were not
  recalibrated (they do not estimate the risk at the training prevalence);
- a sigmoid recalibration that decreases with the model's score (its
  out-of-fold scores ranked the patients the wrong way round).
"""


from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.data.columns import shown_name
from helpers.settings.study import StudyConfig

__all__ = ["ReviewPoint", "RULES", "review_points"]

#: Severity levels, most important first.
SEVERITIES = ("major", "minor")
AUC_GAP = 0.10
MIN_SUBGROUP_CLASS = 5
MIN_ICC_FEATURES = 10
MIN_ICC_SHARE = 0.20
MIN_EVENTS_PER_VARIABLE = 10
MIN_EVALUATION_PATIENTS = 100
MIN_EVALUATION_EVENTS = 100
SLOPE_RANGE = (0.8, 1.25)
#: Absolute difference in event rate between an evaluation cohort and the training cohort that counts as a prevalence
#: shift (10 percentage points: about 0.4 on the logit scale around 0.5, a calibration intercept a reviewer notices).
PREVALENCE_SHIFT = 0.10


@dataclass(frozen=True)
class ReviewPoint:
    """One point a reviewer will raise.

    Attributes
    ----------
    severity : str
        ``major`` or ``minor``.
    text : str
        The point, with the values it rests on.
    source : str
        The file it comes from, relative to ``reports/<study>/``.
    rule : str
        Name of the rule that raised it.
    """

    severity: str
    text: str
    source: str
    rule: str


@dataclass
class _Run:
    """The finished run a rule looks at (CSV files read once)."""

    cfg: StudyConfig
    root: Path
    shared_root: Path | None = None  # one task of a study with several tasks: the study's folder (the shared steps' outputs)
    _cache: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def _path(self, rel: str) -> Path:
        own = self.root / rel
        return own if own.is_file() or self.shared_root is None else self.shared_root / rel

    def rows(self, rel: str) -> list[dict[str, str]]:
        """Rows of ``reports/<study>/<rel>`` (empty when the file is missing)."""
        if rel not in self._cache:
            path = self._path(rel)
            if path.is_file():
                with path.open(newline="", encoding="utf-8") as f:
                    self._cache[rel] = list(csv.DictReader(f))
            else:
                self._cache[rel] = []
        return self._cache[rel]

    def exists(self, rel: str) -> bool:
        return self._path(rel).is_file()

    def json(self, rel: str) -> dict:
        """A JSON record of the run (empty when missing or unreadable)."""
        path = self._path(rel)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def tables(self, prefix: str) -> list[str]:
        """``tables/<prefix>*.csv`` files, sorted (a task's and the shared steps' for one task of a study with tasks)."""
        folders = [self.root / "tables"] + ([self.shared_root / "tables"] if self.shared_root is not None else [])
        return sorted({f"tables/{p.name}" for folder in folders if folder.is_dir() for p in folder.glob(f"{prefix}*.csv")})

    @property
    def training(self) -> list[str]:
        return [c for c, spec in self.cfg.cohorts.items() if spec.role == "train"]

    @property
    def evaluation(self) -> list[str]:
        return [c for c, spec in self.cfg.cohorts.items() if spec.role != "train"]


def _float(value: object) -> float | None:
    """A number written in a CSV cell (``None`` for blanks and NA)."""
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _count(value: object) -> int | None:
    """``19`` or ``19 (57.6%)`` as an integer."""
    m = re.match(r"\s*(\d+)", str(value or ""))
    return int(m.group(1)) if m else None


def _cohort(name: str) -> str:
    return shown_name(name)


def _f2(x: float) -> str:
    return f"{x:.2f}"


def _class_counts(run: _Run, cohort: str) -> tuple[int, int, int] | None:
    """(patients, events, non-events) of a cohort from ``cohort_split_counts`` (binary endpoint)."""
    endpoint = run.cfg.endpoints.binary
    if not endpoint:
        return None
    for row in run.rows("tables/cohort_split_counts.csv"):
        if row.get("cohort") == cohort:
            n, neg, pos = _count(row.get("patients")), _count(row.get(f"{endpoint}=0")), _count(row.get(f"{endpoint}=1"))
            if None not in (n, neg, pos):
                return n, pos, neg
    return None


# --------------------------------------------------------------------------- rules


def auc_gap(run: _Run) -> list[ReviewPoint]:
    """Training out-of-fold AUC far from the AUC of another cohort (optimism, or a result a reviewer will call chance)."""
    src = "tables/final_model_summary.csv"
    rows = {r.get("cohort"): r for r in run.rows(src)}
    out = []
    for train in run.training:
        t = _float(rows.get(train, {}).get("auc"))
        if t is None:
            continue
        for cohort in run.evaluation:
            e = _float(rows.get(cohort, {}).get("auc"))
            if e is None or abs(e - t) < AUC_GAP:
                continue
            n = rows[cohort].get("patients", "?")
            if e > t:
                text = (f"The final model's AUC in the {_cohort(cohort)} cohort ({_f2(e)}, {n} patients) is {_f2(e - t)} above its "
                        f"{_cohort(train)} out-of-fold AUC ({_f2(t)}). A reviewer will ask whether the better result in the smaller "
                        f"evaluation cohort is chance or a case-mix difference; report its confidence interval and compare the cohorts.")
            else:
                text = (f"The final model's AUC falls from {_f2(t)} ({_cohort(train)}, out-of-fold) to {_f2(e)} in the {_cohort(cohort)} "
                        f"cohort ({n} patients): a reviewer will read this as overfitting or poor transportability and ask for it "
                        f"to be discussed.")
            out.append(ReviewPoint("major", text, src, "auc_gap"))
    return out


def habitat_k_at_edge(run: _Run) -> list[ReviewPoint]:
    """The number of habitats K chosen at the lower or upper edge of the searched range."""
    src = "tables/habitat_calinski_harabasz.csv"
    rows = [r for r in run.rows(src) if _float(r.get("k")) is not None]
    ks = sorted(int(_float(r["k"])) for r in rows)
    chosen = [int(_float(r["k"])) for r in rows if str(r.get("selected", "")).strip().lower() in ("true", "1", "yes")]
    if len(ks) < 2 or len(chosen) != 1 or chosen[0] not in (ks[0], ks[-1]):
        return []
    edge = "upper" if chosen[0] == ks[-1] else "lower"
    return [ReviewPoint("minor", f"The number of habitats K = {chosen[0]} was selected at the {edge} edge of the searched range "
                        f"{ks[0]}-{ks[-1]} (highest Calinski-Harabasz index there): a K outside the range may fit better; "
                        f"widen extraction.habitats.k_range or justify the range.", src, "habitat_k_at_edge")]


def degenerate_threshold(run: _Run) -> list[ReviewPoint]:
    """A threshold giving zero sensitivity or zero specificity in a cohort."""
    out = []
    for src in run.tables("performance"):
        for row in run.rows(src):
            for metric, other in (("sensitivity", "specificity"), ("specificity", "sensitivity")):
                if _float(row.get(metric)) == 0.0:
                    out.append(ReviewPoint(
                        "major", f"{row.get('model', 'A model')} in the {_cohort(row.get('cohort', '?'))} cohort has {metric} 0 "
                        f"({other} {_f2(_float(row.get(other)) or 0.0)}) at the threshold {_f2(_float(row.get('threshold')) or 0.0)}: "
                        f"the threshold puts every patient in one class; the classification metrics of that row are not informative.",
                        src, "degenerate_threshold"))  # fmt: skip
    return out


def small_subgroups(run: _Run) -> list[ReviewPoint]:
    """Subgroups with fewer than 5 patients in either outcome class (AUC unreliable or undefined)."""
    out = []
    for src in run.tables("subgroup_performance_"):
        small = []
        for row in run.rows(src):
            n, events = _count(row.get("n")), _count(row.get("events"))
            if n is None or events is None or min(events, n - events) >= MIN_SUBGROUP_CLASS:
                continue
            label = f"{row.get('subgroup', '?')} ({_cohort(row.get('cohort', '?'))}, {n} patients, {events} events)"
            if label not in small:
                small.append(label)
        if small:
            out.append(ReviewPoint("minor", f"{len(small)} subgroup{'s' if len(small) > 1 else ''} "
                                   f"{'have' if len(small) > 1 else 'has'} fewer than {MIN_SUBGROUP_CLASS} patients in an outcome class: "
                                   f"{'; '.join(small)}. Their AUCs are unreliable or undefined; pool or omit them.", src, "small_subgroups"))
    return out


def untrained_deep_weights(run: _Run) -> list[ReviewPoint]:
    """Deep features taken from a randomly initialised (untrained) network."""
    src = "tables/deep_feature_pca.csv"
    series = sorted({r.get("series", "?") for r in run.rows(src) if re.search(r"random|untrained", str(r.get("weights", "")), re.I)})
    if not series:
        return []
    return [ReviewPoint("major", f"The deep features of {', '.join(series)} come from a randomly initialised, untrained network "
                        f"(no pretrained weights): a reviewer will not accept them as learned image representations; set "
                        f"deep_features.pretrained_weights or leave them out.", src, "untrained_deep_weights")]


def in_sample_training_scores(run: _Run) -> list[ReviewPoint]:
    """Training-cohort scores shown in-sample (not out-of-fold) in the figures."""
    out = []
    src = "features/model_predictions.csv"
    models = sorted({r.get("model", "?") for r in run.rows(src)
                     if r.get("cohort") in run.training and str(r.get("out_of_fold", "")).strip().lower() in ("false", "0")})
    if models:
        out.append(ReviewPoint("major", f"Training-cohort predictions of {', '.join(models)} are in-sample (not out-of-fold): their "
                               f"training ROC, calibration and decision curves are optimistic.", src, "in_sample_training_scores"))
    rs = "features/radscores.csv"
    if run.exists("figures/radscore_distribution.png") and any(r.get("cohort") in run.training for r in run.rows(rs)):
        out.append(ReviewPoint("minor", "The Rad-score distribution figure shows training-cohort Rad-scores from the signature fitted "
                               "on those same patients (in-sample): its training separation and p-value are optimistic; say so in "
                               "the legend or show the evaluation cohorts only.", "figures/radscore_distribution.png",
                               "in_sample_training_scores"))  # fmt: skip
    return out


def icc_keeps_few(run: _Run) -> list[ReviewPoint]:
    """An ICC stability filter that keeps very few features of a block."""
    src = "tables/icc_retained_counts.csv"
    few = []
    for row in run.rows(src):
        if not row.get("roi"):  # the Total row
            continue
        extracted, constant, retained = (_count(row.get(k)) for k in ("extracted", "constant", "retained"))
        if None in (extracted, constant, retained):
            continue
        usable = max(extracted - constant, 1)
        if retained < MIN_ICC_FEATURES or retained / usable < MIN_ICC_SHARE:
            few.append(f"{row.get('series')} {row.get('roi')} {retained} of {usable}")
    if not few:
        return []
    return [ReviewPoint("minor", f"The ICC filter kept very few features in {'; '.join(few)} (fewer than {MIN_ICC_FEATURES}, or under "
                        f"{MIN_ICC_SHARE:.0%} of the non-constant features): check the second reading (perturbation) and the threshold.",
                        src, "icc_keeps_few")]  # fmt: skip


def events_per_variable(run: _Run) -> list[ReviewPoint]:
    """Fewer than 10 events per Rad-score feature in a training cohort."""
    src = "tables/radscore_coefficients.csv"
    n_features = sum(1 for r in run.rows(src) if r.get("feature") and r["feature"] != "(intercept)")
    if not n_features:
        return []
    candidates = next((_count(r.get("n_features")) for r in run.rows("tables/selection_pathway.csv")), None)
    out = []
    for cohort in run.training:
        counts = _class_counts(run, cohort)
        if counts is None:
            continue
        _, events, non_events = counts
        smaller = min(events, non_events)
        epv = smaller / n_features
        if epv < MIN_EVENTS_PER_VARIABLE:
            screened = f" after screening {candidates} candidate features" if candidates else ""
            out.append(ReviewPoint("major", f"The {_cohort(cohort)} cohort has {smaller} patients in its smaller outcome class for "
                                   f"{n_features} Rad-score features{screened}: {epv:.1f} events per variable, below the rule of thumb of "
                                   f"{MIN_EVENTS_PER_VARIABLE} (Peduzzi et al. 1996; Riley et al. 2020). Expect a reviewer to ask for "
                                   f"fewer features or a sample-size justification.", src, "events_per_variable"))  # fmt: skip
    return out


def small_evaluation_cohort(run: _Run) -> list[ReviewPoint]:
    """An evaluation cohort below 100 patients, events or non-events (external-validation rules of thumb)."""
    src = "tables/cohort_split_counts.csv"
    out = []
    for cohort in run.evaluation:
        counts = _class_counts(run, cohort)
        if counts is None:
            continue
        n, events, non_events = counts
        if n >= MIN_EVALUATION_PATIENTS and min(events, non_events) >= MIN_EVALUATION_EVENTS:
            continue
        out.append(ReviewPoint("major", f"The {_cohort(cohort)} cohort has {n} patients, {events} events and {non_events} non-events; "
                               f"external validation needs at least {MIN_EVALUATION_EVENTS} events and {MIN_EVALUATION_EVENTS} non-events "
                               f"(Collins et al. 2016; Riley et al. 2021): its AUC and calibration estimates are imprecise and "
                               f"must be read with their confidence intervals.", src, "small_evaluation_cohort"))  # fmt: skip
    return out


def excluded_data(run: _Run) -> list[ReviewPoint]:
    """Patients excluded from the analysis and features dropped for missing values."""
    out = []
    src = "tables/excluded_patients.csv"
    patients = sorted({r.get("patient", "") for r in run.rows(src) if r.get("patient")})
    if patients:
        out.append(ReviewPoint("major", f"{len(patients)} patient{'s were' if len(patients) > 1 else ' was'} excluded after feature "
                               f"extraction failed ({', '.join(patients[:10])}{' ...' if len(patients) > 10 else ''}): report them in the "
                               f"flow diagram and discuss whether their exclusion biases the cohorts.", src, "excluded_data"))
    src = "tables/features_dropped_missing_values.csv"
    dropped = [r for r in run.rows(src) if r.get("feature")]
    if dropped:
        out.append(ReviewPoint("minor", f"{len(dropped)} feature{'s were' if len(dropped) > 1 else ' was'} dropped for missing values in "
                               f"the training cohort: state why they are missing (e.g. absent habitats) in the methods.", src, "excluded_data"))
    return out


def failed_units(run: _Run) -> list[ReviewPoint]:
    """Feature-extraction units that failed."""
    src = "tables/extraction_failures.csv"
    rows = [r for r in run.rows(src) if r.get("patient")]
    if not rows:
        return []
    patients = sorted({r["patient"] for r in rows})
    return [ReviewPoint("major", f"{len(rows)} feature-extraction unit{'s' if len(rows) > 1 else ''} failed ({len(patients)} patient"
                        f"{'s' if len(patients) > 1 else ''}): state the reasons and how the missing features were handled.",
                        src, "failed_units")]  # fmt: skip


def calibration_slope(run: _Run) -> list[ReviewPoint]:
    """A calibration slope far from 1 in an evaluation cohort."""
    src = "tables/calibration.csv"
    out = []
    for row in run.rows(src):
        if row.get("cohort") not in run.evaluation:
            continue
        slope, lo, hi = (_float(row.get(k)) for k in ("slope", "slope_lower", "slope_upper"))
        if slope is None or SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
            continue
        excludes_one = lo is not None and hi is not None and not lo <= 1.0 <= hi
        ci = f" (95% CI {_f2(lo)} to {_f2(hi)})" if lo is not None and hi is not None else ""
        meaning = "predictions too extreme" if slope < 1 else "predictions too moderate"
        out.append(ReviewPoint("major" if excludes_one else "minor",
                               f"{row.get('model', 'A model')} has calibration slope {_f2(slope)}{ci} in the {_cohort(row['cohort'])} "
                               f"cohort ({meaning}): a reviewer will ask for recalibration or a discussion of miscalibration.",
                               src, "calibration_slope"))  # fmt: skip
    return out


def _rates(run: _Run) -> dict[str, tuple[int, int]]:
    """(patients, events) per cohort: ``cohort_split_counts``, else the calibration table's rows."""
    out: dict[str, tuple[int, int]] = {}
    for cohort in run.cfg.cohorts:
        counts = _class_counts(run, cohort)
        if counts is not None:
            out[cohort] = (counts[0], counts[1])
    for row in run.rows("tables/calibration.csv"):
        n, events = _count(row.get("n")), _count(row.get("events"))
        if row.get("cohort") and n and events is not None:
            out.setdefault(row["cohort"], (n, events))
    return out


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def prevalence_shift(run: _Run) -> list[ReviewPoint]:
    """An evaluation cohort whose event rate differs from the training cohort's by at least :data:`PREVALENCE_SHIFT`."""
    rates = _rates(run)
    train = [rates[c] for c in run.training if c in rates]
    if not train:
        return []
    n_t, e_t = sum(n for n, _ in train), sum(e for _, e in train)
    if not 0 < e_t < n_t:
        return []
    p_t = e_t / n_t
    src = "tables/cohort_split_counts.csv" if run.exists("tables/cohort_split_counts.csv") else "tables/calibration.csv"
    out = []
    for cohort in run.evaluation:
        if cohort not in rates:
            continue
        n, events = rates[cohort]
        if not 0 < events < n:
            continue
        p = events / n
        if abs(p - p_t) < PREVALENCE_SHIFT:
            continue
        shift = _logit(p) - _logit(p_t)
        observed, excluded = [], False
        for row in run.rows("tables/calibration.csv"):
            a, lo, hi = (_float(row.get(k)) for k in ("intercept", "intercept_lower", "intercept_upper"))
            if row.get("cohort") != cohort or a is None:
                continue
            ci = f" (95% CI {_f2(lo)} to {_f2(hi)})" if lo is not None and hi is not None else ""
            observed.append(f"{row.get('model', 'a model')} {a:+.2f}{ci}")
            excluded = excluded or (lo is not None and hi is not None and not lo <= 0.0 <= hi)
        seen = f" Observed calibration intercepts there: {'; '.join(observed)}." if observed else ""
        training = " and ".join(_cohort(c) for c in run.training)
        out.append(ReviewPoint(
            "major" if excluded else "minor",
            f"The {_cohort(cohort)} cohort's event rate ({p:.2f}, {events} of {n}) differs from the {training} cohort's ({p_t:.2f}, "
            f"{e_t} of {n_t}) by {abs(p - p_t):.2f} (rule: an absolute difference of at least {PREVALENCE_SHIFT:.2f}). Under a pure "
            f"prevalence shift a model calibrated on training shows a calibration intercept of about logit({p:.2f}) - logit({p_t:.2f}) "
            f"= {shift:+.2f} there, and its mean predicted probability stays near the training rate.{seen} A reviewer will ask how much "
            f"of the miscalibration is prevalence shift; discuss it, and update the intercept to the cohort's event rate before "
            f"using the model there.", src, "prevalence_shift"))  # fmt: skip
    return out


#: The saved models whose probabilities the statistics report (notebook 05's sidecars).
_MODEL_SIDECARS = (("the final radiomics model", "models/final_model.json"), ("the clinical model", "models/clinical_model.json"))


def uncalibrated_probabilities(run: _Run) -> list[ReviewPoint]:
    """A model trained with class weights or SMOTE whose probabilities were not recalibrated."""
    out = []
    for what, src in _MODEL_SIDECARS:
        meta = run.json(src)
        if not meta:
            continue
        weight = meta.get("class_weight") or (meta.get("classifier_params") or {}).get("class_weight") or "none"
        smote = "smote" in (meta.get("steps") or [])
        method = (meta.get("recalibration") or {}).get("method", "none")
        if method != "none" or (weight == "none" and not smote):
            continue
        how = " and ".join(x for x in ("class weighting" if weight != "none" else "", "SMOTE oversampling" if smote else "") if x)
        rate = meta.get("training_prevalence")
        mean = meta.get("oof_mean_probability")
        numbers = (f" (training event rate {rate:.2f}, mean out-of-fold probability {mean:.2f})"
                   if isinstance(rate, int | float) and isinstance(mean, int | float) else "")  # fmt: skip
        out.append(ReviewPoint(
            "major", f"The probabilities of {what} are not calibrated: it was trained with {how} and not recalibrated "
            f"(models.recalibration: none), so its probabilities are pulled towards 0.5 instead of the training event rate{numbers}. "
            f"Its calibration table and curves, and the net benefit of its decision curves, describe the reweighted model, not a risk; "
            f"set models.recalibration to auto, sigmoid or isotonic, or turn the reweighting off.", src, "uncalibrated_probabilities"))  # fmt: skip
    return out


def reversed_recalibration(run: _Run) -> list[ReviewPoint]:
    """A recalibration that reverses a model's ranking (Platt's slope of the wrong sign)."""
    out = []
    for what, src in _MODEL_SIDECARS:
        meta = run.json(src)
        recal = meta.get("recalibration") or {}
        if not recal.get("reverses_ranking"):
            continue
        auc = meta.get("oof_auc_uncalibrated")
        before = f" (out-of-fold AUC {auc:.2f} before recalibration)" if isinstance(auc, int | float) else ""
        out.append(ReviewPoint(
            "major", f"The recalibration of {what} decreases with its score (Platt's a = {recal.get('a', float('nan')):+.2f}): its "
            f"training out-of-fold scores ranked the patients the wrong way round{before}, so the calibrated model reverses the "
            f"pipeline's ranking. The model carries no usable signal; report it as such rather than as a calibrated risk.",
            src, "reversed_recalibration"))  # fmt: skip
    return out


#: Every rule, in the order their points are listed within a severity.
RULES: tuple[Callable[[_Run], list[ReviewPoint]], ...] = (
    small_evaluation_cohort, events_per_variable, auc_gap, uncalibrated_probabilities, reversed_recalibration, calibration_slope,
    prevalence_shift,
    degenerate_threshold, untrained_deep_weights, in_sample_training_scores, failed_units, excluded_data, small_subgroups,
    icc_keeps_few, habitat_k_at_edge,
)  # fmt: skip


def review_points(cfg: StudyConfig, report_root: str | Path | None = None,
                  rules: Sequence[Callable[[_Run], list[ReviewPoint]]] = RULES) -> list[ReviewPoint]:  # fmt: skip
    """The points a reviewer will raise about a finished (or partial) run.

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration (cohort roles, endpoint).
    report_root : path, optional
        ``reports/<study>/`` (default: ``cfg.report_root``).
    rules : sequence of callables
        The checks to run (default: :data:`RULES`).

    Returns
    -------
    list of ReviewPoint
        Major points first, then minor ones; within a severity in rule order.
        Files a rule needs but the run did not write raise no point.
    """
    if cfg.splits_into_tasks:
        return _task_points(cfg, Path(report_root) if report_root is not None else cfg.study_root, rules)
    run = _Run(cfg, Path(report_root) if report_root is not None else cfg.report_root)
    points = [p for rule in rules for p in rule(run)]
    return sorted(points, key=lambda p: SEVERITIES.index(p.severity))  # stable: rule order within a severity


def _task_points(cfg: StudyConfig, root: Path, rules: Sequence[Callable[[_Run], list[ReviewPoint]]]) -> list[ReviewPoint]:
    """A study with several tasks: every task's points, named by task, with sources relative to the study's folder; a
    point on a shared step's file (e.g. failed extraction units) that every task raises alike is listed once, unnamed."""
    points: list[ReviewPoint] = []
    for rule in rules:
        per_view = []
        for view in cfg.task_views():
            task_root = root / "tasks" / str(view.task)
            for p in rule(_Run(view, task_root, root)):
                own = (task_root / p.source).is_file()
                per_view.append((view, own, ReviewPoint(p.severity, p.text, f"tasks/{view.task}/{p.source}" if own else p.source, p.rule)))
        shared = [p for _, own, p in per_view if not own]
        alike = len(shared) == len(cfg.task_names) and len({(p.text, p.source) for p in shared}) == 1
        for view, own, p in per_view:
            if own or not alike:
                points.append(ReviewPoint(p.severity, f"{view.task_label}: {p.text}", p.source, p.rule))
            elif p is shared[0]:  # listed once, where the first task raised it
                points.append(p)
    return sorted(points, key=lambda p: SEVERITIES.index(p.severity))
