"""The supplement as a standalone LaTeX document (pdflatex): every inlined table, every figure and every note."""


from __future__ import annotations

import os
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import Supplement, SupplementItem, SupplementTable, _figure_note
from helpers.reporting.supplement.docx_document import _png_info
from helpers.reporting.supplement.table_format import DisplayTable
from helpers.reporting.supplement.table_layout import _LONG_TOKEN, TablePart, cell_tokens, part_caption

_TEX_CHARS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "±": r"$\pm$", "µ": r"$\mu$", "μ": r"$\mu$", "–": "--", "—": "---",
    "…": r"\ldots{}", "°": r"\textdegree{}", "\n": " ", "\r": " ",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and a few symbols pdflatex lacks) in plain text."""
    return "".join(_TEX_CHARS.get(ch, ch) for ch in str(text))


_PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{textcomp}
\usepackage{array,booktabs,longtable,pdflscape,graphicx}
\usepackage[font=small,labelfont=bf,labelsep=period,justification=raggedright,singlelinecheck=false]{caption}
\renewcommand{\thetable}{S\arabic{table}}
\renewcommand{\thefigure}{S\arabic{figure}}
\setlength{\tabcolsep}{0.1cm}
\setlength{\LTcapwidth}{\linewidth}
\setlength{\LTpre}{6pt}
\setlength{\LTpost}{2pt}
\setlength{\parindent}{0pt}
\setlength{\parskip}{4pt}
\raggedbottom
"""
_FONT = {8.0: r"\footnotesize", 7.0: r"\scriptsize"}  # sizes of the 10 pt article class


def _tex_cell(text: str, ci: bool = False) -> str:
    """A cell: escaped, a confidence interval kept on one line, long identifiers breakable after ``_``."""
    tokens = cell_tokens(text, ci=True) if ci else []
    if len(tokens) == 2:
        return f"{latex_escape(tokens[0])} \\mbox{{{latex_escape(tokens[1])}}}"
    escaped = latex_escape(text)
    return escaped.replace(r"\_", r"\_\allowbreak{}") if any(len(t) > _LONG_TOKEN for t in text.split()) else escaped


def _breakable_note(text: str) -> str:
    """A note under a table or figure, escaped, with file paths breakable after ``_`` and ``/``."""
    return latex_escape(text).replace(r"\_", r"\_\allowbreak{}").replace("/", r"/\allowbreak{}")


def _column_spec(part: TablePart, numeric: list[bool]) -> str:
    align = {True: r">{\raggedleft\arraybackslash}", False: r">{\raggedright\arraybackslash}"}
    return "".join(f"{align[num]}p{{{w:.2f}cm}}" for w, num in zip(part.widths_cm, numeric, strict=True))


def _latex_part(item: SupplementItem, display: DisplayTable, part: TablePart, k: int, n_parts: int, note: str) -> str:
    cols = [display.columns[j] for j in part.columns]
    n = len(cols)
    label, text = part_caption(item, k, n_parts)
    head = " & ".join(f"\\multicolumn{{1}}{{>{{\\raggedleft\\arraybackslash}}p{{{w:.2f}cm}}}}{{\\textbf{{{latex_escape(c.label)}}}}}"
                      if c.numeric else f"\\textbf{{{latex_escape(c.label)}}}" for c, w in zip(cols, part.widths_cm, strict=True))  # fmt: skip
    caption = f"\\caption{{{latex_escape(item.caption)}}}\\label{{tab:supp-s{item.number}}}" if k == 0 else \
        f"\\caption*{{\\textbf{{{latex_escape(label)}.}} {latex_escape(text)}}}"  # fmt: skip
    if k == 0 and n_parts > 1:
        caption = f"\\caption{{{latex_escape(text)}}}\\label{{tab:supp-s{item.number}}}"
    lines = [
        f"% {label}: {item.path or item.name}",
        *([r"\begin{landscape}"] if part.landscape else []),
        f"\\setcounter{{table}}{{{item.number - 1}}}",
        "{" + _FONT[part.font_pt] + r"\setlength{\LTcapwidth}{\linewidth}",
        f"\\begin{{longtable}}{{{_column_spec(part, [c.numeric for c in cols])}}}",
        caption + r"\\",
        r"\toprule", head + r" \\", r"\midrule", r"\endfirsthead",
        f"\\multicolumn{{{n}}}{{@{{}}l}}{{\\small\\textbf{{{latex_escape(item.label)}}} (continued)}}\\\\",
        r"\toprule", head + r" \\", r"\midrule", r"\endhead",
        r"\midrule", f"\\multicolumn{{{n}}}{{r@{{}}}}{{\\emph{{continued on the next page}}}}\\\\", r"\endfoot",
        r"\bottomrule", r"\endlastfoot",
    ]
    lines += [" & ".join(_tex_cell(row[j], c.kind == "ci") for j, c in zip(part.columns, cols, strict=True)) + r" \\" for row in display.rows]
    lines += [r"\end{longtable}", "\\par}"]
    if note:
        breakable = _breakable_note(note)
        lines.append(f"{{\\footnotesize\\itshape\\raggedright {breakable}\\par}}")
    lines += [*([r"\end{landscape}"] if part.landscape else []), ""]
    return "\n".join(lines)


