"""The supplement as a Word document (python-docx)."""


from __future__ import annotations

import re
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import _FIXED_TIME, Supplement, SupplementItem, _figure_note, _table_note
from helpers.reporting.supplement.table_layout import PAD_CM, part_caption
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


_TABLE_FONT = "Arial"
_INTERVAL_HYPHEN = re.compile(r"(?<=\d)-(?=[\d-])")  # the separator of "(lower-upper)", not a minus sign


def _border(parent, tag: str, edges: dict[str, int]) -> None:
    """Set ``w:<edge>`` borders (size in eighths of a point; 0: none) under a ``w:tblBorders`` / ``w:tcBorders`` element."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    borders = OxmlElement(tag)
    for edge, size in edges.items():
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:val"), "single" if size else "nil")
        if size:
            el.set(qn("w:sz"), str(size))
            el.set(qn("w:space"), "0")
            el.set(qn("w:color"), "000000")
        borders.append(el)
    parent.append(borders)


def _three_line(table) -> None:
    """Journal (booktabs) rules: a rule above and below the table and under the header row; no vertical lines."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    tbl_pr = table._tbl.tblPr
    for old in tbl_pr.findall(qn("w:tblBorders")):
        tbl_pr.remove(old)
    _border(tbl_pr, "w:tblBorders", {"top": 12, "left": 0, "bottom": 12, "right": 0, "insideH": 0, "insideV": 0})
    margins = OxmlElement("w:tblCellMar")
    for edge, twips in (("left", 57), ("right", 57), ("top", 0), ("bottom", 0)):  # 57 twips = 0.1 cm
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:w"), str(twips))
        el.set(qn("w:type"), "dxa")
        margins.append(el)
    tbl_pr.append(margins)
    layout = OxmlElement("w:tblLayout")
    layout.set(qn("w:type"), "fixed")
    tbl_pr.append(layout)
    for cell in table.rows[0].cells:
        _border(cell._tc.get_or_add_tcPr(), "w:tcBorders", {"bottom": 6})


def write_docx(supp: Supplement, path: str | Path) -> Path:
    """Write the supplement as a Word document (A4, fixed metadata dates, byte-identical for identical inputs).

    Tables follow their :class:`~helpers.reporting.supplement.table_layout.TableLayout`: landscape parts get landscape
    sections, column widths are fixed, the header row repeats on every page and rows are not split across pages.
    """
    from docx import Document
    from docx.enum.section import WD_ORIENT, WD_SECTION
    from docx.enum.table import WD_TABLE_ALIGNMENT
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
    state = {"landscape": False}

    def orientation(landscape: bool) -> None:
        # Landscape table parts get landscape pages (a new section); portrait pages resume after them.
        if state["landscape"] == landscape:
            return
        new = doc.add_section(WD_SECTION.NEW_PAGE)
        new.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
        new.page_width, new.page_height = (Cm(29.7), Cm(21.0)) if landscape else (Cm(21.0), Cm(29.7))
        state["landscape"] = landscape

    def caption(item: SupplementItem, part: int = 0, n_parts: int = 1) -> None:
        label, text = part_caption(item, part, n_parts)
        p = doc.add_paragraph(style="Caption")
        p.add_run(f"{label}. ").bold = True
        p.add_run(text)
        p.paragraph_format.keep_with_next = True

    def small(text: str) -> None:
        if text:
            p = doc.add_paragraph()
            r = p.add_run(text)
            r.font.size = Pt(8)
            r.italic = True

    def cell_text(cell, text: str, size, bold: bool = False, right: bool = False, ci: bool = False) -> None:
        # Arial (Liberation Sans in LibreOffice): the metrics the column widths were estimated with.
        para = cell.paragraphs[0]
        para.paragraph_format.space_after = Pt(0)
        # in an interval the hyphen between the bounds is a non-breaking hyphen: "(0.736-1.000)" stays on one line
        pieces = _INTERVAL_HYPHEN.split(text) if ci else [text]
        for k, piece in enumerate(pieces):
            if k:
                run = para.add_run()
                run._r.append(OxmlElement("w:noBreakHyphen"))
                run.font.size, run.font.name = size, _TABLE_FONT
            run = para.add_run(piece)
            run.font.size, run.bold, run.font.name = size, bold, _TABLE_FONT
        if right:
            para.alignment = WD_ALIGN_PARAGRAPH.RIGHT

    def add_part(display, part) -> None:
        size = Pt(part.font_pt)
        cols = [display.columns[j] for j in part.columns]
        table = doc.add_table(rows=1, cols=max(1, len(cols)))
        table.alignment = WD_TABLE_ALIGNMENT.CENTER
        table.autofit = False
        _three_line(table)
        widths = [Cm(w + PAD_CM) for w in part.widths_cm]
        for column, width in zip(table.columns, widths, strict=False):
            column.width = width  # the grid (w:gridCol): LibreOffice lays tables out by it, Word by the cell widths
        for cell, col, width in zip(table.rows[0].cells, cols, widths, strict=False):
            cell.width = width
            cell_text(cell, col.label, size, bold=True, right=col.numeric)
        tr_pr = table.rows[0]._tr.get_or_add_trPr()
        hdr = OxmlElement("w:tblHeader")
        hdr.set(qn("w:val"), "true")
        tr_pr.append(hdr)  # repeat the header row on every page
        for row in display.rows:
            r = table.add_row()
            r._tr.get_or_add_trPr().append(OxmlElement("w:cantSplit"))
            for cell, j, col, width in zip(r.cells, part.columns, cols, widths, strict=False):
                cell.width = width
                cell_text(cell, row[j], size, right=col.numeric, ci=col.kind == "ci")

    def add_table(item: SupplementItem) -> None:
        shown = supp.tables[item.anchor]
        parts = shown.layout.parts
        for k, part in enumerate(parts):
            orientation(part.landscape)
            caption(item, k, len(parts))
            add_part(shown.display, part)
        small(shown.note)

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
        doc.add_heading(para.heading, level=2)
        doc.add_paragraph(para.text)
    if supp.conventions:
        doc.add_heading("How the tables are written", level=2)
        for text in supp.conventions:
            doc.add_paragraph(text)
    for _, title, items in supp.sections:
        orientation(False)
        doc.add_heading(title, level=1)
        for it in items:
            if it.kind == "table":
                if it.inline:
                    add_table(it)
                else:
                    orientation(False)
                    caption(it)
                    small(_table_note(it, 0, supp.root))
            elif it.kind == "figure":
                orientation(False)
                w_px, h_px, dpi = _png_info((supp.root / it.path).read_bytes())
                # Natural size at the PNG's resolution, shrunk to the page width (and height).
                width = int(min(Emu(int(w_px / dpi * 914400)), usable_w, usable_h * w_px / h_px))
                doc.add_picture(str(supp.root / it.path), width=width)
                doc.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
                doc.paragraphs[-1].paragraph_format.keep_with_next = True
                caption(it)
                small(_figure_note(it, supp.root))
            else:
                orientation(False)
                caption(it)
                p = doc.add_paragraph()
                r = p.add_run(supp.notes_text[it.anchor].rstrip("\n"))
                r.font.name, r.font.size = "Courier New", Pt(8)
                small(f"File: {it.path}.")
    orientation(False)
    doc.add_heading("Reporting checklist", level=1)
    add_table(supp.checklist)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    _normalise_zip(path)
    return path
