"""The generated methods section: one paragraph per stage that ran, from the configuration and the provenance."""


from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import (
    _EXTRACTION_OUTPUTS,
    _MODEL_OUTPUTS,
    _SIGNATURE_OUTPUTS,
    _STATISTICS_OUTPUTS,
    MethodsParagraph,
    SupplementItem,
    _join,
    _labels,
    _matching,
    _name_matches,
    _num,
    _read_json,
    _read_rows,
    _root,
    collect_outputs,
)  # fmt: skip
from helpers.settings.study import StudyConfig


def _params_text(step: Mapping[str, object]) -> str:
    name = str(step.get("step", "?"))
    params = [f"{k.replace('_', ' ')} {_num(v)}" for k, v in step.items() if k != "step"]
    return name + (f" ({', '.join(params)})" if params else "")


def _prep_text(series: str, modality: str, prep: Mapping[str, object]) -> str:
    parts = []
    spacing = prep.get("resample_mm")
    if spacing:
        mask = str(prep.get("mask_resampling"))
        mask = {"partial_volume": "partial volume", "nearest": "nearest neighbour"}.get(mask, mask)
        thr = f" with threshold {_num(prep.get('mask_threshold'))}" if prep.get("mask_resampling") == "partial_volume" else ""
        interp = {"bspline": "B-spline", "nearest": "nearest-neighbour"}.get(str(prep.get("interpolator")), str(prep.get("interpolator")))
        parts.append(f"resampled to {' x '.join(_num(s) for s in spacing)} mm ({interp} interpolation of the image; "
                     f"mask resampled by {mask}{thr})")  # fmt: skip
    else:
        parts.append("kept on its native voxel grid")
    if prep.get("n4"):
        its = ", ".join(_num(i) for i in prep.get("n4_iterations") or [])
        parts.append(f"N4 bias-field correction (shrink factor {_num(prep.get('n4_shrink_factor'))}, iterations {its})")
    if prep.get("clip"):
        lo, hi = prep["clip"]
        parts.append(f"intensities clipped to [{_num(lo)}, {_num(hi)}]")
    if prep.get("clip_percentiles"):
        lo, hi = prep["clip_percentiles"]
        parts.append(f"intensities clipped to the {_num(lo)}th-{_num(hi)}th percentiles inside the mask")
    if prep.get("zscore"):
        parts.append(f"z-score normalised over the {prep.get('zscore_region', 'image')}")
    return f"{series} ({modality}): {_join(parts)}."


def _extraction_settings(cfg: StudyConfig, root: Path) -> tuple[dict[str, dict[str, dict]], str]:
    """preset -> series -> {pyradiomics_params, preprocessing}, and where it was read from."""
    record = _read_json(root / "provenance" / "extraction.json")
    if record.get("settings"):
        return record["settings"], "provenance/extraction.json"
    from helpers.features.pyradiomics import load_preset, merge_settings, preset_name
    from helpers.imaging.preprocess import PreprocessSettings

    settings: dict[str, dict[str, dict]] = {}
    for ref in cfg.extraction.presets:
        try:
            base = load_preset(ref)
        except ValueError:
            continue
        for s in cfg.extraction.series or cfg.series:
            settings.setdefault(preset_name(ref), {})[s] = {
                "pyradiomics_params": merge_settings(base, cfg.extraction.series_settings.get(s)),
                "preprocessing": cfg.preprocessing.get(s, PreprocessSettings()).model_dump(mode="json"),
            }
    return settings, "the study configuration"


def _image_types(params: Mapping) -> str:
    out = []
    for name, opts in (params.get("imageType") or {}).items():
        opts = opts or {}
        if "sigma" in opts:
            out.append(f"{name} (sigma {', '.join(_num(s) for s in opts['sigma'])} mm)")
        else:
            out.append(name)
    return _join(out)


def _feature_classes(params: Mapping) -> str:
    out = []
    for name, sub in (params.get("featureClass") or {}).items():
        out.append(f"{name} ({len(sub)} features)" if sub else name)
    return _join(out)


