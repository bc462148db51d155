"""The layers of compare/ (docs/architecture.md): arrows point down, so the package's import graph, read from
the source with ast (imports inside functions included, relative ones resolved), has no cycle; measuring and
rendering never import each other, and render/ has its analysis at the bottom; no module imports a framework
when it loads; an import hides inside a function only for an optional library, saying why on its line; and a
cell's worker loads none of polars, typer and rich (it must run under an interpreter that has only the
measuring stack: a free-threaded CPython); and no Python file of the project uses a name nothing defines."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"torch", "mlx", "jax", "jaxlib", "onnxruntime"}
NOT_IN_THE_WORKER = FRAMEWORKS | {"polars", "typer", "rich", "scipy.stats"}
# imported where they are used: optional extras (gpu, plot, loadgen), and scipy.stats, ~0.8 s of every cell process's
# start-up that only the server modes' early-stopping rule needs
DEFERRED_ON_PURPOSE = {"pynvml", "matplotlib", "scipy", "mlperf_loadgen"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "compare").rglob("*.py"))}


class Imports(ast.NodeVisitor):
    """Every import in one module: (module imported, at module level?, line), relative ones resolved. For
    `from package import name`, the submodule package.name where there is one, else the package."""

    def __init__(self, name: str, is_package: bool):
        self.package = name if is_package else name.rpartition(".")[0]
        self.found: list[tuple[str, bool, int]] = []
        self.depth = 0  # functions we are inside: an import there runs only when the function does

    def visit_FunctionDef(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, self.depth == 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            self.found.append((sub if sub in MODULES else module, self.depth == 0, node.lineno))


def imports_of(name: str) -> list[tuple[str, bool, int]]:
    path = MODULES[name]
    visitor = Imports(name, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


GRAPH = {name: sorted({m for m, _, _ in imports_of(name) if m in MODULES and m != name}) for name in MODULES}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a set of modules every one of
    which imports, directly or not, every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_reads_every_module_and_sees_known_arrows():
    """The walker itself: it finds the package's modules, relative imports and imports inside functions."""
    assert {"compare.cells", "compare.measure.worker", "compare.measure.schedule", "compare.render.report"} <= set(MODULES)
    assert "compare.measure.registry" in GRAPH["compare.measure.worker"]
    assert "compare.cells" in GRAPH["compare.measure.schedule"]
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    visitor = Imports("compare.x", False)
    visitor.visit(ast.parse("def f():\n    from .measure import schedule\nimport torch\n"))
    assert visitor.found == [("compare.measure.schedule", False, 2), ("torch", True, 3)]


def test_no_import_cycle():
    """Arrows point down: a layer never imports one above it, not even inside a function (where an import
    that dodges a cycle is still the cycle)."""
    bad = cycles(GRAPH)
    assert not bad, "import cycles: " + "; ".join(" <-> ".join(c) for c in bad)


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in set(GRAPH[todo.pop()]) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_measuring_and_rendering_never_import_each_other():
    """Measurement apart from rendering: compare/measure reaches no renderer, and compare/render reaches neither
    the measuring side nor the commands that join both (session, resume)."""
    bad = [(name, m) for name in MODULES if name.startswith("compare.measure")
           for m in reachable(name) if m.startswith("compare.render")]
    bad += [(name, m) for name in MODULES if name.startswith("compare.render")
            for m in reachable(name) if m.startswith("compare.measure") or m in ("compare.session", "compare.resume")]
    assert not bad, bad


def test_render_decides_at_the_bottom_and_lays_out_above():
    """analysis (what is claimed) imports no renderer; format (how it is spelt) only analysis; the layout
    modules only those two; the commands (report, diff, plot, publish) sit on top."""
    render = {m for m in MODULES if m.startswith("compare.render.")}
    below = lambda m: set(GRAPH[m]) & render  # noqa: E731
    assert below("compare.render.analysis") == set()
    assert below("compare.render.outputs") == set()
    assert below("compare.render.format") == {"compare.render.analysis"}
    for layout in ("tables", "findings", "server", "hostinfo"):
        assert below(f"compare.render.{layout}") <= {"compare.render.analysis", "compare.render.format"}, layout


def test_no_module_imports_a_framework_when_it_loads():
    """Frameworks are reached through backends/, whose classes import them when used."""
    bad = [(name, m, line) for name in MODULES for m, top, line in imports_of(name)
           if top and m.split(".")[0] in FRAMEWORKS]
    assert not bad, bad


def test_an_import_inside_a_function_is_an_optional_library_deferred_on_purpose():
    """Imports sit at the top of modules. One inside a function is only an optional extra (an import there
    to dodge a cycle is still the cycle), and the function's first such line says why."""
    bad = []
    for name in MODULES:
        lines = MODULES[name].read_text().splitlines()
        deferred = [(m, line) for m, top, line in imports_of(name) if not top]
        bad += [f"{name}:{line} {m}" for m, line in deferred if m.split(".")[0] not in DEFERRED_ON_PURPOSE]
        if deferred and "#" not in lines[min(line for _, line in deferred) - 1]:
            bad.append(f"{name}:{min(line for _, line in deferred)} says not why")
    assert not bad, bad


@pytest.mark.parametrize("module", ["compare.measure.worker"])
def test_the_cell_worker_loads_no_framework_polars_typer_rich_or_scipy_stats(module):
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} | set(sys.modules))))"
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert "numpy" in loaded and not loaded & NOT_IN_THE_WORKER, sorted(loaded & NOT_IN_THE_WORKER)


def test_no_name_is_used_that_nothing_defines():
    """Every Python file of the project, scripts in benchmarks/ included (no test imports most of them): a name
    nothing defines fails only when its line runs, as harness.py's median_ci did for 4a4f93b to 2ad5db3."""
    from pyflakes import api, messages, reporter

    class Undefined(reporter.Reporter):
        def __init__(self):
            super().__init__(None, None)
            self.found: list[str] = []

        def flake(self, message):
            if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)):
                self.found.append(str(message))

        def syntaxError(self, filename, msg, lineno, offset, text):   # noqa: N802 - pyflakes' interface
            self.found.append(f"{filename}:{lineno}: {msg}")

        def unexpectedError(self, filename, msg):   # noqa: N802
            self.found.append(f"{filename}: {msg}")

    paths = sorted(p for p in ROOT.rglob("*.py")   # not in a virtual environment, a build or a carried folder
                   if not any(part.startswith(".") or part in ("build", "venv") for part in p.relative_to(ROOT).parts))
    assert len(paths) > 50 and any(p.parent.name == "benchmarks" for p in paths)
    found = Undefined()
    for path in paths:
        api.checkPath(str(path), found)
    assert not found.found, "\n".join(found.found)
