"""Reporting checklists (CLEAR, TRIPOD+AI) and the METRICS score: complete item lists, one status per item, citations that exist."""

from __future__ import annotations

import re
import warnings

import pytest

from helpers.reporting.supplement import SupplementWarning, assemble_supplement
from helpers.reporting.supplement.checklists import (
    CONDITIONS,
    METHODS_KEYS,
    STATUSES,
    checklist_table,
    load_checklists,
    metrics_judgements,
    metrics_score,
    validate_checklists,
)  # fmt: skip

from .test_supplement import _write_study

TRIPOD_AI_ITEMS = [
    "1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c", "9a", "9b", "9c", "10", "11",
    "12a", "12b", "12c", "12d", "12e", "12f", "12g", "13", "14", "15", "16", "17", "18a", "18b", "18c", "18d", "18e", "18f", "19",
    "20a", "20b", "20c", "21", "22", "23a", "23b", "24", "25", "26", "27a", "27b", "27c",
]  # fmt: skip  (Collins et al., BMJ 2024;385:e078378, checklist of 11 January 2024)
METRICS_CATEGORIES = {"Study design": 0.2022, "Imaging data": 0.1461, "Segmentation": 0.0674, "Image processing and feature extraction": 0.1348,
                      "Feature processing": 0.0899, "Preparation for modeling": 0.0899, "Metrics and comparison": 0.1348, "Testing": 0.1124,
                      "Open science": 0.0225}  # fmt: skip  (Kocak et al., Insights Imaging 2024;15:8, Figure 2)
_LABEL_GROUP = re.compile(r"\b(Table|Figure|Note)s? ((?:S\d+(?:, | and )?)+)")


def _cited_labels(text: str) -> set[str]:
    """``Tables S2 and S4; Figure S1`` -> {"Table S2", "Table S4", "Figure S1"}."""
    return {f"{kind} S{n}" for kind, group in _LABEL_GROUP.findall(text) for n in re.findall(r"S(\d+)", group)}


