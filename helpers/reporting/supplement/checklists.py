"""The reporting checklists (CLEAR, TRIPOD+AI) and the METRICS quality score of a run.

The item lists, their mapping to the run's outputs and the METRICS weights are
data (``checklists.yaml`` next to this module, validated on loading). Every
checklist item gets exactly one status:

- ``reported``: cited tables, figures, notes, generated methods paragraphs or
  recorded files of this run address it ("Reported: Table S3; Methods (Models)");
- ``authors``: the manuscript has to address it (title, ethics, discussion...),
  or nothing in this run does ("For the authors to complete");
- ``not_applicable``: a run condition makes the item void, with the reason.

METRICS (Kocak et al. 2024): each of the 30 items is judged ``yes``, ``no``,
``n/a`` (its condition does not hold) or ``authors`` (the run cannot judge it)
from the run's outputs and configuration. The score is the METRICS tool's
100 x (weights of items met) / (weights of applicable items); since the
authors' items are open, it is given over the items judged from the run and
as the range from "every open item unmet" to "every open item met".
"""


from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import MethodsParagraph, SupplementItem, _labels, _matching, _read_rows
from helpers.settings.study import StudyConfig

__all__ = [
    "CHECKLIST_FILE", "CONDITIONS", "METHODS_KEYS", "STATUSES", "ChecklistRow", "MetricsJudgement", "MetricsScore",
    "checklist_table", "load_checklists", "metrics_judgements", "metrics_score", "metrics_table", "validate_checklists",
]  # fmt: skip

CHECKLIST_FILE = Path(__file__).with_name("checklists.yaml")

#: Status of a checklist item -> how it starts in the document.
STATUSES = {"reported": "Reported", "authors": "For the authors to complete", "not_applicable": "Not applicable"}

#: Keys of the generated methods paragraphs (a key is present only when its analysis ran).
METHODS_KEYS = frozenset({
    "cohorts", "software", "preprocessing", "segmentation", "deep_features", "super_resolution", "extraction", "habitats",
    "missing_data", "reliability", "harmonization", "signature", "models", "clinical", "nomogram", "survival", "explainability",
    "table_one", "statistics", "outputs",
})  # fmt: skip

#: Run conditions a checklist item may require (``requires:`` in the data).
CONDITIONS: dict[str, Callable[[StudyConfig], bool]] = {
    "clinical": lambda cfg: bool(cfg.clinical.variables),
    "smote": lambda cfg: bool(cfg.models.smote),
    # Class weights, SMOTE or a recalibration that can apply (issue 19): the models paragraph states which, as configured.
    "imbalance_or_recalibration": lambda cfg: bool(cfg.models.smote) or cfg.models.class_weight == "balanced" or cfg.models.recalibration != "none",
    "survival": lambda cfg: any(ep.time is not None for ep in cfg.all_endpoints),
    "deep_learning": lambda cfg: cfg.segmentation is not None or bool(cfg.deep_features) or cfg.super_resolution is not None,
    "never": lambda cfg: False,
}

_GUIDELINE_KEYS = {"name", "reference", "source", "items"}
_ITEM_KEYS = {"id", "section", "topic", "manuscript", "outputs", "methods", "files", "requires", "not_applicable", "available"}
_METRICS_KEYS = {"name", "reference", "source", "total_weight", "category_weights", "conditions", "items"}
_METRICS_ITEM_KEYS = {"id", "category", "weight", "topic", "conditions"}
_FILE_LIKE = ("/",)  # an `available` pattern with a slash is a file path, otherwise an output-name pattern


# --------------------------------------------------------------------------- data


def _fail(source: str, where: str, problem: str) -> None:
    raise ValueError(f"{source}: {where}: {problem}")


