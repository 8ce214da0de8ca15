"""Benchmark: the extraction pipeline against a plain sequential pyradiomics loop.

Measured side by side in one invocation, on the same units (seed1762 preset on
the tumours of the first N STS patients, CT + PET + MR_T1, native grids):

- plain loop: ``RadiomicsFeatureExtractor(params).execute(image, mask)`` per unit;
- pipeline, 1 worker, cold cache (overhead target <= 5%);
- pipeline, 2 workers, cold cache (speed-up target >= 1.8x on 2 cores);
- pipeline, warm re-run (target <= 5% of the cold 1-worker run);
- peak resident memory per worker process.

Each mode runs in its own process so memory peaks are not mixed.
Usage: python bench/bench_extraction.py [--patients 10]
Writes the table into docs/benchmarks.md (section "extraction").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_extraction:begin -->", "<!-- bench_extraction:end -->"


def _units(n_patients: int):
    from helpers.features.extraction import ExtractionUnit
    from helpers.features.pyradiomics import load_preset, merge_settings
    from helpers.settings.study import load_config

    cfg = load_config(REPO / "study.yaml")
    preset = load_preset("seed1762")
    units = []
    for i in range(1, n_patients + 1):
        patient = f"STS_{i:03d}"
        for series in ("CT", "PET", "MR_T1"):
            units.append(ExtractionUnit(
                patient=patient, cohort="bench", series=series, roi="tumour", preset="seed1762",
                image_path=str(REPO / "data" / "sts" / patient / f"{series}_image.nii.gz"),
                mask_path=str(REPO / "data" / "sts" / patient / f"{series}_mask.nii.gz"),
                roi_kind="tumour", params=merge_settings(preset, cfg.extraction.series_settings.get(series)), preprocessing={},
            ))
    return units


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _mode(mode: str, n_patients: int, cache: str) -> dict:
    units = _units(n_patients)
    if mode == "plain":
        import logging

        import radiomics
        import SimpleITK as sitk
        from radiomics import featureextractor

        radiomics.setVerbosity(logging.ERROR)
        t0 = time.perf_counter()
        per_unit = []
        for u in units:
            t = time.perf_counter()
            featureextractor.RadiomicsFeatureExtractor(u.params).execute(sitk.ReadImage(u.image_path), sitk.ReadImage(u.mask_path))
            per_unit.append((u.series, time.perf_counter() - t))
        return {"seconds": time.perf_counter() - t0, "peak_mb": _maxrss_mb(resource.RUSAGE_SELF), "per_unit": per_unit}
    from helpers.features.extraction import run_extraction

    workers = {"pipeline1": 1, "pipeline2": 2, "warm": 1}[mode]
    t0 = time.perf_counter()
    result = run_extraction(units, cache, workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    assert result.status_counts()["failed"] == 0, result.failures_table()
    peak = _maxrss_mb(resource.RUSAGE_CHILDREN) if workers > 1 else _maxrss_mb(resource.RUSAGE_SELF)
    return {"seconds": seconds, "peak_mb": peak, "status": result.status_counts()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(_mode(args.mode, args.patients, args.cache)))
        return 0

    def run(mode: str, cache: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--patients", str(args.patients), "--cache", cache],
                             check=True, capture_output=True, text=True, cwd=REPO)
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        plain = run("plain", "")
        one = run("pipeline1", f"{tmp}/c1")
        two = run("pipeline2", f"{tmp}/c2")
        warm = run("warm", f"{tmp}/c1")
    overhead = one["seconds"] / plain["seconds"] - 1
    speedup = plain["seconds"] / two["seconds"]
    warm_ratio = warm["seconds"] / one["seconds"]
    by_series: dict[str, list[float]] = {}
    for series, sec in plain["per_unit"]:
        by_series.setdefault(series, []).append(sec)
    n_units = 3 * args.patients
    lines = [
        BEGIN,
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{n_units} units = seed1762 (1762 features) on the tumours of STS_001..STS_{args.patients:03d}, CT + PET + MR_T1, native grids. "
        "Each mode runs in a fresh process; times include process start-up of the pool workers.",
        "",
        "| mode | wall time (s) | ratio | target | peak RSS per process (MB) |",
        "|---|---|---|---|---|",
        f"| plain sequential pyradiomics loop | {plain['seconds']:.1f} | 1.00 | reference | {plain['peak_mb']:.0f} |",
        f"| pipeline, 1 worker, cold cache | {one['seconds']:.1f} | overhead {100 * overhead:+.1f}% | <= +5% | {one['peak_mb']:.0f} |",
        f"| pipeline, 2 workers, cold cache | {two['seconds']:.1f} | speed-up {speedup:.2f}x | >= 1.8x | {two['peak_mb']:.0f} (largest worker) |",
        f"| pipeline, warm re-run | {warm['seconds']:.2f} | {100 * warm_ratio:.1f}% of cold | <= 5% | {warm['peak_mb']:.0f} |",
        "",
        "Per-unit time of seed1762 on the STS tumours (plain loop, seconds):",
        "",
        "| series | units | median | min | max |",
        "|---|---|---|---|---|",
        *[f"| {s} | {len(v)} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} |" for s, v in by_series.items()],
        END,
    ]
    table = "\n".join(lines)
    text = DOC.read_text() if DOC.is_file() else "# Benchmarks\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        text += f"\n## Extraction (`bench/bench_extraction.py`)\n\n{table}\n"
    DOC.write_text(text)
    print(table)
    ok = overhead <= 0.05 and speedup >= 1.8 and warm_ratio <= 0.05
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
