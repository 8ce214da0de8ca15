"""Auto-segmentation and deep features of a study (notebook 02).

Segmentation: a DynUNet (:mod:`helpers.segmentation`) trained on the TRAINING
cohort (its own validation split for checkpointing), applied to every patient,
evaluated against the manual masks (Dice, HD95 per label, patient and cohort),
with the predicted masks written as NIfTI (and, for DICOM input, as DICOM SEG
referencing the source series) and two ready manifests: one whose
masks are the automatic ones (the rest of the study can run on them) and one
that keeps the manual masks and adds the automatic ones as the second reader
(for the ICC stability filter).

Deep features: per configured series, a 2.5D ResNet embedding reduced by PCA
fitted on the training patients (:class:`helpers.deep_features.DeepFeatureExtractor`),
written as ``features/deep_features`` and joined to the radiomics features by
notebook 05 (one more block of the model grid, e.g. ``CT / deep``). An
end-to-end 2.5D classifier trained on the training cohort (with an internal
validation split) gives the loss curves, held-out predictions and Grad-CAM maps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from helpers.figures.evaluation import dice_figure
from helpers.reporting.writer import ReportWriter
from helpers.settings.study import StudyConfig

__all__ = [
    "SegmentationRun", "manifest_mask", "segmentation_cases", "run_segmentation", "write_segmentation_outputs", "write_predicted_dicom_seg", "DeepFeatureRun", "run_deep_features",
    "write_deep_feature_outputs", "SuperResolutionRun", "run_super_resolution", "write_super_resolution_outputs", "with_super_resolution",
]


@dataclass
class SegmentationRun:
    """A trained segmentation model, its predicted masks and their evaluation."""

    train_result: object
    predictions: dict[str, Path]
    evaluation: pd.DataFrame
    summary: pd.DataFrame
    cases: pd.DataFrame
    dicom_seg: dict[str, Path] = field(default_factory=dict)


def _settings_with_local_paths(settings, cfg: StudyConfig, field_name: str = "pretrained_weights"):
    """Settings whose local weights path (relative to the study config) is made absolute."""
    weights = getattr(settings, field_name, None)
    if weights:
        return settings.model_copy(update={field_name: str(cfg.path(weights))})
    return settings


def manifest_mask(row, cfg: StudyConfig):
    """A manifest row's mask as the networks' readers take it: its path, or, when the mask is an RTSTRUCT or DICOM
    SEG with a structure/segment chosen in ``mask_roi``, the chosen mask read on the row's image (the readers below
    take paths without a structure name)."""
    from helpers.imaging.io import is_dicom_file, read_image, read_mask

    path, roi = str(row.mask_path), str(getattr(row, "mask_roi", "") or "").strip()
    if not roi or not is_dicom_file(path):
        return path
    return read_mask(path, reference=read_image(row.image_path), roi_name=roi, tolerance=cfg.geometry_tolerance)


def segmentation_cases(manifest: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """Patients of the segmentation series: ``patient``, ``cohort``, ``image`` (absolute path) and ``truth`` (absolute
    path, or the mask itself when it is a structure/segment of an RTSTRUCT or SEG: :func:`manifest_mask`)."""
    seg = cfg.segmentation
    rows = manifest[manifest["series"] == seg.series]
    if rows.empty:
        raise ValueError(f"segmentation.series '{seg.series}' has no image in the manifest")
    return pd.DataFrame({"patient": rows["patient"].to_numpy(), "cohort": rows["cohort"].to_numpy(),
                         "image": rows["image_path"].astype(str).to_numpy(),
                         "truth": [manifest_mask(r, cfg) for r in rows.itertuples()]})


def run_segmentation(manifest: pd.DataFrame, cfg: StudyConfig) -> SegmentationRun:
    """Train on the training cohort, predict every patient, evaluate against the manual masks."""
    from helpers.imaging.deep.segmentation import (
        evaluation_table,
        predict_masks,
        summarise_evaluation,
        train_segmentation,
    )

    seg = _settings_with_local_paths(cfg.segmentation, cfg)
    cases = segmentation_cases(manifest, cfg)
    out = cfg.report_root / "segmentation"
    train = cases[cases["cohort"].isin(cfg.training_cohorts)]
    result = train_segmentation({r.patient: (r.image, r.truth) for r in train.itertuples()}, None, seg, out)
    predictions = predict_masks(result.model, {r.patient: r.image for r in cases.itertuples()}, seg, out / "masks")
    predictions = {p: Path(path) for p, path in (predictions.items() if isinstance(predictions, dict) else zip(cases["patient"], predictions))}
    cases = cases.assign(prediction=[str(predictions[p]) for p in cases["patient"]])
    tol = cfg.geometry_tolerance
    evaluation = evaluation_table(cases[["patient", "cohort", "prediction", "truth"]], seg.labels, origin_mm=tol.origin_mm)
    evaluation["set"] = np.where(evaluation["patient"].isin(result.val_cases), "training (validation split)",
                                 np.where(evaluation["patient"].isin(result.train_cases), "training (fitted)", "held out"))
    dicom_seg = write_predicted_dicom_seg(predictions, cases, cfg, out / "masks_dicom_seg")
    return SegmentationRun(result, predictions, evaluation, summarise_evaluation(evaluation), cases, dicom_seg)


def write_predicted_dicom_seg(predictions: dict[str, Path], cases: pd.DataFrame, cfg: StudyConfig, folder: Path) -> dict[str, Path]:
    """Each predicted mask of a DICOM-series image also as a DICOM SEG referencing that series (``<patient>.dcm``).

    NIfTI input keeps NIfTI only. The SEG carries the study's pseudonym, not the source's identifying values
    (:func:`helpers.imaging.dicom_seg.write_dicom_seg`).
    """
    from importlib.metadata import version

    import SimpleITK as sitk

    from helpers.imaging.dicom_seg import write_dicom_seg
    from helpers.imaging.io import is_dicom_file

    out: dict[str, Path] = {}
    for r in cases.itertuples():
        source = Path(r.image)
        if not (source.is_dir() and any(is_dicom_file(p) for p in source.iterdir() if p.is_file())):
            continue
        mask = sitk.ReadImage(str(predictions[r.patient]))
        out[r.patient] = write_dicom_seg(mask, source, folder / f"{r.patient}.dcm", labels=cfg.segmentation.labels,
                                         pseudonym=r.patient, algorithm_name="DynUNet (radiomics-study-helpers)",
                                         algorithm_version=version("radiomics-study-helpers"))
    return out


def write_segmentation_outputs(run: SegmentationRun, manifest_raw: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Dice/HD95 tables, the Dice figure, the training curve table and the automatic-mask manifests."""
    shown = {"segmentation_summary": run.summary}
    report.table(run.evaluation, "segmentation_dice_per_patient", per_cohort=False)
    report.table(run.summary, "segmentation_summary", per_cohort=False)
    history = run.train_result.history
    report.table(history, "segmentation_training_history", per_cohort=False)
    report.figure(dice_figure(run.evaluation.dropna(subset=["dice"])[["patient", "label", "cohort", "dice"]]), "segmentation_dice", per_cohort=False)
    report.record(run.train_result.checkpoint)
    report.record(run.train_result.checkpoint.with_suffix(".json"))
    for path in [*run.predictions.values(), *run.dicom_seg.values()]:
        report.record(path)
    # Two manifests: automatic masks in place of the manual ones, or as the second reader of the stability analysis.
    # They live in reports/<study>/segmentation/, so every path is rewritten relative to that folder.
    series = cfg.segmentation.series
    base = Path(cfg.path(cfg.manifest)).parent
    folder = cfg.report_root / "segmentation"
    raw = manifest_raw.drop(columns=[c for c in ("row",) if c in manifest_raw.columns]).copy()
    for col in ("image", "mask", "mask_reader2"):
        if col in raw.columns:
            raw[col] = [Path(_relative(base / v if not Path(v).is_absolute() else Path(v), folder)).as_posix() if v else "" for v in raw[col].fillna("")]
    is_series = raw["series"] == series
    rel = {p: Path(_relative(path, folder)).as_posix() for p, path in run.predictions.items()}
    auto = raw.copy()
    auto.loc[is_series, "mask"] = auto.loc[is_series, "patient"].map(rel)
    for col in ("mask_sha256", "mask_roi"):
        if col in auto.columns:
            auto.loc[is_series, col] = ""
    reader2 = raw.copy()
    reader2.loc[is_series, "mask_reader2"] = reader2.loc[is_series, "patient"].map(rel)
    for name, table in (("manifest_automatic_masks.csv", auto), ("manifest_automatic_as_reader2.csv", reader2)):
        path = folder / name
        table.to_csv(path, index=False)
        report.record(path)
    return shown


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), base.resolve())