def _validate_item(entry: object, guideline: str, seen: set[str], source: str) -> None:
    where = f"{guideline} item {entry.get('id') if isinstance(entry, Mapping) else entry!r}"
    if not isinstance(entry, Mapping) or not {"id", "section", "topic"} <= set(entry) or set(entry) - _ITEM_KEYS:
        _fail(source, where, f"keys must be among {sorted(_ITEM_KEYS)} with id, section and topic required")
    item_id = str(entry["id"])
    if item_id in seen:
        _fail(source, where, "item number listed twice")
    seen.add(item_id)
    for key in ("outputs", "methods", "files", "available"):
        if not isinstance(entry.get(key, []), list):
            _fail(source, where, f"'{key}' must be a list")
    unknown = sorted(set(entry.get("methods", [])) - METHODS_KEYS)
    if unknown:
        _fail(source, where, f"methods keys {unknown} are not among {sorted(METHODS_KEYS)}")
    if entry.get("requires") is not None and entry["requires"] not in CONDITIONS:
        _fail(source, where, f"requires {entry['requires']!r} is not among {sorted(CONDITIONS)}")
    if entry.get("manuscript") and any(entry.get(k) for k in ("outputs", "methods", "files", "requires")):
        _fail(source, where, "a manuscript item cites nothing from the run (use 'available' for material the authors may use)")
    if not entry.get("manuscript") and not any(entry.get(k) for k in ("outputs", "methods", "files", "requires")):
        _fail(source, where, "a run item needs outputs, methods, files or requires (or mark it manuscript: true)")


def _validate_metrics(metrics: object, source: str) -> None:
    if not isinstance(metrics, Mapping) or set(metrics) - _METRICS_KEYS or "items" not in metrics:
        _fail(source, "metrics", f"keys must be among {sorted(_METRICS_KEYS)} with items required")
    categories = metrics.get("category_weights", {}) or {}
    conditions = {str(c) for c in (metrics.get("conditions", {}) or {})}
    ids = []
    for entry in metrics["items"]:
        if not isinstance(entry, Mapping) or not {"id", "category", "weight", "topic"} <= set(entry) or set(entry) - _METRICS_ITEM_KEYS:
            _fail(source, f"metrics item {entry!r}", f"keys must be among {sorted(_METRICS_ITEM_KEYS)}")
        if entry["category"] not in categories:
            _fail(source, f"metrics item {entry['id']}", f"category {entry['category']!r} is not among {sorted(categories)}")
        if not set(map(str, entry.get("conditions", []))) <= conditions:
            _fail(source, f"metrics item {entry['id']}", f"conditions must be among {sorted(conditions)}")
        ids.append(int(entry["id"]))
    if sorted(ids) != list(range(1, len(ids) + 1)):
        _fail(source, "metrics", f"items must be numbered 1..{len(ids)} once each, got {sorted(ids)}")


def validate_checklists(data: Mapping, source: str = "checklist data") -> Mapping:
    """Check the checklist and METRICS data (a misspelt key would otherwise be ignored silently).

    Raises
    ------
    ValueError
        Naming the entry and the problem.
    """
    for guideline in data.get("guidelines", []) or []:
        if not isinstance(guideline, Mapping) or set(guideline) - _GUIDELINE_KEYS or not {"name", "reference", "items"} <= set(guideline):
            _fail(source, f"guideline {guideline!r:.60}", f"keys must be among {sorted(_GUIDELINE_KEYS)} with name, reference and items")
        seen: set[str] = set()
        for entry in guideline["items"]:
            _validate_item(entry, guideline["name"], seen, source)
    if "metrics" in data:
        _validate_metrics(data["metrics"], source)
    return data


@cache
def _load(path: str) -> dict:
    return dict(validate_checklists(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}, path))


def load_checklists(path: str | Path | None = None) -> dict:
    """The checklist and METRICS data (``checklists.yaml`` of this package by default), validated."""
    return _load(str(Path(path) if path else CHECKLIST_FILE))


# --------------------------------------------------------------------------- checklist rows


@dataclass(frozen=True)
class ChecklistRow:
    """One checklist item and how the run addresses it."""

    guideline: str
    section: str
    item: str
    topic: str
    status: str  # a key of STATUSES
    detail: str  # what is cited, the material available, or the reason

    @property
    def addressed(self) -> str:
        """``Reported: Table S3; Methods (Models)``, ``For the authors to complete`` or ``Not applicable: <reason>``."""
        head = STATUSES[self.status]
        if not self.detail:
            return head
        return f"{head}: {self.detail}" if self.status != "authors" else f"{head} ({self.detail})"


