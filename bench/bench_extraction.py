"""Benchmark: the extraction pipeline against a plain sequential pyradiomics loop.

Measured side by side in one invocation, on the same units (seed1762 preset on
the tumours of the first N STS patients, CT + PET + MR_T1, native grids):

- plain loop: ``RadiomicsFeatureExtractor(params).execute(image, mask)`` per unit;
- pipeline, 1 worker, cold cache (overhead target <= 5%);
- pipeline, 2 workers, cold cache (speed-up target >= 1.8x on 2 cores);
- pipeline, warm re-run (target <= 5% of the cold 1-worker run);
- peak resident memory per worker process.

Each mode runs in its own process so memory peaks are not mixed.
Usage: python bench/bench_extraction.py [--patients 10]; python bench/bench_extraction.py --mix [--patients 4] [--repeats 2]
Writes the table into docs/benchmarks.md (section "extraction").

``--mix`` measures instead the exact faster extraction (issue 17) on the default study's real unit mix: every ROI
and reader that ``study.yaml`` plans for the first N patients (tumour, 5 mm ring, perturbed second reader of the
training patients, habitats on CT and PET), per series. Plain loop: pyradiomics' own ``execute`` per unit on the same prepared image and
mask (pyradiomics unpatched, preparation untimed); engine: ``run_extraction`` with 1 worker (equal cores). Both
write their features, and the run checks them for bitwise equality. Table between the ``bench_extraction_mix``
markers.
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
MIX_BEGIN, MIX_END = "<!-- bench_extraction_mix:begin -->", "<!-- bench_extraction_mix:end -->"


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


def _mix_study(n_patients: int):
    """study.yaml's config and its manifest cut to the first ``n_patients`` patients."""
    from helpers.data.manifest import load_study
    from helpers.settings.study import load_config

    cfg = load_config(REPO / "study.yaml")
    manifest, _ = load_study(cfg)
    patients = sorted(manifest["patient"].unique())[:n_patients]
    return cfg, manifest[manifest["patient"].isin(patients)]


def _fit_habitats(n_patients: int, workdir: str) -> None:
    """Habitat maps of the benchmark's patients, as the study's step makes them but fitted on these patients only.

    The study fits on its training cohort (more patients than a benchmark runs); here the study's habitat settings
    (series, K range, sampling, seed) are fitted on the benchmark's patients, so the unit mix has the study's kinds
    of habitat ROIs.
    """
    import SimpleITK as sitk

    from helpers.imaging.habitats import HabitatClusterer, habitat_map, voxel_matrix
    from helpers.steps.feature_extraction import _patient_inputs

    cfg, manifest = _mix_study(n_patients)
    hc = cfg.extraction.habitats
    inputs = {p: _patient_inputs(manifest, p, hc.series, cfg.geometry_tolerance) for p in sorted(manifest["patient"].unique())}
    clusterer = HabitatClusterer(k_range=hc.k_range, max_voxels_per_patient=hc.max_voxels_per_patient, random_state=cfg.seed)
    clusterer.fit([voxel_matrix(*pair) for pair in inputs.values()])
    maps = {}
    for patient, (images, mask) in inputs.items():
        maps[patient] = str(Path(workdir, f"habitats_{patient}.nii.gz"))
        sitk.WriteImage(habitat_map(images, mask, clusterer), maps[patient])
    Path(workdir, "habitats.json").write_text(json.dumps({"map_paths": maps, "k": int(clusterer.k_)}))


def _mix_units(n_patients: int, workdir: str):
    """The units study.yaml plans for its first ``n_patients`` patients, habitat ROIs from :func:`_fit_habitats`."""
    from types import SimpleNamespace

    from helpers.features.extraction import plan_units

    cfg, manifest = _mix_study(n_patients)
    habitats = SimpleNamespace(**json.loads(Path(workdir, "habitats.json").read_text()))
    return plan_units(manifest, cfg, habitats)


def _mix_mode(mode: str, n_patients: int, workdir: str, series: str) -> dict:
    """One side of ``--mix`` on one series: wall and CPU seconds; the features go to ``{workdir}/{mode}_{series}.json``.

    Both sides run with one BLAS and one SimpleITK thread (as the engine's pool workers): equal cores, and CPU
    seconds that mean one core's work. The engine starts from an empty cache each time.
    """
    from helpers.features.extraction import _limit_threads

    _limit_threads()
    units = [u for u in _mix_units(n_patients, workdir) if u.series == series]
    if mode == "mix_plain":
        features, wall, cpu = _plain_features(units)
    else:
        features, wall, cpu = _timed(_engine_features, units, tempfile.mkdtemp(dir=workdir))
    Path(workdir, f"{mode}_{series}.json").write_text(json.dumps(features))
    return {"units": len(units), "wall": wall, "cpu": cpu}


def _timed(func, *args):
    """``func(*args)`` with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = func(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _plain_features(units) -> tuple[list[dict], float, float]:
    """pyradiomics alone, timed: a new extractor and ``execute`` per unit, inputs prepared (untimed) by the engine's code."""
    import logging

    import radiomics
    from radiomics import featureextractor, imageoperations

    from helpers.features import extraction

    radiomics.setVerbosity(logging.ERROR)
    inputs = [_prepared_or_none(extraction, u) for u in units]
    assert imageoperations.getBinEdges.__module__ == "radiomics.imageoperations", "pyradiomics is patched"

    def loop():
        return [{} if unit is None else {k: float(v) for k, v in featureextractor.RadiomicsFeatureExtractor(unit[2]).execute(*unit[:2]).items()
                                         if not k.startswith("diagnostics_")} for unit in inputs]

    return _timed(loop)


