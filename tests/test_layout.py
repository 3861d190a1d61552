"""The import graph of the product: layers import downward only, and nothing imports in a circle.

Read with ``ast`` from the source files (nothing is imported), counting every import: top level, inside
functions and inside ``if TYPE_CHECKING:`` blocks, because a circle hidden behind TYPE_CHECKING still
couples the two modules (and breaks the day someone moves an annotation into runtime code).

- ``sip/``, ``rtp/`` and ``registry/`` know nothing of the product (``gbgw.gb28181``).
- The product does not use the vendor toolkit (``gbgw.conformance``), except ``gb28181/app/cli.py``
  importing the simulator lazily, inside a function, for ``gb28181-gateway simulate``.
- Every import goes through the ``gbgw`` namespace: a bare ``sip`` could be PyQt's.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sip", "rtp", "registry", "gb28181", "conformance")
LOWER = ("sip", "rtp", "registry")
CLI = "gbgw.gb28181.app.cli"


@dataclass(frozen=True, slots=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["gbgw", *parts])


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0
        self.imports: list[tuple[str, list[str], int, bool]] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((alias.name, [], node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        self.imports.append((name, [a.name for a in node.names], node.lineno, self.depth > 0))


def _resolve(name: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads: ``from a.b import c`` is module ``a.b.c`` when
    that file exists, else the names are attributes of ``a.b``."""
    targets = [f"{name}.{n}" for n in names if f"{name}.{n}" in modules]
    if len(targets) < len(names) or not names:
        candidate = name
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]
        if candidate:
            targets.append(candidate)
    return targets


def _graph() -> tuple[dict[str, list[Import]], list[Import]]:
    """Edges between project modules, and every import statement seen (for the name rules)."""
    modules = _modules()
    edges: dict[str, list[Import]] = {m: [] for m in modules}
    raw: list[Import] = []
    for module, path in modules.items():
        collector = _Collector(module, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for name, names, line, in_function in collector.imports:
            raw.append(Import(module, name, line, in_function))
            for target in _resolve(name, names, modules):
                if target != module:
                    edges[module].append(Import(module, target, line, in_function))
    return edges, raw


def _knots(edges: dict[str, list[Import]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [e.target for e in edges[node]]
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            for target in targets:
                if target in on_stack:
                    low[node] = min(low[node], low[target])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def _one_cycle(edges: dict[str, list[Import]], component: set[str]) -> list[str]:
    """A concrete path through the component back to its start, to print."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for edge in edges[node]:
                if edge.target == start:
                    path = [start]
                    back = node
                    while back != start:
                        path.append(back)
                        back = previous[back]
                    return [start, *reversed(path[1:]), start]
                if edge.target in component and edge.target not in previous and edge.target != start:
                    previous[edge.target] = node
                    nxt.append(edge.target)
        frontier = nxt
    return sorted(component)


def _describe(edges: dict[str, list[Import]], component: list[str]) -> str:
    """A cycle through the component, then everything else caught in it."""
    cycle = _one_cycle(edges, set(component))
    steps = []
    for source, target in itertools.pairwise(cycle):
        line = next(e.line for e in edges[source] if e.target == target)
        steps.append(f"{source} (line {line})")
    rest = sorted(set(component) - set(cycle))
    return " -> ".join([*steps, cycle[-1]]) + (f"\n  (same knot: {', '.join(rest)})" if rest else "")


def test_no_import_cycles() -> None:
    edges, _ = _graph()
    knots = _knots(edges)
    assert not knots, "import cycles:\n" + "\n".join(_describe(edges, k) for k in knots)


def test_lower_layers_know_nothing_of_the_product() -> None:
    _, raw = _graph()
    bad = [
        f"{i.source} line {i.line}: {i.target}"
        for i in raw
        if i.source.split(".")[1] in LOWER and (i.target == "gbgw.gb28181" or i.target.startswith("gbgw.gb28181."))
    ]
    assert not bad, "sip/rtp/registry import the product:\n" + "\n".join(bad)


def test_product_does_not_import_the_toolkit() -> None:
    _, raw = _graph()
    bad = [
        f"{i.source} line {i.line}: {i.target}{' (in a function)' if i.in_function else ''}"
        for i in raw
        if i.source.startswith("gbgw.gb28181")
        and (i.target == "gbgw.conformance" or i.target.startswith("gbgw.conformance."))
        and not (i.source == CLI and i.in_function)
    ]
    assert not bad, "the product imports gbgw.conformance:\n" + "\n".join(bad)


def test_only_the_entry_point_imports_the_daemon() -> None:
    edges, _ = _graph()
    bad = [
        f"{e.source} line {e.line}"
        for imports in edges.values()
        for e in imports
        if e.target == "gbgw.gb28181.app.daemon" and e.source != CLI
    ]
    assert not bad, "modules importing the daemon:\n" + "\n".join(bad)


def test_every_import_goes_through_gbgw() -> None:
    _, raw = _graph()
    bad = [f"{i.source} line {i.line}: {i.target}" for i in raw if i.target.split(".")[0] in PACKAGES]
    assert not bad, "imports of bare top-level names (use gbgw.X):\n" + "\n".join(bad)
