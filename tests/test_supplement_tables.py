"""Supplement tables: number and interval formats, the header dictionary, page layout, and the three writers
(LaTeX compiled with pdflatex when it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.errors import ConfigError
from helpers.reporting.supplement import SupplementWarning, build_supplement
from helpers.reporting.supplement.table_format import (
    DisplayTable,
    LabelBook,
    abbreviation_note,
    display_table,
    format_ci,
    format_number,
    format_p,
    load_label_data,
    validate_label_data,
)  # fmt: skip
from helpers.reporting.supplement.table_layout import LANDSCAPE_CM, MIN_FONT_PT, PAD_CM, PORTRAIT_CM, plan_layout
from helpers.reporting.writer import ReportWriter
from helpers.stats.table_one import table_one
from helpers.stats.tables import calibration_table, pairwise_comparison_table, performance_table, subgroup_performance_table

from .conftest import REPO
from .test_supplement import _write_study

COLUMNS_FIXTURE = REPO / "tests" / "data" / "supplement_table_columns.yaml"


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("args", "expected"), [
    ((0.87, 0.76, 0.95, 2), "0.87 (0.76-0.95)"),
    ((0.8923076923, 0.7356265906, 1.0, 3), "0.892 (0.736-1.000)"),
    ((-0.18, -0.30, -0.05, 2, True), "-0.18 (-0.30 to -0.05)"),
    ((0.12, 0.05, 0.30, 3, True), "0.120 (0.050 to 0.300)"),  # a signed quantity keeps "to" when both bounds are positive
    ((-0.0304, -1.0622, 1.0006, 3, True), "-0.030 (-1.062 to 1.001)"),
    ((0.0, -0.0001, 0.2, 3, True), "0.000 (0.000 to 0.200)"),  # no "-0.000"
    ((float("nan"), 0.1, 0.2, 3), "NA"),
    ((0.5, float("nan"), float("nan"), 3), "0.500 (NA)"),
    ((1.77, 0.12, 3.42, 2), "1.77 (0.12-3.42)"),
])  # fmt: skip
def test_format_ci(args, expected):
    assert format_ci(*args) == expected


def test_format_ci_refuses_an_ambiguous_negative_interval():
    with pytest.raises(ValueError, match="signed=True"):
        format_ci(0.87, -0.18, 1.92, 2)


@pytest.mark.parametrize(("p", "expected"), [
    (0.0315238, "0.032"), (0.001, "0.001"), (0.00099, "< 0.001"), (1.7e-10, "< 0.001"), (1.0, "1.000"), (0.0005, "< 0.001"),
    (float("nan"), "NA"),
])  # fmt: skip
def test_format_p(p, expected):
    assert format_p(p) == expected


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    ("0.8923076923076924", "d3", "0.892"),
    ("0.7648666032297183", "d3", "0.765"),
    ("1.4000072546", "d2", "1.40"),
    ("96.5", "percent", "96.5"),
    ("96.54", "percent", "96.5"),
    ("18", "count", "18"),
    ("18.0", "count", "18"),
    ("external_test", "words", "external test"),
    ("training", "words", "training"),
    ("3.5", "count", "3.5"),  # not an integer: never rounded to one
    ("0.00017049572187078458", "p", "< 0.001"),
    ("0.6077558355972584", "p", "0.608"),
    ("3.27", "auto", "3.27"),
    ("0.9766", "auto", "0.9766"),
    ("363.02712", "auto", "363.027"),
    ("0.0000123456", "auto", "1.23e-05"),
    ("556254209227.9908", "auto", "5.563e+11"),
    ("", "d3", ""),
    ("nan", "d3", ""),
    ("19 (57.6%)", "count", "19 (57.6%)"),
    ("0.89 (0.74-1.00)", "text", "0.89 (0.74-1.00)"),
    ("-0.0001", "d3", "0.000"),
])  # fmt: skip
def test_format_number(value, fmt, expected):
    assert format_number(value, fmt) == expected


# --------------------------------------------------------------------------- display tables


def _book(cohorts=("training", "external_test"), series=("CT", "PET", "MR_T1")) -> LabelBook:
    return LabelBook.for_study(cohorts, series)


def _cells(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and cells as a CSV file written by ReportWriter.table holds them."""
    text = df.to_csv(index=False)
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def _predictions(n_models: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for cohort, n in (("training", 40), ("external_test", 24)):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        for m in range(n_models):
            p = np.clip(0.5 + (y - 0.5) * 0.3 * (m + 1) / n_models + rng.normal(0, 0.2, n), 0.01, 0.99)
            frames.append(pd.DataFrame({"model": f"Model {m} (logistic)", "patient": [f"{cohort[:2]}{i:03d}" for i in range(n)], "cohort": cohort,
                                        "outcome": y, "probability": p, "threshold": 0.5}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_performance_table_shown_in_one_ci_format_without_duplicates():
    header, rows = _cells(performance_table(_predictions(), n_bootstrap=200))
    shown = display_table(header, rows, _book())
    labels = shown.header
    assert labels[:5] == ["Model", "Cohort", "n", "Events", "Threshold"]
    for metric in ("AUC", "Accuracy", "Sensitivity", "Specificity", "PPV", "NPV", "F1"):
        assert labels.count(f"{metric} (95% CI)") == 1
    assert not any(lab.endswith(("lower", "upper")) for lab in labels) and shown.unlabelled == ()
    auc = [r[labels.index("AUC (95% CI)")] for r in shown.rows]
    assert all(re.fullmatch(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)", v) for v in auc), auc
    assert shown.footnote.startswith("AUC, area under the receiver operating characteristic curve; CI, confidence interval")


def test_signed_intervals_read_the_same_on_every_row():
    """NRI/IDI columns with positive and negative bounds: "to" on every row, never "0.12-0.30" beside "-0.1 to 0.2"."""
    df = pd.DataFrame({"cohort": ["a", "b"], "nri": [0.2, -0.03], "nri_lower": [0.05, -1.06], "nri_upper": [0.4, 1.0],
                       "NRI (95% CI)": ["0.200 (0.050-0.400)", "-0.030 (-1.060 to 1.000)"]})  # fmt: skip
    shown = display_table(*_cells(df), _book(("a", "b")))
    assert shown.header == ["Cohort", "NRI (95% CI)"]
    assert [r[1] for r in shown.rows] == ["0.200 (0.050 to 0.400)", "-0.030 (-1.060 to 1.000)"]
    df = pd.DataFrame({"model": ["m"], "sensitivity": [0.5], "sensitivity_lower": [-0.01], "sensitivity_upper": [0.9]})
    assert display_table(*_cells(df), _book()).rows[0][1] == "0.500 (-0.010 to 0.900)"  # unexpected negative: "to" too


def test_preformatted_intervals_without_numbers_get_one_separator():
    df = pd.DataFrame({"model": ["a", "b"], "Slope (95% CI)": ["0.87 (-0.18 to 1.92)", "1.77 (0.12-3.42)"]})
    shown = display_table(*_cells(df), _book())
    assert [r[1] for r in shown.rows] == ["0.87 (-0.18 to 1.92)", "1.77 (0.12 to 3.42)"]
    # Set like an interval built from numbers (right-aligned, the interval kept on one line), '-' cells too.
    assert shown.columns[1].kind == "ci"
    df = pd.DataFrame({"model": ["a", "b"], "AUC at 12 months (95% CI)": ["0.886 (0.708-1.000)", "-"], "AUC at 72 months (95% CI)": ["-", "-"]})
    shown = display_table(*_cells(df), _book())
    assert shown.header == ["Model", "AUC at 12 months (95% CI)", "AUC at 72 months (95% CI)"] and shown.unlabelled == ()
    assert [c.kind for c in shown.columns] == ["text", "ci", "ci"]  # a column of placeholders only is aligned like its neighbours
    assert [r[1:] for r in shown.rows] == [("0.886 (0.708-1.000)", "-"), ("-", "-")]
    assert display_table(*_cells(pd.DataFrame({"X (95% CI)": ["0.5 (0.1-0.9)", "see note"]})), _book()).columns[0].kind == "text"


def test_code_name_twins_and_empty_columns_are_left_out():
    df = pd.DataFrame({"block": ["CT / tumour"], "algorithm": ["svm"], "block_label": ["CT / tumour"], "algorithm_label": ["SVM"],
                       "cv_auc_mean": [0.7361111], "cv_auc_sd": [0.1152], "note": [""]})  # fmt: skip
    shown = display_table(*_cells(df), _book())
    assert shown.header == ["Feature block", "Algorithm", "CV AUC, mean", "CV AUC, SD"]
    assert shown.rows == (("CT / tumour", "SVM", "0.736", "0.115"),)
    assert set(shown.dropped) == {"block", "algorithm", "note"}
    assert "NA," not in display_table(["model"], [["GENESIS_SIGNA"]], _book()).footnote  # "NA" inside a word is not NA
    assert shown.footnote == "CV, cross-validation; AUC, area under the receiver operating characteristic curve; SD, standard deviation."


def test_cox_table_hazard_ratio_and_coefficient_intervals():
    df = pd.DataFrame({"covariate": ["x"], "coef": [-0.8615], "exp(coef)": [0.4225], "se(coef)": [0.4438], "coef lower 95%": [-1.7314],
                       "coef upper 95%": [0.0084], "exp(coef) lower 95%": [0.1770], "exp(coef) upper 95%": [1.0084], "cmp to": [0.0],
                       "z": [-1.941], "p": [0.05225], "-log2(p)": [4.2584]})  # fmt: skip
    shown = display_table(*_cells(df), _book())
    assert shown.header == ["Covariate", "Coefficient (95% CI)", "HR (95% CI)", "SE", "Null value", "z", "p",
                            "S-value, -log2 p (bits)"]  # fmt: skip
    assert shown.rows[0][1:3] == ("-0.862 (-1.731 to 0.008)", "0.42 (0.18-1.01)")
    assert shown.rows[0][6] == "0.052"


# --------------------------------------------------------------------------- the dictionary


def _every_table_header() -> list[tuple[str, LabelBook, list[str]]]:
    """Headers of every table the STS check run and the simulated runs wrote (fixture) and of the stats tables built here."""
    out = []
    fixture = yaml.safe_load(COLUMNS_FIXTURE.read_text(encoding="utf-8"))
    for study, entry in fixture["studies"].items():
        book = _book(entry["cohorts"], entry["series"])
        out += [(f"{study}:{name}", book, header) for name, header in entry["tables"].items()]
    preds = _predictions()
    patients = pd.DataFrame({"cohort": ["training"] * 6 + ["external_test"] * 4, "age": np.arange(10) + 50.0,
                             "grade": ["1", "2"] * 5, "label": [0, 1] * 5})  # fmt: skip
    ids = preds["patient"].unique()
    subgroups = pd.Series(np.where(np.arange(ids.size) % 2, "Siemens", "GE"), index=ids)
    built = {
        "performance_table": performance_table(preds, n_bootstrap=50),
        "pairwise_comparison_table": pairwise_comparison_table(preds),
        "calibration_table": calibration_table(preds),
        "table_one": table_one(patients, "cohort", ["age"], ["grade"]),
        "subgroup_performance_table": subgroup_performance_table(preds, subgroups),
    }
    book = _book()
    out += [(name, book, list(df.columns)) for name, df in built.items()]
    return out


def test_every_column_of_every_table_has_a_header_label():
    missing = {}
    for name, book, header in _every_table_header():
        unlabelled = display_table(header, [], book).unlabelled
        if unlabelled:
            missing[name] = list(unlabelled)
    assert not missing, f"add these columns to table_labels.yaml: {missing}"


def test_label_data_is_validated():
    data = load_label_data()
    assert data["columns"]["cv_auc_mean"]["label"] == "CV AUC, mean"
    with pytest.raises(ConfigError, match="format"):
        validate_label_data({"columns": {"x": {"label": "X", "format": "d4"}}})
    with pytest.raises(ConfigError, match="only keys among"):
        validate_label_data({"columns": {"x": {"label": "X", "fromat": "d3"}}})
    with pytest.raises(ConfigError, match="placeholder"):
        validate_label_data({"patterns": [{"pattern": "auc_{cohrt}", "label": "AUC"}]})
    with pytest.raises(ConfigError, match="interval"):
        validate_label_data({"columns": {"icc": {"label": "ICC", "interval": ["lo"]}}})


def test_patterns_fill_study_names():
    book = _book()
    assert book.spec("auc_external_test").label == "AUC, external test"
    assert book.spec("scans MR_T1").label == "Scans, MR_T1"
    assert book.spec("lung_metastasis=1").label == "lung metastasis = 1"
    assert book.spec("ith_k3").label == "ITH score, K = 3"
    assert book.spec("mr_t1_deep_pc02").label == "MR_T1 deep feature, PC 02"
    assert book.spec("no_such_column") is None


def test_abbreviation_note_lists_what_the_headers_use():
    assert abbreviation_note([]) == ""
    shown = DisplayTable((), (), (("ICC", "intraclass correlation coefficient"),))
    assert shown.footnote == "ICC, intraclass correlation coefficient."


# --------------------------------------------------------------------------- layout


def _wide(n_columns: int, n_rows: int = 5) -> DisplayTable:
    df = pd.DataFrame({"patient": [f"STS_{i:03d}" for i in range(n_rows)], "series": "MR_T1",
                       **{f"intensity_p{j:02d}": np.linspace(-466.48, 21.665, n_rows) + j for j in range(n_columns - 2)}})  # fmt: skip
    return display_table(*_cells(df), _book())


@pytest.mark.parametrize("n_columns", [3, 8, 14, 22, 40])
def test_layout_fits_the_page_at_7_pt_or_more_and_keeps_every_column(n_columns):
    table = _wide(n_columns)
    layout = plan_layout(table)
    shown = [j for part in layout.parts for j in part.columns]
    assert set(shown) == set(range(n_columns))
    for part in layout.parts:
        assert part.font_pt >= MIN_FONT_PT
        assert part.width_cm <= (LANDSCAPE_CM if part.landscape else PORTRAIT_CM) + 1e-9
        assert all(w > 0 for w in part.widths_cm)
    if layout.split:
        assert all(part.columns[: len(layout.id_columns)] == layout.id_columns for part in layout.parts)
        assert [table.columns[j].label for j in layout.id_columns] == ["Patient", "Series"]


def test_narrow_tables_stay_portrait_and_wide_ones_turn_landscape_before_splitting():
    assert not plan_layout(_wide(3)).parts[0].landscape
    assert plan_layout(_wide(3)).parts[0].font_pt == 8
    eleven = plan_layout(_wide(11))
    assert not eleven.split and eleven.parts[0].landscape
    assert plan_layout(_wide(40)).split


# --------------------------------------------------------------------------- the three documents


@pytest.fixture(scope="module")
def wide_study(tmp_path_factory):
    """The small study of test_supplement plus a headline performance table with many models and a 40-column table."""
    root = tmp_path_factory.mktemp("supplement_tables")
    cfg = _write_study(root)
    w = ReportWriter(cfg, "models")
    w.table(performance_table(_predictions(n_models=12), n_bootstrap=100), "performance", per_cohort=False)
    w.table(pd.DataFrame({"patient": [f"S{i:02d}" for i in range(45)], "series": "CT",
                          **{f"intensity_p{j:02d}": np.linspace(-466.48, 21.665, 45) + j for j in range(38)}}),
            "image_mask_qc_train", per_cohort=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupplementWarning)
        result = build_supplement(cfg)
    return cfg, result


def test_headline_and_wide_tables_are_inlined_in_full(wide_study):
    _, result = wide_study
    by_name = {it.name: it for it in result.items}
    assert by_name["performance"].inline and by_name["image_mask_qc_train"].inline
    page = result.html.read_text(encoding="utf-8")
    assert "Not shown" not in page.replace("Not shown: 42 rows x 31 columns (a data table)", "")
    assert page.count("Model 11 (logistic)") == 2  # both cohorts' rows of the 12th model: the table is complete
    assert "@page wide{size:A4 landscape" in page and 'class="landscape"' in page
    assert re.search(r"The columns are shown in \d groups \(Patient, Series repeated in each\)", page)
    assert "First 40 of" not in page  # every table here has at most 300 rows


def test_docx_tables_use_landscape_sections_fixed_widths_and_readable_fonts(wide_study):
    from docx import Document
    from docx.enum.section import WD_ORIENT
    from docx.oxml.ns import qn

    _, result = wide_study
    doc = Document(str(result.docx))
    assert any(s.orientation == WD_ORIENT.LANDSCAPE for s in doc.sections)
    for section in doc.sections:
        landscape = section.orientation == WD_ORIENT.LANDSCAPE
        assert (section.page_width > section.page_height) == landscape
    sizes = {r.font.size.pt for t in doc.tables for row in t.rows for c in row.cells for p in c.paragraphs for r in p.runs if r.font.size}
    assert sizes and min(sizes) >= MIN_FONT_PT
    for t in doc.tables:
        width_cm = sum(c.width for c in t.rows[0].cells) / 360000
        assert width_cm <= LANDSCAPE_CM + 0.01
        assert t.rows[0]._tr.trPr.find(qn("w:tblHeader")) is not None  # header row repeats on every page
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "How the tables are written" in text and "estimate (lower to upper)" in text


def _pdflatex() -> str | None:
    return shutil.which("pdflatex")


def test_latex_is_a_standalone_document_that_compiles_without_overfull_boxes(wide_study, tmp_path):
    if _pdflatex() is None:
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended lmodern); "
                    "the LaTeX tables are checked for structure in test_supplement.py")  # fmt: skip
    _, result = wide_study
    # Compiled where it was written (its figures are relative paths from there), the outputs kept in tmp_path.
    for _ in range(2):  # longtable needs two runs to settle its column widths
        run = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", f"-output-directory={tmp_path}",
                              "-jobname=tables", result.latex.name], check=False, cwd=result.latex.parent,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert run.returncode == 0, log[-3000:]
    assert "Float too large" not in log
    errors = [line for line in log.splitlines() if line.startswith("!")]
    assert not errors, errors
    overfull = [float(m) for m in re.findall(r"Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\)", log)]
    assert all(o <= 2.0 for o in overfull), f"overfull boxes (pt): {sorted(overfull)[-5:]}"
    assert (tmp_path / "tables.pdf").stat().st_size > 10_000


def test_latex_paginates_and_turns_wide_tables(wide_study):
    _, result = wide_study
    tex = result.latex.read_text(encoding="utf-8")
    assert tex.startswith("%") and r"\documentclass" in tex and tex.rstrip().endswith(r"\end{document}")
    assert r"\begin{longtable}" in tex and r"\begin{landscape}" in tex and r"\endhead" in tex
    assert r"\resizebox" not in tex and r"\begin{table}" not in tex  # never shrunk, never a float
    assert re.search(r"\\(footnotesize|scriptsize)", tex) and r"\tiny" not in tex
    assert re.search(r"\\textbf\{Table S\d+\} \(continued\)", tex)  # the header repeated on continuation pages
    assert "(columns, part 2 of" in tex


def test_latex_holds_every_figure_and_note_in_document_order(wide_study):
    _, result = wide_study
    tex = result.latex.read_text(encoding="utf-8")
    figures = [it for it in result.items if it.kind == "figure"]
    assert figures, "the test study must have figures"
    included = re.findall(r"\\includegraphics\[width=([\d.]+)cm\]\{([^}]+)\}", tex)
    assert len(included) == len(figures)
    for (width, rel), item in zip(included, figures, strict=True):
        assert (result.latex.parent / rel).resolve() == (result.docx.parent.parent / item.path).with_suffix(".pdf").resolve()
        assert 0 < float(width) <= 17.0  # the journal width it was drawn at, never wider than the text block
    assert [int(n) for n in re.findall(r"\\setcounter\{figure\}\{(\d+)\}", tex)] == [it.number - 1 for it in figures]
    order = [m.group(1) for m in re.finditer(r"^% ((?:Table|Figure|Note) S\d+)", tex, flags=re.M)]
    shown = [it.label for it in result.items if it.kind == "figure" or it.kind == "note" or it.inline]
    assert list(dict.fromkeys(order)) == shown


def test_padding_constant_matches_the_writers():
    assert PAD_CM == pytest.approx(0.2)  # DOCX 57 twips x 2, LaTeX \tabcolsep 0.1 cm x 2, HTML .1cm x 2


def test_stats_tables_write_signed_intervals_with_to_on_every_row():
    """The pre-formatted columns of the CSV files follow the same rule (helpers.stats.tables)."""
    preds = _predictions()
    pairwise = pairwise_comparison_table(preds)
    assert pairwise["NRI (95% CI)"].str.contains(" to ").all() and pairwise["IDI (95% CI)"].str.contains(" to ").all()
    calibration = calibration_table(preds)
    assert calibration["Slope (95% CI)"].str.contains(" to ").all()
    performance = performance_table(preds, n_bootstrap=50)
    assert not performance["AUC (95% CI)"].str.contains(" to ").any()
