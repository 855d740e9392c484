"""The tree reads as the architecture: floors, no import circles, files that fit in a head.

Every ``import`` of a ``properties`` module by another, at module level or inside a function,
is an edge.  The subpackages sit on floors (``judging`` lowest, ``cli`` highest) and an edge
may only go down or stay on its floor; no set of modules may import each other in a circle.

The line limit holds for every module of every package of the project (``spec``, ``impl``,
``properties``) and of ``benchmarks/``.  ``tests/`` (and the root ``conftest.py``) are exempt:
a test module is a list of independent cases read one at a time, not a unit to hold in a head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "properties"

MAX_LINES = 800
"""The most lines a module may have ("about 800": a file that fits in a head)."""

LINE_CHECKED = ("spec", "impl", "properties", "benchmarks")
"""The folders whose modules :data:`MAX_LINES` holds for: every package and the benchmarks."""

FLOORS = {
    "properties._version": 0,
    "properties.strategies": 0,
    "properties.stats": 0,
    "properties.judging": 1,
    "properties.onestep": 2,
    "properties.sequence": 3,
    "properties.trainer": 3.5,
    "properties.claims": 4,
    "properties.audit": 4,
    "properties.report": 5,
    "properties.cli": 6,
    "properties": 7,
}
"""Each part's floor: a module may import from its own floor or below, never above."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The ``properties`` modules that ``path`` imports (``from a.b import c`` counts ``a.b.c``
    when that is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out.update(subs)
            if node.module in known and len(subs) < len(node.names):
                out.add(node.module)
    return out


def _floor(module: str) -> float:
    best = max((k for k in FLOORS if module == k or module.startswith(k + ".")), key=len)
    return FLOORS[best]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        own_package = name if path.name == "__init__.py" else None
        graph[name] = {m for m in _imports(path, known) if m != own_package}
    return graph


def _long_modules(root: Path, folders: tuple[str, ...]) -> dict[str, int]:
    """The modules under ``root/folder`` with more than :data:`MAX_LINES` lines, with their counts."""
    return {
        str(p.relative_to(root)): n
        for folder in folders
        for p in sorted((root / folder).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }


def test_no_module_is_longer_than_a_head_holds() -> None:
    long = _long_modules(ROOT, LINE_CHECKED)
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_package_of_the_project_is_held_to_the_line_limit() -> None:
    packages = {init.parent.name for init in ROOT.glob("*/__init__.py")} - {"tests"}
    assert {"spec", "impl", "properties"} <= packages  # the glob finds them
    assert packages <= set(LINE_CHECKED), f"packages without the line limit: {packages - set(LINE_CHECKED)}"
    assert (ROOT / "benchmarks").is_dir() and "benchmarks" in LINE_CHECKED


def test_the_line_limit_finds_a_planted_long_module(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert _long_modules(tmp_path, ("pkg",)) == {str(Path("pkg/sub/long.py")): MAX_LINES + 1}


def test_every_part_is_a_subpackage_with_a_docstring_and_all() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init} says nothing about its part"
        assert any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
            for n in tree.body
        ), f"{init} has no __all__"


def test_no_import_goes_up_a_floor() -> None:
    up = sorted(
        f"{a} (floor {_floor(a)}) imports {b} (floor {_floor(b)})"
        for a, targets in _graph().items()
        for b in targets
        if _floor(b) > _floor(a)
    )
    assert not up, "\n".join(up)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_no_import_circles() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its modules is not a circle with them
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    found = _cycle(graph)
    assert found is None, " -> ".join(found or [])


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]), ({"a": {"b"}, "b": set()}, None)],
)
def test_the_cycle_finder_finds_a_planted_circle(graph: dict[str, set[str]], expected: object) -> None:
    assert _cycle(graph) == expected


def test_the_path_the_cli_names_for_catalogue_entries_exists() -> None:
    import re

    from properties.cli.loading import no_catalogue_entry

    found = re.search(r"the names are in (\S+?)\)", no_catalogue_entry("rlo"))
    assert found is not None, no_catalogue_entry("rlo")
    assert (ROOT / found.group(1)).exists(), f"{found.group(1)} is not in the tree"
