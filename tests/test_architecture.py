"""The folder tree is the architecture: the import rules between the stage packages of ``helpers`` (issue 13).

Read from the source with ``ast`` (every import, module-level or inside a function), so a rule cannot be dodged by
importing lazily:

- ``helpers.settings`` imports nothing of the project but ``helpers.errors`` (a config loads without torch,
  matplotlib or image code);
- ``helpers.stats`` is pure: no imaging, features, figures or reporting;
- ``imaging``, ``features`` and ``learning`` never import ``steps`` or ``runner`` (only steps take the whole study
  config and write outputs; the runner is on top of everything);
- only ``helpers.figures`` imports matplotlib;
- no import cycle between modules (module-level imports).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "helpers"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import statement of a file; ``from X import y`` also yields
    ``X.y`` (which may be a submodule)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    # Imports under "if TYPE_CHECKING:" at module level are for annotations only: not executed.
    type_only = {id(n) for stmt in tree.body if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
                 for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            out.append((target, id(node) in top))
            out += [(f"{target}.{a.name}", id(node) in top) for a in node.names]
    return out


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _project_imports(name: str, top_only: bool = False) -> set[str]:
    found = set()
    for target, at_top in _imports(MODULES[name]):
        if top_only and not at_top:
            continue
        # the longest known module the target names (``helpers.stats.auc_ci`` -> ``helpers.stats``)
        parts = target.split(".")
        for k in range(len(parts), 0, -1):
            candidate = ".".join(parts[:k])
            if candidate in MODULES and candidate != name:
                found.add(candidate)
                break
    return found


def _in(name: str, package: str) -> bool:
    return name == f"helpers.{package}" or name.startswith(f"helpers.{package}.")


def test_settings_import_nothing_of_the_project_but_errors():
    bad = {m: sorted(d for d in _project_imports(m) if not (_in(d, "settings") or d == "helpers.errors" or d == "helpers"))
           for m in MODULES if _in(m, "settings")}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_stats_is_pure():
    forbidden = ("imaging", "features", "figures", "reporting", "steps", "runner", "learning", "data", "settings")
    bad = {m: sorted(d for d in _project_imports(m) if any(_in(d, f) for f in forbidden)) for m in MODULES if _in(m, "stats")}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_stages_never_import_steps_or_runner():
    bad = {m: sorted(d for d in _project_imports(m) if _in(d, "steps") or _in(d, "runner"))
           for m in MODULES if any(_in(m, p) for p in ("imaging", "features", "learning", "data", "settings", "stats", "figures"))}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_only_figures_import_matplotlib():
    bad = sorted(m for m, p in MODULES.items()
                 if not _in(m, "figures") and any(t == "matplotlib" or t.startswith("matplotlib.") for t, _ in _imports(p)))
    assert not bad, f"modules importing matplotlib outside helpers.figures: {bad}"


def test_no_import_cycle():
    graph = {m: _project_imports(m, top_only=True) for m in MODULES}
    # A package's __init__ re-exporting its own modules is not a cycle of the architecture.
    graph = {m: {d for d in deps if not (m == d.rsplit(".", 1)[0] and MODULES[m].name == "__init__.py")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles[:5]}"


@pytest.mark.parametrize("entry", ["from helpers.settings import load_config; load_config('study.yaml')",
                                   "from helpers.data.manifest import load_study"])
def test_loading_a_config_imports_neither_torch_nor_matplotlib(entry):
    code = f"import sys; {entry}; print(sorted(m for m in ('torch', 'matplotlib', 'monai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
