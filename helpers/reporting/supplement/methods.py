"""The generated methods section: one paragraph per stage that ran, written from what the run recorded.

Every paragraph is written only when the outputs of its stage are in the
step ledgers, and its parameters are read from the run's records first
(``provenance/*.json``, the saved models' JSON sidecars, the checkpoints'
settings and the tables themselves); the study configuration is the fallback
for what a run does not record. The core stages are here; the optional
analyses (segmentation, deep features, super-resolution, habitats,
reliability, harmonisation, missing data, clinical model, nomogram, survival,
explainability, Table 1) are in :mod:`.methods_optional`.
"""


from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.figures.evaluation import calibration_bin_count
from helpers.reporting.supplement import methods_words as w
from helpers.reporting.supplement.collect import (
    _EXTRACTION_OUTPUTS,
    _MODEL_OUTPUTS,
    _SIGNATURE_OUTPUTS,
    _STATISTICS_OUTPUTS,
    MethodsParagraph,
    SupplementItem,
    _join,
    _root,
    collect_outputs,
)  # fmt: skip
from helpers.reporting.supplement.methods_run import RunRecord
from helpers.settings.study import StudyConfig

#: Paragraph keys in document order (the checklist data refers to them).
PARAGRAPH_KEYS = (
    "cohorts", "software", "segmentation", "super_resolution", "preprocessing", "extraction", "habitats", "deep_features", "reliability",
    "harmonization", "missing_data", "signature", "models", "clinical", "nomogram", "survival", "explainability", "table_one", "statistics",
    "outputs",
)  # fmt: skip


# --------------------------------------------------------------------------- cohorts


def _split_rows(run: RunRecord) -> dict[str, dict[str, str]]:
    return {r.get("cohort", ""): r for r in run.rows("cohort_split_counts")}


def series_scans(run: RunRecord) -> dict[str, int | None]:
    """Scans of every declared series over all cohorts (from the cohort table; None when the run did not count them)."""
    split = _split_rows(run)
    rows = [r for name, r in split.items() if name in run.cfg.cohorts]
    out: dict[str, int | None] = {}
    for s in run.cfg.series:
        values = [r.get(f"scans {s}") for r in rows]
        out[s] = sum(int(float(v)) for v in values if v not in (None, "")) if any(v not in (None, "") for v in values) else None
    return out


def used_series(run: RunRecord) -> list[str]:
    """Declared series that had at least one scan (all declared series when the run did not count scans)."""
    scans = series_scans(run)
    return [s for s in run.cfg.series if scans.get(s) != 0]


def _cohorts(run: RunRecord, task_runs: list[tuple[str, RunRecord]] | None = None) -> MethodsParagraph:
    """Cohorts, series and outcome; ``task_runs`` ((label, run) per task): the outcome of every task of a study with
    several tasks."""
    cfg = run.cfg
    role_word = {"train": "model development", "validation": "internal validation", "test": "testing"}
    split = _split_rows(run)
    parts = []
    for name, c in cfg.cohorts.items():
        n = split.get(name, {}).get("patients")
        desc = f"; {c.description.rstrip('.')}" if c.description else ""
        count = f", {w.plural(int(float(n)), 'patient')}" if n else ""
        parts.append(f"{w.words(name)} ({role_word[c.role]}{count}{desc})")
    n_cohorts = len(cfg.cohorts)
    text = [f"Patients were assigned to {w.count_word(n_cohorts)} cohort{'s' if n_cohorts > 1 else ''}: {_join(parts)}."]
    text.append(f"The assignment rule was fixed before modelling: {cfg.cohort_rule.strip().rstrip('.')}.")
    scans = series_scans(run)
    described, unused = [], []
    derived = cfg.super_resolution.output_series if cfg.super_resolution is not None else None
    for s, v in cfg.series.items():
        if s == derived:
            if run.has("super_resolution_*"):
                described.append(f"{w.words(s)} (the {w.words(cfg.super_resolution.series)} images super-resolved by the network described below)")
            continue
        if scans.get(s) == 0:
            unused.append(w.words(s))
            continue
        n = scans.get(s)
        mod = w.modality(v.modality)
        bits = [x for x in (mod if mod.lower() not in s.lower() and s.lower() not in mod.lower() else "", v.description,
                            w.plural(n, "scan") if n else "") if x]  # fmt: skip
        described.append(f"{w.words(s)} ({'; '.join(bits)})" if bits else w.words(s))
    text.append(f"{'Image series' if cfg.manifest is not None else 'Series of the supplied features (no images were analysed)'}: {_join(described)}.")
    if unused:
        text.append(f"The series {_join(unused)} {'was' if len(unused) == 1 else 'were'} declared in the study configuration but no patient "
                    f"had a scan of {'it' if len(unused) == 1 else 'them'}; {'it was' if len(unused) == 1 else 'they were'} not used.")  # fmt: skip
    if task_runs is None:
        text += _endpoint_text(run, split)
    else:  # a study with several tasks: each task's endpoint, in one paragraph
        text.append(f"The study had {w.count_word(len(task_runs))} prediction tasks, each with its own signature, models and thresholds "
                    "fitted on the training cohort.")
        for label, r in task_runs:
            sentences = " ".join(_endpoint_text(r, split))
            text.append(f"{label}: {sentences[:1].lower()}{sentences[1:]}")
    held_out = [w.words(n) for n, c in cfg.cohorts.items() if c.role != "train"]
    training = _join([w.words(c) for c in cfg.training_cohorts])
    use = cohort_use(run)
    fitted = "models" if "the operating threshold" in use["decided"] else "models and thresholds"
    text.append(f"Every fitted step (habitat clustering, harmonisation, imputation, feature selection, {fitted}) learned from the "
                f"{training} cohort only" + (f" and was applied unchanged to the {_join(held_out)} cohort{'s' if len(held_out) > 1 else ''}."
                                             if held_out else "."))  # fmt: skip
    text += _cohort_use_text(use)
    return MethodsParagraph("cohorts", "Cohorts and outcome" + ("s" if task_runs else ""), " ".join(text))