@pytest.fixture(scope="module")
def supplement(tmp_path_factory):
    cfg = _write_study(tmp_path_factory.mktemp("checklists"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupplementWarning)
        supp = assemble_supplement(cfg)
    return cfg, supp


def _guideline(name: str) -> list[dict]:
    return next(g["items"] for g in load_checklists()["guidelines"] if g["name"] == name)



def _cells(supp, anchor):
    """Header and rows of a table as the documents show it."""
    table = supp.tables[anchor].display
    return table.header, [list(r) for r in table.rows]

def test_clear_has_its_58_items_numbered_in_order():
    items = _guideline("CLEAR")
    assert [it["id"] for it in items] == [str(i) for i in range(1, 59)]
    sections = {it["id"]: it["section"] for it in items}
    assert (sections["1"], sections["2"], sections["3"], sections["44"], sections["49"]) == ("Title", "Abstract", "Keywords", "Results", "Discussion")
    assert sections["15"] == "Methods - data" and sections["57"] == "Open science - model availability"


def test_tripod_ai_has_every_published_item_once():
    assert [it["id"] for it in _guideline("TRIPOD+AI")] == TRIPOD_AI_ITEMS


def test_every_item_has_exactly_one_status(supplement):
    cfg, supp = supplement
    items = [it for it in supp.items if it.path]
    rows = checklist_table(cfg, items, supp.methods, ["models/final_model.joblib"])
    assert len(rows) == 58 + len(TRIPOD_AI_ITEMS)
    for row in rows:
        assert row["status"] in STATUSES
        assert row["addressed"].startswith(STATUSES[row["status"]])
        assert sum(row["addressed"].startswith(label) for label in STATUSES.values()) == 1
    status = {(r["guideline"], r["item"]): r for r in rows}
    assert status["CLEAR", "1"]["addressed"] == "For the authors to complete"  # title: manuscript
    assert status["CLEAR", "17"]["addressed"].startswith("Not applicable: no clinical variables")  # no clinical variables configured
    assert status["CLEAR", "15"]["addressed"] == "Reported: Table S1; Methods (Cohorts and outcome; Models)"
    assert status["CLEAR", "57"]["addressed"] == "For the authors to complete (material from this run: models/final_model.joblib)"
    assert status["TRIPOD+AI", "13"]["addressed"] == "Reported: Methods (Models)"  # SMOTE is configured
    assert status["TRIPOD+AI", "12f"]["status"] == "not_applicable"
    assert status["CLEAR", "44"]["addressed"] == "For the authors to complete (not addressed by this run)"  # no Table 1 in this run


def test_reported_cites_only_items_and_methods_that_exist(supplement):
    cfg, supp = supplement
    header, rows = _cells(supp, supp.checklist.anchor)
    labels = {it.label for it in supp.items}
    titles = {p.title for p in supp.methods if p.text}
    assert header == ["Item", "Section: topic", "Status"] and rows[0][:2] == ["CLEAR 1", "Title: Title indicating radiomics and the radiomic methodology"]
    assert [r[0] for r in rows].count("TRIPOD+AI 12a") == 1 and rows[-1][0] == "TRIPOD+AI 27c"
    reported = [r[header.index("Status")] for r in rows if r[header.index("Status")].startswith("Reported")]
    assert len(reported) > 20
    for text in [r[header.index("Status")] for r in rows]:
        assert _cited_labels(text) <= labels, text
        for pointer in re.findall(r"Methods \(([^)]*)\)", text):
            assert set(pointer.split("; ")) <= titles, text
    # the data refers to paragraphs this run did not write (e.g. segmentation), and (checked above) no status cites them
    written = {p.key for p in supp.methods if p.text}
    assert "segmentation" not in written
    assert any("segmentation" in it.get("methods", []) for g in ("CLEAR", "TRIPOD+AI") for it in _guideline(g))


def test_checklist_is_the_last_table_after_review_points_and_metrics(supplement):
    _, supp = supplement
    titles = [title for _, title, _ in supp.sections]
    assert titles[-2:] == ["Points a reviewer will raise", "Methodological quality (METRICS)"]
    numbers = [it.number for it in supp.items if it.kind == "table"]
    assert numbers == list(range(1, len(numbers) + 1)) and supp.checklist.number == numbers[-1]
    header, rows = _cells(supp, supp.sections[-2][2][0].anchor)
    assert header == ["#", "Severity", "Point", "Source"] and rows
    assert all(r[1] in ("major", "minor", "-") for r in rows)


def test_checklist_data_is_validated():
    good = {"id": "1", "section": "Title", "topic": "t", "manuscript": True}
    validate_checklists({"guidelines": [{"name": "X", "reference": "r", "items": [good]}]})
    bad = [
        ({**good, "outptus": ["x"]}, "keys must be among"),
        ({"id": "1", "section": "S", "topic": "t", "methods": ["feature_extraction"]}, "methods keys"),
        ({"id": "1", "section": "S", "topic": "t", "outputs": ["x"], "requires": "gpu"}, "requires 'gpu'"),
        ({**good, "outputs": ["x"]}, "a manuscript item cites nothing"),
        ({"id": "1", "section": "S", "topic": "t"}, "a run item needs"),
    ]
    for entry, message in bad:
        with pytest.raises(ValueError, match=message):
            validate_checklists({"guidelines": [{"name": "X", "reference": "r", "items": [entry]}]})
    with pytest.raises(ValueError, match="listed twice"):
        validate_checklists({"guidelines": [{"name": "X", "reference": "r", "items": [good, good]}]})
    data = load_checklists()
    used = {k for g in data["guidelines"] for it in g["items"] for k in it.get("methods", [])}
    assert used <= METHODS_KEYS and {it.get("requires") for g in data["guidelines"] for it in g["items"]} - {None} <= set(CONDITIONS)


# --------------------------------------------------------------------------- METRICS


def test_metrics_items_and_published_weights():
    metrics = load_checklists()["metrics"]
    items = metrics["items"]
    assert [it["id"] for it in items] == list(range(1, 31)) and len(metrics["conditions"]) == 5
    assert sum(it["weight"] for it in items) == pytest.approx(metrics["total_weight"], abs=1e-9) == 1.0
    assert metrics["category_weights"] == METRICS_CATEGORIES
    for category, weight in METRICS_CATEGORIES.items():  # item weights add up to the category weight (published to 4 decimals)
        assert sum(it["weight"] for it in items if it["category"] == category) == pytest.approx(weight, abs=1.5e-4)
    assert {it["id"]: it["weight"] for it in items}[27] == 0.0749 and {it["id"]: it["weight"] for it in items}[3] == 0.0919
    conditional = {it["id"]: it.get("conditions", []) for it in items if it.get("conditions")}
    assert conditional == {8: ["1"], 9: ["1", "2"], 10: ["1"], 12: ["3"], 14: ["4"], 15: ["4"], 16: ["4"], 17: ["5"]}


def test_metrics_score_renormalises_over_applicable_items():
    """Worked by hand: no segmentation (items 8-10 n/a, weight 0.0674), items 1-3 open, six items met, the rest not met.

    Applicable weight 1 - 0.0674 = 0.9326; met 0.0438 + 0.0311 + 0.0415 + 0.0599 + 0.0234 + 0.0176 = 0.2173 (items 6, 12, 13, 18,
    21, 22); open 0.0368 + 0.0735 + 0.0919 = 0.2022; judged 0.9326 - 0.2022 = 0.7304. Score over the judged items
    0.2173 / 0.7304 = 29.75%; range 0.2173 / 0.9326 = 23.30% to 0.4195 / 0.9326 = 44.98%.
    """
    weights = {int(it["id"]): it["weight"] for it in load_checklists()["metrics"]["items"]}
    values = {i: "no" for i in weights}
    values.update({8: "n/a", 9: "n/a", 10: "n/a", 1: "authors", 2: "authors", 3: "authors"})
    values.update({i: "yes" for i in (6, 12, 13, 18, 21, 22)})
    score = metrics_score(values, weights)
    assert score.applicable_weight == pytest.approx(0.9326) and score.met == pytest.approx(0.2173)
    assert score.judged == pytest.approx(29.75, abs=0.01)
    assert (score.low, score.high) == (pytest.approx(23.30, abs=0.01), pytest.approx(44.98, abs=0.01))
    everything = metrics_score(dict.fromkeys(weights, "yes"), weights)
    assert everything.judged == everything.low == everything.high == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no applicable"):
        metrics_score(dict.fromkeys(weights, "n/a"), weights)


def test_metrics_judgements_of_a_run(supplement):
    cfg, supp = supplement
    items = [it for it in supp.items if it.path]
    conditions, judged = metrics_judgements(cfg, supp.root, items, supp.methods, ["models/final_model.joblib"])
    assert sorted(judged) == list(range(1, 31)) and all(j.value in ("yes", "no", "n/a", "authors") for j in judged.values())
    assert conditions["2"][0] is False and judged[9].value == "n/a"  # no segmentation network
    assert conditions["5"][0] is False and judged[17].value == "n/a"  # no end-to-end deep learning
    assert judged[14].value == "yes" and "Table S" in judged[14].basis  # ICC filter (icc_retained_counts)
    assert judged[22].value == "no"  # no calibration output in this run
    assert judged[2].value == judged[3].value == "authors"
    labels = {it.label for it in supp.items}
    for j in judged.values():
        assert _cited_labels(j.basis) <= labels, j.basis
    header, rows = _cells(supp, supp.sections[-1][2][0].anchor)
    assert header == ["Item", "Category: topic", "Weight", "Judgement", "Basis"] and len(rows) == 32
    assert [r[0] for r in rows[:30]] == [str(i) for i in range(1, 31)] and rows[8][1].startswith("Segmentation: ")
    assert rows[-2][0] == rows[-1][0] == "Score" and re.fullmatch(r"\d+\.\d% to \d+\.\d%", rows[-1][3])


def test_metrics_items_of_a_step_that_has_not_run_are_not_judged(supplement):
    cfg, supp = supplement
    partial = [it for it in supp.items if it.path and it.step != "signature"]  # the signature step configured, no output yet
    _, judged = metrics_judgements(cfg, supp.root, partial, supp.methods)
    assert (judged[14].value, judged[14].basis) == ("authors", "not judged: the signature step has not run yet")
    assert judged[22].value == "no"  # no statistics step configured: calibration is not assessed
