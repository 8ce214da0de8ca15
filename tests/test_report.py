"""Report writer: CSV+XLSX tables, PNG+PDF figures, ledgers, byte-identical re-writes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from helpers.reporting.writer import ReportWriter, find_values_in_reports, hash_outputs, read_ledger
from helpers.settings.study import load_config


def _figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [1, 0, 1])
    ax.set_title("t")
    return fig


def test_tables_and_figures_are_written_recorded_and_reproducible(tiny_study):
    cfg = load_config(tiny_study / "study.yaml")
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    w = ReportWriter(cfg, "acquisition_qc", "train")
    csv = w.table(table, "counts")
    w.figure(_figure(), "plot")
    w.table(table, "shared", per_cohort=False)
    assert csv == cfg.report_root / "tables" / "counts_train.csv"
    expected = ["tables/counts_train.csv", "tables/counts_train.xlsx", "figures/plot_train.png", "figures/plot_train.pdf", "tables/shared.csv", "tables/shared.xlsx"]
    assert read_ledger(cfg.report_root, "acquisition_qc", "train") == expected
    assert pd.read_excel(cfg.report_root / "tables" / "counts_train.xlsx").equals(table)
    first = hash_outputs(cfg.report_root, expected)

    w2 = ReportWriter(cfg, "acquisition_qc", "train")  # a re-run starts a fresh ledger
    assert read_ledger(cfg.report_root, "acquisition_qc", "train") == []
    w2.table(table, "counts")
    w2.figure(_figure(), "plot")
    w2.table(table, "shared", per_cohort=False)
    assert hash_outputs(cfg.report_root, expected) == first  # byte-identical CSV, XLSX, PNG and PDF


def test_png_is_300_dpi(tiny_study):
    from PIL import Image

    w = ReportWriter(load_config(tiny_study / "study.yaml"), "s")
    png = w.figure(_figure(), "dpi")
    with Image.open(png) as im:
        assert 400 <= im.size[0] <= 640 and 400 <= im.size[1] <= 640  # 2 x 2 inches at 300 dpi, cropped to the drawing
        assert round(im.info["dpi"][0]) == 300


def test_bad_output_name_rejected(tiny_study):
    w = ReportWriter(load_config(tiny_study / "study.yaml"), "s")
    with pytest.raises(ValueError, match="output name"):
        w.table(pd.DataFrame({"a": [1]}), "Bad Name/..")


def test_find_values_searches_inside_xlsx(tiny_study):
    cfg = load_config(tiny_study / "study.yaml")
    w = ReportWriter(cfg, "s")
    w.table(pd.DataFrame({"name": ["Doe^Jane"]}), "names", per_cohort=False)
    (cfg.report_root / "tables" / "names.csv").unlink()  # only the (compressed) XLSX still holds it
    hits = find_values_in_reports(cfg.report_root, ["doe^jane", "absent-value"])
    assert hits == {"doe^jane": ["tables/names.xlsx"]}
