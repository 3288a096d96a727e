"""The package's layers: every import, at the top of a module or inside a function or a
``TYPE_CHECKING`` block, points down the layer list of docs/architecture.md or stays in its
layer, and no modules import each other in a cycle.

The graph is built from the source (`ast`), not from what an import happens to load, so a
lazy import counts as much as a top-level one: deferring an import changes when it costs,
not which way the arrow points.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_perfguard"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
_BLOCK = re.compile(r"<!-- layers -->\n(.*?)<!-- /layers -->", re.DOTALL)
_LAYER = re.compile(r"^\d+\. \*\*(?P<name>[^*]+)\*\*(?P<rest>.*)$")


def read_layers(text: str) -> list[tuple[str, list[str]]]:
    """The layers of docs/architecture.md, lowest first: (name, module names), the names
    relative to the package (`__init__` is the package itself; a package's name covers
    its submodules)."""
    block = _BLOCK.search(text)
    assert block is not None, "docs/architecture.md has no <!-- layers --> list"
    layers = []
    for line in block.group(1).splitlines():
        found = _LAYER.match(line.strip())
        if found:
            layers.append((found["name"], re.findall(r"`([\w.]+)`", found["rest"])))
    return layers


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """`name` if it is a module of the package, else its longest prefix that is."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its source.

    ``from x import y`` is an import of the module ``x.y`` when there is one, else of
    ``x`` (which then runs first, with whatever it imports)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else source)
        graph[name] = {
            found
            for target in targets
            if (found := _existing(target, modules)) is not None and found != name
        }
    return graph


def layer_of(
    module: str, layers: list[tuple[str, list[str]]], package: str = PACKAGE
) -> int | None:
    """The index of the layer whose most specific name covers `module`."""
    best: tuple[int, int] | None = None  # (length of the matching name, layer index)
    relative = module[len(package) + 1 :] if module != package else "__init__"
    for index, (_, names) in enumerate(layers):
        for listed in names:
            covers = relative == listed or relative.startswith(listed + ".")
            if covers and (best is None or len(listed) > best[0]):
                best = (len(listed), index)
    return None if best is None else best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


LAYERS = read_layers(ARCHITECTURE.read_text(encoding="utf-8"))
MODULES = package_modules()
GRAPH = import_graph(MODULES)


def test_every_module_has_a_layer_and_every_listed_name_a_module() -> None:
    unplaced = [m for m in MODULES if layer_of(m, LAYERS) is None]
    assert not unplaced, f"add these modules to the layer list in docs/architecture.md: {unplaced}"
    relative = {m[len(PACKAGE) + 1 :] if m != PACKAGE else "__init__" for m in MODULES}
    stale = [name for _, names in LAYERS for name in names if name not in relative]
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"


def test_no_import_cycles() -> None:
    found = cycles(GRAPH)
    assert not found, f"modules that import each other (counting lazy imports): {found}"


def upward_imports(
    graph: dict[str, set[str]], layers: list[tuple[str, list[str]]], package: str = PACKAGE
) -> list[str]:
    """Each import of a module from a higher layer than the importer's, as a line."""
    upward = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers, package)
        for target in sorted(targets):
            theirs = layer_of(target, layers, package)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(
                    f"{module} ({layers[mine][0]}) imports {target} ({layers[theirs][0]})"
                )
    return upward


def test_imports_point_down_the_layers() -> None:
    upward = upward_imports(GRAPH, LAYERS)
    assert not upward, "imports up the layer list of docs/architecture.md:\n" + "\n".join(upward)


# What reads stored runs: the report layer renders the data handed to it (plain records)
# and imports none of these, lazily or for type checking either.
QUERYING = ("api", "history", "experiment_history")


def test_the_report_layer_queries_nothing() -> None:
    forbidden = {f"{PACKAGE}.{name}" for name in QUERYING}
    found = [
        f"{module} imports {target}"
        for module, targets in sorted(GRAPH.items())
        if module.startswith(f"{PACKAGE}.report")
        for target in sorted(targets)
        if target in forbidden or any(target.startswith(f + ".") for f in forbidden)
    ]
    assert not found, "report/ renders data handed to it; no queries:\n" + "\n".join(found)


def test_nothing_imports_the_plugin_module() -> None:
    importers = sorted(m for m, targets in GRAPH.items() if f"{PACKAGE}.plugin" in targets)
    assert importers == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # A cycle made only of imports inside functions is found.
        (
            {
                "a": "def f():\n    from . import b\n",
                "b": "def g():\n    from .c import x\n",
                "c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
            },
            [["p.a", "p.b", "p.c"]],
        ),
        # `from . import b` names the module b, not the package: no cycle through __init__.
        ({"__init__": "from .b import x\n", "b": "x = 1\n", "a": "from . import b\n"}, []),
        # A name the package defines is an import of the package itself.
        (
            {"__init__": "def f():\n    from . import a\n", "a": "from . import version\n"},
            [["p", "p.a"]],
        ),
    ],
)
def test_the_graph_sees_lazy_imports(
    tmp_path: Path, source: dict[str, str], expected: list[list[str]]
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "__init__.py").write_text("")
    for name, text in source.items():
        (tmp_path / "p" / f"{name}.py").write_text(text)
    modules = package_modules(tmp_path, "p")
    assert cycles(import_graph(modules)) == expected


def test_an_import_up_the_layers_is_named(tmp_path: Path) -> None:
    layers = read_layers(
        "<!-- layers -->\n1. **low**: `__init__`, `low`, `sub.low`\n"
        "2. **high**: `high`, `sub`\n<!-- /layers -->\n"
    )
    (tmp_path / "p" / "sub").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "low.py": "def f():\n    from .sub import mod\n",  # the package `sub` is high
        "high.py": "from .low import f\n",
        "sub/__init__.py": "",
        "sub/mod.py": "",
        "sub/low.py": "from ..low import f\n",
    }.items():
        (tmp_path / "p" / name).write_text(text)
    graph = import_graph(package_modules(tmp_path, "p"))
    assert upward_imports(graph, layers, "p") == ["p.low (low) imports p.sub.mod (high)"]