def _methods_pointer(keys: Sequence[str], titles: Mapping[str, str]) -> str:
    present = [titles[k] for k in keys if k in titles]
    return f"Methods ({'; '.join(present)})" if present else ""


def _files(patterns: Sequence[str], other: Sequence[str]) -> list[str]:
    return [rel for rel in other if any(fnmatch.fnmatch(rel, str(p)) for p in patterns)]


def _cited(entry: Mapping, items: Sequence[SupplementItem], titles: Mapping[str, str], other: Sequence[str], cfg: StudyConfig) -> str:
    parts = [_labels(_matching(items, entry.get("outputs", []), cfg)), _methods_pointer(entry.get("methods", []), titles)]
    files = _files(entry.get("files", []), other)
    if files:
        parts.append(f"file{'s' if len(files) > 1 else ''} {', '.join(files)}")
    return "; ".join(p for p in parts if p)


def _available(entry: Mapping, items: Sequence[SupplementItem], other: Sequence[str], cfg: StudyConfig) -> str:
    patterns = entry.get("available", [])
    outputs = [p for p in patterns if not any(c in p for c in _FILE_LIKE)]
    files = _files([p for p in patterns if any(c in p for c in _FILE_LIKE)], other)
    shown = "; ".join(x for x in (_labels(_matching(items, outputs, cfg)), ", ".join(files)) if x)
    return f"material from this run: {shown}" if shown else ""


def _row(guideline: str, entry: Mapping, cfg: StudyConfig, items: Sequence[SupplementItem], titles: Mapping[str, str],
         other: Sequence[str]) -> ChecklistRow:  # fmt: skip
    def make(status: str, detail: str) -> ChecklistRow:
        return ChecklistRow(guideline, str(entry["section"]), str(entry["id"]), str(entry["topic"]), status, detail)

    if entry.get("manuscript"):
        return make("authors", _available(entry, items, other, cfg))
    requires = entry.get("requires")
    if requires and not CONDITIONS[requires](cfg):
        reason = entry.get("not_applicable")
        return make("not_applicable", str(reason)) if reason else make("authors", "not addressed by this run")
    cited = _cited(entry, items, titles, other, cfg)
    return make("reported", cited) if cited else make("authors", "not addressed by this run")


def checklist_rows(cfg: StudyConfig, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph] = (),
                   other: Sequence[str] = (), data: Mapping | None = None) -> list[ChecklistRow]:  # fmt: skip
    """Every CLEAR and TRIPOD+AI item with its status (see :func:`checklist_table`)."""
    data = data if data is not None else load_checklists()
    titles = {p.key: p.title for p in methods if p.text}
    return [_row(g["name"], entry, cfg, items, titles, other) for g in data.get("guidelines", []) for entry in g["items"]]


def checklist_table(cfg: StudyConfig, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph] = (), other: Sequence[str] = (),
                    data: Mapping | None = None) -> list[dict[str, str]]:  # fmt: skip
    """Rows mapping every CLEAR and TRIPOD+AI item to where the supplement addresses it.

    Parameters
    ----------
    items : sequence of SupplementItem
        The numbered tables, figures and notes of the document.
    methods : sequence of MethodsParagraph
        The generated methods paragraphs of this run (only those with text are cited).
    other : sequence of str
        Other recorded files (relative to ``reports/<study>/``) listed in the document.
    data : mapping, optional
        Checklist data (default: :func:`load_checklists`).

    Returns
    -------
    list of dict
        ``guideline``, ``section``, ``item`` (published number), ``topic``,
        ``status`` (a key of :data:`STATUSES`) and ``addressed`` (the status
        as shown, e.g. ``Reported: Table S1; Methods (Cohorts and outcome)``).
    """
    return [{"guideline": r.guideline, "section": r.section, "item": r.item, "topic": r.topic, "status": r.status, "addressed": r.addressed}
            for r in checklist_rows(cfg, items, methods, other, data)]  # fmt: skip