def _endpoint_text(run: RunRecord, split: dict) -> list[str]:
    """The outcome sentences of the cohorts paragraph: the endpoint, its prevalence per cohort, its derivation."""
    cfg, text = run.cfg, []
    ep = cfg.endpoints
    if ep.binary:
        col = f"{ep.binary}=1"
        pos = []
        for name in cfg.cohorts:
            r = split.get(name, {})
            m = re.match(r"\s*(\d+)\s*\(([\d.]+)%\)", str(r.get(col, "")))
            if m and r.get("patients"):
                pos.append(f"{m.group(1)} of {int(float(r['patients']))} {w.words(name)} patients ({m.group(2)}%)")
        text.append(f"The binary outcome was {w.words(ep.binary)}" + (f", positive in {_join(pos)}" if pos else "") + f"{run.cite('cohort_split_counts')}.")
        rule = ep.binary_from
        if rule is not None:
            # The threshold comes from the configuration, never from the data: say so, since a data-driven cut-off would leak.
            text.append(f"It was derived from the continuous {w.words(rule.column)}: positive when {w.words(rule.column)} {rule.operator} "
                        f"{rule.threshold:g}{rule.unit}, a threshold fixed in the study configuration before any modelling"
                        + (f"; the distribution of {w.words(rule.column)} by band and cohort is given{run.cite('marker_distribution')}"
                           if run.has("marker_distribution") else "") + ".")
    if ep.time and run.has("survival_*", "cox_coefficients", "km_*"):
        text.append(f"Time-to-event analyses used the follow-up time ({w.words(ep.time)}, in {run.cfg.survival.time_unit}) and the event "
                    f"indicator ({w.words(ep.event)}) of the patient table.")  # fmt: skip
    return text


def cohort_use(run: RunRecord) -> dict[str, list[str]]:
    """What the validation cohort decided (``provenance/cohort_use.json`` of the models step; the config when absent)."""
    cfg, m = run.cfg, run.cfg.models
    record = run.json("provenance/cohort_use.json")
    decided = record.get("decided_on_validation")
    if decided is None:
        decided = [what for what, on in (("the final model's algorithm", m.final_selection == "validation"),
                                          ("the operating threshold", m.threshold_from == "validation")) if on]  # fmt: skip
    return {"validation": list(record.get("validation", cfg.validation_cohorts)), "test": list(record.get("test", cfg.test_cohorts)),
            "decided": list(decided)}


def _cohort_use_text(use: dict[str, list[str]]) -> list[str]:
    """What the validation cohort was for, and that test cohorts decided nothing (three-cohort designs)."""
    validation, tests = [w.words(c) for c in use["validation"]], [w.words(c) for c in use["test"]]
    if not validation:
        return []
    tested = f"the {_join(tests)} cohort{'s' if len(tests) > 1 else ''}" if tests else ""
    if use["decided"]:
        text = (f"The {_join(validation)} cohort (internal validation) was used to choose {_join(use['decided'])} (see Models) and to "
                f"report performance; it was used for no other choice")  # fmt: skip
    else:
        text = f"No choice was made on the {_join(validation)} cohort (internal validation): it was used only to report performance"
    return [text + (f"; {tested} {'were' if len(tests) > 1 else 'was'} used only to report performance, never for a choice."
                    if tests else ".")]  # fmt: skip


# --------------------------------------------------------------------------- software


def _versions(run: RunRecord) -> tuple[dict[str, str], dict, str]:
    latest = run.json("provenance/latest.json")
    if latest.get("packages"):
        return {k: str(v) for k, v in latest["packages"].items()}, latest, "provenance/latest.json"
    extraction = run.json("provenance/extraction.json")
    return {k: str(v) for k, v in (extraction.get("versions") or {}).items()}, latest, "provenance/extraction.json"


def pyradiomics_version(versions: Mapping[str, str]) -> str:
    for name, version in versions.items():
        if name.lower().startswith("pyradiomics"):
            build = f" ({name} build)" if name.lower() != "pyradiomics" else ""
            return f"PyRadiomics {version}{build}"
    return "PyRadiomics"


def _software(run: RunRecord) -> MethodsParagraph:
    versions, latest, source = _versions(run)
    text = []
    if versions:
        py = versions.get("python")
        pkgs = [f"{k} {v}" for k, v in versions.items() if k != "python" and v != "not installed"]
        text.append((f"Analyses were run in Python {py}" if py else "Analyses were run in Python") + (f" with {_join(pkgs)}." if pkgs else "."))
        text.append(f"The versions are those the run recorded ({source}).")
    else:
        text.append("The run left no provenance record, so software versions are not reported.")
    git = latest.get("git") or {}
    bits = []
    if git.get("commit"):
        bits.append(f"code at git commit {str(git['commit'])[:12]}" + (" with uncommitted changes" if git.get("dirty") else ""))
    if latest.get("config_hash"):
        bits.append(f"a configuration with SHA-256 {str(latest['config_hash'])[:12]}")
    if latest.get("helpers_source_hash"):
        bits.append(f"analysis code with SHA-256 {str(latest['helpers_source_hash'])[:12]}")
    if bits:
        text.append(f"The run used {_join(bits)}.")
    seed = latest.get("seed", run.cfg.seed)
    text.append(f"One random seed ({seed}) seeded every random step (cross-validation splits, subsampling, resampling and models).")
    return MethodsParagraph("software", "Software and reproducibility", " ".join(text))


# --------------------------------------------------------------------------- preprocessing


def extraction_settings(run: RunRecord) -> dict[str, dict[str, dict]]:
    """preset -> series -> {pyradiomics_params, preprocessing}: as recorded in provenance/extraction.json (else from the configuration)."""
    record = run.json("provenance/extraction.json")
    if record.get("settings"):
        return record["settings"]
    from helpers.features.pyradiomics import load_preset, merge_settings, preset_name
    from helpers.imaging.preprocess import PreprocessSettings

    cfg = run.cfg
    settings: dict[str, dict[str, dict]] = {}
    for ref in cfg.extraction.presets:
        try:
            base = load_preset(ref)
        except (ValueError, OSError):
            continue
        for s in [x for x in (cfg.extraction.series or cfg.series) if x in used_series(run)]:
            settings.setdefault(preset_name(ref), {})[s] = {
                "pyradiomics_params": merge_settings(base, cfg.extraction.series_settings.get(s)),
                "preprocessing": cfg.preprocessing.get(s, PreprocessSettings()).model_dump(mode="json"),
            }
    return settings


