"""Command line: ``python -m helpers run|validate``.

Exit codes: 0 success, 1 a notebook step failed, 2 invalid config or inputs.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError, ManifestError, StepFailedError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers", description="Reproducible radiomics study runner")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate inputs, then execute the study notebooks (skipping unchanged steps)")
    run.add_argument("--config", default="study.yaml", help="study configuration (default: study.yaml)")
    run.add_argument("--step", help="run only this step (e.g. acquisition_qc)")
    run.add_argument("--cohort", help="run per-cohort steps for this cohort only")
    run.add_argument("--force", action="store_true", help="re-run steps even when nothing changed")
    val = sub.add_parser("validate", help="validate the config, manifest and patient table; run nothing")
    val.add_argument("--config", default="study.yaml")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            from .config import load_config
            from .manifest import load_study

            cfg = load_config(args.config)
            manifest, patients = load_study(cfg)
            print(f"OK: {len(manifest)} images of {manifest['patient'].nunique()} patients in {len(cfg.cohorts)} cohorts; patient table has {len(patients)} rows")
            return 0
        from .pipeline import run_study

        results = run_study(args.config, step=args.step, cohort=args.cohort, force=args.force)
        ran = sum(r.status == "ran" for r in results)
        print(f"finished: {ran} step run(s) executed, {len(results) - ran} unchanged and skipped")
        return 0
    except (ConfigError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StepFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
