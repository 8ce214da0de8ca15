"""Command line: ``python -m helpers run|validate|simulate`` (``helpers/__main__.py`` calls :func:`main`).

Exit codes: 0 success, 1 a notebook step failed (or units failed under ``missing_data.failed_units: stop``),
2 invalid config or inputs.
"""

from __future__ import annotations

import argparse
import sys

from helpers.errors import ConfigError, ManifestError, StepFailedError, UnitsFailedError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers", description="Reproducible radiomics study runner")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate inputs, then execute the study notebooks (skipping unchanged steps)")
    run.add_argument("--config", default="study.yaml", help="study configuration (default: study.yaml)")
    run.add_argument("--step", help="run only this step (e.g. acquisition_qc)")
    run.add_argument("--cohort", help="run per-cohort steps for this cohort only")
    run.add_argument("--task", help="run the per-task steps (04-06) for this task only (a study with 'tasks')")
    run.add_argument("--force", action="store_true", help="re-run steps even when nothing changed")
    val = sub.add_parser("validate", help="validate the config, manifest and patient table; run nothing")
    val.add_argument("--config", default="study.yaml")
    sim = sub.add_parser(
        "simulate",
        help="write a seeded simulated study with its ground truth (helpers.simulation.simulate)",
        description="Write a complete simulated MR or CT study (images, two readers' masks, clinical table, endpoints, manifest, "
        "study.yaml) and its ground truth (ground_truth/). Options left out keep their SimulationSettings defaults; "
        "--settings reads any setting from a YAML/JSON file, options given here override it.",
    )
    sim.add_argument("--out", required=True, help="folder to write (absent or empty)")
    sim.add_argument("--patients", type=int, help="number of patients (default 100)")
    sim.add_argument("--seed", type=int, help="seed of every random draw (default 0); same seed -> identical files")
    sim.add_argument("--modality", choices=["MR", "CT"],
                     help="MR (T1WI-like, default) or CT (int16 Hounsfield units, CT scanners and kernels, series 'CT')")
    sim.add_argument("--centres", nargs="+", metavar="NAME=SCANNER[,SCANNER]",
                     help="centres and their scanners: MR verio, signa_hdxt, ingenia_cx (default centre1=verio "
                     "centre2=signa_hdxt,ingenia_cx); CT discovery_ct750, definition_flash, brilliance_ict (default "
                     "centre1=definition_flash,brilliance_ict centre2=discovery_ct750)")
    sim.add_argument("--split", choices=["random", "centre"], help="cohort split: random per scanner (default) or by centre")
    sim.add_argument("--train-centres", nargs="+", metavar="NAME", help="training centres for --split centre")
    sim.add_argument("--test-fraction", type=float, help="external-test share of each scanner's patients (--split random; default 0.3)")
    sim.add_argument("--validation-fraction", type=float,
                     help="internal-validation share of each scanner's patients (--split random; default 0: no validation cohort)")
    sim.add_argument("--validation-centres", nargs="+", metavar="NAME", help="validation centres for --split centre")
    sim.add_argument("--extra-sequences", nargs="+", metavar="NAME",
                     help="additional co-registered MR sequences with the default T2-like contrast (e.g. T2)")
    sim.add_argument("--target-auc", type=float, help="planted Bayes-ceiling AUC of the label (default 0.85)")
    sim.add_argument("--prevalence", type=float, help="share of label 1 (default 0.4)")
    sim.add_argument("--fov-mm", type=float, nargs=3, metavar=("X", "Y", "Z"), help="field of view in mm (default 96 96 72)")
    sim.add_argument("--study", help="study name written into study.yaml (default 'simulated')")
    sim.add_argument("--dicom", action="store_true", help="also write each image as a DICOM series (the manifest points at it)")
    sim.add_argument("--settings", help="YAML/JSON file of SimulationSettings keys")
    sim.add_argument("--overwrite", action="store_true", help="replace a previous simulation in --out")
    return p


def _simulate(args: argparse.Namespace) -> int:
    from helpers.simulation.simulate import load_settings_file, parse_centres, simulate_study

    settings = load_settings_file(args.settings) if args.settings else {}
    overrides = {
        "modality": args.modality, "patients": args.patients, "seed": args.seed, "split": args.split, "test_fraction": args.test_fraction,
        "target_auc": args.target_auc, "prevalence": args.prevalence, "fov_mm": args.fov_mm, "study": args.study,
        "train_centres": args.train_centres, "centres": parse_centres(args.centres) if args.centres else None,
        "dicom": True if args.dicom else None, "validation_fraction": args.validation_fraction,
        "validation_centres": args.validation_centres,
        "extra_sequences": {name: {} for name in args.extra_sequences} if args.extra_sequences else None,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    result = simulate_study(args.out, settings, overwrite=args.overwrite)
    print(f"OK: {result.n_patients} simulated patients in {result.out_dir}; planted Bayes-ceiling AUC "
          f"{result.population_auc:.3f} (population), {result.bayes_auc_test:.3f} (external test); "
          f"ground truth in {result.truth_json.parent}; run: python -m helpers run --config {result.study_yaml}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "validate":
            from helpers.data.manifest import load_study
            from helpers.settings.study import load_config

            cfg = load_config(args.config)
            notes: list = []  # warning-level findings (e.g. patient-table rows without images): printed, not fatal
            manifest, patients = load_study(cfg, notes=notes)
            if cfg.manifest is None:
                print(f"OK: supplied features of {manifest['patient'].nunique()} patients in {len(cfg.feature_tables)} feature table(s), "
                      f"{len(cfg.cohorts)} cohorts; patient table has {len(patients)} rows")
            else:
                print(f"OK: {len(manifest)} images of {manifest['patient'].nunique()} patients in {len(cfg.cohorts)} cohorts; patient table has {len(patients)} rows")
            for note in notes:
                print(f"note: {note}")
            return 0
        from helpers.runner.pipeline import run_study

        results = run_study(args.config, step=args.step, cohort=args.cohort, force=args.force, task=args.task)
        ran = sum(r.status == "ran" for r in results)
        failed = {p for r in results for p in r.failed_patients}
        units = sum(r.failed_units for r in results)
        tail = f"; {units} unit(s) of {len(failed)} patient(s) FAILED (listed above)" if units else ""
        print(f"finished: {ran} step run(s) executed, {len(results) - ran} unchanged and skipped{tail}")
        return 0
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StepFailedError, UnitsFailedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