# --------------------------------------------------------------------------- METRICS


@dataclass(frozen=True)
class MetricsJudgement:
    """A METRICS item judged from the run: ``yes``, ``no``, ``n/a`` or ``authors``, with the basis."""

    value: str
    basis: str


@dataclass(frozen=True)
class MetricsScore:
    """The METRICS score of a run.

    Attributes
    ----------
    judged : float or None
        100 x weight met / weight judged (yes or no), over the items the run judges.
    low, high : float
        100 x weight met / weight applicable with every open (authors') item unmet, or met.
    met, judged_weight, open_weight, applicable_weight : float
        The weight sums the scores are made of.
    """

    judged: float | None
    low: float
    high: float
    met: float
    judged_weight: float
    open_weight: float
    applicable_weight: float


def metrics_score(values: Mapping[int, str], weights: Mapping[int, float]) -> MetricsScore:
    """Score METRICS judgements as the METRICS tool does (weights renormalised over the applicable items).

    Parameters
    ----------
    values : mapping
        Item number -> ``yes``, ``no``, ``n/a`` or ``authors``.
    weights : mapping
        Item number -> published weight.

    Returns
    -------
    MetricsScore
    """
    met = sum(weights[i] for i, v in values.items() if v == "yes")
    judged = sum(weights[i] for i, v in values.items() if v in ("yes", "no"))
    open_ = sum(weights[i] for i, v in values.items() if v == "authors")
    applicable = judged + open_
    if applicable <= 0:
        raise ValueError("no applicable METRICS item: every item is n/a")
    return MetricsScore(100 * met / judged if judged else None, 100 * met / applicable, 100 * (met + open_) / applicable,
                        met, judged, open_, applicable)  # fmt: skip


@dataclass
class _Facts:
    """What the METRICS judgements read: the configuration, the numbered items, methods and files of the run."""

    cfg: StudyConfig
    root: Path
    items: Sequence[SupplementItem]
    titles: Mapping[str, str]
    other: Sequence[str]

    def cite(self, *patterns: str) -> str:
        return _labels(_matching(self.items, patterns, self.cfg))

    def methods(self, *keys: str) -> str:
        return _methods_pointer(keys, self.titles)

    def rows(self, name: str) -> list[dict[str, str]]:
        return _read_rows(self.root / "tables" / f"{name}.csv")

    def pending(self, step: str) -> bool:
        """Whether ``step`` is configured but has recorded no output yet (a partial run: its items are not judged)."""
        return any(s.name == step for s in self.cfg.steps) and not any(it.step == step for it in self.items)


def _yes_no(cited: str, yes: str, no: str, f: _Facts | None = None, step: str = "") -> MetricsJudgement:
    if cited:
        return MetricsJudgement("yes", f"{yes}: {cited}")
    if f is not None and step and f.pending(step):
        return MetricsJudgement("authors", f"not judged: the {step} step has not run yet")
    return MetricsJudgement("no", no)


def _authors(basis: str) -> MetricsJudgement:
    return MetricsJudgement("authors", basis)


def _conditions(f: _Facts) -> dict[str, tuple[bool, str]]:
    """Answers to the five METRICS conditions, with their basis."""
    handcrafted = f.cite("feature_counts_{preset}") or f.cite("supplied_feature_tables")  # extracted, or supplied as tables
    deep = f.cite("deep_feature_pca")
    end_to_end = f.cite("deep_classifier_auc")
    return {
        "1": (True, "regions of interest come from tumour segmentation masks"),
        "2": (f.cfg.segmentation is not None, "a segmentation network is configured" if f.cfg.segmentation is not None
              else "no segmentation network is configured"),
        "3": (bool(handcrafted), f"hand-crafted features ({handcrafted})" if handcrafted else "no hand-crafted feature extraction"),
        "4": (bool(handcrafted or deep), "radiomic features in tabular form" if handcrafted or deep else "no tabular features"),
        "5": (bool(end_to_end), f"end-to-end 2.5D deep-learning classifier ({end_to_end})" if end_to_end else "no end-to-end deep learning"),
    }  # fmt: skip


