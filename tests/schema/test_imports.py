"""Issue 10: the package's runtime import graph has no cycle, and no module is too long.

Every module under ``pydbal/`` is parsed with :mod:`ast` (nothing is imported). An edge A → B is
any ``import``/``from … import`` in A, at module level or inside a function, that names a module
B of the package; imports under ``if TYPE_CHECKING:`` are left out (annotations only, never run).
Resolution:

- ``import pydbal.x.y`` and ``from pydbal.x import y`` (absolute or relative) lead to the named
  module: ``pydbal.x.y`` when ``y`` is a submodule, else ``pydbal.x`` itself (the ``__init__``
  of a package, which is where such a name is looked up);
- importing a module inside a subpackage also runs that subpackage's ``__init__`` first, so it
  adds an edge to each enclosing package the importer does not itself belong to (a module of
  ``pydbal.cache`` importing ``pydbal.cache.codec`` does not depend on ``pydbal/cache/__init__``;
  ``pydbal.database`` importing it does). The root package ``pydbal`` encloses every module, so
  it is reached only by naming it (``import pydbal``, ``from pydbal import __version__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "pydbal"
MAX_LINES = 450



def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under pydbal/ (``__init__`` named by its
    package)."""
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["pydbal", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` except those in the body of ``if TYPE_CHECKING:``
    (its ``else:`` branch runs, so it is searched)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    yield stmt
                yield from _runtime_imports(stmt)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _runtime_imports(child)


def _package_of(module: str, path: Path) -> str:
    """The package a relative import in ``module`` starts from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that ``module`` imports at run time (see the docstring)."""
    named: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for stmt in _runtime_imports(tree):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.name
                while name and name not in known:  # `import pydbal.x.attr` is not a thing,
                    name = name.rpartition(".")[0]  # but keep to what exists
                if name:
                    named.add(name)
            continue
        if stmt.level:
            base = _package_of(module, path)
            for _ in range(stmt.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{stmt.module}" if stmt.module else base
        else:
            base = stmt.module or ""
        for alias in stmt.names:
            if f"{base}.{alias.name}" in known:
                named.add(f"{base}.{alias.name}")
            elif base in known:
                named.add(base)
    edges: set[str] = set()
    own = _package_of(module, path)
    for target in named:
        edges.add(target)
        parts = target.split(".")
        for i in range(2, len(parts)):  # enclosing subpackages, root excluded
            package = ".".join(parts[:i])
            if package in known and not (own == package or own.startswith(package + ".")):
                edges.add(package)
    edges.discard(module)
    return edges


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports at run time."""
    known = _modules()
    return {m: _targets(m, p, known) for m, p in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_resolver_sees_lazy_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    # pydbal/__init__ imports the database module at module level
    assert "pydbal.database" in graph["pydbal"]
    assert all(target.startswith("pydbal") for edges in graph.values() for target in edges)


def test_a_cycle_is_found_and_printed() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles found one after another, each time leaving out the modules of the cycles already
    found, so a failure shows the separate knots at once rather than only the first."""
    found: list[list[str]] = []
    left = {m: set(e) for m, e in graph.items()}
    while (cycle := find_cycle(left)) is not None:
        found.append(cycle)
        for m in cycle:
            left.pop(m, None)
        for edges in left.values():
            edges.difference_update(cycle)
    return found


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" → ".join(c) for c in found)


def test_no_module_over_the_size_limit() -> None:
    offenders = {
        str(path.relative_to(ROOT.parent)): n
        for path in sorted(ROOT.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not offenders, f"modules over {MAX_LINES} lines: {offenders}"
