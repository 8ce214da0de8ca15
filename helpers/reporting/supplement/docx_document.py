"""The supplement as a Word document (python-docx)."""


from __future__ import annotations

from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import _FIXED_TIME, Supplement, SupplementItem, _figure_note, _numeric_columns, _table_note
from helpers.reporting.writer import _normalise_zip


def _png_info(data: bytes) -> tuple[int, int, float]:
    """Width and height in pixels and the resolution in dpi (pHYs chunk; 300 when absent) of a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    width, height, dpi = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), 300.0
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"pHYs" and length >= 9 and data[pos + 16] == 1:  # unit: metre
            dpi = int.from_bytes(data[pos + 8 : pos + 12], "big") * 0.0254 or 300.0
            break
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return width, height, dpi


_LANDSCAPE_COLUMNS = 10  # DOCX tables with more columns go on landscape pages


def _docx_font_size(n_columns: int) -> float:
    return 9 if n_columns <= 6 else 8 if n_columns <= 10 else 7 if n_columns <= 16 else 6


def write_docx(supp: Supplement, path: str | Path, max_rows: int = 40) -> Path:
    """Write the supplement as a Word document (A4, fixed metadata dates, byte-identical for identical inputs)."""
    from docx import Document
    from docx.enum.section import WD_ORIENT, WD_SECTION
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Cm, Emu, Pt

    path = Path(path)
    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Cm(21.0), Cm(29.7)
    sec.left_margin = sec.right_margin = sec.top_margin = sec.bottom_margin = Cm(2.0)
    usable_w, usable_h = Cm(17.0), Cm(22.0)
    doc.styles["Normal"].font.size = Pt(10)
    props = doc.core_properties
    props.title, props.author, props.last_modified_by, props.revision = supp.title, "helpers.reporting.supplement", "helpers.reporting.supplement", 1
    props.created = props.modified = props.last_printed = _FIXED_TIME.replace(tzinfo=None)
    props.comments = props.subject = props.keywords = props.category = ""

    def orientation(landscape: bool) -> None:
        # Wide tables get a landscape page of their own (a new section), then portrait pages resume.
        new = doc.add_section(WD_SECTION.NEW_PAGE)
        new.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
        new.page_width, new.page_height = (Cm(29.7), Cm(21.0)) if landscape else (Cm(21.0), Cm(29.7))

    def caption(item: SupplementItem) -> None:
        p = doc.add_paragraph(style="Caption")
        p.add_run(f"{item.label}. ").bold = True
        p.add_run(item.caption)

    def small(text: str) -> None:
        if text:
            p = doc.add_paragraph()
            r = p.add_run(text)
            r.font.size = Pt(8)
            r.italic = True

    def add_table(item: SupplementItem) -> None:
        header, rows = supp.cells[item.anchor]
        size = Pt(_docx_font_size(len(header)))
        numeric = _numeric_columns(rows, len(header))
        table = doc.add_table(rows=1, cols=max(1, len(header)))
        table.style = "Table Grid"
        for cell, text in zip(table.rows[0].cells, header, strict=False):
            run = cell.paragraphs[0].add_run(text)
            run.bold, run.font.size = True, size
        tr_pr = table.rows[0]._tr.get_or_add_trPr()
        hdr = OxmlElement("w:tblHeader")
        hdr.set(qn("w:val"), "true")
        tr_pr.append(hdr)  # repeat the header row on every page
        for row in rows:
            cells = table.add_row().cells
            for j, (cell, text) in enumerate(zip(cells, row, strict=False)):
                para = cell.paragraphs[0]
                para.add_run(text).font.size = size
                if numeric[j]:
                    para.alignment = WD_ALIGN_PARAGRAPH.RIGHT

    doc.add_heading(supp.title, level=0)
    doc.add_paragraph(supp.subtitle)
    doc.add_heading("Contents", level=1)
    for _, title, items in supp.sections:
        doc.add_paragraph(title, style="List Bullet")
        for it in items:
            doc.add_paragraph(f"{it.label}. {it.caption}", style="List Bullet 2")
    doc.add_paragraph(f"{supp.checklist.label}. {supp.checklist.caption}", style="List Bullet")
    doc.add_heading("Supplementary methods", level=1)
    for para in supp.methods:
        doc.add_heading(para.title, level=2)
        doc.add_paragraph(para.text)
    for _, title, items in supp.sections:
        doc.add_heading(title, level=1)
        for it in items:
            if it.kind == "table":
                landscape = it.inline and (it.n_columns or 0) > _LANDSCAPE_COLUMNS
                if landscape:
                    orientation(True)
                caption(it)
                if it.inline:
                    add_table(it)
                small(_table_note(it, max_rows, supp.root))
                if landscape:
                    orientation(False)
            elif it.kind == "figure":
                w_px, h_px, dpi = _png_info((supp.root / it.path).read_bytes())
                # Natural size at the PNG's resolution, shrunk to the page width (and height).
                width = int(min(Emu(int(w_px / dpi * 914400)), usable_w, usable_h * w_px / h_px))
                doc.add_picture(str(supp.root / it.path), width=width)
                doc.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
                caption(it)
                small(_figure_note(it, supp.root))
            else:
                caption(it)
                p = doc.add_paragraph()
                r = p.add_run(supp.notes_text[it.anchor].rstrip("\n"))
                r.font.name, r.font.size = "Courier New", Pt(8)
                small(f"File: {it.path}.")
    doc.add_heading("Reporting checklist", level=1)
    caption(supp.checklist)
    add_table(supp.checklist)
    small(supp.checklist.note)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    _normalise_zip(path)
    return path


# --------------------------------------------------------------------------- HTML