def _training_events(f: _Facts) -> int | None:
    # With several tasks, the first task's (its Rad-score is the first radscore_coefficients table of the document).
    endpoint = next((ep.binary for ep in f.cfg.all_endpoints[:1] if ep.binary), None)
    train = [c for c, spec in f.cfg.cohorts.items() if spec.role == "train"]
    for row in f.rows("cohort_split_counts"):
        if endpoint and row.get("cohort") in train:
            counts = [str(row.get(f"{endpoint}={k}", "")).split(" ")[0] for k in (0, 1)]
            if all(c.isdigit() for c in counts):
                return min(int(c) for c in counts)
    return None


def _judge_16(f: _Facts) -> MetricsJudgement:
    n_features = sum(1 for r in f.rows("radscore_coefficients") if r.get("feature") and r["feature"] != "(intercept)")
    events = _training_events(f)
    if not n_features or events is None:
        return _authors("the run gives no final feature count and training event count to compare")
    epv = events / n_features
    basis = f"{events} training patients in the smaller outcome class for {n_features} Rad-score features ({epv:.1f} per feature)"
    return MetricsJudgement("yes", basis + ", at least 10") if epv >= 10 else _authors(basis + ", below 10: the authors must justify it")


def _judge_23(f: _Facts) -> MetricsJudgement:
    series = [s for s in f.cfg.series if not (f.cfg.super_resolution and s == f.cfg.super_resolution.output_series)]
    if len(series) == 1:
        return MetricsJudgement("yes", f"single image series ({series[0]})")
    compared = [r for r in f.rows("pairwise_comparison") if " / " in str(r.get("model_a", "")) + str(r.get("model_b", ""))]
    cited = f.cite("pairwise_comparison*")
    if compared and cited:
        return MetricsJudgement("yes", f"single-series models compared formally: {cited}")
    grid = f.cite("model_grid")
    return MetricsJudgement("no", f"{len(series)} series; single-series models in {grid} but no formal test against the multi-series model"
                            if grid else f"{len(series)} series and no single-series comparison")  # fmt: skip


def _judge_25(f: _Facts) -> MetricsJudgement:
    algorithms = f.cfg.models.algorithms
    grid = f.cite("model_grid")
    if f.cfg.models.final_algorithm == "logistic" and grid:
        return MetricsJudgement("yes", f"the final model is a logistic regression; {len(algorithms) - 1} machine-learning algorithms "
                                f"are compared with it in {grid}")  # fmt: skip
    if "logistic" in algorithms and grid:
        return _authors(f"logistic regression is in the model grid ({grid}) without a formal test against the final model")
    return _yes_no("", "", "no simple or classical statistical model in the comparison", f, "models")


def _judge_testing(f: _Facts, external: bool) -> MetricsJudgement:
    held_out = [c for c, spec in f.cfg.cohorts.items() if spec.role != "train"]
    if not held_out:
        return MetricsJudgement("no", "no held-out cohort (cross-validation only)")
    where = "another institution" if external else "the same source as the training data"
    summary = f.cite("final_model_summary")
    return _authors(f"held-out cohort{'s' if len(held_out) > 1 else ''} {', '.join(held_out).replace('_', ' ')}"
                    f"{f' ({summary})' if summary else ''}; whether from {where} is for the authors")  # fmt: skip


def _judge_20(f: _Facts) -> MetricsJudgement:
    perf = f.cite("performance*")
    if not perf:
        return _yes_no("", "", "no classification performance table", f, "statistics")
    if f.cite("deep_classifier_auc") and not f.cite("deep_classifier_loss_{series}"):
        return MetricsJudgement("no", f"{perf} gives AUC and confusion-matrix metrics, but the deep-learning loss curves are missing")
    return MetricsJudgement("yes", f"AUC, sensitivity, specificity, PPV, NPV with patients and events: {perf}")