def _prepared_or_none(extraction, unit):
    """The unit's image, mask and parameters as the engine prepares them; None for a habitat absent by design."""
    from helpers.errors import EmptyROIError

    try:
        return extraction._prepare(unit, extraction.read_image(unit.image_path))[:3]
    except EmptyROIError:
        return None


def _engine_features(units, cache: str) -> list[dict]:
    from helpers.features.extraction import run_extraction

    result = run_extraction(units, cache, workers=1, progress=False)
    assert result.status_counts()["failed"] == 0, result.failures_table()
    return [rec["features"] for rec in result.records]


def _mix_main(n_patients: int, repeats: int) -> int:
    """Plain loop and engine, alternating per series in fresh processes, ``repeats`` times: the fastest of each is
    kept (the machine may be shared; the minimum is the least disturbed run)."""
    def run(mode: str, workdir: str, series: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--patients", str(n_patients), "--cache", workdir, "--series", series],
                             check=False, capture_output=True, text=True, cwd=REPO)
        if out.returncode:
            raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    best: dict[str, dict[str, dict]] = {"mix_plain": {}, "mix_engine": {}}
    with tempfile.TemporaryDirectory() as tmp:
        _fit_habitats(n_patients, tmp)
        units = _mix_units(n_patients, tmp)
        rois = sorted({u.roi for u in units})
        series_order = list(dict.fromkeys(u.series for u in units))
        same = True
        for _ in range(repeats):
            for series in series_order:
                for mode, seen in best.items():
                    t = run(mode, tmp, series)
                    old = seen.get(series, t)
                    seen[series] = {"units": t["units"], "wall": min(t["wall"], old["wall"]), "cpu": min(t["cpu"], old["cpu"])}
                same &= Path(tmp, f"mix_plain_{series}.json").read_text() == Path(tmp, f"mix_engine_{series}.json").read_text()
    plain, engine = best["mix_plain"], best["mix_engine"]
    rows, totals = [], {"plain": 0.0, "engine": 0.0, "plain_cpu": 0.0, "engine_cpu": 0.0, "units": 0}
    for series in plain:
        p, e = plain[series], engine[series]
        totals.update(plain=totals["plain"] + p["wall"], engine=totals["engine"] + e["wall"], units=totals["units"] + p["units"],
                      plain_cpu=totals["plain_cpu"] + p["cpu"], engine_cpu=totals["engine_cpu"] + e["cpu"])
        rows.append(f"| {series} | {p['units']} | {p['wall']:.1f} | {e['wall']:.1f} | {p['wall'] / e['wall']:.2f}x | {p['cpu'] / e['cpu']:.2f}x |")
    ratio = totals["plain"] / totals["engine"]
    lines = [
        MIX_BEGIN,
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"the {totals['units']} units study.yaml plans for its first {n_patients} patients (seed1762; ROIs {', '.join(rois)}; "
        "perturbed second reader of the training patients; habitats fitted on these patients with the study's settings), "
        "one core each side "
        "(one BLAS and one SimpleITK thread). "
        "Plain: `RadiomicsFeatureExtractor(params).execute` per unit on the prepared image and mask (preparation untimed). "
        "Engine: `run_extraction(workers=1)`, cold cache, everything included (reading, masks, preprocessing, cache writes). "
        f"Fastest of {repeats} alternating runs per side and series; CPU ratios are less sensitive to other load on the "
        "machine (other jobs shared it).",
        "",
        "| series | units | plain (s) | engine (s) | speed-up (wall) | speed-up (CPU) |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| all | {totals['units']} | {totals['plain']:.1f} | {totals['engine']:.1f} | {ratio:.2f}x | "
        f"{totals['plain_cpu'] / totals['engine_cpu']:.2f}x |",
        "",
        f"Values identical (every feature of every unit, bit for bit): {'yes' if same else 'NO'}.",
        MIX_END,
    ]
    table = "\n".join(lines)
    text = DOC.read_text()
    if MIX_BEGIN in text:
        text = text[: text.index(MIX_BEGIN)] + table + text[text.index(MIX_END) + len(MIX_END):]
    else:
        text = text.replace(END, f"{END}\n\nExact faster extraction on the study's unit mix (`--mix`, issue 17):\n\n{table}", 1)
    DOC.write_text(text)
    print(table)
    return 0 if same else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--series", help=argparse.SUPPRESS)
    ap.add_argument("--mix", action="store_true", help="plain pyradiomics vs the engine on the study's unit mix (issue 17)")
    ap.add_argument("--repeats", type=int, default=2, help="with --mix: alternating runs per side, fastest kept")
    args = ap.parse_args()
    if args.mode:
        if args.mode.startswith("mix_"):
            print(json.dumps(_mix_mode(args.mode, args.patients, args.cache, args.series)))
        else:
            print(json.dumps(_mode(args.mode, args.patients, args.cache)))
        return 0
    if args.mix:
        return _mix_main(args.patients, args.repeats)

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
