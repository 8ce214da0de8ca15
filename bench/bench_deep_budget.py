"""Benchmark: validation quality per minute of CPU training of notebook 02's networks on the default STS study.

For each network the default study trains (the DynUNet segmentation of CT, the super-resolution GAN of MR_T1), this
trains once with validation after every epoch, on the study's own training patients and validation split, and
records the wall time at each epoch end (validation included) with the validation quality reached (Dice; PSNR and
SSIM against trilinear interpolation). The table gives the curve a time budget is chosen from: the quality a budget of
N minutes buys on this machine. Validating after every epoch costs more than training on CPU, so a run with
``validate_every`` > 1 spends less time than these minutes for the same epochs.

Usage: python bench/bench_deep_budget.py [--sr-epochs 16] [--seg-epochs 24] [--only sr|seg]
Writes the tables into docs/benchmarks.md (section "deep_budget") and the raw numbers to /tmp/bench_deep_budget.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section

BEGIN, END = "<!-- bench_deep_budget:begin -->", "<!-- bench_deep_budget:end -->"


def _load() -> float:
    return os.getloadavg()[0]


def _study():
    import pandas as pd

    from helpers.settings.study import load_config

    cfg = load_config(REPO / "study.yaml")
    manifest = pd.read_csv(REPO / cfg.manifest)
    manifest["image_path"] = [str(REPO / p) for p in manifest["image"]]
    manifest["mask_path"] = [str(REPO / p) for p in manifest["mask"]]
    return cfg, manifest


def bench_super_resolution(epochs: int) -> dict:
    """The study's SR settings, ``epochs`` epochs, validation every epoch (the split of notebook 02)."""
    from sklearn.model_selection import train_test_split

    from helpers.imaging.deep.super_resolution import train_super_resolution
    from helpers.imaging.io import read_image

    cfg, manifest = _study()
    sr = cfg.super_resolution
    rows = manifest[(manifest["series"] == sr.series) & manifest["cohort"].isin(cfg.training_cohorts)]
    fit_ids, val_ids = train_test_split(list(rows["patient"]), test_size=0.2, random_state=cfg.seed)
    by_patient = rows.set_index("patient")
    train = [read_image(by_patient.loc[p, "image_path"]) for p in fit_ids]
    val = [read_image(by_patient.loc[p, "image_path"]) for p in val_ids]
    warmup = min(sr.settings.warmup_epochs, epochs - 1)
    settings = sr.settings.model_copy(update={"epochs": epochs, "warmup_epochs": warmup, "validate_every": 1})
    load = [_load()]
    result = train_super_resolution(train, val, settings)
    load.append(_load())
    h = result.history
    curve = [{"epoch": int(e), "minutes": round(t / 60, 2), "val_psnr": round(float(p), 3), "val_psnr_gain": round(float(g), 3),
              "val_ssim": round(float(s), 4)}
             for e, t, p, g, s in zip(h["epoch"], result.budget.epoch_ends, h["val_psnr"], h["val_psnr_gain"], h["val_ssim"], strict=True)]
    return {"network": "super-resolution GAN (MR_T1)", "train_patients": len(train), "val_patients": len(val),
            "settings": {k: getattr(settings, k) for k in ("patch_size", "patches_per_volume", "generator_width", "generator_depth",
                                                           "batch_size", "warmup_epochs")},
            "trilinear_psnr": round(float(h["val_psnr_trilinear"].iloc[0]), 3), "trilinear_ssim": round(float(h["val_ssim_trilinear"].iloc[0]), 4),
            "curve": curve, "load": [round(x, 2) for x in load],
            "best_epoch": int(result.best_epoch)}


def bench_segmentation(epochs: int) -> dict:
    """The study's DynUNet settings, ``epochs`` epochs, validation every epoch (training patients, seeded split)."""
    from helpers.imaging.deep.segmentation import train_segmentation

    cfg, manifest = _study()
    seg = cfg.segmentation
    rows = manifest[(manifest["series"] == seg.series) & manifest["cohort"].isin(cfg.training_cohorts)]
    pairs = {r.patient: (r.image_path, r.mask_path) for r in rows.itertuples()}
    settings = seg.model_copy(update={"epochs": epochs, "validate_every": 1, "device": "cpu"})
    load = [_load()]
    with tempfile.TemporaryDirectory() as tmp:  # validation split made by train_segmentation, as notebook 02 does
        result = train_segmentation(pairs, None, settings, tmp)
    load.append(_load())
    h = result.history
    curve = [{"epoch": int(e), "minutes": round(t / 60, 2), "val_dice_mean": round(float(d), 4)}
             for e, t, d in zip(h["epoch"], result.budget.epoch_ends, h["val_dice_mean"])]
    return {"network": "DynUNet segmentation (CT)", "train_patients": len(result.train_cases), "val_patients": len(result.val_cases),
            "settings": {"patch_size": settings.patch_size, "iterations_per_epoch": settings.iterations_per_epoch,
                         "batch_size": settings.batch_size, "filters": settings.network.filters},
            "curve": curve, "load": [round(x, 2) for x in load], "best_epoch": int(result.best_epoch)}


def _markdown(results: list[dict], command: str) -> str:
    import numpy as np
    import torch

    lines = [BEGIN, "",
             (f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"torch {torch.__version__} (CPU, {torch.get_num_threads()} threads), numpy {np.__version__}."), "",
             (f"Command: `{command}`. Each network trains once on the default study's training patients with validation after every "
             "epoch; minutes are wall time at each epoch end, validation included (the 1-minute load average at start and end is "
             "given: other work on the machine inflates the minutes)."), ""]
    for r in results:
        lines += [(f"**{r['network']}**: {r['train_patients']} training and {r['val_patients']} validation patients; "
                  f"settings {json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in r['settings'].items()})}; "
                  f"load {r['load'][0]} / {r['load'][1]}; best epoch {r['best_epoch']}."), ""]
        if "trilinear_psnr" in r:
            lines += [f"Trilinear interpolation: PSNR {r['trilinear_psnr']} dB, SSIM {r['trilinear_ssim']}.", "",
                      "| epoch | minutes | val PSNR (dB) | gain over trilinear (dB) | val SSIM |", "|---|---|---|---|---|"]
            lines += [f"| {c['epoch']} | {c['minutes']} | {c['val_psnr']} | {c['val_psnr_gain']} | {c['val_ssim']} |"
                      for c in r["curve"]]
        else:
            lines += ["| epoch | minutes | val Dice (mean) |", "|---|---|---|"]
            lines += [f"| {c['epoch']} | {c['minutes']} | {c['val_dice_mean']} |" for c in r["curve"]]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _write_docs(section: str) -> None:
    write_section(section, BEGIN, END, "Deep learning: validation quality per minute of CPU training (`bench/bench_deep_budget.py`)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sr-epochs", type=int, default=16)
    parser.add_argument("--seg-epochs", type=int, default=24)
    parser.add_argument("--only", choices=["sr", "seg"])
    args = parser.parse_args()
    results = []
    if args.only in (None, "seg"):
        results.append(bench_segmentation(args.seg_epochs))
    if args.only in (None, "sr"):
        results.append(bench_super_resolution(args.sr_epochs))
    Path("/tmp/bench_deep_budget.json").write_text(json.dumps(results, indent=2, default=list))
    _write_docs(_markdown(results, "python " + " ".join(["bench/bench_deep_budget.py", *sys.argv[1:]])))
    print(json.dumps(results, indent=1, default=list)[:3000])


if __name__ == "__main__":
    main()