def _judge_8(f: _Facts) -> MetricsJudgement:
    seg = f.methods("segmentation")
    if seg:
        return MetricsJudgement("yes", seg)
    if f.cfg.segmentation is not None:
        return _authors("the segmentation network is evaluated in this run, but the methods do not describe the segmentation; "
                        "the readers of the reference masks are for the authors")  # fmt: skip
    return _authors("masks were provided to the run; who drew them and how is for the authors")


_METRICS_JUDGES: dict[int, Callable[[_Facts], MetricsJudgement]] = {
    1: lambda f: _authors("adherence to reporting guidelines is stated in the manuscript"),
    2: lambda f: _authors("eligibility criteria are not part of the run"),
    3: lambda f: _authors(f"the outcome column{'s are' if len(f.cfg.all_endpoints) > 1 else ' is'} "
                          f"{', '.join(repr(ep.binary or ep.event) for ep in f.cfg.all_endpoints)}; the reference standard is for the authors"),
    4: lambda f: _authors("the institutions providing the images are not recorded by the run"),
    5: lambda f: _authors("the clinical standard of the imaging protocol is for the authors"),
    6: lambda f: _yes_no(f.cite("acquisition_parameters_{cohort}"), "acquisition parameters per series and scanner", "no acquisition-parameter table"),
    7: lambda f: _authors("the interval between imaging and reference standard is not recorded by the run"),
    8: _judge_8,
    9: lambda f: _yes_no(f.cite("segmentation_summary", "segmentation_dice*"), "Dice against the reference masks", "no evaluation of the automatic masks"),
    10: lambda f: _authors("who produced the test-set masks is for the authors"),
    11: lambda f: _authors(f"pre-processing is described ({f.methods('preprocessing', 'extraction') or 'Methods'}); whether it is "
                           f"appropriate for the modality is a judgement for the authors"),  # fmt: skip
    12: lambda f: _yes_no(f.methods("software") or f.cite("ibsi_compliance_summary", "ibsi_phantom_compliance"), "named software and version",
                         "the extraction software is not reported"),  # fmt: skip
    13: lambda f: _yes_no("; ".join(x for x in (f.cite("feature_counts_{preset}"), ", ".join(_files(["provenance/extraction.json"], f.other)),
                                                 # supplied tables count when every table states its settings (quoted in the methods)
                                                 f.cite("supplied_feature_tables") if f.cfg.feature_tables and all(t.settings.strip() for t in f.cfg.feature_tables)
                                                 else "") if x),
                          "feature classes and the complete extraction settings", "no extraction settings recorded"),  # fmt: skip
    14: lambda f: _yes_no(f.cite("icc_retained_counts", "icc_per_feature"), "ICC stability filter", "no removal of non-robust features", f, "signature"),
    15: lambda f: _yes_no(f.cite("selection_pathway"), "feature selection pathway", "no removal of redundant features", f, "signature"),
    16: _judge_16,
    17: lambda f: MetricsJudgement("no", "the run has no test-retest or perturbation analysis of the deep-learning classifier"),
    18: lambda f: _yes_no(f.cite("cohort_split_counts"), "patient-level cohorts fixed before modelling; every fitted step learns from the "
                          "training cohort only", "no cohort table"),  # fmt: skip
    19: lambda f: (MetricsJudgement("yes", f"ComBat harmonisation of scanner effects: {f.cite('combat_batches_{series}', 'combat_diagnostics_{series}')}")
                  if f.cite("combat_batches_{series}", "combat_diagnostics_{series}") else _authors("no harmonisation in the run; other confounders are for the authors")),
    20: _judge_20,
    21: lambda f: _yes_no(f.cite("performance*"), "95% confidence intervals", "no confidence intervals", f, "statistics"),
    22: lambda f: _yes_no(f.cite("calibration", "calibration_{cohort}"), "calibration intercept, slope and curves", "no calibration assessment",
                          f, "statistics"),
    23: _judge_23,
    24: lambda f: (MetricsJudgement("yes", f"clinical model and nomogram: {f.cite('clinical_model_coefficients', 'nomogram*')}")
                  if f.cite("clinical_model_coefficients", "nomogram*") else
                  _authors(f"no non-radiomic comparator in the run{'; decision curves: ' + f.cite('decision_curve_{cohort}') if f.cite('decision_curve_{cohort}') else ''}")),
    25: _judge_25,
    26: lambda f: _judge_testing(f, external=False),
    27: lambda f: _judge_testing(f, external=True),
    28: lambda f: _authors("public data sharing is for the authors"),
    29: lambda f: _authors("public code sharing is for the authors"),
    30: lambda f: _authors(f"model files {', '.join(_files(['models/*.joblib'], f.other))}; sharing them is for the authors"
                           if _files(["models/*.joblib"], f.other) else "sharing the final model is for the authors"),
}  # fmt: skip


