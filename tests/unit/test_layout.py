"""The package layout's import contracts (docs/architecture.md), read from the source.

Every import of a tgfleet module by another counts, inside functions too: a lazy import
is a real dependency. Imports under ``if TYPE_CHECKING:`` are annotations only and count
for the layering, not for cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tgfleet"

#: What each top-level part of tgfleet may import (besides itself).
RUNTIME = {"platform", "db", "inbox", "sends", "legacy", "bots", "ops"}
ALLOWED: dict[str, set[str]] = {
    "platform": set(),
    "db": {"platform"},
    "inbox": {"platform", "db"},
    "sends": {"platform", "db"},
    "legacy": {"platform", "db"},
    "bots": {"platform", "db", "inbox", "sends"},
    "ops": {"platform", "db", "inbox", "sends", "legacy"},
    "tasks": RUNTIME,
    "listeners": {"platform", "db"},
    "simulator": set(),
    "dev": {"platform", "db", "bots", "ops", "simulator"},
    "cli": RUNTIME | {"listeners", "dev", "simulator"},
    "testing": RUNTIME | {"listeners", "dev", "simulator"},
    "celery": {"platform"},
    "__main__": {"cli"},
}


@dataclass(frozen=True)
class Import:
    source: str  # dotted module name
    target: str  # dotted module name
    line: int
    type_only: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` depends on the submodule; any other name
            # is taken from the package itself.
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if s in known]
            if len(targets) < len(subs):
                targets.append(base)
        for target in targets:
            if target in known and target != name:
                yield Import(name, target, node.lineno, node.lineno in type_only)


def all_imports() -> list[Import]:
    found = modules()
    return [imp for name, path in found.items() for imp in imports_of(name, path, set(found))]


def part(module: str) -> str:
    """The top-level part of tgfleet a module belongs to (``tgfleet.db.models`` -> db)."""
    return module.split(".")[1] if module.count(".") else module


def test_every_part_of_the_package_is_named_in_the_contracts() -> None:
    parts = {part(name) for name in modules() if name != "tgfleet"}
    assert parts <= set(ALLOWED), f"add these to ALLOWED: {sorted(parts - set(ALLOWED))}"


def test_imports_point_one_way() -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if part(imp.target) != part(imp.source)
        and imp.target != "tgfleet"
        and part(imp.target) not in ALLOWED[part(imp.source)]
    ]
    assert not wrong, "imports against the layering (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in all_imports():
        if not imp.type_only:
            graph[imp.source].add(imp.target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            # A package's __init__ re-exporting its own submodules is not a cycle.
            real = [m for m in component if not any(o.startswith(m + ".") for o in component)]
            if len(component) > 1 and len(real) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("bad", ["platform", "db"])
def test_the_core_never_imports_tasks(bad: str) -> None:
    assert not [i for i in all_imports() if part(i.source) == bad and part(i.target) == "tasks"]


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # Given a module of db that imports tasks
    source = tmp_path / "tgfleet" / "db" / "bad.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from tgfleet.tasks import updates\n")
    # When its imports are read, Then the inner import is found
    found = list(imports_of("tgfleet.db.bad", source, {"tgfleet.tasks", "tgfleet.tasks.updates"}))
    assert [(i.target, i.line) for i in found] == [("tgfleet.tasks.updates", 2)]
    assert part(found[0].target) not in ALLOWED["db"]


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
