"""compare/render/ is layered: analysis at the bottom (it decides), format above it (it spells), renderers
above both (they lay out), the commands on top; nothing in it reaches compare.measure, the session or the
CLI, and no import hides inside a function except matplotlib's (an optional extra). Read from the source
with ast, so an import inside a function counts as much as one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "compare"
DEFERRED_ON_PURPOSE = {"matplotlib"}   # the one optional extra a renderer imports when it draws


def module_files() -> dict[str, Path]:
    out = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import of the file, relative ones resolved; `from X
    import Y` counts as X.Y where Y is a module, else as X."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    out = []
    for node in ast.walk(tree):
        inside = id(node) in nested
        if isinstance(node, ast.Import):
            out += [(a.name, inside) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                out.append((f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base, inside))
    return out


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, bool]]]]:
    modules = module_files()
    found = {name: imports(name, path, modules) for name, path in modules.items()}
    edges = {name: {m for m, _ in imps if m in modules and m != name} for name, imps in found.items()}
    return edges, found


def render_modules(edges) -> list[str]:
    return sorted(m for m in edges if m.startswith(f"{PACKAGE}.render."))


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_render_has_no_import_cycle():
    edges, _ = graph()
    for m in render_modules(edges):
        assert m not in reachable(edges, m), f"{m} imports itself through {sorted(reachable(edges, m) & set(render_modules(edges)))}"


def test_render_reaches_neither_measure_nor_the_session_nor_the_cli():
    edges, _ = graph()
    for m in render_modules(edges):
        above = {x for x in reachable(edges, m)
                 if x.startswith(f"{PACKAGE}.measure") or x in (f"{PACKAGE}.session", f"{PACKAGE}.resume")}
        assert not above, f"{m} reaches {sorted(above)}"


def test_analysis_is_the_bottom_and_format_sits_just_above_it():
    edges, _ = graph()
    render = set(render_modules(edges))
    assert edges["compare.render.analysis"] & render == set(), "analysis must import no renderer"
    assert edges["compare.render.format"] & render == {"compare.render.analysis"}
    assert edges["compare.render.outputs"] & render == set()
    for layout in ("tables", "findings", "server", "hostinfo"):   # they lay out; no command below them
        assert edges[f"compare.render.{layout}"] & render <= {"compare.render.analysis", "compare.render.format"}


def test_no_import_hides_inside_a_function_but_the_optional_extra():
    _, found = graph()
    hidden = {(m, imported) for m, imps in found.items() if m.startswith(f"{PACKAGE}.render")
              for imported, inside in imps if inside and imported.split(".")[0] not in DEFERRED_ON_PURPOSE}
    assert not hidden, sorted(hidden)


def test_the_walk_sees_relative_and_function_level_imports():
    """The walker itself: a relative import resolves to its module, and one inside a function is marked so
    (else the tests above could pass on a graph with no edges)."""
    edges, found = graph()
    assert "compare.render.analysis" in edges["compare.render.findings"]
    assert "compare.stats" in edges["compare.render.analysis"]
    assert ("matplotlib", True) in found["compare.render.plot"]
