"""Benchmark: the default STS study run cold, step by step, with the machine load recorded.

What a researcher trying the toolkit waits for (issue 17: the default study in 20 minutes on 2 cores): a fresh reports
folder (temporary; the user's reports/ is left alone), every configured step as its own
``python -m helpers run --config ... --step NAME`` process, in the configured order. The wall time of each step and
the 1-minute load average (sampled every 5 s while it runs; above ~2 on 2 cores other work was competing) are
recorded, plus the total. The environment setup (``make venv``) is not included.

Usage: python bench/bench_study.py [--steps acquisition_qc segmentation ...]
Writes the table into docs/benchmarks.md (section "bench_study") and the raw numbers to /tmp/bench_study.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section
from bench_rerun import _study_copy

BEGIN, END = "<!-- bench_study:begin -->", "<!-- bench_study:end -->"


class _LoadSampler(threading.Thread):
    """The 1-minute load average every ``period`` seconds until stopped."""

    def __init__(self, period: float = 5.0):
        super().__init__(daemon=True)
        self.period, self.samples, self._done = period, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.period):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> list[float]:
        self._done.set()
        self.join()
        return self.samples


def _run_step(cfg: Path, step: str) -> dict:
    sampler = _LoadSampler()
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", str(cfg), "--step", step], check=False,
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    load = sampler.stop()
    return {"step": step, "wall_s": round(wall, 1), "exit": proc.returncode, "load_mean": round(sum(load) / len(load), 2),
            "load_max": round(max(load), 2), "tail": proc.stdout[-400:] + proc.stderr[-400:]}


def _markdown(rows: list[dict], command: str) -> str:
    total = sum(r["wall_s"] for r in rows)
    lines = [BEGIN, "", (f"Measured {dt.datetime.now():%Y-%m-%d %H:%M} on {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}. Command: `{command}` (fresh temporary reports folder; each step its own runner "
             "process, notebook kernel included)."), "",
             "| step | wall time | status | load average (mean / max) |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['wall_s'] / 60:.1f} min ({r['wall_s']:.0f} s) | {'ok' if r['exit'] == 0 else 'failed'} | "
              f"{r['load_mean']} / {r['load_max']} |" for r in rows]
    lines += [f"| **total** | **{total / 60:.1f} min** | | |", "", END]
    return "\n".join(lines)


def _write_docs(section: str) -> None:
    write_section(section, BEGIN, END, "Default study, cold, step by step (`bench/bench_study.py`)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", nargs="*", default=None, help="steps to run (default: every configured step)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="copy the run's reports folder here afterwards (e.g. to compare tables with another commit)")
    args = ap.parse_args()
    configured = [s["name"] for s in yaml.safe_load((REPO / "study.yaml").read_text())["steps"]]
    steps = [s for s in configured if args.steps is None or s in args.steps]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _study_copy(Path(tmp), steps)
        for step in steps:
            rows.append(_run_step(cfg, step))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "tail"}), flush=True)
            if rows[-1]["exit"] != 0:
                print(rows[-1]["tail"], file=sys.stderr)
                break
        if args.keep is not None:
            shutil.copytree(Path(tmp) / "reports", args.keep, dirs_exist_ok=True)
    Path("/tmp/bench_study.json").write_text(json.dumps(rows, indent=2))
    _write_docs(_markdown(rows, "python " + " ".join(["bench/bench_study.py", *sys.argv[1:]])))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