def _prep_text(series: str, prep: Mapping[str, object]) -> str:
    parts = []
    if prep.get("resample_mm"):
        mask = {"partial_volume": "by partial-volume fraction", "nearest": "by nearest neighbour"}.get(str(prep.get("mask_resampling")), "")
        thr = f" with a {w.number(prep.get('mask_threshold'))} threshold" if prep.get("mask_resampling") == "partial_volume" else ""
        parts.append(f"resampled to {w.spacing(prep['resample_mm'])} with {w.interpolator(prep.get('interpolator'))} interpolation "
                     f"(masks resampled {mask}{thr})")  # fmt: skip
    else:
        parts.append("kept on their native voxel grid")
    if prep.get("n4"):
        its = [w.number(i) for i in prep.get("n4_iterations") or []]  # type: ignore[union-attr]
        parts.append(f"corrected for bias field with N4 (shrink factor {w.number(prep.get('n4_shrink_factor'))}; {_join(its)} iterations at "
                     f"{len(its)} resolution levels)")  # fmt: skip
    if prep.get("clip"):
        lo, hi = prep["clip"]  # type: ignore[misc]
        parts.append(f"clipped to intensities {w.number(lo)} to {w.number(hi)}")
    if prep.get("clip_percentiles"):
        lo, hi = prep["clip_percentiles"]  # type: ignore[misc]
        parts.append(f"clipped to the {w.number(lo)}th to {w.number(hi)}th intensity percentiles inside the mask")
    if prep.get("zscore"):
        parts.append(f"z-score normalised over the {'tumour mask' if prep.get('zscore_region') == 'mask' else 'whole image'}")
    return f"{w.words(series)} images were {_join(parts)}."


def _preprocessing(run: RunRecord, settings: Mapping[str, dict]) -> MethodsParagraph | None:
    cfg = run.cfg
    text = []
    if run.has(*_EXTRACTION_OUTPUTS):
        first = next(iter(settings.values()), {})
        for s in used_series(run):
            if s not in first:
                continue
            text.append(_prep_text(s, first[s].get("preprocessing") or {}))
    if run.has("image_mask_qc_*"):
        g = cfg.geometry_tolerance
        text.append(f"Every image and mask pair was checked for matching geometry (tolerances: spacing {w.number(g.spacing)} relative, origin "
                    f"{w.number(g.origin_mm)} mm, direction cosines {w.number(g.direction)}), mask volume, connected components, contact with "
                    f"the image border and intensities inside the mask; values with a robust z-score above {w.number(cfg.qc.outlier_robust_z)} "
                    f"were flagged{run.cite('image_mask_qc_*')}.")  # fmt: skip
    if run.has("montage_*"):
        text.append(f"Every mask was reviewed on montages of its largest slice{run.cite('montage_*')}.")
    if run.has("acquisition_parameters_*"):
        text.append(f"Acquisition parameters were read from an allow-list of non-identifying DICOM header attributes{run.cite('acquisition_parameters_*')}.")
    return MethodsParagraph("preprocessing", "Image preprocessing and quality control", " ".join(text)) if text else None


# --------------------------------------------------------------------------- extraction


def _roi_text(cfg: StudyConfig, record: Mapping) -> str:
    parts = []
    recorded = record.get("rois") or {}
    rois = {n: recorded.get(n) or s.model_dump() for n, s in cfg.extraction.rois.items()}  # configuration order
    for name, spec in rois.items():
        kind, width = spec.get("kind"), spec.get("width_mm")
        what = {"tumour": "the tumour mask", "ring": f"a {w.number(width)} mm peritumoral ring outside the tumour",
                "fused": f"the tumour with a {w.number(width)} mm peritumoral ring"}.get(str(kind), str(kind))  # fmt: skip
        shape = spec.get("shape_features")
        with_shape = shape if shape is not None else kind != "ring"
        parts.append(f"{what} ({name}{'' if with_shape else '; without shape features'})")
    return _join(parts)


def _count_text(rows: list[dict[str, str]], cfg: StudyConfig) -> tuple[str, int]:
    total = next((r for r in rows if r.get("category") == "Total"), None)
    blocks = [c for c in (rows[0] if rows else {}) if c not in ("category", "image_type")]
    if total is None or not blocks:
        return "", 0
    per_series: dict[str, list[tuple[str, int]]] = {}
    for b in blocks:
        series, _, roi = b.rpartition(" ")
        per_series.setdefault(series, []).append((roi, int(float(total[b] or 0))))
    parts = []
    for series, rois in per_series.items():
        plain = [f"{roi} {n}" for roi, n in rois if not roi.startswith("habitat")]
        habitats = [n for roi, n in rois if roi.startswith("habitat")]
        if habitats:
            same = len(set(habitats)) == 1
            plain.append(f"{len(habitats)} habitats {habitats[0]} each" if same else f"habitats {'/'.join(map(str, habitats))}")
        parts.append(f"{w.words(series)}: {', '.join(plain)}")
    return "; ".join(parts), sum(n for rois in per_series.values() for _, n in rois)


