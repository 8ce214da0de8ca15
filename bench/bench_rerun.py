"""Benchmark: a second `python -m helpers run` with nothing changed vs the first (cold) run.

Target (issue #2): the unchanged re-run takes under 10% of the cold run's time.
Both are measured side by side in one invocation, on the default STS study, as
the user runs them (a fresh `python -m helpers run` process each time), with a
temporary reports folder so the user's reports/ is left alone.

Usage: python bench/bench_rerun.py [--warm-repeats 3]
Writes the result table into docs/benchmarks.md (section "runner re-run").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_rerun:begin -->", "<!-- bench_rerun:end -->"


def _study_copy(tmp: Path, steps: list[str] | None) -> Path:
    data = yaml.safe_load((REPO / "study.yaml").read_text())
    if steps:
        data["steps"] = [s for s in data["steps"] if s["name"] in steps]
    for key in ("manifest", "patient_table", "acquisition_headers"):
        data[key] = str(REPO / data[key])
    data["reports_dir"] = str(tmp / "reports")
    for step in data["steps"]:
        step["notebook"] = str(REPO / step["notebook"])
    cfg = tmp / "study.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def _timed_run(cfg: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "helpers", "run", "--config", str(cfg)], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm-repeats", type=int, default=3)
    ap.add_argument("--steps", nargs="*", default=["acquisition_qc"],
                    help="steps to run (default: acquisition_qc, minutes; pass no value for the whole study, about an hour cold)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _study_copy(Path(tmp), args.steps)
        cold = _timed_run(cfg)
        warm = [_timed_run(cfg) for _ in range(args.warm_repeats)]
    warm_med = statistics.median(warm)
    ratio = warm_med / cold
    table = "\n".join([
        BEGIN,
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"default STS study (51 patients x 3 series), steps: {', '.join(args.steps) if args.steps else 'all'}; "
        "each run is a fresh `python -m helpers run` process.",
        "",
        "| run | wall time (s) |",
        "|---|---|",
        f"| cold (empty reports/) | {cold:.2f} |",
        f"| unchanged re-run, median of {len(warm)} ({', '.join(f'{w:.2f}' for w in warm)}) | {warm_med:.2f} |",
        f"| **ratio re-run / cold** | **{100 * ratio:.1f}%** (target < 10%) |",
        END,
    ])
    text = DOC.read_text() if DOC.is_file() else "# Benchmarks\n\nResults of the scripts under `bench/`; ratios are measured side by side in one run.\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        text += f"\n## Runner re-run (`bench/bench_rerun.py`)\n\n{table}\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(table)
    return 0 if ratio < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
