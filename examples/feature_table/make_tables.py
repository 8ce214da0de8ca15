"""Write the example's synthetic inputs: a pyradiomics-style feature table, its second reading and the patient table.

    python examples/feature_table/make_tables.py            # writes features.csv, features_reader2.csv, patients.csv here
    python -m helpers run --config examples/feature_table/study.yaml

60 patients (40 training, 20 external test, assigned by the patient table's ``cohort`` column); one planted
informative feature (``original_firstorder_Mean``) drives a logistic outcome, the others are noise; a text column
``diagnostics_Versions_PyRadiomics`` (as pyradiomics writes) is excluded by the config's ``exclude`` pattern.
Deterministic (seeded): the same files every time; nothing here is committed but this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def write_tables(out: Path, n: int = 60, n_noise: int = 12, seed: int = 0) -> dict[str, Path]:
    """Write ``features.csv``, ``features_reader2.csv`` and ``patients.csv`` into ``out``; return their paths."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = [f"FT{i:03d}" for i in range(n)]
    n_train = round(n * 2 / 3)
    cohort = ["training"] * n_train + ["external"] * (n - n_train)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-3.0 * signal))).astype(int)
    # Both classes in each cohort (a single-class cohort cannot be evaluated).
    y[:2], y[n_train:n_train + 2] = (0, 1), (0, 1)
    cols = {"patient": ids, "diagnostics_Versions_PyRadiomics": ["v3.1.0"] * n,
            "original_firstorder_Mean": np.round(100 + 15 * signal, 4)}
    for j in range(n_noise):
        cols[f"original_glcm_Noise{j:02d}"] = np.round(rng.normal(size=n), 4)
    features = pd.DataFrame(cols)
    reader2 = features.iloc[:n_train].copy()
    numeric = [c for c in features.columns if c.startswith("original_")]
    reader2[numeric] = np.round(reader2[numeric] + rng.normal(0, 0.02, (n_train, len(numeric))) * reader2[numeric].std().to_numpy(), 4)
    reader2["original_glcm_Noise00"] = np.round(rng.normal(size=n_train), 4)  # unstable between readers
    age = np.round(60 + 10 * rng.normal(size=n), 1)
    paths = {"features": out / "features.csv", "reader2": out / "features_reader2.csv", "patients": out / "patients.csv"}
    features.to_csv(paths["features"], index=False)
    reader2.to_csv(paths["reader2"], index=False)
    pd.DataFrame({"patient": ids, "cohort": cohort, "outcome": y, "age": age}).to_csv(paths["patients"], index=False)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for name, path in write_tables(target).items():
        print(f"{name}: {path}")