@dataclass
class DeepFeatureRun:
    """Deep feature table of all cohorts and, per series, the fitted extractor and the end-to-end classifier."""

    table: pd.DataFrame
    extractors: dict[str, object] = field(default_factory=dict)
    classifiers: dict[str, object] = field(default_factory=dict)
    classifier_predictions: pd.DataFrame | None = None
    inputs: dict[str, dict] = field(default_factory=dict)


def _inputs(manifest: pd.DataFrame, series: str, cfg: StudyConfig) -> dict[str, tuple]:
    rows = manifest[manifest["series"] == series]
    return {r.patient: (str(r.image_path), manifest_mask(r, cfg)) for r in rows.itertuples()}


def run_deep_features(manifest: pd.DataFrame, patients: pd.DataFrame, cfg: StudyConfig) -> DeepFeatureRun:
    """Fit every configured deep-feature arm on the training patients and transform all cohorts.

    Each arm also trains an end-to-end 2.5D classifier on the training
    cohort (80/20 stratified split, seeded) for the loss curves, held-out
    predictions and Grad-CAM maps.
    """
    from helpers.imaging.deep.deep_features import DeepFeatureExtractor, train_deep_classifier

    cohort = manifest.drop_duplicates("patient").set_index("patient")["cohort"]
    train_ids = [p for p in cohort.index if cohort[p] in cfg.training_cohorts]
    frames, extractors, classifiers, preds, all_inputs = [], {}, {}, [], {}
    for settings in cfg.deep_features:
        settings = _settings_with_local_paths(settings, cfg)
        inputs = _inputs(manifest, settings.series, cfg)
        all_inputs[settings.series] = inputs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the untrained-backbone warning is reported in the table below
            extractor = DeepFeatureExtractor(settings=settings).fit({p: inputs[p] for p in train_ids if p in inputs},
                                                           patients.loc[[p for p in train_ids if p in inputs], cfg.endpoints.binary] if settings.mode == "finetune" else None)
            frames.append(extractor.transform(inputs))
        extractors[settings.series] = extractor
        if cfg.endpoints.binary:
            ids = [p for p in train_ids if p in inputs]
            y = patients.loc[ids, cfg.endpoints.binary].astype(int)
            fit_ids, val_ids = train_test_split(ids, test_size=0.2, stratify=y, random_state=cfg.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = train_deep_classifier({p: inputs[p] for p in fit_ids}, y.loc[fit_ids].to_numpy(), {p: inputs[p] for p in val_ids},
                                            y.loc[val_ids].to_numpy(), settings)
            classifiers[settings.series] = clf
            proba = clf.predict_proba(inputs)
            role = pd.Series("held out", index=proba.index)
            role[role.index.isin(fit_ids)] = "training (fitted)"
            role[role.index.isin(val_ids)] = "training (validation split)"
            preds.append(pd.DataFrame({"series": settings.series, "patient": proba.index, "cohort": cohort.reindex(proba.index).to_numpy(),
                                       "set": role.to_numpy(), "outcome": patients.loc[proba.index, cfg.endpoints.binary].to_numpy(),
                                       "probability": proba.to_numpy()}))
    table = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    return DeepFeatureRun(table, extractors, classifiers, pd.concat(preds, ignore_index=True) if preds else None, all_inputs)


def _classifier_summary(preds: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (series, part_set), part in preds.groupby(["series", "set"], sort=False):
        y = part["outcome"].astype(int)
        rows.append({"series": series, "set": part_set, "patients": len(part), "events": int(y.sum()),
                     "auc": float(roc_auc_score(y, part["probability"])) if y.nunique() == 2 else float("nan")})
    return pd.DataFrame(rows)


def write_deep_feature_outputs(run: DeepFeatureRun, manifest: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Deep feature table (data), PCA/provenance table, classifier loss curves, AUCs and Grad-CAM figures."""
    from helpers.figures.deep import gradcam_figure, loss_curve_figure, network_weights_note
    from helpers.imaging.deep.deep_features import gradcam_maps, stack_inputs

    shown: dict[str, pd.DataFrame] = {}
    if run.table.empty:
        return shown
    cohort = manifest.drop_duplicates("patient").set_index("patient")["cohort"]
    report.data(run.table.assign(cohort=cohort.reindex(run.table.index)), "deep_features")
    info = []
    for series, ext in run.extractors.items():
        fi = ext.feature_info_.copy()
        fi.insert(0, "series", series)
        fi["architecture"] = ext.settings_.architecture
        fi["weights"] = "random initialisation (untrained; set pretrained_weights)" if ext.weights_sha256_ is None else f"sha256 {ext.weights_sha256_}"
        fi["training_patients"] = len(ext.training_patients_)
        info.append(fi)
    info_table = pd.concat(info, ignore_index=True)
    # The settings each arm ran with, for the generated methods (the table above has the PCA and the weights).
    report.json({"arms": [{"series": series, "settings": ext.settings_.model_dump(mode="json"), "weights_sha256": ext.weights_sha256_,
                           "training_patients": len(ext.training_patients_)} for series, ext in run.extractors.items()],
                 "gradcam_layer": cfg.deep_gradcam_layer if run.classifier_predictions is not None else None}, "deep_features")
    report.table(info_table, "deep_feature_pca", per_cohort=False)
    shown["deep_feature_pca"] = info_table
    if run.classifier_predictions is not None:
        summary = _classifier_summary(run.classifier_predictions)
        report.table(summary, "deep_classifier_auc", per_cohort=False)
        shown["deep_classifier_auc"] = summary
        for series, clf in run.classifiers.items():
            slug = series.lower()
            report.figure(loss_curve_figure(clf.history, title=f"2.5D classifier ({series})"), f"deep_classifier_loss_{slug}", per_cohort=False)
            held = run.classifier_predictions
            held = held[(held["series"] == series) & (held["set"] == "held out")].sort_values("probability", ascending=False)
            chosen = list(held["patient"].head(4)) or list(run.inputs[series])[:4]
            ids, x = stack_inputs({p: run.inputs[series][p] for p in chosen}, clf.settings)
            maps = gradcam_maps(clf.model, x, target_layer=cfg.deep_gradcam_layer)
            note = network_weights_note(pretrained=clf.weights_sha256 is not None, backbone_trained=clf.settings.mode == "finetune")
            report.figure(gradcam_figure(x, maps, ids, title=f"Grad-CAM ({series}, {cfg.deep_gradcam_layer})", weights_note=note),
                          f"gradcam_{slug}", per_cohort=False)  # fmt: skip
    return shown


# -- super-resolution --------------------------------------------------------------------------------------------------

@dataclass
class SuperResolutionRun:
    """A trained SR generator and the SR images/masks it wrote for every patient."""

    result: object
    images: dict[str, tuple[Path, Path]]
    manifest: pd.DataFrame
    history: pd.DataFrame


def run_super_resolution(manifest: pd.DataFrame, cfg: StudyConfig) -> SuperResolutionRun:
    """Train the 3D SR GAN on the TRAINING patients' images of the configured series and apply it to every patient.

    Training pairs are made by degrading the training images (their own
    resolution is the high resolution); 20% of the training patients
    (seeded) validate the checkpoint. Every patient's image is then
    super-resolved (finer grid, same physical extent, same intensity units)
    and its mask up-sampled by nearest neighbour, written under
    ``reports/<study>/super_resolution/<patient>/``; the returned manifest
    lists them as series ``<series>_SR``, which notebook 03 adds to the study
    (:func:`with_super_resolution`) to extract the same radiomics from NR and
    SR images.
    """
    import SimpleITK as sitk

    from helpers.imaging.deep.super_resolution import apply_super_resolution, train_super_resolution, upsample_mask
    from helpers.imaging.io import read_image, read_mask

    sr = cfg.super_resolution
    settings = _settings_with_local_paths(sr.settings, cfg, "perceptual_weights")
    rows = manifest[manifest["series"] == sr.series]
    if rows.empty:
        raise ValueError(f"super_resolution.series '{sr.series}' has no image in the manifest")
    train_rows = rows[rows["cohort"].isin(cfg.training_cohorts)]
    fit_ids, val_ids = train_test_split(list(train_rows["patient"]), test_size=0.2, random_state=cfg.seed)
    by_patient = rows.set_index("patient")
    folder = cfg.report_root / "super_resolution"
    result = train_super_resolution([read_image(by_patient.loc[p, "image_path"]) for p in fit_ids],
                                    [read_image(by_patient.loc[p, "image_path"]) for p in val_ids], settings, checkpoint_dir=folder / "checkpoint")
    written: dict[str, tuple[Path, Path]] = {}
    out_rows = []
    for r in rows.itertuples():
        image = read_image(r.image_path)
        sr_image = apply_super_resolution(result, image, settings)
        sr_mask = upsample_mask(read_mask(r.mask_path, reference=image, roi_name=getattr(r, "mask_roi", "") or None,
                                          tolerance=cfg.geometry_tolerance), sr_image)
        img_path, msk_path = folder / r.patient / "image.nii.gz", folder / r.patient / "mask.nii.gz"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sr_image, str(img_path), True)
        sitk.WriteImage(sr_mask, str(msk_path), True)
        written[r.patient] = (img_path, msk_path)
        out_rows.append({"patient": r.patient, "cohort": r.cohort, "series": f"{sr.series}_SR",
                         "image": Path(_relative(img_path, folder)).as_posix(), "mask": Path(_relative(msk_path, folder)).as_posix()})
    return SuperResolutionRun(result, written, pd.DataFrame(out_rows), result.history)


def write_super_resolution_outputs(run: SuperResolutionRun, manifest: pd.DataFrame, cfg: StudyConfig, report: ReportWriter) -> dict[str, pd.DataFrame]:
    """Training history, validation metrics vs trilinear, comparison and curve figures, and the SR manifest."""
    from helpers.figures.deep import sr_comparison_figure, sr_training_curve_figure
    from helpers.imaging.deep.super_resolution import apply_super_resolution, degrade_volume
    from helpers.imaging.io import read_image

    sr = cfg.super_resolution
    folder = cfg.report_root / "super_resolution"
    report.table(run.history, "super_resolution_training_history", per_cohort=False)
    report.figure(sr_training_curve_figure(run.history, title=f"Super-resolution training ({sr.series})"), "super_resolution_training", per_cohort=False)
    val = getattr(run.result, "val_metrics", None)
    shown = {}
    if isinstance(val, pd.DataFrame):
        report.table(val, "super_resolution_validation", per_cohort=False)
        shown["super_resolution_validation"] = val
    # One held-out patient: its degraded image super-resolved next to trilinear and the original.
    held = manifest[(manifest["series"] == sr.series) & ~manifest["cohort"].isin(cfg.training_cohorts)]
    example = (held if len(held) else manifest[manifest["series"] == sr.series]).iloc[0]
    original = read_image(example["image_path"])
    low = degrade_volume(original, sr.settings)
    restored = apply_super_resolution(run.result, low, sr.settings)
    z = restored.GetSize()[2] // 2
    report.figure(sr_comparison_figure(low, restored, None if restored.GetSize() != original.GetSize() else original, z,
                                       title=f"{sr.series}, patient {example['patient']}"), "super_resolution_example", per_cohort=False)
    path = folder / "manifest_super_resolution.csv"
    run.manifest.to_csv(path, index=False)
    report.record(path)
    for img, msk in run.images.values():
        report.record(img)
        report.record(msk)
    shown["manifest_super_resolution"] = run.manifest.head()
    return shown


def with_super_resolution(manifest: pd.DataFrame, cfg: StudyConfig, check_images: bool = True) -> pd.DataFrame:
    """The study manifest plus notebook 02's super-resolved images as series ``<series>_SR``.

    Reads ``reports/<study>/super_resolution/manifest_super_resolution.csv``
    and validates it like the study manifest (files, image/mask geometry,
    labels); centre and scanner come from the parent series' rows. Every
    patient of the parent series must have its SR image: notebook 03 then
    extracts the same radiomics from NR and SR images. Without
    ``super_resolution`` in the config the manifest is returned unchanged.

    Raises
    ------
    FileNotFoundError
        When notebook 02 has not written the SR manifest yet.
    ManifestError
        When an SR image/mask is missing or invalid, or a patient lacks one.
    """
    from helpers.data.manifest import read_manifest, validate_manifest
    from helpers.errors import ManifestError, ManifestIssue

    sr = cfg.super_resolution
    if sr is None:
        return manifest
    path = cfg.report_root / "super_resolution" / "manifest_super_resolution.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the segmentation step (notebook 02, which trains and applies the super-resolution "
                                f"network for series '{sr.series}') before feature extraction")
    rows = read_manifest(path)
    parent = manifest[manifest["series"] == sr.series].set_index("patient")
    issues = [ManifestIssue(None, "patient", p, f"no super-resolved {sr.series} image", "re-run the segmentation step (notebook 02)")
              for p in parent.index.difference(rows["patient"])]
    issues += [ManifestIssue(int(r.row), "series", r.patient, f"series '{r.series}' is not '{sr.output_series}'", "re-run the segmentation step (notebook 02)")
               for r in rows.itertuples() if r.series != sr.output_series]
    issues += [ManifestIssue(int(r.row), "patient", r.patient, f"patient has no {sr.series} image in the study manifest", "re-run the segmentation step (notebook 02)")
               for r in rows.itertuples() if r.patient not in parent.index]
    if issues:
        raise ManifestError(str(path), issues)
    for column in ("cohort", "centre", "scanner"):
        rows[column] = [parent.loc[p, column] for p in rows["patient"]]
    checked = validate_manifest(cfg.model_copy(update={"manifest": str(path)}), manifest=rows, check_images=check_images)
    return pd.concat([manifest, checked[[c for c in checked.columns if c in manifest.columns]]], ignore_index=True)
