"""The package's imports point one way: no module reaches back, through any chain of imports, to one importing it.

Function-level imports count too (they hide a cycle until the function runs), and importing ``a.b.c`` counts as
importing the package ``a.b`` as well, since Python runs ``a/b/__init__.py`` first.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> lit_mc modules it imports`` (names resolved to modules, parent packages included)."""
    paths = {_module_name(p): p for p in (SRC / "lit_mc").rglob("*.py")}

    def resolve(name: str) -> set[str]:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        found, parent = {name}, name.rpartition(".")[0]
        while parent:
            found.add(parent)
            parent = parent.rpartition(".")[0]
        return found - {"lit_mc"}

    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base == "lit_mc" or base.startswith("lit_mc."):
                    for alias in node.names:
                        targets |= resolve(f"{base}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("lit_mc."):
                        targets |= resolve(alias.name)
        own_packages = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        graph[name] = targets - {name} - own_packages  # a module's own parents are no import of it
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if not state.get(nxt) and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "lit_mc.runner" in graph["lit_mc.studies.cv"]  # the graph sees function-level imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_engine_layers_do_not_import_the_command_line_or_the_report() -> None:
    graph = import_graph()
    for name, targets in graph.items():
        if name not in ("lit_mc.cli", "lit_mc.report"):
            assert "lit_mc.cli" not in targets, name
        if not name.startswith(("lit_mc.cli", "lit_mc.report", "lit_mc.campaigns")):  # campaigns run the analyses
            assert "lit_mc.report" not in targets, name


# the layers, lowest first: a module may import its own layer and those below, never one above; the two task
# packages are one layer and do not import each other
LAYERS = [
    ("lit_mc.errors", "lit_mc.moved", "lit_mc.io", "lit_mc.clock", "lit_mc.settings", "lit_mc.runs", "lit_mc.plots",
     "lit_mc.loggers", "lit_mc.batches", "lit_mc.checkpoints", "lit_mc.callbacks", "lit_mc.backbones"),
    ("lit_mc.classification", "lit_mc.captioning"),
    ("lit_mc.runner",),
    ("lit_mc.studies",),
    ("lit_mc.report",),
    ("lit_mc.campaigns",),
    ("lit_mc.cli",),
]  # fmt: skip


def _place(module: str) -> tuple[int, str]:
    for rank, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                return rank, prefix
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, targets in graph.items():
        if name == "lit_mc":
            continue
        rank, home = _place(name)
        for target in targets:
            their_rank, their_home = _place(target)
            if their_rank > rank or (their_rank == rank == 1 and their_home != home):
                wrong.append(f"{name} -> {target}")
    return wrong


def test_upward_imports_are_seen() -> None:
    assert upward_imports({"lit_mc.io": {"lit_mc.runner"}}) == ["lit_mc.io -> lit_mc.runner"]
    assert upward_imports({"lit_mc.captioning.encoder": {"lit_mc.classification"}}) != []
    assert upward_imports({"lit_mc.report.common": {"lit_mc.studies.cv", "lit_mc.captioning"}}) == []


def test_imports_point_down_and_the_tasks_stay_apart() -> None:
    assert upward_imports(import_graph()) == []