def metrics_judgements(cfg: StudyConfig, report_root: str | Path, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph] = (),
                       other: Sequence[str] = (), data: Mapping | None = None) -> tuple[dict[str, tuple[bool, str]], dict[int, MetricsJudgement]]:  # fmt: skip
    """Judge the 30 METRICS items from a run.

    Returns
    -------
    (conditions, judgements)
        Condition number -> (holds, basis); item number -> :class:`MetricsJudgement`
        (``n/a`` when one of the item's conditions does not hold).
    """
    data = data if data is not None else load_checklists()
    facts = _Facts(cfg, Path(report_root), items, {p.key: p.title for p in methods if p.text}, other)
    conditions = _conditions(facts)
    out = {}
    for entry in data["metrics"]["items"]:
        failed = [str(c) for c in entry.get("conditions", []) if not conditions[str(c)][0]]
        item = int(entry["id"])
        out[item] = (MetricsJudgement("n/a", f"condition {failed[0]}: {conditions[failed[0]][1]}") if failed else _METRICS_JUDGES[item](facts))
    return conditions, out


_SHOWN = {"yes": "Yes", "no": "No", "n/a": "n/a", "authors": "Authors"}


def metrics_table(cfg: StudyConfig, report_root: str | Path, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph] = (),
                  other: Sequence[str] = (), data: Mapping | None = None) -> tuple[list[str], list[list[str]], str]:  # fmt: skip
    """The METRICS table of a run: header, rows (items, then the scores) and the note under it."""
    data = data if data is not None else load_checklists()
    metrics = data["metrics"]
    conditions, judged = metrics_judgements(cfg, report_root, items, methods, other, data)
    weights = {int(e["id"]): float(e["weight"]) for e in metrics["items"]}
    score = metrics_score({i: j.value for i, j in judged.items()}, weights)
    rows = [[str(e["id"]), f"{e['category']}: {e['topic']}", f"{float(e['weight']):.4f}", _SHOWN[judged[int(e["id"])].value],
             judged[int(e["id"])].basis] for e in metrics["items"]]  # fmt: skip
    judged_text = f"{score.judged:.1f}%" if score.judged is not None else "not defined"
    rows += [
        ["Score", "Over the items judged from the run", f"{score.judged_weight:.4f}", judged_text,
         f"weight met {score.met:.4f} / weight judged {score.judged_weight:.4f}"],
        ["Score", "Range over the items left to the authors", f"{score.applicable_weight:.4f}", f"{score.low:.1f}% to {score.high:.1f}%",
         f"every open item unmet / met (open weight {score.open_weight:.4f}; applicable weight {score.applicable_weight:.4f})"],
    ]  # fmt: skip
    cond_text = "; ".join(f"condition {k} ({metrics['conditions'][k].rstrip('?')}): {'yes' if v else 'no'} - {b}" for k, (v, b) in conditions.items())
    note = (f"METRICS score = 100 x (sum of the weights of the items met) / (sum of the weights of the applicable items); items whose "
            f"condition does not hold are n/a and leave the denominator, as in the METRICS web tool. Items the run "
            f"cannot judge are left to the authors (judgement 'Authors'); the score is given over the judged items and as the range from all of them unmet to all met. Conditions: "
            f"{cond_text}. Weights: {metrics['reference']}")  # fmt: skip
    return ["Item", "Category: topic", "Weight", "Judgement", "Basis"], rows, note


# --------------------------------------------------------------------------- document items


