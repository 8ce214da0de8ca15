"""Methods paragraphs of the optional analyses: each written only when the run produced its outputs.

Segmentation network, super-resolution, habitats, deep features, reliability
(ICC filter and interobserver agreement), ComBat harmonisation, missing data,
clinical model, nomogram, survival models, SHAP explanations and Table 1.
Parameters are read from what the run recorded (checkpoint and provenance
JSON files, model sidecars, tables); the configuration fills in only what a
run does not record.
"""


from __future__ import annotations

import re
from collections.abc import Mapping

from helpers.reporting.supplement import methods_words as w
from helpers.reporting.supplement.collect import MethodsParagraph, _join
from helpers.reporting.supplement.methods_run import RunRecord

# --------------------------------------------------------------------------- segmentation


def _best_epoch(run: RunRecord) -> int | None:
    rows = [r for r in run.rows("segmentation_training_history") if str(r.get("best")).lower() == "true"]
    return int(float(rows[-1]["epoch"])) if rows else None


def _segmentation_record(run: RunRecord) -> dict:
    """The kept checkpoint's JSON record (architecture, settings, training and validation patients)."""
    seg = run.cfg.segmentation
    folder = getattr(seg, "checkpoint_dir", None) or "checkpoints"
    return run.json(f"segmentation/{folder}/best.json")


def _network_text(record: Mapping) -> str:
    arch = record.get("architecture") or {}
    net = (record.get("settings") or {}).get("network") or {}
    filters = arch.get("filters") or net.get("filters") or []
    parts = [f"{len(filters)} resolution levels with {_join([str(f) for f in filters])} filters" if filters else ""]
    norm = arch.get("norm") or net.get("norm")
    if norm:
        parts.append(f"{norm} normalisation")
    if arch.get("res_block") or net.get("res_block"):
        parts.append("residual blocks")
    if arch.get("deep_supervision") or net.get("deep_supervision"):
        parts.append("deep supervision")
    return _join([p for p in parts if p])


def _training_text(s: Mapping) -> str:
    opt = s.get("optimizer") or {}
    loss = s.get("loss") or {}
    name = {"adam": "Adam", "sgd": "SGD", "adamw": "AdamW"}.get(str(opt.get("name")), str(opt.get("name")))
    schedule = {"poly": f"polynomial decay (exponent {w.number(opt.get('poly_exponent'))})", "cosine": "cosine decay",
                "constant": "a constant learning rate"}.get(str(opt.get("schedule")), str(opt.get("schedule")))  # fmt: skip
    momentum = f", momentum {w.number(opt.get('momentum'))}" if opt.get("name") == "sgd" else ""
    loss_text = "the sum of the Dice and cross-entropy losses" if loss.get("kind", "dice_ce") == "dice_ce" else w.words(loss.get("kind"))
    return (f"{name} (initial learning rate {w.number(opt.get('lr'))}{momentum}, weight decay {w.number(opt.get('weight_decay'))}, {schedule}) "
            f"minimised {loss_text} for {s.get('epochs')} epochs of {s.get('iterations_per_epoch')} iterations with batches of "
            f"{s.get('batch_size')} patches of {w.size(s.get('patch_size') or [])}")  # fmt: skip


def _budget_text(training: Mapping, validate_every: object) -> str:
    """What the training was allowed and used (the checkpoint's ``training`` record), and how often it was validated."""
    every = int(validate_every or 1)
    validation = f", validating every {w.plural(every, 'epoch')} and after the last" if every > 1 else ""
    if not training:
        return ""
    device = "a GPU" if str(training.get("device", "")).startswith("cuda") else "the CPU"
    run, planned = training.get("epochs_run"), training.get("epochs_planned")
    minutes = training.get("seconds")
    took = f" in {w.number(round(float(minutes) / 60, 1))} minutes" if minutes is not None else ""
    budget = training.get("budget_minutes")
    if training.get("stopped_by") == "time budget":
        what = f"{run} of the {planned} planned epochs ran within the time budget of {w.number(budget)} minutes"
    elif budget is not None:
        what = f"all {planned} epochs ran within the time budget of {w.number(budget)} minutes"
    else:
        what = f"all {planned} epochs ran (no time budget)"
    return f"Training used {device}: {what}{took}{validation}."


def _augmentation_text(a: Mapping) -> str:
    if not a:
        return ""
    parts = []
    if a.get("flip_probability"):
        parts.append(f"flips (probability {w.number(a['flip_probability'])})")
    if a.get("affine_probability"):
        sc = a.get("scaling") or []
        parts.append(f"rotations up to {w.number(a.get('rotation_degrees'))} degrees and scaling {w.number(sc[0])} to {w.number(sc[1])}"
                     f" (probability {w.number(a['affine_probability'])})" if sc else "affine transforms")  # fmt: skip
    if a.get("noise_probability"):
        parts.append("Gaussian noise")
    if a.get("blur_probability"):
        parts.append("Gaussian blur")
    if a.get("contrast_probability"):
        parts.append("gamma contrast changes")
    fg = f"; {w.number(100 * float(a['foreground_fraction']))}% of patches were centred on the tumour" if a.get("foreground_fraction") else ""
    return f"Training patches were augmented with {_join(parts)}{fg}." if parts else ""


def _evaluation_text(run: RunRecord) -> str:
    labels = sorted({r.get("label", "") for r in run.rows("segmentation_summary") if r.get("label")})
    return (f"Predicted masks were compared with the manual masks of every patient by the Dice similarity coefficient and the 95th-percentile "
            f"Hausdorff distance (HD95, mm){' for the ' + _join(labels) + ' label' + ('s' if len(labels) > 1 else '') if labels else ''}, "
            f"summarised per cohort as mean and standard deviation{run.cite('segmentation_summary', 'segmentation_dice*')}.")  # fmt: skip


