"""The study runner: executes the numbered notebooks with papermill.

``python -m helpers run`` validates the manifest and patient table first
(nothing runs on invalid input), then executes each configured step, once per
cohort for per-cohort steps, in order. A step run is skipped when its key is
unchanged and its recorded outputs are intact. The key hashes everything the
result depends on: the notebook, its parameters, the config, every data file
of the manifest, the ``helpers`` source, the installed packages and the
outputs of the steps it depends on. Every run writes a provenance record.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import pandas as pd

from helpers._environment import package_versions
from helpers.data.manifest import load_study, read_manifest, with_resolved_paths
from helpers.errors import ConfigError, StepFailedError, UnitsFailedError, describe_failure
from helpers.reporting.writer import hash_outputs, read_failures, read_ledger
from helpers.runner.provenance import FileHashCache, environment_hash, git_state, source_hash
from helpers.settings.study import StepConfig, StudyConfig, load_config

__all__ = ["StepRun", "plan_runs", "step_key", "run_study"]


@dataclass
class StepRun:
    """Outcome of one step run (one step for one cohort)."""

    step: str
    cohort: str | None
    status: str  # "ran", "skipped", "failed"
    task: str | None = None
    seconds: float = 0.0
    key: str = ""
    notebook: str = ""
    outputs: list[str] = field(default_factory=list)
    failed_units: int = 0
    failed_patients: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.step + (f" [{self.cohort}]" if self.cohort else "") + (f" [task {self.task}]" if self.task else "")


def _step_tasks(cfg: StudyConfig, step: StepConfig) -> list[str | None]:
    """The tasks a step runs for: each task for a per-task step of a study with ``tasks``, else once (``None``)."""
    return list(cfg.task_names) if cfg.tasks and step.runs_per_task else [None]


def plan_runs(cfg: StudyConfig, step: str | None = None, cohort: str | None = None,
              task: str | None = None) -> list[tuple[StepConfig, str | None, str | None]]:
    """The (step, cohort, task) runs to execute, in order.

    A step of a study with ``tasks`` that runs per task (notebooks 04-06)
    runs once for each task, in the order of ``tasks``; cohort and task are
    ``None`` for a step that runs once.

    Parameters
    ----------
    step : str, optional
        Run only this step.
    cohort : str, optional
        Run per-cohort steps for this cohort only (steps that are not per
        cohort still run once).
    task : str, optional
        Run per-task steps for this task only (other steps still run).

    Raises
    ------
    ConfigError
        For an unknown step, cohort or task.
    """
    if step is not None:
        cfg.step(step)  # raises for an unknown step
    if cohort is not None and cohort not in cfg.cohorts:
        raise ConfigError(f"unknown cohort '{cohort}'; configured cohorts: {sorted(cfg.cohorts)}")
    if task is not None:
        cfg.task_config(task)  # raises for an unknown task
    runs: list[tuple[StepConfig, str | None, str | None]] = []
    for s in cfg.steps:
        if step is not None and s.name != step:
            continue
        for t in _step_tasks(cfg, s):
            if task is not None and t is not None and t != task:
                continue
            if s.per_cohort:
                runs += [(s, c, t) for c in cfg.cohorts if cohort is None or c == cohort]
            else:
                runs.append((s, None, t))
    return runs


def _data_files(cfg: StudyConfig, manifest: pd.DataFrame | None) -> list[Path]:
    files = [cfg.path(cfg.patient_table)]
    if cfg.manifest is not None:
        files.insert(0, cfg.path(cfg.manifest))
    if cfg.acquisition_headers:
        files.append(cfg.path(cfg.acquisition_headers))
    # Supplied feature tables (and their second readings) are data: a changed table re-runs the steps reading it.
    files += [cfg.path(p) for t in cfg.feature_tables for p in (t.path, t.reader2) if p]
    for col in ("image_path", "mask_path", "mask_reader2_path"):
        files += [Path(p) for p in (manifest[col] if manifest is not None else ()) if p]
    return files


def _upstream_ledgers(cfg: StudyConfig, step: StepConfig, cohort: str | None) -> list[tuple[str, str | None, Path]]:
    """(step, cohort, report root) of each ledger a step run depends on.

    ``cfg`` is the view of the run's task (:meth:`StudyConfig.for_task`): a per-task dependency of a per-task step is the
    same task's run; a step that runs once for the study (the supplement) depends on every task's run.
    """
    out = []
    for dep in step.depends_on:
        dep_cfg = cfg.step(dep)
        tasks = _step_tasks(cfg, dep_cfg)
        if tasks == [None]:
            roots = [cfg.study_root]
        elif cfg.task:
            roots = [cfg.report_root]
        else:
            roots = [cfg.for_task(t).report_root for t in tasks]
        for root in roots:
            if dep_cfg.per_cohort:
                out += [(dep, c, root) for c in ([cohort] if cohort else list(cfg.cohorts))]
            else:
                out.append((dep, None, root))
    return out


def step_key(cfg: StudyConfig, step: StepConfig, cohort: str | None, data_hashes: dict[str, str], code_hash: str, env_hash: str) -> str:
    """Hash of everything one step run's results depend on (``cfg``: the view of the run's task, if any)."""
    upstream = {
        f"{root.relative_to(cfg.study_root).as_posix()}:{dep}:{c}": hash_outputs(root, read_ledger(root, dep, c))
        for dep, c, root in _upstream_ledgers(cfg, step, cohort)
    }
    payload = {
        "notebook": hashlib.sha256(cfg.path(step.notebook).read_bytes()).hexdigest(),
        "parameters": _parameters(cfg, step, cohort),
        "config": cfg.content_hash(),
        "data": data_hashes,
        "code": code_hash,
        "environment": env_hash,
        "upstream": upstream,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _parameters(cfg: StudyConfig, step: StepConfig, cohort: str | None) -> dict[str, object]:
    # The config file is passed by name: the study folder (the config's folder) is the notebook's working directory.
    params: dict[str, object] = {"config_path": cfg.config_file, "step": step.name, "cohort": cohort or ""}
    if cfg.task:
        params["task"] = cfg.task
    params.update(step.parameters)
    return params


def _state_path(cfg: StudyConfig) -> Path:
    return cfg.study_root / ".state" / "steps.json"


def _load_state(cfg: StudyConfig) -> dict[str, dict]:
    path = _state_path(cfg)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _save_state(cfg: StudyConfig, state: dict[str, dict]) -> None:
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")


def _is_current(cfg: StudyConfig, entry: dict | None, key: str) -> bool:
    if not entry or entry.get("key") != key or entry.get("status") != "ran":
        return False
    recorded = entry.get("outputs", {})
    return hash_outputs(cfg.report_root, list(recorded)) == recorded


def _execute(cfg: StudyConfig, step: StepConfig, cohort: str | None, out_nb: Path) -> None:
    import papermill as pm  # imported here: `validate` and tests of planning do not need it

    out_nb.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(cfg.path(step.notebook)),
            str(out_nb),
            parameters=_parameters(cfg, step, cohort),
            kernel_name="python3",
            cwd=cfg.base_dir,
            progress_bar=False,
            log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        raise StepFailedError(step.name, cohort, str(out_nb), exc.cell_index + 1, f"{exc.ename}: {exc.evalue}") from None


def run_study(
    config_path: str | Path,
    step: str | None = None,
    cohort: str | None = None,
    force: bool = False,
    out: TextIO | None = None,
    task: str | None = None,
) -> list[StepRun]:
    """Validate the study inputs, then execute the planned notebook steps.

    Parameters
    ----------
    config_path : str or Path
        The study YAML.
    step, cohort, task : str, optional
        Restrict the run to one step, one cohort and/or one task (of a study with ``tasks``).
    force : bool
        Re-run even when nothing changed.
    out : text stream, optional
        Where progress lines go (default: the current ``sys.stdout``).

    Returns
    -------
    list of StepRun
        One entry per planned run.

    Raises
    ------
    ConfigError, ManifestError
        Invalid configuration or inputs (before any step runs).
    StepFailedError
        A notebook failed; the executed notebook with the traceback is kept.
    UnitsFailedError
        A step recorded failed units (e.g. extraction units) and the study's
        ``missing_data.failed_units`` is ``stop``: later steps do not run.

    After every step the runner prints how many units of work it could not
    complete and the first few (patient, series, ROI, reason); such a step
    never reports a plain "done".
    """
    started = _dt.datetime.now(_dt.UTC)
    out = out if out is not None else sys.stdout  # looked up at call time (a redirected stdout is honoured)
    cfg = load_config(config_path)
    runs = plan_runs(cfg, step, cohort, task)
    inputs = [str(x) for x in (cfg.manifest, *(t.path for t in cfg.feature_tables)) if x]
    print(f"validating {', '.join(inputs)} and {cfg.patient_table} ...", file=out, flush=True)
    state_dir = cfg.report_root / ".state"
    hashes = FileHashCache(state_dir / "file_hashes.json")
    raw = with_resolved_paths(read_manifest(cfg.path(cfg.manifest)), cfg.path(cfg.manifest).parent) if cfg.manifest is not None else None
    data_hashes = {
        str(p.relative_to(cfg.base_dir)) if p.is_relative_to(cfg.base_dir) else str(p): hashes.sha256(p)
        for p in _data_files(cfg, raw)
        if p.exists()
    }
    code_hash, env_hash = source_hash(), environment_hash()
    # Images were fully checked before when config, data and code are unchanged: then only the cheap checks run.
    stamp_path = state_dir / "validated.json"
    stamp = hashlib.sha256(json.dumps([cfg.content_hash(), data_hashes, code_hash], sort_keys=True).encode()).hexdigest()
    previously_valid = stamp_path.is_file() and stamp_path.read_text(encoding="utf-8") == stamp
    notes: list = []  # warning-level findings (e.g. patient-table rows without images): printed, never silent
    load_study(cfg, check_images=not previously_valid, hasher=hashes.sha256, notes=notes)
    for note in notes:
        print(f"note: {note}", file=out, flush=True)
    hashes.save()
    stamp_path.write_text(stamp, encoding="utf-8")
    state = _load_state(cfg)
    results: list[StepRun] = []
    failure: StepFailedError | UnitsFailedError | None = None
    versions = package_versions()
    for i, (s, c, t) in enumerate(runs, start=1):
        view = cfg.for_task(t)  # the task's endpoints and report folder (the study itself for shared steps)
        run_id = (f"{t}/" if t else "") + s.name + (f"__{c}" if c else "")
        out_nb = view.report_root / "notebooks" / f"{Path(s.notebook).stem}{'__' + c if c else ''}.ipynb"
        key = step_key(view, s, c, data_hashes, code_hash, env_hash)
        result = StepRun(s.name, c, "skipped", key=key, notebook=str(out_nb.relative_to(cfg.study_root)), task=t)
        prefix = f"[{i}/{len(runs)}] {result.label}"
        if not force and _is_current(view, state.get(run_id), key):
            result.outputs = list(state[run_id]["outputs"])
            failures = read_failures(view.report_root, s.name, c)
            if failures:
                # Only reachable when the policy allows continuing (a stopped step is never recorded as current).
                result.failed_units, result.failed_patients = int(failures["count"]), list(failures.get("patients", []))
                print(f"{prefix}: unchanged, skipped (with {failures['count']} failed {failures.get('what', 'units')}, "
                      f"policy {cfg.missing_data.failed_units})", file=out, flush=True)
            else:
                print(f"{prefix}: unchanged, skipped", file=out, flush=True)
            results.append(result)
            continue
        # The run record is written before every step, so a step that reads it (the supplement's methods: software
        # versions, commit, hashes) sees this run's record, also on the first run.
        _write_provenance(cfg, started, results, data_hashes, code_hash, env_hash, versions, finished=False)
        print(f"{prefix}: running {s.notebook} ...", file=out, flush=True)
        t0 = time.perf_counter()
        try:
            _execute(view, s, c, out_nb)
        except StepFailedError as exc:
            result.status, result.seconds = "failed", time.perf_counter() - t0
            state.pop(run_id, None)
            results.append(result)
            failure = exc
            print(f"{prefix}: FAILED after {result.seconds:.1f} s", file=out, flush=True)
            break
        result.status, result.seconds = "ran", time.perf_counter() - t0
        outputs = read_ledger(view.report_root, s.name, c)
        result.outputs = outputs
        failures = read_failures(view.report_root, s.name, c)
        if failures:
            result.failed_units, result.failed_patients = int(failures["count"]), list(failures.get("patients", []))
            _print_failures(prefix, result, failures, cfg.missing_data.failed_units, out)
            if cfg.missing_data.failed_units == "stop":
                # Not recorded as current: the next run re-runs the step (finished units come from the cache).
                result.status = "failed"
                state.pop(run_id, None)
                results.append(result)
                failure = UnitsFailedError(s.name, failures)
                break
        else:
            print(f"{prefix}: done in {result.seconds:.1f} s ({len(outputs)} files)", file=out, flush=True)
        state[run_id] = {"key": key, "status": "ran", "outputs": hash_outputs(view.report_root, outputs)}
        _save_state(cfg, state)
        results.append(result)
    _save_state(cfg, state)
    _write_provenance(cfg, started, results, data_hashes, code_hash, env_hash, versions)
    if failure is not None:
        raise failure
    return results


def _print_failures(prefix: str, result: StepRun, failures: dict, policy: str, out: TextIO) -> None:
    """The step's failed units: count, patients, the first few with their reasons, the table listing all."""
    what, count, patients = failures.get("what", "units"), int(failures["count"]), failures.get("patients", [])
    shown = ", ".join(patients[:8]) + (f" and {len(patients) - 8} more" if len(patients) > 8 else "")
    consequence = {
        "stop": "the study stops after this step",
        "exclude_patients": "these patients are excluded from the signature, models and statistics",
        "impute": "these patients are kept; their missing features follow the missing-value policy",
    }[policy]
    print(f"{prefix}: finished in {result.seconds:.1f} s ({len(result.outputs)} files) WITH {count} FAILED {what.upper()} "
          f"(patients {shown}); policy missing_data.failed_units: {policy}: {consequence}", file=out, flush=True)
    for example in failures.get("examples", []):
        print(f"    - {describe_failure(example)}", file=out, flush=True)
    if failures.get("table"):
        rest = count - len(failures.get("examples", []))
        print(f"    {'... and ' + str(rest) + ' more; ' if rest > 0 else ''}every failure: {failures['table']}", file=out, flush=True)


def _write_provenance(cfg: StudyConfig, started: _dt.datetime, results: list[StepRun], data_hashes: dict[str, str], code_hash: str,
                      env_hash: str, versions: dict[str, str] | None = None, finished: bool = True) -> Path:
    """Write the run record ``provenance/run-<start>.json`` and ``provenance/latest.json``.

    With ``finished=False`` the record is provisional (written before a step runs): ``finished_utc`` is ``None`` and
    ``steps`` holds the step runs so far.
    """
    record = {
        "study": cfg.study,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds") if finished else None,
        "seed": cfg.seed,
        "config_hash": cfg.content_hash(),
        "git": git_state(cfg.base_dir),
        "platform": {"python": sys.version.split()[0], "executable_implementation": sys.implementation.name, "platform": sys.platform},
        "packages": versions if versions is not None else package_versions(),
        "environment_hash": env_hash,
        "helpers_source_hash": code_hash,
        "data_hashes": data_hashes,
        "steps": [asdict(r) for r in results],
    }
    folder = cfg.report_root / "provenance"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"run-{stamp}.json"
    text = json.dumps(record, indent=1, sort_keys=True)
    path.write_text(text, encoding="utf-8")
    (folder / "latest.json").write_text(text, encoding="utf-8")
    return path