def _guideline_note(data: Mapping) -> str:
    refs = " ".join(f"{g['name']}: {g['reference']}." for g in data.get("guidelines", []))  # no web address: the HTML links nothing outside
    return ("Item numbers and sections are those of the published checklists; topics are short paraphrases. 'Reported' cites the tables, "
            "figures, notes, methods paragraphs and files of this supplement that address the item; 'For the authors to complete' marks "
            "items the manuscript has to address (material from this run is named where there is some); 'Not applicable' gives the "
            "reason. " + refs)  # fmt: skip


def checklist_item(cfg: StudyConfig, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph], other: Sequence[str],
                   number: int, data: Mapping | None = None) -> tuple[SupplementItem, tuple[list[str], list[list[str]]]]:  # fmt: skip
    """The numbered reporting-checklist table (CLEAR and TRIPOD+AI) and its cells."""
    data = data if data is not None else load_checklists()
    rows = checklist_rows(cfg, items, methods, other, data)
    counts = ", ".join(f"{g['name']} ({len(g['items'])} items)" for g in data.get("guidelines", []))
    item = SupplementItem("table", "reporting_checklist", "", "", None, number,
                          f"Reporting checklists - every item of {counts} and where this supplement addresses it.",
                          note=_guideline_note(data), n_rows=len(rows), n_columns=3)  # fmt: skip
    # Guideline with the item number, and the section leading the topic: three columns, so the table fits a printed page.
    cells = (["Item", "Section: topic", "Status"], [[f"{r.guideline} {r.item}", f"{r.section}: {r.topic}", r.addressed] for r in rows])
    return item, cells


def quality_sections(cfg: StudyConfig, root: Path, items: Sequence[SupplementItem], methods: Sequence[MethodsParagraph],
                     other: Sequence[str], first_number: int, data: Mapping | None = None,
                     ) -> tuple[list[tuple[str, str, list[SupplementItem]]], dict[str, tuple[list[str], list[list[str]]]]]:  # fmt: skip
    """The sections 'Points a reviewer will raise' and 'Methodological quality (METRICS)', numbered from ``first_number``.

    Returns
    -------
    (sections, cells)
        ``(step, title, [item])`` entries to append to the document's sections,
        and the cells of their tables keyed by anchor.
    """
    from helpers.reporting.supplement.review_points import RULES, review_points

    data = data if data is not None else load_checklists()
    by_path = {it.path: it for it in items if it.path}
    points = review_points(cfg, root)
    rows = [[str(i), p.severity, p.text, by_path[p.source].label if p.source in by_path else p.source]
            for i, p in enumerate(points, 1)]  # fmt: skip
    if not rows:
        rows = [["-", "-", f"None of the {len(RULES)} automatic checks raised a point.", ""]]
    review = SupplementItem("table", "review_points", "", "", None, first_number,
                            "Points a reviewer will raise - automatic checks of this run's outputs (major points first).",
                            note=(f"{len(RULES)} checks of sample size, events per variable, optimism, calibration (slope, prevalence shift, "
                                  "probabilities not recalibrated after class weighting or SMOTE), thresholds, subgroups, "
                                  "deep-learning weights, in-sample figures, exclusions, failed units, feature stability and the habitat "
                                  "search (thresholds in helpers.reporting.supplement.review_points). Source: the table or figure of this "
                                  "supplement, or the file, the point rests on."),
                            n_rows=len(rows), n_columns=4)  # fmt: skip
    header, metric_rows, note = metrics_table(cfg, root, items, methods, other, data)
    quality = SupplementItem("table", "metrics_score", "", "", None, first_number + 1,
                             "METRICS methodological quality score - each item judged from this run's outputs and configuration, "
                             "or left to the authors.", note=note, n_rows=len(metric_rows), n_columns=len(header))  # fmt: skip
    sections = [("review_points", "Points a reviewer will raise", [review]), ("metrics", "Methodological quality (METRICS)", [quality])]
    cells = {review.anchor: (["#", "Severity", "Point", "Source"], rows), quality.anchor: (header, metric_rows)}
    return sections, cells