def _mask_format_text(run: RunRecord) -> str:
    """How the predicted masks were saved: NIfTI, and DICOM SEG for the patients whose images were DICOM series."""
    n_seg = len(list((run.root / "segmentation" / "masks_dicom_seg").glob("*.dcm")))
    if not n_seg:
        return "The predicted masks were saved as NIfTI label images on each image's grid."
    from importlib.metadata import version

    return (f"The predicted masks were saved as NIfTI label images on each image's grid and, for the "
            f"{w.plural(n_seg, 'patient')} whose images were DICOM series, also as DICOM Segmentation objects referencing "
            f"the source series (highdicom {version('highdicom')}), which carry the study's patient pseudonym in place of "
            "the source's identifying values.")


def segmentation(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("segmentation_summary", "segmentation_dice_per_patient", "segmentation_dice"):
        return None
    cfg = run.cfg
    record = _segmentation_record(run)
    s = record.get("settings") or (cfg.segmentation.model_dump(mode="json") if cfg.segmentation is not None else {})
    series = s.get("series") or (cfg.segmentation.series if cfg.segmentation is not None else "")
    text = [f"An automatic segmentation network (a MONAI DynUNet, the nnU-Net architecture; {_network_text(record)}) was trained for the "
            f"{w.words(series)} images."]  # fmt: skip
    n_train, n_val = len(record.get("train_cases") or []), len(record.get("val_cases") or [])
    if n_train:
        text.append(f"It was trained on {w.plural(n_train, 'training patient')}" + (f", with {w.plural(n_val, 'further training patient')} held out "
                    f"to select the checkpoint by the Dice coefficient" if n_val else "") + "; no patient of another cohort was used for training.")  # fmt: skip
    prep = []
    if s.get("target_spacing_mm"):
        prep.append(f"resampled to {w.spacing(s['target_spacing_mm'])} ({w.interpolator(s.get('interpolator'))} interpolation)")
    clip = s.get("clip") or {}
    if clip.get("window"):
        prep.append(f"clipped to intensities {w.number(clip['window'][0])} to {w.number(clip['window'][1])}")
    elif clip.get("percentiles"):
        prep.append(f"clipped to the {w.number(clip['percentiles'][0])}th to {w.number(clip['percentiles'][1])}th percentiles")
    if s.get("n4"):
        prep.append("N4 bias-field corrected")
    if prep:
        text.append(f"Images were {_join(prep)} and z-score normalised.")
    if s.get("optimizer"):
        text.append(_training_text(s) + ".")
    aug = _augmentation_text(s.get("augmentation") or {})
    if aug:
        text.append(aug)
    budget = _budget_text(record.get("training") or {}, s.get("validate_every"))
    if budget:
        text.append(budget)
    best = _best_epoch(run)
    if best is not None:
        text.append(f"The checkpoint of epoch {best} (best validation Dice) was kept{run.cite('segmentation_training_history')}.")
    if s.get("sw_overlap") is not None:
        text.append(f"Every patient was segmented by sliding-window inference ({w.number(100 * float(s['sw_overlap']))}% overlap, "
                    f"{'Gaussian' if s.get('sw_mode') == 'gaussian' else 'constant'} weighting).")  # fmt: skip
    text.append(_evaluation_text(run))
    text.append(_mask_format_text(run))
    manifest = str(cfg.manifest)
    if "manifest_automatic_masks" in manifest:
        text.append("The radiomics analysis of this run used the automatic masks in place of the manual ones.")
    elif "manifest_automatic_as_reader2" in manifest:
        text.append("The automatic masks served as the second reading of the stability analysis.")
    else:
        text.append("The radiomics analysis of this run used the manual masks.")
    return MethodsParagraph("segmentation", "Automatic segmentation", " ".join(text))


# --------------------------------------------------------------------------- super-resolution


def super_resolution(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("super_resolution_*"):
        return None
    cfg = run.cfg
    s = run.json("super_resolution/checkpoint/sr_settings.json")
    if not s and cfg.super_resolution is not None:
        s = cfg.super_resolution.settings.model_dump(mode="json")
    ckpt = run.json("super_resolution/checkpoint/sr_checkpoint.json")
    series = cfg.super_resolution.series if cfg.super_resolution is not None else ""
    scale = s.get("scale") or []
    text = [f"A three-dimensional generative adversarial network was trained to super-resolve the {w.words(series)} images by factors "
            f"{w.size(scale, '(x, y, z)')}."]  # fmt: skip
    text.append(f"Training pairs were made from the training patients' own images, degraded by a Gaussian blur (full width at half maximum "
                f"{w.plural_number(s.get('blur_fwhm'), 'low-resolution voxel')}) and decimation; 20% of the training patients (seeded split) validated "
                f"the checkpoint, and no patient of another cohort was used.")  # fmt: skip
    loss = [f"L1 (weight {w.number(s.get('l1_weight'))})", f"image gradient (weight {w.number(s.get('gradient_weight'))})",
            f"perceptual (weight {w.number(s.get('perceptual_weight'))}, a 3D convolutional feature network"
            + (" with random weights" if str(ckpt.get("perceptual_source", "random")).startswith("random") or not s.get("perceptual_weights")
               else " with pretrained weights") + ")",
            f"{str(s.get('gan_loss', 'lsgan')).upper().replace('LSGAN', 'least-squares adversarial')} (weight {w.number(s.get('adversarial_weight'))})"]  # fmt: skip
    text.append(f"The generator ({s.get('generator_depth')} residual blocks of width {s.get('generator_width')}, {s.get('upsampling', 'learned')} "
                f"up-sampling) minimised the sum of {_join(loss)} losses on patches of {w.size(s.get('patch_size') or [])} "
                f"({s.get('patches_per_volume')} per volume, batches of {s.get('batch_size')}): {s.get('warmup_epochs')} warm-up epoch"
                f"{'s' if s.get('warmup_epochs') != 1 else ''} without the adversarial loss, then up to {s.get('epochs')} epochs in all, Adam with learning "
                f"rates {w.number(s.get('generator_lr'))} (generator) and {w.number(s.get('discriminator_lr'))} (discriminator).")  # fmt: skip
    budget = _budget_text(ckpt.get("training") or {}, s.get("validate_every"))
    if budget:
        text.append(budget)
    if ckpt.get("best_epoch"):
        text.append(f"The checkpoint of epoch {ckpt['best_epoch']} (best validation PSNR) was kept.")
    text.append(f"On the validation patients the super-resolved images were compared with trilinear interpolation by the peak signal-to-noise "
                f"ratio and the structural similarity index{run.cite('super_resolution_*')}.")  # fmt: skip
    sr = cfg.super_resolution
    if sr is not None:
        role = ("As a comparison arm, the super-resolved series went through the same preprocessing and radiomics extraction as the native "
                "images and formed its own model-grid blocks, but stayed out of the signature, the final model and fusion."
                if sr.compare_only else "The super-resolved series was then used like any other series.")  # fmt: skip
        text.append(f"Each patient's mask was up-sampled by nearest neighbour to the super-resolved grid. {role}")
    return MethodsParagraph("super_resolution", "Super-resolution", " ".join(text))


# --------------------------------------------------------------------------- habitats


def habitats(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("habitat_calinski_harabasz", "habitat_fractions", "habitat_map_examples"):
        return None
    cfg = run.cfg
    h = run.json("provenance/extraction.json").get("habitats") or (cfg.extraction.habitats.model_dump(mode="json") if cfg.extraction.habitats else {})
    ch = run.rows("habitat_calinski_harabasz")
    ks = [int(float(r["k"])) for r in ch if r.get("k")]
    chosen = next((int(float(r["k"])) for r in ch if str(r.get("selected", "")).lower() == "true"), None)
    training = {c for c in cfg.training_cohorts}
    n_train = sum(1 for r in run.rows("habitat_fractions_per_patient") if r.get("cohort") in training)
    series = [w.words(s) for s in h.get("series") or []]
    text = [f"Intratumoral habitats were found by K-means clustering of the voxel intensities of {_join(series)}"
            + (" (one channel per series, on the grid of the first series' mask)" if len(series) > 1 else "") +
            f", z-scored per channel and pooled over the {w.plural(n_train, 'training patient') if n_train else 'training patients'} "
            f"(at most {h.get('max_voxels_per_patient')} voxels sampled per patient, seeded)."]  # fmt: skip
    if len(ks) == 1:
        text.append(f"The number of habitats was fixed at K = {ks[0]} (no selection){run.cite('habitat_calinski_harabasz')}.")
    elif ks:
        text.append(f"K was chosen among {min(ks)} to {max(ks)} by the highest Calinski-Harabasz index on the training voxels"
                    + (f": K = {chosen}" if chosen is not None else "") + f"{run.cite('habitat_calinski_harabasz')}.")  # fmt: skip
    text.append("The fitted standardisation and centroids were applied unchanged to every patient's tumour voxels, habitats numbered by "
                f"ascending centroid of the first series{run.cite('habitat_fractions*', 'habitat_map_examples')}.")  # fmt: skip
    extract = [w.words(s) for s in (h.get("extract_from") or h.get("series") or [])]
    text.append(f"Radiomics features of every habitat were extracted from {_join(extract)} with the settings of the tumour"
                + ("" if h.get("shape_features") else ", without shape features") + ".")  # fmt: skip
    ith_cols = [c for c in run.header("ith_scores_by_k") if c.startswith("ith_k")]
    if ith_cols:
        kk = [int(c[5:]) for c in ith_cols]
        text.append(f"An intratumoral heterogeneity score was computed per patient for K = {min(kk)} to {max(kk)} (one clustering per K, also "
                    f"fitted on the training cohort){run.cite('ith_scores_by_k')}.")  # fmt: skip
    unscored = unscored_features(run)
    if run.has("icc_retained_counts", "icc_per_feature") and unscored:
        text.append(f"Habitat features have no second reading: the {unscored} habitat features kept after the missing-data rule bypassed the ICC "
                    f"stability filter (see Reliability).")  # fmt: skip
    return MethodsParagraph("habitats", "Habitats", " ".join(text))


# --------------------------------------------------------------------------- deep features


def _deep_arms(run: RunRecord) -> list[dict]:
    record = run.json("provenance/deep_features.json")
    if record.get("arms"):
        return list(record["arms"])
    return [{"series": d.series, "settings": d.model_dump(mode="json")} for d in run.cfg.deep_features]


def deep_features(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("deep_feature_pca", "deep_features"):
        return None
    pca = run.rows("deep_feature_pca")
    text = []
    for arm in _deep_arms(run):
        series = arm.get("series")
        s = arm.get("settings") or {}
        rows = [r for r in pca if r.get("series") == series]
        if not rows and pca:
            continue
        arch = rows[0].get("architecture") if rows else s.get("architecture")
        weights = str(rows[0].get("weights", "")) if rows else ""
        n_train = rows[0].get("training_patients") if rows else None
        if weights.startswith("sha256"):
            init = f"pretrained weights loaded from a local file (SHA-256 {weights.split()[-1][:12]})"
        else:
            init = "randomly initialised weights (seeded; no pretrained weights were loaded, so the embeddings are those of an untrained network)"
        mode = ("used as is (frozen)" if s.get("mode", "frozen") == "frozen"
                else f"fine-tuned on the training patients' outcome for {s.get('epochs')} epochs")  # fmt: skip
        channels = sorted({r.get("channel", "") for r in rows}) if rows else []
        offsets = s.get("slice_offsets") or [-1, 0, 1]
        inputs = (f"the largest tumour slice and its neighbours at offsets {_join([str(o) for o in offsets])}"
                  if s.get("channel_mode", "neighbours") == "neighbours" else f"the largest tumour slice of {_join([w.words(c) for c in s.get('channel_series') or []])}")  # fmt: skip
        window = s.get("window")
        intensity = (f"windowed to {w.number(window[0])} to {w.number(window[1])}" if window
                     else f"clipped to the {_join([w.number(p) + 'th' for p in s.get('clip_percentiles') or [0.5, 99.5]], 'to')} percentiles")  # fmt: skip
        text.append(f"Deep features of {w.words(series)} were the embeddings of a 2.5D {str(arch).replace('resnet', 'ResNet-')} with {init}, "
                    f"{mode}. Its input was {inputs}, cropped to the tumour with a {w.number(s.get('crop_margin_mm'))} mm margin, {intensity} and "
                    f"resized to {s.get('input_size')} x {s.get('input_size')} pixels.")  # fmt: skip
        n_comp = max((int(float(r["component"])) for r in rows if r.get("component")), default=s.get("pca_components"))
        layout = {"per_channel": f"Each of the {len(channels) or 3} channels was embedded on its own and reduced by its own principal component "
                                 f"analysis to {n_comp} components",
                  "concatenated": f"The channel embeddings were concatenated and reduced by one principal component analysis to {n_comp} components",
                  "stack": f"The three-channel stack was embedded once and reduced by principal component analysis to {n_comp} components"}  # fmt: skip
        text.append(f"{layout.get(str(s.get('feature_layout', 'per_channel')), layout['per_channel'])}, the analysis fitted "
                    f"on the {w.plural(int(float(n_train)), 'training patient') if n_train else 'training patients'} only and applied unchanged to "
                    f"all patients{run.cite('deep_feature_pca')}; the components joined the radiomics features as one more block of the model grid.")  # fmt: skip
    if run.has("deep_classifier_auc", "deep_classifier_loss_*", "gradcam_*"):
        layer = run.json("provenance/deep_features.json").get("gradcam_layer") or run.cfg.deep_gradcam_layer
        text.append(f"For interpretation, an end-to-end 2.5D classifier with the same backbone was trained on 80% of the training patients "
                    f"(20% stratified, seeded validation split) and applied to the held-out cohorts{run.cite('deep_classifier_auc', 'deep_classifier_loss_*')}.")  # fmt: skip
        if run.has("gradcam_*"):
            stage = re.fullmatch(r"layer(\d)", str(layer))
            where = f"residual stage {stage.group(1)} ({layer})" if stage else str(layer)
            text.append(f"Grad-CAM maps of its {where} were drawn for the held-out patients with the highest predicted probabilities"
                        f"{run.cite('gradcam_*')}.")  # fmt: skip
    return MethodsParagraph("deep_features", "Deep features", " ".join(text)) if text else None


# --------------------------------------------------------------------------- reliability


def unscored_features(run: RunRecord) -> int:
    """Features without a second reading (habitats) that were kept after the missing-data rule: they bypass the ICC filter."""
    preset = run.cfg.signature.preset
    first = set(run.header(f"features_{preset}")) - {"patient", "cohort", ""}
    second = set(run.header(f"features_{preset}_reader2")) - {"patient", "cohort", ""}
    if not first or not second:
        return 0
    dropped = {r.get("feature") for r in run.rows("features_dropped_missing_values")}
    return len((first - second) - dropped)


def _second_reading(run: RunRecord) -> str:
    units = run.json("provenance/extraction.json").get("units") or []
    second = [u for u in units if str(u.get("unit", "")).endswith("/reader2")]
    recorded = [u for u in second if "perturbation" in u]
    stab = run.cfg.extraction.stability
    if recorded:
        perturbed = [u for u in recorded if u.get("perturbation")]
        radii = sorted({float(u["perturbation"]["radius_mm"]) for u in perturbed})
        mode = {str(u["perturbation"]["mode"]) for u in perturbed}
        parts = []
        if len(recorded) > len(perturbed):
            parts.append(f"the second reader's mask of the manifest ({w.plural(len(recorded) - len(perturbed), 'unit')})")
        if perturbed:
            parts.append(f"the tumour mask {'eroded' if mode == {'erode'} else 'dilated'} by {_join([w.number(r) for r in radii], 'or')} mm "
                         f"({w.plural(len(perturbed), 'unit')}; the radius raised to at least one voxel)")  # fmt: skip
        return _join(parts, "or")
    if stab is None:
        return ""
    verb = "dilated" if stab.perturbation.mode == "dilate" else "eroded"
    return (f"the second reader's mask of the manifest where given, otherwise the tumour mask {verb} by {w.number(stab.perturbation.radius_mm)} mm "
            f"(at least one voxel)")  # fmt: skip


def _icc_text(run: RunRecord) -> list[str]:
    icc = run.cfg.signature.icc
    if icc is None or not run.has("icc_retained_counts", "icc_per_feature"):
        return []
    n_second = run.n_rows(f"features_{run.cfg.signature.preset}_reader2")
    bound = "the point estimate of the ICC" if icc.ci_bound == "point" else "the lower bound of the 95% confidence interval of the ICC"
    who = f"the {w.plural(n_second, 'training patient')}" if n_second else "the training patients"
    second = _second_reading(run)
    how = f", extracted a second time with {second}," if second else ""
    text = [f"Feature stability was measured on {who}{how} by {w.icc_type(icc.icc_type)} between the two readings; features with {bound} of at least "
            f"{w.number(icc.threshold)} were kept."]  # fmt: skip
    total = next((r for r in run.rows("icc_retained_counts") if r.get("series") == "Total"), None)
    if total:
        pct = f" ({total['retained_percent']}%)" if total.get("retained_percent") else ""
        constant = "none was constant" if str(total.get("constant")) in ("0", "") else f"{total.get('constant')} were constant"
        text.append(f"Of {total.get('extracted')} features with a second reading, {constant} and {total.get('retained')}"
                    f"{pct} passed{run.cite('icc_retained_counts', 'icc_per_feature')}.")  # fmt: skip
    unscored = unscored_features(run)
    if unscored:
        text.append(f"The {unscored} habitat features, which have no second reading, were not scored and passed the filter unchanged.")
    return text


def _interobserver_text(run: RunRecord) -> list[str]:
    rows = run.rows("interobserver_agreement")
    if not rows:
        return []
    readers = rows[0].get("readers", "two readers")
    by_stat: dict[str, list[str]] = {}
    for r in rows:
        by_stat.setdefault(str(r.get("statistic")), []).append(f"{w.words(r.get('variable'))} ({r.get('kind')})")
    n = rows[0].get("n_patients")
    stats = _join([f"{stat} for {_join(v)}" for stat, v in by_stat.items()], "and")
    return [f"Interobserver agreement of the semantic scores of two readers ({readers.replace(' vs ', ' and ')}"
            f"{f', {n} patients' if n else ''}) was measured by {stats}, with 95% confidence intervals (F-distribution for the ICC)"
            f"{run.cite('interobserver_agreement')}."]  # fmt: skip


def reliability(run: RunRecord) -> MethodsParagraph | None:
    text = _icc_text(run) + _interobserver_text(run)
    return MethodsParagraph("reliability", "Reliability", " ".join(text)) if text else None


# --------------------------------------------------------------------------- harmonisation


def harmonization(run: RunRecord) -> MethodsParagraph | None:
    groups = [g for g in run.cfg.signature.harmonization if run.has(f"combat_batches_{g.series.lower()}")]
    if not groups:
        return None
    train = set(run.cfg.training_cohorts)
    text = ["ComBat harmonisation (parametric empirical Bayes, without covariates, so that no outcome information entered it) was fitted on "
            "the training cohort only and applied unchanged to the other cohorts."]  # fmt: skip
    for g in groups:
        rows = run.rows(f"combat_batches_{g.series.lower()}")
        train_batches = {r["batch"] for r in rows if r.get("cohort") in train}
        unseen = [r for r in rows if r.get("cohort") not in train and r.get("batch") not in train_batches]
        n_unseen = sum(int(float(r.get("patients") or 0)) for r in unseen)
        merged = (" (single-patient training batches merged into one)" if g.min_batch_size == 2
                  else f" (training batches of fewer than {g.min_batch_size} patients merged into one)")  # fmt: skip
        policy = ("left unadjusted, taken as on the pooled training scale" if g.unseen_batch == "reference" else "rejected")
        unseen_text = (f"; the {w.plural(n_unseen, 'patient')} of batches absent from training {'were' if n_unseen != 1 else 'was'} {policy}"
                       if n_unseen else f"; patients of a batch absent from training would have been {policy}")  # fmt: skip
        text.append(f"The {w.words(g.series)} features were harmonised by {w.batch_field(g.batch_field)}: "
                    f"{w.plural(len(train_batches), 'training batch', 'training batches')}{merged}{unseen_text}"
                    f"{run.cite('combat_batches_' + g.series.lower(), 'combat_diagnostics_' + g.series.lower())}.")  # fmt: skip
    return MethodsParagraph("harmonization", "Harmonisation", " ".join(text))


# --------------------------------------------------------------------------- missing data


def _imputed_values(run: RunRecord) -> str:
    rule = next((r.get("rule", "") for r in run.rows("selection_pathway") if str(r.get("step", "")).startswith("impute")), "")
    m = re.search(r"\((\d+) training values imputed\)", rule)
    return m.group(1) if m else ""


def _cite_inner(run: RunRecord, *patterns: str) -> str:
    """``, Table S4`` (inside a parenthesis), or nothing."""
    cited = run.cite(*patterns, bare=True)
    return f", {cited}" if cited else ""


def missing_data(run: RunRecord) -> MethodsParagraph | None:
    ran_extraction = run.has("extraction_failures", "extraction_empty_habitats")
    ran_signature = run.has("selection_pathway", "features_dropped_missing_values", "features_imputed_missing_values", "excluded_patients")
    if not (ran_extraction or ran_signature):
        return None
    cfg, md = run.cfg, run.cfg.missing_data
    text = []
    if run.item("extraction_failures") is not None:
        n_fail = run.n_rows("extraction_failures")
        if n_fail:
            policy = {"stop": "the run stopped before the signature",
                      "exclude_patients": "the patients concerned were excluded from the signature, models and statistics",
                      "impute": "the patients concerned were kept and their missing features imputed"}[md.failed_units]  # fmt: skip
            text.append(f"{w.sentence_start(w.plural(n_fail, 'extraction unit'))} failed{run.cite('extraction_failures')}; by the study's rule, {policy}.")
        else:
            text.append(f"No extraction unit failed{run.cite('extraction_failures')}.")
    n_excl = run.n_rows("excluded_patients")
    if n_excl:
        text.append(f"{w.sentence_start(w.plural(n_excl, 'patient'))} {'were' if n_excl != 1 else 'was'} excluded for failed extraction{run.cite('excluded_patients')}.")
    n_empty = run.n_rows("extraction_empty_habitats")
    if n_empty:
        text.append(f"In {w.plural(n_empty, 'patient x series x habitat unit')} the habitat was absent from the tumour or smaller than "
                    f"{cfg.qc.min_mask_voxels} voxels, so its features were missing by design{run.cite('extraction_empty_habitats')}.")  # fmt: skip
    if ran_signature:
        n_drop, n_imp = run.n_rows("features_dropped_missing_values"), run.n_rows("features_imputed_missing_values")
        dropped = (f" ({w.plural(n_drop, 'feature')}{_cite_inner(run, 'features_dropped_missing_values')})" if n_drop else " (none was)")
        text.append(f"Features missing in more than {w.number(100 * md.max_missing_fraction)}% of the training patients were left out{dropped}; "
                    f"missing values in other cohorts never removed a feature.")  # fmt: skip
        values = _imputed_values(run)
        if n_imp:
            detail = f" ({w.plural(n_imp, 'kept feature')} had missing values{f', {values} training values in all' if values else ''}" \
                     f"{_cite_inner(run, 'features_imputed_missing_values')})"
        else:
            detail = "; no kept feature had a missing value"
        text.append(f"The remaining gaps were imputed with the training {md.imputation} as the first step of every model pipeline, refitted "
                    f"within each cross-validation fold{detail}.")  # fmt: skip
    if run.has("clinical_model_coefficients", "nomogram_coefficients"):
        text.append("Missing clinical values were imputed inside every training fold with the training median (continuous) or most frequent "
                    "level (categorical).")  # fmt: skip
    return MethodsParagraph("missing_data", "Missing data", " ".join(text)) if text else None


# --------------------------------------------------------------------------- clinical model and nomogram


def _clinical_variables(run: RunRecord) -> str:
    cc = run.cfg.clinical
    parts = []
    if cc.continuous:
        parts.append(f"{_join([w.words(v) for v in cc.continuous])} (continuous, z-scored with training statistics)")
    if cc.categorical:
        parts.append(f"{_join([w.words(v) for v in cc.categorical])} (categorical, one-hot coded against a reference level)")
    return "; ".join(parts)


def clinical(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("clinical_model_coefficients"):
        return None
    sidecar = run.json("models/clinical_model.json")
    text = [f"A clinical model was fitted on the training cohort with the variables {_clinical_variables(run)}, missing values imputed inside "
            f"each training fold (median or most frequent level)."]  # fmt: skip
    params = sidecar.get("params") or {}
    tuned = f" ({_join([w.hyperparameter(k, v) for k, v in sorted(params.items())])})" if params else ""
    folds = sidecar.get("cv_folds") or run.cfg.models.cv
    # Class weights and recalibration as the sidecar recorded them (a sidecar written before they were recorded: its
    # classifier parameters, else the configuration).
    weight = sidecar.get("class_weight") or (sidecar.get("classifier_params") or {}).get("class_weight") or run.cfg.models.class_weight
    recal = (sidecar.get("recalibration") or {}).get("method", "none")
    weighted = "with class weights inverse to the training class frequencies" if weight == "balanced" else "without class weights"
    smote = " and SMOTE inside the training folds" if "smote" in (sidecar.get("steps") or []) else ""
    calibrated = {"sigmoid": "; its probabilities were recalibrated by Platt's sigmoid fitted on its training out-of-fold decision values",
                  "isotonic": "; its probabilities were recalibrated by isotonic regression fitted on its training out-of-fold decision values"
                  }.get(recal, "; its probabilities were not recalibrated")  # fmt: skip
    text.append(f"It was an L2-penalised logistic regression {weighted}{smote}, its penalty tuned by grid search over {folds}-fold "
                f"cross-validated AUC{tuned}{calibrated}; its threshold was chosen like the radiomics model's"
                f"{run.cite('clinical_model_coefficients')}.")  # fmt: skip
    cc = run.cfg.clinical
    if cc.nomogram and not run.has("nomogram_coefficients", "nomogram"):
        steps = run.cfg.signature.steps
        why = ("the signature has no final LASSO step, so there is no Rad-score" if not steps or steps[-1].get("step") != "lasso"
               else "the unpenalised model could not be estimated on the training cohort (separation)")  # fmt: skip
        text.append(f"The configured clinical-radiomics nomogram was not fitted: {why}.")
    return MethodsParagraph("clinical", "Clinical model", " ".join(text))


def nomogram(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("nomogram_coefficients", "nomogram", "nomogram_points"):
        return None
    text = [f"The combined clinical-radiomics model was an unpenalised logistic regression on the clinical variables "
            f"({_join([w.words(v) for v in run.cfg.clinical.variables])}) and the Rad-score, each categorical variable coded against its most "
            f"frequent training level{run.cite('nomogram_coefficients')}."]  # fmt: skip
    text.append("To keep its training predictions out-of-fold, the Rad-score's selection and LASSO were refitted inside every training fold.")
    if run.has("nomogram", "nomogram_points"):
        text.append(f"It is drawn as a nomogram: points per variable proportional to its contribution to the linear predictor, the total points "
                    f"mapped to the predicted probability{run.cite('nomogram', 'nomogram_points')}.")  # fmt: skip
    return MethodsParagraph("nomogram", "Nomogram", " ".join(text))


# --------------------------------------------------------------------------- survival


def _horizons(run: RunRecord) -> list[str]:
    cols = run.header("survival_metrics")
    return [c[4:] for c in cols if re.fullmatch(r"auc_[\d.]+", c)]


def survival(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("survival_risk_cutoffs", "cox_coefficients", "survival_metrics", "km_*"):
        return None
    cfg, sc = run.cfg, run.cfg.survival
    cut = run.rows("survival_risk_cutoffs")
    # The fitted models' own parameters (provenance/survival.json); the config only for runs that predate that record.
    record = run.json("provenance/survival.json")
    cox = record.get("models", {}).get("cox", {"penalizer": sc.cox_penalizer, "l1_ratio": sc.cox_l1_ratio})
    rsf = record.get("models", {}).get("rsf", {"n_estimators": sc.rsf_trees, "min_samples_leaf": sc.rsf_min_samples_leaf})
    n_features = record.get("n_features") or run.n_rows("cox_coefficients")
    if run.has("survival_models"):
        return _survival_model_set(run, record)
    text = [f"For the time-to-event endpoint, a penalised Cox proportional-hazards model (penalty {w.number(cox['penalizer'])}, L1 ratio "
            f"{w.number(cox['l1_ratio'])}; Efron ties, Breslow baseline) and a random survival forest ({rsf['n_estimators']} trees, at least "
            f"{rsf['min_samples_leaf']} patients per leaf) were fitted on the training cohort with the signature's "
            f"{w.plural(n_features, 'selected feature') if n_features else 'selected features'}, z-scored with training statistics"
            f"{run.cite('cox_coefficients')}."]  # fmt: skip
    folds = record.get("cv_folds", cfg.models.cv)
    text.append(f"Training risks were out-of-fold ({folds}-fold cross-validation stratified by the event, seeded).")
    if cut:
        rule = {"median": "the median", "tertiles": "the tertiles", "quartiles": "the quartiles", "maxstat": "the maximally selected log-rank cut-off",
                "youden": "the Youden cut-off"}.get(cut[0].get("rule", ""), w.words(cut[0].get("rule", "")))  # fmt: skip
        values = _join([f"{w.number(r.get('cutoffs'), 4) if ';' not in str(r.get('cutoffs')) else r.get('cutoffs')} for the "
                        f"{'Cox model' if r.get('model', '').startswith('Cox') else 'forest'}" for r in cut])  # fmt: skip
        text.append(f"Patients were split into risk groups at {rule} of the training out-of-fold risks ({values}), applied unchanged to the other "
                    f"cohorts and compared by Kaplan-Meier curves{run.cite('survival_risk_cutoffs', 'km_*')}.")  # fmt: skip
    if run.has("survival_selection_pathway"):
        text.append("Their features were selected against the follow-up time and event on the training cohort (survival.signature_steps: "
                    f"{w.selection_steps(sc.signature_steps)}){run.cite('survival_selection_pathway', 'survival_radscore_coefficients')}.")  # fmt: skip
    text += _survival_evaluation_text(run)
    return MethodsParagraph("survival", "Survival analysis", " ".join(text))


_BLOCK_WORDS = {"clinical": "the clinical variables", "radiomics": "the radiomics signature's features", "ith": "the ITH score(s)",
                "deep": "the deep features"}


def _survival_model_set(run: RunRecord, record: Mapping) -> MethodsParagraph:
    """Methods of the survival model set (helpers.steps.survival): the models, their inputs, the ablation."""
    cfg, sc = run.cfg, run.cfg.survival
    models = run.rows("survival_models")
    cox = record.get("models", {}).get("cox", {"penalizer": sc.cox_penalizer, "l1_ratio": sc.cox_l1_ratio})
    rsf = record.get("models", {}).get("rsf")
    model_set = record.get("model_set", {})
    listed = [f"{r.get('model')} ({_join([_BLOCK_WORDS.get(b, b) for b in model_set.get(r.get('model'), [])]) or r.get('inputs', '')})"
              for r in models if r.get("estimator") != "random survival forest"]
    first = (f"Time-to-event models were fitted on the training cohort: penalised Cox proportional-hazards models (lifelines; penalty "
             f"{w.number(cox['penalizer'])}, L1 ratio {w.number(cox['l1_ratio'])}; Efron ties, Breslow baseline) on {_join(listed)}"
             f"{run.cite('survival_models', 'cox_coefficients')}.")  # fmt: skip
    text = [first]
    if rsf:
        text.append(f"A random survival forest ({rsf['n_estimators']} trees, at least {rsf['min_samples_leaf']} patients per leaf, seeded) was fitted "
                    "on the radiomics signature's features for comparison.")  # fmt: skip
    ith = record.get("ith_k") or cfg.ith_k
    if any("ith" in v for v in model_set.values()):
        ablated = _join([label for key, label in (("Clinical", "clinical"), ("C-radiomics", "radiomics"), ("DL_F", "deep-feature"))
                         if f"{key} + ITH" in model_set])
        text.append(f"The ITH model used the intratumoral-heterogeneity scores of K = {_join([str(k) for k in ith])} habitats (notebook 03)"
                    + (f"; the ablation compares the {ablated} models alone and with the ITH score(s) added." if ablated else "."))  # fmt: skip
    if run.has("survival_models_not_fitted"):
        text.append(f"Models whose inputs this study lacks were not fitted{run.cite('survival_models_not_fitted')}.")
    text += _survival_inputs_text(run, record, model_set)
    text.append(f"In every model, missing values were imputed (training median, or most frequent category), categorical variables one-hot coded and "
                f"continuous inputs z-scored with statistics of the rows each fit saw; training risks were out-of-fold "
                f"({record.get('cv_folds', cfg.models.cv)}-fold cross-validation stratified by the event, seeded) and the other cohorts were "
                "predicted by the models refitted on the whole training cohort.")  # fmt: skip
    cut = run.rows("survival_risk_cutoffs")
    if cut:
        rule = {"median": "the median", "tertiles": "the tertiles", "quartiles": "the quartiles",
                "maxstat": "the maximally selected log-rank cut-off"}.get(cut[0].get("rule", ""), w.words(cut[0].get("rule", "")))  # fmt: skip
        text.append(f"Patients were split into risk groups at {rule} of each model's training out-of-fold risks, applied unchanged to the other "
                    f"cohorts and compared by Kaplan-Meier curves{run.cite('survival_risk_cutoffs', 'km_*')}.")  # fmt: skip
    text += _survival_evaluation_text(run)
    return MethodsParagraph("survival", "Survival analysis", " ".join(text))


def _survival_inputs_text(run: RunRecord, record: Mapping, model_set: Mapping) -> list[str]:
    """Where a study with a binary endpoint too took the survival models' radiomics features from, and why no end-to-end
    network is among the survival models (helpers.steps.survival's module docstring)."""
    text = []
    if run.has("survival_selection_pathway"):
        text.append("The radiomics features of these models were selected against the follow-up time and event on the training cohort "
                    f"(survival.signature_steps: {w.selection_steps(run.cfg.survival.signature_steps)})"
                    f"{run.cite('survival_selection_pathway', 'survival_radscore_coefficients')}.")  # fmt: skip
    elif record.get("features") == "binary_signature":
        text.append("The radiomics features of these models are those the signature selected for the binary endpoint (survival.features: "
                    "binary_signature).")  # fmt: skip
    if any("deep" in v for v in model_set.values()):
        text.append("Deep features entered the survival models as principal components (DL_F); "
                    + ("the end-to-end deep network was not evaluated as a survival model: it classifies the binary endpoint and was trained "
                       "once on part of the training cohort, so it has neither out-of-fold training risks nor survival curves."
                       if run.has("deep_classifier_auc") else "no end-to-end deep network was trained (one is trained only for a binary endpoint)."))  # fmt: skip
    return text


def _survival_evaluation_text(run: RunRecord) -> list[str]:
    """Sentences on the survival metrics, the ablation and the time-dependent AUC tables (notebook 06)."""
    cfg, sc = run.cfg, run.cfg.survival
    text = []
    if run.has("survival_metrics"):
        hz = _horizons(run)
        n_boot = run.json("provenance/statistics.json").get("survival_bootstrap") or cfg.statistics.survival_bootstrap
        text.append("Discrimination was measured by Harrell's C-index and the cumulative/dynamic time-dependent AUC (inverse-probability-of-"
                    "censoring weights from the training cohort)" + (f" at {_join(hz)} {sc.time_unit}" if hz else "") + ", and overall accuracy "
                    f"by the integrated Brier score, with seeded percentile bootstrap 95% confidence intervals ({n_boot} resamples)"
                    f"{run.cite('survival_metrics')}.")  # fmt: skip
    if run.has("survival_ablation", "survival_td_auc"):
        auc = ("the mean time-dependent AUC over the horizons the cohort supports (scikit-survival's summary, weighted by the change of "
               "the survival function)" if sc.ablation_auc == "mean" else f"the time-dependent AUC at {w.number(sc.ablation_auc)} {sc.time_unit}")
        text.append(f"For each validation and test cohort, the ablation table reports the C-index, {auc} and the integrated Brier score"
                    f"{run.cite('survival_ablation')}, and the time-dependent AUC is given per horizon{run.cite('survival_td_auc')}.")  # fmt: skip
        text.append("Each cohort was evaluated in the time range it supports: a horizon at or beyond the cohort's last observed time, at or beyond "
                    "the last training follow-up time (where the censoring weights are undefined), or before which the cohort had no event, is "
                    "shown as '-' with the reason in the table's note, and the integrated Brier score spans only the cohort's own follow-up.")  # fmt: skip
    return text


# --------------------------------------------------------------------------- explainability


_TREE_CLASSIFIERS = {"RandomForestClassifier", "ExtraTreesClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier",
                     "XGBClassifier", "LGBMClassifier", "CatBoostClassifier", "DecisionTreeClassifier"}  # fmt: skip


def explainability(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("shap_*"):
        return None
    record = run.json("provenance/shap.json")
    sidecar = run.json("models/final_model.json")
    kind = record.get("explainer")
    if not kind:
        cls = str(sidecar.get("classifier", ""))
        kind = "tree" if cls in _TREE_CLASSIFIERS else ("linear" if cls == "LogisticRegression" else "kernel")
    n_train = record.get("training_patients") or sidecar.get("n_train")
    how = {"tree": "interventional Tree SHAP (exact Shapley values of the predicted probability)",
           "linear": "the linear SHAP explainer (exact for a linear model; contributions on the log-odds scale)",
           "kernel": "Kernel SHAP (model-agnostic sampling of feature coalitions, predicted probability)"}[kind]  # fmt: skip
    n_background = record.get("background_patients")
    if n_background is None and n_train:
        n_background = min(int(n_train), {"tree": 100, "kernel": 50}.get(kind, int(n_train)))
    if n_train and n_background is not None and int(n_background) < int(n_train):
        background = f"a seeded sample of {n_background} of the {n_train} training patients"
    else:
        background = f"the {w.plural(int(n_train), 'training patient')}" if n_train else "the training patients"
    text = [f"The final model was explained with {how} on the features it selected, with {background} as background (never held-out "
            f"patients); summary, importance and single-patient plots are shown{run.cite('shap_*')}."]  # fmt: skip
    if (sidecar.get("recalibration") or {}).get("method", "none") != "none":
        text.append("The explanations are those of the model before its recalibration (a non-decreasing map of its score).")
    return MethodsParagraph("explainability", "Explainability", " ".join(text))


# --------------------------------------------------------------------------- Table 1


def table_one(run: RunRecord) -> MethodsParagraph | None:
    if not run.has("table_one*"):
        return None
    tests: list[str] = []
    for it in run.matching("table_one*"):
        for r in run.rows(it.name):
            t = r.get("test") or ""
            if t and t not in tests:
                tests.append(t)
    by_outcome = run.has("table_one_by_outcome_*")
    text = [f"Clinical characteristics were summarised per cohort{' and per outcome class within each cohort' if by_outcome else ''}: "
            f"continuous variables as mean ± SD when a Shapiro-Wilk test (alpha 0.05) did not reject normality in any group, otherwise as "
            f"median [Q1, Q3]; categorical variables as counts and percentages of the non-missing values{run.cite('table_one*')}."]  # fmt: skip
    text.append("Groups were compared by Welch's t-test (normal) or the Mann-Whitney U test, and for categorical variables by the chi-square "
                "test (Yates' correction for 2 x 2 tables) or, when an expected count was below 5, Fisher's exact test (Fisher-Freeman-Halton "
                "with a seeded Monte Carlo p-value of 10,000 tables for larger tables); missing values were excluded and counted.")  # fmt: skip
    if tests:
        text.append(f"Tests used in this run: {_join([t[0].lower() + t[1:] if not t.startswith(('Welch', 'Mann', 'Fisher', 'Kruskal')) else t for t in tests])}.")
    return MethodsParagraph("table_one", "Table 1", " ".join(text))


# --------------------------------------------------------------------------- supplied feature tables


def supplied_features(run: RunRecord) -> MethodsParagraph | None:
    """Features supplied as tables (``feature_tables:``): file, software and settings as stated, counts, exclusions.

    Written from ``provenance/supplied_features.json`` (notebook 04); it never says the run extracted these features.
    """
    record = run.json("provenance/supplied_features.json")
    tables = record.get("tables") or []
    if not tables:
        return None
    cite = run.cite("supplied_feature_tables")
    text = []
    for t in tables:
        blocks = _join([f"{w.words(b['series'])} {b['roi']} ({w.plural(int(b['features']), 'feature')} of {w.plural(int(b['patients']), 'patient')})"
                        for b in t.get("blocks") or []])  # fmt: skip
        per_cohort = t.get("patients_per_cohort") or {}
        cohorts = _join([f"{per_cohort[c]} {w.words(c)}" for c in run.cfg.cohorts if per_cohort.get(c)])
        text.append(f"The features of {blocks} were not extracted by this run but supplied as a table ({t['file']}, SHA-256 "
                    f"{str(t['sha256'])[:12]}; {cohorts} patients), computed with {t['software']} as stated by the authors"
                    + (f" ({str(t['settings']).strip().rstrip('.')})" if str(t.get("settings") or "").strip() else
                       "; its settings were not stated") + f"{cite}.")  # fmt: skip
        excluded = t.get("excluded_columns") or []
        if excluded:
            text.append(f"{w.plural(len(excluded), 'column')} of {t['file']} {'was' if len(excluded) == 1 else 'were'} excluded by the "
                        f"configuration ({_join(excluded[:6])}{' and others' if len(excluded) > 6 else ''}).")  # fmt: skip
        second = t.get("reader2")
        if second:
            text.append(f"A second reading of the same features ({second['file']}, {w.plural(int(second['patients']), 'patient')}) was supplied "
                        "for the stability analysis.")
    icc = run.cfg.signature.icc is not None
    if icc and not any(t.get("reader2") for t in tables) and not run.has("icc_retained_counts", "icc_per_feature"):
        text.append("No second reading was supplied, so the ICC stability filter was not applied.")
    return MethodsParagraph("extraction", "Feature tables (supplied)", " ".join(text))