def _ibsi_text(run: RunRecord) -> str:
    summary = run.rows("ibsi_compliance_summary")
    if not summary:  # a run from before the CT phantom was added: the digital phantom's table only
        rows = run.rows("ibsi_phantom_compliance")
        if not rows:
            return ""
        within = sum(str(r.get("within_tolerance")).lower() == "true" for r in rows)
        return (f"The implementation was checked on the IBSI digital phantom: {within} of {len(rows)} mapped features were within the IBSI "
                f"tolerance of the reference values{run.cite('ibsi_phantom_compliance', 'ibsi_phantom_unmapped')}.")  # fmt: skip
    digital = [r for r in summary if r["phantom"] == "digital"]
    ct = [r for r in summary if r["phantom"] == "CT"]
    text = ["The implementation (PyRadiomics with the project's image processing) was checked against the consensus values of the "
            "Image Biomarker Standardisation Initiative (IBSI) chapter 1"]  # fmt: skip
    parts = [f"on the digital phantom {digital[0]['features_within_tolerance']} of {digital[0]['mapped_features']} mapped features were within "
             "tolerance"] if digital else []  # fmt: skip
    if ct:
        diag = all(r["diagnostics_within_tolerance"] == r["diagnostics"] for r in ct)
        names = [r["configuration"] for r in ct]
        counts = ", ".join(f"{r['features_within_tolerance']} of {r['mapped_features']} ({r['configuration']})" for r in ct)
        parts.append(f"on the CT phantom in configuration{'s' if len(ct) > 1 else ''} {', '.join(names)} the image-processing diagnostics "
                     f"(interpolated grid, region-of-interest voxel counts and intensity ranges after re-segmentation) "
                     f"{'all matched the reference' if diag else 'did not all match the reference'}, and {counts} mapped features were "
                     "within tolerance")  # fmt: skip
    text.append(": " + "; ".join(parts) + run.cite("ibsi_compliance_summary") + ".")
    deviating = sum(int(r["deviating"]) for r in summary)
    if deviating:
        text.append(f" Each of the {deviating} features outside tolerance is listed with its verified cause{run.cite('ibsi_deviations')}; "
                    "features without a PyRadiomics counterpart are listed with the reason"
                    f"{run.cite('ibsi_phantom_unmapped', 'ibsi_ct_phantom_unmapped')}.")  # fmt: skip
    return "".join(text)


def _extraction(run: RunRecord, settings: Mapping[str, dict], versions: Mapping[str, str]) -> MethodsParagraph | None:
    if not run.has(*_EXTRACTION_OUTPUTS):
        return None
    cfg = run.cfg
    record = run.json("provenance/extraction.json")
    text = [f"Radiomics features were extracted with {pyradiomics_version(versions)} from {_roi_text(cfg, record)}"
            + (" and from the habitat subregions (see Habitats)" if run.has("habitat_calinski_harabasz") else "") + "."]
    for preset, per_series in settings.items():
        if not per_series:
            continue
        first = next(iter(per_series.values()))["pyradiomics_params"]
        by_disc: dict[str, list[str]] = {}
        for s, v in sorted(per_series.items(), key=lambda kv: list(cfg.series).index(kv[0]) if kv[0] in cfg.series else len(cfg.series)):
            by_disc.setdefault(w.discretisation(v["pyradiomics_params"].get("setting") or {}), []).append(w.words(s))
        disc = _join([f"{d} for {_join(series)}" for d, series in by_disc.items()])
        other = w.pyradiomics_settings(first.get("setting") or {})
        text.append(f"Feature definition (preset {preset}): image types {w.image_types(first)}; feature classes {w.feature_classes(first)}; grey levels "
                    f"discretised with {disc}" + (f"; {'; '.join(other)}" if other else "") + "; all other parameters at the PyRadiomics defaults.")  # fmt: skip
    for it in run.matching("feature_counts_{preset}"):
        counts, n_all = _count_text(run.rows(it.name), cfg)
        if counts:
            text.append(f"Features per series and region: {counts}; {n_all} in total ({it.label}).")
    ibsi = _ibsi_text(run)
    if ibsi:
        text.append(ibsi)
    unit_counts = record.get("unit_counts") or {}
    if unit_counts:
        done = int(unit_counts.get("computed", 0)) + int(unit_counts.get("cached", 0))
        text.append(f"The run extracted {w.plural(done, 'patient x series x region unit')}" +
                    (f" ({unit_counts.get('cached')} reused from the extraction cache, keyed by the image, mask and settings hashes)"
                     if unit_counts.get("cached") else "") + ".")  # fmt: skip
    return MethodsParagraph("extraction", "Feature extraction", " ".join(text))


def _with_supplied(extracted: MethodsParagraph | None, supplied: MethodsParagraph | None) -> MethodsParagraph | None:
    """The extraction paragraph followed by what was supplied as tables (either may be absent)."""
    if extracted is None or supplied is None:
        return extracted or supplied
    return MethodsParagraph("extraction", extracted.title, f"{extracted.text} {supplied.text}")


# --------------------------------------------------------------------------- signature


def _lambda(rule: str) -> str:
    m = re.search(r"lambda_(min|1se)\s*=\s*([-+\d.eE]+)", rule)
    return f" (penalty lambda = {w.number(m.group(2))})" if m else ""


def _pathway_text(run: RunRecord) -> str:
    pathway = run.rows("selection_pathway")
    if not pathway:
        return ""
    stages = []
    for r in pathway[1:]:
        step = r.get("step", "")
        if step.startswith("impute"):
            continue
        extra = _lambda(r.get("rule", "")) if step.startswith("lasso") else ""
        stages.append(f"{r.get('n_features')} after {w.step_short(step)}{extra}")
    return (f"On the training cohort the selection started from {pathway[0].get('n_features')} features and kept {_join(stages)}"
            f"{run.cite('selection_pathway', 'lasso_*')}.")  # fmt: skip