def _latex_table(item: SupplementItem, shown: SupplementTable) -> str:
    parts = shown.layout.parts
    return "\n".join(_latex_part(item, shown.display, part, k, len(parts), shown.note if k == len(parts) - 1 else "")
                     for k, part in enumerate(parts))  # fmt: skip



#: Text block of the A4 page with 2 cm margins (cm): figures larger than this are scaled down, never up.
_TEXT_WIDTH_CM, _TEXT_HEIGHT_CM = 17.0, 23.0


def _figure_size_cm(png: Path) -> tuple[float, float]:
    """The figure's printed size: its natural size (pixels / dpi, the journal width it was drawn at) fitted to the page."""
    w_px, h_px, dpi = _png_info(png.read_bytes())
    width, height = w_px / dpi * 2.54, h_px / dpi * 2.54
    scale = min(1.0, _TEXT_WIDTH_CM / width, _TEXT_HEIGHT_CM / height)
    return round(width * scale, 2), round(height * scale, 2)


def _latex_figure(item: SupplementItem, root: Path, tex_dir: Path) -> str:
    """A figure: the vector PDF (the PNG when there is none) at its journal size, numbered like the other documents."""
    png = root / item.path
    pdf = png.with_suffix(".pdf")
    source = pdf if pdf.is_file() else png
    width, _ = _figure_size_cm(png)
    rel = Path(os.path.relpath(source, tex_dir)).as_posix()
    note = _breakable_note(_figure_note(item, root))
    return "\n".join([
        f"% {item.label}: {item.path}",
        # Not a float: figures stay in document order between the tables, each kept on one page with its caption.
        f"\\setcounter{{figure}}{{{item.number - 1}}}",
        r"\par\medskip\noindent\begin{minipage}{\linewidth}\centering",
        f"\\includegraphics[width={width:.2f}cm]{{{rel}}}",
        f"\\captionof{{figure}}{{{latex_escape(item.caption)}}}\\label{{fig:supp-s{item.number}}}",
        f"{{\\footnotesize\\itshape\\raggedright {note}\\par}}",
        r"\end{minipage}\par\medskip", "",
    ])


def _latex_note(item: SupplementItem, text: str) -> str:
    """A text note (e.g. the Rad-score formula), line breaks kept."""
    lines = [latex_escape(line).replace(r"\_", r"\_\allowbreak{}") or "~" for line in text.rstrip().split("\n")]
    return "\n".join([
        f"% {item.label}: {item.path}",
        f"\\paragraph{{{latex_escape(item.label)}.}} {latex_escape(item.caption)}\\par",
        "{\\footnotesize\\ttfamily\\raggedright " + "\\\\\n".join(lines) + "\\par}", "",
    ])


def write_latex(supp: Supplement, path: str | Path) -> Path:
    """Write every shown table (and the checklist), every figure and every note as a standalone LaTeX document (pdflatex).

    Tables are booktabs ``longtable`` s (pages break inside them, the header repeats), numbered S1, S2, ... like the
    DOCX / HTML supplement; landscape parts are set in ``landscape`` (pdflscape) and column widths come from the
    :class:`~helpers.reporting.supplement.table_layout.TableLayout`. Figures are the vector PDFs (relative paths from
    the ``.tex`` file, so compile it where it was written) at the journal width they were drawn at. The items between ``% BEGIN TABLES`` and
    ``% END TABLES`` can be pasted into another document with the same preamble.
    """
    path = Path(path)
    study = latex_escape(supp.study)
    out = [
        f"% Supplementary tables and figures of study '{study}', generated by helpers.reporting.supplement from reports/{study}/.",
        r"% Compile with pdflatex. Tables are numbered S1, S2, ... like the DOCX/HTML supplement; data tables that are only",
        r"% referenced there (by file) are not repeated here.",
        _PREAMBLE,
        r"\begin{document}",
        f"\\section*{{Supplementary tables and figures: {study}}}",
        *[latex_escape(t) + "\n" for t in supp.conventions],
        "% BEGIN TABLES",
    ]
    for it in supp.items:
        if it.kind == "table" and it.inline:
            out.append(_latex_table(it, supp.tables[it.anchor]))
        elif it.kind == "figure" and (supp.root / it.path).is_file():
            out.append(_latex_figure(it, supp.root, path.parent.resolve()))
        elif it.kind == "note" and it.anchor in supp.notes_text:
            out.append(_latex_note(it, supp.notes_text[it.anchor]))
    out += ["% END TABLES", r"\end{document}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
