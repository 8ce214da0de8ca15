"""Benchmark (issue 7, "Scale"): every study step on simulated cohorts of growing size.

For each cohort size N (default 50, 200 and 1000 patients) this script

1. simulates a study with a fixed seed into a scratch folder (``<root>/<N>``,
   default root ``/tmp/bench_scale``; not in the repository) with
   ``python -m helpers simulate``;
2. checks it with ``python -m helpers validate``;
3. runs every step of the simulated ``study.yaml`` one at a time, each as its
   own process ``python -m helpers run --config study.yaml --step NAME``
   (so the runner's start-up, input hashing and papermill kernel are included);
4. for the sizes in ``--dask-sizes`` runs feature_extraction once more on a
   local Dask cluster (``distributed.LocalCluster``, 2 workers x 1 thread,
   started in its own process) given to the runner by
   ``extraction.scheduler_address`` in a copy of the study.yaml with its own,
   empty reports folder (so the extraction cache is cold in both runs).

Every command is measured the same way: wall time, and the resident memory
(RSS) of the whole process tree (runner -> papermill kernel -> extraction
workers; for the Dask run also the cluster's scheduler, nannies and workers)
sampled with psutil every 0.2 s: the peak of the tree's total and the peak of
the largest single process. The 1-minute load average is sampled too, because
the machine may be shared (then absolute times are inflated).

From the results of all sizes measured so far (kept in ``<root>/results.json``,
so sizes can be run in separate invocations) it fits the cost exponent of
every step (slope of log time vs log N), plots time and peak memory vs N
(log-log, ``docs/bench_scale_time.png`` and ``docs/bench_scale_memory.png``) and
writes a section of ``docs/benchmarks.md`` (only its own section is replaced).

Usage (run it niced if the machine is shared; the script lowers its own
priority to nice 10 in any case):

    nice -n 10 python bench/bench_scale.py                       # 50, 200, 1000
    nice -n 10 python bench/bench_scale.py --sizes 50 200
    nice -n 10 python bench/bench_scale.py --sizes 1000 --steps simulate validate acquisition_qc feature_extraction
    nice -n 10 python bench/bench_scale.py --quick               # 40 patients, scratch root, doc untouched
    python bench/bench_scale.py --doc-only                       # re-write doc + plots from results.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
FIG_TIME = REPO / "docs" / "bench_scale_time.png"
FIG_MEM = REPO / "docs" / "bench_scale_memory.png"
BEGIN, END = "<!-- bench_scale:begin -->", "<!-- bench_scale:end -->"
HEADING = "## Scale: simulated cohorts of 50, 200 and 1000 patients (`bench/bench_scale.py`)"
MiB = 1024.0 * 1024.0
PSEUDO_STEPS = ("simulate", "validate")
DASK_STEP = "feature_extraction (Dask LocalCluster 2x1)"


# --------------------------------------------------------------------------------------------- measurement
class TreeSampler(threading.Thread):
    """Samples the summed RSS of the process trees under ``roots`` (and the largest process) every ``interval`` s."""

    def __init__(self, roots: list[int], interval: float = 0.2):
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_single_name = ""
        self.max_procs = 0
        self.loads: list[float] = []
        self._halt = threading.Event()
        self._procs: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        out = []
        for pid in self.roots:
            try:
                root = self._procs.setdefault(pid, psutil.Process(pid))
                out.append(root)
                for child in root.children(recursive=True):
                    # Keep Process objects so cpu/identity checks stay cheap; a reused pid is a new key anyway.
                    out.append(self._procs.setdefault(child.pid, child))
            except psutil.Error:
                continue
        return out

    def sample(self) -> None:
        total, procs = 0, self._tree()
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if rss > self.peak_single:
                self.peak_single = rss
                try:
                    self.peak_single_name = " ".join(p.cmdline()[1:4])[:80]
                except psutil.Error:
                    pass
        self.peak_total = max(self.peak_total, total)
        self.max_procs = max(self.max_procs, len(procs))

    def run(self) -> None:
        last_load = 0.0
        while not self._halt.is_set():
            self.sample()
            now = time.monotonic()
            if now - last_load >= 2.0:
                self.loads.append(os.getloadavg()[0])
                last_load = now
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def measure(cmd: list[str], cwd: Path, log: Path, extra_roots: list[int] | None = None, timeout: float | None = None) -> dict:
    """Run ``cmd`` as its own process group; return wall time, peak memory of its tree, load average, exit code."""
    load0 = os.getloadavg()[0]
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = TreeSampler([proc.pid] + list(extra_roots or []))
        sampler.start()
        status = "ok"
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
            os.killpg(proc.pid, signal.SIGTERM)  # the group this script started for this command
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        seconds = time.perf_counter() - t0
        sampler.stop()
    if status == "ok" and rc != 0:
        status = f"failed (exit {rc})"
    loads = sampler.loads or [os.getloadavg()[0]]
    return {
        "status": status, "seconds": seconds, "peak_tree_mib": sampler.peak_total / MiB,
        "peak_single_mib": sampler.peak_single / MiB, "peak_single_proc": sampler.peak_single_name,
        "max_procs": sampler.max_procs, "load_start": load0, "load_mean": sum(loads) / len(loads), "load_max": max(loads),
        "log": str(log),
    }


def cell_durations(nb_path: Path) -> list[tuple[str, float]]:
    """(first source line, seconds) of every executed code cell, from papermill's metadata."""
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        dur = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        src = "".join(cell.get("source", "")).strip()
        if dur is not None:
            out.append((src, float(dur)))
    return out


