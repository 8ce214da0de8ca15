"""Start-up cost of loading a study config and of ``python -m helpers validate``: this tree vs a git revision.

Issue 13 split the settings models out of the torch/matplotlib modules so that loading a config imports neither.
This script measures both trees side by side in one run (alternating, fresh processes, the same machine state):

    python bench/bench_validate.py --base 144dcba [--repeats 5]

It checks out ``--base`` in a temporary git worktree (removed afterwards), runs each command ``--repeats`` times
per tree, alternating, and writes the medians and their ratio between the markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench_validate:begin -->", "<!-- bench_validate:end -->"

# (label, code for the layout before issue 13, code for the current layout)
PROBES = {
    "load_config('study.yaml')": (
        "import sys; from helpers.config import load_config; load_config('study.yaml'); "
        "print(','.join(m for m in ('torch', 'matplotlib') if m in sys.modules))",
        "import sys; from helpers.settings import load_config; load_config('study.yaml'); "
        "print(','.join(m for m in ('torch', 'matplotlib') if m in sys.modules))",
    ),
}


def _run(tree: Path, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUTF8": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, check=True, timeout=600)
    return time.perf_counter() - t0, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision with the old layout (before issue 13)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=REPO, check=True, capture_output=True)
        try:
            commands = {label: ([ "-c", old], ["-c", new]) for label, (old, new) in PROBES.items()}
            commands["python -m helpers validate --config study.yaml"] = (["-m", "helpers", "validate", "--config", "study.yaml"],) * 2
            for label, (old_args, new_args) in commands.items():
                times: dict[str, list[float]] = {"before": [], "after": []}
                loaded: dict[str, str] = {}
                for _ in range(args.repeats):
                    for which, tree, cmd in (("before", base, old_args), ("after", REPO, new_args)):
                        seconds, last = _run(tree, cmd)
                        times[which].append(seconds)
                        loaded[which] = last
                before, after = statistics.median(times["before"]), statistics.median(times["after"])
                rows.append((label, before, after, loaded.get("before", ""), loaded.get("after", "")))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False, capture_output=True)
    lines = [
        BEGIN,
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python bench/bench_validate.py --base {args.base} --repeats {args.repeats}`: each command in a fresh process, "
        f"the two trees alternating, median of {args.repeats}. Before = revision {args.base} (flat `helpers/`, `helpers.config`), "
        "after = this tree (`helpers.settings`).",
        "",
        "| command | before (s) | after (s) | after / before | heavy modules imported (before -> after) |",
        "|---|---|---|---|---|",
    ]
    for label, before, after, lb, la in rows:
        heavy = f"{lb or 'none'} -> {la or 'none'}" if label.startswith("load_config") else "(validate also reads every image)"
        lines.append(f"| `{label}` | {before:.2f} | {after:.2f} | {after / before:.2f} | {heavy} |")
    lines.append(END)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        doc = REPO / "docs" / "benchmarks.md"
        content = doc.read_text(encoding="utf-8")
        if BEGIN in content:
            content = content[: content.index(BEGIN)] + text + content[content.index(END) + len(END):]
        else:
            content = content.rstrip("\n") + "\n\n## Loading a config and validating (`bench/bench_validate.py`)\n\n" + text + "\n"
        doc.write_text(content, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
