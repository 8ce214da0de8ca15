"""The supplement as one self-contained HTML file."""


from __future__ import annotations

import base64
import html
from pathlib import Path

from helpers.errors import SupplementWarning  # noqa: F401  (defined in helpers.errors)
from helpers.reporting.supplement.collect import Supplement, SupplementItem, SupplementTable, _figure_note, _table_note
from helpers.reporting.supplement.docx_document import _png_info
from helpers.reporting.supplement.table_format import DisplayTable
from helpers.reporting.supplement.table_layout import PAD_CM, TablePart, cell_tokens, part_caption

_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;color:#111;background:#fff;max-width:62rem;margin:2rem auto;padding:0 1.2rem;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.3rem}h2{font-size:1.3rem;border-bottom:1px solid #bbb;padding-bottom:.2rem;margin-top:2.5rem}
h3{font-size:1.05rem;margin:1.2rem 0 .3rem}p.sub{color:#444;margin-top:0}
nav.toc{background:#f5f5f5;border:1px solid #ddd;padding:.6rem 1.2rem;font-size:.9rem}nav.toc ul{padding-left:1.2rem;margin:.2rem 0}
nav.toc a{color:#124;text-decoration:none}nav.toc a:hover{text-decoration:underline}
section.item{margin:1.2rem 0 2rem}.tbl{overflow-x:auto;margin:.3rem 0 .8rem}
table{border-collapse:collapse;table-layout:fixed;font-family:"Liberation Sans",Arial,Helvetica,sans-serif;line-height:1.25}
th,td{padding:.05cm .1cm;text-align:left;vertical-align:top;overflow-wrap:break-word}
thead th{border-top:1.5px solid #111;border-bottom:.75px solid #111;font-weight:bold}tbody tr:last-child td{border-bottom:1.5px solid #111}
th.num,td.num{text-align:right}.ci{white-space:nowrap}tbody tr:nth-child(even){background:#fafafa}
figure{margin:0}figure img{max-width:100%;height:auto;display:block;margin:0 auto}
.caption{font-size:.92rem;margin:.4rem 0}.caption b{margin-right:.3rem}.note{font-size:.8rem;color:#444;font-style:italic;margin:.2rem 0}
pre{white-space:pre-wrap;word-break:break-word;font-size:.8rem;background:#f6f6f6;border:1px solid #e3e3e3;padding:.5rem}
@page{size:A4 portrait;margin:2cm}@page wide{size:A4 landscape;margin:2cm}
@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}nav.toc{display:none}.tbl{overflow:visible}
.landscape{page:wide}thead{display:table-header-group}tr{break-inside:avoid}.caption{break-after:avoid;font-size:9pt}.note{font-size:8pt}
figure{break-inside:avoid}tbody tr:nth-child(even){background:none}}
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _cell(text: str, ci: bool) -> str:
    """A cell's HTML; a confidence interval ``(lower-upper)`` is kept on one line."""
    tokens = cell_tokens(text, ci=True) if ci else []
    if len(tokens) == 2:
        return f'{_h(tokens[0])} <span class="ci">{_h(tokens[1])}</span>'
    return _h(text)


def _html_part(display: DisplayTable, part: TablePart) -> str:
    cols = [display.columns[j] for j in part.columns]
    width = part.width_cm
    out = [f'<div class="tbl"><table style="width:{width:.2f}cm;font-size:{part.font_pt:g}pt"><colgroup>',
           "".join(f'<col style="width:{w + PAD_CM:.2f}cm">' for w in part.widths_cm), "</colgroup><thead><tr>",
           "".join(f'<th class="num">{_h(c.label)}</th>' if c.numeric else f"<th>{_h(c.label)}</th>" for c in cols),
           "</tr></thead><tbody>"]  # fmt: skip
    for row in display.rows:
        cells = [(row[j], c) for j, c in zip(part.columns, cols, strict=True)]
        out.append("<tr>" + "".join(f'<td class="num">{_cell(v, c.kind == "ci")}</td>' if c.numeric else f"<td>{_h(v)}</td>"
                                    for v, c in cells) + "</tr>")  # fmt: skip
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_table(item: SupplementItem, shown: SupplementTable) -> str:
    """Every part of a table (landscape parts on landscape print pages), each with its caption, then the note."""
    parts = shown.layout.parts
    out = []
    for k, part in enumerate(parts):
        label, text = part_caption(item, k, len(parts))
        cls = ' class="landscape"' if part.landscape else ""
        out.append(f'<div{cls}><p class="caption"><b>{_h(label)}.</b>{_h(text)}</p>'
                   f"{_html_part(shown.display, part)}{_note(shown.note) if k == len(parts) - 1 else ''}</div>")  # fmt: skip
    return "".join(out)


def _note(text: str) -> str:
    return f'<p class="note">{_h(text)}</p>' if text else ""


def write_html(supp: Supplement, path: str | Path) -> Path:
    """Write the supplement as one self-contained HTML file (inline CSS, figures as data URIs, no script)."""
    path = Path(path)
    caption = lambda it: f'<p class="caption"><b>{_h(it.label)}.</b>{_h(it.caption)}</p>'  # noqa: E731
    note = _note
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_h(supp.title)}</title>",
        f"<style>{_CSS.strip()}</style>", "</head>", "<body>", f"<h1>{_h(supp.title)}</h1>", f'<p class="sub">{_h(supp.subtitle)}</p>',
    ]  # fmt: skip
    toc = ['<nav class="toc" id="contents"><h2>Contents</h2><ul>', '<li><a href="#methods">Supplementary methods</a><ul>']
    toc += [f'<li><a href="#methods-{p.anchor}">{_h(p.heading)}</a></li>' for p in supp.methods]
    toc.append("</ul></li>")
    for step, title, items in supp.sections:
        toc.append(f'<li><a href="#step-{_h(step)}">{_h(title)}</a><ul>')
        toc += [f'<li><a href="#{it.anchor}">{_h(it.label)}</a>. {_h(it.caption)}</li>' for it in items]
        toc.append("</ul></li>")
    toc.append(f'<li><a href="#checklist">Reporting checklist</a> (<a href="#{supp.checklist.anchor}">{_h(supp.checklist.label)}</a>)</li></ul></nav>')
    parts += toc
    parts.append('<section id="methods"><h2>Supplementary methods</h2>')
    for p in supp.methods:
        parts.append(f'<h3 id="methods-{p.anchor}">{_h(p.heading)}</h3><p>{_h(p.text)}</p>')
    if supp.conventions:
        parts.append('<h3 id="methods-tables">How the tables are written</h3>' + "".join(f"<p>{_h(t)}</p>" for t in supp.conventions))
    parts.append("</section>")
    for step, title, items in supp.sections:
        parts.append(f'<section id="step-{_h(step)}"><h2>{_h(title)}</h2>')
        for it in items:
            parts.append(f'<section class="item" id="{it.anchor}">')
            if it.kind == "table" and it.inline:
                parts.append(_html_table(it, supp.tables[it.anchor]))
            elif it.kind == "table":
                parts.append(caption(it) + note(_table_note(it, 0, supp.root)))
            elif it.kind == "figure":
                data = (supp.root / it.path).read_bytes()
                w, h, dpi = _png_info(data)
                css_w, css_h = round(w * 96 / dpi), round(h * 96 / dpi)  # natural print size in CSS pixels; max-width 100%
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                parts.append(f'<figure><img src="{uri}" width="{css_w}" height="{css_h}" alt="{_h(it.label)}: {_h(it.caption)}">'
                             f"<figcaption>{caption(it)}{note(_figure_note(it, supp.root))}</figcaption></figure>")  # fmt: skip
            else:
                parts.append(caption(it) + f"<pre>{_h(supp.notes_text[it.anchor])}</pre>" + note(f"File: {it.path}."))
            parts.append("</section>")
        parts.append("</section>")
    parts.append(f'<section id="checklist"><h2>Reporting checklist</h2><section class="item" id="{supp.checklist.anchor}">')
    parts += [_html_table(supp.checklist, supp.tables[supp.checklist.anchor]), "</section></section>"]
    parts += ["</body>", "</html>", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- LaTeX