def extraction_phases(report_root: Path) -> dict[str, float]:
    """Seconds of notebook 03's habitat, extraction and output cells."""
    phases = {"habitats": 0.0, "extraction": 0.0, "outputs": 0.0}
    for src, sec in cell_durations(report_root / "notebooks" / "03_feature_extraction.ipynb"):
        if "cohort_habitats(" in src:
            phases["habitats"] += sec
        elif "run_extraction(" in src:
            phases["extraction"] += sec
        elif "write_extraction_outputs(" in src:
            phases["outputs"] += sec
    return phases


def unit_stats(report_root: Path) -> dict:
    """Units and summed per-unit compute seconds from the extraction provenance record."""
    for path in report_root.rglob("extraction.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "units" in rec:
            secs = [u.get("seconds") or 0.0 for u in rec["units"]]
            return {"units": len(secs), "unit_seconds": sum(secs), "unit_counts": rec.get("unit_counts")}
    return {}


def dir_size_mib(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total / MiB


def serve_dask(addr_file: str) -> int:
    """Child-process mode: start a LocalCluster (2 workers x 1 thread), publish its address, run until stdin closes."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    Path(addr_file).write_text(cluster.scheduler_address)
    sys.stdin.read()
    cluster.close()
    return 0


# --------------------------------------------------------------------------------------------- one size
def _report_root(cfg_path: Path) -> Path:
    from helpers.settings.study import load_config  # read-only use of the package (the runner's own resolution of reports_dir)

    return load_config(cfg_path).report_root


def run_size(n: int, root: Path, seed: int, steps_filter: list[str] | None, dask: bool, timeout: float | None,
             reuse: bool, results: dict, save, dask_only: bool = False) -> None:
    study = root / str(n)
    logs = root / "logs" / str(n)
    logs.mkdir(parents=True, exist_ok=True)
    res = results.setdefault(str(n), {})
    py = sys.executable
    want = lambda name: steps_filter is None or name in steps_filter  # noqa: E731

    def record(name: str, m: dict) -> None:
        res[name] = m
        save()
        print(f"  N={n:5d} {name:45s} {m['status']:8s} {m['seconds']:8.1f} s  tree {m['peak_tree_mib']:7.0f} MiB  "
              f"largest {m['peak_single_mib']:6.0f} MiB  load {m['load_mean']:.1f}", flush=True)

    if dask_only:
        cfg_path = study / "study.yaml"
        if (res.get("feature_extraction") or {}).get("status") == "ok" and cfg_path.is_file():
            run_dask(n, study, yaml.safe_load(cfg_path.read_text()), logs, timeout, record)
        else:
            print(f"  N={n}: --dask-only needs a finished process-pool feature_extraction of that size first", flush=True)
        return
    if want("simulate") and not (reuse and (study / "study.yaml").is_file()):
        if study.exists():
            shutil.rmtree(study)
        m = measure([py, "-m", "helpers", "simulate", "--out", str(study), "--patients", str(n), "--seed", str(seed)],
                    REPO, logs / "simulate.log", timeout=timeout)
        m["study_mib"] = dir_size_mib(study)
        record("simulate", m)
        if m["status"] != "ok":
            return
    cfg_path = study / "study.yaml"
    if not cfg_path.is_file():
        print(f"  N={n}: no simulated study at {study}; run with 'simulate' in --steps", flush=True)
        return
    if want("validate"):
        record("validate", measure([py, "-m", "helpers", "validate", "--config", str(cfg_path)], REPO, logs / "validate.log",
                                   timeout=timeout))
    cfg = yaml.safe_load(cfg_path.read_text())
    report_root = _report_root(cfg_path)
    for step in cfg["steps"]:
        name = step["name"]
        if not want(name):
            continue
        m = measure([py, "-m", "helpers", "run", "--config", str(cfg_path), "--step", name], REPO, logs / f"{name}.log", timeout=timeout)
        cells = []
        for nb in sorted((report_root / "notebooks").glob(Path(step["notebook"]).stem + "*.ipynb")):
            cells += cell_durations(nb)
        if cells:
            src, sec = max(cells, key=lambda c: c[1])
            m["longest_cell"] = {"seconds": sec, "source": src.splitlines()[0][:100] if src else ""}
        if name == "feature_extraction":
            m["phases"] = extraction_phases(report_root)
            m.update(unit_stats(report_root))
        record(name, m)
        if m["status"] != "ok":
            print(f"  N={n}: step {name} {m['status']}; later steps (which may depend on it) are not run", flush=True)
            break
    fe = res.get("feature_extraction")
    if dask and want("feature_extraction") and fe and fe["status"] == "ok":
        run_dask(n, study, cfg, logs, timeout, record)


def run_dask(n: int, study: Path, cfg: dict, logs: Path, timeout: float | None, record) -> None:
    # Work-around (helpers/pipeline.py, _parameters): the runner passes config_path="study.yaml" to every notebook, so a
    # config file of any other name is ignored by the notebooks (they read the study folder's study.yaml). The Dask copy
    # therefore lives in its own folder as study.yaml, with absolute input paths.
    dask_dir = study / "dask_run"
    if dask_dir.exists():
        shutil.rmtree(dask_dir)  # fresh reports folder = cold extraction cache
    dask_dir.mkdir()
    dcfg = json.loads(json.dumps(cfg))
    for key in ("manifest", "patient_table", "acquisition_headers"):
        if dcfg.get(key):
            dcfg[key] = str((study / dcfg[key]).resolve())
    dcfg["reports_dir"] = "reports"
    addr_file = dask_dir / "dask_address.txt"
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, __file__, "--serve-dask", str(addr_file)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=open(logs / "dask_cluster.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not addr_file.is_file() or not addr_file.read_text().strip():
            if server.poll() is not None or time.perf_counter() - t0 > 120:
                print(f"  N={n}: the Dask cluster did not start (see {logs / 'dask_cluster.log'})", flush=True)
                return
            time.sleep(0.2)
        startup = time.perf_counter() - t0
        dcfg["extraction"]["scheduler_address"] = addr_file.read_text().strip()
        dcfg_path = dask_dir / "study.yaml"
        dcfg_path.write_text(yaml.safe_dump(dcfg, sort_keys=False))
        m = measure([sys.executable, "-m", "helpers", "run", "--config", str(dcfg_path), "--step", "feature_extraction"],
                    REPO, logs / "feature_extraction_dask.log", extra_roots=[server.pid], timeout=timeout)
        m["cluster_startup_s"] = startup
        m["scheduler_address"] = dcfg["extraction"]["scheduler_address"]
        m["phases"] = extraction_phases(_report_root(dcfg_path))
        m.update(unit_stats(_report_root(dcfg_path)))
        record(DASK_STEP, m)
    finally:
        try:
            server.stdin.close()
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGTERM)  # the cluster process group this script started
            server.wait()


# --------------------------------------------------------------------------------------------- analysis
def slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def step_order(results: dict) -> list[str]:
    order: list[str] = []
    for n in sorted(results, key=int):
        for name in results[n]:
            if name not in order:
                order.append(name)
    fixed = [s for s in (*PSEUDO_STEPS,) if s in order]
    rest = [s for s in order if s not in fixed and s != DASK_STEP]
    if DASK_STEP in order:
        pos = rest.index("feature_extraction") + 1 if "feature_extraction" in rest else len(rest)
        rest.insert(pos, DASK_STEP)
    return fixed + rest


def ok_series(results: dict, step: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for n in sorted(results, key=int):
        m = results[n].get(step)
        if m and m["status"] == "ok":
            xs.append(int(n))
            ys.append(m[key])
    return xs, ys


def plots(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullFormatter for the minor ticks)

    steps = step_order(results)
    for key, path, ylabel, title in (("seconds", FIG_TIME, "wall time (s)", "Wall time per step vs cohort size"),
                                     ("peak_tree_mib", FIG_MEM, "peak RSS of process tree (MiB)", "Peak memory per step vs cohort size")):
        fig, ax = plt.subplots(figsize=(10, 5))
        for step in steps:
            xs, ys = ok_series(results, step, key)
            if xs:
                s = slope(xs, ys)
                label = step + (f" (slope {s:.2f})" if s is not None else "")
                ax.plot(xs, ys, marker="o", label=label, linestyle="--" if "Dask" in step else "-")
        if key == "seconds":
            ns = sorted(int(n) for n in results)
            if len(ns) >= 2:
                ref = [ns[0], ns[-1]]
                ax.plot(ref, [10.0 * r / ns[0] for r in ref], color="grey", linewidth=0.8, linestyle=":",
                        label="slope 1 (linear), reference")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("patients (N)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ns = sorted(int(n) for n in results)
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def machine_facts() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    pkgs = []
    for p in ("numpy", "pandas", "SimpleITK", "pyradiomics", "scikit-learn", "dask", "distributed", "papermill", "psutil"):
        try:
            pkgs.append(f"{p} {version(p)}")
        except PackageNotFoundError:
            pass
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}; {', '.join(pkgs)}")


def fmt(v: float | None, nd: int = 0) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def write_doc(results: dict, meta: dict) -> str:
    sizes = sorted(results, key=int)
    steps = step_order(results)
    lines = [BEGIN, ""]
    lines.append(f"Measured {meta.get('date', dt.date.today().isoformat())} on {machine_facts()}.")
    lines.append("")
    lines.append("Command: `" + meta.get("command", "nice -n 10 .venv/bin/python bench/bench_scale.py") + "` "
                 f"(simulation seed {meta.get('seed')}, scratch folder `{meta.get('root')}/<N>`; the raw numbers are in "
                 f"`{meta.get('root')}/results.json`).")
    lines.append("")
    lines.append(
        "Each step is its own `python -m helpers run --config study.yaml --step NAME` process (runner start-up, input "
        "hashing and the papermill kernel included), on the study.yaml that `python -m helpers simulate` writes (MR only, "
        "`ibsi` preset, tumour + 5 mm ring + K=3 habitats, second reader for the training cohort, 2 extraction workers). "
        "`simulate` and `validate` are the CLI commands of the same names. Peak memory is the maximum over 0.2 s samples "
        "of the summed RSS of the command's whole process tree (runner, notebook kernel, extraction workers; shared "
        "library pages are counted once per process, so the sum overstates the physical use a little), and the largest "
        "single process. The runner validates every image on its first run of a study (it then records a stamp), so "
        "`acquisition_qc` includes that full check.")
    lines.append("")
    lines.append(
        "**Shared machine**: every command ran under `nice -n 10`. The load column is the mean (and max) 1-minute load average "
        "sampled during the step; other work at a higher priority takes CPU first, so absolute times are inflated whenever the "
        "load is above ~2 (see the notes below for what else ran). The growth with N and the memory are the informative parts.")
    lines.append("")
    # main table
    lines.append("| step | N | status | wall (s) | peak tree RSS (MiB) | largest process (MiB) | processes | load avg (mean / max) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for step in steps:
        for n in sizes:
            m = results[n].get(step)
            if not m:
                continue
            lines.append(f"| {step} | {n} | {m['status']} | {m['seconds']:.1f} | {m['peak_tree_mib']:.0f} | {m['peak_single_mib']:.0f} | "
                         f"{m['max_procs']} | {m['load_mean']:.1f} / {m['load_max']:.1f} |")
    lines.append("")
    # summary with slopes
    head = "| step | " + " | ".join(f"wall s N={n}" for n in sizes) + " | time slope | " + \
        " | ".join(f"peak MiB N={n}" for n in sizes) + " | memory slope | memory ratio largest/smallest N |"
    lines.append("Growth: slope of log(wall time) and log(peak tree RSS) against log(N), least squares over the sizes that ran "
                 "(1 = linear; a step whose fixed cost dominates has a slope well below 1 at small N).")
    lines.append("")
    lines.append(head)
    lines.append("|" + "---|" * (2 * len(sizes) + 4))
    for step in steps:
        row = [step]
        for n in sizes:
            m = results[n].get(step)
            row.append(fmt(m["seconds"], 1) if m and m["status"] == "ok" else ("not run" if not m else m["status"]))
        xs, ys = ok_series(results, step, "seconds")
        row.append(fmt(slope(xs, ys), 2))
        for n in sizes:
            m = results[n].get(step)
            row.append(fmt(m["peak_tree_mib"], 0) if m and m["status"] == "ok" else "-")
        xm, ym = ok_series(results, step, "peak_tree_mib")
        row.append(fmt(slope(xm, ym), 2))
        row.append(f"{ym[-1] / ym[0]:.2f}x for {xm[-1] / xm[0]:.0f}x patients" if len(xm) >= 2 else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"![wall time per step vs N]({FIG_TIME.name}) ![peak memory per step vs N]({FIG_MEM.name})")
    lines.append("")
    # extraction phases and Dask comparison
    lines.append("Feature extraction in detail (notebook 03 cell times from papermill; unit seconds = summed compute time of "
                 "the units, from `provenance/extraction.json`). The Dask run uses a fresh reports folder (cold cache) and a "
                 "`distributed.LocalCluster` with 2 worker processes x 1 thread, started in its own process before the step "
                 "(start-up time not included in the wall time; its processes are included in the memory).")
    lines.append("")
    lines.append("| N | executor | step wall (s) | habitats cell (s) | extraction cell (s) | outputs cell (s) | units (failed) | "
                 "unit seconds | "
                 "unit seconds / extraction cell | peak tree RSS (MiB) | largest process (MiB) | load avg |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for step, label in (("feature_extraction", "process pool, 2 workers"), (DASK_STEP, "Dask LocalCluster 2x1")):
            m = results[n].get(step)
            if not m or m["status"] != "ok":
                continue
            ph = m.get("phases", {})
            eff = m["unit_seconds"] / ph["extraction"] if m.get("unit_seconds") and ph.get("extraction") else None
            lines.append(f"| {n} | {label} | {m['seconds']:.1f} | {fmt(ph.get('habitats'), 1)} | {fmt(ph.get('extraction'), 1)} | "
                         f"{fmt(ph.get('outputs'), 1)} | {m.get('units', '-')} ({(m.get('unit_counts') or {}).get('failed', '-')}) | "
                         f"{fmt(m.get('unit_seconds'), 1)} | {fmt(eff, 2)} | "
                         f"{m['peak_tree_mib']:.0f} | {m['peak_single_mib']:.0f} | {m['load_mean']:.1f} |")
    lines.append("")
    for note in meta.get("notes", []):
        lines.append(note)
        lines.append("")
    lines.append(END)
    block = "\n".join(lines)
    text = DOC.read_text() if DOC.is_file() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    DOC.write_text(text)
    return block


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000], help="cohort sizes (default 50 200 1000)")
    ap.add_argument("--quick", action="store_true", help="one cohort of 40 patients in <root>-quick; docs untouched unless --write-doc")
    ap.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    ap.add_argument("--root", default="/tmp/bench_scale", help="scratch folder (default /tmp/bench_scale)")
    ap.add_argument("--steps", nargs="+", help="only these steps (simulate, validate and study steps); default all")
    ap.add_argument("--dask-sizes", type=int, nargs="*", default=[50, 200], help="sizes that also run extraction on Dask (default 50 200)")
    ap.add_argument("--timeout", type=float, help="per-command time limit in seconds (the command's process group is stopped)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing simulated study of that size (do not re-simulate)")
    ap.add_argument("--dask-only", action="store_true", help="only the Dask extraction run (after the process-pool run of that size)")
    ap.add_argument("--doc-only", action="store_true", help="only re-write the doc section and plots from results.json")
    ap.add_argument("--write-doc", action="store_true", help="with --quick: write the doc section anyway")
    ap.add_argument("--note", action="append", default=[], help="paragraph appended to the doc section (repeatable; stored)")
    ap.add_argument("--serve-dask", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_dask:
        return serve_dask(args.serve_dask)
    if os.nice(0) < 10:
        os.nice(10 - os.nice(0))  # never compete with the user's own runs at normal priority
    root = Path(args.root + ("-quick" if args.quick else ""))
    sizes = [40] if args.quick else args.sizes  # 40: the signature's 5-fold stratified LASSO needs >= 5 training patients per class
    root.mkdir(parents=True, exist_ok=True)
    res_path = root / "results.json"
    stored = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results, meta = stored.get("results", {}), stored.get("meta", {})
    if args.note:
        meta["notes"] = args.note
        if args.doc_only:
            res_path.write_text(json.dumps({"results": results, "meta": meta}, indent=1))  # keep the notes for later re-writes

    def save() -> None:
        res_path.write_text(json.dumps({"results": results, "meta": meta}, indent=1))

    if not args.doc_only:
        meta.update({"seed": args.seed, "root": str(root), "date": dt.date.today().isoformat()})
        cmds = meta.setdefault("commands", [])
        cmd = "nice -n 10 .venv/bin/python bench/bench_scale.py " + " ".join(sys.argv[1:])
        if cmd not in cmds:
            cmds.append(cmd)
        meta["command"] = "`; `".join(cmds)
        for n in sizes:
            print(f"== N = {n} patients ==", flush=True)
            run_size(n, root, args.seed, args.steps, args.quick or n in (args.dask_sizes or []), args.timeout, args.reuse, results, save,
                     dask_only=args.dask_only)
        save()
    if results and (not args.quick or args.write_doc):
        plots(results)
        print(write_doc(results, meta))
    else:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