def _signature(run: RunRecord) -> MethodsParagraph | None:
    if not run.has(*_SIGNATURE_OUTPUTS):
        return None
    sig = run.cfg.signature
    before = [x for x, ran in (("the stability filter", run.has("icc_retained_counts", "icc_per_feature")),
                               ("ComBat harmonisation", run.has("combat_batches_*"))) if ran]  # fmt: skip
    source = (f"the features of preset {sig.preset}" if run.has(*_EXTRACTION_OUTPUTS) else "the supplied features") + (
        " and the supplied features" if run.has(*_EXTRACTION_OUTPUTS) and run.has("supplied_feature_tables") else "")
    text = [f"The signature was built on the training cohort from {source}"
            + (f" that passed {_join(before)}" if before else "") + "."]
    text.append(f"Selection steps, in order: {w.selection_steps(sig.steps)}; every step was fitted on the training cohort only.")
    pathway = _pathway_text(run)
    if pathway:
        text.append(pathway)
    coefs = run.rows("radscore_coefficients")
    if coefs and "hazard_ratio" in coefs[0]:
        # A survival-only study: the signature was fitted against (time, event) and its Rad-score is a Cox linear predictor.
        text.insert(0, "The study's endpoint was time-to-event only, so every selection step was fitted against the follow-up time and event.")
        text.append(f"The Rad-score is the linear predictor (log relative hazard) of the final Cox LASSO model, a weighted sum of {w.plural(len(coefs), 'feature')} "
                    f"without intercept{run.cite('radscore_coefficients', 'radscore_formula')}.")  # fmt: skip
    elif coefs:
        n = sum(1 for r in coefs if r.get("feature") != "(intercept)")
        text.append(f"The Rad-score is the linear predictor (log-odds) of the final LASSO model, a weighted sum of {w.plural(n, 'feature')} "
                    f"and an intercept{run.cite('radscore_coefficients', 'radscore_formula')}.")  # fmt: skip
    return MethodsParagraph("signature", "Feature selection and signature", " ".join(text))


# --------------------------------------------------------------------------- models


def _search_text(search: str, n_trials: int) -> str:
    return {"none": "default hyperparameters (no search)", "grid": "hyperparameters tuned by grid search within the cross-validation",
            "optuna": f"hyperparameters tuned by a seeded Optuna TPE search of {n_trials} trials within the cross-validation"}.get(search, search)  # fmt: skip


def _grid_blocks(run: RunRecord) -> list[str]:
    blocks: list[str] = []
    for r in run.rows("model_grid"):
        b = r.get("block", "")
        if b and b not in blocks:
            blocks.append(b)
    return blocks


def _final_model_text(run: RunRecord) -> list[str]:
    m = run.cfg.models
    sidecar = run.json("models/final_model.json")
    alg = sidecar.get("algorithm") or m.final_algorithm
    steps = [s for s in sidecar.get("steps", []) if s != "classifier"]
    text = ["The final radiomics model combined the signature's steps"
            + (f" ({_join([w.step_short(s) for s in steps])})" if steps else "")
            + f" with {w.algorithm(alg)}, trained on the training cohort"
            + (f" ({w.plural(int(sidecar['n_train']), 'patient')}, {sidecar['n_features']} candidate features)"
               if sidecar.get("n_train") and sidecar.get("n_features") else "") + f"{run.cite('final_model_summary')}."]  # fmt: skip
    params = sidecar.get("params") or {}
    search = sidecar.get("search")
    folds = sidecar.get("cv_folds") or m.cv
    if search and search != "none" and params:
        how = "grid search" if search == "grid" else f"an Optuna search of {m.n_trials} trials"
        text.append(f"Its hyperparameters were tuned by {how} over {folds}-fold cross-validated AUC on the training cohort "
                    f"({_join([w.hyperparameter(k, v) for k, v in sorted(params.items())])}).")  # fmt: skip
    text += _final_calibration_text(sidecar)
    rule = str(sidecar.get("threshold_rule") or "Youden's J on training out-of-fold probabilities; positive when p >= threshold")
    rule = rule.replace("; positive when p >= threshold", "").rstrip(".")
    thr = f" ({w.number(sidecar['threshold'], 4)})" if isinstance(sidecar.get("threshold"), int | float) else ""
    text.append(f"The operating threshold{thr} maximised {rule.replace('on training', 'on the training')}; a patient was classed positive "
                f"at or above it, and it was applied unchanged to the other cohorts.")  # fmt: skip
    return text


#: The algorithms scikit-learn weights by class (models.class_weight: balanced); helpers.learning.models.CLASS_WEIGHT_ALGORITHMS.
_WEIGHTED_ALGORITHMS = ("logistic", "svm", "random_forest", "extra_trees")
_RECALIBRATION_WORDS = {"sigmoid": "Platt's sigmoid (logistic) recalibration", "isotonic": "isotonic regression"}


def _final_calibration_text(sidecar: Mapping) -> list[str]:
    """The final model's class weighting, SMOTE and recalibration, as its sidecar records them."""
    weight = sidecar.get("class_weight") or (sidecar.get("classifier_params") or {}).get("class_weight") or "none"
    smote = "smote" in (sidecar.get("steps") or [])
    recal = sidecar.get("recalibration") or {"method": "none"}
    method = recal.get("method", "none")
    how = _join([x for x in ("weighted classes" if weight == "balanced" else "", "SMOTE" if smote else "") if x])
    rate, mean = sidecar.get("training_prevalence"), sidecar.get("oof_mean_probability")
    numbers = (f" (training event rate {w.number(rate, 3)}, mean out-of-fold probability {w.number(mean, 3)})"
               if isinstance(rate, int | float) and isinstance(mean, int | float) else "")  # fmt: skip
    if method in _RECALIBRATION_WORDS:
        source = "decision values" if recal.get("response") == "decision_function" else "probabilities"
        params = (f", a = {w.number(recal['a'], 3)}, b = {w.number(recal['b'], 3)} in p = 1 / (1 + exp(a s + b))"
                  if method == "sigmoid" and isinstance(recal.get("a"), int | float) and isinstance(recal.get("b"), int | float) else "")  # fmt: skip
        before = sidecar.get("oof_mean_probability_uncalibrated")
        moved = (f"; before recalibration the mean out-of-fold probability was {w.number(before, 3)}"
                 if isinstance(before, int | float) and isinstance(mean, int | float) and abs(before - mean) >= 0.0005 else "")  # fmt: skip
        tuned = sidecar.get("search") not in (None, "none") and bool(sidecar.get("params"))
        why = _join([f"it was trained with {how}" if how else "", "its hyperparameters were chosen by AUC" if tuned else ""], "and")
        reversed_ = (" The fitted sigmoid decreases with the score: the out-of-fold scores ranked the patients the wrong way round, "
                     "and the recalibrated model reverses the pipeline's ranking." if recal.get("reverses_ranking") else "")  # fmt: skip
        return [f"Its probabilities were recalibrated by {_RECALIBRATION_WORDS[method]} fitted on its "
                f"{recal.get('n_fitted', '')} training out-of-fold {source}{params}".replace("  ", " ")
                + (f", because {why}" if why else "") + f"{numbers}{moved}.{reversed_}"]  # fmt: skip
    if how:
        return [f"It was trained with {how} and its probabilities were not recalibrated{numbers}: they are pulled towards 0.5 and do not "
                f"estimate the risk at the training event rate, so its calibration and net benefit describe the reweighted model."]  # fmt: skip
    return [f"It was trained without class weights or oversampling, and its probabilities were not recalibrated{numbers}."]


