"""Compare two runs' reports folders table by table (issue 17: tables byte-identical before and after a speed-up).

Usage: python bench/compare_reports.py BEFORE AFTER [--ignore-columns COL ...] [--markdown FILE]

BEFORE and AFTER are study report roots (``reports/<study>``). Every CSV under ``tables/`` and ``features/`` present in
both is compared byte for byte; a CSV that differs is compared again on the columns both files have (so a column a
later version added does not hide that every shared value is identical), exactly (text equality of each cell as
written). Parquet feature tables are compared as arrays: same columns, same index, and every float bitwise equal
(NaN equal to NaN). Files present in one run only are listed. Exit code 0 when nothing shared differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _csv_verdict(a: Path, b: Path, ignore: set[str]) -> tuple[str, str]:
    if a.read_bytes() == b.read_bytes():
        return "identical", ""
    try:
        da, db = pd.read_csv(a, dtype=str, keep_default_na=False), pd.read_csv(b, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return "differs", f"not comparable as tables ({type(exc).__name__})"
    shared = [c for c in da.columns if c in db.columns and c not in ignore]
    added, removed = [c for c in db.columns if c not in da.columns], [c for c in da.columns if c not in db.columns]
    if da.shape[0] != db.shape[0]:
        return "differs", f"rows {da.shape[0]} vs {db.shape[0]}"
    diff = [c for c in shared if not da[c].equals(db[c])]
    extra = "; ".join(x for x in (f"columns only after: {', '.join(added)}" if added else "",
                                  f"columns only before: {', '.join(removed)}" if removed else "") if x)
    if diff:
        cells = int(sum((da[c] != db[c]).sum() for c in diff))
        return "differs", f"{cells} cells in {len(diff)} shared columns ({', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''})" + (f"; {extra}" if extra else "")
    return "shared columns identical", extra or "row order or ignored columns only"


def _parquet_verdict(a: Path, b: Path) -> tuple[str, str]:
    da, db = pd.read_parquet(a), pd.read_parquet(b)
    if list(da.columns) != list(db.columns) or not da.index.equals(db.index):
        return "differs", f"columns/index differ ({da.shape} vs {db.shape})"
    n_diff = 0
    for c in da.columns:
        x, y = da[c].to_numpy(), db[c].to_numpy()
        if x.dtype.kind == "f" and y.dtype.kind == "f":
            same = (x.view(np.uint64) == y.view(np.uint64)) if x.dtype == y.dtype == np.float64 else (x == y)
            same |= np.isnan(x) & np.isnan(y)
            n_diff += int((~same).sum())
        else:
            n_diff += int((pd.Series(x).astype(str) != pd.Series(y).astype(str)).sum())
    return ("identical", f"{da.shape[0]} x {da.shape[1]}, every value bitwise equal") if n_diff == 0 else ("differs", f"{n_diff} values differ")


def compare(before: Path, after: Path, ignore: set[str]) -> pd.DataFrame:
    rows = []
    for sub in ("tables", "features"):
        files_a = {p.relative_to(before) for p in (before / sub).rglob("*") if p.suffix in (".csv", ".parquet")}
        files_b = {p.relative_to(after) for p in (after / sub).rglob("*") if p.suffix in (".csv", ".parquet")}
        for rel in sorted(files_a | files_b):
            if rel not in files_b or rel not in files_a:
                rows.append({"file": str(rel), "verdict": "before only" if rel in files_a else "after only", "detail": ""})
                continue
            a, b = before / rel, after / rel
            verdict, detail = _parquet_verdict(a, b) if rel.suffix == ".parquet" else _csv_verdict(a, b, ignore)
            rows.append({"file": str(rel), "verdict": verdict, "detail": detail})
    return pd.DataFrame(rows, columns=["file", "verdict", "detail"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--ignore-columns", nargs="*", default=[])
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    result = compare(args.before, args.after, set(args.ignore_columns))
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 160, "display.width", 250):
        print(result.to_string(index=False))
    print(result["verdict"].value_counts().to_string())
    if args.markdown:
        args.markdown.write_text(result.to_markdown(index=False))
    return 0 if not (result["verdict"] == "differs").any() else 1


if __name__ == "__main__":
    sys.exit(main())
