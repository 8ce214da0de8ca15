"""Every file handed from one study step to another: where it lives under ``reports/<study>/`` and how it is read.

A step writes its outputs through :class:`helpers.reporting.writer.ReportWriter` (which records them for the
runner); a later step reads them only through the artifacts defined here, so a path is spelled once and a missing
file names the step to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.settings.study import PER_TASK_NOTEBOOKS, StudyConfig

__all__ = [
    "Artifact",
    "DEEP_FEATURES",
    "EXTRACTION_DIAGNOSTICS",
    "EXTRACTION_FAILURES",
    "EXTRACTION_PROVENANCE",
    "FEATURES",
    "FEATURES_READER2",
    "FINAL_MODEL",
    "FINAL_MODEL_SIDECAR",
    "ITH_SCORES",
    "MODELLING_FEATURES",
    "MODEL_PREDICTIONS",
    "PERFORMANCE",
    "RADSCORES",
    "RADSCORE_COEFFICIENTS",
    "RUN_RECORD",
    "SIGNATURE_MODEL",
    "SURVIVAL_ABLATION",
    "SURVIVAL_PREDICTIONS",
]


@dataclass(frozen=True)
class Artifact:
    """One hand-off file: its path relative to ``reports/<study>/`` (``{name}`` fields filled by keyword), the
    step that writes it (as named in study.yaml), its format (``parquet``, ``csv``, ``json`` or ``joblib``) and the
    step's notebook."""

    relative: str
    written_by: str
    kind: str
    notebook: str = ""

    @property
    def per_task(self) -> bool:
        """Written by a step that runs once per task (notebooks 04-06): it lives under the task's report folder."""
        return f"{self.notebook}_".startswith(PER_TASK_NOTEBOOKS) if self.notebook else False

    def path(self, cfg: StudyConfig, **fields: str) -> Path:
        """Absolute path for this study (``fields`` fill the placeholders, e.g. ``preset="seed1762"``).

        Files of the shared steps (01-03, the runner) are under ``reports/<study>/``; those of the per-task steps under
        the task's folder when ``cfg`` is one task's view (:meth:`StudyConfig.for_task`).
        """
        return (cfg.report_root if self.per_task else cfg.study_root) / self.relative.format(**fields)

    def exists(self, cfg: StudyConfig, **fields: str) -> bool:
        return self.path(cfg, **fields).is_file()

    def read(self, cfg: StudyConfig, **fields: str) -> Any:
        """The file's content (DataFrame, dict or unpickled object).

        Raises
        ------
        FileNotFoundError
            Naming the file and the step that writes it.
        """
        path = self.path(cfg, **fields)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the {self.written_by} step first"
                                    + (f" (notebook {self.notebook})" if self.notebook else ""))
        if self.kind == "parquet":
            return pd.read_parquet(path)
        if self.kind == "csv":
            return pd.read_csv(path, dtype={"patient": str})
        if self.kind == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        if self.kind == "joblib":
            import joblib

            return joblib.load(path)
        raise ValueError(f"unknown artifact kind {self.kind!r}")


FEATURES = Artifact("features/features_{preset}.parquet", "feature_extraction", "parquet", "03")
FEATURES_READER2 = Artifact("features/features_{preset}_reader2.parquet", "feature_extraction", "parquet", "03")
EXTRACTION_DIAGNOSTICS = Artifact("features/extraction_diagnostics.parquet", "feature_extraction", "parquet", "03")
EXTRACTION_FAILURES = Artifact("tables/extraction_failures.csv", "feature_extraction", "csv", "03")
EXTRACTION_PROVENANCE = Artifact("provenance/extraction.json", "feature_extraction", "json", "03")
ITH_SCORES = Artifact("tables/ith_scores_by_k.csv", "feature_extraction", "csv", "03")  # patient, cohort, ith_k2...
DEEP_FEATURES = Artifact("features/deep_features.parquet", "segmentation", "parquet", "02")
MODELLING_FEATURES = Artifact("features/modelling_features.parquet", "signature", "parquet", "04")
RADSCORES = Artifact("features/radscores.parquet", "signature", "parquet", "04")
RADSCORE_COEFFICIENTS = Artifact("tables/radscore_coefficients.csv", "signature", "csv", "04")
SIGNATURE_MODEL = Artifact("models/signature.joblib", "signature", "joblib", "04")
FINAL_MODEL = Artifact("models/final_model.joblib", "models", "joblib", "05")
FINAL_MODEL_SIDECAR = Artifact("models/final_model.json", "models", "json", "05")
MODEL_PREDICTIONS = Artifact("features/model_predictions.parquet", "models", "parquet", "05")
SURVIVAL_PREDICTIONS = Artifact("features/survival_predictions.parquet", "models", "parquet", "05")
PERFORMANCE = Artifact("tables/performance.csv", "statistics", "csv", "06")
SURVIVAL_ABLATION = Artifact("tables/survival_ablation.csv", "statistics", "csv", "06")
RUN_RECORD = Artifact("provenance/latest.json", "runner (python -m helpers run)", "json")