def _probability_text(run: RunRecord) -> str:
    """Class weighting, SMOTE and recalibration of every model, exactly as configured."""
    m = run.cfg.models
    used = list(dict.fromkeys([*m.algorithms, m.final_algorithm, "logistic"]))
    weighted = [a for a in used if a in _WEIGHTED_ALGORITHMS] if m.class_weight == "balanced" else []
    text = []
    if weighted:
        others = [a for a in used if a not in _WEIGHTED_ALGORITHMS]
        text.append(f"Classes were weighted inversely to their training frequencies (balanced class weights) in the "
                    f"{_join([w.algorithm(a) for a in weighted])} classifiers" + (f" ({_join([w.algorithm(a) for a in others])} "
                    f"unweighted)" if others else "") + ".")  # fmt: skip
    else:
        text.append("Classes were not weighted" + (" (every patient weighed the same)" if not m.smote else "; SMOTE oversampled the "
                    "minority class inside each training fold") + ".")  # fmt: skip
    how = ("fitted on that model's training out-of-fold scores only (its decision values when the classifier has them, else its "
           "probabilities), as scikit-learn's CalibratedClassifierCV does with one calibrator on the pooled out-of-fold predictions "
           "of the same folds; the deployed model is the pipeline refitted on all training patients followed by that calibrator. "
           "Training-cohort probabilities were recalibrated out-of-fold too (each fold through a calibrator fitted on the other "
           "folds' scores) and the operating threshold was chosen on them; no validation or test patient was used.")
    if m.recalibration == "auto":
        reasons = _join([x for x in ("was trained with class weights" if weighted else "", "was trained with SMOTE" if m.smote else "",
                                     "had its hyperparameters chosen by cross-validated AUC (which ranks patients and cannot see "
                                     "calibration)") if x], "or")  # fmt: skip
        text.append(f"The probabilities of every model that {reasons} were recalibrated by {_RECALIBRATION_WORDS['sigmoid']} {how} "
                    f"Models with fixed hyperparameters and no reweighting (e.g. the nomogram) kept their own probabilities.")  # fmt: skip
    elif m.recalibration in _RECALIBRATION_WORDS:
        text.append(f"The probabilities of every model were recalibrated by {_RECALIBRATION_WORDS[m.recalibration]} {how}")
    elif weighted or m.smote:
        text.append(f"The probabilities were not recalibrated (recalibration was switched off in the configuration): trained with "
                    f"{_join([x for x in ('class weights' if weighted else '', 'SMOTE' if m.smote else '') if x])}, the models' "
                    f"probabilities are pulled towards 0.5 and are not calibrated risks, so the calibration intercepts, calibration "
                    f"curves and net benefit describe the reweighted models.")  # fmt: skip
    else:
        text.append("The probabilities were used as the models gave them (recalibration was switched off in the configuration).")
    return " ".join(t.strip() for t in text)


def _fusion_text(run: RunRecord) -> str:
    rows = run.rows("fusion_models")
    if not rows:
        return ""
    stack = next((r["model"] for r in rows if r.get("model", "").startswith("score-level")), "")
    n = re.search(r"\((\d+) block models\)", stack)
    return (f"Feature-level fusion (the final model over all blocks' features) was compared with the best single block and with score-level "
            f"fusion{f' of {n.group(1)} block models' if n else ''} (one logistic regression per block with the grid's selection steps, "
            f"stacked by a logistic regression on their out-of-fold probabilities){run.cite('fusion_models')}.")  # fmt: skip


def _selection_text(run: RunRecord) -> str:
    rows = run.rows("final_model_selection")
    if not rows or run.cfg.models.final_selection != "validation":
        return ""
    auc_col = next((c for c in rows[0] if c.startswith("auc_")), "")
    cohort = auc_col.removeprefix("auc_")
    chosen = next((r for r in rows if str(r.get("selected", "")).lower() == "true"), None)
    if chosen is None:
        return ""
    return (f"The final model's algorithm was chosen among {_join([w.algorithm(r['candidate_algorithm']) for r in rows])} (each with the "
            f"signature's steps, fitted on the training cohort) by the highest AUC in the {w.words(cohort)} cohort, ties going to the "
            f"first listed: {w.algorithm(chosen['candidate_algorithm'])} (AUC {w.number(chosen.get(auc_col), 3)}){run.cite('final_model_selection')}; "
            f"no test cohort took part in the choice.")  # fmt: skip


def _ith_sweep_text(run: RunRecord) -> str:
    name = "ith_sweep_cox" if run.has("ith_sweep_cox") else "ith_sweep"
    rows = run.rows(name)
    if not rows:
        return ""
    labels = [r.get("clusters", "") for r in rows]
    combined = [x for x in labels if not x.isdigit()]
    single = [x for x in labels if x.isdigit()]
    alg = rows[0].get("algorithm") or (run.cfg.models.ith_sweep.algorithm if run.cfg.models.ith_sweep else "logistic")
    smote = " with SMOTE oversampling of the training folds" if run.cfg.models.smote else ""
    cox = " and, for the time-to-event endpoint, a Cox model on the same scores (Harrell's C-index, bootstrap CI)" if "oof_c_index" in rows[0] else ""
    if "oof_auc" not in rows[0]:
        # Survival-only study: the sweep is the Cox model's C-index alone (no threshold, no accuracy).
        return (f"For each number of clusters K ({single[0]} to {single[-1]}) a Cox model on that K's ITH score"
                + (f", and one on the ITH scores of K = {combined[0]} together," if combined else "")
                + f" was fitted on the training cohort; Harrell's C-index with a bootstrap 95% CI is given for the training cohort "
                f"(out-of-fold) and every other cohort{run.cite(name)}.")  # fmt: skip
    return (f"For each number of clusters K ({single[0]} to {single[-1]}) a {w.algorithm(alg)} model{smote} on that K's ITH score"
            + (f", and one on the ITH scores of K = {combined[0]} together," if combined else "")
            + f" was fitted on the training cohort and evaluated at its training out-of-fold Youden threshold in every other cohort (accuracy "
            f"with Wilson, AUC with DeLong 95% CIs){cox}{run.cite(name)}.")  # fmt: skip


