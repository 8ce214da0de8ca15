"""Writing a benchmark's section into docs/benchmarks.md between its begin/end markers."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, begin: str, end: str, heading: str, doc: Path = DOC) -> None:
    """Replace the text between ``begin`` and ``end`` (markers included in ``section``), or append it under ``heading``."""
    text = doc.read_text(encoding="utf-8")
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")
