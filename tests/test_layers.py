"""The house in nine rooms: the layout of src/nightlab/ and the direction of its imports.

Every module under src/nightlab/ is parsed (ast, nothing imported) and mapped to its room, the
top-level entry it lives in. The rooms, in order:

    config → ratchet → store → tracking → trials → agents → report → loop → lab

A room imports only itself and earlier rooms. `nightlab/__init__.py` is the package face: any
module may import it, and it imports no room (a name it exports lazily from `__getattr__`, like
`Lab`, counts as an import of the module it comes from, made by whoever imports that name).
`nightlab/__main__.py` is the command-line entry: it imports the face and `lab`, and nothing
imports it. `nightlab/integrations/` (framework callbacks, e.g. Lightning's) belongs to the face:
it imports only the face (and its framework), and no room imports it.

Imports are counted at module level and inside functions; those under `if TYPE_CHECKING:` are
not (they never run). Folders holding a `nightlab.toml` (the `init` templates) are labs, not
nightlab's code: they are left out of the import graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "nightlab"
ROOMS = ("config", "ratchet", "store", "tracking", "trials", "agents", "report", "loop", "lab")
ORDER = " → ".join(ROOMS)
FACE, MAIN, INTEGRATIONS = "nightlab", "nightlab.__main__", "integrations"
TOP_LEVEL_EXTRAS = {"__init__.py", "__main__.py", "py.typed", INTEGRATIONS}
MAX_FILE_LINES, MAX_CLASS_LINES = 400, 300


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` imports `target` (both module names)."""

    source: str
    target: str
    line: int
    text: str  # the statement as written
    function: str | None  # the enclosing function, if the import runs only when it is called

    def where(self) -> str:
        inside = f" (inside {self.function}())" if self.function else ""
        return f"{rel(path_of(self.source))}:{self.line}: `{self.text}`{inside}"


# ------------------------------------------------------------------------------ the modules
def is_lab_folder(path: Path) -> bool:
    """Inside a folder with a nightlab.toml (a template lab shipped as data)?"""
    return any((d / "nightlab.toml").is_file() for d in path.parents if d.is_relative_to(PACKAGE))


@cache
def modules() -> dict[str, Path]:
    """Module name → file, for every Python file of nightlab's own code."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts or is_lab_folder(path):
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def path_of(module: str) -> Path:
    return modules()[module]


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def is_package(module: str) -> bool:
    return path_of(module).name == "__init__.py"


def room_of(module: str) -> str:
    """The room (config … lab), or the face (`nightlab`) or `nightlab.__main__`."""
    if module in (FACE, MAIN):
        return module
    return module.split(".")[1]


# ------------------------------------------------------------------------------ the imports
def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str | None]]:
    """Every import that can run, with its enclosing function (None at module level)."""

    def walk(node: ast.AST, function: str | None) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child.test):
                for stmt in child.orelse:  # the body never runs; an else branch does
                    yield from walk_one(stmt, function)
                continue
            yield from walk_one(child, function)

    def walk_one(node: ast.AST, function: str | None) -> Iterator:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, function
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from walk(node, node.name if function is None else f"{function}.{node.name}")
        else:
            yield from walk(node, function)

    yield from walk(tree, None)


def resolve_base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from X import ...` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = module if is_package(module) else module.rpartition(".")[0]
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


@cache
def lazy_exports(package: str) -> dict[str, str]:
    """Names a package's `__getattr__` imports on first use: name → the module it comes from."""
    tree = ast.parse(path_of(package).read_text())
    exports = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__":
            for node, _ in statements(fn):
                if isinstance(node, ast.ImportFrom):
                    base = resolve_base(package, node)
                    for alias in node.names:
                        exports[alias.asname or alias.name] = base
    return exports


def targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The nightlab modules one import statement loads (outside modules are dropped)."""
    known = modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    base = resolve_base(module, node)
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:  # `from pkg import submodule`
            found.append(sub)
        elif alias.name in (lazy_exports(base) if base in known else {}):
            found.append(lazy_exports(base)[alias.name])
        elif base in known:
            found.append(base)
    return [t for t in dict.fromkeys(found) if t in known]


@cache
def imports() -> tuple[Import, ...]:
    """Every import edge between nightlab's modules (the face's lazy exports excepted: they
    are edges of whoever imports the name)."""
    edges = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, function in statements(tree):
            lazy = function is not None and function.split(".")[0] == "__getattr__"
            if lazy and module in lazy_exports_owners():
                continue  # a lazy export: an edge of whoever imports the name
            text = ast.get_source_segment(path.read_text(), node) or ast.unparse(node)
            for target in targets(module, node):
                if target != module:
                    edges.append(Import(module, target, node.lineno, " ".join(text.split()),
                                        function))  # fmt: skip
    return tuple(edges)


@cache
def lazy_exports_owners() -> frozenset[str]:
    return frozenset(m for m in modules() if path_of(m).name == "__init__.py" and lazy_exports(m))


# ------------------------------------------------------------------------------ the rules
def rule_broken(edge: Import) -> str | None:
    """Why this import breaks the order of the rooms, or None."""
    src, dst = room_of(edge.source), room_of(edge.target)
    if dst == MAIN:
        return "nothing imports nightlab/__main__.py (the command-line entry)"
    if src == INTEGRATIONS:
        if dst in (FACE, INTEGRATIONS):
            return None
        return f"`integrations` imports the room `{dst}`; it imports only the package face"
    if dst == INTEGRATIONS:
        return f"`{src}` imports `integrations`; only users import it (it loads a framework)"
    if src == FACE:
        if dst == FACE:
            return None
        return (
            f"the package face nightlab/__init__.py imports the room `{dst}`; every room may "
            "import the face, so it imports no room (export a name lazily from __getattr__)"
        )
    if dst == FACE:
        return None
    if src == MAIN:
        if dst == "lab":
            return None
        return f"nightlab/__main__.py imports `{dst}`; it imports only the face and `lab`"
    if ROOMS.index(dst) > ROOMS.index(src):
        return (
            f"`{src}` imports `{dst}`, a later room; a room imports only itself and earlier "
            f"rooms ({ORDER})"
        )
    return None


def cycles() -> list[list[Import]]:
    """Import cycles as paths: for each group of modules that import each other, shortest
    cycles until every module of the group is on one."""
    graph: dict[str, list[Import]] = {}
    for edge in imports():
        graph.setdefault(edge.source, []).append(edge)
    found = []
    for component in strongly_connected(graph):
        uncovered = set(component) if len(component) > 1 else set()
        while uncovered:
            path = shortest_cycle(graph, min(uncovered), component)
            found.append(path)
            uncovered -= {e.source for e in path}
    return found


def strongly_connected(graph: dict[str, list[Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph.get(root, [])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for edge in edges:
                nxt = edge.target
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, []))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def shortest_cycle(graph: dict[str, list[Import]], start: str, within: set[str]) -> list[Import]:
    """The shortest path of imports from `start` back to `start`, inside one component."""
    frontier = [(start, [])]
    visited = {start}
    while frontier:
        nxt_frontier = []
        for node, path in frontier:
            for edge in sorted(graph.get(node, []), key=lambda e: (e.target, e.line)):
                if edge.target == start:
                    return [*path, edge]
                if edge.target in within and edge.target not in visited:
                    visited.add(edge.target)
                    nxt_frontier.append((edge.target, [*path, edge]))
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start}")  # a component of 2+ always has one


def class_sizes(path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, first line, number of lines) of every class in a file, nested ones too."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, first, node.end_lineno - first + 1


def exempt_from_the_file_limit(path: Path) -> bool:
    return path == PACKAGE / "config.py" or "migrations" in path.relative_to(PACKAGE).parts


# ------------------------------------------------------------------------------ the tests
def test_the_import_graph_is_read_from_the_source():
    """The rules below see real imports (an empty graph would pass them all)."""
    assert len(modules()) > 40 and len(imports()) > 100
    assert any(e.source == MAIN and room_of(e.target) == "lab" for e in imports())
    assert not any(m.startswith("nightlab.lab.templates.") for m in modules())  # labs, not code


def test_the_reader_skips_type_checking_and_resolves_relative_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import never\nelse:\n    import otherwise\n"
        "def f():\n    from ..store import db\n    def g():\n        from . import sibling\n"
    )
    found = [(ast.unparse(node), fn) for node, fn in statements(ast.parse(source))]
    assert found == [
        ("from typing import TYPE_CHECKING", None),
        ("import otherwise", None),
        ("from ..store import db", "f"),
        ("from . import sibling", "f.g"),
    ]
    up, here = (node for node, _ in list(statements(ast.parse(source)))[2:])
    assert resolve_base("nightlab.loop.loop", up) == "nightlab.store"
    assert resolve_base("nightlab.loop.loop", here) == "nightlab.loop"
    assert resolve_base("nightlab.agents", here) == "nightlab.agents"  # a package's __init__
    assert targets("nightlab.loop.loop", up) == ["nightlab.store.db"]


def test_no_room_imports_a_later_room():
    broken = [f"{edge.where()}\n    {why}" for edge in imports() if (why := rule_broken(edge))]
    if broken:
        pytest.fail(f"{len(broken)} import(s) against the order of the rooms:\n" + "\n".join(
            broken), pytrace=False)  # fmt: skip


def test_no_modules_import_each_other_in_a_cycle():
    found = cycles()
    described = []
    for path in found:
        files = [rel(path_of(e.source)) for e in path]
        steps = " → ".join([*files, files[0]])
        described.append(steps + "".join(f"\n    {e.where()}" for e in path))
    if found:
        pytest.fail(f"{len(found)} import cycle(s) (imports inside functions count):\n"
                    + "\n".join(described), pytrace=False)  # fmt: skip


def test_the_top_level_holds_the_nine_rooms_and_the_package_face():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    rooms = {f"{r}.py" if (PACKAGE / f"{r}.py").is_file() else r for r in ROOMS}
    stray = sorted(entries - rooms - TOP_LEVEL_EXTRAS)
    missing = sorted(r for r in ROOMS if not (PACKAGE / r).is_dir() and not (
        PACKAGE / f"{r}.py").is_file())  # fmt: skip
    if stray or missing:
        pytest.fail(
            f"src/nightlab/ holds the nine rooms ({ORDER}) and "
            f"{', '.join(sorted(TOP_LEVEL_EXTRAS))} only; not a room: {stray or 'none'}; "
            f"rooms missing: {missing or 'none'}",
            pytrace=False,
        )


def test_no_file_over_400_lines_and_no_class_over_300():
    big_files = [
        f"{rel(p)}: {n} lines (at most {MAX_FILE_LINES})"
        for p in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in p.parts and not exempt_from_the_file_limit(p)
        and (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    ]  # fmt: skip
    big_classes = [
        f"{rel(p)}:{line}: class {name} is {n} lines (at most {MAX_CLASS_LINES})"
        for p in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in p.parts
        for name, line, n in class_sizes(p)
        if n > MAX_CLASS_LINES
    ]
    if big_files or big_classes:
        pytest.fail("\n".join(["too long (config.py and migrations excepted):", *big_files,
                               *big_classes]), pytrace=False)  # fmt: skip
