"""Benchmark (issue 17): the models step with the selection refitted per candidate (before) vs cached per fold (after).

The models step (notebook 05, ``helpers/steps/models.py``) tunes every pipeline with
:func:`helpers.learning.models.tune`. Before issue 17 every hyperparameter candidate of every fold refitted the
whole pipeline, selection steps included, although those steps do not depend on the classifier's hyperparameters.
Now the steps before the classifier are cached per (training fold, step parameters) in a temporary folder
(:func:`helpers.learning.models.selection_cache`), and the algorithms of one block share them.

Measured side by side in one run, on the same simulated, default-study-like feature table (training patients
x feature blocks of correlated radiomics-like features with a planted signal, plus a held-out cohort), the same
``tune`` calls the models step makes:

1. the model grid with ``search: grid`` (``model_grid``, the study's ``models.grid_steps``);
2. the model grid with ``search: none`` (the default study's setting; the gain there is only the sharing between
   algorithms of a block);
3. the final model (``signature.steps`` + logistic regression, grid-tuned as in ``fit_final_model``).

Each part runs twice, old path (``cache_selection=False``) and cached path, in this order, in one process. It
reports wall times, the ratio, the number of selection-step fits (counted by wrapping the fit methods of the
selection step classes) and whether every result is identical: the grid table (CV, out-of-fold and held-out AUCs,
thresholds, best parameters) compared exactly, and each model's out-of-fold and held-out probabilities bitwise.

Usage (niced; the machine may be shared):

    nice -n 10 python bench/bench_models.py                    # writes its section of docs/benchmarks.md
    nice -n 10 python bench/bench_models.py --patients 60 --blocks 4 --features 150
    python bench/bench_models.py --quick                       # tiny sizes, doc untouched
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_models:begin -->", "<!-- bench_models:end -->"
HEADING = "## Models step: selection fitted once per training fold (`bench/bench_models.py`)"

FITS: Counter = Counter()  # selection-step fits per step class, reset before every run
FIT_SECONDS = [0.0]  # wall time spent inside those fits


def count_selection_fits() -> None:
    """Wrap ``fit`` of every selection step class so each call is counted and timed (results unchanged)."""
    from helpers.learning.selection import STEP_TYPES

    for cls in {*STEP_TYPES.values()}:
        original = cls.fit

        @functools.wraps(original)
        def fit(self, X, y=None, _original=original, _name=cls.__name__):
            FITS[_name] += 1
            t0 = time.perf_counter()
            try:
                return _original(self, X, y)
            finally:
                FIT_SECONDS[0] += time.perf_counter() - t0

        cls.fit = fit


def simulate(n_train: int, n_test: int, n_blocks: int, n_features: int, seed: int) -> tuple[dict, dict, pd.Series, pd.Series]:
    """Blocks of correlated features (10 latent factors + noise per block), outcome driven by two shared factors."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    shared = rng.normal(size=(n, 2))
    logit = 1.5 * shared[:, 0] - 1.5 * shared[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    index = pd.Index([f"B{i:03d}" for i in range(n)], name="patient")
    blocks = {}
    for b in range(n_blocks):
        factors = np.column_stack([shared + rng.normal(0, 0.5 + 0.3 * b, size=(n, 2)), rng.normal(size=(n, 8))])
        loadings = rng.normal(size=(10, n_features)) * (rng.random((10, n_features)) < 0.3)
        values = factors @ loadings + rng.normal(0, 1.0, size=(n, n_features))
        series, roi = ("CT", "PET", "MR_T1", "MR_T1_SR")[b % 4], ("tumour", "ring")[b // 4 % 2]
        cols = [f"{series}_{roi}_original_glcm_F{j:03d}" for j in range(n_features)]
        blocks[f"{series} / {roi}"] = pd.DataFrame(values, index=index, columns=cols)
    y = pd.Series(y, index=index, name="outcome")
    train, test = index[:n_train], index[n_train:]
    return ({k: v.loc[train] for k, v in blocks.items()}, {k: v.loc[test] for k, v in blocks.items()}, y.loc[train], y.loc[test])


def timed(run, cache: bool) -> tuple[float, object, dict, float]:
    """Wall time, result, selection fits per step class and seconds inside those fits."""
    FITS.clear()
    FIT_SECONDS[0] = 0.0
    t0 = time.perf_counter()
    out = run(cache)
    return time.perf_counter() - t0, out, dict(FITS), FIT_SECONDS[0]


def same_grid(a: tuple, b: tuple, X_test: dict) -> bool:
    """Grid tables equal exactly; every model's out-of-fold and held-out probabilities bitwise equal."""
    (ta, ma), (tb, mb) = a, b
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    for key, model in ma.items():
        other = mb[key]
        assert model.best_params_ == other.best_params_ and model.threshold_ == other.threshold_
        np.testing.assert_array_equal(model.oof_proba_.to_numpy(), other.oof_proba_.to_numpy())
        np.testing.assert_array_equal(model.positive_proba(X_test[key[0]]).to_numpy(), other.positive_proba(X_test[key[0]]).to_numpy())
    return True


def same_model(a, b, X_test: pd.DataFrame) -> bool:
    pd.testing.assert_frame_equal(a.cv_results_, b.cv_results_, check_exact=True)
    assert a.best_params_ == b.best_params_ and a.threshold_ == b.threshold_
    np.testing.assert_array_equal(a.oof_proba_.to_numpy(), b.oof_proba_.to_numpy())
    np.testing.assert_array_equal(a.positive_proba(X_test).to_numpy(), b.positive_proba(X_test).to_numpy())
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=40, help="training patients (default 40; the default study has 33)")
    ap.add_argument("--test-patients", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--features", type=int, default=120, help="features per block")
    ap.add_argument("--grid-algorithms", nargs="+", default=["logistic", "svm", "random_forest"],
                    help="algorithms of the search: grid model grid")
    ap.add_argument("--none-algorithms", nargs="+", default=None, help="algorithms of the search: none grid (default: the study's)")
    ap.add_argument("--seed", type=int, default=1762)
    ap.add_argument("--quick", action="store_true", help="tiny sizes; docs/benchmarks.md untouched")
    args = ap.parse_args()
    if args.quick:
        args.patients, args.test_patients, args.blocks, args.features = 30, 10, 1, 30
        args.grid_algorithms, args.none_algorithms = ["logistic"], ["logistic", "random_forest"]
    os.nice(10) if hasattr(os, "nice") else None

    from helpers.learning.models import build_pipeline, make_classifier, model_grid, tune
    from helpers.learning.selection import build_selector
    from helpers.settings.study import load_config
    from helpers.steps.signature import study_steps

    cfg = load_config(REPO / "study.yaml")
    count_selection_fits()
    blocks, test_blocks, y, _ = simulate(args.patients, args.test_patients, args.blocks, args.features, args.seed)
    none_algorithms = args.none_algorithms or list(cfg.models.algorithms)

    def grid_steps():
        return list(build_selector(study_steps(cfg, cfg.models.grid_steps)).steps)

    def grid_run(search: str, algorithms: list[str]):
        return lambda cache: model_grid(blocks, y, algorithms=algorithms, steps_factory=grid_steps, search=search, cv=cfg.models.cv,
                                        random_state=cfg.seed, n_trials=cfg.models.n_trials, smote=cfg.models.smote,
                                        return_models=True, cache_selection=cache)  # fmt: skip

    X_final = pd.concat(blocks.values(), axis=1)
    X_final_test = pd.concat(test_blocks.values(), axis=1)

    def final_run(cache: bool):
        steps = list(build_selector(study_steps(cfg, cfg.signature.steps)).steps)
        pipe = build_pipeline(steps, make_classifier(cfg.models.final_algorithm, random_state=cfg.seed), smote=cfg.models.smote,
                              random_state=cfg.seed)  # fmt: skip
        return tune(pipe, X_final, y, search="grid", cv=cfg.models.cv, random_state=cfg.seed, cache_selection=cache)

    parts = [
        (f"model grid, `search: grid` ({', '.join(args.grid_algorithms)})", grid_run("grid", args.grid_algorithms),
         lambda a, b: same_grid(a, b, test_blocks)),
        (f"model grid, `search: none` ({len(none_algorithms)} algorithms, the default study's setting)", grid_run("none", none_algorithms),
         lambda a, b: same_grid(a, b, test_blocks)),
        ("final model (`signature.steps` + logistic, grid-tuned C)", final_run, lambda a, b: same_model(a, b, X_final_test)),
    ]  # fmt: skip
    rows = []
    for label, run, compare in parts:
        before, after = timed(run, False), timed(run, True)
        identical = compare(before[1], after[1])
        rows.append((label, before, after, identical))
        print(f"{label}: before {before[0]:.1f} s ({sum(before[2].values())} selection fits, {before[3]:.1f} s), after {after[0]:.1f} s "
              f"({sum(after[2].values())}, {after[3]:.1f} s), ratio {after[0] / before[0]:.2f}, identical {identical}", flush=True)  # fmt: skip

    total_before = sum(r[1][0] for r in rows)
    total_after = sum(r[2][0] for r in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        BEGIN,
        (f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python bench/bench_models.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` (nice 10). Simulated default-study-like "
        f"table: {args.patients} training + {args.test_patients} held-out patients, {args.blocks} blocks x {args.features} correlated "
        f"features; study.yaml's selection steps (grid: {' + '.join(s['step'] for s in study_steps(cfg, cfg.models.grid_steps))}; "
        f"final: {' + '.join(s['step'] for s in study_steps(cfg, cfg.signature.steps))}), {cfg.models.cv}-fold CV, seed {cfg.seed}. "
        f"Before = every candidate refits every step (`cache_selection=False`), after = steps cached per training fold and "
        f"shared between the algorithms of a block; same process, same data, before then after. 1-min load average at the end: "
        f"{load:.1f} (the machine was shared; the ratio is the result)."),
        "",
        ("| part | before (s) | after (s) | after / before | selection-step fits before -> after | "
         "time inside selection fits before -> after (s) | results identical |"),
        "|---|---|---|---|---|---|---|",
        *[f"| {label} | {b[0]:.1f} | {a[0]:.1f} | {a[0] / b[0]:.2f} | {sum(b[2].values()):,} -> {sum(a[2].values()):,} | "
          f"{b[3]:.1f} -> {a[3]:.1f} | {'yes (bitwise)' if same else 'NO'} |" for label, b, a, same in rows],
        (f"| **total** | **{total_before:.1f}** | **{total_after:.1f}** | **{total_after / total_before:.2f}** | | "
         f"{sum(r[1][3] for r in rows):.1f} -> {sum(r[2][3] for r in rows):.1f} | |"),
        "",
        ("Identical = grid tables (CV, out-of-fold and held-out AUCs, thresholds, best parameters) equal exactly, and every "
        "model's out-of-fold and held-out probabilities bitwise equal. Fits are counted per selection step (impute, z-score, "
        "filters, mRMR, LASSO each count one); their time is the wall time inside those fit calls. What remains after "
        "caching is the classifiers' fits (forests of 500 trees, calibrated SVMs, boosting), which the cache does not touch: "
        "the saving of a part is about its selection time, so it is large where selection is expensive relative to the "
        "classifier (LASSO in the final model) and small for cheap filters in front of large ensembles."),
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.quick:
        return 0
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Benchmarks\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{section}\n"
    DOC.write_text(text, encoding="utf-8")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
