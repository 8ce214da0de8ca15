"""End to end: a simulated study configured survival-only (time/event, no binary endpoint) runs validate -> feature
extraction -> signature -> models -> statistics -> supplement (issue 15, seed study 004's Tables S4/S5)."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
import yaml

from helpers.data.manifest import load_study
from helpers.runner.pipeline import run_study
from helpers.settings.study import load_config
from helpers.simulation.simulate import simulate_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def survival_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("survival_first") / "study"
    simulate_study(out, patients=36, seed=7, test_fraction=0.35)
    cfg = yaml.safe_load((out / "study.yaml").read_text())
    cfg["endpoints"] = {"time": "time_months", "event": "event"}  # survival-only: no binary endpoint
    cfg["extraction"]["rois"] = {"tumour": {"kind": "tumour"}}
    cfg["extraction"].pop("stability", None)
    cfg["signature"]["icc"] = None
    cfg["signature"]["steps"] = [{"step": "zscore"}, {"step": "univariate_cox", "p_threshold": 0.1, "min_features": 5},
                                 {"step": "correlation", "threshold": 0.9, "relevance": "order"},
                                 {"step": "cox_lasso", "lambda_rule": "1se", "random_state": 7, "cv": 4}]
    cfg["survival"] = {"horizons": [12, 24, 36, 48, 60], "rsf_trees": 30, "ith_k": [2, 3, 4]}
    cfg["statistics"] = {"n_bootstrap": 100}
    cfg["steps"] = [s for s in cfg["steps"] if s["name"] != "acquisition_qc"]
    cfg["steps"][-1]["depends_on"] = [d for d in cfg["steps"][-1]["depends_on"] if d != "acquisition_qc"]
    (out / "study.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    printed = io.StringIO()
    results = run_study(out / "study.yaml", out=printed)
    return out, results, printed.getvalue()


def test_survival_only_study_runs_every_step(survival_study):
    out, results, printed = survival_study
    load_study(load_config(out / "study.yaml"), check_images=False)  # validation accepts the survival-only study
    assert [r.step for r in results] == ["feature_extraction", "signature", "models", "statistics", "supplement"], printed
    assert all(r.status == "ran" for r in results), printed


def test_signature_is_a_cox_lasso_radscore(survival_study):
    out, _, _ = survival_study
    root = load_config(out / "study.yaml").report_root
    pathway = pd.read_csv(root / "tables" / "selection_pathway.csv")
    assert list(pathway["step"])[-2:] == ["correlation", "cox_lasso"]
    coefs = pd.read_csv(root / "tables" / "radscore_coefficients.csv")
    assert "hazard_ratio" in coefs.columns and "(intercept)" not in set(coefs["feature"])
    assert (root / "tables" / "radscore_formula.txt").read_text().startswith("Rad-score = ")
    radscores = pd.read_parquet(root / "features" / "radscores.parquet")
    assert {"time", "event", "radscore"} <= set(radscores.columns)
    assert not (root / "features" / "model_predictions.parquet").exists()  # no binary model ran


def test_ablation_and_td_auc_tables(survival_study):
    out, _, _ = survival_study
    cfg = load_config(out / "study.yaml")
    root = cfg.report_root
    ablation = pd.read_csv(root / "tables" / "survival_ablation.csv", keep_default_na=False)
    models = list(pd.unique(ablation["model"]))
    assert models[:3] == ["Clinical", "C-radiomics", "ITH"] and {"Clinical + ITH", "C-radiomics + ITH", "Combined"} <= set(models)
    assert set(ablation["cohort"]) == {"external_test"}
    for col in ("C-index (95% CI)", "AUC (95% CI)", "IBS (95% CI)", "auc_definition", "note"):
        assert col in ablation.columns
    assert ablation["c_index"].astype(float).between(0, 1).all()
    td = pd.read_csv(root / "tables" / "survival_td_auc.csv", keep_default_na=False)
    # Seed Table S5's layout: a row per cohort and model, the horizons side by side ("12 months", never "12.0").
    horizons = [f"AUC at {h} months (95% CI)" for h in (12, 24, 36, 48, 60)]
    assert list(td.columns) == ["model", "cohort", *horizons, "note"]
    assert list(td["model"]) == models and set(td["cohort"]) == {"external_test"}
    # Every horizon is either estimated or '-' with its reason in the note of the cohort's first row: never a silent NA.
    note = td["note"].iloc[0]
    assert (td["note"].iloc[1:] == "").all()
    for row in td.itertuples(index=False):
        cells = dict(zip(horizons, row[2:7], strict=True))
        assert all(c for c in cells.values())
        for h, cell in zip((12, 24, 36, 48, 60), cells.values(), strict=True):
            assert (cell == "-") == bool(re.search(rf"(^|; |, ){h}(,| months:)", note)), (cell, note)
    not_fitted = pd.read_csv(root / "tables" / "survival_models_not_fitted.csv")
    assert set(not_fitted["model"]) == {"DL_F", "DL_F + ITH"}  # no deep features configured in this study


def test_supplement_is_complete_and_survival_only(survival_study):
    out, _, _ = survival_study
    root = load_config(out / "study.yaml").report_root
    html = (root / "supplementary" / "supplementary.html").read_text(encoding="utf-8")
    for text in ("Ablation of the survival models", "Time-dependent (cumulative/dynamic) AUC of the survival models at each horizon",
                 "Each cohort was evaluated in the time range it supports", "univariate Cox filter", "Cox LASSO",
                 "log relative hazard", "Kaplan-Meier"):
        assert text in html, text
    # Nothing about binary models that did not run (the CLEAR/TRIPOD checklist's item topics name DeLong tests etc. generically).
    for text in ("logistic", "Youden", "log-odds", "Decision curve", "Nomogram"):
        assert text not in html, text