def _models(run: RunRecord) -> MethodsParagraph | None:
    if not run.has(*_MODEL_OUTPUTS):
        return None
    cfg, m = run.cfg, run.cfg.models
    text = []
    if run.has("model_grid"):
        blocks = _grid_blocks(run)
        smote = "SMOTE oversampling of the training folds (never of held-out data), " if m.smote else ""
        named = f": {_join([w.words(b.replace(' / ', ' ')) for b in blocks])}" if 0 < len(blocks) <= 12 else ""
        text.append(f"Model grid: each of {w.plural(len(blocks), 'feature block') if blocks else 'the feature blocks'} (one per series and region, "
                    f"the habitats of a series pooled{named}) was modelled with each of {w.plural(len(m.algorithms), 'algorithm')} "
                    f"({_join([w.algorithm(a) for a in m.algorithms])}). Every model was one pipeline of {w.selection_steps(m.grid_steps)}, "
                    f"{smote}and the classifier, refitted inside every fold of a stratified, shuffled {m.cv}-fold cross-validation on the "
                    f"training cohort (seed {cfg.seed}), with {_search_text(m.search, m.n_trials)}; held-out cohorts were predicted by the "
                    f"model refitted on all training patients{run.cite('model_grid', 'auc_heatmap_*')}.")  # fmt: skip
    if run.has("model_grid", "final_model_summary", "predictions_final_model", "ith_sweep"):  # binary models (not a Cox-only sweep)
        text.append(_probability_text(run))
    if run.has("final_model_summary", "predictions_final_model"):
        text += _final_model_text(run)
    for extra in (_selection_text(run), _fusion_text(run), _ith_sweep_text(run)):
        if extra:
            text.append(extra)
    return MethodsParagraph("models", "Models", " ".join(text)) if text else None


# --------------------------------------------------------------------------- statistics


def calibration_bins(run: RunRecord) -> dict[str, int]:
    """Bins of each cohort's calibration figure: recorded by the statistics step, else by the figure's rule from the cohort size."""
    record = run.json("provenance/statistics.json")
    if record.get("calibration_bins"):
        return {str(k): int(v) for k, v in record["calibration_bins"].items()}
    limit = run.cfg.statistics.calibration_bins
    sizes: dict[str, int] = {}
    for r in run.rows("calibration"):
        if r.get("cohort") and r.get("n"):
            sizes.setdefault(r["cohort"], int(float(r["n"])))
    # The figure's own rule (about 10 patients per bin), for runs that predate the statistics record.
    return {c: calibration_bin_count(n, limit) for c, n in sizes.items() if run.has(f"calibration_{c}")}


def _hl_groups(run: RunRecord) -> str:
    rows = run.rows("calibration")
    groups = sorted({int(float(r["hl_groups"])) for r in rows if r.get("hl_groups") not in (None, "", "nan")})
    noted = {r["cohort"] for r in rows if "not computed" in str(r.get("note", ""))}
    skipped = [w.words(c) for c in run.cfg.cohorts if c in noted]
    text = f"{_join([str(g) for g in groups], 'or')} groups of about ten patients" if groups else ""
    if skipped:
        text += f"{'; ' if text else ''}not computed for the {_join(skipped)} cohort{'s' if len(skipped) > 1 else ''}, too small for three groups"
    return f" ({text})" if text else ""


def _statistics(run: RunRecord) -> MethodsParagraph | None:
    sc = run.cfg.statistics
    if not run.has(*_STATISTICS_OUTPUTS):
        return None
    cfg = run.cfg
    text = ["Training-cohort predictions were out-of-fold; the other cohorts were predicted by the models refitted on all training patients."]
    if run.has("performance*"):
        text.append(f"The AUC, accuracy, sensitivity, specificity, positive and negative predictive values and F1 score are given with 95% "
                    f"confidence intervals (DeLong for the AUC, {'Wilson' if sc.proportion_ci == 'wilson' else 'Clopper-Pearson'} for proportions and "
                    f"{sc.n_bootstrap} seeded bootstrap resamples for the F1 score){run.cite('performance*')}.")  # fmt: skip
    if run.has("pairwise_comparison*"):
        pairs = f"every model against {sc.reference_model}" if sc.reference_model else "every pair of the main models"
        text.append(f"Models were compared ({pairs}) by the DeLong test for correlated AUCs, the continuous net reclassification improvement and "
                    f"the integrated discrimination improvement{run.cite('pairwise_comparison*')}.")  # fmt: skip
    if run.has("nr_vs_sr_comparison"):
        text.append(f"Models of the super-resolved and the native images with the same region and algorithm were compared the same way"
                    f"{run.cite('nr_vs_sr_comparison', 'roc_nr_vs_sr_*')}.")  # fmt: skip
    if run.has("calibration", "calibration_*"):
        bins = calibration_bins(run)
        by_k: dict[int, list[str]] = {}
        for c in cfg.cohorts:
            if c in bins:
                by_k.setdefault(bins[c], []).append(w.words(c))
        plotted = _join([f"{k} for the {_join(names)} cohort{'s' if len(names) > 1 else ''}" for k, names in by_k.items()])
        text.append(f"Calibration was assessed by calibration-in-the-large (the mean predicted probability against the observed event "
                    f"rate and, on the logit scale, the calibration intercept: the offset a logistic model with the logit of the "
                    f"predicted probability as offset needs, ideal 0, negative when risks are overestimated), the calibration slope "
                    f"(ideal 1, below 1 when predictions are too extreme), the Brier and scaled Brier scores and the Hosmer-Lemeshow test"
                    f"{_hl_groups(run)}{run.cite('calibration')}" + (f", and plotted as the observed event rate in quantile bins of the predicted "
                    f"probability (at most {sc.calibration_bins} bins and about ten patients per bin: {plotted}) with a lowess-smoothed curve"
                    f"{run.cite('calibration_*')}" if plotted else "") + ". A cohort whose event rate differed from the training "
                    "cohort's by at least 0.10 is flagged among the reviewer points: such a prevalence shift moves the calibration "
                    "intercept even of a model calibrated on training, by about the difference of the two rates' logits.")  # fmt: skip
    if run.has("decision_curve_*"):
        first, last, step = sc.dca_thresholds
        text.append(f"Decision curves give the net benefit at threshold probabilities from {w.number(first)} to {w.number(last)} in steps of "
                    f"{w.number(step)}{run.cite('decision_curve_*')}.")  # fmt: skip
    groups = [f"{w.batch_field(g.field)} of {w.words(g.series)}" for g in sc.subgroups
              if run.has(f"subgroup_performance_{g.series.lower()}_{g.field.lower()}")]  # fmt: skip
    if groups:
        text.append(f"Discrimination was also reported within subgroups by {_join(groups)}{run.cite('subgroup_*')}.")
    if run.has("radscore_distribution"):
        text.append(f"Rad-scores of the two outcome classes were compared with the Mann-Whitney U test{run.cite('radscore_distribution')}.")
    return MethodsParagraph("statistics", "Statistical evaluation", " ".join(text))


