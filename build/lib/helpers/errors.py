"""Specific exceptions raised by the toolkit.

Every error message names what is wrong (patient, manifest row, config key or
notebook cell) and what to do about it, so a researcher can fix the input
without reading the source.
"""

from __future__ import annotations

from dataclasses import dataclass


class StudyError(Exception):
    """Base class of all errors raised by :mod:`helpers`."""


class ConfigError(StudyError):
    """The study configuration file is missing, malformed or inconsistent."""


class ImageReadError(StudyError):
    """An image, mask or DICOM object could not be read."""


@dataclass(frozen=True)
class ManifestIssue:
    """One problem found in the manifest or the patient table.

    Parameters
    ----------
    row : int or None
        1-based data row of the CSV file (the header is row 0); ``None`` when
        the problem concerns the whole file.
    column : str or None
        Column the problem is in.
    patient : str or None
        Patient identifier of the row, when known.
    problem : str
        What is wrong.
    fix : str
        What to change to make it right.
    """

    row: int | None
    column: str | None
    patient: str | None
    problem: str
    fix: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.patient:
            where.append(f"patient {self.patient}")
        if self.column:
            where.append(f"column '{self.column}'")
        loc = ", ".join(where) if where else "file"
        return f"{loc}: {self.problem} -> fix: {self.fix}"


class ManifestError(StudyError):
    """The manifest (or patient table) failed validation.

    All problems are collected first and reported together in :attr:`issues`.
    """

    def __init__(self, source: str, issues: list[ManifestIssue]):
        self.source = source
        self.issues = list(issues)
        lines = [f"{len(self.issues)} problem(s) in {source}; nothing was run:"]
        lines += [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class StepFailedError(StudyError):
    """A notebook step failed during a run.

    Parameters
    ----------
    step : str
        Name of the step.
    cohort : str or None
        Cohort the step ran for.
    notebook : str
        Path of the executed notebook (with the error output).
    cell : int or None
        1-based position of the failing cell in the executed notebook (which
        includes papermill's injected-parameters cell), when known.
    reason : str
        The exception name and message raised in the notebook.
    """

    def __init__(self, step: str, cohort: str | None, notebook: str, cell: int | None, reason: str):
        self.step = step
        self.cohort = cohort
        self.notebook = notebook
        self.cell = cell
        self.reason = reason
        where = f"step '{step}'" + (f" (cohort '{cohort}')" if cohort else "")
        cell_txt = f" in cell {cell} of the executed notebook" if cell is not None else ""
        super().__init__(f"{where} failed{cell_txt}: {reason}\n  executed notebook with the traceback: {notebook}")


class UnitsFailedError(StudyError):
    """A step completed but some of its units of work (e.g. extraction units) failed, and the study's
    ``missing_data.failed_units`` policy is ``stop``: nothing downstream runs until they are fixed or the policy
    explicitly allows continuing without them.

    Parameters
    ----------
    step : str
        Name of the step.
    failures : dict
        The step's failure record (:func:`helpers.reporting.writer.read_failures`): ``what``, ``count``, ``patients``,
        ``examples``, ``table``.
    """

    def __init__(self, step: str, failures: dict):
        self.step = step
        self.failures = failures
        count, patients = int(failures.get("count", 0)), failures.get("patients") or []
        lines = [f"step '{step}' finished, but {count} {failures.get('what', 'units')} failed ({len(patients)} patient(s)); "
                 "the study stops here, before the signature and models (missing_data.failed_units: stop):"]
        lines += [f"  - {describe_failure(e)}" for e in failures.get("examples", [])]
        rest = count - len(failures.get("examples", []))
        if failures.get("table"):
            lines.append(f"  {'... and ' + str(rest) + ' more; ' if rest > 0 else ''}every failure: {failures['table']}")
        lines.append("fix: correct the inputs named above and run again (finished units are cached, failed ones are retried), or set "
                     "missing_data.failed_units in the study config to 'exclude_patients' (these patients are left out and listed "
                     "in the methods) or 'impute' (they are kept; their missing features are imputed from training)")
        super().__init__("\n".join(lines))


def describe_failure(example: dict, width: int = 220) -> str:
    """One line for one failed unit: its reason, which names patient, series and ROI (cut to ``width`` characters)."""
    reason = str(example.get("reason", "")).replace("\n", " ")
    if not reason.startswith("patient "):
        where = ", ".join(f"{k} {example[k]}" for k in ("patient", "series", "roi") if example.get(k))
        reason = f"{where}: {reason}" if where else reason
    if example.get("reader") not in (None, "", "reader1"):
        reason = f"[{example['reader']}] {reason}"
    return reason if len(reason) <= width else reason[: width - 3] + "..."


class PerturbationError(StudyError, ValueError):
    """A mask perturbation is impossible (it would empty the mask or change nothing)."""


class InputDataError(StudyError, ValueError):
    """Patient-level input values (clinical variables, scores, predictions) that cannot be used as given."""


class SeparationError(InputDataError):
    """An unpenalised logistic model has no finite maximum-likelihood estimate (perfect separation or collinearity)."""


# -- raised by the stage packages (every exception and warning class of helpers lives here) ------------------


# helpers.features.extraction
class EmptyROIError(StudyError):
    """A habitat subregion absent from (or too small in) a patient's tumour: its features are missing by design.

    Raised inside an extraction unit and recorded as status ``empty``, never as a failure.
    """


# helpers.reporting.supplement
class SupplementWarning(UserWarning):
    """An output shown with a generic caption, a recorded file that is missing, or a step without outputs."""


# helpers.imaging.deep.deep_features
class BackboneWeightsError(StudyError, ValueError):
    """A pretrained-weights file is missing, unreadable or does not fit the network."""


# helpers.imaging.deep.deep_features
class UntrainedBackboneWarning(UserWarning):
    """Features come from a randomly initialised (untrained) network."""


# helpers.imaging.deep.segmentation
class CheckpointMismatchError(StudyError, ValueError):
    """A checkpoint does not match the given settings (or its weights file was altered)."""


# helpers.imaging.deep.super_resolution
class SRWeightsError(StudyError, ValueError):
    """A weights file or checkpoint is missing, unreadable, altered or does not fit the network."""


# helpers.simulation.simulate
class SimulationError(ConfigError):
    """Invalid simulation settings or output folder (the CLI exits with code 2)."""


# helpers.learning.stability
class ReaderMismatchError(StudyError, ValueError):
    """Reader tables do not hold the same patients or features (or a table does not fit the training data)."""


# helpers.learning.harmonize
class UnseenBatchError(StudyError, ValueError):
    """A batch (scanner/centre) met at transform time had no training patients."""


# helpers.learning.models
class UnknownAlgorithmError(StudyError, ValueError):
    """An algorithm name that :func:`make_classifier` does not know."""


# helpers.learning.models
class ModelFileError(StudyError):
    """A saved model or its metadata sidecar is missing, unreadable or altered."""


# helpers.learning.models
class ModelVersionError(StudyError):
    """A saved model was written with library versions different from the installed ones."""


# helpers.learning.models
class ModelVersionWarning(UserWarning):
    """Library versions differ between a saved model and this environment (see :func:`load_model`)."""