def _discretisation(setting: Mapping) -> str:
    if "binCount" in setting:
        return f"fixed bin count {_num(setting['binCount'])}"
    if "binWidth" in setting:
        return f"fixed bin width {_num(setting['binWidth'])}"
    return "pyradiomics' default discretisation (fixed bin width 25)"


def _versions(root: Path) -> tuple[dict[str, str], dict]:
    latest = _read_json(root / "provenance" / "latest.json")
    if latest.get("packages"):
        return {k: str(v) for k, v in latest["packages"].items()}, latest
    extraction = _read_json(root / "provenance" / "extraction.json")
    return {k: str(v) for k, v in (extraction.get("versions") or {}).items()}, latest


def methods_text(cfg: StudyConfig, report_root: str | Path | None = None, items: Sequence[SupplementItem] | None = None) -> list[MethodsParagraph]:
    """Methods paragraphs generated from the configuration and the files of the run.

    Software versions come from ``provenance/latest.json`` (the run record;
    ``provenance/extraction.json`` when it is missing), extraction settings
    from ``provenance/extraction.json`` (the configuration when missing),
    counts from the run's tables (cohort split, feature counts, ICC retained
    counts, selection pathway, Rad-score coefficients) and the threshold rule
    from the saved final model's JSON sidecar. Nothing is specific to one
    cohort. ``items`` (from :func:`collect_outputs`) are cited by number.
    """
    root = _root(cfg, report_root)
    if items is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SupplementWarning)
            items = collect_outputs(cfg, root)
    items = list(items)
    paths = {Path(it.path).stem: root / it.path for it in items if it.path}

    def cite(*patterns: str, bare: bool = False) -> str:
        text = _labels(_matching(items, patterns, cfg))
        return text if bare or not text else f" ({text})"

    def has(*patterns: str) -> bool:
        return bool(_matching(items, patterns, cfg))

    out: list[MethodsParagraph] = []

    # -- cohorts and outcome
    role_word = {"train": "model development", "validation": "validation", "test": "testing"}
    split = {r.get("cohort", ""): r for r in _read_rows(paths.get("cohort_split_counts", Path("-")))}
    cohort_parts = []
    for name, c in cfg.cohorts.items():
        n = split.get(name, {}).get("patients")
        desc = f"; {c.description.rstrip('.')}" if c.description else ""
        cohort_parts.append(f"{name} ({role_word[c.role]}{f', {n} patients' if n else ''}{desc})")
    text = [f"Patients were assigned to {len(cfg.cohorts)} cohort{'s' if len(cfg.cohorts) > 1 else ''}: {_join(cohort_parts)}."]
    text.append(f"Assignment rule: {cfg.cohort_rule.strip().rstrip('.')}.")
    series = [f"{s} ({v.modality}{f'; {v.description}' if v.description else ''})" for s, v in cfg.series.items()]
    text.append(f"Image series: {_join(series)}.")
    ep = cfg.endpoints
    if ep.binary:
        col = f"{ep.binary}=1"
        pos = [f"{name} {split[name][col]}" for name in cfg.cohorts if name in split and split[name].get(col)]
        text.append(f"The outcome was the binary variable '{ep.binary}' of the patient table"
                    + (f" (positive: {_join(pos)})" if pos else "") + f"{cite('cohort_split_counts')}.")  # fmt: skip
    if ep.time:
        text.append(f"The time-to-event endpoint was '{ep.time}' with event indicator '{ep.event}'.")
    if cfg.clinical_variables:
        text.append(f"Non-radiomic (clinical) variables: {_join(list(cfg.clinical_variables))}.")
    held_out = [n for n, c in cfg.cohorts.items() if c.role != "train"]
    text.append(f"Every fitted step (harmonisation, feature selection, models, thresholds) learned from the {_join(cfg.training_cohorts)} "
                f"cohort only" + (f" and was applied unchanged to the {_join(held_out)} cohort{'s' if len(held_out) > 1 else ''}." if held_out else "."))  # fmt: skip
    out.append(MethodsParagraph("cohorts", "Cohorts and outcome", " ".join(text)))

    # -- software and reproducibility
    versions, latest = _versions(root)
    text = []
    if versions:
        py = versions.get("python")
        pkgs = [f"{k} {v}" for k, v in versions.items() if k != "python" and v != "not installed"]
        text.append(f"Analyses ran in Python {py}" if py else "Analyses ran in Python")
        text[-1] += f" with {_join(pkgs)}." if pkgs else "."
        source = "provenance/latest.json" if latest.get("packages") else "provenance/extraction.json"
        text.append(f"Versions are those recorded in {source}.")
    else:
        text.append("No provenance record was found under provenance/, so software versions are not reported.")
    if latest:
        git = latest.get("git") or {}
        bits = []
        if git.get("commit"):
            bits.append(f"git commit {str(git['commit'])[:12]}" + (" with uncommitted changes" if git.get("dirty") else ""))
        if latest.get("config_hash"):
            bits.append(f"configuration SHA-256 {str(latest['config_hash'])[:12]}")
        if latest.get("helpers_source_hash"):
            bits.append(f"helpers source SHA-256 {str(latest['helpers_source_hash'])[:12]}")
        if bits:
            text.append(f"The run used {_join(bits)}.")
    text.append(f"The random seed was {cfg.seed} for every seeded step (cross-validation splits, resampling, models).")
    out.append(MethodsParagraph("software", "Software and reproducibility", " ".join(text)))

    # -- preprocessing and QC
    settings, source = _extraction_settings(cfg, root)
    first_preset = next(iter(settings.values()), {})
    extracted = has(*_EXTRACTION_OUTPUTS)
    text = []
    if extracted:
        text.append("Images were preprocessed per series before feature extraction:")
        for s, v in cfg.series.items():
            prep = (first_preset.get(s) or {}).get("preprocessing")
            if prep is None:
                prep = cfg.preprocessing[s].model_dump(mode="json") if s in cfg.preprocessing else {}
            text.append(_prep_text(s, v.modality, prep))
    if has("image_mask_qc_*"):
        g = cfg.geometry_tolerance
        text.append(f"Every image and mask pair was checked for matching geometry (tolerances: spacing {_num(g.spacing)} relative, origin "
                    f"{_num(g.origin_mm)} mm, direction {_num(g.direction)}), mask volume, connected components, contact with the image "
                    f"border and intensities inside the mask; values with a robust z-score above {_num(cfg.qc.outlier_robust_z)} were "
                    f"flagged{cite('image_mask_qc_*')}.")  # fmt: skip
    if has("acquisition_parameters_*"):
        text.append(f"Acquisition parameters were read from an allow-list of non-identifying header attributes{cite('acquisition_parameters_*')}.")
    if text:
        out.append(MethodsParagraph("preprocessing", "Image preprocessing and quality control", " ".join(text)))

    # -- feature extraction
    if extracted:
        text = []
        pyrad = next((f"{k} {v}" for k, v in versions.items() if "pyradiomics" in k.lower()), "pyradiomics")
        ex = cfg.extraction
        roi_parts = []
        for name, spec in ex.rois.items():
            what = {"tumour": "the tumour mask", "ring": f"a {_num(spec.width_mm)} mm peritumoral ring outside the tumour",
                    "fused": f"the tumour with a {_num(spec.width_mm)} mm peritumoral ring"}[spec.kind]  # fmt: skip
            roi_parts.append(f"{name} ({what}{'' if spec.with_shape else ', without shape features'})")
        text.append(f"Radiomics features were extracted with {pyrad} from the regions of interest {_join(roi_parts)}.")
        if ex.habitats is not None:
            h = ex.habitats
            ch = _read_rows(paths.get("habitat_calinski_harabasz", Path("-")))
            chosen = [r.get("k") for r in ch if str(r.get("selected", "")).lower() == "true"]
            text.append(f"Habitats were found by K-means clustering of the pooled voxel intensities of {_join(list(h.series))} of the training "
                        f"patients (at most {h.max_voxels_per_patient} voxels per patient), K from {h.k_range[0]} to {h.k_range[1]} chosen by the "
                        f"Calinski-Harabasz index" + (f" (K = {chosen[0]} selected; {cite('habitat_calinski_harabasz', bare=True)})" if chosen else "")
                        + f"; habitat features were extracted from {_join(list(h.extract_from or h.series))}, and the ITH score was computed for "
                        f"K = {h.ith_k_range[0]}-{h.ith_k_range[1]}.")  # fmt: skip
        for preset, per_series in settings.items():
            if not per_series:
                continue
            first = next(iter(per_series.values()))["pyradiomics_params"]
            disc = [f"{s} {_discretisation((v['pyradiomics_params'].get('setting') or {}))}" for s, v in per_series.items()]
            other = {k: v for k, v in (first.get("setting") or {}).items() if k not in ("binWidth", "binCount", "label")}
            other_txt = f"; other settings: {', '.join(f'{k} {_num(v)}' for k, v in other.items())}" if other else ""
            text.append(f"Preset {preset} (settings from {source}): image types {_image_types(first)}; feature classes {_feature_classes(first)}; "
                        f"discretisation {_join(disc)}{other_txt}; all remaining parameters at pyradiomics defaults.")  # fmt: skip
        for it in items:
            m = _name_matches("feature_counts_{preset}", it.name, cfg)
            if not m or not it.path:
                continue
            rows = _read_rows(root / it.path)
            if not rows:
                continue
            blocks = [c for c in rows[0] if c not in ("category", "image_type")]
            total = next((r for r in rows if r.get("category") == "Total"), None)
            if total and blocks:
                per_block = [f"{b} {total[b]}" for b in blocks]
                n_all = sum(int(float(total[b] or 0)) for b in blocks)
                classes = [f"{r['category']} {r[blocks[0]]}" for r in rows if r.get("category") != "Total" and r.get(blocks[0]) not in ("", "0")]
                text.append(f"Features per series and region of interest (preset {m.group('preset')}): {_join(per_block)}; {n_all} in total "
                            f"({it.label}). By class and image type ({blocks[0]}): {_join(classes)}.")  # fmt: skip
        fail = next((it for it in items if it.name == "extraction_failures"), None)
        if fail is not None:
            if fail.n_rows:
                policy = {"stop": "the run stopped before the signature",
                          "exclude_patients": "the patients concerned were excluded from the analysis",
                          "impute": "the patients concerned were kept and their missing features imputed"}[cfg.missing_data.failed_units]
                text.append(f"{fail.n_rows} extraction unit{'s' if fail.n_rows != 1 else ''} failed ({fail.label}); as configured, {policy}.")
            else:
                text.append(f"No extraction unit failed ({fail.label}).")
        empty = next((it for it in items if it.name == "extraction_empty_habitats"), None)
        if empty is not None and empty.n_rows:
            text.append(f"In {empty.n_rows} patient x habitat unit{'s' if empty.n_rows != 1 else ''} the habitat was absent from the tumour "
                        f"or smaller than {cfg.qc.min_mask_voxels} voxels; those habitat features were missing ({empty.label}).")  # fmt: skip
        if ex.stability is not None:
            p = ex.stability.perturbation
            text.append(f"For the stability analysis the training patients were read a second time: with the manifest's second-reader mask where "
                        f"given, otherwise with the tumour mask {'dilated' if p.mode == 'dilate' else 'eroded'} by {_num(p.radius_mm)} mm "
                        f"(at least one voxel).")  # fmt: skip
        out.append(MethodsParagraph("extraction", "Feature extraction", " ".join(text)))

    # -- signature
    if has(*_SIGNATURE_OUTPUTS):
        sig = cfg.signature
        text = [f"The signature was fitted on the training cohort with preset {sig.preset}."]
        md = cfg.missing_data
        excluded = next((it for it in items if it.name == "excluded_patients"), None)
        if excluded is not None and excluded.n_rows:
            text.append(f"{excluded.n_rows} patient{'s were' if excluded.n_rows != 1 else ' was'} excluded from the signature, models and "
                        f"statistics because feature extraction failed for them ({excluded.label}).")  # fmt: skip
        text.append(f"Missing feature values were handled on the training cohort only: features missing in more than "
                    f"{md.max_missing_fraction:.0%} of the training patients were left out, and the remaining gaps of every cohort were "
                    f"imputed with the training {md.imputation} as the first step of every model pipeline (refitted within each "
                    f"cross-validation fold).")  # fmt: skip
        dropped = next((it for it in items if it.name == "features_dropped_missing_values"), None)
        if dropped is not None and dropped.n_rows:
            text.append(f"{dropped.n_rows} feature{'s were' if dropped.n_rows != 1 else ' was'} left out for missing values ({dropped.label}).")
        imputed = next((it for it in items if it.name == "features_imputed_missing_values"), None)
        if imputed is not None and imputed.n_rows:
            text.append(f"{imputed.n_rows} kept feature{'s' if imputed.n_rows != 1 else ''} had missing values that were imputed ({imputed.label}).")
        if not any(x is not None and x.n_rows for x in (dropped, imputed)):
            text.append("No feature value was missing.")
        if sig.icc is not None:
            bound = "the ICC" if sig.icc.ci_bound == "point" else "the lower bound of the 95% confidence interval of the ICC"
            text.append(f"Stability filter: {sig.icc.icc_type} between the two readings; features with {bound} of at least "
                        f"{_num(sig.icc.threshold)} were kept.")  # fmt: skip
            total = next((r for r in _read_rows(paths.get("icc_retained_counts", Path("-"))) if r.get("series") == "Total"), None)
            if total:
                pct = f" ({total['retained_percent']}%)" if total.get("retained_percent") else ""
                text.append(f"Of {total.get('extracted')} features, {total.get('constant')} were constant and {total.get('retained')}{pct} were "
                            f"retained{cite('icc_retained_counts', 'icc_per_feature')}.")  # fmt: skip
        for g in sig.harmonization:
            policy = "left unadjusted" if g.unseen_batch == "reference" else "rejected"
            text.append(f"ComBat harmonised the {g.series} features by {g.batch_field} (fitted on the training cohort without covariates; training "
                        f"batches smaller than {g.min_batch_size} merged; batches not seen in training {policy})"
                        f"{cite('combat_batches_' + g.series.lower(), 'combat_diagnostics_' + g.series.lower())}.")  # fmt: skip
        text.append(f"Selection steps, in order: {_join([_params_text(s) for s in sig.steps])}.")
        pathway = _read_rows(paths.get("selection_pathway", Path("-")))
        if pathway:
            stages = [f"{r.get('n_features')} after {r.get('step')} ({r.get('rule')})" for r in pathway[1:]]
            text.append(f"On the training cohort the pathway started from {pathway[0].get('n_features')} features: {_join(stages, 'and')}"
                        f"{cite('selection_pathway')}.")  # fmt: skip
        coefs = _read_rows(paths.get("radscore_coefficients", Path("-")))
        if coefs:
            n = sum(1 for r in coefs if r.get("feature") != "(intercept)")
            text.append(f"The Rad-score is the linear predictor of the final step, with {n} feature{'s' if n != 1 else ''}"
                        f"{cite('radscore_coefficients', 'radscore_formula')}.")  # fmt: skip
        out.append(MethodsParagraph("signature", "Feature stability, harmonisation and selection", " ".join(text)))

    # -- models
    if has(*_MODEL_OUTPUTS):
        m = cfg.models
        search = {"none": "default hyperparameters (no search)", "grid": "hyperparameters tuned by grid search within the cross-validation",
                  "optuna": f"hyperparameters tuned by a seeded optuna TPE search with {m.n_trials} trials within the cross-validation"}[m.search]  # fmt: skip
        smote = "SMOTE oversampling of the training folds (never of held-out data)" if m.smote else "no resampling for class imbalance"
        text = [f"Model grid: every feature block (series and region of interest) was modelled with each of {len(m.algorithms)} algorithms "
                f"({_join(list(m.algorithms))}); each model is one pipeline of the selection steps {_join([_params_text(s) for s in m.grid_steps])}, "
                f"{smote} and the classifier, refitted inside every fold of a stratified, shuffled {m.cv}-fold cross-validation on the training "
                f"cohort (seed {cfg.seed}), with {search}{cite('model_grid', 'auc_heatmap_*')}."]  # fmt: skip
        sidecar = _read_json(root / "models" / "final_model.json")
        final_alg = sidecar.get("algorithm") or m.final_algorithm
        text.append(f"Final model: the signature's selection steps and the {final_alg} classifier, trained on the training cohort"
                    + (f" ({sidecar['n_train']} patients, {sidecar['n_features']} input features)"
                       if sidecar.get("n_train") and sidecar.get("n_features") else "")
                    + f"{cite('final_model_summary')}.")  # fmt: skip
        rule = sidecar.get("threshold_rule") or "Youden's J on the training out-of-fold probabilities; positive when p >= threshold"
        thr = f" (threshold {_num(round(float(sidecar['threshold']), 4))})" if isinstance(sidecar.get("threshold"), int | float) else ""
        text.append(f"Operating threshold: {rule.rstrip('.')}{thr}; it was applied unchanged to the other cohorts.")
        if has("shap_*"):
            text.append(f"SHAP values explain the final model on the training background{cite('shap_*')}.")
        out.append(MethodsParagraph("models", "Models", " ".join(text)))

    # -- statistics of the compared models (optional step)
    sc = getattr(cfg, "statistics", None)
    if sc is not None and has(*_STATISTICS_OUTPUTS):
        text = []
        if has("performance*"):
            text.append(f"Discrimination and classification performance are given with 95% confidence intervals ({getattr(sc, 'n_bootstrap', '?')} "
                        f"bootstrap resamples, seed {cfg.seed}; {getattr(sc, 'proportion_ci', '?')} intervals for proportions){cite('performance*')}.")  # fmt: skip
        if has("pairwise_comparison*"):
            ref = getattr(sc, "reference_model", None)
            pairs = f"every model against {ref}" if ref else "every pair of models"
            text.append(f"Pairwise comparisons ({pairs}) used the DeLong test, the continuous net reclassification improvement and the "
                        f"integrated discrimination improvement{cite('pairwise_comparison*')}.")  # fmt: skip
        if has("calibration", "calibration_*"):
            text.append(f"Calibration was assessed by calibration intercept and slope, Brier score and the Hosmer-Lemeshow test, and plotted in "
                        f"{getattr(sc, 'calibration_bins', '?')} bins{cite('calibration', 'calibration_*')}.")  # fmt: skip
        if has("decision_curve_*"):
            first, last, step = (getattr(sc, "dca_thresholds", None) or ("?", "?", "?"))[:3]
            text.append(f"Decision curves cover threshold probabilities from {_num(first)} to {_num(last)} in steps of {_num(step)}"
                        f"{cite('decision_curve_*')}.")  # fmt: skip
        groups = [f"{g.series} {g.field}" for g in getattr(sc, "subgroups", ()) or ()]
        if groups and has("subgroup_*"):
            text.append(f"Subgroup analyses: {_join(groups)}{cite('subgroup_*')}.")
        if text:
            out.append(MethodsParagraph("statistics", "Statistical evaluation", " ".join(text)))
    return out


def _other_outputs_paragraph(other: Sequence[str]) -> MethodsParagraph | None:
    if not other:
        return None
    groups: dict[str, list[str]] = {}
    for rel in other:
        groups.setdefault(str(Path(rel).parent.as_posix()), []).append(rel)
    parts = [f"{folder}/ ({len(files)} files)" if len(files) > 4 else _join(files) for folder, files in groups.items()]
    return MethodsParagraph("outputs", "Other recorded outputs", f"The run also recorded {len(other)} file{'s' if len(other) != 1 else ''} not "
                            f"shown here (relative to reports/<study>/): {'; '.join(parts)}.")  # fmt: skip


# --------------------------------------------------------------------------- checklist


def _config_value(cfg: StudyConfig, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = getattr(value, part, None) if not isinstance(value, Mapping) else value.get(part)
    return value