# --------------------------------------------------------------------------- assembling


def methods_text(cfg: StudyConfig, report_root: str | Path | None = None, items: Sequence[SupplementItem] | None = None) -> list[MethodsParagraph]:
    """Methods paragraphs generated from the files of the run, one per stage that ran (keys: :data:`PARAGRAPH_KEYS`).

    Parameters
    ----------
    cfg : StudyConfig
        The study configuration (the fallback for what the run does not record).
    report_root : path, optional
        ``reports/<study>/`` (default: ``cfg.report_root``).
    items : sequence of SupplementItem, optional
        The numbered outputs (:func:`collect_outputs`); cited by number.

    Returns
    -------
    list of MethodsParagraph
        In :data:`PARAGRAPH_KEYS` order; a stage whose outputs are absent has no paragraph.
    """
    from helpers.reporting.supplement import methods_optional as opt

    root = _root(cfg, report_root)
    if items is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SupplementWarning)
            items = collect_outputs(cfg, root)
    if cfg.splits_into_tasks:
        return _task_methods(cfg, root, list(items))
    run = RunRecord(cfg, root, list(items))
    versions, _, _ = _versions(run)
    settings = extraction_settings(run) if run.has(*_EXTRACTION_OUTPUTS) else {}
    paragraphs = [
        _cohorts(run), _software(run), opt.segmentation(run), opt.super_resolution(run), _preprocessing(run, settings),
        _with_supplied(_extraction(run, settings, versions), opt.supplied_features(run)), opt.habitats(run), opt.deep_features(run), opt.reliability(run), opt.harmonization(run),
        opt.missing_data(run), _signature(run), _models(run), opt.clinical(run), opt.nomogram(run), opt.survival(run), opt.explainability(run),
        opt.table_one(run), _statistics(run),
    ]  # fmt: skip
    return [p for p in paragraphs if p is not None and p.text]


#: Paragraphs describing the shared steps (01-03 and the software): written once in a study with several tasks; every
#: other paragraph (the endpoint, what was fitted on it, the statistics) is written per task.
SHARED_PARAGRAPHS = frozenset({"cohorts", "software", "segmentation", "super_resolution", "preprocessing", "extraction", "habitats",
                               "deep_features"})


def _task_methods(cfg: StudyConfig, root: Path, items: list[SupplementItem]) -> list[MethodsParagraph]:
    """Methods of a study with several tasks: the shared stages once, then each per-task stage once per task (in stage
    order, the tasks side by side), each from the shared outputs and that task's own."""
    runs = [(v, RunRecord(v, root, [it for it in items if it.task in (None, v.task) or it.all_tasks])) for v in cfg.task_views()]
    per_view = [(v, methods_text(v, root, run.items)) for v, run in runs]
    keys = list(dict.fromkeys(p.key for _, paragraphs in per_view for p in paragraphs))
    cohorts = _cohorts(runs[0][1], [(v.task_label, run) for v, run in runs])
    per_view = [(v, [cohorts if p.key == "cohorts" else p for p in paragraphs]) for v, paragraphs in per_view]
    out: list[MethodsParagraph] = []
    for key in keys:
        found = [(view, p) for view, paragraphs in per_view for p in paragraphs if p.key == key]
        # A stage that is the same for every task (a shared step, or a label-free one: ICC filter, ComBat) is described once.
        if key in SHARED_PARAGRAPHS or (len(found) == len(per_view) and len({p.text for _, p in found}) == 1):
            out.append(found[0][1])
        else:
            out += [MethodsParagraph(p.key, p.title, p.text, view.task or "", view.task_label) for view, p in found]
    return out


def _other_outputs_paragraph(other: Sequence[str]) -> MethodsParagraph | None:
    if not other:
        return None
    groups: dict[str, list[str]] = {}
    for rel in other:
        groups.setdefault(str(Path(rel).parent.as_posix()), []).append(rel)
    parts = [f"{folder}/ ({len(files)} files)" if len(files) > 4 else _join(files) for folder, files in groups.items()]
    return MethodsParagraph("outputs", "Other recorded outputs", f"The run also recorded {len(other)} file{'s' if len(other) != 1 else ''} not "
                            f"shown here (relative to the study's report folder): {'; '.join(parts)}.")  # fmt: skip


# --------------------------------------------------------------------------- checklist


def _config_value(cfg: StudyConfig, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = getattr(value, part, None) if not isinstance(value, Mapping) else value.get(part)
    return value
