"""core/ has no import cycles (module-level imports, as Python runs them at import time)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for f in CORE.rglob("*.py"):
        parts = list(f.relative_to(CORE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """module -> the core modules it imports at module level (TYPE_CHECKING blocks excluded)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for m, (f, is_pkg) in mods.items():
        pkg = m.split(".") if is_pkg else m.split(".")[:-1]
        deps: set[str] = set()

        def add(name: str) -> None:
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != m:
                deps.add(name)

        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.If):
                if _is_type_checking(node):
                    continue
                body = node.body + node.orelse
            elif isinstance(node, ast.Try):
                body = node.body
            else:
                body = [node]
            for n in body:
                if isinstance(n, ast.Import):
                    for a in n.names:
                        add(a.name)
                elif isinstance(n, ast.ImportFrom):
                    base = ".".join(pkg[: len(pkg) - (n.level - 1)] + ([n.module] if n.module else [])) \
                        if n.level else (n.module or "")
                    for a in n.names:
                        add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        graph[m] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_has_no_import_cycles():
    graph = import_graph()
    assert "core.postprocess.chains" in graph["core.contracts"]  # the graph sees relative imports
    assert cycles(graph) == []
