"""The library's architecture: parts import only the parts below them, and shared
code names no task (a task is a folder under tasks/, asked through its object)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from visionops.tasks import REGISTRY

LIBRARY = Path(__file__).resolve().parents[2] / "src" / "visionops"

# Bottom to top; a part may import its own layer's other parts only where listed.
LAYERS = [
    {"core"},
    {"data"},
    {"engine"},
    {"tasks"},
    {"config"},
    {"feedback"},
    {"training", "serving", "batch"},
    {"app"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _module(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "visionops" else None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every runtime import."""
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found += [(_module(path), name, node.lineno) for name in names]
    return found


def test_every_part_has_a_layer():
    parts = {p.stem for p in LIBRARY.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__", "static"}
    assert parts <= set(RANK), f"parts without a layer: {parts - set(RANK)}"


def test_imports_go_down_only():
    upward = []
    for importer, imported, line in _imports():
        here, there = _part(importer), _part(imported)
        if here is None or there is None or here == there or there not in RANK:
            continue
        if RANK[there] >= RANK[here]:
            upward.append(f"{importer}:{line} imports {imported}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ):
            body = node.body
            if body and isinstance(body[0], ast.Expr):
                ids.add(id(body[0].value))
    return ids


def test_no_task_named_outside_tasks():
    names = set(REGISTRY)
    leaks = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if (LIBRARY / "tasks") in path.parents:
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and node.value in names
                and id(node) not in docstrings
            ):
                leaks.append(
                    f"{path.relative_to(LIBRARY)}:{node.lineno} {node.value!r}"
                )
    assert not leaks, "task names outside tasks/:\n" + "\n".join(leaks)


@pytest.mark.parametrize("suffix", [".html", ".js"])
def test_web_page_names_no_task(suffix):
    """The page learns the task, its endpoint and its view from the service."""
    static = LIBRARY / "serving" / "static"
    for path in static.rglob(f"*{suffix}"):
        text = path.read_text()
        for name in REGISTRY:
            assert f"/{name}" not in text, f"{path.name} names the {name} endpoint"
